//! The message hooks: `_messageReceived` before a message is stored,
//! `_messageSent` and `_receiversOffline` after it is delivered. Parameter
//! names are LeanCloud's, so LeanEngine hook code reads them unchanged.

use serde_json::{Value, json};

use crate::core::Caller;
use crate::core::conversation::Conv;
use crate::hooks::{self, Before, Hook, Hooks};
use crate::hub::Hub;
use crate::protocol::{Content, ConvKind, ErrorBody, Message, Reason, SendMessage};
use crate::registry::Registry;
use crate::util::now_ms;

/// LeanCloud's `content` and `bin`: binary content travels as base64.
pub(crate) fn content_params(c: &Content) -> (Value, bool) {
    match c {
        Content::Text(t) => (Value::String(t.clone()), false),
        Content::Binary(b) => (Value::String(hooks::encode_bin(b)), true),
    }
}

/// What a before-hook decided about a message it let through.
pub struct Verdict {
    /// Receivers it chose; `None` is every member.
    pub to_peers: Option<Vec<String>>,
    /// Set when it replaced the content.
    pub reason: Option<Reason>,
}

/// Runs `_messageReceived`. It may drop the message (the client gets the
/// hook's code), replace its content, or choose its receivers.
pub async fn received(
    hub: &Hub,
    caller: &Caller,
    conv: &Conv,
    m: &mut SendMessage,
) -> Result<Verdict, ErrorBody> {
    let result = hub
        .hooks
        .check_before(Hook::MessageReceived, || {
            let (kind, mut to_peers) = {
                let st = conv.state.read();
                (st.rec.kind, st.audience())
            };
            to_peers.retain(|p| *p != caller.client);
            let (content, bin) = content_params(&m.content);
            json!({
                "fromPeer": caller.client,
                "convId": conv.id.to_string(),
                "toPeers": to_peers,
                "transient": m.transient,
                "bin": bin,
                "content": content,
                "receipt": m.receipt,
                "timestamp": now_ms(),
                "system": kind == ConvKind::System,
                "sourceIP": caller.ip,
                "mentionList": m.mention_list,
                "mentionAll": m.mention_all,
            })
        })
        .await?;
    Ok(Verdict {
        reason: replace_content(Hook::MessageReceived, &result, &mut m.content)?,
        to_peers: to_peers_of(&result),
    })
}

/// A hook's `toPeers`, when it returned one.
pub(crate) fn to_peers_of(result: &serde_json::Map<String, Value>) -> Option<Vec<String>> {
    result
        .get("toPeers")
        .and_then(Value::as_array)
        .map(|peers| {
            peers
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
}

/// Applies a before-hook's `content`/`bin`. Returns the reason the sender
/// is told when the content really changed: the hook's own positive `code`
/// and `detail` if it gave them, else code 1.
pub(crate) fn replace_content(
    hook: Hook,
    result: &serde_json::Map<String, Value>,
    content: &mut Content,
) -> Result<Option<Reason>, ErrorBody> {
    let Some(Value::String(text)) = result.get("content") else {
        return Ok(None);
    };
    let was_bin = matches!(content, Content::Binary(_));
    let bin = result
        .get("bin")
        .and_then(Value::as_bool)
        .unwrap_or(was_bin);
    let new = if bin {
        Content::Binary(hooks::decode_bin(text).map_err(|e| {
            ErrorBody::new(
                hook.reject_error(),
                format!("{} returned bad base64 content: {e}", hook.name()),
            )
        })?)
    } else {
        Content::Text(text.clone())
    };
    if new == *content {
        return Ok(None);
    }
    *content = new;
    let code = result
        .get("code")
        .and_then(Value::as_i64)
        .and_then(|c| i32::try_from(c).ok())
        .filter(|c| *c > 0)
        .unwrap_or(1);
    let detail = result
        .get("detail")
        .and_then(Value::as_str)
        .map_or_else(|| format!("modified by {}", hook.name()), str::to_owned);
    Ok(Some(Reason { code, detail }))
}

/// After delivery: `_messageSent` with who was online, and
/// `_receiversOffline` (not for chat rooms) for those who were not.
/// `audience` is everyone the message reached, the sender included; it is
/// only read when a hook is on. Never blocks the caller: the first hook is
/// queued in the outbox, the second runs on `rt`.
pub fn delivered(
    hooks: &std::sync::Arc<Hooks>,
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
