//! Core behaviour over real QUIC: login and its failure codes, multi-device
//! and tag conflicts, conversations, messages and their FIFO order, transient
//! messages, idempotency tokens, and malformed frames.

mod common;

use std::time::Duration;

use common::raw::{Raw, RawStream, signed_login};
use common::*;
use tidings::client::{ClientEvent, Signer};
use tidings::protocol::{
    Anchor, ClientFrame, Command, ConvId, ConvKind, CreateConversation, Direction, Event,
    HistoryQuery, Reply, SendMessage, ServerFrame,
};
use tidings::wire::frame;
use tokio::time::Instant;

/// Waits for the `ClientEvent::Closed` at the end of an event stream.
async fn closed_code(ev: &mut tidings::client::Events) -> Option<u16> {
    ev.wait_for(WAIT, |e| match e {
        ClientEvent::Closed { code, .. } => Some(*code),
        _ => None,
    })
    .await
    .expect("connection closes")
}

/// Signs a login for `client` with an explicit timestamp and nonce.
fn precomputed(s: &TestServer, client: &str, timestamp: u64, nonce: &str) -> Signer {
    let creds = s.running().credentials();
    Signer::Precomputed {
        timestamp,
        nonce: nonce.into(),
        signature: tidings::auth::sign_login(
            &creds.master_key,
            &creds.app_id,
            client,
            timestamp,
            nonce,
        ),
    }
}

