// The stat worker (js/stat_paths.ts): `DenoCache.statMany` of many paths splits them between this thread and a worker.
// The answers must be the ones this thread gives alone, failures included, also when the worker dies mid-request; and
// the worker must never keep a process alive.
import assert from "node:assert/strict";
import { DenoCache } from "../../js/cache.ts";
import { StatWorker } from "../../js/stat_paths.ts";

async function withTree(test: (root: string, rels: string[]) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "marsh-stat-worker-test-" });
  try {
    const root = `${dir}/cache`;
    await Deno.mkdir(`${dir}/outside`);
    await Deno.writeTextFile(`${dir}/outside/x.json`, "outside");
    const rels: string[] = [];
    // Every kind of answer, repeated so that each half of the split meets each kind; long names make the request
    // large enough for the worker.
    for (let i = 0; i < 150; i++) {
      const folder = `folder-${String(i).padStart(4, "0")}-${"n".repeat(40)}`;
      await Deno.mkdir(`${root}/${folder}/b/sub`, { recursive: true });
      await Deno.writeTextFile(`${root}/${folder}/b/c.json`, "c".repeat(i));
      await Deno.writeTextFile(`${root}/${folder}/f.json`, "f");
      await Deno.symlink(`${dir}/outside`, `${root}/${folder}/link`);
      rels.push(
        `${folder}/b/c.json`,
        `${folder}/b/missing.json`,
        `${folder}/b/sub`,
        `${folder}/f.json`,
        `${folder}/f.json/under-a-file`,
        `${folder}/link`,
        `${folder}/link/x.json`,
      );
    }
    rels.push("nowhere/x/y.json");
    await test(root, rels);
  } finally {
    await StatWorker.stopForTests();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The answers made on this thread alone. */
function alone(root: string, rels: string[]) {
  return new DenoCache(root, { statWorker: false }).statMany(rels.join("\0"));
}

async function workerStarted(): Promise<void> {
  assert.ok(await StatWorker.startedForTests(), "the stat worker did not start");
}

Deno.test("statMany of many paths gives the same answers split with the worker as on this thread alone", async () => {
  await withTree(async (root, rels) => {
    const expected = await alone(root, rels);
    const kinds = new Set(expected.kinds);
    assert.deepEqual([...kinds].sort(), [0, 1, 2], "the tree must give absent, file and symlink answers");
    await workerStarted();
    const before = StatWorker.answered;

    const found = await new DenoCache(root, { statWorkerAfter: 0 }).statMany(rels.join("\0"));

    assert.equal(StatWorker.answered, before + 1, "the worker answered half of the paths");
    assert.deepEqual(found, expected);
  });
});

Deno.test("a failure in the worker's half names its path, and the first failure in path order wins", async () => {
  await withTree(async (root, rels) => {
    const fifo = `${rels[rels.length - 2].split("/")[0]}/a-fifo`;
    const made = await new Deno.Command("mkfifo", { args: [`${root}/${fifo}`] }).output();
    assert.ok(made.success, new TextDecoder().decode(made.stderr));
    await workerStarted();
    const cache = new DenoCache(root, { statWorkerAfter: 0 });
    const before = StatWorker.answered;

    await assert.rejects(cache.statMany([...rels, fifo].join("\0")), (error: Error & { kind: string; key: string }) => {
      assert.equal(error.kind, "Io");
      assert.equal(error.key, fifo);
      assert.match(error.message, /not a regular file, directory or symlink/);
      return true;
    });
    await assert.rejects(cache.statMany([...rels, "a/../b"].join("\0")), { kind: "InvalidKey", key: "a/../b" });
    assert.equal(StatWorker.answered, before + 2, "both failures came from the worker's half");
    // A bad path in this thread's half is reported, not the FIFO the worker meets later.
    await assert.rejects(cache.statMany(["/abs", ...rels, fifo].join("\0")), { kind: "InvalidKey", key: "/abs" });
  });
});

Deno.test("statMany gives the same answers when the worker dies while it has the second half", async () => {
  await withTree(async (root, rels) => {
    const expected = await alone(root, rels);
    await workerStarted();
    const before = StatWorker.answered;

    const asked = new DenoCache(root, { statWorkerAfter: 0 }).statMany(rels.join("\0"));
    await StatWorker.stopForTests(); // the request is on its way to the worker, which ends before it answers

    assert.deepEqual(await asked, expected);
    assert.equal(StatWorker.answered, before, "the worker answered nothing: this thread made every stat");
  });
});

Deno.test("a process that used the stat worker exits on its own", async () => {
  await withTree(async (root, rels) => {
    const program = `
      import { DenoCache } from ${JSON.stringify(new URL("../../js/cache.ts", import.meta.url).href)};
      import { StatWorker } from ${JSON.stringify(new URL("../../js/stat_paths.ts", import.meta.url).href)};
      if (!(await StatWorker.startedForTests())) throw new Error("no worker");
      const rels = ${JSON.stringify(rels.join("\0"))};
      const { kinds } = await new DenoCache(${JSON.stringify(root)}, { statWorkerAfter: 0 }).statMany(rels);
      console.log(JSON.stringify({ answered: StatWorker.answered, paths: kinds.length }));
    `;
    const started = performance.now();
    const child = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", program],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();

    assert.ok(child.success, new TextDecoder().decode(child.stderr));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(child.stdout)), { answered: 1, paths: rels.length });
    assert.ok(performance.now() - started < 30_000, "the child lingered after its work");
  });
});

