//! `kind = "api_key"` targets: a random key published as `current` (and `previous` for a
//! grace period), registered with and revoked at its issuer by optional hooks.

use serde::Deserialize;
use std::path::Path;

use super::TargetKind;
use super::database::strip_file;
use crate::error::{Error, Result};
use crate::rotation::hook::Hook;

/// Random bytes in a key unless configured: 256 bits.
const DEFAULT_BYTES: usize = 32;

/// An API key target's own settings.
#[derive(Clone, Debug)]
pub struct ApiKeyTarget {
    /// Written before the random part, like `sk_live_`, so a leaked key is recognisable.
    pub prefix: String,
    /// Random bytes in each key (at least 32), written URL-safe base64.
    pub bytes: usize,
    /// Tells the issuer about a new key before it is published.
    pub register: Option<Hook>,
    /// Tells the issuer to stop accepting the previous key, once its grace period is over.
    pub revoke: Option<Hook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyFile {
    #[serde(default)]
    prefix: String,
    #[serde(default = "default_bytes")]
    bytes: usize,
    register: Option<Hook>,
    revoke: Option<Hook>,
}

fn default_bytes() -> usize {
    DEFAULT_BYTES
}

pub(super) fn parse(value: toml::Value, file: &Path, at: &str) -> Result<TargetKind> {
    let t: ApiKeyFile = super::super::deserialize_toml(value, file)
        .map_err(|e| Error::config(format!("{at}: {}", strip_file(e.message(), file))))?;
    if !(32..=128).contains(&t.bytes) {
        return Err(Error::config(format!(
            "{at}: bytes = {}: an API key needs 32 to 128 random bytes (32 is 256 bits)",
            t.bytes
        )));
    }
    if !t
        .prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        || t.prefix.len() > 32
    {
        return Err(Error::config(format!(
            "{at}: prefix '{}': use up to 32 letters, digits, '_' and '-'",
            t.prefix
        )));
    }
    let base = super::super::parent_dir(file);
    let hook = |h: Option<Hook>, what: &str| -> Result<Option<Hook>> {
        h.map(|h| {
            h.check()
                .map_err(|e| Error::config(format!("{at}: {what}: {e}")))?;
            Ok(h.relative_to(&base, super::super::resolve))
        })
        .transpose()
    };
    Ok(TargetKind::ApiKey(ApiKeyTarget {
        prefix: t.prefix,
        bytes: t.bytes,
        register: hook(t.register, "register")?,
        revoke: hook(t.revoke, "revoke")?,
    }))
}
