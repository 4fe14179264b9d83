//! Reading and writing the remote index as one layer, whatever objects hold it.
//!
//! Two layouts (docs/formats.md):
//! - format 1, the monolith: one object, `.datastore-index.json`; its token is the commit token;
//! - format 2, shards: `_index/{shard}.json` objects listed by the commit record `_index/_meta.json`, whose token is
//!   the commit token. A commit writes its shards first and `_meta.json` last.
//!
//! Reading: the commit token of a snapshot is the token of the very read whose content became its entries (B5, the
//! seed's rule). For shards that means the `_meta.json` read made *before* the shards: a writer that commits while we
//! read them then moves `_meta.json` past the token we record, so our next fast path misses and reads again. Taking
//! the token of a `_meta.json` read made after the shards could record a commit whose shards we never saw.
//!
//! Writing (W1): every object write is conditional on the token read (create-only where there was none). When another
//! writer got there first: re-read that object, re-apply our changes on top, try again after a short jittered backoff,
//! a bounded number of times. Then the commit record, the same way, with its sequence advanced and our shards listed.
//!
//! Layout changes: a bucket with neither layout starts as format 2; a format-1 bucket stays so until migrated
//! ([`IndexLayer::migrate`]), which seals the monolith by compare-and-swap so that a format-1 writer racing the
//! migration fails its own compare-and-swap instead of writing where no reader looks.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::join;
use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::document::{IndexEntry, RemoteIndex};
use super::meta::{check_format_marker, MarkerProblem, Meta, MetaRead, FORMAT_MARKER_KEY, META_KEY, SHARD_FOLDER};
use super::shard::{home_shard, shard_key};
use crate::encoding::time::iso_from_ms;
use crate::engine::SyncError;
use crate::path::{is_internal, INDEX_KEY};
use crate::sorted::{merge_sorted, sort_by_path, sort_paths};
use crate::store::retry::{with_retry, RetryPolicy};
use crate::store::token::VersionToken;
use crate::store::{Env, Fetched, ObjectMeta, ObjectStore, Precondition, StoreError};

/// Shard objects read or written at once.
const SHARD_CONCURRENCY: usize = 16;
/// What a sealed monolith holds: a version format-1 readers refuse, and where the index went.
const SEALED_MONOLITH: &[u8] = br#"{"version":2,"migratedTo":"_index/_meta.json"}"#;

/// The index as one read found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Every entry, in path order; invalid entries (of every object read) kept for the report.
    pub index: RemoteIndex,
    /// The commit token of the read (`None`: no commit record, e.g. a new bucket).
    commit: Option<VersionToken>,
    layout: Layout,
}

#[derive(Debug, Clone, PartialEq)]
enum Layout {
    /// Format 1, with the bytes read, kept until the cache's local copy takes them.
    Monolith {
        raw: Option<Vec<u8>>,
    },
    Sharded(Box<Shards>),
}

/// What a format-2 snapshot knows beyond its entries.
#[derive(Debug, Clone, PartialEq, Default)]
struct Shards {
    meta: Meta,
    /// Each shard read: the token of that read, and what a rewrite must carry through (invalid entries, unknown
    /// fields). Its valid entries live in the snapshot's merged index.
    read: BTreeMap<String, ShardKept>,
}

#[derive(Debug, Clone, PartialEq)]
struct ShardKept {
    token: VersionToken,
    kept: RemoteIndex,
}

/// One shard as read or written: its name, token and kept fields, its valid entries, and (when written) whether
/// another writer had changed it since it was read.
struct ShardWritten {
    name: String,
    kept: ShardKept,
    entries: Vec<(String, IndexEntry)>,
    conflicted: bool,
    /// Paths whose change the shard as written refused (see [`Change`]).
    refused: Vec<String>,
}

/// A copy of the index kept in the cache ("the last index seen", never read back for a decision: B4).
#[derive(Debug)]
pub struct LocalCopy {
    pub name: &'static str,
    pub bytes: Vec<u8>,
}

impl Snapshot {
    /// No index yet: a new bucket, which starts as format 2.
    pub fn empty() -> Self {
        Snapshot { index: RemoteIndex::empty(), commit: None, layout: Layout::Sharded(Box::default()) }
    }

    /// The token a fast path compares and a sidecar may record: the one read with these entries, or written by us.
    pub fn commit_token(&self) -> Option<&VersionToken> {
        self.commit.as_ref()
    }

