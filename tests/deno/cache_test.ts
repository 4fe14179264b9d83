// DenoCache against real files in a temp directory: walks, atomic writes, verified downloads, uploads, path safety.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { CacheError, DenoCache, RelSink, TEMP_PREFIX, type WalkFs } from "../../js/cache.ts";
import { readAll } from "../../js/streams.ts";
import type { MarshHostError, PackedWalk, UploadBody, WalkItem } from "../../js/host.ts";

const encoder = new TextEncoder();

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function streamOf(...chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
}

async function withTempDir(test: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "marsh-cache-test-" });
  try {
    await test(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function write(path: string, text: string): Promise<void> {
  const slash = path.lastIndexOf("/");
  await Deno.mkdir(path.slice(0, slash), { recursive: true });
  await Deno.writeTextFile(path, text);
}

/** Every file name under `dir` that starts with our temp prefix, at any depth. */
async function tempFilesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.name.startsWith(TEMP_PREFIX)) found.push(path);
    if (entry.isDirectory) found.push(...(await tempFilesUnder(path)));
  }
  return found;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** The rels of a packed walk, which `DenoCache` hands over as UTF-8 bytes (no string per file). */
function packedRels(packed: PackedWalk): string[] {
  assert.ok(packed.files instanceof Uint8Array, "DenoCache packs the rels as bytes");
  return new TextDecoder().decode(packed.files).split("\0");
}

const denoWalkFs: WalkFs = { readDirSync: (path) => Deno.readDirSync(path), lstatSync: (path) => Deno.lstatSync(path) };

// ---------------------------------------------------------------------------------------------------------------------
// walk

Deno.test("walk lists every file with its size, nested directories included, by /-separated rel", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/top.json`, "12345");
    await write(`${dir}/a/b/deep.json`, "xy");
    await write(`${dir}/a/empty.txt`, "");
    await write(`${dir}/.datastore-index.json`, "{}");
    await Deno.mkdir(`${dir}/no-files/inside`, { recursive: true });

    const items = await new DenoCache(dir).walk();

    const summary = items.map((
      item,
    ) => (item.kind === "file" ? [item.kind, item.rel, item.size] : [item.kind, item.rel]));
    assert.deepEqual(summary, [
      ["file", ".datastore-index.json", 2],
      ["file", "a/b/deep.json", 2],
      ["file", "a/empty.txt", 0],
      ["file", "top.json", 5],
    ]);
    const top = items.find((item) => item.rel === "top.json");
    assert.ok(top?.kind === "file");
    assert.equal(top.mtimeMs, Math.round((await Deno.stat(`${dir}/top.json`)).mtime!.getTime()));
    assert.ok(Number.isInteger(top.mtimeMs));
  });
});

Deno.test("walk reports symlinks once and never follows them, even to a directory", async () => {
  await withTempDir(async (dir) => {
    const cache = `${dir}/cache`;
    const outside = `${dir}/outside`;
    await write(`${outside}/secret.json`, "not ours");
    await write(`${cache}/real.json`, "1");
    await Deno.symlink(`${outside}/secret.json`, `${cache}/file-link.json`);
    await Deno.mkdir(`${cache}/sub`);
    await Deno.symlink(outside, `${cache}/sub/dir-link`);
    await Deno.symlink(`${cache}/real.json`, `${cache}/inner-link.json`);

    const items = await new DenoCache(cache).walk();

    assert.deepEqual(
      items.map((item) => [item.kind, item.rel]),
      [
        ["symlink", "file-link.json"],
        ["symlink", "inner-link.json"],
        ["file", "real.json"],
        ["symlink", "sub/dir-link"],
      ],
    );
    assert.ok(!items.some((item) => item.rel.includes("secret")));
  });
});

Deno.test("walkPacked carries the same files, sizes, mtimes and symlinks as walk, in a few arrays", async () => {
  await withTempDir(async (dir) => {
    const cache = `${dir}/cache`;
    await write(`${cache}/a.json`, "1");
    await write(`${cache}/d/e/b.json`, "22");
    await write(`${cache}/new\nline.json`, "333");
    await Deno.symlink(`${cache}/a.json`, `${cache}/link.json`);
    const denoCache = new DenoCache(cache);

    const items = await denoCache.walk();
    const packed = await denoCache.walkPacked();

    const files = items.filter((item) => item.kind === "file");
    assert.deepEqual(packedRels(packed), files.map((item) => item.rel));
    assert.deepEqual([...packed.sizes], [1, 2, 3]);
    assert.deepEqual([...packed.mtimes], files.map((item) => item.mtimeMs));
    assert.deepEqual(packed.symlinks, ["link.json"]);
    assert.deepEqual(packed.vanished, []);
    assert.ok(packedRels(packed).includes("new\nline.json"), "a newline in a name survives: NUL separates rels");
  });
});

Deno.test("a walk's packed rels survive chunk boundaries: separators, multi-byte names, a rel longer than a chunk", () => {
  const rels = ["a.json", "ä/ö.json", "x".repeat(40), "日本/語.json", "b/c", "😀.json", "z"];
  for (let n = 0; n < 30; n++) rels.push(`d/${n}/${"é".repeat(n)}`);
  const sink = new RelSink(16);
  for (const rel of rels) sink.add(rel);
  const bytes = sink.take();
  assert.equal(bytes.byteLength, bytes.buffer.byteLength, "one buffer of the bytes' own size");
  assert.deepEqual(new TextDecoder().decode(bytes).split("\0"), rels);
  assert.equal(new RelSink(16).take().length, 0);
  sink.add("again");
  assert.equal(new TextDecoder().decode(sink.take()), "again", "empty again after take");
});

Deno.test("walk reports a file deleted between listing and stat as vanished", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/keep.json`, "k");
    await write(`${dir}/gone.json`, "g");
    // The listing is taken first, then the file disappears before its stat: the race a live cache sees.
    const racingFs: WalkFs = {
      readDirSync(path) {
        const entries = [...Deno.readDirSync(path)];
        Deno.removeSync(`${dir}/gone.json`);
        return entries;
      },
      lstatSync: denoWalkFs.lstatSync,
    };

    const items = await new DenoCache(dir, { walkFs: racingFs }).walk();

    assert.deepEqual(
      items.map((item) => [item.kind, item.rel]),
      [["vanished", "gone.json"], ["file", "keep.json"]],
    );
  });
});

