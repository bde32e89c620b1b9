//! The admin REST API: LeanCloud's `/1.2/rtm` paths and JSON shapes on a
//! TCP listener of its own (`[admin]`, `127.0.0.1:7451` by default), so an
//! app backend written for LeanCloud moves by changing its base URL.
//!
//! Every path except `/healthz` and `/metrics` needs `X-LC-Id: <app id>`
//! and `X-LC-Key: <master key>,master`; anything else is answered 401.
//! Errors are `{"code", "error"}` with LeanCloud's codes (see [`error`]).
//! The probe and the scrape stay open because load balancers and
//! Prometheus rarely send custom headers, and they reveal no content.
//!
//! | path | |
//! |---|---|
//! | `GET /healthz` | the store takes writes and the commit pipeline answered a durable barrier within the last second; `"status": "damaged"` names damaged conversations |
//! | `GET /metrics` | Prometheus text |
//! | `POST/GET /1.2/rtm/service-conversations` | create, list |
//! | `GET/PUT/DELETE …/{id}` | one system conversation |
//! | `POST/GET …/{id}/subscribers`, `DELETE …/subscribers/{client}`, `GET …/subscribers/count` | subscribers |
//! | `POST …/{id}/messages` | send to chosen subscribers |
//! | `POST …/{id}/broadcasts` | broadcast to its subscribers |
//! | `POST/GET /1.2/rtm/broadcasts`, `DELETE …/{msg_id}` | broadcast to every client, list, stop |
//! | `GET /1.1/classes/_SysMessage`, `GET …/{id}/sys-messages` | clients' messages to system conversations |
//! | `GET …/{id}/subscribers/{client}/messages` | what it sent one subscriber |
//! | `GET /1.2/rtm/conversations/{id}/messages` | any conversation's history |
//! | `GET /1.2/rtm/clients/{client}/messages` | what a client sent |
//! | `GET /1.2/rtm/clients/{client}/online`, `POST /1.2/rtm/clients/online-check` | presence |
//! | `POST /1.2/rtm/clients/{client}/kick` | close its devices with 4115 |
//! | `GET /1.2/rtm/stats` | online and daily user counts |
//! | `GET /1.2/rtm/hooks/dead-letters`, `POST …/retry`, `POST …/purge` | after-hook calls given up on |

mod broadcasts;
mod clients;
mod dead_letters;
mod devices;
pub mod error;
mod history;
mod listener;
mod messages;
mod service;
mod sys_messages;

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::hooks::HookStats;
use crate::hub::Hub;
use crate::metrics::{Exposition, METRICS};
use error::{ApiError, NO_ROUTE};

/// Written into the data dir at start: the admin API's bound address, for
/// `tidings admin`.
pub const ADDR_FILE: &str = "admin.addr";

/// How long `/healthz` waits for the commit pipeline.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// A durable barrier younger than this answers `/healthz` without a new
/// one: a probe storm costs at most one flush per this period.
const PROBE_FRESH: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What the admin API serves from; the running server owns it.
pub struct Target {
    hub: Arc<Hub>,
    /// The QUIC endpoint, for its connection count.
    endpoint: Option<quinn::Endpoint>,
    /// When `/healthz` last saw a durable barrier. Held across the barrier,
    /// so concurrent probes share one.
    probed: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl Target {
    pub fn new(hub: Arc<Hub>, endpoint: Option<quinn::Endpoint>) -> Arc<Target> {
        Arc::new(Target {
            hub,
            endpoint,
            probed: tokio::sync::Mutex::new(None),
        })
    }

    fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Open QUIC connections, logged in or not yet.
    fn connections(&self) -> usize {
        self.endpoint.as_ref().map_or(0, |e| e.open_connections())
    }
}

/// The router's state: the target, held weakly. An HTTP connection task
/// can outlive the admin API's shutdown by a moment; it must not keep the
/// store (and its file lock) or the UDP socket open after the server is
/// gone, or a restart on the same data dir could fail.
#[derive(Clone)]
pub struct AdminState(Weak<Target>);

impl AdminState {
    pub fn new(target: &Arc<Target>) -> Self {
        AdminState(Arc::downgrade(target))
    }

    fn target(&self) -> Result<Arc<Target>, ApiError> {
        self.0.upgrade().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                crate::protocol::ErrorCode::ServerShutdown.code(),
                "the server is shutting down",
            )
        })
    }
}

