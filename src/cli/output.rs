//! JSON-line and human renderings of protocol values. The wire types are
//! positional, not JSON-shaped, so the CLI's JSON is built here by hand.

use std::io::Write;

use anyhow::Context;
use serde_json::{Value, json};
use tidings::client::ClientEvent;
use tidings::protocol::{Content, ConvKind, ConversationInfo, Event, Message, Reason, UnreadItem};

/// Prints one line and flushes, so a pipe sees each event as it happens.
pub fn emit(line: &impl std::fmt::Display) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

fn kind(k: ConvKind) -> &'static str {
    match k {
        ConvKind::Normal => "normal",
        ConvKind::ChatRoom => "chatroom",
        ConvKind::System => "system",
    }
}

/// `"data"` for text; binary content goes under `"bin"` as hex.
fn put_content(obj: &mut serde_json::Map<String, Value>, content: &Content) {
    match content {
        Content::Text(t) => obj.insert("data".into(), Value::String(t.clone())),
        Content::Binary(b) => obj.insert("bin".into(), Value::String(hex::encode(b))),
    };
}

pub fn message(m: &Message) -> Value {
    let mut v = json!({
        "convId": m.conv.to_string(),
        "msgId": m.msg_id,
        "seq": m.seq,
        "from": m.from,
        "timestamp": m.timestamp,
    });
    if let Value::Object(obj) = &mut v {
        put_content(obj, &m.content);
        if m.transient {
            obj.insert("transient".into(), Value::Bool(true));
        }
        if !m.mention_list.is_empty() {
            obj.insert("mentionList".into(), json!(m.mention_list));
        }
        if m.mention_all {
            obj.insert("mentionAll".into(), Value::Bool(true));
        }
        if m.mentioned {
            obj.insert("mentioned".into(), Value::Bool(true));
        }
        if m.receipt {
            obj.insert("receipt".into(), Value::Bool(true));
        }
        if m.will {
            obj.insert("will".into(), Value::Bool(true));
        }
        if let Some(t) = m.updated_at {
            obj.insert("updatedAt".into(), json!(t));
        }
        if m.recalled {
            obj.insert("recalled".into(), Value::Bool(true));
        }
    }
    v
}

pub fn conversation(c: &ConversationInfo) -> Value {
    json!({
        "convId": c.id.to_string(),
        "name": c.name,
        "members": c.members,
        "creator": c.creator,
        "lastMessageAt": c.last_message_at,
        "lastSeq": c.last_seq,
        "unique": c.unique,
        "kind": kind(c.kind),
    })
}

fn unread_item(u: &UnreadItem) -> Value {
    json!({
        "convId": u.conv.to_string(),
        "count": u.count,
        "lastMessage": u.last_message.as_ref().map(message),
    })
}

