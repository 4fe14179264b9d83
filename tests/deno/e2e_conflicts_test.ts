// Deletions, per-path marks and same-file conflicts end to end: two caches on one bucket, through the swamp entry points
// (`datastore.createProvider(config)` → `createSyncService`), the wasm `SyncService` where a report or an option is
// needed, and the `marsh` command line as a separate process. Every scenario runs on both emulators and on both index
// layouts: a new bucket (format 2, shards) and a bucket that already holds a format-1 monolith. Run under
// scripts/with-emulators.sh: without the emulator endpoints every test fails.
import assert from "node:assert/strict";
import { join } from "node:path";

import { DenoCache } from "../../js/cache.ts";
import { makeEnv } from "../../js/env.ts";
import type { MarshSyncError, PullReport, PushReport, SyncOptions, SyncStatus } from "../../js/host.ts";
import { MarshSyncService } from "../../js/sync_service.ts";
import { SyncService } from "../../js/wasm.ts";
import {
  dataFiles,
  decode,
  e2eTest,
  emulatorEndpoint,
  INDEX_KEY,
  makeMonolithBucket,
  META_KEY,
  readCacheFile,
  remoteCommit,
  remoteIndex,
  type Target,
  writeCacheFile,
} from "./support/e2e_support.ts";

type Layout = "format 2" | "format 1";
const LAYOUTS: Layout[] = ["format 2", "format 1"];

/** One e2eTest per layout: the bucket is prepared, and at the end it must still have that layout. */
function layoutTest(name: string, body: (t: Target, layout: Layout) => Promise<void>): void {
  for (const layout of LAYOUTS) {
    e2eTest(`${layout}: ${name}`, async (t) => {
      if (layout === "format 1") await makeMonolithBucket(t);
      await body(t, layout);
      const commit = await remoteCommit(t);
      assert.equal(commit.format, layout === "format 2" ? 2 : 1, "the bucket kept its layout");
      const other = await t.rawGet(layout === "format 2" ? INDEX_KEY : META_KEY);
      assert.equal(other, null, "no object of the other layout was written");
    });
  }
}

/** The engine itself on `cacheDir`, for its reports and options (swamp's surface answers counts only). */
function engine(t: Target, cacheDir: string, options?: SyncOptions): SyncService {
  return new SyncService(t.store(), new DenoCache(cacheDir), options);
}

async function rejection(promise: Promise<unknown>): Promise<MarshSyncError> {
  const error = await promise.then(
    (value) => assert.fail(`expected a rejection, got ${JSON.stringify(value)}`),
    (thrown: unknown) => thrown,
  );
  assert.ok(error instanceof Error, `expected an Error, got ${error}`);
  return error as MarshSyncError;
}

async function objectText(t: Target, rel: string): Promise<string | null> {
  const found = await t.rawGet(rel);
  return found === null ? null : decode(found.bytes);
}

/** Two caches that both hold `files`, written and pushed by A, pulled by B. */
async function twoCaches(t: Target, files: Record<string, string>) {
  const [dirA, dirB] = [await t.tempDir("a"), await t.tempDir("b")];
  const a = t.service(dirA);
  await a.markDirty();
  for (const [rel, content] of Object.entries(files)) await writeCacheFile(dirA, rel, content);
  assert.equal(await a.pushChanged(), Object.keys(files).length);
  const b = t.service(dirB);
  assert.equal(await b.pullChanged(), Object.keys(files).length);
  return { dirA, dirB, a, b };
}

// ---- The command line against the emulators ----

const cli = new URL("../../js/cli.ts", import.meta.url).pathname;
const config = new URL("../../pkg.json", import.meta.url).pathname;

/** `--store` and the store options that reach this test's bucket and prefix. */
function storeArgs(t: Target): string[] {
  return t.backend === "s3"
    ? [
      "--store",
      `s3://${t.bucket}/${t.prefix}`,
      "--endpoint",
      emulatorEndpoint("s3"),
      "--force-path-style",
      "--region",
      "us-east-1",
    ]
    : ["--store", `gs://${t.bucket}/${t.prefix}`, "--endpoint", emulatorEndpoint("gcs")];
}

