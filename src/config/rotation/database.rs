//! `kind = "postgres"` and `kind = "mariadb"` targets: a database user (or two, alternating)
//! whose password coffre changes.

use serde::Deserialize;
use std::path::{Path, PathBuf};

use super::TargetKind;
use crate::error::{Error, Result};
use crate::rotation::database::TlsMode;
use crate::rotation::password::PasswordPolicy;
use crate::secretstore::SecretRef;

/// The database engines whose users coffre rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    Postgres,
    Mariadb,
}

impl DatabaseKind {
    pub fn name(self) -> &'static str {
        match self {
            DatabaseKind::Postgres => "postgres",
            DatabaseKind::Mariadb => "mariadb",
        }
    }
}

/// A database target's own settings.
#[derive(Clone, Debug)]
pub struct DatabaseTarget {
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
    pub password: PasswordPolicy,
    pub test_query: String,
}

impl DatabaseTarget {
    pub fn dual_user(&self) -> bool {
        self.users.len() == 2
    }

    /// `postgres://host:port`, for plans and messages.
    pub fn describe(&self) -> String {
        format!("{}://{}:{}", self.kind.name(), self.host, self.port)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseFile {
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
    #[serde(default)]
    password: PasswordPolicy,
    #[serde(default = "default_test_query")]
    test_query: String,
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

pub(super) fn parse(
    kind: DatabaseKind,
    value: toml::Value,
    file: &Path,
    at: &str,
) -> Result<TargetKind> {
    let t: DatabaseFile = super::super::deserialize_toml(value, file)
        .map_err(|e| Error::config(format!("{at}: {}", strip_file(e.message(), file))))?;
    let base = super::super::parent_dir(file);
    let users = match (t.user, t.users.len()) {
        (Some(user), 0) => vec![user],
        (None, 2) if t.users[0] != t.users[1] => t.users,
        // One name in `users` is not single-user by another spelling: a dual-user target
        // changed to it would rotate the user in use in place, locking out its clients.
        _ => {
            return Err(Error::config(format!(
                "{at}: set user = \"NAME\" (single-user) or users = [\"NAME_A\", \"NAME_B\"] (dual-user: exactly two different users)"
            )));
        }
    };
    if let Some(admin) = users.iter().find(|u| same_account(u, &t.admin_user)) {
        return Err(Error::config(format!(
            "{at}: '{admin}' is the admin_user: coffre would change its own login's password and publish it to the application. Rotate the application's users only, and give the admin user its own account"
        )));
    }
    t.password.check(at)?;
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
    let tls = TlsMode::parse(t.sslmode.as_deref()).map_err(|e| e.context(at))?;
    let port = t.port.unwrap_or(match kind {
        DatabaseKind::Postgres => 5432,
        DatabaseKind::Mariadb => 3306,
    });
    Ok(TargetKind::Database(DatabaseTarget {
        kind,
        host: t.host,
        port,
        database: t.database,
        tls,
        ca_file: t.sslrootcert.map(|p| super::super::resolve(&base, &p)),
        admin_user: t.admin_user,
        admin_password: t
            .admin_password
            .map(|r| r.relative_to(&base, super::super::resolve)),
        users,
        user_host: t.user_host,
        password: t.password,
        test_query: t.test_query,
    }))
}

/// Whether a rotated user may be the admin user's account. Both names reach the server as
/// written (PostgreSQL: a quoted identifier and a login name; MariaDB: exact user names, the
/// host parts compared on the server by `check_user`), but a role named like the admin up to
/// case (`ADMIN` beside `admin`, which an unquoted name folds to) can only be a mistake.
fn same_account(user: &str, admin: &str) -> bool {
    user.eq_ignore_ascii_case(admin)
}

/// A deserialize error names the file; the caller's prefix already does.
pub(super) fn strip_file(message: &str, file: &Path) -> String {
    message
        .strip_prefix(&format!("{}: ", file.display()))
        .unwrap_or(message)
        .to_string()
}
