/**
 * The marsh command line: the same sync engine as the swamp extensions, for operators (inspect, repair, try it
 * locally with a `file://` store and no cloud account). Commands and options: `USAGE` below; exit codes: `cli_exit.ts`.
 *
 * @module
 */

import { DenoCache } from "./cache.ts";
import { EXIT, exitCodeFor } from "./cli_exit.ts";
import { formatBytes, terminalProgress } from "./cli_progress.ts";
import { type OpenedStore, openStore, UsageError } from "./cli_store.ts";
import { makeEnv, traceFromEnvironment } from "./env.ts";
import type { Conflict, MarshEnv, MarshSyncError, PullOptions, PullReport, PushReport, SyncOptions } from "./host.ts";
import { MarshLock } from "./lock.ts";
import { makeVerifier } from "./verifier.ts";
import { listNamespaces, registerNamespace, SyncService, version } from "./wasm.ts";

const USAGE = `usage:
  marsh sync|pull|push --store URL --cache DIR [--dry-run] [--json] [--concurrency N]
                       [--restore] (pull, sync)  [--max-deletions N] (push, sync)
                       [--metadata-only] [--subdir D]... [--model TYPE/ID]... (pull)
                       [--preview] (push: count what would go, write nothing)
  marsh hydrate PATH --store URL --cache DIR [--json]   (bring one file in, after pull --metadata-only)
  marsh mark-dirty --store URL --cache DIR [--path P]
  marsh resolve PATH --keep-local|--keep-remote --store URL --cache DIR [--json]
  marsh migrate-index --store URL [--json]       (format-1 bucket to format 2, under the datastore lock)
  marsh status --store URL --cache DIR [--json]
  marsh lock status --store URL [--lock-key KEY] [--json]
  marsh lock release --force --store URL [--lock-key KEY]
  marsh verify --store URL [--json]
  marsh namespace register NS --repo-id ID --store URL   (claim NS for this repository)
  marsh namespace list --store URL [--json]
  marsh version
every command that syncs or locks takes --namespace NS: objects below NS/, files in DIR/NS/
store URLs: s3://bucket/prefix  gs://bucket/prefix  file:///absolute/dir
store options: --endpoint URL (S3-compatible endpoint or GCS emulator), --region R, --force-path-style, --project ID
exit codes: 0 ok, 1 other failure (a refused mass deletion too), 2 usage, 3 conflict (paths changed here and in the
  bucket: see status, then resolve; or the index kept changing, or the lock is held or was lost), 4 auth,
  5 not found, 6 transient, 7 some files failed, 130 aborted`;

const BOOLEAN_FLAGS = new Set([
  "json",
  "dry-run",
  "force",
  "force-path-style",
  "help",
  "restore",
  "keep-local",
  "keep-remote",
  "metadata-only",
  "preview",
]);

/** Flags that may be given more than once (each adds one value). */
const LIST_FLAGS = new Set(["subdir", "model"]);

interface Parsed {
  words: string[];
  flags: Map<string, string | true>;
  /** Every value of a `LIST_FLAGS` flag, in order. */
  lists: Map<string, string[]>;
}

export function parseArgs(args: string[]): Parsed {
  const words: string[] = [];
  const flags = new Map<string, string | true>();
  const lists = new Map<string, string[]>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) {
      words.push(arg);
      continue;
    }
    const [name, inline] = arg.slice(2).split(/=(.*)/s, 2);
    if (BOOLEAN_FLAGS.has(name)) {
      flags.set(name, true);
    } else if (inline !== undefined) {
      flags.set(name, inline);
    } else if (i + 1 < args.length) {
      flags.set(name, args[++i]);
    } else {
      throw new UsageError(`--${name} needs a value`);
    }
    const value = flags.get(name);
    if (LIST_FLAGS.has(name) && typeof value === "string") lists.set(name, [...(lists.get(name) ?? []), value]);
  }
  return { words, flags, lists };
}

function required(flags: Parsed["flags"], name: string): string {
  const value = flags.get(name);
  if (typeof value !== "string" || value === "") throw new UsageError(`--${name} is required`);
  return value;
}

function optional(flags: Parsed["flags"], name: string): string | undefined {
  const value = flags.get(name);
  return typeof value === "string" ? value : undefined;
}

function storeFrom(flags: Parsed["flags"]): OpenedStore {
  return openStore(required(flags, "store"), {
    endpoint: optional(flags, "endpoint"),
    region: optional(flags, "region"),
    forcePathStyle: flags.get("force-path-style") === true,
    projectId: optional(flags, "project"),
  });
}

