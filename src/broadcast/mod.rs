//! Broadcasts: messages from the app to every client, or to a system
//! conversation's subscribers, with a TTL (LeanCloud's `valid_till`,
//! default and at most [`MONTH_MS`] ahead).
//!
//! A broadcast is a message in its system conversation's log, so history
//! shows it whether it expired or not, plus a record in the store
//! (`store::system`) saying who it is for and until when. It reaches
//! clients two ways:
//!
//! - live: a background task walks the clients online now (the registry
//!   shard by shard, or the subscriber list) `system.fan_out_step` clients
//!   at a time, yielding between steps so other traffic keeps flowing;
//! - at login ([`at_login`]): the unexpired broadcasts after the client's
//!   cursor, oldest first; a client never seen before gets only the newest.
//!
//! One cursor per client (every broadcast up to it was had), never a copy
//! of a broadcast per client. The cursor moves when the client acknowledges
//! the broadcast, not when it is sent (`core::broadcast_acks`): a connection
//! that died unnoticed is still handed broadcasts until it times out, and
//! those come again at its next login.
//! Expired records are swept in the background ([`start_sweeper`]); the
//! sweep reads an expiry index, so it costs one seek when nothing expired.
//!
//! Its log entry has no device (`origin_device` empty) and an empty
//! `to_peers`, so the commit pipeline's fan-out gives it to its sender only
//! and offline sync never sends it: delivery is this module's alone.

mod fan_out;
mod login;
mod send;
mod sweep;

pub use login::{AtLogin, at_login};
pub use send::{Listed, delete, list, send};
pub use sweep::{start_sweeper, sweep};

use crate::protocol::Content;
use crate::protocol::ConvId;

/// LeanCloud's default and longest `valid_till`: a month (30 days) ahead.
pub const MONTH_MS: u64 = 30 * 24 * 3600 * 1000;

/// Most missed broadcasts a login gets (the newest); older ones stay in
/// history.
pub const AT_LOGIN_MAX: usize = 1000;

/// A broadcast as the admin API asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    /// The system conversation it belongs to.
    pub conv: ConvId,
    /// Shown as the sender; need not be a subscriber.
    pub from: String,
    pub content: Content,
    /// A JSON object, as text.
    pub push_data: Option<String>,
    /// Ms since the epoch; `None` is a month ahead, later is cut to that.
    pub valid_till: Option<u64>,
    /// Only the conversation's subscribers, not every client.
    pub subscribers_only: bool,
    /// Not stored: only the clients online now get it.
    pub transient: bool,
    /// The admin API caller, kept as the message's `from-ip`.
    pub from_ip: String,
}
