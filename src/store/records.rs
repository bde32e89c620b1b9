//! The records the store persists, as bincode values. Their field order is
//! on-disk layout: adding, removing or reordering a field is a schema
//! change (`migrate`).

use serde::{Deserialize, Serialize};

use crate::protocol::{ConvId, ConvKind, Message, Reason};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationRecord {
    pub id: ConvId,
    pub kind: ConvKind,
    pub name: Option<String>,
    pub attr: Option<String>,
    pub creator: String,
    /// Sorted; empty for chat rooms.
    pub members: Vec<String>,
    pub managers: Vec<String>,
    pub muted: Vec<String>,
    pub unique: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A stored message plus what only the server needs to know about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub msg: Message,
    /// The sending device, so redelivery skips a device's own messages.
    pub origin_device: String,
    pub from_ip: String,
    /// Receivers chosen by `_messageReceived` (`toPeers`); `None` is every member.
    pub to_peers: Option<Vec<String>>,
    /// Removed from history; the record stays, without content, so the seq
    /// is never reused.
    pub deleted: bool,
    /// Why the server or a hook last changed it, for patch sync.
    pub reason: Option<Reason>,
    /// Who last edited, recalled or deleted it.
    pub patched_by: Option<String>,
}

/// Who put a message in the log. Not a stored field: it is read from
/// `origin_device` and `to_peers`, so records written before it existed
/// answer the same (no schema change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A client's device sent it (it names its device). In a system
    /// conversation, such a message is what the app's webhook carries.
    Client,
    /// The app sent it through the REST API (no device): to the receivers
    /// it names, or to every member.
    App,
    /// A broadcast: no device and an empty receiver list, so the commit
    /// pipeline's fan-out gives it to its sender only and the broadcast
    /// fan-out does the rest.
    Broadcast,
}

impl LogEntry {
    pub fn new(msg: Message, origin_device: impl Into<String>, from_ip: impl Into<String>) -> Self {
        LogEntry {
            msg,
            origin_device: origin_device.into(),
            from_ip: from_ip.into(),
            to_peers: None,
            deleted: false,
            reason: None,
            patched_by: None,
        }
    }

    /// Whether `client` receives this message (senders always see their own).
    pub fn reaches(&self, client: &str) -> bool {
        self.msg.from == client
            || self
                .to_peers
                .as_ref()
                .is_none_or(|peers| peers.iter().any(|p| p == client))
    }

    /// Who sent it. Clients' messages always have a device (a login
    /// without one gets `default`); the app's sends have none and name
    /// 1 to 20 receivers or none at all (`None`, every member); a
    /// broadcast has none and names an empty list.
    pub fn origin(&self) -> Origin {
        if !self.origin_device.is_empty() {
            Origin::Client
        } else if self.to_peers.as_ref().is_some_and(Vec::is_empty) {
            Origin::Broadcast
        } else {
            Origin::App
        }
    }
}

/// The first answer to a send with an idempotency token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRecord {
    pub conv: ConvId,
    pub msg_id: String,
    pub seq: u64,
    pub timestamp: u64,
}

/// One idempotency token to record with an append.
pub struct TokenRecord<'a> {
    pub client: &'a str,
    pub token: &'a str,
    pub sent: SentRecord,
}

/// An after-hook call waiting in the outbox. The endpoint is not stored: it
/// comes from the config at delivery time, so a reload or restart with new
/// URLs redirects what is still queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// The hook's LeanCloud name, e.g. `_messageSent`.
    pub hook: String,
    /// The params as JSON text: bincode cannot encode a `serde_json::Value`.
    pub params: String,
    /// Records with the same key are delivered in push order.
    pub order_key: String,
    /// Milliseconds since the Unix epoch.
    pub enqueued_at: u64,
}

/// An outbox record given up on, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub record: OutboxRecord,
    /// Delivery attempts made since the server last started.
    pub attempts: u32,
    /// When it was given up on, ms since the Unix epoch.
    pub dead_at: u64,
    /// The last failure, for the operator.
    pub last_error: String,
}

/// A broadcast: its message is `(conv, seq)` in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastRecord {
    pub conv: ConvId,
    pub seq: u64,
    /// Its sender, who already has it (the log's fan-out gave it one).
    pub from: String,
    pub created_at: u64,
    /// Ms since the epoch; from then on nobody gets it at login.
    pub valid_till: u64,
    /// For the conversation's subscribers only (`…/{id}/broadcasts`), or
    /// for every client (`/1.2/rtm/broadcasts`).
    pub subscribers_only: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Content;
    use crate::wire::codec;

    fn entry(device: &str, to_peers: Option<Vec<&str>>) -> LogEntry {
        let msg = Message::new(ConvId([1; 12]), 1, "Tom", 5, Content::Text("hi".into()));
        LogEntry {
            to_peers: to_peers.map(|p| p.into_iter().map(String::from).collect()),
            ..LogEntry::new(msg, device, "127.0.0.1")
        }
    }

    #[test]
    fn origin_reads_the_same_fields_the_old_predicates_read() {
        // A client: it has a device, whatever receivers a hook chose.
        assert_eq!(entry("phone", None).origin(), Origin::Client);
        assert_eq!(entry("phone", Some(vec!["Jerry"])).origin(), Origin::Client);
        assert_eq!(entry("phone", Some(vec![])).origin(), Origin::Client);
        // The app: no device, receivers named or every member.
        assert_eq!(entry("", Some(vec!["Jerry"])).origin(), Origin::App);
        assert_eq!(entry("", None).origin(), Origin::App);
        // A broadcast: no device and nobody named.
        assert_eq!(entry("", Some(vec![])).origin(), Origin::Broadcast);
    }

    #[test]
    fn origin_survives_the_stored_bytes() {
        for e in [
            entry("phone", Some(vec![])),
            entry("", Some(vec!["Jerry"])),
            entry("", Some(vec![])),
        ] {
            let back: LogEntry = codec::decode(&codec::encode(&e).unwrap()).unwrap();
            assert_eq!(back.origin(), e.origin());
            assert_eq!(back, e);
        }
    }
}
