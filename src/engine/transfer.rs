//! Bounded-concurrency scheduling of per-file work (B13): one failure never stops the others.

use std::future::Future;

use futures_util::stream::{self, StreamExt};

/// Run `task` over `items`, at most `n` at a time in a sliding window (a new one starts as soon as any one finishes),
/// and return every result in completion order.
pub(super) async fn run_bounded<T, F, Fut>(n: usize, items: Vec<T>, task: F) -> Vec<Fut::Output>
where
    F: Fn(T) -> Fut,
    Fut: Future,
{
    stream::iter(items).map(task).buffer_unordered(n.max(1)).collect().await
}
