//! The shape of one audit event (docs/JSON.md, `audit_event`): what every event says (where it
//! is in the trail, when, who, why, how it ended) and what its kind adds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::identity::Origin;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its place in the trail, from 0 (null: not stored).
    #[serde(default)]
    pub seq: Option<u64>,
    /// `link_hash` of the stored bytes of event `seq - 1` (null for event 0).
    #[serde(default)]
    pub prev: Option<String>,
    /// Unique to the event; a rotation's event written again by the run that resumes it keeps
    /// its id, so it is stored once.
    pub id: String,
    pub at: DateTime<Utc>,
    /// Who: `user@host`, or `serviceaccount:NS/NAME pod POD`, or what `COFFRE_ACTOR` says.
    pub actor: String,
    pub host: String,
    /// What started it: `schedule`, `manual` or `incident`.
    pub trigger: String,
    /// `ok` or `failed`; a rotation step also `needs_human` or `abandoned`.
    pub outcome: String,
    /// Why it failed, or what else a person should know. Never a secret value.
    pub detail: Option<String>,
    #[serde(flatten)]
    pub what: What,
}

/// What happened, by kind; the kind is the event's `event` field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum What {
    /// A backup made, or a backup that failed (then without an id).
    Backup {
        job: String,
        backup_id: Option<Uuid>,
        database: Option<String>,
        format: Option<u32>,
        plaintext_bytes: u64,
        stored_bytes: u64,
        /// The key ids that can open it.
        keys: Vec<String>,
    },
    /// A backup read end to end: every chunk authenticated.
    Verify {
        job: String,
        backup_id: Uuid,
        database: Option<String>,
    },
    /// A backup restored into a scratch database and counted: the recovery time and point.
    Drill {
        job: String,
        backup_id: Uuid,
        database: Option<String>,
        /// The server drilled on (`postgres://host:port`), never a password.
        server: Option<String>,
        /// When the backup was taken, and its age when the drill began: the recovery point.
        backup_taken_at: DateTime<Utc>,
        backup_age_seconds: i64,
        /// Download, decrypt and load (streamed, so overlapped), then counting: the recovery
        /// time. Null when the drill failed.
        restore_seconds: Option<f64>,
        count_seconds: Option<f64>,
        duration_seconds: Option<f64>,
        tables: Option<u64>,
        rows: Option<u64>,
    },
    /// A backup restored by hand, and where to: `file PATH`, `stdout`, or a database URL
    /// without its password.
    Restore {
        job: String,
        backup_id: Uuid,
        database: Option<String>,
        to: String,
    },
    /// What a prune deleted, and why.
    Prune {
        job: String,
        deleted: Vec<Deleted>,
        /// Packs and sessions no backup holds any more, deleted.
        shared_deleted: u64,
        kept: u64,
    },
    /// A key added to, removed from, or rotated in every backup of a job (or all).
    Key {
        job: Option<String>,
        /// `add`, `remove` or `rotate`.
        action: String,
        /// The key added (add, rotate) or removed (remove).
        key_id: String,
        /// The key removed by `rotate --remove`, if any.
        removed_key_id: Option<String>,
        backups: u64,
    },
    /// One run of a job (`job run`, the daemon).
    JobRun {
        job: String,
        kind: String,
        started_at: DateTime<Utc>,
        backups: Vec<Uuid>,
    },
    /// A job's lock taken from a holder that had stopped renewing it.
    LockTakeover {
        job: String,
        previous_holder: String,
        expired_at: DateTime<Utc>,
    },
    /// One state change of a credential rotation.
    Rotation {
        rotation_id: Uuid,
        target: String,
        /// Whose credential changed: the database user, "key", the certificate's first name.
        user: String,
        from: String,
        to: String,
        /// `fingerprint()` of the new credential.
        fingerprint: String,
    },
    /// An incident's run began or reported (its report is stored beside the trail).
    Incident {
        incident_id: Uuid,
        scope: String,
        /// `started`, `reported` or `closed`.
        action: String,
        complete: Option<bool>,
        /// The stored report (a key below `_audit/`) and its `link_hash`.
        report: Option<String>,
        report_sha256: Option<String>,
    },
}

/// One backup a prune deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    pub backup_id: Uuid,
    pub taken_at: DateTime<Utc>,
    pub reason: String,
}

impl Event {
    pub fn new(origin: &Origin, what: What, outcome: &str, detail: Option<String>) -> Self {
        Self {
            seq: None,
            prev: None,
            id: Uuid::new_v4().simple().to_string(),
            at: crate::clock::now(),
            actor: origin.actor.clone(),
            host: origin.host.clone(),
            trigger: origin.trigger.clone(),
            outcome: outcome.into(),
            detail,
            what,
        }
    }