// ---------------------------------------------------------------- login ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_a_valid_signature_succeeds() {
    let s = TestServer::start().await;
    let now = tidings::util::now_secs();
    let mut o = s.options("Tom");
    o.signer = precomputed(&s, "Tom", now, "nonce-ok-1");
    let (tom, mut ev) = s.connect_raw(o).await;
    assert_eq!(tom.client_id(), "Tom");
    assert_eq!(tom.device_id(), "default");
    let skew = tom.server_time().abs_diff(tidings::util::now_ms());
    assert!(skew < 60_000, "server time is now-ish ({skew} ms off)");
    // A push-mode login ends its (empty) sync with SyncDone.
    let done = ev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::SyncDone {
                conversations,
                messages,
                skipped,
            }) => Some((*conversations, *messages, *skipped)),
            _ => None,
        })
        .await;
    assert_eq!(done, Some((0, 0, 0)));

    // Device id defaults to the tag when no device id is given.
    let mut o = s.options("Tom");
    o.tag = Some("Mobile".into());
    let (tagged, _ev) = s.connect_with(o).await;
    assert_eq!(tagged.device_id(), "Mobile");
    // A 64-character client id is the longest allowed.
    let (long, _ev) = s.connect(&"x".repeat(64)).await;
    assert!(long.conversations(10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_is_4102() {
    let s = TestServer::start().await;
    let now = tidings::util::now_secs();
    let mut o = s.options("Tom");
    o.signer = Signer::Precomputed {
        timestamp: now,
        nonce: "n-bad".into(),
        signature: "00".repeat(20),
    };
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4102);
    // Signed for someone else.
    let mut o = s.options("Tom");
    o.signer = precomputed(&s, "Jerry", now, "n-other");
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4102);
    // Signed with another key.
    let mut o = s.options("Tom");
    o.signer = Signer::MasterKey("not-the-master-key-at-all".into());
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4102);
    // Not hex.
    let mut o = s.options("Tom");
    o.signer = Signer::Unsigned;
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4102);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_nonce_is_4102() {
    let s = TestServer::start().await;
    let now = tidings::util::now_secs();
    let mut o = s.options("Tom");
    o.signer = precomputed(&s, "Tom", now, "once-only");
    let (first, _ev) = s.connect_with(o.clone()).await;
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4102);
    // The first session is unaffected by the refused replay.
    assert!(first.conversations(10).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_outside_window_is_4102() {
    let s = TestServer::start_with(|c| c.auth.signature_window_secs = 60).await;
    let now = tidings::util::now_secs();
    for (ts, nonce) in [(now - 120, "old"), (now + 120, "future")] {
        let mut o = s.options("Tom");
        o.signer = precomputed(&s, "Tom", ts, nonce);
        assert_eq!(
            code_of(tidings::client::Client::connect(o).await),
            4102,
            "timestamp {ts} vs now {now}"
        );
    }
    // Inside the window is fine.
    let mut o = s.options("Tom");
    o.signer = precomputed(&s, "Tom", now - 30, "recent");
    let (tom, _ev) = s.connect_with(o).await;
    assert_eq!(tom.client_id(), "Tom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_app_id_is_4100() {
    let s = TestServer::start().await;
    let mut o = s.options("Tom");
    o.app_id = "some-other-app".into();
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_client_ids_are_4103() {
    let s = TestServer::start().await;
    for bad in [
        String::new(),
        "x".repeat(65),
        "a\nb".into(),
        "tab\there".into(),
    ] {
        let o = s.options(&bad);
        assert_eq!(
            code_of(tidings::client::Client::connect(o).await),
            4103,
            "client id {bad:?}"
        );
    }
    // An invalid tag is refused the same way; an empty one means no tag (LeanCloud).
    let mut o = s.options("Tom");
    o.tag = Some("a\u{0}b".into());
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4103);
    let mut o = s.options("Tom");
    o.tag = Some(String::new());
    assert!(tidings::client::Client::connect(o).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_login_in_time_is_4108() {
    let s = TestServer::start_with(|c| c.limits.login_timeout_ms = 300).await;
    // A connection that never opens its stream.
    let silent = Raw::connect(&s).await;
    // One that opens it and only pings.
    let pinger = Raw::connect(&s).await;
    let started = Instant::now();
    let mut st = pinger.stream().await;
    st.frame(&ClientFrame::Ping).await;
    // The close is announced on the stream first.
    match st.next().await {
        ServerFrame::Event(Event::Closing { code, .. }) => assert_eq!(code, 4108),
        other => panic!("expected Closing, got {other:?}"),
    }
    assert_eq!(pinger.close_code().await, Some(4108));
    assert_eq!(silent.close_code().await, Some(4108));
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "not closed before the login timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_session_is_closed_with_4107() {
    let s = TestServer::start_with(|c| c.limits.idle_timeout_secs = 1).await;
    let mut quiet = s.options("Quiet");
    quiet.ping_interval = Duration::ZERO;
    let mut chatty = s.options("Chatty");
    chatty.ping_interval = Duration::from_millis(200);
    let (_q, mut qev) = s.connect_with(quiet).await;
    let (c, mut cev) = s.connect_with(chatty).await;
    let started = Instant::now();
    assert_eq!(closed_code(&mut qev).await, Some(4107));
    assert!(started.elapsed() >= Duration::from_millis(500));
    // By now the pinging session has been quiet apart from pings for as long: it lives.
    assert!(!c.is_closed());
    assert!(c.conversations(1).await.is_ok());
    assert!(
        cev.try_recv().is_none(),
        "nothing closed the pinging client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_before_login_is_4105_and_login_still_works() {
    let s = TestServer::start_with(|c| c.limits.login_timeout_ms = 1500).await;
    let a = Raw::connect(&s).await;
    let b = Raw::connect(&s).await;
    let mut sa = a.stream().await;
    let mut sb = b.stream().await;
    sa.request(7, Command::ListConversations { limit: 10 })
        .await;
    sb.request(3, Command::Logout).await;
    assert_eq!(sa.response(7).await.unwrap_err().code, 4105);
    assert_eq!(sb.response(3).await.unwrap_err().code, 4105);
    // The connection stays: a login on it now works, and so do requests.
    sa.login(&s, "Tom").await;
    sa.request(8, Command::ListConversations { limit: 10 })
        .await;
    assert!(matches!(sa.response(8).await, Ok(Reply::Conversations(_))));
    // The one that never logs in is closed at the login timeout.
    assert_eq!(b.close_code().await, Some(4108));
    assert!(a.conn.close_reason().is_none(), "the logged-in one stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_login_is_4101() {
    let s = TestServer::start().await;
    let (tom, _ev) = s.connect("Tom").await;
    let again = tom.request(Command::Login(signed_login(&s, "Tom"))).await;
    assert_eq!(code_of(again), 4101);
    // Answered, not closed.
    assert!(tom.conversations(10).await.is_ok());
}

// --------------------------------------------------------- multi-device ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_of_a_client_gets_messages() {
    let s = TestServer::start().await;
    let mut o = s.options("Tom");
    o.device_id = Some("phone".into());
    let (phone, mut pev) = s.connect_with(o).await;
    let mut o = s.options("Tom");
    o.device_id = Some("laptop".into());
    let (_laptop, mut lev) = s.connect_with(o).await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let conv = jerry.create_unique(vec!["Tom".into()]).await.unwrap().id;

    let sent = jerry.send_text(conv, "to both").await.unwrap();
    for ev in [&mut pev, &mut lev] {
        let m = ev.next_message(WAIT).await.expect("each device gets it");
        assert_eq!(m.msg_id, sent.msg_id);
    }
    // The sender's other device sees its message; the sending device does not.
    let mine = phone.send_text(conv, "from phone").await.unwrap();
    assert_eq!(lev.next_message(WAIT).await.unwrap().msg_id, mine.msg_id);
    assert_eq!(jev.next_message(WAIT).await.unwrap().msg_id, mine.msg_id);
    let next = jerry.send_text(conv, "after").await.unwrap();
    assert_eq!(pev.next_message(WAIT).await.unwrap().msg_id, next.msg_id);
    assert_eq!(lev.next_message(WAIT).await.unwrap().msg_id, next.msg_id);
    assert_eq!((sent.seq, mine.seq, next.seq), (1, 2, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_tag_kicks_the_earlier_device_with_4111() {
    let s = TestServer::start().await;
    let (jerry, _jev) = s.connect("Jerry").await;
    let mut o = s.options("Tom");
    o.tag = Some("Mobile".into());
    let (old, mut oev) = s.connect_with(o.clone()).await;
    let conv = old.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    // An untagged device is unaffected by tag conflicts.
    let (_web, mut wev) = s.connect("Tom").await;

    let (_new, mut nev) = s.connect_with(o).await;
    let conflict = oev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::Conflict { code, .. }) => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(conflict, Some(4111));
    // Conflict, then the close with the same code, and nothing after.
    match oev.recv_timeout(WAIT).await {
        Some(ClientEvent::Closed { code, .. }) => assert_eq!(code, Some(4111)),
        other => panic!("expected Closed after Conflict, got {other:?}"),
    }
    let sent = jerry.send_text(conv, "who gets this").await.unwrap();
    assert_eq!(nev.next_message(WAIT).await.unwrap().msg_id, sent.msg_id);
    assert_eq!(wev.next_message(WAIT).await.unwrap().msg_id, sent.msg_id);
    assert!(old.send_text(conv, "too late").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_gives_way_with_4111() {
    let s = TestServer::start().await;
    let (jerry, _jev) = s.connect("Jerry").await;
    let mut o = s.options("Tom");
    o.tag = Some("Mobile".into());
    let (old, mut oev) = s.connect_with(o.clone()).await;
    let conv = old.create_unique(vec!["Jerry".into()]).await.unwrap().id;

    o.reconnect = true;
    assert_eq!(code_of(tidings::client::Client::connect(o).await), 4111);
    // The earlier device keeps its session and its messages.
    let sent = jerry.send_text(conv, "still there?").await.unwrap();
    let m = oev
        .next_message(WAIT)
        .await
        .expect("earlier device still receives");
    assert_eq!(m.msg_id, sent.msg_id);
    assert!(!old.is_closed());
    assert_eq!(old.send_text(conv, "yes").await.unwrap().seq, 2);
}

// -------------------------------------------------------- conversations ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_conversation_is_the_same_from_either_side() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let a = tom.create_unique(vec!["Jerry".into()]).await.unwrap();
    assert!(a.unique);
    assert_eq!(a.members, vec!["Jerry".to_string(), "Tom".to_string()]);
    assert_eq!(a.creator, "Tom");
    let invited = jev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::Invited { conv, by }) => Some((*conv, by.clone())),
            _ => None,
        })
        .await;
    assert_eq!(invited, Some((a.id, "Tom".to_string())));
    let b = jerry.create_unique(vec!["Tom".into()]).await.unwrap();
    assert_eq!(b.id, a.id, "same member set, same conversation");
    let again = tom
        .create_unique(vec!["Jerry".into(), "Jerry".into()])
        .await
        .unwrap();
    assert_eq!(again.id, a.id);
    // Racing creates of a new member set from both sides agree too.
    let (x, y) = tokio::join!(
        tom.create_unique(vec!["Jerry".into(), "Spike".into()]),
        jerry.create_unique(vec!["Spike".into(), "Tom".into()])
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.id, y.id);
    assert_ne!(x.id, a.id);
    // A non-unique create always makes a new one.
    let g1 = tom.create_conversation(group(&["Jerry"])).await.unwrap();
    let g2 = tom.create_conversation(group(&["Jerry"])).await.unwrap();
    assert!(g1.id != a.id && g2.id != g1.id && !g1.unique);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_roles_and_events() {
    let s = TestServer::start().await;
    let (tom, mut tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let (spike, mut sev) = s.connect("Spike").await;
    let (tyke, mut yev) = s.connect("Tyke").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;

    let invited = |ev: &ClientEvent| match ev {
        ClientEvent::Server(Event::Invited { conv: c, by }) => Some((*c, by.clone())),
        _ => None,
    };
    let joined = |ev: &ClientEvent| match ev {
        ClientEvent::Server(Event::MembersJoined {
            conv: c,
            members,
            by,
        }) => Some((*c, members.clone(), by.clone())),
        _ => None,
    };
    let left = |ev: &ClientEvent| match ev {
        ClientEvent::Server(Event::MembersLeft {
            conv: c,
            members,
            by,
        }) => Some((*c, members.clone(), by.clone())),
        _ => None,
    };
    assert_eq!(
        jev.wait_for(WAIT, invited).await,
        Some((conv, "Tom".into()))
    );

    // Only the owner or a manager may change members or managers.
    assert_eq!(
        code_of(jerry.add_members(conv, vec!["Spike".into()]).await),
        4324
    );
    assert_eq!(
        code_of(jerry.remove_members(conv, vec!["Tom".into()]).await),
        4324
    );
    assert_eq!(
        code_of(jerry.set_managers(conv, vec!["Jerry".into()], vec![]).await),
        4324
    );
    // Outsiders are not members.
    assert_eq!(
        code_of(spike.add_members(conv, vec!["Spike".into()]).await),
        4401
    );
    assert_eq!(code_of(spike.get_conversation(conv).await), 4401);
    assert_eq!(code_of(spike.send_text(conv, "hi").await), 4401);

    tom.add_members(conv, vec!["Spike".into()]).await.unwrap();
    assert_eq!(
        sev.wait_for(WAIT, invited).await,
        Some((conv, "Tom".into()))
    );
    let j = (conv, vec!["Spike".to_string()], "Tom".to_string());
    assert_eq!(jev.wait_for(WAIT, joined).await, Some(j.clone()));
    assert_eq!(tev.wait_for(WAIT, joined).await, Some(j));

    // The owner makes Jerry a manager; now Jerry may add and remove members.
    tom.set_managers(conv, vec!["Jerry".into()], vec![])
        .await
        .unwrap();
    assert_eq!(
        tom.get_conversation(conv).await.unwrap().managers,
        vec!["Jerry".to_string()]
    );
    // A manager still cannot change managers.
    assert_eq!(
        code_of(jerry.set_managers(conv, vec!["Spike".into()], vec![]).await),
        4324
    );
    jerry.add_members(conv, vec!["Tyke".into()]).await.unwrap();
    assert_eq!(
        yev.wait_for(WAIT, invited).await,
        Some((conv, "Jerry".into()))
    );
    let j = (conv, vec!["Tyke".to_string()], "Jerry".to_string());
    assert_eq!(jev.wait_for(WAIT, joined).await, Some(j));
    jerry
        .remove_members(conv, vec!["Spike".into()])
        .await
        .unwrap();
    let kicked = sev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::Kicked { conv: c, by }) => Some((*c, by.clone())),
            _ => None,
        })
        .await;
    assert_eq!(kicked, Some((conv, "Jerry".into())));
    let l = (conv, vec!["Spike".to_string()], "Jerry".to_string());
    assert_eq!(tev.wait_for(WAIT, left).await, Some(l));
    assert_eq!(code_of(spike.send_text(conv, "still here?").await), 4401);

    // Tyke leaves on his own.
    tyke.leave(conv).await.unwrap();
    let l = (conv, vec!["Tyke".to_string()], "Tyke".to_string());
    assert_eq!(tev.wait_for(WAIT, left).await, Some(l));
    assert_eq!(code_of(tyke.leave(conv).await), 4401);
    // Anyone may join a normal conversation they know the id of.
    spike.join(conv).await.unwrap();
    let j = (conv, vec!["Spike".to_string()], "Spike".to_string());
    assert_eq!(jev.wait_for(WAIT, joined).await, Some(j));
    let info = tom.get_conversation(conv).await.unwrap();
    assert_eq!(info.members, vec!["Jerry", "Spike", "Tom"]);
    assert_eq!(info.managers, vec!["Jerry"]);
    // Taking the manager role back.
    tom.set_managers(conv, vec![], vec!["Jerry".into()])
        .await
        .unwrap();
    assert_eq!(
        code_of(jerry.add_members(conv, vec!["Tyke".into()]).await),
        4324
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_name_attr_and_mute() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;

    let attr = r#"{"color":"blue","n":1}"#;
    jerry
        .update(conv, Some("Cat & Mouse".into()), Some(attr.into()))
        .await
        .unwrap();
    let info = tom.get_conversation(conv).await.unwrap();
    assert_eq!(info.name.as_deref(), Some("Cat & Mouse"));
    assert_eq!(info.attr.as_deref(), Some(attr));
    let upd = jev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::ConversationUpdated {
                conv: c,
                by,
                name,
                attr,
            }) => Some((*c, by.clone(), name.clone(), attr.clone())),
            _ => None,
        })
        .await;
    assert_eq!(
        upd,
        Some((
            conv,
            "Jerry".into(),
            Some("Cat & Mouse".into()),
            Some(attr.into())
        ))
    );
    // attr must be a JSON object.
    for bad in ["[1,2]", "not json", "\"text\"", "7"] {
        assert_eq!(
            code_of(tom.update(conv, None, Some(bad.into())).await),
            4301,
            "{bad}"
        );
    }
    assert_eq!(
        tom.get_conversation(conv).await.unwrap().attr.as_deref(),
        Some(attr)
    );
    let mut bad_create = group(&["Jerry"]);
    bad_create.attr = Some("[]".into());
    assert_eq!(code_of(tom.create_conversation(bad_create).await), 4301);

    tom.mute(conv).await.unwrap();
    assert!(tom.get_conversation(conv).await.unwrap().muted);
    assert!(
        !jerry.get_conversation(conv).await.unwrap().muted,
        "muting is per member"
    );
    tom.unmute(conv).await.unwrap();
    assert!(!tom.get_conversation(conv).await.unwrap().muted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_conversation_is_4303() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let nowhere = ConvId::random();
    assert_eq!(code_of(tom.get_conversation(nowhere).await), 4303);
    assert_eq!(code_of(tom.send_text(nowhere, "hello?").await), 4303);
    assert_eq!(code_of(tom.join(nowhere).await), 4303);
    assert_eq!(
        code_of(tom.add_members(nowhere, vec!["Jerry".into()]).await),
        4303
    );
    assert_eq!(
        code_of(tom.update(nowhere, Some("x".into()), None).await),
        4303
    );
    let q = HistoryQuery {
        conv: nowhere,
        anchor: Anchor::Latest,
        direction: Direction::Before,
        inclusive: false,
        limit: 10,
        lctype: None,
    };
    assert_eq!(code_of(tom.history(q).await), 4303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_max_members_is_4304() {
    let s = TestServer::start_with(|c| c.limits.max_members = 3).await;
    let (tom, _tev) = s.connect("Tom").await;
    assert_eq!(
        code_of(tom.create_conversation(group(&["A", "B", "C"])).await),
        4304
    );
    let conv = tom
        .create_conversation(group(&["A", "B"]))
        .await
        .unwrap()
        .id;
    assert_eq!(code_of(tom.add_members(conv, vec!["C".into()]).await), 4304);
    assert_eq!(tom.get_conversation(conv).await.unwrap().members.len(), 3);
    assert!(
        tom.conversations(10).await.unwrap().len() == 1,
        "the refused create stored nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_is_mine_most_recent_first() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, _jev) = s.connect("Jerry").await;
    let a = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let b = tom.create_conversation(group(&["Spike"])).await.unwrap().id;
    let c = jerry
        .create_conversation(group(&["Spike"]))
        .await
        .unwrap()
        .id;
    let first = tom.send_text(b, "b first").await.unwrap();
    // The next send must get a later millisecond timestamp.
    eventually("the clock to tick", || {
        tidings::util::now_ms() > first.timestamp
    })
    .await;
    tom.send_text(a, "a later").await.unwrap();
    let mine: Vec<ConvId> = tom
        .conversations(10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(mine, vec![a, b]);
    assert!(!mine.contains(&c));
    assert_eq!(tom.conversations(1).await.unwrap()[0].id, a);
    let jerrys: Vec<ConvId> = jerry
        .conversations(10)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(jerrys.len(), 2);
    assert!(jerrys.contains(&a) && jerrys.contains(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_room_reaches_only_joined_online_clients() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let (spike, mut sev) = s.connect("Spike").await;
    let room = tom
        .create_conversation(CreateConversation {
            members: vec!["Jerry".into()],
            name: Some("lobby".into()),
            attr: None,
            unique: true,
            kind: ConvKind::ChatRoom,
            sig: None,
            ttl_secs: None,
        })
        .await
        .unwrap();
    assert_eq!(room.kind, ConvKind::ChatRoom);
    assert!(room.members.is_empty(), "chat rooms store no members");
    let room = room.id;
    // Listed members of a create do not join a room: Jerry must join himself.
    assert_eq!(code_of(jerry.send_text(room, "me?").await), 4401);
    jerry.join(room).await.unwrap();
    let first = tom.send_text(room, "one").await.unwrap();
    assert_eq!(jev.next_message(WAIT).await.unwrap().msg_id, first.msg_id);
    // Spike joins later: his first message is the one sent after that.
    spike.join(room).await.unwrap();
    let second = jerry.send_text(room, "two").await.unwrap();
    assert_eq!(sev.next_message(WAIT).await.unwrap().msg_id, second.msg_id);

    // Jerry goes offline: he leaves the room and gets nothing on return.
    jerry.abort();
    drop((jerry, jev));
    let hub = s.running().hub().clone();
    eventually("Jerry offline", || !hub.registry.is_online("Jerry")).await;
    let third = tom.send_text(room, "three").await.unwrap();
    assert_eq!(sev.next_message(WAIT).await.unwrap().msg_id, third.msg_id);
    let (jerry, mut jev) = s.connect_raw(s.options("Jerry")).await;
    let done = jev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::SyncDone { messages, .. }) => Some(*messages),
            ClientEvent::Server(Event::Message { msg, .. }) => panic!("offline delivery: {msg:?}"),
            _ => None,
        })
        .await;
    assert_eq!(done, Some(0));
    assert_eq!(
        code_of(jerry.send_text(room, "back").await),
        4401,
        "not in the room any more"
    );
    // A message Jerry should not see, then a direct one he should: the
    // direct one is his next message (fan-out is in commit order).
    tom.send_text(room, "four").await.unwrap();
    let direct = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    let d = tom.send_text(direct, "direct").await.unwrap();
    assert_eq!(jev.next_message(WAIT).await.unwrap().msg_id, d.msg_id);
    // Leaving stops delivery too, and history of a room stays readable.
    spike.leave(room).await.unwrap();
    assert_eq!(code_of(spike.send_text(room, "gone").await), 4401);
    let h = full_history(&spike, room).await;
    assert_eq!(
        h.iter().map(text).collect::<Vec<_>>(),
        ["one", "two", "three", "four"]
    );
}

// ------------------------------------------------------------- messages ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_of_1000_messages_from_concurrent_senders() {
    const SENDERS: usize = 4;
    const EACH: usize = 250;
    // Load, not abuse: each sender goes as fast as it can.
    let s = TestServer::start_with(|c| c.quotas.messages_per_sec = 0).await;
    let names: Vec<String> = (0..SENDERS).map(|i| format!("S{i}")).collect();
    let mut senders = Vec::new();
    for n in &names {
        senders.push(s.connect(n).await);
    }
    let (rx, mut rev) = s.connect("Reader").await;
    let members: Vec<&str> = names.iter().map(String::as_str).chain(["Reader"]).collect();
    let conv = senders[0]
        .0
        .create_conversation(group(&members))
        .await
        .unwrap()
        .id;

    let mut tasks = Vec::new();
    for (i, (c, _)) in senders.iter().enumerate() {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(EACH);
            for k in 0..EACH {
                let sent = c.send_text(conv, &format!("S{i}:{k}")).await.expect("send");
                seqs.push(sent.seq);
            }
            seqs
        }));
    }
    // Receive while they send.
    let mut got = Vec::with_capacity(SENDERS * EACH);
    while got.len() < SENDERS * EACH {
        let m = rev
            .next_message(WAIT)
            .await
            .unwrap_or_else(|| panic!("stalled after {} messages", got.len()));
        got.push(m);
    }
    let mut all_seqs = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "a sender's seqs increase"
        );
        all_seqs.extend(seqs);
    }
    all_seqs.sort_unstable();
    assert_eq!(
        all_seqs,
        (1..=1000).collect::<Vec<u64>>(),
        "seqs are gap-free from 1"
    );

    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=1000).collect::<Vec<u64>>(),
        "delivered in seq order"
    );
    assert!(got.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    let mut next = vec![0usize; SENDERS];
    for m in &got {
        let (who, k) = text(m).split_once(':').unwrap();
        let i: usize = who[1..].parse().unwrap();
        assert_eq!(m.from, names[i]);
        assert_eq!(
            k.parse::<usize>().unwrap(),
            next[i],
            "sender {who} in order"
        );
        next[i] += 1;
    }
    assert_eq!(next, vec![EACH; SENDERS]);
    // Each sender also saw everyone else's messages, in seq order.
    for (i, (_, ev)) in senders.iter_mut().enumerate() {
        let mut last = 0;
        for _ in 0..(SENDERS - 1) * EACH {
            let m = ev
                .next_message(WAIT)
                .await
                .expect("sender receives the others");
            assert!(m.seq > last, "seq order at sender {i}");
            assert_ne!(m.from, names[i], "no echo to the sending device");
            last = m.seq;
        }
    }
    // History is the same sequence.
    let h = full_history(&rx, conv).await;
    let ids =
        |v: &[tidings::protocol::Message]| v.iter().map(|m| m.msg_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&h), ids(&got));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_limit_is_4109_and_the_connection_stays() {
    let s = TestServer::start().await;
    let (tom, mut tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    let max = s.config.limits.max_content_bytes as usize;
    let too_big = SendMessage {
        content: tidings::protocol::Content::Binary(vec![7; max + 1]),
        ..SendMessage::text(conv, "")
    };
    assert_eq!(code_of(tom.send(too_big).await), 4109);
    assert_eq!(
        code_of(tom.send_text(conv, &"x".repeat(max + 1)).await),
        4109
    );
    // Exactly the limit is fine, and the connection is still up.
    let ok = tom.send_text(conv, &"y".repeat(max)).await.unwrap();
    assert_eq!(ok.seq, 1, "refused sends took no seq");
    assert_eq!(jev.next_message(WAIT).await.unwrap().msg_id, ok.msg_id);
    assert!(
        tev.try_recv().is_none(),
        "no close for an oversized content"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_token_returns_the_first_answer() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    let with_token = |t: &str, body: &str| SendMessage {
        token: Some(t.into()),
        ..SendMessage::text(conv, body)
    };
    let first = tom.send(with_token("tok-1", "once")).await.unwrap();
    assert!(!first.duplicate);
    let again = tom
        .send(with_token("tok-1", "once, retried"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (&again.msg_id, again.seq, again.timestamp),
        (&first.msg_id, first.seq, first.timestamp)
    );
    // Two sends with one token in flight together: one message.
    let (a, b) = tokio::join!(
        tom.send(with_token("tok-2", "twin")),
        tom.send(with_token("tok-2", "twin"))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.msg_id, b.msg_id);
    assert_eq!(a.seq, b.seq);
    assert!(a.duplicate != b.duplicate, "exactly one is the duplicate");
    // Tokens are per client: Jerry's "tok-1" is a new message.
    let jerrys = jerry
        .send(with_token("tok-1", "jerry's own"))
        .await
        .unwrap();
    assert!(!jerrys.duplicate);
    assert_eq!(jerrys.seq, 3);

    let h = full_history(&tom, conv).await;
    assert_eq!(
        h.iter().map(text).collect::<Vec<_>>(),
        ["once", "twin", "jerry's own"]
    );
    assert_eq!(tom.get_conversation(conv).await.unwrap().last_seq, 3);
    // Jerry received each of Tom's messages exactly once.
    assert_eq!(jev.next_message(WAIT).await.unwrap().msg_id, first.msg_id);
    assert_eq!(jev.next_message(WAIT).await.unwrap().msg_id, a.msg_id);
    let last = tom.send_text(conv, "sentinel").await.unwrap();
    assert_eq!(jev.next_message(WAIT).await.unwrap().msg_id, last.msg_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_messages_reach_only_online_members_and_are_not_stored() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;
    let sent = tom
        .send(SendMessage {
            transient: true,
            ..SendMessage::text(conv, "typing…")
        })
        .await
        .unwrap();
    assert_eq!(sent.seq, 0);
    let m = jev.next_message(WAIT).await.expect("online member gets it");
    assert_eq!(m.msg_id, sent.msg_id);
    assert!(m.transient);
    assert_eq!(m.seq, 0);
    assert_eq!(text(&m), "typing…");
    // Not stored: no history, no seq used, nothing for offline Spike.
    assert!(full_history(&tom, conv).await.is_empty());
    assert_eq!(tom.get_conversation(conv).await.unwrap().last_seq, 0);
    let stored = tom.send_text(conv, "real").await.unwrap();
    assert_eq!(stored.seq, 1);
    let (_spike, mut sev) = s.connect_raw(s.options("Spike")).await;
    let mut synced = Vec::new();
    let done = sev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::Message { msg, .. }) => {
                synced.push(msg.msg_id.clone());
                None
            }
            ClientEvent::Server(Event::SyncDone { messages, .. }) => Some(*messages),
            _ => None,
        })
        .await;
    assert_eq!(done, Some(1));
    assert_eq!(synced, vec![stored.msg_id]);
    // Non-members cannot send transient messages either.
    let (outsider, _oev) = s.connect("Outsider").await;
    let t = SendMessage {
        transient: true,
        ..SendMessage::text(conv, "psst")
    };
    assert_eq!(code_of(outsider.send(t).await), 4401);
}

// ------------------------------------------------------------ bad frames ----

/// Tom and Jerry chat in one conversation; returns a closure-free check that
/// a fresh message still gets through.
async fn still_chatting(
    tom: &tidings::client::Client,
    jev: &mut tidings::client::Events,
    conv: ConvId,
    body: &str,
) {
    let sent = tom.send_text(conv, body).await.expect("Tom can still send");
    let m = jev.next_message(WAIT).await.expect("Jerry still receives");
    assert_eq!(m.msg_id, sent.msg_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_only_that_connection_with_4109() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom
        .create_unique(vec!["Jerry".into(), "Bad".into()])
        .await
        .unwrap()
        .id;
    let max = s.config.limits.max_frame_bytes;

    // Before login.
    let raw = Raw::connect(&s).await;
    let mut st = raw.stream().await;
    st.write(&(max + 1).to_be_bytes()).await;
    assert_eq!(raw.close_code().await, Some(4109));
    still_chatting(&tom, &mut jev, conv, "after the first").await;

    // After login, as a member of the conversation.
    let raw = Raw::connect(&s).await;
    let mut st = raw.stream().await;
    st.login(&s, "Bad").await;
    st.write(&u32::MAX.to_be_bytes()).await;
    assert_eq!(raw.close_code().await, Some(4109));
    still_chatting(&tom, &mut jev, conv, "after the second").await;
    // A frame of exactly the limit is accepted as far as length goes (then fails to parse).
    let raw = Raw::connect(&s).await;
    let mut st = raw.stream().await;
    let mut body = max.to_be_bytes().to_vec();
    body.extend(std::iter::repeat_n(0xffu8, max as usize));
    st.write(&body).await;
    assert_eq!(raw.close_code().await, Some(4114));
    still_chatting(&tom, &mut jev, conv, "after the third").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frame_closes_only_that_connection_with_4114() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom
        .create_unique(vec!["Jerry".into(), "Bad".into()])
        .await
        .unwrap()
        .id;
    let garbage = [0, 0, 0, 8, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9, 0xf8];

    // Before login.
    let raw = Raw::connect(&s).await;
    let mut st = raw.stream().await;
    st.write(&garbage).await;
    match st.next().await {
        ServerFrame::Event(Event::Closing { code, .. }) => assert_eq!(code, 4114),
        other => panic!("expected Closing, got {other:?}"),
    }
    assert_eq!(raw.close_code().await, Some(4114));
    still_chatting(&tom, &mut jev, conv, "after the first").await;

    // After login: a valid frame, then garbage.
    let raw = Raw::connect(&s).await;
    let mut st = raw.stream().await;
    st.login(&s, "Bad").await;
    st.frame(&ClientFrame::Ping).await;
    st.write(&garbage).await;
    assert_eq!(raw.close_code().await, Some(4114));
    still_chatting(&tom, &mut jev, conv, "after the second").await;

    // Valid encoding of the wrong type with trailing bytes is garbage too.
    let raw = Raw::connect(&s).await;
    let mut st = raw.stream().await;
    st.login(&s, "Bad").await;
    let mut ping = frame::encode(&ClientFrame::Ping).unwrap().to_vec();
    ping.push(0);
    ping[3] += 1;
    st.write(&ping).await;
    assert_eq!(raw.close_code().await, Some(4114));
    still_chatting(&tom, &mut jev, conv, "after the third").await;
    let h = full_history(&tom, conv).await;
    assert_eq!(h.len(), 3);
}

/// A page of `conv`'s newest messages.
fn newest_page(conv: ConvId, limit: u32) -> Command {
    Command::History(HistoryQuery {
        conv,
        anchor: Anchor::Latest,
        direction: Direction::Before,
        inclusive: false,
        limit,
        lctype: None,
    })
}

/// Writes `n` history requests (ids from 2) without reading, as far as the
/// server lets it; the send half comes back when done or refused.
fn ask_pages(
    mut send: quinn::SendStream,
    conv: ConvId,
    n: u64,
) -> tokio::task::JoinHandle<quinn::SendStream> {
    tokio::spawn(async move {
        for id in 2..2 + n {
            let f = frame::encode(&ClientFrame::Request {
                id,
                cmd: newest_page(conv, 25),
            })
            .unwrap();
            if send.write_all(&f).await.is_err() {
                break;
            }
        }
        send
    })
}

/// Issue 13.1: every byte queued for a connection counts against one bound.
/// A client that pipelines requests (~100 KB answers each, 30 MB in all)
/// and does not read stops being read once what waits for it passes
/// `limits.max_backlog_bytes`, loses nothing when it reads again, and is
/// closed with 4201 when it stays behind for `limits.backlog_stall_secs`.
/// Before, replies were not bounded: the session kept reading and queuing
/// until the idle timeout (120 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_asks_and_does_not_read_is_paused_then_closed_with_4201() {
    const N: u64 = 300;
    let s = TestServer::start_with(|c| {
        c.limits.max_backlog_bytes = 256 * 1024;
        c.limits.backlog_stall_secs = 3;
        // The backlog bound is under test, not the request rate.
        c.quotas.requests_per_sec = 0;
    })
    .await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let chat = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    let conv = tom.create_unique(vec!["Greedy".into()]).await.unwrap().id;
    let body = "x".repeat(4000);
    for _ in 0..25 {
        tom.send_text(conv, &body).await.unwrap();
    }
    let pauses = tidings::metrics::METRICS.backlog_pauses();

    // Asks for everything, reads nothing until the server stops reading,
    // then reads: every answer comes, in order.
    let raw = Raw::connect(&s).await;
    let mut st = raw.stream().await;
    st.login(&s, "Greedy").await;
    let RawStream { send, mut reader } = st;
    let asking = ask_pages(send, conv, N);
    eventually("the server to stop reading", || {
        tidings::metrics::METRICS.backlog_pauses() > pauses
    })
    .await;
    let mut id = 2;
    while id < 2 + N {
        let frame = tokio::time::timeout(WAIT, reader.read::<ServerFrame>())
            .await
            .expect("an answer in time")
            .expect("readable")
            .expect("open");
        if let ServerFrame::Event(_) = frame {
            continue; // the login's sync
        }
        id += 1;
        let id = id - 1;
        match frame {
            ServerFrame::Response {
                id: got,
                result: Ok(Reply::History { messages, .. }),
            } => assert_eq!((got, messages.len()), (id, 25)),
            other => panic!("answer {id}: {other:?}"),
        }
    }
    tokio::time::timeout(WAIT, asking)
        .await
        .expect("every request read")
        .unwrap();
    still_chatting(&tom, &mut jev, chat, "while one read slowly").await;

    // Asks for everything and never reads: closed with 4201.
    let raw = Raw::connect(&s).await;
    let mut st = raw.stream().await;
    st.login(&s, "Greedy").await;
    let RawStream {
        send,
        reader: _unread,
    } = st;
    let _asking = ask_pages(send, conv, N);
    assert_eq!(raw.close_code().await, Some(4201));
    still_chatting(&tom, &mut jev, chat, "after it was closed").await;
}

/// A chat room member that stops reading: the room's messages are written
/// straight to its connection (not through its session) until what waits
/// for it passes `limits.max_backlog_bytes`; from then on they go through
/// the session, which closes it with 4201. The room goes on for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_member_that_does_not_read_is_closed_with_4201() {
    let s = TestServer::start_with(|c| {
        c.limits.max_backlog_bytes = 64 * 1024;
        c.limits.backlog_stall_secs = 1;
        c.quotas.messages_per_sec = 0;
    })
    .await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let room = create_room(&tom).await;
    jerry.join(room).await.unwrap();
    let raw = Raw::connect(&s).await;
    let mut st = raw.stream().await;
    st.login(&s, "Lurker").await;
    st.request(
        2,
        Command::Join {
            conv: room,
            sig: None,
        },
    )
    .await;
    assert!(st.response(2).await.is_ok(), "the lurker joined");

    // From here the lurker reads nothing. QUIC takes the first ~1.25 MB
    // into its stream window; past that and the bound, the session closes it.
    let body = "x".repeat(5000);
    let closed = raw.conn.closed();
    tokio::pin!(closed);
    let mut sent = 0;
    let err = loop {
        tokio::select! {
            e = &mut closed => break e,
            r = tom.send_text(room, &body) => {
                r.expect("Tom can send");
                sent += 1;
                assert!(sent < 2_000, "the lurker was never closed");
            }
        }
    };
    assert_eq!(tidings::transport::close_code(&err), Some(4201));
    let after = tom.send_text(room, "after").await.unwrap();
    let got = jev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::Message { msg, .. }) if msg.msg_id == after.msg_id => {
                Some(())
            }
            _ => None,
        })
        .await;
    assert_eq!(got, Some(()), "Jerry still hears the room");
}

