//! PostgreSQL through libpq's tools: connection settings go to psql, pg_dump, pg_dumpall and
//! pg_restore as PG* environment variables.

use std::process::Command;
use zeroize::Zeroizing;

use super::{Loader, Server, TableCounts, parse_count};
use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::manifest::{KIND_POSTGRES, KIND_POSTGRES_GLOBALS};
use crate::secretstore::Resolver;

/// A connection to one database of a PostgreSQL server.
#[derive(Clone)]
pub struct PgConn {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    password: Option<Zeroizing<String>>,
    sslmode: Option<String>,
    sslrootcert: Option<std::path::PathBuf>,
    /// Variables of coffre's environment the tools also get.
    inherit_env: Vec<String>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl PgConn {
    pub async fn from_config(
        server: &ServerConfig,
        database: &str,
        secrets: &Resolver,
    ) -> Result<Self> {
        Ok(Self {
            host: server.host.clone(),
            port: server.port.unwrap_or(5432),
            user: server.user.clone().unwrap_or_else(|| "postgres".into()),
            database: database.to_string(),
            password: super::password(server, secrets).await?,
            sslmode: server.sslmode.clone(),
            sslrootcert: server.sslrootcert.clone(),
            inherit_env: server.inherit_env.clone(),
        })
    }

    /// Parse `postgres://user[:password]@host[:port]/database[?sslmode=...]`.
    pub fn from_url(text: &str) -> Result<Self> {
        let url = url::Url::parse(text).map_err(|e| {
            Error::config(format!(
                "'{}' is not a PostgreSQL URL ({e}): use postgres://user@host:port/database",
                redact_url(text)
            ))
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(Error::config("a PostgreSQL URL starts with postgres://"));
        }
        let database = url.path().trim_start_matches('/');
        if database.is_empty() {
            return Err(Error::config(
                "the PostgreSQL URL names no database: use postgres://user@host:port/database",
            ));
        }
        // Without a password in the URL, coffre's PGPASSWORD (the tools see no other PG*
        // variable of coffre's), else ~/.pgpass.
        let password = match url.password() {
            Some(p) => Some(Zeroizing::new(percent_decode(p))),
            None => std::env::var("PGPASSWORD").ok().map(Zeroizing::new),
        };
        let sslmode = url
            .query_pairs()
            .find(|(k, _)| k == "sslmode")
            .map(|(_, v)| v.into_owned());
        Ok(Self {
            host: url.host_str().unwrap_or("127.0.0.1").to_string(),
            port: url.port().unwrap_or(5432),
            user: if url.username().is_empty() {
                "postgres".into()
            } else {
                percent_decode(url.username())
            },
            database: percent_decode(database),
            password,
            sslmode,
            sslrootcert: None,
            inherit_env: Vec::new(),
        })
    }

    /// The same server, another database.
    pub fn with_database(&self, database: &str) -> Self {
        Self {
            database: database.to_string(),
            ..self.clone()
        }
    }

    /// "postgres@127.0.0.1:5432/app", never with the password.
    pub fn describe(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }

    /// A command for a libpq tool, connected through the environment.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = crate::process::clean_command(program, &self.inherit_env);
        cmd.env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGDATABASE", &self.database)
            .env("PGAPPNAME", "coffre")
            .env("PGCONNECT_TIMEOUT", "15");
        if let Some(password) = &self.password {
            cmd.env("PGPASSWORD", password.as_str());
        }
        if let Some(mode) = &self.sslmode {
            cmd.env("PGSSLMODE", mode);
        }
        if let Some(ca) = &self.sslrootcert {
            cmd.env("PGSSLROOTCERT", ca);
        }
        cmd
    }
}

impl Server for PgConn {
    const PRODUCT: &'static str = "PostgreSQL";
    const VERSION_SQL: &'static str = "SHOW server_version";
    const LIST_DATABASES_SQL: &'static str =
        "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1";

