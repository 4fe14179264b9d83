//! Pure per-path decisions: given the remote entry (R), the local file's stat (L) and the base (B: the local view's
//! record of what this cache last synced), what must a pull or a push do? No I/O here; where stat cannot decide, the
//! answer is "hash it" and the engine comes back with the hash.
//!
//! Principles:
//! - content (size + sha256) beats clocks (W18);
//! - a three-way decision against the base: a side that did not move since B gives way to the side that did; both
//!   moved is a conflict, never silently resolved (W20): neither side is overwritten or deleted;
//! - a file absent here but known to the base is a deletion only when it was marked (a `markDirty` for it, or a bare
//!   one since the last clean push); otherwise it was lost here, and a pull restores it (W21, W23);
//! - a file gone from the bucket but known to the base was deleted there: a pull removes the local copy if it is
//!   unchanged since B, and a push never uploads it again (no zombie);
//! - without a base, the bucket's version wins unless this path was marked here (then both sides created it: a
//!   conflict), as the official extensions do.

use crate::encoding::time::is_iso_of_ms;
use crate::index::IndexEntry;
use crate::local::conflicts::ConflictKind;
use crate::local::view::ViewEntry;
use crate::store::FileStat;

/// How a path was marked since the last clean push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Marked {
    /// A `markDirty` named this path (or a folder holding it): a write or removal here was announced.
    pub path: bool,
    /// A bare `markDirty` since the last clean push: anything may have changed.
    pub bulk: bool,
}

