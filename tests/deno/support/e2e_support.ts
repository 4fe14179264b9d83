/**
 * Shared fixtures of the end-to-end tests (`e2e_sync_test.ts`, `e2e_lock_test.ts`, `swamp_conformance_test.ts`): both
 * backends on their emulators (S3 on moto, GCS on fake-gcs-server), a fresh bucket per test, raw object access that
 * bypasses marsh (the AWS SDK for S3, plain fetch for GCS), real temp cache directories, and a store wrapper that counts
 * calls and injects faults or delays. Not a test file itself.
 *
 * Run under scripts/with-emulators.sh: without MARSH_S3_ENDPOINT / MARSH_GCS_ENDPOINT every test fails (never skips).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "npm:@aws-sdk/client-s3@3.1173.0";

import { datastore as gcsDatastore } from "../../../js/datastore_gcs.ts";
import { datastore as s3Datastore } from "../../../js/datastore_s3.ts";
import { classifyGcsFailure, GCS_AUTH_HINT, GcsStore } from "../../../js/gcs.ts";
import type {
  Body,
  CallOptions,
  FetchedBody,
  FetchedBytes,
  ListPage,
  MarshStore,
  NotModified,
  ObjectMeta,
  Precondition,
  VersionToken,
} from "../../../js/host.ts";
import { makeProvider } from "../../../js/provider.ts";
import { classifyS3Error, S3Store } from "../../../js/s3.ts";
import type { DatastoreProvider, DatastoreSyncService } from "../../../js/swamp.ts";
import { readIndex } from "./index_reader.ts";

/** The format-1 index (the monolith): what a bucket holds when its index was written in format 1. */
export const INDEX_KEY = ".datastore-index.json";
/** The commit object of a format-2 index (what a new bucket starts as): its token is the verified token. */
export const META_KEY = "_index/_meta.json";
export const SIDECAR = ".datastore-sync-state.json";
export const LOCK_KEY = ".datastore.lock";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
export const text = (value: string) => encoder.encode(value);
export const decode = (bytes: Uint8Array) => decoder.decode(bytes);

export type BackendName = "s3" | "gcs";
export const BACKENDS: BackendName[] = ["s3", "gcs"];

export function emulatorEndpoint(backend: BackendName): string {
  const name = backend === "s3" ? "MARSH_S3_ENDPOINT" : "MARSH_GCS_ENDPOINT";
  const value = Deno.env.get(name);
  if (!value) throw new Error(`${name} is not set: run the tests under scripts/with-emulators.sh`);
  return value;
}

/** The S3 SDK inside the extension reads the standard credential chain; moto accepts any key. */
export function useDummyAwsCredentials(): void {
  Deno.env.set("AWS_ACCESS_KEY_ID", "marsh-e2e");
  Deno.env.set("AWS_SECRET_ACCESS_KEY", "marsh-e2e");
  Deno.env.set("AWS_REGION", "us-east-1");
}

/** The `datastore` export of a backend's entry module. */
export function datastoreOf(backend: BackendName): typeof s3Datastore | typeof gcsDatastore {
  return backend === "s3" ? s3Datastore : gcsDatastore;
}

/**
 * Emulator gaps that change what a test can observe. fake-gcs-server (-backend memory) deletes an object whatever
 * `ifGenerationMatch` says (real GCS answers 412), so a stale holder's conditional release deletes the current lock.
 */
export const IGNORES_CONDITIONAL_DELETE: Record<BackendName, boolean> = { s3: false, gcs: true };

