// The behaviours swamp's public testing package checks on a datastore extension (docs/host-contract.md), as our own tests, for
// both `datastore` exports: export conformance, lock conformance on the emulators, verifier. Run under
// scripts/with-emulators.sh: without the emulator endpoints the emulator tests fail.
import assert from "node:assert/strict";

import {
  type BackendName,
  BACKENDS,
  configFor,
  CREDENTIALS_HINT,
  datastoreOf,
  e2eTest,
  emulatorEndpoint,
  LOCK_KEY,
  WrappedStore,
} from "./support/e2e_support.ts";

const TYPE_PATTERN = /^@?[a-z0-9_-]+\/[a-z0-9_-]+$/;

function validConfigs(backend: BackendName): Record<string, unknown>[] {
  return backend === "s3"
    ? [
      { bucket: "my-bucket" },
      { bucket: "my.bucket.1", prefix: "team/repo", region: "eu-west-1" },
      { bucket: "abc", endpoint: "http://127.0.0.1:9000", forcePathStyle: true },
    ]
    : [
      { bucket: "my-bucket" },
      { bucket: "my_bucket.1", prefix: "team/repo", projectId: "my-project" },
      { bucket: "abc", apiEndpoint: "http://127.0.0.1:4443" },
    ];
}

function invalidConfigs(backend: BackendName): [string, Record<string, unknown>][] {
  const common: [string, Record<string, unknown>][] = [
    ["no bucket", {}],
    ["bucket too short", { bucket: "ab" }],
    ["bucket too long", { bucket: "a".repeat(64) }],
    ["upper-case bucket", { bucket: "My-Bucket" }],
    ["bucket ending with a dash", { bucket: "bucket-" }],
    ["bucket with a slash", { bucket: "my/bucket" }],
    ["bucket not a string", { bucket: 42 }],
    ["prefix not a string", { bucket: "my-bucket", prefix: 7 }],
  ];
  return backend === "s3"
    ? [
      ...common,
      ["underscore in an S3 bucket", { bucket: "my_bucket" }],
      ["endpoint not a URL", { bucket: "my-bucket", endpoint: "not a url" }],
      ["forcePathStyle not a boolean", { bucket: "my-bucket", forcePathStyle: "yes" }],
      ["region not a string", { bucket: "my-bucket", region: 1 }],
    ]
    : [
      ...common,
      ['bucket starting with "goog"', { bucket: "goog-data" }],
      ['bucket containing "google"', { bucket: "my-google-bucket" }],
      ["apiEndpoint not a URL", { bucket: "my-bucket", apiEndpoint: "nope" }],
      ["projectId not a string", { bucket: "my-bucket", projectId: 3 }],
    ];
}

// ---- Export conformance (no emulator needed) ----

