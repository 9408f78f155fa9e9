//! Writing a v2 backup: the dump is cut into content-defined chunks; each chunk the job's
//! newest backup of the same database already has is only listed, each new one is compressed
//! and encrypted (on the blocking pool, a few at once, so a second core works while the first
//! cuts and names chunks) into packs uploaded as they fill; the recipe is sealed and uploaded
//! as it grows. Then the session, then the manifest, last.
//!
//! Memory is bounded by the chunk index of the newest backup and of this one (about 60 bytes
//! a chunk; the average chunk grows with the dump, see `chunking`) plus a few chunks in flight
//! and the upload parts; never by the history of the job.

use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::chunker::Chunker;
use super::pack::{self, PackId, TableEntry};
use super::recipe::{self, Entry};
use super::secret::{self, ChunkId, DedupSecret, DedupSource, IdKey, SessionKeys};
use super::session::{self, Session};
use super::streamed::{self, Streamed};
use super::{PACK_DIR, pack_name};
use crate::config::{Compression, Job};
use crate::crypto::Dek;
use crate::crypto::format::{self as sealed, Header};
use crate::crypto::keys::{self, Secret, Stanza, SymmetricKey};
use crate::error::{Class, Error, Result};
use crate::manifest::{
    Chunking, ChunkingAlgorithm, FORMAT_V2, Layout, MacKey, Manifest, SourceInfo, V2Layout,
};
use crate::metered::Metered;
use crate::source::Dump;
use crate::store::{Backup, BackupRef, Store};

/// New chunks being compressed and encrypted at once.
const IN_FLIGHT: usize = 4;
/// The average chunk is the smallest power of two from 64 KiB to 1 MiB that cuts the last
/// dump into at most this many chunks: the index stays small whatever the size.
const TARGET_CHUNKS: u64 = 200_000;
const MIN_AVG: u32 = 64 << 10;
const MAX_AVG: u32 = 1 << 20;
/// Locks of reused packs and sessions are extended this much past what the backup needs, so
/// that the next backups (a day later, say) find them locked long enough already.
const LOCK_SLACK_DAYS: i64 = 7;

/// The chunking for a dump of about `previous_bytes` (none: the first of its database).
pub fn chunking(previous_bytes: Option<u64>) -> Chunking {
    let wanted = previous_bytes.unwrap_or(0) / TARGET_CHUNKS;
    let avg = (wanted.clamp(MIN_AVG as u64, MAX_AVG as u64) as u32).next_power_of_two();
    Chunking {
        algorithm: ChunkingAlgorithm::FastCdc2020,
        min: avg / 4,
        avg,
        max: avg * 4,
        normalization: 1,
    }
}

/// Where one chunk is, by index into this run's known packs and sessions.
#[derive(Clone, Copy, Debug)]
struct Place {
    pack: u32,
    offset: u32,
    blob_len: u32,
    plain_len: u32,
    session: u32,
}

/// A v2 backup being written.
pub struct Writer {
    location: BackupRef,
    job: String,
    dek: Dek,
    stanzas: Vec<Stanza>,
    dedup: DedupSecret,
    chunking: Chunking,
    /// The backup whose chunks this one reuses.
    previous: Option<Backup>,
    transferred: Option<Transferred>,
    /// Packs (and the session) this backup stored so far: no other backup can use them
    /// before its manifest exists, so a failed backup deletes them.
    stored: std::sync::Mutex<Vec<object_store::path::Path>>,
}

/// What a finished transfer wrote.
struct Transferred {
    counts: Counts,
    new_pack_bytes: u64,
    recipe_bytes: u64,
    packs: Vec<PackId>,
    /// The sessions of the recipe; the first is this backup's own.
    sessions: Vec<Uuid>,
    references_locked_until: Option<DateTime<Utc>>,
}

/// Totals of one transfer.
#[derive(Debug, Default)]
struct Counts {
    plaintext_bytes: u64,
    chunks: u64,
    new_chunks: u64,
    referenced_bytes: u64,
}

