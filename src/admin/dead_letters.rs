//! `/1.2/rtm/hooks/dead-letters`: after-hook calls the outbox gave up on
//! (`hooks.outbox_max_attempts`, `hooks.outbox_max_age_secs`), for an
//! operator to read, send again or drop. Tidings' own paths; LeanCloud has
//! no such API.
//!
//! - `GET …?after=<id>&limit=<n>`: `{"results": [letter], "count": total}`,
//!   oldest first, at most 1000 (default 100).
//! - `POST …/retry` and `POST …/purge` with `{"ids": [..]}` or
//!   `{"all": true}`: `{"retried": n, "ids": [new outbox ids]}` /
//!   `{"purged": n}`. Ids that are not there are skipped.

use axum::Json;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Served;
use super::error::{ApiError, ApiResult, Body, Params};
use crate::hooks::{HookError, Hooks};
use crate::store::DeadLetter;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

fn api_error(e: HookError) -> ApiError {
    match e {
        HookError::Store(e) => e.into(),
        other => ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            crate::protocol::ErrorCode::InternalError.code(),
            other.to_string(),
        ),
    }
}

/// One dead letter as the API and the CLI show it.
pub fn letter_json(id: u64, l: &DeadLetter) -> Value {
    let params: Value =
        serde_json::from_str(&l.record.params).unwrap_or_else(|_| json!(l.record.params));
    json!({
        "id": id,
        "hook": l.record.hook,
        "order_key": l.record.order_key,
        "params": params,
        "enqueued_at": l.record.enqueued_at,
        "dead_at": l.dead_at,
        "attempts": l.attempts,
        "last_error": l.last_error,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    after: Option<u64>,
    limit: Option<usize>,
}

pub async fn list(Served(st): Served, Params(p): Params<ListParams>) -> ApiResult<Json<Value>> {
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_params(format!(
            "limit must be 1 to {MAX_LIMIT}"
        )));
    }
    let hooks = &st.hub().hooks;
    let rows = hooks
        .dead_letters(p.after.unwrap_or(0), limit)
        .map_err(api_error)?;
    Ok(Json(json!({
        "results": rows.iter().map(|(id, l)| letter_json(*id, l)).collect::<Vec<_>>(),
        "count": hooks.dead_letters_len(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    #[serde(default)]
    ids: Vec<u64>,
    #[serde(default)]
    all: bool,
}

/// The ids a selection names: given ones, or every dead letter now.
fn selected(hooks: &Hooks, sel: Selection) -> ApiResult<Vec<u64>> {
    match (sel.all, sel.ids.is_empty()) {
        (true, true) => {
            let mut ids = Vec::new();
            let mut after = 0;
            loop {
                let page = hooks.dead_letters(after, MAX_LIMIT).map_err(api_error)?;
                let Some((last, _)) = page.last() else { break };
                after = *last;
                ids.extend(page.iter().map(|(id, _)| *id));
            }
            Ok(ids)
        }
        (false, false) => Ok(sel.ids),
        _ => Err(ApiError::bad_params(
            "give either ids (a non-empty list) or all: true",
        )),
    }
}

pub async fn retry(Served(st): Served, Body(sel): Body<Selection>) -> ApiResult<Json<Value>> {
    let hooks = &st.hub().hooks;
    let mut new_ids = Vec::new();
    for id in selected(hooks, sel)? {
        if let Some(n) = hooks.retry_dead_letter(id).map_err(api_error)? {
            new_ids.push(n);
        }
    }
    Ok(Json(json!({ "retried": new_ids.len(), "ids": new_ids })))
}

pub async fn purge(Served(st): Served, Body(sel): Body<Selection>) -> ApiResult<Json<Value>> {
    let hooks = &st.hub().hooks;
    let mut purged = 0u64;
    for id in selected(hooks, sel)? {
        if hooks.purge_dead_letter(id).map_err(api_error)? {
            purged += 1;
        }
    }
    Ok(Json(json!({ "purged": purged })))
}
