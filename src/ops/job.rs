//! Running one job once, as `coffre job run` and the daemon do: take the job's lock (or find
//! who holds it), run it by its kind (backup, prune, drill), release the lock, and record how
//! it went in the store, for `job list`, for catch-up after downtime, and for alerts.

use chrono::{DateTime, Utc};

use super::drill::DrillReport;
use super::lock::{self, Acquired, LockRecord, Locks};
use super::prune::PruneOutcome;
use super::verify::{self, Outcome, VerifyReport};
use super::{Context, backup, evidence, prune, rotate};
use crate::audit::Audit;
use crate::config::{Job, Task, TaskKind};
use crate::error::{Class, Error, Result};
use crate::notify::Notifier;
use crate::ops::backup::BackupSummary;
pub use crate::store::RunRecord;

/// What one run did.
#[derive(Debug, Default)]
pub struct Done {
    pub backups: Vec<BackupSummary>,
    pub prune: Option<PruneOutcome>,
    pub drilled: Option<VerifyReport>,
    pub rotated: Vec<rotate::Outcome>,
    /// Where a report job stored its report, one path per format.
    pub reports: Vec<String>,
    pub failures: Vec<Error>,
}

impl Done {
    /// The class of the first failure, which the run fails with.
    pub fn failure_class(&self) -> Option<Class> {
        self.failures.first().map(Error::class)
    }

    pub fn plaintext_bytes(&self) -> u64 {
        self.backups
            .iter()
            .map(|b| b.manifest.plaintext_bytes)
            .sum()
    }

    pub fn stored_bytes(&self) -> u64 {
        self.backups.iter().map(|b| b.manifest.stored_bytes).sum()
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum RunOutcome {
    Done(Done),
    /// Another process holds the job's lock: nothing was run.
    Busy(LockRecord),
}

#[derive(Debug)]
pub struct JobRun {
    pub task: String,
    pub kind: &'static str,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: RunOutcome,
    /// What was recorded in the store (none when the job was busy elsewhere).
    pub record: Option<RunRecord>,
}

/// What running jobs takes besides the context, set up once per process: where the locks
/// live, and who hears about runs.
pub struct Runner {
    pub locks: Locks,
    pub notifier: Notifier,
}

impl Runner {
    pub async fn from_config(config: &crate::config::Config) -> Result<Self> {
        Ok(Self {
            locks: Locks::from_config(config).await?,
            notifier: Notifier::from_config(config).await?,
        })
    }
}

/// Run `task` once, unless another process is running it.
pub async fn run(ctx: &Context, task: &Task, runner: &Runner) -> Result<JobRun> {
    let started_at = crate::clock::now();
    let holder = lock::holder_identity();
    let notifier = &runner.notifier;
    let mut guard = match runner
        .locks
        .acquire(&ctx.store, &task.name, &holder)
        .await?
    {
        Acquired::Taken(guard) => guard,
        Acquired::Busy(record) => {
            return Ok(JobRun {
                task: task.name.clone(),
                kind: task.kind.name(),
                started_at,
                finished_at: Utc::now(),
                outcome: RunOutcome::Busy(record),
                record: None,
            });
        }
    };
    // One writer of the trail for the whole run: it finds the trail's end once.
    let audit = ctx.audit();
    if let Some(expired) = &guard.took_over {
        evidence::lock_taken_over(&audit, &task.name, &expired.holder, expired.expires_at).await;
    }
    let heartbeat = notifier
        .heartbeat(&ctx.config, task)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("{e}");
            None
        });
    notifier.started(heartbeat.as_ref()).await;
    // The lock is renewed while the job runs; the job never waits on that.
    let renewing = async {
        loop {
            tokio::time::sleep(lock::LOCK_TTL / 3).await;
            if let Err(e) = guard.renew().await {
                tracing::warn!("job '{}': {e}", task.name);
            }
        }
    };
    let done = tokio::select! {
        done = run_body(ctx, task, &audit) => done,
        () = renewing => unreachable!("renewing never ends"),
    };
    let finished_at = crate::clock::now();
    if let Err(e) = guard.release().await {
        tracing::warn!("job '{}': releasing its lock: {e}", task.name);
    }
    let succeeded = done.failures.is_empty();
    let previous = last_run(ctx, &task.name).await.ok().flatten();
    let last_success_at = match succeeded {
        true => Some(finished_at),
        false => previous.as_ref().and_then(|r| r.last_success_at),
    };
    let drills = drill_results(&done, finished_at, previous.as_ref());
    let record = RunRecord {
        task: task.name.clone(),
        kind: task.kind.name().into(),
        holder,
        started_at,
        finished_at,
        status: if succeeded { "ok" } else { "failed" }.into(),
        class: done.failure_class().map(|c| c.name().to_string()),
        error: done.failures.first().map(|e| e.message().to_string()),
        backups: done.backups.len(),
        plaintext_bytes: done.plaintext_bytes(),
        stored_bytes: done.stored_bytes(),
        last_success_at,
        drills,
    };
    if let Err(e) = ctx.store.put_run_record(&record).await {
        tracing::warn!("job '{}': recording its run: {e}", task.name);
    }
    let made = done.backups.iter().map(|b| b.location.id).collect();
    let kind = task.kind.name();
    evidence::job_ran(
        &audit,
        &task.name,
        kind,
        started_at,
        made,
        done.failures.first(),
    )
    .await;
    notifier.finished(heartbeat.as_ref(), &record).await;
    Ok(JobRun {
        task: task.name.clone(),
        kind: task.kind.name(),
        started_at,
        finished_at,
        outcome: RunOutcome::Done(done),
        record: Some(record),
    })
}

