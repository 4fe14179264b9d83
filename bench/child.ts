/**
 * One measured benchmark run, in its own process so that its peak RSS is its own (read from `/proc/self/status`
 * VmHWM at the end). Started by `bench/main.ts` as `deno run -A bench/child.ts '<spec JSON>'`; prints one JSON line
 * with the result. Process start-up and wasm instantiation are outside the timed region: the timer covers the
 * operations only, as a long-running swamp process would see them.
 *
 * Kinds:
 * - `sync`: pull and/or push through `SyncService` against a `file://` store or S3 (moto), the store wrapped in the
 *   counting proxy and the cache (`DenoCache`) in the timing proxy. Optional preparation (untimed): delete internal
 *   files, empty the cache, markDirty and edit a file.
 * - `plan-wasm`: dry-run pulls against an in-memory store holding the index (format 2: `_meta.json` and the shards the
 *   engine's migration makes of the monolith; format 1: the monolith) and an in-memory cache whose walk answers a
 *   prepared listing, so only the wasm core (index parse, listing conversion, per-entry decisions) is timed.
 * - `walk`: the cache walk alone (`DenoCache.walkPacked`), no wasm involved.
 * - `transfer`: marsh's fresh pull and initial push against a plain loop over the same store adapter (GET + file write,
 *   file read + PUT, the same window of 16 in flight, no index, no hashing, no checks), alternated run by run in this
 *   one process, so both meet the same machine load, the same JIT state and the same store.
 * - `floor`: the least any client must do for a format-2 slow-path pull, without marsh: GET `_meta.json` and every
 *   shard it lists through the same store adapter (the same window of 16), parse each, then `DenoCache.statMany` of
 *   every indexed path, on one thread (no stat worker). Its time and memory are the floor beside marsh's slow-path
 *   pull.
 * - `idle`: load the wasm and exit (the baseline RSS of a child).
 *
 * @module
 */

import process from "node:process";
import { DenoCache } from "../js/cache.ts";
import { makeEnv } from "../js/env.ts";
import { FsStore } from "../js/fs_store.ts";
import type {
  CallOptions,
  FetchedBytes,
  MarshCache,
  MarshStore,
  NotModified,
  PackedWalk,
  PullReport,
  PushReport,
  SyncOptions,
  VersionToken,
  WalkItem,
} from "../js/host.ts";
import { MemoryStore } from "../js/memory_store.ts";
import { S3Store } from "../js/s3.ts";
import { SyncService } from "../js/wasm.ts";
import { initSync } from "../js/gen/marsh.js";
import { CountingStore, type ObjectKind, type ObjectTally, TimedCache, Timeline } from "./counting.ts";

export type StoreSpec =
  | { kind: "file"; root: string }
  | { kind: "s3"; endpoint: string; bucket: string; prefix: string };

export interface SyncSpec {
  kind: "sync";
  store: StoreSpec;
  cache: string;
  operations: ("pull" | "push")[];
  options?: SyncOptions;
  /** Untimed preparation, in this order. */
  prepare?: {
    /** Internal files to delete from the cache root (sidecar, view, index copy, dirty marker). */
    deleteInternal?: string[];
    /** Remove the cache directory entirely (a fresh machine). */
    emptyCache?: boolean;
    /**
     * markDirty, then copy `from` over `cache/<rel>` (an edit as swamp makes it); with `markPath`, markDirty names
     * `rel` (swamp's `markDirty({ relPath })`), otherwise it is bare (anything may change).
     */
    edit?: { rel: string; from: string; markPath?: boolean };
  };
}

export interface PlanSpec {
  kind: "plan-wasm";
  /** The official-format index file (`bench/gen.ts`). */
  index: string;
  runs: number;
  /** 1: the store holds that monolith; 2 (default): the shards the engine's migration makes of it. */
  format?: 1 | 2;
}

/** The cache walk alone (`DenoCache.walkPacked`), for the floor under the slow path; peak RSS after the first run. */
export interface WalkSpec {
  kind: "walk";
  cache: string;
  runs: number;
}

