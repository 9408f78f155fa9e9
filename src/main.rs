//! The `coffre` command line: parse, load config, dispatch, map errors to exit codes.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

use coffre::config::{Config, DEFAULT_CONFIG_PATH, Job, KeyRef};
use coffre::crypto::keys::{self, Identity, Secret, SymmetricKey};
use coffre::error::{Error, Result};
use coffre::keyring::{self, Removal};
use coffre::ops::{self, verify::Outcome};
use coffre::report;
use coffre::restore::{DrillServer, RestoreOptions, Target};
use coffre::store::{Backup, Store};
use coffre::{backup, prune, restore};

#[derive(Parser)]
#[command(
    name = "coffre",
    version,
    about = "Encrypted database backups and credential rotation for Kubernetes",
    after_help = "Exit codes: 0 ok, 1 internal, 2 usage, 3 config, 4 auth, 5 source, 6 store, 7 integrity, 8 restore target.\n\nExample:\n  coffre --config config/coffre.toml backup quickstart"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "COFFRE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Only print errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Back up one or more jobs now.
    #[command(after_help = "Example:\n  coffre backup quickstart\n  coffre backup --all --json")]
    Backup {
        /// Jobs to back up.
        #[arg(required_unless_present = "all")]
        jobs: Vec<String>,
        /// Back up every configured job.
        #[arg(long, conflicts_with = "jobs")]
        all: bool,
        /// Print one JSON object per backup.
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup to a file or stdout.
    #[command(
        after_help = "Examples:\n  coffre restore 3f2a9c1e --to restored.dump\n  coffre restore --latest --job app-db --to postgres://postgres@db:5432/app_copy --create\n  coffre restore 3f2a9c1e --to mariadb://root@127.0.0.1:3306/shop_copy --create\n  coffre restore --latest --job files --to - > files.tar\n\nDatabase passwords come from PGPASSWORD / MYSQL_PWD (or the URL, which is visible in the process list)."
    )]
    Restore {
        #[command(flatten)]
        pick: Pick,
        /// Where to write: a file path, '-' for stdout, postgres://user@host:port/db or mariadb://user@host:port/db.
        #[arg(long)]
        to: String,
        /// Replace the target file if it exists.
        #[arg(long)]
        force: bool,
        /// Database targets: restore into a non-empty database, replacing what the backup holds.
        #[arg(long)]
        clean: bool,
        /// Database targets: create the database if it does not exist.
        #[arg(long)]
        create: bool,
        /// Database targets: skip ownership and privileges (for servers without the original roles).
        #[arg(long)]
        no_owner: bool,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Prove a backup restores: download, decrypt and check everything, write nothing.
    #[command(
        after_help = "Examples:\n  coffre verify --latest --job quickstart\n  coffre verify 3f2a9c1e --json\n  coffre verify --latest --job app-db --restore    # drill into a scratch database on the job's server"
    )]
    Verify {
        /// Backup id, or a unique prefix of one (see 'coffre list').
        #[arg(required_unless_present_any = ["latest", "all"], conflicts_with_all = ["latest", "all"])]
        id: Option<String>,
        /// The newest complete backup (of --job, needed when several jobs are configured).
        #[arg(long, conflicts_with = "all")]
        latest: bool,
        /// Every complete backup (of --job, or of every job), with a one-line summary.
        #[arg(long)]
        all: bool,
        /// Job of the backup.
        #[arg(long)]
        job: Option<String>,
        /// With --latest, for jobs that dump several databases: which one.
        #[arg(long, requires = "latest")]
        database: Option<String>,
        /// Also restore into a scratch database (created and dropped by coffre) and count tables and rows.
        #[arg(long)]
        restore: bool,
        /// Server for --restore (postgres://user@host:port/db or mariadb://...); default: the job's source server.
        #[arg(long, requires = "restore")]
        restore_server: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List complete backups.
    #[command(after_help = "Examples:\n  coffre list\n  coffre list --job app-db --json")]
    List {
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete backups the jobs' retention policies no longer keep.
    #[command(
        after_help = "Examples:\n  coffre prune --all --dry-run    # print the plan and the rule that keeps each backup\n  coffre prune app-db"
    )]
    Prune {
        /// Jobs to prune.
        #[arg(required_unless_present = "all")]
        jobs: Vec<String>,
        /// Prune every configured job.
        #[arg(long, conflicts_with = "jobs")]
        all: bool,
        /// Print the plan, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create keys and manage the keys of stored backups.
    #[command(
        subcommand,
        after_help = "Examples:\n  coffre key generate /etc/coffre/backup.key\n  coffre key list\n  coffre key rotate --new-key-file new.key --remove 3a1f9c0e5b7d2a44"
    )]
    Key(KeyCommand),
    /// Check the configuration.
    #[command(subcommand, after_help = "Example:\n  coffre config check")]
    Config(ConfigCommand),
}

