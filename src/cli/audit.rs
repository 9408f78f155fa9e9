//! `coffre audit verify` and `coffre audit list`: the trail read back, checked link by link.

use serde_json::json;

use super::args::AuditCommand;
use super::commands::emit;
use super::json::object;
use crate::audit::trail::{self, Filter, Verification};
use crate::audit::{Event, What};
use crate::error::{Error, Result};
use crate::manifest::rfc3339;
use crate::ops::Context;

pub async fn run(ctx: &Context, command: &AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify { anchor, output } => {
            let read = trail::read(&ctx.store, anchor.as_ref()).await?;
            let v = &read.verification;
            emit(*output, || verification_text(v), || verification_json(v));
            match &v.broken {
                None => Ok(()),
                Some(why) => Err(Error::integrity(format!(
                    "the audit trail is broken: {why}; the store's copy can no longer be trusted from there: compare with the events in the runs' logs, and keep the trail under Object Lock ([audit] object_lock)"
                ))),
            }
        }
        AuditCommand::List {
            since,
            kind,
            job,
            output,
        } => {
            let read = trail::read(&ctx.store, None).await?;
            let filter = Filter {
                since: *since,
                until: None,
                kinds: kind.clone(),
                job: job.clone(),
            };
            for event in read.events.iter().filter(|e| filter.matches(e)) {
                emit(*output, || event_line(event), || event_json(event));
            }
            if let Some(why) = &read.verification.broken {
                tracing::warn!("the audit trail is broken: {why} (coffre audit verify)");
            }
            Ok(())
        }
    }
}

pub fn verification_json(v: &Verification) -> serde_json::Value {
    object(
        "audit_verification",
        json!({
            "intact": v.intact(),
            "events": v.count,
            "first_at": v.first_at.as_ref().map(rfc3339::format),
            "last_at": v.last_at.as_ref().map(rfc3339::format),
            "head": v.head.as_ref().map(|(seq, hash)| format!("{seq}:{hash}")),
            "broken": v.broken,
            "strays": v.strays,
        }),
    )
}

fn verification_text(v: &Verification) -> String {
    let head = match &v.head {
        Some((seq, hash)) => {
            format!("; head {seq}:{hash} (keep it: --anchor checks the trail still holds it)")
        }
        None => String::new(),
    };
    let span = match (v.first_at, v.last_at) {
        (Some(a), Some(b)) => format!(", {} to {}", rfc3339::format(&a), rfc3339::format(&b)),
        _ => String::new(),
    };
    let mut text = match &v.broken {
        None => format!("audit trail intact: {} events{span}{head}", v.count),
        Some(why) => format!("audit trail BROKEN: {why} ({} events{span})", v.count),
    };
    for stray in &v.strays {
        text.push_str(&format!("\nnot an event (ignored): {stray}"));
    }
    text
}

pub fn event_json(event: &Event) -> serde_json::Value {
    object(
        "audit_event",
        serde_json::to_value(event).expect("an event serializes"),
    )
}

/// One line: number, time, kind, outcome, subject, who and why, and what happened.
fn event_line(e: &Event) -> String {
    let what = match &e.what {
        What::Backup {
            backup_id,
            database,
            stored_bytes,
            ..
        } => match backup_id {
            Some(id) => format!(
                "backup {id}{} ({stored_bytes} bytes stored)",
                database
                    .as_ref()
                    .map(|d| format!(" of {d}"))
                    .unwrap_or_default()
            ),
            None => "backup".into(),
        },
        What::Verify { backup_id, .. } => format!("verified {backup_id}"),
        What::Drill {
            backup_id,
            duration_seconds,
            rows,
            backup_age_seconds,
            ..
        } => format!(
            "drilled {backup_id}: {} rows in {:.1} s, backup {} h old",
            rows.map_or("-".into(), |r| r.to_string()),
            duration_seconds.unwrap_or_default(),
            backup_age_seconds / 3600
        ),
        What::Restore { backup_id, to, .. } => format!("restored {backup_id} to {to}"),
        What::Prune {
            deleted,
            shared_deleted,
            ..
        } => format!(
            "deleted {} backups ({}), {shared_deleted} shared objects",
            deleted.len(),
            deleted
                .iter()
                .map(|d| format!("{}: {}", d.backup_id, d.reason))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        What::Key {
            action,
            key_id,
            removed_key_id,
            backups,
            ..
        } => format!(
            "key {action} {key_id}{} in {backups} backups",
            removed_key_id
                .as_ref()
                .map(|r| format!(" (removed {r})"))
                .unwrap_or_default()
        ),
        What::JobRun { kind, backups, .. } => {
            format!("{kind} job ran ({} backups)", backups.len())
        }
        What::LockTakeover {
            previous_holder,
            expired_at,
            ..
        } => format!(
            "lock taken over from {previous_holder} (expired {})",
            rfc3339::format(expired_at)
        ),
        What::Rotation {
            from,
            to,
            fingerprint,
            ..
        } => format!("{from} -> {to} ({fingerprint})"),
        What::Incident {
            incident_id,
            action,
            scope,
            ..
        } => format!("incident {incident_id} {action} ({scope})"),
    };
    format!(
        "{:>6} {} {:<13} {:<6} {:<16} {} by {} ({}){}",
        e.seq.map_or("-".into(), |s| s.to_string()),
        rfc3339::format(&e.at),
        e.kind(),
        e.outcome,
        e.subject().unwrap_or("-"),
        what,
        e.actor,
        e.trigger,
        e.detail
            .as_ref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default()
    )
}
