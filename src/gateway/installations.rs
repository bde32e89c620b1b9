//! LeanCloud's `_Installation` REST calls, so an unchanged app registers
//! its device with Tidings: Android `POST /1.1/installations` then `PUT
//! /1.1/installations/<id>` (java-unified-sdk `saveWholeObject`), Swift
//! `POST /1.1/batch/save` whose sub-requests are all POSTs
//! (`LCInstallation.preferredBatchRequest`), ObjC `POST /1.1/batch`, and JS
//! `/1.1/classes/_Installation` (`AV.Object.extend('_Installation')`).
//! Saves upsert (objectId, then token, then installationId), because the
//! iOS SDKs re-send the whole record as a POST on every launch. Listing and
//! deleting need the master key, as on LeanCloud. The store does the work
//! (`store::installations`); this file is JSON in and out.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::listener::Door;
use crate::auth::KeyKind;
use crate::store::installations::normal_token;
use crate::store::{
    BadgeChange, ChannelsChange, Installation, InstallationChanges, Lookup, SaveOutcome,
};
use crate::util::{iso_date, now_ms};

/// LeanCloud's answer to a bad call: HTTP status, code, text.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Refusal {
    status: StatusCode,
    code: u32,
    text: String,
}

impl Refusal {
    fn new(status: StatusCode, code: u32, text: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            text: text.into(),
        }
    }

    fn json(&self) -> Value {
        json!({ "code": self.code, "error": self.text })
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, Json(self.json())).into_response()
    }
}

fn malformed(text: &str) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, 107, text)
}

fn bad_type(field: &str, want: &str) -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        111,
        format!("invalid type for key {field}, expected {want}"),
    )
}

fn not_found() -> Refusal {
    Refusal::new(StatusCode::NOT_FOUND, 101, "Object is not found.")
}

fn master_only() -> Refusal {
    Refusal::new(
        StatusCode::FORBIDDEN,
        119,
        "The operation is forbidden because of lacking master key.",
    )
}

fn unauthorized() -> Refusal {
    Refusal::new(StatusCode::UNAUTHORIZED, 401, "Unauthorized.")
}

fn store_failed(e: &crate::store::StoreError) -> Refusal {
    tracing::warn!(error = %e, "installation store call failed");
    Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, 1, "internal error")
}

/// Fields the SDKs send that are the object's own bookkeeping, not data.
const IGNORED: &[&str] = &[
    "createdAt",
    "updatedAt",
    "__internalId",
    "__type",
    "className",
];

fn string_field(name: &str, v: &Value) -> Result<String, Refusal> {
    match v {
        Value::String(s) => Ok(s.clone()),
        // `{"__op":"Delete"}` and null clear the field.
        Value::Null => Ok(String::new()),
        Value::Object(o) if o.get("__op").and_then(Value::as_str) == Some("Delete") => {
            Ok(String::new())
        }
        _ => Err(bad_type(name, "String")),
    }
}

fn strings(name: &str, v: Option<&Value>) -> Result<Vec<String>, Refusal> {
    let Some(Value::Array(a)) = v else {
        return Err(bad_type(name, "Array"));
    };
    a.iter()
        .map(|x| {
            x.as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad_type(name, "Array of String"))
        })
        .collect()
}

fn channels(v: &Value) -> Result<ChannelsChange, Refusal> {
    if let Value::Array(_) = v {
        return Ok(ChannelsChange::Set(strings("channels", Some(v))?));
    }
    let op = v.get("__op").and_then(Value::as_str);
    let objects = || strings("channels", v.get("objects"));
    match op {
        Some("AddUnique") => Ok(ChannelsChange::AddUnique(objects()?)),
        Some("Add") => Ok(ChannelsChange::Add(objects()?)),
        Some("Remove") => Ok(ChannelsChange::Remove(objects()?)),
        Some("Delete") => Ok(ChannelsChange::Set(Vec::new())),
        _ if v.is_null() => Ok(ChannelsChange::Set(Vec::new())),
        _ => Err(bad_type(
            "channels",
            "Array or an AddUnique/Add/Remove __op",
        )),
    }
}

