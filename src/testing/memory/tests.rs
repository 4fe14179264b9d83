use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::store::token::VersionToken;
use crate::store::{
    Env, Expected, Fetched, FileStat, LocalCache, ObjectMeta, ObjectStore, Precondition, Replaces, StoreError,
    StoreResult, WalkItem,
};
use crate::testing::sim::{block_on, Scenario, Sim};

fn found_token<B>(fetched: Fetched<B>) -> VersionToken {
    match fetched {
        Fetched::Found { token, .. } => token,
        Fetched::NotModified => panic!("expected a body, got NotModified"),
    }
}

fn transient() -> StoreError {
    StoreError::Transient { status: Some(503), message: "slow down".to_string() }
}

#[test]
fn s3_identical_bytes_give_identical_tokens() {
    let store = MemoryStore::new(TokenStyle::S3);
    let first = block_on(store.put_bytes("a", b"same", &Precondition::None)).unwrap();
    let second = block_on(store.put_bytes("a", b"same", &Precondition::None)).unwrap();
    let other_key = block_on(store.put_bytes("b", b"same", &Precondition::None)).unwrap();
    let changed = block_on(store.put_bytes("a", b"different", &Precondition::None)).unwrap();

    assert_eq!(first, second);
    assert_eq!(first, other_key);
    assert_ne!(first, changed);
    assert_eq!(first.as_str().len(), 32);
    assert!(first.is_fingerprint());
}

#[test]
fn gcs_every_write_gets_a_new_generation() {
    let store = MemoryStore::new(TokenStyle::Gcs);
    let first = block_on(store.put_bytes("a", b"same", &Precondition::None)).unwrap();
    let second = block_on(store.put_bytes("a", b"same", &Precondition::None)).unwrap();

    assert_eq!(first.as_str(), FIRST_GCS_GENERATION.to_string());
    assert_eq!(second.as_str(), (FIRST_GCS_GENERATION + 1).to_string());
    assert_eq!(store.token("a"), Some(second));
}

#[test]
fn if_absent_fails_on_an_existing_key_and_keeps_it() {
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        let store = MemoryStore::new(style);
        let original = store.put_raw("lock", "holder A");

        let result = block_on(store.put_bytes("lock", b"holder B", &Precondition::IfAbsent));

        assert_eq!(result, Err(StoreError::PreconditionFailed { key: "lock".into() }));
        assert_eq!(store.object("lock"), Some((b"holder A".to_vec(), original)));
        assert!(block_on(store.put_bytes("new", b"x", &Precondition::IfAbsent)).is_ok());
    }
}

#[test]
fn if_match_with_a_stale_token_fails() {
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        let store = MemoryStore::new(style);
        let stale = store.put_raw("index", "v0");
        let current = store.put_raw("index", "v1");

        let result = block_on(store.put_bytes("index", b"v2", &Precondition::IfMatch(stale)));
        assert_eq!(result, Err(StoreError::PreconditionFailed { key: "index".into() }));
        assert_eq!(store.object("index").unwrap().0, b"v1");

        let written = block_on(store.put_bytes("index", b"v2", &Precondition::IfMatch(current)));
        assert_eq!(store.token("index"), Some(written.unwrap()));
    }
}

#[test]
fn if_match_on_a_missing_key_fails_as_each_store_does() {
    let token = VersionToken::new("whatever");
    let s3 = MemoryStore::new(TokenStyle::S3);
    let gcs = MemoryStore::new(TokenStyle::Gcs);

    let s3_result = block_on(s3.put_bytes("index", b"x", &Precondition::IfMatch(token.clone())));
    let gcs_result = block_on(gcs.put_bytes("index", b"x", &Precondition::IfMatch(token)));

    assert_eq!(s3_result, Err(StoreError::NotFound { key: "index".into() }));
    assert_eq!(gcs_result, Err(StoreError::PreconditionFailed { key: "index".into() }));
    assert!(s3.snapshot().is_empty() && gcs.snapshot().is_empty());
}

#[test]
fn get_with_the_current_token_is_not_modified() {
    let store = MemoryStore::new(TokenStyle::Gcs);
    let old = store.put_raw("index", "v0");
    let current = store.put_raw("index", "v1");

    let unchanged = block_on(store.get_bytes("index", Some(&current))).unwrap();
    let changed = block_on(store.get_bytes("index", Some(&old))).unwrap();
    let body_unchanged = block_on(store.get("index", Some(&current))).unwrap();

    assert!(matches!(unchanged, Fetched::NotModified));
    assert!(matches!(body_unchanged, Fetched::NotModified));
    match changed {
        Fetched::Found { body, token, size } => {
            assert_eq!((body, token, size), (b"v1".to_vec(), current, 2));
        }
        Fetched::NotModified => panic!("the token changed"),
    }
}

