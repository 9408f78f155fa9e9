//! Sources: each starts a dump and yields it as an `AsyncRead`, owning any child process.
//!
//! A job is first *planned* (which dumps it makes: a job over all databases of a server makes
//! one per database), then each plan is started. A dump only succeeds when its stream ended
//! *and* its producer exited cleanly: a dump tool that dies midway closes its stdout just like
//! one that finished.

mod command;
mod database;

use tokio::io::AsyncRead;

use crate::config::{EnvValue, SourceConfig};
use crate::db::mariadb::MariaConn;
use crate::db::postgres::PgConn;
use crate::error::{Error, Result};
use crate::manifest::{KIND_MARIADB, KIND_POSTGRES, SourceInfo};
use crate::secretstore::Resolver;

use command::ChildDump;
pub use database::plan_database;

/// One dump of a job, ready to start.
#[derive(Debug)]
pub struct DumpPlan {
    pub info: SourceInfo,
    spec: DumpSpec,
}

#[derive(Debug)]
enum DumpSpec {
    Command {
        argv: Vec<String>,
        env: std::collections::BTreeMap<String, EnvValue>,
        inherit_env: Vec<String>,
        workdir: Option<std::path::PathBuf>,
    },
    File(std::path::PathBuf),
    Postgres(PgConn, Vec<String>),
    PostgresGlobals(PgConn),
    Mariadb(MariaConn, Vec<String>),
}

/// A running dump: its stream and how it ended.
pub struct Dump {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    pub exit: DumpExit,
}

/// The producer of a dump; dropping it kills a child process that is still running.
pub struct DumpExit(Option<ChildDump>);

impl DumpExit {
    /// Wait for the producer and fail unless it exited with success.
    /// Call after the stream reached its end.
    pub async fn wait_success(self) -> Result<()> {
        match self.0 {
            Some(child) => child.wait_success().await,
            None => Ok(()),
        }
    }
}

/// Work out the dumps a job makes. Database sources connect here (versions, database list),
/// so a wrong password or a missing database fails before anything is uploaded.
pub async fn plan(config: &SourceConfig, secrets: &Resolver) -> Result<Vec<DumpPlan>> {
    match config {
        SourceConfig::Command {
            command,
            env,
            secret_env,
            inherit_env,
            workdir,
        } => Ok(vec![DumpPlan {
            info: SourceInfo {
                kind: "command".into(),
                dump_tool: Some(command[0].clone()),
                ..SourceInfo::default()
            },
            spec: DumpSpec::Command {
                argv: command.clone(),
                env: command_env(env, secret_env, secrets).await?,
                inherit_env: inherit_env.clone(),
                workdir: workdir.clone(),
            },
        }]),
        SourceConfig::File { path } => Ok(vec![DumpPlan {
            info: SourceInfo {
                kind: "file".into(),
                ..SourceInfo::default()
            },
            spec: DumpSpec::File(path.clone()),
        }]),
        SourceConfig::Postgres(server) => plan_database(KIND_POSTGRES, server, secrets).await,
        SourceConfig::Mariadb(server) => plan_database(KIND_MARIADB, server, secrets).await,
    }
}

/// A command's environment: its literal values and the secrets it names, read now.
async fn command_env(
    literal: &std::collections::BTreeMap<String, EnvValue>,
    secret: &std::collections::BTreeMap<String, crate::secretstore::SecretRef>,
    secrets: &Resolver,
) -> Result<std::collections::BTreeMap<String, EnvValue>> {
    let mut env = literal.clone();
    for (name, r) in secret {
        let what = format!("secret_env.{name}");
        let value = secrets.resolve(r, &what).await?.text(&what)?;
        env.insert(name.clone(), EnvValue::new(value));
    }
    Ok(env)
}

impl DumpPlan {
    /// Start the dump.
    pub fn start(&self) -> Result<Dump> {
        let (reader, child) = match &self.spec {
            DumpSpec::File(path) => {
                let file = std::fs::File::open(path).map_err(|e| {
                    Error::source_failed(format!("cannot open {}: {e}", path.display()))
                })?;
                let reader = crate::blocking::spawn_reader("file", file)
                    .map_err(|e| Error::internal(format!("cannot start a thread: {e}")))?;
                return Ok(Dump {
                    reader: Box::new(reader),
                    exit: DumpExit(None),
                });
            }
            DumpSpec::Command {
                argv,
                env,
                inherit_env,
                workdir,
            } => {
                let mut cmd = crate::process::clean_command(&argv[0], inherit_env);
                cmd.args(&argv[1..])
                    .envs(env.iter().map(|(k, v)| (k, v.as_str())));
                if let Some(dir) = workdir {
                    cmd.current_dir(dir);
                }
                ChildDump::spawn(cmd)?
            }
            DumpSpec::Postgres(conn, args) => ChildDump::spawn(database::pg_dump(conn, args))?,
            DumpSpec::PostgresGlobals(conn) => {
                ChildDump::spawn(database::pg_dumpall_globals(conn))?
            }
            DumpSpec::Mariadb(conn, args) => ChildDump::spawn(database::mariadb_dump(conn, args))?,
        };
        Ok(Dump {
            reader: Box::new(reader),
            exit: DumpExit(Some(child)),
        })
    }
}
