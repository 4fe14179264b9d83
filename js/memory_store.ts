/**
 * An in-memory {@link MarshStore} with the exact semantics of a real bucket, for the conformance suite and end-to-end
 * tests through the wasm boundary. Writes are atomic compare-and-swaps; bodies are streamed in (an `UploadBody` is
 * opened and read) and out (`get` answers a `ReadableStream` in chunks).
 *
 * Two token styles:
 * - `"etag"` (S3): the MD5 of the content, so rewriting identical bytes keeps the token; `ifMatch` on a missing key is
 *   `NotFound` (S3 answers 404 NoSuchKey).
 * - `"generation"` (GCS): a counter that changes on every write; `ifMatch` on a missing key is `PreconditionFailed`
 *   (GCS answers 412).
 *
 * Test hooks: `calls` counts calls per method (failed ones included), `failNext` makes the next call of a method throw.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { StoreError, throwIfAborted } from "./errors.ts";
import type {
  Body,
  CallOptions,
  FetchedBody,
  FetchedBytes,
  ListPage,
  MarshErrorKind,
  MarshStore,
  NotModified,
  ObjectMeta,
  Precondition,
  VersionToken,
} from "./host.ts";
import { isUploadBody, readAll } from "./streams.ts";

export type MemoryTokenStyle = "etag" | "generation";

export type StoreMethod = "get" | "getBytes" | "head" | "put" | "putBytes" | "delete" | "list";

export interface MemoryStoreOptions {
  /** Default `"etag"`. */
  tokens?: MemoryTokenStyle;
  /** Objects per list page. Default 1000 (S3's and GCS's default). */
  listPageSize?: number;
  /** Size of the chunks `get` streams. Default 64 KiB. */
  chunkSize?: number;
  /** Awaited at the start of every call (after counting it): a place to pause a call in a race test. */
  beforeCall?(method: StoreMethod, key: string): void | Promise<void>;
}

interface StoredObject {
  bytes: Uint8Array;
  token: VersionToken;
}

const encoder = new TextEncoder();

/** S3 and GCS list keys in the byte order of their UTF-8 encoding (not JS's UTF-16 order). */
function compareKeys(a: string, b: string): number {
  const left = encoder.encode(a);
  const right = encoder.encode(b);
  const length = Math.min(left.length, right.length);
  for (let i = 0; i < length; i++) {
    if (left[i] !== right[i]) return left[i] - right[i];
  }
  return left.length - right.length;
}

async function readBody(body: Body, key: string): Promise<Uint8Array> {
  const bytes = await readAll(isUploadBody(body) ? await body.open() : body as ReadableStream<Uint8Array>);
  if (isUploadBody(body) && bytes.byteLength !== body.size) {
    throw new StoreError("Io", `memory put ${key}: the body has ${bytes.byteLength} bytes, expected ${body.size}`, {
      key,
    });
  }
  return bytes;
}

export class MemoryStore implements MarshStore {
  readonly tokens: MemoryTokenStyle;
  /** Calls per method since creation (or {@link resetCalls}). */
  readonly calls: Record<StoreMethod, number> = {
    get: 0,
    getBytes: 0,
    head: 0,
    put: 0,
    putBytes: 0,
    delete: 0,
    list: 0,
  };
  readonly #objects = new Map<string, StoredObject>();
  readonly #failures = new Map<StoreMethod, unknown[]>();
  readonly #pageSize: number;
  readonly #chunkSize: number;
  readonly #beforeCall: MemoryStoreOptions["beforeCall"];
  #generation = 1_700_000_000_000_000;

  constructor(options: MemoryStoreOptions = {}) {
    this.tokens = options.tokens ?? "etag";
    this.#pageSize = options.listPageSize ?? 1000;
    this.#chunkSize = options.chunkSize ?? 64 * 1024;
    this.#beforeCall = options.beforeCall;
  }

  /**
   * Make the next call of `method` throw `error` before it has any effect (queued: two calls fail twice). A kind such
   * as `"Transient"` is turned into a {@link StoreError} of that kind; anything else is thrown as given.
   */
  failNext(method: StoreMethod, error: MarshErrorKind | unknown): void {
    const queue = this.#failures.get(method) ?? [];
    queue.push(error);
    this.#failures.set(method, queue);
  }

  resetCalls(): void {
    for (const method of Object.keys(this.calls) as StoreMethod[]) this.calls[method] = 0;
  }

  /** The stored object, without counting a call (for assertions). */
  peek(key: string): { bytes: Uint8Array; token: VersionToken } | undefined {
    const object = this.#objects.get(key);
    return object && { bytes: object.bytes.slice(), token: object.token };
  }

  /** Store an object directly, without counting a call (for arranging a test); answers its token. */
  seed(key: string, bytes: Uint8Array): VersionToken {
    return this.#write(key, bytes.slice());
  }

