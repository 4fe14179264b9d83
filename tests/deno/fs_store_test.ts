// FsStore (`--store file:///dir`): the shared store conformance suite, then what is particular to a directory store:
// generation tokens, key safety, UTF-8 listing order, readers isolated from writers, and compare-and-swap across
// processes. Needs --allow-read, --allow-write and --allow-run (the multi-process test).
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { FsStore, SYNC_READ_BYTES } from "../../js/fs_store.ts";
import type { FetchedBody, FetchedBytes, NotModified } from "../../js/host.ts";
import { readStream, storeConformance, uploadBodyOf } from "./support/store_conformance.ts";

const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
/** Bytes that differ from chunk to chunk, so a misplaced chunk would show. */
const patterned = (length: number) => Uint8Array.from({ length }, (_, i) => (i * 31 + (i >> 12)) % 251);

async function withTempDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "marsh-fs-store-" });
  try {
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function fetched<T extends FetchedBody | FetchedBytes>(answer: T | NotModified): T {
  if ("notModified" in answer) assert.fail("expected a body, got notModified");
  return answer;
}

const none = { kind: "none" } as const;

storeConformance("fs", async () => {
  const root = await Deno.makeTempDir({ prefix: "marsh-fs-store-" });
  return {
    store: new FsStore(root, { listPageSize: 100 }),
    cleanup: () => Deno.remove(root, { recursive: true }),
    limits: { listPageSize: 100 },
  };
});

Deno.test("bytes and streamed bodies round trip with their token and size", async () => {
  await withTempDir(async (root) => {
    const store = new FsStore(root);
    const big = patterned(200_000);

    const small = await store.putBytes(".datastore-index.json", encode('{"version":1}'), none);
    const streamed = await store.put("data/blob.bin", uploadBodyOf(big), none);

    const gotSmall = fetched(await store.getBytes(".datastore-index.json"));
    const gotBig = fetched(await store.get("data/blob.bin"));
    assert.deepEqual(gotSmall, { token: small.token, size: 13, bytes: encode('{"version":1}') });
    assert.equal(gotBig.token, streamed.token);
    assert.equal(gotBig.size, big.length);
    assert.deepEqual(await readStream(gotBig.body), big);
    assert.deepEqual(await store.head("data/blob.bin"), { token: streamed.token, size: big.length });
  });
});

// getBytes reads small bodies with blocking calls and larger ones without: both must give the same answers.
Deno.test("getBytes answers alike on both sides of the blocking-read limit, and names a cut-short object", async () => {
  await withTempDir(async (root) => {
    const store = new FsStore(root);
    for (const size of [0, SYNC_READ_BYTES, SYNC_READ_BYTES + 1]) {
      const body = patterned(size);
      const { token } = await store.putBytes(`sizes/${size}`, body, none);
      assert.deepEqual(fetched(await store.getBytes(`sizes/${size}`)), { token, size, bytes: body });
      assert.deepEqual(await store.getBytes(`sizes/${size}`, token), { notModified: true });

      // An object file shorter than its header says: an Io error naming the key, never a short body.
      if (size === 0) continue; // nothing to cut
      const headerBytes = 64; // the object file's header line (docs/formats.md, "The file:// store")
      await Deno.truncate(join(root, "objects", "sizes", `${size}~`), headerBytes + size - 1);
      await assert.rejects(store.getBytes(`sizes/${size}`), (error: Error & { kind?: string }) => {
        assert.equal(error.kind, "Io");
        assert.match(error.message, new RegExp(`sizes/${size} ends before its size`));
        return true;
      });
    }
    await assert.rejects(store.getBytes("sizes/missing"), { kind: "NotFound" });
  });
});

Deno.test("every write issues a new token, even a re-creation after delete", async () => {
  await withTempDir(async (root) => {
    const store = new FsStore(root);
    const tokens = [
      (await store.putBytes("k", encode("same"), none)).token,
      (await store.putBytes("k", encode("same"), none)).token,
      (await store.put("k", uploadBodyOf(encode("same")), none)).token,
    ];
    await store.delete("k");
    tokens.push((await store.putBytes("k", encode("same"), { kind: "ifAbsent" })).token);

    assert.equal(new Set(tokens).size, 4);
    for (const token of tokens) assert.match(token, /^[1-9][0-9]*$/);
    assert.deepEqual(tokens.map(Number), tokens.map(Number).toSorted((a, b) => a - b));
  });
});

Deno.test("a second ifAbsent put fails and keeps the first body", async () => {
  await withTempDir(async (root) => {
    const store = new FsStore(root);
    const first = await store.putBytes(".datastore.lock", encode("first"), { kind: "ifAbsent" });

    await assert.rejects(store.putBytes(".datastore.lock", encode("second"), { kind: "ifAbsent" }), {
      kind: "PreconditionFailed",
      key: ".datastore.lock",
    });

    assert.deepEqual(fetched(await store.getBytes(".datastore.lock")), {
      token: first.token,
      size: 5,
      bytes: encode("first"),
    });
  });
});

Deno.test("an ifMatch put with a stale token, or on a missing object, fails", async () => {
  await withTempDir(async (root) => {
    const store = new FsStore(root);
    const old = await store.putBytes("index", encode("v1"), none);
    const current = await store.putBytes("index", encode("v2"), { kind: "ifMatch", token: old.token });

    await assert.rejects(store.putBytes("index", encode("v3"), { kind: "ifMatch", token: old.token }), {
      kind: "PreconditionFailed",
    });
    await assert.rejects(store.put("missing", uploadBodyOf(encode("x")), { kind: "ifMatch", token: old.token }), {
      kind: "PreconditionFailed",
    });

    assert.deepEqual(fetched(await store.getBytes("index")).bytes, encode("v2"));
    assert.equal((await store.head("index")).token, current.token);
    await assert.rejects(store.head("missing"), { kind: "NotFound", key: "missing" });
  });
});

Deno.test("a get with the current token as ifNoneMatch answers notModified", async () => {
  await withTempDir(async (root) => {
    const store = new FsStore(root);
    const { token } = await store.putBytes("index", encode("v1"), none);

    assert.deepEqual(await store.get("index", token), { notModified: true });
    assert.deepEqual(await store.getBytes("index", token), { notModified: true });
    assert.deepEqual(fetched(await store.getBytes("index", "1" + token)).bytes, encode("v1"));
    await assert.rejects(store.get("missing", token), { kind: "NotFound" });
  });
});

Deno.test("delete removes the object; a missing one or a stale ifMatch fails", async () => {
  await withTempDir(async (root) => {
    const store = new FsStore(root);
    const old = await store.putBytes("a/b", encode("1"), none);
    const current = await store.putBytes("a/b", encode("2"), none);

    await assert.rejects(store.delete("a/b", old.token), { kind: "PreconditionFailed", key: "a/b" });
    assert.equal((await store.head("a/b")).token, current.token);
    await store.delete("a/b", current.token);
    await assert.rejects(store.getBytes("a/b"), { kind: "NotFound" });
    await assert.rejects(store.delete("a/b"), { kind: "NotFound", key: "a/b" });
    await assert.rejects(new FsStore(join(root, "never-created")).delete("k"), { kind: "NotFound" });
  });
});

Deno.test("list pages 2,500 keys in order, 1,000 at a time, filtered by prefix", async () => {
  await withTempDir(async (root) => {
    const store = new FsStore(root);
    const keys = Array.from({ length: 2500 }, (_, i) => `data/${i % 7}/file-${String(i).padStart(4, "0")}.json`);
    for (let at = 0; at < keys.length; at += 100) {
      await Promise.all(keys.slice(at, at + 100).map((key) => store.putBytes(key, encode(key), none)));
    }
    await store.putBytes("other", encode("x"), none);

    const pages = [];
    let pageToken: string | undefined;
    do {
      const page = await store.list("data/", pageToken);
      pages.push(page);
      pageToken = page.nextPageToken;
    } while (pageToken !== undefined);

    assert.deepEqual(pages.map((page) => page.objects.length), [1000, 1000, 500]);
    const listed = pages.flatMap((page) => page.objects);
    assert.deepEqual(listed.map((object) => object.key), keys.toSorted());
    assert.equal(listed[0].size, encode(listed[0].key).length);
    assert.equal(listed[0].token, (await store.head(listed[0].key)).token);
    assert.equal((await store.list("data/3/")).objects.length, keys.filter((key) => key.startsWith("data/3/")).length);
    assert.deepEqual(
      (await store.list("data/1/file-000")).objects.map((object) => object.key),
      ["data/1/file-0001.json", "data/1/file-0008.json"],
    );
    assert.deepEqual((await store.list("oth")).objects.map((o) => o.key), ["other"]);
  });
});

Deno.test("list orders keys by their UTF-8 bytes and keeps unusual names apart", async () => {
  await withTempDir(async (root) => {
    const store = new FsStore(root);
    const keys = ["a", "a/b", "a~", "a%7E", "a-b", "a.b", "\u{FFFD}", "\u{1F600}", "~tmp"];
    for (const key of keys) await store.putBytes(key, encode(key), none);

    const listed = (await store.list("")).objects.map((object) => object.key);

    const byBytes = keys.toSorted((x, y) => Buffer.compare(encode(x), encode(y)));
    assert.deepEqual(listed, byBytes);
    for (const key of keys) assert.deepEqual(fetched(await store.getBytes(key)).bytes, encode(key));
  });
});

Deno.test("keys that could leave the root are refused and create nothing", async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, "store");
    const store = new FsStore(root);
    const bad = ["", "../escape", "a/../../escape", "/etc/escape", "a\\..\\escape", "a\0b", "a//b", "./a", "a/", ".."];

    for (const key of bad) {
      await assert.rejects(store.putBytes(key, encode("x"), none), { kind: "InvalidKey" }, JSON.stringify(key));
      await assert.rejects(store.put(key, uploadBodyOf(encode("x")), none), { kind: "InvalidKey" });
      await assert.rejects(store.get(key), { kind: "InvalidKey" });
      await assert.rejects(store.head(key), { kind: "InvalidKey" });
      await assert.rejects(store.delete(key), { kind: "InvalidKey" });
    }
    assert.deepEqual(await store.list("../"), { objects: [] });

    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), []);
  });
});

