//! Appending to the trail. Event N is the object `_audit/events/N.json`, created only if no
//! object is there (the store's conditional create), and names the SHA-256 of event N-1's
//! bytes. Two writers that both read N-1 as the end race for N: one creates it, the other
//! finds it taken, reads the new end and writes N+1. So the trail is one total order, no
//! event is lost, and removing, editing or moving an event breaks a link `trail::verify`
//! finds. Within a process, one writer at a time, which remembers where the trail ends.

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use std::collections::HashSet;
use tokio::sync::Mutex;

use super::{Event, link_hash};
use crate::config::ObjectLockConfig;
use crate::error::{Error, Result};
use crate::store::Store;

/// Give up after this many places found taken in a row (a trail written that fast is not one
/// coffre writes).
const MAX_RACES: u32 = 200;

/// Events read at once when looking back for a replayed event.
const READ_CONCURRENCY: usize = 32;

/// Where the trail ends: the next free place, and the link to the event before it.
#[derive(Clone, Debug)]
struct End {
    next: u64,
    prev: Option<String>,
}

pub(super) struct Chain<'a> {
    store: &'a Store,
    lock: Option<ObjectLockConfig>,
    end: Mutex<Option<End>>,
    /// The ids of the trail's last events when first asked (`recently_holds`), and of every
    /// event appended here since: read once per process, not once per question.
    recent: Mutex<Option<HashSet<String>>>,
}

impl<'a> Chain<'a> {
    pub fn new(store: &'a Store, lock: Option<ObjectLockConfig>) -> Self {
        Self {
            store,
            lock,
            end: Mutex::new(None),
            recent: Mutex::new(None),
        }
    }

    /// Store `event` at the end of the trail, setting its `seq` and `prev`.
    pub async fn append(&self, event: &mut Event) -> Result<()> {
        let mut end = self.end.lock().await;
        let mut known = None;
        for _ in 0..MAX_RACES {
            let at = match end.take() {
                Some(at) => at,
                None => find_end(self.store, known).await?,
            };
            event.seq = Some(at.next);
            event.prev = at.prev.clone();
            let bytes = serde_json::to_vec(event).expect("an event serializes");
            if self.create(at.next, &bytes).await? {
                *end = Some(End {
                    next: at.next + 1,
                    prev: Some(link_hash(&bytes)),
                });
                if let Some(lock) = &self.lock {
                    let until = event.at + chrono::Duration::days(i64::from(lock.days));
                    self.store
                        .lock_audit_event(at.next, (lock.mode, until))
                        .await?;
                }
                if let Some(recent) = self.recent.lock().await.as_mut() {
                    recent.insert(event.id.clone());
                }
                if let Err(e) = self.store.put_audit_head_hint(at.next).await {
                    tracing::debug!("audit trail: the hint of its end: {e}");
                }
                return Ok(());
            }
            // Another writer took this place: the trail goes on after it.
            known = Some(at.next);
        }
        Err(Error::store(format!(
            "the audit trail: {MAX_RACES} places in a row were taken by other writers"
        )))
    }

    /// Create event `seq`, retrying once after a store error. True when it is ours: created
    /// now, or by an attempt whose answer was lost (the same bytes are there).
    async fn create(&self, seq: u64, bytes: &[u8]) -> Result<bool> {
        let created = match self.store.create_audit_event(seq, bytes.to_vec()).await {
            Ok(created) => created,
            Err(e) => {
                tracing::debug!("audit event {seq}: {e}; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                self.store.create_audit_event(seq, bytes.to_vec()).await?
            }
        };
        Ok(created || self.store.read_audit_event(seq).await?.as_deref() == Some(bytes))
    }

    /// Whether an event with `id` is among the trail's last `window` events (as they were when
    /// first asked) or was appended here since.
    pub async fn recently_holds(&self, id: &str, window: u64) -> Result<bool> {
        if let Some(ids) = self.recent.lock().await.as_ref() {
            return Ok(ids.contains(id));
        }
        // Read without holding `recent`: `append` takes `end`, then `recent`.
        let last = self.last_ids(window).await?;
        let mut recent = self.recent.lock().await;
        let ids = recent.get_or_insert_with(HashSet::new);
        ids.extend(last);
        Ok(ids.contains(id))
    }

    /// The ids of the trail's last `window` events, read a few at once.
    async fn last_ids(&self, window: u64) -> Result<HashSet<String>> {
        let mut end = self.end.lock().await;
        let at = match end.take() {
            Some(at) => at,
            None => find_end(self.store, None).await?,
        };
        let next = at.next;
        *end = Some(at);
        drop(end);
        let reads = (next.saturating_sub(window)..next).map(|seq| self.store.read_audit_event(seq));
        let events: Vec<Option<Vec<u8>>> = futures::stream::iter(reads)
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(events
            .iter()
            .flatten()
            .filter_map(|bytes| serde_json::from_slice::<Event>(bytes).ok())
            .map(|e| e.id)
            .collect())
    }

    /// Store a document beside the trail, locked as its events are.
    pub async fn store_document(&self, key: &str, bytes: Vec<u8>, at: DateTime<Utc>) -> Result<()> {
        let lock = self
            .lock
            .as_ref()
            .map(|l| (l.mode, at + chrono::Duration::days(i64::from(l.days))));
        self.store.put_audit_document(key, bytes, lock).await
    }
}

/// Where the trail ends, listing only what follows `known` (else the hint a writer left):
/// the whole trail is listed only when neither says where an event is.
async fn find_end(store: &Store, known: Option<u64>) -> Result<End> {
    let start = match known {
        Some(seq) => Some(seq),
        None => store.audit_head_hint().await,
    };
    if let Some(end) = end_after(store, start).await? {
        return Ok(end);
    }
    // The hint named an event that is not there: list the whole trail.
    end_after(store, None)
        .await?
        .ok_or_else(|| Error::store("the audit trail changed while its end was read"))
}

/// The end of the trail at or after `start` (an event known to be there); None when `start`
/// is not there after all.
async fn end_after(store: &Store, start: Option<u64>) -> Result<Option<End>> {
    let listed = store.audit_objects(start).await?;
    let Some(last) = listed.seqs.last().copied().or(start) else {
        return Ok(Some(End {
            next: 0,
            prev: None,
        }));
    };
    Ok(store.read_audit_event(last).await?.map(|bytes| End {
        next: last + 1,
        prev: Some(link_hash(&bytes)),
    }))
}
