//! `create`: a new conversation, or the existing one for a unique member set.

use std::sync::Arc;

use serde_json::json;

use super::members::room_for_one_more;
use super::{check_signature, hook_attr};
use crate::auth::ConvAction;
use crate::core::Caller;
use crate::core::conversation::{Conv, sorted_unique, unique_key};
use crate::core::validate::{self, err};
use crate::hooks::Hook;
use crate::hub::Hub;
use crate::protocol::{
    ConvId, ConvKind, ConversationInfo, CreateConversation, ErrorBody, ErrorCode, Event,
};
use crate::store::ConversationRecord;
use crate::util::now_ms;

pub async fn create(
    hub: &Hub,
    caller: &Caller,
    req: CreateConversation,
) -> Result<ConversationInfo, ErrorBody> {
    validate::client_ids(&req.members)?;
    validate::attr(&req.attr)?;
    validate::name(&req.name)?;
    if req.kind == ConvKind::System {
        return Err(err(
            ErrorCode::ConvApiFailed,
            "system conversations are created through the admin API",
        ));
    }
    let sig = req.sig.as_ref();
    check_signature(hub, caller, None, &req.members, ConvAction::Create, sig)?;
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
    let temporary = req.kind == ConvKind::Temporary;
    // A temporary conversation is always a new one (LeanCloud's SDKs send
    // `unique` by default; it means nothing there).
    let unique = req.unique && !room && !temporary;
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
    let id = if temporary {
        temporary_id(hub, now, req.ttl_secs)
    } else {
        ConvId::random()
    };
    let rec = ConversationRecord {
        id,
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
        let _guard = hub.convs.unique_creation();
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

/// A temporary conversation's id: its expiry is `ttl` from `now`, the
/// default when none is asked, at most the configured longest.
fn temporary_id(hub: &Hub, now_ms: u64, ttl: Option<u32>) -> ConvId {
    let l = &hub.config.limits;
    let ttl = ttl
        .unwrap_or(l.temporary_ttl_secs)
        .clamp(1, l.max_temporary_ttl_secs);
    // Rounded up, so a conversation lives at least its whole TTL.
    let now_secs = u32::try_from(now_ms.div_ceil(1000)).unwrap_or(u32::MAX);
    let expires = now_secs.saturating_add(ttl);
    // Four random bytes per expiry second: re-rolled on the rare clash
    // with a live one.
    loop {
        let id = ConvId::temporary(expires);
        if hub.convs.get(&id).is_none() {
            return id;
        }
    }
}
