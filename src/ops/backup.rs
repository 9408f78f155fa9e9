//! The backup pipeline: source -> zstd -> seal -> upload -> manifest (committed last).
//!
//! Two stages run concurrently, joined by a bounded pipe: the dump is compressed and sealed on
//! one side while the other uploads it in parts. The data object becomes visible only when both
//! stages and the dump tool succeeded, and the manifest is written only after that: a failed
//! backup leaves nothing that `list` or `restore` would see, and its upload is aborted.

use async_compression::Level;
use async_compression::tokio::bufread::ZstdEncoder;
use chrono::Utc;
use tokio::io::{AsyncRead, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{Compression, Job};
use crate::crypto::Dek;
use crate::crypto::format::{self, FormatError, Header, StreamStats};
use crate::crypto::keys::{self, Secret};
use crate::error::{Error, Result};
use crate::manifest::{FORMAT, Manifest};
use crate::metered::Metered;
use crate::secretstore::Resolver;
use crate::source;
use crate::store::{BackupRef, Store};

use super::prune::{self, PruneOutcome};
use super::{Context, STOP_GRACE};

/// Bytes buffered between the sealing and the uploading stage.
const PIPE_BYTES: usize = 1 << 20;

/// What a finished backup reports.
#[derive(Debug)]
pub struct BackupSummary {
    pub location: BackupRef,
    pub manifest: Manifest,
}

/// The backups one job made, and the dumps that failed.
#[derive(Debug, Default)]
pub struct JobOutcome {
    pub job: String,
    pub backups: Vec<BackupSummary>,
    pub failures: Vec<Error>,
    /// The prune after a successful backup (`prune_after_backup`), when the job asks for one.
    pub prune: Option<Result<PruneOutcome>>,
}

/// Back up `jobs` one after the other, each pruned after a successful backup when it asks for
/// it. A failed job does not stop the others; a stop request (SIGTERM) does.
pub async fn backup_jobs(ctx: &Context, jobs: &[&Job], recipients: &[Secret]) -> Vec<JobOutcome> {
    let mut outcomes = Vec::new();
    for job in jobs {
        if ctx.stop.is_cancelled() {
            break;
        }
        let mut outcome = match run(&ctx.store, job, recipients, &ctx.config.secrets).await {
            Ok(outcome) => outcome,
            Err(e) => JobOutcome {
                job: job.name.clone(),
                failures: vec![e],
                ..JobOutcome::default()
            },
        };
        if !outcome.backups.is_empty() && job.retention.prune_after_backup {
            outcome.prune = Some(prune::prune(&ctx.store, &[job], Utc::now(), false).await);
        }
        outcomes.push(outcome);
    }
    outcomes
}

/// Back up `job` into `store`, encrypted to every key in `recipients`: one backup per dump the
/// job plans (a job over all databases of a server makes one per database). A failed dump does
/// not stop the others.
pub async fn run(
    store: &Store,
    job: &Job,
    recipients: &[Secret],
    secrets: &Resolver,
) -> Result<JobOutcome> {
    if recipients.is_empty() {
        return Err(Error::config(
            "no encryption key configured: add at least one entry to [encryption] keys (see 'coffre key generate')",
        ));
    }
    let plans = source::plan(&job.source, secrets)
        .await
        .map_err(|e| e.context(format!("job '{}'", job.name)))?;
    let mut outcome = JobOutcome {
        job: job.name.clone(),
        ..JobOutcome::default()
    };
    for plan in &plans {
        match run_one(store, job, plan, recipients).await {
            Ok(summary) => outcome.backups.push(summary),
            Err(e) => {
                let what = match &plan.info.database {
                    Some(db) => format!("job '{}', database '{db}'", job.name),
                    None => format!("job '{}'", job.name),
                };
                outcome.failures.push(e.context(what));
            }
        }
    }
    Ok(outcome)
}

/// One backup of one planned dump, within the job's timeout.
async fn run_one(
    store: &Store,
    job: &Job,
    plan: &source::DumpPlan,
    recipients: &[Secret],
) -> Result<BackupSummary> {
    let started_at = Utc::now();
    let deadline = tokio::time::Instant::now() + job.timeout.0;
    let backup_id = Uuid::new_v4();
    let location = BackupRef::new(&job.name, started_at, backup_id);
    let dek = Dek::generate();
    let header = Header::new(&dek, backup_id, job.chunk_log2)
        .map_err(|e| Error::config(format!("job '{}': {e}", job.name)))?;
    // Wrap first: a bad key fails the job before the dump starts.
    let stanzas = keys::wrap_blocking(recipients, &dek, backup_id).await?;

    crate::failpoint::hit("backup:before-dump").await;
    let dump = plan.start()?;
    let info = plan.info.clone();
    tracing::info!(job = %job.name, backup = %backup_id, database = info.database.as_deref(), "backup started");
    crate::failpoint::hit("backup:dump-started").await;

    // Past the deadline the upload stops (and is aborted), and no manifest is written: prune
    // counts on a backup being over once its timeout has passed. A transfer that does not stop
    // within the grace after that is dropped, which kills its dump.
    let stop = store.stop_token();
    let deadline_passed = std::sync::atomic::AtomicBool::new(false);
    let watchdog = async {
        tokio::time::sleep_until(deadline).await;
        deadline_passed.store(true, std::sync::atomic::Ordering::SeqCst);
        stop.cancel();
        tokio::time::sleep(STOP_GRACE).await;
    };
    let transferred = tokio::select! {
        result = transfer(store, job, &location, (&dek, &header), dump, &stop) => result,
        () = watchdog => Err(Error::source_failed("the transfer did not stop")),
    };
    let timed_out = || deadline_passed.load(std::sync::atomic::Ordering::SeqCst);
    let timeout_error = || {
        Error::source_failed(format!(
            "job '{}': backup {backup_id} ran longer than the job's timeout ({}) and was stopped: raise 'timeout' in {} if it needs longer",
            job.name,
            job.timeout,
            job.file.display()
        ))
    };
    let data = match transferred {
        Err(_) if timed_out() => return Err(timeout_error()),
        other => other?,
    };
    crate::failpoint::hit("backup:data-complete").await;

    let retain_until = job
        .object_lock
        .map(|lock| Utc::now() + chrono::Duration::days(i64::from(lock.days)));
    let manifest = Manifest {
        format: FORMAT.into(),
        backup_id,
        job: job.name.clone(),
        source: info,
        started_at,
        finished_at: Utc::now(),
        compression: job.compression.name().into(),
        chunk_log2: job.chunk_log2,
        plaintext_bytes: data.plaintext_bytes,
        payload_bytes: data.stats.payload_bytes,
        stored_bytes: data.stored_bytes,
        chunks: data.stats.chunks,
        data_sha256: data.sha256,
        retain_until,
        lock_mode: job.object_lock.map(|lock| lock.mode),
        keys: stanzas,
        mac: String::new(),
    };
    let bytes = manifest.clone().seal(&dek, &header.salt)?;
    crate::failpoint::hit("backup:manifest-sealed").await;
    if tokio::time::Instant::now() >= deadline {
        if let Err(e) = store.delete_data(&location).await {
            tracing::warn!("{e}");
        }
        return Err(timeout_error());
    }
    store.put_manifest(&location, bytes).await?;
    store.check_data_still_there(&location).await?;
    crate::failpoint::hit("backup:manifest-written").await;
    if let (Some(lock), Some(until)) = (job.object_lock, retain_until) {
        store
            .lock_backup(&location, lock.mode, until)
            .await
            .map_err(|e| e.context(format!("backup {backup_id} is complete but not locked")))?;
    }
    tracing::info!(job = %job.name, backup = %backup_id, "backup complete");
    Ok(BackupSummary { location, manifest })
}

/// What the data object of a finished transfer holds.
struct Transferred {
    plaintext_bytes: u64,
    stats: StreamStats,
    stored_bytes: u64,
    sha256: String,
}

/// Dump, compress and seal into a staged upload, and complete it only if every stage and the
/// dump tool succeeded; otherwise abort it. Stops when `stop` is cancelled.
async fn transfer(
    store: &Store,
    job: &Job,
    location: &BackupRef,
    (dek, header): (&Dek, &Header),
    dump: source::Dump,
    stop: &CancellationToken,
) -> Result<Transferred> {
    let (pipe_reader, pipe_writer) = tokio::io::simplex(PIPE_BYTES);
    let upload_stage = async {
        // The pipe's reader is dropped when this stage ends, so a failed upload also
        // stops the sealing side instead of leaving it blocked on a full pipe.
        let mut uploaded = Metered::hashing(pipe_reader);
        let staged = store.stage_data(location, &mut uploaded, stop).await;
        (staged, uploaded.bytes(), uploaded.sha256_hex())
    };
    // A failed seal closes the pipe, and the upload then ends and is aborted below. A failed
    // upload must not wait for the dump: dropping the sealing stage kills the dump tool.
    let (sealed, (staged, stored_bytes, sha256)) = {
        let seal = seal_stage(job, dek, header, dump, pipe_writer);
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
            Ok(Transferred {
                plaintext_bytes,
                stats,
                stored_bytes,
                sha256,
            })
        }
        (sealed, staged) => Err(abort(sealed, staged).await),
    }
}

/// Abort a failed backup's upload and pick the error that explains it.
async fn abort(
    sealed: Result<(u64, StreamStats)>,
    staged: Result<crate::store::StagedUpload>,
) -> Error {
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
        // The store failing closes the pipe, so the sealing side then fails to write: the
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
    dump: source::Dump,
    mut out: W,
) -> Result<(u64, StreamStats)>
where
    W: tokio::io::AsyncWrite + Unpin,
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
