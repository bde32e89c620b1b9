//! Conversation-operation signatures (`auth.conversation_signatures`) and
//! the app key, through real QUIC clients against a real server.

mod common;

use common::{TestServer, group};
use tidings::auth::{ConvAction, ConvOp, KeyKind, sign_conversation};
use tidings::client::{Client, ClientError};
use tidings::protocol::{Command, ConvId, CreateConversation, OpSignature, Reply};

const SIX_HOURS: u64 = 6 * 3600;

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// What an app server's signature factory would hand `client`.
fn sign(
    s: &TestServer,
    client: &str,
    conv: Option<ConvId>,
    members: &[&str],
    action: ConvAction,
    timestamp: u64,
) -> OpSignature {
    let creds = s.running().credentials();
    let members = ids(members);
    let conv = conv.map(|c| c.to_string());
    let op = ConvOp {
        client_id: client,
        conv: conv.as_deref(),
        members: &members,
        action,
    };
    let nonce = tidings::auth::random_nonce();
    OpSignature {
        signature: sign_conversation(&creds.master_key, &creds.app_id, &op, timestamp, &nonce),
        timestamp,
        nonce,
    }
}

fn now_secs() -> u64 {
    tidings::util::now_secs()
}

/// The request as sent, signature and all: the client's own signing is
/// bypassed so unsigned and badly signed requests reach the server.
async fn raw(c: &Client, cmd: Command) -> Result<Reply, ClientError> {
    c.request(cmd).await
}

fn code(r: Result<Reply, ClientError>) -> Option<u16> {
    r.expect_err("refused").code()
}

fn create_cmd(members: &[&str], sig: Option<OpSignature>) -> Command {
    Command::CreateConversation(CreateConversation {
        sig,
        ttl_secs: None,
        ..group(members)
    })
}

fn created(r: Result<Reply, ClientError>) -> ConvId {
    match r.expect("created") {
        Reply::Conversation(info) => info.id,
        other => panic!("expected Conversation, got {other:?}"),
    }
}

async fn members(c: &Client, conv: ConvId) -> Vec<String> {
    c.get_conversation(conv)
        .await
        .expect("conversation")
        .members
}

#[tokio::test]
async fn off_unsigned_operations_work_as_before() {
    let s = TestServer::start().await;
    let (tom, _te) = s.connect("Tom").await;
    let (spike, _se) = s.connect("Spike").await;
    let conv = created(raw(&tom, create_cmd(&["Jerry"], None)).await);
    let junk = OpSignature {
        timestamp: 1,
        nonce: "n".into(),
        signature: "not hex".into(),
    };
    raw(
        &tom,
        Command::AddMembers {
            conv,
            members: ids(&["Alice"]),
            sig: Some(junk.clone()),
        },
    )
    .await
    .expect("a signature is not looked at with the switch off");
    raw(&spike, Command::Join { conv, sig: None })
        .await
        .expect("join unsigned");
    raw(
        &tom,
        Command::RemoveMembers {
            conv,
            members: ids(&["Alice"]),
            sig: None,
        },
    )
    .await
    .expect("remove unsigned");
    raw(&spike, Command::Leave { conv, sig: None })
        .await
        .expect("leave unsigned");
    assert_eq!(members(&tom, conv).await, ids(&["Jerry", "Tom"]));
}

#[tokio::test]
async fn on_unsigned_operations_are_refused_with_4302() {
    let s = TestServer::start_with(|c| c.auth.conversation_signatures = true).await;
    let (tom, _te) = s.connect("Tom").await;
    let (spike, _se) = s.connect("Spike").await;

    assert_eq!(
        code(raw(&tom, create_cmd(&["Jerry"], None)).await),
        Some(4302)
    );
    // The client library signs with its master key by itself.
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;

    let add = Command::AddMembers {
        conv,
        members: ids(&["Alice"]),
        sig: None,
    };
    assert_eq!(code(raw(&tom, add).await), Some(4302));
    let remove = Command::RemoveMembers {
        conv,
        members: ids(&["Jerry"]),
        sig: None,
    };
    assert_eq!(code(raw(&tom, remove).await), Some(4302));
    // A stranger cannot walk into the conversation (and its history) by id,
    // nor learn whether it exists.
    assert_eq!(
        code(raw(&spike, Command::Join { conv, sig: None }).await),
        Some(4302)
    );
    let nowhere = ConvId([7; 12]);
    let probe = Command::Join {
        conv: nowhere,
        sig: None,
    };
    assert_eq!(code(raw(&spike, probe).await), Some(4302));
    assert_eq!(members(&tom, conv).await, ids(&["Jerry", "Tom"]));

    // Quitting needs no signature (LeanCloud's Java SDK quits unsigned).
    let (jerry, _je) = s.connect("Jerry").await;
    raw(&jerry, Command::Leave { conv, sig: None })
        .await
        .expect("quit unsigned");
    assert_eq!(members(&tom, conv).await, ids(&["Tom"]));
}

