//! A restore target file that appears whole or not at all.
//!
//! The data is written to an unnamed file in the target's directory (`O_TMPFILE`) and linked
//! to its name only when every check passed: if coffre is killed, even by SIGKILL, the kernel
//! frees the file and no plaintext is left anywhere. On filesystems without unnamed files
//! (NFS, some FUSE mounts) a hidden temporary name is used instead,
//! `.NAME.coffre-partial-HOST-PID-START-RANDOM`; a later restore into the same directory removes
//! those its own host left behind whose process is gone, and any over a day old.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Remedy, Result};

const PARTIAL_MARK: &str = ".coffre-partial-";
/// A temporary file of another host (or an unreadable one) is left alone until this old.
const FOREIGN_STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A file being written; `commit` gives it its name, dropping it first leaves nothing.
pub struct PartialFile {
    pub file: tokio::fs::File,
    path: PathBuf,
    /// The hidden name, when the filesystem has no unnamed files.
    named: Option<PathBuf>,
    overwrite: bool,
    committed: bool,
}

impl PartialFile {
    /// Start writing what will become `path`. Refuses an existing `path` unless `overwrite`.
    pub async fn create(path: &Path, overwrite: bool) -> Result<Self> {
        let name = path
            .file_name()
            .ok_or_else(|| Error::target(format!("{} is not a file path", path.display())))?;
        let dir = parent_dir(path);
        if !dir.is_dir() {
            return Err(Error::target(format!(
                "directory {} does not exist: create it first, or restore to another path",
                dir.display()
            )));
        }
        if !overwrite && tokio::fs::try_exists(path).await.unwrap_or(false) {
            return Err(Error::target(format!(
                "{} exists: choose another path, or replace it",
                path.display()
            ))
            .with_remedy(Remedy::Overwrite));
        }
        remove_stale_partials(dir, name);
        let cannot = |e: std::io::Error| {
            Error::target(format!("cannot create a file in {}: {e}", dir.display()))
        };
        let (file, named) = match open_unnamed(dir) {
            Ok(file) => (file, None),
            Err(e) if unnamed_unsupported(&e) => {
                let temp = dir.join(partial_name(name));
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&temp)
                    .map_err(cannot)?;
                (file, Some(temp))
            }
            Err(e) => return Err(cannot(e)),
        };
        Ok(Self {
            file: tokio::fs::File::from_std(file),
            path: path.to_path_buf(),
            named,
            overwrite,
            committed: false,
        })
    }

    /// Make the file durable and give it its name.
    pub async fn commit(mut self) -> Result<()> {
        let path = self.path.clone();
        let fail = |e: std::io::Error| Error::target(format!("finishing {}: {e}", path.display()));
        self.file.flush().await.map_err(fail)?;
        self.file.sync_all().await.map_err(fail)?;
        match &self.named {
            Some(temp) => std::fs::rename(temp, &self.path).map_err(fail)?,
            None => self.link_unnamed().map_err(fail)?,
        }
        self.committed = true;
        std::fs::File::open(parent_dir(&self.path))
            .and_then(|dir| dir.sync_all())
            .map_err(fail)
    }

    /// Link the unnamed file to its path: directly when the path must not exist (so a file
    /// created there meanwhile is not replaced), through a hidden name and a rename otherwise.
    fn link_unnamed(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        if !self.overwrite {
            return link_follow(Path::new(&fd_path), &self.path);
        }
        let name = self.path.file_name().unwrap_or_default();
        let temp = parent_dir(&self.path).join(partial_name(name));
        link_follow(Path::new(&fd_path), &temp)?;
        std::fs::rename(&temp, &self.path).inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let (false, Some(temp)) = (self.committed, &self.named) {
            let _ = std::fs::remove_file(temp);
        }
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn open_unnamed(dir: &Path) -> std::io::Result<std::fs::File> {
    // The link at commit goes through /proc; without it, use a named file.
    if !Path::new("/proc/self/fd").is_dir() {
        return Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir)
}

fn unnamed_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOENT)
    )
}

/// linkat(2) following the /proc magic link to the open file.
fn link_follow(from: &Path, to: &Path) -> std::io::Result<()> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::Error::other("NUL in path"))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// This process, as temporary names record it: host, pid and the process's start time, so a
/// reused pid is not mistaken for the writer.
fn owner_tag(pid: u32) -> Option<String> {
    Some(format!("{}-{pid}-{}", host_tag(), process_start(pid)?))
}

fn host_tag() -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(crate::process::host_name().as_bytes())[..4])
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after it do not.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19).map(str::to_string)
}

fn partial_name(name: &OsStr) -> OsString {
    let owner = owner_tag(std::process::id()).unwrap_or_else(|| "unknown".into());
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!(
        "{PARTIAL_MARK}{owner}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    temp
}

/// Remove what earlier, killed restores to `name` in `dir` left behind: temporary files of
/// this host whose writer is gone, and any over a day old. Best effort: a failure here only
/// leaves the file for a later restore.
fn remove_stale_partials(dir: &Path, name: &OsStr) {
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.extend_from_slice(PARTIAL_MARK.as_bytes());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let host = host_tag();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(tag) = file_name.as_bytes().strip_prefix(prefix.as_slice()) else {
            continue;
        };
        let tag = String::from_utf8_lossy(tag);
        // host-pid-start-random
        let parts: Vec<&str> = tag.split('-').collect();
        let writer_gone = match parts.as_slice() {
            [h, pid, start, _] if *h == host => pid
                .parse::<u32>()
                .is_ok_and(|pid| process_start(pid).as_deref() != Some(*start)),
            _ => false,
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > FOREIGN_STALE_AFTER);
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && (writer_gone || old) {
            tracing::info!(
                "removing {}, left by an interrupted restore",
                entry.path().display()
            );
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_start_time_and_a_dead_pid_has_none() {
        assert!(process_start(std::process::id()).is_some());
        let name = partial_name(OsStr::new("x.dump"));
        let name = name.to_string_lossy();
        assert!(name.starts_with(".x.dump.coffre-partial-"), "{name}");
        assert_eq!(name.split('-').count(), 6, "{name}");
    }

    #[test]
    fn stale_partials_of_dead_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let host = host_tag();
        let live = format!(
            ".a.bin{PARTIAL_MARK}{}-00000000",
            owner_tag(std::process::id()).unwrap()
        );
        // pid 1's start time is never 1 tick after a reboot: this writer is gone.
        let dead = format!(".a.bin{PARTIAL_MARK}{host}-1-999999999-00000000");
        let foreign = format!(".a.bin{PARTIAL_MARK}ffffffff-1-1-00000000");
        let other = format!(".b.bin{PARTIAL_MARK}{host}-1-999999999-00000000");
        for name in [&live, &dead, &foreign, &other] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        remove_stale_partials(dir.path(), OsStr::new("a.bin"));
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.contains(&live) && left.contains(&foreign) && left.contains(&other));
        assert!(!left.contains(&dead), "{left:?}");
    }
}
