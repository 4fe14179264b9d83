// The wasm core loads through js/wasm.ts and drives async JS host objects through its real exports.
import assert from "node:assert/strict";
import { DenoCache } from "../../js/cache.ts";
import { makeEnv } from "../../js/env.ts";
import { MemoryStore } from "../../js/memory_store.ts";
import { type MarshCache, type MarshStore, type MarshSyncError, SyncService, version } from "../../js/wasm.ts";

const pause = () => new Promise((resolve) => setTimeout(resolve, 1));

/** A store answering with `methods`; any other call fails the test's operation. */
function storeWith(methods: Partial<MarshStore>): MarshStore {
  const unused = () => Promise.reject(new Error("not used by this test"));
  return {
    get: unused,
    getBytes: unused,
    head: unused,
    put: unused,
    putBytes: unused,
    delete: unused,
    list: unused,
    ...methods,
  };
}

Deno.test("version matches the package version", async () => {
  const pkg = JSON.parse(await Deno.readTextFile(new URL("../../pkg.json", import.meta.url)));
  assert.equal(version(), pkg.version);
});

const INDEX = ".datastore-index.json";

/** An empty cache directory that forgets what is written to it: enough for operations that fail at the store. */
function emptyCache(): MarshCache {
  return {
    stat: () => Promise.resolve(null),
    walk: () => Promise.resolve([]),
    readInternal: () => Promise.resolve(null),
    writeInternal: () => Promise.resolve(),
    prepareUpload: () => Promise.resolve(null),
    download: () => Promise.reject(new Error("not used by this test")),
    hash: () => Promise.resolve(null),
  };
}

/** An index listing one file without a hash: a pull downloads it. */
function oneFileIndex(rel: string): Uint8Array {
  const entries = { [rel]: { size: 3, lastModified: "2026-01-01T00:00:00.000Z" } };
  return new TextEncoder().encode(JSON.stringify({ version: 1, entries }));
}

Deno.test("an async store's answer reaches the core through the promise bridge", async () => {
  const asked: string[] = [];
  const store = storeWith({
    head: async (key) => {
      asked.push(key);
      await pause();
      return { token: "9bb58f26192e4ba00f01e2e7b136bbd8", size: 3 };
    },
  });

  const status = await new SyncService(store, emptyCache(), undefined).status(makeEnv());

  assert.equal(status.remoteIndexSize, 3);
  assert.deepEqual(asked, [INDEX]);
});

Deno.test("a store's typed failure surfaces with its kind, status and message", async () => {
  const store = storeWith({
    getBytes: async () => {
      await pause();
      throw Object.assign(new Error("access denied to the index"), { kind: "Auth", status: 403 });
    },
  });

  const error = await new SyncService(store, emptyCache(), undefined).pullChanged(makeEnv()).then(
    () => assert.fail("the pull should have rejected"),
    (thrown: MarshSyncError) => thrown,
  );

  assert.ok(error instanceof Error);
  assert.equal(error.name, "MarshError");
  assert.equal(error.kind, "IndexUnreadable");
  assert.equal(error.causeKind, "Auth");
  assert.equal(error.status, 403);
  assert.match(error.message, /access denied to the index/);
});

Deno.test("a store throwing NotFound for a file surfaces as a NotFound failure naming it", async () => {
  const store = storeWith({
    getBytes: () => Promise.resolve({ bytes: oneFileIndex("data/missing.json"), token: "t1", size: 1 }),
    get: async (key) => {
      await pause();
      throw Object.assign(new Error(`no such object ${key}`), { kind: "NotFound", status: 404 });
    },
  });

  const error = await new SyncService(store, emptyCache(), undefined).pullChanged(makeEnv()).then(
    () => assert.fail("the pull should have rejected"),
    (thrown: MarshSyncError) => thrown,
  );

  assert.equal(error.kind, "Files");
  assert.equal(error.failures?.length, 1);
  const [failure] = error.failures!;
  assert.equal(failure.rel, "data/missing.json");
  assert.equal(failure.kind, "NotFound");
  assert.match(failure.message, /not found: data\/missing\.json/);
});

Deno.test("an untyped throw becomes an Io error carrying its message", async () => {
  const store = storeWith({
    getBytes: () => {
      throw new TypeError("socket closed");
    },
  });

  await assert.rejects(new SyncService(store, emptyCache(), undefined).pullChanged(makeEnv()), {
    name: "MarshError",
    kind: "IndexUnreadable",
    causeKind: "Io",
    message: /socket closed/,
  });
});

Deno.test("an object that is not a store is rejected before any call", () => {
  assert.throws(() => new SyncService({} as MarshStore, emptyCache(), undefined), {
    name: "MarshError",
    kind: "InvalidArgument",
    message: /missing method\(s\) get/,
  });
});

Deno.test("a pull frees the index answer and the local copy it wrote once done with them (the host keeps its own)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const index = new TextEncoder().encode('{"version":1,"entries":{}}');
    const store = new MemoryStore();
    store.seed(".datastore-index.json", index);
    const handed: Uint8Array[] = [];
    const answered = store.getBytes.bind(store);
    store.getBytes = async (...args: Parameters<MarshStore["getBytes"]>) => {
      const answer = await answered(...args);
      if ("bytes" in answer) handed.push(answer.bytes);
      return answer;
    };
    const cache = new DenoCache(dir);
    const written = cache.writeInternal.bind(cache);
    cache.writeInternal = async (name, bytes, options) => {
      handed.push(bytes);
      await written(name, bytes, options);
    };
    const report = await new SyncService(store, cache, undefined).pullChanged(makeEnv());
    assert.equal(report.indexEntries, 0);
    // The index GET's answer and the bytes of the local index copy (and the sidecar) were handed over and are freed.
    assert.ok(handed.length >= 2, `${handed.length} buffers handed over`);
    for (const bytes of handed) assert.equal(bytes.byteLength, 0);
    // What the store and the cache keep are their own copies.
    assert.deepEqual(await Deno.readFile(`${dir}/.datastore-index.json`), index);
    const again = await answered(".datastore-index.json");
    assert.ok("bytes" in again);
    assert.deepEqual(again.bytes, index);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
