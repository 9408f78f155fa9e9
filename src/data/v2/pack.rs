//! Packs (docs/FORMAT.md, "Packs"): new chunks, each compressed and encrypted on its own under
//! the session that wrote the pack, then a table of what the pack holds, encrypted under the
//! job's index key so that a prune or a repair can read it without any session's key.
//!
//! ```text
//! "COFFREP2" || session_id || pack_id || blob_0 .. blob_n || table || BE32(len(table))
//! blob  = nonce || AES-256-GCM(K_chunk, nonce, "coffre/v2/chunk" || session_id || chunk_id, mode || data)
//! table = nonce || AES-256-GCM(K_idx, nonce, "coffre/v2/pack-table" || pack_id, entries)
//! ```

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use uuid::Uuid;

use super::secret::ChunkId;
use crate::crypto::random_array;

pub const MAGIC: &[u8; 8] = b"COFFREP2";
pub const HEADER_LEN: usize = 40;
/// Packs are closed once they reach this size.
pub const TARGET_BYTES: u64 = 32 << 20;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// What a blob adds to its payload: nonce and tag.
pub const BLOB_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
const TABLE_ENTRY_LEN: usize = 44;
const CHUNK_AAD: &[u8] = b"coffre/v2/chunk";
const TABLE_AAD: &[u8] = b"coffre/v2/pack-table";
const STORED: u8 = 0x00;
const ZSTD: u8 = 0x01;

/// A pack's id: 16 random bytes, named by 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackId(pub [u8; 16]);

impl PackId {
    pub fn random() -> Self {
        Self(random_array())
    }

    pub fn parse(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl std::fmt::Display for PackId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Why a blob, a table or a header does not open: all integrity failures.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("not a coffre pack (bad magic), or a pack of another session or id")]
    BadHeader,
    #[error("a chunk failed authentication (tampered, damaged, or not this chunk)")]
    BlobAuth,
    #[error("a chunk does not decompress to its length")]
    BadPayload,
    #[error("the pack's table failed authentication or is cut short")]
    BadTable,
}

/// The first bytes of a pack.
pub fn header(session_id: Uuid, pack_id: PackId) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..24].copy_from_slice(session_id.as_bytes());
    h[24..40].copy_from_slice(&pack_id.0);
    h
}

/// Check that `h` starts pack `pack_id` of session `session_id`.
pub fn check_header(h: &[u8], session_id: Uuid, pack_id: PackId) -> Result<(), PackError> {
    match h.len() >= HEADER_LEN && h[..HEADER_LEN] == header(session_id, pack_id) {
        true => Ok(()),
        false => Err(PackError::BadHeader),
    }
}

/// Blobs are sealed with aws-lc's AES-256-GCM (linked already for TLS): about twice the speed
/// of the aes-gcm crate on this kind of machine (docs/PERFORMANCE.md). Same cipher, same bytes.
/// The key schedule lives in aws-lc's memory, which its `OPENSSL_free` cleanses on drop.
fn blob_key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key"))
}

fn chunk_aad(session_id: Uuid, id: &ChunkId) -> Vec<u8> {
    [CHUNK_AAD, session_id.as_bytes(), id].concat()
}

/// A chunk's plaintext, copied where its blob is sealed in place (after room for the nonce
/// and the mode byte): the one copy a new chunk costs.
pub struct Unsealed(Vec<u8>);

impl Unsealed {
    pub fn new(plaintext: &[u8]) -> Self {
        let mut blob = Vec::with_capacity(BLOB_OVERHEAD + 1 + plaintext.len());
        blob.extend_from_slice(&[0; NONCE_LEN + 1]);
        blob.extend_from_slice(plaintext);
        Self(blob)
    }
}

