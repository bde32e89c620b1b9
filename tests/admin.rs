//! The admin REST API end to end: real HTTP (reqwest) against a real
//! server, with real QUIC clients on the receiving side. Covers the
//! credentials check, JSON errors, system conversations and their
//! subscribers, sending to chosen users, LeanCloud's history parameters and
//! rows, presence and kicking, stats and metrics, a restart, and the
//! `tidings admin` CLI.

mod common;

use std::str::FromStr;

use common::admin::{Admin, Answer, admin_cli, with_query};
use common::hook_server::HookServer;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use tidings::client::{ClientEvent, Events};
use tidings::protocol::{Content, ConvId, ConvKind, Event, Message, SendMessage};

const SC: &str = "/1.2/rtm/service-conversations";

fn sc(id: &str) -> String {
    format!("{SC}/{id}")
}

fn conv(id: &str) -> ConvId {
    ConvId::from_str(id).expect("a conversation id")
}

/// What a freshly logged-in device is sent before `SyncDone`.
async fn synced(ev: &mut Events) -> Vec<Message> {
    let mut out = Vec::new();
    loop {
        match ev.recv_timeout(WAIT).await {
            Some(ClientEvent::Server(Event::Message { msg, .. })) => out.push(msg),
            Some(ClientEvent::Server(Event::SyncDone { .. })) => return out,
            Some(_) => {}
            None => panic!("no SyncDone"),
        }
    }
}

/// Query parameters and the msg ids they must return.
type Case<'a> = (&'a [(&'a str, &'a str)], Vec<&'a str>);

/// The `msg-id`s of history rows, in order.
fn ids(rows: &Value) -> Vec<String> {
    rows.as_array()
        .unwrap_or_else(|| panic!("rows: {rows}"))
        .iter()
        .map(|r| r["msg-id"].as_str().expect("msg-id").to_owned())
        .collect()
}

async fn history(a: &Admin, path: &str, query: &[(&str, String)]) -> Answer {
    let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    a.get(&with_query(path, &pairs)).await
}

// ----------------------------------------------------------- the gate ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_master_key_gets_in_except_probe_and_scrape() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let stats = "/1.2/rtm/stats";
    // X-LC-Sign, as LeanCloud's SDKs send it: md5(timestamp + key).
    let sign = |key: &str, at: u64| {
        use md5::Digest;
        let digest = hex::encode(md5::Md5::digest(format!("{at}{key}")));
        format!("{digest},{at},master")
    };
    let signed = |sign: String| {
        a.bare(Method::GET, stats)
            .header("X-LC-Id", &a.app_id)
            .header("X-LC-Sign", sign)
    };
    let now = tidings::util::now_ms();
    let refused = [
        signed(sign("not-the-master-key", now)),
        signed(sign(&a.master_key, now - 3_600_000)),
        signed(sign(&a.master_key, now).replace(",master", "")),
        a.bare(Method::GET, stats),
        // The app key alone, as a LeanCloud client SDK would send.
        a.bare(Method::GET, stats)
            .header("X-LC-Id", &a.app_id)
            .header("X-LC-Key", &a.master_key),
        a.bare(Method::GET, stats)
            .header("X-LC-Id", &a.app_id)
            .header("X-LC-Key", "not-the-master-key,master"),
        a.bare(Method::GET, stats)
            .header("X-LC-Id", "another-app")
            .header("X-LC-Key", format!("{},master", a.master_key)),
        // No probing of paths without credentials.
        a.bare(Method::GET, "/1.2/rtm/nothing-here"),
        a.bare(Method::POST, SC).json(&json!({"name": "x"})),
    ];
    for req in refused {
        let (code, error) = a.send(req).await.error(401);
        assert_eq!(code, 401);
        assert_eq!(error, "Unauthorized.");
    }
    // Nothing was created by the refused POST.
    assert_eq!(a.get(SC).await.expect(200), json!({"results": []}));

    assert_eq!(a.get(stats).await.status, 200);
    let by_sign = a.send(signed(sign(&a.master_key, now))).await;
    assert_eq!(by_sign.status, 200);
    assert_eq!(a.get("/1.2/rtm/nothing-here").await.error(404).0, 404);
    assert_eq!(
        a.send(a.request(Method::DELETE, stats)).await.error(405).0,
        405
    );
    // The probe and the scrape need no credentials.
    let health = a.send(a.bare(Method::GET, "/healthz")).await;
    let health = health.expect(200);
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health["durableMsAgo"].is_u64(), "{health}");
    let metrics = a.send(a.bare(Method::GET, "/metrics")).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.content_type.starts_with("text/plain"),
        "{}",
        metrics.content_type
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_error_with_leanclouds_code() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let malformed = a
        .request(Method::POST, SC)
        .header("content-type", "application/json")
        .body("{\"name\": ");
    let (code, error) = a.send(malformed).await.error(400);
    assert_eq!(code, 107);
    assert!(error.starts_with("Malformed JSON"), "{error}");
    for body in [
        json!({"name": 5}),
        json!({"nmae": "typo"}),
        json!({"attr": [1, 2]}),
        json!([]),
    ] {
        assert_eq!(a.post(SC, body).await.error(400).0, 4301);
    }
    assert_eq!(
        a.post(SC, json!({"name": "x".repeat(300)}))
            .await
            .error(400)
            .0,
        4301
    );
    // Ids that name no system conversation.
    assert_eq!(a.get(&sc("not-an-id")).await.error(404).0, 4303);
    assert_eq!(a.get(&sc(&"0".repeat(24))).await.error(404).0, 4303);
    let (tom, _tev) = s.connect("Tom").await;
    let chat = tom.create_unique(vec!["Jerry".into()]).await.unwrap();
    let chat_id = chat.id.to_string();
    assert_eq!(a.get(&sc(&chat_id)).await.error(404).0, 4303);
    assert_eq!(
        a.post(
            &format!("{}/subscribers", sc(&chat_id)),
            json!({"client_id": "Spike"})
        )
        .await
        .error(404)
        .0,
        4303
    );

    let id = a.create_service("Bot").await;
    let send = format!("{}/messages", sc(&id));
    let too_many = too_many_ids();
    let cases = [
        (
            json!({"from_client": "Bot", "to_clients": [], "message": "m"}),
            400,
            4401,
        ),
        (
            json!({"from_client": "Bot", "to_clients": too_many, "message": "m"}),
            400,
            4401,
        ),
        (
            json!({"from_client": "", "to_clients": ["a"], "message": "m"}),
            400,
            4401,
        ),
        (
            json!({"from_client": "Bot", "to_clients": ["a"]}),
            400,
            4301,
        ),
        (
            json!({"from_client": "Bot", "to_clients": ["a"], "message": {"_lctype": -1}}),
            400,
            4301,
        ),
        (
            json!({"from_client": "Bot", "to_clients": ["a"], "message": "m", "push_data": 3}),
            400,
            4301,
        ),
        (
            json!({"from_client": "Bot", "to_clients": ["a"], "message": "x".repeat(6000)}),
            413,
            4109,
        ),
    ];
    for (body, status, code) in cases {
        assert_eq!(
            a.post(&send, body.clone()).await.error(status).0,
            code,
            "{body}"
        );
    }
    let messages = format!("/1.2/rtm/conversations/{id}/messages");
    let bad_limit = history(&a, &messages, &[("limit", "many".into())]).await;
    assert_eq!(bad_limit.error(400).0, 4301);
    let unknown = history(&a, &messages, &[("msgid", "nope".into())]).await;
    assert_eq!(unknown.error(404).0, 4404);
    let kick = a
        .post(
            "/1.2/rtm/clients/Tom/kick",
            json!({"reason": "x".repeat(21)}),
        )
        .await;
    assert_eq!(kick.error(400).0, 4301);
    let check = a
        .post(
            "/1.2/rtm/clients/online-check",
            json!({"client_ids": too_many_ids()}),
        )
        .await;
    assert_eq!(check.error(400).0, 4301);
}

