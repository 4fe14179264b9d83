//! Fault injection for the in-memory store and cache: failures on the n-th call, by key or at random, hooks, and
//! pause gates; and the scheduling point every call passes first.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::store::{StoreError, StoreResult};
use crate::testing::sim::{yield_now, SplitMix64};

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
    WalkUnder,
    Remove,
    ListInternal,
    RemoveInternal,
    CreateDir,
    StatMany,
}

const KIND_COUNT: usize = 20;

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
    pub(super) async fn arrive(&self, kind: Kind, key: &str) -> StoreResult<Option<StoreError>> {
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
pub(super) fn settle<T>(result: StoreResult<T>, fail_after: Option<StoreError>) -> StoreResult<T> {
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
/// runnable; under [`block_on`](crate::testing::sim::block_on) a call held forever is reported as a deadlock.
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
