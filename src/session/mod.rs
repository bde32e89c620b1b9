//! One client connection: login, then a loop that reads commands, hands
//! fanned-out messages to the writer, tracks acks and redelivers.


mod sync;
mod writer;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::conversation::ops as conv_ops;
use crate::core::Caller;
use crate::core::outbound::{CloseOrder, Outbound, ReceiptFor};
use crate::hooks::Hook;
use crate::hub::Hub;
use crate::message::{self, SendPlan};
use crate::metrics::METRICS;
use crate::protocol::codes::close;
use crate::protocol::{
    ClientFrame, Command, ConvId, ErrorBody, ErrorCode, Event, Login, Reply, SendMessage, SyncMode,
};
use crate::registry::{self, DeviceHandle};
use crate::transport::{FrameReader, StreamError};
use crate::wire::frame::FrameError;
use serde_json::json;
use writer::Writer;

/// Unacked messages tracked per device before the oldest are left to the next sync.
const MAX_INFLIGHT: usize = 10_000;

/// How a session ended, for `_clientOffline` (the hooks issue) and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub close_code: u8,
    pub error: Option<ErrorCode>,
}

/// Runs a connection to its end. `done` is dropped when the session is fully
/// over, which is how shutdown knows every session has drained.
pub async fn run(
    hub: Arc<Hub>,
    conn: quinn::Connection,
    mut shutdown: broadcast::Receiver<()>,
    done: mpsc::Sender<()>,
) {
    let limits = &hub.config.limits;
    let login_deadline = Instant::now() + Duration::from_millis(limits.login_timeout_ms);
    let stream = tokio::select! {
        s = tokio::time::timeout_at(login_deadline, conn.accept_bi()) => s,
        _ = shutdown.recv() => {
            close_now(&conn, ErrorCode::ServerShutdown, "server shutting down");
            return;
        }
    };
    let (send, recv) = match stream {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return,
        Err(_) => {
            close_now(&conn, ErrorCode::LoginTimeout, "no login in time");
            return;
        }
    };
    let writer = Writer::spawn(send);
    let mut reader = FrameReader::new(recv, limits.max_frame_bytes as usize);
    let Some((login, login_id)) = await_login(
        &hub,
        &conn,
        &writer,
        &mut reader,
        login_deadline,
        &mut shutdown,
    )
    .await
    else {
        return;
    };
    let Some(mut session) = Session::open(hub, conn, writer, login, login_id).await else {
        return;
    };
    let ended = session.serve(&mut reader, &mut shutdown).await;
    session.finish(&ended);
    drop(done);
}

fn close_now(conn: &quinn::Connection, code: ErrorCode, reason: &str) {
    conn.close(code.close_code(), reason.as_bytes());
}

/// Sends a `Closing` event, lets the writer drain (bounded), then closes.
async fn close_with(conn: &quinn::Connection, writer: &Writer, code: ErrorCode, reason: &str) {
    if let Some(f) = crate::wire::frame::event(Event::Closing {
        code: code.code(),
        reason: reason.to_string(),
    }) {
        writer.send(f);
    }
    writer.drain(Duration::from_millis(500)).await;
    close_now(conn, code, reason);
}

use crate::wire::frame::response;

fn frame_error_code(e: &StreamError) -> Option<ErrorCode> {
    match e {
        StreamError::Frame(FrameError::TooLong { .. }) => Some(ErrorCode::FrameTooLong),
        StreamError::Frame(FrameError::Unparseable(_)) => Some(ErrorCode::UnparseableRawMsg),
        _ => None,
    }
}

