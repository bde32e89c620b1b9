//! The door's accept loop: TCP, TLS when `gateway.tls` is on, then HTTP/1.1
//! with upgrades, in place of `axum::serve` for what that does not offer
//! (TLS, a header-read timeout and a connection cap). The router: `/v1/route`
//! and the SDKs' REST calls (`rest.rs`); any other path takes the
//! WebSocket upgrade, so whatever URL an app configured works.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use super::frame::{Dialect, SUBPROTOCOLS};
use super::{Shared, installations};

const READ_BUFFER: usize = 8 * 1024;

/// A connection must send its request head (and finish TLS) within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: broadcast::Sender<()>,
) {
    let app = Router::new()
        .route("/v1/route", get(super::rest::route))
        .route("/1.1/rtm/notifications", get(super::rest::notifications))
        .route(
            "/1.1/classes/_ConversationMemberInfo",
            get(super::rest::member_info),
        )
        .route("/1.1/rtm/sign", post(super::rest::sign))
        .route(
            "/1.1/installations",
            post(installations::create).get(installations::list),
        )
        .route(
            "/1.1/installations/{id}",
            put(installations::update)
                .get(installations::fetch)
                .delete(installations::delete),
        )
        .route(
            "/1.1/classes/_Installation",
            post(installations::create).get(installations::list),
        )
        .route(
            "/1.1/classes/_Installation/{id}",
            put(installations::update)
                .get(installations::fetch)
                .delete(installations::delete),
        )
        .route("/1.1/batch", post(installations::batch))
        .route("/1.1/batch/save", post(installations::batch_save))
        .fallback(upgrade)
        .with_state(Door {
            shared: shared.clone(),
            shutdown: shutdown.clone(),
        });
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let max = shared.hub.config.limits.max_connections as usize;
    let mut stop = shutdown.subscribe();
    let mut conns = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, mostly: wait rather than spin.
                    tracing::debug!(error = %e, "gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.recv() => break,
        };
        while conns.try_join_next().is_some() {}
        if max > 0 && conns.len() >= max {
            shared.hub.guard.count(crate::guard::Limit::Connections);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
        let tls = tls.clone();
        conns.spawn(async move {
            match tls {
                None => connection(tcp, app).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection(stream, app).await,
                        _ => tracing::trace!("gateway TLS handshake failed"),
                    }
                }
            }
        });
    }
    // Upgraded sockets run on (they have their own shutdown); plain HTTP
    // requests under way are cut.
    conns.abort_all();
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, app: Router) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    let conn = http
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::trace!(error = %e, "gateway connection ended");
    }
}

/// The router's state.
#[derive(Clone)]
pub(super) struct Door {
    pub shared: Arc<Shared>,
    pub shutdown: broadcast::Sender<()>,
}

#[derive(serde::Deserialize)]
struct UpgradeQuery {
    /// WeChat mini-programs cannot set the header (JS SDK 4).
    subprotocol: Option<String>,
}

async fn upgrade(
    State(door): State<Door>,
    axum::Extension(ConnectInfo(peer)): axum::Extension<ConnectInfo<SocketAddr>>,
    Query(q): Query<UpgradeQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return super::rest::not_found();
    };
    let ws = ws.protocols(SUBPROTOCOLS);
    let offered = ws.requested_protocols().count();
    let name = match (ws.selected_protocol(), q.subprotocol) {
        (Some(p), _) => p.to_str().unwrap_or_default().to_owned(),
        (None, Some(p)) => p,
        (None, None) if offered == 0 => SUBPROTOCOLS[0].to_owned(),
        (None, None) => {
            return (
                StatusCode::BAD_REQUEST,
                format!(
                    "unsupported subprotocol; this server speaks {}",
                    SUBPROTOCOLS.join(", ")
                ),
            )
                .into_response();
        }
    };
    let Some(dialect) = Dialect::of(&name) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("unsupported subprotocol {name}"),
        )
            .into_response();
    };
    // Oversized messages are refused by the socket with 4109, so the
    // WebSocket layer itself allows a little more.
    let max = (door.shared.hub.config.limits.max_frame_bytes as usize).saturating_mul(2);
    let shared = door.shared.clone();
    let shutdown = door.shutdown.subscribe();
    let done = shared.done.clone();
    // tungstenite zero-fills its read buffer before every read: 8 KiB
    // instead of its 128 KiB default saves that much per socket and ~5% of
    // the CPU per message (docs/PERFORMANCE.md); a larger frame still
    // gets room for its full length when it arrives.
    ws.read_buffer_size(READ_BUFFER)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            super::socket::run(shared, socket, dialect, peer.ip(), shutdown, done)
        })
}
