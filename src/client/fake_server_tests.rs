//! The client against a scripted fake server, so its wire behaviour is
//! checked without the real server.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::protocol::{Content, ErrorCode, ServerFrame};
use crate::transport::tls::{ServerIdentity, parse_fingerprint};

const WAIT: Duration = Duration::from_secs(5);

struct FakeServer {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    pin: [u8; 32],
    _dir: tempfile::TempDir,
}

struct FakeConn {
    conn: quinn::Connection,
    send: quinn::SendStream,
    reader: FrameReader,
}

impl FakeServer {
    fn start() -> FakeServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = ServerIdentity::load_or_generate(dir.path(), None).expect("identity");
        let pin = parse_fingerprint(&id.fingerprint()).expect("pin");
        let endpoint = transport::server_endpoint(
            ([127, 0, 0, 1], 0).into(),
            id,
            transport::DEFAULT_KEEP_ALIVE,
        )
        .expect("endpoint");
        let addr = endpoint.local_addr().expect("addr");
        FakeServer {
            endpoint,
            addr,
            pin,
            _dir: dir,
        }
    }

    fn options(&self, client_id: &str) -> ClientOptions {
        ClientOptions::new(
            self.addr,
            ServerTrust::Pin(self.pin),
            "app",
            Signer::MasterKey("key".into()),
            client_id,
        )
    }

    /// Accepts one connection and reads its login.
    async fn accept(&self) -> (FakeConn, u64, Login) {
        let conn = self
            .endpoint
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("handshake");
        let (send, recv) = conn.accept_bi().await.expect("stream");
        let mut c = FakeConn {
            conn,
            send,
            reader: FrameReader::new(recv, 1 << 20),
        };
        match c.read().await {
            ClientFrame::Request {
                id,
                cmd: Command::Login(login),
            } => (c, id, login),
            other => panic!("expected a login, got {other:?}"),
        }
    }
}

impl FakeConn {
    async fn read(&mut self) -> ClientFrame {
        tokio::time::timeout(WAIT, self.reader.read::<ClientFrame>())
            .await
            .expect("frame in time")
            .expect("frame")
            .expect("not end of stream")
    }

    /// The next request, skipping pings and acks.
    async fn read_request(&mut self) -> (u64, Command) {
        loop {
            if let ClientFrame::Request { id, cmd } = self.read().await {
                return (id, cmd);
            }
        }
    }

    async fn write(&mut self, f: &ServerFrame) {
        let bytes = crate::wire::frame::encode(f).expect("encode");
        self.send.write_all(&bytes).await.expect("write");
    }

    async fn reply(&mut self, id: u64, result: Result<Reply, ErrorBody>) {
        self.write(&ServerFrame::Response { id, result }).await;
    }

    async fn login_ok(&mut self, id: u64) {
        self.reply(
            id,
            Ok(Reply::LoggedIn {
                server_time: 42,
                device_id: "default".into(),
            }),
        )
        .await;
    }
}

fn message(conv: ConvId, seq: u64, transient: bool) -> Message {
    Message {
        msg_id: format!("m{seq}"),
        transient,
        ..Message::new(
            conv,
            seq,
            "Jerry",
            1000 + seq,
            Content::Text(format!("hello {seq}")),
        )
    }
}

/// `connect` needs the login answered before it returns, so it runs beside the fake server.
async fn connected(server: &FakeServer, opts: ClientOptions) -> (Client, Events, FakeConn) {
    let accept = server.accept();
    let connect = tokio::spawn(Client::connect(opts));
    let (mut conn, id, login) = accept.await;
    assert_eq!(
        login.signature,
        crate::auth::sign_login(
            "key",
            "app",
            &login.client_id,
            login.timestamp,
            &login.nonce
        )
    );
    conn.login_ok(id).await;
    let (client, events) = connect.await.expect("join").expect("login");
    (client, events, conn)
}

