//! Rotate database passwords: the journal state machine of docs/ROTATION.md.
//!
//! PLANNED -> DB_SET -> TESTED -> PUBLISHED -> ROLLED_OUT -> FINISHED, each step journaled
//! with a conditional write before the next begins. A run that dies anywhere leaves a journal
//! the next run resumes from: it reuses the pending password (never a second one), probes
//! whether the database already has it, and recognises its own write of the published secret.
//! Anything it cannot decide alone (the published secret edited behind its back, five failed
//! runs in a row) stops the rotation at NEEDS_HUMAN, with nothing more changed.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

use crate::audit::{Audit, Event, fingerprint};
use crate::config::{Config, DatabaseKind, RotationTarget};
use crate::error::{Class, Error, Result};
use crate::rotation::database::Database;
use crate::rotation::journal::{self, Failure, Journal, Record, State};
use crate::rotation::{mariadb, postgres};
use crate::secretstore::{Fields, Resolver, SecretStore, Written};

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
    /// Attempts per step when the database or the store fails in a way a retry may fix.
    pub attempts: u32,
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
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    match std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace") {
        Ok(ns) => format!("serviceaccount:{}/{}", ns.trim(), host.trim()),
        Err(_) => format!("uid {} on {}", unsafe_free_uid(), host.trim()),
    }
}

