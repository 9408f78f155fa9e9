//! Rotation job files (`kind = "rotation"`): one or more `[[target]]`s, each a database user
//! (or two, alternating) whose password coffre changes and publishes.
//!
//! ```toml
//! kind = "rotation"
//! [schedule]
//! cron = "0 4 * * 1"
//!
//! [[target]]
//! name = "app-db"
//! kind = "postgres"                 # or "mariadb"
//! host = "db.internal"
//! database = "app"
//! admin_user = "coffre_rotator"
//! admin_password = "k8s:prod/coffre-rotator#password"
//! users = ["app_a", "app_b"]        # dual-user; or user = "app" (single-user)
//! publish = "k8s:prod/app-db"       # or vault:MOUNT/PATH, aws-sm:ID, file:PATH
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};

use crate::duration::HumanDuration;
use crate::error::{Error, Result};
use crate::k8s::Workload;
use crate::rotation::database::TlsMode;
use crate::rotation::password::PasswordPolicy;
use crate::secretstore::{Location, SecretRef};

/// The database engines whose users coffre rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    Postgres,
    Mariadb,
}

/// One rotation target, as configured.
#[derive(Clone, Debug)]
pub struct RotationTarget {
    pub name: String,
    /// The job file that defines it.
    pub file: PathBuf,
    pub kind: DatabaseKind,
    pub host: String,
    pub port: u16,
    pub database: Option<String>,
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
    pub admin_user: String,
    pub admin_password: Option<SecretRef>,
    /// One user (single-user mode) or two that alternate (dual-user mode).
    pub users: Vec<String>,
    /// MariaDB: the host part of the accounts ('app'@'%').
    pub user_host: String,
    pub publish: Location,
    pub password: PasswordPolicy,
    pub test_query: String,
    /// Workloads restarted once the new credential is published (Kubernetes only).
    pub consumers: Vec<Workload>,
    /// Also restart the workloads whose pod templates use the published Secret.
    pub discover_consumers: bool,
    /// How long to wait for each consumer's rollout.
    pub rollout_timeout: std::time::Duration,
}

impl RotationTarget {
    /// Whether it restarts workloads (and so needs the Kubernetes API for them).
    pub fn restarts_consumers(&self) -> bool {
        !self.consumers.is_empty() || self.discover_consumers
    }

    pub fn dual_user(&self) -> bool {
        self.users.len() == 2
    }

    /// Where its journal lives: beside the published secret.
    pub fn journal(&self) -> Location {
        self.publish.journal_for(&self.name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    name: String,
    kind: DatabaseKind,
    #[serde(default = "default_host")]
    host: String,
    port: Option<u16>,
    database: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<PathBuf>,
    admin_user: String,
    admin_password: Option<SecretRef>,
    user: Option<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default = "default_user_host")]
    user_host: String,
    publish: Location,
    #[serde(default)]
    password: PasswordPolicy,
    #[serde(default = "default_test_query")]
    test_query: String,
    #[serde(default)]
    consumers: Vec<String>,
    #[serde(default)]
    discover_consumers: bool,
    rollout_timeout: Option<HumanDuration>,
}

fn default_host() -> String {
    "127.0.0.1".into()
}

fn default_user_host() -> String {
    "%".into()
}

fn default_test_query() -> String {
    "SELECT 1".into()
}

/// Names `coffre rotate` takes as subcommands, so no target may have them.
const RESERVED: [&str; 2] = ["status", "abandon"];

/// The targets of a rotation job file's `[[target]]` tables.
pub(super) fn targets(value: Option<toml::Value>, file: &Path) -> Result<Vec<RotationTarget>> {
    let Some(value) = value else {
        return Err(Error::config(format!(
            "{}: a rotation job needs at least one [[target]]",
            file.display()
        )));
    };
    let parsed: Vec<TargetFile> = super::deserialize_toml(value, file)?;
    let base = super::parent_dir(file);
    parsed
        .into_iter()
        .map(|t| {
            let at = format!("{}: target '{}'", file.display(), t.name);
            super::job::check_name(&file.display().to_string(), &t.name)?;
            if RESERVED.contains(&t.name.as_str()) {
                return Err(Error::config(format!(
                    "{at}: '{}' is a word of `coffre rotate`: name the target otherwise",
                    t.name
                )));
            }
            let users = match (t.user, t.users.len()) {
                (Some(user), 0) => vec![user],
                (None, 2) if t.users[0] != t.users[1] => t.users,
                (None, 1) => t.users,
                _ => {
                    return Err(Error::config(format!(
                        "{at}: set user = \"NAME\" (single-user) or users = [\"NAME_A\", \"NAME_B\"] (dual-user: two different users)"
                    )));
                }
            };
            t.password.check(&at)?;
            // Names go into SQL statements: keep them to characters no quoting rule disagrees on.
            let safe = |text: &str, extra: &str| {
                !text.is_empty()
                    && text
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.$".contains(c) || extra.contains(c))
            };
            if let Some(bad) = users.iter().find(|u| !safe(u, "")) {
                return Err(Error::config(format!(
                    "{at}: user '{bad}': use letters, digits, '_', '-', '.' and '$'"
                )));
            }
            if !safe(&t.user_host, "%:/") {
                return Err(Error::config(format!(
                    "{at}: user_host '{}': use a host name, an address or a pattern with '%'",
                    t.user_host
                )));
            }
            // Its journal is the Secret coffre-journal-NAME, and Secret names are DNS labels.
            if t.publish.backend == crate::secretstore::Backend::Kubernetes
                && !t.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            {
                return Err(Error::config(format!(
                    "{at}: published to Kubernetes, the target's name must be lowercase letters, digits, '-' and '.' (its journal is the Secret coffre-journal-NAME)"
                )));
            }
            let tls = TlsMode::parse(t.sslmode.as_deref()).map_err(|e| e.context(&at))?;
            let namespace = t.publish.name.split('/').next().unwrap_or_default();
            let consumers = t
                .consumers
                .iter()
                .map(|c| Workload::parse(c, namespace))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::config(format!("{at}: consumers: {e}")))?;
            if (!consumers.is_empty() || t.discover_consumers)
                && t.publish.backend != crate::secretstore::Backend::Kubernetes
            {
                return Err(Error::config(format!(
                    "{at}: consumers are restarted in the published Secret's namespace: publish to k8s:NAMESPACE/NAME, or drop consumers and discover_consumers"
                )));
            }
            let port = t.port.unwrap_or(match t.kind {
                DatabaseKind::Postgres => 5432,
                DatabaseKind::Mariadb => 3306,
            });
            Ok(RotationTarget {
                file: file.to_path_buf(),
                kind: t.kind,
                host: t.host,
                port,
                database: t.database,
                tls,
                ca_file: t.sslrootcert.map(|p| super::resolve(&base, &p)),
                admin_user: t.admin_user,
                admin_password: t
                    .admin_password
                    .map(|r| r.relative_to(&base, super::resolve)),
                users,
                user_host: t.user_host,
                publish: t.publish.relative_to(&base, super::resolve),
                password: t.password,
                test_query: t.test_query,
                consumers,
                discover_consumers: t.discover_consumers,
                rollout_timeout: t
                    .rollout_timeout
                    .map_or(std::time::Duration::from_secs(300), |d| d.0),
                name: t.name,
            })
        })
        .collect()
}
