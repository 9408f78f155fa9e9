//! `job run`, `job list` and `run` (the daemon): printing what jobs did.

use chrono::Utc;
use serde_json::{Value, json};

use super::args::Output;
use super::{json, render};
use crate::config::Task;
use crate::error::{Error, Result};
use crate::manifest::rfc3339;
use std::sync::Arc;

use crate::metrics::Metrics;
use crate::ops::daemon::{self, Observer};
use crate::ops::job::{self, JobRun, RunOutcome, RunRecord, Runner};
use crate::ops::{Context, verify::Outcome};

/// Print what one run did, its details first, then one summary.
fn print_run(run: &JobRun, output: Output) {
    if let RunOutcome::Done(done) = &run.outcome {
        for made in &done.backups {
            super::commands::emit(
                output,
                || render::backup_made(made),
                || json::backup_made(made),
            );
        }
        if let Some(pruned) = &done.prune {
            let items: Vec<_> = pruned.plans.iter().flat_map(|p| p.items()).collect();
            for item in items.iter().filter(|i| !i.verdict.keeps()) {
                let text = || format!("{}  {}", item.location.id, render::verdict(&item.verdict));
                super::commands::emit(output, text, || json::plan_item(item, false));
            }
        }
        for checked in done.drilled.iter().flat_map(|r| &r.checked) {
            let (r, outcome) = (&checked.location, &checked.outcome);
            match (outcome, &checked.backup) {
                (Outcome::Drilled(s, d), Some(b)) => super::commands::emit(
                    output,
                    || render::drilled(b, d),
                    || json::verified(b, s, Some(d)),
                ),
                (Outcome::Verified(s), Some(b)) => super::commands::emit(
                    output,
                    || render::verified(b, s),
                    || json::verified(b, s, None),
                ),
                _ => super::commands::emit(
                    output,
                    || render::not_verified(r, outcome),
                    || json::not_verified(r, outcome),
                ),
            }
        }
        for outcome in &done.rotated {
            super::commands::emit(
                output,
                || super::rotate::outcome_line(outcome),
                || super::rotate::outcome_json(outcome),
            );
        }
        for stored in &done.reports {
            super::commands::emit(
                output,
                || format!("report stored: {stored}"),
                || json::object("report_stored", serde_json::json!({ "path": stored })),
            );
        }
    }
    super::commands::emit(output, || run_line(run), || run_json(run));
}

fn run_line(run: &JobRun) -> String {
    let seconds = (run.finished_at - run.started_at).num_milliseconds() as f64 / 1000.0;
    match &run.outcome {
        RunOutcome::Busy(lock) => format!(
            "job '{}' ({}) is running elsewhere: held by {} since {}, until {} at the latest; nothing done here",
            run.task,
            run.kind,
            lock.holder,
            rfc3339::format(&lock.acquired_at),
            rfc3339::format(&lock.expires_at)
        ),
        RunOutcome::Done(done) if done.failures.is_empty() => {
            format!("job '{}' ({}) ok in {seconds:.1}s", run.task, run.kind)
        }
        RunOutcome::Done(done) => format!(
            "job '{}' ({}) failed in {seconds:.1}s: {}",
            run.task,
            run.kind,
            render::count(done.failures.len() as u64, "failure")
        ),
    }
}

fn run_json(run: &JobRun) -> Value {
    let (status, holder, failures, backups) = match &run.outcome {
        RunOutcome::Busy(lock) => ("busy", Some(lock.holder.clone()), Vec::new(), Vec::new()),
        RunOutcome::Done(done) => (
            if done.failures.is_empty() {
                "ok"
            } else {
                "failed"
            },
            None,
            done.failures
                .iter()
                .map(|e| json!({"class": e.class().name(), "error": e.message()}))
                .collect(),
            done.backups
                .iter()
                .map(|b| b.location.id.to_string())
                .collect(),
        ),
    };
    json::object(
        "job_run",
        json!({
            "job": run.task,
            "kind": run.kind,
            "status": status,
            "held_by": holder,
            "started_at": rfc3339::format(&run.started_at),
            "finished_at": rfc3339::format(&run.finished_at),
            "backups": backups,
            "failures": failures,
        }),
    )
}

/// The run's failure, for the exit code: busy is not one.
fn run_result(run: &JobRun) -> Result<()> {
    match &run.outcome {
        RunOutcome::Done(done) => match done.failures.first() {
            None => Ok(()),
            Some(first) if done.failures.len() == 1 => {
                Err(Error::new(first.class(), first.message()))
            }
            Some(first) => {
                for e in &done.failures {
                    tracing::error!("{}", super::hints::error_line(e));
                }
                Err(Error::new(
                    first.class(),
                    format!(
                        "job '{}': {} failed (logged above)",
                        run.task,
                        done.failures.len()
                    ),
                ))
            }
        },
        RunOutcome::Busy(_) => Ok(()),
    }
}

