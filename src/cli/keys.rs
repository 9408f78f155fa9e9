//! `coffre key ...`: make key files and show their ids, and add, remove or rotate the keys of
//! stored backups (their manifests only; data objects are never rewritten).

use std::path::Path;

use super::args::{KeyArgs, NewKey, Output};
use super::commands::{emit, keys_for_opening};
use super::{json, render};
use crate::config::{Config, KeyRef};
use crate::crypto::keys::Secret;
use crate::error::{Error, Result};
use crate::ops::Context;
use crate::ops::evidence::{self, KeyEvent};
use crate::ops::keys::{self, KeyChange, Removal};
use crate::ops::pick::check_job;

/// `key list`: which keys open how many backups.
pub async fn list(ctx: &Context, job: Option<&str>, output: Output) -> Result<()> {
    check_job(&ctx.config, job)?;
    let listing = ctx.store.list(job).await?;
    let usage = keys::usage(&ctx.store, &listing).await;
    match output.json {
        true => json::key_list(&listing, &usage)
            .iter()
            .for_each(|item| println!("{item}")),
        false => print!("{}", render::key_list(&listing, &usage)),
    }
    Ok(())
}

/// What adding a key needs: the job checked, the keys that open the backups, the new key.
async fn prepare(
    ctx: &Context,
    new: &NewKey,
    job: Option<&str>,
    keys: &KeyArgs,
) -> Result<(Vec<Secret>, Secret)> {
    check_job(&ctx.config, job)?;
    let unlock = keys_for_opening(&ctx.config, keys).await?;
    let new = load_new_key(&ctx.config, new).await?;
    Ok((unlock, new))
}

async fn load_new_key(config: &Config, new: &NewKey) -> Result<Secret> {
    let (flag, key) = new.key_ref();
    key.load(config.encryption.argon2, &config.secrets)
        .await
        .map_err(|e| e.context(flag))
}

pub async fn add(
    ctx: &Context,
    new: &NewKey,
    job: Option<&str>,
    keys: &KeyArgs,
    output: Output,
) -> Result<()> {
    let (unlock, new) = prepare(ctx, new, job, keys).await?;
    let added = keys::add(&ctx.store, job, &unlock, &new).await;
    let event = KeyEvent {
        job,
        action: "add",
        key_id: evidence::key_id_of(&new),
        removed_key_id: None,
        backups: added.as_ref().map_or(0, |c| c.changed as u64),
    };
    evidence::key_changed(&ctx.audit(), event, &added).await;
    let change = added?;
    emit(
        output,
        || render::key_added(&change),
        || json::key_change("add", &change),
    );
    unchanged_damaged(&change)
}

pub async fn remove(
    ctx: &Context,
    key_id: Option<&str>,
    passphrase_env: Option<&str>,
    job: Option<&str>,
    output: Output,
) -> Result<()> {
    check_job(&ctx.config, job)?;
    let (removed, removed_id) = match (key_id, passphrase_env) {
        (Some(id), _) => (
            keys::remove(&ctx.store, job, Removal::KeyId(id)).await,
            id.to_string(),
        ),
        (None, Some(var)) => {
            let key = KeyRef::Passphrase(crate::secretstore::SecretRef::Env(var.into()));
            let secret = key
                .load(ctx.config.encryption.argon2, &ctx.config.secrets)
                .await
                .map_err(|e| e.context(format!("--passphrase-env {var}")))?;
            let removed = keys::remove(&ctx.store, job, Removal::OpenedBy(&secret)).await;
            (removed, evidence::key_id_of(&secret))
        }
        (None, None) => unreachable!("clap requires one"),
    };
    let event = KeyEvent {
        job,
        action: "remove",
        key_id: removed_id,
        removed_key_id: None,
        backups: removed.as_ref().map_or(0, |c| c.changed as u64),
    };
    evidence::key_changed(&ctx.audit(), event, &removed).await;
    let change = removed?;
    emit(
        output,
        || render::key_removed(&change),
        || json::key_change("remove", &change),
    );
    unchanged_damaged(&change)
}

pub async fn rotate(
    ctx: &Context,
    new: &NewKey,
    old_key_id: &str,
    job: Option<&str>,
    keys: &KeyArgs,
    output: Output,
) -> Result<()> {
    let (unlock, new) = prepare(ctx, new, job, keys).await?;
    let rotated = keys::rotate(&ctx.store, job, &unlock, &new, old_key_id).await;
    let event = KeyEvent {
        job,
        action: "rotate",
        key_id: evidence::key_id_of(&new),
        removed_key_id: Some(old_key_id.to_string()),
        backups: rotated.as_ref().map_or(0, |r| r.added.changed as u64),
    };
    evidence::key_changed(&ctx.audit(), event, &rotated).await;
    let rotation = rotated?;
    emit(
        output,
        || render::rotated(&rotation, old_key_id),
        || json::rotation(&rotation, old_key_id),
    );
    unchanged_damaged(&rotation.removed)
}

/// A key change leaves backups with an unreadable manifest as they were: an integrity error
/// naming each, after the others were changed.
fn unchanged_damaged(change: &KeyChange) -> Result<()> {
    for d in &change.damaged {
        tracing::error!("not changed: {}", render::damaged(d));
    }
    match change.damaged.len() {
        0 => Ok(()),
        n => Err(Error::integrity(format!(
            "{n} backups have a damaged manifest and were not changed (listed above); every other backup was"
        ))),
    }
}

pub fn generate(path: &Path, force: bool, x25519: bool, quiet: bool, output: Output) -> Result<()> {
    if x25519 {
        let recipient = keys::generate_identity(path, force)?;
        let (text, id) = (recipient.to_text(), recipient.key_id());
        emit(
            output,
            || text.clone(),
            || json::generated(path, &id, Some(text.clone())),
        );
        if !quiet {
            eprintln!(
                "wrote identity {id} to {}: keep it offline; configure jobs with the recipient above ({{ recipient = \"...\" }}) for write-only backups",
                path.display()
            );
        }
        return Ok(());
    }
    let id = keys::generate_key(path, force)?;
    emit(output, || id.clone(), || json::generated(path, &id, None));
    if !quiet {
        eprintln!(
            "wrote key {id} to {}: keep a copy offline, backups cannot be restored without it",
            path.display()
        );
    }
    Ok(())
}

pub fn id(path: &Path, output: Output) -> Result<()> {
    let id = keys::key_id_of_file(path)?;
    emit(output, || id.clone(), || json::key_id(path, &id));
    Ok(())
}
