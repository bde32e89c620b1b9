//! Messages: sending (stored or transient), history, read cursors and the
//! offline-sync views a session needs at login.

pub mod app;
pub mod hooks;
pub mod patch;
pub mod receipts;
pub mod typing;
pub mod will;

use crate::core::Caller;
use crate::core::conversation::{Conv, audience_unstored};
use crate::core::ordering::{Committed, Draft};
use crate::core::outbound::Outbound;
use crate::core::validate::{self, err, mentions as check_mentions};
use crate::hub::Hub;
use crate::pipeline::Pending;
use crate::pipeline::fanout::{After, delivered, per_receiver};
use crate::protocol::{
    Anchor, Content, ConvId, ConvKind, Direction, ErrorBody, ErrorCode, Event, HistoryQuery,
    Message, Reason, Reply, SendMessage, UnreadItem,
};
use crate::store::Origin;
use crate::util::{now_ms, random_token};
use bytes::Bytes;

/// A conversation the caller is a member of, else 4303 or 4401.
fn member_conv(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
) -> Result<std::sync::Arc<Conv>, ErrorBody> {
    let c = hub.convs.live(conv)?;
    if !c.state.read().is_member(&caller.client) {
        return Err(err(
            ErrorCode::InvalidMessagingTarget,
            format!("not a member of {conv}"),
        ));
    }
    Ok(c)
}

/// The content limit of a client's message (`limits.max_content_bytes`).
fn check_content(hub: &Hub, content: &Content) -> Result<(), ErrorBody> {
    validate::content_size(
        content,
        hub.config.limits.max_content_bytes as usize,
        "content",
    )
}

fn validate(hub: &Hub, m: &SendMessage) -> Result<(), ErrorBody> {
    check_content(hub, &m.content)?;
    check_mentions(&m.mention_list)?;
    validate::push_data(&m.push_data)?;
    validate::token(&m.token)
}

/// How a send proceeds: transient ones and wills are answered at once;
/// stored ones are queued in call order and answered after their group flush.
pub enum SendPlan {
    Done(Reply, Option<Bytes>),
    Pending(Pending, Option<Changed>),
}

/// The server or a hook changed what the sender sent: after the answer, the
/// sender gets a MESSAGE_UPDATE with the stored version and why.
pub struct Changed {
    msg: Message,
    reason: Reason,
}

impl Changed {
    /// The event for the sender, once the message has its id and seq.
    pub fn event(mut self, sent: &Reply) -> Option<Bytes> {
        if let Reply::Sent {
            msg_id,
            seq,
            timestamp,
            ..
        } = sent
        {
            self.msg.msg_id.clone_from(msg_id);
            self.msg.seq = *seq;
            self.msg.timestamp = *timestamp;
            self.msg.updated_at = Some(*timestamp);
        }
        crate::wire::frame::event(Event::MessageUpdated {
            msg: self.msg,
            reason: Some(self.reason),
        })
    }
}

/// The reason a keyword-filtered message carries (LeanCloud's -4408).
pub fn censored() -> Reason {
    Reason {
        code: -i32::from(ErrorCode::ModifiedByCensorship.code()),
        detail: ErrorCode::ModifiedByCensorship.reason().to_owned(),
    }
}

/// Runs the keyword filter after the hook, so a hook cannot put a filtered
/// word back; returns why the content differs from what the client sent.
fn filter_content(hub: &Hub, content: &mut Content, hook: Option<Reason>) -> Option<Reason> {
    if hub.filter.apply(content) {
        Some(censored())
    } else {
        hook
    }
}

