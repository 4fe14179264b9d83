//! Two-phase push (`preview_push`, `prepare_push`, `commit_push`) as a user meets it: a dry run that counts and writes
//! nothing, a prepare that uploads without touching the index, a commit that makes it visible, marks made in between
//! (W22), deletions, an abandoned prepare, a peer's deletion in between, and manifests that were tampered with. Each
//! case on an S3-style and a GCS-style bucket where it costs little.

mod common;

use common::{commit_token, remote_keys, Machine};
use marsh::engine::{PushManifest, PushPreview, PushReport, SyncError};
use marsh::local::conflicts::ConflictKind;
use marsh::local::prepared::{PreparedUploads, PREPARED_NAME};
use marsh::path::MARKS_FOLDER;
use marsh::testing::memory::{MemoryStore, TokenStyle};
use marsh::testing::sim::block_on;
use serde_json::Value;

const STYLES: [TokenStyle; 2] = [TokenStyle::S3, TokenStyle::Gcs];

/// A bucket holding `files`, pushed by A, and a second machine B that pulled them.
fn synced(style: TokenStyle, files: &[(&str, &[u8])]) -> (MemoryStore, Machine, Machine) {
    let bucket = MemoryStore::new(style);
    let a = Machine::new(&bucket, 1);
    for (rel, bytes) in files {
        a.write(rel, bytes);
    }
    a.push().expect("populate");
    let b = Machine::new(&bucket, 2);
    b.pull().expect("B's first pull");
    (bucket, a, b)
}

fn preview(machine: &Machine) -> Result<PushPreview, SyncError> {
    block_on(machine.engine().preview_push())
}

fn prepare(machine: &Machine) -> Result<PushManifest, SyncError> {
    block_on(machine.engine().prepare_push())
}

fn commit(machine: &Machine, manifest: &PushManifest) -> Result<PushReport, SyncError> {
    block_on(machine.engine().commit_push(manifest))
}

/// The durable per-path marks waiting in the cache.
fn marks(machine: &Machine) -> Vec<String> {
    let prefix = format!("{MARKS_FOLDER}/");
    machine.cache.files().into_keys().filter(|rel| rel.starts_with(&prefix)).collect()
}

fn prepared(machine: &Machine) -> PreparedUploads {
    PreparedUploads::parse(machine.cache.file(PREPARED_NAME).as_deref())
}

fn object(bucket: &MemoryStore, rel: &str) -> Option<Vec<u8>> {
    bucket.object(rel).map(|(bytes, _)| bytes)
}

#[test]
fn preview_counts_new_changed_and_deleted_exactly_and_writes_nothing() {
    for style in STYLES {
        let (bucket, a, b) = synced(
            style,
            &[("same.json", b"same"), ("edit.json", b"edit v1"), ("gone.json", b"gone"), ("k.json", b"k")],
        );
        a.write("new.json", b"brand new");
        a.write("edit.json", b"edit v2, longer");
        a.delete("gone.json");
        // Touched (marked, new mtime) but the same bytes: a hash shows nothing to send.
        a.write("same.json", b"same");
        // A new file under a bare markDirty: this instance's own mark, which the preview must leave for the push.
        a.write_bare("bare.json", b"bare");
        let bucket_before = bucket.snapshot();
        let cache_before = a.cache.files();
        let marks_before = marks(&a);
        let writes_before = a.cache.calls().write_internal + a.cache.calls().remove_internal + a.cache.calls().remove;

        let counted = preview(&a).unwrap();

        assert_eq!(counted, PushPreview { new: 2, changed: 1, deleted: 1 }, "{style:?}");
        assert_eq!(counted.total(), 4);
        assert_eq!(bucket.snapshot(), bucket_before, "{style:?}: the preview wrote to the bucket");
        assert_eq!(a.cache.files(), cache_before, "{style:?}: the preview changed the cache");
        assert_eq!(marks(&a), marks_before);
        let calls = a.cache.calls();
        assert_eq!(calls.write_internal + calls.remove_internal + calls.remove, writes_before);
        assert_eq!(preview(&a).unwrap(), counted, "a second preview sees the same");

        let pushed = a.push().unwrap();

        assert_eq!(pushed.uploaded, 3, "{style:?}: the push after a preview still pushes: {pushed:?}");
        assert_eq!(pushed.deleted, ["gone.json"]);
        assert!(!pushed.marked_only, "the instance's bare mark made the push walk everything");
        assert!(marks(&a).is_empty());
        assert_eq!(preview(&a).unwrap(), PushPreview::default(), "nothing left to send");
        b.pull().unwrap();
        assert_eq!(b.data_files(), ["bare.json", "edit.json", "k.json", "new.json", "same.json"]);
        assert_eq!(b.cache.file("edit.json").as_deref(), Some(&b"edit v2, longer"[..]));
    }
}

