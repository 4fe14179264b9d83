//! Two-phase push (swamp's `twoPhaseSync`) and its dry run: `preview_push` counts what the next push would send,
//! `prepare_push` does a push's transfers without touching the index, `commit_push` commits exactly what one prepare
//! did.
//!
//! - **Prepare** plans like a push (`push::plan_phase`), uploads every new or edited file on the same conditions (W19),
//!   notes each upload in `local::prepared`, then removes the objects of marked deletions, each on condition that it
//!   still is the version this cache last had. It writes no index, no view, no sidecar and clears no mark: until the
//!   commit every path stays marked, so a crash between the phases loses nothing (the next push does the same work,
//!   replacing its own prepared objects by their recorded versions). Readers meanwhile see the old entries; a download
//!   whose object no longer matches its entry is left "in flux" (B/W19), never written.
//! - **Commit** re-reads the index around the manifest's paths and applies the manifest's changes by compare-and-swap,
//!   each on condition that the entry is still the one the prepare decided on (another writer's change in between
//!   makes that path a conflict, never a lost update), then saves the view and clears only the marks the prepare
//!   listed and handled: a mark made between the phases stays for the next push (W22).
//!
//! The manifest is plain JSON the host keeps between the calls; the core never trusts it for more than what it
//! describes: every change is conditional, and a commit of a stale manifest turns into conflicts.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::plan::{push_after_hash, PushDecision};
use super::push::{Finish, PushReport, Scope, Transferred, Upload};
use super::transfer::run_bounded;
use super::{Engine, SyncError};
use crate::index::{parse_sha256_hex, sha256_hex, Changes, IndexEntry};
use crate::local::conflicts::ConflictKind;
use crate::local::marks::parse_mark;
use crate::local::view::{ViewEntry, ViewUpdates};
use crate::store::token::VersionToken;
use crate::store::{Env, FileStat, LocalCache, ObjectStore};

/// What `preview_push` counts: files the next push would upload as new or as edits, and files it would delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushPreview {
    pub new: u64,
    pub changed: u64,
    pub deleted: u64,
}

impl PushPreview {
    pub fn total(&self) -> u64 {
        self.new + self.changed + self.deleted
    }
}

/// An index entry as the manifest carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryRecord {
    size: u64,
    last_modified: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local_mtime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

impl EntryRecord {
    fn of(entry: &IndexEntry) -> Self {
        EntryRecord {
            size: entry.size,
            last_modified: entry.last_modified.as_str().to_string(),
            local_mtime: entry.local_mtime.as_ref().map(|stamp| stamp.as_str().to_string()),
            sha256: entry.sha256.as_ref().map(sha256_hex),
        }
    }

    fn entry(&self) -> Result<IndexEntry, SyncError> {
        let sha256 = self.sha256.as_deref().map(|hex| parse_hash(hex, "an entry's")).transpose()?;
        Ok(IndexEntry::new(self.size, self.last_modified.clone(), self.local_mtime.clone(), sha256))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadRecord {
    rel: String,
    entry: EntryRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expected: Option<EntryRecord>,
    size: u64,
    mtime_ms: i64,
    sha256: String,
    token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeletionRecord {
    rel: String,
    expected: EntryRecord,
    base: BaseRecord,
}

/// The base a deletion was decided against (the view's record), for the view and the conflict report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BaseRecord {
    size: u64,
    mtime_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    last_modified: String,
}

/// What a prepare did, for its commit: the changes to apply, the marks it listed, the state it was decided in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushManifest {
    version: u32,
    /// The dirty marker captured before the prepare looked (clean is recorded only for it, W3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    marker: Option<String>,
    bulk: bool,
    /// The marked paths the prepare looked at, and the names of the marks it listed.
    paths: Vec<String>,
    marks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verified_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_token: Option<String>,
    uploads: Vec<UploadRecord>,
    deletions: Vec<DeletionRecord>,
    /// Paths the prepare found in conflict, vanished or changed in the bucket: their marks stay.
    conflicts: Vec<(String, ConflictKind)>,
    unsettled: Vec<String>,
}

const MANIFEST_VERSION: u32 = 1;

impl PushManifest {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a manifest serialises")
    }

    pub fn parse(text: &str) -> Result<PushManifest, SyncError> {
        let manifest: PushManifest =
            serde_json::from_str(text).map_err(|e| invalid(&format!("the push manifest is not one of ours: {e}")))?;
        if manifest.version != MANIFEST_VERSION {
            return Err(invalid(&format!("push manifest version {} is not supported", manifest.version)));
        }
        Ok(manifest)
    }

    /// Files the prepare uploaded.
    pub fn uploaded(&self) -> usize {
        self.uploads.len()
    }

    /// Objects the prepare removed (their entries go at the commit).
    pub fn deleted(&self) -> usize {
        self.deletions.len()
    }

    /// Paths the prepare left in conflict (the commit reports them again).
    pub fn conflicts(&self) -> &[(String, ConflictKind)] {
        &self.conflicts
    }
}