/**
 * Transfers of one dataset, marsh against the plain loop, `reps` rounds. Each round runs both engines in each
 * direction, the order swapped every round (plain first in even rounds), after one unmeasured warm-up round over the
 * first {@link WARM_UP_FILES} files.
 */
export interface TransferSpec {
  kind: "transfer";
  /** The downloads' source: a prefix (or `file://` root) filled by a marsh push of `cache`. */
  source: StoreSpec;
  /** Each upload goes to a new empty store named after this one (`<root>-<run>` or `<prefix>-<run>`). */
  uploadTo: StoreSpec;
  /** The dataset's files (what uploads read); internal files are removed before each marsh push. */
  cache: string;
  /** The official-format index of the dataset: the plain loop's list of keys (read before any timing). */
  index: string;
  /** Scratch directory: downloads land in fresh folders under it. */
  scratch: string;
  reps: number;
  directions: TransferDirection[];
  /** Transfers in flight at once, for both engines (marsh's default is 16). */
  window: number;
}

export type TransferDirection = "download" | "upload";
export type TransferEngine = "marsh" | "plain";

/** One measured transfer: all `files` files one way, by one engine. */
export interface TransferRun {
  engine: TransferEngine;
  direction: TransferDirection;
  round: number;
  /** Whether this engine went first in its round (the order alternates). */
  first: boolean;
  ms: number;
  /**
   * This process's CPU time (user + system, all threads) over the run: the client's own work, which other jobs on
   * the machine stretch far less than the wall time (the store's work, e.g. moto's, is in another process).
   */
  cpuMs: number;
  files: number;
  requests: Record<string, number>;
  totalRequests: number;
  byObject: Partial<Record<ObjectKind, ObjectTally>>;
  /** marsh only: time inside each kind of host call, and outside any (wasm core + boundary + JS glue). */
  hostMs?: Record<string, number>;
  outsideHostMs?: number;
  phases?: Phase[];
}

export interface TransferResult {
  runs: TransferRun[];
  files: number;
  bytes: number;
  peakRssBytes: number;
}

/** The slow-path floor (format 2 only): read the whole index plainly, stat what it names; `runs` times in one child. */
export interface FloorSpec {
  kind: "floor";
  store: StoreSpec;
  cache: string;
  runs: number;
}

export interface FloorRun {
  /** `_meta.json` and every shard fetched and parsed (the entries' paths kept, sorted). */
  indexMs: number;
  /** `statMany` of every indexed path, in batches as marsh asks (1,024 paths). */
  statMs: number;
  ms: number;
  shards: number;
  paths: number;
  /** Bytes of `_meta.json` and the shards as received. */
  indexBytes: number;
}

export interface FloorResult {
  runs: FloorRun[];
  /** VmHWM after the first run (later runs add the garbage of earlier ones). */
  peakRssBytes: number;
}

export type ChildSpec = SyncSpec | PlanSpec | WalkSpec | TransferSpec | FloorSpec | { kind: "idle" };

/** Every internal file or folder a sync may leave at the cache root (src/path.rs). */
export const INTERNAL = [
  ".datastore-sync-state.json",
  ".marsh-view.json",
  ".datastore-index.json",
  ".marsh-dirty.json",
  ".marsh-marks",
  ".marsh-commit.json",
  ".marsh-conflicts.json",
  ".push-queue.json",
];

export interface Phase {
  name: string;
  ms: number;
  /** The wasm module's memory when the phase ended (it only grows), when the trace line gives it. */
  wasmMB?: number;
}