/** The credentials hint an adapter ends its Auth messages with (S3: AWS chain, GCS: ADC). */
export const CREDENTIALS_HINT: Record<BackendName, RegExp> = {
  s3: /check AWS credentials \(AWS_PROFILE, AWS_ACCESS_KEY_ID/,
  gcs: new RegExp(GCS_AUTH_HINT.slice(0, 40).replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")),
};

/** A raw object as found in the bucket, its token in normal form (ETag without quotes, or GCS generation). */
export interface RawObject {
  bytes: Uint8Array;
  token: VersionToken;
}

/**
 * One test's bucket, prefix and temp directories. `config` is the datastore config a user would write; `raw*` reach
 * the bucket without marsh (object keys are cache-relative: the prefix is added here).
 */
export class Target {
  readonly dirs: string[] = [];
  readonly #cleanups: (() => void | Promise<void>)[] = [];

  constructor(
    readonly backend: BackendName,
    readonly bucket: string,
    readonly prefix: string,
    readonly config: Record<string, unknown>,
    readonly s3Admin: S3Client | undefined,
  ) {}

  get datastoreType(): string {
    return datastoreOf(this.backend).type;
  }

  objectName(rel: string): string {
    return this.prefix ? `${this.prefix}/${rel}` : rel;
  }

  /** The provider swamp would build: `datastore.createProvider(config)`. */
  provider(config: Record<string, unknown> = this.config): DatastoreProvider {
    return datastoreOf(this.backend).createProvider(config);
  }

  /** A sync service as swamp builds it, on `cacheDir`. */
  service(cacheDir: string): DatastoreSyncService {
    return this.provider().createSyncService!("/repo/unused", cacheDir);
  }

  /** A fresh adapter over this test's bucket and prefix (closed at cleanup). */
  store(): MarshStore {
    if (this.backend === "s3") {
      const store = new S3Store({
        bucket: this.bucket,
        prefix: this.prefix,
        region: "us-east-1",
        endpoint: emulatorEndpoint("s3"),
        forcePathStyle: true,
      });
      this.#cleanups.push(() => store.destroy());
      return store;
    }
    return new GcsStore({ bucket: this.bucket, prefix: this.prefix, apiEndpoint: emulatorEndpoint("gcs") });
  }

  /**
   * A provider built like the extension's, around `store` (e.g. a {@link WrappedStore} over {@link store}): for the
   * tests that inject faults or delays.
   */
  providerWith(store: MarshStore): DatastoreProvider {
    const scheme = this.backend === "s3" ? "s3" : "gs";
    return makeProvider({
      datastoreType: this.datastoreType,
      scope: `${scheme}://${this.bucket}/${this.prefix}`,
      store,
      details: { bucket: this.bucket, prefix: this.prefix },
      hints: {
        credentials: this.backend === "s3"
          ? "check AWS credentials (wrapped test store)"
          : "check application default credentials (wrapped test store)",
        missingBucket: `bucket ${this.bucket} does not exist`,
      },
      traceVariables: [],
    });
  }

  /** A sync service over `store` on `cacheDir`. */
  serviceWith(store: MarshStore, cacheDir: string): DatastoreSyncService {
    return this.providerWith(store).createSyncService!("/repo/unused", cacheDir);
  }

  /** A new empty directory (removed at cleanup). */
  async tempDir(label = "cache"): Promise<string> {
    const dir = await Deno.makeTempDir({ prefix: `marsh-e2e-${label}-` });
    this.dirs.push(dir);
    return dir;
  }

  async rawPut(rel: string, bytes: Uint8Array): Promise<VersionToken> {
    const name = this.objectName(rel);
    if (this.s3Admin) {
      const answer = await this.s3Admin.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: name, Body: bytes, ContentLength: bytes.byteLength }),
      );
      return (answer.ETag ?? "").replace(/^"(.*)"$/, "$1");
    }
    const base = emulatorEndpoint("gcs");
    const response = await fetch(
      `${base}/upload/storage/v1/b/${this.bucket}/o?uploadType=media&name=${encodeURIComponent(name)}`,
      { method: "POST", headers: { "content-type": "application/octet-stream" }, body: new Uint8Array(bytes) },
    );
    const answer = await response.text();
    assert.equal(response.status, 200, `raw upload of ${name}: ${answer}`);
    return String(JSON.parse(answer).generation);
  }

  async rawPutJson(rel: string, value: unknown): Promise<VersionToken> {
    return await this.rawPut(rel, text(JSON.stringify(value, null, 2)));
  }

  /** The object, or null when it does not exist. */
  async rawGet(rel: string): Promise<RawObject | null> {
    const name = this.objectName(rel);
    if (this.s3Admin) {
      try {
        const answer = await this.s3Admin.send(new GetObjectCommand({ Bucket: this.bucket, Key: name }));
        const bytes = await answer.Body!.transformToByteArray();
        return { bytes, token: (answer.ETag ?? "").replace(/^"(.*)"$/, "$1") };
      } catch (error) {
        if (error instanceof S3ServiceException && error.$metadata.httpStatusCode === 404) return null;
        throw error;
      }
    }
    const base = emulatorEndpoint("gcs");
    const response = await fetch(`${base}/storage/v1/b/${this.bucket}/o/${encodeURIComponent(name)}?alt=media`);
    if (response.status === 404) {
      await response.body?.cancel();
      return null;
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    assert.equal(response.status, 200, `raw download of ${name}: ${decode(bytes)}`);
    return { bytes, token: response.headers.get("x-goog-generation") ?? "" };
  }

  async rawGetJson<T = Record<string, unknown>>(rel: string): Promise<T | null> {
    const found = await this.rawGet(rel);
    return found ? JSON.parse(decode(found.bytes)) as T : null;
  }

  async rawDelete(rel: string): Promise<void> {
    const name = this.objectName(rel);
    if (this.s3Admin) {
      await this.s3Admin.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: name }));
      return;
    }
    const base = emulatorEndpoint("gcs");
    const response = await fetch(`${base}/storage/v1/b/${this.bucket}/o/${encodeURIComponent(name)}`, {
      method: "DELETE",
    });
    await response.body?.cancel();
  }

  /** The error the backend's adapter throws for an HTTP 403 on `operation` of `key` (with its credentials hint). */
  authError(operation: "getBytes" | "list", key: string): Error {
    if (this.backend === "s3") {
      const denied = Object.assign(
        new S3ServiceException({
          name: "AccessDenied",
          $fault: "client",
          $metadata: { httpStatusCode: 403, requestId: "E2E-403" },
          message: "Access Denied",
        }),
        { Code: "AccessDenied" },
      );
      return classifyS3Error(denied, { operation, key, location: `s3://${this.bucket}/${this.objectName(key)}` });
    }
    return classifyGcsFailure({ operation, key, target: `gs://${this.bucket}/${this.objectName(key)}` }, {
      type: "status",
      status: 403,
      detail: "Permission denied",
    });
  }

  onCleanup(action: () => void | Promise<void>): void {
    this.#cleanups.push(action);
  }

  async cleanup(): Promise<void> {
    for (const action of this.#cleanups.reverse()) await action();
    this.s3Admin?.destroy();
    for (const dir of this.dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Create a bucket on the emulator (a random name unless given) and answer its name. */
export async function createBucket(backend: BackendName, name?: string): Promise<string> {
  const bucket = name ?? `marsh-e2e-${crypto.randomUUID().slice(0, 12)}`;
  const endpoint = emulatorEndpoint(backend);
  if (backend === "s3") {
    const admin = s3AdminClient();
    try {
      await admin.send(new CreateBucketCommand({ Bucket: bucket }));
    } finally {
      admin.destroy();
    }
    return bucket;
  }
  const response = await fetch(`${endpoint}/storage/v1/b?project=marsh-e2e`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: bucket }),
  });
  const answer = await response.text();
  assert.equal(response.status, 200, `creating bucket ${bucket}: ${answer}`);
  return bucket;
}

