// The verifier as swamp's public testing package checks it, on both emulators. The rest of what that package checks
// (export shape, schema, provider factories, lock, lock timeout) is in marsh's own conformance suites,
// tests/deno/support/datastore_conformance.ts, run on every backend by datastore_conformance_test.ts. Run under
// scripts/with-emulators.sh: without the emulator endpoints these tests fail.
import assert from "node:assert/strict";

import {
  BACKENDS,
  configFor,
  CREDENTIALS_HINT,
  e2eTest,
  emulatorEndpoint,
  WrappedStore,
} from "./support/e2e_support.ts";

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
