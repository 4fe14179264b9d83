//! The boundary between the core and its JavaScript host: the only module that touches `JsValue` or `wasm_bindgen`.
//!
//! The host passes plain objects with async methods (their exact shapes are written down in `js/host.ts`):
//! - [`JsStore`] wraps a `MarshStore` and implements [`ObjectStore`] with `Body = JsValue`: a body is an opaque host
//!   handle (a stream, a file path, bytes) that Rust hands from the store to the cache and back, never reads.
//! - [`JsCache`] wraps a `MarshCache` and implements [`LocalCache`] with the same `Body`.
//! - [`JsEnv`] wraps a `MarshEnv` (sleep, abort signal, trace) and implements [`Env`].
//!
//! Errors cross in both directions as objects with a `kind` string (`"NotFound"`, `"PreconditionFailed"`, …): a host
//! method throws `{ kind, status?, key?, message }` and [`store_error_from_js`] turns it into a
//! [`StoreError`](crate::store::StoreError); anything without a known kind becomes `Io` with its message, so a host bug
//! is never mistaken for a retryable failure. The core's own failures go back as real JS `Error`s with a `kind`: a
//! sync operation's (`SyncService`), a lock's (`LockClient`), a control-plane request's (`ControlPlaneStore`), or a
//! wrong argument (`InvalidArgument`).
//!
//! Exported entry points (`#[wasm_bindgen]` classes and functions) take the host objects as `JsValue`, wrap them with
//! `JsStore::from_js` / `JsCache::from_js` / `JsEnv::from_js` (which check the methods exist, so a wrong object fails
//! at the call, not halfway through a sync), run the core, and return `Result<_, JsValue>`.

mod control;
mod host;
mod lock;
pub mod memcmp;
mod namespaces;
mod service;

pub use control::ControlPlaneStore;
pub use host::{js_error, store_error_from_js, JsCache, JsEnv, JsStore};
pub use lock::LockClient;
pub use namespaces::{list_namespaces, register_namespace};
pub use service::SyncService;

use wasm_bindgen::prelude::*;

// Lets the generated `.d.ts` name the host interfaces (the glue lives in `js/gen/`, next to `js/host.ts`).
#[wasm_bindgen(typescript_custom_section)]
const HOST_TYPES: &str = r#"import type {
  LockClientOptions, LockIdentity, LockInfo, MarshCache, MarshEnv, MarshStore, MigrateIndexResult, PullOptions,
  PullReport, PushManifest, PushPreview, PushReport, ResolveReport, SyncOptions, SyncStatus,
} from "../host.ts";"#;

// ---------------------------------------------------------------------------------------------------------------------
// Exports

/// The crate version (`marsh --version`).
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}
