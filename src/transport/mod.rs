//! QUIC endpoints and framing. The session layer sees frames, never packets.

pub mod stream;
pub mod tls;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use stream::{FrameReader, StreamError};
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

/// `limits.keep_alive_secs`' default, for endpoints made without a config.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Keep-alive intervals without a single packet from the peer before QUIC
/// gives the connection up: one lost keep-alive (or its answer) is not a
/// dead peer, three in a row are.
const KEEP_ALIVES_PER_IDLE_TIMEOUT: u32 = 3;

/// How long a peer that vanished without closing (killed, unplugged) goes
/// unnoticed: QUIC's idle timeout. Both ends send keep-alives, and any
/// packet (an ack of a keep-alive too) restarts it, so a live but quiet
/// peer never reaches it; the server's own `limits.idle_timeout_secs`
/// (READ_TIMEOUT, 4107) still closes a live peer that sends no frames.
pub fn dead_peer_timeout(keep_alive: Duration) -> Duration {
    keep_alive * KEEP_ALIVES_PER_IDLE_TIMEOUT
}

fn transport_config(keep_alive: Duration) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // The negotiated timeout is the smaller of the two ends': the server's
    // bounds what every client sees.
    if let Ok(idle) = quinn::IdleTimeout::try_from(dead_peer_timeout(keep_alive)) {
        t.max_idle_timeout(Some(idle));
    }
    t.keep_alive_interval(Some(keep_alive));
    t.max_concurrent_bidi_streams(1u8.into());
    t.max_concurrent_uni_streams(0u8.into());
    t.datagram_receive_buffer_size(Some(64 * 1024));
    t
}

pub fn server_endpoint(
    addr: SocketAddr,
    identity: ServerIdentity,
    keep_alive: Duration,
) -> Result<quinn::Endpoint, TransportError> {
    server_endpoint_on(bind_udp(addr)?, identity, keep_alive)
}

/// Binds the server's UDP socket alone, so a server can find a port in use
/// before it creates or opens anything.
pub fn bind_udp(addr: SocketAddr) -> Result<std::net::UdpSocket, TransportError> {
    let bind = |source| TransportError::Bind { addr, source };
    let socket = std::net::UdpSocket::bind(addr).map_err(bind)?;
    socket.set_nonblocking(true).map_err(bind)?;
    Ok(socket)
}

/// The server endpoint on a socket from [`bind_udp`].
pub fn server_endpoint_on(
    socket: std::net::UdpSocket,
    identity: ServerIdentity,
    keep_alive: Duration,
) -> Result<quinn::Endpoint, TransportError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(identity.server_config()?)
        .map_err(|e| TransportError::Crypto(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport_config(keep_alive)));
    // One socket carries every client: ask for buffers as large as the
    // sysctl ceiling allows (systemd/99-tidings-udp.conf raises it).
    endpoint_on(socket, SERVER_UDP_BUFFER, Some(cfg))
}

/// A quinn endpoint on `socket` after asking the kernel for `buffer` bytes
/// of UDP buffers (a failure only leaves the defaults, and is logged).
fn endpoint_on(
    socket: std::net::UdpSocket,
    buffer: usize,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, TransportError> {
    let addr = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let bind = |source| TransportError::Bind { addr, source };
    match udp::request_buffers(&socket, buffer) {
        Ok((recv, send)) => tracing::debug!(recv, send, "udp socket buffers"),
        Err(e) => tracing::warn!(error = %e, "could not size udp socket buffers"),
    }
    let runtime =
        quinn::default_runtime().ok_or_else(|| bind(std::io::Error::other("no async runtime")))?;
    quinn::Endpoint::new(endpoint_config(), server, socket, runtime).map_err(bind)
}

/// Connection IDs drawn from all 64 bits. quinn's default generator fills
/// only 24 of its 8 bytes at random (the rest is a keyed hash that lets it
/// drop stray packets cheaply), and it checks a new connection's IDs against
/// the live ones but not the source ID of a Retry. With ~6,000 connections
/// holding a few IDs each, about 1 Retry in 500 named an ID a live
/// connection already had: the client's next Initial then went to that
/// connection, which dropped it, and the handshake hung until the client
/// gave up (docs/PERFORMANCE.md; quinn-rs/quinn#2883 is the small space).
/// Random 64-bit IDs make that as unlikely as any other collision; the
/// cost is that a stray short-header packet gets a (rate-limited)
/// stateless reset instead of being dropped.
fn endpoint_config() -> quinn::EndpointConfig {
    let mut cfg = quinn::EndpointConfig::default();
    cfg.cid_generator(new_cid_generator);
    cfg
}

fn new_cid_generator() -> Box<dyn quinn::ConnectionIdGenerator> {
    Box::new(quinn_proto::RandomConnectionIdGenerator::new(CID_LEN))
}

/// As long as quinn's default, so packets are no larger.
const CID_LEN: usize = 8;

/// What the server asks the kernel for; the kernel caps it at `*mem_max`.
const SERVER_UDP_BUFFER: usize = 7_500_000;
/// What a client endpoint asks for: less, as it carries fewer connections.
const CLIENT_UDP_BUFFER: usize = 2 * 1024 * 1024;

/// A client endpoint bound to the same address family as `server`, with
/// the default keep-alive.
pub fn client_endpoint(
    server: SocketAddr,
    trust: ServerTrust,
) -> Result<quinn::Endpoint, TransportError> {
    client_endpoint_with(server, trust, DEFAULT_KEEP_ALIVE)
}

/// [`client_endpoint`] with a chosen keep-alive interval: a dead server is
/// noticed after [`dead_peer_timeout`] of it (or of the server's, if smaller).
pub fn client_endpoint_with(
    server: SocketAddr,
    trust: ServerTrust,
    keep_alive: Duration,
) -> Result<quinn::Endpoint, TransportError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls::client_config(trust)?)
        .map_err(|e| TransportError::Crypto(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport_config(keep_alive)));
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    // A client endpoint may carry many connections (the bench puts 200 on
    // one) and a chat room's burst reaches them all at once: the default
    // 208 KiB buffer drops packets, which then cost retransmissions.
    let mut ep = endpoint_on(bind_udp(bind)?, CLIENT_UDP_BUFFER, None)?;
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

/// The QUIC application close code for a LeanCloud error code (a varint;
/// ours always fit).
pub fn app_close_code(code: crate::protocol::ErrorCode) -> quinn::VarInt {
    quinn::VarInt::from(code.code())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    /// 100,000 IDs from quinn's default 24-bit space repeat about 300 times
    /// (the birthday bound); from 64 bits, never in practice.
    #[test]
    fn connection_ids_do_not_repeat_across_a_busy_server() {
        let mut generator = super::new_cid_generator();
        assert_eq!(generator.cid_len(), super::CID_LEN);
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            assert!(seen.insert(generator.generate_cid()));
        }
    }
}
