//! The in-memory cache directory: files with mtimes, symlinks, and walks that can report vanished files.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;

use super::faults::settle;
use super::*;
use crate::store::{
    Downloaded, Expected, FileStat, LocalCache, PathStat, Prepared, Replaces, StoreError, StoreResult, WalkItem,
};

/// Calls seen by one cache handle, by kind (injected failures included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCalls {
    pub stat: usize,
    pub stat_many: usize,
    pub walk: usize,
    pub walk_under: usize,
    pub remove: usize,
    pub list_internal: usize,
    pub remove_internal: usize,
    pub read_internal: usize,
    pub write_internal: usize,
    pub prepare_upload: usize,
    pub download: usize,
    pub hash: usize,
    pub create_dir: usize,
}

impl CacheCalls {
    fn bump(&mut self, kind: Kind) {
        let counter = match kind {
            Kind::Stat => &mut self.stat,
            Kind::StatMany => &mut self.stat_many,
            Kind::Walk => &mut self.walk,
            Kind::WalkUnder => &mut self.walk_under,
            Kind::Remove => &mut self.remove,
            Kind::ListInternal => &mut self.list_internal,
            Kind::RemoveInternal => &mut self.remove_internal,
            Kind::ReadInternal => &mut self.read_internal,
            Kind::WriteInternal => &mut self.write_internal,
            Kind::PrepareUpload => &mut self.prepare_upload,
            Kind::Download => &mut self.download,
            Kind::Hash => &mut self.hash,
            Kind::CreateDir => &mut self.create_dir,
            other => unreachable!("{other:?} is not a cache call"),
        };
        *counter += 1;
    }
}

#[derive(Clone)]
struct CacheFile {
    body: Body,
    mtime_ms: i64,
}

impl CacheFile {
    fn stat(&self) -> FileStat {
        FileStat { size: self.body.len() as u64, mtime_ms: self.mtime_ms }
    }
}

#[derive(Default)]
struct CacheDir {
    files: BTreeMap<String, CacheFile>,
    symlinks: BTreeSet<String>,
    vanish_on_walk: BTreeSet<String>,
    /// Folders made by `create_dir` (folders holding files exist implicitly).
    dirs: BTreeSet<String>,
}

/// An in-memory cache directory: rel → (bytes, mtime) plus symlinks. Internal files (`read_internal`/
/// `write_internal`) are ordinary root files here, so `walk` lists them as the real directory would.
/// Every write takes its mtime from the cache's clock, which advances 1 ms per write.
#[derive(Clone)]
pub struct MemoryCache {
    dir: Rc<RefCell<CacheDir>>,
    clock: VirtualClock,
    faults: Faults,
    calls: Rc<Cell<CacheCalls>>,
}

impl Default for MemoryCache {
    fn default() -> Self {
        MemoryCache::new()
    }
}

impl MemoryCache {
    pub fn new() -> Self {
        MemoryCache::with_clock(VirtualClock::default())
    }

    /// A cache whose mtimes come from `clock` (e.g. shared with a [`TestEnv`] to model one machine).
    pub fn with_clock(clock: VirtualClock) -> Self {
        MemoryCache { dir: Rc::default(), clock, faults: Faults::new(), calls: Rc::default() }
    }

    /// Another handle on the same directory with fresh fault rules and counters (a second service instance).
    pub fn instance(&self) -> Self {
        MemoryCache { dir: self.dir.clone(), clock: self.clock.clone(), faults: Faults::new(), calls: Rc::default() }
    }

    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    pub fn calls(&self) -> CacheCalls {
        self.calls.get()
    }

    pub fn reset_calls(&self) {
        self.calls.set(CacheCalls::default());
    }

    /// Write a file as swamp would (no yield, no faults): new bytes, new mtime.
    pub fn write_file(&self, rel: &str, bytes: impl Into<Vec<u8>>) {
        let mtime_ms = self.clock.tick();
        self.write_file_with_mtime(rel, bytes, mtime_ms);
    }

    /// Write a file with a chosen mtime (same-size rewrites within one mtime tick, clock steps).
    pub fn write_file_with_mtime(&self, rel: &str, bytes: impl Into<Vec<u8>>, mtime_ms: i64) {
        let mut dir = self.dir.borrow_mut();
        dir.symlinks.remove(rel);
        dir.files.insert(rel.to_string(), CacheFile { body: Rc::new(bytes.into()), mtime_ms });
    }

    /// Delete a file; whether it existed.
    pub fn remove_file(&self, rel: &str) -> bool {
        self.dir.borrow_mut().files.remove(rel).is_some()
    }

    pub fn file(&self, rel: &str) -> Option<Vec<u8>> {
        self.dir.borrow().files.get(rel).map(|file| file.body.to_vec())
    }

