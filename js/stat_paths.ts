/**
 * `statMany` of the cache (js/cache.ts): the state of named paths without a walk, and the worker thread that takes these
 * system calls off the main thread when there are many.
 *
 * A slow-path pull stats every path the index names (250,000 at the bench's size: about 2 s of `lstat`) while the main
 * thread reads and parses the index. On one thread the two add up; in a worker they overlap. The worker runs the same
 * function as the main thread would ({@link statSlice}, from its source text), so both give the same answers and the
 * same errors.
 *
 * @module
 */

import { Worker } from "node:worker_threads";

/** Why `rel` is not a safe cache-relative path, or `null`; the same rules as the core's `check_rel` (src/path.rs). */
export function relProblem(rel: string): string | null {
  if (typeof rel !== "string" || rel === "") return "empty path";
  if (rel.startsWith("/")) return "absolute path";
  if (rel.includes("\\")) return "backslash in path";
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(rel)) return "control character in path";
  if (rel.endsWith("/")) return "trailing slash";
  if (/^[A-Za-z]:/.test(rel)) return "drive prefix";
  for (const segment of rel.split("/")) {
    if (segment === "") return "empty path segment";
    if (segment === "." || segment === "..") return "dot segment";
  }
  return null;
}

/** What a stat found per path: `PackedStats` of host.ts, filled as the paths are looked at. */
export interface StatColumns {
  kinds: Uint8Array;
  sizes: Float64Array;
  mtimes: Float64Array;
}

/** The directories above the last path looked at, by depth: their names and what each is (a kind, as in `kinds`). */
export interface StatChain {
  names: string[];
  kinds: number[];
}

/**
 * Why a stat failed at one path; the caller makes it a `CacheError` (a worker cannot send one). `invalid`: `rel` is not
 * a safe path (InvalidKey), else an I/O failure.
 */
export interface StatFailure {
  failed: true;
  rel: string;
  message: string;
  invalid?: boolean;
  cause?: unknown;
}

/**
 * Look at `paths[from]`, `paths[from + 1]`, … until the end or until `performance.now()` passes `until`; returns the
 * index to go on from (`paths.length` when done), or the failure that ends the call. Kinds: 0 absent, 1 regular file,
 * 2 symlink (at the path or at a directory above it, never read through: W8, B16); a directory at the path reads as
 * absent. A directory above a path is looked at once while consecutive paths share it (callers ask in path order):
 * `chain` carries that across calls.
 *
 * Self-contained on purpose: the stat worker runs this function's source text, so it may refer to nothing outside
 * itself but `relProblem`, `performance` and `lstat`'s errors.
 */
