//! Offline push end to end (issue 16): a real server, real QUIC and
//! LeanCloud-door clients, devices registered through the installation
//! REST API and bound at login, and local HTTP/2-over-TLS stand-ins for
//! APNs, Google OAuth + FCM and a push gateway (`common/push_mock.rs`)
//! that check what Apple's and Google's servers check. Loopback only.
//!
//! To show that something did NOT push, each test first waits for a later
//! push that must happen (an ordering fence), then looks at what arrived.

mod common;
#[path = "common/lc.rs"]
#[allow(dead_code)]
mod lc;
#[path = "common/push_env.rs"]
mod push_env;
#[path = "common/push_mock.rs"]
mod push_mock;

use std::time::{Duration, Instant};

use common::hook_server::{Answer, HookServer};
use common::*;
use push_env::*;
use push_mock::{Recorded, Reply, Route};
use serde_json::{Value, json};
use tidings::client::{Client, ClientEvent};
use tidings::config::{Config, HookOverride, WebhookFormat};
use tidings::protocol::{ConvId, ConvKind, CreateConversation, Event, SendMessage};

/// A message with `pushData` (LeanCloud's SDK option), as JSON text.
fn with_data(conv: ConvId, text: &str, data: Value) -> SendMessage {
    let mut m = SendMessage::text(conv, text);
    m.push_data = Some(data.to_string());
    m
}

async fn conv_of(c: &Client, members: &[&str]) -> ConvId {
    c.create_conversation(group(members))
        .await
        .expect("conversation")
        .id
}

/// The `label` custom key of each push (it rides at the top level of an
/// APNs body), sorted.
fn labels(rs: &[Recorded]) -> Vec<String> {
    let mut v: Vec<String> = rs
        .iter()
        .map(|r| r.json()["label"].as_str().unwrap_or("<none>").to_owned())
        .collect();
    v.sort();
    v
}

fn alert(r: &Recorded) -> Value {
    r.json()["aps"]["alert"].clone()
}

/// The one push of `rs` whose `aps.alert` is `text`.
fn by_alert(rs: Vec<Recorded>, text: &str) -> Recorded {
    let mut found: Vec<Recorded> = rs.into_iter().filter(|r| alert(r) == text).collect();
    assert_eq!(found.len(), 1, "one push with alert {text:?}");
    found.remove(0)
}

/// `_receiversOffline` (only) goes to `hooks`.
fn offline_hook_to(hooks: &HookServer) -> impl FnOnce(&mut Config) + use<> {
    let url = hooks.endpoint("push", "_receiversOffline");
    move |c: &mut Config| {
        c.hooks.hook.insert(
            "_receiversOffline".into(),
            HookOverride {
                urls: vec![url],
                ..HookOverride::default()
            },
        );
    }
}

