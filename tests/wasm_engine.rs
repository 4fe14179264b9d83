//! The real engine driven through the wasm boundary, run by `wasm-pack test --node`: `SyncService` and `LockClient`
//! over in-memory JS host objects with exact store semantics (content tokens, preconditions, conditional GETs, streamed
//! bodies) and hooks that run a callback just before or after a given store call, to land a concurrent writer at an
//! exact moment.
#![cfg(target_arch = "wasm32")]

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Array, Function, Promise, Reflect};
use marsh::wasm::{LockClient, SyncService};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use wasm_bindgen_test::wasm_bindgen_test;

/// The format-1 monolith.
const INDEX: &str = ".datastore-index.json";
/// Format 2: the commit record, and the shards holding the paths these tests use (docs/formats.md): single-segment
/// paths in `_root`; `data/x.json`, which the official rules give no shard, in marsh's `_unsharded`.
const META: &str = "_index/_meta.json";
const ROOT_SHARD: &str = "_index/_root.json";
const UNSHARDED: &str = "_index/_unsharded.json";
const SIDECAR: &str = ".datastore-sync-state.json";
/// The folder of per-path marks in the cache.
const MARKS: &str = ".marsh-marks";

#[wasm_bindgen(inline_js = r#"
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
const fail = (kind, props = {}) => Object.assign(new Error(props.message ?? kind), { kind, ...props });
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const META = "_index/_meta.json";
const MONOLITH = ".datastore-index.json";

