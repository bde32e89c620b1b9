//! Limits and protection (issue 13, items 5, 8, 9 and 10): quotas per
//! client and connection, per-address login limits, QUIC Retry and the
//! connection cap, the admin listener's caps and timeouts, a cheap
//! `/healthz`, login nonces across a restart, and a shutdown with dead
//! peers inside its grace. Real QUIC clients, real TCP, real sled dirs.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::admin::{Admin, http_client};
use common::{TestServer, WAIT, code_of, group};
use tidings::client::{Client, ClientEvent, ClientOptions, Signer};
use tidings::guard::Limit;
use tidings::store::health::Step;
use tidings::transport::{self, ServerTrust};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client endpoint whose packets come from `ip` (another loopback
/// address), so per-address limits can tell an attacker from a bystander.
fn endpoint_from(ip: [u8; 4], server: &TestServer) -> quinn::Endpoint {
    let pin = transport::tls::parse_fingerprint(server.running().fingerprint()).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(
        transport::tls::client_config(ServerTrust::Pin(pin)).unwrap(),
    )
    .unwrap();
    let socket = std::net::UdpSocket::bind(SocketAddr::from((ip, 0))).unwrap();
    let mut ep = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        quinn::default_runtime().unwrap(),
    )
    .unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    ep
}

fn via(mut opts: ClientOptions, ep: &quinn::Endpoint) -> ClientOptions {
    opts.endpoint = Some(ep.clone());
    opts
}

/// A login signature made once, as an app server would hand it out.
fn precomputed(s: &TestServer, client: &str, nonce: &str) -> ClientOptions {
    let creds = s.running().credentials().clone();
    let ts = tidings::util::now_secs();
    let mut o = s.options(client);
    o.signer = Signer::Precomputed {
        timestamp: ts,
        nonce: nonce.into(),
        signature: creds.sign_login(client, ts, nonce),
    };
    o
}

fn limited(s: &TestServer, l: Limit) -> u64 {
    s.running().hub().guard.hits(l)
}

/// Item 8: each quota answers its code; a bystander chatting alongside is
/// never refused and gets every message the abuser had accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_answer_their_codes_and_spare_a_bystander() {
    let s = TestServer::start_with(|c| {
        c.quotas.messages_per_sec = 1;
        c.quotas.messages_burst = 5;
        c.quotas.conversations_per_hour = 3;
        c.quotas.requests_per_sec = 5;
        c.quotas.pings_per_sec = 5;
    })
    .await;
    let (tom, _tom_ev) = s.connect("Tom").await;
    let (jerry, mut jerry_ev) = s.connect("Jerry").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;

    // Messages: a burst of 5, then 4116 MESSAGE_SENT_QUOTA_EXCEEDED.
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..30 {
        match tom.send_text(conv, &format!("flood {i}")).await {
            Ok(sent) => accepted.push(sent.seq),
            Err(e) => {
                assert_eq!(e.code(), Some(4116), "{e}");
                refused += 1;
            }
        }
        // The bystander's own sends, within its quota, go through all along.
        if i % 10 == 0 {
            let r = jerry.send_text(conv, &format!("calm {i}")).await;
            r.unwrap_or_else(|e| panic!("bystander refused: {e}"));
        }
    }
    assert!(accepted.len() >= 5, "the burst is allowed: {accepted:?}");
    assert!(refused >= 20, "sends past the burst are refused: {refused}");
    let mut got = 0;
    while got < accepted.len() {
        let m = jerry_ev
            .next_message(WAIT)
            .await
            .expect("the bystander gets every message Tom had accepted");
        if m.from == "Tom" {
            assert!(
                accepted.contains(&m.seq),
                "a refused send was stored: {m:?}"
            );
            got += 1;
        }
    }

    // Conversations per hour: 3 (one is made already), then 4117.
    tom.create_conversation(group(&["Jerry"])).await.unwrap();
    tom.create_conversation(group(&["Jerry"])).await.unwrap();
    assert_eq!(
        code_of(tom.create_conversation(group(&["Jerry"])).await),
        4117
    );
    jerry.create_conversation(group(&["Tom"])).await.unwrap();

    // Requests per second on one connection: 5, then 4117 answers.
    let answers = futures_join(&tom, 40).await;
    assert!(answers.contains(&Some(4117)), "{answers:?}");
    assert!(answers.contains(&None), "the first requests are served");
    jerry.conversations(10).await.expect("bystander's request");

    // Pings: a client pinging every millisecond is closed with 4117.
    let mut o = s.options("Pinger");
    o.ping_interval = Duration::from_millis(1);
    let (_pinger, mut pinger_ev) = s.connect_with(o).await;
    let closed = pinger_ev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Closed { code, .. } => Some(*code),
            _ => None,
        })
        .await
        .expect("the ping flood is closed");
    assert_eq!(closed, Some(4117));
    jerry.send_text(conv, "still here").await.unwrap();

    for l in [
        Limit::Messages,
        Limit::ConversationsPerHour,
        Limit::Requests,
        Limit::Pings,
    ] {
        assert!(limited(&s, l) > 0, "{l:?} counted");
    }
    let metrics = Admin::of(&s).get("/metrics").await.body;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("tidings_limited_total{limit=\"messages\"}"),
        "{text}"
    );
}

