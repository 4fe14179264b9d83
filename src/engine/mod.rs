//! The sync engine: `pull_changed`, `push_changed`, `mark_dirty`, `resolve`, `status`. It sequences every file transfer and local
//! state update; the index objects themselves are read and written through the index layer (`crate::index`).
//!
//! Every operation re-reads its state from disk (W11), checks the abort flag before any request and between phases
//! (B15), sends every store request through the retry policy (B14, W14), and moves file bodies only between the store
//! and the cache (they never enter the core).

mod cursor;
mod error;
mod hydrate;
mod listing;
pub mod plan;
mod pull;
mod push;
mod resolve;
mod transfer;
mod two_phase;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

pub use error::{FileFailure, SyncError};
pub use hydrate::check_path;
pub use pull::{is_content, PullOptions, PullReport};
pub use push::PushReport;
pub use resolve::{Keep, Resolved};
pub use two_phase::{PushManifest, PushPreview};

use crate::encoding::time::iso_from_ms;
use crate::index;
use crate::local::conflicts::{ConflictKind, Conflicts, OpenConflict, CONFLICTS_NAME};
use crate::local::marker::{Marker, DIRTY_NAME};
use crate::local::marks::{mark_name, parse_mark, Mark, MarkRequest, MARKS_FOLDER};
use crate::local::sidecar::SyncState;
use crate::local::view;
use crate::lock::ScopeWatch;
use crate::store::retry::{with_retry, RetryPolicy};
use crate::store::{Env, LocalCache, ObjectStore, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Transfers in flight at once: a sliding window, a new one starting as soon as any one finishes (batches, the
    /// official extensions' way, wait for the slowest of each group).
    pub transfers: usize,
    pub retry: RetryPolicy,
    /// Index compare-and-swap attempts before giving up (W1).
    pub index_cas_attempts: u32,
    /// Plan only: read the index and the cache, report what would move, write nothing anywhere.
    pub dry_run: bool,
    /// W23: files a push may delete from the bucket because they are gone here after a bare markDirty, without a
    /// markDirty naming them. More is refused (a wiped or half-restored cache must not empty the bucket).
    pub max_inferred_deletions: usize,
    /// A pull brings back files gone here even when a mark says they were deleted (after a refused mass deletion).
    pub restore_deleted: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            transfers: 16,
            retry: RetryPolicy::default(),
            index_cas_attempts: 8,
            dry_run: false,
            max_inferred_deletions: DEFAULT_MAX_INFERRED_DELETIONS,
            restore_deleted: false,
        }
    }
}

/// See `EngineConfig::max_inferred_deletions`.
pub const DEFAULT_MAX_INFERRED_DELETIONS: usize = 25;

/// What one service instance (one `createSyncService` object) remembers between calls.
///
/// - A markDirty through this instance forces this instance's next push to look at what it marked (a bare mark: the
///   whole cache), which closes the window where another instance's push handles the mark before our write has landed.
/// - The walk and the index of this instance's last complete pull, which its next push may use instead of walking
///   again (see `Walked`). Taken by the push, dropped by a markDirty or another pull.
/// - The locks of its scope, when it syncs under one: an operation fails once a lock of the scope held by this process
///   was found lost (W13), before its next request.
#[derive(Debug, Default)]
pub struct Instance {
    marked_since_push: Cell<bool>,
    /// Paths marked through this instance since its last push (kept until a push handles them).
    marked_paths: RefCell<BTreeSet<String>>,
    walked: RefCell<Option<Walked>>,
    #[cfg_attr(feature = "flaw-ignore-lost-lock", allow(dead_code))]
    locks: Option<ScopeWatch>,
}

/// A pull's complete walk, kept for the push that follows it in the same instance (a sync is a pull then a push, and
/// a second walk of a large cache would cost as much as the first). A pull walks only when a bare markDirty is pending
/// (`pull::walks_for_push`); otherwise it keeps just its index and view. The push uses them only when the walk is as
/// good as one it would make itself:
/// - the dirty marker is still the one captured before the pull's walk (so no markDirty anywhere since: a write made
///   under the markDirty contract would have changed it), and no markDirty went through this instance since its last
///   push (its write may have landed after the pull's walk);
/// - the local view is byte-for-byte the one the pull left (so no other instance's pull has downloaded into the cache
///   since; a pull changes cache files without a markDirty, and always records them in the view).
///
/// State is still re-read from disk by every operation (W11): only the listing and the parsed index are reused, and the
/// index only after a conditional GET says it is still current.
#[derive(Debug)]
pub(crate) struct Walked {
    /// The marker id captured before the walk.
    #[cfg_attr(feature = "flaw-stale-walk-reuse", allow(dead_code))]
    marker: String,
    /// The fingerprint of the view the pull left, and that view.
    view_fingerprint: u64,
    view: view::LocalView,
    /// The walk, with the pull's downloads applied; `None` when the pull stat'ed only the paths it decided on (the push
    /// walks itself, and still reuses the index and the view).
    listing: Option<listing::LocalListing>,
    /// The index the pull compared, when it had a commit token (the push reads it again only if that token changed).
    snapshot: Option<index::Snapshot>,
}

