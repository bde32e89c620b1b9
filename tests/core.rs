//! Core behaviour over real QUIC: login and its failure codes, multi-device
//! and tag conflicts, conversations, messages and their FIFO order, transient
//! messages, idempotency tokens, and malformed frames.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use tidings::client::{ClientError, ClientEvent, Signer};
use tidings::protocol::{
    Anchor, ClientFrame, Command, ConvId, ConvKind, CreateConversation, Direction, Event,
    HistoryQuery, Login, Reply, SendMessage, ServerFrame, SyncMode,
};
use tidings::transport::frame::{self, FrameReader};
use tidings::transport::tls::parse_fingerprint;
use tidings::transport::{self, ServerTrust, close_code};
use tokio::time::Instant;

/// The LeanCloud code of a call that must fail.
fn code_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> u16 {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().unwrap_or_else(|| panic!("error without a code: {e}")),
    }
}

/// Polls `f` (bounded by `WAIT`) for server-side state that has no event.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for the `ClientEvent::Closed` at the end of an event stream.
async fn closed_code(ev: &mut tidings::client::Events) -> Option<u16> {
    ev.wait_for(WAIT, |e| match e {
        ClientEvent::Closed { code, .. } => Some(*code),
        _ => None,
    })
    .await
    .expect("connection closes")
}

/// A bare QUIC connection speaking frames by hand.
struct Raw {
    _ep: quinn::Endpoint,
    conn: quinn::Connection,
}

struct RawStream {
    send: quinn::SendStream,
    reader: FrameReader,
}

impl Raw {
    async fn connect(s: &TestServer) -> Raw {
        let pin = parse_fingerprint(s.running().fingerprint()).unwrap();
        let ep = transport::client_endpoint(s.addr(), ServerTrust::Pin(pin)).unwrap();
        let conn = ep
            .connect(s.addr(), "tidings")
            .unwrap()
            .await
            .expect("QUIC handshake");
        Raw { _ep: ep, conn }
    }

    async fn stream(&self) -> RawStream {
        let (send, recv) = self.conn.open_bi().await.unwrap();
        RawStream {
            send,
            reader: FrameReader::new(recv, tidings::codec::DECODE_LIMIT),
        }
    }

    /// The application close code, waiting (bounded) for the close.
    async fn close_code(&self) -> Option<u16> {
        let err = tokio::time::timeout(WAIT, self.conn.closed())
            .await
            .expect("server closes the connection");
        close_code(&err)
    }
}

impl RawStream {
    async fn write(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.unwrap();
    }

    async fn frame(&mut self, f: &ClientFrame) {
        let bytes = frame::encode(f).unwrap();
        self.write(&bytes).await;
    }

    async fn request(&mut self, id: u64, cmd: Command) {
        self.frame(&ClientFrame::Request { id, cmd }).await;
    }

    async fn next(&mut self) -> ServerFrame {
        tokio::time::timeout(WAIT, self.reader.read::<ServerFrame>())
            .await
            .expect("a server frame in time")
            .expect("readable frame")
            .expect("stream open")
    }

    /// The response with `id`, skipping events.
    async fn response(&mut self, id: u64) -> Result<Reply, tidings::protocol::ErrorBody> {
        loop {
            if let ServerFrame::Response { id: got, result } = self.next().await {
                assert_eq!(got, id, "responses come in request order");
                return result;
            }
        }
    }

    /// Logs in as `client` and waits for the answer.
    async fn login(&mut self, s: &TestServer, client: &str) {
        self.request(1, Command::Login(signed_login(s, client))).await;
        let r = self.response(1).await;
        assert!(matches!(r, Ok(Reply::LoggedIn { .. })), "login: {r:?}");
    }
}

fn signed_login(s: &TestServer, client: &str) -> Login {
    let creds = s.running().credentials();
    let timestamp = tidings::util::now_secs();
    let nonce = tidings::auth::random_nonce();
    Login {
        app_id: creds.app_id.clone(),
        client_id: client.into(),
        tag: None,
        device_id: None,
        reconnect: false,
        timestamp,
        signature: creds.sign_login(client, timestamp, &nonce),
        nonce,
        sync: SyncMode::Push,
    }
}

/// Signs a login for `client` with an explicit timestamp and nonce.
fn precomputed(s: &TestServer, client: &str, timestamp: u64, nonce: &str) -> Signer {
    let creds = s.running().credentials();
    Signer::Precomputed {
        timestamp,
        nonce: nonce.into(),
        signature: tidings::auth::sign_login(
            &creds.master_key,
            &creds.app_id,
            client,
            timestamp,
            nonce,
        ),
    }
}

