//! LeanCloud's own JS SDK against Tidings' WebSocket door (issue 15): each
//! scenario file in tests/leancloud-sdk/ drives the real `leancloud-realtime`
//! (5.0.0-rc.8 and 4.3.1, pinned by its package-lock.json) against a real
//! server on 127.0.0.1, one `node --test` process per file.
//!
//! Beside the env the scenarios read (TIDINGS_WS, TIDINGS_HTTP,
//! TIDINGS_APP_ID, TIDINGS_MASTER_KEY, TIDINGS_APP_KEY), the harness offers:
//! - TIDINGS_CONTROL: a TCP socket of JSON lines on which node asks the
//!   harness for what only the server side can do (the admin API, a QUIC
//!   client, cutting sockets). Not stdin: `node --test` runs the file in a
//!   child that does not get ours.
//! - TIDINGS_WS_DROPPABLE: a TCP relay in front of the door that `drop_ws`
//!   cuts, as a server or network drop would, while the server keeps its
//!   state (so the SDK's reconnect by session token is what is tested).
//!
//! Needs node and `tests/leancloud-sdk/node_modules` (`npm ci` there;
//! `.ci/run` does it); without them the tests fail rather than skip. Every
//! run's full output, the SDK's debug log (`DEBUG=LC:*`) included, is kept in
//! `target/tmp/leancloud-sdk/<scenario>.log`; a failure prints its tail.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::admin::Admin;
use common::*;
use serde_json::{Value, json};
use tidings::client::{Client, ClientEvent, ClientOptions, Events, Signer};
use tidings::config::Config;
use tidings::protocol::{ConvId, ConvKind, CreateConversation, Event, SendMessage};
use tidings::transport::ServerTrust;
use tidings::transport::tls::parse_fingerprint;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The longest one scenario file may run, all its tests together.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);
/// node's own per-test bound (`--test-timeout`), below the file's.
const NODE_TEST_TIMEOUT_MS: u64 = 120_000;
/// Lines of the log a failure prints (the whole log stays on disk).
const TAIL_LINES: usize = 400;

// ---- the door under test -------------------------------------------------
//
// The only places that name the gateway's API. TODO(issue 15): two parts
// are not in the server yet: the app key (`auth.app_key`; until then the
// SDK's X-LC-Key carries a placeholder, which only the REST calls see) and
// conversation signatures. When they land these should read:
//   app_key:                        s.running().credentials().app_key.clone()
//   enable_conversation_signatures: c.auth.conversation_signatures = true;

fn enable_door(c: &mut Config) {
    c.gateway.enabled = true;
    c.gateway.listen = "127.0.0.1:0".parse().unwrap();
}

fn door_addr(s: &TestServer) -> Option<SocketAddr> {
    s.running().gateway_addr()
}

fn app_key(s: &TestServer) -> String {
    s.running().credentials().app_key.clone()
}

fn enable_conversation_signatures(c: &mut Config) {
    c.auth.conversation_signatures = true;
    c.auth.blacklist_signatures = true;
}

