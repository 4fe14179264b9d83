//! A deterministic, single-threaded scheduler for exploring interleavings (stateless model checking).
//!
//! A scenario is a world (shared in-memory store, caches, engines, all `Rc` handles) plus a list of actors: async
//! blocks that call engine operations. Every store and cache call first awaits [`yield_now`], so an actor runs, when
//! polled once, up to its next call and stops there. One poll of one actor is a *step*; the sequence of actor indices
//! stepped is the run's [`Schedule`], and replaying it reproduces the run exactly (same world, same choices).
//!
//! [`Sim`] runs a scenario under a [`Chooser`] (seeded random, or replay), enumerates every schedule depth-first by
//! re-running the scenario from scratch with a forced prefix ([`Sim::explore_exhaustive`]), checks caller invariants
//! after every step and at quiescence, and shrinks a violating schedule to a short one that still violates.
//!
//! ```
//! use marsh::testing::memory::{MemoryStore, TokenStyle};
//! use marsh::testing::sim::{Scenario, Sim};
//! use marsh::store::{ObjectStore, Precondition};
//!
//! let mut sim = Sim::new(|| {
//!     let bucket = MemoryStore::new(TokenStyle::Gcs);
//!     let (a, b) = (bucket.client(), bucket.client());
//!     Scenario::new(bucket)
//!         .actor("A", async move { let _ = a.put_bytes("lock", b"A", &Precondition::IfAbsent).await; })
//!         .actor("B", async move { let _ = b.put_bytes("lock", b"B", &Precondition::IfAbsent).await; })
//! })
//! .check_each_step(|bucket| if bucket.keys().len() <= 1 { Ok(()) } else { Err("two locks".into()) })
//! .check_at_end(|bucket| bucket.object("lock").map(|_| ()).ok_or_else(|| "no lock holder".to_string()));
//!
//! let random = sim.explore_random(0..1000);
//! let exhaustive = sim.explore_exhaustive(10_000);
//! println!("{random}\n{exhaustive}"); // "schedules explored: 1000, violations: 0" …
//! random.assert_clean();
//! assert!(exhaustive.complete && exhaustive.violations == 0);
//! if let Some(failure) = random.failures.first() {
//!     println!("{}", sim.shrink(&failure.schedule).unwrap()); // a minimal violating schedule, e.g. "0*2 1"
//! }
//! ```
//!
//! Only actor-to-actor interleaving is explored. Concurrency *inside* one actor (e.g. a `join_all` of transfers) is
//! polled in a fixed order within that actor's step.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::task::{Context, Poll, Wake, Waker};

/// Steps allowed per run before the run is reported as a livelock.
pub const DEFAULT_MAX_STEPS: usize = 100_000;
/// Replays allowed while shrinking one violating schedule.
pub const DEFAULT_SHRINK_BUDGET: usize = 5_000;
/// Failures kept (with their schedules) by an exploration; the count of violations is always complete.
const KEPT_FAILURES: usize = 10;

// ---------------------------------------------------------------------------------------------------------------------
// Yield points and a minimal executor

/// A yield point: `Pending` once (waking itself at once, so the actor stays runnable), then `Ready`.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

