//! Where the key stanzas of a job's backups live, whatever their format: a v1 backup's
//! manifest, or a v2 session, which opens every chunk it wrote for every backup that uses
//! them (a session outlives its own backup while other backups still use its chunks). Key
//! changes rewrite these, and nothing else.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use uuid::Uuid;

use super::{v1, v2};
use crate::crypto::keys::Stanza;
use crate::error::Result;
use crate::manifest::{Layout, LockMode};
use crate::store::{Backup, Damaged, Listing, Store};

/// An Object Lock mode and date.
type Lock = (LockMode, DateTime<Utc>);

/// One set of stanzas.
#[derive(Debug)]
pub struct Holder {
    /// "backup ID" or "session ID of job J", for messages.
    pub name: String,
    /// The id the stanzas wrap a key for (a backup's, or a session's).
    pub wrap_id: Uuid,
    pub stanzas: Vec<Stanza>,
    place: Place,
}

#[derive(Debug)]
enum Place {
    Manifest(Box<Backup>),
    Session {
        job: String,
        /// The latest Object Lock any backup using it asked for.
        lock: Option<(LockMode, DateTime<Utc>)>,
    },
}

/// Every holder of a listing's backups, and the backups whose keys could not be read.
#[derive(Debug, Default)]
pub struct Holders {
    pub holders: Vec<Holder>,
    pub damaged: Vec<Damaged>,
    /// Holders one backup needs together, by index into `holders` (a v2 backup reads the
    /// chunks of every session its recipe lists, each with that session's key).
    pub together: Vec<Vec<usize>>,
}

/// The holders of every complete backup of `listing`.
pub async fn of(store: &Store, listing: &Listing) -> Holders {
    let mut out = Holders::default();
    // Each v2 session once, with the backup that first needs it (for messages) and its lock.
    let mut sessions: BTreeMap<(String, Uuid), (Backup, Option<Lock>)> = BTreeMap::new();
    for backup in &listing.complete {
        match &backup.manifest.layout {
            Layout::V1(v1) => out.holders.push(Holder {
                name: format!("backup {}", backup.location.id),
                wrap_id: backup.location.id,
                stanzas: v1.keys.clone(),
                place: Place::Manifest(Box::new(backup.clone())),
            }),
            Layout::V2(v2) => {
                let m = &backup.manifest.manifest;
                let lock = m.lock_mode.zip(v2.references_locked_until);
                for id in &v2.sessions {
                    let entry = sessions
                        .entry((m.job.clone(), *id))
                        .or_insert_with(|| (backup.clone(), lock));
                    if let (Some(new), Some(old)) = (lock, entry.1)
                        && new.1 > old.1
                    {
                        entry.1 = Some(new);
                    }
                }
            }
        }
    }
    let mut index: BTreeMap<(String, Uuid), usize> = BTreeMap::new();
    for ((job, id), (backup, lock)) in sessions {
        match v2::read_session(store, &job, id).await {
            Ok(session) => {
                index.insert((job.clone(), id), out.holders.len());
                out.holders.push(Holder {
                    name: format!("session {id} of job '{job}'"),
                    wrap_id: id,
                    stanzas: session.keys,
                    place: Place::Session { job, lock },
                })
            }
            Err(error) => out.damaged.push(Damaged {
                location: backup.location.clone(),
                error: error.context(format!("backup {}", backup.location.id)),
            }),
        }
    }
    for backup in &listing.complete {
        if let Layout::V2(v2) = &backup.manifest.layout {
            let job = &backup.manifest.manifest.job;
            out.together.push(
                v2.sessions
                    .iter()
                    .filter_map(|id| index.get(&(job.clone(), *id)).copied())
                    .collect(),
            );
        }
    }
    out
}

impl Holder {
    /// Replace the stanzas; a not-found error when what holds them was deleted meanwhile (a
    /// prune), and nothing is written then.
    pub async fn rewrite(&self, store: &Store, stanzas: Vec<Stanza>) -> Result<()> {
        match &self.place {
            Place::Manifest(backup) => v1::rewrite_keys(store, backup, stanzas).await,
            Place::Session { job, lock } => {
                v2::rewrite_session(store, job, self.wrap_id, stanzas, *lock).await
            }
        }
    }

    /// Whether this holder is the backup's own (v1) or session (v2), to count what a key opens.
    pub fn opens(&self, backup: &Backup) -> bool {
        match &self.place {
            Place::Manifest(b) => b.location == backup.location,
            Place::Session { job, .. } => {
                *job == backup.location.job && self.wrap_id == backup.location.id
            }
        }
    }
}