/// Fires `n` requests at once on one connection; the error code of each.
async fn futures_join(c: &Client, n: usize) -> Vec<Option<u16>> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let c = c.clone();
        set.spawn(async move {
            c.conversations(10)
                .await
                .err()
                .map(|e| e.code().unwrap_or(0))
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

/// Item 8: the cap on conversations per client, on create and on join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_per_client_are_capped() {
    let s = TestServer::start_with(|c| {
        c.quotas.max_conversations_per_client = 2;
        c.quotas.conversations_per_hour = 0;
    })
    .await;
    let (ann, _a) = s.connect("Ann").await;
    let (bob, _b) = s.connect("Bob").await;
    ann.create_conversation(group(&["Bob"])).await.unwrap();
    ann.create_conversation(group(&["Carl"])).await.unwrap();
    assert_eq!(
        code_of(ann.create_conversation(group(&["Dora"])).await),
        4117
    );
    let lone = bob.create_conversation(group(&[])).await.unwrap().id;
    assert_eq!(code_of(ann.join(lone).await), 4117);
    // Carl, in one, may join.
    let (carl, _c) = s.connect("Carl").await;
    carl.join(lone).await.unwrap();
    assert_eq!(limited(&s, Limit::Conversations), 2);
}

/// Item 9: failed signatures and logins are limited per source address;
/// a bystander on another address logs in all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_limited_per_address() {
    let s = TestServer::start_with(|c| {
        c.limits.failed_logins_per_ip_per_min = 3;
        c.limits.logins_per_ip_per_min = 6;
    })
    .await;
    let attacker = endpoint_from([127, 0, 0, 2], &s);
    // Three failures a minute are the budget; the fourth finds it used up.
    for i in 0..4 {
        let mut o = via(s.options("Mallory"), &attacker);
        o.signer = Signer::Precomputed {
            timestamp: tidings::util::now_secs(),
            nonce: format!("bad-{i}"),
            signature: "00".repeat(20),
        };
        assert_eq!(code_of(Client::connect(o).await.map(|_| ())), 4102);
    }
    // The budget is used up: even a good signature from there is refused,
    // before it is checked.
    let o = via(s.options("Mallory"), &attacker);
    assert_eq!(code_of(Client::connect(o).await.map(|_| ())), 4117);
    // Another address is not hurt.
    let (_by, _e) = s.connect("Bystander").await;

    // A login storm from one address: 6 a minute, then 4117.
    let storm = endpoint_from([127, 0, 0, 3], &s);
    let mut codes = Vec::new();
    for i in 0..8 {
        let o = via(s.options(&format!("storm{i}")), &storm);
        codes.push(Client::connect(o).await.err().and_then(|e| e.code()));
    }
    assert_eq!(&codes[..6], &[None; 6], "{codes:?}");
    assert_eq!(&codes[6..], &[Some(4117); 2], "{codes:?}");
    let (_by2, _e2) = s.connect("Bystander2").await;
    assert_eq!(limited(&s, Limit::FailedLogins), 1);
    assert_eq!(limited(&s, Limit::Logins), 2);
}

