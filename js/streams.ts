/**
 * Small helpers over the bodies that cross between stores and caches (see `Body` in host.ts), and over reading files
 * whole.
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
 * Read a stream to the end into one buffer (small objects and the index, never file bodies). Given the size the response
 * announced, the chunks are copied into a buffer of that size as they come: collecting them first and joining them at
 * the end holds the body twice (a 72 MB index). A body longer or shorter than announced is still read whole.
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

/** Read into `buffer` until it is full or the file ends; answers the bytes read. */
export async function readFull(file: Deno.FsFile, buffer: Uint8Array): Promise<number> {
  let filled = 0;
  while (filled < buffer.length) {
    const read = await file.read(buffer.subarray(filled));
    if (read === null) break;
    filled += read;
  }
  return filled;
}

/**
 * An open file, read whole into one buffer of the size its stat gives. `Deno.readFile` peaks at twice a file's size
 * (measured: 168 MB of RSS to read a 72 MB index), this at its size. A file that shrinks or grows meanwhile is read to
 * its end all the same.
 */
export async function readWhole(file: Deno.FsFile): Promise<Uint8Array> {
  const size = (await file.stat()).size;
  const buffer = new Uint8Array(size);
  const filled = await readFull(file, buffer);
  if (filled < size) return buffer.slice(0, filled);
  const later: Uint8Array[] = [];
  for (;;) {
    const chunk = new Uint8Array(64 * 1024);
    const read = await file.read(chunk);
    if (read === null) break;
    later.push(chunk.subarray(0, read));
  }
  if (later.length === 0) return buffer;
  const whole = new Uint8Array(size + later.reduce((total, chunk) => total + chunk.length, 0));
  whole.set(buffer);
  let at = size;
  for (const chunk of later) {
    whole.set(chunk, at);
    at += chunk.length;
  }
  return whole;
}