impl Marked {
    fn any(self) -> bool {
        self.path || self.bulk
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullDecision {
    /// The local file is the entry's version.
    InSync,
    Download,
    /// Edited here since B, unchanged there: kept for the next push.
    KeepLocal,
    /// Both sides moved since B: both versions stay where they are.
    Conflict(ConflictKind),
    /// Stat cannot decide; compare the local content hash (`pull_after_hash`).
    NeedHash,
    /// Deleted in the bucket, unchanged here: remove the local copy (not a download).
    RemoveLocal,
    /// Deleted here and marked, unchanged in the bucket: the next push deletes it.
    PendingDeletion,
    /// Gone on both sides: the base record goes.
    ForgetBase,
    /// A local-only file (the next push's business), or nothing anywhere.
    Nothing,
}

/// The local file was touched since B (size or mtime differ); `None`: no base to compare with.
fn touched(stat: &FileStat, base: Option<&ViewEntry>) -> Option<bool> {
    base.map(|base| !base.matches_stat(stat))
}

pub fn pull_decision(
    entry: Option<&IndexEntry>,
    local: Option<&FileStat>,
    base: Option<&ViewEntry>,
    marked: Marked,
) -> PullDecision {
    match (entry, local, base) {
        (Some(_), None, None) => PullDecision::Download,
        (Some(entry), None, Some(base)) if marked.any() => {
            if base.matches_entry(entry) {
                PullDecision::PendingDeletion
            } else {
                PullDecision::Conflict(ConflictKind::DeletedHere)
            }
        }
        // Lost here without a mark (a wiped folder, a restore): the bucket's copy comes back.
        (Some(_), None, Some(_)) => PullDecision::Download,
        (Some(entry), Some(stat), Some(base)) if touched(stat, Some(base)) == Some(false) => {
            if base.matches_entry(entry) {
                PullDecision::InSync
            } else {
                PullDecision::Download
            }
        }
        // Touched here: the content decides.
        (Some(entry), Some(_), Some(base)) if entry.sha256.is_none() && base.sha256.is_none() => {
            if base.matches_entry(entry) {
                PullDecision::KeepLocal
            } else {
                PullDecision::Conflict(ConflictKind::BothChanged)
            }
        }
        (Some(_), Some(_), Some(_)) => PullDecision::NeedHash,
        (Some(entry), Some(_), None) if entry.sha256.is_some() => PullDecision::NeedHash,
        (Some(entry), Some(stat), None) if same_size_and_recorded_mtime(entry, stat) => PullDecision::InSync,
        (Some(_), Some(_), None) if marked.path => PullDecision::Conflict(ConflictKind::CreatedBoth),
        (Some(_), Some(_), None) => PullDecision::Download,
        // Unchanged here: removed, unless a mark says it is about to change (then the push decides).
        (None, Some(stat), Some(base)) if touched(stat, Some(base)) == Some(false) => {
            if marked.path {
                PullDecision::Nothing
            } else {
                PullDecision::RemoveLocal
            }
        }
        (None, Some(_), Some(base)) if base.sha256.is_some() => PullDecision::NeedHash,
        (None, Some(_), Some(_)) => PullDecision::Conflict(ConflictKind::DeletedThere),
        (None, None, Some(_)) => PullDecision::ForgetBase,
        (None, Some(_), None) | (None, None, None) => PullDecision::Nothing,
    }
}

/// Second step of a `NeedHash` pull decision, with the local file's size and hash.
pub fn pull_after_hash(
    entry: Option<&IndexEntry>,
    size: u64,
    sha256: &[u8; 32],
    base: Option<&ViewEntry>,
    marked: Marked,
) -> PullDecision {
    let unchanged_here = base.is_some_and(|base| base_content_is(base, size, sha256));
    match (entry, base) {
        (Some(entry), _) if same_content(entry, size, sha256) => PullDecision::InSync,
        (Some(entry), Some(base)) if unchanged_here => {
            if base.matches_entry(entry) {
                PullDecision::InSync
            } else {
                PullDecision::Download
            }
        }
        (Some(entry), Some(base)) if base.matches_entry(entry) => PullDecision::KeepLocal,
        (Some(_), Some(_)) => PullDecision::Conflict(ConflictKind::BothChanged),
        (Some(_), None) if marked.path => PullDecision::Conflict(ConflictKind::CreatedBoth),
        (Some(_), None) => PullDecision::Download,
        (None, Some(_)) if unchanged_here && marked.path => PullDecision::Nothing,
        (None, Some(_)) if unchanged_here => PullDecision::RemoveLocal,
        (None, Some(_)) => PullDecision::Conflict(ConflictKind::DeletedThere),
        (None, None) => PullDecision::Nothing,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushDecision {
    InSync,
    /// Upload: a new file (`replaces: false`, create-only) or an edit of B's version (replace that version only).
    Upload {
        replaces: bool,
    },
    /// Untouched here, newer (or deleted) in the bucket: the next pull's business, never pushed over.
    RemoteNewer,
    /// Deleted here and marked; the bucket still has B's version: remove it.
    Delete,
    /// Both sides moved since B: neither is overwritten.
    Conflict(ConflictKind),
    /// Stat cannot decide; hash and compare (`push_after_hash`).
    NeedHash,
    /// Gone on both sides: the base record goes.
    ForgetBase,
    /// Nothing to push (absent here without a mark: lost, and the next pull restores it).
    Nothing,
}

pub fn push_decision(
    entry: Option<&IndexEntry>,
    local: Option<&FileStat>,
    base: Option<&ViewEntry>,
    marked: Marked,
) -> PushDecision {
    match (entry, local, base) {
        (None, Some(_), None) => PushDecision::Upload { replaces: false },
        (Some(entry), Some(stat), Some(base)) if touched(stat, Some(base)) == Some(false) => {
            if base.matches_entry(entry) {
                PushDecision::InSync
            } else {
                PushDecision::RemoteNewer
            }
        }
        (Some(entry), Some(_), Some(base)) if entry.sha256.is_none() && base.sha256.is_none() => {
            if base.matches_entry(entry) {
                PushDecision::Upload { replaces: true }
            } else {
                PushDecision::Conflict(ConflictKind::BothChanged)
            }
        }
        (Some(_), Some(_), Some(_)) => PushDecision::NeedHash,
        (Some(entry), Some(_), None) if entry.sha256.is_some() => PushDecision::NeedHash,
        (Some(entry), Some(stat), None) if same_size_and_recorded_mtime(entry, stat) => PushDecision::InSync,
        (Some(_), Some(_), None) if marked.path => PushDecision::Conflict(ConflictKind::CreatedBoth),
        (Some(_), Some(_), None) => PushDecision::RemoteNewer,
        // Deleted in the bucket: never uploaded again (no zombie); a local edit since B is a conflict.
        (None, Some(stat), Some(base)) if touched(stat, Some(base)) == Some(false) => PushDecision::RemoteNewer,
        (None, Some(_), Some(base)) if base.sha256.is_some() => PushDecision::NeedHash,
        (None, Some(_), Some(_)) => PushDecision::Conflict(ConflictKind::DeletedThere),
        (Some(entry), None, Some(base)) if marked.any() => {
            if base.matches_entry(entry) {
                PushDecision::Delete
            } else {
                PushDecision::Conflict(ConflictKind::DeletedHere)
            }
        }
        (Some(_), None, _) => PushDecision::Nothing,
        (None, None, Some(_)) => PushDecision::ForgetBase,
        (None, None, None) => PushDecision::Nothing,
    }
}

/// Second step of a `NeedHash` push decision.
pub fn push_after_hash(
    entry: Option<&IndexEntry>,
    size: u64,
    sha256: &[u8; 32],
    base: Option<&ViewEntry>,
    marked: Marked,
) -> PushDecision {
    let unchanged_here = base.is_some_and(|base| base_content_is(base, size, sha256));
    match (entry, base) {
        (Some(entry), _) if same_content(entry, size, sha256) => PushDecision::InSync,
        (Some(entry), Some(base)) if unchanged_here => {
            if base.matches_entry(entry) {
                PushDecision::InSync
            } else {
                PushDecision::RemoteNewer
            }
        }
        (Some(entry), Some(base)) if base.matches_entry(entry) => PushDecision::Upload { replaces: true },
        (Some(_), Some(_)) => PushDecision::Conflict(ConflictKind::BothChanged),
        (Some(_), None) if marked.path => PushDecision::Conflict(ConflictKind::CreatedBoth),
        (Some(_), None) => PushDecision::RemoteNewer,
        (None, Some(_)) if unchanged_here => PushDecision::RemoteNewer,
        (None, Some(_)) => PushDecision::Conflict(ConflictKind::DeletedThere),
        (None, None) => PushDecision::Upload { replaces: false },
    }
}

fn same_content(entry: &IndexEntry, size: u64, sha256: &[u8; 32]) -> bool {
    entry.size == size && entry.sha256.is_none_or(|remote| remote == *sha256)
}

/// The local bytes are B's (by hash when B has one, else not known to be).
fn base_content_is(base: &ViewEntry, size: u64, sha256: &[u8; 32]) -> bool {
    base.stat.size == size && base.sha256.is_some_and(|known| known == *sha256)
}

/// The official extensions' equality test, used only for entries without a hash and files without a base.
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
    const NONE: Marked = Marked { path: false, bulk: false };
    const PATH: Marked = Marked { path: true, bulk: false };
    const BULK: Marked = Marked { path: false, bulk: true };

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
    fn pull_downloads_a_missing_file_and_restores_one_lost_without_a_mark() {
        let e = entry(3, T1, Some(1));
        assert_eq!(pull_decision(Some(&e), None, None, NONE), PullDecision::Download);
        let base = synced(stat(3, 10), &e);
        assert_eq!(pull_decision(Some(&e), None, Some(&base), NONE), PullDecision::Download);
    }

    #[test]
    fn pull_leaves_a_marked_deletion_for_the_push_and_flags_one_the_bucket_changed() {
        let e = entry(3, T1, Some(1));
        let base = synced(stat(3, 10), &e);
        for marked in [PATH, BULK] {
            assert_eq!(pull_decision(Some(&e), None, Some(&base), marked), PullDecision::PendingDeletion);
            let newer = entry(4, T2, Some(2));
            assert_eq!(
                pull_decision(Some(&newer), None, Some(&base), marked),
                PullDecision::Conflict(ConflictKind::DeletedHere)
            );
        }
    }

    #[test]
    fn pull_skips_an_untouched_file_of_the_same_version_and_downloads_a_newer_one() {
        let e = entry(3, T1, Some(1));
        let base = synced(stat(3, 10), &e);
        assert_eq!(pull_decision(Some(&e), Some(&stat(3, 10)), Some(&base), NONE), PullDecision::InSync);
        // W4: a same-size edit elsewhere has a new lastModified and hash; size alone would miss it.
        let new = entry(3, T2, Some(2));
        assert_eq!(pull_decision(Some(&new), Some(&stat(3, 10)), Some(&base), NONE), PullDecision::Download);
    }

    #[test]
    fn pull_keeps_a_local_edit_and_flags_edits_on_both_sides() {
        let e = entry(3, T1, Some(1));
        let base = synced(stat(3, 10), &e);
        assert_eq!(pull_decision(Some(&e), Some(&stat(4, 20)), Some(&base), NONE), PullDecision::NeedHash);
        assert_eq!(pull_after_hash(Some(&e), 4, &[9; 32], Some(&base), NONE), PullDecision::KeepLocal);
        assert_eq!(pull_after_hash(Some(&e), 3, &[1; 32], Some(&base), NONE), PullDecision::InSync, "touched only");
        let newer = entry(5, T2, Some(2));
        assert_eq!(
            pull_after_hash(Some(&newer), 4, &[9; 32], Some(&base), NONE),
            PullDecision::Conflict(ConflictKind::BothChanged)
        );
        assert_eq!(pull_after_hash(Some(&newer), 3, &[1; 32], Some(&base), NONE), PullDecision::Download);
        // Without hashes on either side the stat change decides: an edit.
        let official = entry(3, T1, None);
        let official_base = synced(stat(3, 10), &official);
        assert_eq!(
            pull_decision(Some(&official), Some(&stat(4, 20)), Some(&official_base), NONE),
            PullDecision::KeepLocal
        );
    }

    #[test]
    fn pull_without_a_base_takes_the_bucket_unless_the_path_was_marked_here() {
        let e = entry(3, T1, Some(1));
        assert_eq!(pull_decision(Some(&e), Some(&stat(3, 10)), None, NONE), PullDecision::NeedHash);
        assert_eq!(pull_after_hash(Some(&e), 3, &[1; 32], None, NONE), PullDecision::InSync);
        assert_eq!(pull_after_hash(Some(&e), 3, &[2; 32], None, NONE), PullDecision::Download);
        assert_eq!(
            pull_after_hash(Some(&e), 3, &[2; 32], None, PATH),
            PullDecision::Conflict(ConflictKind::CreatedBoth)
        );
        let mut official = entry(3, T1, None);
        official.local_mtime = Some(iso_from_ms(1_000).into());
        assert_eq!(pull_decision(Some(&official), Some(&stat(3, 1_000)), None, NONE), PullDecision::InSync);
        assert_eq!(pull_decision(Some(&official), Some(&stat(4, 1_000)), None, NONE), PullDecision::Download);
    }

    #[test]
    fn pull_removes_a_copy_the_bucket_deleted_only_when_it_is_unchanged_here() {
        let e = entry(3, T1, Some(1));
        let base = synced(stat(3, 10), &e);
        assert_eq!(pull_decision(None, Some(&stat(3, 10)), Some(&base), NONE), PullDecision::RemoveLocal);
        assert_eq!(pull_decision(None, Some(&stat(4, 20)), Some(&base), NONE), PullDecision::NeedHash);
        assert_eq!(
            pull_after_hash(None, 4, &[9; 32], Some(&base), NONE),
            PullDecision::Conflict(ConflictKind::DeletedThere)
        );
        assert_eq!(pull_after_hash(None, 3, &[1; 32], Some(&base), NONE), PullDecision::RemoveLocal);
        assert_eq!(
            pull_decision(None, Some(&stat(3, 10)), Some(&base), PATH),
            PullDecision::Nothing,
            "about to change"
        );
        assert_eq!(pull_decision(None, None, Some(&base), NONE), PullDecision::ForgetBase);
        assert_eq!(pull_decision(None, Some(&stat(3, 10)), None, NONE), PullDecision::Nothing);
    }

    #[test]
    fn push_uploads_new_files_create_only_and_edits_over_their_base_only() {
        assert_eq!(push_decision(None, Some(&stat(1, 1)), None, PATH), PushDecision::Upload { replaces: false });
        let e = entry(3, T1, Some(1));
        let base = synced(stat(3, 10), &e);
        assert_eq!(push_decision(Some(&e), Some(&stat(3, 11)), Some(&base), PATH), PushDecision::NeedHash);
        assert_eq!(push_after_hash(Some(&e), 3, &[1; 32], Some(&base), PATH), PushDecision::InSync);
        assert_eq!(push_after_hash(Some(&e), 3, &[2; 32], Some(&base), PATH), PushDecision::Upload { replaces: true });
    }

    #[test]
    fn push_never_overwrites_a_newer_remote_version_and_flags_edits_on_both_sides() {
        let old = entry(3, T1, Some(1));
        let base = synced(stat(3, 10), &old);
        let new = entry(5, T2, Some(2));
        assert_eq!(push_decision(Some(&new), Some(&stat(3, 10)), Some(&base), NONE), PushDecision::RemoteNewer);
        assert_eq!(
            push_after_hash(Some(&new), 4, &[9; 32], Some(&base), PATH),
            PushDecision::Conflict(ConflictKind::BothChanged)
        );
        let official_old = entry(3, T1, None);
        let official_base = synced(stat(3, 10), &official_old);
        assert_eq!(
            push_decision(Some(&entry(5, T2, None)), Some(&stat(4, 20)), Some(&official_base), PATH),
            PushDecision::Conflict(ConflictKind::BothChanged)
        );
    }

    #[test]
    fn push_deletes_only_marked_absences_of_an_unchanged_remote_version() {
        let e = entry(3, T1, Some(1));
        let base = synced(stat(3, 10), &e);
        assert_eq!(push_decision(Some(&e), None, Some(&base), PATH), PushDecision::Delete);
        assert_eq!(push_decision(Some(&e), None, Some(&base), BULK), PushDecision::Delete);
        assert_eq!(push_decision(Some(&e), None, Some(&base), NONE), PushDecision::Nothing, "lost, not deleted");
        let newer = entry(4, T2, Some(2));
        assert_eq!(
            push_decision(Some(&newer), None, Some(&base), PATH),
            PushDecision::Conflict(ConflictKind::DeletedHere)
        );
        assert_eq!(push_decision(None, None, Some(&base), PATH), PushDecision::ForgetBase);
    }

    #[test]
    fn push_never_uploads_a_file_the_bucket_deleted() {
        let e = entry(3, T1, Some(1));
        let base = synced(stat(3, 10), &e);
        assert_eq!(push_decision(None, Some(&stat(3, 10)), Some(&base), BULK), PushDecision::RemoteNewer);
        assert_eq!(push_decision(None, Some(&stat(4, 20)), Some(&base), PATH), PushDecision::NeedHash);
        assert_eq!(push_after_hash(None, 3, &[1; 32], Some(&base), PATH), PushDecision::RemoteNewer);
        assert_eq!(
            push_after_hash(None, 4, &[9; 32], Some(&base), PATH),
            PushDecision::Conflict(ConflictKind::DeletedThere)
        );
    }

    #[test]
    fn push_without_a_base_leaves_a_different_remote_file_to_the_pull_unless_created_here_too() {
        let e = entry(3, T1, Some(1));
        assert_eq!(push_after_hash(Some(&e), 3, &[1; 32], None, NONE), PushDecision::InSync);
        assert_eq!(push_after_hash(Some(&e), 3, &[2; 32], None, BULK), PushDecision::RemoteNewer);
        assert_eq!(
            push_after_hash(Some(&e), 3, &[2; 32], None, PATH),
            PushDecision::Conflict(ConflictKind::CreatedBoth)
        );
    }
}
