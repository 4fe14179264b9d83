//! One index document in the official JSON shape (docs/formats.md): version 1, `entries` by path, other fields kept.
//!
//! Other writers (the official extensions, older or newer marsh) share these objects, so a rewrite must not lose what we
//! do not understand: unknown fields at the top level and inside entries are kept and written back, and entries we
//! cannot use (unsafe keys, wrong types) are kept verbatim and reported instead of dropped (W17). Indexes reach 250k
//! entries, so entries are parsed one at a time and stored compactly (W15).

mod entries;

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::ser::PrettyFormatter;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::encoding::scan::Scan;
use crate::encoding::stamp::Stamp;
use crate::path::{check_rel, is_internal};
use crate::sorted::{find, merge_sorted, sort_paths, sorted_unique};

/// The only index version we read and write.
const INDEX_VERSION: u64 = 1;
/// Entry fields we interpret; everything else in an entry is carried through untouched.
const KNOWN_ENTRY_FIELDS: [&str; 5] = ["key", "size", "lastModified", "localMtime", "sha256"];
/// JS numbers are doubles: a size written by a JS host is exact only up to 2^53.
const MAX_EXACT_JS_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Why an index object cannot be used at all (as opposed to a single bad entry, which is kept and reported).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("remote index is not valid JSON: {0}")]
    NotJson(String),
    #[error("remote index is not a JSON object")]
    NotAnObject,
    #[error("remote index has no version field")]
    MissingVersion,
    #[error("remote index version {0} is not supported (expected 1)")]
    UnsupportedVersion(String),
    #[error("remote index has no entries field")]
    MissingEntries,
    #[error("remote index entries are not a JSON object")]
    EntriesNotAnObject,
}

/// How the entry's own `key` field relates to its map key, so that a rewrite reproduces it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum KeyField {
    /// The official writers' form, and what we emit for new entries.
    #[default]
    SameAsPath,
    Absent,
    Differs(Box<str>),
}

/// One usable index entry. Private fields carry what a rewrite must reproduce for an entry we did not replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub size: u64,
    pub last_modified: Stamp,
    pub local_mtime: Option<Stamp>,
    pub sha256: Option<[u8; 32]>,
    key_field: KeyField,
    /// Unknown fields in their original order; `None` in the common case to keep entries small.
    extra: Option<Box<Map<String, Value>>>,
}

impl IndexEntry {
    pub fn new(size: u64, last_modified: String, local_mtime: Option<String>, sha256: Option<[u8; 32]>) -> Self {
        let (last_modified, local_mtime) = (last_modified.into(), local_mtime.map(Stamp::from));
        IndexEntry { size, last_modified, local_mtime, sha256, key_field: KeyField::SameAsPath, extra: None }
    }

    /// The same version of a path's entry: the same size, `lastModified` and hash (a writer's clock and content tell
    /// two writes apart even when their bytes are equal).
    pub fn same_version(&self, other: &IndexEntry) -> bool {
        self.size == other.size && self.last_modified == other.last_modified && self.sha256 == other.sha256
    }

    /// Same content as far as we can tell: sizes equal, and hashes equal when both are known.
    pub fn same_content(&self, other: &IndexEntry) -> bool {
        let hashes_agree = match (&self.sha256, &other.sha256) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        };
        self.size == other.size && hashes_agree
    }

    /// Read an entry's JSON; on failure hand the raw value back with the reason, so it can be kept verbatim.
    fn from_json(rel: &str, raw: Value) -> Result<Self, (String, Value)> {
        if let Err(err) = check_rel(rel) {
            return Err((format!("unsafe path: {}", err.reason), raw));
        }
        let Value::Object(fields) = raw else {
            return Err(("entry is not an object".to_string(), raw));
        };
        let mut entry = match read_known_fields(rel, &fields) {
            Ok(entry) => entry,
            Err(reason) => return Err((reason, Value::Object(fields))),
        };
        let extra: Map<String, Value> =
            fields.into_iter().filter(|(name, _)| !KNOWN_ENTRY_FIELDS.contains(&name.as_str())).collect();
        entry.extra = (!extra.is_empty()).then(|| Box::new(extra));
        Ok(entry)
    }
}

fn read_known_fields(rel: &str, fields: &Map<String, Value>) -> Result<IndexEntry, String> {
    let size = match fields.get("size") {
        None => return Err("size is missing".to_string()),
        Some(value) => json_size(value).ok_or("size is not a non-negative integer")?,
    };
    let last_modified = match fields.get("lastModified") {
        None => return Err("lastModified is missing".to_string()),
        Some(Value::String(text)) => text.clone(),
        Some(_) => return Err("lastModified is not a string".to_string()),
    };
    let local_mtime = match fields.get("localMtime") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => return Err("localMtime is not a string".to_string()),
    };
    let sha256 = match fields.get("sha256") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(parse_sha256_hex(text).ok_or("sha256 is not 64 hex digits")?),
        Some(_) => return Err("sha256 is not a string".to_string()),
    };
    let key_field = match fields.get("key") {
        None => KeyField::Absent,
        Some(Value::String(key)) if key == rel => KeyField::SameAsPath,
        Some(Value::String(key)) => KeyField::Differs(key.as_str().into()),
        Some(_) => return Err("key is not a string".to_string()),
    };
    let mut entry = IndexEntry::new(size, last_modified, local_mtime, sha256);
    entry.key_field = key_field;
    Ok(entry)
}