Deno.test("walk fails with an Io error naming the file when a stat is refused", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/a/ok.json`, "1");
    await write(`${dir}/a/locked.json`, "2");
    const deniedFs: WalkFs = {
      readDirSync: denoWalkFs.readDirSync,
      lstatSync(path) {
        if (path.endsWith("/locked.json")) throw new Deno.errors.PermissionDenied("Permission denied (os error 13)");
        return Deno.lstatSync(path);
      },
    };

    await assert.rejects(new DenoCache(dir, { walkFs: deniedFs }).walk(), (error: MarshHostError) => {
      assert.equal(error.kind, "Io");
      assert.equal(error.key, "a/locked.json");
      assert.match(error.message, /a\/locked\.json.*Permission denied/);
      return true;
    });
  });
});

Deno.test("walk fails with an Io error naming the directory when a directory cannot be listed", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/top.json`, "1");
    await write(`${dir}/private/x.json`, "2");
    const deniedFs: WalkFs = {
      readDirSync(path) {
        if (path.endsWith("/private")) throw new Deno.errors.PermissionDenied("Permission denied (os error 13)");
        return Deno.readDirSync(path);
      },
      lstatSync: denoWalkFs.lstatSync,
    };

    await assert.rejects(new DenoCache(dir, { walkFs: deniedFs }).walk(), {
      kind: "Io",
      key: "private",
      message: /cannot list directory private/,
    });
  });
});

Deno.test("walk lists rels in sorted order even where a name sorts between a directory and its files", async () => {
  await withTempDir(async (dir) => {
    // "a-b" and "a.c" sort before "a/…" ("-" and "." come before "/"), "a0" after it.
    for (const rel of ["a/x.json", "a/z/y.json", "a-b", "a.c", "a0", "b", "a/z.json", "a/z-", "ä.json"]) {
      await write(`${dir}/${rel}`, rel);
    }
    await Deno.symlink(`${dir}/b`, `${dir}/a/link`);
    await Deno.symlink(`${dir}/b`, `${dir}/a!`);
    const cache = new DenoCache(dir);

    const items = await cache.walk();
    const packed = await cache.walkPacked();

    const rels = items.map((item) => item.rel);
    assert.deepEqual(rels, [...rels].sort());
    assert.deepEqual(rels, [
      "a!",
      "a-b",
      "a.c",
      "a/link",
      "a/x.json",
      "a/z-",
      "a/z.json",
      "a/z/y.json",
      "a0",
      "b",
      "ä.json",
    ]);
    assert.deepEqual(
      packedRels(packed),
      items.filter((item) => item.kind === "file").map((item) => item.rel),
    );
    assert.deepEqual(packed.symlinks, ["a!", "a/link"]);
  });
});

Deno.test("walk stats only files: directories and symlinks are typed by their listing", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/d/e/f.json`, "1");
    await write(`${dir}/g.json`, "22");
    await Deno.symlink(`${dir}/d`, `${dir}/link`);
    const statted: string[] = [];
    const countingFs: WalkFs = {
      readDirSync: denoWalkFs.readDirSync,
      lstatSync(path) {
        statted.push(path.slice(dir.length + 1));
        return Deno.lstatSync(path);
      },
    };

    const items = await new DenoCache(dir, { walkFs: countingFs }).walk();

    assert.deepEqual(items.map((item) => [item.kind, item.rel]), [
      ["file", "d/e/f.json"],
      ["file", "g.json"],
      ["symlink", "link"],
    ]);
    assert.deepEqual(statted, ["d/e/f.json", "g.json"]);
  });
});

Deno.test("walk stats entries a listing leaves untyped, and still lists them in order", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/a/x.json`, "1");
    await write(`${dir}/a-b.json`, "22");
    await write(`${dir}/c.json`, "333");
    await Deno.symlink(`${dir}/c.json`, `${dir}/b-link`);
    // A listing without entry types (as some file systems answer): every entry needs its stat.
    const untypedFs: WalkFs = {
      readDirSync: (path) =>
        [...Deno.readDirSync(path)].map((entry) => ({
          name: entry.name,
          isFile: false,
          isDirectory: false,
          isSymlink: false,
        })),
      lstatSync: denoWalkFs.lstatSync,
    };

    const cache = new DenoCache(dir, { walkFs: untypedFs });
    const items = await cache.walk();
    const packed = await cache.walkPacked();

    assert.deepEqual(items.map((item) => [item.kind, item.rel]), [
      ["file", "a-b.json"],
      ["file", "a/x.json"],
      ["symlink", "b-link"],
      ["file", "c.json"],
    ]);
    assert.deepEqual(packedRels(packed), ["a-b.json", "a/x.json", "c.json"]);
    assert.deepEqual([...packed.sizes], [2, 1, 3]);
  });
});

Deno.test("walk reports a directory deleted between listing and its own listing as vanished", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/keep.json`, "k");
    await write(`${dir}/gone/inside.json`, "g");
    const racingFs: WalkFs = {
      readDirSync(path) {
        const entries = [...Deno.readDirSync(path)];
        if (path === dir) Deno.removeSync(`${dir}/gone`, { recursive: true });
        return entries;
      },
      lstatSync: denoWalkFs.lstatSync,
    };

    const cache = new DenoCache(dir, { walkFs: racingFs });
    const items = await cache.walk();

    assert.deepEqual(items.map((item) => [item.kind, item.rel]), [["vanished", "gone"], ["file", "keep.json"]]);
  });
});

Deno.test("a long walk gives timers and other work turns while it runs", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/real.json`, "1");
    const names = Array.from({ length: 300 }, (_, i) => `f${String(i).padStart(3, "0")}.json`);
    // 300 files that each take 1 ms to stat: a 300 ms walk, run synchronously between its turns.
    const slowFs: WalkFs = {
      readDirSync: () => names.map((name) => ({ name, isFile: true, isDirectory: false, isSymlink: false })),
      lstatSync() {
        const until = performance.now() + 1;
        while (performance.now() < until) { /* busy */ }
        return Deno.lstatSync(`${dir}/real.json`);
      },
    };
    let ticks = 0;
    let opsDone = 0;
    let stop = false;
    const timer = setInterval(() => ticks++, 5);
    const otherWork = (async () => {
      while (!stop) {
        await Deno.lstat(dir);
        opsDone++;
      }
    })();
    try {
      const packed = await new DenoCache(dir, { walkFs: slowFs }).walkPacked();
      assert.equal(packed.sizes.length, 300);
    } finally {
      stop = true;
      clearInterval(timer);
      await otherWork;
    }
    assert.ok(ticks >= 10, `a 5 ms interval fired ${ticks} times during a 300 ms walk`);
    assert.ok(opsDone >= 10, `concurrent async ops completed ${opsDone} times during a 300 ms walk`);
  });
});

