//! `push_changed`: upload what changed here and merge it into the remote index.
//!
//! Fast path: the sidecar says the cache was clean at the current dirty marker and this instance has not marked dirty
//! since: no request at all (B2; remote changes are the pull's business). Otherwise: one complete walk (W7), or the
//! walk of this instance's pull when nothing can have changed since (`engine::Walked`); a fresh index GET (conditional
//! on the pull's token when its walk is reused; a failure other than "not found" stops here, B12); uploads in a sliding
//! window (B13); then a compare-and-swap commit (W1, see `index::IndexLayer::commit`). "Clean" is recorded only for the marker
//! captured before the walk and only if it is still current at the end (W3); "verified" only if every entry of the
//! index we wrote or read is present here (B6), and never after a write-back that had to merge another writer's index.

use std::collections::BTreeMap;

use super::cursor::Cursor;
use super::transfer::run_bounded;
use super::{Engine, FileFailure, SyncError, Walked};
use crate::encoding::time::iso_from_ms;
use crate::engine::plan::{push_after_hash, push_decision, PushDecision};
use crate::index::{Changes, Committed, IndexEntry, Read, RemoteIndex, Snapshot};
use crate::local::journal::{Journal, COMMIT_JOURNAL_NAME};
use crate::local::marker::Marker;
use crate::local::view::{ViewEntry, ViewUpdates};
use crate::path::VIEW_NAME;
use crate::store::{Env, FileStat, LocalCache, ObjectStore, Precondition, Progress, StoreError};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Files actually uploaded (B18).
    pub uploaded: u64,
    pub fast_path: bool,
    pub index_written: bool,
    /// Internal entries removed from the remote index (B11).
    pub scrubbed: Vec<String>,
    /// Symlinks found in the cache: reported, never followed or uploaded (W8).
    pub symlinks: Vec<String>,
    /// Files that disappeared during the push: skipped explicitly (W7).
    pub vanished: Vec<String>,
    /// Files edited here whose remote entry also changed since their last sync; the upload replaced it (W5).
    pub conflicts: Vec<String>,
    /// Files untouched here with a newer remote version: left for the next pull.
    pub remote_newer: Vec<String>,
    pub verified: bool,
    pub clean: bool,
    /// The walk of this instance's pull was used instead of a new one (see `engine::Walked`).
    pub walk_reused: bool,
    /// Dry run only: the files a real push would upload (or hash first, then upload if they differ).
    pub planned: Vec<String>,
}

/// What happened to one file that needed a closer look.
enum Pushed {
    Uploaded { entry: IndexEntry, stat: FileStat, sha256: [u8; 32], conflict: bool },
    Unchanged { stat: FileStat, sha256: [u8; 32] },
    Vanished,
}

