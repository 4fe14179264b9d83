//! W21–W23 as a user meets them: deletions that reach the other machines, pushes of marked paths that look at those
//! paths only, and the guard that keeps a wiped cache from emptying the bucket.

mod common;

use common::{format1_bucket, remote_keys, s3_bucket, Machine};
use marsh::engine::SyncError;
use marsh::testing::memory::MemoryStore;

/// A bucket holding `files` (`format1`: a monolith, else the sharded layout) and a machine that pulled it.
fn synced(format1: bool, files: &[(&str, &[u8])]) -> (MemoryStore, Machine) {
    let bucket = if format1 { format1_bucket(s3_bucket(), files) } else { s3_bucket() };
    if !format1 {
        let writer = Machine::new(&bucket, 99);
        for (rel, bytes) in files {
            writer.write(rel, bytes);
        }
        writer.push().expect("populate");
    }
    let machine = Machine::new(&bucket, 1);
    machine.pull().unwrap();
    (bucket, machine)
}

fn numbered(count: usize) -> Vec<(String, Vec<u8>)> {
    (0..count).map(|i| (format!("m/{:03}.json", i), format!("{{\"n\":{i}}}").into_bytes())).collect()
}

fn as_files(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files.iter().map(|(rel, bytes)| (rel.as_str(), bytes.as_slice())).collect()
}

#[test]
fn w21_a_marked_deletion_reaches_the_bucket_and_the_other_machines() {
    for format1 in [false, true] {
        let (bucket, a) = synced(format1, &[("keep.json", b"k"), ("gone.json", b"g")]);
        let b = Machine::new(&bucket, 2);
        b.pull().unwrap();

        a.delete("gone.json");
        let pushed = a.push().unwrap();

        assert_eq!(pushed.deleted, ["gone.json"], "format1={format1}");
        assert_eq!(remote_keys(&bucket), ["keep.json"]);
        assert_eq!(bucket.object("gone.json"), None, "the object goes with its entry");
        let pulled = b.pull().unwrap();
        assert_eq!(pulled.removed, ["gone.json"]);
        assert_eq!(pulled.downloaded, 0, "a removal is not a download");
        assert_eq!(b.data_files(), ["keep.json"]);
        b.mark_dirty();
        b.push().unwrap();
        assert_eq!(remote_keys(&bucket), ["keep.json"], "B's push does not bring it back");
        assert_eq!(a.pull().unwrap().downloaded, 0);
        assert_eq!(a.data_files(), ["keep.json"]);
    }
}

#[test]
fn w21_a_marked_folder_deletes_everything_under_it() {
    let (bucket, a) = synced(false, &[("d/x.json", b"x"), ("d/e/y.json", b"y"), ("dz.json", b"z")]);
    a.mark_path("d");
    a.cache.remove_file("d/x.json");
    a.cache.remove_file("d/e/y.json");

    let pushed = a.push().unwrap();

    assert_eq!(pushed.deleted, ["d/e/y.json", "d/x.json"]);
    assert_eq!(remote_keys(&bucket), ["dz.json"], "a sibling with the folder's name as prefix stays");
}

/// `count` models in swamp's layout: one shard each on format 2.
fn models(count: usize) -> Vec<(String, Vec<u8>)> {
    (0..count).map(|i| (format!("data/t/m{i:03}/state/1/raw"), format!("{{\"n\":{i}}}").into_bytes())).collect()
}

#[test]
fn w22_a_push_of_marked_paths_looks_at_those_paths_only() {
    // The same push in a bucket of 20 and of 400 files, each file in a shard of its own: the same calls, no walk, and
    // only the changed file's shard read.
    let mut costs = Vec::new();
    for count in [20, 400] {
        let files = models(count);
        let (bucket, a) = synced(false, &as_files(&files));
        // The first push after setting up a cache looks at all of it (nothing says what changed here unmarked before).
        assert!(!a.push().unwrap().marked_only);
        a.cache.reset_calls();
        let before = bucket.requests();
        a.write("data/t/m007/state/1/raw", b"{\"n\":\"seven\"}");

        let pushed = a.push().unwrap();

        assert!(pushed.marked_only, "{pushed:?}");
        assert_eq!((pushed.uploaded, pushed.marks_cleared), (1, 1));
        let calls = a.cache.calls();
        assert_eq!(calls.walk, 0, "no walk of the cache");
        assert_eq!(calls.walk_under, 1);
        let requests = bucket.requests().total() - before.total();
        costs.push((requests, calls.stat + calls.hash + calls.prepare_upload));
        let b = Machine::new(&bucket, 3);
        b.pull().unwrap();
        assert_eq!(b.cache.file("data/t/m007/state/1/raw").as_deref(), Some(&b"{\"n\":\"seven\"}"[..]));
        assert_eq!(b.data_files().len(), count);
    }
    assert_eq!(costs[0], costs[1], "the cost does not grow with the bucket");
    assert!(costs[0].0 <= 6, "requests for one marked file: {}", costs[0].0);
}

#[test]
fn w23_a_bare_mark_after_a_wipe_refuses_to_empty_the_bucket() {
    for format1 in [false, true] {
        let files = numbered(40);
        let (bucket, a) = synced(format1, &as_files(&files));
        a.mark_dirty();
        for (rel, _) in &files {
            a.cache.remove_file(rel);
        }

        let error = a.push().unwrap_err();

        assert!(matches!(&error, SyncError::MassDeletion { count: 40, limit: 25, .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("40 files") && message.contains("m/000.json"), "{message}");
        assert_eq!(remote_keys(&bucket).len(), 40, "nothing deleted");
        assert!(bucket.object("m/000.json").is_some());

        // The way back: a pull that restores what the mark would have deleted.
        let mut restoring = Machine::new(&bucket, 1);
        restoring.cache = a.cache.instance();
        restoring.config.restore_deleted = true;
        let pulled = restoring.pull().unwrap();
        assert_eq!(pulled.downloaded, 40, "format1={format1}");
        assert_eq!(a.data_files().len(), 40);
    }
}

#[test]
fn w23_deletions_up_to_the_limit_after_a_bare_mark_go_through_and_the_limit_is_configurable() {
    let files = numbered(30);
    let (bucket, mut a) = synced(false, &as_files(&files));
    a.mark_dirty();
    for (rel, _) in files.iter().take(3) {
        a.cache.remove_file(rel);
    }
    a.config.max_inferred_deletions = 2;
    assert!(matches!(a.push().unwrap_err(), SyncError::MassDeletion { count: 3, limit: 2, .. }));
    assert_eq!(remote_keys(&bucket).len(), 30);

    a.config.max_inferred_deletions = 3;
    let pushed = a.push().unwrap();

    assert_eq!(pushed.deleted.len(), 3);
    assert_eq!(remote_keys(&bucket).len(), 27);
}

#[test]
fn w23_marked_deletions_are_not_counted_against_the_guard() {
    let files = numbered(30);
    let (bucket, a) = synced(false, &as_files(&files));
    for (rel, _) in &files {
        a.delete(rel);
    }

    let pushed = a.push().unwrap();

    assert_eq!(pushed.deleted.len(), 30, "each was named by a markDirty: deliberate");
    assert!(remote_keys(&bucket).is_empty());
}
