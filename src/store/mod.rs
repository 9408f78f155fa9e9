//! The backup store: object layout, listing, manifests and data objects over `object_store`.
//!
//! ```text
//! {prefix}/{job}/{YYYYmmddTHHMMSSZ}-{backup_id}/data.cfr
//! {prefix}/{job}/{YYYYmmddTHHMMSSZ}-{backup_id}/manifest.json   (written last)
//! ```
//! A backup exists only once its manifest does. Paths are built here and nowhere else.

mod backend;
mod runs;
mod s3;
mod upload;

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{
    GetResultPayload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{StoreConfig, UploadConfig};
use crate::error::{Error, Remedy, Result};
use crate::manifest::{LockMode, StoredManifest};
use crate::secretstore::Resolver;

pub use runs::RunRecord;
pub use upload::{PartSizing, StagedUpload};

const DATA_FILE: &str = "data.cfr";
const MANIFEST_FILE: &str = "manifest.json";
const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";
/// The largest manifest coffre reads: real ones are a few KiB.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// Beside the job directories: the last run of each job, and the locks of jobs running now.
/// Job names start with a letter or digit, so these never collide with a job.
const RUNS_DIR: &str = "_runs";
const LOCKS_DIR: &str = "_locks";
/// Audit events, one object each, never overwritten (`_audit/rotation/YYYY/MM/DD/...`).
const AUDIT_DIR: &str = "_audit";
/// Run records and locks are small JSON objects.
const MAX_SMALL_OBJECT_BYTES: u64 = 64 * 1024;

/// Where one backup lives: job, start time (to the second) and id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackupRef {
    pub job: String,
    pub time: DateTime<Utc>,
    pub id: Uuid,
}

impl BackupRef {
    /// The time is kept to the second, as the directory name records it.
    pub fn new(job: &str, time: DateTime<Utc>, id: Uuid) -> Self {
        Self {
            job: job.to_string(),
            time: time.trunc_subsecs(0),
            id,
        }
    }

    fn dir_name(&self) -> String {
        format!("{}-{}", self.time.format(TIME_FORMAT), self.id)
    }

    /// Parse `{YYYYmmddTHHMMSSZ}-{uuid}`.
    fn parse_dir(job: &str, dir: &str) -> Option<Self> {
        let (time, id) = dir.split_once('-')?;
        let time = NaiveDateTime::parse_from_str(time, TIME_FORMAT)
            .ok()?
            .and_utc();
        let id = Uuid::parse_str(id).ok()?;
        Some(Self::new(job, time, id))
    }
}

/// A backup whose manifest exists.
#[derive(Clone, Debug)]
pub struct Backup {
    pub location: BackupRef,
    pub manifest: StoredManifest,
}

/// What a listing found. One bad manifest never hides the others: it is reported in
/// `damaged` and the listing goes on.
#[derive(Debug, Default)]
pub struct Listing {
    pub complete: Vec<Backup>,
    /// Backup directories without a manifest: in progress, or failed and not yet cleaned.
    pub incomplete: Vec<BackupRef>,
    /// Backups whose manifest could not be read or is not a valid manifest.
    pub damaged: Vec<Damaged>,
    /// Backups whose manifest was listed but was gone when read: deleted meanwhile (by a
    /// concurrent prune), not damaged.
    pub vanished: Vec<BackupRef>,
}

/// A backup whose manifest could not be used, and why.
#[derive(Debug)]
pub struct Damaged {
    pub location: BackupRef,
    pub error: Error,
}

impl Damaged {
    /// Whether the manifest was read and found bad (rather than not read at all: a store
    /// outage, a permission): only then is the damage known to stay.
    pub fn is_content(&self) -> bool {
        self.error.class() == crate::error::Class::Integrity
    }
}

/// Something an unfinished backup left that listings do not show.
#[derive(Clone, Debug)]
pub enum Leftover {
    /// A local store's staging file (`data.cfr#N`), which becomes `data.cfr` on completion.
    Staging(std::path::PathBuf),
    /// An S3 multipart upload that was neither completed nor aborted.
    Upload(s3::OpenUpload),
}

/// A leftover and the backup it belongs to.
#[derive(Clone, Debug)]
pub struct Stray {
    pub location: BackupRef,
    pub leftover: Leftover,
}

