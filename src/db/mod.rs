//! Database servers, reached through their own client tools (psql, pg_dump, pg_restore, mariadb,
//! mariadb-dump), so that TLS settings, auth methods and server quirks behave exactly as they
//! do for the dump itself. Passwords go to the tools through the environment, never argv.

pub mod definer;
pub mod mariadb;
pub mod postgres;

use std::process::Stdio;

use crate::error::{Error, Result};
use crate::process::describe_status;

/// Run a client tool to completion and return its standard output.
/// A failure is a `Source` error quoting the end of the tool's stderr.
pub(crate) async fn run_tool(mut cmd: std::process::Command, what: &str) -> Result<String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            Error::source_failed(format!(
                "{what}: cannot run '{program}': {e} (is it installed and on PATH?)"
            ))
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let summary = stderr_summary(&out.stderr);
    if let Some(fix) = refused_because(&String::from_utf8_lossy(&out.stderr)) {
        return Err(Error::auth(format!("{what}: {summary}: {fix}")));
    }
    Err(Error::source_failed(format!(
        "{what}: '{program}' failed with {}: {summary}",
        describe_status(out.status)
    )))
}

/// When a client tool's stderr says the server refused the login or an action (no retry
/// helps, a setting or a grant does), what to fix.
pub(crate) fn refused_because(stderr: &str) -> Option<&'static str> {
    const REFUSALS: [(&str, &str); 7] = [
        // MariaDB: ER_ACCESS_DENIED_ERROR (1045) and ER_DBACCESS_DENIED_ERROR (1044).
        (
            "ERROR 1045",
            "the server refused the login: check the source's user and password settings",
        ),
        (
            "ERROR 1044",
            "the user may not use that database: grant it access, or check the source's database",
        ),
        (
            "ERROR 1142",
            "the user lacks a privilege on a table: grant the backup user what the README lists",
        ),
        // libpq (psql, pg_dump, pg_restore).
        (
            "password authentication failed",
            "the server refused the login: check the source's user and password settings",
        ),
        (
            "no password supplied",
            "the server asks for a password: set the source's password",
        ),
        (
            "no pg_hba.conf entry",
            "pg_hba.conf lets no such login in: add a rule for the user, or check host, user and sslmode",
        ),
        (
            "permission denied",
            "the user lacks a privilege: grant the backup user what the README lists",
        ),
    ];
    REFUSALS
        .iter()
        .find(|(needle, _)| stderr.contains(needle))
        .map(|(_, fix)| *fix)
}

/// A client tool's batch output: one row a line, fields separated by tabs.
pub(crate) fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// The first field of the first row, or an error naming the query.
pub(crate) fn first_cell(rows: Vec<Vec<String>>, server: &str, sql: &str) -> Result<String> {
    rows.into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
        .ok_or_else(|| Error::source_failed(format!("{server}: '{sql}' returned no row")))
}

pub(crate) fn parse_count(text: &str) -> Result<u64> {
    text.trim().parse().map_err(|_| {
        Error::source_failed(format!("expected a number from the server, got '{text}'"))
    })
}

/// The last few non-empty lines of a tool's stderr, on one line.
pub(crate) fn stderr_summary(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(3);
    if lines.is_empty() {
        "no error output".into()
    } else {
        lines[start..].join(" / ")
    }
}

/// First line of `TOOL --version`, e.g. "pg_dump (PostgreSQL) 15.19".
pub(crate) async fn tool_version(program: &str) -> Result<String> {
    let mut cmd = crate::process::clean_command(program, &[]);
    cmd.arg("--version");
    let out = run_tool(cmd, "checking the dump tool").await?;
    Ok(out.lines().next().unwrap_or("").trim().to_string())
}

/// What restores and drills need from a database server, whatever its kind. Connections are
/// cheap descriptions (each call runs a client tool), so they are cloned freely.
pub(crate) trait Server: Clone {
    /// "PostgreSQL" or "MariaDB", for messages.
    const PRODUCT: &'static str;
    /// The statement that answers the server's version.
    const VERSION_SQL: &'static str;
    /// The statement that lists the databases a job of every database dumps.
    const LIST_DATABASES_SQL: &'static str;
    /// The client tool running `sql`, printing rows of tab-separated fields.
    fn query_command(&self, sql: &str) -> std::process::Command;
    fn database(&self) -> &str;
    fn with_database(&self, name: &str) -> Self;
    /// The connection to create and drop other databases from.
    fn maintenance(&self) -> Self;
    /// "user@host:port/database", never with the password.
    fn describe(&self) -> String;
    /// "host:port".
    fn address(&self) -> String;
    /// The engine's statement counting databases named `name` (0 or 1).
    fn count_databases_sql(name: &str) -> String;
    /// The engine's statements creating and dropping (if it exists) database `name`.
    fn create_database_sql(name: &str) -> String;
    fn drop_database_sql(name: &str) -> String;
    /// Objects in this connection's database: zero for a fresh one.
    async fn user_object_count(&self) -> Result<u64>;
    async fn table_counts(&self) -> Result<TableCounts>;
    /// How to load a backup of source `kind` into this connection's database; None when this
    /// server cannot load that kind.
    fn loader(&self, kind: &str, clean: bool, no_owner: bool) -> Option<Loader>;

    /// Run one SQL statement; rows of tab-separated fields.
    async fn query(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        let out = run_tool(
            self.query_command(sql),
            &format!("querying {}", self.describe()),
        )
        .await?;
        Ok(rows(&out))
    }

    /// The first field of the first row `sql` returns.
    async fn scalar(&self, sql: &str) -> Result<String> {
        first_cell(self.query(sql).await?, &self.describe(), sql)
    }

    async fn database_exists(&self, name: &str) -> Result<bool> {
        Ok(self.scalar(&Self::count_databases_sql(name)).await? != "0")
    }

    async fn create_database(&self, name: &str) -> Result<()> {
        self.query(&Self::create_database_sql(name)).await.map(drop)
    }

    async fn drop_database(&self, name: &str) -> Result<()> {
        self.query(&Self::drop_database_sql(name)).await.map(drop)
    }

    async fn server_version(&self) -> Result<String> {
        self.scalar(Self::VERSION_SQL).await
    }

    async fn list_databases(&self) -> Result<Vec<String>> {
        Ok(self
            .query(Self::LIST_DATABASES_SQL)
            .await?
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .collect())
    }
}

/// The server's own tool that loads a backup, reading it on stdin.
pub struct Loader {
    pub command: std::process::Command,
    /// It loads into the whole server (roles), not one database.
    pub whole_server: bool,
    /// The dump goes through `definer::StripDefiners` first (MariaDB's --no-owner).
    pub strip_definers: bool,
}

/// The password a database source names, if any.
pub(crate) async fn password(
    server: &crate::config::ServerConfig,
    secrets: &crate::secretstore::Resolver,
) -> Result<Option<zeroize::Zeroizing<String>>> {
    let what = "the database password";
    match &server.password {
        Some(r) => Ok(Some(secrets.resolve(r, what).await?.text(what)?)),
        None => Ok(None),
    }
}

/// Name of a scratch database for a restore drill.
pub fn scratch_name(backup_id: uuid::Uuid) -> String {
    format!("coffre_verify_{}", &backup_id.simple().to_string()[..12])
}

/// What a restore drill found in the scratch database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableCounts {
    pub tables: u64,
    pub rows: u64,
}
