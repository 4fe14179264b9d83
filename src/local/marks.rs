//! Per-path dirty marks: `markDirty({relPath})` says "this path is about to be written or removed". Each mark is an
//! empty file in `.marsh-marks/` at the cache root, named after the moment, a random nonce and the path (encoded), so
//! that several instances and processes can mark at once without a read-modify-write of a shared file, a crash loses
//! nothing, and a push that lists the folder knows every marked path without opening a file. A push removes exactly
//! the marks it listed and handled: one made while it ran survives (W22).
//!
//! A `relPath` that is empty, absolute, escapes the cache or is not a path we can sync means "anything may change"
//! (the bulk marker); an internal path is ignored (internal files are never synced); a path too long for a file name
//! falls back to bulk too. Past [`MAX_MARKS`] marks a push treats the cache as bulk-dirty and walks it.

use crate::path::{check_rel, is_internal};

pub use crate::path::MARKS_FOLDER;

/// Marks a push handles one by one; past this many it walks the whole cache instead.
pub const MAX_MARKS: usize = 2000;
/// Longest mark file name (file systems allow 255 bytes).
const MAX_NAME: usize = 240;

/// What a `markDirty` call asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkRequest {
    /// Anything may change: the bulk marker.
    Bulk,
    /// Nothing to record (an internal path).
    Ignore,
    /// This path (a file or a folder) is about to change.
    Path(String),
}

/// One mark found in the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The file name, to remove the mark once handled.
    pub name: String,
    /// The marked path; `None` for a name that is not ours to read (counted as a bulk mark).
    pub path: Option<String>,
}

impl MarkRequest {
    pub fn classify(rel_path: Option<&str>) -> MarkRequest {
        let Some(rel) = rel_path.map(|rel| rel.trim_end_matches('/')) else { return MarkRequest::Bulk };
        if rel.is_empty() || check_rel(rel).is_err() {
            return MarkRequest::Bulk;
        }
        if is_internal(rel) {
            return MarkRequest::Ignore;
        }
        MarkRequest::Path(rel.to_string())
    }
}

/// The file name of a new mark for `rel` (`None`: too long for a file name; mark in bulk instead).
pub fn mark_name(rel: &str, now_ms: i64, nonce: &str) -> Option<String> {
    let mut name = format!("{now_ms:013}-{nonce}~");
    for byte in rel.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_') {
            name.push(byte as char);
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    (name.len() <= MAX_NAME).then_some(name)
}

/// Read a mark file's name back.
pub fn parse_mark(name: &str) -> Mark {
    let path = name.split_once('~').and_then(|(_, encoded)| decode(encoded)).filter(|rel| check_rel(rel).is_ok());
    Mark { name: name.to_string(), path }
}

fn decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = encoded.get(at + 1..at + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `path` is `marked` or lies under it (a marked folder covers everything in it).
pub fn covers(marked: &str, path: &str) -> bool {
    path == marked || (path.starts_with(marked) && path.as_bytes().get(marked.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_every_path_and_sort_by_time() {
        for rel in ["a.json", "data/aws/ec2/i-1/state/3/raw", "with space/é~%.x", "a/b~c"] {
            let name = mark_name(rel, 1_780_000_000_123, "0f1e").unwrap();
            assert!(!name.contains('/'), "{name}");
            assert_eq!(parse_mark(&name).path.as_deref(), Some(rel), "{name}");
        }
        assert!(mark_name("a", 1, "x") < mark_name("a", 2, "x"));
    }

    #[test]
    fn what_a_mark_request_means() {
        assert_eq!(MarkRequest::classify(None), MarkRequest::Bulk);
        for bulk in ["", "/", "/etc/passwd", "../x", "a/../../x", "a\\b", "./a", "a//b", "C:x"] {
            assert_eq!(MarkRequest::classify(Some(bulk)), MarkRequest::Bulk, "{bulk:?}");
        }
        for ignored in [".datastore-sync-state.json", "_index/_meta.json", "data/_catalog.db-wal", ".marsh-marks/x"] {
            assert_eq!(MarkRequest::classify(Some(ignored)), MarkRequest::Ignore, "{ignored:?}");
        }
        assert_eq!(MarkRequest::classify(Some("data/t/i/")), MarkRequest::Path("data/t/i".into()));
        assert_eq!(MarkRequest::classify(Some("a.json")), MarkRequest::Path("a.json".into()));
    }

    #[test]
    fn a_path_too_long_for_a_name_is_marked_in_bulk_and_foreign_names_read_as_bulk() {
        assert_eq!(mark_name(&"x/".repeat(200), 1, "n"), None);
        assert_eq!(parse_mark("notes.txt").path, None);
        assert_eq!(parse_mark("1-n~%ZZ").path, None);
        assert_eq!(parse_mark("1-n~..%2Fx").path, None, "a decoded name must be a safe path");
    }

    #[test]
    fn a_folder_mark_covers_what_is_under_it_only() {
        assert!(covers("data/t", "data/t"));
        assert!(covers("data/t", "data/t/i/raw"));
        assert!(!covers("data/t", "data/t2/raw"));
        assert!(!covers("data/t/i", "data/t"));
    }
}