// ------------------------------------------------ who, what, badge ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_member_gets_one_push_with_apples_headers_the_template_and_a_counted_badge() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    let (bob_t, alice_t, carol_t) = (token(1), token(2), token(3));
    let bob_dev = env.offline_ios("bob", &bob_t).await;
    env.offline_android("erin", "fcm-erin").await;
    // The sender and an online member have devices too: they get nothing.
    env.register_ios(&alice_t, TEAM).await;
    env.register_ios(&carol_t, TEAM).await;
    let mut o = env.s.options("alice");
    o.device_token = Some(alice_t.clone());
    let (alice, _aev) = env.s.connect_with(o).await;
    let mut o = env.s.options("carol");
    o.device_token = Some(carol_t.clone());
    let (_carol, _cev) = env.s.connect_with(o).await;
    let conv = conv_of(&alice, &["bob", "carol", "erin"]).await;

    let before = now_secs();
    alice.send_text(conv, "hello").await.unwrap();
    let got = apns_n(&env.apns, &bob_t, 1).await;
    let after = now_secs();
    let r = &got[0];
    assert_eq!(r.route, Route::Apns, "production, not sandbox");
    assert_eq!(r.kid.as_deref(), Some(KID), "the first team signs");
    assert_eq!(r.header("apns-topic"), Some(TOPIC));
    assert_eq!(r.header("apns-push-type"), Some("alert"));
    assert_eq!(r.header("apns-priority"), Some("10"));
    let exp: u64 = r
        .header("apns-expiration")
        .expect("apns-expiration")
        .parse()
        .expect("a number");
    assert!(
        (before + 604_800..=after + 604_800).contains(&exp),
        "apns-expiration {exp} is not now + 7 days ({before}..{after})"
    );
    let body = r.json();
    let text = format!("New message from alice in {conv}");
    assert_eq!(body["aps"]["alert"], text.as_str(), "{body}");
    assert_eq!(body["aps"]["badge"], 1, "{body}");
    let at: u64 = body["at"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("${{timestamp}} not filled: {body}"));
    assert!(
        (before..=after).contains(&at),
        "{at} not in {before}..{after}"
    );

    // Android: FCM v1 in the shape LeanCloud's Android SDK reads.
    let f = fcm_n(&env.fcm, "fcm-erin", 1).await;
    let m = &f[0].json()["message"];
    assert_eq!(m["notification"]["body"], text.as_str(), "{m}");
    let ttl: u64 = m["android"]["ttl"]
        .as_str()
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("ttl: {m}"));
    assert!((604_790..=604_800).contains(&ttl), "ttl {ttl}");
    assert_eq!(parse(&m["data"]["payload"])["alert"], text.as_str(), "{m}");

    // A second message: the server-kept badge counts up.
    alice.send_text(conv, "again").await.unwrap();
    let got = apns_n(&env.apns, &bob_t, 2).await;
    fcm_n(&env.fcm, "fcm-erin", 2).await;
    let mut badges: Vec<i64> = got
        .iter()
        .map(|r| r.json()["aps"]["badge"].as_i64().expect("badge"))
        .collect();
    badges.sort_unstable();
    assert_eq!(badges, [1, 2]);
    assert_eq!(
        env.installation(&bob_dev).await.expect("registered")["badge"],
        2
    );
    // Exactly one push per message, none to the sender or the online member.
    assert_eq!(apns_to(&env.apns, &bob_t).len(), 2);
    assert!(
        apns_to(&env.apns, &alice_t).is_empty(),
        "the sender got a push"
    );
    assert!(
        apns_to(&env.apns, &carol_t).is_empty(),
        "an online member got a push"
    );
    assert_eq!(env.apns.requests(Route::Apns).len(), 2);
    assert!(env.apns.requests(Route::ApnsSandbox).is_empty());
    assert_eq!(env.fcm.requests(Route::Fcm).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_dev_goes_to_the_sandbox_and_apns_team_id_picks_the_second_key() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    let bob_t = token(10);
    env.offline_ios("bob", &bob_t).await;
    // An installation that names the second team itself.
    let frank_t = token(11);
    env.register_ios(&frank_t, TEAM2).await;
    env.bind_offline("frank", &frank_t).await;
    let (alice, _aev) = env.s.connect("alice").await;
    let conv = conv_of(&alice, &["bob"]).await;

    alice
        .send(with_data(
            conv,
            "d",
            json!({"alert": "to dev", "_profile": "dev"}),
        ))
        .await
        .unwrap();
    let r = apns_n(&env.apns, &bob_t, 1).await.remove(0);
    assert_eq!(r.route, Route::ApnsSandbox, "{}", r.path);
    assert_eq!(r.kid.as_deref(), Some(KID));
    assert_eq!(alert(&r), "to dev");
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        !text.contains("_profile"),
        "_profile reached the device: {text}"
    );

    alice
        .send(with_data(
            conv,
            "t",
            json!({"alert": "team two", "_apns_team_id": TEAM2}),
        ))
        .await
        .unwrap();
    let r = by_alert(apns_n(&env.apns, &bob_t, 2).await, "team two");
    assert_eq!(r.route, Route::Apns);
    assert_eq!(
        r.kid.as_deref(),
        Some(KID2),
        "the second [[push.apns]] key signs"
    );
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        !text.contains("_apns_team_id"),
        "reached the device: {text}"
    );

    // Neither: production, the installation's team (the first here).
    alice.send_text(conv, "plain").await.unwrap();
    let text = format!("New message from alice in {conv}");
    let r = by_alert(apns_n(&env.apns, &bob_t, 3).await, &text);
    assert_eq!((r.route, r.kid.as_deref()), (Route::Apns, Some(KID)));
    // The installation's apnsTeamId when the payload names none.
    let conv2 = conv_of(&alice, &["frank"]).await;
    alice.send_text(conv2, "to frank").await.unwrap();
    let r = apns_n(&env.apns, &frank_t, 1).await.remove(0);
    assert_eq!((r.route, r.kid.as_deref()), (Route::Apns, Some(KID2)));
}

