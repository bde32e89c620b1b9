//! Delivery of queued after-hook calls: one lane per order key, so a key's
//! records go out one at a time in push order while other keys proceed.
//!
//! The in-memory window ([`MAX_IN_MEMORY`] records) is shared: one hook may
//! hold at most [`HOOK_SHARE`] of it and one key at most [`KEY_SHARE`], so a
//! failing hook (or a conversation whose calls keep failing) leaves room for
//! the rest. A record over its share stays on disk, and so does every later
//! record of its key (order per key holds); the outbox is read again from
//! the first such record once the hog gives back room, at most once per
//! [`RESCAN_EVERY`]. A record that fails `hooks.outbox_max_attempts` times,
//! or is older than `hooks.outbox_max_age_secs` when a call fails, moves to
//! the dead letters.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use super::{CallError, Hook, Hooks};
use crate::store::{DeadLetter, OutboxRecord};

/// First retry delay of a failed call; it doubles per failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest delay between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Most after-hook calls in progress at once, across lanes.
pub const MAX_CONCURRENT_CALLS: usize = 64;
/// Most records read into memory and not yet delivered. A dead endpoint
/// leaves the rest on disk instead of loading the whole outbox.
pub const MAX_IN_MEMORY: usize = 4096;
/// Most records of one hook in memory: a quarter of the window.
pub const HOOK_SHARE: usize = MAX_IN_MEMORY / 4;
/// Most records of one order key in memory.
pub const KEY_SHARE: usize = MAX_IN_MEMORY / 16;
/// Least time between two re-reads of records left on disk over a share.
pub const RESCAN_EVERY: Duration = Duration::from_secs(1);
/// Records read per page.
const PAGE: usize = 512;
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

/// A record a lane finished with.
struct Done {
    id: u64,
    key: String,
    hook: Option<Hook>,
}

/// What is in memory, and what was left on disk over a share.
#[derive(Default)]
struct Window {
    ids: HashSet<u64>,
    per_hook: [usize; Hook::COUNT],
    /// The first record left on disk since the last re-read.
    deferred_from: Option<u64>,
    /// Keys with a record left on disk: their later records wait too.
    blocked: HashSet<String>,
}

impl Window {
    /// Whether `rec` must stay on disk for now.
    fn defer(
        &mut self,
        id: u64,
        rec: &OutboxRecord,
        hook: Option<Hook>,
        lane_pending: usize,
    ) -> bool {
        let over = self.blocked.contains(&rec.order_key)
            || lane_pending >= KEY_SHARE
            || hook.is_some_and(|h| self.per_hook[h.index()] >= HOOK_SHARE);
        if over {
            self.deferred_from = Some(self.deferred_from.map_or(id, |d| d.min(id)));
            self.blocked.insert(rec.order_key.clone());
        }
        over
    }
}

