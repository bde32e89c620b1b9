//! The LeanCloud door with exact frames: the router, subprotocols, a QUIC
//! client and a LeanCloud one in one conversation, several clients on one
//! socket, tag conflicts, and bad input. The real SDKs' suite is
//! `tests/leancloud_sdk.rs`.

mod common;
#[path = "common/lc.rs"]
#[allow(dead_code)]
mod lc;

use common::*;
use lc::{Lc, cmd, error_code, kind};
use tidings::gateway::proto::{
    AckCommand, CommandType, ConvCommand, DirectCommand, LogsCommand, OpType,
};
use tidings::protocol::{ConvId, SendMessage};
use tokio_tungstenite::tungstenite::Message;

fn direct(cid: &str, text: &str) -> tidings::gateway::proto::GenericCommand {
    let mut c = cmd(CommandType::Direct, None);
    c.direct_message = Some(DirectCommand {
        cid: Some(cid.into()),
        msg: Some(text.into()),
        ..Default::default()
    });
    c
}

/// What the door's router answers.
async fn route(s: &TestServer) -> serde_json::Value {
    let addr = s.running().gateway_addr().expect("gateway on");
    common::admin::http_client()
        .get(format!("http://{addr}/v1/route?appId=x&secure=true"))
        .send()
        .await
        .expect("route")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn the_router_points_at_the_door() {
    let s = TestServer::start().await;
    let body = route(&s).await;
    let url = format!("ws://{}/", s.running().gateway_addr().expect("gateway on"));
    assert_eq!(body["server"], url.as_str());
    assert_eq!(body["secondary"], url.as_str());
    assert_eq!(body["ttl"], 3600);
    let proxied =
        TestServer::start_with(|c| c.gateway.public_url = Some("wss://im.example.com/".into()))
            .await;
    assert_eq!(route(&proxied).await["server"], "wss://im.example.com/");
    let off = TestServer::start_with(|c| c.gateway.enabled = false).await;
    assert_eq!(off.running().gateway_addr(), None);
}

#[tokio::test]
async fn a_leancloud_client_and_a_quic_client_chat() {
    let s = TestServer::start().await;
    let mut alice = Lc::to(&s).await;
    let opened = alice.open(&s, "alice", Some("Mobile"), false).await;
    assert_eq!(
        kind(&opened),
        (Some(CommandType::Session), Some(OpType::Opened))
    );
    let sm = opened.session_message.expect("session");
    assert!(sm.st.is_some_and(|t| !t.is_empty()) && sm.st_ttl.is_some_and(|t| t > 0));
    let (bob, mut bob_ev) = s.connect("bob").await;

    let mut start = cmd(CommandType::Conv, Some(OpType::Start));
    start.conv_message = Some(ConvCommand {
        m: vec!["alice".into(), "bob".into()],
        unique: Some(true),
        attr: Some(tidings::gateway::proto::JsonObjectMessage {
            data: r#"{"name":"a&b","topic":"cheese"}"#.into(),
        }),
        ..Default::default()
    });
    let started = alice.request(start).await;
    assert_eq!(
        kind(&started),
        (Some(CommandType::Conv), Some(OpType::Started)),
        "{started:?}"
    );
    let cid = started.conv_message.and_then(|c| c.cid).expect("cid");
    let conv: ConvId = cid.parse().expect("24 hex");

    let acked = alice.request(direct(&cid, "hello from the web")).await;
    let ack = acked.ack_message.expect("ack");
    assert_eq!(ack.code, None, "not refused");
    let uid = ack.uid.expect("message id");
    let got = bob_ev.next_message(WAIT).await.expect("alice's message");
    assert_eq!(
        (text(&got), got.from.as_str(), got.msg_id.as_str()),
        ("hello from the web", "alice", uid.as_str())
    );
    let info = bob.get_conversation(conv).await.expect("bob sees it");
    assert_eq!(info.name.as_deref(), Some("a&b"));
    assert_eq!(info.attr.as_deref(), Some(r#"{"topic":"cheese"}"#));

    bob.send(SendMessage::text(conv, "hi from QUIC"))
        .await
        .expect("bob sends");
    let push = alice
        .wait(|c| kind(c) == (Some(CommandType::Direct), None))
        .await;
    assert_eq!(
        (push.service, push.peer_id.as_deref(), push.i),
        (Some(2), Some("alice"), None)
    );
    let d = push.direct_message.expect("direct");
    assert_eq!(
        (
            d.msg.as_deref(),
            d.from_peer_id.as_deref(),
            d.cid.as_deref()
        ),
        (Some("hi from QUIC"), Some("bob"), Some(cid.as_str()))
    );
    // Acked by id, as Swift does: no redelivery follows.
    let mut ack = cmd(CommandType::Ack, None);
    ack.ack_message = Some(AckCommand {
        cid: Some(cid.clone()),
        mid: d.id.clone(),
        ..Default::default()
    });
    alice.send(&ack).await;

    let mut logs = cmd(CommandType::Logs, None);
    logs.logs_message = Some(LogsCommand {
        cid: Some(cid.clone()),
        l: Some(10),
        ..Default::default()
    });
    let page = alice.request(logs).await.logs_message.expect("logs").logs;
    let texts: Vec<_> = page
        .iter()
        .map(|l| l.data.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        texts,
        ["hello from the web", "hi from QUIC"],
        "oldest first"
    );
    // The CLI's list sees the door's conversation too.
    let listed = bob.conversations(10).await.expect("list");
    assert!(listed.iter().any(|c| c.id == conv));
}

#[tokio::test]
async fn several_clients_share_one_socket_and_each_gets_its_own_pushes() {
    let s = TestServer::start().await;
    let mut ws = Lc::to(&s).await;
    ws.open(&s, "alice", None, false).await;
    ws.open(&s, "carol", None, false).await;
    let (dave, _dave_ev) = s.connect("dave").await;
    let c1 = dave
        .create_conversation(group(&["alice"]))
        .await
        .expect("create")
        .id;
    let c2 = dave
        .create_conversation(group(&["carol"]))
        .await
        .expect("create")
        .id;
    dave.send(SendMessage::text(c1, "to alice"))
        .await
        .expect("send");
    dave.send(SendMessage::text(c2, "to carol"))
        .await
        .expect("send");
    for (who, conv, body) in [("alice", c1, "to alice"), ("carol", c2, "to carol")] {
        let push = ws
            .wait(|c| kind(c).0 == Some(CommandType::Direct) && c.peer_id.as_deref() == Some(who))
            .await;
        let d = push.direct_message.expect("direct");
        assert_eq!(
            (d.cid, d.msg.as_deref()),
            (Some(conv.to_string()), Some(body))
        );
    }
    // A command naming no client on a two-client socket has nobody to go to.
    let mut anon = cmd(CommandType::Logs, None);
    anon.logs_message = Some(LogsCommand {
        cid: Some(c1.to_string()),
        ..Default::default()
    });
    let refused = ws.request(anon).await;
    assert_eq!(error_code(&refused), Some(4105));
}

#[tokio::test]
async fn a_tag_displaces_its_holder_and_a_reconnect_gives_way() {
    let s = TestServer::start().await;
    let mut first = Lc::to(&s).await;
    first.open(&s, "alice", Some("Mobile"), false).await;
    let mut second = Lc::to(&s).await;
    let opened = second.open(&s, "alice", Some("Mobile"), false).await;
    assert_eq!(kind(&opened).1, Some(OpType::Opened));
    let closed = first
        .wait(|c| kind(c) == (Some(CommandType::Session), Some(OpType::Closed)))
        .await;
    assert_eq!(closed.session_message.and_then(|m| m.code), Some(4111));
    let mut third = Lc::to(&s).await;
    let refused = third.open(&s, "alice", Some("Mobile"), true).await;
    assert_eq!(error_code(&refused), Some(4111), "{refused:?}");
}

#[tokio::test]
async fn a_session_token_logs_in_again_without_a_signature() {
    let s = TestServer::start().await;
    let mut ws = Lc::to(&s).await;
    let st = ws
        .open(&s, "alice", Some("Web"), false)
        .await
        .session_message
        .and_then(|m| m.st)
        .expect("st");
    drop(ws);
    let mut again = Lc::to(&s).await;
    let mut open = cmd(CommandType::Session, Some(OpType::Open));
    open.peer_id = Some("alice".into());
    open.session_message = Some(tidings::gateway::proto::SessionCommand {
        st: Some(st),
        r: Some(true),
        ..Default::default()
    });
    let ok = again.request(open.clone()).await;
    assert_eq!(kind(&ok).1, Some(OpType::Opened), "{ok:?}");
    let mut other = Lc::to(&s).await;
    open.peer_id = Some("mallory".into());
    let refused = other.request(open).await;
    assert_eq!(error_code(&refused), Some(4112), "another client's token");
}

#[tokio::test]
async fn bad_input_gets_leancloud_codes_and_the_server_goes_on() {
    let s = TestServer::start().await;
    // A forged login.
    let mut ws = Lc::to(&s).await;
    let mut forged = cmd(CommandType::Session, Some(OpType::Open));
    forged.app_id = Some(s.running().credentials().app_id.clone());
    forged.peer_id = Some("alice".into());
    forged.session_message = Some(tidings::gateway::proto::SessionCommand {
        t: Some(i64::try_from(tidings::util::now_secs()).unwrap()),
        n: Some("n".into()),
        s: Some("00".into()),
        ..Default::default()
    });
    assert_eq!(error_code(&ws.request(forged).await), Some(4102));
    // Before login, a command is refused 4105; an unknown one 4114; the
    // socket stays open and echo answers.
    assert_eq!(
        error_code(&ws.request(direct(&ConvId([1; 12]).to_string(), "x")).await),
        Some(4105)
    );
    ws.open(&s, "alice", None, false).await;
    let unknown = ws.request(cmd(CommandType::Presence, None)).await;
    assert_eq!(error_code(&unknown), Some(4114));
    let echo = ws.request(cmd(CommandType::Echo, None)).await;
    assert_eq!(kind(&echo).0, Some(CommandType::Echo));
    let nothing = ws.request(direct(&ConvId([1; 12]).to_string(), "x")).await;
    assert_eq!(error_code(&nothing), Some(4303), "no such conversation");

    // Undecodable bytes close the socket with 4114, an oversized message with 4109.
    ws.send_raw(Message::Binary(vec![0xff, 0xff, 0xff].into()))
        .await;
    assert_eq!(ws.closed().await, 4114);
    let mut big = Lc::to(&s).await;
    let max = s.config.limits.max_frame_bytes as usize;
    big.send_raw(Message::Binary(vec![0u8; max + 1].into()))
        .await;
    assert_eq!(big.closed().await, 4109);
    let mut text = Lc::to(&s).await;
    text.send_raw(Message::Text("hello".into())).await;
    assert_eq!(text.closed().await, 4114, "text on a binary socket");

    // Base64 text frames on their own subprotocol; the server still serves.
    let addr = s.running().gateway_addr().unwrap();
    let mut b64 = Lc::connect(addr, "lc.proto2base64.3").await;
    let opened = b64.open(&s, "bob", None, false).await;
    assert_eq!(kind(&opened).1, Some(OpType::Opened));
    let echo = b64.request(cmd(CommandType::Echo, None)).await;
    assert_eq!(kind(&echo).0, Some(CommandType::Echo));
    let (_carol, _ev) = s.connect("carol").await;
}

#[tokio::test]
async fn with_tls_the_door_serves_https_and_hands_out_wss() {
    let s = TestServer::start_with(|c| c.gateway.tls = true).await;
    let addr = s.running().gateway_addr().expect("gateway on");
    // The server's own self-signed certificate: trusted here by accepting
    // any, as an SDK would trust a real one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .timeout(WAIT)
        .build()
        .expect("client");
    let body: serde_json::Value = http
        .get(format!("https://{addr}/v1/route?appId=x"))
        .send()
        .await
        .expect("https route")
        .json()
        .await
        .expect("json");
    assert_eq!(body["server"], format!("wss://{addr}/"));
    // Plain HTTP on the TLS port gets nothing.
    assert!(
        http.get(format!("http://{addr}/v1/route?appId=x"))
            .send()
            .await
            .is_err()
    );
}
