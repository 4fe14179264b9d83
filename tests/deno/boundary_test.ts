// The wasm core loads through js/wasm.ts and calls an async JS store through the Rust `ObjectStore` trait.
import assert from "node:assert/strict";
import { DenoCache } from "../../js/cache.ts";
import { makeEnv } from "../../js/env.ts";
import { MemoryStore } from "../../js/memory_store.ts";
import { type MarshError, type MarshStore, probeGet, SyncService, version } from "../../js/wasm.ts";

const pause = () => new Promise((resolve) => setTimeout(resolve, 1));

function storeWith(get: MarshStore["get"]): MarshStore {
  const unused = () => Promise.reject(new Error("not used by this test"));
  return { get, getBytes: unused, head: unused, put: unused, putBytes: unused, delete: unused, list: unused };
}

Deno.test("version matches the package version", async () => {
  const pkg = JSON.parse(await Deno.readTextFile(new URL("../../pkg.json", import.meta.url)));
  assert.equal(version(), pkg.version);
});

Deno.test("probeGet returns the token and size an async store answered", async () => {
  const asked: string[] = [];
  const store = storeWith(async (key) => {
    asked.push(key);
    await pause();
    return {
      body: ReadableStream.from([new Uint8Array([1, 2, 3])]),
      token: "9bb58f26192e4ba00f01e2e7b136bbd8",
      size: 3,
    };
  });

  const answer = await probeGet(store, "data/a.json");

  assert.deepEqual(answer, { token: "9bb58f26192e4ba00f01e2e7b136bbd8", size: 3 });
  assert.deepEqual(asked, ["data/a.json"]);
});

Deno.test("a store throwing NotFound surfaces as a NotFound error naming the key", async () => {
  const store = storeWith(async (key) => {
    await pause();
    throw Object.assign(new Error(`no such object ${key}`), { kind: "NotFound", status: 404 });
  });

  const error = await probeGet(store, "data/missing.json").then(
    () => assert.fail("probeGet should have rejected"),
    (thrown: MarshError) => thrown,
  );

  assert.ok(error instanceof Error);
  assert.equal(error.name, "MarshError");
  assert.equal(error.kind, "NotFound");
  assert.equal(error.key, "data/missing.json");
  assert.match(error.message, /not found: data\/missing\.json/);
});

Deno.test("an untyped throw becomes an Io error carrying its message", async () => {
  const store = storeWith(() => {
    throw new TypeError("socket closed");
  });

  await assert.rejects(probeGet(store, "k"), { name: "MarshError", kind: "Io", message: /socket closed/ });
});

Deno.test("an object that is not a store is rejected before any call", async () => {
  await assert.rejects(probeGet({} as MarshStore, "k"), {
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