impl<S, C, E> Engine<'_, S, C, E>
where
    S: ObjectStore,
    C: LocalCache<Body = S::Body>,
    E: Env,
{
    pub async fn push_changed(&self) -> Result<PushReport, SyncError> {
        self.check_abort()?;
        let marker = self.read_marker().await;
        let state = self.read_state().await;
        let marked_here = self.instance.take_marked();
        // The flaw `flaw-ignore-instance-mark`, kept only to prove the tests catch it: this instance's own markDirty
        // does not force its next push onto the full path.
        #[cfg(feature = "flaw-ignore-instance-mark")]
        let marked_here = false;
        let walked = self.instance.take_walk();
        let journal = self.read_journal().await;
        // The flaw `flaw-no-commit-journal`, kept only to prove the simulator catches it: a commit that stopped
        // between its shards and its record is never finished.
        #[cfg(feature = "flaw-no-commit-journal")]
        let journal = Journal::default();
        if !marked_here && journal.is_empty() && state.is_clean_at(marker.id().as_deref()) {
            return Ok(PushReport { fast_path: true, clean: true, ..PushReport::default() });
        }
        // A markDirty through this instance since its last push may have been followed by a write after the pull's
        // walk: walk again.
        let walked = walked.filter(|_| !marked_here);
        let result = self.push_full(&marker, walked, journal).await;
        if marked_here && !matches!(&result, Ok(report) if report.clean) {
            self.instance.set_marked();
        }
        result
    }

    async fn push_full(
        &self,
        captured: &Marker,
        walked: Option<Walked>,
        journal: Journal,
    ) -> Result<PushReport, SyncError> {
        let started = self.env.now_ms();
        let captured_id = captured.id();
        // Without the check (the flaw `flaw-stale-walk-reuse`, kept only to prove the simulator catches it), the walk
        // would be reused even if a markDirty happened since.
        #[cfg(not(feature = "flaw-stale-walk-reuse"))]
        let walked = walked.filter(|w| Some(&w.marker) == captured_id.as_ref());
        // Only a fingerprint of the view is needed to know whether it is still the one the pull left.
        let walked = match walked {
            Some(walked) if walked.view_fingerprint == self.cache.fingerprint_internal(VIEW_NAME).await => Some(walked),
            _ => None,
        };
        let walk_reused = walked.is_some();
        // The view on disk is the one the pull left (same bytes) when its walk is reused: its parse is reused too.
        let (listing, known, view) = match walked {
            Some(Walked { listing, snapshot, view, .. }) => (listing, snapshot, view),
            None => {
                let view = self.read_view().await.view;
                (self.list_local().await?, None, view)
            }
        };
        self.trace("push", if walk_reused { "walk (the pull's)" } else { "walk" }, started);
        self.check_abort()?;
        let snapshot = match (self.index_layer().read(known.as_ref().and_then(Snapshot::commit_token)).await?, known) {
            (Read::Found(snapshot), _) => snapshot,
            (Read::NotModified, Some(known)) => known,
            // Only a conditional read can answer "not modified".
            (Read::NotModified, None) => {
                unreachable!("the index layer answered not-modified to an unconditional read")
            }
        };
        self.trace("push", "index read", started);
        let mut report = PushReport {
            scrubbed: snapshot.index.internal_keys(),
            symlinks: listing.symlinks.clone(),
            vanished: listing.vanished.clone(),
            walk_reused,
            ..PushReport::default()
        };
        let mut failures = listing.invalid.clone();
        let mut updates = ViewUpdates::new();
        // Files equal to their entry in the index we read, in path order (for the "verified" decision).
        let mut in_sync: Vec<&str> = Vec::new();
        let mut to_check = Vec::new();
        let mut entries = Cursor::new(snapshot.index.entries());
        let mut records = Cursor::new(view.iter());
        for (rel, stat) in &listing.files {
            let entry = entries.seek(rel);
            let record = records.seek(rel);
            match push_decision(entry, stat, record) {
                PushDecision::InSync => {
                    let entry = entry.expect("in sync implies an entry");
                    if !record.is_some_and(|record| record.is(stat, record.sha256, entry)) {
                        updates.insert(rel.clone(), Some(ViewEntry::new(*stat, record.and_then(|r| r.sha256), entry)));
                    }
                    in_sync.push(rel);
                }
                PushDecision::RemoteNewer => report.remote_newer.push(rel.clone()),
                decision => to_check.push((rel.clone(), decision, entry.cloned(), record.cloned())),
            }
        }
        drop((entries, records));
        if self.config.dry_run {
            report.planned = to_check.into_iter().map(|(rel, ..)| rel).collect();
            return Ok(report);
        }
        let bytes_planned = to_check.iter().map(|(rel, ..)| listing.stat(rel).map_or(0, |stat| stat.size)).sum();
        self.env.progress(&Progress::Planned { operation: "push", files: to_check.len() as u64, bytes: bytes_planned });
        self.check_abort()?;

        let results = run_bounded(self.config.transfers, to_check, |(rel, decision, entry, record)| async move {
            let outcome = self.push_one(&rel, decision, entry.as_ref(), record.as_ref()).await;
            (rel, entry, outcome)
        })
        .await;
        // What this push adds to the index: the files uploaded, with the entries written.
        let mut changes = Changes::default();
        // Files found equal to their entry after hashing.
        let mut unchanged: BTreeMap<String, IndexEntry> = BTreeMap::new();
        for (rel, entry, outcome) in results {
            match outcome {
                Ok(Pushed::Uploaded { entry: new_entry, stat, sha256, conflict }) => {
                    report.uploaded += 1;
                    self.env.progress(&Progress::Transferred { operation: "push", rel: &rel, bytes: stat.size });
                    if conflict {
                        report.conflicts.push(rel.clone());
                    }
                    updates.insert(rel.clone(), Some(ViewEntry::new(stat, Some(sha256), &new_entry)));
                    changes.upserts.insert(rel, new_entry);
                }
                Ok(Pushed::Unchanged { stat, sha256 }) => {
                    let entry = entry.expect("unchanged implies an entry");
                    updates.insert(rel.clone(), Some(ViewEntry::new(stat, Some(sha256), &entry)));
                    unchanged.insert(rel, entry);
                }
                Ok(Pushed::Vanished) => report.vanished.push(rel),
                Err(StoreError::Aborted) => return Err(SyncError::Aborted),
                Err(error) => failures.push(FileFailure { rel, error }),
            }
        }
        self.trace("push", "uploads", started);

        // Write back whatever was uploaded even if other files failed, so no uploaded object is left out of the index. A
        // commit of this cache that stopped half-way (`local::journal`) is finished by committing the record again.
        let (snapshot, rebased) = if !changes.upserts.is_empty() || !report.scrubbed.is_empty() || !journal.is_empty() {
            let mut committed = self.commit_journaled(snapshot, &changes, &journal).await?;
            report.index_written = true;
            if let Some(copy) = committed.snapshot.take_local_copy() {
                self.cache.write_internal(copy.name, copy.bytes).await.map_err(SyncError::from_store)?;
            }
            (committed.snapshot, committed.rebased)
        } else {
            (snapshot, false)
        };
        self.trace("push", "index write-back", started);
        self.save_view(updates).await?;

        // After a rebase the index holds other writers' entries, which the in-sync files were not compared with: not
        // verified (the next pull takes the full path; cheaper than keeping a copy of every entry compared).
        let known = Known { in_sync: &in_sync, unchanged: &unchanged, pushed: &changes.upserts };
        // The flaw `flaw-verify-rebased`, kept only to prove the tests catch it: a rebased index counts as compared.
        #[cfg(feature = "flaw-verify-rebased")]
        let rebased = false;
        report.verified = failures.is_empty() && !rebased && every_entry_matches(&snapshot.index, &known);
        let verified_token = match snapshot.commit_token() {
            Some(token) if report.verified && token.is_fingerprint() => Some(token.clone()),
            _ => {
                report.verified = false;
                None
            }
        };
        // W3: clean only for the marker captured before the walk, and only if no markDirty replaced it since. (A reused
        // walk was made after the same marker was captured: `Walked`.)
        report.clean = failures.is_empty() && captured_id.is_some() && self.read_marker().await.id() == captured_id;
        // W3's flaw, kept only to prove the tests catch it: clean at whatever marker is current at the end, erasing a
        // markDirty that landed during the push.
        #[cfg(feature = "flaw-clean-at-current-marker")]
        let (captured_id, _) = {
            report.clean = failures.is_empty();
            (self.read_marker().await.id(), &captured_id)
        };
        if verified_token.is_some() || report.clean {
            let (verified_at, clean) = (self.now_iso(), report.clean);
            self.update_state(|state| {
                if let Some(token) = verified_token {
                    state.verified_token = Some(token);
                    state.verified_at = Some(verified_at);
                }
                if clean {
                    state.clean_marker = captured_id;
                }
            })
            .await?;
        }
        self.trace("push", "done", started);
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(SyncError::Files { operation: "push", transferred: report.uploaded, failures })
        }
    }

    /// Commit `changes`, with a note in the journal while a format-2 commit could stop between its shards and its
    /// record. The notes of `seen` (commits found unfinished before this one) are finished by this one.
    async fn commit_journaled(
        &self,
        snapshot: Snapshot,
        changes: &Changes,
        seen: &Journal,
    ) -> Result<Committed, SyncError> {
        let note =
            (snapshot.format() == 2).then(|| format!("{}-{}", self.env.now_ms(), super::random_hex(self.env, 12)));
        #[cfg(feature = "flaw-no-commit-journal")]
        let note: Option<String> = None;
        if let Some(note) = &note {
            self.update_journal(|journal| journal.with(note)).await?;
        }
        let committed = self.index_layer().commit(snapshot, changes).await?;
        let mut done = seen.started.clone();
        done.extend(note);
        if !done.is_empty() {
            self.update_journal(|journal| journal.without(&done)).await?;
        }
        Ok(committed)
    }

    async fn read_journal(&self) -> Journal {
        Journal::parse(self.cache.read_internal(COMMIT_JOURNAL_NAME).await.ok().flatten().as_deref())
    }

    async fn update_journal(&self, change: impl FnOnce(Journal) -> Journal) -> Result<(), SyncError> {
        let journal = change(self.read_journal().await);
        self.cache.write_internal(COMMIT_JOURNAL_NAME, journal.to_json()).await.map_err(SyncError::from_store)
    }

    /// Stat and hash before reading (W12), upload, then stat again: a file that changed meanwhile is retried, so the
    /// entry we record always describes the bytes we sent.
    async fn push_one(
        &self,
        rel: &str,
        decision: PushDecision,
        entry: Option<&IndexEntry>,
        record: Option<&ViewEntry>,
    ) -> Result<Pushed, StoreError> {
        self.retry(|| async {
            if self.env.is_aborted() {
                return Err(StoreError::Aborted);
            }
            let Some(prepared) = self.cache.prepare_upload(rel).await? else { return Ok(Pushed::Vanished) };
            let (stat, sha256) = (prepared.stat, prepared.sha256);
            let conflict = match (decision, entry) {
                (PushDecision::NeedHash, Some(entry)) => match push_after_hash(entry, stat.size, &sha256, record) {
                    PushDecision::Upload { conflict } => conflict,
                    _ => return Ok(Pushed::Unchanged { stat, sha256 }),
                },
                (PushDecision::Upload { conflict }, _) => conflict,
                _ => false,
            };
            let new_entry = IndexEntry::new(stat.size, self.now_iso(), Some(iso_from_ms(stat.mtime_ms)), Some(sha256));
            self.store.put(rel, prepared.body, &Precondition::None).await?;
            if self.cache.stat(rel).await? != Some(stat) {
                return Err(StoreError::Transient { status: None, message: format!("{rel} changed during upload") });
            }
            Ok(Pushed::Uploaded { entry: new_entry, stat, sha256, conflict })
        })
        .await
    }
}

