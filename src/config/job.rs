//! A job file: what one job dumps, how, and how long its backups are kept.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use super::{fold_older_spelling, resolve};
use crate::crypto::format::{DEFAULT_CHUNK_LOG2, MAX_CHUNK_LOG2, MIN_CHUNK_LOG2};
use crate::duration::HumanDuration;
use crate::error::{Error, Result};
use crate::manifest::LockMode;
use crate::retention::Policy;
use crate::schedule::Schedule;
use crate::secretstore::SecretRef;

/// One backup job.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Defaults to the job file's name without `.toml`.
    #[serde(default)]
    pub name: String,
    pub source: SourceConfig,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// v1 only: 2^n-byte plaintext chunks of the data object.
    #[serde(default = "default_chunk_log2")]
    pub chunk_log2: u8,
    /// The backup format new backups are written in: 2 (deduplicated, the default) or 1.
    #[serde(default = "default_format")]
    pub format: u8,
    #[serde(default)]
    pub retention: Policy,
    /// S3 Object Lock on every object of every backup of this job.
    pub object_lock: Option<ObjectLockConfig>,
    /// The longest one backup of this job may run; it is stopped and fails after that. What
    /// an unfinished backup left in the store is cleaned once this (and a margin) has passed.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// `kind = "backup"`, the default for a job file with a `[source]`.
    #[serde(default)]
    pub kind: BackupKind,
    /// When the daemon runs it.
    pub schedule: Option<Schedule>,
    /// A heartbeat URL pinged at the start and end of each run (a secret reference).
    pub heartbeat: Option<SecretRef>,
    /// The file this job was read from.
    #[serde(skip)]
    pub file: PathBuf,
}

fn default_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(24 * 3600))
}
fn default_zstd_level() -> i32 {
    2
}
fn default_format() -> u8 {
    2
}
fn default_chunk_log2() -> u8 {
    DEFAULT_CHUNK_LOG2
}

/// The kind of a backup job file: only "backup" (operations are read in `task`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    #[default]
    Backup,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    None,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }
}

/// Object Lock settings of a job (`[object_lock]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLockConfig {
    pub mode: LockMode,
    /// Days each backup stays locked after it is written.
    pub days: u32,
}

/// A value written into a dump command's environment: zeroized on drop, never shown by
/// `Debug` (it may be a password interpolated from `${VAR}`).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct EnvValue(Zeroizing<String>);

impl EnvValue {
    pub fn new(text: Zeroizing<String>) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for EnvValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvValue(..)")
    }
}

/// What a job dumps.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// Any command whose standard output is the dump.
    Command {
        command: Vec<String>,
        /// Added to the command's environment (never put secrets in argv).
        #[serde(default)]
        env: BTreeMap<String, EnvValue>,
        /// Added to the command's environment, each read from a secret reference.
        #[serde(default)]
        secret_env: BTreeMap<String, SecretRef>,
        /// Variables of coffre's own environment the command also gets; it has PATH, HOME,
        /// LANG, LC_* and TZ in any case, and nothing else.
        #[serde(default)]
        inherit_env: Vec<String>,
        workdir: Option<PathBuf>,
    },
    /// A file read as it is.
    File { path: PathBuf },
    /// pg_dump (custom format) of one or every database of a server.
    Postgres(ServerConfig),
    /// mariadb-dump of one or every database of a server.
    Mariadb(ServerConfig),
}

/// A database source, as written in a job's `[source]` (kind = "postgres" or "mariadb").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_host")]
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// The password (`env:NAME` or `file:PATH`, a mounted Kubernetes Secret say).
    pub password: Option<SecretRef>,
    /// Older spellings of `password = "env:NAME"` and `password = "file:PATH"`.
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// TLS to the server. PostgreSQL: any libpq sslmode (disable, allow, prefer, require,
    /// verify-ca, verify-full). MariaDB: disable, prefer, or verify-full (the client enforces
    /// TLS only when it verifies the server certificate).
    pub sslmode: Option<String>,
    /// CA certificate (PEM) to verify the server with.
    pub sslrootcert: Option<PathBuf>,
    /// The database to dump.
    pub database: Option<String>,
    /// Dump every database of the server instead, one backup each.
    #[serde(default)]
    pub all_databases: bool,
    /// Databases left out by `all_databases`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// PostgreSQL: also back up roles and tablespaces (`pg_dumpall --globals-only`).
    #[serde(default)]
    pub globals: bool,
    /// Extra arguments for the dump tool (never put secrets here).
    #[serde(default)]
    pub dump_args: Vec<String>,
    /// Variables of coffre's own environment the client tools also get (PGSSLCERT,
    /// PGSERVICEFILE...); they have PATH, HOME, LANG, LC_* and TZ and their connection
    /// settings, and nothing else.
    #[serde(default)]
    pub inherit_env: Vec<String>,
}

fn default_host() -> String {
    "127.0.0.1".into()
}

/// A job's name when its file gives none: the file's name without `.toml`.
pub(super) fn name_from_file(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string()
}