/** `marsh <args…>` as a separate process (dummy AWS credentials come with the environment, set by newTarget). */
async function marsh(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const flags = ["--allow-read", "--allow-write", "--allow-env", "--allow-net", "--allow-sys"];
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", config, "--quiet", ...flags, cli, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code, stdout: new TextDecoder().decode(stdout), stderr: new TextDecoder().decode(stderr) };
}

// ---- (a) deletions propagate, without zombies ----

layoutTest("a file deleted and pushed on A is removed by B's pull and not resurrected by B's push", async (t) => {
  const { dirA, dirB, a, b } = await twoCaches(t, { "data/gone.json": '{"gone":1}', "data/kept.json": '{"kept":1}' });
  const c = t.service(await t.tempDir("c"));
  assert.equal(await c.pullChanged(), 2);

  await a.markDirty({ relPath: "data/gone.json" });
  await Deno.remove(join(dirA, "data/gone.json"));
  assert.equal(await a.pushChanged(), undefined, "a push that only deleted answers unknown, not 0");
  assert.equal(await t.rawGet("data/gone.json"), null, "the object is deleted");
  assert.deepEqual(Object.keys((await remoteIndex(t)).entries), ["data/kept.json"], "and its entry");

  const pulled: PullReport = await engine(t, dirB).pullChanged(makeEnv());
  assert.deepEqual(pulled.removed, ["data/gone.json"], "B's pull removes its unchanged copy");
  assert.equal(pulled.downloaded, 0, "a removal is not a download");
  assert.deepEqual(await dataFiles(dirB), ["data/kept.json"]);
  // Through swamp's surface a pull that only removed files is "unknown", never 0 ("nothing changed": swamp would keep
  // the deleted file in its catalog).
  assert.equal(await c.pullChanged(), undefined);

  // B then pushes after a bare mark and a new file: the deleted file must not come back from B's view or index copy.
  await b.markDirty();
  await writeCacheFile(dirB, "data/new.json", '{"new":1}');
  assert.equal(await b.pushChanged(), 1);
  assert.equal(await t.rawGet("data/gone.json"), null, "no zombie object");
  assert.deepEqual(Object.keys((await remoteIndex(t)).entries).sort(), ["data/kept.json", "data/new.json"]);
  assert.equal(await a.pullChanged(), 1, "A gets B's new file");
  assert.equal(await readCacheFile(dirA, "data/gone.json"), null, "and not the deleted one");
});

// ---- (c) a marked deletion ----

layoutTest(
  "markDirty({relPath}) + delete + push deletes the object and the index entry, looking at nothing else",
  async (t) => {
    const { dirA } = await twoCaches(t, { "data/x.json": "x", "data/y.json": "yy", "z.md": "zzz" });
    // An unmarked edit elsewhere: a push of marks only must not see it.
    await writeCacheFile(dirA, "z.md", "unmarked edit");
    const service = engine(t, dirA);
    await service.markDirty(makeEnv(), "data/x.json");
    await Deno.remove(join(dirA, "data/x.json"));
    assert.equal((await service.status(makeEnv())).markedPaths, 1);

    const pushed: PushReport = await service.pushChanged(makeEnv());

    assert.deepEqual(pushed.deleted, ["data/x.json"]);
    assert.equal(pushed.uploaded, 0, "the unmarked edit of z.md was not looked at");
    assert.equal(pushed.markedOnly, true);
    assert.equal(pushed.marksCleared, 1);
    assert.equal(await t.rawGet("data/x.json"), null);
    const index = await remoteIndex(t);
    assert.deepEqual(Object.keys(index.entries).sort(), ["data/y.json", "z.md"]);
    assert.equal(await objectText(t, "z.md"), "zzz");
    assert.equal((await service.status(makeEnv())).markedPaths, 0, "the handled mark is gone");
    assert.deepEqual(await Array.fromAsync(Deno.readDir(join(dirA, ".marsh-marks"))), []);
  },
);