#[must_use = "a yield point does nothing unless awaited"]
#[derive(Debug)]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            Poll::Ready(())
        } else {
            self.yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Set when a waker fires; the scheduler runs only actors whose flag is set (a closed gate leaves it clear).
struct WakeFlag(AtomicBool);

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn flag_and_waker() -> (Arc<WakeFlag>, Waker) {
    let flag = Arc::new(WakeFlag(AtomicBool::new(true)));
    let waker = Waker::from(flag.clone());
    (flag, waker)
}

/// Run one future to completion on this thread (unit tests, and end-of-run checks that call the engine).
///
/// Panics if the future is pending with nothing left to wake it (e.g. a store call paused at a closed gate), since on a
/// single thread it could never finish.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let (flag, waker) = flag_and_waker();
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        flag.0.store(false, Ordering::Relaxed);
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        assert!(
            flag.0.load(Ordering::Relaxed),
            "block_on: the future is blocked and nothing can wake it (a call paused at a closed gate?)"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Panics inside actors become violations, without flooding stderr while thousands of schedules run

thread_local! {
    static CAPTURE_PANICS: Cell<bool> = const { Cell::new(false) };
    static CAPTURED_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that, on a thread currently polling actors, records the panic message
/// instead of printing it; every other thread keeps the previous hook's behaviour.
fn install_panic_capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURE_PANICS.with(Cell::get) {
                CAPTURED_PANIC.with(|slot| *slot.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------------------------------------------------
// Actors and the scheduler

type ActorFuture = Pin<Box<dyn Future<Output = Result<(), String>>>>;

/// A named task of a scenario. Its `Err` (from [`Actor::fallible`]) or a panic is a violation.
pub struct Actor {
    name: String,
    future: ActorFuture,
}

impl Actor {
    pub fn new(name: impl Into<String>, future: impl Future<Output = ()> + 'static) -> Self {
        Actor::fallible(name, async move {
            future.await;
            Ok(())
        })
    }

    /// An actor whose `Err(message)` stops the run as a violation (e.g. "push failed: …" where failure is a bug).
    pub fn fallible(name: impl Into<String>, future: impl Future<Output = Result<(), String>> + 'static) -> Self {
        Actor { name: name.into(), future: Box::pin(future) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Actor").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A set of actor indices (at most 64 actors per scenario).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct ActorSet(u64);

impl ActorSet {
    pub fn contains(self, actor: usize) -> bool {
        actor < 64 && self.0 & (1 << actor) != 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn lowest(self) -> Option<usize> {
        (!self.is_empty()).then(|| self.0.trailing_zeros() as usize)
    }

    /// The `n`-th member in ascending order.
    pub fn nth(self, n: usize) -> Option<usize> {
        self.iter().nth(n)
    }

    /// The smallest member greater than `actor`.
    pub fn next_after(self, actor: usize) -> Option<usize> {
        let above = if actor >= 63 { 0 } else { self.0 & (u64::MAX << (actor + 1)) };
        ActorSet(above).lowest()
    }

    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..64).filter(move |&i| self.contains(i))
    }

    fn insert(&mut self, actor: usize) {
        self.0 |= 1 << actor;
    }
}

impl fmt::Debug for ActorSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// What one step did to the stepped actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    /// Stopped at a yield point; runnable again.
    Yielded,
    /// Pending with nothing waking it yet (a closed gate); runnable again once woken.
    Blocked,
    Finished,
    /// Returned `Err` or panicked: the message says which actor and why.
    Failed(String),
}

struct Slot {
    name: String,
    future: Option<ActorFuture>,
    woken: Arc<WakeFlag>,
    waker: Waker,
}

/// Polls actors one step at a time in an order chosen by the caller. Low-level: [`Sim`] drives it.
pub struct Scheduler {
    slots: Vec<Slot>,
}

impl Scheduler {
    pub fn new(actors: Vec<Actor>) -> Self {
        assert!(actors.len() <= 64, "a scenario holds at most 64 actors, got {}", actors.len());
        install_panic_capture();
        let slots = actors
            .into_iter()
            .map(|actor| {
                let (woken, waker) = flag_and_waker();
                Slot { name: actor.name, future: Some(actor.future), woken, waker }
            })
            .collect();
        Scheduler { slots }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn name(&self, actor: usize) -> &str {
        &self.slots[actor].name
    }

    pub fn names(&self) -> Vec<String> {
        self.slots.iter().map(|slot| slot.name.clone()).collect()
    }

    /// Unfinished actors that may be stepped now.
    pub fn runnable(&self) -> ActorSet {
        let mut set = ActorSet::default();
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.future.is_some() && slot.woken.0.load(Ordering::Relaxed) {
                set.insert(i);
            }
        }
        set
    }

    pub fn unfinished(&self) -> ActorSet {
        let mut set = ActorSet::default();
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.future.is_some() {
                set.insert(i);
            }
        }
        set
    }

    pub fn is_finished(&self) -> bool {
        self.slots.iter().all(|slot| slot.future.is_none())
    }

    /// Poll `actor` once: it runs until its next yield point (or finishes). Panics if it is not runnable.
    pub fn step(&mut self, actor: usize) -> StepResult {
        let slot = &mut self.slots[actor];
        let future = match slot.future.as_mut() {
            Some(future) if slot.woken.0.load(Ordering::Relaxed) => future,
            _ => panic!("actor {actor} ({}) is not runnable", slot.name),
        };
        slot.woken.0.store(false, Ordering::Relaxed);
        let mut cx = Context::from_waker(&slot.waker);
        CAPTURE_PANICS.with(|capture| capture.set(true));
        let polled = panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
        CAPTURE_PANICS.with(|capture| capture.set(false));
        match polled {
            Ok(Poll::Pending) if slot.woken.0.load(Ordering::Relaxed) => StepResult::Yielded,
            Ok(Poll::Pending) => StepResult::Blocked,
            Ok(Poll::Ready(Ok(()))) => {
                slot.future = None;
                StepResult::Finished
            }
            Ok(Poll::Ready(Err(message))) => {
                slot.future = None;
                StepResult::Failed(format!("actor '{}' failed: {message}", slot.name))
            }
            Err(payload) => {
                slot.future = None;
                let captured = CAPTURED_PANIC.with(|captured| captured.borrow_mut().take());
                let message = captured.unwrap_or_else(|| panic_payload_text(payload.as_ref()));
                StepResult::Failed(format!("actor '{}' {message}", slot.name))
            }
        }
    }
}

fn panic_payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        format!("panicked: {text}")
    } else if let Some(text) = payload.downcast_ref::<String>() {
        format!("panicked: {text}")
    } else {
        "panicked".to_string()
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Schedules and choosers

/// The actor indices stepped by a run, in order. `Display` prints `0 0 1 0`; `{:#}` prints the run-length form
/// `0*2 1 0`. Both forms parse back with `str::parse`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Schedule(pub Vec<usize>);

impl Schedule {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Run-length form, e.g. `0*3 1 0*2`: each group is one uninterrupted stretch of an actor.
    pub fn compact(&self) -> String {
        self.runs().map(|(actor, n)| run_text(&actor.to_string(), n)).collect::<Vec<_>>().join(" ")
    }

    /// Run-length form with actor names, e.g. `push-A*3 pull-B push-A*2`.
    pub fn describe(&self, names: &[String]) -> String {
        self.runs()
            .map(|(actor, n)| run_text(names.get(actor).map_or("?", String::as_str), n))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Number of switches from one actor to another.
    pub fn context_switches(&self) -> usize {
        self.0.windows(2).filter(|pair| pair[0] != pair[1]).count()
    }

    fn runs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut rest = self.0.as_slice();
        std::iter::from_fn(move || {
            let (&actor, _) = rest.split_first()?;
            let n = rest.iter().take_while(|&&a| a == actor).count();
            rest = &rest[n..];
            Some((actor, n))
        })
    }
}

fn run_text(actor: &str, n: usize) -> String {
    if n == 1 {
        actor.to_string()
    } else {
        format!("{actor}*{n}")
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return f.write_str(&self.compact());
        }
        for (i, actor) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{actor}")?;
        }
        Ok(())
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut choices = Vec::new();
        for group in text.split_whitespace() {
            let (actor, count) = match group.split_once('*') {
                Some((actor, count)) => (actor, count.parse::<usize>().map_err(|e| format!("{group:?}: {e}"))?),
                None => (group, 1),
            };
            let actor = actor.parse::<usize>().map_err(|e| format!("{group:?}: {e}"))?;
            choices.extend(std::iter::repeat_n(actor, count));
        }
        Ok(Schedule(choices))
    }
}

impl From<Vec<usize>> for Schedule {
    fn from(choices: Vec<usize>) -> Self {
        Schedule(choices)
    }
}

/// splitmix64: tiny, fast, good enough for schedule choices and jitter; no external crate.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant for n ≤ 64.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Which actor runs at each step.
#[derive(Clone, Debug)]
pub enum Chooser {
    /// Uniformly among runnable actors, from a splitmix64 stream with this seed.
    Random(u64),
    /// Follow a schedule: entries naming an actor that cannot run at that point are skipped; once the list is used
    /// up, the last actor keeps running while it can, then the lowest-numbered runnable actor goes. Replaying a run's
    /// recorded schedule reproduces it exactly; a shortened list means "the same, with fewer preemptions", which is
    /// what shrinking needs.
    Replay(Schedule),
}

enum Picker<'a> {
    Random(SplitMix64),
    Replay {
        choices: &'a [usize],
        next: usize,
        honored: Vec<usize>,
    },
    /// Exhaustive search: the prefix must be followed exactly (anything else means the scenario is not
    /// deterministic), then the lowest runnable actor.
    Forced {
        prefix: &'a [usize],
    },
}

impl Picker<'_> {
    fn pick(&mut self, step: usize, runnable: ActorSet, previous: Option<usize>) -> Result<usize, String> {
        match self {
            Picker::Random(rng) => Ok(runnable.nth(rng.below(runnable.len())).expect("runnable is not empty")),
            Picker::Replay { choices, next, honored } => {
                while let Some(&actor) = choices.get(*next) {
                    *next += 1;
                    if runnable.contains(actor) {
                        honored.push(actor);
                        return Ok(actor);
                    }
                }
                Ok(previous.filter(|&p| runnable.contains(p)).or(runnable.lowest()).expect("runnable is not empty"))
            }
            Picker::Forced { prefix } => match prefix.get(step) {
                Some(&actor) if runnable.contains(actor) => Ok(actor),
                Some(&actor) => Err(format!(
                    "scenario is not deterministic: replaying step {step}, actor {actor} cannot run \
                     (runnable: {runnable:?}); the world must be rebuilt identically by every build() call"
                )),
                None => Ok(runnable.lowest().expect("runnable is not empty")),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Scenarios, runs and explorations

/// A freshly built world and the actors that act on it.
pub struct Scenario<W> {
    pub world: W,
    pub actors: Vec<Actor>,
}

impl<W> Scenario<W> {
    pub fn new(world: W) -> Self {
        Scenario { world, actors: Vec::new() }
    }

    pub fn actor(mut self, name: impl Into<String>, future: impl Future<Output = ()> + 'static) -> Self {
        self.actors.push(Actor::new(name, future));
        self
    }

    pub fn fallible_actor(
        mut self,
        name: impl Into<String>,
        future: impl Future<Output = Result<(), String>> + 'static,
    ) -> Self {
        self.actors.push(Actor::fallible(name, future));
        self
    }
}

/// Why a run stopped early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Steps taken when it was detected (the schedule's length).
    pub step: usize,
    pub message: String,
}

/// One run: the world as the actors left it, the schedule taken, and the violation if any.
pub struct Run<W> {
    pub world: W,
    pub actor_names: Vec<String>,
    pub schedule: Schedule,
    pub violation: Option<Violation>,
}

impl<W> Run<W> {
    pub fn is_violation(&self) -> bool {
        self.violation.is_some()
    }
}

impl<W> fmt::Debug for Run<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("actor_names", &self.actor_names)
            .field("schedule", &format_args!("{:#}", self.schedule))
            .field("violation", &self.violation)
            .finish_non_exhaustive()
    }
}

/// A violating run found by an exploration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The seed of a random run (`None` for exhaustive runs).
    pub seed: Option<u64>,
    pub schedule: Schedule,
    pub actor_names: Vec<String>,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "violation: {}", self.message)?;
        if let Some(seed) = self.seed {
            write!(f, "\n  seed: {seed}")?;
        }
        write!(
            f,
            "\n  schedule ({} steps, replay with Chooser::Replay(\"{:#}\".parse()?)): {}",
            self.schedule.len(),
            self.schedule,
            self.schedule.describe(&self.actor_names)
        )
    }
}

