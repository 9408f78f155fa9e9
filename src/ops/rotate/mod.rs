//! Rotate credentials (database passwords, API keys, certificates, the internal CA): the
//! journal state machine of docs/ROTATION.md.
//!
//! PLANNED -> DB_SET -> TESTED -> PUBLISHED -> ROLLED_OUT -> FINISHED, each step journaled
//! with a conditional write before the next begins; then, after the grace period, the replaced
//! credential is revoked. A run that dies anywhere leaves a journal the next run resumes from:
//! it reuses the pending credential (never a second one), checks whether the issuer already
//! has it, and recognises its own write of the published secret.
//! Anything it cannot decide alone (the published secret edited behind its back, five failed
//! runs in a row) stops the rotation at NEEDS_HUMAN, with nothing more changed.

mod abandon;
mod api_key;
mod batch;
mod begin;
mod certificate;
mod database;
mod revoke;
mod run;
mod trail;

use chrono::Utc;
use futures::StreamExt;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::Audit;
use crate::config::{Config, RotationTarget, TargetKind};
use crate::error::{Error, Result};
use crate::k8s::Workload;
use crate::rotation::credential::Credential;
use crate::rotation::journal::{self, Record, State};
use crate::secretstore::Resolver;
use begin::{Begin, start_or_revoke};
use run::{Run, Started};

pub use batch::{WorkloadReport, restart_once, workloads_of};

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
    /// Scheduled runs rotate only what is due (`every`, a certificate's renewal time).
    pub only_due: bool,
    /// The incident this run is part of.
    pub incident: Option<uuid::Uuid>,
    /// Overrides each target's grace period (an incident: zero, revoked at once).
    pub grace: Option<Duration>,
    pub restarts: Restarts,
    /// Targets rotated at once.
    pub concurrency: usize,
    /// Cancelled on SIGTERM: a rotation finishes the step in flight, releases its journal and
    /// stops; one not started yet does not start. The next run resumes.
    pub stop: tokio_util::sync::CancellationToken,
}

impl RotateOptions {
    /// A run started by `trigger`, as this process and its user, rotating everything named,
    /// each restarting its own consumers.
    pub fn new(trigger: &str, stop: tokio_util::sync::CancellationToken) -> Self {
        Self {
            trigger: trigger.into(),
            actor: crate::audit::actor(),
            holder: crate::ops::lock::holder_identity(),
            abandon: false,
            resume: false,
            attempts: 3,
            only_due: false,
            incident: None,
            grace: None,
            restarts: Restarts::PerTarget,
            concurrency: CONCURRENCY,
            stop,
        }
    }
}

/// What one target's run acts on.
pub(super) struct Setup<'a> {
    pub target: &'a RotationTarget,
    pub store: Arc<dyn crate::secretstore::SecretStore>,
    pub cred: Arc<dyn Credential>,
    /// The Kubernetes API, for targets that restart their consumers.
    pub cluster: Option<crate::k8s::Cluster>,
    pub audit: &'a Audit<'a>,
    pub options: &'a RotateOptions,
}

/// Who restarts the consumers of a rotated secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restarts {
    /// Each rotation restarts its own consumers at ROLLED_OUT.
    PerTarget,
    /// The rotation stops at PUBLISHED; the caller restarts every workload once.
    Deferred,
    /// The caller restarted them and saw the rollouts finish: ROLLED_OUT records this.
    DoneBy(String),
    /// The caller restarted them and a rollout did not finish: ROLLED_OUT fails with this, the
    /// old credential stays, and the next run resumes.
    Failed(String),
}

