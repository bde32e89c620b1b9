//! Delivery guarantees over real QUIC: acks and redelivery, offline sync in
//! push and pull mode, history paging, and what survives a restart.

mod common;

use std::time::Duration;

use common::*;
use tidings::client::{Client, ClientEvent, Events, Sent};
use tidings::protocol::{Anchor, ConvId, Direction, Event, HistoryQuery, Message, SendMessage};
use tokio::time::Instant;

/// Waits until the server has stored `client`/`device`'s ack cursor at `seq` or beyond.
async fn acked_through(s: &TestServer, client: &str, device: &str, conv: ConvId, seq: u64) {
    let store = s.running().hub().store.clone();
    eventually(&format!("{client}/{device} acks {seq}"), || {
        store.device_cursor(client, device, conv).unwrap() >= seq
    })
    .await;
}

/// Jerry, whose client leaves acks to the test.
async fn jerry_not_acking(s: &TestServer) -> (Client, Events) {
    let mut o = s.options("Jerry");
    o.auto_ack = false;
    s.connect_with(o).await
}

/// Every message `ev` carries up to and including the first redelivered
/// one (a redelivery within [`WAIT`] is required).
async fn up_to_first_redelivery(ev: &mut Events) -> Vec<Message> {
    let mut seen = Vec::new();
    let again = ev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::Message {
                msg, redelivered, ..
            }) => {
                seen.push(msg.clone());
                redelivered.then_some(())
            }
            _ => None,
        })
        .await;
    assert_eq!(again, Some(()), "a redelivery within {WAIT:?}");
    seen
}

/// Sends `n` texts `"{prefix}{i}"`, one after another, each with a later
/// millisecond timestamp than the one before.
async fn send_spaced(c: &Client, conv: ConvId, prefix: &str, n: usize) -> Vec<Sent> {
    let mut out: Vec<Sent> = Vec::with_capacity(n);
    for i in 1..=n {
        if let Some(prev) = out.last() {
            let t = prev.timestamp;
            eventually("the clock to tick", || tidings::util::now_ms() > t).await;
        }
        out.push(c.send_text(conv, &format!("{prefix}{i}")).await.unwrap());
    }
    out
}

fn seqs(ms: &[Message]) -> Vec<u64> {
    ms.iter().map(|m| m.seq).collect()
}

// ------------------------------------------------------ ack, redelivery ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_message_is_redelivered_while_online() {
    let s = TestServer::start_with(|c| c.delivery.ack_timeout_secs = 1).await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = jerry_not_acking(&s).await;
    let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;

    let first = tom.send_text(conv, "ack me").await.unwrap();
    let redelivered = |ev: &ClientEvent| match ev {
        ClientEvent::Server(Event::Message {
            msg, redelivered, ..
        }) => Some((msg.clone(), *redelivered)),
        _ => None,
    };
    let (m, again) = jev.wait_for(WAIT, redelivered).await.unwrap();
    assert_eq!((m.msg_id.as_str(), again), (first.msg_id.as_str(), false));
    let sent_at = Instant::now();
    let (m, again) = jev.wait_for(WAIT, redelivered).await.unwrap();
    assert_eq!((m.msg_id.as_str(), again), (first.msg_id.as_str(), true));
    assert!(
        sent_at.elapsed() >= Duration::from_millis(500),
        "not before the ack timeout"
    );

    // Acked now: the next redelivery is of the next message, never the first again.
    jerry.ack(conv, first.seq);
    acked_through(&s, "Jerry", "default", conv, first.seq).await;
    let second = tom.send_text(conv, "and me").await.unwrap();
    let (m, again) = jev.wait_for(WAIT, redelivered).await.unwrap();
    assert_eq!((m.seq, again), (second.seq, false));
    let (m, again) = jev.wait_for(WAIT, redelivered).await.unwrap();
    assert_eq!((m.seq, again), (second.seq, true));
    // Once both are acked, only the third is ever redelivered.
    jerry.ack(conv, second.seq);
    acked_through(&s, "Jerry", "default", conv, second.seq).await;
    let third = tom.send_text(conv, "last").await.unwrap();
    let seen = up_to_first_redelivery(&mut jev).await;
    assert_eq!(
        seqs(&seen),
        vec![third.seq, third.seq],
        "no acked message came again"
    );
    assert!(jev.try_recv().is_none());
}

