/**
 * The host interface of the wasm core: the objects that TypeScript hands to Rust, and what Rust expects of them.
 * `src/wasm/host.rs` calls exactly these methods (`JsStore`, `JsCache`, `JsEnv`), and `src/wasm/service.rs`,
 * `src/wasm/lock.rs` and `src/wasm/control.rs` read the options and produce the reports and errors below; types only.
 *
 * Keys and paths are cache-relative (`a/b.json`); a store adds its own bucket prefix. Every method may be async (a
 * plain return value is accepted too). To fail, throw a {@link MarshHostError}-shaped object: any other throw is
 * treated as a local I/O error (`Io`), never retried.
 *
 * @module
 */

/** A version token in normal form: an S3 ETag without its quotes, or a GCS generation as a decimal string. */
export type VersionToken = string;

/** Condition on a write: a blind overwrite, create-only, or replace-only-this-version. */
export type Precondition =
  | { kind: "none" }
  /** S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`. */
  | { kind: "ifAbsent" }
  /** S3 `If-Match: "<etag>"`, GCS `ifGenerationMatch=<generation>`. */
  | { kind: "ifMatch"; token: VersionToken };

/**
 * The `kind` of an error crossing the boundary, in either direction. There is no "not modified" kind: a conditional
 * GET whose token is current answers {@link NotModified}, it never throws.
 */
export type MarshErrorKind =
  | "NotFound"
  | "PreconditionFailed"
  /** Timeouts, 429, 5xx, 409 conditional-request conflicts, transport errors: retried by the core. */
  | "Transient"
  /** 401/403, missing credentials: never retried. */
  | "Auth"
  /** Any other HTTP status: not retried. */
  | "Http"
  | "Aborted"
  | "InvalidKey"
  /** A download whose bytes are not what the index entry says (size or sha256): the cache file is left alone. */
  | "Mismatch"
  /**
   * The cache file is not what the operation saw (a local write landed meanwhile): a download or removal refuses to
   * touch it, and the file is left as it is.
   */
  | "LocalChanged"
  | "Io";

/**
 * What a host method throws to report a typed failure (an `Error` with these extra properties is best). `key` defaults
 * to the key of the call; `status` is the HTTP status, when there is one. A DOM `AbortError` also counts as `Aborted`.
 */
export interface MarshHostError {
  kind: MarshErrorKind;
  message: string;
  status?: number;
  key?: string;
}

/** How a wasm export refuses a wrong argument: a host object missing methods, a lock identity without a holder. */
export interface MarshError extends Error {
  name: "MarshError";
  kind: "InvalidArgument";
}

/**
 * How a `SyncService` operation fails. Aborts are named `AbortError` (kind `Aborted`); a lost lock of the service's
 * scope fails it as a {@link MarshLockError} named `LockLostError` (kind `LockLost`).
 */
export interface MarshSyncError extends Error {
  name: "MarshError" | "AbortError";
  kind:
    | "Aborted"
    | "IndexUnreadable"
    | "IndexCorrupt"
    /** The bucket's format marker asks for a newer reader (or is not a marker): nothing was read further or written. */
    | "FormatUnsupported"
    | "IndexContended"
    | "IndexWrite"
    | "Local"
    | "Files"
    /** A push found paths changed here and in the bucket: everything else was pushed, these were left alone. */
    | "Conflicts"
    /** A push after a bare markDirty found more files gone than it may delete: nothing was written. */
    | "MassDeletion"
    /** `resolveConflict` for a path with no open conflict: nothing changed. */
    | "NoConflict"
    /** A path or option the call cannot use (an absolute or `..` path, a bad `subdirs`): the message names it. */
    | "InvalidArgument";
  /** For IndexUnreadable / IndexWrite / Local: the underlying store or cache error kind, and its HTTP status. */
  causeKind?: MarshErrorKind;
  status?: number;
  /** For Files: every file that failed (the others were transferred). */
  failures?: { rel: string; kind: MarshErrorKind; message: string; status?: number }[];
  /** For Files and Conflicts: the files that were transferred all the same. */
  transferred?: number;
  /** For Conflicts: each path left alone on both sides, and how the two sides diverged. */
  conflicts?: Conflict[];
  /** For MassDeletion: files gone from the cache, and the most a push may delete without marks naming them. */
  count?: number;
  limit?: number;
}

