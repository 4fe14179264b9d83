/**
 * Typed errors thrown by the store adapters (S3, file, in-memory; GCS has its own `GcsError`) across the wasm boundary,
 * and the helpers the adapters share to build them. The core reads `kind`, `status`, `key` and `message` (see
 * {@link MarshHostError}); it retries only `Transient`, so an adapter must never report a local bug or a permission
 * problem as `Transient`.
 *
 * @module
 */

import type { MarshErrorKind, MarshHostError } from "./host.ts";

/** An `Error` in the {@link MarshHostError} shape. `key` is the cache-relative key of the call (no bucket prefix). */
export class StoreError extends Error implements MarshHostError {
  readonly kind: MarshErrorKind;
  readonly status?: number;
  readonly key?: string;

  constructor(kind: MarshErrorKind, message: string, details: { status?: number; key?: string; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    // An `Aborted` error is also a DOM-style `AbortError`, so code that only knows that convention still sees an abort.
    this.name = kind === "Aborted" ? "AbortError" : "StoreError";
    this.kind = kind;
    if (details.status !== undefined) this.status = details.status;
    if (details.key !== undefined) this.key = details.key;
  }
}

/** The error for a call whose signal was aborted: `kind: "Aborted"`, `name: "AbortError"`. */
export function abortedError(operation: string, key: string, cause?: unknown): StoreError {
  return new StoreError("Aborted", `${operation} ${key}: aborted`, { key, cause });
}

/** B15: an already-aborted signal rejects before any request is sent. */
export function throwIfAborted(signal: AbortSignal | undefined, operation: string, key: string): void {
  if (signal?.aborted) throw abortedError(operation, key, signal.reason);
}

/** A DOM `AbortError` (fetch, AbortSignal-aware APIs, the AWS SDK's own abort). */
export function isAbortError(error: unknown): boolean {
  return error instanceof Error && error.name === "AbortError";
}

/** Error codes of transport failures that carry no HTTP status (node/Deno sockets, DNS, undici). */
const TRANSPORT_ERROR_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EADDRNOTAVAIL",
  "ERR_STREAM_PREMATURE_CLOSE",
]);

/**
 * True for a failure of the connection itself (reset, refused, DNS, socket timeout): B14 retries these. Recognised by
 * the error `code` (node style), the `TimeoutError` name, or Deno's fetch `TypeError` for network failures.
 */
export function isTransportError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && (TRANSPORT_ERROR_CODES.has(code) || code.startsWith("UND_ERR_"))) return true;
  if (error.name === "TimeoutError") return true;
  if (error instanceof TypeError && /network|connect|socket|fetch failed|error sending request/i.test(error.message)) {
    return true;
  }
  return error.cause !== undefined && error.cause !== error && isTransportError(error.cause);
}

/** At most `max` characters of a server answer, on one line, for an error message. */
export function preview(text: string | undefined, max = 200): string | undefined {
  if (!text) return undefined;
  const oneLine = text.replace(/\s+/g, " ").trim();
  return oneLine.length > max ? `${oneLine.slice(0, max)}…` : oneLine;
}
