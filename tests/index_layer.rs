//! The index layer on its own, on both layouts: what a read returns (and which token comes with it), what a commit
//! writes, how it treats a writer that got there first, bad input, the format marker, and the migration. No engine, no
//! cache: a store, an environment and the layer. What "the bucket holds" is read by `common::reader`, which shares no
//! code with the layer.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::BTreeMap;

use common::format1_bucket;
use common::reader::{self, META};
use marsh::engine::SyncError;
use marsh::index::{Change, Changes, Expected, IndexEntry, IndexLayer, Read, Snapshot};
use marsh::path::INDEX_KEY;
use marsh::store::retry::RetryPolicy;
use marsh::store::token::VersionToken;
use marsh::store::StoreError;
use marsh::testing::memory::{Kind, MemoryStore, TestEnv, TokenStyle};
use marsh::testing::sim::block_on;

const CAS_ATTEMPTS: u32 = 4;

/// A new bucket (it starts as format 2) and a format-1 bucket holding `base.json`, for S3 and GCS tokens.
fn buckets() -> Vec<MemoryStore> {
    [TokenStyle::S3, TokenStyle::Gcs]
        .into_iter()
        .flat_map(|style| [MemoryStore::new(style), format1_bucket(MemoryStore::new(style), &[("base.json", b"b")])])
        .collect()
}

fn entry(size: u64) -> IndexEntry {
    IndexEntry::new(size, "2026-12-01T00:00:00.000Z".into(), None, None)
}

/// Entries for `rels`, whatever is there now.
fn changes(rels: &[&str]) -> Changes {
    let put = |rel: &&str| (rel.to_string(), Change { entry: Some(entry(rel.len() as u64)), expected: Expected::Any });
    Changes { paths: rels.iter().map(put).collect() }
}

/// Run `test` with a layer over `bucket` (its own client, environment and policy).
fn with_layer<T>(
    bucket: &MemoryStore,
    test: impl FnOnce(&IndexLayer<'_, MemoryStore, TestEnv>, &MemoryStore) -> T,
) -> T {
    let (store, env, policy) =
        (bucket.client(), TestEnv::new(1), RetryPolicy { attempts: 1, ..RetryPolicy::default() });
    test(&IndexLayer::new(&store, &env, &policy, CAS_ATTEMPTS), &store)
}

fn read(layer: &IndexLayer<'_, MemoryStore, TestEnv>) -> Snapshot {
    match block_on(layer.read(None)).expect("read succeeds") {
        Read::Found(snapshot) => snapshot,
        Read::NotModified => panic!("an unconditional read answered not-modified"),
    }
}

/// Commit `rels` on top of the index as it is now, from a writer of its own.
fn commit_elsewhere(bucket: &MemoryStore, rels: &'static [&'static str]) {
    with_layer(bucket, |layer, _| {
        let base = read(layer);
        block_on(layer.commit(base, &changes(rels))).expect("the other writer commits");
    });
}

fn keys(snapshot: &Snapshot) -> Vec<String> {
    snapshot.index.entries().map(|(rel, _)| rel.to_string()).collect()
}

fn remote_keys(bucket: &MemoryStore) -> Vec<String> {
    reader::read(bucket).entries.into_keys().collect()
}

fn commit_token(bucket: &MemoryStore) -> Option<VersionToken> {
    bucket.token(META).or_else(|| bucket.token(INDEX_KEY))
}

fn format_of(bucket: &MemoryStore) -> u8 {
    reader::read(bucket).format
}

// ---- Reading

#[test]
fn an_empty_bucket_reads_as_an_empty_format_2_index_without_a_commit_token() {
    with_layer(&MemoryStore::new(TokenStyle::S3), |layer, _| {
        let snapshot = read(layer);

        assert!(snapshot.index.is_empty());
        assert_eq!(snapshot.commit_token(), None);
        assert_eq!(snapshot.format(), 2);
    });
}

