/**
 * The benchmark driver behind `scripts/bench.sh`: prepares the datasets (`bench/gen.ts`), runs every measured
 * operation in a child process (`bench/child.ts`), judges every target (PASS/MISS, on the terminal and in the report)
 * and writes `bench/results/RESULTS.md` (`--quick`: `bench/results/RESULTS-quick.md`).
 *
 *   deno run -A bench/main.ts [--quick] [--only 1,2,3,4,5,micro] [--out bench/results/RESULTS.md]
 *     [--stores file,s3] [--sizes small,big] [--formats 2,1] [--big-reps N] [--transfer-files N] [--transfer-reps N]
 *     [--layout swamp|dirs]
 *
 * Scenario 4 measures marsh's fresh pull and initial push against a plain loop (GET + file write, file read + PUT,
 * through the same store adapter, 16 in flight) in the same child process, round by round, and reports the ratio of
 * their files/s against the target (marsh ≥ 0.9× the plain loop).
 *
 * Every sync scenario runs on a format-2 bucket (`_index/_meta.json` + shards, what a new bucket gets); with format 1
 * in `--formats` (the default) scenarios 1, 2 and 5 also run on a format-1 bucket (the monolith
 * `.datastore-index.json`) in the same run, as a baseline. `--stores`, `--sizes` and `--big-reps` narrow a run (e.g.
 * the 250k scenarios alone); the report then holds only what was measured.
 *
 * Needs the wasm built (`scripts/build-wasm.sh`). S3 scenarios need `MARSH_S3_ENDPOINT` (moto, as started by
 * `scripts/with-emulators.sh`); without it they are reported as skipped. Scratch data lives in `bench/tmp/`.
 *
 * @module
 */

import { CreateBucketCommand, S3Client } from "npm:@aws-sdk/client-s3@3.1173.0";
import { DenoCache } from "../js/cache.ts";
import { makeEnv } from "../js/env.ts";
import { FsStore } from "../js/fs_store.ts";
import type { CallOptions, MarshStore, Precondition } from "../js/host.ts";
import { S3Store } from "../js/s3.ts";
import { SyncService, version } from "../js/wasm.ts";
import { CountingStore, type ObjectKind, type ObjectTally } from "./counting.ts";
import { wasmByteLength } from "../js/gen/wasm_bytes.ts";
import {
  type ChildSpec,
  type FloorResult,
  type FloorRun,
  INTERNAL,
  type PlanResult,
  type StoreSpec,
  type SyncResult,
  type SyncSpec,
  type TransferDirection,
  type TransferEngine,
  type TransferResult,
  type TransferRun,
} from "./child.ts";
import { type Dataset, editedBytes, ensureDataset, type Layout, restoreFile } from "./gen.ts";

// ---------------------------------------------------------------------------------------------------------------------
// Settings

const args = Deno.args;
const quick = args.includes("--quick");
const flagValue = (name: string) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args[at + 1] : undefined;
};
const only = new Set((flagValue("only") ?? "1,2,3,4,5,micro").split(","));
const storeKinds = new Set((flagValue("stores") ?? "file,s3").split(","));
const sizes = new Set((flagValue("sizes") ?? "small,big").split(","));
/** 2 = sharded (every scenario); 1 = the monolith baseline of scenarios 1, 2 and 5. */
const formats = (flagValue("formats") ?? "2,1").split(",").map(Number) as Format[];
type Format = 1 | 2;
/** The quick run writes a file of its own, so it never overwrites the full run's figures. */
const outPath = flagValue("out") ?? (quick ? "bench/results/RESULTS-quick.md" : "bench/results/RESULTS.md");
const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const tmp = `${root}/bench/tmp`;
const SEED = 1;

/**
 * Sizes and repetitions; `--quick` keeps the shape of every scenario at a fraction of the cost. `transferFiles` files of
 * 200–240 B each (`bench/gen.ts`, profile `tiny`) for scenario 4, `transferReps` rounds of marsh and the plain loop.
 */
const settings = quick
  ? { small: 2_000, big: 20_000, transferFiles: 1_000, reps: 3, bigReps: 2, planRuns: 3, transferReps: 3 }
  : { small: 10_000, big: 250_000, transferFiles: 10_000, reps: 7, bigReps: 3, planRuns: 5, transferReps: 3 };
if (flagValue("big-reps")) settings.bigReps = Number(flagValue("big-reps"));
if (flagValue("transfer-files")) settings.transferFiles = Number(flagValue("transfer-files"));
if (flagValue("transfer-reps")) settings.transferReps = Number(flagValue("transfer-reps"));
/** Transfers in flight at once, for marsh and the plain loop alike (marsh's default window). */
const TRANSFER_WINDOW = 16;
/** Scenario 4's target: marsh moves at least this fraction of the plain loop's files per second. */
const TRANSFER_TARGET = 0.9;

const SIDECAR = ".datastore-sync-state.json";
const INDEX_KEY = ".datastore-index.json";

const benchStarted = performance.now();
/** Progress on stderr, with the seconds since the driver started (what a run's parts cost, e.g. in CI). */
const log = (message: string) =>
  console.error(`bench [${((performance.now() - benchStarted) / 1000).toFixed(0).padStart(4)} s]: ${message}`);
const s3Endpoint = Deno.env.get("MARSH_S3_ENDPOINT");

// ---------------------------------------------------------------------------------------------------------------------
// Helpers

/** Run one child; `showProgress` passes its stderr through (a long child's progress lines) instead of keeping it. */
async function runChild<T>(spec: ChildSpec, showProgress = false): Promise<T> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", `${root}/pkg.json`, "--quiet", "-A", `${root}/bench/child.ts`, JSON.stringify(spec)],
    stdout: "piped",
    stderr: showProgress ? "inherit" : "piped",
  });
  const output = await command.output();
  const stdout = new TextDecoder().decode(output.stdout).trim();
  if (!output.success) {
    const stderr = showProgress ? "(above)" : new TextDecoder().decode(output.stderr);
    throw new Error(`child ${spec.kind} failed (${output.code}):\n${stderr}`);
  }
  return JSON.parse(stdout.split("\n").at(-1)!) as T;
}

interface Stats {
  median: number;
  min: number;
  max: number;
  n: number;
}

function stats(values: number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1], n: sorted.length };
}

