//! JSON-line and human renderings of protocol values. The wire types are
//! positional, not JSON-shaped, so the CLI's JSON is built here by hand.

use std::io::Write;

use anyhow::Context;
use serde_json::{Value, json};
use tidings::client::ClientEvent;
use tidings::client::typed::{self, TypedMessage};
use tidings::protocol::{
    Content, ConvId, ConvKind, ConversationInfo, ErrorCode, Event, Message, Reason, UnreadItem,
};

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
        ConvKind::Temporary => "temporary",
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
        if m.mentioned_all {
            obj.insert("mentionedAll".into(), Value::Bool(true));
        }
        if let Some(t) = typed_of(m) {
            obj.insert("lctype".into(), json!(t.lctype));
        }
        if m.receipt {
            obj.insert("receipt".into(), Value::Bool(true));
        }
        if m.will {
            obj.insert("will".into(), Value::Bool(true));
        }
        if let Some(p) = &m.push_data {
            // Stored as JSON object text; shown as the object when it parses.
            let v = serde_json::from_str::<Value>(p).unwrap_or_else(|_| Value::String(p.clone()));
            obj.insert("pushData".into(), v);
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
        "attr": c.attr.as_deref().and_then(|a| serde_json::from_str::<Value>(a).ok()),
        "members": c.members,
        "creator": c.creator,
        "managers": c.managers,
        "muted": c.muted,
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
        Event::Message {
            msg, redelivered, ..
        } => {
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
        Event::SyncSkipped { what, code, reason } => json!({
            "event": "syncSkipped", "what": what, "code": code, "reason": reason,
        }),
        Event::Shutuped { conv, by } => by_only("shutuped", conv, by),
        Event::Unshutuped { conv, by } => by_only("unshutuped", conv, by),
        Event::Blocked { conv, by } => by_only("blocked", conv, by),
        Event::Unblocked { conv, by } => by_only("unblocked", conv, by),
        Event::MembersShutuped { conv, members, by } => {
            members_by("membersShutuped", conv, members, by)
        }
        Event::MembersUnshutuped { conv, members, by } => {
            members_by("membersUnshutuped", conv, members, by)
        }
        Event::MembersBlocked { conv, members, by } => {
            members_by("membersBlocked", conv, members, by)
        }
        Event::MembersUnblocked { conv, members, by } => {
            members_by("membersUnblocked", conv, members, by)
        }
        Event::MemberInfoChanged {
            conv,
            member,
            role,
            by,
        } => json!({
            "event": "memberInfoChanged", "convId": conv.to_string(), "member": member,
            "role": role.as_str(), "by": by,
        }),
    }
}

/// A moderation event about the caller itself (LeanCloud's `shutuped`, `blocked`, …).
fn by_only(name: &str, conv: &ConvId, by: &str) -> Value {
    json!({"event": name, "convId": conv.to_string(), "by": by})
}

/// A moderation event about some members (LeanCloud's `members_shutuped`, …).
fn members_by(name: &str, conv: &ConvId, members: &[String], by: &str) -> Value {
    json!({"event": name, "convId": conv.to_string(), "members": members, "by": by})
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

/// The typed message a message's content holds, if any.
fn typed_of(m: &Message) -> Option<TypedMessage> {
    TypedMessage::parse(&m.content)
}

/// A typed message for people: its text, behind a tag for anything that
/// is not plain text (`[image https://…] caption`).
fn typed_body(t: &TypedMessage) -> String {
    let text = t.text.as_deref().unwrap_or("");
    let tag = match t.lctype {
        typed::TEXT => return text.to_owned(),
        typed::RECALLED => return "(recalled)".to_owned(),
        typed::IMAGE | typed::AUDIO | typed::VIDEO | typed::FILE => {
            let kind = typed::type_name(t.lctype).unwrap_or("file");
            match &t.file {
                Some(f) => match f.name() {
                    Some(name) => format!("[{kind} {name} {}]", f.url),
                    None => format!("[{kind} {}]", f.url),
                },
                None => format!("[{kind}]"),
            }
        }
        typed::LOCATION => match &t.location {
            Some(l) => format!("[location {}, {}]", l.latitude, l.longitude),
            None => "[location]".to_owned(),
        },
        n => {
            // The app's own type: its text, else its own fields.
            let rest = if text.is_empty() && !t.fields.is_empty() {
                Value::Object(t.fields.clone()).to_string()
            } else {
                text.to_owned()
            };
            return if rest.is_empty() {
                format!("[type {n}]")
            } else {
                format!("[type {n}] {rest}")
            };
        }
    };
    if text.is_empty() {
        tag
    } else {
        format!("{tag} {text}")
    }
}

/// What a message says, for people.
fn body(m: &Message) -> String {
    if m.recalled {
        return "(recalled)".to_owned();
    }
    match &m.content {
        Content::Binary(b) => format!("<{} bytes>", b.len()),
        Content::Text(t) => match TypedMessage::from_json(t) {
            Some(typed) => typed_body(&typed),
            None => t.clone(),
        },
    }
}

/// Why the server or a hook changed a message, for people.
fn reason_note(r: &Reason) -> String {
    if r.code == -i32::from(ErrorCode::ModifiedByCensorship.code()) {
        "filtered".to_owned()
    } else if r.code > 0 {
        format!("changed by the app: {}", r.detail)
    } else {
        format!("changed by the server: {} {}", r.code, r.detail)
    }
}

const BOLD_YELLOW: &str = "\x1b[1;33m";
const RESET: &str = "\x1b[0m";

/// How `chat` shows messages and events: those of one conversation, as
/// seen by one client.
pub struct ChatView<'a> {
    pub conv: ConvId,
    /// The reader: its own messages are never marked as mentioning it.
    pub me: &'a str,
    /// Highlight mentions with ANSI colour (when stdout is a terminal).
    pub color: bool,
}

