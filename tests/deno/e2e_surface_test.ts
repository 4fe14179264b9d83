// Today's swamp surface on pull, end to end: lazy hydration (`metadataOnly`, `hydrateFile`, `fetchContent`), `subdirs`
// and scoped sync (`context.models`), through the service swamp builds on both emulators, and through the `marsh`
// command line on a `file://` store. Run under scripts/with-emulators.sh: without the emulator endpoints the emulator
// tests fail.
import assert from "node:assert/strict";
import { join } from "node:path";

import type { MarshSyncError } from "../../js/host.ts";
import { main } from "../../js/cli.ts";
import type { MarshSyncService } from "../../js/sync_service.ts";
import { dataFiles, decode, e2eTest, readCacheFile, type Target, writeCacheFile } from "./support/e2e_support.ts";

const RAW = "data/aws/ec2/i-1/state/1/raw";
const META = "data/aws/ec2/i-1/state/1/meta.yaml";
const OTHER_RAW = "data/aws/ec2/i-2/state/1/raw";
const OTHER_META = "data/aws/ec2/i-2/state/1/meta.yaml";
const WORKFLOW = "workflows-evaluated/w.yaml";
const FILES: Record<string, string> = {
  [RAW]: "raw-1",
  [META]: "meta-1",
  [OTHER_RAW]: "raw-2",
  [OTHER_META]: "meta-2",
  [WORKFLOW]: "wf",
};

/** A bucket holding FILES (pushed from a cache of its own) and an empty cache to pull into, as swamp's service. */
async function populated(t: Target): Promise<{ dir: string; reader: MarshSyncService }> {
  const writerDir = await t.tempDir("writer");
  const writer = t.service(writerDir);
  await writer.markDirty();
  for (const [rel, content] of Object.entries(FILES)) await writeCacheFile(writerDir, rel, content);
  assert.equal(await writer.pushChanged(), Object.keys(FILES).length);
  const dir = await t.tempDir("reader");
  return { dir, reader: t.service(dir) as MarshSyncService };
}

async function isDirectory(path: string): Promise<boolean> {
  return await Deno.stat(path).then((info) => info.isDirectory, () => false);
}

e2eTest("a metadata-only pull leaves content files out; hydrateFile and fetchContent bring them", async (t) => {
  const { dir, reader } = await populated(t);

  assert.equal(await reader.pullChanged({ metadataOnly: true }), 3);
  assert.deepEqual(await dataFiles(dir), [META, OTHER_META, WORKFLOW].sort());
  assert.ok(await isDirectory(join(dir, "data/aws/ec2/i-1/state/1")), "the content file's folder is there");

  const bytes = await reader.fetchContent(OTHER_RAW);
  assert.equal(bytes === null ? null : decode(bytes), "raw-2");
  assert.equal(await reader.fetchContent("data/aws/ec2/i-9/state/1/raw"), null);
  assert.equal(await readCacheFile(dir, OTHER_RAW), null, "fetchContent leaves the cache alone");
  for (const bad of ["/etc/passwd", "../outside", "data/../../x"]) {
    await assert.rejects(reader.fetchContent(bad), (error: MarshSyncError) => {
      assert.equal(error.kind, "InvalidArgument");
      assert.ok(error.message.includes(JSON.stringify(bad)), error.message);
      return true;
    });
  }

  assert.equal(await reader.hydrateFile(RAW), true);
  assert.equal(await readCacheFile(dir, RAW), "raw-1");
  assert.equal(await reader.hydrateFile("data/aws/ec2/i-9/state/1/raw"), false);

  // A push never takes the file still left out for a deletion; a full pull then brings it.
  await reader.markDirty();
  assert.equal(await reader.pushChanged(), 0);
  assert.ok(await t.rawGet(OTHER_RAW), "still in the bucket");
  assert.equal(await reader.pullChanged(), 1);
  assert.equal(await readCacheFile(dir, OTHER_RAW), "raw-2");
});

e2eTest("a scoped pull takes only its models' files; a subdirs pull only its folders", async (t) => {
  const { dir, reader } = await populated(t);

  assert.equal(await reader.pullChanged({ context: { models: [{ modelType: "aws/ec2", modelId: "i-1" }] } }), 2);
  assert.deepEqual(await dataFiles(dir), [META, RAW].sort());
  assert.equal(await reader.pullChanged({ subdirs: ["workflows-evaluated"] }), 1);
  assert.deepEqual(await dataFiles(dir), [META, RAW, WORKFLOW].sort());
  // Neither recorded a verified token: the full pull compares everything and takes the rest.
  assert.equal(await reader.pullChanged(), 2);
  await assert.rejects(reader.pullChanged({ subdirs: ["a/b"] }), { kind: "InvalidArgument" });
});

Deno.test("file://: marsh pull --metadata-only, hydrate, pull --model and pull --subdir", async () => {
  const root = await Deno.makeTempDir({ prefix: "marsh-surface-" });
  const [log, error] = [console.log, console.error];
  try {
    console.log = console.error = () => {};
    const [bucket, writer, reader] = ["bucket", "writer", "reader"].map((name) => join(root, name));
    const store = ["--store", `file://${bucket}`];
    await Deno.mkdir(bucket);
    assert.equal(await main(["mark-dirty", ...store, "--cache", writer]), 0);
    for (const [rel, content] of Object.entries(FILES)) await writeCacheFile(writer, rel, content);
    assert.equal(await main(["push", ...store, "--cache", writer]), 0);

    assert.equal(await main(["pull", "--metadata-only", "--json", ...store, "--cache", reader]), 0);
    assert.equal(await readCacheFile(reader, RAW), null);
    assert.ok(await isDirectory(join(reader, "data/aws/ec2/i-1/state/1")));
    assert.equal(await main(["hydrate", RAW, "--json", ...store, "--cache", reader]), 0);
    assert.equal(await readCacheFile(reader, RAW), "raw-1");
    assert.equal(await main(["hydrate", "data/x/y/z/raw", ...store, "--cache", reader]), 5);

    const scoped = join(root, "scoped");
    assert.equal(await main(["pull", "--model", "aws/ec2/i-2", "--json", ...store, "--cache", scoped]), 0);
    assert.deepEqual(await dataFiles(scoped), [OTHER_META, OTHER_RAW].sort());
    assert.equal(await main(["pull", "--subdir", "workflows-evaluated", ...store, "--cache", scoped]), 0);
    assert.equal(await readCacheFile(scoped, WORKFLOW), "wf");
    assert.equal(await main(["push", "--model", "aws/ec2/i-2", ...store, "--cache", scoped]), 2);
  } finally {
    [console.log, console.error] = [log, error];
    await Deno.remove(root, { recursive: true });
  }
});
