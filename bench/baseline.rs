//! The two limits `direct` is compared with: a bare QUIC relay (the
//! transport's cost, no IM logic) and bare group-committed store appends
//! (the storage cost).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use parking_lot::RwLock;
use serde_json::json;
use tidings::protocol::{Content, ConvId, Message};
use tidings::store::{LogEntry, Store};
use tidings::transport::{self, ServerIdentity, ServerTrust, tls};
use tidings::wire::frame::FrameDecoder;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::LoadArgs;
use crate::load::{Plan, Progress, Tracker, payload, run_schedule};
use crate::report::{Measured, Samples, Usage};
use crate::sys;
use crate::target::{scratch_dir, spawn_self};

/// Largest relay frame; far above any `--payload` the IM server accepts.
const RELAY_MAX_FRAME: usize = 1 << 20;

/// The server's `store.group_commit_max` default.
const GROUP_MAX: usize = 1024;

/// The server's `store.cache_capacity_mb` default.
const CACHE_BYTES: u64 = 256 * 1024 * 1024;

type Routes = Arc<RwLock<HashMap<u32, mpsc::UnboundedSender<Bytes>>>>;

fn frame(body: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(4 + body.len());
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    Bytes::from(v)
}

/// The hidden `baseline-relay-server` subcommand: prints its address and
/// certificate pin (one line each), then relays until SIGTERM. Same runtime
/// shape as the server (multi-threaded tokio, one worker per core).
pub fn relay_server(listen: SocketAddr) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let ck = rcgen::generate_simple_self_signed(vec!["tidings".into(), "localhost".into()])?;
        let cert = ck.cert.der().clone();
        let pin = tls::fingerprint(&cert);
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()),
        );
        let identity = ServerIdentity {
            chain: vec![cert],
            key,
        };
        let ep = transport::server_endpoint(listen, identity, transport::DEFAULT_KEEP_ALIVE)?;
        println!("{}", ep.local_addr()?);
        println!("{pin}");
        use std::io::Write;
        std::io::stdout().flush()?;
        let routes: Routes = Arc::default();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                i = ep.accept() => match i {
                    Some(i) => {
                        let routes = routes.clone();
                        tokio::spawn(async move {
                            if let Err(e) = relay_conn(i, routes).await {
                                eprintln!("relay connection: {e:#}");
                            }
                        });
                    }
                    None => break,
                },
                _ = term.recv() => break,
            }
        }
        ep.close(0u32.into(), b"relay stopping");
        let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
        Ok(())
    })
}

/// One relay connection: a hello frame with its id, then `[dest u32][payload]`
/// frames forwarded unchanged to `dest`'s stream.
async fn relay_conn(incoming: quinn::Incoming, routes: Routes) -> Result<()> {
    let conn = incoming.await?;
    let (mut send, mut recv) = conn.accept_bi().await?;
    let mut dec = FrameDecoder::new(RELAY_MAX_FRAME);
    let hello = loop {
        if let Some(b) = dec.next_body()? {
            break b;
        }
        match recv.read_chunk(64 * 1024, true).await? {
            Some(c) => dec.extend(&c.bytes),
            None => return Ok(()),
        }
    };
    let id = u32::from_be_bytes(
        hello
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow!("short hello"))?,
    );
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    routes.write().insert(id, tx.clone());
    // An empty frame tells the client it is routable.
    let _ = tx.send(frame(&[]));
    let writer = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(64);
        while rx.recv_many(&mut buf, 64).await > 0 {
            if send.write_all_chunks(&mut buf).await.is_err() {
                break;
            }
            buf.clear();
        }
    });
    let mut cache: HashMap<u32, mpsc::UnboundedSender<Bytes>> = HashMap::new();
    let result: Result<()> = async {
        loop {
            while let Some(body) = dec.next_body()? {
                let Some(dest) = body.get(..4).and_then(|b| b.try_into().ok()) else {
                    continue;
                };
                let dest = u32::from_be_bytes(dest);
                let out = match cache.get(&dest) {
                    Some(s) => Some(s.clone()),
                    None => {
                        let s = routes.read().get(&dest).cloned();
                        if let Some(s) = &s {
                            cache.insert(dest, s.clone());
                        }
                        s
                    }
                };
                if let Some(out) = out {
                    let _ = out.send(frame(&body));
                }
            }
            match recv.read_chunk(64 * 1024, true).await {
                Ok(Some(c)) => dec.extend(&c.bytes),
                Ok(None) | Err(_) => return Ok(()),
            }
        }
    }
    .await;
    routes.write().remove(&id);
    drop(tx);
    writer.abort();
    result
}