// ----------------------------------------------- the hook's word ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hooks_push_message_beats_push_data_which_beats_the_template() {
    let hooks = HookServer::scripted(|c| match c.param("content").as_str() {
        Some("hook-json") => {
            Answer::result(json!({"pushMessage": r#"{"alert":"from hook","label":"hook-json"}"#}))
        }
        Some("hook-text") => Answer::result(json!({"pushMessage": "plain from hook"})),
        Some("hook-down") => Answer::raw(500, r#"{"code":1,"error":"boom"}"#),
        _ => Answer::ok(),
    })
    .await;
    let env = PushEnv::start(Providers::NATIVE, offline_hook_to(&hooks)).await;
    let bob_t = token(20);
    env.offline_ios("bob", &bob_t).await;
    env.offline_android("erin", "fcm-prio").await;
    let (alice, _aev) = env.s.connect("alice").await;
    let conv = conv_of(&alice, &["bob", "erin"]).await;
    let data = json!({"alert": "from data", "label": "data"});

    // Nothing but the template.
    alice.send_text(conv, "tmpl").await.unwrap();
    let r = apns_n(&env.apns, &bob_t, 1).await.remove(0);
    assert_eq!(
        alert(&r),
        format!("New message from alice in {conv}").as_str()
    );
    // pushData beats the template.
    alice
        .send(with_data(conv, "data", data.clone()))
        .await
        .unwrap();
    let r = apns_n(&env.apns, &bob_t, 2).await.remove(1);
    assert_eq!(
        (alert(&r), r.json()["label"].clone()),
        (json!("from data"), json!("data"))
    );
    assert!(
        r.json()["aps"].get("badge").is_none(),
        "no badge asked: {}",
        r.json()
    );
    // The hook's pushMessage (a string holding JSON) beats pushData.
    alice
        .send(with_data(conv, "hook-json", data.clone()))
        .await
        .unwrap();
    let r = apns_n(&env.apns, &bob_t, 3).await.remove(2);
    assert_eq!(
        (alert(&r), r.json()["label"].clone()),
        (json!("from hook"), json!("hook-json"))
    );
    // Plain text is an alert.
    alice
        .send(with_data(conv, "hook-text", data.clone()))
        .await
        .unwrap();
    let r = apns_n(&env.apns, &bob_t, 4).await.remove(3);
    assert_eq!(alert(&r), "plain from hook");
    // A failing hook does not silence the push.
    alice
        .send(with_data(
            conv,
            "hook-down",
            json!({"alert": "hook failed"}),
        ))
        .await
        .unwrap();
    let r = apns_n(&env.apns, &bob_t, 5).await.remove(4);
    assert_eq!(alert(&r), "hook failed");
    // Per-platform parts.
    let split = json!({"ios": {"alert": "ios part"}, "android": {"alert": "android part"}});
    alice.send(with_data(conv, "split", split)).await.unwrap();
    let r = apns_n(&env.apns, &bob_t, 6).await.remove(5);
    assert_eq!(alert(&r), "ios part");
    let f = fcm_n(&env.fcm, "fcm-prio", 6).await;
    let bodies: Vec<Value> = f
        .iter()
        .map(|r| r.json()["message"]["notification"]["body"].clone())
        .collect();
    assert!(bodies.contains(&json!("android part")), "{bodies:?}");
    assert!(!bodies.contains(&json!("ios part")), "{bodies:?}");
    // A part for iOS only: Android gets nothing (fenced by the next push).
    alice
        .send(with_data(
            conv,
            "ios-only",
            json!({"ios": {"alert": "only ios"}}),
        ))
        .await
        .unwrap();
    apns_n(&env.apns, &bob_t, 7).await;
    alice.send(with_data(conv, "fence", data)).await.unwrap();
    apns_n(&env.apns, &bob_t, 8).await;
    let f = fcm_n(&env.fcm, "fcm-prio", 7).await;
    assert_eq!(f.len(), 7, "Android got a push for an iOS-only payload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_member_gets_no_push_unless_forced_and_the_hook_can_skip_or_choose() {
    let mut hooks = HookServer::scripted(|c| match c.param("content").as_str() {
        Some("force") => Answer::result(json!({"force": true})),
        Some("skip") => Answer::result(json!({"skip": true})),
        Some("peers") => Answer::result(json!({"offlinePeers": ["erin"]})),
        _ => Answer::ok(),
    })
    .await;
    let env = PushEnv::start(Providers::NATIVE, offline_hook_to(&hooks)).await;
    let (bob_t, dave_t, erin_t) = (token(30), token(31), token(32));
    let (alice, _aev) = env.s.connect("alice").await;
    let conv = conv_of(&alice, &["bob", "dave", "erin"]).await;
    // bob registers, logs in naming his device, mutes the conversation, drops off.
    env.register_ios(&bob_t, TEAM).await;
    let mut o = env.s.options("bob");
    o.device_token = Some(bob_t.clone());
    let (bob, _bev) = env.s.connect_with(o).await;
    bob.mute(conv).await.expect("mute");
    bob.abort();
    env.wait_offline("bob").await;
    env.offline_ios("dave", &dave_t).await;
    env.offline_ios("erin", &erin_t).await;
    let send = |label: &str| with_data(conv, label, json!({"alert": label, "label": label}));

    alice.send(send("plain")).await.unwrap();
    apns_n(&env.apns, &dave_t, 1).await;
    apns_n(&env.apns, &erin_t, 1).await;
    alice.send(send("force")).await.unwrap();
    apns_n(&env.apns, &bob_t, 1).await;
    apns_n(&env.apns, &dave_t, 2).await;
    apns_n(&env.apns, &erin_t, 2).await;
    alice.send(send("skip")).await.unwrap();
    alice.send(send("peers")).await.unwrap();
    apns_n(&env.apns, &erin_t, 3).await;
    // The fence: a later push to everyone unmuted.
    alice.send(send("fence")).await.unwrap();
    apns_n(&env.apns, &dave_t, 3).await;
    apns_n(&env.apns, &erin_t, 4).await;

    assert_eq!(labels(&apns_to(&env.apns, &bob_t)), ["force"], "muted bob");
    assert_eq!(
        labels(&apns_to(&env.apns, &dave_t)),
        ["fence", "force", "plain"],
        "dave: not on skip, not when the hook chose erin alone"
    );
    assert_eq!(
        labels(&apns_to(&env.apns, &erin_t)),
        ["fence", "force", "peers", "plain"]
    );
    // The hook saw every offline member, the muted one included.
    let first = hooks.next("_receiversOffline").await;
    assert_eq!(
        sorted_strings(&first.body["offlinePeers"]),
        ["bob", "dave", "erin"]
    );
}

// ------------------------------------------------------ never ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_rooms_transient_messages_wills_and_muted_members_never_push() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    let bob_t = token(40);
    env.offline_ios("bob", &bob_t).await;
    let (alice, mut aev) = env.s.connect("alice").await;
    let (dave, _dev) = env.s.connect("dave").await;
    // mia mutes the conversation before she drops off; no hook here.
    let mia_t = token(41);
    env.register_ios(&mia_t, TEAM).await;
    let mut o = env.s.options("mia");
    o.device_token = Some(mia_t.clone());
    let (mia, _mev) = env.s.connect_with(o).await;
    let conv = conv_of(&alice, &["bob", "dave", "mia"]).await;
    mia.mute(conv).await.expect("mute");
    mia.abort();
    env.wait_offline("mia").await;
    let send = |conv, label: &str| with_data(conv, label, json!({"alert": label, "label": label}));

    let mut t = send(conv, "transient");
    t.transient = true;
    alice.send(t).await.unwrap();

    // A will: sent for dave when his connection drops; alice sees it.
    dave.set_will(send(conv, "will")).await.unwrap();
    dave.abort();
    aev.wait_for(WAIT, |e| match e {
        ClientEvent::Server(Event::Message { msg, .. }) if text(msg) == "will" => Some(()),
        _ => None,
    })
    .await
    .expect("alice gets dave's will");

    // A chat room bob was in before he dropped off.
    let room = alice
        .create_conversation(CreateConversation {
            members: Vec::new(),
            name: Some("room".into()),
            attr: None,
            unique: false,
            kind: ConvKind::ChatRoom,
            sig: None,
            ttl_secs: None,
        })
        .await
        .expect("chat room")
        .id;
    let (bob, _bev) = env.s.connect("bob").await;
    bob.join(room).await.expect("join the room");
    bob.abort();
    env.wait_offline("bob").await;
    alice.send(send(room, "room")).await.unwrap();

    alice.send(send(conv, "fence")).await.unwrap();
    apns_n(&env.apns, &bob_t, 1).await;
    assert_eq!(labels(&apns_to(&env.apns, &bob_t)), ["fence"]);
    assert!(
        apns_to(&env.apns, &mia_t).is_empty(),
        "muted mia got a push"
    );
}

// ---------------------------------------------------- dead tokens ----

fn fcm_unregistered() -> Reply {
    Reply::new(
        404,
        r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_tokens_remove_the_registration() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    let toks = [token(50), token(51), token(52)];
    let mut ids = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        ids.push(env.offline_ios(&format!("d{i}"), t).await);
    }
    ids.push(env.offline_android("d3", "fcm-dead").await);
    let (alice, _aev) = env.s.connect("alice").await;
    let conv = conv_of(&alice, &["d0", "d1", "d2", "d3"]).await;
    let gone_at = tidings::util::now_ms();
    env.apns.script(
        Route::Apns,
        [
            Reply::new(
                410,
                &json!({"reason": "Unregistered", "timestamp": gone_at}).to_string(),
            ),
            Reply::new(400, r#"{"reason":"BadDeviceToken"}"#),
            Reply::new(400, r#"{"reason":"DeviceTokenNotForTopic"}"#),
        ],
    );
    env.fcm.script(Route::Fcm, [fcm_unregistered()]);
    alice.send_text(conv, "to the dead").await.unwrap();
    for id in &ids {
        env.wait_removed(id).await;
    }
    let store = env.s.running().hub().store.clone();
    for c in ["d0", "d1", "d2", "d3"] {
        assert!(store.installations_of_client(c).unwrap().is_empty(), "{c}");
    }
    // Not pushed to again: the next message reaches only a live device.
    let live = token(53);
    env.offline_ios("ok", &live).await;
    alice.add_members(conv, vec!["ok".into()]).await.unwrap();
    alice.send_text(conv, "again").await.unwrap();
    apns_n(&env.apns, &live, 1).await;
    for t in &toks {
        assert_eq!(apns_to(&env.apns, t).len(), 1, "{t} pushed after it died");
    }
    assert_eq!(fcm_to(&env.fcm, "fcm-dead").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_gateway_takes_both_platforms_and_its_rejection_removes_the_registration() {
    let env = PushEnv::start(Providers::gateway(WebhookFormat::Matrix), |_| {}).await;
    let bob_t = token(60);
    let bob_dev = env.offline_ios("bob", &bob_t).await;
    let erin_dev = env.offline_android("erin", "fcm-gw").await;
    let (alice, _aev) = env.s.connect("alice").await;
    let conv = conv_of(&alice, &["bob", "erin"]).await;
    // Whichever call comes first, bob's answer rejects his pushkey.
    let rejected = json!({"rejected": [bob_t]}).to_string();
    env.gw.script(
        Route::Matrix,
        [Reply::new(200, &rejected), Reply::new(200, &rejected)],
    );
    alice.send_text(conv, "via the gateway").await.unwrap();
    let got = wait_n("Matrix notifications", 2, || env.gw.requests(Route::Matrix)).await;
    let mut seen: Vec<(String, String)> = got
        .iter()
        .flat_map(|r| {
            let n = r.json()["notification"].clone();
            assert_eq!(n["room_id"], conv.to_string(), "{n}");
            assert_eq!(n["sender"], "alice", "{n}");
            n["devices"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|d| {
                    (
                        d["app_id"].as_str().unwrap_or_default().to_owned(),
                        d["pushkey"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("tidings.android".to_owned(), "fcm-gw".to_owned()),
            ("tidings.ios".to_owned(), bob_t.clone()),
        ]
    );
    env.wait_removed(&bob_dev).await;
    assert!(
        env.installation(&erin_dev).await.is_some(),
        "erin was not rejected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gorush_gateway_gets_its_own_format() {
    let env = PushEnv::start(Providers::gateway(WebhookFormat::Gorush), |_| {}).await;
    let bob_t = token(61);
    env.offline_ios("bob", &bob_t).await;
    let (alice, _aev) = env.s.connect("alice").await;
    let conv = conv_of(&alice, &["bob"]).await;
    alice
        .send(with_data(conv, "g", json!({"alert": "gorush"})))
        .await
        .unwrap();
    let got = wait_n("Gorush pushes", 1, || env.gw.requests(Route::Gorush)).await;
    let n = &got[0].json()["notifications"][0];
    assert_eq!(n["tokens"], json!([bob_t]), "{n}");
    assert_eq!(n["platform"], 1, "{n}");
    assert_eq!(n["message"], "gorush", "{n}");
}

// -------------------------------------------------------- retries ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_and_a_429_waits_for_its_retry_after() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    let bob_t = token(70);
    env.offline_ios("bob", &bob_t).await;
    env.offline_android("erin", "fcm-retry").await;
    let (alice, _aev) = env.s.connect("alice").await;
    let to_bob = conv_of(&alice, &["bob"]).await;
    let to_erin = conv_of(&alice, &["erin"]).await;

    env.apns.script(
        Route::Apns,
        [Reply::new(503, r#"{"reason":"ServiceUnavailable"}"#)],
    );
    alice.send_text(to_bob, "one").await.unwrap();
    let got = apns_n(&env.apns, &bob_t, 2).await;
    assert_eq!(got[0].body, got[1].body, "the same push again");

    env.apns.script(
        Route::Apns,
        [Reply::new(429, r#"{"reason":"TooManyRequests"}"#).retry_after(1)],
    );
    alice.send_text(to_bob, "two").await.unwrap();
    apns_n(&env.apns, &bob_t, 3).await;
    let t0 = Instant::now();
    apns_n(&env.apns, &bob_t, 4).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(800),
        "retried after {waited:?}, not after Retry-After: 1"
    );

    env.fcm.script(
        Route::Fcm,
        [Reply::new(
            503,
            r#"{"error":{"code":503,"status":"UNAVAILABLE"}}"#,
        )],
    );
    alice.send_text(to_erin, "three").await.unwrap();
    fcm_n(&env.fcm, "fcm-retry", 2).await;
    // All delivered in the end, once each.
    let want = [("apns", "delivered", 2.0), ("fcm", "delivered", 1.0)];
    wait_metrics(&env, &want).await;
}

/// Waits (bounded) until `/metrics` shows each `(provider, result, n)` of
/// `tidings_push_sent_total`; the text.
async fn wait_metrics(env: &PushEnv, want: &[(&str, &str, f64)]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = env.metrics().await;
        let missing: Vec<_> = want
            .iter()
            .filter(|(p, r, n)| {
                sample(
                    &text,
                    "tidings_push_sent_total",
                    &[("provider", p), ("result", r)],
                ) != Some(*n)
            })
            .collect();
        if missing.is_empty() {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never showed {missing:?}:\n{}",
            text.lines()
                .filter(|l| l.contains("push"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------- one connection ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_pushes_share_one_connection_per_provider() {
    const N: usize = 500;
    let env = PushEnv::start(Providers::NATIVE, |c| c.limits.max_members = 1000).await;
    // 500 offline members, each with an iPhone and an Android phone.
    let members = env.many_offline("m", 1000, N as u32, true).await;
    let (alice, _aev) = env.s.connect("alice").await;
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let conv = conv_of(&alice, &refs).await;
    alice.send_text(conv, "to all 500").await.unwrap();
    let bound = Duration::from_secs(60);
    wait_n_for("APNs pushes", N, bound, || env.apns.requests(Route::Apns)).await;
    wait_n_for("FCM pushes", N, bound, || env.fcm.requests(Route::Fcm)).await;
    assert_eq!(env.apns.connections(), 1, "APNs connections");
    assert_eq!(env.fcm.connections(), 1, "FCM connections (OAuth included)");
    assert_eq!(env.fcm.token_requests(), 1, "one access token for all");
    let mut tokens: Vec<String> = env
        .apns
        .requests(Route::Apns)
        .iter()
        .map(|r| r.path.clone())
        .collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), N, "one push per device");
    // One provider token signed, reused for all 500.
    let mut auth: Vec<String> = env
        .apns
        .requests(Route::Apns)
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_owned())
        .collect();
    auth.dedup();
    assert_eq!(auth.len(), 1, "the provider token is reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_and_messaging_does_not_wait() {
    const N: u32 = 100;
    let env = PushEnv::start(Providers::NATIVE, |c| {
        c.push.queue_capacity = 1;
        c.push.max_in_flight = 1;
        c.push.retry_base_ms = 1000;
    })
    .await;
    let members = env.many_offline("q", 2000, N, false).await;
    let (alice, _aev) = env.s.connect("alice").await;
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let conv = conv_of(&alice, &refs).await;
    // The first push meets a 503 and holds the one slot through its
    // retry's wait (at least 1 s); one more waits in the queue.
    env.apns.script(
        Route::Apns,
        [Reply::new(503, r#"{"reason":"ServiceUnavailable"}"#)],
    );
    let t0 = Instant::now();
    alice.send_text(conv, "to a crowd").await.unwrap();
    alice.send_text(conv, "and again").await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "sending waited on push: {:?}",
        t0.elapsed()
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = env.metrics().await;
        let delivered = sample(
            &text,
            "tidings_push_sent_total",
            &[("provider", "apns"), ("result", "delivered")],
        )
        .unwrap_or(0.0);
        let dropped = sample(
            &text,
            "tidings_push_dropped_total",
            &[("provider", "apns"), ("reason", "queue_full")],
        )
        .unwrap_or(0.0);
        if delivered + dropped == f64::from(2 * N) {
            assert!(
                dropped >= f64::from(N),
                "dropped {dropped}, delivered {delivered}"
            );
            assert_eq!(
                env.apns.requests(Route::Apns).len() as f64,
                delivered + 1.0,
                "one request per delivered push, and the 503"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivered {delivered} + dropped {dropped} != {}",
            2 * N
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apns_body_over_4_kb_is_cut_on_a_char_boundary_or_dropped_and_counted() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    let bob_t = token(110);
    env.offline_ios("bob", &bob_t).await;
    let (alice, _aev) = env.s.connect("alice").await;
    let conv = conv_of(&alice, &["bob"]).await;
    let long = "é".repeat(3000); // 6000 bytes
    alice
        .send(with_data(conv, "long", json!({"alert": long})))
        .await
        .unwrap();
    let r = apns_n(&env.apns, &bob_t, 1).await.remove(0);
    assert!(r.body.len() <= 4096, "{} bytes", r.body.len());
    let cut = alert(&r);
    let cut = cut.as_str().expect("alert text");
    assert!(
        long.starts_with(cut) && cut.len() > 3000,
        "cut to {} bytes",
        cut.len()
    );
    // Custom keys alone over 4 KB: nothing to cut, dropped.
    alice
        .send(with_data(
            conv,
            "huge",
            json!({"alert": "huge", "blob": "y".repeat(4200)}),
        ))
        .await
        .unwrap();
    alice
        .send(with_data(conv, "fence", json!({"alert": "fence"})))
        .await
        .unwrap();
    apns_n(&env.apns, &bob_t, 2).await;
    let alerts: Vec<Value> = apns_to(&env.apns, &bob_t).iter().map(alert).collect();
    assert!(
        !alerts.contains(&json!("huge")),
        "an oversized body was sent"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = env.metrics().await;
        let n = sample(
            &text,
            "tidings_push_dropped_total",
            &[("provider", "apns"), ("reason", "too_large")],
        );
        if n == Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "too_large never counted: {n:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------- the SDKs' registrations ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_sdks_installations_bind_at_login_and_get_pushes() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    // Android (Java SDK): POST, then PUT of the FCM token; bound at a
    // QUIC login naming the installationId.
    let iid = "0123456789abcdef0123456789abcdef";
    env.register_android(iid, "fcm-droid").await;
    env.bind_offline("andy", iid).await;
    // Swift: batch/save; bound at a LeanCloud-door session/open with the
    // deviceToken (uppercase, as some apps format it); the socket drops.
    let sam_t = token(80);
    env.register_ios(&sam_t, TEAM).await;
    let lc = env.lc_open_ios("sam", &sam_t.to_uppercase()).await;
    drop(lc);
    env.wait_offline("sam").await;
    // JS SDK (`AV.Installation`, e.g. in a React Native app).
    let jo_t = token(81);
    let (st, body) = env
        .app
        .post(
            "/1.1/classes/_Installation",
            json!({"deviceType": "ios", "deviceToken": jo_t, "installationId": "js-iid",
                   "apnsTeamId": TEAM, "channels": []}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    env.bind_offline("jo", &jo_t).await;
    // Online on the LeanCloud door with a bound device: no push.
    let lena_t = token(82);
    env.register_ios(&lena_t, TEAM).await;
    let _lena = env.lc_open_ios("lena", &lena_t).await;
    let store = env.s.running().hub().store.clone();
    for c in ["andy", "sam", "jo", "lena"] {
        assert_eq!(
            store.installations_of_client(c).unwrap().len(),
            1,
            "{c} bound"
        );
    }

    // A LeanCloud-door sender with pushData.
    let (alice, _aev) = env.s.connect("alice").await;
    let conv = conv_of(&alice, &["andy", "sam", "jo", "lena", "lucy"]).await;
    let mut lucy = lc::Lc::to(&env.s).await;
    lucy.open(&env.s, "lucy", None, false).await;
    let mut d = lc::cmd(tidings::gateway::proto::CommandType::Direct, None);
    d.direct_message = Some(tidings::gateway::proto::DirectCommand {
        cid: Some(conv.to_string()),
        msg: Some("hi from the web".into()),
        push_data: Some(json!({"alert": "from lucy"}).to_string()),
        ..Default::default()
    });
    let ack = lucy.request(d).await;
    assert_eq!(lc::error_code(&ack), None, "{ack:?}");

    let f = fcm_n(&env.fcm, "fcm-droid", 1).await;
    assert_eq!(f[0].json()["message"]["notification"]["body"], "from lucy");
    for t in [&sam_t, &jo_t] {
        let r = apns_n(&env.apns, t, 1).await.remove(0);
        assert_eq!(alert(&r), "from lucy");
    }
    assert!(apns_to(&env.apns, &lena_t).is_empty(), "lena is online");
    assert_eq!(env.apns.requests(Route::Apns).len(), 2);
}

// -------------------------------------------------------- metrics ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_each_final_outcome() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    let (bob_t, dora_t, rita_t) = (token(90), token(91), token(92));
    env.offline_ios("bob", &bob_t).await;
    env.offline_android("erin", "fcm-m").await;
    let dora = env.offline_ios("dora", &dora_t).await;
    env.offline_ios("rita", &rita_t).await;
    let (alice, _aev) = env.s.connect("alice").await;
    let c1 = conv_of(&alice, &["bob", "erin"]).await;
    let c2 = conv_of(&alice, &["dora"]).await;
    let c3 = conv_of(&alice, &["rita"]).await;

    alice.send_text(c1, "delivered").await.unwrap();
    apns_n(&env.apns, &bob_t, 1).await;
    fcm_n(&env.fcm, "fcm-m", 1).await;
    env.apns.script(
        Route::Apns,
        [Reply::new(410, r#"{"reason":"Unregistered"}"#)],
    );
    alice.send_text(c2, "dead").await.unwrap();
    env.wait_removed(&dora).await;
    // 1 + max_retries (3) tries, all 503: gave up still retryable.
    env.apns.script(
        Route::Apns,
        (0..4).map(|_| Reply::new(503, r#"{"reason":"ServiceUnavailable"}"#)),
    );
    alice.send_text(c3, "retry").await.unwrap();
    apns_n(&env.apns, &rita_t, 4).await;
    wait_metrics(&env, &[("apns", "retry", 1.0)]).await;
    env.apns.script(
        Route::Apns,
        [Reply::new(400, r#"{"reason":"PayloadEmpty"}"#)],
    );
    alice.send_text(c3, "failed").await.unwrap();
    apns_n(&env.apns, &rita_t, 5).await;

    let text = wait_metrics(
        &env,
        &[
            ("apns", "delivered", 1.0),
            ("apns", "dead_token", 1.0),
            ("apns", "retry", 1.0),
            ("apns", "failed", 1.0),
            ("fcm", "delivered", 1.0),
        ],
    )
    .await;
    assert_eq!(
        sample(&text, "tidings_push_tokens_removed_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "tidings_push_queue_depth", &[("provider", "apns")]),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "tidings_push_sent_total",
            &[("provider", "fcm"), ("result", "dead_token")]
        )
        .unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        apns_to(&env.apns, &rita_t).len(),
        5,
        "no try beyond max_retries"
    );
}

// ---------------------------------------------------- admin API ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_a_clients_devices_and_sends_a_test_push() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    let bob_t = token(120);
    let ios = env.offline_ios("bob", &bob_t).await;
    let droid = env.register_android("iid-admin", "fcm-admin").await;
    env.bind_offline("bob", "iid-admin").await;
    // A web installation: bound, but nothing can push to it.
    let (st, body) = env
        .app
        .post(
            "/1.1/classes/_Installation",
            json!({"deviceType": "web", "installationId": "web-iid"}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let web = body["objectId"].as_str().expect("objectId").to_owned();
    env.bind_offline("bob", "web-iid").await;

    let a = env.admin();
    let devices = "/1.2/rtm/clients/bob/devices";
    let list = a.get(devices).await.expect(200);
    let results = list["results"].as_array().expect("results");
    let mut ids: Vec<&str> = results
        .iter()
        .map(|d| d["objectId"].as_str().expect("objectId"))
        .collect();
    ids.sort_unstable();
    let mut want = vec![ios.as_str(), droid.as_str(), web.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    let listed = results
        .iter()
        .find(|d| d["objectId"] == ios.as_str())
        .unwrap();
    assert_eq!(
        Some(listed.clone()),
        env.installation(&ios).await,
        "as the REST GET answers it"
    );
    let bare = a.send(a.bare(reqwest::Method::GET, devices)).await;
    assert!(
        matches!(bare.status, 401 | 403),
        "no master key: {}",
        bare.status
    );
    assert_eq!(
        a.get("/1.2/rtm/clients/nobody/devices").await.expect(200),
        json!({"results": []})
    );

    // The template, to every device, answered per device.
    let push = "/1.2/rtm/clients/bob/push";
    let res = a.post(push, json!({})).await.expect(200);
    let of = |res: &Value, id: &str| -> (Value, Value) {
        let r = res["results"]
            .as_array()
            .expect("results")
            .iter()
            .find(|r| r["objectId"] == id)
            .unwrap_or_else(|| panic!("no result for {id}: {res}"))
            .clone();
        (r["provider"].clone(), r["result"].clone())
    };
    assert_eq!(of(&res, &ios), (json!("apns"), json!("delivered")), "{res}");
    assert_eq!(
        of(&res, &droid),
        (json!("fcm"), json!("delivered")),
        "{res}"
    );
    assert_eq!(
        of(&res, &web),
        (Value::Null, json!("not_for_device")),
        "{res}"
    );
    // Answered after the providers answered: the requests are there.
    assert_eq!(apns_to(&env.apns, &bob_t).len(), 1);
    assert_eq!(fcm_to(&env.fcm, "fcm-admin").len(), 1);

    // A payload, and a token found dead on the way.
    env.apns.script(
        Route::Apns,
        [Reply::new(410, r#"{"reason":"Unregistered"}"#)],
    );
    let res = a
        .post(push, json!({"alert": "admin says hi"}))
        .await
        .expect(200);
    assert_eq!(
        of(&res, &ios),
        (json!("apns"), json!("dead_token")),
        "{res}"
    );
    assert_eq!(
        of(&res, &droid),
        (json!("fcm"), json!("delivered")),
        "{res}"
    );
    let f = fcm_to(&env.fcm, "fcm-admin");
    assert_eq!(
        f[1].json()["message"]["notification"]["body"],
        "admin says hi"
    );
    assert_eq!(
        env.installation(&ios).await,
        None,
        "the dead token's registration"
    );
    let (code, _) = a
        .post(push, json!(["not", "an", "object"]))
        .await
        .error(400);
    assert!(code > 0);

    // The CLI over the same API.
    let dir = env.s.data_dir();
    let (ok, out, err) = common::admin::admin_cli(&dir, &["devices", "bob"]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&droid) && !out.contains(&ios), "{out}");
    let (ok, out, err) =
        common::admin::admin_cli(&dir, &["push", "bob", "--alert", "from the CLI"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("delivered"), "{out}");
    wait_n("the CLI's FCM push", 3, || fcm_to(&env.fcm, "fcm-admin")).await;

    // Push off: a clear error.
    let off = TestServer::start().await;
    let (code, error) = common::admin::Admin::of(&off)
        .post("/1.2/rtm/clients/bob/push", json!({}))
        .await
        .error(400);
    assert_eq!(code, 115, "{error}");
}
