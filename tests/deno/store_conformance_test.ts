// The conformance suite against the in-memory store, in both token styles, plus the in-memory store's own test hooks.
import assert from "node:assert/strict";
import { MemoryStore } from "../../js/memory_store.ts";
import { expectStoreError, readStream, storeConformance } from "./support/store_conformance.ts";

const encoder = new TextEncoder();

for (const tokens of ["etag", "generation"] as const) {
  storeConformance(`memory (${tokens})`, () =>
    Promise.resolve({
      store: new MemoryStore({ tokens, listPageSize: 7 }),
      cleanup: () => Promise.resolve(),
      limits: { listPageSize: 7 },
    }));
}

Deno.test("memory (etag): rewriting identical bytes keeps the token, like an S3 ETag", async () => {
  const store = new MemoryStore({ tokens: "etag" });

  const first = await store.putBytes("k", encoder.encode("same"), { kind: "none" });
  const second = await store.putBytes("k", encoder.encode("same"), { kind: "none" });

  assert.equal(second.token, first.token);
  assert.match(first.token, /^[0-9a-f]{32}$/);
});

Deno.test("memory (generation): every write gets a new decimal generation, like GCS", async () => {
  const store = new MemoryStore({ tokens: "generation" });

  const first = await store.putBytes("k", encoder.encode("same"), { kind: "none" });
  const second = await store.putBytes("k", encoder.encode("same"), { kind: "none" });

  assert.match(first.token, /^[1-9][0-9]*$/);
  assert.ok(BigInt(second.token) > BigInt(first.token));
});

Deno.test("memory: ifMatch on a missing key is NotFound for etag tokens and PreconditionFailed for generations", async () => {
  const s3Like = new MemoryStore({ tokens: "etag" });
  const gcsLike = new MemoryStore({ tokens: "generation" });

  await expectStoreError(s3Like.putBytes("k", encoder.encode("v"), { kind: "ifMatch", token: "abc" }), "NotFound");
  await expectStoreError(
    gcsLike.putBytes("k", encoder.encode("v"), { kind: "ifMatch", token: "1" }),
    "PreconditionFailed",
  );
});

Deno.test("memory: failNext fails the next call of that method once, before any effect", async () => {
  const store = new MemoryStore();
  store.failNext("putBytes", "Transient");
  const custom = Object.assign(new Error("HTTP 403"), { kind: "Auth", status: 403 });
  store.failNext("get", custom);

  const failed = await expectStoreError(store.putBytes("k", encoder.encode("v"), { kind: "none" }), "Transient");
  await store.putBytes("k", encoder.encode("v"), { kind: "none" });
  const thrown = await store.get("k").then(() => undefined, (error) => error);
  const retried = await store.get("k");

  assert.equal(failed.key, "k");
  assert.equal(thrown, custom);
  assert.ok(!("notModified" in retried));
  await readStream(retried.body);
  assert.deepEqual(store.calls, { get: 2, getBytes: 0, head: 0, put: 0, putBytes: 2, delete: 0, list: 0 });
});

Deno.test("memory: calls count every method, and resetCalls starts over", async () => {
  const store = new MemoryStore();
  await store.putBytes("k", encoder.encode("v"), { kind: "none" });
  await store.head("k");
  await store.list("");
  await expectStoreError(store.delete("missing"), "NotFound");

  const before = { ...store.calls };
  store.resetCalls();

  assert.deepEqual(before, { get: 0, getBytes: 0, head: 1, put: 0, putBytes: 1, delete: 1, list: 1 });
  assert.deepEqual(store.calls, { get: 0, getBytes: 0, head: 0, put: 0, putBytes: 0, delete: 0, list: 0 });
});

Deno.test("memory: seed and peek arrange and inspect objects without counting calls", async () => {
  const store = new MemoryStore();

  const token = store.seed("a/b.json", encoder.encode("{}"));
  const meta = await store.head("a/b.json");

  assert.deepEqual(meta, { token, size: 2 });
  assert.deepEqual(store.peek("a/b.json"), { bytes: encoder.encode("{}"), token });
  assert.deepEqual(store.keys(), ["a/b.json"]);
  assert.equal(store.peek("missing"), undefined);
  assert.equal(store.calls.head, 1);
});

Deno.test("memory: beforeCall can hold a call so a racing write lands first", async () => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  const store = new MemoryStore({
    beforeCall: (method, key) => method === "putBytes" && key === "index" ? held : undefined,
  });
  const base = store.seed("index", encoder.encode("v0"));

  const slow = store.putBytes("index", encoder.encode("slow"), { kind: "ifMatch", token: base });
  store.seed("index", encoder.encode("racer"));
  release();

  await expectStoreError(slow, "PreconditionFailed");
  assert.deepEqual(store.peek("index")?.bytes, encoder.encode("racer"));
});

Deno.test("memory: an UploadBody whose stream does not match its size is an Io error and stores nothing", async () => {
  const store = new MemoryStore();
  const body = {
    size: 10,
    open: () => Promise.resolve(ReadableStream.from([encoder.encode("short")])),
  };

  await expectStoreError(store.put("k", body, { kind: "none" }), "Io");
  assert.equal(store.peek("k"), undefined);
});
