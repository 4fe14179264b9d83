//! `pull_changed`: bring the cache up to the remote index.
//!
//! Fast path: one conditional GET of the index with the verified token; "not modified" means nothing to do (B1).
//! Otherwise the index is always fetched from the store (B4), compared with the cache, and missing or outdated files are
//! downloaded (to a temp name, verified, renamed: W16). The token recorded as verified is the token of *this* GET, and
//! only when every entry of *these* bytes is present locally with matching size and hash (B5, B6). Recording the token
//! of a later HEAD instead (the official extensions' seed bug) would hide a writer's push landing between our GET and
//! that HEAD from every later fast path. A pull never touches the clean marker (W2): "remote verified" and "nothing unpushed
//! here" are separate facts. A complete pull leaves its walk and index to the same instance's next push, which uses
//! them only if nothing can have changed the cache since (`engine::Walked`).

use std::collections::BTreeMap;

use futures_util::future::{join, try_join};

use super::cursor::Cursor;
use super::listing::{LocalListing, ReadView};
use super::transfer::run_bounded;
use super::{Engine, FileFailure, SyncError, Walked};
use crate::engine::plan::{pull_after_hash, pull_decision, PullDecision};
use crate::index::{IndexEntry, Read, RemoteIndex, Snapshot};
use crate::local::view::{LocalView, ViewEntry, ViewUpdates};
use crate::path::is_internal;
use crate::store::token::VersionToken;
use crate::store::{Env, Expected, Fetched, FileStat, LocalCache, ObjectStore, Progress, StoreError};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    /// Files actually downloaded (B18).
    pub downloaded: u64,
    /// The index was unchanged since the last verified sync: nothing else was read.
    pub fast_path: bool,
    /// The token of the index we read was recorded as verified.
    pub verified: bool,
    /// Files edited here and not yet pushed: left in place for the next push.
    pub kept_local: Vec<String>,
    /// Of those, files whose remote entry also changed (the push will overwrite it; W5).
    pub conflicts: Vec<String>,
    pub index_entries: usize,
    /// Dry run only: the files a real pull would download.
    pub planned: Vec<String>,
}

