//! Lazy hydration's single-file operations: `hydrate_file` brings one file of the index into the cache (after a
//! metadata-only pull left it out), `fetch_content` reads one object's bytes for the host without touching the cache.
//!
//! `fetch_content`'s bytes enter the core: the host asked for them, and one GET through the store's retry policy keeps
//! the path check, the retries and the error kinds in one place. They are never written to the cache.

use std::collections::BTreeSet;

use super::{Engine, FileFailure, SyncError};
use crate::index::shard::home_shard;
use crate::index::Read;
use crate::local::view::{ViewEntry, ViewUpdates};
use crate::path::{check_rel, is_internal};
use crate::store::{Env, Fetched, LocalCache, ObjectStore, Replaces, StoreError};

impl<S, C, E> Engine<'_, S, C, E>
where
    S: ObjectStore,
    C: LocalCache<Body = S::Body>,
    E: Env,
{
    /// Bring `rel` into the cache as the index has it (temp file, verified, renamed, then recorded in the view as
    /// synced). True when the file is then there; false when the index has no such entry or its object is not the
    /// entry's (a commit in flight). A file already here is left as it is: whether it is the index's version is a
    /// pull's decision, and a local edit must never be overwritten here.
    pub async fn hydrate_file(&self, rel: &str) -> Result<bool, SyncError> {
        self.check_abort()?;
        check_path("hydrateFile", rel)?;
        if self.cache.stat(rel).await.map_err(SyncError::from_store)?.is_some() {
            return Ok(true);
        }
        // The file's home shard alone when the bucket lists it; else the whole index.
        let shard = BTreeSet::from([home_shard(rel).into_owned()]);
        let read = match self.index_layer().read_scoped(None, &shard, &shard).await? {
            Some(read) => read,
            None => self.index_layer().read(None).await?,
        };
        let Read::Found(snapshot) = read else { return Ok(false) };
        let Some(entry) = snapshot.index.get(rel).cloned() else { return Ok(false) };
        self.check_abort()?;
        self.instance.take_walk();
        match self.download_one(rel, &entry, Replaces::Nothing).await {
            Ok((stat, sha256, token)) => {
                let mut updates = ViewUpdates::new();
                updates
                    .insert(rel.to_string(), Some(ViewEntry::new(stat, Some(sha256), &entry).with_token(Some(token))));
                self.save_view(updates).await?;
                Ok(true)
            }
            // Written here meanwhile: that file stays, and it is in place.
            Err(StoreError::LocalChanged { .. }) => {
                Ok(self.cache.stat(rel).await.map_err(SyncError::from_store)?.is_some())
            }
            Err(StoreError::Mismatch { .. } | StoreError::NotFound { .. }) => Ok(false),
            Err(StoreError::Aborted) => Err(SyncError::Aborted),
            Err(error) => Err(SyncError::Files {
                operation: "hydrateFile",
                transferred: 0,
                failures: vec![FileFailure { rel: rel.to_string(), error }],
            }),
        }
    }

    /// The bucket's bytes of `rel` (one GET), `None` when it has no such object. The cache is not touched.
    pub async fn fetch_content(&self, rel: &str) -> Result<Option<Vec<u8>>, SyncError> {
        self.check_abort()?;
        check_path("fetchContent", rel)?;
        match self.retry(|| self.store.get_bytes(rel, None)).await {
            Ok(Fetched::Found { body, .. }) => Ok(Some(body)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(StoreError::Aborted) => Err(SyncError::Aborted),
            Ok(Fetched::NotModified) => {
                Err(fetch_failed(rel, StoreError::Io { message: format!("{rel}: unexpected not-modified") }))
            }
            Err(error) => Err(fetch_failed(rel, error)),
        }
    }
}

fn fetch_failed(rel: &str, error: StoreError) -> SyncError {
    SyncError::Files {
        operation: "fetchContent",
        transferred: 0,
        failures: vec![FileFailure { rel: rel.to_string(), error }],
    }
}

/// A cache-relative data path, or an error naming it (absolute paths, `..`, marsh's and swamp's own files).
pub fn check_path(operation: &str, rel: &str) -> Result<(), SyncError> {
    check_rel(rel).map_err(|error| SyncError::InvalidArgument(format!("{operation}: {error}")))?;
    if is_internal(rel) {
        return Err(SyncError::InvalidArgument(format!("{operation}: {rel:?} is an internal file, not cache data")));
    }
    Ok(())
}
