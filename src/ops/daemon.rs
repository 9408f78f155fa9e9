//! `coffre run`: fire every scheduled job at its times, until told to stop.
//!
//! Due jobs run side by side, but a job never runs twice at once (here, and across pods through
//! its lock). A job that says `catch_up = true` and missed runs while the daemon was down runs
//! once at start, however many it missed. On a stop request no new run starts; the runs in
//! flight stop too (their uploads are aborted) and are recorded as failed.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::collections::{BTreeMap, BTreeSet};

use super::Context;
use super::job::{self, JobRun, Runner};
use crate::config::Task;
use crate::error::Result;

/// What happens after each run: the caller reports it (prints, pushes metrics, notifies).
pub trait Observer {
    fn finished(&self, run: &Result<JobRun>, task: &Task);
}

/// The scheduled jobs and when each runs next.
struct Plan<'a> {
    next: BTreeMap<&'a str, (DateTime<Utc>, &'a Task)>,
}

impl<'a> Plan<'a> {
    fn new(tasks: impl Iterator<Item = &'a Task>, now: DateTime<Utc>) -> Self {
        let next = tasks
            .filter_map(|t| {
                let schedule = t.schedule.as_ref()?;
                Some((t.name.as_str(), (schedule.next_after(now)?, t)))
            })
            .collect();
        Self { next }
    }

    fn earliest(&self) -> Option<DateTime<Utc>> {
        self.next.values().map(|(at, _)| *at).min()
    }

    /// The tasks due at `now`, each moved on to its next time.
    fn take_due(&mut self, now: DateTime<Utc>) -> Vec<&'a Task> {
        let mut due = Vec::new();
        for (at, task) in self.next.values_mut() {
            if *at <= now {
                due.push(*task);
                let schedule = task.schedule.as_ref().expect("scheduled");
                match schedule.next_after(now) {
                    Some(next) => *at = next,
                    None => *at = DateTime::<Utc>::MAX_UTC,
                }
            }
        }
        due
    }
}

/// The jobs to run at start because they missed runs while the daemon was down.
async fn catch_up(ctx: &Context, now: DateTime<Utc>) -> Vec<&Task> {
    let mut due = Vec::new();
    for task in ctx.config.tasks.values() {
        let Some(schedule) = task.schedule.as_ref().filter(|s| s.catch_up) else {
            continue;
        };
        match job::last_run(ctx, &task.name).await {
            Ok(Some(last)) if schedule.missed(last.started_at, now) => due.push(task),
            Ok(_) => {}
            Err(e) => tracing::warn!("job '{}': no catch-up: {e}", task.name),
        }
    }
    due
}

/// Run the scheduled jobs until `ctx.stop` is cancelled.
pub async fn run<'a>(ctx: &'a Context, runner: &'a Runner, observer: &dyn Observer) -> Result<()> {
    let scheduled: Vec<&Task> = ctx
        .config
        .tasks
        .values()
        .filter(|t| t.schedule.is_some())
        .collect();
    tracing::info!(jobs = scheduled.len(), "daemon started");
    let mut plan = Plan::new(scheduled.into_iter(), Utc::now());
    let mut running: BTreeSet<&str> = BTreeSet::new();
    let mut runs = FuturesUnordered::new();
    let start = |task: &'a Task| async move { (task, job::run(ctx, task, runner).await) };
    for task in catch_up(ctx, Utc::now()).await {
        tracing::info!(job = %task.name, "catching up a run missed while down");
        running.insert(task.name.as_str());
        runs.push(start(task));
    }
    loop {
        let sleep_until = plan.earliest().unwrap_or(DateTime::<Utc>::MAX_UTC);
        // Wake at least daily: a clock that jumps is noticed within a day.
        let wait = (sleep_until - Utc::now())
            .to_std()
            .unwrap_or_default()
            .min(std::time::Duration::from_secs(86_400));
        tokio::select! {
            () = ctx.stop.cancelled() => break,
            Some((task, result)) = runs.next(), if !runs.is_empty() => {
                running.remove(task.name.as_str());
                observer.finished(&result, task);
            }
            () = tokio::time::sleep(wait) => {
                for task in plan.take_due(Utc::now()) {
                    if !running.insert(task.name.as_str()) {
                        tracing::warn!(job = %task.name, "still running from its last time: this run is skipped");
                        continue;
                    }
                    runs.push(start(task));
                }
            }
        }
    }
    // Stopping: the runs in flight see the stop (uploads abort) and finish quickly.
    while let Some((task, result)) = runs.next().await {
        observer.finished(&result, task);
    }
    tracing::info!("daemon stopped");
    Ok(())
}
