//! The IM core: the rules of instant messaging with no I/O in them.
//!
//! Nothing here opens a socket, reads the clock or touches the store:
//! time comes in as `now`, facts the store knows come in as arguments,
//! and decisions go out as values, as in quinn-proto (`handle_*` in,
//! `poll_*` out). That is what lets every rule be tested on a virtual clock
//! without a server, and lets a second front door (another wire protocol)
//! or a second store reuse the rules instead of copying them. No `tokio`,
//! `quinn`, `sled` or HTTP may be imported here; `tests/layers.rs` checks.

pub mod conversation;
pub mod outbound;
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
