//! Conversation commands: create, members, settings, delete, and the
//! system (service) conversations the app runs. The table and its rules
//! are [`crate::core::conversation`]; the input checks are
//! [`crate::core::validate`].
//!
//! One file per command group, as mini-redis's `cmd/`. Each command checks
//! membership and role, changes the record under the conversation's lock,
//! persists it, waits for durability, then tells the online members.

mod blacklist;
mod create;
mod delete;
pub mod expire;
mod members;
pub(crate) mod moderation;
mod query;
mod roles;
mod settings;
mod shutup;
pub mod system;

use serde_json::{Map, Value};

use crate::auth::{ConvAction, ConvOp};
use crate::core::Caller;
use crate::core::conversation::Conv;
use crate::core::validate::err;
use crate::hub::Hub;
use crate::protocol::{ConvId, ConvKind, ErrorBody, ErrorCode, Event, OpSignature};

/// The commands by their old single-file path, which sessions call.
pub mod ops {
    pub use super::check_signature;
    pub use super::create::create;
    pub use super::delete::delete;
    pub(crate) use super::hook_attr;
    pub use super::members::{add_members, join, leave, remove_members};
    pub use super::query::{get, list};
    pub use super::settings::{set_managers, set_muted, update};
}

/// Moderation: member mute ("shutup"), the blacklist and member roles,
/// as LeanCloud has them. Both doors call these.
pub mod moderation_ops {
    pub use super::blacklist::{block, unblock};
    pub use super::moderation::{check, page};
    pub use super::roles::{roles as member_roles, set_member_role};
    pub use super::shutup::{add as add_shutup, remove as remove_shutup};
}

/// The operation's signature when `auth.conversation_signatures` (or, for
/// blacklists, `auth.blacklist_signatures`) asks for one: 4302 otherwise.
/// `members` is the list as the client sent it; `conv` is `None` for a
/// create. Commands check it before anything else, so an unsigned caller
/// learns nothing about the conversation, and before the hooks, which
/// LeanCloud calls "after the signature validation".
pub fn check_signature(
    hub: &Hub,
    caller: &Caller,
    conv: Option<ConvId>,
    members: &[String],
    action: ConvAction,
    sig: Option<&OpSignature>,
) -> Result<(), ErrorBody> {
    let id = conv.map(|c| c.to_string());
    let op = ConvOp {
        client_id: &caller.client,
        conv: id.as_deref(),
        members,
        action,
    };
    hub.auth
        .check_conversation_op(&op, sig, crate::util::now_ms())
}

fn not_member(conv: ConvId) -> ErrorBody {
    err(
        ErrorCode::InvalidMessagingTarget,
        format!("not a member of {conv}"),
    )
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

/// 4314 for a temporary conversation: its members and attributes are
/// fixed at creation, as LeanCloud's (whose SDKs offer no way to change
/// them).
fn changeable(c: &Conv) -> Result<(), ErrorBody> {
    if c.state.read().rec.kind == ConvKind::Temporary {
        return Err(err(
            ErrorCode::NormalConvRequired,
            "a temporary conversation's members and attributes are fixed",
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