const seconds = (ms: number) => ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 1000).toFixed(2)} s`;
const millis = (ms: number) =>
  ms >= 1000 ? seconds(ms) : ms >= 1 ? `${ms.toFixed(ms < 10 ? 1 : 0)} ms` : `${(ms * 1000).toFixed(0)} µs`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const kb = (bytes: number) => `${(bytes / 1e3).toFixed(0)} KB`;
const count = (n: number) => n.toLocaleString("en-US");
const storeName = (kind: "file" | "s3") => (kind === "file" ? "file://" : "S3 (moto)");
const timeCell = (s: Stats, format = millis) => `${format(s.median)} (${format(s.min)}–${format(s.max)})`;

/** Peak RSS, with the wasm linear memory and the JS heap at the end of the run (medians). */
function memoryCell(results: { peakRssBytes: number; memory?: { wasmBytes: number; jsHeapTotalBytes: number } }[]) {
  const rss = mb(stats(results.map((r) => r.peakRssBytes)).median);
  const withMemory = results.filter((r) => r.memory);
  if (!withMemory.length) return rss;
  const wasm = mb(stats(withMemory.map((r) => r.memory!.wasmBytes)).median);
  const heap = mb(stats(withMemory.map((r) => r.memory!.jsHeapTotalBytes)).median);
  return `${rss} (wasm ${wasm}, JS heap ${heap})`;
}

function requestsCell(requests: Record<string, number>): string {
  const parts = Object.entries(requests).sort().map(([kind, n]) => `${kind} ×${n}`);
  return parts.length ? parts.join(", ") : "none";
}

/** The median run's request counts (they do not vary between runs of a zero-diff sync; other runs are checked). */
function requestsOf(results: SyncResult[]): string {
  const cells = new Set(results.map((result) => requestsCell(result.requests)));
  return [...cells].join(" / ");
}

const bytesText = (bytes: number) => (bytes >= 1e6 ? mb(bytes) : `${(bytes / 1e3).toFixed(1)} KB`);
const OBJECT_KINDS: ObjectKind[] = ["data", "shard", "_meta.json", "monolith", "format marker", "lock"];
const OBJECT_NAMES: Record<ObjectKind, string> = {
  data: "data object",
  shard: "shard",
  "_meta.json": "`_meta.json`",
  monolith: "monolith",
  "format marker": "format marker",
  lock: "lock",
};
const noTally: ObjectTally = { requests: 0, writes: 0, bytesSent: 0, bytesReceived: 0 };

/** Requests by the kind of object addressed, e.g. "`_meta.json` ×1" (each distinct cell of the runs). */
function objectsOf(results: SyncResult[]): string {
  const cells = new Set(results.map((result) => {
    const parts = OBJECT_KINDS.filter((kind) => result.byObject[kind]?.requests)
      .map((kind) => `${OBJECT_NAMES[kind]} ×${count(result.byObject[kind]!.requests)}`);
    return parts.length ? parts.join(", ") : "none";
  }));
  return [...cells].join(" / ");
}

/** Bytes sent by the kind of object written (medians), e.g. "data object 2.1 KB, shard 3.4 KB". */
function sentSplit(results: SyncResult[]): string {
  return OBJECT_KINDS.map((kind) => {
    const tallies = results.map((result) => result.byObject[kind] ?? noTally);
    const writes = stats(tallies.map((tally) => tally.writes)).median;
    const sent = stats(tallies.map((tally) => tally.bytesSent)).median;
    return writes ? `${OBJECT_NAMES[kind]}${writes > 1 ? ` ×${writes}` : ""} ${bytesText(sent)}` : "";
  }).filter(Boolean).join(", ") || "nothing";
}

/** One object kind's requests and bytes each way (medians), for the one-changed-file table. */
function objectCell(results: SyncResult[], kind: ObjectKind): string {
  const tallies = results.map((result) => result.byObject[kind] ?? noTally);
  const requests = stats(tallies.map((tally) => tally.requests)).median;
  if (!requests) return "–";
  const writes = stats(tallies.map((tally) => tally.writes)).median;
  const sent = stats(tallies.map((tally) => tally.bytesSent)).median;
  const received = stats(tallies.map((tally) => tally.bytesReceived)).median;
  const parts = [`${count(requests)} req. (${writes} write${writes === 1 ? "" : "s"})`];
  if (sent) parts.push(`sent ${bytesText(sent)}`);
  if (received) parts.push(`received ${bytesText(received)}`);
  return parts.join("; ");
}

/** Median duration of each trace phase and host-call kind across runs, largest first. */
function breakdownOf(results: SyncResult[], limit = 6): string {
  const phases = new Map<string, number[]>();
  for (const result of results) {
    for (const phase of result.phases) phases.set(phase.name, [...(phases.get(phase.name) ?? []), phase.ms]);
  }
  const phaseText = [...phases].map(([name, values]) => `${name} ${millis(stats(values).median)}`).join("; ");
  const host = new Map<string, number[]>();
  for (const result of results) {
    for (const [kind, ms] of Object.entries(result.hostMs)) host.set(kind, [...(host.get(kind) ?? []), ms]);
    host.set("wasm core + boundary", [...(host.get("wasm core + boundary") ?? []), result.outsideHostMs]);
  }
  const hostText = [...host]
    .map(([kind, values]) => [kind, stats(values).median] as const)
    .filter(([, ms]) => ms >= 1)
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([kind, ms]) => `${kind} ${millis(ms)}`)
    .join("; ");
  return `trace: ${phaseText || "(no phases)"}<br>time by host call: ${hostText}`;
}

async function exec(command: string, commandArgs: string[], env?: Record<string, string>): Promise<string> {
  try {
    const output = await new Deno.Command(command, { args: commandArgs, env, stdout: "piped", stderr: "piped" })
      .output();
    return new TextDecoder().decode(output.stdout).trim();
  } catch {
    return "unknown";
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Stores

let motoBucket: Promise<string> | undefined;
const runId = new Date().toISOString().replace(/[-:.TZ]/g, "").slice(0, 14);

function useMotoCredentials(): void {
  Deno.env.set("AWS_ACCESS_KEY_ID", "marsh-bench");
  Deno.env.set("AWS_SECRET_ACCESS_KEY", "marsh-bench");
  Deno.env.set("AWS_REGION", "us-east-1");
}

function bucketForMoto(): Promise<string> {
  motoBucket ??= (async () => {
    useMotoCredentials();
    const name = `marsh-bench-${runId}`;
    const admin = new S3Client({
      endpoint: s3Endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "marsh-bench", secretAccessKey: "marsh-bench" },
    });
    try {
      await admin.send(new CreateBucketCommand({ Bucket: name }));
    } finally {
      admin.destroy();
    }
    return name;
  })();
  return motoBucket;
}

/** A fresh, empty store: a new `file://` directory or a new moto prefix. */
async function freshStore(kind: "file" | "s3", name: string): Promise<StoreSpec> {
  if (kind === "file") {
    const dir = `${tmp}/stores/${name}`;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    return { kind: "file", root: dir };
  }
  return { kind: "s3", endpoint: s3Endpoint!, bucket: await bucketForMoto(), prefix: `${runId}/${name}` };
}

function openStore(spec: StoreSpec): MarshStore & { destroy?: () => void } {
  return spec.kind === "file"
    ? new FsStore(spec.root)
    : new S3Store({ bucket: spec.bucket, prefix: spec.prefix, endpoint: spec.endpoint, forcePathStyle: true });
}

/**
 * Put the dataset's index into the store, and nothing else: a zero-diff sync never downloads an object, so the data
 * objects need not exist (writing 250k objects to moto would take far longer than the benchmark itself).
 */
async function putIndexOnly(spec: StoreSpec, dataset: Dataset): Promise<void> {
  const store = openStore(spec);
  await store.putBytes(INDEX_KEY, await Deno.readFile(dataset.index), { kind: "none" });
  store.destroy?.();
}

async function resetCache(dataset: Dataset): Promise<void> {
  for (const name of INTERNAL) await Deno.remove(`${dataset.cache}/${name}`, { recursive: true }).catch(() => {});
}

/** The format-2 index a seeding wrote: its objects and their sizes. */
interface ShardedIndex {
  shards: number;
  shardBytes: number;
  medianShardBytes: number;
  maxShardBytes: number;
  metaBytes: number;
  /** Wall time of the migration that wrote it (monolith → shards), and its requests. */
  migrateMs: number;
  requests: Record<string, number>;
}

/** A counting store that also notes the size of every object written. */
class SizingStore extends CountingStore {
  readonly sizes = new Map<string, number>();

  override putBytes(key: string, bytes: Uint8Array, precondition: Precondition, options?: CallOptions) {
    this.sizes.set(key, bytes.length);
    return super.putBytes(key, bytes, precondition, options);
  }
}

/**
 * A format-2 bucket holding the dataset's index and nothing else: the monolith is put first, then converted by the
 * engine's own migration (`migrateMonolithToShards`, so shard assignment and encoding are marsh's), then the sealed
 * monolith the migration leaves is deleted, so the bucket looks like one that started in format 2.
 */
async function putShardedIndex(spec: StoreSpec, dataset: Dataset): Promise<ShardedIndex> {
  await putIndexOnly(spec, dataset);
  const inner = openStore(spec);
  const store = new SizingStore(inner);
  const unused = await Deno.makeTempDir({ prefix: "marsh-bench-migrate-" });
  const started = performance.now();
  try {
    const migrated = await new SyncService(store, new DenoCache(unused), undefined).migrateMonolithToShards(makeEnv());
    if (!migrated.converted) throw new Error("migration: the bucket was format 2 already");
  } finally {
    await Deno.remove(unused, { recursive: true });
  }
  const migrateMs = performance.now() - started;
  await inner.delete(INDEX_KEY);
  inner.destroy?.();
  const shardSizes = [...store.sizes].filter(([key]) => key.startsWith("_index/") && key !== "_index/_meta.json")
    .map(([, bytes]) => bytes).sort((a, b) => a - b);
  return {
    shards: shardSizes.length,
    shardBytes: shardSizes.reduce((a, b) => a + b, 0),
    medianShardBytes: shardSizes[Math.floor(shardSizes.length / 2)] ?? 0,
    maxShardBytes: shardSizes.at(-1) ?? 0,
    metaBytes: store.sizes.get("_index/_meta.json") ?? 0,
    migrateMs,
    requests: { ...store.requests },
  };
}

/** The file the one-changed-file scenario edits: a data file (`…/raw`) in the middle of the sorted keys. */
function changedFile(dataset: Dataset): string {
  const middle = Math.floor(dataset.manifest.n / 2);
  const found = dataset.entries.slice(middle).find((entry) => entry.key.endsWith("/raw")) ?? dataset.entries[middle];
  return found.key;
}

function syncSpec(store: StoreSpec, cache: string, extra: Partial<SyncSpec> = {}): SyncSpec {
  return { kind: "sync", store, cache, operations: ["pull", "push"], ...extra };
}

// ---------------------------------------------------------------------------------------------------------------------
// Scenarios 1, 2 and 5: one block per (store, N), sharing the populated store

