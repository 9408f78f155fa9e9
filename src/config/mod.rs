//! Configuration: one TOML file (store, encryption, where the jobs are) and one TOML file per job.
//!
//! Strings may use `${VAR}` or `${VAR:-default}` (write `$${` for a literal `${`). Relative paths
//! are relative to the file that names them. Every error names the file, the key and the fix.
//! Secrets are named by reference (`env:NAME`, `file:PATH`: see `secretstore`), never written in.

mod encryption;
mod job;
mod reporting;
mod rotation;
mod run_lock;
mod store;
mod task;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use encryption::{EncryptionConfig, KeyRef};
pub use job::{Compression, EnvValue, Job, ObjectLockConfig, ServerConfig, SourceConfig};
pub use reporting::{AuditConfig, MetricsConfig, NotifyConfig};
pub use rotation::{
    AcmeSettings, ApiKeyTarget, CaTarget, CertificateIssuer, CertificateTarget, DatabaseKind,
    DatabaseTarget, RotationTarget, TargetKind,
};
pub use run_lock::{RunLockConfig, RunLockKind, lease_name};
pub use store::{StoreConfig, UploadConfig};
pub use task::{Task, TaskKind};

use crate::error::{Error, Remedy, Result, one_line};
use crate::secretstore::{
    FileAccess, Resolver, SecretRef, SecretStores, SecretsManagerConfig, VaultConfig,
};
use store::MAX_RETRY_TIMEOUT_SECS;

pub const DEFAULT_CONFIG_PATH: &str = "config/coffre.toml";

/// The loaded configuration.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub store: StoreConfig,
    pub upload: UploadConfig,
    pub encryption: EncryptionConfig,
    /// Reads the secrets the config names.
    pub secrets: Resolver,
    pub metrics: MetricsConfig,
    pub notify: NotifyConfig,
    pub audit: AuditConfig,
    pub lock: RunLockConfig,
    /// The backup jobs, by name.
    pub jobs: BTreeMap<String, Job>,
    /// Every job file, of any kind (backup, prune, drill), by name: what `job run` runs.
    pub tasks: BTreeMap<String, Task>,
    /// Every rotation target, by name, across rotation jobs.
    pub targets: BTreeMap<String, RotationTarget>,
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
    /// Who besides the owner may read the files secrets come from.
    #[serde(default)]
    secret_file_access: FileAccess,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    notify: NotifyConfig,
    #[serde(default)]
    lock: RunLockConfig,
    #[serde(default)]
    audit: AuditConfig,
    /// Vault, for vault: references and rotation targets published there.
    #[serde(default)]
    vault: VaultConfig,
    /// AWS Secrets Manager, for aws-sm: references and rotation targets published there.
    #[serde(default)]
    secrets_manager: SecretsManagerConfig,
}

fn default_job_globs() -> Vec<String> {
    vec!["../jobs/*.toml".into()]
}

