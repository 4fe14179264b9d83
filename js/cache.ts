/**
 * The cache directory on the local disk, as the wasm core sees it: a {@link MarshCache} over Deno's file system.
 *
 * What this module guarantees, whatever the core asks:
 * - Nothing is written outside the root: every `rel` is checked (B16) and no write goes through a symlinked directory.
 * - Writes are atomic: bytes go to a `.marsh-tmp-<random>` file in the target's directory (an internal name the core
 *   never syncs), are verified, then renamed over the target (W16). A failed or aborted write removes its temp file.
 * - Files are streamed, never held whole in memory (W15), and are stat'ed before they are read (W12).
 * - A walk is complete or fails (W7): only an entry that disappears between listing and stat is reported as vanished;
 *   symlinks are reported and never followed (W8).
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { resolve } from "node:path";
import { setImmediate } from "node:timers";
import type {
  Body,
  CallOptions,
  ExpectedDownload,
  FileStat,
  HashedFile,
  InternalStream,
  MarshCache,
  MarshErrorKind,
  MarshHostError,
  PackedStats,
  PackedWalk,
  PreparedUpload,
  Sha256Hex,
  UploadBody,
  WalkItem,
} from "./host.ts";
import {
  relProblem,
  type StatChain,
  type StatColumns,
  statColumns,
  type StatFailure,
  statSlice,
  StatWorker,
  StatWorkerGone,
} from "./stat_paths.ts";
import { readAll } from "./streams.ts";

export { relProblem } from "./stat_paths.ts";

/** Basename prefix of our temp files; the core treats any file named so as internal (src/path.rs `TEMP_PREFIX`). */
export const TEMP_PREFIX = ".marsh-tmp-";

/**
 * The two file-system calls a walk makes, replaceable so tests can make an entry vanish or a stat fail. They are
 * synchronous on purpose: an async op costs the main thread more than the sync call it replaces, so the walk runs
 * synchronously in slices and yields to the event loop between them.
 *
 * The walk trusts the entry types of a listing (`d_type`): a directory is listed, never stat'ed, and a symlink is
 * reported as listed; only files (for their size and mtime) and entries of no known type are stat'ed.
 */
export interface WalkFs {
  readDirSync(path: string): Iterable<Deno.DirEntry>;
  lstatSync(path: string): Deno.FileInfo;
}

export interface DenoCacheOptions {
  /** Defaults to `Deno.readDirSync` / `Deno.lstatSync`. */
  walkFs?: WalkFs;
  /**
   * Whether a `statMany` of many paths may run on the stat worker thread (js/stat_paths.ts). Default: yes, unless
   * `walkFs` is given (the worker makes its own system calls).
   */
  statWorker?: boolean;
  /**
   * How many characters of rels this process asks `statMany` for before the worker starts (default about 25,000
   * paths' worth: smaller caches never pay for it). Tests pass 0.
   */
  statWorkerAfter?: number;
}

/** An `Error` carrying the `MarshHostError` fields, so the core maps it to a typed failure naming the file. */
export class CacheError extends Error implements MarshHostError {
  kind: MarshErrorKind;
  key?: string;

  constructor(kind: MarshErrorKind, message: string, key?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = kind === "Aborted" ? "AbortError" : "MarshHostError";
    this.kind = kind;
    if (key !== undefined) this.key = key;
  }
}

const CHUNK_BYTES = 128 * 1024;
/** A downloaded chunk up to this size is written with one synchronous call (page-cache fast), a larger one async. */
const SYNC_WRITE_BYTES = 64 * 1024;
/** A file changing under us while it is hashed is retried this many times before the call fails. */
const HASH_ATTEMPTS = 3;

/**
 * A walk gives the event loop (lock heartbeat, other calls) a turn at least this often. The turn is a `setImmediate`
 * (due timers and ready I/O run, nothing waits): a `setTimeout(0)` after every slice would cost a large walk a
 * noticeable share of its time in Deno.
 */
const WALK_SLICE_MS = 10;
/**
 * At least this often the turn is a `setTimeout(0)` instead, during which the event loop may wait for I/O: work that
 * needs many quick round trips (a request to a local server) then still progresses during a long walk.
 */
const WALK_TIMER_TURN_MS = 100;

/** Bytes per chunk of a walk's packed rels (about 13,000 rels of 80 bytes). */
const RELS_CHUNK_BYTES = 1024 * 1024;

/** Last character of a listing key (see `#listDirectory`): names contain neither. */
const KEY_DIRECTORY = 0x2f; // "/"
const KEY_SYMLINK = 0x00;

/**
 * A `statMany` of at least this many characters of rels (about 200 paths) goes to the stat worker; fewer cost less on
 * this thread than the round trip.
 */
const STAT_WORKER_MIN_CHARS = 16 * 1024;
/**
 * The stat worker starts once this process has asked `statMany` for this many characters of rels (about 25,000 paths):
 * below that a slow path takes a fraction of a second on one thread, and the worker's isolate (~23 MB) buys nothing.
 */
const STAT_WORKER_AFTER_CHARS = 2 * 1024 * 1024;
/**
 * Folders a cache remembers as checked (B16), ~150 bytes each. A pull writes in key order, so a small set covers the
 * folders in use; when it is full it is forgotten and refilled, which costs one chain of `lstat` calls per folder.
 */
const REAL_DIRS_LIMIT = 4096;
/** Characters of rels this process has asked `statMany` for: the worker is one per process, so is this count. */
let statCharsAsked = 0;

/** A listed directory being walked: its sorted keys and the next one to visit. */
interface WalkFrame {
  prefix: string;
  keys: string[];
  next: number;
}

const denoWalkFs: WalkFs = { readDirSync: (path) => Deno.readDirSync(path), lstatSync: (path) => Deno.lstatSync(path) };

export class DenoCache implements MarshCache {
  /** Absolute, without a trailing slash (except the file-system root itself): W17. */
  readonly root: string;
  readonly #walkFs: WalkFs;
  readonly #statWorker: boolean;
  readonly #statWorkerAfter: number;
  readonly #realDirs: RealDirs;

