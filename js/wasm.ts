/**
 * Loads the wasm core synchronously from the bytes embedded in `gen/wasm_bytes.ts` and re-exports its API.
 *
 * Extensions are bundled and loaded from a cache folder, where `import.meta.url` does not point at our files, so the
 * module is never fetched: it is decoded from base64 and instantiated with `initSync`, once per process (ES modules are
 * evaluated once, and the flag below guards against a second call anyway). Run `scripts/build-wasm.sh` to produce
 * `js/gen/`.
 *
 * @module
 */

import { initSync } from "./gen/marsh.js";
import { wasmBase64Chunks, wasmByteLength } from "./gen/wasm_bytes.ts";

export type * from "./host.ts";

let instantiated = false;

/** Decode the embedded module; each chunk is whole base64 quanta, so chunks decode independently. */
function embeddedWasmBytes(): Uint8Array {
  const bytes = new Uint8Array(wasmByteLength);
  let offset = 0;
  for (const chunk of wasmBase64Chunks) {
    const binary = atob(chunk);
    for (let i = 0; i < binary.length; i++) bytes[offset + i] = binary.charCodeAt(i);
    offset += binary.length;
  }
  if (offset !== wasmByteLength) {
    throw new Error(`embedded wasm is ${offset} bytes, expected ${wasmByteLength}: rerun scripts/build-wasm.sh`);
  }
  return bytes;
}

function instantiateOnce(): void {
  if (instantiated) return;
  initSync({ module: embeddedWasmBytes() });
  instantiated = true;
}

instantiateOnce();

// The wasm API. Add each new `#[wasm_bindgen]` export of src/wasm/ here.
export { ControlPlaneStore, listNamespaces, LockClient, registerNamespace, SyncService, version } from "./gen/marsh.js";
