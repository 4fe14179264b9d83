// The emulator harness (scripts/with-emulators.sh) and npm resolution work: the AWS SDK talks to moto, fetch talks to
// fake-gcs-server. Run under the harness; without its endpoints these tests fail rather than skip.
import assert from "node:assert/strict";
import {
  CreateBucketCommand,
  GetObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "npm:@aws-sdk/client-s3@3.1173.0";

function endpoint(name: "MARSH_S3_ENDPOINT" | "MARSH_GCS_ENDPOINT"): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`${name} is not set: run the tests under scripts/with-emulators.sh`);
  return value;
}

function uniqueBucket(): string {
  return `marsh-smoke-${crypto.randomUUID().slice(0, 8)}`;
}

Deno.test("moto: a second create-only PutObject fails with 412", async () => {
  const s3 = new S3Client({
    endpoint: endpoint("MARSH_S3_ENDPOINT"),
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: "marsh-test", secretAccessKey: "marsh-test" },
  });
  try {
    const Bucket = uniqueBucket();
    await s3.send(new CreateBucketCommand({ Bucket }));

    const created = await s3.send(
      new PutObjectCommand({ Bucket, Key: ".datastore.lock", Body: "first", IfNoneMatch: "*" }),
    );
    const second = await s3.send(
      new PutObjectCommand({ Bucket, Key: ".datastore.lock", Body: "second", IfNoneMatch: "*" }),
    ).then(() => undefined, (error: unknown) => error);
    const stored = await s3.send(new GetObjectCommand({ Bucket, Key: ".datastore.lock" }));

    assert.match(created.ETag ?? "", /^"[0-9a-f]{32}"$/);
    assert.ok(second instanceof S3ServiceException, `expected a service error, got ${second}`);
    assert.equal(second.$metadata.httpStatusCode, 412);
    assert.equal(await stored.Body?.transformToString(), "first");
    assert.equal(stored.ETag, created.ETag);
  } finally {
    s3.destroy();
  }
});

Deno.test("fake-gcs-server: an uploaded object downloads with its generation header", async () => {
  const base = endpoint("MARSH_GCS_ENDPOINT");
  const bucket = uniqueBucket();
  const name = "data/a.json";

  const createdBucket = await fetch(`${base}/storage/v1/b?project=marsh-test`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: bucket }),
  });
  const createdBucketAnswer = await createdBucket.text();
  assert.equal(createdBucket.status, 200, createdBucketAnswer);

  const upload = await fetch(
    `${base}/upload/storage/v1/b/${bucket}/o?uploadType=media&name=${encodeURIComponent(name)}`,
    { method: "POST", headers: { "content-type": "application/json" }, body: '{"hello":1}' },
  );
  assert.equal(upload.status, 200);
  const uploaded = await upload.json();
  assert.match(uploaded.generation, /^[1-9][0-9]*$/);

  const download = await fetch(`${base}/storage/v1/b/${bucket}/o/${encodeURIComponent(name)}?alt=media`);
  assert.equal(download.status, 200);
  assert.equal(await download.text(), '{"hello":1}');
  assert.equal(download.headers.get("x-goog-generation"), uploaded.generation);
});
