//! The `entries` object of an index, read in one pass over its text.
//!
//! An entry in the form the official writers and we produce (only the known fields, strings without escapes, an integer
//! size) is read straight from the text: no JSON value is built and nothing is copied but the key and the two
//! timestamps. Anything else (unknown fields, escapes, `null` where a string belongs, `12.0`, duplicates, an unsafe
//! path) goes to serde_json and `IndexEntry::from_json`, which reads it in full or keeps it verbatim as invalid; text
//! that is not JSON is an error there, never a guess.

use std::borrow::Cow;

use serde_json::Value;

use super::{parse_sha256_hex, IndexEntry, InvalidRaw, KeyField};
use crate::encoding::scan::Scan;
use crate::encoding::stamp::Stamp;
use crate::path::check_rel;

/// One entry as read, in file order: usable, or set aside with the reason.
pub(super) type ReadEntry = (String, Result<IndexEntry, InvalidRaw>);

/// The entries object as read.
#[derive(Debug, PartialEq)]
pub(super) enum Read {
    /// Every entry usable and the keys strictly increasing (how JSON.stringify of a sorted map and our writer leave
    /// them): already the index's sorted list, kept as read.
    InOrder(Vec<(String, IndexEntry)>),
    /// Anything else, in file order (duplicates and order are sorted out by the caller).
    AsWritten(Vec<ReadEntry>),
}

impl Read {
    fn push(&mut self, rel: String, entry: Result<IndexEntry, InvalidRaw>) {
        match (&mut *self, entry) {
            (Read::InOrder(valid), Ok(entry)) if valid.last().is_none_or(|(last, _)| *last < rel) => {
                valid.push((rel, entry))
            }
            (Read::InOrder(valid), entry) => {
                let mut read: Vec<ReadEntry> = Vec::with_capacity(valid.capacity());
                read.extend(valid.drain(..).map(|(rel, entry)| (rel, Ok(entry))));
                read.push((rel, entry));
                *self = Read::AsWritten(read);
            }
            (Read::AsWritten(read), entry) => read.push((rel, entry)),
        }
    }
}

/// Read the entries object at the scanner (which is on its `{`), leaving the scanner after its `}`.
pub(super) fn read_entries(scan: &mut Scan<'_>) -> Result<Read, String> {
    scan.expect(b'{')?;
    // Official entries take about 290 bytes of pretty JSON.
    let mut read = Read::InOrder(Vec::with_capacity(scan.remaining() / 256));
    scan.whitespace();
    if scan.peek() == Some(b'}') {
        scan.at += 1;
        return Ok(read);
    }
    loop {
        let (rel, entry) = read_member(scan)?;
        read.push(rel, entry);
        scan.whitespace();
        match scan.next()? {
            b',' => {}
            b'}' => return Ok(read),
            other => return Err(scan.unexpected(other)),
        }
    }
}

/// One `"key": {entry}` member. Deliberately a function of its own: a wasm engine starts with baseline code and swaps in
/// optimised code only between calls, so the read of a whole index in one call would run at baseline speed throughout,
/// while this function is optimised after its first few hundred entries.
#[inline(never)]
fn read_member(scan: &mut Scan<'_>) -> Result<ReadEntry, String> {
    scan.whitespace();
    let rel = scan.string()?;
    let plain_rel = matches!(rel, Cow::Borrowed(_));
    let rel = rel.into_owned();
    scan.whitespace();
    scan.expect(b':')?;
    scan.whitespace();
    let start = scan.at;
    let entry = match scan.plain_entry(&rel, plain_rel) {
        Some(entry) => Ok(entry),
        None => {
            scan.at = start;
            let raw = scan.raw_value()?;
            let value: Value = serde_json::from_str(raw.get()).map_err(|err| err.to_string())?;
            IndexEntry::from_json(&rel, value).map_err(|(reason, raw)| InvalidRaw { reason, raw })
        }
    };
    Ok((rel, entry))
}

/// The entry fields the plain path reads (`KNOWN_ENTRY_FIELDS`).
#[derive(Clone, Copy)]
enum Field {
    Key,
    Size,
    LastModified,
    LocalMtime,
    Sha256,
}

