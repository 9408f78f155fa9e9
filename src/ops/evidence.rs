//! What each operation leaves in the audit trail: one event per backup made or failed, per
//! backup verified or drilled, per restore, per job a prune deleted from, per key change, per
//! job run and per lock taken over. The operations return what they did; these turn it into
//! events, so the command line, `job run` and the daemon report the same thing the same way.

use chrono::{DateTime, Utc};

use super::backup::JobOutcome;
use super::drill::DrillReport;
use super::prune::{PruneOutcome, Verdict};
use super::restore::Target;
use super::verify::{Outcome, VerifyReport};
use crate::audit::{Audit, Deleted, What};
use crate::crypto::keys::Secret;
use crate::error::Error;
use crate::store::{Backup, BackupRef};

/// `ok`, or `failed` and why.
fn ended(failure: Option<&Error>) -> (&'static str, Option<String>) {
    match failure {
        None => ("ok", None),
        Some(e) => ("failed", Some(e.message().to_string())),
    }
}

/// What `backup_jobs` did: each job's backups and failures, and the prune after them.
pub async fn backed_up_all(audit: &Audit<'_>, outcomes: &[JobOutcome]) {
    for outcome in outcomes {
        backed_up(audit, outcome).await;
        if let Some(Ok(pruned)) = &outcome.prune {
            self::pruned(audit, pruned).await;
        }
    }
}

/// The backups a job made, and each that failed.
async fn backed_up(audit: &Audit<'_>, outcome: &JobOutcome) {
    for made in &outcome.backups {
        let m = &made.manifest;
        let what = What::Backup {
            job: outcome.job.clone(),
            backup_id: Some(m.backup_id),
            database: m.database_shown().map(str::to_string),
            format: Some(made.layout.number()),
            plaintext_bytes: m.plaintext_bytes,
            stored_bytes: m.stored_bytes,
            keys: made.keys.iter().map(|k| k.key_id().to_string()).collect(),
        };
        audit.record(audit.event(what, "ok", None)).await;
    }
    for failure in &outcome.failures {
        let what = What::Backup {
            job: outcome.job.clone(),
            backup_id: None,
            database: None,
            format: None,
            plaintext_bytes: 0,
            stored_bytes: 0,
            keys: Vec::new(),
        };
        let detail = Some(failure.message().to_string());
        audit.record(audit.event(what, "failed", detail)).await;
    }
}

/// What a prune deleted, one event per job pruned (a dry run deletes nothing: none).
pub async fn pruned(audit: &Audit<'_>, outcome: &PruneOutcome) {
    let Some(report) = &outcome.report else {
        return;
    };
    for plan in &outcome.plans {
        let deleted: Vec<Deleted> = plan
            .items()
            .iter()
            .filter(|item| item.location.job == plan.job)
            .filter_map(|item| {
                let reason = match item.verdict {
                    Verdict::Delete => "kept by no retention rule",
                    Verdict::DeleteAbandoned => "incomplete, past its job's timeout",
                    _ => return None,
                };
                let done = report.deleted.contains(&item.location)
                    || report.cleaned_incomplete.contains(&item.location);
                done.then(|| Deleted {
                    backup_id: item.location.id,
                    taken_at: item.location.time,
                    reason: reason.into(),
                })
            })
            .collect();
        let shared_deleted = plan.shared.as_ref().map_or(0, |s| s.delete.len() as u64);
        let kept = plan.series.values().flatten().count() as u64 - deleted.len() as u64;
        let what = What::Prune {
            job: plan.job.clone(),
            deleted,
            shared_deleted,
            kept,
        };
        let (outcome, detail) = ended(report.failures.first());
        audit.record(audit.event(what, outcome, detail)).await;
    }
}

