//! Cache-relative paths: which keys are safe to touch on disk (B16, W17), which files are ours and never synced
//! (B11, W8), and how a relative path becomes an object key under the bucket prefix.

/// The remote index, at the bucket prefix and as a local copy at the cache root.
pub const INDEX_KEY: &str = ".datastore-index.json";
/// Our sync state at the cache root.
pub const SIDECAR_NAME: &str = ".datastore-sync-state.json";
/// The default lock object.
pub const LOCK_KEY: &str = ".datastore.lock";
/// The official extension's pending-push file at the cache root.
pub const PUSH_QUEUE_NAME: &str = ".push-queue.json";
/// Our local view of the cache (sizes, mtimes and hashes seen at the last sync).
pub const VIEW_NAME: &str = ".marsh-view.json";
/// The dirty marker at the cache root, written only by markDirty.
pub const DIRTY_NAME: &str = ".marsh-dirty.json";
/// Format-2 commits of this cache that may have stopped between their shard writes and their commit record.
pub const COMMIT_JOURNAL_NAME: &str = ".marsh-commit.json";
/// The per-path marks (`local::marks`): one empty file per `markDirty({relPath})`, in this folder at the root.
pub const MARKS_FOLDER: &str = ".marsh-marks";
/// Uploads of a two-phase push prepared here and not yet committed (`local::prepared`).
pub const PREPARED_NAME: &str = ".marsh-prepared.json";
/// The conflicts found by the last operations (`local::conflicts`), for `status`.
pub const CONFLICTS_NAME: &str = ".marsh-conflicts.json";
/// Basename prefix of our temp files, in any directory.
pub const TEMP_PREFIX: &str = ".marsh-tmp-";

/// swamp's local SQLite catalog; its WAL/SHM siblings share the name followed by `-`.
const CATALOG_NAME: &str = "_catalog.db";
/// Lock objects swamp creates per model, workflow run or server token, in any folder.
const LOCK_BASENAME: &str = ".lock";
/// A namespace's claim object, in any folder.
const NAMESPACE_CLAIM_NAME: &str = ".namespace.json";
/// Internal files that only count at the cache root: a data file of the same name deeper down is user data.
const ROOT_INTERNAL_NAMES: [&str; 9] = [
    INDEX_KEY,
    PUSH_QUEUE_NAME,
    LOCK_KEY,
    SIDECAR_NAME,
    VIEW_NAME,
    DIRTY_NAME,
    COMMIT_JOURNAL_NAME,
    CONFLICTS_NAME,
    PREPARED_NAME,
];

use crate::encoding::swar::{bytes_below_0x20, bytes_equal};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key {key:?}: {reason}")]
pub struct PathError {
    pub key: String,
    pub reason: &'static str,
}

/// Ok if `key` is a safe cache-relative path: non-empty, '/'-separated, no leading '/', no backslash, no NUL or other
/// control char, no empty / "." / ".." segment, no trailing '/', no Windows drive prefix like "C:".
/// The error names the key.
pub fn check_rel(key: &str) -> Result<(), PathError> {
    if plainly_safe(key.as_bytes()) {
        return Ok(());
    }
    first_fault(key)
}

/// One pass that says yes only for keys `first_fault` accepts (every index entry and every cache file goes through
/// here: 250k at a time). Anything it is unsure of (a byte that may start a C1 control, a drive prefix) is left to the
/// full check, which also names the reason.
fn plainly_safe(key: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (key.first(), key.last()) else { return false };
    if first == b'/' || first == b'.' || last == b'/' || key.get(1) == Some(&b':') {
        return false;
    }
    // Eight bytes at a time. Unusual bytes: backslash, C0 controls, DEL, and 0xC2 (it leads U+0080–U+00BF, among them
    // the C1 controls). A '/' followed by '/' or '.' may start an empty, "." or ".." segment: left to the full check.
    let mut words = key.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let following = key.get(at + 8).copied().unwrap_or(b'/');
        let next = (word >> 8) | (u64::from(following) << 56);
        let unusual =
            bytes_below_0x20(word) | bytes_equal(word, b'\\') | bytes_equal(word, 0x7f) | bytes_equal(word, 0xc2);
        let suspect_segment = bytes_equal(word, b'/') & (bytes_equal(next, b'/') | bytes_equal(next, b'.'));
        if unusual | suspect_segment != 0 {
            return false;
        }
        at += 8;
    }
    words.remainder().iter().enumerate().all(|(offset, &byte)| {
        let next = key.get(at + offset + 1);
        !(byte < 0x20
            || matches!(byte, b'\\' | 0x7f | 0xc2)
            || (byte == b'/' && matches!(next, None | Some(b'/' | b'.'))))
    })
}

