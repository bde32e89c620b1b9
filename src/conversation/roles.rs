//! Member roles (LeanCloud's `member_info_update` and
//! `_ConversationMemberInfo`): Owner is the creator, Manager is the
//! record's managers list, Member everyone else. A role update is an edit
//! of that list through [`super::settings::set_managers`], so both doors
//! and `SetManagers` share one rule and one event (`MemberInfoChanged`).

use super::not_member;
use crate::core::Caller;
use crate::core::moderation::{check_role_update, member_roles};
use crate::core::validate::{self, err};
use crate::hub::Hub;
use crate::protocol::{ConvId, ConvKind, ErrorBody, ErrorCode, MemberRole, Reply};

/// Makes `member` a manager or a plain member; the owner only (4324 from
/// the managers edit). Owner is refused (5130) and the owner's own role
/// never changes (4308).
pub async fn set_member_role(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    member: String,
    role: MemberRole,
) -> Result<(), ErrorBody> {
    validate::client_ids(std::slice::from_ref(&member))?;
    let c = hub.convs.live(conv)?;
    {
        let st = c.state.read();
        check_role_update(&st.rec, &member, role)?;
        if !st.is_member(&member) {
            return Err(err(
                ErrorCode::ConvApiFailed,
                format!("{member} is not a member"),
            ));
        }
    }
    // Owner was refused above.
    let (add, remove) = if role == MemberRole::Manager {
        (vec![member], Vec::new())
    } else {
        (Vec::new(), vec![member])
    };
    super::settings::set_managers(hub, caller, conv, add, remove).await
}

/// Every member with its role: the owner, managers, then members. Members
/// only, except in a chat room (whose members come and go).
pub fn roles(hub: &Hub, caller: &Caller, conv: ConvId) -> Result<Reply, ErrorBody> {
    let c = hub.convs.live(conv)?;
    let st = c.state.read();
    if st.rec.kind != ConvKind::ChatRoom && !st.is_member(&caller.client) {
        return Err(not_member(conv));
    }
    Ok(Reply::MemberRoles {
        members: member_roles(&st),
    })
}
