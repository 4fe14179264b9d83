//! W20: an open conflict is settled only by the user's choice (`resolve`), and the choice is carried out by the
//! ordinary pull and push rules: keep-local wins the next push only while the bucket still holds the version the user
//! saw; keep-remote brings the bucket's version (or its deletion) here. Each case on both index layouts.

mod common;

use common::{format1_bucket, remote_keys, s3_bucket, Machine};
use marsh::engine::{Keep, SyncError};
use marsh::local::conflicts::{ConflictKind, Conflicts, CONFLICTS_NAME};
use marsh::testing::memory::{Kind, MemoryStore};
use marsh::testing::sim::block_on;

/// A bucket holding `f.json` = "base" (`format1`: a monolith; else the sharded layout a new bucket gets) and two
/// machines that have both pulled it.
fn two_synced(format1: bool) -> (MemoryStore, Machine, Machine) {
    let bucket = if format1 { format1_bucket(s3_bucket(), &[("f.json", b"base")]) } else { s3_bucket() };
    if !format1 {
        let writer = Machine::new(&bucket, 99);
        writer.write("f.json", b"base");
        writer.push().expect("populate");
    }
    let a = Machine::new(&bucket, 1);
    let b = Machine::new(&bucket, 2);
    a.pull().unwrap();
    b.pull().unwrap();
    (bucket, a, b)
}

fn resolve(machine: &Machine, rel: &str, keep: Keep) -> Result<marsh::engine::Resolved, SyncError> {
    block_on(machine.engine().resolve(rel, keep))
}

fn open_conflicts(machine: &Machine) -> Vec<(String, ConflictKind)> {
    let report = Conflicts::parse(machine.cache.file(CONFLICTS_NAME).as_deref());
    report.conflicts.into_iter().map(|(rel, open)| (rel, open.kind)).collect()
}

fn remote(bucket: &MemoryStore, rel: &str) -> Option<Vec<u8>> {
    bucket.object(rel).map(|(bytes, _)| bytes)
}

/// Both edit f.json; A pushes first; B's push is refused with a conflict.
fn both_edited(format1: bool) -> (MemoryStore, Machine, Machine) {
    let (bucket, a, b) = two_synced(format1);
    a.write("f.json", b"a's edit");
    a.push().unwrap();
    b.write("f.json", b"b's longer edit");
    let refused = b.push().unwrap_err();
    assert!(matches!(&refused, SyncError::Conflicts { .. }), "{refused}");
    assert_eq!(open_conflicts(&b), [("f.json".to_string(), ConflictKind::BothChanged)]);
    (bucket, a, b)
}

#[test]
fn w20_keep_local_makes_the_local_edit_the_buckets_on_the_next_push() {
    for format1 in [false, true] {
        let (bucket, a, b) = both_edited(format1);

        let resolved = resolve(&b, "f.json", Keep::Local).unwrap();

        assert!(resolved.marked_for_push && !resolved.downloaded);
        assert!(open_conflicts(&b).is_empty(), "the record goes once the choice is written");
        assert_eq!(remote(&bucket, "f.json").as_deref(), Some(&b"a's edit"[..]), "nothing sent before the push");
        let pushed = b.push().unwrap();
        assert_eq!(pushed.uploaded, 1);
        assert!(pushed.conflicts.is_empty());
        assert_eq!(remote(&bucket, "f.json").as_deref(), Some(&b"b's longer edit"[..]));
        let pulled = a.pull().unwrap();
        assert_eq!(pulled.downloaded, 1, "format1={format1}");
        assert_eq!(a.cache.file("f.json").as_deref(), Some(&b"b's longer edit"[..]));
        assert!(b.pull().unwrap().conflicts.is_empty());
    }
}

#[test]
fn w20_keep_local_still_loses_to_an_edit_pushed_after_the_choice() {
    // The choice is "my version over the one I saw", not "over anything": a third edit after it is a new conflict.
    let (bucket, a, b) = both_edited(false);
    resolve(&b, "f.json", Keep::Local).unwrap();
    a.write("f.json", b"a again");
    a.push().unwrap();

    let refused = b.push().unwrap_err();

    assert!(matches!(&refused, SyncError::Conflicts { conflicts, .. } if conflicts[0].0 == "f.json"), "{refused}");
    assert_eq!(remote(&bucket, "f.json").as_deref(), Some(&b"a again"[..]));
    assert_eq!(b.cache.file("f.json").as_deref(), Some(&b"b's longer edit"[..]));
}

