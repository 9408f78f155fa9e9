//! The audit trail's objects: one event per object under `_audit/events/`, created once each
//! and never replaced; the documents kept beside them (incident reports); and the hint of
//! where the trail ends, which only spares a writer listing the whole trail.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;

use super::Store;
use super::errors::store_error;
use crate::error::Result;
use crate::manifest::LockMode;

/// An event is a small JSON object; a prune's may list a thousand deleted backups.
const MAX_EVENT_BYTES: u64 = 1 << 20;

/// What the trail's directory holds.
#[derive(Debug, Default)]
pub struct AuditObjects {
    /// The events' sequence numbers, ascending.
    pub seqs: Vec<u64>,
    /// Objects that are not events (a name that is not a sequence number).
    pub strays: Vec<String>,
}

impl Store {
    /// Create event `seq` of the trail; false when that place is taken (the store's
    /// conditional create decides between two writers).
    pub async fn create_audit_event(&self, seq: u64, bytes: Vec<u8>) -> Result<bool> {
        let path = self.audit_event_path(seq);
        self.create_object(&path, bytes, "writing the audit event")
            .await
    }

    /// Lock event `seq` (S3 Object Lock) until `until`.
    pub async fn lock_audit_event(
        &self,
        seq: u64,
        (mode, until): (LockMode, DateTime<Utc>),
    ) -> Result<()> {
        let path = self.audit_event_path(seq);
        self.locker("the audit trail")?
            .retain(&path, mode, until)
            .await
    }

    /// The stored bytes of event `seq`, if it exists.
    pub async fn read_audit_event(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        self.read_bounded(&self.audit_event_path(seq), MAX_EVENT_BYTES)
            .await
    }

    /// The events of the trail (those after `after` only, when given: a listing that starts
    /// there, not the whole trail).
    pub async fn audit_objects(&self, after: Option<u64>) -> Result<AuditObjects> {
        let dir = self.audit_events_dir();
        let listing = match after {
            None => self.inner.list(Some(&dir)),
            Some(seq) => self
                .inner
                .list_with_offset(Some(&dir), &self.audit_event_path(seq)),
        };
        let metas: Vec<_> = listing
            .try_collect()
            .await
            .map_err(|e| store_error("listing", &dir, e))?;
        let mut objects = AuditObjects::default();
        for meta in metas {
            match Self::audit_event_seq(&meta.location) {
                Some(seq) => objects.seqs.push(seq),
                None => objects.strays.push(meta.location.to_string()),
            }
        }
        objects.seqs.sort_unstable();
        Ok(objects)
    }

    /// Where the last writer saw the trail end, if it said (a hint: never trusted).
    pub async fn audit_head_hint(&self) -> Option<u64> {
        let bytes = self.get_small(&self.audit_head_path()).await.ok()??;
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()?
            .get("seq")?
            .as_u64()
    }

    pub async fn put_audit_head_hint(&self, seq: u64) -> Result<()> {
        let bytes = serde_json::json!({ "seq": seq }).to_string().into_bytes();
        self.put_small(&self.audit_head_path(), bytes).await
    }

    /// Store a document beside the trail (an incident's report) under `_audit/KEY`, created
    /// never replaced, locked as the events are.
    pub async fn put_audit_document(
        &self,
        key: &str,
        bytes: Vec<u8>,
        lock: Option<(LockMode, DateTime<Utc>)>,
    ) -> Result<()> {
        let path = self.audit_path(key);
        // Already there: written by an earlier attempt whose lock failed, which is locked now.
        self.create_object(&path, bytes, "writing the audit document")
            .await?;
        if let Some((mode, until)) = lock {
            self.locker("the audit trail")?
                .retain(&path, mode, until)
                .await?;
        }
        Ok(())
    }

    /// Store a report a report job made (`extension`: json, md, html), created never replaced,
    /// and locked as the audit trail is; returns where it is.
    pub async fn put_report(
        &self,
        task: &str,
        at: DateTime<Utc>,
        extension: &str,
        bytes: Vec<u8>,
        lock: Option<(LockMode, DateTime<Utc>)>,
    ) -> Result<String> {
        let path = self.report_path(task, at, extension);
        if !self
            .create_object(&path, bytes, "writing the report")
            .await?
        {
            return Err(crate::error::Error::store(format!(
                "{path} exists already: a report is never replaced; run the job again in a second"
            )));
        }
        if let Some((mode, until)) = lock {
            self.locker("the reports")?
                .retain(&path, mode, until)
                .await?;
        }
        Ok(path.to_string())
    }

    /// A document stored beside the trail, if it exists.
    pub async fn read_audit_document(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.read_bounded(&self.audit_path(key), MAX_EVENT_BYTES)
            .await
    }
}
