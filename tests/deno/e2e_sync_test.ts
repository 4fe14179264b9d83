// End-to-end sync through the swamp entry points (`datastore.createProvider(config)` → `createSyncService`) on both
// emulators, with real cache directories; where a race, a fault or a delay is needed, the shared provider
// (`makeProvider`) around a wrapped real adapter. Run under scripts/with-emulators.sh: without the emulator endpoints
// every test fails.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";

import {
  dataFiles,
  decode,
  e2eTest,
  INDEX_KEY,
  type IndexJson,
  listFiles,
  META_KEY,
  populate,
  readCacheFile,
  remoteCommit,
  remoteIndex,
  SIDECAR,
  signal,
  within,
  WrappedStore,
  writeFiles,
} from "./support/e2e_support.ts";

const FIVE_FILES = {
  "data/one.json": '{"one":1}',
  "data/two.json": '{"two":2}',
  "models/m/three.yaml": "three: 3\n",
  "models/m/four.yaml": "four: 4\n",
  "five.md": "# five\n",
};

async function rejection(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  const error = await promise.then(
    (value) => assert.fail(`expected a rejection, got ${JSON.stringify(value)}`),
    (thrown: unknown) => thrown,
  );
  assert.ok(error instanceof Error, `expected an Error, got ${error}`);
  return error as Error & Record<string, unknown>;
}

async function sidecarOf(cacheDir: string): Promise<Record<string, unknown> | null> {
  const found = await readCacheFile(cacheDir, SIDECAR);
  return found === null ? null : JSON.parse(found);
}

e2eTest("seed: a push landing between a reader's index GET and the end of its pull is pulled next time", async (t) => {
  await populate(t, { "data/one.json": '{"one":1}', "data/two.json": '{"two":2}' });
  // A new bucket is format 2: the commit record `_index/_meta.json` carries the token a pull may record.
  const before = (await remoteCommit(t)).token;

  // Writer B on its own cache, through the extension as swamp builds it.
  const cacheB = await t.tempDir("b");
  const writerB = t.service(cacheB);
  let bPushed = 0;
  // Reader A: its first index GET returns, then B's whole markDirty + write + push runs, then A's pull goes on.
  const cacheA = await t.tempDir("a");
  const storeA = new WrappedStore(t.store(), {
    async after(call, nth) {
      if (call.method === "getBytes" && call.key === META_KEY && nth === 1) {
        // In a folder of its own: a shard A's commit record did not list, so A's shard reads cannot see it.
        await writeFiles(writerB, cacheB, { "fromb/b.json": '{"b":true}' });
        bPushed = await writerB.pushChanged() as number;
      }
    },
  });
  const readerA = t.serviceWith(storeA, cacheA);

  assert.equal(await readerA.pullChanged(), 2, "A pulls the two files of the index it read");
  assert.equal(bPushed, 1, "B's push ran inside A's pull");
  const after = (await remoteCommit(t)).token;
  assert.notEqual(after, before, "B's push rewrote the index");
  assert.equal(await readCacheFile(cacheA, "fromb/b.json"), null, "B's file was not in the index A read");
  const sidecar = await sidecarOf(cacheA);
  assert.notEqual(sidecar?.verifiedToken, after, "A must not record the token of B's index (the seed bug)");

  const downloaded = await readerA.pullChanged();

  assert.equal(downloaded, 1, "A's next pull misses the fast path and downloads B's file");
  assert.equal(await readCacheFile(cacheA, "fromb/b.json"), '{"b":true}');
  assert.deepEqual(await dataFiles(cacheA), ["data/one.json", "data/two.json", "fromb/b.json"]);
});

