//! Secrets as JSON files on local disk, for local use and tests: `{"version": N, "fields": {...}}`,
//! owner-only (0600), replaced whole by rename. A conditional write holds an exclusive lock on
//! a sibling `.NAME.lock` file while it compares versions and renames, so two processes on one
//! machine decide races the way a server would.

use async_trait::async_trait;
use serde_json::json;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::env_file;
use super::versioned::{Fields, SecretStore, Versioned, Written};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, Default)]
pub struct FileStore;

#[async_trait]
impl SecretStore for FileStore {
    async fn read(&self, name: &str) -> Result<Option<Versioned>> {
        let path = PathBuf::from(name);
        blocking(move || read_file(&path)).await
    }

    async fn write(&self, name: &str, fields: &Fields, expected: Option<&str>) -> Result<Written> {
        let path = PathBuf::from(name);
        let fields = fields.clone();
        let expected = expected.map(str::to_string);
        blocking(move || {
            let _lock = lock(&path)?;
            let current = read_file(&path)?.map(|v| v.version);
            if current.as_deref() != expected.as_deref() {
                return Ok(Written::Conflict);
            }
            let next = current.map_or(1, |v| v.parse::<u64>().unwrap_or(0) + 1);
            let fields_json: serde_json::Value =
                serde_json::from_str(&fields.to_json()).expect("fields are JSON");
            let text = zeroize::Zeroizing::new(
                json!({"version": next, "fields": fields_json}).to_string(),
            );
            drop(fields_json);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| fail(&path, e))?;
            }
            env_file::write_private(&path, &text, true)
                .map_err(|e| Error::store(e.message().to_string()))?;
            Ok(Written::Done(next.to_string()))
        })
        .await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let path = PathBuf::from(name);
        blocking(move || {
            let _lock = lock(&path)?;
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail(&path, e)),
                _ => Ok(()),
            }
        })
        .await
    }
}

fn read_file(path: &Path) -> Result<Option<Versioned>> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = env_file::read(path, "secret file", env_file::FileAccess::Owner)?;
    let bad = || {
        Error::store(format!(
            "{} is not a coffre secret file ({{\"version\": N, \"fields\": {{...}}}}): move it away or fix it",
            path.display()
        ))
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let version = value["version"].as_u64().ok_or_else(bad)?;
    let fields = Fields::from_json(&value["fields"]).ok_or_else(bad)?;
    Ok(Some(Versioned {
        fields,
        version: version.to_string(),
    }))
}

/// An exclusive lock beside the file, released when the returned handle is dropped.
fn lock(path: &Path) -> Result<std::fs::File> {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".lock");
    let lock_path = path.with_file_name(name);
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(path, e))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| fail(&lock_path, e))?;
    file.lock().map_err(|e| fail(&lock_path, e))?;
    Ok(file)
}

fn fail(path: &Path, e: std::io::Error) -> Error {
    Error::store(format!("secret file {}: {e}", path.display()))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("secret file task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn writes_are_conditional_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let name = dir.path().join("sub/app.json").display().to_string();
        let store = FileStore;
        assert!(store.read(&name).await.unwrap().is_none());
        let fields = Fields::new().with("password", "p1");
        let Written::Done(v1) = store.write(&name, &fields, None).await.unwrap() else {
            panic!("first create conflicted");
        };
        assert_eq!(
            store.write(&name, &fields, None).await.unwrap(),
            Written::Conflict
        );
        let read = store.read(&name).await.unwrap().unwrap();
        assert_eq!(
            (read.version.as_str(), read.fields.get("password")),
            (v1.as_str(), Some("p1"))
        );
        let mode = std::fs::metadata(&name).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let lock = dir.path().join("sub/.app.json.lock");
        let mode = std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the lock file");
        let next = Fields::new().with("password", "p2");
        assert!(matches!(
            store.write(&name, &next, Some(&v1)).await.unwrap(),
            Written::Done(_)
        ));
        assert_eq!(
            store.write(&name, &next, Some(&v1)).await.unwrap(),
            Written::Conflict
        );
        store.delete(&name).await.unwrap();
        store.delete(&name).await.unwrap();
        assert!(store.read(&name).await.unwrap().is_none());
    }
}
