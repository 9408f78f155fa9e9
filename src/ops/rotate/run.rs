//! One target's rotation in progress: each remaining step, journaled before the next, and
//! what a failure or a stop for a person writes.

use chrono::{DateTime, Utc};
use std::time::Duration;
use zeroize::Zeroizing;

use super::{HOLD, MAX_FAILED_RUNS, Outcome, Restarts, Setup, trail};
use crate::audit::fingerprint;
use crate::error::{Class, Error, Result};
use crate::k8s::{Cluster, Workload};
use crate::rotation::journal::{self, Failure, Journal, Record, State};
use crate::secretstore::{Fields, SecretStore, Versioned, Written};

/// A step's result: done (with what it found, when worth saying), or a stop for a person.
enum Step {
    Done(Option<String>),
    NeedsHuman(String),
}

/// One target's rotation in progress: the journal as last written, and what it acts on.
pub(super) struct Run<'a> {
    setup: Setup<'a>,
    record: Record,
    /// The new credential's fields (a password; a key; a key and its certificate).
    pending: Fields,
    version: String,
}

/// How taking up a rotation went.
pub(super) enum Started<'a> {
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
    /// Plan a new rotation: choose whom it is for, generate the credential, journal both.
    pub(super) async fn start(setup: Setup<'a>, previous: Option<Journal>) -> Result<Started<'a>> {
        let (target, store, cred, options) =
            (setup.target, &setup.store, &setup.cred, setup.options);
        let published = store.read(&target.publish.name).await?;
        let fields = published.as_ref().map(|p| &p.fields);
        // Nothing is written until the issuer can be reached (the admin login works).
        let begun = cred.begin(fields).await?;
        let active = fields.and_then(|p| p.get("username").map(str::to_string));
        let detail = begun.note;
        let pending = cred.generate(&begun.subject)?;
        let key = pending.get(cred.key_field()).unwrap_or_default();
        let now = Utc::now();
        let mut record = Record {
            target: target.name.clone(),
            rotation_id: uuid::Uuid::new_v4(),
            state: State::Planned,
            trigger: options.trigger.clone(),
            actor: options.actor.clone(),
            user: begun.subject,
            previous_user: active,
            published_fingerprint: fields.map(content_fingerprint),
            fingerprint: fingerprint(key),
            previous_fingerprint: fields
                .and_then(|p| p.get(cred.key_field()))
                .map(fingerprint),
            incident: options.incident,
            revoke_after: None,
            revoked_at: None,
            started_at: now,
            updated_at: now,
            finished_at: None,
            holder: Some(options.holder.clone()),
            held_until: Some(hold_until(now)),
            failure: None,
            stopped_because: None,
            stopped_at: None,
            owed: Vec::new(),
        };
        let from = previous.as_ref().map_or("NONE", |j| j.record.state.name());
        trail::owe(&mut record, from, State::Planned.name(), detail);
        let journal_name = target.journal().name;
        let expected = previous.as_ref().map(|j| j.version.as_str());
        crate::failpoint::step("rotate.before.PLANNED").await?;
        let Some(version) =
            journal::write(store.as_ref(), &journal_name, &record, &pending, expected).await?
        else {
            return Ok(Started::Held(
                holder_now(store.as_ref(), &journal_name).await?,
            ));
        };
        // An error here leaves a PLANNED journal, as a crash would: the next run resumes it.
        crate::failpoint::step("rotate.after.PLANNED").await?;
        let mut run = Run {
            setup,
            record,
            pending,
            version,
        };
        trail::pay(run.setup.audit, &mut run.record).await;
        Ok(Started::Run(Box::new(run), None))
    }

    /// Resume a rotation a previous run left in flight (it died, or failed).
    pub(super) async fn take_over(setup: Setup<'a>, found: Journal) -> Result<Started<'a>> {
        if found.pending.get(setup.cred.key_field()).is_none() {
            return Err(Error::integrity(format!(
                "the journal of rotation {} ({}) holds no pending credential: see docs/ROTATION.md, recovering by hand",
                found.record.rotation_id,
                found.record.state.name()
            )));
        }
        let mut run = Run {
            setup,
            record: found.record,
            pending: found.pending,
            version: found.version,
        };
        let resumed_from = run.record.state.name().to_string();
        if !run.save(true).await? {
            let holder =
                holder_now(run.setup.store.as_ref(), &run.setup.target.journal().name).await?;
            return Ok(Started::Held(holder));
        }
        Ok(Started::Run(Box::new(run), Some(resumed_from)))
    }

    /// Take each remaining step, journaling it before the next.
    pub(super) async fn advance(mut self, resumed_from: Option<String>) -> Result<Outcome> {
        while let Some(next) = self.record.state.next() {
            if self.setup.options.stop.is_cancelled() {
                return Err(self.interrupt().await);
            }
            // The caller restarts every consumer once, then runs the rotation on from here.
            if next == State::RolledOut && self.setup.options.restarts == Restarts::Deferred {
                if !self.save(false).await? {
                    return Err(self.lost_journal());
                }
                return Ok(self.outcome(resumed_from, None));
            }
            let from = self.record.state.name();
            let step = async {
                crate::failpoint::step(&format!("rotate.before.{}", next.name())).await?;
                self.with_retries(next).await
            }
            .await;
            let detail = match step {
                Ok(Step::Done(detail)) => detail,
                Ok(Step::NeedsHuman(why)) => return Err(self.stop(why).await),
                // Stopped (SIGTERM) inside a step: not a failure; the next run resumes.
                Err(e) if e.class() == Class::Interrupted => return Err(self.interrupt().await),
                Err(e) => return Err(self.fail(e).await),
            };
            self.record.state = next;
            // A step that succeeds ends a run of failures.
            self.record.failure = None;
            if next == State::Finished {
                let now = Utc::now();
                self.record.finished_at = Some(now);
                let grace = self.setup.options.grace.or(self.setup.target.grace);
                self.record.revoke_after = grace
                    .map(|g| now + chrono::Duration::from_std(g).unwrap_or(chrono::Duration::MAX));
            }
            trail::owe(&mut self.record, from, next.name(), detail);
            if !self.save(true).await? {
                return Err(self.lost_journal());
            }
            if let Err(e) = crate::failpoint::step(&format!("rotate.after.{}", next.name())).await {
                return Err(self.fail(e).await);
            }
            trail::pay(self.setup.audit, &mut self.record).await;
        }
        // The FINISHED event is written: the journal owes nothing any more.
        if !self.save(false).await? {
            return Err(self.lost_journal());
        }
        if self.record.state == State::Finished {
            self.forget_pending().await;
        }
        let mut revoked = None;
        if self.record.revoke_after.is_some_and(|t| t <= Utc::now()) {
            let journal = Journal {
                record: self.record.clone(),
                pending: Fields::new(),
                version: self.version.clone(),
            };
            let (journal, detail) = super::revoke::revoke(&self.setup, journal).await?;
            self.record = journal.record;
            revoked = Some(detail);
        }
        Ok(self.outcome(resumed_from, revoked))
    }

    fn outcome(&self, resumed_from: Option<String>, revoked: Option<String>) -> Outcome {
        Outcome::Rotated {
            target: self.setup.target.name.clone(),
            user: self.record.user.clone(),
            rotation_id: self.record.rotation_id,
            fingerprint: self.record.fingerprint.clone(),
            previous_fingerprint: self.record.previous_fingerprint.clone(),
            resumed_from,
            state: self.record.state.name().to_string(),
            revoked,
        }
    }

    async fn with_retries(&mut self, next: State) -> Result<Step> {
        let mut delay = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            match self.act(next).await {
                // A rollout that did not finish in its timeout is not retried within the run.
                Err(e)
                    if attempt < self.setup.options.attempts
                        && retryable(&e)
                        && next != State::RolledOut =>
                {
                    tracing::warn!(
                        "rotation target '{}': {} (attempt {attempt}, retrying)",
                        self.setup.target.name,
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
    async fn act(&mut self, next: State) -> Result<Step> {
        match next {
            State::DbSet => {
                // The consumers' credential may be about to change (single-user): not when the
                // published secret is no longer what this rotation read.
                if let Some(why) = self.edited_out_of_band().await? {
                    return Ok(Step::NeedsHuman(why));
                }
                let mut pending = self.pending.clone();
                let detail = self.setup.cred.apply(&self.record, &mut pending).await?;
                // Journaled with the step: a certificate, once issued, is the one published.
                self.pending = pending;
                Ok(Step::Done(detail))
            }
            State::Tested => {
                self.setup.cred.test(&self.record, &self.pending).await?;
                Ok(Step::Done(None))
            }
            State::Published => self.publish().await,
            State::RolledOut => self.roll_out().await,
            State::Finished | State::Planned | State::NeedsHuman => Ok(Step::Done(None)),
        }
    }

    /// Restart each consumer once for this rotation (a resumed run finds the annotation set
    /// and does not patch again), then wait for every rollout.
    async fn roll_out(&mut self) -> Result<Step> {
        if let Restarts::Failed(why) = &self.setup.options.restarts {
            return Err(Error::store(why.clone()));
        }
        if let Restarts::DoneBy(by) = &self.setup.options.restarts {
            let detail = match self.setup.target.restarts_consumers() {
                true => by.clone(),
                false => "no workload to restart".to_string(),
            };
            return Ok(Step::Done(Some(detail)));
        }
        let Some(cluster) = self.setup.cluster.clone() else {
            return Ok(Step::Done(None));
        };
        let cluster = &cluster;
        let t = self.setup.target;
        let workloads = super::consumers(&[t], Some(cluster))
            .await
            .pop()
            .expect("one result per target")?;
        let id = self.record.rotation_id.to_string();
        let mut restarted = Vec::new();
        for w in &workloads {
            if cluster.restart(w, &id).await? {
                restarted.push(w.to_string());
            }
        }
        for w in &workloads {
            self.wait_holding(cluster, w).await?;
        }
        let detail = match (workloads.is_empty(), restarted.is_empty()) {
            (true, _) => "no workload uses the secret".to_string(),
            (false, true) => format!(
                "rolled out (restarted by an earlier run): {}",
                join(&workloads)
            ),
            (false, false) => format!("restarted and rolled out: {}", restarted.join(", ")),
        };
        Ok(Step::Done(Some(detail)))
    }

    /// Wait for `w`'s rollout, renewing this run's hold on the journal while it lasts, so that a
    /// rollout slower than the hold does not let another run take the rotation over.
    async fn wait_holding(&mut self, cluster: &Cluster, w: &Workload) -> Result<()> {
        let start = tokio::time::Instant::now();
        let stop = self.setup.options.stop.clone();
        let timeout = self.setup.target.rollout_timeout;
        loop {
            let waited =
                tokio::time::timeout(HOLD / 3, cluster.wait_rollout(w, timeout, start, &stop));
            match waited.await {
                Ok(done) => return done,
                Err(_) if self.save(true).await? => {}
                Err(_) => return Err(self.lost_journal()),
            }
        }
    }

    /// Why the published secret is no longer what this rotation read, if it is not.
    async fn edited_out_of_band(&self) -> Result<Option<String>> {
        let current = self
            .setup
            .store
            .read(&self.setup.target.publish.name)
            .await?;
        Ok(self.edit_in(current.as_ref()))
    }

    /// Why `current` (the published secret as just read) shows an edit behind this rotation's
    /// back: its content is neither what the rotation found nor its own write.
    fn edit_in(&self, current: Option<&Versioned>) -> Option<String> {
        let found = current.map(|c| content_fingerprint(&c.fields));
        if found == self.record.published_fingerprint || self.is_ours(current) {
            return None;
        }
        Some(format!(
            "{} changed while rotation {} was in flight (someone edited or deleted it): coffre did not overwrite it",
            self.setup.target.publish, self.record.rotation_id
        ))
    }

    fn is_ours(&self, current: Option<&Versioned>) -> bool {
        let key = self.setup.cred.key_field();
        current.is_some_and(|c| {
            c.fields.get("rotation_id") == Some(self.record.rotation_id.to_string().as_str())
                && c.fields.get(key).is_some()
                && c.fields.get(key) == self.pending.get(key)
        })
    }

    async fn publish(&self) -> Result<Step> {
        let name = &self.setup.target.publish.name;
        for _ in 0..3 {
            let current = self.setup.store.read(name).await?;
            if self.is_ours(current.as_ref()) {
                return Ok(Step::Done(Some(
                    "already published by an earlier run".into(),
                )));
            }
            if let Some(why) = self.edit_in(current.as_ref()) {
                return Ok(Step::NeedsHuman(why));
            }
            let expected = current.as_ref().map(|c| c.version.as_str());
            let fields = self.setup.cred.published(
                &self.record,
                &self.pending,
                current.as_ref().map(|c| &c.fields),
            );
            match self.setup.store.write(name, &fields, expected).await? {
                Written::Done(_) => return Ok(Step::Done(None)),
                // Written meanwhile: look again (the next read tells ours, theirs, or unchanged).
                Written::Conflict => continue,
            }
        }
        Err(Error::store(format!(
            "{}: it kept changing while coffre published: try again",
            self.setup.target.publish
        )))
    }

    /// Write the journal over the version last written, renewing this run's hold while the
    /// rotation is in flight, or releasing it. False: someone else wrote it meanwhile.
    async fn save(&mut self, hold: bool) -> Result<bool> {
        let now = Utc::now();
        self.record.updated_at = now;
        let held = hold && self.record.state.in_flight();
        self.record.holder = held.then(|| self.setup.options.holder.clone());
        self.record.held_until = held.then(|| hold_until(now));
        match journal::write(
            self.setup.store.as_ref(),
            &self.setup.target.journal().name,
            &self.record,
            &self.pending,
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

    /// The FINISHED journal holds no pending credential; its earlier versions, where a store
    /// keeps them, did: destroy them. A failure is a warning (the rotation is done; the policy
    /// may lack the right), repeated in the run's log.
    async fn forget_pending(&self) {
        let name = self.setup.target.journal().name;
        if let Err(e) = self.setup.store.forget_older(&name, &self.version).await {
            tracing::warn!(
                "rotation target '{}': the journal's earlier versions still hold the credential: {}",
                self.setup.target.name,
                e.message()
            );
        }
    }

    fn lost_journal(&self) -> Error {
        Error::store(format!(
            "the journal {} changed under this run (another run took the rotation over after this one's hold expired): nothing more was changed by this run",
            self.setup.target.journal()
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
            // The same exit (integrity, 7) as every later run that finds it stopped.
            return self.stop(why).await;
        }
        // Released, so that the next run takes over at once instead of waiting out the hold.
        let state = self.record.state.name();
        trail::owe(
            &mut self.record,
            state,
            "FAILED",
            Some(error.message().to_string()),
        );
        if let Err(lost) = self.save_and_pay("the failure").await {
            return lost;
        }
        error
    }

    /// Journal a failure or a stop (releasing the journal), write the events it owes, and
    /// journal that they are written. Only a lost journal is an error: a store that fails
    /// here has the event written anyway, and reported in the run's log.
    async fn save_and_pay(&mut self, what: &str) -> std::result::Result<(), Error> {
        match self.save(false).await {
            Ok(true) => {}
            Ok(false) => return Err(self.lost_journal()),
            Err(e) => tracing::warn!("{what} could not be journaled: {e}"),
        }
        trail::pay(self.setup.audit, &mut self.record).await;
        if let Err(e) = self.save(false).await {
            tracing::warn!("the journal still lists {what}'s event as owed: {e}");
        }
        Ok(())
    }

    /// Stop between steps on SIGTERM: release the journal so the next run resumes at once.
    async fn interrupt(&mut self) -> Error {
        if let Err(e) = self.save(false).await {
            tracing::warn!("releasing the journal: {e}");
        }
        Error::interrupted(format!(
            "stopped after {} (rotation {}); the next run resumes it",
            self.record.state.name(),
            self.record.rotation_id
        ))
    }

    /// Stop at NEEDS_HUMAN, changing nothing else.
    async fn stop(&mut self, why: String) -> Error {
        let from = self.record.state.name();
        self.record.stopped_at = Some(self.record.state);
        self.record.state = State::NeedsHuman;
        self.record.stopped_because = Some(why.clone());
        trail::owe(
            &mut self.record,
            from,
            State::NeedsHuman.name(),
            Some(why.clone()),
        );
        if let Err(lost) = self.save_and_pay("the stop").await {
            return lost;
        }
        Error::integrity(format!(
            "rotation {} stopped and needs a human: {why}. {}",
            self.record.rotation_id,
            what_next(&self.setup.target.name)
        ))
    }
}

/// A fingerprint of what consumers read from the published secret (never the values).
pub(super) fn content_fingerprint(fields: &Fields) -> String {
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

fn join(workloads: &[Workload]) -> String {
    workloads
        .iter()
        .map(Workload::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a person may do about a rotation stopped for them.
pub(super) fn what_next(target: &str) -> String {
    format!(
        "Check, then run 'coffre rotate --resume {target}' to go on over the secret as it is now, or 'coffre rotate --abandon {target}' to drop this rotation"
    )
}