e2eTest("W1: two writers pushing disjoint files at once without a lock lose no index entry", async (t) => {
  await populate(t, { "data/base.json": '{"base":0}' });
  const [cacheA, cacheB] = [await t.tempDir("a"), await t.tempDir("b")];
  const aRead = signal();
  const bWrote = signal();
  // B writes the index only after A has read it; A writes only after B's write completed: A's write is stale.
  const storeA = new WrappedStore(t.store(), {
    async before(call, nth) {
      if (call.method === "putBytes" && call.key === META_KEY && nth === 1) {
        await within(bWrote.promise, 20_000, "B's index write");
      }
    },
    after(call, nth) {
      if (call.method === "getBytes" && call.key === META_KEY && nth === 1) aRead.resolve();
    },
  });
  const storeB = new WrappedStore(t.store(), {
    async before(call, nth) {
      if (call.method === "putBytes" && call.key === META_KEY && nth === 1) {
        await within(aRead.promise, 20_000, "A's index read");
      }
    },
    after(call) {
      if (call.method === "putBytes" && call.key === META_KEY) bWrote.resolve();
    },
  });
  const writerA = t.serviceWith(storeA, cacheA);
  const writerB = t.serviceWith(storeB, cacheB);
  await writeFiles(writerA, cacheA, { "data/a.json": '{"a":1}' });
  await writeFiles(writerB, cacheB, { "data/b.json": '{"b":1}' });

  const [pushedA, pushedB] = await Promise.all([writerA.pushChanged(), writerB.pushChanged()]);

  assert.deepEqual([pushedA, pushedB], [1, 1]);
  // Format 2: the commit record `_index/_meta.json` is the compare-and-swap every commit ends with.
  const indexWritesA = storeA.calls.filter((call) => call.method === "putBytes" && call.key === META_KEY);
  assert.equal(indexWritesA[0].outcome, "PreconditionFailed", "A's first write-back was a stale compare-and-swap");
  assert.equal(indexWritesA.at(-1)!.outcome, "ok");
  const index = await remoteIndex(t);
  assert.deepEqual(Object.keys(index.entries).sort(), ["data/a.json", "data/b.json", "data/base.json"]);
  // And a third machine pulls both.
  const reader = await t.tempDir("reader");
  assert.equal(await t.service(reader).pullChanged(), 3);
});

e2eTest("W2: a pull by another instance on the same cache does not clear a pending markDirty", async (t) => {
  const cache = await t.tempDir("shared");
  const x = t.service(cache);
  await writeFiles(x, cache, { "data/first.json": "1" });
  assert.equal(await x.pushChanged(), 1, "a first complete push leaves the cache clean");
  await writeFiles(x, cache, { "data/x.json": '{"x":1}' });
  await populate(t, { "data/third-party.json": '{"t":1}' });

  const y = t.service(cache);
  assert.equal(await y.pullChanged(), 1, "Y pulls the third party's file");
  const uploaded = await y.pushChanged();

  assert.equal(uploaded, 1, "Y's push uploads X's unpushed file");
  const index = await remoteIndex(t);
  assert.deepEqual(Object.keys(index.entries).sort(), ["data/first.json", "data/third-party.json", "data/x.json"]);
  assert.equal(index.entries["data/x.json"].size, 7);
  assert.equal(decode((await t.rawGet("data/x.json"))!.bytes), '{"x":1}');
});

e2eTest(
  "B6: a fresh reader that pushes one file against a populated bucket is not verified, then pulls all",
  async (t) => {
    await populate(t, FIVE_FILES);
    const cache = await t.tempDir("fresh");
    const fresh = t.service(cache);
    await writeFiles(fresh, cache, { "data/mine.json": '{"mine":1}' });

    assert.equal(await fresh.pushChanged(), 1);
    const sidecar = await sidecarOf(cache);
    assert.ok(sidecar, "the push wrote a sidecar (nothing left to upload here)");
    assert.equal(sidecar.version, 2);
    assert.equal(sidecar.verifiedToken ?? null, null, `nothing verified yet: ${JSON.stringify(sidecar)}`);

    assert.equal(await fresh.pullChanged(), 5, "the pull takes the slow path and downloads every other file");
    assert.deepEqual(await dataFiles(cache), [...Object.keys(FIVE_FILES), "data/mine.json"].sort());
    for (const [rel, content] of Object.entries(FIVE_FILES)) assert.equal(await readCacheFile(cache, rel), content);
    const verified = await sidecarOf(cache);
    assert.equal(verified?.version, 2);
    assert.equal(verified?.verifiedToken, (await remoteCommit(t)).token, "now every entry is here: verified");
  },
);

