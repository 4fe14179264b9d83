/**
 * The benchmark driver behind `scripts/bench.sh`: prepares the datasets (`bench/gen.ts`), runs every measured
 * operation in a child process (`bench/child.ts`), and writes `bench/results/RESULTS.md`.
 *
 *   deno run -A bench/main.ts [--quick] [--only 1,2,3,4,5,micro] [--out bench/results/RESULTS.md]
 *
 * Needs the wasm built (`scripts/build-wasm.sh`). S3 scenarios need `MARSH_S3_ENDPOINT` (moto, as started by
 * `scripts/with-emulators.sh`); without it they are reported as skipped. Scratch data lives in `bench/tmp/`.
 *
 * @module
 */

import { CreateBucketCommand, S3Client } from "npm:@aws-sdk/client-s3@3.1173.0";
import { FsStore } from "../js/fs_store.ts";
import type { MarshStore } from "../js/host.ts";
import { S3Store } from "../js/s3.ts";
import { version } from "../js/wasm.ts";
import { wasmByteLength } from "../js/gen/wasm_bytes.ts";
import type { ChildSpec, PlanResult, StoreSpec, SyncResult, SyncSpec } from "./child.ts";
import { type Dataset, editedBytes, ensureDataset, restoreFile } from "./gen.ts";

// ---------------------------------------------------------------------------------------------------------------------
// Settings

const args = Deno.args;
const quick = args.includes("--quick");
const flagValue = (name: string) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args[at + 1] : undefined;
};
const only = new Set((flagValue("only") ?? "1,2,3,4,5,micro").split(","));
const outPath = flagValue("out") ?? "bench/results/RESULTS.md";
const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const tmp = `${root}/bench/tmp`;
const SEED = 1;

/** Sizes and repetitions; `--quick` keeps the shape of every scenario at a fraction of the cost. */
const settings = quick
  ? { small: 2_000, big: 20_000, transferFiles: 200, reps: 3, bigReps: 2, planRuns: 3, transferReps: 2 }
  : { small: 10_000, big: 250_000, transferFiles: 1_000, reps: 7, bigReps: 3, planRuns: 5, transferReps: 5 };

const INTERNAL = [".datastore-sync-state.json", ".marsh-view.json", ".datastore-index.json", ".marsh-dirty.json"];
const SIDECAR = ".datastore-sync-state.json";
const INDEX_KEY = ".datastore-index.json";

const log = (message: string) => console.error(`bench: ${message}`);
const s3Endpoint = Deno.env.get("MARSH_S3_ENDPOINT");

// ---------------------------------------------------------------------------------------------------------------------
// Helpers

async function runChild<T>(spec: ChildSpec): Promise<T> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", `${root}/pkg.json`, "--quiet", "-A", `${root}/bench/child.ts`, JSON.stringify(spec)],
    stdout: "piped",
    stderr: "piped",
  });
  const output = await command.output();
  const stdout = new TextDecoder().decode(output.stdout).trim();
  if (!output.success) {
    throw new Error(`child ${spec.kind} failed (${output.code}):\n${new TextDecoder().decode(output.stderr)}`);
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
  for (const name of INTERNAL) await Deno.remove(`${dataset.cache}/${name}`).catch(() => {});
}

function syncSpec(store: StoreSpec, cache: string, extra: Partial<SyncSpec> = {}): SyncSpec {
  return { kind: "sync", store, cache, operations: ["pull", "push"], ...extra };
}

// ---------------------------------------------------------------------------------------------------------------------
// Scenarios 1, 2 and 5: one block per (store, N), sharing the populated store

interface Block {
  store: "file" | "s3";
  n: number;
  indexBytes: number;
  firstSync?: SyncResult;
  slowPath?: SyncResult[];
  zeroDiff?: SyncResult[];
  oneChanged?: SyncResult[];
}

