//! `coffre incident rotate` and `coffre incident close`: the plan first, then the audit events
//! as they happen, then the report (text, or JSON lines with `--json`).

use std::time::Duration;

use super::args::{IncidentCommand, IncidentRotateArgs};
use super::commands::emit;
use super::json::object;
use crate::audit::{Audit, Event, What};
use crate::error::{Error, Result};
use crate::ops::Context;
use crate::ops::incident::{self, IncidentPlan, Report, RunOptions, Scope};

pub async fn run(ctx: &Context, command: &IncidentCommand) -> Result<()> {
    match command {
        IncidentCommand::Rotate(args) => rotate(ctx, args).await,
        IncidentCommand::Close { output } => {
            let closed = incident::close(&ctx.store).await?;
            if let Some(i) = &closed {
                let audit = Audit::logged(&ctx.store, ctx.config.audit.object_lock)
                    .triggered_by("incident");
                audit
                    .record(incident_event(&audit, &i.incident_id, &i.scope, "closed"))
                    .await;
            }
            emit(
                *output,
                || match &closed {
                    Some(i) => format!("incident {} ({}) closed", i.incident_id, i.scope),
                    None => "no incident is open".into(),
                },
                || object("incident_closed", serde_json::json!({ "incident": closed })),
            );
            Ok(())
        }
    }
}

async fn rotate(ctx: &Context, args: &IncidentRotateArgs) -> Result<()> {
    let scope = Scope {
        all: args.all,
        secrets: args.secrets.clone(),
        namespaces: args.namespaces.clone(),
        selector: args.selector.clone(),
    };
    let targets = incident::select(&ctx.config, &scope).await?;
    let grace = args.grace.map_or(Duration::ZERO, |g| g.0);
    let (plan, consumers) = incident::plan(&ctx.config, &targets, &scope, grace).await?;
    emit(
        args.output,
        || plan_text(&plan),
        || {
            object(
                "incident_plan",
                serde_json::to_value(&plan).expect("serializes"),
            )
        },
    );
    if args.dry_run {
        return Ok(());
    }
    let actor = crate::audit::actor();
    let (open, resumed) = incident::open(&ctx.store, &scope, &targets, &actor).await?;
    if !args.output.json {
        println!(
            "incident {} {}",
            open.incident_id,
            if resumed {
                "resumed (an earlier run was interrupted)"
            } else {
                "started"
            }
        );
    }
    let audit = audit(ctx, args.output.json);
    let action = if resumed { "resumed" } else { "started" };
    audit
        .record(incident_event(
            &audit,
            &open.incident_id,
            &plan.scope,
            action,
        ))
        .await;
    let options = RunOptions {
        grace,
        concurrency: args.concurrency,
        stop: ctx.stop.clone(),
    };
    let (report, errors) =
        incident::run(&ctx.config, &open, &targets, &consumers, &audit, &options).await;
    let value = object(
        "incident_report",
        serde_json::to_value(&report).expect("serializes"),
    );
    emit(args.output, || report_text(&report), || value.clone());
    finish(ctx, &audit, &report, errors, value).await
}

/// Store the report, close a complete incident, and say how the run ends.
async fn finish(
    ctx: &Context,
    audit: &Audit<'_>,
    report: &Report,
    errors: Vec<Error>,
    value: serde_json::Value,
) -> Result<()> {
    let id = report.incident_id;
    let bytes = value.to_string().into_bytes();
    let sha256 = crate::audit::link_hash(&bytes);
    let stored = audit
        .store_document("incident", &id.to_string(), bytes)
        .await;
    let reported = What::Incident {
        incident_id: id,
        scope: report.scope.clone(),
        action: "reported".into(),
        complete: Some(report.complete),
        report: stored.as_ref().ok().cloned().flatten(),
        report_sha256: Some(sha256),
    };
    audit.record(audit.event(reported, "ok", None)).await;
    if report.complete {
        incident::close(&ctx.store).await?;
    }
    if let Some(e) = incident::worst(errors) {
        return Err(e);
    }
    if !report.complete {
        return Err(Error::store(format!(
            "incident {id} is not complete: run the same command again to resume it"
        )));
    }
    stored.map_err(|e| e.context("the incident is done, but its report could not be stored"))?;
    if let Some(why) = audit.unstored().first() {
        return Err(Error::store(format!(
            "the incident is done, but audit events could not be stored: {why}"
        )));
    }
    Ok(())
}