impl Writer {
    /// Keys first (a bad key fails the job before the dump starts), then what to dedup
    /// against: the newest complete backup of `series` in this job, when it was written with
    /// the same dedup secret and chunking.
    pub async fn new(
        store: &Store,
        job: &Job,
        location: &BackupRef,
        recipients: &[Secret],
        dedup_key: Option<&SymmetricKey>,
        series: &str,
    ) -> Result<Self> {
        let dek = Dek::generate();
        let stanzas = keys::wrap_blocking(recipients, &dek, location.id).await?;
        let (dedup, source) = secret::for_job(&job.name, dedup_key, recipients).await?;
        if source == DedupSource::ThisBackupOnly {
            tracing::warn!(
                "job '{}' has only x25519 recipients and no [encryption] dedup_key: this backup stores every chunk, as will the next; set dedup_key (a key from 'coffre key generate') to store only what changed",
                job.name
            );
        }
        let newest = match store.latest(&job.name, Some(series)).await {
            Ok(backup) => Some(backup),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let chunking = chunking(newest.as_ref().map(|b| b.manifest.manifest.plaintext_bytes));
        let previous = newest.filter(|b| {
            let why = match &b.manifest.layout {
                Layout::V1(_) => Some("it is in format 1".to_string()),
                Layout::V2(v2) if v2.dedup_key_id != dedup.key_id() => Some(format!(
                    "the job's dedup secret changed since (it derives from {})",
                    match source {
                        DedupSource::DedupKey => "[encryption] dedup_key",
                        DedupSource::EncryptionKey => "the first key of [encryption] keys",
                        DedupSource::ThisBackupOnly => "nothing: it is new for each backup",
                    }
                )),
                Layout::V2(v2) if v2.chunking != chunking => Some(format!(
                    "the dump grew past what its chunk size suits (average chunk {} KiB, was {} KiB)",
                    chunking.avg >> 10,
                    v2.chunking.avg >> 10
                )),
                Layout::V2(_) => None,
            };
            if let Some(why) = &why {
                tracing::info!(
                    "job '{}': backup {} stores every chunk once instead of reusing those of backup {}: {why}",
                    job.name,
                    location.id,
                    b.location.id
                );
            }
            why.is_none()
        });
        Ok(Self {
            location: location.clone(),
            job: job.name.clone(),
            dek,
            stanzas,
            dedup,
            chunking,
            previous,
            transferred: None,
            stored: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Cut, name, dedup, pack and upload the dump, and the recipe; succeed only if the dump
    /// tool did. Stops when `stop` is cancelled; nothing written is visible without the
    /// manifest, and every upload that did not finish is aborted.
    pub async fn transfer(
        &mut self,
        store: &Store,
        job: &Job,
        dump: Dump,
        stop: &CancellationToken,
    ) -> Result<()> {
        let mut index = Index::default();
        if let Some(previous) = &self.previous {
            index.load(store, previous, &self.dedup).await?;
            index
                .keep_sessions_opened_by(store, &self.job, &self.stanzas)
                .await;
        }
        let own_session = index.session(self.location.id);
        let recipe_dek = self.dedup.recipe_dek(self.location.id);
        let recipe_header = Header::new(&recipe_dek, self.location.id, recipe::CHUNK_LOG2)
            .map_err(|e| Error::internal(format!("recipe header: {e}")))?;
        let (recipe_writer, recipe_pending) = streamed::channel();
        let (pack_tx, pack_rx) = mpsc::channel(1);
        let previous_locked_until = self
            .previous
            .as_ref()
            .and_then(|b| match &b.manifest.layout {
                Layout::V2(v2) => v2.references_locked_until,
                Layout::V1(_) => None,
            });
        let mut producer = Producer {
            store,
            job,
            session_id: self.location.id,
            chunk_key: SessionKeys::new(&self.dek, self.location.id).chunk,
            id_key: self.dedup.id_key(),
            index_key: self.dedup.index_key(),
            refs: Refs::new(own_session),
            index,
            pack: None,
            pack_tx: Some(pack_tx),
            recipe: Some((
                recipe_writer,
                sealed::Sealer::new(&recipe_dek, &recipe_header),
            )),
            locks: Locks::new(job, previous_locked_until),
            counts: Counts::default(),
        };
        let chunking = self.chunking;
        let seed = self.dedup.cdc_seed();
        let recipe_path = store.backup_object(&self.location, recipe::FILE);
        let produce = async move {
            // A stop ends the producer wherever it waits: on the dump, a seal or a full pipe.
            tokio::select! {
                produced = producer.run(dump, chunking, seed) => produced?,
                () = stop.cancelled() => {
                    return Err(Error::interrupted("the dump tool did not exit before the stop"));
                }
            }
            Ok::<_, Error>(producer)
        };
        // All three run to their end: a failed producer drops its writers, so each upload
        // sees it and aborts (a future dropped midway would leave its upload open).
        let (produced, packs, recipe) = tokio::join!(
            produce,
            upload_packs(store, job, pack_rx, &self.stored, stop),
            streamed::upload(store, &recipe_path, recipe_pending, stop),
        );
        let (producer, new_pack_bytes, recipe_bytes) = match (produced, packs, recipe) {
            (Ok(producer), Ok(packs), Ok(recipe)) => (producer, packs, recipe),
            // The dump's own failure is the cause; a store failure of the producer is only
            // the pipe an upload closed, so the upload's error says more.
            (Err(e), _, _) if e.class() != Class::Store => return Err(e),
            (produced, packs, recipe) => {
                return Err(packs
                    .err()
                    .or(recipe.err())
                    .or(produced.err())
                    .expect("one of them failed"));
            }
        };
        let (packs, sessions) = producer.refs.into_lists(&producer.index);
        self.transferred = Some(Transferred {
            counts: producer.counts,
            new_pack_bytes,
            recipe_bytes,
            packs,
            sessions,
            references_locked_until: producer.locks.references_until(),
        });
        Ok(())
    }

    /// Write the session, then the manifest (last), check the recipe is still there, and lock
    /// what the job's Object Lock asks. The manifest and the stanzas that open it.
    pub async fn finish(
        self,
        store: &Store,
        job: &Job,
        source: SourceInfo,
        started_at: DateTime<Utc>,
    ) -> Result<(Manifest, Layout, Vec<Stanza>)> {
        let done = self
            .transferred
            .ok_or_else(|| Error::internal("a v2 backup finished before its transfer"))?;
        let session = Session::new(
            &self.job,
            self.location.id,
            &self.dek,
            &self.dedup,
            self.stanzas.clone(),
        );
        let session_bytes = session.to_bytes();
        let session_len = session_bytes.len() as u64;
        let session_path =
            store.shared_path(&self.job, session::DIR, &session::name(self.location.id));
        self.stored
            .lock()
            .expect("not poisoned")
            .push(session_path.clone());
        store.put_shared(&session_path, session_bytes).await?;
        crate::failpoint::hit("backup:session-written").await;
        let lock = job.object_lock.map(|lock| {
            (
                lock.mode,
                Utc::now() + chrono::Duration::days(i64::from(lock.days)),
            )
        });
        if let Some((mode, _)) = lock {
            // As long as the packs it wrote: a session is read with them.
            let until = done
                .references_locked_until
                .ok_or_else(|| Error::internal("locked packs without a date"))?;
            store.lock_shared(&session_path, mode, until).await?;
        }
        let manifest = Manifest {
            format: FORMAT_V2.into(),
            backup_id: self.location.id,
            job: self.job.clone(),
            source,
            started_at,
            finished_at: crate::clock::now(),
            compression: job.compression.name().into(),
            plaintext_bytes: done.counts.plaintext_bytes,
            stored_bytes: done.new_pack_bytes + done.recipe_bytes + session_len,
            chunks: done.counts.chunks,
            retain_until: lock.map(|(_, until)| until),
            lock_mode: lock.map(|(mode, _)| mode),
            mac: String::new(),
        };
        let layout = Layout::V2(V2Layout {
            chunking: self.chunking,
            dedup_key_id: self.dedup.key_id(),
            new_chunks: done.counts.new_chunks,
            referenced_bytes: done.counts.referenced_bytes,
            recipe_bytes: done.recipe_bytes,
            packs: done.packs.iter().map(PackId::to_string).collect(),
            sessions: done.sessions,
            references_locked_until: done.references_locked_until,
        });
        let (bytes, manifest) = manifest.seal(&layout, MacKey::V2(&self.dek))?;
        crate::data::put_manifest_last(store, &self.location, bytes, &[recipe::FILE], lock).await?;
        Ok((manifest, layout, self.stanzas))
    }

    /// Remove what a backup that gets no manifest wrote: its recipe, the packs it finished
    /// and its session (a kill leaves them to prunes, which find them unlisted).
    pub async fn discard(self, store: &Store) -> Result<()> {
        store.delete_object(&self.location, recipe::FILE).await?;
        let stored = self.stored.into_inner().expect("not poisoned");
        for path in stored {
            // Under Object Lock a pack cannot go: a prune will try again once the lock ends.
            store.delete_shared(&path).await?;
        }
        Ok(())
    }
}

/// The chunks a backup can reuse: the newest backup's, then this one's as it writes them,
/// each by the index of its pack and session among those known to this run.
#[derive(Default)]
struct Index {
    chunks: HashMap<ChunkId, Place>,
    packs: Vec<PackId>,
    sessions: Vec<Uuid>,
}

impl Index {
    /// Every chunk of `previous`'s recipe.
    async fn load(&mut self, store: &Store, previous: &Backup, dedup: &DedupSecret) -> Result<()> {
        let Layout::V2(v2) = &previous.manifest.layout else {
            return Ok(());
        };
        let bad = |what: &str| {
            Error::integrity(format!(
                "backup {}: its manifest lists {what} that is not one",
                previous.location.id
            ))
        };
        self.packs = v2
            .packs
            .iter()
            .map(|p| PackId::parse(p).ok_or_else(|| bad("a pack id")))
            .collect::<Result<_>>()?;
        self.sessions = v2.sessions.clone();
        let (packs, sessions) = (self.packs.len() as u32, self.sessions.len() as u32);
        let chunks = &mut self.chunks;
        let dek = dedup.recipe_dek(previous.location.id);
        recipe::read_each(store, &previous.location, &dek, |e| {
            let known = e.pack < packs && e.session < sessions;
            if known {
                chunks.insert(
                    e.id,
                    Place {
                        pack: e.pack,
                        offset: e.offset,
                        blob_len: e.blob_len,
                        plain_len: e.plain_len,
                        session: e.session,
                    },
                );
            }
            async move {
                match known {
                    true => Ok(()),
                    false => Err(Error::integrity(
                        "a recipe entry names a pack or a session its manifest does not list",
                    )),
                }
            }
        })
        .await
        .map_err(|e| {
            e.context(format!(
                "reading what backup {} holds",
                previous.location.id
            ))
        })?;
        Ok(())
    }

    /// Forget the chunks of sessions that some key of this backup does not open: a backup
    /// must open with any one of its keys, and a chunk is read with the key of the session
    /// that wrote it (after a key rotation, until the job's keys are updated, old chunks are
    /// stored again rather than leave a backup that needs two keys). Stanzas are compared by
    /// key id; a passphrase's id changes with its salt, so any passphrase stanza counts for a
    /// passphrase.
    async fn keep_sessions_opened_by(&mut self, store: &Store, job: &str, own: &[Stanza]) {
        let mut closed = Vec::new();
        for (i, id) in self.sessions.iter().enumerate() {
            let session = match super::read_session(store, job, *id).await {
                Ok(session) => session,
                Err(e) => {
                    tracing::warn!("its chunks are stored again: {e}");
                    closed.push(i as u32);
                    continue;
                }
            };
            let opened = own.iter().all(|mine| {
                session.keys.iter().any(|theirs| match (mine, theirs) {
                    (Stanza::Argon2id { .. }, Stanza::Argon2id { .. }) => true,
                    _ => mine.key_id() == theirs.key_id(),
                })
            });
            if !opened {
                closed.push(i as u32);
            }
        }
        if !closed.is_empty() {
            tracing::warn!(
                "{} of the {} sessions of the previous backup lack a key of this job (a key rotation not yet in the config?): their chunks are stored again",
                closed.len(),
                self.sessions.len()
            );
            self.chunks
                .retain(|_, place| !closed.contains(&place.session));
        }
    }

    /// The index of session `id`, added when new.
    fn session(&mut self, id: Uuid) -> u32 {
        match self.sessions.iter().position(|s| *s == id) {
            Some(i) => i as u32,
            None => {
                self.sessions.push(id);
                (self.sessions.len() - 1) as u32
            }
        }
    }
}

/// The packs and sessions this backup's recipe uses, numbered in order of first use (its own
/// session first): the manifest's arrays.
struct Refs {
    packs: HashMap<u32, u32>,
    pack_order: Vec<u32>,
    sessions: HashMap<u32, u32>,
    session_order: Vec<u32>,
}

impl Refs {
    fn new(own_session: u32) -> Self {
        Self {
            packs: HashMap::new(),
            pack_order: Vec::new(),
            sessions: HashMap::from([(own_session, 0)]),
            session_order: vec![own_session],
        }
    }

    /// The recipe entry of `id` at `place`, numbering its pack and session.
    fn entry(&mut self, id: ChunkId, place: Place) -> Entry {
        let number = |map: &mut HashMap<u32, u32>, order: &mut Vec<u32>, known: u32| {
            *map.entry(known).or_insert_with(|| {
                order.push(known);
                (order.len() - 1) as u32
            })
        };
        Entry {
            id,
            pack: number(&mut self.packs, &mut self.pack_order, place.pack),
            offset: place.offset,
            blob_len: place.blob_len,
            plain_len: place.plain_len,
            session: number(&mut self.sessions, &mut self.session_order, place.session),
        }
    }

    fn into_lists(self, index: &Index) -> (Vec<PackId>, Vec<Uuid>) {
        (
            self.pack_order
                .iter()
                .map(|&k| index.packs[k as usize])
                .collect(),
            self.session_order
                .iter()
                .map(|&k| index.sessions[k as usize])
                .collect(),
        )
    }
}

/// Object Lock for what a backup writes and reuses.
struct Locks {
    /// Mode, and the date packs are locked to (the job's days and a slack).
    lock: Option<(crate::manifest::LockMode, DateTime<Utc>)>,
    /// What the previous backup's references are locked until already.
    previous: Option<DateTime<Utc>>,
    /// Known packs and sessions whose lock is known to be long enough (true) or could not
    /// be extended (false).
    packs: HashMap<u32, bool>,
    sessions: HashMap<u32, bool>,
    /// The earliest date a reference of this backup is locked until.
    floor: Option<DateTime<Utc>>,
}

impl Locks {
    fn new(job: &Job, previous: Option<DateTime<Utc>>) -> Self {
        let lock = job.object_lock.map(|lock| {
            let days = i64::from(lock.days) + LOCK_SLACK_DAYS;
            (lock.mode, Utc::now() + chrono::Duration::days(days))
        });
        Self {
            lock,
            previous,
            packs: HashMap::new(),
            sessions: HashMap::new(),
            floor: lock.map(|(_, until)| until),
        }
    }

    /// The date every reference is locked until at least (none: no Object Lock).
    fn references_until(&self) -> Option<DateTime<Utc>> {
        self.floor
    }

    /// Whether a reused object is locked long enough, extending its lock if needed; false
    /// when it cannot be (its chunks are then stored again).
    async fn reusable(
        &mut self,
        store: &Store,
        path: object_store::path::Path,
        pack: Option<u32>,
        session: Option<u32>,
    ) -> bool {
        let Some((mode, until)) = self.lock else {
            return true;
        };
        let cache = match (pack, session) {
            (Some(p), _) => self.packs.get(&p),
            (None, Some(s)) => self.sessions.get(&s),
            (None, None) => None,
        };
        if let Some(known) = cache {
            return *known;
        }
        // The previous backup extended everything it used past what this one needs.
        let ok = match self.previous {
            Some(previous) if previous >= until - chrono::Duration::days(LOCK_SLACK_DAYS) => {
                self.floor = self.floor.map(|f| f.min(previous));
                true
            }
            _ => match store.lock_shared(&path, mode, until).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(
                        "{path}: its lock could not be extended, so its chunks are stored again: {e}"
                    );
                    false
                }
            },
        };
        match (pack, session) {
            (Some(p), _) => self.packs.insert(p, ok),
            (None, Some(s)) => self.sessions.insert(s, ok),
            (None, None) => None,
        };
        ok
    }
}

/// A chunk on its way into the recipe, in dump order.
enum Pending {
    /// Found in the index.
    Reused(ChunkId, Place),
    /// Being compressed and encrypted.
    New(ChunkId, u32, JoinHandle<Vec<u8>>),
    /// New, but already sent by this backup: found in the index once its first copy is.
    Again(ChunkId),
}

/// A pack being written: uploaded as it fills.
struct OpenPack {
    id: PackId,
    known: u32,
    writer: Streamed,
    written: u64,
    table: Vec<TableEntry>,
}

/// The loop of a transfer: chunks in, blobs into packs, entries into the recipe.
struct Producer<'a> {
    store: &'a Store,
    job: &'a Job,
    session_id: Uuid,
    chunk_key: Zeroizing<[u8; 32]>,
    id_key: IdKey,
    index_key: Zeroizing<[u8; 32]>,
    index: Index,
    refs: Refs,
    pack: Option<OpenPack>,
    /// Dropped at the end, which ends the pack uploads.
    pack_tx: Option<mpsc::Sender<(PackId, streamed::Pending)>>,
    recipe: Option<(Streamed, sealed::Sealer)>,
    locks: Locks,
    counts: Counts,
}

impl Producer<'_> {
    async fn run(&mut self, dump: Dump, chunking: Chunking, seed: u64) -> Result<()> {
        let mut plaintext = Metered::counting(dump.reader);
        let level = match self.job.compression {
            Compression::Zstd => Some(self.job.zstd_level),
            Compression::None => None,
        };
        {
            let mut chunker = Chunker::new(&mut plaintext, chunking, seed);
            let mut pending: VecDeque<Pending> = VecDeque::new();
            while let Some(chunk) = chunker.next().await.map_err(|e| {
                Error::source_failed(format!(
                    "job '{}': reading the dump failed: {e}",
                    self.job.name
                ))
            })? {
                let id = self.id_key.chunk_id(chunk);
                let plain_len = chunk.len() as u32;
                let reuse = match self.index.chunks.get(&id).copied() {
                    Some(place) if self.reusable(place).await => Some(place),
                    _ => None,
                };
                // A chunk still on its way in is found in the index once it is written.
                let in_flight = pending
                    .iter()
                    .any(|p| matches!(p, Pending::New(new, ..) if *new == id));
                let next = match reuse {
                    Some(place) => Pending::Reused(id, place),
                    None if in_flight => Pending::Again(id),
                    None => {
                        let (key, session) = (self.chunk_key.clone(), self.session_id);
                        let unsealed = pack::Unsealed::new(chunk);
                        let handle = tokio::task::spawn_blocking(move || {
                            pack::seal_blob(&key, session, &id, unsealed, level)
                        });
                        Pending::New(id, plain_len, handle)
                    }
                };
                pending.push_back(next);
                while pending.len() > IN_FLIGHT {
                    let first = pending.pop_front().expect("not empty");
                    self.emit(first).await?;
                }
            }
            while let Some(first) = pending.pop_front() {
                self.emit(first).await?;
            }
        }
        self.close_pack().await?;
        self.pack_tx = None;
        self.counts.plaintext_bytes = plaintext.bytes();
        let (mut writer, sealer) = self.recipe.take().expect("the recipe is open");
        let (last, _) = sealer
            .finish()
            .map_err(|e| Error::internal(format!("sealing the recipe: {e}")))?;
        write(&mut writer, &last).await?;
        dump.exit.wait_success().await?;
        writer.finish().await
    }

