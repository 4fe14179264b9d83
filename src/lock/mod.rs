//! The distributed lock: one small object in the bucket (`.datastore.lock` or the caller's key) whose body names the
//! holder, built only from the store's preconditions.
//!
//! - Acquire creates the object only if it is absent. A lock whose `acquiredAt + ttlMs` lies in the past is stale and
//!   may be taken over, but only by replacing exactly the version we judged stale (`IfMatch`), never by a delete and a
//!   fresh create or a blind PUT: with those, two contenders that both saw the stale lock would both believe they hold
//!   it (W13).
//! - The host runs the timer and calls `heartbeat` every ttl/3; the heartbeat rewrites our body with a fresh
//!   `acquiredAt`, again conditionally on the token of our last write. A definite "precondition failed" or "not found"
//!   means someone took the lock over: it is recorded, `ensure_held` fails loudly, and so does every sync operation
//!   of the lock's scope (see [`HeldLocks`]). A transient failure only means "try again next tick" and never marks
//!   the lock lost.
//! - Release deletes the object only if it is still our version; a lock that is no longer ours is left alone.
//!
//! The core never reads a clock or sleeps except through `Env`.

mod held;

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::encoding::time::{iso_from_ms, ms_from_iso};
use crate::store::token::VersionToken;
use crate::store::{Env, Fetched, ObjectStore, Precondition, StoreError};

pub use held::{HeldLocks, ScopeWatch};

/// Key of the global lock (under the datastore prefix).
pub const DEFAULT_LOCK_KEY: &str = ".datastore.lock";

/// The lock object's body, as the official extensions write and read it (pretty JSON, camelCase).
/// Unknown fields are ignored on read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockInfo {
    /// `user@host`.
    pub holder: String,
    pub hostname: String,
    pub pid: u32,
    /// ISO-8601 UTC, refreshed by every heartbeat.
    pub acquired_at: String,
    pub ttl_ms: u64,
    /// Identifies one acquisition; `forceRelease` must name it. Optional because old writers may omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Set only in what we report, never written: the lock object exists but its body could not be read, so the other
    /// fields are placeholders (swamp's `holderUnknown`).
    #[serde(skip)]
    pub holder_unknown: bool,
}

impl LockInfo {
    /// A lock whose body cannot be read: someone holds it, nobody knows who. `acquiredAt` is the epoch, which is
    /// what the protocol makes of it too (an unreadable lock is stale and may be taken over).
    pub fn unknown() -> Self {
        LockInfo {
            holder: "unknown".to_string(),
            hostname: "unknown".to_string(),
            pid: 0,
            acquired_at: iso_from_ms(0),
            ttl_ms: 0,
            nonce: None,
            holder_unknown: true,
        }
    }
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.holder_unknown {
            return f.write_str("another process (its lock body could not be read)");
        }
        write!(f, "{} (pid {}, acquired {}, ttl {} ms)", self.holder, self.pid, self.acquired_at, self.ttl_ms)
    }
}

/// The key of a lock in a namespace: `{ns}/.datastore.lock` for the global lock, `{ns}/<lockKey>` for any other. A
/// key that already starts with `{ns}/` is kept as it is: swamp passes its per-model keys namespaced already, and
/// prefixing them again would put the lock where no other process looks. Both must be safe relative paths.
pub fn namespaced_key(key: &str, namespace: Option<&str>) -> Result<String, String> {
    crate::path::check_rel(key).map_err(|e| format!("lockKey {key:?}: {}", e.reason))?;
    let Some(namespace) = namespace else { return Ok(key.to_string()) };
    crate::path::check_rel(namespace).map_err(|e| format!("namespace {namespace:?}: {}", e.reason))?;
    let prefix = format!("{namespace}/");
    Ok(if key.starts_with(&prefix) { key.to_string() } else { format!("{prefix}{key}") })
}

/// Who we are, as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockIdentity {
    /// `user@host`.
    pub holder: String,
    pub hostname: String,
    pub pid: u32,
}

/// The caller's `LockOptions`, with the official defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockConfig {
    pub key: String,
    pub ttl_ms: u64,
    pub retry_interval_ms: u64,
    pub max_wait_ms: u64,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig { key: DEFAULT_LOCK_KEY.to_string(), ttl_ms: 30_000, retry_interval_ms: 1_000, max_wait_ms: 60_000 }
    }
}

/// Outcome of one acquisition attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Acquired,
    /// Someone else holds a live lock (named when its body could be read in this attempt).
    Busy(Option<LockInfo>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// The host maps this to `LockTimeoutError`.
    #[error("lock {key} is held by {}; gave up after waiting {waited_ms} ms", describe_holder(holder))]
    Timeout { key: String, holder: Option<Box<LockInfo>>, waited_ms: u64 },
    #[error(
        "lock {key} was lost: it is now held by {}; this process must stop writing and retry the command",
        describe_holder(by)
    )]
    Lost { key: String, by: Option<Box<LockInfo>> },
    #[error("lock {key} is not held by this process")]
    NotHeld { key: String },
    #[error("waiting for lock {key} was aborted")]
    Aborted { key: String },
    #[error("lock {key}: {source}")]
    Store { key: String, source: StoreError },
    #[error("lock {key} has an unreadable body: {reason}")]
    Corrupt { key: String, reason: String },
}

fn describe_holder(holder: &Option<Box<LockInfo>>) -> String {
    match holder {
        Some(info) => info.to_string(),
        None => "another process (its lock body could not be read)".to_string(),
    }
}

/// What this process believes about the lock.
#[derive(Debug, Clone, Default)]
enum Standing {
    #[default]
    Free,
    Held(Holding),
    /// A heartbeat found the lock taken over (by whom, if readable).
    Lost(Option<Box<LockInfo>>),
}

#[derive(Debug, Clone)]
struct Holding {
    nonce: String,
    /// Token of our last successful write: the only version we may replace or delete.
    token: VersionToken,
    info: LockInfo,
}

#[derive(Debug, Default)]
struct LockState {
    standing: Standing,
    /// Nonce of an acquisition attempt whose write may have landed although its reply was lost; reused until we hold
    /// the lock so that we recognise our own object instead of waiting a whole ttl for it to go stale.
    pending_nonce: Option<String>,
}