    /// 1 (monolith) or 2 (shards).
    pub fn format(&self) -> u8 {
        match self.layout {
            Layout::Monolith { .. } => 1,
            Layout::Sharded(_) => 2,
        }
    }

    /// Format 2: the shard names listed, and the commit sequence.
    pub fn partitions(&self) -> Option<(&[String], u64)> {
        match &self.layout {
            Layout::Sharded(shards) => Some((&shards.meta.partitions, shards.meta.commit_seq)),
            Layout::Monolith { .. } => None,
        }
    }

    /// The bytes to keep as the cache's local copy, once. Format 1 only: format-2 caches keep none.
    pub fn take_local_copy(&mut self) -> Option<LocalCopy> {
        match &mut self.layout {
            Layout::Monolith { raw } => raw.take().map(|bytes| LocalCopy { name: INDEX_KEY, bytes }),
            Layout::Sharded(_) => None,
        }
    }
}

/// What a read found.
#[derive(Debug)]
pub enum Read {
    /// The commit token is still the one asked about: nothing else was read.
    NotModified,
    Found(Snapshot),
}

/// One writer's changes to the index, by path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub paths: BTreeMap<String, Change>,
}

/// One path's change: the entry to write (`None`: remove it), on condition that the entry there is still the one the
/// writer decided on. A writer that lost a compare-and-swap re-applies its changes on top of another writer's index;
/// without the condition it would put back an entry whose object that writer had replaced or deleted (W19, W21).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub entry: Option<IndexEntry>,
    pub expected: Expected,
}

/// What a change expects to find at its path.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// No entry: a new file.
    Absent,
    /// This version of the entry (size, `lastModified`, hash).
    Version(IndexEntry),
    /// Whatever is there (the migration copies a monolith the shards must follow).
    Any,
}

impl Changes {
    /// Add or replace `rel`'s entry, if the entry there is still `expected` (`None`: no entry).
    pub fn put(&mut self, rel: String, entry: IndexEntry, expected: Option<IndexEntry>) {
        let expected = expected.map_or(Expected::Absent, Expected::Version);
        self.paths.insert(rel, Change { entry: Some(entry), expected });
    }

    /// Remove `rel`'s entry, if it is still `expected`.
    pub fn remove(&mut self, rel: String, expected: IndexEntry) {
        self.paths.insert(rel, Change { entry: None, expected: Expected::Version(expected) });
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// A successful commit.
#[derive(Debug)]
pub struct Committed {
    /// The index as written, with the commit token of our write.
    pub snapshot: Snapshot,
    /// Another writer committed first: entries other than ours may differ from the ones read before.
    pub rebased: bool,
    /// Paths whose change was not applied: another writer had changed their entry since this writer decided.
    pub refused: Vec<String>,
}

/// What `migrate` left: the commit record, as the official `migrateMonolithToShards` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub partitions: Vec<String>,
    pub commit_seq: u64,
    /// False when the bucket was format 2 already.
    pub converted: bool,
}

/// A GET's answer, with "not found" as an answer rather than an error.
enum Got {
    NotModified,
    Missing,
    Found(Vec<u8>, VersionToken),
}

/// The index of one store, read and written with the store's retry policy.
pub struct IndexLayer<'a, S, E> {
    store: &'a S,
    env: &'a E,
    retry: &'a RetryPolicy,
    cas_attempts: u32,
}

impl<'a, S: ObjectStore, E: Env> IndexLayer<'a, S, E> {
    pub fn new(store: &'a S, env: &'a E, retry: &'a RetryPolicy, cas_attempts: u32) -> Self {
        IndexLayer { store, env, retry, cas_attempts: cas_attempts.max(1) }
    }

    // ---- Reading

