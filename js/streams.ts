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

/** Read a stream to the end into one buffer (small objects only: index, lock, test bodies). */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
