//! One IM client on a LeanCloud socket, as the session engine sees it: a
//! [`Door`] whose input is the commands the socket routed to this
//! `peerId`, and an [`Outlet`] that turns the engine's replies and events
//! into `GenericCommand`s for the socket's writer. Several peers share one
//! socket (the JS SDK opens all of a page's clients on one); each has its
//! own session, backlog and pending requests.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::frame::{self, Dialect};
use super::outbound::{self, Pending};
use super::proto::GenericCommand;
use super::socket::WsOut;
use super::tokens::{Holder, Tokens};
use crate::core::outbound::TransientFrames;
use crate::protocol::{ClientFrame, ConvId, ErrorBody, ErrorCode, Event, Reply, ServerFrame};
use crate::session::{Backlog, Door, DoorError, Incoming, Outlet, Want};

/// How often a peer tells the engine its socket is alive. The SDKs beat
/// every 180 s (echo or WebSocket ping), longer than the engine's idle
/// timeout; the socket enforces its own idle limit instead (`socket.rs`).
const ALIVE_EVERY: Duration = Duration::from_secs(30);

/// Written-but-unacked messages remembered per conversation, for acks by
/// time; the engine's own in-flight cap is smaller.
const MAX_UNACKED: usize = 4096;

/// What the outlet and the socket share about one peer.
pub(super) struct Peer {
    pub client: String,
    dialect: Dialect,
    tokens: Arc<Tokens>,
    ws: mpsc::UnboundedSender<WsOut>,
    backlog: Arc<Backlog>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// By engine request id: what the answer should look like.
    pending: HashMap<u64, Pending>,
    /// Per conversation, stored messages written to this peer and not yet
    /// acked, by timestamp: the JS SDK acks a range of timestamps
    /// (`fromts`/`tots`), the engine a seq.
    delivered: HashMap<ConvId, BTreeMap<u64, u64>>,
    /// Per conversation, messages this client sent asking for receipts
    /// and not yet delivered: (timestamp, id), oldest first.
    awaiting_receipt: HashMap<ConvId, Vec<(u64, String)>>,
    /// Delivery receipts held while a send asking for receipts awaits its
    /// ack: (conv, by, at). The engine's ack (a reply) and the receiver's
    /// receipt (an event) travel apart, so under load the receipt can come
    /// first; the SDKs only mark a message delivered if its ack came before.
    held_receipts: Vec<(ConvId, String, u64)>,
    /// The tag of the login, once it succeeded: session tokens carry it.
    tag: Option<String>,
    logged_in: bool,
    /// A `session/closed` went out: nothing more for this peer.
    closed: bool,
}

impl State {
    /// Whether a send asking for receipts still awaits its ack. Read from
    /// `pending` (a handful of requests in flight) rather than counted
    /// beside it.
    fn acks_owed(&self) -> bool {
        self.pending
            .values()
            .any(|p| matches!(p, Pending::Direct { receipt: true, .. }))
    }
}

impl Peer {
    pub(super) fn new(
        client: String,
        dialect: Dialect,
        tokens: Arc<Tokens>,
        ws: mpsc::UnboundedSender<WsOut>,
    ) -> Arc<Peer> {
        Arc::new(Peer {
            client,
            dialect,
            tokens,
            ws,
            backlog: Arc::new(Backlog::default()),
            state: Mutex::new(State::default()),
        })
    }

    /// Remembers how to answer engine request `id`.
    pub(super) fn expect(&self, id: u64, p: Pending) {
        self.state.lock().pending.insert(id, p);
    }

    /// The seq an ack comes to: the message it names (`mid`: Swift, ObjC,
    /// Java), or the newest written at or before `tots` (JS's range of
    /// timestamps); what it covers is forgotten.
    pub(super) fn acked(&self, conv: ConvId, by_id: Option<u64>, tots: Option<u64>) -> Option<u64> {
        let mut st = self.state.lock();
        let map = st.delivered.get_mut(&conv);
        let by_time = match (map, tots) {
            (Some(map), Some(t)) => map.range(..=t).map(|(_, s)| *s).max(),
            _ => None,
        };
        let seq = by_id.max(by_time)?;
        if let Some(map) = st.delivered.get_mut(&conv) {
            map.retain(|_, s| *s > seq);
            if map.is_empty() {
                st.delivered.remove(&conv);
            }
        }
        Some(seq)
    }