    /// Read the index. With `if_none_match` (a commit token recorded earlier), answers `NotModified` when the commit
    /// record still has it. Anything but "not found" failing is an error (B12): an empty index must never stand in
    /// for one that could not be read.
    pub async fn read(&self, if_none_match: Option<&VersionToken>) -> Result<Read, SyncError> {
        // With a token to compare, the commit object alone first (on format 1: _meta.json absent, then the monolith):
        // "not modified" is the whole read (B1). Otherwise the format marker is read alongside _meta.json. Either way
        // the marker is checked before anything is decided.
        let (meta, monolith) = match if_none_match {
            Some(_) => {
                let meta = self.get(META_KEY, if_none_match).await?;
                let monolith = match meta {
                    Got::NotModified => return Ok(Read::NotModified),
                    Got::Missing => match self.get(INDEX_KEY, if_none_match).await? {
                        Got::NotModified => return Ok(Read::NotModified),
                        monolith => Some(monolith),
                    },
                    Got::Found(..) => None,
                };
                self.check_format(self.get(FORMAT_MARKER_KEY, None).await?)?;
                (meta, monolith)
            }
            None => {
                let (meta, marker) = join(self.get(META_KEY, None), self.get(FORMAT_MARKER_KEY, None)).await;
                self.check_format(marker?)?;
                (meta?, None)
            }
        };
        if let Got::Found(body, token) = meta {
            match Meta::parse(&body).map_err(|why| corrupt(META_KEY, &why))? {
                MetaRead::Sharded(meta) => return self.read_shards(meta, Some(token), None).await.map(Read::Found),
                // The official readers fall back to the monolith; so do we.
                MetaRead::OtherVersion => {}
            }
        }
        let monolith = match monolith {
            Some(monolith) => monolith,
            None => self.get(INDEX_KEY, if_none_match).await?,
        };
        match monolith {
            Got::NotModified => Ok(Read::NotModified),
            Got::Found(body, _) if body == SEALED_MONOLITH => self.read_listed().await.map(Read::Found),
            Got::Found(body, token) => {
                let index = RemoteIndex::parse(&body).map_err(|e| corrupt(INDEX_KEY, &e.to_string()))?;
                Ok(Read::Found(Snapshot { index, commit: Some(token), layout: Layout::Monolith { raw: Some(body) } }))
            }
            Got::Missing => self.read_listed().await.map(Read::Found),
        }
    }

    /// The commit object's format (2: `_meta.json`, 1: the monolith), current token and size, without reading the
    /// entries (`None`: no index). For `status` only: a token found this way was compared with nothing and must never
    /// be recorded as verified.
    pub async fn head(&self) -> Result<Option<(u8, ObjectMeta)>, SyncError> {
        for (format, key) in [(2, META_KEY), (1, INDEX_KEY)] {
            match with_retry(self.env, self.retry, || self.store.head(key)).await {
                Ok(meta) => return Ok(Some((format, meta))),
                Err(StoreError::NotFound { .. }) => {}
                Err(StoreError::Aborted) => return Err(SyncError::Aborted),
                Err(other) => return Err(SyncError::IndexUnreadable(other)),
            }
        }
        Ok(None)
    }

    /// The format marker, before anything is decided or written: a bucket of a newer format is refused.
    fn check_format(&self, marker: Got) -> Result<(), SyncError> {
        let marker = match marker {
            Got::Found(bytes, _) => Some(bytes),
            Got::Missing | Got::NotModified => None,
        };
        check_format_marker(marker.as_deref()).map_err(|problem| match problem {
            MarkerProblem::TooNew { format, min_reader_format } => SyncError::FormatUnsupported(format!(
                "{FORMAT_MARKER_KEY} says format {format} (readers need format {min_reader_format}); marsh reads format 2 \
                 and older: upgrade marsh"
            )),
            MarkerProblem::Invalid(why) => SyncError::FormatUnsupported(format!("{FORMAT_MARKER_KEY} is invalid: {why}")),
        })
    }

