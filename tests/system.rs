//! System conversations end to end (issue #6, second half): TTL'd
//! broadcasts (live, at login, a first login, expiry, deletion, transient
//! ones, a fan-out to 100,000 registered devices), `_SysMessage` rows and
//! their webhook against a real local HTTP receiver (batches, timeouts,
//! retries, giving up, a restart with deliveries pending), privacy between
//! subscribers, the MathBot example answering through the webhook and the
//! admin API, and the `tidings admin` commands for all of it. Real HTTP,
//! real QUIC on 127.0.0.1, real sled.

mod common;

#[allow(dead_code)]
#[path = "../examples/mathbot/bot.rs"]
mod bot;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::admin::{Admin, admin_cli, with_query};
use common::hook_server::{Answer, HookServer};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use tidings::client::{Client, ClientEvent, Events};
use tidings::core::outbound::{BroadcastFrame, Outbound};
use tidings::protocol::{Content, ConvId, Event, Message, SendMessage};
use tidings::registry::DeviceHandle;
use tokio::sync::mpsc;

const SC: &str = "/1.2/rtm/service-conversations";
const BROADCASTS: &str = "/1.2/rtm/broadcasts";
const SYS: &str = "/1.1/classes/_SysMessage";

fn conv(id: &str) -> ConvId {
    ConvId::from_str(id).expect("a conversation id")
}

/// The next message and its `redelivered` flag, skipping other events.
async fn next(ev: &mut Events, what: &str) -> (Message, bool) {
    ev.wait_for(WAIT, |e| match e {
        ClientEvent::Server(Event::Message {
            msg, redelivered, ..
        }) => Some((msg.clone(), *redelivered)),
        _ => None,
    })
    .await
    .unwrap_or_else(|| panic!("no message ({what}) within {WAIT:?}"))
}

/// The messages `ev` gets before a marker the app sends `client` alone
/// now. A connection's frames arrive in the order the server wrote them,
/// so the marker proves nothing else was on its way.
async fn before_marker(
    a: &Admin,
    conv: &str,
    client: &str,
    ev: &mut Events,
) -> Vec<(Message, bool)> {
    let (marker, _) = a.send_to(conv, "Bot", &[client], "marker").await;
    let mut got = Vec::new();
    loop {
        let (m, redelivered) = next(ev, "the marker").await;
        if m.msg_id == marker {
            return got;
        }
        got.push((m, redelivered));
    }
}

/// Logs `client` in and returns the broadcasts it got at login: what came
/// after its offline sync, each flagged redelivered. Waits for running
/// fan-outs first: one that reaches the new session hands it a live copy.
async fn broadcasts_at_login(
    s: &TestServer,
    a: &Admin,
    conv: &str,
    client: &str,
) -> (Client, Events, Vec<String>) {
    let hub = s.running().hub().clone();
    eventually("running fan-outs to end", || {
        hub.fan_outs.load(Ordering::Relaxed) == 0
    })
    .await;
    let (c, mut ev) = s.connect_raw(s.options(client)).await;
    push_sync(&mut ev).await;
    let got = before_marker(a, conv, client, &mut ev).await;
    let ids = got
        .into_iter()
        .map(|(m, redelivered)| {
            assert!(
                redelivered,
                "a broadcast at login is flagged redelivered: {m:?}"
            );
            m.msg_id
        })
        .collect();
    (c, ev, ids)
}

/// The message `id`, skipping every other event.
async fn message(ev: &mut Events, id: &str) -> Message {
    ev.wait_for(WAIT, |e| match e {
        ClientEvent::Server(Event::Message { msg, .. }) if msg.msg_id == id => Some(msg.clone()),
        _ => None,
    })
    .await
    .unwrap_or_else(|| panic!("no message {id} within {WAIT:?}"))
}

/// Waits until the broadcast `msg_id`'s online fan-out has recorded that
/// `client` had it (cursors are written just after the hand-off).
async fn had(s: &TestServer, client: &str, msg_id: &str) {
    let store = s.running().hub().store.clone();
    let (c, seq) = tidings::protocol::parse_msg_id(msg_id).expect("a stored id");
    let id = store
        .broadcast_of_message(c, seq)
        .unwrap()
        .expect("a broadcast record");
    eventually("the cursor", || {
        store
            .broadcast_cursor(client)
            .unwrap()
            .is_some_and(|cur| cur >= id)
    })
    .await;
}

/// `tidings admin ARGS…` against `dir`'s server, which must succeed; its
/// JSON lines.
async fn cli_json(dir: &std::path::Path, args: &[&str]) -> Vec<Value> {
    let (ok, out, err) = admin_cli(dir, args).await;
    assert!(ok, "{err}");
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .collect()
}

/// Logs `client` in once and out again: from then on the server knows it.
async fn known(s: &TestServer, client: &str) {
    let (c, _ev) = s.connect(client).await;
    c.logout().await.expect("logout");
}

/// The `msg-id`s of admin history rows, in order.
fn ids(rows: &Value) -> Vec<String> {
    rows.as_array()
        .unwrap_or_else(|| panic!("rows: {rows}"))
        .iter()
        .map(|r| r["msg-id"].as_str().expect("msg-id").to_owned())
        .collect()
}