// ---- (d) the mass-deletion guard ----

layoutTest(
  "a mass deletion after a bare mark is refused naming the count; --restore brings the files back",
  async (t) => {
    const files = Object.fromEntries(
      Array.from({ length: 26 }, (_, i) => [`data/f${String(i).padStart(2, "0")}`, `${i}`]),
    );
    const { dirB, b } = await twoCaches(t, files);
    await b.markDirty();
    for (const rel of Object.keys(files)) await Deno.remove(join(dirB, rel));

    const error = await rejection(b.pushChanged());

    assert.equal(error.kind, "MassDeletion", error.message);
    assert.equal(error.count, 26);
    assert.equal(error.limit, 25);
    assert.match(error.message, /26 files are gone from the cache/);
    assert.equal(Object.keys((await remoteIndex(t)).entries).length, 26, "nothing was deleted from the index");
    assert.equal(await objectText(t, "data/f00"), "0", "nor from the bucket");

    const plain = await engine(t, dirB).pullChanged(makeEnv());
    assert.equal(plain.downloaded, 0, "a plain pull does not undo the deletions a bare mark covers");
    assert.equal(await readCacheFile(dirB, "data/f25"), null);
    const restored = await engine(t, dirB, { restoreDeleted: true }).pullChanged(makeEnv());
    assert.equal(restored.downloaded, 26, "the restore pull brings every file back");
    assert.equal(await readCacheFile(dirB, "data/f25"), "25");
    // Raising the limit lets a push through: with 26 files allowed, the deletions go out.
    await b.markDirty();
    for (const rel of Object.keys(files)) await Deno.remove(join(dirB, rel));
    const pushed = await engine(t, dirB, { maxInferredDeletions: 26 }).pushChanged(makeEnv());
    assert.equal(pushed.deleted.length, 26);
    assert.deepEqual((await remoteIndex(t)).entries, {});
  },
);

// ---- (b) same-file edits on two machines ----

/** A and B both edit `data/doc.json` after a common sync: A pushes first, B's push must refuse to overwrite. */
async function conflicted(t: Target) {
  const caches = await twoCaches(t, { "data/doc.json": '{"v":0}', "data/other.json": '{"o":0}' });
  const { dirA, dirB, a, b } = caches;
  await a.markDirty({ relPath: "data/doc.json" });
  await writeCacheFile(dirA, "data/doc.json", '{"v":"A"}');
  assert.equal(await a.pushChanged(), 1);
  await b.markDirty({ relPath: "data/doc.json" });
  await writeCacheFile(dirB, "data/doc.json", '{"v":"B, longer"}');
  await b.markDirty({ relPath: "data/other.json" });
  await writeCacheFile(dirB, "data/other.json", '{"o":"B"}');

  const error = await rejection(b.pushChanged());

  assert.equal(error.kind, "Conflicts", error.message);
  assert.match(error.message, /data\/doc\.json/, "the error names the path");
  assert.deepEqual(error.conflicts, [{ rel: "data/doc.json", kind: "both-changed" }]);
  assert.equal(error.transferred, 1, "everything else was pushed");
  assert.equal(await objectText(t, "data/other.json"), '{"o":"B"}');
  assert.equal(await objectText(t, "data/doc.json"), '{"v":"A"}', "A's version stays in the bucket");
  assert.equal(await readCacheFile(dirB, "data/doc.json"), '{"v":"B, longer"}', "B's version stays on B's disk");

  // A pull on B reports the conflict without failing and without touching either side.
  const warnings: string[] = [];
  const swampB = new MarshSyncService(t.store(), new DenoCache(dirB), {
    scope: "test",
    warn: (message) => warnings.push(message),
  });
  assert.equal(await swampB.pullChanged(), 0);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /data\/doc\.json \(both-changed\)/);
  assert.equal(await readCacheFile(dirB, "data/doc.json"), '{"v":"B, longer"}');

  // The command line: status lists the conflict, a push ends with exit 3.
  const status = await marsh("status", ...storeArgs(t), "--cache", dirB, "--json");
  assert.equal(status.code, 0, status.stderr);
  assert.deepEqual((JSON.parse(status.stdout) as SyncStatus).conflicts, [{
    rel: "data/doc.json",
    kind: "both-changed",
  }]);
  const text = await marsh("status", ...storeArgs(t), "--cache", dirB);
  assert.match(text.stdout, /open conflicts: +1:\n +data\/doc\.json \(changed here and in the bucket\)/);
  const push = await marsh("push", ...storeArgs(t), "--cache", dirB);
  assert.equal(push.code, 3, `${push.stdout}\n${push.stderr}`);
  assert.match(push.stdout, /data\/doc\.json/);
  const json = await marsh("push", ...storeArgs(t), "--cache", dirB, "--json");
  assert.equal(json.code, 3);
  assert.deepEqual(JSON.parse(json.stdout).error.conflicts, [{ rel: "data/doc.json", kind: "both-changed" }]);
  assert.equal(await objectText(t, "data/doc.json"), '{"v":"A"}', "still A's after the refused pushes");
  return caches;
}

