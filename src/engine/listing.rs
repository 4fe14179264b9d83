//! The local side of an operation: listing the cache, and the local view.

use super::cursor::{sorted_union, Cursor};
use super::{Engine, FileFailure, SyncError};
use crate::encoding::fingerprint::fingerprint;
use crate::index::{IndexEntry, RemoteIndex};
use crate::local::view::{LocalView, ViewEntry, ViewUpdates};
use crate::path::{check_rel, is_internal, VIEW_NAME};
use crate::sorted::{find, merge_sorted, sorted_unique};
use crate::store::{Env, FileStat, LocalCache, ObjectStore, PathStat, StoreError, WalkItem};
use futures_util::stream::{self, StreamExt};

/// Paths asked of the cache in one `stat_many` call: memory stays bounded on both sides of the boundary and an abort is
/// noticed between batches. Small enough that a JS host's batch dies young (8,192 left ~45 MB more JS heap at 250k
/// paths), large enough that 250k paths cost only a few hundred crossings.
const STAT_BATCH: usize = 1024;
/// `stat_many` calls in flight at once after the first.
const STAT_BATCHES_IN_FLIGHT: usize = 2;

/// The cache as one walk saw it. Internal files are left out; symlinks and vanished files are listed, not followed.
#[derive(Debug, Default)]
pub(super) struct LocalListing {
    /// Sorted by path, one item per path: it is only ever read in order (merge-joins with the index and the view) or
    /// looked up by binary search, so no tree is built for it.
    pub files: Vec<(String, FileStat)>,
    pub symlinks: Vec<String>,
    pub vanished: Vec<String>,
    /// Local names that are not valid keys (they cannot be pushed; reported, never silently dropped).
    pub invalid: Vec<FileFailure>,
}

impl LocalListing {
    pub fn stat(&self, rel: &str) -> Option<&FileStat> {
        find(&self.files, rel)
    }

    /// Note what downloads left on disk: replaces the stat of a listed file, adds a new one, keeps the order.
    pub fn record(&mut self, found: Vec<(String, FileStat)>) {
        if !found.is_empty() {
            self.files = merge_sorted(std::mem::take(&mut self.files), sorted_unique(found));
        }
    }

    /// Add the listing of other paths (`stat_paths` of paths this one did not ask for).
    pub fn add(&mut self, more: LocalListing) {
        self.files = merge_sorted(std::mem::take(&mut self.files), more.files);
        self.symlinks.extend(more.symlinks);
    }

    /// Note files the operation removed.
    pub fn forget(&mut self, removed: &[String]) {
        if !removed.is_empty() {
            self.files.retain(|(rel, _)| removed.binary_search(rel).is_err());
        }
    }

    /// Replace what this listing says under each of `paths` with `fresher` (a walk of just those paths, made later).
    pub fn refresh(&mut self, paths: &std::collections::BTreeSet<String>, fresher: LocalListing) {
        let covered = |rel: &str| paths.iter().any(|path| crate::local::marks::covers(path, rel));
        self.files.retain(|(rel, _)| !covered(rel));
        self.files = merge_sorted(std::mem::take(&mut self.files), fresher.files);
        self.symlinks.retain(|rel| !covered(rel));
        self.symlinks.extend(fresher.symlinks);
        self.vanished.extend(fresher.vanished);
        self.invalid.extend(fresher.invalid);
    }

    /// `rel` is a symlink or lies under one: writing there could land outside the cache.
    pub fn through_symlink(&self, rel: &str) -> bool {
        self.symlinks.iter().any(|link| crate::local::marks::covers(link, rel))
    }
}

/// A walk's items as a listing: internal files left out, unusable names reported.
fn listing_of(items: Vec<WalkItem>) -> LocalListing {
    let mut listing = LocalListing::default();
    // Collected, then sorted in one go.
    let mut files = Vec::with_capacity(items.len());
    for item in items {
        match item {
            WalkItem::File { rel, .. } | WalkItem::Symlink { rel } | WalkItem::Vanished { rel }
                if is_internal(&rel) => {}
            WalkItem::File { rel, stat } => match check_rel(&rel) {
                Ok(()) => files.push((rel, stat)),
                Err(bad) => listing.invalid.push(FileFailure {
                    error: StoreError::InvalidKey { key: rel.clone(), reason: bad.reason.to_string() },
                    rel,
                }),
            },
            WalkItem::Symlink { rel } => listing.symlinks.push(rel),
            WalkItem::Vanished { rel } => listing.vanished.push(rel),
        }
    }
    listing.files = sorted_unique(files);
    listing
}

/// The local view as read from disk, with a fingerprint of its bytes (to notice that another instance rewrote it).
pub(super) struct ReadView {
    pub view: LocalView,
    pub fingerprint: u64,
}

/// What `save_view` found and left: fingerprints, and the view written.
pub(super) struct SavedView {
    pub base: u64,
    pub written: u64,
    pub view: LocalView,
}

