/**
 * The GCS adapter: a {@link MarshStore} over the Cloud Storage JSON API with plain `fetch`.
 *
 * - Uploads are `uploadType=multipart` with `ifGenerationMatch` (0 = create only); file bodies are streamed (W15).
 * - Downloads are `alt=media`; the token is the `x-goog-generation` header, the body is handed over as a stream.
 * - Each request has a stall timeout: it covers connect and time to first byte, and is reset by every chunk of body
 *   progress, so a large transfer that keeps moving never times out (W14).
 * - No retries here: failures are classified ({@link classifyGcsFailure}) and the core decides. The one exception is
 *   auth: a 401 invalidates the cached access token and the request is sent once more (a token can expire in flight).
 *
 * @module
 */

import type {
  Body,
  CallOptions,
  FetchedBody,
  FetchedBytes,
  ListedObject,
  ListPage,
  MarshErrorKind,
  MarshHostError,
  MarshStore,
  NotModified,
  ObjectMeta,
  Precondition,
  VersionToken,
} from "./host.ts";
import { isUploadBody, readAll } from "./streams.ts";
import { AdcTokenSource, CredentialsError, type TokenSource } from "./gcs_auth.ts";

export type { TokenSource } from "./gcs_auth.ts";

export const DEFAULT_GCS_ENDPOINT = "https://storage.googleapis.com";
/** Stall timeout of one request: no connection, no response headers or no body progress for this long. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** What to check when GCS (or the credential chain) refuses us. */
export const GCS_AUTH_HINT =
  "check GOOGLE_APPLICATION_CREDENTIALS / gcloud auth application-default login, and roles/storage.objectAdmin on the bucket";

export interface GcsStoreOptions {
  bucket: string;
  /** Object names are `prefix + "/" + key`; leading and trailing slashes are ignored. */
  prefix?: string;
  /** Passed to the credential chain (rarely needed: object calls do not name a project). */
  projectId?: string;
  /** Base URL of an emulator (e.g. fake-gcs-server): emulator mode, requests are sent without credentials. */
  apiEndpoint?: string;
  /** Stall timeout per request, see {@link DEFAULT_REQUEST_TIMEOUT_MS}. */
  requestTimeoutMs?: number;
  /** `maxResults` of a list page; the server's default (1000) when unset. */
  listPageSize?: number;
  /** For tests. */
  fetch?: typeof fetch;
  /** Where bearer tokens come from; default: application default credentials, or none in emulator mode. */
  auth?: TokenSource;
}

/** The store operations, as named in error messages. */
export type GcsOperation = "get" | "getBytes" | "head" | "put" | "putBytes" | "delete" | "list";

/** A typed failure, thrown to the core (a {@link MarshHostError}). */
export class GcsError extends Error implements MarshHostError {
  readonly kind: MarshErrorKind;
  readonly status?: number;
  readonly key?: string;