/// A value of `/metrics`.
async fn metric(a: &Admin, name: &str) -> f64 {
    let text = a.get("/metrics").await.expect(200);
    let text = text.as_str().expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

// --------------------------------------------------------- broadcasts ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_reach_who_is_online_at_once_and_the_others_at_login() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.service_with("News", &["alice", "bob"]).await;
    known(&s, "bob").await;
    known(&s, "dave").await;
    let (_alice, mut aev) = s.connect("alice").await;
    let (_carol, mut cev) = s.connect("carol").await;

    // To the subscribers: alice, online, at once; carol is not one.
    let (m1, ts1) = a
        .broadcast_to_subscribers(&id, "News", "to subscribers")
        .await;
    let (m, redelivered) = next(&mut aev, "the subscribers' broadcast").await;
    assert_eq!(
        (m.msg_id.as_str(), text(&m)),
        (m1.as_str(), "to subscribers")
    );
    assert_eq!(
        (m.conv, m.from.as_str(), m.timestamp),
        (conv(&id), "News", ts1)
    );
    assert!(!redelivered && !m.transient && m.seq > 0);
    assert!(before_marker(&a, &id, "carol", &mut cev).await.is_empty());

    // To everyone: carol too.
    let (m2, _) = a.broadcast(&id, "News", "to everyone", json!({})).await;
    for ev in [&mut aev, &mut cev] {
        assert_eq!(next(ev, "the global broadcast").await.0.msg_id, m2);
    }

    // Offline then: bob (a subscriber) gets both at login, in order; dave
    // (not one) only the global one.
    let (_bob, _bev, got) = broadcasts_at_login(&s, &a, &id, "bob").await;
    assert_eq!(got, [m1.clone(), m2.clone()]);
    let (_dave, _dev, got) = broadcasts_at_login(&s, &a, &id, "dave").await;
    assert_eq!(got, std::slice::from_ref(&m2));
    // Had live, they are not had again at the next login.
    drop(aev);
    had(&s, "alice", &m2).await;
    let (_alice2, _a2ev, got) = broadcasts_at_login(&s, &a, &id, "alice").await;
    assert!(got.is_empty(), "{got:?}");

    // The listing, newest first, and the histories.
    let listed = a
        .get(&with_query(BROADCASTS, &[("conv_id", &id)]))
        .await
        .expect(200);
    assert_eq!(ids(&listed), [m2.clone(), m1.clone()]);
    let row = &listed[1];
    assert_eq!(row["conv-id"], id.as_str());
    assert_eq!(row["from"], "News");
    assert_eq!(row["data"], "to subscribers");
    assert_eq!(row["bin"], false);
    assert_eq!(row["timestamp"], ts1);
    assert_eq!(row["global"], false);
    assert_eq!(listed[0]["global"], true);
    let month = 30 * 24 * 3600 * 1000;
    let valid_till = row["valid-till"].as_u64().expect("valid-till");
    assert!(
        valid_till.abs_diff(ts1 + month) < 5_000,
        "{valid_till} vs {ts1}"
    );
    let history = a
        .get(&format!("/1.2/rtm/conversations/{id}/messages"))
        .await
        .expect(200);
    let all = ids(&history);
    assert!(all.contains(&m1) && all.contains(&m2), "{all:?}");
    let of_bob = a
        .get(&format!("{SC}/{id}/subscribers/bob/messages"))
        .await
        .expect(200);
    let of_bob = ids(&of_bob);
    assert_eq!(
        of_bob.len(),
        3,
        "the two broadcasts and bob's marker: {of_bob:?}"
    );
    assert_eq!(
        of_bob[1..],
        [m2, m1],
        "broadcasts count as sent to a subscriber"
    );
}

/// A fan-out that reaches a session after its login read the store hands
/// it a live copy of what the login already sent; the session drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_copy_of_a_broadcast_sent_at_login_is_dropped() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.create_service("News").await;
    known(&s, "kim").await;
    let (b, _) = a.broadcast(&id, "News", "once", json!({})).await;
    let (_kim, mut kev, got) = broadcasts_at_login(&s, &a, &id, "kim").await;
    assert_eq!(got, std::slice::from_ref(&b));
    // What the racing fan-out would hand over, built as it builds it.
    let hub = s.running().hub().clone();
    let (c, seq) = tidings::protocol::parse_msg_id(&b).expect("a stored id");
    let entry = hub.store.message(c, seq).unwrap().expect("stored");
    let frame = tidings::wire::frame::event(Event::Message {
        msg: entry.msg.for_receiver(""),
        redelivered: false,
        chat_room: false,
    })
    .expect("encoded");
    assert!(
        hub.registry.send_to_client(
            "kim",
            &Outbound::Broadcast(Arc::new(BroadcastFrame {
                id: hub
                    .store
                    .broadcast_of_message(c, seq)
                    .unwrap()
                    .expect("its record"),
                conv: c,
                seq,
                frame,
            }))
        )
    );
    let got = before_marker(&a, &id, "kim", &mut kev).await;
    assert!(got.is_empty(), "the live copy was dropped: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_login_gets_only_the_newest_broadcast() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.create_service("News").await;
    known(&s, "old").await;
    let mut sent = Vec::new();
    for i in 1..=3 {
        sent.push(
            a.broadcast(&id, "News", &format!("news {i}"), json!({}))
                .await
                .0,
        );
    }
    let (_old, _oev, got) = broadcasts_at_login(&s, &a, &id, "old").await;
    assert_eq!(got, sent, "a known client gets every one it missed");
    let (new, _nev, got) = broadcasts_at_login(&s, &a, &id, "new").await;
    assert_eq!(got, [sent[2].clone()], "a first login gets only the newest");
    new.logout().await.expect("logout");
    let (_new, mut nev, got) = broadcasts_at_login(&s, &a, &id, "new").await;
    assert!(got.is_empty(), "nothing twice: {got:?}");
    // Online now, so live; and then not again at the next login.
    let (live, _) = a.broadcast(&id, "News", "news 4", json!({})).await;
    assert_eq!(next(&mut nev, "the live one").await.0.msg_id, live);
    had(&s, "new", &live).await;
    let (_new2, _n2ev, got) = broadcasts_at_login(&s, &a, &id, "new").await;
    assert!(got.is_empty(), "{got:?}");
}