// ---- the scenarios -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_connect() {
    run("connect.test.js", |_| {}, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_conversations() {
    run("conversations.test.js", |_| {}, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_messages() {
    run("messages.test.js", |_| {}, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_offline() {
    run("offline.test.js", |_| {}, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_session() {
    run("session.test.js", |_| {}, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_chatroom() {
    run("chatroom.test.js", |_| {}, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_service_conversation() {
    run("service.test.js", |_| {}, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_and_quic_in_one_conversation() {
    run("quic.test.js", |_| {}, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_temporary_conversation() {
    run("temporary.test.js", |_| {}, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_member_mute() {
    run("mute.test.js", |_| {}, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_blacklist() {
    run("blacklist.test.js", |_| {}, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_conversation_signatures() {
    run(
        "signatures.test.js",
        enable_conversation_signatures,
        &[("TIDINGS_CONV_SIGNATURES", "1")],
    )
    .await;
}

// ---- the runner ----------------------------------------------------------

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/leancloud-sdk")
}

fn log_path(file: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("leancloud-sdk");
    std::fs::create_dir_all(&dir).expect("log dir");
    dir.join(format!("{file}.log"))
}

/// Starts a server with the door (changed by `tweak`), the relay and the
/// control socket, runs `node --test FILE`, and fails with node's output
/// unless it exits 0 within `SCENARIO_TIMEOUT`.
async fn run(file: &str, tweak: impl FnOnce(&mut Config), extra_env: &[(&str, &str)]) {
    let dir = suite_dir();
    let node = common::node::find_node();
    common::node::require_packages(&dir, &["leancloud-realtime", "leancloud-realtime-4"]);
    assert!(dir.join(file).is_file(), "no scenario file {file}");

    let server = TestServer::start_with(|c| {
        enable_door(c);
        tweak(c);
    })
    .await;
    let door = door_addr(&server).unwrap_or_else(|| {
        panic!("the server started without its WebSocket door (gateway.enabled is off?)")
    });
    let relay = Relay::start(door).await;
    let control = Control::start(&server, relay.clone()).await;

    let creds = server.running().credentials();
    let log = log_path(file);
    let out = std::fs::File::create(&log).expect("log file");
    let mut cmd = tokio::process::Command::new(node);
    cmd.arg("--test")
        .arg("--test-force-exit")
        .arg("--test-reporter=spec")
        .arg(format!("--test-timeout={NODE_TEST_TIMEOUT_MS}"))
        .arg(file)
        .current_dir(&dir)
        .env("TIDINGS_WS", format!("ws://{door}/"))
        .env("TIDINGS_HTTP", format!("http://{door}"))
        .env("TIDINGS_WS_DROPPABLE", format!("ws://{}/", relay.addr))
        .env("TIDINGS_CONTROL", control.to_string())
        .env("TIDINGS_APP_ID", &creds.app_id)
        .env("TIDINGS_MASTER_KEY", &creds.master_key)
        .env("TIDINGS_APP_KEY", app_key(&server))
        .env("DEBUG", "LC:*")
        .env("DEBUG_COLORS", "0")
        .env("NO_COLOR", "1")
        .env_remove("NODE_OPTIONS")
        .env_remove("TIDINGS_CONV_SIGNATURES")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log fd"))
        .stderr(out)
        .kill_on_drop(true);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("node starts");
    let status = tokio::time::timeout(SCENARIO_TIMEOUT, child.wait()).await;
    let verdict = match status {
        Ok(Ok(s)) if s.success() => None,
        Ok(Ok(s)) => Some(format!("node exited with {s}")),
        Ok(Err(e)) => Some(format!("waiting for node: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Some(format!("node did not finish within {SCENARIO_TIMEOUT:?}"))
        }
    };
    if let Some(why) = verdict {
        panic!("{file}: {why}\n{}", report(&log));
    }
}

/// The failed steps first, then the tail of the log, and where the rest is.
fn report(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("FAILED step:"))
        .collect();
    // The spec reporter's closing summary: each failed test and its error.
    let summary = text
        .rfind("\u{2716} failing tests:")
        .map_or("", |at| &text[at..]);
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    format!(
        "---- failed steps ----\n{}\n---- node's summary ----\n{}\n---- last {} of {} lines of {} ----\n{}",
        failed.join("\n"),
        summary,
        tail.len(),
        lines.len(),
        log.display(),
        tail.join("\n")
    )
}

// ---- the droppable relay -------------------------------------------------

/// A TCP relay to the door whose connections `drop_all` cuts at once.
#[derive(Clone)]
struct Relay {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Relay {
    async fn start(to: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay binds");
        let addr = listener.local_addr().expect("relay addr");
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let list = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                list.lock().expect("relay list").push(task.abort_handle());
            }
        });
        Relay { addr, conns }
    }

    /// Cuts every connection made so far (dropping both sockets); how many
    /// were still open.
    fn drop_all(&self) -> usize {
        let conns: Vec<AbortHandle> = std::mem::take(&mut *self.conns.lock().expect("relay list"));
        let mut open = 0;
        for c in conns {
            if !c.is_finished() {
                c.abort();
                open += 1;
            }
        }
        open
    }
}

// ---- the control socket --------------------------------------------------

/// What the control socket needs of the server, owned so its task outlives
/// no borrow.
struct Control {
    admin: Admin,
    relay: Relay,
    quic: QuicTarget,
    clients: tokio::sync::Mutex<HashMap<String, (Client, Events)>>,
}

struct QuicTarget {
    addr: SocketAddr,
    fingerprint: String,
    app_id: String,
    master_key: String,
}

impl QuicTarget {
    fn options(&self, client_id: &str) -> Result<ClientOptions, String> {
        let pin = parse_fingerprint(&self.fingerprint).map_err(|e| format!("fingerprint: {e}"))?;
        Ok(ClientOptions::new(
            self.addr,
            ServerTrust::Pin(pin),
            self.app_id.clone(),
            Signer::MasterKey(self.master_key.clone()),
            client_id,
        ))
    }
}

impl Control {
    /// Listens on 127.0.0.1:0 and serves every connection; its address.
    async fn start(server: &TestServer, relay: Relay) -> SocketAddr {
        let r = server.running();
        let ctl = Arc::new(Control {
            admin: Admin::of(server),
            relay,
            quic: QuicTarget {
                addr: r.local_addr(),
                fingerprint: r.fingerprint().to_owned(),
                app_id: r.credentials().app_id.clone(),
                master_key: r.credentials().master_key.clone(),
            },
            clients: tokio::sync::Mutex::default(),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("control binds");
        let addr = listener.local_addr().expect("control addr");
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let ctl = ctl.clone();
                tokio::spawn(async move { ctl.serve(sock).await });
            }
        });
        addr
    }

    async fn serve(&self, sock: TcpStream) {
        let (rd, mut wr) = sock.into_split();
        let mut lines = BufReader::new(rd).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let answer = match serde_json::from_str::<Value>(&line) {
                Ok(req) => match self.handle(&req).await {
                    Ok(mut v) => {
                        v["ok"] = json!(true);
                        v
                    }
                    Err(e) => json!({"ok": false, "error": e}),
                },
                Err(e) => json!({"ok": false, "error": format!("not JSON: {e}")}),
            };
            let mut text = answer.to_string();
            text.push('\n');
            if wr.write_all(text.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    async fn handle(&self, req: &Value) -> Result<Value, String> {
        let op = str_field(req, "op")?;
        match op {
            "drop_ws" => Ok(json!({"dropped": self.relay.drop_all()})),
            "kick" => {
                let client = str_field(req, "client")?;
                let mut body = json!({});
                if let Some(r) = req.get("reason") {
                    body["reason"] = r.clone();
                }
                let a = self
                    .admin
                    .post(&format!("/1.2/rtm/clients/{client}/kick"), body)
                    .await;
                ok_status(&a, 200)?;
                Ok(json!({}))
            }
            "service_create" => {
                let name = str_field(req, "name")?;
                let a = self
                    .admin
                    .post("/1.2/rtm/service-conversations", json!({"name": name}))
                    .await;
                ok_status(&a, 201)?;
                let conv = a.body["objectId"].as_str().ok_or("no objectId")?;
                Ok(json!({"conv": conv}))
            }
            "service_subscribe" => {
                let conv = str_field(req, "conv")?;
                let client = str_field(req, "client")?;
                let path = format!("/1.2/rtm/service-conversations/{conv}/subscribers");
                let a = self.admin.post(&path, json!({"client_id": client})).await;
                ok_status(&a, 200)?;
                Ok(json!({}))
            }
            "service_broadcast" => {
                let conv = str_field(req, "conv")?;
                let path = format!("/1.2/rtm/service-conversations/{conv}/broadcasts");
                let body = json!({
                    "from_client": str_field(req, "from")?,
                    "message": str_field(req, "message")?,
                });
                let a = self.admin.post(&path, body).await;
                ok_status(&a, 200)?;
                Ok(json!({"msgId": a.body["msg-id"], "timestamp": a.body["timestamp"]}))
            }
            "service_send" => {
                let conv = str_field(req, "conv")?;
                let path = format!("/1.2/rtm/service-conversations/{conv}/messages");
                let body = json!({
                    "from_client": str_field(req, "from")?,
                    "to_clients": req.get("to").cloned().unwrap_or(json!([])),
                    "message": str_field(req, "message")?,
                });
                let a = self.admin.post(&path, body).await;
                ok_status(&a, 200)?;
                Ok(json!({"msgId": a.body["msg-id"], "timestamp": a.body["timestamp"]}))
            }
            "quic_login" => {
                let id = str_field(req, "client")?;
                let opts = self.quic.options(id)?;
                let (c, mut ev) = Client::connect(opts)
                    .await
                    .map_err(|e| format!("QUIC login of {id}: {e}"))?;
                // The login's sync ends with SyncDone (push) or Unread (pull).
                let _ = ev
                    .wait_for(WAIT, |e| match e {
                        ClientEvent::Server(Event::SyncDone { .. } | Event::Unread { .. }) => {
                            Some(())
                        }
                        _ => None,
                    })
                    .await;
                self.clients.lock().await.insert(id.to_owned(), (c, ev));
                Ok(json!({}))
            }
            "quic_next_message" => {
                let id = str_field(req, "client")?;
                let conv = conv_field(req)?;
                let ms = req.get("ms").and_then(Value::as_u64).unwrap_or(10_000);
                let mut clients = self.clients.lock().await;
                let (_, ev) = clients
                    .get_mut(id)
                    .ok_or_else(|| format!("no QUIC client {id}"))?;
                let msg = ev
                    .wait_for(Duration::from_millis(ms), |e| match e {
                        ClientEvent::Server(Event::Message { msg, .. }) if msg.conv == conv => {
                            Some(msg.clone())
                        }
                        _ => None,
                    })
                    .await
                    .ok_or_else(|| format!("{id}: no message in {conv} within {ms} ms"))?;
                Ok(json!({
                    "msgId": msg.msg_id,
                    "from": msg.from,
                    "timestamp": msg.timestamp,
                    "content": text(&msg),
                    "mentioned": msg.mentioned,
                    "mentionList": msg.mention_list,
                    "mentionAll": msg.mention_all,
                }))
            }
            "quic_send" => {
                let id = str_field(req, "client")?;
                let conv = conv_field(req)?;
                let content = str_field(req, "content")?;
                let clients = self.clients.lock().await;
                let (c, _) = clients
                    .get(id)
                    .ok_or_else(|| format!("no QUIC client {id}"))?;
                let sent = c
                    .send(SendMessage::text(conv, content))
                    .await
                    .map_err(|e| format!("QUIC send: {e}"))?;
                Ok(json!({"msgId": sent.msg_id, "timestamp": sent.timestamp}))
            }
            "quic_recall" => {
                let id = str_field(req, "client")?;
                let conv = conv_field(req)?;
                let msg_id = str_field(req, "msgId")?;
                let clients = self.clients.lock().await;
                let (c, _) = clients
                    .get(id)
                    .ok_or_else(|| format!("no QUIC client {id}"))?;
                c.recall(conv, msg_id)
                    .await
                    .map_err(|e| format!("QUIC recall: {e}"))?;
                Ok(json!({}))
            }
            "quic_create" => {
                let id = str_field(req, "client")?;
                let members: Vec<String> = req
                    .get("members")
                    .and_then(Value::as_array)
                    .ok_or("members: an array")?
                    .iter()
                    .filter_map(|m| m.as_str().map(str::to_owned))
                    .collect();
                let name = req.get("name").and_then(Value::as_str).map(str::to_owned);
                let clients = self.clients.lock().await;
                let (c, _) = clients
                    .get(id)
                    .ok_or_else(|| format!("no QUIC client {id}"))?;
                let info = c
                    .create_conversation(CreateConversation {
                        members,
                        name,
                        attr: None,
                        unique: false,
                        kind: ConvKind::Normal,
                        sig: None,
                        ttl_secs: None,
                    })
                    .await
                    .map_err(|e| format!("QUIC create: {e}"))?;
                Ok(json!({"conv": info.id.to_string()}))
            }
            other => Err(format!("unknown op {other:?}")),
        }
    }
}

fn str_field<'a>(req: &'a Value, key: &str) -> Result<&'a str, String> {
    req.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{key}: a string is required"))
}

fn conv_field(req: &Value) -> Result<ConvId, String> {
    let s = str_field(req, "conv")?;
    s.parse()
        .map_err(|_| format!("conv {s:?} is not a conversation id"))
}

fn ok_status(a: &common::admin::Answer, status: u16) -> Result<(), String> {
    if a.status == status {
        Ok(())
    } else {
        Err(format!("admin API answered {} {}", a.status, a.body))
    }
}
