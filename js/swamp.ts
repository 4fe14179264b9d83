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
}

export interface LockInfo {
  holder: string;
  hostname: string;
  pid: number;
  acquiredAt: string;
  ttlMs: number;
  nonce?: string;
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
}

/** What `markDirty` may say since the hosts after April: which path is about to be written or deleted. */
export interface MarkDirtyOptions extends DatastoreSyncOptions {
  /** Cache-relative, `/`-separated; absent, empty or outside the cache: anything may change. */
  relPath?: string;
}

export interface DatastoreSyncService {
  pullChanged(options?: DatastoreSyncOptions): Promise<number | void>;
  pushChanged(options?: DatastoreSyncOptions): Promise<number | void>;
  markDirty(options?: MarkDirtyOptions): Promise<void>;
  /** Bring one file into the cache atomically; `true` only when it is then in place. */
  hydrateFile?(relPath: string, options?: DatastoreSyncOptions): Promise<boolean>;
  /** One file's remote bytes, the cache untouched; `null` when the bucket has none. */
  fetchContent?(relPath: string, options?: DatastoreSyncOptions): Promise<Uint8Array | null>;
}

export interface DatastoreProvider {
  createLock(datastorePath: string, options?: LockOptions): DistributedLock;
  createVerifier(): DatastoreVerifier;
  createSyncService?(repoDir: string, cachePath: string): DatastoreSyncService;
  resolveDatastorePath(repoDir: string): string;
  resolveCachePath?(repoDir: string): string | undefined;
}