/// Reads frames until a Login request arrives or the login deadline passes.
async fn await_login(
    hub: &Hub,
    conn: &quinn::Connection,
    writer: &Writer,
    reader: &mut FrameReader,
    deadline: Instant,
    shutdown: &mut broadcast::Receiver<()>,
) -> Option<(Login, u64)> {
    loop {
        let frame = tokio::select! {
            f = tokio::time::timeout_at(deadline, reader.read::<ClientFrame>()) => f,
            _ = shutdown.recv() => {
                close_with(conn, writer, ErrorCode::ServerShutdown, "server shutting down").await;
                return None;
            }
        };
        let frame = match frame {
            Err(_) => {
                close_with(conn, writer, ErrorCode::LoginTimeout, "no login in time").await;
                return None;
            }
            Ok(Ok(Some(f))) => f,
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => {
                if let Some(code) = frame_error_code(&e) {
                    close_with(conn, writer, code, &e.to_string()).await;
                }
                return None;
            }
        };
        match frame {
            ClientFrame::Request {
                id,
                cmd: Command::Login(login),
            } => {
                // Per-address limits first: a refused login costs no HMAC.
                let ip = conn.remote_address().ip();
                let checked = hub.guard.login(ip).and_then(|()| {
                    let r = hub.auth.check(&login, crate::util::now_secs());
                    if r.as_ref()
                        .is_err_and(|e| e.code == ErrorCode::SignatureFailed.code())
                    {
                        hub.guard.login_failed(ip);
                    }
                    r
                });
                if let Err(e) = checked {
                    METRICS.login_refused();
                    let (code, detail) = (e.code, e.detail.clone());
                    if let Some(f) = response(id, Err(e)) {
                        writer.send(f);
                    }
                    debug!(client = %login.client_id, %detail, "login refused");
                    writer.drain(Duration::from_millis(500)).await;
                    conn.close(quinn::VarInt::from(code), detail.as_bytes());
                    return None;
                }
                return Some((login, id));
            }
            ClientFrame::Request { id, .. } => {
                let e = ErrorBody::new(ErrorCode::SessionRequired, "log in first");
                if let Some(f) = response(id, Err(e)) {
                    writer.send(f);
                }
            }
            ClientFrame::Ack { .. } | ClientFrame::Ping | ClientFrame::Typing { .. } => {}
        }
    }
}

struct Session {
    hub: Arc<Hub>,
    conn: quinn::Connection,
    writer: Writer,
    caller: Caller,
    device_rx: mpsc::UnboundedReceiver<Outbound>,
    /// Sent but unacked stored messages, oldest first per conversation,
    /// with the sender and time of those that want a delivery receipt.
    inflight: HashMap<ConvId, VecDeque<Inflight>>,
    inflight_len: usize,
    /// Highest seq already sent per conversation: live copies of messages a
    /// sync already sent are dropped.
    sent_max: HashMap<ConvId, u64>,
    send_lane: Lane,
    /// The send lane task.
    sends: JoinSet<()>,
    tag: Option<String>,
    /// The last typing state relayed per conversation, to drop repeats.
    typing: HashMap<ConvId, (bool, Instant)>,
    /// Broadcasts this login sent from the store (at most
    /// `broadcast::AT_LOGIN_MAX`); a live copy handed over after the login
    /// read the store is dropped once.
    broadcasts_at_login: HashSet<(ConvId, u64)>,
    /// Broadcasts sent and not yet acknowledged: the client's cursor.
    broadcast_acks: crate::core::broadcast_acks::BroadcastAcks,
    /// This connection's request and ping buckets (`guard`).
    quota: crate::guard::ConnQuota,
}

/// Sends go, in arrival order, to one lane task per conversation (in
/// `Session::sends`), started by its first send: a session that only
/// receives has none, and a `_messageReceived` hook that hangs for one
/// conversation holds up only that conversation's sends (FIFO is per
/// conversation, as seqs are).
enum Lane {
    Open(HashMap<ConvId, LaneTx>),
    /// Draining for a logout or shutdown: no new sends.
    Closed,
}

struct LaneTx {
    /// Boxed so that the channel's preallocated block stays small.
    tx: mpsc::UnboundedSender<(u64, Box<SendMessage>)>,
    /// Sends given to the lane and not yet through its checks and hook:
    /// an idle lane (0) is ended when lanes pile up.
    queued: Arc<AtomicUsize>,
}

/// Idle lanes kept for reuse before they are ended.
const IDLE_LANES: usize = 8;

struct Inflight {
    seq: u64,
    sent_at: Instant,
    receipt: Option<ReceiptFor>,
}