Deno.test("walk of a cache directory that does not exist yet is empty", async () => {
  await withTempDir(async (dir) => {
    assert.deepEqual(await new DenoCache(`${dir}/not-created`).walk(), []);
  });
});

Deno.test("walk with an already aborted signal fails as Aborted", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/a.json`, "1");
    const controller = new AbortController();
    controller.abort();

    await assert.rejects(new DenoCache(dir).walk({ signal: controller.signal }), { kind: "Aborted" });
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// stat, hash, internal files

Deno.test("stat answers size and integer mtime, null when missing, and refuses a symlink", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/a.json`, "abc");
    await Deno.symlink(`${dir}/a.json`, `${dir}/link.json`);
    const cache = new DenoCache(dir);

    const stat = await cache.stat("a.json");

    assert.equal(stat?.size, 3);
    assert.equal(stat?.mtimeMs, Math.round((await Deno.stat(`${dir}/a.json`)).mtime!.getTime()));
    assert.equal(await cache.stat("missing.json"), null);
    assert.equal(await cache.stat("a.json/under-a-file"), null);
    await assert.rejects(cache.stat("link.json"), { kind: "Io", key: "link.json", message: /link\.json is a symlink/ });
  });
});

Deno.test("hash answers the sha256 of the file, null when missing", async () => {
  await withTempDir(async (dir) => {
    const bytes = new Uint8Array(300_000).map((_, i) => i % 251);
    await Deno.writeFile(`${dir}/big.bin`, bytes);
    const cache = new DenoCache(dir);

    const hashed = await cache.hash("big.bin");

    assert.equal(hashed?.sha256, sha256Hex(bytes));
    assert.equal(hashed?.size, bytes.length);
    assert.equal(await cache.hash("missing.bin"), null);
  });
});

Deno.test("writeInternal replaces the file atomically and leaves no temp file", async () => {
  await withTempDir(async (dir) => {
    const cache = new DenoCache(dir);
    await cache.writeInternal(".marsh-view.json", encoder.encode("old"));

    await cache.writeInternal(".marsh-view.json", encoder.encode("new contents"));

    assert.equal(await Deno.readTextFile(`${dir}/.marsh-view.json`), "new contents");
    assert.deepEqual(await cache.readInternal(".marsh-view.json"), encoder.encode("new contents"));
    assert.deepEqual(await tempFilesUnder(dir), []);
    assert.equal(await cache.readInternal(".datastore-sync-state.json"), null);
  });
});

Deno.test("readInternal reads an internal file into one buffer of exactly its size", async () => {
  await withTempDir(async (dir) => {
    const cache = new DenoCache(dir);
    for (const length of [0, 5, 200_003]) {
      const bytes = Uint8Array.from({ length }, (_, i) => i % 251);
      await cache.writeInternal(".marsh-view.json", bytes.slice());
      const read = await cache.readInternal(".marsh-view.json");
      assert.deepEqual(read, bytes);
      assert.equal(read?.buffer.byteLength, length);
    }
  });
});

Deno.test("readInternalStream answers the size and the bytes of an internal file, null when it is missing", async () => {
  await withTempDir(async (dir) => {
    const cache = new DenoCache(dir);
    const bytes = Uint8Array.from({ length: 300_001 }, (_, i) => i % 253);
    await cache.writeInternal(".marsh-view.json", bytes.slice());

    const read = await cache.readInternalStream(".marsh-view.json");
    assert.ok(read);
    assert.equal(read.size, bytes.length);
    // Read to its end, the stream closes the file (the test's resource check would fail otherwise).
    assert.deepEqual(new Uint8Array(await new Response(read.stream).arrayBuffer()), bytes);
    assert.equal(await cache.readInternalStream(".datastore-sync-state.json"), null);
    await assert.rejects(
      cache.readInternalStream("../outside.json"),
      (error: MarshHostError) => error.kind === "InvalidKey",
    );
  });
});