    /// Whether a chunk found in the index may be reused: its pack and session locked long
    /// enough (Object Lock), or extended now.
    async fn reusable(&mut self, place: Place) -> bool {
        let pack = self.index.packs[place.pack as usize];
        let session = self.index.sessions[place.session as usize];
        if session == self.session_id {
            return true;
        }
        let pack_path = self
            .store
            .shared_path(&self.job.name, PACK_DIR, &pack_name(pack));
        let session_path =
            self.store
                .shared_path(&self.job.name, session::DIR, &session::name(session));
        self.locks
            .reusable(self.store, pack_path, Some(place.pack), None)
            .await
            && self
                .locks
                .reusable(self.store, session_path, None, Some(place.session))
                .await
    }

    /// Put one chunk into the recipe (its blob into a pack first, when new).
    async fn emit(&mut self, pending: Pending) -> Result<()> {
        let (id, place) = match pending {
            Pending::Reused(id, place) => (id, place),
            Pending::Again(id) => {
                let place = *self
                    .index
                    .chunks
                    .get(&id)
                    .ok_or_else(|| Error::internal("a repeated chunk was never stored"))?;
                (id, place)
            }
            Pending::New(id, plain_len, handle) => {
                let blob = handle
                    .await
                    .map_err(|e| Error::internal(format!("sealing a chunk stopped: {e}")))?;
                let place = self.append(id, plain_len, &blob).await?;
                self.index.chunks.insert(id, place);
                self.counts.new_chunks += 1;
                (id, place)
            }
        };
        self.counts.chunks += 1;
        self.counts.referenced_bytes += u64::from(place.blob_len);
        let entry = self.refs.entry(id, place);
        let (writer, sealer) = self.recipe.as_mut().expect("the recipe is open");
        let bytes = sealer
            .update(&entry.encode())
            .map_err(|e| Error::internal(format!("sealing the recipe: {e}")))?;
        if !bytes.is_empty() {
            write(writer, &bytes).await?;
        }
        Ok(())
    }