/// The lock object as currently stored.
struct StoredLock {
    token: VersionToken,
    /// The decoded body, or why it could not be decoded.
    info: Result<LockInfo, String>,
}

impl StoredLock {
    fn has_nonce(&self, nonce: &str) -> bool {
        matches!(&self.info, Ok(info) if info.nonce.as_deref() == Some(nonce))
    }
}

/// A failed create followed by a GET that finds nothing (or a lost take-over race) is retried this often per attempt.
const ACQUIRE_ROUNDS: usize = 2;

/// One distributed lock over a store. Single-threaded: state lives in a `RefCell`, never borrowed across an await.
pub struct Lock<S: ObjectStore> {
    store: S,
    config: LockConfig,
    identity: LockIdentity,
    /// Shared with the [`HeldLocks`] registry the lock is entered in, if any.
    state: Rc<RefCell<LockState>>,
}

impl<S: ObjectStore> Lock<S> {
    pub fn new(store: S, config: LockConfig, identity: LockIdentity) -> Self {
        Lock { store, config, identity, state: Rc::default() }
    }

    /// Enter this lock in `locks` as guarding `scope`: once a heartbeat finds it lost, sync operations watching that
    /// scope fail until it is released or acquired again.
    pub fn held_in(self, locks: &HeldLocks, scope: impl Into<String>) -> Self {
        locks.register(scope.into(), self.config.key.clone(), &self.state);
        self
    }

    pub fn key(&self) -> &str {
        &self.config.key
    }

    pub fn config(&self) -> &LockConfig {
        &self.config
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Whether we hold the lock as far as we know (not yet released, not found lost).
    pub fn is_held(&self) -> bool {
        matches!(self.state.borrow().standing, Standing::Held(_))
    }

    /// The body of our lock as last written, while we hold it.
    pub fn held_info(&self) -> Option<LockInfo> {
        match &self.state.borrow().standing {
            Standing::Held(holding) => Some(holding.info.clone()),
            _ => None,
        }
    }

    /// One attempt: create the lock, or take over a stale one. Holding it already just refreshes it.
    pub async fn try_acquire<E: Env>(&self, env: &E) -> Result<Attempt, LockError> {
        let already_held = {
            let mut state = self.state.borrow_mut();
            match state.standing {
                Standing::Held(_) => true,
                Standing::Lost(_) => {
                    state.standing = Standing::Free;
                    false
                }
                Standing::Free => false,
            }
        };
        if already_held {
            self.heartbeat(env).await?;
            return Ok(Attempt::Acquired);
        }

        let nonce = self.pending_nonce(env);
        let info = self.body_for(env, &nonce);
        let body = encode_lock_info(&info);

        for _round in 0..ACQUIRE_ROUNDS {
            match self.store.put_bytes(&self.config.key, &body, &Precondition::IfAbsent).await {
                Ok(token) => return Ok(self.now_holding(nonce, token, info)),
                Err(StoreError::PreconditionFailed { .. }) => {}
                Err(e) => return Err(self.store_error(e)),
            }
            let Some(current) = self.read_stored().await.map_err(|e| self.store_error(e))? else {
                // Released between our create and our GET: create again.
                continue;
            };
            if current.has_nonce(&nonce) {
                // An earlier attempt's write landed although its reply was lost: the lock is ours.
                let info = current.info.clone().unwrap_or(info);
                return Ok(self.now_holding(nonce, current.token, info));
            }
            match &current.info {
                Ok(holder) if !is_stale(holder, env.now_ms()) => return Ok(Attempt::Busy(Some(holder.clone()))),
                Ok(holder) => env.trace(&format!("lock {}: taking over the stale lock of {holder}", self.config.key)),
                Err(reason) => env
                    .trace(&format!("lock {}: unreadable lock body ({reason}); treating it as stale", self.config.key)),
            }
            // Replace exactly the version we judged stale (W13). If another contender replaced it first, our IfMatch
            // fails and the next round sees their fresh lock.
            let take_over = Precondition::IfMatch(current.token);
            match self.store.put_bytes(&self.config.key, &body, &take_over).await {
                Ok(token) => return Ok(self.now_holding(nonce, token, info)),
                Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(self.store_error(e)),
            }
        }
        Ok(Attempt::Busy(None))
    }

    /// Try until acquired, sleeping `retry_interval_ms` between attempts, for at most `max_wait_ms` of env time.
    /// Transient store errors count as "busy"; if the last attempt failed that way, that error is returned.
    pub async fn acquire<E: Env>(&self, env: &E) -> Result<(), LockError> {
        let started_ms = env.now_ms();
        let mut last_holder = None;
        loop {
            if env.is_aborted() {
                return Err(self.aborted());
            }
            let mut last_store_error = None;
            match self.try_acquire(env).await {
                Ok(Attempt::Acquired) => return Ok(()),
                Ok(Attempt::Busy(holder)) => {
                    if holder.is_some() {
                        last_holder = holder;
                    }
                }
                Err(LockError::Store { source, .. }) if is_transient(&source) => last_store_error = Some(source),
                Err(e) => return Err(e),
            }
            let waited_ms = u64::try_from(env.now_ms().saturating_sub(started_ms)).unwrap_or(0);
            if waited_ms >= self.config.max_wait_ms {
                return Err(match last_store_error {
                    Some(e) => self.store_error(e),
                    // Busy without a readable holder in any attempt: say that one exists, unknown.
                    None => LockError::Timeout {
                        key: self.config.key.clone(),
                        holder: Some(Box::new(last_holder.unwrap_or_else(LockInfo::unknown))),
                        waited_ms,
                    },
                });
            }
            // Never sleep past the deadline, so the last attempt happens right at it.
            let pause_ms = self.config.retry_interval_ms.min(self.config.max_wait_ms - waited_ms).max(1);
            env.sleep(pause_ms).await.map_err(|e| self.store_error(e))?;
        }
    }

    /// Refresh our lock's `acquiredAt`, conditionally on our last write. Called by the host every ttl/3.
    pub async fn heartbeat<E: Env>(&self, env: &E) -> Result<(), LockError> {
        let holding = self.holding()?;
        let mut refreshed = holding.info.clone();
        refreshed.acquired_at = iso_from_ms(env.now_ms());
        let body = encode_lock_info(&refreshed);

        let mut token = holding.token;
        for round in 0..2 {
            let refresh = Precondition::IfMatch(token.clone());
            match self.store.put_bytes(&self.config.key, &body, &refresh).await {
                Ok(new_token) => {
                    self.state.borrow_mut().standing =
                        Standing::Held(Holding { nonce: holding.nonce, token: new_token, info: refreshed });
                    return Ok(());
                }
                Err(StoreError::NotFound { .. }) => return Err(self.mark_lost(None)),
                Err(StoreError::PreconditionFailed { .. }) => {}
                // Transient or unknown: we may still hold it; the next tick tries again.
                Err(e) => return Err(self.store_error(e)),
            }
            // Our token is outdated. Either someone took the lock over, or an earlier write of ours (heartbeat or
            // acquire) landed with its reply lost; the nonce tells which.
            match self.read_stored().await {
                Ok(Some(current)) if current.has_nonce(&holding.nonce) => {
                    if round == 0 {
                        token = current.token;
                    }
                }
                Ok(current) => return Err(self.mark_lost(current.and_then(|c| c.info.ok()))),
                // Unknown who holds it now: not a definite loss.
                Err(e) => return Err(self.store_error(e)),
            }
        }
        // Ours, yet it changed under us twice in a row: undecided; the next tick tries again.
        Err(self.store_error(StoreError::PreconditionFailed { key: self.config.key.clone() }))
    }

    /// Fails with `Lost` once a heartbeat found the lock taken over, and with `NotHeld` if never acquired or released.
    /// The host calls this before each operation done under the lock.
    pub fn ensure_held(&self) -> Result<(), LockError> {
        self.holding().map(|_| ())
    }

    /// Delete our lock if it is still ours. Idempotent: not holding it (or having lost it) is not an error, and a
    /// lock that is now someone else's is never deleted. On a store error we keep holding it so the caller may retry.
    pub async fn release(&self) -> Result<(), LockError> {
        let holding = {
            let mut state = self.state.borrow_mut();
            match &state.standing {
                Standing::Held(holding) => holding.clone(),
                Standing::Free => return Ok(()),
                Standing::Lost(_) => {
                    state.standing = Standing::Free;
                    return Ok(());
                }
            }
        };
        let mut token = holding.token;
        for round in 0..2 {
            match self.store.delete(&self.config.key, Some(&token)).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => {
                    self.set_free();
                    return Ok(());
                }
                Err(StoreError::PreconditionFailed { .. }) => {}
                Err(e) => return Err(self.store_error(e)),
            }
            match self.read_stored().await {
                // Our own earlier write landed with its reply lost: delete that version.
                Ok(Some(current)) if current.has_nonce(&holding.nonce) => {
                    if round == 0 {
                        token = current.token;
                    }
                }
                // Gone, or someone else's: it is no longer ours to delete.
                Ok(_) => {
                    self.set_free();
                    return Ok(());
                }
                Err(e) => return Err(self.store_error(e)),
            }
        }
        Err(self.store_error(StoreError::PreconditionFailed { key: self.config.key.clone() }))
    }

