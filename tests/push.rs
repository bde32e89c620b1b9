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

/// Dead tokens, gateways, retries, connections, queues, sizes.
#[path = "push/delivery.rs"]
mod delivery;
/// The SDKs' registrations, metrics, the admin API and CLI.
#[path = "push/operations.rs"]
mod operations;

use std::time::{Duration, Instant};

use common::hook_server::{Answer, HookServer};
use common::*;
use push_env::*;
use push_mock::{Recorded, Reply, Route};
use serde_json::{Value, json};
use tidings::client::{Client, ClientEvent};
use tidings::config::{Config, HookOverride, WebhookFormat};
use tidings::gateway::proto::{CommandType, ConvCommand, OpType};
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
    let (alice, _aev) = env.connect_naming("alice", &alice_t).await;
    let (_carol, _cev) = env.connect_naming("carol", &carol_t).await;
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
    // Android has its own lane: fence on the fence's push there (the second
    // with pushData's alert), not on APNs.
    wait_n("FCM pushes with pushData's alert", 2, || {
        let mut v = fcm_to(&env.fcm, "fcm-prio");
        v.retain(|r| r.json()["message"]["notification"]["body"] == "from data");
        v
    })
    .await;
    let f = fcm_to(&env.fcm, "fcm-prio");
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
    let (bob, _bev) = env.connect_naming("bob", &bob_t).await;
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
    let (mia, _mev) = env.connect_naming("mia", &mia_t).await;
    // lily, through the LeanCloud door's `conv/mute`.
    let lily_t = token(42);
    env.register_ios(&lily_t, TEAM).await;
    let mut lily = env.lc_open_ios("lily", &lily_t).await;
    let conv = conv_of(&alice, &["bob", "dave", "mia", "lily"]).await;
    mia.mute(conv).await.expect("mute");
    mia.abort();
    env.wait_offline("mia").await;
    let mut m = lc::cmd(CommandType::Conv, Some(OpType::Mute));
    m.conv_message = Some(ConvCommand {
        cid: Some(conv.to_string()),
        ..Default::default()
    });
    let answer = lily.request(m).await;
    assert_eq!(lc::error_code(&answer), None, "{answer:?}");
    drop(lily);
    env.wait_offline("lily").await;
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
            name: Some("room".into()),
            kind: ConvKind::ChatRoom,
            ..group(&[])
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
    assert!(
        apns_to(&env.apns, &lily_t).is_empty(),
        "muted lily got a push"
    );
}
