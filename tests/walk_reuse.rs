//! A pull walks the whole cache only when a bare markDirty is pending, and then a push reuses that walk in the same
//! service instance (`engine::Walked`), only when nothing can have changed the cache since. Each guard has a test here
//! that fails without it (checked by removing the guard, as each comment says). Otherwise the pull stats the paths the
//! index and the view name, and a push that must look at the whole cache walks it itself.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{remote_keys, s3_bucket, Machine};
use marsh::path::SIDECAR_NAME;

/// A machine whose cache holds `files`, pushed once, then marked dirty (bare) by another instance and with its verified
/// token forgotten: its next sync takes the full path on both sides, and its pull walks for the push.
fn synced_machine_with_a_pending_mark(bucket: &marsh::testing::memory::MemoryStore, files: &[&str]) -> Machine {
    let machine = Machine::new(bucket, 1);
    for rel in files {
        machine.write(rel, rel.as_bytes());
    }
    machine.push().unwrap();
    machine.second_instance().mark_dirty();
    let mut state = machine.state();
    state.verified_token = None;
    machine.cache.write_file(SIDECAR_NAME, state.to_json());
    machine
}

/// A machine whose cache holds `files`, pushed once, then with its sidecar deleted: its next sync takes the full path
/// on both sides (the slow-path benchmark), with no evidence of a bare mark.
fn synced_machine_without_sidecar(bucket: &marsh::testing::memory::MemoryStore, files: &[&str]) -> Machine {
    let machine = Machine::new(bucket, 1);
    for rel in files {
        machine.write(rel, rel.as_bytes());
    }
    machine.push().unwrap();
    machine.cache.remove_file(SIDECAR_NAME);
    machine
}

#[test]
fn a_sync_walks_the_cache_once_and_reads_the_index_body_once() {
    let bucket = s3_bucket();
    let machine = synced_machine_with_a_pending_mark(&bucket, &["a.json", "d/b.json", "d/e/c.json"]);
    machine.cache.reset_calls();
    machine.store.reset_requests();

    let pull = machine.pull().unwrap();
    let pulled = machine.store.requests();
    let push = machine.push().unwrap();

    assert!(!pull.fast_path && !push.fast_path, "both sides took the full path");
    assert!(push.walk_reused);
    assert_eq!(machine.cache.calls().walk, 1, "one walk for the whole sync");
    // The pull read the commit record and the format marker side by side, then the two shards (`_root`, `d`).
    assert_eq!((pulled.get_bytes, pulled.total()), (4, 4));
    let requests = machine.store.requests();
    assert_eq!((requests.get_bytes, requests.total()), (5, 5), "then only the push's conditional GET");
    assert!(push.clean && push.verified);
    assert_eq!(push.uploaded, 0);
}

#[test]
fn a_file_written_after_the_pull_under_a_mark_dirty_is_pushed() {
    // Guard: the marker captured before the pull's walk must still be current. Without it the push reuses a walk that
    // predates the write, uploads nothing and records clean: x.json is then never pushed.
    let bucket = s3_bucket();
    let machine = synced_machine_with_a_pending_mark(&bucket, &["a.json"]);
    let writer = machine.second_instance();
    machine.pull().unwrap();

    writer.write_bare("x.json", b"written after the pull");
    let push = machine.push().unwrap();

    assert!(!push.walk_reused);
    assert_eq!(push.uploaded, 1);
    assert!(remote_keys(&bucket).contains(&"x.json".to_string()));
}

#[test]
fn a_mark_dirty_through_this_instance_before_its_pull_still_makes_the_push_walk() {
    // Guard: no markDirty through this instance since its last push. swamp may call markDirty, then pull, then write:
    // the marker did not change between the pull and the push, but the write landed after the pull. Without the guard
    // (the pull's `walks_for_push` and the push's check of its own mark) the push reuses the pull's walk and y.json is
    // left behind, with the sidecar marked clean.
    let bucket = s3_bucket();
    let machine = synced_machine_with_a_pending_mark(&bucket, &["a.json"]);
    machine.mark_dirty();
    machine.pull().unwrap();

    machine.cache.write_file("y.json", b"written after the pull".to_vec());
    let push = machine.push().unwrap();

    assert!(!push.walk_reused);
    assert_eq!(push.uploaded, 1);
    assert!(remote_keys(&bucket).contains(&"y.json".to_string()));
}

