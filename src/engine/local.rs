//! The local side of an operation: listing the cache, and the local view.

use std::collections::BTreeMap;

use super::{Engine, FileFailure, SyncError};
use crate::path::{check_rel, is_internal, VIEW_NAME};
use crate::store::{Env, FileStat, LocalCache, ObjectStore, StoreError, WalkItem};
use crate::view::{LocalView, ViewEntry};

/// The cache as one walk saw it. Internal files are left out; symlinks and vanished files are listed, not followed.
#[derive(Debug, Default)]
pub(super) struct LocalListing {
    pub files: BTreeMap<String, FileStat>,
    pub symlinks: Vec<String>,
    pub vanished: Vec<String>,
    /// Local names that are not valid keys (they cannot be pushed; reported, never silently dropped).
    pub invalid: Vec<FileFailure>,
}

impl LocalListing {
    /// `rel` is a symlink or lies under one: writing there could land outside the cache.
    pub fn through_symlink(&self, rel: &str) -> bool {
        self.symlinks.iter().any(|link| {
            rel == link || (rel.starts_with(link.as_str()) && rel.as_bytes().get(link.len()) == Some(&b'/'))
        })
    }
}

/// Changes to the local view made by one operation: `Some` records a file, `None` forgets it.
pub(super) type ViewUpdates = BTreeMap<String, Option<ViewEntry>>;

impl<S, C, E> Engine<'_, S, C, E>
where
    S: ObjectStore,
    C: LocalCache<Body = S::Body>,
    E: Env,
{
    /// One complete walk. Any error other than a vanished entry fails the operation (W7: never a partial walk).
    pub(super) async fn list_local(&self) -> Result<LocalListing, SyncError> {
        let items = self.cache.walk().await.map_err(SyncError::from_store)?;
        let mut listing = LocalListing::default();
        for item in items {
            match item {
                WalkItem::File { rel, .. } | WalkItem::Symlink { rel } | WalkItem::Vanished { rel }
                    if is_internal(&rel) => {}
                WalkItem::File { rel, stat } => match check_rel(&rel) {
                    Ok(()) => {
                        listing.files.insert(rel, stat);
                    }
                    Err(bad) => listing.invalid.push(FileFailure {
                        error: StoreError::InvalidKey { key: rel.clone(), reason: bad.reason.to_string() },
                        rel,
                    }),
                },
                WalkItem::Symlink { rel } => listing.symlinks.push(rel),
                WalkItem::Vanished { rel } => listing.vanished.push(rel),
            }
        }
        Ok(listing)
    }

    pub(super) async fn read_view(&self) -> LocalView {
        let bytes = self.cache.read_internal(VIEW_NAME).await.ok().flatten();
        LocalView::parse(bytes.as_deref())
    }

    /// Persist this operation's view changes on top of the view as it is on disk now (W6).
    pub(super) async fn save_view(&self, updates: &ViewUpdates) -> Result<(), SyncError> {
        if updates.is_empty() {
            return Ok(());
        }
        let merged = LocalView::merge_into(updates, self.read_view().await);
        self.cache.write_internal(VIEW_NAME, merged.to_json()).await.map_err(SyncError::from_store)
    }
}
