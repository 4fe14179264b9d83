/**
 * The swamp datastore extension `@marsh/s3-datastore`: swamp's repo data mirrored to Amazon S3 (or an S3-compatible
 * store) by the marsh engine. The configuration schema is the official extension's, so switching is a type change.
 *
 * @module
 */

import { z } from "npm:zod@4.1.12";

import { makeProvider } from "./provider.ts";
import { S3Store } from "./s3.ts";
import type { DatastoreProvider } from "./swamp.ts";

export const configSchema = z.object({
  bucket: z.string().min(3).max(63).regex(/^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$/, "not a valid S3 bucket name"),
  prefix: z.string().optional(),
  region: z.string().optional(),
  endpoint: z.url().optional(),
  forcePathStyle: z.boolean().optional(),
});

export type S3DatastoreConfig = z.infer<typeof configSchema>;

export const datastore = {
  type: "@marsh/s3-datastore",
  name: "Amazon S3 (marsh)",
  description: "Mirrors the swamp repository to an S3 bucket with the race-free marsh sync engine " +
    "(compare-and-swap index writes, verified fast paths, conditional locks).",
  configSchema,
  createProvider(config: Record<string, unknown>): DatastoreProvider {
    const parsed = configSchema.parse(config);
    const prefix = (parsed.prefix ?? "").replace(/^\/+|\/+$/g, "");
    return makeProvider({
      datastoreType: "@marsh/s3-datastore",
      scope: `s3://${parsed.bucket}/${prefix}`,
      store: new S3Store(parsed),
      details: { bucket: parsed.bucket, prefix, region: parsed.region ?? "", endpoint: parsed.endpoint ?? "" },
      hints: {
        credentials: "check AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO) and the " +
          "s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject permissions on the bucket",
        missingBucket: `bucket ${parsed.bucket} does not exist (or is in another region/endpoint)`,
      },
      traceVariables: ["SWAMP_S3_SYNC_TRACE"],
    });
  },
};
