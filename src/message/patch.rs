//! Changing sent messages: edit and recall (the sender only, each behind a
//! config switch, through `_messageUpdate`, then `_messageUpdated`, Skygear's
//! `after_message_updated`), and delete (the sender or a conversation
//! manager; Skygear's `after_message_deleted`).

use serde_json::json;

use super::hooks::{content_params, replace_content, to_peers_of};
use super::{check_content, check_mentions, filter_content, member_conv};
use crate::core::Caller;
use crate::core::conversation::Conv;
use crate::core::ordering::{Change, PatchDraft};
use crate::core::outbound::Outbound;
use crate::core::validate::err;
use crate::hooks::Hook;
use crate::hub::Hub;
use crate::protocol::{
    Content, ConvId, ConvKind, EditMessage, ErrorBody, ErrorCode, Event, Reply, parse_msg_id,
};
use crate::store::LogEntry;

/// The stored message `msg_id` names in `conv`, if it is still there.
fn target(hub: &Hub, conv: ConvId, msg_id: &str) -> Result<LogEntry, ErrorBody> {
    let missing = || {
        err(
            ErrorCode::MessageNotFound,
            format!("no message {msg_id} in {conv}"),
        )
    };
    let (c, seq) = parse_msg_id(msg_id)
        .filter(|(c, _)| *c == conv)
        .ok_or_else(missing)?;
    let e = hub.store.message(c, seq)?.ok_or_else(missing)?;
    if e.deleted {
        return Err(missing());
    }
    Ok(e)
}

fn own(e: &LogEntry, caller: &Caller) -> Result<(), ErrorBody> {
    own_by(e, &caller.client)
}

fn own_by(e: &LogEntry, by: &str) -> Result<(), ErrorBody> {
    if e.msg.from != by {
        return Err(err(
            ErrorCode::OwnershipRequired,
            "only the sender may change a message",
        ));
    }
    if e.msg.recalled {
        return Err(err(ErrorCode::MessageNotFound, "the message was recalled"));
    }
    Ok(())
}

/// `_messageUpdate`: may drop the change (4405 or the hook's code), replace
/// an edit's content, or narrow who hears about it.
async fn update_hook(
    hub: &Hub,
    caller: &Caller,
    e: &LogEntry,
    content: &mut Content,
    recall: bool,
) -> Result<(Option<Vec<String>>, Option<crate::protocol::Reason>), ErrorBody> {
    let conv = hub
        .convs
        .live(e.msg.conv)
        .map_err(|_| err(ErrorCode::ConvNotFound, "conversation gone"))?;
    let result = hub
        .hooks
        .check_before(Hook::MessageUpdate, || {
            let (kind, mut to_peers) = {
                let st = conv.state.read();
                (st.rec.kind, st.audience())
            };
            to_peers.retain(|p| *p != caller.client && e.reaches(p));
            let (content, bin) = content_params(content);
            json!({
                "fromPeer": caller.client,
                "convId": e.msg.conv.to_string(),
                "toPeers": to_peers,
                "bin": bin,
                "content": content,
                "timestamp": e.msg.timestamp,
                "msgId": e.msg.msg_id,
                "sourceIP": caller.ip,
                "recall": recall,
                "system": kind == ConvKind::System,
            })
        })
        .await?;
    let reason = if recall {
        None
    } else {
        replace_content(Hook::MessageUpdate, &result, content)?
    };
    Ok((to_peers_of(&result), reason))
}

/// Queues the change and waits for it to be durable and announced.
async fn commit(hub: &Hub, draft: PatchDraft) -> Result<LogEntry, ErrorBody> {
    hub.pipeline.patch(draft)?.wait().await
}

/// Tells the caller's own connection why the server or a hook changed its edit.
fn tell_editor(hub: &Hub, caller: &Caller, e: &LogEntry) {
    if let Some(reason) = &e.reason
        && let Some(f) = crate::wire::frame::event(Event::MessageUpdated {
            msg: e.msg.clone().for_receiver(&caller.client),
            reason: Some(reason.clone()),
        })
    {
        hub.registry
            .send_to_conn(&caller.client, caller.conn_id, &Outbound::frame(f));
    }
}

pub async fn edit(hub: &Hub, caller: &Caller, req: EditMessage) -> Result<Reply, ErrorBody> {
    if !hub.config.messages.allow_edit {
        return Err(err(
            ErrorCode::EditDisabled,
            "editing messages is turned off",
        ));
    }
    let conv = member_conv(hub, caller, req.conv)?;
    let e = target(hub, req.conv, &req.msg_id)?;
    own(&e, caller)?;
    check_content(hub, &req.content)?;
    check_mentions(&req.mention_list)?;
    let mut content = req.content;
    let (to_peers, hook_reason) = update_hook(hub, caller, &e, &mut content, false).await?;
    check_content(hub, &content)?;
    let reason = filter_content(hub, &mut content, hook_reason);
    let stored = commit(
        hub,
        PatchDraft {
            conv: conv.clone(),
            seq: e.msg.seq,
            change: Change::Edit {
                content,
                mention_list: req.mention_list,
                mention_all: req.mention_all,
            },
            by: caller.client.clone(),
            sender_only: true,
            origin_conn: caller.conn_id,
            reason,
            to_peers,
        },
    )
    .await?;
    after_updated(hub, &conv, &stored, &caller.client);
    tell_editor(hub, caller, &stored);
    Ok(Reply::Updated {
        msg: stored.msg.for_receiver(&caller.client),
    })
}

