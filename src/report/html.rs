//! The report as one self-contained HTML page: inline style and inline SVG charts, nothing
//! fetched from anywhere (no script, font or image), so it opens the same offline, attached
//! to an audit file, years later. Charts where a person would rather look than read: backup
//! size per day, drill duration per day, credential age against policy.

use std::fmt::Write;

use super::{CredentialEvidence, DatabaseEvidence, DrillRecord, Report, markdown};

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:1200px}\
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}\
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}\
th{background:#f0f0f0}.bad{color:#b00020;font-weight:bold}.ok{color:#1b7f3a}\
.findings li{color:#b00020}svg.chart{display:block;margin:.5em 0 1.5em;background:#fafafa;border:1px solid #ddd}\
svg text{font-family:sans-serif;font-size:11px;fill:#333}";

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 30.0;

fn bytes(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

/// A bar chart: one group of bars per label, one bar per series value (class names the
/// series), a y axis labelled with `fmt` at the top value.
fn bar_chart(
    name: &str,
    title: &str,
    labels: &[String],
    series: &[(&str, &str, Vec<f64>)],
    fmt: impl Fn(f64) -> String,
) -> String {
    let max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let plot_w = WIDTH - LEFT - 10.0;
    let plot_h = HEIGHT - BOTTOM - 25.0;
    let group = plot_w / labels.len().max(1) as f64;
    let bar = (group * 0.8 / series.len().max(1) as f64).clamp(1.0, 24.0);
    let mut svg = format!(
        "<svg class=\"chart\" data-chart=\"{name}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>\
<text x=\"{LEFT}\" y=\"15\">{t}</text>\
<line x1=\"{LEFT}\" y1=\"25\" x2=\"{LEFT}\" y2=\"{y0}\" stroke=\"#888\"/><line x1=\"{LEFT}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#888\"/>\
<text x=\"4\" y=\"30\">{top}</text><text x=\"4\" y=\"{y0}\">0</text>",
        t = esc(title),
        y0 = HEIGHT - BOTTOM,
        x1 = WIDTH - 10.0,
        top = esc(&fmt(max)),
    );
    for (i, label) in labels.iter().enumerate() {
        let x0 = LEFT + group * i as f64 + group * 0.1;
        for (j, (class, color, values)) in series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0.0);
            let h = (v / max * plot_h).max(if v > 0.0 { 1.0 } else { 0.0 });
            let _ = write!(
                svg,
                "<rect class=\"bar {class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{color}\"><title>{}: {}</title></rect>",
                x0 + bar * j as f64,
                HEIGHT - BOTTOM - h,
                esc(label),
                esc(&fmt(v))
            );
        }
        // Every label when they fit (about 44 px each); else every few.
        let every = ((labels.len() as f64 * 44.0 / plot_w).ceil() as usize).max(1);
        if i % every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{x0:.1}\" y=\"{}\">{}</text>",
                HEIGHT - BOTTOM + 14.0,
                esc(label)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn size_chart(d: &DatabaseEvidence) -> String {
    let labels: Vec<String> = d
        .sizes
        .iter()
        .map(|s| s.date.format("%m-%d").to_string())
        .collect();
    let dump = d.sizes.iter().map(|s| s.plaintext_bytes as f64).collect();
    let stored = d.sizes.iter().map(|s| s.stored_bytes as f64).collect();
    let name = match &d.database {
        Some(db) => format!("{}/{db}", d.job),
        None => d.job.clone(),
    };
    bar_chart(
        "backup-size",
        &format!("{name}: backup size per day (light: dump, dark: stored new)"),
        &labels,
        &[("dump", "#9ecae1", dump), ("stored", "#08519c", stored)],
        bytes,
    )
}

fn drill_chart(drills: &[DrillRecord]) -> String {
    let labels: Vec<String> = drills
        .iter()
        .map(|d| d.at.format("%m-%d").to_string())
        .collect();
    let passed = drills
        .iter()
        .map(|d| {
            if d.outcome == "ok" {
                d.duration_seconds.unwrap_or(0.0)
            } else {
                0.0
            }
        })
        .collect();
    // A failed drill has no duration: a full-height red bar marks it.
    let top = drills
        .iter()
        .filter_map(|d| d.duration_seconds)
        .fold(1.0_f64, f64::max);
    let failed = drills
        .iter()
        .map(|d| if d.outcome == "ok" { 0.0 } else { top })
        .collect();
    bar_chart(
        "drill-duration",
        "Restore drills: recovery time per drill (red: failed)",
        &labels,
        &[("passed", "#31a354", passed), ("failed", "#de2d26", failed)],
        |s| format!("{s:.1} s"),
    )
}

/// Horizontal bars: each credential's age, with its policy's limit marked.
fn credential_chart(credentials: &[CredentialEvidence]) -> String {
    let row = 24.0;
    let height = 35.0 + row * credentials.len() as f64;
    let label_w = 180.0;
    let plot_w = WIDTH - label_w - 190.0;
    let max = credentials
        .iter()
        .map(|c| c.age_days.unwrap_or(c.policy_days * 1.5).max(c.policy_days))
        .fold(1.0_f64, f64::max);
    let mut svg = format!(
        "<svg class=\"chart\" data-chart=\"credential-age\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"Credential age against policy\"><title>Credential age against policy</title>\
<text x=\"{label_w}\" y=\"15\">Credential age (days) against policy (black line); red: overdue</text>"
    );
    for (i, c) in credentials.iter().enumerate() {
        let y = 25.0 + row * i as f64;
        let age = c.age_days.unwrap_or(max);
        let w = age / max * plot_w;
        let limit = label_w + c.policy_days / max * plot_w;
        let (class, color) = match c.overdue {
            true => ("overdue", "#de2d26"),
            false => ("within", "#31a354"),
        };
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"{:.1}\">{}</text><rect class=\"bar {class}\" x=\"{label_w}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{}: {} days, policy {:.0}</title></rect>\
<line class=\"policy\" x1=\"{limit:.1}\" y1=\"{:.1}\" x2=\"{limit:.1}\" y2=\"{:.1}\" stroke=\"#000\" stroke-width=\"2\"/>\
<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            y + 13.0,
            esc(&c.target),
            row - 6.0,
            esc(&c.target),
            c.age_days
                .map_or("never rotated".into(), |a| format!("{a:.1}")),
            c.policy_days,
            y - 2.0,
            y + row - 4.0,
            label_w + w.max(limit - label_w) + 6.0,
            y + 13.0,
            c.age_days.map_or("never rotated".into(), |a| format!(
                "{a:.1} d (policy {:.0} d)",
                c.policy_days
            )),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Markdown tables become HTML tables; the rest become paragraphs and lists.
fn tables_from_markdown(md: &str) -> String {
    let mut out = String::new();
    let mut in_table = false;
    let mut in_list = false;
    for line in md.lines() {
        let is_row = line.starts_with('|');
        if in_table && !is_row {
            out.push_str("</table>\n");
            in_table = false;
        }
        if in_list && !line.starts_with("- ") {
            out.push_str("</ul>\n");
            in_list = false;
        }
        if is_row {
            if line.starts_with("|---") {
                continue;
            }
            let cells: Vec<String> = line
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().replace("\\|", "|"))
                .collect();
            let tag = if in_table { "td" } else { "th" };
            if !in_table {
                out.push_str("<table>\n");
                in_table = true;
            }
            out.push_str("<tr>");
            for c in cells {
                let flagged =
                    c.contains("OVERDUE") || c.contains("NOT MET") || c.starts_with("failed");
                let class = match tag == "td" && flagged {
                    true => " class=\"bad\"",
                    false => "",
                };
                let _ = write!(out, "<{tag}{class}>{}</{tag}>", esc(&c));
            }
            out.push_str("</tr>\n");
        } else if let Some(h) = line.strip_prefix("### ") {
            let _ = writeln!(out, "<h3>{}</h3>", esc(h));
        } else if let Some(h) = line.strip_prefix("## ") {
            let _ = writeln!(
                out,
                "<h2 id=\"{}\">{}</h2>",
                esc(&h.to_lowercase().replace(' ', "-")),
                esc(h)
            );
        } else if let Some(h) = line.strip_prefix("# ") {
            let _ = writeln!(out, "<h1>{}</h1>", esc(h));
        } else if let Some(item) = line.strip_prefix("- ") {
            if !in_list {
                out.push_str("<ul class=\"findings\">\n");
                in_list = true;
            }
            let _ = writeln!(out, "<li>{}</li>", esc(item));
        } else if !line.trim().is_empty() {
            let _ = writeln!(out, "<p>{}</p>", esc(line));
        }
    }
    if in_table {
        out.push_str("</table>\n");
    }
    if in_list {
        out.push_str("</ul>\n");
    }
    out
}

pub fn render(r: &Report) -> String {
    let body = tables_from_markdown(&markdown::render(r));
    let mut charts = String::from("<h2 id=\"charts\">Charts</h2>\n");
    for d in r.databases.iter().filter(|d| !d.sizes.is_empty()) {
        charts.push_str(&size_chart(d));
    }
    if !r.drills.is_empty() {
        charts.push_str(&drill_chart(&r.drills));
    }
    if !r.credentials.is_empty() {
        charts.push_str(&credential_chart(&r.credentials));
    }
    // The charts go after the findings, before the tables they summarise.
    let at = body.find("<h2 id=\"backups\">").unwrap_or(body.len());
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>coffre compliance report {} to {}</title><style>{STYLE}</style></head><body>\n{}{charts}{}</body></html>\n",
        r.from.date_naive(),
        r.to.date_naive(),
        &body[..at],
        &body[at..]
    )
}
