//! Pruning: list, decide with `retention`, then delete; in that order and never mixed.
//!
//! Safety rules: a plan is only made from a listing in which every object listed and every
//! manifest could be read (a manifest read and found damaged is kept, reported, and never
//! counted towards what the policy keeps); a plan over several jobs is only carried out when
//! every job's listing succeeded; a complete backup loses its manifest before its data (an
//! interrupted delete leaves an incomplete backup, cleaned later, never a manifest without
//! data); what a backup that never finished left (a directory without a manifest, staging
//! files, open multipart uploads) is removed only once that backup is provably over: its job's
//! timeout and a margin have passed since it started (`retention::is_abandoned`).

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use crate::config::Job;
use crate::data::v2::gc;
pub use crate::data::v2::gc::{SharedPlan, Unlisted};
use crate::error::{Error, Result};
use crate::manifest::Layout;
use crate::retention::{self, Decision, Entry, Rule};
use crate::store::{Backup, BackupRef, Damaged, Leftover, Store, Stray};

/// What pruning one job will do.
#[derive(Debug)]
pub struct JobPlan {
    pub job: String,
    /// The time the plan was made for (marks carry it).
    pub now: DateTime<Utc>,
    /// Per series (database), decisions newest first.
    pub series: BTreeMap<String, Vec<(Backup, Decision)>>,
    /// Directories without a manifest whose backup is over (`retention::is_abandoned`).
    pub stale_incomplete: Vec<BackupRef>,
    /// Directories without a manifest that may still be being written.
    pub fresh_incomplete: Vec<BackupRef>,
    /// Backups whose manifest is damaged: never deleted by a prune, left for a person.
    pub damaged: Vec<Damaged>,
    /// What abandoned backups left that listings do not show (staging files, open uploads).
    pub strays: Vec<Stray>,
    /// The job's packs and sessions no manifest lists (format v2): None when they were not
    /// looked at, because a manifest of the job is damaged (it may list some) or a listing
    /// failed.
    pub shared: Option<SharedPlan>,
}

/// One line of a plan: a backup (or what an unfinished one left) and what becomes of it.
#[derive(Debug)]
pub struct PlanItem {
    pub location: BackupRef,
    /// The database of a complete backup (`Manifest::database_shown`).
    pub series: Option<String>,
    pub verdict: Verdict,
}

#[derive(Debug)]
pub enum Verdict {
    /// Kept by these rules.
    Keep(Vec<Rule>),
    Delete,
    /// An incomplete backup past its job's timeout: deleted.
    DeleteAbandoned,
    /// An incomplete backup that may still be running: kept.
    KeepIncomplete,
    /// A backup whose manifest is damaged (why): kept for a person to look at.
    KeepDamaged(String),
    /// What an abandoned backup left: removed.
    RemoveLeftover(Leftover),
}

impl Verdict {
    pub fn keeps(&self) -> bool {
        matches!(
            self,
            Verdict::Keep(_) | Verdict::KeepIncomplete | Verdict::KeepDamaged(_)
        )
    }
}

impl JobPlan {
    /// Every line of the plan: complete backups per series newest first, then incomplete
    /// ones, damaged ones and leftovers.
    pub fn items(&self) -> Vec<PlanItem> {
        let mut items = Vec::new();
        for decisions in self.series.values() {
            for (backup, decision) in decisions {
                items.push(PlanItem {
                    location: backup.location.clone(),
                    series: backup
                        .manifest
                        .manifest
                        .database_shown()
                        .map(str::to_string),
                    verdict: match decision.keep() {
                        true => Verdict::Keep(decision.rules.clone()),
                        false => Verdict::Delete,
                    },
                });
            }
        }
        let item = |r: &BackupRef, verdict| PlanItem {
            location: r.clone(),
            series: None,
            verdict,
        };
        items.extend(
            self.stale_incomplete
                .iter()
                .map(|r| item(r, Verdict::DeleteAbandoned)),
        );
        items.extend(
            self.fresh_incomplete
                .iter()
                .map(|r| item(r, Verdict::KeepIncomplete)),
        );
        items.extend(
            self.damaged
                .iter()
                .map(|d| item(&d.location, Verdict::KeepDamaged(d.error.to_string()))),
        );
        items.extend(
            self.strays
                .iter()
                .map(|s| item(&s.location, Verdict::RemoveLeftover(s.leftover.clone()))),
        );
        items
    }

    pub fn deletions(&self) -> impl Iterator<Item = &Backup> {
        self.series
            .values()
            .flatten()
            .filter(|(_, d)| !d.keep())
            .map(|(b, _)| b)
    }
}

/// What a prune did.
#[derive(Debug, Default)]
pub struct PruneReport {
    pub deleted: Vec<BackupRef>,
    pub deleted_bytes: u64,
    pub cleaned_incomplete: Vec<BackupRef>,
    /// Staging files removed and open uploads aborted.
    pub cleaned_strays: usize,
    /// Packs and sessions no backup used any more, deleted.
    pub deleted_shared: usize,
    /// Packs and sessions found unused for the first time, marked for a later prune.
    pub marked_shared: usize,
    pub failures: Vec<Error>,
}

