//! `/1.2/rtm/service-conversations`: system conversations, their
//! subscribers, and messages from the app to chosen subscribers.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Served;
use super::error::{ApiError, ApiResult, Body, Params, Segments, conv_id};
use crate::conversation::system::{self, Service, Update};
use crate::message::app::{self, AppMessage};
use crate::protocol::Content;
use crate::util::iso_date;

/// LeanCloud's default page of subscribers; we allow up to [`MAX_PAGE`].
const SUBSCRIBERS_PAGE: usize = 50;
/// LeanCloud's default page of a query.
const LIST_PAGE: usize = 100;
/// Largest page any listing returns.
const MAX_PAGE: usize = 1000;

/// A system conversation the way LeanCloud's `_Conversation` shows one.
fn service_json(s: &Service) -> Value {
    let mut v = json!({
        "objectId": s.id.to_string(),
        "sys": true,
        "createdAt": iso_date(s.created_at),
        "updatedAt": iso_date(s.updated_at),
    });
    if let Value::Object(o) = &mut v {
        if let Some(n) = &s.name {
            o.insert("name".into(), Value::String(n.clone()));
        }
        if let Some(a) = &s.attr {
            o.insert("attr".into(), Value::Object(a.clone()));
        }
        if let Some(lm) = s.last_message_at {
            o.insert("lm".into(), json!({"__type": "Date", "iso": iso_date(lm)}));
        }
    }
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateReq {
    name: Option<String>,
    attr: Option<Map<String, Value>>,
}

pub async fn create(
    Served(st): Served,
    Body(req): Body<CreateReq>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let s = system::create(st.hub(), req.name, req.attr).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"objectId": s.id.to_string(), "createdAt": iso_date(s.created_at)})),
    ))
}

#[derive(Deserialize)]
pub struct ListParams {
    skip: Option<usize>,
    limit: Option<usize>,
    #[serde(rename = "where")]
    filter: Option<String>,
}

/// LeanCloud takes a `where` query here; equality on `name` and `objectId`
/// is what a system-conversation listing needs.
pub async fn list(Served(st): Served, Params(p): Params<ListParams>) -> ApiResult<Json<Value>> {
    let (mut name, mut object_id) = (None, None);
    if let Some(w) = &p.filter {
        let w: Map<String, Value> = serde_json::from_str(w)
            .map_err(|e| ApiError::bad_params(format!("where is not a JSON object: {e}")))?;
        for (k, v) in w {
            match (k.as_str(), v) {
                ("name", Value::String(n)) => name = Some(n),
                ("objectId", Value::String(id)) => object_id = Some(id),
                (k, _) => {
                    return Err(ApiError::bad_params(format!(
                        "where supports only equality on name and objectId, not {k:?}"
                    )));
                }
            }
        }
    }
    let limit = p.limit.unwrap_or(LIST_PAGE).min(MAX_PAGE);
    let all = system::list(st.hub(), 0, usize::MAX)?;
    let results: Vec<Value> = all
        .iter()
        .filter(|s| name.as_ref().is_none_or(|n| s.name.as_ref() == Some(n)))
        .filter(|s| object_id.as_ref().is_none_or(|id| s.id.to_string() == *id))
        .skip(p.skip.unwrap_or(0))
        .take(limit)
        .map(service_json)
        .collect();
    Ok(Json(json!({ "results": results })))
}

pub async fn get(Served(st): Served, Segments(id): Segments<String>) -> ApiResult<Json<Value>> {
    let s = system::get(st.hub(), conv_id(&id)?)?;
    Ok(Json(service_json(&s)))
}

/// Body: `name`, `attr` (replaces the object) and `attr.<key>` (sets one).
pub async fn update(
    Served(st): Served,
    Segments(id): Segments<String>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let id = conv_id(&id)?;
    let mut up = Update::default();
    for (k, v) in body {
        match (k.as_str(), v) {
            ("name", Value::String(n)) => up.name = Some(n),
            ("attr", Value::Object(a)) => up.attr = Some(a),
            (k, v) if k.starts_with("attr.") && k.len() > "attr.".len() => {
                up.attr_keys.push((k["attr.".len()..].to_owned(), v));
            }
            ("name", _) => return Err(ApiError::bad_params("name must be a string")),
            ("attr", _) => return Err(ApiError::bad_params("attr must be a JSON object")),
            (k, _) => {
                return Err(ApiError::bad_params(format!(
                    "{k:?} cannot be updated: give name, attr or attr.<key>"
                )));
            }
        }
    }
    if up == Update::default() {
        return Err(ApiError::bad_params(
            "nothing to update: give name, attr or attr.<key>",
        ));
    }
    let updated = system::update(st.hub(), id, up).await?;
    Ok(Json(
        json!({"objectId": id.to_string(), "updatedAt": iso_date(updated)}),
    ))
}

