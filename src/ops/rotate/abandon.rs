//! A person closes a rotation that stopped for them.

use chrono::Utc;

use super::run::event;
use super::{Outcome, RotateOptions};
use crate::audit::{Audit, Event};
use crate::config::RotationTarget;
use crate::error::{Error, Result};
use crate::rotation::journal::{self, Journal, State};
use crate::secretstore::SecretStore;

/// A person closes a stopped (or failing) rotation: the journal becomes FINISHED with the
/// pending password dropped; the published secret and the database are left as they are.
pub(super) async fn abandon(
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
