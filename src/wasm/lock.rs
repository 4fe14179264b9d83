//! `LockClient`: the lock protocol (`crate::lock`) as a JS class. Timers stay in the host: it calls `heartbeat` every
//! ttl/3. Every client is entered in this wasm instance's registry of held locks under its scope, which each
//! `SyncService` of that scope consults before every operation (so the host keeps no lock rule of its own).

use std::rc::Rc;

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::host::{get, js_error, object, set, store_error_kind, JsEnv, JsStore};
use crate::lock::{namespaced_key, Attempt, HeldLocks, Lock, LockConfig, LockError, LockIdentity, LockInfo};

thread_local! {
    /// The locks of this process by scope: one registry per wasm instance (instantiated once per process).
    static HELD_LOCKS: HeldLocks = HeldLocks::new();
}

/// The process-wide registry shared by every `LockClient` and `SyncService`.
pub(super) fn held_locks() -> HeldLocks {
    HELD_LOCKS.with(HeldLocks::clone)
}

#[wasm_bindgen]
pub struct LockClient {
    inner: Rc<Lock<JsStore>>,
}

fn required_string(value: &JsValue, name: &str) -> Result<String, JsValue> {
    get(value, name)
        .as_string()
        .ok_or_else(|| js_error("InvalidArgument", &format!("lock identity: `{name}` must be a string")))
}

#[wasm_bindgen]
impl LockClient {
    /// `scope`: the datastore the lock guards (`s3://bucket/prefix`); `options`: `{ lockKey?, ttlMs?,
    /// retryIntervalMs?, maxWaitMs?, namespace? }` (a namespace puts the lock below `{ns}/`); `identity`:
    /// `{ holder, hostname, pid }`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "MarshStore")] store: JsValue,
        scope: String,
        #[wasm_bindgen(unchecked_param_type = "LockClientOptions | undefined")] options: JsValue,
        #[wasm_bindgen(unchecked_param_type = "LockIdentity")] identity: JsValue,
    ) -> Result<LockClient, JsValue> {
        let mut config = LockConfig::default();
        if let Some(key) = get(&options, "lockKey").as_string() {
            config.key = key;
        }
        let namespace = get(&options, "namespace").as_string();
        config.key = namespaced_key(&config.key, namespace.as_deref())
            .map_err(|reason| js_error("InvalidArgument", &format!("lock options: {reason}")))?;
        let millis = |name: &str| get(&options, name).as_f64().filter(|n| n.is_finite() && *n >= 0.0).map(|n| n as u64);
        config.ttl_ms = millis("ttlMs").unwrap_or(config.ttl_ms);
        config.retry_interval_ms = millis("retryIntervalMs").unwrap_or(config.retry_interval_ms);
        config.max_wait_ms = millis("maxWaitMs").unwrap_or(config.max_wait_ms);
        let identity = LockIdentity {
            holder: required_string(&identity, "holder")?,
            hostname: required_string(&identity, "hostname")?,
            pid: get(&identity, "pid").as_f64().unwrap_or(0.0) as u32,
        };
        let lock = Lock::new(JsStore::from_js(store)?, config, identity).held_in(&held_locks(), scope);
        Ok(LockClient { inner: Rc::new(lock) })
    }

    #[wasm_bindgen(getter, js_name = lockKey)]
    pub fn lock_key(&self) -> String {
        self.inner.key().to_string()
    }

    #[wasm_bindgen(getter, js_name = ttlMs)]
    pub fn ttl_ms(&self) -> f64 {
        self.inner.config().ttl_ms as f64
    }

    #[wasm_bindgen(js_name = isHeld)]
    pub fn is_held(&self) -> bool {
        self.inner.is_held()
    }

    /// Wait for the lock (create-if-absent, conditional take-over of a stale lock) or reject with `LockTimeoutError`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn acquire(&self, #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue) -> Result<Promise, JsValue> {
        let (lock, env) = (self.inner.clone(), JsEnv::from_js(env)?);
        Ok(future_to_promise(
            async move { lock.acquire(&env).await.map(|()| JsValue::UNDEFINED).map_err(lock_error_to_js) },
        ))
    }

    /// One attempt: resolves to `true` if acquired, `false` if someone else holds a live lock.
    #[wasm_bindgen(js_name = tryAcquire, unchecked_return_type = "Promise<boolean>")]
    pub fn try_acquire(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
    ) -> Result<Promise, JsValue> {
        let (lock, env) = (self.inner.clone(), JsEnv::from_js(env)?);
        Ok(future_to_promise(async move {
            match lock.try_acquire(&env).await {
                Ok(Attempt::Acquired) => Ok(true.into()),
                Ok(Attempt::Busy(_)) => Ok(false.into()),
                Err(error) => Err(lock_error_to_js(error)),
            }
        }))
    }

    /// Refresh `acquiredAt` with a compare-and-swap; rejects with `LockLostError` if another process took the lock.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn heartbeat(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
    ) -> Result<Promise, JsValue> {
        let (lock, env) = (self.inner.clone(), JsEnv::from_js(env)?);
        Ok(future_to_promise(async move {
            lock.heartbeat(&env).await.map(|()| JsValue::UNDEFINED).map_err(lock_error_to_js)
        }))
    }

    /// Throws `LockLostError` if a heartbeat found the lock taken over, `MarshError` (kind `LockNotHeld`) if it is not
    /// held.
    #[wasm_bindgen(js_name = ensureHeld)]
    pub fn ensure_held(&self) -> Result<(), JsValue> {
        self.inner.ensure_held().map_err(lock_error_to_js)
    }

    /// Delete our own lock (checked by token); idempotent.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn release(&self) -> Promise {
        let lock = self.inner.clone();
        future_to_promise(async move { lock.release().await.map(|()| JsValue::UNDEFINED).map_err(lock_error_to_js) })
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<LockInfo | null>")]
    pub fn inspect(&self) -> Promise {
        let lock = self.inner.clone();
        future_to_promise(async move {
            lock.inspect()
                .await
                .map(|info| info.map(|i| lock_info_to_js(&i)).unwrap_or(JsValue::NULL))
                .map_err(lock_error_to_js)
        })
    }

    /// Delete the lock only if it still carries `expectedNonce`.
    #[wasm_bindgen(js_name = forceRelease, unchecked_return_type = "Promise<boolean>")]
    pub fn force_release(&self, expected_nonce: String) -> Promise {
        let lock = self.inner.clone();
        future_to_promise(async move {
            lock.force_release(&expected_nonce).await.map(JsValue::from).map_err(lock_error_to_js)
        })
    }
}

