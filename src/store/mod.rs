//! The two small traits through which the core talks to the world (an object store and a local cache directory),
//! plus the host environment (clock, sleep, randomness, abort, tracing). Implementations live elsewhere: the wasm
//! boundary wraps JS host objects; `testing::memory` has in-memory ones with fault injection for tests and the
//! simulator.
//!
//! Keys are always cache-relative (`a/b.json`); a store adapter adds its bucket prefix. File bodies are opaque
//! `Body` handles that the store and the cache pass between each other: the core never reads them.

pub mod retry;
pub mod token;

use crate::encoding::fingerprint::fingerprint;
use token::VersionToken;

/// Typed failures of a store or cache call. Only `Transient` is retried (`retry::is_retryable`). "Not modified" is not
/// a failure: it is the `Fetched::NotModified` answer of a conditional GET.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {key}")]
    NotFound { key: String },
    #[error("precondition failed for {key} (another writer changed it)")]
    PreconditionFailed { key: String },
    /// Timeouts, 429, 5xx, 409 conditional-request conflicts, transport errors without a status: retried.
    #[error("transient failure{}: {message}", status_suffix(*status))]
    Transient { status: Option<u16>, message: String },
    /// 401/403 and missing credentials: never retried, surfaced with a hint.
    #[error("access denied{}: {message}", status_suffix(*status))]
    Auth { status: Option<u16>, message: String },
    /// Any other HTTP status: not retried.
    #[error("request failed{}: {message}", status_suffix(Some(*status)))]
    Http { status: u16, message: String },
    #[error("aborted")]
    Aborted,
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    /// The cache file changed since the operation looked (a local write landed): it was left as it is.
    #[error("{key} changed here while this operation ran; it was left as it is")]
    LocalChanged { key: String },
    /// A download whose bytes are not the index entry's: the object changed since the entry was written (another
    /// writer's commit in flight) or the bucket disagrees with itself. The cache file is left as it was.
    #[error("{key}: the bucket's object does not match its index entry ({message}); the file was not replaced")]
    Mismatch { key: String, message: String },
    #[error("local I/O error: {message}")]
    Io { message: String },
}

fn status_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Condition on a write. Named, not a boolean, so a blind overwrite is always visible at the call site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// Create only (S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`).
    IfAbsent,
    /// Replace only this version (S3 `If-Match`, GCS `ifGenerationMatch`).
    IfMatch(VersionToken),
}

/// Answer of a (conditional) GET.
#[derive(Debug)]
pub enum Fetched<B> {
    /// Only for a GET with `if_none_match`: the object still has that token.
    NotModified,
    Found {
        body: B,
        token: VersionToken,
        size: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub token: VersionToken,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub token: VersionToken,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    pub next_page: Option<String>,
}

/// The remote bucket. All calls may be retried by the core; the adapter itself must not retry.
#[allow(async_fn_in_trait)] // single-threaded (wasm) host: futures are deliberately not Send
pub trait ObjectStore {
    /// An object body in flight between store and cache (a stream handle in JS, bytes in memory).
    type Body;

    /// GET an object body with its version token. With `if_none_match`, answers `NotModified` when unchanged.
    async fn get(&self, key: &str, if_none_match: Option<&VersionToken>) -> StoreResult<Fetched<Self::Body>>;
    /// GET a small object (index, lock) as bytes.
    async fn get_bytes(&self, key: &str, if_none_match: Option<&VersionToken>) -> StoreResult<Fetched<Vec<u8>>>;
    async fn head(&self, key: &str) -> StoreResult<ObjectMeta>;
    /// PUT a file body handed over by the cache.
    async fn put(&self, key: &str, body: Self::Body, precondition: &Precondition) -> StoreResult<VersionToken>;
    /// PUT a small object (index, lock) from bytes (borrowed: a retry sends the same bytes again, and a large index is
    /// not copied for each attempt).
    async fn put_bytes(&self, key: &str, bytes: &[u8], precondition: &Precondition) -> StoreResult<VersionToken>;
    /// DELETE, optionally only if the object still has `if_match`. Deleting a missing object is `NotFound`.
    async fn delete(&self, key: &str, if_match: Option<&VersionToken>) -> StoreResult<()>;
    async fn list(&self, prefix: &str, page: Option<&str>) -> StoreResult<ListPage>;
}

/// Size and modification time of a cache file, as the host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    /// Milliseconds since the epoch (integer; hosts round).
    pub mtime_ms: i64,
}