/// LeanCloud's SDKs never ack a chat room's messages and a room has no
/// offline delivery, so the server writes them once and forgets them: an
/// unacked one is never sent again, and the Rust client does not ack it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_room_messages_are_neither_acked_nor_redelivered() {
    let s = TestServer::start_with(|c| c.delivery.ack_timeout_secs = 1).await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = jerry_not_acking(&s).await;
    let (spike, mut sev) = s.connect("Spike").await;
    let room = create_room(&tom).await;
    jerry.join(room).await.unwrap();
    spike.join(room).await.unwrap();
    let said = tom.send_text(room, "in the room").await.unwrap();
    let room_message = |ev: &ClientEvent| match ev {
        ClientEvent::Server(Event::Message {
            msg,
            redelivered,
            chat_room,
        }) if msg.conv == room => Some((msg.msg_id.clone(), *redelivered, *chat_room)),
        _ => None,
    };
    let first = (said.msg_id.clone(), false, true);
    assert_eq!(jev.wait_for(WAIT, room_message).await, Some(first.clone()));
    assert_eq!(sev.wait_for(WAIT, room_message).await, Some(first));

    // A fence: an unacked one-to-one message sent after the room's comes
    // again once the ack timeout has passed. By then the room's would have
    // come again too, had it been tracked.
    let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    let fence = tom.send_text(conv, "fence").await.unwrap();
    let seen = up_to_first_redelivery(&mut jev).await;
    let ids: Vec<&str> = seen.iter().map(|m| m.msg_id.as_str()).collect();
    assert_eq!(ids, [fence.msg_id.as_str(); 2], "only the fence came again");
    // Spike's client, acking automatically, left no cursor in the room.
    let store = s.running().hub().store.clone();
    assert_eq!(store.device_cursor("Spike", "default", room).unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_dropping_mid_stream_gets_its_unacked_messages_again() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let mut phone = s.options("Jerry");
    phone.device_id = Some("phone".into());
    phone.auto_ack = false;
    let (jerry, mut jev) = s.connect_with(phone.clone()).await;
    let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;

    let sent = send_spaced(&tom, conv, "m", 10).await;
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(jev.next_message(WAIT).await.expect("live delivery"));
    }
    assert_eq!(seqs(&got), (1..=10).collect::<Vec<_>>());
    // Jerry acks the first four, then drops without a word.
    jerry.ack(conv, 4);
    acked_through(&s, "Jerry", "phone", conv, 4).await;
    jerry.abort();
    drop((jerry, jev));
    let hub = s.running().hub().clone();
    eventually("Jerry offline", || !hub.registry.is_online("Jerry")).await;
    // Tom keeps talking meanwhile.
    let more = send_spaced(&tom, conv, "late", 2).await;
    assert_eq!((more[0].seq, more[1].seq), (11, 12));

    // Back on the same device: the unacked 5..=10 come again, then 11 and 12.
    let (_jerry, mut jev) = s.connect_raw(phone).await;
    let (msgs, done) = push_sync(&mut jev).await;
    assert_eq!(seqs(&msgs), (5..=12).collect::<Vec<_>>());
    assert_eq!(msgs[0].msg_id, sent[4].msg_id);
    assert_eq!(done, (1, 8, 0));

    // A different device of Jerry's has acked nothing: it gets everything.
    let mut tablet = s.options("Jerry");
    tablet.device_id = Some("tablet".into());
    let (_tablet, mut tev) = s.connect_raw(tablet).await;
    let (msgs, done) = push_sync(&mut tev).await;
    assert_eq!(seqs(&msgs), (1..=12).collect::<Vec<_>>());
    assert_eq!(done, (1, 12, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_while_messages_flow_misses_and_repeats_nothing() {
    const N: u64 = 60;
    let s = TestServer::start_with(|c| c.delivery.push_sync_limit = 100).await;
    let (tom, _tev) = s.connect("Tom").await;
    let mut phone = s.options("Jerry");
    phone.device_id = Some("phone".into());
    phone.auto_ack = false;
    let (jerry, mut jev) = s.connect_with(phone.clone()).await;
    let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;

    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let sender = tokio::spawn({
        let tom = tom.clone();
        async move {
            let mut go = Some(go_rx);
            for i in 1..=N {
                if i == 21 {
                    // The rest flows while Jerry drops and comes back.
                    go.take().unwrap().await.unwrap();
                }
                assert_eq!(tom.send_text(conv, &format!("{i}")).await.unwrap().seq, i);
            }
        }
    });
    // Take a few, ack some of them, and drop in the middle of the stream.
    for want in 1..=6 {
        assert_eq!(jev.next_message(WAIT).await.unwrap().seq, want);
    }
    jerry.ack(conv, 3);
    acked_through(&s, "Jerry", "phone", conv, 3).await;
    go_tx.send(()).unwrap();
    jerry.abort();
    drop((jerry, jev));
    // Straight back, while the old session may still be registered.
    let (_jerry, mut jev) = s.connect_raw(phone).await;
    sender.await.unwrap();
    let mut got = Vec::new();
    while got.last().copied() != Some(N) {
        let m = jev
            .next_message(WAIT)
            .await
            .unwrap_or_else(|| panic!("stalled after {got:?}"));
        got.push(m.seq);
    }
    assert_eq!(
        got,
        (4..=N).collect::<Vec<_>>(),
        "every unacked one, once, in order"
    );
}

// ----------------------------------------------------------- offline sync ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_sync_sends_the_newest_missed_and_counts_the_rest() {
    let s = TestServer::start_with(|c| c.delivery.push_sync_limit = 5).await;
    let (tom, _tev) = s.connect("Tom").await;
    let a = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let b = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;
    let quiet = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let in_a = send_spaced(&tom, a, "a", 8).await;
    let in_b = send_spaced(&tom, b, "b", 2).await;
    assert_eq!(tom.get_conversation(quiet).await.unwrap().last_seq, 0);

    // Jerry was never online: he gets the newest 5 of a and both of b.
    let (jerry, mut jev) = s.connect_raw(s.options("Jerry")).await;
    let (msgs, done) = push_sync(&mut jev).await;
    let of = |c: ConvId| {
        msgs.iter()
            .filter(|m| m.conv == c)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(&of(a)), vec![4, 5, 6, 7, 8]);
    assert_eq!(of(a)[4].msg_id, in_a[7].msg_id);
    assert_eq!(seqs(&of(b)), vec![1, 2]);
    assert_eq!(of(b)[1].msg_id, in_b[1].msg_id);
    assert_eq!(done, (2, 7, 3), "(conversations, messages, skipped)");
    // The skipped ones are in history.
    let h = full_history(&jerry, a).await;
    assert_eq!(
        h.iter().take(3).map(text).collect::<Vec<_>>(),
        ["a1", "a2", "a3"]
    );

    // Auto-acked: once they are on the server, a new login has nothing to sync.
    acked_through(&s, "Jerry", "default", a, 8).await;
    acked_through(&s, "Jerry", "default", b, 2).await;
    drop((jerry, jev));
    let (_jerry, mut jev) = s.connect_raw(s.options("Jerry")).await;
    let (msgs, done) = push_sync(&mut jev).await;
    assert!(msgs.is_empty());
    assert_eq!(done, (0, 0, 0));
    // Messages sent while online arrive live, not flagged.
    let live = tom.send_text(a, "live").await.unwrap();
    let (m, redelivered) = jev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::Message {
                msg, redelivered, ..
            }) => Some((msg.clone(), *redelivered)),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!((m.msg_id, redelivered), (live.msg_id, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_sync_reports_unread_and_read_resets_it() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let a = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let b = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let in_a = send_spaced(&tom, a, "a", 3).await;
    let t = in_a[2].timestamp;
    eventually("the clock to tick", || tidings::util::now_ms() > t).await;
    let in_b = send_spaced(&tom, b, "b", 2).await;

    let mut phone = s.pull("Jerry");
    phone.device_id = Some("phone".into());
    let mut laptop = s.pull("Jerry");
    laptop.device_id = Some("laptop".into());
    let (jerry, mut jev) = s.connect_raw(phone.clone()).await;
    let items = pull_sync(&mut jev).await;
    let summary = unread_summary(&items);
    assert_eq!(
        summary,
        vec![
            (b, 2, Some(in_b[1].msg_id.clone())),
            (a, 3, Some(in_a[2].msg_id.clone())),
        ],
        "most recent first"
    );
    let (_laptop, mut lev) = s.connect_raw(laptop).await;
    assert_eq!(pull_sync(&mut lev).await.len(), 2, "unread is per client");

    // Reading a on the phone clears it and tells the laptop.
    jerry.read(a, None).await.unwrap();
    let upd = lev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::ReadUpdated { conv, seq }) => Some((*conv, *seq)),
            _ => None,
        })
        .await;
    assert_eq!(upd, Some((a, 3)));
    // Reading b only up to its first message leaves one unread.
    jerry.read(b, Some(1)).await.unwrap();
    drop((jerry, jev));
    let (jerry, mut jev) = s.connect_raw(phone).await;
    let items = pull_sync(&mut jev).await;
    assert_eq!(items.len(), 1);
    assert_eq!((items[0].conv, items[0].count), (b, 1));

    // A sender's own messages are not unread for it, and a reply moves
    // the replier's cursor too.
    jerry.send_text(b, "reply").await.unwrap();
    drop((jerry, jev));
    let (_tom2, mut t2ev) = s.connect_raw(s.pull("Tom")).await;
    let items = pull_sync(&mut t2ev).await;
    assert_eq!(items.len(), 1, "only Jerry's reply is unread for Tom");
    assert_eq!((items[0].conv, items[0].count), (b, 1));
    assert_eq!(text(items[0].last_message.as_ref().unwrap()), "reply");
    let (_jerry, mut jev) = s.connect_raw(s.pull("Jerry")).await;
    assert!(pull_sync(&mut jev).await.is_empty());
    // Outsiders cannot mark read.
    let (spike, _sev) = s.connect("Spike").await;
    assert_eq!(code_of(spike.read(a, None).await), 4401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_sync_lists_at_most_the_limit() {
    let s = TestServer::start_with(|c| c.delivery.pull_sync_limit = 2).await;
    let (tom, _tev) = s.connect("Tom").await;
    let mut convs = Vec::new();
    let mut last_ts = 0;
    for i in 0..3 {
        let c = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
        eventually("the clock to tick", || tidings::util::now_ms() > last_ts).await;
        last_ts = tom
            .send_text(c, &format!("in {i}"))
            .await
            .unwrap()
            .timestamp;
        convs.push(c);
    }
    let (_jerry, mut jev) = s.connect_raw(s.pull("Jerry")).await;
    let listed: Vec<ConvId> = pull_sync(&mut jev).await.iter().map(|i| i.conv).collect();
    assert_eq!(listed, vec![convs[2], convs[1]]);
}

// ---------------------------------------------------------------- history ----

async fn page(
    c: &Client,
    conv: ConvId,
    anchor: Anchor,
    direction: Direction,
    inclusive: bool,
    limit: u32,
) -> (Vec<u64>, bool) {
    let (msgs, more) = c
        .history(HistoryQuery {
            conv,
            anchor,
            direction,
            inclusive,
            limit,
            lctype: None,
        })
        .await
        .expect("history");
    (seqs(&msgs), more)
}

fn range(lo: u64, hi: u64) -> Vec<u64> {
    (lo..=hi).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_backwards_and_forwards() {
    use Direction::{After, Before};
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, _jev) = s.connect("Jerry").await;
    let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    let sent = send_spaced(&tom, conv, "m", 25).await;
    let id = |seq: usize| Anchor::MsgId(sent[seq - 1].msg_id.clone());

    // Backwards from the newest, page by page.
    assert_eq!(
        page(&jerry, conv, Anchor::Latest, Before, false, 10).await,
        (range(16, 25), true)
    );
    assert_eq!(
        page(&jerry, conv, Anchor::Seq(16), Before, false, 10).await,
        (range(6, 15), true)
    );
    assert_eq!(
        page(&jerry, conv, Anchor::Seq(6), Before, false, 10).await,
        (range(1, 5), false)
    );
    // Forwards from the oldest.
    assert_eq!(
        page(&jerry, conv, Anchor::Earliest, After, false, 10).await,
        (range(1, 10), true)
    );
    assert_eq!(
        page(&jerry, conv, id(10), After, false, 10).await,
        (range(11, 20), true)
    );
    assert_eq!(
        page(&jerry, conv, id(20), After, false, 10).await,
        (range(21, 25), false)
    );
    // Inclusive and exclusive anchors, both ways.
    assert_eq!(
        page(&jerry, conv, id(10), After, true, 3).await,
        (range(10, 12), true)
    );
    assert_eq!(
        page(&jerry, conv, id(10), Before, true, 3).await,
        (range(8, 10), true)
    );
    assert_eq!(
        page(&jerry, conv, id(10), Before, false, 3).await,
        (range(7, 9), true)
    );
    assert_eq!(
        page(&jerry, conv, id(1), Before, true, 3).await,
        (vec![1], false)
    );
    assert_eq!(
        page(&jerry, conv, id(25), After, false, 3).await,
        (vec![], false)
    );
    assert_eq!(
        page(&jerry, conv, Anchor::Seq(3), Before, false, 10).await,
        (vec![1, 2], false)
    );
    // The whole thing in one page when it fits.
    assert_eq!(
        page(&jerry, conv, Anchor::Latest, Before, false, 25).await,
        (range(1, 25), false)
    );
    // Nothing lies past either end.
    assert_eq!(
        page(&jerry, conv, Anchor::Latest, After, false, 10).await,
        (vec![], false)
    );
    assert_eq!(
        page(&jerry, conv, Anchor::Earliest, Before, false, 10).await,
        (vec![], false)
    );

    // By timestamp: every message has its own millisecond here.
    let ts = |seq: usize| Anchor::Timestamp(sent[seq - 1].timestamp);
    assert_eq!(
        page(&jerry, conv, ts(10), After, false, 100).await,
        (range(11, 25), false)
    );
    assert_eq!(
        page(&jerry, conv, ts(10), After, true, 100).await,
        (range(10, 25), false)
    );
    assert_eq!(
        page(&jerry, conv, ts(10), Before, false, 100).await,
        (range(1, 9), false)
    );
    assert_eq!(
        page(&jerry, conv, ts(10), Before, true, 4).await,
        (range(7, 10), true)
    );
    assert_eq!(
        page(&jerry, conv, ts(10), After, true, 4).await,
        (range(10, 13), true)
    );
    // A timestamp between two messages.
    let between = Anchor::Timestamp(sent[9].timestamp + 1);
    let after_10: Vec<u64> = sent
        .iter()
        .filter(|m| m.timestamp > sent[9].timestamp)
        .map(|m| m.seq)
        .collect();
    assert_eq!(
        page(&jerry, conv, between.clone(), After, true, 100).await,
        (after_10, false)
    );
    let upto: Vec<u64> = sent
        .iter()
        .filter(|m| m.timestamp <= sent[9].timestamp + 1)
        .map(|m| m.seq)
        .collect();
    assert_eq!(
        page(&jerry, conv, between, Before, true, 100).await,
        (upto, false)
    );
    assert_eq!(
        page(&jerry, conv, Anchor::Timestamp(0), After, true, 100).await,
        (range(1, 25), false)
    );

    // Pages carry the messages themselves, oldest first.
    let (msgs, _) = jerry
        .history(HistoryQuery {
            conv,
            anchor: Anchor::Latest,
            direction: Before,
            inclusive: false,
            limit: 2,
            lctype: None,
        })
        .await
        .unwrap();
    assert_eq!(msgs.iter().map(text).collect::<Vec<_>>(), ["m24", "m25"]);
    assert_eq!(msgs[1].msg_id, sent[24].msg_id);
    assert_eq!(msgs[1].from, "Tom");

    // Unknown message ids, ids from elsewhere, and outsiders.
    let other = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let elsewhere = tom.send_text(other, "elsewhere").await.unwrap();
    let q = |anchor| HistoryQuery {
        conv,
        anchor,
        direction: After,
        inclusive: false,
        limit: 10,
        lctype: None,
    };
    assert_eq!(
        code_of(jerry.history(q(Anchor::MsgId("nope".into()))).await),
        4404
    );
    assert_eq!(
        code_of(jerry.history(q(Anchor::MsgId(elsewhere.msg_id))).await),
        4404
    );
    let (spike, _sev) = s.connect("Spike").await;
    assert_eq!(code_of(spike.history(q(Anchor::Earliest)).await), 4401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limit_is_capped_at_the_maximum() {
    // 1,005 sends at once fill the history; the send quota is not under test.
    let s = TestServer::start_with(|c| c.quotas.messages_per_sec = 0).await;
    let (tom, _tev) = s.connect("Tom").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..1005 {
        let tom = tom.clone();
        set.spawn(async move { tom.send(SendMessage::text(conv, format!("{i}"))).await });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().expect("send");
    }
    let max = s.config.delivery.history_max_limit;
    assert_eq!(max, 1000);
    let (first, more) = page(&tom, conv, Anchor::Latest, Direction::Before, false, 5000).await;
    assert_eq!((first.len(), more), (1000, true));
    assert_eq!(first, range(6, 1005));
    let (rest, more) = page(
        &tom,
        conv,
        Anchor::Seq(6),
        Direction::Before,
        false,
        u32::MAX,
    )
    .await;
    assert_eq!((rest, more), (range(1, 5), false));
    let (fwd, more) = page(&tom, conv, Anchor::Earliest, Direction::After, false, 1001).await;
    assert_eq!((fwd, more), (range(1, 1000), true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smaller_configured_history_cap_applies() {
    let s = TestServer::start_with(|c| c.delivery.history_max_limit = 7).await;
    let (tom, _tev) = s.connect("Tom").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    send_spaced(&tom, conv, "m", 10).await;
    assert_eq!(
        page(&tom, conv, Anchor::Latest, Direction::Before, false, 1000).await,
        (range(4, 10), true)
    );
    assert_eq!(
        full_history(&tom, conv).await.len(),
        10,
        "paging still reaches everything"
    );
}

// ---------------------------------------------------------------- restart ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_conversations_history_unread_and_tokens() {
    let mut s = TestServer::start().await;
    let (tom, tev) = s.connect("Tom").await;
    let pair = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    let mut g = group(&["Jerry", "Spike"]);
    g.name = Some("gang".into());
    g.attr = Some(r#"{"k":"v"}"#.into());
    let gang = tom.create_conversation(g).await.unwrap().id;
    let mut sent = send_spaced(&tom, pair, "p", 4).await;
    let token_send = SendMessage {
        token: Some("restart-tok".into()),
        ..SendMessage::text(pair, "p5")
    };
    let tokened = tom.send(token_send.clone()).await.unwrap();
    sent.push(tokened.clone());
    send_spaced(&tom, gang, "g", 2).await;
    // Jerry reads the pair up to 2 before the restart.
    let (jerry, jev) = s.connect("Jerry").await;
    jerry.read(pair, Some(2)).await.unwrap();
    let before = full_history(&tom, pair).await;
    drop((tom, tev, jerry, jev));

    s.restart().await;

    let (tom, _tev) = s.connect("Tom").await;
    let convs = tom.conversations(10).await.unwrap();
    assert_eq!(convs.len(), 2);
    let info = tom.get_conversation(gang).await.unwrap();
    assert_eq!(info.name.as_deref(), Some("gang"));
    assert_eq!(info.attr.as_deref(), Some(r#"{"k":"v"}"#));
    assert_eq!(info.members, vec!["Jerry", "Spike", "Tom"]);
    assert_eq!(info.last_seq, 2);
    assert_eq!(tom.get_conversation(pair).await.unwrap().last_seq, 5);
    // The unique index survived.
    assert_eq!(
        tom.create_unique(vec!["Jerry".into()]).await.unwrap().id,
        pair
    );
    // History is unchanged.
    let after = full_history(&tom, pair).await;
    assert_eq!(after, before);
    assert_eq!(
        after.iter().map(|m| m.msg_id.clone()).collect::<Vec<_>>(),
        sent.iter().map(|m| m.msg_id.clone()).collect::<Vec<_>>()
    );
    // The idempotency token still answers with the first send.
    let again = tom.send(token_send).await.unwrap();
    assert!(again.duplicate);
    assert_eq!((again.msg_id, again.seq), (tokened.msg_id, tokened.seq));
    // Unread counts: Jerry read 2 of 5 in the pair, nothing of the gang;
    // Spike never logged in.
    let (_jerry, mut jev) = s.connect_raw(s.pull("Jerry")).await;
    let mut items: Vec<(ConvId, u64)> = pull_sync(&mut jev)
        .await
        .iter()
        .map(|i| (i.conv, i.count))
        .collect();
    items.sort();
    let mut want = vec![(pair, 3), (gang, 2)];
    want.sort();
    assert_eq!(items, want);
    let (_spike, mut sev) = s.connect_raw(s.pull("Spike")).await;
    let items = pull_sync(&mut sev).await;
    assert_eq!(items.len(), 1);
    assert_eq!((items[0].conv, items[0].count), (gang, 2));
    // Seqs carry on where they stopped.
    assert_eq!(tom.send_text(pair, "p6").await.unwrap().seq, 6);
}

/// Cursors are written behind (`store::cursors`); a graceful shutdown writes
/// them all, so nothing acked before it is sent again after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_survive_a_graceful_restart() {
    let mut s = TestServer::start().await;
    // Options name the server's address, which a restart changes.
    let phone = |s: &TestServer| {
        let mut o = s.options("Jerry");
        o.device_id = Some("phone".into());
        o.auto_ack = false;
        o
    };
    let (tom, tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect_with(phone(&s)).await;
    let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    send_spaced(&tom, conv, "m", 6).await;
    for _ in 0..6 {
        jev.next_message(WAIT).await.expect("live delivery");
    }
    jerry.ack(conv, 4);
    acked_through(&s, "Jerry", "phone", conv, 4).await;
    drop((tom, tev, jerry, jev));

    s.restart().await;

    let (_jerry, mut jev) = s.connect_raw(phone(&s)).await;
    let (msgs, _) = push_sync(&mut jev).await;
    assert_eq!(seqs(&msgs), vec![5, 6], "only the unacked come again");
    let (_tom, mut tev) = s.connect_raw(s.options("Tom")).await;
    let (msgs, _) = push_sync(&mut tev).await;
    assert!(msgs.is_empty(), "a device's own messages count as received");
}
