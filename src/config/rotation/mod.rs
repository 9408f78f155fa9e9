//! Rotation job files (`kind = "rotation"`): one or more `[[target]]`s, each a credential
//! coffre renews and publishes: a database user's password (or two users, alternating), an API
//! key, a TLS certificate, or the internal CA that signs certificates.
//!
//! ```toml
//! kind = "rotation"
//! [schedule]
//! cron = "0 4 * * 1"
//!
//! [[target]]
//! name = "app-db"
//! kind = "postgres"                 # or mariadb, api_key, tls, ca
//! host = "db.internal"
//! database = "app"
//! admin_user = "coffre_rotator"
//! admin_password = "k8s:prod/coffre-rotator#password"
//! users = ["app_a", "app_b"]        # dual-user; or user = "app" (single-user)
//! publish = "k8s:prod/app-db"       # or vault:MOUNT/PATH, aws-sm:ID, file:PATH
//! ```

mod api_key;
mod certificate;
mod database;

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::HumanDuration;
use crate::error::{Error, Result};
use crate::k8s::Workload;
use crate::secretstore::{Backend, Location};
pub use api_key::ApiKeyTarget;
pub use certificate::{AcmeSettings, CaTarget, CertificateIssuer, CertificateTarget};
pub use database::{DatabaseKind, DatabaseTarget};

/// One rotation target, as configured: what every kind shares, and its kind's own settings.
#[derive(Clone, Debug)]
pub struct RotationTarget {
    pub name: String,
    /// The job file that defines it.
    pub file: PathBuf,
    pub publish: Location,
    /// Workloads restarted once the new credential is published (Kubernetes only).
    pub consumers: Vec<Workload>,
    /// Also restart the workloads whose pod templates use the published Secret.
    pub discover_consumers: bool,
    /// How long to wait for each consumer's rollout.
    pub rollout_timeout: Duration,
    /// Scheduled runs rotate it only when its last rotation is this old (none: every run).
    pub every: Option<Duration>,
    /// How long the replaced credential keeps working once the new one is out (none: until
    /// the next rotation replaces it). An incident revokes it at once.
    pub grace: Option<Duration>,
    pub kind: TargetKind,
}

/// What is rotated.
#[derive(Clone, Debug)]
pub enum TargetKind {
    Database(DatabaseTarget),
    ApiKey(ApiKeyTarget),
    Certificate(CertificateTarget),
    Ca(CaTarget),
}

impl TargetKind {
    /// The `kind` word of the job file.
    pub fn name(&self) -> &'static str {
        match self {
            TargetKind::Database(d) => d.kind.name(),
            TargetKind::ApiKey(_) => "api_key",
            TargetKind::Certificate(_) => "tls",
            TargetKind::Ca(_) => "ca",
        }
    }
}

impl RotationTarget {
    /// Whether it restarts workloads (and so needs the Kubernetes API for them).
    pub fn restarts_consumers(&self) -> bool {
        !self.consumers.is_empty() || self.discover_consumers
    }

    /// Where its journal lives: beside the published secret.
    pub fn journal(&self) -> Location {
        self.publish.journal_for(&self.name)
    }

    /// The database settings, for a database target.
    pub fn database(&self) -> Option<&DatabaseTarget> {
        match &self.kind {
            TargetKind::Database(d) => Some(d),
            _ => None,
        }
    }

    /// The published Kubernetes Secret's namespace and name, when it is published to one.
    pub fn kubernetes_secret(&self) -> Option<(&str, &str)> {
        (self.publish.backend == Backend::Kubernetes)
            .then(|| self.publish.name.split_once('/'))
            .flatten()
    }
}

/// The settings every kind of target shares; the rest of the table is the kind's own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonFile {
    name: String,
    kind: String,
    publish: Location,
    #[serde(default)]
    consumers: Vec<String>,
    #[serde(default)]
    discover_consumers: bool,
    rollout_timeout: Option<HumanDuration>,
    every: Option<HumanDuration>,
    grace: Option<HumanDuration>,
}

const COMMON_KEYS: [&str; 8] = [
    "name",
    "kind",
    "publish",
    "consumers",
    "discover_consumers",
    "rollout_timeout",
    "every",
    "grace",
];