Deno.test("writeInternal creates a missing cache root and refuses names outside the root", async () => {
  await withTempDir(async (dir) => {
    const cache = new DenoCache(`${dir}/fresh`);

    await cache.writeInternal(".datastore-index.json", encoder.encode("{}"));

    assert.equal(await Deno.readTextFile(`${dir}/fresh/.datastore-index.json`), "{}");
    await assert.rejects(cache.writeInternal("../escape.json", encoder.encode("x")), { kind: "InvalidKey" });
    await assert.rejects(cache.writeInternal("sub/deeper/x.json", encoder.encode("x")), { kind: "InvalidKey" });
    assert.equal(await exists(`${dir}/escape.json`), false);
    assert.equal(await exists(`${dir}/fresh/sub`), false);
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// Internal folders (per-path marks)

Deno.test("writeInternal into a folder creates it; listInternal lists its files, not temps; removeInternal removes", async () => {
  await withTempDir(async (dir) => {
    const cache = new DenoCache(`${dir}/cache`);
    assert.deepEqual(await cache.listInternal(".marsh-marks"), [], "no folder yet: no names");

    await cache.writeInternal(".marsh-marks/2-b", new Uint8Array());
    await cache.writeInternal(".marsh-marks/1-a", encoder.encode("x"));
    await Deno.writeTextFile(`${dir}/cache/.marsh-marks/${TEMP_PREFIX}in-flight`, "");
    await Deno.mkdir(`${dir}/cache/.marsh-marks/a-directory`);

    assert.deepEqual(await cache.listInternal(".marsh-marks"), ["1-a", "2-b"]);
    assert.equal(await Deno.readTextFile(`${dir}/cache/.marsh-marks/1-a`), "x");
    await cache.removeInternal(".marsh-marks/1-a");
    await cache.removeInternal(".marsh-marks/1-a"); // missing: not an error
    await cache.removeInternal(".marsh-marks/never-there");
    await cache.removeInternal(".not-a-folder/x");
    assert.deepEqual(await cache.listInternal(".marsh-marks"), ["2-b"]);
    await assert.rejects(cache.listInternal("a/b"), { kind: "InvalidKey" });
    await assert.rejects(cache.listInternal("../x"), { kind: "InvalidKey" });
    await assert.rejects(cache.removeInternal("../x"), { kind: "InvalidKey" });
  });
});

Deno.test("an internal folder that is a symlink is never written, listed or removed through", async () => {
  await withTempDir(async (dir) => {
    const outside = `${dir}/outside`;
    await Deno.mkdir(outside);
    await Deno.writeTextFile(`${outside}/victim`, "keep me");
    await Deno.mkdir(`${dir}/cache`);
    await Deno.symlink(outside, `${dir}/cache/.marsh-marks`);
    const cache = new DenoCache(`${dir}/cache`);

    await assert.rejects(cache.writeInternal(".marsh-marks/x", new Uint8Array()), { kind: "InvalidKey" });
    await assert.rejects(cache.removeInternal(".marsh-marks/victim"), { kind: "InvalidKey" });
    await assert.rejects(cache.listInternal(".marsh-marks"), { kind: "Io" });
    assert.deepEqual((await Array.fromAsync(Deno.readDir(outside))).map((entry) => entry.name), ["victim"]);
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// walkUnder

Deno.test("walkUnder answers the file, everything under a folder, or nothing", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/a/b/c.json`, "c");
    await write(`${dir}/a/b/d/e.json`, "ee");
    await write(`${dir}/a/bz.json`, "outside the folder");
    await write(`${dir}/top.json`, "t");
    await Deno.symlink("c.json", `${dir}/a/b/link`);
    const cache = new DenoCache(dir);

    const file = await cache.walkUnder("a/b/c.json");
    const info = await Deno.stat(`${dir}/a/b/c.json`);
    assert.deepEqual(file, [{ kind: "file", rel: "a/b/c.json", size: 1, mtimeMs: Math.round(info.mtime!.getTime()) }]);
    const folder = await cache.walkUnder("a/b");
    assert.deepEqual(folder.map((item) => [item.kind, item.rel]), [
      ["file", "a/b/c.json"],
      ["file", "a/b/d/e.json"],
      ["symlink", "a/b/link"],
    ]);
    assert.deepEqual(await cache.walkUnder("a/missing.json"), []);
    assert.deepEqual(await cache.walkUnder("nowhere/deep/x"), []);
    assert.deepEqual(await cache.walkUnder("top.json/x"), [], "a file where a folder would be: nothing under it");
    await assert.rejects(cache.walkUnder("../x"), { kind: "InvalidKey" });
  });
});

Deno.test("walkUnder reports a symlink at or above the path and never follows it", async () => {
  await withTempDir(async (dir) => {
    const outside = `${dir}/outside`;
    await write(`${outside}/secret.json`, "s");
    await Deno.mkdir(`${dir}/cache`);
    await Deno.symlink(outside, `${dir}/cache/link`);
    const cache = new DenoCache(`${dir}/cache`);

    assert.deepEqual(await cache.walkUnder("link"), [{ kind: "symlink", rel: "link" }]);
    assert.deepEqual(await cache.walkUnder("link/secret.json"), [{ kind: "symlink", rel: "link" }]);
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// statMany

/** `statMany`'s answer as one readable item per path. */
async function statsOf(cache: DenoCache, rels: string[]): Promise<(string | [number, number])[]> {
  const { kinds, sizes, mtimes } = await cache.statMany(rels.join("\0"));
  assert.equal(kinds.length, rels.length);
  return Array.from(kinds, (kind, i) => kind === 1 ? [sizes[i], mtimes[i]] : ["absent", "file", "symlink"][kind]);
}

Deno.test("statMany answers each path in order: a file's size and mtime, absent, or a symlink at or above it", async () => {
  await withTempDir(async (dir) => {
    const outside = `${dir}/outside`;
    await write(`${outside}/secret.json`, "secret");
    const root = `${dir}/cache`;
    await write(`${root}/a/b/c.json`, "abc");
    await write(`${root}/a/d.json`, "d");
    await write(`${root}/top.json`, "top!");
    await Deno.mkdir(`${root}/a/folder`);
    await Deno.symlink(outside, `${root}/a/link`);
    await Deno.symlink(`${outside}/secret.json`, `${root}/file-link.json`);
    const when = new Date(1_780_000_000_123);
    await Deno.utime(`${root}/a/b/c.json`, when, when);
    const cache = new DenoCache(root);
    const mtime = (rel: string) => Math.round(Deno.lstatSync(`${root}/${rel}`).mtime!.getTime());

    const found = await statsOf(cache, [
      "a/b/c.json",
      "a/b/missing.json",
      "a/d.json",
      "a/d.json/under-a-file",
      "a/folder",
      "a/link/secret.json",
      "a/link",
      "file-link.json",
      "nowhere/x/y.json",
      "top.json",
    ]);

    assert.deepEqual(found, [
      [3, 1_780_000_000_123],
      "absent",
      [1, mtime("a/d.json")],
      "absent",
      "absent",
      "symlink",
      "symlink",
      "symlink",
      "absent",
      [4, mtime("top.json")],
    ]);
    assert.deepEqual(await statsOf(cache, []), []);
  });
});

Deno.test("statMany finds a symlinked folder whatever the order of the paths asked", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/outside/x.json`, "x");
    await write(`${dir}/cache/d/x.json`, "real");
    await Deno.symlink(`${dir}/outside`, `${dir}/cache/e`);
    const cache = new DenoCache(`${dir}/cache`);

    const found = await statsOf(cache, ["e/x.json", "d/x.json", "e/x.json"]);

    assert.deepEqual(found.map((item) => typeof item === "string" ? item : "file"), ["symlink", "file", "symlink"]);
  });
});

Deno.test("statMany fails on a refused stat, naming the path, and on an aborted signal", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/a/b.json`, "b");
    const refusing: WalkFs = {
      readDirSync: (path) => Deno.readDirSync(path),
      lstatSync: (path) => {
        if (path.endsWith("/a/b.json")) throw new Deno.errors.PermissionDenied("EACCES");
        return Deno.lstatSync(path);
      },
    };
    const cache = new DenoCache(dir, { walkFs: refusing });

    await assert.rejects(cache.statMany("a/b.json"), { kind: "Io", key: "a/b.json" });
    const aborted = new AbortController();
    aborted.abort();
    await assert.rejects(new DenoCache(dir).statMany("a/b.json", { signal: aborted.signal }), { kind: "Aborted" });
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// removeFile

Deno.test("removeFile removes the file it was told of, and a missing one is not an error", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/a/gone.json`, "bye");
    const cache = new DenoCache(dir);
    const stat = (await cache.stat("a/gone.json"))!;

    await cache.removeFile("a/gone.json", stat);
    await cache.removeFile("a/gone.json", stat);
    await cache.removeFile("never/there.json", stat);

    assert.equal(await exists(`${dir}/a/gone.json`), false);
    assert.deepEqual(await tempFilesUnder(dir), []);
  });
});