Deno.test("a get stream opened before a put or delete still yields the old bytes", async () => {
  await withTempDir(async (root) => {
    const store = new FsStore(root);
    const old = patterned(1_000_000);
    const first = await store.putBytes("blob", old, none);
    const reading = fetched(await store.get("blob"));
    const reader = (reading.body as ReadableStream<Uint8Array>).getReader();
    const firstChunk = await reader.read();

    const replaced = await store.putBytes("blob", encode("new"), none);
    const secondReading = fetched(await store.get("blob"));
    await store.delete("blob");
    const chunks = [firstChunk.value!];
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) chunks.push(chunk.value);

    assert.equal(reading.token, first.token);
    assert.deepEqual(new Uint8Array(Buffer.concat(chunks)), old);
    assert.equal(secondReading.token, replaced.token);
    assert.deepEqual(await readStream(secondReading.body), encode("new"));
  });
});

Deno.test("an upload whose length differs from its declared size commits nothing", async () => {
  await withTempDir(async (root) => {
    const store = new FsStore(root);
    const upload = { ...uploadBodyOf(encode("grown meanwhile")), size: 5 };

    await assert.rejects(store.put("file", upload, none), { kind: "Io", message: /15 bytes, expected 5/ });

    await assert.rejects(store.head("file"), { kind: "NotFound" });
    assert.deepEqual(await Array.fromAsync(Deno.readDir(join(root, "objects"))), []);
  });
});