/// An API key's previous value works this long after a scheduled rotation, unless configured.
const API_KEY_GRACE: Duration = Duration::from_secs(86_400);

/// Names `coffre rotate` takes as subcommands, so no target may have them.
const RESERVED: [&str; 2] = ["status", "abandon"];

/// The targets of a rotation job file's `[[target]]` tables.
pub(super) fn targets(value: Option<toml::Value>, file: &Path) -> Result<Vec<RotationTarget>> {
    let Some(toml::Value::Array(tables)) = value else {
        return Err(Error::config(format!(
            "{}: a rotation job needs at least one [[target]]",
            file.display()
        )));
    };
    tables
        .into_iter()
        .enumerate()
        .map(|(i, table)| target(table, file, i))
        .collect()
}

fn target(table: toml::Value, file: &Path, index: usize) -> Result<RotationTarget> {
    let toml::Value::Table(mut own) = table else {
        return Err(Error::config(format!(
            "{}: target[{index}]: each target is a [[target]] table",
            file.display()
        )));
    };
    let common: toml::Table = COMMON_KEYS
        .iter()
        .filter_map(|k| own.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    let t: CommonFile = super::deserialize_toml(toml::Value::Table(common), file)
        .map_err(|e| e.context(format!("target[{index}]")))?;
    let at = format!("{}: target '{}'", file.display(), t.name);
    super::job::check_name(&file.display().to_string(), &t.name)?;
    if RESERVED.contains(&t.name.as_str()) {
        return Err(Error::config(format!(
            "{at}: '{}' is a word of `coffre rotate`: name the target otherwise",
            t.name
        )));
    }
    let own = toml::Value::Table(own);
    let kind = match t.kind.as_str() {
        "postgres" => database::parse(DatabaseKind::Postgres, own, file, &at)?,
        "mariadb" => database::parse(DatabaseKind::Mariadb, own, file, &at)?,
        "api_key" => api_key::parse(own, file, &at)?,
        "tls" => certificate::parse_tls(own, file, &at)?,
        "ca" => certificate::parse_ca(own, file, &at)?,
        other => {
            return Err(Error::config(format!(
                "{at}: kind = \"{other}\": a target is postgres, mariadb, api_key, tls or ca"
            )));
        }
    };
    // Its journal is the Secret coffre-journal-NAME, and Secret names are DNS labels.
    if t.publish.backend == Backend::Kubernetes
        && !t
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err(Error::config(format!(
            "{at}: published to Kubernetes, the target's name must be lowercase letters, digits, '-' and '.' (its journal is the Secret coffre-journal-NAME)"
        )));
    }
    let namespace = t.publish.name.split('/').next().unwrap_or_default();
    let consumers = t
        .consumers
        .iter()
        .map(|c| Workload::parse(c, namespace))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::config(format!("{at}: consumers: {e}")))?;
    if (!consumers.is_empty() || t.discover_consumers) && t.publish.backend != Backend::Kubernetes {
        return Err(Error::config(format!(
            "{at}: consumers are restarted in the published Secret's namespace: publish to k8s:NAMESPACE/NAME, or drop consumers and discover_consumers"
        )));
    }
    if matches!(kind, TargetKind::Database(ref d) if !d.dual_user()) && t.grace.is_some() {
        return Err(Error::config(format!(
            "{at}: grace needs two users: in single-user mode the old password stops working when the new one is set"
        )));
    }
    let base = super::parent_dir(file);
    let grace = match (&kind, t.grace) {
        (_, Some(g)) => Some(g.0),
        (TargetKind::ApiKey(_), None) => Some(API_KEY_GRACE),
        _ => None,
    };
    Ok(RotationTarget {
        file: file.to_path_buf(),
        publish: t.publish.relative_to(&base, super::resolve),
        consumers,
        discover_consumers: t.discover_consumers,
        rollout_timeout: t.rollout_timeout.map_or(Duration::from_secs(300), |d| d.0),
        every: t.every.map(|d| d.0),
        grace,
        kind,
        name: t.name,
    })
}