  constructor(kind: MarshErrorKind, message: string, options: { status?: number; key?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    // The host contract accepts a DOM-style AbortError as Aborted too; naming ours so keeps both readings equal.
    this.name = kind === "Aborted" ? "AbortError" : "GcsError";
    this.kind = kind;
    this.status = options.status;
    this.key = options.key;
  }
}

/** Why a request failed, before it is turned into a {@link GcsError}. */
export type GcsFailure =
  /** GCS answered with a status that is not a success for this call; `detail` is the preview of its error body. */
  | { type: "status"; status: number; detail?: string }
  /** The stall timer fired. */
  | { type: "timeout"; afterMs: number }
  /** The transport failed without an HTTP status (connection refused or reset, DNS, TLS). */
  | { type: "network"; detail: string }
  /** The caller's signal aborted. */
  | { type: "aborted" }
  /** No access token: no credentials found, or the token endpoint refused (its status when known). */
  | { type: "credentials"; detail: string; status?: number }
  /** GCS answered successfully but not in the shape the API documents. */
  | { type: "malformed"; status: number; detail: string };

/** What a failure is about: the operation, the caller's key and the full object (or listing) address. */
export interface GcsFailureContext {
  operation: GcsOperation;
  key: string;
  /** `gs://bucket/name`, for the message. */
  target?: string;
}

/**
 * The error kind of an HTTP status that is not a success. A 304 is not an error of a conditional GET (`#download`
 * answers it as `{ notModified: true }` first); anywhere else it is an answer we did not ask for: `Http`.
 */
export function gcsErrorKindForStatus(status: number): MarshErrorKind {
  if (status === 404) return "NotFound";
  if (status === 412) return "PreconditionFailed";
  if (status === 401 || status === 403) return "Auth";
  // 408/429/5xx are GCS's documented retryable statuses; 409 is a conflicting concurrent mutation (host.ts: Transient).
  if (status === 408 || status === 409 || status === 429 || status >= 500) return "Transient";
  return "Http";
}

/** Turns a failure into the error the core sees: kind, status, key, and a message naming operation, key and cause. */
export function classifyGcsFailure(context: GcsFailureContext, failure: GcsFailure): GcsError {
  const where = `GCS ${context.operation} "${context.key}"${context.target ? ` (${context.target})` : ""}`;
  const key = context.key;
  switch (failure.type) {
    case "status": {
      const kind = gcsErrorKindForStatus(failure.status);
      const detail = failure.detail ? `: ${failure.detail}` : "";
      let hint = "";
      if (kind === "Auth") hint = `; ${GCS_AUTH_HINT}`;
      else if (kind === "NotFound" && context.operation === "list") hint = "; does the bucket exist?";
      return new GcsError(kind, `${where}: HTTP ${failure.status}${detail}${hint}`, { status: failure.status, key });
    }
    case "timeout":
      return new GcsError("Transient", `${where}: no progress for ${failure.afterMs} ms (request timed out)`, { key });
    case "network":
      return new GcsError("Transient", `${where}: network error: ${failure.detail}`, { key });
    case "aborted":
      return new GcsError("Aborted", `${where}: aborted`, { key });
    case "credentials": {
      const status = failure.status;
      const retryable = status !== undefined && gcsErrorKindForStatus(status) === "Transient";
      const answered = status !== undefined ? ` (token endpoint answered HTTP ${status})` : "";
      if (retryable) return new GcsError("Transient", `${where}: ${failure.detail}${answered}`, { key });
      return new GcsError("Auth", `${where}: ${failure.detail}${answered}; ${GCS_AUTH_HINT}`, { key });
    }
    case "malformed":
      return new GcsError("Http", `${where}: unexpected answer (HTTP ${failure.status}): ${failure.detail}`, {
        status: failure.status,
        key,
      });
  }
}

/** A short, single-line preview of an error body: the JSON API's `error.message` when there is one. */
export function previewGcsErrorBody(text: string, limit = 200): string {
  let preview = text;
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown } | string };
    if (typeof parsed?.error === "object" && typeof parsed.error?.message === "string") preview = parsed.error.message;
    else if (typeof parsed?.error === "string") preview = parsed.error;
  } catch {
    // Not JSON (e.g. an HTML page from a proxy): keep the text.
  }
  preview = preview.replace(/\s+/g, " ").trim();
  return preview.length > limit ? `${preview.slice(0, limit)}…` : preview;
}

/**
 * A GCS generation usable as a version token: a positive decimal integer. `""` and `"0"` never match anything (B17);
 * sending `ifGenerationMatch=0` for one would even turn "replace this version" into "create only".
 */
export function isUsableGeneration(token: string | null | undefined): token is VersionToken {
  return typeof token === "string" && /^[1-9][0-9]*$/.test(token);
}

/** Object name prefix in normal form: no leading or trailing slashes, `""` when unset. */
export function normalizeGcsPrefix(prefix: string | undefined): string {
  return (prefix ?? "").replace(/^\/+/, "").replace(/\/+$/, "");
}

