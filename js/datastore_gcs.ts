/**
 * The swamp datastore extension `@marsh/gcs-datastore`: swamp's repo data mirrored to Google Cloud Storage by the
 * marsh engine. The configuration schema is the official extension's, so switching is a type change.
 *
 * @module
 */

import { z } from "npm:zod@4.1.12";

import { GcsStore } from "./gcs.ts";
import { makeProvider } from "./provider.ts";
import type { DatastoreProvider } from "./swamp.ts";

export const configSchema = z.object({
  bucket: z.string().min(3).max(63)
    .regex(/^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/, "not a valid GCS bucket name")
    .refine((name) => !name.startsWith("goog"), 'GCS bucket names cannot start with "goog"')
    .refine((name) => !name.includes("google"), 'GCS bucket names cannot contain "google"'),
  prefix: z.string().optional(),
  projectId: z.string().optional(),
  apiEndpoint: z.url().optional(),
});

export type GcsDatastoreConfig = z.infer<typeof configSchema>;

export const datastore = {
  type: "@marsh/gcs-datastore",
  name: "Google Cloud Storage (marsh)",
  description: "Mirrors the swamp repository to a GCS bucket with the race-free marsh sync engine " +
    "(compare-and-swap index writes, verified fast paths, conditional locks).",
  configSchema,
  createProvider(config: Record<string, unknown>): DatastoreProvider {
    const parsed = configSchema.parse(config);
    const prefix = (parsed.prefix ?? "").replace(/^\/+|\/+$/g, "");
    return makeProvider({
      datastoreType: "@marsh/gcs-datastore",
      scope: `gs://${parsed.bucket}/${prefix}`,
      store: new GcsStore(parsed),
      details: {
        bucket: parsed.bucket,
        prefix,
        projectId: parsed.projectId ?? "",
        apiEndpoint: parsed.apiEndpoint ?? "",
      },
      hints: {
        credentials: "check application default credentials (GOOGLE_APPLICATION_CREDENTIALS, " +
          "`gcloud auth application-default login`, workload identity) and roles/storage.objectAdmin on the bucket",
        missingBucket: `bucket ${parsed.bucket} does not exist (or the project is wrong)`,
      },
      traceVariables: ["SWAMP_GCS_SYNC_TRACE"],
    });
  },
};