/// Result of many runs.
#[derive(Clone, Debug, Default)]
pub struct Exploration {
    pub schedules: usize,
    pub violations: usize,
    /// Exhaustive search only: every schedule was explored (the budget was not hit).
    pub complete: bool,
    /// The first few violating runs.
    pub failures: Vec<Failure>,
}

impl Exploration {
    pub fn summary(&self) -> String {
        let mut text = format!("schedules explored: {}, violations: {}", self.schedules, self.violations);
        if let Some(first) = self.failures.first() {
            text.push_str(&format!("\nfirst {first}"));
        }
        text
    }

    /// Panics with the summary and the first failing schedule if any run violated.
    pub fn assert_clean(&self) {
        assert_eq!(self.violations, 0, "{}", self.summary());
    }

    fn record<W>(&mut self, run: &Run<W>, seed: Option<u64>) {
        self.schedules += 1;
        if let Some(violation) = &run.violation {
            self.violations += 1;
            if self.failures.len() < KEPT_FAILURES {
                self.failures.push(Failure {
                    seed,
                    schedule: run.schedule.clone(),
                    actor_names: run.actor_names.clone(),
                    message: violation.message.clone(),
                });
            }
        }
    }
}

impl fmt::Display for Exploration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// A violating schedule made short.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shrunk {
    /// The shortest choice list found that still violates under [`Chooser::Replay`]; print it with `{:#}`.
    pub choices: Schedule,
    /// The full schedule that `choices` replays to (up to the violation).
    pub schedule: Schedule,
    pub actor_names: Vec<String>,
    pub message: String,
    /// Replays spent shrinking.
    pub replays: usize,
}

