// Reading objects and internal files whole: one buffer of the announced size, any length actually read.
import assert from "node:assert/strict";
import { readAll } from "../../js/streams.ts";

function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    pull(controller) {
      const chunk = chunks.shift();
      if (chunk === undefined) controller.close();
      else controller.enqueue(chunk);
    },
  });
}

/** `length` bytes counting up from `start`, in chunks of `chunk`. */
function chunked(start: number, length: number, chunk: number): Uint8Array[] {
  const chunks = [];
  for (let at = 0; at < length; at += chunk) {
    chunks.push(Uint8Array.from({ length: Math.min(chunk, length - at) }, (_, i) => (start + at + i) % 251));
  }
  return chunks;
}

function joined(chunks: Uint8Array[]): Uint8Array {
  const whole = new Uint8Array(chunks.reduce((total, chunk) => total + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    whole.set(chunk, at);
    at += chunk.length;
  }
  return whole;
}

Deno.test("readAll reads a body whole whatever size was announced, into a buffer of exactly its length", async () => {
  for (const length of [0, 1, 1000, 70_001]) {
    const body = joined(chunked(0, length, 4096));
    // Announced right, too short, too long (a transcoded or lying response), or not at all.
    for (const announced of [length, Math.floor(length / 3), length + 17, 0, undefined, NaN, -1]) {
      const bytes = await readAll(streamOf(chunked(0, length, 4096)), announced);
      assert.deepEqual(bytes, body, `length ${length}, announced ${announced}`);
      // One buffer of exactly the body (what the core may release after copying it: host.rs `release`).
      assert.equal(bytes.byteOffset, 0);
      assert.equal(bytes.buffer.byteLength, length, `length ${length}, announced ${announced}`);
    }
  }
});

Deno.test("readAll passes on a stream's error", async () => {
  const failing = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new Uint8Array([1, 2, 3]));
      controller.error(new Error("connection reset"));
    },
  });
  await assert.rejects(readAll(failing, 10), /connection reset/);
});
