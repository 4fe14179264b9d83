//! Pure per-file decisions: given an index entry, the local file's stat and its local-view record, what must a pull or
//! a push do? No I/O here; where stat cannot decide, the answer is "hash it" and the engine comes back with the hash.
//!
//! Principles: content (size + sha256) beats clocks (W18); a file edited here since its last sync is never
//! overwritten by a pull (it is pushed next); a file untouched here is never pushed over a newer remote version.

use crate::encoding::time::is_iso_of_ms;
use crate::index::IndexEntry;
use crate::local::view::ViewEntry;
use crate::store::FileStat;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullDecision {
    /// The local file is this entry's version.
    InSync,
    Download,
    /// The local file was edited since its last sync: keep it for the next push. `conflict`: the remote moved too.
    KeepLocal {
        conflict: bool,
    },
    /// Stat cannot decide; compare the local content hash with the entry (`pull_after_hash`).
    NeedHash,
}

/// Whether the local file was edited since the view recorded it (`None`: no record, so no evidence either way).
fn edited_since_sync(stat: &FileStat, view: Option<&ViewEntry>) -> Option<bool> {
    view.map(|record| !record.matches_stat(stat))
}

pub fn pull_decision(entry: &IndexEntry, local: Option<&FileStat>, view: Option<&ViewEntry>) -> PullDecision {
    let Some(stat) = local else { return PullDecision::Download };
    match (edited_since_sync(stat, view), view) {
        (Some(false), Some(record)) if record.matches_entry(entry) => PullDecision::InSync,
        // Untouched here, changed there: take the remote version.
        (Some(false), Some(_)) => PullDecision::Download,
        (Some(true), Some(record)) if entry.sha256.is_none() => {
            PullDecision::KeepLocal { conflict: !record.matches_entry(entry) }
        }
        (Some(true), _) => PullDecision::NeedHash,
        // No record of this file: content decides; without a remote hash, the official rule (size and the pusher's
        // recorded mtime) — and when that does not hold, the remote wins, as with the official extensions.
        _ if entry.sha256.is_some() => PullDecision::NeedHash,
        _ if same_size_and_recorded_mtime(entry, stat) => PullDecision::InSync,
        _ => PullDecision::Download,
    }
}