    /// Queues a command for the socket, counted in this peer's backlog.
    pub(super) fn send(&self, cmd: &GenericCommand) {
        let msg = frame::encode(cmd, self.dialect.format);
        let len = frame::len(&msg);
        self.backlog.queued_out(len);
        if self
            .ws
            .send(WsOut::Msg(msg, Some(self.backlog.clone())))
            .is_err()
        {
            self.backlog.wrote_out(len);
        }
    }

    /// A push for this peer: LeanCloud's push fields are set here.
    fn push(&self, mut cmd: GenericCommand) {
        outbound::stamp_push(&mut cmd, &self.client);
        self.send(&cmd);
    }

    fn on_event(&self, ev: Event) {
        match ev {
            Event::LastDeliveredAt { conv, by, at } => return self.receipt(conv, by, at, false),
            Event::LastReadAt { conv, by, at } => return self.receipt(conv, by, at, true),
            _ => {}
        }
        if let Event::Message { msg, .. } = &ev
            && !msg.transient
            && msg.seq > 0
        {
            let mut st = self.state.lock();
            let map = st.delivered.entry(msg.conv).or_default();
            map.entry(msg.timestamp)
                .and_modify(|s| *s = (*s).max(msg.seq))
                .or_insert(msg.seq);
            // A client that never acks by time costs a bounded map; the
            // engine redelivers what it has not acked anyway.
            if map.len() > MAX_UNACKED {
                map.pop_first();
            }
        }
        if let Event::Conflict { code, reason } = &ev {
            // Said as `session/closed`; the engine's close then adds nothing.
            let mut st = self.state.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            drop(st);
            self.push(outbound::session_closed(None, i32::from(*code), reason));
            return;
        }
        if let Some(cmd) = outbound::event(ev) {
            self.push(cmd);
        }
    }

    fn on_reply(&self, id: u64, result: Result<Reply, ErrorBody>) {
        let Some(p) = self.state.lock().pending.remove(&id) else {
            // A request the SDK sent without `i` (read): nobody waits.
            if let Err(e) = result {
                tracing::debug!(client = %self.client, error = %e, "unanswerable request failed");
            }
            return;
        };
        if let (Pending::Open { tag, .. }, Ok(_)) = (&p, &result) {
            {
                let mut st = self.state.lock();
                st.logged_in = true;
                st.tag.clone_from(tag);
            }
            let token = self.issue_token();
            self.send(&outbound::opened(
                &p,
                &self.client,
                &token,
                self.tokens.ttl_secs(),
            ));
            return;
        }
        if let (
            Pending::Direct { receipt: true, .. },
            Ok(Reply::Sent {
                msg_id, timestamp, ..
            }),
        ) = (&p, &result)
            && let Some((conv, _)) = crate::protocol::parse_msg_id(msg_id)
        {
            let mut st = self.state.lock();
            let waiting = st.awaiting_receipt.entry(conv).or_default();
            waiting.push((*timestamp, msg_id.clone()));
            if waiting.len() > MAX_UNACKED {
                waiting.remove(0);
            }
        }
        let owed = matches!(p, Pending::Direct { receipt: true, .. });
        if let Some(cmd) = outbound::reply(p, result, &self.client) {
            self.send(&cmd);
        }
        if owed {
            let held = {
                let mut st = self.state.lock();
                if !st.acks_owed() {
                    std::mem::take(&mut st.held_receipts)
                } else {
                    Vec::new()
                }
            };
            for (conv, by, at) in held {
                self.receipt(conv, by, at, false);
            }
        }
    }

    /// A delivery receipt names each message of this client's that it
    /// covers (the SDKs mark those delivered); a read receipt, or one that
    /// covers none, says the conversation's time alone.
    fn receipt(&self, conv: ConvId, by: String, at: u64, read: bool) {
        let named: Vec<String> = {
            let mut st = self.state.lock();
            if !read && st.acks_owed() && st.held_receipts.len() < MAX_UNACKED {
                st.held_receipts.push((conv, by, at));
                return;
            }
            match st.awaiting_receipt.get_mut(&conv) {
                Some(waiting) => {
                    let (done, rest) = waiting.drain(..).partition(|(t, _)| *t <= at);
                    *waiting = rest;
                    if waiting.is_empty() {
                        st.awaiting_receipt.remove(&conv);
                    }
                    done.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
                }
                None => Vec::new(),
            }
        };
        if named.is_empty() || read {
            self.push(outbound::rcp(conv, by.clone(), at, read));
        }
        for id in named {
            self.push(outbound::rcp_for(conv, Some(id), by.clone(), at, false));
        }
    }

    /// The client as the features name a caller, for what the door does
    /// off the engine (queries, the blacklist signature check).
    pub(super) fn caller(&self) -> crate::core::Caller {
        crate::core::Caller {
            client: self.client.clone(),
            device_id: String::new(),
            conn_id: 0,
            ip: String::new(),
        }
    }