Deno.test("removeFile refuses with LocalChanged when the file changed since, and keeps it", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/edited.json`, "v1");
    const cache = new DenoCache(dir);
    const seen = (await cache.stat("edited.json"))!;
    await Deno.writeTextFile(`${dir}/edited.json`, "v2, longer");
    const sameSize = { ...seen, size: 10, mtimeMs: seen.mtimeMs - 5000 };

    for (const expected of [seen, sameSize]) {
      await assert.rejects(cache.removeFile("edited.json", expected), (error: MarshHostError) => {
        assert.equal(error.kind, "LocalChanged");
        assert.equal(error.key, "edited.json");
        return true;
      });
    }
    assert.equal(await Deno.readTextFile(`${dir}/edited.json`), "v2, longer");
    assert.deepEqual(await tempFilesUnder(dir), []);
  });
});

Deno.test("removeFile never removes through a symlinked folder, a symlink or a directory", async () => {
  await withTempDir(async (dir) => {
    const outside = `${dir}/outside`;
    await write(`${outside}/victim.json`, "keep");
    await Deno.mkdir(`${dir}/cache/sub`, { recursive: true });
    await Deno.symlink(outside, `${dir}/cache/link`);
    await Deno.symlink(`${outside}/victim.json`, `${dir}/cache/file-link`);
    const cache = new DenoCache(`${dir}/cache`);
    const info = await Deno.stat(`${outside}/victim.json`);
    const stat = { size: info.size, mtimeMs: Math.round(info.mtime!.getTime()) };

    await assert.rejects(cache.removeFile("link/victim.json", stat), { kind: "InvalidKey" });
    await assert.rejects(cache.removeFile("file-link", stat), { kind: "LocalChanged" });
    await assert.rejects(cache.removeFile("sub", stat), { kind: "LocalChanged" });
    assert.equal(await Deno.readTextFile(`${outside}/victim.json`), "keep");
    assert.equal(await exists(`${dir}/cache/file-link`), true);
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// download

Deno.test("download with the expected size and hash lands on rel and answers its stat and hash", async () => {
  await withTempDir(async (dir) => {
    const bytes = encoder.encode('{"hello":"world"}');
    await write(`${dir}/data.json`, "previous");
    const cache = new DenoCache(dir);

    const answer = await cache.download("data.json", streamOf(bytes.subarray(0, 5), bytes.subarray(5)), {
      size: bytes.length,
      sha256: sha256Hex(bytes),
    });

    assert.deepEqual(await Deno.readFile(`${dir}/data.json`), bytes);
    const info = await Deno.stat(`${dir}/data.json`);
    assert.deepEqual(answer, {
      size: bytes.length,
      mtimeMs: Math.round(info.mtime!.getTime()),
      sha256: sha256Hex(bytes),
    });
    assert.deepEqual(await tempFilesUnder(dir), []);
  });
});

Deno.test("download creates the missing parent directories", async () => {
  await withTempDir(async (dir) => {
    const bytes = encoder.encode("[1,2,3]");

    await new DenoCache(dir).download("a/b/c.json", streamOf(bytes), { size: bytes.length });

    assert.equal(await Deno.readTextFile(`${dir}/a/b/c.json`), "[1,2,3]");
  });
});

Deno.test("download of a short body leaves the old file untouched and no temp file", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/a/data.json`, "the good copy");
    const truncated = encoder.encode("the go");

    await assert.rejects(
      new DenoCache(dir).download("a/data.json", streamOf(truncated), { size: 13 }),
      (error: MarshHostError) => {
        assert.equal(error.kind, "Mismatch");
        assert.equal(error.key, "a/data.json");
        assert.match(error.message, /a\/data\.json has 6 bytes, expected 13/);
        return true;
      },
    );
    assert.equal(await Deno.readTextFile(`${dir}/a/data.json`), "the good copy");
    assert.deepEqual(await tempFilesUnder(dir), []);
  });
});

