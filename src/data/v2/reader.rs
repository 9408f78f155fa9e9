//! Reading a v2 backup (docs/FORMAT.md, "Reading a v2 backup"): the backup's own session opens
//! its manifest's mac and the job's dedup secret; the recipe, decrypted as it streams, lists
//! the chunks in dump order; runs of neighbouring blobs are fetched a few at once, and every
//! chunk is decrypted, decompressed and checked against its id (on the blocking pool) before
//! it is written out, in order.

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::pack::{self, PackId};
use super::recipe::{self, Entry};
use super::secret::{IdKey, SessionKeys};
use super::session::{self, Session};
use super::{PACK_DIR, pack_name};
use crate::crypto::Dek;
use crate::crypto::keys::{self, Secret, Stanza};
use crate::data::OpenSummary;
use crate::data::target::{TargetWriter, is_target_failure};
use crate::error::{Error, Result};
use crate::manifest::{Layout, MacKey, V2Layout};
use crate::metered::Metered;
use crate::store::{Backup, Store};

/// Blobs of one pack fetched with one request, up to this many bytes stored and this many
/// of plaintext (a dump that compresses 30x must not hold 30 times the run): with their
/// plaintexts, the runs in flight are most of a restore's memory (8 MiB runs: 125 MiB peak).
const RUN_BYTES: u64 = 2 << 20;
/// Runs fetched and decrypted at once.
const RUNS_IN_FLIGHT: usize = 4;

/// The session of a v2 backup, its key unwrapped with `secrets`: what opens the manifest.
pub async fn open_session(
    store: &Store,
    job: &str,
    session_id: Uuid,
    secrets: &[Secret],
) -> Result<(Session, Dek)> {
    let session = read_session(store, job, session_id).await?;
    let dek = keys::unwrap_blocking(&session.keys, secrets, session_id)
        .await
        .map_err(|e| e.context(format!("session {session_id}")))?;
    Ok((session, dek))
}

/// A session as stored; a missing one is an integrity error (a backup that needs it cannot
/// be restored).
pub async fn read_session(store: &Store, job: &str, id: Uuid) -> Result<Session> {
    let path = store.shared_path(job, session::DIR, &session::name(id));
    let bytes = store
        .read_shared(&path, session::MAX_BYTES)
        .await?
        .ok_or_else(|| Error::integrity(format!("{path} is missing from the store")))?;
    Session::parse(&bytes, id, job)
}

/// The stanzas of a v2 backup: its own session's.
pub async fn stanzas(store: &Store, backup: &Backup) -> Result<Vec<Stanza>> {
    Ok(
        read_session(store, &backup.location.job, backup.location.id)
            .await?
            .keys,
    )
}

/// What a reader needs of a backup: its layout, the job's dedup secret, and a key for each
/// session it touches (unwrapped when first needed).
struct Opened<'a> {
    store: &'a Store,
    backup: &'a Backup,
    layout: &'a V2Layout,
    secrets: &'a [Secret],
    packs: Vec<PackId>,
    chunk_keys: HashMap<u32, Arc<Zeroizing<[u8; 32]>>>,
    checked_packs: std::collections::HashSet<u32>,
}

impl Opened<'_> {
    /// The chunk key of session `index` of the manifest.
    async fn chunk_key(&mut self, index: u32) -> Result<Arc<Zeroizing<[u8; 32]>>> {
        if let Some(key) = self.chunk_keys.get(&index) {
            return Ok(Arc::clone(key));
        }
        let id = *self.layout.sessions.get(index as usize).ok_or_else(|| {
            Error::integrity("a recipe entry names a session its manifest does not list")
        })?;
        let (_, dek) =
            open_session(self.store, &self.backup.location.job, id, self.secrets).await?;
        let key = Arc::new(SessionKeys::new(&dek, id).chunk);
        self.chunk_keys.insert(index, Arc::clone(&key));
        Ok(key)
    }

    fn pack(&self, index: u32) -> Result<PackId> {
        self.packs.get(index as usize).copied().ok_or_else(|| {
            Error::integrity("a recipe entry names a pack its manifest does not list")
        })
    }

    /// Where pack `index` of the manifest is.
    fn pack_path(&self, index: u32) -> Result<(object_store::path::Path, PackId)> {
        let pack = self.pack(index)?;
        let path = self
            .store
            .shared_path(&self.backup.location.job, PACK_DIR, &pack_name(pack));
        Ok((path, pack))
    }

    /// Check, once per pack, that its header names it and the session of `entry`.
    async fn check_pack(&mut self, entry: &Entry) -> Result<()> {
        if !self.checked_packs.insert(entry.pack) {
            return Ok(());
        }
        let pack = self.pack(entry.pack)?;
        let session = self.layout.sessions[entry.session as usize];
        let path = self
            .store
            .shared_path(&self.backup.location.job, PACK_DIR, &pack_name(pack));
        let head = read_pack(
            self.store,
            &path,
            0..pack::HEADER_LEN as u64,
            self.backup.location.id,
        )
        .await?;
        pack::check_header(&head, session, pack)
            .map_err(|e| Error::integrity(format!("{path}: {e}")))
    }
}

