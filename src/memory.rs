//! In-memory test doubles: an object store with exact S3 or GCS token semantics, a cache directory, and a host
//! environment with a virtual clock. All single-threaded (`Rc`/`RefCell`); handles are cheap clones of shared state,
//! so several engines can share one bucket.
//!
//! Every store and cache call first awaits [`sim::yield_now`](crate::sim::yield_now): under the simulator's scheduler
//! that is where another actor may run. Then it passes through its [`Faults`] controller (pause gates, hooks, injected
//! failures), then it acts. A call is atomic once past its yield point.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use sha2::{Digest, Sha256};

use crate::sim::{yield_now, SplitMix64};
use crate::store::{
    Downloaded, Env, Expected, Fetched, FileStat, ListPage, ListedObject, LocalCache, ObjectMeta, ObjectStore,
    Precondition, Prepared, StoreError, StoreResult, WalkItem,
};
use crate::token::VersionToken;

/// A file or object body, shared between store and cache without copying.
pub type Body = Rc<Vec<u8>>;

/// 2026-01-01T00:00:00Z: where virtual clocks start, so timestamps look like real ones.
pub const DEFAULT_START_MS: i64 = 1_767_225_600_000;
/// The first GCS generation a fresh bucket hands out (real generations are microsecond timestamps of this size).
pub const FIRST_GCS_GENERATION: u64 = 1_700_000_000_000_001;
/// Objects per `list` page unless changed (S3 and GCS both default to 1000).
pub const DEFAULT_PAGE_SIZE: usize = 1000;

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The S3-style token of a body: hex of the first 16 bytes of its SHA-256. Real single-part S3 ETags are the hex MD5
/// of the body; what matters here is the same property: content-derived, 32 hex digits, identical bytes give an
/// identical token (so an unchanged rewrite does not change the ETag).
pub fn s3_token(bytes: &[u8]) -> VersionToken {
    let digest = sha256(bytes);
    VersionToken::new(digest[..16].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

// ---------------------------------------------------------------------------------------------------------------------
// Virtual clock

/// A shared millisecond clock that moves only when told to.
#[derive(Clone, Debug)]
pub struct VirtualClock(Rc<Cell<i64>>);

impl VirtualClock {
    pub fn new(start_ms: i64) -> Self {
        VirtualClock(Rc::new(Cell::new(start_ms)))
    }

    pub fn now_ms(&self) -> i64 {
        self.0.get()
    }

    /// Set the time, also backwards (a clock step, W18).
    pub fn set(&self, ms: i64) {
        self.0.set(ms);
    }

    pub fn advance(&self, ms: i64) {
        self.0.set(self.0.get() + ms);
    }

    /// Advance by 1 ms and return the new time: every cache write gets a distinct mtime.
    fn tick(&self) -> i64 {
        self.advance(1);
        self.0.get()
    }
}

impl Default for VirtualClock {
    fn default() -> Self {
        VirtualClock::new(DEFAULT_START_MS)
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Fault injection

/// The kind of a store or cache call, for fault rules and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Get,
    GetBytes,
    Head,
    Put,
    PutBytes,
    Delete,
    List,
    Stat,
    Walk,
    ReadInternal,
    WriteInternal,
    PrepareUpload,
    Download,
    Hash,
}

const KIND_COUNT: usize = 14;

/// Identifies an installed rule, for [`Faults::remove`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleId(u64);

type KeyPredicate = Rc<dyn Fn(&str) -> bool>;
type Hook = Rc<RefCell<dyn FnMut(&str)>>;

enum Trigger {
    /// The call of this kind with this 1-based number, counted by the controller since it was created.
    Call(usize),
    Key(KeyPredicate),
    /// Each call independently, with this probability, from a seeded stream (deterministic per call sequence).
    Random {
        probability: f64,
        rng: SplitMix64,
    },
}

enum Action {
    Fail(StoreError),
    /// The call takes effect, then the caller gets the error (a response lost after the write landed).
    FailAfterEffect(StoreError),
    Hook(Hook),
    Pause(Gate),
}

struct Rule {
    id: RuleId,
    kind: Kind,
    trigger: Trigger,
    action: Action,
}

#[derive(Default)]
struct FaultState {
    next_id: u64,
    calls: [usize; KIND_COUNT],
    rules: Vec<Rule>,
    /// Calls act at once, without a scheduling point (see [`Faults::without_yields`]).
    no_yields: bool,
}

/// Fault rules for the calls of one or more handles (clones share rules). Rules act when a call arrives (after its
/// yield point), in this order: pause gates, hooks, injected failures.
///
/// `n` in the `*_nth` rules counts the calls of that kind arriving through this controller *after the rule is
/// installed*, starting at 1: `fail_nth(Kind::PutBytes, 2, e)` fails the second `put_bytes` from now.
#[derive(Clone, Default)]
pub struct Faults(Rc<RefCell<FaultState>>);

/// What to do with one arriving call.
#[derive(Default)]
struct CallPlan {
    gates: Vec<Gate>,
    hooks: Vec<Hook>,
    fail_before: Option<StoreError>,
    fail_after: Option<StoreError>,
}

impl Faults {
    pub fn new() -> Self {
        Faults::default()
    }

    /// Fault rules whose calls are not scheduling points. For a cache that no other actor shares, its calls commute
    /// with every other actor's, so interleaving at them only multiplies equivalent schedules (partial-order
    /// reduction); exhaustive exploration then covers the interleavings of store calls, which are the ones that matter.
    pub fn without_yields() -> Self {
        let faults = Faults::default();
        faults.0.borrow_mut().no_yields = true;
        faults
    }

    /// Fail the `n`-th call of `kind` (from now) with `error`, before it has any effect.
    pub fn fail_nth(&self, kind: Kind, n: usize, error: StoreError) -> RuleId {
        let trigger = self.nth_trigger(kind, n);
        self.add(kind, trigger, Action::Fail(error))
    }

    /// Let the `n`-th call of `kind` (from now) take effect, then report `error` to the caller (e.g. a PUT whose
    /// response timed out: a retry with the old `If-Match` then meets its own write).
    pub fn fail_nth_after_effect(&self, kind: Kind, n: usize, error: StoreError) -> RuleId {
        let trigger = self.nth_trigger(kind, n);
        self.add(kind, trigger, Action::FailAfterEffect(error))
    }

    /// Fail every call of `kind` whose key matches (until removed). Calls without a key (`walk`) see `""`; `list`
    /// sees its prefix.
    pub fn fail_matching(&self, kind: Kind, key: impl Fn(&str) -> bool + 'static, error: StoreError) -> RuleId {
        self.add(kind, Trigger::Key(Rc::new(key)), Action::Fail(error))
    }

    /// Fail each call of `kind` with probability `probability`, drawn from a splitmix64 stream seeded with `seed`
    /// (tie the seed to the simulator's run seed to explore retry paths reproducibly).
    pub fn fail_randomly(&self, kind: Kind, probability: f64, seed: u64, error: StoreError) -> RuleId {
        let trigger = Trigger::Random { probability, rng: SplitMix64::new(seed) };
        self.add(kind, trigger, Action::Fail(error))
    }

    /// Run `hook(key)` synchronously whenever a matching call of `kind` arrives, just before it acts: the place to
    /// make a concurrent writer act at an exact moment ("when A HEADs the index, B pushes").
    pub fn on_call(
        &self,
        kind: Kind,
        key: impl Fn(&str) -> bool + 'static,
        hook: impl FnMut(&str) + 'static,
    ) -> RuleId {
        self.add(kind, Trigger::Key(Rc::new(key)), Action::Hook(Rc::new(RefCell::new(hook))))
    }

    /// Hold every matching call of `kind` until the returned gate is opened (by another actor or the test).
    pub fn pause_matching(&self, kind: Kind, key: impl Fn(&str) -> bool + 'static) -> Gate {
        let gate = Gate::closed();
        self.add(kind, Trigger::Key(Rc::new(key)), Action::Pause(gate.clone()));
        gate
    }

    /// Hold the `n`-th call of `kind` (from now) until the returned gate is opened.
    pub fn pause_nth(&self, kind: Kind, n: usize) -> Gate {
        let gate = Gate::closed();
        let trigger = self.nth_trigger(kind, n);
        self.add(kind, trigger, Action::Pause(gate.clone()));
        gate
    }

    pub fn remove(&self, id: RuleId) {
        self.0.borrow_mut().rules.retain(|rule| rule.id != id);
    }

    /// Remove every rule (counters are kept).
    pub fn clear(&self) {
        self.0.borrow_mut().rules.clear();
    }

    /// Calls of `kind` that have arrived through this controller.
    pub fn calls(&self, kind: Kind) -> usize {
        self.0.borrow().calls[kind as usize]
    }

    fn nth_trigger(&self, kind: Kind, n: usize) -> Trigger {
        assert!(n >= 1, "calls are counted from 1");
        Trigger::Call(self.calls(kind) + n)
    }

    fn add(&self, kind: Kind, trigger: Trigger, action: Action) -> RuleId {
        let mut state = self.0.borrow_mut();
        state.next_id += 1;
        let id = RuleId(state.next_id);
        state.rules.push(Rule { id, kind, trigger, action });
        id
    }

    fn plan(&self, kind: Kind, key: &str) -> CallPlan {
        let mut state = self.0.borrow_mut();
        state.calls[kind as usize] += 1;
        let call = state.calls[kind as usize];
        let mut plan = CallPlan::default();
        for rule in state.rules.iter_mut().filter(|rule| rule.kind == kind) {
            let fires = match &mut rule.trigger {
                Trigger::Call(n) => *n == call,
                Trigger::Key(matches) => matches(key),
                Trigger::Random { probability, rng } => rng.next_f64() < *probability,
            };
            if !fires {
                continue;
            }
            match &rule.action {
                Action::Fail(error) => {
                    plan.fail_before.get_or_insert_with(|| error.clone());
                }
                Action::FailAfterEffect(error) => {
                    plan.fail_after.get_or_insert_with(|| error.clone());
                }
                Action::Hook(hook) => plan.hooks.push(hook.clone()),
                Action::Pause(gate) => plan.gates.push(gate.clone()),
            }
        }
        plan
    }

    /// The common prologue of every call: yield point, count, pause, hooks, injected failure. `Ok` carries an error
    /// to report after the call has acted.
    async fn arrive(&self, kind: Kind, key: &str) -> StoreResult<Option<StoreError>> {
        if !self.0.borrow().no_yields {
            yield_now().await;
        }
        let plan = self.plan(kind, key);
        for gate in &plan.gates {
            gate.passage().await;
        }
        for hook in &plan.hooks {
            (hook.borrow_mut())(key);
        }
        match plan.fail_before {
            Some(error) => Err(error),
            None => Ok(plan.fail_after),
        }
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.0.borrow();
        f.debug_struct("Faults").field("rules", &state.rules.len()).field("calls", &state.calls).finish()
    }
}

/// Apply an after-effect failure to a finished call.
fn settle<T>(result: StoreResult<T>, fail_after: Option<StoreError>) -> StoreResult<T> {
    match (result, fail_after) {
        (Ok(_), Some(error)) => Err(error),
        (result, _) => result,
    }
}

#[derive(Default)]
struct GateState {
    open: Cell<bool>,
    arrivals: Cell<usize>,
    /// Calls held at the gate.
    held: RefCell<Vec<Waker>>,
    /// Futures from `reached()` waiting for the first arrival.
    watchers: RefCell<Vec<Waker>>,
}

/// A pause point: matching calls wait here until [`Gate::open`]. Under the scheduler a held actor is simply not
/// runnable; under [`block_on`](crate::sim::block_on) a call held forever is reported as a deadlock.
#[derive(Clone, Default)]
pub struct Gate(Rc<GateState>);

impl Gate {
    fn closed() -> Self {
        Gate::default()
    }

    /// Release every held call; later calls pass straight through.
    pub fn open(&self) {
        self.0.open.set(true);
        for waker in self.0.held.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    pub fn is_open(&self) -> bool {
        self.0.open.get()
    }

    /// Calls that have reached the gate so far (held or passed).
    pub fn arrivals(&self) -> usize {
        self.0.arrivals.get()
    }

    /// Resolves once at least one call has reached the gate (for an actor that acts "while A is paused here").
    pub fn reached(&self) -> impl Future<Output = ()> {
        GateReached(self.clone())
    }

    fn passage(&self) -> GatePassage {
        self.0.arrivals.set(self.0.arrivals.get() + 1);
        for waker in self.0.watchers.borrow_mut().drain(..) {
            waker.wake();
        }
        GatePassage(self.clone())
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate").field("open", &self.is_open()).field("arrivals", &self.arrivals()).finish()
    }
}

struct GatePassage(Gate);

impl Future for GatePassage {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let gate = &self.0 .0;
        if gate.open.get() {
            Poll::Ready(())
        } else {
            gate.held.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        }
    }
}

struct GateReached(Gate);

impl Future for GateReached {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let gate = &self.0 .0;
        if gate.arrivals.get() > 0 {
            Poll::Ready(())
        } else {
            gate.watchers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Object store

/// Which real store's version tokens to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenStyle {
    /// Content-derived ETag (see [`s3_token`]): rewriting identical bytes keeps the token. `If-Match` on a missing
    /// object answers `NotFound` (S3's 404 NoSuchKey).
    S3,
    /// Generation: a bucket-wide counter, new on every write, also for identical bytes. `ifGenerationMatch` on a
    /// missing object answers `PreconditionFailed` (412).
    Gcs,
}

/// Requests seen by one store handle, by kind (injected failures included: the request was made).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub get: usize,
    pub get_bytes: usize,
    pub head: usize,
    pub put: usize,
    pub put_bytes: usize,
    pub delete: usize,
    pub list: usize,
}

impl RequestCounts {
    pub fn total(&self) -> usize {
        self.get + self.get_bytes + self.head + self.put + self.put_bytes + self.delete + self.list
    }

    fn bump(&mut self, kind: Kind) {
        let counter = match kind {
            Kind::Get => &mut self.get,
            Kind::GetBytes => &mut self.get_bytes,
            Kind::Head => &mut self.head,
            Kind::Put => &mut self.put,
            Kind::PutBytes => &mut self.put_bytes,
            Kind::Delete => &mut self.delete,
            Kind::List => &mut self.list,
            other => unreachable!("{other:?} is not a store request"),
        };
        *counter += 1;
    }
}

#[derive(Clone)]
struct StoredObject {
    body: Body,
    token: VersionToken,
}

struct Bucket {
    style: TokenStyle,
    objects: BTreeMap<String, StoredObject>,
    next_generation: u64,
    page_size: usize,
}

impl Bucket {
    fn next_token(&mut self, bytes: &[u8]) -> VersionToken {
        match self.style {
            TokenStyle::S3 => s3_token(bytes),
            TokenStyle::Gcs => {
                let generation = self.next_generation;
                self.next_generation += 1;
                VersionToken::new(generation.to_string())
            }
        }
    }

    fn check_write(&self, key: &str, precondition: &Precondition) -> StoreResult<()> {
        let current = self.objects.get(key);
        match (precondition, current) {
            (Precondition::None, _) | (Precondition::IfAbsent, None) => Ok(()),
            (Precondition::IfAbsent, Some(_)) => Err(precondition_failed(key)),
            (Precondition::IfMatch(expected), Some(object)) if object.token == *expected => Ok(()),
            (Precondition::IfMatch(_), Some(_)) => Err(precondition_failed(key)),
            (Precondition::IfMatch(_), None) => match self.style {
                TokenStyle::S3 => Err(not_found(key)),
                TokenStyle::Gcs => Err(precondition_failed(key)),
            },
        }
    }

    fn write(&mut self, key: &str, body: Body, precondition: &Precondition) -> StoreResult<VersionToken> {
        self.check_write(key, precondition)?;
        let token = self.next_token(&body);
        self.objects.insert(key.to_string(), StoredObject { body, token: token.clone() });
        Ok(token)
    }

    fn fetch(&self, key: &str, if_none_match: Option<&VersionToken>) -> StoreResult<Fetched<Body>> {
        let object = self.objects.get(key).ok_or_else(|| not_found(key))?;
        if if_none_match == Some(&object.token) {
            return Ok(Fetched::NotModified);
        }
        Ok(Fetched::Found { body: object.body.clone(), token: object.token.clone(), size: object.body.len() as u64 })
    }
}

fn not_found(key: &str) -> StoreError {
    StoreError::NotFound { key: key.to_string() }
}

fn precondition_failed(key: &str) -> StoreError {
    StoreError::PreconditionFailed { key: key.to_string() }
}

/// An in-memory bucket. `clone()` shares the bucket, the fault rules and the request counters; [`MemoryStore::client`]
/// gives a second client of the same bucket with its own rules and counters (one per simulated machine).
#[derive(Clone)]
pub struct MemoryStore {
    bucket: Rc<RefCell<Bucket>>,
    faults: Faults,
    requests: Rc<Cell<RequestCounts>>,
}

impl MemoryStore {
    pub fn new(style: TokenStyle) -> Self {
        let bucket = Bucket {
            style,
            objects: BTreeMap::new(),
            next_generation: FIRST_GCS_GENERATION,
            page_size: DEFAULT_PAGE_SIZE,
        };
        MemoryStore { bucket: Rc::new(RefCell::new(bucket)), faults: Faults::new(), requests: Rc::default() }
    }

    /// Another client of the same bucket, with fresh fault rules and request counters.
    pub fn client(&self) -> Self {
        MemoryStore { bucket: self.bucket.clone(), faults: Faults::new(), requests: Rc::default() }
    }

    /// The same handle with `faults` as its controller (e.g. one controller shared with a cache).
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn style(&self) -> TokenStyle {
        self.bucket.borrow().style
    }

    pub fn set_page_size(&self, page_size: usize) {
        assert!(page_size > 0, "page size must be positive");
        self.bucket.borrow_mut().page_size = page_size;
    }

    pub fn requests(&self) -> RequestCounts {
        self.requests.get()
    }

    pub fn reset_requests(&self) {
        self.requests.set(RequestCounts::default());
    }

    /// Every object: key → (bytes, token).
    pub fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, VersionToken)> {
        let bucket = self.bucket.borrow();
        bucket.objects.iter().map(|(key, object)| (key.clone(), (object.body.to_vec(), object.token.clone()))).collect()
    }

    pub fn object(&self, key: &str) -> Option<(Vec<u8>, VersionToken)> {
        let bucket = self.bucket.borrow();
        bucket.objects.get(key).map(|object| (object.body.to_vec(), object.token.clone()))
    }

    pub fn token(&self, key: &str) -> Option<VersionToken> {
        self.bucket.borrow().objects.get(key).map(|object| object.token.clone())
    }

    pub fn keys(&self) -> Vec<String> {
        self.bucket.borrow().objects.keys().cloned().collect()
    }

    /// Write an object directly (no yield, no faults, not counted), with a token of the bucket's style.
    pub fn put_raw(&self, key: &str, bytes: impl Into<Vec<u8>>) -> VersionToken {
        let body = Rc::new(bytes.into());
        let mut bucket = self.bucket.borrow_mut();
        bucket.write(key, body, &Precondition::None).expect("an unconditional write succeeds")
    }

    /// Write an object directly with a chosen token (e.g. a multipart ETag `"<hex>-3"`, or a GCS generation "0").
    pub fn put_raw_with_token(&self, key: &str, bytes: impl Into<Vec<u8>>, token: VersionToken) {
        let object = StoredObject { body: Rc::new(bytes.into()), token };
        self.bucket.borrow_mut().objects.insert(key.to_string(), object);
    }

    /// Delete an object directly; whether it existed.
    pub fn remove_raw(&self, key: &str) -> bool {
        self.bucket.borrow_mut().objects.remove(key).is_some()
    }

    async fn arrive(&self, kind: Kind, key: &str) -> StoreResult<Option<StoreError>> {
        let arrival = self.faults.arrive(kind, key).await;
        let mut counts = self.requests.get();
        counts.bump(kind);
        self.requests.set(counts);
        arrival
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bucket = self.bucket.borrow();
        f.debug_struct("MemoryStore")
            .field("style", &bucket.style)
            .field("objects", &bucket.objects.len())
            .field("requests", &self.requests.get())
            .finish()
    }
}

impl ObjectStore for MemoryStore {
    type Body = Body;

    async fn get(&self, key: &str, if_none_match: Option<&VersionToken>) -> StoreResult<Fetched<Body>> {
        let fail_after = self.arrive(Kind::Get, key).await?;
        settle(self.bucket.borrow().fetch(key, if_none_match), fail_after)
    }

    async fn get_bytes(&self, key: &str, if_none_match: Option<&VersionToken>) -> StoreResult<Fetched<Vec<u8>>> {
        let fail_after = self.arrive(Kind::GetBytes, key).await?;
        let fetched = self.bucket.borrow().fetch(key, if_none_match).map(|fetched| match fetched {
            Fetched::NotModified => Fetched::NotModified,
            Fetched::Found { body, token, size } => Fetched::Found { body: body.to_vec(), token, size },
        });
        settle(fetched, fail_after)
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        let fail_after = self.arrive(Kind::Head, key).await?;
        let bucket = self.bucket.borrow();
        let meta = bucket
            .objects
            .get(key)
            .map(|object| ObjectMeta { token: object.token.clone(), size: object.body.len() as u64 })
            .ok_or_else(|| not_found(key));
        settle(meta, fail_after)
    }

    async fn put(&self, key: &str, body: Body, precondition: &Precondition) -> StoreResult<VersionToken> {
        let fail_after = self.arrive(Kind::Put, key).await?;
        settle(self.bucket.borrow_mut().write(key, body, precondition), fail_after)
    }

    async fn put_bytes(&self, key: &str, bytes: Vec<u8>, precondition: &Precondition) -> StoreResult<VersionToken> {
        let fail_after = self.arrive(Kind::PutBytes, key).await?;
        settle(self.bucket.borrow_mut().write(key, Rc::new(bytes), precondition), fail_after)
    }

    async fn delete(&self, key: &str, if_match: Option<&VersionToken>) -> StoreResult<()> {
        let fail_after = self.arrive(Kind::Delete, key).await?;
        let mut bucket = self.bucket.borrow_mut();
        let deleted = match bucket.objects.get(key) {
            None => Err(not_found(key)),
            Some(object) if if_match.is_some_and(|expected| *expected != object.token) => Err(precondition_failed(key)),
            Some(_) => {
                bucket.objects.remove(key);
                Ok(())
            }
        };
        settle(deleted, fail_after)
    }

    /// Keys with `prefix`, ascending. The page token is the last key of the previous page, so paging stays correct
    /// while other writers add or remove keys (like S3's `StartAfter`).
    async fn list(&self, prefix: &str, page: Option<&str>) -> StoreResult<ListPage> {
        let fail_after = self.arrive(Kind::List, prefix).await?;
        let bucket = self.bucket.borrow();
        let after = match page {
            None => None,
            Some(token) => match token.strip_prefix("after:") {
                Some(key) => Some(key),
                None => {
                    let message = format!("invalid page token {token:?}");
                    return settle(Err(StoreError::Http { status: 400, message }), fail_after);
                }
            },
        };
        let mut objects = Vec::new();
        let mut more = false;
        let candidates = bucket
            .objects
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix));
        for (key, object) in candidates.filter(|(key, _)| after.is_none_or(|after| key.as_str() > after)) {
            if objects.len() == bucket.page_size {
                more = true;
                break;
            }
            objects.push(ListedObject {
                key: key.clone(),
                size: object.body.len() as u64,
                token: object.token.clone(),
            });
        }
        let next_page = if more { objects.last().map(|last| format!("after:{}", last.key)) } else { None };
        settle(Ok(ListPage { objects, next_page }), fail_after)
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Local cache

/// Calls seen by one cache handle, by kind (injected failures included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCalls {
    pub stat: usize,
    pub walk: usize,
    pub read_internal: usize,
    pub write_internal: usize,
    pub prepare_upload: usize,
    pub download: usize,
    pub hash: usize,
}

impl CacheCalls {
    fn bump(&mut self, kind: Kind) {
        let counter = match kind {
            Kind::Stat => &mut self.stat,
            Kind::Walk => &mut self.walk,
            Kind::ReadInternal => &mut self.read_internal,
            Kind::WriteInternal => &mut self.write_internal,
            Kind::PrepareUpload => &mut self.prepare_upload,
            Kind::Download => &mut self.download,
            Kind::Hash => &mut self.hash,
            other => unreachable!("{other:?} is not a cache call"),
        };
        *counter += 1;
    }
}

#[derive(Clone)]
struct CacheFile {
    body: Body,
    mtime_ms: i64,
}

impl CacheFile {
    fn stat(&self) -> FileStat {
        FileStat { size: self.body.len() as u64, mtime_ms: self.mtime_ms }
    }
}

#[derive(Default)]
struct CacheDir {
    files: BTreeMap<String, CacheFile>,
    symlinks: BTreeSet<String>,
    vanish_on_walk: BTreeSet<String>,
}

/// An in-memory cache directory: rel → (bytes, mtime) plus symlinks. Internal files (`read_internal`/
/// `write_internal`) are ordinary root files here, so `walk` lists them as the real directory would.
/// Every write takes its mtime from the cache's clock, which advances 1 ms per write.
#[derive(Clone)]
pub struct MemoryCache {
    dir: Rc<RefCell<CacheDir>>,
    clock: VirtualClock,
    faults: Faults,
    calls: Rc<Cell<CacheCalls>>,
}

impl Default for MemoryCache {
    fn default() -> Self {
        MemoryCache::new()
    }
}

impl MemoryCache {
    pub fn new() -> Self {
        MemoryCache::with_clock(VirtualClock::default())
    }

    /// A cache whose mtimes come from `clock` (e.g. shared with a [`TestEnv`] to model one machine).
    pub fn with_clock(clock: VirtualClock) -> Self {
        MemoryCache { dir: Rc::default(), clock, faults: Faults::new(), calls: Rc::default() }
    }

    /// Another handle on the same directory with fresh fault rules and counters (a second service instance).
    pub fn instance(&self) -> Self {
        MemoryCache { dir: self.dir.clone(), clock: self.clock.clone(), faults: Faults::new(), calls: Rc::default() }
    }

    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    pub fn calls(&self) -> CacheCalls {
        self.calls.get()
    }

    pub fn reset_calls(&self) {
        self.calls.set(CacheCalls::default());
    }

    /// Write a file as swamp would (no yield, no faults): new bytes, new mtime.
    pub fn write_file(&self, rel: &str, bytes: impl Into<Vec<u8>>) {
        let mtime_ms = self.clock.tick();
        self.write_file_with_mtime(rel, bytes, mtime_ms);
    }

    /// Write a file with a chosen mtime (same-size rewrites within one mtime tick, clock steps).
    pub fn write_file_with_mtime(&self, rel: &str, bytes: impl Into<Vec<u8>>, mtime_ms: i64) {
        let mut dir = self.dir.borrow_mut();
        dir.symlinks.remove(rel);
        dir.files.insert(rel.to_string(), CacheFile { body: Rc::new(bytes.into()), mtime_ms });
    }

    pub fn set_mtime(&self, rel: &str, mtime_ms: i64) {
        if let Some(file) = self.dir.borrow_mut().files.get_mut(rel) {
            file.mtime_ms = mtime_ms;
        }
    }

    /// Delete a file; whether it existed.
    pub fn remove_file(&self, rel: &str) -> bool {
        self.dir.borrow_mut().files.remove(rel).is_some()
    }

    pub fn file(&self, rel: &str) -> Option<Vec<u8>> {
        self.dir.borrow().files.get(rel).map(|file| file.body.to_vec())
    }

    pub fn file_stat(&self, rel: &str) -> Option<FileStat> {
        self.dir.borrow().files.get(rel).map(CacheFile::stat)
    }

    /// Every regular file, internal ones included.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        self.dir.borrow().files.iter().map(|(rel, file)| (rel.clone(), file.body.to_vec())).collect()
    }

    /// Place a symlink at `rel` (replacing a file there). Walks report it; nothing reads through it.
    pub fn add_symlink(&self, rel: &str) {
        let mut dir = self.dir.borrow_mut();
        dir.files.remove(rel);
        dir.symlinks.insert(rel.to_string());
    }

    /// The next walk lists `rel` but finds it gone when it stats it: it is reported `Vanished` and deleted.
    pub fn vanish_on_next_walk(&self, rel: &str) {
        self.dir.borrow_mut().vanish_on_walk.insert(rel.to_string());
    }

    async fn arrive(&self, kind: Kind, key: &str) -> StoreResult<Option<StoreError>> {
        let arrival = self.faults.arrive(kind, key).await;
        let mut calls = self.calls.get();
        calls.bump(kind);
        self.calls.set(calls);
        arrival
    }

    fn regular_file(dir: &CacheDir, rel: &str) -> StoreResult<Option<CacheFile>> {
        if dir.symlinks.contains(rel) {
            return Err(StoreError::Io { message: format!("{rel}: is a symlink (not followed)") });
        }
        Ok(dir.files.get(rel).cloned())
    }
}

