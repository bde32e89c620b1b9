//! Advanced messaging (issue #5) over real QUIC clients against a real
//! server: mentions computed per receiver, edit and recall (and their
//! switches, refusals, patch sync and `_messageUpdate`), delete of messages
//! and conversations (and their hooks), delivery and read receipts (across
//! a restart, for a sender who was away), will messages, the keyword filter
//! (Unicode, case, typed content, after `_messageReceived`; its SIGHUP reload
//! is in `tests/reload.rs`), typing over datagrams and its rate-limited hook,
//! `_lctype` history filtering, transient messages and pushData.
//!
//! Negative checks ("no such event") send a marker message after the action
//! and look at everything the connection got before it: the server writes a
//! connection's events in the order it produced them.

#[path = "common/advanced.rs"]
mod adv;
mod common;

use std::time::Duration;

use adv::*;
use common::hook_server::{Answer, HookServer};
use common::*;
use serde_json::json;
use tidings::client::{ClientError, ClientEvent};
use tidings::protocol::{
    Anchor, Content, ConvId, Direction, EditMessage, Event, Message, RECALLED_CONTENT, Reason,
    SendMessage, msg_id,
};

/// LeanCloud's reason code for a keyword-filtered message.
const CENSORED: i32 = -4408;

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn with_mentions(conv: ConvId, text: &str, list: &[&str], all: bool) -> SendMessage {
    SendMessage {
        mention_list: strs(list),
        mention_all: all,
        ..SendMessage::text(conv, text)
    }
}

fn with_receipt(conv: ConvId, text: &str) -> SendMessage {
    SendMessage {
        receipt: true,
        ..SendMessage::text(conv, text)
    }
}

/// `MessageUpdated`'s message and reason.
fn updated(e: &Event) -> Option<(Message, Option<Reason>)> {
    match e {
        Event::MessageUpdated { msg, reason } => Some((msg.clone(), reason.clone())),
        _ => None,
    }
}

/// `MessageRecalled`'s message and reason.
fn recalled(e: &Event) -> Option<(Message, Option<Reason>)> {
    match e {
        Event::MessageRecalled { msg, reason } => Some((msg.clone(), reason.clone())),
        _ => None,
    }
}

/// `MessageDeleted` as `(conv, msg_id, seq, by)`.
fn deleted(e: &Event) -> Option<(ConvId, String, u64, String)> {
    match e {
        Event::MessageDeleted {
            conv,
            msg_id,
            seq,
            by,
        } => Some((*conv, msg_id.clone(), *seq, by.clone())),
        _ => None,
    }
}

/// A receipt event as `("delivered" | "read", conv, by, at)`.
fn receipt(e: &Event) -> Option<(&'static str, ConvId, String, u64)> {
    match e {
        Event::LastDeliveredAt { conv, by, at } => Some(("delivered", *conv, by.clone(), *at)),
        Event::LastReadAt { conv, by, at } => Some(("read", *conv, by.clone(), *at)),
        _ => None,
    }
}

/// A typing event as `(from, started)` for `conv`.
fn typing_in(conv: ConvId) -> impl Fn(&Event) -> Option<(String, bool)> {
    move |e| match e {
        Event::Typing {
            conv: c,
            from,
            started,
        } if *c == conv => Some((from.clone(), *started)),
        _ => None,
    }
}

