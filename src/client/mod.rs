//! The async client library used by the CLI, the integration tests and the bench tool.
//!
//! One [`Client::connect`] makes one QUIC connection with one bidirectional
//! stream, logs in, and starts two tasks: a driver that reads server frames
//! (and datagrams), answering requests and queueing events, and a writer that
//! owns the send stream so requests from many tasks are written in order
//! without a lock held across an await. [`Client`] is a cheap handle for
//! requests; [`Events`] is the event stream. The connection is closed when it
//! ends on its own or when every `Client` clone and the `Events` are dropped.

mod acks;
mod driver;
mod moderation;
mod signer;
pub mod typed;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

pub use acks::AckBatch;
use driver::{Driver, Shared, Writer};
pub use moderation::{ClientPage, Partial};
pub use signer::Signer;

use crate::auth::{ConvAction, ConvOp};
use crate::protocol::{
    ClientFrame, Command, Content, ConvId, ConvKind, ConversationInfo, CreateConversation,
    EditMessage, ErrorBody, Event, HistoryQuery, Login, Message, OpSignature, Reply, SendMessage,
    SyncMode,
};
use crate::transport::{self, FrameReader, ServerTrust, StreamError, TransportError, close_code};
use crate::wire::codec::{self, CodecError};

/// The TLS server name the client asks for; the generated certificate carries it.
pub const DEFAULT_SERVER_NAME: &str = "tidings";

/// Server frames can be large (a 1000-message history page), so the client
/// accepts anything the codec itself accepts.
const MAX_SERVER_FRAME: usize = codec::DECODE_LIMIT;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub server: SocketAddr,
    pub trust: ServerTrust,
    pub app_id: String,
    pub signer: Signer,
    pub client_id: String,
    pub tag: Option<String>,
    pub device_id: Option<String>,
    /// LeanCloud's `isReconnect`: on a tag conflict, give way instead of kicking the other device.
    pub reconnect: bool,
    pub sync: SyncMode,
    /// Acknowledge stored messages as they arrive (batched every 20 ms).
    pub auto_ack: bool,
    /// Zero disables pings.
    pub ping_interval: Duration,
    /// Bounds every request, and the connect-and-login as a whole.
    pub request_timeout: Duration,
    /// Bounds the QUIC handshake alone: a server that is not there is
    /// reported as [`ClientError::Unreachable`] after this, not after the
    /// whole `request_timeout`.
    pub connect_timeout: Duration,
    /// QUIC keep-alive interval (`limits.keep_alive_secs`): a server that
    /// vanished is noticed after [`transport::dead_peer_timeout`] of it.
    /// Ignored with `endpoint`, whose own config applies.
    pub keep_alive: Duration,
    /// TLS server name; only matters with [`ServerTrust::Roots`].
    pub server_name: String,
    /// Connect through this endpoint instead of a new one, so many clients
    /// share one UDP socket (the bench). Its default client config is used,
    /// so `trust` is ignored; build it with [`transport::client_endpoint`].
    pub endpoint: Option<quinn::Endpoint>,
    /// The push device (APNs/FCM token or installationId) the login binds
    /// to this client ([`Login::device_token`]).
    pub device_token: Option<String>,
}

