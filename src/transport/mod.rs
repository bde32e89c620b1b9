//! QUIC endpoints and framing. The session layer sees frames, never packets.

pub mod frame;
pub mod tls;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use frame::{FrameDecoder, FrameError, FrameReader};
pub use tls::{ServerIdentity, ServerTrust, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("quic crypto setup: {0}")]
    Crypto(String),
    #[error("bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
}

/// QUIC's own idle timeout sits above the protocol's so that the server's
/// READ_TIMEOUT (4107) close, with its code, is what a silent client sees.
fn transport_config(app_idle: Duration, keep_alive: bool) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    let quic_idle = app_idle + Duration::from_secs(30);
    if let Ok(idle) = quinn::IdleTimeout::try_from(quic_idle) {
        t.max_idle_timeout(Some(idle));
    }
    // Clients keep NAT bindings alive (their pings do too); a server that
    // also sent keep-alives would wake for every idle connection.
    t.keep_alive_interval(keep_alive.then(|| Duration::from_secs(15)));
    t.max_concurrent_bidi_streams(1u8.into());
    t.max_concurrent_uni_streams(0u8.into());
    t.datagram_receive_buffer_size(Some(64 * 1024));
    t
}

pub fn server_endpoint(
    addr: SocketAddr,
    identity: ServerIdentity,
    app_idle: Duration,
) -> Result<quinn::Endpoint, TransportError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(identity.server_config()?)
        .map_err(|e| TransportError::Crypto(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport_config(app_idle, false)));
    let bind = |source| TransportError::Bind { addr, source };
    let socket = std::net::UdpSocket::bind(addr).map_err(bind)?;
    socket.set_nonblocking(true).map_err(bind)?;
    // One socket carries every client: ask for buffers as large as the
    // sysctl ceiling allows (systemd/99-tidings-udp.conf raises it).
    match udp::request_buffers(&socket, SERVER_UDP_BUFFER) {
        Ok((recv, send)) => tracing::debug!(recv, send, "udp socket buffers"),
        Err(e) => tracing::warn!(error = %e, "could not size udp socket buffers"),
    }
    let runtime =
        quinn::default_runtime().ok_or_else(|| bind(std::io::Error::other("no async runtime")))?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(cfg), socket, runtime).map_err(bind)
}

/// What the server asks the kernel for; the kernel caps it at `*mem_max`.
const SERVER_UDP_BUFFER: usize = 7_500_000;

/// A client endpoint bound to the same address family as `server`.
pub fn client_endpoint(
    server: SocketAddr,
    trust: ServerTrust,
) -> Result<quinn::Endpoint, TransportError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls::client_config(trust)?)
        .map_err(|e| TransportError::Crypto(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    // Clients ping well inside any server idle timeout; the QUIC one only
    // needs to outlive a quiet network.
    cfg.transport_config(Arc::new(transport_config(Duration::from_secs(3600), true)));
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let mut ep = quinn::Endpoint::client(bind)
        .map_err(|source| TransportError::Bind { addr: bind, source })?;
    ep.set_default_client_config(cfg);
    Ok(ep)
}

/// The application close code carried by a connection error, if the peer closed with one.
pub fn close_code(err: &quinn::ConnectionError) -> Option<u16> {
    match err {
        quinn::ConnectionError::ApplicationClosed(c) => {
            u16::try_from(c.error_code.into_inner()).ok()
        }
        _ => None,
    }
}
