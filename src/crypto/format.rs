//! The data-object format v1 (`data.cfr`), as specified in docs/FORMAT.md.
//!
//! ```text
//! header H (92 bytes) || chunk_0 || ... || chunk_n
//! chunk_i = AES-256-GCM(K, N || BE32(i) || last_flag, aad = H, P_i) (ciphertext || 16-byte tag)
//! ```
//!
//! The plaintext is cut into chunks of exactly `2^chunk_log2` bytes; only the last chunk may be
//! shorter, and it is empty only when the whole plaintext is. The last chunk carries flag 0x01 in
//! its nonce, so truncation at a chunk boundary fails authentication just like a flipped bit.
//! The header commits to the DEK, so a data object can never be opened with another backup's key
//! by accident (or by an attacker's choice of key).
//!
//! Sealing and opening stream: memory is two chunks, whatever the size of the data.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use std::io;
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{Dek, hkdf_sha256, random_array};

pub const MAGIC: &[u8; 8] = b"COFFRE1\n";
/// AES-256-GCM chunks, HKDF-SHA-256 key derivation.
pub const SUITE_AES256GCM_HKDF_SHA256: u8 = 0x01;
pub const HEADER_LEN: usize = 92;
pub const TAG_LEN: usize = 16;
pub const DEFAULT_CHUNK_LOG2: u8 = 20;
pub const MIN_CHUNK_LOG2: u8 = 16;
pub const MAX_CHUNK_LOG2: u8 = 24;

const INFO_COMMIT: &[u8] = b"coffre/v1/commit";
const INFO_PAYLOAD: &[u8] = b"coffre/v1/payload";

/// Why a data object does not open. All of these are integrity failures except `Read` and `Write`.
#[derive(Debug, Error)]
pub enum FormatError {
    #[error("not a coffre data object (bad magic)")]
    BadMagic,
    #[error("unsupported cipher suite 0x{0:02x} (this coffre reads suite 0x01)")]
    UnsupportedSuite(u8),
    #[error("reserved header bytes are not zero")]
    BadReserved,
    #[error("chunk size 2^{0} is outside 2^16..=2^24")]
    BadChunkSize(u8),
    #[error("the header does not commit to this backup's key (data object from another backup?)")]
    CommitmentMismatch,
    #[error("chunk {index} failed authentication (tampered or corrupted)")]
    ChunkAuth { index: u32 },
    #[error("data object is truncated: {0}")]
    Truncated(&'static str),
    #[error("data object holds more chunks than the format allows")]
    TooManyChunks,
    #[error("reading the data object failed: {0}")]
    Read(io::Error),
    #[error("writing the output failed: {0}")]
    Write(io::Error),
}

impl FormatError {
    /// True for tampering and corruption, false for I/O failures on either side.
    pub fn is_integrity(&self) -> bool {
        !matches!(self, FormatError::Read(_) | FormatError::Write(_))
    }
}

/// The 92-byte header of a data object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub chunk_log2: u8,
    pub backup_id: Uuid,
    pub salt: [u8; 32],
    pub commitment: [u8; 32],
}

impl Header {
    /// A header for a new data object: fresh random salt, commitment to `dek`.
    pub fn new(dek: &Dek, backup_id: Uuid, chunk_log2: u8) -> Result<Self, FormatError> {
        check_chunk_log2(chunk_log2)?;
        let mut header = Self {
            chunk_log2,
            backup_id,
            salt: random_array(),
            commitment: [0; 32],
        };
        header.commitment = header.expected_commitment(dek);
        Ok(header)
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8] = SUITE_AES256GCM_HKDF_SHA256;
        h[9] = self.chunk_log2;
        // h[10..12] reserved, zero
        h[12..28].copy_from_slice(self.backup_id.as_bytes());
        h[28..60].copy_from_slice(&self.salt);
        h[60..92].copy_from_slice(&self.commitment);
        h
    }

    /// Parse the fixed fields. The commitment is checked separately, once the DEK is known.
    pub fn parse(h: &[u8; HEADER_LEN]) -> Result<Self, FormatError> {
        if &h[0..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        if h[8] != SUITE_AES256GCM_HKDF_SHA256 {
            return Err(FormatError::UnsupportedSuite(h[8]));
        }
        check_chunk_log2(h[9])?;
        if h[10..12] != [0, 0] {
            return Err(FormatError::BadReserved);
        }
        Ok(Self {
            chunk_log2: h[9],
            backup_id: Uuid::from_bytes(h[12..28].try_into().expect("16 bytes")),
            salt: h[28..60].try_into().expect("32 bytes"),
            commitment: h[60..92].try_into().expect("32 bytes"),
        })
    }

    /// Read and parse a header from the start of a data object.
    pub async fn read_from<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Self, FormatError> {
        let mut h = [0u8; HEADER_LEN];
        let n = read_full(reader, &mut h).await.map_err(FormatError::Read)?;
        if n < HEADER_LEN {
            return Err(FormatError::Truncated("the header is incomplete"));
        }
        Self::parse(&h)
    }

    /// Fails unless this header was written for `dek`.
    pub fn check_commitment(&self, dek: &Dek) -> Result<(), FormatError> {
        if bool::from(self.expected_commitment(dek).ct_eq(&self.commitment)) {
            Ok(())
        } else {
            Err(FormatError::CommitmentMismatch)
        }
    }

    pub fn chunk_len(&self) -> usize {
        1usize << self.chunk_log2
    }

    fn expected_commitment(&self, dek: &Dek) -> [u8; 32] {
        let bytes = self.to_bytes();
        let mut out = [0u8; 32];
        hkdf_sha256(
            dek.as_bytes(),
            &self.salt,
            &[INFO_COMMIT, &bytes[0..60]],
            &mut out,
        );
        out
    }
}

