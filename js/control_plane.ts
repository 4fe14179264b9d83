/**
 * swamp's control-plane stores over the core's `ControlPlaneStore` (src/control.rs): every rule — where a record lives,
 * which keys are refused, the retries, what `putIfAbsent` answers after a lost reply — is in Rust; each method here
 * forwards one call with its environment (abort signal).
 *
 * @module
 */

import { makeEnv } from "./env.ts";
import type { MarshStore } from "./host.ts";
import type { ControlPlaneStore, DatastoreControlPlaneStore } from "./swamp.ts";
import { ControlPlaneStore as CoreControlPlane } from "./wasm.ts";

/** Records under `{namespace}/_control/` when a namespace is given, else under `_control/`. */
export function controlPlaneStore(store: MarshStore, namespace?: string): ControlPlaneStore {
  const core = new CoreControlPlane(store, namespace);
  return {
    put: async (key, bytes) => await core.put(makeEnv(), key, bytes),
    putIfAbsent: async (key, bytes) => await core.putIfAbsent(makeEnv(), key, bytes),
    get: async (key) => await core.get(makeEnv(), key),
    delete: async (key) => await core.delete(makeEnv(), key),
    list: async (prefix) => await core.list(makeEnv(), prefix),
  };
}

/** `_control/<key>` at the datastore root, whatever namespace a service is bound to; `signal` aborts the read. */
export function datastoreControlPlaneStore(store: MarshStore): DatastoreControlPlaneStore {
  const core = new CoreControlPlane(store, undefined);
  return { get: async (key, options) => await core.get(makeEnv(options?.signal), key) };
}
