//! The audit trail of a rotation: each state change is journaled with the event that reports
//! it (`Record::owed`), then the event is written and forgotten. A run killed between the two
//! leaves the event owed, and the next run that reads the journal writes it before anything
//! else, so every change has its event, however the runs before it ended.

use crate::audit::{Audit, Event, What, stable_id};
use crate::rotation::journal::{Record, Transition};

/// Journal with the record: the change from `from` to `to`, its event owed until `pay`.
pub(super) fn owe(record: &mut Record, from: &str, to: &str, detail: Option<String>) {
    record.owed.push(Transition {
        at: crate::clock::now(),
        from: from.into(),
        to: to.into(),
        detail,
        by: None,
    });
}

/// As `owe`, for a change a person made (abandon, resume): their actor and trigger.
pub(super) fn owe_by(
    record: &mut Record,
    (from, to): (&str, &str),
    detail: String,
    (actor, trigger): (&str, &str),
) {
    owe(record, from, to, Some(detail));
    if let Some(last) = record.owed.last_mut() {
        last.by = Some((actor.into(), trigger.into()));
    }
}

/// Write every event `record` owes, oldest first, and forget them; the journal keeps them
/// until its next write.
pub(super) async fn pay(audit: &Audit<'_>, record: &mut Record) {
    for transition in std::mem::take(&mut record.owed) {
        audit.record(event(audit, record, &transition)).await;
    }
}

/// As `pay`, for events an earlier, killed run owed: it may have stored some of them before it
/// died, and those are not stored twice.
pub(super) async fn pay_earlier(audit: &Audit<'_>, record: &mut Record) {
    for transition in std::mem::take(&mut record.owed) {
        audit
            .record_replayed(event(audit, record, &transition))
            .await;
    }
}

/// The audit event reporting `transition` of `record`'s rotation.
pub(super) fn event(audit: &Audit<'_>, record: &Record, transition: &Transition) -> Event {
    let (actor, trigger) = transition
        .by
        .clone()
        .unwrap_or_else(|| (record.actor.clone(), record.trigger.clone()));
    let outcome = match transition.to.as_str() {
        "FAILED" => "failed",
        "NEEDS_HUMAN" => "needs_human",
        "ABANDONED" => "abandoned",
        _ => "ok",
    };
    let at = transition
        .at
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let rotation_id = record.rotation_id.to_string();
    Event {
        seq: None,
        prev: None,
        // The same transition written again by the run that resumes has the same id.
        id: stable_id(&[
            "rotation",
            &rotation_id,
            &transition.from,
            &transition.to,
            &at,
        ]),
        at: transition.at,
        actor,
        host: audit.origin().host.clone(),
        trigger,
        outcome: outcome.into(),
        detail: transition.detail.clone(),
        what: What::Rotation {
            rotation_id: record.rotation_id,
            target: record.target.clone(),
            user: record.user.clone(),
            from: transition.from.clone(),
            to: transition.to.clone(),
            fingerprint: record.fingerprint.clone(),
        },
    }
}