  constructor(root: string, options: DenoCacheOptions = {}) {
    if (typeof root !== "string" || root === "" || root.includes("\0")) {
      throw new CacheError("Io", `cache root ${JSON.stringify(root)} is not a usable path`);
    }
    this.root = resolve(root);
    this.#walkFs = options.walkFs ?? denoWalkFs;
    this.#statWorker = options.statWorker ?? options.walkFs === undefined;
    this.#statWorkerAfter = options.statWorkerAfter ?? STAT_WORKER_AFTER_CHARS;
    this.#realDirs = new RealDirs(this.root.endsWith("/") ? this.root.slice(0, -1) : this.root);
  }

  // The lstat is a synchronous call (cheaper than an async op); `async` keeps every failure a rejected promise.
  // deno-lint-ignore require-await
  async stat(rel: string, options?: CallOptions): Promise<FileStat | null> {
    checkAborted(options, rel);
    const path = this.#pathOf(rel);
    const info = lstatOrNullSync(path, rel);
    if (info === null) return null;
    requireRegularFile(info, rel, path);
    return fileStat(info, rel);
  }

  async walk(options?: CallOptions): Promise<WalkItem[]> {
    return itemsOf(await this.walkPacked(options));
  }

  /**
   * The walk of `rel` alone: the file, or every file under the directory, or nothing when there is none. A symlink at
   * `rel` or at any directory above it is reported (by its own rel) and not followed: a push of marked paths must not
   * read through a link out of the cache any more than a full walk does.
   */
  async walkUnder(rel: string, options?: CallOptions): Promise<WalkItem[]> {
    checkAborted(options, rel);
    const path = this.#pathOf(rel);
    const segments = rel.split("/");
    let above = this.root.endsWith("/") ? this.root.slice(0, -1) : this.root;
    for (let i = 0; i < segments.length - 1; i++) {
      above = `${above}/${segments[i]}`;
      const info = await lstatOrNull(above, rel);
      if (info === null) return [];
      if (info.isSymlink) return [{ kind: "symlink", rel: segments.slice(0, i + 1).join("/") }];
      if (!info.isDirectory) return []; // a file where a directory would be: nothing lives at `rel`
    }
    const info = await lstatOrNull(path, rel);
    if (info === null) return [];
    if (info.isSymlink) return [{ kind: "symlink", rel }];
    if (info.isFile) return [{ kind: "file", rel, ...fileStat(info, rel) }];
    if (!info.isDirectory) {
      throw new CacheError("Io", `${rel} is not a regular file, directory or symlink (${path})`, rel);
    }
    return itemsOf(await this.#walkFrom(rel, options));
  }

  /**
   * The walk in the packed form the wasm core reads fastest (see `PackedWalk` in host.ts), built as it goes: no object
   * per file. Depth first, each directory's entries in sorted order with a directory sorting as `name/`, so files come
   * out in the order of their full rels and need no global sort.
   */
  walkPacked(options?: CallOptions): Promise<PackedWalk> {
    return this.#walkFrom("", options);
  }

  /** The packed walk of the directory `startRel` (`""`: the root), rels relative to the root. */
  async #walkFrom(startRel: string, options?: CallOptions): Promise<PackedWalk> {
    const walkFs = this.#walkFs;
    const base = this.root.endsWith("/") ? this.root : `${this.root}/`;
    const rels = new RelSink();
    const sizes: number[] = [];
    const mtimes: number[] = [];
    const symlinks: string[] = [];
    const vanished: string[] = [];
    /** Set when a directory turned up where a file was listed: the rels then need a sort after all. */
    let unsorted = false;

    checkAborted(options, "walk");
    const rootKeys = this.#listDirectory(startRel);
    if (rootKeys === null) return packWalk(rels, [], [], [], []); // no such directory (yet): nothing to list
    const stack: WalkFrame[] = [{ prefix: startRel === "" ? "" : `${startRel}/`, keys: rootKeys, next: 0 }];
    let sliceStarted = performance.now();
    let timerTurnAt = sliceStarted;
    while (stack.length > 0) {
      const frame = stack[stack.length - 1];
      const keys = frame.keys;
      const prefix = frame.prefix;
      let descend: string | null = null;
      while (frame.next < keys.length) {
        const key = keys[frame.next++];
        // The clock is read before every entry (it is cheap): a slow stat (a network file system) still ends the slice.
        const now = performance.now();
        if (now - sliceStarted >= WALK_SLICE_MS) {
          const timerTurn = now - timerTurnAt >= WALK_TIMER_TURN_MS;
          await new Promise<void>((resolve) => timerTurn ? setTimeout(resolve, 0) : setImmediate(resolve));
          sliceStarted = performance.now();
          if (timerTurn) timerTurnAt = sliceStarted;
          checkAborted(options, "walk");
        }
        const last = key.charCodeAt(key.length - 1);
        if (last === KEY_DIRECTORY) {
          descend = prefix + key.slice(0, -1);
          break;
        }
        if (last === KEY_SYMLINK) {
          symlinks.push(prefix + key.slice(0, -1));
          continue;
        }
        const rel = prefix + key;
        const path = base + rel;
        let info: Deno.FileInfo;
        try {
          info = walkFs.lstatSync(path);
        } catch (error) {
          if (error instanceof Deno.errors.NotFound) {
            vanished.push(rel);
            continue;
          }
          throw fsError(error, `cannot stat ${rel}`, rel, path);
        }
        if (info.isFile) {
          const mtime = info.mtime;
          if (mtime === null) throw new CacheError("Io", `${rel} has no modification time on this file system`, rel);
          rels.add(rel);
          sizes.push(info.size);
          mtimes.push(Math.round(mtime.getTime()));
        } else if (info.isSymlink) {
          symlinks.push(rel); // listed as a file, a symlink by now: reported, not followed
        } else if (info.isDirectory) {
          // Listed as a file (or of no known type), a directory by now: walked, but out of order.
          unsorted = true;
          descend = rel;
          break;
        } else {
          // A socket, FIFO or device cannot be synced, and skipping it silently would make a partial walk (W7).
          throw new CacheError("Io", `${rel} is not a regular file, directory or symlink (${path})`, rel);
        }
      }
      if (descend === null) {
        stack.pop();
        continue;
      }
      checkAborted(options, "walk");
      const childKeys = this.#listDirectory(descend);
      if (childKeys === null) vanished.push(descend);
      else stack.push({ prefix: `${descend}/`, keys: childKeys, next: 0 });
    }
    return packWalk(rels, sizes, mtimes, symlinks, vanished, unsorted);
  }