  /** Every key, in list order. */
  keys(): string[] {
    return [...this.#objects.keys()].sort(compareKeys);
  }

  async get(key: string, ifNoneMatch?: VersionToken, options?: CallOptions): Promise<FetchedBody | NotModified> {
    const found = await this.#read("get", key, ifNoneMatch, options);
    if ("notModified" in found) return found;
    const { bytes, token } = found;
    const chunkSize = this.#chunkSize;
    let offset = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= bytes.byteLength) {
          controller.close();
          return;
        }
        controller.enqueue(bytes.slice(offset, offset + chunkSize));
        offset += chunkSize;
      },
    }, { highWaterMark: 0 });
    return { body, token, size: bytes.byteLength };
  }

  async getBytes(key: string, ifNoneMatch?: VersionToken, options?: CallOptions): Promise<FetchedBytes | NotModified> {
    const found = await this.#read("getBytes", key, ifNoneMatch, options);
    if ("notModified" in found) return found;
    return { bytes: found.bytes.slice(), token: found.token, size: found.bytes.byteLength };
  }

  async head(key: string, options?: CallOptions): Promise<ObjectMeta> {
    await this.#enter("head", key, options);
    const object = this.#existing("head", key);
    return { token: object.token, size: object.bytes.byteLength };
  }

  async put(key: string, body: Body, precondition: Precondition, options?: CallOptions): Promise<{ token: string }> {
    await this.#enter("put", key, options);
    const bytes = await readBody(body, key);
    throwIfAborted(options?.signal, "memory put", key);
    return { token: this.#conditionalWrite("put", key, bytes, precondition) };
  }

  async putBytes(
    key: string,
    bytes: Uint8Array,
    precondition: Precondition,
    options?: CallOptions,
  ): Promise<{ token: string }> {
    await this.#enter("putBytes", key, options);
    return { token: this.#conditionalWrite("putBytes", key, bytes.slice(), precondition) };
  }

  async delete(key: string, ifMatch?: VersionToken, options?: CallOptions): Promise<void> {
    await this.#enter("delete", key, options);
    const object = this.#existing("delete", key);
    if (ifMatch != null && ifMatch !== object.token) {
      throw new StoreError("PreconditionFailed", `memory delete ${key}: token ${ifMatch} is not ${object.token}`, {
        status: 412,
        key,
      });
    }
    this.#objects.delete(key);
  }

  async list(prefix: string, pageToken?: string, options?: CallOptions): Promise<ListPage> {
    await this.#enter("list", prefix, options);
    // The page token is the last key already answered: the next page starts after it, so deleting or adding keys
    // between pages never repeats one.
    const matching = this.keys().filter((key) =>
      key.startsWith(prefix) && (pageToken == null || compareKeys(key, pageToken) > 0)
    );
    const page = matching.slice(0, this.#pageSize);
    const objects = page.map((key) => {
      const object = this.#objects.get(key)!;
      return { key, token: object.token, size: object.bytes.byteLength };
    });
    return matching.length > page.length ? { objects, nextPageToken: page[page.length - 1] } : { objects };
  }

  /** Count the call, honour the abort signal and an injected failure, and yield once (calls are never synchronous). */
  async #enter(method: StoreMethod, key: string, options: CallOptions | undefined): Promise<void> {
    this.calls[method]++;
    throwIfAborted(options?.signal, `memory ${method}`, key);
    const injected = this.#failures.get(method)?.shift();
    if (injected !== undefined) {
      if (typeof injected === "string") {
        throw new StoreError(injected as MarshErrorKind, `memory ${method} ${key}: injected ${injected}`, { key });
      }
      throw injected;
    }
    await this.#beforeCall?.(method, key);
    await Promise.resolve();
    throwIfAborted(options?.signal, `memory ${method}`, key);
  }

  async #read(
    method: "get" | "getBytes",
    key: string,
    ifNoneMatch: VersionToken | undefined,
    options: CallOptions | undefined,
  ): Promise<StoredObject | NotModified> {
    await this.#enter(method, key, options);
    const object = this.#existing(method, key);
    if (ifNoneMatch != null && ifNoneMatch === object.token) return { notModified: true };
    return object;
  }

  #existing(method: StoreMethod, key: string): StoredObject {
    const object = this.#objects.get(key);
    if (!object) throw new StoreError("NotFound", `memory ${method} ${key}: not found`, { status: 404, key });
    return object;
  }

  /** Check and write in one synchronous step: no other call can slip in between (an atomic compare-and-swap). */
  #conditionalWrite(method: StoreMethod, key: string, bytes: Uint8Array, precondition: Precondition): VersionToken {
    const current = this.#objects.get(key);
    const fail = (why: string) =>
      new StoreError("PreconditionFailed", `memory ${method} ${key}: ${why}`, { status: 412, key });
    if (precondition.kind === "ifAbsent" && current) throw fail("the object exists");
    if (precondition.kind === "ifMatch") {
      if (!current && this.tokens === "etag") {
        throw new StoreError("NotFound", `memory ${method} ${key}: not found`, { status: 404, key });
      }
      if (!current) throw fail("the object does not exist");
      if (current.token !== precondition.token) throw fail(`token ${precondition.token} is not ${current.token}`);
    }
    return this.#write(key, bytes);
  }

  #write(key: string, bytes: Uint8Array): VersionToken {
    const token = this.tokens === "etag" ? createHash("md5").update(bytes).digest("hex") : String(++this.#generation);
    this.#objects.set(key, { bytes, token });
    return token;
  }
}