    /// Whether `rel` is a folder: made by `create_dir`, or holding a file.
    pub fn has_dir(&self, rel: &str) -> bool {
        let dir = self.dir.borrow();
        let prefix = format!("{rel}/");
        dir.dirs.contains(rel) || dir.files.keys().any(|path| path.starts_with(&prefix))
    }

    pub fn file_stat(&self, rel: &str) -> Option<FileStat> {
        self.dir.borrow().files.get(rel).map(CacheFile::stat)
    }

    /// Every regular file, internal ones included.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        self.dir.borrow().files.iter().map(|(rel, file)| (rel.clone(), file.body.to_vec())).collect()
    }

    /// Place a symlink at `rel` (replacing a file there). Walks report it; nothing reads through it.
    pub fn add_symlink(&self, rel: &str) {
        let mut dir = self.dir.borrow_mut();
        dir.files.remove(rel);
        dir.symlinks.insert(rel.to_string());
    }

    /// The next walk lists `rel` but finds it gone when it stats it: it is reported `Vanished` and deleted.
    pub fn vanish_on_next_walk(&self, rel: &str) {
        self.dir.borrow_mut().vanish_on_walk.insert(rel.to_string());
    }

    async fn arrive(&self, kind: Kind, key: &str) -> StoreResult<Option<StoreError>> {
        let arrival = self.faults.arrive(kind, key).await;
        let mut calls = self.calls.get();
        calls.bump(kind);
        self.calls.set(calls);
        arrival
    }

    fn regular_file(dir: &CacheDir, rel: &str) -> StoreResult<Option<CacheFile>> {
        if dir.symlinks.contains(rel) {
            return Err(StoreError::Io { message: format!("{rel}: is a symlink (not followed)") });
        }
        Ok(dir.files.get(rel).cloned())
    }
}

impl fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.dir.borrow();
        f.debug_struct("MemoryCache")
            .field("files", &dir.files.keys().collect::<Vec<_>>())
            .field("symlinks", &dir.symlinks)
            .finish()
    }
}

fn downloaded(file: &CacheFile) -> Downloaded {
    Downloaded { stat: file.stat(), sha256: sha256(&file.body) }
}

impl LocalCache for MemoryCache {
    type Body = Body;

    /// A symlink is an `Io` error (never followed).
    async fn stat(&self, rel: &str) -> StoreResult<Option<FileStat>> {
        let fail_after = self.arrive(Kind::Stat, rel).await?;
        let stat = MemoryCache::regular_file(&self.dir.borrow(), rel).map(|file| file.map(|f| f.stat()));
        settle(stat, fail_after)
    }

    /// Every path in one call, as the host's batched stat: a symlink at the path or above it is reported, not followed.
    async fn stat_many(&self, rels: &[&str]) -> StoreResult<Vec<PathStat>> {
        let fail_after = self.arrive(Kind::StatMany, rels.first().copied().unwrap_or("")).await?;
        let dir = self.dir.borrow();
        let linked = |rel: &str| {
            dir.symlinks.contains(rel) || rel.match_indices('/').any(|(at, _)| dir.symlinks.contains(&rel[..at]))
        };
        let found = rels
            .iter()
            .map(|rel| match dir.files.get(*rel) {
                _ if linked(rel) => PathStat::Symlink,
                Some(file) => PathStat::File(file.stat()),
                None => PathStat::Absent,
            })
            .collect();
        settle(Ok(found), fail_after)
    }

    async fn walk(&self) -> StoreResult<Vec<WalkItem>> {
        let fail_after = self.arrive(Kind::Walk, "").await?;
        let mut dir = self.dir.borrow_mut();
        let vanishing = std::mem::take(&mut dir.vanish_on_walk);
        let mut items: Vec<WalkItem> = Vec::with_capacity(dir.files.len() + dir.symlinks.len());
        for (rel, file) in &dir.files {
            if vanishing.contains(rel) {
                items.push(WalkItem::Vanished { rel: rel.clone() });
            } else {
                items.push(WalkItem::File { rel: rel.clone(), stat: file.stat() });
            }
        }
        items.extend(dir.symlinks.iter().map(|rel| WalkItem::Symlink { rel: rel.clone() }));
        for rel in &vanishing {
            dir.files.remove(rel);
        }
        items.sort_by(|a, b| walk_rel(a).cmp(walk_rel(b)));
        settle(Ok(items), fail_after)
    }

    async fn walk_under(&self, rel: &str) -> StoreResult<Vec<WalkItem>> {
        let fail_after = self.arrive(Kind::WalkUnder, rel).await?;
        let dir = self.dir.borrow();
        let under =
            |path: &str| path == rel || (path.starts_with(rel) && path.as_bytes().get(rel.len()) == Some(&b'/'));
        let mut items: Vec<WalkItem> = dir
            .files
            .iter()
            .filter(|(path, _)| under(path))
            .map(|(path, file)| WalkItem::File { rel: path.clone(), stat: file.stat() })
            .collect();
        items
            .extend(dir.symlinks.iter().filter(|path| under(path)).map(|path| WalkItem::Symlink { rel: path.clone() }));
        items.sort_by(|a, b| walk_rel(a).cmp(walk_rel(b)));
        settle(Ok(items), fail_after)
    }

