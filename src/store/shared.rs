//! Objects a job's backups share, by name in a directory of the job's own (format v2 keeps
//! its packs in `{job}/_packs/` and its sessions in `{job}/_sessions/`). The store only keeps
//! them; which backups use which is the format's business (`crate::data`).

use chrono::{DateTime, Utc};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::io::AsyncRead;
use tokio_util::sync::CancellationToken;

use super::errors::store_error;
use super::{StagedUpload, Store, upload};
use crate::error::{Error, Result};
use crate::manifest::LockMode;

/// One shared object, as listed.
#[derive(Clone, Debug)]
pub struct SharedObject {
    pub name: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

impl Store {
    /// The shared object `name` in directory `dir` of `job`.
    pub fn shared_path(&self, job: &str, dir: &str, name: &str) -> ObjectPath {
        self.job_dir(job).join(dir).join(name)
    }

    /// Write a shared object whole, replacing what is there.
    pub async fn put_shared(&self, path: &ObjectPath, bytes: Vec<u8>) -> Result<()> {
        self.refuse_links(path)?;
        self.inner
            .put(path, PutPayload::from(bytes))
            .await
            .map_err(|e| store_error("writing", path, e))?;
        Ok(())
    }

    /// A shared object whole, at most `max` bytes; None when it does not exist.
    pub async fn read_shared(&self, path: &ObjectPath, max: u64) -> Result<Option<Vec<u8>>> {
        self.refuse_links(path)?;
        self.read_bounded(path, max).await
    }

    /// Bytes `range` of a shared object (an error naming it when it is shorter).
    pub async fn read_range(
        &self,
        path: &ObjectPath,
        range: std::ops::Range<u64>,
    ) -> Result<bytes::Bytes> {
        self.refuse_links(path)?;
        let wanted = range.end - range.start;
        let bytes = self
            .inner
            .get_range(path, range)
            .await
            .map_err(|e| store_error("reading", path, e))?;
        match bytes.len() as u64 == wanted {
            true => Ok(bytes),
            false => Err(Error::integrity(format!(
                "{path}: cut short ({} of {wanted} bytes)",
                bytes.len()
            ))),
        }
    }

    /// The size of a shared object; None when it does not exist.
    pub async fn shared_size(&self, path: &ObjectPath) -> Result<Option<u64>> {
        match self.inner.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error("checking", path, e)),
        }
    }

    /// Stream `reader` into the shared object at `path`, until `stop` is cancelled. Nothing is
    /// visible until `complete`.
    pub async fn stage_shared<R: AsyncRead + Unpin>(
        &self,
        path: &ObjectPath,
        reader: R,
        stop: &CancellationToken,
    ) -> Result<StagedUpload> {
        upload::stage(&self.inner, path, reader, self.sizing, stop).await
    }

    /// Every object in directory `dir` of `job`. A failed listing is an error, never a short
    /// list.
    pub async fn list_shared(&self, job: &str, dir: &str) -> Result<Vec<SharedObject>> {
        let prefix = self.job_dir(job).join(dir);
        let objects = self.list_all(&prefix).await?;
        Ok(objects
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?.to_string();
                (meta.location.prefix_match(&prefix)?.count() == 1).then_some(SharedObject {
                    name,
                    size: meta.size,
                    last_modified: meta.last_modified,
                })
            })
            .collect())
    }

    /// Delete a shared object (gone already counts as done).
    pub async fn delete_shared(&self, path: &ObjectPath) -> Result<()> {
        self.refuse_links(path)?;
        self.delete_if_exists(path).await
    }

    /// Lock a shared object until `until` (S3 Object Lock); compliance locks can be extended,
    /// never shortened.
    pub async fn lock_shared(
        &self,
        path: &ObjectPath,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<()> {
        self.locker(path)?.retain(path, mode, until).await
    }
}
