//! Restarting each workload once per run, however many of its secrets the run rotates: every
//! rotation goes to PUBLISHED first (`Restarts::Deferred`), then each workload that uses any
//! of them gets one annotation patch and its rollout is awaited, then each rotation whose
//! consumers all rolled out finishes (`Restarts::DoneBy`); one whose consumers did not fails
//! at ROLLED_OUT (`Restarts::Failed`), keeping the old credential, and its next run resumes.
//! A scheduled run of several targets and an incident both run this way.

use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{Outcome, Restarts, RotateOptions, consumers, rotate_waves};
use crate::audit::Audit;
use crate::config::RotationTarget;
use crate::error::{Error, Result};
use crate::k8s::{Cluster, Workload};
use crate::rotation::journal::State;
use crate::secretstore::Resolver;

/// How one workload's restart went.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadReport {
    pub workload: String,
    /// The targets it uses among those rotated.
    pub secrets: Vec<String>,
    /// Patched by this run (false: it already carried the id, or the patch failed).
    pub restarted: bool,
    pub rollout_confirmed: bool,
    pub error: Option<String>,
}

/// Each workload and the targets that use it.
pub fn workloads_of(
    consumers: &BTreeMap<String, Vec<Workload>>,
) -> BTreeMap<Workload, Vec<String>> {
    let mut out: BTreeMap<Workload, Vec<String>> = BTreeMap::new();
    for (target, workloads) in consumers {
        for w in workloads {
            out.entry(w.clone()).or_default().push(target.clone());
        }
    }
    out
}

/// Patch each of `workloads` once with the annotation `id` (not again if it carries it), then
/// wait for every rollout at once, each up to the longest `rollout_timeout` of its targets.
pub async fn restart_once(
    secrets: &Resolver,
    id: &str,
    workloads: &BTreeSet<&Workload>,
    targets: &[&RotationTarget],
    consumers: &BTreeMap<String, Vec<Workload>>,
    stop: &tokio_util::sync::CancellationToken,
) -> Vec<WorkloadReport> {
    if workloads.is_empty() {
        return Vec::new();
    }
    let users = workloads_of(consumers);
    let failed = |w: &Workload, error: String| WorkloadReport {
        workload: w.to_string(),
        secrets: users.get(w).cloned().unwrap_or_default(),
        restarted: false,
        rollout_confirmed: false,
        error: Some(error),
    };
    let cluster = match secrets.stores.cluster().await {
        Ok(c) => c,
        Err(e) => return workloads.iter().map(|w| failed(w, e.to_string())).collect(),
    };
    let timeout = |w: &Workload| {
        targets
            .iter()
            .filter(|t| users.get(w).is_some_and(|u| u.contains(&t.name)))
            .map(|t| t.rollout_timeout)
            .max()
            .unwrap_or(Duration::from_secs(300))
    };
    futures::stream::iter(workloads.iter().map(|w| {
        let cluster: &Cluster = &cluster;
        let (users, failed, timeout) = (&users, &failed, &timeout);
        async move {
            let restarted = match cluster.restart(w, id).await {
                Ok(r) => r,
                Err(e) => return failed(w, e.to_string()),
            };
            let waited = cluster
                .wait_rollout(w, timeout(w), tokio::time::Instant::now(), stop)
                .await;
            WorkloadReport {
                workload: w.to_string(),
                secrets: users.get(*w).cloned().unwrap_or_default(),
                restarted,
                rollout_confirmed: waited.is_ok(),
                error: waited.err().map(|e| e.to_string()),
            }
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await
}

/// Rotate `targets`, restarting each of their workloads once for the whole run.
pub(super) async fn rotate_restarting_once(
    targets: &[&RotationTarget],
    secrets: &Resolver,
    audit: &Audit<'_>,
    options: &RotateOptions,
) -> Vec<Result<Outcome>> {
    let deferred = RotateOptions {
        restarts: Restarts::Deferred,
        ..options.clone()
    };
    let mut results = rotate_waves(targets, secrets, audit, &deferred).await;
    let published: Vec<usize> = (0..targets.len())
        .filter(|&i| {
            matches!(&results[i], Ok(Outcome::Rotated { state, .. }) if state == State::Published.name())
        })
        .collect();
    if published.is_empty() {
        return results;
    }
    let chosen: Vec<&RotationTarget> = published.iter().map(|&i| targets[i]).collect();
    let mut by_target = BTreeMap::new();
    let mut lookup_failed = BTreeMap::new();
    let restarting: Vec<&RotationTarget> = chosen
        .iter()
        .copied()
        .filter(|t| t.restarts_consumers())
        .collect();
    if !restarting.is_empty() {
        match secrets.stores.cluster().await {
            Ok(cluster) => {
                let found = consumers(&restarting, Some(&cluster)).await;
                for (t, found) in restarting.iter().zip(found) {
                    match found {
                        Ok(w) => {
                            by_target.insert(t.name.clone(), w);
                        }
                        Err(e) => {
                            lookup_failed.insert(t.name.clone(), e.to_string());
                        }
                    }
                }
            }
            Err(e) => {
                for t in &restarting {
                    lookup_failed.insert(t.name.clone(), e.to_string());
                }
            }
        }
    }
    let workloads: BTreeSet<&Workload> = by_target.values().flatten().collect();
    let id = uuid::Uuid::new_v4().to_string();
    let reports = restart_once(secrets, &id, &workloads, &chosen, &by_target, &options.stop).await;
    // Each remaining rotation runs on with what happened to its own workloads.
    let finishing = published.iter().map(|&i| {
        let t = targets[i];
        let mine: Vec<&WorkloadReport> = reports
            .iter()
            .filter(|r| r.secrets.contains(&t.name))
            .collect();
        let restarts = match (
            lookup_failed.get(&t.name),
            mine.iter().find(|r| !r.rollout_confirmed),
        ) {
            (Some(why), _) => Restarts::Failed(why.clone()),
            (None, Some(r)) => Restarts::Failed(
                r.error
                    .clone()
                    .unwrap_or_else(|| format!("{}: the rollout was not confirmed", r.workload)),
            ),
            (None, None) if mine.is_empty() => {
                Restarts::DoneBy("no workload uses the secret".into())
            }
            (None, None) => Restarts::DoneBy(format!(
                "restarted once for this run and rolled out: {}",
                mine.iter()
                    .map(|r| r.workload.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        let finish = RotateOptions {
            restarts,
            ..options.clone()
        };
        async move {
            let mut finished = rotate_waves(&[t], secrets, audit, &finish).await;
            (
                i,
                finished
                    .pop()
                    .unwrap_or_else(|| Err(Error::internal("no result"))),
            )
        }
    });
    let finished: Vec<(usize, Result<Outcome>)> = futures::stream::iter(finishing)
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    for (i, result) in finished {
        results[i] = result;
    }
    results
}