    /// Its kind: `backup`, `rotation`...
    pub fn kind(&self) -> &'static str {
        match &self.what {
            What::Backup { .. } => "backup",
            What::Verify { .. } => "verify",
            What::Drill { .. } => "drill",
            What::Restore { .. } => "restore",
            What::Prune { .. } => "prune",
            What::Key { .. } => "key",
            What::JobRun { .. } => "job_run",
            What::LockTakeover { .. } => "lock_takeover",
            What::Rotation { .. } => "rotation",
            What::Incident { .. } => "incident",
        }
    }

    /// The backup job it concerns, or the rotation target.
    pub fn subject(&self) -> Option<&str> {
        match &self.what {
            What::Backup { job, .. }
            | What::Verify { job, .. }
            | What::Drill { job, .. }
            | What::Restore { job, .. }
            | What::Prune { job, .. }
            | What::JobRun { job, .. }
            | What::LockTakeover { job, .. } => Some(job),
            What::Key { job, .. } => job.as_deref(),
            What::Rotation { target, .. } => Some(target),
            What::Incident { .. } => None,
        }
    }
}

impl Event {
    /// What happened, in a few words (the kind and subject aside).
    pub fn summary(&self) -> String {
        match &self.what {
            What::Backup {
                backup_id: Some(id),
                database,
                stored_bytes,
                ..
            } => format!(
                "backup {id}{} ({stored_bytes} bytes stored)",
                database
                    .as_ref()
                    .map(|d| format!(" of {d}"))
                    .unwrap_or_default()
            ),
            What::Backup { .. } => "backup".into(),
            What::Verify { backup_id, .. } => format!("verified {backup_id}"),
            What::Drill {
                backup_id,
                duration_seconds,
                rows,
                backup_age_seconds,
                ..
            } => format!(
                "drilled {backup_id}: {} rows in {:.1} s, backup {} h old",
                rows.map_or("-".into(), |r| r.to_string()),
                duration_seconds.unwrap_or_default(),
                backup_age_seconds / 3600
            ),
            What::Restore { backup_id, to, .. } => format!("restored {backup_id} to {to}"),
            What::Prune {
                deleted,
                shared_deleted,
                ..
            } => {
                let each: Vec<String> = deleted
                    .iter()
                    .map(|d| format!("{}: {}", d.backup_id, d.reason))
                    .collect();
                format!(
                    "deleted {} backups ({}), {shared_deleted} shared objects",
                    deleted.len(),
                    each.join(", ")
                )
            }
            What::Key {
                action,
                key_id,
                removed_key_id,
                backups,
                ..
            } => format!(
                "key {action} {key_id}{} in {backups} backups",
                removed_key_id
                    .as_ref()
                    .map(|r| format!(" (removed {r})"))
                    .unwrap_or_default()
            ),
            What::JobRun { kind, backups, .. } => {
                format!("{kind} job ran ({} backups)", backups.len())
            }
            What::LockTakeover {
                previous_holder,
                expired_at,
                ..
            } => format!("lock taken over from {previous_holder} (expired {expired_at})"),
            What::Rotation {
                from,
                to,
                fingerprint,
                ..
            } => format!("{from} -> {to} ({fingerprint})"),
            What::Incident {
                incident_id,
                action,
                scope,
                ..
            } => format!("incident {incident_id} {action} ({scope})"),
        }
    }
}

/// Every kind, as `audit list --kind` takes them.
pub const KINDS: [&str; 10] = [
    "backup",
    "verify",
    "drill",
    "restore",
    "prune",
    "key",
    "job_run",
    "lock_takeover",
    "rotation",
    "incident",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_back_as_written_with_its_kind_fields_beside_the_common_ones() {
        let origin = Origin {
            actor: "alice@host".into(),
            host: "host".into(),
            trigger: "manual".into(),
        };
        let what = What::Restore {
            job: "app-db".into(),
            backup_id: Uuid::nil(),
            database: Some("app".into()),
            to: "file out.dump".into(),
        };
        let event = Event::new(&origin, what, "ok", None);
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["event"], "restore");
        assert_eq!(value["to"], "file out.dump");
        assert_eq!(value["actor"], "alice@host");
        let back: Event = serde_json::from_value(value).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.kind(), "restore");
        assert!(KINDS.contains(&back.kind()));
    }
}