Deno.test("download of a body longer than expected is refused", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/data.json`, "old");

    await assert.rejects(
      new DenoCache(dir).download("data.json", streamOf(encoder.encode("abc"), encoder.encode("def")), { size: 4 }),
      { kind: "Mismatch", message: /data\.json has \d+ bytes, expected 4/ },
    );
    assert.equal(await Deno.readTextFile(`${dir}/data.json`), "old");
    assert.deepEqual(await tempFilesUnder(dir), []);
  });
});

Deno.test("download with the right size but another hash leaves the old file untouched", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/data.json`, "old!");
    const expectedHash = sha256Hex(encoder.encode("good"));

    await assert.rejects(
      new DenoCache(dir).download("data.json", streamOf(encoder.encode("evil")), { size: 4, sha256: expectedHash }),
      { kind: "Mismatch", key: "data.json", message: new RegExp(`sha256 [0-9a-f]{64}, expected ${expectedHash}`) },
    );
    assert.equal(await Deno.readTextFile(`${dir}/data.json`), "old!");
    assert.deepEqual(await tempFilesUnder(dir), []);
  });
});

Deno.test("download through a symlinked directory is refused and nothing is written outside the root", async () => {
  await withTempDir(async (dir) => {
    const cache = `${dir}/cache`;
    const outside = `${dir}/outside`;
    await Deno.mkdir(cache);
    await Deno.mkdir(outside);
    await Deno.symlink(outside, `${cache}/link`);
    const bytes = encoder.encode("x");

    for (const rel of ["link/x.json", "link/deeper/x.json"]) {
      await assert.rejects(new DenoCache(cache).download(rel, streamOf(bytes), { size: 1 }), {
        kind: "InvalidKey",
        key: rel,
        message: /link is a symlink/,
      });
    }
    assert.deepEqual(await Array.fromAsync(Deno.readDir(outside)), []);
  });
});

Deno.test("a folder swapped for a symlink between two downloads into it is refused, at any depth", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/cache`;
    const outside = `${dir}/outside`;
    await Deno.mkdir(outside);
    const cache = new DenoCache(root);
    const bytes = encoder.encode("x");
    // The same instance, the same folder: nothing remembered from the first download may let the second through.
    for (const swapped of ["a/b", "a"]) {
      await cache.download("a/b/first.json", streamOf(bytes), { size: 1, replaces: null });
      await Deno.remove(`${root}/${swapped}`, { recursive: true });
      await Deno.mkdir(`${outside}/b`, { recursive: true });
      await Deno.symlink(swapped === "a" ? outside : `${outside}/b`, `${root}/${swapped}`);
      await assert.rejects(cache.download("a/b/second.json", streamOf(bytes), { size: 1, replaces: null }), {
        kind: "InvalidKey",
        key: "a/b/second.json",
        message: new RegExp(`${swapped} is a symlink`),
      });
      assert.deepEqual(await Array.fromAsync(Deno.readDir(`${outside}/b`)), []);
      await Deno.remove(`${root}/${swapped}`);
      await Deno.remove(`${outside}/b`);
    }
  });
});

Deno.test("a folder above a checked one, swapped for a symlink to a look-alike tree, is refused", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/cache`;
    const outside = `${dir}/outside`;
    const cache = new DenoCache(root);
    const bytes = encoder.encode("x");
    // a/b/c was checked by the first download; the path a/b/c still leads to a real folder after the swap, but to
    // another one, outside: that must not pass as the folder checked before.
    await cache.download("a/b/c/first.json", streamOf(bytes), { size: 1, replaces: null });
    await Deno.mkdir(`${outside}/b/c`, { recursive: true });
    await Deno.remove(`${root}/a`, { recursive: true });
    await Deno.symlink(outside, `${root}/a`);
    await assert.rejects(cache.download("a/b/c/second.json", streamOf(bytes), { size: 1, replaces: null }), {
      kind: "InvalidKey",
      key: "a/b/c/second.json",
      message: /a is a symlink/,
    });
    assert.deepEqual(await Array.fromAsync(Deno.readDir(`${outside}/b/c`)), []);
  });
});

Deno.test("a checked folder replaced by a file, or by a new folder, is checked again", async () => {
  await withTempDir(async (dir) => {
    const cache = new DenoCache(dir);
    const bytes = encoder.encode("x");
    await cache.download("a/b/first.json", streamOf(bytes), { size: 1, replaces: null });
    await Deno.remove(`${dir}/a/b`, { recursive: true });
    await Deno.writeTextFile(`${dir}/a/b`, "a file now");
    await assert.rejects(cache.download("a/b/second.json", streamOf(bytes), { size: 1, replaces: null }), {
      kind: "Io",
      key: "a/b/second.json",
      message: /a\/b is not a directory/,
    });
    assert.equal(await Deno.readTextFile(`${dir}/a/b`), "a file now");
    // A new real folder under the same name is used once it is seen to be one.
    await Deno.remove(`${dir}/a/b`);
    await Deno.mkdir(`${dir}/a/b`);
    await cache.download("a/b/third.json", streamOf(bytes), { size: 1, replaces: null });
    assert.equal(await Deno.readTextFile(`${dir}/a/b/third.json`), "x");
    assert.deepEqual(await tempFilesUnder(dir), []);
  });
});

