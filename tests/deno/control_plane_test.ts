// Today's swamp surface through the real providers, beyond the conformance suites
// (tests/deno/support/datastore_conformance.ts, which check the control plane, the lock and its timeout on every
// backend): the control plane of a service bound to a namespace, and `capabilities()` with every advertised capability
// exercised. Each check runs on the in-memory store, the CLI's file:// store, moto and fake-gcs-server (the emulators
// under scripts/with-emulators.sh; without them the emulator tests fail, never skip).
import assert from "node:assert/strict";

import { FsStore } from "../../js/fs_store.ts";
import type { MarshStore } from "../../js/host.ts";
import { MemoryStore } from "../../js/memory_store.ts";
import { CAPABILITIES, makeProvider } from "../../js/provider.ts";
import type { DatastoreCapabilities, DatastoreProvider, DatastoreSyncService } from "../../js/swamp.ts";
import { MarshSyncService } from "../../js/sync_service.ts";
import { DenoCache } from "../../js/cache.ts";
import { decode, e2eTest, type Target, text } from "./support/e2e_support.ts";

/** One bucket as the checks see it: fresh clients of it (one per "process"), providers over them, and raw access. */
interface Bucket {
  /** A new client of the bucket (another process's adapter). */
  store(): MarshStore;
  provider(store?: MarshStore): DatastoreProvider;
  rawGet(rel: string): Promise<Uint8Array | null>;
  rawPut(rel: string, bytes: Uint8Array): Promise<void>;
  tempDir(): Promise<string>;
}

function providerOver(store: MarshStore, scope: string): DatastoreProvider {
  return makeProvider({
    datastoreType: "@marsh/test-datastore",
    scope,
    store,
    details: {},
    hints: { credentials: "test credentials", missingBucket: "test bucket" },
    traceVariables: [],
  });
}

async function rawOf(store: MarshStore, rel: string): Promise<Uint8Array | null> {
  try {
    const found = await store.getBytes(rel);
    return "bytes" in found ? found.bytes : null;
  } catch (error) {
    if ((error as { kind?: string }).kind === "NotFound") return null;
    throw error;
  }
}

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "marsh-control-" });
  dirs.push(dir);
  return dir;
}

function memoryBucket(): Bucket {
  const memory = new MemoryStore({ tokens: "generation" });
  return {
    store: () => memory,
    provider: (store = memory) => providerOver(store, "mem://bucket/"),
    rawGet: (rel) => Promise.resolve(memory.peek(rel)?.bytes ?? null),
    rawPut: (rel, bytes) => Promise.resolve(void memory.seed(rel, bytes)),
    tempDir,
  };
}

async function fileBucket(): Promise<Bucket> {
  const root = await tempDir();
  return {
    store: () => new FsStore(root),
    provider: (store = new FsStore(root)) => providerOver(store, `file://${root}`),
    rawGet: (rel) => rawOf(new FsStore(root), rel),
    rawPut: async (rel, bytes) => void await new FsStore(root).putBytes(rel, bytes, { kind: "none" }),
    tempDir,
  };
}

function emulatorBucket(target: Target): Bucket {
  return {
    store: () => target.store(),
    provider: (store) => store ? target.providerWith(store) : target.provider(),
    rawGet: async (rel) => (await target.rawGet(rel))?.bytes ?? null,
    rawPut: async (rel, bytes) => void await target.rawPut(rel, bytes),
    tempDir: () => target.tempDir(),
  };
}

async function serviceOf(bucket: Bucket, store?: MarshStore) {
  const service = bucket.provider(store).createSyncService!("/repo/unused", await bucket.tempDir());
  assert.ok(service.controlPlaneStore, "the sync service has controlPlaneStore()");
  return service.controlPlaneStore();
}

