//! `ws-direct`: the `direct` load over the LeanCloud door, from clients
//! that speak as LeanCloud's SDKs do (/work/shared/design/leancloud-sdk-protocol.md
//! §1.4, §3.1): one WebSocket per client with subprotocol `lc.protobuf2.3`,
//! each binary message one `GenericCommand`; `session/open` signed like
//! the JS SDK's signature factory, a unique `conv/start` per pair, then
//! `direct` with a JSON text body (`{"_lctext":…,"_lctype":-1}`) answered
//! by `ack{uid, t}`. Receivers ack every push with `ack{cid, mid}` and no
//! `i`, as the Swift SDK does.
//!
//! The schedule, tracking and report are `direct`'s (`load.rs`, `im.rs`),
//! so the two doors' figures mean the same: latency from each message's
//! scheduled send time to its arrival at the other client, and to the
//! sender's `ack`. The scheduled time and message number ride in the text
//! as 32 hex digits, padded to `--payload` bytes of JSON.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use prost::Message as _;
use tidings::auth::{Credentials, random_nonce, sign_login};
use tidings::gateway::proto::{
    AckCommand, CommandType, ConvCommand, DirectCommand, GenericCommand, OpType, SessionCommand,
};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::LoadArgs;
use crate::im::message_figures;
use crate::load::{HEADER, Progress, Receiver, Tracker, parse, run_schedule};
use crate::report::{Measured, Samples};
use crate::sys;
use crate::target::Target;

/// Binary protobuf, unread counts on login: what the JS SDK offers first.
const SUBPROTOCOL: &str = "lc.protobuf2.3";
/// JS SDK 5's capabilities (§2.3).
const CONFIG_BITMAP: i64 = 187;
const UA: &str = "tidings-bench";
/// The door's default listener, for an existing server without `--gateway`.
const DEFAULT_GATEWAY: &str = "127.0.0.1:7452";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from the socket at a time; bigger messages still fit.
const READ_BUFFER: usize = 8 * 1024;

/// A text message as the SDKs write it; the digits go between the two.
const TEXT_HEAD: &str = r#"{"_lctext":""#;
const TEXT_TAIL: &str = r#"","_lctype":-1}"#;
/// The scheduled time and message number, hex.
const DIGITS: usize = 2 * HEADER;

/// The shortest text body: the JSON around the digits.
pub fn min_payload() -> usize {
    TEXT_HEAD.len() + DIGITS + TEXT_TAIL.len()
}

/// A message body of `size` bytes (at least [`min_payload`]) carrying
/// `due` and `k`, padded with spaces inside the text.
pub fn text(due_ns: u64, k: u64, size: usize) -> String {
    let mut head = [0u8; HEADER];
    head[..8].copy_from_slice(&due_ns.to_le_bytes());
    head[8..].copy_from_slice(&k.to_le_bytes());
    let pad = size.saturating_sub(min_payload());
    let mut s = String::with_capacity(min_payload() + pad);
    s.push_str(TEXT_HEAD);
    s.push_str(&hex::encode(head));
    s.extend(std::iter::repeat_n(' ', pad));
    s.push_str(TEXT_TAIL);
    s
}