interface Block {
  store: "file" | "s3";
  n: number;
  format: Format;
  /** The monolith's bytes (format 1), or the format-2 objects written from it. */
  indexBytes: number;
  sharded?: ShardedIndex;
  /** The file scenario 5 edits, and the shard holding it (format 2). */
  changed?: { rel: string; shardBytes?: number };
  firstSync?: SyncResult;
  slowPath?: SyncResult[];
  zeroDiff?: SyncResult[];
  /** One changed file after a bare `markDirty()` (anything may have changed)… */
  oneChanged?: SyncResult[];
  /** …and after `markDirty({ relPath })` naming it, as swamp calls it when it knows the file. */
  oneChangedPath?: SyncResult[];
  /**
   * Format 2: the slow-path floor (`_meta.json` and every shard read plainly, every indexed path stat'ed), one child per
   * slow-path run, alternated with them; with each child's peak RSS.
   */
  floor?: { run: FloorRun; peakRssBytes: number }[];
}

/** One slow-path floor run in a child of its own (its peak RSS is its own). */
async function floorRun(store: StoreSpec, dataset: Dataset): Promise<{ run: FloorRun; peakRssBytes: number }> {
  log(`${storeName(store.kind)} ${count(dataset.manifest.n)}: slow-path floor (plain index read + statMany)`);
  const result = await runChild<FloorResult>({ kind: "floor", store, cache: dataset.cache, runs: 1 });
  if (result.runs[0].paths !== dataset.manifest.n) {
    throw new Error(`floor: ${result.runs[0].paths} indexed paths, expected ${dataset.manifest.n}`);
  }
  return { run: result.runs[0], peakRssBytes: result.peakRssBytes };
}

async function syncBlock(kind: "file" | "s3", dataset: Dataset, reps: number, format: Format): Promise<Block> {
  const n = dataset.manifest.n;
  const block: Block = { store: kind, n, format, indexBytes: dataset.manifest.indexBytes };
  const what = `${kind} ${count(n)} format ${format}`;
  log(`${what}: populating (index only)`);
  await resetCache(dataset);
  const store = await freshStore(kind, `sync-f${format}-${n}`);
  if (format === 2) {
    block.sharded = await putShardedIndex(store, dataset);
    log(
      `${what}: ${count(block.sharded.shards)} shards, ${mb(block.sharded.shardBytes)}, _meta.json ${
        kb(block.sharded.metaBytes)
      }, migrated in ${seconds(block.sharded.migrateMs)}`,
    );
  } else {
    await putIndexOnly(store, dataset);
  }

  log(`${what}: first sync (no sidecar, no view)`);
  block.firstSync = await runChild<SyncResult>(syncSpec(store, dataset.cache));
  checkZeroDiff(block.firstSync, "first sync");

  if (only.has("2")) {
    block.slowPath = [];
    if (format === 2) block.floor = [];
    for (let rep = 0; rep < reps; rep++) {
      // The floor beside each run, first in odd runs: both meet the same machine load.
      if (block.floor && rep % 2 === 1) block.floor.push(await floorRun(store, dataset));
      log(`${what}: zero-diff sync after deleting the sidecar, run ${rep + 1}/${reps}`);
      const result = await runChild<SyncResult>(
        syncSpec(store, dataset.cache, { prepare: { deleteInternal: [SIDECAR] } }),
      );
      checkZeroDiff(result, "slow path");
      block.slowPath.push(result);
      if (block.floor && rep % 2 === 0) block.floor.push(await floorRun(store, dataset));
    }
  }
  if (only.has("1")) {
    // The sidecar is valid now (the last sync verified the index and recorded the cache clean).
    block.zeroDiff = [];
    const zeroReps = Math.max(reps, quick ? 3 : 10);
    for (let rep = 0; rep < zeroReps; rep++) {
      block.zeroDiff.push(await runChild<SyncResult>(syncSpec(store, dataset.cache)));
    }
    log(`${what}: zero-diff sync with a valid sidecar, ${zeroReps} runs`);
  }
  if (only.has("5")) {
    block.oneChanged = [];
    const rel = changedFile(dataset);
    block.changed = { rel };
    // The one data object the scenario replaces must exist: a push replaces an object only on condition of the
    // version its base had (a HEAD of it, then PUT If-Match), and counts a missing one as another writer's move.
    const seeded = openStore(store);
    await seeded.putBytes(rel, await Deno.readFile(`${dataset.cache}/${rel}`), { kind: "none" });
    seeded.destroy?.();
    block.oneChangedPath = [];
    let variant = 0;
    for (const markPath of [false, true]) {
      for (let rep = 0; rep < reps; rep++) {
        log(`${what}: one changed file, ${markPath ? "marked by path" : "bare mark"}, run ${rep + 1}/${reps}`);
        const from = `${tmp}/edit.bin`;
        await Deno.writeFile(from, editedBytes(dataset, rel, ++variant));
        const result = await runChild<SyncResult>(
          syncSpec(store, dataset.cache, { prepare: { edit: { rel, from, markPath } } }),
        );
        if (result.reports.push?.uploaded !== 1) {
          throw new Error(`one changed file: uploaded ${result.reports.push?.uploaded}`);
        }
        (markPath ? block.oneChangedPath : block.oneChanged).push(result);
      }
    }
    if (format === 2) block.changed.shardBytes = block.oneChanged.at(-1)?.byObject.shard?.bytesSent;
    await restoreFile(dataset, rel);
  }
  // The next block starts without view or sidecar, so the restored file is judged by the official rule again.
  await resetCache(dataset);
  return block;
}