async function sha256Hex(bytes) {
  const digest = await globalThis.crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function streamOf(bytes) {
  const copy = bytes.slice();
  return new ReadableStream({
    start(controller) {
      if (copy.length > 0) controller.enqueue(copy);
      controller.close();
    },
  });
}

async function readStream(stream) {
  if (!(stream instanceof ReadableStream)) throw new Error("body is not a ReadableStream");
  const reader = stream.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

// An S3-like bucket: the token of an object is a digest of its bytes (like a single-part ETag).
export function memoryStore() {
  const objects = new Map(); // key -> { bytes, token }
  const hooks = [];
  const store = {
    requests: 0,
    unsignalled: 0,
    preconditionFailures: 0,
    counts: {},
    count(name) {
      return store.counts[name] ?? 0;
    },
    text(key) {
      const found = objects.get(key);
      return found ? decoder.decode(found.bytes) : null;
    },
    tokenOf(key) {
      return objects.get(key)?.token ?? null;
    },
    json(key) {
      const text = store.text(key);
      return text === null ? null : JSON.parse(text);
    },
    // What any reader of the bucket finds (docs/formats.md), written from the format alone: a `_meta.json` of version
    // 2 lists the shards; else a version-1 monolith; else the shards under `_index/` (no commit record yet).
    layout() {
      const meta = store.json(META);
      if (meta?.version === 2) return { format: 2, commit: META, shards: meta.partitions };
      const monolith = store.json(MONOLITH);
      if (monolith?.version === 1) return { format: 1, commit: MONOLITH, entries: monolith.entries };
      const shards = [...objects.keys()].map((key) => /^_index\/([^/]+)\.json$/.exec(key)?.[1])
        .filter((name) => name !== undefined && name !== "_meta");
      return { format: 2, commit: null, shards };
    },
    indexFormat() {
      const layout = store.layout();
      return layout.commit === null && layout.shards.length === 0 ? null : layout.format;
    },
    indexEntries() {
      const layout = store.layout();
      if (layout.format === 1) return layout.entries;
      const entries = {};
      for (const name of layout.shards) {
        const shard = store.json(`_index/${name}.json`);
        if (shard === null) throw new Error(`listed shard ${name} is missing`);
        if (shard.version !== 1) throw new Error(`shard ${name} is not a version-1 document`);
        for (const [rel, entry] of Object.entries(shard.entries)) {
          if (rel in entries) throw new Error(`${rel} is in two shards`);
          entries[rel] = entry;
        }
      }
      return entries;
    },
    indexKeys() {
      return Object.keys(store.indexEntries()).sort();
    },
    // The token a sidecar records as verified: `_meta.json`'s on format 2, the monolith's on format 1.
    commitToken() {
      const { commit } = store.layout();
      return commit === null ? null : store.tokenOf(commit);
    },
    // A format-1 bucket, as the official extensions wrote them before format 2: the files and one monolith.
    async seedMonolith(files) {
      const entries = {};
      for (const [rel, text] of files) {
        const bytes = encoder.encode(text);
        await write(rel, bytes, { kind: "none" });
        entries[rel] = { key: rel, size: bytes.length, lastModified: "2026-04-24T10:00:00.000Z",
          sha256: await sha256Hex(bytes) };
      }
      const monolith = { version: 1, lastPulled: "2026-04-24T10:00:00.000Z", entries };
      await write(MONOLITH, encoder.encode(JSON.stringify(monolith, null, 2)), { kind: "none" });
    },
    // Run `fn` (sync or async; a throw fails the call) at the `nth` matching call, before it acts or after it acted
    // (its answer is returned only once `fn` settles). `key` null or undefined matches any key.
    hook(phase, method, key, nth, fn) {
      hooks.push({ phase, method, key, nth, fn, seen: 0 });
    },
    failOn(method, key, kind, status) {
      store.hook("before", method, key, 1, () => {
        throw fail(kind, { status, message: `injected ${kind} (HTTP ${status})` });
      });
    },

    async get(key, ifNoneMatch, options) {
      return call("get", key, options, () => {
        const found = existing(key);
        if (ifNoneMatch != null && ifNoneMatch === found.token) return { notModified: true };
        return { body: streamOf(found.bytes), token: found.token, size: found.bytes.length };
      });
    },
    async getBytes(key, ifNoneMatch, options) {
      return call("getBytes", key, options, () => {
        const found = existing(key);
        if (ifNoneMatch != null && ifNoneMatch === found.token) return { notModified: true };
        return { bytes: found.bytes.slice(), token: found.token, size: found.bytes.length };
      });
    },
    async head(key, options) {
      return call("head", key, options, () => {
        const found = existing(key);
        return { token: found.token, size: found.bytes.length };
      });
    },
    async put(key, body, precondition, options) {
      return call("put", key, options, async () => {
        if (typeof body?.open !== "function") throw new Error(`put ${key}: body is not an UploadBody`);
        const bytes = await readStream(await body.open());
        if (bytes.length !== body.size) throw new Error(`put ${key}: body size ${body.size}, read ${bytes.length}`);
        return write(key, bytes, precondition);
      });
    },
    async putBytes(key, bytes, precondition, options) {
      return call("putBytes", key, options, () => {
        if (!(bytes instanceof Uint8Array)) throw new Error(`putBytes ${key}: not a Uint8Array`);
        return write(key, bytes.slice(), precondition);
      });
    },
    async delete(key, ifMatch, options) {
      return call("delete", key, options, () => {
        const found = existing(key);
        if (ifMatch != null && ifMatch !== found.token) {
          store.preconditionFailures++;
          throw fail("PreconditionFailed", { key, status: 412 });
        }
        objects.delete(key);
      });
    },
    async list(prefix, _pageToken, options) {
      return call("list", prefix, options, () => {
        const keys = [...objects.keys()].filter((key) => key.startsWith(prefix)).sort();
        return {
          objects: keys.map((key) => ({ key, token: objects.get(key).token, size: objects.get(key).bytes.length })),
        };
      });
    },
  };

  function existing(key) {
    const found = objects.get(key);
    if (!found) throw fail("NotFound", { key, status: 404, message: `no object ${key}` });
    return found;
  }

  async function write(key, bytes, precondition) {
    // Hash first: the check and the write below must not be split by an await.
    const token = (await sha256Hex(bytes)).slice(0, 32);
    const current = objects.get(key);
    const kind = precondition?.kind;
    let ok;
    if (kind === "none") ok = true;
    else if (kind === "ifAbsent") ok = current === undefined;
    else if (kind === "ifMatch") ok = current !== undefined && current.token === precondition.token;
    else throw new Error(`bad precondition ${JSON.stringify(precondition)}`);
    if (!ok) {
      store.preconditionFailures++;
      throw fail("PreconditionFailed", { key, status: 412 });
    }
    objects.set(key, { bytes, token });
    return { token };
  }

  async function runHooks(phase, method, key) {
    for (const hook of hooks) {
      if (hook.phase !== phase || hook.method !== method || (hook.key != null && hook.key !== key)) continue;
      hook.seen++;
      if (hook.seen === hook.nth) await hook.fn();
    }
  }

  async function call(method, key, options, action) {
    store.requests++;
    for (const name of [method, `${method} ${key}`]) store.counts[name] = store.count(name) + 1;
    if (!(options?.signal instanceof AbortSignal)) store.unsignalled++;
    await tick();
    await runHooks("before", method, key);
    options?.signal?.throwIfAborted();
    const answer = await action();
    await runHooks("after", method, key);
    return answer;
  }

  return store;
}

// A cache directory: rel -> { bytes, mtimeMs }, internal files (and the `.marsh-marks/` folder) included; every write
// moves the clock forward. Like a real cache, a download or removal acts only on the file the core saw (`replaces`,
// `removeFile`'s stat): a local write that landed since is never overwritten or removed.
export function memoryCache() {
  const files = new Map();
  const dirs = new Set();
  const hooks = [];
  let clock = 1_700_000_000_000;
  const save = (rel, bytes) => {
    clock += 1000;
    files.set(rel, { bytes, mtimeMs: clock });
    return clock;
  };
  const statOf = (file) => ({ size: file.bytes.length, mtimeMs: file.mtimeMs });
  const isStat = (file, stat) => file !== undefined && file.bytes.length === stat.size && file.mtimeMs === stat.mtimeMs;
  const under = (rel, folder) => rel === folder || rel.startsWith(`${folder}/`);
  const enter = async (options, method, rel) => {
    cache.calls++;
    if (!(options?.signal instanceof AbortSignal)) cache.unsignalled++;
    await tick();
    for (const hook of hooks) {
      if (hook.method === method && hook.rel === rel && !hook.done) {
        hook.done = true;
        hook.fn();
      }
    }
  };
  const cache = {
    calls: 0,
    unsignalled: 0,
    writeText(rel, text) {
      save(rel, encoder.encode(text));
    },
    readText(rel) {
      const found = files.get(rel);
      return found ? decoder.decode(found.bytes) : null;
    },
    // A local deletion (what swamp does after `markDirty(relPath)`).
    deleteFile(rel) {
      files.delete(rel);
    },
    names(folder) {
      return [...files.keys()].filter((rel) => rel.startsWith(`${folder}/`)).map((rel) => rel.slice(folder.length + 1));
    },
    // Run `fn` once, when `method` is first called for `rel`, before the call acts (a local write landing mid-sync).
    before(method, rel, fn) {
      hooks.push({ method, rel, fn, done: false });
    },

    async stat(rel, options) {
      await enter(options, "stat", rel);
      const found = files.get(rel);
      return found ? statOf(found) : null;
    },
    async walk(options) {
      await enter(options, "walk", "");
      return [...files].map(([rel, f]) => ({ kind: "file", rel, ...statOf(f) }));
    },
    async walkUnder(rel, options) {
      await enter(options, "walkUnder", rel);
      return [...files].filter(([path]) => under(path, rel)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([path, f]) => ({ kind: "file", rel: path, ...statOf(f) }));
    },
    async removeFile(rel, expected, options) {
      await enter(options, "removeFile", rel);
      const found = files.get(rel);
      if (found === undefined) return;
      if (!isStat(found, expected)) throw fail("LocalChanged", { key: rel, message: `${rel} changed since it was seen` });
      files.delete(rel);
    },
    async readInternal(name, options) {
      await enter(options, "readInternal", name);
      return files.get(name)?.bytes.slice() ?? null;
    },
    async writeInternal(name, bytes, options) {
      await enter(options, "writeInternal", name);
      if (!(bytes instanceof Uint8Array)) throw new Error(`writeInternal ${name}: not a Uint8Array`);
      save(name, bytes.slice());
    },
    async listInternal(folder, options) {
      await enter(options, "listInternal", folder);
      return cache.names(folder);
    },
    async removeInternal(name, options) {
      await enter(options, "removeInternal", name);
      files.delete(name);
    },
    async prepareUpload(rel, options) {
      await enter(options, "prepareUpload", rel);
      const found = files.get(rel);
      if (!found) return null;
      const { bytes, mtimeMs } = found;
      const sha256 = await sha256Hex(bytes);
      return { body: { size: bytes.length, open: async () => streamOf(bytes) }, size: bytes.length, mtimeMs, sha256 };
    },
    // Verify, then "rename" onto `rel` only if what is there is what `replaces` allows: absent, anything; null,
    // nothing; `{ size, mtimeMs }`, that file.
    async download(rel, body, expected, options) {
      await enter(options, "download", rel);
      const bytes = await readStream(body);
      const sha256 = await sha256Hex(bytes);
      if (bytes.length !== expected.size) {
        throw fail("Mismatch", { key: rel, message: `${rel}: expected ${expected.size} bytes, got ${bytes.length}` });
      }
      if (expected.sha256 !== undefined && expected.sha256 !== sha256) {
        throw fail("Mismatch", { key: rel, message: `${rel}: sha256 mismatch` });
      }
      if ("replaces" in expected) {
        const now = files.get(rel);
        const allowed = expected.replaces === null ? now === undefined : isStat(now, expected.replaces);
        if (!allowed) throw fail("LocalChanged", { key: rel, message: `${rel} changed since it was seen` });
      }
      const mtimeMs = save(rel, bytes);
      return { size: bytes.length, mtimeMs, sha256 };
    },
    async createDir(rel, options) {
      await enter(options, "createDir", rel);
      dirs.add(rel);
    },
    async hash(rel, options) {
      await enter(options, "hash", rel);
      const found = files.get(rel);
      if (!found) return null;
      return { size: found.bytes.length, mtimeMs: found.mtimeMs, sha256: await sha256Hex(found.bytes) };
    },
  };
  return cache;
}

// One operation's env. Sleeps are fake (they return on the next timer turn) but wake on abort, like real ones.
export function makeEnv() {
  const controller = new AbortController();
  const env = {
    signal: controller.signal,
    sleeps: [],
    lines: [],
    abort() {
      controller.abort();
    },
    sleep(ms) {
      env.sleeps.push(ms);
      return new Promise((resolve, reject) => {
        if (controller.signal.aborted) return reject(controller.signal.reason);
        const timer = setTimeout(resolve, 0);
        controller.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          reject(controller.signal.reason);
        }, { once: true });
      });
    },
    trace(line) {
      env.lines.push(line);
    },
  };
  return env;
}

