//! The local view (`.marsh-view.json`): for each cache file, what it looked like (size, mtime, hash) when it was last
//! known to equal a remote index entry, and which entry that was. It lets a push tell "edited here" from "pulled
//! from elsewhere" without hashing every file, and is persisted after every pull and push so that files another machine
//! pushed are not re-uploaded by the next push (W6). It is an optimisation with a safe fallback: a missing or stale
//! view entry only costs a hash or a transfer, never a skipped file.

use serde::{Deserialize, Serialize};

use crate::encoding::scan::Scan;
use crate::encoding::stamp::Stamp;
use crate::index::{parse_sha256_hex, sha256_hex, IndexEntry};
use crate::sorted::{find, merge_changes, sorted_unique};
use crate::store::token::VersionToken;
use crate::store::FileStat;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewEntry {
    pub stat: FileStat,
    pub sha256: Option<[u8; 32]>,
    /// `lastModified` of the index entry this file was equal to (with `stat.size` and `sha256`, the entry's version).
    pub base_last_modified: Stamp,
    /// The version token of the object that held these bytes (from the download or the upload), when known: a push
    /// replaces the object only on condition that it still is that version (W19).
    pub token: Option<VersionToken>,
}

impl ViewEntry {
    pub fn new(stat: FileStat, sha256: Option<[u8; 32]>, entry: &IndexEntry) -> Self {
        ViewEntry {
            stat,
            sha256: sha256.or(entry.sha256),
            base_last_modified: entry.last_modified.clone(),
            token: None,
        }
    }

    pub fn with_token(mut self, token: Option<VersionToken>) -> Self {
        self.token = token;
        self
    }

    /// The index entry is still the version this file was synced with.
    pub fn matches_entry(&self, entry: &IndexEntry) -> bool {
        let hashes_agree = match (self.sha256, entry.sha256) {
            (Some(ours), Some(theirs)) => ours == theirs,
            _ => true,
        };
        self.stat.size == entry.size && self.base_last_modified == entry.last_modified && hashes_agree
    }

    /// `*self == ViewEntry::new(stat, sha256, entry)`, without building it (checked for every in-sync file).
    pub fn is(&self, stat: &FileStat, sha256: Option<[u8; 32]>, entry: &IndexEntry) -> bool {
        self.stat == *stat && self.sha256 == sha256.or(entry.sha256) && self.base_last_modified == entry.last_modified
    }

    /// The file on disk has not been touched since it was synced (same size and mtime).
    pub fn matches_stat(&self, stat: &FileStat) -> bool {
        self.stat == *stat
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalView {
    /// Sorted by path, one record per path (`sorted::sorted_unique`).
    files: Vec<(String, ViewEntry)>,
}

#[derive(Deserialize)]
struct ViewFile {
    version: u32,
    /// In file order; `parse` sorts it in one go.
    #[serde(deserialize_with = "records_in_order")]
    files: Vec<(String, ViewRecord)>,
}

fn records_in_order<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<(String, ViewRecord)>, D::Error> {
    struct InOrder;
    impl<'de> serde::de::Visitor<'de> for InOrder {
        type Value = Vec<(String, ViewRecord)>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of view records")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut records = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some(entry) = map.next_entry()? {
                records.push(entry);
            }
            Ok(records)
        }
    }
    deserializer.deserialize_map(InOrder)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ViewRecord {
    size: u64,
    mtime_ms: i64,
    #[serde(default)]
    sha256: Option<String>,
    base_last_modified: Stamp,
    #[serde(default)]
    token: Option<String>,
}

impl ViewRecord {
    fn into_entry((rel, record): (String, ViewRecord)) -> (String, ViewEntry) {
        let entry = ViewEntry {
            stat: FileStat { size: record.size, mtime_ms: record.mtime_ms },
            sha256: record.sha256.as_deref().and_then(parse_sha256_hex),
            base_last_modified: record.base_last_modified,
            token: record.token.map(VersionToken::new),
        };
        (rel, entry)
    }
}

/// The view exactly as `to_json` writes it (compact, fields in order, no escapes), read in one pass; `None` for
/// anything else, which `serde_json` then reads (a hand-edited or older view still works, only slower). The scanner
/// accepts only valid JSON, so the two readers agree on every text this one accepts (tested below).
fn read_as_written(text: &[u8]) -> Option<Vec<(String, ViewEntry)>> {
    let mut scan = Scan::new(text);
    if !scan.literal(r#"{"version":1,"files":{"#) {
        return None;
    }
    // Records with a hash and an ISO timestamp are longer than 128 bytes: room for all of them.
    let mut records = Vec::with_capacity(text.len() / 128);
    if !scan.literal("}") {
        loop {
            let rel = scan.plain_string()?.to_string();
            let size = scan.literal(r#":{"size":"#).then(|| scan.plain_integer())??;
            let mtime_ms = scan.literal(r#","mtimeMs":"#).then(|| scan.plain_integer())??;
            let sha256 =
                if scan.literal(r#","sha256":"#) { Some(parse_sha256_hex(scan.plain_string()?)?) } else { None };
            let base = scan.literal(r#","baseLastModified":"#).then(|| scan.plain_string())??;
            let token = if scan.literal(r#","token":"#) { Some(VersionToken::new(scan.plain_string()?)) } else { None };
            let stat = FileStat { size, mtime_ms: i64::try_from(mtime_ms).ok()? };
            records.push((rel, ViewEntry { stat, sha256, base_last_modified: Stamp::from(base), token }));
            if scan.literal("},") {
                continue;
            }
            if scan.literal("}}") {
                break;
            }
            return None;
        }
    }
    (scan.literal("}") && scan.remaining() == 0).then_some(records)
}

/// The file as written: the same shape as `ViewFile`, serialised from the entries without copying them.
#[derive(Serialize)]
struct ViewFileOut<'a> {
    version: u32,
    files: FilesOut<'a>,
}

struct FilesOut<'a>(&'a [(String, ViewEntry)]);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ViewRecordOut<'a> {
    size: u64,
    mtime_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    base_last_modified: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}

impl Serialize for FilesOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(rel, entry)| {
            let record = ViewRecordOut {
                size: entry.stat.size,
                mtime_ms: entry.stat.mtime_ms,
                sha256: entry.sha256.as_ref().map(sha256_hex),
                base_last_modified: entry.base_last_modified.as_str(),
                token: entry.token.as_ref().map(VersionToken::as_str),
            };
            (rel, record)
        }))
    }
}

