//! Keyless pruning of what a job's v2 backups share (docs/FORMAT.md, "Pruning"): packs and
//! sessions no manifest lists are first marked, and deleted only by a later prune once the
//! mark is older than any backup can run, if still no manifest lists them then.
//!
//! Why this is safe without a lock: a backup only reuses what the newest manifest of its
//! series listed when it started, and writes its own packs and session before its manifest.
//! An object unlisted at the mark and still unlisted a backup's whole run later can be in no
//! running backup's hands. A mark is dropped as soon as the object is listed again; the live
//! set counts the manifests this prune is about to delete.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

use super::{PACK_DIR, session};
use crate::error::{Error, Result};
use crate::manifest::Layout;
use crate::retention::ABANDON_MARGIN;
use crate::store::{Backup, Leftover, Store};

/// Beside `_packs/` and `_sessions/`: one empty object per mark, named
/// `{pack|session}-{id}-{YYYYmmddTHHMMSSZ}`, so a listing alone says what was marked when.
pub const MARK_DIR: &str = "_marks";
const MARK_TIME: &str = "%Y%m%dT%H%M%SZ";

/// A mark is at least this old before what it marks is deleted, however short the timeout.
const MIN_WAIT: Duration = Duration::hours(24);

/// How long an unlisted object waits, marked, before it is deleted: a day, or the job's
/// timeout and the margin when longer.
pub fn wait(timeout: Duration) -> Duration {
    MIN_WAIT.max(timeout + ABANDON_MARGIN)
}

/// What a mark marks: a pack, a session, or an unfinished pack upload (staging file or open
/// multipart upload, named by a digest: servers do not all say when an upload started, so
/// its age is a mark's too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Pack,
    Session,
    Upload,
}

impl Kind {
    /// The directory of the job's that holds them.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Pack | Kind::Upload => PACK_DIR,
            Kind::Session => session::DIR,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Kind::Pack => "pack",
            Kind::Session => "session",
            Kind::Upload => "upload",
        }
    }
}

/// The name an unfinished upload is marked by.
fn upload_name(leftover: &Leftover) -> String {
    use sha2::{Digest, Sha256};
    let identity = match leftover {
        Leftover::Staging(path) => path.display().to_string(),
        Leftover::Upload(upload) => format!("{}\n{}", upload.path, upload.upload_id),
    };
    hex::encode(&Sha256::digest(identity.as_bytes())[..16])
}

/// One shared object no manifest lists.
#[derive(Clone, Debug)]
pub struct Unlisted {
    pub kind: Kind,
    /// The object's name in its directory (`{id}.cfp`, `{id}.json`).
    pub name: String,
    pub size: u64,
    /// When a prune first found it unlisted, if one did.
    pub marked_at: Option<DateTime<Utc>>,
}

/// What a prune does to a job's shared objects.
#[derive(Debug, Default)]
pub struct SharedPlan {
    /// Unlisted and marked long enough ago: deleted.
    pub delete: Vec<Unlisted>,
    /// Unlisted and not marked yet: marked now.
    pub mark: Vec<Unlisted>,
    /// Unlisted and marked recently: kept for now.
    pub waiting: Vec<Unlisted>,
    /// Marks of objects listed again, or gone: removed.
    pub stale_marks: Vec<String>,
    /// Staging files and open uploads of packs, marked longer ago than the wait: removed.
    pub stale_uploads: Vec<Leftover>,
    /// Staging files and open uploads of packs seen for the first time: marked now.
    pub new_uploads: Vec<Leftover>,
    /// Every mark the plan was made from, so that the sweep removes the marks of what it
    /// deletes without listing them again.
    marks: Marks,
}

impl SharedPlan {
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty()
            && self.mark.is_empty()
            && self.waiting.is_empty()
            && self.stale_marks.is_empty()
            && self.stale_uploads.is_empty()
            && self.new_uploads.is_empty()
    }

    pub fn delete_bytes(&self) -> u64 {
        self.delete.iter().map(|u| u.size).sum()
    }
}