#[test]
fn missing_keys_are_not_found() {
    let store = MemoryStore::new(TokenStyle::S3);
    let missing = Err(StoreError::NotFound { key: "nope".into() });
    assert_eq!(block_on(store.get_bytes("nope", None)).map(found_token), missing);
    assert_eq!(block_on(store.get("nope", None)).map(found_token), missing);
    assert_eq!(block_on(store.head("nope")).map(|meta| meta.token), missing);
    assert_eq!(block_on(store.delete("nope", None)), Err(StoreError::NotFound { key: "nope".into() }));
}

#[test]
fn conditional_delete_checks_the_token() {
    let store = MemoryStore::new(TokenStyle::S3);
    let stale = store.put_raw("lock", "A");
    let current = store.put_raw("lock", "B");

    assert_eq!(
        block_on(store.delete("lock", Some(&stale))),
        Err(StoreError::PreconditionFailed { key: "lock".into() })
    );
    assert!(store.object("lock").is_some());
    assert_eq!(block_on(store.delete("lock", Some(&current))), Ok(()));
    assert!(store.object("lock").is_none());
}

#[test]
fn head_reports_token_and_size() {
    let store = MemoryStore::new(TokenStyle::S3);
    let token = store.put_raw("data/a.json", "12345");
    assert_eq!(block_on(store.head("data/a.json")), Ok(ObjectMeta { token, size: 5 }));
}

#[test]
fn list_pages_through_2500_keys_in_lexical_order() {
    let store = MemoryStore::new(TokenStyle::S3);
    for i in 0..2500 {
        store.put_raw(&format!("data/{i:05}"), "x");
    }
    store.put_raw("datb", "outside the prefix");
    store.put_raw("a-before", "outside the prefix");

    let mut pages = Vec::new();
    let mut keys = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = block_on(store.list("data/", next.as_deref())).unwrap();
        pages.push(page.objects.len());
        keys.extend(page.objects.into_iter().map(|object| object.key));
        match page.next_page {
            Some(token) => next = Some(token),
            None => break,
        }
    }

    assert_eq!(pages, vec![1000, 1000, 500]);
    let expected: Vec<String> = (0..2500).map(|i| format!("data/{i:05}")).collect();
    assert_eq!(keys, expected);
    assert_eq!(store.requests().list, 3);
}

#[test]
fn list_page_size_is_configurable_and_a_bad_page_token_is_rejected() {
    let store = MemoryStore::new(TokenStyle::Gcs);
    store.set_page_size(2);
    for key in ["a", "b", "c"] {
        store.put_raw(key, key);
    }
    let first = block_on(store.list("", None)).unwrap();
    assert_eq!(first.objects.len(), 2);
    let second = block_on(store.list("", first.next_page.as_deref())).unwrap();
    assert_eq!(second.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["c"]);
    assert_eq!(second.next_page, None);
    assert!(matches!(block_on(store.list("", Some("garbage"))), Err(StoreError::Http { status: 400, .. })));
}

#[test]
fn request_counts_are_per_client_and_resettable() {
    let store = MemoryStore::new(TokenStyle::S3);
    let other = store.client();
    store.put_raw("k", "v");

    block_on(store.get_bytes("k", None)).unwrap();
    block_on(store.head("k")).unwrap();
    block_on(other.get("k", None)).unwrap();

    assert_eq!(store.requests(), RequestCounts { get_bytes: 1, head: 1, ..RequestCounts::default() });
    assert_eq!(other.requests(), RequestCounts { get: 1, ..RequestCounts::default() });
    assert_eq!(store.clone().requests().total(), 2, "clones share counters");
    store.reset_requests();
    assert_eq!(store.requests().total(), 0);
}

#[test]
fn put_raw_with_token_arranges_a_multipart_etag() {
    let store = MemoryStore::new(TokenStyle::S3);
    store.put_raw_with_token("index", "{}", VersionToken::from_etag("\"abc-3\""));
    let token = found_token(block_on(store.get_bytes("index", None)).unwrap());
    assert!(!token.is_fingerprint());
    assert!(store.remove_raw("index"));
    assert!(!store.remove_raw("index"));
}

