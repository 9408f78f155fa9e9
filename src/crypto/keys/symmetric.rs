//! Symmetric keys: 32 random bytes from `coffre key generate`, in a file, an environment
//! variable, a Kubernetes Secret or Vault. A key's id names it in manifests without revealing it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::fill_random;

const KEY_ID_PREFIX: &[u8] = b"coffre/v1/key-id";
/// Prefix of the text form of a key, so a key file is recognisable and never mistaken for another secret.
const KEY_TEXT_PREFIX: &str = "coffre-key-v1:";

/// A 32-byte symmetric key (a KEK). Zeroized on drop; `Debug` shows only its key id.
#[derive(Clone)]
pub struct SymmetricKey(Zeroizing<[u8; 32]>);

impl SymmetricKey {
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        fill_random(key.as_mut());
        Self(key)
    }

    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    /// Hex of the first 8 bytes of SHA-256("coffre/v1/key-id" || key).
    pub fn key_id(&self) -> String {
        key_id_of(self.0.as_ref())
    }

    /// A secret of 32 bytes derived from this key for `info` (HKDF-SHA-256, empty salt): for
    /// another purpose than wrapping, one-way.
    pub fn derive(&self, info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        crate::crypto::hkdf_sha256(self.0.as_ref(), &[], info, out.as_mut());
        out
    }

    /// The text form written to key files: `coffre-key-v1:` + base64 of the 32 bytes.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{KEY_TEXT_PREFIX}{}\n",
            B64.encode(self.0.as_ref())
        ))
    }

    /// Parse a key from its text form (`coffre-key-v1:<base64>`, or 64 hex characters) or raw 32 bytes.
    pub fn parse(raw: &[u8]) -> std::result::Result<Self, &'static str> {
        if raw.len() == 32 {
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(raw);
            return Ok(Self(key));
        }
        let text = std::str::from_utf8(raw).map_err(|_| "a key is 32 raw bytes or text")?;
        let text = text.trim();
        let mut decoded = Zeroizing::new(if let Some(b64) = text.strip_prefix(KEY_TEXT_PREFIX) {
            B64.decode(b64)
                .map_err(|_| "the base64 after 'coffre-key-v1:' is invalid")?
        } else if text.len() == 64 {
            hex::decode(text).map_err(|_| "64 characters but not hex")?
        } else {
            return Err(
                "expected 'coffre-key-v1:<base64>' (from 'coffre key generate') or 64 hex characters",
            );
        });
        if decoded.len() != 32 {
            decoded.zeroize();
            return Err("the key does not decode to 32 bytes");
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&decoded);
        Ok(Self(key))
    }

    pub(super) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SymmetricKey({})", self.key_id())
    }
}

/// Hex of the first 8 bytes of SHA-256("coffre/v1/key-id" || key material): the id of a
/// key, and of an x25519 recipient.
pub(super) fn key_id_of(kek: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(KEY_ID_PREFIX)
        .chain_update(kek)
        .finalize();
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_form_parses_back_and_debug_hides_bytes() {
        let key = SymmetricKey::generate();
        let text = key.to_text();
        let parsed = SymmetricKey::parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.key_id(), key.key_id());
        let hex_form = hex::encode(key.as_bytes());
        assert_eq!(
            SymmetricKey::parse(hex_form.as_bytes()).unwrap().key_id(),
            key.key_id()
        );
        let debug = format!("{key:?}");
        assert!(!debug.contains(&hex_form));
        assert!(!debug.contains(&B64.encode(key.as_bytes())));
        assert!(SymmetricKey::parse(b"coffre-key-v1:AAAA").is_err());
    }
}
