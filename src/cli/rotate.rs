//! `coffre rotate`: rotate, plan (`--dry-run`), abandon, and `rotate status`. Each state change
//! prints its audit event as a JSON line on stdout as it happens; results follow.

use chrono::Utc;
use serde_json::json;

use super::args::{Output, RotateArgs, RotateCommand};
use super::commands::emit;
use super::json::object;
use crate::audit::Audit;
use crate::error::{Error, Result};
use crate::manifest::rfc3339;
use crate::ops::Context;
use crate::ops::rotate::{self, Outcome, Plan, RotateOptions};
use crate::rotation::journal::Record;

pub async fn run(ctx: &Context, args: &RotateArgs) -> Result<()> {
    if let Some(RotateCommand::Status { targets, output }) = &args.command {
        return status(ctx, targets, *output).await;
    }
    let names: Vec<String> = match (&args.job, args.all, args.targets.is_empty()) {
        (Some(job), _, _) => match &ctx.config.task(job)?.kind {
            crate::config::TaskKind::Rotation { targets } => targets.clone(),
            other => {
                return Err(Error::config(format!(
                    "job '{job}' is a {} job, not a rotation job",
                    other.name()
                )));
            }
        },
        (None, true, _) => Vec::new(),
        (None, false, false) => args.targets.clone(),
        (None, false, true) => {
            return Err(Error::config(
                "name the targets to rotate, or --job NAME, or --all (coffre rotate status lists them)",
            ));
        }
    };
    let targets = rotate::select(&ctx.config, &names)?;
    if args.dry_run {
        let mut failures = Vec::new();
        for (target, plan) in targets
            .iter()
            .zip(rotate::plan(&targets, &ctx.config.secrets, None).await)
        {
            match plan {
                Ok(plan) => emit(args.output, || plan_line(&plan), || plan_json(&plan)),
                Err(e) => failures.push(e.context(format!("rotation target '{}'", target.name))),
            }
        }
        return super::fail_with_all(failures, "plans");
    }
    let audit = Audit::new(Some(&ctx.store), ctx.config.audit.object_lock, |event| {
        let mut value = serde_json::to_value(event).expect("an event serializes");
        value = object("rotation_event", value);
        println!("{value}");
    });
    let options = RotateOptions {
        abandon: args.abandon,
        resume: args.resume,
        ..RotateOptions::new("manual", ctx.stop.clone())
    };
    let results = rotate::rotate(&targets, &ctx.config.secrets, &audit, &options).await;
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(outcome) => emit(
                args.output,
                || outcome_line(&outcome),
                || outcome_json(&outcome),
            ),
            // Each names its target.
            Err(e) => failures.push(e),
        }
    }
    super::fail_with_all(failures, "rotations")?;
    if let Some(why) = audit.unstored().first() {
        return Err(Error::store(format!(
            "the rotations are done, but audit events could not be stored: {why}"
        )));
    }
    Ok(())
}

pub(super) fn outcome_line(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Rotated {
            target,
            user,
            rotation_id,
            fingerprint,
            resumed_from,
            state,
            revoked,
            ..
        } => {
            let resumed = resumed_from
                .as_ref()
                .map(|s| format!(", resumed from {s}"))
                .unwrap_or_default();
            let revoked = revoked
                .as_ref()
                .map(|r| format!("; {r}"))
                .unwrap_or_default();
            let done = match state.as_str() {
                "FINISHED" => "rotated".to_string(),
                other => format!("reached {other} in"),
            };
            format!(
                "{target}: {done} {user} (rotation {rotation_id}, new credential {fingerprint}{resumed}){revoked}"
            )
        }
        Outcome::NotDue { target, why } => format!("{target}: not due ({why})"),
        Outcome::Revoked {
            target,
            rotation_id,
            detail,
        } => format!("{target}: rotation {rotation_id}'s grace period is over: {detail}"),
        Outcome::Held { target, holder } => {
            format!("{target}: a rotation is in progress, held by {holder}; nothing done here")
        }
        Outcome::Abandoned {
            target,
            rotation_id,
        } => {
            format!(
                "{target}: rotation {rotation_id} abandoned; the database and the published secret are as it left them"
            )
        }
    }
}

