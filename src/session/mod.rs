//! One client connection, from its first frame to its end, whatever door
//! it came in by.
//!
//! # Layout
//! - `quic.rs`: the QUIC door and [`run`], which `server` calls per
//!   accepted connection; `writer.rs` is its write half. The LeanCloud
//!   door (`crate::gateway`) calls [`serve`].
//! - `door.rs`: the interface a door implements ([`Door`], [`Outlet`]).
//! - `engine.rs`: the loop, written once: inputs, deliveries, acks,
//!   redelivery, the backlog bound, shutdown. It reads the clock and passes
//!   `now` to `core::delivery`, which decides what to send and when.
//! - `login.rs`: the life of a session around the loop (`login::run`): the
//!   login handshake, the steps at login and at the end.
//! - `dispatch.rs`: the command table (request → feature).
//! - `send_lane.rs`: per-conversation send lanes; `sync.rs`: offline sync.
//! - `backlog.rs`: the bytes a connection holds, whatever its door.
//!
//! # What a new door must implement
//! A door is one connection of one transport and wire protocol (QUIC and
//! bincode today; LeanCloud's protobuf over WebSocket next). It implements
//! [`Door`] and gives an [`Outlet`]:
//! - **in**: [`Door::next`] yields decoded [`crate::protocol::ClientFrame`]s,
//!   cancel-safe, reliable ones as [`Incoming::Frame`] and fire-and-forget
//!   ones (datagrams) as [`Incoming::Unreliable`]; it reads only what
//!   [`Want`] asks (no frames while the engine is paused, so the
//!   transport's flow control holds the peer back); a malformed frame is
//!   [`DoorError::Refused`] with the LeanCloud code to close with (4109,
//!   4114), a gone peer [`DoorError::Lost`];
//! - **out**: [`Outlet`] queues replies, events and frames the fan-out
//!   encoded once for all receivers, never blocking, counting what it holds
//!   in [`Backlog`] (`queued_out` / `wrote_out`), and can drain (bounded);
//!   [`Door::transient`] sends an unstored event the cheapest way;
//! - **close**: [`Door::close`] with an application code and a reason;
//!   [`Door::peer_ip`] for limits and hooks;
//! - **accept**: the door's own entry point (like [`run`]) waits for the
//!   connection's channel within `limits.login_timeout_ms`, then calls the
//!   engine with the login deadline.
//!
//! # What the engine promises every door
//! - **Login**: requests before a Login are answered 4105
//!   (`SessionRequired`); the per-address guard runs before the signature
//!   check; a refused login is answered and closed with its code; no login
//!   by the deadline closes with 4108 (`LoginTimeout`).
//! - **Conflicts**: a device with a tag displaces the holder of that tag
//!   (its session gets `Conflict` and closes 4111), unless it holds it and
//!   the newcomer is a reconnect, which is refused with 4111.
//! - **Order at login**: answer `LoggedIn`, `_clientOnline`, message sync
//!   (push: messages past the device cursor, then `SyncDone`; pull:
//!   `Unread`), patch sync, broadcasts from the store, owed receipts; a
//!   failed step says `SyncSkipped` and the login goes on.
//! - **Deliveries**: live stored messages are written once (a copy the sync
//!   sent is dropped), kept in flight until acked and resent from the log
//!   after `delivery.ack_timeout_secs`; acks are cumulative and move the
//!   device cursor and the delivery receipt owed to the sender.
//! - **Limits**: quotas (4116 answered, 4117 closed), the idle timeout
//!   (4107), the backlog bound (reads pause over it; 4201 when deliveries
//!   stay over it or pile up to twice it).
//! - **The end**: a logout, a kick, a conflict, a shutdown or a drop; the
//!   device is unregistered, a drop fires the will, and `_clientOffline`
//!   says which.

mod backlog;
mod dispatch;
mod door;
mod engine;
mod login;
mod quic;
mod send_lane;
mod sync;
mod writer;

pub use backlog::Backlog;
pub use door::{Door, DoorError, Incoming, Outlet, Want};
pub use quic::{QuicDoor, run};

/// Runs a door's connection (another door than QUIC's, e.g. the LeanCloud
/// one) from its first frame to its end: login by `login_deadline`, then
/// the engine.
pub async fn serve<D: Door>(
    hub: std::sync::Arc<crate::hub::Hub>,
    door: D,
    login_deadline: tokio::time::Instant,
    shutdown: &mut tokio::sync::broadcast::Receiver<()>,
) {
    login::run(hub, door, login_deadline, shutdown).await;
}

/// How a session ended, for `_clientOffline` (the hooks issue) and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub close_code: u8,
    pub error: Option<ErrorCode>,
}

use crate::protocol::ErrorCode;
