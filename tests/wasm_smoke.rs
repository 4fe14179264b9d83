//! Boundary smoke tests, run by `wasm-pack test --node`: an async in-memory JS store driven through the Rust traits.
#![cfg(target_arch = "wasm32")]

use marsh::index::{parse_sha256_hex, sha256_hex};
use marsh::store::token::VersionToken;
use marsh::store::{
    Env, Expected, Fetched, FileStat, ListPage, ListedObject, LocalCache, ObjectStore, PathStat, Precondition,
    Replaces, StoreError, WalkItem,
};
use marsh::wasm::{JsCache, JsEnv, JsStore};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen(inline_js = r#"
const tick = () => new Promise((resolve) => setTimeout(resolve, 1));
const fail = (kind, props = {}) => Object.assign(new Error(props.message ?? kind), { kind, ...props });

export function memoryStore() {
  const objects = new Map([["a/b.json", { body: "hello", token: "tok-1" }], ["a/c.json", { body: "hi", token: "tok-c" }]]);
  let next = 2;
  return {
    async get(key, ifNoneMatch) {
      await tick();
      const found = objects.get(key);
      if (!found) throw fail("NotFound", { key, message: `no object ${key}` });
      if (ifNoneMatch === found.token) return { notModified: true };
      return { body: found.body, token: found.token, size: found.body.length };
    },
    async getBytes(key) {
      const found = await this.get(key);
      return { bytes: new TextEncoder().encode(found.body), token: found.token, size: found.size };
    },
    async head(key) {
      const { token, size } = await this.get(key);
      return { token, size };
    },
    async put(key, body, precondition) {
      await tick();
      const current = objects.get(key);
      if (precondition.kind === "ifAbsent" && current) throw fail("PreconditionFailed", { status: 412 });
      if (precondition.kind === "ifMatch" && current?.token !== precondition.token) {
        throw fail("PreconditionFailed", { status: 412 });
      }
      const token = `tok-${next++}`;
      objects.set(key, { body, token });
      return { token };
    },
    async putBytes(key, bytes, precondition) {
      return this.put(key, new TextDecoder().decode(bytes), precondition);
    },
    async delete(key) {
      if (!objects.delete(key)) throw fail("NotFound", { key });
    },
    // One object per page: the page token is the last key of the page before.
    async list(prefix, pageToken) {
      await tick();
      const keys = [...objects.keys()].filter((key) => key.startsWith(prefix) && (pageToken === undefined || key > pageToken)).sort();
      const page = keys.slice(0, 1).map((key) => ({ key, size: objects.get(key).body.length, token: objects.get(key).token }));
      return keys.length > 1 ? { objects: page, nextPageToken: keys[0] } : { objects: page };
    },
  };
}

export function throwingStore(thrown) {
  const reject = async () => {
    await tick();
    throw thrown;
  };
  return { get: reject, getBytes: reject, head: reject, put: reject, putBytes: reject, delete: reject, list: reject };
}

export function thrown(kind, status) {
  return Object.assign(new Error(`thrown ${kind}`), { kind, status });
}

export function plainString() {
  return "just a string";
}

export function memoryCache() {
  const sha = "ab".repeat(32);
  return {
    async stat(rel) { return rel === "x.txt" ? { size: 3, mtimeMs: 1000.4 } : null; },
    async walk() {
      this.calls.push(["walk"]);
      return [
        { kind: "file", rel: "x.txt", size: 3, mtimeMs: 1000 },
        { kind: "vanished", rel: "gone.txt" },
        { kind: "symlink", rel: "link" },
      ];
    },
    async walkUnder(rel) {
      return rel === "d" ? [{ kind: "file", rel: "d/x.txt", size: 4, mtimeMs: 2000 }, { kind: "symlink", rel: "d/l" }] : [];
    },
    // Each call's arguments, for the tests to see their wire shape.
    calls: [],
    async removeFile(rel, expected) {
      this.calls.push(["removeFile", rel, expected]);
      if (rel === "changed.txt") throw Object.assign(new Error("changed"), { kind: "LocalChanged" });
    },
    async readInternal(name) { return name === "present" ? new Uint8Array([1, 2, 3]) : null; },
    async writeInternal(_name, bytes) { if (!(bytes instanceof Uint8Array)) throw new Error("not bytes"); },
    async listInternal(folder) { return folder === ".marsh-marks" ? ["m1", "m2"] : []; },
    async removeInternal(name) { this.calls.push(["removeInternal", name]); },
    async prepareUpload(rel) { return { body: `body of ${rel}`, size: 3, mtimeMs: 5, sha256: sha }; },
    async download(rel, _body, expected) {
      this.calls.push(["download", rel, expected]);
      if (rel === "changed.txt") throw Object.assign(new Error("changed"), { kind: "LocalChanged" });
      return { size: expected.size, mtimeMs: 6, sha256: sha };
    },
    async hash() { return null; },
    async createDir(rel) { this.calls.push(["createDir", rel]); },
  };
}

// The arguments of the cache's recorded calls, as JSON (`undefined` fields left out, as on the wire).
export function recordedCalls(cache) {
  return JSON.stringify(cache.calls);
}

export function packedCache(consistent) {
  const base = memoryCache();
  base.walkPacked = async () => ({
    files: consistent ? "a.json\0d/b.json" : "a.json",
    sizes: Float64Array.from([1, 22]),
    mtimes: Float64Array.from([1000.6, 2000]),
    symlinks: ["link"],
    vanished: ["gone.json"],
  });
  return base;
}

// A packed walk of the given `files` (one size and mtime per NUL-separated path).
export function packedCacheOf(files) {
  const base = memoryCache();
  const text = typeof files === "string" ? files : files instanceof Uint8Array ? new TextDecoder().decode(files) : null;
  const count = text === null ? 0 : text.split("\0").length;
  base.walkPacked = async () => ({
    files,
    sizes: new Float64Array(count).fill(1),
    mtimes: new Float64Array(count).fill(1000),
    symlinks: [],
    vanished: [],
  });
  return base;
}

// A cache with `statMany`: each path's kind by its name (a "link" path is a symlink, "x.txt" a file), and the paths
// asked recorded; `broken` answers one item short.
export function statManyCache(broken) {
  const base = memoryCache();
  base.asked = [];
  base.statMany = async (rels) => {
    const paths = rels.split("\0");
    base.asked.push(paths);
    const kinds = Uint8Array.from(paths, (rel) => rel.includes("link") ? 2 : rel === "x.txt" ? 1 : 0);
    const count = broken ? paths.length - 1 : paths.length;
    return {
      kinds: kinds.subarray(0, count),
      sizes: new Float64Array(count).fill(3),
      mtimes: new Float64Array(count).fill(1000.4),
    };
  };
  return base;
}

export function askedPaths(cache) {
  return JSON.stringify(cache.asked);
}

// Paths with accents, a CJK name, an emoji (a surrogate pair) and a lone surrogate, joined as a walk joins them.
export function unusualPaths() {
  return ["a/caf\u00e9.json", "b/\u6587\u4ef6.yaml", "c/\u{1F600}.txt", "d/bad\uD800.txt", "e/plain.json"].join("\0");
}

export function env(aborted) {
  return {
    signal: { aborted },
    lines: [],
    async sleep(ms) { await tick(); if (this.signal.aborted) throw Object.assign(new Error("x"), { name: "AbortError" }); },
    trace(line) { this.lines.push(line); },
  };
}

export function errorField(error, name) {
  return error[name];
}

export function isError(value) {
  return value instanceof Error;
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = memoryStore)]
    fn memory_store() -> JsValue;
    #[wasm_bindgen(js_name = throwingStore)]
    fn throwing_store(thrown: JsValue) -> JsValue;
    fn thrown(kind: &str, status: Option<u16>) -> JsValue;
    #[wasm_bindgen(js_name = plainString)]
    fn plain_string() -> JsValue;
    #[wasm_bindgen(js_name = memoryCache)]
    fn memory_cache() -> JsValue;
    #[wasm_bindgen(js_name = recordedCalls)]
    fn recorded_calls(cache: &JsValue) -> String;
    #[wasm_bindgen(js_name = packedCache)]
    fn packed_cache(consistent: bool) -> JsValue;
    #[wasm_bindgen(js_name = packedCacheOf)]
    fn packed_cache_of(files: JsValue) -> JsValue;
    #[wasm_bindgen(js_name = statManyCache)]
    fn stat_many_cache(broken: bool) -> JsValue;
    #[wasm_bindgen(js_name = askedPaths)]
    fn asked_paths(cache: &JsValue) -> String;
    #[wasm_bindgen(js_name = unusualPaths)]
    fn unusual_paths() -> JsValue;
    fn env(aborted: bool) -> JsValue;
    #[wasm_bindgen(js_name = errorField)]
    fn error_field(error: &JsValue, name: &str) -> JsValue;
    #[wasm_bindgen(js_name = isError)]
    fn is_error(value: &JsValue) -> bool;
}

