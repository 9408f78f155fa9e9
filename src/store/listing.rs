//! What the store holds: listings of backups (complete, incomplete, damaged, vanished), a
//! backup found by id or as the newest of its series. One bad manifest never hides the others.

use std::collections::BTreeMap;

use super::Store;
use super::layout::{BackupRef, MANIFEST_FILE};
use crate::error::{Error, Remedy, Result};
use crate::manifest::StoredManifest;

/// A backup whose manifest exists.
#[derive(Clone, Debug)]
pub struct Backup {
    pub location: BackupRef,
    pub manifest: StoredManifest,
}

/// What a listing found. One bad manifest never hides the others: it is reported in
/// `damaged` and the listing goes on.
#[derive(Debug, Default)]
pub struct Listing {
    pub complete: Vec<Backup>,
    /// Backup directories without a manifest: in progress, or failed and not yet cleaned.
    pub incomplete: Vec<BackupRef>,
    /// Backups whose manifest could not be read or is not a valid manifest.
    pub damaged: Vec<Damaged>,
    /// Backups whose manifest was listed but was gone when read: deleted meanwhile (by a
    /// concurrent prune), not damaged.
    pub vanished: Vec<BackupRef>,
}

/// A backup whose manifest could not be used, and why.
#[derive(Debug)]
pub struct Damaged {
    pub location: BackupRef,
    pub error: Error,
}

impl Damaged {
    /// Whether the manifest was read and found bad (rather than not read at all: a store
    /// outage, a permission): only then is the damage known to stay.
    pub fn is_content(&self) -> bool {
        self.error.class() == crate::error::Class::Integrity
    }
}

/// The backup directories a listing of object names found, before any manifest is read.
pub(super) struct Scan {
    /// directory -> size of its manifest, if it has one
    dirs: BTreeMap<BackupRef, Option<u64>>,
}

impl Store {
    /// List backups, of one job or of all. A failed listing of names fails the whole listing;
    /// a manifest that cannot be read or parsed only marks its own backup as damaged.
    pub async fn list(&self, job: Option<&str>) -> Result<Listing> {
        let scan = self.scan(job).await?;
        Ok(self.load(scan.dirs).await)
    }

    /// The backup directories under `job` (or all), from object names alone.
    pub(super) async fn scan(&self, job: Option<&str>) -> Result<Scan> {
        let prefix = match job {
            Some(job) => self.job_dir(job),
            None => self.prefix.clone(),
        };
        let objects = self.list_all(&prefix).await?;
        let base_depth = self.prefix.parts().count();
        let mut dirs: BTreeMap<BackupRef, Option<u64>> = BTreeMap::new();
        for meta in objects {
            let parts: Vec<_> = meta.location.parts().skip(base_depth).collect();
            let [job, dir, file] = parts.as_slice() else {
                continue;
            };
            let Some(r) = BackupRef::parse_dir(job.as_ref(), dir.as_ref()) else {
                continue;
            };
            let entry = dirs.entry(r).or_insert(None);
            if file.as_ref() == MANIFEST_FILE {
                *entry = Some(meta.size);
            }
        }
        Ok(Scan { dirs })
    }

    /// Read the manifests of scanned directories.
    async fn load(&self, dirs: BTreeMap<BackupRef, Option<u64>>) -> Listing {
        let mut listing = Listing::default();
        for (r, manifest_size) in dirs {
            if manifest_size.is_none() {
                listing.incomplete.push(r);
                continue;
            }
            match self.read_manifest(&r).await {
                Ok(manifest) => listing.complete.push(Backup {
                    location: r,
                    manifest,
                }),
                Err(e) if e.is_not_found() => listing.vanished.push(r),
                Err(error) => {
                    tracing::warn!("backup {} of job '{}': {error}", r.id, r.job);
                    listing.damaged.push(Damaged { location: r, error });
                }
            }
        }
        // By the manifest's start (to the millisecond): directory names keep only seconds.
        listing
            .complete
            .sort_by_key(|b| (b.manifest.manifest.started_at, b.location.id));
        listing
    }

    /// Find a complete backup by id (or unique id prefix), optionally within one job. Only the
    /// manifest of the backup found is read: damage elsewhere in the store does not matter.
    pub async fn find(&self, id_or_prefix: &str, job: Option<&str>) -> Result<Backup> {
        let wanted = id_or_prefix.to_ascii_lowercase();
        if wanted.len() < 4 {
            return Err(Error::config(format!(
                "backup id '{id_or_prefix}' is too short: give at least 4 characters (see 'coffre list')"
            )));
        }
        let mut matches = self.scan(job).await?.dirs;
        matches.retain(|r, manifest| manifest.is_some() && r.id.to_string().starts_with(&wanted));
        let mut found = matches.into_iter();
        match (found.next(), found.next()) {
            (Some((r, _)), None) => Ok(Backup {
                manifest: self.read_manifest(&r).await?,
                location: r,
            }),
            (Some(_), Some(_)) => Err(Error::config(format!(
                "backup id '{id_or_prefix}' matches more than one backup: give more characters"
            ))),
            (None, _) => Err(Error::not_found(format!(
                "no complete backup with id '{id_or_prefix}' in {} (see 'coffre list')",
                self.description
            ))),
        }
    }

    /// The newest complete backup of a job's series: of one database, when the job dumps several.
    /// Backups with a damaged manifest are passed over, with a warning when one is newer.
    pub async fn latest(&self, job: &str, series: Option<&str>) -> Result<Backup> {
        let listing = self.list(Some(job)).await?;
        let complete = listing.complete;
        let mut names: Vec<String> = complete
            .iter()
            .map(|b| b.manifest.manifest.series().to_string())
            .collect();
        names.sort_unstable();
        names.dedup();
        let wanted = match (series, names.as_slice()) {
            (Some(s), _) => s.to_string(),
            (None, [one]) => one.clone(),
            (None, []) => String::new(),
            (None, several) => {
                return Err(Error::config(format!(
                    "job '{job}' has backups of several databases ({}): say which",
                    several.join(", ")
                ))
                .with_remedy(Remedy::NameDatabase));
            }
        };
        let found = complete
            .into_iter()
            .rev()
            .find(|b| b.manifest.manifest.series() == wanted)
            .ok_or_else(|| {
                let which = series.map(|s| format!(" of '{s}'")).unwrap_or_default();
                let damaged = match listing.damaged.len() {
                    0 => String::new(),
                    n => format!(" ({n} with a damaged manifest: see 'coffre list')"),
                };
                Error::not_found(format!(
                    "job '{job}' has no complete backup{which} in {}{damaged}",
                    self.description
                ))
            })?;
        // Directory names carry the start to the second: within the same second either may be
        // the newer one.
        for damaged in &listing.damaged {
            if damaged.location.time >= found.location.time {
                tracing::warn!(
                    "backup {} of job '{job}' may be newer than {} but its manifest is damaged: using {}",
                    damaged.location.id,
                    found.location.id,
                    found.location.id
                );
            }
        }
        Ok(found)
    }
}
