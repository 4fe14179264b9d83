//! Namespaces: repositories sharing one bucket and one cache directory, each in a subtree of its own
//! (`namespace::ScopedStore` / `ScopedCache` around the engine), and the claims that say which repository owns which
//! namespace (`namespace::register`, `namespace::list`).

use futures_util::future::join;
use marsh::engine::{Engine, EngineConfig, Instance, PullReport, PushReport, SyncError};
use marsh::namespace::{self, Claim, Namespace, NamespaceError, ScopedCache, ScopedStore, STATE_PREFIX};
use marsh::path::{MARKS_FOLDER, SIDECAR_NAME, VIEW_NAME};
use marsh::store::retry::RetryPolicy;
use marsh::testing::memory::{MemoryCache, MemoryStore, TestEnv, TokenStyle, VirtualClock};
use marsh::testing::sim::block_on;
use serde_json::Value;

const STYLES: [TokenStyle; 2] = [TokenStyle::S3, TokenStyle::Gcs];

type ScopedEngine<'a> = Engine<'a, ScopedStore<'a, MemoryStore>, ScopedCache<'a, MemoryCache>, TestEnv>;

/// One service instance bound to a namespace (or to none) on a cache directory, talking to a bucket.
struct Repo {
    store: MemoryStore,
    cache: MemoryCache,
    env: TestEnv,
    instance: Instance,
    config: EngineConfig,
    ns: Option<Namespace>,
}

impl Repo {
    fn new(bucket: &MemoryStore, cache: &MemoryCache, ns: Option<&str>, seed: u64) -> Repo {
        Repo {
            store: bucket.client(),
            cache: cache.instance(),
            env: TestEnv::with_clock(cache.clock().clone(), seed),
            instance: Instance::new(),
            config: EngineConfig::default(),
            ns: ns.map(|name| Namespace::parse(name).expect("a valid namespace")),
        }
    }