export interface SyncResult {
  wallMs: number;
  operationMs: Record<string, number>;
  requests: Record<string, number>;
  totalRequests: number;
  bytesSent: number;
  bytesReceived: number;
  /** Bytes of each index object written (monolith, shard or `_meta.json`). */
  indexWrites: number[];
  /** Requests and bytes by the kind of object addressed (data, shard, `_meta.json`, monolith, …). */
  byObject: Partial<Record<ObjectKind, ObjectTally>>;
  /** Phase durations from the engine's trace lines (MARSH_SYNC_TRACE). */
  phases: Phase[];
  /** Time inside each kind of host call, and outside any (wasm core + boundary). */
  hostMs: Record<string, number>;
  outsideHostMs: number;
  reports: { pull?: PullReport; push?: PushReport };
  peakRssBytes: number;
  /** The high-water mark when the pull returned (before any push), when the pull ran first. */
  pullPeakRssBytes?: number;
  memory: MemoryFigures;
}

/** Where the memory is at the end of a run (wasm linear memory never shrinks, so it is also its peak). */
export interface MemoryFigures {
  wasmBytes: number;
  jsHeapTotalBytes: number;
  externalBytes: number;
}

export interface PlanResult {
  runsMs: number[];
  entries: number;
  /**
   * Per run: until the JS store handed the index bytes over (state reads, the store's own copy), then the copy into
   * wasm and the parse, then the listing conversion and the decisions. On format 2 "handed over" is the last shard's
   * answer: the earlier shards' parses overlap the fetches and count in `fetchMs`.
   */
  splits: { fetchMs: number; indexParseMs: number; listingAndDecideMs: number }[];
  /**
   * Per run: the process's CPU time (user + system, all threads) from the hand-over of the index bytes to the end,
   * i.e. over the index parse + diff: other jobs on a shared machine stretch the wall time, much less this.
   */
  planCpuMs: number[];
  /** The unmeasured first run of the child (cold: not yet optimised by the wasm engine), parse + diff, wall time. */
  coldPlanMs: number;
  peakRssBytes: number;
  memory: MemoryFigures;
}

/** This process's CPU time so far (user + system, all threads), in ms. */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** The kernel's high-water mark of this process's resident set (Linux); the current RSS elsewhere. */
export function peakRssBytes(): number {
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
    if (match) return Number(match[1]) * 1024;
  } catch {
    // not Linux
  }
  return Deno.memoryUsage().rss;
}

export function memoryFigures(): MemoryFigures {
  // `initSync` answers the instance's exports when the module is already instantiated (js/wasm.ts did it).
  const wasmBytes = initSync(undefined as never).memory.buffer.byteLength;
  const usage = Deno.memoryUsage();
  return { wasmBytes, jsHeapTotalBytes: usage.heapTotal, externalBytes: usage.external };
}

function openStore(spec: StoreSpec): MarshStore & { destroy?: () => void } {
  if (spec.kind === "file") return new FsStore(spec.root);
  return new S3Store({ bucket: spec.bucket, prefix: spec.prefix, endpoint: spec.endpoint, forcePathStyle: true });
}

/**
 * `marsh pull: index read 12 ms (wasm memory 80.2 MB)` lines are cumulative since the operation started: turn them into
 * durations.
 */
function phasesOf(lines: string[]): Phase[] {
  const phases: Phase[] = [];
  const last: Record<string, number> = {};
  for (const line of lines) {
    const match = /^marsh (\w+): (.+) (\d+) ms(?: \(wasm memory ([\d.]+) MB\))?$/.exec(line);
    if (!match) continue;
    const [, operation, phase, cumulative, wasmMB] = match;
    const ms = Number(cumulative) - (last[operation] ?? 0);
    last[operation] = Number(cumulative);
    phases.push({ name: `${operation}: ${phase}`, ms, ...(wasmMB === undefined ? {} : { wasmMB: Number(wasmMB) }) });
  }
  return phases;
}