/// Checks, runs `_messageReceived` and the keyword filter, then sends.
/// Callers keep one connection's sends in order by awaiting each before the next.
pub async fn send(hub: &Hub, caller: &Caller, mut m: SendMessage) -> Result<SendPlan, ErrorBody> {
    validate(hub, &m)?;
    let conv = member_conv(hub, caller, m.conv)?;
    // A muted member's send never reaches the hook (LeanCloud's shutup).
    crate::core::moderation::refuse_shutup(&conv.state.read().moderation, &caller.client)?;
    let received = hooks::received(hub, caller, &conv, &mut m).await?;
    // A hook's replacement content obeys the same limit.
    check_content(hub, &m.content)?;
    let reason = filter_content(hub, &mut m.content, received.reason);
    let inbound = conv.state.read().rec.kind == ConvKind::System;
    // A client writes to the app, not to the other subscribers.
    let to_peers = if inbound {
        Some(received.to_peers.unwrap_or_default())
    } else {
        received.to_peers
    };
    let changed = reason.map(|reason| Changed {
        msg: Message {
            mention_list: m.mention_list.clone(),
            mention_all: m.mention_all,
            transient: m.transient,
            ..Message::new(m.conv, 0, caller.client.clone(), 0, m.content.clone())
        },
        reason,
    });
    if m.will {
        let reply = will::set(hub, caller, m, to_peers);
        return Ok(SendPlan::Done(reply, None));
    }
    if m.transient {
        crate::metrics::METRICS.messages_in(1);
        let reply = send_transient(hub, caller, &conv, m, to_peers);
        let notice = changed.and_then(|c| c.event(&reply));
        return Ok(SendPlan::Done(reply, notice));
    }
    let pending = hub.pipeline.submit(Draft {
        conv,
        to_peers,
        send: m,
        from: caller.client.clone(),
        origin_device: caller.device_id.clone(),
        origin_conn: caller.conn_id,
        from_ip: caller.ip.clone(),
        inbound,
    })?;
    Ok(SendPlan::Pending(pending, changed))
}

/// Waits for a queued send's group flush, then moves the sender's cursors:
/// sending means the client has seen the conversation up to here, and the
/// sending device has its own message. Done here, on the session's task,
/// to keep the commit thread to one log write per message.
pub async fn finish_send(hub: &Hub, caller: &Caller, p: Pending) -> Result<Reply, ErrorBody> {
    let c = p.wait().await?;
    let (conv, seq) = (c.sent.conv, c.sent.seq);
    let store = &hub.store;
    if let Err(e) = store
        .set_read_cursor(&caller.client, conv, seq)
        .and_then(|()| store.step_device_cursor(&caller.client, &caller.device_id, conv, seq))
    {
        tracing::warn!(error = %e, "cursors not advanced");
    }
    Ok(sent_reply(c))
}

fn sent_reply(c: Committed) -> Reply {
    Reply::Sent {
        msg_id: c.sent.msg_id,
        seq: c.sent.seq,
        timestamp: c.sent.timestamp,
        duplicate: c.duplicate,
    }
}

/// Not stored, not acked, not redelivered: straight to whoever is online.
fn send_transient(
    hub: &Hub,
    caller: &Caller,
    conv: &Conv,
    m: SendMessage,
    to_peers: Option<Vec<String>>,
) -> Reply {
    let (mut msg, reply) = unstored(caller, m);
    msg.transient = true;
    deliver_online(hub, caller, conv, msg, to_peers.as_deref());
    reply
}

/// A message that is never stored (transient, or a will): a random id, seq
/// 0, and the answer its sender gets.
pub(crate) fn unstored(caller: &Caller, m: SendMessage) -> (Message, Reply) {
    let msg = Message {
        msg_id: random_token(20),
        mention_list: m.mention_list,
        mention_all: m.mention_all,
        ..Message::new(m.conv, 0, caller.client.clone(), now_ms(), m.content)
    };
    let reply = Reply::Sent {
        msg_id: msg.msg_id.clone(),
        seq: 0,
        timestamp: msg.timestamp,
        duplicate: false,
    };
    (msg, reply)
}