const MAX_OBJECT_NAME_BYTES = 1024;
const ERROR_PREVIEW_BYTES = 4096;
const encoder = new TextEncoder();

export class GcsStore implements MarshStore {
  readonly bucket: string;
  /** Normalised prefix; object names are `${prefix}/${key}` when it is not empty. */
  readonly prefix: string;
  readonly #base: string;
  readonly #fetch: typeof fetch;
  readonly #auth: TokenSource | undefined;
  readonly #timeoutMs: number;
  readonly #listPageSize: number | undefined;

  constructor(options: GcsStoreOptions) {
    if (!options.bucket) throw new TypeError("GcsStore: `bucket` is required");
    const timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    if (!(timeoutMs > 0)) throw new TypeError("GcsStore: `requestTimeoutMs` must be positive");
    this.bucket = options.bucket;
    this.prefix = normalizeGcsPrefix(options.prefix);
    // Accept both "http://host:port" and "http://host:port/storage/v1" (emulator docs use either form).
    this.#base = (options.apiEndpoint ?? DEFAULT_GCS_ENDPOINT).replace(/\/+$/, "").replace(/\/storage\/v1$/, "");
    this.#fetch = options.fetch ?? fetch;
    const emulator = options.apiEndpoint !== undefined;
    this.#auth = options.auth ?? (emulator ? undefined : new AdcTokenSource({ projectId: options.projectId }));
    this.#timeoutMs = timeoutMs;
    this.#listPageSize = options.listPageSize;
  }

