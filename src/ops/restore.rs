//! Restore and verify: the backup's reader (`crate::data`) -> target.
//!
//! Every check the format offers runs on every restore. A file target is written to an unnamed
//! file and given its name only when all of them held (`partial_file`), so a tampered or
//! truncated backup, or a killed restore, never leaves plaintext at the path the user asked
//! for, or beside it.

use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::partial_file::PartialFile;
use crate::crypto::keys::Secret;
use crate::data;
use crate::db::definer::StripDefiners;
use crate::db::mariadb::MariaConn;
use crate::db::postgres::PgConn;
use crate::db::{Loader, Server, stderr_summary};
use crate::error::{Class, Error, Remedy, Result};
use crate::process::describe_status;
use crate::store::{Backup, Store};

/// Where restored data goes.
#[derive(Clone, Debug)]
pub enum Target {
    /// A new file (replaced only with `overwrite`).
    File {
        path: PathBuf,
        overwrite: bool,
    },
    Stdout,
    /// A PostgreSQL database, loaded with pg_restore (or psql for globals).
    Postgres(PgConn),
    /// A MariaDB database, loaded with the mariadb client.
    Mariadb(MariaConn),
}

impl Target {
    /// Where the data went, for reports (never with a password).
    pub fn describe(&self) -> String {
        match self {
            Target::File { path, .. } => path.display().to_string(),
            Target::Stdout => "stdout".into(),
            Target::Postgres(conn) => format!("postgres://{}", conn.describe()),
            Target::Mariadb(conn) => format!("mariadb://{}", conn.describe()),
        }
    }

    /// `-` is stdout, `postgres://...` and `mariadb://...` are databases, anything else a file.
    pub fn parse(text: &str, overwrite: bool) -> Result<Self> {
        if text == "-" {
            Ok(Target::Stdout)
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(Target::Postgres(PgConn::from_url(text)?))
        } else if text.starts_with("mariadb://") || text.starts_with("mysql://") {
            Ok(Target::Mariadb(MariaConn::from_url(text)?))
        } else {
            Ok(Target::File {
                path: PathBuf::from(text),
                overwrite,
            })
        }
    }
}

