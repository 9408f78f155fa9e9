//! The command line's shape: every command, argument and flag, with its help.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

use crate::config::{DEFAULT_CONFIG_PATH, KeyRef};
use crate::ops::pick::Pick;
use crate::secretstore::SecretRef;

/// The version with the commit and date it was built from (set by build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("COFFRE_GIT_COMMIT"),
    ", built ",
    env!("COFFRE_BUILD_DATE"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "coffre",
    version = VERSION,
    about = "Encrypted database backups and credential rotation for Kubernetes: back up PostgreSQL, MariaDB or any dump command to S3, Azure, GCS or local disk; verify, restore, prune, manage keys; rotate database passwords, API keys and TLS certificates, published to Kubernetes, Vault or AWS Secrets Manager; rotate everything in scope at once in an incident.",
    after_help = "Exit codes: 0 ok, 1 internal, 2 usage, 3 config, 4 auth, 5 source, 6 store, 7 integrity, 8 restore target, 130/143 interrupted by SIGINT/SIGTERM.\n\nExamples:\n  coffre --config config/coffre.toml backup quickstart\n  coffre rotate --all --dry-run\n  coffre incident rotate --namespace ehr --dry-run"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "COFFRE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Log format on stderr; a final error is one JSON object too with json.
    #[arg(long, global = true, value_enum, env = "COFFRE_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Only errors on stderr: no logs, progress bars or informational lines such as restore's
    /// report (results on stdout still print; COFFRE_LOG overrides the log level).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Back up one or more jobs now.
    #[command(after_help = "Examples:\n  coffre backup quickstart\n  coffre backup --all --json")]
    Backup {
        /// Jobs to back up.
        #[arg(required_unless_present = "all")]
        jobs: Vec<String>,
        /// Back up every configured job.
        #[arg(long, conflicts_with = "jobs")]
        all: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Restore a backup to a file, stdout, or a PostgreSQL or MariaDB database.
    #[command(
        after_help = "Examples:\n  coffre restore 3f2a9c1e --to restored.dump\n  coffre restore --latest --job app-db --to postgres://app@db/copy --create\n  coffre restore 3f2a9c1e --to mariadb://root@db:3306/shop_copy --create\n  coffre restore --latest --job files --to - > files.tar\n\nDatabase passwords come from PGPASSWORD / MYSQL_PWD (or the URL, which is visible in the process list). The text report goes to stderr (stdout may carry the data); the --json report goes to stdout, or to stderr with --to -."
    )]
    Restore {
        #[command(flatten)]
        pick: PickArgs,
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
        #[command(flatten)]
        output: Output,
    },
    /// Prove backups restore: download, decrypt and check everything, write nothing.
    #[command(
        after_help = "Examples:\n  coffre verify --latest --job quickstart\n  coffre verify 3f2a9c1e --json\n  coffre verify --all\n  coffre verify --latest --job app-db --restore  # into a scratch database"
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
        /// Job of the backup (with --all: only this job's backups).
        #[arg(long)]
        job: Option<String>,
        /// With --latest, for jobs that dump several databases: which one ('postgres-globals' for the globals).
        #[arg(long, requires = "latest")]
        database: Option<String>,
        /// Also restore into a scratch database (created and dropped by coffre) and count tables and rows; with --all, every database dump (other backups are verified).
        #[arg(long)]
        restore: bool,
        /// Server for --restore (postgres://user@host:port/db or mariadb://...); default: the job's source server (not with --all, which drills each on its job's server).
        #[arg(long, requires = "restore", conflicts_with = "all")]
        restore_server: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        output: Output,
    },
    /// List complete backups, and those whose manifest is damaged.
    #[command(after_help = "Examples:\n  coffre list\n  coffre list --job app-db --json")]
    List {
        /// Only this job's backups.
        #[arg(long)]
        job: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Delete backups the jobs' retention policies no longer keep, and what unfinished backups left.
    #[command(
        after_help = "Examples:\n  coffre prune --all --dry-run    # the plan: what each rule keeps\n  coffre prune app-db"
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
        #[command(flatten)]
        output: Output,
    },
    /// Run one job of any kind (backup, prune, drill, rotation) as a CronJob would, or list the jobs.
    #[command(
        subcommand,
        after_help = "Examples:\n  coffre job run app-db          # what a Kubernetes CronJob runs\n  coffre job list --json"
    )]
    Job(JobCommand),
    /// Rotate credentials now (database passwords, API keys, certificates, the internal CA),
    /// resume interrupted rotations, or show where they stand.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  coffre rotate app-db                 # rotate (or resume) one target\n  coffre rotate --job weekly-passwords # every target of a rotation job\n  coffre rotate --all --dry-run        # what would happen, changing nothing\n  coffre rotate status --json\n  coffre rotate --resume app-db        # go on from NEEDS_HUMAN, once checked\n  coffre rotate --abandon app-db       # or drop it\n\nEach state change prints one audit event (a JSON line) on stdout; see docs/ROTATION.md."
    )]
    Rotate(RotateArgs),
    /// Rotate everything in scope now, restart each workload that uses it once, revoke the
    /// old credentials once the rollouts are confirmed, and report what changed.
    #[command(
        subcommand,
        after_help = "Examples:\n  coffre incident rotate --all --dry-run   # the plan, changing nothing\n  coffre incident rotate --namespace ehr   # rotate, restart, revoke, report\n  coffre incident rotate --selector app=pharmacy --grace 15m\n  coffre incident close                    # give up an interrupted one\n\nInterrupted, the same command resumes the incident. See docs/OPERATIONS.md, the incident runbook."
    )]
    Incident(IncidentCommand),
    /// Read and check the audit trail: every backup, restore, prune, key change and rotation.
    #[command(
        subcommand,
        after_help = "Examples:\n  coffre audit verify                  # does every link of the chain hold?\n  coffre audit list --since 30d --kind restore\n  coffre audit list --job app-db --json\n\nSee docs/OPERATIONS.md, answering an auditor."
    )]
    Audit(AuditCommand),
    /// The compliance report: backups against schedules and retention, restore drills,
    /// credentials against policy, incidents, restores and deletions, and the audit chain.
    #[command(
        after_help = "Examples:\n  coffre report                                   # the last 30 days, Markdown\n  coffre report --format html --output report.html\n  coffre report --since 2026-11-01 --until 2026-12-01 --job app-db --json\n\nExit 0 whatever the findings say (they are in the report); a broken audit trail is listed first."
    )]
    Report(ReportArgs),
    /// Run every scheduled job at its times until SIGTERM (daemon mode).
    #[command(
        after_help = "Example:\n  coffre run    # jobs with a [schedule]; one run of a job at a time"
    )]
    Run {
        #[command(flatten)]
        output: Output,
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
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  coffre completions bash > /etc/bash_completion.d/coffre\n  coffre completions zsh > \"${fpath[1]}/_coffre\""
    )]
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one per command into a directory.
    #[command(
        after_help = "Examples:\n  coffre man | man -l -\n  coffre man --dir /usr/share/man/man1"
    )]
    Man {
        /// Write coffre.1 and coffre-COMMAND.1 pages into this directory instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

impl Command {
    /// Whether a signal should let the command stop cleanly (abort its uploads) rather than
    /// drop it at once.
    pub fn stops_gracefully(&self) -> bool {
        matches!(
            self,
            Command::Backup { .. }
                | Command::Run { .. }
                | Command::Job(JobCommand::Run { .. })
                | Command::Rotate(_)
                | Command::Incident(_)
        )
    }
}

/// How to print results.
#[derive(Args, Clone, Copy)]
pub struct Output {
    /// Print JSON: one object per line (docs/JSON.md).
    #[arg(long)]
    pub json: bool,
}

/// Which backup.
#[derive(Args)]
pub struct PickArgs {
    /// Backup id, or a unique prefix of one (see 'coffre list').
    #[arg(required_unless_present = "latest", conflicts_with = "latest")]
    pub id: Option<String>,
    /// The newest complete backup (of --job, needed when several jobs are configured).
    #[arg(long)]
    pub latest: bool,
    /// Job of the backup.
    #[arg(long)]
    pub job: Option<String>,
    /// With --latest, for jobs that dump several databases: which one ('postgres-globals' for the globals).
    #[arg(long, requires = "latest")]
    pub database: Option<String>,
}

impl PickArgs {
    pub fn pick(&self) -> Pick {
        Pick {
            id: self.id.clone(),
            job: self.job.clone(),
            database: self.database.clone(),
        }
    }
}

/// Extra keys to open backups with, on top of the configured ones. Secrets are never arguments.
#[derive(Args)]
pub struct KeyArgs {
    /// A key file (repeatable).
    #[arg(long)]
    pub key_file: Vec<PathBuf>,
    /// Name of an environment variable holding a passphrase (repeatable).
    #[arg(long)]
    pub passphrase_env: Vec<String>,
    /// A file holding a passphrase (repeatable).
    #[arg(long)]
    pub passphrase_file: Vec<PathBuf>,
    /// An x25519 identity file: opens backups written to its recipient (repeatable).
    #[arg(long)]
    pub identity_file: Vec<PathBuf>,
}

impl KeyArgs {
    /// Each key given, with the flag that gave it (for messages).
    pub fn key_refs(&self) -> Vec<(String, KeyRef)> {
        let file = |flag: &str, p: &PathBuf, make: fn(SecretRef) -> KeyRef| {
            (
                format!("--{flag} {}", p.display()),
                make(SecretRef::File(p.clone())),
            )
        };
        let files = self
            .key_file
            .iter()
            .map(|p| file("key-file", p, KeyRef::Key))
            .chain(
                self.passphrase_file
                    .iter()
                    .map(|p| file("passphrase-file", p, KeyRef::Passphrase)),
            )
            .chain(
                self.identity_file
                    .iter()
                    .map(|p| file("identity-file", p, KeyRef::Identity)),
            );
        let envs = self.passphrase_env.iter().map(|v| {
            (
                format!("--passphrase-env {v}"),
                KeyRef::Passphrase(SecretRef::Env(v.clone())),
            )
        });
        files.chain(envs).collect()
    }
}

/// The key to add: exactly one.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct NewKey {
    /// A key file (create one with 'coffre key generate').
    #[arg(long)]
    pub new_key_file: Option<PathBuf>,
    /// Name of an environment variable holding a new passphrase.
    #[arg(long)]
    pub new_passphrase_env: Option<String>,
    /// An x25519 recipient (coffre-x25519-v1:...), for write-only backups.
    #[arg(long)]
    pub new_recipient: Option<String>,
}