pub async fn recall(
    hub: &Hub,
    caller: &Caller,
    conv_id: ConvId,
    msg_id: &str,
) -> Result<Reply, ErrorBody> {
    if !hub.config.messages.allow_recall {
        return Err(err(
            ErrorCode::RecallDisabled,
            "recalling messages is turned off",
        ));
    }
    let conv = member_conv(hub, caller, conv_id)?;
    let e = target(hub, conv_id, msg_id)?;
    own(&e, caller)?;
    let mut content = e.msg.content.clone();
    let (to_peers, _) = update_hook(hub, caller, &e, &mut content, true).await?;
    let stored = commit(
        hub,
        PatchDraft {
            conv: conv.clone(),
            seq: e.msg.seq,
            change: Change::Recall,
            by: caller.client.clone(),
            sender_only: true,
            origin_conn: caller.conn_id,
            reason: None,
            to_peers,
        },
    )
    .await?;
    after_updated(hub, &conv, &stored, &caller.client);
    Ok(Reply::Updated {
        msg: stored.msg.for_receiver(&caller.client),
    })
}

/// `_messageUpdated` (Skygear's `after_message_updated`) once an edit or
/// recall is stored: Skygear's message, conversation and participants, in
/// LeanCloud's flat style (the message's fields, `convId` and the
/// conversation's `attr`, `members`).
fn after_updated(hub: &Hub, conv: &Conv, stored: &LogEntry, by: &str) {
    let key = conv.id.to_string();
    hub.hooks.after_if_on(Hook::MessageUpdated, &key, || {
        let (members, attr) = {
            let st = conv.state.read();
            (
                st.audience(),
                crate::conversation::ops::hook_attr(&st.rec.name, &st.rec.attr),
            )
        };
        let m = &stored.msg;
        let (content, bin) = content_params(&m.content);
        json!({
            "convId": key,
            "msgId": m.msg_id,
            "fromPeer": m.from,
            "updatedBy": by,
            "recall": m.recalled,
            "bin": bin,
            "content": content,
            "mentionList": m.mention_list,
            "mentionAll": m.mention_all,
            "timestamp": m.timestamp,
            "updatedAt": m.updated_at,
            "members": members,
            "attr": attr,
        })
    });
}

pub async fn delete(
    hub: &Hub,
    caller: &Caller,
    conv_id: ConvId,
    msg_id: &str,
) -> Result<Reply, ErrorBody> {
    let conv = member_conv(hub, caller, conv_id)?;
    let e = target(hub, conv_id, msg_id)?;
    let (admin, members) = {
        let st = conv.state.read();
        (st.is_admin(&caller.client), st.audience())
    };
    if e.msg.from != caller.client && !admin {
        return Err(err(
            ErrorCode::OwnershipRequired,
            "only the sender or a conversation manager may delete a message",
        ));
    }
    let stored = commit(
        hub,
        PatchDraft {
            conv,
            seq: e.msg.seq,
            change: Change::Delete,
            by: caller.client.clone(),
            sender_only: false,
            origin_conn: caller.conn_id,
            reason: None,
            to_peers: None,
        },
    )
    .await?;
    let key = conv_id.to_string();
    hub.hooks.after_if_on(Hook::MessageDeleted, &key, || {
        json!({
            "convId": key,
            "msgId": stored.msg.msg_id,
            "fromPeer": e.msg.from,
            "deletedBy": caller.client,
            "timestamp": e.msg.timestamp,
            "deletedAt": stored.msg.updated_at,
            "members": members,
        })
    });
    Ok(Reply::Ok)
}

/// The app's edit (`Some` content) or recall (`None`) through the admin
/// API, in `from`'s name, which must be the sender's. As for the app's
/// sends: no membership, no `_messageUpdate`, no keyword filter, and the
/// client switches (`allow_edit`, `allow_recall`) do not apply. An edit
/// keeps the message's mentions. A `timestamp` that is not the message's
/// is 4404, as a wrong id is.
pub async fn by_app(
    hub: &Hub,
    conv_id: ConvId,
    msg_id: &str,
    from: &str,
    timestamp: Option<u64>,
    edit: Option<Content>,
) -> Result<LogEntry, ErrorBody> {
    let conv = hub.convs.live(conv_id)?;
    let e = target(hub, conv_id, msg_id)?;
    if timestamp.is_some_and(|t| t != e.msg.timestamp) {
        return Err(err(
            ErrorCode::MessageNotFound,
            format!("message {msg_id} was not sent at that timestamp"),
        ));
    }
    own_by(&e, from)?;
    let change = match edit {
        Some(content) => {
            check_content(hub, &content)?;
            Change::Edit {
                content,
                mention_list: e.msg.mention_list.clone(),
                mention_all: e.msg.mention_all,
            }
        }
        None => Change::Recall,
    };
    commit(
        hub,
        PatchDraft {
            conv,
            seq: e.msg.seq,
            change,
            by: from.to_owned(),
            sender_only: true,
            origin_conn: 0,
            reason: None,
            to_peers: None,
        },
    )
    .await
}
