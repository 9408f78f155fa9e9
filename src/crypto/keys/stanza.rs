//! Key stanzas: each wraps a backup's DEK for one key-encryption key (KEK), with AES-256-GCM,
//! aad = "coffre/v1/wrap" || backup_id bytes. Opening tries keys and identities by key id
//! first, then passphrases within a bounded budget of key derivation.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::passphrase::{MAX_UNLOCK_DERIVATIONS, MAX_UNLOCK_WORK};
use super::{Argon2Params, Identity, Passphrase, Recipient, SymmetricKey, x25519};
use crate::crypto::{Dek, random_array};
use crate::error::{Error, Remedy, Result};

const WRAP_AAD_PREFIX: &[u8] = b"coffre/v1/wrap";
const WRAPPED_LEN: usize = 48;

/// A key to write backups to, and (all but a recipient) to open them with.
#[derive(Clone, Debug)]
pub enum Secret {
    Key(SymmetricKey),
    Passphrase(Passphrase, Argon2Params),
    /// Opens x25519 stanzas; writes to its own recipient.
    Identity(Identity),
    /// Writes only: a job holding just this can back up but never restore.
    Recipient(Recipient),
}

/// One wrapped copy of the DEK, as stored in the manifest's `keys` array.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Stanza {
    Argon2id {
        key_id: String,
        salt: String,
        m_kib: u32,
        t: u32,
        p: u32,
        nonce: String,
        wrapped: String,
    },
    Key {
        key_id: String,
        nonce: String,
        wrapped: String,
    },
    X25519 {
        key_id: String,
        epk: String,
        wrapped: String,
    },
}

impl Stanza {
    pub fn key_id(&self) -> &str {
        match self {
            Stanza::Argon2id { key_id, .. }
            | Stanza::Key { key_id, .. }
            | Stanza::X25519 { key_id, .. } => key_id,
        }
    }

    /// The argon2id parameters of a passphrase stanza.
    pub fn argon2_params(&self) -> Option<Argon2Params> {
        match self {
            Stanza::Argon2id { m_kib, t, p, .. } => Some(Argon2Params {
                m_kib: *m_kib,
                t: *t,
                p: *p,
            }),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Stanza::Argon2id { .. } => "argon2id",
            Stanza::Key { .. } => "key",
            Stanza::X25519 { .. } => "x25519",
        }
    }
}

/// Wrap `dek` for `secret`, producing the stanza to store in the manifest.
pub fn wrap(secret: &Secret, dek: &Dek, backup_id: Uuid) -> Result<Stanza> {
    let nonce: [u8; 12] = random_array();
    match secret {
        Secret::Key(key) => Ok(Stanza::Key {
            key_id: key.key_id(),
            nonce: B64.encode(nonce),
            wrapped: B64.encode(seal_dek(key, &nonce, dek, backup_id)),
        }),
        Secret::Identity(identity) => {
            wrap(&Secret::Recipient(identity.recipient()), dek, backup_id)
        }
        Secret::Recipient(recipient) => {
            let (epk, kek) = x25519::wrap_kek(recipient)
                .ok_or_else(|| Error::config("the x25519 recipient is not a usable public key"))?;
            Ok(Stanza::X25519 {
                key_id: recipient.key_id(),
                epk: B64.encode(epk),
                wrapped: B64.encode(seal_dek(&kek, &[0u8; 12], dek, backup_id)),
            })
        }
        Secret::Passphrase(passphrase, params) => {
            let salt: [u8; 16] = random_array();
            let kek = passphrase.derive(&salt, *params)?;
            Ok(Stanza::Argon2id {
                key_id: kek.key_id(),
                salt: B64.encode(salt),
                m_kib: params.m_kib,
                t: params.t,
                p: params.p,
                nonce: B64.encode(nonce),
                wrapped: B64.encode(seal_dek(&kek, &nonce, dek, backup_id)),
            })
        }
    }
}

/// `wrap` for each of `secrets`, on a blocking thread: a passphrase takes an argon2id
/// derivation, and the runtime must stay free to handle SIGTERM meanwhile.
pub async fn wrap_blocking(secrets: &[Secret], dek: &Dek, backup_id: Uuid) -> Result<Vec<Stanza>> {
    let (secrets, dek) = (secrets.to_vec(), dek.clone());
    off_runtime(move || {
        secrets
            .iter()
            .map(|secret| wrap(secret, &dek, backup_id))
            .collect()
    })
    .await?
}

/// `holds` on a blocking thread (a passphrase is tried by deriving it).
pub async fn holds_blocking(stanzas: &[Stanza], secret: &Secret, backup_id: Uuid) -> Result<bool> {
    let (stanzas, secret) = (stanzas.to_vec(), secret.clone());
    off_runtime(move || holds(&stanzas, &secret, backup_id)).await
}

