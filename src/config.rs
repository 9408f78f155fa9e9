//! Configuration: one TOML file (store, encryption, where the jobs are) and one TOML file per job.
//!
//! Strings may use `${VAR}` or `${VAR:-default}` (write `$${` for a literal `${`). Relative paths
//! are relative to the file that names them. Every error names the file, the key and the fix.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use crate::crypto::format::{DEFAULT_CHUNK_LOG2, MAX_CHUNK_LOG2, MIN_CHUNK_LOG2};
use crate::crypto::keys::{Argon2Params, Identity, Passphrase, Recipient, Secret, SymmetricKey};
use crate::db::ServerConfig;
use crate::duration::HumanDuration;
use crate::error::{Error, Result};
use crate::retention::Policy;
use crate::secret_file::{self, FileAccess};
use crate::store::LockConfig;

pub const DEFAULT_CONFIG_PATH: &str = "config/coffre.toml";

/// The loaded configuration.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub store: StoreConfig,
    pub upload: UploadConfig,
    pub encryption: EncryptionConfig,
    pub jobs: BTreeMap<String, Job>,
    /// `jobs` patterns that matched no file, as resolved (a typo, or a missing mount).
    pub unmatched_job_patterns: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    store: StoreConfig,
    #[serde(default)]
    upload: UploadConfig,
    #[serde(default)]
    encryption: EncryptionConfig,
    /// Glob patterns of job files.
    #[serde(default = "default_job_globs")]
    jobs: Vec<String>,
}

fn default_job_globs() -> Vec<String> {
    vec!["../jobs/*.toml".into()]
}

/// Where backups go.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// A directory on local disk (or a mounted volume).
    Local {
        path: PathBuf,
        #[serde(default)]
        prefix: String,
    },
    /// Amazon S3 or any S3-compatible service. Credentials come from the standard AWS
    /// environment (AWS_ACCESS_KEY_ID, web identity, instance metadata) unless named here.
    S3 {
        bucket: String,
        #[serde(default = "default_region")]
        region: String,
        /// For S3-compatible services, e.g. "https://minio.internal:9000".
        endpoint: Option<String>,
        /// Path-style requests (most S3-compatible services need them).
        #[serde(default)]
        path_style: bool,
        /// Allow plain-HTTP endpoints. Off: backups travel over TLS only.
        #[serde(default)]
        allow_http: bool,
        /// Environment variables holding the access key id and secret.
        access_key_id_env: Option<String>,
        secret_access_key_env: Option<String>,
        #[serde(default)]
        prefix: String,
    },
    /// Azure Blob Storage. Credentials come from the standard Azure environment
    /// (AZURE_STORAGE_ACCOUNT_KEY, workload identity, ...) unless named here.
    Azure {
        account: String,
        container: String,
        endpoint: Option<String>,
        /// Use the Azurite emulator's well-known account and key.
        #[serde(default)]
        use_emulator: bool,
        #[serde(default)]
        allow_http: bool,
        /// Environment variable holding the account access key.
        access_key_env: Option<String>,
        #[serde(default)]
        prefix: String,
    },
    /// Google Cloud Storage. Credentials from GOOGLE_APPLICATION_CREDENTIALS or the service
    /// account file named here.
    Gcs {
        bucket: String,
        service_account_path: Option<PathBuf>,
        #[serde(default)]
        prefix: String,
    },
}

fn default_region() -> String {
    "us-east-1".into()
}

impl StoreConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            StoreConfig::Local { .. } => "local",
            StoreConfig::S3 { .. } => "s3",
            StoreConfig::Azure { .. } => "azure",
            StoreConfig::Gcs { .. } => "gcs",
        }
    }

    pub fn prefix(&self) -> &str {
        match self {
            StoreConfig::Local { prefix, .. }
            | StoreConfig::S3 { prefix, .. }
            | StoreConfig::Azure { prefix, .. }
            | StoreConfig::Gcs { prefix, .. } => prefix,
        }
    }
}

