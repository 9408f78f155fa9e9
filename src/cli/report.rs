//! `coffre report`: gather the evidence for a period and print or write it.

use super::args::{ReportArgs, ReportFormat};
use crate::error::{Error, Result};
use crate::ops::Context;
use crate::ops::report::{Scope, gather};
use crate::report::{self, Report};

pub async fn run(ctx: &Context, args: &ReportArgs) -> Result<()> {
    let scope = Scope {
        from: args.since,
        to: args.until.unwrap_or_else(crate::clock::now),
        jobs: args.jobs.clone(),
    };
    if scope.from >= scope.to {
        return Err(Error::config(format!(
            "--since {} is not before --until {}: give a period that ends after it starts",
            scope.from, scope.to
        )));
    }
    let report = gather(&ctx.config, &ctx.store, &scope).await?;
    let format = match args.json {
        true => ReportFormat::Json,
        false => args.format,
    };
    let text = render(&report, format);
    match &args.output {
        None => print!("{text}"),
        Some(path) => {
            std::fs::write(path, text).map_err(|e| {
                Error::target(format!("writing the report to {}: {e}", path.display()))
            })?;
            eprintln!(
                "wrote the report ({} findings) to {}",
                report.findings.len(),
                path.display()
            );
        }
    }
    Ok(())
}

pub fn render(report: &Report, format: ReportFormat) -> String {
    match format {
        ReportFormat::Markdown => report::markdown::render(report),
        ReportFormat::Html => report::html::render(report),
        ReportFormat::Json => format!("{}\n", json(report)),
    }
}

/// The report as the documented JSON object (docs/JSON.md `report`).
pub fn json(report: &Report) -> serde_json::Value {
    super::json::object(
        "report",
        serde_json::to_value(report).expect("a report serializes"),
    )
}
