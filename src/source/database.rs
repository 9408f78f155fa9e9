//! PostgreSQL and MariaDB sources: which databases a job dumps, and the dump commands.

use std::process::Command;

use super::{DumpPlan, DumpSpec};
use crate::config::ServerConfig;
use crate::db::mariadb::{self, MariaConn};
use crate::db::postgres::PgConn;
use crate::db::tool_version;
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
    match &server.database {
        Some(db) if existing.contains(db) => Ok(vec![db.clone()]),
        Some(db) => Err(Error::source(format!(
            "database '{db}' does not exist on {}:{} (it has: {})",
            server.host,
            server.port.map_or("default".into(), |p| p.to_string()),
            existing.join(", ")
        ))),
        None => Ok(existing
            .into_iter()
            .filter(|db| !server.exclude.contains(db))
            .collect()),
    }
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

/// A consistent InnoDB snapshot with routines, events and triggers.
pub fn mariadb_dump(conn: &MariaConn, extra: &[String]) -> Command {
    let mut cmd = conn.command(mariadb::dump_tool());
    cmd.args([
        "--single-transaction",
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
