//! An index reader written from the format description alone (docs/formats.md), sharing no code with marsh's index
//! layer: tests use it to see what any other reader of the bucket would see.
//!
//! Format 2 when `_index/_meta.json` says version 2: every listed shard, each `{"version":1,"entries":{…}}`. Otherwise
//! the monolith `.datastore-index.json` (unless it is sealed: a version-2 monolith without entries); otherwise the
//! shards found under `_index/`.

use std::collections::BTreeMap;

use serde_json::Value;

use marsh::testing::memory::MemoryStore;

pub const META: &str = "_index/_meta.json";
pub const MONOLITH: &str = ".datastore-index.json";

/// What a reader finds: the layout, the commit object's token (if any), and every entry as raw JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub format: u8,
    pub commit_token: Option<String>,
    pub entries: BTreeMap<String, Value>,
    /// Format 2: which shard each entry came from.
    pub shard_of: BTreeMap<String, String>,
}

pub fn read(bucket: &MemoryStore) -> Found {
    if let Some((bytes, token)) = bucket.object(META) {
        let meta: Value = serde_json::from_slice(&bytes).expect("_meta.json is JSON");
        if meta["version"] == 2 {
            let partitions: Vec<String> = meta["partitions"]
                .as_array()
                .expect("partitions is an array")
                .iter()
                .map(|name| name.as_str().expect("a shard name").to_string())
                .collect();
            return shards(bucket, &partitions, Some(token.as_str().to_string()));
        }
    }
    if let Some((bytes, token)) = bucket.object(MONOLITH) {
        let monolith: Value = serde_json::from_slice(&bytes).expect("the monolith is JSON");
        if monolith["version"] == 1 {
            let entries = monolith["entries"].as_object().expect("entries").clone().into_iter().collect();
            return Found {
                format: 1,
                commit_token: Some(token.as_str().to_string()),
                entries,
                shard_of: BTreeMap::new(),
            };
        }
    }
    let listed: Vec<String> = bucket
        .keys()
        .into_iter()
        .filter_map(|key| Some(key.strip_prefix("_index/")?.strip_suffix(".json")?.to_string()))
        .filter(|name| name != "_meta" && !name.contains('/'))
        .collect();
    shards(bucket, &listed, None)
}

fn shards(bucket: &MemoryStore, names: &[String], commit_token: Option<String>) -> Found {
    let mut found = Found { format: 2, commit_token, entries: BTreeMap::new(), shard_of: BTreeMap::new() };
    for name in names {
        let key = format!("_index/{name}.json");
        let (bytes, _) = bucket.object(&key).unwrap_or_else(|| panic!("listed shard {key} is missing"));
        let shard: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{key} is not JSON: {e}"));
        assert_eq!(shard["version"], 1, "{key} is a version-1 document");
        for (rel, entry) in shard["entries"].as_object().unwrap_or_else(|| panic!("{key} has entries")) {
            let previous = found.shard_of.insert(rel.clone(), name.clone());
            assert!(previous.is_none(), "{rel} is in two shards: {previous:?} and {name}");
            found.entries.insert(rel.clone(), entry.clone());
        }
    }
    found
}

/// The entry's size and, when recorded, its content hash.
pub fn size_and_hash(entry: &Value) -> (u64, Option<String>) {
    (entry["size"].as_u64().expect("size"), entry["sha256"].as_str().map(str::to_string))
}