    /// Write a blob into the open pack (opening one when none is), closing the pack once it
    /// is full. Where the blob is.
    async fn append(&mut self, id: ChunkId, plain_len: u32, blob: &[u8]) -> Result<Place> {
        if self.pack.is_none() {
            let pack_id = PackId::random();
            let (mut writer, pending) = streamed::channel();
            self.pack_tx
                .as_ref()
                .ok_or_else(|| Error::internal("a pack opened after the last"))?
                .send((pack_id, pending))
                .await
                .map_err(|_| Error::store("the pack upload stopped"))?;
            write(&mut writer, &pack::header(self.session_id, pack_id)).await?;
            self.index.packs.push(pack_id);
            self.pack = Some(OpenPack {
                id: pack_id,
                known: (self.index.packs.len() - 1) as u32,
                writer,
                written: pack::HEADER_LEN as u64,
                table: Vec::new(),
            });
        }
        let open = self.pack.as_mut().expect("a pack is open");
        let place = Place {
            pack: open.known,
            offset: open.written as u32,
            blob_len: blob.len() as u32,
            plain_len,
            session: self.index.session(self.session_id),
        };
        write(&mut open.writer, blob).await?;
        open.table.push(TableEntry {
            id,
            offset: place.offset,
            blob_len: place.blob_len,
            plain_len,
        });
        open.written += blob.len() as u64;
        if open.written >= pack::TARGET_BYTES {
            self.close_pack().await?;
        }
        Ok(place)
    }