/// Item 9: over the handshake rate, handshakes go through a QUIC Retry
/// (transparent to a real client); over the connection cap, refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_retry_over_the_handshake_rate_and_a_connection_cap() {
    let s = TestServer::start_with(|c| {
        c.limits.retry_above_handshakes_per_sec = 1;
        c.limits.max_connections = 4;
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(s.connect(&format!("c{i}")).await);
    }
    assert!(
        limited(&s, Limit::QuicRetry) >= 2,
        "handshakes past the first of the second were retried"
    );
    let mut o = s.options("extra");
    o.request_timeout = Duration::from_secs(5);
    let refused = Client::connect(o).await.map(|_| ());
    assert!(refused.is_err(), "the fifth connection is refused");
    assert!(limited(&s, Limit::Connections) >= 1);
    // Those in are not hurt, and a place freed is taken again.
    let (c0, _) = &clients[0];
    let conv = c0.create_conversation(group(&["c1"])).await.unwrap().id;
    c0.send_text(conv, "hello").await.unwrap();
    let (c3, _) = clients.pop().unwrap();
    c3.logout().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut o = s.options("again");
        o.request_timeout = Duration::from_secs(2);
        if Client::connect(o).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no slot freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Item 5: 2,000 half-open connections to the admin port: past the cap
/// they get a JSON 503 at once, the rest are closed by the header timeout,
/// and then the API answers again; QUIC clients are not hurt meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_admin_connections_are_capped_and_timed_out() {
    const N: usize = 2000;
    let s = TestServer::start_with(|c| {
        c.limits.admin_max_connections = 64;
        c.limits.admin_header_timeout_secs = 1;
    })
    .await;
    let admin = s.running().admin_addr().unwrap();
    let (tom, _t) = s.connect("Tom").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..N {
        set.spawn(async move {
            let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
            // A head that never ends.
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            let mut got = Vec::new();
            // Bounded: the server must end every one of them.
            let ended = tokio::time::timeout(WAIT, tcp.read_to_end(&mut got)).await;
            (ended.is_ok(), String::from_utf8_lossy(&got).into_owned())
        });
    }
    // A bystander on QUIC sends while the flood is on.
    tom.send_text(conv, "during the flood").await.unwrap();
    let (mut ended, mut refused) = (0, 0);
    while let Some(r) = set.join_next().await {
        let (done, text) = r.unwrap();
        ended += usize::from(done);
        if text.starts_with("HTTP/1.1 503") {
            let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["code"], 503, "{text}");
            refused += 1;
        }
    }
    assert_eq!(
        ended, N,
        "every half-open connection was ended by the server"
    );
    assert!(refused > 0, "connections past the cap were answered 503");
    // Each was refused at the cap or timed out (none sent a whole head).
    let (capped, timed_out) = (
        limited(&s, Limit::AdminConnections),
        limited(&s, Limit::AdminHeaderTimeouts),
    );
    assert!(capped + timed_out >= N as u64, "{capped} + {timed_out}");
    assert!(timed_out >= 1);
    Admin::of(&s).get("/1.2/rtm/stats").await.expect(200);
    tom.send_text(conv, "after the flood").await.unwrap();
}

/// Item 5: JSON on 431 and 429, and `/healthz` does not flush per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_answers_json_on_431_and_429_and_healthz_is_cheap() {
    let s = TestServer::start_with(|c| {
        c.limits.admin_unauthenticated_per_sec = 5;
    })
    .await;
    let a = Admin::of(&s);
    // 150 headers, and one header of 20 KiB: both answered 431 in JSON.
    let mut req = a.request(reqwest::Method::GET, "/1.2/rtm/stats");
    for i in 0..150 {
        req = req.header(format!("x-pad-{i}"), "x");
    }
    let (code, _) = a.send(req).await.error(431);
    assert_eq!(code, 431);
    let req = a
        .request(reqwest::Method::GET, "/1.2/rtm/stats")
        .header("x-big", "y".repeat(20 * 1024));
    assert_eq!(a.send(req).await.error(431).0, 431);

    // Without credentials: 5 a second, then 429 in JSON with Retry-After;
    // the master key is never limited.
    let http = http_client();
    let url = format!("{}/healthz", a.base);
    for _ in 0..20 {
        let r = http.get(&url).send().await.unwrap();
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["code"], 429);
        }
    }
    assert!(limited(&s, Limit::AdminUnauthenticated) > 0);
    for _ in 0..20 {
        a.get("/1.2/rtm/stats").await.expect(200);
    }

    // /healthz: the 20th flush from now would fail the store; 300 probes
    // must not get there (they used to cost a durable flush each).
    s.running().hub().store.faults().fail_nth(Step::Flush, 20);
    for _ in 0..300 {
        let v = a.get("/healthz").await.expect(200);
        assert_eq!(v["status"], "ok");
    }
    assert!(s.running().hub().store.health().is_ok());
}

