//! The index layer on its own: what a read returns (and which token comes with it), what a commit writes, and how it
//! treats a writer that got there first. No engine, no cache: a store, an environment and the layer.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeMap;

use marsh::engine::SyncError;
use marsh::index::{Changes, IndexEntry, IndexLayer, Read, RemoteIndex, Snapshot};
use marsh::path::INDEX_KEY;
use marsh::store::retry::RetryPolicy;
use marsh::store::StoreError;
use marsh::testing::memory::{Kind, MemoryStore, TestEnv, TokenStyle};
use marsh::testing::sim::block_on;

const CAS_ATTEMPTS: u32 = 4;

fn buckets() -> [MemoryStore; 2] {
    [MemoryStore::new(TokenStyle::S3), MemoryStore::new(TokenStyle::Gcs)]
}

fn entry(size: u64) -> IndexEntry {
    IndexEntry::new(size, "2026-12-01T00:00:00.000Z".into(), None, None)
}

fn changes(rels: &[&str]) -> Changes {
    Changes { upserts: rels.iter().map(|rel| (rel.to_string(), entry(rel.len() as u64))).collect() }
}

fn read(layer: &IndexLayer<'_, MemoryStore, TestEnv>, if_none_match: Option<&str>) -> Result<Read, SyncError> {
    let token = if_none_match.map(marsh::store::token::VersionToken::new);
    block_on(layer.read(token.as_ref()))
}

fn found(read: Result<Read, SyncError>) -> Snapshot {
    match read.expect("read succeeds") {
        Read::Found(snapshot) => snapshot,
        Read::NotModified => panic!("expected the index, got not-modified"),
    }
}

fn keys(index: &RemoteIndex) -> Vec<String> {
    index.entries().map(|(rel, _)| rel.to_string()).collect()
}

/// The index in the bucket, read the way any reader would.
fn remote_keys(bucket: &MemoryStore) -> Vec<String> {
    let (bytes, _) = bucket.object(INDEX_KEY).expect("an index object");
    keys(&RemoteIndex::parse(&bytes).expect("the written index parses"))
}

#[test]
fn an_empty_bucket_reads_as_an_empty_index_without_a_commit_token() {
    for bucket in buckets() {
        let (env, policy) = (TestEnv::new(1), RetryPolicy::default());
        let layer = IndexLayer::new(&bucket, &env, &policy, CAS_ATTEMPTS);

        let snapshot = found(read(&layer, None));

        assert!(snapshot.index.is_empty());
        assert_eq!(snapshot.commit_token(), None);
    }
}

#[test]
fn a_read_carries_the_token_of_the_response_its_entries_came_from() {
    for bucket in buckets() {
        let (env, policy) = (TestEnv::new(1), RetryPolicy::default());
        let (store, writer) = (bucket.client(), bucket.client());
        let layer = IndexLayer::new(&store, &env, &policy, CAS_ATTEMPTS);
        let commit_from = |writer: MemoryStore, rels: &'static [&'static str]| {
            let (env, policy) = (TestEnv::new(2), RetryPolicy::default());
            let other = IndexLayer::new(&writer, &env, &policy, CAS_ATTEMPTS);
            let base = found(block_on(other.read(None)));
            block_on(other.commit(base, &changes(rels))).unwrap();
        };
        commit_from(writer.client(), &["a.json"]);
        // Another writer commits just before our GET is answered: its entry is in our bytes, so its token is ours.
        let mut raced = false;
        let hooked = writer.client();
        store.faults().on_call(
            Kind::GetBytes,
            |key| key == INDEX_KEY,
            move |_| {
                if !raced {
                    raced = true;
                    commit_from(hooked.client(), &["b.json"]);
                }
            },
        );

        let snapshot = found(read(&layer, None));
        let token_read = bucket.token(INDEX_KEY).unwrap();
        commit_from(writer.client(), &["c.json"]);

        assert_eq!(keys(&snapshot.index), ["a.json", "b.json"]);
        assert_eq!(snapshot.commit_token(), Some(&token_read), "the token of the GET whose bytes we hold");
        assert_ne!(bucket.token(INDEX_KEY), Some(token_read), "a later commit does not move a snapshot's token");
        assert_eq!(store.requests().head, 0, "the token comes with the body, never from a separate request");
    }
}

#[test]
fn a_conditional_read_with_the_current_token_is_one_request_and_not_modified() {
    for bucket in buckets() {
        let (env, policy) = (TestEnv::new(1), RetryPolicy::default());
        let layer = IndexLayer::new(&bucket, &env, &policy, CAS_ATTEMPTS);
        let committed = block_on(layer.commit(Snapshot::empty(), &changes(&["a.json"]))).unwrap();
        let token = committed.snapshot.commit_token().unwrap().as_str().to_string();
        bucket.reset_requests();

        let unchanged = read(&layer, Some(&token)).unwrap();

        assert!(matches!(unchanged, Read::NotModified));
        assert_eq!(bucket.requests().total(), 1);
        let stale = found(read(&layer, Some("some-older-token")));
        assert_eq!(keys(&stale.index), ["a.json"]);
    }
}

#[test]
fn a_failed_read_is_an_error_never_an_empty_index() {
    for bucket in buckets() {
        let (env, policy) = (TestEnv::new(1), RetryPolicy { attempts: 1, ..RetryPolicy::default() });
        let layer = IndexLayer::new(&bucket, &env, &policy, CAS_ATTEMPTS);
        block_on(layer.commit(Snapshot::empty(), &changes(&["a.json"]))).unwrap();
        let denied = StoreError::Auth { status: Some(403), message: "denied".into() };
        bucket.faults().fail_nth(Kind::GetBytes, 1, denied.clone());

        assert_eq!(read(&layer, None).unwrap_err(), SyncError::IndexUnreadable(denied));
        bucket.put_raw(INDEX_KEY, b"{\"version\":1,\"entries\":".to_vec());
        assert!(matches!(read(&layer, None).unwrap_err(), SyncError::IndexCorrupt(_)));
    }
}