pub async fn delete(Served(st): Served, Segments(id): Segments<String>) -> ApiResult<Json<Value>> {
    let id = conv_id(&id)?;
    system::delete(st.hub(), id).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeReq {
    client_id: String,
}

pub async fn subscribe(
    Served(st): Served,
    Segments(id): Segments<String>,
    Body(req): Body<SubscribeReq>,
) -> ApiResult<Json<Value>> {
    system::subscribe(st.hub(), conv_id(&id)?, &req.client_id).await?;
    Ok(Json(json!({})))
}

pub async fn unsubscribe(
    Served(st): Served,
    Segments((id, client)): Segments<(String, String)>,
) -> ApiResult<Json<Value>> {
    system::unsubscribe(st.hub(), conv_id(&id)?, &client).await?;
    Ok(Json(json!({})))
}

/// `DELETE …/subscribers/count` is the count endpoint's path, so a client
/// named `count` is unsubscribed here.
pub async fn unsubscribe_count(
    Served(st): Served,
    Segments(id): Segments<String>,
) -> ApiResult<Json<Value>> {
    system::unsubscribe(st.hub(), conv_id(&id)?, "count").await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct SubscribersParams {
    limit: Option<usize>,
    /// Start after this subscriber.
    client_id: Option<String>,
}

/// LeanCloud's shape: `[{"timestamp", "subscriber", "conv_id"}]`, by
/// client id; page on with the last `subscriber` as `client_id`.
pub async fn subscribers(
    Served(st): Served,
    Segments(id): Segments<String>,
    Params(p): Params<SubscribersParams>,
) -> ApiResult<Json<Value>> {
    let id = conv_id(&id)?;
    let limit = p.limit.unwrap_or(SUBSCRIBERS_PAGE).clamp(1, MAX_PAGE);
    let page = system::subscribers(st.hub(), id, p.client_id.as_deref(), limit)?;
    let conv = id.to_string();
    Ok(Json(Value::Array(
        page.into_iter()
            .map(|(c, at)| json!({"timestamp": at, "subscriber": c, "conv_id": conv}))
            .collect(),
    )))
}

pub async fn subscriber_count(
    Served(st): Served,
    Segments(id): Segments<String>,
) -> ApiResult<Json<Value>> {
    let n = system::subscriber_count(st.hub(), conv_id(&id)?)?;
    Ok(Json(json!({ "count": n })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendReq {
    from_client: String,
    to_clients: Vec<String>,
    /// Text; typed messages are JSON text, as on LeanCloud.
    message: String,
    #[serde(default)]
    transient: bool,
    #[serde(default)]
    no_sync: bool,
    /// An object, or its JSON text.
    push_data: Option<Value>,
    /// Accepted for compatibility; every message has the same priority here.
    #[serde(rename = "priority")]
    _priority: Option<String>,
}

/// A broadcast's `push`: like `push_data`, or a bare alert text.
pub(super) fn push_payload(v: Option<Value>) -> ApiResult<Option<String>> {
    match v {
        Some(Value::String(s)) if serde_json::from_str::<Map<String, Value>>(&s).is_err() => {
            Ok(Some(json!({ "alert": s }).to_string()))
        }
        other => push_data(other),
    }
}

fn push_data(v: Option<Value>) -> ApiResult<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(Value::Object(o).to_string())),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(_)) => Ok(Some(s)),
            _ => Err(ApiError::bad_params(
                "push_data must be a JSON object (or its text)",
            )),
        },
        Some(_) => Err(ApiError::bad_params(
            "push_data must be a JSON object (or its text)",
        )),
    }
}

/// `{"msg-id", "timestamp"}` once stored (at once for a transient message).
pub async fn send(
    Served(st): Served,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Segments(id): Segments<String>,
    Body(req): Body<SendReq>,
) -> ApiResult<Json<Value>> {
    let id = conv_id(&id)?;
    let m = AppMessage {
        from: req.from_client,
        to: req.to_clients,
        content: Content::Text(req.message),
        transient: req.transient,
        no_sync: req.no_sync,
        push_data: push_data(req.push_data)?,
        from_ip: peer.ip().to_string(),
    };
    let sent = app::send(st.hub(), id, m).await?;
    Ok(Json(
        json!({"msg-id": sent.msg_id, "timestamp": sent.timestamp}),
    ))
}
