//! Issue 13's soak: abusive clients, a dead hook endpoint and a full disk at
//! once, with well-behaved clients chatting alongside. Bounded in count and
//! time. It reports, and asserts, that nothing acknowledged is lost, that
//! memory does not grow with what the abusers ask for, and that every
//! abusive client is throttled or closed with a code.
//!
//! Needs root for its tmpfs (CI runs as root).

mod common;

use std::time::Duration;

use common::hook_server::{Answer, HookServer};
use common::raw::{Raw, RawStream};
use common::tmpfs::Tmpfs;
use common::*;
use tidings::client::Client;
use tidings::protocol::{
    Anchor, ClientFrame, Command, ConvId, Direction, HistoryQuery, SendMessage,
};
use tidings::wire::frame;
use tokio::time::Instant;

const ROUNDS: usize = 120;
const NOT_STORED: u16 = 4200;
const TOO_SLOW: u16 = 4201;
const MESSAGE_QUOTA: u16 = 4116;
const QUOTA: u16 = 4117;

/// The process's resident set, KiB (the server runs in this process).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .expect("VmRSS in /proc/self/status")
}

/// Sends `body` with `token` until it is stored, retrying refusals (4200
/// while the disk is full, 4116 over the quota) a bounded number of times.
/// The id it got, and how many times the full disk refused it.
async fn send_until_stored(c: &Client, conv: ConvId, token: &str, body: &str) -> (String, u32) {
    let mut refused_full = 0;
    for _ in 0..400 {
        let m = SendMessage {
            token: Some(token.into()),
            ..SendMessage::text(conv, body)
        };
        match c.send(m).await {
            Ok(sent) => return (sent.msg_id, refused_full),
            Err(e) if matches!(e.code(), Some(NOT_STORED | MESSAGE_QUOTA)) => {
                refused_full += u32::from(e.code() == Some(NOT_STORED));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => panic!("{token}: {e}"),
        }
    }
    panic!("{token} never stored");
}

/// A well-behaved pair: `ROUNDS` messages each way, paced inside the
/// quota. The acknowledged ids, and the refusals the full disk caused.
async fn chat(a: Client, conv: ConvId, who: &'static str) -> (Vec<String>, u32) {
    let (mut acked, mut refused_full) = (Vec::with_capacity(ROUNDS), 0);
    for i in 0..ROUNDS {
        let token = format!("{who}-{i}");
        let (id, refused) = send_until_stored(&a, conv, &token, &token).await;
        acked.push(id);
        refused_full += refused;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (acked, refused_full)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusers_a_dead_hook_and_a_full_disk_lose_nothing_acknowledged() {
    let fs = std::sync::Arc::new(Tmpfs::mount(128));
    let data = fs.path().join("data");
    // A LeanEngine app that defines no hook at all: every call is a 404.
    let hooks =
        HookServer::scripted(|_| Answer::raw(404, r#"{"code":1,"error":"function not found"}"#))
            .await;
    let url = hooks.url();
    let s = TestServer::start_with(|c| {
        c.server.data_dir = data.clone();
        c.store.min_free_mb = 16;
        c.hooks.base_url = Some(url);
        c.limits.max_backlog_bytes = 1 << 20;
        c.limits.backlog_stall_secs = 2;
    })
    .await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, _jev) = s.connect("Jerry").await;
    let chat_conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    // ~100 KB per history page, for the client that never reads.
    let big = tom.create_unique(vec!["Greedy".into()]).await.unwrap().id;
    let body = "x".repeat(4000);
    for _ in 0..25 {
        tom.send_text(big, &body).await.unwrap();
    }
    let rss_before = rss_kib();
    let started = Instant::now();

    // The well-behaved pair chats throughout.
    let tom_chat = tokio::spawn(chat(tom.clone(), chat_conv, "tom"));
    let jerry_chat = tokio::spawn(chat(jerry.clone(), chat_conv, "jerry"));

    // The disk fills under all of it, then space comes back.
    let store = s.running().hub().store.clone();
    let disk_fs = fs.clone();
    let disk = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let filler = tokio::task::spawn_blocking(move || disk_fs.fill(8 << 20))
            .await
            .unwrap();
        let filled_at = started.elapsed();
        // Bounded: the store re-reads free space every 100 ms.
        for _ in 0..400 {
            if !store.health().is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let refused = !store.health().is_ok();
        tokio::time::sleep(Duration::from_millis(700)).await;
        std::fs::remove_file(&filler).expect("free the space");
        (filled_at, refused)
    });

    // Abuser 1 asks for 2,000 history pages (200 MB unbounded) and never reads.
    let greedy = Raw::connect(&s).await;
    let mut st = greedy.stream().await;
    st.login(&s, "Greedy").await;
    let RawStream { mut send, reader } = st;
    let asking = tokio::spawn(async move {
        let _unread = reader;
        for id in 2..2002u64 {
            let f = frame::encode(&ClientFrame::Request {
                id,
                cmd: Command::History(HistoryQuery {
                    conv: big,
                    anchor: Anchor::Latest,
                    direction: Direction::Before,
                    inclusive: false,
                    limit: 25,
                    lctype: None,
                }),
            })
            .unwrap();
            if send.write_all(&f).await.is_err() {
                break;
            }
        }
    });

    // Abuser 2 floods sends: 1,000 at once.
    let (flood, _fev) = s.connect("Flood").await;
    let flood_conv = flood.create_unique(vec!["Tom".into()]).await.unwrap().id;
    let mut flooding = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let f = flood.clone();
        flooding.spawn(async move { f.send_text(flood_conv, &format!("flood {i}")).await });
    }

    // Abuser 3 pings as fast as it can.
    let pinger = Raw::connect(&s).await;
    let mut pst = pinger.stream().await;
    pst.login(&s, "Pinger").await;
    let pinging = tokio::spawn(async move {
        for _ in 0..1000 {
            if pst
                .send
                .write_all(&frame::encode(&ClientFrame::Ping).unwrap())
                .await
                .is_err()
            {
                break;
            }
        }
    });

    // Every abuser throttled or closed with a code.
    assert_eq!(greedy.close_code().await, Some(TOO_SLOW));
    assert_eq!(pinger.close_code().await, Some(QUOTA));
    let (mut stored, mut throttled, mut refused_full) = (Vec::new(), 0, 0);
    while let Some(r) = flooding.join_next().await {
        match r.unwrap() {
            Ok(sent) => stored.push(sent.msg_id),
            Err(e) if e.code() == Some(MESSAGE_QUOTA) => throttled += 1,
            Err(e) if e.code() == Some(NOT_STORED) => refused_full += 1,
            Err(e) => panic!("flood send: {e}"),
        }
    }
    assert!(throttled > 0, "the flooder was throttled");
    asking.abort();
    pinging.abort();

    // Nothing acknowledged lost, nothing twice, in order.
    let (filled_at, refused) = disk.await.unwrap();
    assert!(refused, "the store refused writes while the disk was full");
    let (tom_acked, tom_full) = tom_chat.await.unwrap();
    let (jerry_acked, jerry_full) = jerry_chat.await.unwrap();
    assert!(tom_full + jerry_full > 0, "the chat ran into the full disk");
    let history: Vec<String> = full_history(&tom, chat_conv)
        .await
        .into_iter()
        .map(|m| m.msg_id)
        .collect();
    assert_eq!(history.len(), 2 * ROUNDS, "each acknowledged message once");
    for acked in [&tom_acked, &jerry_acked] {
        let positions: Vec<usize> = acked
            .iter()
            .map(|id| {
                history
                    .iter()
                    .position(|h| h == id)
                    .expect("acknowledged, so stored")
            })
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "in send order");
    }
    let flood_history = full_history(&flood, flood_conv).await;
    assert_eq!(
        flood_history.len(),
        stored.len(),
        "the flooder's acked sends, once each"
    );

    let rss_after = rss_kib();
    let grew_mib = rss_after.saturating_sub(rss_before) / 1024;
    eprintln!(
        "soak: {} rounds each way in {:?}; disk filled at {filled_at:?}, chat sends refused \
         while full {}; flooder: {} stored, {throttled} throttled (4116), {refused_full} refused \
         while full (4200); RSS {} -> {} MiB",
        ROUNDS,
        started.elapsed(),
        tom_full + jerry_full,
        stored.len(),
        rss_before / 1024,
        rss_after / 1024
    );
    // The never-reading client asked for 200 MB of answers; it held at most
    // its bound (1 MiB) plus QUIC's windows.
    assert!(grew_mib < 64, "RSS grew {grew_mib} MiB");
}
