//! The journal of one rotation target: where its rotation stands, kept in the same secret
//! store as the credential it publishes (consumers never read it). It holds the pending
//! credential while a rotation is in flight, so a resumed run finishes the same rotation instead
//! of making a second one; the record itself (the `journal` field) holds no secret and is
//! what `coffre rotate status` shows.
//!
//! Every write names the version read (or creates), so two runs can never both advance a
//! rotation: that is the lock. The record also names its holder until `held_until`, so a
//! second run arriving while one is working says who holds it instead of racing it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::secretstore::{Fields, SecretStore, Written};

/// The journal's field holding the record (JSON, no secret in it).
const RECORD_FIELD: &str = "journal";
/// The journal's fields holding the pending credential while a rotation is in flight:
/// `pending_password`, `pending_current`, `pending_tls.key`...
const PENDING_PREFIX: &str = "pending_";

/// Where a rotation stands. A rotation goes through these in order; `NeedsHuman` stops it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// The pending password is chosen and journaled; nothing else changed.
    Planned,
    /// The database user has the pending password.
    DbSet,
    /// A login with the pending password ran the test query.
    Tested,
    /// The published secret holds the new credential.
    Published,
    /// The consumers run with it.
    RolledOut,
    /// Done; the record stays as the audit trail of the last rotation.
    Finished,
    /// Stopped: something changed that coffre must not decide about.
    NeedsHuman,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Planned => "PLANNED",
            State::DbSet => "DB_SET",
            State::Tested => "TESTED",
            State::Published => "PUBLISHED",
            State::RolledOut => "ROLLED_OUT",
            State::Finished => "FINISHED",
            State::NeedsHuman => "NEEDS_HUMAN",
        }
    }

    /// The state after this one on the way to FINISHED.
    pub fn next(self) -> Option<State> {
        match self {
            State::Planned => Some(State::DbSet),
            State::DbSet => Some(State::Tested),
            State::Tested => Some(State::Published),
            State::Published => Some(State::RolledOut),
            State::RolledOut => Some(State::Finished),
            State::Finished | State::NeedsHuman => None,
        }
    }

    pub fn in_flight(self) -> bool {
        self.next().is_some()
    }
}

/// The last run that failed, and how many in a row did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub count: u32,
    pub at: DateTime<Utc>,
    /// The state the failed step was leaving.
    pub step: State,
    /// The error's message (coffre's messages never hold a secret value).
    pub error: String,
}

/// The journal record of one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub target: String,
    pub rotation_id: uuid::Uuid,
    pub state: State,
    /// What started it: schedule, manual, incident.
    pub trigger: String,
    /// Who started it: the user or service account.
    pub actor: String,
    /// Whose credential changes: the database user, "key", the certificate's first name.
    pub user: String,
    /// The user the published secret named when the rotation began (dual-user mode: the other one).
    pub previous_user: Option<String>,
    /// A fingerprint of the published secret's content then: a later content change that is
    /// not this rotation's own write is an edit behind coffre's back.
    pub published_fingerprint: Option<String>,
    /// The fingerprint of the pending (then current) credential: never the credential.
    pub fingerprint: String,
    /// The fingerprint of the credential it replaces, when there was one.
    #[serde(default)]
    pub previous_fingerprint: Option<String>,
    /// The incident that started it (`coffre incident rotate`).
    #[serde(default)]
    pub incident: Option<uuid::Uuid>,
    /// When the replaced credential is revoked (FINISHED plus the grace period; none: never).
    #[serde(default)]
    pub revoke_after: Option<DateTime<Utc>>,
    /// When it was.
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Who is working on it, until when.
    pub holder: Option<String>,
    pub held_until: Option<DateTime<Utc>>,
    pub failure: Option<Failure>,
    /// Why it needs a human (NEEDS_HUMAN only).
    pub stopped_because: Option<String>,
    /// The state it had reached when it stopped for a human (where `--resume` goes on from).
    #[serde(default)]
    pub stopped_at: Option<State>,
    /// State changes journaled whose audit events may not be written yet. Each is journaled
    /// with the change it reports, so a run killed before writing the event leaves it owed,
    /// and the next run writes it first (the event's object name is fixed by the change, so a
    /// second write of one is a no-op).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owed: Vec<Transition>,
}

/// One state change of a rotation, as its audit event reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub from: String,
    pub to: String,
    /// Why (FAILED, NEEDS_HUMAN), or what a step found.
    pub detail: Option<String>,
    /// Who made this change and why, when not the rotation's own actor and trigger (a person
    /// abandoning or resuming it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<(String, String)>,
}