fn check_chunk_log2(chunk_log2: u8) -> Result<(), FormatError> {
    if (MIN_CHUNK_LOG2..=MAX_CHUNK_LOG2).contains(&chunk_log2) {
        Ok(())
    } else {
        Err(FormatError::BadChunkSize(chunk_log2))
    }
}

/// Totals of one seal or open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Plaintext bytes (the payload: the compressed dump).
    pub payload_bytes: u64,
    /// Number of chunks, the last one included.
    pub chunks: u64,
}

/// The chunk key and the nonce sequence of one data object.
///
/// The nonce is owned here so no caller can reuse a counter or forget the last-chunk flag.
struct ChunkCipher {
    cipher: Aes256Gcm,
    nonce_prefix: [u8; 7],
    next_index: u32,
    aad: [u8; HEADER_LEN],
    exhausted: bool,
}

impl ChunkCipher {
    fn new(dek: &Dek, header: &Header) -> Self {
        let mut okm = Zeroizing::new([0u8; 39]);
        hkdf_sha256(dek.as_bytes(), &header.salt, &[INFO_PAYLOAD], okm.as_mut());
        let cipher = Aes256Gcm::new_from_slice(&okm[..32]).expect("32-byte key");
        Self {
            cipher,
            nonce_prefix: okm[32..39].try_into().expect("7 bytes"),
            next_index: 0,
            aad: header.to_bytes(),
            exhausted: false,
        }
    }

    fn nonce(&self, index: u32, last: bool) -> Nonce<aes_gcm::aead::consts::U12> {
        let mut n = [0u8; 12];
        n[..7].copy_from_slice(&self.nonce_prefix);
        n[7..11].copy_from_slice(&index.to_be_bytes());
        n[11] = u8::from(last);
        n.into()
    }

    fn take_index(&mut self) -> Result<u32, FormatError> {
        if self.exhausted {
            return Err(FormatError::TooManyChunks);
        }
        let index = self.next_index;
        match self.next_index.checked_add(1) {
            Some(next) => self.next_index = next,
            None => self.exhausted = true,
        }
        Ok(index)
    }

    /// Encrypt `buf[..len]` in place and append the tag at `buf[len..len + 16]`.
    fn seal_chunk(&mut self, buf: &mut [u8], len: usize, last: bool) -> Result<(), FormatError> {
        let index = self.take_index()?;
        let nonce = self.nonce(index, last);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce, &self.aad, (&mut buf[..len]).into())
            .map_err(|_| FormatError::TooManyChunks)?;
        buf[len..len + TAG_LEN].copy_from_slice(&tag);
        Ok(())
    }

    /// Decrypt a stored chunk (ciphertext || tag) in place; returns the plaintext length.
    ///
    /// On failure the counter is not advanced, so the caller may retry with the other flag
    /// to tell truncation from tampering.
    fn open_chunk(&mut self, buf: &mut [u8], last: bool) -> Result<usize, FormatError> {
        let index = self.next_index;
        if buf.len() < TAG_LEN {
            return Err(FormatError::Truncated("a chunk is shorter than its tag"));
        }
        let len = buf.len() - TAG_LEN;
        let (msg, tag) = buf.split_at_mut(len);
        let tag = Tag::try_from(&*tag).expect("16 bytes");
        let nonce = self.nonce(index, last);
        self.cipher
            .decrypt_inout_detached(&nonce, &self.aad, msg.into(), &tag)
            .map_err(|_| FormatError::ChunkAuth { index })?;
        self.take_index()?;
        Ok(len)
    }
}

