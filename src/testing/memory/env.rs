//! The test host environment: virtual clock, seeded randomness, an abort flag, recorded sleeps and trace lines.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use super::*;
use crate::store::{Env, StoreError, StoreResult};
use crate::testing::sim::{yield_now, SplitMix64};

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
