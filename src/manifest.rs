//! `manifest.json`: what a backup is, and the proof (`mac`) that nobody edited it.
//!
//! The mac covers every field but `keys` and `mac`, over the JSON exactly as stored (fields this
//! version does not know included), serialized in RFC 8785 canonical form. `keys` stays outside
//! so that keys can be added and removed without the DEK-derived mac changing.

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::keys::Stanza;
use crate::crypto::{Dek, hkdf_sha256};
use crate::error::{Error, Result};

pub const FORMAT: &str = "coffre-manifest/1";

/// The kinds of source a manifest's `source.kind` names, besides "command" and "file".
pub const KIND_POSTGRES: &str = "postgres";
pub const KIND_POSTGRES_GLOBALS: &str = "postgres-globals";
pub const KIND_MARIADB: &str = "mariadb";

/// How the store locks a backup's objects (S3 Object Lock), as recorded in `lock_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Users with s3:BypassGovernanceRetention can still delete.
    Governance,
    /// Nobody can delete or shorten the lock until it expires.
    Compliance,
}

const INFO_MANIFEST: &[u8] = b"coffre/v1/manifest";

/// Where the dump came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub kind: String,
    pub database: Option<String>,
    pub server_version: Option<String>,
    pub dump_tool: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub backup_id: Uuid,
    pub job: String,
    pub source: SourceInfo,
    #[serde(with = "rfc3339")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    pub finished_at: DateTime<Utc>,
    /// "zstd" or "none".
    pub compression: String,
    pub chunk_log2: u8,
    pub plaintext_bytes: u64,
    pub payload_bytes: u64,
    pub stored_bytes: u64,
    pub chunks: u64,
    pub data_sha256: String,
    /// When set, the store holds the objects under an object lock until then.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339::option"
    )]
    pub retain_until: Option<DateTime<Utc>>,
    /// The object lock mode that goes with `retain_until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_mode: Option<LockMode>,
    pub keys: Vec<Stanza>,
    pub mac: String,
}

/// A manifest as read from the store: the typed view plus the JSON it was parsed from,
/// which is what the mac covers.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    pub manifest: Manifest,
    raw: Value,
}

/// How deeply a manifest's JSON may nest; real ones nest 3 levels.
pub const MAX_JSON_DEPTH: usize = 16;

impl StoredManifest {
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if json_depth_exceeds(bytes, MAX_JSON_DEPTH) {
            return Err(Error::integrity(format!(
                "manifest nests deeper than {MAX_JSON_DEPTH} levels, which no manifest does"
            )));
        }
        let raw: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::integrity(format!("manifest is not valid JSON: {e}")))?;
        let manifest: Manifest = serde_json::from_value(raw.clone())
            .map_err(|e| Error::integrity(format!("manifest does not match the format: {e}")))?;
        if manifest.format != FORMAT {
            return Err(Error::integrity(format!(
                "manifest format '{}' is not '{FORMAT}' (written by a newer coffre?)",
                manifest.format
            )));
        }
        Ok(Self { manifest, raw })
    }

    /// The stored JSON with `keys` replaced: every other field, known or not, unchanged, so
    /// the mac still holds.
    pub fn with_keys(&self, keys: Vec<Stanza>) -> Result<Vec<u8>> {
        let mut raw = self.raw.clone();
        raw["keys"] = serde_json::to_value(keys)
            .map_err(|e| Error::internal(format!("manifest serialization: {e}")))?;
        serde_json::to_vec_pretty(&raw)
            .map_err(|e| Error::internal(format!("manifest serialization: {e}")))
    }

    /// Check the mac with the DEK and the data object's salt.
    pub fn verify_mac(&self, dek: &Dek, salt: &[u8; 32]) -> Result<()> {
        let expected = hex::decode(&self.manifest.mac)
            .map_err(|_| Error::integrity("manifest mac is not hex"))?;
        let mut mac = manifest_mac(dek, salt);
        mac.update(&canonical_json(&without_keys_and_mac(&self.raw))?);
        mac.verify_slice(&expected).map_err(|_| {
            Error::integrity(
                "manifest mac does not match: the manifest was edited or belongs to other data",
            )
        })
    }
}