#[tokio::test]
async fn login_requests_and_server_errors() {
    let server = FakeServer::start();
    let (client, _events, mut conn) = connected(&server, server.options("Tom")).await;
    assert_eq!(client.client_id(), "Tom");
    assert_eq!(client.device_id(), "default");
    assert_eq!(client.server_time(), 42);

    let conv = ConvId([7; 12]);
    let c2 = client.clone();
    let send = tokio::spawn(async move { c2.send_text(conv, "hi").await });
    let (id, cmd) = conn.read_request().await;
    assert_eq!(cmd, Command::Send(SendMessage::text(conv, "hi")));
    conn.reply(
        id,
        Ok(Reply::Sent {
            msg_id: "m1".into(),
            seq: 1,
            timestamp: 5,
            duplicate: false,
        }),
    )
    .await;
    let sent = send.await.expect("join").expect("sent");
    assert_eq!(sent.seq, 1);
    assert_eq!(sent.msg_id, "m1");

    let c2 = client.clone();
    let join = tokio::spawn(async move { c2.join(conv).await });
    let (id, _) = conn.read_request().await;
    conn.reply(id, Err(ErrorBody::new(ErrorCode::ConvNotFound, "no such")))
        .await;
    let err = join.await.expect("join").expect_err("server error");
    assert_eq!(err.code(), Some(4303));
    assert!(matches!(err, ClientError::Server(_)));
}

#[tokio::test]
async fn rejected_login_is_a_server_error() {
    let server = FakeServer::start();
    let connect = tokio::spawn(Client::connect(server.options("Tom")));
    let (mut conn, id, _) = server.accept().await;
    conn.reply(id, Err(ErrorBody::new(ErrorCode::SignatureFailed, "bad")))
        .await;
    let err = connect.await.expect("join").expect_err("rejected");
    assert_eq!(err.code(), Some(4102));
}

