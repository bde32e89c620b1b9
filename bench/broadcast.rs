//! The `broadcast` scenario: `--clients` clients online, a service
//! conversation made through the admin REST API, and `--count` broadcasts
//! sent through that API at `--rate` per second (global ones, or to the
//! conversation's subscribers with `--subscribe`). Each broadcast's text
//! carries its scheduled POST time and number, so every receipt gives a
//! latency. A small `direct` load runs first alone and then alongside the
//! broadcasts, and its p99 in both phases shows whether broadcasts stall
//! other traffic (issue #6).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tidings::client::{ClientEvent, Events};
use tidings::protocol::{Content, ConvId, Event, SyncMode};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::im::{self, Im};
use crate::load::{self, Plan, Progress, Receiver, Tracker, payload, run_schedule};
use crate::report::{self, Measured, Samples, Usage};
use crate::target::Target;
use crate::{LoadArgs, params, runtime, sys};

const DEFAULT_CLIENTS: usize = 2000;
const MAX_CLIENTS: usize = 100_000;
const DEFAULT_COUNT: u64 = 20;
const DEFAULT_RATE: f64 = 2.0;
/// Who the broadcasts come from.
const FROM: &str = "bench-bot";
/// Prefix of a bench broadcast's text; the rest is the hex of a [`load::payload`] header.
const TAG: &str = "tidings-bench:";

/// The endpoint answered 404 "no such endpoint": a server without broadcasts.
#[derive(Debug)]
struct MissingEndpoint(String);

impl std::fmt::Display for MissingEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the server's admin API has no `{}` (a build without broadcasts, issue #6?)",
            self.0
        )
    }
}

impl std::error::Error for MissingEndpoint {}

/// A small client of the admin REST API, authenticated with the master key.
struct Admin {
    base: String,
    http: reqwest::Client,
    app_id: String,
    key: String,
}