/// Each database a drill run drilled: passed or not, its recovery time and point, and when
/// its drill last passed (now, or as the previous run recorded).
fn drill_results(
    done: &Done,
    finished_at: DateTime<Utc>,
    previous: Option<&RunRecord>,
) -> Vec<crate::store::DrillResult> {
    let Some(report) = &done.drilled else {
        return Vec::new();
    };
    report
        .checked
        .iter()
        .filter_map(|c| {
            let database = c
                .backup
                .as_ref()
                .and_then(|b| b.manifest.manifest.database_shown().map(str::to_string));
            let drill = match &c.outcome {
                Outcome::Drilled(_, d) => Some(d),
                Outcome::Failed(_) => None,
                _ => return None,
            };
            let taken = c
                .backup
                .as_ref()
                .map_or(c.location.time, |b| b.manifest.manifest.started_at);
            let earlier = previous
                .into_iter()
                .flat_map(|r| &r.drills)
                .find(|d| d.job == c.location.job && d.database == database)
                .and_then(|d| d.last_passed_at);
            Some(crate::store::DrillResult {
                job: c.location.job.clone(),
                database,
                passed: drill.is_some(),
                duration_seconds: drill.map(|d| d.duration_seconds()),
                rows: drill.map(|d| d.counts.rows),
                // A failed drill has no report: the backup's age when the run ended.
                backup_age_seconds: drill
                    .map_or_else(|| finished_at - taken, DrillReport::backup_age)
                    .num_seconds(),
                last_passed_at: match drill {
                    Some(_) => Some(finished_at),
                    None => earlier,
                },
            })
        })
        .collect()
}

/// Gather the report of the last `period`, store it in each format, and post its JSON to the
/// webhook when one is set.
async fn report_job(
    ctx: &Context,
    task: &str,
    jobs: &[String],
    period: std::time::Duration,
    webhook: Option<&crate::secretstore::SecretRef>,
) -> Result<Vec<String>> {
    let to = crate::clock::now();
    let period = chrono::Duration::from_std(period)
        .map_err(|e| Error::config(format!("job '{task}': period: {e}")))?;
    let scope = super::report::Scope {
        from: to - period,
        to,
        jobs: jobs.to_vec(),
    };
    let report = super::report::gather(&ctx.config, &ctx.store, &scope).await?;
    let json = serde_json::to_value(&report).expect("a report serializes");
    // Locked as the audit trail is, from now (the report's own time may be a test's).
    let lock = ctx.config.audit.object_lock.map(|l| {
        let until = chrono::Utc::now() + chrono::Duration::days(i64::from(l.days));
        (l.mode, until)
    });
    let mut stored = Vec::new();
    for (extension, text) in [
        ("json", format!("{json}\n")),
        ("md", crate::report::markdown::render(&report)),
        ("html", crate::report::html::render(&report)),
    ] {
        let bytes = text.into_bytes();
        stored.push(
            ctx.store
                .put_report(task, to, extension, bytes, lock)
                .await?,
        );
    }
    if let Some(webhook) = webhook {
        let url = crate::notify::read_url(&ctx.config, webhook, &format!("job '{task}': webhook"))
            .await?;
        let body = serde_json::json!({
            "text": format!(
                "coffre report {} to {}: {} findings{}",
                scope.from.date_naive(),
                scope.to.date_naive(),
                report.findings.len(),
                report.findings.first().map(|f| format!(", first: {f}")).unwrap_or_default()
            ),
            "coffre": { "report": json, "stored": stored },
        });
        let sent = reqwest::Client::new()
            .post(url.as_str())
            .timeout(std::time::Duration::from_secs(30))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        // The URL is a credential: never in the message.
        sent.map_err(|e| {
            Error::store(format!(
                "job '{task}': posting the report to its webhook: {}",
                e.without_url()
            ))
        })?;
    }
    Ok(stored)
}

