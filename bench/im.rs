//! Scenarios against a Tidings server, through the real client library.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tidings::client::{Client, ClientEvent, ClientOptions, Events, Signer};
use tidings::protocol::{
    Anchor, Content, ConvId, ConvKind, CreateConversation, Direction, Event, HistoryQuery,
    SendMessage, SyncMode,
};
use tidings::transport::{self, ServerTrust};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::LoadArgs;
use crate::load::{Progress, Receiver, Tracker, payload, run_schedule};
use crate::report::{Measured, Samples, Usage};
use crate::sys::{self, Sample};
use crate::target::Target;

/// Endpoints a non-holding login storm cycles through; its connections are short-lived.
const STORM_ENDPOINTS: usize = 4;

/// Connection details plus a pool of shared UDP endpoints, so thousands of
/// clients need a handful of sockets, not thousands.
pub struct Im {
    addr: SocketAddr,
    pin: [u8; 32],
    app_id: String,
    master_key: String,
    per_ep: usize,
    concurrency: usize,
    request_timeout: Duration,
    eps: Mutex<Vec<quinn::Endpoint>>,
    /// Prefix of every client id, so runs against one server do not meet.
    run: String,
}

impl Im {
    pub fn new(target: &Target, args: &LoadArgs) -> Arc<Im> {
        Arc::new(Im {
            addr: target.addr,
            pin: target.pin,
            app_id: target.creds.app_id.clone(),
            master_key: target.creds.master_key.clone(),
            per_ep: args.clients_per_endpoint.max(1),
            concurrency: args.concurrency.max(1),
            request_timeout: Duration::from_secs(30),
            eps: Mutex::new(Vec::new()),
            run: tidings::util::random_token(4),
        })
    }

    pub fn id(&self, role: &str, i: usize) -> String {
        format!("{}-{role}{i}", self.run)
    }

    fn endpoint(&self, idx: usize) -> Result<quinn::Endpoint> {
        let mut eps = self.eps.lock();
        while eps.len() <= idx {
            eps.push(transport::client_endpoint(
                self.addr,
                ServerTrust::Pin(self.pin),
            )?);
        }
        Ok(eps[idx].clone())
    }

    /// Connects and logs in `id` through shared endpoint `ep`.
    pub async fn connect(&self, ep: usize, id: String, sync: SyncMode) -> Result<(Client, Events)> {
        self.connect_device(ep, id, sync, None).await
    }

    /// As [`Im::connect`], with a push device the login binds to `id` (`push`).
    pub async fn connect_device(
        &self,
        ep: usize,
        id: String,
        sync: SyncMode,
        device_token: Option<String>,
    ) -> Result<(Client, Events)> {
        let mut o = ClientOptions::new(
            self.addr,
            ServerTrust::Pin(self.pin),
            self.app_id.clone(),
            Signer::MasterKey(self.master_key.clone()),
            id,
        );
        o.sync = sync;
        o.request_timeout = self.request_timeout;
        o.endpoint = Some(self.endpoint(ep)?);
        o.device_token = device_token;
        Ok(Client::connect(o).await?)
    }

