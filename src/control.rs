//! The control plane: small records swamp keeps in the bucket under `_control/<key>` (under `{ns}/_control/` when a
//! namespace is bound), read and written straight through the store, never through the cache (swamp's
//! `controlPlaneStore()` and `datastoreControlPlaneStore()`).
//!
//! Every request goes through the core's retry policy. `put_if_absent` is a create-only write (S3
//! `If-None-Match: *`, GCS `ifGenerationMatch=0`), so of concurrent creates of one key the store lets exactly one land.
//! The catch is a retry: a create whose write landed but whose answer was lost (a timeout, a reset) is retried, and
//! the retry meets its own object and fails its precondition. Answering `false` then would leave no caller with `true`.
//! So once an attempt has failed in a way that may have landed, a later "precondition failed" is settled by reading the
//! record: our bytes there mean the record is ours (`true`), other bytes mean another creator won (`false`). The store
//! cannot tell two creates of byte-identical records apart, so a creator whose own attempt was lost and who then finds
//! an identical record answers `true`: the record is exactly what it asked for. Creators that must learn which one of
//! them won put distinguishing bytes (their id) into the record.

use crate::path::check_rel;
use crate::store::retry::{is_retryable, with_retry, RetryPolicy};
use crate::store::{Env, Fetched, ObjectStore, Precondition, StoreError};

/// The folder of control records, below the prefix (and the namespace, when one is bound).
pub const CONTROL_FOLDER: &str = "_control/";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("invalid control-plane key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("invalid namespace {namespace:?}: {reason}")]
    InvalidNamespace { namespace: String, reason: String },
    #[error("control-plane record {key}: {source}")]
    Store { key: String, source: StoreError },
    #[error("control-plane request for {key} was aborted")]
    Aborted { key: String },
}

/// Where the records of one control plane live: `_control/` at the datastore root, or `{ns}/_control/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlRoot {
    folder: String,
}

impl ControlRoot {
    /// `_control/` at the datastore root, whatever namespace a service is bound to (`datastoreControlPlaneStore`).
    pub fn datastore() -> Self {
        ControlRoot { folder: CONTROL_FOLDER.to_string() }
    }

    /// `{ns}/_control/` when `namespace` is given, else the datastore root. The namespace must be a safe relative path.
    pub fn for_namespace(namespace: Option<&str>) -> Result<Self, ControlError> {
        let Some(namespace) = namespace else { return Ok(Self::datastore()) };
        check_rel(namespace).map_err(|e| ControlError::InvalidNamespace {
            namespace: namespace.to_string(),
            reason: e.reason.to_string(),
        })?;
        Ok(ControlRoot { folder: format!("{namespace}/{CONTROL_FOLDER}") })
    }

    /// The object key of record `key` (cache-relative, like every key the store sees).
    pub fn object_key(&self, key: &str) -> Result<String, ControlError> {
        check_rel(key).map_err(|e| ControlError::InvalidKey { key: key.to_string(), reason: e.reason.to_string() })?;
        Ok(format!("{}{key}", self.folder))
    }

    /// The listing prefix for record keys starting with `prefix` (empty: every record). A trailing `/` is allowed, so
    /// `"runs/"` lists one folder; anything else must be a safe relative path.
    fn list_prefix(&self, prefix: &str) -> Result<String, ControlError> {
        let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
        if !prefix.is_empty() {
            check_rel(trimmed)
                .map_err(|e| ControlError::InvalidKey { key: prefix.to_string(), reason: e.reason.to_string() })?;
        }
        Ok(format!("{}{prefix}", self.folder))
    }
}

/// One control plane over a store, for one operation's environment (its abort signal, its clock for backoff).
pub struct ControlPlane<'a, S: ObjectStore, E: Env> {
    store: &'a S,
    env: &'a E,
    root: ControlRoot,
    policy: RetryPolicy,
}

impl<'a, S: ObjectStore, E: Env> ControlPlane<'a, S, E> {
    pub fn new(store: &'a S, env: &'a E, root: ControlRoot) -> Self {
        ControlPlane { store, env, root, policy: RetryPolicy::default() }
    }