#[derive(Args)]
struct Pick {
    /// Backup id, or a unique prefix of one (see 'coffre list').
    #[arg(required_unless_present = "latest", conflicts_with = "latest")]
    id: Option<String>,
    /// The newest complete backup (of --job, needed when several jobs are configured).
    #[arg(long)]
    latest: bool,
    /// Job of the backup.
    #[arg(long)]
    job: Option<String>,
    /// With --latest, for jobs that dump several databases: which one ('postgres-globals' for the globals).
    #[arg(long, requires = "latest")]
    database: Option<String>,
}

/// Extra keys to open backups with, on top of the configured ones. Secrets are never arguments.
#[derive(Args)]
struct KeyArgs {
    /// A key file.
    #[arg(long)]
    key_file: Vec<PathBuf>,
    /// Name of an environment variable holding a passphrase.
    #[arg(long)]
    passphrase_env: Vec<String>,
    /// A file holding a passphrase.
    #[arg(long)]
    passphrase_file: Vec<PathBuf>,
    /// An x25519 identity file (opens backups written to its recipient).
    #[arg(long)]
    identity_file: Vec<PathBuf>,
}

/// The key to add: exactly one.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct NewKey {
    /// A key file (create one with 'coffre key generate').
    #[arg(long)]
    new_key_file: Option<PathBuf>,
    /// Name of an environment variable holding a new passphrase.
    #[arg(long)]
    new_passphrase_env: Option<String>,
    /// An x25519 recipient (coffre-x25519-v1:...).
    #[arg(long)]
    new_recipient: Option<String>,
}