Deno.test("a folder swapped for a symlink while a download streams is refused before the file lands", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/cache`;
    const outside = `${dir}/outside`;
    await Deno.mkdir(`${outside}/b`, { recursive: true });
    const cache = new DenoCache(root);
    const bytes = encoder.encode("remote");
    await cache.download("a/b/first.json", streamOf(bytes), { size: bytes.length });
    /** A body whose second chunk comes after `swapped` became a symlink: the temp file is in the real folder by then. */
    const swappingBody = (swapped: string) =>
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(bytes.subarray(0, 3));
        },
        async pull(controller) {
          await Deno.remove(`${root}/${swapped}`, { recursive: true });
          await Deno.symlink(swapped === "a" ? outside : `${outside}/b`, `${root}/${swapped}`);
          controller.enqueue(bytes.subarray(3));
          controller.close();
        },
      });
    // A link (nothing may be there) and a rename (anything but a symlink may be replaced), each at two depths.
    for (const replaces of [null, undefined]) {
      for (const swapped of ["a/b", "a"]) {
        await Deno.mkdir(`${root}/a/b`, { recursive: true });
        await assert.rejects(
          cache.download("a/b/second.json", swappingBody(swapped), { size: bytes.length, replaces }),
          { kind: "InvalidKey", key: "a/b/second.json", message: new RegExp(`${swapped} is a symlink`) },
        );
        assert.deepEqual(await Array.fromAsync(Deno.readDir(`${outside}/b`)), []);
        await Deno.remove(`${root}/${swapped}`);
      }
    }
  });
});

Deno.test("a folder removed between two downloads into it is made again", async () => {
  await withTempDir(async (dir) => {
    const cache = new DenoCache(dir);
    const bytes = encoder.encode("x");
    await cache.download("a/b/first.json", streamOf(bytes), { size: 1, replaces: null });
    await Deno.remove(`${dir}/a`, { recursive: true });
    await cache.download("a/b/second.json", streamOf(bytes), { size: 1, replaces: null });
    assert.equal(await Deno.readTextFile(`${dir}/a/b/second.json`), "x");
    assert.deepEqual(await tempFilesUnder(dir), []);
  });
});

Deno.test("download does not replace a symlink", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/outside.json`, "outside");
    await Deno.mkdir(`${dir}/cache`);
    await Deno.symlink(`${dir}/outside.json`, `${dir}/cache/link.json`);

    await assert.rejects(
      new DenoCache(`${dir}/cache`).download("link.json", streamOf(encoder.encode("new")), { size: 3 }),
      { kind: "InvalidKey", key: "link.json" },
    );
    assert.ok((await Deno.lstat(`${dir}/cache/link.json`)).isSymlink);
    assert.equal(await Deno.readTextFile(`${dir}/outside.json`), "outside");
    assert.deepEqual(await tempFilesUnder(`${dir}/cache`), []);
  });
});

Deno.test("an abort during a download fails as Aborted and removes the temp file", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/data.json`, "old");
    const controller = new AbortController();
    let firstChunkSent!: () => void;
    const sent = new Promise<void>((resolve) => (firstChunkSent = resolve));
    // Sends one chunk, then stalls like a slow connection.
    const stalled = new ReadableStream<Uint8Array>({
      pull(stream) {
        stream.enqueue(encoder.encode("part"));
        firstChunkSent();
        return new Promise(() => {});
      },
    });

    const download = new DenoCache(dir).download("data.json", stalled, { size: 100 }, { signal: controller.signal });
    await sent;
    while ((await tempFilesUnder(dir)).length === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    controller.abort();

    await assert.rejects(download, (error: MarshHostError & Error) => {
      assert.equal(error.kind, "Aborted");
      assert.equal(error.name, "AbortError");
      return true;
    });
    assert.deepEqual(await tempFilesUnder(dir), []);
    assert.equal(await Deno.readTextFile(`${dir}/data.json`), "old");
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// prepareUpload

/** Read `reader` to its end, handing each chunk to `onChunk`; rejects with the stream's error. */
async function readRest(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  onChunk: (chunk: Uint8Array) => void,
): Promise<void> {
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    onChunk(value);
  }
}

Deno.test("prepareUpload answers stat and hash, and body.open streams the file for each attempt", async () => {
  await withTempDir(async (dir) => {
    const bytes = new Uint8Array(400_000).map((_, i) => (i * 7) % 256);
    await Deno.writeFile(`${dir}/big.bin`, bytes);
    const info = await Deno.stat(`${dir}/big.bin`);

    const prepared = await new DenoCache(dir).prepareUpload("big.bin");

    assert.ok(prepared);
    assert.equal(prepared.size, bytes.length);
    assert.equal(prepared.mtimeMs, Math.round(info.mtime!.getTime()));
    assert.equal(prepared.sha256, sha256Hex(bytes));
    const body = prepared.body as UploadBody;
    assert.equal(body.size, bytes.length);
    assert.deepEqual(await readAll(await body.open()), bytes);
    assert.deepEqual(await readAll(await body.open()), bytes);
  });
});

Deno.test("prepareUpload of an empty file streams an empty body", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/empty`, new Uint8Array());

    const prepared = await new DenoCache(dir).prepareUpload("empty");

    assert.equal(prepared?.sha256, sha256Hex(new Uint8Array()));
    assert.deepEqual(await readAll(await (prepared!.body as UploadBody).open()), new Uint8Array());
  });
});

