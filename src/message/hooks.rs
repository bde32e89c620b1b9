//! The message hooks: `_messageReceived` before a message is stored (and
//! the helpers `_messageUpdate` shares). `_messageSent` and
//! `_receiversOffline`, after delivery, live with the fan-out
//! (`pipeline::fanout`). Parameter names are LeanCloud's, so LeanEngine
//! hook code reads them unchanged.

use serde_json::{Value, json};

use crate::core::Caller;
use crate::core::conversation::Conv;
use crate::hooks::{self, Hook};
use crate::hub::Hub;
use crate::protocol::{Content, ConvKind, ErrorBody, Reason, SendMessage};
use crate::util::now_ms;

pub(crate) use crate::pipeline::fanout::content_params;

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
