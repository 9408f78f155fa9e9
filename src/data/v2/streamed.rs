//! Objects uploaded while they are written (packs, recipes): the writer side takes bytes, the
//! upload side stages them in parts as they come, and the object becomes visible only when
//! the writer says it is whole (`finish`). A writer dropped without `finish` (its backup
//! failed) leaves the upload aborted, never a cut object.

use object_store::path::Path as ObjectPath;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::metered::Metered;
use crate::store::Store;

/// Bytes buffered between the writer and the upload.
const PIPE_BYTES: usize = 1 << 20;

/// The writing side.
pub struct Streamed {
    /// One end of a duplex pipe: dropping it ends the upload's reading (a split simplex
    /// would not, and the upload would wait forever).
    pub writer: DuplexStream,
    whole: oneshot::Sender<()>,
}

/// The uploading side, until `upload` runs it.
pub struct Pending {
    reader: DuplexStream,
    whole: oneshot::Receiver<()>,
}

pub fn channel() -> (Streamed, Pending) {
    let (reader, writer) = tokio::io::duplex(PIPE_BYTES);
    let (whole, whole_rx) = oneshot::channel();
    (
        Streamed { writer, whole },
        Pending {
            reader,
            whole: whole_rx,
        },
    )
}

impl Streamed {
    /// Close the object: it is whole, and its upload may complete.
    pub async fn finish(mut self) -> Result<()> {
        self.writer
            .shutdown()
            .await
            .map_err(|e| Error::store(format!("the upload stopped: {e}")))?;
        let _ = self.whole.send(());
        Ok(())
    }
}

/// Upload what `pending`'s writer writes to `path`; complete it only if the writer finished.
/// The object's size.
pub async fn upload(
    store: &Store,
    path: &ObjectPath,
    pending: Pending,
    stop: &CancellationToken,
) -> Result<u64> {
    let mut counted = Metered::counting(pending.reader);
    let staged = store.stage_shared(path, &mut counted, stop).await?;
    match pending.whole.await {
        Ok(()) => {
            staged.complete().await?;
            Ok(counted.bytes())
        }
        Err(_) => {
            if let Err(e) = staged.abort().await {
                tracing::warn!("{e}");
            }
            Err(Error::store(format!(
                "{path}: the writer stopped before the object was whole; its upload was aborted"
            )))
        }
    }
}