/// How data objects are uploaded.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadConfig {
    /// Size of the first parts; parts double every 1000 so 1 TiB fits S3's 10,000-part limit.
    #[serde(default = "default_part_size_mib")]
    pub part_size_mib: usize,
    /// Parts in flight at once (memory is about (concurrency + 1) x part size).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Retries of a failed request, with exponential backoff.
    #[serde(default = "default_retries")]
    pub retries: usize,
    /// Give up retrying a request after this long.
    #[serde(default = "default_retry_timeout")]
    pub retry_timeout_secs: u64,
}

fn default_part_size_mib() -> usize {
    8
}
fn default_concurrency() -> usize {
    2
}
fn default_retries() -> usize {
    10
}
/// Well within `retention::ABANDON_MARGIN`.
const MAX_RETRY_TIMEOUT_SECS: u64 = 600;

fn default_retry_timeout() -> u64 {
    180
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            part_size_mib: default_part_size_mib(),
            concurrency: default_concurrency(),
            retries: default_retries(),
            retry_timeout_secs: default_retry_timeout(),
        }
    }
}

/// Keys written to every new backup; any one of them opens it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    #[serde(default)]
    pub keys: Vec<KeyRef>,
    #[serde(default)]
    pub argon2: Argon2Params,
    /// Who besides the owner may read key, identity and passphrase files.
    #[serde(default)]
    pub key_file_access: FileAccess,
}

/// How keys are read and derived: what a `KeyRef` needs besides itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeySettings {
    pub argon2: Argon2Params,
    pub file_access: FileAccess,
}

/// Where one key comes from. Exactly one field is set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    /// A key file (from `coffre key generate`).
    pub file: Option<PathBuf>,
    /// An environment variable holding the key text.
    pub env: Option<String>,
    /// An environment variable holding a passphrase.
    pub passphrase_env: Option<String>,
    /// A file holding a passphrase (first line).
    pub passphrase_file: Option<PathBuf>,
    /// An x25519 recipient (`coffre-x25519-v1:...`, public): backups are written to it, and
    /// only its identity opens them. A job with only recipients cannot restore.
    pub recipient: Option<String>,
    /// An x25519 identity file (from `coffre key generate --x25519`).
    pub identity_file: Option<PathBuf>,
}

impl KeyRef {
    fn describe(&self) -> String {
        match self {
            KeyRef { file: Some(p), .. } => format!("key file {}", p.display()),
            KeyRef { env: Some(v), .. } => format!("key in ${v}"),
            KeyRef {
                passphrase_env: Some(v),
                ..
            } => format!("passphrase in ${v}"),
            KeyRef {
                passphrase_file: Some(p),
                ..
            } => format!("passphrase file {}", p.display()),
            KeyRef {
                recipient: Some(r), ..
            } => format!("recipient {r}"),
            KeyRef {
                identity_file: Some(p),
                ..
            } => format!("identity file {}", p.display()),
            _ => "empty key entry".into(),
        }
    }

