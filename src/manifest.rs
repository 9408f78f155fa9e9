//! `manifest.json`: what a backup is, and the proof (`mac`) that nobody edited it.
//!
//! Every version shares the fields of `Manifest` (what listings, retention and reports need);
//! the fields that say how the data is stored are the version's `Layout`. The mac covers every
//! field but `mac` (and, in v1, `keys`), over the JSON exactly as stored (fields this version
//! does not know included), serialized in RFC 8785 canonical form. v1's `keys` stays outside
//! so that keys can be added and removed without the DEK-derived mac changing; v2 keeps its
//! keys in session objects instead.

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

pub const FORMAT_V1: &str = "coffre-manifest/1";
pub const FORMAT_V2: &str = "coffre-manifest/2";

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

const INFO_MANIFEST_V1: &[u8] = b"coffre/v1/manifest";
const INFO_MANIFEST_V2: &[u8] = b"coffre/v2/manifest";

/// Where the dump came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub kind: String,
    pub database: Option<String>,
    pub server_version: Option<String>,
    pub dump_tool: Option<String>,
}

/// What every version of a manifest says.
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
    /// Size of the dump.
    pub plaintext_bytes: u64,
    /// Bytes this backup added to the store (v2: its new packs, recipe and session).
    pub stored_bytes: u64,
    /// v1: encrypted chunks of the data object; v2: recipe entries.
    pub chunks: u64,
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
    pub mac: String,
}

/// How a backup's data is stored: the fields of its format version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    V1(V1Layout),
    V2(V2Layout),
}

/// Format v1: one data object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Layout {
    pub chunk_log2: u8,
    /// Size of the payload (after compression).
    pub payload_bytes: u64,
    /// SHA-256 of `data.cfr`.
    pub data_sha256: String,
    pub keys: Vec<Stanza>,
}

/// How a v2 writer cut the dump (FastCDC 2020).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunking {
    pub algorithm: ChunkingAlgorithm,
    pub min: u32,
    pub avg: u32,
    pub max: u32,
    pub normalization: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkingAlgorithm {
    #[serde(rename = "fastcdc-2020")]
    FastCdc2020,
}

/// Format v2: chunks in shared packs, listed by a sealed recipe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2Layout {
    pub chunking: Chunking,
    pub dedup_key_id: String,
    /// Chunks this backup stored; the others it found in earlier packs.
    pub new_chunks: u64,
    /// Blob bytes of every chunk it lists: what a restore downloads.
    pub referenced_bytes: u64,
    pub recipe_bytes: u64,
    /// Pack ids (32 hex digits) the recipe refers to, each once.
    pub packs: Vec<String>,
    /// Session ids the recipe refers to, each once; the first is the backup's own.
    pub sessions: Vec<Uuid>,
    /// Every listed pack and session is under Object Lock until at least then.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339::option"
    )]
    pub references_locked_until: Option<DateTime<Utc>>,
}

impl Layout {
    /// The format's number: 1 or 2.
    pub fn number(&self) -> u32 {
        match self {
            Layout::V1(_) => 1,
            Layout::V2(_) => 2,
        }
    }

    fn format(&self) -> &'static str {
        match self {
            Layout::V1(_) => FORMAT_V1,
            Layout::V2(_) => FORMAT_V2,
        }
    }

    /// The fields the mac leaves out besides `mac` itself.
    fn outside_mac(&self) -> &'static [&'static str] {
        match self {
            Layout::V1(_) => &["keys"],
            Layout::V2(_) => &[],
        }
    }
}

/// The key of a manifest's mac: from the backup's DEK, by version.
pub enum MacKey<'a> {
    /// v1: the DEK and the data object's salt.
    V1(&'a Dek, &'a [u8; 32]),
    /// v2: the backup's session DEK (the backup id is the salt).
    V2(&'a Dek),
}