/// One item of a cache walk. Vanished and symlinked entries are reported, never followed or silently dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkItem {
    File {
        rel: String,
        stat: FileStat,
    },
    /// Listed, then gone before it could be stat'ed (a concurrent delete): skipped explicitly (W7).
    Vanished {
        rel: String,
    },
    /// Not followed (W8).
    Symlink {
        rel: String,
    },
}

/// What [`LocalCache::stat_many`] found at one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathStat {
    /// A regular file.
    File(FileStat),
    /// No regular file there: nothing, a directory, or a file where a directory above it would be. A file that
    /// vanishes while it is looked at is absent too.
    Absent,
    /// The path itself, or a directory between the root and it, is a symlink: not followed (W8, B16).
    Symlink,
}

/// A walk prepared to answer [`LocalCache::stat_many`], for a host that has no batched stat: the same facts, at the cost
/// of listing the whole cache. Built once per walk and asked once per batch: the engine asks in batches, and a lookup
/// rebuilt per batch costs the whole walk again each time.
pub struct WalkLookup {
    files: std::collections::HashMap<String, FileStat>,
    links: Vec<String>,
}

impl WalkLookup {
    pub fn new(items: Vec<WalkItem>) -> Self {
        let mut files = std::collections::HashMap::with_capacity(items.len());
        let mut links = Vec::new();
        for item in items {
            match item {
                WalkItem::File { rel, stat } => drop(files.insert(rel, stat)),
                WalkItem::Symlink { rel } => links.push(rel),
                WalkItem::Vanished { .. } => {}
            }
        }
        WalkLookup { files, links }
    }

    /// What the walk saw at each of `rels` (in any order), as `stat_many` answers.
    pub fn stat_many(&self, rels: &[&str]) -> Vec<PathStat> {
        let through_link = |rel: &str| self.links.iter().any(|link| crate::local::marks::covers(link, rel));
        rels.iter()
            .map(|rel| match self.files.get(*rel) {
                _ if through_link(rel) => PathStat::Symlink,
                Some(stat) => PathStat::File(*stat),
                None => PathStat::Absent,
            })
            .collect()
    }
}

/// A file opened for upload: stat and content hash taken before the body is read (W12).
#[derive(Debug)]
pub struct Prepared<B> {
    pub body: B,
    pub stat: FileStat,
    pub sha256: [u8; 32],
}

/// A completed download, verified against the expected size (and hash) before the rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downloaded {
    pub stat: FileStat,
    pub sha256: [u8; 32],
}

/// What a download must match before it may replace the cache file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub size: u64,
    pub sha256: Option<[u8; 32]>,
    /// What the download may replace: a local write that landed since the operation looked is never overwritten.
    pub replaces: Replaces,
}

/// The file a download may replace (or a removal remove), as the operation saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaces {
    /// No file there.
    Nothing,
    /// The file with this stat.
    File(FileStat),
    /// Whatever is there (tests and tools; never a sync decision).
    Anything,
}

impl Replaces {
    /// Whether the file now at the path (`None`: none) is the one this allows replacing.
    pub fn allows(self, now: Option<FileStat>) -> bool {
        match self {
            Replaces::Anything => true,
            Replaces::Nothing => now.is_none(),
            Replaces::File(stat) => now == Some(stat),
        }
    }
}

/// The local cache directory. `rel` paths are checked by the core (`path::check_rel`) before any call.
#[allow(async_fn_in_trait)]
pub trait LocalCache {
    type Body;