export function lockIdentity(holder, pid) {
  return { holder, hostname: holder.split("@")[1] ?? "localhost", pid };
}

export function lockOptions(maxWaitMs, retryIntervalMs) {
  return { maxWaitMs, retryIntervalMs };
}

export function scopedOptions(scope) {
  return { scope };
}

// Another process's live lock, written over whatever lock is there (a take-over as the bucket sees it).
export async function overwriteLock(store, pid) {
  const body = { holder: `intruder@elsewhere`, hostname: "elsewhere", pid, acquiredAt: new Date().toISOString(),
    ttlMs: 60000, nonce: "intruder-nonce" };
  await store.putBytes(".datastore.lock", new TextEncoder().encode(JSON.stringify(body)), { kind: "none" });
}
"#)]
extern "C" {
    #[derive(Clone)]
    type MemStore;
    #[wasm_bindgen(js_name = memoryStore)]
    fn memory_store() -> MemStore;
    #[wasm_bindgen(method, getter)]
    fn requests(this: &MemStore) -> f64;
    #[wasm_bindgen(method, getter, js_name = unsignalled)]
    fn store_unsignalled(this: &MemStore) -> f64;
    #[wasm_bindgen(method, getter, js_name = preconditionFailures)]
    fn precondition_failures(this: &MemStore) -> f64;
    #[wasm_bindgen(method)]
    fn count(this: &MemStore, name: &str) -> f64;
    #[wasm_bindgen(method)]
    fn text(this: &MemStore, key: &str) -> Option<String>;
    #[wasm_bindgen(method, js_name = indexKeys)]
    fn index_keys_js(this: &MemStore) -> Array;
    #[wasm_bindgen(method, js_name = commitToken)]
    fn commit_token(this: &MemStore) -> Option<String>;
    #[wasm_bindgen(method, js_name = indexFormat)]
    fn index_format(this: &MemStore) -> Option<u8>;
    #[wasm_bindgen(method, js_name = seedMonolith)]
    fn seed_monolith_js(this: &MemStore, files: Array) -> Promise;
    #[wasm_bindgen(method)]
    fn hook(this: &MemStore, phase: &str, method: &str, key: Option<&str>, nth: u32, callback: &Function);
    #[wasm_bindgen(method, js_name = failOn)]
    fn fail_on(this: &MemStore, method: &str, key: &str, kind: &str, status: u16);

    #[derive(Clone)]
    type MemCache;
    #[wasm_bindgen(js_name = memoryCache)]
    fn memory_cache() -> MemCache;
    #[wasm_bindgen(method, js_name = writeText)]
    fn write_text(this: &MemCache, rel: &str, text: &str);
    #[wasm_bindgen(method, js_name = readText)]
    fn read_text(this: &MemCache, rel: &str) -> Option<String>;
    #[wasm_bindgen(method, js_name = deleteFile)]
    fn delete_file(this: &MemCache, rel: &str);
    #[wasm_bindgen(method, js_name = names)]
    fn names_js(this: &MemCache, folder: &str) -> Array;
    #[wasm_bindgen(method)]
    fn before(this: &MemCache, method: &str, rel: &str, callback: &Function);
    #[wasm_bindgen(method, getter, js_name = calls)]
    fn cache_calls(this: &MemCache) -> f64;
    #[wasm_bindgen(method, getter, js_name = unsignalled)]
    fn cache_unsignalled(this: &MemCache) -> f64;

    #[derive(Clone)]
    type MemEnv;
    #[wasm_bindgen(js_name = makeEnv)]
    fn make_env() -> MemEnv;
    #[wasm_bindgen(method)]
    fn abort(this: &MemEnv);
    #[wasm_bindgen(method, getter)]
    fn sleeps(this: &MemEnv) -> Array;
    #[wasm_bindgen(method, getter)]
    fn lines(this: &MemEnv) -> Array;

    #[wasm_bindgen(js_name = lockIdentity)]
    fn lock_identity(holder: &str, pid: u32) -> JsValue;
    #[wasm_bindgen(js_name = lockOptions)]
    fn lock_options(max_wait_ms: u32, retry_interval_ms: u32) -> JsValue;
    #[wasm_bindgen(js_name = scopedOptions)]
    fn scoped_options(scope: &str) -> JsValue;
    #[wasm_bindgen(js_name = overwriteLock)]
    fn overwrite_lock(store: &MemStore, pid: u32) -> Promise;
}

impl MemStore {
    /// The paths of the index any reader of the bucket sees, whatever its layout.
    fn index_keys(&self) -> Vec<String> {
        strings(&self.index_keys_js())
    }

    /// Make this a format-1 bucket holding `files`.
    async fn seed_monolith(&self, files: &[(&str, &str)]) {
        let files: Array = files.iter().map(|(rel, text)| Array::of2(&(*rel).into(), &(*text).into())).collect();
        JsFuture::from(self.seed_monolith_js(files)).await.expect("the monolith is seeded");
    }
}

