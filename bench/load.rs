//! Open-loop load: a fixed schedule of sends, message payloads that carry
//! their scheduled time, and the book-keeping for latency, loss and duplicates.
//!
//! Message `k` is due at `t0 + k / rate`, whatever happened to earlier ones,
//! and its latency is measured from that due time. A slow server therefore
//! shows up as latency instead of quietly lowering the offered load
//! (coordinated omission).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;

/// Bytes at the head of every payload: scheduled time (ns since [`base`]) and message number.
pub const HEADER: usize = 16;

/// Caps the per-message tracking arrays (two bytes of state and count per
/// message, about 100 MB at this size).
const MAX_SCHEDULE: u64 = 20_000_000;

/// Histogram shards, so receivers on different threads rarely share a lock.
const SHARDS: usize = 8;

/// Latencies are recorded in µs up to one minute; slower ones saturate.
const HIST_MAX_US: u64 = 60_000_000;

static BASE: OnceLock<Instant> = OnceLock::new();

/// The process-wide time origin; sender and receiver live in one process, so
/// both read the same clock.
pub fn base() -> Instant {
    *BASE.get_or_init(Instant::now)
}

pub fn now_ns() -> u64 {
    base().elapsed().as_nanos() as u64
}

/// `size` bytes (at least [`HEADER`]): due time, message number, zero padding.
pub fn payload(sched_ns: u64, k: u64, size: usize) -> Vec<u8> {
    let mut p = vec![0u8; size.max(HEADER)];
    p[..8].copy_from_slice(&sched_ns.to_le_bytes());
    p[8..16].copy_from_slice(&k.to_le_bytes());
    p
}

/// `(scheduled ns, message number)` from a payload made by [`payload`].
pub fn parse(p: &[u8]) -> Option<(u64, u64)> {
    let sched = u64::from_le_bytes(p.get(..8)?.try_into().ok()?);
    let k = u64::from_le_bytes(p.get(8..16)?.try_into().ok()?);
    Some((sched, k))
}

/// The schedule: messages `0..k_warm` are warm-up, `k_warm..k_end` are measured.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rate: f64,
    t0_ns: u64,
    pub k_warm: u64,
    pub k_end: u64,
}

impl Plan {
    /// `cap` bounds the measured messages, `total` everything scheduled
    /// (e.g. the number of logins). Starts 100 ms from now.
    pub fn new(
        rate: f64,
        warmup: f64,
        duration: f64,
        cap: Option<u64>,
        total: Option<u64>,
    ) -> Result<Plan> {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be positive");
        }
        if !(warmup >= 0.0 && duration > 0.0 && warmup.is_finite() && duration.is_finite()) {
            bail!("--duration must be positive and --warmup not negative");
        }
        let k_warm = (warmup * rate).round() as u64;
        let mut n = (duration * rate).round().max(1.0) as u64;
        if let Some(c) = cap {
            n = n.min(c);
        }
        if let Some(t) = total {
            if t <= k_warm {
                bail!(
                    "the warm-up alone uses all {t} (rate {rate}/s × warmup {warmup} s): raise --connections or lower --warmup"
                );
            }
            n = n.min(t - k_warm);
        }
        if n == 0 {
            bail!("nothing to measure: --messages is 0");
        }
        let k_end = k_warm + n;
        if k_end > MAX_SCHEDULE {
            bail!(
                "{k_end} scheduled messages is more than this tool tracks ({MAX_SCHEDULE}); lower --rate or --duration, or set --messages"
            );
        }
        let t0_ns = now_ns() + 100_000_000;
        Ok(Plan {
            rate,
            t0_ns,
            k_warm,
            k_end,
        })
    }

    pub fn at_ns(&self, k: u64) -> u64 {
        self.t0_ns + (k as f64 * 1e9 / self.rate) as u64
    }

    pub fn at(&self, k: u64) -> Instant {
        base() + Duration::from_nanos(self.at_ns(k))
    }

    pub fn in_window(&self, k: u64) -> bool {
        (self.k_warm..self.k_end).contains(&k)
    }

    pub fn window_len(&self) -> u64 {
        self.k_end - self.k_warm
    }

    pub fn window_secs(&self) -> f64 {
        self.window_len() as f64 / self.rate
    }
}

/// A latency histogram in µs, split into locked shards.
pub struct Hists(Vec<Mutex<Histogram<u64>>>);

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static histogram bounds are valid")
}

impl Hists {
    pub fn new() -> Self {
        Hists((0..SHARDS).map(|_| Mutex::new(new_hist())).collect())
    }

    pub fn record(&self, shard: usize, us: u64) {
        self.0[shard % SHARDS].lock().saturating_record(us.max(1));
    }

