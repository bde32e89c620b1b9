//! Process-wide counters for `GET /metrics` (Prometheus text format).
//!
//! A global rather than a field of the hub so that the hot paths (sessions,
//! the commit thread) count with one relaxed atomic add and no plumbing.
//! Gauges that some other part already knows (connections, outbox depth,
//! hook stats) are read at scrape time by the admin API instead of being
//! mirrored here.
//!
//! prometheus-client owns the exposition: the process's metrics sit in one
//! [`Registry`] built once, the scrape-time values are [`Collector`]s of a
//! registry built per scrape, and its Prometheus text encoder (format 0.0.4,
//! what every Prometheus scrapes) writes both. The one hand-written piece is
//! [`Histogram`]: the crate's own takes a mutex on every `observe`.

use std::collections::HashSet;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::util::now_ms;

/// The `Content-Type` of [`Exposition::finish`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds of the latency buckets, µs (Prometheus' `le`, in seconds
/// when rendered): from 100 µs, a group commit without fsync, to 10 s.
const BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A Prometheus histogram with fixed buckets: lock-free to record (two
/// relaxed adds), encoded by prometheus-client. The crate's `Histogram`
/// locks a mutex per observation, which the scrape contends, and sums in
/// `f64`; the sum here is exact µs. `cargo bench --bench hot_paths --
/// metrics` measured 15 ns an observation here against 47 ns for the
/// crate's.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    /// Per bucket, not cumulative; the last one is `+Inf`.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram(Arc::new(HistogramCells {
            buckets: [const { AtomicU64::new(0) }; BOUNDS_US.len() + 1],
            sum_us: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|b| *b < us);
        // `i` is at most BOUNDS_US.len(), the +Inf bucket.
        if let Some(bucket) = self.0.buckets.get(i) {
            bucket.fetch_add(1, Relaxed);
        }
        self.0.sum_us.fetch_add(us, Relaxed);
    }

    /// Observations so far: the buckets' total, so `_count` always equals
    /// the `+Inf` bucket.
    pub fn count(&self) -> u64 {
        self.0.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let mut buckets = [(f64::INFINITY, 0); BOUNDS_US.len() + 1];
        let mut count = 0;
        for (i, (slot, cell)) in buckets.iter_mut().zip(&self.0.buckets).enumerate() {
            let n = cell.load(Relaxed);
            count += n;
            if let Some(us) = BOUNDS_US.get(i) {
                slot.0 = *us as f64 / 1e6;
            }
            slot.1 = n;
        }
        let sum = self.0.sum_us.load(Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Clients seen logging in on one UTC day, as hashes: LeanCloud's
/// `user_count_today` without keeping every id as a string. One gauge with
/// no labels, so the client ids never reach the exposition.
#[derive(Clone, Debug, Default)]
struct UsersToday(Arc<Mutex<Option<Today>>>);

#[derive(Debug)]
struct Today {
    day: u64,
    seen: HashSet<u64>,
}

const DAY_MS: u64 = 24 * 3600 * 1000;

impl UsersToday {
    fn see(&self, client: &str) {
        let mut h = DefaultHasher::new();
        client.hash(&mut h);
        let day = now_ms() / DAY_MS;
        let mut today = self.0.lock();
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

    fn count(&self) -> u64 {
        let day = now_ms() / DAY_MS;
        match &*self.0.lock() {
            Some(t) if t.day == day => t.seen.len() as u64,
            _ => 0,
        }
    }
}

impl EncodeMetric for UsersToday {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        encoder.encode_gauge(&self.count())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

pub struct Metrics {
    logins: Counter,
    logins_refused: Counter,
    messages_in: Counter,
    messages_out: Counter,
    /// From a stored message's timestamp (its commit) to its hand-off to
    /// the receivers' connections.
    pub delivery: Histogram,
    /// One group commit's write plus durable flush.
    pub flush: Histogram,
    today: UsersToday,
    webhook_posts: Counter,
    webhook_failures: Counter,
    webhook_timeouts: Counter,
    webhook_delivered: Counter,
    webhook_given_up: Counter,
    broadcasts: Counter,
    broadcast_deliveries: Counter,
    broadcasts_swept: Counter,
    /// One broadcast's online fan-out, first client to last.
    pub broadcast_fan_out: Histogram,
    backlog_paused: Counter,
    backlog_closed: Counter,
    /// Every metric above, registered once; the fields hold the same atomics.
    registry: Registry,
}

/// The counters of this process.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// A counter registered under `name`, which the encoder gives its `_total`.
/// The registry ends `help` with a period.
fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    registry.register(name, help, c.clone());
    c
}

fn histogram(registry: &mut Registry, name: &str, help: &str) -> Histogram {
    let h = Histogram::new();
    registry.register(name, help, h.clone());
    h
}

impl Metrics {
    fn new() -> Metrics {
        let r = &mut Registry::default();
        // Registration order is exposition order.
        let backlog_paused = counter(
            r,
            "tidings_backlog_paused",
            "Times a connection's requests stopped being read because its backlog passed limits.max_backlog_bytes",
        );
        let backlog_closed = counter(
            r,
            "tidings_backlog_closed",
            "Connections closed with 4201 because their backlog stayed over the bound",
        );
        let logins = counter(
            r,
            "tidings_logins",
            "Successful logins, every device counted",
        );
        let logins_refused = counter(r, "tidings_logins_refused", "Logins answered with an error");
        let today = UsersToday::default();
        r.register(
            "tidings_users_today",
            "Distinct clients that logged in since 00:00 UTC",
            today.clone(),
        );
        let messages_in = counter(
            r,
            "tidings_messages_in",
            "Messages accepted into conversations, stored or transient",
        );
        let messages_out = counter(
            r,
            "tidings_messages_out",
            "Messages handed to devices: live, synced at login or redelivered",
        );
        let delivery = histogram(
            r,
            "tidings_delivery_latency_seconds",
            "From a stored message's commit to its hand-off to the receivers' connections",
        );
        let flush = histogram(
            r,
            "tidings_store_flush_seconds",
            "One group commit: the log write and its durable flush",
        );
        let webhook_posts = counter(
            r,
            "tidings_sys_webhook_posts",
            "POSTs of _SysMessage batches to the system webhook, retries included",
        );
        let webhook_failures = counter(
            r,
            "tidings_sys_webhook_failures",
            "Failed system webhook POSTs, timeouts included",
        );
        let webhook_timeouts = counter(
            r,
            "tidings_sys_webhook_timeouts",
            "System webhook POSTs that hit system.webhook_timeout_ms",
        );
        let webhook_delivered = counter(
            r,
            "tidings_sys_webhook_delivered",
            "Clients' messages to system conversations the webhook took",
        );
        let webhook_given_up = counter(
            r,
            "tidings_sys_webhook_given_up",
            "Clients' messages to system conversations given up on after every retry failed",
        );
        let broadcasts = counter(
            r,
            "tidings_broadcasts",
            "Broadcasts sent through the admin API, stored or transient",
        );
        let broadcast_deliveries = counter(
            r,
            "tidings_broadcast_deliveries",
            "Broadcast messages handed to clients, live or at login",
        );
        let broadcasts_swept = counter(
            r,
            "tidings_broadcasts_swept",
            "Expired broadcast records removed by the background sweep",
        );
        let broadcast_fan_out = histogram(
            r,
            "tidings_broadcast_fanout_seconds",
            "One broadcast's online fan-out, from the first client to the last",
        );
        Metrics {
            logins,
            logins_refused,
            messages_in,
            messages_out,
            delivery,
            flush,
            today,
            webhook_posts,
            webhook_failures,
            webhook_timeouts,
            webhook_delivered,
            webhook_given_up,
            broadcasts,
            broadcast_deliveries,
            broadcasts_swept,
            broadcast_fan_out,
            backlog_paused,
            backlog_closed,
            registry: std::mem::take(r),
        }
    }

    /// A successful login of `client` (any device).
    pub fn login(&self, client: &str) {
        self.logins.inc();
        self.today.see(client);
    }

    /// A login answered with an error (bad signature, ids, app id).
    pub fn login_refused(&self) {
        self.logins_refused.inc();
    }

    /// Messages accepted into conversations (stored or transient).
    pub fn messages_in(&self, n: u64) {
        self.messages_in.inc_by(n);
    }

    /// Messages handed to devices (live, synced or redelivered).
    pub fn messages_out(&self, n: u64) {
        self.messages_out.inc_by(n);
    }

    /// A stored message committed at `timestamp_ms` reached its fan-out.
    pub fn delivered(&self, timestamp_ms: u64) {
        let ms = now_ms().saturating_sub(timestamp_ms);
        self.delivery.observe(Duration::from_millis(ms));
    }

    /// One POST of a `_SysMessage` batch to the webhook, and how it ended.
    pub fn webhook_post(&self, ok: bool, timed_out: bool) {
        self.webhook_posts.inc();
        if !ok {
            self.webhook_failures.inc();
        }
        if timed_out {
            self.webhook_timeouts.inc();
        }
    }

    /// Messages the webhook took (`delivered`) or that were given up on
    /// after every retry failed.
    pub fn webhook_done(&self, delivered: u64, given_up: u64) {
        self.webhook_delivered.inc_by(delivered);
        self.webhook_given_up.inc_by(given_up);
    }

    /// A broadcast sent (stored or transient).
    pub fn broadcast(&self) {
        self.broadcasts.inc();
    }

    /// Broadcast messages handed to clients, live or at login.
    pub fn broadcast_delivered(&self, n: u64) {
        self.broadcast_deliveries.inc_by(n);
    }

    /// Expired broadcast records removed by the sweep.
    pub fn broadcasts_swept(&self, n: u64) {
        self.broadcasts_swept.inc_by(n);
    }

    /// A connection's requests stopped being read: its backlog passed
    /// `limits.max_backlog_bytes`.
    pub fn backlog_paused(&self) {
        self.backlog_paused.inc();
    }

    pub fn backlog_pauses(&self) -> u64 {
        self.backlog_paused.get()
    }

    /// A connection closed with 4201 for a backlog that stayed over the bound.
    pub fn backlog_closed(&self) {
        self.backlog_closed.inc();
    }

    pub fn logins(&self) -> u64 {
        self.logins.get()
    }

    /// Distinct clients that logged in since 00:00 UTC.
    pub fn users_today(&self) -> u64 {
        self.today.count()
    }

    /// Appends this process's counters to `out`.
    pub fn render(&self, out: &mut Exposition) {
        // Writing to a String cannot fail, and these metrics never refuse.
        let _ = prometheus_text::encode(&mut out.process, &self.registry);
    }
}

/// One scrape's Prometheus text: values that other parts know at scrape
/// time, then [`Metrics::render`]'s.
#[derive(Default)]
pub struct Exposition {
    scrape: Registry,
    process: String,
}

impl Exposition {
    /// One unlabeled counter; `name` is the exposed one, ending in `_total`.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.push(
            name,
            help,
            MetricType::Counter,
            vec![(Vec::new(), Value::Int(value))],
        );
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.push(
            name,
            help,
            MetricType::Gauge,
            vec![(Vec::new(), Value::Int(value))],
        );
    }

    /// One metric with a sample per label set, e.g. per hook. `kind` is
    /// `counter` or `gauge`; anything else is exposed as `untyped`.
    pub fn labeled(
        &mut self,
        name: &str,
        help: &str,
        kind: &str,
        samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, f64)>,
    ) {
        let kind = match kind {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            _ => MetricType::Unknown,
        };
        let samples = samples
            .into_iter()
            .map(|(labels, v)| (labels, Value::from(v)))
            .collect();
        self.push(name, help, kind, samples);
    }

    fn push(&mut self, name: &str, help: &str, kind: MetricType, samples: Vec<Sample>) {
        // The encoder appends `_total` to a counter's name itself.
        let name = match kind {
            MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        self.scrape.register_collector(Box::new(Family {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            samples,
        }));
    }

    pub fn finish(self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail, and `Family` never refuses.
        let _ = prometheus_text::encode(&mut text, &self.scrape);
        text.push_str(&self.process);
        text
    }
}

type Sample = (Vec<(&'static str, String)>, Value);

/// A sample's value. Whole numbers print as integers (`1`, not `1.0`), as
/// this exposition always has.
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        // Below 2^53 every whole f64 is exactly a u64.
        if v.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&v) {
            Value::Int(v as u64)
        } else {
            Value::Float(v)
        }
    }
}