function describePull(report: PullReport, dryRun: boolean): string {
  if (dryRun) return `pull (dry run): would download ${report.planned.length} file(s)${list(report.planned)}`;
  if (report.fastPath) return "pull: up to date (index unchanged since the last verified sync)";
  const extras = [
    report.removed.length ? `removed ${report.removed.length} file(s) deleted in the bucket` : "",
    report.keptLocal.length ? `kept ${report.keptLocal.length} unpushed local edit(s)` : "",
    report.pendingDeletions.length ? `${report.pendingDeletions.length} local deletion(s) not pushed yet` : "",
    report.inFlux.length ? `${report.inFlux.length} file(s) changing in the bucket (pull again)` : "",
    report.conflicts.length ? `conflicts: ${describeConflictList(report.conflicts)}` : "",
  ].filter(Boolean);
  if (report.skipped.length) extras.push(`left out ${report.skipped.length} content file(s) (marsh hydrate PATH)`);
  return `pull: downloaded ${report.downloaded} of ${report.indexEntries} indexed file(s)` +
    `${report.verified ? ", verified" : ""}${extras.map((extra) => `; ${extra}`).join("")}`;
}

function describePush(report: PushReport, dryRun: boolean): string {
  if (dryRun) {
    const conflicts = report.conflicts.length ? `; conflicts: ${describeConflictList(report.conflicts)}` : "";
    return `push (dry run): would check, upload or delete ${report.planned.length} file(s)${conflicts}` +
      list(report.planned);
  }
  if (report.fastPath) return "push: nothing to push (no markDirty since the last complete push)";
  const extras = [
    report.indexWritten ? "index updated" : "index unchanged",
    report.markedOnly ? `only the marked paths (${report.marksCleared} mark(s) cleared)` : "",
    report.scrubbed.length ? `scrubbed ${report.scrubbed.length} internal entr(ies)` : "",
    report.symlinks.length ? `skipped symlinks: ${report.symlinks.join(", ")}` : "",
    report.remoteNewer.length ? `${report.remoteNewer.length} newer remotely (pull them)` : "",
  ].filter(Boolean);
  return `push: uploaded ${report.uploaded} file(s), deleted ${report.deleted.length}; ${extras.join("; ")}`;
}

/** "a.json (changed here and in the bucket), b.json (…)" */
function describeConflictList(conflicts: Conflict[]): string {
  return conflicts.map((conflict) => `${conflict.rel} (${CONFLICT_KINDS[conflict.kind] ?? conflict.kind})`).join(", ");
}

/** As `src/local/conflicts.rs` describes each kind. */
const CONFLICT_KINDS: Record<string, string> = {
  "both-changed": "changed here and in the bucket",
  "deleted-here": "deleted here, changed in the bucket",
  "deleted-there": "changed here, deleted in the bucket",
  "created-both": "created here and in the bucket with different contents",
  "object-moved": "the bucket's object changed while this push uploaded it",
};

function list(items: string[]): string {
  return items.length ? `:\n  ${items.join("\n  ")}` : "";
}

/** A non-negative integer option, or undefined when absent. */
function count(flags: Parsed["flags"], name: string): number | undefined {
  const value = optional(flags, name);
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(number)) {
    throw new UsageError(`--${name} needs a whole number, got ${value}`);
  }
  return number;
}

/** `--namespace NS`: the sync service (and lock) of that namespace. */
function serviceOptions(flags: Parsed["flags"], options: SyncOptions = {}): SyncOptions {
  return { ...options, namespace: optional(flags, "namespace") };
}

function cliEnv(signal: AbortSignal, flags: Parsed["flags"]): MarshEnv {
  const env = makeEnv(signal, traceFromEnvironment(["MARSH_SYNC_TRACE"]));
  env.progress = flags.get("json") ? undefined : terminalProgress();
  return env;
}

