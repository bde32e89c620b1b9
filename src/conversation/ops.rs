//! Conversation commands. Each checks membership and role, changes the
//! record under the conversation's lock, persists it, waits for durability,
//! then tells the online members.

use std::sync::Arc;

use crate::auth::valid_id;
use crate::core::Caller;
use crate::core::conversation::{Conv, unique_key};
use crate::hooks::Hook;
use crate::hub::Hub;
use crate::protocol::{
    ConvId, ConvKind, ConversationInfo, CreateConversation, ErrorBody, ErrorCode, Event,
};
use crate::store::ConversationRecord;
use crate::util::now_ms;
use serde_json::{Map, Value, json};

const MAX_NAME_LEN: usize = 256;

fn err(code: ErrorCode, detail: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, detail)
}

fn lookup(hub: &Hub, conv: ConvId) -> Result<Arc<Conv>, ErrorBody> {
    hub.convs
        .get(&conv)
        .ok_or_else(|| err(ErrorCode::ConvNotFound, format!("no conversation {conv}")))
}

fn not_member(conv: ConvId) -> ErrorBody {
    err(
        ErrorCode::InvalidMessagingTarget,
        format!("not a member of {conv}"),
    )
}

fn check_ids(ids: &[String]) -> Result<(), ErrorBody> {
    match ids.iter().find(|m| !valid_id(m)) {
        Some(bad) => Err(err(
            ErrorCode::ConvApiFailed,
            format!("invalid client id {bad:?}: 1-64 characters, no control characters"),
        )),
        None => Ok(()),
    }
}

fn check_attr(attr: &Option<String>) -> Result<(), ErrorBody> {
    if let Some(a) = attr {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(a).map_err(|e| {
            err(
                ErrorCode::ConvApiFailed,
                format!("attr must be a JSON object: {e}"),
            )
        })?;
    }
    Ok(())
}

fn check_name(name: &Option<String>) -> Result<(), ErrorBody> {
    match name {
        Some(n) if n.len() > MAX_NAME_LEN => Err(err(
            ErrorCode::ConvApiFailed,
            format!("name over {MAX_NAME_LEN} bytes"),
        )),
        _ => Ok(()),
    }
}