impl fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.dir.borrow();
        f.debug_struct("MemoryCache")
            .field("files", &dir.files.keys().collect::<Vec<_>>())
            .field("symlinks", &dir.symlinks)
            .finish()
    }
}

fn downloaded(file: &CacheFile) -> Downloaded {
    Downloaded { stat: file.stat(), sha256: sha256(&file.body) }
}

impl LocalCache for MemoryCache {
    type Body = Body;

    /// A symlink is an `Io` error (never followed).
    async fn stat(&self, rel: &str) -> StoreResult<Option<FileStat>> {
        let fail_after = self.arrive(Kind::Stat, rel).await?;
        let stat = MemoryCache::regular_file(&self.dir.borrow(), rel).map(|file| file.map(|f| f.stat()));
        settle(stat, fail_after)
    }

    async fn walk(&self) -> StoreResult<Vec<WalkItem>> {
        let fail_after = self.arrive(Kind::Walk, "").await?;
        let mut dir = self.dir.borrow_mut();
        let vanishing = std::mem::take(&mut dir.vanish_on_walk);
        let mut items: Vec<WalkItem> = Vec::with_capacity(dir.files.len() + dir.symlinks.len());
        for (rel, file) in &dir.files {
            if vanishing.contains(rel) {
                items.push(WalkItem::Vanished { rel: rel.clone() });
            } else {
                items.push(WalkItem::File { rel: rel.clone(), stat: file.stat() });
            }
        }
        items.extend(dir.symlinks.iter().map(|rel| WalkItem::Symlink { rel: rel.clone() }));
        for rel in &vanishing {
            dir.files.remove(rel);
        }
        items.sort_by(|a, b| walk_rel(a).cmp(walk_rel(b)));
        settle(Ok(items), fail_after)
    }

