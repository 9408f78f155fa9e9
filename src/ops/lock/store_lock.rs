//! The lock as an object in the store (`_locks/JOB.json`), created only if absent (the store's
//! conditional create).

use chrono::Utc;

use super::{Acquired, Held, LockGuard, LockRecord};
use crate::error::{Error, Result};
use crate::store::Store;

fn encode(record: &LockRecord) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|e| Error::internal(format!("lock record: {e}")))
}

fn decode(job: &str, bytes: &[u8]) -> Result<LockRecord> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::integrity(format!(
            "the lock of job '{job}' is not a lock record ({e}): delete it from the store's _locks/ if no run of the job is going on"
        ))
    })
}

pub(super) async fn acquire<'a>(store: &'a Store, job: &str, holder: &str) -> Result<Acquired<'a>> {
    // Twice at most: once as it is, once after removing an expired lock.
    let mut took_over = None;
    for _ in 0..2 {
        let record = LockRecord::new(holder, Utc::now());
        if store.create_lock(job, encode(&record)?).await? {
            return Ok(Acquired::Taken(LockGuard {
                job: job.to_string(),
                record,
                held: Held::Store(store),
                took_over,
            }));
        }
        let Some(bytes) = store.read_lock(job).await? else {
            continue; // released meanwhile
        };
        let current = decode(job, &bytes)?;
        if current.expires_at > Utc::now() {
            return Ok(Acquired::Busy(current));
        }
        tracing::warn!(
            "the lock of job '{job}' held by {} expired at {}: taking it over",
            current.holder,
            current.expires_at
        );
        store.delete_lock(job).await?;
        took_over = Some(current);
    }
    match store.read_lock(job).await? {
        Some(bytes) => Ok(Acquired::Busy(decode(job, &bytes)?)),
        None => Err(Error::store(format!(
            "the lock of job '{job}' keeps appearing and disappearing: another process is taking it"
        ))),
    }
}

pub(super) async fn renew(store: &Store, job: &str, record: &LockRecord) -> Result<()> {
    check_still_held(store, job, record).await?;
    store.replace_lock(job, encode(record)?).await
}

pub(super) async fn release(store: &Store, job: &str, record: &LockRecord) -> Result<()> {
    check_still_held(store, job, record).await?;
    store.delete_lock(job).await
}

async fn check_still_held(store: &Store, job: &str, record: &LockRecord) -> Result<()> {
    let current = match store.read_lock(job).await? {
        Some(bytes) => decode(job, &bytes)?,
        None => return Ok(()),
    };
    if current.holder != record.holder {
        return Err(Error::store(format!(
            "the lock of job '{job}' was taken over by {} (it had expired)",
            current.holder
        )));
    }
    Ok(())
}