/**
 * How the two sides of a conflict diverged from the last version this cache synced (`src/local/conflicts.rs`):
 * edited on both sides, deleted here and edited there, edited here and deleted there, created on both sides with
 * different bytes, or the object changed in the bucket while this push uploaded it.
 */
export type ConflictKind = "both-changed" | "deleted-here" | "deleted-there" | "created-both" | "object-moved";

/** A path in conflict: neither side was overwritten, until `resolveConflict` (or `marsh resolve`) picks one. */
export interface Conflict {
  rel: string;
  kind: ConflictKind;
}

/**
 * How a `LockClient` operation fails. `LockTimeoutError` carries the holder (with `holderUnknown` when its body could not
 * be read), `code: "lock_timeout"` and `retryable: true` (what today's swamp reads); `LockLostError` the new holder.
 */
export interface MarshLockError extends Error {
  name: "LockTimeoutError" | "LockLostError" | "AbortError" | "MarshError";
  kind: "LockTimeout" | "LockLost" | "LockNotHeld" | "LockCorrupt" | "Aborted" | MarshErrorKind;
  code?: "lock_timeout";
  retryable?: true;
  lockKey?: string;
  holder?: LockInfo | null;
  waitedMs?: number;
}

/**
 * How a `ControlPlaneStore` request fails: `InvalidKey` (an empty, absolute or `..` key, named in `key`),
 * `InvalidArgument` (a namespace that is not a safe relative path), `Aborted` (name `AbortError`), or the store
 * error's kind after the retry policy, with `key` and, when there is one, the HTTP `status`.
 */
export interface MarshControlError extends Error {
  name: "MarshError" | "AbortError";
  kind: MarshErrorKind | "InvalidArgument";
  key?: string;
  status?: number;
}

/**
 * An object body in flight between the store and the cache: Rust never reads it, it only hands it over.
 * - From `MarshStore.get` to `MarshCache.download`: a {@link DownloadBody} (the response stream).
 * - From `MarshCache.prepareUpload` to `MarshStore.put`: an {@link UploadBody} (opened lazily, streamed by the store).
 * Bodies are streamed: a whole file is never held in memory (W15).
 */
export type Body = DownloadBody | UploadBody;

/** The bytes of a GET response, read once by `MarshCache.download`. */
export type DownloadBody = ReadableStream<Uint8Array>;

/** A cache file to upload: its size (as stat'ed before hashing) and a way to open it as a stream. */
export interface UploadBody {
  size: number;
  /** Open the file for reading; called once per PUT attempt. */
  open(): Promise<ReadableStream<Uint8Array>>;
}

/** The last argument of every store and cache call: the operation's abort signal, to pass on to fetch/SDK calls. */
export interface CallOptions {
  signal?: AbortSignal;
}

/** The answer of a conditional GET whose `ifNoneMatch` token is still current. */
export interface NotModified {
  notModified: true;
}

export interface ObjectMeta {
  token: VersionToken;
  /** Bytes. */
  size: number;
}

export interface FetchedBody extends ObjectMeta {
  body: Body;
}

export interface FetchedBytes extends ObjectMeta {
  bytes: Uint8Array;
}

export interface ListedObject extends ObjectMeta {
  key: string;
}

export interface ListPage {
  objects: ListedObject[];
  /** Present when there are more objects: pass it back as `pageToken`. */
  nextPageToken?: string;
}