/// One event as a JSON object with an `"event"` discriminator.
pub fn event(ev: &ClientEvent) -> Value {
    let ev = match ev {
        ClientEvent::Closed { code, reason } => {
            return json!({"event": "closed", "code": code, "reason": reason});
        }
        ClientEvent::Server(ev) => ev,
    };
    match ev {
        Event::Message { msg, redelivered } => {
            let mut v = message(msg);
            if let Value::Object(obj) = &mut v {
                obj.insert("event".into(), json!("message"));
                obj.insert("redelivered".into(), json!(redelivered));
            }
            v
        }
        Event::Conflict { code, reason } => {
            json!({"event": "conflict", "code": code, "reason": reason})
        }
        Event::Unread { items } => json!({
            "event": "unread",
            "items": items.iter().map(unread_item).collect::<Vec<_>>(),
        }),
        Event::SyncDone {
            conversations,
            messages,
            skipped,
        } => json!({
            "event": "syncDone",
            "conversations": conversations,
            "messages": messages,
            "skipped": skipped,
        }),
        Event::ReadUpdated { conv, seq } => {
            json!({"event": "readUpdated", "convId": conv.to_string(), "seq": seq})
        }
        Event::MembersJoined { conv, members, by } => json!({
            "event": "membersJoined", "convId": conv.to_string(), "members": members, "by": by,
        }),
        Event::MembersLeft { conv, members, by } => json!({
            "event": "membersLeft", "convId": conv.to_string(), "members": members, "by": by,
        }),
        Event::Invited { conv, by } => {
            json!({"event": "invited", "convId": conv.to_string(), "by": by})
        }
        Event::Kicked { conv, by } => {
            json!({"event": "kicked", "convId": conv.to_string(), "by": by})
        }
        Event::ConversationUpdated {
            conv,
            by,
            name,
            attr,
        } => json!({
            "event": "conversationUpdated",
            "convId": conv.to_string(),
            "by": by,
            "name": name,
            "attr": attr,
        }),
        Event::Closing { code, reason } => {
            json!({"event": "closing", "code": code, "reason": reason})
        }
        Event::MessageUpdated { msg, reason } => patched("messageUpdated", msg, reason),
        Event::MessageRecalled { msg, reason } => patched("messageRecalled", msg, reason),
        Event::MessageDeleted {
            conv,
            msg_id,
            seq,
            by,
        } => json!({
            "event": "messageDeleted", "convId": conv.to_string(), "msgId": msg_id, "seq": seq, "by": by,
        }),
        Event::ConversationDeleted { conv, by } => {
            json!({"event": "conversationDeleted", "convId": conv.to_string(), "by": by})
        }
        Event::LastDeliveredAt { conv, by, at } => json!({
            "event": "lastDeliveredAt", "convId": conv.to_string(), "by": by, "at": at,
        }),
        Event::LastReadAt { conv, by, at } => json!({
            "event": "lastReadAt", "convId": conv.to_string(), "by": by, "at": at,
        }),
        Event::Typing {
            conv,
            from,
            started,
        } => json!({
            "event": "typing", "convId": conv.to_string(), "from": from, "started": started,
        }),
    }
}

/// An edit or recall event: the message as now stored, and why when the
/// server or a hook made the change.
fn patched(name: &str, msg: &Message, reason: &Option<Reason>) -> Value {
    let mut v = message(msg);
    if let Value::Object(obj) = &mut v {
        obj.insert("event".into(), json!(name));
        if let Some(r) = reason {
            obj.insert("reason".into(), json!({"code": r.code, "detail": r.detail}));
        }
    }
    v
}

/// `HH:MM:SS` (UTC) of a millisecond timestamp.
pub fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

/// `[HH:MM:SS] Jerry: text`, binary content as `<N bytes>`.
pub fn chat_line(m: &Message) -> String {
    match &m.content {
        Content::Text(t) => format!("[{}] {}: {}", clock(m.timestamp), m.from, t),
        Content::Binary(b) => format!("[{}] {}: <{} bytes>", clock(m.timestamp), m.from, b.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings::protocol::ConvId;

    fn msg(content: Content) -> Message {
        Message {
            msg_id: "m1".into(),
            ..Message::new(ConvId([0xab; 12]), 3, "Jerry", 3_723_000, content) // 01:02:03
        }
    }

    #[test]
    fn messages_render_text_and_binary() {
        let v = message(&msg(Content::Text("hi".into())));
        assert_eq!(v["convId"], "abababababababababababab");
        assert_eq!(v["data"], "hi");
        assert_eq!(v["seq"], 3);
        let v = message(&msg(Content::Binary(vec![1, 2])));
        assert_eq!(v["bin"], "0102");
        assert!(v.get("data").is_none());
        assert_eq!(
            chat_line(&msg(Content::Text("hi".into()))),
            "[01:02:03] Jerry: hi"
        );
        assert_eq!(
            chat_line(&msg(Content::Binary(vec![0; 5]))),
            "[01:02:03] Jerry: <5 bytes>"
        );
    }

    #[test]
    fn events_carry_a_discriminator() {
        let ev = ClientEvent::Server(Event::Message {
            msg: msg(Content::Text("hi".into())),
            redelivered: true,
        });
        let v = event(&ev);
        assert_eq!(v["event"], "message");
        assert_eq!(v["redelivered"], true);
        let v = event(&ClientEvent::Closed {
            code: Some(4111),
            reason: "x".into(),
        });
        assert_eq!(v, json!({"event": "closed", "code": 4111, "reason": "x"}));
    }
}
