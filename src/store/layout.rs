//! Where everything is in the store: the key layout, built here and nowhere else.
//!
//! ```text
//! {prefix}/{job}/{YYYYmmddTHHMMSSZ}-{backup_id}/manifest.json   (written last)
//! {prefix}/{job}/{YYYYmmddTHHMMSSZ}-{backup_id}/...             (its format's objects: crate::data)
//! {prefix}/_runs/{job}.json                                      (the last run of each job)
//! {prefix}/_locks/{job}.json                                     (the job running now)
//! {prefix}/_audit/{kind}/YYYY/MM/DD/...                          (audit events, never replaced)
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
/// Audit events, one object each, never overwritten (`_audit/rotation/YYYY/MM/DD/...`).
pub(super) const AUDIT_DIR: &str = "_audit";

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

    /// Where the audit object `key` (a path below `_audit/`) is.
    pub(super) fn audit_path(&self, key: &str) -> ObjectPath {
        key.split('/')
            .fold(self.prefix.clone().join(AUDIT_DIR), |p, part| p.join(part))
    }
}
