//! Secrets from coffre's environment and from files (key files, x25519 identities, passphrase
//! and password files, mounted Kubernetes Secrets).
//!
//! Reads are capped, so pointing a key option at `/dev/urandom` or a huge file is a clear error,
//! not an endless read. Key material readable by other users is refused unless the config says
//! otherwise (a Kubernetes Secret mounted with `fsGroup` is group-readable). New files are written
//! owner-only (mode 0600) and whole or not at all: a replaced key file is renamed into place.

use serde::Deserialize;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use zeroize::Zeroizing;

use crate::error::{Error, Remedy, Result};

/// The most a secret file may hold; keys and passphrases are far smaller.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Who besides the owner may read a file a secret comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileAccess {
    /// Mode 0600 or stricter (the default).
    #[default]
    Owner,
    /// Group-readable too (0640, 0440): a Kubernetes Secret mounted with `fsGroup`.
    Group,
    /// Any mode.
    Any,
}

impl FileAccess {
    /// The permission bits this setting refuses.
    fn refused_bits(self) -> u32 {
        match self {
            FileAccess::Owner => 0o077,
            FileAccess::Group => 0o007,
            FileAccess::Any => 0,
        }
    }
}

/// Read a secret file whole, refusing one that is too large or, when `access` says so,
/// readable by others. `what` names it in errors ("key file").
pub fn read(path: &Path, what: &str, access: FileAccess) -> Result<Zeroizing<Vec<u8>>> {
    // Named as the operator would find it, wherever coffre was started from.
    let shown = absolute(path);
    let shown = shown.display();
    let unreadable =
        |e: std::io::Error| Error::config(format!("cannot read {what} {shown}: {e}")).caused_by(e);
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    let mode = meta.permissions().mode() & 0o777;
    // Pipes (`--key-file <(...)`) have no meaningful mode of their own.
    if meta.is_file() && mode & access.refused_bits() != 0 {
        return Err(Error::config(format!(
            "{what} {shown} can be read by other users (mode {mode:04o}): run 'chmod 600 {shown}'; for a Kubernetes Secret mounted with fsGroup set secret_file_access = \"group\" in the config"
        )));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(Error::config(format!(
            "{what} {shown} holds more than {} KiB: it is not a {what}",
            MAX_SECRET_FILE_BYTES / 1024
        )));
    }
    Ok(bytes)
}

/// `path` from the root, with `.` and `..` resolved by name (`config/../.coffre/k` is
/// `/work/app/.coffre/k`): what an error shows.
pub fn absolute(path: &Path) -> std::path::PathBuf {
    let joined = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = std::path::PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A secret from an environment variable of coffre's; `what` names it in the error.
pub fn read_env(name: &str, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    std::env::var_os(name)
        .map(|value| Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(value)))
        .ok_or_else(|| Error::config(format!("environment variable {name} ({what}) is not set")))
}

/// Write `text` to a file readable by its owner only, durably. Refuses to replace an existing
/// file unless `overwrite` (losing a key loses every backup made with it); a replacement is
/// written beside the file and renamed over it, so the path holds the old or the new key, and
/// always mode 0600 whatever the old file's mode was.
pub fn write_private(path: &Path, text: &str, overwrite: bool) -> Result<()> {
    let fail = |e: std::io::Error| Error::config(format!("writing {}: {e}", path.display()));
    if !overwrite {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::config(format!(
                        "{} exists: keep it (backups need it), or replace it",
                        path.display()
                    ))
                    .with_remedy(Remedy::Overwrite)
                } else {
                    Error::config(format!("cannot create {}: {e}", path.display()))
                }
            })?;
        // Half a key is worse than none: a failed write leaves no file.
        return fill(file, text)
            .and_then(|()| sync_parent(path))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(path);
            })
            .map_err(fail);
    }
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(path.file_name().unwrap_or_default());
    temp_name.push(format!(".new-{}", uuid::Uuid::new_v4().simple()));
    let temp = path.with_file_name(temp_name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| Error::config(format!("cannot create {}: {e}", temp.display())))?;
    let written = fill(file, text)
        .and_then(|()| std::fs::rename(&temp, path))
        .and_then(|()| sync_parent(path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(fail)
}

fn fill(mut file: std::fs::File, text: &str) -> std::io::Result<()> {
    // The mode given at creation is reduced by the umask, never widened; set it exactly.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Make a new or renamed directory entry durable.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_mode(dir: &Path, name: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn readable_by_others_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let owner = with_mode(dir.path(), "a", 0o600);
        let group = with_mode(dir.path(), "b", 0o640);
        let world = with_mode(dir.path(), "c", 0o644);
        assert!(read(&owner, "key file", FileAccess::Owner).is_ok());
        let err = read(&group, "key file", FileAccess::Owner).unwrap_err();
        assert!(err.message().contains("chmod 600"), "{err}");
        assert!(read(&group, "key file", FileAccess::Group).is_ok());
        assert!(read(&world, "key file", FileAccess::Group).is_err());
        assert!(read(&world, "key file", FileAccess::Any).is_ok());
    }

    #[test]
    fn endless_or_huge_files_are_refused_after_the_cap() {
        let err = read(Path::new("/dev/zero"), "key file", FileAccess::Any).unwrap_err();
        assert!(err.message().contains("more than 64 KiB"), "{err}");
    }

    #[test]
    fn replacing_a_readable_file_leaves_it_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = with_mode(dir.path(), "k", 0o644);
        assert!(write_private(&path, "new\n", false).is_err());
        write_private(&path, "new\n", true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
