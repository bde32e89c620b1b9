//! One hook call over HTTP, LeanEngine's way, and the chain a before-hook
//! runs. Knows nothing of the outbox or metrics, so the CLI can use it alone.

use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::{Hook, HookError};
use crate::config::{FailPolicy, HooksSection};

/// Result keys that steer the chain; they are not changes to the request.
/// `code` and `detail` of a hook that let the request through stay in the
/// merged result (they explain a content change) but never touch the params.
const CONTROL_KEYS: [&str; 2] = ["drop", "reject"];
const REASON_KEYS: [&str; 2] = ["code", "detail"];

/// Most of a failed answer's body kept for the error text.
const ERROR_BODY_EXCERPT: usize = 512;

/// A hook endpoint answered with success.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// The whole answer, e.g. `{"result": {...}}`.
    pub body: Value,
    /// `body.result` when it is an object; empty for `{}`, a missing or null
    /// result (LeanEngine answers `{}` for a hook that returned nothing), or
    /// a result that is not an object.
    pub result: Map<String, Value>,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    /// No answer: connection refused or reset, DNS, TLS.
    #[error("request failed: {0}")]
    Request(String),
    /// LeanEngine's error answer, `{"code": N, "error": "..."}`.
    #[error("HTTP {status}: hook error {code}: {error}")]
    HookError {
        status: u16,
        code: i64,
        error: String,
    },
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("HTTP {status}: answer over {limit} bytes")]
    TooLarge { status: u16, limit: u64 },
    #[error("HTTP {status}: answer is not a JSON object: {detail}")]
    BadAnswer { status: u16, detail: String },
    /// Not called: the endpoint's circuit breaker is open.
    #[error("not called: the endpoint failed too often in a row (circuit breaker open)")]
    CircuitOpen,
    /// Not called: the endpoint answered lately that the app does not define the hook.
    #[error("not called: the app does not define this hook (it answered 404 or code 1)")]
    Undefined,
}

impl CallError {
    /// Timeouts are counted apart from other failures.
    pub fn is_timeout(&self) -> bool {
        matches!(self, CallError::Timeout(_))
    }

    /// The HTTP status, if an answer arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Timeout(_)
            | CallError::Request(_)
            | CallError::CircuitOpen
            | CallError::Undefined => None,
            CallError::HookError { status, .. }
            | CallError::Status { status, .. }
            | CallError::TooLarge { status, .. }
            | CallError::BadAnswer { status, .. } => Some(*status),
        }
    }
}

/// How a chain of before-hook endpoints ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainEnd {
    /// Every endpoint answered; the merged changes.
    Proceed(Map<String, Value>),
    /// An endpoint answered `drop: true` or `reject: true`.
    Rejected { code: i64, detail: String },
    /// An endpoint failed; `merged` holds the changes of those before it.
    Failed {
        detail: String,
        merged: Map<String, Value>,
    },
}

/// Where one hook goes and how long a call may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub urls: Vec<Url>,
    pub timeout: Duration,
}

/// The HTTP side of hooks for one config: a pooled client, the headers and
/// every hook's route. Immutable; a reload builds a new one.
pub struct HookClient {
    http: reqwest::Client,
    headers: HeaderMap,
    routes: [Option<Route>; Hook::COUNT],
    fail_policy: FailPolicy,
    max_response_bytes: u64,
    outbox_capacity: u64,
    outbox_max_attempts: u32,
    outbox_max_age: Duration,
    undefined_retry: Duration,
    breaker_cooldown: Duration,
    connect_timeout: Duration,
}

