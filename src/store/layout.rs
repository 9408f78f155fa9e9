//! Where everything is in the store: the key layout, built here and nowhere else.
//!
//! ```text
//! {prefix}/{job}/{YYYYmmddTHHMMSSZ}-{backup_id}/manifest.json   (written last)
//! {prefix}/{job}/{YYYYmmddTHHMMSSZ}-{backup_id}/...             (its format's objects: crate::data)
//! {prefix}/_runs/{job}.json                                      (the last run of each job)
//! {prefix}/_locks/{job}.json                                     (the job running now)
//! {prefix}/_audit/events/{seq:012}.json                          (the audit trail, never replaced)
//! {prefix}/_audit/{kind}/YYYY/MM/DD/...                          (documents beside it: incident reports)
//! {prefix}/_runs/_audit-head.json                                (where the trail ended: a hint)
//! {prefix}/_reports/{job}/{YYYYmmddTHHMMSSZ}.{json,md,html}      (reports a report job made)
//! ```
//! Job names start with a letter or digit, so the `_` directories never collide with a job.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use object_store::path::Path as ObjectPath;
use uuid::Uuid;

use super::Store;

pub(super) const MANIFEST_FILE: &str = "manifest.json";
pub(super) const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";
/// Beside the job directories: the last run of each job, and the locks of jobs running now.
/// Job names start with a letter or digit, so these never collide with a job.
pub(super) const RUNS_DIR: &str = "_runs";
pub(super) const LOCKS_DIR: &str = "_locks";
/// The audit trail, one object per event, never overwritten (`_audit/events/{seq}.json`), and
/// the documents kept beside it.
pub(super) const AUDIT_DIR: &str = "_audit";
pub(super) const AUDIT_EVENTS_DIR: &str = "events";
/// Where the trail's last writer saw it end: only a hint (a stale or altered one costs a longer
/// listing), so it may be replaced, and lives with the run records, not in the trail.
pub(super) const AUDIT_HEAD_FILE: &str = "_audit-head.json";
/// What report jobs made, never replaced.
pub(super) const REPORTS_DIR: &str = "_reports";

/// Where one backup lives: job, start time (to the second) and id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackupRef {
    pub job: String,
    pub time: DateTime<Utc>,
    pub id: Uuid,
}

impl BackupRef {
    /// The time is kept to the second, as the directory name records it.
    pub fn new(job: &str, time: DateTime<Utc>, id: Uuid) -> Self {
        Self {
            job: job.to_string(),
            time: time.trunc_subsecs(0),
            id,
        }
    }

    pub(super) fn dir_name(&self) -> String {
        format!("{}-{}", self.time.format(TIME_FORMAT), self.id)
    }

    /// Parse `{YYYYmmddTHHMMSSZ}-{uuid}`.
    pub(super) fn parse_dir(job: &str, dir: &str) -> Option<Self> {
        let (time, id) = dir.split_once('-')?;
        let time = NaiveDateTime::parse_from_str(time, TIME_FORMAT)
            .ok()?
            .and_utc();
        let id = Uuid::parse_str(id).ok()?;
        Some(Self::new(job, time, id))
    }
}

impl Store {
    pub(super) fn job_dir(&self, job: &str) -> ObjectPath {
        self.prefix.clone().join(job)
    }

    pub(super) fn backup_dir(&self, r: &BackupRef) -> ObjectPath {
        self.job_dir(&r.job).join(r.dir_name())
    }

    /// The object `name` in the directory of backup `r` (its format names them).
    pub fn backup_object(&self, r: &BackupRef, name: &str) -> ObjectPath {
        self.backup_dir(r).join(name)
    }

    pub fn manifest_path(&self, r: &BackupRef) -> ObjectPath {
        self.backup_dir(r).join(MANIFEST_FILE)
    }

    pub(super) fn run_record_path(&self, task: &str) -> ObjectPath {
        self.prefix
            .clone()
            .join(RUNS_DIR)
            .join(format!("{task}.json"))
    }

    pub(super) fn lock_path(&self, name: &str) -> ObjectPath {
        self.prefix
            .clone()
            .join(LOCKS_DIR)
            .join(format!("{name}.json"))
    }

    /// Where the audit document `key` (a path below `_audit/`) is.
    pub(super) fn audit_path(&self, key: &str) -> ObjectPath {
        key.split('/')
            .fold(self.prefix.clone().join(AUDIT_DIR), |p, part| p.join(part))
    }

    pub(super) fn audit_events_dir(&self) -> ObjectPath {
        self.prefix.clone().join(AUDIT_DIR).join(AUDIT_EVENTS_DIR)
    }

    /// Event `seq` of the trail: zero-padded, so names sort as the trail runs.
    pub(super) fn audit_event_path(&self, seq: u64) -> ObjectPath {
        self.audit_events_dir().join(format!("{seq:012}.json"))
    }

    /// The sequence number an event object's name gives, if it is one.
    pub(super) fn audit_event_seq(path: &ObjectPath) -> Option<u64> {
        let name = path.filename()?.strip_suffix(".json")?;
        (name.len() == 12 && name.bytes().all(|b| b.is_ascii_digit()))
            .then(|| name.parse().ok())
            .flatten()
    }

    /// A report of job `task` made at `at`, in the format `extension` names.
    pub(super) fn report_path(&self, task: &str, at: DateTime<Utc>, extension: &str) -> ObjectPath {
        self.prefix
            .clone()
            .join(REPORTS_DIR)
            .join(task)
            .join(format!("{}.{extension}", at.format(TIME_FORMAT)))
    }

    pub(super) fn audit_head_path(&self) -> ObjectPath {
        self.prefix.clone().join(RUNS_DIR).join(AUDIT_HEAD_FILE)
    }
}
