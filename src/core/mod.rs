//! The IM core: the rules of instant messaging with no I/O in them.
//!
//! Nothing here opens a socket, reads the clock or touches the store:
//! time comes in as `now`, facts the store knows come in as arguments,
//! and decisions go out as values, as in quinn-proto (`handle_*` in,
//! `poll_*` out). That is what lets every rule be tested on a virtual clock
//! without a server, and lets a second front door (another wire protocol)
//! or a second store reuse the rules instead of copying them. No `tokio`,
//! `quinn`, `sled` or HTTP may be imported here; `tests/layers.rs` checks.

pub mod broadcast_acks;
pub mod conversation;
pub mod delivery;
pub mod moderation;
pub mod ordering;
pub mod outbound;
pub mod receipts;
pub mod typing;
pub mod validate;
pub mod will;

/// Who is asking: the logged-in identity of a session.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client: String,
    pub device_id: String,
    pub conn_id: u64,
    pub ip: String,
}

/// The origin of the virtual clock in the core's unit tests: they need one
/// real `Instant` to count from, and everything after it is `t0 + d`.
/// Test code is the only place in the core that may read the clock
/// (`tests/layers.rs` skips it).
#[cfg(test)]
pub(crate) fn test_origin() -> std::time::Instant {
    std::time::Instant::now()
}
