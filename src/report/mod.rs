//! The compliance report's shape: the evidence an auditor asks for, over a period, from what
//! the store holds (the audit trail, the backups kept) against the configured schedules and
//! rotation policies. `ops::report` gathers it into one value (`Report`, docs/JSON.md
//! `report`); here it is rendered as Markdown (`markdown`) or one self-contained HTML page
//! with charts (`html`); JSON is its serialization.

pub mod html;
pub mod markdown;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use uuid::Uuid;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub generated_at: DateTime<Utc>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub store: String,
    /// The backup jobs reported on.
    pub jobs: Vec<String>,
    /// What needs a person's attention, one line each; empty when all is well.
    pub findings: Vec<String>,
    pub databases: Vec<DatabaseEvidence>,
    pub drills: Vec<DrillRecord>,
    pub credentials: Vec<CredentialEvidence>,
    pub incidents: Vec<IncidentEvidence>,
    pub restores: Vec<RestoreRecord>,
    pub deletions: Vec<DeletionRecord>,
    pub audit: AuditEvidence,
}

/// One database (a job's series): was it backed up, encrypted and kept as required.
#[derive(Clone, Debug, Serialize)]
pub struct DatabaseEvidence {
    pub job: String,
    pub database: Option<String>,
    pub schedule: Option<String>,
    /// Runs the schedule had in the period (counted from the job's first backup).
    pub scheduled: u64,
    /// Backups taken in the period, and backups of the job that failed.
    pub taken: u64,
    pub failed: u64,
    /// Days the schedule ran on without a backup of this database.
    pub missed_days: Vec<NaiveDate>,
    /// Backups kept in the store now.
    pub kept: u64,
    pub oldest_kept: Option<DateTime<Utc>>,
    pub newest_kept: Option<DateTime<Utc>>,
    /// The retention the job requires (keep_within_days), and whether the backups kept reach
    /// back that far (or to the job's first backup) with none deleted younger.
    pub retention_days: u32,
    pub retention_met: bool,
    pub object_lock_days: Option<u32>,
    pub sizes: Vec<DaySize>,
    pub keys: Vec<KeyInUse>,
    /// A PostgreSQL or MariaDB database, which drills restore (not a file, command or globals
    /// backup), and when its last drill passed.
    pub drillable: bool,
    pub last_passing_drill: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DaySize {
    pub date: NaiveDate,
    pub plaintext_bytes: u64,
    pub stored_bytes: u64,
}

/// A key that opens backups kept now.
#[derive(Clone, Debug, Serialize)]
pub struct KeyInUse {
    pub key_id: String,
    /// `key`, `x25519` or `argon2id`.
    pub kind: String,
    pub backups: u64,
    /// Its oldest backup kept, and that backup's age: how long the key has been in use.
    pub in_use_since: DateTime<Utc>,
    pub age_days: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DrillRecord {
    pub at: DateTime<Utc>,
    pub job: String,
    pub database: Option<String>,
    pub backup_id: Uuid,
    pub outcome: String,
    pub duration_seconds: Option<f64>,
    pub restore_seconds: Option<f64>,
    pub tables: Option<u64>,
    pub rows: Option<u64>,
    pub backup_age_seconds: i64,
    pub detail: Option<String>,
}

/// One rotation target against its policy.
#[derive(Clone, Debug, Serialize)]
pub struct CredentialEvidence {
    pub target: String,
    pub kind: String,
    /// The policy in words, and as a maximum age in days.
    pub policy: String,
    pub policy_days: f64,
    pub last_rotated_at: Option<DateTime<Utc>>,
    pub age_days: Option<f64>,
    pub overdue: bool,
    pub rotations: u64,
    pub failures: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct IncidentEvidence {
    pub incident_id: Uuid,
    pub scope: String,
    pub actor: String,
    pub started_at: DateTime<Utc>,
    pub reported_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub complete: bool,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub what: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoreRecord {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub trigger: String,
    pub job: String,
    pub backup_id: Uuid,
    pub database: Option<String>,
    pub to: String,
    pub outcome: String,
}

/// A backup a prune deleted, or a key removed from backups.
#[derive(Clone, Debug, Serialize)]
pub struct DeletionRecord {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub trigger: String,
    pub job: Option<String>,
    /// `backup` or `key`.
    pub what: String,
    pub backup_id: Option<Uuid>,
    pub taken_at: Option<DateTime<Utc>>,
    pub key_id: Option<String>,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct AuditEvidence {
    pub intact: bool,
    pub events: u64,
    pub events_in_period: u64,
    /// `SEQ:sha256:HEX`: the anchor to check next period's trail against.
    pub head: Option<String>,
    pub broken: Option<String>,
}