/// The record of `task`'s last run, if it ran.
pub async fn last_run(ctx: &Context, task: &str) -> Result<Option<RunRecord>> {
    ctx.store.last_run(task).await
}

/// The backup jobs an operation acts on: those it names, or all.
fn operands<'a>(ctx: &'a Context, kind: &TaskKind) -> Result<Vec<&'a Job>> {
    match kind.jobs() {
        [] => ctx.config.all_jobs(),
        names => names.iter().map(|n| ctx.config.job(n)).collect(),
    }
}

async fn run_body(ctx: &Context, task: &Task, audit: &Audit<'_>) -> Done {
    let mut done = Done::default();
    if let Err(e) = run_kind(ctx, task, audit, &mut done).await {
        done.failures.push(e);
    }
    done
}

async fn run_kind(ctx: &Context, task: &Task, audit: &Audit<'_>, done: &mut Done) -> Result<()> {
    let keys = || ctx.config.encryption.load_keys(&ctx.config.secrets);
    match &task.kind {
        TaskKind::Backup => {
            let job = ctx.config.job(&task.name)?;
            let outcomes = backup::backup_jobs(ctx, &[job], &keys().await?).await;
            evidence::backed_up_all(audit, &outcomes).await;
            for outcome in outcomes {
                done.backups.extend(outcome.backups);
                done.failures.extend(outcome.failures);
                match outcome.prune {
                    Some(Ok(pruned)) => done.prune = Some(pruned),
                    Some(Err(e)) => done.failures.push(e),
                    None => {}
                }
            }
        }
        TaskKind::Prune { .. } => {
            let jobs = operands(ctx, &task.kind)?;
            let mut pruned = prune::prune(&ctx.store, &jobs, crate::clock::now(), false).await?;
            evidence::pruned(audit, &pruned).await;
            if let Some(report) = &mut pruned.report {
                done.failures.append(&mut report.failures);
            }
            done.prune = Some(pruned);
        }
        TaskKind::Drill { .. } => {
            let jobs = operands(ctx, &task.kind)?;
            let report =
                verify::drill_newest(&ctx.config, &ctx.store, &keys().await?, &jobs).await?;
            evidence::checked_all(audit, &report, true).await;
            for checked in &report.checked {
                if let Outcome::Failed(e) = &checked.outcome {
                    done.failures.push(Error::new(
                        e.class(),
                        format!("backup {}: {}", checked.location.id, e.message()),
                    ));
                }
            }
            done.drilled = Some(report);
        }
        TaskKind::Report {
            jobs,
            period,
            webhook,
        } => {
            done.reports = report_job(ctx, &task.name, jobs, *period, webhook.as_ref()).await?;
        }
        TaskKind::Rotation { targets } => {
            let targets = rotate::select(&ctx.config, targets)?;
            // The rotations' own events that the store did not take fail the run.
            let unstored_before = audit.unstored().len();
            let options = rotate::RotateOptions {
                only_due: true,
                ..rotate::RotateOptions::new(&audit.origin().trigger, ctx.stop.clone())
            };
            for result in rotate::rotate(&targets, &ctx.config.secrets, audit, &options).await {
                match result {
                    Ok(outcome) => done.rotated.push(outcome),
                    Err(e) => done.failures.push(e),
                }
            }
            let unstored = audit.unstored().into_iter().skip(unstored_before);
            done.failures.extend(unstored.map(Error::store));
        }
    }
    Ok(())
}