#[test]
fn w20_keep_remote_replaces_the_local_edit_and_leaves_nothing_to_push() {
    for format1 in [false, true] {
        let (bucket, _a, b) = both_edited(format1);

        let resolved = resolve(&b, "f.json", Keep::Remote).unwrap();

        assert!(resolved.downloaded && !resolved.marked_for_push);
        assert_eq!(b.cache.file("f.json").as_deref(), Some(&b"a's edit"[..]));
        assert!(open_conflicts(&b).is_empty());
        let pushed = b.push().unwrap();
        assert_eq!(pushed.uploaded, 0, "format1={format1}");
        assert!(pushed.deleted.is_empty());
        assert_eq!(remote(&bucket, "f.json").as_deref(), Some(&b"a's edit"[..]));
    }
}

#[test]
fn w20_deleted_there_changed_here_either_way() {
    for keep in [Keep::Local, Keep::Remote] {
        let (bucket, a, b) = two_synced(false);
        a.delete("f.json");
        a.push().unwrap();
        b.write("f.json", b"b's edit");
        let pulled = b.pull().unwrap();
        assert_eq!(pulled.conflicts, [("f.json".to_string(), ConflictKind::DeletedThere)]);

        let resolved = resolve(&b, "f.json", keep).unwrap();
        b.push().unwrap();

        if keep == Keep::Local {
            assert!(resolved.marked_for_push);
            assert_eq!(remote(&bucket, "f.json").as_deref(), Some(&b"b's edit"[..]), "recreated in the bucket");
            assert_eq!(remote_keys(&bucket), ["f.json"]);
        } else {
            assert!(resolved.removed_local);
            assert_eq!(b.cache.file("f.json"), None, "the deletion reached this cache");
            assert_eq!(remote(&bucket, "f.json"), None, "and nothing came back");
            assert!(remote_keys(&bucket).is_empty());
        }
    }
}

#[test]
fn w20_deleted_here_changed_there_either_way() {
    for keep in [Keep::Local, Keep::Remote] {
        let (bucket, a, b) = two_synced(false);
        b.delete("f.json");
        a.write("f.json", b"a's edit");
        a.push().unwrap();
        let refused = b.push().unwrap_err();
        assert!(matches!(&refused, SyncError::Conflicts { .. }), "{refused}");
        assert_eq!(open_conflicts(&b), [("f.json".to_string(), ConflictKind::DeletedHere)]);

        resolve(&b, "f.json", keep).unwrap();
        let pushed = b.push().unwrap();

        if keep == Keep::Local {
            assert_eq!(pushed.deleted, ["f.json"]);
            assert_eq!(remote(&bucket, "f.json"), None);
            assert!(remote_keys(&bucket).is_empty());
            a.pull().unwrap();
            assert_eq!(a.cache.file("f.json"), None, "the deletion reached the other machine");
        } else {
            assert!(pushed.deleted.is_empty());
            assert_eq!(b.cache.file("f.json").as_deref(), Some(&b"a's edit"[..]), "restored here");
            assert_eq!(remote(&bucket, "f.json").as_deref(), Some(&b"a's edit"[..]));
        }
    }
}

#[test]
fn resolve_refuses_a_path_without_an_open_conflict_and_changes_nothing() {
    let (_bucket, _a, b) = two_synced(false);
    b.write("f.json", b"mine");
    for rel in ["f.json", "../f.json", "/etc/passwd", ".marsh-view.json"] {
        let error = resolve(&b, rel, Keep::Remote).unwrap_err();
        assert!(matches!(&error, SyncError::NoConflict { rel: named, .. } if named == rel), "{rel}: {error}");
        assert!(error.to_string().contains(rel), "{error}");
    }
    assert_eq!(b.cache.file("f.json").as_deref(), Some(&b"mine"[..]), "keep-remote was refused: the edit stays");
}

#[test]
fn keep_remote_never_overwrites_a_write_that_lands_after_the_conflict_was_found() {
    // The resolve downloads on condition that the local file is the one it looked at.
    let (_bucket, _a, b) = both_edited(false);
    let writer = b.cache.clone();
    b.cache.faults().on_call(
        Kind::Download,
        |rel| rel == "f.json",
        move |rel| writer.write_file(rel, "written meanwhile"),
    );

    let error = resolve(&b, "f.json", Keep::Remote).unwrap_err();

    assert!(error.to_string().contains("f.json"), "{error}");
    assert_eq!(b.cache.file("f.json").as_deref(), Some(&b"written meanwhile"[..]));
    assert_eq!(open_conflicts(&b).len(), 1, "still open");
}