impl NewKey {
    /// The key, with the flag that gave it.
    pub fn key_ref(&self) -> (String, KeyRef) {
        match (
            &self.new_key_file,
            &self.new_passphrase_env,
            &self.new_recipient,
        ) {
            (Some(p), _, _) => (
                format!("--new-key-file {}", p.display()),
                KeyRef::Key(SecretRef::File(p.clone())),
            ),
            (_, Some(v), _) => (
                format!("--new-passphrase-env {v}"),
                KeyRef::Passphrase(SecretRef::Env(v.clone())),
            ),
            (_, _, Some(r)) => ("--new-recipient".into(), KeyRef::Recipient(r.clone())),
            (None, None, None) => unreachable!("clap requires one"),
        }
    }
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Write a new random 32-byte key to a file (mode 0600) and print its id.
    #[command(
        after_help = "Examples:\n  coffre key generate /etc/coffre/backup.key\n  coffre key generate --x25519 /secure/restore.identity"
    )]
    Generate {
        /// The file to write.
        path: PathBuf,
        /// Replace an existing file (the old key is lost: backups made with only it cannot be restored).
        #[arg(long)]
        force: bool,
        /// Make an x25519 identity instead, and print its public recipient: a job configured
        /// with only the recipient can back up but not restore (write-only backups).
        #[arg(long)]
        x25519: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Print the key id of a key or identity file (the id manifests list).
    #[command(after_help = "Example:\n  coffre key id /etc/coffre/backup.key")]
    Id {
        /// The key or identity file.
        path: PathBuf,
        #[command(flatten)]
        output: Output,
    },
    /// Show which keys open how many backups.
    #[command(after_help = "Example:\n  coffre key list --job app-db")]
    List {
        /// Only this job's backups.
        #[arg(long)]
        job: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Add a key to every backup (rewrites manifests only, never data).
    #[command(after_help = "Example:\n  coffre key add --new-key-file /etc/coffre/new.key")]
    Add {
        #[command(flatten)]
        new: NewKey,
        /// Only this job's backups.
        #[arg(long)]
        job: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        output: Output,
    },
    /// Remove a key from every backup; refused where it is a backup's only key.
    #[command(
        after_help = "Examples:\n  coffre key remove 3a1f9c0e5b7d2a44\n  coffre key remove --passphrase-env OLD_PASSPHRASE"
    )]
    Remove {
        /// Key id, as 'coffre key list' shows it.
        #[arg(required_unless_present = "passphrase_env")]
        key_id: Option<String>,
        /// Remove the passphrase stanzas the passphrase in this environment variable opens instead.
        #[arg(long, conflicts_with = "key_id")]
        passphrase_env: Option<String>,
        /// Only this job's backups.
        #[arg(long)]
        job: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Add a new key to every backup, then remove an old one: resumable, never leaves a
    /// backup without a working key.
    #[command(
        after_help = "Example:\n  coffre key rotate --new-key-file 2027.key --remove 3a1f9c0e5b7d2a44"
    )]
    Rotate {
        #[command(flatten)]
        new: NewKey,
        /// Key id to remove once the new key is in every backup.
        #[arg(long)]
        remove: String,
        /// Only this job's backups.
        #[arg(long)]
        job: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Subcommand)]
