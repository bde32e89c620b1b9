//! The HTTP side of the door: the router the SDKs ask for a WebSocket URL
//! (`GET /v1/route`), and the REST calls they make during IM use. Errors
//! are LeanCloud's JSON, `{"code": …, "error": …}`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::listener::Door;
use super::tokens::Holder;
use crate::protocol::{ConvId, ConvKind, MemberRole};

/// How long an SDK may cache the router's answer.
const ROUTE_TTL_SECS: u64 = 3600;

fn error(status: StatusCode, code: u32, text: &str) -> Response {
    (status, Json(json!({ "code": code, "error": text }))).into_response()
}

pub(super) fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        404,
        "not found: this is Tidings' LeanCloud door (WebSocket, /v1/route, /1.1/rtm/*)",
    )
}

/// `GET /v1/route?appId=…`: where the WebSocket is. Java and Swift read
/// `server` and `ttl`, JS rotates over `server` and `secondary`.
pub(super) async fn route(State(door): State<Door>, headers: HeaderMap) -> Response {
    let url = match &door.shared.hub.config.gateway.public_url {
        Some(u) => u.clone(),
        None => {
            let host = headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_else(|| door.shared.hub.config.gateway.listen.to_string());
            let scheme = if door.shared.tls { "wss" } else { "ws" };
            format!("{scheme}://{host}/")
        }
    };
    Json(json!({
        "groupId": "g0",
        "groupUrl": url,
        "server": url,
        "secondary": url,
        "ttl": ROUTE_TTL_SECS,
    }))
    .into_response()
}

/// Whether a REST call carries the app's key (`X-LC-Key: <app key>`, or
/// the master key, or `X-LC-Sign`), as LeanCloud's client REST API asks.
fn app_key_ok(door: &Door, headers: &HeaderMap) -> bool {
    key_kind(door, headers).is_some()
}

/// Which key a REST call carries, for the calls that need the master key.
pub(super) fn key_kind(door: &Door, headers: &HeaderMap) -> Option<crate::auth::KeyKind> {
    let header = |name: &str| headers.get(name).and_then(|h| h.to_str().ok());
    door.shared
        .hub
        .auth
        .credentials()
        .check_client_key(
            header("x-lc-id"),
            header("x-lc-key"),
            header("x-lc-sign"),
            crate::util::now_ms(),
        )
        .ok()
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, 401, "Unauthorized.")
}

/// The client a REST call is for, by the session token the SDK sends.
fn holder(door: &Door, headers: &HeaderMap) -> Option<Holder> {
    let token = headers
        .get("x-lc-im-session-token")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    door.shared.tokens.holder(token, crate::util::now_ms())
}

fn no_session() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        4112,
        "X-LC-IM-Session-Token is missing, unknown or expired",
    )
}

/// `GET /1.1/rtm/notifications`: the "permanent" notifications a client
/// missed while away. Tidings delivers membership changes through the
/// offline sync instead, so the list is empty; both shapes (JS reads
/// `notifications`, Swift `permanent`/`droppable`) are in one answer.
pub(super) async fn notifications(State(door): State<Door>, headers: HeaderMap) -> Response {
    if !app_key_ok(&door, &headers) {
        return unauthorized();
    }
    if holder(&door, &headers).is_none() {
        return no_session();
    }
    Json(json!({
        "hasMore": false,
        "notifications": [],
        "permanent": { "hasMore": false, "notifications": [] },
        "droppable": { "hasMore": false, "notifications": [] },
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
pub(super) struct ClassQuery {
    #[serde(rename = "where")]
    filter: Option<String>,
}

/// `GET /1.1/classes/_ConversationMemberInfo?where={"cid":…}`: member
/// roles. The owner is the creator; managers are `Manager`; everyone
/// else is a plain member and has no row, as on LeanCloud.
pub(super) async fn member_info(
    State(door): State<Door>,
    headers: HeaderMap,
    Query(q): Query<ClassQuery>,
) -> Response {
    if !app_key_ok(&door, &headers) {
        return unauthorized();
    }
    let Some(who) = holder(&door, &headers) else {
        return no_session();
    };
    let filter: Value = q
        .filter
        .as_deref()
        .and_then(|w| serde_json::from_str(w).ok())
        .unwrap_or(Value::Null);
    let Some(conv) = filter["cid"]
        .as_str()
        .and_then(|c| c.parse::<ConvId>().ok())
    else {
        return error(StatusCode::BAD_REQUEST, 1, "where must name a cid");
    };
    let Some(c) = door.shared.hub.convs.get(&conv) else {
        return error(StatusCode::NOT_FOUND, 4303, "conversation not found");
    };
    let st = c.state.read();
    let private = matches!(st.rec.kind, ConvKind::Normal | ConvKind::Temporary);
    if private && !st.is_member(&who.client) {
        return error(
            StatusCode::FORBIDDEN,
            4401,
            "not a member of this conversation",
        );
    }
    let wanted = filter["clientId"].as_str();
    // Plain members have no row on LeanCloud either.
    let results: Vec<Value> = crate::core::moderation::member_roles(&st)
        .into_iter()
        .filter(|m| m.role != MemberRole::Member)
        .filter(|m| wanted.is_none_or(|w| w == m.client))
        .map(|m| {
            json!({
                "objectId": format!("{conv}:{}", m.client),
                "cid": conv.to_string(),
                "clientId": m.client,
                "role": m.role.as_str(),
            })
        })
        .collect();
    Json(json!({ "results": results })).into_response()
}

/// `POST /1.1/rtm/sign`: LeanCloud signs logins for its own user system
/// (`AV.User`). Tidings has no user store: sign logins in the app's
/// signature factory (README, "Moving a LeanCloud app").
pub(super) async fn sign() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        1,
        "logging in with an LCUser is not supported by Tidings: give the SDK a signatureFactory that signs appid:clientid::timestamp:nonce with the master key on your server",
    )
}
