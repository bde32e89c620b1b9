//! `get` and `list`: what a member may read of conversations.

use crate::core::Caller;
use crate::protocol::{ConvId, ConvKind, ConversationInfo, ErrorBody};

use super::not_member;
use crate::hub::Hub;

pub fn get(hub: &Hub, caller: &Caller, conv: ConvId) -> Result<ConversationInfo, ErrorBody> {
    let c = hub.convs.live(conv)?;
    {
        let st = c.state.read();
        let private = matches!(st.rec.kind, ConvKind::Normal | ConvKind::Temporary);
        if private && !st.is_member(&caller.client) {
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
        // Expired temporary ones are gone already, whatever the sweeper did.
        .filter_map(|id| hub.convs.live(id).ok())
        .map(|c| c.info(&caller.client))
        .collect();
    out.sort_by_key(|i| std::cmp::Reverse(i.last_message_at.unwrap_or(i.updated_at)));
    out.truncate(limit.clamp(1, 1000) as usize);
    Ok(out)
}