  async get(key: string, ifNoneMatch?: VersionToken, options?: CallOptions): Promise<FetchedBody | NotModified> {
    const answer = await this.#download("get", key, ifNoneMatch, options);
    if ("notModified" in answer) return answer;
    const { response, guard, context, token, size } = answer;
    return { token, size, body: guardedBody(response, guard, (error) => this.#thrown(context, guard, error)) };
  }

  async getBytes(key: string, ifNoneMatch?: VersionToken, options?: CallOptions): Promise<FetchedBytes | NotModified> {
    const answer = await this.#download("getBytes", key, ifNoneMatch, options);
    if ("notModified" in answer) return answer;
    const { response, guard, context, token, size } = answer;
    const bytes = await readAll(guardedBody(response, guard, (error) => this.#thrown(context, guard, error)), size);
    return { token, size: bytes.byteLength, bytes };
  }

  async head(key: string, options?: CallOptions): Promise<ObjectMeta> {
    const context = this.#context("head", key);
    const url = `${this.#objectUrl(context.name)}?fields=generation,size`;
    const { response, guard } = await this.#send(context, { method: "GET", url }, options);
    if (response.status !== 200) throw await this.#statusFailure(context, response, guard);
    const meta = await this.#readJson(context, response, guard) as { generation?: unknown; size?: unknown };
    return this.#objectMeta(context, meta, response.status);
  }

  async put(
    key: string,
    body: Body,
    precondition: Precondition,
    options?: CallOptions,
  ): Promise<{ token: VersionToken }> {
    const context = this.#context("put", key);
    if (!isUploadBody(body)) {
      throw new GcsError("Io", `GCS put "${key}": the body must be an upload body ({ size, open() })`, { key });
    }
    const size = body.size;
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new GcsError("Io", `GCS put "${key}": invalid upload size ${size}`, { key });
    }
    return await this.#upload(context, precondition, options, async (guard) => {
      const file = await body.open();
      return multipartStream(context, this.#multipartFrame(context.name, key), file, size, guard);
    });
  }

  async putBytes(
    key: string,
    bytes: Uint8Array,
    precondition: Precondition,
    options?: CallOptions,
  ): Promise<{ token: VersionToken }> {
    const context = this.#context("putBytes", key);
    const frame = this.#multipartFrame(context.name, key);
    const whole = new Uint8Array(frame.preamble.byteLength + bytes.byteLength + frame.epilogue.byteLength);
    whole.set(frame.preamble, 0);
    whole.set(bytes, frame.preamble.byteLength);
    whole.set(frame.epilogue, frame.preamble.byteLength + bytes.byteLength);
    return await this.#upload(context, precondition, options, () =>
      Promise.resolve({
        body: whole,
        contentType: frame.contentType,
        contentLength: whole.byteLength,
        release() {},
        failure: () => undefined,
      }));
  }

  async delete(key: string, ifMatch?: VersionToken, options?: CallOptions): Promise<void> {
    const context = this.#context("delete", key);
    let url = this.#objectUrl(context.name);
    if (ifMatch !== undefined) {
      if (!isUsableGeneration(ifMatch)) {
        // No generation equals it, so nothing may be deleted (dropping the condition would delete blindly). Answer
        // as GCS answers a condition that cannot hold: NotFound without an object, PreconditionFailed with one.
        await this.head(key, options).catch((error: unknown) => {
          if (error instanceof GcsError && error.kind === "NotFound") {
            throw new GcsError("NotFound", `GCS delete "${key}" (${context.target}): no such object`, {
              status: error.status,
              key,
            });
          }
          throw error;
        });
        throw unusableToken(context, ifMatch);
      }
      url += `?ifGenerationMatch=${ifMatch}`;
    }
    const { response, guard } = await this.#send(context, { method: "DELETE", url }, options);
    if (response.status !== 204 && response.status !== 200) throw await this.#statusFailure(context, response, guard);
    await discard(response, guard);
  }

  async list(prefix: string, pageToken?: string, options?: CallOptions): Promise<ListPage> {
    const root = this.prefix ? `${this.prefix}/` : "";
    const context: RequestContext = {
      operation: "list",
      key: prefix,
      name: root + prefix,
      target: `gs://${this.bucket}/${root + prefix}*`,
    };
    const query = [`prefix=${encodeURIComponent(root + prefix)}`];
    if (pageToken) query.push(`pageToken=${encodeURIComponent(pageToken)}`);
    if (this.#listPageSize !== undefined) query.push(`maxResults=${this.#listPageSize}`);
    query.push(`fields=${encodeURIComponent("items(name,generation,size),nextPageToken")}`);
    const url = `${this.#base}/storage/v1/b/${encodeURIComponent(this.bucket)}/o?${query.join("&")}`;
    const { response, guard } = await this.#send(context, { method: "GET", url }, options);
    if (response.status !== 200) throw await this.#statusFailure(context, response, guard);
    const page = await this.#readJson(context, response, guard) as { items?: unknown; nextPageToken?: unknown };
    const items = page.items ?? [];
    if (!Array.isArray(items)) {
      throw classifyGcsFailure(context, { type: "malformed", status: 200, detail: "`items` is not a list" });
    }
    const objects: ListedObject[] = [];
    for (const item of items as { name?: unknown; generation?: unknown; size?: unknown }[]) {
      if (typeof item?.name !== "string" || !item.name.startsWith(root)) continue;
      const key = item.name.slice(root.length);
      // A "folder" placeholder named exactly `prefix/` has no key of its own.
      if (key === "") continue;
      objects.push({ key, ...this.#objectMeta({ ...context, key }, item, 200) });
    }
    const next = typeof page.nextPageToken === "string" && page.nextPageToken ? page.nextPageToken : undefined;
    return next ? { objects, nextPageToken: next } : { objects };
  }

  // ---- requests ----

  /** A media GET, conditional when `ifNoneMatch` is usable; the body is left unread for the caller. */
  async #download(
    operation: "get" | "getBytes",
    key: string,
    ifNoneMatch: VersionToken | undefined,
    options: CallOptions | undefined,
  ): Promise<
    NotModified | { response: Response; guard: RequestGuard; context: RequestContext; token: string; size: number }
  > {
    const context = this.#context(operation, key);
    const conditional = isUsableGeneration(ifNoneMatch);
    let url = `${this.#objectUrl(context.name)}?alt=media`;
    if (conditional) url += `&ifGenerationNotMatch=${ifNoneMatch}`;
    // identity: the bytes we hash and store must be the object's bytes, not a transport encoding of them.
    const headers = { "accept-encoding": "identity" };
    const { response, guard } = await this.#send(context, { method: "GET", url, headers }, options);
    if (response.status === 304) {
      await discard(response, guard);
      return { notModified: true };
    }
    if (response.status !== 200) throw await this.#statusFailure(context, response, guard);
    const token = response.headers.get("x-goog-generation");
    if (!isUsableGeneration(token)) {
      await discard(response, guard);
      throw classifyGcsFailure(context, {
        type: "malformed",
        status: 200,
        detail: `no usable x-goog-generation header (${JSON.stringify(token)})`,
      });
    }
    // Real GCS answers 304 itself; emulators (fake-gcs-server) ignore ifGenerationNotMatch and send the body anyway.
    // Answering from the header keeps the result the same on both, and the body is never read.
    if (conditional && token === ifNoneMatch) {
      await discard(response, guard);
      return { notModified: true };
    }
    const size = contentLength(response);
    if (size === undefined) {
      await discard(response, guard);
      throw classifyGcsFailure(context, { type: "malformed", status: 200, detail: "no Content-Length" });
    }
    return { response, guard, context, token, size };
  }

  /** A multipart upload with the precondition as `ifGenerationMatch`; answers the new generation. */
  async #upload(
    context: RequestContext,
    precondition: Precondition,
    options: CallOptions | undefined,
    makeBody: (guard: RequestGuard) => Promise<UploadRequestBody>,
  ): Promise<{ token: VersionToken }> {
    let url = `${this.#base}/upload/storage/v1/b/${encodeURIComponent(this.bucket)}/o?uploadType=multipart`;
    url += `&fields=${encodeURIComponent("generation,size")}`;
    if (precondition.kind === "ifAbsent") url += "&ifGenerationMatch=0";
    else if (precondition.kind === "ifMatch") {
      if (!isUsableGeneration(precondition.token)) throw unusableToken(context, precondition.token);
      url += `&ifGenerationMatch=${precondition.token}`;
    }
    const { response, guard } = await this.#send(context, { method: "POST", url, makeBody }, options);
    if (response.status !== 200) throw await this.#statusFailure(context, response, guard);
    const meta = await this.#readJson(context, response, guard) as { generation?: unknown; size?: unknown };
    return { token: this.#objectMeta(context, meta, response.status).token };
  }

  /**
   * Sends one request: aborted-signal check, bearer token, stall timer, and one more attempt after a 401 with a fresh
   * token. Answers whatever status GCS gave (the caller decides what is a success); throws for everything else.
   */
  async #send(
    context: RequestContext,
    plan: RequestPlan,
    options: CallOptions | undefined,
  ): Promise<{ response: Response; guard: RequestGuard }> {
    const callerSignal = options?.signal;
    for (let attempt = 0;; attempt++) {
      // B15: an aborted operation sends nothing (checked again before the 401 retry).
      if (callerSignal?.aborted) throw classifyGcsFailure(context, { type: "aborted" });
      const guard = new RequestGuard(this.#timeoutMs, callerSignal);
      guard.arm();
      const headers: Record<string, string> = { ...plan.headers };
      if (this.#auth) headers.authorization = `Bearer ${await this.#token(context, guard)}`;
      let body: UploadRequestBody | undefined;
      try {
        body = plan.makeBody ? await plan.makeBody(guard) : undefined;
      } catch (error) {
        // Opening the cache file failed: the cache's own error (Io, or typed by the cache) goes through unchanged.
        guard.disarm();
        throw error;
      }
      if (body) {
        headers["content-type"] = body.contentType;
        // Exact length, for runtimes that send it with a stream body (Deno sends stream bodies chunked instead).
        headers["content-length"] = String(body.contentLength);
      }
      let response: Response;
      try {
        response = await raceAbort(
          this.#fetch(plan.url, { method: plan.method, headers, body: body?.body, signal: guard.signal }),
          guard.signal,
        );
      } catch (error) {
        guard.disarm();
        body?.release();
        // A body that failed on our side (the file changed while read) explains the transport error: report that.
        throw body?.failure() ?? this.#thrown(context, guard, error);
      }
      // Headers are in: the timer now only runs while someone waits for body bytes.
      guard.disarm();
      body?.release();
      if (response.status === 401 && this.#auth && attempt === 0) {
        await discard(response, guard);
        this.#auth.invalidate();
        continue;
      }
      return { response, guard };
    }
  }

  async #token(context: RequestContext, guard: RequestGuard): Promise<string> {
    try {
      return await raceAbort(this.#auth!.getToken(), guard.signal);
    } catch (error) {
      guard.disarm();
      if (isHostError(error)) throw error;
      if (guard.callerAborted) throw classifyGcsFailure(context, { type: "aborted" });
      if (guard.timedOut) throw classifyGcsFailure(context, { type: "timeout", afterMs: guard.timeoutMs });
      const status = error instanceof CredentialsError ? error.status : undefined;
      const detail = error instanceof Error ? error.message : String(error);
      throw classifyGcsFailure(context, { type: "credentials", detail, status });
    }
  }

  /** The error for something thrown while sending or reading: abort, stall timeout, our own body error, transport. */
  #thrown(context: RequestContext, guard: RequestGuard, error: unknown): GcsError {
    if (error instanceof GcsError) return error;
    const cause = (error as { cause?: unknown } | null)?.cause;
    if (cause instanceof GcsError) return cause;
    if (guard.callerAborted) return classifyGcsFailure(context, { type: "aborted" });
    if (guard.timedOut) return classifyGcsFailure(context, { type: "timeout", afterMs: guard.timeoutMs });
    const detail = error instanceof Error
      ? `${error.message}${cause instanceof Error ? ` (${cause.message})` : ""}`
      : String(error);
    return classifyGcsFailure(context, { type: "network", detail });
  }

  async #statusFailure(context: RequestContext, response: Response, guard: RequestGuard): Promise<GcsError> {
    let detail = "";
    try {
      detail = previewGcsErrorBody(await readPreview(guardedBody(response, guard, (e) => e), ERROR_PREVIEW_BYTES));
    } catch {
      // The preview is a courtesy: the status alone decides the kind.
    }
    return classifyGcsFailure(context, { type: "status", status: response.status, detail: detail || undefined });
  }

  async #readJson(context: RequestContext, response: Response, guard: RequestGuard): Promise<Record<string, unknown>> {
    const bytes = await readAll(guardedBody(response, guard, (error) => this.#thrown(context, guard, error)));
    const text = new TextDecoder().decode(bytes);
    try {
      const value = JSON.parse(text);
      if (typeof value === "object" && value !== null && !Array.isArray(value)) return value;
    } catch {
      // fall through
    }
    throw classifyGcsFailure(context, {
      type: "malformed",
      status: response.status,
      detail: `not a JSON object: ${previewGcsErrorBody(text, 80)}`,
    });
  }

  #objectMeta(context: RequestContext, meta: { generation?: unknown; size?: unknown }, status: number): ObjectMeta {
    const token = meta.generation;
    const size = typeof meta.size === "string" && /^[0-9]+$/.test(meta.size) ? Number(meta.size) : meta.size;
    if (!isUsableGeneration(typeof token === "string" ? token : String(token))) {
      throw classifyGcsFailure(context, { type: "malformed", status, detail: `generation ${JSON.stringify(token)}` });
    }
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
      throw classifyGcsFailure(context, { type: "malformed", status, detail: `size ${JSON.stringify(meta.size)}` });
    }
    return { token: String(token), size };
  }

  // ---- names ----

  #context(operation: GcsOperation, key: string): RequestContext {
    const name = this.prefix ? `${this.prefix}/${key}` : key;
    const context = { operation, key, name, target: `gs://${this.bucket}/${name}` };
    // GCS object names: 1–1024 bytes of UTF-8, no CR or LF (the core has already rejected unsafe relative paths).
    if (key === "" || /[\r\n]/.test(key) || encoder.encode(name).byteLength > MAX_OBJECT_NAME_BYTES) {
      throw new GcsError("InvalidKey", `GCS ${operation} ${JSON.stringify(key)}: not a valid object name`, { key });
    }
    return context;
  }