    /// The current lock body, whoever holds it; `None` if there is no lock, [`LockInfo::unknown`] if there is one
    /// whose body cannot be read (the operator still learns that a lock is there).
    pub async fn inspect(&self) -> Result<Option<LockInfo>, LockError> {
        match self.read_stored().await.map_err(|e| self.store_error(e))? {
            None => Ok(None),
            Some(StoredLock { info: Ok(info), .. }) => Ok(Some(info)),
            Some(StoredLock { info: Err(_), .. }) => Ok(Some(LockInfo::unknown())),
        }
    }

    /// Delete the lock only if it still carries `expected_nonce` (the one `inspect` showed the operator). `false` if
    /// there is no lock, the nonce differs, or the lock changed between our read and our delete.
    pub async fn force_release(&self, expected_nonce: &str) -> Result<bool, LockError> {
        let Some(current) = self.read_stored().await.map_err(|e| self.store_error(e))? else {
            return Ok(false);
        };
        if !current.has_nonce(expected_nonce) {
            return Ok(false);
        }
        match self.store.delete(&self.config.key, Some(&current.token)).await {
            Ok(()) => {}
            Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(self.store_error(e)),
        }
        let was_ours = matches!(&self.state.borrow().standing, Standing::Held(h) if h.nonce == expected_nonce);
        if was_ours {
            self.set_free();
        }
        Ok(true)
    }

    fn holding(&self) -> Result<Holding, LockError> {
        match &self.state.borrow().standing {
            Standing::Held(holding) => Ok(holding.clone()),
            Standing::Lost(by) => Err(LockError::Lost { key: self.config.key.clone(), by: by.clone() }),
            Standing::Free => Err(LockError::NotHeld { key: self.config.key.clone() }),
        }
    }

    fn now_holding(&self, nonce: String, token: VersionToken, info: LockInfo) -> Attempt {
        let mut state = self.state.borrow_mut();
        state.pending_nonce = None;
        state.standing = Standing::Held(Holding { nonce, token, info });
        Attempt::Acquired
    }

    fn mark_lost(&self, by: Option<LockInfo>) -> LockError {
        let by = by.map(Box::new);
        self.state.borrow_mut().standing = Standing::Lost(by.clone());
        LockError::Lost { key: self.config.key.clone(), by }
    }

    fn set_free(&self) {
        self.state.borrow_mut().standing = Standing::Free;
    }

    /// The nonce of an attempt that may have landed, or a fresh one (128 random bits, hex).
    fn pending_nonce<E: Env>(&self, env: &E) -> String {
        let mut state = self.state.borrow_mut();
        state.pending_nonce.get_or_insert_with(|| fresh_nonce(env)).clone()
    }

    fn body_for<E: Env>(&self, env: &E, nonce: &str) -> LockInfo {
        LockInfo {
            holder: self.identity.holder.clone(),
            hostname: self.identity.hostname.clone(),
            pid: self.identity.pid,
            acquired_at: iso_from_ms(env.now_ms()),
            ttl_ms: self.config.ttl_ms,
            nonce: Some(nonce.to_string()),
            holder_unknown: false,
        }
    }

