/**
 * marsh's own conformance suites for swamp's datastore contract (docs/host-contract.md), written from the contract:
 * swamp's testing package cannot be imported here. Not a test file itself: `tests/deno/datastore_conformance_test.ts`
 * registers every suite against every backend.
 *
 * - {@link exportSuite}: the provider's factories, paths and capabilities, the verifier, and (for a backend with an
 *   extension entry) the `datastore` export and its schema.
 * - {@link lockSuite}: acquire, release, withLock, waiting, inspect, forceRelease, lockKey and namespace.
 * - {@link lockTimeoutSuite}: the error a waiter gets (`code`, `lockKey`, `waitedMs`, holder, `holderUnknown`).
 * - {@link syncRoundTripSuite}: two sync services on one bucket, each with its own cache: push, pull, deletions,
 *   `fetchContent`, `hydrateFile`; optionally every call within a namespace.
 * - {@link controlPlaneSuite}: `controlPlaneStore()` and `datastoreControlPlaneStore()`.
 *
 * Each suite takes a {@link DatastoreBackend} whose `open()` answers a fresh, empty, isolated datastore per case
 * ({@link conformanceBackends}: in-memory, file://, S3 on moto, GCS on fake-gcs-server). Cases are named
 * `"<suite> [<backend>]: <what it checks>"`. The emulator backends need scripts/with-emulators.sh: without it they fail,
 * never skip.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";

import { FsStore } from "../../../js/fs_store.ts";
import type { MarshControlError, MarshLockError, MarshStore, MarshSyncError } from "../../../js/host.ts";
import { MemoryStore } from "../../../js/memory_store.ts";
import { makeProvider } from "../../../js/provider.ts";
import type {
  DatastoreCapabilities,
  DatastoreProvider,
  DatastoreSyncOptions,
  DatastoreSyncService,
  DistributedLock,
  LockOptions,
  MarkDirtyOptions,
} from "../../../js/swamp.ts";
import { datastoreOf, newTarget, sleep, type Target as EmulatorTarget, within, WrappedStore } from "./e2e_support.ts";

// ---- Backends ----

export type ConformanceBackendName = "memory" | "file" | "s3" | "gcs";

/** What an extension entry module must accept and refuse (only backends that ship one). */
export interface EntryFacts {
  datastore: ReturnType<typeof datastoreOf>;
  /** The extension's own type, e.g. `@marsh/s3-datastore`. */
  type: string;
  validConfigs: Record<string, unknown>[];
  /** Why each is invalid, and the config; the last field of each config is the one the schema must name. */
  invalidConfigs: [string, Record<string, unknown>][];
  /** A config that builds a provider without any request (its endpoint need not answer). */
  offlineConfig: Record<string, unknown>;
}

/** One case's datastore: a fresh, empty bucket (or store) of its own. */
export interface Datastore {
  readonly backend: ConformanceBackendName;
  /** The `datastoreType` its verifier answers. */
  readonly datastoreType: string;
  /** A new client of this datastore, as another process would have (the in-memory store answers its one instance). */
  store(): MarshStore;
  /** The provider swamp would build; over `store` when given (a {@link WrappedStore} to count or fail calls). */
  provider(store?: MarshStore): DatastoreProvider;
  /** An object's bytes, read past marsh; `null` when there is none. Keys are datastore-relative. */
  rawGet(key: string): Promise<Uint8Array | null>;
  /** Write an object past marsh. */
  rawPut(key: string, bytes: Uint8Array): Promise<void>;
  /** A new empty directory, removed at cleanup. */
  tempDir(label?: string): Promise<string>;
  cleanup(): Promise<void>;
}

export interface DatastoreBackend {
  readonly name: ConformanceBackendName;
  /** A fresh, empty datastore for one case. */
  open(): Promise<Datastore>;
  /** The extension entry of this backend, when it ships one (S3 and GCS do; the in-memory and file stores do not). */
  readonly entry?: EntryFacts;
}

function testProvider(store: MarshStore, scope: string, datastoreType: string): DatastoreProvider {
  return makeProvider({
    datastoreType,
    scope,
    store,
    details: { scope },
    hints: { credentials: "check the test store", missingBucket: "the test store does not exist" },
    traceVariables: [],
  });
}