function s3AdminClient(): S3Client {
  return new S3Client({
    endpoint: emulatorEndpoint("s3"),
    region: "us-east-1",
    forcePathStyle: true,
    maxAttempts: 1,
    credentials: { accessKeyId: "marsh-e2e", secretAccessKey: "marsh-e2e" },
  });
}

/** The datastore config of a backend for `bucket`/`prefix`, as a user would write it. */
export function configFor(backend: BackendName, bucket: string, prefix?: string): Record<string, unknown> {
  const withPrefix = prefix === undefined ? {} : { prefix };
  return backend === "s3"
    ? { bucket, ...withPrefix, region: "us-east-1", endpoint: emulatorEndpoint("s3"), forcePathStyle: true }
    : { bucket, ...withPrefix, apiEndpoint: emulatorEndpoint("gcs") };
}

/** A fresh bucket and prefix for one test. */
export async function newTarget(backend: BackendName): Promise<Target> {
  emulatorEndpoint(backend);
  if (backend === "s3") useDummyAwsCredentials();
  const bucket = await createBucket(backend);
  const prefix = `team/${crypto.randomUUID().slice(0, 8)}`;
  return new Target(
    backend,
    bucket,
    prefix,
    configFor(backend, bucket, prefix),
    backend === "s3" ? s3AdminClient() : undefined,
  );
}

