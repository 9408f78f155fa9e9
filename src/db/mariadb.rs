//! MariaDB (and MySQL) through the mariadb client tools. The password goes in MYSQL_PWD.

use std::process::Command;
use zeroize::Zeroizing;

use super::{Loader, Server, TableCounts, parse_count};
use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::manifest::KIND_MARIADB;
use crate::secretstore::Resolver;

/// A connection to one database of a MariaDB server.
#[derive(Clone)]
pub struct MariaConn {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    password: Option<Zeroizing<String>>,
    tls: Tls,
    /// Variables of coffre's environment the tools also get.
    inherit_env: Vec<String>,
}

/// TLS settings as the mariadb client tools take them.
#[derive(Clone, Debug, Default)]
struct Tls {
    /// Some(false): --skip-ssl; Some(true): verify the server (fails without TLS).
    verify: Option<bool>,
    ca: Option<std::path::PathBuf>,
}

impl Tls {
    fn from_config(server: &ServerConfig) -> Result<Self> {
        let verify = match server.sslmode.as_deref() {
            None | Some("prefer") => None,
            Some("disable") => Some(false),
            Some("verify-full") => Some(true),
            Some(other) => {
                return Err(Error::config(format!(
                    "sslmode '{other}' for MariaDB: use disable, prefer or verify-full (the MariaDB client enforces TLS only when it verifies the server)"
                )));
            }
        };
        Ok(Self {
            verify,
            ca: server.sslrootcert.clone(),
        })
    }

    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        match self.verify {
            Some(false) => args.push("--skip-ssl".to_string()),
            Some(true) => {
                args.extend(["--ssl".to_string(), "--ssl-verify-server-cert".to_string()])
            }
            None => {}
        }
        if let Some(ca) = &self.ca {
            args.push(format!("--ssl-ca={}", ca.display()));
        }
        args
    }
}

impl std::fmt::Debug for MariaConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

/// The first of `names` found on PATH (MariaDB renamed the mysql* tools).
pub fn find_tool(names: &[&'static str]) -> &'static str {
    names
        .iter()
        .copied()
        .find(|name| {
            std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join(name).is_file())
            })
        })
        .unwrap_or(names[0])
}

pub fn client_tool() -> &'static str {
    find_tool(&["mariadb", "mysql"])
}

pub fn dump_tool() -> &'static str {
    find_tool(&["mariadb-dump", "mysqldump"])
}

impl MariaConn {
    pub async fn from_config(
        server: &ServerConfig,
        database: &str,
        secrets: &Resolver,
    ) -> Result<Self> {
        Ok(Self {
            host: server.host.clone(),
            port: server.port.unwrap_or(3306),
            user: server.user.clone().unwrap_or_else(|| "root".into()),
            database: database.to_string(),
            password: super::password(server, secrets).await?,
            tls: Tls::from_config(server)?,
            inherit_env: server.inherit_env.clone(),
        })
    }

    /// Parse `mariadb://user[:password]@host[:port]/database` (or mysql://).
    pub fn from_url(text: &str) -> Result<Self> {
        let url = url::Url::parse(text).map_err(|e| {
            Error::config(format!(
                "'{}' is not a MariaDB URL ({e}): use mariadb://user@host:port/database",
                super::postgres::redact_url(text)
            ))
        })?;
        if !matches!(url.scheme(), "mariadb" | "mysql") {
            return Err(Error::config("a MariaDB URL starts with mariadb://"));
        }
        let database = url.path().trim_start_matches('/');
        if database.is_empty() {
            return Err(Error::config(
                "the MariaDB URL names no database: use mariadb://user@host:port/database",
            ));
        }
        Ok(Self {
            host: url.host_str().unwrap_or("127.0.0.1").to_string(),
            port: url.port().unwrap_or(3306),
            user: if url.username().is_empty() {
                "root".into()
            } else {
                url.username().to_string()
            },
            database: database.to_string(),
            // Without a password in the URL, coffre's MYSQL_PWD (the tools see no other
            // variable of coffre's), else ~/.my.cnf.
            password: match url.password() {
                Some(p) => Some(Zeroizing::new(p.to_string())),
                None => std::env::var("MYSQL_PWD").ok().map(Zeroizing::new),
            },
            tls: Tls::default(),
            inherit_env: Vec::new(),
        })
    }

