//! `/1.2/rtm/clients/{client}/devices` and `…/push`: which phones a client's
//! pushes go to, and a test push to them, for an operator checking push
//! credentials without sending a message.

use axum::Json;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::Served;
use super::clients::check_client;
use super::error::{ApiError, ApiResult, Body, Segments};
use crate::notify::NotifyError;

/// Parse's and LeanCloud's code for a push service that is not set up.
const PUSH_MISCONFIGURED: u16 = 115;

/// `{"results": [the client's installations, as GET /1.1/installations/<id>
/// answers them]}`.
pub async fn list(
    Served(st): Served,
    Segments(client): Segments<String>,
) -> ApiResult<Json<Value>> {
    check_client(&client)?;
    let devices = st.hub().store.installations_of_client(&client)?;
    let results: Vec<Value> = devices
        .iter()
        .map(crate::gateway::installations::to_json)
        .collect();
    Ok(Json(json!({ "results": results })))
}

/// Sends the body (a LeanCloud push payload; empty for the `[push]`
/// template) to each of the client's devices once, and answers with what
/// each provider said: `{"results": [{objectId, deviceType, provider,
/// result, reason}]}`. A dead token's registration is removed, as for any
/// push.
pub async fn push(
    Served(st): Served,
    Segments(client): Segments<String>,
    Body(payload): Body<Value>,
) -> ApiResult<Json<Value>> {
    check_client(&client)?;
    if !payload.is_object() {
        return Err(ApiError::bad_params(
            "the body is a push payload: a JSON object such as {\"alert\": \"hello\"}",
        ));
    }
    let results = st
        .hub()
        .notifier
        .test_push(&client, &payload)
        .await
        .map_err(|e| match e {
            NotifyError::Disabled | NotifyError::Empty => {
                ApiError::new(StatusCode::BAD_REQUEST, PUSH_MISCONFIGURED, e.to_string())
            }
            NotifyError::Store(e) => e.into(),
        })?;
    Ok(Json(json!({ "results": results })))
}
