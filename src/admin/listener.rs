//! The admin API's own accept loop, in place of `axum::serve`, for what
//! that does not offer: a cap on open connections and hyper's header-read
//! timeout (which needs a timer that `axum::serve` does not set).
//!
//! - Over `limits.admin_max_connections`, a connection is answered at once
//!   with a canned 503 JSON and closed, without reading its request.
//! - A connection must send each request's head within
//!   `limits.admin_header_timeout_secs` (an idle keep-alive connection too),
//!   or hyper closes it.
//! - hyper's own head limits are set well above `limits.admin_max_header_bytes`,
//!   so that it is the router (`authenticate`) that answers an oversized head,
//!   with a JSON 431, rather than hyper with an empty one.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;

use super::AdminState;
use crate::guard::Limit;

/// The most headers a request may have; hyper's own ceiling is a multiple.
pub(super) const MAX_HEADERS: usize = 100;

/// Over-cap connections being answered at once; beyond this they are
/// dropped unanswered (a flood must not open a second unbounded queue).
const MAX_REFUSING: usize = 64;

/// How long an over-cap connection gets to take its 503.
const REFUSE_TIMEOUT: Duration = Duration::from_millis(500);

pub(super) struct Settings {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
}

/// Serves `app` on `listener` until `shutdown` fires, then lets every open
/// connection finish its request under way (the caller bounds the wait).
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    state: AdminState,
    settings: Settings,
    mut shutdown: broadcast::Receiver<()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut refusing = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, mostly: wait rather than spin.
                    tracing::debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.recv() => break,
        };
        while conns.try_join_next().is_some() {}
        while refusing.try_join_next().is_some() {}
        if settings.max_connections > 0 && conns.len() >= settings.max_connections {
            count(&state, Limit::AdminConnections);
            if refusing.len() < MAX_REFUSING {
                refusing.spawn(refuse(tcp));
            }
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
        conns.spawn(connection(
            tcp,
            app,
            state.clone(),
            settings.header_timeout,
            settings.max_header_bytes,
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    refusing.abort_all();
    while conns.join_next().await.is_some() {}
}

fn count(state: &AdminState, limit: Limit) {
    if let Ok(t) = state.target() {
        t.hub().guard.count(limit);
    }
}

async fn connection(
    tcp: TcpStream,
    app: Router,
    state: AdminState,
    header_timeout: Duration,
    max_header_bytes: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_headers(MAX_HEADERS * 4)
        .max_buf_size((max_header_bytes * 4).max(64 * 1024));
    let conn = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            count(&state, Limit::AdminHeaderTimeouts);
        }
        tracing::trace!(error = %e, "admin connection ended");
    }
}

/// Answers a connection over the cap, without reading its request.
async fn refuse(mut tcp: TcpStream) {
    let body = serde_json::json!({
        "code": 503,
        "error": "too many connections to the admin API (limits.admin_max_connections); try again shortly",
    })
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body.as_bytes()).await?;
        tcp.shutdown().await?;
        // Read what the client sent until it closes, so that closing does
        // not reset the connection before it has read the answer.
        let mut sink = [0u8; 1024];
        while tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// The size of a request's head as sent: request line and headers.
pub(super) fn head_bytes(req: &axum::extract::Request) -> usize {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 12;
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
}

/// The peer's address, as the accept loop recorded it.
pub(super) fn peer(req: &axum::extract::Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}
