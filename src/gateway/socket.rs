//! One LeanCloud WebSocket: reads commands, answers heartbeats, routes
//! each command to the IM client it names (`peerId`), and writes what the
//! clients' sessions queue. Several clients share one socket; each gets
//! its own session (`peer.rs`) when it sends `session/open`.
//!
//! Close codes: an undecodable message closes the socket with 4114, an
//! oversized one with 4109, silence longer than [`SILENCE`] with 4107,
//! a shutdown with 4202. The SDKs reconnect after any of these; they stop
//! only at 4100, 4103 and 4110, which this door does not send.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Shared;
use super::frame::{self, Dialect, FrameError};
use super::inbound::{self, Inbound};
use super::outbound::{self, Pending};
use super::peer::{Peer, PeerDoor, unaccounted};
use super::proto::{CommandType, GenericCommand, OpType};
use crate::protocol::{ClientFrame, Command, ErrorCode};
use crate::session::Backlog;

/// The longest a socket may stay silent: the SDKs beat every 180 s (an
/// `echo`, or a WebSocket ping) and give up on the server after 360–380 s.
const SILENCE: Duration = Duration::from_secs(400);

/// Commands queued for one client's session before the socket stops
/// reading (the session is behind; TCP then holds the SDK back).
const PEER_QUEUE: usize = 64;

/// What the socket's writer takes.
pub(super) enum WsOut {
    /// A message, counted in the backlog of the client it is for.
    Msg(Message, Option<Arc<Backlog>>),
    /// Close the socket with this code.
    Close(u16, String),
}

struct Entry {
    peer: Arc<Peer>,
    tx: mpsc::Sender<ClientFrame>,
    /// Engine request ids, per client.
    next_id: u64,
    generation: u64,
}

struct Socket {
    gw: Arc<Shared>,
    dialect: Dialect,
    ip: IpAddr,
    out: mpsc::UnboundedSender<WsOut>,
    peers: HashMap<String, Entry>,
    sessions: JoinSet<(String, u64)>,
    generation: u64,
    shutdown: broadcast::Receiver<()>,
    /// Heartbeats and the commands no session answers (opens, commands
    /// for nobody) count here; each session has its own quota besides.
    quota: crate::guard::ConnQuota,
}

/// Serves one upgraded socket to its end.
pub(super) async fn run(
    gw: Arc<Shared>,
    ws: WebSocket,
    dialect: Dialect,
    ip: IpAddr,
    shutdown: broadcast::Receiver<()>,
    done: mpsc::Sender<()>,
) {
    let (sink, mut stream) = ws.split();
    let (out, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write(sink, rx));
    let mut s = Socket {
        gw: gw.clone(),
        dialect,
        ip,
        out,
        peers: HashMap::new(),
        sessions: JoinSet::new(),
        generation: 0,
        shutdown,
        quota: gw.hub.guard.connection(),
    };
    let max = s.gw.hub.config.limits.max_frame_bytes as usize;
    let close = loop {
        tokio::select! {
            m = tokio::time::timeout(SILENCE, stream.next()) => match m {
                Err(_) => break Some((ErrorCode::ReadTimeout, "no message within 400 s".to_string())),
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break None,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(Some(Ok(msg))) => match frame::decode(&msg, dialect.format, max) {
                    Ok(cmd) => if let Some(close) = s.handle(cmd).await {
                        break Some(close);
                    },
                    Err(e @ FrameError::TooLong { .. }) => break Some((ErrorCode::FrameTooLong, e.to_string())),
                    Err(e) => break Some((ErrorCode::UnparseableRawMsg, e.to_string())),
                },
            },
            Some(ended) = s.sessions.join_next(), if !s.sessions.is_empty() => {
                if let Ok((client, generation)) = ended
                    && s.peers.get(&client).is_some_and(|e| e.generation == generation)
                {
                    s.peers.remove(&client);
                }
            }
            _ = s.shutdown.recv() => break Some((ErrorCode::ServerShutdown, "server shutting down".to_string())),
        }
    };
    // The sessions see their input end (a drop, so wills fire) or the
    // shutdown, and finish; then the socket closes.
    s.peers.clear();
    let grace = Duration::from_secs(s.gw.hub.config.server.shutdown_grace_secs);
    let _ = tokio::time::timeout(grace, async {
        while s.sessions.join_next().await.is_some() {}
    })
    .await;
    if let Some((code, reason)) = close {
        tracing::debug!(code = code.code(), %reason, "closing a LeanCloud socket");
        let _ = s.out.send(WsOut::Close(code.code(), reason));
    }
    drop(s);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    drop(done);
}

impl Socket {
    /// `Some`: close the socket with this code (a flood).
    async fn handle(&mut self, cmd: GenericCommand) -> Option<(ErrorCode, String)> {
        let kind = CommandType::try_from(cmd.cmd.unwrap_or(0)).ok();
        let op = cmd.op.and_then(|o| OpType::try_from(o).ok());
        let gw = self.gw.clone();
        let guard = &gw.hub.guard;
        match (kind, op) {
            (Some(CommandType::Echo), _) => {
                if !self.quota.ping(guard) {
                    return Some(flood("too many echoes (quotas.pings_per_sec)"));
                }
                let echo = outbound::command(CommandType::Echo, None, cmd.i);
                self.answer(&echo);
            }
            (Some(CommandType::Session), Some(OpType::Open)) => {
                if !self.quota.request(guard) {
                    return Some(flood("too many session/open (quotas.requests_per_sec)"));
                }
                self.open(cmd).await;
            }
            _ => {
                if !self.forward(cmd).await && !self.quota.request(guard) {
                    return Some(flood(
                        "too many commands for no session (quotas.requests_per_sec)",
                    ));
                }
            }
        }
        None
    }

