/**
 * swamp's `DatastoreSyncService` over the wasm engine. No sync decision is made here: each call builds the operation's
 * environment (abort signal, trace sink) and returns the count the engine reports (B18).
 *
 * @module
 */

import { abortError, makeEnv } from "./env.ts";
import type { MarshCache, MarshStore, MigrateIndexResult } from "./host.ts";
import type { DatastoreSyncOptions, DatastoreSyncService } from "./swamp.ts";
import { SyncService } from "./wasm.ts";

export interface SyncServiceOptions {
  /**
   * The datastore (`s3://bucket/prefix`): the core refuses every operation once a lock of this scope held by this
   * process was found taken over.
   */
  scope: string;
  trace?: (line: string) => void;
  concurrency?: number;
}

export class MarshSyncService implements DatastoreSyncService {
  readonly #service: SyncService;
  readonly #options: SyncServiceOptions;

  constructor(store: MarshStore, cache: MarshCache, options: SyncServiceOptions) {
    this.#service = new SyncService(store, cache, { concurrency: options.concurrency, scope: options.scope });
    this.#options = options;
  }

  async pullChanged(options?: DatastoreSyncOptions): Promise<number> {
    const report = await this.#service.pullChanged(this.#env(options));
    return report.downloaded;
  }

  async pushChanged(options?: DatastoreSyncOptions): Promise<number> {
    const report = await this.#service.pushChanged(this.#env(options));
    return report.uploaded;
  }

  async markDirty(options?: DatastoreSyncOptions): Promise<void> {
    await this.#service.markDirty(this.#env(options));
  }

  /** swamp's `datastore migrate-index`: convert a format-1 bucket to the sharded format 2 (a no-op on format 2). */
  async migrateMonolithToShards(options?: DatastoreSyncOptions): Promise<MigrateIndexResult> {
    return await this.#service.migrateMonolithToShards(this.#env(options));
  }

  /** The engine's own reports and status, for the CLI. */
  get engine(): SyncService {
    return this.#service;
  }

  #env(options?: DatastoreSyncOptions) {
    // B15: an already-aborted signal rejects before any request.
    if (options?.signal?.aborted) throw abortError();
    return makeEnv(options?.signal, this.#options.trace);
  }
}
