//! One retry policy for every request (B14, W14): which errors are worth another attempt, how long to wait, and how
//! an abort cuts the whole thing short (B15).

use std::future::Future;

use crate::store::{Env, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (0 is treated as 1).
    pub attempts: u32,
    pub base_delay_ms: u64,
    /// Growth of the delay per retry.
    pub factor: u64,
    /// Relative spread of each delay, so that clients that failed together do not retry together.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// The official extensions' policy: 3 attempts in total, 500 ms, ×3 per attempt, ±25%.
    fn default() -> Self {
        RetryPolicy { attempts: 3, base_delay_ms: 500, factor: 3, jitter: 0.25 }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (0 = the first retry): base × factor^retry × (1 + jitter × (2r − 1)),
    /// r = `random01` in [0,1). Saturates instead of overflowing; `random01` outside [0, 1] is clamped.
    pub fn backoff_ms(&self, retry: u32, random01: f64) -> u64 {
        let nominal = self.base_delay_ms.saturating_mul(self.factor.saturating_pow(retry)) as f64;
        let spread = 1.0 + self.jitter * (2.0 * random01.clamp(0.0, 1.0) - 1.0);
        // `as` saturates for floats: a negative product (jitter > 1) becomes 0, a huge one u64::MAX.
        (nominal * spread).round() as u64
    }
}

/// Only `Transient` is worth another attempt. The store adapters decide what is transient; auth errors in particular
/// must surface at once with their hint instead of being retried (W14).
pub fn is_retryable(err: &StoreError) -> bool {
    matches!(err, StoreError::Transient { .. })
}

/// Run `op` up to `policy.attempts` times. Before every attempt: if env.is_aborted() → Err(StoreError::Aborted).
/// Between attempts: env.sleep(backoff) (which itself returns Err(Aborted) when aborted during the sleep).
/// Returns the last error when attempts are exhausted. Non-retryable errors return at once.
pub async fn with_retry<E: Env, T, F, Fut>(env: &E, policy: &RetryPolicy, mut op: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    let attempts = policy.attempts.max(1);
    let mut retry = 0;
    loop {
        if env.is_aborted() {
            return Err(StoreError::Aborted);
        }
        let err = match op().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        if !is_retryable(&err) || retry + 1 >= attempts {
            return Err(err);
        }
        env.sleep(policy.backoff_ms(retry, env.random())).await?;
        retry += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use futures_util::FutureExt;

    use super::*;

    /// An environment whose sleeps return at once, recording the delays asked for.
    struct FakeEnv {
        random: f64,
        aborted: Cell<bool>,
        abort_during_sleep: bool,
        /// The abort lands just after a sleep completed, so only the check before the next attempt can see it.
        abort_after_sleep: bool,
        sleeps: RefCell<Vec<u64>>,
    }

    impl FakeEnv {
        fn new() -> Self {
            FakeEnv {
                random: 0.5,
                aborted: Cell::new(false),
                abort_during_sleep: false,
                abort_after_sleep: false,
                sleeps: RefCell::new(Vec::new()),
            }
        }
    }

    impl Env for FakeEnv {
        fn now_ms(&self) -> i64 {
            0
        }

        fn random(&self) -> f64 {
            self.random
        }

        async fn sleep(&self, ms: u64) -> StoreResult<()> {
            self.sleeps.borrow_mut().push(ms);
            if self.abort_during_sleep {
                self.aborted.set(true);
            }
            if self.aborted.get() {
                return Err(StoreError::Aborted);
            }
            if self.abort_after_sleep {
                self.aborted.set(true);
            }
            Ok(())
        }

        fn is_aborted(&self) -> bool {
            self.aborted.get()
        }
    }

    fn unavailable() -> StoreError {
        StoreError::Transient { status: Some(503), message: "slow down".to_string() }
    }

    fn forbidden() -> StoreError {
        StoreError::Auth { status: Some(403), message: "denied".to_string() }
    }

    /// Runs `with_retry` with the default policy over scripted results; returns the outcome and the number of calls.
    fn run(env: &FakeEnv, script: Vec<StoreResult<u32>>) -> (StoreResult<u32>, usize) {
        let calls = Cell::new(0);
        let mut results = script.into_iter();
        let outcome = with_retry(env, &RetryPolicy::default(), || {
            calls.set(calls.get() + 1);
            let next = results.next().expect("op called more often than scripted");
            async move { next }
        })
        .now_or_never()
        .expect("the fake environment never pends");
        (outcome, calls.get())
    }

    #[test]
    fn default_policy_is_three_attempts_from_500_ms_tripling_with_25_percent_jitter() {
        let policy = RetryPolicy::default();

        assert_eq!((policy.attempts, policy.base_delay_ms, policy.factor), (3, 500, 3));
        assert_eq!(policy.jitter, 0.25);
    }

    #[test]
    fn backoff_grows_by_the_factor_per_retry() {
        let policy = RetryPolicy::default();

        assert_eq!(policy.backoff_ms(0, 0.5), 500);
        assert_eq!(policy.backoff_ms(1, 0.5), 1500);
        assert_eq!(policy.backoff_ms(2, 0.5), 4500);
    }

    #[test]
    fn backoff_jitter_spans_plus_minus_25_percent() {
        let policy = RetryPolicy::default();

        assert_eq!(policy.backoff_ms(0, 0.0), 375);
        assert_eq!(policy.backoff_ms(0, 0.999_999), 625);
        assert_eq!(policy.backoff_ms(1, 0.0), 1125);
    }

    #[test]
    fn backoff_saturates_instead_of_overflowing() {
        let policy = RetryPolicy::default();

        assert_eq!(policy.backoff_ms(200, 0.5), u64::MAX);
        assert_eq!(policy.backoff_ms(0, 7.0), 625);
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        assert!(is_retryable(&unavailable()));
        assert!(is_retryable(&StoreError::Transient { status: None, message: "connection reset".to_string() }));
        let permanent = [
            StoreError::NotFound { key: "k".to_string() },
            StoreError::PreconditionFailed { key: "k".to_string() },
            forbidden(),
            StoreError::Http { status: 400, message: "bad request".to_string() },
            StoreError::Aborted,
            StoreError::InvalidKey { key: "../x".to_string(), reason: "dot segment".to_string() },
            StoreError::Io { message: "disk full".to_string() },
        ];
        for err in permanent {
            assert!(!is_retryable(&err), "{err:?}");
        }
    }

    #[test]
    fn transient_failure_then_success_sleeps_once() {
        let env = FakeEnv::new();

        let (outcome, calls) = run(&env, vec![Err(unavailable()), Ok(42)]);

        assert_eq!(outcome, Ok(42));
        assert_eq!(calls, 2);
        let sleeps = env.sleeps.borrow();
        assert_eq!(sleeps.len(), 1);
        assert!((375..=625).contains(&sleeps[0]), "{sleeps:?}");
    }

    #[test]
    fn auth_error_returns_at_once() {
        let env = FakeEnv::new();

        let (outcome, calls) = run(&env, vec![Err(forbidden())]);

        assert_eq!(outcome, Err(forbidden()));
        assert_eq!(calls, 1);
        assert!(env.sleeps.borrow().is_empty());
    }

    #[test]
    fn exhausted_attempts_return_the_last_error() {
        let env = FakeEnv::new();
        let last = StoreError::Transient { status: Some(500), message: "third".to_string() };

        let (outcome, calls) = run(&env, vec![Err(unavailable()), Err(unavailable()), Err(last.clone())]);

        assert_eq!(outcome, Err(last));
        assert_eq!(calls, 3);
        assert_eq!(*env.sleeps.borrow(), [500, 1500]);
    }

    #[test]
    fn already_aborted_makes_no_call() {
        let env = FakeEnv::new();
        env.aborted.set(true);

        let (outcome, calls) = run(&env, vec![]);

        assert_eq!(outcome, Err(StoreError::Aborted));
        assert_eq!(calls, 0);
    }

    #[test]
    fn abort_during_backoff_stops_retrying() {
        let env = FakeEnv { abort_during_sleep: true, ..FakeEnv::new() };

        let (outcome, calls) = run(&env, vec![Err(unavailable()), Ok(1)]);

        assert_eq!(outcome, Err(StoreError::Aborted));
        assert_eq!(calls, 1);
        assert_eq!(env.sleeps.borrow().len(), 1);
    }

    #[test]
    fn abort_after_a_backoff_is_checked_before_the_next_call() {
        let env = FakeEnv { abort_after_sleep: true, ..FakeEnv::new() };

        let (outcome, calls) = run(&env, vec![Err(unavailable()), Ok(1)]);

        assert_eq!(outcome, Err(StoreError::Aborted));
        assert_eq!(calls, 1);
        assert_eq!(env.sleeps.borrow().len(), 1);
    }

    #[test]
    fn zero_attempts_still_tries_once() {
        let env = FakeEnv::new();
        let policy = RetryPolicy { attempts: 0, ..RetryPolicy::default() };

        let outcome = with_retry(&env, &policy, || async { Err::<u32, _>(unavailable()) })
            .now_or_never()
            .expect("the fake environment never pends");

        assert_eq!(outcome, Err(unavailable()));
        assert!(env.sleeps.borrow().is_empty());
    }
}