    pub(super) fn issue_token(&self) -> String {
        let tag = self.state.lock().tag.clone();
        self.tokens.issue(
            Holder {
                client: self.client.clone(),
                tag,
            },
            crate::util::now_ms(),
        )
    }

    pub(super) fn tokens(&self) -> &Tokens {
        &self.tokens
    }
}

/// The engine's side of a peer: its input channel and its outlet.
pub(super) struct PeerDoor {
    out: LcOutlet,
    rx: mpsc::Receiver<ClientFrame>,
    ip: IpAddr,
    alive: tokio::time::Interval,
}

impl PeerDoor {
    pub(super) fn new(peer: Arc<Peer>, rx: mpsc::Receiver<ClientFrame>, ip: IpAddr) -> PeerDoor {
        let mut alive = tokio::time::interval(ALIVE_EVERY);
        alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        alive.reset();
        PeerDoor {
            out: LcOutlet(peer),
            rx,
            ip,
            alive,
        }
    }
}

#[derive(Clone)]
pub struct LcOutlet(Arc<Peer>);

impl Door for PeerDoor {
    type Out = LcOutlet;

    fn outlet(&self) -> &LcOutlet {
        &self.out
    }

    fn peer_ip(&self) -> IpAddr {
        self.ip
    }

    async fn next(&mut self, want: Want) -> Result<Incoming, DoorError> {
        tokio::select! {
            f = self.rx.recv(), if want.frames => f.map(Incoming::Frame).ok_or(DoorError::Lost),
            // The socket is open, so the client is there (socket.rs closes
            // a silent one).
            _ = self.alive.tick() => Ok(Incoming::Unreliable(None)),
        }
    }

    fn transient(&self, t: &TransientFrames) {
        self.out.encoded(t.frame.clone());
    }

    /// A conflict or a kick ends this client only: `session/closed`, as
    /// LeanCloud says it (the SDK then stops that client). Anything else
    /// the engine closes for (too slow, a flood, the idle limit) is the
    /// connection's trouble: the socket closes with the code and the SDK
    /// reconnects. A shutdown is the socket's to say (`socket.rs`).
    fn close(&self, code: u32, reason: &str) {
        let peer = &self.out.0;
        let mut st = peer.state.lock();
        let said = std::mem::replace(&mut st.closed, true);
        // Before login the refused `session/open` was answered; a logout
        // was answered `session/closed`.
        if !st.logged_in || said || code == 0 {
            return;
        }
        drop(st);
        let conflict = u32::from(ErrorCode::SessionConflict.code());
        let kicked = u32::from(ErrorCode::KickedByApp.code());
        let shutdown = u32::from(ErrorCode::ServerShutdown.code());
        if code == conflict || code == kicked {
            let code = i32::try_from(code).unwrap_or(i32::MAX);
            peer.push(outbound::session_closed(None, code, reason));
        } else if code != shutdown {
            let code = u16::try_from(code).unwrap_or(u16::MAX);
            let _ = peer.ws.send(WsOut::Close(code, reason.to_owned()));
        }
    }
}

impl Outlet for LcOutlet {
    fn reply(&self, id: u64, result: Result<Reply, ErrorBody>) {
        self.0.on_reply(id, result);
    }

    fn event(&self, ev: Event) -> bool {
        self.0.on_event(ev);
        true
    }

    /// Frames the fan-out encoded once for the QUIC door: decoded back
    /// here, once per receiver on this door. The cost is measured in
    /// docs/PERFORMANCE.md (`ws-direct`); handing doors the `Message`
    /// beside the bytes would remove it.
    fn encoded(&self, frame: Bytes) {
        let body = frame
            .get(crate::wire::frame::HEADER_LEN..)
            .unwrap_or_default();
        match crate::wire::codec::decode::<ServerFrame>(body) {
            Ok(ServerFrame::Event(ev)) => self.0.on_event(ev),
            Ok(ServerFrame::Response { id, result }) => self.0.on_reply(id, result),
            Err(e) => tracing::error!(error = %e, "an encoded frame did not decode"),
        }
    }

    fn backlog(&self) -> &Arc<Backlog> {
        &self.0.backlog
    }

    async fn drain(&self, limit: Duration) {
        let backlog = &self.0.backlog;
        let _ = tokio::time::timeout(limit, async {
            while backlog.out() > 0 {
                backlog.shrunk().await;
            }
        })
        .await;
    }
}

