//! The `coffre` binary: runtime, signals and exit codes; everything else is in `coffre::cli`.

use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use coffre::cli::{self, Cli};
use coffre::error::{Error, Result};

use coffre::ops::STOP_GRACE;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.log_format, cli.quiet);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            let e = Error::internal(format!("cannot start the runtime: {e}"));
            return exit(cli::report_failure(&cli, &e, None));
        }
    };
    let result = runtime.block_on(run_until_signal(&cli));
    // Do not wait for blocking work still running (a key derivation of an interrupted
    // restore): the process is done.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((e, signal)) => exit(cli::report_failure(&cli, &e, signal)),
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Run the command; on SIGTERM or SIGINT, let a backup abort its uploads (within
/// `STOP_GRACE`) and drop anything else at once (a partial restore leaves no file). The
/// error comes back with the number of the signal that stopped the run, if one did.
async fn run_until_signal(cli: &Cli) -> std::result::Result<(), (Error, Option<i32>)> {
    let stop = CancellationToken::new();
    let work = cli::run(cli, stop.clone());
    tokio::pin!(work);
    let (name, number) = tokio::select! {
        result = &mut work => return result.map_err(|e| (e, None)),
        signal = shutdown_signal() => signal,
    };
    let interrupted = |why: String| (Error::interrupted(why), Some(number));
    if !cli.command.stops_gracefully() {
        return Err(interrupted(format!("interrupted by {name}")));
    }
    stop.cancel();
    match tokio::time::timeout(STOP_GRACE, work).await {
        Ok(result) => {
            let outcome: Result<()> = result;
            match outcome {
                Ok(()) => Err(interrupted(format!("interrupted by {name}"))),
                Err(e) => Err(interrupted(format!(
                    "interrupted by {name}: {}",
                    e.message()
                ))),
            }
        }
        Err(_) => Err(interrupted(format!(
            "interrupted by {name}; cleanup did not finish within {STOP_GRACE:?}"
        ))),
    }
}

/// The first SIGTERM or SIGINT: its name and number.
async fn shutdown_signal() -> (&'static str, i32) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => ("SIGTERM", libc::SIGTERM),
        _ = int.recv() => ("SIGINT", libc::SIGINT),
    }
}