/// Run key derivation on a blocking thread: it takes seconds, and the runtime must stay free
/// to handle SIGTERM meanwhile.
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::internal(format!("key derivation stopped: {e}")))
}

/// Find a stanza that one of `secrets` opens and return the DEK.
///
/// Keys and identities are matched by key id first; then passphrases are tried on the argon2id
/// stanzas, cheapest first, within `MAX_UNLOCK_WORK` and `MAX_UNLOCK_DERIVATIONS`. Stanzas with
/// parameters beyond the limits are never derived. Key derivation blocks: call this from a
/// blocking thread (`unwrap_blocking`) in async code, so that signals are still handled.
pub fn unwrap(stanzas: &[Stanza], secrets: &[Secret], backup_id: Uuid) -> Result<Dek> {
    if !secrets.iter().any(|s| !matches!(s, Secret::Recipient(_))) {
        return Err(Error::auth(
            "no key that can open backups is configured (an x25519 recipient only writes them)",
        )
        .with_remedy(Remedy::OtherKey));
    }
    for secret in secrets
        .iter()
        .filter(|s| !matches!(s, Secret::Passphrase(..)))
    {
        for stanza in stanzas {
            if let Some(dek) = try_unwrap(stanza, secret, backup_id) {
                return Ok(dek);
            }
        }
    }
    let mut budget = UnlockBudget::default();
    let mut argon_stanzas: Vec<(&Stanza, Argon2Params)> = stanzas
        .iter()
        .filter_map(|s| s.argon2_params().map(|params| (s, params)))
        .collect();
    argon_stanzas.sort_by_key(|(_, params)| params.work());
    for secret in secrets
        .iter()
        .filter(|s| matches!(s, Secret::Passphrase(..)))
    {
        for (stanza, params) in &argon_stanzas {
            if let Err(why) = params.check() {
                budget.refused = Some(why);
                continue;
            }
            if !budget.spend(params) {
                return Err(Error::auth(format!(
                    "stopped trying passphrases on backup {backup_id} after {} key derivations ({} KiB-passes of argon2id; the limits are {MAX_UNLOCK_DERIVATIONS} derivations and {MAX_UNLOCK_WORK} KiB-passes): the manifest has {} passphrase stanzas and {} passphrases were given; open it with a key file or identity, or with its passphrase alone",
                    budget.derivations,
                    budget.work,
                    argon_stanzas.len(),
                    secrets.iter().filter(|s| matches!(s, Secret::Passphrase(..))).count()
                ))
                .with_remedy(Remedy::OtherKey));
            }
            if let Some(dek) = try_unwrap(stanza, secret, backup_id) {
                return Ok(dek);
            }
        }
    }
    let ids: Vec<&str> = stanzas.iter().map(Stanza::key_id).collect();
    let refused = budget
        .refused
        .map(|why| format!(" (a passphrase stanza was skipped: its argon2id parameters are outside the limits: {why})"))
        .unwrap_or_default();
    Err(Error::auth(format!(
        "no key in this backup's manifest opens it: the backup has keys [{}]{refused}; check the key file or passphrase ('coffre key id FILE' shows a key's id)",
        ids.join(", ")
    ))
    .with_remedy(Remedy::OtherKey))
}

/// `unwrap` on a blocking thread: key derivation takes seconds, and the runtime must stay free
/// to handle SIGTERM meanwhile.
pub async fn unwrap_blocking(
    stanzas: &[Stanza],
    secrets: &[Secret],
    backup_id: Uuid,
) -> Result<Dek> {
    let (stanzas, secrets) = (stanzas.to_vec(), secrets.to_vec());
    off_runtime(move || unwrap(&stanzas, &secrets, backup_id)).await?
}

/// What one attempt to open a backup has spent on key derivation.
#[derive(Default)]
struct UnlockBudget {
    work: u64,
    derivations: usize,
    /// Why a stanza was skipped, for the final error.
    refused: Option<String>,
}

impl UnlockBudget {
    /// Whether a derivation with `params` still fits; if so it is counted.
    fn spend(&mut self, params: &Argon2Params) -> bool {
        if self.derivations >= MAX_UNLOCK_DERIVATIONS || self.work + params.work() > MAX_UNLOCK_WORK
        {
            return false;
        }
        self.derivations += 1;
        self.work += params.work();
        true
    }
}

