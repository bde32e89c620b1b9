//! After the flush: who hears a message (`core::conversation::audience`),
//! its frames (encoded once, at most two variants, `per_receiver`), the
//! registry's queues, the after-delivery hooks `_messageSent` (queued
//! in the outbox) and `_receiversOffline`, and the offline push
//! ([`crate::notify`]). Parameter names are
//! LeanCloud's, so LeanEngine hook code reads them unchanged.
//!
//! Stored messages reach here from the commit thread; unstored ones
//! (transient messages, wills) from `message::deliver_online`, through the
//! same `per_receiver` and `delivered`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Ctx;
use crate::core::conversation::{Conv, ConvState, audience};
use crate::core::ordering::{Change, PatchDraft};
use crate::core::outbound::{Outbound, StoredFrame};
use crate::hooks::{self, Hook, Hooks};
use crate::metrics::METRICS;
use crate::notify::{Notifier, OfflinePush};
use crate::protocol::{Content, ConvKind, Event, Message};
use crate::registry::Registry;
use crate::store::LogEntry;

/// The message as each receiver should see it: at most two variants, those
/// it mentions and the rest, so a send to 500 members encodes two frames.
pub fn per_receiver<'a>(audience: &[&'a str], msg: &Message) -> Vec<(Vec<&'a str>, Message)> {
    if msg.mention_all || msg.mention_list.is_empty() {
        let m = msg.clone().for_receiver("");
        return vec![(audience.to_vec(), m)];
    }
    let (named, rest): (Vec<&str>, Vec<&str>) = audience
        .iter()
        .partition(|a| msg.mention_list.iter().any(|m| m == *a));
    let mut out = Vec::with_capacity(2);
    if let Some(first) = named.first() {
        let m = msg.clone().for_receiver(first);
        out.push((named, m));
    }
    if !rest.is_empty() {
        out.push((rest, msg.clone().for_receiver("")));
    }
    out
}

/// Hands a durable message to every online device of its audience, except the
/// connection that sent it.
pub(super) fn message(ctx: &Ctx, conv: &Conv, entry: &LogEntry, origin_conn: u64) {
    METRICS.messages_in(1);
    let (conv_id, seq) = (entry.msg.conv, entry.msg.seq);
    let st = conv.state.read();
    let audience = audience(&st, &entry.msg.from, &[entry.to_peers.as_deref()]);
    if st.rec.kind != ConvKind::System {
        let after = After {
            hooks: &ctx.hooks,
            registry: &ctx.registry,
            notifier: &ctx.notifier,
            rt: &ctx.rt,
        };
        delivered(&after, &st, &entry.msg, &entry.from_ip, &audience);
    }
    let receipt = entry
        .msg
        .receipt
        .then(|| Arc::new((entry.msg.from.clone(), entry.msg.timestamp)));
    let chat_room = st.rec.kind == ConvKind::ChatRoom;
    for (group, msg) in per_receiver(&audience, &entry.msg) {
        let Some(frame) = crate::wire::frame::event(Event::Message {
            msg,
            redelivered: false,
            chat_room,
        }) else {
            continue;
        };
        let out = Outbound::Message(Arc::new(StoredFrame {
            conv: conv_id,
            seq,
            frame,
            receipt: receipt.clone(),
            chat_room,
        }));
        ctx.registry.send_to(group, Some(origin_conn), &out);
    }
    METRICS.delivered(entry.msg.timestamp);
}

/// Tells online members about an edit, recall or delete.
pub(super) fn patch(ctx: &Ctx, entry: &LogEntry, p: &PatchDraft) {
    let st = p.conv.state.read();
    let audience = audience(
        &st,
        &entry.msg.from,
        &[entry.to_peers.as_deref(), p.to_peers.as_deref()],
    );
    let groups = if entry.deleted {
        vec![(audience, entry.msg.clone())]
    } else {
        per_receiver(&audience, &entry.msg)
    };
    for (group, msg) in groups {
        let ev = match &p.change {
            Change::Edit { .. } => Event::MessageUpdated {
                msg,
                reason: p.reason.clone(),
            },
            Change::Recall => Event::MessageRecalled {
                msg,
                reason: p.reason.clone(),
            },
            Change::Delete => Event::MessageDeleted {
                conv: msg.conv,
                msg_id: msg.msg_id,
                seq: msg.seq,
                by: p.by.clone(),
            },
        };
        if let Some(f) = crate::wire::frame::event(ev) {
            ctx.registry
                .send_to(group, Some(p.origin_conn), &Outbound::frame(f));
        }
    }
}