/// Item 10: a login captured before a restart does not replay after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_nonce_is_refused_after_a_restart() {
    let mut s = TestServer::start().await;
    let creds = s.running().credentials().clone();
    let ts = tidings::util::now_secs();
    let sig = creds.sign_login("Tom", ts, "captured");
    let signed = |s: &TestServer| {
        let mut o = s.options("Tom");
        o.signer = Signer::Precomputed {
            timestamp: ts,
            nonce: "captured".into(),
            signature: sig.clone(),
        };
        o
    };
    let (c, _e) = s.connect_with(signed(&s)).await;
    c.logout().await.unwrap();
    s.restart().await;
    assert_eq!(code_of(Client::connect(signed(&s)).await.map(|_| ())), 4102);
    // A fresh signature still works.
    let (_c, _e) = s.connect_with(precomputed(&s, "Tom", "fresh")).await;
}

/// A UDP relay between clients and the server; `up` and `down` cut each
/// direction, leaving the server with peers that vanished without a word.
async fn relay(server: SocketAddr, up: Arc<AtomicBool>, down: Arc<AtomicBool>) -> SocketAddr {
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    let client: Arc<parking_lot::Mutex<Option<SocketAddr>>> = Default::default();
    let (f, b, c) = (front.clone(), back.clone(), client.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = f.recv_from(&mut buf).await {
            *c.lock() = Some(from);
            if !up.load(Ordering::Relaxed) {
                let _ = b.send(&buf[..n]).await;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = back.recv(&mut buf).await {
            let to = *client.lock();
            if let Some(to) = to
                && !down.load(Ordering::Relaxed)
            {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    addr
}

/// `tidings_connections` from `/metrics`: QUIC connections the server
/// holds, handshakes under way included.
async fn open_connections(a: &Admin) -> u64 {
    let text = a.get("/metrics").await.body;
    let text = text.as_str().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("tidings_connections "))
        .and_then(|v| v.trim().parse().ok())
        .expect("tidings_connections in /metrics")
}

/// Item 10: a shutdown with many connections whose peers are gone (logged
/// in, and stuck in their handshake) ends within its grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_dead_peers_ends_within_its_grace() {
    const LOGGED_IN: usize = 200;
    const HANDSHAKING: usize = 200;
    let mut s = TestServer::start_with(|c| {
        c.server.shutdown_grace_secs = 2;
        // No Retry: a handshake's first packet alone makes server state.
        c.limits.retry_above_handshakes_per_sec = 100_000;
    })
    .await;
    let pin = transport::tls::parse_fingerprint(s.running().fingerprint()).unwrap();
    // Logged-in clients, then their network goes dark both ways.
    let (up, down) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let front = relay(s.addr(), up.clone(), down.clone()).await;
    let ep = transport::client_endpoint(front, ServerTrust::Pin(pin)).unwrap();
    let mut clients = Vec::new();
    for i in 0..LOGGED_IN {
        let mut o = s.options(&format!("dead{i}"));
        o.server = front;
        o.endpoint = Some(ep.clone());
        clients.push(Client::connect(o).await.expect("login through the relay"));
    }
    up.store(true, Ordering::Relaxed);
    down.store(true, Ordering::Relaxed);
    // Handshakes whose answers never come back.
    let (open, shut) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(true)),
    );
    let front = relay(s.addr(), open, shut).await;
    let ep2 = transport::client_endpoint(front, ServerTrust::Pin(pin)).unwrap();
    let mut pending = Vec::new();
    for _ in 0..HANDSHAKING {
        let connecting = ep2.connect(front, "tidings").unwrap();
        pending.push(tokio::spawn(async move {
            let _ = tokio::time::timeout(WAIT * 3, connecting).await;
        }));
    }
    let a = Admin::of(&s);
    let deadline = tokio::time::Instant::now() + WAIT;
    while open_connections(&a).await < (LOGGED_IN + HANDSHAKING) as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "handshakes reach the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grace = Duration::from_secs(s.config.server.shutdown_grace_secs);
    let server = s.server.take().unwrap();
    tokio::time::timeout(grace, server.shutdown())
        .await
        .expect("shutdown ended within its grace")
        .expect("clean shutdown");
    drop(clients);
    pending.iter().for_each(|p| p.abort());
}