fn store() -> JsStore {
    JsStore::from_js(memory_store()).expect("memory store implements MarshStore")
}

#[wasm_bindgen_test]
async fn get_returns_token_and_size_from_an_async_js_store() {
    let fetched = store().get("a/b.json", None).await.unwrap();

    match fetched {
        Fetched::Found { body, token, size } => {
            assert_eq!(body.as_string().as_deref(), Some("hello"));
            assert_eq!(token, VersionToken::new("tok-1"));
            assert_eq!(size, 5);
        }
        Fetched::NotModified => panic!("expected a body"),
    }
}

#[wasm_bindgen_test]
async fn get_with_the_current_token_is_not_modified() {
    let fetched = store().get("a/b.json", Some(&VersionToken::new("tok-1"))).await.unwrap();

    assert!(matches!(fetched, Fetched::NotModified));
}

#[wasm_bindgen_test]
async fn missing_object_surfaces_as_not_found_with_its_key() {
    let error = store().head("nope.json").await.unwrap_err();

    assert_eq!(error, StoreError::NotFound { key: "nope.json".into() });
}

#[wasm_bindgen_test]
async fn put_bytes_with_a_stale_token_fails_the_precondition() {
    let store = store();
    let fresh = store.put_bytes("a/b.json", b"v2", &Precondition::IfMatch(VersionToken::new("tok-1"))).await;
    let stale = store.put_bytes("a/b.json", b"v3", &Precondition::IfMatch(VersionToken::new("tok-1"))).await;

    assert_eq!(fresh.unwrap(), VersionToken::new("tok-2"));
    assert_eq!(stale.unwrap_err(), StoreError::PreconditionFailed { key: "a/b.json".into() });
    match store.get_bytes("a/b.json", None).await.unwrap() {
        Fetched::Found { body, .. } => assert_eq!(body, b"v2"),
        Fetched::NotModified => panic!("expected bytes"),
    }
}

