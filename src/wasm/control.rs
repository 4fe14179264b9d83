//! `ControlPlaneStore`: the control plane (`crate::control`) as a JS class, for swamp's `controlPlaneStore()` (below a
//! namespace when one is bound) and `datastoreControlPlaneStore()` (always the datastore root). Each call takes the
//! operation's `MarshEnv`, whose signal reaches every request.

use std::rc::Rc;

use js_sys::{Array, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::host::{js_error, set, store_error_kind, JsEnv, JsStore};
use crate::control::{ControlError, ControlPlane, ControlRoot};

#[wasm_bindgen]
pub struct ControlPlaneStore {
    inner: Rc<(JsStore, ControlRoot)>,
}

/// Run one control-plane request as a promise, the store bound to the call's signal.
fn request<F>(inner: &Rc<(JsStore, ControlRoot)>, env: JsValue, answer: F) -> Result<Promise, JsValue>
where
    F: for<'a> FnOnce(
            ControlPlane<'a, JsStore, JsEnv>,
        ) -> futures_util::future::LocalBoxFuture<'a, Result<JsValue, ControlError>>
        + 'static,
{
    let inner = inner.clone();
    let env = JsEnv::from_js(env)?;
    Ok(future_to_promise(async move {
        let store = inner.0.with_signal(env.signal());
        let plane = ControlPlane::new(&store, &env, inner.1.clone());
        answer(plane).await.map_err(|error| control_error_to_js(&error))
    }))
}

#[wasm_bindgen]
impl ControlPlaneStore {
    /// Records under `{namespace}/_control/` when `namespace` is given, else under `_control/` at the datastore root.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "MarshStore")] store: JsValue,
        namespace: Option<String>,
    ) -> Result<ControlPlaneStore, JsValue> {
        let root = ControlRoot::for_namespace(namespace.as_deref()).map_err(|e| control_error_to_js(&e))?;
        Ok(ControlPlaneStore { inner: Rc::new((JsStore::from_js(store)?, root)) })
    }

    /// The record's bytes, or `null` when there is none.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array | null>")]
    pub fn get(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
        key: String,
    ) -> Result<Promise, JsValue> {
        request(&self.inner, env, move |plane| {
            Box::pin(async move {
                let found = plane.get(&key).await?;
                Ok(found.map(|bytes| Uint8Array::from(bytes.as_slice()).into()).unwrap_or(JsValue::NULL))
            })
        })
    }

    /// Write the record, whatever is there.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn put(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
        key: String,
        bytes: Vec<u8>,
    ) -> Result<Promise, JsValue> {
        request(&self.inner, env, move |plane| {
            Box::pin(async move { plane.put(&key, &bytes).await.map(|()| JsValue::UNDEFINED) })
        })
    }

    /// Create the record only if there is none; `true` for the one creator that made it.
    #[wasm_bindgen(js_name = putIfAbsent, unchecked_return_type = "Promise<boolean>")]
    pub fn put_if_absent(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
        key: String,
        bytes: Vec<u8>,
    ) -> Result<Promise, JsValue> {
        request(&self.inner, env, move |plane| {
            Box::pin(async move { plane.put_if_absent(&key, &bytes).await.map(JsValue::from) })
        })
    }

    /// Remove the record; a missing one is not an error.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn delete(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
        key: String,
    ) -> Result<Promise, JsValue> {
        request(&self.inner, env, move |plane| {
            Box::pin(async move { plane.delete(&key).await.map(|()| JsValue::UNDEFINED) })
        })
    }

    /// The keys of the records whose key starts with `prefix` (`""`: all), without the `_control/` folder.
    #[wasm_bindgen(unchecked_return_type = "Promise<string[]>")]
    pub fn list(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
        prefix: String,
    ) -> Result<Promise, JsValue> {
        request(&self.inner, env, move |plane| {
            Box::pin(async move {
                let keys = plane.list(&prefix).await?;
                Ok(keys.iter().map(|key| JsValue::from_str(key)).collect::<Array>().into())
            })
        })
    }
}

/// A `ControlError` as a JS `Error`: `AbortError` for aborts, else `MarshError` whose `kind` is `InvalidKey`,
/// `InvalidArgument` (a bad namespace) or the store error's kind; `key` names the record, `status` the HTTP status.
fn control_error_to_js(error: &ControlError) -> JsValue {
    let message = error.to_string();
    let (kind, key) = match error {
        ControlError::InvalidKey { key, .. } => ("InvalidKey", Some(key)),
        ControlError::InvalidNamespace { .. } => ("InvalidArgument", None),
        ControlError::Store { key, source } => (store_error_kind(source), Some(key)),
        ControlError::Aborted { key } => ("Aborted", Some(key)),
    };
    let value = js_error(kind, &message);
    if matches!(error, ControlError::Aborted { .. }) {
        js_sys::Error::from(value.clone()).set_name("AbortError");
    }
    if let Some(key) = key {
        set(&value, "key", &key.as_str().into());
    }
    if let ControlError::Store { source, .. } = error {
        if let Some(status) = super::service::status_of(source) {
            set(&value, "status", &JsValue::from_f64(f64::from(status)));
        }
    }
    value
}