Deno.test("the worker starts and answers from a bundle, as swamp bundles an extension", async () => {
  await withTree(async (root, rels) => {
    const scratch = await Deno.makeTempDir({ prefix: "marsh-stat-worker-bundle-" });
    try {
      // The worker runs functions from their source text: a bundler's renaming must leave that text working.
      const entry = `${scratch}/entry.ts`;
      await Deno.writeTextFile(
        entry,
        `export { DenoCache } from ${JSON.stringify(new URL("../../js/cache.ts", import.meta.url).href)};\n` +
          `export { StatWorker } from ${JSON.stringify(new URL("../../js/stat_paths.ts", import.meta.url).href)};\n`,
      );
      const out = `${scratch}/bundle.js`;
      const bundled = await new Deno.Command(Deno.execPath(), {
        args: ["bundle", "--no-lock", "--node-modules-dir=none", "--platform", "deno", "-o", out, entry],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(bundled.success, new TextDecoder().decode(bundled.stderr));
      const module = await import(new URL(`file://${out}`).href);
      const expected = await alone(root, rels);
      try {
        assert.ok(await module.StatWorker.startedForTests(), "the bundled worker did not start");
        const before = module.StatWorker.answered;

        const found = await new module.DenoCache(root, { statWorkerAfter: 0 }).statMany(rels.join("\0"));

        assert.equal(module.StatWorker.answered, before + 1, "the bundled worker answered half of the paths");
        assert.deepEqual(found, expected);
      } finally {
        await module.StatWorker.stopForTests();
      }
    } finally {
      await Deno.remove(scratch, { recursive: true });
    }
  });
});

Deno.test("a process stats on its own thread until it has asked for many paths", async () => {
  await withTree(async (root, rels) => {
    const expected = await alone(root, rels);
    await workerStarted();
    const joined = rels.join("\0");
    const before = StatWorker.answered;

    // Asked for less than the threshold so far: the worker, although running, is left alone.
    const found = await new DenoCache(root, { statWorkerAfter: Number.MAX_SAFE_INTEGER }).statMany(joined);
    assert.deepEqual(found, expected);
    assert.equal(StatWorker.answered, before);
    // Once the process has asked for that many characters of paths, it is used.
    await new DenoCache(root, { statWorkerAfter: joined.length }).statMany(joined);
    assert.equal(StatWorker.answered, before + 1);
  });
});
