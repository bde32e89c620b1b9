//! Compatibility with LeanCloud's own hook runtime: tests/leanengine/app.js
//! holds the hook examples of LeanCloud's docs, served by the real
//! `leanengine` npm package (3.8.0) in a node child process, and real QUIC
//! clients see each example's effect through Tidings.
//!
//! Needs node and `tests/leanengine/node_modules` (`npm ci` there; `.ci/run`
//! does it). Without them the test fails rather than skips.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tidings::client::ClientError;
use tidings::config::{Config, FailPolicy, HookOverride};
use tidings::hooks::Hook;
use tidings::protocol::ErrorBody;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APP_ID: &str = "tidings-leanengine-test";
const APP_KEY: &str = "tidings-leanengine-app-key";
const MASTER_KEY: &str = "tidings-leanengine-master-key";
const HOOK_KEY: &str = "tidings-leanengine-hook-key";

/// The hooks app.js defines; the others are turned off in the server.
const DEFINED: [&str; 5] = [
    "_messageReceived",
    "_receiversOffline",
    "_conversationStart",
    "_conversationRemove",
    "_conversationUpdate",
];

/// How long node may take to start and answer its health check.
const STARTUP: Duration = Duration::from_secs(30);

fn app_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/leanengine")
}

/// A minimal HTTP/1.0 GET (no chunking, the server closes when done):
/// status and body.
async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// The node hook app, killed on drop.
struct NodeApp {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for NodeApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeApp {
    async fn start() -> NodeApp {
        let dir = app_dir();
        common::node::require_packages(&dir, &["leanengine"]);
        let node = common::node::find_node();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("node.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(node)
            .arg("app.js")
            .current_dir(&dir)
            // Only what a LeanEngine app gets; nothing points it anywhere else.
            .env_clear()
            .env("LEANCLOUD_APP_ID", APP_ID)
            .env("LEANCLOUD_APP_KEY", APP_KEY)
            .env("LEANCLOUD_APP_MASTER_KEY", MASTER_KEY)
            .env("LEANCLOUD_APP_HOOK_KEY", HOOK_KEY)
            .env("LEANCLOUD_APP_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("node starts");
        let mut app = NodeApp {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            _dir: tmp,
        };
        let deadline = tokio::time::Instant::now() + STARTUP;
        loop {
            if let Some(status) = app.child.try_wait().unwrap() {
                panic!("node exited with {status}:\n{}", app.output());
            }
            if let Ok((200, body)) = http_get(app.addr, "/__engine/1/ping").await {
                let ping: Value = serde_json::from_str(&body).expect("ping answers JSON");
                assert_eq!(ping["version"], "3.8.0", "leanengine 3.8.0: {ping}");
                return app;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node did not answer /__engine/1/ping within {STARTUP:?}:\n{}",
                app.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every hook call app.js recorded: `{hook, params, result}`.
    async fn calls(&self) -> Vec<Value> {
        let (status, body) = http_get(self.addr, "/calls").await.expect("GET /calls");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("/calls is JSON")
    }

    /// The first recorded call to `hook` matching `pred` that has its
    /// result, waiting at most `WAIT`.
    async fn wait_call(&self, hook: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let calls = self.calls().await;
            if let Some(c) = calls
                .iter()
                .find(|c| c["hook"] == hook && c.get("result").is_some() && pred(&c["params"]))
            {
                return c.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no matching {hook} call within {WAIT:?}; calls: {calls:#?}\nnode output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Hooks to the node app, fail-closed so that every hook call must succeed
/// (a 401 from LeanEngine's checks would fail the request); the hooks
/// app.js does not define are off.
fn hooks_to(app: &NodeApp, hook_key: &str) -> impl FnOnce(&mut Config) {
    let base = app.base_url();
    let hook_key = hook_key.to_owned();
    move |c| {
        c.auth.app_id = Some(APP_ID.into());
        c.auth.master_key = Some(MASTER_KEY.into());
        c.hooks.base_url = Some(base);
        c.hooks.hook_key = Some(hook_key);
        c.hooks.fail_policy = FailPolicy::Closed;
        for h in Hook::ALL {
            if !DEFINED.contains(&h.name()) {
                let off = HookOverride {
                    enabled: false,
                    ..HookOverride::default()
                };
                c.hooks.hook.insert(h.name().into(), off);
            }
        }
    }
}

fn server_error<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorBody {
    match r {
        Err(ClientError::Server(body)) => body,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leancloud_hook_examples_run_unchanged_on_leanengine() {
    let app = NodeApp::start().await;
    let s = TestServer::start_with(hooks_to(&app, HOOK_KEY)).await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let (_spike, _sev) = s.connect("Spike").await;
    let (_bast, _bev) = s.connect("Bast").await;

    // onIMConversationStart: fewer than 4 initial members is 1234.
    let e = server_error(tom.create_conversation(group(&["Jerry"])).await);
    assert_eq!(e.code, 1234, "{e:?}");
    assert_eq!(
        e.detail,
        "Please invite at least 3 people to the conversation"
    );
    let c = app
        .wait_call("_conversationStart", |p| {
            p["members"] == json!(["Jerry", "Tom"])
        })
        .await;
    assert_eq!(c["params"]["initBy"], "Tom");
    assert_eq!(c["result"]["reject"], true);
    assert!(tom.conversations(10).await.unwrap().is_empty());
    // Four members, the creator included, is fine.
    let mut four = group(&["Jerry", "Spike", "Bast"]);
    four.name = Some("Staffed".into());
    let conv = tom.create_conversation(four).await.unwrap().id;
    let c = app
        .wait_call("_conversationStart", |p| {
            p["members"].as_array().is_some_and(|m| m.len() == 4)
        })
        .await;
    assert_eq!(c["params"]["attr"], json!({ "name": "Staffed" }));
    // Tyke joins too, and stays offline. (_conversationAdd is off.)
    tom.add_members(conv, vec!["Tyke".into()]).await.unwrap();

    // onIMMessageReceived: "crap" becomes "**".
    tom.send_text(conv, "Holy crap!").await.unwrap();
    let got = jev.next_message(WAIT).await.expect("Jerry gets it");
    assert_eq!(text(&got), "Holy **!");
    let history = full_history(&jerry, conv).await;
    assert_eq!(history.iter().map(text).collect::<Vec<_>>(), ["Holy **!"]);
    let c = app
        .wait_call("_messageReceived", |p| p["content"] == "Holy crap!")
        .await;
    assert_eq!(c["params"]["fromPeer"], "Tom");
    assert_eq!(c["params"]["convId"], conv.to_string());
    assert_eq!(c["result"], json!({ "content": "Holy **!" }));

    // onIMReceiversOffline: Tyke is offline; the hook builds a push.
    let c = app
        .wait_call("_receiversOffline", |p| p["content"] == "Holy **!")
        .await;
    assert_eq!(c["params"]["offlinePeers"], json!(["Tyke"]));
    assert_eq!(c["params"]["fromPeer"], "Tom");
    let push: Value = serde_json::from_str(
        c["result"]["pushMessage"]
            .as_str()
            .expect("pushMessage is JSON text"),
    )
    .unwrap();
    assert_eq!(
        push,
        json!({ "badge": "Increment", "sound": "default", "_profile": "dev", "alert": "Holy *" })
    );

    // onIMConversationRemove: staff cannot be removed (1928); others can.
    let e = server_error(tom.remove_members(conv, vec!["Bast".into()]).await);
    assert_eq!(
        (e.code, e.detail.as_str()),
        (1928, "You cannot remove the staff member Bast")
    );
    tom.remove_members(conv, vec!["Spike".into()])
        .await
        .unwrap();
    let members = tom.get_conversation(conv).await.unwrap().members;
    assert_eq!(members, ["Bast", "Jerry", "Tom", "Tyke"]);

    // onIMConversationUpdate: no renaming (1949); other attributes are fine,
    // and so is muting. That hook returns nothing then: LeanEngine answers
    // without a result, which means "go on".
    let e = server_error(tom.update(conv, Some("Renamed".into()), None).await);
    assert_eq!(
        (e.code, e.detail.as_str()),
        (1949, "The name of the conversation cannot be updated.")
    );
    tom.update(conv, None, Some(r#"{"topic":"cats"}"#.into()))
        .await
        .unwrap();
    tom.mute(conv).await.unwrap();
    let info = tom.get_conversation(conv).await.unwrap();
    assert_eq!(info.name.as_deref(), Some("Staffed"));
    assert_eq!(info.attr.as_deref(), Some(r#"{"topic":"cats"}"#));
    assert!(info.muted);
    let c = app
        .wait_call("_conversationUpdate", |p| p.get("mute").is_some())
        .await;
    assert_eq!(
        c["params"],
        json!({ "initBy": "Tom", "convId": conv.to_string(), "mute": true })
    );

    // Only the hooks app.js defines were called.
    for c in app.calls().await {
        let hook = c["hook"].as_str().unwrap();
        assert!(DEFINED.contains(&hook), "unexpected call {c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leanengine_refuses_a_wrong_hook_key() {
    let app = NodeApp::start().await;
    let s = TestServer::start_with(hooks_to(&app, "not-the-hook-key")).await;
    let (tom, _tev) = s.connect("Tom").await;
    // LeanEngine answers 401; fail-closed, that is LeanCloud's 4305 / 4402.
    let e = server_error(tom.create_conversation(group(&["A", "B", "C"])).await);
    assert_eq!(e.code, 4305, "{e:?}");
    assert!(e.detail.contains("401"), "{e:?}");
    // The hook never ran.
    assert!(app.calls().await.is_empty());
}