async function sync(command: string, parsed: Parsed, signal: AbortSignal): Promise<number> {
  const { flags } = parsed;
  const { store } = storeFrom(flags);
  const cache = new DenoCache(required(flags, "cache"));
  const dryRun = flags.get("dry-run") === true;
  const options: SyncOptions = {
    dryRun,
    concurrency: count(flags, "concurrency"),
    maxInferredDeletions: count(flags, "max-deletions"),
    restoreDeleted: flags.get("restore") === true,
  };
  const pull = pullOptions(command, parsed);
  const service = new SyncService(store, cache, serviceOptions(flags, options));
  if (flags.get("preview") === true) {
    if (command !== "push") throw new UsageError("--preview is a push option");
    const preview = await service.previewPush(cliEnv(signal, flags));
    if (flags.get("json")) console.log(JSON.stringify({ preview }));
    else {
      console.log(
        `push (preview): ${preview.total} file(s) would go: ${preview.new} new, ${preview.changed} changed, ` +
          `${preview.deleted} deleted`,
      );
    }
    return EXIT.ok;
  }
  const env = cliEnv(signal, flags);
  const started = performance.now();
  const result: { pull?: PullReport; push?: PushReport } = {};
  let failure: unknown;
  try {
    if (command === "sync" || command === "pull") result.pull = await service.pullChanged(env, pull);
    if (command === "sync" || command === "push") result.push = await service.pushChanged(env);
  } catch (error) {
    // A push refused for conflicts has pushed everything else: what was done is still reported below.
    if ((error as MarshSyncError)?.kind !== "Conflicts") throw error;
    failure = error;
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  const conflicts = failure !== undefined || (result.pull?.conflicts.length ?? 0) > 0 ||
    (dryRun && (result.push?.conflicts.length ?? 0) > 0);
  if (flags.get("json")) {
    const error = failure === undefined ? undefined : errorJson(failure as MarshSyncError);
    console.log(JSON.stringify({ ...result, ...(error ? { error } : {}), seconds: Number(seconds) }));
  } else {
    if (result.pull) console.log(describePull(result.pull, dryRun));
    if (result.push) console.log(describePush(result.push, dryRun));
    if (failure !== undefined) console.log(`marsh: ${(failure as Error).message}`);
    console.log(`done in ${seconds}s`);
  }
  return conflicts ? EXIT.conflict : EXIT.ok;
}

/** `--metadata-only`, `--subdir D`, `--model TYPE/ID` (the type may have slashes: the id is after the last one). */
function pullOptions(command: string, parsed: Parsed): PullOptions {
  const { flags, lists } = parsed;
  const subdirs = lists.get("subdir");
  const models = (lists.get("model") ?? []).map((model) => {
    const slash = model.lastIndexOf("/");
    if (slash <= 0 || slash === model.length - 1) throw new UsageError(`--model needs TYPE/ID, not ${model}`);
    return { modelType: model.slice(0, slash), modelId: model.slice(slash + 1) };
  });
  const metadataOnly = flags.get("metadata-only") === true;
  if (command !== "pull" && (metadataOnly || subdirs || models.length)) {
    throw new UsageError("--metadata-only, --subdir and --model are pull options");
  }
  return { metadataOnly, subdirs, context: models.length ? { models } : undefined };
}

/** One file into the cache as the index has it (after `pull --metadata-only`). */
async function hydrate(parsed: Parsed, signal: AbortSignal): Promise<number> {
  const { flags, words } = parsed;
  const rel = words[1];
  if (rel === undefined || words.length > 2) throw new UsageError("hydrate needs exactly one PATH");
  const { store } = storeFrom(flags);
  const service = new SyncService(store, new DenoCache(required(flags, "cache")), serviceOptions(flags));
  const hydrated = await service.hydrateFile(cliEnv(signal, flags), rel);
  if (flags.get("json")) console.log(JSON.stringify({ rel, hydrated }));
  else console.log(hydrated ? `hydrate: ${rel} is in place` : `hydrate: the index has no ${rel}`);
  return hydrated ? EXIT.ok : EXIT.notFound;
}

/** The fields of an engine error, for `--json` output. */
function errorJson(error: MarshSyncError): Record<string, unknown> {
  return {
    kind: error.kind,
    message: error.message,
    ...(error.conflicts ? { conflicts: error.conflicts } : {}),
    ...(error.transferred !== undefined ? { transferred: error.transferred } : {}),
  };
}

async function status(parsed: Parsed, signal: AbortSignal): Promise<number> {
  const { flags } = parsed;
  const { store, scope } = storeFrom(flags);
  const service = new SyncService(store, new DenoCache(required(flags, "cache")), serviceOptions(flags));
  const report = await service.status(makeEnv(signal));
  if (flags.get("json")) {
    console.log(JSON.stringify({ store: scope, ...report }));
    return EXIT.ok;
  }
  const fast = report.pullFastPath === null ? "no (nothing verified yet)" : report.pullFastPath ? "yes" : "no";
  console.log(`store:            ${scope}`);
  console.log(`sidecar:          ${report.sidecar}`);
  console.log(
    `verified token:   ${report.verifiedToken ?? "none"}${report.verifiedAt ? ` (${report.verifiedAt})` : ""}`,
  );
  console.log(
    `locally dirty:    ${report.locallyDirty ? "yes" : "no"} (markDirty generation ${report.dirtyGeneration})`,
  );
  console.log(`marked paths:     ${report.markedPaths}`);
  console.log(`pull fast path:   ${fast}`);
  const layout = report.remoteFormat === 2 ? "format 2 (shards), _meta.json" : "format 1 (one object)";
  console.log(
    `remote index:     ${
      report.remoteIndexSize === null ? "none" : `${layout} ${formatBytes(report.remoteIndexSize)}`
    }`,
  );
  console.log(`open conflicts:   ${report.conflicts.length}${list(describeEach(report.conflicts))}`);
  if (report.conflicts.length > 0) {
    console.log("resolve each with `marsh resolve PATH --keep-local` or `--keep-remote`");
  }
  return EXIT.ok;
}

function describeEach(conflicts: Conflict[]): string[] {
  return conflicts.map((conflict) => describeConflictList([conflict]));
}

/** swamp's `datastore migrate-index`, under the datastore lock so that cooperating writers wait for it. */
async function migrateIndex(parsed: Parsed, signal: AbortSignal): Promise<number> {
  const { flags } = parsed;
  const { store, scope } = storeFrom(flags);
  // The migration touches no cache file; the service wants a cache directory all the same.
  const unused = await Deno.makeTempDir({ prefix: "marsh-migrate-" });
  try {
    const service = new SyncService(store, new DenoCache(unused), serviceOptions(flags));
    const lock = new MarshLock(store, scope, {
      lockKey: optional(flags, "lock-key"),
      namespace: optional(flags, "namespace"),
    });
    const result = await lock.withLock(() => service.migrateMonolithToShards(makeEnv(signal)));
    if (flags.get("json")) console.log(JSON.stringify(result));
    else if (!result.converted) {
      console.log(`migrate-index: already format 2 (${result.partitions.length} shard(s), commit ${result.commitSeq})`);
    } else {
      console.log(`migrate-index: format 2 now, ${result.partitions.length} shard(s), commit ${result.commitSeq}`);
    }
    return EXIT.ok;
  } finally {
    await Deno.remove(unused, { recursive: true });
  }
}

async function markDirty(parsed: Parsed, signal: AbortSignal): Promise<number> {
  const { flags } = parsed;
  const { store } = storeFrom(flags);
  const path = flags.get("path");
  if (path === true || path === "") throw new UsageError("--path needs a cache-relative path");
  await new SyncService(store, new DenoCache(required(flags, "cache")), serviceOptions(flags)).markDirty(
    makeEnv(signal),
    path,
  );
  return EXIT.ok;
}

async function resolve(parsed: Parsed, signal: AbortSignal): Promise<number> {
  const { flags, words } = parsed;
  const rel = words[1];
  if (rel === undefined || words.length > 2) throw new UsageError("resolve needs exactly one PATH");
  const local = flags.get("keep-local") === true;
  if (local === (flags.get("keep-remote") === true)) {
    throw new UsageError("resolve needs one of --keep-local and --keep-remote");
  }
  const { store } = storeFrom(flags);
  const service = new SyncService(store, new DenoCache(required(flags, "cache")), serviceOptions(flags));
  const result = await service.resolveConflict(cliEnv(signal, flags), rel, local ? "local" : "remote");
  if (flags.get("json")) {
    console.log(JSON.stringify(result));
  } else if (result.kept === "local") {
    const next = result.markedForPush ? "; the next push makes it the bucket's version" : "";
    console.log(`resolve: kept the local ${result.rel}${next}`);
  } else {
    const what = result.downloaded
      ? "downloaded the bucket's version"
      : result.removedLocal
      ? "removed the local copy (the bucket deleted it)"
      : "the bucket's version was already here";
    console.log(`resolve: kept the bucket's ${result.rel}: ${what}`);
  }
  return EXIT.ok;
}

async function lock(parsed: Parsed): Promise<number> {
  const { flags, words } = parsed;
  const { store, scope } = storeFrom(flags);
  const handle = new MarshLock(store, scope, {
    lockKey: optional(flags, "lock-key"),
    namespace: optional(flags, "namespace"),
  });
  const info = await handle.inspect();
  if (words[1] === "status") {
    if (flags.get("json")) console.log(JSON.stringify(info));
    else if (!info) console.log("no lock held");
    else if (info.holderUnknown) console.log("a lock is held, but its body cannot be read: the holder is unknown");
    else {console.log(
        `held by ${info.holder} (pid ${info.pid}) since ${info.acquiredAt}, ttl ${info.ttlMs} ms, nonce ${info.nonce}`,
      );}
    return EXIT.ok;
  }
  if (words[1] === "release") {
    if (flags.get("force") !== true) {
      throw new UsageError("lock release needs --force (it breaks another process's lock)");
    }
    if (!info) {
      console.log("no lock held");
      return EXIT.notFound;
    }
    const released = await handle.forceRelease(info.nonce ?? "");
    console.log(
      released
        ? `released the lock held by ${info.holder} (pid ${info.pid})`
        : "the lock changed meanwhile; not released",
    );
    return released ? EXIT.ok : EXIT.conflict;
  }
  throw new UsageError("lock needs `status` or `release --force`");
}

/** `namespace register NS --repo-id ID` (a create-only claim) and `namespace list`. */
async function namespaceCommand(parsed: Parsed, signal: AbortSignal): Promise<number> {
  const { flags, words } = parsed;
  const { store } = storeFrom(flags);
  if (words[1] === "register") {
    const name = words[2];
    if (name === undefined || words.length > 3) throw new UsageError("namespace register needs exactly one NS");
    await registerNamespace(store, makeEnv(signal), name, required(flags, "repo-id"));
    if (flags.get("json")) console.log(JSON.stringify({ namespace: name, registered: true }));
    else console.log(`namespace ${name} is claimed by ${required(flags, "repo-id")}`);
    return EXIT.ok;
  }
  if (words[1] === "list") {
    const names = await listNamespaces(store, makeEnv(signal));
    if (flags.get("json")) console.log(JSON.stringify({ namespaces: names }));
    else console.log(names.length ? names.join("\n") : "no namespaces");
    return EXIT.ok;
  }
  throw new UsageError("namespace needs `register NS --repo-id ID` or `list`");
}

async function verify(parsed: Parsed): Promise<number> {
  const { flags } = parsed;
  const { store, scope, kind } = storeFrom(flags);
  const verifier = makeVerifier(store, `marsh-${kind}`, { store: scope }, {
    credentials: "check the store's credentials and permissions",
    missingBucket: `${scope} does not exist`,
  });
  const result = await verifier.verify();
  if (flags.get("json")) console.log(JSON.stringify(result));
  else console.log(`${result.healthy ? "healthy" : "unhealthy"}: ${result.message} (${result.latencyMs} ms)`);
  return result.healthy
    ? EXIT.ok
    : exitCodeFor({ kind: result.details?.errorKind, status: Number(result.details?.status) });
}

export async function main(args: string[], signal: AbortSignal = new AbortController().signal): Promise<number> {
  try {
    const parsed = parseArgs(args);
    const [command] = parsed.words;
    if (parsed.flags.get("help") || command === undefined || command === "help") {
      console.log(USAGE);
      return command === undefined ? EXIT.usage : EXIT.ok;
    }
    switch (command) {
      case "version":
        console.log(`marsh ${version()}`);
        return EXIT.ok;
      case "sync":
      case "pull":
      case "push":
        return await sync(command, parsed, signal);
      case "status":
        return await status(parsed, signal);
      case "migrate-index":
        return await migrateIndex(parsed, signal);
      case "mark-dirty":
        return await markDirty(parsed, signal);
      case "resolve":
        return await resolve(parsed, signal);
      case "hydrate":
        return await hydrate(parsed, signal);
      case "lock":
        return await lock(parsed);
      case "verify":
        return await verify(parsed);
      case "namespace":
        return await namespaceCommand(parsed, signal);
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } catch (error) {
    const code = exitCodeFor(error);
    console.error(`marsh: ${error instanceof Error ? error.message : String(error)}`);
    if (code === EXIT.usage) console.error(USAGE);
    return code;
  }
}

if (import.meta.main) {
  const controller = new AbortController();
  Deno.addSignalListener("SIGINT", () => controller.abort());
  Deno.exit(await main(Deno.args, controller.signal));
}