    /// The record's bytes, `None` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ControlError> {
        let object = self.root.object_key(key)?;
        self.read(&object, key).await
    }

    /// Write the record, whatever is there (an overwrite is what `put` means; creation races use `put_if_absent`).
    pub async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), ControlError> {
        let object = self.root.object_key(key)?;
        let blind = Precondition::None;
        with_retry(self.env, &self.policy, || self.store.put_bytes(&object, bytes, &blind))
            .await
            .map(drop)
            .map_err(|e| self.failed(key, e))
    }

    /// Remove the record; a missing one is not an error (a retried delete meets its own deletion).
    pub async fn delete(&self, key: &str) -> Result<(), ControlError> {
        let object = self.root.object_key(key)?;
        match with_retry(self.env, &self.policy, || self.store.delete(&object, None)).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed(key, e)),
        }
    }

    /// The keys of every record whose key starts with `prefix`, in the store's order, without the `_control/` folder.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ControlError> {
        let listing = self.root.list_prefix(prefix)?;
        let mut keys = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let answer = with_retry(self.env, &self.policy, || self.store.list(&listing, page.as_deref()))
                .await
                .map_err(|e| self.failed(prefix, e))?;
            keys.extend(
                answer.objects.into_iter().filter_map(|o| o.key.strip_prefix(&self.root.folder).map(String::from)),
            );
            match answer.next_page {
                Some(next) => page = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Create the record only if there is none: `true` if this call created it, `false` if another creator's record
    /// is there. Of concurrent creates of one key exactly one answers `true` (see the module comment for a retried
    /// create whose first answer was lost).
    pub async fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool, ControlError> {
        let object = self.root.object_key(key)?;
        let attempts = self.policy.attempts.max(1);
        // Set once an attempt failed in a way that may have landed: from then on, a record there may be our own.
        let mut maybe_landed = false;
        let condition = create_only();
        let mut retry = 0;
        loop {
            if self.env.is_aborted() {
                return Err(ControlError::Aborted { key: key.to_string() });
            }
            let undecided = match self.store.put_bytes(&object, bytes, &condition).await {
                Ok(_) => return Ok(true),
                Err(StoreError::PreconditionFailed { .. }) if !maybe_landed || RETRY_SAYS_FALSE => return Ok(false),
                Err(StoreError::PreconditionFailed { .. }) => match self.read(&object, key).await? {
                    Some(stored) => return Ok(stored == bytes),
                    // Ours or not, it was deleted since: the key is free again, so the next create decides.
                    None => StoreError::Transient {
                        status: None,
                        message: "the record was created and removed meanwhile; try again".into(),
                    },
                },
                Err(e) if is_retryable(&e) => {
                    maybe_landed = true;
                    e
                }
                Err(e) => return Err(self.failed(key, e)),
            };
            retry += 1;
            if retry >= attempts {
                return Err(self.failed(key, undecided));
            }
            let pause = self.policy.backoff_ms(retry - 1, self.env.random());
            self.env.sleep(pause).await.map_err(|e| self.failed(key, e))?;
        }
    }

    async fn read(&self, object: &str, key: &str) -> Result<Option<Vec<u8>>, ControlError> {
        match with_retry(self.env, &self.policy, || self.store.get_bytes(object, None)).await {
            Ok(Fetched::Found { body, .. }) => Ok(Some(body)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            // No If-None-Match was sent: "not modified" is a broken adapter.
            Ok(Fetched::NotModified) => Err(self.failed(
                key,
                StoreError::Io { message: format!("{object}: \"not modified\" to an unconditional GET") },
            )),
            Err(e) => Err(self.failed(key, e)),
        }
    }

    fn failed(&self, key: &str, error: StoreError) -> ControlError {
        match error {
            StoreError::Aborted => ControlError::Aborted { key: key.to_string() },
            source => ControlError::Store { key: key.to_string(), source },
        }
    }
}

/// The flawed variant answers `false` to every failed create, also to the retry of its own landed one.
const RETRY_SAYS_FALSE: bool = cfg!(feature = "flaw-control-retry-says-false");

/// The create-only condition; the flawed variant writes blindly, so every concurrent creator "wins".
fn create_only() -> Precondition {
    if cfg!(feature = "flaw-blind-control-create") {
        Precondition::None
    } else {
        Precondition::IfAbsent
    }
}