fn badge(v: &Value) -> Result<BadgeChange, Refusal> {
    if let Some(n) = v.as_i64() {
        return Ok(BadgeChange::Set(n));
    }
    match (v.get("__op").and_then(Value::as_str), v.get("amount")) {
        (Some("Increment"), None) => Ok(BadgeChange::Increment(1)),
        (Some("Increment"), Some(a)) => a
            .as_i64()
            .map(BadgeChange::Increment)
            .ok_or_else(|| bad_type("badge", "Number")),
        _ => Err(bad_type("badge", "Number")),
    }
}

/// A save's body as store changes, and the objectId it names (ObjC and
/// the JS SDK put the known objectId in the body).
pub(super) fn changes(body: &Value) -> Result<(InstallationChanges, Option<String>), Refusal> {
    let Value::Object(map) = body else {
        return Err(malformed("the body must be a JSON object"));
    };
    let mut c = InstallationChanges::default();
    let mut object_id = None;
    for (k, v) in map {
        let s = || string_field(k, v);
        match k.as_str() {
            "objectId" => object_id = Some(s()?).filter(|s| !s.is_empty()),
            "deviceType" => c.device_type = Some(s()?),
            "deviceToken" => c.device_token = Some(normal_token(&s()?)),
            "installationId" => c.installation_id = Some(s()?),
            "vendor" => c.vendor = Some(s()?),
            "registrationId" => c.registration_id = Some(s()?),
            "apnsTopic" => c.apns_topic = Some(s()?),
            "apnsTeamId" => c.apns_team_id = Some(s()?),
            "deviceProfile" => c.device_profile = Some(s()?),
            "timeZone" => c.time_zone = Some(s()?),
            "badge" => c.badge = Some(badge(v)?),
            "channels" => c.channels = Some(channels(v)?),
            k if IGNORED.contains(&k) => {}
            k => c.extra.push((k.to_owned(), v.to_string())),
        }
    }
    Ok((c, object_id))
}

/// A record as LeanCloud answers a GET: every field, dates as ISO strings.
pub(crate) fn to_json(r: &Installation) -> Value {
    let mut m = Map::new();
    for (k, v) in &r.extra {
        if let Ok(v) = serde_json::from_str(v) {
            m.insert(k.clone(), v);
        }
    }
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    put("objectId", json!(r.object_id));
    put("deviceType", json!(r.device_type));
    let opt = [
        ("deviceToken", &r.device_token),
        ("installationId", &r.installation_id),
        ("vendor", &r.vendor),
        ("registrationId", &r.registration_id),
        ("apnsTopic", &r.apns_topic),
        ("apnsTeamId", &r.apns_team_id),
        ("deviceProfile", &r.device_profile),
        ("timeZone", &r.time_zone),
    ];
    for (k, v) in opt {
        if let Some(v) = v {
            put(k, json!(v));
        }
    }
    put("badge", json!(r.badge));
    put("channels", json!(r.channels));
    put("createdAt", json!(iso_date(r.created_at)));
    put("updatedAt", json!(iso_date(r.updated_at)));
    Value::Object(m)
}

/// What one save answered: its status and body.
struct Answer {
    status: StatusCode,
    body: Value,
    object_id: String,
}

fn save(door: &Door, lookup: Lookup<'_>, body: &Value) -> Result<Answer, Refusal> {
    let (c, body_id) = changes(body)?;
    let lookup = match lookup {
        Lookup::Upsert { object_id: None } => Lookup::Upsert {
            object_id: body_id.as_deref(),
        },
        other => other,
    };
    let new_id = crate::util::random_token(24);
    let out = door
        .shared
        .hub
        .store
        .installation_save(lookup, &c, &new_id, now_ms())
        .map_err(|e| store_failed(&e))?;
    let s = match out {
        SaveOutcome::Saved(s) => s,
        SaveOutcome::NotFound => return Err(not_found()),
        SaveOutcome::NeedsDeviceType => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                135,
                "deviceType must be specified in this operation",
            ));
        }
    };
    let (status, body) = match (s.created, lookup) {
        (true, _) => (
            StatusCode::CREATED,
            json!({ "objectId": s.object_id, "createdAt": iso_date(s.created_at) }),
        ),
        (false, Lookup::Exactly(_)) => (
            StatusCode::OK,
            json!({ "objectId": s.object_id, "updatedAt": iso_date(s.updated_at) }),
        ),
        // A POST that found the device: what it is now, creation included.
        (false, Lookup::Upsert { .. }) => (
            StatusCode::OK,
            json!({
                "objectId": s.object_id,
                "createdAt": iso_date(s.created_at),
                "updatedAt": iso_date(s.updated_at),
            }),
        ),
    };
    Ok(Answer {
        status,
        body,
        object_id: s.object_id,
    })
}