#[test]
fn preview_of_a_clean_cache_is_zero_and_asks_the_bucket_nothing() {
    for style in STYLES {
        let (bucket, a, _b) = synced(style, &[("a.json", b"a")]);
        let before = bucket.requests().total();
        assert_eq!(preview(&a).unwrap(), PushPreview::default());
        assert_eq!(bucket.requests().total(), before, "{style:?}: nothing marked, nothing to ask the bucket");
    }
}

#[test]
fn prepare_uploads_without_touching_the_index_and_commit_makes_it_visible() {
    for style in STYLES {
        let (bucket, a, b) = synced(style, &[("base.json", b"base")]);
        let token_before = commit_token(&bucket);
        a.write("new.json", b"new file");
        a.write("base.json", b"base, edited by A");
        let marks_before = marks(&a);
        assert_eq!(marks_before.len(), 2);

        let manifest = prepare(&a).unwrap();

        assert_eq!((manifest.uploaded(), manifest.deleted()), (2, 0), "{style:?}");
        assert!(manifest.conflicts().is_empty());
        assert_eq!(object(&bucket, "new.json").as_deref(), Some(&b"new file"[..]), "the object went up");
        assert_eq!(object(&bucket, "base.json").as_deref(), Some(&b"base, edited by A"[..]));
        assert_eq!(remote_keys(&bucket), ["base.json"], "{style:?}: the index is not touched by a prepare");
        assert_eq!(commit_token(&bucket), token_before);
        assert_eq!(marks(&a), marks_before, "the marks stay until the commit");
        assert_eq!(prepared(&a).token("new.json"), bucket.token("new.json"), "the prepared upload is noted");
        assert_eq!(prepared(&a).token("base.json"), bucket.token("base.json"));
        // A peer that had pulled sees nothing new.
        let pulled = b.pull().unwrap();
        assert_eq!(pulled.downloaded, 0, "{style:?}: {pulled:?}");
        assert_eq!(b.data_files(), ["base.json"]);
        assert_eq!(b.cache.file("base.json").as_deref(), Some(&b"base"[..]));
        // A fresh reader neither gets the new file nor writes the edited bytes under the old entry.
        let c = Machine::new(&bucket, 3);
        let fresh = c.pull();
        assert!(c.cache.file("new.json").is_none(), "{style:?}: {fresh:?}");
        assert_ne!(c.cache.file("base.json").as_deref(), Some(&b"base, edited by A"[..]), "{fresh:?}");

        let committed = commit(&a, &manifest).unwrap();

        assert_eq!(committed.uploaded, 2, "{style:?}: {committed:?}");
        assert!(committed.index_written);
        assert_eq!(committed.marks_cleared, 2);
        assert!(marks(&a).is_empty(), "{style:?}: the commit clears the marks it handled");
        assert!(prepared(&a).is_empty(), "{style:?}: the committed uploads are no longer pending");
        assert_eq!(remote_keys(&bucket), ["base.json", "new.json"]);
        let pulled = b.pull().unwrap();
        assert_eq!(pulled.downloaded, 2, "{style:?}: {pulled:?}");
        assert_eq!(b.cache.file("new.json").as_deref(), Some(&b"new file"[..]));
        assert_eq!(b.cache.file("base.json").as_deref(), Some(&b"base, edited by A"[..]));
        let again = a.push().unwrap();
        assert_eq!(again.uploaded, 0, "{style:?}: nothing left to push after the commit: {again:?}");
        assert!(again.deleted.is_empty());
    }
}

#[test]
fn w22_a_write_between_prepare_and_commit_keeps_its_mark_and_goes_with_the_next_push() {
    for style in STYLES {
        let (bucket, a, b) = synced(style, &[("x.json", b"x v1")]);
        a.write("x.json", b"x v2");
        let manifest = prepare(&a).unwrap();
        assert_eq!(manifest.uploaded(), 1);
        // Between the phases: the prepared path written again, and a new path.
        a.write("x.json", b"x v3, after the prepare");
        a.write("y.json", b"y, after the prepare");

        let committed = commit(&a, &manifest).unwrap();

        assert_eq!(committed.uploaded, 1, "{style:?}");
        assert_eq!(committed.marks_cleared, 1, "{style:?}: only the mark the prepare listed: {committed:?}");
        assert_eq!(marks(&a).len(), 2, "{style:?}: the marks made between the phases stay");
        assert_eq!(remote_keys(&bucket), ["x.json"]);

        let pushed = a.push().unwrap();

        assert_eq!(pushed.uploaded, 2, "{style:?}: {pushed:?}");
        assert!(pushed.conflicts.is_empty());
        assert!(marks(&a).is_empty());
        assert_eq!(remote_keys(&bucket), ["x.json", "y.json"]);
        b.pull().unwrap();
        assert_eq!(b.cache.file("x.json").as_deref(), Some(&b"x v3, after the prepare"[..]), "{style:?}");
        assert_eq!(b.cache.file("y.json").as_deref(), Some(&b"y, after the prepare"[..]));
    }
}

