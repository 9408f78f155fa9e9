//! `config check`: load the config and every job file, read every key and notification URL,
//! open the store, reach the locks, and for each rotation target log in as its admin user and
//! read its published secret and journal.

use std::path::PathBuf;

use crate::config::Config;
use crate::crypto::keys::Secret;
use crate::error::{Error, Remedy, Result};
use crate::notify;
use crate::ops::lock::Locks;
use crate::ops::rotate;
use crate::store::Store;

/// What a configuration holds, once every part of it was read.
#[derive(Debug)]
pub struct ConfigReport {
    pub path: PathBuf,
    /// The store, described without credentials.
    pub store: String,
    pub keys: Vec<Secret>,
    /// Job names and the files they came from.
    pub jobs: Vec<(String, PathBuf)>,
    /// Where the jobs' locks live.
    pub locks: String,
    /// Rotation targets and their journal's state (none: never rotated).
    pub targets: Vec<(String, Option<String>)>,
}

impl ConfigReport {
    /// Whether backups made with this config could be restored with it.
    pub fn can_restore(&self) -> bool {
        self.keys.iter().any(|k| !matches!(k, Secret::Recipient(_)))
    }
}

/// Check `config` as deeply as can be without backing up: every job pattern matches, every
/// key reads, the store opens.
pub async fn check(config: &Config) -> Result<ConfigReport> {
    // A config may rotate passwords only, with no backup job (and so no key) at all.
    let jobs = match config.targets.is_empty() || !config.jobs.is_empty() {
        true => config.all_jobs()?,
        false => Vec::new(),
    };
    let keys = match config.encryption.load_keys(&config.secrets).await {
        Ok(keys) => keys,
        Err(e) => {
            let store = Store::open(&config.store, &config.upload, &config.secrets).await;
            return Err(crate::ops::keys::offer_new_key(e, store.as_ref().ok()).await);
        }
    };
    if keys.is_empty() && !jobs.is_empty() {
        return Err(Error::config(format!(
            "{}: [encryption] lists no key: backups would fail",
            config.path.display()
        ))
        .with_remedy(Remedy::NewKey));
    }
    if let Some(webhook) = &config.notify.webhook {
        notify::read_url(config, webhook, "notify.webhook").await?;
    }
    for task in config.tasks.values() {
        if let Some(heartbeat) = &task.heartbeat {
            let what = format!("job '{}': heartbeat", task.name);
            notify::read_url(config, heartbeat, &what).await?;
        }
    }
    let store = Store::open(&config.store, &config.upload, &config.secrets).await?;
    let locks = Locks::from_config(config)
        .await?
        .check(config.tasks.keys().map(String::as_str))
        .await?;
    let mut targets = Vec::new();
    for target in config.targets.values() {
        let state = rotate::check(target, &config.secrets).await?;
        targets.push((target.name.clone(), state));
    }
    Ok(ConfigReport {
        path: config.path.clone(),
        store: store.description().to_string(),
        keys,
        jobs: jobs
            .iter()
            .map(|j| (j.name.clone(), j.file.clone()))
            .collect(),
        locks,
        targets,
    })
}