/// A byte count: a non-negative integer, also in the `12.0` spelling some JSON writers produce.
fn json_size(value: &Value) -> Option<u64> {
    let number = value.as_number()?;
    if let Some(size) = number.as_u64() {
        return Some(size);
    }
    let float = number.as_f64()?;
    (float >= 0.0 && float.fract() == 0.0 && float <= MAX_EXACT_JS_INTEGER).then_some(float as u64)
}

/// An index entry that is kept but not used, with the reason it was set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEntry {
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
struct InvalidRaw {
    reason: String,
    raw: Value,
}

/// The remote index. Valid and invalid entries never share a key (a JSON object cannot hold both).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RemoteIndex {
    last_pulled: Option<String>,
    /// Sorted by key, one entry per key (`sorted::sorted_unique`). Only read in order (merge-joins) or by binary search,
    /// and written as a whole: building a tree per entry would cost more than reading the text.
    entries: Vec<(String, IndexEntry)>,
    invalid: BTreeMap<String, InvalidRaw>,
    /// Unknown top-level fields in their original order (including a `lastPulled` that is not a string).
    extra: Map<String, Value>,
}

impl RemoteIndex {
    /// Version 1, no entries, no `lastPulled` (call `set_last_pulled` before writing it out).
    pub fn empty() -> Self {
        RemoteIndex::default()
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, IndexError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        // Any non-object is a different error from broken JSON; checking the first byte keeps the main parse typed.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return match serde_json::from_slice::<IgnoredAny>(bytes) {
                Ok(_) => Err(IndexError::NotAnObject),
                Err(err) => Err(IndexError::NotJson(err.to_string())),
            };
        }
        let parsed = read_top_level(bytes).map_err(IndexError::NotJson)?;
        match parsed.version {
            None => return Err(IndexError::MissingVersion),
            Some(version) if !is_supported_version(&version) => {
                return Err(IndexError::UnsupportedVersion(version.to_string()))
            }
            Some(_) => {}
        }
        let (entries, invalid) = match parsed.entries {
            None => return Err(IndexError::MissingEntries),
            Some(EntriesField::NotAnObject) => return Err(IndexError::EntriesNotAnObject),
            Some(EntriesField::Object { valid, invalid }) => (valid, invalid),
        };
        let mut extra = parsed.extra;
        let last_pulled = match parsed.last_pulled {
            Some(Value::String(text)) => Some(text),
            Some(other) => {
                extra.insert("lastPulled".to_string(), other);
                None
            }
            None => None,
        };
        Ok(RemoteIndex { last_pulled, entries, invalid, extra })
    }

    /// 2-space pretty JSON: version 1, lastPulled, entries (valid and invalid, by key), then unknown fields.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json_len_estimate());
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, PrettyFormatter::with_indent(b"  "));
        self.serialize(&mut serializer).expect("serialising JSON values into memory cannot fail");
        out
    }

    /// Compact JSON (the shard form): the same fields in the same order as `to_json`, without whitespace.
    pub fn to_json_compact(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json_len_estimate());
        self.serialize(&mut serde_json::Serializer::new(&mut out))
            .expect("serialising JSON values into memory cannot fail");
        out
    }

    /// Take the valid entries out, leaving what a rewrite must carry through (invalid entries, unknown fields).
    pub fn take_entries(&mut self) -> Vec<(String, IndexEntry)> {
        std::mem::take(&mut self.entries)
    }

    /// Replace the valid entries with `entries` (sorted by key, one per key).
    pub fn set_entries(&mut self, entries: Vec<(String, IndexEntry)>) {
        debug_assert!(entries.windows(2).all(|pair| pair[0].0 < pair[1].0), "entries must be sorted and unique");
        for (rel, _) in &entries {
            self.invalid.remove(rel);
        }
        self.entries = entries;
    }

    /// Keep `entry` verbatim under `rel` but do not use it, for `reason` (a valid entry found where it does not belong).
    pub fn set_aside(&mut self, rel: String, entry: &IndexEntry, reason: String) {
        let raw = serde_json::to_value(EntryOut { rel: &rel, entry }).expect("an entry serialises");
        self.invalid.insert(rel, InvalidRaw { reason, raw });
    }

    /// Copy `other`'s invalid entries here, for reporting, with `source` (the object they were read from) in the reason.
    pub fn note_invalid_from(&mut self, other: &RemoteIndex, source: &str) {
        for (rel, kept) in &other.invalid {
            let reason = format!("{} (in {source})", kept.reason);
            self.invalid.insert(rel.clone(), InvalidRaw { reason, raw: kept.raw.clone() });
        }
    }

    /// `to_json`'s length or a little more when nothing needs escaping, so that the text is written into one
    /// allocation: a buffer grown by doubling holds two copies at once (and wasm memory never shrinks).
    fn json_len_estimate(&self) -> usize {
        let valid: usize = self.entries.iter().map(|(rel, entry)| entry_json_len_estimate(rel, entry)).sum();
        // Kept entries are small as a rule; a large one makes the text grow once, as would escapes.
        valid + self.invalid.len() * 256 + 1024
    }

    pub fn entries(&self) -> impl Iterator<Item = (&str, &IndexEntry)> {
        self.entries.iter().map(|(rel, entry)| (rel.as_str(), entry))
    }

    pub fn get(&self, rel: &str) -> Option<&IndexEntry> {
        find(&self.entries, rel)
    }

    /// Replace the entry for `rel` (valid or invalid), dropping the old entry's unknown fields. `rel` must pass
    /// `path::check_rel`, otherwise the written index holds a key every reader rejects. One entry at a time costs a
    /// move of the entries after it: for many, `insert_all`.
    pub fn insert(&mut self, rel: String, entry: IndexEntry) {
        debug_assert!(check_rel(&rel).is_ok(), "inserting an unsafe key {rel:?}");
        self.invalid.remove(&rel);
        match self.entries.binary_search_by(|(found, _)| found.as_str().cmp(&rel)) {
            Ok(at) => self.entries[at].1 = entry,
            Err(at) => self.entries.insert(at, (rel, entry)),
        }
    }

    /// `insert` for each of `entries`; of repeated keys the last one given wins, as with one `insert` after another. A
    /// few go in place (a push of a few files into 250k entries needs no second list); more are merged in one pass
    /// (one sort first, a single check when they come in key order, as from a `BTreeMap`).
    pub fn insert_all(&mut self, entries: Vec<(String, IndexEntry)>) {
        const IN_PLACE: usize = 8;
        if entries.len() <= IN_PLACE {
            for (rel, entry) in entries {
                self.insert(rel, entry);
            }
            return;
        }
        for (rel, _) in &entries {
            debug_assert!(check_rel(rel).is_ok(), "inserting an unsafe key {rel:?}");
            self.invalid.remove(rel);
        }
        self.entries = merge_sorted(std::mem::take(&mut self.entries), sorted_unique(entries));
    }

    /// Remove a valid entry. Invalid entries stay (they are another writer's business) unless scrubbed.
    pub fn remove(&mut self, rel: &str) -> Option<IndexEntry> {
        let at = self.entries.binary_search_by(|(found, _)| found.as_str().cmp(rel)).ok()?;
        Some(self.entries.remove(at).1)
    }

    /// Number of valid entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last_pulled(&self) -> Option<&str> {
        self.last_pulled.as_deref()
    }

    pub fn set_last_pulled(&mut self, iso: String) {
        self.extra.remove("lastPulled");
        self.last_pulled = Some(iso);
    }

    /// Keys of entries (valid or invalid) for internal files, sorted: what `scrub_internal` would remove.
    pub fn internal_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.invalid.keys().filter(|rel| is_internal(rel)).cloned().collect();
        keys.extend(self.entries.iter().filter(|(rel, _)| is_internal(rel)).map(|(rel, _)| rel.clone()));
        sort_paths(&mut keys);
        keys
    }

    /// Forget the invalid entries (a merged index rebuilds its report from the documents it was made of).
    pub fn clear_invalid(&mut self) {
        self.invalid.clear();
    }

    /// B11: remove entries (valid or invalid) for internal files (`path::is_internal`); returns their keys, sorted.
    pub fn scrub_internal(&mut self) -> Vec<String> {
        let mut scrubbed: Vec<String> = self.invalid.keys().filter(|rel| is_internal(rel)).cloned().collect();
        for rel in &scrubbed {
            self.invalid.remove(rel);
        }
        self.entries.retain(|(rel, _)| {
            let internal = is_internal(rel);
            if internal {
                scrubbed.push(rel.clone());
            }
            !internal
        });
        sort_paths(&mut scrubbed);
        scrubbed
    }

    /// Entries kept verbatim but not used, sorted by key.
    pub fn invalid_entries(&self) -> Vec<InvalidEntry> {
        self.invalid
            .iter()
            .map(|(key, invalid)| InvalidEntry { key: key.clone(), reason: invalid.reason.clone() })
            .collect()
    }
}

