/**
 * `--store` URLs for the CLI: `s3://bucket/prefix`, `gs://bucket/prefix`, `file:///absolute/dir`.
 *
 * @module
 */

import { FsStore } from "./fs_store.ts";
import { GcsStore } from "./gcs.ts";
import type { MarshStore } from "./host.ts";
import { S3Store } from "./s3.ts";

export interface StoreFlags {
  /** S3: custom endpoint (MinIO, R2, moto); GCS: API endpoint (emulator mode, no auth). */
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  projectId?: string;
}

export interface OpenedStore {
  store: MarshStore;
  /** Names the shared state, e.g. for lock scoping and messages. */
  scope: string;
  kind: "s3" | "gcs" | "file";
}

export class UsageError extends Error {
  override name = "UsageError";
}

export function openStore(url: string, flags: StoreFlags = {}): OpenedStore {
  const match = /^(s3|gs|file):\/\/(.*)$/.exec(url);
  if (!match) throw new UsageError(`--store must be s3://bucket/prefix, gs://bucket/prefix or file:///dir, got ${url}`);
  const [, scheme, rest] = match;
  if (scheme === "file") {
    if (!rest.startsWith("/")) throw new UsageError(`file store needs an absolute path: file:///dir, got ${url}`);
    return { store: new FsStore(decodeURIComponent(rest)), scope: url, kind: "file" };
  }
  const [bucket, ...prefixParts] = rest.split("/");
  if (!bucket) throw new UsageError(`--store ${url} names no bucket`);
  const prefix = prefixParts.join("/").replace(/\/+$/, "") || undefined;
  if (scheme === "s3") {
    const store = new S3Store({
      bucket,
      prefix,
      region: flags.region,
      endpoint: flags.endpoint,
      forcePathStyle: flags.forcePathStyle,
    });
    return { store, scope: `s3://${bucket}/${prefix ?? ""}`, kind: "s3" };
  }
  const store = new GcsStore({ bucket, prefix, projectId: flags.projectId, apiEndpoint: flags.endpoint });
  return { store, scope: `gs://${bucket}/${prefix ?? ""}`, kind: "gcs" };
}
