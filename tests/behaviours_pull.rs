//! B-list behaviours of `pull_changed` (catalogue: docs/behaviours.md), one scenario each.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::rc::Rc;

use common::{commit_token, format1_bucket, remote_index, s3_bucket, Machine};
use marsh::engine::SyncError;
use marsh::local::conflicts::ConflictKind;
use marsh::path::{INDEX_KEY, SIDECAR_NAME};
use marsh::store::token::VersionToken;
use marsh::store::StoreError;
use marsh::testing::memory::Kind;

/// A bucket holding `files`, pushed by a machine that then goes away.
fn populated(files: &[(&str, &[u8])]) -> marsh::testing::memory::MemoryStore {
    let bucket = s3_bucket();
    let writer = Machine::new(&bucket, 99);
    for (rel, bytes) in files {
        writer.write(rel, bytes);
    }
    writer.push().expect("populate");
    bucket
}

#[test]
fn b1_second_pull_of_unchanged_index_is_one_conditional_get() {
    let bucket = populated(&[("a.json", b"1"), ("d/b.json", b"22")]);
    let reader = Machine::new(&bucket, 1);
    assert_eq!(reader.pull().unwrap().downloaded, 2);
    reader.store.reset_requests();

    let again = reader.pull().unwrap();

    assert!(again.fast_path);
    assert_eq!(again.downloaded, 0);
    let requests = reader.store.requests();
    assert_eq!((requests.total(), requests.get_bytes), (1, 1), "{requests:?}");
}

#[test]
fn b3_remote_change_defeats_the_fast_path() {
    let bucket = populated(&[("a.json", b"1")]);
    let reader = Machine::new(&bucket, 1);
    reader.pull().unwrap();
    let other = Machine::new(&bucket, 2);
    other.write("new.json", b"fresh");
    other.push().unwrap();

    let report = reader.pull().unwrap();

    assert!(!report.fast_path);
    assert_eq!(report.downloaded, 1);
    assert_eq!(reader.cache.file("new.json").as_deref(), Some(&b"fresh"[..]));
}

/// The local copy is a format-1 thing (format-2 caches keep none), so this runs on a format-1 bucket.
#[test]
fn b4_fast_path_miss_reads_the_index_from_the_store_not_the_local_copy() {
    let bucket = format1_bucket(s3_bucket(), &[("a.json", b"1")]);
    let reader = Machine::new(&bucket, 1);
    reader.pull().unwrap();
    let other = Machine::new(&bucket, 2);
    other.write("b.json", b"2");
    other.push().unwrap();
    // Another process left a local index copy that claims everything is here, and the sidecar is gone.
    let (remote_bytes, _) = bucket.object(INDEX_KEY).unwrap();
    reader.cache.write_file(INDEX_KEY, remote_bytes);
    reader.cache.remove_file(SIDECAR_NAME);
    reader.cache.remove_file("b.json");

    let report = reader.pull().unwrap();

    assert_eq!(report.downloaded, 1);
    assert!(reader.cache.file("b.json").is_some());
}

#[test]
fn b6_fresh_reader_that_pushed_one_file_is_not_verified_against_a_populated_bucket() {
    let bucket = populated(&[("a.json", b"1"), ("b.json", b"2")]);
    let fresh = Machine::new(&bucket, 1);
    fresh.write("mine.json", b"3");

    let pushed = fresh.push().unwrap();

    assert_eq!(pushed.uploaded, 1);
    assert!(!pushed.verified);
    assert!(fresh.state().verified_token.is_none());
    let pulled = fresh.pull().unwrap();
    assert!(!pulled.fast_path);
    assert_eq!(pulled.downloaded, 2);
}

