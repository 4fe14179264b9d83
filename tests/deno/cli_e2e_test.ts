// The CLI as a user runs it: separate `deno` processes syncing two real cache directories through a file:// store.
import assert from "node:assert/strict";
import { join } from "node:path";

const cli = new URL("../../js/cli.ts", import.meta.url).pathname;
const config = new URL("../../pkg.json", import.meta.url).pathname;

async function marsh(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const flags = ["--allow-read", "--allow-write", "--allow-env", "--allow-net", "--allow-sys"];
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", config, "--quiet", ...flags, cli, ...args],
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await command.output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

async function withDemo(test: (paths: { store: string; a: string; b: string }) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "marsh-cli-test-" });
  try {
    await test({ store: `file://${join(root, "bucket")}`, a: join(root, "a"), b: join(root, "b") });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("cli: two caches converge through a file store, with JSON reports and fast paths", async () => {
  await withDemo(async ({ store, a, b }) => {
    await Deno.mkdir(join(a, "data"), { recursive: true });
    assert.equal((await marsh("mark-dirty", "--store", store, "--cache", a)).code, 0);
    await Deno.writeTextFile(join(a, "data", "one.json"), "1");
    await Deno.writeTextFile(join(a, "two.json"), "22");

    const first = await marsh("sync", "--store", store, "--cache", a, "--json");
    assert.equal(first.code, 0, first.stderr);
    assert.equal(JSON.parse(first.stdout).push.uploaded, 2);

    const second = await marsh("sync", "--store", store, "--cache", b, "--json");
    assert.equal(JSON.parse(second.stdout).pull.downloaded, 2);
    assert.equal(await Deno.readTextFile(join(b, "data", "one.json")), "1");

    const again = JSON.parse((await marsh("sync", "--store", store, "--cache", b, "--json")).stdout);
    assert.equal(again.pull.fastPath, true);
    assert.equal(again.push.fastPath, true);

    const status = JSON.parse((await marsh("status", "--store", store, "--cache", b, "--json")).stdout);
    assert.equal(status.pullFastPath, true);
    assert.equal(status.locallyDirty, false);
    assert.ok(status.remoteIndexSize > 0);
  });
});

Deno.test("cli: --dry-run prints the plan and changes nothing", async () => {
  await withDemo(async ({ store, a, b }) => {
    await marsh("mark-dirty", "--store", store, "--cache", a);
    await Deno.writeTextFile(join(a, "new.json"), "x");
    await marsh("push", "--store", store, "--cache", a);

    const planned = await marsh("pull", "--dry-run", "--store", store, "--cache", b);

    assert.equal(planned.code, 0, planned.stderr);
    assert.match(planned.stdout, /would download 1 file\(s\):\n {2}new\.json/);
    await assert.rejects(Deno.stat(join(b, "new.json")));
  });
});

Deno.test("cli: exit codes for usage errors and a missing lock", async () => {
  await withDemo(async ({ store }) => {
    assert.equal((await marsh("frobnicate")).code, 2);
    assert.equal((await marsh("sync", "--cache", "/tmp/x")).code, 2, "--store is required");
    const lock = await marsh("lock", "status", "--store", store, "--json");
    assert.equal(lock.code, 0, lock.stderr);
    assert.equal(lock.stdout.trim(), "null");
    assert.equal((await marsh("lock", "release", "--force", "--store", store)).code, 5);
    assert.equal((await marsh("lock", "release", "--store", store)).code, 2, "--force is required");
    const version = await marsh("version");
    assert.match(version.stdout, /^marsh \d+\.\d+\.\d+/);
  });
});

Deno.test("cli: mark-dirty --path then a deletion propagates to the other cache, which does not resurrect it", async () => {
  await withDemo(async ({ store, a, b }) => {
    await marsh("mark-dirty", "--store", store, "--cache", a);
    await Deno.writeTextFile(join(a, "gone.json"), "g");
    await Deno.writeTextFile(join(a, "kept.json"), "k");
    assert.equal((await marsh("sync", "--store", store, "--cache", a)).code, 0);
    assert.equal((await marsh("sync", "--store", store, "--cache", b)).code, 0);

    assert.equal((await marsh("mark-dirty", "--path", "gone.json", "--store", store, "--cache", a)).code, 0);
    const marked = JSON.parse((await marsh("status", "--store", store, "--cache", a, "--json")).stdout);
    assert.equal(marked.markedPaths, 1);
    await Deno.remove(join(a, "gone.json"));
    const pushed = await marsh("push", "--store", store, "--cache", a);
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.match(pushed.stdout, /push: uploaded 0 file\(s\), deleted 1; index updated; only the marked paths/);

    const pulled = await marsh("pull", "--store", store, "--cache", b);
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.match(pulled.stdout, /removed 1 file\(s\) deleted in the bucket/);
    await assert.rejects(Deno.stat(join(b, "gone.json")));
    await marsh("mark-dirty", "--store", store, "--cache", b);
    const again = JSON.parse((await marsh("sync", "--store", store, "--cache", b, "--json")).stdout);
    assert.deepEqual([again.pull.downloaded, again.push.uploaded, again.push.deleted], [0, 0, []]);
    const fresh = JSON.parse((await marsh("pull", "--store", store, "--cache", `${a}-fresh`, "--json")).stdout);
    assert.equal(fresh.pull.downloaded, 1, "only kept.json is left in the bucket");
    await Deno.remove(`${a}-fresh`, { recursive: true });
  });
});

Deno.test("cli: a same-file edit ends with exit 3, status lists it, resolve --keep-local makes it win", async () => {
  await withDemo(async ({ store, a, b }) => {
    await marsh("mark-dirty", "--store", store, "--cache", a);
    await Deno.writeTextFile(join(a, "doc.json"), "base");
    await marsh("push", "--store", store, "--cache", a);
    await marsh("pull", "--store", store, "--cache", b);
    await marsh("mark-dirty", "--path", "doc.json", "--store", store, "--cache", a);
    await Deno.writeTextFile(join(a, "doc.json"), "from a");
    assert.equal((await marsh("push", "--store", store, "--cache", a)).code, 0);
    await marsh("mark-dirty", "--path", "doc.json", "--store", store, "--cache", b);
    await Deno.writeTextFile(join(b, "doc.json"), "from b!");

    const refused = await marsh("sync", "--store", store, "--cache", b, "--json");
    assert.equal(refused.code, 3, refused.stderr);
    const report = JSON.parse(refused.stdout);
    assert.deepEqual(report.pull.conflicts, [{ rel: "doc.json", kind: "both-changed" }]);
    assert.equal(report.error.kind, "Conflicts");
    assert.equal(await Deno.readTextFile(join(b, "doc.json")), "from b!");
    const status = await marsh("status", "--store", store, "--cache", b);
    assert.match(status.stdout, /open conflicts: +1:\n +doc\.json \(changed here and in the bucket\)/);
    assert.equal((await marsh("resolve", "doc.json", "--store", store, "--cache", b)).code, 2, "a side is required");

    const resolved = await marsh("resolve", "doc.json", "--keep-local", "--store", store, "--cache", b);
    assert.equal(resolved.code, 0, resolved.stderr);
    assert.equal((await marsh("push", "--store", store, "--cache", b)).code, 0);
    const pulled = JSON.parse((await marsh("pull", "--store", store, "--cache", a, "--json")).stdout);
    assert.equal(pulled.pull.downloaded, 1);
    assert.equal(await Deno.readTextFile(join(a, "doc.json")), "from b!");
  });
});

Deno.test("cli: a mass deletion is refused with the count; --restore brings the files back; --max-deletions", async () => {
  await withDemo(async ({ store, a }) => {
    await marsh("mark-dirty", "--store", store, "--cache", a);
    for (const name of ["1", "2", "3"]) await Deno.writeTextFile(join(a, `${name}.json`), name);
    await marsh("push", "--store", store, "--cache", a);
    await marsh("mark-dirty", "--store", store, "--cache", a);
    for (const name of ["1", "2", "3"]) await Deno.remove(join(a, `${name}.json`));

    const refused = await marsh("push", "--max-deletions", "2", "--store", store, "--cache", a);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /3 files are gone from the cache .* more than the 2/);
    assert.equal((await marsh("push", "--max-deletions", "x", "--store", store, "--cache", a)).code, 2);
    const restored = JSON.parse((await marsh("pull", "--restore", "--store", store, "--cache", a, "--json")).stdout);
    assert.equal(restored.pull.downloaded, 3);
    for (const name of ["1", "2", "3"]) await Deno.remove(join(a, `${name}.json`));
    const pushed = JSON.parse(
      (await marsh("push", "--max-deletions", "3", "--store", store, "--cache", a, "--json")).stdout,
    );
    assert.deepEqual(pushed.push.deleted, ["1.json", "2.json", "3.json"]);
  });
});

