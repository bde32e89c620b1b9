//! One device's delivery state: what it was sent and has not acknowledged,
//! when to send that again, and which copies it already has.
//!
//! A stored message is written to the device once, kept in flight until the
//! device acks it (acks are cumulative per conversation), and sent again
//! from the log when the ack does not come within `delivery.ack_timeout_secs`.
//! The device's cursor moves only on its ack, so whatever is still in flight
//! when the connection dies comes again at the next login's sync.
//!
//! Sans-IO, in quinn-proto's shape: the session calls `handle_*` with `now`
//! and the facts it read (a conversation's last seq, rows of the log), and
//! drains `poll_*` for what to do (ranges to read, the broadcast cursor to
//! write, when to wake up next). Nothing here reads the clock or the store.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::core::broadcast_acks::BroadcastAcks;
use crate::core::outbound::{BroadcastFrame, ReceiptFor, StoredFrame};
use crate::protocol::{ConvId, Message};
use crate::store::LogEntry;

/// Unacked messages tracked per device before the oldest are left to the next sync.
pub const MAX_INFLIGHT: usize = 10_000;

/// What an ack asks the session to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub conv: ConvId,
    /// The device's new cursor in `conv`.
    pub seq: u64,
    /// The newest acked message that wants a delivery receipt: its sender
    /// and time (receipts exist only between two members, so all acked
    /// ones are from the one other).
    pub receipt: Option<ReceiptFor>,
}

#[derive(Debug)]
struct Inflight {
    seq: u64,
    sent_at: Instant,
    receipt: Option<ReceiptFor>,
}

/// One logged-in device's delivery state.
#[derive(Debug)]
pub struct Delivery {
    /// The device's client: its own messages want no receipt from it.
    me: String,
    ack_timeout: Duration,
    /// How often the redelivery check runs while something is unacked.
    check_every: Duration,
    max_inflight: usize,
    /// Sent but unacked stored messages, oldest first per conversation,
    /// with the sender and time of those that want a delivery receipt.
    inflight: HashMap<ConvId, VecDeque<Inflight>>,
    inflight_len: usize,
    /// Highest seq already sent per conversation: live copies of messages a
    /// sync already sent are dropped.
    sent_max: HashMap<ConvId, u64>,
    /// Broadcasts this login sent from the store (at most
    /// `broadcast::AT_LOGIN_MAX`); a live copy handed over after the login
    /// read the store is dropped once.
    broadcasts_at_login: HashSet<(ConvId, u64)>,
    /// Broadcasts sent and not yet acknowledged: the client's cursor.
    broadcast_acks: BroadcastAcks,
    /// When the next redelivery check is due (it only runs while something
    /// is in flight, so an idle session costs no timer wake-ups).
    next_check: Instant,
    /// Ranges of the log to read again, found by the last check.
    refetch: VecDeque<(ConvId, u64, u64)>,
}

impl Delivery {
    /// `now` starts the redelivery clock; `me` is the device's client.
    pub fn new(
        now: Instant,
        me: impl Into<String>,
        ack_timeout: Duration,
        max_inflight: usize,
    ) -> Self {
        let check_every = Duration::from_secs(1).min(ack_timeout);
        Delivery {
            me: me.into(),
            ack_timeout,
            check_every,
            max_inflight,
            inflight: HashMap::new(),
            inflight_len: 0,
            sent_max: HashMap::new(),
            broadcasts_at_login: HashSet::new(),
            broadcast_acks: BroadcastAcks::default(),
            next_check: now + check_every,
            refetch: VecDeque::new(),
        }
    }

    /// Stored messages sent and not yet acknowledged.
    pub fn inflight(&self) -> usize {
        self.inflight_len
    }

    /// A live copy of a stored message: `true` when it is to be written
    /// (and it is then in flight), `false` when a sync already sent it. A
    /// chat room's is written and forgotten, as LeanCloud does: its SDKs do
    /// not ack them, and a room has no offline delivery (nor sync) to fall
    /// back on.
    pub fn handle_stored(&mut self, now: Instant, f: &StoredFrame) -> bool {
        if f.chat_room {
            return true;
        }
        if self.sent_max.get(&f.conv).is_some_and(|max| *max >= f.seq) {
            return false;
        }
        self.track(now, f.conv, f.seq, f.receipt.clone());
        true
    }

    /// A stored message the login's sync wrote: in flight like a live one.
    pub fn handle_synced(
        &mut self,
        now: Instant,
        conv: ConvId,
        seq: u64,
        receipt: Option<ReceiptFor>,
    ) {
        self.track(now, conv, seq, receipt);
    }

    /// A stored message the sync passed over (the device's own, deleted, or
    /// not meant for it): its live copy is not sent either.
    pub fn handle_sync_passed(&mut self, conv: ConvId, seq: u64) {
        self.raise_sent_max(conv, seq);
    }

    fn raise_sent_max(&mut self, conv: ConvId, seq: u64) {
        let max = self.sent_max.entry(conv).or_insert(0);
        *max = (*max).max(seq);
    }