impl Scan<'_> {
    /// The name of a known field, written plainly (compared, not scanned: five names, on every entry); `None` for any
    /// other name or spelling, which the general path reads.
    fn known_field(&mut self) -> Option<Field> {
        let rest = &self.text_bytes()[self.at..];
        let (field, literal): (Field, &[u8]) = match (rest.get(1)?, rest.get(2)?) {
            (b'k', _) => (Field::Key, b"\"key\""),
            (b's', b'i') => (Field::Size, b"\"size\""),
            (b's', _) => (Field::Sha256, b"\"sha256\""),
            (b'l', b'a') => (Field::LastModified, b"\"lastModified\""),
            (b'l', _) => (Field::LocalMtime, b"\"localMtime\""),
            _ => return None,
        };
        if !rest.starts_with(literal) {
            return None;
        }
        self.at += literal.len();
        Some(field)
    }

    /// The common entry, or `None` to take the general path from where it started.
    /// `plain_rel`: `rel` was written without escapes (so `"rel"` in the text is that string).
    pub(super) fn plain_entry(&mut self, rel: &str, plain_rel: bool) -> Option<IndexEntry> {
        if self.peek()? != b'{' {
            return None;
        }
        self.at += 1;
        let mut key: Option<&str> = None;
        let mut size: Option<u64> = None;
        let mut last_modified: Option<&str> = None;
        let mut local_mtime: Option<Option<&str>> = None;
        let mut sha256: Option<Option<&str>> = None;
        loop {
            self.whitespace();
            let name = self.known_field()?;
            self.whitespace();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.whitespace();
            // A repeated field is left to the general path (which keeps the last one, as JSON.parse does).
            match name {
                Field::Key if key.is_none() => {
                    key = Some(if plain_rel && self.plain_string_equal_to(rel) { rel } else { self.plain_string()? })
                }
                Field::Size if size.is_none() => size = Some(self.plain_integer()?),
                Field::LastModified if last_modified.is_none() => last_modified = Some(self.plain_string()?),
                Field::LocalMtime if local_mtime.is_none() => local_mtime = Some(self.optional_plain_string()?),
                Field::Sha256 if sha256.is_none() => sha256 = Some(self.optional_plain_string()?),
                _ => return None,
            }
            self.whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    break;
                }
                _ => return None,
            }
        }
        check_rel(rel).ok()?;
        let sha256 = match sha256.flatten() {
            Some(hex) => Some(parse_sha256_hex(hex)?),
            None => None,
        };
        let key_field = match key {
            None => KeyField::Absent,
            Some(key) if key == rel => KeyField::SameAsPath,
            Some(key) => KeyField::Differs(key.into()),
        };
        let (last_modified, local_mtime) = (Stamp::from(last_modified?), local_mtime.flatten().map(Stamp::from));
        Some(IndexEntry { size: size?, last_modified, local_mtime, sha256, key_field, extra: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn general(rel: &str, json: &str) -> Result<IndexEntry, InvalidRaw> {
        let value: Value = serde_json::from_str(json).expect("test JSON");
        IndexEntry::from_json(rel, value).map_err(|(reason, raw)| InvalidRaw { reason, raw })
    }

    /// A whole text holding one entries object, every entry in file order.
    fn read_entries_text(text: &str) -> Result<Vec<ReadEntry>, String> {
        let mut scan = Scan::new(text.as_bytes());
        let read = match read_entries(&mut scan)? {
            Read::InOrder(valid) => valid.into_iter().map(|(rel, entry)| (rel, Ok(entry))).collect(),
            Read::AsWritten(read) => read,
        };
        scan.finish().map(|()| read)
    }

    fn plain(rel: &str, json: &str) -> Option<IndexEntry> {
        Scan::new(json.as_bytes()).plain_entry(rel, true)
    }

    #[test]
    fn the_official_and_our_own_forms_take_the_plain_path_and_read_as_the_general_path_does() {
        let pretty = "{\n      \"key\": \"d/a.json\",\n      \"size\": 451,\n      \"lastModified\": \"2025-10-08T07:56:30.089Z\",\n      \"localMtime\": \"2025-10-08T07:56:25.395Z\"\n    }";
        let cases = [
            pretty.to_string(),
            r#"{"key":"d/a.json","size":0,"lastModified":"T1","localMtime":"T0"}"#.to_string(),
            format!(r#"{{"size":18446744073709551615,"lastModified":"T1","sha256":"{SHA}","key":"d/a.json"}}"#),
            r#"{"key":"other/name.json","size":3,"lastModified":"T1","localMtime":null,"sha256":null}"#.to_string(),
            r#"{"size":3,"lastModified":"T1"}"#.to_string(),
        ];
        for json in &cases {
            let fast = plain("d/a.json", json).unwrap_or_else(|| panic!("not read as plain: {json}"));
            assert_eq!(Ok(fast), general("d/a.json", json), "{json}");
        }
    }

    #[test]
    fn anything_unusual_goes_to_the_general_path_and_reads_the_same_there() {
        let cases = [
            r#"{"key":"d/a.json","size":1,"lastModified":"T1","extra":{"x":[1,2]}}"#.to_string(),
            r#"{"key":"d\/a.json","size":1,"lastModified":"T\u0031"}"#.to_string(),
            r#"{"size":12.0,"lastModified":"T1"}"#.to_string(),
            r#"{"size":1e3,"lastModified":"T1"}"#.to_string(),
            r#"{"size":-1,"lastModified":"T1"}"#.to_string(),
            r#"{"size":18446744073709551616,"lastModified":"T1"}"#.to_string(),
            r#"{"size":1,"lastModified":null}"#.to_string(),
            r#"{"size":1}"#.to_string(),
            r#"{"key":null,"size":1,"lastModified":"T1"}"#.to_string(),
            r#"{"size":1,"size":2,"lastModified":"T1"}"#.to_string(),
            r#"{"size":1,"lastModified":"T1","sha256":"not hex"}"#.to_string(),
            // Names that start like known ones, or are known ones spelt with an escape.
            r#"{"keys":"d/a.json","size":1,"lastModified":"T1"}"#.to_string(),
            r#"{"size":1,"lastModifiedAt":"T0","lastModified":"T1"}"#.to_string(),
            r#"{"\u0073ize":1,"lastModified":"T1"}"#.to_string(),
            r#"{"s":1,"size":1,"lastModified":"T1"}"#.to_string(),
            r#"{"size":1,"lastModified":"T1","local":null}"#.to_string(),
            r#"{}"#.to_string(),
            r#"[]"#.to_string(),
            r#""text""#.to_string(),
        ];
        for json in &cases {
            assert_eq!(plain("d/a.json", json), None, "{json}");
            let text = format!("{{\"d/a.json\": {json}}}");
            let read = read_entries_text(&text).expect("valid JSON reads");
            assert_eq!(read, vec![("d/a.json".to_string(), general("d/a.json", json))], "{json}");
        }
    }

    #[test]
    fn keys_with_escapes_unsafe_keys_and_odd_spacing_read_like_serde_json() {
        let text = "{ \"a\\u002fb.json\" :{\"size\":1,\"lastModified\":\"T\"} ,\n\t\"../up.json\":{\"size\":2,\"lastModified\":\"T\"},\"c.json\":{\"size\":3,\"lastModified\":\"T\"} }";
        let read = read_entries_text(text).expect("reads");
        let keys: Vec<&str> = read.iter().map(|(rel, _)| rel.as_str()).collect();
        assert_eq!(keys, ["a/b.json", "../up.json", "c.json"]);
        assert!(read[0].1.is_ok() && read[2].1.is_ok());
        let unsafe_entry = read[1].1.as_ref().expect_err("an unsafe path is set aside");
        assert!(unsafe_entry.reason.contains("unsafe path"), "{}", unsafe_entry.reason);
        assert_eq!(read_entries_text("{ }").expect("empty"), vec![]);
    }

    #[test]
    fn entries_in_key_order_are_kept_as_read_and_anything_else_switches_to_file_order_losing_nothing() {
        let entry = |n: u64| format!(r#"{{"size":{n},"lastModified":"T"}}"#);
        let text = |keys: &[&str]| {
            let fields: Vec<String> =
                keys.iter().enumerate().map(|(n, key)| format!("\"{key}\":{}", entry(n as u64))).collect();
            format!("{{{}}}", fields.join(","))
        };
        let in_order = read_entries(&mut Scan::new(text(&["a", "a/b", "b"]).as_bytes())).expect("reads");
        let Read::InOrder(valid) = in_order else { panic!("sorted, valid entries are kept as read: {in_order:?}") };
        assert_eq!(
            valid.iter().map(|(rel, e)| (rel.as_str(), e.size)).collect::<Vec<_>>(),
            [("a", 0), ("a/b", 1), ("b", 2)]
        );
        // Out of order, repeated, or an entry that is set aside: from there on everything is kept in file order.
        for keys in [&["a", "c", "b", "d"][..], &["a", "b", "b", "c"], &["a", "../x", "b", "c"], &["b", "a"]] {
            let read = read_entries(&mut Scan::new(text(keys).as_bytes())).expect("reads");
            let Read::AsWritten(read) = read else { panic!("{keys:?} must be kept in file order: {read:?}") };
            let order: Vec<&str> = read.iter().map(|(rel, _)| rel.as_str()).collect();
            assert_eq!(order, keys);
            let sizes: Vec<Option<u64>> = read.iter().map(|(_, e)| e.as_ref().ok().map(|e| e.size)).collect();
            let expected: Vec<Option<u64>> =
                keys.iter().enumerate().map(|(n, k)| (*k != "../x").then_some(n as u64)).collect();
            assert_eq!(sizes, expected, "{keys:?}");
        }
    }

    #[test]
    fn text_that_is_not_an_entries_object_is_an_error_not_a_guess() {
        for text in ["{\"a\":{\"size\":1,\"lastModified\":\"T\"}", "{\"a\" {}}", "{\"a\":1} x", "{\"a\":1,}"] {
            assert!(read_entries_text(text).is_err(), "{text}");
        }
    }
}
