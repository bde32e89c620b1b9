//! `delete`: a conversation and its history, by its owner or a manager.

use serde_json::json;

use super::{hook_attr, not_member};
use crate::core::Caller;
use crate::core::conversation::Conv;
use crate::core::conversation::unique_key;
use crate::core::validate::err;
use crate::hooks::Hook;
use crate::hub::Hub;
use crate::protocol::{ConvId, ConvKind, ErrorBody, ErrorCode, Event};
use crate::store::ConversationRecord;

/// Deletes a conversation with its history: its owner or a manager. System
/// conversations belong to the app and go through the admin API.
pub async fn delete(hub: &Hub, caller: &Caller, conv: ConvId) -> Result<(), ErrorBody> {
    let c = hub.convs.live(conv)?;
    let rec = {
        let st = c.state.read();
        match st.rec.kind {
            ConvKind::System => {
                return Err(err(
                    ErrorCode::ConvApiFailed,
                    "system conversations are deleted through the admin API",
                ));
            }
            ConvKind::Normal | ConvKind::Temporary if !st.is_member(&caller.client) => {
                return Err(not_member(conv));
            }
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
    let removed = remove(hub, &c, &rec).await?;
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

/// Removes a conversation from the table and the store, its history
/// last; how many messages went. Also the expiry of temporary ones.
pub(super) async fn remove(
    hub: &Hub,
    c: &Conv,
    rec: &ConversationRecord,
) -> Result<u64, ErrorBody> {
    let conv = rec.id;
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
    hub.store.remove_moderation_of(conv)?;
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
    Ok(removed)
}