    /// psql, one statement, unaligned rows of tab-separated fields, stopping on an error.
    fn query_command(&self, sql: &str) -> Command {
        let mut cmd = self.command("psql");
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "-F",
            "\t",
            "-c",
            sql,
        ]);
        cmd
    }

    fn database(&self) -> &str {
        &self.database
    }

    fn with_database(&self, name: &str) -> Self {
        PgConn::with_database(self, name)
    }

    fn maintenance(&self) -> Self {
        PgConn::with_database(self, "postgres")
    }

    fn describe(&self) -> String {
        PgConn::describe(self)
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn count_databases_sql(name: &str) -> String {
        format!(
            "SELECT count(*) FROM pg_database WHERE datname = {}",
            quote_literal(name)
        )
    }

    fn create_database_sql(name: &str) -> String {
        format!("CREATE DATABASE {}", quote_ident(name))
    }

    /// FORCE: a drill's scratch database goes even if a session was left on it.
    fn drop_database_sql(name: &str) -> String {
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name))
    }

    /// Relations, functions and types outside the system schemas: zero for a fresh database.
    async fn user_object_count(&self) -> Result<u64> {
        let sql = "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%') \
                   + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))";
        parse_count(&self.scalar(sql).await?)
    }

    /// Tables in user schemas and their exact row counts.
    async fn table_counts(&self) -> Result<TableCounts> {
        let sql = "SELECT count(*), coalesce(sum((xpath('/row/c/text()', query_to_xml(\
                   format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, '')))[1]::text::bigint), 0) \
                   FROM information_schema.tables WHERE table_type = 'BASE TABLE' \
                   AND table_schema NOT IN ('pg_catalog', 'information_schema')";
        let row = self
            .query(sql)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        match row.as_slice() {
            [tables, rows] => Ok(TableCounts {
                tables: parse_count(tables)?,
                rows: parse_count(rows)?,
            }),
            _ => Err(Error::source_failed(
                "counting tables returned an unexpected result",
            )),
        }
    }

    fn loader(&self, kind: &str, clean: bool, no_owner: bool) -> Option<Loader> {
        match kind {
            KIND_POSTGRES => {
                let mut cmd = self.command("pg_restore");
                cmd.args(["--no-password", "--exit-on-error", "--single-transaction"]);
                if clean {
                    cmd.args(["--clean", "--if-exists"]);
                }
                if no_owner {
                    cmd.args(["--no-owner", "--no-privileges"]);
                }
                cmd.arg(format!("--dbname={}", self.database));
                Some(Loader {
                    command: cmd,
                    whole_server: false,
                    strip_definers: false,
                })
            }
            KIND_POSTGRES_GLOBALS => {
                let mut cmd = self.command("psql");
                cmd.args(["-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
                Some(Loader {
                    command: cmd,
                    whole_server: true,
                    strip_definers: false,
                })
            }
            _ => None,
        }
    }
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The URL with any password replaced, for messages.
pub fn redact_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("REDACTED"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "(unparsable URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing_takes_user_host_port_database_and_sslmode() {
        let c =
            PgConn::from_url("postgres://app%40x:p%2Fw@db.internal:6543/app_copy?sslmode=require")
                .unwrap();
        assert_eq!(c.user, "app@x");
        assert_eq!(c.host, "db.internal");
        assert_eq!(c.port, 6543);
        assert_eq!(c.database, "app_copy");
        assert_eq!(c.password.as_deref().map(String::as_str), Some("p/w"));
        assert_eq!(c.sslmode.as_deref(), Some("require"));
        assert!(!format!("{c:?}").contains("p/w"));
        assert!(PgConn::from_url("postgres://host/").is_err());
        assert!(PgConn::from_url("mysql://host/db").is_err());
    }

    #[test]
    fn redacted_url_hides_the_password() {
        let shown = redact_url("postgres://u:hunter2@h/db");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