#[test]
fn fail_nth_fires_on_exactly_the_nth_call() {
    let store = MemoryStore::new(TokenStyle::S3);
    block_on(store.put_bytes("before", b"x", &Precondition::None)).unwrap();
    store.faults().fail_nth(Kind::PutBytes, 2, transient());

    let results: Vec<_> =
        (0..4).map(|i| block_on(store.put_bytes(&format!("k{i}"), b"x", &Precondition::None))).collect();

    assert!(results[0].is_ok());
    assert_eq!(results[1], Err(transient()));
    assert!(results[2].is_ok() && results[3].is_ok());
    assert!(store.object("k1").is_none(), "a failure before the effect writes nothing");
    assert_eq!(store.faults().calls(Kind::PutBytes), 5);
}

#[test]
fn fail_after_effect_writes_but_reports_the_error() {
    let store = MemoryStore::new(TokenStyle::Gcs);
    let token = store.put_raw("index", "v0");
    store.faults().fail_nth_after_effect(Kind::PutBytes, 1, transient());

    let lost = block_on(store.put_bytes("index", b"v1", &Precondition::IfMatch(token.clone())));
    let retry = block_on(store.put_bytes("index", b"v1", &Precondition::IfMatch(token)));

    assert_eq!(lost, Err(transient()));
    assert_eq!(store.object("index").unwrap().0, b"v1");
    assert_eq!(retry, Err(StoreError::PreconditionFailed { key: "index".into() }));
}

#[test]
fn fail_matching_hits_only_matching_keys_until_removed() {
    let store = MemoryStore::new(TokenStyle::S3);
    store.put_raw("data/a", "a");
    store.put_raw("index", "i");
    let denied = StoreError::Auth { status: Some(403), message: "denied".into() };
    let rule = store.faults().fail_matching(Kind::Get, |key| key.starts_with("data/"), denied.clone());

    assert_eq!(block_on(store.get("data/a", None)).map(found_token), Err(denied));
    assert!(block_on(store.get("index", None)).is_ok());
    assert!(block_on(store.get_bytes("data/a", None)).is_ok(), "other kinds are untouched");
    store.faults().remove(rule);
    assert!(block_on(store.get("data/a", None)).is_ok());
}

#[test]
fn fail_randomly_is_reproducible_for_a_seed() {
    let outcomes = |seed| {
        let store = MemoryStore::new(TokenStyle::S3);
        store.put_raw("k", "v");
        store.faults().fail_randomly(Kind::Head, 0.3, seed, transient());
        (0..200).map(|_| block_on(store.head("k")).is_ok()).collect::<Vec<_>>()
    };
    let first = outcomes(5);
    assert_eq!(first, outcomes(5));
    let failures = first.iter().filter(|ok| !**ok).count();
    assert!((30..90).contains(&failures), "about 30% of 200 fail, got {failures}");
}

#[test]
fn shared_faults_count_store_and_cache_calls_separately_by_kind() {
    let faults = Faults::new();
    let store = MemoryStore::new(TokenStyle::S3).with_faults(faults.clone());
    let cache = MemoryCache::new().with_faults(faults.clone());
    faults.fail_nth(Kind::Walk, 1, StoreError::Io { message: "EACCES".into() });

    assert!(block_on(cache.walk()).is_err());
    assert!(block_on(cache.walk()).is_ok());
    assert!(block_on(store.head("x")).is_err());
    assert_eq!((faults.calls(Kind::Walk), faults.calls(Kind::Head)), (2, 1));
    assert_eq!(cache.calls().walk, 2);
}

#[test]
fn on_call_hook_runs_just_before_the_call_acts() {
    let store = MemoryStore::new(TokenStyle::Gcs);
    let first = store.put_raw("index", "v0");
    let writer = store.client();
    store.faults().on_call(
        Kind::Head,
        |key| key == "index",
        move |_| {
            writer.put_raw("index", "v1 from another machine");
        },
    );

    let meta = block_on(store.head("index")).unwrap();

    assert_ne!(meta.token, first);
    assert_eq!(Some(meta.token), store.token("index"));
}

