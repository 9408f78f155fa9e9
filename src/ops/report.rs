//! Gathering the evidence of `coffre report` (`crate::report` is its shape and renderings):
//! the trail's events in the period, the backups kept now, and what the configuration
//! requires of each job and rotation target.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use std::collections::{BTreeMap, BTreeSet};

use crate::audit::{Event, What, trail};
use crate::config::{CertificateIssuer, RotationTarget, TargetKind};
use crate::config::{Config, Job};
use crate::error::Result;
use crate::report::*;
use crate::store::{Backup, Store};
use uuid::Uuid;

/// What a report covers.
#[derive(Clone, Debug)]
pub struct Scope {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Backup jobs (none: all).
    pub jobs: Vec<String>,
}

/// A drill must have passed within this long, or the database is flagged.
const DRILL_MAX_AGE_HOURS: i64 = 48;
const DAY_SECONDS: f64 = 86_400.0;

pub async fn gather(config: &Config, store: &Store, scope: &Scope) -> Result<Report> {
    let jobs: Vec<&Job> = match scope.jobs.as_slice() {
        [] => config.jobs.values().collect(),
        names => names.iter().map(|n| config.job(n)).collect::<Result<_>>()?,
    };
    let read = trail::read(store, None).await?;
    let listing = store.list(None).await?;
    let stanzas = super::keys::stanzas_of(store, &listing).await;
    let in_period = |e: &&Event| e.at >= scope.from && e.at < scope.to;
    let period: Vec<&Event> = read.events.iter().filter(in_period).collect();
    let job_names: BTreeSet<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    let of_jobs = |e: &&&Event| e.subject().is_some_and(|s| job_names.contains(s));

    let mut databases = Vec::new();
    for job in &jobs {
        let kept: Vec<&Backup> = listing
            .complete
            .iter()
            .filter(|b| b.location.job == job.name)
            .collect();
        databases.extend(job_evidence(job, &kept, &read.events, &stanzas, scope));
    }
    let drills: Vec<DrillRecord> = period
        .iter()
        .filter(of_jobs)
        .filter_map(|e| drill(e))
        .collect();
    for db in &mut databases {
        db.last_passing_drill = read
            .events
            .iter()
            .filter_map(|e| match &e.what {
                What::Drill { job, database, .. }
                    if *job == db.job && *database == db.database && e.outcome == "ok" =>
                {
                    Some(e.at)
                }
                _ => None,
            })
            .filter(|at| *at < scope.to)
            .max();
    }
    let credentials: Vec<CredentialEvidence> = config
        .targets
        .values()
        .map(|t| credential(t, &read.events, scope))
        .collect();
    let restores = period
        .iter()
        .filter(of_jobs)
        .filter_map(|e| restore(e))
        .collect();
    let deletions = period
        .iter()
        .flat_map(|e| deletions(e, &job_names))
        .collect();
    let incidents = incidents(&read.events, scope);
    let v = &read.verification;
    let audit = AuditEvidence {
        intact: v.intact(),
        events: v.count,
        events_in_period: period.len() as u64,
        head: v.head.as_ref().map(|(seq, hash)| format!("{seq}:{hash}")),
        broken: v.broken.clone(),
    };
    let mut report = Report {
        generated_at: crate::clock::now(),
        from: scope.from,
        to: scope.to,
        store: store.description().to_string(),
        jobs: jobs.iter().map(|j| j.name.clone()).collect(),
        findings: Vec::new(),
        databases,
        drills,
        credentials,
        incidents,
        restores,
        deletions,
        audit,
    };
    report.findings = findings(&report);
    Ok(report)
}

