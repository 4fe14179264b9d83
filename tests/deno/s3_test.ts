// S3Store: the conformance suite on moto, the error classification (pure), and the request guards (abort, timeouts,
// transport failures, body size) against tiny local TCP servers. Run under scripts/with-emulators.sh: without
// MARSH_S3_ENDPOINT the moto tests fail rather than skip.
import assert from "node:assert/strict";
import {
  CreateBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "npm:@aws-sdk/client-s3@3.1173.0";
import type { MarshErrorKind } from "../../js/host.ts";
import { classifyS3Error, S3Store, type S3StoreOptions } from "../../js/s3.ts";
import { expectStoreError, readStream, storeConformance, uploadBodyOf } from "./support/store_conformance.ts";

const encoder = new TextEncoder();

function motoEndpoint(): string {
  const value = Deno.env.get("MARSH_S3_ENDPOINT");
  if (!value) throw new Error("MARSH_S3_ENDPOINT is not set: run the tests under scripts/with-emulators.sh");
  return value;
}

// The store builds its own client from the standard credential chain; moto accepts any key.
function useTestCredentials(): void {
  Deno.env.set("AWS_ACCESS_KEY_ID", "marsh-test");
  Deno.env.set("AWS_SECRET_ACCESS_KEY", "marsh-test");
  Deno.env.set("AWS_REGION", "us-east-1");
}

function adminClient(endpoint = motoEndpoint()): S3Client {
  return new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    maxAttempts: 1,
    credentials: { accessKeyId: "marsh-test", secretAccessKey: "marsh-test" },
  });
}

// One bucket per test run; each store gets its own prefix under "team/repo/", so every test starts empty.
let bucket: Promise<string> | undefined;
function runBucket(): Promise<string> {
  bucket ??= (async () => {
    const name = `marsh-s3-${crypto.randomUUID().slice(0, 8)}`;
    const admin = adminClient();
    try {
      await admin.send(new CreateBucketCommand({ Bucket: name }));
    } finally {
      admin.destroy();
    }
    return name;
  })();
  return bucket;
}

let stores = 0;
async function motoStore(options: Partial<S3StoreOptions> = {}): Promise<S3Store> {
  useTestCredentials();
  return new S3Store({
    bucket: await runBucket(),
    prefix: `team/repo/${++stores}`,
    endpoint: motoEndpoint(),
    forcePathStyle: true,
    ...options,
  });
}

storeConformance("s3 (moto)", async () => {
  const store = await motoStore({ listPageSize: 5 });
  // moto 5.2.5 honours If-Match on DeleteObject (412 on a stale ETag, 404 on a missing key), so no limit is declared.
  return { store, cleanup: () => Promise.resolve(store.destroy()), limits: { listPageSize: 5 } };
});

// ---- Error classification (pure) ----

function serviceError(status: number, name: string, message = "", extra: Record<string, unknown> = {}) {
  return Object.assign(
    new S3ServiceException({
      name,
      $fault: status >= 500 ? "server" : "client",
      $metadata: { httpStatusCode: status, requestId: "REQ-123" },
      message,
    }),
    name === "Unknown" || name === "NotFound" ? {} : { Code: name },
    extra,
  );
}

function transportError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

const context = { operation: "put", key: "data/a.json", location: "s3://bkt/team/repo/data/a.json" };