/// Second step of a `NeedHash` pull decision.
pub fn pull_after_hash(entry: &IndexEntry, size: u64, sha256: &[u8; 32], view: Option<&ViewEntry>) -> PullDecision {
    if same_content(entry, size, sha256) {
        return PullDecision::InSync;
    }
    match view {
        // Edited here (that is why a hash was needed with a record present): keep it for the push.
        Some(record) => PullDecision::KeepLocal { conflict: !record.matches_entry(entry) },
        None => PullDecision::Download,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushDecision {
    InSync,
    /// Upload; `conflict`: the remote entry also moved since this file's last sync (it will be overwritten; W5).
    Upload {
        conflict: bool,
    },
    /// Untouched here, newer remotely: the next pull's job, never pushed over.
    RemoteNewer,
    /// Stat cannot decide; hash and compare (`push_after_hash`).
    NeedHash,
}

pub fn push_decision(entry: Option<&IndexEntry>, stat: &FileStat, view: Option<&ViewEntry>) -> PushDecision {
    // Not in the index: new here (or its entry was removed remotely, which is not propagated: W9).
    let Some(entry) = entry else { return PushDecision::Upload { conflict: false } };
    match (edited_since_sync(stat, view), view) {
        (Some(false), Some(record)) if record.matches_entry(entry) => PushDecision::InSync,
        (Some(false), Some(_)) => PushDecision::RemoteNewer,
        (Some(true), Some(record)) if entry.sha256.is_none() => {
            PushDecision::Upload { conflict: !record.matches_entry(entry) }
        }
        _ if entry.sha256.is_some() => PushDecision::NeedHash,
        _ if same_size_and_recorded_mtime(entry, stat) => PushDecision::InSync,
        _ => PushDecision::Upload { conflict: false },
    }
}

/// Second step of a `NeedHash` push decision.
pub fn push_after_hash(entry: &IndexEntry, size: u64, sha256: &[u8; 32], view: Option<&ViewEntry>) -> PushDecision {
    if same_content(entry, size, sha256) {
        PushDecision::InSync
    } else {
        PushDecision::Upload { conflict: view.is_some_and(|record| !record.matches_entry(entry)) }
    }
}

fn same_content(entry: &IndexEntry, size: u64, sha256: &[u8; 32]) -> bool {
    entry.size == size && entry.sha256.is_none_or(|remote| remote == *sha256)
}

/// The official extensions' equality test, used only for entries without a hash.
fn same_size_and_recorded_mtime(entry: &IndexEntry, stat: &FileStat) -> bool {
    entry.size == stat.size
        && entry.local_mtime.as_deref().is_some_and(|recorded| is_iso_of_ms(recorded, stat.mtime_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::time::iso_from_ms;

    const T1: &str = "2026-11-24T10:00:00.000Z";
    const T2: &str = "2026-11-24T11:00:00.000Z";

    fn entry(size: u64, last_modified: &str, sha: Option<u8>) -> IndexEntry {
        IndexEntry::new(size, last_modified.to_string(), None, sha.map(|b| [b; 32]))
    }

    fn stat(size: u64, mtime_ms: i64) -> FileStat {
        FileStat { size, mtime_ms }
    }

    fn synced(at: FileStat, with: &IndexEntry) -> ViewEntry {
        ViewEntry::new(at, with.sha256, with)
    }

    #[test]
    fn pull_downloads_a_missing_file() {
        assert_eq!(pull_decision(&entry(3, T1, Some(1)), None, None), PullDecision::Download);
    }

    #[test]
    fn pull_skips_an_untouched_file_of_the_same_version() {
        let e = entry(3, T1, Some(1));
        let view = synced(stat(3, 10), &e);
        assert_eq!(pull_decision(&e, Some(&stat(3, 10)), Some(&view)), PullDecision::InSync);
    }

    #[test]
    fn pull_downloads_a_same_size_remote_edit_of_an_untouched_file() {
        // W4: a same-size edit elsewhere has a new lastModified and hash; size alone would miss it.
        let old = entry(3, T1, Some(1));
        let view = synced(stat(3, 10), &old);
        let new = entry(3, T2, Some(2));
        assert_eq!(pull_decision(&new, Some(&stat(3, 10)), Some(&view)), PullDecision::Download);
    }

    #[test]
    fn pull_keeps_an_unpushed_local_edit() {
        let e = entry(3, T1, None);
        let view = synced(stat(3, 10), &e);
        assert_eq!(pull_decision(&e, Some(&stat(4, 20)), Some(&view)), PullDecision::KeepLocal { conflict: false });
    }

    #[test]
    fn pull_hashes_an_edited_file_when_the_remote_has_a_hash() {
        let e = entry(3, T1, Some(1));
        let view = synced(stat(3, 10), &e);
        assert_eq!(pull_decision(&e, Some(&stat(3, 20)), Some(&view)), PullDecision::NeedHash);
        // Touched but identical content: in sync.
        assert_eq!(pull_after_hash(&e, 3, &[1; 32], Some(&view)), PullDecision::InSync);
        assert_eq!(pull_after_hash(&e, 3, &[9; 32], Some(&view)), PullDecision::KeepLocal { conflict: false });
    }

    #[test]
    fn pull_without_a_record_lets_the_remote_win_unless_content_matches() {
        let e = entry(3, T1, Some(1));
        assert_eq!(pull_decision(&e, Some(&stat(3, 10)), None), PullDecision::NeedHash);
        assert_eq!(pull_after_hash(&e, 3, &[1; 32], None), PullDecision::InSync);
        assert_eq!(pull_after_hash(&e, 3, &[2; 32], None), PullDecision::Download);
        let official = entry(3, T1, None);
        assert_eq!(pull_decision(&official, Some(&stat(4, 10)), None), PullDecision::Download);
    }

    #[test]
    fn official_entries_match_on_size_and_recorded_mtime() {
        let mut e = entry(3, T1, None);
        e.local_mtime = Some(iso_from_ms(1_000).into());
        assert_eq!(pull_decision(&e, Some(&stat(3, 1_000)), None), PullDecision::InSync);
        assert_eq!(push_decision(Some(&e), &stat(3, 1_000), None), PushDecision::InSync);
        assert_eq!(push_decision(Some(&e), &stat(3, 2_000), None), PushDecision::Upload { conflict: false });
    }

    #[test]
    fn push_uploads_a_new_file() {
        assert_eq!(push_decision(None, &stat(1, 1), None), PushDecision::Upload { conflict: false });
    }

    #[test]
    fn push_never_overwrites_a_newer_remote_version_of_an_untouched_file() {
        let old = entry(3, T1, Some(1));
        let view = synced(stat(3, 10), &old);
        let new = entry(5, T2, Some(2));
        assert_eq!(push_decision(Some(&new), &stat(3, 10), Some(&view)), PushDecision::RemoteNewer);
    }

    #[test]
    fn push_reports_a_conflict_when_both_sides_moved() {
        let old = entry(3, T1, None);
        let view = synced(stat(3, 10), &old);
        let new = entry(5, T2, None);
        assert_eq!(push_decision(Some(&new), &stat(4, 20), Some(&view)), PushDecision::Upload { conflict: true });
    }

    #[test]
    fn push_hash_decides_touched_files() {
        let e = entry(3, T1, Some(1));
        let view = synced(stat(3, 10), &e);
        assert_eq!(push_decision(Some(&e), &stat(3, 11), Some(&view)), PushDecision::NeedHash);
        assert_eq!(push_after_hash(&e, 3, &[1; 32], Some(&view)), PushDecision::InSync);
        assert_eq!(push_after_hash(&e, 3, &[2; 32], Some(&view)), PushDecision::Upload { conflict: false });
    }
}