    /// Shards found by listing `_index/`, for a bucket without a usable commit record (a first commit that stopped
    /// before writing it, or a record deleted by hand): the shards are the index; the first commit writes the record.
    async fn read_listed(&self) -> Result<Snapshot, SyncError> {
        let mut names = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let listed = with_retry(self.env, self.retry, || self.store.list(SHARD_FOLDER, page.as_deref()))
                .await
                .map_err(unreadable)?;
            names.extend(listed.objects.iter().filter_map(|object| {
                let name = object.key.strip_prefix(SHARD_FOLDER)?.strip_suffix(".json")?;
                (!name.contains('/') && super::shard::is_valid_shard_name(name)).then(|| name.to_string())
            }));
            page = listed.next_page;
            if page.is_none() {
                break;
            }
        }
        self.read_shards(Meta::rebuilt(names), None, None).await
    }

    /// Read what decisions about `paths` alone need: on format 2, `_meta.json` and the listed shards those paths live
    /// in; anything else (format 1, no commit record) is a full read. The snapshot then holds those shards' entries
    /// only, which is enough to decide those paths and to commit their changes (a commit always writes the shards of
    /// the paths it changes, all read here; `_meta.json` keeps listing every shard). Its commit token is the
    /// `_meta.json` read made before the shards, as for a full read.
    pub async fn read_for(&self, paths: &BTreeSet<String>) -> Result<Snapshot, SyncError> {
        let (meta, marker) = join(self.get(META_KEY, None), self.get(FORMAT_MARKER_KEY, None)).await;
        self.check_format(marker?)?;
        if let Got::Found(body, token) = meta? {
            if let MetaRead::Sharded(meta) = Meta::parse(&body).map_err(|why| corrupt(META_KEY, &why))? {
                let wanted: BTreeSet<String> = paths.iter().map(|rel| home_shard(rel).into_owned()).collect();
                return self.read_shards(meta, Some(token), Some(&wanted)).await;
            }
        }
        match self.read(None).await? {
            Read::Found(snapshot) => Ok(snapshot),
            Read::NotModified => unreachable!("an unconditional read answered not-modified"),
        }
    }

    /// A scoped read (swamp's `context.models`): on format 2, `_meta.json` and, of the shards it lists, only those in
    /// `wanted`. `None` (read the whole index instead) on format 1, without a commit record, or when a shard of
    /// `required` is not listed (a model whose shards we cannot name from the record). The snapshot has no commit
    /// token: its entries are not the whole commit, so it must never be recorded as verified nor committed on.
    pub async fn read_scoped(
        &self,
        if_none_match: Option<&VersionToken>,
        wanted: &BTreeSet<String>,
        required: &BTreeSet<String>,
    ) -> Result<Option<Read>, SyncError> {
        // As `read`: with a token, the commit record alone first, so "not modified" is one request.
        let (meta, marker) = match if_none_match {
            Some(_) => (self.get(META_KEY, if_none_match).await?, None),
            None => {
                let (meta, marker) = join(self.get(META_KEY, None), self.get(FORMAT_MARKER_KEY, None)).await;
                (meta?, Some(marker?))
            }
        };
        let body = match meta {
            Got::NotModified => return Ok(Some(Read::NotModified)),
            Got::Missing => return Ok(None),
            Got::Found(body, _) => body,
        };
        let marker = match marker {
            Some(marker) => marker,
            None => self.get(FORMAT_MARKER_KEY, None).await?,
        };
        self.check_format(marker)?;
        let MetaRead::Sharded(meta) = Meta::parse(&body).map_err(|why| corrupt(META_KEY, &why))? else {
            return Ok(None);
        };
        if !required.iter().all(|name| meta.partitions.contains(name)) {
            return Ok(None);
        }
        let mut snapshot = self.read_shards(meta, None, Some(wanted)).await?;
        snapshot.commit = None;
        Ok(Some(Read::Found(snapshot)))
    }

    /// Every shard `meta` lists, or those of them in `only` (a listed shard that is missing is an error: its entries
    /// would silently vanish).
    async fn read_shards(
        &self,
        meta: Meta,
        commit: Option<VersionToken>,
        only: Option<&BTreeSet<String>>,
    ) -> Result<Snapshot, SyncError> {
        let names: Vec<String> =
            meta.partitions.iter().filter(|name| only.is_none_or(|only| only.contains(*name))).cloned().collect();
        let read: Vec<ShardWritten> = stream::iter(names)
            .map(|name| async move {
                let key = shard_key(&name);
                match self.get(&key, None).await? {
                    Got::Found(body, token) => {
                        let (kept, entries) = split_shard(&name, &body)?;
                        let kept = ShardKept { token, kept };
                        Ok(ShardWritten { name, kept, entries, conflicted: false, refused: Vec::new() })
                    }
                    Got::Missing | Got::NotModified => {
                        Err(SyncError::IndexCorrupt(format!("{META_KEY} lists shard {name}, but {key} does not exist")))
                    }
                }
            })
            .buffered(SHARD_CONCURRENCY)
            .try_collect()
            .await?;
        let mut index = RemoteIndex::empty();
        // Sized once: grown by doubling it would hold up to twice the entries at its largest.
        let mut entries = Vec::with_capacity(read.iter().map(|shard| shard.entries.len()).sum());
        let mut shards = Shards { meta, read: BTreeMap::new() };
        for shard in read {
            index.note_invalid_from(&shard.kept.kept, &shard_key(&shard.name));
            entries.extend(shard.entries);
            shards.read.insert(shard.name, shard.kept);
        }
        // One home shard per path, so no key comes twice.
        sort_by_path(&mut entries);
        index.set_entries(entries);
        // The flaw `flaw-meta-after-shards`, kept only to prove the simulator catches it: the commit token taken from a
        // `_meta.json` read made after the shards.
        #[cfg(feature = "flaw-meta-after-shards")]
        let commit = match self.get(META_KEY, None).await? {
            Got::Found(_, token) => Some(token),
            _ => commit,
        };
        Ok(Snapshot { index, commit, layout: Layout::Sharded(Box::new(shards)) })
    }

    async fn get(&self, key: &str, if_none_match: Option<&VersionToken>) -> Result<Got, SyncError> {
        match with_retry(self.env, self.retry, || self.store.get_bytes(key, if_none_match)).await {
            Ok(Fetched::NotModified) => Ok(Got::NotModified),
            // A store that ignores the condition (some emulators) answers with the same token: still unchanged.
            Ok(Fetched::Found { token, .. }) if if_none_match.is_some_and(|known| *known == token) => {
                Ok(Got::NotModified)
            }
            Ok(Fetched::Found { body, token, .. }) => Ok(Got::Found(body, token)),
            Err(StoreError::NotFound { .. }) => Ok(Got::Missing),
            Err(other) => Err(unreadable(other)),
        }
    }

    // ---- Writing

    /// Apply `changes` on top of `base` and write them, on condition that what we write over is still what we read
    /// (W1). Entries of internal files are removed on the way (B11).
    pub async fn commit(&self, base: Snapshot, changes: &Changes) -> Result<Committed, SyncError> {
        let mut snapshot = base;
        let mut rebased = false;
        for attempt in 0..self.cas_attempts {
            if self.env.is_aborted() {
                return Err(SyncError::Aborted);
            }
            let mut refused = Vec::new();
            let written = match snapshot.layout {
                Layout::Monolith { .. } => self.commit_monolith(&mut snapshot, changes, &mut refused).await?,
                Layout::Sharded(_) => self.commit_sharded(&mut snapshot, changes, &mut rebased, &mut refused).await?,
            };
            if written {
                sort_paths(&mut refused);
                return Ok(Committed { snapshot, rebased, refused });
            }
            if attempt + 1 < self.cas_attempts {
                self.backoff(attempt).await?;
                // The layout may have changed meanwhile (a migration sealed the monolith): the re-read decides.
                if let Read::Found(current) = self.read(None).await? {
                    snapshot = current;
                }
                rebased = true;
            }
        }
        Err(SyncError::IndexContended { attempts: self.cas_attempts })
    }

    /// One compare-and-swap of the monolith. `false`: another writer changed it since it was read.
    async fn commit_monolith(
        &self,
        snapshot: &mut Snapshot,
        changes: &Changes,
        refused: &mut Vec<String>,
    ) -> Result<bool, SyncError> {
        let index = &mut snapshot.index;
        *refused = apply(index, changes.paths.iter());
        index.scrub_internal();
        index.set_last_pulled(iso_from_ms(self.env.now_ms()));
        let bytes = index.to_json();
        let condition = write_condition(snapshot.commit.as_ref());
        match with_retry(self.env, self.retry, || self.store.put_bytes(INDEX_KEY, &bytes, &condition)).await {
            Ok(token) => {
                snapshot.commit = Some(token);
                snapshot.layout = Layout::Monolith { raw: Some(bytes) };
                Ok(true)
            }
            // S3 answers If-Match on a vanished object with 404, GCS with 412: both mean "changed since read".
            Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) => Ok(false),
            Err(other) => Err(write_failed(other)),
        }
    }

    /// The touched shards (each by its own compare-and-swap loop), then the commit record (likewise). `false`: a
    /// format-1 writer created a monolith since this bucket was read as new (the commit goes there instead).
    async fn commit_sharded(
        &self,
        snapshot: &mut Snapshot,
        changes: &Changes,
        rebased: &mut bool,
        refused: &mut Vec<String>,
    ) -> Result<bool, SyncError> {
        if snapshot.commit.is_none() && self.monolith_in_use().await? {
            return Ok(false);
        }
        let Layout::Sharded(shards) = &snapshot.layout else { unreachable!("a sharded snapshot") };
        // Shards that change: those of the changed paths, and those holding entries of internal files (B11).
        let mut touched = group_by_shard(changes);
        for (name, shard) in &shards.read {
            if !shard.kept.internal_keys().is_empty() {
                touched.entry(name.clone()).or_default();
            }
        }
        for (rel, _) in snapshot.index.entries().filter(|(rel, _)| is_internal(rel)) {
            touched.entry(home_shard(rel).into_owned()).or_default();
        }
        let names: Vec<String> = touched.keys().cloned().collect();
        *rebased |= self.write_shards(snapshot, touched, refused).await?;
        let Layout::Sharded(shards) = &mut snapshot.layout else { unreachable!("a sharded snapshot") };
        let (meta, token) = self.write_meta(&shards.meta, snapshot.commit.take(), names, rebased).await?;
        shards.meta = meta;
        snapshot.commit = Some(token);
        Ok(true)
    }

    /// A monolith that is not sealed: the bucket is format 1 (for a commit about to create `_meta.json`).
    async fn monolith_in_use(&self) -> Result<bool, SyncError> {
        Ok(matches!(self.get(INDEX_KEY, None).await?, Got::Found(body, _) if body != SEALED_MONOLITH))
    }

    /// Rewrite the `touched` shards of `snapshot`: each with its entries and the changes given, by its own
    /// compare-and-swap loop. The snapshot's entries and shard tokens then describe what was written. Answers whether
    /// another writer had changed one of them since it was read.
    async fn write_shards(
        &self,
        snapshot: &mut Snapshot,
        touched: BTreeMap<String, Vec<(&String, &Change)>>,
        refused: &mut Vec<String>,
    ) -> Result<bool, SyncError> {
        let Layout::Sharded(shards) = &mut snapshot.layout else { unreachable!("a sharded snapshot") };
        // Split the merged entries: those of untouched shards stay as they are; the others go to their shard's rewrite.
        let mut untouched = Vec::new();
        let mut contents: BTreeMap<String, Vec<(String, IndexEntry)>> = BTreeMap::new();
        for (rel, entry) in snapshot.index.take_entries() {
            let home = home_shard(&rel);
            if touched.contains_key(home.as_ref()) {
                contents.entry(home.into_owned()).or_default().push((rel, entry));
            } else {
                untouched.push((rel, entry));
            }
        }
        let bases: Vec<_> = touched
            .iter()
            .map(|(name, changes)| {
                let read = shards.read.get(name);
                let mut document = read.map(|read| read.kept.clone()).unwrap_or_default();
                document.set_entries(contents.remove(name).unwrap_or_default());
                (name.clone(), document, read.map(|read| read.token.clone()), changes.as_slice())
            })
            .collect();
        let written: Vec<ShardWritten> = stream::iter(bases)
            .map(|(name, document, token, changes)| self.write_shard(name, document, token, changes))
            .buffer_unordered(SHARD_CONCURRENCY)
            .try_collect()
            .await?;
        let mut conflicted = false;
        let mut rewritten = Vec::new();
        for shard in written {
            conflicted |= shard.conflicted;
            refused.extend(shard.refused);
            rewritten.extend(shard.entries);
            shards.read.insert(shard.name, shard.kept);
        }
        sort_by_path(&mut rewritten);
        snapshot.index.set_entries(merge_sorted(untouched, rewritten));
        snapshot.index.clear_invalid();
        for (name, shard) in &shards.read {
            snapshot.index.note_invalid_from(&shard.kept, &shard_key(name));
        }
        Ok(conflicted)
    }

    /// Write one shard with `changes` applied, re-reading it after each lost compare-and-swap. Answers what was
    /// written (its token and kept fields, its valid entries) and whether another writer had changed it.
    async fn write_shard(
        &self,
        name: String,
        mut document: RemoteIndex,
        mut token: Option<VersionToken>,
        changes: &[(&String, &Change)],
    ) -> Result<ShardWritten, SyncError> {
        let key = shard_key(&name);
        let mut conflicted = false;
        for attempt in 0..self.cas_attempts {
            let refused = apply(&mut document, changes.iter().copied());
            document.scrub_internal();
            let bytes = document.to_json_compact();
            let condition = write_condition(token.as_ref());
            match with_retry(self.env, self.retry, || self.store.put_bytes(&key, &bytes, &condition)).await {
                Ok(written) => {
                    let entries = document.take_entries();
                    return Ok(ShardWritten {
                        name,
                        kept: ShardKept { token: written, kept: document },
                        entries,
                        conflicted,
                        refused,
                    });
                }
                Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. })
                    if attempt + 1 < self.cas_attempts =>
                {
                    conflicted = true;
                    self.backoff(attempt).await?;
                    (document, token) = match self.get(&key, None).await? {
                        Got::Found(body, current) => {
                            let (mut kept, valid) = split_shard(&name, &body)?;
                            kept.set_entries(valid);
                            (kept, Some(current))
                        }
                        Got::Missing | Got::NotModified => (RemoteIndex::empty(), None),
                    };
                }
                Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) => break,
                Err(other) => return Err(write_failed(other)),
            }
        }
        Err(SyncError::IndexContended { attempts: self.cas_attempts })
    }

    /// Write the commit record: the sequence advanced and `shards` listed, re-reading it after each lost
    /// compare-and-swap (another writer committed: `rebased`).
    async fn write_meta(
        &self,
        base: &Meta,
        mut token: Option<VersionToken>,
        shards: impl IntoIterator<Item = String>,
        rebased: &mut bool,
    ) -> Result<(Meta, VersionToken), SyncError> {
        let shards: Vec<String> = shards.into_iter().collect();
        let mut current = base.clone();
        for attempt in 0..self.cas_attempts {
            let next = current.next(shards.iter().cloned());
            let bytes = next.to_json();
            let condition = write_condition(token.as_ref());
            match with_retry(self.env, self.retry, || self.store.put_bytes(META_KEY, &bytes, &condition)).await {
                Ok(written) => return Ok((next, written)),
                Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. })
                    if attempt + 1 < self.cas_attempts =>
                {
                    *rebased = true;
                    self.backoff(attempt).await?;
                    (current, token) = match self.get(META_KEY, None).await? {
                        Got::Found(body, found) => match Meta::parse(&body).map_err(|why| corrupt(META_KEY, &why))? {
                            MetaRead::Sharded(meta) => (meta, Some(found)),
                            MetaRead::OtherVersion => {
                                return Err(SyncError::IndexCorrupt(format!(
                                    "{META_KEY} changed to a version other than 2 while committing"
                                )))
                            }
                        },
                        Got::Missing | Got::NotModified => (current, None),
                    };
                }
                Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) => break,
                Err(other) => return Err(write_failed(other)),
            }
        }
        Err(SyncError::IndexContended { attempts: self.cas_attempts })
    }

    // ---- Migration

    /// Convert a format-1 bucket to format 2 without losing an entry, also to a format-1 writer committing meanwhile:
    /// write the monolith's entries into shards, seal the monolith by compare-and-swap on the token read (a writer that
    /// committed since makes the seal fail: read again and repeat), then write the commit record. A format-2 bucket is
    /// left as it is.
    pub async fn migrate(&self) -> Result<Migrated, SyncError> {
        for attempt in 0..self.cas_attempts {
            if self.env.is_aborted() {
                return Err(SyncError::Aborted);
            }
            let Read::Found(snapshot) = self.read(None).await? else { unreachable!("an unconditional read") };
            let (monolith, token) = match snapshot.layout {
                Layout::Sharded(ref shards) if snapshot.commit.is_some() => {
                    return Ok(Migrated {
                        partitions: shards.meta.partitions.clone(),
                        commit_seq: shards.meta.commit_seq,
                        converted: false,
                    });
                }
                // Shards without a commit record (a migration or first commit that stopped early): record them.
                Layout::Sharded(_) => {
                    let committed = self.commit(snapshot, &Changes::default()).await?;
                    let (partitions, commit_seq) = committed.snapshot.partitions().expect("a sharded commit");
                    return Ok(Migrated { partitions: partitions.to_vec(), commit_seq, converted: true });
                }
                Layout::Monolith { .. } => (snapshot.index, snapshot.commit),
            };
            // Shards first, merged over whatever a stopped earlier attempt left: the monolith is the newer record.
            let mut shards = self.read_listed().await?;
            let copy = Changes {
                paths: monolith
                    .entries()
                    .map(|(rel, entry)| {
                        (rel.to_string(), Change { entry: Some(entry.clone()), expected: Expected::Any })
                    })
                    .collect(),
            };
            let mut touched = group_by_shard(&copy);
            if let Layout::Sharded(ref layout) = shards.layout {
                for name in layout.read.keys() {
                    touched.entry(name.clone()).or_default();
                }
            }
            let mut refused = Vec::new();
            let mut rebased = self.write_shards(&mut shards, touched, &mut refused).await?;
            let Some(token) = token else { unreachable!("a monolith read has a token") };
            let seal_condition = Precondition::IfMatch(token);
            let sealed =
                with_retry(self.env, self.retry, || self.store.put_bytes(INDEX_KEY, SEALED_MONOLITH, &seal_condition))
                    .await;
            match sealed {
                Ok(_) => {
                    let Layout::Sharded(ref layout) = shards.layout else { unreachable!("shards") };
                    let names = layout.read.keys().cloned().collect::<Vec<_>>();
                    let (meta, _) = self.write_meta(&layout.meta, shards.commit.take(), names, &mut rebased).await?;
                    return Ok(Migrated { partitions: meta.partitions, commit_seq: meta.commit_seq, converted: true });
                }
                // A format-1 writer committed after our read: its entries are not in the shards yet. Again.
                Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. })
                    if attempt + 1 < self.cas_attempts =>
                {
                    self.backoff(attempt).await?;
                }
                Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) => break,
                Err(other) => return Err(write_failed(other)),
            }
        }
        Err(SyncError::IndexContended { attempts: self.cas_attempts })
    }

    async fn backoff(&self, attempt: u32) -> Result<(), SyncError> {
        self.env.sleep(cas_backoff_ms(attempt, self.env.random())).await.map_err(SyncError::from_store)
    }
}