#[wasm_bindgen_test]
async fn put_if_absent_on_an_existing_key_fails_the_precondition() {
    let error = store().put("a/b.json", "x".into(), &Precondition::IfAbsent).await.unwrap_err();

    assert!(matches!(error, StoreError::PreconditionFailed { .. }));
}

/// `ListPage` and `ListedObject` of js/host.ts, read field by field (no export lists, so this is where they cross): a
/// page with `nextPageToken`, handed back as `pageToken`, then the last page without one.
#[wasm_bindgen_test]
async fn list_pages_cross_with_and_without_a_next_page_token() {
    let store = store();

    let first = store.list("a/", None).await.unwrap();
    let last = store.list("a/", first.next_page.as_deref()).await.unwrap();

    let listed = |key: &str, size, token: &str| ListedObject { key: key.into(), size, token: VersionToken::new(token) };
    assert_eq!(first, ListPage { objects: vec![listed("a/b.json", 5, "tok-1")], next_page: Some("a/b.json".into()) });
    assert_eq!(last, ListPage { objects: vec![listed("a/c.json", 2, "tok-c")], next_page: None });
}

#[wasm_bindgen_test]
async fn thrown_kinds_map_to_typed_errors() {
    let cases = [
        (
            thrown("Transient", Some(503)),
            StoreError::Transient { status: Some(503), message: "thrown Transient".into() },
        ),
        (thrown("Auth", Some(403)), StoreError::Auth { status: Some(403), message: "thrown Auth".into() }),
        (thrown("Http", Some(400)), StoreError::Http { status: 400, message: "thrown Http".into() }),
        (thrown("Aborted", None), StoreError::Aborted),
        (thrown("Io", None), StoreError::Io { message: "thrown Io".into() }),
        (plain_string(), StoreError::Io { message: "just a string".into() }),
    ];
    for (thrown, expected) in cases {
        let error = JsStore::from_js(throwing_store(thrown)).unwrap().head("k").await.unwrap_err();
        assert_eq!(error, expected);
    }
}

#[wasm_bindgen_test]
fn a_store_missing_methods_is_rejected_when_wrapped() {
    let error = JsStore::from_js(JsValue::from(js_sys::Object::new())).err().expect("an empty object is not a store");

    assert!(is_error(&error));
    let message = error_field(&error, "message").as_string().unwrap();
    assert!(message.contains("missing method(s) get, getBytes"), "{message}");
}

