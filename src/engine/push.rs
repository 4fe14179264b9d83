//! `push_changed`: upload what changed here, delete what was deleted here, and commit it to the remote index.
//!
//! Fast path: no bare markDirty since the last clean push, no mark, no unfinished commit: no request at all (B2; remote
//! changes are the pull's business). With per-path marks only, the push looks at exactly the marked paths (a marked
//! folder: everything in it), never walking the rest of the cache (W23). After a bare markDirty it walks the whole
//! cache (or reuses the walk of this instance's pull when nothing can have changed since: `engine::Walked`).
//!
//! Every path is decided three ways against the base (`plan`): an edit of the base's version is uploaded on condition
//! that the object still is that version, a new file create-only (W19: of two writers of one key, the second gets a
//! conflict, never a mismatched index); a path that moved on both sides is a conflict and neither side is overwritten
//! (W20); a marked absence of an unchanged remote version is deleted, entry then object (W21). The index is committed
//! by compare-and-swap, each change on condition that its entry is still the one decided on (`index::Change`). Only
//! the marks this push listed and handled are removed (W22). "Clean" is recorded only for the marker captured before
//! the walk and only if it is still current at the end (W3); "verified" only if every entry of the index written is
//! known to be here (B6), never after a commit that had to merge another writer's index.

use std::collections::{BTreeMap, BTreeSet};

use super::cursor::Cursor;
use super::listing::{three_way, LocalListing};
use super::plan::{push_after_hash, push_decision, Marked, PushDecision};
use super::pull::Marks;
use super::transfer::run_bounded;
use super::{Engine, FileFailure, SyncError, Walked};
use crate::encoding::time::iso_from_ms;
use crate::index::{Changes, Committed, IndexEntry, Read, RemoteIndex, Snapshot};
use crate::local::conflicts::ConflictKind;
use crate::local::journal::{Journal, COMMIT_JOURNAL_NAME};
use crate::local::marker::Marker;
use crate::local::marks::{covers, Mark, MARKS_FOLDER, MAX_MARKS};
use crate::local::prepared::{PreparedUploads, PREPARED_NAME};
use crate::local::view::{LocalView, ViewEntry, ViewUpdates};
use crate::path::{is_internal, VIEW_NAME};
use crate::sorted::sort_paths;
use crate::store::token::VersionToken;
use crate::store::{Env, FileStat, LocalCache, ObjectStore, Precondition, Progress, StoreError};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Files actually uploaded (B18).
    pub uploaded: u64,
    /// Files deleted from the bucket (their entry, then their object).
    pub deleted: Vec<String>,
    pub fast_path: bool,
    pub index_written: bool,
    /// Internal entries removed from the remote index (B11).
    pub scrubbed: Vec<String>,
    /// Symlinks found in the cache: reported, never followed or uploaded (W8).
    pub symlinks: Vec<String>,
    /// Files that disappeared during the push: skipped explicitly (W7).
    pub vanished: Vec<String>,
    /// Paths changed here and in the bucket since the base (W20): left as they are on both sides.
    pub conflicts: Vec<(String, ConflictKind)>,
    /// Files untouched here that are newer or deleted in the bucket: left for the next pull.
    pub remote_newer: Vec<String>,
    pub verified: bool,
    pub clean: bool,
    /// The walk of this instance's pull was used instead of a new one (see `engine::Walked`).
    pub walk_reused: bool,
    /// Only marked paths were looked at (no walk of the cache).
    pub marked_only: bool,
    /// Marks handled and removed.
    pub marks_cleared: usize,
    /// Dry run only: the files a real push would upload (or hash first) or delete.
    pub planned: Vec<String>,
}

/// What happened to one file that needed a closer look.
enum Pushed {
    Uploaded { entry: IndexEntry, stat: FileStat, sha256: [u8; 32], token: VersionToken },
    Unchanged { stat: FileStat, sha256: [u8; 32] },
    RemoteNewer,
    Conflict(ConflictKind),
    Vanished,
}

/// A file to upload or hash, with what it was decided against.
pub(super) struct ToCheck {
    pub rel: String,
    pub decision: PushDecision,
    pub entry: Option<IndexEntry>,
    pub record: Option<ViewEntry>,
    pub marked: Marked,
    /// The object is this cache's own upload of an earlier prepare that was never committed (`PreparedUploads`).
    pub prepared: Option<VersionToken>,
}

