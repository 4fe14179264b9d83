//! The index write-back: a compare-and-swap on the token we read (W1).
//!
//! Two writers that both read index v0 and both PUT "v0 + my file" used to lose one file's entry: the second PUT
//! replaced the first. Here the PUT carries `If-Match: <token read>` (`IfAbsent` when there was no index); when another
//! writer got there first the store answers "precondition failed", and we re-read the index, re-apply our entries on
//! top of theirs, and try again, with a short jittered backoff and a bounded number of attempts.

use std::collections::BTreeMap;

use super::pull::IndexRead;
use super::{Engine, SyncError};
use crate::index::{IndexEntry, RemoteIndex};
use crate::path::INDEX_KEY;
use crate::store::token::VersionToken;
use crate::store::{Env, LocalCache, ObjectStore, Precondition, StoreError};

pub(super) struct Written {
    pub index: RemoteIndex,
    pub token: VersionToken,
    pub bytes: Vec<u8>,
    /// A conflict made us re-read the index: entries other than ours may differ from the ones we compared.
    pub rebased: bool,
}

impl<S, C, E> Engine<'_, S, C, E>
where
    S: ObjectStore,
    C: LocalCache<Body = S::Body>,
    E: Env,
{
    pub(super) async fn write_back(
        &self,
        mut index: RemoteIndex,
        mut token: Option<VersionToken>,
        pushed: &BTreeMap<String, IndexEntry>,
    ) -> Result<Written, SyncError> {
        let attempts = self.config.index_cas_attempts.max(1);
        for attempt in 0..attempts {
            self.check_abort()?;
            index.insert_all(pushed.iter().map(|(rel, entry)| (rel.clone(), entry.clone())).collect());
            index.scrub_internal();
            index.set_last_pulled(self.now_iso());
            let bytes = index.to_json();
            let precondition = write_condition(token.as_ref());
            match self.retry(|| self.store.put_bytes(INDEX_KEY, &bytes, &precondition)).await {
                Ok(token) => return Ok(Written { index, token, bytes, rebased: attempt > 0 }),
                // S3 answers If-Match on a vanished object with 404, GCS with 412: both mean "changed since read".
                Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) if attempt + 1 < attempts => {
                    self.env.sleep(cas_backoff_ms(attempt, self.env.random())).await.map_err(SyncError::from_store)?;
                    (index, token) = match self.read_index(None).await? {
                        IndexRead::Found { index, token, .. } => (index, Some(token)),
                        IndexRead::Missing => (RemoteIndex::empty(), None),
                        IndexRead::NotModified => continue,
                    };
                }
                Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) => break,
                Err(StoreError::Aborted) => return Err(SyncError::Aborted),
                Err(other) => return Err(SyncError::IndexWrite(other)),
            }
        }
        Err(SyncError::IndexContended { attempts })
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