    /// Notes a stored message sent to this device. `receipt` is its sender
    /// and time when it wants a delivery receipt (ignored for our own).
    fn track(&mut self, now: Instant, conv: ConvId, seq: u64, receipt: Option<ReceiptFor>) {
        self.raise_sent_max(conv, seq);
        if self.inflight_len >= self.max_inflight {
            // The device is not acking; its cursor stays put, so the next sync covers these.
            return;
        }
        let receipt = receipt.filter(|r| r.0 != self.me);
        self.inflight.entry(conv).or_default().push_back(Inflight {
            seq,
            sent_at: now,
            receipt,
        });
        self.inflight_len += 1;
    }

    /// Cumulative ack: everything of `conv` up to `seq` arrived. `last_seq`
    /// is the conversation's newest seq, `None` when it is gone; an ack past
    /// it (or of a gone one) is ignored. `Some` says what to persist.
    pub fn handle_ack(&mut self, conv: ConvId, seq: u64, last_seq: Option<u64>) -> Option<Acked> {
        if seq > last_seq? {
            return None;
        }
        let mut receipt: Option<ReceiptFor> = None;
        if let Entry::Occupied(mut q) = self.inflight.entry(conv) {
            while q.get().front().is_some_and(|i| i.seq <= seq) {
                if let Some(i) = q.get_mut().pop_front() {
                    receipt = i.receipt.or(receipt);
                }
                self.inflight_len -= 1;
            }
            if q.get().is_empty() {
                q.remove();
            }
        }
        Some(Acked { conv, seq, receipt })
    }

    /// When the session must call [`Self::handle_timeout`]; `None` while
    /// nothing is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.inflight_len > 0).then_some(self.next_check)
    }

    /// Finds what was unacked for longer than the ack timeout; the ranges
    /// to read again come out of [`Self::poll_refetch`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.inflight_len == 0 || now < self.next_check {
            return;
        }
        let timeout = self.ack_timeout;
        let due = self
            .inflight
            .iter()
            .filter(|(_, q)| {
                q.front()
                    .is_some_and(|i| now.saturating_duration_since(i.sent_at) >= timeout)
            })
            .filter_map(|(c, q)| Some((*c, q.front()?.seq, q.back()?.seq)));
        self.refetch.extend(due);
        self.next_check = now + self.check_every;
    }

    /// A range of `conv`'s log to read (inclusive) and hand back to
    /// [`Self::handle_refetched`]. A failed read is just skipped: the
    /// messages stay due and the next check reads them again.
    pub fn poll_refetch(&mut self) -> Option<(ConvId, u64, u64)> {
        self.refetch.pop_front()
    }

    /// The log rows of a range from [`Self::poll_refetch`]: returns, oldest
    /// first, what to send again (marked for this receiver). One deleted
    /// meanwhile (or gone) counts as acked: there is nothing left to send.
    pub fn handle_refetched(
        &mut self,
        now: Instant,
        conv: ConvId,
        rows: &[LogEntry],
    ) -> Vec<Message> {
        let Some(q) = self.inflight.get_mut(&conv) else {
            return Vec::new();
        };
        let by_seq: HashMap<u64, &LogEntry> = rows.iter().map(|e| (e.msg.seq, e)).collect();
        let before = q.len();
        q.retain(|i| by_seq.get(&i.seq).is_some_and(|e| !e.deleted));
        self.inflight_len -= before - q.len();
        let mut again = Vec::new();
        for i in q.iter_mut() {
            if now.saturating_duration_since(i.sent_at) < self.ack_timeout {
                break;
            }
            i.sent_at = now;
            if let Some(e) = by_seq.get(&i.seq) {
                again.push(e.msg.clone().for_receiver(&self.me));
            }
        }
        if q.is_empty() {
            self.inflight.remove(&conv);
        }
        again
    }

    /// The login's read of the broadcasts: `cursor` is the stored one,
    /// `looked_at` the newest broadcast it read (meant for this client or not).
    pub fn handle_login_broadcasts(&mut self, cursor: Option<u64>, looked_at: Option<u64>) {
        self.broadcast_acks = BroadcastAcks::at_login(cursor, looked_at);
    }

    /// A broadcast the login sent from the store.
    pub fn handle_login_broadcast(&mut self, id: u64, conv: ConvId, seq: u64) {
        self.broadcast_acks.sent(id, conv, seq);
        self.broadcasts_at_login.insert((conv, seq));
    }

    /// A broadcast from the live fan-out: `true` when it is to be written,
    /// `false` (once) when the login already sent it from the store.
    pub fn handle_broadcast(&mut self, b: &BroadcastFrame) -> bool {
        if self.broadcasts_at_login.remove(&(b.conv, b.seq)) {
            return false;
        }
        self.broadcast_acks.sent(b.id, b.conv, b.seq);
        true
    }

    /// An ack as it concerns broadcasts (they live in system conversations,
    /// whose log the device acks like any other).
    pub fn handle_broadcast_ack(&mut self, conv: ConvId, seq: u64) {
        self.broadcast_acks.acked(conv, seq);
    }

    /// The client's broadcast cursor to store, when it rises.
    pub fn poll_broadcast_cursor(&mut self) -> Option<u64> {
        self.broadcast_acks.cursor_to_write()
    }
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