  /**
   * The state of each path of `rels` (joined by NUL), without a walk: one `lstat` per path and one per directory above
   * them, each directory checked once while consecutive paths share it (the core asks in path order), so that a symlink
   * at the path or above it is reported and never read through (W8, B16). A large batch is split with the stat worker
   * (js/stat_paths.ts), so that two cores make the system calls; this thread's part runs in slices, like the walk.
   */
  async statMany(rels: string, options?: CallOptions): Promise<PackedStats> {
    checkAborted(options, "stat");
    const base = this.root.endsWith("/") ? this.root : `${this.root}/`;
    statCharsAsked += rels.length;
    const wanted = this.#statWorker && rels.length >= STAT_WORKER_MIN_CHARS && statCharsAsked >= this.#statWorkerAfter;
    const worker = wanted ? StatWorker.ready() : null;
    // The worker takes the second half and this thread the first, so two cores make the system calls at once.
    const split = worker === null ? -1 : rels.indexOf("\0", rels.length >> 1);
    if (worker === null || split < 0) return await this.#statHere(base, rels, options);
    const rest = rels.slice(split + 1);
    const fromWorker = worker.stat(base, rest).catch((error) => {
      if (error instanceof StatWorkerGone) return null; // gone: this thread makes those stats too
      throw error;
    });
    // Handled from the start: when this thread's half fails first, that failure (first in path order) is reported.
    fromWorker.catch(() => {});
    const first = await this.#statHere(base, rels.slice(0, split), options);
    const second = (await fromWorker) ?? await this.#statHere(base, rest, options);
    checkAborted(options, "stat");
    if ("failed" in second) throw statError(second);
    const found = statColumns(first.kinds.length + second.kinds.length);
    found.kinds.set(first.kinds);
    found.kinds.set(second.kinds, first.kinds.length);
    found.sizes.set(first.sizes);
    found.sizes.set(second.sizes, first.kinds.length);
    found.mtimes.set(first.mtimes);
    found.mtimes.set(second.mtimes, first.kinds.length);
    return found;
  }

