//! X25519 identities and recipients, for write-only backups: a job holding only the recipient
//! (public key) wraps each backup's DEK to it and can never open one; the identity, kept offline,
//! opens them. Each stanza uses a fresh ephemeral key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use super::SymmetricKey;
use super::symmetric::key_id_of;
use crate::crypto::random_array;

pub(super) const IDENTITY_TEXT_PREFIX: &str = "coffre-x25519-identity-v1:";
const RECIPIENT_TEXT_PREFIX: &str = "coffre-x25519-v1:";
const INFO_X25519: &[u8] = b"coffre/v1/x25519";

/// An X25519 identity: opens backups written to its recipient. Zeroized on drop.
#[derive(Clone)]
pub struct Identity(x25519_dalek::StaticSecret);

/// An X25519 recipient (public key): writes backups it cannot open.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Recipient(x25519_dalek::PublicKey);

impl Identity {
    pub fn generate() -> Self {
        let bytes = Zeroizing::new(random_array::<32>());
        Self(x25519_dalek::StaticSecret::from(*bytes))
    }

    pub fn recipient(&self) -> Recipient {
        Recipient(x25519_dalek::PublicKey::from(&self.0))
    }

    /// A secret of 32 bytes derived from this identity for `info` (HKDF-SHA-256, empty salt).
    pub fn derive(&self, info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        let bytes = Zeroizing::new(self.0.to_bytes());
        crate::crypto::hkdf_sha256(bytes.as_ref(), &[], info, out.as_mut());
        out
    }

    /// `coffre-x25519-identity-v1:` + base64, for identity files.
    pub fn to_text(&self) -> Zeroizing<String> {
        let bytes = Zeroizing::new(self.0.to_bytes());
        Zeroizing::new(format!(
            "{IDENTITY_TEXT_PREFIX}{}\n",
            B64.encode(bytes.as_ref())
        ))
    }

    pub fn parse(text: &str) -> std::result::Result<Self, &'static str> {
        let b64 = text
            .trim()
            .strip_prefix(IDENTITY_TEXT_PREFIX)
            .ok_or("an identity file starts with 'coffre-x25519-identity-v1:'")?;
        let bytes = Zeroizing::new(
            B64.decode(b64)
                .map_err(|_| "the identity's base64 is invalid")?,
        );
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| "the identity does not decode to 32 bytes")?;
        Ok(Self(x25519_dalek::StaticSecret::from(array)))
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.recipient().key_id())
    }
}

impl Recipient {
    /// Hex of the first 8 bytes of SHA-256("coffre/v1/key-id" || public key).
    pub fn key_id(&self) -> String {
        key_id_of(self.0.as_bytes())
    }

    pub fn to_text(&self) -> String {
        format!("{RECIPIENT_TEXT_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }

    pub fn parse(text: &str) -> std::result::Result<Self, &'static str> {
        let b64 = text
            .trim()
            .strip_prefix(RECIPIENT_TEXT_PREFIX)
            .ok_or("a recipient starts with 'coffre-x25519-v1:'")?;
        let bytes: [u8; 32] = B64
            .decode(b64)
            .map_err(|_| "the recipient's base64 is invalid")?
            .try_into()
            .map_err(|_| "the recipient does not decode to 32 bytes")?;
        Ok(Self(x25519_dalek::PublicKey::from(bytes)))
    }
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipient({})", self.key_id())
    }
}

/// A fresh ephemeral key for `recipient`: the KEK that wraps a DEK to it, and the ephemeral
/// public key the stanza stores (`epk`). None for a public key that is not usable.
pub(super) fn wrap_kek(recipient: &Recipient) -> Option<([u8; 32], SymmetricKey)> {
    let ephemeral = x25519_dalek::StaticSecret::from(*Zeroizing::new(random_array::<32>()));
    let epk = x25519_dalek::PublicKey::from(&ephemeral);
    let kek = x25519_kek(
        &ephemeral,
        &recipient.0,
        epk.as_bytes(),
        recipient.0.as_bytes(),
    )?;
    Some((*epk.as_bytes(), kek))
}

/// The KEK of a stanza written to `identity`'s recipient with ephemeral key `epk`.
pub(super) fn unwrap_kek(identity: &Identity, epk: &[u8; 32]) -> Option<SymmetricKey> {
    let recipient = identity.recipient();
    x25519_kek(
        &identity.0,
        &x25519_dalek::PublicKey::from(*epk),
        epk,
        recipient.0.as_bytes(),
    )
}

/// KEK = HKDF(X25519(secret, public), epk || recipient, "coffre/v1/x25519", 32).
fn x25519_kek(
    secret: &x25519_dalek::StaticSecret,
    public: &x25519_dalek::PublicKey,
    epk: &[u8; 32],
    recipient: &[u8; 32],
) -> Option<SymmetricKey> {
    let shared = secret.diffie_hellman(public);
    if !shared.was_contributory() {
        return None; // a low-order point: the "shared" secret would be public
    }
    let mut kek = Zeroizing::new([0u8; 32]);
    crate::crypto::hkdf_sha256(
        shared.as_bytes(),
        &[epk.as_slice(), recipient].concat(),
        &[INFO_X25519],
        kek.as_mut(),
    );
    Some(SymmetricKey::from_bytes(kek))
}