/// How a restore into a database may treat the target.
#[derive(Clone, Copy, Debug, Default)]
pub struct RestoreOptions {
    /// Replace objects in a non-empty database (`pg_restore --clean --if-exists`).
    pub clean: bool,
    /// Create the target database when it does not exist (and drop it again if the restore fails).
    pub create: bool,
    /// Skip ownership and privileges (`--no-owner --no-privileges`): for servers without the roles.
    pub no_owner: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

pub use crate::data::OpenSummary;

/// Restore `backup` to `target`.
pub async fn restore(
    store: &Store,
    backup: &Backup,
    keys: &[Secret],
    target: &Target,
    options: RestoreOptions,
) -> Result<OpenSummary> {
    let source = Source {
        store,
        backup,
        keys,
        progress: options.progress,
    };
    match target {
        Target::Stdout => {
            let mut out = tokio::io::stdout();
            source.open_into(&mut out).await
        }
        Target::File { path, overwrite } => {
            let mut partial = PartialFile::create(path, *overwrite).await?;
            let summary = source.open_into(&mut partial.file).await?;
            crate::failpoint::hit("restore:written").await;
            partial.commit().await?;
            Ok(summary)
        }
        Target::Postgres(conn) => restore_into(&source, conn, options).await,
        Target::Mariadb(conn) => restore_into(&source, conn, options).await,
    }
}

/// Check that `backup` restores, without writing the plaintext anywhere.
pub async fn verify(
    store: &Store,
    backup: &Backup,
    keys: &[Secret],
    progress: bool,
) -> Result<OpenSummary> {
    let source = Source {
        store,
        backup,
        keys,
        progress,
    };
    source.open_into(&mut tokio::io::sink()).await
}

/// Failures talking to a restore target's server are target errors.
pub(super) fn as_target(e: Error) -> Error {
    Error::new(Class::Target, e.message().to_string())
}

/// Load the backup into `conn`'s database with the server's own loader.
pub(super) async fn restore_into<S: Server>(
    source: &Source<'_>,
    conn: &S,
    options: RestoreOptions,
) -> Result<OpenSummary> {
    let kind = source.kind();
    let loader = conn.loader(kind, options.clean, options.no_owner).ok_or_else(|| {
        Error::config(format!(
            "a backup of kind '{kind}' cannot be restored into {}: restore it to a file or to stdout and load it with the matching tool",
            S::PRODUCT
        ))
        .with_remedy(Remedy::RestoreToFile)
    })?;
    let created = if loader.whole_server {
        false
    } else {
        prepare_database(conn, options).await?
    };
    let result = source.feed_process(loader).await;
    if result.is_err() && created {
        let _ = conn.maintenance().drop_database(conn.database()).await;
    }
    result
}

/// Make sure the target database exists and is empty (unless `clean`); returns whether it was
/// created here.
async fn prepare_database<S: Server>(conn: &S, options: RestoreOptions) -> Result<bool> {
    let name = conn.database();
    let maintenance = conn.maintenance();
    if !maintenance.database_exists(name).await.map_err(as_target)? {
        if !options.create {
            return Err(Error::target(format!(
                "database '{name}' does not exist ({}): create it, or let coffre create it",
                conn.describe()
            ))
            .with_remedy(Remedy::CreateDatabase));
        }
        maintenance.create_database(name).await.map_err(as_target)?;
        return Ok(true);
    }
    let count = conn.user_object_count().await.map_err(as_target)?;
    if count > 0 && !options.clean {
        return Err(Error::target(format!(
            "database '{name}' is not empty ({count} objects, {}): restore into a fresh database, or replace what the backup holds",
            conn.describe()
        ))
        .with_remedy(Remedy::ReplaceContents));
    }
    Ok(false)
}

/// A backup being read, with what is needed to open it.
pub(super) struct Source<'a> {
    pub store: &'a Store,
    pub backup: &'a Backup,
    pub keys: &'a [Secret],
    pub progress: bool,
}

impl Source<'_> {
    fn kind(&self) -> &str {
        &self.backup.manifest.manifest.source.kind
    }

    /// Feed the backup to a loader process on its stdin. If the loader fails, its stderr
    /// explains why; if the backup fails, the loader is killed before it sees the end.
    async fn feed_process(&self, loader: Loader) -> Result<OpenSummary> {
        let program = loader.command.get_program().to_string_lossy().into_owned();
        let mut child = tokio::process::Command::from(loader.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Error::target(format!("cannot run '{program}': {e} (is it installed?)"))
            })?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let stderr_task = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf).await;
            buf
        });
        let opened = match loader.strip_definers {
            false => self.open_into(&mut stdin).await,
            true => {
                let mut filtered = StripDefiners::new(&mut stdin);
                let opened = self.open_into(&mut filtered).await;
                match (opened, filtered.shutdown().await) {
                    (Ok(_), Err(e)) => Err(Error::target(format!("writing to '{program}': {e}"))),
                    (opened, _) => opened,
                }
            }
        };
        if let Err(e) = &opened
            && e.class() != Class::Target
        {
            // The backup failed: the loader must not commit a partial restore.
            let _ = child.kill().await;
            return opened;
        }
        let _ = stdin.shutdown().await;
        drop(stdin);
        let status = child
            .wait()
            .await
            .map_err(|e| Error::target(format!("waiting for '{program}': {e}")))?;
        let stderr = stderr_task.await.unwrap_or_default();
        if !status.success() {
            return Err(Error::target(format!(
                "'{program}' failed with {}: {}",
                describe_status(status),
                stderr_summary(&stderr)
            )));
        }
        opened
    }

    /// Decrypt and decompress the backup into `out`, checking everything against its manifest.
    async fn open_into<W: AsyncWrite + Unpin>(&self, out: &mut W) -> Result<OpenSummary> {
        data::open(self.store, self.backup, self.keys, out, self.progress).await
    }
}