/// What a push knows to equal the local files, by the entry version compared.
struct Known<'a> {
    /// Equal to their entry in the index read (by stat and view), in path order.
    in_sync: &'a [&'a str],
    /// Equal after hashing.
    unchanged: &'a BTreeMap<String, IndexEntry>,
    /// Uploaded, with the entries written.
    pushed: &'a BTreeMap<String, IndexEntry>,
}

/// Every valid entry of `index` is one we know to equal the local file (B6). Invalid entries also block it. One
/// merge pass: all three sets are in path order, as the index is.
fn every_entry_matches(index: &RemoteIndex, known: &Known<'_>) -> bool {
    let mut in_sync = Cursor::new(known.in_sync.iter().map(|rel| (*rel, ())));
    let mut unchanged = Cursor::new(known.unchanged.iter().map(|(rel, entry)| (rel.as_str(), entry)));
    let mut pushed = Cursor::new(known.pushed.iter().map(|(rel, entry)| (rel.as_str(), entry)));
    index.invalid_entries().is_empty()
        && index.entries().all(|(rel, entry)| {
            // Every cursor is moved for every entry, so that later seeks stay in order.
            let was_in_sync = in_sync.seek(rel).is_some();
            let was_unchanged = unchanged.seek(rel) == Some(entry);
            let was_pushed = pushed.seek(rel) == Some(entry);
            was_pushed || was_unchanged || was_in_sync
        })
}