/// A manifest as read from the store: the typed views plus the JSON it was parsed from,
/// which is what the mac covers.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    pub manifest: Manifest,
    pub layout: Layout,
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
        let mismatch = |e: serde_json::Error| {
            Error::integrity(format!("manifest does not match the format: {e}"))
        };
        let format = raw["format"].as_str().unwrap_or_default();
        let layout = match format {
            FORMAT_V1 => Layout::V1(serde_json::from_value(raw.clone()).map_err(mismatch)?),
            FORMAT_V2 => Layout::V2(serde_json::from_value(raw.clone()).map_err(mismatch)?),
            other => {
                return Err(Error::integrity(format!(
                    "manifest format '{other}' is neither '{FORMAT_V1}' nor '{FORMAT_V2}' (written by a newer coffre?)"
                )));
            }
        };
        let manifest: Manifest = serde_json::from_value(raw.clone()).map_err(mismatch)?;
        Ok(Self {
            manifest,
            layout,
            raw,
        })
    }

    /// The v1 key stanzas (v2 keeps its keys in sessions).
    pub fn v1_keys(&self) -> &[Stanza] {
        match &self.layout {
            Layout::V1(v1) => &v1.keys,
            Layout::V2(_) => &[],
        }
    }

    /// The stored JSON with v1's `keys` replaced: every other field, known or not, unchanged,
    /// so the mac still holds.
    pub fn with_keys(&self, keys: Vec<Stanza>) -> Result<Vec<u8>> {
        let mut raw = self.raw.clone();
        raw["keys"] = serde_json::to_value(keys)
            .map_err(|e| Error::internal(format!("manifest serialization: {e}")))?;
        serde_json::to_vec_pretty(&raw)
            .map_err(|e| Error::internal(format!("manifest serialization: {e}")))
    }

    /// Check the mac.
    pub fn verify_mac(&self, key: MacKey<'_>) -> Result<()> {
        let expected = hex::decode(&self.manifest.mac)
            .map_err(|_| Error::integrity("manifest mac is not hex"))?;
        let mut mac = manifest_mac(key, self.manifest.backup_id);
        mac.update(&canonical_json(&without(
            &self.raw,
            self.layout.outside_mac(),
        ))?);
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

    /// The manifest of `layout`'s version, its mac computed with `key` and set: the bytes to
    /// store, and the manifest as written.
    pub fn seal(mut self, layout: &Layout, key: MacKey<'_>) -> Result<(Vec<u8>, Self)> {
        let serialize =
            |e: serde_json::Error| Error::internal(format!("manifest serialization: {e}"));
        self.format = layout.format().to_string();
        let mut value = serde_json::to_value(&self).map_err(serialize)?;
        let fields = match layout {
            Layout::V1(v1) => serde_json::to_value(v1),
            Layout::V2(v2) => serde_json::to_value(v2),
        }
        .map_err(serialize)?;
        if let (Value::Object(all), Value::Object(own)) = (&mut value, fields) {
            all.extend(own);
        }
        let mut mac = manifest_mac(key, self.backup_id);
        mac.update(&canonical_json(&without(&value, layout.outside_mac()))?);
        self.mac = hex::encode(mac.finalize().into_bytes());
        value["mac"] = Value::String(self.mac.clone());
        let bytes = serde_json::to_vec_pretty(&value).map_err(serialize)?;
        Ok((bytes, self))
    }
}

/// Whether JSON text nests arrays and objects deeper than `max`, by a scan that needs no
/// parsing (and so no recursion) of its own.
pub fn json_depth_exceeds(bytes: &[u8], max: usize) -> bool {
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

fn manifest_mac(key: MacKey<'_>, backup_id: Uuid) -> Hmac<Sha256> {
    let mut out = Zeroizing::new([0u8; 32]);
    match key {
        MacKey::V1(dek, salt) => {
            hkdf_sha256(dek.as_bytes(), salt, &[INFO_MANIFEST_V1], out.as_mut())
        }
        MacKey::V2(dek) => hkdf_sha256(
            dek.as_bytes(),
            backup_id.as_bytes(),
            &[INFO_MANIFEST_V2],
            out.as_mut(),
        ),
    }
    Hmac::<Sha256>::new_from_slice(out.as_ref()).expect("HMAC takes any key length")
}

/// `value` without `mac` and the `fields` the mac also leaves out.
fn without(value: &Value, fields: &[&str]) -> Value {
    let mut value = value.clone();
    if let Value::Object(map) = &mut value {
        map.remove("mac");
        for field in fields {
            map.remove(*field);
        }
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