/// What `gather` found.
pub(super) struct Gathered {
    pub marker: Marker,
    pub marks: Vec<Mark>,
    pub marked_here: bool,
    pub walked: Option<Walked>,
    pub journal: Journal,
    pub scope: Scope,
    pub verified_before: Option<VersionToken>,
}

/// A push after planning: what it read and decided.
pub(super) struct Planned {
    pub listing: LocalListing,
    pub snapshot: Snapshot,
    pub read_token: Option<VersionToken>,
    pub report: PushReport,
    pub failures: Vec<FileFailure>,
    pub updates: ViewUpdates,
    pub plan: PushPlan,
}

/// One upload that went up, with the entry it is to become and the entry it replaces.
#[derive(Debug, Clone)]
pub(super) struct Upload {
    pub rel: String,
    pub entry: IndexEntry,
    pub expected: Option<IndexEntry>,
    pub stat: FileStat,
    pub sha256: [u8; 32],
    pub token: VersionToken,
}

/// A push after its transfers, before its index commit.
pub(super) struct Transferred {
    pub snapshot: Snapshot,
    pub read_token: Option<VersionToken>,
    pub report: PushReport,
    pub failures: Vec<FileFailure>,
    pub updates: ViewUpdates,
    pub changes: Changes,
    pub in_sync: Vec<String>,
    pub unchanged: BTreeMap<String, IndexEntry>,
    pub uploads: Vec<Upload>,
    pub deletions: Vec<(String, IndexEntry, ViewEntry)>,
    pub examined: Vec<String>,
}

/// What the end of a push needs besides the transfers.
pub(super) struct Finish<'m> {
    pub captured_id: Option<String>,
    pub journal: Journal,
    pub marks: &'m [Mark],
    pub scope: Scope,
    pub verified_before: Option<VersionToken>,
    /// A prepare removed the deleted files' objects already.
    pub objects_deleted: bool,
    /// The whole index was read (not only the shards of some paths): a bulk push may then vouch for every entry.
    pub whole_index_read: bool,
}

/// What the push looks at, and how it was marked.
pub(super) struct Scope {
    /// Marked paths (durable marks and this instance's): looked at in any mode.
    pub paths: BTreeSet<String>,
    /// A bare markDirty (or too many marks, or nothing known to be clean): the whole cache.
    pub bulk: bool,
    /// A bare markDirty since the last clean push: files gone here may be deletions (`plan::Marked::bulk`).
    pub bare_mark: bool,
}

impl Scope {
    /// Nothing marked and nothing known dirty: the push has nothing to look at.
    pub(super) fn is_empty(&self) -> bool {
        !self.bulk && self.paths.is_empty()
    }
}

