//! `_SysMessage` rows, clients' messages to system conversations
//! ([`crate::sysmsg`]): `GET /1.1/classes/_SysMessage`, LeanCloud's own
//! class-query path (what `new AV.Query('_SysMessage')` asks), and
//! `GET /1.2/rtm/service-conversations/{id}/sys-messages`, the same for one
//! conversation. Both answer `{"results": [rows]}`.
//!
//! Parameters: `where`, a JSON object of equalities on `conv` (a Pointer to
//! `_Conversation`, or its objectId), `from` and `msgId`; `order`,
//! `createdAt` or `timestamp` (oldest first, the default) or `-createdAt` /
//! `-timestamp` (newest first); `skip`; `limit` (default 100, at most 1000).

use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Served;
use super::error::{ApiError, ApiResult, Params, Segments, conv_id};
use crate::conversation::system;
use crate::protocol::{ConvId, ErrorBody, ErrorCode};
use crate::sysmsg::{self, Filter};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Default, Deserialize)]
pub struct QueryParams {
    #[serde(rename = "where")]
    filter: Option<String>,
    order: Option<String>,
    skip: Option<usize>,
    limit: Option<usize>,
}

/// A conversation named by objectId or by a Pointer to `_Conversation`.
fn conv_of(v: &Value) -> Result<ConvId, ApiError> {
    let id = match v {
        Value::String(s) => s.as_str(),
        Value::Object(o)
            if o.get("__type").and_then(Value::as_str) == Some("Pointer")
                && o.get("className").and_then(Value::as_str) == Some("_Conversation") =>
        {
            o.get("objectId")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_params("the conv Pointer has no objectId"))?
        }
        _ => {
            return Err(ApiError::bad_params(
                "conv must be an objectId or a Pointer to _Conversation",
            ));
        }
    };
    id.parse()
        .map_err(|_| ApiError::bad_params(format!("conv {id:?} is not a conversation id")))
}

fn filter(text: Option<&str>) -> Result<Filter, ApiError> {
    let mut f = Filter::default();
    let Some(text) = text else {
        return Ok(f);
    };
    let w: Map<String, Value> = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_params(format!("where is not a JSON object: {e}")))?;
    for (k, v) in w {
        match (k.as_str(), v) {
            ("conv", v) => f.conv = Some(conv_of(&v)?),
            ("from", Value::String(s)) => f.from = Some(s),
            ("msgId", Value::String(s)) => f.msg_id = Some(s),
            (k, _) => {
                return Err(ApiError::bad_params(format!(
                    "where supports equality on conv, from (a string) and msgId (a string), not {k:?}"
                )));
            }
        }
    }
    Ok(f)
}

fn newest_first(order: Option<&str>) -> Result<bool, ApiError> {
    match order {
        None | Some("createdAt" | "timestamp") => Ok(false),
        Some("-createdAt" | "-timestamp") => Ok(true),
        Some(o) => Err(ApiError::bad_params(format!(
            "order {o:?}: use createdAt, -createdAt, timestamp or -timestamp"
        ))),
    }
}

async fn answer(st: Served, f: Filter, p: QueryParams) -> ApiResult<Json<Value>> {
    let newest = newest_first(p.order.as_deref())?;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let skip = p.skip.unwrap_or(0);
    let hub = st.0.hub().clone();
    let rows = tokio::task::spawn_blocking(move || sysmsg::query(&hub, &f, newest, skip, limit))
        .await
        .map_err(|e| ApiError::from(ErrorBody::new(ErrorCode::InternalError, e.to_string())))??;
    let results: Vec<Value> = rows.iter().map(|(e, ack)| sysmsg::row(e, *ack)).collect();
    Ok(Json(json!({ "results": results })))
}

/// `GET /1.1/classes/_SysMessage`.
pub async fn query(st: Served, Params(p): Params<QueryParams>) -> ApiResult<Json<Value>> {
    let f = filter(p.filter.as_deref())?;
    answer(st, f, p).await
}

/// `GET /1.2/rtm/service-conversations/{id}/sys-messages`: 404 (4303) for
/// what is not a system conversation.
pub async fn of_service(
    st: Served,
    Segments(id): Segments<String>,
    Params(p): Params<QueryParams>,
) -> ApiResult<Json<Value>> {
    let id = conv_id(&id)?;
    system::lookup(st.0.hub(), id)?;
    let mut f = filter(p.filter.as_deref())?;
    if f.conv.is_some_and(|c| c != id) {
        return Ok(Json(json!({ "results": [] })));
    }
    f.conv = Some(id);
    answer(st, f, p).await
}
