//! Audit events: one per rotation state transition, each a JSON object naming the rotation,
//! what started it and who, the target, the transition and the fingerprint of the new
//! credential (never a value). Each event goes to whoever watches the run (the command line
//! prints JSON lines) and to the object store, one object per event under `_audit/`, so a year
//! of rotations can be shown to an auditor, and kept unalterable with S3 Object Lock.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Mutex;

use crate::config::ObjectLockConfig;
use crate::store::Store;

/// One transition of one rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Always "rotation" (an incident's report is a document beside the events).
    pub event: String,
    pub at: DateTime<Utc>,
    pub rotation_id: uuid::Uuid,
    pub trigger: String,
    pub actor: String,
    pub target: String,
    /// Whose credential changed: the database user, "key", the certificate's first name.
    pub user: String,
    pub from: String,
    pub to: String,
    /// `fingerprint()` of the new credential.
    pub fingerprint: String,
    /// Why, for FAILED and NEEDS_HUMAN; what was skipped, for steps already done.
    pub detail: Option<String>,
}

/// A short, one-way fingerprint of a secret value: tells two credentials apart in an audit
/// trail without revealing either (SHA-256 over a coffre-specific prefix, first 16 hex digits).
pub fn fingerprint(value: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"coffre/v1/fingerprint\0")
        .chain_update(value.as_bytes())
        .finalize();
    format!("sha256:{}", &hex::encode(digest)[..16])
}

/// Where events go.
pub struct Audit<'a> {
    store: Option<&'a Store>,
    /// Object Lock for each stored event, when the config asks for it.
    lock: Option<ObjectLockConfig>,
    watcher: Box<dyn Fn(&Event) + Send + Sync>,
    /// Events the store would not take: the run reports them at the end.
    unstored: Mutex<Vec<String>>,
}

impl<'a> Audit<'a> {
    /// Events go to `watcher`, and to `store` when given (locked as `lock` says).
    pub fn new(
        store: Option<&'a Store>,
        lock: Option<ObjectLockConfig>,
        watcher: impl Fn(&Event) + Send + Sync + 'static,
    ) -> Self {
        Self {
            store,
            lock,
            watcher: Box::new(watcher),
            unstored: Mutex::new(Vec::new()),
        }
    }

    /// Record one event. A store failure does not stop the rotation (a half-done rotation is
    /// worse than a late audit record): it is kept, retried once, and reported.
    pub async fn record(&self, event: Event) {
        (self.watcher)(&event);
        let Some(store) = &self.store else {
            return;
        };
        let key = format!(
            "rotation/{}/{}-{}-{}-{}.json",
            event.at.format("%Y/%m/%d"),
            event.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            event.target,
            &event.rotation_id.simple().to_string()[..8],
            event.to
        );
        let bytes = serde_json::to_vec(&event).expect("an event serializes");
        let lock = self
            .lock
            .as_ref()
            .map(|l| (l.mode, event.at + chrono::Duration::days(i64::from(l.days))));
        let mut result = store.put_audit(&key, bytes.clone(), lock).await;
        // A retry of a created object finds it exists: then only its lock may be missing.
        if result.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            result = store.put_audit(&key, bytes, lock).await;
        }
        if let Err(e) = result {
            tracing::warn!("audit event not stored: {e}");
            self.unstored
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(e.message().to_string());
        }
    }

    /// Store a document beside the events (an incident's report) under
    /// `_audit/KIND/YYYY/MM/DD/TIME-NAME.json`, created never overwritten, locked as events are.
    pub async fn store_document(
        &self,
        kind: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> crate::error::Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let at = Utc::now();
        let key = format!(
            "{kind}/{}/{}-{name}.json",
            at.format("%Y/%m/%d"),
            at.to_rfc3339_opts(SecondsFormat::Micros, true)
        );
        let lock = self
            .lock
            .as_ref()
            .map(|l| (l.mode, at + chrono::Duration::days(i64::from(l.days))));
        store.put_audit(&key, bytes, lock).await
    }

    /// The store errors of events that were not stored.
    pub fn unstored(&self) -> Vec<String> {
        self.unstored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
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