#[tokio::test]
async fn on_signed_operations_pass_in_seconds_and_milliseconds() {
    let s = TestServer::start_with(|c| c.auth.conversation_signatures = true).await;
    let (tom, _te) = s.connect("Tom").await;
    let (spike, _se) = s.connect("Spike").await;
    let now = now_secs();

    // A create signs the member list as sent: here without the creator...
    let sig = sign(&s, "Tom", None, &["Jerry"], ConvAction::Create, now);
    let conv = created(raw(&tom, create_cmd(&["Jerry"], Some(sig))).await);
    // ...and here with it, in any order, as the JS SDK sends it (ms).
    let sig = sign(
        &s,
        "Tom",
        None,
        &["Alice", "Tom"],
        ConvAction::Create,
        now * 1000,
    );
    created(raw(&tom, create_cmd(&["Tom", "Alice"], Some(sig))).await);

    let sig = sign(
        &s,
        "Tom",
        Some(conv),
        &["Alice", "Bob"],
        ConvAction::Invite,
        now * 1000,
    );
    tom.add_members_signed(conv, ids(&["Bob", "Alice"]), sig)
        .await
        .expect("add");
    let sig = sign(&s, "Spike", Some(conv), &["Spike"], ConvAction::Invite, now);
    spike.join_signed(conv, sig).await.expect("join");
    let sig = sign(&s, "Tom", Some(conv), &["Bob"], ConvAction::Kick, now);
    tom.remove_members_signed(conv, ids(&["Bob"]), sig)
        .await
        .expect("remove");
    let sig = sign(
        &s,
        "Spike",
        Some(conv),
        &["Spike"],
        ConvAction::Kick,
        now * 1000,
    );
    raw(
        &spike,
        Command::Leave {
            conv,
            sig: Some(sig),
        },
    )
    .await
    .expect("signed quit");
    assert_eq!(members(&tom, conv).await, ids(&["Alice", "Jerry", "Tom"]));

    // The client library's own signatures, for every operation.
    tom.add_members(conv, ids(&["Bob"]))
        .await
        .expect("auto-signed add");
    tom.remove_members(conv, ids(&["Bob"]))
        .await
        .expect("auto-signed remove");
    spike.join(conv).await.expect("auto-signed join");
    spike.leave(conv).await.expect("auto-signed leave");
}

#[tokio::test]
async fn on_replays_stale_and_mismatched_signatures_are_refused() {
    let s = TestServer::start_with(|c| c.auth.conversation_signatures = true).await;
    let (tom, _te) = s.connect("Tom").await;
    let (spike, _se) = s.connect("Spike").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let now = now_secs();
    let add = |members: &[&str], sig: &OpSignature| Command::AddMembers {
        conv,
        members: ids(members),
        sig: Some(sig.clone()),
    };

    // Once only.
    let once = sign(&s, "Tom", Some(conv), &["Alice"], ConvAction::Invite, now);
    raw(&tom, add(&["Alice"], &once)).await.expect("first use");
    assert_eq!(code(raw(&tom, add(&["Alice"], &once)).await), Some(4302));
    let mut shouted = once.clone();
    shouted.signature = shouted.signature.to_uppercase();
    assert_eq!(code(raw(&tom, add(&["Alice"], &shouted)).await), Some(4302));

    // Older than six hours, in seconds or ms.
    let stale = sign(
        &s,
        "Tom",
        Some(conv),
        &["Bob"],
        ConvAction::Invite,
        now - SIX_HOURS - 60,
    );
    assert_eq!(code(raw(&tom, add(&["Bob"], &stale)).await), Some(4302));
    let stale_ms = sign(
        &s,
        "Tom",
        Some(conv),
        &["Bob"],
        ConvAction::Invite,
        (now - SIX_HOURS - 60) * 1000,
    );
    assert_eq!(code(raw(&tom, add(&["Bob"], &stale_ms)).await), Some(4302));

    // Signed for someone else than who is sent, or for another caller,
    // conversation, action or key.
    let for_bob = sign(&s, "Tom", Some(conv), &["Bob"], ConvAction::Invite, now);
    assert_eq!(
        code(raw(&tom, add(&["Mallory"], &for_bob)).await),
        Some(4302)
    );
    assert_eq!(
        code(raw(&tom, add(&["Bob", "Mallory"], &for_bob)).await),
        Some(4302)
    );
    let create_sig = sign(&s, "Tom", None, &["Jerry", "Tom"], ConvAction::Create, now);
    assert_eq!(
        code(raw(&tom, create_cmd(&["Jerry"], Some(create_sig))).await),
        Some(4302)
    );
    let toms = sign(&s, "Tom", Some(conv), &["Spike"], ConvAction::Invite, now);
    assert_eq!(
        code(
            raw(
                &spike,
                Command::Join {
                    conv,
                    sig: Some(toms)
                }
            )
            .await
        ),
        Some(4302)
    );
    let other = sign(
        &s,
        "Spike",
        Some(ConvId([9; 12])),
        &["Spike"],
        ConvAction::Invite,
        now,
    );
    assert_eq!(
        code(
            raw(
                &spike,
                Command::Join {
                    conv,
                    sig: Some(other)
                }
            )
            .await
        ),
        Some(4302)
    );
    let kick = sign(&s, "Tom", Some(conv), &["Bob"], ConvAction::Kick, now);
    assert_eq!(code(raw(&tom, add(&["Bob"], &kick)).await), Some(4302));
    let mut forged = for_bob.clone();
    forged.signature = sign_conversation(
        "not-the-master-key",
        &s.running().credentials().app_id,
        &ConvOp {
            client_id: "Tom",
            conv: Some(&conv.to_string()),
            members: &ids(&["Bob"]),
            action: ConvAction::Invite,
        },
        forged.timestamp,
        &forged.nonce,
    );
    assert_eq!(code(raw(&tom, add(&["Bob"], &forged)).await), Some(4302));

    // None of it changed anything; the honest one still works.
    assert_eq!(members(&tom, conv).await, ids(&["Alice", "Jerry", "Tom"]));
    raw(&tom, add(&["Bob"], &for_bob))
        .await
        .expect("the right list");
}