#[test]
fn a_prepared_deletion_removes_the_object_and_the_commit_removes_the_entry() {
    for style in STYLES {
        let (bucket, a, b) = synced(style, &[("keep.json", b"k"), ("gone.json", b"g")]);
        a.delete("gone.json");

        let manifest = prepare(&a).unwrap();

        assert_eq!((manifest.uploaded(), manifest.deleted()), (0, 1), "{style:?}");
        assert_eq!(object(&bucket, "gone.json"), None, "{style:?}: the object goes at the prepare");
        assert_eq!(remote_keys(&bucket), ["gone.json", "keep.json"], "the entry stays until the commit");
        assert_eq!(marks(&a).len(), 1);

        let committed = commit(&a, &manifest).unwrap();

        assert_eq!(committed.deleted, ["gone.json"], "{style:?}");
        assert_eq!(committed.uploaded, 0);
        assert_eq!(remote_keys(&bucket), ["keep.json"]);
        assert!(marks(&a).is_empty());
        let pulled = b.pull().unwrap();
        assert_eq!(pulled.removed, ["gone.json"], "{style:?}");
        assert_eq!(b.data_files(), ["keep.json"]);
        assert_eq!(a.push().unwrap().deleted, Vec::<String>::new(), "nothing left to delete");
    }
}

#[test]
fn a_prepare_whose_commit_never_comes_is_finished_by_the_next_push_without_conflict() {
    for style in STYLES {
        let (bucket, a, b) = synced(style, &[("base.json", b"base"), ("gone.json", b"gone")]);
        a.write("new.json", b"new file");
        a.write("base.json", b"base, edited");
        a.delete("gone.json");
        let manifest = prepare(&a).unwrap();
        assert_eq!((manifest.uploaded(), manifest.deleted()), (2, 1));
        assert!(!prepared(&a).is_empty(), "the prepared uploads are recorded in {PREPARED_NAME}");
        drop(manifest);
        // The host crashed: a new process on the same cache pushes.
        let restarted = a.second_instance();

        let pushed = restarted.push();

        let pushed = pushed.unwrap_or_else(|e| panic!("{style:?}: the push after an abandoned prepare failed: {e}"));
        assert!(pushed.conflicts.is_empty(), "{style:?}: {pushed:?}");
        assert_eq!(pushed.deleted, ["gone.json"], "{style:?}");
        assert_eq!(remote_keys(&bucket), ["base.json", "new.json"], "{style:?}");
        assert!(prepared(&a).is_empty(), "{style:?}: {PREPARED_NAME} is emptied once the uploads are committed");
        assert!(marks(&a).is_empty());
        b.pull().unwrap();
        assert_eq!(b.data_files(), ["base.json", "new.json"]);
        assert_eq!(b.cache.file("new.json").as_deref(), Some(&b"new file"[..]), "{style:?}");
        assert_eq!(b.cache.file("base.json").as_deref(), Some(&b"base, edited"[..]));
    }
}

#[test]
fn a_peer_deletion_between_prepare_and_commit_is_a_conflict_and_leaves_no_orphan() {
    for style in STYLES {
        let (bucket, a, b) = synced(style, &[("f.json", b"base"), ("other.json", b"o")]);
        a.write("f.json", b"A's edit of f");
        let manifest = prepare(&a).unwrap();
        assert_eq!(manifest.uploaded(), 1);
        b.delete("f.json");
        let deleted = b.push().unwrap();
        assert_eq!(deleted.deleted, ["f.json"], "{style:?}");
        assert_eq!(remote_keys(&bucket), ["other.json"]);

        let refused = commit(&a, &manifest).unwrap_err();

        let SyncError::Conflicts { conflicts, .. } = &refused else { panic!("{style:?}: not a conflict: {refused}") };
        assert_eq!(conflicts, &[("f.json".to_string(), ConflictKind::DeletedThere)], "{style:?}");
        assert_eq!(remote_keys(&bucket), ["other.json"], "{style:?}: the deleted entry does not come back");
        assert_eq!(object(&bucket, "f.json"), None, "{style:?}: the prepared object no entry names is removed");
        assert_eq!(prepared(&a).token("f.json"), None, "settled");
        assert_eq!(a.cache.file("f.json").as_deref(), Some(&b"A's edit of f"[..]), "A's file stays");
        assert_eq!(marks(&a).len(), 1, "{style:?}: the path in conflict keeps its mark");
        let c = Machine::new(&bucket, 3);
        c.pull().unwrap();
        assert_eq!(c.data_files(), ["other.json"]);
    }
}