    fn set_count(&self) -> usize {
        [
            self.file.is_some(),
            self.env.is_some(),
            self.passphrase_env.is_some(),
            self.passphrase_file.is_some(),
            self.recipient.is_some(),
            self.identity_file.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count()
    }

    /// Read the secret this entry points to.
    pub fn load(&self, settings: KeySettings) -> Result<Secret> {
        let KeySettings {
            argon2,
            file_access,
        } = settings;
        if let Some(path) = &self.file {
            return Ok(Secret::Key(SymmetricKey::read_file(path, file_access)?));
        }
        if let Some(var) = &self.env {
            let text = env_secret(var, "the key")?;
            let key = SymmetricKey::parse(text.as_bytes())
                .map_err(|why| Error::config(format!("${var}: {why}")))?;
            return Ok(Secret::Key(key));
        }
        if let Some(var) = &self.passphrase_env {
            let text = env_secret(var, "the passphrase")?;
            return Ok(Secret::Passphrase(Passphrase::new(text)?, argon2));
        }
        if let Some(path) = &self.passphrase_file {
            let line = secret_file::read_first_line(path, "passphrase file", file_access)?;
            return Ok(Secret::Passphrase(Passphrase::new(line)?, argon2));
        }
        if let Some(text) = &self.recipient {
            let recipient =
                Recipient::parse(text).map_err(|why| Error::config(format!("recipient: {why}")))?;
            return Ok(Secret::Recipient(recipient));
        }
        if let Some(path) = &self.identity_file {
            return Ok(Secret::Identity(Identity::read_file(path, file_access)?));
        }
        Err(Error::config(
            "a key entry sets none of file, env, passphrase_env, passphrase_file, recipient, identity_file",
        ))
    }
}

/// A secret from an environment variable; `what` names it in the error.
pub(crate) fn env_secret(var: &str, what: &str) -> Result<Zeroizing<String>> {
    std::env::var(var)
        .map(Zeroizing::new)
        .map_err(|_| Error::config(format!("environment variable {var} ({what}) is not set")))
}

impl EncryptionConfig {
    pub fn settings(&self) -> KeySettings {
        KeySettings {
            argon2: self.argon2,
            file_access: self.key_file_access,
        }
    }

    /// Read every configured key; fails on the first that cannot be read.
    pub fn load_secrets(&self) -> Result<Vec<Secret>> {
        self.load_secrets_each().into_iter().collect()
    }

