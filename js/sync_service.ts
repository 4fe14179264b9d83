/**
 * swamp's `DatastoreSyncService` over the wasm engine. No sync decision is made here: each call builds the operation's
 * environment (abort signal, trace sink) and returns the count the engine reports (B18).
 *
 * @module
 */

import { controlPlaneStore } from "./control_plane.ts";
import { abortError, makeEnv } from "./env.ts";
import type {
  Conflict,
  MarshCache,
  MarshStore,
  MigrateIndexResult,
  PullOptions,
  PushManifest,
  PushPreview,
  PushReport,
} from "./host.ts";
import type { ControlPlaneStore, DatastoreSyncOptions, DatastoreSyncService, MarkDirtyOptions } from "./swamp.ts";
import { SyncService } from "./wasm.ts";

export interface SyncServiceOptions {
  /**
   * The datastore (`s3://bucket/prefix`): the core refuses every operation once a lock of this scope held by this
   * process was found taken over.
   */
  scope: string;
  /**
   * The namespace bound to this service from the start, if any (else its first pull, push or prepare binds it): files
   * at `{cache}/{namespace}/…`, objects and control-plane records below `{namespace}/`.
   */
  namespace?: string;
  trace?: (line: string) => void;
  concurrency?: number;
  /**
   * Told when a pull leaves paths in conflict (changed here and in the bucket): swamp's `pullChanged` answers a count
   * only, so this is how the user hears of them. Defaults to a warning on stderr.
   */
  warn?: (message: string) => void;
}

/** "2 path(s) in conflict …: a.json (both-changed), b.json (deleted-there); …" */
export function describeConflicts(conflicts: Conflict[]): string {
  const listed = conflicts.map((conflict) => `${conflict.rel} (${conflict.kind})`).join(", ");
  return `${conflicts.length} path(s) changed both here and in the bucket, left as they are on both sides: ${listed}; ` +
    "resolve each with `marsh resolve PATH --keep-local` or `--keep-remote`";
}

/** swamp's pull options as the engine reads them; the engine checks them and names what it refuses. */
function pullOptions(options?: DatastoreSyncOptions): PullOptions {
  return { metadataOnly: options?.metadataOnly, subdirs: options?.subdirs, context: options?.context };
}

/**
 * Files uploaded; "unknown" (`undefined`) when the push only deleted: 0 tells swamp nothing changed in the bucket, and
 * a deletion did change it.
 */
function pushCount(report: PushReport): number | void {
  if (report.uploaded === 0 && report.deleted.length > 0) return undefined;
  return report.uploaded;
}

export class MarshSyncService implements DatastoreSyncService {
  readonly #service: SyncService;
  readonly #store: MarshStore;
  readonly #options: SyncServiceOptions;

  constructor(store: MarshStore, cache: MarshCache, options: SyncServiceOptions) {
    this.#service = new SyncService(store, cache, {
      concurrency: options.concurrency,
      scope: options.scope,
      namespace: options.namespace,
    });
    this.#store = store;
    this.#options = options;
  }

  /**
   * Files downloaded (removed local copies of files deleted elsewhere are not counted). A pull that only removed files
   * answers "unknown" (`undefined`), not 0: 0 tells swamp nothing changed, and it would keep listing the deleted files.
   * Conflicts do not fail a pull: both versions stay where they are, and `warn` names them.
   */
  async pullChanged(options?: DatastoreSyncOptions): Promise<number | void> {
    const report = await this.#service.pullChanged(this.#env(options), pullOptions(options));
    if (report.conflicts.length > 0) {
      (this.#options.warn ?? ((message) => console.warn(message)))(
        `marsh pull: ${describeConflicts(report.conflicts)}`,
      );
    }
    if (report.downloaded === 0 && report.removed.length > 0) return undefined;
    return report.downloaded;
  }

  /**
   * Files uploaded (`undefined` when it only deleted). A push that finds conflicts pushes everything else, then
   * rejects with a `MarshError` of kind `Conflicts` whose message and `conflicts` name the paths.
   */
  async pushChanged(options?: DatastoreSyncOptions): Promise<number | void> {
    const report = await this.#service.pushChanged(this.#env(options));
    return pushCount(report);
  }

  /**
   * Lazy hydration: bring `relPath` (as the index has it) into the cache through a temp file, verified, then renamed.
   * `true` when it is then in place (a file already here is left as it is); `false` when the index has no such entry.
   */
  async hydrateFile(relPath: string, options?: DatastoreSyncOptions): Promise<boolean> {
    return await this.#service.hydrateFile(this.#env(options), relPath);
  }

  /**
   * The bucket's bytes of `relPath` (one GET), without touching the cache; `null` when absent. Absolute paths and `..`
   * are refused (`InvalidArgument`, naming the path).
   */
  async fetchContent(relPath: string, options?: DatastoreSyncOptions): Promise<Uint8Array | null> {
    return await this.#service.fetchContent(this.#env(options), relPath);
  }

  /** What the next push would send (`{ total, new, changed, deleted }`); nothing is written anywhere. */
  async previewPush(options?: DatastoreSyncOptions): Promise<PushPreview> {
    return await this.#service.previewPush(this.#env(options));
  }

  /**
   * Phase one of a two-phase push: uploads new and changed files and removes deleted ones' objects, without touching
   * the index or the marks (every path stays marked until the commit). The manifest goes to `commitPush` as it is.
   */
  async preparePush(options?: DatastoreSyncOptions): Promise<PushManifest> {
    const manifest = await this.#service.preparePush(this.#env(options));
    if (manifest.conflicts.length > 0) {
      (this.#options.warn ?? ((message) => console.warn(message)))(
        `marsh prepare: ${describeConflicts(manifest.conflicts)}`,
      );
    }
    return manifest;
  }

  /**
   * Phase two: commits exactly the prepare's changes to the index (each on condition that its entry is still the one
   * the prepare decided on), then clears the marks it handled. Files uploaded, as `pushChanged` counts them.
   */
  async commitPush(manifest: unknown, options?: DatastoreSyncOptions): Promise<number | void> {
    const report = await this.#service.commitPush(this.#env(options), manifest as PushManifest);
    return pushCount(report);
  }

  /** `relPath`: the one path about to be written or deleted; without it, anything may change. */
  async markDirty(options?: MarkDirtyOptions): Promise<void> {
    await this.#service.markDirty(this.#env(options), options?.relPath);
  }

  /** `marsh resolve`: settle the open conflict on `relPath` (`NoConflict` when there is none). */
  async resolveConflict(relPath: string, keep: "local" | "remote", options?: DatastoreSyncOptions) {
    return await this.#service.resolveConflict(this.#env(options), relPath, keep);
  }

  /** swamp's `datastore migrate-index`: convert a format-1 bucket to the sharded format 2 (a no-op on format 2). */
  async migrateMonolithToShards(options?: DatastoreSyncOptions): Promise<MigrateIndexResult> {
    return await this.#service.migrateMonolithToShards(this.#env(options));
  }

  /** swamp's control plane: records under `_control/` (below the bound namespace), straight to the bucket. */
  controlPlaneStore(): ControlPlaneStore {
    return controlPlaneStore(this.#store, this.#options.namespace);
  }

  /** The engine's own reports and status, for the CLI. */
  get engine(): SyncService {
    return this.#service;
  }

  #env(options?: DatastoreSyncOptions) {
    // B15: an already-aborted signal rejects before any request.
    if (options?.signal?.aborted) throw abortError();
    return makeEnv(options?.signal, this.#options.trace, options?.namespace);
  }
}