/// What sweeping did.
#[derive(Debug, Default)]
pub struct Swept {
    pub deleted: usize,
    pub deleted_bytes: u64,
    pub marked: usize,
    pub uploads_removed: usize,
    pub failures: Vec<Error>,
}

/// Plan the sweep of `job`'s shared objects at `now`, given every complete backup of the job
/// a listing found (those this prune deletes included). Fails, planning nothing, when a
/// listing fails or a manifest lists something that is not a pack or session id.
pub async fn plan(
    store: &Store,
    job: &str,
    listed: &[Backup],
    timeout: Duration,
    now: DateTime<Utc>,
) -> Result<SharedPlan> {
    let mut live: BTreeSet<(Kind, String)> = BTreeSet::new();
    for backup in listed {
        if let Layout::V2(v2) = &backup.manifest.layout {
            live.extend(v2.packs.iter().map(|p| (Kind::Pack, format!("{p}.cfp"))));
            live.extend(
                v2.sessions
                    .iter()
                    .map(|s| (Kind::Session, session::name(*s))),
            );
        }
    }
    let marks = marks(store, job).await?;
    let cutoff = now - wait(timeout);
    let mut plan = SharedPlan::default();
    let mut present: BTreeSet<(Kind, String)> = BTreeSet::new();
    for kind in [Kind::Pack, Kind::Session] {
        for object in store.list_shared(job, kind.dir()).await? {
            let key = (kind, object.name.clone());
            present.insert(key.clone());
            if live.contains(&key) || object.name.contains('#') {
                continue;
            }
            let marked_at = latest_mark(&marks, &key);
            let unlisted = Unlisted {
                kind,
                name: object.name,
                size: object.size,
                marked_at,
            };
            match marked_at {
                None => plan.mark.push(unlisted),
                Some(at) if at <= cutoff => plan.delete.push(unlisted),
                Some(_) => plan.waiting.push(unlisted),
            }
        }
    }
    for (key, names) in marks.iter().filter(|(key, _)| key.0 != Kind::Upload) {
        if live.contains(key) || !present.contains(key) {
            plan.stale_marks
                .extend(names.iter().map(|(name, _)| name.clone()));
        }
    }
    let mut open_uploads = BTreeSet::new();
    for leftover in store.shared_strays(job, PACK_DIR).await? {
        let key = (Kind::Upload, upload_name(&leftover));
        open_uploads.insert(key.clone());
        match latest_mark(&marks, &key) {
            None => plan.new_uploads.push(leftover),
            Some(at) if at <= cutoff => plan.stale_uploads.push(leftover),
            Some(_) => {}
        }
    }
    for (key, names) in &marks {
        if key.0 == Kind::Upload && !open_uploads.contains(key) {
            plan.stale_marks
                .extend(names.iter().map(|(name, _)| name.clone()));
        }
    }
    plan.marks = marks;
    Ok(plan)
}

/// Carry out a plan: delete first (each object, then its marks), then mark, then drop stale
/// marks and uploads. A failure is reported and the rest goes on: each step was decided alone.
pub async fn sweep(store: &Store, job: &str, plan: &SharedPlan, now: DateTime<Utc>) -> Swept {
    let mut swept = Swept::default();
    let marks = &plan.marks;
    for unlisted in &plan.delete {
        let path = store.shared_path(job, unlisted.kind.dir(), &unlisted.name);
        match store.delete_shared(&path).await {
            Ok(()) => {
                swept.deleted += 1;
                swept.deleted_bytes += unlisted.size;
                crate::failpoint::hit("prune:shared-deleted").await;
                let key = (unlisted.kind, unlisted.name.clone());
                for (mark, _) in marks.get(&key).into_iter().flatten() {
                    if let Err(e) = delete_mark(store, job, mark).await {
                        swept.failures.push(e);
                    }
                }
            }
            Err(e) => swept.failures.push(e),
        }
    }
    let uploads = plan.new_uploads.iter().map(|leftover| Unlisted {
        kind: Kind::Upload,
        name: upload_name(leftover),
        size: 0,
        marked_at: None,
    });
    for unlisted in plan.mark.iter().cloned().chain(uploads) {
        let name = mark_name(&unlisted, now);
        let path = store.shared_path(job, MARK_DIR, &name);
        match store.put_shared(&path, Vec::new()).await {
            Ok(()) => {
                swept.marked += 1;
                crate::failpoint::hit("prune:marked").await;
            }
            Err(e) => swept.failures.push(e),
        }
    }
    for mark in &plan.stale_marks {
        if let Err(e) = delete_mark(store, job, mark).await {
            swept.failures.push(e);
        }
    }
    for leftover in &plan.stale_uploads {
        match store.remove_leftover(leftover).await {
            Ok(()) => {
                swept.uploads_removed += 1;
                let key = (Kind::Upload, upload_name(leftover));
                for (mark, _) in marks.get(&key).into_iter().flatten() {
                    if let Err(e) = delete_mark(store, job, mark).await {
                        swept.failures.push(e);
                    }
                }
            }
            Err(e) => swept.failures.push(e),
        }
    }
    swept
}