impl ClientOptions {
    pub fn new(
        server: SocketAddr,
        trust: ServerTrust,
        app_id: impl Into<String>,
        signer: Signer,
        client_id: impl Into<String>,
    ) -> Self {
        ClientOptions {
            server,
            trust,
            app_id: app_id.into(),
            signer,
            client_id: client_id.into(),
            tag: None,
            device_id: None,
            reconnect: false,
            sync: SyncMode::Push,
            auto_ack: true,
            ping_interval: Duration::from_secs(20),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            keep_alive: transport::DEFAULT_KEEP_ALIVE,
            server_name: DEFAULT_SERVER_NAME.to_owned(),
            endpoint: None,
            device_token: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    Server(Event),
    /// The connection ended; always the last event. `code` is the server's
    /// LeanCloud close code when it closed with one.
    Closed {
        code: Option<u16>,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub msg_id: String,
    pub seq: u64,
    pub timestamp: u64,
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("connection closed{}: {reason}", code.map(|c| format!(" ({c})")).unwrap_or_default())]
    Closed { code: Option<u16>, reason: String },
    #[error("server error {0}")]
    Server(ErrorBody),
    #[error("request timed out")]
    Timeout,
    #[error("no answer from {addr} within {after:?}: is the server running and reachable?")]
    Unreachable { addr: SocketAddr, after: Duration },
    #[error(transparent)]
    Frame(#[from] StreamError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("unexpected reply: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// The LeanCloud code behind the failure: the error body's, or the close code.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Server(body) => Some(body.code),
            ClientError::Closed { code, .. } => *code,
            ClientError::Connection(e) | ClientError::Transport(TransportError::Connection(e)) => {
                close_code(e)
            }
            ClientError::Frame(StreamError::Read(quinn::ReadError::ConnectionLost(e))) => {
                close_code(e)
            }
            _ => None,
        }
    }
}

fn unexpected(what: &str, reply: Reply) -> ClientError {
    ClientError::Unexpected(format!("expected {what}, got {reply:?}"))
}

/// Closes the connection when the last `Client` clone and the `Events` are
/// gone; the background tasks hold `Shared`, never this, so they cannot keep
/// an abandoned connection alive.
struct Guard {
    conn: quinn::Connection,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.conn.close(0u32.into(), b"client dropped");
    }
}

struct Inner {
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Bytes>,
    client_id: String,
    device_id: String,
    server_time: u64,
    request_timeout: Duration,
    /// Signs conversation operations the caller did not sign itself.
    app_id: String,
    signer: Signer,
    _guard: Arc<Guard>,
    // Keeps the socket owned even if the caller dropped the endpoint it passed in.
    _endpoint: quinn::Endpoint,
}

/// A handle for requests; clones share one connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.inner.client_id)
            .field("device_id", &self.inner.device_id)
            .finish_non_exhaustive()
    }
}

/// Removes a request's waiter if the caller stops waiting (timeout or a dropped future).
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending.lock().map.remove(&self.id);
    }
}

async fn request_on(
    shared: &Shared,
    out: &mpsc::UnboundedSender<Bytes>,
    timeout: Duration,
    cmd: Command,
) -> Result<Reply, ClientError> {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let bytes = crate::wire::frame::encode(&ClientFrame::Request { id, cmd })?;
    let (tx, rx) = oneshot::channel();
    {
        let mut p = shared.pending.lock();
        if let Some(info) = &p.closed {
            return Err(info.error());
        }
        p.map.insert(id, tx);
    }
    let _guard = PendingGuard { shared, id };
    if out.send(bytes).is_err() {
        return Err(closed_error(shared));
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(closed_error(shared)),
        Err(_) => Err(ClientError::Timeout),
    }
}

fn closed_error(shared: &Shared) -> ClientError {
    match &shared.pending.lock().closed {
        Some(info) => info.error(),
        None => ClientError::Closed {
            code: None,
            reason: "connection closing".into(),
        },
    }
}