fn too_many_ids() -> Vec<String> {
    (0..21).map(|i| format!("c{i}")).collect()
}

// ------------------------------------------- system conversations ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_conversations_are_created_read_updated_listed_and_deleted() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let created = a
        .post(SC, json!({"name": "MathBot", "attr": {"lang": "en"}}))
        .await
        .expect(201);
    let id = created["objectId"].as_str().expect("objectId").to_owned();
    assert_eq!(id.len(), 24);
    let created_at = created["createdAt"].as_str().expect("createdAt");
    assert!(
        created_at.len() == 24 && created_at.ends_with('Z'),
        "{created_at}"
    );
    let got = a.get(&sc(&id)).await.expect(200);
    assert_eq!(got["objectId"], id.as_str());
    assert_eq!(got["name"], "MathBot");
    assert_eq!(got["attr"], json!({"lang": "en"}));
    assert_eq!(got["sys"], true);
    assert_eq!(got["createdAt"], created["createdAt"]);

    let weather = a.create_service("Weather").await;
    let list = a.get(SC).await.expect(200);
    let mut listed: Vec<&str> = list["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["objectId"].as_str().expect("objectId"))
        .collect();
    // Oldest first; two made in the same millisecond go by id.
    let mut both = [id.as_str(), weather.as_str()];
    both.sort();
    listed.sort();
    assert_eq!(listed, both);
    let by_name = a
        .get(&with_query(SC, &[("where", r#"{"name":"Weather"}"#)]))
        .await
        .expect(200);
    assert_eq!(by_name["results"][0]["objectId"], weather.as_str());
    assert_eq!(by_name["results"].as_array().map(Vec::len), Some(1));
    let paged = a
        .get(&with_query(SC, &[("skip", "1"), ("limit", "1")]))
        .await
        .expect(200);
    assert_eq!(paged["results"].as_array().map(Vec::len), Some(1));
    assert_eq!(paged["results"][0], list["results"][1]);

    let up = a
        .put(&sc(&id), json!({"name": "Calc", "attr.level": 2}))
        .await
        .expect(200);
    assert_eq!(up["objectId"], id.as_str());
    assert!(up["updatedAt"].is_string(), "{up}");
    let got = a.get(&sc(&id)).await.expect(200);
    assert_eq!(got["name"], "Calc");
    assert_eq!(got["attr"], json!({"lang": "en", "level": 2}));
    a.put(&sc(&id), json!({"attr": {"x": 1}})).await.expect(200);
    assert_eq!(a.get(&sc(&id)).await.expect(200)["attr"], json!({"x": 1}));
    assert_eq!(a.put(&sc(&id), json!({})).await.error(400).0, 4301);
    assert_eq!(
        a.put(&sc(&id), json!({"m": ["Tom"]})).await.error(400).0,
        4301
    );

    // Clients see it as a system conversation, and cannot make one.
    let (tom, _tev) = s.connect("Tom").await;
    let info = tom.get_conversation(conv(&id)).await.unwrap();
    assert_eq!(info.kind, ConvKind::System);
    assert_eq!(info.name.as_deref(), Some("Calc"));
    let mut own = group(&[]);
    own.kind = ConvKind::System;
    assert_eq!(code_of(tom.create_conversation(own).await), 4301);

    assert_eq!(a.delete(&sc(&id)).await.expect(200), json!({}));
    assert_eq!(a.get(&sc(&id)).await.error(404).0, 4303);
    assert_eq!(a.delete(&sc(&id)).await.error(404).0, 4303);
    let list = a.get(SC).await.expect(200);
    assert_eq!(list["results"].as_array().map(Vec::len), Some(1));
    assert_eq!(code_of(tom.get_conversation(conv(&id)).await), 4303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_are_members_listed_by_client_id() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.create_service("News").await;
    let subs = format!("{}/subscribers", sc(&id));
    for c in ["carol", "alice", "bob", "alice"] {
        a.subscribe(&id, c).await;
    }
    let count = a.get(&format!("{subs}/count")).await.expect(200);
    assert_eq!(count, json!({"count": 3}));
    let all = a.get(&subs).await.expect(200);
    let rows = all.as_array().expect("an array");
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["subscriber"].as_str().expect("subscriber"))
        .collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    for r in rows {
        assert_eq!(r["conv_id"], id.as_str());
        assert!(r["timestamp"].as_u64().is_some_and(|t| t > 0), "{r}");
    }
    let page = a
        .get(&with_query(&subs, &[("limit", "2")]))
        .await
        .expect(200);
    assert_eq!(page.as_array().map(Vec::len), Some(2));
    let next = a
        .get(&with_query(&subs, &[("limit", "2"), ("client_id", "bob")]))
        .await
        .expect(200);
    assert_eq!(next[0]["subscriber"], "carol");
    assert_eq!(next.as_array().map(Vec::len), Some(1));

    // A subscriber is a member: the conversation is in its list.
    let (alice, _aev) = s.connect("alice").await;
    let mine = alice.conversations(10).await.unwrap();
    assert!(
        mine.iter()
            .any(|c| c.id == conv(&id) && c.kind == ConvKind::System),
        "{mine:?}"
    );

    assert_eq!(
        a.delete(&format!("{subs}/bob")).await.expect(200),
        json!({})
    );
    assert_eq!(
        a.delete(&format!("{subs}/bob")).await.expect(200),
        json!({})
    );
    let count = a.get(&format!("{subs}/count")).await.expect(200);
    assert_eq!(count, json!({"count": 2}));
    assert_eq!(
        a.post(&subs, json!({"client_id": ""})).await.error(400).0,
        4301
    );
    assert_eq!(
        a.post(&subs, json!({"client": "x"})).await.error(400).0,
        4301
    );
    // A client named like the count endpoint is still a client.
    a.subscribe(&id, "count").await;
    let (m, _) = a.send_to(&id, "News", &["count"], "for count").await;
    let got = a.get(&format!("{subs}/count/messages")).await.expect(200);
    assert_eq!(ids(&got), [m.as_str()]);
    assert_eq!(
        a.delete(&format!("{subs}/count")).await.expect(200),
        json!({})
    );
    let count = a.get(&format!("{subs}/count")).await.expect(200);
    assert_eq!(count, json!({"count": 2}));
}

// ---------------------------------------------------------- sending ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_reaches_exactly_the_chosen_users_online_and_offline() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a
        .service_with("MathBot", &["alice", "bob", "carol", "dave"])
        .await;
    let (_alice, mut aev) = s.connect("alice").await;
    let (_bob, mut bev) = s.connect("bob").await;
    let (_carol, mut cev) = s.connect("carol").await;
    // The sender's own devices get a copy, as on LeanCloud.
    let (_bot, mut botev) = s.connect("MathBot").await;

    let (m1, ts1) = a
        .send_to(&id, "MathBot", &["alice", "bob", "dave"], "1+1=2")
        .await;
    for ev in [&mut aev, &mut bev, &mut botev] {
        let m = ev.next_message(WAIT).await.expect("the message");
        assert_eq!(m.msg_id, m1);
        assert_eq!(m.conv, conv(&id));
        assert_eq!(m.from, "MathBot");
        assert_eq!(m.timestamp, ts1);
        assert_eq!(text(&m), "1+1=2");
        assert_eq!(m.seq, 1);
        assert!(!m.transient);
    }
    // Carol was not among them: the first message she sees is her own.
    let (m2, _) = a.send_to(&id, "MathBot", &["carol"], "hi carol").await;
    assert_eq!(cev.next_message(WAIT).await.expect("carol's").msg_id, m2);
    let (m3, _) = a.send_to(&id, "MathBot", &["bob"], "2+2=4").await;
    assert_eq!(bev.next_message(WAIT).await.expect("bob's").msg_id, m3);
    let (m4, _) = a.send_to(&id, "MathBot", &["alice"], "3+3=6").await;
    assert_eq!(aev.next_message(WAIT).await.expect("alice's").msg_id, m4);

    // Dave was offline: his next login brings exactly what was his.
    let (_dave, mut dev) = s.connect_raw(s.options("dave")).await;
    let got: Vec<String> = synced(&mut dev)
        .await
        .into_iter()
        .map(|m| m.msg_id)
        .collect();
    assert_eq!(got, std::slice::from_ref(&m1));

    // History: the conversation's, newest first, and each subscriber's.
    let rows = a
        .get(&format!("/1.2/rtm/conversations/{id}/messages"))
        .await
        .expect(200);
    assert_eq!(ids(&rows), [&*m4, &*m3, &*m2, &*m1]);
    assert_eq!(
        rows[3],
        json!({
            "timestamp": ts1,
            "conv-id": id,
            "data": "1+1=2",
            "from": "MathBot",
            "msg-id": m1,
            "is-conv": true,
            "is-room": false,
            "to": id,
            "bin": false,
            "from-ip": "127.0.0.1",
        })
    );
    let of = |c: &str| format!("{}/subscribers/{c}/messages", sc(&id));
    assert_eq!(ids(&a.get(&of("bob")).await.expect(200)), [&*m3, &*m1]);
    assert_eq!(ids(&a.get(&of("alice")).await.expect(200)), [&*m4, &*m1]);
    assert_eq!(ids(&a.get(&of("carol")).await.expect(200)), [&*m2]);
    assert_eq!(
        ids(&a.get(&of("zed")).await.expect(200)),
        Vec::<String>::new()
    );
    assert_eq!(
        a.get(&format!("{}/subscribers/bob/messages", sc(&"0".repeat(24))))
            .await
            .error(404)
            .0,
        4303
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_sends_reach_only_who_is_online_and_are_not_stored() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.service_with("Ticker", &["alice", "dave"]).await;
    let (_alice, mut aev) = s.connect("alice").await;
    let (_ticker, mut tev) = s.connect("Ticker").await;
    let send = format!("{}/messages", sc(&id));
    let sent = a
        .post(
            &send,
            json!({
                "from_client": "Ticker",
                "to_clients": ["alice", "dave"],
                "message": "tick",
                "transient": true,
                "push_data": {"alert": "tick"},
                "priority": "high",
            }),
        )
        .await
        .expect(200);
    let m = aev.next_message(WAIT).await.expect("alice gets it");
    assert_eq!(m.msg_id, sent["msg-id"].as_str().expect("msg-id"));
    assert_eq!(m.timestamp, sent["timestamp"].as_u64().expect("timestamp"));
    assert!(m.transient);
    assert_eq!(m.seq, 0);
    assert_eq!(text(&m), "tick");
    // The sender's own devices get a copy unless no_sync says otherwise.
    let copy = tev.next_message(WAIT).await.expect("the sender's copy");
    assert_eq!(copy.msg_id, m.msg_id);
    let quiet = a
        .post(
            &send,
            json!({
                "from_client": "Ticker",
                "to_clients": ["alice"],
                "message": "tock",
                "transient": true,
                "no_sync": true,
            }),
        )
        .await
        .expect(200);
    let m = aev.next_message(WAIT).await.expect("alice gets it");
    assert_eq!(m.msg_id, quiet["msg-id"].as_str().expect("msg-id"));
    let (stored, _) = a.send_to(&id, "Ticker", &["alice"], "stored").await;
    let next = tev.next_message(WAIT).await.expect("the stored copy");
    assert_eq!(next.msg_id, stored, "no_sync kept the transient one away");
    let rows = a
        .get(&format!("/1.2/rtm/conversations/{id}/messages"))
        .await
        .expect(200);
    assert_eq!(ids(&rows), [stored.as_str()]);
    let (_dave, mut dev) = s.connect_raw(s.options("dave")).await;
    assert!(synced(&mut dev).await.is_empty());
}

// ---------------------------------------------------------- history ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_follows_leanclouds_parameters() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, _jev) = s.connect("Jerry").await;
    let c = tom.create_unique(vec!["Jerry".into()]).await.unwrap();
    let mut sent = Vec::new();
    for t in ["one", "two", "three"] {
        sent.push(tom.send_text(c.id, t).await.unwrap());
    }
    let (id1, id2, id3) = (
        sent[0].msg_id.as_str(),
        sent[1].msg_id.as_str(),
        sent[2].msg_id.as_str(),
    );
    let (t1, t3) = (sent[0].timestamp, sent[2].timestamp);
    let path = format!("/1.2/rtm/conversations/{}/messages", c.id);
    let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let run = |query: Vec<(String, String)>| {
        let a = &a;
        let path = path.clone();
        async move {
            let query: Vec<(&str, String)> =
                query.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            ids(&history(a, &path, &query).await.expect(200))
        }
    };
    let (t1_text, t3_text) = (t1.to_string(), t3.to_string());
    let (t1s, t3s) = (t1_text.as_str(), t3_text.as_str());
    // LeanCloud's table: three messages id1..id3 sent at t1 < t2 < t3.
    let table: [Case; 6] = [
        (
            &[
                ("timestamp", t3s),
                ("msgid", id3),
                ("till_timestamp", t1s),
                ("till_msgid", id1),
            ],
            vec![id2],
        ),
        (
            &[
                ("timestamp", t3s),
                ("msgid", id3),
                ("till_timestamp", t1s),
                ("till_msgid", id1),
                ("include_start", "true"),
            ],
            vec![id3, id2],
        ),
        (
            &[
                ("timestamp", t3s),
                ("msgid", id3),
                ("till_timestamp", t1s),
                ("till_msgid", id1),
                ("include_stop", "true"),
            ],
            vec![id2, id1],
        ),
        (
            &[
                ("timestamp", t1s),
                ("msgid", id1),
                ("till_timestamp", t3s),
                ("till_msgid", id3),
                ("reversed", "true"),
            ],
            vec![id2],
        ),
        (
            &[
                ("timestamp", t1s),
                ("msgid", id1),
                ("till_timestamp", t3s),
                ("till_msgid", id3),
                ("reversed", "true"),
                ("include_start", "true"),
            ],
            vec![id1, id2],
        ),
        (
            &[
                ("timestamp", t1s),
                ("msgid", id1),
                ("till_timestamp", t3s),
                ("till_msgid", id3),
                ("reversed", "true"),
                ("include_stop", "true"),
            ],
            vec![id2, id3],
        ),
    ];
    for (params, want) in table {
        assert_eq!(run(q(params)).await, want, "{params:?}");
    }
    assert_eq!(run(q(&[])).await, [id3, id2, id1]);
    assert_eq!(run(q(&[("reversed", "true")])).await, [id1, id2, id3]);
    assert_eq!(run(q(&[("limit", "2")])).await, [id3, id2]);
    assert_eq!(
        run(q(&[("limit", "2"), ("reversed", "true")])).await,
        [id1, id2]
    );
    // A msg id alone is enough; a bare timestamp stands for its millisecond.
    assert_eq!(run(q(&[("msgid", id3)])).await, [id2, id1]);
    let after_t3 = (t3 + 1).to_string();
    assert_eq!(run(q(&[("timestamp", &after_t3)])).await, [id3, id2, id1]);
    assert!(run(q(&[("timestamp", t1s)])).await.is_empty());
    assert!(
        run(q(&[("timestamp", t3s), ("reversed", "true")]))
            .await
            .is_empty()
    );
    // An id we do not know, with its timestamp, falls back to the timestamp.
    assert_eq!(
        run(q(&[("msgid", "imported-id"), ("timestamp", &after_t3)])).await,
        [id3, id2, id1]
    );

    // Binary content comes back base64 with bin: true; QUIC senders' address.
    let mut bin = SendMessage::text(c.id, "");
    bin.content = Content::Binary(vec![0, 1, 2]);
    let b = jerry.send(bin).await.unwrap();
    let rows = history(&a, &path, &[("limit", "1".into())])
        .await
        .expect(200);
    assert_eq!(rows[0]["msg-id"], b.msg_id.as_str());
    assert_eq!(rows[0]["data"], "AAEC");
    assert_eq!(rows[0]["bin"], true);
    assert_eq!(rows[0]["from"], "Jerry");
    assert_eq!(rows[0]["from-ip"], "127.0.0.1");
    assert_eq!(rows[0]["to"], c.id.to_string());

    // A client's sent messages, across its conversations.
    let other = tom.create_unique(vec!["Spike".into()]).await.unwrap();
    let t4 = tom.send_text(other.id, "four").await.unwrap();
    let toms = a.get("/1.2/rtm/clients/Tom/messages").await.expect(200);
    assert_eq!(ids(&toms), [t4.msg_id.as_str(), id3, id2, id1]);
    let jerrys = a.get("/1.2/rtm/clients/Jerry/messages").await.expect(200);
    assert_eq!(ids(&jerrys), [b.msg_id.as_str()]);
    let newest = history(
        &a,
        "/1.2/rtm/clients/Tom/messages",
        &[("limit", "1".into())],
    )
    .await;
    assert_eq!(ids(&newest.expect(200)), [t4.msg_id.as_str()]);
    let oldest = history(
        &a,
        "/1.2/rtm/clients/Tom/messages",
        &[("reversed", "true".into()), ("limit", "2".into())],
    )
    .await;
    assert_eq!(ids(&oldest.expect(200)), [id1, id2]);
    assert_eq!(
        a.get("/1.2/rtm/conversations/000000000000000000000000/messages")
            .await
            .error(404)
            .0,
        4303
    );
}

/// The next event `ev` gets that `pick` accepts.
async fn event<T>(ev: &mut Events, what: &str, pick: impl FnMut(&Event) -> Option<T>) -> T {
    let mut pick = pick;
    ev.wait_for(WAIT, |e| match e {
        ClientEvent::Server(e) => pick(e),
        _ => None,
    })
    .await
    .unwrap_or_else(|| panic!("no {what} within {WAIT:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_edits_and_recalls_in_the_senders_name() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.service_with("Bot", &["alice"]).await;
    let (_alice, mut aev) = s.connect("alice").await;
    let (m, ts) = a.send_to(&id, "Bot", &["alice"], "helo").await;
    let path = format!("{}/messages/{m}", sc(&id));
    let body =
        |from: &str, ts: u64| json!({"from_client": from, "message": "hello", "timestamp": ts});
    // Only in the sender's name, at the message's own timestamp.
    assert_eq!(a.put(&path, body("alice", ts)).await.error(400).0, 4403);
    assert_eq!(a.put(&path, body("Bot", ts + 1)).await.error(404).0, 4404);
    let other = format!("{}/messages/nonsense", sc(&id));
    assert_eq!(a.put(&other, body("Bot", ts)).await.error(404).0, 4404);
    assert_eq!(
        a.put(&path, json!({"from_client": "Bot"}))
            .await
            .error(400)
            .0,
        4301,
        "a missing message is bad JSON"
    );
    let unauthorised = a
        .send(a.bare(Method::PUT, &path).json(&body("Bot", ts)))
        .await;
    assert_eq!(unauthorised.status, 401);
    let ans = a.put(&path, body("Bot", ts)).await.expect(200);
    assert_eq!(
        (ans["msg-id"].as_str(), ans["timestamp"].as_u64()),
        (Some(m.as_str()), Some(ts))
    );
    let patched = ans["patch-timestamp"].as_u64().expect("patch-timestamp");
    assert!(patched >= ts);
    let updated = event(&mut aev, "the edit", |e| match e {
        Event::MessageUpdated { msg, .. } if msg.msg_id == m => Some(msg.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (text(&updated), updated.updated_at),
        ("hello", Some(patched))
    );
    // Recall; the history keeps LeanCloud's recalled marker.
    let recall = format!("{path}/recall");
    assert_eq!(
        a.put(&recall, json!({"from_client": "Bot"}))
            .await
            .expect(200)["msg-id"],
        m.as_str()
    );
    let recalled = event(&mut aev, "the recall", |e| match e {
        Event::MessageRecalled { msg, .. } if msg.msg_id == m => Some(msg.clone()),
        _ => None,
    })
    .await;
    assert!(recalled.recalled);
    let rows = a
        .get(&format!("/1.2/rtm/conversations/{id}/messages"))
        .await
        .expect(200);
    assert_eq!(rows[0]["data"], tidings::protocol::RECALLED_CONTENT);
    assert_eq!(
        a.put(&recall, json!({"from_client": "Bot"}))
            .await
            .error(404)
            .0,
        4404
    );
    assert_eq!(a.put(&path, body("Bot", ts)).await.error(404).0, 4404);

    // Any conversation under /1.2/rtm/conversations; not under the
    // service path unless it is a system conversation.
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let c = tom.create_unique(vec!["Jerry".into()]).await.unwrap();
    let sent = tom.send_text(c.id, "teh cat").await.unwrap();
    let wrong = format!("{}/messages/{}", sc(&c.id.to_string()), sent.msg_id);
    assert_eq!(
        a.put(&wrong, json!({"from_client": "Tom", "message": "x"}))
            .await
            .error(404)
            .0,
        4303
    );
    let path = format!("/1.2/rtm/conversations/{}/messages/{}", c.id, sent.msg_id);
    a.put(&path, json!({"from_client": "Tom", "message": "the cat"}))
        .await
        .expect(200);
    let updated = event(&mut jev, "Tom's edited message", |e| match e {
        Event::MessageUpdated { msg, .. } if msg.msg_id == sent.msg_id => Some(msg.clone()),
        _ => None,
    })
    .await;
    assert_eq!(text(&updated), "the cat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_app_history_and_unread_counts() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.service_with("Bot", &["alice", "bob"]).await;
    let (m, _) = a.send_to(&id, "Bot", &["alice"], "for alice").await;
    let (bob, _bev) = s.connect("bob").await;
    let from_bob = bob.send_text(conv(&id), "bob to the app").await.unwrap();
    let (tom, _tev) = s.connect("Tom").await;
    let c = tom.create_unique(vec!["Jerry".into()]).await.unwrap();
    let from_tom = tom.send_text(c.id, "hi Jerry").await.unwrap();

    // Every conversation's messages, newest first.
    let all = ids(&a.get("/1.2/rtm/messages").await.expect(200));
    let mut want = vec![m.clone(), from_bob.msg_id.clone(), from_tom.msg_id.clone()];
    want.sort();
    let mut got = all.clone();
    got.sort();
    assert_eq!(got, want);
    let rows = a.get("/1.2/rtm/messages").await.expect(200);
    let times: Vec<u64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["timestamp"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(
        ids(
            &history(&a, "/1.2/rtm/messages", &[("reversed", "true".into())])
                .await
                .expect(200)
        ),
        reversed
    );
    assert_eq!(
        ids(&history(&a, "/1.2/rtm/messages", &[("limit", "1".into())])
            .await
            .expect(200)),
        all[..1]
    );
    assert_eq!(
        ids(
            &history(&a, "/1.2/rtm/messages", &[("msgid", all[0].clone())])
                .await
                .expect(200)
        ),
        all[1..]
    );

    // Unread counts: a subscriber's own view of its system conversation.
    let count = |client: &str, conv: Option<String>| {
        let mut q = vec![];
        if let Some(c) = conv {
            q.push(("conv_id", c));
        }
        let path = format!("/1.2/rtm/clients/{client}/unread-count");
        let a = &a;
        async move {
            history(a, &path, &q).await.expect(200)["count"]
                .as_u64()
                .expect("count")
        }
    };
    assert_eq!(
        count("alice", None).await,
        1,
        "bob's message is not alice's"
    );
    assert_eq!(count("bob", None).await, 0, "his own message is read");
    assert_eq!(count("Jerry", None).await, 1);
    assert_eq!(count("Jerry", Some(c.id.to_string())).await, 1);
    assert_eq!(count("Jerry", Some(id.clone())).await, 0);
    assert_eq!(count("nobody", None).await, 0);
    assert_eq!(
        a.get("/1.2/rtm/clients/Jerry/unread-count?conv_id=zzz")
            .await
            .error(404)
            .0,
        4303
    );
}

// ------------------------------------------------- presence and kick ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_checks_and_kick_closes_every_device_with_4115() {
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let (_tom, mut tev) = s.connect("Tom").await;
    let mut phone = s.options("Tom");
    phone.device_id = Some("phone".into());
    let (_tom2, mut tev2) = s.connect_with(phone).await;

    let online = a.get("/1.2/rtm/clients/Tom/online").await.expect(200);
    assert_eq!(online["online"], true);
    let mut devices: Vec<&str> = online["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["device_id"].as_str().expect("device_id"))
        .collect();
    devices.sort();
    assert_eq!(devices, ["default", "phone"]);
    let nobody = a.get("/1.2/rtm/clients/Nobody/online").await.expect(200);
    assert_eq!(
        nobody,
        json!({"client_id": "Nobody", "online": false, "devices": []})
    );
    for path in [
        "/1.2/rtm/clients/online-check",
        "/1.2/rtm/clients/check-online",
    ] {
        let check = a
            .post(path, json!({"client_ids": ["Tom", "Nobody"]}))
            .await
            .expect(200);
        assert_eq!(check, json!({"results": ["Tom"]}));
    }

    let kicked = a
        .post("/1.2/rtm/clients/Tom/kick", json!({"reason": "bye"}))
        .await
        .expect(200);
    assert_eq!(kicked, json!({}));
    for ev in [&mut tev, &mut tev2] {
        let closing = ev
            .wait_for(WAIT, |e| match e {
                ClientEvent::Server(Event::Closing { code, reason }) => {
                    Some((*code, reason.clone()))
                }
                _ => None,
            })
            .await;
        assert_eq!(closing, Some((4115, "bye".to_owned())));
        let closed = ev
            .wait_for(WAIT, |e| match e {
                ClientEvent::Closed { code, .. } => Some(*code),
                _ => None,
            })
            .await;
        assert_eq!(closed, Some(Some(4115)));
    }
    let hub = s.running().hub().clone();
    eventually("Tom offline", || !hub.registry.is_online("Tom")).await;
    let after = a.get("/1.2/rtm/clients/Tom/online").await.expect(200);
    assert_eq!(after["online"], false);
    // Kicking someone offline, with no body at all, is fine.
    let again = a
        .send(a.request(Method::POST, "/1.2/rtm/clients/Tom/kick"))
        .await;
    assert_eq!(again.expect(200), json!({}));
}

// --------------------------------------------------- stats, metrics ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_metrics_count_what_happened() {
    let hooks = HookServer::start().await;
    let url = hooks.url();
    let s = TestServer::start_with(|c| c.hooks.base_url = Some(url)).await;
    let a = Admin::of(&s);
    let (tom, _tev) = s.connect("Tom").await;
    let c = tom.create_unique(vec!["Jerry".into()]).await.unwrap();
    tom.send_text(c.id, "hi").await.unwrap();

    let stats = a.get("/1.2/rtm/stats").await.expect(200);
    let r = &stats["result"];
    assert_eq!(r["online_user_count"], 1, "{stats}");
    assert!(r["user_count_today"].is_u64(), "{stats}");
    assert_eq!(r["conversations"], 1, "{stats}");

    let metrics = a.send(a.bare(Method::GET, "/metrics")).await;
    let text = metrics.body.as_str().expect("text").to_owned();
    for line in [
        "tidings_connections 1\n",
        "tidings_conversations 1\n",
        "tidings_hook_calls_total{hook=\"_messageReceived\"} 1\n",
        "tidings_hook_calls_total{hook=\"_conversationStart\"} 1\n",
        "tidings_hook_failures_total{hook=\"_messageReceived\"} 0\n",
        "# TYPE tidings_delivery_latency_seconds histogram\n",
        "# TYPE tidings_store_flush_seconds histogram\n",
        "# TYPE tidings_logins_total counter\n",
        "# TYPE tidings_messages_in_total counter\n",
        "# TYPE tidings_messages_out_total counter\n",
        "# TYPE tidings_hook_outbox_depth gauge\n",
        "tidings_hook_latency_seconds{hook=\"_messageReceived\",quantile=\"0.99\"}",
        "tidings_hook_outbox_records ",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    // Every sample line is `name{labels} value` with a number.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let value = l.rsplit(' ').next().expect("a value");
        assert!(value.parse::<f64>().is_ok(), "{l}");
    }
}

/// The session and pipeline feed `tidings::metrics::METRICS`: logins,
/// messages in and out, flush and delivery timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_counters_move() {
    use tidings::metrics::METRICS;
    let s = TestServer::start().await;
    let a = Admin::of(&s);
    let logins = METRICS.logins();
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let c = tom.create_unique(vec!["Jerry".into()]).await.unwrap();
    tom.send_text(c.id, "hi").await.unwrap();
    jev.next_message(WAIT).await.expect("delivered");
    assert!(METRICS.logins() >= logins + 2);
    assert!(METRICS.users_today() >= 2);
    assert!(METRICS.flush.count() >= 1);
    assert!(METRICS.delivery.count() >= 1);
    let stats = a.get("/1.2/rtm/stats").await.expect(200);
    assert!(stats["result"]["user_count_today"].as_u64() >= Some(2));
    let text = a
        .get("/metrics")
        .await
        .body
        .as_str()
        .unwrap_or("")
        .to_owned();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(value("tidings_messages_in_total") >= 1.0, "{text}");
    assert!(value("tidings_messages_out_total") >= 1.0, "{text}");
}

// ------------------------------------------------ lifecycle and CLI ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_conversations_survive_a_restart_and_the_api_can_be_off() {
    let mut s = TestServer::start().await;
    let a = Admin::of(&s);
    let id = a.service_with("Bot", &["alice"]).await;
    let (m1, _) = a
        .send_to(&id, "Bot", &["alice"], "before the restart")
        .await;
    let file = std::fs::read_to_string(s.data_dir().join(tidings::admin::ADDR_FILE)).unwrap();
    assert_eq!(Some(file.parse().unwrap()), s.running().admin_addr());

    s.restart().await;
    let a = Admin::of(&s);
    assert_eq!(a.get(&sc(&id)).await.expect(200)["name"], "Bot");
    let subs = a.get(&format!("{}/subscribers", sc(&id))).await.expect(200);
    assert_eq!(subs[0]["subscriber"], "alice");
    let (_alice, mut aev) = s.connect_raw(s.options("alice")).await;
    let got: Vec<String> = synced(&mut aev)
        .await
        .into_iter()
        .map(|m| m.msg_id)
        .collect();
    assert_eq!(got, std::slice::from_ref(&m1));
    // Deleting removes the record, the subscriptions and the history from
    // the store, so nothing of it comes back at the next start. (Checked in
    // the store rather than by a second restart: sled releases its file
    // lock a moment after the last handle goes, which a quick reopen in the
    // same process can lose to.)
    a.delete(&sc(&id)).await.expect(200);
    let store = &s.running().hub().store;
    let cid = conv(&id);
    assert!(!store.conversations().unwrap().iter().any(|r| r.id == cid));
    assert!(store.memberships_of("alice").unwrap().is_empty());
    assert!(store.subscriptions(cid, None, 10).unwrap().is_empty());
    assert!(store.last_message(cid).unwrap().is_none());
    assert_eq!(a.get(&sc(&id)).await.error(404).0, 4303);
    let (alice, _aev) = s.connect("alice").await;
    assert!(alice.conversations(10).await.unwrap().is_empty());

    let off = TestServer::start_with(|c| c.admin.enabled = false).await;
    assert_eq!(off.running().admin_addr(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_the_api_from_the_data_dir() {
    let s = TestServer::start().await;
    let dir = s.data_dir();
    let json = |line: &str| -> Value { serde_json::from_str(line.trim()).expect("a JSON line") };

    let (ok, out, err) = admin_cli(
        &dir,
        &["service", "create", "--name", "Bot", "--attr", r#"{"v":1}"#],
    )
    .await;
    assert!(ok, "{err}");
    let id = json(&out)["objectId"]
        .as_str()
        .expect("objectId")
        .to_owned();
    let (ok, out, err) = admin_cli(&dir, &["service", "subscribe", &id, "alice", "bob"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    let (ok, out, err) = admin_cli(&dir, &["service", "subscribers", &id]).await;
    assert!(ok, "{err}");
    let subs: Vec<String> = out
        .lines()
        .map(|l| {
            json(l)["subscriber"]
                .as_str()
                .expect("subscriber")
                .to_owned()
        })
        .collect();
    assert_eq!(subs, ["alice", "bob"]);
    let (_alice, mut aev) = s.connect("alice").await;
    let (ok, out, err) = admin_cli(
        &dir,
        &[
            "service", "send", &id, "--from", "Bot", "--to", "alice", "hello",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let msg_id = json(&out)["msg-id"].as_str().expect("msg-id").to_owned();
    let m = aev.next_message(WAIT).await.expect("alice gets it");
    assert_eq!((m.msg_id.as_str(), text(&m)), (msg_id.as_str(), "hello"));
    let (ok, out, err) = admin_cli(&dir, &["history", "--conv", &id]).await;
    assert!(ok, "{err}");
    assert_eq!(json(&out)["data"], "hello");
    let (ok, out, err) = admin_cli(&dir, &["unread", "alice", "--conv", &id]).await;
    assert!(ok, "{err}");
    assert_eq!(json(&out), json!({"count": 1}));
    let (ok, out, err) = admin_cli(
        &dir,
        &[
            "edit",
            "--conv",
            &id,
            "--from",
            "Bot",
            &msg_id,
            "hello again",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(json(&out)["msg-id"], msg_id.as_str());
    let (ok, out, err) = admin_cli(&dir, &["history", "--all", "--limit", "1"]).await;
    assert!(ok, "{err}");
    assert_eq!(json(&out)["data"], "hello again");
    let (ok, _, err) = admin_cli(&dir, &["recall", "--conv", &id, "--from", "Bot", &msg_id]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = admin_cli(&dir, &["history", "--all", "--limit", "1"]).await;
    assert!(ok, "{err}");
    assert_eq!(json(&out)["data"], tidings::protocol::RECALLED_CONTENT);
    let (ok, out, err) = admin_cli(&dir, &["online", "alice"]).await;
    assert!(ok, "{err}");
    assert_eq!(json(&out)["online"], true);
    let (ok, out, err) = admin_cli(&dir, &["stats"]).await;
    assert!(ok, "{err}");
    assert!(json(&out)["result"]["conversations"].is_u64(), "{out}");
    let (ok, out, err) = admin_cli(&dir, &["metrics"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("tidings_connections"), "{out}");

    let (ok, _, err) = admin_cli(&dir, &["service", "get", &"0".repeat(24)]).await;
    assert!(!ok);
    assert!(err.contains("404") && err.contains("4303"), "{err}");
    let (ok, _, err) = admin_cli(&dir, &["--master-key", "wrong-wrong-wrong", "stats"]).await;
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
    let (ok, out, err) = admin_cli(&dir, &["service", "delete", &id]).await;
    assert!(ok, "{err}");
    assert_eq!(json(&out), json!({}));
}