/// The 16 bytes [`crate::load::parse`] reads, from a body made by [`text`].
pub fn text_header(body: &str) -> Option<[u8; HEADER]> {
    let digits = body.strip_prefix(TEXT_HEAD)?.get(..DIGITS)?;
    let mut out = [0u8; HEADER];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Who waits for the answer with this `i`.
enum Waiter {
    /// A set-up request (`session/open`, `conv/start`).
    Reply(oneshot::Sender<GenericCommand>),
    /// Message `k` of the schedule: its `ack` goes to the tracker.
    Sent(u64),
}

/// What a client's reader and its users share.
struct Shared {
    peer: String,
    out: mpsc::UnboundedSender<Message>,
    waiting: Mutex<HashMap<i32, Waiter>>,
    /// Set once the schedule exists; before, pushes are not counted.
    tracker: OnceLock<Arc<Tracker>>,
}

impl Shared {
    fn send(&self, cmd: &GenericCommand) -> bool {
        self.out
            .send(Message::Binary(cmd.encode_to_vec().into()))
            .is_ok()
    }
}

/// One LeanCloud IM client on its own socket.
pub struct LcClient {
    sh: Arc<Shared>,
    next_i: AtomicI32,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl LcClient {
    /// Connects to the door at `addr` and opens `peer`'s session, signed
    /// with the app's master key (`tidings::auth::sign_login`, what a
    /// LeanCloud signature factory computes). `shard`: its histogram shard.
    pub async fn open(
        addr: SocketAddr,
        creds: &Credentials,
        peer: String,
        shard: usize,
    ) -> Result<LcClient> {
        let mut req = format!("ws://{addr}/").into_client_request()?;
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        // No Nagle, as the server's side of the door. A small read buffer:
        // tungstenite zeroes the whole buffer before each read (128 KiB by
        // default), which would cost the generator more than the protocol.
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), true)
            .await
            .with_context(|| format!("WebSocket to {addr}"))?;
        let (sink, stream) = ws.split();
        let (out, rx) = mpsc::unbounded_channel();
        let sh = Arc::new(Shared {
            peer: peer.clone(),
            out,
            waiting: Mutex::new(HashMap::new()),
            tracker: OnceLock::new(),
        });
        let c = LcClient {
            reader: tokio::spawn(read(stream, sh.clone(), shard)),
            writer: tokio::spawn(write(sink, rx)),
            sh,
            next_i: AtomicI32::new(1),
        };
        let t = tidings::util::now_ms() / 1000;
        let n = random_nonce();
        let open = GenericCommand {
            cmd: Some(CommandType::Session as i32),
            op: Some(OpType::Open as i32),
            app_id: Some(creds.app_id.clone()),
            session_message: Some(SessionCommand {
                ua: Some(UA.into()),
                r: Some(false),
                config_bitmap: Some(CONFIG_BITMAP),
                t: Some(t as i64),
                s: Some(sign_login(&creds.master_key, &creds.app_id, &peer, t, &n)),
                n: Some(n),
                ..Default::default()
            }),
            ..Default::default()
        };
        let got = c.request(open).await?;
        if got.op != Some(OpType::Opened as i32) {
            bail!("session/open for {peer}: {}", refusal(&got));
        }
        Ok(c)
    }

    fn next_i(&self) -> i32 {
        self.next_i.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a set-up command with the next `i` and waits for its answer.
    async fn request(&self, mut cmd: GenericCommand) -> Result<GenericCommand> {
        let i = self.next_i();
        cmd.i = Some(i);
        cmd.peer_id = Some(self.sh.peer.clone());
        let (tx, rx) = oneshot::channel();
        self.sh.waiting.lock().insert(i, Waiter::Reply(tx));
        if !self.sh.send(&cmd) {
            bail!("{}'s socket is closed", self.sh.peer);
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => bail!("{}'s socket closed before the answer", self.sh.peer),
            Err(_) => {
                self.sh.waiting.lock().remove(&i);
                bail!("no answer within {REQUEST_TIMEOUT:?}")
            }
        }
    }

    /// `conv/start` of the unique conversation of this client and `other`.
    pub async fn start_unique(&self, other: &str) -> Result<String> {
        let cmd = GenericCommand {
            cmd: Some(CommandType::Conv as i32),
            op: Some(OpType::Start as i32),
            conv_message: Some(ConvCommand {
                m: vec![self.sh.peer.clone(), other.to_owned()],
                unique: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let got = self.request(cmd).await?;
        let cid = got.conv_message.as_ref().and_then(|c| c.cid.clone());
        match cid {
            Some(cid) if got.op == Some(OpType::Started as i32) => Ok(cid),
            _ => bail!("conv/start: {}", refusal(&got)),
        }
    }

    /// Sends message `k` without waiting: its `ack` reaches the tracker
    /// from the reader. Never blocks.
    pub fn send_text(&self, t: &Tracker, k: u64, cid: &str, msg: String) {
        let i = self.next_i();
        let cmd = GenericCommand {
            cmd: Some(CommandType::Direct as i32),
            peer_id: Some(self.sh.peer.clone()),
            i: Some(i),
            direct_message: Some(DirectCommand {
                cid: Some(cid.to_owned()),
                msg: Some(msg),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.sh.waiting.lock().insert(i, Waiter::Sent(k));
        if !self.sh.send(&cmd) {
            self.sh.waiting.lock().remove(&i);
            t.failed(k, format!("{}'s socket is closed", self.sh.peer));
        }
    }

    /// From now on, answers and pushes count in `t`.
    fn track(&self, t: &Arc<Tracker>) {
        let _ = self.sh.tracker.set(t.clone());
    }

    /// Stops counting and closes the socket (bounded).
    async fn close(self) {
        self.reader.abort();
        let _ = self.sh.out.send(Message::Close(None));
        let _ = tokio::time::timeout(Duration::from_secs(2), self.writer).await;
    }
}

/// What a refusal said, for error messages.
fn refusal(cmd: &GenericCommand) -> String {
    if let Some(e) = &cmd.error_message {
        return format!("error {} {}", e.code, e.reason);
    }
    if let Some(s) = &cmd.session_message
        && let Some(code) = s.code
    {
        return format!(
            "session closed {code} {}",
            s.reason.as_deref().unwrap_or("")
        );
    }
    format!("unexpected answer cmd {:?} op {:?}", cmd.cmd, cmd.op)
}

/// Writes what the client queues, flushing once per batch.
async fn write(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::UnboundedReceiver<Message>) {
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(m) = next.take().or_else(|| rx.try_recv().ok()) {
            let last = matches!(m, Message::Close(_));
            if sink.feed(m).await.is_err() {
                return;
            }
            if last {
                let _ = sink.flush().await;
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

/// Reads the socket: answers go to who waits for them, pushed messages to
/// this client's [`Receiver`] and are acked as the Swift SDK acks them.
async fn read(mut stream: SplitStream<Ws>, sh: Arc<Shared>, shard: usize) {
    let mut receiver: Option<Receiver> = None;
    let why = loop {
        let bytes = match stream.next().await {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(c))) => break format!("closed by the server: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e.to_string(),
            None => break "ended".into(),
        };
        let cmd = match GenericCommand::decode(bytes.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                if let Some(t) = sh.tracker.get() {
                    t.note_error(format!("an undecodable command: {e}"));
                }
                continue;
            }
        };
        if let Some(i) = cmd.i {
            let waiter = sh.waiting.lock().remove(&i);
            match waiter {
                Some(Waiter::Reply(tx)) => {
                    let _ = tx.send(cmd);
                }
                Some(Waiter::Sent(k)) => {
                    if let Some(t) = sh.tracker.get() {
                        answered(t, k, &cmd);
                    }
                }
                None => {}
            }
            continue;
        }
        if cmd.cmd == Some(CommandType::Direct as i32)
            && let Some(d) = cmd.direct_message
        {
            if let Some(t) = sh.tracker.get()
                && let Some(h) = d.msg.as_deref().and_then(text_header)
                && parse(&h).is_some()
            {
                receiver
                    .get_or_insert_with(|| t.receiver(shard))
                    .on_payload(&h);
            }
            if let (Some(cid), Some(mid)) = (d.cid, d.id) {
                sh.send(&GenericCommand {
                    cmd: Some(CommandType::Ack as i32),
                    peer_id: Some(sh.peer.clone()),
                    ack_message: Some(AckCommand {
                        cid: Some(cid),
                        mid: Some(mid),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        } else if cmd.cmd == Some(CommandType::Session as i32)
            && cmd.op == Some(OpType::Closed as i32)
            && let Some(t) = sh.tracker.get()
        {
            t.note_error(format!("{}: {}", sh.peer, refusal(&cmd)));
        }
    };
    if let Some(t) = sh.tracker.get() {
        t.closed.fetch_add(1, Ordering::Relaxed);
        t.note_error(format!("{}'s socket ended: {why}", sh.peer));
    }
    // Whoever still waits learns the socket is gone.
    let left: Vec<Waiter> = sh.waiting.lock().drain().map(|(_, w)| w).collect();
    for w in left {
        if let (Waiter::Sent(k), Some(t)) = (w, sh.tracker.get()) {
            t.failed(k, format!("{}'s socket ended: {why}", sh.peer));
        }
    }
}

/// The answer to message `k`: `ack{uid, t}`, or `ack{code}` / `error` when refused.
fn answered(t: &Tracker, k: u64, cmd: &GenericCommand) {
    match &cmd.ack_message {
        Some(a) if cmd.cmd == Some(CommandType::Ack as i32) && a.code.is_none() => {
            t.acked(k, true);
        }
        Some(a) => t.failed(
            k,
            format!(
                "direct refused: {} {}",
                a.code.unwrap_or(0),
                a.reason.as_deref().unwrap_or("")
            ),
        ),
        None => t.failed(k, format!("direct refused: {}", refusal(cmd))),
    }
}

/// Opens `ids`, `--concurrency` at a time; fails on the first refusal.
async fn open_many(
    gateway: SocketAddr,
    creds: &Credentials,
    ids: Vec<String>,
    concurrency: usize,
    p: &Progress,
) -> Result<Vec<LcClient>> {
    let n = ids.len();
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    let mut out: Vec<Option<LcClient>> = (0..n).map(|_| None).collect();
    for (i, id) in ids.into_iter().enumerate() {
        let permit = sem.clone().acquire_owned().await?;
        let creds = creds.clone();
        set.spawn(async move {
            let r = LcClient::open(gateway, &creds, id.clone(), i).await;
            drop(permit);
            (i, r.with_context(|| format!("opening {id}")))
        });
    }
    let mut done = 0;
    while let Some(r) = set.join_next().await {
        let (i, c) = r?;
        out[i] = Some(c?);
        done += 1;
        p.set(done, n as u64);
    }
    out.into_iter()
        .map(|c| c.ok_or_else(|| anyhow!("a client is missing")))
        .collect()
}

/// `ws-direct`: `--pairs` unique conversations over the LeanCloud door;
/// `a` sends to `b` at `--rate` msgs/s in total.
pub async fn direct(args: &LoadArgs, target: &Target) -> Result<(Measured, String)> {
    let size = args.payload.max(min_payload());
    let gateway = match target.gateway {
        Some(g) => g,
        None => DEFAULT_GATEWAY.parse()?,
    };
    let p = Progress::new(args.quiet);
    let before = target.pid.and_then(|pid| sys::sample(Some(pid)));
    let pairs = args.pairs.max(1);
    let run = tidings::util::random_token(4);
    let mut ids = Vec::with_capacity(2 * pairs);
    for i in 0..pairs {
        ids.push(format!("{run}-wa{i}"));
        ids.push(format!("{run}-wb{i}"));
    }
    p.phase("connecting");
    let clients = open_many(gateway, &target.creds, ids.clone(), args.concurrency, &p).await?;
    p.phase("conversations");
    let mut set = JoinSet::new();
    let clients = Arc::new(clients);
    let sem = Arc::new(Semaphore::new(args.concurrency.max(1)));
    for i in 0..pairs {
        let (clients, other) = (clients.clone(), ids[2 * i + 1].clone());
        let permit = sem.clone().acquire_owned().await?;
        set.spawn(async move {
            let r = clients[2 * i].start_unique(&other).await;
            drop(permit);
            (i, r)
        });
    }
    let mut convs = vec![String::new(); pairs];
    while let Some(r) = set.join_next().await {
        let (i, r) = r?;
        convs[i] = r.context("starting a pair's conversation")?;
    }
    // Let membership pushes from the set-up arrive before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let rate = args.rate.unwrap_or(1000.0);
    let plan = crate::load::Plan::new(rate, args.warmup, args.duration, args.messages, None)?;
    let t = Tracker::new(plan, 1);
    for c in clients.iter() {
        c.track(&t);
    }
    p.phase("warm-up");
    let mut start = None;
    run_schedule(
        &t,
        &p,
        || start = Some(Samples::take(target.pid)),
        |k, due| {
            let pair = (k % pairs as u64) as usize;
            clients[2 * pair].send_text(&t, k, &convs[pair], text(due, k, size));
        },
    );
    p.phase("draining");
    t.drain(Duration::from_secs_f64(args.drain)).await;
    let end = Samples::take(target.pid);
    p.finish();

    let m = message_figures("ws-direct", &t, 2 * pairs, before, start, end);
    let clients = Arc::try_unwrap(clients).map_err(|_| anyhow!("a client is still in use"))?;
    for c in clients {
        c.close().await;
    }
    Ok((
        m,
        format!(
            "{pairs} pairs (a→b) over the LeanCloud door ({SUBPROTOCOL}, ws://{gateway}), text body {size} B"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_carries_time_and_number_at_the_size_asked() {
        let body = text(123_456_789, 42, 100);
        assert_eq!(body.len(), 100);
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["_lctype"], -1);
        let h = text_header(&body).expect("digits");
        assert_eq!(parse(&h), Some((123_456_789, 42)));
        assert_eq!(text(1, 2, 0).len(), min_payload());
        assert_eq!(text_header(r#"{"_lctext":"hello","_lctype":-1}"#), None);
    }
}
