//! Format 2 through the engine: buckets in the exact shapes the official extensions write (compact JSON, fields marsh
//! does not know), what a pull and a push make of them, what marsh's writes leave for other readers, and W24.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::reader::{self, META};
use common::{format1_bucket, s3_bucket, Machine};
use marsh::engine::SyncError;
use marsh::index::{sha256_hex, sha256_of};
use marsh::path::INDEX_KEY;
use marsh::testing::memory::{MemoryStore, TokenStyle};
use serde_json::json;

/// An official entry as the August extension writes it (no `sha256`; `localMtime`; a field marsh does not know).
fn official_entry(rel: &str, bytes: &[u8]) -> serde_json::Value {
    json!({"key": rel, "size": bytes.len(), "lastModified": "2026-10-02T08:00:00.000Z",
           "localMtime": "2026-10-02T07:59:59.000Z", "contentType": "application/octet-stream"})
}

/// A bucket the official extension sharded and then pushed to: shards and `_meta.json` in its compact shapes, plus a
/// stale monolith it no longer writes.
fn official_v2_bucket(style: TokenStyle, files: &[(&str, &[u8])]) -> MemoryStore {
    let bucket = MemoryStore::new(style);
    let mut shards: std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>> = Default::default();
    for (rel, bytes) in files {
        bucket.put_raw(rel, bytes.to_vec());
        let shard = marsh::index::shard::official_shard(rel).expect("fixture paths have an official shard");
        shards.entry(shard.into_owned()).or_default().insert(rel.to_string(), official_entry(rel, bytes));
    }
    for (name, entries) in &shards {
        let shard = json!({"version": 1, "entries": entries, "compactedBy": "swamp 2026.10"});
        bucket.put_raw(&format!("_index/{name}.json"), serde_json::to_vec(&shard).unwrap());
    }
    let meta = json!({"version": 2, "partitions": shards.keys().collect::<Vec<_>>(), "commitSeq": 41,
                      "lastCompacted": "2026-10-01T00:00:00.000Z"});
    bucket.put_raw(META, serde_json::to_vec(&meta).unwrap());
    bucket.put_raw(
        INDEX_KEY,
        br#"{"version":1,"entries":{"stale.json":{"key":"stale.json","size":1,"lastModified":"x"}}}"#.to_vec(),
    );
    bucket
}

const FILES: [(&str, &[u8]); 4] = [
    ("README.md", b"readme"),
    ("data/aws/ec2/i-1/state/3/raw", b"{\"state\":\"running\"}"),
    ("data/aws/ec2/i-1/state/3/meta.yaml", b"v: 3"),
    ("workflow-runs/r-1/run.json", b"{}"),
];

/// W24: a reader that knew only the monolith read a stale index on a sharded bucket and missed everything pushed since.
#[test]
fn w24_a_pull_of_an_official_sharded_bucket_sees_every_shard_and_not_the_stale_monolith() {
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        let bucket = official_v2_bucket(style, &FILES);
        let reader = Machine::new(&bucket, 1);

        let report = reader.pull().unwrap();

        assert_eq!(report.downloaded, 4);
        assert!(report.verified);
        assert_eq!(
            reader.data_files(),
            [
                "README.md",
                "data/aws/ec2/i-1/state/3/meta.yaml",
                "data/aws/ec2/i-1/state/3/raw",
                "workflow-runs/r-1/run.json"
            ]
        );
        assert!(reader.cache.file("stale.json").is_none(), "the monolith of a sharded bucket is not read");
        assert_eq!(reader.state().verified_token, bucket.token(META));
    }
}

