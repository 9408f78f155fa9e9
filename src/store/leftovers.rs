//! What unfinished backups leave that listings do not show: a local store's staging files and
//! S3's open multipart uploads, removed by prune once their backup has provably stopped.

use super::layout::BackupRef;
use super::{Store, s3};
use crate::error::{Error, Result};

/// Something an unfinished backup left that listings do not show.
#[derive(Clone, Debug)]
pub enum Leftover {
    /// A local store's staging file (`data.cfr#N`), which becomes `data.cfr` on completion.
    Staging(std::path::PathBuf),
    /// An S3 multipart upload that was neither completed nor aborted.
    Upload(s3::OpenUpload),
}

/// A leftover and the backup it belongs to.
#[derive(Clone, Debug)]
pub struct Stray {
    pub location: BackupRef,
    pub leftover: Leftover,
}

impl Store {
    /// What unfinished backups of `job` left that listings do not show: staging files of a
    /// local store, open multipart uploads on S3. (Azure discards uncommitted blocks itself
    /// after 7 days; for GCS, see the bucket lifecycle rules in docs/OPERATIONS.md.)
    pub async fn strays(&self, job: &str) -> Result<Vec<Stray>> {
        let job_dir = self.job_dir(job);
        if let Some(s3) = &self.s3 {
            let uploads = s3.open_uploads(&job_dir).await?;
            return Ok(uploads
                .into_iter()
                .filter_map(|upload| {
                    let parts: Vec<_> = upload.path.parts().skip(job_dir.parts().count()).collect();
                    let [dir, _file] = parts.as_slice() else {
                        return None;
                    };
                    Some(Stray {
                        location: BackupRef::parse_dir(job, dir.as_ref())?,
                        leftover: Leftover::Upload(upload),
                    })
                })
                .collect());
        }
        let Some(root) = &self.local_root else {
            return Ok(Vec::new());
        };
        let mut dir = root.clone();
        dir.extend(job_dir.parts().map(|p| p.as_ref().to_string()));
        Ok(local_staging_files(&dir, job))
    }

    /// What unfinished uploads left in directory `dir` of `job` (format v2's `_packs/`):
    /// staging files of a local store, open multipart uploads on S3. (When they started is
    /// the caller's business: some servers do not say.)
    pub async fn shared_strays(&self, job: &str, dir: &str) -> Result<Vec<Leftover>> {
        let prefix = self.job_dir(job).join(dir);
        if let Some(s3) = &self.s3 {
            let uploads = s3.open_uploads(&prefix).await?;
            return Ok(uploads.into_iter().map(Leftover::Upload).collect());
        }
        let Some(root) = &self.local_root else {
            return Ok(Vec::new());
        };
        let mut path = root.clone();
        path.extend(prefix.parts().map(|p| p.as_ref().to_string()));
        self.refuse_links(&prefix)?;
        let Ok(files) = std::fs::read_dir(&path) else {
            return Ok(Vec::new());
        };
        Ok(files
            .flatten()
            .filter(|f| is_staging_name(&f.file_name()) && f.file_type().is_ok_and(|t| t.is_file()))
            .map(|f| Leftover::Staging(f.path()))
            .collect())
    }

    /// Abort an open upload or remove a staging file (gone already counts as done).
    pub async fn remove_leftover(&self, leftover: &Leftover) -> Result<()> {
        match leftover {
            Leftover::Upload(upload) => match &self.s3 {
                Some(s3) => s3.abort_upload(upload).await,
                None => Ok(()),
            },
            Leftover::Staging(path) => match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::store(format!("removing {}: {e}", path.display()))),
            },
        }
    }

    /// Remove what an unfinished backup left in its directory, and the directory once empty.
    pub async fn remove_stray(&self, stray: &Stray) -> Result<()> {
        let Leftover::Staging(path) = &stray.leftover else {
            return self.remove_leftover(&stray.leftover).await;
        };
        self.refuse_links(&self.backup_dir(&stray.location))?;
        self.remove_leftover(&stray.leftover).await?;
        // The directory goes too once nothing else is in it.
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }
}

/// Staging files in the backup directories under a local job directory `dir`: files named
/// `NAME#DIGITS`, as object_store names them. Symbolic links are not followed.
fn local_staging_files(dir: &std::path::Path, job: &str) -> Vec<Stray> {
    let mut strays = Vec::new();
    let Ok(backups) = std::fs::read_dir(dir) else {
        return strays;
    };
    for entry in backups.flatten() {
        // file_type() does not follow links: a linked directory is skipped.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let Some(location) = name.to_str().and_then(|n| BackupRef::parse_dir(job, n)) else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        for file in files.flatten() {
            let staging = is_staging_name(&file.file_name());
            if staging && file.file_type().is_ok_and(|t| t.is_file()) {
                strays.push(Stray {
                    location: location.clone(),
                    leftover: Leftover::Staging(file.path()),
                });
            }
        }
    }
    strays
}

/// Whether a file name is object_store's staging name: `NAME#DIGITS`.
fn is_staging_name(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.rsplit_once('#'))
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}
