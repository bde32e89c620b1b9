//! Broadcasts: `POST …/service-conversations/{id}/broadcasts` (to the
//! conversation's subscribers), `POST /1.2/rtm/broadcasts` (to every
//! client), `GET /1.2/rtm/broadcasts` (the unexpired ones) and
//! `DELETE /1.2/rtm/broadcasts/{msg_id}`. The rules are
//! [`crate::broadcast`]'s.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::ConnectInfo;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Served;
use super::error::{ApiError, ApiResult, Body, Params, Segments, conv_id};
use super::service::push_payload;
use crate::broadcast::{self, Broadcast, Listed};
use crate::hooks::encode_bin;
use crate::protocol::{Content, ConvId, ErrorBody, ErrorCode};

/// LeanCloud's default page.
const LIST_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceReq {
    from_client: String,
    /// Text; typed messages are JSON text, as on LeanCloud.
    message: String,
    /// A push payload: an object, its JSON text, or an alert text.
    push: Option<Value>,
    /// Ms since the epoch; default and at most a month ahead.
    valid_till: Option<u64>,
}

/// `{"msg-id", "timestamp"}` once stored; the fan-out to the subscribers
/// online goes on in the background.
pub async fn service(
    Served(st): Served,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Segments(id): Segments<String>,
    Body(req): Body<ServiceReq>,
) -> ApiResult<Json<Value>> {
    let b = Broadcast {
        conv: conv_id(&id)?,
        from: req.from_client,
        content: Content::Text(req.message),
        push_data: push_payload(req.push)?,
        valid_till: req.valid_till,
        subscribers_only: true,
        transient: false,
        from_ip: peer.ip().to_string(),
    };
    let sent = broadcast::send(st.hub(), b).await?;
    Ok(Json(
        json!({"msg-id": sent.msg_id, "timestamp": sent.timestamp}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalReq {
    from_client: String,
    /// The system conversation it belongs to (and shows in the history of).
    conv_id: String,
    message: String,
    valid_till: Option<u64>,
    push: Option<Value>,
    #[serde(default)]
    transient: bool,
}

/// `{"msg-id", "timestamp"}`: to every client, online now or at login.
pub async fn global(
    Served(st): Served,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(req): Body<GlobalReq>,
) -> ApiResult<Json<Value>> {
    let b = Broadcast {
        conv: conv_id(&req.conv_id)?,
        from: req.from_client,
        content: Content::Text(req.message),
        push_data: push_payload(req.push)?,
        valid_till: req.valid_till,
        subscribers_only: false,
        transient: req.transient,
        from_ip: peer.ip().to_string(),
    };
    let sent = broadcast::send(st.hub(), b).await?;
    Ok(Json(
        json!({"msg-id": sent.msg_id, "timestamp": sent.timestamp}),
    ))
}

#[derive(Deserialize)]
pub struct ListParams {
    conv_id: Option<String>,
    limit: Option<usize>,
    skip: Option<usize>,
}

fn listed_json(l: &Listed) -> Value {
    let m = &l.entry.msg;
    let (data, bin) = match &m.content {
        Content::Text(t) => (t.clone(), false),
        Content::Binary(b) => (encode_bin(b), true),
    };
    json!({
        "msg-id": m.msg_id,
        "conv-id": m.conv.to_string(),
        "from": m.from,
        "data": data,
        "bin": bin,
        "timestamp": m.timestamp,
        "valid-till": l.record.valid_till,
        "global": !l.record.subscribers_only,
    })
}

/// The unexpired broadcasts, newest first: `[{"msg-id", "conv-id", "from",
/// "data", "bin", "timestamp", "valid-till", "global"}]`.
pub async fn list(Served(st): Served, Params(p): Params<ListParams>) -> ApiResult<Json<Value>> {
    let conv: Option<ConvId> = p.conv_id.as_deref().map(conv_id).transpose()?;
    let limit = p.limit.unwrap_or(LIST_PAGE).clamp(1, MAX_PAGE);
    let hub = st.hub().clone();
    let all = tokio::task::spawn_blocking(move || broadcast::list(&hub, conv))
        .await
        .map_err(|e| ApiError::from(ErrorBody::new(ErrorCode::InternalError, e.to_string())))??;
    Ok(Json(Value::Array(
        all.iter()
            .skip(p.skip.unwrap_or(0))
            .take(limit)
            .map(listed_json)
            .collect(),
    )))
}

/// `{}`: nobody gets it at login any more; it stays in history. 404 (4404)
/// for a message that is not a broadcast with a record.
pub async fn delete(
    Served(st): Served,
    Segments(msg_id): Segments<String>,
) -> ApiResult<Json<Value>> {
    broadcast::delete(st.hub(), &msg_id).await?;
    Ok(Json(json!({})))
}