/// What [`Session::over_quota`] decided.
enum Quota {
    Within,
    /// Refused and answered (or, for a typing notice, dropped).
    Answered,
    /// A flood: close with 4117.
    Close(&'static str),
}

/// A repeated typing state inside this window is not relayed again.
const TYPING_REPEAT: Duration = Duration::from_secs(1);

impl Session {
    async fn open(
        hub: Arc<Hub>,
        conn: quinn::Connection,
        writer: Writer,
        login: Login,
        login_id: u64,
    ) -> Option<Session> {
        let conn_id = hub.registry.next_conn_id();
        let device_id = login
            .device_id
            .clone()
            .or_else(|| login.tag.clone().filter(|t| !t.is_empty()))
            .unwrap_or_else(|| "default".into());
        let caller = Caller {
            client: login.client_id.clone(),
            device_id: device_id.clone(),
            conn_id,
            ip: conn.remote_address().ip().to_string(),
        };
        let (tx, device_rx) = mpsc::unbounded_channel();
        let handle = DeviceHandle {
            conn_id,
            device_id: device_id.clone(),
            tag: login.tag.clone(),
            tx,
        };
        match hub
            .registry
            .register(&login.client_id, handle, login.reconnect)
        {
            Err(_) => {
                let e = ErrorBody::new(
                    ErrorCode::SessionConflict,
                    "another device holds this tag; reconnect gives way",
                );
                if let Some(f) = response(login_id, Err(e)) {
                    writer.send(f);
                }
                writer.drain(Duration::from_millis(500)).await;
                close_now(
                    &conn,
                    ErrorCode::SessionConflict,
                    "tag held by another device",
                );
                return None;
            }
            Ok(displaced) => {
                let reason = "logged in on another device with the same tag";
                let frame = crate::wire::frame::event(Event::Conflict {
                    code: ErrorCode::SessionConflict.code(),
                    reason: reason.into(),
                });
                for d in displaced {
                    let _ = d.tx.send(Outbound::close(CloseOrder {
                        code: ErrorCode::SessionConflict.code(),
                        reason: reason.into(),
                        frame: frame.clone(),
                        close_code: close::TAG_CONFLICT,
                    }));
                }
            }
        }
        let reply = Reply::LoggedIn {
            server_time: crate::util::now_ms(),
            device_id,
        };
        if let Some(f) = response(login_id, Ok(reply)) {
            writer.send(f);
        }
        info!(client = %caller.client, device = %caller.device_id, conn = conn_id, "online");
        METRICS.login(&caller.client);
        let tag = login.tag.clone().filter(|t| !t.is_empty());
        hub.hooks
            .after_if_on(Hook::ClientOnline, &caller.client, || {
                json!({
                    "peerId": caller.client,
                    "sourceIP": caller.ip,
                    "tag": tag.as_deref().unwrap_or(registry::DEFAULT_TAG),
                    "reconnect": u8::from(login.reconnect),
                })
            });
        let quota = hub.guard.connection();
        let mut s = Session {
            hub,
            conn,
            writer,
            caller,
            device_rx,
            inflight: HashMap::new(),
            inflight_len: 0,
            sent_max: HashMap::new(),
            send_lane: Lane::Open(HashMap::new()),
            sends: JoinSet::new(),
            tag,
            typing: HashMap::new(),
            broadcasts_at_login: HashSet::new(),
            broadcast_acks: Default::default(),
            quota,
        };
        if let Err(e) = s.sync(login.sync) {
            s.sync_skipped("messages", e);
        }
        if let Err(e) = s.sync_patches() {
            s.sync_skipped("patches", e);
        }
        match crate::broadcast::at_login(&s.hub, &s.caller.client) {
            Ok(got) => {
                s.broadcast_acks = crate::core::broadcast_acks::BroadcastAcks::at_login(got.cursor, got.looked_at);
                for b in got.frames {
                    s.broadcast_acks.sent(b.id, b.conv, b.seq);
                    s.writer.send(b.frame);
                    s.broadcasts_at_login.insert((b.conv, b.seq));
                }
                s.write_broadcast_cursor();
            }
            Err(e) => s.sync_skipped("broadcasts", e.into()),
        }
        match message::receipts::owed(&s.hub, &s.caller.client) {
            Ok(frames) => frames.into_iter().for_each(|f| s.writer.send(f)),
            Err(e) => tracing::warn!(error = %e, "owed receipts not sent"),
        }
        Some(s)
    }

    /// A sync that failed is said, not skipped in silence: the client
    /// knows its view may be incomplete until the next login.
    fn sync_skipped(&self, what: &str, e: ErrorBody) {
        debug!(client = %self.caller.client, what, error = %e, "offline sync skipped");
        if let Some(f) = crate::wire::frame::event(Event::SyncSkipped {
            what: what.to_owned(),
            code: e.code,
            reason: e.detail,
        }) {
            self.writer.send(f);
        }
    }