    async fn read_internal(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let fail_after = self.arrive(Kind::ReadInternal, name).await?;
        let bytes = MemoryCache::regular_file(&self.dir.borrow(), name).map(|file| file.map(|f| f.body.to_vec()));
        settle(bytes, fail_after)
    }

    async fn write_internal(&self, name: &str, bytes: Vec<u8>) -> StoreResult<()> {
        let fail_after = self.arrive(Kind::WriteInternal, name).await?;
        self.write_file(name, bytes);
        settle(Ok(()), fail_after)
    }

    async fn prepare_upload(&self, rel: &str) -> StoreResult<Option<Prepared<Body>>> {
        let fail_after = self.arrive(Kind::PrepareUpload, rel).await?;
        let prepared = MemoryCache::regular_file(&self.dir.borrow(), rel)
            .map(|file| file.map(|file| Prepared { sha256: sha256(&file.body), stat: file.stat(), body: file.body }));
        settle(prepared, fail_after)
    }

    /// Verifies size (and hash) first; on a mismatch nothing changes and the error names `rel`.
    async fn download(&self, rel: &str, body: Body, expected: Expected) -> StoreResult<Downloaded> {
        let fail_after = self.arrive(Kind::Download, rel).await?;
        if body.len() as u64 != expected.size {
            let message = format!("{rel}: downloaded {} bytes, expected {}", body.len(), expected.size);
            return Err(StoreError::Io { message });
        }
        let digest = sha256(&body);
        if expected.sha256.is_some_and(|wanted| wanted != digest) {
            return Err(StoreError::Io { message: format!("{rel}: downloaded content does not match its sha256") });
        }
        let file = CacheFile { body, mtime_ms: self.clock.tick() };
        let result = Downloaded { stat: file.stat(), sha256: digest };
        let mut dir = self.dir.borrow_mut();
        dir.symlinks.remove(rel); // a rename replaces the link itself, never its target
        dir.files.insert(rel.to_string(), file);
        settle(Ok(result), fail_after)
    }

