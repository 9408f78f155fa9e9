//! Rendering results for people (aligned text) and programs (JSON).

use serde_json::{Value, json};

use crate::backup::BackupSummary;
use crate::config::Config;
use crate::crypto::keys::Secret;
use crate::manifest::rfc3339;
use crate::ops::verify::{Outcome, VerifyReport};
use crate::prune::{JobPlan, PruneReport};
use crate::restore::{DrillReport, OpenSummary};
use crate::store::{Backup, BackupRef, Damaged, Leftover, Listing, Stray};

/// 1536 -> "1.5 KiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn backup_json(b: &Backup) -> Value {
    let m = &b.manifest.manifest;
    json!({
        "id": m.backup_id,
        "job": m.job,
        "started_at": rfc3339::format(&m.started_at),
        "finished_at": rfc3339::format(&m.finished_at),
        "source": m.source,
        "compression": m.compression,
        "plaintext_bytes": m.plaintext_bytes,
        "stored_bytes": m.stored_bytes,
        "chunks": m.chunks,
        "keys": m.keys.iter().map(|k| json!({"type": k.kind(), "key_id": k.key_id()})).collect::<Vec<_>>(),
    })
}

pub fn listing_text(listing: &Listing) -> String {
    let mut out = format!(
        "{:<36}  {:<16}  {:<16}  {:<19}  {:>10}  {:>10}\n",
        "ID", "JOB", "DATABASE", "STARTED (UTC)", "STORED", "DUMP"
    );
    for b in &listing.complete {
        let m = &b.manifest.manifest;
        out.push_str(&format!(
            "{:<36}  {:<16}  {:<16}  {:<19}  {:>10}  {:>10}\n",
            m.backup_id,
            m.job,
            m.series(),
            m.started_at.format("%Y-%m-%d %H:%M:%S"),
            human_bytes(m.stored_bytes),
            human_bytes(m.plaintext_bytes),
        ));
    }
    if listing.complete.is_empty() {
        out.push_str("(no complete backups)\n");
    }
    for d in &listing.damaged {
        out.push_str(&format!("{}\n", damaged_text(d)));
    }
    out
}

/// A backup whose manifest cannot be used, in one line.
pub fn damaged_text(d: &Damaged) -> String {
    format!(
        "damaged: backup {} of job '{}' (started {} UTC): {}",
        d.location.id,
        d.location.job,
        d.location.time.format("%Y-%m-%d %H:%M:%S"),
        d.error
    )
}

fn damaged_json(d: &Damaged) -> Value {
    json!({
        "id": d.location.id,
        "job": d.location.job,
        "started_at": rfc3339::format(&d.location.time),
        "status": "damaged",
        "error": d.error.to_string(),
    })
}

/// Complete backups (`"status": "complete"`), then damaged ones (`"status": "damaged"`).
pub fn listing_json(listing: &Listing) -> Value {
    let complete = listing.complete.iter().map(|b| {
        let mut item = backup_json(b);
        item["status"] = json!("complete");
        item
    });
    Value::Array(
        complete
            .chain(listing.damaged.iter().map(damaged_json))
            .collect(),
    )
}

pub fn backup_text(s: &BackupSummary) -> String {
    let m = &s.manifest;
    let seconds = (m.finished_at - m.started_at).num_milliseconds() as f64 / 1000.0;
    let database = m
        .source
        .database
        .as_ref()
        .map(|db| format!(", database '{db}'"))
        .unwrap_or_default();
    format!(
        "backup {} of job '{}'{database}: {} dump -> {} stored in {} chunks, {seconds:.1}s",
        m.backup_id,
        m.job,
        human_bytes(m.plaintext_bytes),
        human_bytes(m.stored_bytes),
        m.chunks
    )
}

pub fn backup_summary_json(s: &BackupSummary) -> Value {
    let m = &s.manifest;
    json!({
        "id": m.backup_id,
        "job": m.job,
        "source": m.source,
        "started_at": rfc3339::format(&m.started_at),
        "finished_at": rfc3339::format(&m.finished_at),
        "plaintext_bytes": m.plaintext_bytes,
        "stored_bytes": m.stored_bytes,
        "chunks": m.chunks,
    })
}

pub fn open_summary_json(backup: &Backup, s: &OpenSummary) -> Value {
    json!({
        "id": backup.manifest.manifest.backup_id,
        "job": backup.manifest.manifest.job,
        "stored_bytes": s.stored_bytes,
        "payload_bytes": s.payload_bytes,
        "plaintext_bytes": s.plaintext_bytes,
        "chunks": s.chunks,
    })
}