/// Plan the prune of `job` at `now`. Fails, deciding nothing, if the listing or any manifest
/// read fails.
pub async fn plan(store: &Store, job: &Job, now: DateTime<Utc>) -> Result<JobPlan> {
    let stopped = |e: Error| {
        e.context(format!(
            "prune of job '{}' stopped, nothing deleted",
            job.name
        ))
    };
    let mut listing = store.list(Some(&job.name)).await.map_err(stopped)?;
    // A manifest that could not be read may be a backup the policy needs to count.
    if let Some(i) = listing.damaged.iter().position(|d| !d.is_content()) {
        let unread = listing.damaged.swap_remove(i);
        return Err(stopped(
            unread
                .error
                .context(format!("backup {}", unread.location.id)),
        ));
    }
    let shared = plan_shared(store, job, &listing, now).await;
    let mut by_series: BTreeMap<String, Vec<Backup>> = BTreeMap::new();
    for backup in listing.complete {
        by_series
            .entry(backup.manifest.manifest.series().to_string())
            .or_default()
            .push(backup);
    }
    let mut series = BTreeMap::new();
    for (name, backups) in by_series {
        let entries: Vec<Entry> = backups
            .iter()
            .map(|b| Entry {
                id: b.location.id,
                time: b.manifest.manifest.started_at,
                locked_until: b.manifest.manifest.retain_until,
            })
            .collect();
        let decisions = retention::decide(&entries, now, &job.retention)
            .into_iter()
            .map(|d| {
                let backup = backups
                    .iter()
                    .find(|b| b.location.id == d.entry.id)
                    .expect("every decision is about a listed backup")
                    .clone();
                (backup, d)
            })
            .collect();
        series.insert(name, decisions);
    }
    let abandoned = |r: &BackupRef| retention::is_abandoned(r.time, job.timeout.as_chrono(), now);
    let (stale_incomplete, fresh_incomplete) =
        listing.incomplete.into_iter().partition(|r| abandoned(r));
    // Leftovers are cleaned when they can be listed; retention does not depend on them.
    let strays = match store.strays(&job.name).await {
        Ok(strays) => strays
            .into_iter()
            .filter(|s| abandoned(&s.location))
            .collect(),
        Err(e) => {
            tracing::warn!(
                "job '{}': cannot list what unfinished backups left, so none of it is cleaned now: {e}",
                job.name
            );
            Vec::new()
        }
    };
    Ok(JobPlan {
        job: job.name.clone(),
        now,
        series,
        stale_incomplete,
        fresh_incomplete,
        damaged: listing.damaged,
        strays,
        shared,
    })
}

/// The sweep of the job's shared objects, unless something could hide what the manifests
/// list: then nothing of them is deleted this time, and the log says why.
async fn plan_shared(
    store: &Store,
    job: &Job,
    listing: &crate::store::Listing,
    now: DateTime<Utc>,
) -> Option<SharedPlan> {
    if let Some(damaged) = listing.damaged.first() {
        tracing::warn!(
            "job '{}': backup {} has a damaged manifest, which may list packs: no pack or session is deleted until it is repaired or removed",
            job.name,
            damaged.location.id
        );
        return None;
    }
    match gc::plan(
        store,
        &job.name,
        &listing.complete,
        job.timeout.as_chrono(),
        now,
    )
    .await
    {
        Ok(plan) => Some(plan),
        Err(e) => {
            tracing::warn!(
                "job '{}': packs and sessions not pruned this time: {e}",
                job.name
            );
            None
        }
    }
}

/// What a prune planned, and did unless it was a dry run.
#[derive(Debug)]
pub struct PruneOutcome {
    pub plans: Vec<JobPlan>,
    pub report: Option<PruneReport>,
}

/// Plan the prune of every job first, and delete (unless `dry_run`) only if every plan could
/// be made.
pub async fn prune(
    store: &Store,
    jobs: &[&Job],
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneOutcome> {
    let mut plans = Vec::new();
    for job in jobs {
        plans.push(plan(store, job, now).await?);
    }
    let report = match dry_run {
        true => None,
        false => Some(execute(store, &plans).await),
    };
    Ok(PruneOutcome { plans, report })
}

/// Carry out plans. A failed delete is reported and the others go on: each delete is of a
/// backup the plan already decided to drop, so going on never deletes what it should not.
pub async fn execute(store: &Store, plans: &[JobPlan]) -> PruneReport {
    let mut report = PruneReport::default();
    for plan in plans {
        for backup in plan.deletions() {
            match store.delete_backup(&backup.location).await {
                Ok(()) => {
                    // A v2 backup's packs go later, when no backup uses them.
                    report.deleted_bytes += match &backup.manifest.layout {
                        Layout::V1(_) => backup.manifest.manifest.stored_bytes,
                        Layout::V2(v2) => v2.recipe_bytes,
                    };
                    report.deleted.push(backup.location.clone());
                    crate::failpoint::hit("prune:backup-deleted").await;
                }
                Err(e) => report.failures.push(e),
            }
        }
        for stray in &plan.strays {
            match store.remove_stray(stray).await {
                Ok(()) => report.cleaned_strays += 1,
                Err(e) => report.failures.push(e),
            }
        }
        for r in &plan.stale_incomplete {
            match store.delete_backup(r).await {
                Ok(()) => report.cleaned_incomplete.push(r.clone()),
                Err(e) => report.failures.push(e),
            }
        }
        if let Some(shared) = &plan.shared {
            let swept = gc::sweep(store, &plan.job, shared, plan.now).await;
            report.deleted_shared += swept.deleted;
            report.deleted_bytes += swept.deleted_bytes;
            report.marked_shared += swept.marked;
            report.cleaned_strays += swept.uploads_removed;
            report.failures.extend(swept.failures);
        }
    }
    report
}
