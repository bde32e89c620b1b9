//! After the flush: who hears a message (`core::conversation::audience`),
//! its frames (encoded once, at most two variants, `per_receiver`), the
//! registry's queues, and the after-delivery hooks `_messageSent` (queued
//! in the outbox) and `_receiversOffline`. Parameter names are
//! LeanCloud's, so LeanEngine hook code reads them unchanged.
//!
//! Stored messages reach here from the commit thread; unstored ones
//! (transient messages, wills) from `message::deliver_online`, through the
//! same `per_receiver` and `delivered`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Ctx;
use crate::core::conversation::{Conv, audience};
use crate::core::ordering::{Change, PatchDraft};
use crate::core::outbound::{Outbound, StoredFrame};
use crate::hooks::{self, Before, Hook, Hooks};
use crate::metrics::METRICS;
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
    let kind = st.rec.kind;
    let audience = audience(&st, &entry.msg.from, &[entry.to_peers.as_deref()]);
    if kind != ConvKind::System {
        delivered(
            &ctx.hooks,
            &ctx.registry,
            &ctx.rt,
            kind,
            &entry.msg,
            &entry.from_ip,
            &audience,
        );
    }
    let receipt = entry
        .msg
        .receipt
        .then(|| Arc::new((entry.msg.from.clone(), entry.msg.timestamp)));
    for (group, msg) in per_receiver(&audience, &entry.msg) {
        let Some(frame) = crate::wire::frame::event(Event::Message {
            msg,
            redelivered: false,
        }) else {
            continue;
        };
        let out = Outbound::Message(Arc::new(StoredFrame {
            conv: conv_id,
            seq,
            frame,
            receipt: receipt.clone(),
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

/// After delivery: `_messageSent` with who was online, and
/// `_receiversOffline` (not for chat rooms) for those who were not.
/// `audience` is everyone the message reached, the sender included; it is
/// only read when a hook is on. Never blocks the caller: the first hook is
/// queued in the outbox, the second runs on `rt`.
pub fn delivered(
    hooks: &Arc<Hooks>,
    registry: &Registry,
    rt: &tokio::runtime::Handle,
    kind: ConvKind,
    msg: &Message,
    from_ip: &str,
    audience: &[impl AsRef<str>],
) {
    let sent = hooks.enabled(Hook::MessageSent);
    let offline_hook = hooks.enabled(Hook::ReceiversOffline) && kind != ConvKind::ChatRoom;
    if !sent && !offline_hook {
        return;
    }
    let (online, offline): (Vec<&str>, Vec<&str>) = audience
        .iter()
        .map(AsRef::as_ref)
        .filter(|r| *r != msg.from)
        .partition(|r| registry.is_online(r));
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
    // Transient messages and wills reach only who is online: nothing to push.
    if offline_hook && !offline.is_empty() && !msg.transient && !msg.will {
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
        rt.spawn(async move {
            let decision = hooks.before(Hook::ReceiversOffline, params.clone()).await;
            push(&params, decision);
        });
    }
}

/// What `_receiversOffline` decided. Tidings has no push provider yet
/// (APNs/FCM come with the push work); the decision is logged for now.
fn push(params: &Value, decision: Before) {
    let Before::Proceed(result) = decision else {
        tracing::debug!(conv = %params["convId"], "receivers-offline hook failed; no push");
        return;
    };
    if result.get("skip").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let peers = result
        .get("offlinePeers")
        .unwrap_or(&params["offlinePeers"]);
    let payload = result
        .get("pushMessage")
        .cloned()
        .unwrap_or_else(|| params["content"].clone());
    let force = result
        .get("force")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    tracing::info!(target: "tidings::push", conv = %params["convId"], msg = %params["msgId"],
        peers = %peers, force, payload = %payload, "push notification (no provider configured)");
}
