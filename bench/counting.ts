/**
 * Counting proxies for the benchmark: a {@link MarshStore} that counts requests by kind and the bytes each way, and a
 * {@link MarshCache} that records how long each cache call took. Both record every call on one shared timeline, so a
 * run can be split into "inside a store call", "inside a cache call" and "in the wasm core (and the boundary)".
 *
 * @module
 */

import type {
  Body,
  CallOptions,
  ExpectedDownload,
  FetchedBody,
  FetchedBytes,
  FileStat,
  HashedFile,
  InternalStream,
  ListPage,
  MarshCache,
  MarshStore,
  NotModified,
  ObjectMeta,
  PackedStats,
  PackedWalk,
  Precondition,
  PreparedUpload,
  VersionToken,
  WalkItem,
} from "../js/host.ts";

/** One host call: what it was, and when it ran (ms on `performance.now()`). */
export interface HostCall {
  side: "store" | "cache";
  /** Request kind (`getBytes`, `getBytes 304`, `put`, …) or cache method (with the internal file's name). */
  kind: string;
  start: number;
  end: number;
}

export class Timeline {
  readonly calls: HostCall[] = [];

  async record<T>(side: HostCall["side"], kind: string, call: () => Promise<T>, rename?: (value: T) => string) {
    const start = performance.now();
    const entry: HostCall = { side, kind, start, end: start };
    this.calls.push(entry);
    try {
      const value = await call();
      if (rename) entry.kind = rename(value);
      return value;
    } catch (error) {
      entry.kind += ` (${(error as { kind?: string }).kind ?? "error"})`;
      throw error;
    } finally {
      entry.end = performance.now();
    }
  }

  /**
   * Milliseconds per call kind (overlapping calls of one kind counted once: the union of their intervals), and the
   * time in none of them between `from` and `to`: the wasm core, the boundary conversions and the JS glue.
   */
  breakdown(from: number, to: number): { byKind: Record<string, number>; outsideHost: number } {
    const byKind: Record<string, number> = {};
    // One pass, appending in place: a slow path on format 2 records one call per shard, tens of thousands of them.
    const kinds = new Map<string, HostCall[]>();
    for (const call of this.calls) {
      const key = `${call.side}.${call.kind.replace(/ \(.*\)$/, "")}`;
      const calls = kinds.get(key);
      if (calls) calls.push(call);
      else kinds.set(key, [call]);
    }
    for (const [kind, calls] of kinds) byKind[kind] = unionMs(calls, from, to);
    return { byKind, outsideHost: to - from - unionMs(this.calls, from, to) };
  }
}

function unionMs(calls: HostCall[], from: number, to: number): number {
  const intervals = calls
    .map((call) => [Math.max(call.start, from), Math.min(call.end, to)] as const)
    .filter(([start, end]) => end > start)
    .sort((a, b) => a[0] - b[0]);
  let total = 0;
  let current: [number, number] | undefined;
  for (const [start, end] of intervals) {
    if (current && start <= current[1]) {
      current[1] = Math.max(current[1], end);
      continue;
    }
    if (current) total += current[1] - current[0];
    current = [start, end];
  }
  if (current) total += current[1] - current[0];
  return total;
}

function uploadSize(body: Body): number {
  return body instanceof ReadableStream ? 0 : body.size;
}

/** What a store key holds: a data object or one of the index objects (docs/formats.md). */
export type ObjectKind = "data" | "shard" | "_meta.json" | "monolith" | "format marker" | "lock";

export function objectKind(key: string): ObjectKind {
  if (key === "_index/_meta.json") return "_meta.json";
  if (key.startsWith("_index/")) return "shard";
  if (key === ".datastore-index.json") return "monolith";
  if (key.startsWith("_control/")) return "format marker";
  if (key === ".datastore.lock") return "lock";
  return "data";
}

/** Requests and body bytes of one kind of object. */
export interface ObjectTally {
  requests: number;
  /** Of which writes (`put`, `putBytes`). */
  writes: number;
  bytesSent: number;
  bytesReceived: number;
}