/// A relay client: a queue its writer task drains into the stream, and the read side.
struct RelayClient {
    tx: mpsc::UnboundedSender<Bytes>,
    recv: Option<(quinn::RecvStream, FrameDecoder)>,
    _conn: quinn::Connection,
}

async fn relay_connect(ep: quinn::Endpoint, addr: SocketAddr, id: u32) -> Result<RelayClient> {
    let conn = ep
        .connect(addr, tidings::client::DEFAULT_SERVER_NAME)?
        .await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&frame(&id.to_be_bytes())).await?;
    let mut dec = FrameDecoder::new(RELAY_MAX_FRAME);
    loop {
        if dec.next_body()?.is_some() {
            break;
        }
        match recv.read_chunk(64 * 1024, true).await? {
            Some(c) => dec.extend(&c.bytes),
            None => bail!("relay closed before registering {id}"),
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(64);
        while rx.recv_many(&mut buf, 64).await > 0 {
            if send.write_all_chunks(&mut buf).await.is_err() {
                break;
            }
            buf.clear();
        }
    });
    Ok(RelayClient {
        tx,
        recv: Some((recv, dec)),
        _conn: conn,
    })
}

async fn relay_receive(
    mut recv: quinn::RecvStream,
    mut dec: FrameDecoder,
    mut r: crate::load::Receiver,
) {
    loop {
        while let Ok(Some(body)) = dec.next_body() {
            if body.len() > 4 {
                r.on_payload(&body[4..]);
            }
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(c)) => dec.extend(&c.bytes),
            _ => return,
        }
    }
}

