/**
 * The S3 adapter of {@link MarshStore}: one SDK call per method (two for an unconditional delete), no retries (the core
 * decides), bodies streamed in both directions, and every failure turned into a typed {@link StoreError} by
 * {@link classifyS3Error}.
 *
 * Timeouts are per request phase (W14): the clock restarts at each chunk of an upload body, runs until the response
 * headers arrive, and then restarts at each read of a download body. A slow but moving transfer never times out; a
 * stalled one fails as `Transient`.
 *
 * @module
 */

import { Readable } from "node:stream";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "npm:@aws-sdk/client-s3@3.1173.0";
import { isAbortError, isTransportError, preview, StoreError, throwIfAborted } from "./errors.ts";
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
} from "./host.ts";
import { isUploadBody, readAll } from "./streams.ts";

export interface S3StoreOptions {
  bucket: string;
  /** Objects live at `prefix + "/" + key`; leading and trailing slashes are ignored. */
  prefix?: string;
  region?: string;
  /** An S3-compatible endpoint (MinIO, R2, moto…). */
  endpoint?: string;
  forcePathStyle?: boolean;
  /** The longest wait for the next sign of progress in one request phase (see the module doc). Default 30 s. */
  requestTimeoutMs?: number;
  /** `MaxKeys` of one list page, 1–1000. Default 1000. */
  listPageSize?: number;
  /** A ready client (tests, custom credentials). It should be built with `maxAttempts: 1`: the core retries. */
  client?: S3Client;
}

/** What {@link classifyS3Error} needs to know about the failed call. */
export interface S3ErrorContext {
  operation: string;
  /** The cache-relative key of the call. */
  key: string;
  /** `s3://bucket/object-key`, for the message. */
  location: string;
  /** Set when our own per-request timer fired. */
  timedOutAfterMs?: number;
  /** The caller's signal was aborted. */
  aborted?: boolean;
}

const DEFAULT_TIMEOUT_MS = 30_000;

const AUTH_HINT = "check AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO session, " +
  "instance role) and the s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket permissions on the bucket";

/** S3 error codes that mean "who you are" rather than "what you asked", whatever their status. */
const AUTH_CODES = new Set([
  "AccessDenied",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "ExpiredToken",
  "InvalidToken",
  "TokenRefreshRequired",
  "AllAccessDisabled",
]);

/** S3 error codes worth retrying that do not come with a 5xx/429 status. */
const TRANSIENT_CODES = new Set([
  "ConditionalRequestConflict", // 409: a concurrent conditional write on the same key; retry.
  "OperationAborted", // 409: "a conflicting conditional operation is currently in progress".
  "RequestTimeout", // 400: the server gave up waiting for our body.
  "SlowDown",
  "ThrottlingException",
]);

/**
 * The SDK logs every request (info) and every failure (error) through a custom logger: we report failures ourselves.
 * Its warnings are kept, except the one for a failed streamed PUT ("non-retryable"): the core retries, not the SDK.
 */
const sdkLogger = {
  debug() {},
  info() {},
  error() {},
  warn(...args: unknown[]) {
    if (!String(args[0]).includes("non-retryable streaming request")) console.warn(...args);
  },
};

const CREDENTIAL_ERROR_NAMES = new Set(["CredentialsProviderError", "TokenProviderError"]);

interface SdkErrorFields {
  name?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number; requestId?: string; extendedRequestId?: string };
  $response?: { statusCode?: number };
  $responseBodyText?: string;
  /** Set by the SDK on throttling and transient service errors. */
  $retryable?: unknown;
  /** A node-style transport error code (`ECONNRESET`). */
  code?: unknown;
}

/**
 * Map any error thrown by an SDK call (service error, transport error, abort, our timeout) to a typed
 * {@link StoreError}. Pure: depends only on its arguments. The message names the operation, the object, the status, the
 * request id and a preview of the server's answer.
 */