/**
 * Wraps a store: `requests` counts calls by kind; `bytesSent` / `bytesReceived` count bodies; `byObject` splits the
 * same by the kind of object addressed (data, shard, `_meta.json`, monolith, …).
 */
export class CountingStore implements MarshStore {
  readonly requests: Record<string, number> = {};
  bytesSent = 0;
  bytesReceived = 0;
  /** Bytes of each index write (`putBytes` of `.datastore-index.json`, a shard or `_meta.json`). */
  readonly indexWrites: number[] = [];
  readonly byObject: Partial<Record<ObjectKind, ObjectTally>> = {};

  constructor(readonly inner: MarshStore, readonly timeline = new Timeline()) {}

  #count(kind: string): void {
    this.requests[kind] = (this.requests[kind] ?? 0) + 1;
  }

  #tally(key: string, sent = 0, received = 0, write = false): void {
    const tally = (this.byObject[objectKind(key)] ??= { requests: 0, writes: 0, bytesSent: 0, bytesReceived: 0 });
    tally.requests++;
    if (write) tally.writes++;
    tally.bytesSent += sent;
    tally.bytesReceived += received;
  }

  /** Forget what was counted so far (the preparation before a measured run). */
  reset(): void {
    for (const kind of Object.keys(this.requests)) delete this.requests[kind];
    for (const kind of Object.keys(this.byObject)) delete this.byObject[kind as ObjectKind];
    this.bytesSent = 0;
    this.bytesReceived = 0;
    this.indexWrites.length = 0;
  }

  get totalRequests(): number {
    return Object.values(this.requests).reduce((a, b) => a + b, 0);
  }

  get(key: string, ifNoneMatch?: VersionToken, options?: CallOptions): Promise<FetchedBody | NotModified> {
    return this.timeline.record("store", "get", async () => {
      const answer = await this.inner.get(key, ifNoneMatch, options);
      if ("notModified" in answer) {
        this.#count("get 304");
        this.#tally(key);
      } else {
        this.#count("get");
        this.bytesReceived += answer.size;
        this.#tally(key, 0, answer.size);
      }
      return answer;
    });
  }

  getBytes(key: string, ifNoneMatch?: VersionToken, options?: CallOptions): Promise<FetchedBytes | NotModified> {
    return this.timeline.record("store", "getBytes", async () => {
      try {
        const answer = await this.inner.getBytes(key, ifNoneMatch, options);
        if ("notModified" in answer) {
          this.#count(ifNoneMatch ? "getBytes 304" : "getBytes");
          this.#tally(key);
        } else {
          this.#count(ifNoneMatch ? "getBytes (conditional, changed)" : "getBytes");
          this.bytesReceived += answer.bytes.length;
          this.#tally(key, 0, answer.bytes.length);
        }
        return answer;
      } catch (error) {
        this.#count(`getBytes ${(error as { kind?: string }).kind ?? "error"}`);
        this.#tally(key);
        throw error;
      }
    }, (answer) => ("notModified" in answer ? "getBytes 304" : "getBytes"));
  }

  head(key: string, options?: CallOptions): Promise<ObjectMeta> {
    this.#count("head");
    this.#tally(key);
    return this.timeline.record("store", "head", () => this.inner.head(key, options));
  }

  put(key: string, body: Body, precondition: Precondition, options?: CallOptions): Promise<{ token: VersionToken }> {
    this.#count("put");
    this.bytesSent += uploadSize(body);
    this.#tally(key, uploadSize(body), 0, true);
    return this.timeline.record("store", "put", () => this.inner.put(key, body, precondition, options));
  }

  putBytes(
    key: string,
    bytes: Uint8Array,
    precondition: Precondition,
    options?: CallOptions,
  ): Promise<{ token: VersionToken }> {
    this.#count("putBytes");
    this.bytesSent += bytes.length;
    this.#tally(key, bytes.length, 0, true);
    if (objectKind(key) !== "data") this.indexWrites.push(bytes.length);
    return this.timeline.record("store", "putBytes", () => this.inner.putBytes(key, bytes, precondition, options));
  }

  delete(key: string, ifMatch?: VersionToken, options?: CallOptions): Promise<void> {
    this.#count("delete");
    this.#tally(key);
    return this.timeline.record("store", "delete", () => this.inner.delete(key, ifMatch, options));
  }

  list(prefix: string, pageToken?: string, options?: CallOptions): Promise<ListPage> {
    this.#count("list");
    this.#tally(prefix);
    return this.timeline.record("store", "list", () => this.inner.list(prefix, pageToken, options));
  }
}