/// `baseline`: the `direct` load (same pairs, rate, payload) through the
/// bare relay, run as a child process so its CPU is measured like the server's.
pub async fn relay(args: &LoadArgs) -> Result<(Measured, String)> {
    let p = Progress::new(args.quiet);
    let scratch = scratch_dir(args, "relay")?;
    let (mut child, lines) = spawn_self(
        &["baseline-relay-server", "--listen", "127.0.0.1:0"],
        2,
        scratch,
        args.server_cpus.as_ref().map(|c| c.0.as_slice()),
    )?;
    let addr: SocketAddr = lines[0].parse().context("relay address")?;
    let pin = tls::parse_fingerprint(&lines[1])?;
    let pid = child.pid();
    let before = pid.and_then(|p| sys::sample(Some(p)));

    let pairs = args.pairs.max(1);
    let per_ep = args.clients_per_endpoint.max(1);
    let mut eps = Vec::new();
    for _ in 0..(2 * pairs).div_ceil(per_ep) {
        eps.push(transport::client_endpoint(addr, ServerTrust::Pin(pin))?);
    }
    p.phase("connecting");
    let sem = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut set = JoinSet::new();
    for i in 0..2 * pairs {
        let permit = sem.clone().acquire_owned().await?;
        let ep = eps[i / per_ep].clone();
        set.spawn(async move {
            let r = relay_connect(ep, addr, i as u32).await;
            drop(permit);
            (i, r)
        });
    }
    let mut clients: Vec<Option<RelayClient>> = (0..2 * pairs).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, r) = r?;
        clients[i] = Some(r.context("connecting to the relay")?);
    }
    let mut clients: Vec<RelayClient> = clients.into_iter().flatten().collect();

    let rate = args.rate.unwrap_or(1000.0);
    let plan = Plan::new(rate, args.warmup, args.duration, args.messages, None)?;
    let t = Tracker::new(plan, 1);
    let mut rx_tasks = JoinSet::new();
    for i in 0..pairs {
        if let Some((recv, dec)) = clients[2 * i + 1].recv.take() {
            rx_tasks.spawn(relay_receive(recv, dec, t.receiver(i)));
        }
    }
    let size = args.payload;
    let mut start = None;
    p.phase("warm-up");
    run_schedule(
        &t,
        &p,
        || start = Some(Samples::take(pid)),
        |k, due| {
            let i = (k % pairs as u64) as usize;
            let dest = (2 * i + 1) as u32;
            let mut body = Vec::with_capacity(4 + size);
            body.extend_from_slice(&dest.to_be_bytes());
            body.extend_from_slice(&payload(due, k, size));
            if clients[2 * i].tx.send(frame(&body)).is_ok() {
                t.acked(k, false);
            } else {
                t.failed(k, "relay client writer gone");
            }
        },
    );
    p.phase("draining");
    t.drain(Duration::from_secs_f64(args.drain)).await;
    let end = Samples::take(pid);
    rx_tasks.abort_all();
    p.finish();

    let mut m = Measured::from_tracker("baseline", "msg", &t);
    m.latency = Some(("scheduled send → receipt", t.latency.merged()));
    m.connections = 2 * pairs;
    let (s0, s1) = (start.unwrap_or(end), end);
    m.server = Usage::new("relay", before, s0.server, s1.server);
    m.generator = Usage::new("generator", None, s0.me, s1.me);
    drop(clients);
    for ep in &eps {
        ep.close(0u32.into(), b"bench done");
    }
    for ep in &eps {
        let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
    }
    child.stop()?;
    Ok((
        m,
        format!(
            "bare QUIC relay, {pairs} pairs (a→b), payload {} B, no IM logic, no storage",
            args.payload
        ),
    ))
}

/// `baseline-store`: the server's commit loop without the server: one
/// writer thread, batches of everything queued (up to 1024), one durable
/// flush per batch, through the same [`Store`] at the same offered rate.
pub fn store(args: &LoadArgs) -> Result<(Measured, String)> {
    let p = Progress::new(args.quiet);
    let scratch = scratch_dir(args, "store")?;
    let fsync = args.fsync.unwrap_or(true);
    let result = store_in(args, &scratch, fsync, &p);
    let _ = std::fs::remove_dir_all(&scratch);
    p.finish();
    let m = result?;
    Ok((
        m,
        format!(
            "group-committed appends, {} conversations, payload {} B, fsync {fsync}",
            args.pairs.max(1),
            args.payload
        ),
    ))
}

/// A sample of this process with the calling thread's CPU taken out.
fn without_this_thread(mut s: sys::Sample) -> sys::Sample {
    s.cpu_s -= sys::thread_cpu_s();
    s
}

