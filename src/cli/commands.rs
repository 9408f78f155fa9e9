//! One function per command: read what it needs, call the operation, print the result.

use serde_json::Value;
use std::io::IsTerminal;
use std::path::PathBuf;

use super::args::{KeyArgs, Output, PickArgs};
use super::{json, render};
use crate::config::{Config, Job};
use crate::crypto::keys::Secret;
use crate::error::{Error, Remedy, Result};
use crate::ops::drill::{self, DrillServer};
use crate::ops::keys;
use crate::ops::pick::{check_job, pick_backup, pick_jobs};
use crate::ops::restore::{self, RestoreOptions, Target};
use crate::ops::verify::{self, Outcome};
use crate::ops::{Context, backup, config_check, evidence, prune};

/// Print one result: a text line (or block) for people, a JSON object for programs.
pub fn emit(output: Output, text: impl FnOnce() -> String, value: impl FnOnce() -> Value) {
    match output.json {
        true => println!("{}", value()),
        false => println!("{}", text().trim_end()),
    }
}

/// A progress bar only for a person watching a terminal.
fn show_progress(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// The configured keys plus any given on the command line; errors name the flag.
pub(super) async fn keys_for_opening(config: &Config, extra: &KeyArgs) -> Result<Vec<Secret>> {
    let mut loaded = Vec::new();
    for (flag, key) in extra.key_refs() {
        let secret = key.load(config.encryption.argon2, &config.secrets).await;
        loaded.push(secret.map_err(|e| e.context(flag))?);
    }
    config
        .encryption
        .keys_with(loaded, &config.secrets)
        .await
        .map_err(|e| e.with_remedy(Remedy::OtherKey))
}

pub async fn backup(ctx: &Context, jobs: &[String], all: bool, output: Output) -> Result<()> {
    let jobs = pick_jobs(&ctx.config, jobs, all)?;
    let recipients = match ctx.config.encryption.load_keys(&ctx.config.secrets).await {
        Ok(recipients) => recipients,
        Err(e) => return Err(keys::offer_new_key(e, Some(&ctx.store)).await),
    };
    let mut failures = Vec::new();
    let outcomes = backup::backup_jobs(ctx, &jobs, &recipients).await;
    evidence::backed_up_all(&ctx.audit(), &outcomes).await;
    for outcome in outcomes {
        for made in &outcome.backups {
            emit(
                output,
                || render::backup_made(made),
                || json::backup_made(made),
            );
        }
        failures.extend(outcome.failures);
        match outcome.prune {
            Some(Ok(pruned)) => failures.extend(print_prune(pruned, output)),
            Some(Err(e)) => failures.push(e),
            None => {}
        }
    }
    super::fail_with_all(failures, "backups")
}

/// What `restore` was asked to do.
pub struct RestoreArgs<'a> {
    pub pick: &'a PickArgs,
    pub to: &'a str,
    /// Replace an existing target file.
    pub force: bool,
    pub options: RestoreOptions,
    pub keys: &'a KeyArgs,
}

pub async fn restore(
    ctx: &Context,
    args: RestoreArgs<'_>,
    quiet: bool,
    output: Output,
) -> Result<()> {
    let secrets = keys_for_opening(&ctx.config, args.keys).await?;
    let target = Target::parse(args.to, args.force)?;
    let backup = pick_backup(&ctx.config, &ctx.store, &args.pick.pick()).await?;
    let options = RestoreOptions {
        progress: show_progress(quiet),
        ..args.options
    };
    let restored = restore::restore(&ctx.store, &backup, &secrets, &target, options).await;
    evidence::restored(&ctx.audit(), &backup, &target, &restored).await;
    let summary = restored?;
    // stdout may be the restored data itself: the report goes to stderr then.
    let shown = target.describe();
    match (output.json, matches!(target, Target::Stdout)) {
        (true, false) => println!("{}", json::restored(&backup, &shown, &summary)),
        (true, true) => eprintln!("{}", json::restored(&backup, &shown, &summary)),
        (false, _) if !quiet => eprintln!("{}", render::restored(&backup, &shown, &summary)),
        (false, _) => {}
    }
    Ok(())
}

/// What `verify` was asked to check.
pub struct VerifyArgs<'a> {
    pub id: &'a Option<String>,
    pub all: bool,
    pub job: &'a Option<String>,
    pub database: &'a Option<String>,
    pub drill: bool,
    pub drill_server: &'a Option<String>,
}

pub async fn verify(
    ctx: &Context,
    args: VerifyArgs<'_>,
    keys: &KeyArgs,
    quiet: bool,
    output: Output,
) -> Result<()> {
    let secrets = keys_for_opening(&ctx.config, keys).await?;
    if args.all {
        return verify_all(ctx, &secrets, args.job.as_deref(), args.drill, output).await;
    }
    let pick = PickArgs {
        id: args.id.clone(),
        latest: args.id.is_none(),
        job: args.job.clone(),
        database: args.database.clone(),
    };
    let backup = pick_backup(&ctx.config, &ctx.store, &pick.pick()).await?;
    let progress = show_progress(quiet);
    let audit = ctx.audit();
    if !args.drill {
        let verified = restore::verify(&ctx.store, &backup, &secrets, progress).await;
        let result = verified.as_ref().map(|_| ());
        evidence::checked(&audit, &backup.location, Some(&backup), None, result, false).await;
        let summary = verified?;
        emit(
            output,
            || render::verified(&backup, &summary),
            || json::verified(&backup, &summary, None),
        );
        return Ok(());
    }
    let server =
        DrillServer::for_backup(&ctx.config, &backup, args.drill_server.as_deref()).await?;
    let drilled = drill::drill(&ctx.store, &backup, &secrets, &server, progress).await;
    let (report, result) = match &drilled {
        Ok((_, report)) => (Some(report), Ok(())),
        Err(e) => (None, Err(e)),
    };
    evidence::checked(
        &audit,
        &backup.location,
        Some(&backup),
        report,
        result,
        true,
    )
    .await;
    let (summary, report) = drilled?;
    emit(
        output,
        || render::drilled(&backup, &report),
        || json::verified(&backup, &summary, Some(&report)),
    );
    Ok(())
}