pub enum JobCommand {
    /// Run a job once (unless another process runs it now: then exit 0 saying who does).
    #[command(after_help = "Example:\n  coffre job run app-db")]
    Run {
        /// The job (a job file's name).
        name: String,
        #[command(flatten)]
        output: Output,
    },
    /// Every job: its kind, schedule, next three runs and last result.
    #[command(after_help = "Example:\n  coffre job list")]
    List {
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Args)]
pub struct RotateArgs {
    #[command(subcommand)]
    pub command: Option<RotateCommand>,
    /// Rotation targets (the `name`s of `[[target]]`s).
    pub targets: Vec<String>,
    /// Every target of this rotation job.
    #[arg(long, conflicts_with_all = ["targets", "all"])]
    pub job: Option<String>,
    /// Every configured target.
    #[arg(long, conflicts_with = "targets")]
    pub all: bool,
    /// Print what would happen to each target, and change nothing.
    #[arg(long, conflicts_with = "abandon")]
    pub dry_run: bool,
    /// Close a rotation stopped at NEEDS_HUMAN (or failing), after checking it by hand:
    /// the database and the published secret are left as they are.
    #[arg(long)]
    pub abandon: bool,
    /// Go on with a rotation stopped at NEEDS_HUMAN, after checking it by hand, over the
    /// published secret as it is now.
    #[arg(long, conflicts_with_all = ["abandon", "dry_run"])]
    pub resume: bool,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Subcommand)]
