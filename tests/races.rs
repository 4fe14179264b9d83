//! The races the official extensions shipped, and two that marsh's own design invites, each replayed at its exact
//! moment with a fault hook. Every test here names the flawed engine variant it catches ("Fails on `flaw-…`"), and the
//! test command shows it: `scripts/check-flaw.sh` runs this file with each flaw and requires exactly those tests to
//! fail.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::rc::Rc;

use common::{commit_token, format1_bucket, gcs_bucket, remote_keys, s3_bucket, Machine};
use marsh::engine::SyncError;
use marsh::local::conflicts::ConflictKind;
use marsh::path::{INDEX_KEY, VIEW_NAME};
use marsh::testing::memory::{Kind, MemoryStore};
use marsh::testing::sim::block_on;

/// The seed (the official extensions' first shipped race): A's slow pull GETs the index at G1 and finds nothing to
/// download; B pushes a new file (index → G2) before A's pull ends; A must record G1, not G2, so that A's next pull
/// takes the slow path and gets B's file. The flawed variant (feature `flaw-post-walk-head`) HEADs the index at the end
/// and records G2: A's next pull then answers "not modified" and B's file stays invisible.
fn seed_scenario(bucket: MemoryStore) {
    let a = Machine::new(&bucket, 1);
    let b = Rc::new(Machine::new(&bucket, 2));
    a.pull().unwrap(); // 1. A's slow-path pull of an empty bucket…
    let g1 = commit_token(&bucket);
    let writer = b.clone();
    let mut pushed = false;
    // A's pull writes its view after its downloads, just before it records what it verified.
    a.cache.faults().on_call(
        Kind::WriteInternal,
        |name| name == VIEW_NAME,
        move |_| {
            if !pushed {
                pushed = true; // 2. …B pushes a new file between A's index read and the end of A's pull.
                writer.write("b-new.json", b"from B");
                writer.push().unwrap();
            }
        },
    );
    let other = Machine::new(&bucket, 3);
    other.write("seed.json", b"x");
    other.push().unwrap();

    let first = a.pull().unwrap(); // 3. A's pull ends.

    assert_ne!(commit_token(&bucket), g1);
    assert_eq!(first.downloaded, 1, "seed.json only: B's file arrived after A's index GET");
    let second = a.pull().unwrap(); // 4. A's next sync must not take the fast path…
    assert!(!second.fast_path);
    assert_eq!(a.cache.file("b-new.json").as_deref(), Some(&b"from B"[..])); // 5. …and B's file is pulled.
}

/// Fails on `flaw-post-walk-head`.
#[test]
fn b5_seed_writer_push_during_a_pull_is_not_hidden_by_the_fast_path_s3() {
    seed_scenario(s3_bucket());
    seed_scenario(format1_bucket(s3_bucket(), &[]));
}

/// Fails on `flaw-post-walk-head`.
#[test]
fn b5_seed_writer_push_during_a_pull_is_not_hidden_by_the_fast_path_gcs() {
    seed_scenario(gcs_bucket());
    seed_scenario(format1_bucket(gcs_bucket(), &[]));
}

/// A new bucket (format 2) and a format-1 bucket, for S3 and GCS tokens.
fn both_formats() -> [MemoryStore; 4] {
    [s3_bucket(), gcs_bucket(), format1_bucket(s3_bucket(), &[]), format1_bucket(gcs_bucket(), &[])]
}

/// Any object of either index layout (the monolith, a shard, the commit record).
fn is_index_object(key: &str) -> bool {
    key == INDEX_KEY || key.starts_with("_index/")
}

/// When `a` first writes the index back, `writer` pushes: both read the same index, `writer` writes first.
fn push_when_index_is_written(a: &Machine, writer: Rc<Machine>) {
    let mut raced = false;
    a.store.faults().on_call(Kind::PutBytes, is_index_object, move |_| {
        if !raced {
            raced = true;
            writer.push().unwrap();
        }
    });
}

