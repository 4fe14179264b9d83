// The wasm core loads through js/wasm.ts and drives async JS host objects through its real exports.
import assert from "node:assert/strict";
import { DenoCache } from "../../js/cache.ts";
import { makeEnv } from "../../js/env.ts";
import { MemoryStore } from "../../js/memory_store.ts";
import { readIndex } from "./support/index_reader.ts";
import {
  type CallOptions,
  type Conflict,
  type ConflictKind,
  ControlPlaneStore,
  type ExpectedDownload,
  type FetchedBody,
  type FetchedBytes,
  type FileStat,
  type HashedFile,
  type InternalStream,
  LockClient,
  type LockClientOptions,
  type LockIdentity,
  type LockInfo,
  type MarshCache,
  type MarshControlError,
  type MarshEnv,
  type MarshError,
  type MarshErrorKind,
  type MarshHostError,
  type MarshLockError,
  type MarshStore,
  type MarshSyncError,
  type MigrateIndexResult,
  type NotModified,
  type ObjectMeta,
  type PackedWalk,
  type Precondition,
  type PreparedUpload,
  type ProgressEvent,
  type PullOptions,
  type PullReport,
  type PushManifest,
  type PushPreview,
  type PushReport,
  type ResolveReport,
  type SyncOptions,
  SyncService,
  type SyncStatus,
  type UploadBody,
  version,
  type VersionToken,
  type WalkItem,
} from "../../js/wasm.ts";

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

/** The format-1 index: what a bucket holds when its index was written in format 1. */
const INDEX = ".datastore-index.json";
/** The commit record of format 2, the layout a new bucket starts in: its token is what a pull may record. */
const META = "_index/_meta.json";

/** A bucket's objects as the index reader of the tests reads them. */
function peekOf(store: MemoryStore) {
  return (key: string) => Promise.resolve(store.peek(key) ?? null);
}

/** `getBytes` of a format-1 bucket holding `index`: every other key (format 2's record, the marker) is not found. */
function monolithOnly(index: Uint8Array): MarshStore["getBytes"] {
  return (key) =>
    key === INDEX
      ? Promise.resolve({ bytes: index.slice(), token: "t1", size: index.byteLength })
      : Promise.reject({ kind: "NotFound", message: `no ${key}` });
}