async function runSync(spec: SyncSpec): Promise<SyncResult> {
  const prepare = spec.prepare ?? {};
  if (prepare.emptyCache) await Deno.remove(spec.cache, { recursive: true }).catch(() => {});
  for (const name of prepare.deleteInternal ?? []) await Deno.remove(`${spec.cache}/${name}`).catch(() => {});
  const timeline = new Timeline();
  const store = new CountingStore(openStore(spec.store), timeline);
  const cache = new TimedCache(new DenoCache(spec.cache), timeline);
  const service = new SyncService(store, cache, spec.options);
  const traces: string[] = [];
  const env = makeEnv(new AbortController().signal, (line) => traces.push(line));
  if (prepare.edit) {
    await service.markDirty(env, prepare.edit.markPath ? prepare.edit.rel : undefined);
    await Deno.copyFile(prepare.edit.from, `${spec.cache}/${prepare.edit.rel}`);
  }
  timeline.calls.length = 0;
  store.reset();
  const operationMs: Record<string, number> = {};
  const reports: SyncResult["reports"] = {};
  let pullPeakRssBytes: number | undefined;
  const started = performance.now();
  for (const operation of spec.operations) {
    const opStarted = performance.now();
    if (operation === "pull") reports.pull = await service.pullChanged(env);
    else reports.push = await service.pushChanged(env);
    operationMs[operation] = performance.now() - opStarted;
    if (operation === "pull" && spec.operations[0] === "pull") pullPeakRssBytes = peakRssBytes();
  }
  const ended = performance.now();
  const { byKind, outsideHost } = timeline.breakdown(started, ended);
  if (store instanceof CountingStore && "destroy" in store.inner) (store.inner as S3Store).destroy();
  for (const report of [reports.pull, reports.push]) if (report) report.planned = report.planned.slice(0, 20);
  return {
    wallMs: ended - started,
    operationMs,
    requests: store.requests,
    totalRequests: store.totalRequests,
    bytesSent: store.bytesSent,
    bytesReceived: store.bytesReceived,
    indexWrites: store.indexWrites,
    byObject: store.byObject,
    phases: phasesOf(traces),
    hostMs: byKind,
    outsideHostMs: outsideHost,
    reports,
    peakRssBytes: peakRssBytes(),
    pullPeakRssBytes,
    memory: memoryFigures(),
  };
}

/** A cache with no files but the listing: walk answers it, internal files are absent, nothing is written. */
class ListingCache implements MarshCache {
  walkReturned = 0;
  viewRequested = 0;

  constructor(readonly listing: WalkItem[]) {
    this.joined = listing.map((item) => item.rel).join("\0");
    this.packed = {
      files: "",
      sizes: Float64Array.from(listing, (item) => item.kind === "file" ? item.size : 0),
      mtimes: Float64Array.from(listing, (item) => item.kind === "file" ? item.mtimeMs : 0),
      symlinks: [],
      vanished: [],
    };
  }

  stat(): Promise<null> {
    return Promise.resolve(null);
  }

  walk(): Promise<WalkItem[]> {
    this.walkReturned = performance.now();
    return Promise.resolve(this.listing);
  }

  /** The same listing in the packed form the real cache (DenoCache) answers. */
  walkPacked(): Promise<PackedWalk> {
    this.walkReturned = performance.now();
    // Bytes of their own each time: the core frees a byte buffer once it has copied it in.
    return Promise.resolve({ ...this.packed, files: new TextEncoder().encode(this.joined) });
  }

  readonly packed: PackedWalk;
  readonly joined: string;

  /**
   * A sidecar whose verified token is not the index's: the pull takes the full path with the index GET first and the
   * walk after it (with no sidecar at all the two overlap, and the split below would mean nothing).
   */
  readInternal(name: string): Promise<Uint8Array | null> {
    if (name === ".marsh-view.json") this.viewRequested = performance.now();
    if (name === ".datastore-sync-state.json") {
      return Promise.resolve(new TextEncoder().encode(JSON.stringify({ version: 2, verifiedToken: "stale-token" })));
    }
    return Promise.resolve(null);
  }

  writeInternal(): Promise<void> {
    return Promise.reject(new Error("a dry run writes nothing"));
  }

  walkUnder(): Promise<WalkItem[]> {
    return Promise.reject(new Error("a dry run of the whole cache walks it whole"));
  }