/// The seed's rule: the token recorded is that of the read whose content was compared. For a monolith that is the
/// one GET; for shards it is the `_meta.json` read made before them, even if a writer commits between the two.
#[test]
fn a_read_carries_the_commit_token_read_before_its_entries() {
    for bucket in buckets() {
        commit_elsewhere(&bucket, &["a.json"]);
        let format = format_of(&bucket);
        let token_before = commit_token(&bucket);
        with_layer(&bucket, |layer, store| {
            // Another writer commits b.json just before our entries are fetched (the monolith GET, or a shard GET).
            let writer = bucket.client();
            let mut raced = false;
            store.faults().on_call(
                Kind::GetBytes,
                move |key| key == INDEX_KEY || (key.starts_with("_index/") && key != META),
                move |_| {
                    if !raced {
                        raced = true;
                        commit_elsewhere(&writer, &["b.json"]);
                    }
                },
            );

            let snapshot = read(layer);

            assert!(keys(&snapshot).contains(&"b.json".to_string()), "the entries read include the racing commit");
            assert_eq!(snapshot.format(), format);
            if format == 1 {
                assert_eq!(snapshot.commit_token(), commit_token(&bucket).as_ref(), "the token of the GET read");
            } else {
                assert_eq!(snapshot.commit_token(), token_before.as_ref(), "the _meta.json read before the shards");
                assert_ne!(snapshot.commit_token(), commit_token(&bucket).as_ref());
            }
            assert_eq!(store.requests().head, 0, "a token never comes from a separate request");
        });
    }
}

#[test]
fn a_conditional_read_with_the_current_commit_token_is_not_modified() {
    for bucket in buckets() {
        commit_elsewhere(&bucket, &["a.json"]);
        let format = format_of(&bucket);
        with_layer(&bucket, |layer, store| {
            let token = read(layer).commit_token().cloned().expect("a committed index has a token");
            store.reset_requests();

            let unchanged = block_on(layer.read(Some(&token))).unwrap();

            assert!(matches!(unchanged, Read::NotModified));
            // Format 2: one conditional GET of _meta.json. Format 1: _meta.json is absent, then the monolith's 304.
            assert_eq!(store.requests().total(), if format == 2 { 1 } else { 2 });
            let stale = block_on(layer.read(Some(&VersionToken::new("an-older-token")))).unwrap();
            assert!(matches!(stale, Read::Found(snapshot) if keys(&snapshot).contains(&"a.json".to_string())));
        });
    }
}

#[test]
fn a_failed_read_is_an_error_never_an_empty_index() {
    for bucket in buckets() {
        commit_elsewhere(&bucket, &["a.json"]);
        with_layer(&bucket, |layer, store| {
            let denied = StoreError::Auth { status: Some(403), message: "denied".into() };
            store.faults().fail_nth(Kind::GetBytes, 1, denied.clone());

            assert_eq!(block_on(layer.read(None)).unwrap_err(), SyncError::IndexUnreadable(denied));
        });
    }
}

fn corrupt_message(bucket: &MemoryStore) -> String {
    with_layer(bucket, |layer, _| match block_on(layer.read(None)) {
        Err(SyncError::IndexCorrupt(message)) => message,
        other => panic!("expected IndexCorrupt, got {other:?}"),
    })
}