#[wasm_bindgen_test]
async fn cache_answers_cross_the_boundary() {
    let cache = JsCache::from_js(memory_cache()).unwrap();

    let stat = cache.stat("x.txt").await.unwrap().unwrap();
    let walk = cache.walk().await.unwrap();
    let prepared = cache.prepare_upload("x.txt").await.unwrap().unwrap();

    assert_eq!((stat.size, stat.mtime_ms), (3, 1000));
    assert_eq!(cache.stat("other").await.unwrap(), None);
    assert_eq!(walk.len(), 3);
    assert!(matches!(&walk[1], WalkItem::Vanished { rel } if rel == "gone.txt"));
    assert!(matches!(&walk[2], WalkItem::Symlink { rel } if rel == "link"));
    assert_eq!(cache.read_internal("present").await.unwrap(), Some(vec![1, 2, 3]));
    assert_eq!(cache.read_internal("absent").await.unwrap(), None);
    cache.write_internal("x", vec![9]).await.unwrap();
    assert_eq!(prepared.body.as_string().as_deref(), Some("body of x.txt"));
    assert_eq!(sha256_hex(&prepared.sha256), "ab".repeat(32));
    assert_eq!(cache.hash("x.txt").await.unwrap(), None);
}

/// The cache methods of per-path marks and deletions, and `download`'s `replaces` in its three forms (absent: anything;
/// null: nothing may be there; a stat: that file), as js/host.ts spells them.
#[wasm_bindgen_test]
async fn marks_removals_and_download_preconditions_cross_the_boundary() {
    let host = memory_cache();
    let cache = JsCache::from_js(host.clone()).unwrap();
    let stat = FileStat { size: 3, mtime_ms: 1000 };
    let expected = |replaces| Expected { size: 3, sha256: None, replaces };

    let under = cache.walk_under("d").await.unwrap();
    assert_eq!(
        under,
        [
            WalkItem::File { rel: "d/x.txt".into(), stat: FileStat { size: 4, mtime_ms: 2000 } },
            WalkItem::Symlink { rel: "d/l".into() }
        ]
    );
    assert_eq!(cache.walk_under("none").await.unwrap(), []);
    assert_eq!(cache.list_internal(".marsh-marks").await.unwrap(), ["m1", "m2"]);
    cache.remove_internal(".marsh-marks/m1").await.unwrap();
    cache.remove("x.txt", stat).await.unwrap();
    let changed = cache.remove("changed.txt", stat).await.unwrap_err();
    assert_eq!(changed, StoreError::LocalChanged { key: "changed.txt".into() });
    for replaces in [Replaces::Anything, Replaces::Nothing, Replaces::File(stat)] {
        cache.download("x.txt", JsValue::NULL, expected(replaces)).await.unwrap();
    }
    let changed = cache.download("changed.txt", JsValue::NULL, expected(Replaces::Nothing)).await.unwrap_err();
    assert_eq!(changed, StoreError::LocalChanged { key: "changed.txt".into() });

    let calls: serde_json::Value = serde_json::from_str(&recorded_calls(&host)).unwrap();
    assert_eq!(
        calls,
        serde_json::json!([
            ["removeInternal", ".marsh-marks/m1"],
            ["removeFile", "x.txt", { "size": 3, "mtimeMs": 1000 }],
            ["removeFile", "changed.txt", { "size": 3, "mtimeMs": 1000 }],
            ["download", "x.txt", { "size": 3 }],
            ["download", "x.txt", { "size": 3, "replaces": null }],
            ["download", "x.txt", { "size": 3, "replaces": { "size": 3, "mtimeMs": 1000 } }],
            ["download", "changed.txt", { "size": 3, "replaces": null }],
        ])
    );
}

#[wasm_bindgen_test]
async fn env_sleep_reports_abort() {
    let running = JsEnv::from_js(env(false)).unwrap();
    let aborted = JsEnv::from_js(env(true)).unwrap();

    running.sleep(1).await.unwrap();
    running.trace("phase 1ms");
    assert!(!running.is_aborted());
    assert!(running.random() < 1.0);
    assert_eq!(aborted.sleep(1).await.unwrap_err(), StoreError::Aborted);
}

#[wasm_bindgen_test]
fn sha256_hex_round_trips_and_rejects_bad_input() {
    let digest = parse_sha256_hex(&"0F".repeat(32)).unwrap();

    assert_eq!(sha256_hex(&digest), "0f".repeat(32));
    assert_eq!(parse_sha256_hex("abc"), None);
    assert_eq!(parse_sha256_hex(&"zz".repeat(32)), None);
}

