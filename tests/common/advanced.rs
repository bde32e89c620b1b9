//! Helpers for `tests/advanced.rs` (issue #5): bounded waits on one kind of
//! server event, "nothing of that kind before this marker" checks, and small
//! builders for typed content, keyword files and hook-enabled servers. Built
//! only on the harness's public functions; declared from `tests/advanced.rs` (and `tests/moderation.rs`).

use std::path::{Path, PathBuf};

use serde_json::Value;
use tidings::client::{Client, ClientEvent, Events};
use tidings::config::{Config, HookOverride};
use tidings::protocol::{Anchor, Content, ConvId, Direction, Event, HistoryQuery, Message};

use super::common::hook_server::HookServer;
use super::common::{TestServer, WAIT, eventually};

/// The hook key every hook-enabled server here uses.
pub const HOOK_KEY: &str = "hook-key-for-advanced-tests";

/// The next server event for which `f` returns `Some`, skipping the others;
/// panics naming `what` if none comes within `WAIT`.
pub async fn expect<T>(ev: &mut Events, what: &str, mut f: impl FnMut(&Event) -> Option<T>) -> T {
    ev.wait_for(WAIT, |e| match e {
        ClientEvent::Server(s) => f(s),
        ClientEvent::Closed { .. } => None,
    })
    .await
    .unwrap_or_else(|| panic!("no {what} within {WAIT:?}"))
}

/// The next `Event::Message` (live or redelivered), or a panic naming `what`.
pub async fn expect_message(ev: &mut Events, what: &str) -> Message {
    ev.next_message(WAIT)
        .await
        .unwrap_or_else(|| panic!("no message ({what}) within {WAIT:?}"))
}

/// Every server event queued before the message `msg_id`, which it waits for
/// (bounded). The server writes a connection's events in the order it
/// produced them, so a marker sent after some action proves what that action
/// did or did not produce on this connection.
pub async fn events_before(ev: &mut Events, msg_id: &str) -> Vec<Event> {
    let mut seen = Vec::new();
    let found = ev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::Message { msg, .. }) if msg.msg_id == msg_id => Some(()),
            ClientEvent::Server(other) => {
                seen.push(other.clone());
                None
            }
            ClientEvent::Closed { .. } => None,
        })
        .await;
    assert!(
        found.is_some(),
        "marker {msg_id} never arrived; saw only {seen:?}"
    );
    seen
}

/// Sends a marker text from `from` into `conv` and asserts that, up to it,
/// `ev` had no event matching `bad`.
pub async fn assert_none_before_marker(
    ev: &mut Events,
    from: &Client,
    conv: ConvId,
    what: &str,
    bad: impl Fn(&Event) -> bool,
) {
    let marker = from
        .send_text(conv, "marker")
        .await
        .expect("marker is sent");
    let seen = events_before(ev, &marker.msg_id).await;
    let hits: Vec<&Event> = seen.iter().filter(|e| bad(e)).collect();
    assert!(hits.is_empty(), "unexpected {what}: {hits:?}");
}

/// Waits until the server has no session of `client` left.
pub async fn offline(s: &TestServer, client: &str) {
    let hub = s.running().hub().clone();
    eventually(&format!("{client} offline"), || {
        !hub.registry.is_online(client)
    })
    .await;
}

/// Waits until `client`'s device `device` has acked `conv` through `seq`.
pub async fn acked_through(s: &TestServer, client: &str, device: &str, conv: ConvId, seq: u64) {
    let store = s.running().hub().store.clone();
    eventually(
        &format!("{client}/{device} acks {conv} up to {seq}"),
        || store.device_cursor(client, device, conv).unwrap() >= seq,
    )
    .await;
}

/// Typed-message content: `{"_lctype": t, "_lctext": text}`.
pub fn typed(t: i32, text: &str) -> String {
    serde_json::json!({ "_lctype": t, "_lctext": text }).to_string()
}

/// The content as JSON (it must be JSON text).
pub fn json_content(m: &Message) -> Value {
    match &m.content {
        Content::Text(t) => {
            serde_json::from_str(t).unwrap_or_else(|e| panic!("content {t:?} is not JSON: {e}"))
        }
        Content::Binary(_) => panic!("binary content where JSON was expected"),
    }
}

/// Writes a keyword file into `dir` and returns its path.
pub fn keyword_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("keywords.txt");
    std::fs::write(&path, text).expect("write keyword file");
    path
}

/// A history query for `_lctype == t`.
pub fn lctype_query(
    conv: ConvId,
    t: i32,
    anchor: Anchor,
    direction: Direction,
    limit: u32,
) -> HistoryQuery {
    HistoryQuery {
        conv,
        anchor,
        direction,
        inclusive: false,
        limit,
        lctype: Some(t),
    }
}

/// A server whose hooks go to `hooks` (with the hook key), then `tweak`.
pub async fn start_hooked(hooks: &HookServer, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let url = hooks.url();
    TestServer::start_with(|c| {
        c.hooks.base_url = Some(url);
        c.hooks.hook_key = Some(HOOK_KEY.into());
        tweak(c);
    })
    .await
}

/// Routes hook `name` (a LeanCloud name or a Skygear alias) to `url` alone.
pub fn route_hook(c: &mut Config, name: &str, url: String) {
    c.hooks.hook.insert(
        name.into(),
        HookOverride {
            urls: vec![url],
            ..HookOverride::default()
        },
    );
}

/// The messages' ids, in order.
pub fn ids(msgs: &[Message]) -> Vec<&str> {
    msgs.iter().map(|m| m.msg_id.as_str()).collect()
}

/// Whether `e` is a delivery or read receipt.
pub fn is_receipt(e: &Event) -> bool {
    matches!(e, Event::LastDeliveredAt { .. } | Event::LastReadAt { .. })
}

/// Whether `e` is a will message.
pub fn is_will(e: &Event) -> bool {
    matches!(e, Event::Message { msg, .. } if msg.will)
}
