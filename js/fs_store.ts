/**
 * A `MarshStore` kept in a local directory (the CLI's `--store file:///dir`): real version tokens and real
 * preconditions, safe for several processes on one machine, for demos and benchmarks without a cloud account.
 *
 * Layout under the root:
 * ```
 * generation                  the last token issued (decimal); flock'd by every commit
 * objects/data/a.json~        the object "data/a.json": a 64-byte header line (token, size), then the body
 * objects/data/~<uuid>.tmp    an upload in flight (never listed, never read)
 * ```
 * - One file per object, header and body together: a reader opens the file once and gets a token and the bytes of that
 *   token, whatever writers do next. Writers never modify an object file: they write a temp file in the same directory
 *   and rename it over the old one, and `delete` unlinks it, so an open reader keeps its inode (POSIX semantics).
 * - Object files end with `~` and directories never contain one (`~` and `%` in key segments are written `%7E` and
 *   `%25`), so the keys `a` (file `a~`) and `a/b` (directory `a/`) coexist as they do in a bucket.
 * - Tokens are generations: a store-wide counter, so a token is never issued twice, not even to an object that was
 *   deleted and created again (a stale `ifMatch` can never match a newer object: no ABA).
 *
 * The lock rule: every commit (precondition check, token issue, rename; or check and unlink for `delete`) runs while
 * holding an exclusive `flock` on `<root>/generation`. The kernel releases the lock when its holder closes the file or
 * dies, so a crashed process never leaves a stale lock behind and no process ever breaks another's lock (breaking a
 * lock by age can let two writers commit at once, and one compare-and-swap would be lost). The body is streamed to the
 * temp file before the lock is taken and the commit itself is synchronous, so the lock is held for a few system calls
 * and never across an `await` (commits of one process cannot interleave either). A waiter polls with short, abortable
 * sleeps and gives up with `Transient` after {@link LOCK_WAIT_LIMIT_MS} (a holder that is stopped, not dead).
 *
 * Like S3, a precondition is judged when the upload completes, not when it starts. Written for Linux and macOS. Not
 * covered: durability across a power loss (no fsync), case-insensitive file systems (keys differing only in case
 * collide), network file systems, and a store directory that others tamper with (symlinks inside it are followed).
 * Directories emptied by `delete` stay; temp files of a crashed upload stay until removed by hand.
 *
 * @module
 */

import { join, resolve } from "node:path";

import { abortableSleep } from "./env.ts";
import { abortedError, StoreError, throwIfAborted } from "./errors.ts";
import type {
  Body,
  CallOptions,
  FetchedBody,
  FetchedBytes,
  ListedObject,
  ListPage,
  MarshErrorKind,
  MarshStore,
  NotModified,
  ObjectMeta,
  Precondition,
  VersionToken,
} from "./host.ts";

/** Objects per `list` page by default, as S3 and GCS answer. */
export const LIST_PAGE_SIZE = 1000;
/** How long a commit waits for the store lock before failing with `Transient`. */
export const LOCK_WAIT_LIMIT_MS = 30_000;

const HEADER_BYTES = 64;
const HEADER_PATTERN = /^marsh-fs v1 token=([1-9][0-9]*) size=(0|[1-9][0-9]*) *\n$/;
const CHUNK_BYTES = 64 * 1024;
/** `getBytes` reads a body up to this size with blocking calls (see there). */
export const SYNC_READ_BYTES = 256 * 1024;
const OBJECT_SUFFIX = "~";

function storeError(kind: MarshErrorKind, key: string, message: string): StoreError {
  return new StoreError(kind, message, { key });
}

// --- keys and paths -------------------------------------------------------------------------------------------------

/** A key's segments, or `undefined` when the key could name something outside the store (or nothing at all). */
function keySegments(key: string): string[] | undefined {
  if (key === "" || key.includes("\\") || key.includes("\0")) return undefined;
  const segments = key.split("/");
  return segments.every(isSafeSegment) ? segments : undefined;
}

function isSafeSegment(segment: string): boolean {
  return segment !== "" && segment !== "." && segment !== ".." && !segment.includes("\\") && !segment.includes("\0");
}

function encodeSegment(segment: string): string {
  return segment.replaceAll("%", "%25").replaceAll("~", "%7E");
}