impl Manifest {
    /// Which series of its job this backup belongs to: the database, or the source kind for
    /// sources without one (`postgres-globals`, `command`, `file`). Retention and `--latest`
    /// work per series.
    pub fn series(&self) -> &str {
        self.source.database.as_deref().unwrap_or(&self.source.kind)
    }

    /// What listings show as its database: the database, `postgres-globals` for a roles
    /// backup, nothing for a command or file source.
    pub fn database_shown(&self) -> Option<&str> {
        match self.source.kind.as_str() {
            KIND_POSTGRES_GLOBALS => Some(KIND_POSTGRES_GLOBALS),
            _ => self.source.database.as_deref(),
        }
    }

    /// Compute and set `mac`, then return the bytes to store.
    pub fn seal(mut self, dek: &Dek, salt: &[u8; 32]) -> Result<Vec<u8>> {
        let value = serde_json::to_value(&self)
            .map_err(|e| Error::internal(format!("manifest serialization: {e}")))?;
        let mut mac = manifest_mac(dek, salt);
        mac.update(&canonical_json(&without_keys_and_mac(&value))?);
        self.mac = hex::encode(mac.finalize().into_bytes());
        serde_json::to_vec_pretty(&self)
            .map_err(|e| Error::internal(format!("manifest serialization: {e}")))
    }
}

/// Whether JSON text nests arrays and objects deeper than `max`, by a scan that needs no
/// parsing (and so no recursion) of its own.
fn json_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn manifest_mac(dek: &Dek, salt: &[u8; 32]) -> Hmac<Sha256> {
    let mut key = Zeroizing::new([0u8; 32]);
    hkdf_sha256(dek.as_bytes(), salt, &[INFO_MANIFEST], key.as_mut());
    Hmac::<Sha256>::new_from_slice(key.as_ref()).expect("HMAC takes any key length")
}

fn without_keys_and_mac(value: &Value) -> Value {
    let mut value = value.clone();
    if let Value::Object(map) = &mut value {
        map.remove("keys");
        map.remove("mac");
    }
    value
}

/// RFC 8785 (JCS) serialization for JSON holding only strings, integers, booleans, null,
/// arrays and objects: object keys sorted by UTF-16 code units, no whitespace.
pub fn canonical_json(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    write_canonical(value, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => {
            // serde_json's escaping of strings is the one JCS prescribes.
            out.extend(serde_json::to_vec(value).expect("plain JSON value"));
        }
        Value::Number(n) => {
            if !(n.is_i64() || n.is_u64()) {
                return Err(Error::integrity(
                    "manifest holds a non-integer number; the format allows integers only",
                ));
            }
            out.extend(n.to_string().as_bytes());
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(key).expect("string"));
                out.push(b':');
                write_canonical(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// RFC 3339 UTC timestamps with millisecond precision: "2026-11-23T14:08:12.345Z".
pub mod rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn serialize<S: Serializer>(
        t: &DateTime<Utc>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    /// The same for optional timestamps.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> std::result::Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&format(t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> std::result::Result<Option<DateTime<Utc>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| {
                    DateTime::parse_from_rfc3339(&text)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(serde::de::Error::custom)
                })
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v = json!({"b": 1, "a": {"z": [1, 2, "x\n\u{1}é"], "y": null}, "A": true});
        let text = String::from_utf8(canonical_json(&v).unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"A":true,"a":{"y":null,"z":[1,2,"x\n\u0001é"]},"b":1}"#
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        let err = StoredManifest::parse(deep.as_bytes()).unwrap_err();
        assert!(err.message().contains("nests deeper"), "{err}");
        // Brackets inside strings do not count.
        assert!(!json_depth_exceeds(
            br#"{"a":"[[[[[[[[[[[[[[[[[[[[\"[["}"#,
            3
        ));
        assert!(json_depth_exceeds(b"[[[[", 3));
    }

    #[test]
    fn canonical_json_rejects_floats() {
        assert!(canonical_json(&json!({"a": 1.5})).is_err());
    }

    #[test]
    fn canonical_json_orders_by_utf16_code_units() {
        // U+10000 is D800 DC00 in UTF-16, which sorts before U+E000; UTF-8 order says the opposite.
        let v = json!({"\u{e000}": 1, "\u{10000}": 2});
        let text = String::from_utf8(canonical_json(&v).unwrap()).unwrap();
        assert_eq!(text, "{\"\u{10000}\":2,\"\u{e000}\":1}");
    }
}
