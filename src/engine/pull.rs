//! `pull_changed`: bring the cache up to the remote index.
//!
//! Fast path: one conditional GET of the commit object with the verified token; "not modified" means nothing to do
//! (B1). Otherwise the index is always fetched from the store (B4) and every path known to the index, the cache or the
//! base (the local view) is decided three ways (`plan`): missing or outdated files are downloaded (to a temp name,
//! verified, renamed: W16), files the bucket deleted are removed here when unchanged since the base (W21), and a path
//! changed on both sides is a conflict that neither side overwrites (W20). The token recorded as verified is the token
//! of *this* read, and only when every entry of *these* entries is present locally with matching size and hash (B5,
//! B6). Recording the token of a later HEAD instead (the official extensions' seed bug) would hide a writer's push
//! landing between our GET and that HEAD from every later fast path. A pull never touches the clean marker or the marks
//! (W2): "remote verified" and "nothing unpushed here" are separate facts. A complete pull leaves its walk and index to
//! the same instance's next push, which uses them only if nothing can have changed the cache since (`engine::Walked`).

use std::collections::BTreeSet;

use futures_util::future::{join, try_join};

use super::listing::{three_way, LocalListing, ReadView};
use super::plan::{pull_after_hash, pull_decision, Marked, PullDecision};
use super::transfer::run_bounded;
use super::{Engine, FileFailure, SyncError, Walked};
use crate::index::shard::{home_shard, model_shards};
use crate::index::{IndexEntry, Read, RemoteIndex, Snapshot};
use crate::local::conflicts::ConflictKind;
use crate::local::marker::Marker;
use crate::local::sidecar::SyncState;
use crate::local::view::{LocalView, ViewEntry, ViewUpdates};
use crate::path::{check_rel, is_internal};
use crate::store::token::VersionToken;
use crate::store::{Env, Expected, Fetched, FileStat, LocalCache, ObjectStore, Progress, Replaces, StoreError};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    /// Files actually downloaded (B18).
    pub downloaded: u64,
    /// Local copies of files the bucket deleted, removed here (not counted as downloads).
    pub removed: Vec<String>,
    /// The index was unchanged since the last verified sync: nothing else was read.
    pub fast_path: bool,
    /// The token of the index we read was recorded as verified.
    pub verified: bool,
    /// Files edited here and not yet pushed: left in place for the next push.
    pub kept_local: Vec<String>,
    /// Files deleted here (marked) and not yet pushed: left absent for the next push.
    pub pending_deletions: Vec<String>,
    /// Paths changed here and in the bucket since the base (W20): left as they are on both sides.
    pub conflicts: Vec<(String, ConflictKind)>,
    /// Files whose object did not match its entry when downloaded (a writer's commit in flight): left as they are
    /// here, taken by a later pull.
    pub in_flux: Vec<String>,
    pub index_entries: usize,
    /// Dry run only: the files a real pull would download.
    pub planned: Vec<String>,
    /// Metadata-only pull: content files not downloaded (their folders were created).
    pub skipped: Vec<String>,
}

/// What a pull covers (swamp's sync options); the default is everything.
///
/// The verified-token rule for a narrowed pull: a token is recorded only when what was compared is the whole index
/// and every entry of it is here. A pull restricted to some directories or models compared part of it, and a
/// metadata-only pull that skipped a content file left an entry missing, so neither records one: the next full pull
/// takes the slow path and downloads what was left out. A skipped file gets no view record, so it is never "lost
/// here" nor a deletion to push (absent without a base is nothing to a push), and a later full pull downloads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullOptions {
    /// Lazy hydration: content files (`data/**/raw`, see [`is_content`]) are not downloaded, but their folders are
    /// created; `hydrate_file` brings one in later.
    pub metadata_only: bool,
    /// Only paths under these top-level folders (swamp's `subdirs`); `None`: every path.
    pub subdirs: Option<BTreeSet<String>>,
    /// Only these models' paths, read from their shards alone on format 2 (swamp's `context.models`), as (type, id).
    pub models: Vec<(String, String)>,
}