fn sorted_unique(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

pub async fn create(
    hub: &Hub,
    caller: &Caller,
    req: CreateConversation,
) -> Result<ConversationInfo, ErrorBody> {
    check_ids(&req.members)?;
    check_attr(&req.attr)?;
    check_name(&req.name)?;
    if req.kind == ConvKind::System {
        return Err(err(
            ErrorCode::ConvApiFailed,
            "system conversations are created through the admin API",
        ));
    }
    let room = req.kind == ConvKind::ChatRoom;
    let mut members = req.members;
    members.push(caller.client.clone());
    let members = if room {
        Vec::new()
    } else {
        sorted_unique(members)
    };
    if members.len() > hub.config.limits.max_members as usize {
        return Err(err(
            ErrorCode::ConvFull,
            format!("more than {} members", hub.config.limits.max_members),
        ));
    }
    let unique = req.unique && !room;
    // Reopening an existing unique conversation creates nothing: no hook.
    if unique {
        let existing = hub
            .store
            .unique_get(&unique_key(&members))?
            .and_then(|id| hub.convs.get(&id));
        if let Some(c) = existing {
            hub.pipeline.barrier().await?;
            return Ok(c.info(&caller.client));
        }
    }
    // After a unique reopen (which creates nothing), before the hook.
    if !room {
        room_for_one_more(hub, &caller.client)?;
    }
    hub.guard.create_conversation(&caller.client)?;
    hub.hooks
        .check_before(Hook::ConversationStart, || {
            let initial: &[String] = if room {
                std::slice::from_ref(&caller.client)
            } else {
                &members
            };
            json!({
                "initBy": caller.client,
                "members": initial,
                "attr": hook_attr(&req.name, &req.attr),
            })
        })
        .await?;
    let now = now_ms();
    let rec = ConversationRecord {
        id: ConvId::random(),
        kind: req.kind,
        name: req.name,
        attr: req.attr,
        creator: caller.client.clone(),
        members,
        managers: Vec::new(),
        muted: Vec::new(),
        unique,
        created_at: now,
        updated_at: now,
    };
    let (conv, fresh) = {
        // Serialises unique creation so two racing creates of one member set
        // return the same conversation.
        let _guard = hub.unique_lock.lock();
        let key = unique.then(|| unique_key(&rec.members));
        let existing = match &key {
            Some(k) => hub.store.unique_get(k)?.and_then(|id| hub.convs.get(&id)),
            None => None,
        };
        match existing {
            Some(c) => (c, false),
            None => {
                hub.store.put_conversation(&rec)?;
                for m in &rec.members {
                    hub.store.add_membership(m, rec.id)?;
                }
                if let Some(k) = &key {
                    hub.store.unique_put(k, rec.id)?;
                }
                let conv = Arc::new(Conv::new(rec, 0, 0));
                hub.convs.insert(conv.clone());
                (conv, true)
            }
        }
    };
    if !fresh {
        // An existing unique conversation: nothing new to announce.
        hub.pipeline.barrier().await?;
        return Ok(conv.info(&caller.client));
    }
    if room {
        hub.registry.enter_room(&caller.client, conv.id);
        conv.state.write().room.insert(caller.client.clone());
    }
    hub.pipeline.barrier().await?;
    let info = conv.info(&caller.client);
    let id = info.id.to_string();
    hub.hooks
        .after_if_on(Hook::ConversationStarted, &id, || json!({ "convId": id }));
    if !room {
        let others: Vec<String> = info
            .members
            .iter()
            .filter(|m| **m != caller.client)
            .cloned()
            .collect();
        hub.registry.notify(
            others.iter().map(String::as_str),
            Event::Invited {
                conv: info.id,
                by: caller.client.clone(),
            },
        );
    }
    Ok(info)
}

pub fn get(hub: &Hub, caller: &Caller, conv: ConvId) -> Result<ConversationInfo, ErrorBody> {
    let c = lookup(hub, conv)?;
    {
        let st = c.state.read();
        if st.rec.kind == ConvKind::Normal && !st.is_member(&caller.client) {
            return Err(not_member(conv));
        }
    }
    Ok(c.info(&caller.client))
}

/// The caller's stored conversations, most recently active first.
pub fn list(hub: &Hub, caller: &Caller, limit: u32) -> Result<Vec<ConversationInfo>, ErrorBody> {
    let mut out: Vec<ConversationInfo> = hub
        .store
        .memberships_of(&caller.client)?
        .into_iter()
        .filter_map(|id| hub.convs.get(&id))
        .map(|c| c.info(&caller.client))
        .collect();
    out.sort_by_key(|i| std::cmp::Reverse(i.last_message_at.unwrap_or(i.updated_at)));
    out.truncate(limit.clamp(1, 1000) as usize);
    Ok(out)
}

/// Applies a member-set change under the lock and persists it, keeping the
/// unique index pointing at the current member set.
fn change_members(
    hub: &Hub,
    conv: &Conv,
    add: &[String],
    remove: &[String],
) -> Result<(Vec<String>, Vec<String>), ErrorBody> {
    let mut st = conv.state.write();
    let old_key = st.rec.unique.then(|| unique_key(&st.rec.members));
    let added: Vec<String> = add
        .iter()
        .filter(|m| !st.rec.members.contains(m))
        .cloned()
        .collect();
    let removed: Vec<String> = remove
        .iter()
        .filter(|m| st.rec.members.contains(m))
        .cloned()
        .collect();
    let mut members = st.rec.members.clone();
    members.extend(added.iter().cloned());
    members.retain(|m| !removed.contains(m));
    let members = sorted_unique(members);
    if members.len() > hub.config.limits.max_members as usize {
        return Err(err(
            ErrorCode::ConvFull,
            format!("more than {} members", hub.config.limits.max_members),
        ));
    }
    st.rec.members = members;
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
fn room_for_one_more(hub: &Hub, client: &str) -> Result<(), ErrorBody> {
    hub.guard
        .one_more_conversation(client, |cap| hub.store.membership_count(client, cap))
}

pub async fn join(hub: &Hub, caller: &Caller, conv: ConvId) -> Result<(), ErrorBody> {
    let c = lookup(hub, conv)?;
    let me = std::slice::from_ref(&caller.client);
    member_hook(hub, Hook::ConversationAdd, caller, conv, me).await?;
    let kind = c.state.read().rec.kind;
    if kind == ConvKind::ChatRoom {
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

pub async fn leave(hub: &Hub, caller: &Caller, conv: ConvId) -> Result<(), ErrorBody> {
    let c = lookup(hub, conv)?;
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
    after_members(hub, Hook::ConversationRemoved, caller, conv, &removed);
    notify_members(
        hub,
        &c,
        Event::MembersLeft {
            conv,
            members: removed,
            by: caller.client.clone(),
        },
    );
    Ok(())
}

/// The `attr` a conversation hook sees: LeanCloud keeps the name among the
/// attributes, so it is merged in as `name`.
pub(crate) fn hook_attr(name: &Option<String>, attr: &Option<String>) -> Value {
    let mut obj: Map<String, Value> = attr
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_default();
    if let Some(n) = name {
        obj.insert("name".into(), Value::String(n.clone()));
    }
    Value::Object(obj)
}

/// Reads a hook's replacement `attr` back: `name` is the name, the rest the
/// custom attributes (kept only if the request set them or the hook added some).
fn split_hook_attr(
    changed: &Map<String, Value>,
    had_attr: bool,
) -> Result<(Option<String>, Option<String>), ErrorBody> {
    let mut rest = changed.clone();
    let name = match rest.remove("name") {
        Some(Value::String(n)) => Some(n),
        _ => None,
    };
    let attr = (had_attr || !rest.is_empty()).then(|| Value::Object(rest).to_string());
    check_name(&name)?;
    Ok((name, attr))
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

/// Tells every current member (online room members, for chat rooms).
fn notify_members(hub: &Hub, c: &Conv, ev: Event) {
    let audience = c.state.read().audience();
    hub.registry.notify(audience.iter().map(String::as_str), ev);
}

fn require_admin(c: &Conv, caller: &Caller) -> Result<(), ErrorBody> {
    let st = c.state.read();
    if !st.is_member(&caller.client) {
        return Err(not_member(c.id));
    }
    if !st.is_admin(&caller.client) {
        return Err(err(
            ErrorCode::NeedOwner,
            "only the owner or a manager may do this",
        ));
    }
    Ok(())
}

fn stored_kind(c: &Conv) -> Result<(), ErrorBody> {
    if c.state.read().rec.kind == ConvKind::ChatRoom {
        return Err(err(
            ErrorCode::ConvApiFailed,
            "chat rooms have no stored members: clients join and leave themselves",
        ));
    }
    Ok(())
}

pub async fn add_members(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    members: Vec<String>,
) -> Result<(), ErrorBody> {
    check_ids(&members)?;
    let c = lookup(hub, conv)?;
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
) -> Result<(), ErrorBody> {
    let c = lookup(hub, conv)?;
    stored_kind(&c)?;
    require_admin(&c, caller)?;
    if members.contains(&c.state.read().rec.creator) {
        return Err(err(ErrorCode::ConvApiFailed, "the owner cannot be removed"));
    }
    member_hook(hub, Hook::ConversationRemove, caller, conv, &members).await?;
    let (_, removed) = change_members(hub, &c, &[], &members)?;
    hub.pipeline.barrier().await?;
    after_members(hub, Hook::ConversationRemoved, caller, conv, &removed);
    if !removed.is_empty() {
        hub.registry.notify(
            removed.iter().map(String::as_str),
            Event::Kicked {
                conv,
                by: caller.client.clone(),
            },
        );
        notify_members(
            hub,
            &c,
            Event::MembersLeft {
                conv,
                members: removed,
                by: caller.client.clone(),
            },
        );
    }
    Ok(())
}

pub async fn update(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    name: Option<String>,
    attr: Option<String>,
) -> Result<(), ErrorBody> {
    check_attr(&attr)?;
    check_name(&name)?;
    let c = lookup(hub, conv)?;
    if !c.state.read().is_member(&caller.client) {
        return Err(not_member(conv));
    }
    let result = hub
        .hooks.check_before(Hook::ConversationUpdate, || {
            json!({ "initBy": caller.client, "convId": conv.to_string(), "attr": hook_attr(&name, &attr) })
        })
        .await?;
    let (name, attr) = match result.get("attr") {
        Some(Value::Object(changed)) => split_hook_attr(changed, attr.is_some())?,
        _ => (name, attr),
    };
    let audience = {
        let mut st = c.state.write();
        if !st.is_member(&caller.client) {
            return Err(not_member(conv));
        }
        if let Some(n) = &name {
            st.rec.name = Some(n.clone());
        }
        if let Some(a) = &attr {
            st.rec.attr = Some(a.clone());
        }
        st.rec.updated_at = now_ms();
        hub.store.put_conversation(&st.rec)?;
        st.audience()
    };
    hub.pipeline.barrier().await?;
    let id = conv.to_string();
    hub.hooks.after_if_on(Hook::ConversationUpdated, &id, || {
        json!({
            "convId": id,
            "initBy": caller.client,
            "attr": hook_attr(&name, &attr),
            "members": audience,
        })
    });
    hub.registry.notify(
        audience.iter().map(String::as_str),
        Event::ConversationUpdated {
            conv,
            by: caller.client.clone(),
            name,
            attr,
        },
    );
    Ok(())
}

pub async fn set_managers(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    add: Vec<String>,
    remove: Vec<String>,
) -> Result<(), ErrorBody> {
    let c = lookup(hub, conv)?;
    stored_kind(&c)?;
    {
        let mut st = c.state.write();
        if st.rec.creator != caller.client {
            return Err(err(
                ErrorCode::NeedOwner,
                "only the owner may change managers",
            ));
        }
        if let Some(outsider) = add.iter().find(|m| !st.is_member(m)) {
            return Err(err(
                ErrorCode::ConvApiFailed,
                format!("{outsider} is not a member"),
            ));
        }
        let mut managers = st.rec.managers.clone();
        managers.extend(add);
        managers.retain(|m| !remove.contains(m));
        st.rec.managers = sorted_unique(managers);
        st.rec.updated_at = now_ms();
        hub.store.put_conversation(&st.rec)?;
    }
    hub.pipeline.barrier().await?;
    Ok(())
}

pub async fn set_muted(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    muted: bool,
) -> Result<(), ErrorBody> {
    let c = lookup(hub, conv)?;
    if !c.state.read().is_member(&caller.client) {
        return Err(not_member(conv));
    }
    // LeanCloud sends mute alone (never with attr) and reads only mute back.
    let result = hub
        .hooks
        .check_before(
            Hook::ConversationUpdate,
            || json!({ "initBy": caller.client, "convId": conv.to_string(), "mute": muted }),
        )
        .await?;
    let muted = result.get("mute").and_then(Value::as_bool).unwrap_or(muted);
    let members = {
        let mut st = c.state.write();
        if !st.is_member(&caller.client) {
            return Err(not_member(conv));
        }
        let me = &caller.client;
        let has = st.rec.muted.contains(me);
        if has == muted {
            return Ok(());
        }
        if muted {
            st.rec.muted.push(me.clone());
        } else {
            st.rec.muted.retain(|m| m != me);
        }
        hub.store.put_conversation(&st.rec)?;
        st.audience()
    };
    hub.pipeline.barrier().await?;
    let id = conv.to_string();
    hub.hooks.after_if_on(
        Hook::ConversationUpdated,
        &id,
        || json!({ "convId": id, "initBy": caller.client, "mute": muted, "members": members }),
    );
    Ok(())
}

/// Deletes a conversation with its history: its owner or a manager. System
/// conversations belong to the app and go through the admin API.
pub async fn delete(hub: &Hub, caller: &Caller, conv: ConvId) -> Result<(), ErrorBody> {
    let c = lookup(hub, conv)?;
    let rec = {
        let st = c.state.read();
        match st.rec.kind {
            ConvKind::System => {
                return Err(err(
                    ErrorCode::ConvApiFailed,
                    "system conversations are deleted through the admin API",
                ));
            }
            ConvKind::Normal if !st.is_member(&caller.client) => return Err(not_member(conv)),
            _ => {}
        }
        if !st.is_admin(&caller.client) {
            return Err(err(
                ErrorCode::NeedOwner,
                "only the owner or a manager may delete a conversation",
            ));
        }
        st.rec.clone()
    };
    let audience = c.state.read().audience();
    // From here on the commit thread refuses this conversation's writes.
    c.mark_deleted();
    hub.convs.remove(&conv);
    for m in &rec.members {
        hub.store.remove_membership(m, conv)?;
    }
    if rec.unique {
        let key = unique_key(&rec.members);
        if hub.store.unique_get(&key)? == Some(conv) {
            hub.store.unique_remove(&key)?;
        }
    }
    hub.store.remove_conversation(conv)?;
    for m in c.state.read().room.iter() {
        hub.registry.leave_room(m, conv);
    }
    // Everything queued before the delete is written; then the log goes.
    hub.pipeline.barrier().await?;
    let store = hub.store.clone();
    let removed = tokio::task::spawn_blocking(move || store.remove_log(conv))
        .await
        .map_err(|e| err(ErrorCode::InternalError, format!("history removal: {e}")))??;
    hub.pipeline.barrier().await?;
    tracing::info!(%conv, by = %caller.client, messages = removed, "conversation deleted");
    hub.registry.notify(
        audience.iter().map(String::as_str),
        Event::ConversationDeleted {
            conv,
            by: caller.client.clone(),
        },
    );
    let id = conv.to_string();
    hub.hooks.after_if_on(Hook::ConversationDeleted, &id, || {
        json!({
            "convId": id,
            "deletedBy": caller.client,
            "members": rec.members,
            "attr": hook_attr(&rec.name, &rec.attr),
        })
    });
    Ok(())
}
