//! The boundary between the core and its JavaScript host: the only module that touches `JsValue` or `wasm_bindgen`.
//!
//! The host passes plain objects with async methods (their exact shapes are written down in `js/host.ts`):
//! - [`JsStore`] wraps a `MarshStore` and implements [`ObjectStore`] with `Body = JsValue`: a body is an opaque host
//!   handle (a stream, a file path, bytes) that Rust hands from the store to the cache and back, never reads.
//! - [`JsCache`] wraps a `MarshCache` and implements [`LocalCache`] with the same `Body`.
//! - [`JsEnv`] wraps a `MarshEnv` (sleep, abort signal, trace) and implements [`Env`].
//!
//! Errors cross in both directions as objects with a `kind` string (`"NotFound"`, `"PreconditionFailed"`, …): a host
//! method throws `{ kind, status?, key?, message }` and [`store_error_from_js`] turns it into a [`StoreError`]; anything
//! without a known kind becomes `Io` with its message, so a host bug is never mistaken for a retryable failure.
//! [`store_error_to_js`] goes the other way, producing a real JS `Error` carrying the same properties.
//!
//! Exported entry points (`#[wasm_bindgen]` functions) take the host objects as `JsValue`, wrap them with
//! `JsStore::from_js` / `JsCache::from_js` / `JsEnv::from_js` (which check the methods exist, so a wrong object fails
//! at the call, not halfway through a sync), run the core, and return `Result<_, JsValue>` via `store_error_to_js`.

mod host;
mod lock;
pub mod memcmp;
mod service;

pub use host::{js_error, store_error_from_js, store_error_to_js, JsCache, JsEnv, JsStore};
pub use lock::LockClient;
pub use service::SyncService;

use js_sys::Object;
use wasm_bindgen::prelude::*;

use crate::store::{Fetched, ObjectStore, StoreError};
use host::set;

// Lets the generated `.d.ts` name the host interfaces (the glue lives in `js/gen/`, next to `js/host.ts`).
#[wasm_bindgen(typescript_custom_section)]
const HOST_TYPES: &str = r#"import type {
  LockClientOptions, LockIdentity, LockInfo, MarshCache, MarshEnv, MarshStore, PullReport, PushReport, SyncOptions,
  SyncStatus,
} from "../host.ts";"#;

// ---------------------------------------------------------------------------------------------------------------------
// Exports

/// The crate version (`marsh --version`).
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

/// Smoke export: GET `key` through the [`ObjectStore`] trait and answer `{ token, size }`. Proves that an async JS
/// store, the promise bridge and the error mapping work end to end.
#[wasm_bindgen(js_name = probeGet, unchecked_return_type = "{ token: string; size: number }")]
pub async fn probe_get(
    #[wasm_bindgen(unchecked_param_type = "MarshStore")] store: JsValue,
    key: String,
) -> Result<JsValue, JsValue> {
    let store = JsStore::from_js(store)?;
    match store.get(&key, None).await {
        Ok(Fetched::Found { token, size, .. }) => {
            let answer = Object::new();
            set(&answer, "token", &JsValue::from_str(token.as_str()));
            set(&answer, "size", &JsValue::from_f64(size as f64));
            Ok(answer.into())
        }
        Ok(Fetched::NotModified) => Err(store_error_to_js(&StoreError::Io {
            message: format!("{key}: \"not modified\" to an unconditional GET"),
        })),
        Err(error) => Err(store_error_to_js(&error)),
    }
}