impl NewKey {
    fn key_ref(&self) -> KeyRef {
        KeyRef {
            file: self.new_key_file.clone(),
            passphrase_env: self.new_passphrase_env.clone(),
            recipient: self.new_recipient.clone(),
            ..KeyRef::default()
        }
    }
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Write a new random 32-byte key to a file (mode 0600).
    #[command(after_help = "Example:\n  coffre key generate /etc/coffre/backup.key")]
    Generate {
        path: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
        /// Make an x25519 identity instead, and print its public recipient: a job configured
        /// with only the recipient can back up but not restore (write-only backups).
        #[arg(long)]
        x25519: bool,
    },
    /// Print the key id of a key or identity file (the id manifests list).
    #[command(after_help = "Example:\n  coffre key id /etc/coffre/backup.key")]
    Id { path: PathBuf },
    /// Show which keys open which backups.
    #[command(after_help = "Example:\n  coffre key list --job app-db")]
    List {
        #[arg(long)]
        job: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Add a key to every backup (rewrites manifests only, never data).
    #[command(after_help = "Example:\n  coffre key add --new-key-file /etc/coffre/new.key")]
    Add {
        #[command(flatten)]
        new: NewKey,
        #[arg(long)]
        job: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Remove a key from every backup; refused where it is a backup's only key.
    #[command(
        after_help = "Examples:\n  coffre key remove 3a1f9c0e5b7d2a44\n  coffre key remove --passphrase-env OLD_PASSPHRASE"
    )]
    Remove {
        /// Key id, as 'coffre key list' shows it.
        #[arg(required_unless_present = "passphrase_env")]
        key_id: Option<String>,
        /// Remove the passphrase stanzas this passphrase opens instead.
        #[arg(long, conflicts_with = "key_id")]
        passphrase_env: Option<String>,
        #[arg(long)]
        job: Option<String>,
    },
    /// Add a new key to every backup, then remove an old one: resumable, never leaves a
    /// backup without a working key.
    #[command(
        after_help = "Example:\n  coffre key rotate --new-key-file /etc/coffre/2027.key --remove 3a1f9c0e5b7d2a44"
    )]
    Rotate {
        #[command(flatten)]
        new: NewKey,
        /// Key id to remove once the new key is in every backup.
        #[arg(long)]
        remove: String,
        #[arg(long)]
        job: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load the config and every job file, read every key, and report problems.
    #[command(after_help = "Example:\n  coffre --config config/coffre.toml config check")]
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.quiet);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&Error::internal(format!("cannot start the runtime: {e}"))),
    };
    let stop = CancellationToken::new();
    let result = runtime.block_on(async {
        let work = dispatch(&cli, &stop);
        tokio::pin!(work);
        tokio::select! {
            result = &mut work => result,
            signal = shutdown_signal() => {
                // A backup aborts its upload and returns; other commands clean up as their
                // futures drop (partial restore files are removed).
                if !matches!(cli.command, Command::Backup { .. }) {
                    return Err(Error::internal(format!("interrupted by {signal}")));
                }
                stop.cancel();
                match tokio::time::timeout(STOP_GRACE, work).await {
                    Ok(result) => result.map_err(|e| e.context(format!("interrupted by {signal}"))),
                    Err(_) => Err(Error::internal(format!(
                        "interrupted by {signal}; cleanup did not finish within {STOP_GRACE:?}"
                    ))),
                }
            }
        }
    });
    // Do not wait for blocking work still running (a key derivation of an interrupted
    // restore): the process is done.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("coffre: {e}");
    ExitCode::from(e.class().exit_code() as u8)
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