impl Client {
    /// Connects, logs in and starts the background tasks. A login the server
    /// refuses is `ClientError::Server`; a connection closed before the
    /// answer is `ClientError::Closed` with the close code.
    pub async fn connect(opts: ClientOptions) -> Result<(Client, Events), ClientError> {
        let timeout = opts.request_timeout;
        match tokio::time::timeout(timeout, Self::connect_inner(opts)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout),
        }
    }

    async fn connect_inner(opts: ClientOptions) -> Result<(Client, Events), ClientError> {
        let endpoint = match &opts.endpoint {
            Some(ep) => ep.clone(),
            None => {
                transport::client_endpoint_with(opts.server, opts.trust.clone(), opts.keep_alive)?
            }
        };
        let connecting = endpoint
            .connect(opts.server, &opts.server_name)
            .map_err(TransportError::from)?;
        let conn = match tokio::time::timeout(opts.connect_timeout, connecting).await {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(ClientError::Unreachable {
                    addr: opts.server,
                    after: opts.connect_timeout,
                });
            }
        };
        let guard = Arc::new(Guard { conn: conn.clone() });
        let (send, recv) = conn.open_bi().await?;

        let shared = Arc::new(Shared::new(conn));
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        tokio::spawn(
            Driver {
                shared: shared.clone(),
                reader: FrameReader::new(recv, MAX_SERVER_FRAME),
                events: ev_tx,
                auto_ack: opts.auto_ack,
            }
            .run(),
        );
        tokio::spawn(
            Writer {
                shared: shared.clone(),
                send,
                frames: out_rx,
                ping_interval: opts.ping_interval,
            }
            .run(),
        );

        let (timestamp, nonce, signature) = opts.signer.sign(&opts.app_id, &opts.client_id);
        let login = Login {
            app_id: opts.app_id.clone(),
            client_id: opts.client_id.clone(),
            tag: opts.tag,
            device_id: opts.device_id,
            reconnect: opts.reconnect,
            timestamp,
            nonce,
            signature,
            sync: opts.sync,
            device_token: opts.device_token.clone(),
        };
        // On any error below, dropping `guard` closes the connection and ends both tasks.
        let reply = request_on(
            &shared,
            &out_tx,
            opts.request_timeout,
            Command::Login(login),
        )
        .await?;
        let Reply::LoggedIn {
            server_time,
            device_id,
        } = reply
        else {
            return Err(unexpected("LoggedIn", reply));
        };
        let client = Client {
            inner: Arc::new(Inner {
                shared,
                out: out_tx,
                client_id: opts.client_id,
                device_id,
                server_time,
                request_timeout: opts.request_timeout,
                app_id: opts.app_id,
                signer: opts.signer,
                _guard: guard.clone(),
                _endpoint: endpoint,
            }),
        };
        let events = Events {
            rx: ev_rx,
            _guard: guard,
        };
        Ok((client, events))
    }

    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The device this session acknowledges for, as the server resolved it.
    pub fn device_id(&self) -> &str {
        &self.inner.device_id
    }

    /// Server clock at login, in milliseconds.
    pub fn server_time(&self) -> u64 {
        self.inner.server_time
    }

    /// Whether the connection has ended (as seen by the driver).
    pub fn is_closed(&self) -> bool {
        self.inner.shared.pending.lock().closed.is_some()
    }

    /// The underlying QUIC connection, for stats and tests.
    pub fn connection(&self) -> &quinn::Connection {
        &self.inner.shared.conn
    }

    /// Sends any command and waits for its answer; an error answer is `ClientError::Server`.
    pub async fn request(&self, cmd: Command) -> Result<Reply, ClientError> {
        request_on(
            &self.inner.shared,
            &self.inner.out,
            self.inner.request_timeout,
            cmd,
        )
        .await
    }

    async fn request_ok(&self, cmd: Command) -> Result<(), ClientError> {
        match self.request(cmd).await? {
            Reply::Ok => Ok(()),
            other => Err(unexpected("Ok", other)),
        }
    }

    async fn request_conversation(&self, cmd: Command) -> Result<ConversationInfo, ClientError> {
        match self.request(cmd).await? {
            Reply::Conversation(info) => Ok(info),
            other => Err(unexpected("Conversation", other)),
        }
    }

    /// The signature this client's signer makes for an operation (`None`
    /// unless it holds the master key).
    fn auto_sign(
        &self,
        conv: Option<ConvId>,
        members: &[String],
        action: ConvAction,
    ) -> Option<OpSignature> {
        let id = conv.map(|c| c.to_string());
        let op = ConvOp {
            client_id: &self.inner.client_id,
            conv: id.as_deref(),
            members,
            action,
        };
        self.inner.signer.sign_conversation(&self.inner.app_id, &op)
    }

    /// Sends `c` with its own signature, or one this client's signer makes
    /// over `c.members` when it has none.
    pub async fn create_conversation(
        &self,
        mut c: CreateConversation,
    ) -> Result<ConversationInfo, ClientError> {
        if c.sig.is_none() {
            c.sig = self.auto_sign(None, &c.members, ConvAction::Create);
        }
        self.request_conversation(Command::CreateConversation(c))
            .await
    }

    /// The unique normal conversation of the caller and `members`, created if needed.
    pub async fn create_unique(
        &self,
        members: Vec<String>,
    ) -> Result<ConversationInfo, ClientError> {
        self.create_conversation(CreateConversation {
            members,
            name: None,
            attr: None,
            unique: true,
            kind: ConvKind::Normal,
            sig: None,
            ttl_secs: None,
        })
        .await
    }

    pub async fn get_conversation(&self, conv: ConvId) -> Result<ConversationInfo, ClientError> {
        self.request_conversation(Command::GetConversation { conv })
            .await
    }

    /// The caller's conversations, most recently active first.
    pub async fn conversations(&self, limit: u32) -> Result<Vec<ConversationInfo>, ClientError> {
        match self.request(Command::ListConversations { limit }).await? {
            Reply::Conversations(list) => Ok(list),
            other => Err(unexpected("Conversations", other)),
        }
    }

    /// Joins, signed by this client's signer when it can (see [`Signer::sign_conversation`]).
    pub async fn join(&self, conv: ConvId) -> Result<(), ClientError> {
        let me = [self.inner.client_id.clone()];
        let sig = self.auto_sign(Some(conv), &me, ConvAction::Invite);
        self.request_ok(Command::Join { conv, sig }).await
    }

    /// Joins with a signature an app server made (an `invite` of the caller).
    pub async fn join_signed(&self, conv: ConvId, sig: OpSignature) -> Result<(), ClientError> {
        self.request_ok(Command::Join {
            conv,
            sig: Some(sig),
        })
        .await
    }

    /// Leaves; signed when this client's signer can, though a quit needs no signature.
    pub async fn leave(&self, conv: ConvId) -> Result<(), ClientError> {
        let me = [self.inner.client_id.clone()];
        let sig = self.auto_sign(Some(conv), &me, ConvAction::Kick);
        self.request_ok(Command::Leave { conv, sig }).await
    }

    pub async fn add_members(&self, conv: ConvId, members: Vec<String>) -> Result<(), ClientError> {
        let sig = self.auto_sign(Some(conv), &members, ConvAction::Invite);
        self.request_ok(Command::AddMembers { conv, members, sig })
            .await
    }

    /// Adds members with a signature an app server made (an `invite` of `members`).
    pub async fn add_members_signed(
        &self,
        conv: ConvId,
        members: Vec<String>,
        sig: OpSignature,
    ) -> Result<(), ClientError> {
        let sig = Some(sig);
        self.request_ok(Command::AddMembers { conv, members, sig })
            .await
    }

    pub async fn remove_members(
        &self,
        conv: ConvId,
        members: Vec<String>,
    ) -> Result<(), ClientError> {
        let sig = self.auto_sign(Some(conv), &members, ConvAction::Kick);
        self.request_ok(Command::RemoveMembers { conv, members, sig })
            .await
    }

    /// Removes members with a signature an app server made (a `kick` of `members`).
    pub async fn remove_members_signed(
        &self,
        conv: ConvId,
        members: Vec<String>,
        sig: OpSignature,
    ) -> Result<(), ClientError> {
        let sig = Some(sig);
        self.request_ok(Command::RemoveMembers { conv, members, sig })
            .await
    }

    /// `attr` is a JSON object as text and replaces the custom attributes whole.
    pub async fn update(
        &self,
        conv: ConvId,
        name: Option<String>,
        attr: Option<String>,
    ) -> Result<(), ClientError> {
        self.request_ok(Command::UpdateConversation { conv, name, attr })
            .await
    }

    pub async fn set_managers(
        &self,
        conv: ConvId,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Result<(), ClientError> {
        self.request_ok(Command::SetManagers { conv, add, remove })
            .await
    }

    pub async fn mute(&self, conv: ConvId) -> Result<(), ClientError> {
        self.request_ok(Command::Mute { conv }).await
    }

    pub async fn unmute(&self, conv: ConvId) -> Result<(), ClientError> {
        self.request_ok(Command::Unmute { conv }).await
    }

    pub async fn send(&self, msg: SendMessage) -> Result<Sent, ClientError> {
        match self.request(Command::Send(msg)).await? {
            Reply::Sent {
                msg_id,
                seq,
                timestamp,
                duplicate,
            } => Ok(Sent {
                msg_id,
                seq,
                timestamp,
                duplicate,
            }),
            other => Err(unexpected("Sent", other)),
        }
    }

    pub async fn send_text(&self, conv: ConvId, text: &str) -> Result<Sent, ClientError> {
        self.send(SendMessage::text(conv, text)).await
    }

    /// Marks `conv` read up to `seq` (the newest message when `None`) for all the caller's devices.
    pub async fn read(&self, conv: ConvId, seq: Option<u64>) -> Result<(), ClientError> {
        self.request_ok(Command::Read { conv, seq }).await
    }

    /// A page of history, oldest first, and whether more lies beyond it.
    pub async fn history(&self, q: HistoryQuery) -> Result<(Vec<Message>, bool), ClientError> {
        match self.request(Command::History(q)).await? {
            Reply::History { messages, more } => Ok((messages, more)),
            other => Err(unexpected("History", other)),
        }
    }

    async fn request_updated(&self, cmd: Command) -> Result<Message, ClientError> {
        match self.request(cmd).await? {
            Reply::Updated { msg } => Ok(msg),
            other => Err(unexpected("Updated", other)),
        }
    }

    /// Replaces the content (and mentions) of one of the caller's messages;
    /// returns it as stored, after hooks and the keyword filter.
    pub async fn edit(&self, edit: EditMessage) -> Result<Message, ClientError> {
        self.request_updated(Command::EditMessage(edit)).await
    }

    /// [`Client::edit`] with new text and no mentions.
    pub async fn edit_text(
        &self,
        conv: ConvId,
        msg_id: &str,
        text: &str,
    ) -> Result<Message, ClientError> {
        self.edit(EditMessage {
            conv,
            msg_id: msg_id.to_owned(),
            content: Content::Text(text.to_owned()),
            mention_list: Vec::new(),
            mention_all: false,
        })
        .await
    }

    /// Recalls one of the caller's messages; returns it with the recalled marker.
    pub async fn recall(&self, conv: ConvId, msg_id: &str) -> Result<Message, ClientError> {
        self.request_updated(Command::RecallMessage {
            conv,
            msg_id: msg_id.to_owned(),
        })
        .await
    }

    /// Removes a message from history for everyone (its sender or a manager).
    pub async fn delete_message(&self, conv: ConvId, msg_id: &str) -> Result<(), ClientError> {
        self.request_ok(Command::DeleteMessage {
            conv,
            msg_id: msg_id.to_owned(),
        })
        .await
    }

    /// Deletes a conversation and its history (its owner or a manager).
    pub async fn delete_conversation(&self, conv: ConvId) -> Result<(), ClientError> {
        self.request_ok(Command::DeleteConversation { conv }).await
    }

    /// `(lastDeliveredAt, lastReadAt)` of the caller's messages in `conv`.
    pub async fn receipts(&self, conv: ConvId) -> Result<(Option<u64>, Option<u64>), ClientError> {
        match self.request(Command::Receipts { conv }).await? {
            Reply::Receipts {
                last_delivered_at,
                last_read_at,
            } => Ok((last_delivered_at, last_read_at)),
            other => Err(unexpected("Receipts", other)),
        }
    }

    /// Sets the caller's will message (replacing any earlier one): the server
    /// sends it to `msg.conv` if this connection drops without a logout.
    pub async fn set_will(&self, mut msg: SendMessage) -> Result<Sent, ClientError> {
        msg.will = true;
        msg.transient = false;
        self.send(msg).await
    }

    /// Drops the caller's will message.
    pub async fn clear_will(&self) -> Result<(), ClientError> {
        self.request_ok(Command::ClearWill).await
    }

    /// Tells the online members of `conv` the caller started or stopped
    /// typing. Fire and forget, over a datagram when the peer accepts them.
    pub fn typing(&self, conv: ConvId, started: bool) -> Result<(), ClientError> {
        let frame = ClientFrame::Typing { conv, started };
        let conn = &self.inner.shared.conn;
        let bytes = codec::encode(&frame)?;
        if conn
            .max_datagram_size()
            .is_some_and(|max| bytes.len() <= max)
            && conn.send_datagram(Bytes::from(bytes)).is_ok()
        {
            return Ok(());
        }
        let framed = crate::wire::frame::encode(&frame)?;
        self.inner
            .out
            .send(framed)
            .map_err(|_| closed_error(&self.inner.shared))
    }

    /// Acknowledges everything of `conv` up to `seq`; sent with the next ack
    /// batch. Needed only when `auto_ack` is off.
    pub fn ack(&self, conv: ConvId, seq: u64) {
        self.inner.shared.record_ack(conv, seq);
    }

    /// A proactive logout; the connection is closed afterwards either way.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let result = self.request(Command::Logout).await;
        let conn = &self.inner.shared.conn;
        // The server closes after answering; let its close arrive so that is what peers see.
        if result.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
        }
        // Closing again would replace the server's close, and its code, with ours.
        if conn.close_reason().is_none() {
            conn.close(0u32.into(), b"logout");
        }
        match result {
            Ok(Reply::Ok) => Ok(()),
            Ok(other) => Err(unexpected("Ok", other)),
            // The server may close before its answer is read: logged out all the same.
            Err(ClientError::Closed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Closes the connection abruptly with code 0, as a device dropping off would.
    pub fn abort(&self) {
        self.inner.shared.conn.close(0u32.into(), b"abort");
    }
}

/// The server's events in arrival order, then one `ClientEvent::Closed`, then `None`.
/// The queue is unbounded: a caller that never reads should drop it (the
/// `Client` keeps working, and auto-acks still go out).
pub struct Events {
    rx: mpsc::UnboundedReceiver<ClientEvent>,
    _guard: Arc<Guard>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("queued", &self.rx.len())
            .finish_non_exhaustive()
    }
}

impl Events {
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        self.rx.recv().await
    }

    /// `None` on timeout or at the end of the stream.
    pub async fn recv_timeout(&mut self, d: Duration) -> Option<ClientEvent> {
        tokio::time::timeout(d, self.rx.recv()).await.ok().flatten()
    }

    /// An event already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        self.rx.try_recv().ok()
    }

    /// Waits (bounded) for the next event for which `f` returns Some, skipping others.
    pub async fn wait_for<T>(
        &mut self,
        d: Duration,
        mut f: impl FnMut(&ClientEvent) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .ok()??;
            if let Some(t) = f(&ev) {
                return Some(t);
            }
        }
    }

    /// The next `Event::Message`'s message, skipping other events.
    pub async fn next_message(&mut self, d: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .ok()??;
            if let ClientEvent::Server(Event::Message { msg, .. }) = ev {
                return Some(msg);
            }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fake_server_tests;