pub(super) fn outcome_json(outcome: &Outcome) -> serde_json::Value {
    let mut value = json!({
        "target": null, "outcome": null, "user": null, "rotation_id": null,
        "fingerprint": null, "previous_fingerprint": null, "resumed_from": null,
        "state": null, "revoked": null, "holder": null, "why": null, "detail": null,
    });
    if let serde_json::Value::Object(fields) = serde_json::to_value(outcome).expect("serializes") {
        for (k, v) in fields {
            value[k] = v;
        }
    }
    object("rotation", value)
}

fn plan_line(plan: &Plan) -> String {
    format!(
        "{}: {} ({} -> {}; journal {}, now {})",
        plan.target,
        plan.action,
        plan.issuer,
        plan.publish,
        plan.journal,
        plan.state.as_deref().unwrap_or("never rotated")
    )
}

fn plan_json(plan: &Plan) -> serde_json::Value {
    object(
        "rotation_plan",
        serde_json::to_value(plan).expect("serializes"),
    )
}

async fn status(ctx: &Context, names: &[String], output: Output) -> Result<()> {
    let targets = rotate::select(&ctx.config, names)?;
    let mut failures = Vec::new();
    for (name, record) in rotate::status(&targets, &ctx.config.secrets).await {
        match record {
            Ok(record) => emit(
                output,
                || status_line(&name, record.as_ref()),
                || status_json(&name, record.as_ref()),
            ),
            Err(e) => failures.push(e.context(format!("rotation target '{name}'"))),
        }
    }
    super::fail_with_all(failures, "status reads")
}

fn status_line(name: &str, record: Option<&Record>) -> String {
    let Some(r) = record else {
        return format!("{name}: never rotated");
    };
    let mut line = format!(
        "{name}: {} (rotation {}, user {}, {} by {}, started {}, updated {})",
        r.shown_state(),
        r.rotation_id,
        r.user,
        r.trigger,
        r.actor,
        rfc3339::format(&r.started_at),
        rfc3339::format(&r.updated_at)
    );
    if let Some(f) = &r.failure {
        line.push_str(&format!(
            "; {} failed run(s), last at {} in {}: {}",
            f.count,
            rfc3339::format(&f.at),
            f.step.name(),
            f.error
        ));
    }
    if let Some(why) = &r.stopped_because {
        line.push_str(&format!("; {why}"));
    }
    match (r.revoke_after, r.revoked_at) {
        (_, Some(at)) => line.push_str(&format!(
            "; the credential it replaced was revoked {}",
            rfc3339::format(&at)
        )),
        (Some(at), None) => line.push_str(&format!(
            "; the credential it replaced is revoked after {}",
            rfc3339::format(&at)
        )),
        _ => {}
    }
    if let (Some(holder), Some(until)) = (&r.holder, r.held_until)
        && until > Utc::now()
    {
        line.push_str(&format!(
            "; held by {holder} until {}",
            rfc3339::format(&until)
        ));
    }
    line
}

fn status_json(name: &str, record: Option<&Record>) -> serde_json::Value {
    let r = record;
    object(
        "rotation_status",
        json!({
            "target": name,
            "state": r.map(Record::shown_state),
            "step": r.map(|r| r.state.name()),
            "rotation_id": r.map(|r| r.rotation_id),
            "user": r.map(|r| &r.user),
            "trigger": r.map(|r| &r.trigger),
            "actor": r.map(|r| &r.actor),
            "fingerprint": r.map(|r| &r.fingerprint),
            "started_at": r.map(|r| rfc3339::format(&r.started_at)),
            "updated_at": r.map(|r| rfc3339::format(&r.updated_at)),
            "finished_at": r.and_then(|r| r.finished_at.as_ref().map(rfc3339::format)),
            "holder": r.and_then(|r| r.holder.as_ref()),
            "failed_runs": r.map_or(0, |r| r.failure.as_ref().map_or(0, |f| f.count)),
            "last_error": r.and_then(|r| r.failure.as_ref().map(|f| &f.error)),
            "stopped_because": r.and_then(|r| r.stopped_because.as_ref()),
            "incident": r.and_then(|r| r.incident),
            "revoke_after": r.and_then(|r| r.revoke_after.as_ref().map(rfc3339::format)),
            "revoked_at": r.and_then(|r| r.revoked_at.as_ref().map(rfc3339::format)),
        }),
    )
}
