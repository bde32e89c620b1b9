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

/// `SYSTEM`: under `/1.2/rtm/service-conversations`, where only system
/// conversations are found.
async fn change<const SYSTEM: bool>(
    st: &super::Target,
    (id, mid): (String, String),
    from: String,
    timestamp: Option<u64>,
    edit: Option<Content>,
) -> ApiResult<Json<Value>> {
    let id = conv_id(&id)?;
    if SYSTEM {
        system::lookup(st.hub(), id)?;
    }
    let e = patch::by_app(st.hub(), id, &mid, &from, timestamp, edit).await?;
    Ok(changed(&e))
}

pub async fn edit<const SYSTEM: bool>(
    Served(st): Served,
    Segments(path): Segments<(String, String)>,
    Body(req): Body<EditReq>,
) -> ApiResult<Json<Value>> {
    let content = Some(Content::Text(req.message));
    change::<SYSTEM>(&st, path, req.from_client, req.timestamp, content).await
}

pub async fn recall<const SYSTEM: bool>(
    Served(st): Served,
    Segments(path): Segments<(String, String)>,
    Body(req): Body<RecallReq>,
) -> ApiResult<Json<Value>> {
    change::<SYSTEM>(&st, path, req.from_client, req.timestamp, None).await
}