pub enum RotateCommand {
    /// Where each target's rotation stands (its journal).
    #[command(after_help = "Example:\n  coffre rotate status --json")]
    Status {
        /// Targets to show (default: all).
        targets: Vec<String>,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Args)]
pub struct ReportArgs {
    /// The period's start: a date, an RFC 3339 time or an age (default 30d).
    #[arg(long, value_parser = parse_since, default_value = "30d")]
    pub since: chrono::DateTime<chrono::Utc>,
    /// The period's end: a date or an RFC 3339 time (default now).
    #[arg(long, value_parser = parse_since)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Only these backup jobs (repeat; default all).
    #[arg(long = "job")]
    pub jobs: Vec<String>,
    /// markdown, html (one self-contained page with charts) or json.
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: ReportFormat,
    /// Write it to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// The same as --format json.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Html,
    Json,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the chain: every event present, unedited, in order; names the first broken link.
    #[command(
        after_help = "Example:\n  coffre audit verify --anchor 1041:sha256:9f2c...   # the head a report printed last month\n\nExit 0: intact. Exit 7 (integrity): a link is broken; the line names it."
    )]
    Verify {
        /// An end of the trail seen before (SEQ:sha256:HEX, as `audit verify` or a report
        /// prints it): the trail must still hold it, so events cut from the end are found.
        #[arg(long, value_parser = parse_anchor)]
        anchor: Option<crate::audit::trail::Anchor>,
        #[command(flatten)]
        output: Output,
    },
    /// List events, oldest first.
    List {
        /// Only events from then on: a date (2026-11-01), a time (RFC 3339) or an age (30d).
        #[arg(long, value_parser = parse_since)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only events of these kinds (backup, verify, drill, restore, prune, key, job_run,
        /// lock_takeover, rotation, incident); repeat or separate with commas.
        #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(crate::audit::KINDS))]
        kind: Vec<String>,
        /// Only events of this job (or rotation target).
        #[arg(long)]
        job: Option<String>,
        #[command(flatten)]
        output: Output,
    },
}