for (const backend of BACKENDS) {
  const datastore = datastoreOf(backend);

  Deno.test(`${backend}: export: type, name and description`, () => {
    assert.match(datastore.type, TYPE_PATTERN);
    assert.equal(datastore.type, `@marsh/${backend}-datastore`);
    assert.equal(typeof datastore.name, "string");
    assert.ok(datastore.name.trim().length > 0);
    assert.equal(typeof datastore.description, "string");
    assert.ok(datastore.description.trim().length > 0);
  });

  Deno.test(`${backend}: export: the schema accepts valid configs`, () => {
    for (const config of validConfigs(backend)) {
      const parsed = datastore.configSchema.safeParse(config);
      assert.ok(parsed.success, `${JSON.stringify(config)}: ${parsed.error?.message}`);
    }
  });

  Deno.test(`${backend}: export: the schema rejects invalid configs, naming the field`, () => {
    for (const [why, config] of invalidConfigs(backend)) {
      const parsed = datastore.configSchema.safeParse(config);
      assert.ok(!parsed.success, `${why}: ${JSON.stringify(config)} was accepted`);
      const field = Object.keys(config).at(-1) ?? "bucket";
      assert.ok(
        parsed.error.issues.some((issue) => issue.path[0] === field),
        `${why}: no issue names "${field}": ${JSON.stringify(parsed.error.issues)}`,
      );
    }
  });

  Deno.test(`${backend}: export: createProvider rejects an empty or invalid config`, () => {
    assert.throws(() => datastore.createProvider({}));
    assert.throws(() => datastore.createProvider({ bucket: "Not_Valid!" }));
  });

  Deno.test(`${backend}: export: the provider has the factories and paths swamp calls`, () => {
    // Building a provider makes no request: the endpoint need not answer.
    const provider = datastore.createProvider(
      backend === "s3"
        ? { bucket: "my-bucket", endpoint: "http://127.0.0.1:9", forcePathStyle: true, region: "us-east-1" }
        : { bucket: "my-bucket", apiEndpoint: "http://127.0.0.1:9" },
    );
    assert.equal(typeof provider.createLock, "function");
    assert.equal(typeof provider.createVerifier, "function");
    assert.equal(typeof provider.createSyncService, "function");
    for (const repoDir of ["/home/me/repo", "relative/repo", "/"]) {
      const path = provider.resolveDatastorePath(repoDir);
      assert.ok(path.length > 0);
      assert.ok(path.endsWith(".swamp"), `${repoDir} → ${path}`);
    }
    assert.equal(typeof provider.resolveCachePath, "function");
    assert.equal(provider.resolveCachePath!("/home/me/repo"), undefined);

    const lock = provider.createLock("/home/me/repo/.swamp");
    for (const method of ["acquire", "release", "withLock", "inspect", "forceRelease"] as const) {
      assert.equal(typeof lock[method], "function", `lock.${method}`);
    }
    assert.equal(typeof provider.createVerifier().verify, "function");
    const service = provider.createSyncService!("/home/me/repo", "/tmp/unused-cache");
    for (const method of ["pullChanged", "pushChanged", "markDirty"] as const) {
      assert.equal(typeof service[method], "function", `service.${method}`);
    }
  });
}

// ---- Lock conformance (single process, on the emulators) ----

e2eTest("lock: inspect is null before acquire; after acquire holder, pid, acquiredAt, ttlMs and nonce", async (t) => {
  const lock = t.provider().createLock("/repo/.swamp");
  assert.equal(await lock.inspect(), null);
  const before = Date.now();

  await lock.acquire();
  try {
    const info = await lock.inspect();
    assert.ok(info);
    assert.equal(typeof info.holder, "string");
    assert.ok(info.holder.length > 0);
    assert.match(info.holder, /.@./, "holder is user@host");
    assert.equal(typeof info.hostname, "string");
    assert.equal(info.pid, Deno.pid);
    assert.ok(Date.parse(info.acquiredAt) >= before - 5_000, `acquiredAt is a recent ISO date: ${info.acquiredAt}`);
    assert.equal(info.ttlMs, 30_000);
    assert.equal(typeof info.nonce, "string");
    assert.ok(info.nonce!.length > 0);
    assert.ok(await t.rawGet(LOCK_KEY), "the lock object exists at .datastore.lock");
  } finally {
    await lock.release();
  }
});

e2eTest("lock: release is idempotent and inspect is null after it", async (t) => {
  const lock = t.provider().createLock("/repo/.swamp", { ttlMs: 10_000 });
  await lock.acquire();

  await lock.release();
  await lock.release();

  assert.equal(await lock.inspect(), null);
  assert.equal(await t.rawGet(LOCK_KEY), null);
});

e2eTest("lock: a lockKey names the lock object", async (t) => {
  const lockKey = "data/model/abc/.lock";
  const lock = t.provider().createLock("/repo/.swamp", { lockKey });
  await lock.acquire();
  try {
    assert.ok(await t.rawGet(lockKey), "the lock object is at its lockKey");
    assert.equal(await t.rawGet(LOCK_KEY), null);
  } finally {
    await lock.release();
  }
  assert.equal(await t.rawGet(lockKey), null);
});

