//! Who is in a conversation: `join`, `leave`, `add_members`,
//! `remove_members`. Chat rooms keep no stored members: joining and
//! leaving one only changes who is in the room now.

use std::sync::Arc;

use serde_json::json;

use super::{changeable, check_signature, not_member, notify_members, require_admin, stored_kind};
use crate::auth::ConvAction;
use crate::core::Caller;
use crate::core::conversation::{Conv, edit_members, unique_key};
use crate::core::validate::{self, err};
use crate::hooks::Hook;
use crate::hub::Hub;
use crate::protocol::{ConvId, ConvKind, ErrorBody, ErrorCode, Event, OpSignature};
use crate::util::now_ms;

/// Applies a member-set change under the lock and persists it, keeping the
/// unique index pointing at the current member set.
pub(super) fn change_members(
    hub: &Hub,
    conv: &Conv,
    add: &[String],
    remove: &[String],
) -> Result<(Vec<String>, Vec<String>), ErrorBody> {
    let mut st = conv.state.write();
    // Under the lock that blocking takes too, so a block cannot race a join.
    crate::core::moderation::refuse_blocked(&st.moderation, add)?;
    let old_key = st.rec.unique.then(|| unique_key(&st.rec.members));
    let edit = edit_members(&st.rec.members, add, remove);
    if edit.members.len() > hub.config.limits.max_members as usize {
        return Err(err(
            ErrorCode::ConvFull,
            format!("more than {} members", hub.config.limits.max_members),
        ));
    }
    let (added, removed) = (edit.added, edit.removed);
    st.rec.members = edit.members;
    st.rec.managers.retain(|m| !removed.contains(m));
    st.rec.updated_at = now_ms();
    hub.store.put_conversation(&st.rec)?;
    let last = conv.last_seq();
    for m in &added {
        hub.store.add_membership(m, conv.id)?;
        // Unread counts start at the join, as in LeanCloud.
        hub.store.set_read_cursor(m, conv.id, last)?;
    }
    for m in &removed {
        hub.store.remove_membership(m, conv.id)?;
    }
    if let Some(old) = old_key {
        let new = unique_key(&st.rec.members);
        if old != new {
            if hub.store.unique_get(&old)? == Some(conv.id) {
                hub.store.unique_remove(&old)?;
            }
            hub.store.unique_claim(&new, conv.id)?;
        }
    }
    Ok((added, removed))
}

/// 4117 when `client` is in `quotas.max_conversations_per_client` already.
pub(super) fn room_for_one_more(hub: &Hub, client: &str) -> Result<(), ErrorBody> {
    hub.guard
        .one_more_conversation(client, |cap| hub.store.membership_count(client, cap))
}

/// What every member change checks first, in this order: the signature
/// (before anything about the conversation is revealed), that it is live
/// (4303, or 4323 for an expired temporary one), that its members may
/// change (4314 for a temporary one).
fn member_change(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    members: &[String],
    action: ConvAction,
    sig: Option<&OpSignature>,
) -> Result<Arc<Conv>, ErrorBody> {
    check_signature(hub, caller, Some(conv), members, action, sig)?;
    let c = hub.convs.live(conv)?;
    changeable(&c)?;
    Ok(c)
}

/// Signed as an `invite` of the caller alone, as the SDKs sign a join.
pub async fn join(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    sig: Option<&OpSignature>,
) -> Result<(), ErrorBody> {
    let me = std::slice::from_ref(&caller.client);
    let c = member_change(hub, caller, conv, me, ConvAction::Invite, sig)?;
    member_hook(hub, Hook::ConversationAdd, caller, conv, me).await?;
    let kind = c.state.read().rec.kind;
    if kind == ConvKind::ChatRoom {
        crate::core::moderation::refuse_blocked(&c.state.read().moderation, me)?;
        hub.registry.enter_room(&caller.client, conv);
        c.state.write().room.insert(caller.client.clone());
        after_members(hub, Hook::ConversationAdded, caller, conv, me);
        return Ok(());
    }
    if c.state
        .read()
        .rec
        .members
        .binary_search(&caller.client)
        .is_err()
    {
        room_for_one_more(hub, &caller.client)?;
    }
    let (added, _) = change_members(hub, &c, me, &[])?;
    hub.pipeline.barrier().await?;
    announce_joined(hub, &c, caller, added);
    Ok(())
}