Deno.test("cli: push --preview counts and writes nothing; --namespace syncs a namespace; namespace claims", async () => {
  await withDemo(async ({ store, a, b }) => {
    await marsh("mark-dirty", "--store", store, "--cache", a);
    await Deno.writeTextFile(join(a, "p.json"), "p");
    const preview = await marsh("push", "--preview", "--store", store, "--cache", a, "--json");
    assert.equal(preview.code, 0, preview.stderr);
    assert.deepEqual(JSON.parse(preview.stdout).preview, { total: 1, new: 1, changed: 0, deleted: 0 });
    const nothing = JSON.parse((await marsh("pull", "--store", store, "--cache", b, "--json")).stdout);
    assert.equal(nothing.pull.downloaded, 0, "a preview uploads nothing");
    assert.equal((await marsh("pull", "--preview", "--store", store, "--cache", a)).code, 2, "a push option");

    const registered = await marsh("namespace", "register", "team-a", "--repo-id", "repo-1", "--store", store);
    assert.equal(registered.code, 0, registered.stderr);
    const taken = await marsh("namespace", "register", "team-a", "--repo-id", "repo-2", "--store", store);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /claimed by repository "repo-1"/);
    const listed = await marsh("namespace", "list", "--store", store, "--json");
    assert.deepEqual(JSON.parse(listed.stdout), { namespaces: ["team-a"] });

    await Deno.mkdir(join(a, "team-a", "data"), { recursive: true });
    const ns = ["--namespace", "team-a", "--store", store];
    await marsh("mark-dirty", "--path", "team-a/data/n.json", ...ns, "--cache", a);
    await Deno.writeTextFile(join(a, "team-a", "data", "n.json"), "in team-a");
    const pushed = JSON.parse((await marsh("push", ...ns, "--cache", a, "--json")).stdout);
    assert.equal(pushed.push.uploaded, 1);
    const pulled = JSON.parse((await marsh("pull", ...ns, "--cache", b, "--json")).stdout);
    assert.equal(pulled.pull.downloaded, 1);
    assert.equal(await Deno.readTextFile(join(b, "team-a", "data", "n.json")), "in team-a");
    const root = JSON.parse((await marsh("pull", "--store", store, "--cache", `${b}-root`, "--json")).stdout);
    assert.equal(root.pull.downloaded, 0, "the root index does not list the namespace's file");
    assert.equal((await marsh("push", "--namespace", "../x", "--store", store, "--cache", a)).code, 2);
  });
});
