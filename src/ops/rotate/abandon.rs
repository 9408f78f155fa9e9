//! What a person decides about a rotation that stopped for them: drop it (`--abandon`), or go
//! on over the published secret as it is now (`--resume`).

use chrono::Utc;

use super::run::content_fingerprint;
use super::{Outcome, RotateOptions, rewrite_journal, trail};
use crate::audit::Audit;
use crate::config::RotationTarget;
use crate::error::{Error, Result};
use crate::rotation::credential::Credential;
use crate::rotation::journal::{Journal, State};
use crate::secretstore::{Fields, SecretStore};

const LOOK_AGAIN: &str = "look again with 'coffre rotate status'";

/// A person closes a stopped (or failing) rotation: the journal becomes FINISHED with the
/// pending credential dropped; the published secret and the issuer are left as they are. A
/// finished rotation whose revocation cannot run (the secret was edited since) is closed too.
pub(super) async fn abandon(
    target: &RotationTarget,
    cred: &dyn Credential,
    store: &dyn SecretStore,
    found: Option<Journal>,
    audit: &Audit<'_>,
    options: &RotateOptions,
) -> Result<Outcome> {
    let owes_revocation = |j: &Journal| {
        j.record.state == State::Finished
            && j.record.revoke_after.is_some()
            && j.record.revoked_at.is_none()
    };
    let Some(journal) = found.filter(|j| j.record.state != State::Finished || owes_revocation(j))
    else {
        return Err(Error::config(format!(
            "rotation target '{}' has no rotation to abandon (it is finished or never ran)",
            target.name
        )));
    };
    let revocation = owes_revocation(&journal);
    let mut record = journal.record;
    let reached = match record.state {
        State::NeedsHuman => record.stopped_at,
        state => Some(state),
    };
    if reached.is_some_and(|r| cred.abandon_loses_live(r)) {
        return Err(Error::config(format!(
            "rotation target '{}': the database already has this rotation's password and the published secret does not: abandoning would lose the password in use. Fix what stopped it and run 'coffre rotate --resume {}' (or 'coffre rotate {}' if it failed), which publishes it",
            target.name, target.name, target.name
        )));
    }
    let from = match revocation {
        true => "FINISHED",
        false => record.shown_state(),
    };
    let why = match revocation {
        true => format!("revocation abandoned by {}", options.actor),
        false => format!("abandoned by {}", options.actor),
    };
    if revocation {
        record.revoked_at = Some(Utc::now());
    }
    record.state = State::Finished;
    record.stopped_because = Some(match record.stopped_because.take() {
        Some(before) => format!("{before}; {why}"),
        None => why.clone(),
    });
    record.finished_at = record.finished_at.or(Some(Utc::now()));
    record.holder = None;
    record.held_until = None;
    record.updated_at = Utc::now();
    trail::owe_by(
        &mut record,
        (from, "ABANDONED"),
        why,
        (&options.actor, &options.trigger),
    );
    let doing = ("abandoning it", LOOK_AGAIN);
    let none = Fields::new();
    let version = rewrite_journal(store, target, &record, &none, &journal.version, doing).await?;
    trail::pay(audit, &mut record).await;
    rewrite_journal(store, target, &record, &none, &version, doing).await?;
    Ok(Outcome::Abandoned {
        target: target.name.clone(),
        rotation_id: record.rotation_id,
    })
}

/// Take a rotation stopped at NEEDS_HUMAN back to the state it had reached, over the published
/// secret as it is now (a person checked it): the next steps run from there.
pub(super) async fn resume(
    target: &RotationTarget,
    store: &dyn SecretStore,
    journal: Journal,
    audit: &Audit<'_>,
    options: &RotateOptions,
) -> Result<Journal> {
    let mut record = journal.record;
    let Some(reached) = record.stopped_at else {
        return Err(Error::config(format!(
            "rotation target '{}': this rotation does not say where it stopped: abandon it with 'coffre rotate --abandon {}'",
            target.name, target.name
        )));
    };
    let published = store.read(&target.publish.name).await?;
    record.published_fingerprint = published.as_ref().map(|p| content_fingerprint(&p.fields));
    record.state = reached;
    record.stopped_at = None;
    record.stopped_because = None;
    record.failure = None;
    record.updated_at = Utc::now();
    trail::owe_by(
        &mut record,
        (State::NeedsHuman.name(), reached.name()),
        format!("resumed by {}", options.actor),
        (&options.actor, &options.trigger),
    );
    let doing = ("resuming it", LOOK_AGAIN);
    let pending = &journal.pending;
    let version = rewrite_journal(store, target, &record, pending, &journal.version, doing).await?;
    // The run that goes on from here journals that it is written.
    trail::pay(audit, &mut record).await;
    Ok(Journal {
        record,
        pending: journal.pending,
        version,
    })
}
