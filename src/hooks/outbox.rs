//! Delivery of queued after-hook calls: one lane per order key, so a key's
//! records go out one at a time in push order while other keys proceed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use super::{Hook, Hooks};
use crate::store::OutboxRecord;

/// First retry delay of a failed call; it doubles per failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest delay between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Most after-hook calls in progress at once, across lanes.
pub const MAX_CONCURRENT_CALLS: usize = 64;
/// Most records read into memory and not yet delivered. A dead endpoint
/// leaves the rest on disk instead of loading the whole outbox.
const MAX_IN_MEMORY: usize = 4096;
/// Pause before reading the outbox again after a store error.
const READ_RETRY: Duration = Duration::from_secs(1);

/// The delay before retry number `attempt` (0-based).
pub fn backoff(attempt: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(1u32 << attempt.min(20))
        .min(BACKOFF_MAX)
}

struct Lane {
    tx: mpsc::UnboundedSender<(u64, OutboxRecord)>,
    /// Records handed to the lane and not yet done.
    pending: usize,
}

/// Reads new records in id order and hands each to its key's lane. A lane
/// lives while it has records; its task ends when the lane is dropped here.
/// Runs until the future is dropped, which aborts every lane.
pub(super) async fn run(hooks: Arc<Hooks>) {
    let calls = Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut lanes: HashMap<String, Lane> = HashMap::new();
    let mut tasks = JoinSet::new();
    // Ids start at 1, and every id at or below the cursor is in a lane or done.
    let mut cursor = 0u64;
    let mut in_memory = 0usize;
    let mut maybe_more = true;
    loop {
        if maybe_more && in_memory < MAX_IN_MEMORY {
            let room = MAX_IN_MEMORY - in_memory;
            match hooks.store.outbox_peek_after(cursor, room) {
                Ok(batch) => {
                    maybe_more = batch.len() == room;
                    for (id, rec) in batch {
                        cursor = id;
                        in_memory += 1;
                        let lane = lanes.entry(rec.order_key.clone()).or_insert_with(|| {
                            let (tx, rx) = mpsc::unbounded_channel();
                            tasks.spawn(lane(hooks.clone(), rx, done_tx.clone(), calls.clone()));
                            Lane { tx, pending: 0 }
                        });
                        lane.pending += 1;
                        // The lane's task holds the receiver until its sender
                        // is dropped below, so this cannot fail.
                        let _ = lane.tx.send((id, rec));
                    }
                }
                Err(e) => {
                    error!(error = %e, "cannot read the hook outbox; retrying");
                    tokio::time::sleep(READ_RETRY).await;
                    continue;
                }
            }
        }
        tokio::select! {
            () = hooks.wake.notified() => maybe_more = true,
            Some(key) = done_rx.recv() => {
                let mut next = Some(key);
                while let Some(key) = next {
                    in_memory = in_memory.saturating_sub(1);
                    if let Some(lane) = lanes.get_mut(&key) {
                        lane.pending = lane.pending.saturating_sub(1);
                        if lane.pending == 0 {
                            lanes.remove(&key);
                        }
                    }
                    next = done_rx.try_recv().ok();
                }
            }
            Some(joined) = tasks.join_next() => {
                if let Err(e) = joined
                    && e.is_panic()
                {
                    error!("a hook delivery lane panicked; its key is stuck until restart");
                }
            }
        }
    }
}

/// Delivers one key's records in order, each until done.
async fn lane(
    hooks: Arc<Hooks>,
    mut rx: mpsc::UnboundedReceiver<(u64, OutboxRecord)>,
    done: mpsc::UnboundedSender<String>,
    calls: Arc<Semaphore>,
) {
    while let Some((id, rec)) = rx.recv().await {
        deliver(&hooks, id, &rec, &calls).await;
        let _ = done.send(rec.order_key);
    }
}

/// Calls every endpoint of the record's hook until each has accepted it,
/// then removes it. A record whose hook is off (or unknown) is dropped.
async fn deliver(hooks: &Hooks, id: u64, rec: &OutboxRecord, calls: &Semaphore) {
    let Some(hook) = Hook::from_name(&rec.hook) else {
        error!(id, hook = %rec.hook, "outbox record names no known hook; discarding it");
        remove(hooks, id, None);
        return;
    };
    let body = rec.params.as_bytes().to_vec();
    let mut accepted: HashSet<Url> = HashSet::new();
    let mut attempt = 0u32;
    loop {
        let client = hooks.current();
        let Some(route) = client.route(hook) else {
            debug!(id, %hook, "hook is off; discarding its queued call");
            break;
        };
        let mut failed = false;
        for url in &route.urls {
            if accepted.contains(url) {
                continue;
            }
            // Never closed, so acquiring only waits.
            let Ok(_permit) = calls.acquire().await else {
                return;
            };
            let started = Instant::now();
            let outcome = client.call(url, route.timeout, body.clone()).await;
            let timeout = outcome.as_ref().is_err_and(|e| e.is_timeout());
            hooks
                .stats
                .call(hook, outcome.is_ok(), timeout, started.elapsed());
            match outcome {
                Ok(_) => {
                    accepted.insert(url.clone());
                }
                Err(e) => {
                    failed = true;
                    warn!(
                        id, %hook, %url, attempt, error = %e, retry_in = ?backoff(attempt),
                        "after-hook call failed; will retry"
                    );
                }
            }
        }
        if !failed {
            break;
        }
        tokio::time::sleep(backoff(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
    remove(hooks, id, Some(hook));
}

fn remove(hooks: &Hooks, id: u64, hook: Option<Hook>) {
    match hooks.store.outbox_remove(id) {
        Ok(_) => {
            if let Some(h) = hook {
                hooks.stats.dequeued(h);
            }
        }
        // Left in the outbox: delivered again after the next start.
        Err(e) => error!(id, error = %e, "cannot remove a delivered hook call from the outbox"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(5), Duration::from_millis(3200));
        assert_eq!(backoff(10), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
