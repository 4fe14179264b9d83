/**
 * swamp's `DistributedLock` over the core's lock protocol (`LockClient` in wasm). The protocol — create-if-absent,
 * compare-and-swap heartbeat, conditional take-over of a stale lock, nonce-checked release — lives in Rust, and so does
 * the rule that a holder whose lock was taken over is told: the core refuses every sync operation of the lock's scope
 * once a heartbeat has found the loss. This file only owns the heartbeat timer (every ttl/3).
 *
 * @module
 */

import { makeEnv } from "./env.ts";
import type { MarshStore } from "./host.ts";
import type { DistributedLock, LockInfo, LockOptions } from "./swamp.ts";
import { LockClient } from "./wasm.ts";

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
  #heartbeat: ReturnType<typeof setInterval> | undefined;

  /** `scope` names the datastore (`s3://bucket/prefix`): the sync services of that scope watch this lock. */
  constructor(store: MarshStore, scope: string, options: LockOptions = {}) {
    this.#client = new LockClient(store, scope, options, identity());
  }

  async acquire(): Promise<void> {
    await this.#client.acquire(makeEnv());
    this.#startHeartbeat();
  }

  async release(): Promise<void> {
    this.#stopHeartbeat();
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
    const lost = this.#lostError();
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

  #startHeartbeat(): void {
    this.#stopHeartbeat();
    const interval = Math.max(10, Math.floor(this.#client.ttlMs / 3));
    const timer = setInterval(() => {
      this.#client.heartbeat(makeEnv()).catch((error: { name?: string }) => {
        // Transient failures are retried on the next tick; a lost lock stops the heartbeat for good.
        if (error?.name === "LockLostError") this.#stopHeartbeat();
      });
    }, interval);
    Deno.unrefTimer(timer);
    this.#heartbeat = timer;
  }

  /** The core's `LockLostError` if a heartbeat found the lock taken over, else `undefined`. */
  #lostError(): unknown {
    try {
      this.#client.ensureHeld();
    } catch (error) {
      if ((error as { name?: string })?.name === "LockLostError") return error;
    }
    return undefined;
  }

  #stopHeartbeat(): void {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }
}
