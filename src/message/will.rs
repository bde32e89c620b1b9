//! Will messages: one per client, parked in memory and sent to its
//! conversation when the connection that set it drops without a logout
//! (idle timeout, network loss, a killed app). Never stored in history.
//!
//! Held in memory only: a server restart closes every connection with 4202,
//! which is not the client going away, so there is nothing to send then.
//! Which will goes out is the table's rule ([`crate::core::will`]); this
//! file parks and sends.

use super::{deliver_online, unstored};
use crate::core::Caller;
use crate::core::will::Will;
use crate::hub::Hub;
use crate::protocol::{Message, Reply, SendMessage};
use crate::util::now_ms;

/// Parks `m` (already checked, hooked and filtered) as the caller's will,
/// replacing any earlier one.
pub fn set(hub: &Hub, caller: &Caller, m: SendMessage, to_peers: Option<Vec<String>>) -> Reply {
    let conv = m.conv;
    let (mut msg, reply) = unstored(caller, m);
    msg.will = true;
    hub.wills.set(Will {
        caller: caller.clone(),
        conv,
        msg,
        to_peers,
    });
    reply
}

/// Drops the caller's will, whichever of its connections set it.
pub fn clear(hub: &Hub, caller: &Caller) {
    hub.wills.clear(&caller.client);
}

/// A proactive logout: the will is not sent.
pub fn forget(hub: &Hub, caller: &Caller) {
    hub.wills.take(caller);
}

/// The connection dropped without a logout: send its will, if the client
/// is still a member of the conversation it names.
pub fn fire(hub: &Hub, caller: &Caller) {
    let Some(w) = hub.wills.take(caller) else {
        return;
    };
    let Ok(conv) = hub.convs.live(w.conv) else {
        return;
    };
    if !conv.state.read().is_member(&w.caller.client) {
        return;
    }
    let msg = Message {
        timestamp: now_ms(),
        ..w.msg
    };
    tracing::debug!(client = %w.caller.client, conv = %w.conv, "sending will message");
    deliver_online(hub, &w.caller, &conv, msg, w.to_peers.as_deref());
}
