//! The `push` scenario: offline push through one APNs connection.
//!
//! `--receivers` clients each register an iOS device through the
//! installation REST API (`POST /1.1/installations` with the app key, on
//! the LeanCloud door), log in once over QUIC naming that device (so it
//! binds to the clientId) and drop the connection without logging out (a
//! logout would unbind it), so they are offline with a device. Senders then
//! send at `--rate`, open loop, into one-to-one conversations (the
//! default, `--fanout 1`) or groups of one sender and `--fanout` offline
//! receivers; every stored message to an offline member with a device
//! becomes one push to the APNs stand-in in this process (bench/apns.rs),
//! which the spawned server trusts through `push.extra_ca_file`.
//!
//! Each message carries `pushData` with its due time and number, which the
//! APNs body keeps as a custom key, so every push gives a latency from the
//! scheduled send and is matched to its message (lost and duplicated
//! pushes per device are exact).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tidings::client::Client;
use tidings::protocol::{Content, ConvId, SendMessage, SyncMode};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::apns::{self, ApnsStandIn};
use crate::im::{self, Im};
use crate::load::{self, Plan, Progress, Receiver, Tracker, now_ns, payload, run_schedule};
use crate::report::{self, Measured, Samples, Usage, round1};
use crate::target::{self, Target};
use crate::{LoadArgs, params, runtime, sys};

const DEFAULT_RECEIVERS: usize = 1000;
const DEFAULT_RATE: f64 = 2000.0;
/// Senders when `--connections` is not given (at most one per conversation).
const DEFAULT_SENDERS: usize = 50;
/// The custom key of the push body that carries the payload header (hex).
const MARK: &str = "bench";

/// The `pushData` of message `k`: an alert, and its due time and number.
fn push_data(due_ns: u64, k: u64) -> String {
    json!({"alert": "tidings-bench", MARK: hex::encode(payload(due_ns, k, load::HEADER))})
        .to_string()
}

/// The payload header back from a push body.
fn mark_of(body: &Value) -> Option<Vec<u8>> {
    let bytes = hex::decode(body.get(MARK)?.as_str()?).ok()?;
    (bytes.len() == load::HEADER).then_some(bytes)
}

/// Where the stand-in's pushes go during the measured phase: one
/// [`Receiver`] per device token, and the window's first and last receipt.
struct PushSink {
    by_token: Mutex<HashMap<String, Receiver>>,
    t: Arc<Tracker>,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    in_window: AtomicU64,
    /// Pushes without a bench mark, or to a device this run did not register.
    unmarked: AtomicU64,
}