/// A content file in swamp's layout: first segment `data`, last segment `raw`. Lazy hydration leaves these out.
pub fn is_content(rel: &str) -> bool {
    rel.starts_with("data/") && rel.ends_with("/raw")
}

/// The paths a pull decides on.
#[derive(Debug, Default)]
struct Scope {
    subdirs: Option<BTreeSet<String>>,
    /// Format 2, read shard by shard: only paths whose home shard is one of these.
    shards: Option<BTreeSet<String>>,
}

impl Scope {
    fn contains(&self, rel: &str) -> bool {
        let top = rel.split('/').next().unwrap_or(rel);
        self.subdirs.as_ref().is_none_or(|subdirs| subdirs.contains(top))
            && self.shards.as_ref().is_none_or(|shards| shards.contains(home_shard(rel).as_ref()))
    }

    fn is_whole(&self) -> bool {
        self.subdirs.is_none() && self.shards.is_none()
    }
}

/// What a pull decided, path by path, before any transfer.
#[derive(Default)]
struct PullPlan {
    /// Each with the local file it may replace, as the plan saw it.
    downloads: Vec<(String, IndexEntry, Replaces)>,
    removals: Vec<(String, FileStat)>,
    /// Lazy hydration: content files left out of `downloads`.
    skip_content: bool,
    skipped: Vec<String>,
}