/// A handler's hold on the target for the length of one request.
pub struct Served(pub Arc<Target>);

impl FromRequestParts<AdminState> for Served {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, state: &AdminState) -> Result<Self, ApiError> {
        state.target().map(Served)
    }
}

/// A running admin API.
pub struct AdminServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Binds `listen` and serves until `shutdown` fires; requests under way
    /// then finish, up to the caller's patience (see [`AdminServer::join`]).
    pub async fn start(
        state: AdminState,
        listen: SocketAddr,
        shutdown: broadcast::Receiver<()>,
    ) -> Result<AdminServer, AdminError> {
        let listener = Self::bind(listen).await?;
        Self::start_on(state, listener, shutdown)
    }

    /// Binds the admin address alone, so a server can find a port in use
    /// before it creates or opens anything.
    pub async fn bind(listen: SocketAddr) -> Result<TcpListener, AdminError> {
        TcpListener::bind(listen)
            .await
            .map_err(|source| AdminError::Bind {
                addr: listen,
                source,
            })
    }

    /// Serves on a listener from [`AdminServer::bind`], with its connection
    /// cap and header timeout (`listener`).
    pub fn start_on(
        state: AdminState,
        listener: TcpListener,
        shutdown: broadcast::Receiver<()>,
    ) -> Result<AdminServer, AdminError> {
        let addr = listener.local_addr().map_err(|source| AdminError::Bind {
            addr: ([0, 0, 0, 0], 0).into(),
            source,
        })?;
        let limits = state
            .target()
            .map(|t| t.hub().config.limits.clone())
            .unwrap_or_default();
        let settings = listener::Settings {
            max_connections: limits.admin_max_connections as usize,
            header_timeout: Duration::from_secs(limits.admin_header_timeout_secs),
            max_header_bytes: limits.admin_max_header_bytes as usize,
        };
        let app = router(state.clone());
        let task = tokio::spawn(listener::serve(listener, app, state, settings, shutdown));
        Ok(AdminServer { addr, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the graceful stop, at most `grace`; then cuts what is left.
    pub async fn join(mut self, grace: Duration) {
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            tracing::warn!(
                "admin API requests still running after the grace period; dropping them"
            );
            self.task.abort();
        }
    }
}

/// Every route, behind the credentials check.
pub fn router(state: AdminState) -> Router {
    let sc = "/1.2/rtm/service-conversations";
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(sc, post(service::create).get(service::list))
        .route(
            &format!("{sc}/{{id}}"),
            get(service::get)
                .put(service::update)
                .delete(service::delete),
        )
        .route(
            &format!("{sc}/{{id}}/subscribers"),
            post(service::subscribe).get(service::subscribers),
        )
        .route(
            &format!("{sc}/{{id}}/subscribers/count"),
            get(service::subscriber_count).delete(service::unsubscribe_count),
        )
        .route(
            &format!("{sc}/{{id}}/subscribers/{{client}}"),
            axum::routing::delete(service::unsubscribe),
        )
        .route(
            &format!("{sc}/{{id}}/subscribers/{{client}}/messages"),
            get(history::subscriber),
        )
        .route(&format!("{sc}/{{id}}/messages"), post(service::send))
        .route(
            &format!("{sc}/{{id}}/messages/{{mid}}"),
            put(messages::edit::<true>),
        )
        .route(
            &format!("{sc}/{{id}}/messages/{{mid}}/recall"),
            put(messages::recall::<true>),
        )
        .route(
            &format!("{sc}/{{id}}/broadcasts"),
            post(broadcasts::service),
        )
        .route(
            &format!("{sc}/{{id}}/sys-messages"),
            get(sys_messages::of_service),
        )
        .route(
            "/1.2/rtm/broadcasts",
            post(broadcasts::global).get(broadcasts::list),
        )
        .route(
            "/1.2/rtm/broadcasts/{msg_id}",
            axum::routing::delete(broadcasts::delete),
        )
        .route("/1.1/classes/_SysMessage", get(sys_messages::query))
        .route(
            "/1.2/rtm/conversations/{id}/messages",
            get(history::conversation),
        )
        .route(
            "/1.2/rtm/conversations/{id}/messages/{mid}",
            put(messages::edit::<false>),
        )
        .route(
            "/1.2/rtm/conversations/{id}/messages/{mid}/recall",
            put(messages::recall::<false>),
        )
        .route("/1.2/rtm/messages", get(history::app))
        .route(
            "/1.2/rtm/clients/{client}/unread-count",
            get(clients::unread_count),
        )
        .route("/1.2/rtm/clients/{client}/messages", get(history::client))
        .route("/1.2/rtm/clients/{client}/online", get(clients::online))
        .route("/1.2/rtm/clients/online-check", post(clients::online_check))
        .route("/1.2/rtm/clients/check-online", post(clients::online_check))
        .route("/1.2/rtm/clients/{client}/kick", post(clients::kick))
        .route("/1.2/rtm/clients/{client}/devices", get(devices::list))
        .route("/1.2/rtm/clients/{client}/push", post(devices::push))
        .route("/1.2/rtm/stats", get(clients::stats))
        .route("/1.2/rtm/hooks/dead-letters", get(dead_letters::list))
        .route(
            "/1.2/rtm/hooks/dead-letters/retry",
            post(dead_letters::retry),
        )
        .route(
            "/1.2/rtm/hooks/dead-letters/purge",
            post(dead_letters::purge),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, NO_ROUTE, "no such endpoint")
}

async fn no_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        StatusCode::METHOD_NOT_ALLOWED.as_u16(),
        "method not allowed here",
    )
}