// ---------------------------------------------------------------- login ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_a_valid_signature_succeeds() {
    let s = TestServer::start().await;
    let now = tidings::util::now_secs();
    let mut o = s.options("Tom");
    o.signer = precomputed(&s, "Tom", now, "nonce-ok-1");
    let (tom, mut ev) = s.connect_raw(o).await;
    assert_eq!(tom.client_id(), "Tom");
    assert_eq!(tom.device_id(), "default");
    let skew = tom.server_time().abs_diff(tidings::util::now_ms());
    assert!(skew < 60_000, "server time is now-ish ({skew} ms off)");
    // A push-mode login ends its (empty) sync with SyncDone.
    let done = ev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::SyncDone {
                conversations,
                messages,
                skipped,
            }) => Some((*conversations, *messages, *skipped)),
            _ => None,
        })
        .await;
    assert_eq!(done, Some((0, 0, 0)));

    // Device id defaults to the tag when no device id is given.
    let mut o = s.options("Tom");
    o.tag = Some("Mobile".into());
    let (tagged, _ev) = s.connect_with(o).await;
    assert_eq!(tagged.device_id(), "Mobile");
    // A 64-character client id is the longest allowed.
    let (long, _ev) = s.connect(&"x".repeat(64)).await;
    assert!(long.conversations(10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_is_4102() {
    let s = TestServer::start().await;
    let now = tidings::util::now_secs();
    let mut o = s.options("Tom");
    o.signer = Signer::Precomputed {
        timestamp: now,
        nonce: "n-bad".into(),
        signature: "00".repeat(20),
    };
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4102);
    // Signed for someone else.
    let mut o = s.options("Tom");
    o.signer = precomputed(&s, "Jerry", now, "n-other");
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4102);
    // Signed with another key.
    let mut o = s.options("Tom");
    o.signer = Signer::MasterKey("not-the-master-key-at-all".into());
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4102);
    // Not hex.
    let mut o = s.options("Tom");
    o.signer = Signer::Unsigned;
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4102);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_nonce_is_4102() {
    let s = TestServer::start().await;
    let now = tidings::util::now_secs();
    let mut o = s.options("Tom");
    o.signer = precomputed(&s, "Tom", now, "once-only");
    let (first, _ev) = s.connect_with(o.clone()).await;
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4102);
    // The first session is unaffected by the refused replay.
    assert!(first.conversations(10).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_outside_window_is_4102() {
    let s = TestServer::start_with(|c| c.auth.signature_window_secs = 60).await;
    let now = tidings::util::now_secs();
    for (ts, nonce) in [(now - 120, "old"), (now + 120, "future")] {
        let mut o = s.options("Tom");
        o.signer = precomputed(&s, "Tom", ts, nonce);
        assert_eq!(
            code_of(tidings::client::Client::connect(o).await),
            4102,
            "timestamp {ts} vs now {now}"
        );
    }
    // Inside the window is fine.
    let mut o = s.options("Tom");
    o.signer = precomputed(&s, "Tom", now - 30, "recent");
    let (tom, _ev) = s.connect_with(o).await;
    assert_eq!(tom.client_id(), "Tom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_app_id_is_4100() {
    let s = TestServer::start().await;
    let mut o = s.options("Tom");
    o.app_id = "some-other-app".into();
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_client_ids_are_4103() {
    let s = TestServer::start().await;
    for bad in [String::new(), "x".repeat(65), "a\nb".into(), "tab\there".into()] {
        let o = s.options(&bad);
        assert_eq!(
            code_of(tidings::client::Client::connect(o).await),
            4103,
            "client id {bad:?}"
        );
    }
    // An invalid tag is refused the same way.
    let mut o = s.options("Tom");
    o.tag = Some(String::new());
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4103);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_login_in_time_is_4108() {
    let s = TestServer::start_with(|c| c.limits.login_timeout_ms = 300).await;
    // A connection that never opens its stream.
    let silent = Raw::connect(&s).await;
    // One that opens it and only pings.
    let pinger = Raw::connect(&s).await;
    let started = Instant::now();
    let mut st = pinger.stream().await;
    st.frame(&ClientFrame::Ping).await;
    // The close is announced on the stream first.
    match st.next().await {
        ServerFrame::Event(Event::Closing { code, .. }) => assert_eq!(code, 4108),
        other => panic!("expected Closing, got {other:?}"),
    }
    assert_eq!(pinger.close_code().await, Some(4108));
    assert_eq!(silent.close_code().await, Some(4108));
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "not closed before the login timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_session_is_closed_with_4107() {
    let s = TestServer::start_with(|c| c.limits.idle_timeout_secs = 1).await;
    let mut quiet = s.options("Quiet");
    quiet.ping_interval = Duration::ZERO;
    let mut chatty = s.options("Chatty");
    chatty.ping_interval = Duration::from_millis(200);
    let (_q, mut qev) = s.connect_with(quiet).await;
    let (c, mut cev) = s.connect_with(chatty).await;
    let started = Instant::now();
    assert_eq!(closed_code(&mut qev).await, Some(4107));
    assert!(started.elapsed() >= Duration::from_millis(500));
    // By now the pinging session has been quiet apart from pings for as long: it lives.
    assert!(!c.is_closed());
    assert!(c.conversations(1).await.is_ok());
    assert!(cev.try_recv().is_none(), "nothing closed the pinging client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_before_login_is_4105_and_login_still_works() {
    let s = TestServer::start_with(|c| c.limits.login_timeout_ms = 1500).await;
    let a = Raw::connect(&s).await;
    let b = Raw::connect(&s).await;
    let mut sa = a.stream().await;
    let mut sb = b.stream().await;
    sa.request(7, Command::ListConversations { limit: 10 }).await;
    sb.request(3, Command::Logout).await;
    assert_eq!(sa.response(7).await.unwrap_err().code, 4105);
    assert_eq!(sb.response(3).await.unwrap_err().code, 4105);
    // The connection stays: a login on it now works, and so do requests.
    sa.login(&s, "Tom").await;
    sa.request(8, Command::ListConversations { limit: 10 }).await;
    assert!(matches!(sa.response(8).await, Ok(Reply::Conversations(_))));
    // The one that never logs in is closed at the login timeout.
    assert_eq!(b.close_code().await, Some(4108));
    assert!(a.conn.close_reason().is_none(), "the logged-in one stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_login_is_4101() {
    let s = TestServer::start().await;
    let (tom, _ev) = s.connect("Tom").await;
    let again = tom.request(Command::Login(signed_login(&s, "Tom"))).await;
    assert_eq!(code_of(again), 4101);
    // Answered, not closed.
    assert!(tom.conversations(10).await.is_ok());
}

// --------------------------------------------------------- multi-device ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_of_a_client_gets_messages() {
    let s = TestServer::start().await;
    let mut o = s.options("Tom");
    o.device_id = Some("phone".into());
    let (phone, mut pev) = s.connect_with(o).await;
    let mut o = s.options("Tom");
    o.device_id = Some("laptop".into());
    let (_laptop, mut lev) = s.connect_with(o).await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let conv = jerry.create_unique(vec!["Tom".into()]).await.unwrap().id;

    let sent = jerry.send_text(conv, "to both").await.unwrap();
    for ev in [&mut pev, &mut lev] {
        let m = ev.next_message(WAIT).await.expect("each device gets it");
        assert_eq!(m.msg_id, sent.msg_id);
    }
    // The sender's other device sees its message; the sending device does not.
    let mine = phone.send_text(conv, "from phone").await.unwrap();
    assert_eq!(lev.next_message(WAIT).await.unwrap().msg_id, mine.msg_id);
    assert_eq!(jev.next_message(WAIT).await.unwrap().msg_id, mine.msg_id);
    let next = jerry.send_text(conv, "after").await.unwrap();
    assert_eq!(pev.next_message(WAIT).await.unwrap().msg_id, next.msg_id);
    assert_eq!(lev.next_message(WAIT).await.unwrap().msg_id, next.msg_id);
    assert_eq!((sent.seq, mine.seq, next.seq), (1, 2, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_tag_kicks_the_earlier_device_with_4111() {
    let s = TestServer::start().await;
    let (jerry, _jev) = s.connect("Jerry").await;
    let mut o = s.options("Tom");
    o.tag = Some("Mobile".into());
    let (old, mut oev) = s.connect_with(o.clone()).await;
    let conv = old.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    // An untagged device is unaffected by tag conflicts.
    let (_web, mut wev) = s.connect("Tom").await;

    let (_new, mut nev) = s.connect_with(o).await;
    let conflict = oev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::Conflict { code, .. }) => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(conflict, Some(4111));
    // Conflict, then the close with the same code, and nothing after.
    match oev.recv_timeout(WAIT).await {
        Some(ClientEvent::Closed { code, .. }) => assert_eq!(code, Some(4111)),
        other => panic!("expected Closed after Conflict, got {other:?}"),
    }
    let sent = jerry.send_text(conv, "who gets this").await.unwrap();
    assert_eq!(nev.next_message(WAIT).await.unwrap().msg_id, sent.msg_id);
    assert_eq!(wev.next_message(WAIT).await.unwrap().msg_id, sent.msg_id);
    assert!(old.send_text(conv, "too late").await.is_err());
}
