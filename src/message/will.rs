//! Will messages: one per client, parked in memory and sent to its
//! conversation when the connection that set it drops without a logout
//! (idle timeout, network loss, a killed app). Never stored in history.
//!
//! Held in memory only: a server restart closes every connection with 4202,
//! which is not the client going away, so there is nothing to send then.

use super::{deliver_online, unstored};
use crate::core::Caller;
use crate::hub::Hub;
use crate::protocol::{ConvId, Message, Reply, SendMessage};
use crate::util::now_ms;

pub struct Will {
    caller: Caller,
    conv: ConvId,
    msg: Message,
    to_peers: Option<Vec<String>>,
}

/// Parks `m` (already checked, hooked and filtered) as the caller's will,
/// replacing any earlier one.
pub fn set(hub: &Hub, caller: &Caller, m: SendMessage, to_peers: Option<Vec<String>>) -> Reply {
    let conv = m.conv;
    let (mut msg, reply) = unstored(caller, m);
    msg.will = true;
    let will = Will {
        caller: caller.clone(),
        conv,
        msg,
        to_peers,
    };
    hub.wills.lock().insert(caller.client.clone(), will);
    reply
}

/// Drops the caller's will, whichever of its connections set it.
pub fn clear(hub: &Hub, caller: &Caller) {
    hub.wills.lock().remove(&caller.client);
}

/// Takes the will the connection `caller` set, if it is still the client's.
fn take(hub: &Hub, caller: &Caller) -> Option<Will> {
    let mut wills = hub.wills.lock();
    match wills.get(&caller.client) {
        Some(w) if w.caller.conn_id == caller.conn_id => wills.remove(&caller.client),
        _ => None,
    }
}

/// A proactive logout: the will is not sent.
pub fn forget(hub: &Hub, caller: &Caller) {
    take(hub, caller);
}

/// The connection dropped without a logout: send its will, if the client
/// is still a member of the conversation it names.
pub fn fire(hub: &Hub, caller: &Caller) {
    let Some(w) = take(hub, caller) else { return };
    let Some(conv) = hub.convs.get(&w.conv) else {
        return;
    };
    if conv.is_deleted() || !conv.state.read().is_member(&w.caller.client) {
        return;
    }
    let msg = Message {
        timestamp: now_ms(),
        ..w.msg
    };
    tracing::debug!(client = %w.caller.client, conv = %w.conv, "sending will message");
    deliver_online(hub, &w.caller, &conv, msg, w.to_peers.as_deref());
}