export function classifyS3Error(error: unknown, context: S3ErrorContext): StoreError {
  const fields: SdkErrorFields = typeof error === "object" && error !== null ? error as SdkErrorFields : {};
  const status = fields.$metadata?.httpStatusCode ?? fields.$response?.statusCode;
  const code = fields.Code ?? (fields.name && fields.name !== "Unknown" && fields.name !== "Error" ? fields.name : "");
  const requestId = fields.$metadata?.requestId;
  const errno = typeof fields.code === "string" ? fields.code : undefined;
  const detail = [
    status === undefined ? undefined : `HTTP ${status}`,
    code || errno,
    requestId ? `request id ${requestId}` : undefined,
  ].filter(Boolean).join(", ");
  const answer = preview(fields.$responseBodyText) ??
    preview(fields.message && fields.message !== "UnknownError" ? fields.message : undefined) ??
    preview(error instanceof Error ? undefined : String(error));
  const make = (kind: StoreError["kind"], summary: string, hint?: string) => {
    // After our own abort (timeout, caller), the SDK's message ("Request aborted") would only blur the summary.
    const said = answer && answer !== summary && !context.aborted && context.timedOutAfterMs === undefined;
    const message = `S3 ${context.operation} ${context.location}: ${summary}${detail ? ` (${detail})` : ""}` +
      `${said ? `: ${answer}` : ""}${hint ? `; ${hint}` : ""}`;
    return new StoreError(kind, message, { status, key: context.key, cause: error });
  };

  if (context.aborted) return make("Aborted", "aborted");
  if (context.timedOutAfterMs !== undefined) {
    return make("Transient", `timed out after ${context.timedOutAfterMs} ms without progress`);
  }
  if (CREDENTIAL_ERROR_NAMES.has(fields.name ?? "")) return make("Auth", "no usable AWS credentials", AUTH_HINT);
  if (isAbortError(error)) return make("Aborted", "aborted");
  if (status === undefined && /region is missing/i.test(fields.message ?? "")) {
    return make("Io", "no AWS region", "set `region` in the datastore config, AWS_REGION, or a region in the profile");
  }
  // Only a conditional GET asks for a 304, and `#fetch` answers it as `{ notModified: true }` by its status; a 304
  // anywhere else is an answer we did not ask for. The boundary has no "not modified" error kind.
  if (status === 304) return make("Http", "not modified");
  if (status === 404 && code === "NoSuchBucket") {
    return make("Http", "bucket not found", "check the bucket name, region and endpoint");
  }
  if (status === 404) return make("NotFound", "not found");
  if (status === 412) return make("PreconditionFailed", "precondition failed");
  if (code === "RequestTimeTooSkewed") {
    return make("Auth", "request signed with a wrong clock", "check the system clock");
  }
  if (status === 401 || status === 403 || AUTH_CODES.has(code)) return make("Auth", "access denied", AUTH_HINT);
  if (TRANSIENT_CODES.has(code) || fields.$retryable) return make("Transient", "temporary failure");
  if (status === 408 || status === 429 || (status !== undefined && status >= 500)) {
    return make("Transient", "temporary failure");
  }
  if (status !== undefined && status >= 200 && status < 300) {
    // A 2xx that the SDK could not read (truncated or garbled answer): the exchange failed, not the request.
    return make("Transient", "unreadable response");
  }
  if (status !== undefined) return make("Http", "request failed");
  if (isTransportError(error)) return make("Transient", "connection failed");
  // No status and not a known transport failure: a local problem (bad argument, SDK bug). Not retried.
  return make("Io", "failed");
}

/** The ETag without its quotes (a version token in normal form). */
export function unquoteEtag(etag: string | undefined): VersionToken {
  return (etag ?? "").replace(/^"(.*)"$/, "$1");
}

function quoteEtag(token: VersionToken): string {
  return `"${token}"`;
}

function conditionHeaders(precondition: Precondition): { IfNoneMatch?: string; IfMatch?: string } {
  switch (precondition.kind) {
    case "none":
      return {};
    case "ifAbsent":
      return { IfNoneMatch: "*" };
    case "ifMatch":
      return { IfMatch: quoteEtag(precondition.token) };
  }
}