#[tokio::test]
async fn close_before_login_answer_carries_the_code() {
    let server = FakeServer::start();
    let connect = tokio::spawn(Client::connect(server.options("Tom")));
    let (conn, _, _) = server.accept().await;
    conn.conn.close(4108u32.into(), b"LOGIN_TIMEOUT");
    let err = connect.await.expect("join").expect_err("closed");
    assert!(
        matches!(
            err,
            ClientError::Closed {
                code: Some(4108),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn events_in_order_datagrams_and_batched_acks() {
    let server = FakeServer::start();
    let (client, mut events, mut conn) = connected(&server, server.options("Tom")).await;
    let a = ConvId([1; 12]);
    let b = ConvId([2; 12]);
    for seq in 1..=50 {
        conn.write(&ServerFrame::Event(Event::Message {
            msg: message(a, seq, false),
            redelivered: false,
            chat_room: false,
        }))
        .await;
    }
    for seq in 1..=3 {
        conn.write(&ServerFrame::Event(Event::Message {
            msg: message(b, seq, false),
            redelivered: false,
            chat_room: false,
        }))
        .await;
    }
    for seq in 1..=50 {
        let m = events.next_message(WAIT).await.expect("message");
        assert_eq!((m.conv, m.seq), (a, seq));
    }
    for seq in 1..=3 {
        let m = events.next_message(WAIT).await.expect("message");
        assert_eq!((m.conv, m.seq), (b, seq));
    }

    // Acks are cumulative and batched: a few frames at most, ending at the maxima.
    let mut latest = std::collections::HashMap::new();
    let mut ack_frames = 0;
    while latest.get(&a) != Some(&50) || latest.get(&b) != Some(&3) {
        if let ClientFrame::Ack { acks } = conn.read().await {
            ack_frames += 1;
            for (conv, seq) in acks {
                latest.insert(conv, seq);
            }
        }
    }
    assert!(ack_frames <= 5, "{ack_frames} ack frames for 53 messages");

    // A transient message as a datagram: one codec-encoded frame, no length prefix.
    let dg = codec::encode(&ServerFrame::Event(Event::Message {
        msg: message(a, 0, true),
        redelivered: false,
        chat_room: false,
    }))
    .expect("encode");
    conn.conn.send_datagram(dg.into()).expect("datagram");
    let m = events.next_message(WAIT).await.expect("datagram message");
    assert!(m.transient);

    // Manual acks share the batch.
    client.ack(b, 9);
    loop {
        if let ClientFrame::Ack { acks } = conn.read().await {
            assert_eq!(acks, vec![(b, 9)], "transient messages are never acked");
            break;
        }
    }
}

#[tokio::test]
async fn no_auto_ack_means_no_acks() {
    let server = FakeServer::start();
    let mut opts = server.options("Tom");
    opts.auto_ack = false;
    opts.ping_interval = Duration::from_millis(100);
    let (_client, mut events, mut conn) = connected(&server, opts).await;
    let a = ConvId([1; 12]);
    conn.write(&ServerFrame::Event(Event::Message {
        msg: message(a, 1, false),
        redelivered: false,
        chat_room: false,
    }))
    .await;
    events.next_message(WAIT).await.expect("message");
    // Pings keep coming; no ack shows up between them.
    for _ in 0..3 {
        assert_eq!(conn.read().await, ClientFrame::Ping);
    }
}

#[tokio::test]
async fn server_close_fails_pending_and_ends_events() {
    let server = FakeServer::start();
    let (client, mut events, mut conn) = connected(&server, server.options("Tom")).await;
    let c2 = client.clone();
    let pending = tokio::spawn(async move { c2.get_conversation(ConvId([3; 12])).await });
    let _ = conn.read_request().await;
    conn.write(&ServerFrame::Event(Event::Conflict {
        code: 4111,
        reason: "SESSION_CONFLICT".into(),
    }))
    .await;
    conn.write(&ServerFrame::Event(Event::Closing {
        code: 4111,
        reason: "SESSION_CONFLICT".into(),
    }))
    .await;
    // Let the events reach the client before the close may discard them.
    let conflict = events
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::Conflict { code, .. }) => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(conflict, Some(4111));
    conn.conn.close(4111u32.into(), b"SESSION_CONFLICT");

    let closed = events
        .wait_for(WAIT, |e| match e {
            ClientEvent::Closed { code, .. } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(closed, Some(Some(4111)));
    assert!(events.recv_timeout(WAIT).await.is_none(), "Closed is last");
    let err = pending.await.expect("join").expect_err("closed");
    assert_eq!(err.code(), Some(4111));
    assert!(client.is_closed());
    let err = client.mute(ConvId([3; 12])).await.expect_err("closed");
    assert_eq!(err.code(), Some(4111));
}

#[tokio::test]
async fn dropping_every_handle_closes_the_connection() {
    let server = FakeServer::start();
    let (client, events, conn) = connected(&server, server.options("Tom")).await;
    let c2 = client.clone();
    drop(client);
    drop(events);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), conn.conn.closed())
            .await
            .is_err(),
        "a clone is still alive"
    );
    drop(c2);
    let err = tokio::time::timeout(WAIT, conn.conn.closed())
        .await
        .expect("closed");
    assert_eq!(close_code(&err), Some(0));
}

#[tokio::test]
async fn events_alone_keep_the_session_and_acks_going() {
    let server = FakeServer::start();
    let (client, mut events, mut conn) = connected(&server, server.options("Tom")).await;
    drop(client);
    let a = ConvId([1; 12]);
    conn.write(&ServerFrame::Event(Event::Message {
        msg: message(a, 4, false),
        redelivered: true,
        chat_room: false,
    }))
    .await;
    assert_eq!(events.next_message(WAIT).await.map(|m| m.seq), Some(4));
    loop {
        if let ClientFrame::Ack { acks } = conn.read().await {
            assert_eq!(acks, vec![(a, 4)]);
            break;
        }
    }
}

#[tokio::test]
async fn abort_closes_with_code_zero_and_logout_sends_logout() {
    let server = FakeServer::start();
    let (client, mut events, conn) = connected(&server, server.options("Tom")).await;
    client.abort();
    let err = tokio::time::timeout(WAIT, conn.conn.closed())
        .await
        .expect("closed");
    assert_eq!(close_code(&err), Some(0));
    assert!(matches!(
        events.recv_timeout(WAIT).await,
        Some(ClientEvent::Closed { code: None, .. })
    ));

    let (client, _events, mut conn) = connected(&server, server.options("Jerry")).await;
    let logout = tokio::spawn(async move { client.logout().await });
    let (id, cmd) = conn.read_request().await;
    assert_eq!(cmd, Command::Logout);
    conn.reply(id, Ok(Reply::Ok)).await;
    conn.conn.close(0u32.into(), b"logout");
    logout.await.expect("join").expect("logout");
}

#[tokio::test]
async fn request_timeout_is_reported() {
    let server = FakeServer::start();
    let mut opts = server.options("Tom");
    opts.request_timeout = Duration::from_millis(300);
    let (client, _events, mut conn) = connected(&server, opts).await;
    let c2 = client.clone();
    let req = tokio::spawn(async move { c2.conversations(10).await });
    let (id, _) = conn.read_request().await;
    let err = req.await.expect("join").expect_err("timeout");
    assert!(matches!(err, ClientError::Timeout));
    // A late answer for a forgotten request is ignored, and the session goes on.
    conn.reply(id, Ok(Reply::Conversations(Vec::new()))).await;
    let c2 = client.clone();
    let req = tokio::spawn(async move { c2.conversations(10).await });
    let (id, _) = conn.read_request().await;
    conn.reply(id, Ok(Reply::Conversations(Vec::new()))).await;
    assert_eq!(req.await.expect("join").expect("list"), Vec::new());
}