/// Check a backup job file, read as `value`.
pub(super) fn load_job(path: &Path, value: toml::Value) -> Result<Job> {
    let mut job: Job = super::deserialize_toml(value, path)?;
    let file = path.display().to_string();
    if job.name.is_empty() {
        job.name = name_from_file(path);
    }
    check_job(&file, &job)?;
    let base = super::parent_dir(path);
    match &mut job.source {
        SourceConfig::Command {
            command,
            workdir,
            secret_env,
            ..
        } => {
            if command.is_empty() || command[0].is_empty() {
                return Err(Error::config(format!(
                    "{file}: source.command: give the program and its arguments, like [\"pg_dump\", \"-Fc\", \"app\"]"
                )));
            }
            if let Some(dir) = workdir {
                *dir = resolve(&base, dir);
            }
            for value in secret_env.values_mut() {
                *value = value.clone().relative_to(&base, resolve);
            }
        }
        SourceConfig::File { path } => *path = resolve(&base, path),
        SourceConfig::Postgres(server) => server.normalize(&file, true, &base)?,
        SourceConfig::Mariadb(server) => server.normalize(&file, false, &base)?,
    }
    if let Some(heartbeat) = &mut job.heartbeat {
        *heartbeat = heartbeat.clone().relative_to(&base, resolve);
    }
    job.file = path.to_path_buf();
    Ok(job)
}

/// A job name is a path segment in the store: lowercase letters, digits, '-', '_', '.'.
pub(super) fn check_name(file: &str, name: &str) -> Result<()> {
    if valid_job_name(name) {
        return Ok(());
    }
    Err(Error::config(format!(
        "{file}: name '{name}': use lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"
    )))
}

fn check_job(file: &str, job: &Job) -> Result<()> {
    check_name(file, &job.name)?;
    if !(1..=2).contains(&job.format) {
        return Err(Error::config(format!(
            "{file}: format = {}: new backups are written in format 2 (deduplicated, the default) or 1",
            job.format
        )));
    }
    if !(MIN_CHUNK_LOG2..=MAX_CHUNK_LOG2).contains(&job.chunk_log2) {
        return Err(Error::config(format!(
            "{file}: chunk_log2 = {}: must be {MIN_CHUNK_LOG2}..={MAX_CHUNK_LOG2} (default {DEFAULT_CHUNK_LOG2}: 1 MiB chunks)",
            job.chunk_log2
        )));
    }
    if job.object_lock.is_some_and(|lock| lock.days == 0) {
        return Err(Error::config(format!(
            "{file}: object_lock.days must be at least 1 (30 for the usual retention)"
        )));
    }
    if !(1..=19).contains(&job.zstd_level) {
        return Err(Error::config(format!(
            "{file}: zstd_level = {}: must be 1..=19 (default 2)",
            job.zstd_level
        )));
    }
    Ok(())
}

impl ServerConfig {
    /// Check the settings, fold the older password spellings into `password`, and make paths
    /// relative to `base`.
    fn normalize(&mut self, file: &str, postgres: bool, base: &Path) -> Result<()> {
        let fail = |msg: &str| Err(Error::config(format!("{file}: source: {msg}")));
        match (&self.database, self.all_databases) {
            (Some(_), true) => {
                return fail("set either database or all_databases = true, not both");
            }
            (None, false) => {
                return fail(
                    "set database = \"NAME\", or all_databases = true for one backup per database",
                );
            }
            _ => {}
        }
        if !self.exclude.is_empty() && !self.all_databases {
            return fail("exclude only applies with all_databases = true");
        }
        if self.password_env.is_some() && self.password_file.is_some() {
            return fail("set password_env or password_file, not both");
        }
        if !postgres && self.globals {
            return fail("globals is for PostgreSQL sources only");
        }
        if !postgres
            && let Some(mode) = &self.sslmode
            && !["disable", "prefer", "verify-full"].contains(&mode.as_str())
        {
            return fail(
                "sslmode for MariaDB is disable, prefer or verify-full (the client enforces TLS only when it verifies the server)",
            );
        }
        let older = (self.password_env.take().map(SecretRef::Env))
            .or(self.password_file.take().map(SecretRef::File));
        fold_older_spelling(&mut self.password, older, "source.password")
            .map_err(|e| e.context(file))?;
        if let Some(password) = &mut self.password {
            *password = password.clone().relative_to(base, resolve);
        }
        if let Some(ca) = &mut self.sslrootcert {
            *ca = resolve(base, ca);
        }
        Ok(())
    }
}

pub(super) fn valid_job_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && name.len() <= 100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_environment_values_never_show_in_debug_output() {
        let source: SourceConfig = toml::from_str(
            "kind = \"command\"\ncommand = [\"pg_dump\"]\nenv = { PGPASSWORD = \"hunter2-secret\" }",
        )
        .unwrap();
        let shown = format!("{source:?}");
        assert!(
            shown.contains("PGPASSWORD") && !shown.contains("hunter2-secret"),
            "{shown}"
        );
    }

    #[test]
    fn job_names_are_path_safe() {
        assert!(valid_job_name("app-db_1.prod"));
        assert!(!valid_job_name("App"));
        assert!(!valid_job_name("../x"));
        assert!(!valid_job_name("-x"));
        assert!(!valid_job_name(""));
    }
}
