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
