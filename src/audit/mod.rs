//! The audit trail: one event per thing done to the backups and credentials (a backup, verify,
//! drill, restore, prune, key change, job run, lock takeover, rotation step, incident), each a
//! JSON object naming what, who, why (the trigger), the outcome, and never a secret value.
//! Events go to whoever watches the run (a log line, or JSON lines on stdout for `rotate`) and
//! to the store, where they form one hash-linked chain (`chain`), so a deleted, edited or
//! reordered event is found by `coffre audit verify` (`trail`), with or without Object Lock.

mod chain;
mod event;
mod identity;
pub mod trail;

pub use event::{Deleted, Event, KINDS, What};
pub use identity::{Origin, actor, stable_id};

use chrono::SecondsFormat;
use sha2::{Digest, Sha256};
use std::sync::Mutex;

use crate::config::ObjectLockConfig;
use crate::store::Store;
use chain::Chain;

/// A short, one-way fingerprint of a secret value: tells two credentials apart in an audit
/// trail without revealing either (SHA-256 over a coffre-specific prefix, first 16 hex digits).
pub fn fingerprint(value: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"coffre/v1/fingerprint\0")
        .chain_update(value.as_bytes())
        .finalize();
    format!("sha256:{}", &hex::encode(digest)[..16])
}

/// How many of the trail's last events a replayed event is looked for in (a rotation's events
/// owed by a killed run are written again by the run that resumes it, a few events later).
const REPLAY_WINDOW: u64 = 256;

/// Where events go, and who they are from.
pub struct Audit<'a> {
    chain: Option<Chain<'a>>,
    origin: Origin,
    watcher: Box<dyn Fn(&Event) + Send + Sync>,
    /// Events the store would not take: the run reports them at the end.
    unstored: Mutex<Vec<String>>,
}

impl<'a> Audit<'a> {
    /// Events go to `watcher`, and to `store` when given (locked as `lock` says); they are
    /// from the person or service account running this process, by hand until `triggered_by`
    /// says otherwise.
    pub fn new(
        store: Option<&'a Store>,
        lock: Option<ObjectLockConfig>,
        watcher: impl Fn(&Event) + Send + Sync + 'static,
    ) -> Self {
        Self {
            chain: store.map(|store| Chain::new(store, lock)),
            origin: Origin::current("manual"),
            watcher: Box::new(watcher),
            unstored: Mutex::new(Vec::new()),
        }
    }

    /// Events that log each as a JSON line at info level (`coffre::audit`), on stderr: stdout
    /// may be a restore's data or a program's JSON.
    pub fn logged(store: &'a Store, lock: Option<ObjectLockConfig>) -> Self {
        Self::new(Some(store), lock, |event| {
            tracing::info!(
                target: "coffre::audit",
                "{}",
                serde_json::to_string(event).unwrap_or_default()
            );
        })
    }

    /// What started the events that follow: `schedule`, `manual` or `incident`
    /// (`COFFRE_TRIGGER` overrides it).
    pub fn triggered_by(mut self, trigger: &str) -> Self {
        self.origin.trigger = identity::trigger(trigger);
        self
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// A new event of this process: now, by its actor, with its trigger.
    pub fn event(&self, what: What, outcome: &str, detail: Option<String>) -> Event {
        Event::new(&self.origin, what, outcome, detail)
    }

    /// Record one event: store it (it then has its place in the trail) and show it. A store
    /// failure does not stop the work it reports (a half-done rotation is worse than a late
    /// audit record): it is kept and reported at the end.
    pub async fn record(&self, mut event: Event) {
        if let Some(chain) = &self.chain
            && let Err(e) = chain.append(&mut event).await
        {
            self.unstore(e);
        }
        (self.watcher)(&event);
    }

    /// Record an event that an earlier, killed run may have stored already (a rotation's owed
    /// events): not stored twice when its id is among the trail's last events.
    pub async fn record_replayed(&self, event: Event) {
        if let Some(chain) = &self.chain {
            match chain.recently_holds(&event.id, REPLAY_WINDOW).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!("looking for an owed audit event in the trail: {e}"),
            }
        }
        self.record(event).await;
    }

    fn unstore(&self, e: crate::error::Error) {
        tracing::warn!("audit event not stored: {e}");
        self.unstored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(e.message().to_string());
    }

    /// Store a document beside the events (an incident's report) under
    /// `_audit/KIND/YYYY/MM/DD/TIME-NAME.json`, created never overwritten, locked as events
    /// are; returns its key (below `_audit/`), which the event that reports it names.
    pub async fn store_document(
        &self,
        kind: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> crate::error::Result<Option<String>> {
        let Some(chain) = &self.chain else {
            return Ok(None);
        };
        let at = crate::clock::now();
        let key = format!(
            "{kind}/{}/{}-{name}.json",
            at.format("%Y/%m/%d"),
            at.to_rfc3339_opts(SecondsFormat::Micros, true)
        );
        chain.store_document(&key, bytes, at).await?;
        Ok(Some(key))
    }

    /// The store errors of events that were not stored.
    pub fn unstored(&self) -> Vec<String> {
        self.unstored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// `sha256:` and the hex SHA-256 of `bytes`: how an event names the one before it.
pub fn link_hash(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprints_tell_values_apart_without_showing_them() {
        let a = super::fingerprint("hunter2-secret");
        assert_eq!(a, super::fingerprint("hunter2-secret"));
        assert_ne!(a, super::fingerprint("hunter3-secret"));
        assert!(a.starts_with("sha256:") && a.len() == 23 && !a.contains("hunter"));
    }
}