/// One backup verified or drilled, or its check failed.
pub async fn checked(
    audit: &Audit<'_>,
    location: &BackupRef,
    backup: Option<&Backup>,
    drill: Option<&DrillReport>,
    result: Result<(), &Error>,
    drilling: bool,
) {
    let database = backup.and_then(|b| b.manifest.manifest.database_shown().map(str::to_string));
    let (outcome, detail) = ended(result.err());
    let what = match drilling {
        false => What::Verify {
            job: location.job.clone(),
            backup_id: location.id,
            database,
        },
        true => {
            let taken_at = backup.map_or(location.time, |b| b.manifest.manifest.started_at);
            // A failed drill has no report: the backup's age now.
            let age = drill.map_or_else(|| crate::clock::now() - taken_at, DrillReport::backup_age);
            What::Drill {
                job: location.job.clone(),
                backup_id: location.id,
                database,
                server: drill.map(|d| d.server.clone()),
                backup_taken_at: taken_at,
                backup_age_seconds: age.num_seconds(),
                restore_seconds: drill.map(|d| d.restore_seconds),
                count_seconds: drill.map(|d| d.count_seconds),
                duration_seconds: drill.map(DrillReport::duration_seconds),
                tables: drill.map(|d| d.counts.tables),
                rows: drill.map(|d| d.counts.rows),
            }
        }
    };
    audit.record(audit.event(what, outcome, detail)).await;
}

/// Every backup `verify --all` or a drill job looked at (those pruned meanwhile aside).
pub async fn checked_all(audit: &Audit<'_>, report: &VerifyReport, drilling: bool) {
    for c in &report.checked {
        let (drill, result) = match &c.outcome {
            Outcome::Verified(_) => (None, Ok(())),
            Outcome::Drilled(_, d) => (Some(d), Ok(())),
            Outcome::Failed(e) => (None, Err(e)),
            Outcome::PrunedMeanwhile => continue,
        };
        checked(
            audit,
            &c.location,
            c.backup.as_ref(),
            drill,
            result,
            drilling,
        )
        .await;
    }
}

/// A restore by hand, and where to.
pub async fn restored<T>(
    audit: &Audit<'_>,
    backup: &Backup,
    to: &Target,
    result: &Result<T, Error>,
) {
    let to = match to {
        Target::File { path, .. } => format!(
            "file {}",
            std::path::absolute(path)
                .unwrap_or_else(|_| path.clone())
                .display()
        ),
        other => other.describe(),
    };
    let (outcome, detail) = ended(result.as_ref().err());
    let what = What::Restore {
        job: backup.location.job.clone(),
        backup_id: backup.location.id,
        database: backup
            .manifest
            .manifest
            .database_shown()
            .map(str::to_string),
        to,
    };
    audit.record(audit.event(what, outcome, detail)).await;
}

/// The id a key is known by in listings (a passphrase has none of its own: each backup's
/// stanza salts it).
pub fn key_id_of(secret: &Secret) -> String {
    match secret {
        Secret::Key(key) => key.key_id(),
        Secret::Identity(identity) => identity.recipient().key_id(),
        Secret::Recipient(recipient) => recipient.key_id(),
        Secret::Passphrase(..) => "passphrase".into(),
    }
}

/// A key added to, removed from or rotated in the backups of `job` (or all).
pub struct KeyEvent<'a> {
    pub job: Option<&'a str>,
    pub action: &'a str,
    pub key_id: String,
    pub removed_key_id: Option<String>,
    pub backups: u64,
}

pub async fn key_changed<T>(audit: &Audit<'_>, change: KeyEvent<'_>, result: &Result<T, Error>) {
    let (outcome, detail) = ended(result.as_ref().err());
    let what = What::Key {
        job: change.job.map(str::to_string),
        action: change.action.into(),
        key_id: change.key_id,
        removed_key_id: change.removed_key_id,
        backups: change.backups,
    };
    audit.record(audit.event(what, outcome, detail)).await;
}

/// One run of a job.
pub async fn job_ran(
    audit: &Audit<'_>,
    job: &str,
    kind: &str,
    started_at: DateTime<Utc>,
    backups: Vec<uuid::Uuid>,
    failure: Option<&Error>,
) {
    let what = What::JobRun {
        job: job.into(),
        kind: kind.into(),
        started_at,
        backups,
    };
    let (outcome, detail) = ended(failure);
    audit.record(audit.event(what, outcome, detail)).await;
}

/// A job's lock taken from a holder that had stopped renewing it.
pub async fn lock_taken_over(
    audit: &Audit<'_>,
    job: &str,
    previous_holder: &str,
    expired_at: DateTime<Utc>,
) {
    let what = What::LockTakeover {
        job: job.into(),
        previous_holder: previous_holder.into(),
        expired_at,
    };
    audit.record(audit.event(what, "ok", None)).await;
}
