//! Content-defined chunks of a stream (FastCDC 2020, docs/FORMAT.md "Chunking"), cut exactly
//! where `fastcdc`'s own stream chunker cuts. Its stream chunker copies every chunk out and
//! shifts its whole buffer after each one (about four copies of the dump); here a chunk is a
//! slice of one larger buffer, and only the short tail moves when it is refilled.

use fastcdc::v2020::{Normalization, cut_gear, get_gear_with_seed, select_masks};
use std::borrow::Cow;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::manifest::Chunking;

/// What a refill reads at least: the tail it moves (under one largest chunk) stays small
/// beside it.
const MIN_READ: usize = 1 << 20;

pub struct Chunker<R> {
    reader: R,
    buffer: Vec<u8>,
    /// The first byte not yet given out.
    start: usize,
    /// The end of what was read.
    end: usize,
    eof: bool,
    chunking: Chunking,
    masks: (u64, u64),
    gear: (Cow<'static, [u64]>, Cow<'static, [u64]>),
}

impl<R: AsyncRead + Unpin> Chunker<R> {
    pub fn new(reader: R, chunking: Chunking, seed: u64) -> Self {
        Self {
            reader,
            buffer: vec![0; chunking.max as usize + MIN_READ.max(chunking.max as usize)],
            start: 0,
            end: 0,
            eof: false,
            masks: select_masks(chunking.avg as usize, normalization(chunking.normalization)),
            gear: get_gear_with_seed(seed),
            chunking,
        }
    }

    /// The next chunk, or `None` at the end of the stream.
    pub async fn next(&mut self) -> std::io::Result<Option<&[u8]>> {
        let max = self.chunking.max as usize;
        // A cut sees up to `max` bytes, as the stream chunker's: with fewer, refill first.
        if self.end - self.start < max && !self.eof {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            while self.end < self.buffer.len() {
                let n = self.reader.read(&mut self.buffer[self.end..]).await?;
                if n == 0 {
                    self.eof = true;
                    break;
                }
                self.end += n;
            }
        }
        if self.start == self.end {
            return Ok(None);
        }
        let (mask_s, mask_l) = self.masks;
        let (_, len) = cut_gear(
            &self.buffer[self.start..self.end],
            self.chunking.min as usize,
            self.chunking.avg as usize,
            max,
            mask_s,
            mask_l,
            mask_s << 1,
            mask_l << 1,
            &self.gear.0,
            &self.gear.1,
        );
        let chunk = &self.buffer[self.start..self.start + len];
        self.start += len;
        Ok(Some(chunk))
    }
}

fn normalization(level: u8) -> Normalization {
    match level {
        0 => Normalization::Level0,
        1 => Normalization::Level1,
        2 => Normalization::Level2,
        _ => Normalization::Level3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastcdc::v2020::AsyncStreamCDC;
    use futures::StreamExt;

    /// The same cuts as `fastcdc`'s stream chunker, whatever the reads return.
    #[tokio::test]
    async fn cuts_where_the_stream_chunker_cuts() {
        let mut data = vec![0u8; 6 << 20];
        let mut x = 0x2545f4914f6cdd1du64;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Runs of repeats too, so that some chunks are cut at the largest size.
            *b = if (x >> 40).is_multiple_of(7) {
                0
            } else {
                x as u8
            };
        }
        // Stretches with no cut point, of many lengths, so that some straddle every refill.
        for (i, at) in (0..data.len() - 400_000).step_by(450_000).enumerate() {
            data[at..at + 150_000 + i * 20_011].fill(7);
        }
        let chunking = crate::data::v2::chunking(None);
        assert_eq!((chunking.avg, chunking.normalization), (64 << 10, 1));
        let mut expected = Vec::new();
        let mut reference = AsyncStreamCDC::with_level_and_seed(
            &data[..],
            16 << 10,
            64 << 10,
            256 << 10,
            Normalization::Level1,
            42,
        );
        let mut stream = std::pin::pin!(reference.as_stream());
        while let Some(chunk) = stream.next().await {
            expected.push(chunk.unwrap().data);
        }
        assert!(expected.iter().any(|c| c.len() == 256 << 10));
        // A reader that returns odd short reads.
        let (mut tx, rx) = tokio::io::duplex(12_345);
        let feed = data.clone();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in feed.chunks(77_777) {
                tx.write_all(piece).await.unwrap();
            }
        });
        let mut chunker = Chunker::new(rx, chunking, 42);
        let mut got = Vec::new();
        while let Some(chunk) = chunker.next().await.unwrap() {
            got.push(chunk.to_vec());
        }
        writer.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected);
    }
}