pub fn verify_text(backup: &Backup, s: &OpenSummary) -> String {
    let m = &backup.manifest.manifest;
    format!(
        "verified backup {} of job '{}': {} stored, {} chunks, {} dump; key, manifest mac, every chunk and data_sha256 hold",
        m.backup_id,
        m.job,
        human_bytes(s.stored_bytes),
        s.chunks,
        human_bytes(s.plaintext_bytes),
    )
}

pub fn drill_text(backup: &Backup, drill: &DrillReport) -> String {
    let m = &backup.manifest.manifest;
    format!(
        "verified backup {} of job '{}' by restoring it: {} tables, {} rows in scratch database {} on {} (dropped)",
        m.backup_id,
        m.job,
        drill.counts.tables,
        drill.counts.rows,
        drill.scratch_database,
        drill.server,
    )
}

pub fn drill_json(backup: &Backup, s: &OpenSummary, drill: &DrillReport) -> Value {
    let mut out = open_summary_json(backup, s);
    out["restore_drill"] = json!({
        "scratch_database": drill.scratch_database,
        "server": drill.server,
        "tables": drill.counts.tables,
        "rows": drill.counts.rows,
    });
    out
}

pub fn restore_text(backup: &Backup, s: &OpenSummary) -> String {
    let m = &backup.manifest.manifest;
    format!(
        "restored backup {} of job '{}': {} in {} chunks, all checks passed",
        m.backup_id,
        m.job,
        human_bytes(s.plaintext_bytes),
        s.chunks
    )
}

/// The prune plan: every backup with its verdict and the rules that keep it.
pub fn prune_plan_text(plans: &[JobPlan]) -> String {
    let row = |job: &str, series: &str, r: &BackupRef, verdict: &str| {
        format!(
            "{job:<16}  {series:<16}  {:<36}  {:<19}  {verdict}\n",
            r.id.to_string(),
            r.time.format("%Y-%m-%d %H:%M:%S").to_string(),
        )
    };
    let mut out = format!(
        "{:<16}  {:<16}  {:<36}  {:<19}  VERDICT\n",
        "JOB", "DATABASE", "ID", "STARTED (UTC)"
    );
    for plan in plans {
        for (series, decisions) in &plan.series {
            for (backup, decision) in decisions {
                let verdict = if decision.keep() {
                    let rules: Vec<String> = decision.rules.iter().map(|r| r.to_string()).collect();
                    format!("keep ({})", rules.join(", "))
                } else {
                    "delete".to_string()
                };
                out.push_str(&row(&plan.job, series, &backup.location, &verdict));
            }
        }
        for r in &plan.stale_incomplete {
            out.push_str(&row(
                &plan.job,
                "-",
                r,
                "delete (incomplete, abandoned: older than the job timeout)",
            ));
        }
        for r in &plan.fresh_incomplete {
            out.push_str(&row(
                &plan.job,
                "-",
                r,
                "keep (incomplete, may still be running)",
            ));
        }
        for d in &plan.damaged {
            let verdict = format!("keep (damaged manifest, needs a person: {})", d.error);
            out.push_str(&row(&plan.job, "-", &d.location, &verdict));
        }
        for stray in &plan.strays {
            out.push_str(&row(&plan.job, "-", &stray.location, &stray_verdict(stray)));
        }
    }
    out
}

pub fn prune_plan_json(plans: &[JobPlan], dry_run: bool) -> Value {
    let mut items = Vec::new();
    for plan in plans {
        for (series, decisions) in &plan.series {
            for (backup, decision) in decisions {
                items.push(json!({
                    "job": plan.job,
                    "database": series,
                    "id": backup.location.id,
                    "started_at": rfc3339::format(&backup.manifest.manifest.started_at),
                    "keep": decision.keep(),
                    "rules": decision.rules.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                }));
            }
        }
        for r in &plan.stale_incomplete {
            items.push(json!({"job": plan.job, "id": r.id, "incomplete": true, "keep": false}));
        }
        for r in &plan.fresh_incomplete {
            items.push(json!({"job": plan.job, "id": r.id, "incomplete": true, "keep": true}));
        }
        for stray in &plan.strays {
            items.push(json!({"job": plan.job, "id": stray.location.id, "leftover": stray_verdict(stray), "keep": false}));
        }
        for d in &plan.damaged {
            items.push(json!({"job": plan.job, "id": d.location.id, "damaged": true, "keep": true, "error": d.error.to_string()}));
        }
    }
    json!({"dry_run": dry_run, "backups": items})
}