impl<S, C, E> Engine<'_, S, C, E>
where
    S: ObjectStore,
    C: LocalCache<Body = S::Body>,
    E: Env,
{
    pub async fn pull_changed(&self) -> Result<PullReport, SyncError> {
        self.pull_with(&PullOptions::default()).await
    }

    /// `pull_changed` narrowed by `options` (see [`PullOptions`] for what a narrowed pull may record).
    pub async fn pull_with(&self, options: &PullOptions) -> Result<PullReport, SyncError> {
        self.check_abort()?;
        let subdirs = match &options.subdirs {
            Some(subdirs) => Some(check_subdirs(subdirs)?),
            None => None,
        };
        self.instance.take_walk();
        let started = self.env.now_ms();
        let state = self.read_state().await;
        // A restoring pull looks at every path: the fast path would only say the bucket did not change.
        let verified =
            state.verified_token.clone().filter(VersionToken::is_fingerprint).filter(|_| !self.config.restore_deleted);
        // The walk and the view read run alongside the index read (its I/O, and the write of the local copy, overlap
        // the walk), except when a verified token may make the whole pull one "not modified" answer.
        let mut shards = None;
        let (snapshot, marker, (listing, view_read)) = if verified.is_some() {
            let Read::Found(mut snapshot) = self.read_index(verified.as_ref(), options, &mut shards).await? else {
                self.trace("pull", "fast path (index not modified)", started);
                return Ok(PullReport { fast_path: true, verified: true, ..PullReport::default() });
            };
            self.check_abort()?;
            // Captured before the walk: the push that may reuse this walk checks that it is still current.
            let marker = self.read_marker().await;
            let walk = self.walks_for_push(&state, &marker);
            let local = self.read_local(walk, subdirs.as_ref());
            let (_, local) = try_join(self.keep_index_copy(&mut snapshot), local).await?;
            (snapshot, marker, local)
        } else {
            let marker = self.read_marker().await;
            let walk = self.walks_for_push(&state, &marker);
            let index = async {
                let mut snapshot = match self.read_index(None, options, &mut shards).await? {
                    Read::Found(snapshot) => snapshot,
                    Read::NotModified => Snapshot::empty(),
                };
                self.keep_index_copy(&mut snapshot).await?;
                Ok(snapshot)
            };
            let (snapshot, local) = if walk {
                try_join(index, self.read_local(true, subdirs.as_ref())).await?
            } else {
                // The view first, alone: its paths are then stat'ed while the index is read. Read alongside the index,
                // it finished last and held the stats back (about a second at 250k files on file://).
                let view = self.read_view().await;
                try_join(index, self.stat_recorded(view, subdirs.as_ref())).await?
            };
            (snapshot, marker, local)
        };
        let walked = listing.walked;
        let scope = Scope { subdirs, shards };
        self.trace("pull", if walked { "index read, walk and view read" } else { "index read, view read" }, started);
        self.check_abort()?;
        let token = snapshot.commit_token().cloned();
        let index = &snapshot.index;
        let mut listing = listing.listing;
        if !walked {
            // The view's paths were looked at during the index read; the index's other paths now.
            let unrecorded = not_in_view(index, &view_read.view, &scope);
            listing.add(self.stat_paths(&unrecorded).await?);
            self.trace("pull", "stat of the index's paths", started);
        }
        // What was marked here since the last clean push: a deletion waiting for the push is left alone.
        // Inserted one by one: `collect` into a set sorts first, with a sort instance of its own in the module.
        let mut marked_paths = BTreeSet::new();
        marked_paths.extend(self.read_marks().await?.into_iter().filter_map(|mark| mark.path));
        marked_paths.extend(self.instance.marked_paths());
        let bulk = self.instance.marked_since_push.get() || state.bare_mark_since_clean(&marker);

        let mut report = PullReport { index_entries: index.len(), ..PullReport::default() };
        // A bad entry outside a narrowed pull's scope is not this pull's to report (a whole pull still does).
        let mut failures: Vec<FileFailure> = index
            .invalid_entries()
            .iter()
            .filter(|bad| scope.contains(&bad.key))
            .map(|bad| FileFailure {
                rel: bad.key.clone(),
                error: StoreError::InvalidKey { key: bad.key.clone(), reason: bad.reason.clone() },
            })
            .collect();
        let mut updates = ViewUpdates::new();
        let marks = Marks { paths: &marked_paths, bulk: bulk && !self.config.restore_deleted };
        let mut plan = PullPlan { skip_content: options.metadata_only, ..PullPlan::default() };
        self.plan_pull(
            index,
            &listing,
            &view_read.view,
            &scope,
            marks,
            &mut plan,
            &mut report,
            &mut failures,
            &mut updates,
        )
        .await?;
        self.trace("pull", "plan", started);
        if self.config.dry_run {
            report.planned = plan.downloads.into_iter().map(|(rel, ..)| rel).collect();
            return Ok(report);
        }
        let bytes_planned = plan.downloads.iter().map(|(_, entry, _)| entry.size).sum();
        self.env.progress(&Progress::Planned {
            operation: "pull",
            files: plan.downloads.len() as u64,
            bytes: bytes_planned,
        });
        self.check_abort()?;

        let results = run_bounded(self.config.transfers, plan.downloads, |(rel, entry, replaces)| async move {
            let outcome = self.download_one(&rel, &entry, replaces).await;
            (rel, entry, outcome)
        })
        .await;
        let mut aborted = false;
        let mut downloaded = Vec::new();
        for (rel, entry, outcome) in results {
            match outcome {
                Ok((stat, sha256, token)) => {
                    report.downloaded += 1;
                    self.env.progress(&Progress::Transferred { operation: "pull", rel: &rel, bytes: stat.size });
                    updates
                        .insert(rel.clone(), Some(ViewEntry::new(stat, Some(sha256), &entry).with_token(Some(token))));
                    downloaded.push((rel, stat));
                }
                Err(StoreError::Aborted) => aborted = true,
                // The object is not the entry's bytes, or is gone: another writer's commit is in flight (its object is
                // up and its entry not yet, or its entry is removed and its object going). Left as it is here, not
                // verified; the next pull takes what the index then says.
                Err(StoreError::Mismatch { .. } | StoreError::NotFound { .. }) => report.in_flux.push(rel),
                // A local write landed since the plan: it stays, for the push (which marked it) to decide.
                Err(StoreError::LocalChanged { .. }) => report.kept_local.push(rel),
                Err(error) => failures.push(FileFailure { rel, error }),
            }
        }
        listing.record(downloaded);
        for (rel, stat) in plan.removals {
            match self.cache.remove(&rel, stat).await {
                Ok(()) => {
                    updates.insert(rel.clone(), None);
                    report.removed.push(rel);
                }
                Err(StoreError::Aborted) => aborted = true,
                Err(StoreError::LocalChanged { .. }) => report.kept_local.push(rel),
                Err(error) => failures.push(FileFailure { rel, error }),
            }
        }
        listing.forget(&report.removed);
        // Lazy hydration: the folders of the content files left out, so the layout swamp expects is there.
        let folders: BTreeSet<&str> =
            plan.skipped.iter().filter_map(|rel| rel.rsplit_once('/')).map(|(dir, _)| dir).collect();
        for folder in folders {
            match self.cache.create_dir(folder).await {
                Ok(()) => {}
                Err(StoreError::Aborted) => aborted = true,
                Err(error) => failures.push(FileFailure { rel: folder.to_string(), error }),
            }
        }
        report.skipped = plan.skipped;
        self.trace("pull", "downloads and removals", started);

        // Persist what we learnt even if some files failed or the pull was aborted (a local write only), so that the
        // next push does not re-upload them and the next pull does not hash them again (W6).
        let saved = self.save_view(updates).await?;
        let examined = index
            .entries()
            .map(|(rel, _)| rel.to_string())
            .chain(view_read.view.iter().map(|(rel, _)| rel.to_string()))
            .filter(|rel| scope.contains(rel));
        self.report_conflicts(&report.conflicts, examined).await?;
        if aborted {
            return Err(SyncError::Aborted);
        }
        if !failures.is_empty() {
            return Err(SyncError::Files { operation: "pull", transferred: report.downloaded, failures });
        }
        let complete_here = report.kept_local.is_empty()
            && report.conflicts.is_empty()
            && report.pending_deletions.is_empty()
            && report.in_flux.is_empty()
            && report.skipped.is_empty()
            && scope.is_whole();
        if complete_here {
            if let Some(token) = &token {
                report.verified = self.record_verified(token.clone()).await?;
            }
        }
        // Keep the walk for this instance's push, unless another instance rewrote the view while we planned (its
        // downloads would be missing from our listing). With nothing saved, the push compares the view with the one
        // we read, which catches a rewrite made at any time since.
        let view = match saved {
            None => Some((view_read.fingerprint, view_read.view)),
            Some(saved) => (saved.base == view_read.fingerprint).then_some((saved.written, saved.view)),
        };
        if let (Some(marker), Some((view_fingerprint, view))) = (marker.id(), view) {
            let snapshot = token.is_some().then_some(snapshot);
            // Stats of the index's and the view's paths only: no listing of the cache to hand over.
            let listing = walked.then_some(listing);
            self.instance.keep_walk(Walked { marker, view_fingerprint, view, listing, snapshot });
        }
        self.trace("pull", "done", started);
        Ok(report)
    }

    /// Write the index bytes just read as the cache's local copy and let them go: they are not held through the plan
    /// and the downloads. Not in a dry run.
    async fn keep_index_copy(&self, snapshot: &mut Snapshot) -> Result<(), SyncError> {
        match snapshot.take_local_copy() {
            Some(copy) if !self.config.dry_run => {
                self.cache.write_internal(copy.name, copy.bytes).await.map_err(SyncError::from_store)
            }
            _ => Ok(()),
        }
    }

    /// The walk and the view, read side by side (the view's I/O overlaps the walk).
    /// The index, from the scope's shards only when `options` names models and the bucket lists their shards
    /// (`shards` then says which); else the whole index.
    async fn read_index(
        &self,
        verified: Option<&VersionToken>,
        options: &PullOptions,
        shards: &mut Option<BTreeSet<String>>,
    ) -> Result<Read, SyncError> {
        if !options.models.is_empty() {
            let mut wanted = BTreeSet::new();
            let mut required = BTreeSet::new();
            for (model_type, model_id) in &options.models {
                let [data, outputs, definitions] = model_shards(model_type, model_id);
                required.insert(data.clone());
                wanted.extend([data, outputs, definitions]);
            }
            if let Some(read) = self.index_layer().read_scoped(verified, &wanted, &required).await? {
                *shards = Some(wanted);
                return Ok(read);
            }
        }
        self.index_layer().read(verified).await
    }

    /// Whether this pull walks the whole cache, for the push after it. A pull itself needs only the paths the index and
    /// the view name (a file only here is the push's business), so it walks only when a bare markDirty is pending (the
    /// marker is not the one a push recorded clean): the push must then walk to find unmarked new files, and may reuse
    /// this walk (`Walked`). Not when the mark went through this instance: its push walks again whatever (a write may
    /// land after this walk).
    fn walks_for_push(&self, state: &SyncState, marker: &Marker) -> bool {
        let bare_mark = matches!(marker, Marker::Marked { .. } | Marker::Unreadable);
        bare_mark && !state.is_clean_at(marker.id().as_deref()) && !self.instance.marked_since_push.get()
    }

    /// The local side as far as it is known before the index: the walk and the view read side by side, or the view
    /// and the stats of the paths it names (in `subdirs`), the index's other paths being stat'ed once it is read.
    async fn read_local(&self, walk: bool, subdirs: Option<&BTreeSet<String>>) -> Result<(Local, ReadView), SyncError> {
        if walk {
            let (listing, view) = join(self.list_local(), self.read_view()).await;
            return Ok((Local { listing: listing?, walked: true }, view));
        }
        self.stat_recorded(self.read_view().await, subdirs).await
    }

    /// The stats of the paths `view` names (in `subdirs`), with the view.
    async fn stat_recorded(
        &self,
        view: ReadView,
        subdirs: Option<&BTreeSet<String>>,
    ) -> Result<(Local, ReadView), SyncError> {
        let in_subdirs = Scope { subdirs: subdirs.cloned(), shards: None };
        let recorded: Vec<&str> = view
            .view
            .iter()
            .map(|(rel, _)| rel)
            .filter(|rel| !is_internal(rel) && in_subdirs.contains(rel) && check_rel(rel).is_ok())
            .collect();
        let listing = self.stat_paths(&recorded).await?;
        drop(recorded);
        Ok((Local { listing, walked: false }, view))
    }

    /// Decide per path (every path of the index, the walk or the view); hash where stat cannot decide.
    #[allow(clippy::too_many_arguments)]
    async fn plan_pull(
        &self,
        index: &RemoteIndex,
        listing: &LocalListing,
        view: &LocalView,
        scope: &Scope,
        marks: Marks<'_>,
        plan: &mut PullPlan,
        report: &mut PullReport,
        failures: &mut Vec<FileFailure>,
        updates: &mut ViewUpdates,
    ) -> Result<(), SyncError> {
        let mut to_hash = Vec::new();
        for (rel, entry, local, record) in three_way(index, listing, view) {
            // B11: internal files are never downloaded (pushes scrub such entries from the index).
            if is_internal(rel) || !scope.contains(rel) {
                continue;
            }
            if entry.is_some() && listing.through_symlink(rel) {
                let reason = "its cache path is or goes through a symlink".to_string();
                let error = StoreError::InvalidKey { key: rel.to_string(), reason };
                failures.push(FileFailure { rel: rel.to_string(), error });
                continue;
            }
            let marked = marks.of(rel);
            match pull_decision(entry, local, record, marked) {
                PullDecision::NeedHash => to_hash.push((rel.to_string(), entry.cloned())),
                decision => self.follow(decision, rel, entry, local, record, plan, report, updates),
            }
        }
        let hashed = run_bounded(self.config.transfers, to_hash, |(rel, entry)| async move {
            let hash = self.cache.hash(&rel).await;
            (rel, entry, hash)
        })
        .await;
        for (rel, entry, hash) in hashed {
            let record = view.get(&rel);
            match hash {
                Ok(Some(found)) => {
                    let decision =
                        pull_after_hash(entry.as_ref(), found.stat.size, &found.sha256, record, marks.of(&rel));
                    if let (PullDecision::InSync, Some(entry)) = (decision, &entry) {
                        let kept_token =
                            record.filter(|record| record.matches_entry(entry)).and_then(|r| r.token.clone());
                        let synced = ViewEntry::new(found.stat, Some(found.sha256), entry).with_token(kept_token);
                        updates.insert(rel, Some(synced));
                    } else {
                        self.follow(decision, &rel, entry.as_ref(), Some(&found.stat), record, plan, report, updates);
                    }
                }
                // Vanished since the walk: decide again as absent.
                Ok(None) => {
                    let decision = pull_decision(entry.as_ref(), None, record, marks.of(&rel));
                    self.follow(decision, &rel, entry.as_ref(), None, record, plan, report, updates);
                }
                Err(StoreError::Aborted) => return Err(SyncError::Aborted),
                Err(error) => failures.push(FileFailure { rel, error }),
            }
        }
        Ok(())
    }

    /// Carry out one decision that needs no hash.
    #[allow(clippy::too_many_arguments)]
    fn follow(
        &self,
        decision: PullDecision,
        rel: &str,
        entry: Option<&IndexEntry>,
        local: Option<&FileStat>,
        record: Option<&ViewEntry>,
        plan: &mut PullPlan,
        report: &mut PullReport,
        updates: &mut ViewUpdates,
    ) {
        match (decision, entry) {
            // A dry run writes no view: nothing to note.
            (PullDecision::InSync, Some(entry)) if !self.config.dry_run => {
                note_in_sync(updates, rel, entry, local, record)
            }
            (PullDecision::Download, Some(_)) if plan.skip_content && is_content(rel) => {
                plan.skipped.push(rel.to_string())
            }
            (PullDecision::Download, Some(entry)) => {
                let replaces = local.map_or(Replaces::Nothing, |stat| Replaces::File(*stat));
                plan.downloads.push((rel.to_string(), entry.clone(), replaces))
            }
            (PullDecision::KeepLocal, _) => report.kept_local.push(rel.to_string()),
            (PullDecision::PendingDeletion, _) => report.pending_deletions.push(rel.to_string()),
            (PullDecision::Conflict(kind), _) => report.conflicts.push((rel.to_string(), kind)),
            (PullDecision::RemoveLocal, _) if !self.config.dry_run => {
                if let Some(stat) = local {
                    plan.removals.push((rel.to_string(), *stat));
                }
            }
            (PullDecision::ForgetBase, _) if !self.config.dry_run => updates.insert(rel.to_string(), None),
            _ => {}
        }
    }

    /// GET the object and hand the body to the cache, which writes a temp file, checks size and hash, and renames.
    /// Answers the file as written and the object's version token (the base of this file's next upload).
    pub(super) async fn download_one(
        &self,
        rel: &str,
        entry: &IndexEntry,
        replaces: Replaces,
    ) -> Result<(FileStat, [u8; 32], VersionToken), StoreError> {
        let expected = Expected { size: entry.size, sha256: entry.sha256, replaces };
        self.retry(|| async {
            if self.env.is_aborted() {
                return Err(StoreError::Aborted);
            }
            match self.store.get(rel, None).await? {
                Fetched::Found { body, token, .. } => {
                    let done = self.cache.download(rel, body, expected).await?;
                    Ok((done.stat, done.sha256, token))
                }
                Fetched::NotModified => Err(StoreError::Io { message: format!("{rel}: unexpected not-modified") }),
            }
        })
        .await
    }

    /// Record `token` (the token of the GET whose bytes we just compared) as verified. Returns whether it was usable.
    async fn record_verified(&self, token: VersionToken) -> Result<bool, SyncError> {
        // The seed's flaw, kept only to prove the simulator catches it: the token of a later HEAD.
        #[cfg(feature = "flaw-post-walk-head")]
        let token = self.index_layer().head().await.ok().flatten().map_or(token, |(_, meta)| meta.token);
        if !token.is_fingerprint() {
            return Ok(false);
        }
        let verified_at = self.now_iso();
        #[cfg(feature = "flaw-pull-clears-dirty")]
        let marker = self.read_marker().await.id();
        self.update_state(|state| {
            state.verified_token = Some(token);
            state.verified_at = Some(verified_at);
            // W2's flaw, kept only to prove the simulator catches it: a completed pull marks the cache clean.
            #[cfg(feature = "flaw-pull-clears-dirty")]
            {
                state.clean_marker = marker;
            }
        })
        .await?;
        Ok(true)
    }
}