/// Changes by the shard that holds their path.
fn group_by_shard(changes: &Changes) -> BTreeMap<String, Vec<(&String, &Change)>> {
    let mut by_shard: BTreeMap<String, Vec<(&String, &Change)>> = BTreeMap::new();
    for (rel, change) in &changes.paths {
        by_shard.entry(home_shard(rel).into_owned()).or_default().push((rel, change));
    }
    by_shard
}

/// Apply each change whose expected entry is still there (or whose result is already there: our own earlier write
/// whose answer was lost); answer the paths refused.
fn apply<'c>(document: &mut RemoteIndex, changes: impl Iterator<Item = (&'c String, &'c Change)>) -> Vec<String> {
    let mut refused = Vec::new();
    let mut puts = Vec::new();
    for (rel, change) in changes {
        let current = document.get(rel);
        let expected = match &change.expected {
            Expected::Any => true,
            Expected::Absent => current.is_none(),
            Expected::Version(entry) => current.is_some_and(|current| current.same_version(entry)),
        };
        let done = match (&change.entry, current) {
            (Some(entry), Some(current)) => current.same_version(entry),
            (None, None) => true,
            _ => false,
        };
        match (&change.entry, expected || done) {
            (_, false) => refused.push(rel.clone()),
            (Some(entry), true) => puts.push((rel.clone(), entry.clone())),
            (None, true) => {
                document.remove(rel);
            }
        }
    }
    document.insert_all(puts);
    refused
}