function checkZeroDiff(result: SyncResult, what: string): void {
  const { pull, push } = result.reports;
  if ((pull?.downloaded ?? 0) !== 0 || (push?.uploaded ?? 0) !== 0 || push?.indexWritten) {
    throw new Error(`${what} was not zero-diff: ${JSON.stringify(result.reports)}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Scenario 3: planning in wasm vs native

interface NativeBench {
  id: string;
  meanNs: number;
  elements?: number;
}

/** Every criterion result under `<target>/criterion`: id, mean time per iteration, elements per iteration. */
async function readCriterion(dir: string): Promise<NativeBench[]> {
  const found: NativeBench[] = [];
  const visit = async (path: string) => {
    for await (const entry of Deno.readDir(path)) {
      const child = `${path}/${entry.name}`;
      if (entry.isDirectory && entry.name === "new") {
        try {
          const benchmark = JSON.parse(await Deno.readTextFile(`${child}/benchmark.json`));
          const estimates = JSON.parse(await Deno.readTextFile(`${child}/estimates.json`));
          found.push({
            id: benchmark.full_id,
            meanNs: estimates.mean.point_estimate,
            elements: benchmark.throughput?.Elements,
          });
        } catch {
          // not a benchmark directory
        }
      } else if (entry.isDirectory && entry.name !== "base" && entry.name !== "report") {
        await visit(child);
      }
    }
  };
  await visit(dir).catch(() => {});
  return found.sort((a, b) => a.id.localeCompare(b.id));
}

async function runCriterion(indexPath: string): Promise<NativeBench[]> {
  const target = Deno.env.get("CARGO_TARGET_DIR") ?? `${root}/target`;
  await Deno.remove(`${target}/criterion`, { recursive: true }).catch(() => {});
  log(`native: cargo bench --bench index (dry run over ${indexPath})`);
  const output = await new Deno.Command("cargo", {
    args: ["bench", "--quiet", "--bench", "index"],
    cwd: root,
    env: { MARSH_BENCH_INDEX: indexPath, MARSH_BENCH_QUICK: quick ? "1" : "0" },
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!output.success) throw new Error("cargo bench failed");
  return await readCriterion(`${target}/criterion`);
}

// ---------------------------------------------------------------------------------------------------------------------
// Scenario 4: transfers, marsh against a plain loop over the same store adapter

/** One store's comparison: every measured run of both engines in both directions (one child process). */
interface TransferBlock {
  store: "file" | "s3";
  files: number;
  bytes: number;
  runs: TransferRun[];
  peakRssBytes: number;
}

async function transferScenario(kind: "file" | "s3", dataset: Dataset): Promise<TransferBlock> {
  const files = dataset.manifest.n;
  log(`transfers, ${storeName(kind)}: populating the source with ${count(files)} files (a marsh push, not measured)`);
  await resetCache(dataset);
  const source = await freshStore(kind, `transfer-source-${files}`);
  const pushed = await runChild<SyncResult>({
    kind: "sync",
    store: source,
    cache: dataset.cache,
    operations: ["push"],
  });
  if (pushed.reports.push?.uploaded !== files) throw new Error(`source push uploaded ${pushed.reports.push?.uploaded}`);
  await resetCache(dataset);
  const uploadTo = await freshStore(kind, `transfer-up-${files}`);
  log(
    `transfers, ${
      storeName(kind)
    }: ${settings.transferReps} rounds of marsh and the plain loop, download and upload, ` +
      `one child process`,
  );
  const result = await runChild<TransferResult>({
    kind: "transfer",
    source,
    uploadTo,
    cache: dataset.cache,
    index: dataset.index,
    scratch: `${tmp}/transfer-scratch`,
    reps: settings.transferReps,
    directions: ["download", "upload"],
    window: TRANSFER_WINDOW,
  }, true);
  await Deno.remove(`${tmp}/transfer-scratch`, { recursive: true }).catch(() => {});
  if (kind === "file") await Deno.remove((source as { root: string }).root, { recursive: true }).catch(() => {});
  await resetCache(dataset);
  return {
    store: kind,
    files: result.files,
    bytes: result.bytes,
    runs: result.runs,
    peakRssBytes: result.peakRssBytes,
  };
}

/** The medians of one direction of one block: each engine's time and files/s, and marsh's rate over the plain one. */
interface TransferFigures {
  direction: TransferDirection;
  marsh: Stats;
  plain: Stats;
  marshRate: number;
  plainRate: number;
  ratio: number;
  /** The ratio within each round (marsh's files/s over the plain loop's of the same round). */
  roundRatios: number[];
  /** The client process's CPU time per run (medians), and the ratio of files per CPU second (plain CPU ÷ marsh CPU). */
  marshCpu: Stats;
  plainCpu: Stats;
  cpuRatio: number;
}

function transferFigures(block: TransferBlock, direction: TransferDirection): TransferFigures | undefined {
  const runsOf = (engine: TransferEngine) =>
    block.runs.filter((run) => run.engine === engine && run.direction === direction);
  const [marshRuns, plainRuns] = [runsOf("marsh"), runsOf("plain")];
  if (!marshRuns.length || !plainRuns.length) return undefined;
  const marsh = stats(marshRuns.map((run) => run.ms));
  const plain = stats(plainRuns.map((run) => run.ms));
  const marshRate = block.files / (marsh.median / 1000);
  const plainRate = block.files / (plain.median / 1000);
  const roundRatios = marshRuns.flatMap((run) => {
    const partner = plainRuns.find((other) => other.round === run.round);
    return partner ? [partner.ms / run.ms] : [];
  });
  const marshCpu = stats(marshRuns.map((run) => run.cpuMs));
  const plainCpu = stats(plainRuns.map((run) => run.cpuMs));
  return {
    direction,
    marsh,
    plain,
    marshRate,
    plainRate,
    ratio: marshRate / plainRate,
    roundRatios,
    marshCpu,
    plainCpu,
    cpuRatio: plainCpu.median / marshCpu.median,
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Main

const startedAt = new Date();
const loadBefore = (await Deno.readTextFile("/proc/loadavg").catch(() => "")).split(" ").slice(0, 3).join(" ");
const cpuModel = /model name\s*:\s*(.+)/.exec(await Deno.readTextFile("/proc/cpuinfo").catch(() => ""))?.[1] ??
  "unknown";
const memTotalKb = Number(/MemTotal:\s+(\d+)/.exec(await Deno.readTextFile("/proc/meminfo").catch(() => ""))?.[1] ?? 0);
const rustc = await exec("rustc", ["--version"]);
const nproc = await exec("nproc", []);

await Deno.mkdir(tmp, { recursive: true });
// Only the datasets the chosen scenarios use (the 250k one takes minutes to generate and 1.5 GB of disk).
const syncScenarios = ["1", "2", "5"].some((id) => only.has(id));
const needBig = (syncScenarios && sizes.has("big")) || ["2", "3", "micro"].some((id) => only.has(id));
const small = syncScenarios && sizes.has("small")
  ? await ensureDataset(`${tmp}/data-${settings.small}`, settings.small, SEED, log)
  : undefined;
// `--layout dirs`: the big dataset is directory-heavy (bench/gen.ts), for the walk-against-find comparison.
const layout = (flagValue("layout") ?? "swamp") as Layout;
const bigDir = `${tmp}/data-${settings.big}${layout === "dirs" ? "-dirs" : ""}`;
const bigOrNone = needBig ? await ensureDataset(bigDir, settings.big, SEED, log, "mixed", layout) : undefined;
/** Read only by the scenarios that made `needBig` true. */
const big = bigOrNone!;
const transfer = only.has("4")
  ? await ensureDataset(`${tmp}/data-tiny-${settings.transferFiles}`, settings.transferFiles, SEED + 1, log, "tiny")
  : undefined;

// One after the other: concurrent children would disturb each other's figures.
const idleRuns: { peakRssBytes: number; memory: { wasmBytes: number; jsHeapTotalBytes: number } }[] = [];
for (let i = 0; i < 3; i++) idleRuns.push(await runChild({ kind: "idle" }));
const idle = stats(idleRuns.map((result) => result.peakRssBytes));

const blocks: Block[] = [];
if (["1", "2", "5"].some((id) => only.has(id))) {
  const stores = (["file", "s3"] as const).filter((kind) => storeKinds.has(kind) && (kind === "file" || s3Endpoint));
  if (!s3Endpoint) log("MARSH_S3_ENDPOINT is not set: moto scenarios skipped (run under scripts/with-emulators.sh)");
  for (const kind of stores) {
    for (const [size, dataset, reps] of [["small", small, settings.reps], ["big", big, settings.bigReps]] as const) {
      if (!sizes.has(size) || !dataset) continue;
      for (const format of formats) blocks.push(await syncBlock(kind, dataset, reps, format));
    }
  }
}

/**
 * The floor under the slow path: the same tree listed and stat'ed by `DenoCache.walkPacked` alone, and by `find`
 * (one thread, no JavaScript: what the kernel's directory reads and stats cost on this machine).
 */
let walkFloor: { deno: Stats; find: Stats; files: number; peakRssBytes: number } | undefined;
if (only.has("2")) {
  log(`walk floor: ${count(big.manifest.n)} files, Deno walk and find`);
  const walked = await runChild<{ runsMs: number[]; files: number; peakRssBytes: number }>({
    kind: "walk",
    cache: big.cache,
    runs: 3,
  });
  const findMs: number[] = [];
  for (let run = 0; run < 3; run++) {
    const started = performance.now();
    const found = await new Deno.Command("find", { args: [big.cache, "-printf", "%s %T@\\n"], stdout: "null" })
      .output();
    if (!found.success) throw new Error(`find failed on ${big.cache}`);
    findMs.push(performance.now() - started);
  }
  walkFloor = {
    deno: stats(walked.runsMs),
    find: stats(findMs),
    files: walked.files,
    peakRssBytes: walked.peakRssBytes,
  };
}

/**
 * Planning runs in several children, each planning `planRuns` times: on a shared machine one process can be slower
 * throughout than the next (seen on this VM: ~1.5× from one child to another), so one child alone is not a fair sample.
 */
const planChildren = 3;
interface PlanRow {
  format: Format;
  wasm: PlanResult;
  /** Per child: the median of its plans (index parse + diff), and its first plan (cold code). */
  perChild: { medianMs: number; coldMs: number }[];
}
const planRows: PlanRow[] = [];
let native: NativeBench[] = [];
if (only.has("3")) {
  for (const format of formats) {
    let row: PlanRow | undefined;
    for (let child = 0; child < planChildren; child++) {
      log(
        `planning in wasm, format ${format}, child ${
          child + 1
        }/${planChildren}: ${settings.planRuns} dry-run pulls of ${count(big.manifest.n)} entries`,
      );
      const result = await runChild<PlanResult>({
        kind: "plan-wasm",
        index: big.index,
        runs: settings.planRuns,
        format,
      });
      const plans = result.splits.map((split) => split.indexParseMs + split.listingAndDecideMs);
      const perChild = { medianMs: stats(plans).median, coldMs: result.coldPlanMs };
      if (!row) row = { format, wasm: result, perChild: [perChild] };
      else {
        row.perChild.push(perChild);
        row.wasm = {
          ...row.wasm,
          runsMs: [...row.wasm.runsMs, ...result.runsMs],
          splits: [...row.wasm.splits, ...result.splits],
          planCpuMs: [...row.wasm.planCpuMs, ...result.planCpuMs],
          peakRssBytes: Math.max(row.wasm.peakRssBytes, result.peakRssBytes),
        };
      }
    }
    planRows.push(row!);
  }
}
/** The targets are judged on the default layout, format 2 (format 1 when only it was measured). */
const planMain = planRows.find((row) => row.format === 2) ?? planRows[0];
const planWasm = planMain?.wasm;
const planPerChild = planMain?.perChild ?? [];
if (only.has("3") || only.has("micro")) native = await runCriterion(big.index);

const transfers: TransferBlock[] = [];
if (transfer) {
  for (const kind of ["file", "s3"] as const) {
    if (!storeKinds.has(kind)) continue;
    if (kind === "s3" && !s3Endpoint) log("MARSH_S3_ENDPOINT is not set: moto transfers skipped");
    else transfers.push(await transferScenario(kind, transfer));
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Report

const loadAfter = (await Deno.readTextFile("/proc/loadavg").catch(() => "")).split(" ").slice(0, 3).join(" ");
const lines: string[] = [];
const out = (line = "") => lines.push(line);
const formatName = (format: Format) => (format === 2 ? "2 (shards)" : "1 (monolith)");
/** The index a block's store held: the monolith's size, or the format-2 objects'. */
const indexCell = (b: Block) =>
  b.sharded
    ? `${count(b.sharded.shards)} shards, ${mb(b.sharded.shardBytes)} + \`_meta.json\` ${
      bytesText(b.sharded.metaBytes)
    }`
    : mb(b.indexBytes);

out("# marsh benchmarks");
out();
out(
  `Written by \`${["bash scripts/bench.sh", ...args].join(" ")}\` on ${startedAt.toISOString()} (${
    quick ? "QUICK mode: small N, few runs — for development and CI" : args.length ? "a narrowed run" : "full run"
  }). Regenerate with the same command. The full run, every scenario at every size with the transfer comparison at ` +
    "10,000 files on file:// and moto, is the one command `bash scripts/bench.sh` (writes `bench/results/RESULTS.md`).",
);
out(
  "Figures were taken on a **shared machine** (other jobs were running on the same cores): treat times as indicative; " +
    "request counts and byte counts are exact.",
);
out();
out("## Machine and versions");
out();
out("| nproc | memory | CPU | load average (start → end) | marsh | deno | rustc | wasm module |");
out("| --- | --- | --- | --- | --- | --- | --- | --- |");
out(
  `| ${nproc} | ${(memTotalKb / 1024 / 1024).toFixed(1)} GiB | ${cpuModel} | ${loadBefore} → ${loadAfter} | ` +
    `${version()} | ` +
    `${Deno.version.deno} | ${rustc.replace(/^rustc /, "")} | ${count(wasmByteLength)} bytes |`,
);
out();
const datasetText = (d: Dataset, what = "") =>
  `${count(d.manifest.n)} files${what} (${mb(d.manifest.fileBytes)} of data, index ${mb(d.manifest.indexBytes)}, ` +
  `keys ${d.manifest.minKeyLength}–${d.manifest.maxKeyLength} chars, mean ${d.manifest.meanKeyLength})`;
out(
  `Datasets (\`bench/gen.ts\`): ` + [
    ...[small, bigOrNone].filter((d) => d !== undefined).map((d) => datasetText(d, `, seed ${SEED}`)),
    ...(transfer ? [datasetText(transfer, `, seed ${SEED + 1}, profile \`tiny\` (scenario 4)`)] : []),
  ].join("; ") + ".",
);
out(
  `Each measured run is a fresh \`deno\` child process; times cover the sync operations only (process start and wasm ` +
    `instantiation excluded); peak RSS is the child's VmHWM (an idle child that only loads the wasm: ` +
    `${memoryCell(idleRuns)}). Cells read "median (min–max)".`,
);
out();

// Targets: judged on format 2, the layout of a new bucket; the format-1 (monolith) baseline is quoted beside them.
const blockOf = (store: "file" | "s3", n: number, format: Format) =>
  blocks.find((b) => b.store === store && b.n === n && b.format === format);
const fileBig = blockOf("file", settings.big, 2);
const fileBigF1 = blockOf("file", settings.big, 1);
const zeroDiffRuns = blocks.filter((b) => b.format === 2).flatMap((b) => b.zeroDiff ?? []);
const zeroDiffF1 = blocks.filter((b) => b.format === 1).flatMap((b) => b.zeroDiff ?? []);
const slowBig = fileBig?.slowPath ? stats(fileBig.slowPath.map((r) => r.wallMs)) : undefined;
const rssBig = fileBig?.slowPath ? stats(fileBig.slowPath.map((r) => r.peakRssBytes)) : undefined;
const changedBig = blocks.find((b) => b.n === settings.big && b.format === 2 && b.oneChanged);
const changedBigF1 = blocks.find((b) => b.n === settings.big && b.format === 1 && b.oneChanged);
const wasmRate = planWasm ? planWasm.entries / (stats(planWasm.runsMs).median / 1000) : undefined;
/**
 * Planning as the target defines it: index parse (from the bytes' copy into wasm) + diff, without the JS store's part.
 * On format 2 the shard parses overlap the in-memory store's answers, so the whole dry run is the figure.
 */
const planMs = planWasm
  ? planMain.format === 2
    ? stats(planWasm.runsMs).median
    : stats(planWasm.splits.map((split) => split.indexParseMs + split.listingAndDecideMs)).median
  : undefined;
const planRate = planWasm && planMs ? planWasm.entries / (planMs / 1000) : undefined;
/** The first dry run of the child: the wasm engine has not optimised the code yet (a CLI sync plans once per process). */
const planColdMs = planPerChild.length ? stats(planPerChild.map((child) => child.coldMs)).median : undefined;
const planCpuRate = planWasm ? planWasm.entries / (stats(planWasm.planCpuMs).median / 1000) : undefined;
const met = (ok: boolean | undefined) => (ok === undefined ? "not measured" : ok ? "**PASS**" : "**MISS**");
out("## Targets");
out();
out(
  "Judged on format 2 (`_index/_meta.json` + shards, the layout of a new bucket); the format-1 (monolith) figures of " +
    "the same run are quoted as the baseline.",
);
out();
out("| target | figure | status |");
out("| --- | --- | --- |");
if (zeroDiffRuns.length) {
  const maxRequests = Math.max(...zeroDiffRuns.map((r) => r.totalRequests));
  const where = [...new Set(blocks.filter((b) => b.format === 2 && b.zeroDiff).map((b) => storeName(b.store)))];
  out(
    `| zero-diff sync = 1 request (format 2) | ${maxRequests} request(s) in every run (${requestsOf(zeroDiffRuns)}; ${
      objectsOf(zeroDiffRuns)
    }), ${where.join(" and ")}, ${
      [...new Set(blocks.filter((b) => b.format === 2 && b.zeroDiff).map((b) => count(b.n)))].join(" and ")
    } entries${
      zeroDiffF1.length
        ? `; format 1: ${Math.max(...zeroDiffF1.map((r) => r.totalRequests))} (${requestsOf(zeroDiffF1)})`
        : ""
    } | ${met(maxRequests === 1)} |`,
  );
}
if (changedBig) {
  const runs = changedBig.oneChanged!;
  const sent = stats(runs.map((r) => r.bytesSent)).median;
  const puts = (kind: ObjectKind) => stats(runs.map((r) => r.byObject[kind]?.writes ?? 0)).median;
  const shape = puts("shard") === 1 && puts("_meta.json") === 1;
  // The commit record lists every shard and every commit rewrites it (the format, for readers' commitSeq fast path):
  // its size, measured on the same bucket, is the floor of any commit's bytes; the rest is what marsh chose to send.
  const metaSent = stats(runs.map((r) => r.byObject["_meta.json"]?.bytesSent ?? 0)).median;
  const beyondFloor = sent - metaSent;
  out(
    `| ${count(settings.big)} entries, one changed file: one shard + \`_meta.json\` sent, < 100 KB (format 2) | ${
      bytesText(sent)
    } sent (${storeName(changedBig.store)}): ${sentSplit(runs)}; ${puts("shard")} shard write(s), ${
      puts("_meta.json")
    } \`_meta.json\` write(s). Floor: \`_meta.json\` itself, ${bytesText(metaSent)} (the format lists all ${
      count(changedBig.sharded?.shards ?? 0)
    } shards in it and every commit rewrites it); beyond it ${bytesText(beyondFloor)}${
      changedBigF1
        ? `; format 1: ${bytesText(stats(changedBigF1.oneChanged!.map((r) => r.bytesSent)).median)} sent`
        : ""
    } | shape ${met(shape)}, size ${met(sent < 100_000)}; beyond the floor ${met(beyondFloor < 100_000)} |`,
  );
  const marked = changedBig.oneChangedPath ?? [];
  if (marked.length) {
    const requests = stats(marked.map((r) => r.totalRequests)).median;
    const bare = stats(runs.map((r) => r.totalRequests)).median;
    // A walk of the whole cache shows as time in `cache.walk` (a marked path is looked at with `walkUnder`).
    const walks = marked.filter((r) => (r.hostMs["cache.walk"] ?? 0) > 0).length;
    out(
      `| ${count(settings.big)} entries, push of one marked path: O(1) requests, no cache walk (format 2) | ${
        count(requests)
      } requests (${requestsOf(marked)}), ${timeCell(stats(marked.map((r) => r.wallMs)))}; runs that walked the ` +
        `cache: ${walks} of ${marked.length}; after a bare markDirty instead: ${count(bare)} requests | ${
          met(requests <= 10 && walks === 0)
        } |`,
    );
  }
}
if (slowBig) {
  const first = fileBig!.firstSync!;
  const runs = fileBig!.slowPath!;
  const pull = stats(runs.map((r) => r.operationMs.pull));
  // The pull's trace names its walk when it makes one (src/engine/pull.rs).
  const walked = runs.filter((r) => r.phases.some((p) => p.name === "pull: index read, walk and view read")).length;
  const floor = fileBig!.floor?.length ? stats(fileBig!.floor.map((f) => f.run.ms)) : undefined;
  // The target on the directory-heavy layout is `find` over the same tree, measured in this run.
  const limit = layout === "dirs" && walkFloor ? walkFloor.find.median : 3000;
  const limitName = layout === "dirs" ? "`find`'s time over the same tree" : "3 s";
  out(
    `| ${count(settings.big)}-entry slow-path pull (no sidecar) ≤ ${limitName} (file://, format 2, ${
      layout === "dirs" ? "directory-heavy layout" : "the bench's layout"
    }); no walk | pull ${timeCell(pull)}${
      walkFloor ? `; \`find\` ${timeCell(walkFloor.find)}` : ""
    }; pulls that walked: ${walked} of ${runs.length}; floor (every shard read plainly, then \`statMany\` of every path on one thread, same run) ${
      floor ? `${timeCell(floor)}, pull ÷ floor ${(pull.median / floor.median).toFixed(2)}×` : "not measured"
    }; whole sync ${timeCell(slowBig)} (${
      count(stats(runs.map((r) => r.totalRequests)).median)
    } requests; the push walks: nothing says the cache was left clean); first sync (no view) ${seconds(first.wallMs)}${
      fileBigF1?.slowPath
        ? `; format 1: ${timeCell(stats(fileBigF1.slowPath.map((r) => r.wallMs)))}, first sync ${
          seconds(fileBigF1.firstSync!.wallMs)
        }`
        : ""
    } | ${met(pull.median <= limit && walked === 0)}${
      floor && pull.median > limit && floor.median > limit ? ", the floor itself is above it" : ""
    } |`,
  );
}
if (wasmRate !== undefined) {
  const how = planMain.format === 2
    ? `for the whole dry-run pull on format 2 (\`_meta.json\` and every shard from the in-memory store, parse, diff; ${
      millis(planMs!)
    } median`
    : `for index parse + diff on format 1 (${millis(planMs!)} median`;
  out(
    `| planning ≥ 1M entries/s in wasm | ${(planRate! / 1e6).toFixed(2)}M entries/s ${how} of ${
      planWasm!.splits.length
    } plans in ${planPerChild.length} processes, per process ${
      planPerChild.map((child) => millis(child.medianMs)).join(", ")
    } parse + diff; a fresh process's first plan ${millis(planColdMs!)}; by the process's CPU time from the last ${
      planMain.format === 2 ? "shard" : "index"
    } answer, which other jobs on the machine do not stretch as much, ${(planCpuRate! / 1e6).toFixed(2)}M entries/s)${
      planRows.filter((row) => row !== planMain).map((row) =>
        `; format ${row.format}: whole dry-run pull ${
          (row.wasm.entries / (stats(row.wasm.runsMs).median / 1000) / 1e6).toFixed(2)
        }M entries/s`
      ).join("")
    } | ${met(planRate! >= 1e6)} |`,
  );
}
/** The pull's own high-water mark in the slow-path children (the push after it walks the cache). */
function pullPeakNote(runs: SyncResult[]): string {
  const peaks = runs.map((r) => r.pullPeakRssBytes).filter((peak): peak is number => peak !== undefined);
  return peaks.length
    ? `; the pull's own peak (read when it returned, before the push) ${
      mb(stats(peaks).median - idle.median)
    } above idle`
    : "";
}

if (rssBig && fileBig) {
  const limit = 2 * fileBig.indexBytes;
  out(
    `| peak memory above an idle process ≤ 2× index bytes (${mb(limit)}, the monolith's size) | ${
      mb(rssBig.median)
    } peak RSS in the ${count(settings.big)}-entry slow path, format 2 (${
      mb(rssBig.median - idle.median)
    } above an idle child; wasm linear memory ${
      mb(stats(fileBig.slowPath!.map((r) => r.memory?.wasmBytes ?? 0)).median)
    }${pullPeakNote(fileBig.slowPath!)}${
      walkFloor ? `; the walk alone, in a child of its own, ${mb(walkFloor.peakRssBytes - idle.median)} above idle` : ""
    }${
      fileBig.floor?.length
        ? `; the slow-path floor (every shard read plainly, then \`statMany\` on one thread) in a child of its own, ${
          mb(stats(fileBig.floor.map((f) => f.peakRssBytes)).median - idle.median)
        } above idle`
        : ""
    }${
      fileBigF1?.slowPath ? `; format 1: ${mb(stats(fileBigF1.slowPath.map((r) => r.peakRssBytes)).median)}` : ""
    }) | ${met(rssBig.median - idle.median <= limit)} |`,
  );
}
for (const block of transfers) {
  for (const direction of ["download", "upload"] as const) {
    const f = transferFigures(block, direction);
    if (!f) continue;
    const what = direction === "download" ? "fresh pull" : "initial push";
    out(
      `| ${what}, ${storeName(block.store)}: marsh ≥ ${TRANSFER_TARGET}× the plain loop's files/s (${
        count(block.files)
      } files, same run) | ${f.ratio.toFixed(2)}×: marsh ${f.marshRate.toFixed(0)} files/s (${
        millis(f.marsh.median)
      }), plain ${f.plainRate.toFixed(0)} files/s (${
        millis(f.plain.median)
      }), medians of ${f.marsh.n} rounds; per round ${
        f.roundRatios.map((r) => r.toFixed(2)).join(", ")
      }; by client CPU time ${f.cpuRatio.toFixed(2)}× | ${met(f.ratio >= TRANSFER_TARGET)} |`,
    );
  }
}
out(`| wasm ≤ 700 KB | ${count(wasmByteLength)} bytes (${kb(wasmByteLength)}) | ${met(wasmByteLength <= 700_000)} |`);
if (quick) out("\n_Quick mode: the size targets are judged on the smaller N, so they say little._");
out();

// The format-2 index objects of each dataset
if (blocks.some((b) => b.sharded)) {
  out("## The format-2 index");
  out();
  out(
    "What the engine's migration (`migrateMonolithToShards`) wrote from each dataset's monolith, with the official " +
      "sharding rules (docs/formats.md): one shard per model's `data/` and `outputs/` files, one per workflow's runs, " +
      "one for `models/`, one for `workflows/`.",
  );
  out();
  out(
    "| store | files | monolith | shards | shard bytes (total) | shard median | shard max | `_meta.json` | migration | migration requests |",
  );
  out("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const b of blocks.filter((b) => b.sharded)) {
    const x = b.sharded!;
    out(
      `| ${storeName(b.store)} | ${count(b.n)} | ${mb(b.indexBytes)} | ${count(x.shards)} | ${mb(x.shardBytes)} | ${
        bytesText(x.medianShardBytes)
      } | ${bytesText(x.maxShardBytes)} | ${bytesText(x.metaBytes)} | ${seconds(x.migrateMs)} | ${
        requestsCell(x.requests)
      } |`,
    );
  }
  out();
}

// 1. zero-diff, valid sidecar
if (blocks.some((b) => b.zeroDiff)) {
  out("## 1. Zero-diff sync (pull + push) with a valid sidecar");
  out();
  out("| store | files | format | runs | wall time | requests | by object | peak RSS |");
  out("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const b of blocks.filter((b) => b.zeroDiff)) {
    const runs = b.zeroDiff!;
    out(
      `| ${storeName(b.store)} | ${count(b.n)} | ${formatName(b.format)} | ${runs.length} | ${
        timeCell(stats(runs.map((r) => r.wallMs)))
      } | ${requestsOf(runs)} | ${objectsOf(runs)} | ${mb(stats(runs.map((r) => r.peakRssBytes)).median)} |`,
    );
  }
  out();
}

// 2. slow path
if (blocks.some((b) => b.slowPath)) {
  out("## 2. Zero-diff sync after the sidecar is deleted (full slow path)");
  out();
  out(
    "The store holds only the index (the official entry fields, no hashes; format 2: the shards and `_meta.json`, " +
      "format 1: the monolith); the cache holds every file with the size and mtime its entry records. Each run deletes " +
      "the sidecar first (the local view stays, as it would). The first sync of a block (no sidecar and no view: a " +
      "cache coming from the official extension) is one run, shown apart.",
  );
  out();
  out(
    "| store | files | format | index | runs | wall time | pull | push | requests | bytes received | peak RSS (wasm memory, JS heap) |",
  );
  out("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const b of blocks.filter((b) => b.slowPath)) {
    const runs = b.slowPath!;
    const first = b.firstSync!;
    out(
      `| ${storeName(b.store)} | ${count(b.n)} | ${formatName(b.format)} | ${indexCell(b)} | ${runs.length} | ${
        timeCell(stats(runs.map((r) => r.wallMs)))
      } | ${millis(stats(runs.map((r) => r.operationMs.pull)).median)} | ${
        millis(stats(runs.map((r) => r.operationMs.push)).median)
      } | ${requestsOf(runs)} | ${mb(stats(runs.map((r) => r.bytesReceived)).median)} | ${memoryCell(runs)} |`,
    );
    if (b.floor?.length) {
      const floor = b.floor;
      out(
        `| ↳ floor: \`_meta.json\` + every shard read plainly, then \`statMany\` of every indexed path on one thread | ${
          count(b.n)
        } | ${formatName(b.format)} | ${mb(floor[0].run.indexBytes)} received | ${floor.length} | ${
          timeCell(stats(floor.map((f) => f.run.ms)))
        } | index ${millis(stats(floor.map((f) => f.run.indexMs)).median)}, stats ${
          millis(stats(floor.map((f) => f.run.statMs)).median)
        } | | ${count(floor[0].run.shards + 1)} GETs | | ${mb(stats(floor.map((f) => f.peakRssBytes)).median)} (${
          mb(stats(floor.map((f) => f.peakRssBytes)).median - idle.median)
        } above idle) |`,
      );
    }
    out(
      `| ↳ first sync, no view | ${count(b.n)} | ${formatName(b.format)} | | 1 | ${seconds(first.wallMs)} | ${
        millis(first.operationMs.pull)
      } | ${millis(first.operationMs.push)} | ${requestsCell(first.requests)} | ${mb(first.bytesReceived)} | ${
        memoryCell([first])
      } |`,
    );
  }
  out();
  out("Where the time goes (medians; trace phases from `MARSH_SYNC_TRACE`, and time spent inside each host call):");
  out();
  out("| store | files | format | breakdown |");
  out("| --- | --- | --- | --- |");
  for (const b of blocks.filter((b) => b.slowPath)) {
    out(`| ${storeName(b.store)} | ${count(b.n)} | ${formatName(b.format)} | ${breakdownOf(b.slowPath!, 8)} |`);
    out(`| ↳ first sync, no view | ${count(b.n)} | ${formatName(b.format)} | ${breakdownOf([b.firstSync!], 8)} |`);
  }
  out();
  if (walkFloor) {
    out(
      `The walk alone, over the same ${count(walkFloor.files)} files: \`DenoCache.walkPacked\` ${
        timeCell(walkFloor.deno)
      }; \`find <cache> -printf '%s %T@\\n'\` ${timeCell(walkFloor.find)} (one thread, no JavaScript: the kernel's ` +
        "own cost of reading every directory and stat-ing every file on this machine). Every slow-path sync needs one " +
        "such walk (a pull and the push after it in the same service share it), and Deno offers no faster way to " +
        `stat that many files from one thread. The walk child's peak RSS after its first walk: ${
          mb(walkFloor.peakRssBytes)
        } (${mb(walkFloor.peakRssBytes - idle.median)} above an idle child).`,
    );
    out();
  }
}

