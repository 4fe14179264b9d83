//! The commit record of a format-2 index (`_index/_meta.json`) and the bucket's format marker
//! (`_control/datastore-format`).
//!
//! `_meta.json` lists the shards and counts commits; every commit rewrites it last, so its version token is the commit
//! token a fast path compares. Fields we do not know (`lastCompacted`, a newer writer's) are kept for the rewrite.

use serde_json::{Map, Value};

use super::shard::is_valid_shard_name;
use crate::sorted::sort_paths;

pub const META_KEY: &str = "_index/_meta.json";
/// Prefix of the shard objects (and of `_meta.json`), for listing them.
pub const SHARD_FOLDER: &str = "_index/";
pub const FORMAT_MARKER_KEY: &str = "_control/datastore-format";
/// The highest format this reader understands.
pub const SUPPORTED_FORMAT: u64 = 2;
/// Larger markers are refused unread: it is a small record, and anything bigger is not one.
pub const MAX_MARKER_BYTES: u64 = 64 * 1024;

/// `_meta.json` as read or about to be written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Meta {
    /// Shard names, sorted, each once.
    pub partitions: Vec<String>,
    pub commit_seq: u64,
    /// Fields other than `version`, `partitions` and `commitSeq`, in their order.
    extra: Map<String, Value>,
}

/// What a `_meta.json` says about the layout.
#[derive(Debug, PartialEq)]
pub enum MetaRead {
    Sharded(Meta),
    /// A version other than 2: the official readers then fall back to the monolith, and so do we.
    OtherVersion,
}

impl Meta {
    /// Parse `_meta.json`. An error names what is wrong; the caller names the object.
    pub fn parse(bytes: &[u8]) -> Result<MetaRead, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        let Value::Object(mut fields) = value else { return Err("not a JSON object".to_string()) };
        if fields.get("version").and_then(Value::as_f64) != Some(2.0) {
            return match fields.get("version") {
                Some(Value::Number(_)) => Ok(MetaRead::OtherVersion),
                _ => Err("version is missing or not a number".to_string()),
            };
        }
        let partitions = match fields.remove("partitions") {
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(name) if is_valid_shard_name(&name) => Ok(name),
                    other => Err(format!("partition {other} is not a shard name")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err("partitions is missing or not an array".to_string()),
        };
        let commit_seq = match fields.remove("commitSeq") {
            Some(value) => value.as_u64().ok_or("commitSeq is not a non-negative integer")?,
            None => return Err("commitSeq is missing".to_string()),
        };
        fields.remove("version");
        let mut meta = Meta { partitions, commit_seq, extra: fields };
        sort_paths(&mut meta.partitions);
        meta.partitions.dedup();
        Ok(MetaRead::Sharded(meta))
    }

    /// Compact JSON: `version`, `partitions`, `commitSeq`, then the fields kept.
    pub fn to_json(&self) -> Vec<u8> {
        let mut fields = Map::new();
        fields.insert("version".into(), Value::from(2));
        fields.insert("partitions".into(), Value::from(self.partitions.clone()));
        fields.insert("commitSeq".into(), Value::from(self.commit_seq));
        fields.extend(self.extra.iter().map(|(name, value)| (name.clone(), value.clone())));
        serde_json::to_vec(&Value::Object(fields)).expect("a JSON value serialises")
    }

    /// The record after one more commit that wrote `shards`: their names added, the sequence advanced.
    pub fn next(&self, shards: impl IntoIterator<Item = String>) -> Meta {
        let mut next = self.clone();
        next.partitions.extend(shards);
        sort_paths(&mut next.partitions);
        next.partitions.dedup();
        next.commit_seq += 1;
        next
    }

    /// A record for shards found by listing `_index/` (no `_meta.json` to go by).
    pub fn rebuilt(mut partitions: Vec<String>) -> Meta {
        sort_paths(&mut partitions);
        partitions.dedup();
        Meta { partitions, ..Meta::default() }
    }
}

/// Why a format marker stops this reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerProblem {
    /// The bucket needs a newer reader.
    TooNew {
        format: u64,
        min_reader_format: u64,
    },
    Invalid(String),
}

