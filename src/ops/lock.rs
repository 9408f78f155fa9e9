//! One run of a job at a time, across pods and machines: a lock object in the store, created
//! only if absent (the store's conditional create), naming its holder and when it expires. The
//! holder extends it while it runs; a holder that dies without releasing it (SIGKILL, a lost
//! node) leaves a lock that expires, and the next run takes it over.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::Store;

/// How long a lock lasts unless renewed; it is renewed every third of that.
pub const LOCK_TTL: Duration = Duration::from_secs(600);

/// What a lock object holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// Who holds it: host (the pod's name in a cluster), process id and a random tag.
    pub holder: String,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The result of trying to take a lock.
pub enum Acquired<'a> {
    Taken(LockGuard<'a>),
    /// Someone else holds it until it expires.
    Busy(LockRecord),
}

/// A lock this process holds. Release it when done; if dropped instead, it expires.
pub struct LockGuard<'a> {
    store: &'a Store,
    name: String,
    record: LockRecord,
}

/// Who this process is, for lock records: host, pid and a random tag (pids repeat across pods).
pub fn holder_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{host}/{}/{tag}", std::process::id())
}

fn new_record(holder: &str, now: DateTime<Utc>) -> LockRecord {
    LockRecord {
        holder: holder.to_string(),
        acquired_at: now,
        expires_at: now + chrono::Duration::from_std(LOCK_TTL).expect("a short duration"),
    }
}

fn encode(record: &LockRecord) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|e| Error::internal(format!("lock record: {e}")))
}

fn decode(name: &str, bytes: &[u8]) -> Result<LockRecord> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::integrity(format!(
            "the lock of job '{name}' is not a lock record ({e}): delete it from the store's _locks/ if no run of the job is going on"
        ))
    })
}

/// Take the lock `name` for `holder`, taking over one that expired.
pub async fn acquire<'a>(store: &'a Store, name: &str, holder: &str) -> Result<Acquired<'a>> {
    // Twice at most: once as it is, once after removing an expired lock.
    for _ in 0..2 {
        let record = new_record(holder, Utc::now());
        if store.create_lock(name, encode(&record)?).await? {
            return Ok(Acquired::Taken(LockGuard {
                store,
                name: name.to_string(),
                record,
            }));
        }
        let Some(bytes) = store.read_lock(name).await? else {
            continue; // released meanwhile
        };
        let current = decode(name, &bytes)?;
        if current.expires_at > Utc::now() {
            return Ok(Acquired::Busy(current));
        }
        tracing::warn!(
            "the lock of job '{name}' held by {} expired at {}: taking it over",
            current.holder,
            current.expires_at
        );
        store.delete_lock(name).await?;
    }
    match store.read_lock(name).await? {
        Some(bytes) => Ok(Acquired::Busy(decode(name, &bytes)?)),
        None => Err(Error::store(format!(
            "the lock of job '{name}' keeps appearing and disappearing: another process is taking it"
        ))),
    }
}

impl LockGuard<'_> {
    pub fn record(&self) -> &LockRecord {
        &self.record
    }

    /// Extend the lock; an error when someone else took it over (it had expired).
    pub async fn renew(&mut self) -> Result<()> {
        self.check_still_held().await?;
        self.record.expires_at =
            Utc::now() + chrono::Duration::from_std(LOCK_TTL).expect("a short duration");
        self.store
            .replace_lock(&self.name, encode(&self.record)?)
            .await
    }

    /// Release the lock, unless someone else holds it by now.
    pub async fn release(self) -> Result<()> {
        self.check_still_held().await?;
        self.store.delete_lock(&self.name).await
    }

    async fn check_still_held(&self) -> Result<()> {
        let current = match self.store.read_lock(&self.name).await? {
            Some(bytes) => decode(&self.name, &bytes)?,
            None => return Ok(()),
        };
        if current.holder != self.record.holder {
            return Err(Error::store(format!(
                "the lock of job '{}' was taken over by {} (it had expired)",
                self.name, current.holder
            )));
        }
        Ok(())
    }
}
