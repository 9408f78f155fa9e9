//! `verify --all`: check every complete backup and say what became of each.
//!
//! A backup whose manifest is damaged is a failure, named, and does not stop the others. A
//! backup deleted by a prune while this runs (its manifest is gone when read, or its data when
//! opened and then its manifest too) is "pruned meanwhile", not a failure.

use super::drill::{self, DrillReport, DrillServer};
use super::restore::{self, OpenSummary};
use std::collections::BTreeMap;

use crate::config::{Config, Job};
use crate::crypto::keys::Secret;
use crate::error::{Class, Error, Result};
use crate::store::{Backup, BackupRef, Damaged, Store};

/// What became of one backup.
#[derive(Debug)]
pub enum Outcome {
    Verified(OpenSummary),
    /// Verified by restoring it into a scratch database.
    Drilled(OpenSummary, DrillReport),
    Failed(Error),
    /// Deleted by a concurrent prune between listing and checking.
    PrunedMeanwhile,
}

#[derive(Debug)]
pub struct Checked {
    pub location: BackupRef,
    /// The manifest, when it could be read.
    pub backup: Option<Backup>,
    pub outcome: Outcome,
}

/// Every backup `verify_all` looked at, oldest first.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub checked: Vec<Checked>,
}

impl VerifyReport {
    pub fn count(&self, which: fn(&Outcome) -> bool) -> usize {
        self.checked.iter().filter(|c| which(&c.outcome)).count()
    }

    pub fn failures(&self) -> impl Iterator<Item = (&BackupRef, &Error)> {
        self.checked.iter().filter_map(|c| match &c.outcome {
            Outcome::Failed(e) => Some((&c.location, e)),
            _ => None,
        })
    }

    /// (backups looked at, failed, pruned meanwhile), not counting those pruned meanwhile
    /// among the first.
    pub fn totals(&self) -> (usize, usize, usize) {
        let pruned = self.count(|o| matches!(o, Outcome::PrunedMeanwhile));
        let failed = self.count(|o| matches!(o, Outcome::Failed(_)));
        (self.checked.len() - pruned, failed, pruned)
    }

    /// The class of the first failure, which the whole run exits with.
    pub fn failure_class(&self) -> Option<Class> {
        self.failures().next().map(|(_, e)| e.class())
    }
}

/// Verify (or, with `drill`, restore into scratch databases) every complete backup of `job`,
/// or of every job.
pub async fn verify_all(
    config: &Config,
    store: &Store,
    keys: &[Secret],
    job: Option<&str>,
    drill: bool,
) -> Result<VerifyReport> {
    if let Some(job) = job {
        config.job(job)?;
    }
    let listing = store.list(job).await?;
    let mut report = VerifyReport::default();
    report.add_listing_problems(listing.vanished, listing.damaged);
    for backup in listing.complete {
        report.check(config, store, keys, backup, drill).await;
    }
    report
        .checked
        .sort_by_key(|c| (c.location.time, c.location.id));
    Ok(report)
}

/// A restore drill of the newest backup of each database (series) of `jobs`: what a weekly
/// drill job runs. Backups a drill cannot restore (roles, command output) are verified.
pub async fn drill_newest(
    config: &Config,
    store: &Store,
    keys: &[Secret],
    jobs: &[&Job],
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    for job in jobs {
        let listing = store.list(Some(&job.name)).await?;
        report.add_listing_problems(listing.vanished, listing.damaged);
        let mut newest: BTreeMap<String, Backup> = BTreeMap::new();
        for backup in listing.complete {
            // The listing is sorted oldest first: the last of each series stays.
            newest.insert(backup.manifest.manifest.series().to_string(), backup);
        }
        for backup in newest.into_values() {
            report.check(config, store, keys, backup, true).await;
        }
    }
    Ok(report)
}

impl VerifyReport {
    fn add_listing_problems(&mut self, vanished: Vec<BackupRef>, damaged: Vec<Damaged>) {
        for r in vanished {
            self.checked.push(Checked {
                location: r,
                backup: None,
                outcome: Outcome::PrunedMeanwhile,
            });
        }
        for damaged in damaged {
            self.checked.push(Checked {
                location: damaged.location,
                backup: None,
                outcome: Outcome::Failed(damaged.error),
            });
        }
    }

    async fn check(
        &mut self,
        config: &Config,
        store: &Store,
        keys: &[Secret],
        backup: Backup,
        drill: bool,
    ) {
        let outcome = match check(config, store, keys, &backup, drill).await {
            Ok(outcome) => outcome,
            // Gone with its manifest: a prune got to it first. If that cannot be told, it
            // counts as a failure.
            Err(e)
                if e.is_not_found()
                    && !store
                        .manifest_exists(&backup.location)
                        .await
                        .unwrap_or(true) =>
            {
                Outcome::PrunedMeanwhile
            }
            Err(e) => Outcome::Failed(e),
        };
        self.checked.push(Checked {
            location: backup.location.clone(),
            backup: Some(backup),
            outcome,
        });
    }
}

async fn check(
    config: &Config,
    store: &Store,
    keys: &[Secret],
    backup: &Backup,
    drill: bool,
) -> Result<Outcome> {
    // Only database dumps can be drilled: the others (roles, command output) are verified.
    if drill && drill::can_drill(backup) {
        let server = DrillServer::for_backup(config, backup, None).await?;
        let (summary, report) = drill::drill(store, backup, keys, &server, false).await?;
        Ok(Outcome::Drilled(summary, report))
    } else {
        let summary = restore::verify(store, backup, keys, false).await?;
        Ok(Outcome::Verified(summary))
    }
}