fn is_supported_version(version: &Value) -> bool {
    version.as_u64() == Some(INDEX_VERSION) || version.as_f64() == Some(INDEX_VERSION as f64)
}

/// SHA-256 of some bytes, in the form entries store.
pub fn sha256_of(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lowercase hex, the form written to the index.
pub fn sha256_hex(hash: &[u8; 32]) -> String {
    // By table, not `format!` per byte: the view writes one per file, and 32 formatted strings each were a large
    // share of its serialisation.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for byte in hash {
        hex.push(DIGITS[usize::from(byte >> 4)] as char);
        hex.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    hex
}

/// 64 hex digits (either case) → hash; `None` otherwise.
pub fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    let digits = s.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(hash)
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|value| value as u8)
}

// ---- Reading: one pass over the text (`scan`), one entry's JSON tree alive at a time, and only for unusual entries.

struct ParsedIndex {
    version: Option<Value>,
    last_pulled: Option<Value>,
    entries: Option<EntriesField>,
    extra: Map<String, Value>,
}

enum EntriesField {
    Object { valid: Vec<(String, IndexEntry)>, invalid: BTreeMap<String, InvalidRaw> },
    NotAnObject,
}

/// The top-level object (the text starts, after whitespace, with `{`). A field given twice keeps its last value, as
/// with `JSON.parse`; every value but `entries` is small and read by serde_json.
fn read_top_level(text: &[u8]) -> Result<ParsedIndex, String> {
    let mut parsed = ParsedIndex { version: None, last_pulled: None, entries: None, extra: Map::new() };
    let mut scan = Scan::new(text);
    scan.whitespace();
    scan.expect(b'{')?;
    scan.whitespace();
    if scan.peek() == Some(b'}') {
        scan.at += 1;
        scan.finish()?;
        return Ok(parsed);
    }
    loop {
        scan.whitespace();
        let name = scan.string()?;
        scan.whitespace();
        scan.expect(b':')?;
        scan.whitespace();
        if name == "entries" && scan.peek() == Some(b'{') {
            let (valid, invalid) = match entries::read_entries(&mut scan)? {
                entries::Read::InOrder(valid) => (valid, BTreeMap::new()),
                entries::Read::AsWritten(read) => split_entries(read),
            };
            parsed.entries = Some(EntriesField::Object { valid, invalid });
        } else {
            let value: Value = serde_json::from_str(scan.raw_value()?.get()).map_err(|err| err.to_string())?;
            match name.as_ref() {
                "version" => parsed.version = Some(value),
                "lastPulled" => parsed.last_pulled = Some(value),
                "entries" => parsed.entries = Some(EntriesField::NotAnObject),
                _ => {
                    parsed.extra.insert(name.into_owned(), value);
                }
            }
        }
        scan.whitespace();
        match scan.next()? {
            b',' => {}
            b'}' => break,
            other => return Err(scan.unexpected(other)),
        }
    }
    scan.finish()?;
    Ok(parsed)
}