impl Instance {
    pub fn new() -> Self {
        Instance::default()
    }

    /// An instance whose operations stop with [`SyncError::LockLost`] while a lock of `locks`' scope is found lost.
    pub fn under_locks(locks: ScopeWatch) -> Self {
        Instance { locks: Some(locks), ..Instance::default() }
    }

    fn take_marked(&self) -> bool {
        self.marked_since_push.replace(false)
    }

    fn set_marked(&self) {
        self.marked_since_push.set(true);
    }

    fn mark_path(&self, rel: &str) {
        self.marked_paths.borrow_mut().insert(rel.to_string());
    }

    fn marked_paths(&self) -> BTreeSet<String> {
        self.marked_paths.borrow().clone()
    }

    /// A push handled these paths: they need not be looked at again for this instance's sake.
    fn handled_paths(&self, handled: &BTreeSet<String>) {
        self.marked_paths.borrow_mut().retain(|rel| !handled.contains(rel));
    }

    fn keep_walk(&self, walked: Walked) {
        self.walked.replace(Some(walked));
    }

    fn take_walk(&self) -> Option<Walked> {
        self.walked.take()
    }
}

/// One operation's view of the world: the store, the cache, the host environment and the instance state.
pub struct Engine<'a, S, C, E> {
    pub store: &'a S,
    pub cache: &'a C,
    pub env: &'a E,
    pub config: &'a EngineConfig,
    pub instance: &'a Instance,
}

/// What `status` reports: the sidecar, the marker, and what the fast paths would do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: SyncState,
    pub marker: Marker,
    pub locally_dirty: bool,
    /// Per-path marks waiting for a push.
    pub marked_paths: usize,
    /// `Some(true)`: the remote index still has the verified token (a pull would take the fast path).
    pub pull_fast_path: Option<bool>,
    /// The remote index's layout (1: monolith, 2: shards) and the size of its commit object; `None`: no index.
    pub remote_format: Option<u8>,
    pub remote_index_size: Option<u64>,
    /// Open conflicts as the last pulls and pushes found them (W20).
    pub conflicts: std::collections::BTreeMap<String, OpenConflict>,
}

