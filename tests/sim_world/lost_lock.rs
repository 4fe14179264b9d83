//! W13, the holder that lost the lock: process A holds the datastore lock and has written a file under it; its heartbeat
//! stalls past the ttl; process B waits for the lock, takes it over and pushes. A's heartbeat then finds the lock lost,
//! and A's next sync operation must fail and write nothing.
//!
//! Invariant 5: no process writes (to the bucket or its cache) after its own lock was found lost. Checked after every
//! step; A's heartbeat may also come before B's take-over, in which case A still holds the lock and its push is fine.

use std::cell::Cell;
use std::rc::Rc;

use marsh::engine::{Engine, EngineConfig, Instance, SyncError};
use marsh::lock::{HeldLocks, Lock, LockConfig, LockError, LockIdentity};
use marsh::store::Env;
use marsh::testing::memory::{Faults, MemoryCache, MemoryStore, TestEnv, TokenStyle, VirtualClock};
use marsh::testing::sim::{block_on, Scenario, Sim};

/// Both processes sync the same datastore.
const SCOPE: &str = "mem://bucket/repo";
const TTL_MS: u64 = 3_000;

/// One swamp process: its own lock registry (the wasm instance's), store client, cache and engine instance.
pub struct Process {
    pub name: &'static str,
    pub locks: HeldLocks,
    pub store: MemoryStore,
    pub cache: MemoryCache,
    pub env: TestEnv,
    pub config: EngineConfig,
    pub instance: Instance,
    /// The process's writes when its lock was first found lost.
    lost_at: Cell<Option<Writes>>,
}

/// Writes a process has made: bucket PUTs and DELETEs, cache internal writes and downloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Writes {
    store: usize,
    cache: usize,
}

impl Process {
    fn new(name: &'static str, bucket: &MemoryStore, clock: &VirtualClock, seed: u64) -> Rc<Process> {
        let locks = HeldLocks::new();
        Rc::new(Process {
            name,
            instance: Instance::under_locks(locks.watch(SCOPE)),
            locks,
            store: bucket.client(),
            // Cache calls yield too, so no write of a flawed operation can hide in the step that found the loss.
            cache: MemoryCache::with_clock(clock.clone()).with_faults(Faults::new()),
            env: TestEnv::with_clock(clock.clone(), seed),
            config: EngineConfig { transfers: 2, ..EngineConfig::default() },
            lost_at: Cell::new(None),
        })
    }

    fn engine(&self) -> Engine<'_, MemoryStore, MemoryCache, TestEnv> {
        Engine::new(&self.store, &self.cache, &self.env, &self.config, &self.instance)
    }

    fn lock(&self, pid: u32) -> Lock<MemoryStore> {
        let config =
            LockConfig { ttl_ms: TTL_MS, retry_interval_ms: 1_000, max_wait_ms: 60_000, ..LockConfig::default() };
        let identity = LockIdentity { holder: format!("{}@host", self.name), hostname: "host".into(), pid };
        // A store client of its own: the invariant counts sync writes, and the lock's own writes stop by themselves.
        Lock::new(self.store.client(), config, identity).held_in(&self.locks, SCOPE)
    }

    fn writes(&self) -> Writes {
        let (requests, calls) = (self.store.requests(), self.cache.calls());
        Writes {
            store: requests.put + requests.put_bytes + requests.delete,
            cache: calls.write_internal + calls.download + calls.remove + calls.remove_internal,
        }
    }

    /// A markDirty, then the file, as swamp writes into its cache.
    async fn write(&self, rel: &str) -> Result<(), SyncError> {
        self.engine().mark_dirty(Some(rel)).await?;
        self.cache.write_file(rel, format!("{rel} by {}", self.name).into_bytes());
        Ok(())
    }
}

pub struct World {
    pub bucket: MemoryStore,
    pub processes: Vec<Rc<Process>>,
    /// Set when A's push was refused because A had found its lock lost (the path the invariant is about).
    pub refused: Rc<Cell<bool>>,
}

pub fn build(style: TokenStyle) -> Scenario<World> {
    let bucket = MemoryStore::new(style);
    let clock = VirtualClock::new(1_780_000_000_000);
    let (a, b) = (Process::new("A", &bucket, &clock, 1), Process::new("B", &bucket, &clock, 2));
    let refused = Rc::new(Cell::new(false));

    // Before the race: A holds the lock and writes a1 under it.
    let lock_a = a.lock(1);
    block_on(lock_a.acquire(&a.env)).expect("A acquires the free lock");
    block_on(a.write("a1")).expect("A writes under its lock");

    let world = World { bucket, processes: vec![a.clone(), b.clone()], refused: refused.clone() };
    Scenario::new(world)
        .fallible_actor("A stall,heartbeat,push", async move {
            // The heartbeat timer did not fire for longer than the ttl (a suspended laptop, a long GC pause).
            a.env.sleep(TTL_MS + 1).await.map_err(|e| format!("sleep: {e}"))?;
            let lost = match lock_a.heartbeat(&a.env).await {
                Ok(()) => false,
                Err(LockError::Lost { .. }) => true,
                Err(other) => return Err(format!("A's heartbeat: {other}")),
            };
            match a.engine().push_changed().await {
                Ok(_) if lost => Err("A's push succeeded after A found its lock lost".to_string()),
                Ok(_) => Ok(()),
                Err(SyncError::LockLost(_)) if lost => {
                    refused.set(true);
                    Ok(())
                }
                Err(other) => Err(format!("A's push: {other}")),
            }
        })
        .fallible_actor("B acquire,write,push,release", async move {
            let lock_b = b.lock(2);
            lock_b.acquire(&b.env).await.map_err(|e| format!("B's acquire: {e}"))?;
            b.write("b1").await.map_err(|e| format!("B's markDirty: {e}"))?;
            b.engine().push_changed().await.map_err(|e| format!("B's push: {e}"))?;
            lock_b.release().await.map_err(|e| format!("B's release: {e}"))
        })
}

/// Invariant 5, after every step.
pub fn check_step(world: &World) -> Result<(), String> {
    for process in &world.processes {
        let now = process.writes();
        match process.lost_at.get() {
            Some(then) if then != now => {
                return Err(format!(
                    "invariant 5 (lost lock): process {} wrote after it found its lock lost (bucket writes {} -> {}, \
                     cache writes {} -> {})",
                    process.name, then.store, now.store, then.cache, now.cache
                ));
            }
            Some(_) => {}
            None if process.locks.check(SCOPE).is_err() => process.lost_at.set(Some(now)),
            None => {}
        }
    }
    Ok(())
}

/// At the end: B's push, made under the lock it took over, is in the remote index.
pub fn check_end(world: &World) -> Result<(), String> {
    if !super::reader::read(&world.bucket).entries.contains_key("b1") {
        return Err("B pushed b1 under its lock, but the remote index lacks it".to_string());
    }
    Ok(())
}

pub fn simulator(style: TokenStyle) -> Sim<'static, World> {
    Sim::new(move || build(style)).check_each_step(check_step).check_at_end(check_end)
}