  /** `statMany` on this thread, in slices that give the event loop a turn (as a walk does). */
  async #statHere(base: string, rels: string, options?: CallOptions): Promise<StatColumns> {
    const walkFs = this.#walkFs;
    const lstat = (path: string) => walkFs.lstatSync(path);
    const paths = rels === "" ? [] : rels.split("\0");
    const found = statColumns(paths.length);
    const chain: StatChain = { names: [], kinds: [] };
    let timerTurnAt = performance.now();
    for (let next = 0;;) {
      const ended = statSlice(lstat, base, paths, next, performance.now() + WALK_SLICE_MS, found, chain);
      if (typeof ended === "object") throw statError(ended);
      if (ended === paths.length) return found;
      next = ended;
      const now = performance.now();
      const timerTurn = now - timerTurnAt >= WALK_TIMER_TURN_MS;
      await new Promise<void>((resolve) => timerTurn ? setTimeout(resolve, 0) : setImmediate(resolve));
      if (timerTurn) timerTurnAt = performance.now();
      checkAborted(options, "stat");
    }
  }

  /** Read through `readInternalStream` into one buffer of the file's size (`Deno.readFile` holds a second copy). */
  async readInternal(name: string, options?: CallOptions): Promise<Uint8Array | null> {
    const read = await this.readInternalStream(name, options);
    if (read === null) return null;
    try {
      const bytes = await readAll(read.stream, read.size);
      checkAborted(options, name);
      return bytes;
    } catch (error) {
      throw fsError(error, `cannot read ${name}`, name, this.#pathOf(name, { internal: true }));
    }
  }

  async readInternalStream(name: string, options?: CallOptions): Promise<InternalStream | null> {
    checkAborted(options, name);
    const path = this.#pathOf(name, { internal: true });
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path);
    } catch (error) {
      if (isMissing(error)) return null;
      throw fsError(error, `cannot read ${name}`, name, path);
    }
    try {
      const { size } = await file.stat();
      // The stream closes the file when it ends, fails or is cancelled.
      return { size, stream: file.readable };
    } catch (error) {
      file.close();
      throw fsError(error, `cannot read ${name}`, name, path);
    }
  }

  async writeInternal(name: string, bytes: Uint8Array, options?: CallOptions): Promise<void> {
    checkAborted(options, name);
    const path = this.#pathOf(name, { internal: true });
    await this.#makeRoot(name);
    const directory = await this.#internalFolder(name, { create: true });
    const temp = await TempFile.create(directory ?? this.root, name);
    try {
      await writeAll(temp.file, bytes);
      temp.close();
      checkAborted(options, name);
      renameInto(temp.path, path, name);
    } catch (error) {
      await temp.discard();
      throw error;
    }
  }

  /** Regular files only; our own temp files (a write in progress) are left out. */
  async listInternal(folder: string, options?: CallOptions): Promise<string[]> {
    checkAborted(options, folder);
    const path = this.#pathOf(folder, { internal: true });
    if (folder.includes("/")) {
      throw new CacheError("InvalidKey", `invalid internal folder ${JSON.stringify(folder)}: folders live at the root`);
    }
    const info = await lstatOrNull(path, folder);
    if (info === null) return [];
    if (!info.isDirectory) {
      // A symlink is never followed: a folder of marks pointing elsewhere is not ours to read.
      throw new CacheError("Io", `${folder} is not a directory (${path})`, folder);
    }
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(path)) {
        if (entry.isFile && !entry.name.startsWith(TEMP_PREFIX)) names.push(entry.name);
      }
    } catch (error) {
      if (isMissing(error)) return [];
      throw fsError(error, `cannot list ${folder}`, folder, path);
    }
    return names.sort();
  }

  async removeInternal(name: string, options?: CallOptions): Promise<void> {
    checkAborted(options, name);
    const path = this.#pathOf(name, { internal: true });
    if ((await this.#internalFolder(name, { create: false })) === null && name.includes("/")) return;
    const info = await lstatOrNull(path, name);
    if (info === null) return;
    if (info.isDirectory) throw new CacheError("Io", `${name} is a directory, not an internal file (${path})`, name);
    try {
      await Deno.remove(path); // a symlink is removed itself, never its target
    } catch (error) {
      if (isMissing(error)) return;
      throw fsError(error, `cannot remove ${name}`, name, path);
    }
  }

  /**
   * Remove a data file the bucket deleted, only if it is still the version the operation saw. The file is first moved
   * aside (an atomic rename to a temp name in its directory) and checked there, so a write landing between the check
   * and the removal is put back instead of lost.
   */
  async removeFile(rel: string, expected: FileStat, options?: CallOptions): Promise<void> {
    checkAborted(options, rel);
    const path = this.#pathOf(rel);
    this.#refuseSymlinkedParents(rel);
    const info = await lstatOrNull(path, rel);
    if (info === null) return;
    if (!isVersion(info, expected)) throw localChanged(rel, "removed");
    const aside = `${parentOf(path)}/${TEMP_PREFIX}${crypto.randomUUID()}`;
    try {
      await Deno.rename(path, aside);
    } catch (error) {
      if (isMissing(error)) return;
      throw fsError(error, `cannot remove ${rel}`, rel, path);
    }
    const moved = await lstatOrNull(aside, rel);
    if (moved !== null && !isVersion(moved, expected)) {
      await putBack(aside, path);
      throw localChanged(rel, "removed");
    }
    try {
      await Deno.remove(aside);
    } catch (error) {
      if (!isMissing(error)) throw fsError(error, `cannot remove ${rel}`, rel, aside);
    }
  }

  async prepareUpload(rel: string, options?: CallOptions): Promise<PreparedUpload | null> {
    const path = this.#pathOf(rel);
    const hashed = await hashFile(path, rel, options);
    if (hashed === null) return null;
    const body: UploadBody = {
      size: hashed.size,
      open: () => openVerified(path, rel, hashed),
    };
    return { size: hashed.size, mtimeMs: hashed.mtimeMs, sha256: hashed.sha256, body };
  }

  async download(rel: string, body: Body, expected: ExpectedDownload, options?: CallOptions): Promise<HashedFile> {
    const path = this.#pathOf(rel);
    const stream = await downloadStream(body, rel);
    let temp: TempFile | undefined;
    try {
      checkAborted(options, rel);
      const directory = parentOf(path);
      // The look-ups below (lstat, fstat) and the link/rename are synchronous, as the walk's stats are: each is one quick
      // system call, and as async ops they were most of a small file's download (bench/results/NOTES.md, 2026-12-03).
      const parentsExist = this.#refuseSymlinkedParents(rel);
      // A file that must be the one the core saw is checked before the body is read too: an edit here meanwhile costs
      // no transfer. `null` (nothing there) is not: the link refuses a file created meanwhile anyway, and the look
      // finds nothing in almost every case, a failed lstat, which throws (a tenth of a small download's main thread).
      if (expected.replaces !== null) refuseUnlessReplaceable(path, rel, expected.replaces);
      // Every parent was just seen as a real directory: no `mkdir -p` (a folder removed since is made on NotFound).
      // Creating folders and the temp file stays async: those system calls cost more than an op, and run off the main
      // thread.
      if (!parentsExist) await mkdirAll(directory, rel);
      try {
        temp = await TempFile.create(directory, rel);
      } catch (error) {
        if (!parentsExist || !(error instanceof CacheError && error.cause instanceof Deno.errors.NotFound)) throw error;
        await mkdirAll(directory, rel);
        temp = await TempFile.create(directory, rel);
      }
      const written = await copyHashing(stream, temp, expected.size, rel, options);
      const actual = written.sha256;
      if (written.size !== expected.size) {
        throw new CacheError(
          "Mismatch",
          `download of ${rel} has ${written.size} bytes, expected ${expected.size}: the file was not replaced`,
          rel,
        );
      }
      if (expected.sha256 !== undefined && expected.sha256.toLowerCase() !== actual) {
        throw new CacheError(
          "Mismatch",
          `download of ${rel} has sha256 ${actual}, expected ${expected.sha256}: the file was not replaced`,
          rel,
        );
      }
      // The stat of the bytes we wrote, taken on our own descriptor: a later writer cannot slip in between.
      const info = temp.file.statSync();
      temp.close();
      checkAborted(options, rel);
      // Again right before the rename: a symlink created during a long download, at any depth, must not redirect it (a
      // remembered folder is trusted only while its path still leads to that very directory).
      this.#refuseSymlinkedParents(rel);
      if (expected.replaces === null) {
        // Nothing may be there: a hard link never replaces an existing file (a symlink included), so a file created
        // meanwhile is kept.
        linkInto(temp.path, path, rel);
      } else {
        refuseTarget(path, rel, expected.replaces);
        renameInto(temp.path, path, rel);
        temp = undefined;
      }
      temp?.removeName(); // after a link, the temp name is a second name of the file now in place
      return { ...fileStat(info, rel), sha256: actual };
    } catch (error) {
      await stream.cancel(error).catch(() => {});
      await temp?.discard();
      throw error;
    }
  }

  async createDir(rel: string, options?: CallOptions): Promise<void> {
    checkAborted(options, rel);
    const path = this.#pathOf(rel);
    // The folder itself counts as a parent here: none on the way may lead out of the cache.
    this.#refuseSymlinkedParents(`${rel}/.`);
    await mkdirAll(path, rel);
    const info = await lstatOrNull(path, rel);
    if (info === null || !info.isDirectory) {
      throw new CacheError("Io", `cannot create the folder ${rel}: something else is there (${path})`, rel);
    }
  }

  async hash(rel: string, options?: CallOptions): Promise<HashedFile | null> {
    const hashed = await hashFile(this.#pathOf(rel), rel, options);
    return hashed === null ? null : { size: hashed.size, mtimeMs: hashed.mtimeMs, sha256: hashed.sha256 };
  }

  /**
   * The absolute path of a checked `rel` (B16); internal names are files at the root or in an internal folder at the
   * root (`.marsh-marks/<name>`), never deeper.
   */
  #pathOf(rel: string, { internal = false } = {}): string {
    const problem = relProblem(rel) ??
      (internal && rel.split("/").length > 2 ? "internal files live at the root or in a folder there" : null);
    if (problem !== null) {
      throw new CacheError("InvalidKey", `invalid cache path ${JSON.stringify(rel)}: ${problem}`, rel);
    }
    return this.root.endsWith("/") ? this.root + rel : `${this.root}/${rel}`;
  }

  /**
   * The entries under `dirRel` as sort keys, sorted: a directory's name with a `/` appended (so it sorts where its
   * files' rels do), a symlink's name with a NUL appended (it sorts as the bare name would), anything else by its name.
   * `null` when the directory is gone (listed, then removed).
   */
  #listDirectory(dirRel: string): string[] | null {
    const path = dirRel === "" ? this.root : this.#pathOfListed(dirRel);
    const keys: string[] = [];
    try {
      for (const entry of this.#walkFs.readDirSync(path)) {
        keys.push(entry.isDirectory ? `${entry.name}/` : entry.isSymlink ? `${entry.name}\0` : entry.name);
      }
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      throw fsError(error, `cannot list directory ${dirRel === "" ? "(cache root)" : dirRel}`, dirRel, path);
    }
    return keys.sort();
  }

  /** Listed names are joined as they are: one with a backslash is still a real file, the core reports its key. */
  #pathOfListed(rel: string): string {
    return this.root.endsWith("/") ? this.root + rel : `${this.root}/${rel}`;
  }

  async #makeRoot(rel: string): Promise<void> {
    await mkdirAll(this.root, rel);
  }

  /**
   * The absolute path of the internal folder `name` lives in (`null`: `name` is at the root, or with `create: false`,
   * its folder does not exist), created when asked. A folder that is a symlink is refused: it could lead out of the
   * cache.
   */
  async #internalFolder(name: string, { create }: { create: boolean }): Promise<string | null> {
    const slash = name.indexOf("/");
    if (slash < 0) return null;
    const folder = name.slice(0, slash);
    const path = this.#pathOf(folder, { internal: true });
    let info = await lstatOrNull(path, name);
    if (info === null) {
      if (!create) return null;
      try {
        await Deno.mkdir(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) {
          throw fsError(error, `cannot create the folder of ${name}`, name, path);
        }
      }
      info = await lstatOrNull(path, name);
    }
    if (info?.isSymlink) throw new CacheError("InvalidKey", `refusing to use ${folder}: it is a symlink`, name);
    if (info !== null && !info.isDirectory) {
      throw new CacheError("Io", `cannot use ${name}: ${folder} is not a directory (${path})`, name);
    }
    return info === null ? null : path;
  }

  /**
   * B16: no existing directory between the root and `rel` may be a symlink (it could point outside the cache). The root
   * itself may be one: the user chose where the cache lives. `true` when every directory above `rel` exists (so none
   * needs creating). Synchronous: a few quick system calls, cheaper than async ops.
   */
  #refuseSymlinkedParents(rel: string): boolean {
    return this.#realDirs.check(rel);
  }
}

