// The built extensions (dist/, see scripts/build-extensions.sh) bundled and loaded the way swamp loads an extension,
// then a real sync through the bundle against the emulators. Run under scripts/with-emulators.sh.
//
// What swamp does with an extension entry, and what this test repeats:
// 1. `deno bundle --no-lock --node-modules-dir=none --platform deno` on the entry file, with zod external
//    (`--external npm:zod@4 --external npm:zod`, plus the exact `npm:zod@4.x.y` specifier it finds in the entry), so
//    everything else (our modules, the embedded wasm, the AWS SDK, google-auth-library) is inlined into one file.
// 2. The bundle's zod import is rewritten to read swamp's own zod 4 module from a global (`globalThis.__swamp_zod`),
//    so the extension's schemas are built by the host's zod instance and pass its `instanceof` checks.
// 3. The bundle is imported from swamp's cache folder, where none of our files are.
// Zod is provided the same way here: the test imports zod 4 itself, installs it on that global, and rewrites the
// bundle's import. The entry keeps `import { z } from "npm:zod@4.1.12"`, which also resolves when js/ runs unbundled
// (tests, CLI). A test asserts that the schema and the ZodError come from the test's zod, i.e. zod was not inlined.
// (swamp also patches esbuild's `__toESM` helper to always set `.default`; Deno 2.9's bundler already emits it that
// way, so there is nothing to repeat.)
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { CreateBucketCommand, S3Client } from "npm:@aws-sdk/client-s3@3.1173.0";
import * as zod from "npm:zod@4.1.12";

declare global {
  // The name swamp uses for the zod module it shares with extensions.
  var __swamp_zod: typeof zod | undefined;
}

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const encoder = new TextEncoder();

function emulator(name: "MARSH_S3_ENDPOINT" | "MARSH_GCS_ENDPOINT"): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`${name} is not set: run the tests under scripts/with-emulators.sh`);
  return value;
}

function builtEntry(folder: string, entry: string): string {
  const path = join(root, "dist", folder, "extensions", "datastores", entry);
  try {
    Deno.statSync(path);
  } catch {
    throw new Error(`${path} is not built: run scripts/build-extensions.sh (scripts/test.sh does)`);
  }
  return path;
}

/** Step 1: `deno bundle` with swamp's flags; returns the bundle's text. */
async function bundleLikeSwamp(entry: string, scratch: string): Promise<string> {
  const source = await Deno.readTextFile(entry);
  const exactZod = /from\s*["'](npm:zod@4\.[^"']+)["']/.exec(source)?.[1];
  assert.ok(exactZod, `${entry} does not import zod as npm:zod@4.x.y`);
  const out = join(scratch, "bundle.js");
  const bundled = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--no-lock",
      "--node-modules-dir=none",
      ...["--external", "npm:zod@4", "--external", "npm:zod", "--external", exactZod],
      ...["--platform", "deno", "-o", out, entry],
    ],
    cwd: scratch,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(bundled.stderr);
  assert.ok(bundled.success, `deno bundle failed:\n${stderr}`);
  const js = await Deno.readTextFile(out);
  await Deno.remove(out);
  return js;
}

/** Step 2: zod imports become reads of the host's zod module. */
function shareHostZod(js: string): string {
  let rewritten = 0;
  const result = js.replace(
    /import\s*\{([^}]*)\}\s*from\s*["']npm:zod(?:@4[^"']*)?["'];?/g,
    (_all, names: string) => {
      rewritten++;
      const fields = names.split(",").map((name) => name.trim()).filter((name) => name !== "")
        .map((name) => name.replace(/\s+as\s+/, ": "));
      return `const { ${fields.join(", ")} } = globalThis.__swamp_zod;`;
    },
  );
  assert.equal(rewritten, 1, "the bundle should import zod exactly once");
  assert.ok(!result.includes("npm:zod"), "a zod import was left in the bundle");
  return result;
}

interface DatastoreModule {
  datastore: {
    type: string;
    configSchema: unknown;
    // deno-lint-ignore no-explicit-any
    createProvider(config: Record<string, unknown>): any;
  };
}