#[test]
fn b16_traversal_keys_in_the_remote_index_are_rejected_by_name_and_the_rest_syncs() {
    let bucket = s3_bucket();
    let index = br#"{"version":1,"lastPulled":"2026-04-24T00:00:00.000Z","entries":{
      "../evil":{"key":"../evil","size":1,"lastModified":"2026-04-24T00:00:00.000Z"},
      "/etc/passwd":{"key":"/etc/passwd","size":1,"lastModified":"2026-04-24T00:00:00.000Z"},
      "a\\b":{"key":"a\\b","size":1,"lastModified":"2026-04-24T00:00:00.000Z"},
      "ok.txt":{"key":"ok.txt","size":2,"lastModified":"2026-04-24T00:00:00.000Z"}}}"#;
    bucket.put_raw(INDEX_KEY, index.to_vec());
    bucket.put_raw("ok.txt", b"ok".to_vec());
    bucket.put_raw("../evil", b"x".to_vec());
    let reader = Machine::new(&bucket, 1);

    let error = reader.pull().unwrap_err();

    let SyncError::Files { failures, transferred, .. } = &error else { panic!("{error}") };
    let mut names: Vec<&str> = failures.iter().map(|f| f.rel.as_str()).collect();
    names.sort();
    assert_eq!(names, ["../evil", "/etc/passwd", "a\\b"]);
    assert_eq!(*transferred, 1);
    assert!(error.to_string().contains("../evil"), "{error}");
    assert_eq!(reader.data_files(), ["ok.txt"]);
    assert!(reader.state().verified_token.is_none(), "never verified with rejected entries");
}

#[test]
fn b16_an_indexed_path_under_a_symlinked_folder_is_reported_not_read_through() {
    // The pull stats the index's paths instead of walking: a symlink at the path, or at a folder above it, is still
    // found (never followed), and the path is a failure naming it while the rest syncs.
    let bucket = populated(&[("d/x.json", b"x"), ("l.json", b"l"), ("ok.json", b"ok")]);
    let reader = Machine::new(&bucket, 1);
    reader.cache.add_symlink("d");
    reader.cache.add_symlink("l.json");

    let error = reader.pull().unwrap_err();

    let SyncError::Files { failures, transferred, .. } = &error else { panic!("{error}") };
    let names: Vec<&str> = failures.iter().map(|f| f.rel.as_str()).collect();
    assert_eq!(names, ["d/x.json", "l.json"]);
    assert_eq!(*transferred, 1);
    assert_eq!(reader.cache.calls().walk, 0, "the indexed paths were stat'ed, not walked");
    assert_eq!(reader.data_files(), ["ok.json"]);
}

#[test]
fn b17_corrupt_sidecar_means_slow_path_not_error() {
    let bucket = populated(&[("a.json", b"1")]);
    let reader = Machine::new(&bucket, 1);
    reader.cache.write_file(SIDECAR_NAME, b"{\"version\":2,\"verifiedToken\":7".to_vec());

    let report = reader.pull().unwrap();

    assert!(!report.fast_path);
    assert_eq!(report.downloaded, 1);
    assert!(report.verified);
}

#[test]
fn b17_multipart_index_etag_is_never_recorded_so_the_next_pull_is_slow() {
    // The commit object of either layout: the commit record of format 2, the monolith of format 1.
    for (bucket, commit_key) in [
        (populated(&[("a.json", b"1")]), "_index/_meta.json"),
        (format1_bucket(s3_bucket(), &[("a.json", b"1")]), INDEX_KEY),
    ] {
        let (bytes, _) = bucket.object(commit_key).unwrap();
        bucket.put_raw_with_token(commit_key, bytes, VersionToken::from_etag("\"9bb58f26192e4ba00f01e2e7b136bbd8-3\""));
        let reader = Machine::new(&bucket, 1);

        let first = reader.pull().unwrap();
        let second = reader.pull().unwrap();

        assert!(!first.verified);
        assert!(reader.state().verified_token.is_none());
        assert!(!second.fast_path);
        assert_eq!(second.downloaded, 0);
    }
}

#[test]
fn b18_pull_counts_files_actually_downloaded() {
    let bucket = populated(&[("a.json", b"1"), ("b.json", b"2"), ("c.json", b"3")]);
    let reader = Machine::new(&bucket, 1);
    reader.cache.write_file("a.json", b"1".to_vec());
    reader.cache.remove_file(SIDECAR_NAME);

    let report = reader.pull().unwrap();

    // a.json has no local-view record: its content (hash) matches, so only b and c move.
    assert_eq!(report.downloaded, 2);
}

#[test]
fn b14_index_get_503_is_retried_after_a_backoff() {
    let bucket = populated(&[("a.json", b"1")]);
    let reader = Machine::new(&bucket, 1);
    let transient = StoreError::Transient { status: Some(503), message: "slow down".into() };
    reader.store.faults().fail_nth(Kind::GetBytes, 1, transient);

    let report = reader.pull().unwrap();

    assert_eq!(report.downloaded, 1);
    // The commit record twice (503, then its answer), the format marker read alongside it, and the one shard.
    assert_eq!(reader.store.requests().get_bytes, 4);
    let sleeps = reader.env.sleeps();
    assert_eq!(sleeps.len(), 1);
    assert!((375..=625).contains(&sleeps[0]), "{sleeps:?}");
}

