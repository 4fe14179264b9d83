// Reading objects and internal files whole: one buffer of the announced size, any length actually read.
import assert from "node:assert/strict";
import { readAll, readWhole } from "../js/streams.ts";

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

Deno.test("readWhole reads a file into one buffer of its size, and to its end when it changed after its stat", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const length of [0, 5, 200_003]) {
      const path = `${dir}/f${length}`;
      const body = joined(chunked(7, length, 8192));
      await Deno.writeFile(path, body);
      const file = await Deno.open(path);
      try {
        const bytes = await readWhole(file);
        assert.deepEqual(bytes, body);
        assert.equal(bytes.buffer.byteLength, length);
      } finally {
        file.close();
      }
      // The file as a stat taken before it grew or shrank would size it: still read whole, and only it.
      for (const statSize of [0, Math.floor(length / 2), length + 100]) {
        const file = await Deno.open(path);
        try {
          const changed = {
            stat: () => Promise.resolve({ size: statSize }),
            read: (into: Uint8Array) => file.read(into),
          };
          const bytes = await readWhole(changed as unknown as Deno.FsFile);
          assert.deepEqual(bytes, body, `length ${length}, stat size ${statSize}`);
          assert.equal(bytes.buffer.byteLength, length);
        } finally {
          file.close();
        }
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
