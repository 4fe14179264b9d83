/**
 * Small helpers over the bodies that cross between stores and caches (see `Body` in host.ts).
 *
 * @module
 */

import type { Body, UploadBody } from "./host.ts";

/** A cache file handed to a store's `put` (as opposed to a response stream). */
export function isUploadBody(body: Body | unknown): body is UploadBody {
  return typeof body === "object" && body !== null && typeof (body as UploadBody).open === "function" &&
    typeof (body as UploadBody).size === "number";
}

/**
 * Read a stream to the end into one buffer (small objects and the index, never file bodies). Given the size the
 * response announced, the chunks are copied into a buffer of that size as they come: collecting them first and joining
 * them at the end holds the body twice, which for a large index is a lot. A body longer or shorter than announced is
 * still read whole.
 */
export async function readAll(stream: ReadableStream<Uint8Array>, expectedSize?: number): Promise<Uint8Array> {
  if (expectedSize === undefined || !Number.isSafeInteger(expectedSize) || expectedSize <= 0) {
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  let buffer = new Uint8Array(expectedSize);
  let filled = 0;
  for await (const chunk of stream) {
    if (filled + chunk.length > buffer.length) {
      const grown = new Uint8Array(Math.max(buffer.length * 2, filled + chunk.length));
      grown.set(buffer.subarray(0, filled));
      buffer = grown;
    }
    buffer.set(chunk, filled);
    filled += chunk.length;
  }
  return filled === buffer.length ? buffer : buffer.slice(0, filled);
}