/// Check `_control/datastore-format` (`None`: no marker, which means format 2). A marker is refused when a reader
/// of format 2 may not read the bucket (`minReaderFormat`, or `format` when that is absent, above 2) or when it is not
/// a marker at all.
pub fn check_format_marker(bytes: Option<&[u8]>) -> Result<(), MarkerProblem> {
    let Some(bytes) = bytes else { return Ok(()) };
    if bytes.len() as u64 > MAX_MARKER_BYTES {
        return Err(MarkerProblem::Invalid(format!("{} bytes, more than a marker's {MAX_MARKER_BYTES}", bytes.len())));
    }
    let invalid = |why: &str| MarkerProblem::Invalid(why.to_string());
    let value: Value = serde_json::from_slice(bytes).map_err(|e| MarkerProblem::Invalid(format!("not JSON: {e}")))?;
    let positive_integer = |name: &str| match value.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(number) => number
            .as_u64()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| invalid(&format!("{name} is not a positive integer"))),
    };
    if !value.is_object() {
        return Err(invalid("not a JSON object"));
    }
    let format = positive_integer("format")?.ok_or_else(|| invalid("format is missing"))?;
    let min_reader_format = positive_integer("minReaderFormat")?.unwrap_or(format);
    if value.get("writtenBy").is_some_and(|by| !by.is_string()) {
        return Err(invalid("writtenBy is not a string"));
    }
    if min_reader_format > SUPPORTED_FORMAT {
        return Err(MarkerProblem::TooNew { format, min_reader_format });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_official_meta_shape_is_read_and_written_back_with_unknown_fields() {
        let official = br#"{"version":2,"partitions":["data--t--i","_root"],"commitSeq":41,"lastCompacted":"2026-10-01T00:00:00.000Z","future":{"a":1}}"#;
        let MetaRead::Sharded(meta) = Meta::parse(official).unwrap() else { panic!("a v2 meta") };
        assert_eq!(meta.partitions, ["_root", "data--t--i"]);
        assert_eq!(meta.commit_seq, 41);

        let next = meta.next(["logs".to_string(), "_root".to_string()]);

        assert_eq!(
            String::from_utf8(next.to_json()).unwrap(),
            r#"{"version":2,"partitions":["_root","data--t--i","logs"],"commitSeq":42,"lastCompacted":"2026-10-01T00:00:00.000Z","future":{"a":1}}"#
        );
    }

    #[test]
    fn another_version_means_the_monolith_and_broken_records_are_errors() {
        assert_eq!(Meta::parse(br#"{"version":1,"partitions":[]}"#), Ok(MetaRead::OtherVersion));
        for (bytes, why) in [
            (&b"{"[..], "not valid JSON"),
            (b"[]", "not a JSON object"),
            (br#"{"partitions":[],"commitSeq":0}"#, "version"),
            (br#"{"version":2,"commitSeq":0}"#, "partitions"),
            (br#"{"version":2,"partitions":["a",3],"commitSeq":0}"#, "partition 3"),
            (br#"{"version":2,"partitions":["../x"],"commitSeq":0}"#, "partition \"../x\""),
            (br#"{"version":2,"partitions":["_meta"],"commitSeq":0}"#, "partition \"_meta\""),
            (br#"{"version":2,"partitions":[]}"#, "commitSeq is missing"),
            (br#"{"version":2,"partitions":[],"commitSeq":-1}"#, "commitSeq is not"),
        ] {
            let error = Meta::parse(bytes).unwrap_err();
            assert!(error.contains(why), "{error} (expected {why})");
        }
    }

    #[test]
    fn a_rebuilt_record_lists_the_shards_found_at_sequence_zero() {
        let meta = Meta::rebuilt(vec!["b".into(), "a".into(), "b".into()]);
        assert_eq!((meta.partitions.as_slice(), meta.commit_seq), (&["a".to_string(), "b".to_string()][..], 0));
        assert_eq!(Meta::default().next([]).commit_seq, 1);
    }

    #[test]
    fn format_markers_of_format_two_or_less_are_accepted() {
        for marker in [
            &br#"{"format":2}"#[..],
            br#"{"format":2,"writtenBy":"swamp 2026.10"}"#,
            br#"{"format":3,"minReaderFormat":2}"#,
            br#"{"format":1}"#,
        ] {
            assert_eq!(check_format_marker(Some(marker)), Ok(()), "{}", String::from_utf8_lossy(marker));
        }
        assert_eq!(check_format_marker(None), Ok(()));
    }

    #[test]
    fn newer_or_invalid_format_markers_are_refused() {
        assert_eq!(
            check_format_marker(Some(br#"{"format":3}"#)),
            Err(MarkerProblem::TooNew { format: 3, min_reader_format: 3 })
        );
        assert_eq!(
            check_format_marker(Some(br#"{"format":2,"minReaderFormat":4}"#)),
            Err(MarkerProblem::TooNew { format: 2, min_reader_format: 4 })
        );
        for invalid in [
            &b"not json"[..],
            b"[2]",
            b"{}",
            br#"{"format":"2"}"#,
            br#"{"format":0}"#,
            br#"{"format":2.5}"#,
            br#"{"format":2,"minReaderFormat":"x"}"#,
            br#"{"format":2,"writtenBy":7}"#,
        ] {
            assert!(
                matches!(check_format_marker(Some(invalid)), Err(MarkerProblem::Invalid(_))),
                "{}",
                String::from_utf8_lossy(invalid)
            );
        }
        let huge = format!(r#"{{"format":2,"pad":"{}"}}"#, "x".repeat(70_000));
        assert!(matches!(check_format_marker(Some(huge.as_bytes())), Err(MarkerProblem::Invalid(_))));
    }
}
