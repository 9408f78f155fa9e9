//! Restore drills: restore a backup into a scratch database that coffre creates and always
//! drops, and count what arrived: proof that the backup restores, not only that it decrypts.

use super::restore::{OpenSummary, RestoreOptions, Source, Target, as_target, restore_into};
use crate::config::{Config, SourceConfig};
use crate::crypto::keys::Secret;
use crate::db::mariadb::MariaConn;
use crate::db::postgres::PgConn;
use crate::db::{Server, TableCounts, scratch_name};
use crate::error::{Error, Remedy, Result};
use crate::manifest::{KIND_MARIADB, KIND_POSTGRES};
use crate::store::{Backup, Store};

/// A server to run a restore drill on.
#[derive(Clone, Debug)]
pub enum DrillServer {
    Postgres(PgConn),
    Mariadb(MariaConn),
}

/// Whether a backup is a database dump a drill can restore (a PostgreSQL or MariaDB database,
/// not a globals, command or file backup).
pub fn can_drill(backup: &Backup) -> bool {
    matches!(
        backup.manifest.manifest.source.kind.as_str(),
        KIND_POSTGRES | KIND_MARIADB
    )
}

impl DrillServer {
    /// Where to drill `backup`: the server `url` names, else the server of the backup's job.
    pub async fn for_backup(config: &Config, backup: &Backup, url: Option<&str>) -> Result<Self> {
        let kind = backup.manifest.manifest.source.kind.as_str();
        if let Some(url) = url {
            return match Target::parse(url, false)? {
                Target::Postgres(conn) => Ok(DrillServer::Postgres(conn)),
                Target::Mariadb(conn) => Ok(DrillServer::Mariadb(conn)),
                _ => Err(Error::config(
                    "a drill server is postgres://user@host:port/db or mariadb://user@host:port/db",
                )),
            };
        }
        let job = config.job(&backup.manifest.manifest.job).map_err(|e| {
            e.context("the backup's job is not configured, so a server to drill on must be named")
                .with_remedy(Remedy::NameDrillServer)
        })?;
        let secrets = &config.secrets;
        match (&job.source, kind) {
            (SourceConfig::Postgres(server), KIND_POSTGRES) => Ok(DrillServer::Postgres(
                PgConn::from_config(server, "postgres", secrets).await?,
            )),
            (SourceConfig::Mariadb(server), KIND_MARIADB) => Ok(DrillServer::Mariadb(
                MariaConn::from_config(server, "", secrets).await?,
            )),
            _ => Err(Error::config(format!(
                "restore drills restore PostgreSQL and MariaDB dumps; this backup is of kind '{kind}'"
            ))),
        }
    }
}

/// What a restore drill restored.
#[derive(Clone, Debug)]
pub struct DrillReport {
    pub scratch_database: String,
    pub server: String,
    pub counts: TableCounts,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// When the backup drilled was taken.
    pub backup_taken_at: chrono::DateTime<chrono::Utc>,
    /// Download, decrypt and load, streamed (so overlapped): seconds until the data was in.
    pub restore_seconds: f64,
    /// Counting the tables and rows that arrived.
    pub count_seconds: f64,
}

impl DrillReport {
    /// The achieved recovery time: restored and counted.
    pub fn duration_seconds(&self) -> f64 {
        self.restore_seconds + self.count_seconds
    }

    /// The backup's age when the drill began: the recovery point achieved.
    pub fn backup_age(&self) -> chrono::Duration {
        self.started_at - self.backup_taken_at
    }
}

/// Restore `backup` into a scratch database that coffre creates and always drops, and count
/// what arrived: proof that the backup restores, not only that it decrypts.
pub async fn drill(
    store: &Store,
    backup: &Backup,
    keys: &[Secret],
    server: &DrillServer,
    progress: bool,
) -> Result<(OpenSummary, DrillReport)> {
    let source = Source {
        store,
        backup,
        keys,
        progress,
    };
    let scratch = scratch_name(backup.manifest.manifest.backup_id);
    let options = RestoreOptions {
        create: true,
        no_owner: true,
        progress,
        ..RestoreOptions::default()
    };
    let started_at = crate::clock::now();
    let (summary, timed, address) = match server {
        DrillServer::Postgres(conn) => drill_on(&source, conn, &scratch, options).await?,
        DrillServer::Mariadb(conn) => drill_on(&source, conn, &scratch, options).await?,
    };
    Ok((
        summary,
        DrillReport {
            scratch_database: scratch,
            server: address,
            counts: timed.counts,
            started_at,
            backup_taken_at: backup.manifest.manifest.started_at,
            restore_seconds: timed.restore_seconds,
            count_seconds: timed.count_seconds,
        },
    ))
}

/// What arrived, and how long restoring and counting it took.
struct Timed {
    counts: TableCounts,
    restore_seconds: f64,
    count_seconds: f64,
}

/// Restore into `scratch` on `server`, count, and drop `scratch` whatever happened.
async fn drill_on<S: Server>(
    source: &Source<'_>,
    server: &S,
    scratch: &str,
    options: RestoreOptions,
) -> Result<(OpenSummary, Timed, String)> {
    let target = server.with_database(scratch);
    let maintenance = server.maintenance();
    maintenance
        .drop_database(scratch)
        .await
        .map_err(as_target)?;
    let began = std::time::Instant::now();
    let restored = restore_into(source, &target, options).await;
    let restore_seconds = began.elapsed().as_secs_f64();
    let counts = match &restored {
        Ok(_) => Some(target.table_counts().await),
        Err(_) => None,
    };
    let count_seconds = began.elapsed().as_secs_f64() - restore_seconds;
    let dropped = maintenance.drop_database(scratch).await;
    let summary = restored?;
    let counts = counts
        .expect("counted after a restore")
        .map_err(as_target)?;
    dropped.map_err(as_target)?;
    let timed = Timed {
        counts,
        restore_seconds,
        count_seconds,
    };
    Ok((summary, timed, server.address()))
}
