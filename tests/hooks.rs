//! Hooks end to end: real QUIC clients, a real server, and a real HTTP hook
//! server (tests/common/hook_server.rs) standing in for a LeanEngine app.
//! Covers the call itself (headers, bare params), every return field of the
//! before-hooks, chains, the fail policies, the after-hooks' payloads, and
//! after-hooks waiting out a hook server that is down across a restart.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use common::hook_server::{Answer, HookCall, HookServer};
use common::*;
use serde_json::{Value, json};
use tidings::client::{ClientError, ClientEvent};
use tidings::config::{Config, FailPolicy, HookOverride};
use tidings::protocol::{Content, ConvId, ErrorBody, Event, SendMessage};

const HOOK_KEY: &str = "hook-key-for-tests";
const LOCALHOST: &str = "127.0.0.1";

/// A server whose hooks all go to `hooks`, with the hook key set.
async fn start(hooks: &HookServer, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let url = hooks.url();
    TestServer::start_with(|c| {
        c.hooks.base_url = Some(url);
        c.hooks.hook_key = Some(HOOK_KEY.into());
        tweak(c);
    })
    .await
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The error body of a call that must fail with one.
fn server_error<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorBody {
    match r {
        Err(ClientError::Server(body)) => body,
        other => panic!("expected a server error, got {other:?}"),
    }
}

fn content_of(m: &tidings::protocol::Message) -> &Content {
    &m.content
}

/// `params[key]` as text, e.g. the `content` a hook saw.
fn str_param<'a>(c: &'a HookCall, key: &str) -> &'a str {
    c.param(key)
        .as_str()
        .unwrap_or_else(|| panic!("{} {key} is not a string: {}", c.name, c.body))
}

async fn members(c: &tidings::client::Client, conv: ConvId) -> Vec<String> {
    c.get_conversation(conv).await.unwrap().members
}

fn conv_str(c: ConvId) -> String {
    c.to_string()
}

// -------------------------------------------------------------- the call ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_carry_leanengine_headers_and_bare_params() {
    let mut hooks = HookServer::start().await;
    let s = start(&hooks, |_| {}).await;
    let creds = s.running().credentials().clone();
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let mut create = group(&["Jerry"]);
    create.name = Some("Tom & Jerry".into());
    create.attr = Some(r#"{"color":"blue"}"#.into());
    let conv = tom.create_conversation(create).await.unwrap().id;
    let sent = tom.send_text(conv, "hello").await.unwrap();
    assert_eq!(jev.next_message(WAIT).await.unwrap().msg_id, sent.msg_id);

    // The body is the params object itself, not wrapped in anything.
    let start = hooks.next("_conversationStart").await;
    assert_eq!(
        start.body,
        json!({
            "initBy": "Tom",
            "members": ["Jerry", "Tom"],
            "attr": { "color": "blue", "name": "Tom & Jerry" },
        })
    );
    let mut calls = vec![start];
    calls.push(hooks.next("_messageReceived").await);
    calls.push(hooks.next("_clientOnline").await);
    calls.push(hooks.next("_conversationStarted").await);
    calls.push(hooks.next("_messageSent").await);
    calls.extend(hooks.take_all());
    for c in &calls {
        assert_eq!(
            c.lane, "",
            "{}: POSTed to /1.1/functions/{}",
            c.name, c.name
        );
        assert_eq!(
            c.header("x-lc-id"),
            Some(creds.app_id.as_str()),
            "{}",
            c.name
        );
        let key = format!("{},master", creds.master_key);
        assert_eq!(c.header("x-lc-key"), Some(key.as_str()), "{}", c.name);
        assert_eq!(c.header("x-lc-hook-key"), Some(HOOK_KEY), "{}", c.name);
        assert_eq!(c.header("x-lc-session"), None, "{}", c.name);
        assert_eq!(c.header("x-lc-sign"), None, "{}", c.name);
        assert_eq!(
            c.header("content-type"),
            Some("application/json"),
            "{}",
            c.name
        );
        assert!(c.body.is_object(), "{}: a JSON object: {}", c.name, c.body);
        for wrapper in ["params", "result", "hook", "name"] {
            assert!(
                c.body.get(wrapper).is_none(),
                "{}: bare params: {}",
                c.name,
                c.body
            );
        }
    }
    let msg = calls.iter().find(|c| c.name == "_messageReceived").unwrap();
    assert_eq!(msg.body["content"], "hello");
    assert_eq!(msg.body["convId"], conv_str(conv));
}

