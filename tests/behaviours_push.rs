//! B- and W-list behaviours of `push_changed` and `mark_dirty` (catalogue: docs/behaviours.md), one scenario each.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{commit_token, format1_bucket, remote_index, remote_keys, s3_bucket, Machine};
use marsh::engine::SyncError;
use marsh::path::{INDEX_KEY, SIDECAR_NAME};
use marsh::store::StoreError;
use marsh::testing::memory::{sha256, Kind};

#[test]
fn b2_push_after_a_verified_sync_with_no_local_change_makes_no_request() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("a.json", b"1");
    a.push().unwrap();
    a.store.reset_requests();

    let report = a.push().unwrap();

    assert!(report.fast_path);
    assert_eq!(report.uploaded, 0);
    assert_eq!(a.store.requests().total(), 0);
}

#[test]
fn b7_push_with_nothing_to_upload_recreates_a_deleted_sidecar() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("a.json", b"1");
    a.push().unwrap();
    a.cache.remove_file(SIDECAR_NAME);

    let report = a.push().unwrap();

    assert_eq!(report.uploaded, 0);
    assert!(report.verified && report.clean);
    assert_eq!(a.state().verified_token, commit_token(&bucket));
    assert!(a.push().unwrap().fast_path);
}

#[test]
fn b8_mark_dirty_forces_a_full_push_and_never_rewrites_the_sidecar() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("a.json", b"1");
    a.push().unwrap();
    let sidecar_before = a.cache.file(SIDECAR_NAME);
    let stat_before = a.cache.file_stat(SIDECAR_NAME);

    a.mark_dirty();
    a.mark_dirty();

    assert_eq!(a.cache.file(SIDECAR_NAME), sidecar_before);
    assert_eq!(a.cache.file_stat(SIDECAR_NAME), stat_before);
    // A different instance (no in-memory mark) still sees the marker on disk.
    let report = a.second_instance().push().unwrap();
    assert!(!report.fast_path);
}

#[test]
fn b9_a_file_written_without_mark_dirty_may_be_skipped_by_the_push_fast_path() {
    // Documented contract: swamp calls markDirty before writing into the cache.
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("a.json", b"1");
    a.push().unwrap();
    a.cache.write_file("sneaky.json", b"2".to_vec());

    let report = a.push().unwrap();

    assert!(report.fast_path);
    assert_eq!(remote_keys(&bucket), ["a.json"]);
}

#[test]
fn b10_push_keeps_remote_entries_that_are_absent_locally() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("a.json", b"1");
    a.push().unwrap();
    let b = Machine::new(&bucket, 2);
    b.write("b.json", b"2");

    b.push().unwrap();

    assert_eq!(remote_keys(&bucket), ["a.json", "b.json"]);
}

/// Entries for internal files, as a careless writer could leave them, added to the index objects of either layout.
fn pollute(bucket: &marsh::testing::memory::MemoryStore) {
    let junk = |rel: &str| serde_json::json!({"key": rel, "size": 1, "lastModified": "2026-01-01T00:00:00.000Z"});
    let edit = |key: &str, change: &dyn Fn(&mut serde_json::Value)| {
        let mut value: serde_json::Value =
            bucket.object(key).map_or(serde_json::json!({"version": 1, "entries": {}}), |(bytes, _)| {
                serde_json::from_slice(&bytes).unwrap()
            });
        change(&mut value);
        bucket.put_raw(key, serde_json::to_vec(&value).unwrap());
    };
    let add = |value: &mut serde_json::Value, rels: &[&str]| {
        for rel in rels {
            value["entries"][*rel] = junk(rel);
        }
    };
    if bucket.object("_index/_meta.json").is_none() {
        edit(INDEX_KEY, &|index| add(index, &["_catalog.db", "m/_catalog.db-wal", ".datastore-sync-state.json"]));
        return;
    }
    edit("_index/_root.json", &|shard| add(shard, &["_catalog.db", ".datastore-sync-state.json"]));
    edit("_index/m.json", &|shard| add(shard, &["m/_catalog.db-wal"]));
    edit("_index/_meta.json", &|meta| meta["partitions"] = serde_json::json!(["_root", "m"]));
}