/// The manifest of one prepared edit, as JSON to tamper with.
fn prepared_manifest(style: TokenStyle) -> (MemoryStore, Machine, Value) {
    let (bucket, a, _b) = synced(style, &[("f.json", b"base")]);
    a.write("f.json", b"edited");
    let manifest = prepare(&a).unwrap();
    let json: Value = serde_json::from_str(&manifest.to_json()).expect("a manifest is JSON");
    assert_eq!(PushManifest::parse(&manifest.to_json()).unwrap(), manifest, "the manifest round-trips");
    (bucket, a, json)
}

fn invalid_message(result: Result<impl std::fmt::Debug, SyncError>) -> String {
    match result {
        Err(SyncError::InvalidArgument(message)) => message,
        other => panic!("not refused as an invalid argument: {other:?}"),
    }
}

#[test]
fn a_tampered_manifest_is_refused_naming_the_problem_and_writes_nothing() {
    for style in STYLES {
        let (bucket, a, json) = prepared_manifest(style);
        let index_before = commit_token(&bucket);
        let marks_before = marks(&a);

        let message = invalid_message(PushManifest::parse("{\"version\":1,"));
        assert!(message.contains("not one of ours"), "{message}");
        let message = invalid_message(PushManifest::parse("[]"));
        assert!(message.contains("not one of ours"), "{message}");
        let mut future = json.clone();
        future["version"] = Value::from(7);
        let message = invalid_message(PushManifest::parse(&future.to_string()));
        assert!(message.contains("version 7"), "{message}");

        let commit_of = |edit: &dyn Fn(&mut Value)| {
            let mut tampered = json.clone();
            edit(&mut tampered);
            let manifest = PushManifest::parse(&tampered.to_string()).expect("still a manifest in shape");
            commit(&a, &manifest)
        };
        let message = invalid_message(commit_of(&|m| m["uploads"][0]["rel"] = Value::from("../outside.json")));
        assert!(message.contains("outside.json") || message.contains(".."), "{style:?}: {message}");
        let message = invalid_message(commit_of(&|m| {
            m["deletions"] = serde_json::json!([{
                "rel": "a/../../etc/passwd",
                "expected": {"size": 1, "lastModified": "2026-01-01T00:00:00.000Z"},
                "base": {"size": 1, "mtimeMs": 1, "lastModified": "2026-01-01T00:00:00.000Z"}
            }])
        }));
        assert!(message.contains("passwd") || message.contains(".."), "{style:?}: {message}");
        let message = invalid_message(commit_of(&|m| m["paths"] = serde_json::json!(["f.json", "../f.json"])));
        assert!(message.contains("../f.json") || message.contains(".."), "{style:?}: {message}");
        let message = invalid_message(commit_of(&|m| m["marks"] = serde_json::json!(["../.marsh-view.json"])));
        assert!(message.contains("not a mark name") && message.contains("../.marsh-view.json"), "{message}");
        let message = invalid_message(commit_of(&|m| m["marks"] = serde_json::json!(["a\\b"])));
        assert!(message.contains("not a mark name"), "{message}");
        let message = invalid_message(commit_of(&|m| m["uploads"][0]["sha256"] = Value::from("xyz")));
        assert!(message.contains("sha256"), "{message}");

        assert_eq!(commit_token(&bucket), index_before, "{style:?}: a refused commit writes no index");
        assert_eq!(remote_keys(&bucket), ["f.json"]);
        assert_eq!(marks(&a), marks_before, "{style:?}: a refused commit clears no mark");
        assert!(a.cache.file(".marsh-view.json").is_some(), "the view is still there");
        // The untampered manifest still commits.
        let manifest = PushManifest::parse(&json.to_string()).unwrap();
        assert_eq!(commit(&a, &manifest).unwrap().uploaded, 1, "{style:?}");
        assert!(marks(&a).is_empty());
    }
}
