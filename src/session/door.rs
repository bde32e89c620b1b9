//! What a front door gives the session engine: decoded client frames in,
//! server frames out, a close. The engine never sees a socket or a byte
//! encoding; the QUIC door (`quic.rs`) is the one implementation today.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::backlog::Backlog;
use crate::core::outbound::{DirectOut, TransientFrames};
use crate::protocol::{ClientFrame, ErrorBody, ErrorCode, Event, Reply};

/// One decoded input from the peer.
#[derive(Debug)]
pub enum Incoming {
    /// A frame from the reliable, ordered channel (the stream).
    Frame(ClientFrame),
    /// A fire-and-forget input (a QUIC datagram). `None`: it did not decode;
    /// it is dropped, but it still shows the peer is alive. Only typing
    /// notices are honoured on this path.
    Unreliable(Option<ClientFrame>),
}

/// Which inputs the engine wants now: before login only frames; while the
/// backlog is over its bound, only unreliable inputs (the door must then
/// not read its reliable channel, so the transport's flow control holds the
/// peer back).
#[derive(Debug, Clone, Copy)]
pub struct Want {
    pub frames: bool,
    pub unreliable: bool,
}

/// Why a door gives no more input.
#[derive(Debug, thiserror::Error)]
pub enum DoorError {
    /// The peer sent bytes that are not a frame (too long, unparseable):
    /// the engine closes with `code`.
    #[error("{reason}")]
    Refused { code: ErrorCode, reason: String },
    /// The peer went away, cleanly or not.
    #[error("connection lost")]
    Lost,
}

/// The write half of a door, cloned into the tasks that answer sends.
/// Writes never block: they queue, and [`Backlog`] counts what is queued.
pub trait Outlet: Clone + Send + Sync + 'static {
    /// Queues the answer to request `id`.
    fn reply(&self, id: u64, result: Result<Reply, ErrorBody>);
    /// Queues an event; `false` when it could not be encoded (logged).
    fn event(&self, ev: Event) -> bool;
    /// Queues a frame already encoded for this door. The fan-out encodes a
    /// stored message once and hands the same bytes to every receiver
    /// (`core::outbound`); features hand over encoded frames the same way.
    /// Those bytes are the QUIC encoding today: a second door with its own
    /// encoding gets the `Message` (or `Event`) beside the bytes and encodes
    /// it once per message for its own receivers (the next issue); nothing
    /// in this trait ties the engine to the bytes' format.
    fn encoded(&self, frame: Bytes);
    /// What this connection holds in memory, for the engine's bound.
    fn backlog(&self) -> &Arc<Backlog>;
    /// Ends the output and waits, at most `limit`, until the peer has read
    /// it all, so that a close right after does not discard the last frames.
    fn drain(&self, limit: Duration) -> impl Future<Output = ()> + Send;
}

/// A front door: one connection of one transport and wire protocol.
pub trait Door: Send + Sync + 'static {
    type Out: Outlet;

    fn outlet(&self) -> &Self::Out;

    /// The peer's address (per-address login limits, hook payloads).
    fn peer_ip(&self) -> IpAddr;

    /// The next input the engine wants. Must be cancel-safe: the engine
    /// polls it in a `select!`, and a partly read frame stays buffered.
    fn next(&mut self, want: Want) -> impl Future<Output = Result<Incoming, DoorError>> + Send;

    /// Sends an unstored event (typing, transient message) the cheapest way
    /// the transport has (a datagram when it fits), else like any frame.
    fn transient(&self, t: &TransientFrames);

    /// Closes the connection now with an application code (a LeanCloud
    /// code, or 0 for a logout) and a reason.
    fn close(&self, code: u32, reason: &str);

    /// A write side the fan-out may use itself (see [`DirectOut`]); `None`
    /// sends everything through the session.
    fn direct(&self) -> Option<Arc<dyn DirectOut>> {
        None
    }
}

/// Says why in a `Closing` event, lets the output drain (bounded), then closes.
pub(super) async fn close_with<D: Door>(door: &D, code: ErrorCode, reason: &str) {
    let out = door.outlet();
    out.event(Event::Closing {
        code: code.code(),
        reason: reason.to_string(),
    });
    out.drain(DRAIN).await;
    door.close(u32::from(code.code()), reason);
}

/// How long a closing connection's output may take to be read.
pub(super) const DRAIN: Duration = Duration::from_millis(500);