/// What happened to one target.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The target has a new credential, issued, tested and published (or, with deferred
    /// restarts, published and waiting for them).
    Rotated {
        target: String,
        user: String,
        rotation_id: uuid::Uuid,
        fingerprint: String,
        /// The fingerprint of the credential it replaced.
        previous_fingerprint: Option<String>,
        /// The state a previous run had reached, when this run finished its rotation.
        resumed_from: Option<String>,
        /// The state it reached: FINISHED, or PUBLISHED when the caller restarts consumers.
        state: String,
        /// What revoking the replaced credential did, when it was revoked in this run.
        revoked: Option<String>,
    },
    /// A scheduled run found nothing due.
    NotDue { target: String, why: String },
    /// The credential a finished rotation replaced was revoked (its grace period is over).
    Revoked {
        target: String,
        rotation_id: uuid::Uuid,
        detail: String,
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
    /// postgres, mariadb, api_key, tls or ca.
    pub kind: String,
    /// Where the credential is issued: `postgres://db:5432`, the internal CA...
    pub issuer: String,
    pub publish: String,
    pub journal: String,
    /// The journal's state now (none: never rotated).
    pub state: Option<String>,
    /// In words: "rotate app_b (dual-user: app_a stays in use until the new secret is out)".
    pub action: String,
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
                .with_remedy(crate::error::Remedy::KnownName)
            })
        })
        .collect()
}

/// Rotate each target, a few at once; one result per target, in the order given. When several
/// targets restart consumers, each workload is restarted once for the whole run, after every
/// rotation is published (`batch`).
pub async fn rotate(
    targets: &[&RotationTarget],
    secrets: &Resolver,
    audit: &Audit<'_>,
    options: &RotateOptions,
) -> Vec<Result<Outcome>> {
    let restarting = targets.iter().filter(|t| t.restarts_consumers()).count();
    if options.restarts == Restarts::PerTarget && restarting >= 2 {
        return batch::rotate_restarting_once(targets, secrets, audit, options).await;
    }
    rotate_waves(targets, secrets, audit, options).await
}