impl<S, C, E> Engine<'_, S, C, E>
where
    S: ObjectStore,
    C: LocalCache<Body = S::Body>,
    E: Env,
{
    pub async fn pull_changed(&self) -> Result<PullReport, SyncError> {
        self.check_abort()?;
        self.instance.take_walk();
        let started = self.env.now_ms();
        let state = self.read_state().await;
        let verified = state.verified_token.filter(VersionToken::is_fingerprint);
        // The walk and the view read run alongside the index GET (its I/O, and the write of the local copy, overlap the
        // walk), except when a verified token may make the whole pull one "not modified" answer.
        let (snapshot, marker, (mut listing, view_read)) = if verified.is_some() {
            let Read::Found(mut snapshot) = self.index_layer().read(verified.as_ref()).await? else {
                self.trace("pull", "fast path (index not modified)", started);
                return Ok(PullReport { fast_path: true, verified: true, ..PullReport::default() });
            };
            self.check_abort()?;
            // Captured before the walk: the push that may reuse this walk checks that it is still current.
            let marker = self.read_marker().await.id();
            let (_, local) = try_join(self.keep_index_copy(&mut snapshot), self.read_local()).await?;
            (snapshot, marker, local)
        } else {
            let marker = self.read_marker().await.id();
            let index = async {
                let mut snapshot = match self.index_layer().read(None).await? {
                    Read::Found(snapshot) => snapshot,
                    Read::NotModified => Snapshot::empty(),
                };
                self.keep_index_copy(&mut snapshot).await?;
                Ok(snapshot)
            };
            let (snapshot, local) = try_join(index, self.read_local()).await?;
            (snapshot, marker, local)
        };
        self.trace("pull", "index read, walk and view read", started);
        self.check_abort()?;
        let token = snapshot.commit_token().cloned();
        let index = &snapshot.index;

        let mut report = PullReport { index_entries: index.len(), ..PullReport::default() };
        let mut failures: Vec<FileFailure> = index
            .invalid_entries()
            .iter()
            .map(|bad| FileFailure {
                rel: bad.key.clone(),
                error: StoreError::InvalidKey { key: bad.key.clone(), reason: bad.reason.clone() },
            })
            .collect();
        let mut updates = ViewUpdates::new();
        let to_download =
            self.plan_pull(index, &listing, &view_read.view, &mut report, &mut failures, &mut updates).await?;
        self.trace("pull", "plan", started);
        if self.config.dry_run {
            report.planned = to_download.into_iter().map(|(rel, _)| rel).collect();
            return Ok(report);
        }
        let bytes_planned = to_download.iter().map(|(_, entry)| entry.size).sum();
        self.env.progress(&Progress::Planned {
            operation: "pull",
            files: to_download.len() as u64,
            bytes: bytes_planned,
        });
        self.check_abort()?;

        let results = run_bounded(self.config.transfers, to_download, |(rel, entry)| async move {
            let outcome = self.download_one(&rel, &entry).await;
            (rel, entry, outcome)
        })
        .await;
        let mut aborted = false;
        let mut downloaded = Vec::new();
        for (rel, entry, outcome) in results {
            match outcome {
                Ok((stat, sha256)) => {
                    report.downloaded += 1;
                    self.env.progress(&Progress::Transferred { operation: "pull", rel: &rel, bytes: stat.size });
                    updates.insert(rel.clone(), Some(ViewEntry::new(stat, Some(sha256), &entry)));
                    downloaded.push((rel, stat));
                }
                Err(StoreError::Aborted) => aborted = true,
                Err(error) => failures.push(FileFailure { rel, error }),
            }
        }
        listing.record(downloaded);
        self.trace("pull", "downloads", started);

        // Persist what we learnt even if some files failed or the pull was aborted (a local write only), so that the
        // next push does not re-upload them and the next pull does not hash them again (W6).
        let saved = self.save_view(updates).await?;
        if aborted {
            return Err(SyncError::Aborted);
        }
        if !failures.is_empty() {
            return Err(SyncError::Files { operation: "pull", transferred: report.downloaded, failures });
        }
        if report.kept_local.is_empty() {
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
        if let (Some(marker), Some((view_fingerprint, view))) = (marker, view) {
            let snapshot = token.is_some().then_some(snapshot);
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
    async fn read_local(&self) -> Result<(LocalListing, ReadView), SyncError> {
        let (listing, view) = join(self.list_local(), self.read_view()).await;
        Ok((listing?, view))
    }

    /// Decide per entry; hash where stat cannot decide. Returns the downloads to run.
    async fn plan_pull(
        &self,
        index: &RemoteIndex,
        listing: &LocalListing,
        view: &LocalView,
        report: &mut PullReport,
        failures: &mut Vec<FileFailure>,
        updates: &mut ViewUpdates,
    ) -> Result<Vec<(String, IndexEntry)>, SyncError> {
        let mut downloads = Vec::new();
        let mut to_hash = Vec::new();
        let mut local_files = Cursor::new(listing.files.iter().map(|(rel, stat)| (rel.as_str(), stat)));
        let mut records = Cursor::new(view.iter());
        for (rel, entry) in index.entries() {
            // B11: internal files are never downloaded (pushes scrub such entries from the index).
            if is_internal(rel) {
                continue;
            }
            if listing.through_symlink(rel) {
                let reason = "its cache path is or goes through a symlink".to_string();
                let error = StoreError::InvalidKey { key: rel.to_string(), reason };
                failures.push(FileFailure { rel: rel.to_string(), error });
                continue;
            }
            let local = local_files.seek(rel);
            let record = records.seek(rel);
            match pull_decision(entry, local, record) {
                // A dry run writes no view: nothing to note.
                PullDecision::InSync if self.config.dry_run => {}
                PullDecision::InSync => note_in_sync(updates, rel, entry, local, record),
                PullDecision::Download => downloads.push((rel.to_string(), entry.clone())),
                PullDecision::KeepLocal { conflict } => keep_local(report, rel, conflict),
                PullDecision::NeedHash => to_hash.push((rel.to_string(), entry.clone())),
            }
        }
        let hashed = run_bounded(self.config.transfers, to_hash, |(rel, entry)| async move {
            let hash = self.cache.hash(&rel).await;
            (rel, entry, hash)
        })
        .await;
        let mut hashed_in_sync = BTreeMap::new();
        for (rel, entry, hash) in hashed {
            let record = view.get(&rel);
            match hash {
                Ok(Some(found)) => match pull_after_hash(&entry, found.stat.size, &found.sha256, record) {
                    PullDecision::InSync => {
                        hashed_in_sync.insert(rel, Some(ViewEntry::new(found.stat, Some(found.sha256), &entry)));
                    }
                    PullDecision::KeepLocal { conflict } => keep_local(report, &rel, conflict),
                    _ => downloads.push((rel, entry)),
                },
                // Vanished since the walk: fetch it again.
                Ok(None) => downloads.push((rel, entry)),
                Err(StoreError::Aborted) => return Err(SyncError::Aborted),
                Err(error) => failures.push(FileFailure { rel, error }),
            }
        }
        updates.extend(hashed_in_sync);
        Ok(downloads)
    }

    /// GET the object and hand the body to the cache, which writes a temp file, checks size and hash, and renames.
    async fn download_one(&self, rel: &str, entry: &IndexEntry) -> Result<(FileStat, [u8; 32]), StoreError> {
        let expected = Expected { size: entry.size, sha256: entry.sha256 };
        self.retry(|| async {
            if self.env.is_aborted() {
                return Err(StoreError::Aborted);
            }
            match self.store.get(rel, None).await? {
                Fetched::Found { body, .. } => {
                    let done = self.cache.download(rel, body, expected).await?;
                    Ok((done.stat, done.sha256))
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

fn keep_local(report: &mut PullReport, rel: &str, conflict: bool) {
    report.kept_local.push(rel.to_string());
    if conflict {
        report.conflicts.push(rel.to_string());
    }
}

/// Record an in-sync file in the view when the view does not already say exactly this.
fn note_in_sync(
    updates: &mut ViewUpdates,
    rel: &str,
    entry: &IndexEntry,
    local: Option<&FileStat>,
    record: Option<&ViewEntry>,
) {
    let Some(stat) = local else { return };
    if !record.is_some_and(|record| record.is(stat, record.sha256, entry)) {
        updates.insert(rel.to_string(), Some(ViewEntry::new(*stat, record.and_then(|r| r.sha256), entry)));
    }
}
