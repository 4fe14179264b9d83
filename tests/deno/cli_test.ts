import assert from "node:assert/strict";
import { EXIT, exitCodeFor } from "../../js/cli_exit.ts";
import { formatBytes, formatDuration, progressLine } from "../../js/cli_progress.ts";
import { openStore, UsageError } from "../../js/cli_store.ts";
import { parseArgs } from "../../js/cli.ts";

Deno.test("exit codes tell conflict, auth, not found, transient and partial failures apart", () => {
  assert.deepEqual(exitCodeFor({ name: "MarshError", kind: "IndexContended" }), EXIT.conflict);
  assert.deepEqual(exitCodeFor({ name: "LockTimeoutError", kind: "LockTimeout" }), EXIT.conflict);
  assert.deepEqual(
    exitCodeFor({ name: "MarshError", kind: "IndexUnreadable", causeKind: "Auth", status: 403 }),
    EXIT.auth,
  );
  assert.deepEqual(
    exitCodeFor({ name: "MarshError", kind: "IndexUnreadable", causeKind: "Transient" }),
    EXIT.transient,
  );
  assert.deepEqual(exitCodeFor({ kind: "NotFound" }), EXIT.notFound);
  assert.deepEqual(exitCodeFor({ kind: "Http", status: 404 }), EXIT.notFound);
  assert.deepEqual(exitCodeFor({ kind: "Files", failures: [{ kind: "Auth" }, { kind: "Auth" }] }), EXIT.auth);
  assert.deepEqual(exitCodeFor({ kind: "Files", failures: [{ kind: "Auth" }, { kind: "Transient" }] }), EXIT.partial);
  assert.deepEqual(exitCodeFor({ name: "AbortError" }), EXIT.aborted);
  assert.deepEqual(exitCodeFor(new UsageError("x")), EXIT.usage);
  assert.deepEqual(exitCodeFor(new Error("anything else")), EXIT.failure);
});

Deno.test("progress line shows files, bytes, rate and ETA", () => {
  const line = progressLine("pull", { files: 2, bytes: 2048 }, { files: 4, bytes: 4096 }, 2);
  assert.deepEqual(line, "pull  2/4 files  2.0 KB/4.0 KB  1.0 KB/s  ETA 2s");
  assert.deepEqual(formatBytes(512), "512 B");
  assert.deepEqual(formatBytes(5 * 1024 * 1024), "5.0 MB");
  assert.deepEqual(formatDuration(125), "2m05s");
  assert.deepEqual(formatDuration(Infinity), "?");
});

Deno.test("arguments: flags with values, inline values and booleans", () => {
  const parsed = parseArgs(["sync", "--store", "file:///tmp/b", "--cache=/tmp/c", "--json", "--dry-run"]);
  assert.deepEqual(parsed.words, ["sync"]);
  assert.deepEqual(parsed.flags.get("store"), "file:///tmp/b");
  assert.deepEqual(parsed.flags.get("cache"), "/tmp/c");
  assert.deepEqual(parsed.flags.get("json"), true);
  assert.deepEqual(parsed.flags.get("dry-run"), true);
  assert.throws(
    () => parseArgs(["sync", "--store"]),
    (e: unknown) => e instanceof UsageError && e.message.includes("--store needs a value"),
  );
});

Deno.test("store URLs: s3, gs and file schemes, with prefixes; anything else is a usage error", () => {
  const s3 = openStore("s3://my-bucket/team/repo/", { endpoint: "http://127.0.0.1:1", forcePathStyle: true });
  assert.deepEqual([s3.kind, s3.scope], ["s3", "s3://my-bucket/team/repo"]);
  const gs = openStore("gs://my-bucket", { endpoint: "http://127.0.0.1:1" });
  assert.deepEqual([gs.kind, gs.scope], ["gcs", "gs://my-bucket/"]);
  const file = openStore("file:///tmp/marsh-bucket");
  assert.deepEqual(file.kind, "file");
  assert.throws(() => openStore("http://example.com/x"), UsageError);
  assert.throws(
    () => openStore("file://relative/dir"),
    (e: unknown) => e instanceof UsageError && e.message.includes("absolute"),
  );
  assert.throws(() => openStore("s3://"), (e: unknown) => e instanceof UsageError && e.message.includes("no bucket"));
  assert.ok(s3.store && gs.store && file.store);
});