impl fmt::Display for Shrunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "minimal violating schedule: {}  ({})\n  violation: {}\n  full replay ({} steps): {}",
            if self.choices.is_empty() { "(none)".to_string() } else { self.choices.compact() },
            if self.choices.is_empty() {
                "the default order violates".to_string()
            } else {
                self.choices.describe(&self.actor_names)
            },
            self.message,
            self.schedule.len(),
            self.schedule.describe(&self.actor_names)
        )
    }
}

type Check<'a, W> = Box<dyn FnMut(&W) -> Result<(), String> + 'a>;

/// A scenario factory plus invariants; runs it under any chooser, explores, shrinks.
///
/// `build` must create a fresh, identical world every time (no shared state between runs, no wall clock, no
/// unseeded randomness): replay and exhaustive search depend on it.
pub struct Sim<'a, W> {
    build: Box<dyn FnMut() -> Scenario<W> + 'a>,
    step_check: Option<Check<'a, W>>,
    end_check: Option<Check<'a, W>>,
    max_steps: usize,
    shrink_budget: usize,
}

impl<'a, W> Sim<'a, W> {
    pub fn new(build: impl FnMut() -> Scenario<W> + 'a) -> Self {
        Sim {
            build: Box::new(build),
            step_check: None,
            end_check: None,
            max_steps: DEFAULT_MAX_STEPS,
            shrink_budget: DEFAULT_SHRINK_BUDGET,
        }
    }

    /// An invariant checked after every step; `Err` stops the run as a violation.
    pub fn check_each_step(mut self, check: impl FnMut(&W) -> Result<(), String> + 'a) -> Self {
        self.step_check = Some(Box::new(check));
        self
    }

