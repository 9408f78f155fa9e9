//! Restore and verify: manifest -> key -> download -> open -> unzstd -> target.
//!
//! Every check the format offers runs on every restore: the key commitment, the manifest mac,
//! every chunk tag, the final-chunk flag, and the manifest's counts and data_sha256. A file
//! target is written under a temporary name and renamed only when all of them held, so a
//! tampered or truncated backup never leaves plaintext at the path the user asked for.

use async_compression::tokio::write::ZstdDecoder;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::crypto::format::{self, FormatError, Header};
use crate::crypto::keys::{self, Secret};
use crate::error::{Error, Result};
use crate::metered::Metered;
use crate::store::{Backup, Store};

/// Where restored data goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A new file (replaced only with `overwrite`).
    File {
        path: PathBuf,
        overwrite: bool,
    },
    Stdout,
}

impl Target {
    /// `-` is stdout; anything else is a file path.
    pub fn parse(text: &str, overwrite: bool) -> Self {
        if text == "-" {
            Target::Stdout
        } else {
            Target::File {
                path: PathBuf::from(text),
                overwrite,
            }
        }
    }
}

/// What was restored or verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSummary {
    pub stored_bytes: u64,
    pub payload_bytes: u64,
    pub plaintext_bytes: u64,
    pub chunks: u64,
}

/// Restore `backup` to `target`.
pub async fn restore(
    store: &Store,
    backup: &Backup,
    secrets: &[Secret],
    target: &Target,
) -> Result<OpenSummary> {
    match target {
        Target::Stdout => {
            let mut out = tokio::io::stdout();
            open_into(store, backup, secrets, &mut out).await
        }
        Target::File { path, overwrite } => {
            let mut partial = PartialFile::create(path, *overwrite).await?;
            let summary = open_into(store, backup, secrets, &mut partial.file).await?;
            partial.commit().await?;
            Ok(summary)
        }
    }
}

/// Check that `backup` restores, without writing the plaintext anywhere.
pub async fn verify(store: &Store, backup: &Backup, secrets: &[Secret]) -> Result<OpenSummary> {
    open_into(store, backup, secrets, &mut tokio::io::sink()).await
}

/// Decrypt and decompress `backup` into `out`, checking everything against its manifest.
async fn open_into<W: AsyncWrite + Unpin>(
    store: &Store,
    backup: &Backup,
    secrets: &[Secret],
    out: &mut W,
) -> Result<OpenSummary> {
    let m = &backup.manifest.manifest;
    let dek = keys::unwrap(&m.keys, secrets, m.backup_id)?;
    let mut data = Metered::hashing(store.read_data(&backup.location).await?);
    let header = Header::read_from(&mut data).await.map_err(open_error)?;
    if header.backup_id != m.backup_id {
        return Err(Error::integrity(format!(
            "the data object belongs to backup {}, not {}",
            header.backup_id, m.backup_id
        )));
    }
    header.check_commitment(&dek).map_err(open_error)?;
    backup.manifest.verify_mac(&dek, &header.salt)?;
    if header.chunk_log2 != m.chunk_log2 {
        return Err(Error::integrity(
            "the data object's chunk size differs from the manifest's",
        ));
    }

    let mut plaintext = Metered::counting(out);
    let stats = match m.compression.as_str() {
        "zstd" => {
            let mut decoder = ZstdDecoder::new(&mut plaintext);
            let stats = format::open(&dek, &header, &mut data, &mut decoder)
                .await
                .map_err(open_error)?;
            decoder.shutdown().await.map_err(|e| {
                Error::integrity(format!(
                    "the decrypted payload is not a complete zstd stream: {e}"
                ))
            })?;
            stats
        }
        "none" => {
            let stats = format::open(&dek, &header, &mut data, &mut plaintext)
                .await
                .map_err(open_error)?;
            plaintext
                .flush()
                .await
                .map_err(|e| Error::target(format!("writing the restored data: {e}")))?;
            stats
        }
        other => {
            return Err(Error::integrity(format!(
                "the manifest names compression '{other}', which this coffre does not know"
            )));
        }
    };

    let summary = OpenSummary {
        stored_bytes: data.bytes(),
        payload_bytes: stats.payload_bytes,
        plaintext_bytes: plaintext.bytes(),
        chunks: stats.chunks,
    };
    let expected = OpenSummary {
        stored_bytes: m.stored_bytes,
        payload_bytes: m.payload_bytes,
        plaintext_bytes: m.plaintext_bytes,
        chunks: m.chunks,
    };
    if summary != expected {
        return Err(Error::integrity(format!(
            "the backup does not match its manifest: read {summary:?}, manifest says {expected:?}"
        )));
    }
    if data.sha256_hex() != m.data_sha256 {
        return Err(Error::integrity(
            "data_sha256 of the data object does not match the manifest",
        ));
    }
    Ok(summary)
}

fn open_error(e: FormatError) -> Error {
    match e {
        FormatError::Read(io) => Error::store(format!("downloading the data object: {io}")),
        FormatError::Write(io) => {
            // zstd reports a corrupt payload as a write error of the decoder.
            if io.kind() == std::io::ErrorKind::InvalidData
                || io.kind() == std::io::ErrorKind::Other
            {
                Error::integrity(format!("the decrypted payload does not decompress: {io}"))
            } else {
                Error::target(format!("writing the restored data: {io}"))
            }
        }
        integrity => Error::integrity(integrity.to_string()),
    }
}

/// A file written under a temporary name beside its final path, renamed there on `commit`
/// and removed if dropped before.
struct PartialFile {
    file: tokio::fs::File,
    temp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl PartialFile {
    async fn create(path: &Path, overwrite: bool) -> Result<Self> {
        if !overwrite && tokio::fs::try_exists(path).await.unwrap_or(false) {
            return Err(Error::target(format!(
                "{} exists: choose another path or pass --force to replace it",
                path.display()
            )));
        }
        let name = path
            .file_name()
            .ok_or_else(|| Error::target(format!("{} is not a file path", path.display())))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".coffre-partial-{}", uuid::Uuid::new_v4().simple()));
        let temp = path.with_file_name(temp_name);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .await
            .map_err(|e| Error::target(format!("cannot create {}: {e}", temp.display())))?;
        Ok(Self {
            file,
            temp,
            path: path.to_path_buf(),
            committed: false,
        })
    }

    async fn commit(mut self) -> Result<()> {
        let fail =
            |e: std::io::Error| Error::target(format!("finishing {}: {e}", self.path.display()));
        self.file.flush().await.map_err(fail)?;
        self.file.sync_all().await.map_err(fail)?;
        tokio::fs::rename(&self.temp, &self.path)
            .await
            .map_err(fail)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
