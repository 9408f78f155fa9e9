//! Rotate database passwords: the journal state machine of docs/ROTATION.md.
//!
//! PLANNED -> DB_SET -> TESTED -> PUBLISHED -> ROLLED_OUT -> FINISHED, each step journaled
//! with a conditional write before the next begins. A run that dies anywhere leaves a journal
//! the next run resumes from: it reuses the pending password (never a second one), probes
//! whether the database already has it, and recognises its own write of the published secret.
//! Anything it cannot decide alone (the published secret edited behind its back, five failed
//! runs in a row) stops the rotation at NEEDS_HUMAN, with nothing more changed.

mod abandon;
mod run;

use chrono::Utc;
use futures::StreamExt;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::Audit;
use crate::config::{Config, DatabaseKind, RotationTarget};
use crate::error::{Error, Result};
use crate::rotation::database::Database;
use crate::rotation::journal::{self, Record, State};
use crate::rotation::{mariadb, postgres};
use crate::secretstore::Resolver;
use run::{Run, Setup, Started};

/// How long a run's hold on a journal lasts; every journal write renews it. A run killed
/// elsewhere delays the next one by at most this (on the same machine, not at all).
pub const HOLD: Duration = Duration::from_secs(120);
/// Failed runs in a row after which a rotation waits for a person.
pub const MAX_FAILED_RUNS: u32 = 5;
/// Targets rotated at once.
pub const CONCURRENCY: usize = 4;

/// Why and by whom a rotation runs.
#[derive(Clone, Debug)]
pub struct RotateOptions {
    /// "manual", "schedule", "incident".
    pub trigger: String,
    pub actor: String,
    /// Who this process is in journal holds (`lock::holder_identity`).
    pub holder: String,
    /// Close a rotation stopped at NEEDS_HUMAN (or failing), after a person checked it.
    pub abandon: bool,
    /// Go on with a rotation stopped at NEEDS_HUMAN, over the published secret as it is now.
    pub resume: bool,
    /// Attempts per step when the database or the store fails in a way a retry may fix.
    pub attempts: u32,
    /// Cancelled on SIGTERM: a rotation finishes the step in flight, releases its journal and
    /// stops; one not started yet does not start. The next run resumes.
    pub stop: tokio_util::sync::CancellationToken,
}

/// What happened to one target.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The target's user has a new password, published and tested.
    Rotated {
        target: String,
        user: String,
        rotation_id: uuid::Uuid,
        fingerprint: String,
        /// The state a previous run had reached, when this run finished its rotation.
        resumed_from: Option<String>,
    },
    /// Another run is working on it.
    Held { target: String, holder: String },
    /// A person closed a stopped rotation.
    Abandoned {
        target: String,
        rotation_id: uuid::Uuid,
    },
}

/// What a run would do, changing nothing (`--dry-run`).
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub target: String,
    pub database: String,
    pub publish: String,
    pub journal: String,
    /// The journal's state now (none: never rotated).
    pub state: Option<String>,
    /// In words: "rotate app_b (dual-user: app_a stays in use until the new secret is out)".
    pub action: String,
}

/// Who runs this, for audit events: `COFFRE_ACTOR`, else the login name, else the Kubernetes
/// service account's namespace and the pod's host name.
pub fn actor() -> String {
    if let Some(actor) = ["COFFRE_ACTOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|a| !a.is_empty()))
    {
        return actor;
    }
    let host = crate::process::host_name();
    match std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace") {
        Ok(ns) => format!("serviceaccount:{}/{host}", ns.trim()),
        Err(_) => format!("uid {} on {host}", process_uid()),
    }
}

fn process_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