fn parse_anchor(text: &str) -> Result<crate::audit::trail::Anchor, String> {
    text.parse()
        .map_err(|e: crate::error::Error| e.message().to_string())
}

/// A date, an RFC 3339 time, or an age before now.
pub fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    let age = crate::duration::HumanDuration::parse(text).map_err(|_| {
        format!("'{text}': give a date (2026-11-01), an RFC 3339 time or an age (30d, 12h)")
    })?;
    let age = chrono::Duration::from_std(age.0).map_err(|e| e.to_string())?;
    Ok(crate::clock::now() - age)
}

#[derive(Subcommand)]
pub enum IncidentCommand {
    /// Plan, rotate, restart once, confirm, revoke and report.
    #[command(
        after_help = "Examples:\n  coffre incident rotate --namespace ehr --dry-run\n  coffre incident rotate --namespace ehr --json\n\nRun again after an interruption: it resumes the same incident."
    )]
    Rotate(IncidentRotateArgs),
    /// Close an incident that was interrupted and will not be resumed (check it first with
    /// 'coffre rotate status'); the journals keep where each rotation stands.
    #[command(after_help = "Example:\n  coffre incident close")]
    Close {
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Args)]
pub struct IncidentRotateArgs {
    /// Every configured target.
    #[arg(long)]
    pub all: bool,
    /// A target, by name or by the secret it publishes (k8s:NS/NAME, NS/NAME, vault:...).
    #[arg(long = "secret", value_name = "SECRET")]
    pub secrets: Vec<String>,
    /// Every target published to a Secret in this namespace.
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,
    /// Every target whose published Secret carries these labels (key=value,key!=value,key).
    #[arg(long, value_name = "LABELS")]
    pub selector: Option<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Let the replaced credentials work this long after the rollouts (default: revoked at once).
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::HumanDuration::parse)]
    pub grace: Option<crate::duration::HumanDuration>,
    /// Rotations at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Load the config and every job file, read every key, open the store, and report.
    #[command(after_help = "Example:\n  coffre --config config/coffre.toml config check")]
    Check {
        #[command(flatten)]
        output: Output,
    },
}