    fn answer(&self, cmd: &GenericCommand) {
        let _ = self
            .out
            .send(unaccounted(frame::encode(cmd, self.dialect.format)));
    }

    /// A client's `session/open`: a new session on this socket.
    async fn open(&mut self, cmd: GenericCommand) {
        let i = cmd.i;
        let Some(client) = cmd.peer_id.clone().filter(|p| !p.is_empty()) else {
            return self.answer(&outbound::error_code(
                i,
                ErrorCode::InvalidLogin,
                "peerId is required",
            ));
        };
        if self.peers.get(&client).is_some_and(|e| !e.tx.is_closed()) {
            return self.answer(&outbound::error_code(
                i,
                ErrorCode::DuplicatedLogin,
                "this client is already logged in on this socket",
            ));
        }
        let max = self.gw.hub.config.gateway.max_clients_per_socket as usize;
        if self.peers.len() >= max {
            return self.answer(&outbound::error_code(
                i,
                ErrorCode::AppQuotaExceeded,
                "too many clients on one socket (gateway.max_clients_per_socket)",
            ));
        }
        let creds = self.gw.hub.auth.credentials();
        let login = match super::open::login(
            &cmd,
            &client,
            self.dialect,
            &self.gw.tokens,
            creds,
            crate::util::now_ms(),
        ) {
            Ok(l) => l,
            Err(e) => return self.answer(&outbound::error(i, &e)),
        };
        let peer = Peer::new(
            client.clone(),
            self.dialect,
            self.gw.tokens.clone(),
            self.out.clone(),
        );
        peer.expect(
            1,
            Pending::Open {
                i,
                tag: login.tag.clone(),
            },
        );
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let _ = tx.try_send(ClientFrame::Request {
            id: 1,
            cmd: Command::Login(login),
        });
        self.generation += 1;
        let generation = self.generation;
        let door = PeerDoor::new(peer.clone(), rx, self.ip);
        let hub = self.gw.hub.clone();
        let mut shutdown = self.shutdown.resubscribe();
        let done = self.gw.done.clone();
        let deadline = Instant::now() + Duration::from_millis(hub.config.limits.login_timeout_ms);
        let name = client.clone();
        self.sessions.spawn(async move {
            crate::session::serve(hub, door, deadline, &mut shutdown).await;
            drop(done);
            (name, generation)
        });
        self.peers.insert(
            client,
            Entry {
                peer,
                tx,
                next_id: 2,
                generation,
            },
        );
    }

    /// Any other command: to the session of the client it names, or of
    /// the only client (`omit-peer-id`). `false`: there was none.
    async fn forward(&mut self, cmd: GenericCommand) -> bool {
        let i = cmd.i;
        let named = cmd.peer_id.clone().filter(|p| !p.is_empty());
        let key = match named {
            Some(p) => Some(p),
            None if self.peers.len() == 1 => self.peers.keys().next().cloned(),
            None => None,
        };
        let Some(entry) = key.and_then(|k| self.peers.get_mut(&k)) else {
            if i.is_some() {
                self.answer(&outbound::error_code(
                    i,
                    ErrorCode::SessionRequired,
                    "send session/open first",
                ));
            }
            return false;
        };
        match inbound::translate(&self.gw.hub, &entry.peer, cmd) {
            Inbound::Engine(cmds) => {
                for (c, pending) in cmds {
                    let id = entry.next_id;
                    entry.next_id += 1;
                    if let Some(p) = pending {
                        entry.peer.expect(id, p);
                    }
                    if entry
                        .tx
                        .send(ClientFrame::Request { id, cmd: c })
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
            Inbound::Frame(f) => {
                let _ = entry.tx.send(f).await;
            }
            Inbound::Local(l) => {
                tokio::spawn(super::local::answer(
                    self.gw.hub.clone(),
                    entry.peer.clone(),
                    i,
                    l,
                ));
            }
            Inbound::Answer(g) => entry.peer.send(&g),
            Inbound::Nothing => {}
        }
        true
    }
}

fn flood(reason: &str) -> (ErrorCode, String) {
    (ErrorCode::QuotaExceeded, reason.to_owned())
}

/// Writes what is queued, several messages per flush.
async fn write(mut sink: SplitSink<WebSocket, Message>, mut rx: mpsc::UnboundedReceiver<WsOut>) {
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut n = 0;
        while let Some(out) = next.take().or_else(|| rx.try_recv().ok()) {
            match out {
                WsOut::Msg(m, backlog) => {
                    let len = frame::len(&m);
                    let fed = sink.feed(m).await;
                    if let Some(b) = backlog {
                        b.wrote_out(len);
                    }
                    if fed.is_err() {
                        return;
                    }
                }
                WsOut::Close(code, reason) => {
                    let _ = sink.flush().await;
                    let close = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    return;
                }
            }
            n += 1;
            if n >= 256 {
                break;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}