    pub fn with_database(&self, database: &str) -> Self {
        Self {
            database: database.to_string(),
            ..self.clone()
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }

    /// A command for a client tool with connection options; the database is not added.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = crate::process::clean_command(program, &self.inherit_env);
        cmd.arg("--protocol=TCP")
            .arg(format!("--host={}", self.host))
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={}", self.user))
            .args(self.tls.args());
        if let Some(password) = &self.password {
            cmd.env("MYSQL_PWD", password.as_str());
        }
        cmd
    }
}

impl Server for MariaConn {
    const PRODUCT: &'static str = "MariaDB";
    const VERSION_SQL: &'static str = "SELECT VERSION()";
    /// User databases (system schemas left out).
    const LIST_DATABASES_SQL: &'static str = "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN \
        ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1";

    /// The client, batch rows of tab-separated fields (no database selected).
    fn query_command(&self, sql: &str) -> Command {
        let mut cmd = self.command(client_tool());
        cmd.args([
            "--connect-timeout=15",
            "--batch",
            "--skip-column-names",
            "--raw",
            "-e",
            sql,
        ]);
        cmd
    }

    fn database(&self) -> &str {
        &self.database
    }

    fn with_database(&self, name: &str) -> Self {
        MariaConn::with_database(self, name)
    }

    fn maintenance(&self) -> Self {
        MariaConn::with_database(self, "")
    }

    fn describe(&self) -> String {
        MariaConn::describe(self)
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn count_databases_sql(name: &str) -> String {
        format!(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = {}",
            quote_literal(name)
        )
    }

    fn create_database_sql(name: &str) -> String {
        format!(
            "CREATE DATABASE {} CHARACTER SET utf8mb4",
            quote_ident(name)
        )
    }

    fn drop_database_sql(name: &str) -> String {
        format!("DROP DATABASE IF EXISTS {}", quote_ident(name))
    }

    /// Tables, views and routines in this connection's database: zero for a fresh one.
    async fn user_object_count(&self) -> Result<u64> {
        let db = quote_literal(&self.database);
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {db}) + \
             (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = {db})"
        );
        parse_count(&self.scalar(&sql).await?)
    }

    /// Base tables of this connection's database and their exact row counts.
    async fn table_counts(&self) -> Result<TableCounts> {
        let tables: Vec<String> = self
            .query(&format!(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = {} \
                 AND table_type = 'BASE TABLE' ORDER BY 1",
                quote_literal(&self.database)
            ))
            .await?
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .collect();
        if tables.is_empty() {
            return Ok(TableCounts::default());
        }
        let db = quote_ident(&self.database);
        let union = tables
            .iter()
            .map(|t| format!("SELECT COUNT(*) AS c FROM {db}.{}", quote_ident(t)))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let rows = self
            .scalar(&format!("SELECT SUM(c) FROM ({union}) AS counts"))
            .await?;
        Ok(TableCounts {
            tables: tables.len() as u64,
            rows: parse_count(&rows)?,
        })
    }

    fn loader(&self, kind: &str, _clean: bool, no_owner: bool) -> Option<Loader> {
        // mariadb-dump output drops and recreates each table itself: nothing to add for --clean.
        (kind == KIND_MARIADB).then(|| {
            let mut cmd = self.command(client_tool());
            cmd.args(["--default-character-set=utf8mb4", "--batch"])
                .arg(format!("--database={}", self.database));
            Loader {
                command: cmd,
                whole_server: false,
                strip_definers: no_owner,
            }
        })
    }
}

/// `` `name` `` with embedded backticks doubled.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `'text'` with quotes and backslashes escaped.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}