layoutTest(
  "both edit a file: B's push fails naming it; resolve --keep-local then push makes B's bytes the bucket's",
  async (t) => {
    const { dirA, dirB, a } = await conflicted(t);

    const resolved = await marsh(
      "resolve",
      "data/doc.json",
      "--keep-local",
      ...storeArgs(t),
      "--cache",
      dirB,
      "--json",
    );
    assert.equal(resolved.code, 0, resolved.stderr);
    assert.deepEqual(JSON.parse(resolved.stdout), {
      rel: "data/doc.json",
      kept: "local",
      downloaded: false,
      removedLocal: false,
      markedForPush: true,
    });
    const push = await marsh("push", ...storeArgs(t), "--cache", dirB, "--json");
    assert.equal(push.code, 0, `${push.stdout}\n${push.stderr}`);
    assert.equal(JSON.parse(push.stdout).push.uploaded, 1);

    assert.equal(await objectText(t, "data/doc.json"), '{"v":"B, longer"}', "B's bytes are the bucket's");
    assert.equal((await remoteIndex(t)).entries["data/doc.json"].size, '{"v":"B, longer"}'.length);
    const status = JSON.parse((await marsh("status", ...storeArgs(t), "--cache", dirB, "--json")).stdout);
    assert.deepEqual(status.conflicts, []);
    assert.equal(await a.pullChanged(), 2, "A takes B's doc and other");
    assert.equal(await readCacheFile(dirA, "data/doc.json"), '{"v":"B, longer"}');
    // Resolving a path that is not in conflict is refused (exit 5) and changes nothing.
    const again = await marsh("resolve", "data/doc.json", "--keep-remote", ...storeArgs(t), "--cache", dirB);
    assert.equal(again.code, 5, again.stderr);
    assert.equal(await readCacheFile(dirB, "data/doc.json"), '{"v":"B, longer"}');
  },
);

layoutTest("both edit a file: resolve --keep-remote takes A's bytes onto B and a push changes nothing", async (t) => {
  const { dirB } = await conflicted(t);

  const resolved = await marsh("resolve", "data/doc.json", "--keep-remote", ...storeArgs(t), "--cache", dirB);
  assert.equal(resolved.code, 0, resolved.stderr);
  assert.match(resolved.stdout, /kept the bucket's data\/doc\.json: downloaded/);
  assert.equal(await readCacheFile(dirB, "data/doc.json"), '{"v":"A"}', "A's bytes on B's disk");

  const push = await marsh("push", ...storeArgs(t), "--cache", dirB, "--json");
  assert.equal(push.code, 0, `${push.stdout}\n${push.stderr}`);
  assert.equal(await objectText(t, "data/doc.json"), '{"v":"A"}');
  const status = JSON.parse((await marsh("status", ...storeArgs(t), "--cache", dirB, "--json")).stdout);
  assert.deepEqual(status.conflicts, []);
  assert.equal(status.markedPaths, 0);
});