/// The backup directories a listing of object names found, before any manifest is read.
struct Scan {
    /// directory -> size of its manifest, if it has one
    dirs: BTreeMap<BackupRef, Option<u64>>,
}

pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// The directory of a local store, where symlinks are checked: none is followed.
    local_root: Option<std::path::PathBuf>,
    prefix: ObjectPath,
    description: String,
    sizing: PartSizing,
    s3: Option<s3::S3Api>,
    cancel: CancellationToken,
}

impl Store {
    pub async fn open(
        config: &StoreConfig,
        upload: &UploadConfig,
        secrets: &Resolver,
    ) -> Result<Self> {
        let backend = backend::build(config, upload, secrets).await?;
        let mut store = Self::new(backend.store, config.prefix(), backend.description);
        store.s3 = backend.s3;
        store.local_root = backend.local_root;
        store.sizing = PartSizing {
            initial: upload.part_size_mib << 20,
            concurrency: upload.concurrency,
            ..PartSizing::default()
        };
        Ok(store)
    }

    pub fn new(inner: Arc<dyn ObjectStore>, prefix: &str, description: String) -> Self {
        Self {
            inner,
            local_root: None,
            prefix: ObjectPath::from(prefix),
            description,
            sizing: PartSizing::default(),
            s3: None,
            cancel: CancellationToken::new(),
        }
    }

    /// Stop uploads in progress when `token` is cancelled (on SIGTERM): each is aborted and
    /// its backup fails, instead of the process dying with a multipart upload left open.
    pub fn stop_uploads_on(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Lock both objects of a backup until `until` (S3 Object Lock).
    pub async fn lock_backup(
        &self,
        r: &BackupRef,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<()> {
        let locker = self.locker(self.backup_dir(r))?;
        locker.retain(&self.data_path(r), mode, until).await?;
        locker.retain(&self.manifest_path(r), mode, until).await
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    fn job_dir(&self, job: &str) -> ObjectPath {
        self.prefix.clone().join(job)
    }

    fn backup_dir(&self, r: &BackupRef) -> ObjectPath {
        self.job_dir(&r.job).join(r.dir_name())
    }

    pub fn data_path(&self, r: &BackupRef) -> ObjectPath {
        self.backup_dir(r).join(DATA_FILE)
    }

    pub fn manifest_path(&self, r: &BackupRef) -> ObjectPath {
        self.backup_dir(r).join(MANIFEST_FILE)
    }

    /// A token cancelled when uploads must stop (SIGTERM); a backup adds its own deadline to
    /// a child of it.
    pub fn stop_token(&self) -> CancellationToken {
        self.cancel.child_token()
    }

    /// Stream `reader` into the data object of `r`, until `stop` is cancelled. Nothing is
    /// visible until `complete`.
    pub async fn stage_data<R: AsyncRead + Unpin>(
        &self,
        r: &BackupRef,
        reader: R,
        stop: &CancellationToken,
    ) -> Result<StagedUpload> {
        upload::stage(&self.inner, &self.data_path(r), reader, self.sizing, stop).await
    }

    /// Delete the data object of a backup that will get no manifest.
    pub async fn delete_data(&self, r: &BackupRef) -> Result<()> {
        self.delete_if_exists(&self.data_path(r)).await
    }

    /// Write the manifest; refuses to replace one that exists.
    pub async fn put_manifest(&self, r: &BackupRef, bytes: Vec<u8>) -> Result<()> {
        let path = self.manifest_path(r);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.inner
            .put_opts(&path, PutPayload::from(bytes), opts)
            .await
            .map_err(|e| store_error("writing", &path, e))?;
        Ok(())
    }

    /// Replace an existing manifest whole (key changes). Every store replaces an object
    /// atomically: readers see the old manifest or the new one, never a mix. Under an object
    /// lock the new version is locked like the first one (the old version stays, locked).
    ///
    /// A backup a prune deleted meanwhile must not come back as a manifest without data: the
    /// rewrite is skipped (a not-found error) when the manifest or the data is gone before it,
    /// and undone when the data is gone after it. (Not every store has conditional writes.)
    pub async fn rewrite_manifest(&self, backup: &Backup, bytes: Vec<u8>) -> Result<()> {
        let r = &backup.location;
        let path = self.manifest_path(r);
        if !self.exists(&path).await? || !self.exists(&self.data_path(r)).await? {
            return Err(Error::not_found(format!(
                "{path}: the backup was deleted meanwhile (a prune?), so it was not rewritten"
            )));
        }
        self.inner
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| store_error("rewriting", &path, e))?;
        self.check_data_still_there(r).await?;
        let m = &backup.manifest.manifest;
        if let (Some(until), Some(mode)) = (m.retain_until, m.lock_mode)
            && until > Utc::now()
        {
            self.locker(&path)?.retain(&path, mode, until).await?;
        }
        Ok(())
    }

    /// Read and parse the manifest of `r`, at most `MAX_MANIFEST_BYTES` of it.
    pub async fn read_manifest(&self, r: &BackupRef) -> Result<StoredManifest> {
        self.refuse_links(r)?;
        let path = self.manifest_path(r);
        let result = self
            .inner
            .get(&path)
            .await
            .map_err(|e| store_error("reading", &path, e))?;
        let too_big = || {
            Error::integrity(format!(
                "{path}: over {} MiB, which no manifest is",
                MAX_MANIFEST_BYTES >> 20
            ))
        };
        if result.meta.size > MAX_MANIFEST_BYTES {
            return Err(too_big());
        }
        let mut bytes = Vec::new();
        let mut stream = result.into_stream();
        while let Some(piece) = stream
            .try_next()
            .await
            .map_err(|e| store_error("reading", &path, e))?
        {
            bytes.extend_from_slice(&piece);
            if bytes.len() as u64 > MAX_MANIFEST_BYTES {
                return Err(too_big());
            }
        }
        let stored = StoredManifest::parse(&bytes).map_err(|e| e.context(&path))?;
        if stored.manifest.backup_id != r.id || stored.manifest.job != r.job {
            return Err(Error::integrity(format!(
                "{path}: the manifest names backup {} of job '{}', not the backup stored here",
                stored.manifest.backup_id, stored.manifest.job
            )));
        }
        Ok(stored)
    }

    /// Whether the manifest of `r` exists now (to tell a backup pruned meanwhile from a lost one).
    pub async fn manifest_exists(&self, r: &BackupRef) -> Result<bool> {
        self.exists(&self.manifest_path(r)).await
    }

    async fn exists(&self, path: &ObjectPath) -> Result<bool> {
        match self.inner.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error("checking", path, e)),
        }
    }