    async fn serve(
        &mut self,
        reader: &mut FrameReader,
        shutdown: &mut broadcast::Receiver<()>,
    ) -> Ended {
        let idle = Duration::from_secs(self.hub.config.limits.idle_timeout_secs);
        let ack_timeout = Duration::from_secs(self.hub.config.delivery.ack_timeout_secs);
        let mut idle_deadline = Instant::now() + idle;
        // Redelivery checks run only while something is unacked, so an idle
        // session costs no timer wake-ups beyond its idle deadline.
        let check_every = Duration::from_secs(1).min(ack_timeout);
        let mut next_check = Instant::now() + check_every;
        let backlog = self.writer.backlog().clone();
        let bound = usize::try_from(self.hub.config.limits.max_backlog_bytes).unwrap_or(usize::MAX);
        let stall = Duration::from_secs(self.hub.config.limits.backlog_stall_secs);
        let (mut paused, mut behind_since) = (false, None::<Instant>);
        loop {
            // Over the bound, requests are not read: QUIC's flow control
            // then holds the client back, and nothing more is queued for
            // it. Undelivered messages stay in the log for its next sync.
            let was_paused = paused;
            paused = backlog.total() > bound;
            if paused && !was_paused {
                METRICS.backlog_paused();
            } else if was_paused && !paused {
                // Held back by us, not idle.
                idle_deadline = Instant::now() + idle;
            }
            let out = backlog.out();
            behind_since = if out > bound {
                behind_since.or_else(|| Some(Instant::now()))
            } else {
                None
            };
            // Deliveries cannot be paused: a client that lets them pile up
            // to twice the bound is closed at once.
            if out > bound.saturating_mul(2) {
                return self.too_slow().await;
            }
            tokio::select! {
                frame = tokio::time::timeout_at(idle_deadline, reader.read::<ClientFrame>()), if !paused => {
                    let frame = match frame {
                        Err(_) => return self.fail(ErrorCode::ReadTimeout, "no frame within the idle timeout").await,
                        Ok(Ok(Some(f))) => f,
                        Ok(Ok(None)) => return lost(),
                        Ok(Err(e)) => match frame_error_code(&e) {
                            Some(code) => return self.fail(code, &e.to_string()).await,
                            None => return lost(),
                        },
                    };
                    idle_deadline = Instant::now() + idle;
                    if let Some(ended) = self.handle(frame).await {
                        return ended;
                    }
                }
                out = self.device_rx.recv() => {
                    let Some(out) = out else { return lost() };
                    if let Some(ended) = self.deliver(out).await {
                        return ended;
                    }
                }
                () = backlog.shrunk(), if paused => {}
                () = tokio::time::sleep_until(behind_since.map_or_else(Instant::now, |t| t + stall)), if behind_since.is_some() => {
                    return self.too_slow().await;
                }
                _ = tokio::time::sleep_until(next_check), if self.inflight_len > 0 => {
                    self.redeliver(ack_timeout);
                    next_check = Instant::now() + check_every;
                }
                _ = shutdown.recv() => {
                    self.drain_sends().await;
                    close_with(&self.conn, &self.writer, ErrorCode::ServerShutdown, "server shutting down").await;
                    return Ended { close_code: close::CONNECTION_LOST, error: Some(ErrorCode::ServerShutdown) };
                }
                d = self.conn.read_datagram() => match d {
                    Ok(bytes) => {
                        idle_deadline = Instant::now() + idle;
                        // Datagrams carry only fire-and-forget frames; a bad one is dropped.
                        if let Ok(ClientFrame::Typing { conv, started }) = crate::wire::codec::decode(&bytes) {
                            self.typing(conv, started);
                        }
                    }
                    Err(_) => return lost(),
                },
                Some(_) = self.sends.join_next(), if !self.sends.is_empty() => {}
            }
        }
    }

    /// Closes a connection whose backlog stayed over the bound (4201).
    async fn too_slow(&mut self) -> Ended {
        METRICS.backlog_closed();
        self.fail(ErrorCode::SendMessageTimeout, "client too slow to read")
            .await
    }

    async fn fail(&mut self, code: ErrorCode, reason: &str) -> Ended {
        debug!(client = %self.caller.client, code = code.code(), reason, "closing session");
        close_with(&self.conn, &self.writer, code, reason).await;
        Ended {
            close_code: close::CONNECTION_LOST,
            error: Some(code),
        }
    }