    /// An invariant checked once every actor has finished (it may drive engines with [`block_on`]).
    pub fn check_at_end(mut self, check: impl FnMut(&W) -> Result<(), String> + 'a) -> Self {
        self.end_check = Some(Box::new(check));
        self
    }

    /// Steps per run before the run is a violation ("livelock"). Default [`DEFAULT_MAX_STEPS`].
    pub fn max_steps(mut self, max_steps: usize) -> Self {
        self.max_steps = max_steps;
        self
    }

    /// Replays allowed per [`Sim::shrink`]. Default [`DEFAULT_SHRINK_BUDGET`].
    pub fn shrink_budget(mut self, replays: usize) -> Self {
        self.shrink_budget = replays;
        self
    }

    /// Build a fresh world and run it to quiescence or the first violation.
    pub fn run(&mut self, chooser: &Chooser) -> Run<W> {
        match chooser {
            Chooser::Random(seed) => self.run_with(&mut Picker::Random(SplitMix64::new(*seed)), None),
            Chooser::Replay(schedule) => {
                let mut picker = Picker::Replay { choices: &schedule.0, next: 0, honored: Vec::new() };
                self.run_with(&mut picker, None)
            }
        }
    }

    /// One run per seed in `seeds`.
    pub fn explore_random(&mut self, seeds: Range<u64>) -> Exploration {
        let mut exploration = Exploration::default();
        for seed in seeds {
            let run = self.run(&Chooser::Random(seed));
            exploration.record(&run, Some(seed));
        }
        exploration
    }

    /// Every distinct schedule (at each step, every runnable actor), depth-first, each run rebuilt from scratch with
    /// a forced prefix; stops after `max_schedules` runs (`complete` tells whether the space was exhausted). A
    /// violating run ends its branch (its extensions all share the violating prefix).
    pub fn explore_exhaustive(&mut self, max_schedules: usize) -> Exploration {
        let mut exploration = Exploration::default();
        let mut prefix: Vec<usize> = Vec::new();
        let mut runnable_at: Vec<ActorSet> = Vec::new();
        while exploration.schedules < max_schedules {
            runnable_at.clear();
            let run = self.run_with(&mut Picker::Forced { prefix: &prefix }, Some(&mut runnable_at));
            exploration.record(&run, None);
            // Backtrack: the deepest step with an untried alternative (alternatives are tried in ascending order, and
            // the first run below any prefix takes the lowest runnable actor at every later step).
            let chosen = &run.schedule.0;
            let branch = (0..chosen.len().min(runnable_at.len()))
                .rev()
                .find_map(|i| runnable_at[i].next_after(chosen[i]).map(|next| (i, next)));
            match branch {
                Some((i, next)) => {
                    prefix.clear();
                    prefix.extend_from_slice(&chosen[..i]);
                    prefix.push(next);
                }
                None => {
                    exploration.complete = true;
                    break;
                }
            }
        }
        exploration
    }

    /// Shrink a violating schedule: delta debugging over the choice list (drop chunks, halving the chunk size),
    /// replaying each candidate with [`Chooser::Replay`] and keeping it when it still violates (any violation).
    /// Returns `None` if `schedule` does not violate.
    pub fn shrink(&mut self, schedule: &Schedule) -> Option<Shrunk> {
        let mut replays = 0;
        let mut best = self.replay_honored(&schedule.0, &mut replays)?;
        let mut granularity = 2usize;
        while !best.0.is_empty() && replays < self.shrink_budget {
            let len = best.0.len();
            let chunk = len.div_ceil(granularity.min(len));
            let mut reduced = false;
            // Later chunks first: trailing choices are the likeliest to be irrelevant.
            for start in (0..len).step_by(chunk).rev() {
                if replays >= self.shrink_budget {
                    break;
                }
                let candidate: Vec<usize> =
                    best.0[..start].iter().chain(&best.0[(start + chunk).min(len)..]).copied().collect();
                if let Some(shorter) = self.replay_honored(&candidate, &mut replays) {
                    best = shorter;
                    reduced = true;
                    break;
                }
            }
            if reduced {
                granularity = (granularity - 1).max(2);
            } else if chunk == 1 {
                break;
            } else {
                granularity = (granularity * 2).min(len);
            }
        }
        let (choices, run) = best;
        let violation = run.violation.expect("kept candidates violate");
        Some(Shrunk {
            choices: Schedule(choices),
            schedule: run.schedule,
            actor_names: run.actor_names,
            message: violation.message,
            replays,
        })
    }