/// A room's recall goes out on the room thread behind the message: sent
/// right after it, it reaches members after it, and its sender is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_recall_reaches_members_after_its_message() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let room = create_room(&tom).await;
    jerry.join(room).await.unwrap();
    let sent = tom.send_text(room, "oops").await.unwrap();
    let recalled = tom.recall(room, &sent.msg_id).await.unwrap();
    assert_eq!(recalled.msg_id, sent.msg_id);
    let mut seen = Vec::new();
    let done = jev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::Message { msg, .. }) => {
                seen.push(("message", msg.msg_id.clone()));
                None
            }
            ClientEvent::Server(Event::MessageRecalled { msg, .. }) => {
                seen.push(("recalled", msg.msg_id.clone()));
                Some(())
            }
            _ => None,
        })
        .await;
    assert_eq!(done, Some(()), "the recall reached Jerry");
    let id = sent.msg_id;
    assert_eq!(seen, [("message", id.clone()), ("recalled", id)]);
}

/// Issue 13.7: a `_messageReceived` hook that hangs for one conversation
/// holds up only that conversation's sends on the connection; a send to
/// another conversation is answered meanwhile, and order within each
/// conversation stays FIFO. Before, one lane per connection made the second
/// wait the whole hook timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_hook_for_one_conversation_does_not_hold_up_another() {
    use common::hook_server::{Answer, HookServer};
    let mut hooks = HookServer::start().await;
    let url = hooks.url();
    let s = TestServer::start_with(|c| {
        c.hooks.base_url = Some(url);
        c.hooks.timeout_ms = 60_000;
    })
    .await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let slow = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    let fast = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;
    let held = slow.to_string();
    hooks.set_script(move |c| {
        if c.name == "_messageReceived" && c.param("convId") == held.as_str() {
            Answer::ok().after(Duration::from_secs(30))
        } else {
            Answer::ok()
        }
    });
    let (t1, t2) = (tom.clone(), tom.clone());
    let first = tokio::spawn(async move { t1.send_text(slow, "held 1").await });
    hooks
        .next_where("_messageReceived", |c| {
            c.param("convId") == slow.to_string().as_str()
        })
        .await;
    let second = tokio::spawn(async move { t2.send_text(slow, "held 2").await });
    let other = tokio::time::timeout(WAIT, tom.send_text(fast, "not held"))
        .await
        .expect("a send to another conversation is not held up")
        .expect("sent");
    let m = jev.next_message(WAIT).await.expect("delivered");
    assert_eq!(m.msg_id, other.msg_id);
    assert!(!first.is_finished() && !second.is_finished(), "still held");
    first.abort();
    second.abort();
}