fn unsafe_free_uid() -> u32 {
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
            "nothing: it needs a human ({}); after checking, run coffre rotate --abandon {}",
            r.stopped_because.unwrap_or_default(),
            target.name
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

/// A step's result: done (with what it found, when worth saying), or a stop for a person.
enum Step {
    Done(Option<String>),
    NeedsHuman(String),
}

/// One target's rotation in progress: the journal as last written, and what it acts on.
struct Run<'a> {
    target: &'a RotationTarget,
    store: Arc<dyn SecretStore>,
    db: Arc<dyn Database>,
    audit: &'a Audit<'a>,
    options: &'a RotateOptions,
    record: Record,
    pending: Zeroizing<String>,
    version: String,
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
    if options.abandon {
        return abandon(target, store.as_ref(), found, audit, options)
            .await
            .map_err(at);
    }
    if let Some(j) = found
        .as_ref()
        .filter(|j| j.record.state == State::NeedsHuman)
    {
        return Err(at(Error::integrity(format!(
            "rotation {} stopped and needs a human: {}. Check, then run 'coffre rotate --abandon {}'",
            j.record.rotation_id,
            j.record
                .stopped_because
                .as_deref()
                .unwrap_or("no reason recorded"),
            target.name
        ))));
    }
    let db = connect(target, secrets).await.map_err(at)?;
    let run = match found {
        Some(j) if j.record.state.in_flight() => {
            Run::take_over(target, store, db, audit, options, j).await
        }
        finished => Run::start(target, store, db, audit, options, finished).await,
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

enum Started<'a> {
    Run(Box<Run<'a>>, Option<String>),
    Held(String),
}

/// Who holds the journal now, after a conditional write lost a race.
async fn holder_now(store: &dyn SecretStore, name: &str) -> Result<String> {
    Ok(journal::read(store, name)
        .await?
        .and_then(|j| j.record.holder)
        .unwrap_or_else(|| "another coffre run".into()))
}

fn hold_until(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(HOLD).expect("a short duration")
}

impl<'a> Run<'a> {
    /// Plan a new rotation: choose the user, generate its password, journal both.
    async fn start(
        target: &'a RotationTarget,
        store: Arc<dyn SecretStore>,
        db: Arc<dyn Database>,
        audit: &'a Audit<'a>,
        options: &'a RotateOptions,
        previous: Option<Journal>,
    ) -> Result<Started<'a>> {
        // Nothing is written until the admin login works: a wrong admin password changes nothing.
        db.check_admin().await?;
        let published = store.read(&target.publish.name).await?;
        let active = published
            .as_ref()
            .and_then(|p| p.fields.get("username").map(str::to_string));
        let user = next_user(target, active.as_deref()).to_string();
        let mut detail = None;
        if let Some(p) = &published
            && let (Some(username), Some(password)) =
                (p.fields.get("username"), p.fields.get("password"))
            && !db.log_in(username, password, "SELECT 1").await?
        {
            detail = Some(
                "the published credential did not open the database; this rotation replaces it"
                    .to_string(),
            );
        }
        let pending = target.password.generate();
        let now = Utc::now();
        let record = Record {
            target: target.name.clone(),
            rotation_id: uuid::Uuid::new_v4(),
            state: State::Planned,
            trigger: options.trigger.clone(),
            actor: options.actor.clone(),
            user,
            previous_user: active,
            published_version: published.as_ref().map(|p| p.version.clone()),
            published_fingerprint: published.as_ref().map(|p| content_fingerprint(&p.fields)),
            fingerprint: fingerprint(&pending),
            started_at: now,
            updated_at: now,
            finished_at: None,
            holder: Some(options.holder.clone()),
            held_until: Some(hold_until(now)),
            failure: None,
            stopped_because: None,
        };
        let journal_name = target.journal().name;
        let expected = previous.as_ref().map(|j| j.version.as_str());
        crate::failpoint::step("rotate.before.PLANNED").await?;
        let Some(version) = journal::write(
            store.as_ref(),
            &journal_name,
            &record,
            Some(&pending),
            expected,
        )
        .await?
        else {
            return Ok(Started::Held(
                holder_now(store.as_ref(), &journal_name).await?,
            ));
        };
        // An error here leaves a PLANNED journal, as a crash would: the next run resumes it.
        crate::failpoint::step("rotate.after.PLANNED").await?;
        let from = previous.map_or("NONE", |j| j.record.state.name());
        let run = Run {
            target,
            store,
            db,
            audit,
            options,
            record,
            pending,
            version,
        };
        run.emit(from, State::Planned.name(), detail).await;
        Ok(Started::Run(Box::new(run), None))
    }

    /// Resume a rotation a previous run left in flight (it died, or failed).
    async fn take_over(
        target: &'a RotationTarget,
        store: Arc<dyn SecretStore>,
        db: Arc<dyn Database>,
        audit: &'a Audit<'a>,
        options: &'a RotateOptions,
        found: Journal,
    ) -> Result<Started<'a>> {
        let Some(pending) = found.pending else {
            return Err(Error::integrity(format!(
                "the journal of rotation {} ({}) holds no pending password: see docs/ROTATION.md, recovering by hand",
                found.record.rotation_id,
                found.record.state.name()
            )));
        };
        let mut run = Run {
            target,
            store,
            db,
            audit,
            options,
            record: found.record,
            pending,
            version: found.version,
        };
        let resumed_from = run.record.state.name().to_string();
        if !run.save().await? {
            let holder = holder_now(run.store.as_ref(), &target.journal().name).await?;
            return Ok(Started::Held(holder));
        }
        Ok(Started::Run(Box::new(run), Some(resumed_from)))
    }

    /// Take each remaining step, journaling it before the next.
    async fn advance(mut self, resumed_from: Option<String>) -> Result<Outcome> {
        while let Some(next) = self.record.state.next() {
            let from = self.record.state;
            let step = async {
                crate::failpoint::step(&format!("rotate.before.{}", next.name())).await?;
                self.with_retries(next).await
            }
            .await;
            let detail = match step {
                Ok(Step::Done(detail)) => detail,
                Ok(Step::NeedsHuman(why)) => return Err(self.stop(why).await),
                Err(e) => return Err(self.fail(e).await),
            };
            self.record.state = next;
            if next == State::Finished {
                self.record.finished_at = Some(Utc::now());
                self.record.failure = None;
                self.record.holder = None;
                self.record.held_until = None;
            }
            if !self.save().await? {
                return Err(self.lost_journal());
            }
            if let Err(e) = crate::failpoint::step(&format!("rotate.after.{}", next.name())).await {
                return Err(self.fail(e).await);
            }
            self.emit(from.name(), next.name(), detail).await;
        }
        Ok(Outcome::Rotated {
            target: self.target.name.clone(),
            user: self.record.user.clone(),
            rotation_id: self.record.rotation_id,
            fingerprint: self.record.fingerprint.clone(),
            resumed_from,
        })
    }

    async fn with_retries(&self, next: State) -> Result<Step> {
        let mut delay = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            match self.act(next).await {
                Err(e) if attempt < self.options.attempts && retryable(&e) => {
                    tracing::warn!(
                        "rotation target '{}': {} (attempt {attempt}, retrying)",
                        self.target.name,
                        e.message()
                    );
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The work of the step into `next`. Each is safe to repeat after a crash.
    async fn act(&self, next: State) -> Result<Step> {
        let user = self.record.user.as_str();
        match next {
            State::DbSet => {
                // In single-user mode the consumers' password is about to change: not when the
                // published secret is no longer what this rotation read.
                if let Some(why) = self.edited_out_of_band().await? {
                    return Ok(Step::NeedsHuman(why));
                }
                if self.db.log_in(user, &self.pending, "SELECT 1").await? {
                    return Ok(Step::Done(Some(
                        "the database already had the new password".into(),
                    )));
                }
                self.db.set_password(user, &self.pending).await?;
                Ok(Step::Done(None))
            }
            State::Tested => {
                if !self
                    .db
                    .log_in(user, &self.pending, &self.target.test_query)
                    .await?
                {
                    return Err(Error::auth(format!(
                        "the database refused {user}'s new password just after it was set: is another tool changing it?"
                    )));
                }
                Ok(Step::Done(None))
            }
            State::Published => self.publish().await,
            // Consumer restarts come with workload configuration; with none, there is nothing to roll.
            State::RolledOut => Ok(Step::Done(None)),
            State::Finished | State::Planned | State::NeedsHuman => Ok(Step::Done(None)),
        }
    }

    /// The published secret as consumers will read it.
    fn published_fields(&self) -> Fields {
        let t = self.target;
        let mut fields = Fields::new()
            .with("username", &self.record.user)
            .with("password", &self.pending)
            .with("rotation_id", &self.record.rotation_id.to_string())
            .with("host", &t.host)
            .with("port", &t.port.to_string());
        if let Some(database) = &t.database {
            fields.insert("database", database);
        }
        fields
    }

    /// Why the published secret is no longer what this rotation read, if it is not.
    async fn edited_out_of_band(&self) -> Result<Option<String>> {
        let current = self.store.read(&self.target.publish.name).await?;
        let now = current.as_ref().map(|c| content_fingerprint(&c.fields));
        if now == self.record.published_fingerprint
            || self.is_ours(current.as_ref().map(|c| &c.fields))
        {
            return Ok(None);
        }
        Ok(Some(format!(
            "{} changed while rotation {} was in flight (someone edited or deleted it): coffre did not overwrite it",
            self.target.publish, self.record.rotation_id
        )))
    }

    fn is_ours(&self, fields: Option<&Fields>) -> bool {
        fields.is_some_and(|f| {
            f.get("rotation_id") == Some(self.record.rotation_id.to_string().as_str())
                && f.get("password") == Some(self.pending.as_str())
        })
    }

    async fn publish(&self) -> Result<Step> {
        let name = &self.target.publish.name;
        for _ in 0..3 {
            let current = self.store.read(name).await?;
            if self.is_ours(current.as_ref().map(|c| &c.fields)) {
                return Ok(Step::Done(Some(
                    "already published by an earlier run".into(),
                )));
            }
            let unchanged = current.as_ref().map(|c| content_fingerprint(&c.fields))
                == self.record.published_fingerprint;
            if !unchanged {
                return Ok(Step::NeedsHuman(
                    self.edited_out_of_band().await?.unwrap_or_else(|| {
                        format!("{} changed during the rotation", self.target.publish)
                    }),
                ));
            }
            let expected = current.as_ref().map(|c| c.version.as_str());
            match self
                .store
                .write(name, &self.published_fields(), expected)
                .await?
            {
                Written::Done(_) => return Ok(Step::Done(None)),
                // Written meanwhile: look again (the next read tells ours, theirs, or unchanged).
                Written::Conflict => continue,
            }
        }
        Err(Error::store(format!(
            "{}: it kept changing while coffre published: try again",
            self.target.publish
        )))
    }

    /// Write the journal over the version last written, renewing the hold. False: someone
    /// else wrote it meanwhile.
    async fn save(&mut self) -> Result<bool> {
        let now = Utc::now();
        self.record.updated_at = now;
        if self.record.state.in_flight() {
            self.record.holder = Some(self.options.holder.clone());
            self.record.held_until = Some(hold_until(now));
        }
        match journal::write(
            self.store.as_ref(),
            &self.target.journal().name,
            &self.record,
            Some(&self.pending),
            Some(&self.version),
        )
        .await?
        {
            Some(version) => {
                self.version = version;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn lost_journal(&self) -> Error {
        Error::store(format!(
            "the journal {} changed under this run (another run took the rotation over after this one's hold expired): nothing more was changed by this run",
            self.target.journal()
        ))
    }

    /// Record a failed step: the next run resumes; after MAX_FAILED_RUNS it needs a human.
    async fn fail(&mut self, error: Error) -> Error {
        let count = self.record.failure.as_ref().map_or(0, |f| f.count) + 1;
        self.record.failure = Some(Failure {
            count,
            at: Utc::now(),
            step: self.record.state,
            error: error.message().to_string(),
        });
        if count >= MAX_FAILED_RUNS {
            let why = format!(
                "{count} runs in a row failed; the last: {}",
                error.message()
            );
            let _ = self.stop(why).await;
            return error;
        }
        // Let the next run take over at once instead of waiting out the hold.
        self.record.holder = None;
        self.record.held_until = None;
        let state = self.record.state.name();
        match self.save().await {
            Ok(true) => {
                self.emit(state, "FAILED", Some(error.message().to_string()))
                    .await
            }
            Ok(false) => return self.lost_journal(),
            Err(e) => tracing::warn!("the failure could not be journaled: {e}"),
        }
        error
    }

    /// Stop at NEEDS_HUMAN, changing nothing else.
    async fn stop(&mut self, why: String) -> Error {
        let from = self.record.state.name();
        self.record.state = State::NeedsHuman;
        self.record.stopped_because = Some(why.clone());
        self.record.holder = None;
        self.record.held_until = None;
        match self.save().await {
            Ok(true) => {
                self.emit(from, State::NeedsHuman.name(), Some(why.clone()))
                    .await
            }
            Ok(false) => return self.lost_journal(),
            Err(e) => tracing::warn!("the stop could not be journaled: {e}"),
        }
        Error::integrity(format!(
            "rotation {} stopped and needs a human: {why}. Check, then run 'coffre rotate --abandon {}'",
            self.record.rotation_id, self.target.name
        ))
    }

    async fn emit(&self, from: &str, to: &str, detail: Option<String>) {
        self.audit
            .record(event(&self.record, from, to, detail))
            .await;
    }
}

fn event(record: &Record, from: &str, to: &str, detail: Option<String>) -> Event {
    Event {
        event: "rotation".into(),
        at: Utc::now(),
        rotation_id: record.rotation_id,
        trigger: record.trigger.clone(),
        actor: record.actor.clone(),
        target: record.target.clone(),
        user: record.user.clone(),
        from: from.into(),
        to: to.into(),
        fingerprint: record.fingerprint.clone(),
        detail,
    }
}

/// A person closes a stopped (or failing) rotation: the journal becomes FINISHED with the
/// pending password dropped; the published secret and the database are left as they are.
async fn abandon(
    target: &RotationTarget,
    store: &dyn SecretStore,
    found: Option<Journal>,
    audit: &Audit<'_>,
    options: &RotateOptions,
) -> Result<Outcome> {
    let Some(journal) = found.filter(|j| j.record.state != State::Finished) else {
        return Err(Error::config(format!(
            "rotation target '{}' has no rotation to abandon (it is finished or never ran)",
            target.name
        )));
    };
    let mut record = journal.record;
    let from = record.shown_state();
    let why = format!("abandoned by {}", options.actor);
    record.state = State::Finished;
    record.stopped_because = Some(match record.stopped_because.take() {
        Some(before) => format!("{before}; {why}"),
        None => why.clone(),
    });
    record.finished_at = Some(Utc::now());
    record.holder = None;
    record.held_until = None;
    record.updated_at = Utc::now();
    if journal::write(
        store,
        &target.journal().name,
        &record,
        None,
        Some(&journal.version),
    )
    .await?
    .is_none()
    {
        return Err(Error::store(format!(
            "the journal {} changed while abandoning it: look again with 'coffre rotate status'",
            target.journal()
        )));
    }
    audit
        .record(Event {
            actor: options.actor.clone(),
            trigger: options.trigger.clone(),
            ..event(&record, from, "ABANDONED", Some(why))
        })
        .await;
    Ok(Outcome::Abandoned {
        target: target.name.clone(),
        rotation_id: record.rotation_id,
    })
}

/// A fingerprint of what consumers read from the published secret (never the values).
fn content_fingerprint(fields: &Fields) -> String {
    let mut joined = Zeroizing::new(String::new());
    for (name, value) in fields.iter() {
        joined.push_str(name);
        joined.push('\0');
        joined.push_str(value);
        joined.push('\0');
    }
    fingerprint(&joined)
}

fn retryable(e: &Error) -> bool {
    matches!(e.class(), Class::Source | Class::Store)
}