  removeFile(): Promise<void> {
    return Promise.reject(new Error("a dry run removes nothing"));
  }

  /** No internal folder (no per-path marks). */
  listInternal(): Promise<string[]> {
    return Promise.resolve([]);
  }

  removeInternal(): Promise<void> {
    return Promise.reject(new Error("a dry run removes nothing"));
  }

  prepareUpload(): Promise<null> {
    return Promise.reject(new Error("a dry run uploads nothing"));
  }

  download(): Promise<never> {
    return Promise.reject(new Error("a dry run downloads nothing"));
  }

  createDir(): Promise<void> {
    return Promise.reject(new Error("a dry run creates nothing"));
  }

  hash(): Promise<null> {
    return Promise.reject(new Error("a zero-diff official index needs no hash"));
  }
}

/** The in-memory store, noting when it handed the index bytes over (where the core's own work on them starts). */
class HandingStore extends MemoryStore {
  handedOver = 0;
  handedOverCpu = 0;

  override async getBytes(
    key: string,
    ifNoneMatch?: VersionToken,
    options?: CallOptions,
  ): Promise<FetchedBytes | NotModified> {
    const answer = await super.getBytes(key, ifNoneMatch, options);
    this.handedOver = performance.now();
    this.handedOverCpu = cpuMs();
    return answer;
  }
}

async function runPlan(spec: PlanSpec): Promise<PlanResult> {
  const bytes = await Deno.readFile(spec.index);
  const parsed = JSON.parse(new TextDecoder().decode(bytes)) as {
    entries: Record<string, { size: number; localMtime: string }>;
  };
  // The listing a walk of the generated cache answers: every file with its entry's size and recorded mtime.
  const listing: WalkItem[] = Object.entries(parsed.entries).map(([rel, entry]) => ({
    kind: "file",
    rel,
    size: entry.size,
    mtimeMs: Date.parse(entry.localMtime),
  }));
  const store = new HandingStore();
  store.seed(".datastore-index.json", bytes);
  const cache = new ListingCache(listing);
  if ((spec.format ?? 2) === 2) {
    // Untimed: the engine's own migration writes the shards and `_meta.json`; the sealed monolith goes, as in a bucket
    // that started in format 2.
    const migrated = await new SyncService(store, cache, undefined).migrateMonolithToShards(makeEnv());
    if (!migrated.converted) throw new Error("plan-wasm: migration did not convert the monolith");
    await store.delete(".datastore-index.json");
  }
  const service = new SyncService(store, cache, { dryRun: true });
  const runsMs: number[] = [];
  const splits: PlanResult["splits"] = [];
  const planCpuMs: number[] = [];
  let coldPlanMs = 0;
  // One unmeasured run first: JIT and wasm tier-up, as in a long-running process (its plan is kept as the cold one).
  for (let run = 0; run <= spec.runs; run++) {
    const started = performance.now();
    const report = await service.pullChanged(makeEnv());
    const ended = performance.now();
    const endedCpu = cpuMs();
    if (report.planned.length !== 0 || report.indexEntries !== listing.length) {
      throw new Error(`dry run planned ${report.planned.length} downloads of ${report.indexEntries} entries`);
    }
    if (run === 0) {
      coldPlanMs = ended - store.handedOver;
      continue;
    }
    runsMs.push(ended - started);
    planCpuMs.push(endedCpu - store.handedOverCpu);
    splits.push({
      fetchMs: store.handedOver - started,
      indexParseMs: cache.walkReturned - store.handedOver,
      listingAndDecideMs: ended - cache.walkReturned,
    });
  }
  return {
    runsMs,
    entries: listing.length,
    splits,
    planCpuMs,
    coldPlanMs,
    peakRssBytes: peakRssBytes(),
    memory: memoryFigures(),
  };
}