#[test]
fn b11_internal_entries_are_scrubbed_from_the_index_and_the_second_push_is_quiet() {
    for bucket in [s3_bucket(), format1_bucket(s3_bucket(), &[])] {
        let a = Machine::new(&bucket, 1);
        a.write("a.json", b"1");
        a.push().unwrap();
        pollute(&bucket);
        assert_eq!(remote_index(&bucket).len(), 4);
        let b = Machine::new(&bucket, 2);

        assert_eq!(b.pull().unwrap().downloaded, 1, "internal entries are never downloaded");
        let first = b.push().unwrap();

        assert_eq!(first.uploaded, 0);
        assert!(first.index_written);
        assert_eq!(first.scrubbed.len(), 3);
        assert_eq!(remote_keys(&bucket), ["a.json"]);
        b.mark_dirty();
        let second = b.push().unwrap();
        assert!(!second.fast_path && !second.index_written);
    }
}

#[test]
fn b12_an_index_read_error_stops_the_push_before_any_upload() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("a.json", b"1");
    a.store.faults().fail_matching(Kind::GetBytes, |_| true, StoreError::Http { status: 400, message: "?".into() });

    let error = a.push().unwrap_err();

    assert!(matches!(error, SyncError::IndexUnreadable(_)), "{error}");
    let requests = a.store.requests();
    assert_eq!((requests.put, requests.put_bytes), (0, 0));
    assert!(bucket.keys().is_empty());
}

#[test]
fn b12_a_missing_index_means_an_empty_bucket() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("a.json", b"1");

    let report = a.push().unwrap();

    assert_eq!(report.uploaded, 1);
    assert!(report.verified, "every entry of the index we created is here");
}

#[test]
fn b13_one_failed_upload_does_not_stop_the_others_and_the_error_lists_it() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    for rel in ["a.json", "b.json", "c.json", "d.json"] {
        a.write(rel, rel.as_bytes());
    }
    let denied = StoreError::Auth { status: Some(403), message: "AccessDenied".into() };
    a.store.faults().fail_matching(Kind::Put, |rel| rel == "b.json", denied);

    let error = a.push().unwrap_err();

    let message = error.to_string();
    assert!(message.contains("1 file failed (b.json)") && message.contains("HTTP 403"), "{message}");
    assert_eq!(remote_keys(&bucket), ["a.json", "c.json", "d.json"], "uploaded objects are still indexed");
    assert!(!a.state().is_clean_at(Some("anything")));
    assert!(!a.push().unwrap_err().to_string().is_empty(), "still dirty: the next push retries b.json");
}

#[test]
fn b15_already_aborted_push_makes_no_request() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("a.json", b"1");
    a.env.abort();

    assert_eq!(a.push().unwrap_err(), SyncError::Aborted);
    assert_eq!(a.store.requests().total(), 0);
}

#[test]
fn b18_push_counts_files_actually_uploaded() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("a.json", b"1");
    a.write("b.json", b"2");
    assert_eq!(a.push().unwrap().uploaded, 2);
    a.write("b.json", b"3");

    assert_eq!(a.push().unwrap().uploaded, 1);
}

#[test]
fn w6_files_pulled_from_another_machine_are_not_uploaded_again() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    for rel in ["a.json", "b.json", "c.json"] {
        a.write(rel, rel.as_bytes());
    }
    a.push().unwrap();
    let b = Machine::new(&bucket, 2);
    b.pull().unwrap();
    b.mark_dirty();
    let token_before = bucket.token(INDEX_KEY);

    let report = b.push().unwrap();

    assert_eq!(report.uploaded, 0);
    assert!(!report.index_written);
    assert_eq!(bucket.token(INDEX_KEY), token_before, "everyone's fast path stays valid");
}

#[test]
fn w7_a_file_that_vanishes_during_the_walk_is_skipped_explicitly() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("keep.json", b"1");
    a.write("gone.json", b"2");
    a.cache.vanish_on_next_walk("gone.json");

    let report = a.push().unwrap();

    assert_eq!(report.vanished, ["gone.json"]);
    assert_eq!(remote_keys(&bucket), ["keep.json"]);
}