#[test]
fn a_commit_creates_the_index_once_and_answers_the_token_it_wrote() {
    for bucket in buckets() {
        let (env, policy) = (TestEnv::new(1), RetryPolicy::default());
        let layer = IndexLayer::new(&bucket, &env, &policy, CAS_ATTEMPTS);

        let committed = block_on(layer.commit(Snapshot::empty(), &changes(&["a.json", "d/b.json"]))).unwrap();

        assert!(!committed.rebased);
        assert_eq!(committed.snapshot.commit_token(), bucket.token(INDEX_KEY).as_ref());
        assert_eq!(keys(&committed.snapshot.index), ["a.json", "d/b.json"]);
        assert_eq!(remote_keys(&bucket), ["a.json", "d/b.json"]);
    }
}

#[test]
fn two_commits_from_the_same_base_keep_both_writers_entries() {
    for bucket in buckets() {
        let (env, policy) = (TestEnv::new(1), RetryPolicy::default());
        let layer = IndexLayer::new(&bucket, &env, &policy, CAS_ATTEMPTS);
        block_on(layer.commit(Snapshot::empty(), &changes(&["base.json"]))).unwrap();
        let base = found(read(&layer, None));

        let first = block_on(layer.commit(base.clone(), &changes(&["a.json"]))).unwrap();
        let second = block_on(layer.commit(base, &changes(&["b.json"]))).unwrap();

        assert!(!first.rebased);
        assert!(second.rebased, "the second writer's base was stale: it re-read and merged");
        assert_eq!(keys(&second.snapshot.index), ["a.json", "b.json", "base.json"]);
        assert_eq!(remote_keys(&bucket), ["a.json", "b.json", "base.json"]);
        assert_eq!(second.snapshot.commit_token(), bucket.token(INDEX_KEY).as_ref());
    }
}

#[test]
fn a_commit_removes_entries_of_internal_files() {
    for bucket in buckets() {
        let (env, policy) = (TestEnv::new(1), RetryPolicy::default());
        let layer = IndexLayer::new(&bucket, &env, &policy, CAS_ATTEMPTS);
        let foreign = r#"{"version":1,"entries":{".datastore-sync-state.json":{"key":".datastore-sync-state.json","size":1,"lastModified":"x"},"keep.json":{"key":"keep.json","size":1,"lastModified":"x"}}}"#;
        bucket.put_raw(INDEX_KEY, foreign.as_bytes().to_vec());
        let base = found(read(&layer, None));

        block_on(layer.commit(base, &Changes::default())).unwrap();

        assert_eq!(remote_keys(&bucket), ["keep.json"]);
    }
}

#[test]
fn a_commit_that_keeps_losing_gives_up_with_the_number_of_attempts() {
    for bucket in buckets() {
        let (env, policy) = (TestEnv::new(1), RetryPolicy::default());
        let layer = IndexLayer::new(&bucket, &env, &policy, CAS_ATTEMPTS);
        block_on(layer.commit(Snapshot::empty(), &changes(&["base.json"]))).unwrap();
        let base = found(read(&layer, None));
        bucket.faults().fail_matching(
            Kind::PutBytes,
            |key| key == INDEX_KEY,
            StoreError::PreconditionFailed { key: INDEX_KEY.into() },
        );

        let outcome = block_on(layer.commit(base, &changes(&["a.json"])));

        assert_eq!(outcome.err(), Some(SyncError::IndexContended { attempts: CAS_ATTEMPTS }));
        assert_eq!(remote_keys(&bucket), ["base.json"]);
        assert_eq!(env.sleeps().len(), CAS_ATTEMPTS as usize - 1, "a backoff between attempts");
    }
}

#[test]
fn the_local_copy_is_the_bytes_read_and_is_handed_out_once() {
    for bucket in buckets() {
        let (env, policy) = (TestEnv::new(1), RetryPolicy::default());
        let layer = IndexLayer::new(&bucket, &env, &policy, CAS_ATTEMPTS);
        block_on(layer.commit(Snapshot::empty(), &changes(&["a.json"]))).unwrap();
        let mut snapshot = found(read(&layer, None));

        let copy = snapshot.take_local_copy().expect("a copy of a read index");

        assert_eq!(copy.name, INDEX_KEY);
        assert_eq!(Some(copy.bytes), bucket.object(INDEX_KEY).map(|(bytes, _)| bytes));
        assert!(snapshot.take_local_copy().is_none());
        assert!(Snapshot::empty().take_local_copy().is_none());
    }
}

#[test]
fn changes_to_the_same_path_replace_the_entry() {
    for bucket in buckets() {
        let (env, policy) = (TestEnv::new(1), RetryPolicy::default());
        let layer = IndexLayer::new(&bucket, &env, &policy, CAS_ATTEMPTS);
        let first = block_on(layer.commit(Snapshot::empty(), &changes(&["a.json"]))).unwrap();
        let upserts = BTreeMap::from([("a.json".to_string(), entry(99))]);

        let second = block_on(layer.commit(first.snapshot, &Changes { upserts })).unwrap();

        assert_eq!(second.snapshot.index.get("a.json").map(|e| e.size), Some(99));
        let (bytes, _) = bucket.object(INDEX_KEY).unwrap();
        assert_eq!(RemoteIndex::parse(&bytes).unwrap().get("a.json").map(|e| e.size), Some(99));
    }
}