/// Sealing pushed piece by piece, for data produced in a loop rather than read from a stream
/// (format v2's recipes): `update` returns the sealed bytes ready so far (the header first),
/// `finish` the last chunk. A chunk is sealed only once more data shows it is not the last.
pub struct Sealer {
    cipher: ChunkCipher,
    header: Option<[u8; HEADER_LEN]>,
    chunk: usize,
    pending: Vec<u8>,
    payload_bytes: u64,
}

impl Sealer {
    pub fn new(dek: &Dek, header: &Header) -> Self {
        Self {
            cipher: ChunkCipher::new(dek, header),
            header: Some(header.to_bytes()),
            chunk: header.chunk_len(),
            pending: Vec::new(),
            payload_bytes: 0,
        }
    }

    /// Add `data`; the sealed bytes that are ready.
    pub fn update(&mut self, data: &[u8]) -> Result<Vec<u8>, FormatError> {
        let mut out = self.header.take().map(Vec::from).unwrap_or_default();
        self.pending.extend_from_slice(data);
        self.payload_bytes += data.len() as u64;
        while self.pending.len() > self.chunk {
            let rest = self.pending.split_off(self.chunk);
            let mut buf = std::mem::replace(&mut self.pending, rest);
            buf.resize(self.chunk + TAG_LEN, 0);
            self.cipher.seal_chunk(&mut buf, self.chunk, false)?;
            out.extend_from_slice(&buf);
        }
        Ok(out)
    }

    /// Seal the last chunk: the remaining sealed bytes, and the totals.
    pub fn finish(mut self) -> Result<(Vec<u8>, StreamStats), FormatError> {
        let mut out = self.header.take().map(Vec::from).unwrap_or_default();
        let len = self.pending.len();
        let mut buf = std::mem::take(&mut self.pending);
        buf.resize(len + TAG_LEN, 0);
        self.cipher.seal_chunk(&mut buf, len, true)?;
        out.extend_from_slice(&buf);
        let stats = StreamStats {
            payload_bytes: self.payload_bytes,
            chunks: u64::from(self.cipher.next_index),
        };
        Ok((out, stats))
    }
}

/// Encrypt everything `reader` yields into a data object written to `writer`.
///
/// Writes the header and every chunk, then flushes. The caller owns `writer` and decides what a
/// complete object means (for an upload: commit only if every stage succeeded).
pub async fn seal<R, W>(
    dek: &Dek,
    header: &Header,
    mut reader: R,
    writer: &mut W,
) -> Result<StreamStats, FormatError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut cipher = ChunkCipher::new(dek, header);
    writer
        .write_all(&header.to_bytes())
        .await
        .map_err(FormatError::Write)?;
    let mut payload_bytes = 0;
    // Room for the tag after each chunk: it is sealed in place.
    let chunks = each_piece(
        &mut reader,
        writer,
        header.chunk_len(),
        TAG_LEN,
        |buf, len, last| {
            cipher.seal_chunk(buf, len, last)?;
            payload_bytes += len as u64;
            Ok(len + TAG_LEN)
        },
    )
    .await?;
    Ok(StreamStats {
        payload_bytes,
        chunks,
    })
}

/// Decrypt the chunks that follow an already-read `header`, writing plaintext to `writer`.
///
/// Only authenticated plaintext is ever written, but a truncation is detected only at the end:
/// a caller writing to a file must write to a temporary path and rename on success.
pub async fn open<R, W>(
    dek: &Dek,
    header: &Header,
    mut reader: R,
    writer: &mut W,
) -> Result<StreamStats, FormatError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    header.check_commitment(dek)?;
    let stored_chunk = header.chunk_len() + TAG_LEN;
    let mut cipher = ChunkCipher::new(dek, header);
    let mut payload_bytes = 0;
    let chunks = each_piece(&mut reader, writer, stored_chunk, 0, |buf, len, last| {
        // Only the first piece can be empty: a header and nothing after it.
        if len == 0 {
            return Err(FormatError::Truncated("no chunk follows the header"));
        }
        let stored = &mut buf[..len];
        let plain_len = match cipher.open_chunk(stored, last) {
            Ok(plain_len) => plain_len,
            // A full chunk that opens as "not last" right before the end: the final chunk was cut off.
            Err(FormatError::ChunkAuth { .. })
                if last && len == stored_chunk && cipher.open_chunk(stored, false).is_ok() =>
            {
                return Err(FormatError::Truncated("the final chunk is missing"));
            }
            Err(e) => return Err(e),
        };
        payload_bytes += plain_len as u64;
        Ok(plain_len)
    })
    .await?;
    Ok(StreamStats {
        payload_bytes,
        chunks,
    })
}

