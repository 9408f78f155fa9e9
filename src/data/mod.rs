//! What a backup stores besides its manifest, by format version, behind one writer and one
//! reader: backup, restore, verify, prune and key changes call these, never a version's layout
//! directly. Format v1 (`v1`) is one sealed data object per backup; format v2 (`v2`) stores
//! each chunk of the dump once per job.

pub mod holders;
mod target;
pub mod v1;
pub mod v2;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::config::Job;
use crate::crypto::keys::{Secret, Stanza, SymmetricKey};
use crate::error::{Error, Result};
use crate::manifest::{Layout, LockMode, Manifest, SourceInfo};
use crate::source::Dump;
use crate::store::{Backup, BackupRef, Store};

/// What was restored or verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSummary {
    pub stored_bytes: u64,
    pub payload_bytes: u64,
    pub plaintext_bytes: u64,
    pub chunks: u64,
}

/// A backup being written, in the format its job asks for.
pub enum Writer {
    V1(Box<v1::Writer>),
    V2(Box<v2::Writer>),
}

impl Writer {
    /// Keys first: a bad key fails the job before the dump starts. `series` is the database
    /// (or source kind) the dump is of: v2 dedups against that series' newest backup.
    pub async fn new(
        store: &Store,
        job: &Job,
        location: &BackupRef,
        recipients: &[Secret],
        dedup_key: Option<&SymmetricKey>,
        series: &str,
    ) -> Result<Self> {
        Ok(match job.format {
            1 => Writer::V1(Box::new(v1::Writer::new(job, location, recipients).await?)),
            _ => Writer::V2(Box::new(
                v2::Writer::new(store, job, location, recipients, dedup_key, series).await?,
            )),
        })
    }

    /// Store the dump; nothing is visible until `finish`.
    pub async fn transfer(
        &mut self,
        store: &Store,
        job: &Job,
        dump: Dump,
        stop: &CancellationToken,
    ) -> Result<()> {
        match self {
            Writer::V1(w) => w.transfer(store, job, dump, stop).await,
            Writer::V2(w) => w.transfer(store, job, dump, stop).await,
        }
    }

    /// Write the manifest, last: the backup exists from then on. The manifest and the
    /// stanzas that open the backup.
    pub async fn finish(
        self,
        store: &Store,
        job: &Job,
        source: SourceInfo,
        started_at: DateTime<Utc>,
    ) -> Result<(Manifest, Layout, Vec<Stanza>)> {
        match self {
            Writer::V1(w) => w.finish(store, job, source, started_at).await,
            Writer::V2(w) => w.finish(store, job, source, started_at).await,
        }
    }

    /// Remove what a backup that gets no manifest wrote in its own directory.
    pub async fn discard(self, store: &Store) -> Result<()> {
        match self {
            Writer::V1(w) => w.discard(store).await,
            Writer::V2(w) => w.discard(store).await,
        }
    }
}

/// The end of a backup in every format: the manifest written last, the backup's own objects
/// (`own`) checked still there (a prune cannot have taken them meanwhile), then locked with it
/// when the job locks.
async fn put_manifest_last(
    store: &Store,
    location: &BackupRef,
    manifest: Vec<u8>,
    own: &[&str],
    lock: Option<(LockMode, DateTime<Utc>)>,
) -> Result<()> {
    crate::failpoint::hit("backup:manifest-sealed").await;
    store.put_manifest(location, manifest).await?;
    store.check_objects_still_there(location, own).await?;
    crate::failpoint::hit("backup:manifest-written").await;
    if let Some((mode, until)) = lock {
        store
            .lock_objects(location, own, mode, until)
            .await
            .map_err(|e| e.context(format!("backup {} is complete but not locked", location.id)))?;
    }
    Ok(())
}

/// Restore `backup` into `out`, every byte authenticated, with a progress bar on stderr when
/// `progress`.
pub async fn open<W: AsyncWrite + Unpin>(
    store: &Store,
    backup: &Backup,
    secrets: &[Secret],
    out: &mut W,
    progress: bool,
) -> Result<OpenSummary> {
    match &backup.manifest.layout {
        Layout::V1(_) => v1::open(store, backup, secrets, out, progress).await,
        Layout::V2(_) => v2::open(store, backup, secrets, out, progress).await,
    }
}

/// The key stanzas that open `backup` (v2: its own session's).
pub async fn stanzas(store: &Store, backup: &Backup) -> Result<Vec<Stanza>> {
    match &backup.manifest.layout {
        Layout::V1(v1) => Ok(v1.keys.clone()),
        Layout::V2(_) => v2::stanzas(store, backup).await,
    }
}

/// A progress bar of `total` bytes on stderr.
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(
            "{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template"),
    )
}

/// `reader`, counted on a progress bar of `total` bytes on stderr.
fn with_progress(
    reader: Box<dyn AsyncRead + Send + Unpin>,
    total: u64,
) -> Box<dyn AsyncRead + Send + Unpin> {
    Box::new(progress_bar(total).wrap_async_read(reader))
}

/// For messages: an object holding key stanzas that no longer exists.
pub fn gone(name: &str) -> Error {
    Error::not_found(format!(
        "{name} was deleted meanwhile (a prune?), so it was not rewritten"
    ))
}
