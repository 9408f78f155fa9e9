//! Sessions (docs/FORMAT.md, "Session"): the key of one backup's new chunks, wrapped by the
//! v1 stanzas for every configured key, and the job's dedup secret wrapped under it. A
//! session outlives its backup while any backup still uses its chunks; key changes rewrite
//! its stanzas and nothing else.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::secret::{DedupSecret, SessionKeys};
use crate::crypto::Dek;
use crate::crypto::keys::Stanza;
use crate::error::{Error, Result};
use crate::manifest::rfc3339;

pub const FORMAT: &str = "coffre-session/2";
/// Where sessions are, in the job's directory.
pub const DIR: &str = "_sessions";
/// Sessions are a few KiB; a larger object is not one.
pub const MAX_BYTES: u64 = 1 << 20;
const DEDUP_AAD: &[u8] = b"coffre/v2/dedup";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub format: String,
    pub session_id: Uuid,
    pub job: String,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// The job's dedup secret, sealed under the session's key.
    pub dedup: String,
    pub keys: Vec<Stanza>,
}

/// The object name of session `id`.
pub fn name(id: Uuid) -> String {
    format!("{id}.json")
}

impl Session {
    /// A new session of `job` whose key is `dek`, carrying `dedup` for its readers.
    pub fn new(
        job: &str,
        session_id: Uuid,
        dek: &Dek,
        dedup: &DedupSecret,
        keys: Vec<Stanza>,
    ) -> Self {
        let wrap_key = SessionKeys::new(dek, session_id).dedup_wrap;
        let mut sealed = dedup.as_bytes().to_vec();
        let tag = Aes256Gcm::new_from_slice(wrap_key.as_ref())
            .expect("32-byte key")
            .encrypt_inout_detached(
                &[0u8; 12].into(),
                &aad(session_id),
                sealed.as_mut_slice().into(),
            )
            .expect("32 bytes always encrypt");
        sealed.extend_from_slice(&tag);
        Self {
            format: FORMAT.into(),
            session_id,
            job: job.into(),
            created_at: Utc::now(),
            dedup: B64.encode(sealed),
            keys,
        }
    }

    /// Parse a stored session; `id` and `job` are where it was found.
    pub fn parse(bytes: &[u8], id: Uuid, job: &str) -> Result<Self> {
        let bad = |why: String| Error::integrity(format!("session {id} of job '{job}': {why}"));
        if crate::manifest::json_depth_exceeds(bytes, crate::manifest::MAX_JSON_DEPTH) {
            return Err(bad("nests too deep to be a session".into()));
        }
        let session: Session =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a coffre session: {e}")))?;
        if session.format != FORMAT {
            return Err(bad(format!(
                "format '{}' is not '{FORMAT}'",
                session.format
            )));
        }
        if session.session_id != id || session.job != job {
            return Err(bad(format!(
                "it names session {} of job '{}'",
                session.session_id, session.job
            )));
        }
        Ok(session)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a session serializes")
    }

    /// The job's dedup secret, with the session's key.
    pub fn dedup_secret(&self, dek: &Dek) -> Result<DedupSecret> {
        let bad = || {
            Error::integrity(format!(
                "session {}: its dedup secret does not open with its key (tampered or damaged)",
                self.session_id
            ))
        };
        let sealed = B64.decode(&self.dedup).map_err(|_| bad())?;
        if sealed.len() != 48 {
            return Err(bad());
        }
        let wrap_key = SessionKeys::new(dek, self.session_id).dedup_wrap;
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(&sealed[..32]);
        Aes256Gcm::new_from_slice(wrap_key.as_ref())
            .expect("32-byte key")
            .decrypt_inout_detached(
                &[0u8; 12].into(),
                &aad(self.session_id),
                secret.as_mut_slice().into(),
                &Tag::try_from(&sealed[32..]).expect("16 bytes"),
            )
            .map_err(|_| bad())?;
        Ok(DedupSecret::from_bytes(secret))
    }
}

fn aad(session_id: Uuid) -> Vec<u8> {
    [DEDUP_AAD, session_id.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_carries_the_dedup_secret_for_its_key_only() {
        let dek = Dek::generate();
        let id = Uuid::new_v4();
        let d = DedupSecret::random();
        let session = Session::new("app", id, &dek, &d, Vec::new());
        let parsed = Session::parse(&session.to_bytes(), id, "app").unwrap();
        assert_eq!(parsed.dedup_secret(&dek).unwrap().as_bytes(), d.as_bytes());
        assert!(parsed.dedup_secret(&Dek::generate()).is_err());
        assert!(Session::parse(&session.to_bytes(), Uuid::new_v4(), "app").is_err());
        assert!(Session::parse(&session.to_bytes(), id, "other").is_err());
    }
}