async function runWalk(spec: WalkSpec): Promise<{ runsMs: number[]; files: number; peakRssBytes: number }> {
  const cache = new DenoCache(spec.cache);
  const runsMs: number[] = [];
  let files = 0;
  let peakAfterFirst = 0;
  for (let run = 0; run < spec.runs; run++) {
    const started = performance.now();
    files = (await cache.walkPacked()).sizes.length;
    runsMs.push(performance.now() - started);
    // A sync walks once: later runs add the garbage of earlier ones to the high-water mark.
    if (run === 0) peakAfterFirst = peakRssBytes();
  }
  return { runsMs, files, peakRssBytes: peakAfterFirst };
}

/** Paths per `statMany` call, as the core batches them (src/engine/listing.rs `STAT_BATCH`). */
const STAT_BATCH = 1024;

/**
 * One floor run: no version tokens kept, no validation beyond `JSON.parse`, no decisions; what is left is the format's
 * own cost (one GET per shard) and the kernel's (one stat per path and per directory above it).
 */
async function floorOnce(store: MarshStore, cache: DenoCache, window: number): Promise<FloorRun> {
  const started = performance.now();
  const decoder = new TextDecoder();
  const meta = await store.getBytes("_index/_meta.json");
  if ("notModified" in meta) throw new Error("floor: an unconditional GET of _index/_meta.json answered not modified");
  let indexBytes = meta.bytes.byteLength;
  const shards = (JSON.parse(decoder.decode(meta.bytes)) as { partitions: string[] }).partitions;
  const paths: string[] = [];
  await slidingWindow(shards, window, async (name) => {
    const got = await store.getBytes(`_index/${name}.json`);
    if ("notModified" in got) throw new Error(`floor: an unconditional GET of shard ${name} answered not modified`);
    indexBytes += got.bytes.byteLength;
    for (const rel of Object.keys((JSON.parse(decoder.decode(got.bytes)) as { entries: object }).entries)) {
      paths.push(rel);
    }
  });
  // statMany checks each directory once while consecutive paths share it: asked in path order, as the core asks.
  paths.sort();
  const indexed = performance.now();
  for (let at = 0; at < paths.length; at += STAT_BATCH) {
    await cache.statMany(paths.slice(at, at + STAT_BATCH).join("\0"));
  }
  const ended = performance.now();
  return {
    indexMs: indexed - started,
    statMs: ended - indexed,
    ms: ended - started,
    shards: shards.length,
    paths: paths.length,
    indexBytes,
  };
}

async function runFloor(spec: FloorSpec): Promise<FloorResult> {
  // On one thread: the least memory any client needs. marsh's stat worker (js/stat_paths.ts) is a choice that costs an
  // isolate (~23 MB) to buy time, so it is not part of a floor.
  const cache = new DenoCache(spec.cache, { statWorker: false });
  const runs: FloorRun[] = [];
  let peakAfterFirst = 0;
  for (let run = 0; run < spec.runs; run++) {
    // A new store client per run, as each marsh child has, behind the same counting proxy (its per-call cost too).
    const inner = openStore(spec.store);
    runs.push(await floorOnce(new CountingStore(inner, new Timeline()), cache, 16));
    inner.destroy?.();
    if (run === 0) peakAfterFirst = peakRssBytes();
  }
  return { runs, peakRssBytes: peakAfterFirst };
}

// ---------------------------------------------------------------------------------------------------------------------
// Transfers: marsh against the plain loop

/** Files of the unmeasured warm-up round (JIT, the SDK's first requests, the wasm's first pull and push). */
const WARM_UP_FILES = 100;

/** `items` through `work`, at most `width` in flight, the next one starting as soon as one ends (a sliding window). */
async function slidingWindow<T>(items: readonly T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane));
}

/**
 * The plain download: GET each key through the store adapter and write its body to `<dir>/<key>` with Deno, creating
 * each folder once. No index, no hash, no size check, no temp file: the least a client must do.
 */