    async fn read_stored(&self) -> Result<Option<StoredLock>, StoreError> {
        match self.store.get_bytes(&self.config.key, None).await {
            Ok(Fetched::Found { body, token, .. }) => Ok(Some(StoredLock { token, info: decode_lock_info(&body) })),
            Err(StoreError::NotFound { .. }) => Ok(None),
            // We sent no If-None-Match, so a "not modified" answer is a broken adapter.
            Ok(Fetched::NotModified) => Err(StoreError::Io {
                message: format!("{}: \"not modified\" to an unconditional GET", self.config.key),
            }),
            Err(e) => Err(e),
        }
    }

    fn store_error(&self, error: StoreError) -> LockError {
        match error {
            StoreError::Aborted => self.aborted(),
            source => LockError::Store { key: self.config.key.clone(), source },
        }
    }

    fn aborted(&self) -> LockError {
        LockError::Aborted { key: self.config.key.clone() }
    }
}

fn encode_lock_info(info: &LockInfo) -> Vec<u8> {
    serde_json::to_vec_pretty(info).expect("LockInfo serializes to JSON")
}

fn decode_lock_info(body: &[u8]) -> Result<LockInfo, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// Stale when `acquiredAt + ttlMs` is in the past. An unparseable `acquiredAt` cannot prove the holder alive.
fn is_stale(info: &LockInfo, now_ms: i64) -> bool {
    match ms_from_iso(&info.acquired_at) {
        Some(acquired_ms) => {
            let ttl_ms = i64::try_from(info.ttl_ms).unwrap_or(i64::MAX);
            acquired_ms.saturating_add(ttl_ms) < now_ms
        }
        None => true,
    }
}

/// Only failures the retry policy would retry are worth another attempt inside `acquire`.
fn is_transient(error: &StoreError) -> bool {
    crate::store::retry::is_retryable(error)
}

