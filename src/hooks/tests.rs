//! Hooks against a real HTTP server (axum on 127.0.0.1:0) inside the test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use reqwest::Url;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::*;
use crate::config::{FailPolicy, HookOverride, HooksSection};
use crate::store::Store;

const APP_ID: &str = "app-id";
const MASTER_KEY: &str = "0123456789abcdef";
/// Bound on every wait for something the server should receive.
const WAIT: Duration = Duration::from_secs(10);

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
    /// 0-based index of the request on this server.
    n: u64,
}

/// What the server answers: status and body, or `None` to never answer.
type Responder = dyn Fn(&Seen) -> Option<(u16, String)> + Send + Sync;

#[derive(Clone)]
struct App {
    respond: Arc<Responder>,
    seen: mpsc::UnboundedSender<Seen>,
    count: Arc<AtomicU64>,
}

struct Server {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Server {
    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request, waiting at most `WAIT`.
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("the hook server got no request in time")
            .expect("server channel open")
    }

    /// No request is pending right now.
    fn none_pending(&mut self) -> bool {
        self.seen.try_recv().is_err()
    }
}

async fn handle(
    State(app): State<App>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let seen = Seen {
        path: format!("/{path}"),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        n: app.count.fetch_add(1, Ordering::SeqCst),
    };
    let answer = (app.respond)(&seen);
    let _ = app.seen.send(seen);
    match answer {
        Some((status, body)) => (StatusCode::from_u16(status).unwrap(), body),
        None => std::future::pending().await,
    }
}

async fn serve(respond: impl Fn(&Seen) -> Option<(u16, String)> + Send + Sync + 'static) -> Server {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = App {
        respond: Arc::new(respond),
        seen: tx,
        count: Arc::new(AtomicU64::new(0)),
    };
    let router = Router::new()
        .route("/{*path}", post(handle))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Server { addr, seen: rx }
}

fn ok(result: Value) -> Option<(u16, String)> {
    Some((200, json!({ "result": result }).to_string()))
}

/// An address nothing listens on.
async fn dead_base() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

fn section(base: &str) -> HooksSection {
    HooksSection {
        base_url: Some(base.to_owned()),
        hook_key: Some("hook-key".into()),
        timeout_ms: 2000,
        ..HooksSection::default()
    }
}

fn with_urls(mut cfg: HooksSection, hook: Hook, urls: Vec<String>) -> HooksSection {
    cfg.hook.insert(
        hook.name().to_owned(),
        HookOverride {
            urls,
            ..HookOverride::default()
        },
    );
    cfg
}

fn store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), 8 << 20, false).unwrap());
    (dir, store)
}

fn hooks(cfg: &HooksSection, store: &Arc<Store>) -> Arc<Hooks> {
    Arc::new(Hooks::new(cfg, APP_ID, MASTER_KEY, store.clone()).unwrap())
}

fn stats(h: &Hooks, hook: Hook) -> HookStats {
    h.metrics().into_iter().find(|s| s.hook == hook).unwrap()
}

fn msg_params(content: &str) -> Value {
    json!({
        "fromPeer": "Tom",
        "convId": "5789a33a1b8694ad267d8040",
        "toPeers": ["Jerry"],
        "transient": false,
        "bin": false,
        "content": content,
        "receipt": false,
        "timestamp": 1472200796764u64,
        "system": null,
        "sourceIP": "121.239.62.103",
    })
}

/// Waits until `f` holds, polling; panics after `WAIT`.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sends_leanengine_path_headers_and_bare_params() {
    let mut server = serve(|_| ok(json!({}))).await;
    let (_dir, store) = store();
    let h = hooks(&section(&server.base()), &store);
    let params = msg_params("hi");
    assert_eq!(
        h.before(Hook::MessageReceived, params.clone()).await,
        Before::Proceed(Map::new())
    );
    let seen = server.next().await;
    assert_eq!(seen.path, "/1.1/functions/_messageReceived");
    assert_eq!(seen.body, params);
    let hd = |name: &str| {
        seen.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(hd("content-type").as_deref(), Some("application/json"));
    assert_eq!(hd("x-lc-id").as_deref(), Some(APP_ID));
    assert_eq!(hd("x-lc-key").as_deref(), Some("0123456789abcdef,master"));
    assert_eq!(hd("x-lc-hook-key").as_deref(), Some("hook-key"));
    assert_eq!(hd("x-lc-session"), None);

    // Without a hook key the header is absent, and a trailing slash on the
    // base URL does not double up.
    let mut cfg = section(&format!("{}/", server.base()));
    cfg.hook_key = None;
    let h = hooks(&cfg, &store);
    h.before(Hook::ConversationStart, json!({"initBy": "Tom"}))
        .await;
    let seen = server.next().await;
    assert_eq!(seen.path, "/1.1/functions/_conversationStart");
    assert!(seen.headers.get("x-lc-hook-key").is_none());
}