e2eTest(
  "interop: a bucket in the official format pulls, and a push keeps unknown fields and official entries",
  async (t) => {
    const files: Record<string, string> = {
      "data/official-a.json": '{"written":"by the official extension"}',
      "models/official/b.yaml": "kind: official\n",
    };
    const official: IndexJson = {
      version: 1,
      lastPulled: "2026-04-20T10:00:00.000Z",
      futureTopLevel: { keep: ["me", 1] },
      entries: {
        "data/official-a.json": {
          key: "data/official-a.json",
          size: files["data/official-a.json"].length,
          lastModified: "2026-04-20T09:59:00.000Z",
          localMtime: "2026-04-20T09:58:00.000Z",
          futureEntryField: { nested: true },
        },
        // An old entry without localMtime.
        "models/official/b.yaml": {
          key: "models/official/b.yaml",
          size: files["models/official/b.yaml"].length,
          lastModified: "2026-04-19T08:00:00.000Z",
        },
      },
    };
    for (const [rel, content] of Object.entries(files)) await t.rawPut(rel, new TextEncoder().encode(content));
    await t.rawPutJson(INDEX_KEY, official);
    const cache = await t.tempDir("interop");
    const service = t.service(cache);

    assert.equal(await service.pullChanged(), 2);
    for (const [rel, content] of Object.entries(files)) assert.equal(await readCacheFile(cache, rel), content);

    await writeFiles(service, cache, { "data/ours.json": '{"ours":true}' });
    assert.equal(await service.pushChanged(), 1, "only the new file is uploaded");

    const rewritten = await remoteIndex(t);
    assert.equal(rewritten.version, 1);
    assert.deepEqual(rewritten.futureTopLevel, { keep: ["me", 1] }, "unknown top-level field kept");
    for (const rel of Object.keys(official.entries)) {
      assert.deepEqual(rewritten.entries[rel], official.entries[rel], `official entry ${rel} unchanged`);
    }
    const ours = rewritten.entries["data/ours.json"];
    assert.ok(ours, "our entry is in the index");
    assert.equal(ours.key, "data/ours.json");
    assert.equal(ours.size, '{"ours":true}'.length);
    assert.match(String(ours.sha256), /^[0-9a-f]{64}$/);
    assert.ok(!Number.isNaN(Date.parse(ours.lastModified)), `lastModified is an ISO date: ${ours.lastModified}`);
    assert.deepEqual(Object.keys(rewritten.entries).sort(), [
      "data/official-a.json",
      "data/ours.json",
      "models/official/b.yaml",
    ]);
  },
);

e2eTest(
  "B16: traversal keys in a remote index are rejected by name, the rest is pulled, nothing lands outside",
  async (t) => {
    const root = await t.tempDir("traversal");
    const cache = join(root, "cache");
    await Deno.mkdir(cache);
    await t.rawPut("data/good.json", new TextEncoder().encode('{"good":1}'));
    const entry = (key: string, size: number) => ({ key, size, lastModified: "2026-04-20T10:00:00.000Z" });
    await t.rawPutJson(INDEX_KEY, {
      version: 1,
      lastPulled: "2026-04-20T10:00:00.000Z",
      entries: {
        "../escape.txt": entry("../escape.txt", 4),
        "/abs.txt": entry("/abs.txt", 4),
        "data/good.json": entry("data/good.json", 10),
      },
    });
    // The objects exist too, so an engine that followed the keys would have bytes to write outside the cache.
    for (const key of ["../escape.txt", "/abs.txt"]) {
      await t.rawPut(key, new TextEncoder().encode("evil"));
      assert.equal(decode((await t.rawGet(key))!.bytes), "evil", `raw object ${key} readable`);
    }
    const absExisted = await Deno.stat("/abs.txt").then(() => true, () => false);

    const error = await rejection(t.service(cache).pullChanged());

    assert.match(error.message, /\.\.\/escape\.txt/, error.message);
    assert.match(error.message, /\/abs\.txt/, error.message);
    assert.equal(error.kind, "Files");
    const failed = (error.failures as { rel: string; kind: string }[]).map((failure) => [failure.rel, failure.kind]);
    assert.deepEqual(failed.sort(), [["../escape.txt", "InvalidKey"], ["/abs.txt", "InvalidKey"]].sort());
    assert.equal(await readCacheFile(cache, "data/good.json"), '{"good":1}', "the valid entry was pulled");
    assert.deepEqual(await listFiles(root).then((all) => all.filter((rel) => !rel.startsWith("cache/"))), []);
    assert.deepEqual(await dataFiles(cache), ["data/good.json"]);
    assert.equal(await Deno.stat("/abs.txt").then(() => true, () => false), absExisted, "/abs.txt not created");
    assert.equal(await Deno.stat(join(dirname(root), "escape.txt")).then(() => true, () => false), false);
  },
);