    async fn stat(&self, rel: &str) -> StoreResult<Option<FileStat>>;
    /// The state of each of `rels`, in order, without following a symlink anywhere on the way: a pull needs the paths
    /// the index and the view name, not a walk of the whole cache. One call for many paths (a host answers them in one
    /// crossing); an error other than a vanished file fails the call. The default answers from a walk.
    async fn stat_many(&self, rels: &[&str]) -> StoreResult<Vec<PathStat>> {
        Ok(WalkLookup::new(self.walk().await?).stat_many(rels))
    }
    /// Every file under the root, internal ones included (the core filters), symlinks reported not followed.
    async fn walk(&self) -> StoreResult<Vec<WalkItem>>;
    /// `walk` restricted to `rel`: the file itself when it is one, every file under it when it is a folder, nothing
    /// when it does not exist (a push of marked paths looks at those paths only).
    async fn walk_under(&self, rel: &str) -> StoreResult<Vec<WalkItem>>;
    /// Remove a data file (a peer deleted it and it is unchanged here) if it still is `expected`; a missing file is not
    /// an error. `LocalChanged` when the file changed since: a local write is never removed.
    async fn remove(&self, rel: &str, expected: FileStat) -> StoreResult<()>;
    /// Read a small internal file at the root; `None` if missing.
    async fn read_internal(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    /// `fingerprint::fingerprint` of an internal file at the root (0: missing or unreadable). A host may feed a large
    /// file (the view of a 250k-file cache) through a small buffer instead of handing it over whole.
    async fn fingerprint_internal(&self, name: &str) -> u64 {
        fingerprint(self.read_internal(name).await.ok().flatten().as_deref())
    }
    /// Replace a small internal file atomically (temp in the same directory, then rename). `name` may be inside an
    /// internal folder (`.marsh-marks/…`), which is created when missing.
    async fn write_internal(&self, name: &str, bytes: Vec<u8>) -> StoreResult<()>;
    /// The names in an internal folder at the root (`.marsh-marks`); none when it does not exist.
    async fn list_internal(&self, folder: &str) -> StoreResult<Vec<String>>;
    /// Remove an internal file; a missing one is not an error.
    async fn remove_internal(&self, name: &str) -> StoreResult<()>;
    /// Stat, hash and open a file for upload. `None` if it vanished.
    async fn prepare_upload(&self, rel: &str) -> StoreResult<Option<Prepared<Self::Body>>>;
    /// Write a body to a temp name, verify size (and hash), then rename onto `rel` (W16) if what is there is still what
    /// `expected.replaces` says; `LocalChanged` otherwise (the temp file is removed, the local file kept).
    async fn download(&self, rel: &str, body: Self::Body, expected: Expected) -> StoreResult<Downloaded>;
    /// Create a data folder and its parents when missing (lazy hydration leaves content files out, not their folders).
    async fn create_dir(&self, rel: &str) -> StoreResult<()>;
    /// Hash a cache file (to confirm equality when stat alone cannot). `None` if missing.
    async fn hash(&self, rel: &str) -> StoreResult<Option<Downloaded>>;
}

/// Host services: time, sleeping, randomness, abort, trace output. The core never sleeps or reads a clock otherwise.
#[allow(async_fn_in_trait)]
pub trait Env {
    fn now_ms(&self) -> i64;
    /// A uniform number in [0, 1) for jitter and nonces.
    fn random(&self) -> f64;
    /// Sleep, waking early with `Aborted` when the operation is aborted.
    async fn sleep(&self, ms: u64) -> StoreResult<()>;
    fn is_aborted(&self) -> bool;
    /// One trace line (per-phase timing), shown only when tracing is on (B21).
    fn trace(&self, _line: &str) {}
    /// Transfer progress, for a host that shows it (the CLI on a TTY).
    fn progress(&self, _event: &Progress<'_>) {}
}

/// What a host may show while an operation runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress<'a> {
    /// The plan is made: this many files and bytes will move.
    Planned { operation: &'a str, files: u64, bytes: u64 },
    /// One file moved.
    Transferred { operation: &'a str, rel: &'a str, bytes: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_lookup_answers_files_symlinks_at_or_above_and_absent_paths() {
        let stat = FileStat { size: 3, mtime_ms: 7 };
        let lookup = WalkLookup::new(vec![
            WalkItem::File { rel: "a/x.json".into(), stat },
            WalkItem::Symlink { rel: "link".into() },
            WalkItem::Vanished { rel: "gone.json".into() },
            WalkItem::File { rel: "linkx/y.json".into(), stat },
        ]);
        let found = lookup.stat_many(&["link/under/z", "a/x.json", "gone.json", "linkx/y.json", "link", "a"]);
        assert_eq!(
            found,
            [
                PathStat::Symlink,
                PathStat::File(stat),
                PathStat::Absent,
                PathStat::File(stat),
                PathStat::Symlink,
                PathStat::Absent
            ]
        );
    }
}
