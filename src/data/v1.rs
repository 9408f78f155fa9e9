//! Format v1 (docs/FORMAT.md): a backup is one data object, `data.cfr` (the dump, zstd, sealed
//! in STREAM chunks under the backup's own DEK), beside `manifest.json`, which holds the key
//! stanzas and a mac over the rest.
//!
//! Writing runs two stages concurrently, joined by a bounded pipe: the dump is compressed and
//! sealed on one side while the other uploads it in parts. The data object becomes visible
//! only when both stages and the dump tool succeeded, and the manifest is written only after
//! that. Reading checks everything the format offers: the key commitment, the manifest mac,
//! every chunk tag, the final-chunk flag, and the manifest's counts and data_sha256.

use async_compression::Level;
use async_compression::tokio::bufread::ZstdEncoder;
use async_compression::tokio::write::ZstdDecoder;
use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio_util::sync::CancellationToken;

use super::OpenSummary;
use super::target::{TargetWriter, is_target_failure};
use crate::config::{Compression, Job};
use crate::crypto::Dek;
use crate::crypto::format::{self, FormatError, Header, StreamStats};
use crate::crypto::keys::{self, Secret, Stanza};
use crate::error::{Error, Result};
use crate::manifest::{FORMAT_V1, Layout, MacKey, Manifest, SourceInfo, V1Layout};
use crate::metered::Metered;
use crate::source::Dump;
use crate::store::{Backup, BackupRef, StagedUpload, Store};

/// The data object's name in the backup's directory.
pub const DATA_FILE: &str = "data.cfr";

/// Bytes buffered between the sealing and the uploading stage.
const PIPE_BYTES: usize = 1 << 20;

/// A v1 backup being written: its key, sealed for every recipient before the dump starts (a
/// bad key fails the job first), and what the transfer produced.
pub struct Writer {
    location: BackupRef,
    dek: Dek,
    header: Header,
    stanzas: Vec<Stanza>,
    transferred: Option<Transferred>,
}

/// What the data object of a finished transfer holds.
struct Transferred {
    plaintext_bytes: u64,
    stats: StreamStats,
    stored_bytes: u64,
    sha256: String,
}

impl Writer {
    pub async fn new(job: &Job, location: &BackupRef, recipients: &[Secret]) -> Result<Self> {
        let dek = Dek::generate();
        let header = Header::new(&dek, location.id, job.chunk_log2)
            .map_err(|e| Error::config(format!("job '{}': {e}", job.name)))?;
        let stanzas = keys::wrap_blocking(recipients, &dek, location.id).await?;
        Ok(Self {
            location: location.clone(),
            dek,
            header,
            stanzas,
            transferred: None,
        })
    }

    /// Dump, compress and seal into a staged upload, and complete it only if every stage and
    /// the dump tool succeeded; otherwise abort it. Stops when `stop` is cancelled.
    pub async fn transfer(
        &mut self,
        store: &Store,
        job: &Job,
        dump: Dump,
        stop: &CancellationToken,
    ) -> Result<()> {
        let (pipe_reader, pipe_writer) = tokio::io::simplex(PIPE_BYTES);
        let upload_stage = async {
            // The pipe's reader is dropped when this stage ends, so a failed upload also
            // stops the sealing side instead of leaving it blocked on a full pipe.
            let mut uploaded = Metered::hashing(pipe_reader);
            let staged = store
                .stage_object(&self.location, DATA_FILE, &mut uploaded, stop)
                .await;
            (staged, uploaded.bytes(), uploaded.sha256_hex())
        };
        // A failed seal closes the pipe, and the upload then ends and is aborted below. A
        // failed upload must not wait for the dump: dropping the sealing stage kills the tool.
        let (sealed, (staged, stored_bytes, sha256)) = {
            let seal = seal_stage(job, &self.dek, &self.header, dump, pipe_writer);
            tokio::pin!(seal, upload_stage);
            tokio::select! {
                sealed = &mut seal => (sealed, upload_stage.await),
                uploaded = &mut upload_stage => match &uploaded.0 {
                    // Every byte is uploaded; the dump tool still has to exit, unless told to stop.
                    Ok(_) => tokio::select! {
                        sealed = &mut seal => (sealed, uploaded),
                        () = stop.cancelled() => {
                            (Err(Error::interrupted("the dump tool did not exit before the stop")), uploaded)
                        }
                    },
                    Err(_) => (Err(Error::store("the upload stopped")), uploaded),
                },
            }
        };
        match (sealed, staged) {
            (Ok((plaintext_bytes, stats)), Ok(staged)) => {
                crate::failpoint::hit("backup:staged").await;
                staged.complete().await?;
                self.transferred = Some(Transferred {
                    plaintext_bytes,
                    stats,
                    stored_bytes,
                    sha256,
                });
                Ok(())
            }
            (sealed, staged) => Err(abort(sealed, staged).await),
        }
    }