export function statSlice(
  lstat: (path: string) => Deno.FileInfo,
  base: string,
  paths: string[],
  from: number,
  until: number,
  out: StatColumns,
  chain: StatChain,
): number | StatFailure {
  // The numbering of `PackedStats.kinds` (host.ts); a directory on the way is 3, never reported.
  const ABSENT = 0, FILE = 1, SYMLINK = 2, DIRECTORY = 3;
  const missing = (error: unknown) =>
    error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory;
  const ioFailure = (error: unknown, what: string, rel: string, path: string): StatFailure => ({
    failed: true,
    rel,
    message: `${what} (${path}): ${error instanceof Error ? error.message : String(error)}`,
    cause: error,
  });
  for (let i = from; i < paths.length; i++) {
    // Checked every 64 paths: a clock read per path would cost more than it saves.
    if ((i - from) % 64 === 63 && performance.now() >= until) return i;
    const rel = paths[i];
    const problem = relProblem(rel);
    if (problem !== null) {
      return { failed: true, rel, invalid: true, message: `invalid cache path ${JSON.stringify(rel)}: ${problem}` };
    }
    const segments = rel.split("/");
    const parents = segments.length - 1;
    let depth = 0;
    while (depth < chain.names.length && depth < parents && chain.names[depth] === segments[depth]) depth++;
    chain.names.length = depth;
    chain.kinds.length = depth;
    // Each directory is looked at only while every one above it is a real directory.
    while (depth < parents && (depth === 0 || chain.kinds[depth - 1] === DIRECTORY)) {
      const path = base + segments.slice(0, depth + 1).join("/");
      let kind = ABSENT; // missing, or not a directory: nothing lives below it
      try {
        const info = lstat(path);
        kind = info.isSymlink ? SYMLINK : info.isDirectory ? DIRECTORY : ABSENT;
      } catch (error) {
        if (!missing(error)) return ioFailure(error, `cannot stat the directories of ${rel}`, rel, path);
      }
      chain.names.push(segments[depth]);
      chain.kinds.push(kind);
      depth++;
    }
    const above = parents === 0 ? DIRECTORY : chain.kinds[chain.kinds.length - 1];
    if (above === SYMLINK) {
      out.kinds[i] = SYMLINK;
      continue;
    }
    if (above !== DIRECTORY) continue; // nothing there, or a file where a directory would be: absent
    const path = base + rel;
    let info: Deno.FileInfo;
    try {
      info = lstat(path);
    } catch (error) {
      if (missing(error)) continue;
      return ioFailure(error, `cannot stat ${rel}`, rel, path);
    }
    if (info.isFile) {
      if (info.mtime === null) {
        return { failed: true, rel, message: `${rel} has no modification time on this file system` };
      }
      out.kinds[i] = FILE;
      out.sizes[i] = info.size;
      out.mtimes[i] = Math.round(info.mtime.getTime());
    } else if (info.isSymlink) {
      out.kinds[i] = SYMLINK;
    } else if (!info.isDirectory) {
      // As in a walk: a socket, FIFO or device cannot be synced, and calling it absent would hide it.
      return { failed: true, rel, message: `${rel} is not a regular file, directory or symlink (${path})` };
    }
  }
  return paths.length;
}

/** Empty columns for `count` paths (every kind absent until looked at). */
export function statColumns(count: number): StatColumns {
  return { kinds: new Uint8Array(count), sizes: new Float64Array(count), mtimes: new Float64Array(count) };
}

/** A request to the worker: stat `rels` (joined by NUL) under `base` (the cache root with a trailing slash). */
interface StatRequest {
  id: number;
  base: string;
  rels: string;
}

/** The worker's answer: the columns (their buffers moved, not copied), or the failure, or a crash of its own. */
type StatReply =
  | { id: number; columns: StatColumns }
  | { id: number; failure: StatFailure }
  | { id: number; crashed: string };

/**
 * The worker's program: {@link relProblem}, {@link statSlice} and {@link statColumns} from their own source text, and
 * a loop answering one request per message. It says "ready" first, so that no request waits for it to start.
 */
function workerSource(): string {
  return [
    `"use strict";`,
    `const { parentPort } = require("node:worker_threads");`,
    `${relProblem}`,
    `${statSlice}`,
    `${statColumns}`,
    `const lstat = (path) => Deno.lstatSync(path);`,
    `parentPort.on("message", ({ id, base, rels }) => {`,
    `  try {`,
    `    const paths = rels === "" ? [] : rels.split("\\0");`,
    `    const columns = ${statColumns.name}(paths.length);`,
    `    const ended = ${statSlice.name}(lstat, base, paths, 0, Infinity, columns, { names: [], kinds: [] });`,
    `    if (typeof ended === "object") {`,
    `      const { cause, ...failure } = ended;`,
    `      parentPort.postMessage({ id, failure: { ...failure, cause: cause instanceof Error ?`,
    `        { name: cause.name, message: cause.message } : cause } });`,
    `    } else {`,
    `      parentPort.postMessage({ id, columns },`,
    `        [columns.kinds.buffer, columns.sizes.buffer, columns.mtimes.buffer]);`,
    `    }`,
    `  } catch (error) {`,
    `    parentPort.postMessage({ id, crashed: String(error && error.stack || error) });`,
    `  }`,
    `});`,
    `parentPort.postMessage("ready");`,
  ].join("\n");
}

/** Thrown (and caught by the cache, which then stats on its own thread) when the worker is gone or never started. */
export class StatWorkerGone extends Error {
  constructor(reason: string) {
    super(`the stat worker is not available: ${reason}`);
    this.name = "StatWorkerGone";
  }
}