    /// After a manifest was written: its data must still be there (a prune that judged the
    /// backup abandoned, a clock far off, may have deleted it). If it is not, the manifest goes
    /// too, and the backup fails: a manifest without data must never be visible.
    pub async fn check_data_still_there(&self, r: &BackupRef) -> Result<()> {
        if self.exists(&self.data_path(r)).await? {
            return Ok(());
        }
        let manifest = self.manifest_path(r);
        let removed = self.delete_if_exists(&manifest).await;
        Err(Error::integrity(format!(
            "{}: the data object was deleted while its manifest was written (a concurrent prune?); the manifest was {}",
            self.backup_dir(r),
            if removed.is_ok() {
                "removed again"
            } else {
                "NOT removed: delete it by hand"
            }
        )))
    }

    async fn delete_if_exists(&self, path: &ObjectPath) -> Result<()> {
        match self.inner.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error("deleting", path, e)),
        }
    }

    /// The S3 API that sets object locks, or why there is none.
    fn locker(&self, what: impl std::fmt::Display) -> Result<&s3::S3Api> {
        self.s3.as_ref().ok_or_else(|| {
            Error::config(format!(
                "{what}: object_lock needs an S3 store with Object Lock enabled on the bucket; {} is not one",
                self.description
            ))
        })
    }

    /// On a local store, refuse a backup reached through a symbolic link below the store's
    /// directory: reading or deleting through it would act outside the store.
    fn refuse_links(&self, r: &BackupRef) -> Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let mut dir = root.clone();
        let mut below_root = Vec::new();
        for part in self.backup_dir(r).parts() {
            dir.push(part.as_ref());
            below_root.push(dir.clone());
        }
        below_root.extend([DATA_FILE, MANIFEST_FILE].map(|file| dir.join(file)));
        for path in below_root {
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(Error::integrity(format!(
                    "{} is a symbolic link: coffre never follows links out of the store directory; replace it with what it points to, or remove it",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// Stream the data object of `r`.
    pub async fn read_data(&self, r: &BackupRef) -> Result<Box<dyn AsyncRead + Send + Unpin>> {
        self.refuse_links(r)?;
        let path = self.data_path(r);
        let result = self
            .inner
            .get(&path)
            .await
            .map_err(|e| store_error("reading", &path, e))?;
        match result.payload {
            // A local file: read it in large blocks (object_store's stream reads 8 KiB at a time).
            GetResultPayload::File(file, _) => {
                let reader = crate::blocking::spawn_reader("data object", file)
                    .map_err(|e| Error::internal(format!("cannot start a thread: {e}")))?;
                Ok(Box::new(reader))
            }
            GetResultPayload::Stream(stream) => Ok(Box::new(StreamReader::new(
                stream.map_err(std::io::Error::other),
            ))),
        }
    }

    /// Delete every object of a backup directory, manifest first: an interrupted delete leaves
    /// an incomplete backup (cleaned later), never a manifest without its data.
    pub async fn delete_backup(&self, r: &BackupRef) -> Result<()> {
        self.refuse_links(r)?;
        for path in [self.manifest_path(r), self.data_path(r)] {
            self.delete_if_exists(&path).await?;
        }
        Ok(())
    }

    /// List backups, of one job or of all. A failed listing of names fails the whole listing;
    /// a manifest that cannot be read or parsed only marks its own backup as damaged.
    pub async fn list(&self, job: Option<&str>) -> Result<Listing> {
        let scan = self.scan(job).await?;
        Ok(self.load(scan.dirs).await)
    }

    /// The backup directories under `job` (or all), from object names alone.
    async fn scan(&self, job: Option<&str>) -> Result<Scan> {
        let prefix = match job {
            Some(job) => self.job_dir(job),
            None => self.prefix.clone(),
        };
        let objects: Vec<_> = self
            .inner
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| store_error("listing", &prefix, e))?;
        let base_depth = self.prefix.parts().count();
        let mut dirs: BTreeMap<BackupRef, Option<u64>> = BTreeMap::new();
        for meta in objects {
            let parts: Vec<_> = meta.location.parts().skip(base_depth).collect();
            let [job, dir, file] = parts.as_slice() else {
                continue;
            };
            let Some(r) = BackupRef::parse_dir(job.as_ref(), dir.as_ref()) else {
                continue;
            };
            let entry = dirs.entry(r).or_insert(None);
            if file.as_ref() == MANIFEST_FILE {
                *entry = Some(meta.size);
            }
        }
        Ok(Scan { dirs })
    }

    /// Read the manifests of scanned directories.
    async fn load(&self, dirs: BTreeMap<BackupRef, Option<u64>>) -> Listing {
        let mut listing = Listing::default();
        for (r, manifest_size) in dirs {
            if manifest_size.is_none() {
                listing.incomplete.push(r);
                continue;
            }
            match self.read_manifest(&r).await {
                Ok(manifest) => listing.complete.push(Backup {
                    location: r,
                    manifest,
                }),
                Err(e) if e.is_not_found() => listing.vanished.push(r),
                Err(error) => {
                    tracing::warn!("backup {} of job '{}': {error}", r.id, r.job);
                    listing.damaged.push(Damaged { location: r, error });
                }
            }
        }
        listing.complete.sort_by(|a, b| {
            (a.location.time, a.location.id).cmp(&(b.location.time, b.location.id))
        });
        listing
    }

    /// What unfinished backups of `job` left that listings do not show: staging files of a
    /// local store, open multipart uploads on S3. (Azure discards uncommitted blocks itself
    /// after 7 days; for GCS, see the bucket lifecycle rules in docs/OPERATIONS.md.)
    pub async fn strays(&self, job: &str) -> Result<Vec<Stray>> {
        let job_dir = self.job_dir(job);
        if let Some(s3) = &self.s3 {
            let uploads = s3.open_uploads(&job_dir).await?;
            return Ok(uploads
                .into_iter()
                .filter_map(|upload| {
                    let parts: Vec<_> = upload.path.parts().skip(job_dir.parts().count()).collect();
                    let [dir, _file] = parts.as_slice() else {
                        return None;
                    };
                    Some(Stray {
                        location: BackupRef::parse_dir(job, dir.as_ref())?,
                        leftover: Leftover::Upload(upload),
                    })
                })
                .collect());
        }
        let Some(root) = &self.local_root else {
            return Ok(Vec::new());
        };
        let mut dir = root.clone();
        dir.extend(job_dir.parts().map(|p| p.as_ref().to_string()));
        Ok(local_staging_files(&dir, job))
    }

    /// Remove one leftover.
    pub async fn remove_stray(&self, stray: &Stray) -> Result<()> {
        match &stray.leftover {
            Leftover::Upload(upload) => match &self.s3 {
                Some(s3) => s3.abort_upload(upload).await,
                None => Ok(()),
            },
            Leftover::Staging(path) => {
                self.refuse_links(&stray.location)?;
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::store(format!("removing {}: {e}", path.display())));
                    }
                }
                // The directory goes too once nothing else is in it.
                if let Some(dir) = path.parent() {
                    let _ = std::fs::remove_dir(dir);
                }
                Ok(())
            }
        }
    }

    fn run_record_path(&self, task: &str) -> ObjectPath {
        self.prefix
            .clone()
            .join(RUNS_DIR)
            .join(format!("{task}.json"))
    }

    fn lock_path(&self, name: &str) -> ObjectPath {
        self.prefix
            .clone()
            .join(LOCKS_DIR)
            .join(format!("{name}.json"))
    }

    /// Create a lock object; false when one exists already.
    pub async fn create_lock(&self, name: &str, bytes: Vec<u8>) -> Result<bool> {
        self.create_object(&self.lock_path(name), bytes, "creating the lock")
            .await
    }

    /// Create an object only if none is at `path`: false when one is (the store's conditional
    /// create decides a race).
    async fn create_object(&self, path: &ObjectPath, bytes: Vec<u8>, doing: &str) -> Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .inner
            .put_opts(path, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(store_error(doing, path, e)),
        }
    }

    /// Store one audit event as a new object under the audit prefix (`key` is its path below
    /// it). It is created, never replaced; with S3 Object Lock's default retention on the
    /// bucket, no one can delete it before its time.
    pub async fn put_audit(
        &self,
        key: &str,
        bytes: Vec<u8>,
        lock: Option<(LockMode, DateTime<Utc>)>,
    ) -> Result<()> {
        let path = key
            .split('/')
            .fold(self.prefix.clone().join(AUDIT_DIR), |p, part| p.join(part));
        // Already there: written by an earlier attempt whose lock failed, which is locked now.
        self.create_object(&path, bytes, "writing the audit event")
            .await?;
        if let Some((mode, until)) = lock {
            self.locker("the audit trail")?
                .retain(&path, mode, until)
                .await?;
        }
        Ok(())
    }

    /// The content of a lock object, if it exists.
    pub async fn read_lock(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.get_small(&self.lock_path(name)).await
    }

    /// Replace a lock object held by this process (to extend it).
    pub async fn replace_lock(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.put_small(&self.lock_path(name), bytes).await
    }

    /// Write a small object whole, replacing what is there.
    async fn put_small(&self, path: &ObjectPath, bytes: Vec<u8>) -> Result<()> {
        self.inner
            .put(path, PutPayload::from(bytes))
            .await
            .map_err(|e| store_error("writing", path, e))?;
        Ok(())
    }

    pub async fn delete_lock(&self, name: &str) -> Result<()> {
        self.delete_if_exists(&self.lock_path(name)).await
    }

    /// A small object whole (at most 64 KiB), or None when it does not exist.
    async fn get_small(&self, path: &ObjectPath) -> Result<Option<Vec<u8>>> {
        let result = match self.inner.get(path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error("reading", path, e)),
        };
        if result.meta.size > MAX_SMALL_OBJECT_BYTES {
            return Err(Error::integrity(format!(
                "{path}: {} bytes, over the {MAX_SMALL_OBJECT_BYTES} this object ever holds",
                result.meta.size
            )));
        }
        let bytes = result
            .bytes()
            .await
            .map_err(|e| store_error("reading", path, e))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Find a complete backup by id (or unique id prefix), optionally within one job. Only the
    /// manifest of the backup found is read: damage elsewhere in the store does not matter.
    pub async fn find(&self, id_or_prefix: &str, job: Option<&str>) -> Result<Backup> {
        let wanted = id_or_prefix.to_ascii_lowercase();
        if wanted.len() < 4 {
            return Err(Error::config(format!(
                "backup id '{id_or_prefix}' is too short: give at least 4 characters (see 'coffre list')"
            )));
        }
        let mut matches = self.scan(job).await?.dirs;
        matches.retain(|r, manifest| manifest.is_some() && r.id.to_string().starts_with(&wanted));
        let mut found = matches.into_iter();
        match (found.next(), found.next()) {
            (Some((r, _)), None) => Ok(Backup {
                manifest: self.read_manifest(&r).await?,
                location: r,
            }),
            (Some(_), Some(_)) => Err(Error::config(format!(
                "backup id '{id_or_prefix}' matches more than one backup: give more characters"
            ))),
            (None, _) => Err(Error::not_found(format!(
                "no complete backup with id '{id_or_prefix}' in {} (see 'coffre list')",
                self.description
            ))),
        }
    }

    /// The newest complete backup of a job's series: of one database, when the job dumps several.
    /// Backups with a damaged manifest are passed over, with a warning when one is newer.
    pub async fn latest(&self, job: &str, series: Option<&str>) -> Result<Backup> {
        let listing = self.list(Some(job)).await?;
        let complete = listing.complete;
        let mut names: Vec<String> = complete
            .iter()
            .map(|b| b.manifest.manifest.series().to_string())
            .collect();
        names.sort_unstable();
        names.dedup();
        let wanted = match (series, names.as_slice()) {
            (Some(s), _) => s.to_string(),
            (None, [one]) => one.clone(),
            (None, []) => String::new(),
            (None, several) => {
                return Err(Error::config(format!(
                    "job '{job}' has backups of several databases ({}): say which",
                    several.join(", ")
                ))
                .with_remedy(Remedy::NameDatabase));
            }
        };
        let found = complete
            .into_iter()
            .rev()
            .find(|b| b.manifest.manifest.series() == wanted)
            .ok_or_else(|| {
                let which = series.map(|s| format!(" of '{s}'")).unwrap_or_default();
                let damaged = match listing.damaged.len() {
                    0 => String::new(),
                    n => format!(" ({n} with a damaged manifest: see 'coffre list')"),
                };
                Error::not_found(format!(
                    "job '{job}' has no complete backup{which} in {}{damaged}",
                    self.description
                ))
            })?;
        // Directory names carry the start to the second: within the same second either may be
        // the newer one.
        for damaged in &listing.damaged {
            if damaged.location.time >= found.location.time {
                tracing::warn!(
                    "backup {} of job '{job}' may be newer than {} but its manifest is damaged: using {}",
                    damaged.location.id,
                    found.location.id,
                    found.location.id
                );
            }
        }
        Ok(found)
    }
}

