//! `Metered`: an `AsyncRead` / `AsyncWrite` pass-through that counts bytes and, when asked,
//! computes their SHA-256. Used to measure a stream exactly where it crosses a boundary.

use sha2::{Digest, Sha256};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct Metered<T> {
    inner: T,
    bytes: u64,
    sha256: Option<Sha256>,
}

impl<T> Metered<T> {
    /// Count bytes only.
    pub fn counting(inner: T) -> Self {
        Self {
            inner,
            bytes: 0,
            sha256: None,
        }
    }

    /// Count bytes and hash them.
    pub fn hashing(inner: T) -> Self {
        Self {
            inner,
            bytes: 0,
            sha256: Some(Sha256::new()),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Hex SHA-256 of everything that passed (empty string when not hashing).
    pub fn sha256_hex(&self) -> String {
        self.sha256
            .clone()
            .map(|h| hex::encode(h.finalize()))
            .unwrap_or_default()
    }

    fn record(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            this.record(&buf.filled()[before..]);
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            this.record(&buf[..*n]);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