    /// Connects all `ids`, `--concurrency` at a time; fails on the first refusal.
    pub async fn connect_many(
        self: &Arc<Self>,
        ids: Vec<String>,
        sync: SyncMode,
        progress: &Progress,
    ) -> Result<Vec<(Client, Events)>> {
        let n = ids.len();
        let sem = Arc::new(Semaphore::new(self.concurrency));
        let mut set = JoinSet::new();
        let mut out: Vec<Option<(Client, Events)>> = (0..n).map(|_| None).collect();
        let mut done = 0u64;
        let mut take = |r: (usize, String, Result<(Client, Events)>)| -> Result<()> {
            let (i, id, res) = r;
            out[i] = Some(res.with_context(|| format!("connecting {id}"))?);
            done += 1;
            progress.set(done, n as u64);
            Ok(())
        };
        for (i, id) in ids.into_iter().enumerate() {
            let permit = sem.clone().acquire_owned().await?;
            let me = self.clone();
            set.spawn(async move {
                let r = me.connect(i / me.per_ep, id.clone(), sync).await;
                drop(permit);
                (i, id, r)
            });
            while let Some(r) = set.try_join_next() {
                take(r?)?;
            }
        }
        while let Some(r) = set.join_next().await {
            take(r?)?;
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Closes every endpoint and waits (bounded) for the close frames to go out.
    pub async fn close(&self) {
        let eps: Vec<quinn::Endpoint> = self.eps.lock().drain(..).collect();
        for ep in &eps {
            ep.close(0u32.into(), b"bench done");
        }
        for ep in &eps {
            let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
        }
    }
}

pub(crate) fn binary(conv: ConvId, body: Vec<u8>) -> SendMessage {
    SendMessage {
        content: Content::Binary(body),
        ..SendMessage::text(conv, "")
    }
}

/// Feeds one client's received messages to its [`Receiver`] until the
/// connection ends or the task is aborted.
pub(crate) async fn receive(mut events: Events, mut r: Receiver, t: Arc<Tracker>) {
    while let Some(ev) = events.recv().await {
        match ev {
            ClientEvent::Server(Event::Message { msg, .. }) => {
                if let Content::Binary(b) = &msg.content {
                    r.on_payload(b);
                }
            }
            ClientEvent::Closed { code, reason } => {
                t.closed.fetch_add(1, Ordering::Relaxed);
                t.note_error(format!(
                    "a receiver's connection closed ({code:?}): {reason}"
                ));
                break;
            }
            ClientEvent::Server(_) => {}
        }
    }
}

/// Who sends into which conversation and who listens, for one message scenario.
pub(crate) struct Wiring {
    pub senders: Vec<(Client, ConvId)>,
    pub receivers: Vec<Events>,
    pub fanout: u32,
    pub connections: usize,
    pub setup: String,
}

/// A normal conversation of `members` (and its creator) named `name`.
pub fn group(members: Vec<String>, name: String) -> CreateConversation {
    CreateConversation {
        members,
        name: Some(name),
        attr: None,
        unique: false,
        kind: ConvKind::Normal,
        sig: None,
        ttl_secs: None,
    }
}

pub(crate) async fn wire_direct(im: &Arc<Im>, args: &LoadArgs, p: &Progress) -> Result<Wiring> {
    let pairs = args.pairs.max(1);
    let mut ids = Vec::with_capacity(2 * pairs);
    for i in 0..pairs {
        ids.push(im.id("a", i));
        ids.push(im.id("b", i));
    }
    p.phase("connecting");
    let conns = im.connect_many(ids.clone(), SyncMode::Push, p).await?;
    p.phase("conversations");
    let sem = Arc::new(Semaphore::new(im.concurrency));
    let mut set = JoinSet::new();
    for i in 0..pairs {
        let a = conns[2 * i].0.clone();
        let b = ids[2 * i + 1].clone();
        let permit = sem.clone().acquire_owned().await?;
        set.spawn(async move {
            let r = a.create_unique(vec![b]).await;
            drop(permit);
            (i, r)
        });
    }
    let mut convs = vec![None; pairs];
    while let Some(r) = set.join_next().await {
        let (i, r) = r?;
        convs[i] = Some(r.context("creating a pair's conversation")?.id);
    }
    let mut senders = Vec::with_capacity(pairs);
    let mut receivers = Vec::with_capacity(pairs);
    // Pairs come as (a, b): a sends, b receives.
    for (i, pair) in conns.chunks(2).enumerate() {
        let conv = convs[i].ok_or_else(|| anyhow!("missing conversation"))?;
        senders.push((pair[0].0.clone(), conv));
    }
    for (i, (_client, events)) in conns.into_iter().enumerate() {
        if i % 2 == 1 {
            receivers.push(events);
        }
    }
    Ok(Wiring {
        senders,
        receivers,
        fanout: 1,
        connections: 2 * pairs,
        setup: format!("{pairs} pairs (a→b), payload {} B", args.payload),
    })
}

async fn wire_group(im: &Arc<Im>, args: &LoadArgs, p: &Progress) -> Result<Wiring> {
    let k = args.group_size.clamp(2, 500);
    let total = args.connections.unwrap_or(10 * k).max(k);
    let groups = total / k;
    let ids: Vec<String> = (0..groups * k)
        .map(|i| im.id(&format!("g{}m", i / k), i % k))
        .collect();
    p.phase("connecting");
    let conns = im.connect_many(ids.clone(), SyncMode::Push, p).await?;
    p.phase("groups");
    let mut convs = Vec::with_capacity(groups);
    for g in 0..groups {
        let owner = &conns[g * k].0;
        let info = owner
            .create_conversation(group(
                ids[g * k + 1..(g + 1) * k].to_vec(),
                format!("bench group {g}"),
            ))
            .await
            .context("creating a group")?;
        convs.push(info.id);
    }
    // Member-major order, so consecutive sends go to different groups.
    let mut senders = Vec::with_capacity(groups * k);
    for m in 0..k {
        for (g, conv) in convs.iter().enumerate() {
            senders.push((conns[g * k + m].0.clone(), *conv));
        }
    }
    let receivers = conns.into_iter().map(|(_, e)| e).collect();
    Ok(Wiring {
        senders,
        receivers,
        fanout: (k - 1) as u32,
        connections: groups * k,
        setup: format!(
            "{groups} groups of {k} (every member sends), payload {} B",
            args.payload
        ),
    })
}

async fn wire_room(im: &Arc<Im>, args: &LoadArgs, p: &Progress) -> Result<Wiring> {
    let m = args.room_members.max(2);
    let ids: Vec<String> = (0..m).map(|i| im.id("r", i)).collect();
    p.phase("connecting");
    let conns = im.connect_many(ids, SyncMode::Push, p).await?;
    p.phase("joining");
    let room = conns[0]
        .0
        .create_conversation(CreateConversation {
            kind: ConvKind::ChatRoom,
            ..group(Vec::new(), "bench room".into())
        })
        .await
        .context("creating the room")?
        .id;
    let sem = Arc::new(Semaphore::new(im.concurrency));
    let mut set = JoinSet::new();
    for (c, _) in &conns[1..] {
        let c = c.clone();
        let permit = sem.clone().acquire_owned().await?;
        set.spawn(async move {
            let r = c.join(room).await;
            drop(permit);
            r
        });
    }
    while let Some(r) = set.join_next().await {
        r?.context("joining the room")?;
    }
    let senders = conns.iter().map(|(c, _)| (c.clone(), room)).collect();
    let receivers = conns.into_iter().map(|(_, e)| e).collect();
    Ok(Wiring {
        senders,
        receivers,
        fanout: (m - 1) as u32,
        connections: m,
        setup: format!(
            "one chat room of {m} members (every member sends), payload {} B",
            args.payload
        ),
    })
}

/// `direct`, `group` and `room`: open-loop sends, latency to each receiver.
pub async fn messages(
    scenario: &str,
    args: &LoadArgs,
    target: &Target,
) -> Result<(Measured, String)> {
    let p = Progress::new(args.quiet);
    let im = Im::new(target, args);
    let before = target.pid.and_then(|pid| sys::sample(Some(pid)));
    let w = match scenario {
        "direct" => wire_direct(&im, args, &p).await?,
        "group" => wire_group(&im, args, &p).await?,
        "room" => wire_room(&im, args, &p).await?,
        other => unreachable!("not a message scenario: {other}"),
    };
    // Let membership events from the set-up arrive before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let rate = args.rate.unwrap_or(1000.0);
    let plan = crate::load::Plan::new(rate, args.warmup, args.duration, args.messages, None)?;
    let t = Tracker::new(plan, w.fanout);
    let mut rx_tasks = JoinSet::new();
    for (i, ev) in w.receivers.into_iter().enumerate() {
        rx_tasks.spawn(receive(ev, t.receiver(i), t.clone()));
    }
    p.phase("warm-up");
    let mut start = None;
    let senders = &w.senders;
    let size = args.payload;
    run_schedule(
        &t,
        &p,
        || start = Some(Samples::take(target.pid)),
        |k, due| {
            let (client, conv) = &senders[(k % senders.len() as u64) as usize];
            let (client, conv, t) = (client.clone(), *conv, t.clone());
            tokio::spawn(async move {
                match client.send(binary(conv, payload(due, k, size))).await {
                    Ok(_) => t.acked(k, true),
                    Err(e) => t.failed(k, e),
                }
            });
        },
    );
    p.phase("draining");
    t.drain(Duration::from_secs_f64(args.drain)).await;
    let end = Samples::take(target.pid);
    rx_tasks.abort_all();
    p.finish();

    let m = message_figures(scenario, &t, w.connections, before, start, end);
    drop(w.senders);
    im.close().await;
    Ok((m, w.setup))
}

/// The figures of a message run once its window is drained: latency from
/// the scheduled send to the receipt and to the server's answer, CPU and
/// memory between the `start` and `end` samples (`before`: before any
/// client connected). `ws-direct` reports through this too, so the two
/// doors' figures mean the same.
pub(crate) fn message_figures(
    scenario: &str,
    t: &Tracker,
    connections: usize,
    before: Option<Sample>,
    start: Option<Samples>,
    end: Samples,
) -> Measured {
    let mut m = Measured::from_tracker(scenario, "msg", t);
    m.latency = Some(("scheduled send → receipt", t.latency.merged()));
    m.ack_latency = Some(("scheduled send → Sent reply", t.ack.merged()));
    m.connections = connections;
    m.sent_total = t.launched.load(Ordering::Relaxed);
    let (s0, s1) = (start.unwrap_or(end), end);
    m.server = Usage::new("server", before, s0.server, s1.server);
    m.generator = Usage::new("generator", None, s0.me, s1.me);
    m
}

/// `history`: open-loop history queries against one pre-filled conversation.
pub async fn history(args: &LoadArgs, target: &Target) -> Result<(Measured, String)> {
    let p = Progress::new(args.quiet);
    let im = Im::new(target, args);
    let before = target.pid.and_then(|pid| sys::sample(Some(pid)));
    let c = args.connections.unwrap_or(10).clamp(1, 500);
    let size = args.history_size.max(1);
    let ids: Vec<String> = (0..c).map(|i| im.id("h", i)).collect();
    p.phase("connecting");
    let (owner, _owner_events) = im.connect(0, ids[0].clone(), SyncMode::Pull).await?;
    let conv = owner
        .create_conversation(group(ids[1..].to_vec(), "bench history".into()))
        .await?
        .id;
    p.phase("filling");
    let sem = Arc::new(Semaphore::new(im.concurrency));
    let mut set = JoinSet::new();
    for i in 0..size {
        let permit = sem.clone().acquire_owned().await?;
        let owner = owner.clone();
        let body = payload(0, u64::MAX, args.payload);
        set.spawn(async move {
            let r = owner.send(binary(conv, body)).await;
            drop(permit);
            r
        });
        while let Some(r) = set.try_join_next() {
            r?.context("filling the history")?;
            p.set(i, size);
        }
    }
    while let Some(r) = set.join_next().await {
        r?.context("filling the history")?;
    }
    // Members log in after the fill, in pull mode, so they are not sent the backlog.
    let mut clients = vec![owner.clone()];
    if c > 1 {
        let rest = im
            .connect_many(ids[1..].to_vec(), SyncMode::Pull, &p)
            .await?;
        clients.extend(rest.into_iter().map(|(cl, _)| cl));
    }

    let rate = args.rate.unwrap_or(500.0);
    let plan = crate::load::Plan::new(rate, args.warmup, args.duration, args.messages, None)?;
    let t = Tracker::new(plan, 0);
    let returned = Arc::new(AtomicU64::new(0));
    let limit = args.history_limit.max(1);
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut start = None;
    p.phase("warm-up");
    run_schedule(
        &t,
        &p,
        || start = Some(Samples::take(target.pid)),
        |k, _due| {
            let client = clients[(k % clients.len() as u64) as usize].clone();
            let q = HistoryQuery {
                conv,
                anchor: Anchor::Seq(rng.gen_range(1..=size)),
                direction: Direction::Before,
                inclusive: true,
                limit,
                lctype: None,
            };
            let (t, returned) = (t.clone(), returned.clone());
            tokio::spawn(async move {
                match client.history(q).await {
                    Ok((msgs, _)) => {
                        if t.plan.in_window(k) {
                            returned.fetch_add(msgs.len() as u64, Ordering::Relaxed);
                        }
                        t.acked(k, true);
                    }
                    Err(e) => t.failed(k, e),
                }
            });
        },
    );
    p.phase("draining");
    t.drain(Duration::from_secs_f64(args.drain)).await;
    let end = Samples::take(target.pid);
    p.finish();

    let mut m = Measured::from_tracker("history", "query", &t);
    m.ack_latency = Some(("scheduled query → History reply", t.ack.merged()));
    m.connections = c;
    let (s0, s1) = (start.unwrap_or(end), end);
    m.server = Usage::new("server", before, s0.server, s1.server);
    m.generator = Usage::new("generator", None, s0.me, s1.me);
    let got = returned.load(Ordering::Relaxed);
    m.extra.insert(
        "messages_per_query".into(),
        json!(if m.ok > 0 {
            (got as f64 / m.ok as f64 * 10.0).round() / 10.0
        } else {
            0.0
        }),
    );
    drop(clients);
    drop(owner);
    im.close().await;
    Ok((
        m,
        format!(
            "{c} members querying one conversation of {size} messages, pages of {limit} before a random seq"
        ),
    ))
}

/// `connect`: open-loop logins (QUIC handshake plus signed login).
pub async fn connect(args: &LoadArgs, target: &Target) -> Result<(Measured, String)> {
    let p = Progress::new(args.quiet);
    let im = Im::new(target, args);
    let before = target.pid.and_then(|pid| sys::sample(Some(pid)));
    let rate = args.rate.unwrap_or(200.0);
    let plan = crate::load::Plan::new(
        rate,
        args.warmup,
        args.duration,
        args.messages,
        args.connections.map(|c| c as u64),
    )?;
    let t = Tracker::new(plan, 0);
    let held: Arc<Mutex<Vec<Client>>> = Arc::new(Mutex::new(Vec::new()));
    let hold = args.hold;
    let per_ep = im.per_ep;
    let mut start = None;
    p.phase("warm-up");
    run_schedule(
        &t,
        &p,
        || start = Some(Samples::take(target.pid)),
        |k, _due| {
            let (im, t, held) = (im.clone(), t.clone(), held.clone());
            let ep = if hold {
                k as usize / per_ep
            } else {
                (k as usize / per_ep) % STORM_ENDPOINTS
            };
            tokio::spawn(async move {
                match im.connect(ep, im.id("c", k as usize), SyncMode::Push).await {
                    Ok((client, _events)) => {
                        t.acked(k, true);
                        if hold {
                            held.lock().push(client);
                        }
                    }
                    Err(e) => t.failed(k, format!("{e:#}")),
                }
            });
        },
    );
    p.phase("draining");
    t.drain(Duration::from_secs_f64(args.drain)).await;
    let end = Samples::take(target.pid);
    p.finish();

    let mut m = Measured::from_tracker("connect", "login", &t);
    m.ack_latency = Some(("scheduled login → LoggedIn", t.ack.merged()));
    let (s0, s1) = (start.unwrap_or(end), end);
    m.server = Usage::new(
        "server",
        if hold { before } else { None },
        s0.server,
        s1.server,
    );
    m.generator = Usage::new("generator", None, s0.me, s1.me);
    m.connections = if hold { held.lock().len() } else { 0 };
    if !hold {
        m.notes.push(
            "each connection is dropped right after its login (give --hold to keep them)".into(),
        );
    }
    held.lock().clear();
    im.close().await;
    Ok((
        m,
        format!(
            "logins at {rate:.0}/s, {}",
            if hold {
                "held open"
            } else {
                "closed after login"
            }
        ),
    ))
}

/// `idle`: N logged-in connections doing nothing; memory and CPU they cost.
pub async fn idle(args: &LoadArgs, target: &Target) -> Result<(Measured, String)> {
    let p = Progress::new(args.quiet);
    let im = Im::new(target, args);
    let n = args.connections.unwrap_or(1000).max(1);
    let before = target.pid.and_then(|pid| sys::sample(Some(pid)));
    p.phase("connecting");
    let started = Instant::now();
    let ids = (0..n).map(|i| im.id("i", i)).collect();
    let conns = im.connect_many(ids, SyncMode::Push, &p).await?;
    let connect_s = started.elapsed().as_secs_f64();
    p.phase("warm-up");
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let s0 = Samples::take(target.pid);
    p.phase("idle");
    let until = Instant::now() + Duration::from_secs_f64(args.duration);
    while Instant::now() < until {
        let left = until - Instant::now();
        tokio::time::sleep(left.min(Duration::from_millis(200))).await;
        let done = args.duration - left.as_secs_f64();
        p.set((done * 10.0) as u64, (args.duration * 10.0) as u64);
    }
    let s1 = Samples::take(target.pid);
    p.finish();
    let closed = conns.iter().filter(|(c, _)| c.is_closed()).count();

    let mut m = Measured {
        scenario: "idle".into(),
        unit: "conn",
        window_s: s1
            .me
            .zip(s0.me)
            .map(|(a, b)| a.at.duration_since(b.at).as_secs_f64())
            .unwrap_or(args.duration),
        scheduled: n as u64,
        ok: n as u64,
        connections: n,
        closed: closed as u64,
        ..Measured::default()
    };
    m.server = Usage::new("server", before, s0.server, s1.server);
    m.generator = Usage::new("generator", None, s0.me, s1.me);
    m.extra.insert(
        "setup".into(),
        json!(format!(
            "{n} logins in {connect_s:.2} s ({:.0}/s at concurrency {})",
            n as f64 / connect_s,
            im.concurrency
        )),
    );
    drop(conns);
    im.close().await;
    Ok((m, format!("{n} idle connections")))
}
