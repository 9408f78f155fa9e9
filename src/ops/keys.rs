//! Keys: making key files, and managing the keys of stored backups (list, add, remove and
//! rotate the key stanzas of manifests). Data objects are never read or rewritten: a stanza
//! only wraps the backup's DEK.
//!
//! Each manifest rewrite replaces one object whole (atomic on every store), and only the `keys`
//! field changes, so the mac still holds. A rotation adds the new key to every backup before it
//! removes the old one from any: interrupted at any point, every manifest still has a key that
//! opens it, and running the same command again finishes the job.

use std::collections::BTreeMap;

use std::path::Path;

use crate::crypto::keys::{self, Identity, Recipient, Secret, Stanza, SymmetricKey};
use crate::data;
use crate::error::{Error, Result};
use crate::secretstore::{FileAccess, env_file};
use crate::store::{Backup, Damaged, Store};

/// `e`, a failure to load the configured keys, with the remedy of making a new key only where
/// that helps: the key file does not exist and the store holds no backup yet (a new key opens
/// no existing backup; with backups, the missing file must be found, not replaced).
pub async fn offer_new_key(e: Error, store: Option<&Store>) -> Error {
    if !e.is_io(std::io::ErrorKind::NotFound) {
        return e;
    }
    let empty = match store {
        Some(store) => store
            .list(None)
            .await
            .is_ok_and(|l| l.complete.is_empty() && l.damaged.is_empty()),
        None => false,
    };
    match empty {
        true => e.with_remedy(crate::error::Remedy::NewKey),
        false => e,
    }
}

/// Write a new random key to `path` (mode 0600; an existing file is replaced only with
/// `overwrite`) and return its key id.
pub fn generate_key(path: &Path, overwrite: bool) -> Result<String> {
    let key = SymmetricKey::generate();
    env_file::write_private(path, &key.to_text(), overwrite)?;
    Ok(key.key_id())
}

/// Write a new x25519 identity to `path` (mode 0600) and return its public recipient.
pub fn generate_identity(path: &Path, overwrite: bool) -> Result<Recipient> {
    let identity = Identity::generate();
    env_file::write_private(path, &identity.to_text(), overwrite)?;
    Ok(identity.recipient())
}

/// The key id of a key file or an x25519 identity file, as manifests list it. Only the id is
/// shown, so the file's mode is not checked.
pub fn key_id_of_file(path: &Path) -> Result<String> {
    let raw = env_file::read(path, "key file", FileAccess::Any)?;
    keys::key_id_of_text(&raw).map_err(|why| Error::config(format!("{}: {why}", path.display())))
}

/// How many backups each key opens, by (type, key id).
pub fn usage(backups: &[Backup]) -> BTreeMap<(String, String), usize> {
    let mut usage = BTreeMap::new();
    for b in backups {
        for stanza in data::stanzas(b) {
            *usage
                .entry((stanza.kind().to_string(), stanza.key_id().to_string()))
                .or_insert(0) += 1;
        }
    }
    usage
}

/// What a change did.
#[derive(Debug, Default)]
pub struct KeyChange {
    pub changed: usize,
    pub already_done: usize,
    /// Backups whose manifest could not be read: left unchanged, and the caller must say so.
    pub damaged: Vec<Damaged>,
    /// In a rotation: backups that did not get the new key (made while it ran) and so keep
    /// the old one; running the rotation again finishes them.
    pub lacking_new_key: usize,
}

/// Add `new` to every backup of `job` (or of all jobs) that it does not open yet, unwrapping
/// each DEK with `unlock`.
pub async fn add(
    store: &Store,
    job: Option<&str>,
    unlock: &[Secret],
    new: &Secret,
) -> Result<KeyChange> {
    let listing = store.list(job).await?;
    let mut change = KeyChange {
        damaged: listing.damaged,
        ..KeyChange::default()
    };
    for backup in &listing.complete {
        let m = &backup.manifest.manifest;
        if keys::holds_blocking(data::stanzas(backup), new, m.backup_id).await? {
            change.already_done += 1;
            continue;
        }
        let dek = keys::unwrap_blocking(data::stanzas(backup), unlock, m.backup_id)
            .await
            .map_err(|e| e.context(format!("backup {}", m.backup_id)))?;
        let mut stanzas = data::stanzas(backup).to_vec();
        stanzas.extend(keys::wrap_blocking(std::slice::from_ref(new), &dek, m.backup_id).await?);
        change.changed += rewrite(store, backup, stanzas).await?;
    }
    Ok(change)
}