async function plainDownload(store: MarshStore, keys: readonly string[], dir: string, window: number): Promise<number> {
  const folders = new Map<string, Promise<void>>();
  let written = 0;
  await slidingWindow(keys, window, async (key) => {
    const fetched = await store.get(key);
    if ("notModified" in fetched) throw new Error(`plain download: ${key} answered 304 without a condition`);
    const path = `${dir}/${key}`;
    const folder = path.slice(0, path.lastIndexOf("/"));
    let made = folders.get(folder);
    if (!made) {
      made = Deno.mkdir(folder, { recursive: true });
      folders.set(folder, made);
    }
    await made;
    await Deno.writeFile(path, fetched.body as ReadableStream<Uint8Array>);
    written++;
  });
  return written;
}

/** The plain upload: open each file, take its size from the open descriptor, PUT it through the store adapter. */
async function plainUpload(store: MarshStore, keys: readonly string[], dir: string, window: number): Promise<number> {
  let sent = 0;
  await slidingWindow(keys, window, async (key) => {
    const file = await Deno.open(`${dir}/${key}`, { read: true });
    const { size } = await file.stat();
    // The stream closes the file once read to the end.
    await store.put(key, { size, open: () => Promise.resolve(file.readable) }, { kind: "none" });
    sent++;
  });
  return sent;
}

/** A new empty store for one upload run: `<root>-<tag>` (removed first) or the prefix `<prefix>-<tag>`. */
async function uploadTarget(spec: StoreSpec, tag: string): Promise<StoreSpec> {
  if (spec.kind === "file") {
    const root = `${spec.root}-${tag}`;
    await Deno.remove(root, { recursive: true }).catch(() => {});
    return { kind: "file", root };
  }
  return { ...spec, prefix: `${spec.prefix}-${tag}` };
}

async function dropUploadTarget(spec: StoreSpec): Promise<void> {
  if (spec.kind === "file") await Deno.remove(spec.root, { recursive: true }).catch(() => {});
}

async function removeInternal(cache: string): Promise<void> {
  for (const name of INTERNAL) await Deno.remove(`${cache}/${name}`, { recursive: true }).catch(() => {});
}

/** One measured transfer by one engine; the untimed preparation (an empty folder or store) comes first. */
async function transferOnce(
  spec: TransferSpec,
  engine: TransferEngine,
  direction: TransferDirection,
  keys: readonly string[],
  tag: string,
  from: { source: StoreSpec; cache: string },
): Promise<Omit<TransferRun, "round" | "first">> {
  const timeline = new Timeline();
  let target: StoreSpec | undefined;
  let folder: string | undefined;
  if (direction === "download") {
    folder = `${spec.scratch}/${engine}-${tag}`;
    await Deno.remove(folder, { recursive: true }).catch(() => {});
  } else {
    target = await uploadTarget(spec.uploadTo, `${engine}-${tag}`);
    if (engine === "marsh") await removeInternal(from.cache);
  }
  const inner = openStore(direction === "download" ? from.source : target!);
  const store = new CountingStore(inner, timeline);
  let ms: number;
  let files: number;
  let runCpuMs: number;
  let breakdown: Pick<TransferRun, "hostMs" | "outsideHostMs" | "phases"> = {};
  const cpuStarted = cpuMs();
  if (engine === "plain") {
    const started = performance.now();
    files = direction === "download"
      ? await plainDownload(store, keys, folder!, spec.window)
      : await plainUpload(store, keys, from.cache, spec.window);
    ms = performance.now() - started;
    runCpuMs = cpuMs() - cpuStarted;
  } else {
    const cache = new TimedCache(new DenoCache(direction === "download" ? folder! : from.cache), timeline);
    const traces: string[] = [];
    const service = new SyncService(store, cache, { concurrency: spec.window });
    const env = makeEnv(new AbortController().signal, (line) => traces.push(line));
    const started = performance.now();
    if (direction === "download") files = (await service.pullChanged(env)).downloaded;
    else files = (await service.pushChanged(env)).uploaded;
    const ended = performance.now();
    ms = ended - started;
    // Read before the breakdown below, which is the bench's own work.
    runCpuMs = cpuMs() - cpuStarted;
    const { byKind, outsideHost } = timeline.breakdown(started, ended);
    breakdown = { hostMs: byKind, outsideHostMs: outsideHost, phases: phasesOf(traces) };
  }
  inner.destroy?.();
  if (files !== keys.length) throw new Error(`${engine} ${direction} moved ${files} files of ${keys.length}`);
  // Untimed clean-up: the next run starts from an empty folder or store again.
  if (folder) await Deno.remove(folder, { recursive: true }).catch(() => {});
  if (target) await dropUploadTarget(target);
  if (direction === "upload" && engine === "marsh") await removeInternal(from.cache);
  return {
    engine,
    direction,
    ms,
    cpuMs: runCpuMs,
    files,
    requests: { ...store.requests },
    totalRequests: store.totalRequests,
    byObject: store.byObject,
    ...breakdown,
  };
}