/// A `kick` of the caller alone: never required to be signed (the Java
/// SDK quits unsigned), checked when it is.
pub async fn leave(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    sig: Option<&OpSignature>,
) -> Result<(), ErrorBody> {
    let me = std::slice::from_ref(&caller.client);
    let c = member_change(hub, caller, conv, me, ConvAction::Kick, sig)?;
    let kind = c.state.read().rec.kind;
    if kind == ConvKind::ChatRoom {
        hub.registry.leave_room(&caller.client, conv);
        c.state.write().room.remove(&caller.client);
        return Ok(());
    }
    if !c.state.read().is_member(&caller.client) {
        return Err(not_member(conv));
    }
    let (_, removed) = change_members(hub, &c, &[], std::slice::from_ref(&caller.client))?;
    hub.pipeline.barrier().await?;
    announce_left(hub, &c, caller, removed, false);
    Ok(())
}

/// `_conversationAdd` / `_conversationRemove`: may reject.
async fn member_hook(
    hub: &Hub,
    hook: Hook,
    caller: &Caller,
    conv: ConvId,
    members: &[String],
) -> Result<(), ErrorBody> {
    hub.hooks
        .check_before(
            hook,
            || json!({ "initBy": caller.client, "members": members, "convId": conv.to_string() }),
        )
        .await
        .map(|_| ())
}

/// `_conversationAdded` / `_conversationRemoved`, when anyone changed.
fn after_members(hub: &Hub, hook: Hook, caller: &Caller, conv: ConvId, members: &[String]) {
    if members.is_empty() {
        return;
    }
    let id = conv.to_string();
    hub.hooks.after_if_on(
        hook,
        &id,
        || json!({ "initBy": caller.client, "convId": id, "members": members }),
    );
}

/// After members left or were removed: the after-hook, `Kicked` to the
/// removed when someone else removed them, and MembersLeft to everyone left.
pub(super) fn announce_left(
    hub: &Hub,
    c: &Conv,
    caller: &Caller,
    removed: Vec<String>,
    kicked: bool,
) {
    if removed.is_empty() {
        return;
    }
    after_members(hub, Hook::ConversationRemoved, caller, c.id, &removed);
    if kicked {
        let ev = Event::Kicked {
            conv: c.id,
            by: caller.client.clone(),
        };
        hub.registry.notify(removed.iter().map(String::as_str), ev);
    }
    let ev = Event::MembersLeft {
        conv: c.id,
        members: removed,
        by: caller.client.clone(),
    };
    notify_members(hub, c, ev);
}

/// After members joined or were added: the after-hook, and MembersJoined to everyone.
fn announce_joined(hub: &Hub, c: &Conv, caller: &Caller, added: Vec<String>) {
    if added.is_empty() {
        return;
    }
    after_members(hub, Hook::ConversationAdded, caller, c.id, &added);
    let ev = Event::MembersJoined {
        conv: c.id,
        members: added,
        by: caller.client.clone(),
    };
    notify_members(hub, c, ev);
}

pub async fn add_members(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    members: Vec<String>,
    sig: Option<&OpSignature>,
) -> Result<(), ErrorBody> {
    validate::client_ids(&members)?;
    let c = member_change(hub, caller, conv, &members, ConvAction::Invite, sig)?;
    stored_kind(&c)?;
    require_admin(&c, caller)?;
    member_hook(hub, Hook::ConversationAdd, caller, conv, &members).await?;
    let (added, _) = change_members(hub, &c, &members, &[])?;
    hub.pipeline.barrier().await?;
    let ev = Event::Invited {
        conv,
        by: caller.client.clone(),
    };
    hub.registry.notify(added.iter().map(String::as_str), ev);
    announce_joined(hub, &c, caller, added);
    Ok(())
}

pub async fn remove_members(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    members: Vec<String>,
    sig: Option<&OpSignature>,
) -> Result<(), ErrorBody> {
    let c = member_change(hub, caller, conv, &members, ConvAction::Kick, sig)?;
    stored_kind(&c)?;
    require_admin(&c, caller)?;
    if members.contains(&c.state.read().rec.creator) {
        return Err(err(ErrorCode::ConvApiFailed, "the owner cannot be removed"));
    }
    member_hook(hub, Hook::ConversationRemove, caller, conv, &members).await?;
    let (_, removed) = change_members(hub, &c, &[], &members)?;
    hub.pipeline.barrier().await?;
    announce_left(hub, &c, caller, removed, true);
    Ok(())
}