/// LeanCloud's `content` and `bin`: binary content travels as base64.
pub fn content_params(c: &Content) -> (Value, bool) {
    match c {
        Content::Text(t) => (Value::String(t.clone()), false),
        Content::Binary(b) => (Value::String(hooks::encode_bin(b)), true),
    }
}

/// What the after-delivery work needs, on the commit thread or a session.
pub struct After<'a> {
    pub hooks: &'a Arc<Hooks>,
    pub registry: &'a Registry,
    pub notifier: &'a Arc<Notifier>,
    /// Where the hook and the push run: never on the caller's thread.
    pub rt: &'a tokio::runtime::Handle,
}

/// After delivery: `_messageSent` with who was online, and for those who
/// were not, `_receiversOffline` and the offline push. Neither is for chat
/// rooms or system conversations, transient messages or wills, which reach
/// only who is online. `audience` is everyone the message reached, the
/// sender included; it is only read when a hook or push is on. Never
/// blocks the caller: the first hook is queued in the outbox, the rest
/// runs on `rt`.
pub fn delivered(
    after: &After,
    st: &ConvState,
    msg: &Message,
    from_ip: &str,
    audience: &[impl AsRef<str>],
) {
    let kind = st.rec.kind;
    let hooks = after.hooks;
    let sent = hooks.enabled(Hook::MessageSent);
    let pushable =
        !matches!(kind, ConvKind::ChatRoom | ConvKind::System) && !msg.transient && !msg.will;
    let offline_hook = pushable && hooks.enabled(Hook::ReceiversOffline);
    let push = pushable && after.notifier.enabled();
    if !sent && !offline_hook && !push {
        return;
    }
    let (online, offline): (Vec<&str>, Vec<&str>) = audience
        .iter()
        .map(AsRef::as_ref)
        .filter(|r| *r != msg.from)
        .partition(|r| after.registry.is_online(r));
    let (content, bin) = content_params(&msg.content);
    let conv = msg.conv.to_string();
    if sent {
        let params = json!({
            "fromPeer": msg.from,
            "convId": conv,
            "msgId": msg.msg_id,
            "onlinePeers": online,
            "offlinePeers": offline,
            "transient": msg.transient,
            "system": kind == ConvKind::System,
            "bin": bin,
            "content": content,
            "receipt": msg.receipt,
            "timestamp": msg.timestamp,
            "sourceIP": from_ip,
        });
        hooks.after(Hook::MessageSent, params, &conv);
    }
    if !(offline_hook || push) || offline.is_empty() {
        return;
    }
    let job = OfflinePush {
        conv: conv.clone(),
        msg_id: msg.msg_id.clone(),
        from: msg.from.clone(),
        peers: offline.iter().map(|p| (*p).to_owned()).collect(),
        muted: st.rec.muted.clone(),
        push_data: msg.push_data.clone(),
    };
    let notifier = after.notifier.clone();
    if !offline_hook {
        after
            .rt
            .spawn(async move { notifier.offline(&job, None, false) });
        return;
    }
    let mentioned: Vec<&str> = if msg.mention_all {
        Vec::new()
    } else {
        offline
            .iter()
            .copied()
            .filter(|p| msg.mention_list.iter().any(|m| m == p))
            .collect()
    };
    let params = json!({
        "fromPeer": msg.from,
        "convId": conv,
        "msgId": msg.msg_id,
        "offlinePeers": offline,
        "content": content,
        "bin": bin,
        "timestamp": msg.timestamp,
        "mentionAll": msg.mention_all,
        "mentionOfflinePeers": mentioned,
        "pushData": msg.push_data,
    });
    let hooks = hooks.clone();
    after.rt.spawn(async move {
        let decision = hooks.before(Hook::ReceiversOffline, params).await;
        notifier.after_hook(job, decision);
    });
}
