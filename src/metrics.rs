//! Process-wide counters for `GET /metrics` (Prometheus text format).
//!
//! A global rather than a field of the hub so that the hot paths (sessions,
//! the commit thread) count with one relaxed atomic add and no plumbing.
//! Gauges that some other part already knows (connections, outbox depth,
//! hook stats) are read at scrape time by the admin API instead of being
//! mirrored here.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;

use crate::util::now_ms;

/// Upper bounds of the latency buckets, µs (Prometheus' `le`, in seconds
/// when rendered): from 100 µs, a group commit without fsync, to 10 s.
const BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A Prometheus histogram with fixed buckets: lock-free to record.
pub struct Histogram {
    /// Per bucket, not cumulative; the last one is `+Inf`.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BOUNDS_US.len() + 1],
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|b| *b < us);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut Exposition, name: &str, help: &str) {
        out.header(name, help, "histogram");
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Relaxed);
            let le = BOUNDS_US
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |us| seconds(*us));
            let _ = writeln!(out.0, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out.0, "{name}_sum {}", seconds(self.sum_us.load(Relaxed)));
        let _ = writeln!(out.0, "{name}_count {}", self.count.load(Relaxed));
    }
}

fn seconds(us: u64) -> String {
    format!("{}", us as f64 / 1e6)
}

/// Clients seen logging in on one UTC day, as hashes: LeanCloud's
/// `user_count_today` without keeping every id as a string.
struct Today {
    day: u64,
    seen: HashSet<u64>,
}

pub struct Metrics {
    logins: AtomicU64,
    logins_refused: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    /// From a stored message's timestamp (its commit) to its hand-off to
    /// the receivers' connections.
    pub delivery: Histogram,
    /// One group commit's write plus durable flush.
    pub flush: Histogram,
    today: Mutex<Option<Today>>,
    webhook_posts: AtomicU64,
    webhook_failures: AtomicU64,
    webhook_timeouts: AtomicU64,
    webhook_delivered: AtomicU64,
    webhook_given_up: AtomicU64,
    broadcasts: AtomicU64,
    broadcast_deliveries: AtomicU64,
    broadcasts_swept: AtomicU64,
    /// One broadcast's online fan-out, first client to last.
    pub broadcast_fan_out: Histogram,
    backlog_paused: AtomicU64,
    backlog_closed: AtomicU64,
}

/// The counters of this process.
pub static METRICS: Metrics = Metrics::new();

const DAY_MS: u64 = 24 * 3600 * 1000;

impl Metrics {
    const fn new() -> Metrics {
        Metrics {
            logins: AtomicU64::new(0),
            logins_refused: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            delivery: Histogram::new(),
            flush: Histogram::new(),
            today: Mutex::new(None),
            webhook_posts: AtomicU64::new(0),
            webhook_failures: AtomicU64::new(0),
            webhook_timeouts: AtomicU64::new(0),
            webhook_delivered: AtomicU64::new(0),
            webhook_given_up: AtomicU64::new(0),
            broadcasts: AtomicU64::new(0),
            broadcast_deliveries: AtomicU64::new(0),
            broadcasts_swept: AtomicU64::new(0),
            broadcast_fan_out: Histogram::new(),
            backlog_paused: AtomicU64::new(0),
            backlog_closed: AtomicU64::new(0),
        }
    }

    /// A successful login of `client` (any device).
    pub fn login(&self, client: &str) {
        self.logins.fetch_add(1, Relaxed);
        let mut h = DefaultHasher::new();
        client.hash(&mut h);
        let day = now_ms() / DAY_MS;
        let mut today = self.today.lock();
        let t = today.get_or_insert_with(|| Today {
            day,
            seen: HashSet::new(),
        });
        if t.day != day {
            *t = Today {
                day,
                seen: HashSet::new(),
            };
        }
        t.seen.insert(h.finish());
    }

