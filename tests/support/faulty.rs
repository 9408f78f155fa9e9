//! Fault injection around a real local store, for failures no real server can be asked for on
//! cue (a listing that breaks midway, one delete or write that fails).

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use std::sync::Arc;

use coffre::store::Store;

use super::Workspace;

/// A real store with failures injected: listings fail after `list_ok` objects; reads, writes
/// and deletes of paths containing the given text fail; reading a path containing
/// `vanish_on_get` first deletes that backup, as a prune running meanwhile would.
#[derive(Debug)]
pub struct Faulty {
    inner: Arc<LocalFileSystem>,
    pub list_ok: Option<usize>,
    pub fail_get: Option<String>,
    pub fail_put: Option<String>,
    pub fail_delete: Option<String>,
    pub vanish_on_get: Option<String>,
}

impl std::fmt::Display for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "Faulty",
        source: format!("injected {what} failure").into(),
    }
}

#[async_trait::async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        l: &Path,
        p: PutPayload,
        o: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self
            .fail_put
            .as_ref()
            .is_some_and(|f| l.as_ref().contains(f.as_str()))
        {
            return Err(injected("write"));
        }
        self.inner.put_opts(l, p, o).await
    }
    async fn put_multipart_opts(
        &self,
        l: &Path,
        o: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(l, o).await
    }
    async fn get_opts(&self, l: &Path, o: GetOptions) -> object_store::Result<GetResult> {
        if self
            .vanish_on_get
            .as_ref()
            .is_some_and(|f| l.as_ref().contains(f.as_str()))
        {
            let dir: Path = l.parts().take(l.parts().count() - 1).collect();
            for file in ["manifest.json", "data.cfr", "recipe.cfr"] {
                let _ = self.inner.delete(&dir.clone().join(file)).await;
            }
        }
        if self
            .fail_get
            .as_ref()
            .is_some_and(|f| l.as_ref().contains(f.as_str()))
        {
            return Err(injected("read"));
        }
        self.inner.get_opts(l, o).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = Arc::clone(&self.inner);
        let fail = self.fail_delete.clone();
        locations
            .then(move |location| {
                let inner = Arc::clone(&inner);
                let fail = fail.clone();
                async move {
                    let location = location?;
                    if fail.is_some_and(|f| location.as_ref().contains(f.as_str())) {
                        return Err(injected("delete"));
                    }
                    inner
                        .delete_stream(futures::stream::iter([Ok(location)]).boxed())
                        .next()
                        .await
                        .expect("one result")
                }
            })
            .boxed()
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let limit = self.list_ok;
        self.inner
            .list(prefix)
            .enumerate()
            .map(move |(i, item)| match limit {
                Some(limit) if i >= limit => Err(injected("listing")),
                _ => item,
            })
            .boxed()
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, o).await
    }
}

/// The workspace's local store seen through `Faulty`, with `faults` set.
pub fn faulty_store(ws: &Workspace, faults: impl FnOnce(&mut Faulty)) -> Store {
    let mut faulty = Faulty {
        inner: Arc::new(LocalFileSystem::new_with_prefix(ws.path("store")).unwrap()),
        list_ok: None,
        fail_get: None,
        fail_put: None,
        fail_delete: None,
        vanish_on_get: None,
    };
    faults(&mut faulty);
    Store::new(Arc::new(faulty), "backups", "faulty".into())
}
