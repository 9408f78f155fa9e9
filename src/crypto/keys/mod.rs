//! Keys, one kind per file as age has them: symmetric keys (`symmetric`), passphrases with
//! bounded argon2id (`passphrase`), x25519 identities and recipients for write-only backups
//! (`x25519`), and the stanzas that wrap each backup's DEK for them (`stanza`).
//!
//! Stanzas live only in the manifest, so adding or removing a key rewrites manifests, never data.

mod passphrase;
mod stanza;
mod symmetric;
mod x25519;

pub use passphrase::{
    Argon2Params, MAX_ARGON2_M_KIB, MAX_ARGON2_P, MAX_ARGON2_WORK, MAX_UNLOCK_DERIVATIONS,
    MAX_UNLOCK_WORK, Passphrase,
};
pub use stanza::{
    Secret, Stanza, holds, holds_blocking, unwrap, unwrap_blocking, wrap, wrap_blocking,
};
pub use symmetric::SymmetricKey;
pub use x25519::{Identity, Recipient};

/// The key id of a key's or an x25519 identity's text (an identity's is its recipient's).
pub fn key_id_of_text(raw: &[u8]) -> std::result::Result<String, &'static str> {
    if raw.starts_with(x25519::IDENTITY_TEXT_PREFIX.as_bytes()) {
        let text = std::str::from_utf8(raw).map_err(|_| "an identity is text")?;
        return Ok(Identity::parse(text)?.recipient().key_id());
    }
    Ok(SymmetricKey::parse(raw)?.key_id())
}
