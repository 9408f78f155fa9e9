//! `coffre incident rotate`: rotate every credential in scope now, restart each workload that
//! uses one of them exactly once, revoke the old credentials once the rollouts are confirmed,
//! and report what changed.
//!
//! It reuses the rotation state machine: each target runs to PUBLISHED (`Restarts::Deferred`),
//! then every workload of those targets gets one annotation patch carrying the incident's id,
//! then, once its rollouts are confirmed, each target runs on to FINISHED and revokes what it
//! replaced (no grace period unless `--grace`). The incident's own record (a lock object in
//! the store) keeps its id across runs: interrupted, the same command resumes it, and a
//! workload already carrying the id is not patched again.

mod scope;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::rotate::{
    self, Outcome, Plan, Restarts, RotateOptions, WorkloadReport, restart_once, workloads_of,
};
use crate::audit::Audit;
use crate::config::{Config, RotationTarget};
use crate::error::{Class, Error, Result};
use crate::k8s::Workload;
use crate::rotation::journal::{Record, State};
use crate::store::Store;
pub use scope::{Scope, select};

/// The store lock object that holds the open incident.
const OPEN_INCIDENT: &str = "incident";

/// A workload the incident restarts, and the secrets in scope it uses.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadPlan {
    pub workload: String,
    pub secrets: Vec<String>,
}

/// What an incident will do, before it does anything.
#[derive(Clone, Debug, Serialize)]
pub struct IncidentPlan {
    pub scope: String,
    pub secrets: Vec<Plan>,
    pub workloads: Vec<WorkloadPlan>,
    /// Secrets whose plan could not be read, with why.
    pub unreadable: Vec<(String, String)>,
}

/// The consumers of each target in scope, each namespace's workloads listed once.
async fn consumers(
    config: &Config,
    targets: &[&RotationTarget],
) -> Result<BTreeMap<String, Vec<Workload>>> {
    let cluster = match targets.iter().any(|t| t.discover_consumers) {
        true => Some(config.secrets.stores.cluster().await?),
        false => None,
    };
    let mut out = BTreeMap::new();
    for (target, found) in targets
        .iter()
        .zip(rotate::consumers(targets, cluster.as_ref()).await)
    {
        out.insert(target.name.clone(), found?);
    }
    Ok(out)
}

/// Plan the incident: each target's rotation and each workload's restart.
/// `grace`: how long the replaced credentials keep working (zero: revoked at once).
pub async fn plan(
    config: &Config,
    targets: &[&RotationTarget],
    scope: &Scope,
    grace: Duration,
) -> Result<(IncidentPlan, BTreeMap<String, Vec<Workload>>)> {
    let consumers = consumers(config, targets).await?;
    let mut secrets = Vec::new();
    let mut unreadable = Vec::new();
    for (target, plan) in targets
        .iter()
        .zip(rotate::plan(targets, &config.secrets, Some(grace)).await)
    {
        match plan {
            Ok(plan) => secrets.push(plan),
            Err(e) => unreadable.push((target.name.clone(), e.to_string())),
        }
    }
    let mut by_workload: BTreeMap<&Workload, Vec<String>> = BTreeMap::new();
    for (target, workloads) in &consumers {
        for w in workloads {
            by_workload.entry(w).or_default().push(target.clone());
        }
    }
    let workloads = by_workload
        .into_iter()
        .map(|(w, secrets)| WorkloadPlan {
            workload: w.to_string(),
            secrets,
        })
        .collect();
    let plan = IncidentPlan {
        scope: scope.describe(),
        secrets,
        workloads,
        unreadable,
    };
    Ok((plan, consumers))
}

/// The open incident, kept in the store until every rotation of it is finished.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OpenIncident {
    pub incident_id: uuid::Uuid,
    pub scope: String,
    pub targets: Vec<String>,
    pub actor: String,
    pub started_at: DateTime<Utc>,
}

