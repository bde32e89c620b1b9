//! The LeanCloud door: LeanCloud's own IM SDKs (JS, Java/Android, Swift,
//! ObjC, Flutter, C#/Unity) connect here unchanged, over WebSocket with
//! LeanCloud's protobuf protocol (`lc.protobuf2.3`), and meet the same
//! conversations, rules and hooks as QUIC clients.
//!
//! # The path of one SDK command
//! `listener.rs` accepts TCP (TLS when `gateway.tls`) and serves HTTP:
//! the router `/v1/route` and the REST calls the SDKs make (`rest.rs`), and
//! the WebSocket upgrade, which picks the subprotocol (`frame.rs`). Each
//! socket is one task (`socket.rs`) that decodes a message into a
//! `GenericCommand` (`proto.rs`, generated from `proto/messages2.proto`),
//! answers `echo`, and routes the command by `peerId` to that client's
//! session: `session/open` starts one (`open.rs` makes its Login), and
//! `inbound.rs` turns the rest into the engine's commands, each with the
//! [`outbound::Pending`] its answer is shaped by. The session is the
//! engine every door shares (`crate::session`), through `peer.rs`'s
//! `Door`; its answers and events come back through `peer.rs`'s `Outlet`,
//! where `outbound.rs` makes them LeanCloud commands again. Reads that are
//! not one engine command (queries with a `where`, counts) are answered
//! by `local.rs`, with `query.rs`'s `_Conversation` rows.

mod frame;
mod inbound;
pub mod installations;
mod listener;
mod local;
mod open;
mod outbound;
mod peer;
pub mod proto;
pub mod query;
mod rest;
mod socket;
mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::hub::Hub;

pub use frame::SUBPROTOCOLS;

/// In the data dir: the door's bound address, for local tools and tests
/// (as `server.addr` is for QUIC clients).
pub const ADDR_FILE: &str = "gateway.addr";

/// What every socket of the door shares.
pub(crate) struct Shared {
    pub hub: Arc<Hub>,
    pub tokens: Arc<tokens::Tokens>,
    /// Each session holds a clone: the server's shutdown waits for all.
    pub done: mpsc::Sender<()>,
    /// `wss://` here (`gateway.tls`), for the router's answer.
    pub tls: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("gateway.listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gateway TLS: {0}")]
    Tls(String),
}

/// The running door.
pub struct Gateway {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Gateway {
    /// Binds first, so a port in use stops the start before anything runs.
    pub async fn bind(addr: SocketAddr) -> Result<TcpListener, GatewayError> {
        TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })
    }

    /// Serves on `listener` until `shutdown`. `tls` is the certificate for
    /// `wss://` when `gateway.tls` is on.
    pub fn start_on(
        hub: Arc<Hub>,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: broadcast::Sender<()>,
        done: mpsc::Sender<()>,
    ) -> Result<Gateway, GatewayError> {
        let addr = listener.local_addr().map_err(|source| GatewayError::Bind {
            addr: hub.config.gateway.listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            tokens: Arc::new(tokens::Tokens::new(
                hub.config.gateway.session_token_ttl_secs,
            )),
            hub,
            done,
            tls: tls.is_some(),
        });
        let task = tokio::spawn(listener::serve(listener, shared, tls, shutdown));
        Ok(Gateway { addr, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits (bounded) for the listener to stop after the shutdown signal.
    pub async fn join(self, limit: std::time::Duration) {
        let mut task = self.task;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
        }
    }
}
