//! Rendering results for people (aligned text) and programs (JSON).

use serde_json::{Value, json};

use crate::backup::BackupSummary;
use crate::config::Config;
use crate::crypto::keys::Secret;
use crate::manifest::rfc3339;
use crate::restore::{DrillReport, OpenSummary};
use crate::store::{Backup, Listing};

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
    out
}

pub fn listing_json(listing: &Listing) -> Value {
    Value::Array(listing.complete.iter().map(backup_json).collect())
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