impl Admin {
    fn new(addr: SocketAddr, app_id: &str, master_key: &str) -> Result<Admin> {
        Ok(Admin {
            base: format!("http://{addr}"),
            http: crate::target::http_client()?,
            app_id: app_id.to_owned(),
            key: format!("{master_key},master"),
        })
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("X-LC-Id", &self.app_id)
            .header("X-LC-Key", &self.key)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::NOT_FOUND && text.contains("no such endpoint") {
            return Err(MissingEndpoint(path.to_owned()).into());
        }
        if !status.is_success() {
            bail!("POST {path}: {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("POST {path}: answer {text:?}"))
    }
}

/// A broadcast's text for message `k` due at `due_ns`.
fn encode(due_ns: u64, k: u64) -> String {
    let mut s = String::with_capacity(TAG.len() + 2 * load::HEADER);
    s.push_str(TAG);
    for b in payload(due_ns, k, load::HEADER) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The payload header back from [`encode`]'s text.
fn decode(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix(TAG)?;
    if hex.len() != 2 * load::HEADER {
        return None;
    }
    (0..load::HEADER)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Feeds one client's broadcasts (text in `conv`) to its [`Receiver`].
async fn receive_broadcasts(mut events: Events, conv: ConvId, mut r: Receiver, t: Arc<Tracker>) {
    while let Some(ev) = events.recv().await {
        match ev {
            ClientEvent::Server(Event::Message { msg, .. }) if msg.conv == conv => {
                if let Content::Text(s) = &msg.content
                    && let Some(p) = decode(s)
                {
                    r.on_payload(&p);
                }
            }
            ClientEvent::Closed { code, reason } => {
                t.closed.fetch_add(1, Ordering::Relaxed);
                t.note_error(format!(
                    "a broadcast receiver's connection closed ({code:?}): {reason}"
                ));
                break;
            }
            _ => {}
        }
    }
}

/// The current phase's receiver of one `direct` client; swapped between phases.
type Slot = Arc<Mutex<Option<Receiver>>>;

/// Feeds one `direct` receiver's messages to whichever phase is running.
async fn receive_direct(mut events: Events, slot: Slot) {
    while let Some(ev) = events.recv().await {
        match ev {
            ClientEvent::Server(Event::Message { msg, .. }) => {
                if let Content::Binary(b) = &msg.content
                    && let Some(r) = slot.lock().as_mut()
                {
                    r.on_payload(b);
                }
            }
            ClientEvent::Closed { .. } => break,
            ClientEvent::Server(_) => {}
        }
    }
}

/// The `direct` load alongside: its senders and its receivers' slots.
struct Direct {
    senders: Vec<(tidings::client::Client, ConvId)>,
    slots: Vec<Slot>,
    pairs: usize,
}

impl Direct {
    fn tracker(&self, plan: Plan) -> Arc<Tracker> {
        let t = Tracker::new(plan, 1);
        for (i, s) in self.slots.iter().enumerate() {
            *s.lock() = Some(t.receiver(i));
        }
        t
    }

    /// The launch of message `k` of a direct tracker.
    fn launch(&self, t: &Arc<Tracker>, k: u64, due: u64, size: usize) {
        let (client, conv) = &self.senders[(k % self.senders.len() as u64) as usize];
        let (client, conv, t) = (client.clone(), *conv, t.clone());
        tokio::spawn(async move {
            match client.send(im::binary(conv, payload(due, k, size))).await {
                Ok(_) => t.acked(k, true),
                Err(e) => t.failed(k, e),
            }
        });
    }
}

fn direct_measured(name: &str, t: &Tracker, s0: Samples, s1: Samples, pairs: usize) -> Measured {
    let mut m = Measured::from_tracker(name, "msg", t);
    m.latency = Some(("scheduled send → receipt", t.latency.merged()));
    m.ack_latency = Some(("scheduled send → Sent reply", t.ack.merged()));
    m.connections = 2 * pairs;
    m.sent_total = t.launched.load(Ordering::Relaxed);
    m.server = Usage::new("server", None, s0.server, s1.server);
    m.generator = Usage::new("generator", None, s0.me, s1.me);
    m
}

/// What one run produced.
struct Outcome {
    broadcast: Measured,
    quiet: Option<Measured>,
    loaded: Option<Measured>,
    setup: String,
}

async fn run(args: &LoadArgs, target: &Target) -> Result<Outcome> {
    let admin_addr = target
        .admin
        .ok_or_else(|| anyhow!("the admin API's address is unknown"))?;
    let admin = Arc::new(Admin::new(
        admin_addr,
        &target.creds.app_id,
        &target.creds.master_key,
    )?);
    let n = args.clients.unwrap_or(DEFAULT_CLIENTS);
    if n == 0 || n > MAX_CLIENTS {
        bail!("--clients must be 1 to {MAX_CLIENTS}");
    }
    let rate = args.rate.unwrap_or(DEFAULT_RATE);
    let count = args.count.or(args.messages).unwrap_or(DEFAULT_COUNT);
    let p = Progress::new(args.quiet);
    let im = Im::new(target, args);
    let before = target.pid.and_then(|pid| sys::sample(Some(pid)));

    p.phase("service conv");
    let created = admin
        .post(
            "/1.2/rtm/service-conversations",
            json!({"name": format!("bench broadcast {}", im.id("", 0))}),
        )
        .await?;
    let conv_text = created["objectId"]
        .as_str()
        .ok_or_else(|| anyhow!("service conversation answer without objectId: {created}"))?
        .to_owned();
    let conv: ConvId = conv_text
        .parse()
        .map_err(|e| anyhow!("objectId {conv_text:?}: {e:?}"))?;

    p.phase("connecting");
    let ids: Vec<String> = (0..n).map(|i| im.id("bc", i)).collect();
    let conns = im.connect_many(ids.clone(), SyncMode::Push, &p).await?;
    let after_connect = target.pid.and_then(|pid| sys::sample(Some(pid)));

    if args.subscribe {
        p.phase("subscribing");
        let sem = Arc::new(Semaphore::new(args.concurrency.max(1)));
        let mut set = JoinSet::new();
        let path = format!("/1.2/rtm/service-conversations/{conv_text}/subscribers");
        for (i, id) in ids.iter().enumerate() {
            let permit = sem.clone().acquire_owned().await?;
            let (admin, path, id) = (admin.clone(), path.clone(), id.clone());
            set.spawn(async move {
                let r = admin.post(&path, json!({"client_id": id})).await;
                drop(permit);
                r
            });
            while let Some(r) = set.try_join_next() {
                r??;
                p.set(i as u64, n as u64);
            }
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
    }

    let direct = if args.direct_pairs > 0 {
        let mut dargs = args.clone();
        dargs.pairs = args.direct_pairs;
        let w = im::wire_direct(&im, &dargs, &p).await?;
        let mut slots = Vec::new();
        for ev in w.receivers {
            let slot = Slot::default();
            tokio::spawn(receive_direct(ev, slot.clone()));
            slots.push(slot);
        }
        Some(Direct {
            senders: w.senders,
            slots,
            pairs: args.direct_pairs,
        })
    } else {
        None
    };
    // Let the server settle after thousands of logins (and subscriptions)
    // before the quiet phase is measured.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The broadcasts' plan first: the direct phases last as long as its window.
    let bplan = Plan::new(rate, args.warmup, args.duration, Some(count), None)?;
    let window = bplan.window_secs();
    let size = args.payload;

    // Phase 1: the direct load alone.
    let quiet = if let Some(d) = &direct {
        p.phase("direct alone");
        let plan = Plan::new(args.direct_rate, args.warmup, window, None, None)?;
        let t = d.tracker(plan);
        let mut s0 = None;
        run_schedule(
            &t,
            &p,
            || s0 = Some(Samples::take(target.pid)),
            |k, due| d.launch(&t, k, due, size),
        );
        t.drain(Duration::from_secs_f64(args.drain)).await;
        let s1 = Samples::take(target.pid);
        Some(direct_measured(
            "broadcast: direct alone",
            &t,
            s0.unwrap_or(s1),
            s1,
            d.pairs,
        ))
    } else {
        None
    };

    // Phase 2: the broadcasts, with the direct load alongside.
    let bplan = Plan::new(rate, args.warmup, args.duration, Some(count), None)?;
    let bt = Tracker::new(bplan, n as u32);
    let mut rx = JoinSet::new();
    let mut clients = Vec::with_capacity(n);
    for (i, (client, ev)) in conns.into_iter().enumerate() {
        clients.push(client);
        rx.spawn(receive_broadcasts(ev, conv, bt.receiver(i), bt.clone()));
    }
    let dt = direct.as_ref().map(|d| {
        let plan = Plan::new(args.direct_rate, args.warmup, window, None, None);
        plan.map(|plan| d.tracker(plan))
    });
    let dt = dt.transpose()?;
    let (path, body_of): (String, Box<dyn Fn(String) -> Value + Send + Sync>) = if args.subscribe {
        (
            format!("/1.2/rtm/service-conversations/{conv_text}/broadcasts"),
            Box::new(|text| json!({"from_client": FROM, "message": text})),
        )
    } else {
        let c = conv_text.clone();
        (
            "/1.2/rtm/broadcasts".to_owned(),
            Box::new(move |text| json!({"from_client": FROM, "conv_id": c, "message": text})),
        )
    };
    let body_of: Arc<dyn Fn(String) -> Value + Send + Sync> = Arc::from(body_of);
    p.phase("broadcasting");
    let handle = tokio::runtime::Handle::current();
    let b_start: Arc<Mutex<Option<Samples>>> = Arc::default();
    let b_thread = {
        let (bt, admin, path, body_of, b_start) = (
            bt.clone(),
            admin.clone(),
            path.clone(),
            body_of.clone(),
            b_start.clone(),
        );
        let pid = target.pid;
        std::thread::spawn(move || {
            let _guard = handle.enter();
            let hidden = Progress::new(true);
            run_schedule(
                &bt,
                &hidden,
                || *b_start.lock() = Some(Samples::take(pid)),
                |k, due| {
                    let (bt, admin, path) = (bt.clone(), admin.clone(), path.clone());
                    let body = body_of(encode(due, k));
                    tokio::spawn(async move {
                        match admin.post(&path, body).await {
                            Ok(_) => bt.acked(k, true),
                            Err(e) => bt.failed(k, format!("{e:#}")),
                        }
                    });
                },
            );
        })
    };
    let mut d_start = None;
    match (&direct, &dt) {
        (Some(d), Some(t)) => run_schedule(
            t,
            &p,
            || d_start = Some(Samples::take(target.pid)),
            |k, due| d.launch(t, k, due, size),
        ),
        _ => {
            // Only the broadcasts: show their progress instead.
            while !b_thread.is_finished() {
                p.set(bt.launched.load(Ordering::Relaxed), bt.plan.k_end);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    b_thread
        .join()
        .map_err(|_| anyhow!("the broadcast schedule panicked"))?;
    p.phase("draining");
    let d_end = if let Some(t) = &dt {
        t.drain(Duration::from_secs_f64(args.drain)).await;
        Some(Samples::take(target.pid))
    } else {
        None
    };
    bt.drain(Duration::from_secs_f64(args.drain)).await;
    let end = Samples::take(target.pid);
    rx.abort_all();
    p.finish();

    let loaded = match (&direct, &dt, d_end) {
        (Some(d), Some(t), Some(s1)) => Some(direct_measured(
            "broadcast: direct alongside",
            t,
            d_start.unwrap_or(s1),
            s1,
            d.pairs,
        )),
        _ => None,
    };
    if bt.acked.load(Ordering::Relaxed) == 0
        && let Some(e) = bt.first_error()
    {
        bail!("every broadcast failed: {e}");
    }

    let mut m = Measured::from_tracker("broadcast", "broadcast", &bt);
    m.latency = Some(("scheduled POST → receipt", bt.latency.merged()));
    m.ack_latency = Some(("scheduled POST → API answer", bt.ack.merged()));
    m.connections = n + direct.as_ref().map_or(0, |d| 2 * d.pairs);
    m.sent_total = bt.launched.load(Ordering::Relaxed);
    let s0 = b_start.lock().unwrap_or(end);
    m.server = Usage::new("server", before, s0.server, end.server);
    m.generator = Usage::new("generator", None, s0.me, end.me);
    if let (Some(b), Some(a)) = (before, after_connect) {
        m.extra.insert(
            "rss_per_client_kb".into(),
            json!(((a.rss_kb as f64 - b.rss_kb as f64) / n as f64 * 10.0).round() / 10.0),
        );
    }
    // Server CPU net of the direct load: the quiet phase's rate of CPU taken off.
    if let (Some(q), Some(u)) = (quiet.as_ref().and_then(|q| q.server), m.server) {
        let delivered = m.delivered.unwrap_or(0);
        let net = (u.cpu_s() - q.core_share() * u.wall_s()).max(0.0);
        if delivered > 0 {
            m.extra.insert(
                "server_cpu_us_per_delivery_net_of_direct".into(),
                json!((net * 1e6 / delivered as f64 * 10.0).round() / 10.0),
            );
        }
    }
    m.notes.push(format!(
        "server CPU and RSS cover the broadcast window{}",
        if direct.is_some() {
            ", including the direct load alongside"
        } else {
            ""
        }
    ));
    drop(clients);
    drop(direct);
    im.close().await;

    let mode = if args.subscribe {
        "to the subscribers of a service conversation"
    } else {
        "global"
    };
    let setup = format!(
        "{n} clients online, {count} broadcasts {mode} at {rate}/s through the admin API at {admin_addr}{}",
        if args.direct_pairs > 0 {
            format!(
                ", with {} direct pairs at {}/s alongside",
                args.direct_pairs, args.direct_rate
            )
        } else {
            String::new()
        }
    );
    Ok(Outcome {
        broadcast: m,
        quiet,
        loaded,
        setup,
    })
}

/// The direct load's figures, alone and alongside the broadcasts.
fn stall_table(quiet: &Measured, loaded: &Measured) -> String {
    use std::fmt::Write as _;
    let q = |m: &Measured, q: f64| {
        m.latency
            .as_ref()
            .map_or("-".into(), |(_, h)| report::fmt_us(h.value_at_quantile(q)))
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<24}{:>14}{:>22}",
        "direct load", "alone", "with broadcasts"
    );
    let rows: [(&str, String, String); 4] = [
        ("latency p50", q(quiet, 0.5), q(loaded, 0.5)),
        ("latency p99", q(quiet, 0.99), q(loaded, 0.99)),
        ("latency max", q(quiet, 1.0), q(loaded, 1.0)),
        (
            "lost / dup",
            format!("{} / {}", quiet.lost, quiet.dup),
            format!("{} / {}", loaded.lost, loaded.dup),
        ),
    ];
    for (what, a, b) in rows {
        let _ = writeln!(s, "{what:<24}{a:>14}{b:>22}");
    }
    s
}

pub fn main(args: LoadArgs) -> Result<ExitCode> {
    if args.compare_baseline {
        eprintln!("note: --compare-baseline applies to `direct` only");
    }
    sys::raise_nofile();
    let rt = runtime(args.threads)?;
    let target = Target::open_admin(&args)?;
    let described = target.describe();
    let res = rt.block_on(run(&args, &target));
    let stopped = target.stop();
    let out = match res {
        Ok(o) => o,
        Err(e) => {
            if let Some(m) = e.downcast_ref::<MissingEndpoint>() {
                eprintln!("tidings-bench: {m}");
                return Ok(ExitCode::from(2));
            }
            return Err(e);
        }
    };
    stopped?;
    let where_ = match described["spawned"].as_bool() {
        Some(true) => format!(
            "spawned server, fsync {}",
            described["fsync"].as_bool().unwrap_or(true)
        ),
        _ => format!("server at {}", described["addr"].as_str().unwrap_or("?")),
    };
    let setup = format!("{}; {where_}", out.setup);
    print!("{}", report::summary(&out.broadcast, &setup));
    if let (Some(q), Some(l)) = (&out.quiet, &out.loaded) {
        print!("{}", stall_table(q, l));
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    if let Some(path) = &args.json {
        let results = json!({
            "broadcast": report::to_json(&out.broadcast),
            "direct_alone": out.quiet.as_ref().map(report::to_json),
            "direct_alongside": out.loaded.as_ref().map(report::to_json),
        });
        let doc = report::document("broadcast", params(&args), described, results);
        report::write_json(path, &doc)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let s = encode(123_456_789, 42);
        let p = decode(&s).unwrap();
        assert_eq!(load::parse(&p), Some((123_456_789, 42)));
        assert_eq!(decode("hello"), None);
        assert_eq!(decode(&format!("{TAG}zz")), None);
    }
}
