//! The keys of format v2: the job's dedup secret `D`, which names chunks and finds them again
//! (held by every writer of the job, write-only ones included), and each session's keys, from
//! the session's DEK (held by no writer but the one that made it).

use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::keys::{Secret, SymmetricKey};
use crate::crypto::{Dek, hkdf_sha256, random_array};
use crate::error::{Error, Result};

const INFO_CHUNK_ID: &[u8] = b"coffre/v2/chunk-id";
const INFO_INDEX: &[u8] = b"coffre/v2/index";
const INFO_CDC: &[u8] = b"coffre/v2/cdc";
const INFO_RECIPE: &[u8] = b"coffre/v2/recipe";
const INFO_CHUNK: &[u8] = b"coffre/v2/chunk";
const INFO_DEDUP_WRAP: &[u8] = b"coffre/v2/dedup-wrap";
const DEDUP_ID_PREFIX: &[u8] = b"coffre/v2/dedup-id";
const INFO_FOR_JOB: &[u8] = b"coffre/v2/dedup";
const PASSPHRASE_SALT: &[u8] = b"coffre/v2/dedup-salt";

/// Where a job's dedup secret came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupSource {
    /// `[encryption] dedup_key`.
    DedupKey,
    /// The first key, identity or passphrase the job encrypts to.
    EncryptionKey,
    /// Nothing to derive it from (only recipients): fresh for each backup, which then dedups
    /// only within itself.
    ThisBackupOnly,
}

/// The dedup secret of `job`: from the dedup key, else from the first key, identity or
/// passphrase in `secrets` (the same every run, so backups dedup against each other), else
/// fresh for this backup. Changing what it derives from makes the next backup store
/// everything once.
pub async fn for_job(
    job: &str,
    dedup_key: Option<&SymmetricKey>,
    secrets: &[Secret],
) -> Result<(DedupSecret, DedupSource)> {
    let info: [&[u8]; 2] = [INFO_FOR_JOB, job.as_bytes()];
    if let Some(key) = dedup_key {
        return Ok((DedupSecret(key.derive(&info)), DedupSource::DedupKey));
    }
    for secret in secrets {
        let derived = match secret {
            Secret::Key(key) => key.derive(&info),
            Secret::Identity(identity) => identity.derive(&info),
            Secret::Passphrase(passphrase, params) => {
                let salt = Sha256::new()
                    .chain_update(PASSPHRASE_SALT)
                    .chain_update(job.as_bytes())
                    .finalize();
                let (passphrase, params) = (passphrase.clone(), *params);
                let key =
                    tokio::task::spawn_blocking(move || passphrase.derive(&salt[..16], params))
                        .await
                        .map_err(|e| Error::internal(format!("key derivation stopped: {e}")))??;
                key.derive(&info)
            }
            Secret::Recipient(_) => continue,
        };
        return Ok((DedupSecret(derived), DedupSource::EncryptionKey));
    }
    Ok((DedupSecret::random(), DedupSource::ThisBackupOnly))
}

/// A chunk's name: BLAKE3-keyed(K_id, plaintext).
pub type ChunkId = [u8; 32];

/// The dedup secret of a job. Zeroized on drop; `Debug` shows only its id.
#[derive(Clone)]
pub struct DedupSecret(Zeroizing<[u8; 32]>);

impl DedupSecret {
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    /// A secret for this backup only: chunks dedup within it, never with another.
    pub fn random() -> Self {
        Self(Zeroizing::new(random_array()))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn derive(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        hkdf_sha256(self.0.as_ref(), &[], &[info], out.as_mut());
        out
    }

    /// The key of chunk ids.
    pub fn id_key(&self) -> IdKey {
        IdKey(self.derive(INFO_CHUNK_ID))
    }

    /// The key of recipes and pack tables.
    pub fn index_key(&self) -> Zeroizing<[u8; 32]> {
        self.derive(INFO_INDEX)
    }

    /// The chunker's gear-table seed.
    pub fn cdc_seed(&self) -> u64 {
        let mut out = [0u8; 8];
        hkdf_sha256(self.0.as_ref(), &[], &[INFO_CDC], &mut out);
        u64::from_be_bytes(out)
    }

    /// The DEK of `backup_id`'s recipe.
    pub fn recipe_dek(&self, backup_id: Uuid) -> Dek {
        let mut out = Zeroizing::new([0u8; 32]);
        hkdf_sha256(
            self.index_key().as_ref(),
            backup_id.as_bytes(),
            &[INFO_RECIPE],
            out.as_mut(),
        );
        Dek::from_bytes(out)
    }

    /// What manifests record to tell two secrets apart (never the secret).
    pub fn key_id(&self) -> String {
        let digest = Sha256::new()
            .chain_update(DEDUP_ID_PREFIX)
            .chain_update(self.0.as_ref())
            .finalize();
        hex::encode(&digest[..8])
    }
}

impl std::fmt::Debug for DedupSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DedupSecret({})", self.key_id())
    }
}

/// The key that names chunks.
#[derive(Clone)]
pub struct IdKey(Zeroizing<[u8; 32]>);

impl IdKey {
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        *blake3::keyed_hash(&self.0, plaintext).as_bytes()
    }
}

/// The keys a session's DEK gives.
pub struct SessionKeys {
    /// Encrypts the session's chunks.
    pub chunk: Zeroizing<[u8; 32]>,
    /// Wraps the job's dedup secret in the session object.
    pub dedup_wrap: Zeroizing<[u8; 32]>,
}

impl SessionKeys {
    pub fn new(dek: &Dek, session_id: Uuid) -> Self {
        let derive = |info: &[u8]| {
            let mut out = Zeroizing::new([0u8; 32]);
            hkdf_sha256(dek.as_bytes(), session_id.as_bytes(), &[info], out.as_mut());
            out
        };
        Self {
            chunk: derive(INFO_CHUNK),
            dedup_wrap: derive(INFO_DEDUP_WRAP),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ_and_ids_are_keyed() {
        let d = DedupSecret::from_bytes(Zeroizing::new([1u8; 32]));
        let other = DedupSecret::from_bytes(Zeroizing::new([2u8; 32]));
        assert_ne!(d.index_key().as_ref(), d.id_key().0.as_ref());
        assert_ne!(d.cdc_seed(), other.cdc_seed());
        assert_ne!(
            d.id_key().chunk_id(b"ward 7"),
            other.id_key().chunk_id(b"ward 7")
        );
        assert_eq!(
            d.id_key().chunk_id(b"ward 7"),
            d.id_key().chunk_id(b"ward 7")
        );
        assert_ne!(d.key_id(), other.key_id());
        assert!(!format!("{d:?}").contains("0101"));
        let id = Uuid::new_v4();
        assert_ne!(
            d.recipe_dek(id).as_bytes(),
            d.recipe_dek(Uuid::new_v4()).as_bytes()
        );
    }
}