fn fresh_nonce<E: Env>(env: &E) -> String {
    (0..4).map(|_| format!("{:08x}", (env.random() * 4_294_967_296.0) as u32)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ListPage, ListedObject, ObjectMeta, StoreResult};
    use std::cell::Cell;
    use std::collections::{BTreeMap, VecDeque};
    use std::future::Future;
    use std::pin::{pin, Pin};
    use std::rc::Rc;
    use std::task::{Context, Poll, Waker};

    // ---- a minimal in-memory store with real create-if-absent, if-match and conditional delete ----

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        Get,
        Put,
        Delete,
    }

    enum Fault {
        /// The request fails without effect.
        Before(StoreError),
        /// The request takes effect, then its reply is lost.
        After(StoreError),
    }

    #[derive(Default)]
    struct MemInner {
        /// key → (body, generation); the generation is the version token.
        objects: BTreeMap<String, (Vec<u8>, u64)>,
        last_generation: u64,
        faults: VecDeque<(Op, Fault)>,
        requests: usize,
        /// Every write to an existing object (any PUT but a create, any DELETE) first yields once, so a test can
        /// interleave two take-overs, whether they are written correctly or not.
        pause_overwrites: bool,
        replacement_tokens: Vec<VersionToken>,
    }

    impl MemInner {
        fn begin(&mut self, op: Op) -> Option<Fault> {
            self.requests += 1;
            let at = self.faults.iter().position(|(faulty, _)| *faulty == op)?;
            self.faults.remove(at).map(|(_, fault)| fault)
        }

        fn token_of(&self, key: &str) -> Option<VersionToken> {
            self.objects.get(key).map(|(_, generation)| VersionToken::new(generation.to_string()))
        }
    }

    #[derive(Clone, Default)]
    struct MemStore(Rc<RefCell<MemInner>>);

    impl MemStore {
        fn fail_next(&self, op: Op, fault: Fault) {
            self.0.borrow_mut().faults.push_back((op, fault));
        }

        fn requests(&self) -> usize {
            self.0.borrow().requests
        }

        fn raw_body(&self, key: &str) -> Option<Vec<u8>> {
            self.0.borrow().objects.get(key).map(|(body, _)| body.clone())
        }

        fn stored_info(&self, key: &str) -> Option<LockInfo> {
            self.raw_body(key).map(|body| serde_json::from_slice(&body).expect("stored lock is LockInfo JSON"))
        }

        fn put_raw(&self, key: &str, body: &[u8]) {
            let mut inner = self.0.borrow_mut();
            inner.last_generation += 1;
            let generation = inner.last_generation;
            inner.objects.insert(key.to_string(), (body.to_vec(), generation));
        }
    }

    /// Pending on the first poll, ready on the second.
    #[derive(Default)]
    struct YieldOnce(bool);

    impl Future for YieldOnce {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                Poll::Pending
            }
        }
    }

    impl ObjectStore for MemStore {
        type Body = Vec<u8>;

        async fn get(&self, key: &str, if_none_match: Option<&VersionToken>) -> StoreResult<Fetched<Vec<u8>>> {
            self.get_bytes(key, if_none_match).await
        }

        async fn get_bytes(&self, key: &str, if_none_match: Option<&VersionToken>) -> StoreResult<Fetched<Vec<u8>>> {
            let mut inner = self.0.borrow_mut();
            if let Some(Fault::Before(e) | Fault::After(e)) = inner.begin(Op::Get) {
                return Err(e);
            }
            let not_found = || StoreError::NotFound { key: key.to_string() };
            let token = inner.token_of(key).ok_or_else(not_found)?;
            if if_none_match == Some(&token) {
                return Ok(Fetched::NotModified);
            }
            let body = inner.objects[key].0.clone();
            let size = body.len() as u64;
            Ok(Fetched::Found { body, token, size })
        }

        async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
            let inner = self.0.borrow();
            let token = inner.token_of(key).ok_or_else(|| StoreError::NotFound { key: key.to_string() })?;
            let size = inner.objects[key].0.len() as u64;
            Ok(ObjectMeta { token, size })
        }

        async fn put(&self, key: &str, body: Vec<u8>, precondition: &Precondition) -> StoreResult<VersionToken> {
            self.put_bytes(key, &body, precondition).await
        }

        async fn put_bytes(&self, key: &str, bytes: &[u8], precondition: &Precondition) -> StoreResult<VersionToken> {
            let creating = matches!(precondition, Precondition::IfAbsent);
            if !creating && self.0.borrow().pause_overwrites {
                YieldOnce::default().await;
            }
            let mut inner = self.0.borrow_mut();
            let fault = inner.begin(Op::Put);
            if let Precondition::IfMatch(token) = precondition {
                inner.replacement_tokens.push(token.clone());
            }
            if let Some(Fault::Before(e)) = fault {
                return Err(e);
            }
            let current = inner.token_of(key);
            match (precondition, &current) {
                (Precondition::IfAbsent, Some(_)) => {
                    return Err(StoreError::PreconditionFailed { key: key.to_string() })
                }
                // S3 answers a conditional write to a missing object with 404.
                (Precondition::IfMatch(_), None) => return Err(StoreError::NotFound { key: key.to_string() }),
                (Precondition::IfMatch(expected), Some(actual)) if expected != actual => {
                    return Err(StoreError::PreconditionFailed { key: key.to_string() })
                }
                _ => {}
            }
            inner.last_generation += 1;
            let generation = inner.last_generation;
            inner.objects.insert(key.to_string(), (bytes.to_vec(), generation));
            if let Some(Fault::After(e)) = fault {
                return Err(e);
            }
            Ok(VersionToken::new(generation.to_string()))
        }

        async fn delete(&self, key: &str, if_match: Option<&VersionToken>) -> StoreResult<()> {
            if self.0.borrow().pause_overwrites {
                YieldOnce::default().await;
            }
            let mut inner = self.0.borrow_mut();
            let fault = inner.begin(Op::Delete);
            if let Some(Fault::Before(e)) = fault {
                return Err(e);
            }
            let current = inner.token_of(key).ok_or_else(|| StoreError::NotFound { key: key.to_string() })?;
            if if_match.is_some_and(|expected| *expected != current) {
                return Err(StoreError::PreconditionFailed { key: key.to_string() });
            }
            inner.objects.remove(key);
            match fault {
                Some(Fault::After(e)) => Err(e),
                _ => Ok(()),
            }
        }

        async fn list(&self, prefix: &str, _page: Option<&str>) -> StoreResult<ListPage> {
            let inner = self.0.borrow();
            let objects = inner
                .objects
                .iter()
                .filter(|(key, _)| key.starts_with(prefix))
                .map(|(key, (body, generation))| ListedObject {
                    key: key.clone(),
                    size: body.len() as u64,
                    token: VersionToken::new(generation.to_string()),
                })
                .collect();
            Ok(ListPage { objects, next_page: None })
        }
    }

    // ---- a fake host environment with a settable clock ----

    struct FakeEnv {
        now_ms: Cell<i64>,
        rng_state: Cell<u64>,
        aborted: Cell<bool>,
        sleeps: Cell<usize>,
        /// The n-th sleep (1-based) is interrupted by an abort.
        abort_on_sleep: Cell<Option<usize>>,
        traces: RefCell<Vec<String>>,
    }

    impl FakeEnv {
        fn at(now_ms: i64) -> Self {
            FakeEnv {
                now_ms: Cell::new(now_ms),
                rng_state: Cell::new(0x9e37_79b9_7f4a_7c15),
                aborted: Cell::new(false),
                sleeps: Cell::new(0),
                abort_on_sleep: Cell::new(None),
                traces: RefCell::new(Vec::new()),
            }
        }

        fn advance(&self, ms: i64) {
            self.now_ms.set(self.now_ms.get() + ms);
        }
    }

    impl Env for FakeEnv {
        fn now_ms(&self) -> i64 {
            self.now_ms.get()
        }

        fn random(&self) -> f64 {
            // xorshift64: deterministic, distinct values per call.
            let mut x = self.rng_state.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.rng_state.set(x);
            (x >> 11) as f64 / (1u64 << 53) as f64
        }

        async fn sleep(&self, ms: u64) -> StoreResult<()> {
            self.sleeps.set(self.sleeps.get() + 1);
            if self.abort_on_sleep.get() == Some(self.sleeps.get()) {
                self.aborted.set(true);
                return Err(StoreError::Aborted);
            }
            self.advance(ms as i64);
            Ok(())
        }

        fn is_aborted(&self) -> bool {
            self.aborted.get()
        }

        fn trace(&self, line: &str) {
            self.traces.borrow_mut().push(line.to_string());
        }
    }

    // ---- helpers ----

    const START_MS: i64 = 1_777_059_920_123; // 2026-04-24T19:45:20.123Z

    fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Runs a future that never waits on anything outside itself.
    fn block_on<F: Future>(future: F) -> F::Output {
        match poll_once(pin!(future)) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("test future pended"),
        }
    }

    fn config() -> LockConfig {
        LockConfig { max_wait_ms: 5_000, ..LockConfig::default() }
    }

    fn locker(store: &MemStore, name: &str, pid: u32) -> Lock<MemStore> {
        locker_with(store, name, pid, config())
    }

    fn locker_with(store: &MemStore, name: &str, pid: u32, config: LockConfig) -> Lock<MemStore> {
        let identity = LockIdentity { holder: format!("{name}@{name}-host"), hostname: format!("{name}-host"), pid };
        Lock::new(store.clone(), config, identity)
    }

    fn stored_nonce(store: &MemStore) -> Option<String> {
        store.stored_info(DEFAULT_LOCK_KEY).and_then(|info| info.nonce)
    }

    fn held_nonce(lock: &Lock<MemStore>) -> String {
        lock.held_info().and_then(|info| info.nonce).expect("lock is held")
    }

    // ---- conformance ----

    #[test]
    fn inspect_is_none_before_acquire() {
        let store = MemStore::default();
        let alice = locker(&store, "alice", 42);

        assert_eq!(block_on(alice.inspect()), Ok(None));
    }

    #[test]
    fn acquire_writes_holder_pid_acquired_at_ttl_and_nonce() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let alice = locker(&store, "alice", 42);

        block_on(alice.acquire(&env)).unwrap();

        let info = block_on(alice.inspect()).unwrap().expect("lock exists");
        assert_eq!(info.holder, "alice@alice-host");
        assert_eq!(info.hostname, "alice-host");
        assert_eq!(info.pid, 42);
        assert_eq!(info.acquired_at, "2026-04-24T19:45:20.123Z");
        assert_eq!(info.ttl_ms, 30_000);
        let nonce = info.nonce.expect("nonce present");
        assert!(nonce.len() >= 16 && nonce.bytes().all(|b| b.is_ascii_hexdigit()), "nonce {nonce:?}");
        let body = String::from_utf8(store.raw_body(DEFAULT_LOCK_KEY).unwrap()).unwrap();
        assert!(body.contains("\n  \"acquiredAt\": "), "pretty camelCase JSON: {body}");
        assert!(alice.ensure_held().is_ok());
    }

    #[test]
    fn lock_lives_under_the_callers_key() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let key = "data/model/abc/.lock";
        let alice = locker_with(&store, "alice", 42, LockConfig { key: key.into(), ..config() });

        block_on(alice.acquire(&env)).unwrap();

        assert!(store.raw_body(key).is_some());
        assert!(store.raw_body(DEFAULT_LOCK_KEY).is_none());
    }

    #[test]
    fn second_locker_is_busy_then_times_out_naming_the_holder() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let (alice, bob) = (locker(&store, "alice", 42), locker(&store, "bob", 7));
        block_on(alice.acquire(&env)).unwrap();

        let attempt = block_on(bob.try_acquire(&env)).unwrap();
        let error = block_on(bob.acquire(&env)).unwrap_err();

        assert!(matches!(attempt, Attempt::Busy(Some(ref info)) if info.holder == "alice@alice-host"));
        let LockError::Timeout { key, holder, waited_ms } = &error else {
            panic!("expected a timeout, got {error:?}");
        };
        assert_eq!(key, DEFAULT_LOCK_KEY);
        assert_eq!(holder.as_ref().map(|h| h.pid), Some(42));
        assert!(*waited_ms >= 5_000, "waited {waited_ms} ms");
        let message = error.to_string();
        assert!(message.contains(".datastore.lock"), "{message}");
        assert!(message.contains("alice@alice-host (pid 42"), "{message}");
        assert_eq!(stored_nonce(&store), alice.held_info().unwrap().nonce, "alice's lock untouched");
    }

    #[test]
    fn release_is_idempotent_and_leaves_no_lock() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let alice = locker(&store, "alice", 42);
        block_on(alice.acquire(&env)).unwrap();

        block_on(alice.release()).unwrap();
        let requests_after_first_release = store.requests();
        block_on(alice.release()).unwrap();

        assert_eq!(store.requests(), requests_after_first_release, "second release makes no request");
        assert_eq!(block_on(alice.inspect()), Ok(None));
        assert!(matches!(alice.ensure_held(), Err(LockError::NotHeld { .. })));
    }

    #[test]
    fn release_without_acquire_makes_no_request() {
        let store = MemStore::default();
        let alice = locker(&store, "alice", 42);

        block_on(alice.release()).unwrap();

        assert_eq!(store.requests(), 0);
    }

    #[test]
    fn force_release_with_the_right_nonce_deletes_the_lock() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let (alice, operator) = (locker(&store, "alice", 42), locker(&store, "operator", 1));
        block_on(alice.acquire(&env)).unwrap();
        let nonce = block_on(operator.inspect()).unwrap().unwrap().nonce.unwrap();

        let released = block_on(operator.force_release(&nonce)).unwrap();

        assert!(released);
        assert_eq!(block_on(operator.inspect()), Ok(None));
    }

    #[test]
    fn force_release_with_a_wrong_nonce_keeps_the_lock() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let (alice, operator) = (locker(&store, "alice", 42), locker(&store, "operator", 1));
        block_on(alice.acquire(&env)).unwrap();

        let released = block_on(operator.force_release("0123456789abcdef")).unwrap();

        assert!(!released);
        assert_eq!(stored_nonce(&store), Some(held_nonce(&alice)));
    }

    #[test]
    fn force_release_without_a_lock_is_false() {
        let store = MemStore::default();
        let operator = locker(&store, "operator", 1);

        assert_eq!(block_on(operator.force_release("0123456789abcdef")), Ok(false));
    }

    // ---- stale locks and take-over ----

    /// A lock left by a crashed process: acquired an hour before `START_MS`.
    fn put_abandoned_lock(store: &MemStore) {
        let info = LockInfo {
            holder: "ghost@gone".into(),
            hostname: "gone".into(),
            pid: 9,
            acquired_at: iso_from_ms(START_MS - 3_600_000),
            ttl_ms: 30_000,
            nonce: Some("feedfacefeedface".into()),
            holder_unknown: false,
        };
        store.put_raw(DEFAULT_LOCK_KEY, &encode_lock_info(&info));
    }

    #[test]
    fn stale_lock_is_taken_over_by_replacing_exactly_that_version() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        put_abandoned_lock(&store);
        let stale_token = store.0.borrow().token_of(DEFAULT_LOCK_KEY).unwrap();
        let bob = locker(&store, "bob", 7);

        let attempt = block_on(bob.try_acquire(&env)).unwrap();

        assert_eq!(attempt, Attempt::Acquired);
        assert_eq!(store.0.borrow().replacement_tokens, vec![stale_token]);
        assert_eq!(stored_nonce(&store), Some(held_nonce(&bob)));
    }

    /// W13 regression. Both contenders read the same stale lock (same token) before either writes. The take-over is a
    /// PUT conditional on that token, so the second one fails and that contender sees the winner's fresh lock. The
    /// official variant (unconditional delete, then create; or a blind PUT) lets the second contender delete or
    /// overwrite the winner's new lock, and both go on believing they hold it.
    #[test]
    fn two_contenders_taking_over_the_same_stale_lock_only_one_wins() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        put_abandoned_lock(&store);
        let (alice, bob) = (locker(&store, "alice", 42), locker(&store, "bob", 7));
        store.0.borrow_mut().pause_overwrites = true;
        let mut alice_attempt = pin!(alice.try_acquire(&env));
        let mut bob_attempt = pin!(bob.try_acquire(&env));

        // Each reads the stale lock and stops just before its first take-over write.
        assert!(poll_once(alice_attempt.as_mut()).is_pending());
        assert!(poll_once(bob_attempt.as_mut()).is_pending());
        let Poll::Ready(alice_result) = poll_once(alice_attempt.as_mut()) else {
            panic!("alice's take-over did not finish");
        };
        let Poll::Ready(bob_result) = poll_once(bob_attempt.as_mut()) else {
            panic!("bob's take-over did not finish");
        };

        assert_eq!(alice_result, Ok(Attempt::Acquired));
        assert!(matches!(bob_result, Ok(Attempt::Busy(Some(ref info))) if info.holder == "alice@alice-host"));
        assert!(alice.is_held() && !bob.is_held(), "exactly one contender holds the lock");
        assert_eq!(stored_nonce(&store), Some(held_nonce(&alice)));
        let tokens = store.0.borrow().replacement_tokens.clone();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0], tokens[1], "both contenders targeted the same stale version");
    }

    #[test]
    fn unreadable_lock_body_is_treated_as_stale_and_taken_over() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        store.put_raw(DEFAULT_LOCK_KEY, b"<html>not json</html>");
        let bob = locker(&store, "bob", 7);
        let inspected = block_on(bob.inspect()).unwrap().expect("a lock is there");
        assert!(inspected.holder_unknown && inspected.nonce.is_none(), "{inspected:?}");

        let attempt = block_on(bob.try_acquire(&env)).unwrap();

        assert_eq!(attempt, Attempt::Acquired);
        assert!(env.traces.borrow().iter().any(|line| line.contains("unreadable lock body")));
        assert_eq!(stored_nonce(&store), Some(held_nonce(&bob)));
    }

    #[test]
    fn acquire_takes_over_once_the_holders_lock_goes_stale() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let short_ttl = LockConfig { ttl_ms: 3_000, ..config() };
        let (alice, bob) = (locker_with(&store, "alice", 42, short_ttl), locker(&store, "bob", 7));
        block_on(alice.acquire(&env)).unwrap();

        block_on(bob.acquire(&env)).unwrap();

        assert!(env.now_ms() > START_MS + 3_000, "bob waited for the ttl to pass");
        assert_eq!(stored_nonce(&store), Some(held_nonce(&bob)));
    }

    #[test]
    fn namespaced_keys_put_the_lock_below_the_namespace_once() {
        assert_eq!(namespaced_key(DEFAULT_LOCK_KEY, None), Ok(".datastore.lock".to_string()));
        assert_eq!(namespaced_key(DEFAULT_LOCK_KEY, Some("team-a")), Ok("team-a/.datastore.lock".to_string()));
        assert_eq!(namespaced_key("data/m/i/.lock", Some("team-a")), Ok("team-a/data/m/i/.lock".to_string()));
        assert_eq!(namespaced_key("team-a/data/m/i/.lock", Some("team-a")), Ok("team-a/data/m/i/.lock".to_string()));
        assert!(namespaced_key(DEFAULT_LOCK_KEY, Some("../x")).unwrap_err().contains("namespace \"../x\""));
        assert!(namespaced_key("/abs", None).unwrap_err().contains("lockKey \"/abs\""));
    }

    #[test]
    fn a_busy_lock_whose_body_never_reads_times_out_with_an_unknown_holder() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        store.put_raw(DEFAULT_LOCK_KEY, b"garbage");
        // The take-over of the unreadable lock always loses to another writer.
        for _ in 0..64 {
            let raced = StoreError::PreconditionFailed { key: DEFAULT_LOCK_KEY.into() };
            store.fail_next(Op::Put, Fault::Before(raced));
        }
        let bob = locker(&store, "bob", 7);

        let error = block_on(bob.acquire(&env)).unwrap_err();

        let LockError::Timeout { holder: Some(holder), .. } = &error else { panic!("{error:?}") };
        assert!(holder.holder_unknown);
        assert!(error.to_string().contains("could not be read"), "{error}");
    }

    #[test]
    fn lock_body_with_unknown_fields_is_read() {
        let store = MemStore::default();
        store.put_raw(
            DEFAULT_LOCK_KEY,
            br#"{"holder":"carol@c","hostname":"c","pid":5,"acquiredAt":"2026-04-24T19:45:20.123Z","ttlMs":30000,"nonce":"ab","tool":"official"}"#,
        );
        let alice = locker(&store, "alice", 42);

        let info = block_on(alice.inspect()).unwrap().expect("lock exists");

        assert_eq!((info.holder.as_str(), info.pid, info.nonce.as_deref()), ("carol@c", 5, Some("ab")));
    }

    // ---- heartbeat and losing the lock ----

    #[test]
    fn heartbeat_refreshes_acquired_at_so_a_live_holder_is_not_taken_over() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let (alice, bob) = (locker(&store, "alice", 42), locker(&store, "bob", 7));
        block_on(alice.acquire(&env)).unwrap();

        env.advance(20_000);
        block_on(alice.heartbeat(&env)).unwrap();
        env.advance(20_000); // 40 s after the first acquiredAt, 20 s after the refresh
        let attempt = block_on(bob.try_acquire(&env)).unwrap();

        let stored = store.stored_info(DEFAULT_LOCK_KEY).unwrap();
        assert_eq!(stored.acquired_at, iso_from_ms(START_MS + 20_000));
        assert!(matches!(attempt, Attempt::Busy(Some(ref info)) if info.holder == "alice@alice-host"));
        assert!(alice.ensure_held().is_ok());
    }

    #[test]
    fn holder_whose_lock_was_taken_over_learns_it_on_next_heartbeat() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let (alice, bob) = (locker(&store, "alice", 42), locker(&store, "bob", 7));
        block_on(alice.acquire(&env)).unwrap();
        env.advance(31_000); // alice's heartbeats stalled past the ttl
        assert_eq!(block_on(bob.try_acquire(&env)), Ok(Attempt::Acquired));

        let heartbeat = block_on(alice.heartbeat(&env));

        assert!(matches!(heartbeat, Err(LockError::Lost { by: Some(ref info), .. }) if info.holder == "bob@bob-host"));
        let error = alice.ensure_held().unwrap_err();
        assert!(matches!(error, LockError::Lost { .. }));
        assert!(error.to_string().contains("bob@bob-host (pid 7"), "{error}");
        assert_eq!(stored_nonce(&store), Some(held_nonce(&bob)), "alice's heartbeat did not overwrite bob");
    }

    #[test]
    fn holder_whose_lock_was_deleted_learns_it_on_next_heartbeat() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let (alice, operator) = (locker(&store, "alice", 42), locker(&store, "operator", 1));
        block_on(alice.acquire(&env)).unwrap();
        assert_eq!(block_on(operator.force_release(&held_nonce(&alice))), Ok(true));

        let heartbeat = block_on(alice.heartbeat(&env));

        assert!(matches!(heartbeat, Err(LockError::Lost { by: None, .. })));
        assert!(matches!(alice.ensure_held(), Err(LockError::Lost { .. })));
        assert_eq!(block_on(alice.inspect()), Ok(None), "the heartbeat did not recreate the lock");
    }

    #[test]
    fn release_after_take_over_keeps_the_new_holders_lock() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let (alice, bob) = (locker(&store, "alice", 42), locker(&store, "bob", 7));
        block_on(alice.acquire(&env)).unwrap();
        env.advance(31_000);
        assert_eq!(block_on(bob.try_acquire(&env)), Ok(Attempt::Acquired));

        let released = block_on(alice.release());

        assert_eq!(released, Ok(()));
        assert!(!alice.is_held());
        assert_eq!(stored_nonce(&store), Some(held_nonce(&bob)));
    }

    #[test]
    fn transient_error_during_heartbeat_does_not_mark_the_lock_lost() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let alice = locker(&store, "alice", 42);
        block_on(alice.acquire(&env)).unwrap();
        let unavailable = StoreError::Transient { status: Some(503), message: "slow down".into() };
        store.fail_next(Op::Put, Fault::Before(unavailable));

        env.advance(10_000);
        let failed = block_on(alice.heartbeat(&env));
        let held_after_failure = alice.ensure_held();
        env.advance(10_000);
        let next_tick = block_on(alice.heartbeat(&env));

        assert!(matches!(failed, Err(LockError::Store { source: StoreError::Transient { .. }, .. })));
        assert_eq!(held_after_failure, Ok(()));
        assert_eq!(next_tick, Ok(()));
        let stored = store.stored_info(DEFAULT_LOCK_KEY).unwrap();
        assert_eq!(stored.acquired_at, iso_from_ms(START_MS + 20_000));
    }

    #[test]
    fn heartbeat_whose_reply_was_lost_keeps_the_lock() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let alice = locker(&store, "alice", 42);
        block_on(alice.acquire(&env)).unwrap();
        let timeout = StoreError::Transient { status: None, message: "connection reset".into() };
        store.fail_next(Op::Put, Fault::After(timeout));
        env.advance(10_000);
        assert!(block_on(alice.heartbeat(&env)).is_err());

        env.advance(10_000);
        let next_tick = block_on(alice.heartbeat(&env));
        block_on(alice.release()).unwrap();

        assert_eq!(next_tick, Ok(()), "our own landed write is not a take-over");
        assert_eq!(block_on(alice.inspect()), Ok(None), "release deleted the refreshed lock");
    }

    #[test]
    fn heartbeat_without_holding_is_not_held() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let alice = locker(&store, "alice", 42);

        let heartbeat = block_on(alice.heartbeat(&env));

        assert!(matches!(heartbeat, Err(LockError::NotHeld { ref key }) if key == DEFAULT_LOCK_KEY));
        assert_eq!(store.requests(), 0);
    }

    #[test]
    fn lost_holder_can_acquire_again_with_a_new_nonce() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let (alice, operator) = (locker(&store, "alice", 42), locker(&store, "operator", 1));
        block_on(alice.acquire(&env)).unwrap();
        let first_nonce = held_nonce(&alice);
        block_on(operator.force_release(&first_nonce)).unwrap();
        assert!(block_on(alice.heartbeat(&env)).is_err());

        block_on(alice.acquire(&env)).unwrap();

        assert_ne!(held_nonce(&alice), first_nonce);
        assert_eq!(stored_nonce(&store), Some(held_nonce(&alice)));
    }

    // ---- acquisition edge cases ----

    #[test]
    fn abort_during_acquire_wait_returns_aborted() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let (alice, bob) = (locker(&store, "alice", 42), locker(&store, "bob", 7));
        block_on(alice.acquire(&env)).unwrap();
        env.abort_on_sleep.set(Some(2));

        let result = block_on(bob.acquire(&env));

        assert!(matches!(result, Err(LockError::Aborted { ref key }) if key == DEFAULT_LOCK_KEY));
        assert_eq!(env.sleeps.get(), 2);
        assert_eq!(stored_nonce(&store), Some(held_nonce(&alice)));
    }

    #[test]
    fn lock_that_vanishes_after_a_failed_create_is_created_again_in_the_same_attempt() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let bob = locker(&store, "bob", 7);
        // The create loses to a holder who releases before our GET.
        let raced = StoreError::PreconditionFailed { key: DEFAULT_LOCK_KEY.into() };
        store.fail_next(Op::Put, Fault::Before(raced));

        let attempt = block_on(bob.try_acquire(&env));

        assert_eq!(attempt, Ok(Attempt::Acquired));
        assert_eq!(stored_nonce(&store), Some(held_nonce(&bob)));
    }

    #[test]
    fn acquire_whose_create_reply_was_lost_recognises_its_own_lock() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let alice = locker(&store, "alice", 42);
        let reset = StoreError::Transient { status: None, message: "connection reset".into() };
        store.fail_next(Op::Put, Fault::After(reset));

        block_on(alice.acquire(&env)).unwrap();

        assert_eq!(env.now_ms(), START_MS + 1_000, "one retry interval, not a whole ttl");
        assert_eq!(stored_nonce(&store), Some(held_nonce(&alice)));
    }

    #[test]
    fn acquire_gives_up_at_once_on_a_non_transient_store_error() {
        let (store, env) = (MemStore::default(), FakeEnv::at(START_MS));
        let alice = locker(&store, "alice", 42);
        let denied = StoreError::Auth { status: Some(403), message: "AccessDenied".into() };
        store.fail_next(Op::Put, Fault::Before(denied));

        let result = block_on(alice.acquire(&env));

        assert!(matches!(result, Err(LockError::Store { source: StoreError::Auth { .. }, .. })));
        assert_eq!(env.sleeps.get(), 0);
    }
}