    /// Replay `choices`; if the run violates, the choices actually used (skipped ones dropped) and the run.
    fn replay_honored(&mut self, choices: &[usize], replays: &mut usize) -> Option<(Vec<usize>, Run<W>)> {
        *replays += 1;
        let mut picker = Picker::Replay { choices, next: 0, honored: Vec::new() };
        let run = self.run_with(&mut picker, None);
        let Picker::Replay { honored, .. } = picker else { unreachable!() };
        run.violation.is_some().then_some((honored, run))
    }

    fn run_with(&mut self, picker: &mut Picker<'_>, mut runnable_log: Option<&mut Vec<ActorSet>>) -> Run<W> {
        let Scenario { world, actors } = (self.build)();
        let mut scheduler = Scheduler::new(actors);
        let mut schedule = Vec::new();
        let mut previous = None;
        let violation = loop {
            if schedule.len() >= self.max_steps {
                break Some(format!(
                    "step limit of {} reached with actors still running: {} (livelock, or raise max_steps)",
                    self.max_steps,
                    names_of(&scheduler, scheduler.unfinished())
                ));
            }
            let runnable = scheduler.runnable();
            if runnable.is_empty() {
                if scheduler.is_finished() {
                    break self.end_check.as_mut().and_then(|check| check(&world).err());
                }
                break Some(format!(
                    "deadlock: no actor can run; blocked: {}",
                    names_of(&scheduler, scheduler.unfinished())
                ));
            }
            let actor = match picker.pick(schedule.len(), runnable, previous) {
                Ok(actor) => actor,
                Err(message) => break Some(message),
            };
            if let Some(log) = runnable_log.as_deref_mut() {
                log.push(runnable);
            }
            schedule.push(actor);
            previous = Some(actor);
            if let StepResult::Failed(message) = scheduler.step(actor) {
                break Some(message);
            }
            if let Some(Err(message)) = self.step_check.as_mut().map(|check| check(&world)) {
                break Some(message);
            }
        };
        let steps = schedule.len();
        Run {
            world,
            actor_names: scheduler.names(),
            schedule: Schedule(schedule),
            violation: violation.map(|message| Violation { step: steps, message }),
        }
    }
}