/// One scrape-time metric: a collector, so that the help is written as
/// given and scrape order is call order.
#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: MetricType,
    samples: Vec<Sample>,
}

impl Collector for Family {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut metric = encoder.encode_descriptor(&self.name, &self.help, None, self.kind)?;
        for (labels, value) in &self.samples {
            let mut sample = metric.encode_family(labels)?;
            match (self.kind, *value) {
                (MetricType::Counter, Value::Int(v)) => {
                    sample.encode_counter::<NoLabelSet, _, u64>(&v, None)?
                }
                (MetricType::Counter, Value::Float(v)) => {
                    sample.encode_counter::<NoLabelSet, _, u64>(&v, None)?
                }
                (_, Value::Int(v)) => sample.encode_gauge(&v)?,
                (_, Value::Float(v)) => sample.encode_gauge(&v)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(name: &str, h: &Histogram) -> String {
        let mut r = Registry::default();
        r.register(name, "test", h.clone());
        let mut text = String::new();
        prometheus_text::encode(&mut text, &r).unwrap();
        text
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.count(), 4);
        let text = encoded("x_seconds", &h);
        assert!(text.contains("# TYPE x_seconds histogram\n"), "{text}");
        assert!(
            text.contains("x_seconds_bucket{le=\"0.0001\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{le=\"0.00025\"} 2\n"),
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
        assert_eq!(text.matches("le=\"+Inf\"").count(), 1, "{text}");
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

    /// The names, types and help lines scrapers and dashboards already use:
    /// counters keep their `_total` on the TYPE line (format 0.0.4).
    #[test]
    fn process_metrics_keep_their_exposition() {
        let m = Metrics::new();
        m.login("Tom");
        m.messages_in(3);
        m.flush.observe(Duration::from_millis(1));
        let mut out = Exposition::default();
        m.render(&mut out);
        let text = out.finish();
        for line in [
            "# HELP tidings_logins_total Successful logins, every device counted.\n",
            "# TYPE tidings_logins_total counter\ntidings_logins_total 1\n",
            "# TYPE tidings_users_today gauge\ntidings_users_today 1\n",
            "# TYPE tidings_messages_in_total counter\ntidings_messages_in_total 3\n",
            "# TYPE tidings_store_flush_seconds histogram\n",
            "tidings_store_flush_seconds_bucket{le=\"0.001\"} 1\n",
            "tidings_store_flush_seconds_count 1\n",
            "# TYPE tidings_broadcast_fanout_seconds histogram\n",
        ] {
            assert!(text.contains(line), "{line:?} missing in\n{text}");
        }
    }

    #[test]
    fn scrape_values_keep_order_names_and_integers() {
        let mut out = Exposition::default();
        out.gauge("b_gauge", "A gauge.", 7);
        out.counter("a_total", "A counter.", 2);
        out.labeled(
            "q_seconds",
            "Quantiles.",
            "gauge",
            [(vec![("quantile", "0.5".to_owned())], 0.25)],
        );
        assert_eq!(
            out.finish(),
            "# HELP b_gauge A gauge.\n# TYPE b_gauge gauge\nb_gauge 7\n\
             # HELP a_total A counter.\n# TYPE a_total counter\na_total 2\n\
             # HELP q_seconds Quantiles.\n# TYPE q_seconds gauge\nq_seconds{quantile=\"0.5\"} 0.25\n"
        );
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