    /// Keys to open backups with: `extra` (given on the command line, already read) first,
    /// then the configured ones. A configured key that cannot be read is only an error when
    /// there is no extra key.
    pub fn secrets_with(&self, extra: Vec<Secret>) -> Result<Vec<Secret>> {
        let had_extra = !extra.is_empty();
        let mut secrets = extra;
        for key in self.load_secrets_each() {
            match key {
                Ok(secret) => secrets.push(secret),
                Err(e) if !had_extra => return Err(e),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Ok(secrets)
    }

    /// Read every configured key, each with its own outcome.
    pub fn load_secrets_each(&self) -> Vec<Result<Secret>> {
        self.keys
            .iter()
            .map(|k| {
                k.load(self.settings())
                    .map_err(|e| e.context(format!("[encryption] {}", k.describe())))
            })
            .collect()
    }
}

/// A configured value that may be a secret (a password in a dump command's environment):
/// zeroized on drop, never shown by `Debug`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(..)")
    }
}

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
    #[serde(default = "default_chunk_log2")]
    pub chunk_log2: u8,
    #[serde(default)]
    pub retention: Policy,
    /// S3 Object Lock on every object of every backup of this job.
    pub object_lock: Option<LockConfig>,
    /// The longest one backup of this job may run; it is stopped and fails after that. What
    /// an unfinished backup left in the store is cleaned once this (and a margin) has passed.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
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
fn default_chunk_log2() -> u8 {
    DEFAULT_CHUNK_LOG2
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

/// What a job dumps.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// Any command whose standard output is the dump.
    Command {
        command: Vec<String>,
        #[serde(default)]
        /// Added to the command's environment: where its secrets go (never in argv).
        env: BTreeMap<String, SecretValue>,
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

impl Config {
    /// Load the config file and every job file it names.
    pub fn load(path: &Path) -> Result<Self> {
        let file: ConfigFile = parse_toml_file(path)?;
        let base = parent_dir(path);
        let mut config = Config {
            path: path.to_path_buf(),
            store: file.store,
            upload: file.upload,
            encryption: file.encryption,
            jobs: BTreeMap::new(),
            unmatched_job_patterns: Vec::new(),
        };
        config.resolve_paths(&base);
        config.validate()?;
        for pattern in &file.jobs {
            let job_paths = expand_glob(&base, pattern, path)?;
            if job_paths.is_empty() {
                let full = resolve(&base, Path::new(pattern));
                tracing::warn!(
                    "{}: jobs: '{}' matches no file",
                    path.display(),
                    full.display()
                );
                config
                    .unmatched_job_patterns
                    .push(full.display().to_string());
            }
            for job_path in job_paths {
                let job = load_job(&job_path)?;
                if let Some(other) = config.jobs.get(&job.name) {
                    return Err(Error::config(format!(
                        "{}: job name '{}' is also used by {}: give one of them another 'name'",
                        job_path.display(),
                        job.name,
                        other.file.display()
                    )));
                }
                if job.object_lock.is_some() && !matches!(config.store, StoreConfig::S3 { .. }) {
                    return Err(Error::config(format!(
                        "{}: object_lock needs an S3 store (with Object Lock enabled on the bucket); this config's store is {}",
                        job_path.display(),
                        config.store.kind()
                    )));
                }
                config.jobs.insert(job.name.clone(), job);
            }
        }
        Ok(config)
    }

    /// Every job, for commands that act on all of them: an error when a `jobs` pattern matched
    /// nothing or no job is configured, so that a scheduled `backup --all` can never succeed
    /// while backing up nothing.
    pub fn all_jobs(&self) -> Result<Vec<&Job>> {
        if let Some(pattern) = self.unmatched_job_patterns.first() {
            return Err(Error::config(format!(
                "{}: jobs: '{pattern}' matches no file: fix the pattern, or add the job files it should find",
                self.path.display()
            )));
        }
        if self.jobs.is_empty() {
            return Err(Error::config(format!(
                "{}: no job is configured: list job files in 'jobs' (for example jobs = [\"../jobs/*.toml\"])",
                self.path.display()
            )));
        }
        Ok(self.jobs.values().collect())
    }

    pub fn job(&self, name: &str) -> Result<&Job> {
        self.jobs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.jobs.keys().map(String::as_str).collect();
            Error::config(format!(
                "no job named '{name}' in {} (jobs: {})",
                self.path.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    fn resolve_paths(&mut self, base: &Path) {
        match &mut self.store {
            StoreConfig::Local { path, .. } => *path = resolve(base, path),
            StoreConfig::Gcs {
                service_account_path: Some(path),
                ..
            } => *path = resolve(base, path),
            _ => {}
        }
        for key in &mut self.encryption.keys {
            for p in [&mut key.file, &mut key.passphrase_file]
                .into_iter()
                .flatten()
            {
                *p = resolve(base, p);
            }
        }
    }

    fn validate(&self) -> Result<()> {
        let file = self.path.display();
        for (i, key) in self.encryption.keys.iter().enumerate() {
            if key.set_count() != 1 {
                return Err(Error::config(format!(
                    "{file}: encryption.keys[{i}]: set exactly one of file, env, passphrase_env, passphrase_file, recipient, identity_file"
                )));
            }
        }
        if let Err(why) = self.encryption.argon2.check() {
            return Err(Error::config(format!(
                "{file}: encryption.argon2: {why} (default m_kib = 65536, t = 3, p = 1)"
            )));
        }
        let u = self.upload;
        if !(5..=5120).contains(&u.part_size_mib) || !(1..=64).contains(&u.concurrency) {
            return Err(Error::config(format!(
                "{file}: upload: part_size_mib must be 5..=5120 (S3's limits) and concurrency 1..=64 (defaults 8 and 2)"
            )));
        }
        // A write still retrying when a backup's time runs out must land within the margin
        // after which its leftovers are cleaned.
        if !(1..=MAX_RETRY_TIMEOUT_SECS).contains(&u.retry_timeout_secs) {
            return Err(Error::config(format!(
                "{file}: upload.retry_timeout_secs must be 1..={MAX_RETRY_TIMEOUT_SECS} (default 180)"
            )));
        }
        if let StoreConfig::S3 {
            endpoint: Some(endpoint),
            allow_http: false,
            ..
        }
        | StoreConfig::Azure {
            endpoint: Some(endpoint),
            allow_http: false,
            ..
        } = &self.store
            && endpoint.starts_with("http://")
        {
            return Err(Error::config(format!(
                "{file}: store.endpoint '{endpoint}' is plain HTTP: use https://, or set allow_http = true for a test service"
            )));
        }
        check_prefix(&file.to_string(), self.store.prefix())
    }
}

fn check_prefix(file: &str, prefix: &str) -> Result<()> {
    if prefix.split('/').any(|part| part == ".." || part == ".") || prefix.starts_with('/') {
        return Err(Error::config(format!(
            "{file}: store.prefix '{prefix}': use a relative path without '.' or '..' parts, like \"backups\""
        )));
    }
    Ok(())
}

fn load_job(path: &Path) -> Result<Job> {
    let mut job: Job = parse_toml_file(path)?;
    let file = path.display();
    if job.name.is_empty() {
        job.name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
    }
    if !valid_job_name(&job.name) {
        return Err(Error::config(format!(
            "{file}: name '{}': use lowercase letters, digits, '-', '_' or '.', starting with a letter or digit",
            job.name
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
    let base = parent_dir(path);
    let postgres = matches!(job.source, SourceConfig::Postgres(_));
    match &mut job.source {
        SourceConfig::Command {
            command, workdir, ..
        } => {
            if command.is_empty() || command[0].is_empty() {
                return Err(Error::config(format!(
                    "{file}: source.command: give the program and its arguments, like [\"pg_dump\", \"-Fc\", \"app\"]"
                )));
            }
            if let Some(dir) = workdir {
                *dir = resolve(&base, dir);
            }
        }
        SourceConfig::File { path } => *path = resolve(&base, path),
        SourceConfig::Postgres(server) | SourceConfig::Mariadb(server) => {
            check_server(&file.to_string(), postgres, server)?;
            for p in [&mut server.password_file, &mut server.sslrootcert]
                .into_iter()
                .flatten()
            {
                *p = resolve(&base, p);
            }
        }
    }
    job.file = path.to_path_buf();
    Ok(job)
}

fn check_server(file: &str, postgres: bool, server: &ServerConfig) -> Result<()> {
    let fail = |msg: &str| Err(Error::config(format!("{file}: source: {msg}")));
    match (&server.database, server.all_databases) {
        (Some(_), true) => return fail("set either database or all_databases = true, not both"),
        (None, false) => {
            return fail(
                "set database = \"NAME\", or all_databases = true for one backup per database",
            );
        }
        _ => {}
    }
    if !server.exclude.is_empty() && !server.all_databases {
        return fail("exclude only applies with all_databases = true");
    }
    if server.password_env.is_some() && server.password_file.is_some() {
        return fail("set password_env or password_file, not both");
    }
    if !postgres && server.globals {
        return fail("globals is for PostgreSQL sources only");
    }
    if !postgres
        && let Some(mode) = &server.sslmode
        && !["disable", "prefer", "verify-full"].contains(&mode.as_str())
    {
        return fail(
            "sslmode for MariaDB is disable, prefer or verify-full (the client enforces TLS only when it verifies the server)",
        );
    }
    Ok(())
}

fn valid_job_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && name.len() <= 100
}

/// `base/rel` with `.` and `..` folded lexically, so messages show `jobs/x.toml`, not `config/../jobs/x.toml`.
fn resolve(base: &Path, rel: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in base.join(rel).components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn expand_glob(base: &Path, pattern: &str, config_path: &Path) -> Result<Vec<PathBuf>> {
    let full = resolve(base, Path::new(pattern));
    let full = full.to_string_lossy();
    let paths = glob::glob(&full).map_err(|e| {
        Error::config(format!(
            "{}: jobs: '{pattern}' is not a valid glob pattern: {e}",
            config_path.display()
        ))
    })?;
    let mut out: Vec<PathBuf> = paths.filter_map(|p| p.ok()).collect();
    out.sort();
    Ok(out)
}

/// Config and job files are small; this much is not one.
const MAX_CONFIG_FILE_BYTES: u64 = 4 << 20;

/// Read a TOML file, interpolate `${VAR}` in every string, and deserialize it,
/// reporting errors as `file: key.path: problem`.
fn parse_toml_file<T: DeserializeOwned>(path: &Path) -> Result<T> {
    use std::io::Read;
    let file = path.display();
    let cannot = |e: std::io::Error| {
        Error::config(format!(
            "cannot read {file}: {e} (pass --config PATH or set COFFRE_CONFIG)"
        ))
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(cannot)?;
    if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(Error::config(format!(
            "{file} holds more than {} MiB: it is not a coffre config or job file",
            MAX_CONFIG_FILE_BYTES >> 20
        )));
    }
    let mut value: toml::Value = toml::from_str(&text)
        .map_err(|e| Error::config(format!("{file}: {}", one_line(&e.to_string()))))?;
    interpolate(&mut value, &mut Vec::new()).map_err(|e| e.context(&file))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let key = if key == "." {
            String::new()
        } else {
            format!("{key}: ")
        };
        Error::config(format!("{file}: {key}{}", one_line(&inner.to_string())))
    })
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| "|^ ".contains(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Replace `${VAR}` and `${VAR:-default}` in every string value, in place.
fn interpolate(value: &mut toml::Value, path: &mut Vec<String>) -> Result<()> {
    match value {
        toml::Value::String(s) => {
            *s = interpolate_str(s)
                .map_err(|msg| Error::config(format!("{}: {msg}", path.join("."))))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                interpolate(item, path)?;
                path.pop();
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                path.push(key.clone());
                interpolate(item, path)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

fn interpolate_str(input: &str) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(body_start) = after.strip_prefix('{') {
            let end = body_start
                .find('}')
                .ok_or_else(|| format!("'${{' without a closing '}}' in \"{input}\""))?;
            let body = &body_start[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "'${{{body}}}' is not a variable name (letters, digits, '_')"
                ));
            }
            match (std::env::var(name), default) {
                (Ok(v), _) => out.push_str(&v),
                (Err(_), Some(d)) => out.push_str(d),
                (Err(_), None) => {
                    return Err(format!(
                        "environment variable {name} is not set (export it, or write ${{{name}:-default}})"
                    ));
                }
            }
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_substitutes_defaults_and_escapes() {
        // SAFETY: tests in this module use distinct variable names.
        unsafe { std::env::set_var("COFFRE_TEST_INTERP", "bucket-1") };
        assert_eq!(
            interpolate_str("s3://${COFFRE_TEST_INTERP}/x").unwrap(),
            "s3://bucket-1/x"
        );
        assert_eq!(
            interpolate_str("${COFFRE_TEST_UNSET_1:-dflt}").unwrap(),
            "dflt"
        );
        assert_eq!(
            interpolate_str("$${NOT_A_VAR} $5").unwrap(),
            "${NOT_A_VAR} $5"
        );
        let err = interpolate_str("${COFFRE_TEST_UNSET_2}").unwrap_err();
        assert!(err.contains("COFFRE_TEST_UNSET_2 is not set"), "{err}");
        assert!(interpolate_str("${oops").is_err());
        assert!(interpolate_str("${a-b}").is_err());
    }

    #[test]
    fn relative_paths_fold_dot_dot() {
        assert_eq!(
            resolve(Path::new("config"), Path::new("../jobs/a.toml")),
            PathBuf::from("jobs/a.toml")
        );
        assert_eq!(resolve(Path::new("."), Path::new("x")), PathBuf::from("x"));
        assert_eq!(
            resolve(Path::new("config"), Path::new("/abs/k")),
            PathBuf::from("/abs/k")
        );
        assert_eq!(
            resolve(Path::new("config"), Path::new("../..")),
            PathBuf::from("..")
        );
    }

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