impl ChatView<'_> {
    /// `[HH:MM:SS] Jerry: text`. Binary content shows as `<N bytes>`, typed
    /// messages by their text and kind, recalled ones as `(recalled)`,
    /// edited ones with `(edited)`. Someone else's message that mentions the
    /// reader is marked `[@you]` (or `[@all]`) and, with colour, bold yellow.
    pub fn line(&self, m: &Message) -> String {
        let mut line = format!("[{}] {}: {}", clock(m.timestamp), m.from, body(m));
        if m.updated_at.is_some() && !m.recalled {
            line.push_str(" (edited)");
        }
        let mark = if m.from == self.me {
            None
        } else if m.mentioned_all {
            Some("[@all]")
        } else if m.mentioned {
            Some("[@you]")
        } else {
            None
        };
        match mark {
            Some(mark) if self.color => format!("{BOLD_YELLOW}{line}  {mark}{RESET}"),
            Some(mark) => format!("{line}  {mark}"),
            None => line,
        }
    }

    /// The line for an event; `None` for events the chat does not show
    /// (other conversations, typing stopped, sync chatter).
    pub fn event(&self, ev: &Event) -> Option<String> {
        let conv = self.conv;
        let note = |text: String| Some(format!("-- {text} --"));
        match ev {
            Event::Message { msg, .. } if msg.conv == conv => Some(self.line(msg)),
            Event::MessageUpdated { msg, reason } if msg.conv == conv => {
                let line = self.line(msg);
                Some(match reason {
                    Some(r) => format!("{line} ({})", reason_note(r)),
                    None => line,
                })
            }
            Event::MessageRecalled { msg, .. } if msg.conv == conv => Some(self.line(msg)),
            Event::MessageDeleted {
                conv: c, seq, by, ..
            } if *c == conv => note(format!("message #{seq} deleted by {by}")),
            Event::ConversationDeleted { conv: c, by } if *c == conv => {
                note(format!("conversation deleted by {by}"))
            }
            Event::Typing {
                conv: c,
                from,
                started: true,
            } if *c == conv => note(format!("{from} is typing…")),
            Event::LastDeliveredAt { conv: c, by, at } if *c == conv => note(format!(
                "✓ delivered to {by} (your messages up to {})",
                clock(*at)
            )),
            Event::LastReadAt { conv: c, by, at } if *c == conv => note(format!(
                "✓✓ read by {by} (your messages up to {})",
                clock(*at)
            )),
            Event::MembersJoined {
                conv: c,
                members,
                by,
            } if *c == conv => note(format!("{} joined (by {by})", members.join(", "))),
            Event::MembersLeft {
                conv: c,
                members,
                by,
            } if *c == conv => note(format!("{} left (by {by})", members.join(", "))),
            Event::Kicked { conv: c, by } if *c == conv => {
                note(format!("you were removed by {by}"))
            }
            Event::ConversationUpdated {
                conv: c, by, name, ..
            } if *c == conv => note(match name {
                Some(n) => format!("{by} renamed the conversation to {n:?}"),
                None => format!("{by} updated the conversation"),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings::client::typed::LcFile;

    fn msg(content: Content) -> Message {
        Message {
            msg_id: "m1".into(),
            ..Message::new(ConvId([0xab; 12]), 3, "Jerry", 3_723_000, content) // 01:02:03
        }
    }

    fn text(t: &str) -> Message {
        msg(Content::Text(t.into()))
    }

    /// Tom's plain view of conversation abab…
    const TOM: ChatView<'static> = ChatView {
        conv: ConvId([0xab; 12]),
        me: "Tom",
        color: false,
    };

    fn chat_line(m: &Message, color: bool) -> String {
        ChatView { color, ..TOM }.line(m)
    }

    #[test]
    fn messages_render_text_and_binary() {
        let v = message(&text("hi"));
        assert_eq!(v["convId"], "abababababababababababab");
        assert_eq!(v["data"], "hi");
        assert_eq!(v["seq"], 3);
        assert!(v.get("lctype").is_none());
        let v = message(&msg(Content::Binary(vec![1, 2])));
        assert_eq!(v["bin"], "0102");
        assert!(v.get("data").is_none());
        assert_eq!(chat_line(&text("hi"), false), "[01:02:03] Jerry: hi");
        assert_eq!(
            chat_line(&msg(Content::Binary(vec![0; 5])), false),
            "[01:02:03] Jerry: <5 bytes>"
        );
    }

    #[test]
    fn message_json_carries_the_advanced_fields() {
        let m = Message {
            mention_list: vec!["Tom".into()],
            mention_all: true,
            mentioned: true,
            mentioned_all: true,
            receipt: true,
            will: true,
            push_data: Some(r#"{"alert":"hi"}"#.into()),
            updated_at: Some(5),
            ..text(r#"{"_lctype":-1,"_lctext":"hi"}"#)
        };
        let v = message(&m);
        assert_eq!(v["mentionList"], json!(["Tom"]));
        assert_eq!(v["mentionAll"], true);
        assert_eq!(v["mentioned"], true);
        assert_eq!(v["mentionedAll"], true);
        assert_eq!(v["receipt"], true);
        assert_eq!(v["will"], true);
        assert_eq!(v["pushData"], json!({"alert": "hi"}));
        assert_eq!(v["updatedAt"], 5);
        assert_eq!(v["lctype"], -1);
        let recalled = Message {
            recalled: true,
            ..text(tidings::protocol::RECALLED_CONTENT)
        };
        let v = message(&recalled);
        assert_eq!(v["recalled"], true);
        assert_eq!(v["lctype"], -127);
    }

    #[test]
    fn chat_lines_show_typed_messages_by_kind() {
        let line = |t: TypedMessage| chat_line(&text(&t.to_json()), false);
        assert_eq!(line(TypedMessage::text("yo")), "[01:02:03] Jerry: yo");
        assert_eq!(
            line(TypedMessage::image("https://x/c.png").with_text("cat")),
            "[01:02:03] Jerry: [image https://x/c.png] cat"
        );
        assert_eq!(
            line(TypedMessage::file(
                LcFile::new("https://x/a.pdf").with_meta("name", "a.pdf")
            )),
            "[01:02:03] Jerry: [file a.pdf https://x/a.pdf]"
        );
        assert_eq!(
            line(TypedMessage::location(31.5, 121.25)),
            "[01:02:03] Jerry: [location 31.5, 121.25]"
        );
        assert_eq!(
            line(TypedMessage::custom(7, Default::default()).with_text("hey")),
            "[01:02:03] Jerry: [type 7] hey"
        );
        assert_eq!(
            line(TypedMessage::custom(7, Default::default()).with_field("op", "kick")),
            r#"[01:02:03] Jerry: [type 7] {"op":"kick"}"#
        );
        // Text that only looks like JSON stays as it is.
        assert_eq!(
            chat_line(&text("{not json"), false),
            "[01:02:03] Jerry: {not json"
        );
    }

    #[test]
    fn chat_lines_mark_edits_recalls_and_mentions() {
        let edited = Message {
            updated_at: Some(9),
            ..text("fixed")
        };
        assert_eq!(
            chat_line(&edited, false),
            "[01:02:03] Jerry: fixed (edited)"
        );
        let recalled = Message {
            recalled: true,
            updated_at: Some(9),
            ..text(tidings::protocol::RECALLED_CONTENT)
        };
        assert_eq!(chat_line(&recalled, false), "[01:02:03] Jerry: (recalled)");
        let to_me = Message {
            mentioned: true,
            ..text("hi @Tom")
        };
        assert_eq!(
            chat_line(&to_me, false),
            "[01:02:03] Jerry: hi @Tom  [@you]"
        );
        assert_eq!(
            chat_line(&to_me, true),
            "\x1b[1;33m[01:02:03] Jerry: hi @Tom  [@you]\x1b[0m"
        );
        let to_all = Message {
            mentioned: true,
            mentioned_all: true,
            ..text("hi all")
        };
        assert_eq!(
            chat_line(&to_all, false),
            "[01:02:03] Jerry: hi all  [@all]"
        );
    }

    #[test]
    fn chat_events_in_the_conversation() {
        let conv = ConvId([0xab; 12]);
        let other = ConvId([1; 12]);
        let show = |ev: Event| TOM.event(&ev);
        assert_eq!(
            show(Event::Typing {
                conv,
                from: "Jerry".into(),
                started: true
            })
            .as_deref(),
            Some("-- Jerry is typing… --")
        );
        assert_eq!(
            show(Event::Typing {
                conv,
                from: "Jerry".into(),
                started: false
            }),
            None
        );
        assert_eq!(
            show(Event::Typing {
                conv: other,
                from: "Jerry".into(),
                started: true
            }),
            None
        );
        assert_eq!(
            show(Event::LastDeliveredAt {
                conv,
                by: "Jerry".into(),
                at: 3_723_000
            })
            .as_deref(),
            Some("-- ✓ delivered to Jerry (your messages up to 01:02:03) --")
        );
        assert_eq!(
            show(Event::LastReadAt {
                conv,
                by: "Jerry".into(),
                at: 3_723_000
            })
            .as_deref(),
            Some("-- ✓✓ read by Jerry (your messages up to 01:02:03) --")
        );
        assert_eq!(
            show(Event::MessageDeleted {
                conv,
                msg_id: "m1".into(),
                seq: 3,
                by: "Tom".into()
            })
            .as_deref(),
            Some("-- message #3 deleted by Tom --")
        );
        assert_eq!(
            show(Event::ConversationDeleted {
                conv,
                by: "Tom".into()
            })
            .as_deref(),
            Some("-- conversation deleted by Tom --")
        );
        let filtered = Event::MessageUpdated {
            msg: Message {
                updated_at: Some(1),
                ..text("holy ***")
            },
            reason: Some(Reason {
                code: -4408,
                detail: "MESSAGE_MODIFIED_BY_CENSORSHIP".into(),
            }),
        };
        assert_eq!(
            show(filtered).as_deref(),
            Some("[01:02:03] Jerry: holy *** (edited) (filtered)")
        );
        let by_hook = Event::MessageUpdated {
            msg: text("x"),
            reason: Some(Reason {
                code: 1,
                detail: "spam".into(),
            }),
        };
        assert_eq!(
            show(by_hook).as_deref(),
            Some("[01:02:03] Jerry: x (changed by the app: spam)")
        );
        let recalled = Event::MessageRecalled {
            msg: Message {
                recalled: true,
                ..text(tidings::protocol::RECALLED_CONTENT)
            },
            reason: None,
        };
        assert_eq!(
            show(recalled).as_deref(),
            Some("[01:02:03] Jerry: (recalled)")
        );
        assert_eq!(
            show(Event::SyncDone {
                conversations: 1,
                messages: 1,
                skipped: 0
            }),
            None
        );
    }

    #[test]
    fn events_carry_a_discriminator() {
        let ev = ClientEvent::Server(Event::Message {
            msg: text("hi"),
            redelivered: true,
            chat_room: false,
        });
        let v = event(&ev);
        assert_eq!(v["event"], "message");
        assert_eq!(v["redelivered"], true);
        let v = event(&ClientEvent::Closed {
            code: Some(4111),
            reason: "x".into(),
        });
        assert_eq!(v, json!({"event": "closed", "code": 4111, "reason": "x"}));
        let conv = ConvId([0xab; 12]);
        let v = event(&ClientEvent::Server(Event::MessageRecalled {
            msg: text("{}"),
            reason: Some(Reason {
                code: -4408,
                detail: "d".into(),
            }),
        }));
        assert_eq!(v["event"], "messageRecalled");
        assert_eq!(v["reason"], json!({"code": -4408, "detail": "d"}));
        let v = event(&ClientEvent::Server(Event::Typing {
            conv,
            from: "Jerry".into(),
            started: false,
        }));
        assert_eq!(
            v,
            json!({"event": "typing", "convId": conv.to_string(), "from": "Jerry", "started": false})
        );
        let v = event(&ClientEvent::Server(Event::LastReadAt {
            conv,
            by: "Jerry".into(),
            at: 7,
        }));
        assert_eq!(v["event"], "lastReadAt");
        assert_eq!(v["at"], 7);
    }
}