/// Hands an unstored message (transient, or a will) to the online members
/// it is for, except the connection `caller` is on.
pub(crate) fn deliver_online(
    hub: &Hub,
    caller: &Caller,
    conv: &Conv,
    msg: Message,
    to_peers: Option<&[String]>,
) {
    let st = conv.state.read();
    let audience = audience_unstored(&st, &caller.client, to_peers);
    let after = After {
        hooks: &hub.hooks,
        registry: &hub.registry,
        notifier: &hub.notifier,
        rt: &tokio::runtime::Handle::current(),
    };
    delivered(&after, &st, &msg, &caller.ip, &audience);
    for (group, msg) in per_receiver(&audience, &msg) {
        let Some(out) = Outbound::transient(Event::Message {
            msg,
            redelivered: false,
            chat_room: false,
        }) else {
            return;
        };
        hub.registry.send_to(group, Some(caller.conn_id), &out);
    }
}

pub fn history(hub: &Hub, caller: &Caller, q: HistoryQuery) -> Result<Reply, ErrorBody> {
    let conv = hub.convs.live(q.conv)?;
    {
        let st = conv.state.read();
        if st.rec.kind != ConvKind::ChatRoom && !st.is_member(&caller.client) {
            return Err(err(
                ErrorCode::InvalidMessagingTarget,
                format!("not a member of {}", q.conv),
            ));
        }
    }
    let limit = (q.limit.max(1)).min(hub.config.delivery.history_max_limit) as usize;
    let last = conv.last_seq();
    let store = &hub.store;
    // Translate the anchor into an inclusive seq range [lo, hi].
    let (lo, hi) = match (&q.anchor, q.direction) {
        (Anchor::Latest, Direction::Before) => (1, last),
        (Anchor::Earliest, Direction::After) => (1, last),
        (Anchor::Latest, Direction::After) | (Anchor::Earliest, Direction::Before) => (1, 0),
        (Anchor::Seq(s), dir) => seq_range(*s, dir, q.inclusive, last),
        (Anchor::MsgId(id), dir) => match crate::protocol::parse_msg_id(id) {
            Some((c, s)) if c == q.conv && s >= 1 && s <= last => {
                seq_range(s, dir, q.inclusive, last)
            }
            _ => {
                return Err(err(
                    ErrorCode::MessageNotFound,
                    format!("no message {id} here"),
                ));
            }
        },
        (Anchor::Timestamp(t), Direction::Before) => {
            let bound = if q.inclusive { t.saturating_add(1) } else { *t };
            (
                1,
                store
                    .seq_at_or_after(q.conv, bound, last)?
                    .saturating_sub(1),
            )
        }
        (Anchor::Timestamp(t), Direction::After) => {
            let bound = if q.inclusive { *t } else { t.saturating_add(1) };
            (store.seq_at_or_after(q.conv, bound, last)?, last)
        }
    };
    let newest_first = q.direction == Direction::Before;
    let lctype = q.lctype;
    // A system conversation's subscribers see only their own exchanges.
    let own_only = conv.state.read().rec.kind == ConvKind::System;
    let (mut page, cut) = store.messages_where(
        q.conv,
        (lo, hi),
        limit + 1,
        newest_first,
        HISTORY_MAX_SCAN,
        |e| {
            !e.deleted
                && (!own_only || sees(e, &caller.client))
                && lctype.is_none_or(|t| lctype_of(&e.msg.content) == Some(t))
        },
    )?;
    let more = cut || page.len() > limit;
    if page.len() > limit {
        if newest_first {
            page.remove(0);
        } else {
            page.pop();
        }
    }
    Ok(Reply::History {
        messages: page
            .into_iter()
            .map(|e| e.msg.for_receiver(&caller.client))
            .collect(),
        more,
    })
}

/// Most log entries one history query looks at: a `_lctype` filter over a
/// long conversation answers a partial page with `more` instead of scanning
/// it all.
const HISTORY_MAX_SCAN: usize = 20_000;

/// The `_lctype` of a typed message (JSON text with an integer `_lctype`).
pub fn lctype_of(c: &Content) -> Option<i32> {
    let Content::Text(t) = c else { return None };
    if !t.trim_start().starts_with('{') {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "_lctype")]
        lctype: i32,
    }
    serde_json::from_str::<Typed>(t).ok().map(|t| t.lctype)
}