/// Open a new incident for `targets`, or go on with the open one when it covers the same
/// targets (it was interrupted). Another open incident is a config error naming it.
pub async fn open(
    store: &Store,
    scope: &Scope,
    targets: &[&RotationTarget],
    actor: &str,
) -> Result<(OpenIncident, bool)> {
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let new = OpenIncident {
        incident_id: uuid::Uuid::new_v4(),
        scope: scope.describe(),
        targets: names.clone(),
        actor: actor.to_string(),
        started_at: Utc::now(),
    };
    let bytes = serde_json::to_vec_pretty(&new).expect("serializes");
    if store.create_lock(OPEN_INCIDENT, bytes).await? {
        return Ok((new, false));
    }
    let found = read_open(store).await?.ok_or_else(|| {
        Error::store("the open incident record vanished while it was read: run the command again")
    })?;
    if found.targets != names {
        return Err(Error::config(format!(
            "incident {} ({}, started {} by {}) is still open: run it again with the same scope to finish it, or close it with 'coffre incident close' once you have checked it",
            found.incident_id,
            found.scope,
            crate::manifest::rfc3339::format(&found.started_at),
            found.actor
        )));
    }
    Ok((found, true))
}

/// The open incident, if any.
pub async fn read_open(store: &Store) -> Result<Option<OpenIncident>> {
    let Some(bytes) = store.read_lock(OPEN_INCIDENT).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::store(format!(
            "the open incident record is damaged ({e}): close it with 'coffre incident close'"
        ))
    })
}

/// Close the open incident (after a person checked it); what it was.
pub async fn close(store: &Store) -> Result<Option<OpenIncident>> {
    let open = read_open(store).await?;
    store.delete_lock(OPEN_INCIDENT).await?;
    Ok(open)
}

/// How one secret ended.
#[derive(Clone, Debug, Serialize)]
pub struct SecretReport {
    pub target: String,
    pub kind: String,
    pub publish: String,
    pub old_fingerprint: Option<String>,
    pub new_fingerprint: Option<String>,
    /// The journal's state: FINISHED when done.
    pub state: Option<String>,
    /// Whether the replaced credential was revoked.
    pub revoked: bool,
    /// When it will be, with `--grace`.
    pub revoke_after: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// What the incident did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub incident_id: uuid::Uuid,
    pub scope: String,
    pub actor: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Every secret rotated and revoked, every rollout confirmed.
    pub complete: bool,
    pub secrets: Vec<SecretReport>,
    pub workloads: Vec<WorkloadReport>,
}

/// How the incident runs.
pub struct RunOptions {
    /// How long replaced credentials keep working (zero: revoked as soon as the rollouts are
    /// confirmed).
    pub grace: Duration,
    pub concurrency: usize,
    pub stop: tokio_util::sync::CancellationToken,
}