/// A shard's document, with its valid entries taken out and checked: an entry whose path belongs in another shard is
/// kept where it is but set aside (reported, never used, never dropped): which copy a reader would see depends on the
/// order it merges them.
fn split_shard(name: &str, body: &[u8]) -> Result<(RemoteIndex, Vec<(String, IndexEntry)>), SyncError> {
    let key = shard_key(name);
    let mut document = RemoteIndex::parse(body).map_err(|e| corrupt(&key, &e.to_string()))?;
    let mut valid = Vec::with_capacity(document.len());
    for (rel, entry) in document.take_entries() {
        let home = home_shard(&rel);
        if home == name {
            valid.push((rel, entry));
        } else {
            let reason = format!("belongs in {}, found in {key}", shard_key(&home));
            document.set_aside(rel, &entry, reason);
        }
    }
    Ok((document, valid))
}

fn corrupt(key: &str, why: &str) -> SyncError {
    SyncError::IndexCorrupt(format!("{key}: {why}"))
}

fn unreadable(error: StoreError) -> SyncError {
    match error {
        StoreError::Aborted => SyncError::Aborted,
        other => SyncError::IndexUnreadable(other),
    }
}

fn write_failed(error: StoreError) -> SyncError {
    match error {
        StoreError::Aborted => SyncError::Aborted,
        other => SyncError::IndexWrite(other),
    }
}

#[cfg(not(feature = "flaw-blind-index-put"))]
fn write_condition(read: Option<&VersionToken>) -> Precondition {
    match read {
        Some(token) => Precondition::IfMatch(token.clone()),
        None => Precondition::IfAbsent,
    }
}

/// W1's flaw, kept only to prove the simulator catches it: overwrite whatever is there.
#[cfg(feature = "flaw-blind-index-put")]
fn write_condition(_read: Option<&VersionToken>) -> Precondition {
    Precondition::None
}

/// 100 ms doubling per attempt, capped at 3.2 s, ±25%: contention between a few writers clears in a few rounds.
fn cas_backoff_ms(attempt: u32, random01: f64) -> u64 {
    let base = 100u64 << attempt.min(5);
    (base as f64 * (0.75 + 0.5 * random01)) as u64
}