type ContextExtra = { aborted?: boolean; timedOutAfterMs?: number };
const classifications: [string, unknown, MarshErrorKind, ContextExtra?][] = [
  ["403 AccessDenied is Auth", serviceError(403, "AccessDenied", "Access Denied"), "Auth"],
  ["401 is Auth", serviceError(401, "Unauthorized"), "Auth"],
  ["400 ExpiredToken is Auth", serviceError(400, "ExpiredToken", "The provided token has expired."), "Auth"],
  [
    "a CredentialsProviderError is Auth",
    Object.assign(new Error("Could not load credentials from any providers"), {
      name: "CredentialsProviderError",
    }),
    "Auth",
  ],
  ["503 SlowDown is Transient", serviceError(503, "SlowDown", "Please reduce your request rate."), "Transient"],
  ["500 InternalError is Transient", serviceError(500, "InternalError"), "Transient"],
  ["429 is Transient", serviceError(429, "TooManyRequests"), "Transient"],
  ["409 ConditionalRequestConflict is Transient", serviceError(409, "ConditionalRequestConflict"), "Transient"],
  ["400 RequestTimeout is Transient", serviceError(400, "RequestTimeout"), "Transient"],
  ["409 BucketNotEmpty is Http", serviceError(409, "BucketNotEmpty"), "Http"],
  ["400 InvalidArgument is Http", serviceError(400, "InvalidArgument", "bad"), "Http"],
  ["412 PreconditionFailed is PreconditionFailed", serviceError(412, "PreconditionFailed"), "PreconditionFailed"],
  ["404 NoSuchKey is NotFound", serviceError(404, "NoSuchKey"), "NotFound"],
  ["a HEAD 404 without a body is NotFound", serviceError(404, "NotFound", "UnknownError"), "NotFound"],
  ["404 NoSuchBucket is Http, not an empty bucket", serviceError(404, "NoSuchBucket"), "Http"],
  ["304 is Http: the boundary has no not-modified error", serviceError(304, "Unknown", "UnknownError"), "Http"],
  ["ECONNRESET is Transient", transportError("ECONNRESET", "socket hang up"), "Transient"],
  ["ENOTFOUND (DNS) is Transient", transportError("ENOTFOUND", "getaddrinfo ENOTFOUND bkt.s3"), "Transient"],
  ["ECONNREFUSED is Transient", transportError("ECONNREFUSED", "connect ECONNREFUSED"), "Transient"],
  [
    "the SDK's socket TimeoutError is Transient",
    Object.assign(new Error("socket timed out"), {
      name: "TimeoutError",
    }),
    "Transient",
  ],
  ["an AbortError is Aborted", new DOMException("The operation was aborted", "AbortError"), "Aborted"],
  ["a reset after the caller aborted is Aborted", transportError("ECONNRESET", "reset"), "Aborted", {
    aborted: true,
  }],
  ["our timer firing is Transient, whatever the error", new DOMException("x", "AbortError"), "Transient", {
    timedOutAfterMs: 250,
  }],
  ["a local bug without a status is Io", new TypeError("body.open is not a function"), "Io"],
  ["a missing region is Io (configuration, not retried)", new Error("Region is missing"), "Io"],
];

for (const [behaviour, error, kind, extra] of classifications) {
  Deno.test(`classifyS3Error: ${behaviour}`, () => {
    assert.equal(classifyS3Error(error, { ...context, ...extra }).kind, kind);
  });
}

Deno.test("classifyS3Error: a 304 keeps its status, by which a conditional GET answers { notModified: true }", () => {
  const classified = classifyS3Error(serviceError(304, "Unknown", "UnknownError"), { ...context, operation: "get" });

  assert.equal(classified.kind, "Http");
  assert.equal(classified.status, 304);
});

Deno.test("classifyS3Error: an Auth error names the operation, object, status, request id and the credential hint", () => {
  const classified = classifyS3Error(serviceError(403, "AccessDenied", "Access Denied"), context);

  assert.equal(classified.status, 403);
  assert.equal(classified.key, "data/a.json");
  assert.match(classified.message, /^S3 put s3:\/\/bkt\/team\/repo\/data\/a\.json: /);
  assert.match(classified.message, /HTTP 403/);
  assert.match(classified.message, /AccessDenied/);
  assert.match(classified.message, /request id REQ-123/);
  assert.match(classified.message, /Access Denied/);
  assert.match(classified.message, /AWS_PROFILE/);
  assert.match(classified.message, /AWS_ACCESS_KEY_ID/);
  assert.match(classified.message, /s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket/);
});

Deno.test("classifyS3Error: an unreadable error body is previewed on one line, shortened", () => {
  const body = `<html>\n<body>502 Bad Gateway from the proxy</body>\n</html>${" padding".repeat(60)}`;
  const classified = classifyS3Error(
    serviceError(502, "Unknown", "UnknownError", { $responseBodyText: body }),
    context,
  );

  assert.equal(classified.kind, "Transient");
  assert.match(classified.message, /HTTP 502.*: <html> <body>502 Bad Gateway from the proxy<\/body> <\/html> padding/);
  assert.ok(classified.message.length < 400, classified.message);
});

Deno.test("classifyS3Error: a timeout says how long it waited", () => {
  const classified = classifyS3Error(new Error("aborted"), { ...context, timedOutAfterMs: 250 });

  assert.match(classified.message, /timed out after 250 ms/);
});

// ---- Request guards against local TCP servers ----

/** A TCP server on 127.0.0.1 that reads each request and answers `reply` (if any), then never closes the socket. */
function stallingServer(reply?: string): { endpoint: string; accepted(): number; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connections: Deno.Conn[] = [];
  const handlers: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const connection of listener) {
      connections.push(connection);
      handlers.push((async () => {
        try {
          await connection.read(new Uint8Array(64 * 1024));
          if (reply) await connection.write(encoder.encode(reply));
          await connection.read(new Uint8Array(64 * 1024)); // until the client gives up
        } catch {
          // the client or close() dropped the connection
        }
      })());
    }
  })().catch(() => {});
  return {
    endpoint: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    accepted: () => connections.length,
    async close() {
      listener.close();
      for (const connection of connections) {
        try {
          connection.close();
        } catch {
          // already closed by the client
        }
      }
      await accepting;
      await Promise.all(handlers);
    },
  };
}