/// LeanCloud's master-key check: `X-LC-Id` is the app id, and either
/// `X-LC-Key` is `<master key>,master` or `X-LC-Sign` is
/// `<md5(timestamp + master key)>,<timestamp ms>,master` (what LeanCloud's
/// SDKs send by default). The app key is not enough here.
fn authorized(target: &Target, headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let kind = target.hub().auth.credentials().check_client_key(
        header("x-lc-id"),
        header("x-lc-key"),
        header("x-lc-sign"),
        crate::util::now_ms(),
    );
    kind == Ok(crate::auth::KeyKind::Master)
}

/// Before any route: the head size, then credentials; requests without
/// valid ones (the open probes included) are rate-limited per address.
async fn authenticate(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let open = matches!(req.uri().path(), "/healthz" | "/metrics");
    let refusal = match state.target() {
        Ok(t) => check_request(&t, &req, open),
        Err(e) => return e.into_response(),
    };
    match refusal {
        None => next.run(req).await,
        Some(r) => r,
    }
}

fn check_request(t: &Target, req: &Request, open: bool) -> Option<Response> {
    use crate::guard::Limit;
    let guard = &t.hub().guard;
    let max = t.hub().config.limits.admin_max_header_bytes as usize;
    let size = listener::head_bytes(req);
    if size > max || req.headers().len() > listener::MAX_HEADERS {
        guard.count(Limit::AdminHeaders);
        return Some(
            ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE.as_u16(),
                format!(
                    "request head of {size} bytes and {} headers; at most {max} bytes \
                     (limits.admin_max_header_bytes) and {} headers",
                    req.headers().len(),
                    listener::MAX_HEADERS
                ),
            )
            .into_response(),
        );
    }
    if authorized(t, req.headers()) {
        return None;
    }
    if let Some(peer) = listener::peer(req)
        && let Err(wait) = guard.admin_unauthenticated(peer.ip())
    {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS.as_u16(),
            "too many requests without credentials from this address \
             (limits.admin_unauthenticated_per_sec)",
        )
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, secs.max(1).into());
        return Some(r);
    }
    (!open).then(|| ApiError::unauthorized().into_response())
}

/// 200 while the store takes writes and a barrier through the commit
/// pipeline was durable within [`PROBE_FRESH`], so a wedged disk or commit
/// thread shows here; 503 otherwise. A storm of probes shares barriers: it
/// costs at most one flush per [`PROBE_FRESH`], not one per call.
///
/// Damaged conversations (records that failed to read, `store::check`)
/// answer 200 with `"status": "damaged"`: the server still takes writes and
/// serves every other conversation, and neither a load balancer taking it
/// out nor a restart would mend the files; an operator must (`tidings store
/// check`). Alert on the status or on `tidings_store_damaged_conversations`.
async fn healthz(Served(state): Served) -> Response {
    if let Some(unhealthy) = store_unhealthy(&state.hub().store) {
        return unhealthy;
    }
    let mut probed = state.probed.lock().await;
    if let Some(at) = *probed
        && at.elapsed() < PROBE_FRESH
    {
        return healthy(&state, at);
    }
    match tokio::time::timeout(HEALTH_TIMEOUT, state.hub().pipeline.barrier()).await {
        Ok(Ok(())) => {
            let at = std::time::Instant::now();
            *probed = Some(at);
            healthy(&state, at)
        }
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::protocol::ErrorCode::InternalError.code(),
            "the commit pipeline did not answer in time",
        )
        .into_response(),
    }
}