/** Steps 2 and 3: the bundle, written alone into a fresh folder, imported from there. */
async function loadBundle(folder: string, entry: string): Promise<{ module: DatastoreModule; bytes: number }> {
  globalThis.__swamp_zod ??= zod;
  const scratch = await Deno.makeTempDir({ prefix: `marsh-bundle-${folder}-` });
  try {
    const js = await bundleLikeSwamp(builtEntry(folder, entry), scratch);
    assert.ok(js.includes("export const datastore =") || /export\s*\{[^}]*\bdatastore\b/.test(js));
    // Inlined npm modules are preceded by their cache path; zod must not be one of them.
    assert.ok(!/registry\.npmjs\.org\/zod\//.test(js), "zod was inlined into the bundle");
    const cacheFolder = await Deno.makeTempDir({ prefix: "marsh-swamp-bundles-" });
    try {
      const file = join(cacheFolder, `${folder}.js`);
      await Deno.writeTextFile(file, shareHostZod(js));
      const bytes = (await Deno.stat(file)).size;
      console.log(`${folder}: bundle ${bytes} bytes`);
      // Evaluated once, here: the wasm is instantiated from the embedded bytes during the import, so the folder can go.
      return { module: await import(pathToFileURL(file).href) as DatastoreModule, bytes };
    } finally {
      await Deno.remove(cacheFolder, { recursive: true });
    }
  } finally {
    await Deno.remove(scratch, { recursive: true });
  }
}

/** Push one file from one cache through one provider, pull it into another cache through a second provider. */
async function syncThroughBundle(module: DatastoreModule, config: Record<string, unknown>): Promise<void> {
  const repo = await Deno.makeTempDir({ prefix: "marsh-bundle-repo-" });
  const cacheA = await Deno.makeTempDir({ prefix: "marsh-bundle-cache-a-" });
  const cacheB = await Deno.makeTempDir({ prefix: "marsh-bundle-cache-b-" });
  try {
    const provider = module.datastore.createProvider(config);
    const health = await provider.createVerifier().verify();
    assert.equal(health.healthy, true, health.message);
    assert.equal(await provider.createLock(join(repo, ".swamp")).withLock(() => Promise.resolve(7)), 7);

    const pusher = provider.createSyncService(repo, cacheA);
    await pusher.markDirty();
    await Deno.mkdir(join(cacheA, "models", "demo"), { recursive: true });
    const body = encoder.encode("name: demo\nvalue: 42\n");
    await Deno.writeFile(join(cacheA, "models", "demo", "model.yaml"), body);
    assert.equal(await pusher.pushChanged(), 1);

    const puller = module.datastore.createProvider(config).createSyncService(repo, cacheB);
    assert.equal(await puller.pullChanged(), 1);
    assert.deepEqual(await Deno.readFile(join(cacheB, "models", "demo", "model.yaml")), body);
    assert.equal(await puller.pullChanged(), 0);
  } finally {
    for (const dir of [repo, cacheA, cacheB]) await Deno.remove(dir, { recursive: true });
  }
}

function assertUsesHostZod(module: DatastoreModule): void {
  assert.ok(module.datastore.configSchema instanceof zod.z.ZodType, "the schema is not built by the host's zod");
  // zod 4 builds its classes with its own constructor helper: check the caught error, not assert.throws(Class).
  let caught: unknown;
  try {
    module.datastore.createProvider({});
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof zod.z.ZodError, `createProvider({}) threw ${caught}, not the host's ZodError`);
}

// The SDK clients inside the bundle keep pooled connections and have no destroy() on swamp's interface (swamp never
// closes a provider either), so the resource and op sanitizers are off for the sync tests.
const syncTest = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  name: "bundle: @marsh/s3-datastore bundled like swamp syncs through moto",
  ...syncTest,
  fn: async () => {
    const endpoint = emulator("MARSH_S3_ENDPOINT");
    // The provider reads credentials from the standard AWS chain; moto accepts any key.
    Deno.env.set("AWS_ACCESS_KEY_ID", "marsh-test");
    Deno.env.set("AWS_SECRET_ACCESS_KEY", "marsh-test");
    Deno.env.set("AWS_REGION", "us-east-1");
    const bucket = `marsh-bundle-${crypto.randomUUID().slice(0, 8)}`;
    const admin = new S3Client({
      endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "marsh-test", secretAccessKey: "marsh-test" },
    });
    try {
      await admin.send(new CreateBucketCommand({ Bucket: bucket }));
    } finally {
      admin.destroy();
    }

    const { module, bytes } = await loadBundle("s3-datastore", "s3.ts");
    assert.equal(module.datastore.type, "@marsh/s3-datastore");
    assert.ok(bytes < 10_000_000, `bundle is ${bytes} bytes`);
    assertUsesHostZod(module);
    await syncThroughBundle(module, { bucket, prefix: "teams/bundle", endpoint, forcePathStyle: true });
  },
});

Deno.test({
  name: "bundle: @marsh/gcs-datastore bundled like swamp syncs through fake-gcs-server",
  ...syncTest,
  fn: async () => {
    const apiEndpoint = emulator("MARSH_GCS_ENDPOINT");
    const bucket = `marsh-bundle-${crypto.randomUUID().slice(0, 8)}`;
    const created = await fetch(`${apiEndpoint}/storage/v1/b?project=test`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: bucket }),
    });
    assert.equal(created.status, 200, `creating bucket ${bucket}: ${await created.text()}`);

    const { module, bytes } = await loadBundle("gcs-datastore", "gcs.ts");
    assert.equal(module.datastore.type, "@marsh/gcs-datastore");
    assert.ok(bytes < 10_000_000, `bundle is ${bytes} bytes`);
    assertUsesHostZod(module);
    await syncThroughBundle(module, { bucket, prefix: "teams/bundle", apiEndpoint });
  },
});