/// Writes `msg` to nobody's backlog (answers the socket gives itself).
pub(super) fn unaccounted(msg: Message) -> WsOut {
    WsOut::Msg(msg, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::frame::Format;
    use crate::protocol::{Content, Message, SyncMode};

    fn peer() -> (Arc<Peer>, mpsc::UnboundedReceiver<WsOut>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let dialect = Dialect {
            format: Format::Binary,
            sync: SyncMode::Pull,
        };
        (
            Peer::new("bob".into(), dialect, Arc::new(Tokens::new(60)), tx),
            rx,
        )
    }

    fn deliver(p: &Peer, conv: ConvId, seq: u64, ts: u64) {
        let msg = Message::new(conv, seq, "alice", ts, Content::Text("x".into()));
        p.on_event(Event::Message {
            msg,
            redelivered: false,
            chat_room: false,
        });
    }

    #[test]
    fn acks_by_time_and_by_id_come_to_a_seq_and_forget_what_they_cover() {
        let (p, mut rx) = peer();
        let conv = ConvId([3; 12]);
        deliver(&p, conv, 1, 100);
        deliver(&p, conv, 2, 100);
        deliver(&p, conv, 3, 200);
        deliver(&p, conv, 4, 300);
        for _ in 0..4 {
            assert!(
                matches!(rx.try_recv(), Ok(WsOut::Msg(..))),
                "each is written"
            );
        }
        assert_eq!(p.acked(conv, None, Some(150)), Some(2), "JS: fromts..tots");
        assert_eq!(p.acked(conv, None, Some(150)), None, "already forgotten");
        assert_eq!(p.acked(conv, Some(3), None), Some(3), "Swift: by mid");
        assert_eq!(
            p.acked(conv, None, Some(250)),
            None,
            "3 went with the id ack"
        );
        assert_eq!(p.acked(conv, None, Some(300)), Some(4));
        assert!(p.state.lock().delivered.is_empty());
        assert_eq!(
            p.acked(ConvId([4; 12]), None, Some(1)),
            None,
            "nothing written there"
        );
    }

    #[test]
    fn pushes_carry_the_im_service_and_the_client() {
        let (p, mut rx) = peer();
        deliver(&p, ConvId([3; 12]), 1, 100);
        let Ok(WsOut::Msg(axum::extract::ws::Message::Binary(b), Some(_))) = rx.try_recv() else {
            panic!("a counted binary message");
        };
        let cmd = <GenericCommand as prost::Message>::decode(b.as_ref()).unwrap();
        assert_eq!(
            (cmd.service, cmd.peer_id.as_deref(), cmd.i),
            (Some(2), Some("bob"), None)
        );
        assert_eq!(cmd.direct_message.unwrap().msg.as_deref(), Some("x"));
    }

    fn next_cmd(rx: &mut mpsc::UnboundedReceiver<WsOut>) -> Option<GenericCommand> {
        match rx.try_recv() {
            Ok(WsOut::Msg(axum::extract::ws::Message::Binary(b), _)) => {
                <GenericCommand as prost::Message>::decode(b.as_ref()).ok()
            }
            _ => None,
        }
    }

    #[test]
    fn a_delivery_receipt_that_beats_the_ack_waits_for_it_and_names_the_message() {
        let (p, mut rx) = peer();
        let conv = ConvId([5; 12]);
        p.expect(
            7,
            Pending::Direct {
                i: Some(3),
                receipt: true,
            },
        );
        p.on_event(Event::LastDeliveredAt {
            conv,
            by: "alice".into(),
            at: 150,
        });
        assert!(next_cmd(&mut rx).is_none(), "held while the ack is owed");
        p.on_reply(
            7,
            Ok(Reply::Sent {
                msg_id: crate::protocol::msg_id(conv, 1),
                seq: 1,
                timestamp: 100,
                duplicate: false,
            }),
        );
        let ack = next_cmd(&mut rx).expect("the ack first");
        assert_eq!(ack.i, Some(3));
        assert!(ack.ack_message.is_some());
        let rcp = next_cmd(&mut rx).expect("then the receipt");
        let r = rcp.rcp_message.expect("a rcp");
        assert_eq!(
            r.id,
            Some(crate::protocol::msg_id(conv, 1)),
            "it names the message"
        );
        assert!(next_cmd(&mut rx).is_none());

        // With no ack owed, a receipt goes straight out.
        p.on_event(Event::LastDeliveredAt {
            conv,
            by: "alice".into(),
            at: 160,
        });
        assert!(next_cmd(&mut rx).and_then(|c| c.rcp_message).is_some());
    }
}