// 3. planning
if (planRows.length || native.length) {
  out("## 3. Planning only: index parse + diff against a local listing");
  out();
  out(
    "A dry-run pull of the official-format index (format 2: the shards and `_meta.json` the engine's migration makes " +
      "of the monolith; format 1: the monolith) against a listing where every file is in sync (no view, and a " +
      "sidecar whose verified token is stale, so the index is read first, then the listing, and every entry is decided " +
      "by size and recorded mtime). wasm: `SyncService` with an in-memory JS store " +
      "holding the index bytes and a JS cache whose `walk` answers a prepared listing (no I/O). Native: the same " +
      "dry run on `marsh::testing::memory::{MemoryStore, MemoryCache}` (`benches/index.rs`, criterion).",
  );
  out();
  out("| engine | format | entries | runs | time per dry run | entries/s | split |");
  out("| --- | --- | --- | --- | --- | --- | --- |");
  for (const { format, wasm } of planRows) {
    const s = stats(wasm.runsMs);
    const fetch = stats(wasm.splits.map((x) => x.fetchMs)).median;
    const parse = stats(wasm.splits.map((x) => x.indexParseMs)).median;
    const decide = stats(wasm.splits.map((x) => x.listingAndDecideMs)).median;
    const split = format === 2
      ? `until the last shard's answer (sidecar read, \`_meta.json\`, every shard's read and the parse of all but the ` +
        `last, overlapped) ${millis(fetch)}; the last shard's parse and the merge ${millis(parse)}`
      : `JS store (sidecar read, the store's copy of the bytes) ${millis(fetch)}; copy into wasm + index parse ${
        millis(parse)
      }`;
    out(
      `| wasm (Deno ${Deno.version.deno}) | ${formatName(format)} | ${count(wasm.entries)} | ${wasm.runsMs.length} | ${
        timeCell(s)
      } | ${(wasm.entries / (s.median / 1000) / 1e6).toFixed(2)}M | ${split}; listing conversion + decisions ${
        millis(decide)
      } (peak RSS ${memoryCell([wasm])}, the JS side holding the prepared listing) |`,
    );
  }
  const nativeDry = native.find((b) => b.id.startsWith("dry_run_pull/"));
  if (nativeDry && nativeDry.elements) {
    out(
      `| native (criterion mean) | 1 (monolith) | ${count(nativeDry.elements)} | criterion | ${
        millis(nativeDry.meanNs / 1e6)
      } | ${(nativeDry.elements / (nativeDry.meanNs / 1e9) / 1e6).toFixed(2)}M | see the micro-benchmarks below |`,
    );
  }
  out();
}

