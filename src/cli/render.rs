//! Results as text for people: aligned tables and one-line reports.

use crate::crypto::keys::Secret;
use crate::manifest::Layout;
use crate::ops::backup::BackupSummary;
use crate::ops::config_check::ConfigReport;
use crate::ops::drill::DrillReport;
use crate::ops::keys::{KeyChange, Rotation};
use crate::ops::prune::{PlanItem, PruneReport, SharedPlan, Verdict};
use crate::ops::restore::OpenSummary;
use crate::ops::verify::{Outcome, VerifyReport};
use crate::store::{Backup, BackupRef, Damaged, Leftover, Listing};

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

/// "1 chunk", "3 chunks".
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

fn started(r: &BackupRef) -> String {
    r.time.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// ", database 'ehr'" for backups of one database of a server.
fn of_database(backup: &Backup) -> String {
    match &backup.manifest.manifest.source.database {
        Some(db) => format!(", database '{db}'"),
        None => String::new(),
    }
}

pub fn listing(listing: &Listing) -> String {
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
            m.database_shown().unwrap_or("-"),
            m.started_at.format("%Y-%m-%d %H:%M:%S"),
            human_bytes(m.stored_bytes),
            human_bytes(m.plaintext_bytes),
        ));
    }
    if listing.complete.is_empty() {
        out.push_str("(no complete backups)\n");
    }
    for d in &listing.damaged {
        out.push_str(&format!("{}\n", damaged(d)));
    }
    out
}

/// A backup whose manifest cannot be used, in one line.
pub fn damaged(d: &Damaged) -> String {
    format!(
        "damaged: backup {} of job '{}' (started {} UTC): {}",
        d.location.id,
        d.location.job,
        started(&d.location),
        d.error
    )
}

pub fn backup_made(s: &BackupSummary) -> String {
    let m = &s.manifest;
    let seconds = (m.finished_at - m.started_at).num_milliseconds() as f64 / 1000.0;
    let database = m
        .source
        .database
        .as_ref()
        .map(|db| format!(", database '{db}'"))
        .unwrap_or_default();
    let chunks = match &s.layout {
        Layout::V1(_) => count(m.chunks, "chunk"),
        Layout::V2(v2) => format!("{} ({} new)", count(m.chunks, "chunk"), v2.new_chunks),
    };
    format!(
        "backup {} of job '{}'{database}: {} dump -> {} stored in {chunks}, {seconds:.1}s",
        m.backup_id,
        m.job,
        human_bytes(m.plaintext_bytes),
        human_bytes(m.stored_bytes),
    )
}

pub fn verified(backup: &Backup, s: &OpenSummary) -> String {
    let m = &backup.manifest.manifest;
    let held = match &backup.manifest.layout {
        Layout::V1(_) => "key, manifest mac, every chunk and data_sha256 hold",
        Layout::V2(_) => "key, manifest mac, recipe, and every chunk's tag and keyed id hold",
    };
    format!(
        "verified backup {} of job '{}'{}: {} stored, {}, {} dump; {held}",
        m.backup_id,
        m.job,
        of_database(backup),
        human_bytes(s.stored_bytes),
        count(s.chunks, "chunk"),
        human_bytes(s.plaintext_bytes),
    )
}

pub fn drilled(backup: &Backup, drill: &DrillReport) -> String {
    let m = &backup.manifest.manifest;
    format!(
        "verified backup {} of job '{}'{} by restoring it: {}, {} in scratch database {} on {} (dropped); recovery time {:.1}s (restore {:.1}s, count {:.1}s), recovery point {} old",
        m.backup_id,
        m.job,
        of_database(backup),
        count(drill.counts.tables, "table"),
        count(drill.counts.rows, "row"),
        drill.scratch_database,
        drill.server,
        drill.duration_seconds(),
        drill.restore_seconds,
        drill.count_seconds,
        age(drill.backup_age()),
    )
}

/// An age as a person reads it: 3h 12m, 2d 4h.
fn age(d: chrono::Duration) -> String {
    let minutes = d.num_minutes().max(0);
    match minutes {
        0..60 => format!("{minutes}m"),
        60..1440 => format!("{}h {}m", minutes / 60, minutes % 60),
        _ => format!("{}d {}h", minutes / 1440, minutes % 1440 / 60),
    }
}

pub fn restored(backup: &Backup, target: &str, s: &OpenSummary) -> String {
    let m = &backup.manifest.manifest;
    format!(
        "restored backup {} of job '{}'{} to {target}: {} in {}, all checks passed",
        m.backup_id,
        m.job,
        of_database(backup),
        human_bytes(s.plaintext_bytes),
        count(s.chunks, "chunk"),
    )
}

