//! A virtual clock shared by a machine's cache (mtimes) and env (now, sleeps).

use std::cell::Cell;
use std::rc::Rc;

use super::*;

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
    pub(super) fn tick(&self) -> i64 {
        self.advance(1);
        self.0.get()
    }
}

impl Default for VirtualClock {
    fn default() -> Self {
        VirtualClock::new(DEFAULT_START_MS)
    }
}