if (native.length) {
  out("### Native micro-benchmarks (`cargo bench --bench index`, criterion)");
  out();
  out("| benchmark | mean time | throughput |");
  out("| --- | --- | --- |");
  for (const bench of native) {
    const rate = bench.elements ? `${(bench.elements / (bench.meanNs / 1e9) / 1e6).toFixed(2)}M entries/s` : "";
    out(`| \`${bench.id}\` | ${millis(bench.meanNs / 1e6)} | ${rate} |`);
  }
  out();
}

// 4. transfers
if (transfers.length) {
  out(`## 4. Transfers: marsh against a plain loop, ${count(transfers[0].files)} small files`);
  out();
  out(
    `Data: ${count(transfers[0].files)} files of 200–240 B (${
      bytesText(transfers[0].bytes)
    }; \`bench/gen.ts\`, profile ` +
      "`tiny`). **marsh** = a fresh pull into an empty cache (the source was filled by a marsh push, so entries carry " +
      "hashes: the pull reads `_meta.json` and every shard, downloads to temp files, hashes, checks size and hash, " +
      "links into place, writes the view and sidecar) and an initial push into an empty store (walk, hash every file, " +
      "PUT with a precondition, write the shards, `_meta.json` and the format marker). **plain** = the least a client " +
      "must do with the same store adapter (`js/fs_store.ts` / `js/s3.ts`, one new client per run as for marsh): " +
      `download = GET + \`Deno.writeFile\` of the body (each folder made once); upload = open + fstat + PUT of the ` +
      `file's stream; both ${TRANSFER_WINDOW} in flight in a sliding window, as marsh's default; no index, no hash, ` +
      "no check; its list of keys is given. Both run in one child process per store, in rounds of plain and marsh " +
      "(the order swapped every round, after one unmeasured warm-up round of 100 files), so both meet the same load. " +
      `Ratio = marsh files/s ÷ plain files/s (medians); target ≥ ${TRANSFER_TARGET}×. CPU = the child process's ` +
      "CPU time (user + system) over the run, which other jobs on a shared machine stretch far less than the wall " +
      "time; CPU ratio = plain CPU ÷ marsh CPU (files per CPU second, marsh over plain). On moto the store's own work " +
      "is in the moto process, outside both CPU figures.",
  );
  out();
  out(
    "| store | direction | rounds | marsh wall time | plain wall time | marsh files/s | plain files/s | ratio | " +
      "ratio per round | target | marsh CPU | plain CPU | CPU ratio | marsh requests | plain requests |",
  );
  out("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const block of transfers) {
    for (const direction of ["download", "upload"] as const) {
      const f = transferFigures(block, direction);
      if (!f) continue;
      const requestsOfRuns = (engine: TransferEngine) =>
        [
          ...new Set(
            block.runs.filter((run) => run.engine === engine && run.direction === direction)
              .map((run) => requestsCell(run.requests)),
          ),
        ].join(" / ");
      out(
        `| ${storeName(block.store)} | ${direction} | ${f.marsh.n} | ${timeCell(f.marsh)} | ${timeCell(f.plain)} | ${
          f.marshRate.toFixed(0)
        } | ${f.plainRate.toFixed(0)} | **${f.ratio.toFixed(2)}×** | ${
          f.roundRatios.map((r) => r.toFixed(2)).join(", ")
        } | ${met(f.ratio >= TRANSFER_TARGET)} | ${millis(f.marshCpu.median)} | ${millis(f.plainCpu.median)} | ${
          f.cpuRatio.toFixed(2)
        }× | ${requestsOfRuns("marsh")} | ${requestsOfRuns("plain")} |`,
      );
    }
  }
  out();
  out(
    "Where marsh's time goes (medians of its runs; trace phases from `MARSH_SYNC_TRACE`; host calls overlap across " +
      "the window, so each kind counts the time at least one such call was in flight):",
  );
  out();
  out("| store | direction | breakdown |");
  out("| --- | --- | --- |");
  for (const block of transfers) {
    for (const direction of ["download", "upload"] as const) {
      const runs = block.runs.filter((run) => run.engine === "marsh" && run.direction === direction);
      if (!runs.length) continue;
      const asSync = runs.map((run) => ({
        phases: run.phases ?? [],
        hostMs: run.hostMs ?? {},
        outsideHostMs: run.outsideHostMs ?? 0,
      })) as SyncResult[];
      out(`| ${storeName(block.store)} | ${direction} | ${breakdownOf(asSync, 8)} |`);
    }
  }
  out();
  out(
    `Peak RSS of the comparison child (both engines, every round): ${
      transfers.map((block) => `${storeName(block.store)} ${mb(block.peakRssBytes)}`).join(", ")
    }.`,
  );
  out();
}

