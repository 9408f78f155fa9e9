//! Streaming multipart upload with bounded memory.
//!
//! Parts start small and double every `grow_every` parts, so memory stays at a few parts for
//! everyday dumps while a 1 TiB object still fits S3's 10,000-part limit. The upload is only
//! *staged* here: the caller completes it once every stage of the pipeline succeeded, and aborts
//! it otherwise, so a failed backup never leaves a data object behind.

use bytes::BytesMut;
use object_store::path::Path as ObjectPath;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::store_error;
use crate::error::{Error, Result};

/// S3 allows at most this many parts in one upload.
pub const MAX_PARTS: u64 = 10_000;
/// S3's minimum size of every part but the last.
pub const MIN_PART: usize = 5 * 1024 * 1024;
/// S3's maximum part size.
pub const MAX_PART: usize = 5 * 1024 * 1024 * 1024;

/// Part sizes and upload concurrency.
#[derive(Clone, Copy, Debug)]
pub struct PartSizing {
    pub initial: usize,
    /// Parts uploaded before the part size doubles.
    pub grow_every: u64,
    /// Parts in flight at once.
    pub concurrency: usize,
}

impl Default for PartSizing {
    fn default() -> Self {
        Self {
            initial: 8 * 1024 * 1024,
            grow_every: 1000,
            concurrency: 2,
        }
    }
}

impl PartSizing {
    /// Size of part `index` (from 0).
    pub fn part_size(&self, index: u64) -> usize {
        let doublings = (index / self.grow_every.max(1)).min(20) as u32;
        self.initial
            .max(MIN_PART)
            .saturating_mul(1usize << doublings)
            .min(MAX_PART)
    }

    /// The largest object these settings can upload within `MAX_PARTS` parts.
    pub fn max_object_size(&self) -> u64 {
        (0..MAX_PARTS).map(|i| self.part_size(i) as u64).sum()
    }
}

/// A multipart upload whose parts are all stored but which is not yet visible.
pub struct StagedUpload {
    upload: Box<dyn MultipartUpload>,
    path: ObjectPath,
    pub bytes: u64,
    pub parts: u64,
}

impl StagedUpload {
    /// Make the object visible.
    pub async fn complete(mut self) -> Result<()> {
        self.upload
            .complete()
            .await
            .map_err(|e| store_error("completing upload of", &self.path, e))?;
        Ok(())
    }

    /// Discard every stored part.
    pub async fn abort(mut self) -> Result<()> {
        self.upload
            .abort()
            .await
            .map_err(|e| store_error("aborting upload of", &self.path, e))
    }
}

/// Read `reader` to its end, uploading it as parts of `path`.
/// On any error the upload is aborted before returning.
pub async fn stage<R: AsyncRead + Unpin>(
    store: &Arc<dyn ObjectStore>,
    path: &ObjectPath,
    mut reader: R,
    sizing: PartSizing,
    cancel: &CancellationToken,
) -> Result<StagedUpload> {
    let mut upload = store
        .put_multipart(path)
        .await
        .map_err(|e| store_error("starting upload of", path, e))?;
    crate::failpoint::hit("backup:upload-started").await;
    match upload_parts(upload.as_mut(), path, &mut reader, sizing, cancel).await {
        Ok((bytes, parts)) => Ok(StagedUpload {
            upload,
            path: path.clone(),
            bytes,
            parts,
        }),
        Err(e) => {
            if let Err(abort) = upload.abort().await {
                tracing::warn!("aborting upload of {path} failed: {abort}");
            }
            Err(e)
        }
    }
}

async fn upload_parts<R: AsyncRead + Unpin>(
    upload: &mut dyn MultipartUpload,
    path: &ObjectPath,
    reader: &mut R,
    sizing: PartSizing,
    cancel: &CancellationToken,
) -> Result<(u64, u64)> {
    let mut in_flight = JoinSet::new();
    let mut bytes = 0u64;
    let mut parts = 0u64;
    loop {
        let size = sizing.part_size(parts);
        let mut part = BytesMut::with_capacity(size);
        while part.len() < size {
            // A stop request ends the upload here, so the caller aborts it cleanly.
            let n = tokio::select! {
                read = reader.read_buf(&mut part) => read.map_err(|e| {
                    Error::store(format!("upload of {path}: the stream to upload failed: {e}"))
                })?,
                () = cancel.cancelled() => {
                    return Err(Error::interrupted(format!("upload of {path} stopped on request")));
                }
            };
            if n == 0 {
                break;
            }
        }
        // Every object gets at least one part, even an empty one.
        if part.is_empty() && parts > 0 {
            break;
        }
        if parts >= MAX_PARTS {
            return Err(Error::store(format!(
                "upload of {path}: the object exceeds {MAX_PARTS} parts"
            )));
        }
        let last = part.len() < size;
        bytes += part.len() as u64;
        parts += 1;
        in_flight.spawn(upload.put_part(PutPayload::from(part.freeze())));
        while in_flight.len() >= sizing.concurrency.max(1) {
            join_one(&mut in_flight, path).await?;
        }
        if last {
            break;
        }
    }
    while !in_flight.is_empty() {
        join_one(&mut in_flight, path).await?;
    }
    Ok((bytes, parts))
}

async fn join_one(
    in_flight: &mut JoinSet<object_store::Result<()>>,
    path: &ObjectPath,
) -> Result<()> {
    match in_flight.join_next().await {
        Some(Ok(Ok(()))) => {
            crate::failpoint::hit("backup:part-stored").await;
            Ok(())
        }
        None => Ok(()),
        Some(Ok(Err(e))) => Err(store_error("uploading a part of", path, e)),
        Some(Err(e)) => Err(Error::internal(format!(
            "upload task of {path} failed: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sizing_fits_one_tebibyte_in_s3_part_limit() {
        let sizing = PartSizing::default();
        assert!(sizing.max_object_size() >= 1u64 << 40);
        assert_eq!(sizing.part_size(0), 8 << 20);
        assert_eq!(sizing.part_size(999), 8 << 20);
        assert_eq!(sizing.part_size(1000), 16 << 20);
        assert!(sizing.part_size(9999) <= MAX_PART);
    }

    #[test]
    fn parts_never_go_below_the_s3_minimum() {
        let sizing = PartSizing {
            initial: 1024,
            grow_every: 10,
            concurrency: 1,
        };
        assert_eq!(sizing.part_size(0), MIN_PART);
    }
}