/**
 * One worker for the process, started on the first large stat and kept while it works. It never holds the process
 * open: it is unref'd whenever no request is waiting for it. If it cannot start or dies, every caller falls back to
 * stating on the main thread, which gives the same answers.
 */
export class StatWorker {
  static #shared: StatWorker | undefined;
  /** Set once it failed to start or died: no second attempt in this process. */
  static #broken = false;
  /** Requests the workers of this process answered with stats: tests and the bench read it to see the worker at work. */
  static answered = 0;

  #worker: Worker;
  #ready = false;
  #gone: string | null = null;
  #pending = new Map<number, { resolve: (reply: StatReply) => void; reject: (error: Error) => void }>();
  #nextId = 0;

  private constructor() {
    this.#worker = new Worker(workerSource(), { eval: true });
    this.#worker.unref();
    this.#worker.on("message", (message: StatReply | "ready") => {
      if (message === "ready") {
        this.#ready = true;
        return;
      }
      const waiting = this.#pending.get(message.id);
      if (waiting === undefined) return;
      this.#pending.delete(message.id);
      if (this.#pending.size === 0) this.#worker.unref();
      if (!("crashed" in message)) StatWorker.answered++;
      waiting.resolve(message);
    });
    const lost = (reason: string) => {
      if (this.#lose(reason)) StatWorker.#broken = true;
    };
    this.#worker.on("error", (error: unknown) => lost(error instanceof Error ? error.message : String(error)));
    this.#worker.on("exit", (code: number) => lost(`it exited with code ${code}`));
  }

  /** Mark this worker gone and fail whatever waits for it (its callers stat on their own thread). `false`: it was. */
  #lose(reason: string): boolean {
    if (this.#gone !== null) return false;
    this.#gone = reason;
    if (StatWorker.#shared === this) StatWorker.#shared = undefined;
    for (const waiting of this.#pending.values()) waiting.reject(new StatWorkerGone(reason));
    this.#pending.clear();
    return true;
  }

  /**
   * The worker if it is running and has said it is ready; otherwise `null`, and the first call starts it, so that a
   * caller never waits for it to start (the stats it asks meanwhile are made on the main thread).
   */
  static ready(): StatWorker | null {
    if (StatWorker.#broken) return null;
    if (StatWorker.#shared === undefined) {
      try {
        StatWorker.#shared = new StatWorker();
      } catch {
        StatWorker.#broken = true; // no worker threads here (a sandbox, a runtime without them)
        return null;
      }
    }
    return StatWorker.#shared.#ready ? StatWorker.#shared : null;
  }

  /** The stats of `rels` (NUL-joined) under `base`, or the failure at the first path that could not be looked at. */
  stat(base: string, rels: string): Promise<StatColumns | StatFailure> {
    if (this.#gone !== null) return Promise.reject(new StatWorkerGone(this.#gone));
    const id = this.#nextId++;
    return new Promise<StatReply>((resolve, reject) => {
      if (this.#pending.size === 0) this.#worker.ref();
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, base, rels } satisfies StatRequest);
    }).then((reply) => {
      if ("columns" in reply) return reply.columns;
      if ("failure" in reply) return { ...reply.failure, failed: true as const };
      throw new StatWorkerGone(`it crashed: ${reply.crashed}`);
    });
  }

  /**
   * For tests: end the worker of this process as a crash would (whatever waits for it fails over to the main thread),
   * but so that the next large stat starts a new one.
   */
  static async stopForTests(): Promise<void> {
    const worker = StatWorker.#shared;
    StatWorker.#broken = false;
    if (worker === undefined) return;
    worker.#lose("stopped");
    await worker.#worker.terminate();
  }

  /** For tests: wait until the worker of this process has started (starting it), and say whether it did. */
  static async startedForTests(timeoutMs = 10_000): Promise<boolean> {
    const until = performance.now() + timeoutMs;
    while (StatWorker.ready() === null) {
      if (StatWorker.#broken || performance.now() > until) return false;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return true;
  }
}