// 5. one changed file
if (blocks.some((b) => b.oneChanged)) {
  out("## 5. One changed file (markDirty, edit, sync)");
  out();
  const edited = [...new Set(blocks.filter((b) => b.changed).map((b) => `\`${b.changed!.rel}\` (${count(b.n)})`))];
  out(
    `The edited file: ${edited.join(", ")}, a data file of one model, same size, new bytes. Marked: \`anything\` = ` +
      "a bare `markDirty()` before the edit (the push walks and compares the whole cache), `the path` = " +
      "`markDirty({ relPath })` naming the file, as swamp calls it when it knows which file it writes. Bytes sent = " +
      "upload bodies (the data object) + index writes (format 2: shards and `_meta.json`; format 1: the monolith).",
  );
  out();
  const rows = blocks.flatMap((b) =>
    ([["anything", b.oneChanged], ["the path", b.oneChangedPath]] as const)
      .filter(([, runs]) => runs?.length)
      .map(([marked, runs]) => ({ b, marked, runs: runs! }))
  );
  out(
    "| store | files | format | marked | runs | wall time | bytes sent | sent by object | requests | peak RSS (wasm, JS heap) |",
  );
  out("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const { b, marked, runs } of rows) {
    out(
      `| ${storeName(b.store)} | ${count(b.n)} | ${formatName(b.format)} | ${marked} | ${runs.length} | ${
        timeCell(stats(runs.map((r) => r.wallMs)))
      } | ${bytesText(stats(runs.map((r) => r.bytesSent)).median)} | ${sentSplit(runs)} | ${requestsOf(runs)} | ${
        memoryCell(runs)
      } |`,
    );
  }
  out();
  out("Requests and bytes by the kind of object addressed (medians; reads and writes):");
  out();
  const kinds = OBJECT_KINDS.filter((kind) => rows.some(({ runs }) => runs.some((r) => r.byObject[kind])));
  out(`| store | files | format | marked | ${kinds.map((kind) => OBJECT_NAMES[kind]).join(" | ")} |`);
  out(`| --- | --- | --- | --- | ${kinds.map(() => "---").join(" | ")} |`);
  for (const { b, marked, runs } of rows) {
    out(
      `| ${storeName(b.store)} | ${count(b.n)} | ${formatName(b.format)} | ${marked} | ${
        kinds.map((kind) => objectCell(runs, kind)).join(" | ")
      } |`,
    );
  }
  out();
  out("| store | files | format | marked | breakdown |");
  out("| --- | --- | --- | --- | --- |");
  for (const { b, marked, runs } of rows) {
    out(`| ${storeName(b.store)} | ${count(b.n)} | ${formatName(b.format)} | ${marked} | ${breakdownOf(runs, 8)} |`);
  }
  out();
}