impl PushSink {
    fn on_push(&self, token: &str, body: &Value) {
        let Some(mark) = mark_of(body) else {
            self.unmarked.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Some((_, k)) = load::parse(&mark)
            && self.t.plan.in_window(k)
        {
            let now = now_ns();
            self.first_ns.fetch_min(now, Ordering::Relaxed);
            self.last_ns.fetch_max(now, Ordering::Relaxed);
            self.in_window.fetch_add(1, Ordering::Relaxed);
        }
        match self.by_token.lock().get_mut(token) {
            Some(r) => r.on_payload(&mark),
            None => {
                self.unmarked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Window pushes per second from the first receipt to the last.
    fn rate(&self) -> Option<f64> {
        let n = self.in_window.load(Ordering::Relaxed);
        let first = self.first_ns.load(Ordering::Relaxed);
        let last = self.last_ns.load(Ordering::Relaxed);
        (n > 1 && last > first).then(|| (n - 1) as f64 * 1e9 / (last - first) as f64)
    }
}

/// Runs `f(0..n)`, `limit` at a time; fails on the first error.
async fn limited<F, Fut>(n: usize, limit: usize, p: &Progress, f: F) -> Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(limit.max(1)));
    let mut set = JoinSet::new();
    let mut done = 0u64;
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let fut = f(i);
        set.spawn(async move {
            let r = fut.await;
            drop(permit);
            r
        });
        while let Some(r) = set.try_join_next() {
            r??;
            done += 1;
            p.set(done, n as u64);
        }
    }
    while let Some(r) = set.join_next().await {
        r??;
        done += 1;
        p.set(done, n as u64);
    }
    Ok(())
}

/// Registers an iOS device as the Swift SDK does (`POST /1.1/installations`, app key).
async fn register(
    http: reqwest::Client,
    door: SocketAddr,
    app_id: String,
    app_key: String,
    token: String,
) -> Result<()> {
    let body = json!({
        "deviceType": "ios",
        "deviceToken": token,
        "apnsTeamId": apns::TEAM,
        "apnsTopic": apns::TOPIC,
        "timeZone": "UTC",
        "badge": 0,
    });
    post(&http, door, "/1.1/installations", &app_id, &app_key, &body).await?;
    Ok(())
}

/// POSTs `body` to `path` at `addr` with LeanCloud's `X-LC-Id` and
/// `X-LC-Key`; the answer's JSON (`null` when not JSON), or an error on a
/// status other than 2xx.
async fn post(
    http: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
    app_id: &str,
    key: &str,
    body: &Value,
) -> Result<Value> {
    let r = http
        .post(format!("http://{addr}{path}"))
        .header("X-LC-Id", app_id)
        .header("X-LC-Key", key)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("POST {path}: {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The `tidings_push_*` lines of the server's `/metrics`, or why not.
async fn push_metrics(http: &reqwest::Client, admin: Option<SocketAddr>) -> String {
    let Some(admin) = admin else {
        return "admin API unknown".into();
    };
    let text = match http.get(format!("http://{admin}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => return format!("GET /metrics: {e}"),
    };
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("tidings_push_") && !l.ends_with(" 0"))
        .collect();
    if lines.is_empty() {
        "no tidings_push_* figures other than 0".into()
    } else {
        lines.join("; ")
    }
}

/// Waits (bounded) until the server has none of `ids` online, asking the
/// admin API's online check (20 clients a request); without the admin API,
/// a second.
async fn wait_offline(http: &reqwest::Client, target: &Target, ids: &[String]) -> Result<()> {
    const BOUND: Duration = Duration::from_secs(30);
    let Some(admin) = target.admin else {
        tokio::time::sleep(Duration::from_secs(1)).await;
        return Ok(());
    };
    let (app_id, key) = (
        &target.creds.app_id,
        format!("{},master", target.creds.master_key),
    );
    let deadline = std::time::Instant::now() + BOUND;
    let mut left: Vec<String> = ids.to_vec();
    loop {
        let mut online = Vec::new();
        for chunk in left.chunks(20) {
            let body = json!({ "client_ids": chunk });
            let path = "/1.2/rtm/clients/online-check";
            let answer = post(http, admin, path, app_id, &key, &body).await?;
            online.extend(
                answer["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str().map(str::to_owned)),
            );
        }
        if online.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "{} receivers still online after {BOUND:?} (first: {})",
                online.len(),
                online[0]
            );
        }
        left = online;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Conversations to send into, each with its sender.
type Convs = Vec<(Client, ConvId)>;

/// Makes `members.len() / fanout` conversations: sender `i % senders`
/// with `fanout` of `members` (a unique one-to-one conversation for 1).
async fn conversations(
    senders: &[Client],
    members: &[String],
    fanout: usize,
    limit: usize,
    p: &Progress,
) -> Result<Convs> {
    let n = members.len() / fanout;
    let slots: Arc<Mutex<Vec<Option<ConvId>>>> = Arc::new(Mutex::new(vec![None; n]));
    limited(n, limit, p, |i| {
        let sender = senders[i % senders.len()].clone();
        let group = members[i * fanout..(i + 1) * fanout].to_vec();
        let slots = slots.clone();
        async move {
            let info = if group.len() == 1 {
                sender.create_unique(group).await
            } else {
                sender
                    .create_conversation(im::group(group, format!("bench push {i}")))
                    .await
            }
            .context("creating a conversation")?;
            slots.lock()[i] = Some(info.id);
            Ok(())
        }
    })
    .await?;
    let slots = slots.lock().clone();
    slots
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            c.map(|c| (senders[i % senders.len()].clone(), c))
                .ok_or_else(|| anyhow!("conversation {i} missing"))
        })
        .collect()
}

/// One measured phase: the open-loop schedule into `convs`, then the drain.
struct Phase {
    t: Arc<Tracker>,
    s0: Samples,
    s1: Samples,
    standin_cpu: f64,
    /// The stand-in's counts after the drain.
    counts: apns::Counts,
    sink: Option<Arc<PushSink>>,
}

async fn run_phase(
    args: &LoadArgs,
    pid: Option<u32>,
    convs: &Convs,
    fanout: u32,
    devices: Option<(&ApnsStandIn, &[String])>,
    p: &Progress,
) -> Result<Phase> {
    let rate = args.rate.unwrap_or(DEFAULT_RATE);
    let plan = Plan::new(rate, args.warmup, args.duration, args.messages, None)?;
    let t = Tracker::new(plan, fanout);
    let sink = devices.map(|(standin, tokens)| {
        let by_token = tokens
            .iter()
            .enumerate()
            .map(|(i, tok)| (tok.clone(), t.receiver(i)))
            .collect();
        let sink = Arc::new(PushSink {
            by_token: Mutex::new(by_token),
            t: t.clone(),
            first_ns: AtomicU64::new(u64::MAX),
            last_ns: AtomicU64::new(0),
            in_window: AtomicU64::new(0),
            unmarked: AtomicU64::new(0),
        });
        let s = sink.clone();
        standin.set_sink(Arc::new(move |token, body| s.on_push(token, body)));
        sink
    });
    let standin = devices.map(|(s, _)| s);
    let size = args.payload;
    let mut start = None;
    run_schedule(
        &t,
        p,
        || start = Some((Samples::take(pid), standin.map_or(0.0, ApnsStandIn::cpu_s))),
        |k, due| {
            let (client, conv) = &convs[(k % convs.len() as u64) as usize];
            let (client, t) = (client.clone(), t.clone());
            let msg = SendMessage {
                content: Content::Binary(payload(due, k, size)),
                push_data: Some(push_data(due, k)),
                ..SendMessage::text(*conv, "")
            };
            tokio::spawn(async move {
                match client.send(msg).await {
                    Ok(_) => t.acked(k, true),
                    Err(e) => t.failed(k, e),
                }
            });
        },
    );
    p.phase("draining");
    t.drain(Duration::from_secs_f64(args.drain)).await;
    let s1 = Samples::take(pid);
    let cpu1 = standin.map_or(0.0, ApnsStandIn::cpu_s);
    let c1 = standin.map(ApnsStandIn::counts).unwrap_or_default();
    let (s0, cpu0) = start.unwrap_or((s1, cpu1));
    Ok(Phase {
        t,
        s0,
        s1,
        standin_cpu: (cpu1 - cpu0).max(0.0),
        counts: c1,
        sink,
    })
}

/// What a run produced.
struct Outcome {
    push: Measured,
    no_push: Option<Measured>,
    setup: String,
    counts: apns::Counts,
    figures: PushFigures,
    ok: bool,
}

/// The push figures, for `--json`.
#[derive(Debug, serde::Serialize)]
struct PushFigures {
    pushes: u64,
    pushes_per_s: Option<f64>,
    apns_connections: u64,
    server_cpu_us_per_push: Option<f64>,
    /// Less the reference run's CPU per message (`--compare-no-push`).
    server_cpu_us_per_push_net: Option<f64>,
    standin_cpu_us_per_push: Option<f64>,
    generator_cpu_us_per_push_less_standin: Option<f64>,
}

fn measured(name: &str, ph: &Phase, senders: usize) -> Measured {
    let t = &ph.t;
    let mut m = Measured::from_tracker(name, "msg", t);
    m.ack_latency = Some(("scheduled send → Sent reply", t.ack.merged()));
    m.connections = senders;
    m.sent_total = t.launched.load(Ordering::Relaxed);
    m.server = Usage::new("server", None, ph.s0.server, ph.s1.server);
    m.generator = Usage::new("generator", None, ph.s0.me, ph.s1.me);
    m
}

async fn run(args: &LoadArgs, target: &Target, standin: &ApnsStandIn) -> Result<Outcome> {
    let n = args.receivers.unwrap_or(DEFAULT_RECEIVERS);
    let fanout = args.fanout.max(1);
    if fanout > 499 || n < fanout {
        bail!("--fanout must be 1 to 499 and at most --receivers");
    }
    let convs_n = n / fanout;
    let n = convs_n * fanout;
    let door = target
        .gateway
        .ok_or_else(|| anyhow!("the server's LeanCloud door (installations) is unknown"))?;
    let p = Progress::new(args.quiet);
    let im = Im::new(target, args);
    let http = target::http_client()?;
    let conc = args.concurrency.max(1);
    let per_ep = args.clients_per_endpoint.max(1);

    let tokens: Vec<String> = (0..n)
        .map(|_| hex::encode(rand::random::<[u8; 32]>()))
        .collect();
    let ids: Vec<String> = (0..n).map(|i| im.id("pr", i)).collect();
    p.phase("devices");
    let creds = &target.creds;
    limited(n, conc, &p, |i| {
        register(
            http.clone(),
            door,
            creds.app_id.clone(),
            creds.app_key.clone(),
            tokens[i].clone(),
        )
    })
    .await
    .context("registering devices")?;
    // One login naming the device binds it; dropping the connection
    // (not a logout, which unbinds) leaves the client offline.
    p.phase("binding");
    limited(n, conc, &p, |i| {
        let (im, id, tok) = (im.clone(), ids[i].clone(), tokens[i].clone());
        async move {
            let (client, events) = im
                .connect_device(i / per_ep, id.clone(), SyncMode::Push, Some(tok))
                .await
                .with_context(|| format!("logging in {id}"))?;
            client.abort();
            drop(events);
            Ok(())
        }
    })
    .await?;

    let s = args
        .connections
        .unwrap_or(DEFAULT_SENDERS)
        .clamp(1, convs_n);
    p.phase("senders");
    let sender_ids: Vec<String> = (0..s).map(|i| im.id("ps", i)).collect();
    let senders: Vec<Client> = im
        .connect_many(sender_ids, SyncMode::Push, &p)
        .await?
        .into_iter()
        // Senders receive nothing worth reading; dropping their events is allowed.
        .map(|(c, _)| c)
        .collect();
    p.phase("conversations");
    let convs = conversations(&senders, &ids, fanout, conc, &p).await?;

    // The reference: the same load to members who never had a device.
    let no_push = if args.compare_no_push {
        let quiet_ids: Vec<String> = (0..n).map(|i| im.id("pq", i)).collect();
        let quiet = conversations(&senders, &quiet_ids, fanout, conc, &p).await?;
        // A second for the server to settle after making the conversations
        // (no event says it has; the warm-up absorbs the rest).
        tokio::time::sleep(Duration::from_secs(1)).await;
        p.phase("no push");
        let ph = run_phase(args, target.pid, &quiet, 0, None, &p).await?;
        let mut m = measured("push: reference without devices", &ph, s);
        m.notes
            .push("the same load to offline members with no device: no pushes".into());
        Some(m)
    } else {
        None
    };

    // Let the server see every receiver's connection close.
    wait_offline(&http, target, &ids).await?;
    // On stderr whatever --quiet says: the cue for a profiler to start.
    eprintln!("push phase starts");
    p.phase("pushing");
    let ph = run_phase(
        args,
        target.pid,
        &convs,
        fanout as u32,
        Some((standin, &tokens)),
        &p,
    )
    .await?;
    p.finish();
    let metrics = push_metrics(&http, target.admin).await;
    drop(convs);
    drop(senders);
    im.close().await;

    let mut m = measured("push", &ph, s);
    m.latency = Some(("scheduled send → APNs stand-in", ph.t.latency.merged()));
    let c1 = ph.counts;
    let pushes = m.delivered.unwrap_or(0);
    let sink = ph.sink.as_ref().ok_or_else(|| anyhow!("no sink"))?;
    let per_push = |cpu: f64| (pushes > 0).then(|| round1(cpu * 1e6 / pushes as f64));
    let server = m.server.and_then(|u| per_push(u.cpu_s()));
    // The reference's CPU per message, taken off per message sent here.
    let net = match (m.server, no_push.as_ref()) {
        (Some(u), Some(q)) => match q.server {
            Some(qs) if q.ok > 0 => per_push(u.cpu_s() - qs.cpu_s() * m.ok as f64 / q.ok as f64),
            _ => None,
        },
        _ => None,
    };
    let standin_us = per_push(ph.standin_cpu);
    let generator_us = m
        .generator
        .and_then(|g| per_push(g.cpu_s() - ph.standin_cpu));
    let figures = PushFigures {
        pushes,
        pushes_per_s: sink.rate().map(f64::round),
        apns_connections: c1.connections,
        server_cpu_us_per_push: server,
        server_cpu_us_per_push_net: net,
        standin_cpu_us_per_push: standin_us,
        generator_cpu_us_per_push_less_standin: generator_us,
    };
    let fmt = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.1}"));
    m.extra.insert(
        "pushes".into(),
        json!(format!(
            "{pushes} in the window, {}/s from the first receipt to the last, over {} APNs connection(s)",
            figures.pushes_per_s.map_or("-".into(), |r| format!("{r:.0}")),
            c1.connections
        )),
    );
    m.extra.insert(
        "push CPU".into(),
        json!(format!(
            "µs/push: server {}{}, stand-in {}, generator less the stand-in {}",
            fmt(server),
            if no_push.is_some() {
                format!(" (net of messaging {})", fmt(net))
            } else {
                String::new()
            },
            fmt(standin_us),
            fmt(generator_us)
        )),
    );
    m.extra.insert(
        "stand-in".into(),
        json!(format!(
            "{} requests in all, warm-up included ({} accepted, {} rejected{}); {} pushes without a bench mark or to an unknown device; {} provider token(s) verified",
            c1.requests,
            c1.accepted,
            c1.rejected,
            standin
                .first_rejection()
                .map(|r| format!(", first: {r}"))
                .unwrap_or_default(),
            sink.unmarked.load(Ordering::Relaxed),
            c1.provider_tokens
        )),
    );
    m.extra.insert("metrics".into(), json!(metrics));
    m.notes.push(
        "delivered = pushes the APNs stand-in accepted; \"/msg delivered\" is per push".into(),
    );
    let ok = c1.connections == 1 && pushes > 0;
    if c1.connections != 1 {
        m.notes.push(format!(
            "the server opened {} connections to the APNs stand-in, not 1",
            c1.connections
        ));
    }
    if pushes == 0 {
        m.notes
            .push("no push arrived: is offline push wired in this server build?".into());
    }
    let shape = if fanout == 1 {
        format!("{convs_n} one-to-one conversations")
    } else {
        format!("{convs_n} groups of 1 sender + {fanout} offline receivers")
    };
    let setup = format!(
        "{n} offline receivers with an iOS device each, {shape}, {s} senders; payload {} B; one APNs stand-in at {}",
        args.payload, standin.url
    );
    Ok(Outcome {
        push: m,
        no_push,
        setup,
        counts: c1,
        figures,
        ok,
    })
}

/// Removes a scratch directory when the run ends, however it ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn main(args: LoadArgs) -> Result<ExitCode> {
    if args.server.is_some() || args.data_dir.is_some() || args.pin.is_some() {
        eprintln!(
            "tidings-bench: push needs a spawned server (its config points at the APNs stand-in); drop --server, --data-dir and --pin"
        );
        return Ok(ExitCode::from(2));
    }
    if args.payload < load::HEADER {
        bail!("--payload must be at least {} bytes", load::HEADER);
    }
    sys::raise_nofile();
    let rt = runtime(args.threads)?;
    let scratch = Scratch(target::scratch_dir(&args, "push")?);
    let standin = ApnsStandIn::start(&scratch.0)?;
    // Large enough that no push is dropped for a full queue: twice what the run schedules.
    let rate = args.rate.unwrap_or(DEFAULT_RATE);
    let mut planned = ((args.warmup + args.duration) * rate).ceil() as u64;
    if let Some(cap) = args.messages {
        planned = planned.min(cap + (args.warmup * rate).ceil() as u64);
    }
    let queue = args
        .queue_capacity
        .unwrap_or((2 * planned * args.fanout.max(1) as u64).max(10_000));
    let config = scratch.0.join("tidings.toml");
    std::fs::write(
        &config,
        apns::config_toml(&apns::push_section(&standin, queue))?,
    )
    .context("writing the server's config")?;
    let mut server_args = args.clone();
    server_args.server_env.push(format!(
        "{}={}",
        tidings::config::CONFIG_PATH_ENV,
        config.display()
    ));
    let target = Target::open_admin(&server_args)?;
    let described = target.describe();
    if let Some(pid) = target.pid {
        // For `perf record -p`, while the devices register.
        eprintln!("server pid {pid}");
    }
    let res = rt.block_on(run(&args, &target, &standin));
    let stopped = target.stop();
    let out = res?;
    stopped?;
    let setup = format!(
        "{}; spawned server, fsync {}, push queue {queue}",
        out.setup,
        described["fsync"].as_bool().unwrap_or(true)
    );
    if let Some(q) = &out.no_push {
        print!("{}", report::summary(q, &setup));
    }
    print!("{}", report::summary(&out.push, &setup));
    drop(standin);
    rt.shutdown_timeout(Duration::from_secs(1));
    if let Some(path) = &args.json {
        let c = out.counts;
        let results = json!({
            "push": report::to_json(&out.push),
            "no_push": out.no_push.as_ref().map(report::to_json),
            "figures": out.figures,
            "standin": {
                "connections": c.connections,
                "requests": c.requests,
                "accepted": c.accepted,
                "rejected": c.rejected,
                "provider_tokens": c.provider_tokens,
            },
        });
        let doc = report::document("push", params(&args), described, results);
        report::write_json(path, &doc)?;
    }
    Ok(if out.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_data_carries_the_header_through_the_apns_body() {
        let data: Value = serde_json::from_str(&push_data(123_456_789, 42)).unwrap();
        // What the server's APNs body keeps: `alert` into `aps`, the mark as a custom key.
        let body = tidings::push::apns::body_from_leancloud(&data);
        assert_eq!(body["aps"]["alert"], "tidings-bench");
        let mark = mark_of(&body).unwrap();
        assert_eq!(load::parse(&mark), Some((123_456_789, 42)));
        assert_eq!(mark_of(&json!({"aps": {}})), None);
        assert_eq!(mark_of(&json!({MARK: "00"})), None);
    }
}