/// What a pull knows of the cache: a walk, or the stats of the paths it decides on.
struct Local {
    listing: LocalListing,
    walked: bool,
}

/// The index's paths in `scope` that the view has no record of (the view's own were stat'ed with it), in order.
fn not_in_view<'a>(index: &'a RemoteIndex, view: &LocalView, scope: &Scope) -> Vec<&'a str> {
    let mut records = super::cursor::Cursor::new(view.iter());
    index
        .entries()
        .map(|(rel, _)| rel)
        .filter(|rel| records.seek(rel).is_none() && !is_internal(rel) && scope.contains(rel))
        .collect()
}

/// What was marked here, as `plan` needs it per path.
#[derive(Clone, Copy)]
pub(super) struct Marks<'a> {
    pub paths: &'a BTreeSet<String>,
    pub bulk: bool,
}

impl Marks<'_> {
    /// Whether `rel` or a folder holding it was marked (one lookup per folder level, not one per mark).
    pub fn of(&self, rel: &str) -> Marked {
        let path = !self.paths.is_empty()
            && (self.paths.contains(rel) || rel.match_indices('/').any(|(at, _)| self.paths.contains(&rel[..at])));
        Marked { path, bulk: self.bulk }
    }
}

/// Record an in-sync file in the view when the view does not already say exactly this (keeping the object token of
/// the base when the base is still this entry's version).
fn note_in_sync(
    updates: &mut ViewUpdates,
    rel: &str,
    entry: &IndexEntry,
    local: Option<&FileStat>,
    record: Option<&ViewEntry>,
) {
    let Some(stat) = local else { return };
    if !record.is_some_and(|record| record.is(stat, record.sha256, entry)) {
        let token = record.filter(|record| record.matches_entry(entry)).and_then(|record| record.token.clone());
        let synced = ViewEntry::new(*stat, record.and_then(|r| r.sha256), entry).with_token(token);
        updates.insert(rel.to_string(), Some(synced));
    }
}

/// `subdirs` as given, each one top-level folder name; anything else is refused by name (a path with `/`, `..` or
/// an internal name would not say which top-level folder it means).
fn check_subdirs(subdirs: &BTreeSet<String>) -> Result<BTreeSet<String>, SyncError> {
    for dir in subdirs {
        let plain = check_rel(dir).is_ok() && !dir.contains('/') && !is_internal(dir);
        if !plain {
            return Err(SyncError::InvalidArgument(format!(
                "subdirs: {dir:?} is not a top-level folder name of the cache (one segment, no \"..\", not internal)"
            )));
        }
    }
    Ok(subdirs.clone())
}