impl HookClient {
    /// Builds the client, its connection pool and the routes of `cfg` (which
    /// should have passed `Config::validate`; a bad URL is still an error
    /// here, not a panic).
    pub fn new(
        cfg: &HooksSection,
        app_id: &str,
        master_key: &str,
    ) -> Result<HookClient, HookError> {
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms);
        Self::build(cfg, app_id, master_key, http_client(connect_timeout)?)
    }

    /// A client for `cfg` reusing `self`'s connection pool when the
    /// connection settings did not change.
    pub fn rebuild(
        &self,
        cfg: &HooksSection,
        app_id: &str,
        master_key: &str,
    ) -> Result<HookClient, HookError> {
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms);
        let http = if connect_timeout == self.connect_timeout {
            self.http.clone()
        } else {
            http_client(connect_timeout)?
        };
        Self::build(cfg, app_id, master_key, http)
    }

    fn build(
        cfg: &HooksSection,
        app_id: &str,
        master_key: &str,
        http: reqwest::Client,
    ) -> Result<HookClient, HookError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            HeaderName::from_static("x-lc-id"),
            header_value("X-LC-Id", app_id)?,
        );
        headers.insert(
            HeaderName::from_static("x-lc-key"),
            header_value("X-LC-Key", &format!("{master_key},master"))?,
        );
        if let Some(k) = &cfg.hook_key {
            headers.insert(
                HeaderName::from_static("x-lc-hook-key"),
                header_value("X-LC-Hook-Key", k)?,
            );
        }
        let mut routes: [Option<Route>; Hook::COUNT] = Default::default();
        for hook in Hook::ALL {
            routes[hook.index()] = route(cfg, hook)?;
        }
        Ok(HookClient {
            http,
            headers,
            routes,
            fail_policy: cfg.fail_policy,
            max_response_bytes: cfg.max_response_bytes,
            outbox_capacity: cfg.outbox_capacity,
            outbox_max_attempts: cfg.outbox_max_attempts,
            outbox_max_age: Duration::from_secs(cfg.outbox_max_age_secs),
            undefined_retry: Duration::from_secs(cfg.undefined_retry_secs),
            breaker_cooldown: Duration::from_millis(cfg.breaker_cooldown_ms),
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
        })
    }

    /// The hook's endpoints, or `None` when it is off.
    pub fn route(&self, hook: Hook) -> Option<&Route> {
        self.routes[hook.index()].as_ref()
    }

    pub fn fail_policy(&self) -> FailPolicy {
        self.fail_policy
    }

    pub fn outbox_capacity(&self) -> u64 {
        self.outbox_capacity
    }

    /// Attempts after which an after-hook call goes to the dead letters.
    pub fn outbox_max_attempts(&self) -> u32 {
        self.outbox_max_attempts
    }

    /// Age after which a failing after-hook call goes to the dead letters.
    pub fn outbox_max_age(&self) -> Duration {
        self.outbox_max_age
    }

    pub fn undefined_retry(&self) -> Duration {
        self.undefined_retry
    }

    pub fn breaker_cooldown(&self) -> Duration {
        self.breaker_cooldown
    }

    /// POSTs `body` (the params as JSON) to `url`. Success is HTTP 200 with
    /// a JSON object that is not an error answer.
    pub async fn call(
        &self,
        url: &Url,
        timeout: Duration,
        body: Vec<u8>,
    ) -> Result<Reply, CallError> {
        let request = self
            .http
            .post(url.clone())
            .headers(self.headers.clone())
            .body(body);
        // One deadline over connect, send and the whole answer.
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout(timeout)),
        }
    }

    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<Reply, CallError> {
        let mut response = request.send().await.map_err(request_error)?;
        let status = response.status().as_u16();
        let limit = self.max_response_bytes;
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(CallError::TooLarge { status, limit });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(CallError::TooLarge { status, limit });
            }
            bytes.extend_from_slice(&chunk);
        }
        let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
        // An error answer is reported as such whatever its status.
        if let Ok(Value::Object(obj)) = &parsed
            && !obj.contains_key("result")
            && let (Some(code), Some(error)) = (obj.get("code"), obj.get("error"))
        {
            return Err(CallError::HookError {
                status,
                code: code.as_i64().unwrap_or(0),
                error: error
                    .as_str()
                    .map_or_else(|| error.to_string(), str::to_owned),
            });
        }
        if status != 200 {
            return Err(CallError::Status {
                status,
                body: excerpt(&bytes),
            });
        }
        match parsed {
            Ok(Value::Object(obj)) => {
                let result = match obj.get("result") {
                    Some(Value::Object(r)) => r.clone(),
                    _ => Map::new(),
                };
                Ok(Reply {
                    status,
                    body: Value::Object(obj),
                    result,
                })
            }
            Ok(other) => Err(CallError::BadAnswer {
                status,
                detail: format!("got {}", json_kind(&other)),
            }),
            Err(e) => Err(CallError::BadAnswer {
                status,
                detail: format!("{e}: {}", excerpt(&bytes)),
            }),
        }
    }

    /// Runs `hook`'s endpoints in order. Each sees `params` with the earlier
    /// results overlaid on the keys `params` has; other result keys (e.g.
    /// `pushMessage`) only go into the merged result. Stops at the first
    /// drop/reject or failure. `gate` may refuse an endpoint before it is
    /// called (a failure like any other); `observe` sees every call made and
    /// its latency.
    pub async fn chain(
        &self,
        hook: Hook,
        mut params: Value,
        mut gate: impl FnMut(&Url) -> Option<CallError>,
        mut observe: impl FnMut(&Url, &Result<Reply, CallError>, Duration),
    ) -> ChainEnd {
        let mut merged = Map::new();
        let Some(route) = self.route(hook) else {
            return ChainEnd::Proceed(merged);
        };
        for url in &route.urls {
            let body = match serde_json::to_vec(&params) {
                Ok(b) => b,
                Err(e) => {
                    return ChainEnd::Failed {
                        detail: format!("{hook}: params do not serialize: {e}"),
                        merged,
                    };
                }
            };
            if let Some(e) = gate(url) {
                return ChainEnd::Failed {
                    detail: format!("{hook} at {url}: {e}"),
                    merged,
                };
            }
            let started = Instant::now();
            let outcome = self.call(url, route.timeout, body).await;
            observe(url, &outcome, started.elapsed());
            let reply = match outcome {
                Ok(r) => r,
                Err(e) => {
                    return ChainEnd::Failed {
                        detail: format!("{hook} at {url}: {e}"),
                        merged,
                    };
                }
            };
            if let Some(end) = rejection(hook, &reply.result) {
                return end;
            }
            for (k, v) in reply.result {
                if CONTROL_KEYS.contains(&k.as_str()) {
                    continue;
                }
                if REASON_KEYS.contains(&k.as_str()) {
                    merged.insert(k, v);
                    continue;
                }
                if let Some(p) = params.as_object_mut().and_then(|p| p.get_mut(&k)) {
                    *p = v.clone();
                }
                merged.insert(k, v);
            }
        }
        ChainEnd::Proceed(merged)
    }
}