fn invalid(message: &str) -> SyncError {
    SyncError::InvalidArgument(format!("commitPush: {message}"))
}

impl<S, C, E> Engine<'_, S, C, E>
where
    S: ObjectStore,
    C: LocalCache<Body = S::Body>,
    E: Env,
{
    /// What the next push would send, decided exactly as it would decide now (files stat cannot decide are hashed),
    /// with nothing written anywhere and this instance's marks left for the push.
    pub async fn preview_push(&self) -> Result<PushPreview, SyncError> {
        self.check_abort()?;
        let started = self.env.now_ms();
        let gathered = self.gather(false).await?;
        if gathered.scope.is_empty() {
            return Ok(PushPreview::default());
        }
        let planned = self.plan_phase(&gathered.marker.id(), None, &gathered.scope, started).await?;
        let mut preview = PushPreview { deleted: planned.plan.deletions.len() as u64, ..PushPreview::default() };
        for check in &planned.plan.to_check {
            let decision = match check.decision {
                PushDecision::NeedHash => match self.cache.hash(&check.rel).await.map_err(SyncError::from_store)? {
                    Some(hashed) => push_after_hash(
                        check.entry.as_ref(),
                        hashed.stat.size,
                        &hashed.sha256,
                        check.record.as_ref(),
                        check.marked,
                    ),
                    None => continue,
                },
                decision => decision,
            };
            if let PushDecision::Upload { .. } = decision {
                match check.entry {
                    Some(_) => preview.changed += 1,
                    None => preview.new += 1,
                }
            }
        }
        Ok(preview)
    }

    /// Phase one: upload and remove objects, leave the index and the marks as they are; the manifest says what to
    /// commit. A file that failed fails the prepare (what went up is noted and redone by the next push or prepare).
    pub async fn prepare_push(&self) -> Result<PushManifest, SyncError> {
        self.check_abort()?;
        let started = self.env.now_ms();
        let gathered = self.gather(false).await?;
        let marker = gathered.marker.id();
        let scope = gathered.scope;
        let mut manifest = PushManifest {
            version: MANIFEST_VERSION,
            marker: marker.clone(),
            bulk: scope.bulk,
            paths: scope.paths.iter().cloned().collect(),
            marks: gathered.marks.iter().map(|mark| mark.name.clone()).collect(),
            verified_before: gathered.verified_before.as_ref().map(|token| token.as_str().to_string()),
            read_token: None,
            uploads: Vec::new(),
            deletions: Vec::new(),
            conflicts: Vec::new(),
            unsettled: Vec::new(),
        };
        if scope.is_empty() {
            return Ok(manifest);
        }
        let planned = self.plan_phase(&marker, None, &scope, started).await?;
        let transferred = self.upload_phase(planned, started).await?;
        self.note_prepared(&transferred.uploads).await?;
        let Transferred { read_token, report, failures, uploads, deletions, examined, .. } = transferred;
        if !failures.is_empty() {
            return Err(SyncError::Files { operation: "prepare", transferred: report.uploaded, failures });
        }
        self.check_abort()?;
        // Objects first, entries at the commit: a reader in between finds the entry's object gone and leaves the path
        // in flux; a crash in between leaves the mark, and the next push removes the entry.
        run_bounded(self.config.transfers, deletions.iter().collect(), |(rel, _, base)| async move {
            self.delete_object(rel, base).await
        })
        .await;
        let mut conflicts = report.conflicts;
        conflicts.sort_unstable();
        self.report_conflicts(&conflicts, examined).await?;
        manifest.read_token = read_token.map(|token| token.as_str().to_string());
        manifest.uploads = uploads.iter().map(upload_record).collect();
        manifest.deletions = deletions
            .iter()
            .map(|(rel, expected, base)| DeletionRecord {
                rel: rel.clone(),
                expected: EntryRecord::of(expected),
                base: BaseRecord {
                    size: base.stat.size,
                    mtime_ms: base.stat.mtime_ms,
                    sha256: base.sha256.as_ref().map(sha256_hex),
                    last_modified: base.base_last_modified.as_str().to_string(),
                },
            })
            .collect();
        manifest.unsettled = report.vanished.into_iter().chain(report.remote_newer).collect();
        manifest.conflicts = conflicts;
        self.trace("prepare", "done", started);
        Ok(manifest)
    }

    /// Phase two: commit exactly the prepare's changes, each on condition that its entry is still the one decided on;
    /// then the view, the prepare's marks (those it handled) and the sidecar, as a push would.
    pub async fn commit_push(&self, manifest: &PushManifest) -> Result<PushReport, SyncError> {
        self.check_abort()?;
        let started = self.env.now_ms();
        let mut changes = Changes::default();
        let mut updates = ViewUpdates::new();
        let mut uploads = Vec::with_capacity(manifest.uploads.len());
        for record in &manifest.uploads {
            let upload = upload_of(record)?;
            changes.put(upload.rel.clone(), upload.entry.clone(), upload.expected.clone());
            let view = ViewEntry::new(upload.stat, Some(upload.sha256), &upload.entry);
            updates.insert(upload.rel.clone(), Some(view.with_token(Some(upload.token.clone()))));
            uploads.push(upload);
        }
        let mut deletions = Vec::with_capacity(manifest.deletions.len());
        for record in &manifest.deletions {
            crate::path::check_rel(&record.rel).map_err(|e| invalid(&e.to_string()))?;
            let expected = record.expected.entry()?;
            changes.remove(record.rel.clone(), expected.clone());
            deletions.push((record.rel.clone(), expected, base_of(&record.base)?));
        }
        // The flaw `flaw-blind-commit`, kept only to prove the simulator catches it: the prepare's changes are applied
        // whatever the entries became meanwhile.
        #[cfg(feature = "flaw-blind-commit")]
        for change in changes.paths.values_mut() {
            change.expected = crate::index::Expected::Any;
        }
        let paths: BTreeSet<String> = changes.paths.keys().cloned().collect();
        let snapshot = self.index_layer().read_for(&paths).await?;
        // The marked paths are as verified before only if nobody committed between the prepare's read and this one.
        let prepared_read = manifest.read_token.as_deref().map(VersionToken::new);
        let read_token = snapshot.commit_token().cloned().filter(|token| Some(token) == prepared_read.as_ref());
        let mut report = PushReport {
            uploaded: uploads.len() as u64,
            scrubbed: snapshot.index.internal_keys(),
            marked_only: !manifest.bulk,
            conflicts: manifest.conflicts.clone(),
            vanished: manifest.unsettled.clone(),
            ..PushReport::default()
        };
        report.conflicts.sort_unstable();
        let examined = paths.iter().cloned().chain(manifest.conflicts.iter().map(|(rel, _)| rel.clone())).collect();
        let transferred = Transferred {
            snapshot,
            read_token,
            report,
            failures: Vec::new(),
            updates,
            changes,
            in_sync: Vec::new(),
            unchanged: Default::default(),
            uploads,
            deletions,
            examined,
        };
        // Mark names become file names under the marks folder: nothing else may be removed through them.
        if let Some(name) = manifest.marks.iter().find(|name| name.contains(['/', '\\']) || name.starts_with('.')) {
            return Err(invalid(&format!("{name:?} is not a mark name")));
        }
        for path in &manifest.paths {
            crate::path::check_rel(path).map_err(|e| invalid(&e.to_string()))?;
        }
        let marks: Vec<_> = manifest.marks.iter().map(|name| parse_mark(name)).collect();
        let scope = Scope { paths: manifest.paths.iter().cloned().collect(), bulk: manifest.bulk, bare_mark: false };
        let finish = Finish {
            captured_id: manifest.marker.clone(),
            journal: self.read_journal().await,
            marks: &marks,
            scope,
            verified_before: manifest.verified_before.as_deref().map(VersionToken::new),
            objects_deleted: true,
            // The commit read only the shards of its paths: it cannot vouch for the whole index.
            whole_index_read: false,
        };
        self.finish_push(transferred, finish, started).await
    }
}

