//! Bounded-concurrency scheduling of per-file work (B13): one failure never stops the others.

use std::future::Future;

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};

use super::TransferMode;

/// Run `task` over `items`, at most `n` at a time, and return every result (in completion order for a window).
pub(super) async fn run_bounded<T, F, Fut>(mode: TransferMode, items: Vec<T>, task: F) -> Vec<Fut::Output>
where
    F: Fn(T) -> Fut,
    Fut: Future,
{
    match mode {
        // A sliding window: a new transfer starts as soon as any one finishes.
        TransferMode::Window(n) => stream::iter(items).map(task).buffer_unordered(n.max(1)).collect().await,
        // Batches wait for the slowest member before the next group starts (the official scheduling).
        TransferMode::Batches(n) => {
            let mut results = Vec::with_capacity(items.len());
            let mut items = items.into_iter().peekable();
            while items.peek().is_some() {
                let batch: Vec<_> = items.by_ref().take(n.max(1)).map(&task).collect();
                results.extend(join_all(batch).await);
            }
            results
        }
    }
}