/// Whether `stanzas` already hold a stanza for `secret`. Keys, identities and recipients are
/// matched by key id (a recipient can write a stanza but never open one); a passphrase has a
/// different key id in every backup, so it is tried on the argon2id stanzas (blocking: see
/// `unwrap`).
pub fn holds(stanzas: &[Stanza], secret: &Secret, backup_id: Uuid) -> bool {
    let id = match secret {
        Secret::Key(key) => key.key_id(),
        Secret::Identity(identity) => identity.recipient().key_id(),
        Secret::Recipient(recipient) => recipient.key_id(),
        Secret::Passphrase(..) => {
            return unwrap(stanzas, std::slice::from_ref(secret), backup_id).is_ok();
        }
    };
    let kind = if matches!(secret, Secret::Key(_)) {
        "key"
    } else {
        "x25519"
    };
    stanzas.iter().any(|s| s.kind() == kind && s.key_id() == id)
}

/// The DEK, if `secret` opens `stanza`. Passphrase stanzas are derived as they are: check
/// their parameters first.
fn try_unwrap(stanza: &Stanza, secret: &Secret, backup_id: Uuid) -> Option<Dek> {
    match (stanza, secret) {
        (
            Stanza::Key {
                key_id,
                nonce,
                wrapped,
            },
            Secret::Key(key),
        ) if *key_id == key.key_id() => open_dek(key, nonce, wrapped, backup_id),
        (
            Stanza::Argon2id {
                salt,
                m_kib,
                t,
                p,
                nonce,
                wrapped,
                ..
            },
            Secret::Passphrase(passphrase, _),
        ) => {
            let salt = B64.decode(salt).ok()?;
            let params = Argon2Params {
                m_kib: *m_kib,
                t: *t,
                p: *p,
            };
            let kek = passphrase.derive(&salt, params).ok()?;
            open_dek(&kek, nonce, wrapped, backup_id)
        }
        (
            Stanza::X25519 {
                key_id,
                epk,
                wrapped,
            },
            Secret::Identity(identity),
        ) if *key_id == identity.recipient().key_id() => {
            let epk = <[u8; 32]>::try_from(B64.decode(epk).ok()?).ok()?;
            let kek = x25519::unwrap_kek(identity, &epk)?;
            open_dek_with_nonce(&kek, &[0u8; 12], wrapped, backup_id)
        }
        _ => None,
    }
}

fn wrap_aad(backup_id: Uuid) -> Vec<u8> {
    [WRAP_AAD_PREFIX, backup_id.as_bytes()].concat()
}

fn seal_dek(kek: &SymmetricKey, nonce: &[u8; 12], dek: &Dek, backup_id: Uuid) -> Vec<u8> {
    let cipher = Aes256Gcm::new_from_slice(kek.as_bytes()).expect("32-byte key");
    let mut buf = [0u8; WRAPPED_LEN];
    buf[..32].copy_from_slice(dek.as_bytes());
    let tag = cipher
        .encrypt_inout_detached(
            &(*nonce).into(),
            &wrap_aad(backup_id),
            (&mut buf[..32]).into(),
        )
        .expect("32 bytes always encrypt");
    buf[32..].copy_from_slice(&tag);
    buf.to_vec()
}

fn open_dek(kek: &SymmetricKey, nonce: &str, wrapped: &str, backup_id: Uuid) -> Option<Dek> {
    let nonce: [u8; 12] = B64.decode(nonce).ok()?.try_into().ok()?;
    open_dek_with_nonce(kek, &nonce, wrapped, backup_id)
}

