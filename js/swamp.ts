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
}

export interface DatastoreProvider {
  createLock(datastorePath: string, options?: LockOptions): DistributedLock;
  createVerifier(): DatastoreVerifier;
  createSyncService?(repoDir: string, cachePath: string): DatastoreSyncService;
  resolveDatastorePath(repoDir: string): string;
  resolveCachePath?(repoDir: string): string | undefined;
}
