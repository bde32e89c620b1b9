//! Per-hook counters and latency histograms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use super::Hook;

/// Latencies are recorded in µs up to this (an hour); longer ones saturate.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A snapshot of one hook's counters since start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookStats {
    pub hook: Hook,
    /// HTTP calls made, each endpoint and each retry counted.
    pub calls: u64,
    /// Failed calls, timeouts included.
    pub failures: u64,
    /// Calls that hit the hook's timeout.
    pub timeouts: u64,
    /// Before-hook chains that ended in drop/reject.
    pub rejections: u64,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    /// After-hook calls waiting in the outbox.
    pub outbox_depth: u64,
    /// After-hook calls dropped because the outbox was full.
    pub dropped: u64,
    /// Times an endpoint of this hook was found not to define it (404, code 1).
    pub undefined_learned: u64,
    /// After-hook calls discarded, and before-hook calls not made, because
    /// the endpoint does not define the hook.
    pub undefined_skipped: u64,
    /// Times an endpoint's breaker opened.
    pub breaker_opened: u64,
    /// Calls not made because the endpoint's breaker was open.
    pub short_circuited: u64,
    /// After-hook calls moved to the dead-letter list.
    pub dead_lettered: u64,
}

pub(super) struct Counters {
    calls: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    rejections: AtomicU64,
    outbox_depth: AtomicU64,
    dropped: AtomicU64,
    undefined_learned: AtomicU64,
    undefined_skipped: AtomicU64,
    breaker_opened: AtomicU64,
    short_circuited: AtomicU64,
    dead_lettered: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl Counters {
    fn new() -> Counters {
        Counters {
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            rejections: AtomicU64::new(0),
            outbox_depth: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            undefined_learned: AtomicU64::new(0),
            undefined_skipped: AtomicU64::new(0),
            breaker_opened: AtomicU64::new(0),
            short_circuited: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            latency: Mutex::new(
                Histogram::new_with_bounds(1, MAX_LATENCY_US, 2)
                    .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid")),
            ),
        }
    }
}

pub(super) struct Stats {
    per_hook: [Counters; Hook::COUNT],
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            per_hook: std::array::from_fn(|_| Counters::new()),
        }
    }

    fn of(&self, hook: Hook) -> &Counters {
        &self.per_hook[hook.index()]
    }

    pub fn call(&self, hook: Hook, ok: bool, timeout: bool, took: Duration) {
        let c = self.of(hook);
        c.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            c.failures.fetch_add(1, Ordering::Relaxed);
        }
        if timeout {
            c.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        c.latency.lock().saturating_record(us.max(1));
    }

    pub fn rejected(&self, hook: Hook) {
        self.of(hook).rejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a drop; returns the hook's total so far.
    pub fn dropped(&self, hook: Hook) -> u64 {
        self.of(hook).dropped.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn undefined_learned(&self, hook: Hook) {
        self.of(hook)
            .undefined_learned
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn undefined_skipped(&self, hook: Hook) {
        self.of(hook)
            .undefined_skipped
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn breaker_opened(&self, hook: Hook) {
        self.of(hook).breaker_opened.fetch_add(1, Ordering::Relaxed);
    }

    pub fn short_circuited(&self, hook: Hook) {
        self.of(hook)
            .short_circuited
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn dead_lettered(&self, hook: Hook) {
        self.of(hook).dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    pub fn queued(&self, hook: Hook, n: u64) {
        self.of(hook).outbox_depth.fetch_add(n, Ordering::Relaxed);
    }

    pub fn dequeued(&self, hook: Hook) {
        // Saturating: never wraps even if counts disagree after a bug.
        let _ =
            self.of(hook)
                .outbox_depth
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                    Some(d.saturating_sub(1))
                });
    }

    pub fn snapshot(&self) -> Vec<HookStats> {
        Hook::ALL
            .iter()
            .map(|&hook| {
                let c = self.of(hook);
                let (p50, p99) = {
                    let h = c.latency.lock();
                    if h.is_empty() {
                        (0, 0)
                    } else {
                        (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
                    }
                };
                HookStats {
                    hook,
                    calls: c.calls.load(Ordering::Relaxed),
                    failures: c.failures.load(Ordering::Relaxed),
                    timeouts: c.timeouts.load(Ordering::Relaxed),
                    rejections: c.rejections.load(Ordering::Relaxed),
                    latency_p50_us: p50,
                    latency_p99_us: p99,
                    outbox_depth: c.outbox_depth.load(Ordering::Relaxed),
                    dropped: c.dropped.load(Ordering::Relaxed),
                    undefined_learned: c.undefined_learned.load(Ordering::Relaxed),
                    undefined_skipped: c.undefined_skipped.load(Ordering::Relaxed),
                    breaker_opened: c.breaker_opened.load(Ordering::Relaxed),
                    short_circuited: c.short_circuited.load(Ordering::Relaxed),
                    dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}