    fn with<T>(&self, run: impl FnOnce(&ScopedEngine<'_>) -> T) -> T {
        let store = ScopedStore::new(&self.store, self.ns.as_ref());
        let cache = ScopedCache::new(&self.cache, self.ns.as_ref());
        let engine = Engine::new(&store, &cache, &self.env, &self.config, &self.instance);
        run(&engine)
    }

    fn push(&self) -> Result<PushReport, SyncError> {
        self.with(|engine| block_on(engine.push_changed()))
    }

    fn pull(&self) -> Result<PullReport, SyncError> {
        self.with(|engine| block_on(engine.pull_changed()))
    }

    fn mark_dirty(&self) {
        self.with(|engine| block_on(engine.mark_dirty(None))).expect("markDirty");
    }

    /// The cache path of the namespace's `rel`.
    fn cache_rel(&self, rel: &str) -> String {
        match &self.ns {
            Some(ns) => format!("{}/{rel}", ns.as_str()),
            None => rel.to_string(),
        }
    }

    /// markDirty with the path (as the namespace sees it), then the write.
    fn write(&self, rel: &str, bytes: &[u8]) {
        self.with(|engine| block_on(engine.mark_dirty(Some(rel)))).expect("markDirty");
        self.cache.write_file(&self.cache_rel(rel), bytes.to_vec());
    }
}

fn new_cache(seed: i64) -> MemoryCache {
    MemoryCache::with_clock(VirtualClock::new(1_780_000_000_000 + seed * 1_000_000))
}

fn json(bucket: &MemoryStore, key: &str) -> Value {
    let (bytes, _) = bucket.object(key).unwrap_or_else(|| panic!("{key} is missing"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{key} is not JSON: {e}"))
}

/// The entry keys of the format-2 index under `prefix` (`""`: the root), read as any reader would.
fn index_keys(bucket: &MemoryStore, prefix: &str) -> Vec<String> {
    let meta = json(bucket, &format!("{prefix}_index/_meta.json"));
    assert_eq!(meta["version"], 2, "{prefix}_index/_meta.json is a format-2 commit record");
    let mut keys = Vec::new();
    for name in meta["partitions"].as_array().expect("partitions") {
        let shard = json(bucket, &format!("{prefix}_index/{}.json", name.as_str().expect("a shard name")));
        keys.extend(shard["entries"].as_object().expect("entries").keys().cloned());
    }
    keys.sort();
    keys
}

#[test]
fn a_namespaced_push_writes_under_the_namespace_with_bare_entry_keys() {
    for style in STYLES {
        let bucket = MemoryStore::new(style);
        let cache = new_cache(1);
        let team = Repo::new(&bucket, &cache, Some("team-a"), 1);
        team.write("data/a.json", b"{\"a\":1}");
        team.write("README.md", b"readme");

        let pushed = team.push().unwrap();

        assert_eq!(pushed.uploaded, 2, "{style:?}");
        let keys = bucket.keys();
        assert!(keys.contains(&"team-a/data/a.json".to_string()), "{style:?}: {keys:?}");
        assert!(keys.contains(&"team-a/README.md".to_string()), "{keys:?}");
        assert!(keys.contains(&"team-a/_index/_meta.json".to_string()), "{keys:?}");
        assert!(
            keys.iter().all(|key| key.starts_with("team-a/")),
            "{style:?}: something outside the namespace: {keys:?}"
        );
        assert_eq!(index_keys(&bucket, "team-a/"), ["README.md", "data/a.json"], "entries keep the bare rel");
        assert_eq!(json(&bucket, "team-a/data/a.json"), serde_json::json!({"a": 1}));

        // Another machine's pull of the namespace puts the files at `{ns}/{rel}` in its cache.
        let other_cache = new_cache(2);
        let other = Repo::new(&bucket, &other_cache, Some("team-a"), 2);
        let pulled = other.pull().unwrap();
        assert_eq!(pulled.downloaded, 2, "{style:?}");
        let data: Vec<String> = other_cache.files().into_keys().filter(|rel| !marsh::path::is_internal(rel)).collect();
        assert_eq!(data, ["team-a/README.md", "team-a/data/a.json"], "{style:?}");
        assert_eq!(other_cache.file("team-a/data/a.json").as_deref(), Some(&b"{\"a\":1}"[..]));
    }
}

#[test]
fn the_format_marker_is_read_at_the_root_by_a_namespace() {
    for style in STYLES {
        let bucket = MemoryStore::new(style);
        let team = Repo::new(&bucket, &new_cache(1), Some("team-a"), 1);
        team.write("a.json", b"a");
        team.push().unwrap();
        // A marker inside the namespace is not the bucket's marker: a data key like any other, never read as one.
        bucket.put_raw("team-a/_control/datastore-format", br#"{"format":3,"writtenBy":"swamp 2027"}"#.to_vec());
        let reader = Repo::new(&bucket, &new_cache(2), Some("team-a"), 2);
        assert_eq!(reader.pull().unwrap().downloaded, 1, "{style:?}");

        bucket.put_raw("_control/datastore-format", br#"{"format":3,"writtenBy":"swamp 2027"}"#.to_vec());
        let fresh = Repo::new(&bucket, &new_cache(3), Some("team-a"), 3);
        let refused = fresh.pull().unwrap_err();

        assert!(matches!(&refused, SyncError::FormatUnsupported(_)), "{style:?}: {refused}");
        assert!(refused.to_string().contains("_control/datastore-format"), "{refused}");
        assert!(fresh.cache.files().keys().all(|rel| marsh::path::is_internal(rel)), "nothing downloaded");
        team.write("b.json", b"b");
        assert!(matches!(team.push(), Err(SyncError::FormatUnsupported(_))), "{style:?}: a push is refused too");
        assert!(bucket.object("team-a/b.json").is_none(), "nothing written");
    }
}

#[test]
fn two_namespaces_on_one_bucket_and_one_cache_are_isolated() {
    for style in STYLES {
        let bucket = MemoryStore::new(style);
        let cache = new_cache(1);
        let alpha = Repo::new(&bucket, &cache, Some("alpha"), 1);
        let beta = Repo::new(&bucket, &cache, Some("beta"), 2);
        alpha.write("x.json", b"alpha's x");
        alpha.write("shared.json", b"alpha's shared");
        beta.write("y.json", b"beta's y");
        beta.write("shared.json", b"beta's shared, longer");

        assert_eq!(alpha.push().unwrap().uploaded, 2, "{style:?}");
        assert_eq!(beta.push().unwrap().uploaded, 2, "{style:?}");

        assert_eq!(index_keys(&bucket, "alpha/"), ["shared.json", "x.json"]);
        assert_eq!(index_keys(&bucket, "beta/"), ["shared.json", "y.json"]);
        // The same repositories on another machine: each pull sees its own files only.
        let elsewhere = new_cache(2);
        let alpha2 = Repo::new(&bucket, &elsewhere, Some("alpha"), 3);
        let beta2 = Repo::new(&bucket, &elsewhere, Some("beta"), 4);
        assert_eq!(alpha2.pull().unwrap().downloaded, 2, "{style:?}");
        let data: Vec<String> = elsewhere.files().into_keys().filter(|rel| !marsh::path::is_internal(rel)).collect();
        assert_eq!(data, ["alpha/shared.json", "alpha/x.json"], "{style:?}: alpha's pull took only alpha's files");
        assert_eq!(beta2.pull().unwrap().downloaded, 2);
        assert_eq!(elsewhere.file("alpha/shared.json").as_deref(), Some(&b"alpha's shared"[..]));
        assert_eq!(elsewhere.file("beta/shared.json").as_deref(), Some(&b"beta's shared, longer"[..]));
        assert!(elsewhere.file("beta/x.json").is_none() && elsewhere.file("alpha/y.json").is_none());
        // Each namespace on the first cache is in sync: nothing to download, nothing to push.
        assert_eq!(alpha.pull().unwrap().downloaded, 0, "{style:?}");
        assert_eq!(beta.pull().unwrap().downloaded, 0);
        // An edit in one namespace reaches only that namespace.
        alpha.write("x.json", b"alpha's x, edited");
        alpha.push().unwrap();
        assert_eq!(beta2.pull().unwrap().downloaded, 0, "{style:?}");
        assert_eq!(alpha2.pull().unwrap().downloaded, 1);
        assert_eq!(elsewhere.file("alpha/x.json").as_deref(), Some(&b"alpha's x, edited"[..]));
    }
}

#[test]
fn a_namespaced_pull_stats_the_indexed_paths_and_does_not_walk() {
    // The slow path of a namespace (another machine, no sidecar): the pull asks for the state of the paths the
    // namespace's index names, with the namespace's prefix, in one batched call, and never walks the subtree.
    for style in STYLES {
        let bucket = MemoryStore::new(style);
        let writer = Repo::new(&bucket, &new_cache(1), Some("team-a"), 1);
        writer.write("a.json", b"a");
        writer.write("d/b.json", b"b");
        writer.push().unwrap();
        let elsewhere = new_cache(2);
        elsewhere.write_file("team-a/d/b.json", b"b".to_vec());
        let reader = Repo::new(&bucket, &elsewhere, Some("team-a"), 2);

        let pull = reader.pull().unwrap();

        assert_eq!(pull.downloaded, 1, "{style:?}: only a.json was missing");
        let calls = reader.cache.calls();
        assert_eq!((calls.walk, calls.walk_under), (0, 0), "{style:?}: no walk of any kind");
        assert!(calls.stat_many >= 1, "{style:?}: the indexed paths were stat'ed in batches");
        assert_eq!(elsewhere.file("team-a/a.json").as_deref(), Some(&b"a"[..]));
    }
}

#[test]
fn a_root_bulk_push_on_the_same_cache_leaves_the_namespaces_subtrees_and_state_alone() {
    for style in STYLES {
        let bucket = MemoryStore::new(style);
        let cache = new_cache(1);
        let alpha = Repo::new(&bucket, &cache, Some("alpha"), 1);
        alpha.write("x.json", b"alpha's x");
        alpha.write("d/y.json", b"alpha's y");
        alpha.push().unwrap();
        // A namespace with nothing but a mark here yet (written, never pushed): its subtree is still its own.
        let gamma = Repo::new(&bucket, &cache, Some("gamma"), 3);
        gamma.write("g.json", b"gamma's g");
        let root = Repo::new(&bucket, &cache, None, 2);
        let alpha_keys: Vec<String> = bucket.keys().into_iter().filter(|key| key.starts_with("alpha/")).collect();
        root.mark_dirty();
        cache.write_file("root.json", b"root's file".to_vec());
        // A root folder that merely starts like a namespace's name is root data.
        cache.write_file("alphabet/z.json", b"z".to_vec());

        let pushed = root.push().unwrap();

        assert_eq!(pushed.uploaded, 2, "{style:?}: {pushed:?}");
        assert!(!pushed.marked_only, "a bare markDirty: the whole (root) cache was looked at");
        assert_eq!(index_keys(&bucket, ""), ["alphabet/z.json", "root.json"], "{style:?}");
        let keys = bucket.keys();
        assert!(!keys.iter().any(|key| key.contains(STATE_PREFIX)), "{style:?}: state uploaded: {keys:?}");
        assert!(!keys.contains(&"gamma/g.json".to_string()), "{style:?}: gamma's file went up from the root");
        let alpha_now: Vec<String> = keys.iter().filter(|key| key.starts_with("alpha/")).cloned().collect();
        assert_eq!(alpha_now, alpha_keys, "{style:?}: the root push wrote under alpha/");
        // The namespaces still work on the same cache, and the root's pull elsewhere sees only the root's files.
        assert_eq!(alpha.pull().unwrap().downloaded, 0);
        assert_eq!(gamma.push().unwrap().uploaded, 1, "{style:?}");
        let root2_cache = new_cache(2);
        let root2 = Repo::new(&bucket, &root2_cache, None, 4);
        assert_eq!(root2.pull().unwrap().downloaded, 2, "{style:?}");
        let data: Vec<String> = root2_cache.files().into_keys().filter(|rel| !marsh::path::is_internal(rel)).collect();
        assert_eq!(data, ["alphabet/z.json", "root.json"]);
        // Nor does a root mark naming a path or a folder inside a namespace.
        root.with(|engine| block_on(engine.mark_dirty(Some("alpha/x.json")))).unwrap();
        root.with(|engine| block_on(engine.mark_dirty(Some("gamma")))).unwrap();
        cache.write_file("gamma/g2.json", b"gamma's second".to_vec());
        assert_eq!(root.push().unwrap().uploaded, 0, "{style:?}: a root mark inside a namespace");
        assert_eq!(index_keys(&bucket, ""), ["alphabet/z.json", "root.json"]);
        // And a second root bulk push on the first cache still uploads nothing of theirs.
        root.mark_dirty();
        assert_eq!(root.push().unwrap().uploaded, 0, "{style:?}");
        assert_eq!(index_keys(&bucket, ""), ["alphabet/z.json", "root.json"]);
    }
}

#[test]
fn namespace_state_lives_in_root_state_folders_not_in_the_namespace_subtree() {
    let bucket = MemoryStore::new(TokenStyle::S3);
    let cache = new_cache(1);
    let team = Repo::new(&bucket, &cache, Some("team"), 1);
    team.write("a.json", b"a");
    let marks: Vec<String> = cache.files().into_keys().filter(|rel| rel != "team/a.json").collect();
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert!(marks[0].starts_with(&format!("{STATE_PREFIX}team~{MARKS_FOLDER}/")), "the mark: {marks:?}");

    team.push().unwrap();

    let files: Vec<String> = cache.files().into_keys().collect();
    assert!(files.contains(&format!("{STATE_PREFIX}team/{SIDECAR_NAME}")), "{files:?}");
    assert!(files.contains(&format!("{STATE_PREFIX}team/{VIEW_NAME}")), "{files:?}");
    let under_ns: Vec<&String> = files.iter().filter(|rel| rel.starts_with("team/")).collect();
    assert_eq!(under_ns, ["team/a.json"], "only data inside the namespace's subtree");
    assert!(files.iter().all(|rel| rel == "team/a.json" || rel.starts_with(STATE_PREFIX)), "{files:?}");
    assert!(cache.file(SIDECAR_NAME).is_none() && cache.file(VIEW_NAME).is_none(), "no root state");
    assert!(!files.iter().any(|rel| rel.starts_with(&format!("{MARKS_FOLDER}/"))), "no root marks: {files:?}");
    // The sidecar is the namespace's: it records this namespace's index as verified.
    let state =
        marsh::local::sidecar::SyncState::parse(cache.file(&format!("{STATE_PREFIX}team/{SIDECAR_NAME}")).as_deref());
    assert_eq!(state.verified_token, bucket.token("team/_index/_meta.json"));
}

fn env() -> TestEnv {
    TestEnv::new(7)
}

fn register(bucket: &MemoryStore, name: &str, repo: &str) -> Result<Claim, NamespaceError> {
    let ns = Namespace::parse(name).unwrap();
    block_on(namespace::register(bucket, &env(), &RetryPolicy::default(), &ns, repo))
}

#[test]
fn the_first_registration_claims_the_namespace_and_only_its_repository_may_register_again() {
    for style in STYLES {
        let bucket = MemoryStore::new(style);

        let claim = register(&bucket, "team-a", "repo-1").unwrap();

        let written = json(&bucket, "team-a/.namespace.json");
        assert_eq!(written["namespace"], "team-a", "{written}");
        assert_eq!(written["repoId"], "repo-1");
        assert!(written["registeredAt"].as_str().is_some_and(|at| at.ends_with('Z')), "{written}");
        assert_eq!(claim.repo_id, "repo-1");
        assert_eq!(claim.registered_at, written["registeredAt"].as_str().unwrap());
        let token = bucket.token("team-a/.namespace.json");

        let again = register(&bucket, "team-a", "repo-1").unwrap();
        assert_eq!(again, claim, "{style:?}: the same repository again: the claim as it was");
        assert_eq!(bucket.token("team-a/.namespace.json"), token, "not rewritten");

        let refused = register(&bucket, "team-a", "repo-2").unwrap_err();
        let NamespaceError::Claimed { owner, repo_id, .. } = &refused else { panic!("{style:?}: {refused}") };
        assert_eq!((owner.as_str(), repo_id.as_str()), ("repo-1", "repo-2"));
        assert!(refused.to_string().contains("repo-1"), "the error names the owner: {refused}");
        assert_eq!(json(&bucket, "team-a/.namespace.json")["repoId"], "repo-1", "the claim stays");
        // Another namespace is free for the second repository.
        assert_eq!(register(&bucket, "team-b", "repo-2").unwrap().repo_id, "repo-2");
    }
}

#[test]
fn concurrent_registrations_of_one_namespace_give_it_to_exactly_one_repository() {
    for style in STYLES {
        for first in ["repo-1", "repo-2"] {
            let bucket = MemoryStore::new(style);
            let second = if first == "repo-1" { "repo-2" } else { "repo-1" };
            let ns = Namespace::parse("shared").unwrap();
            let (env1, env2) = (TestEnv::new(1), TestEnv::new(2));
            let (client1, client2) = (bucket.client(), bucket.client());
            let policy = RetryPolicy::default();

            let (one, two) = block_on(join(
                namespace::register(&client1, &env1, &policy, &ns, first),
                namespace::register(&client2, &env2, &policy, &ns, second),
            ));

            let outcomes = [(first, &one), (second, &two)];
            let winners: Vec<&str> =
                outcomes.iter().filter(|(_, result)| result.is_ok()).map(|(repo, _)| *repo).collect();
            assert_eq!(winners.len(), 1, "{style:?}: exactly one registration wins: {one:?} / {two:?}");
            let winner = winners[0];
            assert_eq!(json(&bucket, "shared/.namespace.json")["repoId"], winner, "{style:?}");
            for (repo, result) in outcomes {
                if repo != winner {
                    assert!(
                        matches!(result, Err(NamespaceError::Claimed { owner, .. }) if owner == winner),
                        "{style:?}: the loser is told who owns it: {result:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn list_returns_the_claimed_names_sorted_and_ignores_deeper_claims() {
    for style in STYLES {
        let bucket = MemoryStore::new(style);
        bucket.set_page_size(2);
        for (name, repo) in [("gamma", "r3"), ("alpha", "r1"), ("beta.2", "r2")] {
            register(&bucket, name, repo).unwrap();
        }
        // Not claims: deeper keys, a root one, an internal folder's, and data.
        bucket.put_raw("alpha/sub/.namespace.json", b"{}".to_vec());
        bucket.put_raw("x/y/.namespace.json", b"{}".to_vec());
        bucket.put_raw(".namespace.json", b"{}".to_vec());
        bucket.put_raw("_index/.namespace.json", b"{}".to_vec());
        bucket.put_raw("delta/data.json", b"{}".to_vec());
        bucket.put_raw("delta/.namespace.json.bak", b"{}".to_vec());

        let listed = block_on(namespace::list(&bucket, &env(), &RetryPolicy::default())).unwrap();

        assert_eq!(listed, ["alpha", "beta.2", "gamma"], "{style:?}");
    }
}

#[test]
fn invalid_names_and_repository_ids_are_refused() {
    for bad in ["", ".hidden", "_index", "a/b", "..", "../x", "a b", "a~b", "é"] {
        let refused = Namespace::parse(bad).unwrap_err();
        assert!(matches!(refused, NamespaceError::Invalid { .. }), "{bad:?}: {refused}");
        assert!(refused.to_string().contains("invalid namespace"), "{refused}");
    }
    assert!(Namespace::parse(&"n".repeat(128)).is_ok());
    assert!(Namespace::parse(&"n".repeat(129)).is_err());
    let bucket = MemoryStore::new(TokenStyle::S3);
    let refused = register(&bucket, "team", "  ").unwrap_err();
    assert!(matches!(refused, NamespaceError::Invalid { .. }), "{refused}");
    assert!(bucket.keys().is_empty(), "nothing written for an invalid registration");
}