/// One chunk as stored: compressed with zstd at `level` when that makes it smaller (none:
/// never), then encrypted. CPU work: run it off the async runtime.
pub fn seal_blob(
    key: &[u8; 32],
    session_id: Uuid,
    id: &ChunkId,
    unsealed: Unsealed,
    level: Option<i32>,
) -> Vec<u8> {
    let Unsealed(mut blob) = unsealed;
    let plaintext = &blob[NONCE_LEN + 1..];
    let compressed = level.and_then(|level| {
        zstd::bulk::compress(plaintext, level)
            .ok()
            .filter(|c| c.len() < plaintext.len())
    });
    if let Some(compressed) = compressed {
        blob.truncate(NONCE_LEN + 1);
        blob.extend_from_slice(&compressed);
        blob[NONCE_LEN] = ZSTD;
    } else {
        blob[NONCE_LEN] = STORED;
    }
    let nonce: [u8; NONCE_LEN] = random_array();
    blob[..NONCE_LEN].copy_from_slice(&nonce);
    let tag = blob_key(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(chunk_aad(session_id, id)),
            &mut blob[NONCE_LEN..],
        )
        .expect("a chunk is far below the GCM limit");
    blob.extend_from_slice(tag.as_ref());
    blob
}

/// The plaintext of a blob of chunk `id` that holds `plain_len` bytes. CPU work.
pub fn open_blob(
    key: &[u8; 32],
    session_id: Uuid,
    id: &ChunkId,
    blob: &[u8],
    plain_len: usize,
) -> Result<Vec<u8>, PackError> {
    if blob.len() < BLOB_OVERHEAD + 1 {
        return Err(PackError::BlobAuth);
    }
    let nonce: [u8; NONCE_LEN] = blob[..NONCE_LEN].try_into().expect("12 bytes");
    // Ciphertext and tag, opened in place; the tag's bytes are cut off after.
    let mut body = blob[NONCE_LEN..].to_vec();
    blob_key(key)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(chunk_aad(session_id, id)),
            &mut body,
        )
        .map_err(|_| PackError::BlobAuth)?;
    body.truncate(body.len() - TAG_LEN);
    let plain = match body[0] {
        STORED => body.split_off(1),
        // The capacity bounds what a hostile frame could make it allocate.
        ZSTD => zstd::bulk::decompress(&body[1..], plain_len).map_err(|_| PackError::BadPayload)?,
        _ => return Err(PackError::BadPayload),
    };
    match plain.len() == plain_len {
        true => Ok(plain),
        false => Err(PackError::BadPayload),
    }
}

/// What a pack's table says of one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableEntry {
    pub id: ChunkId,
    pub offset: u32,
    pub blob_len: u32,
    pub plain_len: u32,
}

/// The sealed table of pack `pack_id` and its length field: the pack's last bytes.
pub fn seal_table(index_key: &[u8; 32], pack_id: PackId, entries: &[TableEntry]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = random_array();
    let mut out = Vec::with_capacity(BLOB_OVERHEAD + entries.len() * TABLE_ENTRY_LEN + 4);
    out.extend_from_slice(&nonce);
    for e in entries {
        out.extend_from_slice(&e.id);
        out.extend_from_slice(&e.offset.to_be_bytes());
        out.extend_from_slice(&e.blob_len.to_be_bytes());
        out.extend_from_slice(&e.plain_len.to_be_bytes());
    }
    let aad = [TABLE_AAD, &pack_id.0].concat();
    let cipher = Aes256Gcm::new_from_slice(index_key).expect("32-byte key");
    let tag = cipher
        .encrypt_inout_detached(&nonce.into(), &aad, (&mut out[NONCE_LEN..]).into())
        .expect("a table is far below the GCM limit");
    out.extend_from_slice(&tag);
    let table_len = out.len() as u32;
    out.extend_from_slice(&table_len.to_be_bytes());
    out
}