#[test]
fn a_download_by_another_instance_after_the_pull_makes_the_push_walk() {
    // Guard: the view must be the one the pull left. Another instance's pull changes cache files without a markDirty;
    // it records them in the view. Without the guard the push compares a stale listing: b.json (downloaded by the other
    // instance) looks edited here since its last sync and is uploaded again, rewriting the index for nothing.
    let bucket = s3_bucket();
    let machine = synced_machine_with_a_pending_mark(&bucket, &["a.json", "b.json"]);
    let other_instance = machine.second_instance();
    machine.pull().unwrap();
    let remote_writer = Machine::new(&bucket, 2);
    remote_writer.pull().unwrap();
    remote_writer.write("b.json", b"a newer b from another machine");
    remote_writer.push().unwrap();
    other_instance.pull().unwrap();
    let token_before = bucket.token(marsh::path::INDEX_KEY);

    let push = machine.push().unwrap();

    assert!(!push.walk_reused);
    assert_eq!(push.uploaded, 0, "nothing was edited on this machine");
    assert_eq!(bucket.token(marsh::path::INDEX_KEY), token_before, "the index was not rewritten");
}

#[test]
fn a_remote_change_after_the_pull_is_merged_not_lost() {
    // The reused walk comes with the pull's index only if a conditional GET says it is still current. Without that
    // check the push would write back the pull's index and drop r.json, which another machine pushed meanwhile (W1).
    let bucket = s3_bucket();
    let machine = synced_machine_with_a_pending_mark(&bucket, &["a.json"]);
    machine.pull().unwrap();
    let remote_writer = Machine::new(&bucket, 2);
    remote_writer.write("r.json", b"pushed between our pull and our push");
    remote_writer.push().unwrap();

    let push = machine.push().unwrap();

    assert!(push.walk_reused);
    assert!(!push.verified, "r.json is not here yet: the new index cannot be verified");
    let keys = remote_keys(&bucket);
    assert!(keys.contains(&"r.json".to_string()) && keys.contains(&"a.json".to_string()), "{keys:?}");
}

#[test]
fn local_files_the_pull_found_are_uploaded_by_the_push_without_a_second_walk() {
    let bucket = s3_bucket();
    let machine = synced_machine_with_a_pending_mark(&bucket, &["a.json"]);
    // Written before the pull (its markDirty too): the pull's walk sees it and keeps it for the push.
    let writer = machine.second_instance();
    writer.write("new.json", b"written before the sync");
    machine.cache.reset_calls();

    let pull = machine.pull().unwrap();
    let push = machine.push().unwrap();

    assert_eq!(pull.downloaded, 0);
    assert!(push.walk_reused);
    assert_eq!(machine.cache.calls().walk, 1);
    assert_eq!(push.uploaded, 1);
    assert!(remote_keys(&bucket).contains(&"new.json".to_string()));
}

#[test]
fn files_the_pull_downloaded_are_not_uploaded_back() {
    // The listing kept for the push carries the stats of the pull's downloads; with the walk's stale stats the push
    // would see c.json as edited here.
    let bucket = s3_bucket();
    let machine = synced_machine_with_a_pending_mark(&bucket, &["a.json"]);
    let remote_writer = Machine::new(&bucket, 2);
    remote_writer.write("c.json", b"from another machine");
    remote_writer.push().unwrap();
    let token_before = bucket.token(marsh::path::INDEX_KEY);

    let pull = machine.pull().unwrap();
    let push = machine.push().unwrap();

    assert_eq!(pull.downloaded, 1);
    assert!(push.walk_reused);
    assert_eq!(push.uploaded, 0);
    assert_eq!(bucket.token(marsh::path::INDEX_KEY), token_before);
    assert!(push.verified && push.clean);
}

#[test]
fn a_second_push_walks_again() {
    // The walk is taken by the first push: a later push (after a markDirty elsewhere) must not see it.
    let bucket = s3_bucket();
    let machine = synced_machine_with_a_pending_mark(&bucket, &["a.json"]);
    machine.pull().unwrap();
    assert!(machine.push().unwrap().walk_reused);
    machine.second_instance().write("z.json", b"later");

    let push = machine.push().unwrap();

    assert!(!push.walk_reused);
    assert_eq!(push.uploaded, 1);
}