impl LocalView {
    /// Never fails: an unreadable view is an empty one (every file then falls back to hash or size checks).
    pub fn parse(bytes: Option<&[u8]>) -> LocalView {
        let Some(bytes) = bytes else { return LocalView::default() };
        let records = match read_as_written(bytes) {
            Some(records) => records,
            None => match serde_json::from_slice::<ViewFile>(bytes) {
                Ok(parsed) if parsed.version == 1 => parsed.files.into_iter().map(ViewRecord::into_entry).collect(),
                _ => return LocalView::default(),
            },
        };
        // A repeated path keeps its last record.
        LocalView { files: sorted_unique(records) }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Written into one allocation sized up front: a buffer grown by doubling holds two copies at once.
        let mut out = Vec::with_capacity(self.json_len_estimate());
        serde_json::to_writer(&mut out, &ViewFileOut { version: 1, files: FilesOut(&self.files) })
            .expect("view serialises");
        out
    }

    /// `to_json`'s length or a little more (20 characters for each number; paths and timestamps without escapes).
    fn json_len_estimate(&self) -> usize {
        let record = |(rel, entry): &(String, ViewEntry)| {
            // `"rel":{"size":N,"mtimeMs":N,"sha256":"…","baseLastModified":"…"},`
            let token = entry.token.as_ref().map_or(0, |token| token.as_str().len() + 11);
            rel.len() + entry.base_last_modified.len() + 86 + if entry.sha256.is_some() { 76 } else { 0 } + token
        };
        self.files.iter().map(record).sum::<usize>() + 32
    }

    /// Entries in path order (for merge-joins with the index and a walk, which are in the same order).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ViewEntry)> {
        self.files.iter().map(|(rel, entry)| (rel.as_str(), entry))
    }

    pub fn get(&self, rel: &str) -> Option<&ViewEntry> {
        find(&self.files, rel)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Apply this operation's findings on top of the view as it is on disk now (another instance may have written it
    /// since we read it): our records win for the files we looked at, theirs are kept for the rest. One sort of our
    /// updates and one merge pass: a first sync records every file, and inserting them one by one costs more than the
    /// plan.
    pub fn merge_into(updates: ViewUpdates, latest: LocalView) -> LocalView {
        // Of two updates of one file, the later wins.
        let changes = sorted_unique(updates.items);
        if latest.files.is_empty() {
            // A first sync: nothing to merge with, so the updates' own list becomes the view, collected in place
            // instead of into a second list of every file beside it.
            return LocalView { files: changes.into_iter().filter_map(|(rel, entry)| Some((rel, entry?))).collect() };
        }
        LocalView { files: merge_changes(latest.files, changes.into_iter()) }
    }
}

