//! `coffre audit verify` and `coffre audit list`: the trail read back, checked link by link.

use serde_json::json;

use super::args::AuditCommand;
use super::commands::emit;
use super::json::object;
use crate::audit::Event;
use crate::audit::trail::{self, Filter, Verification};
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

/// One line: number, time, kind, outcome, subject, what happened, who and why.
fn event_line(e: &Event) -> String {
    let what = e.summary();
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