/** A restartable timer: fires `onExpire` when `ms` pass without a `start` (or `stop`). */
class ProgressTimer {
  #timer: ReturnType<typeof setTimeout> | undefined;
  expired = false;

  constructor(readonly ms: number, readonly onExpire: () => void) {}

  start(): void {
    this.stop();
    this.#timer = setTimeout(() => {
      this.expired = true;
      this.onExpire();
    }, this.ms);
  }

  stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** One call of the store: its abort signal (caller's signal ∪ our timer) and how its failures are classified. */
interface Exchange {
  signal: AbortSignal;
  timer: ProgressTimer;
  fail(error: unknown): StoreError;
  /** Abort the request for a local reason (the upload body failed); the caller reports that reason. */
  abortRequest(): void;
}

/** The SDK's response body (a node `IncomingMessage` under Deno, a web stream elsewhere) as async chunks. */
function bodyChunks(body: unknown): AsyncIterator<Uint8Array> {
  if (body === undefined || body === null) return (async function* () {})();
  if (typeof (body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === "function") {
    return (body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  }
  const web = (body as { transformToWebStream(): ReadableStream<Uint8Array> }).transformToWebStream();
  return web[Symbol.asyncIterator]();
}

export class S3Store implements MarshStore {
  readonly bucket: string;
  readonly client: S3Client;
  readonly #ownsClient: boolean;
  /** `""` or `"<prefix>/"`: what every object key starts with. */
  readonly #keyPrefix: string;
  readonly #timeoutMs: number;
  readonly #pageSize: number;

  constructor(options: S3StoreOptions) {
    this.bucket = options.bucket;
    const prefix = (options.prefix ?? "").replace(/^\/+|\/+$/g, "");
    this.#keyPrefix = prefix ? `${prefix}/` : "";
    this.#timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#pageSize = options.listPageSize ?? 1000;
    this.#ownsClient = options.client === undefined;
    this.client = options.client ?? new S3Client({
      // Unset: the SDK's chain (AWS_REGION, then the profile's region); a wrong region is followed by redirect.
      region: options.region,
      followRegionRedirects: true,
      endpoint: options.endpoint,
      forcePathStyle: options.forcePathStyle,
      maxAttempts: 1,
      // Checksums only where S3 requires them: S3-compatible stores (R2, older MinIO) reject the default aws-chunked
      // trailing checksums on streamed PUTs, and downloads are verified by the cache (size, sha256) anyway.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      logger: sdkLogger,
    });
  }

  /** Close the connections of a client this store created (a client passed in options is left alone). */
  destroy(): void {
    if (this.#ownsClient) this.client.destroy();
  }

  /** The object key of a cache-relative key. */
  objectKey(key: string): string {
    return this.#keyPrefix + key;
  }

  async get(key: string, ifNoneMatch?: VersionToken, options?: CallOptions): Promise<FetchedBody | NotModified> {
    const exchange = this.#exchange("get", key, options);
    const answer = await this.#fetch(exchange, key, ifNoneMatch);
    if ("notModified" in answer) return answer;
    return { body: this.#guardedBody(answer.Body, exchange), token: unquoteEtag(answer.ETag), size: answer.size };
  }

  async getBytes(key: string, ifNoneMatch?: VersionToken, options?: CallOptions): Promise<FetchedBytes | NotModified> {
    const exchange = this.#exchange("getBytes", key, options);
    const answer = await this.#fetch(exchange, key, ifNoneMatch);
    if ("notModified" in answer) return answer;
    const bytes = await readAll(this.#guardedBody(answer.Body, exchange), answer.size);
    return { bytes, token: unquoteEtag(answer.ETag), size: bytes.byteLength };
  }

  async head(key: string, options?: CallOptions): Promise<ObjectMeta> {
    const exchange = this.#exchange("head", key, options);
    const answer = await this.#send(
      exchange,
      (abortSignal) =>
        this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }), { abortSignal }),
    );
    return { token: unquoteEtag(answer.ETag), size: answer.ContentLength ?? 0 };
  }

  async put(key: string, body: Body, precondition: Precondition, options?: CallOptions): Promise<{ token: string }> {
    if (!isUploadBody(body)) {
      throw new StoreError("Io", `S3 put ${this.#location(key)}: the body must be an UploadBody (size and open())`, {
        key,
      });
    }
    const exchange = this.#exchange("put", key, options);
    let source: ReadableStream<Uint8Array>;
    try {
      source = await body.open();
    } catch (error) {
      throw new StoreError("Io", `S3 put ${this.#location(key)}: cannot open the body: ${error}`, {
        key,
        cause: error,
      });
    }
    // Each chunk taken by the HTTP client is progress. A body that fails to read, or does not match its stat'ed size
    // (the file changed after `prepareUpload`), aborts the request and fails the PUT as `Io`: S3 never stores a mix.
    const location = this.#location(key);
    let sent = 0;
    let bodyError: StoreError | undefined;
    const mismatch = (what: string) =>
      new StoreError("Io", `S3 put ${location}: the file ${what} while uploading (expected ${body.size} bytes)`, {
        key,
      });
    const watched = source.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          exchange.timer.start();
          sent += chunk.byteLength;
          if (sent > body.size) throw mismatch("grew");
          controller.enqueue(chunk);
        },
        flush() {
          if (sent !== body.size) throw mismatch("shrank");
        },
      }),
    );
    // deno-lint-ignore no-explicit-any -- node's and the global ReadableStream types differ only nominally.
    const nodeBody = Readable.fromWeb(watched as any);
    nodeBody.once("error", (error) => {
      bodyError = error instanceof StoreError
        ? error
        : new StoreError("Io", `S3 put ${location}: cannot read the file: ${error}`, { key, cause: error });
      exchange.abortRequest();
    });
    try {
      const answer = await this.#send(exchange, (abortSignal) =>
        this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: this.objectKey(key),
            Body: nodeBody,
            ContentLength: body.size,
            ...conditionHeaders(precondition),
          }),
          { abortSignal },
        ));
      if (bodyError) throw bodyError;
      return { token: unquoteEtag(answer.ETag) };
    } catch (error) {
      throw bodyError ?? error;
    } finally {
      // Closes the file when the request ended before reading it all (an early 412, an abort).
      nodeBody.destroy();
    }
  }

  async putBytes(
    key: string,
    bytes: Uint8Array,
    precondition: Precondition,
    options?: CallOptions,
  ): Promise<{ token: string }> {
    const exchange = this.#exchange("putBytes", key, options);
    const answer = await this.#send(exchange, (abortSignal) =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.objectKey(key),
          Body: bytes,
          ContentLength: bytes.byteLength,
          ...conditionHeaders(precondition),
        }),
        { abortSignal },
      ));
    return { token: unquoteEtag(answer.ETag) };
  }

  async delete(key: string, ifMatch?: VersionToken, options?: CallOptions): Promise<void> {
    const exchange = this.#exchange("delete", key, options);
    const Key = this.objectKey(key);
    if (ifMatch == null) {
      // S3 answers 204 for a missing key, but the contract says NotFound: a HEAD finds out. (With If-Match, S3 itself
      // answers 404 NoSuchKey for a missing key, so no HEAD is needed.) `If-Match: *` would save the HEAD on AWS, but
      // stores that ignore If-Match on DELETE (moto rejects "*" with 412) would then misreport.
      await this.#send(
        exchange,
        (abortSignal) => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }), { abortSignal }),
      );
    }
    await this.#send(exchange, (abortSignal) =>
      this.client.send(
        new DeleteObjectCommand({
          Bucket: this.bucket,
          Key,
          IfMatch: ifMatch == null ? undefined : quoteEtag(ifMatch),
        }),
        { abortSignal },
      ));
  }

  async list(prefix: string, pageToken?: string, options?: CallOptions): Promise<ListPage> {
    const exchange = this.#exchange("list", prefix, options);
    const answer = await this.#send(exchange, (abortSignal) =>
      this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.objectKey(prefix),
          ContinuationToken: pageToken ?? undefined,
          MaxKeys: this.#pageSize,
        }),
        { abortSignal },
      ));
    const objects = (answer.Contents ?? []).flatMap((object) =>
      object.Key?.startsWith(this.#keyPrefix)
        ? [{ key: object.Key.slice(this.#keyPrefix.length), token: unquoteEtag(object.ETag), size: object.Size ?? 0 }]
        : []
    );
    return answer.IsTruncated && answer.NextContinuationToken
      ? { objects, nextPageToken: answer.NextContinuationToken }
      : { objects };
  }

  #location(key: string): string {
    return `s3://${this.bucket}/${this.objectKey(key)}`;
  }

  #exchange(operation: string, key: string, options: CallOptions | undefined): Exchange {
    throwIfAborted(options?.signal, `S3 ${operation}`, key);
    const ownController = new AbortController();
    const timer = new ProgressTimer(
      this.#timeoutMs,
      () => ownController.abort(new DOMException("timed out", "TimeoutError")),
    );
    // The caller's signal aborts the request too (B15). A duck-typed `{ aborted }` (allowed by MarshEnv) cannot be
    // listened to: it is only checked before sending.
    const callerSignal = options?.signal;
    const signal = callerSignal instanceof AbortSignal
      ? AbortSignal.any([callerSignal, ownController.signal])
      : ownController.signal;
    const location = this.#location(key);
    const fail = (error: unknown) =>
      error instanceof StoreError ? error : classifyS3Error(error, {
        operation,
        key,
        location,
        aborted: options?.signal?.aborted,
        timedOutAfterMs: timer.expired ? timer.ms : undefined,
      });
    const abortRequest = () => ownController.abort(new DOMException("the upload body failed", "AbortError"));
    return { signal, timer, fail, abortRequest };
  }

  /** One SDK request under the exchange's timer, up to its response headers. */
  async #send<T>(exchange: Exchange, request: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    exchange.timer.start();
    try {
      return await request(exchange.signal);
    } catch (error) {
      throw exchange.fail(error);
    } finally {
      exchange.timer.stop();
    }
  }

  async #fetch(
    exchange: Exchange,
    key: string,
    ifNoneMatch: VersionToken | undefined,
  ): Promise<NotModified | { Body: unknown; ETag?: string; size: number }> {
    try {
      const answer = await this.#send(exchange, (abortSignal) =>
        this.client.send(
          new GetObjectCommand({
            Bucket: this.bucket,
            Key: this.objectKey(key),
            IfNoneMatch: ifNoneMatch == null ? undefined : quoteEtag(ifNoneMatch),
          }),
          { abortSignal },
        ));
      return { Body: answer.Body, ETag: answer.ETag, size: answer.ContentLength ?? 0 };
    } catch (error) {
      if (error instanceof StoreError && error.status === 304) return { notModified: true };
      throw error;
    }
  }

  /**
   * The response body as a web stream, read on demand (never buffered here). The timer runs only while a read waits
   * for the network; read errors are classified like request errors, so a stalled or reset download is `Transient`
   * and an abort of the caller's signal is `Aborted`.
   */
  #guardedBody(body: unknown, exchange: Exchange): ReadableStream<Uint8Array> {
    const chunks = bodyChunks(body);
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        exchange.timer.start();
        try {
          const next = await chunks.next();
          if (next.done) {
            controller.close();
          } else {
            const chunk = next.value;
            controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          }
        } catch (error) {
          controller.error(exchange.fail(error));
        } finally {
          exchange.timer.stop();
        }
      },
      async cancel() {
        exchange.timer.stop();
        await chunks.return?.();
      },
    }, { highWaterMark: 0 });
  }
}
