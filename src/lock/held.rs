//! The locks this process holds, by scope (the bucket and prefix a lock guards), so that a sync operation on a scope
//! whose lock a heartbeat found taken over fails before it writes anything (W13: the holder that lost the lock is told
//! by its next operation). One registry per process; in wasm, one per module instance, shared by every `LockClient`
//! and `SyncService`.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use super::{LockError, LockState, Standing};

/// A process-wide registry of locks by scope. Clones share it. It only watches: a lock's standing (held, free, lost)
/// is the lock's own state, so releasing or acquiring again clears a loss without telling the registry.
#[derive(Debug, Clone, Default)]
pub struct HeldLocks(Rc<RefCell<Vec<Registered>>>);

#[derive(Debug)]
struct Registered {
    scope: String,
    key: String,
    /// Weak: a lock nobody holds a handle to any more is forgotten.
    state: Weak<RefCell<LockState>>,
}

impl HeldLocks {
    pub fn new() -> Self {
        HeldLocks::default()
    }

    pub(super) fn register(&self, scope: String, key: String, state: &Rc<RefCell<LockState>>) {
        let mut locks = self.0.borrow_mut();
        locks.retain(|lock| lock.state.strong_count() > 0);
        locks.push(Registered { scope, key, state: Rc::downgrade(state) });
    }

    /// `Err(LockError::Lost)` if a lock of `scope` was found taken over and has been neither released nor acquired
    /// again since.
    pub fn check(&self, scope: &str) -> Result<(), LockError> {
        for lock in self.0.borrow().iter().filter(|lock| lock.scope == scope) {
            let Some(state) = lock.state.upgrade() else { continue };
            let lost = match &state.borrow().standing {
                Standing::Lost(by) => Some(by.clone()),
                _ => None,
            };
            if let Some(by) = lost {
                return Err(LockError::Lost { key: lock.key.clone(), by });
            }
        }
        Ok(())
    }

    /// The registry as one scope's sync operations see it.
    pub fn watch(&self, scope: impl Into<String>) -> ScopeWatch {
        ScopeWatch { locks: self.clone(), scope: scope.into() }
    }
}

/// What a sync service consults before each operation: the locks of its scope.
#[derive(Debug, Clone)]
pub struct ScopeWatch {
    locks: HeldLocks,
    scope: String,
}

impl ScopeWatch {
    /// As [`HeldLocks::check`] for this scope.
    pub fn check(&self) -> Result<(), LockError> {
        self.locks.check(&self.scope)
    }
}