/** The segment a directory or object name on disk stands for; `undefined` for names this store never writes. */
function decodeName(name: string): string | undefined {
  const segment = name.replace(/%(25|7E)/g, (_, code: string) => (code === "25" ? "%" : "~"));
  return isSafeSegment(segment) && encodeSegment(segment) === name ? segment : undefined;
}

/**
 * Byte order of the UTF-8 encodings (S3's listing order): code point order, which differs from JS string order only
 * where a surrogate pair meets a code unit in U+E000–U+FFFF.
 */
export function compareKeys(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

function codePointRank(codeUnit: number): number {
  if (codeUnit >= 0xe000) return codeUnit - 0x800;
  if (codeUnit >= 0xd800) return codeUnit + 0x2000;
  return codeUnit;
}

// --- object files ---------------------------------------------------------------------------------------------------

function encodeHeader(token: VersionToken, size: number): Uint8Array {
  const line = `marsh-fs v1 token=${token} size=${size}`;
  return new TextEncoder().encode(line.padEnd(HEADER_BYTES - 1, " ") + "\n");
}

async function readFull(file: Deno.FsFile, buffer: Uint8Array): Promise<number> {
  let filled = 0;
  while (filled < buffer.length) {
    const read = await file.read(buffer.subarray(filled));
    if (read === null) break;
    filled += read;
  }
  return filled;
}

function readFullSync(file: Deno.FsFile, buffer: Uint8Array): number {
  let filled = 0;
  while (filled < buffer.length) {
    const read = file.readSync(buffer.subarray(filled));
    if (read === null) break;
    filled += read;
  }
  return filled;
}

function writeFullSync(file: Deno.FsFile, bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
}

async function writeFull(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

function parseHeader(header: Uint8Array, key: string): ObjectMeta {
  const match = HEADER_PATTERN.exec(new TextDecoder().decode(header));
  if (!match) throw storeError("Io", key, `fs store: object file of ${key} has no valid header`);
  return { token: match[1], size: Number(match[2]) };
}

/** Reads the header of an open object file, leaving the file positioned at the first body byte. */
async function readHeader(file: Deno.FsFile, key: string): Promise<ObjectMeta> {
  const buffer = new Uint8Array(HEADER_BYTES);
  return parseHeader(buffer.subarray(0, await readFull(file, buffer)), key);
}

function isMissing(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory;
}

/** Opens an object file; `undefined` when there is none. */
async function openObject(path: string): Promise<Deno.FsFile | undefined> {
  try {
    return await Deno.open(path, { read: true });
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

/** The header of an object file; `undefined` when there is none. */
async function currentMeta(path: string, key: string): Promise<ObjectMeta | undefined> {
  const file = await openObject(path);
  if (!file) return undefined;
  try {
    return await readHeader(file, key);
  } finally {
    file.close();
  }
}

/** {@link openObject}, synchronously. */
function openObjectSync(path: string): Deno.FsFile | undefined {
  try {
    return Deno.openSync(path, { read: true });
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

/** {@link readHeader}, synchronously. */
function readHeaderSync(file: Deno.FsFile, key: string): ObjectMeta {
  const buffer = new Uint8Array(HEADER_BYTES);
  return parseHeader(buffer.subarray(0, readFullSync(file, buffer)), key);
}

/** {@link currentMeta}, synchronously, for use under the store lock. */
function currentMetaSync(path: string, key: string): ObjectMeta | undefined {
  const file = openObjectSync(path);
  if (!file) return undefined;
  try {
    return readHeaderSync(file, key);
  } finally {
    file.close();
  }
}

function checkPrecondition(key: string, current: ObjectMeta | undefined, precondition: Precondition): void {
  if (precondition.kind === "ifAbsent" && current) {
    throw storeError("PreconditionFailed", key, `fs store: ${key} exists (token ${current.token})`);
  }
  if (precondition.kind === "ifMatch" && current?.token !== precondition.token) {
    const found = current ? `token ${current.token}` : "no object";
    throw storeError(
      "PreconditionFailed",
      key,
      `fs store: ${key} expected token ${precondition.token}, found ${found}`,
    );
  }
}

/** The body of an open object file, from its current position; closes the file at the end, on error or cancel. */
function bodyStream(file: Deno.FsFile, key: string, size: number, signal: AbortSignal | undefined) {
  let remaining = size;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    signal?.removeEventListener("abort", onAbort);
    file.close();
  };
  let controller: ReadableStreamDefaultController<Uint8Array>;
  const onAbort = () => {
    close();
    controller.error(abortedError("fs get", key, signal?.reason));
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  return new ReadableStream<Uint8Array>({
    start(streamController) {
      controller = streamController;
    },
    async pull(streamController) {
      try {
        throwIfAborted(signal, "fs get", key);
        if (remaining === 0) {
          close();
          streamController.close();
          return;
        }
        const chunk = new Uint8Array(Math.min(CHUNK_BYTES, remaining));
        const read = await file.read(chunk);
        if (closed) return; // aborted while reading: the stream is already errored
        if (read === null) throw storeError("Io", key, `fs store: object file of ${key} ends before its size`);
        remaining -= read;
        streamController.enqueue(chunk.subarray(0, read));
      } catch (error) {
        close();
        throw error;
      }
    },
    cancel() {
      close();
    },
  });
}

/** Writes `body` after the header's place in `file`; answers the body's length. */
async function writeBody(file: Deno.FsFile, key: string, body: Body | Uint8Array, signal?: AbortSignal) {
  if (body instanceof Uint8Array) {
    await writeFull(file, body);
    return body.length;
  }
  const declaredSize = body instanceof ReadableStream ? undefined : body.size;
  const reader = (body instanceof ReadableStream ? body : await body.open()).getReader();
  let written = 0;
  try {
    for (;;) {
      throwIfAborted(signal, "fs put", key);
      const { done, value } = await reader.read();
      if (done) break;
      await writeFull(file, value);
      written += value.length;
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    throw error;
  } finally {
    reader.releaseLock();
  }
  if (declaredSize !== undefined && written !== declaredSize) {
    throw storeError("Io", key, `fs store: body of ${key} was ${written} bytes, expected ${declaredSize}`);
  }
  return written;
}

// --- the store lock -------------------------------------------------------------------------------------------------

/** The store lock while held: issues tokens from the generation counter. */
interface Commit {
  issueToken(): VersionToken;
}

/**
 * Runs `work` holding the store lock. `work` is synchronous on purpose: no other commit of this process can run while
 * the lock is held (so no in-process queue is needed), and the lock is held for a few system calls only.
 */
async function withStoreLock<T>(
  root: string,
  key: string,
  signal: AbortSignal | undefined,
  work: (commit: Commit) => T,
): Promise<T> {
  const lockPath = join(root, "generation");
  const deadline = Date.now() + LOCK_WAIT_LIMIT_MS;
  for (let pause = 1;; pause = Math.min(pause * 2, 8)) {
    throwIfAborted(signal, "fs commit", key);
    const file = Deno.openSync(lockPath, { read: true, write: true, create: true });
    try {
      if (file.tryLockSync(true)) return work({ issueToken: () => issueToken(file, lockPath) });
    } finally {
      file.close(); // releases the flock
    }
    if (Date.now() > deadline) {
      throw storeError("Transient", key, `fs store: ${lockPath} stayed locked for ${LOCK_WAIT_LIMIT_MS} ms`);
    }
    await abortableSleep(pause, signal).catch((error) => {
      throw abortedError("fs commit", key, error);
    });
  }
}

function issueToken(file: Deno.FsFile, lockPath: string): VersionToken {
  file.seekSync(0, Deno.SeekMode.Start);
  const buffer = new Uint8Array(32);
  const text = new TextDecoder().decode(buffer.subarray(0, readFullSync(file, buffer))).trim();
  const last = text === "" ? 0 : Number(text);
  if (!Number.isSafeInteger(last) || last < 0) throw new Error(`fs store: ${lockPath} holds no generation: ${text}`);
  const next = String(last + 1);
  // Fixed width: a shorter number never leaves digits of a longer one behind.
  file.seekSync(0, Deno.SeekMode.Start);
  writeFullSync(file, new TextEncoder().encode(next.padEnd(20, " ") + "\n"));
  return next;
}

// --- the store ------------------------------------------------------------------------------------------------------

export interface FsStoreOptions {
  /** Objects per `list` page (default {@link LIST_PAGE_SIZE}); smaller pages make paging tests cheap. */
  listPageSize?: number;
}

export class FsStore implements MarshStore {
  readonly #root: string;
  readonly #listPageSize: number;

  /** `root` need not exist: the first write creates it. */
  constructor(root: string, options: FsStoreOptions = {}) {
    this.#root = resolve(root);
    this.#listPageSize = options.listPageSize ?? LIST_PAGE_SIZE;
  }

  /** The absolute path of an object's file, or an `InvalidKey` error for a key that could escape the root. */
  #objectPath(key: string): { dir: string; file: string } {
    const segments = keySegments(key);
    if (!segments) throw storeError("InvalidKey", key, `fs store: invalid key ${JSON.stringify(key)}`);
    const encoded = segments.map(encodeSegment);
    const leaf = encoded.pop()!;
    const dir = join(this.#root, "objects", ...encoded);
    return { dir, file: join(dir, leaf + OBJECT_SUFFIX) };
  }

  async get(key: string, ifNoneMatch?: VersionToken, options?: CallOptions): Promise<FetchedBody | NotModified> {
    throwIfAborted(options?.signal, "fs get", key);
    const { file: path } = this.#objectPath(key);
    const file = await openObject(path);
    if (!file) throw storeError("NotFound", key, `fs store: ${key} not found`);
    let handedOver = false; // to the body stream, which closes the file itself
    try {
      const meta = await readHeader(file, key);
      if (ifNoneMatch === meta.token) return { notModified: true };
      throwIfAborted(options?.signal, "fs get", key);
      handedOver = true;
      return { ...meta, body: bodyStream(file, key, meta.size, options?.signal) };
    } finally {
      if (!handedOver) file.close();
    }
  }

  async getBytes(key: string, ifNoneMatch?: VersionToken, options?: CallOptions): Promise<FetchedBytes | NotModified> {
    throwIfAborted(options?.signal, "fs getBytes", key);
    const { file: path } = this.#objectPath(key);
    // Blocking calls up to the body: an index read is thousands of small objects, and an async call's round trip
    // through the thread pool costs several times the read itself. A large body is still read without blocking.
    const file = openObjectSync(path);
    if (!file) throw storeError("NotFound", key, `fs store: ${key} not found`);
    try {
      const meta = readHeaderSync(file, key);
      if (ifNoneMatch === meta.token) return { notModified: true };
      const bytes = new Uint8Array(meta.size);
      const read = meta.size <= SYNC_READ_BYTES ? readFullSync(file, bytes) : await readFull(file, bytes);
      if (read !== meta.size) {
        throw storeError("Io", key, `fs store: object file of ${key} ends before its size`);
      }
      return { ...meta, bytes };
    } finally {
      file.close();
    }
  }

  async head(key: string, options?: CallOptions): Promise<ObjectMeta> {
    throwIfAborted(options?.signal, "fs head", key);
    const meta = await currentMeta(this.#objectPath(key).file, key);
    if (!meta) throw storeError("NotFound", key, `fs store: ${key} not found`);
    return meta;
  }

  put(key: string, body: Body, precondition: Precondition, options?: CallOptions): Promise<{ token: VersionToken }> {
    return this.#write(key, body, precondition, options?.signal);
  }

  putBytes(
    key: string,
    bytes: Uint8Array,
    precondition: Precondition,
    options?: CallOptions,
  ): Promise<{ token: VersionToken }> {
    return this.#write(key, bytes, precondition, options?.signal);
  }

  /** Streams the body to a temp file, then commits it under the store lock: check, issue a token, header, rename. */
  async #write(
    key: string,
    body: Body | Uint8Array,
    precondition: Precondition,
    signal: AbortSignal | undefined,
  ): Promise<{ token: VersionToken }> {
    throwIfAborted(signal, "fs put", key);
    const { dir, file: path } = this.#objectPath(key);
    await Deno.mkdir(dir, { recursive: true });
    const tempPath = join(dir, `${OBJECT_SUFFIX}${crypto.randomUUID()}.tmp`);
    const temp = await Deno.open(tempPath, { write: true, createNew: true });
    let tempOpen = true;
    let renamed = false;
    try {
      await writeFull(temp, new Uint8Array(HEADER_BYTES)); // the header's place, filled in at commit
      const size = await writeBody(temp, key, body, signal);
      const token = await withStoreLock(this.#root, key, signal, (commit) => {
        checkPrecondition(key, currentMetaSync(path, key), precondition);
        const token = commit.issueToken();
        temp.seekSync(0, Deno.SeekMode.Start);
        writeFullSync(temp, encodeHeader(token, size));
        temp.close();
        tempOpen = false;
        Deno.renameSync(tempPath, path);
        renamed = true;
        return token;
      });
      return { token };
    } finally {
      if (tempOpen) temp.close();
      if (!renamed) await Deno.remove(tempPath).catch(() => {});
    }
  }

  async delete(key: string, ifMatch?: VersionToken, options?: CallOptions): Promise<void> {
    throwIfAborted(options?.signal, "fs delete", key);
    const { file: path } = this.#objectPath(key);
    const check = (current: ObjectMeta | undefined) => {
      if (!current) throw storeError("NotFound", key, `fs store: ${key} not found`);
      if (typeof ifMatch === "string") checkPrecondition(key, current, { kind: "ifMatch", token: ifMatch });
    };
    check(await currentMeta(path, key)); // fails fast without the lock (and without creating a missing root)
    await withStoreLock(this.#root, key, options?.signal, () => {
      check(currentMetaSync(path, key));
      Deno.removeSync(path);
    });
  }

  async list(prefix: string, pageToken?: string, options?: CallOptions): Promise<ListPage> {
    const signal = options?.signal;
    throwIfAborted(signal, "fs list", prefix);
    // Walk only the directory the prefix's complete segments name; a segment no key can have matches nothing.
    const dirSegments = prefix.split("/").slice(0, -1);
    if (!dirSegments.every(isSafeSegment)) return { objects: [] };
    const keys: string[] = [];
    const walk = async (dir: string, keyBase: string): Promise<void> => {
      throwIfAborted(signal, "fs list", prefix);
      let entries: Deno.DirEntry[];
      try {
        entries = await Array.fromAsync(Deno.readDir(dir));
      } catch (error) {
        if (isMissing(error)) return;
        throw error;
      }
      for (const entry of entries) {
        if (entry.isDirectory && !entry.name.includes(OBJECT_SUFFIX)) {
          const segment = decodeName(entry.name);
          if (segment === undefined) continue;
          const keyDir = `${keyBase}${segment}/`;
          const underPrefix = keyDir.startsWith(prefix) || prefix.startsWith(keyDir);
          // Every key under keyDir sorts before a page token greater than keyDir that does not extend it.
          const allSeen = pageToken !== undefined && compareKeys(pageToken, keyDir) > 0 &&
            !pageToken.startsWith(keyDir);
          if (underPrefix && !allSeen) await walk(join(dir, entry.name), keyDir);
        } else if (entry.isFile && entry.name.indexOf(OBJECT_SUFFIX) === entry.name.length - 1) {
          const segment = decodeName(entry.name.slice(0, -1));
          if (segment === undefined) continue;
          const key = keyBase + segment;
          if (key.startsWith(prefix) && (pageToken === undefined || compareKeys(key, pageToken) > 0)) keys.push(key);
        }
      }
    };
    await walk(
      join(this.#root, "objects", ...dirSegments.map(encodeSegment)),
      dirSegments.map((s) => `${s}/`).join(""),
    );
    keys.sort(compareKeys);

    const pageKeys = keys.slice(0, this.#listPageSize);
    const objects: ListedObject[] = [];
    for (let start = 0; start < pageKeys.length; start += 64) {
      throwIfAborted(signal, "fs list", prefix);
      const batch = pageKeys.slice(start, start + 64);
      const metas = await Promise.all(batch.map((key) => currentMeta(this.#objectPath(key).file, key)));
      metas.forEach((meta, i) => {
        if (meta) objects.push({ key: batch[i], ...meta }); // deleted since the walk: left out
      });
    }
    return keys.length > this.#listPageSize ? { objects, nextPageToken: pageKeys[pageKeys.length - 1] } : { objects };
  }
}