    /// Waits (bounded) for answers to sends already received.
    async fn drain_sends(&mut self) {
        self.send_lane = Lane::Closed;
        let grace = Duration::from_secs(self.hub.config.server.shutdown_grace_secs);
        let _ = tokio::time::timeout(grace, async {
            while self.sends.join_next().await.is_some() {}
        })
        .await;
    }

    fn finish(&mut self, ended: &Ended) {
        // A drop without a logout sends the will; a server shutdown is not
        // the client going away.
        if ended.close_code == close::CONNECTION_LOST
            && ended.error != Some(ErrorCode::ServerShutdown)
        {
            message::will::fire(&self.hub, &self.caller);
        }
        let rooms = self
            .hub
            .registry
            .unregister(&self.caller.client, self.caller.conn_id);
        for r in rooms {
            if let Some(c) = self.hub.convs.get(&r) {
                c.state.write().room.remove(&self.caller.client);
            }
        }
        self.sends.abort_all();
        info!(client = %self.caller.client, conn = self.caller.conn_id, close_code = ended.close_code,
              error = ?ended.error.map(|e| e.code()), "offline");
        let c = &self.caller;
        self.hub
            .hooks
            .after_if_on(Hook::ClientOffline, &c.client, || {
                let mut p = json!({
                    "peerId": c.client,
                    "closeCode": ended.close_code,
                    "closeMsg": close_msg(ended.close_code),
                    "tag": self.tag.as_deref().unwrap_or(registry::DEFAULT_TAG),
                });
                // LeanCloud omits the address when the connection was lost.
                if ended.close_code != close::CONNECTION_LOST {
                    p["sourceIP"] = json!(c.ip);
                }
                if let Some(e) = ended.error {
                    p["errorCode"] = json!(e.code());
                    p["errorMsg"] = json!(e.reason());
                }
                p
            });
    }

    fn reply(&self, id: u64, result: Result<Reply, ErrorBody>) {
        if let Some(f) = response(id, result) {
            self.writer.send(f);
        }
    }

    /// Handles one client frame; `Some` ends the session.
    async fn handle(&mut self, frame: ClientFrame) -> Option<Ended> {
        match self.over_quota(&frame) {
            Quota::Within => {}
            Quota::Answered => return None,
            Quota::Close(reason) => return Some(self.fail(ErrorCode::QuotaExceeded, reason).await),
        }
        match frame {
            ClientFrame::Ping => None,
            ClientFrame::Ack { acks } => {
                self.ack(&acks);
                None
            }
            ClientFrame::Typing { conv, started } => {
                self.typing(conv, started);
                None
            }
            ClientFrame::Request {
                id,
                cmd: Command::Send(m),
            } => {
                self.enqueue_send(id, m);
                None
            }
            // Boxed: other commands are rare next to sends and acks, and
            // their futures would otherwise be part of every idle session.
            ClientFrame::Request { id, cmd } => Box::pin(self.command(id, cmd)).await,
        }
    }

    /// Whether `frame` is within this client's and connection's quotas
    /// (`guard`); a request over one is answered here with 4116 or 4117.
    fn over_quota(&self, frame: &ClientFrame) -> Quota {
        let guard = &self.hub.guard;
        let refused = match frame {
            ClientFrame::Ack { .. } => return Quota::Within,
            ClientFrame::Ping if self.quota.ping(guard) => return Quota::Within,
            ClientFrame::Ping => return Quota::Close("too many pings (quotas.pings_per_sec)"),
            ClientFrame::Typing { .. } if self.quota.request(guard) => return Quota::Within,
            ClientFrame::Typing { .. } => return Quota::Answered,
            ClientFrame::Request {
                id,
                cmd: Command::Send(_),
            } => match guard.send(&self.caller.client) {
                Ok(()) => return Quota::Within,
                Err(e) => (*id, e),
            },
            ClientFrame::Request { .. } if self.quota.request(guard) => return Quota::Within,
            ClientFrame::Request { id, .. } => (*id, crate::guard::ConnQuota::refused()),
        };
        self.reply(refused.0, Err(refused.1));
        Quota::Answered
    }

