//! The output side of a reader: where restored bytes go, with the target's own write failures
//! marked, so that a full disk or a closed pipe is never taken for a corrupt backup.

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// A write to the restore target that failed, carried inside the io errors that pass through
/// a decoder, so that it is not taken for a corrupt payload.
#[derive(Debug)]
pub(crate) struct TargetFailed(std::io::Error);

impl std::fmt::Display for TargetFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TargetFailed {}

/// Whether `e` is (or carries) the target's own failure.
pub(crate) fn is_target_failure(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|e| e.is::<TargetFailed>())
}

/// The restore target, marking each of its errors as a `TargetFailed`.
pub(crate) struct TargetWriter<W>(pub W);

fn target_failed(e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), TargetFailed(e))
}

impl<W: AsyncWrite + Unpin> AsyncWrite for TargetWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0)
            .poll_write(cx, buf)
            .map_err(target_failed)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx).map_err(target_failed)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0)
            .poll_shutdown(cx)
            .map_err(target_failed)
    }
}
