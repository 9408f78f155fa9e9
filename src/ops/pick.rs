//! Choosing what an operation acts on: a backup by id or the newest of a job, the jobs.

use crate::config::{Config, Job};
use crate::error::{Error, Remedy, Result};
use crate::store::{Backup, Store};

/// Which backup: one id (or a unique prefix of at least 4 characters), or the newest of a job.
#[derive(Clone, Debug, Default)]
pub struct Pick {
    /// None: the newest complete backup.
    pub id: Option<String>,
    /// The job; with the newest, needed when several jobs are configured.
    pub job: Option<String>,
    /// With the newest, for jobs that dump several databases: which one.
    pub database: Option<String>,
}

pub async fn pick_backup(config: &Config, store: &Store, pick: &Pick) -> Result<Backup> {
    check_job(config, pick.job.as_deref())?;
    if let Some(id) = &pick.id {
        return store.find(id, pick.job.as_deref()).await;
    }
    let job = match (&pick.job, config.jobs.len()) {
        (Some(job), _) => job.clone(),
        (None, 1) => config.jobs.keys().next().cloned().expect("one job"),
        (None, _) => {
            return Err(Error::config(
                "several jobs are configured: say which job's newest backup",
            )
            .with_remedy(Remedy::NameJob));
        }
    };
    store.latest(&job, pick.database.as_deref()).await
}

/// The jobs named, or every job (an error when a `jobs` pattern matched nothing).
pub fn pick_jobs<'a>(config: &'a Config, names: &[String], all: bool) -> Result<Vec<&'a Job>> {
    if all {
        return config.all_jobs();
    }
    names.iter().map(|n| config.job(n)).collect()
}

/// A job named must be a configured one.
pub fn check_job(config: &Config, job: Option<&str>) -> Result<()> {
    match job {
        Some(job) => config.job(job).map(|_| ()),
        None => Ok(()),
    }
}