/** A bucket holding two models' content and a config file, pushed through swamp's surface; a fresh cache's service. */
async function seeded(bucket: Bucket) {
  const provider = bucket.provider();
  const writerDir = await bucket.tempDir();
  const writer = provider.createSyncService!("/repo", writerDir);
  await writer.markDirty();
  for (const [rel, content] of Object.entries(SEEDED)) {
    const path = `${writerDir}/${rel}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(path, content);
  }
  await writer.pushChanged();
  const dir = await bucket.tempDir();
  return { dir, service: provider.createSyncService!("/repo", dir) };
}

const SEEDED: Record<string, string> = {
  "data/t/m1/state/1/raw": "content of m1",
  "data/t/m1/state/1/meta.yaml": "meta of m1",
  "data/t/m2/state/1/raw": "content of m2",
  "config/x.yaml": "config",
};

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** What each pull-side capability promises, exercised through the methods swamp calls. */
function pullExercises(bucket: Bucket): Partial<Record<keyof DatastoreCapabilities, () => Promise<void>>> {
  return {
    lazyHydration: async () => {
      const { dir, service } = await seeded(bucket);
      await service.pullChanged({ metadataOnly: true });
      assert.ok(await exists(`${dir}/data/t/m1/state/1/meta.yaml`));
      assert.ok(await exists(`${dir}/data/t/m1/state/1`), "the content file's folder is created");
      assert.ok(!(await exists(`${dir}/data/t/m1/state/1/raw`)), "the content file is not");
      assert.equal(decode((await service.fetchContent!("data/t/m2/state/1/raw"))!), "content of m2");
      assert.ok(!(await exists(`${dir}/data/t/m2/state/1/raw`)), "fetchContent leaves the cache alone");
      assert.equal(await service.fetchContent!("data/none/raw"), null);
      await assert.rejects(service.fetchContent!("../x"));
      assert.equal(await service.hydrateFile!("data/t/m1/state/1/raw"), true);
      assert.equal(await Deno.readTextFile(`${dir}/data/t/m1/state/1/raw`), "content of m1");
      assert.equal(await service.hydrateFile!("data/none/raw"), false);
    },
    scopedSync: async () => {
      const { dir, service } = await seeded(bucket);
      await service.pullChanged({ context: { models: [{ modelType: "t", modelId: "m1" }] } });
      assert.equal(await Deno.readTextFile(`${dir}/data/t/m1/state/1/raw`), "content of m1");
      assert.ok(!(await exists(`${dir}/data/t/m2/state/1/raw`)), "another model's files are not pulled");
    },
    configRefresh: async () => {
      const { dir, service } = await seeded(bucket);
      await service.pullChanged({ subdirs: ["config"] });
      assert.equal(await Deno.readTextFile(`${dir}/config/x.yaml`), "config");
      assert.ok(!(await exists(`${dir}/data`)), "nothing outside the subdirs");
    },
  };
}

/** A cache with `files` written under `dir` (relative paths), every one marked by path. */
async function writeMarked(service: DatastoreSyncService, dir: string, files: Record<string, string>, ns?: string) {
  for (const [rel, content] of Object.entries(files)) {
    await service.markDirty({ relPath: rel, namespace: ns });
    const path = `${dir}/${rel}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(path, content);
  }
}

/** What each push-side capability promises, exercised through the methods swamp calls. */
function pushExercises(bucket: Bucket): Partial<Record<keyof DatastoreCapabilities, () => Promise<void>>> {
  const provider = () => bucket.provider();
  return {
    namespacedSync: async () => {
      const [dirA, dirB] = [await bucket.tempDir(), await bucket.tempDir()];
      const [a, b] = [provider().createSyncService!("/a", dirA), provider().createSyncService!("/b", dirB)];
      await provider().registerNamespace!("/a/.swamp", "team-a", "repo-a");
      await provider().registerNamespace!("/a/.swamp", "team-a", "repo-a"); // the same repository again: no error
      await assert.rejects(provider().registerNamespace!("/b/.swamp", "team-a", "repo-b"), /claimed by repository/);
      assert.deepEqual(await provider().listNamespaces!("/a/.swamp"), ["team-a"]);
      await writeMarked(a, dirA, { "team-a/data/t/m/state/1/raw": "in team-a" }, "team-a");
      assert.equal(await a.pushChanged({ namespace: "team-a" }), 1);
      assert.equal(decode((await bucket.rawGet("team-a/data/t/m/state/1/raw"))!), "in team-a");
      assert.ok(await bucket.rawGet("team-a/_index/_meta.json"), "the namespace has an index of its own");
      const meta = JSON.parse(decode((await bucket.rawGet("team-a/_index/_meta.json"))!));
      const shard = JSON.parse(decode((await bucket.rawGet(`team-a/_index/${meta.partitions[0]}.json`))!));
      assert.deepEqual(Object.keys(shard.entries), ["data/t/m/state/1/raw"], "entries keep the bare path");
      assert.equal(await b.pullChanged({ namespace: "team-a" }), 1);
      assert.equal(await Deno.readTextFile(`${dirB}/team-a/data/t/m/state/1/raw`), "in team-a");
      await assert.rejects(b.pullChanged({ namespace: "team-b" }), /needs a service of its own/);
    },
    previewPush: async () => {
      const dir = await bucket.tempDir();
      const service = provider().createSyncService!("/repo", dir);
      await writeMarked(service, dir, { "config/a.yaml": "a", "config/b.yaml": "b" });
      assert.deepEqual(await service.previewPush!(), { total: 2, new: 2, changed: 0, deleted: 0 });
      assert.equal(await bucket.rawGet("config/a.yaml"), null, "a preview writes nothing");
      assert.equal(await service.pushChanged(), 2, "and leaves the push its work");
      await writeMarked(service, dir, { "config/a.yaml": "a2" });
      await service.markDirty({ relPath: "config/b.yaml" });
      await Deno.remove(`${dir}/config/b.yaml`);
      assert.deepEqual(await service.previewPush!(), { total: 2, new: 0, changed: 1, deleted: 1 });
    },
    twoPhaseSync: async () => {
      const [dir, peerDir] = [await bucket.tempDir(), await bucket.tempDir()];
      const service = provider().createSyncService!("/repo", dir);
      const peer = provider().createSyncService!("/peer", peerDir);
      await peer.pullChanged(); // whatever the exercises before left in the bucket
      await writeMarked(service, dir, { "config/two.yaml": "two-phase" });
      const manifest = await service.preparePush!();
      assert.equal(decode((await bucket.rawGet("config/two.yaml"))!), "two-phase", "prepare uploads");
      assert.equal(await peer.pullChanged(), 0, "but commits nothing a peer can pull");
      assert.equal(await service.commitPush!(manifest), 1);
      assert.equal(await peer.pullChanged(), 1);
      assert.equal(await Deno.readTextFile(`${peerDir}/config/two.yaml`), "two-phase");
      assert.equal(await service.pushChanged(), 0, "the commit cleared what it handled");
    },
  };
}

