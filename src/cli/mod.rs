//! The command line: parse (`args`), call the operations (`commands`), print the results as text
//! (`render`) or JSON (`json`), and end a failed run with one line that names the flags that
//! fix it (`hints`).

mod args;
mod audit;
mod commands;
pub mod hints;
mod incident;
mod jobs;
pub mod json;
mod keys;
pub mod render;
mod report;
mod rotate;

use tokio_util::sync::CancellationToken;

pub use args::{Cli, LogFormat};
use args::{Command, ConfigCommand, JobCommand, KeyCommand};
use commands::{RestoreArgs, VerifyArgs};

use crate::config::Config;
use crate::error::{Class, Error, Result};
use crate::ops::Context;
use crate::ops::restore::RestoreOptions;

/// Run the command `cli` names; `stop` is cancelled on SIGTERM or SIGINT.
pub async fn run(cli: &Cli, stop: CancellationToken) -> Result<()> {
    let quiet = cli.quiet;
    match &cli.command {
        Command::Key(KeyCommand::Generate {
            path,
            force,
            x25519,
            output,
        }) => return keys::generate(path, *force, *x25519, quiet, *output),
        Command::Key(KeyCommand::Id { path, output }) => return keys::id(path, *output),
        Command::Completions { shell } => return commands::completions(*shell),
        Command::Man { dir } => return commands::man(dir.as_ref()),
        Command::Config(ConfigCommand::Check { output }) => {
            return commands::config_check(&Config::load(&cli.config)?, *output).await;
        }
        _ => {}
    }
    let mut ctx = Context::open(Config::load(&cli.config)?, stop).await?;
    if matches!(
        cli.command,
        Command::Job(JobCommand::Run { .. }) | Command::Run { .. }
    ) {
        ctx.trigger = "schedule";
    }
    run_on_store(cli, &ctx).await
}

/// The commands that act on the store.
async fn run_on_store(cli: &Cli, ctx: &Context) -> Result<()> {
    let quiet = cli.quiet;
    match &cli.command {
        Command::Backup { jobs, all, output } => commands::backup(ctx, jobs, *all, *output).await,
        Command::Restore {
            pick,
            to,
            force,
            clean,
            create,
            no_owner,
            keys,
            output,
        } => {
            let options = RestoreOptions {
                clean: *clean,
                create: *create,
                no_owner: *no_owner,
                progress: false,
            };
            let args = RestoreArgs {
                pick,
                to,
                force: *force,
                options,
                keys,
            };
            commands::restore(ctx, args, quiet, *output).await
        }
        Command::Verify {
            id,
            latest: _,
            all,
            job,
            database,
            restore,
            restore_server,
            keys,
            output,
        } => {
            let args = VerifyArgs {
                id,
                all: *all,
                job,
                database,
                drill: *restore,
                drill_server: restore_server,
            };
            commands::verify(ctx, args, keys, quiet, *output).await
        }
        Command::List { job, output } => commands::list(ctx, job.as_deref(), *output).await,
        Command::Prune {
            jobs,
            all,
            dry_run,
            output,
        } => commands::prune(ctx, jobs, *all, *dry_run, *output).await,
        Command::Key(key) => run_key(ctx, key).await,
        Command::Job(JobCommand::Run { name, output }) => jobs::run_one(ctx, name, *output).await,
        Command::Job(JobCommand::List { output }) => jobs::list(ctx, *output).await,
        Command::Run { output } => jobs::daemon(ctx, *output).await,
        Command::Rotate(args) => rotate::run(ctx, args).await,
        Command::Incident(command) => incident::run(ctx, command).await,
        Command::Audit(command) => audit::run(ctx, command).await,
        Command::Report(args) => report::run(ctx, args).await,
        Command::Config(_) | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("run without a store")
        }
    }
}

async fn run_key(ctx: &Context, command: &KeyCommand) -> Result<()> {
    match command {
        KeyCommand::List { job, output } => keys::list(ctx, job.as_deref(), *output).await,
        KeyCommand::Add {
            new,
            job,
            keys,
            output,
        } => keys::add(ctx, new, job.as_deref(), keys, *output).await,
        KeyCommand::Remove {
            key_id,
            passphrase_env,
            job,
            output,
        } => {
            let (id, var) = (key_id.as_deref(), passphrase_env.as_deref());
            keys::remove(ctx, id, var, job.as_deref(), *output).await
        }
        KeyCommand::Rotate {
            new,
            remove,
            job,
            keys,
            output,
        } => keys::rotate(ctx, new, remove, job.as_deref(), keys, *output).await,
        KeyCommand::Generate { .. } | KeyCommand::Id { .. } => {
            unreachable!("run without a store")
        }
    }
}

/// Log to stderr: text (coloured only on a terminal) or JSON; `COFFRE_LOG` filters.
pub fn init_logging(format: LogFormat, quiet: bool) {
    use std::io::IsTerminal;
    // kube logs each failed request at error level; coffre reports the failure itself, once.
    let default = match quiet {
        true => "error,kube_client=off",
        false => "warn,coffre=info,kube_client=off",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFRE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Print the error a run ended with (one line, or one JSON object with JSON logs) and return
/// its exit code; `signal` is the signal that interrupted the run, if one did.
pub fn report_failure(cli: &Cli, e: &crate::error::Error, signal: Option<i32>) -> i32 {
    let code = hints::exit_code(e, signal);
    match cli.log_format {
        LogFormat::Text => eprintln!("{}", hints::error_line(e)),
        LogFormat::Json => {
            let hint = e.remedy().map(hints::flag_for);
            eprintln!("{}", json::error(e, code, hint));
        }
    }
    code
}

/// One failure is the run's error, printed once (by `main`). Several are each logged, and the
/// run fails with a summary in the class of the worst (a stop for a person, integrity, first;
/// else the first failure's).
fn fail_with_all(mut failures: Vec<Error>, what: &str) -> Result<()> {
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => {
            for e in &failures {
                tracing::error!("{}", hints::error_line(e));
            }
            let class = match failures.iter().any(|e| e.class() == Class::Integrity) {
                true => Class::Integrity,
                false => failures[0].class(),
            };
            Err(Error::new(
                class,
                format!("{n} {what} failed (each is listed above)"),
            ))
        }
    }
}
