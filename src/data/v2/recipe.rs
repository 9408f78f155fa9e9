//! Recipes (docs/FORMAT.md, "Recipe"): a backup's chunks in dump order, 52 bytes each, sealed
//! as a v1 data object under a key from the job's index key and the backup's id.

use std::future::Future;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::secret::ChunkId;
use crate::crypto::Dek;
use crate::crypto::format::{self, FormatError, Header};
use crate::error::{Class, Error, Result};
use crate::store::{BackupRef, Store};

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

/// Open `location`'s recipe with `dek` and call `each` on every entry, in dump order, as it
/// is decrypted; the number of entries. Truncation and tampering are integrity errors naming
/// the backup; an error of `each` stops the reading and is returned as it is.
pub async fn read_each<F, Fut>(
    store: &Store,
    location: &BackupRef,
    dek: &Dek,
    mut each: F,
) -> Result<u64>
where
    F: FnMut(Entry) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let bad =
        |why: String| Error::integrity(format!("the recipe of backup {}: {why}", location.id));
    let mut raw = store.read_object(location, FILE).await?;
    // A duplex pipe, each end owned by its side: when one side stops, dropping its end ends
    // the other's reading or writing (a split simplex would leave it waiting).
    let (reader, writer) = tokio::io::duplex(1 << 16);
    let decrypt = async {
        let mut writer = writer;
        let header = Header::read_from(&mut raw)
            .await
            .map_err(|e| recipe_error(e, location))?;
        if header.backup_id != location.id {
            return Err(bad(format!("it belongs to backup {}", header.backup_id)));
        }
        header.check_commitment(dek).map_err(|_| {
            bad("it does not open with this job's dedup secret (another job's, or changed)".into())
        })?;
        format::open(dek, &header, &mut raw, &mut writer)
            .await
            .map_err(|e| recipe_error(e, location))?;
        writer
            .shutdown()
            .await
            .map_err(|e| Error::internal(format!("recipe pipe: {e}")))
    };
    let consume = async {
        let mut reader = reader;
        let mut count = 0;
        while let Some(entry) = read_entry(&mut reader).await? {
            each(entry).await?;
            count += 1;
        }
        Ok(count)
    };
    let (decrypted, consumed) = tokio::join!(decrypt, consume);
    match (decrypted, consumed) {
        (Err(d), _) if d.class() == Class::Integrity => Err(d),
        (_, Err(c)) => Err(c),
        (Err(d), Ok(_)) => Err(d),
        (Ok(()), Ok(count)) => Ok(count),
    }
    .map_err(|e| match e.class() {
        Class::Integrity if !e.message().contains("recipe") => bad(e.message().to_string()),
        _ => e,
    })
}

/// The next entry, None at the end; an entry cut short is an integrity error.
async fn read_entry<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<Entry>> {
    let mut buf = [0u8; ENTRY_LEN];
    let mut filled = 0;
    while filled < ENTRY_LEN {
        match reader.read(&mut buf[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) => return Err(Error::internal(format!("recipe pipe: {e}"))),
        }
    }
    match filled {
        0 => Ok(None),
        ENTRY_LEN => Ok(Some(Entry::decode(&buf))),
        _ => Err(Error::integrity(format!(
            "the recipe's length is not a multiple of {ENTRY_LEN} bytes"
        ))),
    }
}

fn recipe_error(e: FormatError, location: &BackupRef) -> Error {
    match e {
        FormatError::Read(io) => Error::store(format!(
            "downloading the recipe of backup {}: {io}",
            location.id
        )),
        // The consumer stopped (its own error is the one returned).
        FormatError::Write(io) => Error::internal(format!("recipe pipe: {io}")),
        other => Error::integrity(format!("the recipe of backup {}: {other}", location.id)),
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
