//! The command table: each request a logged-in client makes, to the
//! feature that answers it (mini-redis's `cmd/`). Sends and logouts are the
//! engine's own (a send lane, the close); everything else is answered here.

use crate::conversation::moderation_ops as mod_ops;
use crate::conversation::ops as conv_ops;
use crate::core::Caller;
use crate::core::moderation::List;
use crate::hub::Hub;
use crate::message;
use crate::protocol::{Command, ErrorBody, ErrorCode, Reply, SendMessage};

/// What a command comes to.
pub(super) enum Dispatched {
    /// Answer the request with this.
    Reply(Result<Reply, ErrorBody>),
    /// Queue it on the conversation's send lane.
    Send(SendMessage),
    /// Answer Ok, drain, and close as a logout.
    Logout,
}

pub(super) async fn dispatch(hub: &Hub, caller: &Caller, cmd: Command) -> Dispatched {
    let ok = |r: Result<(), ErrorBody>| r.map(|()| Reply::Ok);
    let result = match cmd {
        Command::Login(_) => Err(ErrorBody::new(
            ErrorCode::DuplicatedLogin,
            "already logged in",
        )),
        Command::Logout => return Dispatched::Logout,
        Command::Send(m) => return Dispatched::Send(m),
        Command::CreateConversation(c) => conv_ops::create(hub, caller, c)
            .await
            .map(Reply::Conversation),
        Command::GetConversation { conv } => {
            conv_ops::get(hub, caller, conv).map(Reply::Conversation)
        }
        Command::ListConversations { limit } => {
            conv_ops::list(hub, caller, limit).map(Reply::Conversations)
        }
        Command::Join { conv } => ok(conv_ops::join(hub, caller, conv).await),
        Command::Leave { conv } => ok(conv_ops::leave(hub, caller, conv).await),
        Command::AddMembers { conv, members } => {
            ok(conv_ops::add_members(hub, caller, conv, members).await)
        }
        Command::RemoveMembers { conv, members } => {
            ok(conv_ops::remove_members(hub, caller, conv, members).await)
        }
        Command::UpdateConversation { conv, name, attr } => {
            ok(conv_ops::update(hub, caller, conv, name, attr).await)
        }
        Command::SetManagers { conv, add, remove } => {
            ok(conv_ops::set_managers(hub, caller, conv, add, remove).await)
        }
        Command::Mute { conv } => ok(conv_ops::set_muted(hub, caller, conv, true).await),
        Command::Unmute { conv } => ok(conv_ops::set_muted(hub, caller, conv, false).await),
        Command::Read { conv, seq } => message::read(hub, caller, conv, seq),
        Command::History(q) => message::history(hub, caller, q),
        Command::EditMessage(e) => message::patch::edit(hub, caller, e).await,
        Command::RecallMessage { conv, msg_id } => {
            message::patch::recall(hub, caller, conv, &msg_id).await
        }
        Command::DeleteMessage { conv, msg_id } => {
            message::patch::delete(hub, caller, conv, &msg_id).await
        }
        Command::DeleteConversation { conv } => ok(conv_ops::delete(hub, caller, conv).await),
        Command::Receipts { conv } => message::receipts::query(hub, caller, conv),
        Command::ClearWill => {
            message::will::clear(hub, caller);
            Ok(Reply::Ok)
        }
        Command::AddShutup { conv, members } => {
            mod_ops::add_shutup(hub, caller, conv, members).await
        }
        Command::RemoveShutup { conv, members } => {
            mod_ops::remove_shutup(hub, caller, conv, members).await
        }
        Command::QueryShutup { conv, limit, next } => {
            mod_ops::page(hub, caller, conv, List::Shutup, limit, next)
        }
        Command::CheckShutup { conv, members } => {
            mod_ops::check(hub, caller, conv, List::Shutup, &members)
        }
        Command::Block { conv, members } => mod_ops::block(hub, caller, conv, members).await,
        Command::Unblock { conv, members } => mod_ops::unblock(hub, caller, conv, members).await,
        Command::QueryBlocked { conv, limit, next } => {
            mod_ops::page(hub, caller, conv, List::Blocked, limit, next)
        }
        Command::CheckBlocked { conv, members } => {
            mod_ops::check(hub, caller, conv, List::Blocked, &members)
        }
        Command::SetMemberRole { conv, member, role } => {
            ok(mod_ops::set_member_role(hub, caller, conv, member, role).await)
        }
        Command::MemberRoles { conv } => mod_ops::member_roles(hub, caller, conv),
    };
    Dispatched::Reply(result)
}