fn healthy(state: &Target, durable_at: std::time::Instant) -> Response {
    if let Some(damaged) = store_damage(&state.hub().store) {
        return damaged;
    }
    axum::Json(json!({
        "status": "ok",
        "durableMsAgo": durable_at.elapsed().as_millis() as u64,
    }))
    .into_response()
}

/// 503 while the store refuses writes (`store::health`): a load balancer
/// or monitor then knows this server cannot take messages.
fn store_unhealthy(store: &crate::store::Store) -> Option<Response> {
    use crate::store::health::Health;
    let (status, detail) = match store.health() {
        Health::Ok => return None,
        Health::LowSpace { free, reserve } => (
            "disk_low",
            format!(
                "{free} bytes free, under store.min_free_mb ({reserve} bytes): writes are refused"
            ),
        ),
        Health::Failed { reason } => ("store_failed", reason),
    };
    Some(
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "status": status,
                "code": crate::protocol::ErrorCode::InternalError.code(),
                "error": detail,
            })),
        )
            .into_response(),
    )
}

/// At most this many damaged conversations are named in `/healthz`.
const DAMAGED_LISTED: usize = 100;

fn store_damage(store: &crate::store::Store) -> Option<Response> {
    let damaged = store.damaged_conversations();
    if damaged.is_empty() {
        return None;
    }
    let listed: Vec<String> = damaged
        .iter()
        .take(DAMAGED_LISTED)
        .map(|(c, _)| c.to_string())
        .collect();
    Some(
        axum::Json(json!({
            "status": "damaged",
            "damaged_conversations": damaged.len(),
            "conversations": listed,
            "error": format!(
                "{} conversation(s) have store records that cannot be read; \
                 the rest are served. See `tidings store check`",
                damaged.len()
            ),
        }))
        .into_response(),
    )
}