    /// A lane keeps this connection's sends to one conversation in order
    /// while a `_messageReceived` hook is awaited, without stalling reads.
    fn enqueue_send(&mut self, id: u64, m: SendMessage) {
        let Lane::Open(lanes) = &mut self.send_lane else {
            return;
        };
        if lanes.len() > IDLE_LANES && !lanes.contains_key(&m.conv) {
            // Dropping an idle lane's sender ends its task.
            lanes.retain(|_, l| l.queued.load(Relaxed) > 0);
        }
        let lane = lanes.entry(m.conv).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let queued = Arc::new(AtomicUsize::new(0));
            let (hub, caller, writer) =
                (self.hub.clone(), self.caller.clone(), self.writer.clone());
            self.sends
                .spawn(send_lane(hub, caller, writer, rx, queued.clone()));
            LaneTx { tx, queued }
        });
        self.writer.backlog().add_send(queued_size(&m));
        lane.queued.fetch_add(1, Relaxed);
        let _ = lane.tx.send((id, Box::new(m)));
    }

    async fn command(&mut self, id: u64, cmd: Command) -> Option<Ended> {
        let hub = &*self.hub;
        let caller = &self.caller;
        let ok = |r: Result<(), ErrorBody>| r.map(|()| Reply::Ok);
        let result = match cmd {
            Command::Login(_) => Err(ErrorBody::new(
                ErrorCode::DuplicatedLogin,
                "already logged in",
            )),
            Command::Logout => {
                message::will::forget(hub, caller);
                self.reply(id, Ok(Reply::Ok));
                self.drain_sends().await;
                self.writer.drain(Duration::from_millis(500)).await;
                self.conn.close(0u32.into(), b"logout");
                return Some(Ended {
                    close_code: close::LOGOUT,
                    error: None,
                });
            }
            Command::Send(m) => {
                self.enqueue_send(id, m);
                return None;
            }
            Command::CreateConversation(c) => conv_ops::create(hub, caller, c)
                .await
                .map(Reply::Conversation),
            Command::GetConversation { conv } => {
                conv_ops::get(hub, caller, conv).map(Reply::Conversation)
            }
            Command::ListConversations { limit } => {
                conv_ops::list(hub, caller, limit).map(Reply::Conversations)
            }
            Command::Join { conv } => ok(conv_ops::join(hub, caller, conv).await),
            Command::Leave { conv } => ok(conv_ops::leave(hub, caller, conv).await),
            Command::AddMembers { conv, members } => {
                ok(conv_ops::add_members(hub, caller, conv, members).await)
            }
            Command::RemoveMembers { conv, members } => {
                ok(conv_ops::remove_members(hub, caller, conv, members).await)
            }
            Command::UpdateConversation { conv, name, attr } => {
                ok(conv_ops::update(hub, caller, conv, name, attr).await)
            }
            Command::SetManagers { conv, add, remove } => {
                ok(conv_ops::set_managers(hub, caller, conv, add, remove).await)
            }
            Command::Mute { conv } => ok(conv_ops::set_muted(hub, caller, conv, true).await),
            Command::Unmute { conv } => ok(conv_ops::set_muted(hub, caller, conv, false).await),
            Command::Read { conv, seq } => message::read(hub, caller, conv, seq),
            Command::History(q) => message::history(hub, caller, q),
            Command::EditMessage(e) => message::patch::edit(hub, caller, e).await,
            Command::RecallMessage { conv, msg_id } => {
                message::patch::recall(hub, caller, conv, &msg_id).await
            }
            Command::DeleteMessage { conv, msg_id } => {
                message::patch::delete(hub, caller, conv, &msg_id).await
            }
            Command::DeleteConversation { conv } => ok(conv_ops::delete(hub, caller, conv).await),
            Command::Receipts { conv } => message::receipts::query(hub, caller, conv),
            Command::ClearWill => {
                message::will::clear(hub, caller);
                Ok(Reply::Ok)
            }
        };
        self.reply(id, result);
        None
    }

    /// Cumulative acks: everything of `conv` up to `seq` arrived on this device.
    fn ack(&mut self, acks: &[(ConvId, u64)]) {
        for &(conv, seq) in acks {
            self.broadcast_acks.acked(conv, seq);
        }
        self.write_broadcast_cursor();
        for &(conv, seq) in acks {
            let Some(c) = self.hub.convs.get(&conv) else {
                continue;
            };
            if seq > c.last_seq() {
                continue;
            }
            // The newest acked message that wants a receipt (receipts exist
            // only between two members, so all are from the one other).
            let mut receipt: Option<ReceiptFor> = None;
            if let Some(q) = self.inflight.get_mut(&conv) {
                while q.front().is_some_and(|i| i.seq <= seq) {
                    if let Some(i) = q.pop_front() {
                        receipt = i.receipt.or(receipt);
                    }
                    self.inflight_len -= 1;
                }
                if q.is_empty() {
                    self.inflight.remove(&conv);
                }
            }
            let (client, device) = (&self.caller.client, &self.caller.device_id);
            if let Err(e) = self.hub.store.set_device_cursor(client, device, conv, seq) {
                tracing::warn!(error = %e, "device cursor not saved");
            }
            if let Some(r) = receipt
                && let Err(e) = message::receipts::on_delivered(&self.hub, conv, client, &r.0, r.1)
            {
                tracing::warn!(error = %e, "delivery receipt not recorded");
            }
        }
    }

    fn write_broadcast_cursor(&mut self) {
        if let Some(id) = self.broadcast_acks.cursor_to_write()
            && let Err(e) = self
                .hub
                .store
                .raise_broadcast_cursors([self.caller.client.as_str()], id)
        {
            tracing::warn!(error = %e, "broadcast cursor not raised");
        }
    }

    /// Notes a stored message sent to this device. `receipt` is its sender
    /// and time when it wants a delivery receipt (ignored for our own).
    fn track(&mut self, conv: ConvId, seq: u64, receipt: Option<ReceiptFor>) {
        let max = self.sent_max.entry(conv).or_insert(0);
        *max = (*max).max(seq);
        if self.inflight_len >= MAX_INFLIGHT {
            // The device is not acking; its cursor stays put, so the next sync covers these.
            return;
        }
        let receipt = receipt.filter(|r| r.0 != self.caller.client);
        self.inflight.entry(conv).or_default().push_back(Inflight {
            seq,
            sent_at: Instant::now(),
            receipt,
        });
        self.inflight_len += 1;
    }

    /// Relays a typing change, unless it repeats the last one within a second.
    fn typing(&mut self, conv: ConvId, started: bool) {
        let now = Instant::now();
        if let Some((last, at)) = self.typing.get(&conv)
            && *last == started
            && now.duration_since(*at) < TYPING_REPEAT
        {
            return;
        }
        if self.typing.len() > 1000 {
            self.typing
                .retain(|_, (_, at)| now.duration_since(*at) < TYPING_REPEAT);
        }
        self.typing.insert(conv, (started, now));
        message::typing::relay(&self.hub, &self.caller, conv, started);
    }

    async fn deliver(&mut self, out: Outbound) -> Option<Ended> {
        match out {
            Outbound::Message(m) => {
                if self.sent_max.get(&m.conv).is_some_and(|max| *max >= m.seq) {
                    return None;
                }
                self.track(m.conv, m.seq, m.receipt.clone());
                self.writer.send(m.frame.clone());
                METRICS.messages_out(1);
            }
            Outbound::Frame(f) => self.writer.send((*f).clone()),
            Outbound::Broadcast(b) => {
                if !self.broadcasts_at_login.remove(&(b.conv, b.seq)) {
                    self.broadcast_acks.sent(b.id, b.conv, b.seq);
                    self.writer.send(b.frame.clone());
                }
            }
            Outbound::Transient(t) => {
                let fits = self
                    .conn
                    .max_datagram_size()
                    .is_some_and(|max| t.datagram.len() <= max);
                if !fits || self.conn.send_datagram(t.datagram.clone()).is_err() {
                    self.writer.send(t.frame.clone());
                }
                METRICS.messages_out(1);
            }
            Outbound::Close(order) => {
                let CloseOrder {
                    code,
                    reason,
                    frame,
                    close_code,
                } = *order;
                if let Some(f) = frame {
                    self.writer.send(f);
                }
                self.writer.drain(Duration::from_millis(500)).await;
                self.conn
                    .close(quinn::VarInt::from(code), reason.as_bytes());
                return Some(Ended {
                    close_code,
                    error: Some(if close_code == close::KICKED {
                        ErrorCode::KickedByApp
                    } else {
                        ErrorCode::SessionConflict
                    }),
                });
            }
        }
        None
    }

    /// Resends, from the log, every message unacked for longer than `timeout`.
    /// One deleted meanwhile counts as acked: there is nothing left to send.
    fn redeliver(&mut self, timeout: Duration) {
        let now = Instant::now();
        let due: Vec<(ConvId, u64, u64)> = self
            .inflight
            .iter()
            .filter(|(_, q)| {
                q.front()
                    .is_some_and(|i| now.duration_since(i.sent_at) >= timeout)
            })
            .filter_map(|(c, q)| Some((*c, q.front()?.seq, q.back()?.seq)))
            .collect();
        for (conv, lo, hi) in due {
            let entries = match self.hub.store.messages(conv, lo, hi, usize::MAX, false) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "redelivery read failed");
                    continue;
                }
            };
            let Some(q) = self.inflight.get_mut(&conv) else {
                continue;
            };
            let before = q.len();
            q.retain(|i| {
                entries
                    .iter()
                    .find(|e| e.msg.seq == i.seq)
                    .is_some_and(|e| !e.deleted)
            });
            self.inflight_len -= before - q.len();
            for i in q.iter_mut() {
                if now.duration_since(i.sent_at) < timeout {
                    break;
                }
                i.sent_at = now;
                if let Some(e) = entries.iter().find(|e| e.msg.seq == i.seq)
                    && let Some(f) = crate::wire::frame::event(Event::Message {
                        msg: e.msg.clone().for_receiver(&self.caller.client),
                        redelivered: true,
                    })
                {
                    self.writer.send(f);
                    METRICS.messages_out(1);
                }
            }
            if q.is_empty() {
                self.inflight.remove(&conv);
            }
        }
    }

    fn sync(&mut self, mode: SyncMode) -> Result<(), ErrorBody> {
        match mode {
            SyncMode::Push => self.sync_push(),
            SyncMode::Pull => {
                let limit = self.hub.config.delivery.pull_sync_limit as usize;
                let items = message::unread_summary(&self.hub, &self.caller.client, limit)?;
                if let Some(f) = crate::wire::frame::event(Event::Unread { items }) {
                    self.writer.send(f);
                }
                Ok(())
            }
        }
    }
}

