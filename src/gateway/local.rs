//! Commands the door answers itself, off the session engine: reads that
//! are LeanCloud's shape over Tidings' state (conversation queries with a
//! `where`, chat-room counts, who is online) and token refreshes. They
//! run in a task of their own and answer through the client's outlet.

use std::sync::Arc;

use super::inbound::Local;
use super::outbound;
use super::peer::Peer;
use super::proto::{
    CommandType, ConvCommand, GenericCommand, JsonObjectMessage, OpType, SessionCommand,
};
use super::query::Query;
use crate::hub::Hub;
use crate::protocol::{ConvId, ConvKind, ErrorBody};

/// The most conversations one query looks at (LeanCloud's own limit on a
/// page).
const MOST: u32 = 1000;

pub(super) async fn answer(hub: Arc<Hub>, peer: Arc<Peer>, i: Option<i32>, local: Local) {
    let result = match local {
        Local::Query(c) => query(&hub, &peer, c).map(|rows| GenericCommand {
            conv_message: Some(ConvCommand {
                results: Some(JsonObjectMessage { data: rows }),
                ..Default::default()
            }),
            ..outbound::command(CommandType::Conv, Some(OpType::Results), i)
        }),
        Local::Count(conv) => count(&hub, conv).map(|n| {
            conv_answer(
                i,
                OpType::Result,
                ConvCommand {
                    count: Some(i32::try_from(n).unwrap_or(i32::MAX)),
                    ..Default::default()
                },
            )
        }),
        Local::Members(conv) => online_members(&hub, conv).map(|m| {
            conv_answer(
                i,
                OpType::Result,
                ConvCommand {
                    m,
                    ..Default::default()
                },
            )
        }),
        Local::IsMember(conv) => is_member(&hub, &peer.client, conv).map(|yes| {
            conv_answer(
                i,
                OpType::IsMember,
                ConvCommand {
                    results: Some(JsonObjectMessage {
                        data: serde_json::json!({ conv.to_string(): yes }).to_string(),
                    }),
                    ..Default::default()
                },
            )
        }),
        Local::Online(ids) => Ok(GenericCommand {
            session_message: Some(SessionCommand {
                online_session_peer_ids: ids
                    .into_iter()
                    .take(20)
                    .filter(|c| hub.registry.is_online(c))
                    .collect(),
                ..Default::default()
            }),
            ..outbound::command(CommandType::Session, Some(OpType::QueryResult), i)
        }),
        Local::Refresh => {
            let token = peer.issue_token();
            Ok(outbound::session_token(
                i,
                OpType::Refreshed,
                &peer.client,
                &token,
                peer.tokens().ttl_secs(),
            ))
        }
    };
    match result {
        Ok(cmd) => peer.send(&cmd),
        Err(e) => peer.send(&outbound::error(i, &e)),
    }
}

fn conv_answer(i: Option<i32>, op: OpType, c: ConvCommand) -> GenericCommand {
    GenericCommand {
        conv_message: Some(c),
        ..outbound::command(CommandType::Conv, Some(op), i)
    }
}

/// `conv/query`: the conversations a `where` pins by id (any the client
/// may see, chat rooms included), or else the client's own, filtered,
/// sorted and paged as LeanCloud does; rows as `_Conversation` JSON.
fn query(hub: &Hub, peer: &Peer, c: Box<ConvCommand>) -> Result<String, ErrorBody> {
    let client = peer.client.as_str();
    let q = Query::parse(
        c.r#where.as_ref().map(|w| w.data.as_str()),
        c.sort.as_deref(),
        c.limit,
        c.skip,
        c.flag,
    )?;
    let who = peer.caller();
    let by_ids = |ids: &[String]| {
        ids.iter()
            .filter_map(|id| id.parse::<ConvId>().ok())
            .filter_map(|id| by_id(hub, client, id))
            .collect()
    };
    let infos = match (q.pinned_ids(), c.temp_conv_ids.is_empty()) {
        (Some(ids), _) => by_ids(&ids),
        // The SDKs fetch temporary conversations by id only (`_tmp:` ids).
        (None, false) => by_ids(&c.temp_conv_ids),
        // LeanCloud keeps temporary conversations out of `_Conversation`,
        // so a query over the client's own does not list them.
        (None, true) => {
            let mut mine = crate::conversation::ops::list(hub, &who, MOST)?;
            mine.retain(|i| i.kind != ConvKind::Temporary);
            mine
        }
    };
    // Filtered on whole rows, then only the page is rendered as asked
    // (compact, with last messages).
    let rows = q.run(&infos, client, |info| {
        crate::message::last_visible(hub, info.id, client)
    })?;
    Ok(serde_json::Value::Array(rows).to_string())
}

/// A conversation named by its id: LeanCloud's SDKs join a conversation
/// by fetching it first (`getConversation(id).then(c => c.join())`), so a
/// client may see any live one it could join. The QUIC door's
/// `GetConversation` answers members only; both let anyone join by id
/// (LeanCloud's behaviour without conversation signatures).
fn by_id(hub: &Hub, client: &str, id: ConvId) -> Option<crate::protocol::ConversationInfo> {
    // With signatures on it is still visible: the join is what the app's
    // signature gates, as on LeanCloud (the SDK fetches, then joins).
    hub.convs.live(id).ok().map(|c| c.info(client))
}

fn room(hub: &Hub, conv: ConvId) -> Result<Arc<crate::core::conversation::Conv>, ErrorBody> {
    hub.convs.live(conv)
}

/// `conv/count`: a chat room's online members, else the member count.
fn count(hub: &Hub, conv: ConvId) -> Result<usize, ErrorBody> {
    let c = room(hub, conv)?;
    let st = c.state.read();
    Ok(if st.rec.kind == ConvKind::ChatRoom {
        st.room.len()
    } else {
        st.rec.members.len()
    })
}

/// `conv/members`: a chat room's online members (Swift), else the members.
fn online_members(hub: &Hub, conv: ConvId) -> Result<Vec<String>, ErrorBody> {
    let c = room(hub, conv)?;
    let st = c.state.read();
    Ok(if st.rec.kind == ConvKind::ChatRoom {
        st.room.iter().take(MOST as usize).cloned().collect()
    } else {
        st.rec.members.iter().take(MOST as usize).cloned().collect()
    })
}

/// `conv/is_member`: whether the client subscribes to a service conversation.
fn is_member(hub: &Hub, client: &str, conv: ConvId) -> Result<bool, ErrorBody> {
    Ok(room(hub, conv)?.state.read().is_member(client))
}