impl<'a, S, C, E> Engine<'a, S, C, E>
where
    S: ObjectStore,
    C: LocalCache<Body = S::Body>,
    E: Env,
{
    pub fn new(store: &'a S, cache: &'a C, env: &'a E, config: &'a EngineConfig, instance: &'a Instance) -> Self {
        Engine { store, cache, env, config, instance }
    }

    /// "The cache is about to change" (swamp's `markDirty`), for `rel_path` (about to be written or removed) or for
    /// anything (no path). A path gets a mark of its own (`local::marks`); anything else writes a fresh dirty marker
    /// (never the sidecar, B8). Either way the mark is also remembered in this instance, so that its next push looks at
    /// what it marked whatever another instance recorded meanwhile.
    pub async fn mark_dirty(&self, rel_path: Option<&str>) -> Result<(), SyncError> {
        self.check_abort()?;
        self.instance.take_walk();
        let rel = match MarkRequest::classify(rel_path) {
            MarkRequest::Ignore => return Ok(()),
            MarkRequest::Path(rel) => rel,
            MarkRequest::Bulk => return self.mark_bulk().await,
        };
        let Some(name) = mark_name(&rel, self.env.now_ms(), &random_hex(self.env, 12)) else {
            return self.mark_bulk().await;
        };
        self.instance.mark_path(&rel);
        let name = format!("{MARKS_FOLDER}/{name}");
        self.cache.write_internal(&name, Vec::new()).await.map_err(SyncError::from_store)
    }

    async fn mark_bulk(&self) -> Result<(), SyncError> {
        self.instance.set_marked();
        let current = self.read_marker().await;
        let nonce = random_hex(self.env, 16);
        let (_, bytes) = current.next(nonce, self.env.now_ms());
        self.cache.write_internal(DIRTY_NAME, bytes).await.map_err(SyncError::from_store)
    }

    /// The marks in the folder now. An unreadable folder is an error: a push that cannot see the marks cannot know
    /// what to push.
    async fn read_marks(&self) -> Result<Vec<Mark>, SyncError> {
        let names = self.cache.list_internal(MARKS_FOLDER).await.map_err(SyncError::from_store)?;
        Ok(names.iter().map(|name| parse_mark(name)).collect())
    }

    /// Read-only look at the local state and the remote index (one HEAD).
    pub async fn status(&self) -> Result<Status, SyncError> {
        let state = self.read_state().await;
        let marker = self.read_marker().await;
        let marks = self.read_marks().await?;
        let locally_dirty = !state.is_clean_at(marker.id().as_deref())
            || self.instance.marked_since_push.get()
            || !marks.is_empty()
            || !self.instance.marked_paths.borrow().is_empty();
        let conflicts =
            Conflicts::parse(self.cache.read_internal(CONFLICTS_NAME).await.ok().flatten().as_deref()).conflicts;
        let (pull_fast_path, remote_format, remote_index_size) = match self.index_layer().head().await? {
            Some((format, meta)) => (
                state.verified_token.as_ref().map(|verified| meta.token.is_fingerprint() && *verified == meta.token),
                Some(format),
                Some(meta.size),
            ),
            None => (Some(false), None, None),
        };
        Ok(Status {
            state,
            marker,
            locally_dirty,
            marked_paths: marks.len(),
            pull_fast_path,
            remote_format,
            remote_index_size,
            conflicts,
        })
    }

    /// Convert a format-1 bucket to format 2 (`index::IndexLayer::migrate`); a format-2 bucket is left as it is.
    pub async fn migrate_index(&self) -> Result<index::Migrated, SyncError> {
        self.check_abort()?;
        self.index_layer().migrate().await
    }

    /// Called before an operation's first request and between its phases: stop if the operation was aborted (B15) or
    /// a lock this instance syncs under was found taken over (W13), so a holder that lost its lock writes nothing more.
    fn check_abort(&self) -> Result<(), SyncError> {
        if self.env.is_aborted() {
            return Err(SyncError::Aborted);
        }
        #[cfg(not(feature = "flaw-ignore-lost-lock"))]
        if let Some(locks) = &self.instance.locks {
            locks.check().map_err(SyncError::LockLost)?;
        }
        Ok(())
    }

    /// The remote index of this engine's store.
    fn index_layer(&self) -> index::IndexLayer<'_, S, E> {
        index::IndexLayer::new(self.store, self.env, &self.config.retry, self.config.index_cas_attempts)
    }

    async fn retry<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        with_retry(self.env, &self.config.retry, op).await
    }

    /// The sidecar as it is on disk now. An unreadable file (or a failed read) is "no sidecar": the slow path.
    async fn read_state(&self) -> SyncState {
        let bytes = self.cache.read_internal(crate::path::SIDECAR_NAME).await.ok().flatten();
        SyncState::parse(bytes.as_deref())
    }

    async fn read_marker(&self) -> Marker {
        match self.cache.read_internal(DIRTY_NAME).await {
            Ok(bytes) => Marker::parse(bytes.as_deref()),
            Err(_) => Marker::Unreadable,
        }
    }

    /// Rewrite the sidecar from its current on-disk state plus `change`. Re-reading just before writing keeps the
    /// facts another instance recorded meanwhile (a lost update here can only make us slower, see `local::sidecar`).
    async fn update_state(&self, change: impl FnOnce(&mut SyncState)) -> Result<(), SyncError> {
        let mut state = self.read_state().await;
        change(&mut state);
        self.cache.write_internal(crate::path::SIDECAR_NAME, state.to_json()).await.map_err(SyncError::from_store)
    }

    /// Record the conflicts an operation found among the paths it `examined` (the others' records stay).
    async fn report_conflicts(
        &self,
        found: &[(String, ConflictKind)],
        examined: impl IntoIterator<Item = String>,
    ) -> Result<(), SyncError> {
        let mut report = Conflicts::parse(self.cache.read_internal(CONFLICTS_NAME).await.ok().flatten().as_deref());
        if report.update(found, examined, &self.now_iso()) {
            self.cache.write_internal(CONFLICTS_NAME, report.to_json()).await.map_err(SyncError::from_store)?;
        }
        Ok(())
    }

    fn now_iso(&self) -> String {
        iso_from_ms(self.env.now_ms())
    }

    fn trace(&self, operation: &str, phase: &str, started_ms: i64) {
        let elapsed = self.env.now_ms() - started_ms;
        self.env.trace(&format!("marsh {operation}: {phase} {elapsed} ms"));
    }
}

fn random_hex<E: Env>(env: &E, digits: usize) -> String {
    (0..digits).map(|_| char::from_digit((env.random() * 16.0) as u32 % 16, 16).unwrap_or('0')).collect()
}
