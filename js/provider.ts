/**
 * The part of a swamp `DatastoreProvider` that S3 and GCS share: locks, verifier, sync service and paths, built on
 * whatever `MarshStore` the extension constructs.
 *
 * @module
 */

import { join } from "node:path";

import { DenoCache } from "./cache.ts";
import { datastoreControlPlaneStore } from "./control_plane.ts";
import { makeEnv, traceFromEnvironment } from "./env.ts";
import type { MarshStore } from "./host.ts";
import { MarshLock } from "./lock.ts";
import { MarshSyncService } from "./sync_service.ts";
import { listNamespaces, registerNamespace } from "./wasm.ts";
import type { DatastoreCapabilities, DatastoreProvider, LockOptions } from "./swamp.ts";
import { makeVerifier, type VerifierHints } from "./verifier.ts";

export interface ProviderParts {
  datastoreType: string;
  /** `s3://bucket/prefix` or `gs://bucket/prefix`: names the shared state (locks are scoped by it). */
  scope: string;
  store: MarshStore;
  details: Record<string, string>;
  hints: VerifierHints;
  /** Environment variables that turn tracing on (B21). */
  traceVariables: string[];
}

/**
 * What works of today's optional surface, and nothing else: swamp relies on whatever is `true`. Each `true` has a test
 * calling the methods it promises (tests/deno/control_plane_test.ts).
 */
export const CAPABILITIES: Readonly<Required<DatastoreCapabilities>> = Object.freeze({
  scopedSync: true,
  lazyHydration: true,
  namespacedSync: true,
  twoPhaseSync: true,
  previewPush: true,
  controlPlane: true,
  configRefresh: true,
});

export function makeProvider(parts: ProviderParts): DatastoreProvider {
  const trace = traceFromEnvironment(["MARSH_SYNC_TRACE", ...parts.traceVariables]);
  return {
    createLock: (_datastorePath: string, options?: LockOptions) => new MarshLock(parts.store, parts.scope, options),
    createVerifier: () => makeVerifier(parts.store, parts.datastoreType, parts.details, parts.hints),
    createSyncService: (_repoDir: string, cachePath: string) =>
      new MarshSyncService(parts.store, new DenoCache(cachePath), { scope: parts.scope, trace }),
    resolveDatastorePath: (repoDir: string) => join(repoDir, ".swamp"),
    // swamp then picks ~/.swamp/repos/<repoId> for the cache.
    resolveCachePath: (_repoDir: string) => undefined,
    capabilities: () => ({ ...CAPABILITIES }),
    datastoreControlPlaneStore: () => datastoreControlPlaneStore(parts.store),
    registerNamespace: async (_datastorePath: string, namespace: string, repoId: string) =>
      await registerNamespace(parts.store, makeEnv(undefined, trace), namespace, repoId),
    listNamespaces: async (_datastorePath: string) => await listNamespaces(parts.store, makeEnv(undefined, trace)),
  };
}
