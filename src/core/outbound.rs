//! What the fan-out hands a session: frames encoded once and shared by
//! every receiver. Pure data (no channel, no socket), so the fan-out's
//! decisions can be tested without a server.

use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::ConvId;

/// Sender and time of a message that asked for delivery receipts.
pub type ReceiptFor = Arc<(String, u64)>;

/// What the fan-out hands a session. Everything is pre-encoded once and
/// shared by all receivers. Each variant is one pointer: every session's
/// queue preallocates a block of slots, which idle connections pay for.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A stored message (an encoded `ServerFrame::Event(Message)`); its
    /// position lets the session track acks.
    Message(Arc<StoredFrame>),
    /// Any other encoded frame for the stream.
    Frame(Arc<Bytes>),
    /// A stored broadcast from the live fan-out: the session skips it when
    /// its login already sent it from the store.
    Broadcast(Arc<BroadcastFrame>),
    /// A transient message: sent as a datagram when it fits, else on the stream.
    Transient(Arc<TransientFrames>),
    /// Close this session with a LeanCloud code.
    Close(Box<CloseOrder>),
}

// Every session's queue holds 32 of these before it holds anything.
const _: () = assert!(std::mem::size_of::<Outbound>() <= 16);

/// A connection's write side that the fan-out may hand frames to itself,
/// skipping the session task: a channel and a task wake-up less per
/// delivery. Only for deliveries that need no session state: a chat
/// room's messages (no ack, no redelivery, no sync to dedupe against).
pub trait DirectOut: Send + Sync {
    /// Queues `frame` for the connection. `false` when it must go through
    /// the session instead, which then applies the backlog bound; once
    /// `false`, always `false`, so frames of one room never overtake each
    /// other by taking different paths.
    fn try_send(&self, frame: &Bytes) -> bool;
}

#[derive(Debug)]
pub struct StoredFrame {
    pub conv: ConvId,
    pub seq: u64,
    pub frame: Bytes,
    /// Set when the sender asked for receipts.
    pub receipt: Option<ReceiptFor>,
    /// A chat room's: written and forgotten (no ack, no redelivery).
    pub chat_room: bool,
}

/// A stored broadcast, with its id: the client's broadcast cursor moves to
/// it once the client acknowledges `(conv, seq)`.
#[derive(Debug)]
pub struct BroadcastFrame {
    pub id: u64,
    pub conv: ConvId,
    pub seq: u64,
    pub frame: Bytes,
}

#[derive(Debug)]
pub struct TransientFrames {
    /// The bare encoding, for a datagram.
    pub datagram: Bytes,
    /// The length-prefixed one, for the stream.
    pub frame: Bytes,
}

#[derive(Debug, Clone)]
pub struct CloseOrder {
    pub code: u16,
    pub reason: String,
    /// Sent before closing.
    pub frame: Option<Bytes>,
    /// What `_clientOffline` reports (`close::*`).
    pub close_code: u8,
}

impl Outbound {
    pub fn frame(frame: Bytes) -> Outbound {
        Outbound::Frame(Arc::new(frame))
    }

    pub fn close(order: CloseOrder) -> Outbound {
        Outbound::Close(Box::new(order))
    }

    /// An unstored event (transient message, will, typing) for the
    /// datagram path, with its stream fallback; `None` only if encoding
    /// our own type failed, which is logged.
    pub fn transient(ev: crate::protocol::Event) -> Option<Outbound> {
        let ev = crate::protocol::ServerFrame::Event(ev);
        match (
            crate::wire::codec::encode(&ev),
            crate::wire::frame::encode(&ev),
        ) {
            (Ok(datagram), Ok(frame)) => Some(Outbound::Transient(Arc::new(TransientFrames {
                datagram: datagram.into(),
                frame,
            }))),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "encoding an unstored event failed");
                None
            }
        }
    }
}
