//! Restore and verify: manifest -> key -> download -> open -> unzstd -> target.
//!
//! Every check the format offers runs on every restore: the key commitment, the manifest mac,
//! every chunk tag, the final-chunk flag, and the manifest's counts and data_sha256. A file
//! target is written to an unnamed file and given its name only when all of them held
//! (`partial_file`), so a tampered or truncated backup, or a killed restore, never leaves
//! plaintext at the path the user asked for, or beside it.

use async_compression::tokio::write::ZstdDecoder;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

use super::partial_file::PartialFile;
use crate::crypto::format::{self, FormatError, Header};
use crate::crypto::keys::{self as crypto_keys, Secret};
use crate::db::definer::StripDefiners;
use crate::db::mariadb::MariaConn;
use crate::db::postgres::PgConn;
use crate::db::{Loader, Server, stderr_summary};
use crate::error::{Class, Error, Remedy, Result};
use crate::metered::Metered;
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

/// What was restored or verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSummary {
    pub stored_bytes: u64,
    pub payload_bytes: u64,
    pub plaintext_bytes: u64,
    pub chunks: u64,
}

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
        let (store, backup, keys) = (self.store, self.backup, self.keys);
        let m = &backup.manifest.manifest;
        let dek = crypto_keys::unwrap_blocking(&m.keys, keys, m.backup_id).await?;
        let raw = store.read_data(&backup.location).await?;
        let raw = if self.progress {
            let bar = indicatif::ProgressBar::new(m.stored_bytes).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} eta {eta}",
                )
                .expect("valid template"),
            );
            Box::new(bar.wrap_async_read(raw)) as Box<dyn AsyncRead + Send + Unpin>
        } else {
            raw
        };
        let mut data = Metered::hashing(raw);
        let header = Header::read_from(&mut data).await.map_err(open_error)?;
        if header.backup_id != m.backup_id {
            return Err(Error::integrity(format!(
                "the data object belongs to backup {}, not {}",
                header.backup_id, m.backup_id
            )));
        }
        header.check_commitment(&dek).map_err(open_error)?;
        backup.manifest.verify_mac(&dek, &header.salt)?;
        if header.chunk_log2 != m.chunk_log2 {
            return Err(Error::integrity(
                "the data object's chunk size differs from the manifest's",
            ));
        }

        crate::failpoint::hit("restore:opened").await;
        // The decoder writes small pieces; hand the target large ones (stdout, a pipe into
        // pg_restore and a file all cost a system call or a thread hand-off per write).
        let mut plaintext = Metered::counting(TargetWriter(BufWriter::with_capacity(1 << 20, out)));
        let stats = match m.compression.as_str() {
            "zstd" => {
                let mut decoder = ZstdDecoder::new(&mut plaintext);
                let stats = format::open(&dek, &header, &mut data, &mut decoder)
                    .await
                    .map_err(open_error)?;
                decoder
                    .shutdown()
                    .await
                    .map_err(|e| open_error(FormatError::Write(e)))?;
                stats
            }
            "none" => {
                let stats = format::open(&dek, &header, &mut data, &mut plaintext)
                    .await
                    .map_err(open_error)?;
                plaintext
                    .flush()
                    .await
                    .map_err(|e| Error::target(format!("writing the restored data: {e}")))?;
                stats
            }
            other => {
                return Err(Error::integrity(format!(
                    "the manifest names compression '{other}', which this coffre does not know"
                )));
            }
        };

        let summary = OpenSummary {
            stored_bytes: data.bytes(),
            payload_bytes: stats.payload_bytes,
            plaintext_bytes: plaintext.bytes(),
            chunks: stats.chunks,
        };
        let expected = OpenSummary {
            stored_bytes: m.stored_bytes,
            payload_bytes: m.payload_bytes,
            plaintext_bytes: m.plaintext_bytes,
            chunks: m.chunks,
        };
        if summary != expected {
            return Err(Error::integrity(format!(
                "the backup does not match its manifest: read {summary:?}, manifest says {expected:?}"
            )));
        }
        if data.sha256_hex() != m.data_sha256 {
            return Err(Error::integrity(
                "data_sha256 of the data object does not match the manifest",
            ));
        }
        Ok(summary)
    }
}

fn open_error(e: FormatError) -> Error {
    match e {
        FormatError::Read(io) => Error::store(format!("downloading the data object: {io}")),
        // zstd reports a corrupt payload as a write error of the decoder; the target's own
        // failures are marked as such on their way through it.
        FormatError::Write(io) if io.get_ref().is_some_and(|e| e.is::<TargetFailed>()) => {
            Error::target(format!("writing the restored data: {io}"))
        }
        FormatError::Write(io) => {
            Error::integrity(format!("the decrypted payload does not decompress: {io}"))
        }
        integrity => Error::integrity(integrity.to_string()),
    }
}

/// A write to the restore target that failed, carried inside the io errors that pass through
/// the decoder, so that it is not taken for a corrupt payload.
#[derive(Debug)]
struct TargetFailed(std::io::Error);

impl std::fmt::Display for TargetFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TargetFailed {}

/// The restore target, marking each of its errors as a `TargetFailed`.
struct TargetWriter<W>(W);

fn target_failed(e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), TargetFailed(e))
}

impl<W: AsyncWrite + Unpin> AsyncWrite for TargetWriter<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0)
            .poll_write(cx, buf)
            .map_err(target_failed)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0)
            .poll_flush(cx)
            .map_err(target_failed)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0)
            .poll_shutdown(cx)
            .map_err(target_failed)
    }
}
