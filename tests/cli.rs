//! The real `tidings` binary against a real server: group management,
//! signals, keep-alives, connect timeouts, start-up failures and what a
//! one-shot `send` reports. Every wait is bounded by `WAIT`.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};

use common::{TestServer, WAIT, eventually, text};
use serde_json::Value;
use tidings::client::ClientEvent;
use tidings::protocol::ConvId;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

fn tidings() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidings"));
    cmd.env_remove("TIDINGS_CONFIG")
        .env("TIDINGS_LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs the binary to completion, bounded by `WAIT`.
async fn run(cmd: &mut Command) -> Output {
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("the command finishes within WAIT")
        .expect("the command runs")
}

/// `tidings ARGS… --data-dir DIR` as a client of the test server.
async fn client(s: &TestServer, args: &[&str]) -> Output {
    run(tidings().args(args).arg("--data-dir").arg(s.data_dir())).await
}

/// The JSON lines of a client command that must succeed.
async fn json_lines(s: &TestServer, args: &[&str]) -> Vec<Value> {
    let out = client(s, args).await;
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

async fn one(s: &TestServer, args: &[&str]) -> Value {
    let mut lines = json_lines(s, args).await;
    assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
    lines.remove(0)
}

fn strings(v: &Value) -> Vec<&str> {
    let mut out: Vec<&str> = v
        .as_array()
        .expect("an array")
        .iter()
        .map(|m| m.as_str().expect("a string"))
        .collect();
    out.sort_unstable();
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_commands_make_and_manage_a_group() {
    let s = TestServer::start().await;
    let created = one(
        &s,
        &[
            "conversation",
            "create",
            "--as",
            "Tom",
            "--member",
            "Jerry",
            "--name",
            "Team",
        ],
    )
    .await;
    assert_eq!(strings(&created["members"]), ["Jerry", "Tom"]);
    assert_eq!(created["name"], "Team");
    assert_eq!(created["creator"], "Tom");
    let conv = created["convId"].as_str().expect("convId").to_owned();
    let id: ConvId = conv.parse().expect("a conversation id");

    let joined = one(&s, &["conversation", "join", "--as", "Spike", &conv]).await;
    assert_eq!(strings(&joined["members"]), ["Jerry", "Spike", "Tom"]);
    let added = one(&s, &["conversation", "add", "--as", "Tom", &conv, "Tyke"]).await;
    assert_eq!(
        strings(&added["members"]),
        ["Jerry", "Spike", "Tom", "Tyke"]
    );
    let removed = one(
        &s,
        &["conversation", "remove", "--as", "Tom", &conv, "Tyke"],
    )
    .await;
    assert_eq!(strings(&removed["members"]), ["Jerry", "Spike", "Tom"]);
    let updated = one(
        &s,
        &[
            "conversation",
            "update",
            "--as",
            "Tom",
            &conv,
            "--name",
            "Renamed",
            "--attr",
            r#"{"topic":"cheese"}"#,
        ],
    )
    .await;
    assert_eq!(updated["name"], "Renamed");
    assert_eq!(updated["attr"]["topic"], "cheese");
    let muted = one(&s, &["conversation", "mute", "--as", "Jerry", &conv]).await;
    assert_eq!(muted["muted"], true);
    let unmuted = one(&s, &["conversation", "unmute", "--as", "Jerry", &conv]).await;
    assert_eq!(unmuted["muted"], false);
    let left = one(&s, &["conversation", "leave", "--as", "Spike", &conv]).await;
    assert_eq!(left["left"], true);
    let members = json_lines(&s, &["conversation", "members", "--as", "Tom", &conv]).await;
    let mut roles: Vec<(String, String)> = members
        .iter()
        .map(|m| {
            assert_eq!(m["convId"], conv.as_str());
            (
                m["clientId"].as_str().expect("clientId").to_owned(),
                m["role"].as_str().expect("role").to_owned(),
            )
        })
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            ("Jerry".to_owned(), "member".to_owned()),
            ("Tom".to_owned(), "creator".to_owned())
        ]
    );
    // The server agrees, and the id works where README says it does.
    let (jerry, _ev) = s.connect("Jerry").await;
    let info = jerry.get_conversation(id).await.expect("Jerry is a member");
    assert_eq!(info.name.as_deref(), Some("Renamed"));
    let sent = one(&s, &["send", "--as", "Tom", "--conv", &conv, "hello team"]).await;
    assert_eq!(sent["convId"], conv.as_str());

    // A refusal is an error with the server's code, exit status 1.
    let out = client(
        &s,
        &["conversation", "remove", "--as", "Jerry", &conv, "Tom"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("server error"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_gives_way_to_the_device_holding_the_tag() {
    let s = TestServer::start().await;
    let mut opts = s.options("Tom");
    opts.tag = Some("phone".into());
    let (tom, mut tom_ev) = s.connect_with(opts).await;
    let out = client(
        &s,
        &[
            "conversations",
            "--as",
            "Tom",
            "--tag",
            "phone",
            "--reconnect",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("4111"), "{}", stderr(&out));
    // Tom's phone was not kicked: it still answers.
    tom.conversations(10)
        .await
        .expect("the phone is still online");
    assert!(
        tom_ev
            .try_recv()
            .is_none_or(|e| !matches!(e, ClientEvent::Closed { .. }))
    );
    // Without --reconnect the newcomer wins, as LeanCloud does.
    let lines = json_lines(&s, &["conversations", "--as", "Tom", "--tag", "phone"]).await;
    assert!(lines.is_empty(), "{lines:?}");
    tom_ev
        .wait_for(WAIT, |e| {
            matches!(e, ClientEvent::Closed { .. }).then_some(())
        })
        .await
        .expect("the phone was kicked by a login without --reconnect");
}

/// Spawns a long-running client command with stdout piped and stdin open.
fn spawn_client(s: &TestServer, args: &[&str]) -> Child {
    tidings()
        .args(args)
        .arg("--data-dir")
        .arg(s.data_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the client")
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = child.id().expect("the child runs") as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill");
}

async fn exits(child: &mut Child) -> std::process::ExitStatus {
    tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("the client exits within WAIT")
        .expect("wait")
}

/// A `chat` with a will, typed into until Tom sees its line: by then the
/// will is set (chat sets it before it reads stdin).
async fn chat_with_will(
    s: &TestServer,
    tom_ev: &mut tidings::client::Events,
    conv: ConvId,
) -> Child {
    let id = conv.to_string();
    let mut chat = spawn_client(
        s,
        &[
            "chat",
            "--as",
            "Jerry",
            "--conv",
            &id,
            "--will",
            "Jerry dropped",
        ],
    );
    let stdin = chat.stdin.as_mut().expect("stdin");
    stdin.write_all(b"ready\n").await.expect("type a line");
    stdin.flush().await.expect("flush");
    let m = tom_ev.next_message(WAIT).await.expect("Jerry's line");
    assert_eq!(text(&m), "ready");
    chat
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sighup_close_the_connection_at_once() {
    // Default limits: a vanished client would be noticed only after
    // 30 s (keep-alives) or 120 s (idle timeout), both beyond WAIT.
    let s = TestServer::start().await;
    let hub = s.running().hub().clone();

    // listen: SIGTERM, and the server sees Jerry offline at once.
    let mut listen = spawn_client(&s, &["listen", "--as", "Jerry"]);
    eventually("Jerry online", || hub.registry.is_online("Jerry")).await;
    signal(&listen, libc::SIGTERM);
    assert!(exits(&mut listen).await.success());
    eventually("Jerry offline after SIGTERM", || {
        !hub.registry.is_online("Jerry")
    })
    .await;

    // chat: its terminal closes (SIGHUP); the will arrives at once.
    let (tom, mut tom_ev) = s.connect("Tom").await;
    let conv = tom
        .create_unique(vec!["Jerry".into()])
        .await
        .expect("conversation")
        .id;
    let mut chat = chat_with_will(&s, &mut tom_ev, conv).await;
    signal(&chat, libc::SIGHUP);
    let will = tom_ev
        .next_message(WAIT)
        .await
        .expect("the will after SIGHUP");
    assert_eq!(
        (will.from.as_str(), text(&will)),
        ("Jerry", "Jerry dropped")
    );
    assert!(exits(&mut chat).await.success());
    eventually("Jerry offline after SIGHUP", || {
        !hub.registry.is_online("Jerry")
    })
    .await;

    // chat: SIGTERM is a drop too, so the will goes.
    let mut chat = chat_with_will(&s, &mut tom_ev, conv).await;
    signal(&chat, libc::SIGTERM);
    let will = tom_ev
        .next_message(WAIT)
        .await
        .expect("the will after SIGTERM");
    assert_eq!(text(&will), "Jerry dropped");
    assert!(exits(&mut chat).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_client_is_noticed_after_three_keep_alives() {
    // One-second keep-alives: a silent peer is dead after 3 s, far inside
    // WAIT and far below the 120 s idle timeout that used to be the bound.
    let s = TestServer::start_with(|c| c.limits.keep_alive_secs = 1).await;
    let hub = s.running().hub().clone();
    let (tom, mut tom_ev) = s.connect("Tom").await;
    let conv = tom
        .create_unique(vec!["Jerry".into()])
        .await
        .expect("conversation")
        .id;
    let mut chat = chat_with_will(&s, &mut tom_ev, conv).await;
    // SIGKILL: no handler runs, nothing is closed; only silence tells.
    signal(&chat, libc::SIGKILL);
    let _ = exits(&mut chat).await;
    let will = tom_ev
        .next_message(WAIT)
        .await
        .expect("the will of a dead peer");
    assert_eq!(text(&will), "Jerry dropped");
    eventually("Jerry offline", || !hub.registry.is_online("Jerry")).await;
    // Tom, alive and quiet all along, was kept by the keep-alives.
    tom.conversations(1).await.expect("Tom is still connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_reported_within_the_connect_timeout() {
    // A UDP port that is bound (so nothing else takes it) and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let pin = "ab".repeat(32);
    // The old client waited 15 s; WAIT (10 s) bounds this one.
    let out = run(tidings()
        .args([
            "send",
            "--as",
            "Tom",
            "--to",
            "Jerry",
            "--server",
            &addr,
            "--pin",
            &pin,
            "--unsigned",
            "--data-dir",
        ])
        .arg(dir.path())
        .arg("hi"))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("no answer from {addr} within 2s")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_prints_the_message_update_when_the_keyword_filter_changed_it() {
    let words = tempfile::NamedTempFile::new().expect("word file");
    std::fs::write(words.path(), "darn\n").expect("write words");
    let path = words.path().to_path_buf();
    let s = TestServer::start_with(|c| c.messages.keyword_file = Some(path)).await;
    let lines = json_lines(&s, &["send", "--as", "Tom", "--to", "Jerry", "darn it"]).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (receipt, update) = (&lines[0], &lines[1]);
    assert_eq!(update["event"], "messageUpdated");
    assert_eq!(update["msgId"], receipt["msgId"]);
    assert_eq!(update["data"], "*** it");
    assert_eq!(update["reason"]["code"], -4408);
    // An unchanged message prints its receipt alone.
    let lines = json_lines(&s, &["send", "--as", "Tom", "--to", "Jerry", "fine"]).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
}

/// `tidings serve` on `dir` with `env`, expected to fail at start-up.
async fn serve_fails(dir: &Path, env: &[(&str, &str)]) -> Output {
    let out = run(tidings()
        .arg("serve")
        .env("TIDINGS_SERVER_DATA_DIR", dir)
        .env("TIDINGS_SERVER_LISTEN", "127.0.0.1:0")
        .env("TIDINGS_GATEWAY_LISTEN", "127.0.0.1:0")
        .env("TIDINGS_ADMIN_ENABLED", "false")
        .envs(env.iter().copied()))
    .await;
    assert!(!out.status.success(), "serve started: {}", stderr(&out));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_refuses_what_serve_refuses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("no-such-words.txt");
    let missing = missing.to_str().expect("utf-8 path");
    let data = tmp.path().join("data");
    let out = run(tidings()
        .args(["config", "check"])
        .env("TIDINGS_MESSAGES_KEYWORD_FILE", missing))
    .await;
    assert_eq!(out.status.code(), Some(2), "config check: {}", stderr(&out));
    assert!(stderr(&out).contains(missing), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("messages.keyword_file"),
        "{}",
        stderr(&out)
    );
    let out = serve_fails(&data, &[("TIDINGS_MESSAGES_KEYWORD_FILE", missing)]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(missing), "{}", stderr(&out));
    assert!(!data.exists(), "serve left a data dir behind");
}

/// How often `needle` occurs in `hay`.
fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_exits_2_says_why_once_names_the_key_and_leaves_no_data_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");

    // The QUIC port is taken.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let taken = udp.local_addr().expect("addr").to_string();
    let data = tmp.path().join("a");
    let out = serve_fails(&data, &[("TIDINGS_SERVER_LISTEN", &taken)]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(count(&err, "Address already in use"), 1, "{err}");
    assert!(err.contains("server.listen"), "{err}");
    assert!(!data.exists(), "serve left a data dir behind");

    // The admin port is taken.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let taken = tcp.local_addr().expect("addr").to_string();
    let data = tmp.path().join("b");
    let out = serve_fails(
        &data,
        &[
            ("TIDINGS_ADMIN_ENABLED", "true"),
            ("TIDINGS_ADMIN_LISTEN", &taken),
        ],
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(count(&err, "Address already in use"), 1, "{err}");
    assert!(err.contains("admin.listen"), "{err}");
    assert!(!data.exists(), "serve left a data dir behind");

    // Another server runs on the data dir: it and its data are untouched.
    let s = TestServer::start().await;
    let dir = s.data_dir();
    let out = serve_fails(&dir, &[]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(count(&err, "could not acquire lock"), 1, "{err}");
    assert!(
        err.contains("another tidings running on this data dir"),
        "{err}"
    );
    assert!(err.contains("server.data_dir"), "{err}");
    assert!(dir.join(tidings::server::STORE_DIR).is_dir());
    let (tom, _ev) = s.connect("Tom").await;
    tom.conversations(1)
        .await
        .expect("the first server still serves");
}
