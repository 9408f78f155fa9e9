//! Results as JSON for programs: one object per line, each with a `type` and a `version`
//! (docs/JSON.md documents every type; tests/json.rs checks the output against it). A field
//! that does not apply is null, never missing.

use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::crypto::keys::{Secret, Stanza};
use crate::error::{Error, Remedy};
use crate::manifest::{Layout, rfc3339};
use crate::ops::backup::BackupSummary;
use crate::ops::config_check::ConfigReport;
use crate::ops::drill::DrillReport;
use crate::ops::keys::{KeyChange, Rotation};
use crate::ops::prune::{PlanItem, PruneReport, SharedPlan, Unlisted, Verdict};
use crate::ops::restore::OpenSummary;
use crate::ops::verify::{Outcome, VerifyReport};
use crate::store::{Backup, BackupRef, Damaged, Leftover, Listing};

/// Every object this version prints has `"version": 1`; a field's meaning never changes
/// within a version, and new fields may be added.
const VERSION: u32 = 1;

pub fn object(kind: &str, mut fields: Value) -> Value {
    fields["type"] = json!(kind);
    fields["version"] = json!(VERSION);
    fields
}

fn manifest_fields(m: &crate::manifest::Manifest, layout: &Layout, keys: &[Stanza]) -> Value {
    let format = layout.number();
    let new_chunks = match layout {
        Layout::V1(_) => m.chunks,
        Layout::V2(v2) => v2.new_chunks,
    };
    json!({
        "format": format,
        "id": m.backup_id,
        "job": m.job,
        "database": m.source.database,
        "source": m.source,
        "started_at": rfc3339::format(&m.started_at),
        "finished_at": rfc3339::format(&m.finished_at),
        "compression": m.compression,
        "plaintext_bytes": m.plaintext_bytes,
        "stored_bytes": m.stored_bytes,
        "chunks": m.chunks,
        "new_chunks": new_chunks,
        "retain_until": m.retain_until.as_ref().map(rfc3339::format),
        "keys": keys.iter().map(|k| json!({"type": k.kind(), "key_id": k.key_id()})).collect::<Vec<_>>(),
    })
}

/// A complete backup, listed, with the stanzas that open it.
fn backup(b: &Backup, keys: &[Stanza]) -> Value {
    let mut fields = manifest_fields(&b.manifest.manifest, &b.manifest.layout, keys);
    fields["status"] = json!("complete");
    object("backup", fields)
}

/// A backup just made.
pub fn backup_made(s: &BackupSummary) -> Value {
    let mut fields = manifest_fields(&s.manifest, &s.layout, &s.keys);
    fields["status"] = json!("complete");
    object("backup", fields)
}

pub fn damaged(d: &Damaged) -> Value {
    object(
        "damaged_backup",
        json!({
            "id": d.location.id,
            "job": d.location.job,
            "started_at": rfc3339::format(&d.location.time),
            "status": "damaged",
            "class": d.error.class().name(),
            "error": d.error.message(),
        }),
    )
}

/// Every backup of `listing`; `keys` has the stanzas of each (by backup id).
pub fn listing(listing: &Listing, keys: &BTreeMap<uuid::Uuid, Vec<Stanza>>) -> Vec<Value> {
    let none = Vec::new();
    let complete = listing
        .complete
        .iter()
        .map(|b| backup(b, keys.get(&b.location.id).unwrap_or(&none)));
    complete
        .chain(listing.damaged.iter().map(damaged))
        .collect()
}

fn opened(backup: &Backup, s: &OpenSummary, drill: Option<&DrillReport>) -> Value {
    let m = &backup.manifest.manifest;
    json!({
        "id": m.backup_id,
        "job": m.job,
        "database": m.source.database,
        "stored_bytes": s.stored_bytes,
        "payload_bytes": s.payload_bytes,
        "plaintext_bytes": s.plaintext_bytes,
        "chunks": s.chunks,
        "restore_drill": drill.map(|d| json!({
            "scratch_database": d.scratch_database,
            "server": d.server,
            "tables": d.counts.tables,
            "rows": d.counts.rows,
            "restore_seconds": d.restore_seconds,
            "count_seconds": d.count_seconds,
            "backup_age_seconds": d.backup_age().num_seconds(),
        })),
    })
}

