//! Edit and recall of a sent message: `PUT …/{id}/messages/{mid}` and
//! `PUT …/{id}/messages/{mid}/recall`, under `/1.2/rtm/service-conversations`
//! (system conversations only) and `/1.2/rtm/conversations` (any kind).

use axum::Json;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Served;
use super::error::{ApiResult, Body, Segments, conv_id};
use crate::conversation::system;
use crate::message::patch;
use crate::protocol::Content;
use crate::store::LogEntry;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditReq {
    /// The message's sender.
    from_client: String,
    /// The new content, replacing the old whole (typed messages: JSON text).
    message: String,
    /// The message's own timestamp; checked when given.
    timestamp: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecallReq {
    from_client: String,
    timestamp: Option<u64>,
}

/// `{"msg-id", "timestamp", "patch-timestamp"}` once the change is durable.
fn changed(e: &LogEntry) -> Json<Value> {
    Json(json!({
        "msg-id": e.msg.msg_id,
        "timestamp": e.msg.timestamp,
        "patch-timestamp": e.msg.updated_at,
    }))
}

async fn change(
    st: &super::Target,
    (id, mid): (String, String),
    system_only: bool,
    from: String,
    timestamp: Option<u64>,
    edit: Option<Content>,
) -> ApiResult<Json<Value>> {
    let id = conv_id(&id)?;
    if system_only {
        system::lookup(st.hub(), id)?;
    }
    let e = patch::by_app(st.hub(), id, &mid, &from, timestamp, edit).await?;
    Ok(changed(&e))
}

pub async fn edit_service(
    Served(st): Served,
    Segments(path): Segments<(String, String)>,
    Body(req): Body<EditReq>,
) -> ApiResult<Json<Value>> {
    let content = Some(Content::Text(req.message));
    change(&st, path, true, req.from_client, req.timestamp, content).await
}

pub async fn recall_service(
    Served(st): Served,
    Segments(path): Segments<(String, String)>,
    Body(req): Body<RecallReq>,
) -> ApiResult<Json<Value>> {
    change(&st, path, true, req.from_client, req.timestamp, None).await
}

pub async fn edit(
    Served(st): Served,
    Segments(path): Segments<(String, String)>,
    Body(req): Body<EditReq>,
) -> ApiResult<Json<Value>> {
    let content = Some(Content::Text(req.message));
    change(&st, path, false, req.from_client, req.timestamp, content).await
}

pub async fn recall(
    Served(st): Served,
    Segments(path): Segments<(String, String)>,
    Body(req): Body<RecallReq>,
) -> ApiResult<Json<Value>> {
    change(&st, path, false, req.from_client, req.timestamp, None).await
}