#[test]
fn w7_a_walk_error_fails_the_push_and_never_marks_clean() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("a.json", b"1");
    a.cache.faults().fail_nth(Kind::Walk, 1, StoreError::Io { message: "EACCES: permission denied".into() });

    let error = a.push().unwrap_err();

    assert!(matches!(error, SyncError::Local(_)), "{error}");
    assert!(a.state().clean_marker.is_none());
    assert!(bucket.keys().is_empty());
}

#[test]
fn w8_temp_files_internal_files_and_symlinks_are_never_uploaded() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("real.json", b"1");
    a.write(".marsh-tmp-1234", b"partial");
    a.write("d/.0f8fad5b-d9cb-469f-a165-70867728950e.tmp", b"crash leftover");
    a.write("d/_catalog.db", b"sqlite");
    a.write("d/_catalog.db-shm", b"sqlite");
    a.cache.add_symlink("link.json");

    let report = a.push().unwrap();

    assert_eq!(remote_keys(&bucket), ["real.json"]);
    assert_eq!(report.symlinks, ["link.json"]);
}

#[test]
fn w12_a_file_rewritten_during_its_upload_is_recorded_with_the_bytes_finally_sent() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("f.json", b"first");
    let cache = a.cache.clone();
    let mut rewritten = false;
    a.store.faults().on_call(
        Kind::Put,
        |rel| rel == "f.json",
        move |_| {
            if !rewritten {
                rewritten = true;
                cache.write_file("f.json", b"second".to_vec());
            }
        },
    );

    a.push().unwrap();

    let index = remote_index(&bucket);
    let entry = index.get("f.json").unwrap();
    let (object, _) = bucket.object("f.json").unwrap();
    assert_eq!(object, b"second");
    assert_eq!((entry.size, entry.sha256), (6, Some(sha256(b"second"))));
}

#[test]
fn w18_a_clock_step_backwards_does_not_hide_an_edit() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("f.json", b"abc");
    a.push().unwrap();
    let old_mtime = a.cache.file_stat("f.json").unwrap().mtime_ms;
    a.mark_dirty();
    a.cache.write_file_with_mtime("f.json", b"xyz".to_vec(), old_mtime - 60_000);

    let report = a.push().unwrap();

    assert_eq!(report.uploaded, 1);
    assert_eq!(bucket.object("f.json").unwrap().0, b"xyz");
}

#[test]
fn dry_run_push_lists_the_plan_and_writes_nothing() {
    let bucket = s3_bucket();
    let mut a = Machine::new(&bucket, 1);
    a.write("a.json", b"1");
    a.config.dry_run = true;
    let files_before = a.cache.files();

    let report = a.push().unwrap();

    assert_eq!(report.planned, ["a.json"]);
    assert_eq!(report.uploaded, 0);
    let requests = a.store.requests();
    assert_eq!((requests.put, requests.put_bytes), (0, 0));
    assert_eq!(a.cache.files(), files_before);
}

#[test]
fn b6_files_found_equal_by_hash_count_towards_verified() {
    // B6: b.json is here with the pushed bytes but no view record,
    // so the push hashes it, finds it unchanged, and the index it read is fully present: verified. Without counting the
    // hashed files, the push would leave the cache unverified and every later pull on the full path.
    let bucket = s3_bucket();
    let writer = Machine::new(&bucket, 1);
    writer.write("b.json", b"same bytes");
    writer.push().unwrap();
    let copy = Machine::new(&bucket, 2);
    copy.write("b.json", b"same bytes");

    let push = copy.push().unwrap();

    assert_eq!(push.uploaded, 0, "equal by hash: nothing to upload");
    assert!(push.verified);
}

/// W1 with a lost reply: A's index PUT lands but its answer times out; the retry meets its own write (precondition
/// failed), re-reads, and finds its entries already there.
#[test]
fn w1_index_write_whose_reply_was_lost_is_merged_not_duplicated() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("a.json", b"1");
    let timeout = marsh::store::StoreError::Transient { status: None, message: "timeout".into() };
    a.store.faults().fail_nth_after_effect(Kind::PutBytes, 1, timeout);

    a.push().unwrap();

    assert_eq!(remote_keys(&bucket), ["a.json"]);
}