fn server_error<T: std::fmt::Debug>(r: Result<T, ClientError>) -> tidings::protocol::ErrorBody {
    match r {
        Err(ClientError::Server(body)) => body,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// Waits until the server clock has passed `t`, so the next message gets a later timestamp.
async fn clock_past(t: u64) {
    eventually("the clock to tick", || tidings::util::now_ms() > t).await;
}

// ------------------------------------------------------------- mentions ----

/// `(mentioned, mentioned_all)` that `who` must see on the three messages
/// of the mention tests, by content.
fn mention_flags(who: &str, m: &Message) -> (bool, bool) {
    match text(m) {
        "hey Jerry and Tyke" => (who == "Jerry" || who == "Tyke", false),
        "hey all" => (true, true),
        "no mentions" => (false, false),
        "now for Spike" => (who == "Spike", false),
        other => panic!("unexpected message {other:?}"),
    }
}

fn assert_mentions(who: &str, msgs: &[Message], what: &str) {
    assert!(!msgs.is_empty(), "{who}: no messages in {what}");
    for m in msgs {
        assert_eq!(
            (m.mentioned, m.mentioned_all),
            mention_flags(who, m),
            "{who}'s flags on {:?} in {what}",
            text(m)
        );
        assert_eq!(m.mentioned_all, m.mention_all, "mentionedAll == mentionAll");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_are_flagged_per_receiver_live_redelivered_in_history_and_sync() {
    let s = TestServer::start_with(|c| c.delivery.ack_timeout_secs = 1).await;
    let (tom, _tev) = s.connect("Tom").await;
    let mut phone = s.options("Jerry");
    phone.device_id = Some("phone".into());
    phone.auto_ack = false;
    let (jerry, mut jev) = s.connect_with(phone).await;
    let (spike, mut sev) = s.connect("Spike").await;
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike", "Tyke"]))
        .await
        .unwrap()
        .id;

    let named = tom
        .send(with_mentions(
            conv,
            "hey Jerry and Tyke",
            &["Jerry", "Tyke"],
            false,
        ))
        .await
        .unwrap();
    let all = tom
        .send(with_mentions(conv, "hey all", &[], true))
        .await
        .unwrap();
    let plain = tom.send_text(conv, "no mentions").await.unwrap();
    let order = [&named.msg_id, &all.msg_id, &plain.msg_id];

    // Live: the stored fields reach everyone; the flags are per receiver.
    for (who, ev) in [("Jerry", &mut jev), ("Spike", &mut sev)] {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(expect_message(ev, "a live message").await);
        }
        assert_eq!(
            got.iter().map(|m| &m.msg_id).collect::<Vec<_>>(),
            order,
            "{who}"
        );
        assert_eq!(got[0].mention_list, strs(&["Jerry", "Tyke"]));
        assert!(!got[0].mention_all);
        assert!(got[1].mention_all && got[1].mention_list.is_empty());
        assert!(!got[2].mention_all && got[2].mention_list.is_empty());
        assert_mentions(who, &got, "live delivery");
    }

    // Redelivery after the ack timeout (Jerry's phone acks nothing) keeps them.
    let mut again = Vec::new();
    while again.len() < 3 {
        let m = expect(&mut jev, "a redelivery", |e| match e {
            Event::Message {
                msg,
                redelivered: true,
                chat_room: false,
            } => Some(msg.clone()),
            _ => None,
        })
        .await;
        if !again.iter().any(|a: &Message| a.msg_id == m.msg_id) {
            again.push(m);
        }
    }
    assert_mentions("Jerry", &again, "redelivery");
    jerry.ack(conv, plain.seq);
    acked_through(&s, "Jerry", "phone", conv, plain.seq).await;

    // History, per reader (the sender is not mentioned by its own message).
    assert_mentions("Jerry", &full_history(&jerry, conv).await, "history");
    assert_mentions("Spike", &full_history(&spike, conv).await, "history");
    assert_mentions("Tom", &full_history(&tom, conv).await, "history");

    // Push sync at Tyke's first login.
    let (tyke, mut yev) = s.connect_raw(s.options("Tyke")).await;
    let (synced, done) = push_sync(&mut yev).await;
    assert_eq!(done, (1, 3, 0));
    assert_mentions("Tyke", &synced, "push sync");
    assert_mentions("Tyke", &full_history(&tyke, conv).await, "history");

    // An edit that changes the mentions re-flags every receiver.
    let edited = tom
        .edit(EditMessage {
            conv,
            msg_id: plain.msg_id.clone(),
            content: Content::Text("now for Spike".into()),
            mention_list: strs(&["Spike"]),
            mention_all: false,
        })
        .await
        .unwrap();
    assert_eq!(edited.mention_list, strs(&["Spike"]));
    assert_mentions("Tom", std::slice::from_ref(&edited), "the edit reply");
    for (who, ev) in [("Jerry", &mut jev), ("Spike", &mut sev), ("Tyke", &mut yev)] {
        let (m, _) = expect(ev, "MessageUpdated", updated).await;
        assert_eq!(m.msg_id, plain.msg_id);
        assert_mentions(who, &[m], "the edit event");
    }
    assert_mentions("Spike", &full_history(&spike, conv).await, "history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_offline_hook_names_the_mentioned_offline_peers() {
    let mut hooks = HookServer::start().await;
    let s = start_hooked(&hooks, |_| {}).await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    // Spike and Tyke are members but offline.
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike", "Tyke"]))
        .await
        .unwrap()
        .id;

    let named = tom
        .send(with_mentions(
            conv,
            "Jerry, Tyke",
            &["Jerry", "Tyke"],
            false,
        ))
        .await
        .unwrap();
    let all = tom
        .send(with_mentions(conv, "everyone", &[], true))
        .await
        .unwrap();
    let plain = tom.send_text(conv, "nobody").await.unwrap();
    for _ in 0..3 {
        expect_message(&mut jev, "Jerry's copy").await;
    }

    let call = |id: &str| {
        let id = id.to_owned();
        move |c: &common::hook_server::HookCall| c.param("msgId") == &json!(id)
    };
    let c = hooks
        .next_where("_receiversOffline", call(&named.msg_id))
        .await;
    assert_eq!(c.param("convId"), &json!(conv.to_string()));
    assert_eq!(
        sorted_strings(c.param("offlinePeers")),
        strs(&["Spike", "Tyke"])
    );
    // Jerry is mentioned too, but online.
    assert_eq!(
        sorted_strings(c.param("mentionOfflinePeers")),
        strs(&["Tyke"])
    );
    assert_eq!(c.param("mentionAll"), &json!(false));

    let c = hooks
        .next_where("_receiversOffline", call(&all.msg_id))
        .await;
    assert_eq!(
        sorted_strings(c.param("offlinePeers")),
        strs(&["Spike", "Tyke"])
    );
    assert_eq!(c.param("mentionAll"), &json!(true));
    assert!(
        sorted_strings(c.param("mentionOfflinePeers")).is_empty(),
        "mentionAll leaves mentionOfflinePeers empty: {}",
        c.body
    );

    let c = hooks
        .next_where("_receiversOffline", call(&plain.msg_id))
        .await;
    assert_eq!(c.param("mentionAll"), &json!(false));
    assert!(sorted_strings(c.param("mentionOfflinePeers")).is_empty());
}

// --------------------------------------------------------- edit / recall ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_reaches_members_and_the_editors_other_devices() {
    let s = TestServer::start().await;
    let (tom, mut tev) = s.connect("Tom").await;
    let mut tablet = s.options("Tom");
    tablet.device_id = Some("tablet".into());
    let (_tablet, mut tabev) = s.connect_with(tablet).await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let sent = tom.send_text(conv, "hello").await.unwrap();
    assert_eq!(expect_message(&mut jev, "hello").await.msg_id, sent.msg_id);
    assert_eq!(
        expect_message(&mut tabev, "hello on Tom's tablet")
            .await
            .msg_id,
        sent.msg_id
    );

    let edited = tom
        .edit_text(conv, &sent.msg_id, "hello, edited")
        .await
        .unwrap();
    assert_eq!(
        (
            &edited.msg_id,
            edited.seq,
            edited.from.as_str(),
            edited.timestamp
        ),
        (&sent.msg_id, sent.seq, "Tom", sent.timestamp),
        "an edit keeps the message's identity and time"
    );
    assert_eq!(text(&edited), "hello, edited");
    assert!(!edited.recalled);
    let first_edit = edited.updated_at.expect("updated_at is set");
    assert!(first_edit >= sent.timestamp);

    for (who, ev) in [("Jerry", &mut jev), ("Tom's tablet", &mut tabev)] {
        let (msg, reason) = expect(ev, "MessageUpdated", updated).await;
        assert_eq!(msg, edited, "{who} sees the stored edit");
        assert_eq!(reason, None, "{who}: a plain edit has no reason");
    }
    // The editing connection has its answer and no event.
    assert_none_before_marker(
        &mut tev,
        &jerry,
        conv,
        "MessageUpdated for the editor",
        |e| matches!(e, Event::MessageUpdated { .. }),
    )
    .await;

    let history = full_history(&jerry, conv).await;
    assert_eq!(history.len(), 2, "the edit adds no message: {history:?}");
    assert_eq!(history[0], edited);

    // A second edit moves updated_at forward.
    let again = tom
        .edit_text(conv, &sent.msg_id, "third take")
        .await
        .unwrap();
    assert!(again.updated_at.unwrap() > first_edit);
    let (msg, _) = expect(&mut jev, "MessageUpdated", updated).await;
    assert_eq!(text(&msg), "third take");
    assert_eq!(text(&full_history(&tom, conv).await[0]), "third take");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_replaces_the_content_with_the_marker() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let mut tablet = s.options("Tom");
    tablet.device_id = Some("tablet".into());
    let (_tablet, mut tabev) = s.connect_with(tablet).await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let oops = tom.send_text(conv, "oops").await.unwrap();
    let fine = tom.send_text(conv, "fine").await.unwrap();
    for _ in 0..2 {
        expect_message(&mut jev, "Jerry's copy").await;
    }

    let r = tom.recall(conv, &oops.msg_id).await.unwrap();
    assert!(r.recalled);
    assert_eq!(r.content, Content::Text(RECALLED_CONTENT.into()));
    assert_eq!(RECALLED_CONTENT, r#"{"_lctype":-127}"#);
    assert_eq!((&r.msg_id, r.seq), (&oops.msg_id, oops.seq));
    assert!(r.updated_at.is_some());

    for (who, ev) in [("Jerry", &mut jev), ("Tom's tablet", &mut tabev)] {
        let (msg, reason) = expect(ev, "MessageRecalled", recalled).await;
        assert_eq!(msg, r, "{who}");
        assert_eq!(reason, None, "{who}");
    }
    let history = full_history(&jerry, conv).await;
    assert_eq!(ids(&history), [oops.msg_id.as_str(), fine.msg_id.as_str()]);
    assert!(history[0].recalled);
    assert_eq!(history[0].content, Content::Text(RECALLED_CONTENT.into()));
    assert!(!history[1].recalled);
    assert_eq!(text(&history[1]), "fine");

    // A recalled message cannot be edited back.
    assert_eq!(
        code_of(tom.edit_text(conv, &oops.msg_id, "undo").await),
        4404
    );
    assert!(full_history(&tom, conv).await[0].recalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_and_recall_refusals_have_leancloud_codes() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, _jev) = s.connect("Jerry").await;
    let (spike, _sev) = s.connect("Spike").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let elsewhere = tom.create_conversation(group(&["Spike"])).await.unwrap().id;
    let mine = tom.send_text(conv, "mine").await.unwrap();
    let other = tom.send_text(elsewhere, "elsewhere").await.unwrap();

    // Someone else's message.
    assert_eq!(
        code_of(jerry.edit_text(conv, &mine.msg_id, "x").await),
        4403
    );
    assert_eq!(code_of(jerry.recall(conv, &mine.msg_id).await), 4403);
    // No such message: past the end, garbage, or one of another conversation.
    for bad in [
        msg_id(conv, 999),
        "garbage".to_owned(),
        String::new(),
        other.msg_id.clone(),
    ] {
        assert_eq!(
            code_of(tom.edit_text(conv, &bad, "x").await),
            4404,
            "edit {bad:?}"
        );
        assert_eq!(
            code_of(tom.recall(conv, &bad).await),
            4404,
            "recall {bad:?}"
        );
    }
    // Not a member.
    assert_eq!(
        code_of(spike.edit_text(conv, &mine.msg_id, "x").await),
        4401
    );
    assert_eq!(code_of(spike.recall(conv, &mine.msg_id).await), 4401);

    let history = full_history(&tom, conv).await;
    assert_eq!(text(&history[0]), "mine");
    assert_eq!(history[0].updated_at, None);
    assert!(!history[0].recalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_and_recall_each_have_a_config_switch() {
    // Editing off, recalling on.
    let s = TestServer::start_with(|c| c.messages.allow_edit = false).await;
    let (tom, _tev) = s.connect("Tom").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let m = tom.send_text(conv, "as sent").await.unwrap();
    let body = server_error(tom.edit_text(conv, &m.msg_id, "changed").await);
    assert_eq!(body.code, 4406, "{body}");
    assert_eq!(text(&full_history(&tom, conv).await[0]), "as sent");
    assert!(tom.recall(conv, &m.msg_id).await.unwrap().recalled);

    // Recalling off, editing on.
    let s = TestServer::start_with(|c| c.messages.allow_recall = false).await;
    let (tom, _tev) = s.connect("Tom").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let m = tom.send_text(conv, "as sent").await.unwrap();
    let body = server_error(tom.recall(conv, &m.msg_id).await);
    assert_eq!(body.code, 4407, "{body}");
    assert!(!full_history(&tom, conv).await[0].recalled);
    let e = tom.edit_text(conv, &m.msg_id, "changed").await.unwrap();
    assert_eq!(text(&e), "changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_was_away_gets_the_edits_and_recalls_at_login() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let mut phone = s.options("Jerry");
    phone.device_id = Some("phone".into());
    let (jerry, mut jev) = s.connect_with(phone.clone()).await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let a = tom.send_text(conv, "to edit").await.unwrap();
    let b = tom.send_text(conv, "to recall").await.unwrap();
    let c = tom.send_text(conv, "untouched").await.unwrap();
    for _ in 0..3 {
        expect_message(&mut jev, "live").await;
    }
    acked_through(&s, "Jerry", "phone", conv, c.seq).await;
    jerry.logout().await.unwrap();
    drop((jerry, jev));
    offline(&s, "Jerry").await;

    let edited = tom
        .edit_text(conv, &a.msg_id, "edited while Jerry was away")
        .await
        .unwrap();
    let gone = tom.recall(conv, &b.msg_id).await.unwrap();

    // The phone comes back: nothing new to sync, but both changes arrive.
    let (jerry, mut jev) = s.connect_with(phone).await;
    let (msg, reason) = expect(&mut jev, "MessageUpdated at login", updated).await;
    assert_eq!(msg, edited);
    assert_eq!(reason, None);
    let (msg, reason) = expect(&mut jev, "MessageRecalled at login", recalled).await;
    assert_eq!(msg, gone);
    assert_eq!(reason, None);
    let history = full_history(&jerry, conv).await;
    assert_eq!(
        history.iter().map(text).collect::<Vec<_>>(),
        ["edited while Jerry was away", RECALLED_CONTENT, "untouched"]
    );
    assert!(history[1].recalled);

    // A device never seen before syncs the messages as they are now, and
    // gets no patch events: history already has the changes.
    let mut tablet = s.options("Jerry");
    tablet.device_id = Some("tablet".into());
    let (_t, mut tabev) = s.connect_raw(tablet).await;
    let (synced, _) = push_sync(&mut tabev).await;
    assert_eq!(
        synced.iter().map(text).collect::<Vec<_>>(),
        ["edited while Jerry was away", RECALLED_CONTENT, "untouched"]
    );
    assert_none_before_marker(
        &mut tabev,
        &tom,
        conv,
        "patch events on a new device",
        |e| {
            matches!(
                e,
                Event::MessageUpdated { .. } | Event::MessageRecalled { .. }
            )
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_update_hook_sees_edits_and_recalls_and_can_drop_or_rewrite() {
    let mut hooks = HookServer::scripted(|c| {
        if c.name != "_messageUpdate" {
            return Answer::ok();
        }
        let recall = c.param("recall") == &json!(true);
        match (recall, c.param("content").as_str().unwrap_or_default()) {
            (false, "please drop") => Answer::result(json!({ "drop": true })),
            (false, "drop with code") => Answer::result(json!({
                "drop": true, "code": 4567, "detail": "not today",
            })),
            (false, "please rewrite") => {
                Answer::result(json!({ "content": "rewritten by the app" }))
            }
            (true, "keep me") => Answer::result(json!({ "drop": true })),
            _ => Answer::ok(),
        }
    })
    .await;
    let s = start_hooked(&hooks, |_| {}).await;
    let (tom, mut tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let (_spike, _sev) = s.connect("Spike").await;
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;
    let sent = tom.send_text(conv, "original").await.unwrap();

    // A plain edit: the hook's params.
    tom.edit_text(conv, &sent.msg_id, "edited plainly")
        .await
        .unwrap();
    let c = hooks.next("_messageUpdate").await;
    assert_eq!(c.param("fromPeer"), &json!("Tom"));
    assert_eq!(c.param("convId"), &json!(conv.to_string()));
    assert_eq!(
        sorted_strings(c.param("toPeers")),
        strs(&["Jerry", "Spike"])
    );
    assert_eq!(c.param("bin"), &json!(false));
    assert_eq!(c.param("content"), &json!("edited plainly"));
    assert_eq!(c.param("timestamp"), &json!(sent.timestamp));
    assert_eq!(c.param("msgId"), &json!(sent.msg_id));
    assert_eq!(c.param("sourceIP"), &json!("127.0.0.1"));
    assert_eq!(c.param("recall"), &json!(false));
    assert_eq!(c.param("system"), &json!(false));
    let (m, _) = expect(&mut jev, "MessageUpdated", updated).await;
    assert_eq!(text(&m), "edited plainly");

    // Dropped: 4405 by default, or the hook's own code and detail.
    let body = server_error(tom.edit_text(conv, &sent.msg_id, "please drop").await);
    assert_eq!(body.code, 4405, "{body}");
    let body = server_error(tom.edit_text(conv, &sent.msg_id, "drop with code").await);
    assert_eq!((body.code, body.detail.as_str()), (4567, "not today"));
    assert_eq!(text(&full_history(&tom, conv).await[0]), "edited plainly");

    // Rewritten: stored and delivered as the hook said; the editor is told why.
    let e = tom
        .edit_text(conv, &sent.msg_id, "please rewrite")
        .await
        .unwrap();
    assert_eq!(text(&e), "rewritten by the app");
    let (m, reason) = expect(&mut tev, "the editor's MessageUpdated", updated).await;
    assert_eq!(text(&m), "rewritten by the app");
    assert_eq!(m.msg_id, sent.msg_id);
    assert_eq!(reason.expect("a reason").code, 1);
    let (m, _) = expect(&mut jev, "MessageUpdated", updated).await;
    assert_eq!(text(&m), "rewritten by the app");

    assert_eq!(
        text(&full_history(&tom, conv).await[0]),
        "rewritten by the app"
    );

    // Recalls go through the hook too, flagged recall, and can be dropped.
    let keep = tom.send_text(conv, "keep me").await.unwrap();
    let body = server_error(tom.recall(conv, &keep.msg_id).await);
    assert_eq!(body.code, 4405, "{body}");
    let c = hooks
        .next_where("_messageUpdate", |c| {
            c.param("msgId") == &json!(keep.msg_id)
        })
        .await;
    assert_eq!(c.param("recall"), &json!(true));
    assert!(!full_history(&tom, conv).await[1].recalled);
    assert!(tom.recall(conv, &sent.msg_id).await.unwrap().recalled);
    let c = hooks
        .next_where("_messageUpdate", |c| {
            c.param("msgId") == &json!(sent.msg_id) && c.param("recall") == &json!(true)
        })
        .await;
    assert_eq!(c.param("fromPeer"), &json!("Tom"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_update_hook_rewrite_tells_the_editor_the_hooks_own_reason() {
    let hooks = HookServer::scripted(|c| {
        if c.name == "_messageUpdate" {
            Answer::result(json!({
                "content": "rewritten again", "code": 42, "detail": "house style",
            }))
        } else {
            Answer::ok()
        }
    })
    .await;
    let s = start_hooked(&hooks, |_| {}).await;
    let (tom, mut tev) = s.connect("Tom").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let sent = tom.send_text(conv, "original").await.unwrap();
    let e = tom
        .edit_text(conv, &sent.msg_id, "rewrite with code")
        .await
        .unwrap();
    assert_eq!(text(&e), "rewritten again");
    let (m, reason) = expect(&mut tev, "the editor's MessageUpdated", updated).await;
    assert_eq!(m.msg_id, sent.msg_id);
    assert_eq!(
        reason,
        Some(Reason {
            code: 42,
            detail: "house style".into()
        }),
        "the hook's positive code and detail are the reason"
    );
}

// --------------------------------------------------------------- delete ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_message_by_its_sender_the_owner_or_a_manager() {
    let s = TestServer::start().await;
    let (tom, mut tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let (spike, mut sev) = s.connect("Spike").await;
    let (tyke, _yev) = s.connect("Tyke").await;
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;
    let j1 = jerry.send_text(conv, "j1").await.unwrap();
    let j2 = jerry.send_text(conv, "j2").await.unwrap();
    let s1 = spike.send_text(conv, "s1").await.unwrap();
    let t1 = tom.send_text(conv, "t1").await.unwrap();

    // A plain member may not delete another's message; a stranger, nothing.
    assert_eq!(code_of(spike.delete_message(conv, &j1.msg_id).await), 4403);
    assert_eq!(code_of(tyke.delete_message(conv, &j1.msg_id).await), 4401);
    assert_eq!(code_of(jerry.delete_message(conv, "garbage").await), 4404);
    assert_eq!(
        code_of(jerry.delete_message(conv, &msg_id(conv, 99)).await),
        4404
    );

    // The sender.
    jerry.delete_message(conv, &j1.msg_id).await.unwrap();
    let want = (conv, j1.msg_id.clone(), j1.seq, "Jerry".to_owned());
    assert_eq!(expect(&mut tev, "MessageDeleted", deleted).await, want);
    assert_eq!(expect(&mut sev, "MessageDeleted", deleted).await, want);
    // The owner.
    tom.delete_message(conv, &s1.msg_id).await.unwrap();
    let want = (conv, s1.msg_id.clone(), s1.seq, "Tom".to_owned());
    assert_eq!(expect(&mut jev, "MessageDeleted", deleted).await, want);
    assert_eq!(expect(&mut sev, "MessageDeleted", deleted).await, want);
    // A manager.
    tom.set_managers(conv, strs(&["Spike"]), vec![])
        .await
        .unwrap();
    spike.delete_message(conv, &j2.msg_id).await.unwrap();
    let want = (conv, j2.msg_id.clone(), j2.seq, "Spike".to_owned());
    assert_eq!(expect(&mut tev, "MessageDeleted", deleted).await, want);
    assert_eq!(expect(&mut jev, "MessageDeleted", deleted).await, want);

    // Gone: from history, and from further changes.
    assert_eq!(ids(&full_history(&jerry, conv).await), [t1.msg_id.as_str()]);
    assert_eq!(code_of(jerry.delete_message(conv, &j1.msg_id).await), 4404);
    assert_eq!(code_of(jerry.edit_text(conv, &j1.msg_id, "x").await), 4404);
    assert_eq!(code_of(jerry.recall(conv, &j1.msg_id).await), 4404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_messages_leave_history_paging_intact() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let mut sent = Vec::new();
    for i in 1..=10 {
        sent.push(tom.send_text(conv, &format!("m{i}")).await.unwrap());
    }
    for i in [2, 5, 6, 9] {
        tom.delete_message(conv, &sent[i - 1].msg_id).await.unwrap();
    }
    let kept = ["m1", "m3", "m4", "m7", "m8", "m10"];

    // Backwards from the newest, two at a time.
    let (mut all, mut anchor, mut pages) = (Vec::new(), Anchor::Latest, Vec::new());
    loop {
        let (page, more) = tom
            .history(tidings::protocol::HistoryQuery {
                conv,
                anchor: anchor.clone(),
                direction: Direction::Before,
                inclusive: false,
                limit: 2,
                lctype: None,
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 2, "full pages of what is left: {page:?}");
        pages.push(more);
        anchor = Anchor::Seq(page[0].seq);
        let mut page: Vec<String> = page.iter().map(|m| text(m).to_owned()).collect();
        page.extend(all);
        all = page;
        if !more {
            break;
        }
    }
    assert_eq!(all, kept);
    assert_eq!(pages, [true, true, false]);

    // Forwards from the start, four at a time.
    let (page, more) = tom
        .history(tidings::protocol::HistoryQuery {
            conv,
            anchor: Anchor::Earliest,
            direction: Direction::After,
            inclusive: false,
            limit: 4,
            lctype: None,
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(text).collect::<Vec<_>>(), kept[..4]);
    assert!(more);
    let (page, more) = tom
        .history(tidings::protocol::HistoryQuery {
            conv,
            anchor: Anchor::Seq(page[3].seq),
            direction: Direction::After,
            inclusive: false,
            limit: 4,
            lctype: None,
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(text).collect::<Vec<_>>(), kept[4..]);
    assert!(!more);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_messages_are_neither_redelivered_nor_synced() {
    let s = TestServer::start_with(|c| c.delivery.ack_timeout_secs = 1).await;
    let (tom, _tev) = s.connect("Tom").await;
    let mut phone = s.options("Spike");
    phone.device_id = Some("phone".into());
    phone.auto_ack = false;
    let (spike, mut sev) = s.connect_with(phone.clone()).await;
    let conv = tom
        .create_conversation(group(&["Spike", "Tyke"]))
        .await
        .unwrap()
        .id;
    let a = tom.send_text(conv, "a, deleted").await.unwrap();
    let b = tom.send_text(conv, "b, kept").await.unwrap();
    assert_eq!(expect_message(&mut sev, "a").await.msg_id, a.msg_id);
    assert_eq!(expect_message(&mut sev, "b").await.msg_id, b.msg_id);
    tom.delete_message(conv, &a.msg_id).await.unwrap();
    let (_, id, _, _) = expect(&mut sev, "MessageDeleted", deleted).await;
    assert_eq!(id, a.msg_id);

    // Neither is acked: after the ack timeout only b comes again.
    let first_redelivery = expect(&mut sev, "a redelivery", |e| match e {
        Event::Message {
            msg,
            redelivered: true,
            chat_room: false,
        } => Some(msg.msg_id.clone()),
        _ => None,
    })
    .await;
    assert_eq!(first_redelivery, b.msg_id);

    // Nor at the next login of the same device.
    spike.abort();
    drop((spike, sev));
    offline(&s, "Spike").await;
    let (_spike, mut sev) = s.connect_raw(phone).await;
    let (synced, done) = push_sync(&mut sev).await;
    assert_eq!(ids(&synced), [b.msg_id.as_str()]);
    assert_eq!(done.1, 1);

    // Nor at a first login.
    let (_tyke, mut yev) = s.connect_raw(s.options("Tyke")).await;
    let (synced, _) = push_sync(&mut yev).await;
    assert_eq!(ids(&synced), [b.msg_id.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_deleted_hook_fires_under_its_skygear_alias() {
    let mut hooks = HookServer::start().await;
    let sky = hooks.endpoint("sky", "after_message_deleted");
    let s = start_hooked(&hooks, |c| route_hook(c, "after_message_deleted", sky)).await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, _jev) = s.connect("Jerry").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let m = jerry.send_text(conv, "bye").await.unwrap();
    tom.delete_message(conv, &m.msg_id).await.unwrap();

    let c = hooks.next("after_message_deleted").await;
    assert_eq!(c.lane, "sky");
    assert_eq!(c.param("convId"), &json!(conv.to_string()));
    assert_eq!(c.param("msgId"), &json!(m.msg_id));
    assert_eq!(c.param("fromPeer"), &json!("Jerry"));
    assert_eq!(c.param("deletedBy"), &json!("Tom"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_conversation_by_owner_or_manager_removes_it_and_its_history() {
    let mut hooks = HookServer::start().await;
    let s = start_hooked(&hooks, |_| {}).await;
    let (tom, mut tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let (spike, _sev) = s.connect("Spike").await;
    let (tyke, _yev) = s.connect("Tyke").await;
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;
    tom.send_text(conv, "soon gone").await.unwrap();
    expect_message(&mut jev, "soon gone").await;

    assert_eq!(code_of(jerry.delete_conversation(conv).await), 4324);
    assert_eq!(code_of(tyke.delete_conversation(conv).await), 4401);
    assert!(tom.get_conversation(conv).await.is_ok());

    // A manager deletes it; every member hears.
    tom.set_managers(conv, strs(&["Spike"]), vec![])
        .await
        .unwrap();
    spike.delete_conversation(conv).await.unwrap();
    for (who, ev) in [("Tom", &mut tev), ("Jerry", &mut jev)] {
        let by = expect(ev, "ConversationDeleted", |e| match e {
            Event::ConversationDeleted { conv: c, by } if *c == conv => Some(by.clone()),
            _ => None,
        })
        .await;
        assert_eq!(by, "Spike", "{who}");
    }
    assert_eq!(code_of(tom.get_conversation(conv).await), 4303);
    assert_eq!(code_of(jerry.send_text(conv, "anyone?").await), 4303);
    assert_eq!(code_of(tom.delete_conversation(conv).await), 4303);
    let q = tidings::protocol::HistoryQuery {
        conv,
        anchor: Anchor::Latest,
        direction: Direction::Before,
        inclusive: false,
        limit: 10,
        lctype: None,
    };
    assert_eq!(code_of(tom.history(q).await), 4303);
    assert!(
        !jerry
            .conversations(100)
            .await
            .unwrap()
            .iter()
            .any(|c| c.id == conv)
    );
    let left = s
        .running()
        .hub()
        .store
        .messages(conv, 1, u64::MAX, 10, false)
        .unwrap();
    assert!(left.is_empty(), "the log is gone: {left:?}");

    let c = hooks.next("_conversationDeleted").await;
    assert_eq!(c.param("convId"), &json!(conv.to_string()));
    assert_eq!(c.param("deletedBy"), &json!("Spike"));
    assert_eq!(
        sorted_strings(c.param("members")),
        strs(&["Jerry", "Spike", "Tom"])
    );

    // The owner may too.
    let conv2 = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    tom.delete_conversation(conv2).await.unwrap();
    let by = expect(&mut jev, "ConversationDeleted", |e| match e {
        Event::ConversationDeleted { conv: c, by } if *c == conv2 => Some(by.clone()),
        _ => None,
    })
    .await;
    assert_eq!(by, "Tom");
    let c = hooks.next("_conversationDeleted").await;
    assert_eq!(c.param("convId"), &json!(conv2.to_string()));
    assert_eq!(c.param("deletedBy"), &json!("Tom"));
}

// ------------------------------------------------------------- receipts ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_tell_the_sender_when_its_messages_arrive_and_are_read() {
    let s = TestServer::start().await;
    let (tom, mut tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_unique(strs(&["Jerry"])).await.unwrap().id;
    assert_eq!(tom.receipts(conv).await.unwrap(), (None, None));

    // A message without receipt: acked, but nothing for Tom.
    let p1 = tom.send_text(conv, "no receipt").await.unwrap();
    assert!(!expect_message(&mut jev, "p1").await.receipt);
    acked_through(&s, "Jerry", "default", conv, p1.seq).await;

    let r1 = tom
        .send(with_receipt(conv, "receipt please"))
        .await
        .unwrap();
    let m = expect_message(&mut jev, "r1").await;
    assert_eq!(m.msg_id, r1.msg_id);
    assert!(m.receipt);
    // Jerry's client acks on its own: the first receipt event is r1's.
    let got = expect(&mut tev, "a receipt", receipt).await;
    assert_eq!(got, ("delivered", conv, "Jerry".into(), r1.timestamp));

    jerry.read(conv, None).await.unwrap();
    let got = expect(&mut tev, "a receipt", receipt).await;
    assert_eq!(got, ("read", conv, "Jerry".into(), r1.timestamp));
    assert_eq!(
        tom.receipts(conv).await.unwrap(),
        (Some(r1.timestamp), Some(r1.timestamp))
    );
    // Jerry asked for no receipts: Tom has received and read nothing of his.
    assert_eq!(jerry.receipts(conv).await.unwrap(), (None, None));

    // Plain messages received and read: still no receipt events.
    let p2 = tom.send_text(conv, "plain again").await.unwrap();
    expect_message(&mut jev, "p2").await;
    acked_through(&s, "Jerry", "default", conv, p2.seq).await;
    jerry.read(conv, None).await.unwrap();
    assert_none_before_marker(&mut tev, &jerry, conv, "receipt event", is_receipt).await;

    // lastReadAt is the time of the newest message read, which need not
    // want a receipt itself.
    clock_past(p2.timestamp).await;
    let r2 = tom.send(with_receipt(conv, "second")).await.unwrap();
    clock_past(r2.timestamp).await;
    let p3 = tom.send_text(conv, "newest, plain").await.unwrap();
    expect_message(&mut jev, "r2").await;
    expect_message(&mut jev, "p3").await;
    let got = expect(&mut tev, "a receipt", receipt).await;
    assert_eq!(got, ("delivered", conv, "Jerry".into(), r2.timestamp));
    acked_through(&s, "Jerry", "default", conv, p3.seq).await;
    jerry.read(conv, None).await.unwrap();
    let got = expect(&mut tev, "a receipt", receipt).await;
    assert_eq!(got, ("read", conv, "Jerry".into(), p3.timestamp));
    assert_eq!(
        tom.receipts(conv).await.unwrap(),
        (Some(r2.timestamp), Some(p3.timestamp))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_survive_a_restart_and_reach_a_sender_who_was_away() {
    let mut s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let conv = tom.create_unique(strs(&["Jerry"])).await.unwrap().id;
    let r = tom
        .send(with_receipt(conv, "while you were out"))
        .await
        .unwrap();
    tom.logout().await.unwrap();
    drop((tom, _tev));
    offline(&s, "Tom").await;

    // Jerry gets it at login, acks it and reads it while Tom is away.
    let (jerry, mut jev) = s.connect_raw(s.options("Jerry")).await;
    let (synced, _) = push_sync(&mut jev).await;
    assert_eq!(ids(&synced), [r.msg_id.as_str()]);
    assert!(synced[0].receipt);
    acked_through(&s, "Jerry", "default", conv, r.seq).await;
    jerry.read(conv, None).await.unwrap();
    drop((jerry, jev));

    s.restart().await;

    let (tom, mut tev) = s.connect("Tom").await;
    let mut got = vec![
        expect(&mut tev, "an owed receipt", receipt).await,
        expect(&mut tev, "an owed receipt", receipt).await,
    ];
    got.sort();
    assert_eq!(
        got,
        [
            ("delivered", conv, "Jerry".to_owned(), r.timestamp),
            ("read", conv, "Jerry".to_owned(), r.timestamp),
        ]
    );
    assert_eq!(
        tom.receipts(conv).await.unwrap(),
        (Some(r.timestamp), Some(r.timestamp))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_ignored_beyond_two_members() {
    let s = TestServer::start().await;
    let (tom, mut tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;
    let r = tom.send(with_receipt(conv, "to the group")).await.unwrap();
    let m = expect_message(&mut jev, "r").await;
    assert!(!m.receipt, "delivered without receipt: {m:?}");
    assert!(
        !full_history(&tom, conv).await[0].receipt,
        "stored without receipt"
    );
    acked_through(&s, "Jerry", "default", conv, r.seq).await;
    jerry.read(conv, None).await.unwrap();
    assert_none_before_marker(
        &mut tev,
        &jerry,
        conv,
        "receipt event in a group",
        is_receipt,
    )
    .await;
    assert_eq!(tom.receipts(conv).await.unwrap(), (None, None));
}

// ---------------------------------------------------------------- wills ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_will_goes_out_when_the_connection_drops() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let (spike, mut sev) = s.connect("Spike").await;
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;
    let first = tom
        .set_will(SendMessage::text(conv, "first will"))
        .await
        .unwrap();
    assert_eq!(first.seq, 0);
    let will = tom
        .set_will(SendMessage::text(conv, "Tom is gone"))
        .await
        .unwrap();
    assert_eq!(will.seq, 0);
    // Parked, not sent: nothing yet.
    assert_none_before_marker(&mut jev, &spike, conv, "a will before the drop", is_will).await;

    tom.abort();
    for (who, ev) in [("Jerry", &mut jev), ("Spike", &mut sev)] {
        let m = expect_message(ev, "the will").await;
        assert!(m.will, "{who}: {m:?}");
        assert_eq!(m.seq, 0, "{who}");
        assert_eq!(m.from, "Tom");
        assert_eq!(m.conv, conv);
        assert_eq!(m.msg_id, will.msg_id);
        assert_eq!(
            text(&m),
            "Tom is gone",
            "{who}: only the latest will counts"
        );
    }
    offline(&s, "Tom").await;
    assert_none_before_marker(&mut jev, &spike, conv, "a second will", is_will).await;
    let history = full_history(&jerry, conv).await;
    assert!(
        history.iter().all(|m| !m.will && text(m) == "marker"),
        "wills are never stored: {history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_will_after_a_logout_or_once_cleared() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let (spike, _sev) = s.connect("Spike").await;
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;

    tom.set_will(SendMessage::text(conv, "will A"))
        .await
        .unwrap();
    tom.logout().await.unwrap();
    offline(&s, "Tom").await;
    assert_none_before_marker(&mut jev, &spike, conv, "a will after a logout", is_will).await;

    let (tom, _tev) = s.connect("Tom").await;
    tom.set_will(SendMessage::text(conv, "will B"))
        .await
        .unwrap();
    tom.clear_will().await.unwrap();
    tom.abort();
    offline(&s, "Tom").await;
    assert_none_before_marker(&mut jev, &spike, conv, "a cleared will", is_will).await;

    // The same drop with a will set does send it.
    let (tom, _tev) = s.connect("Tom").await;
    tom.set_will(SendMessage::text(conv, "will C"))
        .await
        .unwrap();
    tom.abort();
    let m = expect_message(&mut jev, "will C").await;
    assert!(m.will);
    assert_eq!(text(&m), "will C");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_timing_out_sends_its_will() {
    let s = TestServer::start_with(|c| c.limits.idle_timeout_secs = 1).await;
    let mut quiet = s.options("Tom");
    quiet.ping_interval = Duration::ZERO;
    let (tom, mut tev) = s.connect_with(quiet).await;
    let mut chatty = s.options("Jerry");
    chatty.ping_interval = Duration::from_millis(200);
    let (_jerry, mut jev) = s.connect_with(chatty).await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    tom.set_will(SendMessage::text(conv, "lost in the void"))
        .await
        .unwrap();

    let code = tev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Closed { code, .. } => Some(*code),
            _ => None,
        })
        .await
        .expect("Tom is timed out");
    assert_eq!(code, Some(4107));
    let m = expect_message(&mut jev, "the will").await;
    assert!(m.will);
    assert_eq!(text(&m), "lost in the void");
}

// ------------------------------------------------------- keyword filter ----

const WORDS: &str = "# words for the tests\ncrap\nΣΟΦΊΑ\n\n坏蛋\nStraße\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_filter_masks_words_across_unicode_and_case() {
    let dir = tempfile::tempdir().unwrap();
    let words = keyword_file(dir.path(), WORDS);
    let s = TestServer::start_with(|c| c.messages.keyword_file = Some(words)).await;
    let (tom, mut tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_unique(strs(&["Jerry"])).await.unwrap().id;

    let cases = [
        ("CRAP", "***"),
        ("σοφία", "***"),
        ("你这个坏蛋!", "你这个***!"),
        ("STRAßE", "***"),
        ("crap, ΣοΦίΑ and 坏蛋 again", "***, *** and *** again"),
    ];
    for (sent_text, seen) in cases {
        let sent = tom.send_text(conv, sent_text).await.unwrap();
        let m = expect_message(&mut jev, sent_text).await;
        assert_eq!(text(&m), seen, "Jerry sees {sent_text:?} filtered");
        let (m, reason) = expect(&mut tev, "the sender's MessageUpdated", updated).await;
        assert_eq!((m.msg_id.as_str(), m.seq), (sent.msg_id.as_str(), sent.seq));
        assert_eq!(text(&m), seen);
        assert_eq!(reason.expect("a reason").code, CENSORED);
    }

    // Typed content stays JSON; only its text is masked.
    tom.send_text(conv, &typed(-1, "Holy crap")).await.unwrap();
    let m = expect_message(&mut jev, "typed").await;
    assert_eq!(
        json_content(&m),
        json!({ "_lctype": -1, "_lctext": "Holy ***" })
    );
    let (m, _) = expect(&mut tev, "the sender's MessageUpdated", updated).await;
    assert_eq!(json_content(&m)["_lctext"], json!("Holy ***"));

    // Clean text (a comment line of the file is not a word) is untouched.
    let clean = tom.send_text(conv, "# words for the tests").await.unwrap();
    assert_eq!(
        text(&expect_message(&mut jev, "clean").await),
        "# words for the tests"
    );
    assert_none_before_marker(
        &mut tev,
        &jerry,
        conv,
        "MessageUpdated for clean text",
        |e| matches!(e, Event::MessageUpdated { .. }),
    )
    .await;

    // History has only the filtered text.
    let history: Vec<String> = full_history(&jerry, conv)
        .await
        .iter()
        .map(|m| text(m).to_owned())
        .collect();
    let mut want: Vec<String> = cases.iter().map(|(_, seen)| seen.to_string()).collect();
    want.push(typed(-1, "Holy ***"));
    want.push("# words for the tests".into());
    want.push("marker".into());
    assert_eq!(history.len(), want.len());
    for (got, want) in history.iter().zip(&want) {
        if got.starts_with('{') {
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(got).unwrap(),
                serde_json::from_str::<serde_json::Value>(want).unwrap()
            );
        } else {
            assert_eq!(got, want);
        }
    }

    // Edits are filtered too.
    let e = tom
        .edit_text(conv, &clean.msg_id, "edited to crap")
        .await
        .unwrap();
    assert_eq!(text(&e), "edited to ***");
    let (m, _) = expect(&mut jev, "MessageUpdated", updated).await;
    assert_eq!(text(&m), "edited to ***");
    let (m, reason) = expect(&mut tev, "the editor's MessageUpdated", updated).await;
    assert_eq!(text(&m), "edited to ***");
    assert_eq!(reason.expect("a reason").code, CENSORED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_filter_runs_after_the_message_received_hook() {
    let dir = tempfile::tempdir().unwrap();
    let words = keyword_file(dir.path(), WORDS);
    let hooks = HookServer::scripted(|c| {
        if c.name == "_messageReceived" && c.param("content") == &json!("please rewrite") {
            Answer::result(json!({ "content": "you are a 坏蛋, Straße" }))
        } else {
            Answer::ok()
        }
    })
    .await;
    let s = start_hooked(&hooks, |c| c.messages.keyword_file = Some(words)).await;
    let (tom, mut tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_unique(strs(&["Jerry"])).await.unwrap().id;

    let sent = tom.send_text(conv, "please rewrite").await.unwrap();
    let m = expect_message(&mut jev, "the rewritten message").await;
    assert_eq!(text(&m), "you are a ***, ***");
    let (m, reason) = expect(&mut tev, "the sender's MessageUpdated", updated).await;
    assert_eq!(m.msg_id, sent.msg_id);
    assert_eq!(text(&m), "you are a ***, ***");
    assert_eq!(reason.expect("a reason").code, CENSORED);
    assert_eq!(
        text(&full_history(&tom, conv).await[0]),
        "you are a ***, ***"
    );
}

// --------------------------------------------------------------- typing ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_other_online_members_only() {
    let s = TestServer::start().await;
    let (tom, mut tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let (spike, mut sev) = s.connect("Spike").await;
    let (tyke, _yev) = s.connect("Tyke").await;
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;

    // The repeated start within a second is not relayed again.
    for started in [true, false, true, true, false] {
        tom.typing(conv, started).unwrap();
    }
    for (who, ev) in [("Jerry", &mut jev), ("Spike", &mut sev)] {
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(expect(ev, "Typing", typing_in(conv)).await);
        }
        let want: Vec<(String, bool)> = [true, false, true, false]
            .into_iter()
            .map(|b| ("Tom".to_owned(), b))
            .collect();
        assert_eq!(got, want, "{who}");
    }

    // A stranger's typing is dropped; Spike's reaches Tom and Jerry.
    tyke.typing(conv, true).unwrap();
    spike.typing(conv, true).unwrap();
    let got = expect(&mut jev, "Spike's Typing", typing_in(conv)).await;
    assert_eq!(got, ("Spike".into(), true), "nothing from Tyke before it");
    // Tom never hears his own typing.
    let got = expect(&mut tev, "Spike's Typing", typing_in(conv)).await;
    assert_eq!(got, ("Spike".into(), true), "nothing from Tom before it");
    assert!(
        tyke.conversations(10).await.unwrap().is_empty(),
        "Tyke is still connected and no member"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_started_hook_is_rate_limited_per_client_and_conversation() {
    let mut hooks = HookServer::start().await;
    let s = start_hooked(&hooks, |_| {}).await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_unique(strs(&["Jerry"])).await.unwrap().id;

    for started in [true, false, true] {
        tom.typing(conv, started).unwrap();
    }
    for _ in 0..3 {
        expect(&mut jev, "Tom's Typing", typing_in(conv)).await;
    }
    // Jerry's start is a separate client: its hook call comes after Tom's
    // (after-hooks are in order per conversation), with no second Tom call between.
    jerry.typing(conv, true).unwrap();
    let first = hooks.next("_typingStarted").await;
    assert_eq!(first.param("convId"), &json!(conv.to_string()));
    assert_eq!(first.param("fromPeer"), &json!("Tom"));
    let second = hooks.next("_typingStarted").await;
    assert_eq!(second.param("fromPeer"), &json!("Jerry"));
    assert_eq!(hooks.count_now("_typingStarted"), 0);

    // With the interval at zero every start goes out.
    let mut hooks = HookServer::start().await;
    let s = start_hooked(&hooks, |c| c.messages.typing_hook_interval_secs = 0).await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, _jev) = s.connect("Jerry").await;
    let conv = tom.create_unique(strs(&["Jerry"])).await.unwrap().id;
    for started in [true, false, true] {
        tom.typing(conv, started).unwrap();
    }
    for _ in 0..2 {
        let c = hooks.next("_typingStarted").await;
        assert_eq!(c.param("fromPeer"), &json!("Tom"));
    }
}

// ---------------------------------------------------------- custom types ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_filters_by_lctype_with_paging() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let contents = [
        Content::Text("plain".into()),
        Content::Text(typed(-1, "a")),
        Content::Text(r#"{"_lctype":-2,"_lcfile":{"url":"https://x/y.png"}}"#.into()),
        Content::Text(typed(-1, "b")),
        Content::Text(typed(7, "custom")),
        Content::Text("{not json".into()),
        Content::Text(r#"{"_lctype":"-1","_lctext":"a string type"}"#.into()),
        Content::Binary(br#"{"_lctype":-1}"#.to_vec()),
        Content::Text(typed(-1, "c")),
        Content::Text(typed(-1, "d")),
        Content::Text(r#"{"_lctext":"no type"}"#.into()),
        Content::Text(typed(-1, "e")),
    ];
    for c in &contents {
        tom.send(SendMessage {
            content: c.clone(),
            ..SendMessage::text(conv, "")
        })
        .await
        .unwrap();
    }
    let texts = |page: &[Message]| -> Vec<String> {
        page.iter()
            .map(|m| json_content(m)["_lctext"].as_str().unwrap().to_owned())
            .collect()
    };
    let q = |t, anchor, dir, limit| lctype_query(conv, t, anchor, dir, limit);

    // Backwards, two at a time.
    let (p, more) = tom
        .history(q(-1, Anchor::Latest, Direction::Before, 2))
        .await
        .unwrap();
    assert_eq!((texts(&p), more), (strs(&["d", "e"]), true));
    let (p, more) = tom
        .history(q(-1, Anchor::Seq(p[0].seq), Direction::Before, 2))
        .await
        .unwrap();
    assert_eq!((texts(&p), more), (strs(&["b", "c"]), true));
    let (p, more) = tom
        .history(q(-1, Anchor::Seq(p[0].seq), Direction::Before, 2))
        .await
        .unwrap();
    assert_eq!((texts(&p), more), (strs(&["a"]), false));

    // Forwards, three at a time; and a page that exactly fits.
    let (p, more) = tom
        .history(q(-1, Anchor::Earliest, Direction::After, 3))
        .await
        .unwrap();
    assert_eq!((texts(&p), more), (strs(&["a", "b", "c"]), true));
    let (p, more) = tom
        .history(q(-1, Anchor::Seq(p[2].seq), Direction::After, 3))
        .await
        .unwrap();
    assert_eq!((texts(&p), more), (strs(&["d", "e"]), false));
    let (p, more) = tom
        .history(q(-1, Anchor::Earliest, Direction::After, 5))
        .await
        .unwrap();
    assert_eq!((texts(&p), more), (strs(&["a", "b", "c", "d", "e"]), false));
    // Anchored on a message id.
    let (p, more) = tom
        .history(q(-1, Anchor::MsgId(msg_id(conv, 9)), Direction::Before, 10))
        .await
        .unwrap();
    assert_eq!((texts(&p), more), (strs(&["a", "b"]), false));

    // Other types, and one nobody used.
    let (p, more) = tom
        .history(q(-2, Anchor::Latest, Direction::Before, 10))
        .await
        .unwrap();
    assert_eq!((p.len(), more), (1, false));
    assert_eq!(p[0].content, contents[2]);
    let (p, more) = tom
        .history(q(7, Anchor::Latest, Direction::Before, 10))
        .await
        .unwrap();
    assert_eq!((texts(&p), more), (strs(&["custom"]), false));
    let (p, more) = tom
        .history(q(99, Anchor::Latest, Direction::Before, 10))
        .await
        .unwrap();
    assert!(p.is_empty() && !more);
    // Unfiltered, everything is there.
    let all = full_history(&tom, conv).await;
    assert_eq!(
        all.iter().map(|m| m.content.clone()).collect::<Vec<_>>(),
        contents
    );
}

// ------------------------------------------------ transient and pushData ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_messages_reach_only_who_is_online_once() {
    let mut hooks = HookServer::start().await;
    let s = start_hooked(&hooks, |c| c.delivery.ack_timeout_secs = 1).await;
    let (tom, _tev) = s.connect("Tom").await;
    let mut phone = s.options("Jerry");
    phone.device_id = Some("phone".into());
    phone.auto_ack = false;
    let (jerry, mut jev) = s.connect_with(phone).await;
    // Spike is a member, offline.
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;

    let t = tom
        .send(SendMessage {
            transient: true,
            ..SendMessage::text(conv, "now or never")
        })
        .await
        .unwrap();
    assert_eq!(t.seq, 0);
    let m = expect_message(&mut jev, "the transient message").await;
    assert!(m.transient);
    assert_eq!((m.msg_id.as_str(), m.seq), (t.msg_id.as_str(), 0));
    assert_eq!(text(&m), "now or never");
    let stored = tom.send_text(conv, "stored").await.unwrap();
    assert_eq!(stored.seq, 1, "the transient message took no seq");
    assert_eq!(
        expect_message(&mut jev, "stored").await.msg_id,
        stored.msg_id
    );

    // Jerry acks nothing: the stored message comes again, the transient one not.
    let again = expect(&mut jev, "a redelivery", |e| match e {
        Event::Message {
            msg,
            redelivered: true,
            chat_room: false,
        } => Some(msg.msg_id.clone()),
        _ => None,
    })
    .await;
    assert_eq!(again, stored.msg_id);
    jerry.ack(conv, stored.seq);

    // Not stored, not synced.
    assert_eq!(
        ids(&full_history(&tom, conv).await),
        [stored.msg_id.as_str()]
    );
    let (_spike, mut sev) = s.connect_raw(s.options("Spike")).await;
    let (synced, _) = push_sync(&mut sev).await;
    assert_eq!(ids(&synced), [stored.msg_id.as_str()]);

    // No _receiversOffline for it (the stored one, sent after, has one).
    let c = hooks
        .next_where("_receiversOffline", |c| {
            c.param("msgId") == &json!(stored.msg_id)
        })
        .await;
    assert_eq!(sorted_strings(c.param("offlinePeers")), strs(&["Spike"]));
    let stray: Vec<_> = hooks
        .take_all()
        .into_iter()
        .filter(|c| c.name == "_receiversOffline")
        .map(|c| c.body)
        .collect();
    assert!(
        stray.is_empty(),
        "no _receiversOffline for a transient message: {stray:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_data_is_kept_with_the_message() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_unique(strs(&["Jerry"])).await.unwrap().id;
    let push = json!({ "alert": "You have a new message", "badge": 1, "sound": "default" });
    tom.send(SendMessage {
        push_data: Some(push.to_string()),
        ..SendMessage::text(conv, "with push data")
    })
    .await
    .unwrap();
    tom.send_text(conv, "without").await.unwrap();

    let parsed = |m: &Message| {
        m.push_data
            .as_deref()
            .map(|p| serde_json::from_str::<serde_json::Value>(p).unwrap())
    };
    assert_eq!(
        parsed(&expect_message(&mut jev, "live").await),
        Some(push.clone())
    );
    let history = full_history(&jerry, conv).await;
    assert_eq!(parsed(&history[0]), Some(push));
    assert_eq!(history[1].push_data, None);
}