/// Cut what `reader` yields into pieces of `piece` bytes (the last may be shorter, or empty
/// when nothing came at all), transform each in place with `each` (given its buffer, with
/// `spare` bytes of room after the piece, its length and whether it is the last), write the
/// first bytes of the buffer `each` says to `writer`, and flush. Returns the number of pieces.
async fn each_piece<R, W>(
    reader: &mut R,
    writer: &mut W,
    piece: usize,
    spare: usize,
    mut each: impl FnMut(&mut [u8], usize, bool) -> Result<usize, FormatError>,
) -> Result<u64, FormatError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut pieces = ReadAhead::start(reader, piece, spare)
        .await
        .map_err(FormatError::Read)?;
    let mut count = 0;
    loop {
        let last = pieces.look_ahead(reader).await.map_err(FormatError::Read)?;
        let (buf, len) = pieces.current();
        let out = each(buf, len, last)?;
        writer
            .write_all(&buf[..out])
            .await
            .map_err(FormatError::Write)?;
        count += 1;
        if last {
            break;
        }
        pieces.advance();
    }
    writer.flush().await.map_err(FormatError::Write)?;
    Ok(count)
}

/// A stream read in pieces of a fixed size, one piece ahead: a chunk is only known to be the
/// last once the read after it finds nothing (or it is short). Two buffers, whatever the size
/// of the stream.
struct ReadAhead {
    current: Vec<u8>,
    current_len: usize,
    next: Vec<u8>,
    next_len: usize,
    piece: usize,
}

impl ReadAhead {
    /// Read the first piece of `piece` bytes, into buffers with `spare` bytes more.
    async fn start<R: AsyncRead + Unpin>(
        reader: &mut R,
        piece: usize,
        spare: usize,
    ) -> io::Result<Self> {
        let mut current = vec![0u8; piece + spare];
        let current_len = read_full(reader, &mut current[..piece]).await?;
        Ok(Self {
            current,
            current_len,
            next: vec![0u8; piece + spare],
            next_len: 0,
            piece,
        })
    }

    /// Read the piece after the current one: whether the current one is the last.
    async fn look_ahead<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> io::Result<bool> {
        self.next_len = match self.current_len == self.piece {
            true => read_full(reader, &mut self.next[..self.piece]).await?,
            false => 0,
        };
        Ok(self.next_len == 0)
    }

    /// The current piece's buffer (spare bytes included) and how many bytes it holds.
    fn current(&mut self) -> (&mut [u8], usize) {
        (&mut self.current, self.current_len)
    }

    /// Move on to the piece read ahead.
    fn advance(&mut self) {
        std::mem::swap(&mut self.current, &mut self.next);
        self.current_len = self.next_len;
    }
}

/// Read until `buf` is full or the reader ends; returns how many bytes were read.
async fn read_full<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_sealing_is_what_open_reads_at_every_length() {
        let dek = Dek::generate();
        for len in [0usize, 1, 65535, 65536, 65537, 3 * 65536, 200_000] {
            let header = Header::new(&dek, Uuid::new_v4(), 16).unwrap();
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut sealer = Sealer::new(&dek, &header);
            let mut stored = Vec::new();
            for piece in plain.chunks(52) {
                stored.extend(sealer.update(piece).unwrap());
            }
            let (last, stats) = sealer.finish().unwrap();
            stored.extend(last);
            assert_eq!(stats.payload_bytes, len as u64);
            let mut reader = stored.as_slice();
            let (read, out) = futures::executor::block_on(async {
                let header = Header::read_from(&mut reader).await.unwrap();
                let mut out = Vec::new();
                let stats = open(&dek, &header, reader, &mut out).await.unwrap();
                (stats, out)
            });
            assert_eq!(out, plain, "{len}");
            assert_eq!(read.chunks, stats.chunks, "{len}");
        }
    }
}
