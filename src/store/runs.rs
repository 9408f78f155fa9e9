//! The record of each job's last run, beside the job directories: what `job list` shows, what
//! the daemon catches up from, and what metrics and alerts are made of.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Store;
use crate::error::{Error, Result};

/// The record of a job's last run, kept in the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub task: String,
    pub kind: String,
    pub holder: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// "ok" or "failed".
    pub status: String,
    /// The first failure's class and message.
    pub class: Option<String>,
    pub error: Option<String>,
    pub backups: usize,
    pub plaintext_bytes: u64,
    pub stored_bytes: u64,
    /// When the job last succeeded, this run or an earlier one (what "no backup for 26 hours"
    /// alerts watch).
    #[serde(default)]
    pub last_success_at: Option<DateTime<Utc>>,
    /// For a drill: each database's last drill, and when its drill last passed (this run or
    /// an earlier one: what "no passing drill for 48 hours" alerts watch).
    #[serde(default)]
    pub drills: Vec<DrillResult>,
}

/// One database's drill in a drill job's run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillResult {
    pub job: String,
    pub database: Option<String>,
    pub passed: bool,
    /// The recovery time (restore and count), for a drill that passed.
    pub duration_seconds: Option<f64>,
    pub rows: Option<u64>,
    /// The backup's age when drilled: the recovery point.
    pub backup_age_seconds: i64,
    pub last_passed_at: Option<DateTime<Utc>>,
}

impl RunRecord {
    pub fn succeeded(&self) -> bool {
        self.status == "ok"
    }
}

impl Store {
    /// Record how the last run of a job went (replacing the previous record).
    pub async fn put_run_record(&self, record: &RunRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::internal(format!("run record: {e}")))?;
        self.put_small(&self.run_record_path(&record.task), bytes)
            .await
    }

    /// The record of `task`'s last run, if it ran.
    pub async fn last_run(&self, task: &str) -> Result<Option<RunRecord>> {
        let Some(bytes) = self.get_small(&self.run_record_path(task)).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::integrity(format!("the run record of job '{task}': {e}")))
    }
}