Deno.test("prepareUpload answers null for a missing file and refuses a symlink", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/real.json`, "1");
    await Deno.symlink(`${dir}/real.json`, `${dir}/link.json`);
    const cache = new DenoCache(dir);

    assert.equal(await cache.prepareUpload("missing.json"), null);
    await assert.rejects(cache.prepareUpload("link.json"), { kind: "Io", key: "link.json" });
  });
});

Deno.test("an upload body fails when the file was rewritten between prepareUpload and open", async () => {
  await withTempDir(async (dir) => {
    await write(`${dir}/data.json`, "version one");
    const prepared = await new DenoCache(dir).prepareUpload("data.json");
    // Same size, new bytes, written in place (possibly within the same millisecond).
    await Deno.writeTextFile(`${dir}/data.json`, "version two");

    await assert.rejects((prepared!.body as UploadBody).open().then(readAll), {
      kind: "Io",
      key: "data.json",
      message: /changed after it was hashed/,
    });
  });
});

Deno.test("an upload body errors before its last chunk when the file changes while it streams", async () => {
  await withTempDir(async (dir) => {
    const original = new Uint8Array(600_000).fill(1);
    await Deno.writeFile(`${dir}/big.bin`, original);
    const prepared = await new DenoCache(dir).prepareUpload("big.bin");
    const reader = (await (prepared!.body as UploadBody).open()).getReader();
    let received = (await reader.read()).value!.length;

    // Same size, new bytes near the end (not read yet): only the hash can tell.
    const file = await Deno.open(`${dir}/big.bin`, { write: true });
    await file.seek(550_000, Deno.SeekMode.Start);
    await file.write(new Uint8Array(1000).fill(2));
    file.close();
    const drained = readRest(reader, (chunk) => received += chunk.length);

    await assert.rejects(drained, { kind: "Io", message: /changed after it was hashed/ });
    assert.ok(received < original.length, `${received} bytes were delivered`);
  });
});

Deno.test("an upload body errors before its last chunk when the file grows while it streams", async () => {
  await withTempDir(async (dir) => {
    const original = new Uint8Array(600_000).fill(1);
    await Deno.writeFile(`${dir}/big.bin`, original);
    const prepared = await new DenoCache(dir).prepareUpload("big.bin");
    const reader = (await (prepared!.body as UploadBody).open()).getReader();
    let received = (await reader.read()).value!.length;

    // The hashed bytes are all still there, then more: the end of the file (its size) must tell.
    await Deno.writeFile(`${dir}/big.bin`, new Uint8Array(10).fill(2), { append: true });
    const drained = readRest(reader, (chunk) => received += chunk.length);

    await assert.rejects(drained, { kind: "Io", message: /changed after it was hashed/ });
    assert.ok(received < original.length, `${received} bytes were delivered`);
  });
});

Deno.test("download with replaces: null lands only where nothing is, a stat only over that very file", async () => {
  await withTempDir(async (dir) => {
    const cache = new DenoCache(dir);
    const bytes = encoder.encode("remote");
    const expected = { size: bytes.length, sha256: sha256Hex(bytes) };

    await cache.download("new.json", streamOf(bytes), { ...expected, replaces: null });
    assert.equal(await Deno.readTextFile(`${dir}/new.json`), "remote");

    await write(`${dir}/created-here.json`, "local");
    await assert.rejects(
      cache.download("created-here.json", streamOf(bytes), { ...expected, replaces: null }),
      { kind: "LocalChanged", key: "created-here.json" },
    );
    assert.equal(await Deno.readTextFile(`${dir}/created-here.json`), "local");

    await write(`${dir}/old.json`, "old");
    const seen = (await cache.stat("old.json"))!;
    await cache.download("old.json", streamOf(bytes), { ...expected, replaces: seen });
    assert.equal(await Deno.readTextFile(`${dir}/old.json`), "remote");

    await write(`${dir}/edited.json`, "old");
    const before = (await cache.stat("edited.json"))!;
    await Deno.writeTextFile(`${dir}/edited.json`, "edited here");
    for (const replaces of [before, { ...before, mtimeMs: before.mtimeMs + 1 }]) {
      await assert.rejects(cache.download("edited.json", streamOf(bytes), { ...expected, replaces }), {
        kind: "LocalChanged",
      });
    }
    await assert.rejects(cache.download("gone.json", streamOf(bytes), { ...expected, replaces: before }), {
      kind: "LocalChanged",
    });
    assert.equal(await exists(`${dir}/gone.json`), false);
    assert.equal(await Deno.readTextFile(`${dir}/edited.json`), "edited here");
    assert.deepEqual(await tempFilesUnder(dir), []);
  });
});

Deno.test("download with replaces: a file written while the body streams is kept", async () => {
  await withTempDir(async (dir) => {
    const cache = new DenoCache(dir);
    await write(`${dir}/racy.json`, "base");
    const seen = (await cache.stat("racy.json"))!;
    const bytes = encoder.encode("remote");
    // The local write lands after the first chunk, between the early check and the rename.
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.subarray(0, 3));
      },
      async pull(controller) {
        await Deno.writeTextFile(`${dir}/racy.json`, "local edit");
        controller.enqueue(bytes.subarray(3));
        controller.close();
      },
    });

    await assert.rejects(cache.download("racy.json", body, { size: bytes.length, replaces: seen }), {
      kind: "LocalChanged",
    });
    assert.equal(await Deno.readTextFile(`${dir}/racy.json`), "local edit");
    assert.deepEqual(await tempFilesUnder(dir), []);
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// Paths

Deno.test("every method refuses a path that could leave the cache, naming it", async () => {
  await withTempDir(async (dir) => {
    const cache = new DenoCache(`${dir}/cache`);
    const bad = ["../x.json", "a/../../x.json", "/etc/passwd", "a\\..\\x", "a\0b", "", "a/", "./a", "a//b", "C:x"];
    for (const rel of bad) {
      const calls: [string, () => Promise<unknown>][] = [
        ["stat", () => cache.stat(rel)],
        ["hash", () => cache.hash(rel)],
        ["prepareUpload", () => cache.prepareUpload(rel)],
        ["readInternal", () => cache.readInternal(rel)],
        ["writeInternal", () => cache.writeInternal(rel, encoder.encode("x"))],
        ["download", () => cache.download(rel, streamOf(encoder.encode("x")), { size: 1 })],
        ["walkUnder", () => cache.walkUnder(rel)],
        ["removeFile", () => cache.removeFile(rel, { size: 1, mtimeMs: 0 })],
        ["removeInternal", () => cache.removeInternal(rel)],
      ];
      for (const [method, call] of calls) {
        await assert.rejects(call(), (error: MarshHostError) => {
          assert.equal(error.kind, "InvalidKey", `${method}(${JSON.stringify(rel)})`);
          assert.equal(error.key, rel);
          assert.ok(error.message.includes(JSON.stringify(rel)), error.message);
          return true;
        });
      }
    }
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), []);
  });
});

Deno.test("a trailing slash on the root is normalised away and every key still works", async () => {
  await withTempDir(async (dir) => {
    const cache = new DenoCache(`${dir}///`);
    const bytes = encoder.encode("ok");

    await cache.download("x/y.json", streamOf(bytes), { size: 2 });
    const items: WalkItem[] = await cache.walk();

    assert.equal(cache.root, dir);
    assert.deepEqual(items.map((item) => item.rel), ["x/y.json"]);
    assert.equal((await cache.stat("x/y.json"))?.size, 2);
  });
});

Deno.test("a relative root is resolved against the working directory", () => {
  const cache = new DenoCache("some/relative/dir/");
  assert.equal(cache.root, `${Deno.cwd()}/some/relative/dir`);
});

Deno.test("errors are Error instances carrying the host error fields", async () => {
  await withTempDir(async (dir) => {
    const error = await new DenoCache(dir).stat("../x").catch((thrown) => thrown);
    assert.ok(error instanceof CacheError);
    assert.ok(error instanceof Error);
    assert.equal(error.kind, "InvalidKey");
  });
});