    /// A login answered with an error (bad signature, ids, app id).
    pub fn login_refused(&self) {
        self.logins_refused.fetch_add(1, Relaxed);
    }

    /// Messages accepted into conversations (stored or transient).
    pub fn messages_in(&self, n: u64) {
        self.messages_in.fetch_add(n, Relaxed);
    }

    /// Messages handed to devices (live, synced or redelivered).
    pub fn messages_out(&self, n: u64) {
        self.messages_out.fetch_add(n, Relaxed);
    }

    /// A stored message committed at `timestamp_ms` reached its fan-out.
    pub fn delivered(&self, timestamp_ms: u64) {
        let ms = now_ms().saturating_sub(timestamp_ms);
        self.delivery.observe(Duration::from_millis(ms));
    }

    /// One POST of a `_SysMessage` batch to the webhook, and how it ended.
    pub fn webhook_post(&self, ok: bool, timed_out: bool) {
        self.webhook_posts.fetch_add(1, Relaxed);
        if !ok {
            self.webhook_failures.fetch_add(1, Relaxed);
        }
        if timed_out {
            self.webhook_timeouts.fetch_add(1, Relaxed);
        }
    }

    /// Messages the webhook took (`delivered`) or that were given up on
    /// after every retry failed.
    pub fn webhook_done(&self, delivered: u64, given_up: u64) {
        self.webhook_delivered.fetch_add(delivered, Relaxed);
        self.webhook_given_up.fetch_add(given_up, Relaxed);
    }

    /// A broadcast sent (stored or transient).
    pub fn broadcast(&self) {
        self.broadcasts.fetch_add(1, Relaxed);
    }

    /// Broadcast messages handed to clients, live or at login.
    pub fn broadcast_delivered(&self, n: u64) {
        self.broadcast_deliveries.fetch_add(n, Relaxed);
    }

    /// Expired broadcast records removed by the sweep.
    pub fn broadcasts_swept(&self, n: u64) {
        self.broadcasts_swept.fetch_add(n, Relaxed);
    }

    /// A connection's requests stopped being read: its backlog passed
    /// `limits.max_backlog_bytes`.
    pub fn backlog_paused(&self) {
        self.backlog_paused.fetch_add(1, Relaxed);
    }

    pub fn backlog_pauses(&self) -> u64 {
        self.backlog_paused.load(Relaxed)
    }

    /// A connection closed with 4201 for a backlog that stayed over the bound.
    pub fn backlog_closed(&self) {
        self.backlog_closed.fetch_add(1, Relaxed);
    }

    pub fn logins(&self) -> u64 {
        self.logins.load(Relaxed)
    }

    /// Distinct clients that logged in since 00:00 UTC.
    pub fn users_today(&self) -> u64 {
        let day = now_ms() / DAY_MS;
        match &*self.today.lock() {
            Some(t) if t.day == day => t.seen.len() as u64,
            _ => 0,
        }
    }

