//! `resolve`: settle one open conflict (W20) the way the user chose. Nothing is written to the bucket here: the choice
//! is turned into local state that the ordinary three-way decisions then carry out.
//!
//! - Keep the local side: the base of the path becomes the bucket's current version, so the path reads "changed here,
//!   unchanged there" and the next push uploads it (or deletes the object, when the local file is gone) on condition
//!   that the bucket still holds that version. The path is marked so that a push of marks alone looks at it.
//! - Keep the bucket's side: its version is downloaded over the local file (or the local file removed, when the bucket
//!   deleted it), and recorded in the view as synced.
//!
//! Either way the conflict record goes only once its local state is written, and only if the local file is still the
//! one we looked at (a write landing meanwhile fails the resolve and keeps the record).

use super::{Engine, SyncError};
use crate::index::{IndexEntry, Read, Snapshot};
use crate::local::conflicts::{Conflicts, CONFLICTS_NAME};
use crate::local::view::{ViewEntry, ViewUpdates};
use crate::path::{check_rel, is_internal};
use crate::store::{Env, FileStat, LocalCache, ObjectStore, Replaces, StoreError};

/// Which side of a conflict to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Local,
    Remote,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The bucket's version was written over the local file.
    pub downloaded: bool,
    /// The local file was removed (the bucket deleted it).
    pub removed_local: bool,
    /// The path is marked: the next push uploads the local file or deletes the object.
    pub marked_for_push: bool,
}

impl<S, C, E> Engine<'_, S, C, E>
where
    S: ObjectStore,
    C: LocalCache<Body = S::Body>,
    E: Env,
{
    pub async fn resolve(&self, rel: &str, keep: Keep) -> Result<Resolved, SyncError> {
        self.check_abort()?;
        check_rel(rel).map_err(|error| SyncError::NoConflict { rel: rel.to_string(), why: error.to_string() })?;
        if is_internal(rel) {
            return Err(SyncError::NoConflict { rel: rel.to_string(), why: "it is marsh's own file".to_string() });
        }
        let open = Conflicts::parse(self.cache.read_internal(CONFLICTS_NAME).await.ok().flatten().as_deref());
        if !open.conflicts.contains_key(rel) {
            let why = "no open conflict is recorded for it (see `marsh status`)".to_string();
            return Err(SyncError::NoConflict { rel: rel.to_string(), why });
        }
        let snapshot = match self.index_layer().read(None).await? {
            Read::Found(snapshot) => snapshot,
            Read::NotModified => Snapshot::empty(),
        };
        self.check_abort()?;
        let entry = snapshot.index.get(rel).cloned();
        let local = self.cache.stat(rel).await.map_err(SyncError::from_store)?;
        let mut updates = ViewUpdates::new();
        let resolved = match keep {
            Keep::Local => self.keep_local(rel, entry.as_ref(), local, &mut updates).await?,
            Keep::Remote => self.keep_remote(rel, entry.as_ref(), local, &mut updates).await?,
        };
        self.save_view(updates).await?;
        if resolved.marked_for_push {
            self.mark_dirty(Some(rel)).await?;
        }
        self.report_conflicts(&[], [rel.to_string()]).await?;
        Ok(resolved)
    }

    async fn keep_local(
        &self,
        rel: &str,
        entry: Option<&IndexEntry>,
        local: Option<FileStat>,
        updates: &mut ViewUpdates,
    ) -> Result<Resolved, SyncError> {
        match entry {
            // The base becomes the bucket's version, with a stat no file can have now: "changed here" until hashed.
            Some(entry) => {
                let stat = match local {
                    Some(stat) => FileStat { size: entry.size, mtime_ms: stat.mtime_ms - 1 },
                    None => FileStat { size: entry.size, mtime_ms: 0 },
                };
                updates.insert(rel.to_string(), Some(ViewEntry::new(stat, entry.sha256, entry)));
            }
            // Gone from the bucket: the local file is new there (a create-only upload), or gone on both sides.
            None => updates.insert(rel.to_string(), None),
        }
        Ok(Resolved { marked_for_push: entry.is_some() || local.is_some(), ..Resolved::default() })
    }

    async fn keep_remote(
        &self,
        rel: &str,
        entry: Option<&IndexEntry>,
        local: Option<FileStat>,
        updates: &mut ViewUpdates,
    ) -> Result<Resolved, SyncError> {
        let replaces = local.map_or(Replaces::Nothing, Replaces::File);
        match (entry, local) {
            (Some(entry), _) => {
                let (stat, sha256, token) =
                    self.download_one(rel, entry, replaces).await.map_err(|error| match error {
                        StoreError::Aborted => SyncError::Aborted,
                        error => SyncError::Files {
                            operation: "resolve",
                            transferred: 0,
                            failures: vec![super::FileFailure { rel: rel.to_string(), error }],
                        },
                    })?;
                updates
                    .insert(rel.to_string(), Some(ViewEntry::new(stat, Some(sha256), entry).with_token(Some(token))));
                Ok(Resolved { downloaded: true, ..Resolved::default() })
            }
            (None, Some(stat)) => {
                self.cache.remove(rel, stat).await.map_err(SyncError::from_store)?;
                updates.insert(rel.to_string(), None);
                Ok(Resolved { removed_local: true, ..Resolved::default() })
            }
            (None, None) => {
                updates.insert(rel.to_string(), None);
                Ok(Resolved::default())
            }
        }
    }
}