pub async fn run_one(ctx: &Context, name: &str, output: Output) -> Result<()> {
    let task = ctx.config.task(name)?;
    let runner = Runner::from_config(&ctx.config).await?;
    let run = job::run(ctx, task, &runner).await?;
    print_run(&run, output);
    if let (Some(pushgateway), Some(record)) = (&ctx.config.metrics.pushgateway, &run.record) {
        let metrics = Metrics::new();
        metrics.record(record, true);
        if let Err(e) = crate::metrics::push(pushgateway, &run.task, &metrics).await {
            tracing::warn!("{e}");
        }
    }
    run_result(&run)
}

fn last_text(last: &Option<RunRecord>) -> String {
    match last {
        None => "never ran".into(),
        Some(r) if r.succeeded() => format!("ok {}", r.finished_at.format("%Y-%m-%d %H:%M")),
        Some(r) => format!(
            "FAILED {}: {}",
            r.finished_at.format("%Y-%m-%d %H:%M"),
            r.error.as_deref().unwrap_or("")
        ),
    }
}

fn job_json(task: &Task, last: &Option<RunRecord>) -> Value {
    let next: Vec<String> = task
        .schedule
        .as_ref()
        .map(|s| {
            s.upcoming(Utc::now(), 3)
                .iter()
                .map(rfc3339::format)
                .collect()
        })
        .unwrap_or_default();
    json::object(
        "job",
        json!({
            "job": task.name,
            "kind": task.kind.name(),
            "file": task.file.display().to_string(),
            "schedule": task.schedule.as_ref().map(|s| s.cron.as_str()),
            "timezone": task.schedule.as_ref().map(|s| s.timezone.name()),
            "catch_up": task.schedule.as_ref().is_some_and(|s| s.catch_up),
            "next_runs": next,
            "last_run": last.as_ref().map(|r| json!({
                "status": r.status,
                "started_at": rfc3339::format(&r.started_at),
                "finished_at": rfc3339::format(&r.finished_at),
                "class": r.class,
                "error": r.error,
            })),
        }),
    )
}

pub async fn list(ctx: &Context, output: Output) -> Result<()> {
    if !output.json {
        println!(
            "{:<20}  {:<7}  {:<28}  {:<17}  LAST RUN",
            "JOB", "KIND", "SCHEDULE", "NEXT (UTC)"
        );
    }
    for task in ctx.config.tasks.values() {
        let last = job::last_run(ctx, &task.name).await.unwrap_or_else(|e| {
            tracing::warn!("{e}");
            None
        });
        if output.json {
            println!("{}", job_json(task, &last));
            continue;
        }
        let schedule = task
            .schedule
            .as_ref()
            .map(|s| format!("{} {}", s.cron.as_str(), s.timezone.name()))
            .unwrap_or_else(|| "-".into());
        let next = task
            .schedule
            .as_ref()
            .and_then(|s| s.next_after(Utc::now()))
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20}  {:<7}  {:<28}  {:<17}  {}",
            task.name,
            task.kind.name(),
            schedule,
            next,
            last_text(&last)
        );
    }
    Ok(())
}

/// Prints each run the daemon finishes, and keeps the metrics it serves.
struct Printer {
    output: Output,
    metrics: Arc<Metrics>,
}

impl Observer for Printer {
    fn finished(&self, run: &Result<JobRun>, task: &Task) {
        match run {
            Ok(run) => {
                if let Some(record) = &run.record {
                    self.metrics.record(record, true);
                }
                print_run(run, self.output);
                if let Err(e) = run_result(run) {
                    tracing::error!("{}", super::hints::error_line(&e));
                }
            }
            Err(e) => tracing::error!("job '{}': {}", task.name, super::hints::error_line(e)),
        }
    }
}

pub async fn daemon(ctx: &Context, output: Output) -> Result<()> {
    let runner = Runner::from_config(&ctx.config).await?;
    // Metrics start from what the store remembers of each job.
    let metrics = Arc::new(Metrics::new());
    for task in ctx.config.tasks.values() {
        match job::last_run(ctx, &task.name).await {
            Ok(Some(record)) => metrics.record(&record, false),
            Ok(None) => {}
            Err(e) => tracing::warn!("{e}"),
        }
    }
    let printer = Printer {
        output,
        metrics: Arc::clone(&metrics),
    };
    let scheduling = daemon::run(ctx, &runner, &printer);
    match ctx.config.metrics.listen {
        None => scheduling.await,
        Some(addr) => {
            let listener = crate::metrics::bind(addr).await?;
            let serving = crate::metrics::serve(listener, metrics, ctx.stop.clone());
            tokio::join!(scheduling, serving).0
        }
    }
}