#[tokio::test]
async fn a_used_signature_stays_used_across_a_restart() {
    let mut s = TestServer::start_with(|c| c.auth.conversation_signatures = true).await;
    let (tom, _te) = s.connect("Tom").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let sig = sign(
        &s,
        "Tom",
        Some(conv),
        &["Alice"],
        ConvAction::Invite,
        now_secs(),
    );
    let add = Command::AddMembers {
        conv,
        members: ids(&["Alice"]),
        sig: Some(sig),
    };
    raw(&tom, add.clone()).await.expect("first use");
    drop(tom);
    s.restart().await;
    let (tom, _te) = s.connect("Tom").await;
    assert_eq!(code(raw(&tom, add).await), Some(4302));
}

#[tokio::test]
async fn the_app_key_is_generated_or_configured_and_checks_rest_headers() {
    let s = TestServer::start().await;
    let creds = s.running().credentials().clone();
    assert_eq!(creds.app_key().len(), 24);
    let stored = tidings::auth::Credentials::load(&s.data_dir()).unwrap();
    assert_eq!(stored.app_key, creds.app_key);
    let now = tidings::util::now_ms();
    assert_eq!(
        creds.check_client_key(Some(&creds.app_id), Some(&creds.app_key), None, now),
        Ok(KeyKind::App)
    );

    let s = TestServer::start_with(|c| c.auth.app_key = Some("configured-app-key".into())).await;
    let creds = s.running().credentials();
    assert_eq!(creds.app_key(), "configured-app-key");
    let master = format!("{},master", creds.master_key);
    assert_eq!(
        creds.check_client_key(Some(&creds.app_id), Some(&master), None, now),
        Ok(KeyKind::Master)
    );
    assert!(
        creds
            .check_client_key(Some(&creds.app_id), Some("guess"), None, now)
            .is_err()
    );
}

/// `tidings ARGS… --data-dir DIR` against `s`; stdout's JSON lines.
async fn cli(s: &TestServer, args: &[&str]) -> Vec<serde_json::Value> {
    let out = tokio::time::timeout(
        common::WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
            .env_remove("TIDINGS_CONFIG")
            .env("TIDINGS_LOG_LEVEL", "warn")
            .args(args)
            .arg("--data-dir")
            .arg(s.data_dir())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the command finishes within WAIT")
    .expect("the command runs");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signs_with_the_data_dirs_master_key() {
    let s = TestServer::start_with(|c| c.auth.conversation_signatures = true).await;
    let created = cli(
        &s,
        &["conversation", "create", "--as", "Tom", "--member", "Jerry"],
    )
    .await;
    let conv = created[0]["convId"].as_str().expect("convId").to_owned();
    cli(&s, &["conversation", "join", "--as", "Spike", &conv]).await;
    cli(&s, &["conversation", "add", "--as", "Tom", &conv, "Tyke"]).await;
    cli(
        &s,
        &["conversation", "remove", "--as", "Tom", &conv, "Tyke"],
    )
    .await;
    cli(&s, &["conversation", "leave", "--as", "Spike", &conv]).await;
    let (tom, _te) = s.connect("Tom").await;
    let id: ConvId = conv.parse().expect("a conversation id");
    assert_eq!(members(&tom, id).await, ids(&["Jerry", "Tom"]));
}
