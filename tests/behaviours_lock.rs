//! B19 and W13: the lock protocol against the shared in-memory bucket (exact S3 and GCS precondition semantics).
#![cfg(not(target_arch = "wasm32"))]

use std::cell::RefCell;
use std::rc::Rc;

use marsh::encoding::time::iso_from_ms;
use marsh::engine::{Engine, EngineConfig, Instance, SyncError};
use marsh::lock::{Attempt, HeldLocks, Lock, LockConfig, LockError, LockIdentity, DEFAULT_LOCK_KEY};
use marsh::testing::memory::{MemoryCache, MemoryStore, TestEnv, TokenStyle, VirtualClock};
use marsh::testing::sim::{block_on, Scenario, Sim};

const NOW: i64 = 1_780_000_000_000;

fn identity(name: &str, pid: u32) -> LockIdentity {
    LockIdentity { holder: format!("{name}@host-{name}"), hostname: format!("host-{name}"), pid }
}

fn config() -> LockConfig {
    LockConfig { ttl_ms: 30_000, retry_interval_ms: 1_000, max_wait_ms: 5_000, ..LockConfig::default() }
}

fn stale_lock_body() -> Vec<u8> {
    format!(
        r#"{{"holder":"gone@old","hostname":"old","pid":1,"acquiredAt":"{}","ttlMs":30000,"nonce":"dead"}}"#,
        iso_from_ms(NOW - 3_600_000)
    )
    .into_bytes()
}

#[test]
fn b19_create_heartbeat_takeover_release_and_force_release() {
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        let bucket = MemoryStore::new(style);
        let clock = VirtualClock::new(NOW);
        let env = TestEnv::with_clock(clock.clone(), 1);
        let alice = Lock::new(bucket.client(), config(), identity("alice", 10));
        let bob = Lock::new(bucket.client(), config(), identity("bob", 20));

        block_on(alice.acquire(&env)).unwrap(); // create-if-absent
        let held = block_on(alice.inspect()).unwrap().expect("lock written");
        assert_eq!((held.holder.as_str(), held.pid, held.ttl_ms), ("alice@host-alice", 10, 30_000));

        // Heartbeats every ttl/3 keep a live holder from being taken over.
        for _ in 0..4 {
            clock.advance(10_000);
            block_on(alice.heartbeat(&env)).unwrap();
        }
        assert!(matches!(block_on(bob.try_acquire(&env)), Ok(Attempt::Busy(Some(_)))));
        let timeout = block_on(bob.acquire(&env)).unwrap_err();
        assert!(matches!(&timeout, LockError::Timeout { waited_ms, .. } if *waited_ms >= 5_000), "{timeout}");
        assert!(timeout.to_string().contains("alice@host-alice") && timeout.to_string().contains("pid 10"));

        // Without heartbeats the lock goes stale after its ttl and is taken over, conditionally.
        clock.advance(31_000);
        block_on(bob.acquire(&env)).unwrap();
        assert!(matches!(block_on(alice.heartbeat(&env)), Err(LockError::Lost { .. })));
        assert!(alice.ensure_held().is_err(), "the old holder's next operation fails");
        block_on(alice.release()).unwrap(); // must not delete bob's lock
        let now_held = block_on(bob.inspect()).unwrap().expect("bob still holds it");
        assert_eq!(now_held.holder, "bob@host-bob");

        assert!(!block_on(alice.force_release("not-the-nonce")).unwrap());
        assert!(block_on(alice.force_release(now_held.nonce.as_deref().unwrap())).unwrap());
        assert!(block_on(bob.inspect()).unwrap().is_none());
        assert!(bucket.object(DEFAULT_LOCK_KEY).is_none());
    }
}

/// W13: two processes see the same stale lock and both try to take it over. The take-over is a conditional write on
/// the stale lock's token, so in every interleaving exactly one wins. The official design (unconditional delete, then
/// create; or a blind PUT) lets both believe they hold it.
#[test]
fn w13_two_processes_taking_over_a_stale_lock_never_both_hold_it() {
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        let mut sim = Sim::new(|| {
            let bucket = MemoryStore::new(style);
            bucket.put_raw(DEFAULT_LOCK_KEY, stale_lock_body());
            let winners = Rc::new(RefCell::new(Vec::new()));
            let mut scenario = Scenario::new(winners.clone());
            for (name, pid) in [("a", 1), ("b", 2)] {
                let lock = Lock::new(bucket.client(), config(), identity(name, pid));
                let env = TestEnv::with_clock(VirtualClock::new(NOW), pid.into());
                let winners = winners.clone();
                scenario = scenario.actor(name, async move {
                    if let Ok(Attempt::Acquired) = lock.try_acquire(&env).await {
                        winners.borrow_mut().push(name);
                    }
                });
            }
            scenario
        })
        .check_at_end(|winners| match winners.borrow().len() {
            1 => Ok(()),
            n => Err(format!("{n} processes hold the lock: {:?}", winners.borrow())),
        });

        let result = sim.explore_exhaustive(100_000);

        println!("w13 ({style:?}): {result}");
        assert!(result.complete && result.violations == 0, "{result}");
        assert!(result.schedules > 1);
    }
}