/// When `key` was last marked, if it was.
fn latest_mark(marks: &Marks, key: &(Kind, String)) -> Option<DateTime<Utc>> {
    marks.get(key)?.iter().map(|(_, at)| *at).max()
}

/// The marks of `job`, by the object they mark: each mark's name and time.
type Marks = BTreeMap<(Kind, String), Vec<(String, DateTime<Utc>)>>;

async fn marks(store: &Store, job: &str) -> Result<Marks> {
    let mut marks: Marks = BTreeMap::new();
    for object in store.list_shared(job, MARK_DIR).await? {
        match parse_mark(&object.name) {
            Some((key, at)) => marks.entry(key).or_default().push((object.name, at)),
            None => tracing::warn!(
                "job '{job}': {MARK_DIR}/{} is not a mark, left alone",
                object.name
            ),
        }
    }
    Ok(marks)
}

async fn delete_mark(store: &Store, job: &str, name: &str) -> Result<()> {
    store
        .delete_shared(&store.shared_path(job, MARK_DIR, name))
        .await
}

fn mark_name(unlisted: &Unlisted, at: DateTime<Utc>) -> String {
    format!(
        "{}-{}-{}",
        unlisted.kind.word(),
        unlisted.name,
        at.format(MARK_TIME)
    )
}

/// `{pack|session}-{object name}-{time}`.
fn parse_mark(name: &str) -> Option<((Kind, String), DateTime<Utc>)> {
    let (rest, time) = name.rsplit_once('-')?;
    let at = NaiveDateTime::parse_from_str(time, MARK_TIME)
        .ok()?
        .and_utc();
    let (word, object) = rest.split_once('-')?;
    let kind = match word {
        "pack" => Kind::Pack,
        "session" => Kind::Session,
        "upload" => Kind::Upload,
        _ => return None,
    };
    Some(((kind, object.to_string()), at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_names_round_trip() {
        let at = DateTime::parse_from_rfc3339("2026-12-03T10:11:12Z")
            .unwrap()
            .to_utc();
        let unlisted = Unlisted {
            kind: Kind::Session,
            name: "2b0c5b4e-4d3f-4a57-9d55-5d5c2b7f7e01.json".into(),
            size: 1,
            marked_at: None,
        };
        let name = mark_name(&unlisted, at);
        assert_eq!(
            name,
            "session-2b0c5b4e-4d3f-4a57-9d55-5d5c2b7f7e01.json-20261203T101112Z"
        );
        assert_eq!(
            parse_mark(&name),
            Some(((Kind::Session, unlisted.name.clone()), at))
        );
        assert_eq!(parse_mark("pack-x.cfp-yesterday"), None);
        assert_eq!(parse_mark("other-x.cfp-20261203T101112Z"), None);
    }

    #[test]
    fn the_wait_is_a_day_or_the_timeout_and_margin() {
        assert_eq!(wait(Duration::hours(2)), Duration::hours(24));
        assert_eq!(
            wait(Duration::hours(30)),
            Duration::hours(30) + ABANDON_MARGIN
        );
    }
}
