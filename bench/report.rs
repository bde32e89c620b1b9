//! What a run measured, as a human summary on stdout and as JSON.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use crate::load::Tracker;
use crate::sys::{self, Sample};

/// One process's CPU and memory over the measured window.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub label: &'static str,
    /// Before any client connected: the baseline for memory per connection.
    pub before: Option<Sample>,
    pub start: Sample,
    pub end: Sample,
}

impl Usage {
    pub fn new(
        label: &'static str,
        before: Option<Sample>,
        start: Option<Sample>,
        end: Option<Sample>,
    ) -> Option<Usage> {
        Some(Usage {
            label,
            before,
            start: start?,
            end: end?,
        })
    }

    pub fn cpu_s(&self) -> f64 {
        (self.end.cpu_s - self.start.cpu_s).max(0.0)
    }

    pub fn wall_s(&self) -> f64 {
        self.end.at.duration_since(self.start.at).as_secs_f64()
    }

    /// Share of one core used in the window.
    pub fn core_share(&self) -> f64 {
        let w = self.wall_s();
        if w > 0.0 { self.cpu_s() / w } else { 0.0 }
    }

    pub fn rss_per_conn_kb(&self, conns: usize) -> Option<f64> {
        let before = self.before?;
        (conns > 0).then(|| (self.end.rss_kb as f64 - before.rss_kb as f64) / conns as f64)
    }
}

/// Samples of the server (if its pid is known) and of this process.
#[derive(Debug, Default, Clone, Copy)]
pub struct Samples {
    pub server: Option<Sample>,
    pub me: Option<Sample>,
}

impl Samples {
    pub fn take(server_pid: Option<u32>) -> Samples {
        Samples {
            server: server_pid.and_then(|p| sys::sample(Some(p))),
            me: sys::sample(None),
        }
    }
}