/// W1: A and B read the same index, each uploads a file, each writes the index back. With the compare-and-swap, A's
/// write-back fails its precondition, re-reads B's index and merges: both entries survive.
/// Fails on `flaw-blind-index-put`, which overwrites B's index: B's entry is lost.
#[test]
fn w1_concurrent_pushes_of_disjoint_files_lose_no_index_entry() {
    for bucket in both_formats() {
        let a = Machine::new(&bucket, 1);
        let b = Rc::new(Machine::new(&bucket, 2));
        a.write("from-a.json", b"A");
        b.write("from-b.json", b"B");
        push_when_index_is_written(&a, b.clone());

        let report = a.push().unwrap();

        assert_eq!(remote_keys(&bucket), ["from-a.json", "from-b.json"]);
        // Format 1: the monolith's compare-and-swap fails once, the merged write succeeds. Format 2: the same for the
        // shard both wrote, then for the commit record.
        let expected = if common::reader::read(&bucket).format == 1 { 2 } else { 4 };
        assert_eq!(a.store.requests().put_bytes, expected, "each lost compare-and-swap, then merged writes");
        assert!(!report.verified, "B's file is not in A's cache");
    }
}

/// A write-back that had to rebase must not record the merged index as verified. A and B share x.json; B pushes a new
/// x.json while A's own push (of a-only.json) is writing the index back. A re-reads, merges, writes: the index it wrote
/// carries B's x.json, which A's cache does not have, though A's walk found its x.json "in sync" with the index it had
/// read. Without the rebase check (`rebased` in `push.rs`), A would record that index as verified, its next pull would
/// take the fast path and A would keep its own x.json for good: the seed's outcome by another road.
/// Fails on `flaw-verify-rebased`.
#[test]
fn a_rebased_write_back_is_not_verified_against_entries_it_never_compared() {
    for bucket in both_formats() {
        let a = Machine::new(&bucket, 1);
        let b = Rc::new(Machine::new(&bucket, 2));
        a.write("x.json", b"x version 1");
        a.push().unwrap();
        b.pull().unwrap();
        a.write("a-only.json", b"A");
        b.write("x.json", b"x version 2 from B");
        push_when_index_is_written(&a, b.clone());

        let report = a.push().unwrap();
        assert!(report.index_written && !report.verified, "the rebased index holds B's x.json, not compared here");

        let pull = a.pull().unwrap();
        assert!(!pull.fast_path, "nothing verified: the pull reads the index");
        assert_eq!(a.cache.file("x.json").as_deref(), Some(&b"x version 2 from B"[..]));
    }
}

/// W2: markDirty (and a write) in one process, then a full pull in another. The pull must not mark the cache clean.
/// Fails on `flaw-pull-clears-dirty`, which does: the next push takes the fast path and skips the file.
#[test]
fn w2_a_pull_after_mark_dirty_does_not_clear_dirtiness() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("old.json", b"1");
    a.push().unwrap();
    let writer = a.second_instance();
    writer.write_bare("new.json", b"2"); // this process exits without pushing
    let elsewhere = Machine::new(&bucket, 2);
    elsewhere.write("other.json", b"3");
    elsewhere.push().unwrap(); // so that the pull below takes the full path
    let sync = a.second_instance();

    assert_eq!(sync.pull().unwrap().downloaded, 1);
    let pushed = sync.push().unwrap();

    assert_eq!(pushed.uploaded, 1);
    assert_eq!(remote_keys(&bucket), ["new.json", "old.json", "other.json"]);
}

/// W3: a markDirty (and write) landing while a push runs, after its walk, must leave the cache dirty. The push
/// captured the marker before the walk and finds it replaced at the end, so it records nothing clean.
/// Fails on `flaw-clean-at-current-marker`.
#[test]
fn w3_mark_dirty_during_a_push_keeps_the_cache_dirty() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("one.json", b"1");
    let writer = Rc::new(a.second_instance());
    let late = writer.clone();
    let mut wrote = false;
    a.store.faults().on_call(Kind::GetBytes, is_index_object, move |_| {
        if !wrote {
            wrote = true; // after A's walk, before A's write-back
            late.write_bare("two.json", b"2");
        }
    });

    let report = a.push().unwrap();

    assert!(!report.clean);
    assert_eq!(remote_keys(&bucket), ["one.json"]);
    let later = a.second_instance().push().unwrap();
    assert!(!later.fast_path);
    assert_eq!(remote_keys(&bucket), ["one.json", "two.json"]);
}

/// W11 + instance marks: a write whose markDirty landed *before* another instance's push captured the marker, but
/// whose bytes landed after that push walked, is still pushed by the writing instance's own push.
/// Fails on `flaw-ignore-instance-mark`.
#[test]
fn a_writers_own_push_walks_even_if_another_instance_marked_the_cache_clean() {
    let bucket = s3_bucket();
    let a = Machine::new(&bucket, 1);
    a.write("one.json", b"1");
    a.push().unwrap();
    let writer = a.second_instance();
    writer.mark_dirty(); // "about to change"…
    let other = a.second_instance();
    other.push().unwrap(); // …another process pushes (and records clean at the current marker)…
    writer.cache.write_file("late.json", b"late".to_vec()); // …then the bytes land.

    let report = writer.push().unwrap();

    assert!(!report.fast_path);
    assert_eq!(report.uploaded, 1);
    assert_eq!(block_on(async { remote_keys(&bucket) }), ["late.json", "one.json"]);
}