/**
 * The remote bucket (an S3 or GCS adapter). Adapters must not retry: the core decides what to retry. A missing object
 * throws `{ kind: "NotFound" }`; a failed precondition throws `{ kind: "PreconditionFailed" }`.
 */
export interface MarshStore {
  /** GET a body with its token; with `ifNoneMatch`, answer `{ notModified: true }` when the token is unchanged. */
  get(key: string, ifNoneMatch?: VersionToken, options?: CallOptions): Promise<FetchedBody | NotModified>;
  /**
   * GET a small object (index, lock) as bytes. The bytes are handed over: once the core has copied them it frees their
   * buffer (detaches it), so answer a buffer of your own making, never one you keep.
   */
  getBytes(key: string, ifNoneMatch?: VersionToken, options?: CallOptions): Promise<FetchedBytes | NotModified>;
  head(key: string, options?: CallOptions): Promise<ObjectMeta>;
  /** PUT a body prepared by the cache; answers the new token. */
  put(key: string, body: Body, precondition: Precondition, options?: CallOptions): Promise<{ token: VersionToken }>;
  /**
   * PUT a small object (index, lock) from bytes; answers the new token. The bytes are the core's copy, freed (detached)
   * once the call succeeds: copy what you keep.
   */
  putBytes(
    key: string,
    bytes: Uint8Array,
    precondition: Precondition,
    options?: CallOptions,
  ): Promise<{ token: VersionToken }>;
  /** DELETE, only if the object still has `ifMatch` when given. Deleting a missing object throws `NotFound`. */
  delete(key: string, ifMatch?: VersionToken, options?: CallOptions): Promise<void>;
  /** One page of the objects whose key starts with `prefix`. */
  list(prefix: string, pageToken?: string, options?: CallOptions): Promise<ListPage>;
}

export interface FileStat {
  size: number;
  /** Milliseconds since the epoch (fractions are rounded). */
  mtimeMs: number;
}

/** A SHA-256 digest as 64 lowercase hex digits. */
export type Sha256Hex = string;

/** One entry of a cache walk: vanished and symlinked entries are reported, never followed or silently dropped. */
export type WalkItem =
  | ({ kind: "file"; rel: string } & FileStat)
  /** Listed, then gone before it could be stat'ed. */
  | { kind: "vanished"; rel: string }
  /** Not followed. */
  | { kind: "symlink"; rel: string };

/**
 * A walk packed for the boundary: `files` holds the files' rels joined by NUL (which no path contains), as UTF-8 bytes
 * (what `DenoCache` builds: no string per file) or as one string. Bytes are handed over: once the core has copied them
 * it frees their buffer (detaches it), so answer a buffer of your own making, never one you keep.
 */
export interface PackedWalk {
  files: Uint8Array | string;
  /** Bytes, one per file, in the order of `files`. */
  sizes: Float64Array;
  /** Milliseconds since the epoch, one per file, in the order of `files`. */
  mtimes: Float64Array;
  symlinks: string[];
  vanished: string[];
}

/** What `statMany` found at each path, in the order asked: one item per path in each array. */
export interface PackedStats {
  /**
   * 0: no regular file (nothing, a directory, or a file where a directory above would be); 1: a regular file; 2: a
   * symlink, at the path or at a directory between the root and it (never followed).
   */
  kinds: Uint8Array;
  /** Bytes, for a file (0 otherwise). */
  sizes: Float64Array;
  /** Milliseconds since the epoch, for a file (0 otherwise). */
  mtimes: Float64Array;
}

/** An internal file being read (`readInternalStream`): its size when opened, and its bytes. */
export interface InternalStream {
  size: number;
  stream: ReadableStream<Uint8Array>;
}

/** A file opened for upload: stat and hash taken before the body is read. */
export interface PreparedUpload extends FileStat {
  body: Body;
  sha256: Sha256Hex;
}

/** A file as written by `download`, or as found by `hash`. */
export interface HashedFile extends FileStat {
  sha256: Sha256Hex;
}