/// The targets named (all targets of the config when `names` is empty).
pub fn select<'a>(config: &'a Config, names: &[String]) -> Result<Vec<&'a RotationTarget>> {
    if names.is_empty() {
        if config.targets.is_empty() {
            return Err(Error::config(format!(
                "{}: no rotation target is configured: add a rotation job (kind = \"rotation\" with [[target]]s)",
                config.path.display()
            )));
        }
        return Ok(config.targets.values().collect());
    }
    names
        .iter()
        .map(|name| {
            config.targets.get(name).ok_or_else(|| {
                let known: Vec<_> = config.targets.keys().cloned().collect();
                Error::config(format!(
                    "no rotation target named '{name}' (targets: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ))
            })
        })
        .collect()
}

/// Rotate each target, a few at once; one result per target, in the order given.
pub async fn rotate(
    targets: &[&RotationTarget],
    secrets: &Resolver,
    audit: &Audit<'_>,
    options: &RotateOptions,
) -> Vec<Result<Outcome>> {
    futures::stream::iter(
        targets
            .iter()
            .map(|t| rotate_one(t, secrets, audit, options)),
    )
    .buffered(CONCURRENCY)
    .collect()
    .await
}

/// What a run would do for each target.
pub async fn plan(targets: &[&RotationTarget], secrets: &Resolver) -> Vec<Result<Plan>> {
    let mut plans = Vec::new();
    for target in targets {
        plans.push(plan_one(target, secrets).await);
    }
    plans
}

/// The journal record of each target (none: never rotated).
pub async fn status(
    targets: &[&RotationTarget],
    secrets: &Resolver,
) -> Vec<(String, Result<Option<Record>>)> {
    let mut out = Vec::new();
    for target in targets {
        let record = async {
            let store = secrets.stores.open(target.publish.backend).await?;
            Ok(journal::read(store.as_ref(), &target.journal().name)
                .await?
                .map(|j| j.record))
        }
        .await;
        out.push((target.name.clone(), record));
    }
    out
}

/// Check a target and change nothing: its admin password reads, the admin user logs in, its
/// published secret and journal can be read. Returns the journal's state (none: never rotated).
pub async fn check(target: &RotationTarget, secrets: &Resolver) -> Result<Option<String>> {
    let checked = async {
        connect(target, secrets).await?.check_admin().await?;
        let store = secrets.stores.open(target.publish.backend).await?;
        store.read(&target.publish.name).await?;
        let journal = journal::read(store.as_ref(), &target.journal().name).await?;
        Ok(journal.map(|j| j.record.shown_state().to_string()))
    };
    checked
        .await
        .map_err(|e: Error| e.context(format!("rotation target '{}'", target.name)))
}

/// The database client for a target, with its admin password read from where it is kept.
pub async fn connect(target: &RotationTarget, secrets: &Resolver) -> Result<Arc<dyn Database>> {
    let admin_password = match &target.admin_password {
        Some(r) => Some(
            secrets
                .resolve(r, "the admin password")
                .await?
                .text("the admin password")?,
        ),
        None => None,
    };
    Ok(match target.kind {
        DatabaseKind::Postgres => Arc::new(postgres::Postgres {
            host: target.host.clone(),
            port: target.port,
            database: target.database.clone().unwrap_or_else(|| "postgres".into()),
            admin_user: target.admin_user.clone(),
            admin_password,
            tls: target.tls,
            ca_file: target.ca_file.clone(),
        }),
        DatabaseKind::Mariadb => Arc::new(mariadb::MariaDb {
            host: target.host.clone(),
            port: target.port,
            database: target.database.clone(),
            admin_user: target.admin_user.clone(),
            admin_password,
            user_host: target.user_host.clone(),
            tls: target.tls,
            ca_file: target.ca_file.clone(),
        }),
    })
}

fn describe_database(target: &RotationTarget) -> String {
    let kind = match target.kind {
        DatabaseKind::Postgres => "postgres",
        DatabaseKind::Mariadb => "mariadb",
    };
    format!("{kind}://{}:{}", target.host, target.port)
}

async fn plan_one(target: &RotationTarget, secrets: &Resolver) -> Result<Plan> {
    let store = secrets.stores.open(target.publish.backend).await?;
    let journal = journal::read(store.as_ref(), &target.journal().name).await?;
    let state = journal.as_ref().map(|j| j.record.shown_state().to_string());
    let action = match journal.map(|j| j.record) {
        Some(r) if r.state == State::NeedsHuman => format!(
            "nothing: it needs a human ({}). {}",
            r.stopped_because.unwrap_or_default(),
            run::what_next(&target.name)
        ),
        Some(r) if r.state.in_flight() => format!(
            "resume rotation {} of {} from {}",
            r.rotation_id,
            r.user,
            r.state.name()
        ),
        _ => {
            let published = store.read(&target.publish.name).await?;
            let active = published
                .as_ref()
                .and_then(|p| p.fields.get("username").map(str::to_string));
            let user = next_user(target, active.as_deref());
            match (target.dual_user(), active) {
                (true, Some(active)) => {
                    format!("rotate {user} (dual-user: {active}, in use now, keeps its password)")
                }
                (true, None) => format!("rotate {user} (dual-user; nothing is published yet)"),
                (false, _) => format!("rotate {user} (single-user)"),
            }
        }
    };
    Ok(Plan {
        target: target.name.clone(),
        database: describe_database(target),
        publish: target.publish.to_string(),
        journal: target.journal().to_string(),
        state,
        action,
    })
}

/// The user a new rotation changes: the one not in use (dual-user), or the only one.
fn next_user<'a>(target: &'a RotationTarget, active: Option<&str>) -> &'a str {
    target
        .users
        .iter()
        .find(|u| !target.dual_user() || Some(u.as_str()) != active)
        .map(String::as_str)
        .unwrap_or(&target.users[0])
}