fn seq_range(s: u64, dir: Direction, inclusive: bool, last: u64) -> (u64, u64) {
    match (dir, inclusive) {
        (Direction::Before, true) => (1, s.min(last)),
        (Direction::Before, false) => (1, s.saturating_sub(1).min(last)),
        (Direction::After, true) => (s.max(1), last),
        (Direction::After, false) => (s.saturating_add(1).max(1), last),
    }
}

/// Marks the conversation read for every device of the caller.
pub fn read(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    seq: Option<u64>,
) -> Result<Reply, ErrorBody> {
    let c = member_conv(hub, caller, conv)?;
    let last = c.last_seq();
    let seq = seq.unwrap_or(last).min(last);
    let before = hub.store.read_cursor(&caller.client, conv)?;
    hub.store.set_read_cursor(&caller.client, conv, seq)?;
    if seq > before {
        receipts::on_read(hub, &c, &caller.client, before, seq)?;
    }
    if let Some(f) = crate::wire::frame::event(Event::ReadUpdated { conv, seq }) {
        hub.registry.send_to(
            [caller.client.as_str()],
            Some(caller.conn_id),
            &Outbound::frame(f),
        );
    }
    Ok(Reply::Ok)
}

/// Most unread messages counted in one system conversation: counting means
/// reading entries, since other subscribers' messages do not count.
pub const SYSTEM_UNREAD_MAX: usize = 1000;

/// `<conversation, unreadCount, lastMessage>` for the client's conversations
/// with unread messages, most recent first, at most `limit`.
pub fn unread_summary(hub: &Hub, client: &str, limit: usize) -> Result<Vec<UnreadItem>, ErrorBody> {
    let mut rows: Vec<(u64, ConvId, u64)> = Vec::new();
    for id in hub.store.memberships_of(client)? {
        if let Some((count, at)) = unread_in(hub, client, id)? {
            rows.push((at, id, count));
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    rows.truncate(limit);
    rows.into_iter()
        .map(|(_, conv, count)| {
            Ok(UnreadItem {
                conv,
                count,
                last_message: last_visible(hub, conv, client)?.map(|m| m.for_receiver(client)),
            })
        })
        .collect()
}

/// `client`'s unread count in `conv` and the newest unread message's
/// time; `None` when nothing is unread (or `conv` is gone).
pub fn unread_in(hub: &Hub, client: &str, conv: ConvId) -> Result<Option<(u64, u64)>, ErrorBody> {
    let Some(c) = hub.convs.get(&conv) else {
        return Ok(None);
    };
    let last = c.last_seq();
    let read = hub.store.read_cursor(client, conv)?;
    if last <= read {
        return Ok(None);
    }
    if c.state.read().rec.kind != ConvKind::System {
        return Ok(Some((last - read, c.last_ts())));
    }
    // Only what this subscriber sees, scanned newest first.
    let (seen, _) = hub.store.messages_where(
        conv,
        (read + 1, last),
        SYSTEM_UNREAD_MAX,
        true,
        SYSTEM_UNREAD_MAX * 10,
        |e| sees(e, client),
    )?;
    Ok(seen.last().map(|e| (seen.len() as u64, e.msg.timestamp)))
}

/// The newest message still in history (deleted ones leave tombstones).
pub fn last_visible(hub: &Hub, conv: ConvId, client: &str) -> Result<Option<Message>, ErrorBody> {
    let system = hub
        .convs
        .get(&conv)
        .is_some_and(|c| c.state.read().rec.kind == ConvKind::System);
    let (mut found, _) = hub
        .store
        .messages_where(conv, (1, u64::MAX), 1, true, 1000, |e| {
            !e.deleted && (!system || sees(e, client))
        })?;
    Ok(found.pop().map(|e| e.msg))
}

/// In a system conversation a subscriber sees its own exchanges with the
/// app and the broadcasts, not other subscribers' messages.
fn sees(e: &crate::store::LogEntry, client: &str) -> bool {
    e.reaches(client) || e.origin() == Origin::Broadcast
}
