//! Small objects beside the backups: job locks, and the helpers that write and read such
//! objects whole.

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::Store;
use super::errors::store_error;
use crate::error::Result;

/// Run records and locks are small JSON objects.
const MAX_SMALL_OBJECT_BYTES: u64 = 64 * 1024;

impl Store {
    /// Create a lock object; false when one exists already.
    pub async fn create_lock(&self, name: &str, bytes: Vec<u8>) -> Result<bool> {
        self.create_object(&self.lock_path(name), bytes, "creating the lock")
            .await
    }

    /// Create an object only if none is at `path`: false when one is (the store's conditional
    /// create decides a race).
    pub(super) async fn create_object(
        &self,
        path: &ObjectPath,
        bytes: Vec<u8>,
        doing: &str,
    ) -> Result<bool> {
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

    /// The content of a lock object, if it exists.
    pub async fn read_lock(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.get_small(&self.lock_path(name)).await
    }

    /// Replace a lock object held by this process (to extend it).
    pub async fn replace_lock(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.put_small(&self.lock_path(name), bytes).await
    }

    /// Write a small object whole, replacing what is there.
    pub(super) async fn put_small(&self, path: &ObjectPath, bytes: Vec<u8>) -> Result<()> {
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
    pub(super) async fn get_small(&self, path: &ObjectPath) -> Result<Option<Vec<u8>>> {
        self.read_bounded(path, MAX_SMALL_OBJECT_BYTES).await
    }
}