/**
 * Register one `Deno.test` per backend, named `"<backend>: <name>"`, with a fresh {@link Target} cleaned up whatever
 * the outcome.
 */
export function e2eTest(
  name: string,
  body: (target: Target) => Promise<void>,
  options: Partial<Deno.TestDefinition> = {},
): void {
  for (const backend of BACKENDS) {
    Deno.test({
      ...options,
      name: `${backend}: ${name}`,
      async fn() {
        const target = await newTarget(backend);
        try {
          await body(target);
        } finally {
          await target.cleanup();
        }
      },
    });
  }
}

// ---- The store wrapper ----

export type StoreMethod = "get" | "getBytes" | "head" | "put" | "putBytes" | "delete" | "list";

export interface RecordedCall {
  method: StoreMethod;
  key: string;
  /** The precondition of a put/putBytes, the ifNoneMatch/ifMatch token of a get/delete. */
  condition?: unknown;
  /** How the call ended: "ok", "notModified", or the error kind. */
  outcome?: string;
}

/**
 * Hooks of a {@link WrappedStore}. `before` runs before the inner call (throw to inject a fault: the inner call is then
 * not made); `after` runs after it succeeded, before the result is handed to the engine. Both get the call's index
 * among the calls of the same method and key (1-based).
 */
export interface StoreHooks {
  before?(call: RecordedCall, nth: number, options?: CallOptions): void | Promise<void>;
  after?(call: RecordedCall, nth: number, result: unknown): void | Promise<void>;
}

/** A {@link MarshStore} that forwards to `inner`, records every call, and runs {@link StoreHooks}. */
export class WrappedStore implements MarshStore {
  readonly calls: RecordedCall[] = [];
  hooks: StoreHooks;

  constructor(readonly inner: MarshStore, hooks: StoreHooks = {}) {
    this.hooks = hooks;
  }

  /** Forget the calls recorded so far. */
  reset(): void {
    this.calls.length = 0;
  }

  count(method?: StoreMethod, key?: string): number {
    return this.calls.filter((call) => (!method || call.method === method) && (!key || call.key === key)).length;
  }

  async #run<T>(
    method: StoreMethod,
    key: string,
    condition: unknown,
    options: CallOptions | undefined,
    inner: () => Promise<T>,
  ): Promise<T> {
    const call: RecordedCall = { method, key, condition };
    this.calls.push(call);
    const nth = this.count(method, key);
    try {
      await this.hooks.before?.(call, nth, options);
      const result = await inner();
      call.outcome = result && typeof result === "object" && "notModified" in result ? "notModified" : "ok";
      await this.hooks.after?.(call, nth, result);
      return result;
    } catch (error) {
      call.outcome ??= (error as { kind?: string; name?: string })?.kind ?? (error as Error)?.name ?? "error";
      throw error;
    }
  }

  get(key: string, ifNoneMatch?: VersionToken, options?: CallOptions): Promise<FetchedBody | NotModified> {
    return this.#run(
      "get",
      key,
      ifNoneMatch,
      options,
      () => Promise.resolve(this.inner.get(key, ifNoneMatch, options)),
    );
  }

  getBytes(key: string, ifNoneMatch?: VersionToken, options?: CallOptions): Promise<FetchedBytes | NotModified> {
    return this.#run(
      "getBytes",
      key,
      ifNoneMatch,
      options,
      () => Promise.resolve(this.inner.getBytes(key, ifNoneMatch, options)),
    );
  }

  head(key: string, options?: CallOptions): Promise<ObjectMeta> {
    return this.#run("head", key, undefined, options, () => Promise.resolve(this.inner.head(key, options)));
  }

  put(key: string, body: Body, precondition: Precondition, options?: CallOptions): Promise<{ token: VersionToken }> {
    return this.#run(
      "put",
      key,
      precondition,
      options,
      () => Promise.resolve(this.inner.put(key, body, precondition, options)),
    );
  }

  putBytes(
    key: string,
    bytes: Uint8Array,
    precondition: Precondition,
    options?: CallOptions,
  ): Promise<{ token: VersionToken }> {
    return this.#run(
      "putBytes",
      key,
      precondition,
      options,
      () => Promise.resolve(this.inner.putBytes(key, bytes, precondition, options)),
    );
  }

  delete(key: string, ifMatch?: VersionToken, options?: CallOptions): Promise<void> {
    return this.#run("delete", key, ifMatch, options, () => Promise.resolve(this.inner.delete(key, ifMatch, options)));
  }

  list(prefix: string, pageToken?: string, options?: CallOptions): Promise<ListPage> {
    return this.#run(
      "list",
      prefix,
      pageToken,
      options,
      () => Promise.resolve(this.inner.list(prefix, pageToken, options)),
    );
  }
}