/** What a download must match before it may replace the cache file. */
export interface ExpectedDownload {
  size: number;
  sha256?: Sha256Hex;
  /**
   * What must be at `rel` for the download to replace it (a local write that landed since the operation looked is never
   * overwritten): absent, anything; `null`, no file; a stat, that very file. Otherwise `download` throws `LocalChanged`.
   */
  replaces?: FileStat | null;
}

/** The local cache directory (Deno fs in production). `rel` paths are checked by the core before any call. */
export interface MarshCache {
  /** `null` when the file does not exist. */
  stat(rel: string, options?: CallOptions): Promise<FileStat | null>;
  /** Every file under the root, internal ones included (the core filters). */
  walk(options?: CallOptions): Promise<WalkItem[]>;
  /**
   * Optional, preferred when present: the same walk packed for a cheap crossing into wasm (one string and two number
   * arrays instead of one object per file; a 250k-file cache crosses in a few calls, not a million).
   */
  walkPacked?(options?: CallOptions): Promise<PackedWalk>;
  /**
   * Optional, preferred when present: the state of many paths in one call (`rels` joined by NUL), without following a
   * symlink at a path or above it. A pull asks for the paths the index and the view name instead of walking the cache;
   * without this method the core walks. A file that vanishes meanwhile is absent; any other failure fails the call.
   */
  statMany?(rels: string, options?: CallOptions): Promise<PackedStats>;
  /**
   * `walk` restricted to `rel`: the file itself, every file under it when it is a directory, nothing when it does not
   * exist. A symlink at `rel` or above it is reported, never followed.
   */
  walkUnder(rel: string, options?: CallOptions): Promise<WalkItem[]>;
  /**
   * Remove a data file the bucket deleted, only if it still has the stat `expected` (`LocalChanged` otherwise: a local
   * write is never removed). A missing file is not an error.
   */
  removeFile(rel: string, expected: FileStat, options?: CallOptions): Promise<void>;
  /**
   * A small internal file at the root (index, sidecar); `null` when missing. Handed over like `getBytes`' answer: the
   * core frees the buffer once it has read it.
   */
  readInternal(name: string, options?: CallOptions): Promise<Uint8Array | null>;
  /**
   * Optional, preferred when present: the same file as a stream of chunks with the size it had when opened (`null` when
   * missing). The core copies or hashes the chunks as they come, so a large internal file (a 250k-file view is 38 MB)
   * is never whole in JS memory.
   */
  readInternalStream?(name: string, options?: CallOptions): Promise<InternalStream | null>;
  /**
   * Replace a small internal file atomically (temp file in the same directory, then rename). `name` may be inside an
   * internal folder at the root (`.marsh-marks/<mark>`), created when missing. Like `putBytes`, the bytes are freed
   * once the call succeeds: copy what you keep.
   */
  writeInternal(name: string, bytes: Uint8Array, options?: CallOptions): Promise<void>;
  /** The names in an internal folder at the root (`.marsh-marks`); `[]` when it does not exist. */
  listInternal(folder: string, options?: CallOptions): Promise<string[]>;
  /** Remove an internal file (`.marsh-marks/<mark>`); a missing one is not an error. */
  removeInternal(name: string, options?: CallOptions): Promise<void>;
  /** Stat, hash and open a file for upload; `null` when it vanished. */
  prepareUpload(rel: string, options?: CallOptions): Promise<PreparedUpload | null>;
  /**
   * Write `body` to a temp name, verify it against `expected` (`Mismatch` otherwise), then rename onto `rel` if what is
   * there is still what `expected.replaces` allows (`LocalChanged` otherwise; the temp file is removed either way).
   */
  download(rel: string, body: Body, expected: ExpectedDownload, options?: CallOptions): Promise<HashedFile>;
  /** Hash a cache file; `null` when missing. */
  hash(rel: string, options?: CallOptions): Promise<HashedFile | null>;
  /**
   * Create the data folder `rel` and its parents when missing (a metadata-only pull leaves content files out, not
   * their folders). A symlink on the way is refused; a file in the way is an `Io` error.
   */
  createDir(rel: string, options?: CallOptions): Promise<void>;
}