#[test]
fn a_paused_call_waits_for_its_gate_under_the_scheduler() {
    let mut sim = Sim::new(|| {
        let store = MemoryStore::new(TokenStyle::S3);
        store.put_raw("index", "v0");
        let gate = store.faults().pause_matching(Kind::GetBytes, |key| key == "index");
        let (reader, writer) = (store.clone(), store.client());
        let log: Rc<RefCell<Vec<String>>> = Rc::default();
        let (reader_log, writer_log) = (log.clone(), log.clone());
        let writer_gate = gate.clone();
        Scenario::new(log)
            .actor("reader", async move {
                let fetched = reader.get_bytes("index", None).await.unwrap();
                let Fetched::Found { body, .. } = fetched else { panic!("not modified?") };
                reader_log.borrow_mut().push(format!("read {}", String::from_utf8(body).unwrap()));
            })
            .actor("writer", async move {
                writer_gate.reached().await;
                writer.put_bytes("index", b"v1", &Precondition::None).await.unwrap();
                writer_log.borrow_mut().push("wrote v1".to_string());
                writer_gate.open();
            })
    });

    let exploration = sim.explore_exhaustive(1000);
    exploration.assert_clean();
    assert!(exploration.complete);
    for seed in 0..20 {
        let run = sim.run(&crate::testing::sim::Chooser::Random(seed));
        assert_eq!(*run.world.borrow(), ["wrote v1", "read v1"]);
    }
}

#[test]
#[should_panic(expected = "nothing can wake it")]
fn a_call_paused_forever_is_reported_by_block_on() {
    let store = MemoryStore::new(TokenStyle::S3);
    let _gate = store.faults().pause_nth(Kind::Head, 1);
    let _ = block_on(store.head("x"));
}

fn expected(bytes: &[u8]) -> Expected {
    Expected { size: bytes.len() as u64, sha256: Some(sha256(bytes)), replaces: Replaces::Anything }
}

#[test]
fn download_with_the_wrong_size_leaves_the_old_file_intact() {
    let cache = MemoryCache::new();
    cache.write_file("data/a.json", "old");
    let before = cache.file_stat("data/a.json");

    let result = block_on(cache.download(
        "data/a.json",
        Rc::new(b"truncat".to_vec()),
        Expected { size: 9, sha256: None, replaces: Replaces::Anything },
    ));

    match result {
        Err(StoreError::Mismatch { key, message }) => {
            assert_eq!((key.as_str(), message.contains('9')), ("data/a.json", true))
        }
        other => panic!("expected a Mismatch, got {other:?}"),
    }
    assert_eq!(cache.file("data/a.json").unwrap(), b"old");
    assert_eq!(cache.file_stat("data/a.json"), before);
}

#[test]
fn download_with_the_wrong_hash_is_rejected() {
    let cache = MemoryCache::new();
    let wrong = Expected { size: 3, sha256: Some(sha256(b"xyz")), replaces: Replaces::Anything };
    assert!(matches!(block_on(cache.download("a", Rc::new(b"abc".to_vec()), wrong)), Err(StoreError::Mismatch { .. })));
    assert!(cache.file("a").is_none());
}

#[test]
fn download_replaces_the_file_with_a_fresh_mtime() {
    let cache = MemoryCache::new();
    cache.write_file("a", "old");
    let old = cache.file_stat("a").unwrap();

    let done = block_on(cache.download("a", Rc::new(b"new!".to_vec()), expected(b"new!"))).unwrap();

    assert_eq!(cache.file("a").unwrap(), b"new!");
    assert_eq!(done.stat, FileStat { size: 4, mtime_ms: old.mtime_ms + 1 });
    assert_eq!(done.sha256, sha256(b"new!"));
    assert_eq!(block_on(cache.hash("a")).unwrap(), Some(done));
}

#[test]
fn walk_lists_every_file_sorted_with_symlinks_and_vanished_files() {
    let cache = MemoryCache::new();
    cache.write_file("data/b", "b");
    cache.write_file("data/a", "a");
    cache.write_file("data/gone", "g");
    cache.add_symlink("data/link");
    block_on(cache.write_internal(".datastore-index.json", b"{}".to_vec())).unwrap();
    cache.vanish_on_next_walk("data/gone");

    let items = block_on(cache.walk()).unwrap();

    let stat_of = |rel: &str| cache.file_stat(rel).unwrap();
    assert_eq!(
        items,
        vec![
            WalkItem::File { rel: ".datastore-index.json".into(), stat: stat_of(".datastore-index.json") },
            WalkItem::File { rel: "data/a".into(), stat: stat_of("data/a") },
            WalkItem::File { rel: "data/b".into(), stat: stat_of("data/b") },
            WalkItem::Vanished { rel: "data/gone".into() },
            WalkItem::Symlink { rel: "data/link".into() },
        ]
    );
    assert!(cache.file("data/gone").is_none());
    let again = block_on(cache.walk()).unwrap();
    assert_eq!(again.len(), 4, "the vanished file stays gone and is no longer listed");
}

#[test]
fn symlinks_are_never_read_through() {
    let cache = MemoryCache::new();
    cache.add_symlink("data/link");
    assert!(matches!(block_on(cache.prepare_upload("data/link")), Err(StoreError::Io { .. })));
    assert!(matches!(block_on(cache.stat("data/link")), Err(StoreError::Io { .. })));
    assert!(matches!(block_on(cache.hash("data/link")), Err(StoreError::Io { .. })));
}

