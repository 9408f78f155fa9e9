//! Recipes (docs/FORMAT.md, "Recipe"): a backup's chunks in dump order, 52 bytes each, sealed
//! as a v1 data object under a key from the job's index key and the backup's id.

use super::secret::ChunkId;

pub const ENTRY_LEN: usize = 52;
/// The recipe's data-object file, in the backup's directory.
pub const FILE: &str = "recipe.cfr";
/// Recipes are sealed in STREAM chunks of 2^16 bytes.
pub const CHUNK_LOG2: u8 = 16;

/// Where one chunk of the dump is: `pack` and `session` index the manifest's arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: ChunkId,
    pub pack: u32,
    pub offset: u32,
    pub blob_len: u32,
    pub plain_len: u32,
    pub session: u32,
}

impl Entry {
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[..32].copy_from_slice(&self.id);
        for (i, v) in [
            self.pack,
            self.offset,
            self.blob_len,
            self.plain_len,
            self.session,
        ]
        .iter()
        .enumerate()
        {
            out[32 + 4 * i..36 + 4 * i].copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8; ENTRY_LEN]) -> Self {
        let be32 = |i: usize| {
            u32::from_be_bytes(bytes[32 + 4 * i..36 + 4 * i].try_into().expect("4 bytes"))
        };
        Self {
            id: bytes[..32].try_into().expect("32 bytes"),
            pack: be32(0),
            offset: be32(1),
            blob_len: be32(2),
            plain_len: be32(3),
            session: be32(4),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_in_52_big_endian_bytes() {
        let e = Entry {
            id: [5u8; 32],
            pack: 1,
            offset: 0x0102_0304,
            blob_len: 7,
            plain_len: 65536,
            session: 2,
        };
        let bytes = e.encode();
        assert_eq!(&bytes[36..40], &[1, 2, 3, 4]);
        assert_eq!(Entry::decode(&bytes), e);
    }
}