e2eTest("lock: withLock returns fn's value and releases; it releases on throw too", async (t) => {
  const lock = t.provider().createLock("/repo/.swamp");

  const value = await lock.withLock(async () => {
    assert.ok(await lock.inspect(), "held inside fn");
    return { answer: 42 };
  });
  assert.deepEqual(value, { answer: 42 });
  assert.equal(await lock.inspect(), null);

  const thrown = new Error("fn failed");
  await assert.rejects(
    lock.withLock(async () => {
      assert.ok(await lock.inspect());
      throw thrown;
    }),
    (error) => error === thrown,
  );
  assert.equal(await lock.inspect(), null, "released after fn threw");
});

e2eTest("lock: forceRelease with the right nonce deletes the lock, with a wrong one keeps it", async (t) => {
  const holder = t.provider().createLock("/repo/.swamp");
  const operator = t.provider().createLock("/repo/.swamp");
  await holder.acquire();
  try {
    const info = await operator.inspect();
    assert.ok(info?.nonce);

    assert.equal(await operator.forceRelease("not-the-nonce"), false);
    assert.deepEqual(await operator.inspect(), info, "a wrong nonce keeps the lock");

    assert.equal(await operator.forceRelease(info.nonce), true);
    assert.equal(await operator.inspect(), null, "the right nonce deletes it");
  } finally {
    await holder.release();
  }
});

e2eTest("lock: a second acquire times out with LockTimeoutError naming the holder", async (t) => {
  const holder = t.provider().createLock("/repo/.swamp");
  const waiter = t.provider().createLock("/repo/.swamp", { retryIntervalMs: 50, maxWaitMs: 300 });
  await holder.acquire();
  try {
    const error = await waiter.acquire().then(() => assert.fail("acquired a held lock"), (e: unknown) => e) as
      & Error
      & { lockKey?: string; holder?: { pid: number } | null; waitedMs?: number };
    assert.equal(error.name, "LockTimeoutError", error.message);
    assert.equal(error.lockKey, LOCK_KEY);
    assert.equal(error.holder?.pid, Deno.pid);
    assert.ok((error.waitedMs ?? 0) >= 300, `waitedMs ${error.waitedMs}`);
    assert.match(error.message, new RegExp(String(Deno.pid)));
  } finally {
    await holder.release();
  }
});

// ---- Verifier ----

e2eTest("verifier: healthy on an existing bucket", async (t) => {
  const result = await t.provider().createVerifier().verify();

  assert.equal(result.healthy, true, result.message);
  assert.equal(typeof result.message, "string");
  assert.equal(typeof result.latencyMs, "number");
  assert.ok(result.latencyMs >= 0);
  assert.equal(result.datastoreType, t.datastoreType);
});

e2eTest("verifier: unhealthy for a missing bucket, with a hint naming it", async (t) => {
  const missing = `marsh-missing-${crypto.randomUUID().slice(0, 8)}`;
  const result = await t.provider(configFor(t.backend, missing)).createVerifier().verify();

  assert.equal(result.healthy, false);
  assert.ok(result.message.includes(missing), result.message);
  assert.match(result.message, /does not exist/);
  assert.ok(result.latencyMs >= 0);
  assert.equal(result.datastoreType, t.datastoreType);
});

e2eTest("verifier: unhealthy with the credentials hint on an auth failure", async (t) => {
  const store = new WrappedStore(t.store(), {
    before(call) {
      if (call.method === "list") throw t.authError("list", "");
    },
  });

  const result = await t.providerWith(store).createVerifier().verify();

  assert.equal(result.healthy, false);
  assert.match(result.message, CREDENTIALS_HINT[t.backend], result.message);
  assert.equal(result.details?.errorKind, "Auth");
  assert.equal(result.details?.status, "403");
  assert.ok(result.details?.hint, "details carry the provider's credentials hint");
  assert.ok(result.latencyMs >= 0);
  assert.equal(store.count("list"), 1, "one probe, not retried");
});

Deno.test("the emulator endpoints are set (these tests fail, never skip, without them)", () => {
  for (const backend of BACKENDS) assert.ok(emulatorEndpoint(backend).startsWith("http://"));
});