fn upload_record(upload: &Upload) -> UploadRecord {
    UploadRecord {
        rel: upload.rel.clone(),
        entry: EntryRecord::of(&upload.entry),
        expected: upload.expected.as_ref().map(EntryRecord::of),
        size: upload.stat.size,
        mtime_ms: upload.stat.mtime_ms,
        sha256: sha256_hex(&upload.sha256),
        token: upload.token.as_str().to_string(),
    }
}

/// A manifest's hex digest; `whose` names the record in the error ("an upload's").
fn parse_hash(hex: &str, whose: &str) -> Result<[u8; 32], SyncError> {
    parse_sha256_hex(hex).ok_or_else(|| invalid(&format!("{whose} sha256 is not 64 hex digits")))
}

fn upload_of(record: &UploadRecord) -> Result<Upload, SyncError> {
    crate::path::check_rel(&record.rel).map_err(|e| invalid(&e.to_string()))?;
    Ok(Upload {
        rel: record.rel.clone(),
        entry: record.entry.entry()?,
        expected: record.expected.as_ref().map(EntryRecord::entry).transpose()?,
        stat: FileStat { size: record.size, mtime_ms: record.mtime_ms },
        sha256: parse_hash(&record.sha256, "an upload's")?,
        token: VersionToken::new(record.token.as_str()),
    })
}

fn base_of(record: &BaseRecord) -> Result<ViewEntry, SyncError> {
    let sha256 = record.sha256.as_deref().map(|hex| parse_hash(hex, "a base's")).transpose()?;
    let entry = IndexEntry::new(record.size, record.last_modified.clone(), None, sha256);
    Ok(ViewEntry::new(FileStat { size: record.size, mtime_ms: record.mtime_ms }, sha256, &entry))
}
