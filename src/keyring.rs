//! Key management over stored backups: list, add, remove and rotate the key stanzas of
//! manifests. Data objects are never read or rewritten: a stanza only wraps the backup's DEK.
//!
//! Each manifest rewrite replaces one object whole (atomic on every store), and only the `keys`
//! field changes, so the mac still holds. A rotation adds the new key to every backup before it
//! removes the old one from any: interrupted at any point, every manifest still has a key that
//! opens it, and running the same command again finishes the job.

use std::collections::BTreeMap;

use crate::crypto::keys::{self, Secret, Stanza};
use crate::error::{Error, Result};
use crate::store::{Backup, Damaged, Store};

/// How many backups each key opens, by (type, key id).
pub fn usage(backups: &[Backup]) -> BTreeMap<(String, String), usize> {
    let mut usage = BTreeMap::new();
    for b in backups {
        for stanza in &b.manifest.manifest.keys {
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
        let (stanzas, secret, id) = (m.keys.clone(), new.clone(), m.backup_id);
        let held = tokio::task::spawn_blocking(move || keys::holds(&stanzas, &secret, id))
            .await
            .map_err(|e| Error::internal(format!("key derivation stopped: {e}")))?;
        if held {
            change.already_done += 1;
            continue;
        }
        let dek = keys::unwrap_blocking(&m.keys, unlock, m.backup_id)
            .await
            .map_err(|e| e.context(format!("backup {}", m.backup_id)))?;
        let mut stanzas = m.keys.clone();
        stanzas.extend(keys::wrap_blocking(std::slice::from_ref(new), &dek, m.backup_id).await?);
        store
            .rewrite_manifest(backup, backup.manifest.with_keys(stanzas)?)
            .await?;
        change.changed += 1;
    }
    Ok(change)
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
    let listing = store.list(job).await?;
    let backups = listing.complete;
    let mut kept: Vec<Vec<Stanza>> = Vec::new();
    for backup in &backups {
        let mut left: Vec<Stanza> = Vec::new();
        for stanza in &backup.manifest.manifest.keys {
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
        ..KeyChange::default()
    };
    for (backup, stanzas) in backups.iter().zip(kept) {
        if stanzas.len() == backup.manifest.manifest.keys.len() {
            change.already_done += 1;
            continue;
        }
        store
            .rewrite_manifest(backup, backup.manifest.with_keys(stanzas)?)
            .await?;
        change.changed += 1;
    }
    Ok(change)
}