async function runTransfer(spec: TransferSpec): Promise<TransferResult> {
  const index = JSON.parse(await Deno.readTextFile(spec.index)) as { entries: Record<string, { size: number }> };
  const keys = Object.keys(index.entries);
  const bytes = Object.values(index.entries).reduce((total, entry) => total + entry.size, 0);
  await Deno.mkdir(spec.scratch, { recursive: true });

  // Warm-up round (unmeasured): the first files copied into a cache of their own, pushed by marsh into a store of
  // their own, then both engines in both directions.
  const warmKeys = keys.slice(0, WARM_UP_FILES);
  const warmCache = `${spec.scratch}/warm-up-cache`;
  await Deno.remove(warmCache, { recursive: true }).catch(() => {});
  for (const key of warmKeys) {
    const path = `${warmCache}/${key}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.copyFile(`${spec.cache}/${key}`, path);
  }
  const warmSource = await uploadTarget(spec.uploadTo, "warm-up-source");
  {
    const store = openStore(warmSource);
    await new SyncService(store, new DenoCache(warmCache), undefined).pushChanged(makeEnv());
    store.destroy?.();
    await removeInternal(warmCache);
  }
  const warm = { source: warmSource, cache: warmCache };
  for (const direction of spec.directions) {
    for (const engine of ["plain", "marsh"] as const) {
      await transferOnce(spec, engine, direction, warmKeys, "warm", warm);
    }
  }
  await dropUploadTarget(warmSource);
  await Deno.remove(warmCache, { recursive: true }).catch(() => {});

  const runs: TransferRun[] = [];
  const from = { source: spec.source, cache: spec.cache };
  for (let round = 0; round < spec.reps; round++) {
    const order: TransferEngine[] = round % 2 === 0 ? ["plain", "marsh"] : ["marsh", "plain"];
    for (const direction of spec.directions) {
      for (const [position, engine] of order.entries()) {
        const run = await transferOnce(spec, engine, direction, keys, String(round), from);
        runs.push({ ...run, round, first: position === 0 });
        console.error(
          `bench child: ${direction} ${engine} round ${round + 1}/${spec.reps}: ${run.ms.toFixed(0)} ms (CPU ${
            run.cpuMs.toFixed(0)
          } ms)`,
        );
      }
    }
  }
  return { runs, files: keys.length, bytes, peakRssBytes: peakRssBytes() };
}

if (import.meta.main) {
  const spec = JSON.parse(Deno.args[0]) as ChildSpec;
  let result: unknown;
  if (spec.kind === "sync") result = await runSync(spec);
  else if (spec.kind === "plan-wasm") result = await runPlan(spec);
  else if (spec.kind === "walk") result = await runWalk(spec);
  else if (spec.kind === "transfer") result = await runTransfer(spec);
  else if (spec.kind === "floor") result = await runFloor(spec);
  else result = { peakRssBytes: peakRssBytes(), memory: memoryFigures() };
  console.log(JSON.stringify(result));
}