/** A directory's identity as `stat` gives it: the same file, not merely one at the same path. */
interface DirIdentity {
  dev: number;
  ino: number;
  birthMs: number | null;
}

/**
 * The cache's folders seen as real directories from the root down (B16), each remembered by its identity (device,
 * inode, birth time). Checking a remembered folder again is one `lstat` of that folder: when its path still leads to
 * the very directory that was seen inside the cache, not through a symlink at its own name, a file written there lands
 * in that directory. A folder (or any folder above it) swapped for a symlink, removed or replaced leads to another
 * identity or to a symlink, and the whole chain is checked again from the root, one `lstat` per directory. The one
 * case let through is a directory moved out of the cache and linked back under its old path by a folder above it: the
 * write then lands in that same directory, as it would have had the move come a moment later. Done afresh per file,
 * a download's two checks were a dozen `lstat` calls per small file, a fifth of a fresh pull's main thread.
 */
class RealDirs {
  readonly #known = new Map<string, DirIdentity>();

  /** `root`: absolute, without a trailing slash; `limit`: folders remembered at most (then forgotten all at once). */
  constructor(readonly root: string, readonly limit = REAL_DIRS_LIMIT) {}

  /**
   * Refuse `rel` when a directory between the root and it is a symlink (`InvalidKey`) or not a directory (`Io`), naming
   * it. `true` when every directory above `rel` exists; `false` at the first missing one (the rest will be created by
   * the cache, as real directories, and checked again before anything is linked into them).
   */
  check(rel: string): boolean {
    const ends: number[] = [];
    for (let slash = rel.indexOf("/"); slash >= 0; slash = rel.indexOf("/", slash + 1)) ends.push(slash);
    let from = 0;
    // The deepest remembered folder on the way; when it no longer leads to itself, everything is checked afresh.
    for (let depth = ends.length - 1; depth >= 0; depth--) {
      const dirRel = rel.slice(0, ends[depth]);
      const known = this.#known.get(dirRel);
      if (known === undefined) continue;
      if (sameDirectory(lstatQuietSync(this.#pathOf(dirRel)), known)) from = depth + 1;
      else this.#known.delete(dirRel);
      break;
    }
    for (let depth = from; depth < ends.length; depth++) {
      const dirRel = rel.slice(0, ends[depth]);
      const path = this.#pathOf(dirRel);
      let info: Deno.FileInfo;
      try {
        info = Deno.lstatSync(path);
      } catch (error) {
        if (isMissing(error)) return false;
        throw fsError(error, `cannot check the directories of ${rel}`, rel, path);
      }
      if (info.isSymlink) throw new CacheError("InvalidKey", `refusing to write ${rel}: ${dirRel} is a symlink`, rel);
      if (!info.isDirectory) throw new CacheError("Io", `cannot write ${rel}: ${dirRel} is not a directory`, rel);
      this.#remember(dirRel, info);
    }
    return true;
  }

  #remember(dirRel: string, info: Deno.FileInfo): void {
    if (info.ino === null) return; // no identity to compare (not on Linux or macOS): always the whole chain
    if (this.#known.size >= this.limit) this.#known.clear();
    this.#known.set(dirRel, { dev: info.dev, ino: info.ino, birthMs: info.birthtime?.getTime() ?? null });
  }

  #pathOf(dirRel: string): string {
    return `${this.root}/${dirRel}`;
  }
}

function sameDirectory(info: Deno.FileInfo | null, known: DirIdentity): boolean {
  return info !== null && info.isDirectory && info.dev === known.dev && info.ino === known.ino &&
    (info.birthtime?.getTime() ?? null) === known.birthMs;
}

/** `lstat`, `null` for anything that fails: the caller then checks the whole chain and reports what it finds. */
function lstatQuietSync(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Paths

/** The order of `walk` (and of `walkPacked`'s files): UTF-16 code units, as `<` compares strings. */
function compareRels(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A walk's file rels as UTF-8, NUL between them: a string kept per file (and the cons strings and names it holds on to)
 * cost about 100 MB of JS heap at 250k files, the bytes about 20 MB outside it. Filled in chunks, not one buffer grown
 * by doubling, which would hold the old and the new copy at once.
 */
export class RelSink {
  #done: Uint8Array<ArrayBuffer>[] = [];
  #chunk: Uint8Array<ArrayBuffer>;
  #used = 0;
  #empty = true;
  #encoder = new TextEncoder();

  /** `chunkBytes`: only tests pass one, to cross chunk boundaries with a few rels. */
  constructor(readonly chunkBytes = RELS_CHUNK_BYTES) {
    this.#chunk = new Uint8Array(chunkBytes);
  }

  add(rel: string): void {
    // `encodeInto` writes at most 3 bytes per UTF-16 code unit; one more for the separator.
    const most = 1 + rel.length * 3;
    if (this.#used + most > this.#chunk.length) {
      this.#done.push(this.#chunk.subarray(0, this.#used));
      this.#chunk = new Uint8Array(Math.max(this.chunkBytes, most));
      this.#used = 0;
    }
    if (!this.#empty) this.#chunk[this.#used++] = 0;
    this.#empty = false;
    this.#used += this.#encoder.encodeInto(rel, this.#chunk.subarray(this.#used)).written;
  }

  /**
   * The bytes in one buffer of their own size (the core frees a buffer it has copied in only when it spans it); the
   * sink is empty again after.
   */
  take(): Uint8Array {
    const parts = [...this.#done, this.#chunk.subarray(0, this.#used)];
    const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
    let at = 0;
    for (const part of parts) {
      bytes.set(part, at);
      at += part.length;
      part.buffer.transfer(0); // freed now, not when the collector gets to it
    }
    this.#done = [];
    this.#chunk = new Uint8Array(0); // the next `add`, if any, starts a chunk of its own
    this.#used = 0;
    this.#empty = true;
    return bytes;
  }
}

/** NUL-joined rels (as `PackedWalk.files` holds them) as strings. */
function splitRels(files: Uint8Array | string): string[] {
  const joined = typeof files === "string" ? files : new TextDecoder().decode(files);
  return joined === "" ? [] : joined.split("\0");
}

/** A `PackedWalk` of the walk's lists; the files are sorted here only when the walk could not visit them in order. */
function packWalk(
  sink: RelSink,
  sizes: number[],
  mtimes: number[],
  symlinks: string[],
  vanished: string[],
  unsorted = false,
): PackedWalk {
  let files = sink.take();
  if (unsorted) {
    // Rare (a file turned into a directory mid-walk), so the strings are made only here.
    const rels = splitRels(files);
    const order = Array.from(rels.keys()).sort((a, b) => compareRels(rels[a], rels[b]));
    files = new TextEncoder().encode(order.map((i) => rels[i]).join("\0"));
    sizes = order.map((i) => sizes[i]);
    mtimes = order.map((i) => mtimes[i]);
  }
  return {
    files,
    sizes: new Float64Array(sizes),
    mtimes: new Float64Array(mtimes),
    // Few, and a vanished directory is found where `name/` sorts, not `name`: sorted here.
    symlinks: symlinks.sort(),
    vanished: vanished.sort(),
  };
}

/** A packed walk as one item per entry, in rel order. */
function itemsOf(packed: PackedWalk): WalkItem[] {
  const items: WalkItem[] = [];
  const rels = splitRels(packed.files);
  for (let i = 0; i < rels.length; i++) {
    items.push({ kind: "file", rel: rels[i], size: packed.sizes[i], mtimeMs: packed.mtimes[i] });
  }
  for (const rel of packed.symlinks) items.push({ kind: "symlink", rel });
  for (const rel of packed.vanished) items.push({ kind: "vanished", rel });
  // Three sorted runs: the merge sort finds them and merges them in linear time.
  items.sort((a, b) => compareRels(a.rel, b.rel));
  return items;
}

function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash <= 0 ? "/" : path.slice(0, slash);
}

// ---------------------------------------------------------------------------------------------------------------------
// Errors

function isMissing(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory;
}

/** A file-system failure as a typed error naming the cache path and the absolute path. */
function fsError(error: unknown, what: string, rel: string, path: string): Error {
  if (error instanceof CacheError) return error;
  if (isAbort(error)) return new CacheError("Aborted", `${what}: aborted`, rel, { cause: error });
  const reason = error instanceof Error ? error.message : String(error);
  return new CacheError("Io", `${what} (${path}): ${reason}`, rel, { cause: error });
}

/** A failure of `statSlice` (on this thread or the worker's) as the error the core maps. */
function statError(failure: StatFailure): CacheError {
  if (failure.invalid) return new CacheError("InvalidKey", failure.message, failure.rel);
  return new CacheError("Io", failure.message, failure.rel, { cause: failure.cause });
}

function isAbort(error: unknown): boolean {
  return error instanceof Error && error.name === "AbortError";
}

function checkAborted(options: CallOptions | undefined, rel: string): void {
  if (options?.signal?.aborted) throw new CacheError("Aborted", `${rel}: aborted`, rel);
}

// ---------------------------------------------------------------------------------------------------------------------
// Stats

async function lstatOrNull(path: string, rel: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (isMissing(error)) return null;
    throw fsError(error, `cannot stat ${rel}`, rel, path);
  }
}

/** `lstatOrNull` as one synchronous call, for the per-file checks of transfers (an async op costs more than the call). */
function lstatOrNullSync(path: string, rel: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch (error) {
    if (isMissing(error)) return null;
    throw fsError(error, `cannot stat ${rel}`, rel, path);
  }
}

function requireRegularFile(info: Deno.FileInfo, rel: string, path: string): void {
  if (info.isFile) return;
  const what = info.isSymlink ? "a symlink" : info.isDirectory ? "a directory" : "not a regular file";
  throw new CacheError("Io", `${rel} is ${what}, not a file the cache can sync (${path})`, rel);
}

function fileStat(info: Deno.FileInfo, rel: string): FileStat {
  if (info.mtime === null) throw new CacheError("Io", `${rel} has no modification time on this file system`, rel);
  return { size: info.size, mtimeMs: Math.round(info.mtime.getTime()) };
}

/** Same file, same size and mtime: nothing wrote it between two stats. */
function sameVersion(a: Deno.FileInfo, b: Deno.FileInfo): boolean {
  return a.size === b.size && a.mtime?.getTime() === b.mtime?.getTime() && a.ino === b.ino && a.dev === b.dev;
}

// ---------------------------------------------------------------------------------------------------------------------
// Hashing and streaming

interface HashedVersion extends HashedFile {
  info: Deno.FileInfo;
}

/**
 * Stat first (W12), then stream-hash; the stat is taken again on the open descriptor after hashing, so the size, mtime
 * and hash returned describe one version of the file. A file rewritten meanwhile is hashed again. The stats and the
 * open are synchronous calls (cheaper than async ops); the reads stay async.
 */
async function hashFile(path: string, rel: string, options?: CallOptions): Promise<HashedVersion | null> {
  for (let attempt = 1;; attempt++) {
    checkAborted(options, rel);
    const before = lstatOrNullSync(path, rel);
    if (before === null) return null;
    requireRegularFile(before, rel, path);
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(path, { read: true });
    } catch (error) {
      if (isMissing(error)) return null;
      throw fsError(error, `cannot open ${rel}`, rel, path);
    }
    try {
      const hash = createHash("sha256");
      const buffer = new Uint8Array(Math.max(1, Math.min(CHUNK_BYTES, before.size)));
      let size = 0;
      // Read up to the stat's size, not on to end of file: the stat after must then show the same size, mtime and
      // inode, so the bytes hashed are the whole of that version (one read fewer per small file).
      while (size < before.size) {
        checkAborted(options, rel);
        const n = await file.read(buffer);
        if (n === null) break;
        hash.update(buffer.subarray(0, n));
        size += n;
      }
      const after = file.statSync();
      if (size === before.size && sameVersion(before, after)) {
        return { ...fileStat(before, rel), sha256: hash.digest("hex"), info: before };
      }
    } catch (error) {
      throw fsError(error, `cannot read ${rel}`, rel, path);
    } finally {
      file.close();
    }
    if (attempt >= HASH_ATTEMPTS) {
      throw new CacheError("Io", `${rel} kept changing while it was hashed (${path}); try again`, rel);
    }
  }
}

/**
 * One PUT attempt's body: the file streamed in chunks and hashed again on the way. The last chunk is held back until
 * the end of the file confirms the size and hash taken by `prepareUpload`; otherwise the stream errors and the PUT
 * fails, so an object never holds bytes other than the ones the core records.
 */
// deno-lint-ignore require-await -- `async` keeps a failed open a rejected promise
async function openVerified(path: string, rel: string, prepared: HashedVersion): Promise<ReadableStream<Uint8Array>> {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (error) {
    throw fsError(error, `cannot open ${rel} for upload`, rel, path);
  }
  const changed = () =>
    new CacheError("Io", `${rel} changed after it was hashed for upload (${path}); it stays dirty`, rel);
  try {
    if (!sameVersion(prepared.info, file.statSync())) throw changed();
  } catch (error) {
    file.close();
    throw fsError(error, `cannot stat ${rel} for upload`, rel, path);
  }

  const hash = createHash("sha256");
  let sent = 0;
  let closed = false;
  const closeFile = () => {
    if (!closed) {
      closed = true;
      file.close();
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const chunk = new Uint8Array(Math.min(CHUNK_BYTES, Math.max(prepared.size - sent, 1)));
        const n = await file.read(chunk);
        const bytes = n === null ? chunk.subarray(0, 0) : chunk.subarray(0, n);
        sent += bytes.length;
        hash.update(bytes);
        if (sent > prepared.size) throw changed();
        if (n !== null && sent < prepared.size) {
          controller.enqueue(bytes);
          return;
        }
        // At (or short of) the prepared size: the file must end here (its size now, on our descriptor: a synchronous
        // fstat rather than an async read of one more byte) and hash the same.
        if (n !== null && file.statSync().size !== prepared.size) throw changed();
        if (sent !== prepared.size || hash.digest("hex") !== prepared.sha256) throw changed();
        closeFile();
        if (bytes.length > 0) controller.enqueue(bytes);
        controller.close();
      } catch (error) {
        closeFile();
        controller.error(fsError(error, `cannot read ${rel} for upload`, rel, path));
      }
    },
    cancel() {
      closeFile();
    },
  });
}

async function downloadStream(body: Body, rel: string): Promise<ReadableStream<Uint8Array>> {
  if (body instanceof ReadableStream) return body;
  if (body !== null && typeof body === "object" && typeof (body as UploadBody).open === "function") {
    return await (body as UploadBody).open();
  }
  throw new CacheError("Io", `download of ${rel}: the body is not a stream`, rel);
}

/**
 * Stream `source` into `file`, hashing as it goes; stops early once more than `limit` bytes arrived (the size check
 * then fails). An abort cancels the pending read at once.
 */
async function copyHashing(
  source: ReadableStream<Uint8Array>,
  temp: TempFile,
  limit: number,
  rel: string,
  options?: CallOptions,
): Promise<{ size: number; sha256: Sha256Hex }> {
  const signal = options?.signal;
  const reader = source.getReader();
  const onAbort = () => reader.cancel(signal?.reason).catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  const hash: Hash = createHash("sha256");
  let size = 0;
  try {
    for (;;) {
      checkAborted(options, rel);
      const { done, value } = await reader.read();
      checkAborted(options, rel);
      if (done) break;
      size += value.length;
      if (size > limit) break;
      hash.update(value);
      // A small chunk (a small file's whole body, usually) in one synchronous write: cheaper than an async op.
      if (value.length <= SYNC_WRITE_BYTES) writeAllSync(temp.file, value);
      else await writeAll(temp.file, value);
    }
  } catch (error) {
    throw fsError(error, `download of ${rel} failed`, rel, temp.path);
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
  return { size, sha256: hash.digest("hex") };
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
}

function writeAllSync(file: Deno.FsFile, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += file.writeSync(bytes.subarray(offset));
}

// ---------------------------------------------------------------------------------------------------------------------
// Temp files and renames

/** A `.marsh-tmp-<random>` file created exclusively in `directory`. */
class TempFile {
  #closed = false;

  private constructor(readonly path: string, readonly file: Deno.FsFile) {}

  static async create(directory: string, rel: string): Promise<TempFile> {
    const base = directory.endsWith("/") ? directory : `${directory}/`;
    const path = `${base}${TEMP_PREFIX}${crypto.randomUUID()}`;
    try {
      return new TempFile(path, await Deno.open(path, { write: true, createNew: true }));
    } catch (error) {
      throw fsError(error, `cannot create a temp file for ${rel}`, rel, path);
    }
  }

  close(): void {
    if (!this.#closed) {
      this.#closed = true;
      this.file.close();
    }
  }

  /** Close and remove; used on every failure path, so it never throws. */
  async discard(): Promise<void> {
    try {
      this.close();
    } catch {
      // already closed by a failed write
    }
    await Deno.remove(this.path).catch(() => {});
  }

  /** Remove the name only, the file being closed and linked elsewhere; never throws. */
  removeName(): void {
    try {
      Deno.removeSync(this.path);
    } catch {
      // a leftover temp name is internal: the core never syncs it
    }
  }
}

async function mkdirAll(path: string, rel: string): Promise<void> {
  try {
    await Deno.mkdir(path, { recursive: true });
  } catch (error) {
    throw fsError(error, `cannot create the directory for ${rel}`, rel, path);
  }
}

/**
 * The target right before a download lands, in one `lstat`: never a symlink (the core reports symlinks and leaves them
 * alone, W8), then what `expected.replaces` admits (see `refuseUnlessReplaceable`).
 */
function refuseTarget(path: string, rel: string, replaces: FileStat | null | undefined): void {
  const info = lstatOrNullSync(path, rel);
  if (info?.isSymlink) throw new CacheError("InvalidKey", `refusing to replace ${rel}: it is a symlink`, rel);
  if (replaces !== undefined && (replaces === null ? info !== null : info === null || !isVersion(info, replaces))) {
    throw localChanged(rel, "replaced");
  }
}

/** Size and mtime as the core saw them (integer milliseconds), on a regular file. */
function isVersion(info: Deno.FileInfo, expected: FileStat): boolean {
  return info.isFile && info.mtime !== null && info.size === expected.size &&
    Math.round(info.mtime.getTime()) === Math.round(expected.mtimeMs);
}

function localChanged(rel: string, what: "removed" | "replaced"): CacheError {
  return new CacheError(
    "LocalChanged",
    `${rel} changed here while this operation ran; it was not ${what} and is left as it is`,
    rel,
  );
}

/**
 * `expected.replaces` of a download: absent, anything may be replaced; `null`, nothing may be there; a stat, only the
 * regular file with that size and mtime.
 */
function refuseUnlessReplaceable(path: string, rel: string, replaces: FileStat | null | undefined): void {
  if (replaces === undefined) return;
  const info = lstatOrNullSync(path, rel);
  if (replaces === null ? info !== null : info === null || !isVersion(info, replaces)) {
    throw localChanged(rel, "replaced");
  }
}

/**
 * Give `to` the file at `from` unless something is at `to` already: then `LocalChanged`, or `InvalidKey` for a symlink
 * (which `refuseTarget` refuses).
 */
function linkInto(from: string, to: string, rel: string): void {
  try {
    Deno.linkSync(from, to);
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) {
      refuseTarget(to, rel, undefined);
      throw localChanged(rel, "replaced");
    }
    // A file system without hard links: check, then rename (the window between them is a few microseconds).
    refuseTarget(to, rel, null);
    renameInto(from, to, rel);
  }
}

/**
 * Undo a move aside: the file goes back under its name unless a newer file took that name meanwhile, which then wins
 * as it would have won over the file anyway.
 */
async function putBack(aside: string, path: string): Promise<void> {
  try {
    await Deno.link(aside, path);
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) {
      await Deno.rename(aside, path).catch(() => {});
      return;
    }
  }
  await Deno.remove(aside).catch(() => {});
}

function renameInto(from: string, to: string, rel: string): void {
  try {
    Deno.renameSync(from, to);
  } catch (error) {
    throw fsError(error, `cannot move the new ${rel} into place`, rel, to);
  }
}