#[wasm_bindgen_test]
async fn packed_walk_paths_read_as_the_glue_reads_strings_and_a_non_string_is_refused() {
    let paths = unusual_paths();
    let expected: Vec<String> = paths.as_string().expect("a string").split('\0').map(str::to_string).collect();
    assert!(expected[3].contains('\u{FFFD}'), "a lone surrogate becomes U+FFFD: {expected:?}");
    let walk = JsCache::from_js(packed_cache_of(paths)).unwrap().walk().await.unwrap();
    let rels: Vec<&str> =
        walk.iter().map(|item| if let WalkItem::File { rel, .. } = item { rel.as_str() } else { "" }).collect();
    assert_eq!(rels, expected);
    let refused = JsCache::from_js(packed_cache_of(JsValue::from_f64(7.0))).unwrap().walk().await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Io { message } if message.contains("`files` must be a Uint8Array or a string")),
        "{refused:?}"
    );
}

#[wasm_bindgen_test]
async fn packed_walk_paths_as_utf8_bytes_read_like_the_string_and_the_buffer_is_freed_once_copied() {
    let text = "a.json\0\u{e4}/\u{f6}.json\0\u{65e5}\u{672c}/x.json\0\u{1f600}.json";
    let bytes = js_sys::Uint8Array::from(text.as_bytes());
    let walk = JsCache::from_js(packed_cache_of(bytes.clone().into())).unwrap().walk().await.unwrap();
    let rels: Vec<&str> =
        walk.iter().map(|item| if let WalkItem::File { rel, .. } = item { rel.as_str() } else { "" }).collect();
    assert_eq!(rels, text.split('\0').collect::<Vec<_>>());
    assert_eq!(bytes.byte_length(), 0, "the host's buffer is released once copied in");

    let broken = js_sys::Uint8Array::from(&b"a.json\0\xff.json"[..]);
    let refused = JsCache::from_js(packed_cache_of(broken.into())).unwrap().walk().await.unwrap_err();
    assert!(matches!(&refused, StoreError::Io { message } if message.contains("`files` is not UTF-8")), "{refused:?}");
}

#[wasm_bindgen_test]
async fn packed_walk_is_preferred_and_checked() {
    let walk = JsCache::from_js(packed_cache(true)).unwrap().walk().await.unwrap();
    let broken = JsCache::from_js(packed_cache(false)).unwrap().walk().await.unwrap_err();

    assert_eq!(walk.len(), 4);
    assert!(
        matches!(&walk[0], WalkItem::File { rel, stat } if rel == "a.json" && stat.size == 1 && stat.mtime_ms == 1001)
    );
    assert!(matches!(&walk[1], WalkItem::File { rel, stat } if rel == "d/b.json" && stat.size == 22));
    assert!(matches!(&walk[2], WalkItem::Symlink { rel } if rel == "link"));
    assert!(matches!(&walk[3], WalkItem::Vanished { rel } if rel == "gone.json"));
    assert!(matches!(broken, StoreError::Io { ref message } if message.contains("one item per file")), "{broken:?}");
}

#[wasm_bindgen_test]
async fn stat_many_crosses_once_and_a_host_without_it_is_walked() {
    let host = stat_many_cache(false);
    let cache = JsCache::from_js(host.clone()).unwrap();
    let found = cache.stat_many(&["d/link/a", "gone.txt", "x.txt"]).await.unwrap();
    assert_eq!(found, [PathStat::Symlink, PathStat::Absent, PathStat::File(FileStat { size: 3, mtime_ms: 1000 })]);
    assert_eq!(asked_paths(&host), r#"[["d/link/a","gone.txt","x.txt"]]"#, "one call, the paths in order");

    let broken = JsCache::from_js(stat_many_cache(true)).unwrap().stat_many(&["a", "b"]).await.unwrap_err();
    assert!(matches!(&broken, StoreError::Io { message } if message.contains("one item per path")), "{broken:?}");

    // `memoryCache` has no statMany: its walk answers (x.txt a file, link a symlink, gone.txt vanished), one walk for
    // every batch of the operation.
    let walked_host = memory_cache();
    let walked = JsCache::from_js(walked_host.clone()).unwrap();
    let found = walked.stat_many(&["x.txt", "link/under", "gone.txt"]).await.unwrap();
    assert_eq!(found, [PathStat::File(FileStat { size: 3, mtime_ms: 1000 }), PathStat::Symlink, PathStat::Absent]);
    assert_eq!(walked.stat_many(&["link", "y.txt"]).await.unwrap(), [PathStat::Symlink, PathStat::Absent]);
    assert_eq!(recorded_calls(&walked_host), r#"[["walk"]]"#, "one walk answers both batches");
}
