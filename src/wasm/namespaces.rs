//! The provider's `registerNamespace` / `listNamespaces` (`crate::namespace`) as JS functions over a store at the
//! datastore root.

use js_sys::{Array, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::host::{js_error, set, store_error_kind, JsEnv, JsStore};
use crate::namespace::{self, Namespace, NamespaceError};
use crate::store::retry::RetryPolicy;

/// Claim `namespace` for `repoId` (a create-only `{namespace}/.namespace.json`). Resolves when the claim is this
/// repository's (new, or made before); rejects with kind `NamespaceClaimed` (with `owner`) when another repository has
/// it, `InvalidArgument` for a bad name.
#[wasm_bindgen(js_name = registerNamespace, unchecked_return_type = "Promise<void>")]
pub fn register_namespace(
    #[wasm_bindgen(unchecked_param_type = "MarshStore")] store: JsValue,
    #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
    namespace: String,
    #[wasm_bindgen(js_name = repoId)] repo_id: String,
) -> Result<Promise, JsValue> {
    let namespace = Namespace::parse(&namespace).map_err(|e| namespace_error_to_js(&e))?;
    let store = JsStore::from_js(store)?;
    let env = JsEnv::from_js(env)?;
    Ok(future_to_promise(async move {
        let store = store.with_signal(env.signal());
        namespace::register(&store, &env, &RetryPolicy::default(), &namespace, &repo_id)
            .await
            .map(|_| JsValue::UNDEFINED)
            .map_err(|e| namespace_error_to_js(&e))
    }))
}

/// The namespaces claimed in the bucket, sorted.
#[wasm_bindgen(js_name = listNamespaces, unchecked_return_type = "Promise<string[]>")]
pub fn list_namespaces(
    #[wasm_bindgen(unchecked_param_type = "MarshStore")] store: JsValue,
    #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
) -> Result<Promise, JsValue> {
    let store = JsStore::from_js(store)?;
    let env = JsEnv::from_js(env)?;
    Ok(future_to_promise(async move {
        let store = store.with_signal(env.signal());
        let names =
            namespace::list(&store, &env, &RetryPolicy::default()).await.map_err(|e| namespace_error_to_js(&e))?;
        Ok(names.iter().map(|name| JsValue::from_str(name)).collect::<Array>().into())
    }))
}

fn namespace_error_to_js(error: &NamespaceError) -> JsValue {
    let kind = match error {
        NamespaceError::Invalid { .. } => "InvalidArgument",
        NamespaceError::Claimed { .. } => "NamespaceClaimed",
        NamespaceError::BadClaim { .. } => "NamespaceClaimUnreadable",
        NamespaceError::Store(cause) => store_error_kind(cause),
    };
    let value = js_error(kind, &error.to_string());
    if let NamespaceError::Claimed { owner, key, .. } = error {
        set(&value, "owner", &owner.as_str().into());
        set(&value, "key", &key.as_str().into());
    }
    value
}