/** An empty cache directory that forgets what is written to it: enough for operations that fail at the store. */
function emptyCache(): MarshCache {
  return {
    stat: () => Promise.resolve(null),
    walk: () => Promise.resolve([]),
    walkUnder: () => Promise.resolve([]),
    removeFile: () => Promise.resolve(),
    readInternal: () => Promise.resolve(null),
    writeInternal: () => Promise.resolve(),
    listInternal: () => Promise.resolve([]),
    removeInternal: () => Promise.resolve(),
    createDir: () => Promise.resolve(),
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
  assert.deepEqual(asked, [META], "format 2's commit record is asked first, and it answered");
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

Deno.test("a store throwing NotFound for a file leaves it in flux: the pull succeeds, unverified, without it", async () => {
  const store = storeWith({
    getBytes: monolithOnly(oneFileIndex("data/missing.json")),
    get: async (key) => {
      await pause();
      throw Object.assign(new Error(`no such object ${key}`), { kind: "NotFound", status: 404 });
    },
  });

  const report = await new SyncService(store, emptyCache(), undefined).pullChanged(makeEnv());

  // An object gone under its entry is another writer's commit in flight: taken by a later pull, never a failure.
  assert.deepEqual([report.downloaded, report.inFlux, report.verified], [0, ["data/missing.json"], false]);
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

// ---------------------------------------------------------------------------------------------------------------------
// Every shape js/host.ts declares, round-tripped against the Rust side: what a host hands in is read field by field
// (each field's effect is observed), and what Rust hands out has exactly the declared fields.

/**
 * The fields of `T`, each marked "optional" when `T` may lack it. A literal of this type must list every field of `T`,
 * no other, each marked right: the compiler checks it, so a field added, renamed or made optional in host.ts breaks
 * this file until the test says what the Rust side does with it.
 */
type Fields<T> = Required<{ [K in keyof T]: undefined extends T[K] ? "optional" : "required" }>;

/** The fields of one host.ts type, carrying the type along so a check of a value can narrow it. */
interface Shape<T> {
  readonly fields: Fields<T>;
}

function shape<T>(fields: Fields<T>): Shape<T> {
  return { fields };
}

/** `value` has every required field of `shape` and no field it does not declare (an optional one may be absent). */
function assertFields<T>(value: unknown, shape: Shape<T>, what: string): asserts value is T {
  assert.ok(typeof value === "object" && value !== null, `${what}: not an object: ${String(value)}`);
  const declared: Record<string, string> = shape.fields;
  for (const name of Object.getOwnPropertyNames(value)) {
    assert.ok(name in declared, `${what}: field \`${name}\` is not declared in js/host.ts`);
  }
  for (const [name, presence] of Object.entries(declared)) {
    if (presence === "required") assert.ok(name in value, `${what}: required field \`${name}\` is missing`);
  }
}

const ERROR_FIELDS = { name: "required", message: "required", stack: "optional", cause: "optional" } as const;
const CALL_OPTIONS = shape<CallOptions>({ signal: "optional" });
const OBJECT_META = shape<ObjectMeta>({ token: "required", size: "required" });
const FETCHED_BODY = shape<FetchedBody>({ body: "required", token: "required", size: "required" });
const FETCHED_BYTES = shape<FetchedBytes>({ bytes: "required", token: "required", size: "required" });
const NOT_MODIFIED = shape<NotModified>({ notModified: "required" });
const IF_MATCH = shape<Extract<Precondition, { kind: "ifMatch" }>>({ kind: "required", token: "required" });
const NO_TOKEN = shape<Extract<Precondition, { kind: "ifAbsent" | "none" }>>({ kind: "required" });
const UPLOAD_BODY = shape<UploadBody>({ size: "required", open: "required" });
const FILE_STAT = shape<FileStat>({ size: "required", mtimeMs: "required" });
const HASHED_FILE = shape<HashedFile>({ size: "required", mtimeMs: "required", sha256: "required" });
const PREPARED_UPLOAD = shape<PreparedUpload>({ ...HASHED_FILE.fields, body: "required" });
const EXPECTED_DOWNLOAD = shape<ExpectedDownload>({ size: "required", sha256: "optional", replaces: "optional" });
const PACKED_WALK = shape<PackedWalk>({
  files: "required",
  sizes: "required",
  mtimes: "required",
  symlinks: "required",
  vanished: "required",
});
const INTERNAL_STREAM = shape<InternalStream>({ size: "required", stream: "required" });
const PLANNED = shape<Extract<ProgressEvent, { kind: "planned" }>>({
  kind: "required",
  operation: "required",
  files: "required",
  bytes: "required",
});
const TRANSFERRED = shape<Extract<ProgressEvent, { kind: "transferred" }>>({
  kind: "required",
  operation: "required",
  rel: "required",
  bytes: "required",
});
const CONFLICT = shape<Conflict>({ rel: "required", kind: "required" });
const PULL_REPORT = shape<PullReport>({
  downloaded: "required",
  removed: "required",
  fastPath: "required",
  verified: "required",
  keptLocal: "required",
  pendingDeletions: "required",
  inFlux: "required",
  conflicts: "required",
  indexEntries: "required",
  planned: "required",
  skipped: "required",
});
const PUSH_REPORT = shape<PushReport>({
  uploaded: "required",
  deleted: "required",
  fastPath: "required",
  indexWritten: "required",
  scrubbed: "required",
  symlinks: "required",
  vanished: "required",
  conflicts: "required",
  remoteNewer: "required",
  verified: "required",
  clean: "required",
  walkReused: "required",
  markedOnly: "required",
  marksCleared: "required",
  planned: "required",
});
const SYNC_STATUS = shape<SyncStatus>({
  sidecar: "required",
  verifiedToken: "required",
  verifiedAt: "required",
  dirtyGeneration: "required",
  locallyDirty: "required",
  markedPaths: "required",
  pullFastPath: "required",
  remoteFormat: "required",
  remoteIndexSize: "required",
  conflicts: "required",
});
const RESOLVE_REPORT = shape<ResolveReport>({
  rel: "required",
  kept: "required",
  downloaded: "required",
  removedLocal: "required",
  markedForPush: "required",
});
const PUSH_PREVIEW = shape<PushPreview>({
  total: "required",
  new: "required",
  changed: "required",
  deleted: "required",
});
const PUSH_MANIFEST = shape<PushManifest>({
  marsh: "required",
  namespace: "required",
  uploaded: "required",
  deleted: "required",
  conflicts: "required",
  body: "required",
});
const MIGRATED = shape<MigrateIndexResult>({
  version: "required",
  partitions: "required",
  commitSeq: "required",
  converted: "required",
});
const LOCK_INFO = shape<LockInfo>({
  holder: "required",
  hostname: "required",
  pid: "required",
  acquiredAt: "required",
  ttlMs: "required",
  nonce: "optional",
  holderUnknown: "optional",
});
const MARSH_ERROR = shape<MarshError>({ ...ERROR_FIELDS, kind: "required" });
const SYNC_ERROR = shape<MarshSyncError>({
  ...ERROR_FIELDS,
  kind: "required",
  causeKind: "optional",
  status: "optional",
  failures: "optional",
  transferred: "optional",
  conflicts: "optional",
  count: "optional",
  limit: "optional",
});
const FILE_FAILURE = shape<NonNullable<MarshSyncError["failures"]>[number]>({
  rel: "required",
  kind: "required",
  message: "required",
  status: "optional",
});
const CONTROL_ERROR = shape<MarshControlError>({
  ...ERROR_FIELDS,
  kind: "required",
  key: "optional",
  status: "optional",
});
const LOCK_ERROR = shape<MarshLockError>({
  ...ERROR_FIELDS,
  kind: "required",
  code: "optional",
  retryable: "optional",
  lockKey: "optional",
  holder: "optional",
  waitedMs: "optional",
});
/** Every error kind, checked complete by the compiler. */
const ERROR_KINDS: Record<MarshErrorKind, true> = {
  NotFound: true,
  PreconditionFailed: true,
  Transient: true,
  Auth: true,
  Http: true,
  Aborted: true,
  InvalidKey: true,
  Mismatch: true,
  LocalChanged: true,
  Io: true,
};

/** Which test round-trips each shape host.ts exports; the last test checks that none is left out. */
const covered = new Map<string, string>();

function shapeTest(name: string, shapes: string[], fn: () => Promise<void> | void): void {
  for (const shape of shapes) covered.set(shape, name);
  Deno.test(`host shapes: ${name}`, fn);
}

interface Call {
  method: string;
  args: unknown[];
  answer?: unknown;
}

/**
 * `target` with each method call recorded (its arguments, then its answer) and the methods in `hidden` missing, as if
 * the host did not have them. Methods run on `target` itself, so private fields work.
 */
function recorded<T extends object>(target: T, calls: Call[], hidden: string[] = []): T {
  return new Proxy(target, {
    get(object, property) {
      if (hidden.includes(String(property))) return undefined;
      const value = Reflect.get(object, property, object);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        const call: Call = { method: String(property), args };
        calls.push(call);
        return Promise.resolve(value.apply(object, args)).then((answer) => {
          call.answer = answer;
          return answer;
        });
      };
    },
  });
}

function callsOf(calls: Call[], method: string, key?: string): Call[] {
  return calls.filter((call) => call.method === method && (key === undefined || call.args[0] === key));
}

function only(calls: Call[], method: string, key?: string): Call {
  const found = callsOf(calls, method, key);
  assert.equal(found.length, 1, `one ${method}(${key ?? ""}) call, got ${found.length}`);
  return found[0];
}

/** A host env recording what Rust hands it: sleeps (resolved at once), trace lines and progress events. */
function recordingEnv(signal?: AbortSignal) {
  const seen = { sleeps: [] as number[], traces: [] as string[], progress: [] as ProgressEvent[] };
  const env: MarshEnv = {
    sleep(ms) {
      seen.sleeps.push(ms);
      return Promise.resolve();
    },
    signal,
    trace(line) {
      seen.traces.push(line);
    },
    progress(event) {
      seen.progress.push(event);
    },
  };
  return { env, ...seen };
}

const encoder = new TextEncoder();

async function withDirs(count: number, fn: (dirs: string[]) => Promise<void>): Promise<void> {
  const dirs = await Promise.all(Array.from({ length: count }, () => Deno.makeTempDir()));
  try {
    await fn(dirs);
  } finally {
    for (const dir of dirs) await Deno.remove(dir, { recursive: true });
  }
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

shapeTest(
  "a push then a pull: every store and cache call, its arguments and answers, and both reports",
  [
    "VersionToken",
    "Precondition",
    "Body",
    "DownloadBody",
    "UploadBody",
    "CallOptions",
    "NotModified",
    "FetchedBody",
    "FetchedBytes",
    "MarshStore",
    "FileStat",
    "Sha256Hex",
    "PackedWalk",
    "InternalStream",
    "PreparedUpload",
    "HashedFile",
    "ExpectedDownload",
    "MarshCache",
    "ProgressEvent",
    "PullReport",
    "PushReport",
  ],
  () =>
    withDirs(2, async ([here, there]) => {
      const calls: Call[] = [];
      const bucket = new MemoryStore();
      const store = recorded(bucket, calls);
      const controller = new AbortController();
      const { env, progress, traces } = recordingEnv(controller.signal);
      const pusher = new SyncService(store, recorded(new DenoCache(here), calls), undefined);
      await pusher.markDirty(env);
      await Deno.writeTextFile(`${here}/a.json`, "hello");
      await Deno.mkdir(`${here}/d`);
      await Deno.writeTextFile(`${here}/d/b.json`, "world!");
      await Deno.symlink("a.json", `${here}/link`);

      const pushed = await pusher.pushChanged(env);

      assertFields(pushed, PUSH_REPORT, "PushReport");
      assert.deepEqual(pushed, {
        uploaded: 2,
        deleted: [],
        fastPath: false,
        indexWritten: true,
        scrubbed: [],
        symlinks: ["link"],
        vanished: [],
        conflicts: [],
        remoteNewer: [],
        verified: true,
        clean: true,
        walkReused: false,
        markedOnly: false,
        marksCleared: 0,
        planned: [],
      });
      // CallOptions: every call of an operation carries its signal as a last argument.
      for (const call of calls) {
        const options = call.args[call.args.length - 1];
        assertFields(options, CALL_OPTIONS, `${call.method}'s options`);
        assert.equal(options.signal, controller.signal, call.method);
      }
      // The walk is read from walkPacked (preferred) and the internal files from readInternalStream.
      assertFields(only(calls, "walkPacked").answer, PACKED_WALK, "PackedWalk");
      for (const call of callsOf(calls, "readInternalStream").filter((call) => call.answer !== null)) {
        assertFields(call.answer, INTERNAL_STREAM, "InternalStream");
      }
      assert.equal(callsOf(calls, "walk").length + callsOf(calls, "readInternal").length, 0);
      // PreparedUpload: its body goes to put untouched, its hash and size into the index entry.
      const index = await readIndex(peekOf(bucket));
      assert.equal(index.format, 2, "a new bucket is written in format 2");
      for (const [rel, text] of [["a.json", "hello"], ["d/b.json", "world!"]]) {
        const prepared = only(calls, "prepareUpload", rel).answer;
        assertFields(prepared, PREPARED_UPLOAD, "PreparedUpload");
        assertFields(prepared.body, UPLOAD_BODY, "UploadBody");
        const put = only(calls, "put", rel);
        assert.equal(put.args[1], prepared.body, "the upload body is handed over untouched");
        assertFields(put.args[2], NO_TOKEN, "Precondition");
        assert.deepEqual(put.args[2], { kind: "ifAbsent" }, "a new file is created only where no object is");
        assert.deepEqual(index.entries[rel].sha256, prepared.sha256);
        assert.equal(prepared.sha256, await sha256Hex(text));
        assert.equal(index.entries[rel].size, prepared.size);
        // FileStat: the file is stat'ed again after the upload (same stat: recorded as unchanged).
        const stat = only(calls, "stat", rel).answer;
        assertFields(stat, FILE_STAT, "FileStat");
        assert.deepEqual(stat, { size: prepared.size, mtimeMs: prepared.mtimeMs });
      }
      // The first commit record is create-only; its token becomes the verified token.
      assert.equal(only(calls, "getBytes", META).args[1], undefined, "no ifNoneMatch without a verified token");
      const created = only(calls, "putBytes", META);
      assertFields(created.args[2], NO_TOKEN, "Precondition");
      assert.deepEqual(created.args[2], { kind: "ifAbsent" });
      const firstToken = (created.answer as { token: VersionToken }).token;
      assert.equal(firstToken, bucket.peek(META)!.token);
      // ProgressEvent: the plan, then one event per file.
      const [planned, ...moved] = progress;
      assertFields(planned, PLANNED, "planned event");
      assert.deepEqual(planned, { kind: "planned", operation: "push", files: 2, bytes: 11 });
      for (const event of moved) assertFields(event, TRANSFERRED, "transferred event");
      assert.deepEqual(moved.map((event) => event.kind === "transferred" && [event.rel, event.bytes]).sort(), [
        ["a.json", 5],
        ["d/b.json", 6],
      ]);
      assert.ok(traces.some((line) => line.startsWith("marsh push:")), traces.join("\n"));

      // A second push replaces exactly the index version it read.
      calls.length = 0;
      await pusher.markDirty(env);
      await Deno.writeTextFile(`${here}/a.json`, "hello again");
      await pusher.pushChanged(env);
      const replaced = only(calls, "putBytes", META);
      assertFields(replaced.args[2], IF_MATCH, "Precondition");
      assert.deepEqual(replaced.args[2], { kind: "ifMatch", token: firstToken });
      const token = (replaced.answer as { token: VersionToken }).token;

      // A pull elsewhere: FetchedBytes for the index, FetchedBody per file, its body handed to download untouched.
      calls.length = 0;
      const puller = new SyncService(store, recorded(new DenoCache(there), calls), undefined);
      const pulled = await puller.pullChanged(env);

      assertFields(pulled, PULL_REPORT, "PullReport");
      assert.deepEqual(pulled, {
        downloaded: 2,
        removed: [],
        fastPath: false,
        verified: true,
        keptLocal: [],
        pendingDeletions: [],
        inFlux: [],
        conflicts: [],
        indexEntries: 2,
        planned: [],
        skipped: [],
      });
      assertFields(only(calls, "getBytes", META).answer, FETCHED_BYTES, "FetchedBytes");
      for (const [rel, text] of [["a.json", "hello again"], ["d/b.json", "world!"]]) {
        const got = only(calls, "get", rel);
        assert.equal(got.args[1], undefined, "a file GET is unconditional");
        assertFields(got.answer, FETCHED_BODY, "FetchedBody");
        const download = only(calls, "download", rel);
        assert.equal(download.args[1], got.answer.body, "the download body is handed over untouched");
        assert.ok(got.answer.body instanceof ReadableStream);
        assertFields(download.args[2], EXPECTED_DOWNLOAD, "ExpectedDownload");
        // `replaces: null`: a file new here may only land where there is none.
        assert.deepEqual(download.args[2], { size: text.length, sha256: await sha256Hex(text), replaces: null });
        assertFields(download.answer, HASHED_FILE, "HashedFile");
        assert.equal(download.answer.sha256, await sha256Hex(text));
        assert.equal(await Deno.readTextFile(`${there}/${rel}`), text);
      }

      // NotModified: the next pull sends the verified token and takes the fast path on the answer.
      calls.length = 0;
      const again = await puller.pullChanged(env);
      const conditional = only(calls, "getBytes", META);
      assert.equal(conditional.args[1], token);
      assertFields(conditional.answer, NOT_MODIFIED, "NotModified");
      assert.equal(again.fastPath, true);

      // ExpectedDownload without its optional sha256: an index entry with no hash (as older writers leave them, in a
      // format-1 bucket), over a local file of that name (`replaces`: the stat the pull saw).
      calls.length = 0;
      const older = new MemoryStore();
      older.seed("a.json", encoder.encode("abc"));
      older.seed(INDEX, oneFileIndex("a.json"));
      const before = (await new DenoCache(there).stat("a.json"))!;
      await new SyncService(older, recorded(new DenoCache(there), calls), undefined).pullChanged(env);
      const unhashed = only(calls, "download", "a.json");
      assertFields(unhashed.args[2], EXPECTED_DOWNLOAD, "ExpectedDownload");
      assert.deepEqual(unhashed.args[2], { size: 3, replaces: before });
    }),
);

shapeTest("a walk as items and internal files as bytes, when the cache lacks the packed and streamed forms", [
  "WalkItem",
], () =>
  withDirs(1, async ([dir]) => {
    const calls: Call[] = [];
    const base = new DenoCache(dir);
    // A file that vanishes between listing and stat, as a real walk may report it.
    const walk = base.walk.bind(base);
    base.walk = async (options) => [...await walk(options), { kind: "vanished", rel: "gone.json" }];
    const cache = recorded(base, calls, ["walkPacked", "readInternalStream"]);
    const service = new SyncService(new MemoryStore(), cache, undefined);
    await service.markDirty(makeEnv());
    await Deno.writeTextFile(`${dir}/a.json`, "hello");
    await Deno.symlink("a.json", `${dir}/link`);

    const pushed = await service.pushChanged(makeEnv());

    const items = only(calls, "walk").answer as WalkItem[];
    const fileItem = shape<Extract<WalkItem, { kind: "file" }>>({
      kind: "required",
      rel: "required",
      size: "required",
      mtimeMs: "required",
    });
    const otherItem = shape<Extract<WalkItem, { kind: "symlink" | "vanished" }>>({
      kind: "required",
      rel: "required",
    });
    for (const item of items) {
      if (item.kind === "file") assertFields(item, fileItem, "WalkItem file");
      else assertFields(item, otherItem, `WalkItem ${item.kind}`);
    }
    assert.deepEqual(items.map((item) => item.kind).sort(), ["file", "file", "symlink", "vanished"]);
    assert.equal(pushed.uploaded, 1);
    assert.deepEqual(pushed.symlinks, ["link"]);
    assert.deepEqual(pushed.vanished, ["gone.json"]);
    assert.ok(callsOf(calls, "readInternal").length > 0);
    assert.equal(callsOf(calls, "walkPacked").length + callsOf(calls, "readInternalStream").length, 0);
  }));

/** An index of `files` (rel → content) with sizes and hashes, as a marsh push writes it. */
async function indexOf(files: Record<string, string>): Promise<Uint8Array> {
  const entries: Record<string, unknown> = {};
  for (const [rel, text] of Object.entries(files)) {
    entries[rel] = { size: text.length, lastModified: "2026-01-01T00:00:00.000Z", sha256: await sha256Hex(text) };
  }
  return encoder.encode(JSON.stringify({ version: 1, entries }));
}

/** A bucket holding `files` and their index. */
async function bucketWith(files: Record<string, string>, options?: ConstructorParameters<typeof MemoryStore>[0]) {
  const store = new MemoryStore(options);
  for (const [rel, text] of Object.entries(files)) store.seed(rel, encoder.encode(text));
  store.seed(INDEX, await indexOf(files));
  return store;
}

shapeTest("status before any sync, against no index, and after a sync: SyncStatus, nulls both ways", [
  "SyncStatus",
  "ObjectMeta",
], () =>
  withDirs(3, async ([fresh, synced, unsynced]) => {
    const empty = new SyncService(new MemoryStore(), new DenoCache(fresh), undefined);
    const none = await empty.status(makeEnv());
    assertFields(none, SYNC_STATUS, "SyncStatus");
    assert.deepEqual(none, {
      sidecar: "missing",
      verifiedToken: null,
      verifiedAt: null,
      dirtyGeneration: 0,
      locallyDirty: true,
      markedPaths: 0,
      pullFastPath: false,
      remoteFormat: null,
      remoteIndexSize: null,
      conflicts: [],
    });

    // After a push, the cache is recorded clean at the marker of its one markDirty, and verified at the index it wrote.
    const store = new MemoryStore();
    const service = new SyncService(store, new DenoCache(synced), undefined);
    await service.markDirty(makeEnv());
    await Deno.writeTextFile(`${synced}/a.json`, "hello");
    await service.pushChanged(makeEnv());
    const calls: Call[] = [];
    const after = await new SyncService(recorded(store, calls), new DenoCache(synced), undefined).status(makeEnv());
    // ObjectMeta: the one HEAD of the index, which tells the pull fast path and the size.
    const head = only(calls, "head", META).answer;
    assertFields(head, OBJECT_META, "ObjectMeta");
    assert.deepEqual(head, { token: after.verifiedToken, size: after.remoteIndexSize });
    assertFields(after, SYNC_STATUS, "SyncStatus");
    assert.deepEqual(after, {
      sidecar: "marsh v2",
      verifiedToken: store.peek(META)!.token,
      verifiedAt: after.verifiedAt,
      dirtyGeneration: 1,
      locallyDirty: false,
      markedPaths: 0,
      pullFastPath: true,
      remoteFormat: 2,
      remoteIndexSize: store.peek(META)!.bytes.byteLength,
      conflicts: [],
    });
    assert.ok(Math.abs(Date.parse(after.verifiedAt!) - Date.now()) < 60_000, after.verifiedAt!);

    const never = await new SyncService(store, new DenoCache(unsynced), undefined).status(makeEnv());
    assert.equal(never.pullFastPath, null, "nothing verified yet");
    assert.equal(never.remoteIndexSize, store.peek(META)!.bytes.byteLength);
  }));

shapeTest("options and env: concurrency, dryRun, casAttempts; sleep, and an env with nothing but sleep", [
  "SyncOptions",
  "MarshEnv",
], () =>
  withDirs(5, async ([one, three, planned, contended, bare]) => {
    const files = { "a.json": "a", "b.json": "bb", "c.json": "ccc", "d.json": "dddd" };
    let inFlight = 0;
    let peak = 0;
    const store = await bucketWith(files, {
      async beforeCall(method) {
        if (method !== "get") return;
        peak = Math.max(peak, ++inFlight);
        await pause();
        inFlight--;
      },
    });
    const sync: SyncOptions = { concurrency: 1 };
    await new SyncService(store, new DenoCache(one), sync).pullChanged(makeEnv());
    assert.equal(peak, 1, "concurrency 1");
    peak = 0;
    await new SyncService(store, new DenoCache(three), { concurrency: 3 }).pullChanged(makeEnv());
    assert.equal(peak, 3, "concurrency 3");

    const calls: Call[] = [];
    const dry = await new SyncService(store, recorded(new DenoCache(planned), calls), { dryRun: true }).pullChanged(
      makeEnv(),
    );
    assert.deepEqual(dry.planned, Object.keys(files));
    assert.equal(dry.downloaded, 0);
    assert.equal(
      callsOf(calls, "download").length + callsOf(calls, "writeInternal").length,
      0,
      "a dry run writes nothing",
    );

    const writer = new SyncService(store, new DenoCache(contended), { casAttempts: 2 });
    await writer.markDirty(makeEnv());
    await Deno.writeTextFile(`${contended}/e.json`, "e");
    store.failNext("putBytes", "PreconditionFailed");
    store.failNext("putBytes", "PreconditionFailed");
    const error = await writer.pushChanged(makeEnv()).then(() => assert.fail("the push should fail"), (e) => e);
    assertFields(error, SYNC_ERROR, "MarshSyncError");
    assert.equal(error.kind, "IndexContended");
    assert.match(error.message, /after 2 compare-and-swap attempts/);

    // sleep: a transient failure is retried after the env's sleep.
    const { env, sleeps } = recordingEnv();
    store.failNext("getBytes", "Transient");
    await new SyncService(store, new DenoCache(one), undefined).pullChanged(env);
    assert.equal(sleeps.length, 1);
    assert.ok(sleeps[0] > 0, `slept ${sleeps[0]} ms`);

    // No signal, trace or progress: calls carry no options argument, and nothing else is asked of the env.
    const bareCalls: Call[] = [];
    const bareEnv: MarshEnv = { sleep: () => Promise.resolve() };
    const report = await new SyncService(recorded(store, bareCalls), new DenoCache(bare), undefined).pullChanged(
      bareEnv,
    );
    assert.equal(report.downloaded, 4);
    assert.deepEqual(only(bareCalls, "getBytes", META).args, [META, undefined]);
  }));

shapeTest(
  "two-phase push in a namespace: PushPreview, PushManifest, and the namespace's keys and cache paths",
  ["PushPreview", "PushManifest"],
  () =>
    withDirs(2, async ([here, there]) => {
      const bucket = new MemoryStore();
      const calls: Call[] = [];
      const env = (): MarshEnv => ({ ...makeEnv(), namespace: "team-a" });
      const a = new SyncService(recorded(bucket, calls), new DenoCache(here), undefined);
      const b = new SyncService(bucket, new DenoCache(there), { namespace: "team-a" });
      await a.markDirty(env(), "team-a/x.json");
      await Deno.mkdir(`${here}/team-a`);
      await Deno.writeTextFile(`${here}/team-a/x.json`, "x");

      const preview = await a.previewPush(env());
      assertFields(preview, PUSH_PREVIEW, "PushPreview");
      assert.deepEqual(preview, { total: 1, new: 1, changed: 0, deleted: 0 });
      assert.equal(callsOf(calls, "put").length + callsOf(calls, "putBytes").length, 0, "a preview writes nothing");

      const manifest = await a.preparePush(env());
      assertFields(manifest, PUSH_MANIFEST, "PushManifest");
      assert.deepEqual([manifest.marsh, manifest.namespace, manifest.uploaded, manifest.deleted], [1, "team-a", 1, 0]);
      assert.deepEqual(only(calls, "put").args[0], "team-a/x.json", "the object is below the namespace");
      assert.equal(callsOf(calls, "putBytes").length, 0, "no index write before the commit");

      const committed = await a.commitPush(env(), manifest);
      assertFields(committed, PUSH_REPORT, "PushReport");
      assert.equal(committed.uploaded, 1);
      assert.ok(callsOf(calls, "putBytes").some((call) => call.args[0] === "team-a/_index/_meta.json"));
      assert.equal((await b.pullChanged(makeEnv())).downloaded, 1);
      assert.equal(await Deno.readTextFile(`${there}/team-a/x.json`), "x");
      await assert.rejects(
        a.pullChanged({ ...makeEnv(), namespace: "team-b" }),
        /belongs to namespace "team-a"/,
        "a service keeps its namespace",
      );
      await assert.rejects(async () => await a.commitPush(env(), { ...manifest, body: "{" }), /manifest/);
    }),
);

shapeTest(
  "marks, deletions and conflicts: the cache calls they make, Conflict, ResolveReport, MigrateIndexResult",
  ["Conflict", "ConflictKind", "ResolveReport", "MigrateIndexResult"],
  () =>
    withDirs(2, async ([here, there]) => {
      const bucket = new MemoryStore();
      const [callsHere, callsThere]: Call[][] = [[], []];
      const a = new SyncService(bucket, recorded(new DenoCache(here), callsHere), undefined);
      const b = new SyncService(bucket, recorded(new DenoCache(there), callsThere), undefined);
      await a.markDirty(makeEnv());
      await Deno.writeTextFile(`${here}/x.json`, "x");
      await Deno.writeTextFile(`${here}/y.json`, "y");
      await a.pushChanged(makeEnv());
      await b.pullChanged(makeEnv());
      // A new file may only land where there is none.
      const fresh = only(callsThere, "download", "x.json");
      assertFields(fresh.args[2], EXPECTED_DOWNLOAD, "ExpectedDownload");
      assert.equal(fresh.args[2].replaces, null);
      assertFields(fresh.answer, HASHED_FILE, "HashedFile");
      const landed = { size: fresh.answer.size, mtimeMs: fresh.answer.mtimeMs };

      // markDirty(env, relPath): one mark file in the internal folder; the push reads the folder, walks that path only,
      // and removes the mark it handled.
      callsHere.length = 0;
      await a.markDirty(makeEnv(), "x.json");
      const mark = only(callsHere, "writeInternal");
      assert.match(mark.args[0] as string, /^\.marsh-marks\/\d{13}-[0-9a-f]+~x\.json$/);
      await Deno.remove(`${here}/x.json`);
      const pushed = await a.pushChanged(makeEnv());
      assertFields(pushed, PUSH_REPORT, "PushReport");
      assert.deepEqual([pushed.deleted, pushed.markedOnly, pushed.marksCleared], [["x.json"], true, 1]);
      assert.ok(
        callsOf(callsHere, "listInternal", ".marsh-marks").some((call) => {
          return Array.isArray(call.answer) && call.answer.length === 1 &&
            `.marsh-marks/${call.answer[0]}` === mark.args[0];
        }),
      );
      assert.deepEqual(only(callsHere, "walkUnder", "x.json").answer, []);
      assert.equal(only(callsHere, "removeInternal").args[0], mark.args[0]);
      assert.equal(callsOf(callsHere, "walkPacked").length + callsOf(callsHere, "walk").length, 0, "no full walk");

      // The other cache removes its copy, naming the stat it saw.
      callsThere.length = 0;
      const pulled = await b.pullChanged(makeEnv());
      assertFields(pulled, PULL_REPORT, "PullReport");
      assert.deepEqual(pulled.removed, ["x.json"]);
      const removal = only(callsThere, "removeFile", "x.json");
      assertFields(removal.args[1], FILE_STAT, "FileStat");
      assert.deepEqual(removal.args[1], landed);

      // Both edit y.json: the second push rejects with the conflict, and status lists it.
      await a.markDirty(makeEnv(), "y.json");
      await Deno.writeTextFile(`${here}/y.json`, "from a");
      await a.pushChanged(makeEnv());
      await b.markDirty(makeEnv(), "y.json");
      const beforeEdit = (await new DenoCache(there).stat("y.json"))!;
      await Deno.writeTextFile(`${there}/y.json`, "from b!");
      const error = await rejection(b.pushChanged(makeEnv()));
      assertFields(error, SYNC_ERROR, "MarshSyncError");
      assert.deepEqual([error.kind, error.transferred], ["Conflicts", 0]);
      const [conflict] = error.conflicts as Conflict[];
      assertFields(conflict, CONFLICT, "Conflict");
      const kinds: Record<ConflictKind, true> = {
        "both-changed": true,
        "deleted-here": true,
        "deleted-there": true,
        "created-both": true,
        "object-moved": true,
      };
      assert.ok(conflict.kind in kinds);
      assert.deepEqual(conflict, { rel: "y.json", kind: "both-changed" });
      const status = await b.status(makeEnv());
      assertFields(status.conflicts[0], CONFLICT, "Conflict");
      assert.deepEqual(status.conflicts, [conflict]);
      assert.equal(status.markedPaths, 1, "the conflicting path stays marked");

      // Keeping the bucket's version downloads it over exactly the file the conflict was found with.
      callsThere.length = 0;
      const resolved = await b.resolveConflict(makeEnv(), "y.json", "remote");
      assertFields(resolved, RESOLVE_REPORT, "ResolveReport");
      assert.deepEqual(resolved, {
        rel: "y.json",
        kept: "remote",
        downloaded: true,
        removedLocal: false,
        markedForPush: false,
      });
      const over = only(callsThere, "download", "y.json").args[2] as ExpectedDownload;
      assert.ok(over.replaces && over.replaces.size === "from b!".length, JSON.stringify(over));
      assert.notDeepEqual(over.replaces, beforeEdit);
      assert.equal(await Deno.readTextFile(`${there}/y.json`), "from a");
      await assert.rejects(b.resolveConflict(makeEnv(), "y.json", "local"), { name: "MarshError", kind: "NoConflict" });

      // MigrateIndexResult: a format-1 bucket becomes format 2.
      const monolith = new MemoryStore();
      monolith.seed(INDEX, oneFileIndex("m.json"));
      const migrated = await new SyncService(monolith, emptyCache(), undefined).migrateMonolithToShards(makeEnv());
      assertFields(migrated, MIGRATED, "MigrateIndexResult");
      assert.deepEqual([migrated.version, migrated.converted, migrated.partitions.length > 0], [2, true, true]);
    }),
);

/** The error an operation rejects with (the test fails if it resolves). */
function rejection(operation: Promise<unknown>): Promise<Record<string, unknown>> {
  return operation.then(() => assert.fail("the operation should have rejected"), (error) => error);
}

/** A pull of one indexed file whose GET throws `thrown` (every attempt). */
function pullFailing(thrown: unknown, rel = "data/a.json"): Promise<Record<string, unknown>> {
  const store = storeWith({
    getBytes: monolithOnly(oneFileIndex(rel)),
    get: () => Promise.reject(thrown),
  });
  return rejection(new SyncService(store, emptyCache(), undefined).pullChanged(recordingEnv().env));
}

/** A pull of one indexed file whose GET throws `thrown` and that resolves all the same. */
function pullFollowing(thrown: unknown, rel = "data/a.json"): Promise<PullReport> {
  const store = storeWith({ getBytes: monolithOnly(oneFileIndex(rel)), get: () => Promise.reject(thrown) });
  return new SyncService(store, emptyCache(), undefined).pullChanged(recordingEnv().env);
}

shapeTest("every error kind a host throws comes back as that kind, with its status, key and message", [
  "MarshErrorKind",
  "MarshHostError",
], async () => {
  for (const kind of Object.keys(ERROR_KINDS) as MarshErrorKind[]) {
    const thrown: MarshHostError = Object.assign(new Error(`the host says ${kind}`), { kind, status: 418 });
    if (kind === "NotFound" || kind === "Mismatch" || kind === "LocalChanged") {
      // Not failures of a pull, each read by its kind (an unknown one would be an Io failure): an object gone or not
      // its entry's bytes is in flux; a local write that landed meanwhile is kept.
      const report = await pullFollowing(thrown);
      const field = kind === "LocalChanged" ? report.keptLocal : report.inFlux;
      assert.deepEqual(field, ["data/a.json"], kind);
      continue;
    }
    const error = await pullFailing(thrown);
    if (kind === "Aborted") {
      assertFields(error, SYNC_ERROR, "MarshSyncError");
      assert.deepEqual([error.name, error.kind], ["AbortError", "Aborted"]);
      continue;
    }
    assertFields(error, SYNC_ERROR, "MarshSyncError");
    assert.equal(error.kind, "Files", kind);
    const [failure] = error.failures!;
    assertFields(failure, FILE_FAILURE, "a file failure");
    assert.equal(failure.kind, kind);
    // Only the kinds that carry an HTTP status keep it; the others name the key or carry the host's message.
    const carriesStatus = kind === "Transient" || kind === "Auth" || kind === "Http";
    assert.equal(failure.status, carriesStatus ? 418 : undefined, kind);
    const names = kind === "PreconditionFailed";
    assert.match(failure.message, names ? /data\/a\.json/ : new RegExp(`the host says ${kind}`), kind);
  }

  // `key`, when given, names the object instead of the call's key.
  const keyed: MarshHostError = { kind: "PreconditionFailed", message: "moved", key: "elsewhere/b.json" };
  const named = await pullFailing(keyed);
  assert.match((named.failures as { message: string }[])[0].message, /precondition failed for elsewhere\/b\.json/);
  // A kind the boundary does not know, "NotModified" included, is a local I/O error (never retried).
  const unknown = await pullFailing(Object.assign(new Error("304"), { kind: "NotModified" }));
  const [failure] = unknown.failures as { kind: string; message: string }[];
  assert.equal(failure.kind, "Io");
  assert.match(failure.message, /unknown error kind "NotModified"/);
});

shapeTest("how a sync operation fails: each MarshSyncError kind with its optional fields, and InvalidArgument", [
  "MarshSyncError",
  "MarshError",
], async () => {
  const failingIndex = (thrown: unknown) =>
    rejection(
      new SyncService(storeWith({ getBytes: () => Promise.reject(thrown) }), emptyCache(), undefined).pullChanged(
        makeEnv(),
      ),
    );
  const unreadable = await failingIndex({ kind: "Auth", status: 403, message: "denied" });
  assertFields(unreadable, SYNC_ERROR, "MarshSyncError");
  assert.deepEqual([unreadable.name, unreadable.kind, unreadable.causeKind, unreadable.status], [
    "MarshError",
    "IndexUnreadable",
    "Auth",
    403,
  ]);
  const noStatus = await failingIndex({ kind: "Io", message: "disk on fire" });
  assert.deepEqual([noStatus.kind, noStatus.causeKind, "status" in noStatus], ["IndexUnreadable", "Io", false]);

  const garbage = storeWith({
    getBytes: monolithOnly(encoder.encode("<html>")),
  });
  const corrupt = await rejection(new SyncService(garbage, emptyCache(), undefined).pullChanged(makeEnv()));
  assertFields(corrupt, SYNC_ERROR, "MarshSyncError");
  assert.deepEqual([corrupt.kind, "causeKind" in corrupt, "status" in corrupt], ["IndexCorrupt", false, false]);

  const newer = new MemoryStore();
  newer.seed("_control/datastore-format", encoder.encode('{"format":9,"minReaderFormat":9}'));
  const unsupported = await rejection(new SyncService(newer, emptyCache(), undefined).pullChanged(makeEnv()));
  assertFields(unsupported, SYNC_ERROR, "MarshSyncError");
  assert.deepEqual([unsupported.kind, "causeKind" in unsupported], ["FormatUnsupported", false]);
  assert.match(unsupported.message as string, /format 9/);

  await withDirs(2, async ([writing, local]) => {
    const store = new MemoryStore();
    const writer = new SyncService(store, new DenoCache(writing), undefined);
    await writer.markDirty(makeEnv());
    await Deno.writeTextFile(`${writing}/a.json`, "a");
    await Deno.writeTextFile(`${writing}/b.json`, "b");
    store.failNext("put", Object.assign(new Error("denied"), { kind: "Auth", status: 403 }));
    const files = await rejection(writer.pushChanged(makeEnv()));
    assertFields(files, SYNC_ERROR, "MarshSyncError");
    assert.deepEqual([files.kind, files.transferred, "causeKind" in files], ["Files", 1, false]);
    const failures = files.failures as Record<string, unknown>[];
    assert.equal(failures.length, 1);
    assertFields(failures[0], FILE_FAILURE, "a file failure");
    assert.deepEqual([failures[0].kind, failures[0].status], ["Auth", 403]);

    store.failNext("putBytes", Object.assign(new Error("denied"), { kind: "Auth", status: 403 }));
    const write = await rejection(writer.pushChanged(makeEnv()));
    assertFields(write, SYNC_ERROR, "MarshSyncError");
    assert.deepEqual([write.kind, write.causeKind, write.status], ["IndexWrite", "Auth", 403]);

    const cache = new DenoCache(local);
    cache.writeInternal = () => Promise.reject({ kind: "Io", message: "read-only file system" });
    const localError = await rejection(new SyncService(store, cache, undefined).markDirty(makeEnv()));
    assertFields(localError, SYNC_ERROR, "MarshSyncError");
    assert.deepEqual([localError.kind, localError.causeKind], ["Local", "Io"]);
    assert.match(localError.message as string, /read-only file system/);

    // MassDeletion (SyncOptions.maxInferredDeletions): more files gone after a bare mark than allowed; nothing written.
    // SyncOptions.restoreDeleted then brings them back.
    const bucket = new MemoryStore();
    const dir = `${local}/guarded`;
    const guarded = new SyncService(bucket, new DenoCache(dir), { maxInferredDeletions: 1 });
    await guarded.markDirty(makeEnv());
    await Deno.writeTextFile(`${dir}/a.json`, "a");
    await Deno.writeTextFile(`${dir}/b.json`, "b");
    await guarded.pushChanged(makeEnv());
    await guarded.markDirty(makeEnv());
    await Deno.remove(`${dir}/a.json`);
    await Deno.remove(`${dir}/b.json`);
    const mass = await rejection(guarded.pushChanged(makeEnv()));
    assertFields(mass, SYNC_ERROR, "MarshSyncError");
    assert.deepEqual([mass.kind, mass.count, mass.limit, "causeKind" in mass], ["MassDeletion", 2, 1, false]);
    const kept = await new SyncService(bucket, new DenoCache(dir), undefined).pullChanged(makeEnv());
    assert.deepEqual([kept.fastPath, kept.downloaded], [true, 0], "a plain pull does not undo a marked deletion");
    const restored = await new SyncService(bucket, new DenoCache(dir), { restoreDeleted: true }).pullChanged(
      makeEnv(),
    );
    assert.equal(restored.downloaded, 2);

    const controller = new AbortController();
    controller.abort();
    const aborted = await rejection(writer.pullChanged(makeEnv(controller.signal)));
    assertFields(aborted, SYNC_ERROR, "MarshSyncError");
    assert.deepEqual([aborted.name, aborted.kind], ["AbortError", "Aborted"]);
  });

  for (
    const wrong of [
      () => new SyncService({} as MarshStore, emptyCache(), undefined),
      () =>
        new SyncService(new MemoryStore(), { stat: () => Promise.resolve(null) } as unknown as MarshCache, undefined),
      () => new LockClient(new MemoryStore(), "mem://x", undefined, { hostname: "h", pid: 1 } as LockIdentity),
    ]
  ) {
    const error = (() => {
      try {
        wrong();
      } catch (thrown) {
        return thrown;
      }
      assert.fail("the constructor should have thrown");
    })();
    assertFields(error, MARSH_ERROR, "MarshError");
    assert.deepEqual([error.name, error.kind], ["MarshError", "InvalidArgument"]);
  }
});

shapeTest("the lock: options, identity, the lock body as LockInfo, and each MarshLockError", [
  "LockClientOptions",
  "LockIdentity",
  "LockInfo",
  "MarshLockError",
], () =>
  withDirs(1, async ([dir]) => {
    const scope = "mem://host-shapes";
    const calls: Call[] = [];
    const store = new MemoryStore();
    const recordedStore = recorded(store, calls);
    const ann: LockIdentity = { holder: "ann@a", hostname: "a", pid: 11 };
    const defaults = new LockClient(recordedStore, scope, undefined, ann);
    assert.deepEqual([defaults.lockKey, defaults.ttlMs], [".datastore.lock", 30_000]);
    const options: LockClientOptions = { lockKey: "locks/x.lock", ttlMs: 1234, retryIntervalMs: 7, maxWaitMs: 30 };
    const bob = new LockClient(recordedStore, scope, options, { holder: "bob@b", hostname: "b", pid: 22 });
    assert.deepEqual([bob.lockKey, bob.ttlMs], ["locks/x.lock", 1234]);

    await bob.acquire(makeEnv());
    const created = only(calls, "putBytes", "locks/x.lock");
    assert.deepEqual(created.args[2], { kind: "ifAbsent" });
    const body = JSON.parse(new TextDecoder().decode(store.peek("locks/x.lock")!.bytes));
    const info = await bob.inspect();
    assertFields(info, LOCK_INFO, "LockInfo");
    assert.deepEqual(info, body);
    assert.deepEqual([info.holder, info.hostname, info.pid, info.ttlMs], ["bob@b", "b", 22, 1234]);
    assert.match(info.nonce!, /^[0-9a-f]{16,}$/);
    assert.ok(Math.abs(Date.parse(info.acquiredAt) - Date.now()) < 60_000, info.acquiredAt);

    // LockTimeoutError: the holder as LockInfo, how long we waited, in steps of retryIntervalMs.
    const { env, sleeps } = recordingEnv();
    const carl = new LockClient(store, scope, options, { holder: "carl@c", hostname: "c", pid: 33 });
    const timeout = await rejection(carl.acquire(env));
    assertFields(timeout, LOCK_ERROR, "MarshLockError");
    assert.deepEqual([timeout.name, timeout.kind, timeout.lockKey], [
      "LockTimeoutError",
      "LockTimeout",
      "locks/x.lock",
    ]);
    assert.deepEqual([timeout.code, timeout.retryable], ["lock_timeout", true]);
    assert.deepEqual(timeout.holder, info);
    assert.ok((timeout.waitedMs as number) >= 30, String(timeout.waitedMs));
    assert.ok(sleeps.length > 0 && sleeps.every((ms) => ms > 0 && ms <= 7), sleeps.join(","));

    // AbortError while waiting.
    const controller = new AbortController();
    controller.abort();
    const aborted = await rejection(carl.acquire(makeEnv(controller.signal)));
    assertFields(aborted, LOCK_ERROR, "MarshLockError");
    assert.deepEqual([aborted.name, aborted.kind], ["AbortError", "Aborted"]);

    // LockNotHeld: asked before acquiring.
    const notHeld = (() => {
      try {
        defaults.ensureHeld();
      } catch (thrown) {
        return thrown;
      }
      assert.fail("ensureHeld should throw");
    })();
    assertFields(notHeld, LOCK_ERROR, "MarshLockError");
    assert.deepEqual([notHeld.name, notHeld.kind], ["MarshError", "LockNotHeld"]);

    // LockInfo without a nonce (an older writer), then a body that is not a lock at all.
    const older = { holder: "old@o", hostname: "o", pid: 1, acquiredAt: "2026-01-01T00:00:00.000Z", ttlMs: 5 };
    store.seed(".datastore.lock", encoder.encode(JSON.stringify(older)));
    const olderInfo = await defaults.inspect();
    assertFields(olderInfo, LOCK_INFO, "LockInfo");
    assert.deepEqual(olderInfo, older);
    store.seed(".datastore.lock", encoder.encode("<html>"));
    const unknown = await defaults.inspect();
    assertFields(unknown, LOCK_INFO, "LockInfo");
    assert.deepEqual([unknown.holderUnknown, unknown.holder, unknown.pid, unknown.nonce], [
      true,
      "unknown",
      0,
      undefined,
    ]);
    // A namespace puts the lock below it; a key that is not a safe path is refused.
    const spaced = new LockClient(store, scope, { namespace: "team-a", lockKey: "data/m/i/.lock" }, ann);
    assert.equal(spaced.lockKey, "team-a/data/m/i/.lock");
    assert.equal(new LockClient(store, scope, { namespace: "team-a" }, ann).lockKey, "team-a/.datastore.lock");
    const badNamespace = (() => {
      try {
        new LockClient(store, scope, { namespace: "../x" }, ann);
      } catch (thrown) {
        return thrown as Record<string, unknown>;
      }
      assert.fail("a bad namespace should throw");
    })();
    assert.deepEqual([badNamespace.name, badNamespace.kind], ["MarshError", "InvalidArgument"]);
    // A store failure keeps the store's kind.
    const denied = storeWith({ getBytes: () => Promise.reject({ kind: "Auth", status: 403, message: "denied" }) });
    const storeError = await rejection(new LockClient(denied, scope, undefined, ann).inspect());
    assertFields(storeError, LOCK_ERROR, "MarshLockError");
    assert.deepEqual([storeError.name, storeError.kind], ["MarshError", "Auth"]);

    // LockLostError from a heartbeat, naming the new holder; then from the scope's sync service (SyncOptions.scope).
    const intruder = { ...older, holder: "eve@e", nonce: "eeeeeeeeeeeeeeee", acquiredAt: new Date().toISOString() };
    store.seed("locks/x.lock", encoder.encode(JSON.stringify(intruder)));
    const lost = await rejection(bob.heartbeat(makeEnv()));
    assertFields(lost, LOCK_ERROR, "MarshLockError");
    assert.deepEqual([lost.name, lost.kind, lost.lockKey, lost.holder], [
      "LockLostError",
      "LockLost",
      "locks/x.lock",
      intruder,
    ]);
    const refused = await rejection(new SyncService(store, new DenoCache(dir), { scope }).pullChanged(makeEnv()));
    assertFields(refused, LOCK_ERROR, "MarshLockError");
    assert.deepEqual([refused.name, refused.kind, refused.holder], ["LockLostError", "LockLost", intruder]);
    await bob.release();
    assert.equal(store.peek("locks/x.lock")?.bytes.byteLength, encoder.encode(JSON.stringify(intruder)).byteLength);

    // A lock deleted under its holder: lost, and nobody holds it now.
    const dana = new LockClient(store, scope, { lockKey: "locks/y.lock" }, {
      holder: "dana@d",
      hostname: "d",
      pid: 44,
    });
    await dana.acquire(makeEnv());
    await store.delete("locks/y.lock");
    const vanished = await rejection(dana.heartbeat(makeEnv()));
    assert.deepEqual([vanished.name, vanished.holder], ["LockLostError", null]);
    await dana.release();
  }));

shapeTest("the control plane: records as bytes both ways, listed keys, and each MarshControlError", [
  "MarshControlError",
], async () => {
  const calls: Call[] = [];
  const store = new MemoryStore();
  const plane = new ControlPlaneStore(recorded(store, calls), "team-a");
  await plane.put(makeEnv(), "runs/1", encoder.encode("one"));
  assert.deepEqual(only(calls, "putBytes", "team-a/_control/runs/1").args[2], { kind: "none" });
  assert.equal(await plane.putIfAbsent(makeEnv(), "runs/2", encoder.encode("two")), true);
  assert.deepEqual(only(calls, "putBytes", "team-a/_control/runs/2").args[2], { kind: "ifAbsent" });
  assert.equal(await plane.putIfAbsent(makeEnv(), "runs/2", encoder.encode("again")), false);
  assert.equal(new TextDecoder().decode((await plane.get(makeEnv(), "runs/1"))!), "one");
  assert.equal(await plane.get(makeEnv(), "runs/none"), null);
  assert.deepEqual(await plane.list(makeEnv(), "runs/"), ["runs/1", "runs/2"]);
  await plane.delete(makeEnv(), "runs/1");
  assert.deepEqual(store.keys(), ["team-a/_control/runs/2"]);

  const invalid = await rejection(plane.get(makeEnv(), "../x"));
  assertFields(invalid, CONTROL_ERROR, "MarshControlError");
  assert.deepEqual([invalid.name, invalid.kind, invalid.key], ["MarshError", "InvalidKey", "../x"]);
  const denied = storeWith({ getBytes: () => Promise.reject({ kind: "Auth", status: 403, message: "denied" }) });
  const failed = await rejection(new ControlPlaneStore(denied, undefined).get(makeEnv(), "k"));
  assertFields(failed, CONTROL_ERROR, "MarshControlError");
  assert.deepEqual([failed.name, failed.kind, failed.key, failed.status], ["MarshError", "Auth", "k", 403]);
  const aborted = await rejection(plane.get(makeEnv(AbortSignal.abort()), "k"));
  assertFields(aborted, CONTROL_ERROR, "MarshControlError");
  assert.deepEqual([aborted.name, aborted.kind, aborted.key], ["AbortError", "Aborted", "k"]);
  const namespace = (() => {
    try {
      new ControlPlaneStore(store, "/abs");
    } catch (thrown) {
      return thrown as Record<string, unknown>;
    }
    assert.fail("a bad namespace should throw");
  })();
  assertFields(namespace, CONTROL_ERROR, "MarshControlError");
  assert.deepEqual([namespace.name, namespace.kind], ["MarshError", "InvalidArgument"]);
});
shapeTest(
  "pull options: metadataOnly skips content files and creates their folder; a malformed option is refused by name",
  ["PullOptions"],
  () =>
    withDirs(2, async ([here, there]) => {
      const calls: Call[] = [];
      const store = new MemoryStore();
      const pusher = new SyncService(store, new DenoCache(here), undefined);
      await pusher.markDirty(makeEnv());
      await Deno.mkdir(`${here}/data/t/id/v`, { recursive: true });
      await Deno.writeTextFile(`${here}/data/t/id/v/raw`, "content");
      await Deno.writeTextFile(`${here}/data/t/id/v/meta.yaml`, "meta");
      await pusher.pushChanged(makeEnv());

      const puller = new SyncService(store, recorded(new DenoCache(there), calls), undefined);
      const options: PullOptions = { metadataOnly: true, subdirs: ["data"], context: { models: [] } };
      const pulled = await puller.pullChanged(makeEnv(), options);
      assert.deepEqual([pulled.downloaded, pulled.skipped], [1, ["data/t/id/v/raw"]]);
      assert.deepEqual(only(calls, "createDir").args[0], "data/t/id/v");
      assert.ok((await Deno.stat(`${there}/data/t/id/v`)).isDirectory);
      // Refused before any request (thrown by the call itself, as resolveConflict refuses a bad `keep`).
      const malformed = { subdirs: "data" } as unknown as PullOptions;
      const refused = await rejection((async () => await puller.pullChanged(makeEnv(), malformed))());
      assert.equal(refused.kind, "InvalidArgument");
      assert.match(String(refused.message), /subdirs/);
    }),
);

/** Shapes no export reaches (the core never lists a bucket): the Rust side's own wasm test reads them. */
const WASM_TESTS = [
  { file: "tests/wasm_smoke.rs", test: "list_pages_cross_with_and_without_a_next_page_token", shapes: ["ListPage"] },
  {
    file: "tests/wasm_smoke.rs",
    test: "stat_many_crosses_once_and_a_host_without_it_is_walked",
    shapes: ["PackedStats"],
  },
  {
    file: "tests/wasm_smoke.rs",
    test: "list_pages_cross_with_and_without_a_next_page_token",
    shapes: ["ListedObject"],
  },
];

Deno.test("host shapes: every type js/host.ts exports is round-tripped by one of the tests above", async () => {
  const source = await Deno.readTextFile(new URL("../../js/host.ts", import.meta.url));
  const exported = [...source.matchAll(/^export (?:interface|type) (\w+)/gm)].map((match) => match[1]);
  for (const { file, test, shapes } of WASM_TESTS) {
    const rust = await Deno.readTextFile(new URL(`../../${file}`, import.meta.url));
    assert.ok(rust.includes(`fn ${test}(`), `${file} has no test ${test}`);
    for (const shape of shapes) covered.set(shape, `${file}: ${test}`);
  }
  assert.deepEqual(exported.filter((name) => !covered.has(name)), [], "exported by js/host.ts, round-tripped nowhere");
  assert.deepEqual([...covered.keys()].filter((name) => !exported.includes(name)), [], "claimed, not in js/host.ts");
});