const SCOPE: &str = "s3://bucket/repo";

fn lost_by(error: &SyncError, holder: &str) -> bool {
    matches!(error, SyncError::LockLost(LockError::Lost { key, by: Some(by) }) if key == DEFAULT_LOCK_KEY && by.holder == holder)
}

/// W13, the holder's side: once a heartbeat finds the lock taken over, pull, push and markDirty of the lock's scope
/// fail with `LockLost` before any request or cache write; another scope's service runs; releasing ends the refusal.
#[test]
fn w13_sync_operations_of_a_scope_whose_lock_was_lost_fail_and_write_nothing() {
    let bucket = MemoryStore::new(TokenStyle::S3);
    let clock = VirtualClock::new(NOW);
    let env = TestEnv::with_clock(clock.clone(), 1);
    let locks = HeldLocks::new();
    let alice = Lock::new(bucket.client(), config(), identity("alice", 10)).held_in(&locks, SCOPE);
    let bob = Lock::new(bucket.client(), config(), identity("bob", 20));
    let (store, cache, engine_config) =
        (bucket.client(), MemoryCache::with_clock(clock.clone()), EngineConfig::default());
    let (instance, other_scope) =
        (Instance::under_locks(locks.watch(SCOPE)), Instance::under_locks(locks.watch("s3://bucket/other")));
    let engine = Engine::new(&store, &cache, &env, &engine_config, &instance);
    block_on(alice.acquire(&env)).unwrap();
    block_on(engine.mark_dirty(None)).unwrap();
    cache.write_file("a.json", "1");
    block_on(engine.push_changed()).expect("a push under the held lock");
    clock.advance(31_000); // alice's heartbeats stalled past the ttl
    block_on(bob.acquire(&env)).expect("bob takes the stale lock over");
    cache.write_file("b.json", "2");
    assert!(block_on(engine.pull_changed()).is_ok(), "until a heartbeat finds the loss, nothing stops the holder");
    assert!(matches!(block_on(alice.heartbeat(&env)), Err(LockError::Lost { .. })));
    let (requests, calls) = (store.requests(), cache.calls());

    let pull = block_on(engine.pull_changed()).unwrap_err();
    let push = block_on(engine.push_changed()).unwrap_err();
    let mark = block_on(engine.mark_dirty(None)).unwrap_err();

    for error in [&pull, &push, &mark] {
        assert!(lost_by(error, "bob@host-bob"), "{error:?}");
        assert!(error.to_string().contains("was lost") && error.to_string().contains("bob@host-bob"), "{error}");
    }
    assert_eq!(store.requests(), requests, "no request after the loss was found");
    assert_eq!(cache.calls(), calls, "no cache call either");
    assert!(bucket.object("b.json").is_none());
    block_on(Engine::new(&store, &cache, &env, &engine_config, &other_scope).pull_changed())
        .expect("another scope is not affected");

    block_on(alice.release()).unwrap();
    assert!(block_on(engine.pull_changed()).is_ok(), "released: the scope syncs again");
    assert_eq!(block_on(bob.inspect()).unwrap().map(|info| info.holder).as_deref(), Some("bob@host-bob"));
}

/// A lost lock stops refusing once it is acquired again, or once the process drops it; until then one lost lock among
/// several of the scope is enough.
#[test]
fn w13_acquiring_again_or_dropping_the_lost_lock_ends_the_refusal() {
    let bucket = MemoryStore::new(TokenStyle::Gcs);
    let env = TestEnv::with_clock(VirtualClock::new(NOW), 1);
    let locks = HeldLocks::new();
    let custom = |key: &str| LockConfig { key: key.to_string(), ..config() };
    let main = Lock::new(bucket.client(), config(), identity("alice", 10)).held_in(&locks, SCOPE);
    let side = Lock::new(bucket.client(), custom("side.lock"), identity("alice", 10)).held_in(&locks, SCOPE);
    let operator = Lock::new(bucket.client(), config(), identity("operator", 1));
    block_on(main.acquire(&env)).unwrap();
    block_on(side.acquire(&env)).unwrap();
    let nonce = block_on(operator.inspect()).unwrap().unwrap().nonce.unwrap();
    assert!(block_on(operator.force_release(&nonce)).unwrap());
    assert!(matches!(block_on(main.heartbeat(&env)), Err(LockError::Lost { by: None, .. })));

    assert!(matches!(locks.check(SCOPE), Err(LockError::Lost { ref key, by: None }) if key == DEFAULT_LOCK_KEY));
    assert!(side.ensure_held().is_ok(), "only the main lock was lost");
    block_on(main.acquire(&env)).expect("the released lock is free again");
    assert_eq!(locks.check(SCOPE), Ok(()), "acquired again");

    assert!(block_on(operator.force_release(&block_on(operator.inspect()).unwrap().unwrap().nonce.unwrap())).unwrap());
    assert!(block_on(main.heartbeat(&env)).is_err());
    assert!(locks.check(SCOPE).is_err());
    drop(main);
    assert_eq!(locks.check(SCOPE), Ok(()), "a lock the process no longer has is forgotten");
}