e2eTest("B15: an abort during the second download rejects with AbortError; the next pull completes", async (t) => {
  await populate(t, FIVE_FILES);
  const cache = await t.tempDir("abort");
  const controller = new AbortController();
  const store = new WrappedStore(t.store(), {
    before(call) {
      if (call.method === "get" && store.count("get") === 2) controller.abort();
    },
  });
  const service = t.serviceWith(store, cache);

  const error = await rejection(service.pullChanged({ signal: controller.signal }));

  assert.equal(error.name, "AbortError", `${error.name}: ${error.message}`);
  const missing = Object.keys(FIVE_FILES).length - (await dataFiles(cache)).length;
  assert.ok(missing >= 1, "the aborted download did not land");
  store.reset();
  const downloaded = await service.pullChanged();
  assert.equal(downloaded, missing, "the next pull downloads exactly what is missing");
  for (const [rel, content] of Object.entries(FIVE_FILES)) assert.equal(await readCacheFile(cache, rel), content);
});

e2eTest("B14: a 503 on the index GET is retried and the pull succeeds", async (t) => {
  await populate(t, { "data/one.json": "1", "data/two.json": "22" });
  const cache = await t.tempDir("retry");
  const store = new WrappedStore(t.store(), {
    before(call, nth) {
      if (call.method === "getBytes" && call.key === META_KEY && nth === 1) {
        throw Object.assign(new Error("injected: service unavailable"), { kind: "Transient", status: 503 });
      }
    },
  });

  const downloaded = await t.serviceWith(store, cache).pullChanged();

  assert.equal(downloaded, 2);
  assert.deepEqual(
    store.calls.filter((call) => call.key === META_KEY).map((call) => call.outcome),
    ["Transient", "ok"],
  );
  assert.deepEqual(await dataFiles(cache), ["data/one.json", "data/two.json"]);
});

e2eTest("W14: a 403 on the index GET fails at once, with the credentials hint, after one call", async (t) => {
  await populate(t, { "data/one.json": "1" });
  const cache = await t.tempDir("auth");
  const denied = t.authError("getBytes", META_KEY);
  const store = new WrappedStore(t.store(), {
    before(call, nth) {
      if (call.method === "getBytes" && call.key === META_KEY && nth === 1) throw denied;
    },
  });
  const started = performance.now();

  const error = await rejection(t.serviceWith(store, cache).pullChanged());

  assert.ok(performance.now() - started < 400, "no backoff sleep before failing");
  // The commit record, and the format marker read alongside it; neither retried.
  assert.equal(store.count("getBytes", META_KEY), 1, `one index call only: ${JSON.stringify(store.calls)}`);
  assert.ok(store.calls.every((call) => call.key === META_KEY || call.key.startsWith("_control/")));
  assert.equal(error.kind, "IndexUnreadable");
  assert.equal(error.causeKind, "Auth");
  assert.equal(error.status, 403);
  assert.match(error.message, t.backend === "s3" ? /check AWS credentials/ : /GOOGLE_APPLICATION_CREDENTIALS/);
  assert.deepEqual(await dataFiles(cache), []);
});