#[test]
fn w14_auth_error_on_the_index_fails_at_once_without_retry() {
    let bucket = populated(&[("a.json", b"1")]);
    let reader = Machine::new(&bucket, 1);
    let denied = StoreError::Auth { status: Some(403), message: "AccessDenied".into() };
    reader.store.faults().fail_matching(Kind::GetBytes, |_| true, denied);

    let error = reader.pull().unwrap_err();

    assert!(matches!(error, SyncError::IndexUnreadable(StoreError::Auth { .. })), "{error}");
    // The commit record and the format marker, read side by side, each once: neither is retried.
    assert_eq!(reader.store.requests().get_bytes, 2);
    assert!(reader.env.sleeps().is_empty());
}

#[test]
fn b15_already_aborted_pull_makes_no_request() {
    let bucket = populated(&[("a.json", b"1")]);
    let reader = Machine::new(&bucket, 1);
    reader.env.abort();

    let error = reader.pull().unwrap_err();

    assert_eq!(error, SyncError::Aborted);
    assert_eq!(reader.store.requests().total(), 0);
}

#[test]
fn b15_abort_during_downloads_stops_and_records_nothing() {
    let files: Vec<(String, Vec<u8>)> = (0..40).map(|i| (format!("f{i:02}.json"), vec![b'x'; i + 1])).collect();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(r, b)| (r.as_str(), b.as_slice())).collect();
    let bucket = populated(&refs);
    let reader = Rc::new(Machine::new(&bucket, 1));
    let env = reader.env.clone();
    reader.store.faults().on_call(Kind::Get, |rel| rel == "f05.json", move |_| env.abort());

    let error = reader.pull().unwrap_err();

    assert_eq!(error, SyncError::Aborted);
    assert!(reader.data_files().len() < 40);
    assert!(reader.state().verified_token.is_none());
}

#[test]
fn b21_trace_lines_report_each_phase() {
    let bucket = populated(&[("a.json", b"1")]);
    let reader = Machine::new(&bucket, 1);

    reader.pull().unwrap();

    let traces = reader.env.traces();
    for phase in ["index read", "plan", "downloads", "done"] {
        assert!(traces.iter().any(|line| line.starts_with("marsh pull: ") && line.contains(phase)), "{traces:?}");
    }
}

#[test]
fn w4_same_size_remote_edit_is_pulled() {
    let bucket = populated(&[("f.json", b"abc")]);
    let a = Machine::new(&bucket, 1);
    let b = Machine::new(&bucket, 2);
    a.pull().unwrap();
    b.pull().unwrap();
    a.write("f.json", b"xyz");
    a.push().unwrap();

    let report = b.pull().unwrap();

    assert_eq!(report.downloaded, 1);
    assert_eq!(b.cache.file("f.json").as_deref(), Some(&b"xyz"[..]));
}

#[test]
fn w20_edits_on_both_sides_are_a_conflict_that_overwrites_neither() {
    let bucket = populated(&[("f.json", b"base")]);
    let a = Machine::new(&bucket, 1);
    let b = Machine::new(&bucket, 2);
    a.pull().unwrap();
    b.pull().unwrap();
    b.write("f.json", b"b's edit");
    a.write("f.json", b"a's edit!");
    a.push().unwrap();

    let pulled = b.pull().unwrap();

    assert_eq!(pulled.conflicts, [("f.json".to_string(), ConflictKind::BothChanged)]);
    assert!(!pulled.verified);
    assert_eq!(b.cache.file("f.json").as_deref(), Some(&b"b's edit"[..]));
    let pushed = b.push().unwrap_err();
    assert!(matches!(&pushed, SyncError::Conflicts { conflicts, .. } if conflicts[0].0 == "f.json"), "{pushed}");
    assert!(pushed.to_string().contains("marsh resolve"), "{pushed}");
    assert_eq!(remote_file(&bucket, "f.json"), b"a's edit!", "the bucket keeps the other edit");
}