/** Wraps a cache: every call lands on the timeline (internal files by name: sidecar, view, index copy). */
export class TimedCache implements MarshCache {
  // The optional methods exist only when the wrapped cache has them, so the core takes the same paths as without the
  // wrapper. Only the opening of a stream is timed: its chunks are read as the core takes them.
  readonly walkPacked?: (options?: CallOptions) => Promise<PackedWalk>;
  readonly statMany?: (rels: string, options?: CallOptions) => Promise<PackedStats>;
  readonly readInternalStream?: (name: string, options?: CallOptions) => Promise<InternalStream | null>;

  constructor(readonly inner: MarshCache, readonly timeline: Timeline) {
    const walkPacked = inner.walkPacked?.bind(inner);
    if (walkPacked) this.walkPacked = (options) => timeline.record("cache", "walk", () => walkPacked(options));
    const statMany = inner.statMany?.bind(inner);
    if (statMany) {
      this.statMany = (rels, options) => timeline.record("cache", "statMany", () => statMany(rels, options));
    }
    const stream = inner.readInternalStream?.bind(inner);
    if (stream) {
      this.readInternalStream = (name, options) =>
        timeline.record("cache", `readInternalStream ${name}`, () => stream(name, options));
    }
  }

  stat(rel: string, options?: CallOptions): Promise<FileStat | null> {
    return this.timeline.record("cache", "stat", () => this.inner.stat(rel, options));
  }

  walk(options?: CallOptions): Promise<WalkItem[]> {
    return this.timeline.record("cache", "walk", () => this.inner.walk(options));
  }

  walkUnder(rel: string, options?: CallOptions): Promise<WalkItem[]> {
    return this.timeline.record("cache", "walkUnder", () => this.inner.walkUnder(rel, options));
  }

  removeFile(rel: string, expected: FileStat, options?: CallOptions): Promise<void> {
    return this.timeline.record("cache", "removeFile", () => this.inner.removeFile(rel, expected, options));
  }

  readInternal(name: string, options?: CallOptions): Promise<Uint8Array | null> {
    return this.timeline.record("cache", `readInternal ${name}`, () => this.inner.readInternal(name, options));
  }

  writeInternal(name: string, bytes: Uint8Array, options?: CallOptions): Promise<void> {
    return this.timeline.record("cache", `writeInternal ${name}`, () => this.inner.writeInternal(name, bytes, options));
  }

  listInternal(folder: string, options?: CallOptions): Promise<string[]> {
    return this.timeline.record("cache", `listInternal ${folder}`, () => this.inner.listInternal(folder, options));
  }

  removeInternal(name: string, options?: CallOptions): Promise<void> {
    return this.timeline.record("cache", `removeInternal ${name}`, () => this.inner.removeInternal(name, options));
  }

  prepareUpload(rel: string, options?: CallOptions): Promise<PreparedUpload | null> {
    return this.timeline.record("cache", "prepareUpload", () => this.inner.prepareUpload(rel, options));
  }

  download(rel: string, body: Body, expected: ExpectedDownload, options?: CallOptions): Promise<HashedFile> {
    return this.timeline.record("cache", "download", () => this.inner.download(rel, body, expected, options));
  }

  createDir(rel: string, options?: CallOptions): Promise<void> {
    return this.timeline.record("cache", `createDir ${rel}`, () => this.inner.createDir(rel, options));
  }

  hash(rel: string, options?: CallOptions): Promise<HashedFile | null> {
    return this.timeline.record("cache", "hash", () => this.inner.hash(rel, options));
  }
}