    pub fn merged(&self) -> Histogram<u64> {
        let mut h = new_hist();
        for s in &self.0 {
            // Same bounds everywhere, so adding cannot fail.
            let _ = h.add(&*s.lock());
        }
        h
    }
}

const UNSENT: u8 = 0;
const ACKED: u8 = 2;
const FAILED: u8 = 3;

/// Shared counters of one run. Only messages inside the window count; the
/// per-message arrays let loss be computed exactly at the end.
pub struct Tracker {
    pub plan: Plan,
    /// Receipts each acknowledged message should produce.
    pub fanout: u32,
    state: Box<[AtomicU8]>,
    received: Box<[AtomicU32]>,
    /// Scheduled time → receipt at the other client.
    pub latency: Hists,
    /// Scheduled time → the server's answer to the sender (or a login, a query, a commit).
    pub ack: Hists,
    /// How late the generator's timer fired; part of every latency above.
    pub lag: Hists,
    pub inflight: AtomicU64,
    pub launched: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
    pub expected: AtomicU64,
    pub delivered: AtomicU64,
    pub dups: AtomicU64,
    pub closed: AtomicU64,
    /// When the last answer or receipt of a window message came, ns since [`base`].
    last_done_ns: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tracker {
    pub fn new(plan: Plan, fanout: u32) -> Arc<Tracker> {
        let n = plan.k_end as usize;
        Arc::new(Tracker {
            plan,
            fanout,
            state: (0..n).map(|_| AtomicU8::new(UNSENT)).collect(),
            received: (0..n).map(|_| AtomicU32::new(0)).collect(),
            latency: Hists::new(),
            ack: Hists::new(),
            lag: Hists::new(),
            inflight: AtomicU64::new(0),
            launched: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dups: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            last_done_ns: AtomicU64::new(0),
            first_error: Mutex::new(None),
        })
    }

    /// Called when message `k` is handed to the client, `late_ns` after its due time.
    pub fn launch(&self, k: u64, late_ns: u64) {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.launched.fetch_add(1, Ordering::Relaxed);
        if self.plan.in_window(k) {
            self.lag.record(k as usize, late_ns / 1000);
        }
    }

    /// The server accepted message `k`; `with_latency` is false where there is no real answer (the relay).
    pub fn acked(&self, k: u64, with_latency: bool) {
        self.state[k as usize].store(ACKED, Ordering::Relaxed);
        if self.plan.in_window(k) {
            self.done_now();
            self.acked.fetch_add(1, Ordering::Relaxed);
            self.expected
                .fetch_add(u64::from(self.fanout), Ordering::Relaxed);
            if with_latency {
                let us = now_ns().saturating_sub(self.plan.at_ns(k)) / 1000;
                self.ack.record(k as usize, us);
            }
        }
        self.inflight.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn failed(&self, k: u64, err: impl std::fmt::Display) {
        self.state[k as usize].store(FAILED, Ordering::Relaxed);
        if self.plan.in_window(k) {
            self.done_now();
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let mut first = self.first_error.lock();
        if first.is_none() {
            *first = Some(err.to_string());
        }
        drop(first);
        self.inflight.fetch_sub(1, Ordering::Relaxed);
    }

    fn done_now(&self) {
        self.last_done_ns.fetch_max(now_ns(), Ordering::Relaxed);
    }

    /// Seconds from the window's first due time to its last answer or
    /// receipt; longer than the window when the server fell behind.
    pub fn span_secs(&self) -> f64 {
        let start = self.plan.at_ns(self.plan.k_warm);
        let end = self.last_done_ns.load(Ordering::Relaxed);
        (end.saturating_sub(start) as f64 / 1e9).max(self.plan.window_secs())
    }

    pub fn note_error(&self, err: impl std::fmt::Display) {
        let mut first = self.first_error.lock();
        if first.is_none() {
            *first = Some(err.to_string());
        }
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().clone()
    }

    /// Everything sent has been answered and every expected receipt is in.
    pub fn drained(&self) -> bool {
        self.inflight.load(Ordering::Relaxed) == 0
            && self.delivered.load(Ordering::Relaxed) >= self.expected.load(Ordering::Relaxed)
    }

    /// Receipts missing for acknowledged window messages.
    pub fn lost(&self) -> u64 {
        (self.plan.k_warm..self.plan.k_end)
            .filter(|&k| self.state[k as usize].load(Ordering::Relaxed) == ACKED)
            .map(|k| {
                u64::from(
                    self.fanout
                        .saturating_sub(self.received[k as usize].load(Ordering::Relaxed)),
                )
            })
            .sum()
    }

    pub fn receiver(self: &Arc<Self>, shard: usize) -> Receiver {
        Receiver {
            seen: HashSet::new(),
            shard,
            t: self.clone(),
        }
    }

    /// Waits, at most `limit`, for answers and receipts still on their way.
    pub async fn drain(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.drained() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One receiving client's view: it detects duplicates by message number,
/// which maps one-to-one to the server's msg_id.
pub struct Receiver {
    seen: HashSet<u64>,
    shard: usize,
    t: Arc<Tracker>,
}

impl Receiver {
    pub fn on_payload(&mut self, p: &[u8]) {
        let Some((sched, k)) = parse(p) else { return };
        let t = &*self.t;
        if k >= t.plan.k_end {
            return;
        }
        let window = t.plan.in_window(k);
        if !self.seen.insert(k) {
            if window {
                t.dups.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        t.received[k as usize].fetch_add(1, Ordering::Relaxed);
        if window {
            t.done_now();
            t.delivered.fetch_add(1, Ordering::Relaxed);
            t.latency
                .record(self.shard, now_ns().saturating_sub(sched) / 1000);
        }
    }
}

/// Runs the schedule: waits for each due time and calls `launch(k, due_ns)`,
/// which must not block. `on_start` is called just before the first measured
/// message, for resource samples; callers take the closing sample once the
/// window's work is drained, so CPU covers all of it even when the server lags.
///
/// Runs on the calling thread with std sleeps, whose slack is tens of µs,
/// where tokio's timer would add up to a millisecond to every latency. Call
/// it from `block_on`'s thread (inside the runtime context, so `launch` may
/// spawn tasks), never from a runtime worker.
pub fn run_schedule(
    t: &Tracker,
    progress: &Progress,
    mut on_start: impl FnMut(),
    mut launch: impl FnMut(u64, u64),
) {
    crate::sys::fine_timer_slack();
    let plan = &t.plan;
    for k in 0..plan.k_end {
        if k == plan.k_warm {
            on_start();
            progress.phase("measuring");
        }
        let due = plan.at(k);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let due_ns = plan.at_ns(k);
        t.launch(k, now_ns().saturating_sub(due_ns));
        launch(k, due_ns);
        if k % 64 == 0 {
            progress.set(k, plan.k_end);
        }
    }
    progress.set(plan.k_end, plan.k_end);
}

/// Progress on stderr; hidden when stderr is not a terminal or with `--quiet`.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        use std::io::IsTerminal;
        let target = if quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr_with_hz(5)
        };
        let bar = ProgressBar::with_draw_target(Some(1), target);
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {msg:12} [{bar:30}] {pos}/{len} {elapsed}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress { bar }
    }

    pub fn phase(&self, msg: &str) {
        self.bar.set_message(msg.to_owned());
    }

    pub fn set(&self, pos: u64, len: u64) {
        self.bar.set_length(len.max(1));
        self.bar.set_position(pos);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let p = payload(123, 7, 100);
        assert_eq!(p.len(), 100);
        assert_eq!(parse(&p), Some((123, 7)));
        assert_eq!(payload(1, 2, 3).len(), HEADER);
        assert_eq!(parse(&[0; 4]), None);
    }

    #[test]
    fn plan_window() {
        let p = Plan::new(100.0, 1.0, 2.0, None, None).unwrap();
        assert_eq!((p.k_warm, p.k_end), (100, 300));
        assert!((p.window_secs() - 2.0).abs() < 1e-9);
        let p = Plan::new(100.0, 1.0, 2.0, Some(50), None).unwrap();
        assert_eq!(p.k_end, 150);
        let p = Plan::new(100.0, 1.0, 2.0, None, Some(120)).unwrap();
        assert_eq!(p.k_end, 120);
        assert!(Plan::new(100.0, 1.0, 2.0, None, Some(100)).is_err());
        assert_eq!(p.at_ns(100) - p.at_ns(0), 1_000_000_000);
    }

    #[test]
    fn loss_and_dups() {
        let t = Tracker::new(Plan::new(10.0, 0.0, 1.0, None, None).unwrap(), 1);
        for k in 0..10 {
            t.launch(k, 0);
            t.acked(k, true);
        }
        let mut r = t.receiver(0);
        for k in 0..9 {
            r.on_payload(&payload(t.plan.at_ns(k), k, 16));
        }
        r.on_payload(&payload(t.plan.at_ns(3), 3, 16));
        assert_eq!(t.lost(), 1);
        assert_eq!(t.dups.load(Ordering::Relaxed), 1);
        assert_eq!(t.delivered.load(Ordering::Relaxed), 9);
        assert!(!t.drained());
    }
}