/// Reads records in id order and hands each to its key's lane. A lane
/// lives while it has records; its task ends when the lane is dropped here.
/// Runs until the future is dropped, which aborts every lane.
pub(super) async fn run(hooks: Arc<Hooks>) {
    let calls = Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut lanes: HashMap<String, Lane> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut window = Window::default();
    // Ids start at 1; every id at or below `scan` was looked at since the
    // last re-read.
    let mut scan = 0u64;
    let mut maybe_more = true;
    let mut rescan_due = false;
    let mut last_rescan = Instant::now();
    loop {
        if rescan_due && last_rescan.elapsed() >= RESCAN_EVERY {
            if let Some(from) = window.deferred_from.take() {
                scan = from - 1;
                window.blocked.clear();
                maybe_more = true;
            }
            rescan_due = false;
            last_rescan = Instant::now();
        }
        while maybe_more && window.ids.len() < MAX_IN_MEMORY {
            let batch = match hooks.store.outbox_peek_after(scan, PAGE) {
                Ok(b) => b,
                Err(e) => {
                    error!(error = %e, "cannot read the hook outbox; retrying");
                    tokio::time::sleep(READ_RETRY).await;
                    continue;
                }
            };
            maybe_more = batch.len() == PAGE;
            for (id, rec) in batch {
                if window.ids.len() >= MAX_IN_MEMORY {
                    maybe_more = true;
                    break;
                }
                scan = id;
                if window.ids.contains(&id) {
                    continue;
                }
                let hook = Hook::from_name(&rec.hook);
                let pending = lanes.get(&rec.order_key).map_or(0, |l| l.pending);
                if window.defer(id, &rec, hook, pending) {
                    continue;
                }
                window.ids.insert(id);
                if let Some(h) = hook {
                    window.per_hook[h.index()] += 1;
                }
                let lane = lanes.entry(rec.order_key.clone()).or_insert_with(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    tasks.spawn(lane(hooks.clone(), rx, done_tx.clone(), calls.clone()));
                    Lane { tx, pending: 0 }
                });
                lane.pending += 1;
                // The lane's task holds the receiver until its sender is
                // dropped below, so this cannot fail.
                let _ = lane.tx.send((id, rec));
            }
            // A long re-read must not starve the lanes' bookkeeping.
            tokio::task::yield_now().await;
        }
        let rescan_at = tokio::time::Instant::from_std(last_rescan + RESCAN_EVERY);
        tokio::select! {
            () = hooks.wake.notified() => maybe_more = true,
            () = tokio::time::sleep_until(rescan_at), if rescan_due => {}
            Some(done) = done_rx.recv() => {
                let mut next = Some(done);
                while let Some(d) = next {
                    window.ids.remove(&d.id);
                    if let Some(h) = d.hook {
                        let n = &mut window.per_hook[h.index()];
                        *n = n.saturating_sub(1);
                    }
                    if let Some(lane) = lanes.get_mut(&d.key) {
                        lane.pending = lane.pending.saturating_sub(1);
                        if lane.pending == 0 {
                            lanes.remove(&d.key);
                        }
                    }
                    next = done_rx.try_recv().ok();
                }
                if window.deferred_from.is_some() {
                    rescan_due = true;
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
    done: mpsc::UnboundedSender<Done>,
    calls: Arc<Semaphore>,
) {
    while let Some((id, rec)) = rx.recv().await {
        deliver(&hooks, id, &rec, &calls).await;
        let _ = done.send(Done {
            id,
            hook: Hook::from_name(&rec.hook),
            key: rec.order_key,
        });
    }
}

/// Calls every endpoint of the record's hook until each has accepted it (or
/// does not define the hook), then removes it; gives up into the dead
/// letters after too many attempts or too long. A record whose hook is off
/// (or unknown) is dropped.
async fn deliver(hooks: &Hooks, id: u64, rec: &OutboxRecord, calls: &Semaphore) {
    let Some(hook) = Hook::from_name(&rec.hook) else {
        error!(id, hook = %rec.hook, "outbox record names no known hook; discarding it");
        remove(hooks, id, None);
        return;
    };
    let body = rec.params.as_bytes().to_vec();
    let mut accepted: HashSet<Url> = HashSet::new();
    let mut attempt = 0u32;
    let mut last_error = String::new();
    loop {
        let client = hooks.current();
        let Some(route) = client.route(hook) else {
            debug!(id, %hook, "hook is off; discarding its queued call");
            break;
        };
        let mut failed = false;
        let mut called = false;
        for url in &route.urls {
            if accepted.contains(url) {
                continue;
            }
            // Never closed, so acquiring only waits.
            let Ok(_permit) = calls.acquire().await else {
                return;
            };
            match hooks.admit(hook, url) {
                Ok(()) => {}
                Err(CallError::Undefined) => {
                    // The app has no such function: nothing to deliver there.
                    accepted.insert(url.clone());
                    continue;
                }
                Err(e) => {
                    failed = true;
                    last_error = format!("{url}: {e}");
                    continue;
                }
            }
            called = true;
            let started = Instant::now();
            let outcome = client.call(url, route.timeout, body.clone()).await;
            let timeout = outcome.as_ref().is_err_and(|e| e.is_timeout());
            hooks
                .stats
                .call(hook, outcome.is_ok(), timeout, started.elapsed());
            hooks.learn(hook, url, &outcome);
            match outcome {
                Ok(_) => {
                    accepted.insert(url.clone());
                }
                Err(e) if super::guard::is_undefined(&e) => {
                    hooks.stats.undefined_skipped(hook);
                    accepted.insert(url.clone());
                }
                Err(e) => {
                    failed = true;
                    warn!(
                        id, %hook, %url, attempt, error = %e, retry_in = ?backoff(attempt),
                        "after-hook call failed; will retry"
                    );
                    last_error = format!("{url}: {e}");
                }
            }
        }
        if !failed {
            break;
        }
        // A round the breaker answered alone made no attempt.
        if called {
            attempt = attempt.saturating_add(1);
        }
        let age = Duration::from_millis(crate::util::now_ms().saturating_sub(rec.enqueued_at));
        if attempt >= client.outbox_max_attempts() || age >= client.outbox_max_age() {
            bury(hooks, id, rec, hook, attempt, last_error);
            return;
        }
        tokio::time::sleep(backoff(attempt.saturating_sub(1))).await;
    }
    remove(hooks, id, Some(hook));
}

/// Moves a record given up on to the dead letters.
fn bury(hooks: &Hooks, id: u64, rec: &OutboxRecord, hook: Hook, attempts: u32, last_error: String) {
    warn!(id, %hook, attempts, error = %last_error, "after-hook call given up; moved to the dead letters");
    let letter = DeadLetter {
        record: rec.clone(),
        attempts,
        dead_at: crate::util::now_ms(),
        last_error,
    };
    match hooks.store.outbox_bury(id, &letter) {
        Ok(_) => {
            hooks.stats.dequeued(hook);
            hooks.stats.dead_lettered(hook);
        }
        // Left in the outbox: tried again after the next start.
        Err(e) => error!(id, error = %e, "cannot move a hook call to the dead letters"),
    }
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

    fn rec(hook: Hook, key: &str) -> OutboxRecord {
        OutboxRecord {
            hook: hook.name().into(),
            params: "{}".into(),
            order_key: key.into(),
            enqueued_at: 0,
        }
    }

    #[test]
    fn shares_defer_a_hog_and_every_later_record_of_its_key() {
        let mut w = Window::default();
        let h = Some(Hook::MessageSent);
        assert!(!w.defer(1, &rec(Hook::MessageSent, "a"), h, KEY_SHARE - 1));
        // The key is at its share: this record and every later one of the
        // key stay on disk, whatever their hook, so order per key holds.
        assert!(w.defer(2, &rec(Hook::MessageSent, "a"), h, KEY_SHARE));
        assert!(w.defer(
            3,
            &rec(Hook::ClientOnline, "a"),
            Some(Hook::ClientOnline),
            0
        ));
        assert!(!w.defer(4, &rec(Hook::MessageSent, "b"), h, 0));
        w.per_hook[Hook::ClientOnline.index()] = HOOK_SHARE;
        assert!(w.defer(
            5,
            &rec(Hook::ClientOnline, "c"),
            Some(Hook::ClientOnline),
            0
        ));
        assert!(!w.defer(6, &rec(Hook::MessageSent, "d"), h, 0));
        assert_eq!(w.deferred_from, Some(2));
        assert!(w.blocked.contains("a") && w.blocked.contains("c"));
        const { assert!(HOOK_SHARE < MAX_IN_MEMORY && KEY_SHARE < HOOK_SHARE) };
    }
}