fn stray_verdict(stray: &Stray) -> String {
    match &stray.leftover {
        Leftover::Staging(path) => format!(
            "delete (staging file of an abandoned backup: {})",
            path.display()
        ),
        Leftover::Upload(upload) => format!(
            "abort (open multipart upload of an abandoned backup: {})",
            upload.path
        ),
    }
}

pub fn prune_report_text(done: &PruneReport) -> String {
    format!(
        "pruned: {} backups deleted ({}), {} abandoned incomplete backups and {} staging files or open uploads removed, {} deletes failed",
        done.deleted.len(),
        human_bytes(done.deleted_bytes),
        done.cleaned_incomplete.len(),
        done.cleaned_strays,
        done.failures.len()
    )
}

/// Keys and the backups they open.
pub fn key_list_text(listing: &Listing) -> String {
    let backups = &listing.complete;
    let mut out = format!("{:<10}  {:<16}  BACKUPS\n", "TYPE", "KEY ID");
    for ((kind, id), count) in crate::keyring::usage(backups) {
        out.push_str(&format!(
            "{kind:<10}  {id:<16}  {count} of {}\n",
            backups.len()
        ));
    }
    for d in &listing.damaged {
        out.push_str(&format!("{}\n", damaged_text(d)));
    }
    out
}

pub fn key_list_json(listing: &Listing) -> Value {
    let keys: Vec<Value> = crate::keyring::usage(&listing.complete)
        .into_iter()
        .map(|((kind, id), count)| json!({"type": kind, "key_id": id, "backups": count}))
        .collect();
    let damaged: Vec<Value> = listing.damaged.iter().map(damaged_json).collect();
    json!({"backups": listing.complete.len(), "keys": keys, "damaged": damaged})
}

/// A backup `verify --all` did not verify, in one line.
pub fn verify_line(r: &BackupRef, outcome: &Outcome) -> String {
    match outcome {
        Outcome::PrunedMeanwhile => format!(
            "backup {} of job '{}': pruned meanwhile (deleted by a prune while this ran)",
            r.id, r.job
        ),
        Outcome::Failed(e) => format!("backup {} of job '{}': {e}", r.id, r.job),
        Outcome::Verified(_) | Outcome::Drilled(..) => {
            format!("verified backup {} of job '{}'", r.id, r.job)
        }
    }
}

pub fn verify_all_summary(report: &VerifyReport) -> String {
    let pruned = report.count(|o| matches!(o, Outcome::PrunedMeanwhile));
    let failed = report.count(|o| matches!(o, Outcome::Failed(_)));
    let total = report.checked.len() - pruned;
    let meanwhile = match pruned {
        0 => String::new(),
        n => format!(" ({n} more pruned meanwhile)"),
    };
    if failed == 0 {
        format!("verified {total} of {total} backups: every check holds{meanwhile}")
    } else {
        format!(
            "verified {} of {total} backups: {failed} failed (listed above){meanwhile}",
            total - failed,
        )
    }
}

pub fn verify_all_json(report: &VerifyReport) -> Value {
    let pruned = report.count(|o| matches!(o, Outcome::PrunedMeanwhile));
    let failures: Vec<Value> = report
        .failures()
        .map(|(r, e)| json!({"id": r.id, "job": r.job, "class": e.class().label(), "error": e.message()}))
        .collect();
    json!({
        "backups": report.checked.len() - pruned,
        "verified": report.checked.len() - pruned - failures.len(),
        "pruned_meanwhile": pruned,
        "failed": failures,
    })
}

/// What `config check` found.
pub fn config_text(config: &Config, store: &str, secrets: &[Secret]) -> String {
    let mut out = format!("config {}: ok\nstore: {store}\n", config.path.display());
    for secret in secrets {
        match secret {
            Secret::Key(k) => out.push_str(&format!("key: {}\n", k.key_id())),
            Secret::Passphrase(_, p) => out.push_str(&format!(
                "key: passphrase (argon2id m={} KiB, t={}, p={})\n",
                p.m_kib, p.t, p.p
            )),
            Secret::Identity(i) => out.push_str(&format!("key: x25519 identity {}\n", i.recipient().key_id())),
            Secret::Recipient(r) => out.push_str(&format!(
                "key: x25519 recipient {} (writes only: this config cannot restore what it writes)\n",
                r.key_id()
            )),
        }
    }
    if secrets.is_empty() {
        out.push_str("warning: no encryption key configured: backups will fail\n");
    }
    for (name, job) in &config.jobs {
        out.push_str(&format!("job {name}: {}\n", job.file.display()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn human_bytes_picks_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
