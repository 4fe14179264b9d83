/**
 * swamp's `DistributedLock` over the core's lock protocol (`LockClient` in wasm). The protocol — create-if-absent,
 * compare-and-swap heartbeat, conditional take-over of a stale lock, nonce-checked release — lives in Rust; this file
 * only owns the heartbeat timer (every ttl/3) and remembers a lost lock so the holder's next operation fails loudly.
 *
 * @module
 */

import { makeEnv } from "./env.ts";
import type { MarshStore } from "./host.ts";
import type { DistributedLock, LockInfo, LockOptions } from "./swamp.ts";
import { LockClient } from "./wasm.ts";

/** Locks held by this process, by datastore scope, so sync services can refuse to run under a lost lock. */
const heldLocks = new Map<string, Set<MarshLock>>();

/** Throws the lock's `LockLostError` if any lock this process holds on `scope` was taken over by another process. */
export function assertNoLostLock(scope: string): void {
  for (const lock of heldLocks.get(scope) ?? []) lock.assertHeld();
}

function identity(): { holder: string; hostname: string; pid: number } {
  let user = "unknown";
  let hostname = "unknown";
  try {
    user = Deno.env.get("USER") ?? Deno.env.get("USERNAME") ?? user;
  } catch { /* no --allow-env */ }
  try {
    hostname = Deno.hostname();
  } catch { /* no --allow-sys */ }
  return { holder: `${user}@${hostname}`, hostname, pid: Deno.pid };
}

export class MarshLock implements DistributedLock {
  readonly #client: LockClient;
  readonly #scope: string;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #lost: unknown;

  constructor(store: MarshStore, scope: string, options: LockOptions = {}) {
    this.#client = new LockClient(store, options, identity());
    this.#scope = scope;
  }

  async acquire(): Promise<void> {
    await this.#client.acquire(makeEnv());
    this.#lost = undefined;
    const scoped = heldLocks.get(this.#scope) ?? new Set();
    scoped.add(this);
    heldLocks.set(this.#scope, scoped);
    this.#startHeartbeat();
  }

  async release(): Promise<void> {
    this.#stopHeartbeat();
    heldLocks.get(this.#scope)?.delete(this);
    await this.#client.release();
  }

  async withLock<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    let result: T;
    try {
      result = await fn();
    } catch (error) {
      await this.release();
      throw error;
    }
    // A lock lost while `fn` ran means another process may have written meanwhile: say so, even if `fn` succeeded.
    const lost = this.#lost;
    await this.release();
    if (lost !== undefined) throw lost;
    return result;
  }

  async inspect(): Promise<LockInfo | null> {
    return await this.#client.inspect();
  }

  async forceRelease(expectedNonce: string): Promise<boolean> {
    return await this.#client.forceRelease(expectedNonce);
  }

  /** Throws if a heartbeat found the lock taken over. */
  assertHeld(): void {
    if (this.#lost !== undefined) throw this.#lost;
    if (this.#client.isHeld()) this.#client.ensureHeld();
  }

  #startHeartbeat(): void {
    this.#stopHeartbeat();
    const interval = Math.max(10, Math.floor(this.#client.ttlMs / 3));
    const timer = setInterval(() => {
      this.#client.heartbeat(makeEnv()).catch((error: { name?: string }) => {
        // Transient failures are retried on the next tick; a lost lock stops the heartbeat for good.
        if (error?.name === "LockLostError") {
          this.#lost = error;
          this.#stopHeartbeat();
        }
      });
    }, interval);
    Deno.unrefTimer(timer);
    this.#heartbeat = timer;
  }

  #stopHeartbeat(): void {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }
}