async function syncBlock(kind: "file" | "s3", dataset: Dataset, reps: number): Promise<Block> {
  const n = dataset.manifest.n;
  const block: Block = { store: kind, n, indexBytes: dataset.manifest.indexBytes };
  log(`${kind} store, ${count(n)} files: populating (index only)`);
  await resetCache(dataset);
  const store = await freshStore(kind, `sync-${n}`);
  await putIndexOnly(store, dataset);

  log(`${kind} ${count(n)}: first sync (no sidecar, no view)`);
  block.firstSync = await runChild<SyncResult>(syncSpec(store, dataset.cache));
  checkZeroDiff(block.firstSync, "first sync");

  if (only.has("2")) {
    block.slowPath = [];
    for (let rep = 0; rep < reps; rep++) {
      log(`${kind} ${count(n)}: zero-diff sync after deleting the sidecar, run ${rep + 1}/${reps}`);
      const result = await runChild<SyncResult>(
        syncSpec(store, dataset.cache, { prepare: { deleteInternal: [SIDECAR] } }),
      );
      checkZeroDiff(result, "slow path");
      block.slowPath.push(result);
    }
  }
  if (only.has("1")) {
    // The sidecar is valid now (the last sync verified the index and recorded the cache clean).
    block.zeroDiff = [];
    const zeroReps = Math.max(reps, quick ? 3 : 10);
    for (let rep = 0; rep < zeroReps; rep++) {
      block.zeroDiff.push(await runChild<SyncResult>(syncSpec(store, dataset.cache)));
    }
    log(`${kind} ${count(n)}: zero-diff sync with a valid sidecar, ${zeroReps} runs`);
  }
  if (only.has("5")) {
    block.oneChanged = [];
    const rel = dataset.entries[Math.floor(n / 2)].key;
    for (let rep = 0; rep < reps; rep++) {
      log(`${kind} ${count(n)}: one changed file, run ${rep + 1}/${reps}`);
      const from = `${tmp}/edit.bin`;
      await Deno.writeFile(from, editedBytes(dataset, rel, rep + 1));
      const result = await runChild<SyncResult>(syncSpec(store, dataset.cache, { prepare: { edit: { rel, from } } }));
      if (result.reports.push?.uploaded !== 1) {
        throw new Error(`one changed file: uploaded ${result.reports.push?.uploaded}`);
      }
      block.oneChanged.push(result);
    }
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
// Scenario 4: transfers of small files through the sliding window, at two widths

interface TransferMode {
  label: string;
  options?: { concurrency?: number };
}

const TRANSFER_MODES: TransferMode[] = [
  { label: "window 16 (default)" },
  { label: "window 10", options: { concurrency: 10 } },
];

interface TransferRow {
  direction: "download" | "upload";
  mode: string;
  files: number;
  results: SyncResult[];
}

async function transferScenario(dataset: Dataset): Promise<TransferRow[]> {
  const files = dataset.manifest.n;
  log(`transfers: populating moto with ${files} files (a marsh push, not measured)`);
  await resetCache(dataset);
  const source = await freshStore("s3", "transfer-source");
  await runChild<SyncResult>({ kind: "sync", store: source, cache: dataset.cache, operations: ["push"] });
  const rows: TransferRow[] = [];
  for (const direction of ["download", "upload"] as const) {
    for (const mode of TRANSFER_MODES) rows.push({ direction, mode: mode.label, files, results: [] });
  }
  const downloadCache = `${tmp}/transfer-download`;
  // Modes interleaved run by run, so a noisy neighbour on the shared machine does not hit one mode only.
  for (let rep = 0; rep < settings.transferReps; rep++) {
    for (const [i, mode] of TRANSFER_MODES.entries()) {
      log(`transfers: download, ${mode.label}, run ${rep + 1}/${settings.transferReps}`);
      const down = await runChild<SyncResult>({
        kind: "sync",
        store: source,
        cache: downloadCache,
        operations: ["pull"],
        options: mode.options,
        prepare: { emptyCache: true },
      });
      if (down.reports.pull?.downloaded !== files) throw new Error(`downloaded ${down.reports.pull?.downloaded}`);
      rows[i].results.push(down);

      log(`transfers: upload, ${mode.label}, run ${rep + 1}/${settings.transferReps}`);
      const target = await freshStore("s3", `transfer-up-${i}-${rep}`);
      const up = await runChild<SyncResult>({
        kind: "sync",
        store: target,
        cache: dataset.cache,
        operations: ["push"],
        options: mode.options,
        prepare: { deleteInternal: INTERNAL },
      });
      if (up.reports.push?.uploaded !== files) throw new Error(`uploaded ${up.reports.push?.uploaded}`);
      rows[TRANSFER_MODES.length + i].results.push(up);
    }
  }
  await Deno.remove(downloadCache, { recursive: true }).catch(() => {});
  await resetCache(dataset);
  return rows;
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
const small = await ensureDataset(`${tmp}/data-${settings.small}`, settings.small, SEED, log);
const big = await ensureDataset(`${tmp}/data-${settings.big}`, settings.big, SEED, log);
const transfer = await ensureDataset(`${tmp}/data-${settings.transferFiles}`, settings.transferFiles, SEED + 1, log);

// One after the other: concurrent children would disturb each other's figures.
const idleRuns: { peakRssBytes: number; memory: { wasmBytes: number; jsHeapTotalBytes: number } }[] = [];
for (let i = 0; i < 3; i++) idleRuns.push(await runChild({ kind: "idle" }));
const idle = stats(idleRuns.map((result) => result.peakRssBytes));

const blocks: Block[] = [];
if (["1", "2", "5"].some((id) => only.has(id))) {
  const stores: ("file" | "s3")[] = s3Endpoint ? ["file", "s3"] : ["file"];
  if (!s3Endpoint) log("MARSH_S3_ENDPOINT is not set: moto scenarios skipped (run under scripts/with-emulators.sh)");
  for (const kind of stores) {
    blocks.push(await syncBlock(kind, small, settings.reps));
    blocks.push(await syncBlock(kind, big, settings.bigReps));
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
let planWasm: PlanResult | undefined;
/** Per child: the median of its plans (index parse + diff), and its first plan (cold code). */
const planPerChild: { medianMs: number; coldMs: number }[] = [];
let native: NativeBench[] = [];
if (only.has("3")) {
  for (let child = 0; child < planChildren; child++) {
    log(
      `planning in wasm, child ${child + 1}/${planChildren}: ${settings.planRuns} dry-run pulls of ${
        count(big.manifest.n)
      } entries`,
    );
    const result = await runChild<PlanResult>({ kind: "plan-wasm", index: big.index, runs: settings.planRuns });
    const plans = result.splits.map((split) => split.indexParseMs + split.listingAndDecideMs);
    planPerChild.push({ medianMs: stats(plans).median, coldMs: result.coldPlanMs });
    planWasm = planWasm
      ? {
        ...planWasm,
        runsMs: [...planWasm.runsMs, ...result.runsMs],
        splits: [...planWasm.splits, ...result.splits],
        planCpuMs: [...planWasm.planCpuMs, ...result.planCpuMs],
        peakRssBytes: Math.max(planWasm.peakRssBytes, result.peakRssBytes),
      }
      : result;
  }
}
if (only.has("3") || only.has("micro")) native = await runCriterion(big.index);

let transfers: TransferRow[] = [];
if (only.has("4")) {
  if (s3Endpoint) transfers = await transferScenario(transfer);
  else log("MARSH_S3_ENDPOINT is not set: transfer scenario skipped");
}

// ---------------------------------------------------------------------------------------------------------------------
// Report

const loadAfter = (await Deno.readTextFile("/proc/loadavg").catch(() => "")).split(" ").slice(0, 3).join(" ");
const lines: string[] = [];
const out = (line = "") => lines.push(line);
const storeName = (kind: "file" | "s3") => (kind === "file" ? "file://" : "S3 (moto)");

out("# marsh benchmarks");
out();
out(
  `Written by \`bash scripts/bench.sh${quick ? " --quick" : ""}\` on ${startedAt.toISOString()} ` +
    `(${
      quick ? "QUICK mode: small N, few runs — for development only" : "full run"
    }). Regenerate with the same command.`,
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
out(
  `Datasets (\`bench/gen.ts\`, seed ${SEED}): ` +
    [small, big].map((d) =>
      `${count(d.manifest.n)} files (${mb(d.manifest.fileBytes)} of data, index ${mb(d.manifest.indexBytes)}, ` +
      `keys ${d.manifest.minKeyLength}–${d.manifest.maxKeyLength} chars, mean ${d.manifest.meanKeyLength})`
    ).join("; ") + ".",
);
out(
  `Each measured run is a fresh \`deno\` child process; times cover the sync operations only (process start and wasm ` +
    `instantiation excluded); peak RSS is the child's VmHWM (an idle child that only loads the wasm: ` +
    `${memoryCell(idleRuns)}). Cells read "median (min–max)".`,
);
out();

// Targets
const fileBig = blocks.find((b) => b.store === "file" && b.n === settings.big);
const zeroDiffRuns = blocks.flatMap((b) => b.zeroDiff ?? []);
const slowBig = fileBig?.slowPath ? stats(fileBig.slowPath.map((r) => r.wallMs)) : undefined;
const rssBig = fileBig?.slowPath ? stats(fileBig.slowPath.map((r) => r.peakRssBytes)) : undefined;
const wasmRate = planWasm ? planWasm.entries / (stats(planWasm.runsMs).median / 1000) : undefined;
/** Planning as the target defines it: index parse (from the bytes' copy into wasm) + diff, without the JS store's part. */
const planMs = planWasm
  ? stats(planWasm.splits.map((split) => split.indexParseMs + split.listingAndDecideMs)).median
  : undefined;
const planRate = planWasm && planMs ? planWasm.entries / (planMs / 1000) : undefined;
/** The first dry run of the child: the wasm engine has not optimised the code yet (a CLI sync plans once per process). */
const planColdMs = planPerChild.length ? stats(planPerChild.map((child) => child.coldMs)).median : undefined;
const planCpuRate = planWasm ? planWasm.entries / (stats(planWasm.planCpuMs).median / 1000) : undefined;
const met = (ok: boolean | undefined) => (ok === undefined ? "not measured" : ok ? "**met**" : "**not met**");
out("## Targets");
out();
out("| target | figure | status |");
out("| --- | --- | --- |");
if (zeroDiffRuns.length) {
  const maxRequests = Math.max(...zeroDiffRuns.map((r) => r.totalRequests));
  out(
    `| zero-diff sync = 1 request | ${maxRequests} request(s) in every run (${
      requestsOf(zeroDiffRuns)
    }), file:// and moto | ${met(maxRequests === 1)} |`,
  );
}
if (slowBig) {
  out(
    `| ${count(settings.big)}-entry slow-path zero-diff sync < 3 s (file://) | ${timeCell(slowBig)} | ${
      met(slowBig.median < 3000)
    } |`,
  );
}
if (wasmRate !== undefined) {
  out(
    `| planning ≥ 1M entries/s in wasm | ${(planRate! / 1e6).toFixed(2)}M entries/s for index parse + diff (${
      millis(planMs!)
    } median of ${planWasm!.splits.length} plans in ${planPerChild.length} processes, per process ${
      planPerChild.map((child) => millis(child.medianMs)).join(", ")
    }; a fresh process's first plan ${
      millis(planColdMs!)
    }; by the process's CPU time, which other jobs on the machine do not stretch as much, ${
      (planCpuRate! / 1e6).toFixed(2)
    }M entries/s); the whole dry-run pull, with the JS store's part, ${(wasmRate / 1e6).toFixed(2)}M entries/s | ${
      met(planRate! >= 1e6)
    } |`,
  );
}
if (rssBig && fileBig) {
  const limit = 2 * fileBig.indexBytes;
  out(
    `| peak memory ≤ 2× index bytes (${mb(limit)}) | ${mb(rssBig.median)} peak RSS in the ${
      count(settings.big)
    }-entry slow path (${mb(rssBig.median - idle.median)} above an idle child; wasm linear memory ${
      mb(stats(fileBig.slowPath!.map((r) => r.memory?.wasmBytes ?? 0)).median)
    }${
      walkFloor ? `; the walk alone, in a child of its own, ${mb(walkFloor.peakRssBytes - idle.median)} above idle` : ""
    }) | ${met(rssBig.median <= limit)} |`,
  );
}
out(`| wasm ≤ 700 KB | ${count(wasmByteLength)} bytes (${kb(wasmByteLength)}) | ${met(wasmByteLength <= 700_000)} |`);
if (quick) out("\n_Quick mode: the size targets are judged on the smaller N, so they say little._");
out();

// 1. zero-diff, valid sidecar
if (blocks.some((b) => b.zeroDiff)) {
  out("## 1. Zero-diff sync (pull + push) with a valid sidecar");
  out();
  out("| store | files | runs | wall time | requests | peak RSS |");
  out("| --- | --- | --- | --- | --- | --- |");
  for (const b of blocks.filter((b) => b.zeroDiff)) {
    const runs = b.zeroDiff!;
    out(
      `| ${storeName(b.store)} | ${count(b.n)} | ${runs.length} | ${timeCell(stats(runs.map((r) => r.wallMs)))} | ${
        requestsOf(runs)
      } | ${mb(stats(runs.map((r) => r.peakRssBytes)).median)} |`,
    );
  }
  out();
}

// 2. slow path
if (blocks.some((b) => b.slowPath)) {
  out("## 2. Zero-diff sync after the sidecar is deleted (full slow path)");
  out();
  out(
    "The store holds only the index (in the official format, no hashes); the cache holds every file with the size and " +
      "mtime its entry records. Each run deletes the sidecar first (the local view stays, as it would). The first " +
      "sync of a block (no sidecar and no view: a cache coming from the official extension) is one run, shown apart.",
  );
  out();
  out(
    "| store | files | index | runs | wall time | pull | push | requests | bytes received | peak RSS (wasm memory, JS heap) |",
  );
  out("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const b of blocks.filter((b) => b.slowPath)) {
    const runs = b.slowPath!;
    const first = b.firstSync!;
    out(
      `| ${storeName(b.store)} | ${count(b.n)} | ${mb(b.indexBytes)} | ${runs.length} | ${
        timeCell(stats(runs.map((r) => r.wallMs)))
      } | ${millis(stats(runs.map((r) => r.operationMs.pull)).median)} | ${
        millis(stats(runs.map((r) => r.operationMs.push)).median)
      } | ${requestsOf(runs)} | ${mb(stats(runs.map((r) => r.bytesReceived)).median)} | ${memoryCell(runs)} |`,
    );
    out(
      `| ↳ first sync, no view | ${count(b.n)} | | 1 | ${seconds(first.wallMs)} | ${millis(first.operationMs.pull)} | ${
        millis(first.operationMs.push)
      } | ${requestsCell(first.requests)} | ${mb(first.bytesReceived)} | ${memoryCell([first])} |`,
    );
  }
  out();
  out("Where the time goes (medians; trace phases from `MARSH_SYNC_TRACE`, and time spent inside each host call):");
  out();
  out("| store | files | breakdown |");
  out("| --- | --- | --- |");
  for (const b of blocks.filter((b) => b.slowPath)) {
    out(`| ${storeName(b.store)} | ${count(b.n)} | ${breakdownOf(b.slowPath!, 8)} |`);
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
if (planWasm || native.length) {
  out("## 3. Planning only: index parse + diff against a local listing");
  out();
  out(
    "A dry-run pull of the official-format index against a listing where every file is in sync (no view, and a " +
      "sidecar whose verified token is stale, so the index is read first, then the listing, and every entry is decided " +
      "by size and recorded mtime). wasm: `SyncService` with an in-memory JS store " +
      "holding the index bytes and a JS cache whose `walk` answers a prepared listing (no I/O). Native: the same " +
      "dry run on `marsh::testing::memory::{MemoryStore, MemoryCache}` (`benches/index.rs`, criterion).",
  );
  out();
  out("| engine | entries | runs | time per dry run | entries/s | split |");
  out("| --- | --- | --- | --- | --- | --- |");
  if (planWasm) {
    const s = stats(planWasm.runsMs);
    const fetch = stats(planWasm.splits.map((x) => x.fetchMs)).median;
    const parse = stats(planWasm.splits.map((x) => x.indexParseMs)).median;
    const decide = stats(planWasm.splits.map((x) => x.listingAndDecideMs)).median;
    out(
      `| wasm (Deno ${Deno.version.deno}) | ${count(planWasm.entries)} | ${planWasm.runsMs.length} | ${timeCell(s)} | ${
        (planWasm.entries / (s.median / 1000) / 1e6).toFixed(2)
      }M | JS store (sidecar read, the store's copy of the bytes) ${millis(fetch)}; copy into wasm + index parse ${
        millis(parse)
      }; listing conversion + decisions ${millis(decide)} (peak RSS ${
        memoryCell([planWasm])
      }, the JS side holding the prepared listing) |`,
    );
  }
  const nativeDry = native.find((b) => b.id.startsWith("dry_run_pull/"));
  if (nativeDry && nativeDry.elements) {
    out(
      `| native (criterion mean) | ${count(nativeDry.elements)} | criterion | ${millis(nativeDry.meanNs / 1e6)} | ${
        (nativeDry.elements / (nativeDry.meanNs / 1e9) / 1e6).toFixed(2)
      }M | see the micro-benchmarks below |`,
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
  out(`## 4. Transfers of ${count(transfer.manifest.n)} small files to and from S3 (moto)`);
  out();
  out(
    `Data: ${mb(transfer.manifest.fileBytes)} in ${count(transfer.manifest.n)} files. Download = pull into an empty ` +
      "cache (the source prefix was filled by a marsh push, so entries carry hashes); upload = push into an empty " +
      "prefix (plus the index write). Modes are interleaved run by run. moto is a single Python process on the same " +
      "2 cores, so it bounds the absolute rates; the comparison between widths is the point.",
  );
  out();
  out("| direction | window | runs | wall time | files/s (median) | requests |");
  out("| --- | --- | --- | --- | --- | --- |");
  for (const row of transfers) {
    const times = stats(row.results.map((r) => r.operationMs[row.direction === "download" ? "pull" : "push"]));
    out(
      `| ${row.direction} | ${row.mode} | ${row.results.length} | ${timeCell(times)} | ${
        (row.files / (times.median / 1000)).toFixed(0)
      } | ${requestsOf(row.results)} |`,
    );
  }
  out();
}

// 5. one changed file
if (blocks.some((b) => b.oneChanged)) {
  out("## 5. One changed file (markDirty, edit, sync)");
  out();
  out(
    "| store | files | runs | wall time | bytes sent | of which index write-back | requests | peak RSS (wasm, JS heap) |",
  );
  out("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const b of blocks.filter((b) => b.oneChanged)) {
    const runs = b.oneChanged!;
    out(
      `| ${storeName(b.store)} | ${count(b.n)} | ${runs.length} | ${timeCell(stats(runs.map((r) => r.wallMs)))} | ${
        mb(stats(runs.map((r) => r.bytesSent)).median)
      } | ${mb(stats(runs.map((r) => r.indexWrites.reduce((a, x) => a + x, 0))).median)} | ${requestsOf(runs)} | ${
        memoryCell(runs)
      } |`,
    );
  }
  out();
  out("| store | files | breakdown |");
  out("| --- | --- | --- |");
  for (const b of blocks.filter((b) => b.oneChanged)) {
    out(`| ${storeName(b.store)} | ${count(b.n)} | ${breakdownOf(b.oneChanged!, 8)} |`);
  }
  out();
}

out("## Method");
out();
out(
  "- Command: `bash scripts/bench.sh [--quick]` builds the release wasm, starts moto and fake-gcs-server through " +
    "`scripts/with-emulators.sh`, runs `bench/main.ts`, which writes this file and runs `cargo bench --bench index`.",
);
out(
  "- Stores: for the sync scenarios the store holds only the index object (no data objects): a zero-diff sync " +
    "never downloads an object and the engine never lists the bucket, and writing 250k objects into moto would take " +
    "longer than the benchmark. Scenario 5 uploads its one file for real.",
);
out(
  "- Request counts come from a counting proxy around the `MarshStore` (`bench/counting.ts`); `getBytes 304` is the " +
    'conditional index GET answered "not modified". Bytes sent = upload bodies + index writes.',
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

await Deno.mkdir(outPath.replace(/\/[^/]+$/, ""), { recursive: true });
await Deno.writeTextFile(outPath, lines.join("\n"));
// Formatted like every other Markdown file of the repository, so `deno fmt --check` stays clean.
await new Deno.Command(Deno.execPath(), { args: ["fmt", "--config", `${root}/pkg.json`, "--quiet", outPath] }).output();
await Deno.writeTextFile(
  `${tmp}/results.json`,
  JSON.stringify({ settings, blocks, planWasm, native, transfers, idle }, null, 1),
);
log(`wrote ${outPath} (raw results in bench/tmp/results.json)`);