    /// Write the open pack's table and let its upload complete.
    async fn close_pack(&mut self) -> Result<()> {
        let Some(mut open) = self.pack.take() else {
            return Ok(());
        };
        let table = pack::seal_table(&self.index_key, open.id, &open.table);
        write(&mut open.writer, &table).await?;
        open.writer.finish().await
    }
}

async fn write(writer: &mut Streamed, bytes: &[u8]) -> Result<()> {
    writer
        .writer
        .write_all(bytes)
        .await
        .map_err(|e| Error::store(format!("the upload stopped: {e}")))
}

/// Upload each pack the producer opens, one after the other; their total size. With Object
/// Lock, each is locked once complete.
async fn upload_packs(
    store: &Store,
    job: &Job,
    mut packs: mpsc::Receiver<(PackId, streamed::Pending)>,
    stored: &std::sync::Mutex<Vec<object_store::path::Path>>,
    stop: &CancellationToken,
) -> Result<u64> {
    let lock = job.object_lock.map(|lock| {
        let days = i64::from(lock.days) + LOCK_SLACK_DAYS;
        (lock.mode, Utc::now() + chrono::Duration::days(days))
    });
    let mut total = 0;
    while let Some((id, pending)) = packs.recv().await {
        let path = store.shared_path(&job.name, PACK_DIR, &pack_name(id));
        total += streamed::upload(store, &path, pending, stop).await?;
        stored.lock().expect("not poisoned").push(path.clone());
        crate::failpoint::hit("backup:pack-uploaded").await;
        if let Some((mode, until)) = lock {
            store.lock_shared(&path, mode, until).await?;
        }
    }
    Ok(total)
}