  #objectUrl(name: string): string {
    return `${this.#base}/storage/v1/b/${encodeURIComponent(this.bucket)}/o/${encodeURIComponent(name)}`;
  }

  #multipartFrame(name: string, key: string): MultipartFrame {
    const boundary = `marsh-${crypto.randomUUID()}`;
    const objectType = key.endsWith(".json") ? "application/json" : "application/octet-stream";
    const preamble = `--${boundary}\r\n` +
      "content-type: application/json; charset=UTF-8\r\n\r\n" +
      `${JSON.stringify({ name, contentType: objectType })}\r\n` +
      `--${boundary}\r\n` +
      `content-type: ${objectType}\r\n\r\n`;
    return {
      contentType: `multipart/related; boundary=${boundary}`,
      preamble: encoder.encode(preamble),
      epilogue: encoder.encode(`\r\n--${boundary}--\r\n`),
    };
  }
}

// ---- request plumbing ----

interface RequestContext extends GcsFailureContext {
  /** The object name (prefix included). */
  name: string;
}

interface RequestPlan {
  method: string;
  url: string;
  headers?: Record<string, string>;
  /** Builds the body of one attempt (called again for the retry after a 401: upload bodies are opened per attempt). */
  makeBody?: (guard: RequestGuard) => Promise<UploadRequestBody>;
}