fn init_logging(format: LogFormat, quiet: bool) {
    let default = if quiet { "error" } else { "warn,coffre=info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFRE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// How long a stopping backup may take to abort its upload.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

async fn dispatch(cli: &Cli, stop: &CancellationToken) -> Result<()> {
    match &cli.command {
        Command::Key(KeyCommand::Generate {
            path,
            force,
            x25519: true,
        }) => {
            let identity = Identity::generate();
            identity.write_new_file(path, *force)?;
            let recipient = identity.recipient();
            println!("{}", recipient.to_text());
            eprintln!(
                "wrote identity {} to {}: keep it offline; configure jobs with the recipient above ({{ recipient = \"...\" }}) for write-only backups",
                recipient.key_id(),
                path.display()
            );
            Ok(())
        }
        Command::Key(KeyCommand::Generate { path, force, .. }) => {
            let key = SymmetricKey::generate();
            key.write_new_file(path, *force)?;
            println!("{}", key.key_id());
            eprintln!(
                "wrote key {} to {}: keep a copy offline, backups cannot be restored without it",
                key.key_id(),
                path.display()
            );
            Ok(())
        }
        Command::Key(KeyCommand::Id { path }) => {
            println!("{}", keys::key_id_of_file(path)?);
            Ok(())
        }
        Command::Key(KeyCommand::List { job, json }) => {
            let config = Config::load(&cli.config)?;
            check_job(&config, job)?;
            let store = Store::open(&config.store, &config.upload)?;
            let listing = store.list(job.as_deref()).await?;
            match json {
                true => println!("{}", report::key_list_json(&listing)),
                false => print!("{}", report::key_list_text(&listing)),
            }
            Ok(())
        }
        Command::Key(KeyCommand::Add { new, job, keys }) => {
            let config = Config::load(&cli.config)?;
            let unlock = unlock_secrets(&config, keys)?;
            let new = new.key_ref().load(config.encryption.settings())?;
            let store = Store::open(&config.store, &config.upload)?;
            check_job(&config, job)?;
            let change = keyring::add(&store, job.as_deref(), &unlock, &new).await?;
            println!(
                "key added to {} backups ({} had it already)",
                change.changed, change.already_done
            );
            unchanged_damaged(&change)
        }
        Command::Key(KeyCommand::Remove {
            key_id,
            passphrase_env,
            job,
        }) => {
            let config = Config::load(&cli.config)?;
            check_job(&config, job)?;
            let store = Store::open(&config.store, &config.upload)?;
            let change = match (key_id, passphrase_env) {
                (Some(id), _) => {
                    keyring::remove(&store, job.as_deref(), Removal::KeyId(id)).await?
                }
                (None, Some(var)) => {
                    let secret = KeyRef {
                        passphrase_env: Some(var.clone()),
                        ..KeyRef::default()
                    }
                    .load(config.encryption.settings())
                    .map_err(|e| e.context(format!("--passphrase-env {var}")))?;
                    keyring::remove(&store, job.as_deref(), Removal::OpenedBy(&secret)).await?
                }
                (None, None) => unreachable!("clap requires one"),
            };
            println!(
                "key removed from {} backups ({} did not have it)",
                change.changed, change.already_done
            );
            unchanged_damaged(&change)
        }
        Command::Key(KeyCommand::Rotate {
            new,
            remove,
            job,
            keys,
        }) => {
            let config = Config::load(&cli.config)?;
            let unlock = unlock_secrets(&config, keys)?;
            let new = new.key_ref().load(config.encryption.settings())?;
            let store = Store::open(&config.store, &config.upload)?;
            check_job(&config, job)?;
            let added = keyring::add(&store, job.as_deref(), &unlock, &new).await?;
            let removed = keyring::remove(&store, job.as_deref(), Removal::KeyId(remove)).await?;
            println!(
                "rotated: new key added to {} backups ({} had it), key {remove} removed from {}",
                added.changed, added.already_done, removed.changed
            );
            unchanged_damaged(&removed)
        }
        Command::Config(ConfigCommand::Check) => {
            let config = Config::load(&cli.config)?;
            config.all_jobs()?;
            let secrets = config
                .encryption
                .load_secrets()
                .map_err(|e| e.with_hint(NEW_KEY_HINT))?;
            let store = Store::open(&config.store, &config.upload)?;
            print!(
                "{}",
                report::config_text(&config, store.description(), &secrets)
            );
            Ok(())
        }
        Command::Backup { jobs, all, json } => {
            let config = Config::load(&cli.config)?;
            let store = Store::open(&config.store, &config.upload)?.stop_uploads_on(stop.clone());
            let recipients = config
                .encryption
                .load_secrets()
                .map_err(|e| e.with_hint(NEW_KEY_HINT))?;
            let jobs = pick_jobs(&config, jobs, *all)?;
            let mut failures = Vec::new();
            for job in jobs {
                if stop.is_cancelled() {
                    break;
                }
                let outcome = match backup::run(&store, job, &recipients).await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        failures.push(e);
                        continue;
                    }
                };
                for summary in &outcome.backups {
                    if *json {
                        println!("{}", report::backup_summary_json(summary));
                    } else {
                        println!("{}", report::backup_text(summary));
                    }
                }
                let succeeded = !outcome.backups.is_empty();
                failures.extend(outcome.failures);
                if succeeded
                    && job.retention.prune_after_backup
                    && let Err(e) = prune_jobs(&store, &[job], false, *json).await
                {
                    failures.push(e);
                }
            }
            // Every failure is reported; the exit code is the first one's.
            match failures.len() {
                0 => Ok(()),
                1 => Err(failures.remove(0)),
                n => {
                    for e in &failures {
                        eprintln!("coffre: {e}");
                    }
                    Err(Error::new(
                        failures[0].class(),
                        format!("{n} backups failed (each is listed above)"),
                    ))
                }
            }
        }
        Command::Restore {
            pick,
            to,
            force,
            clean,
            create,
            no_owner,
            keys,
        } => {
            let config = Config::load(&cli.config)?;
            let secrets = unlock_secrets(&config, keys)?;
            let target = Target::parse(to, *force)?;
            let store = Store::open(&config.store, &config.upload)?;
            let backup = pick_backup(&config, &store, pick).await?;
            let options = RestoreOptions {
                clean: *clean,
                create: *create,
                no_owner: *no_owner,
                progress: show_progress(cli.quiet),
            };
            let summary = restore::restore(&store, &backup, &secrets, &target, options).await?;
            if !cli.quiet {
                // stderr: stdout may be the restored data itself.
                eprintln!("{}", report::restore_text(&backup, &summary));
            }
            Ok(())
        }
        Command::Verify {
            id,
            latest,
            all,
            job,
            database,
            restore: drill,
            restore_server,
            keys,
            json,
        } => {
            let config = Config::load(&cli.config)?;
            let secrets = unlock_secrets(&config, keys)?;
            let store = Store::open(&config.store, &config.upload)?;
            let progress = show_progress(cli.quiet);
            if *all {
                return verify_all(&config, &store, &secrets, job.as_deref(), *drill, *json).await;
            }
            let pick = Pick {
                id: id.clone(),
                latest: *latest,
                job: job.clone(),
                database: database.clone(),
            };
            let backup = pick_backup(&config, &store, &pick).await?;
            if *drill {
                let server = DrillServer::for_backup(&config, &backup, restore_server.as_deref())?;
                let (summary, drill) =
                    restore::drill(&store, &backup, &secrets, &server, progress).await?;
                match json {
                    true => println!("{}", report::drill_json(&backup, &summary, &drill)),
                    false => println!("{}", report::drill_text(&backup, &drill)),
                }
            } else {
                let summary = restore::verify(&store, &backup, &secrets, progress).await?;
                match json {
                    true => println!("{}", report::open_summary_json(&backup, &summary)),
                    false => println!("{}", report::verify_text(&backup, &summary)),
                }
            }
            Ok(())
        }
        Command::Prune {
            jobs,
            all,
            dry_run,
            json,
        } => {
            let config = Config::load(&cli.config)?;
            let store = Store::open(&config.store, &config.upload)?;
            let jobs = pick_jobs(&config, jobs, *all)?;
            prune_jobs(&store, &jobs, *dry_run, *json).await
        }
        Command::List { job, json } => {
            let config = Config::load(&cli.config)?;
            check_job(&config, job)?;
            let store = Store::open(&config.store, &config.upload)?;
            let listing = store.list(job.as_deref()).await?;
            if *json {
                println!("{}", report::listing_json(&listing));
            } else {
                print!("{}", report::listing_text(&listing));
            }
            Ok(())
        }
    }
}