// ---- Small helpers ----

/** A promise and its resolver. */
export function signal<T = void>(): { promise: Promise<T>; resolve(value: T): void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((done) => resolve = done);
  return { promise, resolve };
}

/** `promise`, or a rejection naming `what` after `ms` (the timer is always cleared: no leak for the sanitizers). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Write a file into a cache directory (creating its parent directories), as swamp would after markDirty. */
export async function writeCacheFile(cacheDir: string, rel: string, content: string): Promise<void> {
  const path = join(cacheDir, ...rel.split("/"));
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeTextFile(path, content);
}

/** A cache file's text, or null when it does not exist. */
export async function readCacheFile(cacheDir: string, rel: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(join(cacheDir, ...rel.split("/")));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** markDirty, write each file, as swamp does before a push. */
export async function writeFiles(
  service: DatastoreSyncService,
  cacheDir: string,
  files: Record<string, string>,
): Promise<void> {
  await service.markDirty();
  for (const [rel, content] of Object.entries(files)) await writeCacheFile(cacheDir, rel, content);
}

/** Populate the bucket through marsh itself: a writer on its own cache pushes `files`. */
export async function populate(target: Target, files: Record<string, string>): Promise<void> {
  const dir = await target.tempDir("writer");
  const service = target.service(dir);
  await writeFiles(service, dir, files);
  assert.equal(await service.pushChanged(), Object.keys(files).length);
}

export interface IndexEntryJson {
  key: string;
  size: number;
  lastModified: string;
  localMtime?: string;
  sha256?: string;
  [field: string]: unknown;
}

export interface IndexJson {
  version: number;
  lastPulled?: string;
  entries: Record<string, IndexEntryJson>;
  [field: string]: unknown;
}

/**
 * The remote index as any reader sees it (read raw, either layout): the commit object's top-level fields (`version` 1
 * and the monolith's own fields, or `version` 2 with `partitions` and `commitSeq`) with every entry.
 */
export async function remoteIndex(target: Target): Promise<IndexJson> {
  const found = await readIndex((key) => target.rawGet(key));
  assert.ok(found.format !== null, "the remote index exists");
  return { ...found.top, version: found.format, entries: found.entries } as IndexJson;
}

/** The remote index's layout and commit token (`_meta.json`'s or the monolith's), as a reader finds them. */
export async function remoteCommit(target: Target): Promise<{ format: 1 | 2 | null; token: string | null }> {
  const found = await readIndex((key) => target.rawGet(key));
  return { format: found.format, token: found.commitToken };
}

/** A format-1 bucket: an empty monolith written first, so marsh keeps this layout (new buckets start in format 2). */
export async function makeMonolithBucket(target: Target): Promise<void> {
  await target.rawPutJson(INDEX_KEY, { version: 1, lastPulled: "2026-04-20T10:00:00.000Z", entries: {} });
}

/** Every file under `dir`, as sorted `/`-separated relative paths. */
export async function listFiles(dir: string, rel = ""): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(join(dir, rel))) {
    const path = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory) found.push(...await listFiles(dir, path));
    else found.push(path);
  }
  return found.sort();
}

/** The cache's data files (internal files of swamp and marsh left out). */
export async function dataFiles(dir: string): Promise<string[]> {
  return (await listFiles(dir)).filter((rel) =>
    !rel.startsWith(".datastore") && !rel.startsWith(".marsh") && rel !== ".push-queue.json"
  );
}