/// The first rule `key` breaks, in a fixed order, so that the reason reported does not depend on the fast path.
fn first_fault(key: &str) -> Result<(), PathError> {
    let fail = |reason| Err(PathError { key: key.to_string(), reason });
    if key.is_empty() {
        return fail("empty path");
    }
    if key.starts_with('/') {
        return fail("absolute path");
    }
    if key.contains('\\') {
        return fail("backslash in path");
    }
    if key.chars().any(char::is_control) {
        return fail("control character in path");
    }
    if key.ends_with('/') {
        return fail("trailing slash");
    }
    if has_drive_prefix(key) {
        return fail("drive prefix");
    }
    for segment in key.split('/') {
        match segment {
            "" => return fail("empty path segment"),
            "." | ".." => return fail("dot segment"),
            _ => {}
        }
    }
    Ok(())
}

/// `C:` or `C:rest`: on Windows hosts this would resolve against a drive, outside the cache.
fn has_drive_prefix(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

/// Never synced in either direction: exactly INDEX_KEY, PUSH_QUEUE_NAME, LOCK_KEY, SIDECAR_NAME, VIEW_NAME, DIRTY_NAME,
/// COMMIT_JOURNAL_NAME, CONFLICTS_NAME, PREPARED_NAME at the root; anything under MARKS_FOLDER; anything under `_index/` or `_control/` (the format-2 index and control records: a data file there
/// would be uploaded over them); any file whose basename is `.lock`, `.namespace.json`, `_catalog.db` or starts with
/// `_catalog.db-`; any basename starting with TEMP_PREFIX; and the official extension's crash leftovers: basename
/// `.<uuid>.tmp` (uuid = 36 chars of hex and dashes).
pub fn is_internal(rel: &str) -> bool {
    let basename = match rel.as_bytes().iter().rposition(|&byte| byte == b'/') {
        Some(slash) => &rel[slash + 1..],
        None => rel,
    };
    // The index and control-plane objects of format 2 (and the official extension's local copies of them), and our
    // marks folder.
    match rel.as_bytes().first() {
        Some(b'_') if rel.starts_with("_index/") || rel.starts_with("_control/") => return true,
        Some(b'.') if rel.starts_with(MARKS_FOLDER) && rel.as_bytes().get(MARKS_FOLDER.len()) == Some(&b'/') => {
            return true
        }
        // A namespace's own state (`namespace::STATE_PREFIX`).
        Some(b'.') if rel.starts_with(".marsh-ns~") => return true,
        _ => {}
    }
    // Every internal name starts with one of these (each kind is checked by a test below): most data files stop here.
    if !matches!(basename.as_bytes().first(), Some(b'.' | b'_')) {
        return false;
    }
    if ROOT_INTERNAL_NAMES.contains(&rel) {
        return true;
    }
    basename == CATALOG_NAME
        || basename == LOCK_BASENAME
        || basename == NAMESPACE_CLAIM_NAME
        || basename.starts_with("_catalog.db-")
        || basename.starts_with(TEMP_PREFIX)
        || is_official_temp_name(basename)
}

/// `.<uuid>.tmp`, the name the official extension downloads to before renaming (left behind by a crash, W8).
fn is_official_temp_name(basename: &str) -> bool {
    basename
        .strip_prefix('.')
        .and_then(|rest| rest.strip_suffix(".tmp"))
        .is_some_and(|uuid| uuid.len() == 36 && uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
}

/// Bucket prefix in normal form: surrounding '/' trimmed; "" means no prefix.
pub fn normalize_prefix(prefix: &str) -> String {
    prefix.trim_matches('/').to_string()
}

/// Object key for a relative path: `prefix + "/" + rel`, or `rel` when the normalised prefix is empty.
pub fn object_key(prefix: &str, rel: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(key: &str) -> &'static str {
        check_rel(key).expect_err(key).reason
    }

    /// The one-pass check accepts only what the rule-by-rule check accepts, and lets through most ordinary keys.
    #[test]
    fn the_fast_path_agrees_with_the_full_check() {
        let pieces =
            ["a", "/", ".", "..", "\\", "\u{0}", "\u{1f}", "\u{7f}", "\u{85}", "\u{a0}", "é", "C:", ":", " ", "x.json"];
        let mut fast = 0;
        for first in pieces {
            for second in pieces {
                for third in pieces {
                    let key = format!("{first}{second}{third}");
                    if plainly_safe(key.as_bytes()) {
                        fast += 1;
                        assert_eq!(first_fault(&key), Ok(()), "{key:?}");
                    }
                    assert_eq!(check_rel(&key), first_fault(&key), "{key:?}");
                }
            }
        }
        assert!(fast > 300, "{fast}");
    }

    /// Longer keys, so that every byte position of the word-at-a-time path meets each odd piece.
    #[test]
    fn the_fast_path_agrees_with_the_full_check_at_every_offset() {
        let base = "models/abcdefgh/ijk.lmno/pqrstuvwxyz-0123456789.json";
        let pieces =
            ["/", "//", "/.", "/./", "/../", "/..", ".", "\\", "\u{0}", "\u{1f}", "\u{7f}", "\u{85}", "é", "😀", ":"];
        let mut fast = 0;
        for at in 0..=base.len() {
            for piece in pieces {
                let key = format!("{}{piece}{}", &base[..at], &base[at..]);
                if plainly_safe(key.as_bytes()) {
                    fast += 1;
                }
                assert_eq!(check_rel(&key), first_fault(&key), "{key:?}");
                assert!(!plainly_safe(key.as_bytes()) || first_fault(&key).is_ok(), "{key:?}");
            }
            let cut = &base[..at];
            assert_eq!(check_rel(cut), first_fault(cut), "{cut:?}");
            assert!(!plainly_safe(cut.as_bytes()) || first_fault(cut).is_ok(), "{cut:?}");
        }
        assert!(plainly_safe(base.as_bytes()));
        assert!(fast > 150, "{fast}");
    }

    #[test]
    fn ordinary_relative_paths_are_accepted() {
        for key in
            ["a", "a/b.json", "data/model/x-1/.lock", "names with spaces/ü.yaml", "a..b/c.", "...", "ab:c", "a/c:d"]
        {
            assert_eq!(check_rel(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn traversal_and_absolute_keys_are_rejected() {
        assert_eq!(reason(".."), "dot segment");
        assert_eq!(reason("../x"), "dot segment");
        assert_eq!(reason("a/../../x"), "dot segment");
        assert_eq!(reason("./a"), "dot segment");
        assert_eq!(reason("a/./b"), "dot segment");
        assert_eq!(reason("/etc/passwd"), "absolute path");
    }

    #[test]
    fn malformed_separators_are_rejected() {
        assert_eq!(reason(""), "empty path");
        assert_eq!(reason("a\\b"), "backslash in path");
        assert_eq!(reason("a//b"), "empty path segment");
        assert_eq!(reason("a/"), "trailing slash");
    }

    #[test]
    fn control_characters_are_rejected() {
        assert_eq!(reason("a\0b"), "control character in path");
        assert_eq!(reason("a\nb"), "control character in path");
        assert_eq!(reason("a\u{7f}"), "control character in path");
    }

    #[test]
    fn windows_drive_prefixes_are_rejected() {
        assert_eq!(reason("C:"), "drive prefix");
        assert_eq!(reason("c:/windows"), "drive prefix");
        assert_eq!(reason("D:file"), "drive prefix");
    }

    #[test]
    fn path_error_message_names_the_key() {
        let message = check_rel("../secret").unwrap_err().to_string();

        assert_eq!(message, "invalid key \"../secret\": dot segment");
    }

    #[test]
    fn root_internal_names_are_internal_only_at_the_root() {
        for name in [
            INDEX_KEY,
            SIDECAR_NAME,
            LOCK_KEY,
            PUSH_QUEUE_NAME,
            VIEW_NAME,
            DIRTY_NAME,
            COMMIT_JOURNAL_NAME,
            PREPARED_NAME,
            CONFLICTS_NAME,
        ] {
            assert!(is_internal(name), "{name}");
            assert!(!is_internal(&format!("sub/{name}")), "sub/{name}");
        }
    }

    #[test]
    fn index_and_control_folders_are_internal_at_the_root() {
        for rel in ["_index/_meta.json", "_index/data--aws--ec2.json", "_control/datastore-format", "_control/a/b"] {
            assert!(is_internal(rel), "{rel}");
        }
        assert!(is_internal(".marsh-marks/1-ab~data%2Fx"));
        for rel in ["_index", "_control", "data/_index/x.json", "_indexes/x.json", "_controls/x", ".marsh-marksx/y"] {
            assert!(!is_internal(rel), "{rel}");
        }
    }

    #[test]
    fn lock_and_namespace_claim_files_are_internal_anywhere() {
        for rel in
            [".lock", "data/aws/ec2/i-1/.lock", "workflow-runs/r1/.lock", ".namespace.json", "team/.namespace.json"]
        {
            assert!(is_internal(rel), "{rel}");
        }
        for rel in ["a.lock", ".locked", "data/.lock.json", "namespace.json", "x/.namespace.json.bak"] {
            assert!(!is_internal(rel), "{rel}");
        }
    }

    #[test]
    fn catalog_files_are_internal_anywhere() {
        assert!(is_internal("_catalog.db"));
        assert!(is_internal("_catalog.db-wal"));
        assert!(is_internal("nested/dir/_catalog.db-shm"));
        assert!(!is_internal("_catalog.dbx"));
        assert!(!is_internal("my_catalog.db"));
    }

    #[test]
    fn our_temp_files_are_internal_anywhere() {
        assert!(is_internal(".marsh-tmp-123"));
        assert!(is_internal("a/b/.marsh-tmp-x.json"));
        assert!(!is_internal("a/marsh-tmp-x.json"));
    }

    #[test]
    fn official_crash_leftovers_are_internal() {
        assert!(is_internal(".0f8fad5b-d9cb-469f-a165-70867728950e.tmp"));
        assert!(is_internal("data/.0F8FAD5B-D9CB-469F-A165-70867728950E.tmp"));
    }

    #[test]
    fn near_miss_temp_names_are_data() {
        assert!(!is_internal("0f8fad5b-d9cb-469f-a165-70867728950e.tmp"));
        assert!(!is_internal(".0f8fad5b-d9cb-469f-a165-70867728950.tmp"));
        assert!(!is_internal(".0f8fad5b-d9cb-469f-a165-70867728950g.tmp"));
        assert!(!is_internal(".0f8fad5b-d9cb-469f-a165-70867728950e.json"));
    }

    #[test]
    fn ordinary_files_are_not_internal() {
        assert!(!is_internal("models/a.yaml"));
        assert!(!is_internal(".gitignore"));
    }

    #[test]
    fn prefix_is_trimmed_of_slashes() {
        assert_eq!(normalize_prefix("/team/repo/"), "team/repo");
        assert_eq!(normalize_prefix("//"), "");
        assert_eq!(normalize_prefix(""), "");
    }

    #[test]
    fn object_key_joins_prefix_and_path() {
        assert_eq!(object_key("team/", "a/b.json"), "team/a/b.json");
        assert_eq!(object_key("/team/x", INDEX_KEY), "team/x/.datastore-index.json");
    }

    #[test]
    fn object_key_without_prefix_is_the_path() {
        assert_eq!(object_key("", "a/b.json"), "a/b.json");
        assert_eq!(object_key("/", "a/b.json"), "a/b.json");
    }
}