function localStore(endpoint: string, options: Partial<S3StoreOptions> = {}): S3Store {
  useTestCredentials();
  return new S3Store({ bucket: "bkt", prefix: "team/repo", endpoint, forcePathStyle: true, ...options });
}

Deno.test("s3: an already-aborted signal rejects before the SDK is called", async () => {
  let sdkCalls = 0;
  const client = adminClient("http://127.0.0.1:9");
  client.middlewareStack.add((next) => (args) => {
    sdkCalls++;
    return next(args);
  }, { step: "initialize", name: "countCalls" });
  const store = new S3Store({ bucket: "bkt", client });
  const controller = new AbortController();
  controller.abort();

  try {
    const error = await expectStoreError(store.head("k", { signal: controller.signal }), "Aborted");
    await expectStoreError(
      store.put("k", uploadBodyOf(encoder.encode("x")), { kind: "none" }, { signal: controller.signal }),
      "Aborted",
    );
    await expectStoreError(store.delete("k", undefined, { signal: controller.signal }), "Aborted");

    assert.equal(error.name, "AbortError");
    assert.equal(sdkCalls, 0);
  } finally {
    client.destroy();
  }
});

Deno.test("s3: a server that never answers times out as Transient after requestTimeoutMs", async () => {
  const server = stallingServer();
  const store = localStore(server.endpoint, { requestTimeoutMs: 200 });
  const started = Date.now();

  try {
    const error = await expectStoreError(store.head("data/a.json"), "Transient");

    assert.match(error.message, /^S3 head s3:\/\/bkt\/team\/repo\/data\/a\.json: timed out after 200 ms/);
    assert.ok(Date.now() - started < 5_000, "the timer, not a socket default, ended the request");
    assert.equal(server.accepted(), 1);
  } finally {
    store.destroy();
    await server.close();
  }
});

Deno.test("s3: a download that stalls after the headers fails its read as Transient", async () => {
  const server = stallingServer('HTTP/1.1 200 OK\r\nContent-Length: 100\r\nETag: "abc"\r\n\r\nfirst ten.');
  const store = localStore(server.endpoint, { requestTimeoutMs: 200 });

  try {
    const answer = await store.get("data/a.json");
    assert.ok(!("notModified" in answer));
    assert.deepEqual({ token: answer.token, size: answer.size }, { token: "abc", size: 100 });

    const error = await expectStoreError(readStream(answer.body), "Transient");
    assert.match(error.message, /timed out after 200 ms/);
  } finally {
    store.destroy();
    await server.close();
  }
});

Deno.test("s3: aborting the caller's signal during a download fails the read as Aborted", async () => {
  const server = stallingServer('HTTP/1.1 200 OK\r\nContent-Length: 100\r\nETag: "abc"\r\n\r\nfirst ten.');
  const store = localStore(server.endpoint, { requestTimeoutMs: 10_000 });
  const controller = new AbortController();

  try {
    const answer = await store.get("data/a.json", undefined, { signal: controller.signal });
    assert.ok(!("notModified" in answer));
    setTimeout(() => controller.abort(), 50);

    await expectStoreError(readStream(answer.body), "Aborted");
  } finally {
    store.destroy();
    await server.close();
  }
});

Deno.test("s3: aborting the caller's signal while waiting for an answer is Aborted, not Transient", async () => {
  const server = stallingServer();
  const store = localStore(server.endpoint, { requestTimeoutMs: 10_000 });
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 50);

  try {
    await expectStoreError(store.putBytes("k", encoder.encode("x"), { kind: "none" }, { signal: controller.signal }), [
      "Aborted",
    ]);
  } finally {
    store.destroy();
    await server.close();
  }
});

Deno.test("s3: a refused connection is Transient", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const store = localStore(`http://127.0.0.1:${port}`);

  try {
    const error = await expectStoreError(store.getBytes("k"), "Transient");
    assert.match(error.message, /connection failed/);
  } finally {
    store.destroy();
  }
});

// ---- Against moto: keys, prefix, body size ----