#[test]
fn w10_a_file_lost_without_a_mark_comes_back_on_the_next_full_pull() {
    // A file gone without a markDirty naming it was lost here (a wiped folder), not deleted: the bucket's copy returns.
    let bucket = populated(&[("f.json", b"1")]);
    let a = Machine::new(&bucket, 1);
    a.pull().unwrap();
    a.cache.remove_file("f.json");
    a.cache.remove_file(SIDECAR_NAME);

    assert_eq!(a.pull().unwrap().downloaded, 1);
    assert!(a.cache.file("f.json").is_some());
}

#[test]
fn w10_fast_path_does_not_notice_local_loss_until_a_slow_path() {
    // Documented: the pull fast path trusts the verified token; a file deleted behind swamp's back returns on the
    // next slow path (remote change, markDirty + push, or a deleted sidecar).
    let bucket = populated(&[("f.json", b"1")]);
    let a = Machine::new(&bucket, 1);
    a.pull().unwrap();
    a.cache.remove_file("f.json");

    assert!(a.pull().unwrap().fast_path);
    assert!(a.cache.file("f.json").is_none());
    a.cache.remove_file(SIDECAR_NAME);
    assert_eq!(a.pull().unwrap().downloaded, 1);
}

#[test]
fn w11_two_instances_on_one_cache_share_state_through_the_disk() {
    let bucket = populated(&[("f.json", b"1")]);
    let first = Machine::new(&bucket, 1);
    let second = first.second_instance();
    first.pull().unwrap();

    assert!(second.pull().unwrap().fast_path, "the second instance reads the verified token from disk");
    first.mark_dirty();
    assert!(!second.push().unwrap().fast_path, "and sees the first instance's markDirty");
}

#[test]
fn w16_download_with_the_wrong_size_leaves_the_old_file_intact() {
    let bucket = populated(&[("f.json", b"12345")]);
    let a = Machine::new(&bucket, 1);
    a.pull().unwrap();
    let b = Machine::new(&bucket, 2);
    b.pull().unwrap();
    b.write("f.json", b"abcdefgh");
    b.push().unwrap();
    bucket.put_raw("f.json", b"abc".to_vec()); // truncated object behind the index's back

    let report = a.pull().unwrap();

    // Not the entry's bytes: left as it is (a writer's commit may be in flight), reported, and not verified.
    assert_eq!(report.in_flux, ["f.json"]);
    assert_eq!(a.cache.file("f.json").as_deref(), Some(&b"12345"[..]));
    assert!(!report.verified && a.state().verified_token != commit_token(&bucket));
}

#[test]
fn w17_one_failed_download_does_not_stop_the_others_and_all_are_reported() {
    let bucket = populated(&[("a.json", b"1"), ("b.json", b"2"), ("c.json", b"3")]);
    let reader = Machine::new(&bucket, 1);
    let denied = StoreError::Http { status: 400, message: "bad".into() };
    reader.store.faults().fail_matching(Kind::Get, |rel| rel == "b.json", denied);

    let error = reader.pull().unwrap_err();

    let SyncError::Files { failures, transferred, .. } = &error else { panic!("{error}") };
    assert_eq!(failures.len(), 1);
    assert_eq!(*transferred, 2);
    assert!(error.to_string().contains("1 file failed (b.json)"), "{error}");
    assert_eq!(reader.data_files(), ["a.json", "c.json"]);
}

#[test]
fn pulled_index_copy_is_kept_locally_for_the_official_extension() {
    let bucket = populated(&[("a.json", b"1")]);
    let reader = Machine::new(&bucket, 1);

    reader.pull().unwrap();

    assert_eq!(reader.cache.file(INDEX_KEY), bucket.object(INDEX_KEY).map(|(bytes, _)| bytes));
    assert_eq!(remote_index(&bucket).len(), 1);
}

#[test]
fn dry_run_pull_lists_the_plan_and_writes_nothing() {
    let bucket = populated(&[("a.json", b"1"), ("b.json", b"2")]);
    let mut reader = Machine::new(&bucket, 1);
    reader.config.dry_run = true;

    let report = reader.pull().unwrap();

    assert_eq!(report.planned, ["a.json", "b.json"]);
    assert_eq!(report.downloaded, 0);
    assert!(reader.cache.files().is_empty(), "no file, view, index copy or sidecar written");
    assert_eq!(reader.store.requests().get, 0);
}

/// The bytes of the object at `rel`, as any reader would get them.
fn remote_file(bucket: &marsh::testing::memory::MemoryStore, rel: &str) -> Vec<u8> {
    bucket.object(rel).expect("an object").0
}