/// Neighbouring blobs of one pack, fetched at once.
struct Run {
    pack: u32,
    start: u64,
    end: u64,
    /// Plaintext bytes of its entries.
    plain: u64,
    entries: Vec<Entry>,
    key: Arc<Zeroizing<[u8; 32]>>,
    session: Uuid,
}

/// Decrypt and write `backup` into `out`, every chunk checked.
pub async fn open<W: AsyncWrite + Unpin>(
    store: &Store,
    backup: &Backup,
    secrets: &[Secret],
    out: &mut W,
    progress: bool,
) -> Result<OpenSummary> {
    let m = &backup.manifest.manifest;
    let Layout::V2(layout) = &backup.manifest.layout else {
        return Err(Error::internal("a v1 backup read as v2"));
    };
    if layout.sessions.first() != Some(&m.backup_id) {
        return Err(Error::integrity(format!(
            "backup {}: its manifest's first session is not its own",
            m.backup_id
        )));
    }
    let (session, dek) = open_session(store, &m.job, m.backup_id, secrets).await?;
    backup.manifest.verify_mac(MacKey::V2(&dek))?;
    let dedup = session.dedup_secret(&dek)?;
    if dedup.key_id() != layout.dedup_key_id {
        return Err(Error::integrity(format!(
            "backup {}: its session's dedup secret is not the one its manifest names",
            m.backup_id
        )));
    }
    let packs = layout
        .packs
        .iter()
        .map(|p| {
            PackId::parse(p).ok_or_else(|| Error::integrity(format!("'{p}' is not a pack id")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut opened = Opened {
        store,
        backup,
        layout,
        secrets,
        packs,
        chunk_keys: HashMap::from([(0, Arc::new(SessionKeys::new(&dek, m.backup_id).chunk))]),
        checked_packs: Default::default(),
    };
    crate::failpoint::hit("restore:opened").await;
    let bar = progress.then(|| crate::data::progress_bar(layout.referenced_bytes));
    let mut target = Metered::counting(TargetWriter(BufWriter::with_capacity(1 << 20, out)));
    let (tx, mut rx) = mpsc::channel::<Entry>(1024);
    let recipe_dek = dedup.recipe_dek(m.backup_id);
    // The sender goes with the reading side, so the writing side sees the end.
    let read = async move {
        recipe::read_each(store, &backup.location, &recipe_dek, |e| {
            let tx = tx.clone();
            async move {
                tx.send(e)
                    .await
                    .map_err(|_| Error::internal("the restore stopped reading the recipe"))
            }
        })
        .await
    };
    let id_key = dedup.id_key();
    let write = async {
        let mut runs = FuturesOrdered::new();
        let mut run: Option<Run> = None;
        let mut stats = (0u64, 0u64); // blob bytes, chunks
        while let Some(entry) = rx.recv().await {
            let joins = run.as_ref().is_some_and(|r| {
                r.pack == entry.pack
                    && r.end == u64::from(entry.offset)
                    && r.end - r.start < RUN_BYTES
                    && r.plain < RUN_BYTES
                    && r.session == layout.sessions[entry.session as usize]
            });
            if !joins {
                if let Some(full) = run.take() {
                    let (path, pack) = opened.pack_path(full.pack)?;
                    runs.push_back(fetch(store, path, pack, m.backup_id, full, id_key.clone()));
                }
                opened.check_pack(&entry).await?;
                let key = opened.chunk_key(entry.session).await?;
                run = Some(Run {
                    pack: entry.pack,
                    start: u64::from(entry.offset),
                    end: u64::from(entry.offset),
                    plain: 0,
                    entries: Vec::new(),
                    key,
                    session: *layout.sessions.get(entry.session as usize).ok_or_else(|| {
                        Error::integrity(
                            "a recipe entry names a session its manifest does not list",
                        )
                    })?,
                });
            }
            let r = run.as_mut().expect("a run is open");
            r.end += u64::from(entry.blob_len);
            r.plain += u64::from(entry.plain_len);
            r.entries.push(entry);
            while runs.len() >= RUNS_IN_FLIGHT {
                let plains = runs.next().await.expect("not empty")?;
                write_out(&mut target, plains, &mut stats, bar.as_ref()).await?;
            }
        }
        if let Some(last) = run.take() {
            let (path, pack) = opened.pack_path(last.pack)?;
            runs.push_back(fetch(store, path, pack, m.backup_id, last, id_key.clone()));
        }
        while let Some(plains) = runs.next().await {
            write_out(&mut target, plains?, &mut stats, bar.as_ref()).await?;
        }
        target
            .flush()
            .await
            .map_err(|e| Error::target(format!("writing the restored data: {e}")))?;
        Ok::<_, Error>(stats)
    };
    let (read, written) = tokio::join!(read, write);
    let (blob_bytes, chunks) = match (read, written) {
        // The writing side stopping makes the reading side fail too: its error is the cause.
        (Err(r), Err(w)) if r.class() == crate::error::Class::Internal => return Err(w),
        (Err(e), _) | (_, Err(e)) => return Err(e),
        (Ok(count), Ok(stats)) if count == stats.1 => stats,
        (Ok(_), Ok(_)) => return Err(Error::internal("the restore lost a chunk")),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = OpenSummary {
        stored_bytes: blob_bytes + layout.recipe_bytes,
        payload_bytes: blob_bytes,
        plaintext_bytes: target.bytes(),
        chunks,
    };
    if summary.plaintext_bytes != m.plaintext_bytes || summary.chunks != m.chunks {
        return Err(Error::integrity(format!(
            "backup {}: the recipe gives {} bytes in {} chunks, the manifest says {} in {}",
            m.backup_id, summary.plaintext_bytes, summary.chunks, m.plaintext_bytes, m.chunks
        )));
    }
    if blob_bytes != layout.referenced_bytes {
        return Err(Error::integrity(format!(
            "backup {}: its chunks are {blob_bytes} bytes stored, the manifest says {}",
            m.backup_id, layout.referenced_bytes
        )));
    }
    Ok(summary)
}

/// Fetch one run of blobs of `pack` (at `path`) and open each, checking its id: the run's
/// stored bytes, and its plaintexts in order.
async fn fetch(
    store: &Store,
    path: object_store::path::Path,
    pack: PackId,
    backup_id: Uuid,
    run: Run,
    id_key: IdKey,
) -> Result<(u64, Vec<Vec<u8>>)> {
    let bytes = read_pack(store, &path, run.start..run.end, backup_id).await?;
    let stored = run.end - run.start;
    let plains = tokio::task::spawn_blocking(move || {
        let mut plains = Vec::with_capacity(run.entries.len());
        for e in &run.entries {
            let at = (u64::from(e.offset) - run.start) as usize;
            let blob = &bytes[at..at + e.blob_len as usize];
            let damaged = |why: &dyn std::fmt::Display| {
                Error::integrity(format!(
                    "backup {backup_id}: pack {pack}, offset {}: {why}",
                    e.offset
                ))
            };
            let plain = pack::open_blob(&run.key, run.session, &e.id, blob, e.plain_len as usize)
                .map_err(|err| damaged(&err))?;
            if id_key.chunk_id(&plain) != e.id {
                return Err(damaged(&"the chunk is not the one its id names"));
            }
            plains.push(plain);
        }
        Ok(plains)
    })
    .await
    .map_err(|e| Error::internal(format!("opening chunks stopped: {e}")))??;
    Ok((stored, plains))
}

/// Bytes `range` of a pack of `backup_id`; a pack missing or cut short is an integrity error
/// naming the backup.
async fn read_pack(
    store: &Store,
    path: &object_store::path::Path,
    range: std::ops::Range<u64>,
    backup_id: Uuid,
) -> Result<bytes::Bytes> {
    let end = range.end;
    let damaged = |why: String| Error::integrity(format!("backup {backup_id}: {path} {why}"));
    match store.read_range(path, range).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.is_not_found() => Err(damaged("is missing from the store".into())),
        // Stores refuse a range past the end in their own words: the size says what it was.
        Err(e) => match store.shared_size(path).await {
            Ok(Some(size)) if size < end => Err(damaged(format!(
                "is cut short: {size} bytes, the recipe reads up to {end}"
            ))),
            Ok(None) => Err(damaged("is missing from the store".into())),
            _ => Err(e),
        },
    }
}

async fn write_out<W: AsyncWrite + Unpin>(
    target: &mut W,
    (stored, plains): (u64, Vec<Vec<u8>>),
    stats: &mut (u64, u64),
    bar: Option<&indicatif::ProgressBar>,
) -> Result<()> {
    stats.0 += stored;
    if let Some(bar) = bar {
        bar.inc(stored);
    }
    for plain in plains {
        target
            .write_all(&plain)
            .await
            .map_err(|e| match is_target_failure(&e) {
                true => Error::target(format!("writing the restored data: {e}")),
                false => Error::internal(format!("writing the restored data: {e}")),
            })?;
        stats.1 += 1;
    }
    Ok(())
}

/// Replace the stanzas of session `id` of `job`; a not-found error when the session is gone
/// (a prune deleted it meanwhile). Under Object Lock the new version is locked as `lock` says.
pub async fn rewrite_session(
    store: &Store,
    job: &str,
    id: Uuid,
    stanzas: Vec<Stanza>,
    lock: Option<(crate::manifest::LockMode, chrono::DateTime<chrono::Utc>)>,
) -> Result<()> {
    let path = store.shared_path(job, session::DIR, &session::name(id));
    let Some(bytes) = store.read_shared(&path, session::MAX_BYTES).await? else {
        return Err(crate::data::gone(&format!("session {id} of job '{job}'")));
    };
    let mut session = Session::parse(&bytes, id, job)?;
    session.keys = stanzas;
    store.put_shared(&path, session.to_bytes()).await?;
    if let Some((mode, until)) = lock.filter(|(_, until)| *until > chrono::Utc::now()) {
        store.lock_shared(&path, mode, until).await?;
    }
    Ok(())
}
