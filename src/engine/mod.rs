//! The sync engine: `pull_changed`, `push_changed`, `mark_dirty`, `status`. It sequences every file transfer and local
//! state update; the index objects themselves are read and written through the index layer (`crate::index`).
//!
//! Every operation re-reads its state from disk (W11), checks the abort flag before any request and between phases
//! (B15), sends every store request through the retry policy (B14, W14), and moves file bodies only between the store
//! and the cache (they never enter the core).

mod cursor;
mod error;
mod listing;
pub mod plan;
mod pull;
mod push;
mod transfer;

use std::cell::{Cell, RefCell};

pub use error::{FileFailure, SyncError};
pub use pull::PullReport;
pub use push::PushReport;

use crate::encoding::time::iso_from_ms;
use crate::index;
use crate::local::marker::{Marker, DIRTY_NAME};
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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { transfers: 16, retry: RetryPolicy::default(), index_cas_attempts: 8, dry_run: false }
    }
}

/// What one service instance (one `createSyncService` object) remembers between calls.
///
/// - A markDirty through this instance forces this instance's next push onto the full path, which closes the window
///   where another instance's push marks the cache clean before our write has landed.
/// - The walk and the index of this instance's last complete pull, which its next push may use instead of walking
///   again (see `Walked`). Taken by the push, dropped by a markDirty or another pull.
/// - The locks of its scope, when it syncs under one: an operation fails once a lock of the scope held by this process
///   was found lost (W13), before its next request.
#[derive(Debug, Default)]
pub struct Instance {
    marked_since_push: Cell<bool>,
    walked: RefCell<Option<Walked>>,
    #[cfg_attr(feature = "flaw-ignore-lost-lock", allow(dead_code))]
    locks: Option<ScopeWatch>,
}

/// A pull's complete walk, kept for the push that follows it in the same instance (a sync is a pull then a push, and
/// a second walk of a large cache would cost as much as the first). The push uses it only when the walk is as good
/// as one it would make itself:
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
    /// The walk, with the pull's downloads applied.
    listing: listing::LocalListing,
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
    /// `Some(true)`: the remote index still has the verified token (a pull would take the fast path).
    pub pull_fast_path: Option<bool>,
    /// The remote index's layout (1: monolith, 2: shards) and the size of its commit object; `None`: no index.
    pub remote_format: Option<u8>,
    pub remote_index_size: Option<u64>,
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

    /// "The cache is about to change." Writes a fresh dirty marker (never the sidecar, B8) and remembers the mark in
    /// this instance, so this instance's next push walks the cache whatever the sidecar says.
    pub async fn mark_dirty(&self) -> Result<(), SyncError> {
        self.check_abort()?;
        self.instance.set_marked();
        self.instance.take_walk();
        let current = self.read_marker().await;
        let nonce = random_hex(self.env, 16);
        let (_, bytes) = current.next(nonce, self.env.now_ms());
        self.cache.write_internal(DIRTY_NAME, bytes).await.map_err(SyncError::from_store)
    }

    /// Read-only look at the local state and the remote index (one HEAD).
    pub async fn status(&self) -> Result<Status, SyncError> {
        let state = self.read_state().await;
        let marker = self.read_marker().await;
        let locally_dirty = !state.is_clean_at(marker.id().as_deref()) || self.instance.marked_since_push.get();
        let (pull_fast_path, remote_format, remote_index_size) = match self.index_layer().head().await? {
            Some((format, meta)) => (
                state.verified_token.as_ref().map(|verified| meta.token.is_fingerprint() && *verified == meta.token),
                Some(format),
                Some(meta.size),
            ),
            None => (Some(false), None, None),
        };
        Ok(Status { state, marker, locally_dirty, pull_fast_path, remote_format, remote_index_size })
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
