//! The `direct` load against an MQTT broker: each pair is a publisher and a
//! subscriber on topic `pair/<run>/N`, QoS 1, measured exactly like Tidings.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
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

/// Polls a subscriber's event loop, feeding received payloads to `r`.
async fn subscriber_loop(
    mut el: EventLoop,
    mut r: Receiver,
    t: Arc<Tracker>,
    ready: Arc<AtomicUsize>,
) {
    let mut errors = 0;
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => r.on_payload(&p.payload),
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                ready.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                t.note_error(format!("subscriber: {e}"));
                errors += 1;
                if errors >= MAX_ERRORS {
                    t.closed.fetch_add(1, Ordering::Relaxed);
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
    t: Arc<Tracker>,
    ready: Arc<AtomicUsize>,
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
                if let Some(k) = by_pkid.remove(&a.pkid) {
                    t.acked(k, true);
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                ready.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                t.note_error(format!("publisher: {e}"));
                errors += 1;
                if errors >= MAX_ERRORS {
                    t.closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn wait_count(n: &AtomicUsize, want: usize, what: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while n.load(Ordering::Relaxed) < want {
        if tokio::time::Instant::now() > deadline {
            bail!(
                "only {} of {want} {what} within 20 s",
                n.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    let pairs = args.pairs.max(1);
    let run = tidings::util::random_token(4);
    let before = m.broker_pid.and_then(|pid| sys::sample(Some(pid)));
    let rate = args.rate.unwrap_or(1000.0);
    let plan = Plan::new(rate, args.warmup, args.duration, args.messages, None)?;
    let t = Tracker::new(plan, 1);
    let mut tasks = JoinSet::new();

    p.phase("subscribing");
    let subs_ready = Arc::new(AtomicUsize::new(0));
    let mut subs = Vec::with_capacity(pairs);
    for i in 0..pairs {
        // A persistent session, as a messaging app's subscriber would keep.
        let o = options(m, format!("{run}-sub{i}"), &transport, false);
        let (client, el) = AsyncClient::new(o, 1024);
        tasks.spawn(subscriber_loop(
            el,
            t.receiver(i),
            t.clone(),
            subs_ready.clone(),
        ));
        client
            .subscribe(format!("pair/{run}/{i}"), QoS::AtLeastOnce)
            .await?;
        subs.push(client);
    }
    wait_count(&subs_ready, pairs, "subscriptions").await?;

    p.phase("connecting");
    let pubs_ready = Arc::new(AtomicUsize::new(0));
    let mut queues = Vec::with_capacity(pairs);
    let mut pubs = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let o = options(m, format!("{run}-pub{i}"), &transport, true);
        let (client, el) = AsyncClient::new(o, 1024);
        let order = Arc::new(Mutex::new(VecDeque::new()));
        tasks.spawn(publisher_loop(
            el,
            order.clone(),
            t.clone(),
            pubs_ready.clone(),
        ));
        // One task per publisher publishes in schedule order; the schedule
        // itself never waits on a broker that is slow to take requests.
        let (qtx, mut qrx) = mpsc::unbounded_channel::<(u64, Vec<u8>)>();
        let (c, t2, topic) = (client.clone(), t.clone(), format!("pair/{run}/{i}"));
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
        pubs.push(client);
    }
    wait_count(&pubs_ready, pairs, "publisher connections").await?;

    let size = args.payload;
    let mut start = None;
    p.phase("warm-up");
    run_schedule(
        &t,
        &p,
        || start = Some(Samples::take(m.broker_pid)),
        |k, due| {
            let q = &queues[(k % pairs as u64) as usize];
            if q.send((k, payload(due, k, size))).is_err() {
                t.failed(k, "publisher task gone");
            }
        },
    );
    p.phase("draining");
    t.drain(Duration::from_secs_f64(args.drain)).await;
    let end = Samples::take(m.broker_pid);
    p.finish();

    let mut r = Measured::from_tracker("mqtt", "msg", &t);
    r.latency = Some(("scheduled publish → receipt", t.latency.merged()));
    r.ack_latency = Some(("scheduled publish → PUBACK", t.ack.merged()));
    r.connections = 2 * pairs;
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
    });
    if !tls {
        r.notes
            .push("plain TCP to the broker (no --ca given): no TLS cost on either side".into());
    }
    Ok((
        r,
        format!(
            "{pairs} pairs publisher→subscriber on pair/{run}/N, QoS 1, {}, payload {size} B",
            if tls { "TLS" } else { "plain TCP" }
        ),
        target,
    ))
}
