//! Keys: making key files, and managing the keys of stored backups (list, add, remove and
//! rotate key stanzas). Only what holds stanzas is rewritten (`data::holders`: a v1 manifest,
//! a v2 session); data objects, packs and recipes are never read or rewritten: a stanza only
//! wraps a key.
//!
//! Each rewrite replaces one object whole (atomic on every store), and only the stanzas
//! change, so macs still hold. A rotation adds the new key everywhere before it removes the
//! old one anywhere: interrupted at any point, every backup still has a key that opens it, and
//! running the same command again finishes the job.

use std::collections::{BTreeMap, BTreeSet};

use std::path::Path;

use crate::crypto::keys::{self, Identity, Recipient, Secret, Stanza, SymmetricKey};
use crate::data::holders::{self, Holder, Holders};
use crate::error::{Error, Result};
use crate::secretstore::{FileAccess, env_file};
use crate::store::{Damaged, Listing, Store};

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

/// How many backups each key opens, by (type, key id): a v1 backup with its manifest's
/// stanzas, a v2 backup with its own session's.
pub async fn usage(store: &Store, listing: &Listing) -> BTreeMap<(String, String), usize> {
    let found = holders::of(store, listing).await;
    let mut usage = BTreeMap::new();
    for backup in &listing.complete {
        let Some(holder) = found.holders.iter().find(|h| h.opens(backup)) else {
            continue;
        };
        for stanza in &holder.stanzas {
            *usage
                .entry((stanza.kind().to_string(), stanza.key_id().to_string()))
                .or_insert(0) += 1;
        }
    }
    usage
}

/// The stanzas that open each complete backup of `listing`, by backup id (a v2 backup's: its
/// own session's; one whose session cannot be read is left out).
pub async fn stanzas_of(store: &Store, listing: &Listing) -> BTreeMap<uuid::Uuid, Vec<Stanza>> {
    let found = holders::of(store, listing).await;
    listing
        .complete
        .iter()
        .filter_map(|b| {
            let holder = found.holders.iter().find(|h| h.opens(b))?;
            Some((b.location.id, holder.stanzas.clone()))
        })
        .collect()
}

/// What a change did.
#[derive(Debug, Default)]
pub struct KeyChange {
    /// Manifests (v1) and sessions (v2) rewritten.
    pub changed: usize,
    pub already_done: usize,
    /// Backups whose manifest or session could not be read: left unchanged, and the caller
    /// must say so.
    pub damaged: Vec<Damaged>,
    /// In a rotation: what did not get the new key (made while it ran) and so keeps the old
    /// one; running the rotation again finishes them.
    pub lacking_new_key: usize,
}

/// Everything that holds the stanzas of `job`'s backups (or of all jobs').
async fn holders_of(store: &Store, job: Option<&str>) -> Result<Holders> {
    let listing = store.list(job).await?;
    let mut found = holders::of(store, &listing).await;
    found.damaged.extend(listing.damaged);
    Ok(found)
}

/// Add `new` to every backup of `job` (or of all jobs) that it does not open yet, unwrapping
/// each key with `unlock`.
pub async fn add(
    store: &Store,
    job: Option<&str>,
    unlock: &[Secret],
    new: &Secret,
) -> Result<KeyChange> {
    let found = holders_of(store, job).await?;
    let mut change = KeyChange {
        damaged: found.damaged,
        ..KeyChange::default()
    };
    for holder in &found.holders {
        if keys::holds_blocking(&holder.stanzas, new, holder.wrap_id).await? {
            change.already_done += 1;
            continue;
        }
        let dek = keys::unwrap_blocking(&holder.stanzas, unlock, holder.wrap_id)
            .await
            .map_err(|e| e.context(&holder.name))?;
        let mut stanzas = holder.stanzas.clone();
        stanzas.extend(keys::wrap_blocking(std::slice::from_ref(new), &dek, holder.wrap_id).await?);
        change.changed += rewrite(store, holder, stanzas).await?;
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

/// A rotation's remove phase: take the key `old_key_id` from everything that `new` already
/// opens; what lacks `new` (made while the rotation ran) keeps it and is counted.
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
    async fn matches(&self, stanza: &Stanza, holder: &Holder) -> bool {
        match self {
            Removal::KeyId(id) => stanza.key_id() == *id,
            Removal::OpenedBy(secret) => keys::unwrap_blocking(
                std::slice::from_ref(stanza),
                std::slice::from_ref(secret),
                holder.wrap_id,
            )
            .await
            .is_ok(),
        }
    }
}

/// Remove stanzas from every backup of `job` (or of all jobs). Refuses, before changing
/// anything, if anything would be left without a stanza.
pub async fn remove(store: &Store, job: Option<&str>, which: Removal<'_>) -> Result<KeyChange> {
    remove_where(store, job, which, None).await
}

/// `remove`, but only from what `held` opens (when given): a rotation never takes the old key
/// from what the new key is not in.
async fn remove_where(
    store: &Store,
    job: Option<&str>,
    which: Removal<'_>,
    held: Option<&Secret>,
) -> Result<KeyChange> {
    let found = holders_of(store, job).await?;
    let mut lacking = BTreeSet::new();
    if let Some(new) = held {
        for (i, holder) in found.holders.iter().enumerate() {
            if !keys::holds_blocking(&holder.stanzas, new, holder.wrap_id).await? {
                lacking.insert(i);
            }
        }
    }
    // A backup that needs a holder lacking the new key keeps opening with the old key only
    // if every holder it needs keeps it.
    let mut kept_old = lacking.clone();
    for group in &found.together {
        if group.iter().any(|i| lacking.contains(i)) {
            kept_old.extend(group.iter().copied());
        }
    }
    let lacking_new_key = lacking.len();
    let chosen: Vec<&Holder> = found
        .holders
        .iter()
        .enumerate()
        .filter(|(i, _)| !kept_old.contains(i))
        .map(|(_, h)| h)
        .collect();
    let mut kept: Vec<Vec<Stanza>> = Vec::new();
    for holder in &chosen {
        let mut left: Vec<Stanza> = Vec::new();
        for stanza in &holder.stanzas {
            if !which.matches(stanza, holder).await {
                left.push(stanza.clone());
            }
        }
        if left.is_empty() {
            return Err(Error::config(format!(
                "that key is the only key of {}: add another key first ('coffre key add'); nothing was removed",
                holder.name
            )));
        }
        kept.push(left);
    }
    let mut change = KeyChange {
        damaged: found.damaged,
        lacking_new_key,
        ..KeyChange::default()
    };
    for (holder, stanzas) in chosen.into_iter().zip(kept) {
        if stanzas.len() == holder.stanzas.len() {
            change.already_done += 1;
            continue;
        }
        change.changed += rewrite(store, holder, stanzas).await?;
    }
    Ok(change)
}

/// Rewrite a holder's stanzas; 1 if it was rewritten, 0 if a prune deleted it meanwhile.
async fn rewrite(store: &Store, holder: &Holder, stanzas: Vec<Stanza>) -> Result<usize> {
    match holder.rewrite(store, stanzas).await {
        Ok(()) => Ok(1),
        Err(e) if e.is_not_found() => {
            tracing::info!("{}: {}", holder.name, e.message());
            Ok(0)
        }
        Err(e) => Err(e),
    }
}
