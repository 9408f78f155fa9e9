//! The backup store over `object_store`: where things are (`layout`), the objects of one
//! backup (`backups`), what the store holds (`listing`), what unfinished backups left
//! (`leftovers`), objects a job's backups share (`shared`), small objects such as locks
//! (`small`), the audit trail (`audit`), run records
//! (`runs`), and the backends (`backend`, `s3`, `upload`).
//!
//! A backup exists only once its manifest does. Paths are built in `layout` and nowhere else.

mod audit;
mod backend;
mod backups;
mod errors;
mod layout;
mod leftovers;
mod listing;
mod runs;
mod s3;
mod shared;
mod small;
mod upload;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::config::{StoreConfig, UploadConfig};
use crate::error::{Error, Result};
use crate::secretstore::Resolver;
use errors::store_error;

pub use audit::AuditObjects;
pub use backups::MAX_MANIFEST_BYTES;
pub use layout::BackupRef;
pub use leftovers::{Leftover, Stray};
pub use listing::{Backup, Damaged, Listing};
pub use runs::{DrillResult, RunRecord};
pub use shared::SharedObject;
pub use upload::{PartSizing, StagedUpload};

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

    pub fn description(&self) -> &str {
        &self.description
    }

    /// A token cancelled when uploads must stop (SIGTERM); a backup adds its own deadline to
    /// a child of it.
    pub fn stop_token(&self) -> CancellationToken {
        self.cancel.child_token()
    }

    async fn exists(&self, path: &ObjectPath) -> Result<bool> {
        match self.inner.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error("checking", path, e)),
        }
    }

    /// Every object under `prefix`. A failed listing is an error, never a short list.
    async fn list_all(&self, prefix: &ObjectPath) -> Result<Vec<object_store::ObjectMeta>> {
        futures::TryStreamExt::try_collect(self.inner.list(Some(prefix)))
            .await
            .map_err(|e| store_error("listing", prefix, e))
    }

    /// An object whole, refused as damaged when over `max` bytes; None when it does not exist.
    async fn read_bounded(&self, path: &ObjectPath, max: u64) -> Result<Option<Vec<u8>>> {
        let result = match self.inner.get(path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error("reading", path, e)),
        };
        if result.meta.size > max {
            return Err(Error::integrity(format!(
                "{path}: {} bytes, over the {max} this object ever holds",
                result.meta.size
            )));
        }
        let bytes = result
            .bytes()
            .await
            .map_err(|e| store_error("reading", path, e))?;
        Ok(Some(bytes.to_vec()))
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

    /// On a local store, refuse an object reached through a symbolic link below the store's
    /// directory (the object itself or a directory on its way): reading or deleting through
    /// it would act outside the store.
    fn refuse_links(&self, object: &ObjectPath) -> Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let mut dir = root.clone();
        let mut below_root = Vec::new();
        for part in object.parts() {
            dir.push(part.as_ref());
            below_root.push(dir.clone());
        }
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
}