/// A progress bar only for a person watching a terminal.
fn show_progress(quiet: bool) -> bool {
    use std::io::IsTerminal;
    !quiet && std::io::stderr().is_terminal()
}

/// Verify every complete backup (of one job, or all); one line per backup and a summary.
async fn verify_all(
    config: &Config,
    store: &Store,
    secrets: &[Secret],
    job: Option<&str>,
    drill: bool,
    json: bool,
) -> Result<()> {
    let report = ops::verify::verify_all(config, store, secrets, job, drill).await?;
    for checked in &report.checked {
        match (&checked.outcome, &checked.backup) {
            (Outcome::Failed(e), _) => eprintln!("coffre: backup {}: {e}", checked.location.id),
            (_, _) if json => {}
            (Outcome::Verified(summary), Some(backup)) => {
                println!("{}", report::verify_text(backup, summary))
            }
            (Outcome::Drilled(_, drill), Some(backup)) => {
                println!("{}", report::drill_text(backup, drill))
            }
            (outcome, _) => println!("{}", report::verify_line(&checked.location, outcome)),
        }
    }
    let summary = report::verify_all_summary(&report);
    match json {
        true => println!("{}", report::verify_all_json(&report)),
        false => println!("{summary}"),
    }
    match report.failure_class() {
        None => Ok(()),
        Some(class) => Err(Error::new(class, summary)),
    }
}

/// A `--job` given must be a configured job.
fn check_job(config: &Config, job: &Option<String>) -> Result<()> {
    match job {
        Some(job) => config.job(job).map(|_| ()),
        None => Ok(()),
    }
}