pub fn verified(backup: &Backup, s: &OpenSummary, drill: Option<&DrillReport>) -> Value {
    object("verified", opened(backup, s, drill))
}

pub fn restored(backup: &Backup, target: &str, s: &OpenSummary) -> Value {
    let mut fields = opened(backup, s, None);
    fields["target"] = json!(target);
    fields
        .as_object_mut()
        .expect("an object")
        .remove("restore_drill");
    object("restored", fields)
}

/// A backup `verify --all` did not verify.
pub fn not_verified(r: &BackupRef, outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Failed(e) => object(
            "verify_failed",
            json!({"id": r.id, "job": r.job, "class": e.class().name(), "error": e.message()}),
        ),
        _ => object("pruned_meanwhile", json!({"id": r.id, "job": r.job})),
    }
}

pub fn verify_summary(report: &VerifyReport) -> Value {
    let (total, failed, pruned) = report.totals();
    object(
        "verify_summary",
        json!({
            "backups": total,
            "verified": total - failed,
            "failed": failed,
            "pruned_meanwhile": pruned,
        }),
    )
}

pub fn plan_item(item: &PlanItem, dry_run: bool) -> Value {
    let (action, rules, detail) = match &item.verdict {
        Verdict::Keep(rules) => ("keep", rules.iter().map(|r| r.to_string()).collect(), None),
        Verdict::Delete => ("delete", Vec::new(), None),
        Verdict::DeleteAbandoned => ("delete_abandoned", Vec::new(), None),
        Verdict::KeepIncomplete => ("keep_incomplete", Vec::new(), None),
        Verdict::KeepDamaged(why) => ("keep_damaged", Vec::new(), Some(why.clone())),
        Verdict::RemoveLeftover(Leftover::Staging(path)) => (
            "remove_staging_file",
            Vec::new(),
            Some(path.display().to_string()),
        ),
        Verdict::RemoveLeftover(Leftover::Upload(upload)) => {
            ("abort_upload", Vec::new(), Some(upload.path.to_string()))
        }
    };
    object(
        "prune_item",
        json!({
            "job": item.location.job,
            "database": item.series,
            "id": item.location.id,
            "started_at": rfc3339::format(&item.location.time),
            "action": action,
            "keep": item.verdict.keeps(),
            "rules": rules,
            "detail": detail,
            "dry_run": dry_run,
        }),
    )
}

/// What a prune does to the packs and sessions of a job's v2 backups.
pub fn shared_plan(job: &str, plan: &SharedPlan, dry_run: bool) -> Value {
    let names = |list: &[Unlisted]| -> Vec<String> {
        list.iter()
            .map(|u| format!("{}/{}", u.kind.dir(), u.name))
            .collect()
    };
    object(
        "prune_shared",
        json!({
            "job": job,
            "delete": names(&plan.delete),
            "delete_bytes": plan.delete_bytes(),
            "mark": names(&plan.mark),
            "waiting": names(&plan.waiting),
            "abandoned_uploads": plan.stale_uploads.len(),
            "dry_run": dry_run,
        }),
    )
}

pub fn prune_summary(done: Option<&PruneReport>) -> Value {
    let failures: Vec<&str> = done
        .map(|d| d.failures.iter().map(Error::message).collect())
        .unwrap_or_default();
    object(
        "prune_summary",
        json!({
            "dry_run": done.is_none(),
            "deleted": done.map_or(0, |d| d.deleted.len()),
            "deleted_bytes": done.map_or(0, |d| d.deleted_bytes),
            "cleaned_incomplete": done.map_or(0, |d| d.cleaned_incomplete.len()),
            "cleaned_leftovers": done.map_or(0, |d| d.cleaned_strays),
            "deleted_shared": done.map_or(0, |d| d.deleted_shared),
            "marked_shared": done.map_or(0, |d| d.marked_shared),
            "failures": failures,
        }),
    )
}