impl<S, C, E> Engine<'_, S, C, E>
where
    S: ObjectStore,
    C: LocalCache<Body = S::Body>,
    E: Env,
{
    pub async fn push_changed(&self) -> Result<PushReport, SyncError> {
        self.check_abort()?;
        let gathered = self.gather(true).await?;
        let Gathered { marker, marks, marked_here, walked, journal, scope, verified_before } = gathered;
        if scope.is_empty() && journal.is_empty() {
            return Ok(PushReport { fast_path: true, clean: true, ..PushReport::default() });
        }
        // A markDirty through this instance since its last push may have been followed by a write after the pull's
        // walk: walk again.
        let walked = walked.filter(|_| !marked_here);
        let result = self.push_full(&marker, walked, journal, &marks, scope, verified_before).await;
        if marked_here && !matches!(&result, Ok(report) if report.clean) {
            self.instance.set_marked();
        }
        result
    }

    /// What a push would look at now: the marker, the marks, this instance's own marks (taken when `take`: a preview
    /// leaves them for the push), the commit journal.
    pub(super) async fn gather(&self, take: bool) -> Result<Gathered, SyncError> {
        let marker = self.read_marker().await;
        let state = self.read_state().await;
        let marks = self.read_marks().await?;
        let marked_here = if take { self.instance.take_marked() } else { self.instance.marked_since_push.get() };
        // The flaw `flaw-ignore-instance-mark`, kept only to prove the tests catch it: this instance's own markDirty
        // does not force its next push to look at what it marked.
        #[cfg(feature = "flaw-ignore-instance-mark")]
        let marked_here = false;
        #[cfg(feature = "flaw-ignore-instance-mark")]
        let instance_paths = BTreeSet::new();
        #[cfg(not(feature = "flaw-ignore-instance-mark"))]
        let instance_paths = self.instance.marked_paths();
        let walked = if take { self.instance.take_walk() } else { None };
        let journal = self.read_journal().await;
        // The flaw `flaw-no-commit-journal`, kept only to prove the simulator catches it: a commit that stopped
        // between its shards and its record is never finished.
        #[cfg(feature = "flaw-no-commit-journal")]
        let journal = Journal::default();
        let overflow = marks.len() > MAX_MARKS || marks.iter().any(|mark| mark.path.is_none());
        let bulk = marked_here || overflow || !state.is_clean_at(marker.id().as_deref());
        let bare_mark = marked_here || state.bare_mark_since_clean(&marker);
        // Inserted one by one: `collect` into a set sorts first, with a sort instance of its own in the module.
        let mut paths = BTreeSet::new();
        paths.extend(marks.iter().filter_map(|mark| mark.path.clone()));
        paths.extend(instance_paths);
        let scope = Scope { paths, bulk, bare_mark };
        Ok(Gathered { marker, marks, marked_here, walked, journal, scope, verified_before: state.verified_token })
    }

    async fn push_full(
        &self,
        captured: &Marker,
        walked: Option<Walked>,
        journal: Journal,
        marks: &[Mark],
        scope: Scope,
        verified_before: Option<VersionToken>,
    ) -> Result<PushReport, SyncError> {
        let started = self.env.now_ms();
        let planned = self.plan_phase(&captured.id(), walked, &scope, started).await?;
        if self.config.dry_run {
            let mut report = planned.report;
            report.planned = planned.plan.to_check.iter().map(|check| check.rel.clone()).collect();
            report.planned.extend(planned.plan.deletions.iter().map(|(rel, ..)| rel.clone()));
            sort_paths(&mut report.planned);
            return Ok(report);
        }
        let transferred = self.upload_phase(planned, started).await?;
        let finish = Finish {
            captured_id: captured.id(),
            journal,
            marks,
            scope,
            verified_before,
            objects_deleted: false,
            whole_index_read: true,
        };
        self.finish_push(transferred, finish, started).await
    }

    /// Read what the push looks at (the cache or the marked paths, the view, the index) and decide path by path.
    pub(super) async fn plan_phase(
        &self,
        captured_id: &Option<String>,
        walked: Option<Walked>,
        scope: &Scope,
        started: i64,
    ) -> Result<Planned, SyncError> {
        let (listing, known, view, walk_reused) = self.push_inputs(captured_id, walked, scope).await?;
        self.trace("push", if walk_reused { "walk (the pull's)" } else { "walk" }, started);
        self.check_abort()?;
        let snapshot = if !scope.bulk && known.is_none() {
            // Marked paths only: the index around them is enough (on format 2, their shards; W22's cost).
            self.index_layer().read_for(&paths_in_scope(scope, &listing, &view)).await?
        } else {
            match (self.index_layer().read(known.as_ref().and_then(Snapshot::commit_token)).await?, known) {
                (Read::Found(snapshot), _) => snapshot,
                (Read::NotModified, Some(known)) => known,
                // Only a conditional read can answer "not modified".
                (Read::NotModified, None) => {
                    unreachable!("the index layer answered not-modified to an unconditional read")
                }
            }
        };
        let read_token = snapshot.commit_token().cloned();
        self.trace("push", "index read", started);
        let mut report = PushReport {
            scrubbed: snapshot.index.internal_keys(),
            symlinks: listing.symlinks.clone(),
            vanished: listing.vanished.clone(),
            walk_reused,
            marked_only: !scope.bulk,
            ..PushReport::default()
        };
        let failures = listing.invalid.clone();
        let mut updates = ViewUpdates::new();
        let prepared = self.read_prepared().await;
        let marks_of = Marks { paths: &scope.paths, bulk: scope.bare_mark };
        let plan =
            self.plan_push(&snapshot.index, &listing, &view, scope, marks_of, &prepared, &mut report, &mut updates)?;
        Ok(Planned { listing, snapshot, read_token, report, failures, updates, plan })
    }

    /// Upload (or hash) every file the plan names, each on condition that the object is the version decided on.
    pub(super) async fn upload_phase(&self, planned: Planned, started: i64) -> Result<Transferred, SyncError> {
        let Planned { listing, snapshot, read_token, mut report, mut failures, mut updates, plan } = planned;
        let bytes_planned =
            plan.to_check.iter().map(|check| listing.stat(&check.rel).map_or(0, |stat| stat.size)).sum();
        self.env.progress(&Progress::Planned {
            operation: "push",
            files: plan.to_check.len() as u64,
            bytes: bytes_planned,
        });
        self.check_abort()?;

        let results = run_bounded(self.config.transfers, plan.to_check, |check| async move {
            let outcome = self.push_one(&check).await;
            (check, outcome)
        })
        .await;
        // What this push adds to the index, each on condition that the entry is still the one decided on.
        let mut changes = Changes::default();
        let mut in_sync = plan.in_sync;
        let mut unchanged: BTreeMap<String, IndexEntry> = BTreeMap::new();
        let mut uploads = Vec::new();
        for (check, outcome) in results {
            let rel = check.rel;
            match outcome {
                Ok(Pushed::Uploaded { entry: new_entry, stat, sha256, token }) => {
                    report.uploaded += 1;
                    self.env.progress(&Progress::Transferred { operation: "push", rel: &rel, bytes: stat.size });
                    let record = ViewEntry::new(stat, Some(sha256), &new_entry).with_token(Some(token.clone()));
                    updates.insert(rel.clone(), Some(record));
                    changes.put(rel.clone(), new_entry.clone(), check.entry.clone());
                    uploads.push(Upload { rel, entry: new_entry, expected: check.entry, stat, sha256, token });
                }
                Ok(Pushed::Unchanged { stat, sha256 }) => match check.entry {
                    Some(entry) => {
                        let token = check.record.filter(|r| r.matches_entry(&entry)).and_then(|r| r.token);
                        updates.insert(rel.clone(), Some(ViewEntry::new(stat, Some(sha256), &entry).with_token(token)));
                        unchanged.insert(rel, entry);
                    }
                    None => in_sync.push(rel),
                },
                Ok(Pushed::RemoteNewer) => report.remote_newer.push(rel),
                Ok(Pushed::Conflict(kind)) => report.conflicts.push((rel, kind)),
                Ok(Pushed::Vanished) => report.vanished.push(rel),
                Err(StoreError::Aborted) => return Err(SyncError::Aborted),
                Err(error) => failures.push(FileFailure { rel, error }),
            }
        }
        for (rel, entry, _) in &plan.deletions {
            changes.remove(rel.clone(), entry.clone());
        }
        self.trace("push", "uploads", started);
        Ok(Transferred {
            snapshot,
            read_token,
            report,
            failures,
            updates,
            changes,
            in_sync,
            unchanged,
            uploads,
            deletions: plan.deletions,
            examined: plan.examined,
        })
    }

    /// Commit what was transferred, delete the objects of deleted files (unless a prepare did), save the view, clear
    /// the marks handled and record clean / verified as far as they are known.
    pub(super) async fn finish_push(
        &self,
        transferred: Transferred,
        finish: Finish<'_>,
        started: i64,
    ) -> Result<PushReport, SyncError> {
        let Transferred {
            snapshot,
            read_token,
            mut report,
            failures,
            mut updates,
            changes,
            mut in_sync,
            unchanged,
            uploads,
            deletions,
            examined,
        } = transferred;
        let Finish { captured_id, journal, marks, scope, verified_before, objects_deleted, whole_index_read } = finish;
        let mut pushed: BTreeMap<String, IndexEntry> =
            uploads.iter().map(|upload| (upload.rel.clone(), upload.entry.clone())).collect();
        let upload_tokens: BTreeMap<String, VersionToken> =
            uploads.iter().map(|upload| (upload.rel.clone(), upload.token.clone())).collect();

        // Commit whatever was uploaded even if other files failed, so no uploaded object is left out of the index. A
        // commit of this cache that stopped half-way (`local::journal`) is finished by committing the record again.
        let mut refused = BTreeSet::new();
        let (snapshot, rebased) = if !changes.is_empty() || !report.scrubbed.is_empty() || !journal.is_empty() {
            let mut committed = self.commit_journaled(snapshot, &changes, &journal).await?;
            report.index_written = true;
            if let Some(copy) = committed.snapshot.take_local_copy() {
                self.cache.write_internal(copy.name, copy.bytes).await.map_err(SyncError::from_store)?;
            }
            refused.extend(committed.refused.iter().cloned());
            (committed.snapshot, committed.rebased)
        } else {
            (snapshot, false)
        };
        for rel in &refused {
            // Our object went up but another writer changed the entry first: theirs stays, and so does our file.
            let kind = match (pushed.remove(rel), snapshot.index.get(rel)) {
                (Some(_), Some(_)) => ConflictKind::BothChanged,
                // They deleted it (their object delete, conditional on their version, then failed on ours): our
                // object is referenced by no entry and would block a create-only upload of the path; it goes.
                #[cfg(not(feature = "flaw-keep-orphan-object"))]
                (Some(_), None) => {
                    if let Some(token) = upload_tokens.get(rel) {
                        let _ = self.retry(|| self.store.delete(rel, Some(token))).await;
                    }
                    ConflictKind::DeletedThere
                }
                // The flaw `flaw-keep-orphan-object`, kept only to prove the tests catch it: the object stays.
                #[cfg(feature = "flaw-keep-orphan-object")]
                (Some(_), None) => ConflictKind::BothChanged,
                (None, _) => ConflictKind::DeletedHere,
            };
            // The base stays the version this cache last synced: the path keeps reading as a conflict (a base
            // dropped here would make the edit read as a new file, which the next push would upload: a zombie).
            updates.discard(rel);
            report.conflicts.push((rel.clone(), kind));
        }
        for (rel, _, record) in deletions.into_iter().filter(|(rel, ..)| !refused.contains(rel)) {
            if !objects_deleted {
                self.delete_object(&rel, &record).await;
            }
            updates.insert(rel.clone(), None);
            report.deleted.push(rel);
        }
        self.trace("push", "index commit and deletions", started);
        self.save_view(updates).await?;
        // Uploads of an earlier prepare that this commit settled (in the index now, or in conflict) are ours no more.
        self.forget_prepared(uploads.iter().map(|upload| upload.rel.as_str())).await?;
        report.conflicts.sort_unstable();
        self.report_conflicts(&report.conflicts, examined.iter().cloned()).await?;
        report.marks_cleared = self.clear_marks(marks, &scope, &report, &failures).await?;

        // After a rebase the index holds other writers' entries, which the in-sync files were not compared with: not
        // verified (the next pull takes the full path; cheaper than keeping a copy of every entry compared).
        // The flaw `flaw-verify-rebased`, kept only to prove the tests catch it: a rebased index counts as compared.
        #[cfg(feature = "flaw-verify-rebased")]
        let rebased = false;
        // A file the bucket changed or deleted is still the pull's to take: the cache is not yet what the index says.
        let settled = failures.is_empty()
            && report.conflicts.is_empty()
            && report.vanished.is_empty()
            && report.remote_newer.is_empty()
            && !rebased;
        report.verified = settled
            && if scope.bulk {
                sort_paths(&mut in_sync);
                let in_sync: Vec<&str> = in_sync.iter().map(String::as_str).collect();
                let known = Known { in_sync: &in_sync, unchanged: &unchanged, pushed: &pushed };
                whole_index_read && every_entry_matches(&snapshot.index, &known)
            } else {
                // Only marked paths were looked at: the rest is as verified before, if that was the index read.
                verified_before.is_some() && verified_before == read_token
            };
        let verified_token = match snapshot.commit_token() {
            Some(token) if report.verified && token.is_fingerprint() => Some(token.clone()),
            _ => {
                report.verified = false;
                None
            }
        };
        // W3: clean only for the marker captured before the walk, and only if no markDirty replaced it since. (A reused
        // walk was made after the same marker was captured: `Walked`.) Conflicts keep the cache dirty.
        report.clean = failures.is_empty()
            && report.conflicts.is_empty()
            && captured_id.is_some()
            && self.read_marker().await.id() == captured_id;
        // W3's flaw, kept only to prove the tests catch it: clean at whatever marker is current at the end, erasing a
        // markDirty that landed during the push.
        #[cfg(feature = "flaw-clean-at-current-marker")]
        let (captured_id, _) = {
            report.clean = failures.is_empty();
            (self.read_marker().await.id(), &captured_id)
        };
        if verified_token.is_some() || (report.clean && scope.bulk) {
            let (verified_at, clean) = (self.now_iso(), report.clean && scope.bulk);
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
        if !failures.is_empty() {
            Err(SyncError::Files { operation: "push", transferred: report.uploaded, failures })
        } else if !report.conflicts.is_empty() {
            Err(SyncError::Conflicts { transferred: report.uploaded, conflicts: report.conflicts })
        } else {
            Ok(report)
        }
    }

    /// The listing, the index the pull compared (if its walk is reused) and the view: in bulk mode the whole cache (or
    /// the pull's walk, with the marked paths looked at again); otherwise only the marked paths.
    async fn push_inputs(
        &self,
        captured_id: &Option<String>,
        walked: Option<Walked>,
        scope: &Scope,
    ) -> Result<(LocalListing, Option<Snapshot>, LocalView, bool), SyncError> {
        if !scope.bulk {
            // The view before the listing, as below.
            let view = self.read_view().await.view;
            return Ok((self.list_under(&scope.paths).await?, None, view, false));
        }
        // Without the check (the flaw `flaw-stale-walk-reuse`, kept only to prove the simulator catches it), the walk
        // would be reused even if a markDirty happened since.
        #[cfg(not(feature = "flaw-stale-walk-reuse"))]
        let walked = walked.filter(|w| Some(&w.marker) == captured_id.as_ref());
        #[cfg(feature = "flaw-stale-walk-reuse")]
        let _ = captured_id;
        // Only a fingerprint of the view is needed to know whether it is still the one the pull left.
        let walked = match walked {
            Some(walked) if walked.view_fingerprint == self.cache.fingerprint_internal(VIEW_NAME).await => Some(walked),
            _ => None,
        };
        match walked {
            // The view on disk is the one the pull left (same bytes) when its walk is reused: its parse is reused too.
            Some(Walked { listing: Some(mut listing), snapshot, view, .. }) => {
                if !scope.paths.is_empty() {
                    listing.refresh(&scope.paths, self.list_under(&scope.paths).await?);
                }
                Ok((listing, snapshot, view, true))
            }
            // The pull stat'ed only the paths it decided on: a walk finds the files only here.
            Some(Walked { listing: None, snapshot, view, .. }) => Ok((self.list_local().await?, snapshot, view, false)),
            // The view before the walk: a concurrent pull's download recorded in the view after our walk would make
            // the file read as deleted here (found by the simulator: `bare_marks_around_a_sync`).
            None => {
                let view = self.read_view().await.view;
                Ok((self.list_local().await?, None, view, false))
            }
        }
    }

    /// Decide per path in scope; refuse a mass deletion before anything is written (W23).
    #[allow(clippy::too_many_arguments)]
    fn plan_push(
        &self,
        index: &RemoteIndex,
        listing: &LocalListing,
        view: &LocalView,
        scope: &Scope,
        marks: Marks<'_>,
        prepared: &PreparedUploads,
        report: &mut PushReport,
        updates: &mut ViewUpdates,
    ) -> Result<PushPlan, SyncError> {
        let mut plan = PushPlan::default();
        let mut inferred = Vec::new();
        for (rel, entry, local, record) in three_way(index, listing, view) {
            let marked = marks.of(rel);
            if is_internal(rel) || !(scope.bulk || marked.path) {
                continue;
            }
            plan.examined.push(rel.to_string());
            let decision = push_decision(entry, local, record, marked);
            // The flaw `flaw-delete-without-base-check`, kept only to prove the simulator catches it: a marked absence
            // deletes whatever version the bucket has now.
            #[cfg(feature = "flaw-delete-without-base-check")]
            let decision = match decision {
                PushDecision::Conflict(ConflictKind::DeletedHere) => PushDecision::Delete,
                other => other,
            };
            match decision {
                PushDecision::InSync => {
                    let (Some(entry), Some(stat)) = (entry, local) else { continue };
                    if !record.is_some_and(|record| record.is(stat, record.sha256, entry)) {
                        let token = record.filter(|r| r.matches_entry(entry)).and_then(|r| r.token.clone());
                        let synced = ViewEntry::new(*stat, record.and_then(|r| r.sha256), entry).with_token(token);
                        updates.insert(rel.to_string(), Some(synced));
                    }
                    plan.in_sync.push(rel.to_string());
                }
                PushDecision::RemoteNewer => report.remote_newer.push(rel.to_string()),
                PushDecision::Conflict(kind) => report.conflicts.push((rel.to_string(), kind)),
                PushDecision::Delete => {
                    let (Some(entry), Some(record)) = (entry, record) else { continue };
                    if !marked.path {
                        inferred.push(rel.to_string());
                    }
                    plan.deletions.push((rel.to_string(), entry.clone(), prepared.as_base(rel, record)));
                }
                PushDecision::ForgetBase => updates.insert(rel.to_string(), None),
                PushDecision::Nothing => {}
                decision @ (PushDecision::Upload { .. } | PushDecision::NeedHash) => plan.to_check.push(ToCheck {
                    rel: rel.to_string(),
                    decision,
                    entry: entry.cloned(),
                    record: record.cloned(),
                    marked,
                    prepared: prepared.token(rel),
                }),
            }
        }
        if inferred.len() > self.config.max_inferred_deletions {
            let first = inferred.iter().take(5).cloned().collect();
            return Err(SyncError::MassDeletion {
                count: inferred.len(),
                limit: self.config.max_inferred_deletions,
                first,
            });
        }
        Ok(plan)
    }

    /// Remove the marks this push listed whose paths it handled: a mark made during the push, or one whose path failed
    /// or is in conflict, stays for the next push (W22).
    async fn clear_marks(
        &self,
        marks: &[Mark],
        scope: &Scope,
        report: &PushReport,
        failures: &[FileFailure],
    ) -> Result<usize, SyncError> {
        let unsettled: Vec<&str> = failures
            .iter()
            .map(|failure| failure.rel.as_str())
            .chain(report.conflicts.iter().map(|(rel, _)| rel.as_str()))
            .chain(report.vanished.iter().map(String::as_str))
            .collect();
        let handled = |path: &str| !unsettled.iter().any(|rel| covers(path, rel));
        let mut handled_paths = BTreeSet::new();
        handled_paths.extend(scope.paths.iter().filter(|path| handled(path)).cloned());
        self.instance.handled_paths(&handled_paths);
        let mut cleared = 0;
        for mark in marks {
            let done = match &mark.path {
                Some(path) => handled_paths.contains(path),
                // Not ours to read: it made this push walk everything, which handled it unless something failed.
                None => scope.bulk && unsettled.is_empty(),
            };
            if done {
                self.cache
                    .remove_internal(&format!("{MARKS_FOLDER}/{}", mark.name))
                    .await
                    .map_err(SyncError::from_store)?;
                cleared += 1;
            }
        }
        // W22's flaw, kept only to prove the simulator catches it: every mark goes, those made during the push too.
        #[cfg(feature = "flaw-clear-all-marks")]
        for name in self.cache.list_internal(MARKS_FOLDER).await.map_err(SyncError::from_store)? {
            self.cache.remove_internal(&format!("{MARKS_FOLDER}/{name}")).await.map_err(SyncError::from_store)?;
        }
        Ok(cleared)
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

    pub(super) async fn read_prepared(&self) -> PreparedUploads {
        PreparedUploads::parse(self.cache.read_internal(PREPARED_NAME).await.ok().flatten().as_deref())
    }

    /// Record uploads a prepare made (`local::prepared`).
    pub(super) async fn note_prepared(&self, uploads: &[Upload]) -> Result<(), SyncError> {
        if uploads.is_empty() {
            return Ok(());
        }
        let mut prepared = self.read_prepared().await;
        for upload in uploads {
            prepared.insert(upload.rel.clone(), &upload.token);
        }
        self.cache.write_internal(PREPARED_NAME, prepared.to_json()).await.map_err(SyncError::from_store)
    }

    /// These paths' prepared uploads are settled (committed, or in conflict with what is committed).
    async fn forget_prepared<'r>(&self, rels: impl IntoIterator<Item = &'r str>) -> Result<(), SyncError> {
        let mut prepared = self.read_prepared().await;
        if prepared.is_empty() || !prepared.forget(rels) {
            return Ok(());
        }
        self.cache.write_internal(PREPARED_NAME, prepared.to_json()).await.map_err(SyncError::from_store)
    }

    pub(super) async fn read_journal(&self) -> Journal {
        Journal::parse(self.cache.read_internal(COMMIT_JOURNAL_NAME).await.ok().flatten().as_deref())
    }

    async fn update_journal(&self, change: impl FnOnce(Journal) -> Journal) -> Result<(), SyncError> {
        let journal = change(self.read_journal().await);
        self.cache.write_internal(COMMIT_JOURNAL_NAME, journal.to_json()).await.map_err(SyncError::from_store)
    }

    /// The object version an edit of `record` may replace (W19): the token recorded when this cache last had it, or,
    /// for a base recorded without one, the current version if its size is the base's (a cheap check that another
    /// writer's upload of a different size is not replaced; same-size uploads of an unknown base remain a risk).
    async fn base_version(&self, rel: &str, record: &ViewEntry) -> Result<Option<VersionToken>, StoreError> {
        if let Some(token) = &record.token {
            return Ok(Some(token.clone()));
        }
        match self.retry(|| self.store.head(rel)).await {
            Ok(meta) if meta.size == record.stat.size => Ok(Some(meta.token)),
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Delete the object of a removed entry, on condition that it still is the version this cache last had: another
    /// writer's newer object (and its coming entry) is never removed. A failure leaves an object no entry names.
    pub(super) async fn delete_object(&self, rel: &str, record: &ViewEntry) {
        let Ok(Some(token)) = self.base_version(rel, record).await else { return };
        let _ = self.retry(|| self.store.delete(rel, Some(&token))).await;
    }

    /// Stat and hash before reading (W12), upload on condition that the object is the version decided on, then stat
    /// again: a file that changed meanwhile is retried, so the entry we record always describes the bytes we sent.
    async fn push_one(&self, check: &ToCheck) -> Result<Pushed, StoreError> {
        let rel = check.rel.as_str();
        // An attempt whose upload landed but whose file changed meanwhile: the next attempt replaces that upload.
        let ours = std::cell::RefCell::new(None::<VersionToken>);
        self.retry(|| async {
            if self.env.is_aborted() {
                return Err(StoreError::Aborted);
            }
            let Some(prepared) = self.cache.prepare_upload(rel).await? else { return Ok(Pushed::Vanished) };
            let (stat, sha256) = (prepared.stat, prepared.sha256);
            let decision = match check.decision {
                // Our earlier attempt replaced the object: whatever the file is now, it goes up over that attempt.
                _ if ours.borrow().is_some() => PushDecision::Upload { replaces: true },
                PushDecision::NeedHash => {
                    push_after_hash(check.entry.as_ref(), stat.size, &sha256, check.record.as_ref(), check.marked)
                }
                decision => decision,
            };
            let replaces = match decision {
                PushDecision::Upload { replaces } => replaces,
                PushDecision::InSync => return Ok(Pushed::Unchanged { stat, sha256 }),
                PushDecision::Conflict(kind) => return Ok(Pushed::Conflict(kind)),
                _ => return Ok(Pushed::RemoteNewer),
            };
            let earlier = ours.borrow().clone().or_else(|| check.prepared.clone());
            let precondition = match (earlier, &check.record, replaces) {
                (Some(ours), ..) => Precondition::IfMatch(ours),
                (None, Some(record), true) => match self.base_version(rel, record).await? {
                    Some(token) => Precondition::IfMatch(token),
                    None => return Ok(Pushed::Conflict(ConflictKind::ObjectMoved)),
                },
                _ => Precondition::IfAbsent,
            };
            // W19's flaw, kept only to prove the simulator catches it: replace whatever object is there.
            #[cfg(feature = "flaw-blind-object-put")]
            let precondition = Precondition::None;
            let entry = IndexEntry::new(stat.size, self.now_iso(), Some(iso_from_ms(stat.mtime_ms)), Some(sha256));
            let token = match self.store.put(rel, prepared.body, &precondition).await {
                Ok(token) => token,
                // Another writer's object is there (uploaded, maybe not yet in the index): a conflict, never replaced.
                Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) => {
                    return Ok(Pushed::Conflict(ConflictKind::ObjectMoved))
                }
                Err(other) => return Err(other),
            };
            if self.cache.stat(rel).await? != Some(stat) {
                ours.replace(Some(token));
                return Err(StoreError::Transient { status: None, message: format!("{rel} changed during upload") });
            }
            Ok(Pushed::Uploaded { entry, stat, sha256, token })
        })
        .await
    }
}

/// What a push decided, path by path, before any transfer.
#[derive(Default)]
pub(super) struct PushPlan {
    pub to_check: Vec<ToCheck>,
    /// Files equal to their entry in the index read (by stat and view), in path order.
    pub in_sync: Vec<String>,
    /// Marked absences to delete: the entry decided on and the base.
    pub deletions: Vec<(String, IndexEntry, ViewEntry)>,
    /// Every path looked at, in path order (for the conflicts report).
    pub examined: Vec<String>,
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

/// Every path a push of marked paths may decide: the marks themselves, the files found under them, and the base
/// records under them (a file deleted here).
fn paths_in_scope(scope: &Scope, listing: &LocalListing, view: &LocalView) -> BTreeSet<String> {
    let marks = Marks { paths: &scope.paths, bulk: false };
    scope
        .paths
        .iter()
        .cloned()
        .chain(listing.files.iter().map(|(rel, _)| rel.clone()))
        .chain(view.iter().filter(|(rel, _)| marks.of(rel).path).map(|(rel, _)| rel.to_string()))
        .collect()
}
