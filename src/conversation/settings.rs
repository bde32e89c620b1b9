//! A conversation's settings: `update` (name and attributes, through
//! `_conversationUpdate`), `set_managers` (which every role change goes
//! through, and which tells the members `MemberInfoChanged`) and `set_muted`.

use serde_json::{Map, Value, json};

use super::{changeable, hook_attr, not_member, stored_kind};
use crate::core::Caller;
use crate::core::conversation::sorted_unique;
use crate::core::validate::{self, err};
use crate::hooks::Hook;
use crate::hub::Hub;
use crate::protocol::{ConvId, ErrorBody, ErrorCode, Event, MemberRole};
use crate::util::now_ms;

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
    validate::name(&name)?;
    Ok((name, attr))
}

pub async fn update(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    name: Option<String>,
    attr: Option<String>,
) -> Result<(), ErrorBody> {
    validate::attr(&attr)?;
    validate::name(&name)?;
    let c = hub.convs.live(conv)?;
    if !c.state.read().is_member(&caller.client) {
        return Err(not_member(conv));
    }
    changeable(&c)?;
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
    let c = hub.convs.live(conv)?;
    stored_kind(&c)?;
    changeable(&c)?;
    let (promoted, demoted, audience) = {
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
        let old = st.rec.managers.clone();
        let mut managers = old.clone();
        managers.extend(add);
        managers.retain(|m| !remove.contains(m));
        // The owner's role is Owner whatever this list says.
        let creator = st.rec.creator.clone();
        managers.retain(|m| *m != creator);
        let managers = sorted_unique(managers);
        let promoted: Vec<String> = managers
            .iter()
            .filter(|m| !old.contains(m))
            .cloned()
            .collect();
        let demoted: Vec<String> = old
            .iter()
            .filter(|m| !managers.contains(m))
            .cloned()
            .collect();
        st.rec.managers = managers;
        st.rec.updated_at = now_ms();
        hub.store.put_conversation(&st.rec)?;
        (promoted, demoted, st.audience())
    };
    hub.pipeline.barrier().await?;
    // LeanCloud's `member_info_changed`, one per member whose role moved.
    let changes = promoted
        .into_iter()
        .map(|m| (m, MemberRole::Manager))
        .chain(demoted.into_iter().map(|m| (m, MemberRole::Member)));
    for (member, role) in changes {
        let ev = Event::MemberInfoChanged {
            conv,
            member,
            role,
            by: caller.client.clone(),
        };
        hub.registry.notify(audience.iter().map(String::as_str), ev);
    }
    Ok(())
}

pub async fn set_muted(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    muted: bool,
) -> Result<(), ErrorBody> {
    let c = hub.convs.live(conv)?;
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