#[test]
fn a_pull_of_a_clean_cache_stats_the_indexed_paths_and_does_not_walk() {
    // The common slow path: another machine pushed, nothing is pending here. The push after it has nothing to look at,
    // so a walk would be for nothing.
    let bucket = s3_bucket();
    let machine = Machine::new(&bucket, 1);
    machine.write("a.json", b"a");
    machine.write("d/b.json", b"b");
    machine.push().unwrap();
    let remote_writer = Machine::new(&bucket, 2);
    remote_writer.write("d/c.json", b"from another machine");
    remote_writer.push().unwrap();
    machine.cache.reset_calls();

    let pull = machine.pull().unwrap();
    let push = machine.push().unwrap();

    assert!(!pull.fast_path && pull.verified);
    assert_eq!(pull.downloaded, 1);
    let calls = machine.cache.calls();
    assert_eq!((calls.walk, calls.stat_many), (0, 2), "the view's paths, then the one path only the index names");
    assert!(push.fast_path, "nothing to push");
    assert_eq!(machine.cache.file("d/c.json").as_deref(), Some(&b"from another machine"[..]));
}

#[test]
fn a_push_after_a_pull_that_did_not_walk_walks_and_finds_the_files_only_here() {
    // Without a sidecar nothing says a bare mark is pending, so the pull stats only the paths it decides on and hands
    // the push no listing. The push must look at the whole cache (nothing is known clean): were it to take the pull's
    // stats for a walk, only-here.json (written without markDirty, as the official extension's caches are) would be
    // left out and the cache recorded clean.
    let bucket = s3_bucket();
    let machine = synced_machine_without_sidecar(&bucket, &["a.json"]);
    machine.cache.write_file("only-here.json", b"never marked".to_vec());
    machine.cache.reset_calls();

    let pull = machine.pull().unwrap();
    assert_eq!(machine.cache.calls().walk, 0, "the pull does not walk");
    let push = machine.push().unwrap();

    assert!(!pull.fast_path && !push.fast_path);
    assert!(!push.walk_reused);
    assert_eq!(machine.cache.calls().walk, 1, "the push's own walk");
    assert_eq!(push.uploaded, 1);
    assert!(remote_keys(&bucket).contains(&"only-here.json".to_string()));
    assert!(push.clean && push.verified);
}

#[test]
fn a_slow_path_pull_of_more_paths_than_a_stat_batch_decides_each_path_by_its_own_stat() {
    // 2,600 paths: three stat batches of 1,024, the later ones asked two at a time. A path's answer must be paired with
    // that path, and the listing kept in path order, or the pull would take an edit here for a stale file (or the
    // reverse) in the later batches.
    // The changed paths sit in the second batch (d30: from path 1,560) and the third (d45, d48: from 2,340).
    let bucket = s3_bucket();
    let files: Vec<String> = (0..2600).map(|i| format!("d{:02}/f{i:04}.json", i % 50)).collect();
    let refs: Vec<&str> = files.iter().map(String::as_str).collect();
    let machine = synced_machine_without_sidecar(&bucket, &refs);
    let remote_writer = Machine::new(&bucket, 2);
    remote_writer.pull().unwrap();
    for rel in ["d30/f1530.json", "d30/f2530.json"] {
        remote_writer.write(rel, b"newer, from another machine");
    }
    remote_writer.push().unwrap();
    machine.cache.write_file("d45/f2145.json", b"edited here".to_vec());
    machine.cache.remove_file("d48/f2248.json");
    machine.cache.reset_calls();

    let pull = machine.pull().unwrap();

    assert_eq!(machine.cache.calls().stat_many, 3, "the view's 2,600 paths in three batches");
    assert_eq!(pull.kept_local, ["d45/f2145.json"]);
    assert_eq!(pull.downloaded, 3, "the two newer files and the one missing here (no mark says it was deleted)");
    for rel in ["d30/f1530.json", "d30/f2530.json"] {
        assert_eq!(machine.cache.file(rel).as_deref(), Some(&b"newer, from another machine"[..]), "{rel}");
    }
    assert_eq!(machine.cache.file("d45/f2145.json").as_deref(), Some(&b"edited here"[..]));
    assert_eq!(machine.cache.file("d48/f2248.json").as_deref(), Some(&b"d48/f2248.json"[..]));
}