/// `drop: true` or `reject: true` ends the chain with the hook's code and
/// detail, or the hook's LeanCloud error when it gives none.
fn rejection(hook: Hook, result: &Map<String, Value>) -> Option<ChainEnd> {
    let yes = |k: &str| result.get(k).and_then(Value::as_bool) == Some(true);
    if !(yes("drop") || yes("reject")) {
        return None;
    }
    let default = hook.reject_error();
    let code = result
        .get("code")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| default.code().into());
    let detail = match result.get("detail") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => default.reason().to_owned(),
        Some(other) => other.to_string(),
    };
    Some(ChainEnd::Rejected { code, detail })
}

fn http_client(connect_timeout: Duration) -> Result<reqwest::Client, HookError> {
    crate::http::client(connect_timeout, None).map_err(HookError::Client)
}

fn route(cfg: &HooksSection, hook: Hook) -> Result<Option<Route>, HookError> {
    let o = cfg.override_for(hook);
    if o.is_some_and(|o| !o.enabled) {
        return Ok(None);
    }
    let texts: Vec<String> = match o {
        Some(o) if !o.urls.is_empty() => o.urls.clone(),
        _ => match &cfg.base_url {
            Some(base) => vec![format!(
                "{}/1.1/functions/{}",
                base.trim_end_matches('/'),
                hook.name()
            )],
            None => return Ok(None),
        },
    };
    let urls = texts
        .iter()
        .map(|t| {
            Url::parse(t).map_err(|e| HookError::Config {
                key: format!("hooks: {hook} URL {t:?}"),
                msg: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let timeout_ms = o.and_then(|o| o.timeout_ms).unwrap_or(cfg.timeout_ms);
    Ok(Some(Route {
        urls,
        timeout: Duration::from_millis(timeout_ms),
    }))
}

fn header_value(name: &'static str, value: &str) -> Result<HeaderValue, HookError> {
    HeaderValue::from_str(value).map_err(|_| HookError::Header { name })
}

fn request_error(e: reqwest::Error) -> CallError {
    // reqwest's own connect timeout; the overall deadline is ours.
    if e.is_timeout() {
        return CallError::Request(format!("connect timed out: {e}"));
    }
    CallError::Request(crate::http::error_text(&e))
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(ERROR_BODY_EXCERPT)]);
    if bytes.len() > ERROR_BODY_EXCERPT {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
