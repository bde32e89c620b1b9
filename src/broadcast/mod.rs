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
use crate::store::LogEntry;

/// LeanCloud's default and longest `valid_till`: a month (30 days) ahead.
pub const MONTH_MS: u64 = 30 * 24 * 3600 * 1000;

/// Most missed broadcasts a login gets (the newest); older ones stay in
/// history.
pub const AT_LOGIN_MAX: usize = 1000;

// Origin: after the merge `store::LogEntry::origin()` answers this from the
// same bytes; this predicate is then `e.origin() == Origin::Broadcast`.
/// Whether a log entry is a broadcast: no device, and nobody named.
/// Clients' messages have a device; the app's sends name 1 to 20 receivers.
pub fn is_broadcast(e: &LogEntry) -> bool {
    e.origin_device.is_empty() && e.to_peers.as_ref().is_some_and(Vec::is_empty)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Message;

    #[test]
    fn broadcasts_are_told_apart_from_clients_and_app_sends() {
        let msg = Message::new(ConvId([1; 12]), 1, "Bot", 1, Content::Text("hi".into()));
        let mut e = LogEntry::new(msg, "", "127.0.0.1");
        e.to_peers = Some(Vec::new());
        assert!(is_broadcast(&e));
        e.to_peers = Some(vec!["Tom".into()]);
        assert!(!is_broadcast(&e), "an app send names its receivers");
        e.to_peers = Some(Vec::new());
        e.origin_device = "phone".into();
        assert!(!is_broadcast(&e), "a client's message has a device");
    }
}