/// W24's other half: an official push after marsh's pull (a new model, and a file whose size changed) is seen by the
/// next pull, which reads the shards again because `_meta.json` moved.
#[test]
fn w24_official_pushes_after_a_pull_are_seen_by_the_next_pull() {
    let bucket = official_v2_bucket(TokenStyle::S3, &FILES);
    let reader = Machine::new(&bucket, 1);
    reader.pull().unwrap();
    // The official extension pushes a new model and a bigger raw, rewriting those shards and _meta.json.
    let newer = official_v2_bucket(
        TokenStyle::S3,
        &[
            ("README.md", b"readme"),
            ("data/aws/ec2/i-1/state/3/raw", b"{\"state\":\"stopped\",\"reason\":\"user\"}"),
            ("data/aws/ec2/i-1/state/3/meta.yaml", b"v: 3"),
            ("data/aws/ec2/i-2/state/1/raw", b"{\"state\":\"pending\"}"),
            ("workflow-runs/r-1/run.json", b"{}"),
        ],
    );
    for key in newer.keys() {
        let (bytes, _) = newer.object(&key).unwrap();
        if bucket.object(&key).map(|(old, _)| old) != Some(bytes.clone()) {
            bucket.put_raw(&key, bytes);
        }
    }

    let report = reader.pull().unwrap();

    assert!(!report.fast_path);
    assert_eq!(report.downloaded, 2);
    assert_eq!(reader.cache.file("data/aws/ec2/i-1/state/3/raw").unwrap(), br#"{"state":"stopped","reason":"user"}"#);
    assert!(reader.cache.file("data/aws/ec2/i-2/state/1/raw").is_some());
}

/// A marsh push to an official bucket: only the changed file's shard and `_meta.json` are written; what marsh does
/// not know survives; the commit sequence advances; no monolith is written; any reader sees the result.
#[test]
fn a_push_to_an_official_sharded_bucket_rewrites_one_shard_and_the_record() {
    let bucket = official_v2_bucket(TokenStyle::Gcs, &FILES);
    let writer = Machine::new(&bucket, 1);
    writer.pull().unwrap();
    let monolith = bucket.object(INDEX_KEY);
    let untouched = bucket.object("_index/data--aws--ec2--i-1.json");
    writer.write("workflow-runs/r-1/run.json", b"{\"done\":true}");
    writer.store.reset_requests();

    let report = writer.push().unwrap();

    assert_eq!(report.uploaded, 1);
    let requests = writer.store.requests();
    assert_eq!((requests.put, requests.put_bytes), (1, 2), "the file, then its shard and _meta.json");
    assert_eq!(bucket.object(INDEX_KEY), monolith, "never a monolith on a format-2 bucket");
    assert_eq!(bucket.object("_index/data--aws--ec2--i-1.json"), untouched);
    let meta: serde_json::Value = serde_json::from_slice(&bucket.object(META).unwrap().0).unwrap();
    assert_eq!(meta["commitSeq"], 42);
    assert_eq!(meta["lastCompacted"], "2026-10-01T00:00:00.000Z");
    let shard: serde_json::Value =
        serde_json::from_slice(&bucket.object("_index/workflow-runs--r-1.json").unwrap().0).unwrap();
    assert_eq!(shard["compactedBy"], "swamp 2026.10", "a shard's unknown fields are kept");
    let entry = &shard["entries"]["workflow-runs/r-1/run.json"];
    assert_eq!(entry["size"], 13);
    assert_eq!(entry["sha256"], sha256_hex(&sha256_of(b"{\"done\":true}")));
    assert_eq!(reader::read(&bucket).entries["README.md"]["contentType"], "application/octet-stream");
}

#[test]
fn a_zero_diff_pull_and_push_on_format_2_is_one_conditional_get() {
    let bucket = official_v2_bucket(TokenStyle::S3, &FILES);
    let machine = Machine::new(&bucket, 1);
    machine.pull().unwrap();
    machine.push().unwrap();
    machine.store.reset_requests();

    let pull = machine.pull().unwrap();
    let push = machine.push().unwrap();

    assert!(pull.fast_path && push.fast_path);
    let requests = machine.store.requests();
    assert_eq!((requests.get_bytes, requests.total()), (1, 1));
}

#[test]
fn a_new_bucket_starts_as_format_2_and_a_format_1_bucket_stays_format_1() {
    let fresh = s3_bucket();
    let a = Machine::new(&fresh, 1);
    a.write("logs/x.log", b"x");
    a.push().unwrap();
    assert_eq!(reader::read(&fresh).format, 2);
    assert!(fresh.object(INDEX_KEY).is_none());

    let old = format1_bucket(s3_bucket(), &[("a.json", b"1")]);
    let b = Machine::new(&old, 2);
    b.pull().unwrap();
    b.write("logs/x.log", b"x");
    b.push().unwrap();
    assert_eq!(reader::read(&old).format, 1);
    assert_eq!(reader::read(&old).entries.len(), 2);
}

#[test]
fn a_newer_format_marker_stops_pull_and_push_before_anything_is_written() {
    let bucket = official_v2_bucket(TokenStyle::S3, &FILES);
    bucket.put_raw("_control/datastore-format", br#"{"format":3,"writtenBy":"swamp 2027"}"#.to_vec());
    let machine = Machine::new(&bucket, 1);
    machine.write("new.json", b"n");
    let before = bucket.snapshot();

    let pulled = machine.pull().unwrap_err();
    let pushed = machine.push().unwrap_err();

    assert!(matches!(&pulled, SyncError::FormatUnsupported(m) if m.contains("format 3")), "{pulled}");
    assert!(matches!(pushed, SyncError::FormatUnsupported(_)));
    assert_eq!(bucket.snapshot(), before, "nothing written");
    assert!(machine.data_files() == ["new.json"], "nothing downloaded");
}

/// The same bucket and cache reach the same state whether marsh syncs it as format 1 or after a migration.
#[test]
fn a_cache_synced_on_format_1_keeps_syncing_after_the_migration() {
    let bucket = format1_bucket(s3_bucket(), &[("a.json", b"1"), ("data/t/i/x/raw", b"2")]);
    let machine = Machine::new(&bucket, 1);
    machine.pull().unwrap();
    let migrated = block_on_migrate(&machine);
    assert!(migrated.converted);
    let other = Machine::new(&bucket, 2);
    other.write("data/t/i/y/raw", b"3");
    other.push().unwrap();

    let report = machine.pull().unwrap();

    assert!(!report.fast_path, "the verified token was the monolith's");
    assert_eq!(report.downloaded, 1);
    assert_eq!(machine.data_files(), ["a.json", "data/t/i/x/raw", "data/t/i/y/raw"]);
}

fn block_on_migrate(machine: &Machine) -> marsh::index::Migrated {
    marsh::testing::sim::block_on(machine.engine().migrate_index()).unwrap()
}
