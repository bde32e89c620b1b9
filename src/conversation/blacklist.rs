//! The conversation blacklist (LeanCloud's `blacklist/block`,
//! `unblock`): the owner or a manager blocks clients; members among them
//! are removed, and none may join or be added (4315, checked in
//! `members::change_members` under the conversation's lock) until unblocked.
//!
//! The blacklist signature (LeanCloud's `conversation-block-clients` /
//! `conversation-unblock-clients`) is checked by the door before these
//! are called, as the other conversation signatures are.

use super::members::{announce_left, change_members};
use super::moderation::{change, check_batch, partial};
use super::notify_members;
use crate::core::Caller;
use crate::core::conversation::Conv;
use crate::core::moderation::List;
use crate::hub::Hub;
use crate::protocol::{ConvId, ConvKind, ErrorBody, Event, Reply};

/// Blocks `members`. The removed hear `Kicked`, the newly blocked
/// `Blocked`, and everyone left `MembersLeft` and `MembersBlocked` (the
/// JS SDK's own test expects all four). `_conversationRemoved` reports the
/// removal like any other.
pub async fn block(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    members: Vec<String>,
) -> Result<Reply, ErrorBody> {
    check_batch(&members)?;
    let c = hub.convs.live(conv)?;
    let (verdict, blocked) = change(hub, caller, &c, List::Blocked, &members, true)?;
    // Every allowed one, not only the newly blocked: one whose earlier
    // block was written but whose removal was not (a crash between the two)
    // goes now.
    let removed = remove_blocked(hub, &c, &verdict.allowed)?;
    if blocked.is_empty() && removed.is_empty() {
        return Ok(partial(verdict));
    }
    hub.pipeline.barrier().await?;
    let by = caller.client.clone();
    // Each one hears, in order: the removed `Kicked` then `Blocked`;
    // everyone left `MembersLeft` then `MembersBlocked`.
    announce_left(hub, &c, caller, removed, true);
    if !blocked.is_empty() {
        let own = Event::Blocked {
            conv,
            by: by.clone(),
        };
        hub.registry.notify(blocked.iter().map(String::as_str), own);
        let all = Event::MembersBlocked {
            conv,
            members: blocked,
            by,
        };
        notify_members(hub, &c, all);
    }
    Ok(partial(verdict))
}

/// Takes the blocked out of the conversation: its stored members, or who
/// is in the room now for a chat room. Returns who was in.
fn remove_blocked(hub: &Hub, c: &Conv, blocked: &[String]) -> Result<Vec<String>, ErrorBody> {
    if blocked.is_empty() {
        return Ok(Vec::new());
    }
    if c.state.read().rec.kind != ConvKind::ChatRoom {
        return Ok(change_members(hub, c, &[], blocked)?.1);
    }
    let mut out = Vec::new();
    let mut st = c.state.write();
    for m in blocked {
        if st.room.remove(m) {
            hub.registry.leave_room(m, c.id);
            out.push(m.clone());
        }
    }
    Ok(out)
}

/// Unblocks `members`: `Unblocked` to them, `MembersUnblocked` to everyone
/// in the conversation. They may join again; nobody is added back.
pub async fn unblock(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    members: Vec<String>,
) -> Result<Reply, ErrorBody> {
    check_batch(&members)?;
    let c = hub.convs.live(conv)?;
    let (verdict, unblocked) = change(hub, caller, &c, List::Blocked, &members, false)?;
    if !unblocked.is_empty() {
        hub.pipeline.barrier().await?;
        let by = caller.client.clone();
        let own = Event::Unblocked {
            conv,
            by: by.clone(),
        };
        hub.registry
            .notify(unblocked.iter().map(String::as_str), own);
        let all = Event::MembersUnblocked {
            conv,
            members: unblocked,
            by,
        };
        notify_members(hub, &c, all);
    }
    Ok(partial(verdict))
}