fn lock_info_to_js(info: &LockInfo) -> JsValue {
    object(&[
        ("holder", info.holder.as_str().into()),
        ("hostname", info.hostname.as_str().into()),
        ("pid", JsValue::from_f64(f64::from(info.pid))),
        ("acquiredAt", info.acquired_at.as_str().into()),
        ("ttlMs", JsValue::from_f64(info.ttl_ms as f64)),
        ("nonce", info.nonce.as_deref().map(JsValue::from_str).unwrap_or(JsValue::UNDEFINED)),
        ("holderUnknown", if info.holder_unknown { JsValue::TRUE } else { JsValue::UNDEFINED }),
    ])
}

/// `LockTimeoutError` (with `lockKey`, `holder`, `waitedMs`, and the `code: "lock_timeout"` and `retryable: true`
/// today's swamp reads to exit with code 75), `LockLostError`, `AbortError`, or `MarshError`.
pub(super) fn lock_error_to_js(error: LockError) -> JsValue {
    let message = error.to_string();
    let (name, kind) = match &error {
        LockError::Timeout { .. } => ("LockTimeoutError", "LockTimeout"),
        LockError::Lost { .. } => ("LockLostError", "LockLost"),
        LockError::NotHeld { .. } => ("MarshError", "LockNotHeld"),
        LockError::Aborted { .. } => ("AbortError", "Aborted"),
        LockError::Store { source, .. } => ("MarshError", store_error_kind(source)),
        LockError::Corrupt { .. } => ("MarshError", "LockCorrupt"),
    };
    let value = js_error(kind, &message);
    js_sys::Error::from(value.clone()).set_name(name);
    match error {
        LockError::Timeout { key, holder, waited_ms } => {
            set(&value, "code", &"lock_timeout".into());
            set(&value, "retryable", &JsValue::TRUE);
            set(&value, "lockKey", &key.into());
            set(&value, "holder", &holder.map(|h| lock_info_to_js(&h)).unwrap_or(JsValue::NULL));
            set(&value, "waitedMs", &JsValue::from_f64(waited_ms as f64));
        }
        LockError::Lost { key, by } => {
            set(&value, "lockKey", &key.into());
            set(&value, "holder", &by.map(|h| lock_info_to_js(&h)).unwrap_or(JsValue::NULL));
        }
        _ => {}
    }
    value
}