#[tokio::test]
async fn answers_parse_or_fail_by_kind() {
    let server = serve(|s| match s.path.as_str() {
        "/content" => ok(json!({"content": "**"})),
        "/null" => Some((200, r#"{"result": null}"#.into())),
        "/bare" => Some((200, "{}".into())),
        "/scalar" => Some((200, r#"{"result": true}"#.into())),
        "/error200" => Some((200, r#"{"code": 142, "error": "nope"}"#.into())),
        "/undefined" => Some((
            404,
            r#"{"code": 1, "error": "Cloud function not found."}"#.into(),
        )),
        "/500" => Some((500, "Internal Server Error".into())),
        "/garbage" => Some((200, "<html>not json".into())),
        "/array" => Some((200, "[1, 2]".into())),
        "/big" => Some((
            200,
            format!(r#"{{"result": {{"content": "{}"}}}}"#, "x".repeat(4096)),
        )),
        "/slow" => None,
        _ => Some((404, "".into())),
    })
    .await;
    let mut cfg = section(&server.base());
    cfg.max_response_bytes = 1024;
    let client = HookClient::new(&cfg, APP_ID, MASTER_KEY).unwrap();
    let call = |path: &'static str, timeout_ms: u64| {
        let url = Url::parse(&server.url(path)).unwrap();
        let client = &client;
        async move {
            client
                .call(&url, Duration::from_millis(timeout_ms), b"{}".to_vec())
                .await
        }
    };

    let r = call("/content", 2000).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(Value::Object(r.result), json!({"content": "**"}));
    for path in ["/null", "/bare", "/scalar"] {
        let r = call(path, 2000).await.unwrap();
        assert!(r.result.is_empty(), "{path}: {r:?}");
    }
    assert_eq!(
        call("/error200", 2000).await.unwrap_err(),
        CallError::HookError {
            status: 200,
            code: 142,
            error: "nope".into()
        }
    );
    assert!(matches!(
        call("/undefined", 2000).await.unwrap_err(),
        CallError::HookError {
            status: 404,
            code: 1,
            ..
        }
    ));
    let e = call("/500", 2000).await.unwrap_err();
    assert!(
        matches!(&e, CallError::Status { status: 500, body } if body.contains("Internal")),
        "{e:?}"
    );
    assert!(!e.is_timeout());
    assert!(matches!(
        call("/garbage", 2000).await.unwrap_err(),
        CallError::BadAnswer { status: 200, .. }
    ));
    assert!(matches!(
        call("/array", 2000).await.unwrap_err(),
        CallError::BadAnswer { status: 200, .. }
    ));
    assert_eq!(
        call("/big", 2000).await.unwrap_err(),
        CallError::TooLarge {
            status: 200,
            limit: 1024
        }
    );
    let e = call("/slow", 200).await.unwrap_err();
    assert_eq!(e, CallError::Timeout(Duration::from_millis(200)));
    assert!(e.is_timeout());

    let dead = Url::parse(&format!("{}/x", dead_base().await)).unwrap();
    let e = client
        .call(&dead, Duration::from_secs(2), b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::Request(_)), "{e:?}");
    assert_eq!(e.status(), None);
}

#[tokio::test]
async fn timeouts_and_failures_are_counted_apart() {
    let server = serve(|s| match s.path.as_str() {
        "/slow" => None,
        _ => Some((500, "no".into())),
    })
    .await;
    let mut cfg = with_urls(
        section(&server.base()),
        Hook::MessageReceived,
        vec![server.url("/slow")],
    );
    cfg.hook.get_mut("_messageReceived").unwrap().timeout_ms = Some(150);
    let (_dir, store) = store();
    let h = hooks(&cfg, &store);
    assert_eq!(
        h.before(Hook::MessageReceived, msg_params("a")).await,
        Before::Proceed(Map::new())
    );
    h.before(Hook::MessageUpdate, msg_params("a")).await;
    let mr = stats(&h, Hook::MessageReceived);
    assert_eq!((mr.calls, mr.failures, mr.timeouts), (1, 1, 1));
    assert!(mr.latency_p50_us >= 150_000, "{mr:?}");
    let mu = stats(&h, Hook::MessageUpdate);
    assert_eq!((mu.calls, mu.failures, mu.timeouts), (1, 1, 0));
}

/// `/a` wraps the content, `/b` appends "!"; both echo the params they saw.
async fn chain_server() -> Server {
    serve(|s| {
        let content = s.body["content"].as_str().unwrap_or_default().to_owned();
        match s.path.as_str() {
            "/a" => ok(json!({"content": format!("A({content})"), "pushMessage": "p"})),
            "/b" => ok(json!({"content": format!("{content}!")})),
            "/drop" => ok(json!({"drop": true, "code": 1234, "detail": "nope"})),
            "/reject" => ok(json!({"reject": true})),
            "/fail" => Some((500, "down".into())),
            _ => Some((404, "".into())),
        }
    })
    .await
}

#[tokio::test]
async fn chain_passes_changes_along() {
    let mut server = chain_server().await;
    let cfg = with_urls(
        section(&server.base()),
        Hook::MessageReceived,
        vec![server.url("/a"), server.url("/b")],
    );
    let (_dir, store) = store();
    let h = hooks(&cfg, &store);
    let Before::Proceed(result) = h.before(Hook::MessageReceived, msg_params("x")).await else {
        panic!("expected Proceed");
    };
    assert_eq!(result["content"], "A(x)!");
    assert_eq!(result["pushMessage"], "p");
    let a = server.next().await;
    assert_eq!((a.path.as_str(), &a.body["content"]), ("/a", &json!("x")));
    let b = server.next().await;
    assert_eq!(
        (b.path.as_str(), &b.body["content"]),
        ("/b", &json!("A(x)"))
    );
    // Only keys the params have are overlaid.
    assert!(b.body.get("pushMessage").is_none());
    assert_eq!(b.body["fromPeer"], "Tom");
}

#[tokio::test]
async fn drop_and_reject_stop_the_chain() {
    let mut server = chain_server().await;
    let cfg = with_urls(
        with_urls(
            section(&server.base()),
            Hook::MessageReceived,
            vec![server.url("/a"), server.url("/drop"), server.url("/b")],
        ),
        Hook::ConversationAdd,
        vec![server.url("/reject"), server.url("/b")],
    );
    let (_dir, store) = store();
    let h = hooks(&cfg, &store);
    assert_eq!(
        h.before(Hook::MessageReceived, msg_params("x")).await,
        Before::Rejected {
            code: 1234,
            detail: "nope".into()
        }
    );
    assert_eq!(server.next().await.path, "/a");
    assert_eq!(server.next().await.path, "/drop");
    assert_eq!(
        h.before(
            Hook::ConversationAdd,
            json!({"initBy": "Tom", "members": ["Jerry"], "convId": "c"})
        )
        .await,
        Before::Rejected {
            code: 4305,
            detail: "CONVERSATION_REJECTED_BY_APP".into()
        }
    );
    assert_eq!(server.next().await.path, "/reject");
    assert!(
        server.none_pending(),
        "/b must not be called after a drop or reject"
    );
    assert_eq!(stats(&h, Hook::MessageReceived).rejections, 1);
    assert_eq!(stats(&h, Hook::ConversationAdd).rejections, 1);
}

#[tokio::test]
async fn failure_is_open_or_closed_by_policy() {
    let server = chain_server().await;
    let mut cfg = with_urls(
        section(&server.base()),
        Hook::MessageReceived,
        vec![server.url("/a"), server.url("/fail"), server.url("/b")],
    );
    let (_dir, store) = store();
    let h = hooks(&cfg, &store);
    // Open: go on with what the chain had before the failure.
    let Before::Proceed(result) = h.before(Hook::MessageReceived, msg_params("x")).await else {
        panic!("expected Proceed");
    };
    assert_eq!(result["content"], "A(x)");

    cfg.fail_policy = FailPolicy::Closed;
    h.reload(&cfg).unwrap();
    match h.before(Hook::MessageReceived, msg_params("x")).await {
        Before::Failed { detail } => {
            assert!(
                detail.contains("_messageReceived") && detail.contains("500"),
                "{detail}"
            )
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn off_hooks_are_not_called_or_queued() {
    let mut server = serve(|_| ok(json!({}))).await;
    let (_dir, store) = store();
    let h = hooks(&HooksSection::default(), &store);
    assert!(Hook::ALL.iter().all(|&hook| !h.enabled(hook)));
    assert_eq!(
        h.before(Hook::MessageReceived, msg_params("x")).await,
        Before::Proceed(Map::new())
    );
    h.after(Hook::MessageSent, json!({}), "c");
    assert_eq!(h.outbox_len(), 0);

    let mut cfg = section(&server.base());
    cfg.hook.insert(
        "after_message_sent".into(),
        HookOverride {
            enabled: false,
            ..HookOverride::default()
        },
    );
    h.reload(&cfg).unwrap();
    assert!(h.enabled(Hook::MessageReceived));
    assert!(
        !h.enabled(Hook::MessageSent),
        "the alias turns _messageSent off"
    );
    h.after(Hook::MessageSent, json!({}), "c");
    assert_eq!(h.outbox_len(), 0);
    h.before(Hook::MessageReceived, msg_params("x")).await;
    assert_eq!(server.next().await.path, "/1.1/functions/_messageReceived");
}

#[tokio::test]
async fn after_hooks_arrive_in_order_per_key() {
    let mut server = serve(|_| ok(json!({}))).await;
    let (_dir, store) = store();
    let h = hooks(&section(&server.base()), &store);
    let (stop, stop_rx) = broadcast::channel(1);
    let task = h.start(stop_rx);
    for i in 0..30u64 {
        h.after(
            Hook::MessageSent,
            json!({"i": i, "convId": format!("c{}", i % 3)}),
            &format!("c{}", i % 3),
        );
    }
    let mut per_key: HashMap<String, Vec<u64>> = HashMap::new();
    for _ in 0..30 {
        let s = server.next().await;
        assert_eq!(s.path, "/1.1/functions/_messageSent");
        per_key
            .entry(s.body["convId"].as_str().unwrap().to_owned())
            .or_default()
            .push(s.body["i"].as_u64().unwrap());
    }
    for (key, got) in &per_key {
        let want: Vec<u64> = (0..30).filter(|i| format!("c{}", i % 3) == *key).collect();
        assert_eq!(got, &want, "order of {key}");
    }
    eventually("the outbox to empty", || h.outbox_len() == 0).await;
    assert_eq!(stats(&h, Hook::MessageSent).outbox_depth, 0);
    assert_eq!(stats(&h, Hook::MessageSent).calls, 30);
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn failed_after_hooks_are_retried_in_order() {
    // The first three calls fail, one of them by timing out.
    let mut server = serve(|s| match s.n {
        0 | 2 => Some((500, "down".into())),
        1 => None,
        _ => ok(json!({})),
    })
    .await;
    let mut cfg = section(&server.base());
    // Long enough that only the call that never answers times out.
    cfg.timeout_ms = 1000;
    let (_dir, store) = store();
    let h = hooks(&cfg, &store);
    let (_stop, stop_rx) = broadcast::channel(1);
    h.start(stop_rx);
    for i in 0..3 {
        h.after(
            Hook::ConversationStarted,
            json!({"convId": "c", "i": i}),
            "c",
        );
    }
    let got: Vec<Value> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(server.next().await.body["i"].clone());
        }
        v
    };
    // Record 0 until it is accepted, then the rest, in order.
    assert_eq!(
        got,
        [json!(0), json!(0), json!(0), json!(0), json!(1), json!(2)]
    );
    eventually("the outbox to empty", || h.outbox_len() == 0).await;
    let s = stats(&h, Hook::ConversationStarted);
    assert_eq!((s.calls, s.failures, s.timeouts), (6, 3, 1));
}

#[tokio::test]
async fn fan_out_retries_only_the_failing_endpoint() {
    // Two servers, so each one's request count is its own.
    let mut server = serve(|s| match s.n {
        0 => Some((503, "later".into())),
        _ => ok(json!({})),
    })
    .await;
    let mut steady = serve(|_| ok(json!({}))).await;
    let cfg = with_urls(
        section(&server.base()),
        Hook::ClientOnline,
        vec![steady.url("/steady"), server.url("/flaky")],
    );
    let (_dir, store) = store();
    let h = hooks(&cfg, &store);
    let (_stop, stop_rx) = broadcast::channel(1);
    h.start(stop_rx);
    h.after(Hook::ClientOnline, json!({"peerId": "Tom"}), "Tom");
    assert_eq!(steady.next().await.body["peerId"], "Tom");
    for _ in 0..2 {
        assert_eq!(server.next().await.path, "/flaky");
    }
    eventually("the outbox to empty", || h.outbox_len() == 0).await;
    assert!(
        steady.none_pending(),
        "the endpoint that accepted is not called again"
    );
}

#[tokio::test]
async fn outbox_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Arc::new(Store::open(dir.path(), 8 << 20, false).unwrap());
        let h = hooks(&section(&dead_base().await), &store);
        for i in 0..5 {
            h.after(Hook::MessageSent, json!({"i": i}), "c");
        }
        h.after(Hook::ClientOffline, json!({"peerId": "Tom"}), "Tom");
        assert_eq!(h.outbox_len(), 6);
        // What a graceful shutdown does.
        store.flush_durable().unwrap();
    }
    let mut server = serve(|_| ok(json!({}))).await;
    let store = Arc::new(Store::open(dir.path(), 8 << 20, false).unwrap());
    let h = hooks(&section(&server.base()), &store);
    assert_eq!(stats(&h, Hook::MessageSent).outbox_depth, 5);
    assert_eq!(stats(&h, Hook::ClientOffline).outbox_depth, 1);
    let (_stop, stop_rx) = broadcast::channel(1);
    h.start(stop_rx);
    let mut got = Vec::new();
    let mut offline = 0;
    for _ in 0..6 {
        let s = server.next().await;
        match s.path.as_str() {
            "/1.1/functions/_messageSent" => got.push(s.body["i"].as_u64().unwrap()),
            "/1.1/functions/_clientOffline" => offline += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
    assert_eq!(offline, 1);
    eventually("the outbox to empty", || h.outbox_len() == 0).await;
    assert!(server.none_pending());
}

#[tokio::test]
async fn full_outbox_drops_and_counts() {
    let mut cfg = section(&dead_base().await);
    cfg.outbox_capacity = 3;
    let (_dir, store) = store();
    let h = hooks(&cfg, &store);
    for i in 0..5 {
        h.after(Hook::MessageSent, json!({"i": i}), "c");
    }
    assert_eq!(h.outbox_len(), 3);
    let s = stats(&h, Hook::MessageSent);
    assert_eq!((s.outbox_depth, s.dropped), (3, 2));
    // The oldest are kept.
    let kept: Vec<String> = store
        .outbox_peek(10)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.params)
        .collect();
    assert_eq!(kept, [r#"{"i":0}"#, r#"{"i":1}"#, r#"{"i":2}"#]);
}

#[tokio::test]
async fn reload_redirects_queued_calls_and_start_is_once() {
    let (_dir, store) = store();
    let h = hooks(&section(&dead_base().await), &store);
    let (stop, stop_rx) = broadcast::channel(1);
    let task = h.start(stop_rx);
    // A second start is a no-op task.
    let (_s2, rx2) = broadcast::channel(1);
    tokio::time::timeout(WAIT, h.start(rx2))
        .await
        .unwrap()
        .unwrap();
    h.after(Hook::TypingStarted, json!({"n": 1}), "c");
    let mut server = serve(|_| ok(json!({}))).await;
    h.reload(&section(&server.base())).unwrap();
    let s = server.next().await;
    assert_eq!(s.path, "/1.1/functions/_typingStarted");
    eventually("the outbox to empty", || h.outbox_len() == 0).await;
    drop(stop);
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_credentials_are_an_error_not_a_panic() {
    let (_dir, store) = store();
    let err = Hooks::new(
        &section("http://127.0.0.1:1"),
        APP_ID,
        "bad\nkey",
        store.clone(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, HookError::Header { name: "X-LC-Key" }),
        "{err}"
    );
}

#[test]
fn bin_content_is_standard_base64() {
    assert_eq!(encode_bin(b"\x00\xffhi"), "AP9oaQ==");
    assert_eq!(decode_bin("AP9oaQ==").unwrap(), b"\x00\xffhi");
    assert!(decode_bin("not base64!").is_err());
}