out("## Method");
out();
out(
  "- Command: `bash scripts/bench.sh [--quick]` builds the release wasm, starts moto and fake-gcs-server through " +
    "`scripts/with-emulators.sh`, runs `bench/main.ts`, which writes this file and runs `cargo bench --bench index`." +
    (Deno.args.length ? ` This run: \`${Deno.args.join(" ")}\`.` : ""),
);
out(
  "- Layout: every scenario runs on a format-2 bucket (`_index/_meta.json` + `_index/<shard>.json`, what a new bucket " +
    "gets). A format-2 store is seeded by putting the dataset's monolith, converting it with the engine's own " +
    "`migrateMonolithToShards` (untimed) and deleting the sealed monolith the migration leaves. Rows marked format 1 " +
    "are the baseline of the same run: the store holds the monolith `.datastore-index.json` only, as before format 2.",
);
out(
  "- Stores: for the sync scenarios the store holds only the index objects (no data objects): a zero-diff sync " +
    "never downloads an object and the engine never lists the bucket, and writing 250k objects into moto would take " +
    "longer than the benchmark. Scenario 5 puts the original of its one file first (a push replaces an object only " +
    "on condition of its base version: a HEAD, then PUT If-Match), then uploads the edit for real.",
);
out(
  "- Request counts come from a counting proxy around the `MarshStore` (`bench/counting.ts`); `getBytes 304` is the " +
    'conditional GET of the commit object (`_meta.json`, or the monolith on format 1) answered "not modified". ' +
    "Bytes sent = upload bodies + index writes. The split by object classifies each request by its key: " +
    "`_index/_meta.json`, any other `_index/` key (a shard, or the listing of `_index/`), `.datastore-index.json` " +
    "(monolith), `_control/` (format marker), the lock, and anything else (data objects).",
);
out(
  "- Breakdowns: trace phases are the engine's `MARSH_SYNC_TRACE` lines (durations between consecutive lines); " +
    '"time by host call" is the union of the intervals spent inside each store/cache method (e.g. `cache.walk` is ' +
    'the Deno directory walk, `store.getBytes` the index GET), and "wasm core + boundary" the remainder (index ' +
    "parse and serialisation, planning, view/sidecar JSON, and converting values across the wasm boundary). A " +
    "streamed internal file (`cache.readInternalStream`, the view) counts only its opening there: its chunks are read " +
    "as the core takes them, in the remainder.",
);
out(
  "- Trace phases are named by the engine and each covers the time since the previous line: `pull: index read, walk " +
    "and view read` the index GET, its parse and local copy, the cache walk and the view read (overlapped), `pull: " +
    "plan` the per-entry decisions, `push: walk (the pull's)` the view check that lets the push reuse the pull's walk " +
    "(`push: walk` a walk of its own), `push: uploads` the per-file decisions (and the uploads, if any), `done` the " +
    "verification, view and sidecar writes.",
);
out(
  "- Memory: peak RSS is the child's VmHWM; \"wasm\" is the module's linear memory at the end of the run (it never " +
    'shrinks, so it is also its peak); "JS heap" is V8\'s heapTotal at the end of the run.',
);
out("- Page cache: warm (the datasets are reused across runs); nothing is dropped between runs.");
out();

// PASS/MISS per target on the terminal too (the bench judges its targets itself; a MISS does not fail the command).
const targetsAt = lines.indexOf("## Targets");
for (const line of lines.slice(targetsAt).slice(1)) {
  if (line.startsWith("## ")) break;
  if (!line.startsWith("| ") || line.startsWith("| target |") || line.startsWith("| ---")) continue;
  const cells = line.slice(2, -2).split(" | ");
  const status = cells.at(-1)!.replaceAll("**", "");
  console.error(`bench: ${status.padEnd(12)} ${cells[0]}: ${cells[1].slice(0, 160)}`);
}

await Deno.mkdir(outPath.replace(/\/[^/]+$/, ""), { recursive: true });
await Deno.writeTextFile(outPath, lines.join("\n"));
// Formatted like every other Markdown file of the repository, so `deno fmt --check` stays clean.
await new Deno.Command(Deno.execPath(), { args: ["fmt", "--config", `${root}/pkg.json`, "--quiet", outPath] }).output();
await Deno.writeTextFile(
  `${tmp}/results.json`,
  JSON.stringify({ settings, blocks, planRows, native, transfers, idle }, null, 1),
);
log(`wrote ${outPath} (raw results in bench/tmp/results.json)`);