fn answer(a: Answer) -> Response {
    let mut r = (a.status, Json(a.body)).into_response();
    if a.status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&format!("/1.1/installations/{}", a.object_id))
    {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn key(door: &Door, headers: &HeaderMap) -> Result<KeyKind, Refusal> {
    super::rest::key_kind(door, headers).ok_or_else(unauthorized)
}

fn parse(body: &Bytes) -> Result<Value, Refusal> {
    serde_json::from_slice(body)
        .map_err(|_| malformed("Malformed json object. A json dictionary is expected."))
}

fn respond(r: Result<Response, Refusal>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /1.1/installations`, `POST /1.1/classes/_Installation`.
pub(super) async fn create(State(door): State<Door>, headers: HeaderMap, body: Bytes) -> Response {
    respond((|| {
        key(&door, &headers)?;
        let a = save(&door, Lookup::Upsert { object_id: None }, &parse(&body)?)?;
        Ok(answer(a))
    })())
}

/// `PUT /1.1/installations/<id>`, `PUT /1.1/classes/_Installation/<id>`.
pub(super) async fn update(
    State(door): State<Door>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond((|| {
        key(&door, &headers)?;
        Ok(answer(save(&door, Lookup::Exactly(&id), &parse(&body)?)?))
    })())
}

/// `GET …/<id>`: one record. The app key suffices: the SDKs fetch their
/// own installation, and the objectId is known only to its device.
pub(super) async fn fetch(
    State(door): State<Door>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond((|| {
        key(&door, &headers)?;
        match door.shared.hub.store.installation(&id) {
            Ok(Some(r)) => Ok(Json(to_json(&r)).into_response()),
            Ok(None) => Err(not_found()),
            Err(e) => Err(store_failed(&e)),
        }
    })())
}

#[derive(serde::Deserialize)]
pub(super) struct ListQuery {
    limit: Option<usize>,
    /// Tidings' paging: the last objectId of the previous page.
    after: Option<String>,
}

/// LeanCloud's default and largest page.
const PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// `GET /1.1/installations`, `GET /1.1/classes/_Installation`: master key.
pub(super) async fn list(
    State(door): State<Door>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    respond((|| {
        if key(&door, &headers)? != KeyKind::Master {
            return Err(master_only());
        }
        let limit = q.limit.unwrap_or(PAGE).min(MAX_PAGE);
        let rows = door
            .shared
            .hub
            .store
            .installations(q.after.as_deref(), limit)
            .map_err(|e| store_failed(&e))?;
        let results: Vec<Value> = rows.iter().map(to_json).collect();
        Ok(Json(json!({ "results": results })).into_response())
    })())
}

/// `DELETE …/<id>`: master key.
pub(super) async fn delete(
    State(door): State<Door>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond((|| {
        if key(&door, &headers)? != KeyKind::Master {
            return Err(master_only());
        }
        match door.shared.hub.store.installation_delete(&id) {
            Ok(true) => Ok(Json(json!({})).into_response()),
            Ok(false) => Err(not_found()),
            Err(e) => Err(store_failed(&e)),
        }
    })())
}

/// A batch sub-request's path as an installation call: `Some(None)` for
/// the class, `Some(Some(id))` for one object, `None` for anything else.
fn installation_path(path: &str) -> Option<Option<&str>> {
    let p = path.strip_prefix("/1.1").unwrap_or(path);
    let p = p.split('?').next().unwrap_or(p);
    let rest = p
        .strip_prefix("/installations")
        .or_else(|| p.strip_prefix("/classes/_Installation"))?;
    match rest {
        "" | "/" => Some(None),
        r => r.strip_prefix('/').filter(|id| !id.contains('/')).map(Some),
    }
}

/// One sub-request of a batch.
fn sub(door: &Door, kind: KeyKind, req: &Value) -> Result<Answer, Refusal> {
    let method = req["method"]
        .as_str()
        .unwrap_or("POST")
        .to_ascii_uppercase();
    let path = req["path"].as_str().unwrap_or_default();
    let Some(target) = installation_path(path) else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            1,
            format!("Tidings' batch takes installation requests only, not {method} {path}"),
        ));
    };
    let empty = Value::Object(Map::new());
    let body = req.get("body").unwrap_or(&empty);
    match (method.as_str(), target) {
        ("POST", id) => save(door, Lookup::Upsert { object_id: id }, body),
        ("PUT", Some(id)) => save(door, Lookup::Exactly(id), body),
        ("DELETE", Some(id)) if kind == KeyKind::Master => {
            match door.shared.hub.store.installation_delete(id) {
                Ok(true) => Ok(Answer {
                    status: StatusCode::OK,
                    body: json!({}),
                    object_id: id.to_owned(),
                }),
                Ok(false) => Err(not_found()),
                Err(e) => Err(store_failed(&e)),
            }
        }
        ("DELETE", Some(_)) => Err(master_only()),
        _ => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            1,
            format!("unsupported batch request {method} {path}"),
        )),
    }
}

fn requests(body: &Bytes) -> Result<Vec<Value>, Refusal> {
    match parse(body)?.get_mut("requests").map(Value::take) {
        Some(Value::Array(a)) => Ok(a),
        _ => Err(malformed("requests must be an array")),
    }
}

/// `POST /1.1/batch`: one `{"success": …}` or `{"error": …}` per request,
/// in order (ObjC, and LeanCloud's REST docs).
pub(super) async fn batch(State(door): State<Door>, headers: HeaderMap, body: Bytes) -> Response {
    respond((|| {
        let kind = key(&door, &headers)?;
        let out: Vec<Value> = requests(&body)?
            .iter()
            .map(|r| match sub(&door, kind, r) {
                Ok(a) => json!({ "success": a.body }),
                Err(e) => json!({ "error": e.json() }),
            })
            .collect();
        Ok(Json(Value::Array(out)).into_response())
    })())
}

/// `POST /1.1/batch/save`: Swift's save. Its answer is a dictionary keyed
/// by each body's `__internalId` (or objectId), which the Swift SDK
/// matches back to its objects (`ObjectUpdater.BatchResponse`); an array
/// would leave the installation without its objectId. The first failure
/// fails the call, as the SDK reports one error for the whole save.
pub(super) async fn batch_save(
    State(door): State<Door>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond((|| {
        let kind = key(&door, &headers)?;
        let mut out = Map::new();
        for r in requests(&body)? {
            let a = sub(&door, kind, &r)?;
            let name = r["body"]["__internalId"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| a.object_id.clone());
            out.insert(name, a.body);
        }
        Ok(Json(Value::Object(out)).into_response())
    })())
}

/// Registrations not updated for this long are deleted: LeanCloud's
/// 90 days. Should become `[push] installation_idle_days`.
pub const IDLE_SWEEP_AFTER_MS: u64 = 90 * 86_400_000;

/// How often the idle sweep runs. A device checks in (re-saves) on every
/// app launch, so hours of slack cost nothing.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Sweeps idle registrations every hour until `shutdown`, off the async
/// workers. Runs whether or not the door is on: the records are the store's.
pub fn start_sweeper(
    hub: &std::sync::Arc<crate::hub::Hub>,
    shutdown: tokio::sync::broadcast::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    crate::hub::every(hub, SWEEP_EVERY, shutdown, |hub| async move {
        let store = hub.store.clone();
        let swept = tokio::task::spawn_blocking(move || {
            store.installations_sweep(now_ms(), IDLE_SWEEP_AFTER_MS)
        })
        .await;
        match swept {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(registrations = n, "idle push registrations swept"),
            Ok(Err(e)) => tracing::warn!(error = %e, "installation sweep failed"),
            Err(e) => tracing::warn!(error = %e, "installation sweep task failed"),
        }
    })
}

/// The device a `session/open` names, as `Login::device_token`, when the
/// SDK asked for the binding: iOS SDKs send `deviceToken`; Android sends
/// the installationId as `deviceId` with `configBitmap` bit 0x04
/// (`PATCH_FLAG_BIND_INSTALLATION_TO_SESSION`). JS sends a random
/// `deviceId` without the bit, so it binds nothing.
pub(super) fn login_device(
    s: &super::proto::SessionCommand,
    installation_id: Option<&str>,
) -> Option<String> {
    const BIND_INSTALLATION: i64 = 0x04;
    if let Some(t) = s.device_token.as_deref().filter(|t| !t.is_empty()) {
        return Some(t.to_owned());
    }
    if s.config_bitmap.unwrap_or(0) & BIND_INSTALLATION != 0 {
        let iid = s.device_id.as_deref().or(installation_id);
        return iid.filter(|i| !i.is_empty()).map(str::to_owned);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_of_the_three_sdks_parse() {
        let android = json!({"deviceType":"android","installationId":"0123abcd","timeZone":"Asia/Shanghai",
            "channels":[],"vendor":"fcm","registrationId":"tok","deviceProfile":"p"});
        let (c, id) = changes(&android).unwrap();
        assert_eq!(id, None);
        assert_eq!(c.registration_id.as_deref(), Some("tok"));
        assert_eq!(c.channels, Some(ChannelsChange::Set(vec![])));
        let swift = json!({"deviceType":"ios","deviceToken":"ABCDEF01","apnsTeamId":"T",
            "apnsTopic":"com.x","badge":0,"__internalId":"in1",
            "channels":{"__op":"AddUnique","objects":["news"]}});
        let (c, _) = changes(&swift).unwrap();
        assert_eq!(c.device_token.as_deref(), Some("abcdef01"));
        assert_eq!(c.badge, Some(BadgeChange::Set(0)));
        assert!(c.extra.is_empty());
        let js = json!({"deviceType":"web","objectId":"o1","custom":{"a":1},
            "badge":{"__op":"Increment","amount":2}});
        let (c, id) = changes(&js).unwrap();
        assert_eq!(id.as_deref(), Some("o1"));
        assert_eq!(c.badge, Some(BadgeChange::Increment(2)));
        assert_eq!(c.extra, vec![("custom".to_owned(), "{\"a\":1}".to_owned())]);
        assert_eq!(changes(&json!({"deviceType": 1})).unwrap_err().code, 111);
        assert_eq!(changes(&json!([1])).unwrap_err().code, 107);
        assert_eq!(
            changes(&json!({"channels":{"__op":"Nope"}}))
                .unwrap_err()
                .code,
            111
        );
    }

    #[test]
    fn batch_paths() {
        assert_eq!(installation_path("/1.1/installations"), Some(None));
        assert_eq!(
            installation_path("/1.1/installations/abc"),
            Some(Some("abc"))
        );
        assert_eq!(
            installation_path("/1.1/classes/_Installation/abc"),
            Some(Some("abc"))
        );
        assert_eq!(installation_path("/installations"), Some(None));
        assert_eq!(installation_path("/1.1/classes/Post"), None);
        assert_eq!(installation_path("/1.1/installationsX"), None);
    }

    #[test]
    fn login_devices() {
        use super::super::proto::SessionCommand;
        let ios = SessionCommand {
            device_token: Some("AB01".into()),
            ..Default::default()
        };
        assert_eq!(login_device(&ios, None).as_deref(), Some("AB01"));
        let android = SessionCommand {
            device_id: Some("iid".into()),
            config_bitmap: Some(0x04 | 0x01),
            ..Default::default()
        };
        assert_eq!(login_device(&android, None).as_deref(), Some("iid"));
        let js = SessionCommand {
            device_id: Some("uuid".into()),
            config_bitmap: Some(0b1011_1011),
            ..Default::default()
        };
        assert_eq!(login_device(&js, None), None);
    }
}