pub fn key_list(listing: &Listing, usage: &BTreeMap<(String, String), usize>) -> Vec<Value> {
    let mut out: Vec<Value> = usage
        .iter()
        .map(|((kind, id), opened)| {
            object(
                "key",
                json!({"key_type": kind, "key_id": id, "backups": opened, "of": listing.complete.len()}),
            )
        })
        .collect();
    out.extend(listing.damaged.iter().map(damaged));
    out
}

fn change(c: &KeyChange) -> Value {
    json!({
        "changed": c.changed,
        "already_done": c.already_done,
        "damaged": c.damaged.iter().map(|d| d.location.id.to_string()).collect::<Vec<_>>(),
        "lacking_new_key": c.lacking_new_key,
    })
}

pub fn key_change(action: &str, c: &KeyChange) -> Value {
    let mut fields = change(c);
    fields["action"] = json!(action);
    object("key_change", fields)
}

pub fn rotation(r: &Rotation, old_key_id: &str) -> Value {
    object(
        "key_rotation",
        json!({"added": change(&r.added), "removed": change(&r.removed), "removed_key_id": old_key_id}),
    )
}

pub fn generated(path: &std::path::Path, key_id: &str, recipient: Option<String>) -> Value {
    object(
        "generated_key",
        json!({
            "path": path.display().to_string(),
            "key_type": if recipient.is_some() { "x25519" } else { "key" },
            "key_id": key_id,
            "recipient": recipient,
        }),
    )
}

pub fn key_id(path: &std::path::Path, key_id: &str) -> Value {
    object(
        "key_id",
        json!({"path": path.display().to_string(), "key_id": key_id}),
    )
}

fn key(secret: &Secret) -> Value {
    let (kind, id) = match secret {
        Secret::Key(k) => ("key", Some(k.key_id())),
        Secret::Passphrase(..) => ("argon2id", None),
        Secret::Identity(i) => ("x25519_identity", Some(i.recipient().key_id())),
        Secret::Recipient(r) => ("x25519_recipient", Some(r.key_id())),
    };
    json!({"type": kind, "key_id": id})
}

pub fn config_report(report: &ConfigReport) -> Value {
    object(
        "config",
        json!({
            "path": report.path.display().to_string(),
            "store": report.store,
            "locks": report.locks,
            "keys": report.keys.iter().map(key).collect::<Vec<_>>(),
            "can_restore": report.can_restore(),
            "jobs": report.jobs.iter().map(|(name, file)| json!({"name": name, "file": file.display().to_string()})).collect::<Vec<_>>(),
            "targets": report.targets.iter().map(|(name, state)| json!({"name": name, "state": state})).collect::<Vec<_>>(),
        }),
    )
}

/// The final error of a run, when logs are JSON.
pub fn error(e: &Error, exit_code: i32, hint: Option<&str>) -> Value {
    object(
        "error",
        json!({
            "class": e.class().name(),
            "exit_code": exit_code,
            "retryable": e.class().retryable(),
            "message": e.message(),
            "hint": hint,
            "remedy": e.remedy().map(remedy_name),
        }),
    )
}

fn remedy_name(r: Remedy) -> &'static str {
    match r {
        Remedy::Overwrite => "overwrite",
        Remedy::CreateDatabase => "create_database",
        Remedy::ReplaceContents => "replace_contents",
        Remedy::NameDatabase => "name_database",
        Remedy::NameJob => "name_job",
        Remedy::RestoreToFile => "restore_to_file",
        Remedy::OtherKey => "other_key",
        Remedy::NameDrillServer => "name_drill_server",
        Remedy::NewKey => "new_key",
        Remedy::ConfigFile => "config_file",
        Remedy::KnownName => "known_name",
    }
}