async fn metrics(Served(state): Served) -> Response {
    let hub = state.hub();
    let mut out = Exposition::default();
    out.gauge(
        "tidings_connections",
        "Open QUIC connections, logged in or not yet.",
        state.connections() as u64,
    );
    out.gauge(
        "tidings_store_health",
        "0: the store takes writes; 1: disk space under store.min_free_mb, writes refused; \
         2: a write or flush failed, the server is stopping.",
        match hub.store.health() {
            crate::store::health::Health::Ok => 0,
            crate::store::health::Health::LowSpace { .. } => 1,
            crate::store::health::Health::Failed { .. } => 2,
        },
    );
    out.gauge(
        "tidings_store_damaged_conversations",
        "Conversations found with store records that cannot be read since start \
         (see `tidings store check`).",
        hub.store.damaged_conversation_count(),
    );
    out.gauge(
        "tidings_conversations",
        "Conversations in the table.",
        hub.convs.len() as u64,
    );
    out.gauge(
        "tidings_broadcast_fan_outs",
        "Broadcast fan-outs still handing out their message.",
        hub.fan_outs.load(std::sync::atomic::Ordering::Relaxed),
    );
    METRICS.render(&mut out);
    out.labeled(
        "tidings_limited_total",
        "Requests, logins and connections refused by a limit or quota, by limit \
         (quic_retry: handshakes asked to prove their address first).",
        "counter",
        crate::guard::Limit::ALL.iter().map(|l| {
            (
                vec![("limit", l.name().to_owned())],
                hub.guard.hits(*l) as f64,
            )
        }),
    );
    render_hooks(&mut out, &hub.hooks.metrics());
    render_push(&mut out, &hub.notifier);
    out.gauge(
        "tidings_hook_outbox_records",
        "After-hook calls waiting in the on-disk outbox.",
        hub.hooks.outbox_len(),
    );
    let (open, undefined) = hub.hooks.endpoint_counts();
    out.gauge(
        "tidings_hook_breakers_open",
        "Hook endpoints whose circuit breaker is open.",
        open,
    );
    out.gauge(
        "tidings_hook_endpoints_undefined",
        "Hook endpoints known not to define their hook, not called until hooks.undefined_retry_secs pass.",
        undefined,
    );
    out.gauge(
        "tidings_hook_dead_letters",
        "After-hook calls in the dead-letter list.",
        hub.hooks.dead_letters_len(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out.finish(),
    )
        .into_response()
}

/// Push counters; none when push is off, so a dashboard can tell "off"
/// from "nothing sent".
fn render_push(out: &mut Exposition, notifier: &crate::notify::Notifier) {
    let Some((stats, depths)) = notifier.stats() else {
        return;
    };
    let pair = |p: &'static str, k: &'static str, v: &'static str, n: u64| {
        (
            vec![("provider", p.to_owned()), (k, v.to_owned())],
            n as f64,
        )
    };
    out.labeled(
        "tidings_push_sent_total",
        "Pushes sent, by provider and final outcome (retry: still failing when retries \
         or the push's expiry ran out).",
        "counter",
        stats.sent().map(|(p, r, n)| pair(p, "result", r, n)),
    );
    out.labeled(
        "tidings_push_dropped_total",
        "Pushes dropped before sending: the provider's queue was full, or the body \
         could not fit 4 KB.",
        "counter",
        stats.dropped().map(|(p, r, n)| pair(p, "reason", r, n)),
    );
    out.counter(
        "tidings_push_unroutable_total",
        "Devices that got no push because no provider serves their platform.",
        stats.unroutable.load(std::sync::atomic::Ordering::Relaxed),
    );
    out.counter(
        "tidings_push_tokens_removed_total",
        "Device registrations deleted because a provider called their token dead.",
        stats
            .tokens_removed
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    out.labeled(
        "tidings_push_queue_depth",
        "Pushes waiting in each provider's queue.",
        "gauge",
        depths
            .iter()
            .map(|(v, d)| (vec![("provider", v.label().to_owned())], *d as f64)),
    );
}

fn render_hooks(out: &mut Exposition, stats: &[HookStats]) {
    type Field = fn(&HookStats) -> u64;
    let counters: [(&str, &str, Field); 10] = [
        (
            "tidings_hook_calls_total",
            "HTTP calls to hook endpoints, retries included.",
            |s| s.calls,
        ),
        (
            "tidings_hook_failures_total",
            "Failed hook calls, timeouts included.",
            |s| s.failures,
        ),
        (
            "tidings_hook_timeouts_total",
            "Hook calls that hit their timeout.",
            |s| s.timeouts,
        ),
        (
            "tidings_hook_rejections_total",
            "Before-hook chains that ended in drop or reject.",
            |s| s.rejections,
        ),
        (
            "tidings_hook_dropped_total",
            "After-hook calls dropped because the outbox was full.",
            |s| s.dropped,
        ),
        (
            "tidings_hook_undefined_learned_total",
            "Times an endpoint was found not to define the hook (HTTP 404 or code 1).",
            |s| s.undefined_learned,
        ),
        (
            "tidings_hook_undefined_skipped_total",
            "Calls not made because the endpoint does not define the hook.",
            |s| s.undefined_skipped,
        ),
        (
            "tidings_hook_breaker_opened_total",
            "Times an endpoint's circuit breaker opened.",
            |s| s.breaker_opened,
        ),
        (
            "tidings_hook_short_circuited_total",
            "Calls not made because the endpoint's circuit breaker was open.",
            |s| s.short_circuited,
        ),
        (
            "tidings_hook_dead_lettered_total",
            "After-hook calls moved to the dead-letter list.",
            |s| s.dead_lettered,
        ),
    ];
    let label = |s: &HookStats| vec![("hook", s.hook.name().to_owned())];
    for (name, help, field) in counters {
        out.labeled(
            name,
            help,
            "counter",
            stats.iter().map(|s| (label(s), field(s) as f64)),
        );
    }
    out.labeled(
        "tidings_hook_outbox_depth",
        "After-hook calls of this hook waiting in the outbox.",
        "gauge",
        stats.iter().map(|s| (label(s), s.outbox_depth as f64)),
    );
    out.labeled(
        "tidings_hook_latency_seconds",
        "Hook call latency quantiles since start.",
        "gauge",
        stats.iter().flat_map(|s| {
            [("0.5", s.latency_p50_us), ("0.99", s.latency_p99_us)].map(|(q, us)| {
                (
                    vec![
                        ("hook", s.hook.name().to_owned()),
                        ("quantile", q.to_owned()),
                    ],
                    us as f64 / 1e6,
                )
            })
        }),
    );
}
