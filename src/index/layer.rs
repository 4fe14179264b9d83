//! Reading and writing the remote index as one layer, whatever objects hold it.
//!
//! Layout today: one monolith object (`.datastore-index.json`) whose version token is the commit token: the token a
//! fast path compares and a sidecar records as verified.
//!
//! Reading: the token returned with a snapshot is the token of the very read whose bytes became its entries (the seed
//! rule, B5): a token taken from any later request could belong to a writer's commit whose entries were never compared.
//!
//! Writing (W1): two writers that both read index v0 and both write "v0 + my files" lose one writer's entries unless
//! the write is conditional. A commit writes on condition of the token it read (`IfAbsent` when there was no index);
//! when another writer got there first it re-reads, re-applies its changes on top, and tries again after a short
//! jittered backoff, a bounded number of times.

use std::collections::BTreeMap;

use super::document::{IndexEntry, RemoteIndex};
use crate::encoding::time::iso_from_ms;
use crate::engine::SyncError;
use crate::path::INDEX_KEY;
use crate::store::retry::{with_retry, RetryPolicy};
use crate::store::token::VersionToken;
use crate::store::{Env, Fetched, ObjectMeta, ObjectStore, Precondition, StoreError};

/// The index as one read found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Every entry, in path order.
    pub index: RemoteIndex,
    /// The commit token of the read (`None`: there was no index).
    commit: Option<VersionToken>,
    /// The bytes read, kept until the cache's local copy takes them.
    raw: Option<Vec<u8>>,
}

/// A copy of the index kept in the cache ("the last index seen", never read back for a decision: B4).
pub struct LocalCopy {
    pub name: &'static str,
    pub bytes: Vec<u8>,
}

impl Snapshot {
    /// No index yet: an empty bucket.
    pub fn empty() -> Self {
        Snapshot { index: RemoteIndex::empty(), commit: None, raw: None }
    }

    /// The token a fast path compares and a sidecar may record: the one read with these entries, or written by us.
    pub fn commit_token(&self) -> Option<&VersionToken> {
        self.commit.as_ref()
    }

    /// The bytes to keep as the cache's local copy, once.
    pub fn take_local_copy(&mut self) -> Option<LocalCopy> {
        self.raw.take().map(|bytes| LocalCopy { name: INDEX_KEY, bytes })
    }
}

/// What a read found.
#[derive(Debug)]
pub enum Read {
    /// The commit token is still the one asked about: nothing else was read.
    NotModified,
    Found(Snapshot),
}

/// One writer's changes to the index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Entries to add or replace, by path.
    pub upserts: BTreeMap<String, IndexEntry>,
}

/// A successful commit.
pub struct Committed {
    /// The index as written, with the commit token of our write.
    pub snapshot: Snapshot,
    /// Another writer committed first: entries other than ours may differ from the ones read before.
    pub rebased: bool,
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

    /// Read the index. With `if_none_match` (a commit token recorded earlier), answers `NotModified` when the index
    /// still has it. Anything but "not found" failing is an error (B12): an empty index must never stand in for one
    /// that could not be read.
    pub async fn read(&self, if_none_match: Option<&VersionToken>) -> Result<Read, SyncError> {
        match with_retry(self.env, self.retry, || self.store.get_bytes(INDEX_KEY, if_none_match)).await {
            Ok(Fetched::NotModified) => Ok(Read::NotModified),
            // A store that ignores the condition (some emulators) answers with the same token: still unchanged.
            Ok(Fetched::Found { token, .. }) if if_none_match.is_some_and(|known| *known == token) => {
                Ok(Read::NotModified)
            }
            Ok(Fetched::Found { body, token, .. }) => {
                let index = RemoteIndex::parse(&body).map_err(|e| SyncError::IndexCorrupt(e.to_string()))?;
                Ok(Read::Found(Snapshot { index, commit: Some(token), raw: Some(body) }))
            }
            Err(StoreError::NotFound { .. }) => Ok(Read::Found(Snapshot::empty())),
            Err(StoreError::Aborted) => Err(SyncError::Aborted),
            Err(other) => Err(SyncError::IndexUnreadable(other)),
        }
    }

    /// The commit object's current token and size, without reading the entries (`None`: no index). For `status` only:
    /// a token found this way was compared with nothing and must never be recorded as verified.
    pub async fn head(&self) -> Result<Option<ObjectMeta>, SyncError> {
        match with_retry(self.env, self.retry, || self.store.head(INDEX_KEY)).await {
            Ok(meta) => Ok(Some(meta)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(StoreError::Aborted) => Err(SyncError::Aborted),
            Err(other) => Err(SyncError::IndexUnreadable(other)),
        }
    }

    /// Apply `changes` on top of `base` and write it, on condition that the index is still `base` (W1). Entries of
    /// internal files are removed on the way (B11). On a lost race: re-read, re-apply, retry.
    pub async fn commit(&self, base: Snapshot, changes: &Changes) -> Result<Committed, SyncError> {
        let Snapshot { mut index, commit: mut token, .. } = base;
        for attempt in 0..self.cas_attempts {
            if self.env.is_aborted() {
                return Err(SyncError::Aborted);
            }
            index.insert_all(changes.upserts.iter().map(|(rel, entry)| (rel.clone(), entry.clone())).collect());
            index.scrub_internal();
            index.set_last_pulled(iso_from_ms(self.env.now_ms()));
            let bytes = index.to_json();
            let precondition = write_condition(token.as_ref());
            match with_retry(self.env, self.retry, || self.store.put_bytes(INDEX_KEY, &bytes, &precondition)).await {
                Ok(written) => {
                    let snapshot = Snapshot { index, commit: Some(written), raw: Some(bytes) };
                    return Ok(Committed { snapshot, rebased: attempt > 0 });
                }
                // S3 answers If-Match on a vanished object with 404, GCS with 412: both mean "changed since read".
                Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. })
                    if attempt + 1 < self.cas_attempts =>
                {
                    self.env.sleep(cas_backoff_ms(attempt, self.env.random())).await.map_err(SyncError::from_store)?;
                    if let Read::Found(current) = self.read(None).await? {
                        (index, token) = (current.index, current.commit);
                    }
                }
                Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) => break,
                Err(StoreError::Aborted) => return Err(SyncError::Aborted),
                Err(other) => return Err(SyncError::IndexWrite(other)),
            }
        }
        Err(SyncError::IndexContended { attempts: self.cas_attempts })
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
