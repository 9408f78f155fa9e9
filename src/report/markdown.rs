//! The report as Markdown: headings and tables an auditor can read as text or paste into a
//! document.

use std::fmt::Write;

use super::Report;

fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".into(), |v| v.to_string())
}

/// Table cells never break the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# coffre compliance report\n");
    let _ = writeln!(
        w,
        "Period: {} to {}. Store: {}. Jobs: {}. Generated {}.\n",
        when(&r.from),
        when(&r.to),
        cell(&r.store),
        r.jobs.join(", "),
        when(&r.generated_at)
    );
    let _ = writeln!(w, "## Findings\n");
    if r.findings.is_empty() {
        let _ = writeln!(w, "None: every check below passed.\n");
    }
    for f in &r.findings {
        let _ = writeln!(w, "- {}", cell(f));
    }
    backups(w, r);
    drills(w, r);
    credentials(w, r);
    incidents(w, r);
    restores(w, r);
    audit(w, r);
    out
}

/// Per database: backups against schedule and retention, keys, sizes per day.
fn backups(w: &mut String, r: &Report) {
    let _ = writeln!(w, "\n## Backups\n");
    let _ = writeln!(
        w,
        "| job | database | taken / scheduled | failed | missed days | kept | oldest kept | newest kept | retention | Object Lock | keys (id, type, age) |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for d in &r.databases {
        let keys: Vec<String> = d
            .keys
            .iter()
            .map(|k| format!("{} ({}, {:.0} d)", k.key_id, k.kind, k.age_days))
            .collect();
        let missed: Vec<String> = d.missed_days.iter().map(|d| d.to_string()).collect();
        let _ = writeln!(
            w,
            "| {} | {} | {} / {} | {} | {} | {} | {} | {} | {} days: {} | {} | {} |",
            d.job,
            opt(&d.database),
            d.taken,
            d.scheduled,
            d.failed,
            if missed.is_empty() {
                "none".into()
            } else {
                missed.join(", ")
            },
            d.kept,
            d.oldest_kept.as_ref().map_or("-".into(), when),
            d.newest_kept.as_ref().map_or("-".into(), when),
            d.retention_days,
            if d.retention_met { "met" } else { "NOT MET" },
            d.object_lock_days
                .map_or("none".into(), |n| format!("{n} days")),
            keys.join(", ")
        );
    }
    let _ = writeln!(w, "\n### Stored size per day\n");
    let _ = writeln!(
        w,
        "| job | database | date | dump bytes | stored bytes |\n|---|---|---|---|---|"
    );
    for d in &r.databases {
        for s in &d.sizes {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} |",
                d.job,
                opt(&d.database),
                s.date,
                s.plaintext_bytes,
                s.stored_bytes
            );
        }
    }
}

/// Every drill: result, recovery time, rows, the backup's age.
fn drills(w: &mut String, r: &Report) {
    let _ = writeln!(w, "\n## Restore drills (recovery time and point)\n");
    let _ = writeln!(
        w,
        "| when | job | database | backup | result | recovery time (s) | tables | rows | backup age (h) |\n|---|---|---|---|---|---|---|---|---|"
    );
    for d in &r.drills {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            when(&d.at),
            d.job,
            opt(&d.database),
            d.backup_id,
            match &d.detail {
                Some(why) if d.outcome != "ok" => format!("{}: {}", d.outcome, cell(why)),
                _ => d.outcome.clone(),
            },
            d.duration_seconds.map_or("-".into(), |s| format!("{s:.1}")),
            opt(&d.tables),
            opt(&d.rows),
            d.backup_age_seconds as f64 / 3600.0
        );
    }
}

/// Each rotation target against its policy.
fn credentials(w: &mut String, r: &Report) {
    let _ = writeln!(w, "\n## Credentials\n");
    let _ = writeln!(
        w,
        "| target | kind | policy | last rotated | age (days) | status | rotations | failures |\n|---|---|---|---|---|---|---|---|"
    );
    for c in &r.credentials {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            c.target,
            c.kind,
            c.policy,
            c.last_rotated_at.as_ref().map_or("never".into(), when),
            c.age_days.map_or("-".into(), |a| format!("{a:.1}")),
            if c.overdue { "OVERDUE" } else { "ok" },
            c.rotations,
            c.failures
        );
    }
}

/// Each incident and its timeline.
fn incidents(w: &mut String, r: &Report) {
    let _ = writeln!(w, "\n## Incidents\n");
    if r.incidents.is_empty() {
        let _ = writeln!(w, "None in the period.");
    }
    for i in &r.incidents {
        let _ = writeln!(
            w,
            "### Incident {} ({}), by {}: {}\n",
            i.incident_id,
            cell(&i.scope),
            cell(&i.actor),
            if i.complete {
                "complete"
            } else {
                "NOT complete"
            }
        );
        for t in &i.timeline {
            let _ = writeln!(w, "- {} {}", when(&t.at), cell(&t.what));
        }
        let _ = writeln!(w);
    }
}

/// Every restore, then every deletion, with who did it.
fn restores(w: &mut String, r: &Report) {
    let _ = writeln!(w, "\n## Restores\n");
    let _ = writeln!(
        w,
        "| when | who | trigger | job | backup | to | result |\n|---|---|---|---|---|---|---|"
    );
    for x in &r.restores {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} |",
            when(&x.at),
            cell(&x.actor),
            x.trigger,
            x.job,
            x.backup_id,
            cell(&x.to),
            x.outcome
        );
    }
    let _ = writeln!(w, "\n## Deletions\n");
    let _ = writeln!(
        w,
        "| when | who | trigger | job | what | why |\n|---|---|---|---|---|---|"
    );
    for x in &r.deletions {
        let what = match (&x.backup_id, &x.key_id) {
            (Some(id), _) => format!(
                "backup {id} (taken {})",
                x.taken_at.as_ref().map_or("-".into(), when)
            ),
            (_, Some(key)) => format!("key {key}"),
            _ => x.what.clone(),
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} |",
            when(&x.at),
            cell(&x.actor),
            x.trigger,
            opt(&x.job),
            what,
            cell(&x.reason)
        );
    }
}

/// Whether the chain holds, and its head to anchor the next check.
fn audit(w: &mut String, r: &Report) {
    let _ = writeln!(w, "\n## Audit trail\n");
    let a = &r.audit;
    let _ = writeln!(
        w,
        "{}: {} events in all, {} in the period. Head: `{}` (check next period's trail with `coffre audit verify --anchor` and it).",
        match &a.broken {
            None => "Intact".to_string(),
            Some(why) => format!("BROKEN ({})", cell(why)),
        },
        a.events,
        a.events_in_period,
        opt(&a.head)
    );
}
