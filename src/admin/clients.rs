//! `/1.2/rtm/clients/…` and `/1.2/rtm/stats`: who is online, kicking a
//! client off, and the app-wide counts.

use axum::Json;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Served;
use super::error::{ApiError, ApiResult, Body, Params, Segments, conv_id};
use crate::auth::valid_id;
use crate::message::unread_in;
use crate::metrics::METRICS;
use crate::protocol::{ErrorBody, ErrorCode};

/// LeanCloud's cap on one online check, and on a kick reason's length.
const MAX_CHECK: usize = 20;
const MAX_REASON_CHARS: usize = 20;

pub(super) fn check_client(client: &str) -> ApiResult<()> {
    if valid_id(client) {
        Ok(())
    } else {
        Err(ApiError::bad_params(format!(
            "invalid client id {client:?}: 1-64 characters, no control characters"
        )))
    }
}

/// `{"client_id", "online", "devices": [{"device_id", "tag"}]}`.
pub async fn online(
    Served(st): Served,
    Segments(client): Segments<String>,
) -> ApiResult<Json<Value>> {
    check_client(&client)?;
    let devices: Vec<Value> = st
        .hub()
        .registry
        .devices_of(&client)
        .into_iter()
        .map(|(device, tag)| json!({"device_id": device, "tag": tag}))
        .collect();
    Ok(Json(json!({
        "client_id": client,
        "online": !devices.is_empty(),
        "devices": devices,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckReq {
    client_ids: Vec<String>,
}

/// LeanCloud's batch check: `{"results": [the online ones]}`.
pub async fn online_check(Served(st): Served, Body(req): Body<CheckReq>) -> ApiResult<Json<Value>> {
    if req.client_ids.len() > MAX_CHECK {
        return Err(ApiError::bad_params(format!(
            "at most {MAX_CHECK} client_ids per check"
        )));
    }
    let online: Vec<&String> = req
        .client_ids
        .iter()
        .filter(|c| st.hub().registry.is_online(c))
        .collect();
    Ok(Json(json!({ "results": online })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KickReq {
    reason: Option<String>,
}

/// Closes every device of the client with 4115 KICKED_BY_APP
/// (`_clientOffline` closeCode 4). Kicking a client that is offline is not
/// an error, as on LeanCloud.
pub async fn kick(
    Served(st): Served,
    Segments(client): Segments<String>,
    Body(req): Body<KickReq>,
) -> ApiResult<Json<Value>> {
    check_client(&client)?;
    let reason = req.reason.unwrap_or_else(|| "KICKED_BY_APP".to_owned());
    if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
        return Err(ApiError::bad_params(format!(
            "reason: at most {MAX_REASON_CHARS} characters, no control characters"
        )));
    }
    let n = st.hub().registry.kick(&client, &reason);
    tracing::info!(%client, devices = n, %reason, "kicked through the admin API");
    Ok(Json(json!({})))
}

/// LeanCloud's `{"result": {"online_user_count", "user_count_today"}}`,
/// plus Tidings' own counts beside them.
pub async fn stats(Served(st): Served) -> Json<Value> {
    let hub = st.hub();
    let connections = st.connections();
    Json(json!({
        "result": {
            "online_user_count": hub.registry.online_count(),
            "user_count_today": METRICS.users_today(),
            "connections": connections,
            "conversations": hub.convs.len(),
            "logins": METRICS.logins(),
            "hook_outbox": hub.hooks.outbox_len(),
        }
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnreadParams {
    conv_id: Option<String>,
}

/// `{"count"}`: the client's unread messages over its conversations, or in
/// `conv_id` alone; counted as a pull-mode login counts them.
pub async fn unread_count(
    Served(st): Served,
    Segments(client): Segments<String>,
    Params(p): Params<UnreadParams>,
) -> ApiResult<Json<Value>> {
    check_client(&client)?;
    let hub = st.hub().clone();
    let conv = p.conv_id.as_deref().map(conv_id).transpose()?;
    let count = tokio::task::spawn_blocking(move || -> Result<u64, ErrorBody> {
        let convs = match conv {
            Some(c) => vec![c],
            None => hub.store.memberships_of(&client)?,
        };
        let mut n = 0;
        for c in convs {
            n += unread_in(&hub, &client, c)?.map_or(0, |(count, _)| count);
        }
        Ok(n)
    })
    .await
    .map_err(|e| ErrorBody::new(ErrorCode::InternalError, e.to_string()))??;
    Ok(Json(json!({ "count": count })))
}