Deno.test("an aborted signal rejects calls as Aborted and stops a body stream", async () => {
  await withTempDir(async (root) => {
    const store = new FsStore(root);
    await store.putBytes("blob", new Uint8Array(500_000), none);
    const aborted = AbortSignal.abort();

    await assert.rejects(store.putBytes("k", encode("x"), none, { signal: aborted }), {
      name: "AbortError",
      kind: "Aborted",
    });
    await assert.rejects(store.get("blob", undefined, { signal: aborted }), { name: "AbortError", kind: "Aborted" });
    await assert.rejects(store.list("", undefined, { signal: aborted }), { name: "AbortError", kind: "Aborted" });
    await assert.rejects(store.delete("blob", undefined, { signal: aborted }), { name: "AbortError", kind: "Aborted" });

    const controller = new AbortController();
    const reading = fetched(await store.get("blob", undefined, { signal: controller.signal }));
    const reader = (reading.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    controller.abort();
    await assert.rejects(reader.read(), { name: "AbortError", kind: "Aborted" });
    await assert.rejects(store.head("k"), { kind: "NotFound" });
  });
});

Deno.test("four processes incrementing one counter with ifMatch lose no update", async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, "store");
    const barrier = join(dir, "barrier");
    await Deno.mkdir(barrier);
    const store = new FsStore(root);
    await store.putBytes("counter", encode("0"), { kind: "ifAbsent" });
    const here = dirname(fileURLToPath(import.meta.url));
    let finished = 0;
    const workers = [0, 1, 2, 3].map((id) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--config",
          join(here, "..", "..", "pkg.json"),
          `--allow-read=${dir}`,
          `--allow-write=${dir}`,
          join(here, "fixtures", "fs_store_counter.ts"),
          root,
          barrier,
          String(id),
          "25",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output().finally(() => finished++)
    );
    // Release the workers together once all are ready (or stop waiting when one has already exited, failing).
    while (finished === 0 && (await Array.fromAsync(Deno.readDir(barrier))).length < 4) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await Deno.writeTextFile(join(barrier, "go"), "");

    const outputs = await Promise.all(workers);

    for (const output of outputs) assert.equal(output.code, 0, decode(output.stderr));
    const conflicts = outputs.reduce((sum, output) => sum + JSON.parse(decode(output.stdout)).conflicts, 0);
    assert.ok(conflicts > 0, "the workers should have raced at least once");
    assert.equal(decode(fetched(await store.getBytes("counter")).bytes), "100");
  });
});
