//! Protection against a bad hook endpoint (issue 13, items 2 and 7): an
//! undefined hook (404, LeanEngine's code 1) is learned and not called
//! again; no hook or key holds the outbox's whole in-memory window; calls
//! given up on go to the dead letters, which the admin API and the CLI list,
//! retry and purge; a circuit breaker answers a hanging before-hook's
//! fail policy at once. Real QUIC clients, a real server and a real HTTP
//! hook server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::admin::Admin;
use common::hook_server::{Answer, HookServer};
use common::*;
use serde_json::{Value, json};
use tidings::client::ClientError;
use tidings::config::FailPolicy;
use tidings::hooks::{Hook, HookStats};

fn stats(s: &TestServer, hook: Hook) -> HookStats {
    s.running()
        .hub()
        .hooks
        .metrics()
        .into_iter()
        .find(|h| h.hook == hook)
        .expect("every hook has stats")
}

/// LeanEngine's answer for a function the app does not define.
fn undefined() -> Answer {
    Answer::raw(
        404,
        r#"{"code":1,"error":"LeanEngine not found function named '_clientOnline'"}"#,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undefined_hooks_are_learned_and_do_not_stall_message_sent() {
    let mut hooks = HookServer::scripted(|c| match c.name.as_str() {
        "_clientOnline" | "_clientOffline" => undefined(),
        _ => Answer::ok(),
    })
    .await;
    let url = hooks.url();
    let s = TestServer::start_with(|c| c.hooks.base_url = Some(url)).await;

    const LOGINS: usize = 150;
    for i in 0..LOGINS {
        let (c, _ev) = s.connect(&format!("u{i}")).await;
        c.logout().await.unwrap();
    }
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let sent = tom.send_text(conv, "still delivered").await.unwrap();
    jev.next_message(WAIT).await.unwrap();
    let call = hooks.next("_messageSent").await;
    assert_eq!(call.param("msgId"), &json!(sent.msg_id));

    // Every online/offline record is settled (discarded, not retried
    // forever): the outbox drains.
    let hub = s.running().hub().clone();
    eventually("the outbox to drain", || hub.hooks.outbox_len() == 0).await;
    // Without learning, each of the 2 x 150 records is called at least once
    // (and retried); with it, only calls already under way when the first
    // 404 came back.
    let calls = hooks.count_now("_clientOnline") + hooks.count_now("_clientOffline");
    assert!(calls >= 2, "both hooks were tried: {calls}");
    assert!(
        calls <= 2 * tidings::hooks::outbox::MAX_CONCURRENT_CALLS,
        "the undefined endpoints got {calls} calls for {LOGINS} logins"
    );
    let online = stats(&s, Hook::ClientOnline);
    assert!(online.undefined_learned >= 1, "{online:?}");
    assert!(online.undefined_skipped >= 1, "{online:?}");
    let text = Admin::of(&s).get("/metrics").await.expect(200);
    let text = text.as_str().unwrap();
    assert!(
        text.contains("tidings_hook_endpoints_undefined 2"),
        "both endpoints are known undefined:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_hook_or_key_cannot_hold_the_whole_window() {
    let mut hooks = HookServer::scripted(|c| match c.name.as_str() {
        "_typingStarted" | "_conversationDeleted" => Answer::raw(500, "broken"),
        _ => Answer::ok(),
    })
    .await;
    let url = hooks.url();
    let s = TestServer::start_with(|c| c.hooks.base_url = Some(url)).await;
    let hub = s.running().hub().clone();
    // More records of failing hooks than the whole window (4096): 3,000
    // of one hook under distinct keys, 2,000 of another under one key.
    for i in 0..3000 {
        hub.hooks
            .after(Hook::TypingStarted, json!({ "n": i }), &format!("k{i}"));
    }
    for i in 0..2000 {
        hub.hooks
            .after(Hook::ConversationDeleted, json!({ "n": i }), "one-key");
    }
    hooks.next("_typingStarted").await;
    hooks.next("_conversationDeleted").await;

    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let sent = tom.send_text(conv, "not stuck").await.unwrap();
    jev.next_message(WAIT).await.unwrap();
    // Bounded by WAIT: the old outbox read 4,096 failing records into
    // memory and never looked at this one.
    let call = hooks
        .next_where("_messageSent", |c| c.param("msgId") == &json!(sent.msg_id))
        .await;
    assert_eq!(call.param("content"), &json!("not stuck"));
    // The breaker stopped the failing endpoint from being hammered.
    let typing = stats(&s, Hook::TypingStarted);
    assert!(typing.breaker_opened >= 1, "{typing:?}");
}

/// Runs `tidings hooks dead-letters --data-dir DIR ARGS…`, the real binary.
async fn dead_letters_cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    common::admin::data_dir_cli(&["hooks", "dead-letters"], dir, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_up_calls_go_to_dead_letters_to_list_retry_and_purge() {
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let b = broken.clone();
    let mut hooks = HookServer::scripted(move |c| {
        if c.name == "_conversationStarted" && b.load(std::sync::atomic::Ordering::SeqCst) {
            Answer::raw(500, "down")
        } else {
            Answer::ok()
        }
    })
    .await;
    let url = hooks.url();
    let s = TestServer::start_with(|c| {
        c.hooks.base_url = Some(url);
        c.hooks.outbox_max_attempts = 2;
        c.hooks.breaker_failures = 0;
    })
    .await;
    let hub = s.running().hub().clone();
    let (tom, _tev) = s.connect("Tom").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    tom.create_conversation(group(&["Spike"])).await.unwrap();
    eventually("two dead letters", || hub.hooks.dead_letters_len() == 2).await;
    assert_eq!(hub.hooks.outbox_len(), 0);
    assert_eq!(stats(&s, Hook::ConversationStarted).dead_lettered, 2);

    let admin = Admin::of(&s);
    let list = admin.get("/1.2/rtm/hooks/dead-letters").await.expect(200);
    assert_eq!(list["count"], json!(2));
    let rows = list["results"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["hook"], json!("_conversationStarted"));
    assert_eq!(rows[0]["params"]["convId"], json!(conv.to_string()));
    assert_eq!(rows[0]["attempts"], json!(2));
    assert!(
        rows[0]["last_error"].as_str().unwrap().contains("500"),
        "{}",
        rows[0]
    );
    // The same through the CLI, one JSON line per letter.
    let (ok, out, err) = dead_letters_cli(&s.data_dir(), &["list"]).await;
    assert!(ok, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, rows);

    // Retry the first once the endpoint works again: it is delivered.
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let first = rows[0]["id"].as_u64().unwrap();
    let (ok, out, err) = dead_letters_cli(&s.data_dir(), &["retry", &first.to_string()]).await;
    assert!(ok, "{err}");
    let answer: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(answer["retried"], json!(1));
    let call = hooks
        .next_where("_conversationStarted", |c| {
            c.param("convId") == &json!(conv.to_string())
        })
        .await;
    assert_eq!(call.param("convId"), &json!(conv.to_string()));
    assert_eq!(hub.hooks.dead_letters_len(), 1);

    // Bad selections are refused; purge drops the rest.
    admin
        .post("/1.2/rtm/hooks/dead-letters/purge", json!({}))
        .await
        .error(400);
    let purged = admin
        .post("/1.2/rtm/hooks/dead-letters/purge", json!({ "all": true }))
        .await
        .expect(200);
    assert_eq!(purged["purged"], json!(1));
    let list = admin.get("/1.2/rtm/hooks/dead-letters").await.expect(200);
    assert_eq!(list, json!({ "results": [], "count": 0 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_answers_a_hanging_before_hook_at_once() {
    const SENDS: usize = 20;
    const FAILURES: u32 = 3;
    let mut hooks = HookServer::scripted(|c| match c.name.as_str() {
        // Hangs far past hooks.timeout_ms.
        "_messageReceived" => Answer::ok().after(Duration::from_secs(3600)),
        _ => Answer::ok(),
    })
    .await;
    let url = hooks.url();
    let s = TestServer::start_with(|c| {
        c.hooks.base_url = Some(url);
        c.hooks.timeout_ms = 200;
        c.hooks.fail_policy = FailPolicy::Closed;
        c.hooks.breaker_failures = FAILURES;
        // Longer than the test: no probe gets through.
        c.hooks.breaker_cooldown_ms = 3_600_000;
    })
    .await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, _jev) = s.connect("Jerry").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;

    // Pipelined on one connection, to one conversation.
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..SENDS {
        let tom = tom.clone();
        sends.spawn(async move { tom.send_text(conv, &format!("m{i}")).await });
    }
    let results = sends.join_all().await;
    let mut open = 0;
    for r in results {
        match r {
            Err(ClientError::Server(e)) => {
                assert_eq!(e.code, 4402, "{e:?}");
                if e.detail.contains("circuit breaker open") {
                    open += 1;
                }
            }
            other => panic!("expected the fail policy's 4402, got {other:?}"),
        }
    }
    // Only the first FAILURES sends waited for the timeout; the hook got
    // no other call.
    assert_eq!(open, SENDS - FAILURES as usize);
    assert_eq!(hooks.count_now("_messageReceived"), FAILURES as usize);
    let st = stats(&s, Hook::MessageReceived);
    assert_eq!(st.breaker_opened, 1, "{st:?}");
    assert_eq!(
        st.short_circuited,
        (SENDS - FAILURES as usize) as u64,
        "{st:?}"
    );
    assert_eq!(st.timeouts, u64::from(FAILURES), "{st:?}");
}