interface UploadRequestBody {
  body: BodyInit;
  contentType: string;
  contentLength: number;
  /** Close the file reader if the transport did not read the body to its end (e.g. an early 412). */
  release(): void;
  /** The error the body stream failed with, if it did (fetch only reports a generic transport error). */
  failure(): GcsError | undefined;
}

interface MultipartFrame {
  contentType: string;
  preamble: Uint8Array;
  epilogue: Uint8Array;
}

/**
 * The abort signal and stall timer of one request. The timer is armed while we wait on the network (connect, upload
 * progress, response headers, a pending body read) and disarmed while the caller holds the data; each bit of progress
 * re-arms it, so only silence longer than `timeoutMs` fails the request.
 */
class RequestGuard {
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  readonly #caller: AbortSignal | undefined;
  readonly #controller = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timedOut = false;

  constructor(timeoutMs: number, caller: AbortSignal | undefined) {
    this.timeoutMs = timeoutMs;
    this.#caller = caller;
    this.signal = caller ? AbortSignal.any([caller, this.#controller.signal]) : this.#controller.signal;
  }

  get timedOut(): boolean {
    return this.#timedOut;
  }

  get callerAborted(): boolean {
    return this.#caller?.aborted ?? false;
  }

  arm(): void {
    this.disarm();
    if (this.signal.aborted) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timedOut = true;
      this.#controller.abort(new DOMException(`no progress for ${this.timeoutMs} ms`, "TimeoutError"));
    }, this.timeoutMs);
  }

  disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** Settles like `promise`, or rejects with the signal's reason as soon as it aborts (for fetches that ignore it). */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/**
 * The response body, re-armed on each read: a read that waits longer than the stall timeout fails the stream with a
 * Transient error (and the caller's abort with Aborted), while a slow consumer never trips it.
 */
function guardedBody(
  response: Response,
  guard: RequestGuard,
  toError: (error: unknown) => unknown,
): ReadableStream<Uint8Array> {
  if (!response.body) {
    return new ReadableStream<Uint8Array>({ start: (controller) => controller.close() });
  }
  const reader = response.body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      guard.arm();
      try {
        const chunk = await raceAbort(reader.read(), guard.signal);
        guard.disarm();
        if (chunk.done) controller.close();
        else controller.enqueue(chunk.value);
      } catch (error) {
        guard.disarm();
        reader.cancel().catch(() => {});
        controller.error(toError(error));
      }
    },
    cancel(reason) {
      guard.disarm();
      return reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}

/**
 * The multipart/related body of an upload, streamed: preamble (JSON metadata part and the media part's header), the
 * file stream, closing boundary. The file must have exactly the size it was stat'ed with, or the upload fails (Io):
 * the uploaded object must be the bytes the cache hashed.
 */
function multipartStream(
  context: RequestContext,
  frame: MultipartFrame,
  file: ReadableStream<Uint8Array>,
  size: number,
  guard: RequestGuard,
): UploadRequestBody {
  const reader = file.getReader();
  let stage: "preamble" | "file" | "done" = "preamble";
  let sent = 0;
  let failure: GcsError | undefined;
  const fail = (controller: ReadableStreamDefaultController<Uint8Array>, detail: string, cause?: unknown) => {
    stage = "done";
    reader.cancel().catch(() => {});
    failure = new GcsError("Io", `GCS ${context.operation} "${context.key}": ${detail}`, { key: context.key, cause });
    controller.error(failure);
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (stage === "done") return;
      // The transport asks for more: that is upload progress.
      guard.arm();
      if (stage === "preamble") {
        stage = "file";
        controller.enqueue(frame.preamble);
        return;
      }
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (error) {
        return fail(controller, `reading the file failed: ${error instanceof Error ? error.message : error}`, error);
      }
      if (chunk.done) {
        if (sent !== size) return fail(controller, `the file has ${sent} bytes, expected ${size} (changed while read)`);
        stage = "done";
        controller.enqueue(frame.epilogue);
        controller.close();
        return;
      }
      sent += chunk.value.byteLength;
      if (sent > size) return fail(controller, `the file grew past its expected ${size} bytes while read`);
      controller.enqueue(chunk.value);
    },
    cancel(reason) {
      stage = "done";
      return reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
  return {
    body,
    contentType: frame.contentType,
    contentLength: frame.preamble.byteLength + size + frame.epilogue.byteLength,
    release() {
      if (stage !== "done") {
        stage = "done";
        reader.cancel().catch(() => {});
      }
    },
    failure: () => failure,
  };
}

/** Up to `limit` bytes of a stream as text; the rest is cancelled. */
async function readPreview(stream: ReadableStream<Uint8Array>, limit: number): Promise<string> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let read = 0;
  try {
    while (read < limit) {
      const chunk = await reader.read();
      if (chunk.done) break;
      read += chunk.value.byteLength;
      text += decoder.decode(chunk.value, { stream: true });
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return text + decoder.decode();
}

/** Drops a response body we do not need (frees the connection). */
async function discard(response: Response, guard: RequestGuard): Promise<void> {
  guard.disarm();
  await response.body?.cancel().catch(() => {});
}

function contentLength(response: Response): number | undefined {
  for (const header of ["content-length", "x-goog-stored-content-length"]) {
    const value = response.headers.get(header);
    if (value !== null && /^[0-9]+$/.test(value)) return Number(value);
  }
  return undefined;
}

function isHostError(error: unknown): boolean {
  return typeof error === "object" && error !== null && typeof (error as { kind?: unknown }).kind === "string";
}

function unusableToken(context: RequestContext, token: string): GcsError {
  return new GcsError(
    "PreconditionFailed",
    `GCS ${context.operation} "${context.key}": token ${
      JSON.stringify(token)
    } is not a usable generation (never matches)`,
    { key: context.key },
  );
}