#[test]
fn a_corrupt_index_object_is_an_error_naming_it() {
    let monolith = format1_bucket(MemoryStore::new(TokenStyle::S3), &[]);
    monolith.put_raw(INDEX_KEY, b"{\"version\":1,\"entries\":".to_vec());
    assert!(corrupt_message(&monolith).starts_with(".datastore-index.json:"));

    let sharded = MemoryStore::new(TokenStyle::Gcs);
    commit_elsewhere(&sharded, &["a.json", "logs/x.log"]);
    sharded.put_raw("_index/logs.json", b"[1,2]".to_vec());
    assert!(corrupt_message(&sharded).starts_with("_index/logs.json:"), "{}", corrupt_message(&sharded));

    sharded.put_raw(META, br#"{"version":2,"partitions":"_root","commitSeq":3}"#.to_vec());
    assert!(corrupt_message(&sharded).starts_with("_index/_meta.json:"));
}

#[test]
fn a_listed_shard_that_is_missing_is_an_error_naming_it() {
    let bucket = MemoryStore::new(TokenStyle::S3);
    commit_elsewhere(&bucket, &["a.json", "logs/x.log"]);
    bucket.remove_raw("_index/logs.json");

    let message = corrupt_message(&bucket);

    assert!(message.contains("_index/logs.json does not exist"), "{message}");
}

/// A missing `_meta.json` beside shard objects (a first commit that stopped before it, or a record deleted by hand):
/// the shards found by listing `_index/` are the index; the next commit writes the record, create-only.
#[test]
fn a_missing_commit_record_is_rebuilt_from_the_shards_listed() {
    let bucket = MemoryStore::new(TokenStyle::Gcs);
    commit_elsewhere(&bucket, &["a.json", "logs/x.log"]);
    bucket.remove_raw(META);

    with_layer(&bucket, |layer, _| {
        let snapshot = read(layer);
        assert_eq!(keys(&snapshot), ["a.json", "logs/x.log"]);
        assert_eq!(snapshot.commit_token(), None, "nothing to verify against without a record");

        block_on(layer.commit(snapshot, &changes(&["b.json"]))).unwrap();
    });

    let found = reader::read(&bucket);
    assert!(found.commit_token.is_some());
    assert_eq!(found.entries.into_keys().collect::<Vec<_>>(), ["a.json", "b.json", "logs/x.log"]);
}

// ---- Bad input in shards: kept, reported, never dropped, never written outside the index

#[test]
fn a_key_in_the_wrong_shard_or_an_unsafe_key_is_kept_and_reported_naming_the_object() {
    let bucket = MemoryStore::new(TokenStyle::S3);
    commit_elsewhere(&bucket, &["a.json", "logs/x.log"]);
    let misplaced = r#"{"version":1,"entries":{"logs/x.log":{"key":"logs/x.log","size":10,"lastModified":"t"},"data/a/b/c/raw":{"key":"data/a/b/c/raw","size":3,"lastModified":"t"},"../escape":{"key":"../escape","size":1,"lastModified":"t"}}}"#;
    bucket.put_raw("_index/logs.json", misplaced.as_bytes().to_vec());

    with_layer(&bucket, |layer, _| {
        let snapshot = read(layer);
        let reasons: BTreeMap<String, String> =
            snapshot.index.invalid_entries().into_iter().map(|bad| (bad.key, bad.reason)).collect();
        assert_eq!(keys(&snapshot), ["a.json", "logs/x.log"], "only usable entries are used");
        let reason = &reasons["data/a/b/c/raw"];
        assert!(reason.contains("belongs in _index/data--a--b--c.json, found in _index/logs.json"), "{reason}");
        assert!(reasons["../escape"].contains("in _index/logs.json"), "{}", reasons["../escape"]);

        // A commit that rewrites that shard carries both through.
        block_on(layer.commit(snapshot, &changes(&["logs/y.log"]))).unwrap();
    });
    let shard: serde_json::Value = serde_json::from_slice(&bucket.object("_index/logs.json").unwrap().0).unwrap();
    for rel in ["../escape", "data/a/b/c/raw", "logs/x.log", "logs/y.log"] {
        assert!(shard["entries"].get(rel).is_some(), "{rel} kept");
    }
    assert!(bucket.keys().iter().all(|key| !key.contains("..")), "nothing written at an unsafe key");
}

#[test]
fn unknown_fields_survive_in_shards_and_in_the_commit_record() {
    let bucket = MemoryStore::new(TokenStyle::Gcs);
    commit_elsewhere(&bucket, &["a.json"]);
    bucket.put_raw(
        "_index/_root.json",
        br#"{"version":1,"entries":{"a.json":{"key":"a.json","size":6,"lastModified":"t","owner":"x"}},"writer":"v9"}"#
            .to_vec(),
    );
    let meta = String::from_utf8(bucket.object(META).unwrap().0).unwrap();
    bucket.put_raw(META, meta.replace("}", r#","lastCompacted":"2026-10-01","future":[1]}"#).into_bytes());

    commit_elsewhere(&bucket, &["b.json"]);

    let shard: serde_json::Value = serde_json::from_slice(&bucket.object("_index/_root.json").unwrap().0).unwrap();
    assert_eq!(shard["writer"], "v9");
    assert_eq!(shard["entries"]["a.json"]["owner"], "x");
    let meta: serde_json::Value = serde_json::from_slice(&bucket.object(META).unwrap().0).unwrap();
    assert_eq!((&meta["lastCompacted"], &meta["future"]), (&serde_json::json!("2026-10-01"), &serde_json::json!([1])));
}

// ---- Writing

#[test]
fn a_commit_writes_its_shards_then_the_record_with_the_sequence_advanced() {
    let bucket = MemoryStore::new(TokenStyle::S3);
    let written = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    with_layer(&bucket, |layer, store| {
        let log = written.clone();
        store.faults().on_call(Kind::PutBytes, |_| true, move |key| log.borrow_mut().push(key.to_string()));

        let first = block_on(layer.commit(Snapshot::empty(), &changes(&["a.json", "logs/x.log"]))).unwrap();
        assert_eq!(first.snapshot.partitions(), Some((&["_root".to_string(), "logs".to_string()][..], 1)));
        assert_eq!(first.snapshot.commit_token(), bucket.token(META).as_ref());

        let second = block_on(layer.commit(first.snapshot, &changes(&["logs/y.log"]))).unwrap();
        assert_eq!(second.snapshot.partitions().map(|(_, seq)| seq), Some(2));
    });

    let writes = written.borrow();
    let mut first_shards = writes[..2].to_vec();
    first_shards.sort();
    assert_eq!(first_shards, ["_index/_root.json", "_index/logs.json"]);
    assert_eq!(writes[2], META, "the record is written after the shards");
    assert_eq!(writes[3..], ["_index/logs.json".to_string(), META.to_string()], "one changed shard, then the record");
    assert_eq!(
        String::from_utf8(bucket.object(META).unwrap().0).unwrap(),
        r#"{"version":2,"partitions":["_root","logs"],"commitSeq":2}"#,
        "compact JSON, partitions sorted"
    );
    let shard = String::from_utf8(bucket.object("_index/_root.json").unwrap().0).unwrap();
    assert!(shard.starts_with(r#"{"version":1,"entries":{"a.json":{"key":"a.json","size":6,"#), "{shard}");
    assert!(bucket.object(INDEX_KEY).is_none(), "no monolith on a format-2 bucket");
}

#[test]
fn a_format_1_bucket_stays_format_1_until_migrated() {
    let bucket = format1_bucket(MemoryStore::new(TokenStyle::Gcs), &[("base.json", b"b")]);

    commit_elsewhere(&bucket, &["a.json"]);

    assert_eq!(format_of(&bucket), 1);
    assert_eq!(remote_keys(&bucket), ["a.json", "base.json"]);
    assert!(bucket.keys().iter().all(|key| !key.starts_with("_index/")), "no shard written");
}

#[test]
fn two_commits_from_the_same_base_keep_both_writers_entries() {
    for bucket in buckets() {
        commit_elsewhere(&bucket, &["base.json"]);
        with_layer(&bucket, |layer, _| {
            let base = read(layer);

            let first = block_on(layer.commit(base.clone(), &changes(&["a.json"]))).unwrap();
            let second = block_on(layer.commit(base, &changes(&["b.json", "logs/x.log"]))).unwrap();

            assert!(!first.rebased);
            assert!(second.rebased, "the second writer's base was stale: it re-read and merged");
            assert_eq!(keys(&second.snapshot), ["a.json", "b.json", "base.json", "logs/x.log"]);
            assert_eq!(second.snapshot.commit_token(), commit_token(&bucket).as_ref());
        });
        assert_eq!(remote_keys(&bucket), ["a.json", "b.json", "base.json", "logs/x.log"]);
    }
}

#[test]
fn a_commit_removes_entries_of_internal_files_and_keeps_the_emptied_shard() {
    let bucket = MemoryStore::new(TokenStyle::S3);
    commit_elsewhere(&bucket, &["keep.json", "m/a.json"]);
    bucket.put_raw(
        "_index/m.json",
        br#"{"version":1,"entries":{"m/_catalog.db-wal":{"key":"m/_catalog.db-wal","size":1,"lastModified":"x"}}}"#
            .to_vec(),
    );

    commit_elsewhere(&bucket, &[]);

    assert_eq!(remote_keys(&bucket), ["keep.json"]);
    assert_eq!(bucket.object("_index/m.json").unwrap().0, br#"{"version":1,"entries":{}}"#);
    let meta: serde_json::Value = serde_json::from_slice(&bucket.object(META).unwrap().0).unwrap();
    assert_eq!(meta["partitions"], serde_json::json!(["_root", "m"]));
}

#[test]
fn a_commit_that_keeps_losing_gives_up_with_the_number_of_attempts() {
    for bucket in buckets() {
        commit_elsewhere(&bucket, &["base.json"]);
        let before = remote_keys(&bucket);
        with_layer(&bucket, |layer, store| {
            let base = read(layer);
            store.faults().fail_matching(
                Kind::PutBytes,
                |key| key == INDEX_KEY || key.starts_with("_index/"),
                StoreError::PreconditionFailed { key: "index".into() },
            );

            let outcome = block_on(layer.commit(base, &changes(&["a.json"])));

            assert_eq!(outcome.err(), Some(SyncError::IndexContended { attempts: CAS_ATTEMPTS }));
        });
        assert_eq!(remote_keys(&bucket), before);
    }
}

#[test]
fn the_local_copy_is_the_monolith_read_and_format_2_keeps_none() {
    for bucket in buckets() {
        commit_elsewhere(&bucket, &["a.json"]);
        with_layer(&bucket, |_, _| {});
        let format = format_of(&bucket);
        with_layer(&bucket, |layer, _| {
            let mut snapshot = read(layer);

            let copy = snapshot.take_local_copy();

            if format == 1 {
                let copy = copy.expect("a copy of a monolith read");
                assert_eq!(copy.name, INDEX_KEY);
                assert_eq!(Some(copy.bytes), bucket.object(INDEX_KEY).map(|(bytes, _)| bytes));
                assert!(snapshot.take_local_copy().is_none(), "handed out once");
            } else {
                assert!(copy.is_none());
            }
        });
    }
}

#[test]
fn changes_to_the_same_path_replace_the_entry() {
    for bucket in buckets() {
        commit_elsewhere(&bucket, &["a.json"]);
        with_layer(&bucket, |layer, _| {
            let mut replace = Changes::default();
            replace.put("a.json".to_string(), entry(99), Some(entry(6)));
            let committed = block_on(layer.commit(read(layer), &replace)).unwrap();
            assert!(committed.refused.is_empty());
            assert_eq!(committed.snapshot.index.get("a.json").map(|e| e.size), Some(99));
        });
        assert_eq!(reader::size_and_hash(&reader::read(&bucket).entries["a.json"]).0, 99);
    }
}

// ---- The format marker

#[test]
fn a_newer_or_invalid_format_marker_is_refused_before_anything_is_written() {
    for (marker, expected) in [
        (&br#"{"format":3}"#[..], "format 3"),
        (br#"{"format":2,"minReaderFormat":4}"#, "readers need format 4"),
        (b"{oops", "invalid"),
    ] {
        let bucket = MemoryStore::new(TokenStyle::S3);
        commit_elsewhere(&bucket, &["a.json"]);
        bucket.put_raw("_control/datastore-format", marker.to_vec());
        let before = bucket.snapshot();
        with_layer(&bucket, |layer, _| {
            let error = block_on(layer.read(None)).unwrap_err();
            assert!(matches!(&error, SyncError::FormatUnsupported(m) if m.contains(expected)), "{error}");
            let error = block_on(layer.migrate()).unwrap_err();
            assert!(matches!(&error, SyncError::FormatUnsupported(m) if m.contains(expected)), "{error}");
        });
        assert_eq!(bucket.snapshot().keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
        assert_eq!(remote_keys(&bucket), ["a.json"]);
    }
    let accepted = MemoryStore::new(TokenStyle::S3);
    accepted.put_raw("_control/datastore-format", br#"{"format":2,"writtenBy":"swamp"}"#.to_vec());
    with_layer(&accepted, |layer, _| assert!(block_on(layer.read(None)).is_ok()));
}

// ---- Migration

#[test]
fn migration_moves_every_entry_into_shards_and_seals_the_monolith() {
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        let files: [(&str, &[u8]); 4] =
            [("a.json", b"1"), ("data/aws/ec2/i-1/state/3/raw", b"22"), ("data/t/x", b"3"), ("logs/l", b"4")];
        let bucket = format1_bucket(MemoryStore::new(style), &files);
        let before = reader::read(&bucket).entries;

        let migrated = with_layer(&bucket, |layer, _| block_on(layer.migrate())).unwrap();

        let after = reader::read(&bucket);
        assert_eq!(after.format, 2);
        assert_eq!(after.entries, before, "every entry, unchanged");
        assert_eq!(after.shard_of["data/t/x"], "_unsharded", "a path the official rules give no shard");
        assert_eq!(
            migrated.partitions,
            ["_root", "_unsharded", "data--aws--ec2--i-1", "logs"].map(String::from).to_vec()
        );
        assert!(migrated.converted);
        let sealed: serde_json::Value = serde_json::from_slice(&bucket.object(INDEX_KEY).unwrap().0).unwrap();
        assert_eq!(sealed["version"], 2, "a format-1 reader refuses the sealed monolith");
        assert!(sealed.get("entries").is_none());

        let again = with_layer(&bucket, |layer, _| block_on(layer.migrate())).unwrap();
        assert!(!again.converted);
        assert_eq!((again.partitions, again.commit_seq), (migrated.partitions, migrated.commit_seq));
    }
}

/// A format-1 writer commits between the migration's read and its seal: the seal's compare-and-swap fails, the
/// migration reads again, and the writer's entry is in the shards.
#[test]
fn a_format_1_writer_racing_the_migration_loses_nothing() {
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        let bucket = format1_bucket(MemoryStore::new(style), &[("a.json", b"1")]);
        with_layer(&bucket, |layer, store| {
            let writer = bucket.client();
            let mut raced = false;
            store.faults().on_call(
                Kind::PutBytes,
                |key| key.starts_with("_index/"),
                move |_| {
                    if !raced {
                        raced = true;
                        commit_elsewhere(&writer, &["late.json"]);
                    }
                },
            );

            block_on(layer.migrate()).unwrap();
        });

        assert_eq!(format_of(&bucket), 2);
        assert_eq!(remote_keys(&bucket), ["a.json", "late.json"]);
    }
}

/// A format-1 writer whose read came before the migration and whose commit comes after it: its compare-and-swap on
/// the monolith fails (sealed), it reads again, finds format 2 and commits to the shards.
#[test]
fn a_format_1_writer_that_read_before_the_migration_commits_to_the_shards() {
    let bucket = format1_bucket(MemoryStore::new(TokenStyle::S3), &[("a.json", b"1")]);
    with_layer(&bucket, |layer, _| {
        let stale = read(layer);
        assert_eq!(stale.format(), 1);
        with_layer(&bucket, |migrator, _| block_on(migrator.migrate())).unwrap();

        let committed = block_on(layer.commit(stale, &changes(&["late.json"]))).unwrap();

        assert!(committed.rebased);
        assert_eq!(committed.snapshot.format(), 2);
    });
    assert_eq!(format_of(&bucket), 2);
    assert_eq!(remote_keys(&bucket), ["a.json", "late.json"]);
}

// ---- Changes on condition of the entry decided on (W19, W21)

/// A writer that lost its compare-and-swap re-applies its changes on top of another writer's index: a change whose
/// entry that writer replaced or removed is refused, never put back, on both layouts.
#[test]
fn a_change_whose_entry_another_writer_changed_is_refused_not_reapplied() {
    for bucket in buckets() {
        commit_elsewhere(&bucket, &["a.json", "b.json", "c.json"]);
        with_layer(&bucket, |layer, _| {
            let base = read(layer);
            let seen = |rel: &str| base.index.get(rel).cloned();
            // Another writer replaces a.json and removes b.json after we read.
            with_layer(&bucket, |other, _| {
                let mut theirs = Changes::default();
                theirs.put("a.json".into(), entry(100), seen("a.json"));
                theirs.remove("b.json".into(), seen("b.json").unwrap());
                block_on(other.commit(read(other), &theirs)).unwrap();
            });
            let mut ours = Changes::default();
            ours.put("a.json".into(), entry(200), seen("a.json"));
            ours.put("b.json".into(), entry(200), seen("b.json"));
            ours.remove("c.json".into(), seen("c.json").unwrap());
            ours.put("d.json".into(), entry(200), None);

            let committed = block_on(layer.commit(base, &ours)).unwrap();

            assert!(committed.rebased);
            assert_eq!(committed.refused, ["a.json", "b.json"]);
        });
        let found = reader::read(&bucket).entries;
        let keys: Vec<&String> = found.keys().filter(|rel| *rel != "base.json").collect();
        assert_eq!(keys, ["a.json", "d.json"], "b.json stays deleted, c.json ours gone");
        assert_eq!(reader::size_and_hash(&found["a.json"]).0, 100, "their a.json stays");
    }
}

/// A create-only change meets an entry someone else created: refused. Our own earlier write (an answer lost) is not.
#[test]
fn a_create_over_an_existing_entry_is_refused_but_our_own_retry_is_not() {
    for bucket in buckets() {
        commit_elsewhere(&bucket, &["a.json"]);
        with_layer(&bucket, |layer, _| {
            let mut create = Changes::default();
            create.put("a.json".into(), entry(50), None);
            create.put("n.json".into(), entry(6), None);
            let first = block_on(layer.commit(Snapshot::empty(), &create)).unwrap();
            assert_eq!(first.refused, ["a.json"], "format {}", format_of(&bucket));
            let again = block_on(layer.commit(read(layer), &create)).unwrap();
            assert_eq!(again.refused, ["a.json"], "n.json is already ours: applied, not refused");
        });
        assert_eq!(
            remote_keys(&bucket),
            ["a.json", "base.json", "n.json"]
                .iter()
                .filter(|rel| **rel != "base.json" || format_of(&bucket) == 1)
                .map(|rel| rel.to_string())
                .collect::<Vec<_>>()
        );
    }
}