    async fn hash(&self, rel: &str) -> StoreResult<Option<Downloaded>> {
        let fail_after = self.arrive(Kind::Hash, rel).await?;
        let hashed = MemoryCache::regular_file(&self.dir.borrow(), rel).map(|file| file.as_ref().map(downloaded));
        settle(hashed, fail_after)
    }
}

fn walk_rel(item: &WalkItem) -> &str {
    match item {
        WalkItem::File { rel, .. } | WalkItem::Vanished { rel } | WalkItem::Symlink { rel } => rel,
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Host environment

/// A test [`Env`]: virtual clock, seeded randomness, an abort flag, recorded sleeps and trace lines. Clones share all
/// of it.
#[derive(Clone)]
pub struct TestEnv {
    clock: VirtualClock,
    rng: Rc<RefCell<SplitMix64>>,
    aborted: Rc<Cell<bool>>,
    sleeps: Rc<RefCell<Vec<u64>>>,
    traces: Rc<RefCell<Vec<String>>>,
}

impl TestEnv {
    pub fn new(seed: u64) -> Self {
        TestEnv::with_clock(VirtualClock::default(), seed)
    }

    pub fn with_clock(clock: VirtualClock, seed: u64) -> Self {
        TestEnv {
            clock,
            rng: Rc::new(RefCell::new(SplitMix64::new(seed))),
            aborted: Rc::default(),
            sleeps: Rc::default(),
            traces: Rc::default(),
        }
    }

    pub fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    pub fn advance(&self, ms: i64) {
        self.clock.advance(ms);
    }

    /// Abort the operation in progress (and every later one until [`TestEnv::reset_abort`]).
    pub fn abort(&self) {
        self.aborted.set(true);
    }

    pub fn reset_abort(&self) {
        self.aborted.set(false);
    }

    /// Durations of every sleep started, in order (retry backoff assertions).
    pub fn sleeps(&self) -> Vec<u64> {
        self.sleeps.borrow().clone()
    }

    pub fn traces(&self) -> Vec<String> {
        self.traces.borrow().clone()
    }
}

impl fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestEnv")
            .field("now_ms", &self.clock.now_ms())
            .field("aborted", &self.aborted.get())
            .finish_non_exhaustive()
    }
}