/// Entries in file order (not in key order, or with invalid ones among them) → valid and invalid entries. A key given
/// twice keeps its last value, as `JSON.parse` does.
fn split_entries(read: Vec<entries::ReadEntry>) -> (Vec<(String, IndexEntry)>, BTreeMap<String, InvalidRaw>) {
    let mut valid = Vec::with_capacity(read.len());
    let mut invalid = BTreeMap::new();
    for (rel, entry) in sorted_unique(read) {
        match entry {
            Ok(entry) => valid.push((rel, entry)),
            Err(raw) => {
                invalid.insert(rel, raw);
            }
        }
    }
    (valid, invalid)
}

// ---- Writing.

impl Serialize for RemoteIndex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("version", &INDEX_VERSION)?;
        match (&self.last_pulled, self.extra.get("lastPulled")) {
            (Some(iso), _) => map.serialize_entry("lastPulled", iso)?,
            (None, Some(kept)) => map.serialize_entry("lastPulled", kept)?,
            (None, None) => {}
        }
        map.serialize_entry("entries", &EntriesOut(self))?;
        for (name, value) in self.extra.iter().filter(|(name, _)| *name != "lastPulled") {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Valid and invalid entries merged in key order.
struct EntriesOut<'a>(&'a RemoteIndex);

impl Serialize for EntriesOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = self.0;
        let mut map = serializer.serialize_map(Some(index.entries.len() + index.invalid.len()))?;
        let mut valid = index.entries.iter().map(|(rel, entry)| (rel, entry)).peekable();
        let mut invalid = index.invalid.iter().peekable();
        loop {
            let valid_first = match (valid.peek(), invalid.peek()) {
                (Some((a, _)), Some((b, _))) => a < b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if valid_first {
                if let Some((rel, entry)) = valid.next() {
                    map.serialize_entry(rel, &EntryOut { rel, entry })?;
                }
            } else if let Some((rel, kept)) = invalid.next() {
                map.serialize_entry(rel, &kept.raw)?;
            }
        }
        map.end()
    }
}

/// One entry as `EntryOut` writes it, 2-space pretty inside `entries`: lines of 6 spaces of indentation, name, value
/// and `,\n`; the size as 20 digits at most; unknown fields guessed.
fn entry_json_len_estimate(rel: &str, entry: &IndexEntry) -> usize {
    let member = 4 + rel.len() + 2 + 4; // `    "rel": {\n`
    let key_field = match &entry.key_field {
        KeyField::SameAsPath => 15 + rel.len(), // `      "key": "rel",\n`
        KeyField::Differs(key) => 15 + key.len(),
        KeyField::Absent => 0,
    };
    let size = 16 + 20;
    let last_modified = 26 + entry.last_modified.len();
    let local_mtime = entry.local_mtime.as_ref().map_or(0, |stamp| 24 + stamp.len());
    let sha256 = if entry.sha256.is_some() { 84 } else { 0 };
    let extra = if entry.extra.is_some() { 256 } else { 0 };
    let closing = 7; // `    },\n`
    member + key_field + size + last_modified + local_mtime + sha256 + extra + closing
}

struct EntryOut<'a> {
    rel: &'a str,
    entry: &'a IndexEntry,
}