/// The entries of a pack's table, from the pack's whole tail (`tail` ends where the pack
/// does and holds at least the table and its length field).
pub fn open_table(
    index_key: &[u8; 32],
    pack_id: PackId,
    tail: &[u8],
) -> Result<Vec<TableEntry>, PackError> {
    let len_at = tail.len().checked_sub(4).ok_or(PackError::BadTable)?;
    let table_len = u32::from_be_bytes(tail[len_at..].try_into().expect("4 bytes")) as usize;
    let start = len_at.checked_sub(table_len).ok_or(PackError::BadTable)?;
    let table = &tail[start..len_at];
    if table.len() < BLOB_OVERHEAD || !(table.len() - BLOB_OVERHEAD).is_multiple_of(TABLE_ENTRY_LEN)
    {
        return Err(PackError::BadTable);
    }
    let nonce: [u8; NONCE_LEN] = table[..NONCE_LEN].try_into().expect("12 bytes");
    let (body, tag) = table[NONCE_LEN..].split_at(table.len() - NONCE_LEN - TAG_LEN);
    let mut body = body.to_vec();
    let aad = [TABLE_AAD, &pack_id.0].concat();
    Aes256Gcm::new_from_slice(index_key)
        .expect("32-byte key")
        .decrypt_inout_detached(
            &nonce.into(),
            &aad,
            body.as_mut_slice().into(),
            &Tag::try_from(tag).expect("16 bytes"),
        )
        .map_err(|_| PackError::BadTable)?;
    let be32 = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("4 bytes"));
    Ok(body
        .chunks_exact(TABLE_ENTRY_LEN)
        .map(|e| TableEntry {
            id: e[..32].try_into().expect("32 bytes"),
            offset: be32(&e[32..36]),
            blob_len: be32(&e[36..40]),
            plain_len: be32(&e[40..44]),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_compressed_or_not_and_bind_their_id_and_session() {
        let key = [9u8; 32];
        let session = Uuid::new_v4();
        let text = b"INSERT INTO observations VALUES (1, 'ward 7');\n".repeat(200);
        let noise: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for plain in [text.as_slice(), noise.as_slice(), b""] {
            let id = [7u8; 32];
            let blob = seal_blob(&key, session, &id, Unsealed::new(plain), Some(2));
            if plain == text.as_slice() {
                assert!(blob.len() < plain.len() / 4, "text compresses");
            }
            assert_eq!(
                open_blob(&key, session, &id, &blob, plain.len()).unwrap(),
                plain
            );
            assert!(matches!(
                open_blob(&key, session, &[8u8; 32], &blob, plain.len()),
                Err(PackError::BlobAuth)
            ));
            assert!(open_blob(&key, Uuid::new_v4(), &id, &blob, plain.len()).is_err());
            assert!(open_blob(&[1u8; 32], session, &id, &blob, plain.len()).is_err());
            let mut flipped = blob.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            assert!(open_blob(&key, session, &id, &flipped, plain.len()).is_err());
            if !plain.is_empty() {
                assert!(matches!(
                    open_blob(&key, session, &id, &blob, plain.len() + 1),
                    Err(PackError::BadPayload)
                ));
            }
        }
    }

    #[test]
    fn tables_round_trip_and_refuse_another_pack_or_a_cut() {
        let key = [3u8; 32];
        let pack = PackId::random();
        let entries: Vec<TableEntry> = (0..5u32)
            .map(|i| TableEntry {
                id: [i as u8; 32],
                offset: 40 + i * 100,
                blob_len: 100,
                plain_len: 1000 + i,
            })
            .collect();
        let mut pack_bytes = header(Uuid::nil(), pack).to_vec();
        pack_bytes.extend(vec![0u8; 500]);
        pack_bytes.extend(seal_table(&key, pack, &entries));
        assert_eq!(open_table(&key, pack, &pack_bytes).unwrap(), entries);
        assert!(open_table(&key, PackId::random(), &pack_bytes).is_err());
        assert!(open_table(&key, pack, &pack_bytes[..pack_bytes.len() - 1]).is_err());
        assert!(open_table(&key, pack, &[0, 0, 1]).is_err());
        assert!(check_header(&pack_bytes, Uuid::nil(), pack).is_ok());
        assert!(check_header(&pack_bytes, Uuid::new_v4(), pack).is_err());
        assert_eq!(PackId::parse(&pack.to_string()), Some(pack));
    }
}