/** The checks, each run on every bucket below. */
const CHECKS: Record<string, (bucket: Bucket) => Promise<void>> = {
  "control plane: a bound namespace keeps records below it; the datastore store reads the root": async (bucket) => {
    const cache = new DenoCache(await bucket.tempDir());
    const bound = new MarshSyncService(bucket.store(), cache, { scope: "test://bound", namespace: "team-a" });
    await bound.controlPlaneStore().put("signals/s", text("in the namespace"));
    await bucket.rawPut("_control/datastore-format", text('{"format":2}'));

    assert.equal(decode((await bucket.rawGet("team-a/_control/signals/s"))!), "in the namespace");
    const root = bucket.provider().datastoreControlPlaneStore!();
    assert.deepEqual(JSON.parse(decode((await root.get("datastore-format"))!)), { format: 2 });
    assert.equal(await root.get("signals/s"), null, "the datastore store ignores the namespace");
    assert.deepEqual(await bound.controlPlaneStore().list(""), ["signals/s"]);
  },

  "capabilities: exactly what works is advertised, and each advertised capability is exercised": async (bucket) => {
    const provider = bucket.provider();
    const capabilities = provider.capabilities!();
    const exercises: Partial<Record<keyof DatastoreCapabilities, () => Promise<void>>> = {
      controlPlane: async () => {
        const control = await serviceOf(bucket);
        assert.equal(await control.putIfAbsent("exercise", text("x")), true);
        assert.equal(await control.putIfAbsent("exercise", text("y")), false);
        assert.equal(decode((await control.get("exercise"))!), "x");
        assert.deepEqual(await control.list("exer"), ["exercise"]);
        assert.equal(decode((await provider.datastoreControlPlaneStore!().get("exercise"))!), "x");
        await control.put("exercise", text("z"));
        await control.delete("exercise");
        assert.equal(await control.get("exercise"), null);
      },
      ...pullExercises(bucket),
      ...pushExercises(bucket),
    };
    assert.deepEqual(capabilities, { ...CAPABILITIES });
    assert.deepEqual(Object.keys(capabilities).sort(), [
      "configRefresh",
      "controlPlane",
      "lazyHydration",
      "namespacedSync",
      "previewPush",
      "scopedSync",
      "twoPhaseSync",
    ]);
    const advertised = Object.entries(capabilities).filter(([, on]) => on).map(([name]) => name);
    assert.deepEqual(advertised, [
      "scopedSync",
      "lazyHydration",
      "namespacedSync",
      "twoPhaseSync",
      "previewPush",
      "controlPlane",
      "configRefresh",
    ]);
    for (const name of advertised as (keyof DatastoreCapabilities)[]) {
      assert.ok(exercises[name], `${name} is advertised but no test exercises it`);
      await exercises[name]!();
    }
  },
};

for (const [name, check] of Object.entries(CHECKS)) {
  Deno.test(`memory: ${name}`, async () => await check(memoryBucket()));
  Deno.test(`file: ${name}`, async () => await check(await fileBucket()));
  e2eTest(name, async (target) => await check(emulatorBucket(target)));
}

Deno.test({
  name: "control plane tests: remove the temp directories",
  async fn() {
    for (const dir of dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  },
});