/// Changes to the local view made by one operation, in any order: `Some` records a file, `None` forgets it. For one
/// file, the last change wins.
#[derive(Debug, Default)]
pub struct ViewUpdates {
    items: Vec<(String, Option<ViewEntry>)>,
}

impl ViewUpdates {
    pub fn new() -> Self {
        ViewUpdates::default()
    }

    pub fn insert(&mut self, rel: String, update: Option<ViewEntry>) {
        self.items.push((rel, update));
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drop this operation's changes to `rel`: the view keeps the record it had (rare; a scan is fine).
    pub fn discard(&mut self, rel: &str) {
        self.items.retain(|(item, _)| item != rel);
    }
}

impl Extend<(String, Option<ViewEntry>)> for ViewUpdates {
    fn extend<I: IntoIterator<Item = (String, Option<ViewEntry>)>>(&mut self, items: I) {
        self.items.extend(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: u64, last_modified: &str, sha: Option<u8>) -> IndexEntry {
        IndexEntry::new(size, last_modified.to_string(), None, sha.map(|b| [b; 32]))
    }

    #[test]
    fn view_round_trips_through_json() {
        let mut updates = ViewUpdates::new();
        let stat = FileStat { size: 3, mtime_ms: 1_700_000_000_123 };
        updates.insert("a/b.json".to_string(), Some(ViewEntry::new(stat, Some([7; 32]), &entry(3, "t1", None))));
        let view = LocalView::merge_into(updates, LocalView::default());
        let parsed = LocalView::parse(Some(&view.to_json()));
        assert_eq!(parsed, view);
    }

    #[test]
    fn the_length_estimate_covers_the_text_without_overshooting_much() {
        let mut updates = ViewUpdates::new();
        for n in 0..500u64 {
            let stat = FileStat { size: n * 7919, mtime_ms: 1_700_000_000_000 + n as i64 };
            let sha = (n % 2 == 0).then_some([n as u8; 32]);
            let synced = entry(stat.size, "2026-04-24T19:45:20.123Z", None);
            updates.insert(
                format!("data/@acme/model-{n}/{}.json", "x".repeat(n as usize % 60)),
                Some(ViewEntry::new(stat, sha, &synced)),
            );
        }
        let view = LocalView::merge_into(updates, LocalView::default());
        let (written, estimate) = (view.to_json().len(), view.json_len_estimate());
        assert!(written <= estimate, "{written} > {estimate}");
        assert!(estimate <= written + written / 4, "{estimate} overshoots {written}");
        assert!(LocalView::default().to_json().len() <= LocalView::default().json_len_estimate());
    }

    /// The view as the serde_json reader alone reads it: the reference the one-pass reader must agree with.
    fn parse_with_serde(bytes: &[u8]) -> LocalView {
        match serde_json::from_slice::<ViewFile>(bytes) {
            Ok(parsed) if parsed.version == 1 => {
                LocalView { files: sorted_unique(parsed.files.into_iter().map(ViewRecord::into_entry).collect()) }
            }
            _ => LocalView::default(),
        }
    }

    fn sample_view() -> LocalView {
        let mut updates = ViewUpdates::new();
        let records = [
            ("a/b.json", 3, 1_700_000_000_123, Some(7), "2026-04-24T19:45:20.123Z"),
            ("a/ü €.yaml", 0, 0, None, "t1"),
            ("big", u64::MAX, i64::MAX, Some(0xab), "2026-04-24T19:45:20.123Z"),
            ("z", 12, 5, None, ""),
        ];
        for (rel, size, mtime_ms, sha, last_modified) in records {
            let stat = FileStat { size, mtime_ms };
            let view_entry = ViewEntry::new(stat, sha.map(|b| [b; 32]), &entry(size, last_modified, None));
            updates.insert(rel.to_string(), Some(view_entry));
        }
        LocalView::merge_into(updates, LocalView::default())
    }

    #[test]
    fn views_as_written_take_the_one_pass_reader_and_read_as_serde_json_reads_them() {
        let view = sample_view();
        let bytes = view.to_json();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(read_as_written(text.as_bytes()).is_some(), "{text}");
        assert_eq!(LocalView::parse(Some(&bytes)), view);
        assert_eq!(parse_with_serde(&bytes), view);
        assert!(read_as_written(br#"{"version":1,"files":{}}"#).is_some_and(|records| records.is_empty()));
        // Other spellings of the same view go to serde_json, and still read the same.
        let others = [
            text.replace(r#""a/b.json""#, r#""a\/b.json""#),
            text.replace(r#"{"version":1,"#, r#"{ "version": 1, "#),
            text.replace(r#""size":12"#, r#""size": 12"#),
        ];
        for other in others {
            assert!(read_as_written(other.as_bytes()).is_none(), "{other}");
            assert_eq!(LocalView::parse(Some(other.as_bytes())), view, "{other}");
        }
    }

    /// The one-pass reader accepts nothing serde_json would refuse: every prefix of a written view, and every byte
    /// replaced by bytes that break it, read the same through `parse` as through serde_json alone.
    #[test]
    fn damaged_views_read_as_serde_json_reads_them() {
        let bytes = sample_view().to_json();
        let mut tried = 0;
        for at in 0..bytes.len() {
            let mut variants = vec![bytes[..at].to_vec()];
            for replacement in
                [&b"0"[..], b"00", b"\x01", b"\"", b",", b"}", b"-", b"\xff", b"\xc3", b"\xc3\xa9", b" ", b"\\"]
            {
                let mut broken = bytes[..at].to_vec();
                broken.extend_from_slice(replacement);
                broken.extend_from_slice(&bytes[at + 1..]);
                variants.push(broken);
            }
            for text in variants {
                tried += 1;
                assert_eq!(
                    LocalView::parse(Some(&text)),
                    parse_with_serde(&text),
                    "{}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
        assert!(tried > 3000, "{tried}");
    }

    #[test]
    fn unreadable_view_is_empty_not_an_error() {
        assert!(LocalView::parse(Some(b"{not json")).is_empty());
        assert!(LocalView::parse(Some(br#"{"version":9,"files":{}}"#)).is_empty());
        assert!(LocalView::parse(None).is_empty());
    }

    #[test]
    fn entry_match_needs_same_size_time_and_hash() {
        let stat = FileStat { size: 3, mtime_ms: 5 };
        let view = ViewEntry::new(stat, Some([1; 32]), &entry(3, "t1", Some(1)));
        assert!(view.matches_entry(&entry(3, "t1", Some(1))));
        assert!(view.matches_entry(&entry(3, "t1", None)));
        assert!(!view.matches_entry(&entry(3, "t2", Some(1))));
        assert!(!view.matches_entry(&entry(3, "t1", Some(2))));
        assert!(!view.matches_entry(&entry(4, "t1", Some(1))));
    }

    #[test]
    fn merge_keeps_other_instances_records_and_applies_ours() {
        let record = |size| Some(ViewEntry::new(FileStat { size, mtime_ms: 1 }, None, &entry(size, "t", None)));
        let mut theirs = ViewUpdates::new();
        for rel in ["theirs", "gone", "both", "a-first", "z-last"] {
            theirs.insert(rel.to_string(), record(1));
        }
        let on_disk = LocalView::merge_into(theirs, LocalView::default());
        let mut ours = ViewUpdates::new();
        ours.insert("ours".to_string(), record(2));
        ours.insert("gone".to_string(), None);
        ours.insert("both".to_string(), record(2));
        ours.insert("twice".to_string(), record(2));
        ours.insert("twice".to_string(), record(3));
        ours.insert("back".to_string(), None);
        ours.insert("back".to_string(), record(4));
        let merged = LocalView::merge_into(ours, on_disk);
        let sizes: Vec<(&str, u64)> = merged.iter().map(|(rel, entry)| (rel, entry.stat.size)).collect();
        assert_eq!(
            sizes,
            [("a-first", 1), ("back", 4), ("both", 2), ("ours", 2), ("theirs", 1), ("twice", 3), ("z-last", 1)],
            "theirs kept, ours applied (the last update of a file wins), forgotten files gone"
        );
    }

    #[test]
    fn merge_into_an_empty_view_keeps_the_last_update_of_each_file_and_drops_forgotten_ones() {
        let record = |size| Some(ViewEntry::new(FileStat { size, mtime_ms: 1 }, None, &entry(size, "t", None)));
        let mut first = ViewUpdates::new();
        first.insert("b".to_string(), record(1));
        first.insert("gone".to_string(), record(1));
        first.insert("a".to_string(), record(2));
        first.insert("gone".to_string(), None);
        first.insert("b".to_string(), record(3));
        first.insert("never".to_string(), None);
        let view = LocalView::merge_into(first, LocalView::default());
        let sizes: Vec<(&str, u64)> = view.iter().map(|(rel, entry)| (rel, entry.stat.size)).collect();
        assert_eq!(sizes, [("a", 2), ("b", 3)]);
    }
}