// ------------------------------------------------------ _messageReceived ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_received_params_field_for_field() {
    let mut hooks = HookServer::start().await;
    let s = start(&hooks, |_| {}).await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let (_spike, mut sev) = s.connect("Spike").await;
    let conv = tom
        .create_conversation(group(&["Spike", "Jerry"]))
        .await
        .unwrap()
        .id;

    let before = tidings::util::now_ms();
    let mut m = SendMessage::text(conv, r#"{"_lctext":"Holy crap!","_lctype":-1}"#);
    m.receipt = true;
    tom.send(m).await.unwrap();
    let after = tidings::util::now_ms();
    let c = hooks.next("_messageReceived").await;
    let ts = c.param("timestamp").as_u64().expect("timestamp in ms");
    assert!(
        (before..=after).contains(&ts),
        "{before} <= {ts} <= {after}"
    );
    let expected = json!({
        "fromPeer": "Tom",
        "convId": conv_str(conv),
        "transient": false,
        "bin": false,
        "content": r#"{"_lctext":"Holy crap!","_lctype":-1}"#,
        "receipt": true,
        "timestamp": ts,
        "system": false,
        "sourceIP": LOCALHOST,
    });
    for (k, v) in expected.as_object().unwrap() {
        assert_eq!(&c.body[k], v, "_messageReceived {k}: {}", c.body);
    }
    // Every member but the sender.
    assert_eq!(sorted_strings(c.param("toPeers")), ["Jerry", "Spike"]);
    jev.next_message(WAIT).await.unwrap();
    sev.next_message(WAIT).await.unwrap();

    // Binary content travels as base64 with bin: true.
    let bytes = vec![0u8, 1, 2, 0xfe, 0xff];
    let mut m = SendMessage::text(conv, "");
    m.content = Content::Binary(bytes.clone());
    tom.send(m).await.unwrap();
    let c = hooks.next("_messageReceived").await;
    assert_eq!(c.param("bin"), &json!(true));
    assert_eq!(str_param(&c, "content"), b64(&bytes));
    assert_eq!(c.param("receipt"), &json!(false));
    let got = jev.next_message(WAIT).await.unwrap();
    assert_eq!(content_of(&got), &Content::Binary(bytes));

    // A transient message says so.
    let mut m = SendMessage::text(conv, "typing…");
    m.transient = true;
    tom.send(m).await.unwrap();
    let c = hooks.next("_messageReceived").await;
    assert_eq!(c.param("transient"), &json!(true));
    assert_eq!(c.param("content"), "typing…");
    assert_eq!(c.param("fromPeer"), "Tom");
    assert_eq!(sorted_strings(c.param("toPeers")), ["Jerry", "Spike"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_received_return_fields_take_effect() {
    let mut hooks = HookServer::scripted(|c| {
        if c.name != "_messageReceived" {
            return Answer::ok();
        }
        let content = c.param("content").as_str().unwrap_or_default();
        match content {
            "drop with code" => Answer::result(
                json!({ "drop": true, "code": 4321, "detail": "not in this conversation" }),
            ),
            "drop" => Answer::result(json!({ "drop": true })),
            "make binary" => {
                Answer::result(json!({ "bin": true, "content": b64(&[0, 159, 146, 150]) }))
            }
            "only Jerry" => Answer::result(json!({ "toPeers": ["Jerry"] })),
            c if c.contains("crap") => {
                Answer::result(json!({ "content": c.replace("crap", "**") }))
            }
            _ => Answer::ok(),
        }
    })
    .await;
    let s = start(&hooks, |_| {}).await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let (_spike, mut sev) = s.connect("Spike").await;
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;

    // drop + code + detail: the sender gets them; nobody receives.
    let e = server_error(tom.send_text(conv, "drop with code").await);
    assert_eq!(e.code, 4321);
    assert_eq!(e.detail, "not in this conversation");
    // drop alone: LeanCloud's MESSAGE_REJECTED_BY_APP.
    assert_eq!(code_of(tom.send_text(conv, "drop").await), 4402);
    // {}: unchanged. It is the first thing either receiver gets, so the
    // dropped ones went nowhere.
    tom.send_text(conv, "plain").await.unwrap();
    for ev in [&mut jev, &mut sev] {
        assert_eq!(text(&ev.next_message(WAIT).await.unwrap()), "plain");
    }

    // content: replaced for the receivers.
    tom.send_text(conv, "Holy crap!").await.unwrap();
    for ev in [&mut jev, &mut sev] {
        assert_eq!(text(&ev.next_message(WAIT).await.unwrap()), "Holy **!");
    }

    // bin + base64 content: the receivers get binary content.
    tom.send_text(conv, "make binary").await.unwrap();
    for ev in [&mut jev, &mut sev] {
        let m = ev.next_message(WAIT).await.unwrap();
        assert_eq!(content_of(&m), &Content::Binary(vec![0, 159, 146, 150]));
    }

    // toPeers: only Jerry gets it; Spike's next message is the one after.
    tom.send_text(conv, "only Jerry").await.unwrap();
    tom.send_text(conv, "everyone").await.unwrap();
    assert_eq!(text(&jev.next_message(WAIT).await.unwrap()), "only Jerry");
    assert_eq!(text(&jev.next_message(WAIT).await.unwrap()), "everyone");
    assert_eq!(text(&sev.next_message(WAIT).await.unwrap()), "everyone");

    // History keeps what the hook made of each message; drops took no seq.
    let history = full_history(&jerry, conv).await;
    let got: Vec<(u64, &Content)> = history.iter().map(|m| (m.seq, &m.content)).collect();
    assert_eq!(
        got,
        [
            (1, &Content::Text("plain".into())),
            (2, &Content::Text("Holy **!".into())),
            (3, &Content::Binary(vec![0, 159, 146, 150])),
            (4, &Content::Text("only Jerry".into())),
            (5, &Content::Text("everyone".into())),
        ]
    );
    // The hook saw each message once, in order.
    let seen: Vec<String> = hooks
        .take_all()
        .into_iter()
        .filter(|c| c.name == "_messageReceived")
        .map(|c| str_param(&c, "content").to_owned())
        .collect();
    assert_eq!(
        seen,
        [
            "drop with code",
            "drop",
            "plain",
            "Holy crap!",
            "make binary",
            "only Jerry",
            "everyone"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_received_chain_feeds_each_endpoint_the_last_ones_changes() {
    let mut hooks = HookServer::scripted(|c| {
        let content = c.param("content").as_str().unwrap_or_default();
        if c.lane == "a" && content == "stop" {
            return Answer::result(json!({ "drop": true, "code": 4777, "detail": "a says no" }));
        }
        Answer::result(json!({ "content": format!("{content} +{}", c.lane) }))
    })
    .await;
    let urls = vec![
        hooks.endpoint("a", "_messageReceived"),
        hooks.endpoint("b", "_messageReceived"),
    ];
    // No base_url and no hook key: only this hook is called, without the key.
    let s = TestServer::start_with(|c| {
        c.hooks.hook.insert(
            "_messageReceived".into(),
            HookOverride {
                urls,
                ..HookOverride::default()
            },
        );
    })
    .await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;

    tom.send_text(conv, "hi").await.unwrap();
    assert_eq!(text(&jev.next_message(WAIT).await.unwrap()), "hi +a +b");
    let a = hooks.next("_messageReceived").await;
    let b = hooks.next("_messageReceived").await;
    assert_eq!((a.lane.as_str(), b.lane.as_str()), ("a", "b"));
    assert_eq!(a.param("content"), "hi");
    assert_eq!(b.param("content"), "hi +a", "b sees a's content");
    // Everything else is the same request.
    let (mut ab, mut bb) = (a.body.clone(), b.body.clone());
    ab["content"] = json!(null);
    bb["content"] = json!(null);
    assert_eq!(ab, bb);
    assert_eq!(a.header("x-lc-hook-key"), None, "no key configured");

    // A drop early in the chain ends it: b never sees the message.
    assert_eq!(server_error(tom.send_text(conv, "stop").await).code, 4777);
    tom.send_text(conv, "again").await.unwrap();
    assert_eq!(text(&jev.next_message(WAIT).await.unwrap()), "again +a +b");
    let lanes: Vec<(String, String)> = hooks
        .take_all()
        .into_iter()
        .map(|c| {
            assert_eq!(
                c.name, "_messageReceived",
                "only the configured hook is called"
            );
            let content = str_param(&c, "content").to_owned();
            (c.lane, content)
        })
        .collect();
    assert_eq!(
        lanes,
        [
            ("a".to_string(), "stop".to_string()),
            ("a".into(), "again".into()),
            ("b".into(), "again +a".into()),
        ]
    );
}

// -------------------------------------------------- conversation hooks ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_hooks_reject_with_the_hooks_code() {
    let mut hooks = HookServer::scripted(|c| {
        let members = c.param("members").as_array().cloned().unwrap_or_default();
        let has = |who: &str| members.iter().any(|m| m == who);
        match c.name.as_str() {
            "_conversationStart" if c.param("attr")["name"] == "forbidden" => {
                Answer::reject(1234, "Please invite at least 3 people")
            }
            "_conversationAdd" if has("Mallory") => Answer::reject(9890, "private conversation"),
            "_conversationRemove" if has("Bast") => {
                Answer::reject(1928, "You cannot remove the staff member Bast")
            }
            "_conversationUpdate" if c.param("attr").get("name").is_some() => {
                Answer::reject(1949, "The name of the conversation cannot be updated.")
            }
            _ => Answer::ok(),
        }
    })
    .await;
    let s = start(&hooks, |_| {}).await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let (spike, _sev) = s.connect("Spike").await;
    let (mallory, _mev) = s.connect("Mallory").await;

    // _conversationStart
    let mut forbidden = group(&["Jerry"]);
    forbidden.name = Some("forbidden".into());
    let e = server_error(tom.create_conversation(forbidden).await);
    assert_eq!(
        (e.code, e.detail.as_str()),
        (1234, "Please invite at least 3 people")
    );
    assert!(
        tom.conversations(10).await.unwrap().is_empty(),
        "nothing created"
    );
    let mut ok = group(&["Jerry", "Bast", "Spike"]);
    ok.name = Some("staffed".into());
    let info = tom.create_conversation(ok).await.unwrap();
    let conv = info.id;
    let c = hooks
        .next_where("_conversationStart", |c| {
            c.param("attr")["name"] == "staffed"
        })
        .await;
    assert_eq!(
        c.body,
        json!({ "initBy": "Tom", "members": ["Bast", "Jerry", "Spike", "Tom"], "attr": { "name": "staffed" } })
    );
    assert_eq!(members(&tom, conv).await, ["Bast", "Jerry", "Spike", "Tom"]);

    // _conversationAdd, for an add and for a join.
    let e = server_error(tom.add_members(conv, vec!["Mallory".into()]).await);
    assert_eq!((e.code, e.detail.as_str()), (9890, "private conversation"));
    let c = hooks.next("_conversationAdd").await;
    assert_eq!(
        c.body,
        json!({ "initBy": "Tom", "members": ["Mallory"], "convId": conv_str(conv) })
    );
    assert_eq!(code_of(mallory.join(conv).await), 9890);
    let c = hooks.next("_conversationAdd").await;
    assert_eq!(
        c.body,
        json!({ "initBy": "Mallory", "members": ["Mallory"], "convId": conv_str(conv) })
    );
    assert_eq!(members(&tom, conv).await, ["Bast", "Jerry", "Spike", "Tom"]);
    assert_eq!(code_of(mallory.send_text(conv, "let me in").await), 4401);

    // _conversationRemove
    let e = server_error(tom.remove_members(conv, vec!["Bast".into()]).await);
    assert_eq!(
        (e.code, e.detail.as_str()),
        (1928, "You cannot remove the staff member Bast")
    );
    let c = hooks.next("_conversationRemove").await;
    assert_eq!(
        c.body,
        json!({ "initBy": "Tom", "members": ["Bast"], "convId": conv_str(conv) })
    );
    assert_eq!(members(&tom, conv).await, ["Bast", "Jerry", "Spike", "Tom"]);
    tom.remove_members(conv, vec!["Spike".into()])
        .await
        .unwrap();
    assert_eq!(members(&tom, conv).await, ["Bast", "Jerry", "Tom"]);
    assert_eq!(code_of(spike.send_text(conv, "still here?").await), 4401);

    let c = hooks.next("_conversationRemove").await;
    assert_eq!(c.param("members"), &json!(["Spike"]));

    // Leaving is not removing: no _conversationRemove. A before-hook is
    // called before the request is answered, so one would be here by now.
    assert_eq!(hooks.count_now("_conversationRemove"), 0);
    jerry.leave(conv).await.unwrap();
    assert_eq!(
        hooks.count_now("_conversationRemove"),
        0,
        "leave calls no _conversationRemove"
    );
    assert_eq!(members(&tom, conv).await, ["Bast", "Tom"]);
    let c = hooks
        .next_where("_conversationRemoved", |c| c.param("initBy") == "Jerry")
        .await;
    assert_eq!(
        c.body,
        json!({ "initBy": "Jerry", "convId": conv_str(conv), "members": ["Jerry"] })
    );

    // _conversationUpdate
    let e = server_error(tom.update(conv, Some("Renamed".into()), None).await);
    assert_eq!(
        (e.code, e.detail.as_str()),
        (1949, "The name of the conversation cannot be updated.")
    );
    assert_eq!(
        tom.get_conversation(conv).await.unwrap().name.as_deref(),
        Some("staffed")
    );
    // Attributes without a name pass.
    tom.update(conv, None, Some(r#"{"topic":"cats"}"#.into()))
        .await
        .unwrap();
    let info = tom.get_conversation(conv).await.unwrap();
    assert_eq!(info.name.as_deref(), Some("staffed"));
    assert_eq!(info.attr.as_deref(), Some(r#"{"topic":"cats"}"#));
    // Jerry left before any of this and heard nothing of it.
    assert!(
        std::iter::from_fn(|| jev.try_recv())
            .all(|e| !matches!(e, ClientEvent::Server(Event::ConversationUpdated { .. })))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_update_hook_replaces_attr_and_mute() {
    let mut hooks = HookServer::scripted(|c| {
        if c.name != "_conversationUpdate" {
            return Answer::ok();
        }
        if let Some(mute) = c.body.get("mute").and_then(Value::as_bool) {
            // Along with a mute the attr is ignored.
            return Answer::result(json!({ "mute": !mute, "attr": { "name": "ignored" } }));
        }
        let name = c.param("attr")["name"].as_str().unwrap_or("nameless");
        Answer::result(json!({ "attr": { "name": format!("Hooked {name}"), "color": "red" } }))
    })
    .await;
    let s = start(&hooks, |_| {}).await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;

    tom.update(
        conv,
        Some("Cats".into()),
        Some(r#"{"color":"blue"}"#.into()),
    )
    .await
    .unwrap();
    let c = hooks.next("_conversationUpdate").await;
    assert_eq!(
        c.body,
        json!({ "initBy": "Tom", "convId": conv_str(conv), "attr": { "name": "Cats", "color": "blue" } })
    );
    // The stored name and attributes are the hook's.
    let info = tom.get_conversation(conv).await.unwrap();
    assert_eq!(info.name.as_deref(), Some("Hooked Cats"));
    let attr: Value = serde_json::from_str(info.attr.as_deref().unwrap()).unwrap();
    assert_eq!(attr, json!({ "color": "red" }));
    // And so is what the members are told.
    let updated = jev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::ConversationUpdated { name, attr, .. }) => {
                Some((name.clone(), attr.clone()))
            }
            _ => None,
        })
        .await
        .expect("ConversationUpdated");
    assert_eq!(updated.0.as_deref(), Some("Hooked Cats"));
    let attr: Value = serde_json::from_str(updated.1.as_deref().unwrap()).unwrap();
    assert_eq!(attr, json!({ "color": "red" }));

    // mute comes alone, and the hook's mute wins both ways.
    tom.mute(conv).await.unwrap();
    let c = hooks.next("_conversationUpdate").await;
    assert_eq!(
        c.body,
        json!({ "initBy": "Tom", "convId": conv_str(conv), "mute": true })
    );
    assert!(!tom.get_conversation(conv).await.unwrap().muted);
    tom.unmute(conv).await.unwrap();
    let c = hooks.next("_conversationUpdate").await;
    assert_eq!(c.param("mute"), &json!(false));
    let info = tom.get_conversation(conv).await.unwrap();
    assert!(info.muted);
    assert_eq!(
        info.name.as_deref(),
        Some("Hooked Cats"),
        "attr in a mute answer is ignored"
    );
}

// ---------------------------------------------------------- fail policy ----

#[derive(Debug, Clone, Copy, PartialEq)]
enum Failure {
    Timeout,
    Status500,
    Garbage,
    ErrorAnswer,
}

const FAILURES: [Failure; 4] = [
    Failure::Timeout,
    Failure::Status500,
    Failure::Garbage,
    Failure::ErrorAnswer,
];

/// A hook server whose before-hooks fail as `failure` says while `failing`
/// is set; after-hooks always succeed.
async fn failing_hooks(failure: Failure, failing: Arc<AtomicBool>) -> HookServer {
    HookServer::scripted(move |c| {
        let before = matches!(c.name.as_str(), "_messageReceived" | "_conversationStart");
        if !before || !failing.load(Ordering::SeqCst) {
            return Answer::ok();
        }
        match failure {
            // Well past hooks.timeout_ms, with an answer that would drop it.
            Failure::Timeout => Answer::result(json!({ "drop": true, "reject": true }))
                .after(Duration::from_secs(3)),
            Failure::Status500 => Answer::raw(500, "Internal Server Error"),
            Failure::Garbage => Answer::raw(200, "<html>this is not JSON</html>"),
            Failure::ErrorAnswer => Answer::raw(400, r#"{"code":141,"error":"hook threw"}"#),
        }
    })
    .await
}

async fn start_failing(hooks: &HookServer, policy: FailPolicy) -> TestServer {
    start(hooks, |c| {
        c.hooks.fail_policy = policy;
        c.hooks.timeout_ms = 300;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_delivers_unchanged_when_a_hook_fails() {
    for failure in FAILURES {
        let failing = Arc::new(AtomicBool::new(true));
        let mut hooks = failing_hooks(failure, failing.clone()).await;
        let s = start_failing(&hooks, FailPolicy::Open).await;
        let (tom, _tev) = s.connect("Tom").await;
        let (_jerry, mut jev) = s.connect("Jerry").await;
        let conv = tom
            .create_conversation(group(&["Jerry"]))
            .await
            .unwrap_or_else(|e| panic!("{failure:?}: create goes on: {e}"))
            .id;
        hooks.next("_conversationStart").await;
        let sent = tom
            .send_text(conv, "unchanged")
            .await
            .unwrap_or_else(|e| panic!("{failure:?}: send goes on: {e}"));
        let got = jev.next_message(WAIT).await.expect("delivered");
        assert_eq!(
            (got.msg_id.as_str(), text(&got)),
            (sent.msg_id.as_str(), "unchanged"),
            "{failure:?}"
        );
        assert_eq!(
            hooks.next("_messageReceived").await.param("content"),
            "unchanged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_when_a_hook_fails() {
    for failure in FAILURES {
        let failing = Arc::new(AtomicBool::new(true));
        let mut hooks = failing_hooks(failure, failing.clone()).await;
        let s = start_failing(&hooks, FailPolicy::Closed).await;
        let (tom, _tev) = s.connect("Tom").await;
        let (_jerry, mut jev) = s.connect("Jerry").await;
        let e = server_error(tom.create_conversation(group(&["Jerry"])).await);
        assert_eq!(e.code, 4305, "{failure:?}: {e:?}");
        assert!(
            tom.conversations(10).await.unwrap().is_empty(),
            "{failure:?}"
        );
        hooks.next("_conversationStart").await;

        failing.store(false, Ordering::SeqCst);
        let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
        failing.store(true, Ordering::SeqCst);
        let e = server_error(tom.send_text(conv, "refused").await);
        assert_eq!(e.code, 4402, "{failure:?}: {e:?}");
        assert_eq!(
            hooks.next("_messageReceived").await.param("content"),
            "refused"
        );

        // Nothing was delivered or stored: the next message is Jerry's first, seq 1.
        failing.store(false, Ordering::SeqCst);
        let sent = tom.send_text(conv, "accepted").await.unwrap();
        assert_eq!(sent.seq, 1, "{failure:?}");
        let got = jev.next_message(WAIT).await.expect("delivered");
        assert_eq!(text(&got), "accepted", "{failure:?}");
    }
}

// ------------------------------------------------------------ after-hooks ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_hooks_carry_the_spec_fields() {
    let mut hooks = HookServer::start().await;
    let s = start(&hooks, |_| {}).await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    // Spike is a member who is not online.
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;
    let c = hooks.next("_conversationStarted").await;
    assert_eq!(c.body, json!({ "convId": conv_str(conv) }));

    let mut m = SendMessage::text(conv, "12345678");
    m.receipt = true;
    m.mention_list = vec!["Spike".into()];
    let sent = tom.send(m).await.unwrap();
    jev.next_message(WAIT).await.unwrap();
    let c = hooks.next("_messageSent").await;
    assert_eq!(
        c.body,
        json!({
            "fromPeer": "Tom",
            "convId": conv_str(conv),
            "msgId": sent.msg_id,
            "onlinePeers": ["Jerry"],
            "offlinePeers": ["Spike"],
            "transient": false,
            "system": false,
            "bin": false,
            "content": "12345678",
            // Receipts exist only between two members: asked for in a group, ignored.
            "receipt": false,
            "timestamp": sent.timestamp,
            "sourceIP": LOCALHOST,
        })
    );
    let c = hooks.next("_receiversOffline").await;
    let expected = json!({
        "fromPeer": "Tom",
        "convId": conv_str(conv),
        "offlinePeers": ["Spike"],
        "content": "12345678",
        "timestamp": sent.timestamp,
        "mentionAll": false,
        "mentionOfflinePeers": ["Spike"],
    });
    for (k, v) in expected.as_object().unwrap() {
        assert_eq!(&c.body[k], v, "_receiversOffline {k}: {}", c.body);
    }

    // Binary content: base64 with bin: true; nobody offline, no _receiversOffline.
    tom.add_members(conv, vec!["Tyke".into()]).await.unwrap();
    let c = hooks.next("_conversationAdded").await;
    assert_eq!(
        c.body,
        json!({ "initBy": "Tom", "convId": conv_str(conv), "members": ["Tyke"] })
    );
    tom.remove_members(conv, vec!["Tyke".into(), "Spike".into()])
        .await
        .unwrap();
    let c = hooks.next("_conversationRemoved").await;
    assert_eq!(c.param("initBy"), "Tom");
    assert_eq!(c.param("convId"), &json!(conv_str(conv)));
    assert_eq!(sorted_strings(c.param("members")), ["Spike", "Tyke"]);
    let mut m = SendMessage::text(conv, "");
    m.content = Content::Binary(vec![0xde, 0xad, 0xbe, 0xef]);
    let sent = jerry.send(m).await.unwrap();
    let c = hooks
        .next_where("_messageSent", |c| c.param("fromPeer") == "Jerry")
        .await;
    assert_eq!(c.param("msgId"), &json!(sent.msg_id));
    assert_eq!(c.param("bin"), &json!(true));
    assert_eq!(c.param("content"), &json!(b64(&[0xde, 0xad, 0xbe, 0xef])));
    assert_eq!(c.param("onlinePeers"), &json!(["Tom"]));
    assert_eq!(c.param("offlinePeers"), &json!([]));
    assert_eq!(c.param("receipt"), &json!(false));

    // Leaving fires _conversationRemoved too, with the leaver as initBy.
    jerry.leave(conv).await.unwrap();
    let c = hooks.next("_conversationRemoved").await;
    assert_eq!(
        c.body,
        json!({ "initBy": "Jerry", "convId": conv_str(conv), "members": ["Jerry"] })
    );
    // Only Spike was ever offline for a message.
    assert!(
        hooks
            .take_all()
            .iter()
            .all(|c| c.name != "_receiversOffline"),
        "one _receiversOffline in all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_online_and_offline_hooks() {
    let mut hooks = HookServer::start().await;
    let s = start(&hooks, |_| {}).await;
    let is = |who: &'static str| move |c: &HookCall| c.param("peerId") == who;

    let (tom, _tev) = s.connect("Tom").await;
    let c = hooks.next_where("_clientOnline", is("Tom")).await;
    assert_eq!(
        c.body,
        json!({ "peerId": "Tom", "sourceIP": LOCALHOST, "tag": "default", "reconnect": 0 })
    );
    tom.logout().await.unwrap();
    let c = hooks.next_where("_clientOffline", is("Tom")).await;
    assert_eq!(
        c.body,
        json!({ "peerId": "Tom", "closeCode": 1, "closeMsg": "logout", "tag": "default", "sourceIP": LOCALHOST })
    );

    // A second device with the same tag displaces the first: closeCode 3.
    let mut o = s.options("Jerry");
    o.tag = Some("Mobile".into());
    let (_old, _oev) = s.connect_with(o.clone()).await;
    let c = hooks.next_where("_clientOnline", is("Jerry")).await;
    assert_eq!(c.param("tag"), "Mobile");
    let (_new, _nev) = s.connect_with(o).await;
    hooks.next_where("_clientOnline", is("Jerry")).await;
    let c = hooks.next_where("_clientOffline", is("Jerry")).await;
    assert_eq!(c.param("closeCode"), &json!(3));
    assert_eq!(c.param("tag"), "Mobile");
    assert_eq!(c.param("sourceIP"), LOCALHOST);
    assert!(c.param("closeMsg").is_string());

    // reconnect: 1 for a reconnecting login.
    let mut o = s.options("Spike");
    o.reconnect = true;
    let (spike, _sev) = s.connect_with(o).await;
    let c = hooks.next_where("_clientOnline", is("Spike")).await;
    assert_eq!(c.param("reconnect"), &json!(1));
    // A connection that just drops: closeCode 2, no address, no error.
    spike.abort();
    let c = hooks.next_where("_clientOffline", is("Spike")).await;
    assert_eq!(c.param("closeCode"), &json!(2));
    assert_eq!(c.param("tag"), "default");
    for absent in ["sourceIP", "errorCode", "errorMsg"] {
        assert!(c.body.get(absent).is_none(), "{absent} in {}", c.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_is_client_offline_close_code_2_with_4107() {
    let mut hooks = HookServer::start().await;
    let s = start(&hooks, |c| c.limits.idle_timeout_secs = 1).await;
    let mut o = s.options("Quiet");
    o.ping_interval = Duration::ZERO;
    let (_quiet, _qev) = s.connect_with(o).await;
    let c = hooks.next("_clientOffline").await;
    assert_eq!(
        c.body,
        json!({
            "peerId": "Quiet",
            "closeCode": 2,
            "closeMsg": "connection lost",
            "tag": "default",
            "errorCode": 4107,
            "errorMsg": "READ_TIMEOUT",
        })
    );
}

// ------------------------------------------------- outbox across restart ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_hooks_wait_out_a_dead_hook_server_across_a_restart() {
    // A port nobody listens on yet.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut s = TestServer::start_with(|c| {
        c.hooks.base_url = Some(format!("http://{addr}"));
        c.hooks.hook_key = Some(HOOK_KEY.into());
    })
    .await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    // Before-hooks fail (connection refused) and, fail-open, let all this through.
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(tom.send_text(conv, &format!("m{i}")).await.unwrap().msg_id);
    }
    for id in &sent {
        assert_eq!(&jev.next_message(WAIT).await.unwrap().msg_id, id);
    }
    let hub = s.running().hub().clone();
    eventually("the after-hooks are queued", || hub.hooks.outbox_len() >= 8).await;
    drop(hub);
    drop((tom, _tev, _jerry, jev));

    s.restart().await;
    let mut hooks = HookServer::start_on(addr).await;

    // Everything queued before the restart arrives; per conversation in order.
    let conv_id = conv_str(conv);
    let mut expected = vec!["started".to_string()];
    expected.extend(sent.iter().cloned());
    let mut lane: Vec<String> = Vec::new();
    let mut online: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while lane.len() < expected.len() || online.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "queued after-hooks arrive; so far {lane:?} and online {online:?}"
        );
        for call in hooks.take_all() {
            assert_eq!(call.header("x-lc-hook-key"), Some(HOOK_KEY));
            let key = match call.name.as_str() {
                "_conversationStarted" => "started".to_string(),
                "_messageSent" => str_param(&call, "msgId").to_owned(),
                "_clientOnline" => {
                    let who = str_param(&call, "peerId").to_owned();
                    if !online.contains(&who) {
                        online.push(who);
                    }
                    continue;
                }
                _ => continue,
            };
            assert_eq!(call.param("convId"), &json!(conv_id));
            // At least once: a repeat is fine, but only of what came last.
            if lane.last() != Some(&key) {
                assert!(!lane.contains(&key), "{key} out of order after {lane:?}");
                lane.push(key);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(lane, expected);
    // Tom's and Jerry's logins from before the restart.
    online.sort();
    assert_eq!(online, ["Jerry", "Tom"]);
    let hub = s.running().hub().clone();
    eventually("the outbox empties", || hub.hooks.outbox_len() == 0).await;
}