/** Temp directories of one case, removed at cleanup. */
class Dirs {
  readonly #dirs: string[] = [];
  async make(label = "cache"): Promise<string> {
    const dir = await Deno.makeTempDir({ prefix: `marsh-conformance-${label}-` });
    this.#dirs.push(dir);
    return dir;
  }
  async removeAll(): Promise<void> {
    for (const dir of this.#dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** The in-memory store (S3-style ETag tokens), one instance per case. */
export function memoryBackend(): DatastoreBackend {
  return {
    name: "memory",
    open() {
      const memory = new MemoryStore({ tokens: "etag", listPageSize: 7 });
      const dirs = new Dirs();
      const datastoreType = "@marsh/test-memory";
      return Promise.resolve({
        backend: "memory",
        datastoreType,
        store: () => memory,
        provider: (store = memory) => testProvider(store, "mem://conformance/", datastoreType),
        rawGet: (key) => Promise.resolve(memory.peek(key)?.bytes ?? null),
        rawPut: (key, bytes) => Promise.resolve(void memory.seed(key, bytes)),
        tempDir: (label) => dirs.make(label),
        cleanup: () => dirs.removeAll(),
      });
    },
  };
}

/** The CLI's `file://` store (generation tokens), a fresh directory per case; every client is a new `FsStore`. */
export function fileBackend(): DatastoreBackend {
  return {
    name: "file",
    async open() {
      const dirs = new Dirs();
      const root = await dirs.make("store");
      const datastoreType = "@marsh/test-file";
      const raw = new FsStore(root);
      return {
        backend: "file",
        datastoreType,
        store: () => new FsStore(root),
        provider: (store = new FsStore(root)) => testProvider(store, `file://${root}`, datastoreType),
        rawGet: async (key) => {
          try {
            const found = await raw.getBytes(key);
            return "bytes" in found ? found.bytes : null;
          } catch (error) {
            if ((error as { kind?: string }).kind === "NotFound") return null;
            throw error;
          }
        },
        rawPut: async (key, bytes) => void await raw.putBytes(key, bytes, { kind: "none" }),
        tempDir: (label) => dirs.make(label),
        cleanup: () => dirs.removeAll(),
      };
    },
  };
}

const S3_ENTRY = {
  validConfigs: [
    { bucket: "my-bucket" },
    { bucket: "my.bucket.1", prefix: "team/repo", region: "eu-west-1" },
    { bucket: "abc", endpoint: "http://127.0.0.1:9000", forcePathStyle: true },
  ],
  invalidConfigs: [
    ["underscore in an S3 bucket", { bucket: "my_bucket" }],
    ["endpoint not a URL", { bucket: "my-bucket", endpoint: "not a url" }],
    ["forcePathStyle not a boolean", { bucket: "my-bucket", forcePathStyle: "yes" }],
    ["region not a string", { bucket: "my-bucket", region: 1 }],
  ] as [string, Record<string, unknown>][],
  offlineConfig: { bucket: "my-bucket", endpoint: "http://127.0.0.1:9", forcePathStyle: true, region: "us-east-1" },
};

const GCS_ENTRY = {
  validConfigs: [
    { bucket: "my-bucket" },
    { bucket: "my_bucket.1", prefix: "team/repo", projectId: "my-project" },
    { bucket: "abc", apiEndpoint: "http://127.0.0.1:4443" },
  ],
  invalidConfigs: [
    ['bucket starting with "goog"', { bucket: "goog-data" }],
    ['bucket containing "google"', { bucket: "my-google-bucket" }],
    ["apiEndpoint not a URL", { bucket: "my-bucket", apiEndpoint: "nope" }],
    ["projectId not a string", { bucket: "my-bucket", projectId: 3 }],
  ] as [string, Record<string, unknown>][],
  offlineConfig: { bucket: "my-bucket", apiEndpoint: "http://127.0.0.1:9" },
};

/** Refused by both schemas: the field each names last. */
const COMMON_INVALID: [string, Record<string, unknown>][] = [
  ["no bucket", {}],
  ["bucket too short", { bucket: "ab" }],
  ["bucket too long", { bucket: "a".repeat(64) }],
  ["upper-case bucket", { bucket: "My-Bucket" }],
  ["bucket ending with a dash", { bucket: "bucket-" }],
  ["bucket with a slash", { bucket: "my/bucket" }],
  ["bucket not a string", { bucket: 42 }],
  ["prefix not a string", { bucket: "my-bucket", prefix: 7 }],
];

/**
 * S3 on moto or GCS on fake-gcs-server: a new bucket and prefix per case; the provider without a store is the one the
 * extension's `datastore.createProvider(config)` builds.
 */
export function emulatorBackend(backend: "s3" | "gcs"): DatastoreBackend {
  const facts = backend === "s3" ? S3_ENTRY : GCS_ENTRY;
  return {
    name: backend,
    entry: {
      datastore: datastoreOf(backend),
      type: `@marsh/${backend}-datastore`,
      validConfigs: facts.validConfigs,
      invalidConfigs: [...COMMON_INVALID, ...facts.invalidConfigs],
      offlineConfig: facts.offlineConfig,
    },
    async open() {
      const target: EmulatorTarget = await newTarget(backend);
      return {
        backend,
        datastoreType: target.datastoreType,
        store: () => target.store(),
        provider: (store) => store ? target.providerWith(store) : target.provider(),
        rawGet: async (key) => (await target.rawGet(key))?.bytes ?? null,
        rawPut: async (key, bytes) => void await target.rawPut(key, bytes),
        tempDir: (label) => target.tempDir(label),
        cleanup: () => target.cleanup(),
      };
    },
  };
}

/** The four backends every suite runs against. */
export function conformanceBackends(): DatastoreBackend[] {
  return [memoryBackend(), fileBackend(), emulatorBackend("s3"), emulatorBackend("gcs")];
}

// ---- Registration and small helpers ----

type CaseBody = (datastore: Datastore) => Promise<void>;

/**
 * The registrar of one suite on one backend: each call registers a `Deno.test` named
 * `"<suite> [<backend><variant>]: <what>"` with a fresh datastore, cleaned up whatever the outcome.
 */
function suiteCases(suite: string, backend: DatastoreBackend, variant = ""): (what: string, body: CaseBody) => void {
  return (what, body) => {
    Deno.test(`${suite} [${backend.name}${variant}]: ${what}`, async () => {
      const datastore = await backend.open();
      try {
        await body(datastore);
      } finally {
        await datastore.cleanup();
      }
    });
  };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const text = (value: string) => encoder.encode(value);
const decode = (bytes: Uint8Array | null) => bytes === null ? null : decoder.decode(bytes);

/** Binary content unique to one run: a NUL, high bytes, a label and a UUID. */
function sampleBytes(label: string): Uint8Array {
  return new Uint8Array([0x00, 0xff, 0x80, ...text(`${label}:${crypto.randomUUID()}\n`), 0x00]);
}

async function rejection(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Error, `expected an Error, got ${error}`);
    return error as Error & Record<string, unknown>;
  }
  assert.fail("expected a rejection");
}

function escapeRegExp(value: string): string {
  return value.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

// ---- Export suite ----

/** The provider surface swamp calls, the verifier, and the extension entry where the backend ships one. */
export function exportSuite(backend: DatastoreBackend): void {
  const exportTest = suiteCases("export", backend);

  exportTest("the provider has the factories and paths swamp calls", async (ds) => {
    const provider = ds.provider();
    for (const repoDir of ["/home/me/repo", "relative/repo"]) {
      assert.equal(provider.resolveDatastorePath(repoDir), join(repoDir, ".swamp"));
    }
    assert.equal(typeof provider.resolveCachePath, "function");
    assert.equal(provider.resolveCachePath!("/home/me/repo"), undefined, "swamp picks the cache path");

    const lock = provider.createLock("/home/me/repo/.swamp");
    for (const method of ["acquire", "release", "withLock", "inspect", "forceRelease"] as const) {
      assert.equal(typeof lock[method], "function", `lock.${method}`);
    }
    assert.equal(typeof provider.createVerifier().verify, "function");
    const service = provider.createSyncService!("/home/me/repo", await ds.tempDir());
    for (const method of ["pullChanged", "pushChanged", "markDirty"] as const) {
      assert.equal(typeof service[method], "function", `service.${method}`);
    }
  });

  exportTest("capabilities are booleans, and each one claimed comes with the methods it promises", async (ds) => {
    const provider = ds.provider();
    const service = provider.createSyncService!("/repo", await ds.tempDir()) as unknown as Record<string, unknown>;
    const capabilities = provider.capabilities!();
    const promised: Record<keyof DatastoreCapabilities, () => unknown[]> = {
      scopedSync: () => [service.pullChanged],
      lazyHydration: () => [service.hydrateFile, service.fetchContent],
      configRefresh: () => [service.pullChanged],
      controlPlane: () => [service.controlPlaneStore, provider.datastoreControlPlaneStore],
      twoPhaseSync: () => [service.preparePush, service.commitPush],
      previewPush: () => [service.previewPush],
      namespacedSync: () => [service.pullChanged],
    };
    assert.deepEqual(Object.keys(capabilities).sort(), Object.keys(promised).sort());
    for (const [name, on] of Object.entries(capabilities)) {
      assert.equal(typeof on, "boolean", name);
      if (!on) continue;
      for (const method of promised[name as keyof DatastoreCapabilities]()) {
        assert.equal(typeof method, "function", `${name} is claimed but a method it promises is missing`);
      }
    }
    assert.equal(capabilities.controlPlane, true, "marsh implements the control plane");
  });

  exportTest("createSyncService returns a new service on every call, even for one cache", async (ds) => {
    const provider = ds.provider();
    const cacheDir = await ds.tempDir();
    const first = provider.createSyncService!("/repo", cacheDir);
    const second = provider.createSyncService!("/repo", cacheDir);
    assert.notEqual(first, second);
  });

  exportTest("the verifier answers healthy, with the datastore type, a latency and no error", async (ds) => {
    const result = await ds.provider().createVerifier().verify();
    assert.equal(result.healthy, true, result.message);
    assert.equal(typeof result.message, "string");
    assert.equal(typeof result.latencyMs, "number");
    assert.ok(result.latencyMs >= 0);
    assert.equal(result.datastoreType, ds.datastoreType);
    assert.equal(result.details?.errorKind, undefined);
  });

  const entry = backend.entry;
  if (entry === undefined) return;
  // The entry's checks build no datastore: they are plain tests named like the others.
  const entryTest = (what: string, body: (facts: EntryFacts) => void) =>
    Deno.test(`export [${backend.name}]: ${what}`, () => body(entry));

  entryTest("the datastore export has a type of its own, a name and a description", ({ datastore, type }) => {
    assert.match(datastore.type, /^@?[a-z][a-z0-9_-]*\/[a-z0-9][a-z0-9_-]*$/);
    assert.equal(datastore.type, type);
    assert.ok(datastore.name.trim().length > 0);
    assert.ok(datastore.description.trim().length > 0);
  });

  entryTest("the schema accepts every valid config", ({ datastore, validConfigs }) => {
    for (const config of validConfigs) {
      const parsed = datastore.configSchema.safeParse(config);
      assert.ok(parsed.success, `${JSON.stringify(config)}: ${parsed.error?.message}`);
    }
  });

  entryTest("the schema refuses every invalid config, naming the field", ({ datastore, invalidConfigs }) => {
    for (const [why, config] of invalidConfigs) {
      const parsed = datastore.configSchema.safeParse(config);
      assert.ok(!parsed.success, `${why}: ${JSON.stringify(config)} was accepted`);
      const field = Object.keys(config).at(-1) ?? "bucket";
      assert.ok(
        parsed.error.issues.some((issue) => issue.path[0] === field),
        `${why}: no issue names "${field}": ${JSON.stringify(parsed.error.issues)}`,
      );
    }
  });

  entryTest("createProvider refuses an empty or invalid config and builds one offline", (facts) => {
    assert.throws(() => facts.datastore.createProvider({}));
    assert.throws(() => facts.datastore.createProvider({ bucket: "Not_Valid!" }));
    const provider = facts.datastore.createProvider(facts.offlineConfig);
    assert.equal(typeof provider.createLock, "function");
    assert.equal(typeof provider.createSyncService, "function");
  });
}

// ---- Lock suite ----

const GLOBAL_LOCK = ".datastore.lock";

/** A lock that retries quickly (the defaults wait a second between attempts). */
function quickLock(provider: DatastoreProvider, options: LockOptions = {}): DistributedLock {
  return provider.createLock("/repo/.swamp", { retryIntervalMs: 50, maxWaitMs: 10_000, ...options });
}

/** acquire, body, release whatever happens. */
async function holding<T>(lock: DistributedLock, body: () => Promise<T>): Promise<T> {
  await lock.acquire();
  try {
    return await body();
  } finally {
    await lock.release();
  }
}

/** Acquire, release, withLock, waiting, inspect, forceRelease, lockKey and namespace. */
export function lockSuite(backend: DatastoreBackend): void {
  const lockTest = suiteCases("lock", backend);

  lockTest("inspect is null before acquire; a held lock names holder, pid, acquiredAt, ttlMs, nonce", async (ds) => {
    const lock = ds.provider().createLock("/repo/.swamp");
    assert.equal(await lock.inspect(), null);
    const before = Date.now();
    await holding(lock, async () => {
      const info = await lock.inspect();
      assert.ok(info);
      assert.match(info.holder, /.@./, "holder is user@host");
      assert.ok(info.holder.endsWith(`@${info.hostname}`), `${info.holder} is on ${info.hostname}`);
      assert.equal(info.pid, Deno.pid);
      const acquiredAt = Date.parse(info.acquiredAt);
      assert.ok(acquiredAt >= before - 5_000 && acquiredAt <= Date.now() + 5_000, `acquiredAt ${info.acquiredAt}`);
      assert.equal(info.ttlMs, 30_000, "the default ttl");
      assert.ok(typeof info.nonce === "string" && info.nonce.length > 0);
      assert.equal(info.holderUnknown, undefined);
      assert.ok(await ds.rawGet(GLOBAL_LOCK), "the lock object is .datastore.lock");
    });
  });

  lockTest("release deletes the lock object, and releasing again is harmless", async (ds) => {
    const lock = ds.provider().createLock("/repo/.swamp", { ttlMs: 10_000 });
    await lock.acquire();
    assert.equal((await lock.inspect())?.ttlMs, 10_000, "ttlMs is the one asked for");

    await lock.release();
    await lock.release();

    assert.equal(await lock.inspect(), null);
    assert.equal(await ds.rawGet(GLOBAL_LOCK), null);
  });

  lockTest("withLock returns fn's value and releases; when fn throws it releases and rethrows", async (ds) => {
    const lock = ds.provider().createLock("/repo/.swamp");
    const value = await lock.withLock(async () => {
      assert.ok(await lock.inspect(), "held inside fn");
      return { answer: 42 };
    });
    assert.deepEqual(value, { answer: 42 });
    assert.equal(await lock.inspect(), null);

    const thrown = new Error("fn failed");
    await assert.rejects(
      lock.withLock(async () => {
        assert.ok(await lock.inspect());
        throw thrown;
      }),
      (error) => error === thrown,
    );
    assert.equal(await lock.inspect(), null, "released after fn threw");
  });

  lockTest("a second client waits while the lock is held and takes it once it is released", async (ds) => {
    const holder = ds.provider().createLock("/repo/.swamp");
    const waiter = quickLock(ds.provider(ds.store()));
    await holder.acquire();
    const held = (await holder.inspect())!;
    let acquired = false;
    const waiting = waiter.acquire().then(() => void (acquired = true));

    await sleep(400);
    assert.equal(acquired, false, "the waiter must not hold a held lock");
    assert.equal((await holder.inspect())?.nonce, held.nonce, "the holder's lock is untouched");
    await holder.release();
    await within(waiting, 10_000, "the waiter to acquire");

    const taken = await waiter.inspect();
    assert.ok(taken?.nonce);
    assert.notEqual(taken.nonce, held.nonce, "the waiter holds a lock of its own");
    await waiter.release();
    assert.equal(await ds.rawGet(GLOBAL_LOCK), null);
  });

  lockTest("release by a client that does not hold the lock sends nothing and leaves it held", async (ds) => {
    const holder = ds.provider().createLock("/repo/.swamp");
    await holding(holder, async () => {
      const nonce = (await holder.inspect())?.nonce;
      const watched = new WrappedStore(ds.store());
      const stranger = ds.provider(watched).createLock("/repo/.swamp");

      await stranger.release();

      assert.deepEqual(watched.calls, [], "no request");
      assert.equal((await holder.inspect())?.nonce, nonce, "still the holder's lock");
    });
  });

  lockTest("forceRelease by another client: a wrong nonce keeps the lock, the holder's deletes it", async (ds) => {
    const holder = ds.provider().createLock("/repo/.swamp");
    const operator = ds.provider(ds.store()).createLock("/repo/.swamp");
    await holding(holder, async () => {
      const info = await operator.inspect();
      assert.ok(info?.nonce);

      assert.equal(await operator.forceRelease(`${info.nonce}-wrong`), false);
      assert.deepEqual(await operator.inspect(), info, "a wrong nonce keeps the lock as it was");

      assert.equal(await operator.forceRelease(info.nonce), true);
      assert.equal(await operator.inspect(), null);
      assert.equal(await ds.rawGet(GLOBAL_LOCK), null);
      assert.equal(await operator.forceRelease(info.nonce), false, "nothing left to release");
    });
  });

  lockTest("a lockKey names the lock object, and it does not hold up the global lock", async (ds) => {
    const lockKey = "data/aws/ec2/i-1/.lock";
    const model = ds.provider().createLock("/repo/.swamp", { lockKey });
    await holding(model, async () => {
      assert.ok(await ds.rawGet(lockKey), "the lock object is at its lockKey");
      assert.equal(await ds.rawGet(GLOBAL_LOCK), null);
      const global = quickLock(ds.provider(ds.store()), { maxWaitMs: 2_000 });
      await holding(global, async () => assert.ok(await ds.rawGet(GLOBAL_LOCK)));
    });
    assert.equal(await ds.rawGet(lockKey), null);
  });

  lockTest(
    "a namespace puts the global lock and other keys below {ns}/ once, apart from other namespaces",
    async (ds) => {
      const provider = ds.provider();
      const global = provider.createLock("/repo/.swamp", { namespace: "team-a" });
      const model = provider.createLock("/repo/.swamp", { namespace: "team-a", lockKey: "data/m/i-1/.lock" });
      const already = provider.createLock("/repo/.swamp", { namespace: "team-a", lockKey: "team-a/data/m/i-2/.lock" });
      for (const lock of [global, model, already]) await lock.acquire();
      try {
        assert.ok(await ds.rawGet("team-a/.datastore.lock"));
        assert.ok(await ds.rawGet("team-a/data/m/i-1/.lock"));
        assert.ok(await ds.rawGet("team-a/data/m/i-2/.lock"), "a key already below the namespace is kept");
        assert.equal(await ds.rawGet("team-a/team-a/data/m/i-2/.lock"), null, "never namespaced twice");
        assert.equal(await ds.rawGet(GLOBAL_LOCK), null, "not the root lock");
        // Neither the root lock nor another namespace's waits for team-a's.
        for (const options of [{}, { namespace: "team-b" }]) {
          await holding(quickLock(ds.provider(ds.store()), { ...options, maxWaitMs: 2_000 }), () => Promise.resolve());
        }
      } finally {
        for (const lock of [global, model, already]) await lock.release();
      }
      assert.equal(await ds.rawGet("team-a/.datastore.lock"), null);
      assert.equal(await ds.rawGet("team-a/data/m/i-1/.lock"), null);
    },
  );

  lockTest("a lock older than its ttl is taken over, and the new lock is the taker's", async (ds) => {
    const stale = {
      holder: "ghost@gone-host",
      hostname: "gone-host",
      pid: 4242,
      acquiredAt: new Date(Date.now() - 3_600_000).toISOString(),
      ttlMs: 30_000,
      nonce: "stale-nonce-0000",
    };
    await ds.rawPut(GLOBAL_LOCK, text(JSON.stringify(stale)));
    const lock = quickLock(ds.provider(), { maxWaitMs: 5_000 });
    await holding(lock, async () => {
      const info = await lock.inspect();
      assert.equal(info?.pid, Deno.pid);
      assert.notEqual(info?.nonce, stale.nonce);
      const raw = JSON.parse(decode(await ds.rawGet(GLOBAL_LOCK))!);
      assert.equal(raw.nonce, info?.nonce, "the object in the bucket is the taker's");
    });
    assert.equal(await ds.rawGet(GLOBAL_LOCK), null);
  });

  lockTest("inspect reports a lock object that cannot be read with holderUnknown and placeholders", async (ds) => {
    await ds.rawPut(GLOBAL_LOCK, text("<html>not a lock</html>"));
    const info = await ds.provider().createLock("/repo/.swamp").inspect();

    assert.ok(info);
    assert.equal(info.holderUnknown, true);
    assert.equal(info.holder, "unknown");
    assert.equal(info.pid, 0);
    assert.equal(Date.parse(info.acquiredAt), 0, "the epoch");
    assert.equal(info.nonce, undefined);
  });

  lockTest("an unsafe namespace or lockKey is refused, and nothing is written", async (ds) => {
    const watched = new WrappedStore(ds.store());
    const provider = ds.provider(watched);
    for (const options of [{ namespace: "../x" }, { lockKey: "/abs/.lock" }, { lockKey: "a/../../b" }]) {
      const error = await rejection((async () => await provider.createLock("/repo/.swamp", options).acquire())());
      assert.match(`${error.name} ${error.kind} ${error.message}`, /InvalidArgument/, JSON.stringify(options));
    }
    assert.equal(watched.count("put") + watched.count("putBytes"), 0, "no lock object written");
  });
}

// ---- Lock timeout suite ----

/** The error a waiter gets when the lock stays held past `maxWaitMs`. */
export function lockTimeoutSuite(backend: DatastoreBackend): void {
  const timeoutTest = suiteCases("lock timeout", backend);

  /** Hold `options`' lock, let a second client wait 200 ms for it, and answer the waiter's error and the holder. */
  async function timedOut(ds: Datastore, options: LockOptions = {}) {
    const holder = ds.provider().createLock("/repo/.swamp", options);
    await holder.acquire();
    const held = (await holder.inspect())!;
    const waiter = ds.provider(ds.store()).createLock("/repo/.swamp", {
      ...options,
      retryIntervalMs: 50,
      maxWaitMs: 200,
    });
    const error = await rejection(waiter.acquire()).finally(() => holder.release()) as unknown as MarshLockError;
    return { error, held, waiter };
  }

  timeoutTest("a waiter gives up after maxWaitMs with code lock_timeout, lockKey, waitedMs, the holder", async (ds) => {
    const { error, held } = await timedOut(ds);

    assert.equal(error.name, "LockTimeoutError", error.message);
    assert.match(String(error.code), /^lock_timeout$/i);
    assert.equal(error.retryable, true);
    assert.equal(error.lockKey, GLOBAL_LOCK);
    assert.equal(typeof error.waitedMs, "number");
    assert.ok(error.waitedMs! >= 200, `waitedMs ${error.waitedMs}`);
    assert.equal(error.holder?.nonce, held.nonce, "the holder's LockInfo");
    assert.equal(error.holder?.pid, Deno.pid);
    assert.equal(error.holder?.holderUnknown, undefined, "a readable holder is named");
    assert.match(error.message, new RegExp(`\\b${Deno.pid}\\b`), "the message names the holder's pid");
  });

  timeoutTest("the timeout of a lockKey names that key", async (ds) => {
    const { error } = await timedOut(ds, { lockKey: "data/aws/ec2/i-1/.lock" });
    assert.match(String(error.code), /lock_timeout/i);
    assert.equal(error.lockKey, "data/aws/ec2/i-1/.lock");
  });

  timeoutTest("the timeout of a namespaced lock names {ns}/.datastore.lock", async (ds) => {
    const { error } = await timedOut(ds, { namespace: "team-a" });
    assert.match(String(error.code), /lock_timeout/i);
    assert.equal(error.lockKey, "team-a/.datastore.lock");
  });

  timeoutTest("the holder keeps its lock through a timeout, and the waiter acquires once it is free", async (ds) => {
    const holder = ds.provider().createLock("/repo/.swamp");
    await holder.acquire();
    const nonce = (await holder.inspect())?.nonce;
    const waiter = quickLock(ds.provider(ds.store()), { maxWaitMs: 200 });

    const error = await rejection(waiter.acquire());
    assert.equal(error.name, "LockTimeoutError");
    assert.equal((await holder.inspect())?.nonce, nonce, "the timed-out waiter left the holder's lock alone");
    await waiter.release();
    assert.equal((await holder.inspect())?.nonce, nonce, "releasing a lock never acquired leaves it too");

    await holder.release();
    await holding(waiter, async () => assert.notEqual((await waiter.inspect())?.nonce, nonce));
  });

  timeoutTest("a busy lock whose body cannot be read times out with holderUnknown", async (ds) => {
    await ds.rawPut(GLOBAL_LOCK, text("not json at all"));
    // Every write of the waiter finds the lock changed, as if another process kept replacing the unreadable object.
    const racing = new WrappedStore(ds.store(), {
      before(call) {
        if (call.key === GLOBAL_LOCK && (call.method === "putBytes" || call.method === "put")) {
          throw Object.assign(new Error(`${call.key} changed`), { kind: "PreconditionFailed", key: call.key });
        }
      },
    });
    const waiter = quickLock(ds.provider(racing), { maxWaitMs: 200 });

    const error = await rejection(waiter.acquire()) as unknown as MarshLockError;

    assert.equal(error.name, "LockTimeoutError", error.message);
    assert.match(String(error.code), /lock_timeout/i);
    assert.equal(error.lockKey, GLOBAL_LOCK);
    assert.equal(error.holder?.holderUnknown, true);
    assert.ok(racing.count("putBytes") + racing.count("put") > 1, "the waiter tried more than once");
    assert.equal(decode(await ds.rawGet(GLOBAL_LOCK)), "not json at all", "nothing replaced the object");
  });
}

// ---- Sync round-trip suite ----

export interface SyncRoundTripOptions {
  /**
   * Run every case within this namespace: `namespace` is passed to every sync call, objects are expected at
   * `{ns}/{rel}` and cache files at `{cache}/{ns}/{rel}`, and the paths given to `markDirty`, `fetchContent` and
   * `hydrateFile` are cache-relative (they start with `{ns}/`).
   */
  namespace?: string;
}

interface Peer {
  service: DatastoreSyncService;
  dir: string;
}

/** Two services with a cache each on one datastore, and the paths and options of the suite's namespace. */
class Pair {
  constructor(
    readonly ds: Datastore,
    readonly a: Peer,
    readonly b: Peer,
    readonly namespace: string | undefined,
  ) {}

  /** The cache-relative path (and the object key) of `rel` within the namespace. */
  at(rel: string): string {
    return this.namespace === undefined ? rel : `${this.namespace}/${rel}`;
  }

  /** `extra` plus the namespace, for every sync call. */
  opts<T extends DatastoreSyncOptions>(extra?: T): T {
    const options = { ...extra } as T & { namespace?: string };
    if (this.namespace !== undefined) options.namespace = this.namespace;
    return options;
  }

  path(peer: Peer, rel: string): string {
    return join(peer.dir, ...this.at(rel).split("/"));
  }

  async write(peer: Peer, rel: string, bytes: Uint8Array): Promise<void> {
    const path = this.path(peer, rel);
    await Deno.mkdir(join(path, ".."), { recursive: true });
    await Deno.writeFile(path, bytes);
  }

  /** As swamp core does: mark the path, then write it. */
  async markAndWrite(peer: Peer, rel: string, bytes: Uint8Array): Promise<void> {
    await peer.service.markDirty(this.opts<MarkDirtyOptions>({ relPath: this.at(rel) }));
    await this.write(peer, rel, bytes);
  }

  async read(peer: Peer, rel: string): Promise<Uint8Array | null> {
    try {
      return await Deno.readFile(this.path(peer, rel));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      throw error;
    }
  }

  async push(peer: Peer): Promise<number | void> {
    return await peer.service.pushChanged(this.opts());
  }

  async pull(peer: Peer, extra?: DatastoreSyncOptions): Promise<number | void> {
    return await peer.service.pullChanged(this.opts(extra));
  }
}

/** Two fresh services (their own caches) on `ds`, both pulled once; `storeOf` gives a peer a store of its own. */
async function pairOn(
  ds: Datastore,
  namespace: string | undefined,
  storeOf: { a?: MarshStore; b?: MarshStore } = {},
): Promise<Pair> {
  const peer = async (label: string, store?: MarshStore): Promise<Peer> => {
    const dir = await ds.tempDir(label);
    return { dir, service: ds.provider(store ?? ds.store()).createSyncService!("/repo", dir) };
  };
  const pair = new Pair(ds, await peer("a", storeOf.a), await peer("b", storeOf.b), namespace);
  // A service may take its namespace from its first pull: both start synced, with nothing to download.
  assert.equal(await pair.pull(pair.a), 0, "a first pull of an empty datastore downloads nothing");
  assert.equal(await pair.pull(pair.b), 0);
  return pair;
}

/** Two services on one datastore: push, pull, edits, deletions, `fetchContent`, `hydrateFile`. */
export function syncRoundTripSuite(backend: DatastoreBackend, options: SyncRoundTripOptions = {}): void {
  const { namespace } = options;
  const syncTest = suiteCases("sync round trip", backend, namespace === undefined ? "" : `, namespace ${namespace}`);
  const pairOf = (ds: Datastore, stores?: { a?: MarshStore; b?: MarshStore }) => pairOn(ds, namespace, stores);

  syncTest("a path-marked file pushed by one service pulls on the other with identical bytes", async (ds) => {
    const pair = await pairOf(ds);
    const rel = "data/conformance/round-trip/raw";
    const bytes = sampleBytes("round-trip");

    await pair.markAndWrite(pair.a, rel, bytes);
    assert.equal(await pair.push(pair.a), 1);

    assert.deepEqual(await ds.rawGet(pair.at(rel)), bytes, `the object is at ${pair.at(rel)}`);
    assert.equal(await pair.pull(pair.b), 1);
    assert.deepEqual(await pair.read(pair.b, rel), bytes);
  });

  syncTest("a bare markDirty pushes every file written after it, nested folders included", async (ds) => {
    const pair = await pairOf(ds);
    const files = {
      "models/aws/ec2/i-1.yaml": sampleBytes("definition"),
      "data/aws/ec2/i-1/state/1/raw": sampleBytes("content"),
      "workflows/a/b/c/deep.yaml": sampleBytes("deep"),
    };

    await pair.a.service.markDirty(pair.opts());
    for (const [rel, bytes] of Object.entries(files)) await pair.write(pair.a, rel, bytes);
    assert.equal(await pair.push(pair.a), 3);

    assert.equal(await pair.pull(pair.b), 3);
    for (const [rel, bytes] of Object.entries(files)) assert.deepEqual(await pair.read(pair.b, rel), bytes, rel);
  });

  syncTest("an edit pushed by one service replaces the other's copy", async (ds) => {
    const pair = await pairOf(ds);
    const rel = "models/aws/ec2/i-1.yaml";
    await pair.markAndWrite(pair.a, rel, text("version: 1\n"));
    assert.equal(await pair.push(pair.a), 1);
    assert.equal(await pair.pull(pair.b), 1);

    const edited = text("version: 2, a longer body\n");
    await pair.markAndWrite(pair.a, rel, edited);
    assert.equal(await pair.push(pair.a), 1);

    assert.equal(await pair.pull(pair.b), 1);
    assert.deepEqual(await pair.read(pair.b, rel), edited);
  });

  syncTest("a marked deletion removes the object, and the other service's pull removes its copy", async (ds) => {
    const pair = await pairOf(ds);
    const [gone, kept] = ["data/conformance/gone/raw", "data/conformance/kept/raw"];
    const keptBytes = sampleBytes("kept");
    await pair.markAndWrite(pair.a, gone, sampleBytes("gone"));
    await pair.markAndWrite(pair.a, kept, keptBytes);
    assert.equal(await pair.push(pair.a), 2);
    assert.equal(await pair.pull(pair.b), 2);

    await pair.a.service.markDirty(pair.opts<MarkDirtyOptions>({ relPath: pair.at(gone) }));
    await Deno.remove(pair.path(pair.a, gone));
    assert.equal(await pair.push(pair.a), undefined, "a push that only deleted answers unknown, not 0");
    assert.equal(await ds.rawGet(pair.at(gone)), null, "the object is deleted");

    assert.equal(await pair.pull(pair.b), undefined, "a pull that only removed files answers unknown, not 0");
    assert.equal(await pair.read(pair.b, gone), null, "the other cache's copy is removed");
    assert.deepEqual(await pair.read(pair.b, kept), keptBytes);
  });

  syncTest("a pull with nothing new resolves to 0 and leaves the files and their mtimes alone", async (ds) => {
    const pair = await pairOf(ds);
    const rel = "data/conformance/nothing-new/raw";
    const bytes = sampleBytes("nothing-new");
    await pair.markAndWrite(pair.a, rel, bytes);
    assert.equal(await pair.push(pair.a), 1);
    assert.equal(await pair.pull(pair.b), 1);
    const old = new Date("2001-01-01T00:00:00Z");
    for (const peer of [pair.a, pair.b]) await Deno.utime(pair.path(peer, rel), old, old);

    for (const [name, peer] of [["b", pair.b], ["a", pair.a]] as const) {
      assert.equal(await pair.pull(peer), 0, `${name}: nothing changed`);
      assert.deepEqual(await pair.read(peer, rel), bytes, name);
      assert.equal((await Deno.stat(pair.path(peer, rel))).mtime?.getTime(), old.getTime(), `${name}: not rewritten`);
    }
  });

  syncTest(
    "fetchContent answers the bucket's bytes or null, never writes the cache, keeps a local edit",
    async (ds) => {
      const pair = await pairOf(ds);
      const rel = "data/conformance/fetch/raw";
      const remote = sampleBytes("fetch-remote");
      await pair.markAndWrite(pair.a, rel, remote);
      assert.equal(await pair.push(pair.a), 1);
      const fetchContent = (path: string) => pair.b.service.fetchContent!(pair.at(path), pair.opts());

      assert.deepEqual(await fetchContent(rel), remote);
      assert.equal(await pair.read(pair.b, rel), null, "fetchContent does not write into the cache");
      assert.equal(await fetchContent("data/conformance/fetch/missing"), null);

      // A local edit not pushed yet: the bucket's bytes come back, the edit stays and is still pushed.
      assert.equal(await pair.pull(pair.b), 1);
      const local = sampleBytes("fetch-local");
      await pair.markAndWrite(pair.b, rel, local);
      assert.deepEqual(await fetchContent(rel), remote, "the bucket's bytes, not the local file's");
      assert.deepEqual(await pair.read(pair.b, rel), local, "the local edit is untouched");
      assert.equal(await pair.push(pair.b), 1, "the edit is still pending");
      assert.deepEqual(await fetchContent(rel), local);
    },
  );

  syncTest("fetchContent refuses an absolute path or a '..', naming it, before any request", async (ds) => {
    const watched = new WrappedStore(ds.store());
    const pair = await pairOf(ds, { b: watched });
    watched.reset();
    const rel = pair.at("data/conformance/fetch/raw");
    for (const bad of [`/${rel}`, `../${rel}`, pair.at("data/conformance/../../../outside")]) {
      const error = await rejection(pair.b.service.fetchContent!(bad, pair.opts())) as unknown as MarshSyncError;
      assert.equal(error.kind, "InvalidArgument", bad);
      assert.ok(error.message.includes(JSON.stringify(bad)), error.message);
    }
    assert.equal(watched.count("get") + watched.count("getBytes"), 0, "no object was read");
  });

  syncTest("fetchContent rejects, rather than answering null, when the bucket cannot be read", async (ds) => {
    const rel = "data/conformance/fetch-error/raw";
    let fail = false;
    const failing = new WrappedStore(ds.store(), {
      before(call) {
        if (fail && (call.method === "getBytes" || call.method === "get") && call.key.endsWith(rel)) {
          fail = false;
          throw Object.assign(new Error("HTTP 403 Access Denied"), { kind: "Auth", status: 403, key: call.key });
        }
      },
    });
    const pair = await pairOf(ds, { b: failing });
    const bytes = sampleBytes("fetch-error");
    await pair.markAndWrite(pair.a, rel, bytes);
    assert.equal(await pair.push(pair.a), 1);

    fail = true;
    await rejection(pair.b.service.fetchContent!(pair.at(rel), pair.opts()));
    assert.equal(fail, false, "the fault was hit");
    assert.deepEqual(await pair.b.service.fetchContent!(pair.at(rel), pair.opts()), bytes, "the next read works");
  });

  syncTest("hydrateFile after a metadata-only pull puts the content file in place", async (ds) => {
    const pair = await pairOf(ds);
    const [raw, meta] = ["data/aws/ec2/i-1/state/1/raw", "data/aws/ec2/i-1/state/1/meta.yaml"];
    const [rawBytes, metaBytes] = [sampleBytes("raw"), sampleBytes("meta")];
    await pair.a.service.markDirty(pair.opts());
    await pair.write(pair.a, raw, rawBytes);
    await pair.write(pair.a, meta, metaBytes);
    assert.equal(await pair.push(pair.a), 2);

    assert.equal(await pair.pull(pair.b, { metadataOnly: true }), 1);
    assert.deepEqual(await pair.read(pair.b, meta), metaBytes);
    assert.equal(await pair.read(pair.b, raw), null, "the content file is left out");
    assert.ok((await Deno.stat(join(pair.path(pair.b, raw), ".."))).isDirectory, "its folder is created");

    assert.equal(await pair.b.service.hydrateFile!(pair.at(raw), pair.opts()), true);
    assert.deepEqual(await pair.read(pair.b, raw), rawBytes);
    assert.equal(await pair.b.service.hydrateFile!(pair.at(raw), pair.opts()), true, "already in place");
    assert.equal(await pair.b.service.hydrateFile!(pair.at("data/aws/ec2/i-9/state/1/raw"), pair.opts()), false);
    assert.equal(await pair.pull(pair.b), 0, "the hydrated file counts as synced: a full pull downloads nothing");
  });

  if (namespace !== undefined) {
    // Only with a namespace: without one, this case's "outside" file is an ordinary file of the datastore.
    syncTest("a namespaced pull takes nothing from outside its namespace", async (ds) => {
      const pair = await pairOf(ds);
      const outsiderDir = await ds.tempDir("outsider-cache");
      const outside = ds.provider(ds.store()).createSyncService!("/repo", outsiderDir);
      await outside.markDirty();
      await Deno.mkdir(join(outsiderDir, "data", "elsewhere"), { recursive: true });
      await Deno.writeFile(join(outsiderDir, "data", "elsewhere", "raw"), sampleBytes("outside"));
      assert.equal(await outside.pushChanged(), 1, "a file at the root, outside any namespace");
      const rel = "data/conformance/inside/raw";
      await pair.markAndWrite(pair.a, rel, sampleBytes("inside"));
      assert.equal(await pair.push(pair.a), 1);

      assert.equal(await pair.pull(pair.b), 1, "only the namespace's file");
      assert.equal(await Deno.stat(join(pair.b.dir, "data", "elsewhere", "raw")).then(() => true, () => false), false);
    });
  }

  syncTest("a push that fails leaves the file dirty, and the next push uploads it", async (ds) => {
    const rel = "data/conformance/failed-push/raw";
    let fail = false;
    const failing = new WrappedStore(ds.store(), {
      before(call) {
        if (fail && (call.method === "put" || call.method === "putBytes") && call.key.endsWith(rel)) {
          fail = false;
          throw Object.assign(new Error("HTTP 403 Access Denied"), { kind: "Auth", status: 403, key: call.key });
        }
      },
    });
    const pair = await pairOf(ds, { a: failing });
    const bytes = sampleBytes("failed-push");
    await pair.markAndWrite(pair.a, rel, bytes);

    fail = true;
    await rejection(pair.push(pair.a));
    assert.equal(fail, false, "the fault was hit");
    assert.equal(await ds.rawGet(pair.at(rel)), null);

    assert.equal(await pair.push(pair.a), 1);
    assert.equal(await pair.pull(pair.b), 1);
    assert.deepEqual(await pair.read(pair.b, rel), bytes);
  });
}

// ---- Control-plane suite ----

/** `controlPlaneStore()` of a fresh service (its own cache) over `store`, and that cache's directory. */
async function controlOf(ds: Datastore, store?: MarshStore) {
  const dir = await ds.tempDir("control");
  const service = ds.provider(store ?? ds.store()).createSyncService!("/repo", dir);
  assert.equal(typeof service.controlPlaneStore, "function", "the sync service has controlPlaneStore()");
  return { control: service.controlPlaneStore!(), dir };
}

/** `controlPlaneStore()` and `datastoreControlPlaneStore()`. */
export function controlPlaneSuite(backend: DatastoreBackend): void {
  const controlTest = suiteCases("control plane", backend);

  controlTest("put, get and overwrite under _control/, seen at once by another client, past the cache", async (ds) => {
    const { control, dir } = await controlOf(ds);
    const { control: other } = await controlOf(ds);

    assert.equal(await control.get("runs/1"), null);
    await control.put("runs/1", text("one"));
    assert.equal(decode(await control.get("runs/1")), "one");
    await control.put("runs/1", text("two"));
    assert.equal(decode(await control.get("runs/1")), "two", "put overwrites");
    assert.equal(decode(await other.get("runs/1")), "two", "another client sees it at once");
    assert.equal(decode(await ds.rawGet("_control/runs/1")), "two", "the record is _control/runs/1");
    assert.equal(await ds.rawGet("runs/1"), null);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "the cache is not touched");
  });

  controlTest("an empty record reads back empty, not as absent", async (ds) => {
    const { control } = await controlOf(ds);
    await control.put("empty", new Uint8Array());
    const found = await control.get("empty");
    assert.ok(found !== null, "an empty record is a record");
    assert.equal(found.byteLength, 0);
  });

  controlTest("list answers keys under a prefix without _control/, and no look-alike sibling", async (ds) => {
    const { control } = await controlOf(ds);
    for (const key of ["list/a", "list/nested/b", "listing", "other"]) await control.put(key, text(key));
    await ds.rawPut("list/outside", text("not a record"));

    assert.deepEqual((await control.list("list/")).sort(), ["list/a", "list/nested/b"]);
    assert.deepEqual((await control.list("list")).sort(), ["list/a", "list/nested/b", "listing"]);
    assert.deepEqual((await control.list("")).sort(), ["list/a", "list/nested/b", "listing", "other"]);
    assert.deepEqual(await control.list("nothing/"), []);
  });

  controlTest(
    "delete removes a record; deleting a missing one is no error; a deleted key is not listed",
    async (ds) => {
      const { control } = await controlOf(ds);
      await control.put("runs/1", text("one"));
      await control.put("runs/2", text("two"));

      await control.delete("runs/1");
      await control.delete("runs/1");
      await control.delete("never-written");

      assert.equal(await control.get("runs/1"), null);
      assert.equal(await ds.rawGet("_control/runs/1"), null);
      assert.deepEqual(await control.list("runs/"), ["runs/2"]);
    },
  );

  controlTest(
    "putIfAbsent creates once, never replaces a record from any client, and again after delete",
    async (ds) => {
      const { control } = await controlOf(ds);
      const { control: other } = await controlOf(ds);
      const large = "x".repeat(64 * 1024);

      assert.equal(await control.putIfAbsent("claims/once", text(large)), true);
      assert.equal(decode(await other.get("claims/once")), large, "readable in full at once, by another client");
      assert.equal(await control.putIfAbsent("claims/once", text("second")), false);
      assert.equal(await other.putIfAbsent("claims/once", text("third")), false, "another client sees it taken");
      assert.equal(decode(await control.get("claims/once")), large, "a refused create changes nothing");

      await control.put("claims/taken", text("put"));
      assert.equal(await other.putIfAbsent("claims/taken", text("create")), false, "a record written by put is taken");
      assert.equal(decode(await control.get("claims/taken")), "put");

      await control.delete("claims/once");
      assert.equal(await other.putIfAbsent("claims/once", text("again")), true);
      assert.equal(decode(await control.get("claims/once")), "again");
    },
  );

  controlTest("of 8 concurrent creates from 8 clients exactly one wins, and the record is its", async (ds) => {
    const creators = await Promise.all(Array.from({ length: 8 }, () => controlOf(ds)));
    const answers = await Promise.all(
      creators.map(({ control }, i) => control.putIfAbsent("claims/race", text(`creator ${i}`))),
    );

    assert.equal(answers.filter((won) => won).length, 1, `answers: ${answers}`);
    assert.equal(decode(await ds.rawGet("_control/claims/race")), `creator ${answers.indexOf(true)}`);
  });

  controlTest("a create whose answer was lost still wins over a create that came after it", async (ds) => {
    const { control: late } = await controlOf(ds);
    let lateAnswer: boolean | undefined;
    const lossy = new WrappedStore(ds.store(), {
      async after(call, nth) {
        if (call.method !== "putBytes" || nth !== 1) return;
        // The early create landed; the late one comes before the early one hears anything, then its answer is lost.
        lateAnswer = await late.putIfAbsent("claims/lost", text("late"));
        throw Object.assign(new Error("connection reset"), { kind: "Transient" });
      },
    });
    const { control: early } = await controlOf(ds, lossy);

    assert.equal(await early.putIfAbsent("claims/lost", text("early")), true);
    assert.equal(lateAnswer, false);
    assert.equal(lossy.count("putBytes"), 2, "the lost create was retried");
    assert.equal(decode(await ds.rawGet("_control/claims/lost")), "early");
  });

  controlTest("a bad key is refused with InvalidKey naming it, before any request", async (ds) => {
    const watched = new WrappedStore(ds.store());
    const { control } = await controlOf(ds, watched);
    for (const key of ["../escape", "/absolute", "a//b", "a/./b", "a\\b", ""]) {
      const error = await rejection(control.putIfAbsent(key, text("x"))) as unknown as MarshControlError;
      assert.equal(error.name, "MarshError");
      assert.equal(error.kind, "InvalidKey", key);
      assert.equal(error.key, key);
      assert.match(error.message, new RegExp(escapeRegExp(JSON.stringify(key))));
    }
    for (const call of [control.get("a/../b"), control.put("..", text("x")), control.delete("/x")]) {
      assert.equal((await rejection(call)).kind, "InvalidKey");
    }
    assert.deepEqual(watched.calls, []);
  });

  controlTest("the datastore store reads _control/<key> at the root, and no namespace's records", async (ds) => {
    const { control } = await controlOf(ds);
    await control.put("signals/s", text("from a service"));
    await ds.rawPut("_control/datastore-format", text('{"format":2}'));
    await ds.rawPut("team-a/_control/only-in-a", text("namespaced"));

    const root = ds.provider().datastoreControlPlaneStore!();
    assert.equal(decode(await root.get("signals/s")), "from a service");
    assert.deepEqual(JSON.parse(decode(await root.get("datastore-format"))!), { format: 2 });
    assert.equal(await root.get("missing"), null);
    assert.equal(await root.get("only-in-a"), null, "a namespace's record is not the root's");
    assert.equal((await rejection(root.get("../x"))).kind, "InvalidKey");
  });

  controlTest("the datastore store honours its abort signal", async (ds) => {
    const watched = new WrappedStore(ds.store());
    const root = ds.provider(watched).datastoreControlPlaneStore!();

    const error = await rejection(root.get("datastore-format", { signal: AbortSignal.abort() }));
    assert.equal(error.name, "AbortError");
    assert.deepEqual(watched.calls, [], "no request once aborted");

    const seen: (AbortSignal | undefined)[] = [];
    watched.hooks = { before: (_call, _nth, options) => void seen.push(options?.signal) };
    const controller = new AbortController();
    assert.equal(await root.get("nothing", { signal: controller.signal }), null);
    assert.deepEqual(seen, [controller.signal], "the signal reaches the request");
  });
}
