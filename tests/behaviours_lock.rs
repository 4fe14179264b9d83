//! B19 and W13: the lock protocol against the shared in-memory bucket (exact S3 and GCS precondition semantics).
#![cfg(not(target_arch = "wasm32"))]

use std::cell::RefCell;
use std::rc::Rc;

use marsh::encoding::time::iso_from_ms;
use marsh::lock::{Attempt, Lock, LockConfig, LockError, LockIdentity, DEFAULT_LOCK_KEY};
use marsh::testing::memory::{MemoryStore, TestEnv, TokenStyle, VirtualClock};
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