    /// Write the manifest (last), check the data is still there, and lock both objects when
    /// the job asks for Object Lock. The manifest it wrote, and the stanzas that open it.
    pub async fn finish(
        self,
        store: &Store,
        job: &Job,
        source: SourceInfo,
        started_at: DateTime<Utc>,
    ) -> Result<(Manifest, Layout, Vec<Stanza>)> {
        let data = self
            .transferred
            .ok_or_else(|| Error::internal("a v1 backup finished before its transfer"))?;
        let retain_until = job
            .object_lock
            .map(|lock| Utc::now() + chrono::Duration::days(i64::from(lock.days)));
        let manifest = Manifest {
            format: FORMAT_V1.into(),
            backup_id: self.location.id,
            job: job.name.clone(),
            source,
            started_at,
            finished_at: crate::clock::now(),
            compression: job.compression.name().into(),
            plaintext_bytes: data.plaintext_bytes,
            stored_bytes: data.stored_bytes,
            chunks: data.stats.chunks,
            retain_until,
            lock_mode: job.object_lock.map(|lock| lock.mode),
            mac: String::new(),
        };
        let layout = Layout::V1(V1Layout {
            chunk_log2: job.chunk_log2,
            payload_bytes: data.stats.payload_bytes,
            data_sha256: data.sha256,
            keys: self.stanzas.clone(),
        });
        let (bytes, manifest) = manifest.seal(&layout, MacKey::V1(&self.dek, &self.header.salt))?;
        let lock = job.object_lock.zip(retain_until);
        let lock = lock.map(|(lock, until)| (lock.mode, until));
        super::put_manifest_last(store, &self.location, bytes, &[DATA_FILE], lock).await?;
        Ok((manifest, layout, self.stanzas))
    }

    /// Remove what a backup that gets no manifest wrote.
    pub async fn discard(self, store: &Store) -> Result<()> {
        store.delete_object(&self.location, DATA_FILE).await
    }
}

/// Abort a failed backup's upload and pick the error that explains it.
async fn abort(sealed: Result<(u64, StreamStats)>, staged: Result<StagedUpload>) -> Error {
    let seal_err = sealed.err();
    let store_err = match staged {
        Ok(staged) => {
            if let Err(e) = staged.abort().await {
                tracing::warn!("{e}");
            }
            None
        }
        Err(e) => Some(e),
    };
    match (seal_err, store_err) {
        // The store failing closes the pipe, and the sealing side then fails to write: the
        // store's error is the cause.
        (Some(seal), Some(store)) if seal.class() == crate::error::Class::Store => store,
        (Some(seal), _) => seal,
        (None, Some(store)) => store,
        (None, None) => Error::internal("backup failed without an error"),
    }
}

/// Compress and seal the dump into `out`; succeed only if the dump tool did.
/// Returns the dump's size and the seal totals.
async fn seal_stage<W>(
    job: &Job,
    dek: &Dek,
    header: &Header,
    dump: Dump,
    mut out: W,
) -> Result<(u64, StreamStats)>
where
    W: AsyncWrite + Unpin,
{
    let mut plaintext = Metered::counting(dump.reader);
    let payload: Box<dyn AsyncRead + Send + Unpin + '_> = match job.compression {
        Compression::Zstd => Box::new(ZstdEncoder::with_quality(
            BufReader::with_capacity(256 * 1024, &mut plaintext),
            Level::Precise(job.zstd_level),
        )),
        Compression::None => Box::new(&mut plaintext),
    };
    let stats = format::seal(dek, header, payload, &mut out)
        .await
        .map_err(|e| seal_error(e, &job.name))?;
    out.shutdown()
        .await
        .map_err(|e| Error::store(format!("finishing the upload stream: {e}")))?;
    dump.exit.wait_success().await?;
    Ok((plaintext.bytes(), stats))
}

fn seal_error(e: FormatError, job: &str) -> Error {
    match e {
        FormatError::Read(io) => {
            Error::source_failed(format!("job '{job}': reading the dump failed: {io}"))
        }
        FormatError::Write(io) => Error::store(format!("job '{job}': the upload stopped: {io}")),
        other => Error::internal(format!("job '{job}': sealing failed: {other}")),
    }
}

/// Decrypt and decompress `backup` into `out`, checking everything against its manifest.
pub async fn open<W: AsyncWrite + Unpin>(
    store: &Store,
    backup: &Backup,
    secrets: &[Secret],
    out: &mut W,
    progress: bool,
) -> Result<OpenSummary> {
    let m = &backup.manifest.manifest;
    let Layout::V1(layout) = &backup.manifest.layout else {
        return Err(Error::internal("a v2 backup read as v1"));
    };
    let dek = keys::unwrap_blocking(&layout.keys, secrets, m.backup_id).await?;
    let raw = store.read_object(&backup.location, DATA_FILE).await?;
    let raw = match progress {
        true => super::with_progress(raw, m.stored_bytes),
        false => raw,
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
    backup.manifest.verify_mac(MacKey::V1(&dek, &header.salt))?;
    if header.chunk_log2 != layout.chunk_log2 {
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
        payload_bytes: layout.payload_bytes,
        plaintext_bytes: m.plaintext_bytes,
        chunks: m.chunks,
    };
    if summary != expected {
        return Err(Error::integrity(format!(
            "the backup does not match its manifest: read {summary:?}, manifest says {expected:?}"
        )));
    }
    if data.sha256_hex() != layout.data_sha256 {
        return Err(Error::integrity(
            "data_sha256 of the data object does not match the manifest",
        ));
    }
    Ok(summary)
}

fn open_error(e: FormatError) -> Error {
    match e {
        FormatError::Read(io) => Error::store(format!("downloading the data object: {io}")),
        // zstd reports a corrupt payload as a write error of the decoder; the target's own
        // failures are marked as such on their way through it.
        FormatError::Write(io) if is_target_failure(&io) => {
            Error::target(format!("writing the restored data: {io}"))
        }
        FormatError::Write(io) => {
            Error::integrity(format!("the decrypted payload does not decompress: {io}"))
        }
        integrity => Error::integrity(integrity.to_string()),
    }
}

/// Replace the key stanzas of `backup`: its manifest, rewritten whole.
pub async fn rewrite_keys(store: &Store, backup: &Backup, stanzas: Vec<Stanza>) -> Result<()> {
    let bytes = backup.manifest.with_keys(stanzas)?;
    store.rewrite_manifest(backup, bytes, &[DATA_FILE]).await
}