fn store_in(
    args: &LoadArgs,
    scratch: &std::path::Path,
    fsync: bool,
    p: &Progress,
) -> Result<Measured> {
    let store = Arc::new(Store::open(&scratch.join("store"), CACHE_BYTES, fsync)?);
    let convs: Vec<ConvId> = (0..args.pairs.max(1)).map(|_| ConvId::random()).collect();
    let rate = args.rate.unwrap_or(1000.0);
    let plan = Plan::new(rate, args.warmup, args.duration, args.messages, None)?;
    let t = Tracker::new(plan, 0);
    let (tx, rx) = crossbeam_channel::unbounded::<u64>();
    let size = args.payload;

    let writer = {
        let (t, store, convs) = (t.clone(), store.clone(), convs.clone());
        std::thread::Builder::new()
            .name("bench-commit".into())
            .spawn(move || -> Result<(f64, u64, u64)> {
                let mut seqs = vec![0u64; convs.len()];
                let mut jobs: Vec<u64> = Vec::with_capacity(GROUP_MAX);
                let (mut cpu0, mut cpu1) = (None, None);
                let (mut batches, mut in_window) = (0u64, 0u64);
                while let Ok(first) = rx.recv() {
                    jobs.push(first);
                    while jobs.len() < GROUP_MAX {
                        match rx.try_recv() {
                            Ok(k) => jobs.push(k),
                            Err(_) => break,
                        }
                    }
                    if cpu0.is_none() && jobs.iter().any(|&k| t.plan.in_window(k)) {
                        cpu0 = Some(sys::thread_cpu_s());
                    }
                    let entries: Vec<LogEntry> = jobs
                        .iter()
                        .map(|&k| {
                            let i = (k % convs.len() as u64) as usize;
                            seqs[i] += 1;
                            LogEntry::new(
                                Message::new(
                                    convs[i],
                                    seqs[i],
                                    format!("s{i}"),
                                    tidings::util::now_ms(),
                                    Content::Binary(payload(t.plan.at_ns(k), k, size)),
                                ),
                                "default",
                                "127.0.0.1",
                            )
                        })
                        .collect();
                    // The server's commit: the batch, then its write-ahead
                    // log made durable (sled flushes at checkpoints, below).
                    store.append(&entries, &[])?;
                    batches += 1;
                    if jobs.iter().any(|&k| t.plan.in_window(k)) {
                        in_window += 1;
                    }
                    for &k in &jobs {
                        t.acked(k, true);
                    }
                    if jobs.iter().any(|&k| k + 1 >= t.plan.k_end) {
                        cpu1 = Some(sys::thread_cpu_s());
                    }
                    jobs.clear();
                }
                let cpu = cpu1.zip(cpu0).map(|(b, a)| b - a).unwrap_or(0.0);
                Ok((cpu, batches, in_window))
            })?
    };

    // Checkpoints as the server makes them (`store::wal`).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checkpointer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::Builder::new()
            .name("bench-checkpoint".into())
            .spawn(move || -> Result<()> {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(tidings::store::wal::CHECKPOINT_TICK);
                    if store.checkpoint_due() {
                        store.checkpoint()?;
                    }
                }
                Ok(())
            })?
    };

    let mut start = None;
    p.phase("warm-up");
    run_schedule(
        &t,
        p,
        || start = Some(sys::sample(None).map(without_this_thread)),
        |k, _due| {
            if tx.send(k).is_err() {
                t.failed(k, "commit thread gone");
            }
        },
    );
    drop(tx);
    p.phase("draining");
    let (writer_cpu, batches, window_batches) = writer
        .join()
        .map_err(|_| anyhow!("commit thread panicked"))??;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    checkpointer
        .join()
        .map_err(|_| anyhow!("checkpoint thread panicked"))??;
    let end = sys::sample(None).map(without_this_thread);

    let mut m = Measured::from_tracker("baseline-store", "append", &t);
    m.ack_latency = Some(("scheduled append → durable", t.ack.merged()));
    let (s0, s1) = (start.unwrap_or(end), end);
    m.server = Usage::new("store", None, s0, s1);
    m.extra.insert(
        "batches".into(),
        json!({
            "total": batches,
            "in_window": window_batches,
            "mean_size": if window_batches > 0 { ((m.ok as f64 / window_batches as f64) * 10.0).round() / 10.0 } else { 0.0 },
        }),
    );
    m.extra.insert(
        "writer_cpu_us_per_append".into(),
        json!(if m.ok > 0 {
            (writer_cpu * 1e6 / m.ok as f64 * 10.0).round() / 10.0
        } else {
            0.0
        }),
    );
    m.notes.push(
        "store CPU is this process less the schedule thread: the writer and sled's own threads"
            .into(),
    );
    Ok(m)
}