impl MemCache {
    /// The names in an internal folder (`.marsh-marks`).
    fn names(&self, folder: &str) -> Vec<String> {
        strings(&self.names_js(folder))
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Helpers

fn strings(array: &Array) -> Vec<String> {
    array.iter().map(|item| item.as_string().expect("a string")).collect()
}

fn prop(value: &JsValue, name: &str) -> JsValue {
    Reflect::get(value, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

fn num(value: &JsValue, name: &str) -> f64 {
    prop(value, name).as_f64().unwrap_or_else(|| panic!("`{name}` is not a number in {value:?}"))
}

fn flag(value: &JsValue, name: &str) -> bool {
    prop(value, name).as_bool().unwrap_or_else(|| panic!("`{name}` is not a boolean in {value:?}"))
}

fn text(value: &JsValue, name: &str) -> Option<String> {
    prop(value, name).as_string()
}

/// The `verifiedToken` of a cache's sidecar: `None` when the file is missing or the token is null.
fn verified_token(cache: &MemCache) -> Option<String> {
    let json = cache.read_text(SIDECAR)?;
    let sidecar: serde_json::Value = serde_json::from_str(&json).expect("the sidecar is JSON");
    sidecar["verifiedToken"].as_str().map(str::to_string)
}

async fn settle(promise: Result<Promise, JsValue>) -> Result<JsValue, JsValue> {
    JsFuture::from(promise?).await
}

/// A rejection, checked to be a real JS `Error`.
fn rejection(result: Result<JsValue, JsValue>, what: &str) -> JsValue {
    let error = match result {
        Ok(value) => panic!("{what}: expected a rejection, got {value:?}"),
        Err(error) => error,
    };
    assert!(error.is_instance_of::<js_sys::Error>(), "{what}: rejected with a non-Error {error:?}");
    error
}

/// A JS callback for `MemStore::hook` that runs `task` and settles with it. The flag records that it ran.
fn hook_running<F, Fut>(task: F) -> (Closure<dyn FnMut() -> Promise>, Rc<Cell<bool>>)
where
    F: Fn() -> Fut + 'static,
    Fut: std::future::Future<Output = Result<JsValue, JsValue>> + 'static,
{
    let fired = Rc::new(Cell::new(false));
    let seen = fired.clone();
    let closure = Closure::<dyn FnMut() -> Promise>::new(move || {
        seen.set(true);
        future_to_promise(task())
    });
    (closure, fired)
}

/// A callback for `MemCache::before` that writes `content` to `rel` in `cache` (a local write landing mid-sync).
fn local_write(cache: &MemCache, rel: &str, content: &str) -> Closure<dyn FnMut()> {
    let (cache, rel, content) = (cache.clone(), rel.to_string(), content.to_string());
    Closure::<dyn FnMut()>::new(move || cache.write_text(&rel, &content))
}

/// The layout of a test's bucket: a new bucket, which starts as format 2, or one the official extensions wrote in
/// format 1 (which stays so until migrated).
#[derive(Clone, Copy, Debug)]
enum Layout {
    Shards,
    Monolith,
}

impl Layout {
    async fn bucket(self) -> MemStore {
        let store = memory_store();
        if let Layout::Monolith = self {
            store.seed_monolith(&[]).await;
        }
        store
    }

    fn format(self) -> u8 {
        self.pick(1, 2)
    }

    /// `monolith` on format 1, `shards` on format 2.
    fn pick<T>(self, monolith: T, shards: T) -> T {
        match self {
            Layout::Monolith => monolith,
            Layout::Shards => shards,
        }
    }
}

/// One machine: a `SyncService` over the shared store and its own cache.
struct Machine {
    service: SyncService,
    cache: MemCache,
}

impl Machine {
    fn new(store: &MemStore) -> Rc<Machine> {
        Machine::with_options(store, JsValue::UNDEFINED)
    }

    fn with_options(store: &MemStore, options: JsValue) -> Rc<Machine> {
        let cache = memory_cache();
        let service = SyncService::new(store.clone().into(), cache.clone().into(), options)
            .expect("the memory store and cache implement the host interfaces");
        Rc::new(Machine { service, cache })
    }

    async fn pull_with(&self, env: &MemEnv) -> Result<JsValue, JsValue> {
        settle(self.service.pull_changed(env.clone().into(), JsValue::UNDEFINED)).await
    }

    async fn push_with(&self, env: &MemEnv) -> Result<JsValue, JsValue> {
        settle(self.service.push_changed(env.clone().into())).await
    }

    async fn pull(&self) -> Result<JsValue, JsValue> {
        self.pull_with(&make_env()).await
    }

    async fn push(&self) -> Result<JsValue, JsValue> {
        self.push_with(&make_env()).await
    }

    async fn mark_dirty(&self) -> Result<JsValue, JsValue> {
        settle(self.service.mark_dirty(make_env().into(), None)).await
    }

    /// `markDirty(env, rel)`: this one path is about to be written or removed.
    async fn mark_path(&self, rel: &str) -> Result<JsValue, JsValue> {
        settle(self.service.mark_dirty(make_env().into(), Some(rel.to_string()))).await
    }

    /// markDirty, write the files, then push: the documented way to change a cache.
    async fn write_and_push(&self, files: &[(&str, &str)]) -> Result<JsValue, JsValue> {
        self.mark_dirty().await?;
        for (rel, content) in files {
            self.cache.write_text(rel, content);
        }
        self.push().await
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Tests

/// The seed race: B pushes a new file after A's pull GOT the index and before A's pull ends. A must record the token of
/// the index it compared, so its next pull sees B's push and downloads the new file. On format 2 "got the index" is
/// the shard read (after `_meta.json`, whose token is the one A must record).
#[wasm_bindgen_test]
async fn seed_scenario_through_the_boundary() {
    seed_scenario(Layout::Shards).await;
}

#[wasm_bindgen_test]
async fn seed_scenario_through_the_boundary_on_a_monolith() {
    seed_scenario(Layout::Monolith).await;
}

async fn seed_scenario(layout: Layout) {
    let store = layout.bucket().await;
    let (a, b) = (Machine::new(&store), Machine::new(&store));
    let first = b.write_and_push(&[("data/one.json", r#"{"n":1}"#)]).await.expect("B's first push");
    assert_eq!(num(&first, "uploaded"), 1.0);
    let read_by_a = store.commit_token().expect("B wrote the index");

    let (hook, fired) = {
        let b = b.clone();
        hook_running(move || {
            let b = b.clone();
            async move { b.write_and_push(&[("data/two.json", r#"{"n":2}"#)]).await }
        })
    };
    let holding_data = layout.pick(INDEX, UNSHARDED);
    store.hook("after", "getBytes", Some(holding_data), 1, hook.as_ref().unchecked_ref());
    let pulled = a.pull().await.expect("A's pull");

    assert!(fired.get(), "B's push ran inside A's pull");
    let written_by_b = store.commit_token().unwrap();
    assert_ne!(written_by_b, read_by_a, "B's push changed the index");
    assert_eq!(store.index_format(), Some(layout.format()), "the bucket kept its layout");
    assert_eq!(store.index_keys(), ["data/one.json", "data/two.json"]);
    assert!(!flag(&pulled, "fastPath"));
    assert_eq!(num(&pulled, "downloaded"), 1.0);
    assert_eq!(num(&pulled, "indexEntries"), 1.0, "A compared the index as it was before B's push");
    assert!(flag(&pulled, "verified"));
    assert_eq!(verified_token(&a.cache), Some(read_by_a), "the token of the GET A compared, not a later one");
    assert_eq!(a.cache.read_text("data/two.json"), None);

    let next = a.pull().await.expect("A's next pull");
    assert!(!flag(&next, "fastPath"), "B's push must defeat A's fast path");
    assert_eq!(num(&next, "downloaded"), 1.0);
    assert_eq!(a.cache.read_text("data/two.json").as_deref(), Some(r#"{"n":2}"#));
    assert_eq!(a.cache.read_text("data/one.json").as_deref(), Some(r#"{"n":1}"#));
    assert_eq!(verified_token(&a.cache), Some(written_by_b));

    let requests = store.requests();
    let quiet = a.pull().await.expect("A's third pull");
    assert!(flag(&quiet, "fastPath"));
    assert_eq!(num(&quiet, "downloaded"), 0.0);
    // On format 1 the conditional GET of the monolith comes after finding no `_meta.json`.
    let fast_path_requests = layout.pick(2.0, 1.0);
    assert_eq!(store.requests() - requests, fast_path_requests, "the fast path is one conditional GET");
    drop(hook);
}

/// W1: A and B both read "no index"; B's whole push lands just before A's first index PUT. A's compare-and-swap fails,
/// A re-reads and merges, and the index ends up with both files. On format 2 both write the shard `_root` and then
/// `_meta.json`, and A loses the race for each: B committed both first.
#[wasm_bindgen_test]
async fn concurrent_push_cas_conflict_keeps_both_entries() {
    concurrent_push_cas_conflict(Layout::Shards).await;
}

#[wasm_bindgen_test]
async fn concurrent_push_cas_conflict_keeps_both_entries_on_a_monolith() {
    concurrent_push_cas_conflict(Layout::Monolith).await;
}

async fn concurrent_push_cas_conflict(layout: Layout) {
    let store = layout.bucket().await;
    let (a, b) = (Machine::new(&store), Machine::new(&store));
    a.mark_dirty().await.unwrap();
    a.cache.write_text("a.json", "from A");
    b.mark_dirty().await.unwrap();
    b.cache.write_text("b.json", "from B");

    // The index objects a commit writes, in order.
    let objects: &[&str] = layout.pick(&[INDEX], &[ROOT_SHARD, META]);
    let puts = move |store: &MemStore| -> Vec<f64> {
        objects.iter().map(|key| store.count(&format!("putBytes {key}"))).collect()
    };
    let puts_by_b = Rc::new(std::cell::RefCell::new(Vec::new()));
    let (hook, fired) = {
        let (b, store, puts_by_b) = (b.clone(), store.clone(), puts_by_b.clone());
        hook_running(move || {
            let (b, store, puts_by_b) = (b.clone(), store.clone(), puts_by_b.clone());
            async move {
                let before = puts(&store);
                let report = b.push().await?;
                *puts_by_b.borrow_mut() =
                    puts(&store).iter().zip(before).map(|(after, before)| after - before).collect();
                Ok(report)
            }
        })
    };
    store.hook("before", "putBytes", Some(objects[0]), 1, hook.as_ref().unchecked_ref());
    let env = make_env();
    let pushed = a.push_with(&env).await.expect("A's push");

    assert!(fired.get(), "B's push ran inside A's push");
    let once = vec![1.0; objects.len()];
    assert_eq!(*puts_by_b.borrow(), once, "B wrote each index object once");
    let by_a: Vec<f64> = puts(&store).iter().zip(puts_by_b.borrow().iter()).map(|(all, b)| all - b).collect();
    assert_eq!(by_a, vec![2.0; objects.len()], "A's first PUT of each index object failed, its second landed");
    assert_eq!(store.precondition_failures(), objects.len() as f64);
    assert!(env.sleeps().length() >= 1, "A backed off before re-reading the index");
    assert_eq!(store.index_format(), Some(layout.format()), "the bucket kept its layout");
    assert_eq!(store.index_keys(), ["a.json", "b.json"]);
    assert_eq!(store.text("a.json").as_deref(), Some("from A"));
    assert_eq!(store.text("b.json").as_deref(), Some("from B"));
    assert_eq!(num(&pushed, "uploaded"), 1.0);
    assert!(flag(&pushed, "indexWritten"));
    assert!(flag(&pushed, "clean"));
    assert!(!flag(&pushed, "verified"), "B6: A does not have b.json, so the merged index is not verified here");

    let pulled = a.pull().await.expect("A's pull");
    assert_eq!(num(&pulled, "downloaded"), 1.0);
    assert_eq!(a.cache.read_text("b.json").as_deref(), Some("from B"));
    drop(hook);
}

/// B15: an already-aborted signal rejects with an AbortError before any request.
#[wasm_bindgen_test]
async fn aborted_signal_rejects_with_abort_error_before_any_request() {
    let store = memory_store();
    let a = Machine::new(&store);
    let env = make_env();
    env.abort();

    let pull = rejection(a.pull_with(&env).await, "pull");
    let push = rejection(a.push_with(&env).await, "push");

    for error in [&pull, &push] {
        assert_eq!(text(error, "name").as_deref(), Some("AbortError"));
        assert_eq!(text(error, "kind").as_deref(), Some("Aborted"));
    }
    assert_eq!(store.requests(), 0.0);
    assert_eq!(a.cache.cache_calls(), 0.0);
}

/// An abort during the downloads rejects with an AbortError, records no verified token, and passes the signal to every
/// request; a later pull completes the job.
#[wasm_bindgen_test]
async fn abort_mid_download() {
    let store = memory_store();
    let (a, b) = (Machine::new(&store), Machine::new(&store));
    b.write_and_push(&[("f/1.txt", "one"), ("f/2.txt", "two"), ("f/3.txt", "three")]).await.expect("B's push");

    // A fresh cache: no sidecar may appear.
    let env = make_env();
    let aborter = {
        let env = env.clone();
        Closure::<dyn FnMut()>::new(move || env.abort())
    };
    store.hook("before", "get", None, 2, aborter.as_ref().unchecked_ref());
    let error = rejection(a.pull_with(&env).await, "aborted pull");
    assert_eq!(text(&error, "name").as_deref(), Some("AbortError"));
    assert_eq!(verified_token(&a.cache), None);

    // A cache with a verified token: it must stay the old one.
    let pulled = a.pull().await.expect("A's pull after the abort");
    assert_eq!(num(&pulled, "indexEntries"), 3.0);
    assert!(flag(&pulled, "verified"));
    assert_eq!(a.cache.read_text("f/3.txt").as_deref(), Some("three"));
    let verified = verified_token(&a.cache).expect("a complete pull records its token");
    b.write_and_push(&[("f/4.txt", "four"), ("f/5.txt", "five"), ("f/6.txt", "six")]).await.expect("B's push");
    let env = make_env();
    let aborter_again = {
        let env = env.clone();
        Closure::<dyn FnMut()>::new(move || env.abort())
    };
    store.hook("before", "get", None, 2, aborter_again.as_ref().unchecked_ref());
    let error = rejection(a.pull_with(&env).await, "second aborted pull");
    assert_eq!(text(&error, "name").as_deref(), Some("AbortError"));
    assert_eq!(text(&error, "kind").as_deref(), Some("Aborted"));
    assert_eq!(verified_token(&a.cache), Some(verified), "an aborted pull records nothing");
    assert_ne!(store.commit_token(), verified_token(&a.cache));

    let pulled = a.pull().await.expect("A's pull after the second abort");
    assert!(!flag(&pulled, "fastPath"));
    assert!(flag(&pulled, "verified"));
    assert_eq!(a.cache.read_text("f/6.txt").as_deref(), Some("six"));
    assert_eq!(verified_token(&a.cache), store.commit_token());
    assert_eq!(store.store_unsignalled(), 0.0, "every store request carried the operation's signal");
    assert_eq!(a.cache.cache_unsignalled(), 0.0, "every cache call carried the operation's signal");
    drop((aborter, aborter_again));
}

/// B2, B8, B18: markDirty + write + push uploads the file and marks the cache clean; the next push is free.
#[wasm_bindgen_test]
async fn markdirty_then_push_uploads_and_reports() {
    let store = memory_store();
    let a = Machine::new(&store);
    a.mark_dirty().await.expect("markDirty");
    a.cache.write_text("notes/a.md", "# hello");
    let env = make_env();

    let pushed = a.push_with(&env).await.expect("push");

    assert_eq!(num(&pushed, "uploaded"), 1.0);
    assert!(flag(&pushed, "clean"));
    assert!(flag(&pushed, "indexWritten"));
    assert!(flag(&pushed, "verified"));
    assert!(!flag(&pushed, "fastPath"));
    assert_eq!(store.text("notes/a.md").as_deref(), Some("# hello"));
    assert_eq!(store.index_keys(), ["notes/a.md"]);
    assert_eq!(verified_token(&a.cache), store.commit_token(), "our own index PUT's token is recorded");
    let lines = strings(&env.lines());
    assert!(lines.iter().any(|line| line.starts_with("marsh push: done")), "{lines:?}");

    let requests = store.requests();
    let again = a.push().await.expect("second push");
    assert!(flag(&again, "fastPath"));
    assert!(flag(&again, "clean"));
    assert_eq!(num(&again, "uploaded"), 0.0);
    assert_eq!(store.requests() - requests, 0.0, "the push fast path makes no request");
}

/// B19 through the boundary: acquire, inspect, a timed-out contender, force-release with a wrong nonce, release.
#[wasm_bindgen_test]
async fn lock_client_acquire_inspect_release() {
    let store = memory_store();
    let alice = LockClient::new(
        store.clone().into(),
        "mem://b19".into(),
        JsValue::UNDEFINED,
        lock_identity("alice@host-a", 1111),
    )
    .expect("a lock client");
    settle(alice.acquire(make_env().into())).await.expect("alice acquires");
    assert!(alice.is_held());
    assert_eq!(alice.lock_key(), ".datastore.lock");

    let info = JsFuture::from(alice.inspect()).await.expect("inspect");
    assert_eq!(text(&info, "holder").as_deref(), Some("alice@host-a"));
    assert_eq!(text(&info, "hostname").as_deref(), Some("host-a"));
    assert_eq!(num(&info, "pid"), 1111.0);
    let nonce = text(&info, "nonce").expect("a nonce");
    assert!(nonce.len() >= 16, "{nonce}");
    let stored: serde_json::Value = serde_json::from_str(&store.text(".datastore.lock").unwrap()).unwrap();
    assert_eq!(stored["nonce"].as_str(), Some(nonce.as_str()));

    let bob = LockClient::new(
        store.clone().into(),
        "mem://b19".into(),
        lock_options(40, 5),
        lock_identity("bob@host-b", 2222),
    )
    .expect("a second lock client");
    let env = make_env();
    let timeout = rejection(settle(bob.acquire(env.clone().into())).await, "bob's acquire");
    assert_eq!(text(&timeout, "name").as_deref(), Some("LockTimeoutError"));
    assert_eq!(text(&timeout, "lockKey").as_deref(), Some(".datastore.lock"));
    assert_eq!(num(&prop(&timeout, "holder"), "pid"), 1111.0);
    assert!(num(&timeout, "waitedMs") >= 40.0, "{timeout:?}");
    let sleeps: Vec<f64> = env.sleeps().iter().map(|ms| ms.as_f64().unwrap()).collect();
    assert!(!sleeps.is_empty() && sleeps.iter().all(|ms| (1.0..=5.0).contains(ms)), "{sleeps:?}");
    assert!(!bob.is_held());

    let wrong = JsFuture::from(bob.force_release("0123456789abcdef".into())).await.expect("forceRelease");
    assert_eq!(wrong.as_bool(), Some(false));
    let still = JsFuture::from(bob.inspect()).await.expect("inspect");
    assert_eq!(text(&still, "nonce"), Some(nonce));

    JsFuture::from(alice.release()).await.expect("release");
    assert!(!alice.is_held());
    assert!(JsFuture::from(alice.inspect()).await.expect("inspect").is_null());
    assert_eq!(store.text(".datastore.lock"), None);
    settle(bob.acquire(make_env().into())).await.expect("bob acquires the released lock");
    assert!(bob.is_held());
}

/// W13 through the boundary: once a heartbeat finds the lock taken over, every sync operation of the lock's scope
/// rejects with `LockLostError` before any request, other scopes are unaffected, and releasing the lock ends it.
#[wasm_bindgen_test]
async fn a_lost_lock_stops_the_sync_services_of_its_scope() {
    let store = memory_store();
    let lock = LockClient::new(
        store.clone().into(),
        "mem://lost".into(),
        JsValue::UNDEFINED,
        lock_identity("alice@host-a", 1),
    )
    .expect("a lock client");
    let scoped = Machine::with_options(&store, scoped_options("mem://lost"));
    let elsewhere = Machine::with_options(&store, scoped_options("mem://elsewhere"));
    settle(lock.acquire(make_env().into())).await.expect("acquire");
    scoped.write_and_push(&[("a.json", "1")]).await.expect("a push while the lock is held");
    JsFuture::from(overwrite_lock(&store, 777)).await.expect("the intruder's lock");

    let heartbeat = rejection(settle(lock.heartbeat(make_env().into())).await, "heartbeat");
    let (requests, cache_calls) = (store.requests(), scoped.cache.cache_calls());
    let pull = rejection(scoped.pull().await, "pull");
    let push = rejection(scoped.push().await, "push");
    let mark = rejection(scoped.mark_dirty().await, "markDirty");

    assert_eq!(text(&heartbeat, "name").as_deref(), Some("LockLostError"));
    for error in [&pull, &push, &mark] {
        assert_eq!(text(error, "name").as_deref(), Some("LockLostError"), "{error:?}");
        assert_eq!(text(error, "kind").as_deref(), Some("LockLost"));
        assert_eq!(text(error, "lockKey").as_deref(), Some(".datastore.lock"));
        assert_eq!(num(&prop(error, "holder"), "pid"), 777.0);
        assert!(text(error, "message").unwrap().contains("intruder@elsewhere"), "{error:?}");
    }
    assert_eq!(store.requests(), requests, "no store request after the loss was found");
    assert_eq!(scoped.cache.cache_calls(), cache_calls, "no cache call either");
    elsewhere.pull().await.expect("a service of another scope runs");

    JsFuture::from(lock.release()).await.expect("release");
    scoped.pull().await.expect("released: the scope's services run again");
}

/// B13: one file's PUT is denied; the others are uploaded and indexed; the rejection lists the failure.
#[wasm_bindgen_test]
async fn per_file_errors_are_listed() {
    let store = memory_store();
    let a = Machine::new(&store);
    store.fail_on("put", "data/bad.json", "Auth", 403);

    let error = rejection(
        a.write_and_push(&[("data/good1.json", "1"), ("data/bad.json", "2"), ("data/good2.json", "3")]).await,
        "push",
    );

    assert_eq!(text(&error, "name").as_deref(), Some("MarshError"));
    assert_eq!(text(&error, "kind").as_deref(), Some("Files"));
    assert_eq!(num(&error, "transferred"), 2.0);
    let failures = Array::from(&prop(&error, "failures"));
    assert_eq!(failures.length(), 1);
    let failure = failures.get(0);
    assert_eq!(text(&failure, "rel").as_deref(), Some("data/bad.json"));
    assert_eq!(text(&failure, "kind").as_deref(), Some("Auth"));
    assert_eq!(num(&failure, "status"), 403.0);
    let message = text(&error, "message").unwrap();
    assert!(message.contains("data/bad.json") && message.contains("403"), "{message}");
    assert_eq!(store.count("put data/bad.json"), 1.0, "an auth error is not retried");
    assert_eq!(store.text("data/good1.json").as_deref(), Some("1"));
    assert_eq!(store.text("data/good2.json").as_deref(), Some("3"));
    assert_eq!(store.text("data/bad.json"), None);
    assert_eq!(store.index_keys(), ["data/good1.json", "data/good2.json"]);

    // Not marked clean: the next push (the fault was one-shot) uploads the failed file.
    let retried = a.push().await.expect("second push");
    assert!(!flag(&retried, "fastPath"));
    assert_eq!(num(&retried, "uploaded"), 1.0);
    assert!(flag(&retried, "clean"));
    assert_eq!(store.index_keys(), ["data/bad.json", "data/good1.json", "data/good2.json"]);
}

/// W23 through the boundary: `markDirty(env, relPath)` + write + push looks at that path only (an unannounced write
/// elsewhere is not uploaded), clears the mark, and leaves nothing for the next push, which is the fast path.
#[wasm_bindgen_test]
async fn a_marked_path_push_uploads_only_that_path() {
    let store = memory_store();
    let a = Machine::new(&store);
    a.write_and_push(&[("notes/b.md", "b")]).await.expect("a first, clean push");
    a.cache.write_text("notes/unmarked.md", "never announced");

    a.mark_path("notes/a.md").await.expect("markDirty(notes/a.md)");
    assert_eq!(a.cache.names(MARKS).len(), 1, "one mark file");
    a.cache.write_text("notes/a.md", "# hello");
    let pushed = a.push().await.expect("push");

    assert!(flag(&pushed, "markedOnly"), "{pushed:?}");
    assert_eq!(num(&pushed, "marksCleared"), 1.0);
    assert_eq!(num(&pushed, "uploaded"), 1.0);
    assert!(flag(&pushed, "indexWritten"));
    assert!(!flag(&pushed, "fastPath"));
    assert_eq!(store.text("notes/a.md").as_deref(), Some("# hello"));
    assert_eq!(store.text("notes/unmarked.md"), None, "only the marked path was looked at");
    assert_eq!(store.index_keys(), ["notes/a.md", "notes/b.md"]);
    assert!(a.cache.names(MARKS).is_empty(), "the mark was removed");
    assert!(flag(&pushed, "verified"), "the rest of the index is as verified before");
    assert_eq!(verified_token(&a.cache), store.commit_token(), "our own commit's token is recorded");

    let requests = store.requests();
    let again = a.push().await.expect("second push");
    assert!(flag(&again, "fastPath"));
    assert_eq!(num(&again, "uploaded"), 0.0);
    assert_eq!(store.requests() - requests, 0.0, "the push fast path makes no request");
}

/// W21 through the boundary: mark + delete + push removes the index entry and the object; a peer's next pull removes
/// its unchanged copy (`removeFile` with the stat it saw).
#[wasm_bindgen_test]
async fn a_marked_deletion_is_pushed_and_pulled() {
    let store = memory_store();
    let (a, b) = (Machine::new(&store), Machine::new(&store));
    a.write_and_push(&[("notes/a.md", "doomed"), ("notes/keep.md", "kept")]).await.expect("A's first push");
    b.pull().await.expect("B's first pull");
    assert_eq!(b.cache.read_text("notes/a.md").as_deref(), Some("doomed"));

    a.mark_path("notes/a.md").await.expect("markDirty(notes/a.md)");
    a.cache.delete_file("notes/a.md");
    let pushed = a.push().await.expect("push");

    assert!(flag(&pushed, "markedOnly"), "{pushed:?}");
    assert_eq!(num(&pushed, "marksCleared"), 1.0);
    assert_eq!(num(&pushed, "uploaded"), 0.0);
    assert_eq!(strings(&Array::from(&prop(&pushed, "deleted"))), ["notes/a.md"]);
    assert!(flag(&pushed, "indexWritten"));
    assert_eq!(store.text("notes/a.md"), None, "the object is deleted");
    assert_eq!(store.index_keys(), ["notes/keep.md"], "and so is its entry");
    assert!(a.cache.names(MARKS).is_empty());

    let pulled = b.pull().await.expect("B's pull");
    assert_eq!(strings(&Array::from(&prop(&pulled, "removed"))), ["notes/a.md"]);
    assert_eq!(num(&pulled, "downloaded"), 0.0);
    assert!(flag(&pulled, "verified"));
    assert_eq!(b.cache.read_text("notes/a.md"), None);
    assert_eq!(b.cache.read_text("notes/keep.md").as_deref(), Some("kept"));
}

/// W20 through the boundary: two machines edit the same file from the same base. The second push rejects with kind
/// `Conflicts` naming the path, and neither side is overwritten: the bucket keeps the first machine's bytes, the second
/// machine its own.
#[wasm_bindgen_test]
async fn the_same_file_edited_on_two_machines_is_a_conflict() {
    let store = memory_store();
    let (a, b) = (Machine::new(&store), Machine::new(&store));
    a.write_and_push(&[("notes/a.md", "base")]).await.expect("A's first push");
    b.pull().await.expect("B's pull of the base");

    a.mark_path("notes/a.md").await.expect("A marks");
    a.cache.write_text("notes/a.md", "from A");
    b.mark_path("notes/a.md").await.expect("B marks");
    b.cache.write_text("notes/a.md", "from B");
    a.push().await.expect("A's push");
    let index_after_a = store.commit_token();
    let error = rejection(b.push().await, "B's push");

    assert_eq!(text(&error, "name").as_deref(), Some("MarshError"));
    assert_eq!(text(&error, "kind").as_deref(), Some("Conflicts"), "{error:?}");
    let conflicts = Array::from(&prop(&error, "conflicts"));
    assert_eq!(conflicts.length(), 1, "{error:?}");
    assert_eq!(text(&conflicts.get(0), "rel").as_deref(), Some("notes/a.md"));
    assert_eq!(text(&conflicts.get(0), "kind").as_deref(), Some("both-changed"));
    assert_eq!(num(&error, "transferred"), 0.0);
    assert!(text(&error, "message").unwrap().contains("notes/a.md"), "{error:?}");
    assert_eq!(store.text("notes/a.md").as_deref(), Some("from A"), "the bucket keeps the first machine's bytes");
    assert_eq!(store.commit_token(), index_after_a, "B committed nothing");
    assert_eq!(b.cache.read_text("notes/a.md").as_deref(), Some("from B"), "B's edit is left in place");
}

/// W16 through the boundary: a local write that lands while a pull downloads over that path (the cache's download
/// throws `LocalChanged`: the file is not the one the pull saw, or not absent as it was) is kept, and reported so.
#[wasm_bindgen_test]
async fn a_local_write_during_a_download_is_kept() {
    let store = memory_store();
    let (a, b) = (Machine::new(&store), Machine::new(&store));
    a.write_and_push(&[("notes/a.md", "v1")]).await.expect("A's first push");
    b.pull().await.expect("B's pull of v1");
    a.write_and_push(&[("notes/a.md", "v2"), ("notes/new.md", "new from A")]).await.expect("A's second push");

    // Replacing B's v1 (`replaces` is its stat) and creating notes/new.md (`replaces` is null): both lose the race.
    let writes = [("notes/a.md", "edited on B"), ("notes/new.md", "created on B")]
        .map(|(rel, content)| (rel, local_write(&b.cache, rel, content)));
    for (rel, write) in &writes {
        b.cache.before("download", rel, write.as_ref().unchecked_ref());
    }
    let pulled = b.pull().await.expect("B's pull");

    let mut kept = strings(&Array::from(&prop(&pulled, "keptLocal")));
    kept.sort();
    assert_eq!(kept, ["notes/a.md", "notes/new.md"], "{pulled:?}");
    assert_eq!(num(&pulled, "downloaded"), 0.0);
    assert!(!flag(&pulled, "verified"), "the cache is not what the index says");
    assert_eq!(b.cache.read_text("notes/a.md").as_deref(), Some("edited on B"));
    assert_eq!(b.cache.read_text("notes/new.md").as_deref(), Some("created on B"));
    assert_eq!(store.text("notes/a.md").as_deref(), Some("v2"), "the bucket is untouched");
    drop(writes);
}

/// W21 through the boundary: a local write that lands while a pull removes a file the bucket deleted (the cache's
/// `removeFile` finds another stat and throws `LocalChanged`) is kept.
#[wasm_bindgen_test]
async fn a_local_write_during_a_removal_is_kept() {
    let store = memory_store();
    let (a, b) = (Machine::new(&store), Machine::new(&store));
    a.write_and_push(&[("notes/a.md", "doomed")]).await.expect("A's first push");
    b.pull().await.expect("B's first pull");
    a.mark_path("notes/a.md").await.expect("A marks");
    a.cache.delete_file("notes/a.md");
    a.push().await.expect("A's deletion");

    let write = local_write(&b.cache, "notes/a.md", "edited on B");
    b.cache.before("removeFile", "notes/a.md", write.as_ref().unchecked_ref());
    let pulled = b.pull().await.expect("B's pull");

    assert_eq!(strings(&Array::from(&prop(&pulled, "keptLocal"))), ["notes/a.md"], "{pulled:?}");
    assert!(strings(&Array::from(&prop(&pulled, "removed"))).is_empty());
    assert_eq!(b.cache.read_text("notes/a.md").as_deref(), Some("edited on B"));
    drop(write);
}