async fn verify_all(
    ctx: &Context,
    secrets: &[Secret],
    job: Option<&str>,
    drill: bool,
    output: Output,
) -> Result<()> {
    let report = verify::verify_all(&ctx.config, &ctx.store, secrets, job, drill).await?;
    evidence::checked_all(&ctx.audit(), &report, drill).await;
    for checked in &report.checked {
        let (r, outcome) = (&checked.location, &checked.outcome);
        match (outcome, &checked.backup) {
            (Outcome::Failed(e), _) if !output.json => {
                tracing::error!("backup {}: {e}", r.id)
            }
            (Outcome::Verified(s), Some(b)) => emit(
                output,
                || render::verified(b, s),
                || json::verified(b, s, None),
            ),
            (Outcome::Drilled(s, d), Some(b)) => emit(
                output,
                || render::drilled(b, d),
                || json::verified(b, s, Some(d)),
            ),
            _ => emit(
                output,
                || render::not_verified(r, outcome),
                || json::not_verified(r, outcome),
            ),
        }
    }
    let summary = render::verify_summary(&report);
    emit(output, || summary.clone(), || json::verify_summary(&report));
    match report.failure_class() {
        None => Ok(()),
        Some(class) => Err(Error::new(class, summary)),
    }
}

/// `list`: the backups of `job` (or all).
pub async fn list(ctx: &Context, job: Option<&str>, output: Output) -> Result<()> {
    check_job(&ctx.config, job)?;
    let listing = ctx.store.list(job).await?;
    match output.json {
        true => {
            let keys = keys::stanzas_of(&ctx.store, &listing).await;
            json::listing(&listing, &keys)
                .iter()
                .for_each(|item| println!("{item}"))
        }
        false => print!("{}", render::listing(&listing)),
    }
    Ok(())
}

/// Print a prune's plan and what it did; returns the failed deletes.
fn print_prune(pruned: prune::PruneOutcome, output: Output) -> Vec<Error> {
    let items: Vec<_> = pruned.plans.iter().flat_map(|p| p.items()).collect();
    // Per job, what happens to the packs and sessions of its v2 backups, when anything does.
    let shared: Vec<_> = pruned
        .plans
        .iter()
        .filter_map(|p| Some((&p.job, p.shared.as_ref().filter(|s| !s.is_empty())?)))
        .collect();
    let dry_run = pruned.report.is_none();
    match output.json {
        true => {
            for item in &items {
                println!("{}", json::plan_item(item, dry_run));
            }
            for (job, plan) in &shared {
                println!("{}", json::shared_plan(job, plan, dry_run));
            }
            println!("{}", json::prune_summary(pruned.report.as_ref()));
        }
        false => {
            print!("{}", render::prune_plan(&items));
            for (job, plan) in &shared {
                println!("{}", render::shared_plan(job, plan));
            }
            if let Some(done) = &pruned.report {
                println!("{}", render::prune_done(done));
            }
        }
    }
    pruned.report.map(|d| d.failures).unwrap_or_default()
}

pub async fn prune(
    ctx: &Context,
    jobs: &[String],
    all: bool,
    dry_run: bool,
    output: Output,
) -> Result<()> {
    let jobs: Vec<&Job> = pick_jobs(&ctx.config, jobs, all)?;
    let pruned = prune::prune(&ctx.store, &jobs, crate::clock::now(), dry_run).await?;
    evidence::pruned(&ctx.audit(), &pruned).await;
    let failures = print_prune(pruned, output);
    if failures.is_empty() {
        return Ok(());
    }
    for e in &failures {
        tracing::error!("{}", super::hints::error_line(e));
    }
    Err(Error::store(format!(
        "{} failed (listed above); what was deleted is reported, nothing else was touched",
        render::count(failures.len() as u64, "delete")
    )))
}

pub async fn config_check(config: &Config, output: Output) -> Result<()> {
    let report = config_check::check(config).await?;
    emit(
        output,
        || render::config_report(&report),
        || json::config_report(&report),
    );
    Ok(())
}

/// Write the manual pages: to stdout, or one file per command into `dir`.
pub fn man(dir: Option<&PathBuf>) -> Result<()> {
    let command = <super::Cli as clap::CommandFactory>::command();
    let io = |e: std::io::Error| Error::target(format!("writing the manual: {e}"));
    match dir {
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .map_err(io),
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(command, dir))
            .map_err(io),
    }
}

pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut command = <super::Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "coffre", &mut std::io::stdout());
    Ok(())
}