async fn rotate_one(
    target: &RotationTarget,
    secrets: &Resolver,
    audit: &Audit<'_>,
    options: &RotateOptions,
) -> Result<Outcome> {
    let at = |e: Error| e.context(format!("rotation target '{}'", target.name));
    let store = secrets
        .stores
        .open(target.publish.backend)
        .await
        .map_err(at)?;
    let journal_name = target.journal().name;
    let found = journal::read(store.as_ref(), &journal_name)
        .await
        .map_err(at)?;
    let now = Utc::now();
    if let Some(holder) = found
        .as_ref()
        .filter(|j| j.record.state.in_flight())
        .and_then(|j| j.record.held_by_other(&options.holder, now))
    {
        return Ok(Outcome::Held {
            target: target.name.clone(),
            holder: holder.to_string(),
        });
    }
    if options.stop.is_cancelled() {
        return Err(at(Error::interrupted("stopped before it started")));
    }
    if options.abandon {
        return abandon::abandon(target, store.as_ref(), found, audit, options)
            .await
            .map_err(at);
    }
    let found = match found {
        Some(j) if j.record.state == State::NeedsHuman && options.resume => Some(
            abandon::resume(target, store.as_ref(), j, audit, options)
                .await
                .map_err(at)?,
        ),
        Some(j) if j.record.state == State::NeedsHuman => {
            return Err(at(Error::integrity(format!(
                "rotation {} stopped and needs a human: {}. {}",
                j.record.rotation_id,
                j.record
                    .stopped_because
                    .as_deref()
                    .unwrap_or("no reason recorded"),
                run::what_next(&target.name)
            ))));
        }
        other => other,
    };
    let db = connect(target, secrets).await.map_err(at)?;
    let cluster = match target.restarts_consumers() {
        true => Some(secrets.stores.cluster().await.map_err(at)?),
        false => None,
    };
    let setup = Setup {
        target,
        store,
        db,
        cluster,
        audit,
        options,
    };
    let run = match found {
        Some(j) if j.record.state.in_flight() => Run::take_over(setup, j).await,
        finished => Run::start(setup, finished).await,
    }
    .map_err(at)?;
    match run {
        Started::Held(holder) => Ok(Outcome::Held {
            target: target.name.clone(),
            holder,
        }),
        Started::Run(run, resumed_from) => run.advance(resumed_from).await.map_err(at),
    }
}