/// Handles one connection's sends to one conversation one after another:
/// checks and the `_messageReceived` hook in order, then waits for group
/// flushes in parallel.
async fn send_lane(
    hub: Arc<Hub>,
    caller: Caller,
    writer: Writer,
    mut rx: mpsc::UnboundedReceiver<(u64, Box<SendMessage>)>,
    queued: Arc<AtomicUsize>,
) {
    let mut flushing = JoinSet::new();
    while let Some((id, m)) = rx.recv().await {
        writer.backlog().sent(queued_size(&m));
        // Boxed so that an idle lane does not hold the send's state.
        let result = match Box::pin(message::send(&hub, &caller, *m)).await {
            Ok(SendPlan::Pending(p, changed)) => {
                let (hub, caller, writer) = (hub.clone(), caller.clone(), writer.clone());
                flushing.spawn(async move {
                    let result = message::finish_send(&hub, &caller, p).await;
                    let notice = match (&result, changed) {
                        (Ok(sent), Some(c)) => c.event(sent),
                        _ => None,
                    };
                    if let Some(f) = response(id, result) {
                        writer.send(f);
                    }
                    if let Some(f) = notice {
                        writer.send(f);
                    }
                });
                None
            }
            Ok(SendPlan::Done(r, notice)) => Some((Ok(r), notice)),
            Err(e) => Some((Err(e), None)),
        };
        // Its place in the conversation is taken: a later lane for the
        // same conversation cannot overtake it.
        queued.fetch_sub(1, Relaxed);
        if let Some((r, notice)) = result {
            if let Some(f) = response(id, r) {
                writer.send(f);
            }
            if let Some(f) = notice {
                writer.send(f);
            }
        }
        while flushing.try_join_next().is_some() {}
    }
    while flushing.join_next().await.is_some() {}
}

/// What a queued send holds in memory, near enough for the backlog bound.
fn queued_size(m: &SendMessage) -> usize {
    std::mem::size_of::<SendMessage>()
        + m.content.len()
        + m.push_data.as_ref().map_or(0, String::len)
        + m.token.as_ref().map_or(0, String::len)
        + m.mention_list.iter().map(String::len).sum::<usize>()
}

fn close_msg(close_code: u8) -> &'static str {
    match close_code {
        close::LOGOUT => "logout",
        close::TAG_CONFLICT => "logged in elsewhere with the same tag",
        close::KICKED => "kicked by the app",
        _ => "connection lost",
    }
}

fn lost() -> Ended {
    Ended {
        close_code: close::CONNECTION_LOST,
        error: None,
    }
}