/// Run the incident over `targets`: rotate, restart once, confirm, revoke, report. The report
/// is also stored beside the audit events.
pub async fn run(
    config: &Config,
    incident: &OpenIncident,
    targets: &[&RotationTarget],
    consumers: &BTreeMap<String, Vec<Workload>>,
    audit: &Audit<'_>,
    options: &RunOptions,
) -> (Report, Vec<Error>) {
    let secrets = &config.secrets;
    let base = RotateOptions {
        incident: Some(incident.incident_id),
        grace: Some(options.grace),
        concurrency: options.concurrency,
        restarts: Restarts::Deferred,
        ..RotateOptions::new("incident", options.stop.clone())
    };
    let mut errors: BTreeMap<String, Error> = BTreeMap::new();
    // Rotations this incident finished in an earlier run are not started again.
    let before = journals(targets, config).await;
    let todo: Vec<&RotationTarget> = targets
        .iter()
        .copied()
        .filter(|t| !finished_by(before.get(&t.name), incident.incident_id))
        .collect();
    let mut published = Vec::new();
    for (target, result) in todo
        .iter()
        .zip(rotate::rotate(&todo, secrets, audit, &base).await)
    {
        match result {
            Ok(Outcome::Rotated { state, .. }) if state == State::Published.name() => {
                published.push(*target)
            }
            Ok(Outcome::Held { holder, .. }) => {
                errors.insert(
                    target.name.clone(),
                    Error::store(format!(
                        "held by {holder}: run the incident again once it is released"
                    )),
                );
            }
            Ok(_) => {}
            Err(e) => {
                errors.insert(target.name.clone(), e);
            }
        }
    }
    let restart_ids: BTreeSet<&Workload> = published
        .iter()
        .flat_map(|t| consumers.get(&t.name).into_iter().flatten())
        .collect();
    let mut workloads = restart_once(
        secrets,
        &incident.incident_id.to_string(),
        &restart_ids,
        targets,
        consumers,
        &options.stop,
    )
    .await;
    let confirmed: BTreeSet<String> = workloads
        .iter()
        .filter(|w| w.rollout_confirmed)
        .map(|w| w.workload.clone())
        .collect();
    let (ready, waiting): (Vec<&RotationTarget>, Vec<&RotationTarget>) =
        published.into_iter().partition(|t| {
            consumers
                .get(&t.name)
                .into_iter()
                .flatten()
                .all(|w| confirmed.contains(&w.to_string()))
        });
    for target in waiting {
        errors.insert(
            target.name.clone(),
            Error::store("a consumer's rollout was not confirmed, so the old credential was not revoked: check the workload, then run the incident again"),
        );
    }
    let finish = RotateOptions {
        restarts: Restarts::DoneBy(format!(
            "consumers restarted once by incident {}, rollouts confirmed",
            incident.incident_id
        )),
        ..base
    };
    for (target, result) in ready
        .iter()
        .zip(rotate::rotate(&ready, secrets, audit, &finish).await)
    {
        if let Err(e) = result {
            errors.insert(target.name.clone(), e);
        }
    }
    let after = journals(targets, config).await;
    let secrets_report: Vec<SecretReport> = targets
        .iter()
        .map(|t| {
            secret_report(
                t,
                after.get(&t.name),
                incident.incident_id,
                errors.get(&t.name),
            )
        })
        .collect();
    // A workload not restarted by this run: an earlier run of the incident did, when all its
    // secrets are finished by the incident; otherwise none of them got far enough.
    for (w, names) in workloads_of(consumers) {
        if workloads.iter().any(|r| r.workload == w.to_string()) {
            continue;
        }
        let done = names
            .iter()
            .all(|n| finished_by(after.get(n), incident.incident_id));
        workloads.push(WorkloadReport {
            workload: w.to_string(),
            secrets: names,
            restarted: false,
            rollout_confirmed: done,
            error: (!done).then(|| {
                "not restarted: none of its secrets was published by this run".to_string()
            }),
        });
    }
    workloads.sort_by(|a, b| a.workload.cmp(&b.workload));
    let complete = secrets_report.iter().all(|s| {
        s.state.as_deref() == Some("FINISHED")
            && (s.revoked || !options.grace.is_zero())
            && s.error.is_none()
    }) && workloads.iter().all(|w| w.rollout_confirmed);
    let report = Report {
        incident_id: incident.incident_id,
        scope: incident.scope.clone(),
        actor: incident.actor.clone(),
        started_at: incident.started_at,
        finished_at: Utc::now(),
        complete,
        secrets: secrets_report,
        workloads,
    };
    (report, errors.into_values().collect())
}

/// Each target's journal record, when it can be read.
async fn journals(targets: &[&RotationTarget], config: &Config) -> BTreeMap<String, Record> {
    rotate::status(targets, &config.secrets)
        .await
        .into_iter()
        .filter_map(|(name, r)| Some((name, r.ok()??)))
        .collect()
}

/// Whether this incident already finished the target's rotation (and revoked what it replaced).
fn finished_by(record: Option<&Record>, incident: uuid::Uuid) -> bool {
    record.is_some_and(|r| {
        r.incident == Some(incident)
            && r.state == State::Finished
            && (r.revoke_after.is_none() || r.revoked_at.is_some())
    })
}

fn secret_report(
    target: &RotationTarget,
    record: Option<&Record>,
    incident: uuid::Uuid,
    error: Option<&Error>,
) -> SecretReport {
    let ours = record.filter(|r| r.incident == Some(incident));
    SecretReport {
        target: target.name.clone(),
        kind: target.kind.name().to_string(),
        publish: target.publish.to_string(),
        old_fingerprint: ours.and_then(|r| r.previous_fingerprint.clone()),
        new_fingerprint: ours.map(|r| r.fingerprint.clone()),
        state: ours.map(|r| r.shown_state().to_string()),
        revoked: ours.is_some_and(|r| r.revoked_at.is_some()),
        revoke_after: ours.and_then(|r| r.revoke_after),
        error: error.map(|e| e.to_string()).or_else(|| match ours {
            None => Some("not rotated by this incident".into()),
            Some(_) => None,
        }),
    }
}

/// The error an incident exits with: one that needs a person outranks the rest.
pub fn worst(errors: Vec<Error>) -> Option<Error> {
    let mut kept: Option<Error> = None;
    for e in errors {
        let worse = kept
            .as_ref()
            .is_none_or(|k| k.class() != Class::Integrity && e.class() == Class::Integrity);
        if worse {
            kept = Some(e);
        }
    }
    kept
}
