/**
 * The shapes swamp calls on a datastore extension (docs/host-contract.md). Extensions cannot import swamp, so they are
 * declared here; only types.
 *
 * @module
 */

export interface LockOptions {
  lockKey?: string;
  ttlMs?: number;
  retryIntervalMs?: number;
  maxWaitMs?: number;
  /** The global lock becomes `{ns}/.datastore.lock`, any other `lockKey` lives below `{ns}/`. */
  namespace?: string;
}

export interface LockInfo {
  holder: string;
  hostname: string;
  pid: number;
  acquiredAt: string;
  ttlMs: number;
  nonce?: string;
  /** A lock object is there but its body could not be read: the other fields are placeholders. */
  holderUnknown?: boolean;
}

export interface DistributedLock {
  acquire(): Promise<void>;
  release(): Promise<void>;
  withLock<T>(fn: () => Promise<T>): Promise<T>;
  inspect(): Promise<LockInfo | null>;
  forceRelease(expectedNonce: string): Promise<boolean>;
}

export interface DatastoreHealthResult {
  healthy: boolean;
  message: string;
  latencyMs: number;
  datastoreType: string;
  details?: Record<string, string>;
}

export interface DatastoreVerifier {
  verify(): Promise<DatastoreHealthResult>;
}

export interface DatastoreSyncOptions {
  signal?: AbortSignal;
  /** Lazy hydration (pull): content files (`data/…/raw`) are left out, their folders created. */
  metadataOnly?: boolean;
  /** Config refresh (pull): only these top-level folders of the cache. */
  subdirs?: string[];
  /** Scoped sync (pull): only these models' data, outputs and evaluated definitions. */
  context?: { models?: { modelType: string; modelId: string }[] };
  /** The namespace this operation targets (unset: no namespace). */
  namespace?: string;
}

/** What `markDirty` may say since the hosts after April: which path is about to be written or deleted. */
export interface MarkDirtyOptions extends DatastoreSyncOptions {
  /** Cache-relative, `/`-separated; absent, empty or outside the cache: anything may change. */
  relPath?: string;
}

/**
 * Small records under `_control/` (below the namespace when one is bound), read and written past the cache. Of
 * concurrent `putIfAbsent` calls for one key exactly one resolves to `true`.
 */
export interface ControlPlaneStore {
  put(key: string, bytes: Uint8Array): Promise<void>;
  putIfAbsent(key: string, bytes: Uint8Array): Promise<boolean>;
  get(key: string): Promise<Uint8Array | null>;
  delete(key: string): Promise<void>;
  list(prefix: string): Promise<string[]>;
}

/** `_control/<key>` at the datastore root whatever namespace is bound (swamp reads the format marker through it). */
export interface DatastoreControlPlaneStore {
  get(key: string, options?: { signal?: AbortSignal }): Promise<Uint8Array | null>;
}

export interface DatastoreSyncService {
  pullChanged(options?: DatastoreSyncOptions): Promise<number | void>;
  pushChanged(options?: DatastoreSyncOptions): Promise<number | void>;
  markDirty(options?: MarkDirtyOptions): Promise<void>;
  /** Bring one file into the cache atomically; `true` only when it is then in place. */
  hydrateFile?(relPath: string, options?: DatastoreSyncOptions): Promise<boolean>;
  /** One file's remote bytes, the cache untouched; `null` when the bucket has none. */
  fetchContent?(relPath: string, options?: DatastoreSyncOptions): Promise<Uint8Array | null>;
  /** A dry run of the next push (`previewPush`). */
  previewPush?(
    options?: DatastoreSyncOptions,
  ): Promise<{ total: number; new: number; changed: number; deleted: number }>;
  /** Two-phase push (`twoPhaseSync`): transfers without the global lock, then the index commit. */
  preparePush?(options?: DatastoreSyncOptions): Promise<unknown>;
  commitPush?(manifest: unknown, options?: DatastoreSyncOptions): Promise<number | void>;
  controlPlaneStore?(): ControlPlaneStore;
}

/** What a provider implements of today's optional surface; swamp uses only what is `true` (a throw counts as none). */
export interface DatastoreCapabilities {
  scopedSync?: boolean;
  lazyHydration?: boolean;
  namespacedSync?: boolean;
  twoPhaseSync?: boolean;
  previewPush?: boolean;
  controlPlane?: boolean;
  configRefresh?: boolean;
}

export interface DatastoreProvider {
  createLock(datastorePath: string, options?: LockOptions): DistributedLock;
  createVerifier(): DatastoreVerifier;
  createSyncService?(repoDir: string, cachePath: string): DatastoreSyncService;
  resolveDatastorePath(repoDir: string): string;
  resolveCachePath?(repoDir: string): string | undefined;
  capabilities?(): DatastoreCapabilities;
  datastoreControlPlaneStore?(): DatastoreControlPlaneStore;
  /** Claim `namespace` for `repoId` (create-only `{namespace}/.namespace.json`); another repository's claim rejects. */
  registerNamespace?(datastorePath: string, namespace: string, repoId: string): Promise<void>;
  /** The namespaces claimed in the bucket; empty: none. */
  listNamespaces?(datastorePath: string): Promise<string[]>;
}