/// What a rotation did: the new key added, then the old one removed.
#[derive(Debug)]
pub struct Rotation {
    pub added: KeyChange,
    pub removed: KeyChange,
}

/// Add `new` to every backup of `job` (or of all jobs), then remove the key `old_key_id`.
/// Interrupted in the add phase, every backup still opens with the old key; in the remove
/// phase, every backup opens with the new one. Running it again finishes the job.
pub async fn rotate(
    store: &Store,
    job: Option<&str>,
    unlock: &[Secret],
    new: &Secret,
    old_key_id: &str,
) -> Result<Rotation> {
    let added = add(store, job, unlock, new).await?;
    let removed = remove_replaced(store, job, old_key_id, new).await?;
    Ok(Rotation { added, removed })
}

/// A rotation's remove phase: take the key `old_key_id` from every backup that `new` already
/// opens; backups without `new` (made while the rotation ran) keep it and are counted.
pub async fn remove_replaced(
    store: &Store,
    job: Option<&str>,
    old_key_id: &str,
    new: &Secret,
) -> Result<KeyChange> {
    remove_where(store, job, Removal::KeyId(old_key_id), Some(new)).await
}

/// Which stanzas to remove.
pub enum Removal<'a> {
    /// Stanzas with this key id (key files and x25519 recipients have one id everywhere).
    KeyId(&'a str),
    /// Stanzas this secret opens (a passphrase has a different key id in every backup).
    OpenedBy(&'a Secret),
}

impl Removal<'_> {
    async fn matches(&self, stanza: &Stanza, backup: &Backup) -> bool {
        match self {
            Removal::KeyId(id) => stanza.key_id() == *id,
            Removal::OpenedBy(secret) => keys::unwrap_blocking(
                std::slice::from_ref(stanza),
                std::slice::from_ref(secret),
                backup.location.id,
            )
            .await
            .is_ok(),
        }
    }
}

/// Remove stanzas from every backup of `job` (or of all jobs). Refuses, before changing
/// anything, if any backup would be left without a stanza.
pub async fn remove(store: &Store, job: Option<&str>, which: Removal<'_>) -> Result<KeyChange> {
    remove_where(store, job, which, None).await
}

/// `remove`, but only from backups that `held` opens (when given): a rotation never takes the
/// old key from a backup the new key is not in.
async fn remove_where(
    store: &Store,
    job: Option<&str>,
    which: Removal<'_>,
    held: Option<&Secret>,
) -> Result<KeyChange> {
    let listing = store.list(job).await?;
    let mut backups = Vec::new();
    let mut lacking_new_key = 0;
    for backup in listing.complete {
        let m = &backup.manifest.manifest;
        match held {
            Some(new)
                if !keys::holds_blocking(data::stanzas(&backup), new, m.backup_id).await? =>
            {
                lacking_new_key += 1
            }
            _ => backups.push(backup),
        }
    }
    let mut kept: Vec<Vec<Stanza>> = Vec::new();
    for backup in &backups {
        let mut left: Vec<Stanza> = Vec::new();
        for stanza in data::stanzas(backup) {
            if !which.matches(stanza, backup).await {
                left.push(stanza.clone());
            }
        }
        if left.is_empty() {
            return Err(Error::config(format!(
                "that key is the only key of backup {}: add another key first ('coffre key add'); nothing was removed",
                backup.manifest.manifest.backup_id
            )));
        }
        kept.push(left);
    }
    let mut change = KeyChange {
        damaged: listing.damaged,
        lacking_new_key,
        ..KeyChange::default()
    };
    for (backup, stanzas) in backups.iter().zip(kept) {
        if stanzas.len() == data::stanzas(backup).len() {
            change.already_done += 1;
            continue;
        }
        change.changed += rewrite(store, backup, stanzas).await?;
    }
    Ok(change)
}

/// Rewrite a backup's stanzas; 1 if it was rewritten, 0 if a prune deleted it meanwhile.
async fn rewrite(store: &Store, backup: &Backup, stanzas: Vec<Stanza>) -> Result<usize> {
    match crate::data::rewrite_keys(store, backup, stanzas).await {
        Ok(()) => Ok(1),
        Err(e) if e.is_not_found() => {
            tracing::info!("backup {}: {}", backup.location.id, e.message());
            Ok(0)
        }
        Err(e) => Err(e),
    }
}