    /// Appends this process's counters to `out`.
    pub fn render(&self, out: &mut Exposition) {
        out.counter(
            "tidings_backlog_paused_total",
            "Times a connection's requests stopped being read because its backlog passed limits.max_backlog_bytes.",
            self.backlog_pauses(),
        );
        out.counter(
            "tidings_backlog_closed_total",
            "Connections closed with 4201 because their backlog stayed over the bound.",
            self.backlog_closed.load(Relaxed),
        );
        out.counter(
            "tidings_logins_total",
            "Successful logins, every device counted.",
            self.logins(),
        );
        out.counter(
            "tidings_logins_refused_total",
            "Logins answered with an error.",
            self.logins_refused.load(Relaxed),
        );
        out.gauge(
            "tidings_users_today",
            "Distinct clients that logged in since 00:00 UTC.",
            self.users_today(),
        );
        out.counter(
            "tidings_messages_in_total",
            "Messages accepted into conversations, stored or transient.",
            self.messages_in.load(Relaxed),
        );
        out.counter(
            "tidings_messages_out_total",
            "Messages handed to devices: live, synced at login or redelivered.",
            self.messages_out.load(Relaxed),
        );
        self.delivery.render(
            out,
            "tidings_delivery_latency_seconds",
            "From a stored message's commit to its hand-off to the receivers' connections.",
        );
        self.flush.render(
            out,
            "tidings_store_flush_seconds",
            "One group commit: the log write and its durable flush.",
        );
        let counters = [
            (
                "tidings_sys_webhook_posts_total",
                "POSTs of _SysMessage batches to the system webhook, retries included.",
                &self.webhook_posts,
            ),
            (
                "tidings_sys_webhook_failures_total",
                "Failed system webhook POSTs, timeouts included.",
                &self.webhook_failures,
            ),
            (
                "tidings_sys_webhook_timeouts_total",
                "System webhook POSTs that hit system.webhook_timeout_ms.",
                &self.webhook_timeouts,
            ),
            (
                "tidings_sys_webhook_delivered_total",
                "Clients' messages to system conversations the webhook took.",
                &self.webhook_delivered,
            ),
            (
                "tidings_sys_webhook_given_up_total",
                "Clients' messages to system conversations given up on after every retry failed.",
                &self.webhook_given_up,
            ),
            (
                "tidings_broadcasts_total",
                "Broadcasts sent through the admin API, stored or transient.",
                &self.broadcasts,
            ),
            (
                "tidings_broadcast_deliveries_total",
                "Broadcast messages handed to clients, live or at login.",
                &self.broadcast_deliveries,
            ),
            (
                "tidings_broadcasts_swept_total",
                "Expired broadcast records removed by the background sweep.",
                &self.broadcasts_swept,
            ),
        ];
        for (name, help, value) in counters {
            out.counter(name, help, value.load(Relaxed));
        }
        self.broadcast_fan_out.render(
            out,
            "tidings_broadcast_fanout_seconds",
            "One broadcast's online fan-out, from the first client to the last.",
        );
    }
}

/// Prometheus text exposition (format 0.0.4), built up line by line.
#[derive(Default)]
pub struct Exposition(String);

impl Exposition {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "counter");
        let _ = writeln!(self.0, "{name} {value}");
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "gauge");
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// One metric with a sample per label set, e.g. per hook.
    pub fn labeled(
        &mut self,
        name: &str,
        help: &str,
        kind: &str,
        samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, f64)>,
    ) {
        self.header(name, help, kind);
        for (labels, value) in samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let _ = writeln!(self.0, "{name}{{{}}} {value}", labels.join(","));
        }
    }

    pub fn finish(self) -> String {
        self.0
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = Exposition::default();
        h.render(&mut out, "x_seconds", "test");
        let text = out.finish();
        assert!(text.contains("# TYPE x_seconds histogram\n"), "{text}");
        assert!(
            text.contains("x_seconds_bucket{le=\"0.0001\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{le=\"0.0025\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{le=\"0.005\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_bucket{le=\"10\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 4\n"), "{text}");
        assert!(text.contains("x_seconds_count 4\n"), "{text}");
        assert!(text.contains("x_seconds_sum 60.00315\n"), "{text}");
    }

    #[test]
    fn users_today_counts_distinct_clients() {
        let m = Metrics::new();
        m.login("Tom");
        m.login("Tom");
        m.login("Jerry");
        assert_eq!(m.logins(), 3);
        assert_eq!(m.users_today(), 2);
    }

    #[test]
    fn labels_are_escaped() {
        let mut out = Exposition::default();
        out.labeled(
            "h_total",
            "help",
            "counter",
            [(vec![("hook", "a\"b\\c".to_owned())], 2.0)],
        );
        assert!(
            out.finish().contains("h_total{hook=\"a\\\"b\\\\c\"} 2\n"),
            "escaped"
        );
    }
}