fn open_dek_with_nonce(
    kek: &SymmetricKey,
    nonce: &[u8; 12],
    wrapped: &str,
    backup_id: Uuid,
) -> Option<Dek> {
    let wrapped: [u8; WRAPPED_LEN] = B64.decode(wrapped).ok()?.try_into().ok()?;
    let cipher = Aes256Gcm::new_from_slice(kek.as_bytes()).expect("32-byte key");
    let mut dek = Zeroizing::new([0u8; 32]);
    dek.copy_from_slice(&wrapped[..32]);
    let tag = Tag::try_from(&wrapped[32..]).expect("16 bytes");
    cipher
        .decrypt_inout_detached(
            &(*nonce).into(),
            &wrap_aad(backup_id),
            dek.as_mut_slice().into(),
            &tag,
        )
        .ok()?;
    Some(Dek::from_bytes(dek))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::MAX_ARGON2_M_KIB;

    fn fast_params() -> Argon2Params {
        Argon2Params {
            m_kib: 256,
            t: 1,
            p: 1,
        }
    }

    #[test]
    fn key_stanza_round_trips_and_binds_backup_id() {
        let key = SymmetricKey::generate();
        let dek = Dek::generate();
        let id = Uuid::new_v4();
        let secret = Secret::Key(key.clone());
        let stanza = wrap(&secret, &dek, id).unwrap();
        let opened = unwrap(
            std::slice::from_ref(&stanza),
            std::slice::from_ref(&secret),
            id,
        )
        .unwrap();
        assert_eq!(opened.as_bytes(), dek.as_bytes());
        let other = unwrap(&[stanza], &[secret], Uuid::new_v4()).unwrap_err();
        assert_eq!(other.class(), crate::error::Class::Auth);
    }

    #[test]
    fn passphrase_stanza_round_trips_and_wrong_passphrase_is_auth_error() {
        let dek = Dek::generate();
        let id = Uuid::new_v4();
        let good = Secret::Passphrase(
            Passphrase::new(Zeroizing::new("correct horse".into())).unwrap(),
            fast_params(),
        );
        let bad = Secret::Passphrase(
            Passphrase::new(Zeroizing::new("wrong horse".into())).unwrap(),
            fast_params(),
        );
        let stanza = wrap(&good, &dek, id).unwrap();
        let opened = unwrap(std::slice::from_ref(&stanza), &[good], id).unwrap();
        assert_eq!(opened.as_bytes(), dek.as_bytes());
        let err = unwrap(&[stanza], &[bad], id).unwrap_err();
        assert!(
            err.message()
                .contains("no key in this backup's manifest opens it")
        );
    }

    #[test]
    fn x25519_recipient_writes_and_only_the_identity_opens() {
        let identity = Identity::generate();
        let recipient = identity.recipient();
        let dek = Dek::generate();
        let id = Uuid::new_v4();
        let stanza = wrap(&Secret::Recipient(recipient), &dek, id).unwrap();
        assert_eq!(stanza.key_id(), recipient.key_id());
        let err = unwrap(
            std::slice::from_ref(&stanza),
            &[Secret::Recipient(recipient)],
            id,
        )
        .unwrap_err();
        assert_eq!(err.class(), crate::error::Class::Auth);
        let other = Identity::generate();
        let err = unwrap(
            std::slice::from_ref(&stanza),
            &[Secret::Identity(other)],
            id,
        )
        .unwrap_err();
        assert!(
            err.message()
                .contains("no key in this backup's manifest opens it")
        );
        let opened = unwrap(&[stanza], &[Secret::Identity(identity.clone())], id).unwrap();
        assert_eq!(opened.as_bytes(), dek.as_bytes());
        let text = identity.to_text();
        assert_eq!(Identity::parse(&text).unwrap().recipient(), recipient);
        assert_eq!(Recipient::parse(&recipient.to_text()).unwrap(), recipient);
        assert!(!format!("{identity:?}").contains(text.trim()));
    }

    fn passphrase(text: &str) -> Secret {
        Secret::Passphrase(
            Passphrase::new(Zeroizing::new(text.into())).unwrap(),
            fast_params(),
        )
    }

    fn argon2_stanza(m_kib: u32, t: u32, p: u32) -> Stanza {
        Stanza::Argon2id {
            key_id: "00".into(),
            salt: B64.encode([0u8; 16]),
            m_kib,
            t,
            p,
            nonce: B64.encode([0u8; 12]),
            wrapped: B64.encode([0u8; 48]),
        }
    }

    #[test]
    fn stanzas_beyond_the_argon2_limits_are_never_derived() {
        let dek = Dek::generate();
        let id = Uuid::new_v4();
        let good = wrap(&passphrase("p"), &dek, id).unwrap();
        // Each of these would take minutes to years or gigabytes; a good stanza after them
        // still opens at once.
        let hostile = [
            argon2_stanza(MAX_ARGON2_M_KIB + 1, 1, 1),
            argon2_stanza(256, u32::MAX, 1),
            argon2_stanza(65536, 1, u32::MAX),
            argon2_stanza(MAX_ARGON2_M_KIB, 5, 1),
        ];
        let started = std::time::Instant::now();
        let mut stanzas = hostile.to_vec();
        stanzas.push(good);
        let opened = unwrap(&stanzas, &[passphrase("p")], id).unwrap();
        assert_eq!(opened.as_bytes(), dek.as_bytes());
        let err = unwrap(&hostile, &[passphrase("p")], id).unwrap_err();
        assert_eq!(err.class(), crate::error::Class::Auth);
        assert!(err.message().contains("outside the limits"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn passphrase_attempts_stop_at_the_budget() {
        let id = Uuid::new_v4();
        let many = vec![argon2_stanza(256, 1, 1); MAX_UNLOCK_DERIVATIONS + 5];
        let err = unwrap(&many, &[passphrase("p")], id).unwrap_err();
        assert!(
            err.message().contains("stopped trying passphrases"),
            "{err}"
        );
        let mut budget = UnlockBudget::default();
        let big = Argon2Params {
            m_kib: MAX_ARGON2_M_KIB,
            t: 4,
            p: 1,
        };
        // Two derivations at the largest cost fit (a default stanza and a costly one, or two
        // passphrases), a third does not.
        assert!(budget.spend(&big) && budget.spend(&big));
        assert!(!budget.spend(&fast_params()), "the work budget is spent");
    }
}