/// Audit events go to the store, and to stdout: JSON lines, or one short line each.
fn audit(ctx: &Context, json: bool) -> Audit<'_> {
    Audit::new(
        Some(&ctx.store),
        ctx.config.audit.object_lock,
        move |event| match (json, &event.what) {
            (true, What::Rotation { .. }) => {
                let value = serde_json::to_value(event).expect("an event serializes");
                println!("{}", object("rotation_event", value));
            }
            (
                false,
                What::Rotation {
                    target, from, to, ..
                },
            ) => println!(
                "  {target}: {from} -> {to}{}",
                event
                    .detail
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            // The incident's own events: its start is announced, its report printed.
            _ => tracing::info!(
                target: "coffre::audit",
                "{}",
                serde_json::to_string(event).unwrap_or_default()
            ),
        },
    )
    .triggered_by("incident")
}

/// The incident's own event: it `started`, `resumed` or was `closed`.
fn incident_event(audit: &Audit<'_>, id: &uuid::Uuid, scope: &str, action: &str) -> Event {
    let what = What::Incident {
        incident_id: *id,
        scope: scope.to_string(),
        action: action.into(),
        complete: None,
        report: None,
        report_sha256: None,
    };
    audit.event(what, "ok", None)
}

fn plan_text(plan: &IncidentPlan) -> String {
    let mut out = format!(
        "incident plan ({}): {} secret(s), {} workload(s) to restart once\n",
        plan.scope,
        plan.secrets.len(),
        plan.workloads.len()
    );
    for s in &plan.secrets {
        out.push_str(&format!(
            "  secret {}: {} ({} from {} -> {}; now {})\n",
            s.target,
            s.action,
            s.kind,
            s.issuer,
            s.publish,
            s.state.as_deref().unwrap_or("never rotated")
        ));
    }
    for (target, why) in &plan.unreadable {
        out.push_str(&format!("  secret {target}: cannot be planned: {why}\n"));
    }
    for w in &plan.workloads {
        out.push_str(&format!(
            "  workload {}: restart once (uses {})\n",
            w.workload,
            w.secrets.join(", ")
        ));
    }
    out
}

fn report_text(report: &Report) -> String {
    let mut out = format!(
        "incident {} ({}): {}\n",
        report.incident_id,
        report.scope,
        match report.complete {
            true => "complete: every secret rotated, every rollout confirmed",
            false => "NOT complete: run the same command again to resume",
        }
    );
    for s in &report.secrets {
        let revoked = match (s.revoked, s.revoke_after) {
            (true, _) => ", old credential revoked".to_string(),
            (false, Some(at)) => format!(
                ", old credential revoked after {}",
                crate::manifest::rfc3339::format(&at)
            ),
            (false, None) => String::new(),
        };
        out.push_str(&format!(
            "  secret {} ({}, {}): {} -> {}, {}{}{}\n",
            s.target,
            s.kind,
            s.publish,
            s.old_fingerprint.as_deref().unwrap_or("none"),
            s.new_fingerprint.as_deref().unwrap_or("unchanged"),
            s.state.as_deref().unwrap_or("not rotated"),
            revoked,
            s.error
                .as_ref()
                .map(|e| format!("; {e}"))
                .unwrap_or_default()
        ));
    }
    for w in &report.workloads {
        out.push_str(&format!(
            "  workload {}: {}, {} (uses {}){}\n",
            w.workload,
            if w.restarted {
                "restarted"
            } else {
                "not patched by this run"
            },
            if w.rollout_confirmed {
                "rollout confirmed"
            } else {
                "rollout NOT confirmed"
            },
            w.secrets.join(", "),
            w.error
                .as_ref()
                .map(|e| format!("; {e}"))
                .unwrap_or_default()
        ));
    }
    out
}