e2eTest(
  "a sync after the sidecar is lost: the push reuses the pull's walk and asks for the index conditionally",
  async (t) => {
    const cache = await t.tempDir("cache");
    const store = new WrappedStore(t.store());
    const service = t.serviceWith(store, cache);
    await writeFiles(service, cache, { "a.json": "a", "b/c.json": "bc" });
    assert.equal(await service.pushChanged(), 2);
    await Deno.remove(`${cache}/${SIDECAR}`);

    store.reset();
    assert.equal(await service.pullChanged(), 0);
    const pullCalls = store.calls.map((call) => [call.method, call.key, call.outcome]);
    assert.deepEqual(pullCalls[0], ["getBytes", META_KEY, "ok"], "the pull reads the index (format 2: its record)");
    assert.ok(pullCalls.every(([method]) => method === "getBytes"), JSON.stringify(pullCalls));
    store.reset();
    assert.equal(await service.pushChanged(), 0);
    assert.deepEqual(store.calls.map((call) => [call.method, call.key, call.outcome]), [
      ["getBytes", META_KEY, "notModified"],
    ], "the push only checks that the index is still the one the pull compared");

    // A second instance on the same cache has no walk of its own: its push reads the index in full.
    await Deno.remove(`${cache}/${SIDECAR}`);
    store.reset();
    assert.equal(await t.serviceWith(store, cache).pushChanged(), 0);
    const pushCalls = store.calls.map((call) => [call.method, call.key, call.outcome]);
    assert.deepEqual(pushCalls[0], ["getBytes", META_KEY, "ok"]);
    assert.deepEqual(pushCalls.filter(([method]) => method !== "getBytes"), [], "and writes nothing");
  },
);

e2eTest(
  "B18/B1/B2: counts are files transferred; a zero-diff pull is one GET, a zero-diff push no request",
  async (t) => {
    const cacheW = await t.tempDir("writer");
    const storeW = new WrappedStore(t.store());
    const writer = t.serviceWith(storeW, cacheW);
    await writeFiles(writer, cacheW, { "a.json": "a", "b/c.json": "bc", "b/d/e.json": "bde" });
    assert.equal(await writer.pushChanged(), 3);

    storeW.reset();
    assert.equal(await writer.pushChanged(), 0);
    assert.equal(storeW.calls.length, 0, `a zero-diff push makes no request: ${JSON.stringify(storeW.calls)}`);
    assert.equal(await writer.pullChanged(), 0);
    assert.deepEqual(storeW.calls.map((call) => [call.method, call.key, call.outcome]), [
      ["getBytes", META_KEY, "notModified"],
    ], "a zero-diff pull after our own push is one conditional GET");

    const cacheR = await t.tempDir("reader");
    const storeR = new WrappedStore(t.store());
    const reader = t.serviceWith(storeR, cacheR);
    assert.equal(await reader.pullChanged(), 3);
    assert.equal(storeR.count("get"), 3, "one GET per file");
    storeR.reset();
    assert.equal(await reader.pullChanged(), 0);
    assert.deepEqual(storeR.calls.map((call) => [call.method, call.key, call.outcome]), [
      ["getBytes", META_KEY, "notModified"],
    ]);
    assert.equal(await reader.pushChanged(), 0, "nothing to upload");
    storeR.reset();
    assert.equal(await reader.pushChanged(), 0);
    assert.equal(storeR.calls.length, 0, `a second zero-diff push makes no request: ${JSON.stringify(storeR.calls)}`);

    // One remote change: the next pull transfers exactly one file.
    // By the writer, which knows the version it edits (a fresh cache creating a.json would be a conflict).
    await writeFiles(writer, cacheW, { "a.json": "A!" });
    assert.equal(await writer.pushChanged(), 1);
    storeR.reset();
    assert.equal(await reader.pullChanged(), 1);
    assert.equal(storeR.count("get"), 1);
    assert.equal(await readCacheFile(cacheR, "a.json"), "A!");
  },
);
