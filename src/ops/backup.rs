//! Backing up a job: plan its dumps, and write each as a backup (`crate::data`: the dump is
//! stored, then the manifest is written last) within the job's timeout. A failed backup
//! leaves nothing that `list` or `restore` would see.

use uuid::Uuid;

use crate::config::Job;
use crate::crypto::keys::{Secret, Stanza, SymmetricKey};
use crate::data;
use crate::error::{Error, Result};
use crate::manifest::{Layout, Manifest};
use crate::secretstore::Resolver;
use crate::source;
use crate::store::{BackupRef, Store};

use super::prune::{self, PruneOutcome};
use super::{Context, STOP_GRACE};

/// What a finished backup reports.
#[derive(Debug)]
pub struct BackupSummary {
    pub location: BackupRef,
    pub manifest: Manifest,
    /// Where its data is (format 2: what it stored new, what it reuses).
    pub layout: Layout,
    /// The stanzas that open it.
    pub keys: Vec<Stanza>,
}

/// The backups one job made, and the dumps that failed.
#[derive(Debug, Default)]
pub struct JobOutcome {
    pub job: String,
    pub backups: Vec<BackupSummary>,
    pub failures: Vec<Error>,
    /// The prune after a successful backup (`prune_after_backup`), when the job asks for one.
    pub prune: Option<Result<PruneOutcome>>,
}

/// Back up `jobs` one after the other, each pruned after a successful backup when it asks for
/// it. A failed job does not stop the others; a stop request (SIGTERM) does.
pub async fn backup_jobs(ctx: &Context, jobs: &[&Job], recipients: &[Secret]) -> Vec<JobOutcome> {
    let mut outcomes = Vec::new();
    let dedup_key = match ctx
        .config
        .encryption
        .load_dedup_key(&ctx.config.secrets)
        .await
    {
        Ok(key) => key,
        Err(e) => {
            return jobs
                .iter()
                .map(|job| JobOutcome {
                    job: job.name.clone(),
                    failures: vec![Error::new(e.class(), e.message().to_string())],
                    ..JobOutcome::default()
                })
                .collect();
        }
    };
    let keys = Keys {
        recipients,
        dedup_key: dedup_key.as_ref(),
    };
    for job in jobs {
        if ctx.stop.is_cancelled() {
            break;
        }
        let mut outcome = match run(&ctx.store, job, &keys, &ctx.config.secrets).await {
            Ok(outcome) => outcome,
            Err(e) => JobOutcome {
                job: job.name.clone(),
                failures: vec![e],
                ..JobOutcome::default()
            },
        };
        if !outcome.backups.is_empty() && job.retention.prune_after_backup {
            outcome.prune =
                Some(prune::prune(&ctx.store, &[job], crate::clock::now(), false).await);
        }
        outcomes.push(outcome);
    }
    outcomes
}

/// What new backups are encrypted to, and the key their dedup secret derives from.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    pub recipients: &'a [Secret],
    pub dedup_key: Option<&'a SymmetricKey>,
}

/// Back up `job` into `store`, encrypted to every key in `keys`: one backup per dump the job
/// plans (a job over all databases of a server makes one per database). A failed dump does
/// not stop the others.
pub async fn run(
    store: &Store,
    job: &Job,
    keys: &Keys<'_>,
    secrets: &Resolver,
) -> Result<JobOutcome> {
    if keys.recipients.is_empty() {
        return Err(Error::config(
            "no encryption key configured: add at least one entry to [encryption] keys (see 'coffre key generate')",
        ));
    }
    let plans = source::plan(&job.source, secrets)
        .await
        .map_err(|e| e.context(format!("job '{}'", job.name)))?;
    let mut outcome = JobOutcome {
        job: job.name.clone(),
        ..JobOutcome::default()
    };
    for plan in &plans {
        match run_one(store, job, plan, keys).await {
            Ok(summary) => outcome.backups.push(summary),
            Err(e) => {
                let what = match &plan.info.database {
                    Some(db) => format!("job '{}', database '{db}'", job.name),
                    None => format!("job '{}'", job.name),
                };
                outcome.failures.push(e.context(what));
            }
        }
    }
    Ok(outcome)
}

/// One backup of one planned dump, within the job's timeout.
async fn run_one(
    store: &Store,
    job: &Job,
    plan: &source::DumpPlan,
    keys: &Keys<'_>,
) -> Result<BackupSummary> {
    let started_at = crate::clock::now();
    let deadline = tokio::time::Instant::now() + job.timeout.0;
    let backup_id = Uuid::new_v4();
    let location = BackupRef::new(&job.name, started_at, backup_id);
    // Keys first: a bad key fails the job before the dump starts.
    let series = plan.info.database.as_deref().unwrap_or(&plan.info.kind);
    let mut writer = data::Writer::new(
        store,
        job,
        &location,
        keys.recipients,
        keys.dedup_key,
        series,
    )
    .await?;

    crate::failpoint::hit("backup:before-dump").await;
    let dump = plan.start()?;
    let info = plan.info.clone();
    tracing::info!(job = %job.name, backup = %backup_id, database = info.database.as_deref(), "backup started");
    crate::failpoint::hit("backup:dump-started").await;

    // Past the deadline the upload stops (and is aborted), and no manifest is written: prune
    // counts on a backup being over once its timeout has passed. A transfer that does not stop
    // within the grace after that is dropped, which kills its dump.
    let stop = store.stop_token();
    let deadline_passed = std::sync::atomic::AtomicBool::new(false);
    let watchdog = async {
        tokio::time::sleep_until(deadline).await;
        deadline_passed.store(true, std::sync::atomic::Ordering::SeqCst);
        stop.cancel();
        tokio::time::sleep(STOP_GRACE).await;
    };
    let transferred = tokio::select! {
        result = writer.transfer(store, job, dump, &stop) => result,
        () = watchdog => Err(Error::source_failed("the transfer did not stop")),
    };
    let timed_out = || deadline_passed.load(std::sync::atomic::Ordering::SeqCst);
    let timeout_error = || {
        Error::source_failed(format!(
            "job '{}': backup {backup_id} ran longer than the job's timeout ({}) and was stopped: raise 'timeout' in {} if it needs longer",
            job.name,
            job.timeout,
            job.file.display()
        ))
    };
    let transferred = match transferred {
        Err(_) if timed_out() => Err(timeout_error()),
        other => other,
    };
    if let Err(e) = transferred {
        // A failed backup leaves nothing: what it stored counts for no backup.
        if let Err(d) = writer.discard(store).await {
            tracing::warn!("{d}");
        }
        return Err(e);
    }
    crate::failpoint::hit("backup:data-complete").await;
    if tokio::time::Instant::now() >= deadline {
        if let Err(e) = writer.discard(store).await {
            tracing::warn!("{e}");
        }
        return Err(timeout_error());
    }
    let (manifest, layout, keys) = writer.finish(store, job, info, started_at).await?;
    tracing::info!(job = %job.name, backup = %backup_id, "backup complete");
    Ok(BackupSummary {
        location,
        manifest,
        layout,
        keys,
    })
}
