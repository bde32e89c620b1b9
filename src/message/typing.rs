//! Typing indicators: transient events to the online members, over QUIC
//! datagrams when they fit, plus Skygear's `typing_started` hook
//! (`_typingStarted`), rate-limited per client and conversation.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::core::Caller;
use crate::core::outbound::Outbound;
use crate::hooks::Hook;
use crate::hub::Hub;
use crate::protocol::{ConvId, Event};
use crate::util::now_ms;

/// Relays a typing change; silently dropped when the caller is not a member
/// (there is no answer to a datagram).
pub fn relay(hub: &Hub, caller: &Caller, conv_id: ConvId, started: bool) {
    let Ok(conv) = hub.convs.live(conv_id) else {
        return;
    };
    let members = {
        let st = conv.state.read();
        if !st.is_member(&caller.client) {
            return;
        }
        st.audience()
    };
    if let Some(out) = Outbound::transient(Event::Typing {
        conv: conv_id,
        from: caller.client.clone(),
        started,
    }) {
        let others = members
            .iter()
            .map(String::as_str)
            .filter(|m| *m != caller.client);
        hub.registry.send_to(others, None, &out);
    }
    if started && hook_due(hub, &caller.client, conv_id) {
        let key = conv_id.to_string();
        hub.hooks.after_if_on(Hook::TypingStarted, &key, || {
            let now = now_ms();
            json!({
                "convId": key,
                "fromPeer": caller.client,
                "members": members,
                "events": [{ "clientId": caller.client, "event": "begin", "at": now }],
                "timestamp": now,
            })
        });
    }
}

/// Whether `_typingStarted` may go out for this client and conversation now.
fn hook_due(hub: &Hub, client: &str, conv: ConvId) -> bool {
    if !hub.hooks.enabled(Hook::TypingStarted) {
        return false;
    }
    let every = Duration::from_secs(hub.config.messages.typing_hook_interval_secs);
    hub.typing_hooks
        .lock()
        .admit(Instant::now(), every, (client.to_owned(), conv), ())
}
