//! The `direct` load against an MQTT broker: each pair is a publisher and a
//! subscriber on topic `pair/<run>/N`, QoS 1, measured exactly like Tidings.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use parking_lot::Mutex;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::MqttArgs;
use crate::load::{Plan, Progress, Receiver, Tracker, payload, run_schedule};
use crate::report::{Measured, Samples, Usage};
use crate::sys;

/// Connection errors an event loop tolerates (each poll after one reconnects) before giving up.
const MAX_ERRORS: u32 = 5;

fn tls_config(ca: &std::path::Path) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(cert.with_context(|| format!("parsing {}", ca.display()))?)?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(cfg))
}

fn options(m: &MqttArgs, id: String, transport: &Transport, clean: bool) -> MqttOptions {
    let mut o = MqttOptions::new(id, m.broker.ip().to_string(), m.broker.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(clean);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_transport(transport.clone());
    o
}

/// The run's tracker, set once every client is connected: the schedule is
/// made only then, so connecting thousands of clients eats no warm-up.
type Cell = Arc<OnceLock<Arc<Tracker>>>;

/// The first error of an event loop, kept for the report (or for the
/// message when the clients never all connect).
fn note_error(cell: &Cell, setup_error: &Mutex<Option<String>>, e: String) {
    match cell.get() {
        Some(t) => t.note_error(e),
        None => {
            setup_error.lock().get_or_insert(e);
        }
    }
}

/// Polls a subscriber's event loop, feeding received payloads to receiver `shard`.
async fn subscriber_loop(
    mut el: EventLoop,
    shard: usize,
    cell: Cell,
    ready: Arc<AtomicUsize>,
    setup_error: Arc<Mutex<Option<String>>>,
) {
    let mut r: Option<Receiver> = None;
    let mut errors = 0;
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if r.is_none() {
                    r = cell.get().map(|t| t.receiver(shard));
                }
                if let Some(r) = r.as_mut() {
                    r.on_payload(&p.payload);
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                ready.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                note_error(&cell, &setup_error, format!("subscriber: {e}"));
                errors += 1;
                if errors >= MAX_ERRORS {
                    if let Some(t) = cell.get() {
                        t.closed.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Polls a publisher's event loop: packet ids are assigned in request order,
/// so `order` (message numbers in the order they were published) maps each
/// PUBACK back to its message.
async fn publisher_loop(
    mut el: EventLoop,
    order: Arc<Mutex<VecDeque<u64>>>,
    cell: Cell,
    ready: Arc<AtomicUsize>,
    setup_error: Arc<Mutex<Option<String>>>,
) {
    let mut by_pkid: HashMap<u16, u64> = HashMap::new();
    let mut errors = 0;
    loop {
        match el.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                if let Some(k) = order.lock().pop_front() {
                    by_pkid.insert(pkid, k);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(a))) => {
                if let (Some(k), Some(t)) = (by_pkid.remove(&a.pkid), cell.get()) {
                    t.acked(k, true);
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                ready.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                note_error(&cell, &setup_error, format!("publisher: {e}"));
                errors += 1;
                if errors >= MAX_ERRORS {
                    if let Some(t) = cell.get() {
                        t.closed.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Waits (at most 20 s) until `n` reaches `want`.
async fn wait_count(
    n: &AtomicUsize,
    want: usize,
    what: &str,
    setup_error: &Mutex<Option<String>>,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while n.load(Ordering::Relaxed) < want {
        if tokio::time::Instant::now() > deadline {
            let first = setup_error
                .lock()
                .clone()
                .map(|e| format!(" (first error: {e})"))
                .unwrap_or_default();
            bail!(
                "only {} of {want} {what} within 20 s{first}",
                n.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

pub async fn run(m: &MqttArgs) -> Result<(Measured, String, Value)> {
    let args = &m.load;
    let p = Progress::new(args.quiet);
    let transport = match &m.ca {
        Some(ca) => Transport::tls_with_config(TlsConfiguration::Rustls(tls_config(ca)?)),
        None => Transport::Tcp,
    };
    let tls = m.ca.is_some();
    if let Some(cpus) = &args.server_cpus {
        let pid = m
            .broker_pid
            .ok_or_else(|| anyhow!("--server-cpus needs --broker-pid"))?;
        sys::pin_process(Some(pid), &cpus.0).context("pinning the broker (--broker-pid)")?;
    }
    // Direct: subscriber i and publisher i share topic pair/<run>/i. Room:
    // every subscriber is on room/<run>, and the publishers take turns.
    let room = m.room;
    let (n_subs, n_pubs) = if room {
        (args.room_members.max(1), m.publishers.max(1))
    } else {
        (args.pairs.max(1), args.pairs.max(1))
    };
    let run = tidings::util::random_token(4);
    let topic = |i: usize| {
        if room {
            format!("room/{run}")
        } else {
            format!("pair/{run}/{i}")
        }
    };
    let before = m.broker_pid.and_then(|pid| sys::sample(Some(pid)));
    let rate = args.rate.unwrap_or(1000.0);
    // Checked now, made once everyone is connected.
    Plan::new(rate, args.warmup, args.duration, args.messages, None)?;
    let cell: Cell = Arc::new(OnceLock::new());
    let setup_error = Arc::new(Mutex::new(None));
    let mut tasks = JoinSet::new();

    p.phase("subscribing");
    let subs_ready = Arc::new(AtomicUsize::new(0));
    let mut subs = Vec::with_capacity(n_subs);
    // At most --concurrency connections (and TLS handshakes) in progress.
    let batch = args.concurrency.max(1);
    for i in 0..n_subs {
        // A persistent session, as a messaging app's subscriber would keep.
        let o = options(m, format!("{run}-sub{i}"), &transport, false);
        let (client, el) = AsyncClient::new(o, 1024);
        tasks.spawn(subscriber_loop(
            el,
            i,
            cell.clone(),
            subs_ready.clone(),
            setup_error.clone(),
        ));
        client.subscribe(topic(i), QoS::AtLeastOnce).await?;
        subs.push(client);
        if (i + 1) % batch == 0 {
            wait_count(&subs_ready, i + 1, "subscriptions", &setup_error).await?;
        }
    }
    wait_count(&subs_ready, n_subs, "subscriptions", &setup_error).await?;

    p.phase("connecting");
    let pubs_ready = Arc::new(AtomicUsize::new(0));
    let mut pubs = Vec::with_capacity(n_pubs);
    let mut orders = Vec::with_capacity(n_pubs);
    for i in 0..n_pubs {
        let o = options(m, format!("{run}-pub{i}"), &transport, true);
        let (client, el) = AsyncClient::new(o, 1024);
        let order = Arc::new(Mutex::new(VecDeque::new()));
        tasks.spawn(publisher_loop(
            el,
            order.clone(),
            cell.clone(),
            pubs_ready.clone(),
            setup_error.clone(),
        ));
        orders.push(order);
        pubs.push(client);
        if (i + 1) % batch == 0 {
            wait_count(&pubs_ready, i + 1, "publisher connections", &setup_error).await?;
        }
    }
    wait_count(&pubs_ready, n_pubs, "publisher connections", &setup_error).await?;

    let plan = Plan::new(rate, args.warmup, args.duration, args.messages, None)?;
    let fanout = if room { n_subs as u32 } else { 1 };
    let t = Tracker::new(plan, fanout);
    if let Some(e) = setup_error.lock().take() {
        t.note_error(e);
    }
    let _ = cell.set(t.clone());
    let mut queues = Vec::with_capacity(n_pubs);
    for (i, (c, order)) in pubs.iter().zip(orders).enumerate() {
        // One task per publisher publishes in schedule order; the schedule
        // itself never waits on a broker that is slow to take requests.
        let (qtx, mut qrx) = mpsc::unbounded_channel::<(u64, Vec<u8>)>();
        let (c, t2, topic) = (c.clone(), t.clone(), topic(i));
        tasks.spawn(async move {
            while let Some((k, body)) = qrx.recv().await {
                order.lock().push_back(k);
                if let Err(e) = c
                    .publish(topic.as_str(), QoS::AtLeastOnce, false, body)
                    .await
                {
                    order.lock().pop_back();
                    t2.failed(k, e);
                }
            }
        });
        queues.push(qtx);
    }

    let size = args.payload;
    let mut start = None;
    p.phase("warm-up");
    run_schedule(
        &t,
        &p,
        || start = Some(Samples::take(m.broker_pid)),
        |k, due| {
            let q = &queues[(k % n_pubs as u64) as usize];
            if q.send((k, payload(due, k, size))).is_err() {
                t.failed(k, "publisher task gone");
            }
        },
    );
    p.phase("draining");
    t.drain(Duration::from_secs_f64(args.drain)).await;
    let end = Samples::take(m.broker_pid);
    p.finish();

    let mut r = Measured::from_tracker(if room { "mqtt-room" } else { "mqtt" }, "msg", &t);
    r.latency = Some(("scheduled publish → receipt", t.latency.merged()));
    r.ack_latency = Some(("scheduled publish → PUBACK", t.ack.merged()));
    r.connections = n_subs + n_pubs;
    let (s0, s1) = (start.unwrap_or(end), end);
    r.server = Usage::new("broker", before, s0.server, s1.server);
    r.generator = Usage::new("generator", None, s0.me, s1.me);
    for c in pubs.iter().chain(&subs) {
        let _ = c.try_disconnect();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    tasks.abort_all();
    let target = json!({
        "broker": m.broker.to_string(),
        "transport": if tls { "tls" } else { "tcp" },
        "pid": m.broker_pid,
        "cpus_allowed": m.broker_pid.and_then(|p| sys::cpus_allowed_list(Some(p))),
        "mode": if room { "room" } else { "direct" },
    });
    if !tls {
        r.notes
            .push("plain TCP to the broker (no --ca given): no TLS cost on either side".into());
    }
    let security = if tls { "TLS" } else { "plain TCP" };
    let setup = if room {
        format!(
            "one topic room/{run}, {n_subs} subscribers, {n_pubs} publisher{} in turn, QoS 1, {security}, payload {size} B",
            if n_pubs == 1 { "" } else { "s" }
        )
    } else {
        format!(
            "{n_pubs} pairs publisher→subscriber on pair/{run}/N, QoS 1, {security}, payload {size} B"
        )
    };
    Ok((r, setup, target))
}