/// W22: a `markDirty({relPath})` (and its write) landing while a push runs survives that push: the push removes only
/// the marks it listed and handled, and the next push takes the file.
/// Fails on `flaw-clear-all-marks`.
#[test]
fn w22_a_mark_made_during_a_push_survives_it() {
    for bucket in [s3_bucket(), gcs_bucket()] {
        let a = Machine::new(&bucket, 1);
        a.write("one.json", b"1");
        let writer = Rc::new(a.second_instance());
        let late = writer.clone();
        let mut wrote = false;
        a.store.faults().on_call(Kind::GetBytes, is_index_object, move |_| {
            if !wrote {
                wrote = true; // after A's walk, before A's commit
                late.write("two.json", b"2");
            }
        });

        let report = a.push().unwrap();

        assert_eq!(report.marks_cleared, 1, "one.json's mark only");
        assert_eq!(remote_keys(&bucket), ["one.json"]);
        let later = a.second_instance().push().unwrap();
        assert!(!later.fast_path);
        assert_eq!(remote_keys(&bucket), ["one.json", "two.json"]);
    }
}

/// W19: A and B edit f.json from the same base. B's whole push lands just before A's object PUT: A's PUT is
/// conditional on the version A last saw, fails, and A gets a conflict; the index and the object both stay B's.
/// Fails on `flaw-blind-object-put`, where A's PUT replaces B's object and the index keeps describing B's bytes.
#[test]
fn w19_two_writers_of_one_file_never_leave_the_index_describing_other_bytes() {
    for bucket in both_formats() {
        let seed = Machine::new(&bucket, 9);
        seed.write("f.json", b"base");
        seed.push().unwrap();
        let a = Machine::new(&bucket, 1);
        let b = Rc::new(Machine::new(&bucket, 2));
        a.pull().unwrap();
        b.pull().unwrap();
        a.write("f.json", b"A's edit");
        b.write("f.json", b"B's longer edit");
        let writer = b.clone();
        let mut raced = false;
        a.store.faults().on_call(
            Kind::Put,
            |key| key == "f.json",
            move |_| {
                if !raced {
                    raced = true;
                    writer.push().unwrap();
                }
            },
        );

        let error = a.push().unwrap_err();

        assert!(matches!(&error, SyncError::Conflicts { conflicts, .. } if conflicts[0].0 == "f.json"), "{error}");
        let entry = common::remote_index(&bucket).get("f.json").cloned().unwrap();
        let (object, _) = bucket.object("f.json").unwrap();
        assert_eq!((entry.size, entry.sha256), (object.len() as u64, Some(marsh::index::sha256_of(&object))));
        assert_eq!(object, b"B's longer edit");
        assert_eq!(a.cache.file("f.json").as_deref(), Some(&b"A's edit"[..]), "A's edit stays here");
    }
}

/// W21: A deletes f.json while B's edit of it is committed: the deletion meets a version it never saw, so it is a
/// conflict and B's edit stays. Fails on `flaw-delete-without-base-check`, which deletes B's edit.
#[test]
fn w21_a_deletion_never_removes_a_version_it_did_not_see() {
    for bucket in both_formats() {
        let seed = Machine::new(&bucket, 9);
        seed.write("f.json", b"base");
        seed.push().unwrap();
        let a = Machine::new(&bucket, 1);
        let b = Machine::new(&bucket, 2);
        a.pull().unwrap();
        b.pull().unwrap();
        b.write("f.json", b"B's edit");
        b.push().unwrap();
        a.delete("f.json");

        let error = a.push().unwrap_err();

        assert!(
            matches!(&error, SyncError::Conflicts { conflicts, .. } if conflicts[0] == ("f.json".to_string(), ConflictKind::DeletedHere)),
            "{error}"
        );
        assert_eq!(bucket.object("f.json").map(|(bytes, _)| bytes).as_deref(), Some(&b"B's edit"[..]));
        assert!(remote_keys(&bucket).contains(&"f.json".to_string()));
    }
}