fn names_of(scheduler: &Scheduler, set: ActorSet) -> String {
    set.iter().map(|i| scheduler.name(i)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Fetched, ObjectStore, Precondition};
    use crate::testing::memory::{MemoryStore, TokenStyle};
    use std::rc::Rc;

    type Log = Rc<RefCell<Vec<String>>>;

    /// `actors` actors, each logging then yielding `yields` times.
    fn yielding_scenario(actors: usize, yields: usize) -> Scenario<Log> {
        let log: Log = Rc::default();
        let mut scenario = Scenario::new(log.clone());
        for a in 0..actors {
            let log = log.clone();
            scenario = scenario.actor(format!("actor-{a}"), async move {
                for y in 0..yields {
                    log.borrow_mut().push(format!("{a}.{y}"));
                    yield_now().await;
                }
                log.borrow_mut().push(format!("{a}.done"));
            });
        }
        scenario
    }

    #[test]
    fn exhaustive_search_enumerates_every_interleaving_of_two_actors() {
        // Each actor needs 4 polls: three that stop at its 3 yields, one that completes it. A step chooses among
        // unfinished actors, so a schedule is any arrangement of 4 steps of actor 0 and 4 of actor 1: C(8,4) = 70.
        // (C(6,3) = 20 would count only the yields; the completing poll is a step of its own.)
        let mut sim = Sim::new(|| yielding_scenario(2, 3));
        let exploration = sim.explore_exhaustive(10_000);
        assert_eq!(exploration.schedules, 70);
        assert!(exploration.complete);
        exploration.assert_clean();
    }

    #[test]
    fn exhaustive_search_of_three_actors_is_a_multinomial() {
        // 3 actors × 2 polls each (one yield + completion): 6! / (2! 2! 2!) = 90 schedules, all distinct.
        let mut seen = std::collections::HashSet::new();
        let mut sim = Sim::new(|| yielding_scenario(3, 1)).check_at_end(|_| Ok(()));
        let exploration = sim.explore_exhaustive(10_000);
        assert_eq!(exploration.schedules, 90);
        for seed in 0..500 {
            seen.insert(sim.run(&Chooser::Random(seed)).schedule);
        }
        assert!(seen.len() <= 90);
    }

    #[test]
    fn exhaustive_search_stops_at_the_budget() {
        let mut sim = Sim::new(|| yielding_scenario(2, 3));
        let exploration = sim.explore_exhaustive(10);
        assert_eq!(exploration.schedules, 10);
        assert!(!exploration.complete);
    }

    #[test]
    fn replaying_a_schedule_reproduces_the_same_trace() {
        let mut sim = Sim::new(|| yielding_scenario(3, 4));
        for seed in 0..50 {
            let original = sim.run(&Chooser::Random(seed));
            let printed = format!("{:#}", original.schedule);
            let replayed = sim.run(&Chooser::Replay(printed.parse().unwrap()));
            assert_eq!(replayed.schedule, original.schedule);
            assert_eq!(*replayed.world.borrow(), *original.world.borrow());
        }
    }

    #[test]
    fn random_runs_with_the_same_seed_are_identical() {
        let mut sim = Sim::new(|| yielding_scenario(3, 4));
        let first = sim.run(&Chooser::Random(99));
        let second = sim.run(&Chooser::Random(99));
        assert_eq!(first.schedule, second.schedule);
        assert_eq!(*first.world.borrow(), *second.world.borrow());
        let schedules: std::collections::HashSet<_> = (0..20).map(|s| sim.run(&Chooser::Random(s)).schedule).collect();
        assert!(schedules.len() > 1, "different seeds explore different schedules");
    }

    #[test]
    fn schedules_print_and_parse_in_both_forms() {
        let schedule = Schedule(vec![0, 0, 1, 0, 1, 1]);
        assert_eq!(schedule.to_string(), "0 0 1 0 1 1");
        assert_eq!(format!("{schedule:#}"), "0*2 1 0 1*2");
        assert_eq!("0*2 1 0 1*2".parse::<Schedule>(), Ok(schedule.clone()));
        assert_eq!("0 0 1 0 1 1".parse::<Schedule>(), Ok(schedule.clone()));
        assert_eq!(schedule.context_switches(), 3);
        assert_eq!(schedule.describe(&["push".into(), "pull".into()]), "push*2 pull push pull*2");
        assert!("0 x".parse::<Schedule>().is_err());
    }

    #[test]
    fn replay_skips_choices_that_cannot_run_then_keeps_the_last_actor() {
        let mut sim = Sim::new(|| yielding_scenario(2, 2));
        // Actor 1 finishes after its 3rd step, so the trailing "1"s are skipped; then actor 0 continues.
        let run = sim.run(&Chooser::Replay("0 1*5".parse().unwrap()));
        assert_eq!(run.schedule, "0 1*3 0*2".parse().unwrap());
    }

    #[test]
    fn yield_now_and_block_on_work_outside_the_scheduler() {
        let value = block_on(async {
            yield_now().await;
            yield_now().await;
            7
        });
        assert_eq!(value, 7);
    }

    /// Two actors each read a counter and write it back incremented, without a precondition: a lost update.
    fn lost_update_scenario(conditional: bool) -> Scenario<MemoryStore> {
        let store = MemoryStore::new(TokenStyle::Gcs);
        store.put_raw("counter", "0");
        let mut scenario = Scenario::new(store.clone());
        for name in ["A", "B"] {
            let client = store.client();
            scenario = scenario.fallible_actor(name, async move {
                loop {
                    let Fetched::Found { body, token, .. } = client.get_bytes("counter", None).await.unwrap() else {
                        unreachable!()
                    };
                    let next = String::from_utf8(body).unwrap().parse::<u32>().unwrap() + 1;
                    let precondition = if conditional { Precondition::IfMatch(token) } else { Precondition::None };
                    match client.put_bytes("counter", next.to_string().as_bytes(), &precondition).await {
                        Ok(_) => return Ok(()),
                        Err(crate::store::StoreError::PreconditionFailed { .. }) => continue,
                        Err(other) => return Err(other.to_string()),
                    }
                }
            });
        }
        scenario
    }

    fn counter_is_two(store: &MemoryStore) -> Result<(), String> {
        match store.object("counter") {
            Some((bytes, _)) if bytes == b"2" => Ok(()),
            other => Err(format!("lost update: counter is {:?}", other.map(|(b, _)| String::from_utf8(b).unwrap()))),
        }
    }

    #[test]
    fn a_lost_update_is_found_and_shrunk_to_a_minimal_schedule() {
        let mut sim = Sim::new(|| lost_update_scenario(false)).check_at_end(counter_is_two);

        let exploration = sim.explore_random(0..200);
        assert!(exploration.violations > 0, "{}", exploration.summary());
        let failure = &exploration.failures[0];
        let shrunk = sim.shrink(&failure.schedule).expect("the failing schedule violates on replay");
        println!("{}\n{shrunk}", exploration.summary());

        // A must stop after its GET and before its PUT (2 steps), then B runs to the end: "0*2 1" (or the mirror).
        assert_eq!(shrunk.choices.len(), 3, "{shrunk}");
        assert!(shrunk.message.contains("lost update"));
        assert!(sim.run(&Chooser::Replay(shrunk.choices.clone())).is_violation());
        assert!(sim.run(&Chooser::Replay(shrunk.schedule.clone())).is_violation());
    }

    #[test]
    fn a_compare_and_swap_counter_has_no_lost_update_in_any_schedule() {
        let mut sim = Sim::new(|| lost_update_scenario(true)).check_at_end(counter_is_two);
        let exploration = sim.explore_exhaustive(100_000);
        println!("{}", exploration.summary());
        assert!(exploration.complete);
        exploration.assert_clean();
        assert!(sim.shrink(&Schedule(vec![0, 1, 0, 1])).is_none(), "a clean schedule has nothing to shrink");
    }

    #[test]
    fn the_step_invariant_stops_the_run_with_the_schedule_so_far() {
        let mut sim = Sim::new(|| yielding_scenario(2, 3)).check_each_step(|log: &Log| {
            let log = log.borrow();
            if log.iter().any(|line| line == "1.1") && !log.iter().any(|line| line == "0.done") {
                Err("actor 1 reached its second yield before actor 0 finished".to_string())
            } else {
                Ok(())
            }
        });
        let run = sim.run(&Chooser::Replay("0 1 1".parse().unwrap()));
        let violation = run.violation.expect("the invariant fires");
        assert_eq!(violation.step, 3);
        assert_eq!(run.schedule, "0 1 1".parse().unwrap());
        let shrunk = sim.shrink(&run.schedule).unwrap();
        assert_eq!(shrunk.choices, "1".parse().unwrap(), "{shrunk}");
    }

    #[test]
    fn a_livelock_hits_the_step_limit() {
        let mut sim = Sim::new(|| {
            Scenario::new(()).actor("spinner", async {
                loop {
                    yield_now().await;
                }
            })
        })
        .max_steps(500);
        let message = sim.run(&Chooser::Random(1)).violation.unwrap().message;
        assert!(message.contains("step limit of 500") && message.contains("spinner"), "{message}");
    }

    #[test]
    fn a_deadlock_is_reported_with_the_blocked_actors() {
        let mut sim = Sim::new(|| {
            let store = MemoryStore::new(TokenStyle::S3);
            let _never_opened = store.faults().pause_nth(crate::testing::memory::Kind::Head, 1);
            Scenario::new(()).actor("stuck", async move {
                let _ = store.head("index").await;
            })
        });
        let message = sim.run(&Chooser::Random(1)).violation.unwrap().message;
        assert!(message.contains("deadlock") && message.contains("stuck"), "{message}");
    }

    #[test]
    fn a_panicking_actor_is_a_violation_not_a_crash() {
        let mut sim = Sim::new(|| {
            Scenario::new(()).actor("ok", async {}).actor("boom", async {
                yield_now().await;
                panic!("invariant broken inside the actor");
            })
        });
        let exploration = sim.explore_exhaustive(100);
        assert!(exploration.complete);
        assert_eq!(exploration.violations, exploration.schedules);
        let message = &exploration.failures[0].message;
        assert!(message.contains("boom") && message.contains("invariant broken inside the actor"), "{message}");
    }

    #[test]
    fn a_non_deterministic_build_is_detected_by_exhaustive_search() {
        let mut builds = 0;
        let mut sim = Sim::new(move || {
            builds += 1;
            // The second world has one actor fewer: replaying the first run's prefix must fail loudly.
            yielding_scenario(if builds == 1 { 2 } else { 1 }, 1)
        });
        let exploration = sim.explore_exhaustive(10);
        assert!(exploration.failures.iter().any(|f| f.message.contains("not deterministic")), "{exploration}");
    }

    fn measure<W>(label: &str, sim: &mut Sim<'_, W>, runs: u64) {
        let started = std::time::Instant::now();
        let exploration = sim.explore_random(0..runs);
        let elapsed = started.elapsed();
        exploration.assert_clean();
        println!(
            "{label}: {}; {:.0} schedules/s ({elapsed:?})",
            exploration.summary(),
            runs as f64 / elapsed.as_secs_f64()
        );
    }

    /// Scheduler overhead, 100,000 random schedules each: a dummy scenario (2 actors × 3 bare yields) and a small
    /// store scenario (2 actors × 3 store calls on a fresh bucket, with a per-step invariant). Prints schedules/second;
    /// run with `--nocapture` to see the figures.
    #[test]
    fn overhead_of_100k_random_schedules() {
        measure("dummy (2 actors x 3 yields)", &mut Sim::new(|| yielding_scenario(2, 3)), 100_000);
        let mut store_sim = Sim::new(|| {
            let store = MemoryStore::new(TokenStyle::S3);
            store.put_raw("index", "{}");
            let mut scenario = Scenario::new(store.clone());
            for name in ["A", "B"] {
                let client = store.client();
                scenario = scenario.actor(name, async move {
                    let _ = client.get_bytes("index", None).await;
                    let _ = client.put_bytes(name, b"data", &Precondition::IfAbsent).await;
                    let _ = client.head("index").await;
                });
            }
            scenario
        })
        .check_each_step(|store| if store.keys().len() <= 3 { Ok(()) } else { Err("extra object".into()) });
        measure("store (2 actors x 3 calls)", &mut store_sim, 100_000);
    }
}