/// Everything one scenario measured.
#[derive(Debug, Default)]
pub struct Measured {
    pub scenario: String,
    /// What a unit of work is: "msg", "login", "query", "append", "conn".
    pub unit: &'static str,
    pub offered_rate: Option<f64>,
    pub window_s: f64,
    /// From the window's first due time to its last answer or receipt (≥ window_s).
    pub span_s: f64,
    pub scheduled: u64,
    /// Units the server accepted (sends answered, logins, queries, appends).
    pub ok: u64,
    pub failed: u64,
    /// Receipts per accepted message (0 where nothing is received).
    pub fanout: u32,
    pub delivered: Option<u64>,
    pub lost: u64,
    pub dup: u64,
    /// (what it measures, µs)
    pub latency: Option<(&'static str, Histogram<u64>)>,
    pub ack_latency: Option<(&'static str, Histogram<u64>)>,
    pub lag: Option<Histogram<u64>>,
    pub server: Option<Usage>,
    pub generator: Option<Usage>,
    pub connections: usize,
    /// Messages handed to the clients, warm-up included (message scenarios only).
    pub sent_total: u64,
    pub closed: u64,
    pub first_error: Option<String>,
    pub extra: Map<String, Value>,
    pub notes: Vec<String>,
}

impl Measured {
    /// The common figures of an open-loop run.
    pub fn from_tracker(scenario: &str, unit: &'static str, t: &Tracker) -> Measured {
        let delivered = t.delivered.load(Ordering::Relaxed);
        let mut notes = Vec::new();
        if !t.drained() {
            notes.push(format!(
                "not drained within --drain: {} unanswered, {} of {} receipts in",
                t.inflight.load(Ordering::Relaxed),
                delivered,
                t.expected.load(Ordering::Relaxed)
            ));
        }
        Measured {
            scenario: scenario.to_owned(),
            unit,
            offered_rate: Some(t.plan.rate),
            window_s: t.plan.window_secs(),
            span_s: t.span_secs(),
            scheduled: t.plan.window_len(),
            ok: t.acked.load(Ordering::Relaxed),
            failed: t.failed.load(Ordering::Relaxed),
            fanout: t.fanout,
            delivered: (t.fanout > 0).then_some(delivered),
            lost: if t.fanout > 0 { t.lost() } else { 0 },
            dup: t.dups.load(Ordering::Relaxed),
            lag: Some(t.lag.merged()),
            closed: t.closed.load(Ordering::Relaxed),
            first_error: t.first_error(),
            notes,
            ..Measured::default()
        }
    }

    /// What CPU is divided by: receipts where there are any, else accepted units.
    /// Seconds the window's work took: the window, or longer if the server fell behind.
    fn span(&self) -> f64 {
        self.span_s.max(self.window_s)
    }

    fn per_unit_count(&self) -> u64 {
        self.delivered.unwrap_or(self.ok)
    }

    /// Server CPU µs per delivered message (or login, query, append).
    pub fn server_us_per_unit(&self) -> Option<f64> {
        let s = self.server?;
        let n = self.per_unit_count();
        (n > 0).then(|| s.cpu_s() * 1e6 / n as f64)
    }
}

fn lat_json(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "mean_us": round1(h.mean()),
        "p50_us": h.value_at_quantile(0.50),
        "p90_us": h.value_at_quantile(0.90),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}

pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn usage_json(u: &Usage, per_unit: Option<f64>, conns: usize) -> Value {
    json!({
        "cpu_s": round3(u.cpu_s()),
        "wall_s": round3(u.wall_s()),
        "core_share": round3(u.core_share()),
        "cpu_us_per_unit": per_unit.map(round1),
        "rss_idle_kb": u.before.map(|b| b.rss_kb),
        "rss_start_kb": u.start.rss_kb,
        "rss_end_kb": u.end.rss_kb,
        "rss_per_conn_kb": u.rss_per_conn_kb(conns).map(round1),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn to_json(m: &Measured) -> Value {
    let n = m.per_unit_count();
    let gen_per_unit = m
        .generator
        .and_then(|g| (n > 0).then(|| g.cpu_s() * 1e6 / n as f64));
    let mut out = json!({
        "unit": m.unit,
        "offered_rate": m.offered_rate,
        "window_s": round3(m.window_s),
        "span_s": round3(m.span()),
        "scheduled": m.scheduled,
        "ok": m.ok,
        "failed": m.failed,
        "achieved_rate": round1(rate(m.ok, m.span())),
        "fanout": m.fanout,
        "delivered": m.delivered,
        "delivered_rate": m.delivered.map(|d| round1(rate(d, m.span()))),
        "lost": m.lost,
        "dup": m.dup,
        "connections": m.connections,
        "closed_during_run": m.closed,
        "latency": m.latency.as_ref().map(|(what, h)| {
            let mut v = lat_json(h);
            v["measures"] = json!(what);
            v
        }),
        "ack_latency": m.ack_latency.as_ref().map(|(what, h)| {
            let mut v = lat_json(h);
            v["measures"] = json!(what);
            v
        }),
        "send_lag": m.lag.as_ref().map(lat_json),
        "server": m.server.as_ref().map(|u| usage_json(u, m.server_us_per_unit(), m.connections)),
        "generator": m.generator.as_ref().map(|u| usage_json(u, gen_per_unit, m.connections)),
        "first_error": m.first_error,
        "notes": m.notes,
    });
    if m.fanout > 1
        && let Some(s) = m.server
        && m.ok > 0
    {
        out["server"]["cpu_us_per_sent"] = json!(round1(s.cpu_s() * 1e6 / m.ok as f64));
    }
    if let Value::Object(o) = &mut out {
        for (k, v) in &m.extra {
            o.insert(k.clone(), v.clone());
        }
    }
    out
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// µs as a short human figure.
pub fn fmt_us(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

fn fmt_kb(kb: f64) -> String {
    if kb.abs() < 1024.0 {
        format!("{kb:.1} KiB")
    } else {
        format!("{:.1} MiB", kb / 1024.0)
    }
}

fn lat_line(h: &Histogram<u64>) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        fmt_us(h.value_at_quantile(0.5)),
        fmt_us(h.value_at_quantile(0.9)),
        fmt_us(h.value_at_quantile(0.99)),
        fmt_us(h.value_at_quantile(0.999)),
        fmt_us(h.max())
    )
}

pub fn summary(m: &Measured, setup: &str) -> String {
    let mut s = String::new();
    let u = m.unit;
    let _ = write!(s, "{}: {setup}", m.scenario);
    if let Some(p) = sys::pinning().describe() {
        let _ = write!(s, "; pinned: {p}");
    }
    s.push('\n');
    let _ = write!(s, "  window      {:.1} s", m.window_s);
    if m.span() > m.window_s * 1.05 {
        let _ = write!(
            s,
            " (its work took {:.1} s: the rates below are over that)",
            m.span()
        );
    }
    s.push('\n');
    if let Some(r) = m.offered_rate {
        let _ = write!(
            s,
            "  rate        offered {r:.0} {u}/s, achieved {:.0} {u}/s",
            rate(m.ok, m.span())
        );
        if let Some(d) = m.delivered {
            let _ = write!(s, ", delivered {:.0} /s", rate(d, m.span()));
        }
        s.push('\n');
    }
    if m.unit != "conn" {
        let _ = write!(
            s,
            "  counts      {} scheduled, {} ok, {} failed",
            m.scheduled, m.ok, m.failed
        );
        if let Some(d) = m.delivered {
            let _ = write!(
                s,
                ", {d} delivered (fan-out {}), {} lost, {} dup",
                m.fanout, m.lost, m.dup
            );
        }
        s.push('\n');
    }
    if let Some((what, h)) = &m.latency
        && !h.is_empty()
    {
        let _ = writeln!(s, "  latency     {}   ({what})", lat_line(h));
    }
    if let Some((what, h)) = &m.ack_latency
        && !h.is_empty()
    {
        let _ = writeln!(s, "  answer      {}   ({what})", lat_line(h));
    }
    if let Some(h) = &m.lag
        && !h.is_empty()
    {
        let _ = writeln!(
            s,
            "  send lag    p50 {}  p99 {}  max {}   (generator timer lateness, inside the figures above)",
            fmt_us(h.value_at_quantile(0.5)),
            fmt_us(h.value_at_quantile(0.99)),
            fmt_us(h.max())
        );
    }
    let n = m.per_unit_count();
    let per = if m.delivered.is_some() {
        "msg delivered"
    } else {
        u
    };
    for usage in [m.server, m.generator].into_iter().flatten() {
        let _ = write!(
            s,
            "  {:<11} CPU {:.2} s = {:.0}% of a core",
            usage.label,
            usage.cpu_s(),
            usage.core_share() * 100.0
        );
        if n > 0 && m.unit != "conn" {
            let _ = write!(s, ", {:.1} µs/{per}", usage.cpu_s() * 1e6 / n as f64);
            if m.fanout > 1 && m.ok > 0 {
                let _ = write!(s, " ({:.1} µs/msg sent)", usage.cpu_s() * 1e6 / m.ok as f64);
            }
        }
        if m.unit == "conn" && m.connections > 0 && usage.wall_s() > 0.0 {
            let _ = write!(
                s,
                ", {:.2} µs/s per conn",
                usage.cpu_s() * 1e6 / m.connections as f64 / usage.wall_s()
            );
        }
        let _ = write!(s, "; RSS {}", fmt_kb(usage.end.rss_kb as f64));
        if let Some(b) = usage.before {
            let _ = write!(s, " (idle {})", fmt_kb(b.rss_kb as f64));
        }
        if let Some(per_conn) = usage.rss_per_conn_kb(m.connections) {
            let _ = write!(s, ", {}/conn", fmt_kb(per_conn));
        }
        s.push('\n');
    }
    if m.server.is_none() {
        let _ = writeln!(
            s,
            "  server      not sampled (give --server-pid for an existing server)"
        );
    }
    if m.closed > 0 {
        let _ = writeln!(
            s,
            "  closed      {} connections ended during the run",
            m.closed
        );
    }
    for (k, v) in &m.extra {
        match v {
            Value::String(text) => {
                let _ = writeln!(s, "  {k:<11} {text}");
            }
            other => {
                let _ = writeln!(s, "  {k:<11} {other}");
            }
        }
    }
    if let Some(e) = &m.first_error {
        let _ = writeln!(s, "  first error {e}");
    }
    for note in &m.notes {
        let _ = writeln!(s, "  note: {note}");
    }
    s
}

/// The whole JSON document: what ran, on what, with which parameters, and the results.
pub fn document(scenario: &str, params: Value, target: Value, results: Value) -> Value {
    let (secs, utc) = sys::timestamp();
    json!({
        "tool": "tidings-bench",
        "version": env!("CARGO_PKG_VERSION"),
        "scenario": scenario,
        "timestamp_unix": secs,
        "timestamp_utc": utc,
        "machine": {
            "cores": sys::cores(),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        },
        "params": params,
        "cpus": sys::pinning().to_json(),
        "target": target,
        "results": results,
    })
}

pub fn write_json(path: &Path, doc: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(doc)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// `--json` documents, in the order given.
pub fn read_docs(files: &[std::path::PathBuf]) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
        docs.push(v);
    }
    Ok(docs)
}

/// Side-by-side key figures of several `--json` files (used by compare-mosquitto.sh).
pub fn compare(files: &[std::path::PathBuf]) -> Result<String> {
    let docs = read_docs(files)?;
    type Row<'a> = (&'a str, &'a dyn Fn(&Value) -> String);
    let rows: [Row; 9] = [
        ("scenario", &|d| label(d)),
        ("offered /s", &|d| num(&d["results"]["offered_rate"], 0)),
        ("delivered /s", &|d| num(&d["results"]["delivered_rate"], 0)),
        ("lost", &|d| num(&d["results"]["lost"], 0)),
        ("p50", &|d| us(&d["results"]["latency"]["p50_us"])),
        ("p99", &|d| us(&d["results"]["latency"]["p99_us"])),
        ("p99.9", &|d| us(&d["results"]["latency"]["p999_us"])),
        ("server CPU µs/msg", &|d| {
            num(&d["results"]["server"]["cpu_us_per_unit"], 1)
        }),
        ("server RSS", &|d| {
            d["results"]["server"]["rss_end_kb"]
                .as_f64()
                .map(fmt_kb)
                .unwrap_or_else(|| "-".into())
        }),
    ];
    let mut out = String::new();
    for (name, f) in rows {
        let _ = write!(out, "{name:<20}");
        for d in &docs {
            let _ = write!(out, "{:>24}", f(d));
        }
        out.push('\n');
    }
    Ok(out)
}

/// The systems of [`table`], in column order, and the scenarios each ran.
const SYSTEMS: [(&str, &[&str]); 3] = [
    ("Tidings", &["direct", "room"]),
    ("relay", &["baseline"]),
    ("Mosquitto", &["mqtt", "mqtt-room"]),
];

/// A parameter of a `--json` document: `mqtt` nests the load's under `load`.
fn param<'a>(d: &'a Value, key: &str) -> &'a Value {
    match &d["params"][key] {
        Value::Null => &d["params"]["load"][key],
        v => v,
    }
}

/// One row of [`table`]: the load, as (0 one-to-one or 1 room, offered
/// rate, room members or pairs).
fn table_row(d: &Value) -> Option<(u8, u64, u64)> {
    let scenario = d["scenario"].as_str()?;
    let rate = d["results"]["offered_rate"].as_f64()?.round() as u64;
    match scenario {
        "direct" | "baseline" | "mqtt" => Some((0, rate, param(d, "pairs").as_u64()?)),
        "room" | "mqtt-room" => Some((1, rate, param(d, "room_members").as_u64()?)),
        _ => None,
    }
}

/// One Markdown table of `direct`, `baseline` and `mqtt` runs at several
/// rates, and `room` against `mqtt --room`: a row per load, and per system
/// the server's CPU per delivery, deliveries per second, p50 / p99 and RSS,
/// then the generator's share of a core in each run. Used by
/// compare-mosquitto.sh; other scenarios are left out.
pub fn table(docs: &[Value]) -> String {
    let mut rows: Vec<(u8, u64, u64)> = docs.iter().filter_map(table_row).collect();
    rows.sort_unstable();
    rows.dedup();
    let find = |row: (u8, u64, u64), sys: usize| {
        docs.iter().find(|d| {
            table_row(d) == Some(row)
                && d["scenario"]
                    .as_str()
                    .is_some_and(|s| SYSTEMS[sys].1.contains(&s))
        })
    };
    let mut out = String::new();
    // What the runs had in common, from the first run of each kind.
    let first = |names: &[&str]| {
        docs.iter()
            .find(|d| d["scenario"].as_str().is_some_and(|s| names.contains(&s)))
    };
    let mut setup = Vec::new();
    if let Some(d) = first(&["direct", "baseline", "mqtt"]) {
        setup.push(format!(
            "one-to-one: {} pairs, {} B payload",
            num(param(d, "pairs"), 0),
            num(param(d, "payload"), 0)
        ));
    }
    if let Some(d) = first(&["direct", "room"]) {
        setup.push(format!("Tidings fsync {}", d["target"]["fsync"]));
    }
    if let Some(d) = first(&["mqtt", "mqtt-room"]) {
        setup.push(format!(
            "Mosquitto QoS 1 over {}",
            d["target"]["transport"].as_str().unwrap_or("?")
        ));
    }
    if let Some(d) = docs.first() {
        let cpus = |k: &str| match d["cpus"][k].as_array() {
            Some(a) => {
                let v: Vec<usize> = a
                    .iter()
                    .filter_map(|c| c.as_u64())
                    .map(|c| c as usize)
                    .collect();
                format!("{k} on CPU {}", sys::fmt_cpu_list(&v))
            }
            None => format!("{k} not pinned"),
        };
        setup.push(format!("{}, {}", cpus("server"), cpus("generator")));
    }
    if !setup.is_empty() {
        let _ = writeln!(out, "{}\n", setup.join("; "));
    }
    out.push_str("| load |");
    for (name, _) in SYSTEMS {
        let _ = write!(
            out,
            " {name} µs/msg | {name} msgs/s | {name} p50 / p99 | {name} RSS |"
        );
    }
    out.push_str(" generator CPU (T / r / M) |\n|---|");
    for _ in SYSTEMS {
        out.push_str("--:|--:|--:|--:|");
    }
    out.push_str("--:|\n");
    for row in rows {
        let (kind, rate, n) = row;
        if kind == 0 {
            let _ = write!(out, "| 1:1 {rate}/s |");
        } else {
            let _ = write!(out, "| room {n} × {rate}/s, per delivery |");
        }
        let mut gens = Vec::new();
        for sys in 0..SYSTEMS.len() {
            let Some(d) = find(row, sys) else {
                out.push_str(" - | - | - | - |");
                gens.push("-".to_owned());
                continue;
            };
            let r = &d["results"];
            let mut delivered = num(&r["delivered_rate"], 0);
            let (lost, failed) = (
                r["lost"].as_u64().unwrap_or(0),
                r["failed"].as_u64().unwrap_or(0),
            );
            if lost > 0 {
                let _ = write!(delivered, " ({lost} lost)");
            }
            if failed > 0 {
                let _ = write!(delivered, " ({failed} failed)");
            }
            let rss = r["server"]["rss_end_kb"]
                .as_f64()
                .map_or("-".into(), |k| format!("{:.0} MiB", k / 1024.0));
            let _ = write!(
                out,
                " {} | {delivered} | {} / {} | {rss} |",
                num(&r["server"]["cpu_us_per_unit"], 1),
                us(&r["latency"]["p50_us"]),
                us(&r["latency"]["p99_us"]),
            );
            gens.push(
                r["generator"]["core_share"]
                    .as_f64()
                    .map_or("-".into(), |c| format!("{:.0}%", c * 100.0)),
            );
        }
        let _ = writeln!(out, " {} |", gens.join(" / "));
    }
    out.push_str(
        "\nµs/msg: the server's CPU (user + system) per delivered message, in the room row per delivery; \
         msgs/s: deliveries per second (over the window, or longer if the server fell behind); \
         p50 / p99: scheduled send → receipt; RSS: the server's at the end; \
         generator CPU: the load generator's use of one core in the Tidings / relay / Mosquitto run. \
         A Tidings room message goes to members − 1 (not the sender), a topic message to every subscriber.\n",
    );
    out
}

fn label(d: &Value) -> String {
    let s = d["scenario"].as_str().unwrap_or("?");
    match s {
        "mqtt" | "mqtt-room" => {
            format!("{s} ({})", d["target"]["transport"].as_str().unwrap_or("?"))
        }
        "direct" => format!(
            "tidings (fsync {})",
            d["target"]["fsync"]
                .as_bool()
                .map(|b| b.to_string())
                .unwrap_or_else(|| "?".into())
        ),
        other => other.to_owned(),
    }
}

fn num(v: &Value, decimals: usize) -> String {
    v.as_f64()
        .map(|x| format!("{x:.decimals$}"))
        .unwrap_or_else(|| "-".into())
}

fn us(v: &Value) -> String {
    v.as_u64().map(fmt_us).unwrap_or_else(|| "-".into())
}

/// Repeated runs, grouped by offered rate and scenario: each figure's
/// value per run and median, and each scenario's medians as a multiple of
/// the first scenario's at that rate. For A B A B comparisons on a noisy
/// machine, where one run proves little (bench/compare-doors.sh).
pub fn medians(files: &[std::path::PathBuf]) -> Result<String> {
    // (rate, scenario) → runs, in the order given.
    let mut groups: Vec<((u64, String), Vec<Value>)> = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let d: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
        let rate = d["results"]["offered_rate"].as_f64().unwrap_or(0.0).round() as u64;
        let key = (rate, d["scenario"].as_str().unwrap_or("?").to_owned());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, runs)) => runs.push(d),
            None => groups.push((key, vec![d])),
        }
    }
    type Figure<'a> = (&'a str, &'a dyn Fn(&Value) -> Option<f64>);
    let figures: [Figure; 6] = [
        ("server CPU µs/msg", &|d| {
            d["results"]["server"]["cpu_us_per_unit"].as_f64()
        }),
        ("p50 ms", &|d| {
            d["results"]["latency"]["p50_us"].as_f64().map(|u| u / 1e3)
        }),
        ("p99 ms", &|d| {
            d["results"]["latency"]["p99_us"].as_f64().map(|u| u / 1e3)
        }),
        ("server RSS MiB", &|d| {
            d["results"]["server"]["rss_end_kb"]
                .as_f64()
                .map(|k| k / 1024.0)
        }),
        ("generator µs/msg", &|d| {
            d["results"]["generator"]["cpu_us_per_unit"].as_f64()
        }),
        ("lost + dup", &|d| {
            Some(d["results"]["lost"].as_f64()? + d["results"]["dup"].as_f64()?)
        }),
    ];
    let mut rates: Vec<u64> = groups.iter().map(|((r, _), _)| *r).collect();
    rates.dedup();
    let mut out = String::new();
    for rate in rates {
        let here: Vec<&(_, Vec<Value>)> = groups.iter().filter(|((r, _), _)| *r == rate).collect();
        let _ = writeln!(out, "offered {rate}/s");
        for (name, f) in &figures {
            let mut base = None;
            for ((_, scenario), runs) in &here {
                let vals: Vec<f64> = runs.iter().filter_map(f).collect();
                let m = median(&vals);
                // Latency in ms wants two decimals; the rest one.
                let dp = if name.ends_with("ms") { 2 } else { 1 };
                let each: Vec<String> = vals.iter().map(|v| format!("{v:.dp$}")).collect();
                let ratio = match (base, m) {
                    (None, _) => {
                        base = m;
                        String::new()
                    }
                    (Some(b), Some(m)) if b > 0.0 => format!("  = {:.2}x", m / b),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "  {name:<18} {scenario:<10} median {:>8}  ({}){ratio}",
                    m.map_or("-".into(), |m| format!("{m:.dp$}")),
                    each.join(", ")
                );
            }
        }
    }
    Ok(out)
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(scenario: &str, rate: f64, cpu: f64, lost: u64) -> Value {
        let params = json!({"pairs": 100, "payload": 100, "room_members": 5000});
        json!({
            "scenario": scenario,
            "params": if scenario.starts_with("mqtt") { json!({"load": params}) } else { params },
            "cpus": {"server": [0], "generator": [1]},
            "target": {"fsync": false, "transport": "tls"},
            "results": {
                "offered_rate": rate,
                "delivered_rate": rate,
                "lost": lost,
                "failed": 0,
                "latency": {"p50_us": 800, "p99_us": 2500},
                "server": {"cpu_us_per_unit": cpu, "rss_end_kb": 40960.0},
                "generator": {"core_share": 0.5},
            },
        })
    }

    #[test]
    fn table_rows_by_load_and_columns_by_system() {
        let docs = vec![
            doc("mqtt", 2000.0, 9.0, 0),
            doc("direct", 2000.0, 30.0, 0),
            doc("direct", 1000.0, 40.0, 3),
            doc("baseline", 1000.0, 5.0, 0),
            doc("room", 2.0, 20.0, 0),
            doc("mqtt-room", 2.0, 10.0, 0),
            doc("history", 500.0, 1.0, 0),
        ];
        let t = table(&docs);
        let lines: Vec<&str> = t.lines().filter(|l| l.starts_with('|')).collect();
        // Header, rule, 1000/s, 2000/s, room; history is not a row.
        assert_eq!(lines.len(), 5, "{t}");
        assert!(t.starts_with("one-to-one: 100 pairs, 100 B payload; Tidings fsync false; Mosquitto QoS 1 over tls; server on CPU 0, generator on CPU 1"), "{t}");
        assert_eq!(lines[0].matches('|').count(), 15);
        assert_eq!(lines[1].matches('|').count(), 15);
        assert_eq!(
            lines[2],
            "| 1:1 1000/s | 40.0 | 1000 (3 lost) | 800 µs / 2.50 ms | 40 MiB | 5.0 | 1000 | 800 µs / 2.50 ms | 40 MiB | - | - | - | - | 50% / 50% / - |"
        );
        assert!(
            lines[3].starts_with("| 1:1 2000/s | 30.0 | 2000 |"),
            "{}",
            lines[3]
        );
        assert!(
            lines[3].contains("| - | - | - | - | 9.0 | 2000 |"),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].starts_with("| room 5000 × 2/s, per delivery | 20.0 |"),
            "{}",
            lines[4]
        );
        assert!(
            lines[4].ends_with("| 10.0 | 2 | 800 µs / 2.50 ms | 40 MiB | 50% / - / 50% |"),
            "{}",
            lines[4]
        );
        assert!(table(&[]).lines().count() >= 2);
    }

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