/// A key change leaves backups with an unreadable manifest as they were: an integrity error
/// naming each, after the others were changed.
fn unchanged_damaged(change: &keyring::KeyChange) -> Result<()> {
    for d in &change.damaged {
        eprintln!("coffre: not changed: {}", report::damaged_text(d));
    }
    match change.damaged.len() {
        0 => Ok(()),
        n => Err(Error::integrity(format!(
            "{n} backups have a damaged manifest and were not changed (listed above); every other backup was"
        ))),
    }
}

fn pick_jobs<'a>(config: &'a Config, names: &[String], all: bool) -> Result<Vec<&'a Job>> {
    if all {
        return config.all_jobs();
    }
    names.iter().map(|n| config.job(n)).collect()
}

/// Plan every job first; delete only if every plan could be made.
async fn prune_jobs(store: &Store, jobs: &[&Job], dry_run: bool, json: bool) -> Result<()> {
    let now = chrono::Utc::now();
    let mut plans = Vec::new();
    for job in jobs {
        plans.push(prune::plan(store, job, now).await?);
    }
    if json {
        println!("{}", report::prune_plan_json(&plans, dry_run));
    } else {
        print!("{}", report::prune_plan_text(&plans));
    }
    if dry_run {
        return Ok(());
    }
    let done = prune::execute(store, &plans).await;
    if !json {
        println!("{}", report::prune_report_text(&done));
    }
    match done.failures.len() {
        0 => Ok(()),
        n => {
            for e in &done.failures {
                eprintln!("coffre: {e}");
            }
            Err(Error::store(format!(
                "{n} deletes failed (listed above); what was deleted is reported, nothing else was touched"
            )))
        }
    }
}

async fn pick_backup(config: &Config, store: &Store, pick: &Pick) -> Result<Backup> {
    if let Some(job) = &pick.job {
        config.job(job)?;
    }
    match (&pick.id, pick.latest) {
        (Some(id), _) => store.find(id, pick.job.as_deref()).await,
        (None, _) => {
            let job = match (&pick.job, config.jobs.len()) {
                (Some(job), _) => job.clone(),
                (None, 1) => config.jobs.keys().next().cloned().expect("one job"),
                (None, _) => {
                    return Err(Error::config(
                        "--latest needs --job when several jobs are configured",
                    ));
                }
            };
            store.latest(&job, pick.database.as_deref()).await
        }
    }
}

/// What backup and config check add to a key error.
const NEW_KEY_HINT: &str =
    "'coffre key generate FILE' makes a new key for new backups (it opens no existing backup)";

/// What restore and verify add to a key error: a new key never opens an old backup.
const OPEN_KEY_HINT: &str = "to open backups with another key pass --key-file FILE, --passphrase-env VAR, --passphrase-file FILE or --identity-file FILE";

/// The configured keys plus any given on the command line; errors name the flag.
fn unlock_secrets(config: &Config, extra: &KeyArgs) -> Result<Vec<Secret>> {
    let flag = |name: &str, value: String, key: KeyRef| (format!("--{name} {value}"), key);
    let refs = extra
        .key_file
        .iter()
        .map(|p| {
            let key = KeyRef {
                file: Some(p.clone()),
                ..KeyRef::default()
            };
            flag("key-file", p.display().to_string(), key)
        })
        .chain(extra.passphrase_env.iter().map(|v| {
            let key = KeyRef {
                passphrase_env: Some(v.clone()),
                ..KeyRef::default()
            };
            flag("passphrase-env", v.clone(), key)
        }))
        .chain(extra.passphrase_file.iter().map(|p| {
            let key = KeyRef {
                passphrase_file: Some(p.clone()),
                ..KeyRef::default()
            };
            flag("passphrase-file", p.display().to_string(), key)
        }))
        .chain(extra.identity_file.iter().map(|p| {
            let key = KeyRef {
                identity_file: Some(p.clone()),
                ..KeyRef::default()
            };
            flag("identity-file", p.display().to_string(), key)
        }));
    let settings = config.encryption.settings();
    let mut loaded = Vec::new();
    for (flag, key) in refs {
        loaded.push(key.load(settings).map_err(|e| e.context(flag))?);
    }
    config
        .encryption
        .secrets_with(loaded)
        .map_err(|e| e.with_hint(OPEN_KEY_HINT))
}