Deno.test("s3 (moto): objects live under prefix/key, and list ignores keys outside the prefix", async () => {
  const store = await motoStore({ prefix: "/team/repo-prefix-test/" });
  const admin = adminClient();
  try {
    await store.putBytes("data/a.json", encoder.encode("{}"), { kind: "none" });
    await admin.send(
      new PutObjectCommand({ Bucket: store.bucket, Key: "team/repo-prefix-test-sibling/b.json", Body: "{}" }),
    );
    await admin.send(new PutObjectCommand({ Bucket: store.bucket, Key: "team/repo-prefix-testx", Body: "{}" }));

    const raw = await admin.send(
      new HeadObjectCommand({ Bucket: store.bucket, Key: "team/repo-prefix-test/data/a.json" }),
    );
    const listed = await store.list("");

    assert.equal(raw.ContentLength, 2);
    assert.deepEqual(listed.objects.map((object) => object.key), ["data/a.json"]);
  } finally {
    admin.destroy();
    store.destroy();
  }
});

Deno.test("s3 (moto): an UploadBody longer than its size fails as Io and stores nothing", async () => {
  const store = await motoStore();
  const body = { size: 3, open: () => Promise.resolve(ReadableStream.from([encoder.encode("12345")])) };

  try {
    const error = await expectStoreError(store.put("grew.bin", body, { kind: "none" }), "Io");

    assert.match(error.message, /grew while uploading \(expected 3 bytes\)/);
    await expectStoreError(store.head("grew.bin"), "NotFound");
  } finally {
    store.destroy();
  }
});

Deno.test("s3 (moto): an UploadBody shorter than its size fails as Io and stores nothing", async () => {
  const store = await motoStore();
  const body = { size: 10, open: () => Promise.resolve(ReadableStream.from([encoder.encode("12345")])) };

  try {
    const error = await expectStoreError(store.put("shrank.bin", body, { kind: "none" }), "Io");

    assert.match(error.message, /shrank while uploading \(expected 10 bytes\)/);
    await expectStoreError(store.head("shrank.bin"), "NotFound");
  } finally {
    store.destroy();
  }
});

Deno.test("s3 (moto): a stale conditional delete answers 412 with the request id in the message", async () => {
  const store = await motoStore();
  try {
    const first = await store.putBytes("lock", encoder.encode("a"), { kind: "none" });
    await store.putBytes("lock", encoder.encode("b"), { kind: "none" });

    const error = await expectStoreError(store.delete("lock", first.token), "PreconditionFailed");

    assert.equal(error.status, 412);
    assert.equal(error.key, "lock");
    assert.match(
      error.message,
      /^S3 delete s3:\/\/marsh-s3-[0-9a-f]{8}\/team\/repo\/\d+\/lock: precondition failed \(HTTP 412/,
    );
    assert.match(error.message, /request id \S+/);
  } finally {
    store.destroy();
  }
});

/** An UploadBody of `chunks` × `chunkSize` zero bytes, waiting `delayMs` before each chunk. */
function generatedBody(chunks: number, chunkSize: number, delayMs = 0) {
  return {
    size: chunks * chunkSize,
    open: () => {
      let produced = 0;
      return Promise.resolve(
        new ReadableStream<Uint8Array>({
          async pull(controller) {
            if (produced === chunks) return controller.close();
            if (delayMs) await new Promise((resolve) => setTimeout(resolve, delayMs));
            produced++;
            controller.enqueue(new Uint8Array(chunkSize));
          },
        }, { highWaterMark: 0 }),
      );
    },
  };
}

Deno.test("s3: an upload the server stops reading times out as Transient", async () => {
  const server = stallingServer();
  const store = localStore(server.endpoint, { requestTimeoutMs: 300 });

  try {
    const error = await expectStoreError(store.put("big.bin", generatedBody(512, 64 * 1024), { kind: "none" }), [
      "Transient",
    ]);

    assert.match(error.message, /timed out after 300 ms without progress/);
  } finally {
    store.destroy();
    await server.close();
  }
});

Deno.test("s3 (moto): a slow but steady upload outlasts requestTimeoutMs (the timer restarts per chunk)", async () => {
  const store = await motoStore({ requestTimeoutMs: 250 });

  try {
    const put = await store.put("slow.bin", generatedBody(6, 1024, 100), { kind: "none" });

    assert.deepEqual(await store.head("slow.bin"), { token: put.token, size: 6 * 1024 });
  } finally {
    store.destroy();
  }
});

Deno.test("s3 (moto): a slow reader of a download is not timed out (only network waits count)", async () => {
  const store = await motoStore({ requestTimeoutMs: 250 });

  try {
    await store.putBytes("read-slowly.bin", new Uint8Array(3 * 64 * 1024), { kind: "none" });
    const answer = await store.get("read-slowly.bin");
    assert.ok(!("notModified" in answer));

    let received = 0;
    for await (const chunk of answer.body as ReadableStream<Uint8Array>) {
      received += chunk.byteLength;
      await new Promise((resolve) => setTimeout(resolve, 150));
    }

    assert.equal(received, 3 * 64 * 1024);
  } finally {
    store.destroy();
  }
});
