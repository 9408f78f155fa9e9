//! PostgreSQL and MariaDB sources: which databases a job dumps, and the dump commands.

use std::process::Command;

use super::{DumpPlan, DumpSpec};
use crate::config::ServerConfig;
use crate::db::mariadb::{self, MariaConn};
use crate::db::postgres::PgConn;
use crate::db::{Server, tool_version};
use crate::error::{Error, Result};
use crate::manifest::SourceInfo;
use crate::manifest::{KIND_MARIADB, KIND_POSTGRES, KIND_POSTGRES_GLOBALS};
use crate::secretstore::Resolver;

/// Connect, read versions and the database list, and plan one dump per database
/// (plus the globals for PostgreSQL when asked).
pub async fn plan_database(
    kind: &str,
    server: &ServerConfig,
    secrets: &Resolver,
) -> Result<Vec<DumpPlan>> {
    let maintenance_db = match (kind, &server.database) {
        (_, Some(db)) => db.clone(),
        (KIND_POSTGRES, None) => "postgres".to_string(),
        _ => String::new(),
    };
    let mut plans = Vec::new();
    if kind == KIND_POSTGRES {
        let conn = PgConn::from_config(server, &maintenance_db, secrets).await?;
        let server_version = Some(conn.server_version().await?);
        let dump_tool = Some(tool_version("pg_dump").await?);
        for database in databases(server, conn.list_databases()).await? {
            plans.push(DumpPlan {
                info: SourceInfo {
                    kind: KIND_POSTGRES.into(),
                    database: Some(database.clone()),
                    server_version: server_version.clone(),
                    dump_tool: dump_tool.clone(),
                },
                spec: DumpSpec::Postgres(conn.with_database(&database), server.dump_args.clone()),
            });
        }
        if server.globals {
            plans.push(DumpPlan {
                info: SourceInfo {
                    kind: KIND_POSTGRES_GLOBALS.into(),
                    database: None,
                    server_version,
                    dump_tool: Some(tool_version("pg_dumpall").await?),
                },
                spec: DumpSpec::PostgresGlobals(conn),
            });
        }
    } else {
        let conn = MariaConn::from_config(server, &maintenance_db, secrets).await?;
        let server_version = Some(conn.server_version().await?);
        let dump_tool = Some(tool_version(mariadb::dump_tool()).await?);
        let known = conn.list_databases();
        for database in databases(server, known).await? {
            plans.push(DumpPlan {
                info: SourceInfo {
                    kind: KIND_MARIADB.into(),
                    database: Some(database.clone()),
                    server_version: server_version.clone(),
                    dump_tool: dump_tool.clone(),
                },
                spec: DumpSpec::Mariadb(conn.with_database(&database), server.dump_args.clone()),
            });
        }
    }
    Ok(plans)
}

/// The databases to dump: the configured one (which must exist), or all but the excluded.
async fn databases(
    server: &ServerConfig,
    list: impl Future<Output = Result<Vec<String>>>,
) -> Result<Vec<String>> {
    let existing = list.await?;
    let chosen = match &server.database {
        Some(db) if existing.contains(db) => vec![db.clone()],
        Some(db) => {
            return Err(Error::source_failed(format!(
                "database '{db}' does not exist on {}:{} (it has: {})",
                server.host,
                server.port.map_or("default".into(), |p| p.to_string()),
                existing.join(", ")
            )));
        }
        None => existing
            .into_iter()
            .filter(|db| !server.exclude.contains(db))
            .collect(),
    };
    // A name is passed to the dump tool as an argument: one that reads as an option (a database
    // called '--result-file=...') is never passed.
    if let Some(name) = chosen.iter().find(|db| db.starts_with('-')) {
        return Err(Error::source_failed(format!(
            "database '{name}' on {} starts with '-', which the dump tool would take for an option: rename it, or leave it out with exclude",
            server.host
        )));
    }
    Ok(chosen)
}

/// `pg_dump` in custom format, uncompressed: coffre compresses with zstd, faster than gzip.
pub fn pg_dump(conn: &PgConn, extra: &[String]) -> Command {
    let mut cmd = conn.command("pg_dump");
    cmd.args(["--format=custom", "--compress=0", "--no-password"])
        .args(extra);
    cmd
}

/// Roles and tablespaces, as SQL.
pub fn pg_dumpall_globals(conn: &PgConn) -> Command {
    let mut cmd = conn.command("pg_dumpall");
    cmd.args(["--globals-only", "--no-password"]);
    cmd
}

/// A consistent InnoDB snapshot with routines, events and triggers, rows in primary-key order
/// so that unchanged rows make the same bytes every day (format 2 stores them once).
pub fn mariadb_dump(conn: &MariaConn, extra: &[String]) -> Command {
    let mut cmd = conn.command(mariadb::dump_tool());
    cmd.args([
        "--single-transaction",
        "--order-by-primary",
        "--routines",
        "--events",
        "--triggers",
        "--hex-blob",
        "--default-character-set=utf8mb4",
    ])
    .args(extra)
    .arg(&conn.database);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(database: Option<&str>, exclude: &[&str]) -> ServerConfig {
        let text = format!(
            "all_databases = {}\nexclude = {exclude:?}\n{}",
            database.is_none(),
            database
                .map(|d| format!("database = \"{d}\""))
                .unwrap_or_default()
        );
        toml::from_str(&text).unwrap()
    }

    #[tokio::test]
    async fn a_database_name_that_reads_as_an_option_is_never_dumped() {
        let list = || async { Ok(vec!["app".to_string(), "--result-file=/tmp/x".to_string()]) };
        let err = databases(&server(None, &[]), list()).await.unwrap_err();
        assert!(err.message().contains("starts with '-'"), "{err}");
        let chosen = databases(&server(None, &["--result-file=/tmp/x"]), list())
            .await
            .unwrap();
        assert_eq!(chosen, ["app"]);
        assert_eq!(
            databases(&server(Some("app"), &[]), list()).await.unwrap(),
            ["app"]
        );
    }
}