impl Record {
    /// The state as people read it: FAILED while a failed rotation waits for its next run.
    pub fn shown_state(&self) -> &'static str {
        match (&self.failure, self.state.in_flight()) {
            (Some(_), true) => "FAILED",
            _ => self.state.name(),
        }
    }

    /// Whether another process is working on it right now.
    pub fn held_by_other(&self, me: &str, now: DateTime<Utc>) -> Option<&str> {
        match (&self.holder, self.held_until) {
            (Some(holder), Some(until))
                if holder != me && until > now && !holder_is_gone(holder) =>
            {
                Some(holder)
            }
            _ => None,
        }
    }
}

/// A holder on this machine whose process has exited (killed mid-rotation) holds nothing.
/// Holders are `host/pid/tag/pidns`; on other hosts, or in another PID namespace (a pod with
/// host networking shares the node's host name), only `held_until` can tell.
fn holder_is_gone(holder: &str) -> bool {
    let mut parts = holder.split('/');
    let (Some(host), Some(pid), _, namespace) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let same_namespace = namespace.is_none_or(|ns| ns == crate::process::pid_namespace());
    same_namespace
        && host == crate::process::host_name()
        && pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
}

/// A journal as read: its record, the pending credential, and the version to write over.
pub struct Journal {
    pub record: Record,
    /// Empty once the rotation is finished.
    pub pending: Fields,
    pub version: String,
}

/// Read the journal at `name`; `None` when the target was never rotated.
pub async fn read(store: &dyn SecretStore, name: &str) -> Result<Option<Journal>> {
    let Some(secret) = store.read(name).await? else {
        return Ok(None);
    };
    let text = secret.fields.get(RECORD_FIELD).ok_or_else(|| {
        Error::store(format!(
            "{name} is not a coffre journal (no '{RECORD_FIELD}' field): move it away"
        ))
    })?;
    let record: Record = serde_json::from_str(text).map_err(|e| {
        Error::store(format!(
            "{name}: the journal record is damaged ({e}): see docs/ROTATION.md, recovering by hand"
        ))
    })?;
    let mut pending = Fields::new();
    for (name, value) in secret.fields.iter() {
        if let Some(name) = name.strip_prefix(PENDING_PREFIX) {
            pending.insert(name, value);
        }
    }
    Ok(Some(Journal {
        record,
        pending,
        version: secret.version,
    }))
}

/// Write `record` (and the pending credential, while in flight) over `expected`, or create
/// it. `Ok(None)`: someone else wrote the journal since it was read.
pub async fn write(
    store: &dyn SecretStore,
    name: &str,
    record: &Record,
    pending: &Fields,
    expected: Option<&str>,
) -> Result<Option<String>> {
    let mut fields = Fields::new().with(
        RECORD_FIELD,
        &serde_json::to_string_pretty(record).expect("a record serializes"),
    );
    if record.state.in_flight() || record.state == State::NeedsHuman {
        for (field, value) in pending.iter() {
            fields.insert(&format!("{PENDING_PREFIX}{field}"), value);
        }
    }
    match store.write(name, &fields, expected).await? {
        Written::Done(version) => Ok(Some(version)),
        Written::Conflict => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_run_in_order_to_finished() {
        let mut state = State::Planned;
        let mut seen = vec![state.name()];
        while let Some(next) = state.next() {
            assert!(next > state);
            state = next;
            seen.push(state.name());
        }
        assert_eq!(
            seen,
            [
                "PLANNED",
                "DB_SET",
                "TESTED",
                "PUBLISHED",
                "ROLLED_OUT",
                "FINISHED"
            ]
        );
        assert!(!State::NeedsHuman.in_flight());
    }

    #[test]
    fn a_dead_local_holder_holds_nothing() {
        let host = crate::process::host_name();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(holder_is_gone(&format!("{host}/{pid}/abcd")));
        assert!(!holder_is_gone(&format!(
            "{}/{}/abcd",
            host,
            std::process::id()
        )));
        assert!(!holder_is_gone(&format!("elsewhere/{pid}/abcd")));
        // Same host name, another PID namespace: its pid says nothing here.
        assert!(!holder_is_gone(&format!("{host}/{pid}/abcd/4026531999")));
        let here = crate::process::pid_namespace();
        assert!(holder_is_gone(&format!("{host}/{pid}/abcd/{here}")));
    }
}