/// W21 and W19: B deletes f.json while A's edit of it is going up. A's upload lands before B commits the deletion,
/// so B's object delete (conditional on the version B saw) fails, and A's commit then finds the entry gone. A reports
/// "deleted there", keeps its edit here, and removes its own object, which no entry names: the bucket is left with
/// neither an entry nor an orphan that would block recreating the path. Fails on `flaw-keep-orphan-object`.
#[test]
fn w21_an_edit_racing_a_deletion_leaves_no_orphan_object() {
    for bucket in both_formats() {
        let seed = Machine::new(&bucket, 9);
        seed.write("f.json", b"base");
        seed.push().unwrap();
        let a = Machine::new(&bucket, 1);
        let b = Rc::new(Machine::new(&bucket, 2));
        a.pull().unwrap();
        b.pull().unwrap();
        b.delete("f.json");
        a.write("f.json", b"A's edit");
        push_when_index_is_written(&a, b.clone());

        let error = a.push().unwrap_err();

        assert!(
            matches!(&error, SyncError::Conflicts { conflicts, .. } if conflicts[0] == ("f.json".to_string(), ConflictKind::DeletedThere)),
            "{error}"
        );
        assert!(!remote_keys(&bucket).contains(&"f.json".to_string()), "B's deletion stands");
        assert_eq!(bucket.object("f.json"), None, "no object without an entry");
        assert_eq!(a.cache.file("f.json").as_deref(), Some(&b"A's edit"[..]), "A's edit stays here");
        block_on(a.engine().resolve("f.json", marsh::engine::Keep::Local)).unwrap();
        a.push().unwrap();
        assert_eq!(bucket.object("f.json").map(|(bytes, _)| bytes).as_deref(), Some(&b"A's edit"[..]));
    }
}

/// The control plane's create race: A's create-only write of a record lands but A's answer is lost, so A's retry meets
/// its own record; B's create, landing between A's two attempts, finds it there. A must be told it won, B that it lost,
/// and the record holds A's bytes. Fails on `flaw-control-retry-says-false`, which tells A it lost: then nobody won.
#[test]
fn a_control_record_create_whose_answer_was_lost_still_wins() {
    use std::cell::Cell;

    use marsh::control::{ControlPlane, ControlRoot};
    use marsh::store::StoreError;
    use marsh::testing::memory::TestEnv;

    for bucket in [s3_bucket(), gcs_bucket()] {
        let (a, b) = (bucket.client(), bucket.client());
        let lost = StoreError::Transient { status: None, message: "timed out".into() };
        a.faults().fail_nth_after_effect(Kind::PutBytes, 1, lost);
        let b_answer = Rc::new(Cell::new(None));
        let (answer, calls) = (b_answer.clone(), Cell::new(0));
        a.faults().on_call(
            Kind::PutBytes,
            |_| true,
            move |_| {
                calls.set(calls.get() + 1);
                if calls.get() == 2 {
                    // A is about to retry: B's create comes first.
                    let b_env = TestEnv::new(2);
                    let b_plane = ControlPlane::new(&b, &b_env, ControlRoot::datastore());
                    answer.set(Some(block_on(b_plane.put_if_absent("claims/run-1", b"B"))));
                }
            },
        );
        let env = TestEnv::new(1);

        let a_won = block_on(ControlPlane::new(&a, &env, ControlRoot::datastore()).put_if_absent("claims/run-1", b"A"));

        assert_eq!(a_won, Ok(true), "A's own create landed");
        assert_eq!(b_answer.take(), Some(Ok(false)), "B found A's record");
        assert_eq!(bucket.object("_control/claims/run-1").map(|(bytes, _)| bytes).as_deref(), Some(&b"A"[..]));
    }
}

/// Two creates of one control record, one after the other: the second is told it lost and the first's bytes stay.
/// Fails on `flaw-blind-control-create`, whose unconditional write replaces the record and tells both they won.
#[test]
fn a_second_create_of_a_control_record_loses_and_leaves_the_first() {
    use marsh::control::{ControlPlane, ControlRoot};
    use marsh::testing::memory::TestEnv;

    for bucket in [s3_bucket(), gcs_bucket()] {
        let env = TestEnv::new(1);
        let plane = ControlPlane::new(&bucket, &env, ControlRoot::for_namespace(Some("ns")).unwrap());

        assert_eq!(block_on(plane.put_if_absent("claims/run-1", b"first")), Ok(true));
        assert_eq!(block_on(plane.put_if_absent("claims/run-1", b"second")), Ok(false));
        assert_eq!(bucket.object("ns/_control/claims/run-1").map(|(bytes, _)| bytes).as_deref(), Some(&b"first"[..]));
    }
}