/// Rotate each target, a few at once. CAs go first, so that the certificates they sign in the
/// same run come from the new one.
pub(crate) async fn rotate_waves(
    targets: &[&RotationTarget],
    secrets: &Resolver,
    audit: &Audit<'_>,
    options: &RotateOptions,
) -> Vec<Result<Outcome>> {
    let is_ca = |t: &RotationTarget| matches!(t.kind, TargetKind::Ca(_));
    let mut results: Vec<Option<Result<Outcome>>> = targets.iter().map(|_| None).collect();
    for wave in [true, false] {
        let chosen: Vec<usize> = (0..targets.len())
            .filter(|&i| is_ca(targets[i]) == wave)
            .collect();
        let done: Vec<Result<Outcome>> = futures::stream::iter(
            chosen
                .iter()
                .map(|&i| rotate_one(targets[i], secrets, audit, options)),
        )
        .buffered(options.concurrency.max(1))
        .collect()
        .await;
        for (i, result) in chosen.into_iter().zip(done) {
            results[i] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every target ran"))
        .collect()
}

/// What a run would do for each target, a few read at once.
/// `grace` overrides the targets' own grace periods, as a run's options do (an incident: zero).
pub async fn plan(
    targets: &[&RotationTarget],
    secrets: &Resolver,
    grace: Option<Duration>,
) -> Vec<Result<Plan>> {
    futures::stream::iter(targets.iter().map(|t| plan_one(t, secrets, grace)))
        .buffered(PLAN_CONCURRENCY)
        .collect()
        .await
}

/// Journals and published secrets read at once by a plan.
const PLAN_CONCURRENCY: usize = 16;

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

/// Check a target and change nothing: its credentials read (the admin user logs in, the CA
/// reads), its published secret and journal can be read. Returns the journal's state (none:
/// never rotated).
pub async fn check(target: &RotationTarget, secrets: &Resolver) -> Result<Option<String>> {
    let checked = async {
        credential(target, secrets).check().await?;
        let store = secrets.stores.open(target.publish.backend).await?;
        store.read(&target.publish.name).await?;
        let journal = journal::read(store.as_ref(), &target.journal().name).await?;
        Ok(journal.map(|j| j.record.shown_state().to_string()))
    };
    checked
        .await
        .map_err(|e: Error| e.context(format!("rotation target '{}'", target.name)))
}

/// Write a target's journal over the version read, outside a run (abandon, resume, revoke):
/// the new version, or a store error saying what was being done, and what to do, when someone
/// else wrote it meanwhile.
async fn rewrite_journal(
    store: &dyn crate::secretstore::SecretStore,
    target: &RotationTarget,
    record: &Record,
    pending: &crate::secretstore::Fields,
    version: &str,
    (doing, then): (&str, &str),
) -> Result<String> {
    journal::write(
        store,
        &target.journal().name,
        record,
        pending,
        Some(version),
    )
    .await?
    .ok_or_else(|| {
        Error::store(format!(
            "the journal {} changed while {doing}: {then}",
            target.journal()
        ))
    })
}

/// What rotates a target's kind of credential.
pub(crate) fn credential(target: &RotationTarget, secrets: &Resolver) -> Arc<dyn Credential> {
    match &target.kind {
        TargetKind::Database(d) => Arc::new(database::DatabasePassword::new(d, secrets)),
        TargetKind::ApiKey(a) => Arc::new(api_key::ApiKey {
            target_name: target.name.clone(),
            settings: a.clone(),
            secrets: secrets.clone(),
        }),
        TargetKind::Certificate(c) => Arc::new(certificate::Certificate {
            settings: c.clone(),
            secrets: secrets.clone(),
        }),
        TargetKind::Ca(c) => Arc::new(certificate::InternalCa {
            settings: c.clone(),
        }),
    }
}

/// The workloads each target's rotation restarts: those configured, and those found using its
/// Secret when it discovers them, listing each namespace's workloads once. One result per
/// target, in order: a namespace that cannot be listed fails only its own targets. Without a
/// cluster, only configured workloads (no target discovers).
pub async fn consumers(
    targets: &[&RotationTarget],
    cluster: Option<&crate::k8s::Cluster>,
) -> Vec<Result<Vec<Workload>>> {
    let mut listed = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for target in targets {
        let mut workloads = target.consumers.clone();
        if let (true, Some((namespace, secret)), Some(cluster)) = (
            target.discover_consumers,
            target.kubernetes_secret(),
            cluster,
        ) {
            if !listed.contains_key(namespace) {
                let templates = cluster
                    .pod_templates(namespace)
                    .await
                    .map_err(|e| (e.class(), e.message().to_string()));
                listed.insert(namespace.to_string(), templates);
            }
            match &listed[namespace] {
                Ok(templates) => workloads.extend(
                    templates
                        .iter()
                        .filter(|(_, pod)| crate::k8s::uses_secret(pod, secret))
                        .map(|(w, _)| w.clone()),
                ),
                Err((class, message)) => {
                    out.push(Err(Error::new(*class, message.clone())));
                    continue;
                }
            }
        }
        workloads.sort();
        workloads.dedup();
        out.push(Ok(workloads));
    }
    out
}

async fn plan_one(
    target: &RotationTarget,
    secrets: &Resolver,
    grace: Option<Duration>,
) -> Result<Plan> {
    let cred = credential(target, secrets);
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
            cred.plan(
                published.as_ref().map(|p| &p.fields),
                grace.or(target.grace),
            )
        }
    };
    Ok(Plan {
        target: target.name.clone(),
        kind: target.kind.name().to_string(),
        issuer: cred.describe(),
        publish: target.publish.to_string(),
        journal: target.journal().to_string(),
        state,
        action,
    })
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
    let cred = credential(target, secrets);
    let journal_name = target.journal().name;
    let mut found = journal::read(store.as_ref(), &journal_name)
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
    // Events a run killed before writing them left owed: written before anything else.
    if let Some(j) = found.as_mut().filter(|j| !j.record.owed.is_empty()) {
        trail::pay_earlier(audit, &mut j.record).await;
        j.version = rewrite_journal(
            store.as_ref(),
            target,
            &j.record,
            &j.pending,
            &j.version,
            ("writing the audit events it owed", "run it again"),
        )
        .await
        .map_err(at)?;
    }
    if options.abandon {
        return abandon::abandon(target, cred.as_ref(), store.as_ref(), found, audit, options)
            .await
            .map_err(at);
    }
    let found = match found.take() {
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
    let cluster = match target.restarts_consumers() && options.restarts == Restarts::PerTarget {
        true => Some(secrets.stores.cluster().await.map_err(at)?),
        false => None,
    };
    let setup = Setup {
        target,
        store,
        cred,
        cluster,
        audit,
        options,
    };
    let run = match found {
        Some(j) if j.record.state.in_flight() => Run::take_over(setup, j).await,
        finished => match start_or_revoke(&setup, finished).await? {
            Begin::Start(previous) => Run::start(setup, previous.map(|j| *j)).await,
            Begin::Done(outcome) => return Ok(outcome),
        },
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