/// One row per database of `job`: from the backups kept and the backup events.
fn job_evidence(
    job: &Job,
    kept: &[&Backup],
    events: &[Event],
    stanzas: &BTreeMap<Uuid, Vec<crate::crypto::keys::Stanza>>,
    scope: &Scope,
) -> Vec<DatabaseEvidence> {
    let mut series: BTreeSet<Option<String>> = kept
        .iter()
        .map(|b| b.manifest.manifest.database_shown().map(str::to_string))
        .collect();
    let mut failed = 0;
    let mut first_seen: Option<DateTime<Utc>> = kept.iter().map(|b| b.location.time).min();
    for e in events {
        if let What::Backup {
            job: j, database, ..
        } = &e.what
            && *j == job.name
        {
            first_seen = Some(first_seen.map_or(e.at, |f| f.min(e.at)));
            match e.outcome.as_str() {
                "ok" => {
                    series.insert(database.clone());
                }
                _ if e.at >= scope.from && e.at < scope.to => failed += 1,
                _ => {}
            }
        }
    }
    if series.is_empty() {
        // Never backed up: one row, every scheduled day missed.
        series.insert(None);
    }
    series
        .into_iter()
        .map(|database| {
            let mine: Vec<&Backup> = kept
                .iter()
                .copied()
                .filter(|b| b.manifest.manifest.database_shown().map(str::to_string) == database)
                .collect();
            database_evidence(
                job, database, &mine, events, stanzas, scope, failed, first_seen,
            )
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn database_evidence(
    job: &Job,
    database: Option<String>,
    kept: &[&Backup],
    events: &[Event],
    stanzas: &BTreeMap<Uuid, Vec<crate::crypto::keys::Stanza>>,
    scope: &Scope,
    failed: u64,
    first_seen: Option<DateTime<Utc>>,
) -> DatabaseEvidence {
    // Backups taken in the period: their events, and any kept backup from then (a backup
    // made before the trail began still counts).
    let mut taken: BTreeMap<Uuid, (DateTime<Utc>, u64, u64)> = BTreeMap::new();
    let mut deleted_young = false;
    for e in events {
        match &e.what {
            What::Backup {
                job: j,
                backup_id: Some(id),
                database: d,
                plaintext_bytes,
                stored_bytes,
                ..
            } if *j == job.name && *d == database && e.outcome == "ok" => {
                taken.insert(*id, (e.at, *plaintext_bytes, *stored_bytes));
            }
            What::Prune {
                job: j, deleted, ..
            } if *j == job.name => {
                let min_age = Duration::days(i64::from(job.retention.keep_within_days));
                deleted_young |= deleted.iter().any(|d| e.at - d.taken_at < min_age);
            }
            _ => {}
        }
    }
    for b in kept {
        let m = &b.manifest.manifest;
        taken
            .entry(m.backup_id)
            .or_insert((m.started_at, m.plaintext_bytes, m.stored_bytes));
    }
    let in_period: Vec<(DateTime<Utc>, u64, u64)> = taken
        .values()
        .copied()
        .filter(|(at, ..)| *at >= scope.from && *at < scope.to)
        .collect();
    let mut sizes: BTreeMap<NaiveDate, (u64, u64)> = BTreeMap::new();
    for (at, plain, stored) in &in_period {
        let day = sizes.entry(at.date_naive()).or_default();
        day.0 += plain;
        day.1 += stored;
    }
    let taken_days: BTreeSet<NaiveDate> = sizes.keys().copied().collect();
    // The schedule's runs in the period, from the job's first backup on.
    let counted_from = first_seen.map_or(scope.from, |f| f.max(scope.from));
    let mut runs = Vec::new();
    if let Some(schedule) = &job.schedule {
        let mut at = counted_from - Duration::seconds(1);
        while let Some(next) = schedule.next_after(at) {
            if next >= scope.to {
                break;
            }
            runs.push(next);
            at = next;
        }
    }
    let run_days: BTreeSet<NaiveDate> = runs.iter().map(DateTime::date_naive).collect();
    let missed_days = run_days.difference(&taken_days).copied().collect();
    let oldest_kept = kept.iter().map(|b| b.location.time).min();
    let newest_kept = kept.iter().map(|b| b.location.time).max();
    let required = Duration::days(i64::from(job.retention.keep_within_days));
    let reaches_back = match (oldest_kept, first_seen) {
        (Some(oldest), Some(first)) => {
            scope.to - oldest >= required - Duration::days(1) || oldest - first < Duration::days(1)
        }
        _ => false,
    };
    DatabaseEvidence {
        job: job.name.clone(),
        database: database.clone(),
        schedule: job.schedule.as_ref().map(|s| s.cron.as_str().to_string()),
        scheduled: runs.len() as u64,
        taken: in_period.len() as u64,
        failed,
        missed_days,
        kept: kept.len() as u64,
        oldest_kept,
        newest_kept,
        retention_days: job.retention.keep_within_days,
        retention_met: reaches_back && !deleted_young,
        object_lock_days: job.object_lock.map(|l| l.days),
        sizes: sizes
            .into_iter()
            .map(|(date, (plaintext_bytes, stored_bytes))| DaySize {
                date,
                plaintext_bytes,
                stored_bytes,
            })
            .collect(),
        keys: keys_in_use(kept, stanzas, scope.to),
        drillable: matches!(
            job.source,
            crate::config::SourceConfig::Postgres(_) | crate::config::SourceConfig::Mariadb(_)
        ) && database.as_deref() != Some(crate::manifest::KIND_POSTGRES_GLOBALS),
        last_passing_drill: None,
    }
}

fn keys_in_use(
    kept: &[&Backup],
    stanzas: &BTreeMap<Uuid, Vec<crate::crypto::keys::Stanza>>,
    now: DateTime<Utc>,
) -> Vec<KeyInUse> {
    let mut keys: BTreeMap<String, KeyInUse> = BTreeMap::new();
    for b in kept {
        let since = b.location.time;
        for s in stanzas.get(&b.location.id).into_iter().flatten() {
            let k = keys.entry(s.key_id().to_string()).or_insert(KeyInUse {
                key_id: s.key_id().to_string(),
                kind: s.kind().to_string(),
                backups: 0,
                in_use_since: since,
                age_days: 0.0,
            });
            k.backups += 1;
            k.in_use_since = k.in_use_since.min(since);
        }
    }
    keys.into_values()
        .map(|mut k| {
            k.age_days = days(now - k.in_use_since);
            k
        })
        .collect()
}

fn days(d: Duration) -> f64 {
    (d.num_seconds() as f64 / DAY_SECONDS * 10.0).round() / 10.0
}

fn drill(e: &Event) -> Option<DrillRecord> {
    let What::Drill {
        job,
        database,
        backup_id,
        duration_seconds,
        restore_seconds,
        tables,
        rows,
        backup_age_seconds,
        ..
    } = &e.what
    else {
        return None;
    };
    Some(DrillRecord {
        at: e.at,
        job: job.clone(),
        database: database.clone(),
        backup_id: *backup_id,
        outcome: e.outcome.clone(),
        duration_seconds: *duration_seconds,
        restore_seconds: *restore_seconds,
        tables: *tables,
        rows: *rows,
        backup_age_seconds: *backup_age_seconds,
        detail: e.detail.clone(),
    })
}

fn restore(e: &Event) -> Option<RestoreRecord> {
    let What::Restore {
        job,
        backup_id,
        database,
        to,
    } = &e.what
    else {
        return None;
    };
    Some(RestoreRecord {
        at: e.at,
        actor: e.actor.clone(),
        trigger: e.trigger.clone(),
        job: job.clone(),
        backup_id: *backup_id,
        database: database.clone(),
        to: to.clone(),
        outcome: e.outcome.clone(),
    })
}

fn deletions(e: &Event, jobs: &BTreeSet<&str>) -> Vec<DeletionRecord> {
    let record = |job: Option<String>, what: &str, reason: String| DeletionRecord {
        at: e.at,
        actor: e.actor.clone(),
        trigger: e.trigger.clone(),
        job,
        what: what.into(),
        backup_id: None,
        taken_at: None,
        key_id: None,
        reason,
    };
    match &e.what {
        What::Prune { job, deleted, .. } if jobs.contains(job.as_str()) => deleted
            .iter()
            .map(|d| DeletionRecord {
                backup_id: Some(d.backup_id),
                taken_at: Some(d.taken_at),
                ..record(Some(job.clone()), "backup", d.reason.clone())
            })
            .collect(),
        What::Key {
            job,
            action,
            key_id,
            removed_key_id,
            backups,
        } if e.outcome == "ok" && job.as_deref().is_none_or(|j| jobs.contains(j)) => {
            let removed = match action.as_str() {
                "remove" => Some(key_id.clone()),
                "rotate" => removed_key_id.clone(),
                _ => None,
            };
            removed
                .map(|id| DeletionRecord {
                    key_id: Some(id),
                    ..record(
                        job.clone(),
                        "key",
                        format!("key {action}: removed from {backups} backups"),
                    )
                })
                .into_iter()
                .collect()
        }
        _ => Vec::new(),
    }
}

/// A target's policy: its `every`, else its kind's (database passwords weekly, API keys
/// monthly, certificates renewed with a third of their life left).
fn policy(target: &RotationTarget) -> (String, f64) {
    if let Some(every) = target.every {
        let d = every.as_secs_f64() / DAY_SECONDS;
        return (format!("every {d:.0} days"), d);
    }
    let renewal = |validity: std::time::Duration, before: Option<std::time::Duration>| {
        let before = before.unwrap_or(validity / 3);
        let d = (validity.saturating_sub(before)).as_secs_f64() / DAY_SECONDS;
        (
            format!(
                "renewed with {:.0} of {:.0} days left",
                before.as_secs_f64() / DAY_SECONDS,
                validity.as_secs_f64() / DAY_SECONDS
            ),
            d,
        )
    };
    match &target.kind {
        TargetKind::Database(_) => ("weekly".into(), 7.0),
        TargetKind::ApiKey(_) => ("monthly".into(), 30.0),
        TargetKind::Certificate(c) => match &c.issuer {
            CertificateIssuer::Internal { validity, .. } => renewal(*validity, c.renew_before),
            // An ACME certificate lives 90 days.
            CertificateIssuer::Acme(_) => {
                renewal(std::time::Duration::from_secs(90 * 86_400), c.renew_before)
            }
        },
        TargetKind::Ca(ca) => renewal(ca.validity, ca.renew_before),
    }
}

fn credential(target: &RotationTarget, events: &[Event], scope: &Scope) -> CredentialEvidence {
    let (policy, policy_days) = policy(target);
    let mut last = None;
    let (mut rotations, mut failures) = (0, 0);
    for e in events.iter().filter(|e| e.at < scope.to) {
        if let What::Rotation { target: t, to, .. } = &e.what
            && *t == target.name
        {
            let recent = e.at >= scope.from;
            match to.as_str() {
                "FINISHED" => {
                    last = Some(e.at);
                    rotations += u64::from(recent);
                }
                "FAILED" | "NEEDS_HUMAN" => failures += u64::from(recent),
                _ => {}
            }
        }
    }
    let age_days = last.map(|l| days(scope.to - l));
    CredentialEvidence {
        target: target.name.clone(),
        kind: target.kind.name().to_string(),
        policy,
        policy_days,
        last_rotated_at: last,
        age_days,
        overdue: age_days.is_none_or(|a| a > policy_days),
        rotations,
        failures,
    }
}

/// Every incident with an event in the period, and its timeline: its own events and the
/// rotations it made.
fn incidents(events: &[Event], scope: &Scope) -> Vec<IncidentEvidence> {
    let mut found: BTreeMap<Uuid, IncidentEvidence> = BTreeMap::new();
    for e in events {
        if let What::Incident {
            incident_id,
            scope: s,
            action,
            complete,
            ..
        } = &e.what
        {
            let i = found.entry(*incident_id).or_insert(IncidentEvidence {
                incident_id: *incident_id,
                scope: s.clone(),
                actor: e.actor.clone(),
                started_at: e.at,
                reported_at: None,
                closed_at: None,
                complete: false,
                timeline: Vec::new(),
            });
            match action.as_str() {
                "reported" => {
                    i.reported_at = Some(e.at);
                    i.complete = complete.unwrap_or(false);
                }
                "closed" => i.closed_at = Some(e.at),
                _ => {}
            }
            i.timeline.push(TimelineEntry {
                at: e.at,
                what: format!("incident {action} by {}", e.actor),
            });
        }
    }
    for i in found.values_mut() {
        let end = i.closed_at.or(i.reported_at).unwrap_or(scope.to);
        for e in events.iter().filter(|e| e.trigger == "incident") {
            if let What::Rotation {
                target, from, to, ..
            } = &e.what
                && e.at >= i.started_at
                && e.at <= end
            {
                i.timeline.push(TimelineEntry {
                    at: e.at,
                    what: format!("{target}: {from} -> {to}"),
                });
            }
        }
        i.timeline.sort_by_key(|t| t.at);
    }
    found
        .into_values()
        .filter(|i| {
            i.started_at < scope.to
                && i.closed_at
                    .or(i.reported_at)
                    .is_none_or(|e| e >= scope.from)
        })
        .collect()
}

/// What needs a person's attention.
fn findings(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(why) = &r.audit.broken {
        out.push(format!("the audit trail is broken: {why}"));
    }
    for db in &r.databases {
        let name = match &db.database {
            Some(d) => format!("{}/{d}", db.job),
            None => db.job.clone(),
        };
        for day in &db.missed_days {
            out.push(format!("{name}: no backup on {day}, a scheduled day"));
        }
        if db.failed > 0 {
            out.push(format!("{name}: {} failed backups", db.failed));
        }
        if !db.retention_met {
            out.push(format!(
                "{name}: retention not met: backups must be kept {} days (oldest kept: {})",
                db.retention_days,
                db.oldest_kept.map_or("none".into(), |t| t.to_rfc3339())
            ));
        }
        let drilled_recently = db
            .last_passing_drill
            .is_some_and(|t| r.to - t <= Duration::hours(DRILL_MAX_AGE_HOURS));
        if db.drillable && !drilled_recently {
            out.push(format!(
                "{name}: no passing restore drill in the {DRILL_MAX_AGE_HOURS} hours before {}",
                r.to.date_naive()
            ));
        }
    }
    for d in r.drills.iter().filter(|d| d.outcome != "ok") {
        out.push(format!(
            "{}: the drill of {} at {} failed: {}",
            d.job,
            d.backup_id,
            d.at.to_rfc3339(),
            d.detail.as_deref().unwrap_or("")
        ));
    }
    for c in r.credentials.iter().filter(|c| c.overdue) {
        out.push(match c.age_days {
            Some(age) => format!(
                "credential {}: OVERDUE: last rotated {age:.1} days ago, policy {} ({:.0} days)",
                c.target, c.policy, c.policy_days
            ),
            None => format!(
                "credential {}: OVERDUE: never rotated, policy {}",
                c.target, c.policy
            ),
        });
    }
    for i in r.incidents.iter().filter(|i| !i.complete) {
        out.push(format!(
            "incident {} ({}) is not complete",
            i.incident_id, i.scope
        ));
    }
    out
}