impl Serialize for EntryOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entry = self.entry;
        let mut map = serializer.serialize_map(None)?;
        match &entry.key_field {
            KeyField::SameAsPath => map.serialize_entry("key", self.rel)?,
            KeyField::Differs(original) => map.serialize_entry("key", original)?,
            KeyField::Absent => {}
        }
        map.serialize_entry("size", &entry.size)?;
        map.serialize_entry("lastModified", &entry.last_modified)?;
        if let Some(local_mtime) = &entry.local_mtime {
            map.serialize_entry("localMtime", local_mtime)?;
        }
        if let Some(hash) = &entry.sha256 {
            map.serialize_entry("sha256", &sha256_hex(hash))?;
        }
        for (name, value) in entry.extra.iter().flat_map(|extra| extra.iter()) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RemoteIndex {
        RemoteIndex::parse(text.as_bytes()).expect("index parses")
    }

    fn as_value(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("output is JSON")
    }

    fn entry(size: u64) -> IndexEntry {
        IndexEntry::new(size, "2026-04-24T19:45:20.123Z".to_string(), None, None)
    }

    fn reasons(index: &RemoteIndex) -> Vec<(String, String)> {
        index.invalid_entries().into_iter().map(|e| (e.key, e.reason)).collect()
    }

    /// As JSON.stringify(index, null, 2) writes it, with fields of a newer writer mixed in.
    const OFFICIAL_SAMPLE: &str = r#"{
  "version": 1,
  "lastPulled": "2026-04-24T19:45:20.123Z",
  "entries": {
    "data/a.yaml": {
      "key": "data/a.yaml",
      "size": 120,
      "lastModified": "2026-04-24T19:45:20.000Z",
      "localMtime": "2026-04-24T19:45:19.500Z"
    },
    "models/b.json": {
      "key": "models/b.json",
      "size": 0,
      "lastModified": "2026-04-23T08:00:00.000Z",
      "contentType": "application/json",
      "meta": {
        "z": [
          1,
          2.5,
          null
        ],
        "a": true
      }
    }
  },
  "writer": "someone-else",
  "stats": {
    "files": 2
  }
}"#;

    #[test]
    fn the_length_estimate_covers_the_text_without_overshooting_much() {
        let mut index = parse(OFFICIAL_SAMPLE);
        for n in 0..500u64 {
            let sha = (n % 2 == 0).then_some([n as u8; 32]);
            let mtime = (n % 3 != 0).then(|| "2026-04-24T19:45:19.500Z".to_string());
            let entry = IndexEntry::new(n * 7919, "2026-04-24T19:45:20.123Z".to_string(), mtime, sha);
            index.insert(format!("data/@acme/model-{n}/{}.json", "x".repeat(n as usize % 60)), entry);
        }
        let written = index.to_json().len();
        let estimate = index.json_len_estimate();
        assert!(written <= estimate, "{written} > {estimate}");
        assert!(estimate <= written + written / 8, "{estimate} overshoots {written}");
    }

    #[test]
    fn official_sample_round_trips_byte_for_byte() {
        let index = parse(OFFICIAL_SAMPLE);

        let written = index.to_json();

        assert_eq!(String::from_utf8(written).unwrap(), OFFICIAL_SAMPLE);
    }

    #[test]
    fn official_sample_fields_are_read() {
        let index = parse(OFFICIAL_SAMPLE);

        let a = index.get("data/a.yaml").expect("entry a");
        assert_eq!(index.len(), 2);
        assert_eq!(index.last_pulled(), Some("2026-04-24T19:45:20.123Z"));
        assert_eq!(a.size, 120);
        assert_eq!(a.last_modified, "2026-04-24T19:45:20.000Z");
        assert_eq!(a.local_mtime.as_deref(), Some("2026-04-24T19:45:19.500Z"));
        assert_eq!(a.sha256, None);
        assert_eq!(index.get("models/b.json").unwrap().local_mtime, None);
    }

    #[test]
    fn unknown_fields_survive_a_rewrite_that_adds_an_entry() {
        let mut index = parse(OFFICIAL_SAMPLE);

        index.insert("new.txt".to_string(), entry(3));
        let mut written = as_value(&index.to_json());

        let expected = as_value(OFFICIAL_SAMPLE.as_bytes());
        assert_eq!(written["entries"]["new.txt"]["key"], "new.txt");
        written["entries"].as_object_mut().unwrap().remove("new.txt");
        assert_eq!(written, expected);
    }

    #[test]
    fn replacing_an_entry_drops_its_unknown_fields() {
        let mut index = parse(OFFICIAL_SAMPLE);

        index.insert("models/b.json".to_string(), entry(7));
        let written = as_value(&index.to_json());

        let replaced = written["entries"]["models/b.json"].as_object().unwrap();
        let names: Vec<&str> = replaced.keys().map(String::as_str).collect();
        assert_eq!(names, ["key", "size", "lastModified"]);
        assert_eq!(replaced["size"], 7);
        assert_eq!(written["writer"], "someone-else");
    }

    #[test]
    fn entries_are_written_in_key_order_with_invalid_ones_interleaved() {
        let mut index = parse(r#"{"version":1,"entries":{"m/../x":{"size":1}}}"#);
        index.insert("z".to_string(), entry(1));
        index.insert("a".to_string(), entry(1));

        let written = as_value(&index.to_json());

        let keys: Vec<&str> = written["entries"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["a", "m/../x", "z"]);
    }

    #[test]
    fn traversal_keys_are_kept_verbatim_and_reported() {
        let text = r#"{"version":1,"entries":{
            "../x": {"key":"../x","size":1,"lastModified":"t"},
            "/etc/passwd": {"key":"/etc/passwd","size":2,"lastModified":"t"},
            "a\\b": {"key":"a\\b","size":3,"lastModified":"t"},
            "ok": {"key":"ok","size":4,"lastModified":"t"}}}"#;

        let index = parse(text);

        assert_eq!(index.entries().map(|(rel, _)| rel).collect::<Vec<_>>(), ["ok"]);
        assert_eq!(index.get("../x"), None);
        assert_eq!(
            reasons(&index),
            [
                ("../x".to_string(), "unsafe path: dot segment".to_string()),
                ("/etc/passwd".to_string(), "unsafe path: absolute path".to_string()),
                ("a\\b".to_string(), "unsafe path: backslash in path".to_string()),
            ]
        );
        assert_eq!(as_value(&index.to_json()), as_value(text.as_bytes()));
    }

    #[test]
    fn wrongly_typed_entries_are_kept_verbatim_and_reported() {
        let text = r#"{"version":1,"lastPulled":"t","entries":{
            "a": {"key":"a","size":"12","lastModified":"t"},
            "b": {"key":"b","size":-1,"lastModified":"t"},
            "c": {"key":"c","size":1.5,"lastModified":"t"},
            "d": {"key":"d","size":1,"lastModified":5},
            "e": {"key":"e","lastModified":"t"},
            "f": {"key":"f","size":1},
            "g": "not an entry",
            "h": {"key":7,"size":1,"lastModified":"t"},
            "i": {"key":"i","size":1,"lastModified":"t","localMtime":false},
            "j": {"key":"j","size":1,"lastModified":"t","sha256":"abc"},
            "k": {"key":"k","size":1,"lastModified":"t","sha256":12}}}"#;

        let index = parse(text);

        assert!(index.is_empty());
        let expected = [
            ("a", "size is not a non-negative integer"),
            ("b", "size is not a non-negative integer"),
            ("c", "size is not a non-negative integer"),
            ("d", "lastModified is not a string"),
            ("e", "size is missing"),
            ("f", "lastModified is missing"),
            ("g", "entry is not an object"),
            ("h", "key is not a string"),
            ("i", "localMtime is not a string"),
            ("j", "sha256 is not 64 hex digits"),
            ("k", "sha256 is not a string"),
        ]
        .map(|(key, reason)| (key.to_string(), reason.to_string()));
        assert_eq!(reasons(&index), expected);
        assert_eq!(as_value(&index.to_json()), as_value(text.as_bytes()));
    }

    #[test]
    fn inserting_over_an_invalid_entry_replaces_it() {
        let mut index = parse(r#"{"version":1,"entries":{"a":{"size":"x"}}}"#);

        index.insert("a".to_string(), entry(2));

        assert!(index.invalid_entries().is_empty());
        assert_eq!(as_value(&index.to_json())["entries"]["a"]["size"], 2);
    }

    #[test]
    fn integral_float_size_is_accepted() {
        let index = parse(r#"{"version":1,"entries":{"a":{"key":"a","size":12.0,"lastModified":"t"}}}"#);

        assert_eq!(index.get("a").map(|e| e.size), Some(12));
    }

    #[test]
    fn null_optional_fields_read_as_absent() {
        let text = r#"{"version":1,"entries":{"a":{"size":1,"lastModified":"t","localMtime":null,"sha256":null}}}"#;

        let index = parse(text);

        let a = index.get("a").expect("valid entry");
        assert_eq!((a.local_mtime.as_ref(), a.sha256), (None, None));
    }

    #[test]
    fn a_key_field_that_differs_from_the_map_key_is_preserved() {
        let index = parse(r#"{"version":1,"entries":{"a":{"key":"other","size":1,"lastModified":"t"}}}"#);

        let written = as_value(&index.to_json());

        assert!(index.get("a").is_some());
        assert_eq!(written["entries"]["a"]["key"], "other");
    }

    #[test]
    fn a_missing_key_field_stays_missing() {
        let index = parse(r#"{"version":1,"entries":{"a":{"size":1,"lastModified":"t"}}}"#);

        let written = as_value(&index.to_json());

        assert!(index.get("a").is_some());
        assert_eq!(written["entries"]["a"].get("key"), None);
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        let text = r#"{"version":1,"entries":{"a":{"size":1,"lastModified":"t"},"a":{"size":"bad"}}}"#;

        let index = parse(text);

        assert_eq!(index.get("a"), None);
        assert_eq!(index.invalid_entries().len(), 1);
    }

    #[test]
    fn entries_out_of_order_or_repeated_are_sorted_and_the_last_value_wins() {
        let text = r#"{"version":1,"entries":{"c":{"size":1,"lastModified":"t"},"a":{"size":2,"lastModified":"t"},
            "c":{"size":3,"lastModified":"t"},"b/../x":{"size":4},"b":{"size":5,"lastModified":"t"},"a":{"size":6,"lastModified":"t"}}}"#;
        let index = parse(text);
        let sizes: Vec<(&str, u64)> = index.entries().map(|(rel, entry)| (rel, entry.size)).collect();
        assert_eq!(sizes, [("a", 6), ("b", 5), ("c", 3)]);
        assert_eq!(index.get("c").map(|entry| entry.size), Some(3));
        assert_eq!(reasons(&index).len(), 1);
        let written = as_value(&index.to_json());
        let keys: Vec<&str> = written["entries"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["a", "b", "b/../x", "c"]);
    }

    #[test]
    fn insert_all_merges_many_entries_in_one_pass_and_replaces_invalid_ones() {
        let mut index = parse(r#"{"version":1,"entries":{"b":{"size":"x"},"d":{"size":1,"lastModified":"t"}}}"#);
        let mut one_by_one = index.clone();
        // Out of order, and "a" twice: the later one wins, as with one insert after another.
        let added: Vec<(String, IndexEntry)> = [("d", 40), ("a", 10), ("b", 20), ("a", 11)]
            .iter()
            .map(|(rel, size)| (rel.to_string(), entry(*size)))
            .collect();
        for (rel, entry) in added.clone() {
            one_by_one.insert(rel, entry);
        }
        index.insert_all(added);
        assert_eq!(index, one_by_one);
        let sizes: Vec<(&str, u64)> = index.entries().map(|(rel, entry)| (rel, entry.size)).collect();
        assert_eq!(sizes, [("a", 11), ("b", 20), ("d", 40)]);
        assert!(index.invalid_entries().is_empty());
        // Many (merged rather than inserted in place), in a scrambled order with repeats, over an invalid entry.
        let mut index = parse(r#"{"version":1,"entries":{"k7":{"size":"x"},"k3":{"size":1,"lastModified":"t"}}}"#);
        let mut one_by_one = index.clone();
        let many: Vec<(String, IndexEntry)> = (0..40u64).map(|n| (format!("k{}", n * 7 % 13), entry(n))).collect();
        for (rel, entry) in many.clone() {
            one_by_one.insert(rel, entry);
        }
        index.insert_all(many);
        assert_eq!(index, one_by_one);
        assert_eq!(index.len(), 13);
        assert!(index.invalid_entries().is_empty());
    }

    #[test]
    fn non_string_last_pulled_is_kept_verbatim() {
        let index = parse(r#"{"version":1,"lastPulled":12345,"entries":{}}"#);

        let written = as_value(&index.to_json());

        assert_eq!(index.last_pulled(), None);
        assert_eq!(written["lastPulled"], 12345);
    }

    #[test]
    fn set_last_pulled_replaces_the_old_value() {
        let mut index = parse(r#"{"version":1,"lastPulled":12345,"entries":{}}"#);

        index.set_last_pulled("2026-01-01T00:00:00.000Z".to_string());
        let written = as_value(&index.to_json());

        assert_eq!(written["lastPulled"], "2026-01-01T00:00:00.000Z");
    }

    #[test]
    fn empty_index_is_version_1_without_entries() {
        let index = RemoteIndex::empty();

        let written = String::from_utf8(index.to_json()).unwrap();

        assert_eq!(written, "{\n  \"version\": 1,\n  \"entries\": {}\n}");
        assert_eq!(RemoteIndex::parse(written.as_bytes()), Ok(RemoteIndex::empty()));
    }

    #[test]
    fn version_2_is_rejected() {
        let result = RemoteIndex::parse(br#"{"version":2,"entries":{}}"#);

        assert_eq!(result, Err(IndexError::UnsupportedVersion("2".to_string())));
    }

    #[test]
    fn version_must_be_the_number_1() {
        assert_eq!(RemoteIndex::parse(br#"{"entries":{}}"#), Err(IndexError::MissingVersion));
        let as_string = RemoteIndex::parse(br#"{"version":"1","entries":{}}"#);
        assert_eq!(as_string, Err(IndexError::UnsupportedVersion("\"1\"".to_string())));
        assert!(RemoteIndex::parse(br#"{"version":1.0,"entries":{}}"#).is_ok());
    }

    #[test]
    fn missing_entries_are_rejected() {
        let result = RemoteIndex::parse(br#"{"version":1,"lastPulled":"t"}"#);

        assert_eq!(result, Err(IndexError::MissingEntries));
    }

    #[test]
    fn entries_that_are_not_an_object_are_rejected() {
        for entries in ["[]", "[1,{\"a\":2}]", "null", "1", "-1", "1.5", "\"x\"", "true"] {
            let text = format!(r#"{{"version":1,"entries":{entries}}}"#);

            assert_eq!(RemoteIndex::parse(text.as_bytes()), Err(IndexError::EntriesNotAnObject), "{entries}");
        }
    }

    #[test]
    fn non_objects_and_broken_json_are_told_apart() {
        assert_eq!(RemoteIndex::parse(b"[1]"), Err(IndexError::NotAnObject));
        assert_eq!(RemoteIndex::parse(b" null "), Err(IndexError::NotAnObject));
        assert!(matches!(RemoteIndex::parse(b""), Err(IndexError::NotJson(_))));
        assert!(matches!(RemoteIndex::parse(b"{\"version\":1,"), Err(IndexError::NotJson(_))));
        assert!(matches!(RemoteIndex::parse(b"{} trailing"), Err(IndexError::NotJson(_))));
    }

    /// Nothing checks the text before the one-pass reader: it must call broken JSON broken exactly when serde_json
    /// does. Every byte of a sample (official form, escapes, unknown fields, an invalid entry) is replaced by bytes
    /// that break JSON in different ways, and every prefix is tried.
    #[test]
    fn the_one_pass_reader_refuses_exactly_what_serde_json_refuses() {
        let sample = "{\"version\": 1, \"lastPulled\": \"t\", \"entries\": {\"a/b.json\": {\"key\": \"a/b.json\", \"size\": 10, \
             \"lastModified\": \"T1\", \"localMtime\": null}, \"c\\u0041\": {\"size\": 0, \"lastModified\": \"T\", \
             \"x\": [1, 2.5e3, true]}, \"../up\": {\"size\": 1, \"lastModified\": \"T\"}}, \"extra\": {\"n\": -0.5}}";
        assert!(RemoteIndex::parse(sample.as_bytes()).is_ok());
        let json_ok = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).is_ok();
        let mut tried = 0;
        for at in 0..sample.len() {
            let prefix = &sample.as_bytes()[..at];
            let mut variants = vec![prefix.to_vec()];
            for replacement in
                [&b"0"[..], b"00", b"\x01", b"\"", b",", b"}", b"x", b"\xff", b"\xc3", b"\xc3\xa9", b" ", b"\\", b"-"]
            {
                let mut broken = prefix.to_vec();
                broken.extend_from_slice(replacement);
                broken.extend_from_slice(&sample.as_bytes()[at + 1..]);
                variants.push(broken);
            }
            for text in variants {
                tried += 1;
                let parsed = RemoteIndex::parse(&text);
                let refused = matches!(parsed, Err(IndexError::NotJson(_)));
                assert_eq!(refused, !json_ok(&text), "{:?} → {parsed:?}", String::from_utf8_lossy(&text));
            }
        }
        assert!(tried > 2000, "{tried}");
    }

    #[test]
    fn sha256_round_trips_through_the_index() {
        let hash = sha256_of(b"hello");
        let mut index = RemoteIndex::empty();
        index.insert("a".to_string(), IndexEntry::new(5, "t".to_string(), None, Some(hash)));

        let written = index.to_json();
        let reread = RemoteIndex::parse(&written).unwrap();

        assert_eq!(
            as_value(&written)["entries"]["a"]["sha256"],
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(reread.get("a").and_then(|e| e.sha256), Some(hash));
    }

    #[test]
    fn sha256_hex_round_trips_and_accepts_uppercase() {
        let hash = sha256_of(b"");
        let hex = sha256_hex(&hash);

        assert_eq!(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(parse_sha256_hex(&hex), Some(hash));
        assert_eq!(parse_sha256_hex(&hex.to_uppercase()), Some(hash));

        // Every digit in both places of a byte.
        let mut every = [0u8; 32];
        for (i, byte) in every.iter_mut().enumerate() {
            *byte = ((i as u8 % 16) * 0x11) ^ if i >= 16 { 0x0f } else { 0 };
        }
        let expected: String = every.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(sha256_hex(&every), expected);
        assert_eq!(&expected[..8], "00112233");
        assert_eq!(&expected[32..40], "0f1e2d3c");
    }

    #[test]
    fn malformed_sha256_hex_is_rejected() {
        let hex = sha256_hex(&sha256_of(b""));

        assert_eq!(parse_sha256_hex(&hex[..62]), None);
        assert_eq!(parse_sha256_hex(&format!("{hex}00")), None);
        assert_eq!(parse_sha256_hex(&format!("g{}", &hex[1..])), None);
        assert_eq!(parse_sha256_hex(&format!("é{}", &hex[2..])), None);
    }

    #[test]
    fn scrub_removes_internal_entries_once() {
        let mut index = parse(
            r#"{"version":1,"entries":{
            ".datastore-index.json": {"size":1,"lastModified":"t"},
            ".datastore-sync-state.json": "garbage",
            "_catalog.db-wal": {"size":1,"lastModified":"t"},
            "sub/_catalog.db": {"size":1,"lastModified":"t"},
            "sub/.marsh-tmp-1": {"size":1,"lastModified":"t"},
            "sub/.datastore.lock": {"size":1,"lastModified":"t"},
            "data.json": {"size":1,"lastModified":"t"}}}"#,
        );

        let first = index.scrub_internal();
        let second = index.scrub_internal();

        assert_eq!(
            first,
            [
                ".datastore-index.json",
                ".datastore-sync-state.json",
                "_catalog.db-wal",
                "sub/.marsh-tmp-1",
                "sub/_catalog.db"
            ]
        );
        assert!(second.is_empty());
        let kept: Vec<&str> = index.entries().map(|(rel, _)| rel).collect();
        assert_eq!(kept, ["data.json", "sub/.datastore.lock"]);
        assert!(index.invalid_entries().is_empty());
    }

    #[test]
    fn remove_returns_the_valid_entry() {
        let mut index = RemoteIndex::empty();
        index.insert("a".to_string(), entry(1));

        let removed = index.remove("a");

        assert_eq!(removed, Some(entry(1)));
        assert!(index.is_empty());
        assert_eq!(index.remove("a"), None);
    }

    #[test]
    fn same_content_compares_size_and_known_hashes() {
        let hashed = |size, byte| IndexEntry::new(size, "t".to_string(), None, Some([byte; 32]));

        assert!(entry(3).same_content(&entry(3)));
        assert!(!entry(3).same_content(&entry(4)));
        assert!(hashed(3, 1).same_content(&hashed(3, 1)));
        assert!(!hashed(3, 1).same_content(&hashed(3, 2)));
        assert!(hashed(3, 1).same_content(&entry(3)));
        assert!(!hashed(3, 1).same_content(&entry(4)));
    }

    #[test]
    fn plain_and_general_entry_paths_agree_on_edge_cases() {
        let text = r#"{"version":1,"entries":{
          "plain.json":{"key":"plain.json","size":3,"lastModified":"2026-04-24T00:00:00.000Z"},
          "nokey.json":{"size":3,"lastModified":"2026-04-24T00:00:00.000Z"},
          "nullkey.json":{"key":null,"size":3,"lastModified":"2026-04-24T00:00:00.000Z"},
          "escaped.json":{"key":"escaped.json","size":3,"lastModified":"2026-04-24T00:00:00.000Z\u0000"},
          "float.json":{"key":"float.json","size":3.0,"lastModified":"2026-04-24T00:00:00.000Z"},
          "extra.json":{"key":"extra.json","size":3,"lastModified":"2026-04-24T00:00:00.000Z","owner":"x"},
          "badsha.json":{"key":"badsha.json","size":3,"lastModified":"2026-04-24T00:00:00.000Z","sha256":"zz"},
          "../up.json":{"key":"../up.json","size":3,"lastModified":"2026-04-24T00:00:00.000Z"}
        }}"#;

        let index = RemoteIndex::parse(text.as_bytes()).unwrap();

        let valid: Vec<&str> = index.entries().map(|(rel, _)| rel).collect();
        assert_eq!(valid, ["escaped.json", "extra.json", "float.json", "nokey.json", "plain.json"]);
        let invalid: Vec<String> = index.invalid_entries().into_iter().map(|e| e.key).collect();
        assert_eq!(invalid, ["../up.json", "badsha.json", "nullkey.json"]);
        assert_eq!(index.get("escaped.json").unwrap().last_modified, "2026-04-24T00:00:00.000Z\u{0}");
        assert_eq!(index.get("float.json").unwrap().size, 3);
        let out = String::from_utf8(index.to_json()).unwrap();
        assert!(out.contains(r#""owner": "x""#), "{out}");
        let written: Value = serde_json::from_str(&out).unwrap();
        assert!(written["entries"]["nokey.json"].get("key").is_none(), "a missing key stays missing");
        assert!(written["entries"]["nullkey.json"]["key"].is_null(), "a null key is kept verbatim");
    }
}