/**
 * Host services for one operation. The clock (`Date.now`) and randomness (`Math.random`) are taken from JS built-ins
 * directly; the host provides sleeping and the operation's abort signal.
 */
export interface MarshEnv {
  /** Resolve after `ms` milliseconds; reject (e.g. with an `AbortError`) as soon as `signal` aborts. */
  sleep(ms: number): Promise<void>;
  /** Read through `signal.aborted` before and after every wait. */
  signal?: { readonly aborted: boolean };
  /** One trace line (per-phase timings), called only when tracing is on; a throwing callback is ignored. */
  trace?(line: string): void;
  /** Transfer progress (plan, then one event per file moved); a throwing callback is ignored. */
  progress?(event: ProgressEvent): void;
  /**
   * The namespace this operation targets: objects at `{namespace}/…`, files at `{cache}/{namespace}/…`. A service's
   * first pull, push or prepare binds it to its namespace (or to none); another one later is refused.
   */
  namespace?: string;
}

/** Options of the wasm `SyncService`. */
export interface SyncOptions {
  /** Transfers in flight at once (sliding window; default 16). */
  concurrency?: number;
  /** Index compare-and-swap attempts before giving up (default 8). */
  casAttempts?: number;
  /** Plan only: report what would move, write nothing. */
  dryRun?: boolean;
  /**
   * The datastore these operations sync (`s3://bucket/prefix`, as given to `LockClient`): once a heartbeat finds a
   * lock of this scope held by this process taken over, every operation rejects with `LockLostError` before any
   * request. Absent: no lock is watched.
   */
  scope?: string;
  /**
   * The most files a push may delete from the bucket because they are gone here after a bare `markDirty` (no path
   * naming them); more is refused with `MassDeletion` (default 25).
   */
  maxInferredDeletions?: number;
  /** A pull brings back files gone here even when a mark says they were deleted (after a refused mass deletion). */
  restoreDeleted?: boolean;
  /** Bind the service to this namespace from the start (else its first pull, push or prepare binds it). */
  namespace?: string;
}

/** What `previewPush` counts: the files the next push would upload (new or changed) and delete. */
export interface PushPreview {
  total: number;
  new: number;
  changed: number;
  deleted: number;
}

/**
 * What `preparePush` hands to `commitPush`: opaque to the host except for the counts. `body` is the core's own record
 * of what the prepare did; the commit trusts it for nothing more than what it describes (every change is conditional).
 */
export interface PushManifest {
  marsh: 1;
  namespace: string | null;
  /** Files uploaded by the prepare. */
  uploaded: number;
  /** Objects the prepare removed (their entries go at the commit). */
  deleted: number;
  /** Paths changed here and in the bucket, left as they are: the commit reports them again. */
  conflicts: Conflict[];
  body: string;
}

/** What `MarshEnv.progress` receives. */
export type ProgressEvent =
  | { kind: "planned"; operation: "pull" | "push"; files: number; bytes: number }
  | { kind: "transferred"; operation: "pull" | "push"; rel: string; bytes: number };

export interface PullReport {
  downloaded: number;
  /** Local copies of files the bucket deleted, removed here (not counted in `downloaded`). */
  removed: string[];
  fastPath: boolean;
  verified: boolean;
  /** Files edited here and not pushed yet: left in place for the next push. */
  keptLocal: string[];
  /** Files deleted here (marked) and not pushed yet: left absent for the next push. */
  pendingDeletions: string[];
  /** Files whose object did not match its index entry when downloaded (a commit in flight): taken by a later pull. */
  inFlux: string[];
  /** Paths changed here and in the bucket: left as they are on both sides (a pull does not fail for them). */
  conflicts: Conflict[];
  indexEntries: number;
  planned: string[];
  /** Metadata-only pull: content files (`data/…/raw`) not downloaded; their folders were created. */
  skipped: string[];
}