/// Seed 000: a client is told of every broadcast sent while it was away.
/// One handed to a connection that died unnoticed (a killed `tidings
/// listen`, before the server times it out) was never had: it comes again
/// at the next login, because the cursor moves on the client's ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_handed_to_a_dead_connection_comes_at_the_next_login() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.create_service("News").await;
    known(&s, "zed").await;
    // A client that reads but never acknowledges, as one killed would.
    let mut opts = s.options("zed");
    opts.auto_ack = false;
    let (zed, mut zev) = s.connect_raw(opts).await;
    push_sync(&mut zev).await;
    let (b, _) = a
        .broadcast(&id, "News", "while you were away", json!({}))
        .await;
    assert_eq!(next(&mut zev, "the live broadcast").await.0.msg_id, b);
    drop((zed, zev));
    let (_zed, _zev, got) = broadcasts_at_login(&s, &a, &id, "zed").await;
    assert_eq!(
        got,
        std::slice::from_ref(&b),
        "never acknowledged, so not had"
    );
    // Acknowledged this time (auto-ack), so not again.
    had(&s, "zed", &b).await;
    let (_zed, _zev, got) = broadcasts_at_login(&s, &a, &id, "zed").await;
    assert!(got.is_empty(), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_broadcasts_are_not_delivered_but_stay_in_history() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.create_service("News").await;
    known(&s, "kim").await;
    let soon = tidings::util::now_ms() + 300;
    let (short, _) = a
        .broadcast(&id, "News", "flash sale", json!({ "valid_till": soon }))
        .await;
    let (long, _) = a.broadcast(&id, "News", "opening hours", json!({})).await;
    // It expires: the listing drops it, then the sweep takes its record.
    until("the short one to expire", || async {
        !ids(&a.get(BROADCASTS).await.expect(200)).contains(&short)
    })
    .await;
    let store = s.running().hub().store.clone();
    let (c, seq) = tidings::protocol::parse_msg_id(&short).expect("a stored id");
    eventually("the sweep", || {
        store.broadcast_of_message(c, seq).unwrap().is_none()
    })
    .await;
    // The sweeper counts after it removes.
    until("the sweep to be counted", || async {
        metric(&a, "tidings_broadcasts_swept_total").await >= 1.0
    })
    .await;
    let (_kim, _kev, got) = broadcasts_at_login(&s, &a, &id, "kim").await;
    assert_eq!(
        got,
        std::slice::from_ref(&long),
        "the expired one is not delivered"
    );
    let (_newbie, _nev, got) = broadcasts_at_login(&s, &a, &id, "newbie").await;
    assert_eq!(got, std::slice::from_ref(&long));
    let history = a
        .get(&format!("/1.2/rtm/conversations/{id}/messages"))
        .await
        .expect(200);
    let history: Vec<String> = ids(&history)
        .into_iter()
        .filter(|i| *i == long || *i == short)
        .collect();
    assert_eq!(history, [long, short], "both stay in history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_broadcasts_are_not_delivered_but_stay_in_history() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.create_service("News").await;
    known(&s, "kim").await;
    let (gone, _) = a.broadcast(&id, "News", "oops", json!({})).await;
    let (kept, _) = a.broadcast(&id, "News", "fine", json!({})).await;
    let path = format!("{BROADCASTS}/{gone}");
    assert_eq!(a.delete(&path).await.expect(200), json!({}));
    assert_eq!(a.delete(&path).await.error(404).0, 4404);
    assert_eq!(
        a.delete(&format!("{BROADCASTS}/nonsense"))
            .await
            .error(404)
            .0,
        4404
    );
    // An app send is not a broadcast.
    let (send, _) = a.send_to(&id, "News", &["kim"], "direct").await;
    assert_eq!(
        a.delete(&format!("{BROADCASTS}/{send}")).await.error(404).0,
        4404
    );
    assert_eq!(
        ids(&a.get(BROADCASTS).await.expect(200)),
        std::slice::from_ref(&kept)
    );
    let (_kim, _kev, got) = broadcasts_at_login(&s, &a, &id, "kim").await;
    assert_eq!(got, std::slice::from_ref(&kept));
    let history = a
        .get(&format!("/1.2/rtm/conversations/{id}/messages"))
        .await
        .expect(200);
    assert!(ids(&history).contains(&gone));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_broadcasts_reach_only_who_is_online_and_are_not_kept() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.create_service("Ticker").await;
    known(&s, "off").await;
    let (_on, mut oev) = s.connect("on").await;
    let (t, ts) = a
        .broadcast(
            &id,
            "Ticker",
            "tick",
            json!({ "transient": true, "push": "Ticker says tick" }),
        )
        .await;
    let (m, _) = next(&mut oev, "the transient broadcast").await;
    assert_eq!((m.msg_id.as_str(), m.timestamp, m.seq), (t.as_str(), ts, 0));
    assert!(m.transient);
    assert_eq!(
        m.push_data.as_deref(),
        Some(r#"{"alert":"Ticker says tick"}"#)
    );
    assert!(ids(&a.get(BROADCASTS).await.expect(200)).is_empty());
    let history = a
        .get(&format!("/1.2/rtm/conversations/{id}/messages"))
        .await
        .expect(200);
    assert!(ids(&history).is_empty());
    let (_off, _fev, got) = broadcasts_at_login(&s, &a, &id, "off").await;
    assert!(got.is_empty(), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_requests_are_checked() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.create_service("News").await;
    let service = format!("{SC}/{id}/broadcasts");
    let ok = json!({"from_client": "News", "conv_id": id, "message": "m"});
    assert_eq!(
        a.send(a.bare(Method::POST, BROADCASTS).json(&ok))
            .await
            .error(401)
            .0,
        401
    );
    assert_eq!(
        a.send(a.bare(Method::GET, BROADCASTS)).await.error(401).0,
        401
    );
    let malformed = a
        .request(Method::POST, BROADCASTS)
        .header("content-type", "application/json")
        .body("{\"from_client\": ");
    assert_eq!(a.send(malformed).await.error(400).0, 107);
    let now = tidings::util::now_ms();
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("conv_id", json!("0".repeat(24))), 404, 4303),
        (with("conv_id", json!("not-an-id")), 404, 4303),
        (with("from_client", json!("")), 400, 4401),
        (with("message", json!("x".repeat(6000))), 413, 4109),
        (with("valid_till", json!(now - 1)), 400, 4301),
        (with("valid_till", json!("tomorrow")), 400, 4301),
        (with("push", json!(3)), 400, 4301),
        (with("surprise", json!(1)), 400, 4301),
        (json!({"from_client": "News", "message": "m"}), 400, 4301),
    ];
    for (body, status, code) in cases {
        assert_eq!(
            a.post(BROADCASTS, body.clone()).await.error(status).0,
            code,
            "{body}"
        );
    }
    let svc = json!({"from_client": "News", "message": "m"});
    assert_eq!(
        a.post(&format!("{SC}/{}/broadcasts", "0".repeat(24)), svc.clone())
            .await
            .error(404)
            .0,
        4303
    );
    let mut transient = svc.clone();
    transient["transient"] = json!(true);
    assert_eq!(
        a.post(&service, transient).await.error(400).0,
        4301,
        "no transient here"
    );
    // A user conversation is not the admin API's.
    let (tom, _tev) = s.connect("Tom").await;
    let chat = tom.create_unique(vec!["Jerry".into()]).await.unwrap();
    let mut to_chat = ok.clone();
    to_chat["conv_id"] = json!(chat.id.to_string());
    assert_eq!(a.post(BROADCASTS, to_chat).await.error(404).0, 4303);
    // A valid_till past a month is cut to a month.
    let far = a
        .post(
            BROADCASTS,
            with("valid_till", json!(now + 90 * 24 * 3600 * 1000)),
        )
        .await
        .expect(200);
    let listed = a.get(BROADCASTS).await.expect(200);
    assert_eq!(listed[0]["msg-id"], far["msg-id"]);
    let till = listed[0]["valid-till"].as_u64().expect("valid-till");
    let month = 30 * 24 * 3600 * 1000;
    assert!(
        till <= tidings::util::now_ms() + month && till > now + month - 60_000,
        "{till}"
    );
    // Paging and a bad filter.
    a.post(
        &service,
        json!({"from_client": "News", "message": "2", "push": {"alert": "x"}}),
    )
    .await
    .expect(200);
    let page = a
        .get(&with_query(BROADCASTS, &[("limit", "1"), ("skip", "1")]))
        .await
        .expect(200);
    assert_eq!(ids(&page), [far["msg-id"].as_str().unwrap().to_owned()]);
    assert_eq!(
        a.get(&with_query(BROADCASTS, &[("conv_id", "zzz")]))
            .await
            .error(404)
            .0,
        4303
    );
    assert_eq!(
        a.get(&with_query(BROADCASTS, &[("limit", "x")]))
            .await
            .error(400)
            .0,
        4301
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_to_100000_online_clients_goes_out_in_steps() {
    const N: usize = 100_000;
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let hub = s.running().hub().clone();
    let id = a.create_service("News").await;
    // Real clients beside 100,000 registered devices with plain channels.
    let (alice, mut aev) = s.connect("alice").await;
    let (_bob, mut bev) = s.connect("bob").await;
    let chat = alice
        .create_unique(vec!["bob".into()])
        .await
        .expect("a chat");
    let mut rxs = Vec::with_capacity(N);
    for i in 0..N {
        let (tx, rx) = mpsc::unbounded_channel();
        let device = DeviceHandle {
            conn_id: 1_000_000_000 + i as u64,
            device_id: "fake".into(),
            tag: None,
            tx,
            direct: None,
        };
        hub.registry
            .register(&format!("fake{i}"), device, false)
            .expect("registered");
        rxs.push(rx);
    }
    let before = Instant::now();
    let sent = alice.send_text(chat.id, "before").await.expect("a send");
    let send_before = before.elapsed();
    message(&mut bev, &sent.msg_id).await;
    let started = Instant::now();
    let (b, _) = a.broadcast(&id, "News", "to all of you", json!({})).await;
    let answered = started.elapsed();
    // Other traffic while the fan-out runs.
    let send_started = Instant::now();
    let sent = alice
        .send_text(chat.id, "still here")
        .await
        .expect("a send");
    let send_took = send_started.elapsed();
    message(&mut bev, &sent.msg_id).await;
    let mut got = 0;
    for rx in &mut rxs {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(Outbound::Broadcast(_))) => got += 1,
            other => panic!("a device got {other:?} instead of the broadcast"),
        }
    }
    let all_had_it = started.elapsed();
    assert_eq!(got, N);
    message(&mut aev, &b).await;
    message(&mut bev, &b).await;
    // The real clients acknowledged it, so their cursors moved; the fake
    // devices never did, so theirs did not and they get it at login.
    had(&s, "alice", &b).await;
    had(&s, "bob", &b).await;
    let cursors_done = started.elapsed();
    let owed = tidings::broadcast::at_login(&hub, "fake7").expect("read");
    assert_eq!(owed.frames.len(), 1, "unacknowledged, so still owed");
    eprintln!(
        "broadcast to {N} online devices: answered in {answered:?}, every device had it \
         after {all_had_it:?}, the real clients' cursors written after {cursors_done:?}; a chat send \
         took {send_before:?} before and {send_took:?} meanwhile"
    );
}

// ------------------------------------------------------- _SysMessage ----

/// Rows from the receiver's calls until `n` have come; each call checked
/// for the headers the server sends.
async fn rows_from(hs: &mut HookServer, n: usize, app_id: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    while rows.len() < n {
        let call = hs.next("webhook").await;
        assert_eq!(call.header("x-lc-id"), Some(app_id));
        assert_eq!(call.header("content-type"), Some("application/json"));
        rows.extend(call.body.as_array().expect("a JSON array").iter().cloned());
    }
    rows
}

fn msg_ids(rows: &[Value]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["msgId"].as_str().expect("msgId"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_messages_are_sys_message_rows_and_reach_the_webhook() {
    let mut hs = HookServer::start().await;
    let url = hs.endpoint("sys", "webhook");
    let s = TestServer::start_with(|c| {
        c.system.webhook_url = Some(url);
        c.hooks.hook_key = Some("the-hook-key".into());
    })
    .await;
    let a = Admin::of(&s);
    let id = a.service_with("Bot", &["alice", "bob"]).await;
    let (alice, _aev) = s.connect("alice").await;
    let (bob, _bev) = s.connect("bob").await;
    let c = conv(&id);
    let s1 = alice.send_text(c, "1+1").await.expect("sent");
    let s2 = alice
        .send(SendMessage {
            content: Content::Binary(vec![1, 2, 3]),
            ..SendMessage::text(c, "")
        })
        .await
        .expect("sent");
    let s3 = bob.send_text(c, "hi bot").await.expect("sent");
    // Neither the app's own sends nor broadcasts nor other conversations.
    a.send_to(&id, "Bot", &["alice"], "hello alice").await;
    a.broadcast(&id, "Bot", "hello all", json!({})).await;
    let chat = alice.create_unique(vec!["bob".into()]).await.unwrap();
    alice.send_text(chat.id, "not for the bot").await.unwrap();

    let rows = rows_from(&mut hs, 3, &a.app_id).await;
    let by_alice: Vec<&str> = rows
        .iter()
        .filter(|r| r["from"] == "alice")
        .map(|r| r["msgId"].as_str().unwrap())
        .collect();
    assert_eq!(
        by_alice,
        [s1.msg_id.as_str(), s2.msg_id.as_str()],
        "in order"
    );
    let first = rows
        .iter()
        .find(|r| r["msgId"] == s1.msg_id.as_str())
        .unwrap();
    let iso = tidings::util::iso_date(s1.timestamp);
    assert_eq!(
        first,
        &json!({
            "msgId": s1.msg_id,
            "conv": {"__type": "Pointer", "className": "_Conversation", "objectId": id},
            "from": "alice",
            "fromIp": "127.0.0.1",
            "bin": false,
            "data": "1+1",
            "timestamp": s1.timestamp,
            "createdAt": {"__type": "Date", "iso": iso},
            "updatedAt": {"__type": "Date", "iso": iso},
        })
    );
    let binary = rows
        .iter()
        .find(|r| r["msgId"] == s2.msg_id.as_str())
        .unwrap();
    assert_eq!(
        (&binary["bin"], &binary["data"]),
        (&json!(true), &json!("AQID"))
    );
    assert!(msg_ids(&rows).contains(&s3.msg_id.as_str()));
    let hub = s.running().hub().clone();
    eventually("an empty queue", || {
        hub.store.webhook_pending(10).unwrap().is_empty()
    })
    .await;
    assert_eq!(hs.count_now("webhook"), 0, "each message went once");

    // The query: every row, with when the webhook took it.
    let pointer = json!({"__type": "Pointer", "className": "_Conversation", "objectId": id});
    let all = |q: &[(&str, &str)]| with_query(SYS, q);
    let w = json!({ "conv": pointer }).to_string();
    let got = a.get(&all(&[("where", &w)])).await.expect(200);
    let results = got["results"].as_array().expect("results");
    assert_eq!(
        msg_ids(results),
        [s1.msg_id.as_str(), s2.msg_id.as_str(), s3.msg_id.as_str()]
    );
    for r in results {
        let ack = r["ackAt"]["iso"].as_str().expect("ackAt once delivered");
        assert!(ack >= r["createdAt"]["iso"].as_str().unwrap());
        assert_eq!(r["updatedAt"], r["ackAt"]);
    }
    let everything = a.get(SYS).await.expect(200);
    assert_eq!(
        everything["results"], got["results"],
        "only system conversations"
    );
    let w = json!({ "from": "bob" }).to_string();
    let bobs = a.get(&all(&[("where", &w)])).await.expect(200);
    assert_eq!(
        msg_ids(bobs["results"].as_array().unwrap()),
        [s3.msg_id.as_str()]
    );
    let w = json!({ "msgId": s2.msg_id, "conv": id }).to_string();
    let one = a.get(&all(&[("where", &w)])).await.expect(200);
    assert_eq!(
        msg_ids(one["results"].as_array().unwrap()),
        [s2.msg_id.as_str()]
    );
    let newest = a
        .get(&all(&[
            ("order", "-createdAt"),
            ("limit", "1"),
            ("skip", "1"),
        ]))
        .await
        .expect(200);
    assert_eq!(
        msg_ids(newest["results"].as_array().unwrap()),
        [s2.msg_id.as_str()]
    );
    let per_conv = a.get(&format!("{SC}/{id}/sys-messages")).await.expect(200);
    assert_eq!(per_conv["results"], got["results"]);
    // Errors: LeanCloud's codes.
    for q in [
        vec![("where", "[1]")],
        vec![("where", r#"{"data": "1+1"}"#)],
        vec![("where", r#"{"conv": 5}"#)],
        vec![("order", "data")],
        vec![("limit", "many")],
    ] {
        assert_eq!(a.get(&all(&q)).await.error(400).0, 4301, "{q:?}");
    }
    assert_eq!(
        a.get(&format!("{SC}/{}/sys-messages", "0".repeat(24)))
            .await
            .error(404)
            .0,
        4303
    );
    assert_eq!(a.send(a.bare(Method::GET, SYS)).await.error(401).0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_timeouts_are_retried_three_times_then_given_up() {
    let mut hs = HookServer::scripted(|_| Answer::ok().after(Duration::from_secs(2))).await;
    let url = hs.endpoint("sys", "webhook");
    let s = TestServer::start_with(|c| {
        c.system.webhook_url = Some(url);
        c.system.webhook_timeout_ms = 200;
    })
    .await;
    let a = Admin::of(&s);
    let hub = s.running().hub().clone();
    let id = a.service_with("Bot", &["alice"]).await;
    let (alice, _aev) = s.connect("alice").await;
    let given_up_before = metric(&a, "tidings_sys_webhook_given_up_total").await;
    let lost = alice.send_text(conv(&id), "lost").await.expect("sent");
    // The first attempt and three retries, each timing out.
    let mut arrivals = Vec::new();
    for _ in 0..4 {
        let call = hs.next("webhook").await;
        assert_eq!(
            msg_ids(call.body.as_array().unwrap()),
            [lost.msg_id.as_str()]
        );
        arrivals.push(Instant::now());
    }
    // Backed off: a quarter of the timeout, then half, then all of it.
    for (i, pair) in arrivals.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let least = Duration::from_millis(200 + 50 * (1 << i));
        assert!(
            gap >= least - Duration::from_millis(20),
            "retry {i} after {gap:?}"
        );
    }
    eventually("the batch given up", || {
        hub.store.webhook_pending(10).unwrap().is_empty()
    })
    .await;
    assert!(metric(&a, "tidings_sys_webhook_given_up_total").await >= given_up_before + 1.0);
    assert!(metric(&a, "tidings_sys_webhook_timeouts_total").await >= 4.0);

    // A failure that passes: the 500 is retried, the retry taken.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    hs.set_script(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Answer::raw(500, r#"{"error":"busy"}"#)
        } else {
            Answer::ok()
        }
    });
    let kept = alice.send_text(conv(&id), "kept").await.expect("sent");
    for _ in 0..2 {
        let call = hs.next("webhook").await;
        assert_eq!(
            msg_ids(call.body.as_array().unwrap()),
            [kept.msg_id.as_str()],
            "the given-up message is not sent again"
        );
    }
    let row = |msg: &str| {
        let w = json!({ "msgId": msg }).to_string();
        let path = with_query(SYS, &[("where", &w)]);
        let a = &a;
        async move { a.get(&path).await.expect(200)["results"][0].clone() }
    };
    until("kept's ackAt", || async {
        row(&kept.msg_id).await.get("ackAt").is_some()
    })
    .await;
    let lost_row = row(&lost.msg_id).await;
    assert_eq!(lost_row["data"], "lost");
    assert!(
        lost_row.get("ackAt").is_none(),
        "never delivered: {lost_row}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_webhook_deliveries_survive_a_restart() {
    // A receiver that does not answer while the server stops.
    let mut hs = HookServer::scripted(|_| Answer::ok().after(Duration::from_secs(30))).await;
    let url = hs.endpoint("sys", "webhook");
    let mut s = TestServer::start_with(|c| {
        c.system.webhook_url = Some(url);
        c.system.webhook_timeout_ms = 20_000;
    })
    .await;
    let a = Admin::of(&s);
    let id = a.service_with("Bot", &["alice"]).await;
    let (alice, _aev) = s.connect("alice").await;
    let m1 = alice.send_text(conv(&id), "one").await.expect("sent");
    let m2 = alice.send_text(conv(&id), "two").await.expect("sent");
    // A POST is under way...
    let first = hs.next("webhook").await;
    assert!(msg_ids(first.body.as_array().unwrap()).contains(&m1.msg_id.as_str()));
    drop(alice);
    // ...when the server stops. The queue is in the store.
    hs.set_script(|_| Answer::ok());
    let stopped = Instant::now();
    s.restart().await;
    assert!(
        stopped.elapsed() < Duration::from_secs(8),
        "the worker did not hold up the stop"
    );
    let rows = rows_from(&mut hs, 2, &Admin::of(&s).app_id).await;
    let mut got = msg_ids(&rows);
    got.dedup();
    assert_eq!(got, [m1.msg_id.as_str(), m2.msg_id.as_str()]);
    let hub = s.running().hub().clone();
    eventually("an empty queue", || {
        hub.store.webhook_pending(10).unwrap().is_empty()
    })
    .await;
    let c = conv(&id);
    eventually("ackAt recorded", || {
        hub.store.sys_acked(c, m1.seq).unwrap().is_some()
            && hub.store.sys_acked(c, m2.seq).unwrap().is_some()
    })
    .await;
}

// ------------------------------------------------ privacy and MathBot ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_mode_unread_counts_only_what_the_subscriber_sees() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.service_with("Help", &["alice", "bob"]).await;
    // Bob's own question raises his read cursor, as in any conversation.
    let (bob, _bev) = s.connect("bob").await;
    bob.send_text(conv(&id), "bob asks").await.expect("sent");
    bob.logout().await.expect("logout");
    let (alice, _aev) = s.connect("alice").await;
    for i in 0..2 {
        alice
            .send_text(conv(&id), &format!("alice asks {i}"))
            .await
            .expect("sent");
    }
    a.send_to(&id, "Help", &["bob"], "an answer for bob").await;
    let (news, _) = a
        .broadcast_to_subscribers(&id, "Help", "for every subscriber")
        .await;
    alice
        .send_text(conv(&id), "alice again")
        .await
        .expect("sent");
    let (bob, mut bev) = s.connect_raw(s.pull("bob")).await;
    let items = pull_sync(&mut bev).await;
    let summary = unread_summary(&items);
    assert_eq!(
        summary,
        [(conv(&id), 2, Some(news))],
        "alice's messages are neither counted nor shown to bob"
    );
    // His history holds the same: his question, the answer, the broadcast.
    let history: Vec<String> = full_history(&bob, conv(&id))
        .await
        .into_iter()
        .map(|m| text(&m).to_owned())
        .collect();
    assert_eq!(
        history,
        ["bob asks", "an answer for bob", "for every subscriber"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mathbot_answers_each_subscriber_alone() {
    // The bot listens first, so the server can be told where.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bot_url = format!("http://{}/webhook", listener.local_addr().unwrap());
    let url = bot_url.clone();
    let s = TestServer::start_with(|c| {
        c.system.webhook_url = Some(url);
        c.hooks.hook_key = Some("bot-key".into());
    })
    .await;
    let a = Admin::of(&s);
    let mathbot = Arc::new(
        bot::Bot::new(
            &a.base,
            &a.app_id,
            &a.master_key,
            "MathBot",
            Some("bot-key".into()),
        )
        .expect("the bot"),
    );
    let id = mathbot.conversation().await.expect("its conversation");
    assert_eq!(
        mathbot.conversation().await.unwrap(),
        id,
        "found, not created again"
    );
    for c in ["alice", "bob"] {
        mathbot.subscribe(&id, c).await.expect("subscribed");
    }
    let server = tokio::spawn(async move {
        axum::serve(listener, bot::router(mathbot)).await.unwrap();
    });
    let c = conv(&id);
    let (alice, mut aev) = s.connect("alice").await;
    let (bob, mut bev) = s.connect("bob").await;

    // Bob asks first, so his later sync covers alice's whole exchange.
    let b1 = bob.send_text(c, "10/4").await.expect("sent");
    let (for_bob, _) = next(&mut bev, "bob's answer").await;
    assert_eq!(text(&for_bob), "10/4 = 2.5");
    let q1 = alice.send_text(c, "1+2*3").await.expect("sent");
    let (answer, _) = next(&mut aev, "MathBot's answer").await;
    assert_eq!(
        (answer.from.as_str(), text(&answer)),
        ("MathBot", "1+2*3 = 7")
    );
    assert_eq!(answer.conv, c);
    let q2 = alice.send_text(c, "(1+2)/0").await.expect("sent");
    let (refusal, _) = next(&mut aev, "MathBot's refusal").await;
    assert!(
        text(&refusal).contains("division by zero"),
        "{}",
        text(&refusal)
    );
    let q3 = alice
        .send_text(c, r#"{"_lctype":-1,"_lctext":"2*(3+4)"}"#)
        .await
        .expect("sent");
    let (typed, _) = next(&mut aev, "a typed answer").await;
    let typed: Value = serde_json::from_str(text(&typed)).expect("typed JSON");
    assert_eq!(typed, json!({"_lctype": -1, "_lctext": "2*(3+4) = 14"}));

    // Bob saw nothing of alice's exchange live...
    let live = before_marker(&a, &id, "bob", &mut bev).await;
    assert!(live.is_empty(), "{live:?}");
    // ...nor in a push sync on a new device...
    let mut tablet = s.options("bob");
    tablet.device_id = Some("tablet".into());
    let (bob_tablet, mut tev) = s.connect_raw(tablet).await;
    let (synced, _) = push_sync(&mut tev).await;
    let alices = [
        &q1.msg_id,
        &q2.msg_id,
        &q3.msg_id,
        &answer.msg_id,
        &refusal.msg_id,
    ];
    assert!(
        synced.iter().all(|m| !alices.contains(&&m.msg_id)),
        "{synced:?}"
    );
    assert!(
        synced.iter().any(|m| m.msg_id == for_bob.msg_id),
        "the sync did run over the span: {synced:?} {}",
        b1.msg_id
    );
    // ...nor in history.
    let history = full_history(&bob_tablet, c).await;
    assert!(
        history.iter().all(|m| !alices.contains(&&m.msg_id)),
        "{history:?}"
    );
    assert!(history.iter().any(|m| m.msg_id == for_bob.msg_id));
    // Alice's history has her questions and the answers.
    let hers: Vec<String> = full_history(&alice, c)
        .await
        .into_iter()
        .map(|m| m.msg_id)
        .collect();
    for m in alices {
        assert!(hers.contains(m), "{m} missing from {hers:?}");
    }
    assert!(!hers.contains(&for_bob.msg_id));

    // The webhook is refused without the hook key.
    let forged = common::admin::http_client()
        .post(&bot_url)
        .json(&json!([{"conv": {"objectId": id}, "from": "mallory", "data": "1+1"}]))
        .send()
        .await
        .expect("an answer");
    assert_eq!(forged.status().as_u16(), 401);
    server.abort();
}

// ---------------------------------------------------------------- CLI ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_lists_and_stops_broadcasts_and_reads_sys_messages() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.service_with("News", &["alice"]).await;
    let (alice, mut aev) = s.connect("alice").await;
    let sent = alice
        .send_text(conv(&id), "hello News")
        .await
        .expect("sent");
    let dir = s.data_dir();
    let out = cli_json(
        &dir,
        &[
            "broadcast",
            "send",
            "--conv",
            &id,
            "--from",
            "News",
            "--subscribers",
            "--ttl",
            "60",
            "hi",
        ],
    )
    .await;
    let b = out[0]["msg-id"].as_str().expect("msg-id").to_owned();
    let (m, _) = next(&mut aev, "the CLI's broadcast").await;
    assert_eq!((m.msg_id.as_str(), text(&m)), (b.as_str(), "hi"));
    let listed = cli_json(&dir, &["broadcast", "list", "--conv", &id]).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["global"], false);
    let till = listed[0]["valid-till"].as_u64().expect("valid-till");
    assert!(till.abs_diff(m.timestamp + 60_000) < 5_000, "{till}");
    assert_eq!(
        cli_json(&dir, &["broadcast", "delete", &b]).await,
        [json!({})]
    );
    assert!(cli_json(&dir, &["broadcast", "list"]).await.is_empty());
    let rows = cli_json(&dir, &["sys-messages", "--conv", &id, "--from", "alice"]).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["msgId"], sent.msg_id.as_str());
    assert_eq!(rows[0]["data"], "hello News");
}