/// Staging files in the backup directories under a local job directory `dir`: files named
/// `NAME#DIGITS`, as object_store names them. Symbolic links are not followed.
fn local_staging_files(dir: &std::path::Path, job: &str) -> Vec<Stray> {
    let mut strays = Vec::new();
    let Ok(backups) = std::fs::read_dir(dir) else {
        return strays;
    };
    for entry in backups.flatten() {
        // file_type() does not follow links: a linked directory is skipped.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let Some(location) = name.to_str().and_then(|n| BackupRef::parse_dir(job, n)) else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name();
            let staging = name
                .to_str()
                .and_then(|n| n.rsplit_once('#'))
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if staging && file.file_type().is_ok_and(|t| t.is_file()) {
                strays.push(Stray {
                    location: location.clone(),
                    leftover: Leftover::Staging(file.path()),
                });
            }
        }
    }
    strays
}

fn store_error(action: &str, path: &ObjectPath, e: object_store::Error) -> Error {
    let text = one_line(&e.to_string());
    let error = match &e {
        object_store::Error::NotFound { .. } => {
            Error::not_found(format!("{action} {path}: not found"))
        }
        object_store::Error::AlreadyExists { .. } => {
            Error::store(format!("{action} {path}: it already exists"))
        }
        // Some requests (S3 listings) come back as generic errors that only name the status.
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => refused(action, path, &text),
        _ if text.contains("403 Forbidden") || text.contains("401 Unauthorized") => {
            refused(action, path, &text)
        }
        _ => Error::store(format!("{action} {path}: {text}")),
    };
    error.caused_by(e)
}

/// The store refused the credentials: fixing them, not retrying, helps.
fn refused(action: &str, path: &ObjectPath, text: &str) -> Error {
    Error::auth(format!(
        "{action} {path}: the store refused the credentials: {text} (check the store's access key and secret, and their permissions)"
    ))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