impl Env for TestEnv {
    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn random(&self) -> f64 {
        self.rng.borrow_mut().next_f64()
    }

    /// Yields once, then moves the clock to at least `start + ms` (concurrent sleepers overlap rather than add up).
    /// `Aborted` if the abort flag is set before or while sleeping.
    async fn sleep(&self, ms: u64) -> StoreResult<()> {
        if self.aborted.get() {
            return Err(StoreError::Aborted);
        }
        self.sleeps.borrow_mut().push(ms);
        let wake_at = self.clock.now_ms() + ms as i64;
        yield_now().await;
        if self.aborted.get() {
            return Err(StoreError::Aborted);
        }
        if self.clock.now_ms() < wake_at {
            self.clock.set(wake_at);
        }
        Ok(())
    }

    fn is_aborted(&self) -> bool {
        self.aborted.get()
    }

    fn trace(&self, line: &str) {
        self.traces.borrow_mut().push(line.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{block_on, Scenario, Sim};

    fn found_token<B>(fetched: Fetched<B>) -> VersionToken {
        match fetched {
            Fetched::Found { token, .. } => token,
            Fetched::NotModified => panic!("expected a body, got NotModified"),
        }
    }

    fn transient() -> StoreError {
        StoreError::Transient { status: Some(503), message: "slow down".to_string() }
    }

    #[test]
    fn s3_identical_bytes_give_identical_tokens() {
        let store = MemoryStore::new(TokenStyle::S3);
        let first = block_on(store.put_bytes("a", b"same".to_vec(), &Precondition::None)).unwrap();
        let second = block_on(store.put_bytes("a", b"same".to_vec(), &Precondition::None)).unwrap();
        let other_key = block_on(store.put_bytes("b", b"same".to_vec(), &Precondition::None)).unwrap();
        let changed = block_on(store.put_bytes("a", b"different".to_vec(), &Precondition::None)).unwrap();

        assert_eq!(first, second);
        assert_eq!(first, other_key);
        assert_ne!(first, changed);
        assert_eq!(first.as_str().len(), 32);
        assert!(first.is_fingerprint());
    }

    #[test]
    fn gcs_every_write_gets_a_new_generation() {
        let store = MemoryStore::new(TokenStyle::Gcs);
        let first = block_on(store.put_bytes("a", b"same".to_vec(), &Precondition::None)).unwrap();
        let second = block_on(store.put_bytes("a", b"same".to_vec(), &Precondition::None)).unwrap();

        assert_eq!(first.as_str(), FIRST_GCS_GENERATION.to_string());
        assert_eq!(second.as_str(), (FIRST_GCS_GENERATION + 1).to_string());
        assert_eq!(store.token("a"), Some(second));
    }

    #[test]
    fn if_absent_fails_on_an_existing_key_and_keeps_it() {
        for style in [TokenStyle::S3, TokenStyle::Gcs] {
            let store = MemoryStore::new(style);
            let original = store.put_raw("lock", "holder A");

            let result = block_on(store.put_bytes("lock", b"holder B".to_vec(), &Precondition::IfAbsent));

            assert_eq!(result, Err(StoreError::PreconditionFailed { key: "lock".into() }));
            assert_eq!(store.object("lock"), Some((b"holder A".to_vec(), original)));
            assert!(block_on(store.put_bytes("new", b"x".to_vec(), &Precondition::IfAbsent)).is_ok());
        }
    }

    #[test]
    fn if_match_with_a_stale_token_fails() {
        for style in [TokenStyle::S3, TokenStyle::Gcs] {
            let store = MemoryStore::new(style);
            let stale = store.put_raw("index", "v0");
            let current = store.put_raw("index", "v1");

            let result = block_on(store.put_bytes("index", b"v2".to_vec(), &Precondition::IfMatch(stale)));
            assert_eq!(result, Err(StoreError::PreconditionFailed { key: "index".into() }));
            assert_eq!(store.object("index").unwrap().0, b"v1");

            let written = block_on(store.put_bytes("index", b"v2".to_vec(), &Precondition::IfMatch(current)));
            assert_eq!(store.token("index"), Some(written.unwrap()));
        }
    }

    #[test]
    fn if_match_on_a_missing_key_fails_as_each_store_does() {
        let token = VersionToken::new("whatever");
        let s3 = MemoryStore::new(TokenStyle::S3);
        let gcs = MemoryStore::new(TokenStyle::Gcs);

        let s3_result = block_on(s3.put_bytes("index", b"x".to_vec(), &Precondition::IfMatch(token.clone())));
        let gcs_result = block_on(gcs.put_bytes("index", b"x".to_vec(), &Precondition::IfMatch(token)));

        assert_eq!(s3_result, Err(StoreError::NotFound { key: "index".into() }));
        assert_eq!(gcs_result, Err(StoreError::PreconditionFailed { key: "index".into() }));
        assert!(s3.snapshot().is_empty() && gcs.snapshot().is_empty());
    }

    #[test]
    fn get_with_the_current_token_is_not_modified() {
        let store = MemoryStore::new(TokenStyle::Gcs);
        let old = store.put_raw("index", "v0");
        let current = store.put_raw("index", "v1");

        let unchanged = block_on(store.get_bytes("index", Some(&current))).unwrap();
        let changed = block_on(store.get_bytes("index", Some(&old))).unwrap();
        let body_unchanged = block_on(store.get("index", Some(&current))).unwrap();

        assert!(matches!(unchanged, Fetched::NotModified));
        assert!(matches!(body_unchanged, Fetched::NotModified));
        match changed {
            Fetched::Found { body, token, size } => {
                assert_eq!((body, token, size), (b"v1".to_vec(), current, 2));
            }
            Fetched::NotModified => panic!("the token changed"),
        }
    }

    #[test]
    fn missing_keys_are_not_found() {
        let store = MemoryStore::new(TokenStyle::S3);
        let missing = Err(StoreError::NotFound { key: "nope".into() });
        assert_eq!(block_on(store.get_bytes("nope", None)).map(found_token), missing);
        assert_eq!(block_on(store.get("nope", None)).map(found_token), missing);
        assert_eq!(block_on(store.head("nope")).map(|meta| meta.token), missing);
        assert_eq!(block_on(store.delete("nope", None)), Err(StoreError::NotFound { key: "nope".into() }));
    }

    #[test]
    fn conditional_delete_checks_the_token() {
        let store = MemoryStore::new(TokenStyle::S3);
        let stale = store.put_raw("lock", "A");
        let current = store.put_raw("lock", "B");

        assert_eq!(
            block_on(store.delete("lock", Some(&stale))),
            Err(StoreError::PreconditionFailed { key: "lock".into() })
        );
        assert!(store.object("lock").is_some());
        assert_eq!(block_on(store.delete("lock", Some(&current))), Ok(()));
        assert!(store.object("lock").is_none());
    }

    #[test]
    fn head_reports_token_and_size() {
        let store = MemoryStore::new(TokenStyle::S3);
        let token = store.put_raw("data/a.json", "12345");
        assert_eq!(block_on(store.head("data/a.json")), Ok(ObjectMeta { token, size: 5 }));
    }

    #[test]
    fn list_pages_through_2500_keys_in_lexical_order() {
        let store = MemoryStore::new(TokenStyle::S3);
        for i in 0..2500 {
            store.put_raw(&format!("data/{i:05}"), "x");
        }
        store.put_raw("datb", "outside the prefix");
        store.put_raw("a-before", "outside the prefix");

        let mut pages = Vec::new();
        let mut keys = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = block_on(store.list("data/", next.as_deref())).unwrap();
            pages.push(page.objects.len());
            keys.extend(page.objects.into_iter().map(|object| object.key));
            match page.next_page {
                Some(token) => next = Some(token),
                None => break,
            }
        }

        assert_eq!(pages, vec![1000, 1000, 500]);
        let expected: Vec<String> = (0..2500).map(|i| format!("data/{i:05}")).collect();
        assert_eq!(keys, expected);
        assert_eq!(store.requests().list, 3);
    }

    #[test]
    fn list_page_size_is_configurable_and_a_bad_page_token_is_rejected() {
        let store = MemoryStore::new(TokenStyle::Gcs);
        store.set_page_size(2);
        for key in ["a", "b", "c"] {
            store.put_raw(key, key);
        }
        let first = block_on(store.list("", None)).unwrap();
        assert_eq!(first.objects.len(), 2);
        let second = block_on(store.list("", first.next_page.as_deref())).unwrap();
        assert_eq!(second.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["c"]);
        assert_eq!(second.next_page, None);
        assert!(matches!(block_on(store.list("", Some("garbage"))), Err(StoreError::Http { status: 400, .. })));
    }

    #[test]
    fn request_counts_are_per_client_and_resettable() {
        let store = MemoryStore::new(TokenStyle::S3);
        let other = store.client();
        store.put_raw("k", "v");

        block_on(store.get_bytes("k", None)).unwrap();
        block_on(store.head("k")).unwrap();
        block_on(other.get("k", None)).unwrap();

        assert_eq!(store.requests(), RequestCounts { get_bytes: 1, head: 1, ..RequestCounts::default() });
        assert_eq!(other.requests(), RequestCounts { get: 1, ..RequestCounts::default() });
        assert_eq!(store.clone().requests().total(), 2, "clones share counters");
        store.reset_requests();
        assert_eq!(store.requests().total(), 0);
    }

    #[test]
    fn put_raw_with_token_arranges_a_multipart_etag() {
        let store = MemoryStore::new(TokenStyle::S3);
        store.put_raw_with_token("index", "{}", VersionToken::from_etag("\"abc-3\""));
        let token = found_token(block_on(store.get_bytes("index", None)).unwrap());
        assert!(!token.is_fingerprint());
        assert!(store.remove_raw("index"));
        assert!(!store.remove_raw("index"));
    }

    #[test]
    fn fail_nth_fires_on_exactly_the_nth_call() {
        let store = MemoryStore::new(TokenStyle::S3);
        block_on(store.put_bytes("before", b"x".to_vec(), &Precondition::None)).unwrap();
        store.faults().fail_nth(Kind::PutBytes, 2, transient());

        let results: Vec<_> =
            (0..4).map(|i| block_on(store.put_bytes(&format!("k{i}"), b"x".to_vec(), &Precondition::None))).collect();

        assert!(results[0].is_ok());
        assert_eq!(results[1], Err(transient()));
        assert!(results[2].is_ok() && results[3].is_ok());
        assert!(store.object("k1").is_none(), "a failure before the effect writes nothing");
        assert_eq!(store.faults().calls(Kind::PutBytes), 5);
    }

    #[test]
    fn fail_after_effect_writes_but_reports_the_error() {
        let store = MemoryStore::new(TokenStyle::Gcs);
        let token = store.put_raw("index", "v0");
        store.faults().fail_nth_after_effect(Kind::PutBytes, 1, transient());

        let lost = block_on(store.put_bytes("index", b"v1".to_vec(), &Precondition::IfMatch(token.clone())));
        let retry = block_on(store.put_bytes("index", b"v1".to_vec(), &Precondition::IfMatch(token)));

        assert_eq!(lost, Err(transient()));
        assert_eq!(store.object("index").unwrap().0, b"v1");
        assert_eq!(retry, Err(StoreError::PreconditionFailed { key: "index".into() }));
    }

    #[test]
    fn fail_matching_hits_only_matching_keys_until_removed() {
        let store = MemoryStore::new(TokenStyle::S3);
        store.put_raw("data/a", "a");
        store.put_raw("index", "i");
        let denied = StoreError::Auth { status: Some(403), message: "denied".into() };
        let rule = store.faults().fail_matching(Kind::Get, |key| key.starts_with("data/"), denied.clone());

        assert_eq!(block_on(store.get("data/a", None)).map(found_token), Err(denied));
        assert!(block_on(store.get("index", None)).is_ok());
        assert!(block_on(store.get_bytes("data/a", None)).is_ok(), "other kinds are untouched");
        store.faults().remove(rule);
        assert!(block_on(store.get("data/a", None)).is_ok());
    }

    #[test]
    fn fail_randomly_is_reproducible_for_a_seed() {
        let outcomes = |seed| {
            let store = MemoryStore::new(TokenStyle::S3);
            store.put_raw("k", "v");
            store.faults().fail_randomly(Kind::Head, 0.3, seed, transient());
            (0..200).map(|_| block_on(store.head("k")).is_ok()).collect::<Vec<_>>()
        };
        let first = outcomes(5);
        assert_eq!(first, outcomes(5));
        let failures = first.iter().filter(|ok| !**ok).count();
        assert!((30..90).contains(&failures), "about 30% of 200 fail, got {failures}");
    }

    #[test]
    fn shared_faults_count_store_and_cache_calls_separately_by_kind() {
        let faults = Faults::new();
        let store = MemoryStore::new(TokenStyle::S3).with_faults(faults.clone());
        let cache = MemoryCache::new().with_faults(faults.clone());
        faults.fail_nth(Kind::Walk, 1, StoreError::Io { message: "EACCES".into() });

        assert!(block_on(cache.walk()).is_err());
        assert!(block_on(cache.walk()).is_ok());
        assert!(block_on(store.head("x")).is_err());
        assert_eq!((faults.calls(Kind::Walk), faults.calls(Kind::Head)), (2, 1));
        assert_eq!(cache.calls().walk, 2);
    }

    #[test]
    fn on_call_hook_runs_just_before_the_call_acts() {
        let store = MemoryStore::new(TokenStyle::Gcs);
        let first = store.put_raw("index", "v0");
        let writer = store.client();
        store.faults().on_call(
            Kind::Head,
            |key| key == "index",
            move |_| {
                writer.put_raw("index", "v1 from another machine");
            },
        );

        let meta = block_on(store.head("index")).unwrap();

        assert_ne!(meta.token, first);
        assert_eq!(Some(meta.token), store.token("index"));
    }

    #[test]
    fn a_paused_call_waits_for_its_gate_under_the_scheduler() {
        let mut sim = Sim::new(|| {
            let store = MemoryStore::new(TokenStyle::S3);
            store.put_raw("index", "v0");
            let gate = store.faults().pause_matching(Kind::GetBytes, |key| key == "index");
            let (reader, writer) = (store.clone(), store.client());
            let log: Rc<RefCell<Vec<String>>> = Rc::default();
            let (reader_log, writer_log) = (log.clone(), log.clone());
            let writer_gate = gate.clone();
            Scenario::new(log)
                .actor("reader", async move {
                    let fetched = reader.get_bytes("index", None).await.unwrap();
                    let Fetched::Found { body, .. } = fetched else { panic!("not modified?") };
                    reader_log.borrow_mut().push(format!("read {}", String::from_utf8(body).unwrap()));
                })
                .actor("writer", async move {
                    writer_gate.reached().await;
                    writer.put_bytes("index", b"v1".to_vec(), &Precondition::None).await.unwrap();
                    writer_log.borrow_mut().push("wrote v1".to_string());
                    writer_gate.open();
                })
        });

        let exploration = sim.explore_exhaustive(1000);
        exploration.assert_clean();
        assert!(exploration.complete);
        for seed in 0..20 {
            let run = sim.run(&crate::sim::Chooser::Random(seed));
            assert_eq!(*run.world.borrow(), ["wrote v1", "read v1"]);
        }
    }

    #[test]
    #[should_panic(expected = "nothing can wake it")]
    fn a_call_paused_forever_is_reported_by_block_on() {
        let store = MemoryStore::new(TokenStyle::S3);
        let _gate = store.faults().pause_nth(Kind::Head, 1);
        let _ = block_on(store.head("x"));
    }

    fn expected(bytes: &[u8]) -> Expected {
        Expected { size: bytes.len() as u64, sha256: Some(sha256(bytes)) }
    }

    #[test]
    fn download_with_the_wrong_size_leaves_the_old_file_intact() {
        let cache = MemoryCache::new();
        cache.write_file("data/a.json", "old");
        let before = cache.file_stat("data/a.json");

        let result =
            block_on(cache.download("data/a.json", Rc::new(b"truncat".to_vec()), Expected { size: 9, sha256: None }));

        match result {
            Err(StoreError::Io { message }) => assert!(message.contains("data/a.json"), "{message}"),
            other => panic!("expected an Io error, got {other:?}"),
        }
        assert_eq!(cache.file("data/a.json").unwrap(), b"old");
        assert_eq!(cache.file_stat("data/a.json"), before);
    }

    #[test]
    fn download_with_the_wrong_hash_is_rejected() {
        let cache = MemoryCache::new();
        let wrong = Expected { size: 3, sha256: Some(sha256(b"xyz")) };
        assert!(matches!(block_on(cache.download("a", Rc::new(b"abc".to_vec()), wrong)), Err(StoreError::Io { .. })));
        assert!(cache.file("a").is_none());
    }

    #[test]
    fn download_replaces_the_file_with_a_fresh_mtime() {
        let cache = MemoryCache::new();
        cache.write_file("a", "old");
        let old = cache.file_stat("a").unwrap();

        let done = block_on(cache.download("a", Rc::new(b"new!".to_vec()), expected(b"new!"))).unwrap();

        assert_eq!(cache.file("a").unwrap(), b"new!");
        assert_eq!(done.stat, FileStat { size: 4, mtime_ms: old.mtime_ms + 1 });
        assert_eq!(done.sha256, sha256(b"new!"));
        assert_eq!(block_on(cache.hash("a")).unwrap(), Some(done));
    }

    #[test]
    fn walk_lists_every_file_sorted_with_symlinks_and_vanished_files() {
        let cache = MemoryCache::new();
        cache.write_file("data/b", "b");
        cache.write_file("data/a", "a");
        cache.write_file("data/gone", "g");
        cache.add_symlink("data/link");
        block_on(cache.write_internal(".datastore-index.json", b"{}".to_vec())).unwrap();
        cache.vanish_on_next_walk("data/gone");

        let items = block_on(cache.walk()).unwrap();

        let stat_of = |rel: &str| cache.file_stat(rel).unwrap();
        assert_eq!(
            items,
            vec![
                WalkItem::File { rel: ".datastore-index.json".into(), stat: stat_of(".datastore-index.json") },
                WalkItem::File { rel: "data/a".into(), stat: stat_of("data/a") },
                WalkItem::File { rel: "data/b".into(), stat: stat_of("data/b") },
                WalkItem::Vanished { rel: "data/gone".into() },
                WalkItem::Symlink { rel: "data/link".into() },
            ]
        );
        assert!(cache.file("data/gone").is_none());
        let again = block_on(cache.walk()).unwrap();
        assert_eq!(again.len(), 4, "the vanished file stays gone and is no longer listed");
    }

    #[test]
    fn symlinks_are_never_read_through() {
        let cache = MemoryCache::new();
        cache.add_symlink("data/link");
        assert!(matches!(block_on(cache.prepare_upload("data/link")), Err(StoreError::Io { .. })));
        assert!(matches!(block_on(cache.stat("data/link")), Err(StoreError::Io { .. })));
        assert!(matches!(block_on(cache.hash("data/link")), Err(StoreError::Io { .. })));
    }

    #[test]
    fn prepare_upload_returns_stat_and_hash_or_none_when_missing() {
        let cache = MemoryCache::new();
        cache.write_file("data/a", "hello");

        let prepared = block_on(cache.prepare_upload("data/a")).unwrap().unwrap();

        assert_eq!(*prepared.body, b"hello");
        assert_eq!(prepared.stat, cache.file_stat("data/a").unwrap());
        assert_eq!(prepared.sha256, sha256(b"hello"));
        assert!(block_on(cache.prepare_upload("data/missing")).unwrap().is_none());
        assert_eq!(block_on(cache.stat("data/missing")), Ok(None));
    }

    #[test]
    fn internal_files_round_trip_and_writes_get_distinct_mtimes() {
        let cache = MemoryCache::new();
        assert_eq!(block_on(cache.read_internal(".datastore-sync-state.json")), Ok(None));
        block_on(cache.write_internal(".datastore-sync-state.json", b"{\"version\":1}".to_vec())).unwrap();
        cache.write_file("data/a", "a");

        assert_eq!(block_on(cache.read_internal(".datastore-sync-state.json")), Ok(Some(b"{\"version\":1}".to_vec())));
        let state = cache.file_stat(".datastore-sync-state.json").unwrap();
        assert_ne!(state.mtime_ms, cache.file_stat("data/a").unwrap().mtime_ms);
        assert_eq!(cache.files().len(), 2);
    }

    #[test]
    fn a_store_body_downloads_into_the_cache_and_uploads_back() {
        let store = MemoryStore::new(TokenStyle::S3);
        let cache = MemoryCache::new();
        store.put_raw("data/a", "payload");

        let Fetched::Found { body, size, .. } = block_on(store.get("data/a", None)).unwrap() else { unreachable!() };
        block_on(cache.download("data/a", body, Expected { size, sha256: None })).unwrap();
        let prepared = block_on(cache.prepare_upload("data/a")).unwrap().unwrap();
        let token = block_on(store.put("data/b", prepared.body, &Precondition::IfAbsent)).unwrap();

        assert_eq!(store.object("data/b"), Some((b"payload".to_vec(), token)));
    }

    #[test]
    fn env_sleep_advances_virtual_time_and_wakes_on_abort() {
        let env = TestEnv::new(7);
        let start = env.now_ms();

        block_on(env.sleep(500)).unwrap();
        assert_eq!(env.now_ms(), start + 500);
        env.advance(25);
        assert_eq!(env.now_ms(), start + 525);

        env.abort();
        assert!(env.is_aborted());
        assert_eq!(block_on(env.sleep(1500)), Err(StoreError::Aborted));
        assert_eq!(env.sleeps(), vec![500]);
        env.trace("pull: index 3 ms");
        assert_eq!(env.traces(), vec!["pull: index 3 ms".to_string()]);
    }

    #[test]
    fn env_abort_during_a_sleep_is_reported_when_it_wakes() {
        let env = TestEnv::new(1);
        let sleeper = env.clone();
        let mut sim = Sim::new(move || {
            let (sleeper, aborter) = (sleeper.clone(), sleeper.clone());
            sleeper.reset_abort();
            let outcome: Rc<RefCell<Option<StoreResult<()>>>> = Rc::default();
            let slot = outcome.clone();
            Scenario::new(outcome)
                .actor("sleeper", async move { *slot.borrow_mut() = Some(sleeper.sleep(1000).await) })
                .actor("aborter", async move { aborter.abort() })
        });
        // sleeper starts the sleep (step 1), the aborter aborts (step 2), the sleeper wakes (step 3).
        let run = sim.run(&crate::sim::Chooser::Replay("0 1 0".parse().unwrap()));
        assert_eq!(*run.world.borrow(), Some(Err(StoreError::Aborted)));
    }

    #[test]
    fn env_random_is_seeded_and_in_range() {
        let a: Vec<f64> = (0..100).map(|_| TestEnv::new(42).random()).collect();
        let env = TestEnv::new(42);
        let b: Vec<f64> = (0..100).map(|_| env.random()).collect();
        assert!(a.iter().all(|&x| x == a[0]), "a fresh env with the same seed starts the same");
        assert_eq!(b[0], a[0]);
        assert!(b.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(b.windows(2).any(|w| w[0] != w[1]));
    }
}
