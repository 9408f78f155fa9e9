//! The objects of one backup directory, by name: streamed in and out, locked, deleted; and its
//! manifest, written last (a backup exists only once its manifest does), read with a size
//! limit, rewritten whole by key changes, deleted first. Which other objects a backup has is
//! its format's business (`crate::data`): the store only keeps them together.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;
use tokio_util::sync::CancellationToken;

use super::errors::store_error;
use super::layout::BackupRef;
use super::listing::Backup;
use super::{StagedUpload, Store, upload};
use crate::error::{Error, Result};
use crate::manifest::{LockMode, StoredManifest};

/// The largest manifest coffre reads: real ones are a few KiB.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

impl Store {
    /// Lock the manifest and the objects `names` of a backup until `until` (S3 Object Lock).
    pub async fn lock_objects(
        &self,
        r: &BackupRef,
        names: &[&str],
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<()> {
        let locker = self.locker(self.backup_dir(r))?;
        for name in names {
            locker
                .retain(&self.backup_object(r, name), mode, until)
                .await?;
        }
        locker.retain(&self.manifest_path(r), mode, until).await
    }

    /// Stream `reader` into the object `name` of `r`, until `stop` is cancelled. Nothing is
    /// visible until `complete`.
    pub async fn stage_object<R: AsyncRead + Unpin>(
        &self,
        r: &BackupRef,
        name: &str,
        reader: R,
        stop: &CancellationToken,
    ) -> Result<StagedUpload> {
        let path = self.backup_object(r, name);
        upload::stage(&self.inner, &path, reader, self.sizing, stop).await
    }

    /// Delete the object `name` of a backup that will get no manifest.
    pub async fn delete_object(&self, r: &BackupRef, name: &str) -> Result<()> {
        self.delete_if_exists(&self.backup_object(r, name)).await
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
    /// A backup a prune deleted meanwhile must not come back as a manifest without its other
    /// objects (`beside`): the rewrite is skipped (a not-found error) when the manifest or one
    /// of them is gone before it, and undone when one is gone after it. (Not every store has
    /// conditional writes.)
    pub async fn rewrite_manifest(
        &self,
        backup: &Backup,
        bytes: Vec<u8>,
        beside: &[&str],
    ) -> Result<()> {
        let r = &backup.location;
        let path = self.manifest_path(r);
        let mut present = self.exists(&path).await?;
        for name in beside {
            present = present && self.exists(&self.backup_object(r, name)).await?;
        }
        if !present {
            return Err(Error::not_found(format!(
                "{path}: the backup was deleted meanwhile (a prune?), so it was not rewritten"
            )));
        }
        self.inner
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| store_error("rewriting", &path, e))?;
        self.check_objects_still_there(r, beside).await?;
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
        let path = self.manifest_path(r);
        self.refuse_links(&path)?;
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

    /// After a manifest was written: the objects `names` beside it must still be there (a
    /// prune that judged the backup abandoned, a clock far off, may have deleted them). If one
    /// is not, the manifest goes too, and the backup fails: a manifest without its data must
    /// never be visible.
    pub async fn check_objects_still_there(&self, r: &BackupRef, names: &[&str]) -> Result<()> {
        let mut missing = None;
        for name in names {
            if !self.exists(&self.backup_object(r, name)).await? {
                missing = Some(*name);
                break;
            }
        }
        let Some(missing) = missing else {
            return Ok(());
        };
        let removed = self.delete_if_exists(&self.manifest_path(r)).await;
        Err(Error::integrity(format!(
            "{}: {missing} was deleted while the manifest was written (a concurrent prune?); the manifest was {}",
            self.backup_dir(r),
            if removed.is_ok() {
                "removed again"
            } else {
                "NOT removed: delete it by hand"
            }
        )))
    }

    /// Stream the object `name` of `r`.
    pub async fn read_object(
        &self,
        r: &BackupRef,
        name: &str,
    ) -> Result<Box<dyn AsyncRead + Send + Unpin>> {
        self.read_path(&self.backup_object(r, name)).await
    }

    /// Stream the object at `path`.
    pub(crate) async fn read_path(
        &self,
        path: &ObjectPath,
    ) -> Result<Box<dyn AsyncRead + Send + Unpin>> {
        self.refuse_links(path)?;
        let result = self
            .inner
            .get(path)
            .await
            .map_err(|e| store_error("reading", path, e))?;
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
        let manifest = self.manifest_path(r);
        self.refuse_links(&manifest)?;
        self.delete_if_exists(&manifest).await?;
        let dir = self.backup_dir(r);
        for object in self.list_all(&dir).await? {
            self.refuse_links(&object.location)?;
            self.delete_if_exists(&object.location).await?;
        }
        Ok(())
    }
}