    async fn remove(&self, rel: &str, expected: FileStat) -> StoreResult<()> {
        let fail_after = self.arrive(Kind::Remove, rel).await?;
        let now = self.file_stat(rel);
        if !Replaces::File(expected).allows(now) && now.is_some() {
            return Err(StoreError::LocalChanged { key: rel.to_string() });
        }
        self.remove_file(rel);
        settle(Ok(()), fail_after)
    }

    async fn list_internal(&self, folder: &str) -> StoreResult<Vec<String>> {
        let fail_after = self.arrive(Kind::ListInternal, folder).await?;
        let prefix = format!("{folder}/");
        let names: Vec<String> =
            self.dir.borrow().files.keys().filter_map(|path| path.strip_prefix(&prefix)).map(str::to_string).collect();
        settle(Ok(names), fail_after)
    }

    async fn remove_internal(&self, name: &str) -> StoreResult<()> {
        let fail_after = self.arrive(Kind::RemoveInternal, name).await?;
        self.remove_file(name);
        settle(Ok(()), fail_after)
    }

    async fn read_internal(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let fail_after = self.arrive(Kind::ReadInternal, name).await?;
        let bytes = MemoryCache::regular_file(&self.dir.borrow(), name).map(|file| file.map(|f| f.body.to_vec()));
        settle(bytes, fail_after)
    }

    async fn write_internal(&self, name: &str, bytes: Vec<u8>) -> StoreResult<()> {
        let fail_after = self.arrive(Kind::WriteInternal, name).await?;
        self.write_file(name, bytes);
        settle(Ok(()), fail_after)
    }

    async fn prepare_upload(&self, rel: &str) -> StoreResult<Option<Prepared<Body>>> {
        let fail_after = self.arrive(Kind::PrepareUpload, rel).await?;
        let prepared = MemoryCache::regular_file(&self.dir.borrow(), rel)
            .map(|file| file.map(|file| Prepared { sha256: sha256(&file.body), stat: file.stat(), body: file.body }));
        settle(prepared, fail_after)
    }

    /// Verifies size (and hash) first; on a mismatch nothing changes and the error names `rel`.
    async fn download(&self, rel: &str, body: Body, expected: Expected) -> StoreResult<Downloaded> {
        let fail_after = self.arrive(Kind::Download, rel).await?;
        if body.len() as u64 != expected.size {
            let message = format!("downloaded {} bytes, expected {}", body.len(), expected.size);
            return Err(StoreError::Mismatch { key: rel.to_string(), message });
        }
        let digest = sha256(&body);
        if expected.sha256.is_some_and(|wanted| wanted != digest) {
            let message = "downloaded content does not match its sha256".to_string();
            return Err(StoreError::Mismatch { key: rel.to_string(), message });
        }
        if !expected.replaces.allows(self.file_stat(rel)) {
            return Err(StoreError::LocalChanged { key: rel.to_string() });
        }
        let file = CacheFile { body, mtime_ms: self.clock.tick() };
        let result = Downloaded { stat: file.stat(), sha256: digest };
        let mut dir = self.dir.borrow_mut();
        dir.symlinks.remove(rel); // a rename replaces the link itself, never its target
        dir.files.insert(rel.to_string(), file);
        settle(Ok(result), fail_after)
    }

    /// A file in the way is an `Io` error, as on disk.
    async fn create_dir(&self, rel: &str) -> StoreResult<()> {
        let fail_after = self.arrive(Kind::CreateDir, rel).await?;
        let mut dir = self.dir.borrow_mut();
        let mut made = Ok(());
        for (at, _) in rel.match_indices('/').chain([(rel.len(), "")]) {
            let folder = &rel[..at];
            if dir.files.contains_key(folder) || dir.symlinks.contains(folder) {
                made = Err(StoreError::Io { message: format!("{rel}: cannot create folder, {folder} is a file") });
                break;
            }
            dir.dirs.insert(folder.to_string());
        }
        settle(made, fail_after)
    }

    async fn hash(&self, rel: &str) -> StoreResult<Option<Downloaded>> {
        let fail_after = self.arrive(Kind::Hash, rel).await?;
        let hashed = MemoryCache::regular_file(&self.dir.borrow(), rel).map(|file| file.as_ref().map(downloaded));
        settle(hashed, fail_after)
    }
}

fn walk_rel(item: &WalkItem) -> &str {
    match item {
        WalkItem::File { rel, .. } | WalkItem::Vanished { rel } | WalkItem::Symlink { rel } => rel,
    }
}