/// Fold an older spelling of a secret reference (`password_env = "NAME"`) into the field
/// (`password = "env:NAME"`); setting both is an error.
fn fold_older_spelling(
    field: &mut Option<SecretRef>,
    older: Option<SecretRef>,
    name: &str,
) -> Result<()> {
    match (&field, older) {
        (Some(_), Some(_)) => Err(Error::config(format!(
            "{name}: set it once (an older spelling of it is set too)"
        ))),
        (None, older) => {
            *field = older;
            Ok(())
        }
        (Some(_), None) => Ok(()),
    }
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
            secrets: Resolver {
                file_access: file.secret_file_access,
                stores: std::sync::Arc::new(SecretStores::new(
                    file.vault,
                    file.secrets_manager,
                    file.secret_file_access,
                )),
            },
            metrics: file.metrics,
            notify: file.notify,
            audit: file.audit,
            lock: file.lock,
            jobs: BTreeMap::new(),
            tasks: BTreeMap::new(),
            targets: BTreeMap::new(),
            unmatched_job_patterns: Vec::new(),
        };
        config
            .store
            .normalize(&base)
            .map_err(|e| e.context(path.display()))?;
        config.encryption.keys = std::mem::take(&mut config.encryption.keys)
            .into_iter()
            .map(|k| k.relative_to(&base))
            .collect();
        config.encryption.dedup_key = config
            .encryption
            .dedup_key
            .take()
            .map(|r| r.relative_to(&base, resolve));
        for secret in [&mut config.notify.heartbeat, &mut config.notify.webhook]
            .into_iter()
            .flatten()
        {
            *secret = secret.clone().relative_to(&base, resolve);
        }
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
                config.add_job_file(&job_path)?;
            }
        }
        task::check_operations(&config.tasks, &config.jobs)?;
        if config.lock.kind == RunLockKind::Kubernetes {
            for name in config.tasks.keys() {
                lease_name(name).map_err(|e| e.context(config.path.display()))?;
            }
        }
        Ok(config)
    }

    /// Load one job file: a backup job (a task and a job), or an operation (a task).
    fn add_job_file(&mut self, path: &Path) -> Result<()> {
        let (task, defined) = task::load(path)?;
        if let Some(other) = self.tasks.get(&task.name) {
            return Err(Error::config(format!(
                "{}: job name '{}' is also used by {}: give one of them another 'name'",
                path.display(),
                task.name,
                other.file.display()
            )));
        }
        if let task::Defined::Targets(targets) = defined {
            for target in targets {
                if let Some(other) = self.targets.get(&target.name) {
                    return Err(Error::config(format!(
                        "{}: target name '{}' is also used in {}: give one of them another name",
                        path.display(),
                        target.name,
                        other.file.display()
                    )));
                }
                if let Some(other) = self.targets.values().find(|o| o.publish == target.publish) {
                    return Err(Error::config(format!(
                        "{}: targets '{}' and '{}' both publish to {}: each target needs a secret of its own",
                        path.display(),
                        other.name,
                        target.name,
                        target.publish
                    )));
                }
                self.targets.insert(target.name.clone(), target);
            }
        } else if let task::Defined::Backup(job) = defined {
            if job.object_lock.is_some() && !matches!(self.store, StoreConfig::S3 { .. }) {
                return Err(Error::config(format!(
                    "{}: object_lock needs an S3 store (with Object Lock enabled on the bucket); this config's store is {}",
                    path.display(),
                    self.store.kind()
                )));
            }
            self.jobs.insert(job.name.clone(), *job);
        }
        self.tasks.insert(task.name.clone(), task);
        Ok(())
    }

    /// The task (job of any kind) named `name`.
    pub fn task(&self, name: &str) -> Result<&Task> {
        self.tasks.get(name).ok_or_else(|| self.no_job_named(name))
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

    /// The backup job named `name`.
    pub fn job(&self, name: &str) -> Result<&Job> {
        self.jobs
            .get(name)
            .ok_or_else(|| match self.tasks.get(name) {
                Some(task) => Error::config(format!(
                    "job '{name}' ({}) is a {} job, not a backup job",
                    task.file.display(),
                    task.kind.name()
                )),
                None => self.no_job_named(name),
            })
    }

    fn no_job_named(&self, name: &str) -> Error {
        let known: Vec<&str> = self.tasks.keys().map(String::as_str).collect();
        Error::config(format!(
            "no job named '{name}' in {} (jobs: {})",
            self.path.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
        .with_remedy(crate::error::Remedy::KnownName)
    }

    fn validate(&self) -> Result<()> {
        let file = self.path.display();
        if self.audit.object_lock.is_some() && !matches!(self.store, StoreConfig::S3 { .. }) {
            return Err(Error::config(format!(
                "{file}: audit.object_lock needs an S3 store (with Object Lock enabled on the bucket); this config's store is {}",
                self.store.kind()
            )));
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
    deserialize_toml(read_toml(path)?, path)
}

/// Read a TOML file and interpolate `${VAR}` in every string.
fn read_toml(path: &Path) -> Result<toml::Value> {
    use std::io::Read;
    let file = path.display();
    let cannot = |e: std::io::Error| {
        Error::config(format!("cannot read {file}: {e}")).with_remedy(Remedy::ConfigFile)
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
    Ok(value)
}

/// Deserialize what `read_toml` read from `path`, reporting errors as `file: key.path: problem`.
fn deserialize_toml<T: DeserializeOwned>(value: toml::Value, path: &Path) -> Result<T> {
    let file = path.display();
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
}