impl<S, C, E> Engine<'_, S, C, E>
where
    S: ObjectStore,
    C: LocalCache<Body = S::Body>,
    E: Env,
{
    /// One complete walk. Any error other than a vanished entry fails the operation (W7: never a partial walk).
    pub(super) async fn list_local(&self) -> Result<LocalListing, SyncError> {
        let items = self.cache.walk().await.map_err(SyncError::from_store)?;
        Ok(listing_of(items))
    }

    /// The listing of exactly `rels` (valid, not internal; in path order, so the listing is too): the regular files and
    /// the symlinks among them (a path under a symlinked folder counts as one), absent paths left out.
    pub(super) async fn stat_paths<'a>(&'a self, rels: &'a [&'a str]) -> Result<LocalListing, SyncError> {
        let stat = |batch: &'a [&'a str]| async move {
            self.check_abort()?;
            Ok::<_, SyncError>((batch, self.cache.stat_many(batch).await.map_err(SyncError::from_store)?))
        };
        let mut listing = LocalListing::default();
        let mut record = |(batch, found): (&[&str], Vec<PathStat>)| {
            for (rel, state) in batch.iter().zip(found) {
                match state {
                    PathStat::File(stat) => listing.files.push((rel.to_string(), stat)),
                    PathStat::Symlink => listing.symlinks.push(rel.to_string()),
                    PathStat::Absent => {}
                }
            }
        };
        let mut batches = rels.chunks(STAT_BATCH);
        // The first batch alone (a host without `statMany` answers from one walk, made once), then two at a time: a
        // host that stats on another thread then always has the next batch to work on.
        if let Some(batch) = batches.next() {
            record(stat(batch).await?);
        }
        let mut rest = std::pin::pin!(stream::iter(batches).map(stat).buffered(STAT_BATCHES_IN_FLIGHT));
        while let Some(answer) = rest.next().await {
            record(answer?);
        }
        Ok(listing)
    }

    /// The files under each of `paths` (a marked file, or everything in a marked folder), without walking the rest.
    pub(super) async fn list_under(
        &self,
        paths: &std::collections::BTreeSet<String>,
    ) -> Result<LocalListing, SyncError> {
        let mut items = Vec::new();
        for path in paths {
            items.extend(self.cache.walk_under(path).await.map_err(SyncError::from_store)?);
        }
        Ok(listing_of(items))
    }

    /// The view as on disk (an unreadable view is an empty one), with the fingerprint of its bytes.
    pub(super) async fn read_view(&self) -> ReadView {
        let bytes = self.cache.read_internal(VIEW_NAME).await.ok().flatten();
        ReadView { fingerprint: fingerprint(bytes.as_deref()), view: LocalView::parse(bytes.as_deref()) }
    }

    /// Persist this operation's view changes on top of the view as it is on disk now (W6). Returns the fingerprints
    /// of the view it found (the base of the merge) and of the view it left; `None` when there was nothing to save.
    pub(super) async fn save_view(&self, updates: ViewUpdates) -> Result<Option<SavedView>, SyncError> {
        if updates.is_empty() {
            return Ok(None);
        }
        let base = self.read_view().await;
        let view = LocalView::merge_into(updates, base.view);
        let bytes = view.to_json();
        let written = fingerprint(Some(&bytes));
        self.cache.write_internal(VIEW_NAME, bytes).await.map_err(SyncError::from_store)?;
        Ok(Some(SavedView { base: base.fingerprint, written, view }))
    }
}

/// Every path the index, the listing or the view knows, in order, with what each of them holds for it: the three
/// sides of a pull's or push's decision (`plan`), found in one merge pass.
pub(super) fn three_way<'a>(
    index: &'a RemoteIndex,
    listing: &'a LocalListing,
    view: &'a LocalView,
) -> impl Iterator<Item = (&'a str, Option<&'a IndexEntry>, Option<&'a FileStat>, Option<&'a ViewEntry>)> + 'a {
    let mut entries = Cursor::new(index.entries());
    let mut local_files = Cursor::new(listing.files.iter().map(|(rel, stat)| (rel.as_str(), stat)));
    let mut records = Cursor::new(view.iter());
    sorted_union(
        index.entries().map(|(rel, _)| rel),
        listing.files.iter().map(|(rel, _)| rel.as_str()),
        view.iter().map(|(rel, _)| rel),
    )
    .into_iter()
    .map(move |rel| (rel, entries.seek(rel), local_files.seek(rel), records.seek(rel)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(size: u64) -> FileStat {
        FileStat { size, mtime_ms: 7 }
    }

    fn listed(items: &[(&str, u64)]) -> Vec<(String, FileStat)> {
        items.iter().map(|(rel, size)| (rel.to_string(), stat(*size))).collect()
    }

    #[test]
    fn downloads_replace_or_add_stats_in_order_and_are_found_by_path() {
        let mut listing = LocalListing { files: listed(&[("a", 1), ("c", 3), ("e", 5)]), ..LocalListing::default() };
        listing.record(listed(&[("f", 60), ("c", 30), ("0", 0), ("d", 40)]));
        assert_eq!(listing.files, listed(&[("0", 0), ("a", 1), ("c", 30), ("d", 40), ("e", 5), ("f", 60)]));
        assert_eq!(listing.stat("c"), Some(&stat(30)));
        assert_eq!(listing.stat("b"), None);
        listing.record(Vec::new());
        assert_eq!(listing.files.len(), 6);
    }
}