/// A backup `verify --all` did not verify, in one line.
pub fn not_verified(r: &BackupRef, outcome: &Outcome) -> String {
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

pub fn verify_summary(report: &VerifyReport) -> String {
    let (total, failed, pruned) = report.totals();
    let meanwhile = match pruned {
        0 => String::new(),
        n => format!(" ({n} more pruned meanwhile)"),
    };
    let of = count(total as u64, "backup");
    if failed == 0 {
        format!("verified {total} of {of}: every check holds{meanwhile}")
    } else {
        format!(
            "verified {} of {of}: {failed} failed (listed above){meanwhile}",
            total - failed,
        )
    }
}

/// The prune plan: every backup with its verdict and the rules that keep it.
pub fn prune_plan(items: &[PlanItem]) -> String {
    let mut out = format!(
        "{:<16}  {:<16}  {:<36}  {:<19}  VERDICT\n",
        "JOB", "DATABASE", "ID", "STARTED (UTC)"
    );
    for item in items {
        out.push_str(&format!(
            "{:<16}  {:<16}  {:<36}  {:<19}  {}\n",
            item.location.job,
            item.series.as_deref().unwrap_or("-"),
            item.location.id.to_string(),
            started(&item.location),
            verdict(&item.verdict),
        ));
    }
    out
}

pub fn verdict(v: &Verdict) -> String {
    match v {
        Verdict::Keep(rules) => {
            let rules: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
            format!("keep ({})", rules.join(", "))
        }
        Verdict::Delete => "delete".into(),
        Verdict::DeleteAbandoned => {
            "delete (incomplete, abandoned: older than the job timeout)".into()
        }
        Verdict::KeepIncomplete => "keep (incomplete, may still be running)".into(),
        Verdict::KeepDamaged(why) => format!("keep (damaged manifest, needs a person: {why})"),
        Verdict::RemoveLeftover(Leftover::Staging(path)) => format!(
            "delete (staging file of an abandoned backup: {})",
            path.display()
        ),
        Verdict::RemoveLeftover(Leftover::Upload(upload)) => format!(
            "abort (open multipart upload of an abandoned backup: {})",
            upload.path
        ),
    }
}

/// What a prune does to the packs and sessions of a job's v2 backups.
pub fn shared_plan(job: &str, plan: &SharedPlan) -> String {
    let mut parts = vec![format!(
        "{} no backup uses any more: delete ({})",
        count(plan.delete.len() as u64, "pack or session"),
        human_bytes(plan.delete_bytes())
    )];
    if !plan.mark.is_empty() {
        parts.push(format!(
            "{} newly unused: mark (deleted by a prune a day or the job's timeout later, if still unused)",
            plan.mark.len()
        ));
    }
    if !plan.waiting.is_empty() {
        parts.push(format!(
            "{} marked earlier: keep for now",
            plan.waiting.len()
        ));
    }
    if !plan.stale_uploads.is_empty() {
        parts.push(format!(
            "{}: remove",
            count(plan.stale_uploads.len() as u64, "abandoned pack upload")
        ));
    }
    format!("job '{job}': {}", parts.join("; "))
}

pub fn prune_done(done: &PruneReport) -> String {
    format!(
        "pruned: {} deleted, {} deleted ({} in all), {} and {} removed, {} failed",
        count(done.deleted.len() as u64, "backup"),
        count(done.deleted_shared as u64, "unused shared object"),
        human_bytes(done.deleted_bytes),
        count(
            done.cleaned_incomplete.len() as u64,
            "abandoned incomplete backup"
        ),
        count(done.cleaned_strays as u64, "staging file or open upload"),
        count(done.failures.len() as u64, "delete"),
    )
}

/// Keys and the backups they open.
pub fn key_list(
    listing: &Listing,
    usage: &std::collections::BTreeMap<(String, String), usize>,
) -> String {
    let backups = &listing.complete;
    let mut out = format!("{:<10}  {:<16}  BACKUPS\n", "TYPE", "KEY ID");
    for ((kind, id), opened) in usage {
        out.push_str(&format!(
            "{kind:<10}  {id:<16}  {opened} of {}\n",
            backups.len()
        ));
    }
    for d in &listing.damaged {
        out.push_str(&format!("{}\n", damaged(d)));
    }
    out
}

pub fn key_added(change: &KeyChange) -> String {
    format!(
        "key added to {} ({} had it already)",
        count(change.changed as u64, "backup"),
        change.already_done
    )
}

pub fn key_removed(change: &KeyChange) -> String {
    format!(
        "key removed from {} ({} did not have it)",
        count(change.changed as u64, "backup"),
        change.already_done
    )
}

pub fn rotated(rotation: &Rotation, old_key_id: &str) -> String {
    let unfinished = match rotation.removed.lacking_new_key {
        0 => String::new(),
        n => format!(
            "; {} made meanwhile still only have the old key: run the rotation again",
            count(n as u64, "backup")
        ),
    };
    format!(
        "rotated: new key added to {} ({} had it), key {old_key_id} removed from {}{unfinished}",
        count(rotation.added.changed as u64, "backup"),
        rotation.added.already_done,
        count(rotation.removed.changed as u64, "backup"),
    )
}

pub fn key_description(secret: &Secret) -> String {
    match secret {
        Secret::Key(k) => format!("key: {}", k.key_id()),
        Secret::Passphrase(_, p) => format!(
            "key: passphrase (argon2id m={} KiB, t={}, p={})",
            p.m_kib, p.t, p.p
        ),
        Secret::Identity(i) => format!("key: x25519 identity {}", i.recipient().key_id()),
        Secret::Recipient(r) => format!(
            "key: x25519 recipient {} (writes only: this config cannot restore what it writes)",
            r.key_id()
        ),
    }
}

/// What `config check` found.
pub fn config_report(report: &ConfigReport) -> String {
    let mut out = format!(
        "config {}: ok\nstore: {}\nlocks: {}\n",
        report.path.display(),
        report.store,
        report.locks
    );
    for key in &report.keys {
        out.push_str(&format!("{}\n", key_description(key)));
    }
    for (name, file) in &report.jobs {
        out.push_str(&format!("job {name}: {}\n", file.display()));
    }
    for (name, state) in &report.targets {
        let state = state.as_deref().unwrap_or("never rotated");
        out.push_str(&format!(
            "rotation target {name}: admin login ok, {state}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(count(1u64, "chunk"), "1 chunk");
        assert_eq!(count(0u64, "chunk"), "0 chunks");
        assert_eq!(count(7u64, "table"), "7 tables");
    }
}