/**
 * What one pull covers (swamp's sync options). A narrowed pull records no verified token, so the next full pull
 * compares everything again (docs/host-contract.md).
 */
export interface PullOptions {
  /** Lazy hydration: skip content files (`data/…/raw`) but create their folders. */
  metadataOnly?: boolean;
  /** Only paths under these top-level folders. */
  subdirs?: string[];
  /** Only these models' paths; on a format-2 bucket only their shards are read. */
  context?: { models?: { modelType: string; modelId: string }[] };
}

export interface PushReport {
  uploaded: number;
  /** Files deleted from the bucket (entry and object) because they were deleted here. */
  deleted: string[];
  fastPath: boolean;
  indexWritten: boolean;
  scrubbed: string[];
  symlinks: string[];
  vanished: string[];
  /** Empty in a real push's report (a push that finds conflicts rejects with kind `Conflicts`); a dry run lists them. */
  conflicts: Conflict[];
  remoteNewer: string[];
  verified: boolean;
  clean: boolean;
  /** The push used the walk of this service's preceding pull instead of walking the cache again. */
  walkReused: boolean;
  /** Only the paths named by `markDirty({ relPath })` were looked at (no walk of the cache). */
  markedOnly: boolean;
  /** Per-path marks handled and removed. */
  marksCleared: number;
  planned: string[];
}

export interface SyncStatus {
  sidecar: string;
  verifiedToken: string | null;
  verifiedAt: string | null;
  dirtyGeneration: number;
  locallyDirty: boolean;
  /** Per-path marks (`markDirty({ relPath })`) waiting for a push. */
  markedPaths: number;
  /** `true`: the remote index still has the verified token; `null`: nothing verified yet. */
  pullFastPath: boolean | null;
  /** The remote index's layout: 1 (one monolith object) or 2 (shards); `null` when there is none. */
  remoteFormat: 1 | 2 | null;
  /** Bytes of the remote index's commit object (`_index/_meta.json`, or the monolith); `null` when there is none. */
  remoteIndexSize: number | null;
  /** Open conflicts, as the last pulls and pushes found them. */
  conflicts: Conflict[];
}

/** What `resolveConflict(env, relPath, keep)` answers: which side won and what that did here. */
export interface ResolveReport {
  rel: string;
  kept: "local" | "remote";
  /** `remote`: the bucket's version was downloaded over the local file. */
  downloaded: boolean;
  /** `remote`: the bucket deleted the file, so the local copy was removed. */
  removedLocal: boolean;
  /** `local`: the path is marked, so the next push uploads the local file (or deletes the object if it is gone). */
  markedForPush: boolean;
}

/** What `migrateMonolithToShards` answers: the commit record after the migration (swamp's `MigrateIndexResult`). */
export interface MigrateIndexResult {
  version: 2;
  partitions: string[];
  commitSeq: number;
  /** False when the bucket was format 2 already (nothing was written). */
  converted: boolean;
}

/** Options of the wasm `LockClient` (swamp's `LockOptions`). */
export interface LockClientOptions {
  lockKey?: string;
  ttlMs?: number;
  retryIntervalMs?: number;
  maxWaitMs?: number;
  /** The lock lives below `{namespace}/` (a `lockKey` already starting with it is kept as it is). */
  namespace?: string;
}

export interface LockIdentity {
  holder: string;
  hostname: string;
  pid: number;
}

export interface LockInfo extends LockIdentity {
  acquiredAt: string;
  ttlMs: number;
  nonce?: string;
  /** The lock object exists but its body could not be read: the other fields are placeholders. */
  holderUnknown?: true;
}