#[test]
fn prepare_upload_returns_stat_and_hash_or_none_when_missing() {
    let cache = MemoryCache::new();
    cache.write_file("data/a", "hello");

    let prepared = block_on(cache.prepare_upload("data/a")).unwrap().unwrap();

    assert_eq!(*prepared.body, b"hello");
    assert_eq!(prepared.stat, cache.file_stat("data/a").unwrap());
    assert_eq!(prepared.sha256, sha256(b"hello"));
    assert!(block_on(cache.prepare_upload("data/missing")).unwrap().is_none());
    assert_eq!(block_on(cache.stat("data/missing")), Ok(None));
}

#[test]
fn internal_files_round_trip_and_writes_get_distinct_mtimes() {
    let cache = MemoryCache::new();
    assert_eq!(block_on(cache.read_internal(".datastore-sync-state.json")), Ok(None));
    block_on(cache.write_internal(".datastore-sync-state.json", b"{\"version\":1}".to_vec())).unwrap();
    cache.write_file("data/a", "a");

    assert_eq!(block_on(cache.read_internal(".datastore-sync-state.json")), Ok(Some(b"{\"version\":1}".to_vec())));
    let state = cache.file_stat(".datastore-sync-state.json").unwrap();
    assert_ne!(state.mtime_ms, cache.file_stat("data/a").unwrap().mtime_ms);
    assert_eq!(cache.files().len(), 2);
}

#[test]
fn a_store_body_downloads_into_the_cache_and_uploads_back() {
    let store = MemoryStore::new(TokenStyle::S3);
    let cache = MemoryCache::new();
    store.put_raw("data/a", "payload");

    let Fetched::Found { body, size, .. } = block_on(store.get("data/a", None)).unwrap() else { unreachable!() };
    block_on(cache.download("data/a", body, Expected { size, sha256: None, replaces: Replaces::Anything })).unwrap();
    let prepared = block_on(cache.prepare_upload("data/a")).unwrap().unwrap();
    let token = block_on(store.put("data/b", prepared.body, &Precondition::IfAbsent)).unwrap();

    assert_eq!(store.object("data/b"), Some((b"payload".to_vec(), token)));
}

#[test]
fn env_sleep_advances_virtual_time_and_wakes_on_abort() {
    let env = TestEnv::new(7);
    let start = env.now_ms();

    block_on(env.sleep(500)).unwrap();
    assert_eq!(env.now_ms(), start + 500);
    env.advance(25);
    assert_eq!(env.now_ms(), start + 525);

    env.abort();
    assert!(env.is_aborted());
    assert_eq!(block_on(env.sleep(1500)), Err(StoreError::Aborted));
    assert_eq!(env.sleeps(), vec![500]);
    env.trace("pull: index 3 ms");
    assert_eq!(env.traces(), vec!["pull: index 3 ms".to_string()]);
}

#[test]
fn env_abort_during_a_sleep_is_reported_when_it_wakes() {
    let env = TestEnv::new(1);
    let sleeper = env.clone();
    let mut sim = Sim::new(move || {
        let (sleeper, aborter) = (sleeper.clone(), sleeper.clone());
        sleeper.reset_abort();
        let outcome: Rc<RefCell<Option<StoreResult<()>>>> = Rc::default();
        let slot = outcome.clone();
        Scenario::new(outcome)
            .actor("sleeper", async move { *slot.borrow_mut() = Some(sleeper.sleep(1000).await) })
            .actor("aborter", async move { aborter.abort() })
    });
    // sleeper starts the sleep (step 1), the aborter aborts (step 2), the sleeper wakes (step 3).
    let run = sim.run(&crate::testing::sim::Chooser::Replay("0 1 0".parse().unwrap()));
    assert_eq!(*run.world.borrow(), Some(Err(StoreError::Aborted)));
}

#[test]
fn env_random_is_seeded_and_in_range() {
    let a: Vec<f64> = (0..100).map(|_| TestEnv::new(42).random()).collect();
    let env = TestEnv::new(42);
    let b: Vec<f64> = (0..100).map(|_| env.random()).collect();
    assert!(a.iter().all(|&x| x == a[0]), "a fresh env with the same seed starts the same");
    assert_eq!(b[0], a[0]);
    assert!(b.iter().all(|x| (0.0..1.0).contains(x)));
    assert!(b.windows(2).any(|w| w[0] != w[1]));
}
