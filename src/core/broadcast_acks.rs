//! Which broadcasts a device has had: its cursor moves when the client
//! acknowledges, never when the server sends. A connection that died
//! unnoticed still takes deliveries until it is timed out; had the cursor
//! moved on send, what it was handed meanwhile would never come again.
//!
//! Sans-IO: `sent` and `acked` go in, `cursor_to_write` comes out; the
//! session writes it to the store.

use std::collections::BTreeMap;

use crate::protocol::ConvId;

/// Broadcasts sent on one connection and not yet acknowledged.
#[derive(Debug, Default)]
pub struct BroadcastAcks {
    /// Broadcast id → its place in its system conversation's log.
    pending: BTreeMap<u64, (ConvId, u64)>,
    /// Every broadcast up to here was had or was not meant for this client.
    had: u64,
    /// The cursor as stored; `None`: this client was never seen.
    written: Option<u64>,
}

impl BroadcastAcks {
    /// `cursor` is the stored one; `looked_at` the newest broadcast the
    /// login read (meant for this client or not).
    pub fn at_login(cursor: Option<u64>, looked_at: Option<u64>) -> Self {
        BroadcastAcks {
            pending: BTreeMap::new(),
            had: looked_at.or(cursor).unwrap_or(0),
            written: cursor,
        }
    }

    pub fn sent(&mut self, id: u64, conv: ConvId, seq: u64) {
        self.pending.insert(id, (conv, seq));
    }

    /// The client has everything of `conv` up to `seq` (acks are cumulative).
    pub fn acked(&mut self, conv: ConvId, seq: u64) {
        if self.pending.is_empty() {
            return;
        }
        let had = &mut self.had;
        self.pending.retain(|id, (c, s)| {
            let done = *c == conv && *s <= seq;
            if done {
                *had = (*had).max(*id);
            }
            !done
        });
    }

    /// The cursor to store now, if it rises: never past a broadcast still
    /// unacknowledged, so that one comes again at the next login.
    pub fn cursor_to_write(&mut self) -> Option<u64> {
        let target = match self.pending.first_key_value() {
            Some((oldest, _)) => self.had.min(oldest - 1),
            None => self.had,
        };
        if self.written.is_some_and(|w| w >= target) {
            return None;
        }
        self.written = Some(target);
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ConvId = ConvId([1; 12]);
    const B: ConvId = ConvId([2; 12]);

    #[test]
    fn the_cursor_waits_for_the_oldest_unacked_broadcast() {
        let mut t = BroadcastAcks::at_login(Some(3), Some(3));
        assert_eq!(t.cursor_to_write(), None, "nothing new");
        t.sent(4, A, 10);
        t.sent(5, B, 7);
        assert_eq!(t.cursor_to_write(), None, "sending moves nothing");
        t.acked(B, 7);
        assert_eq!(t.cursor_to_write(), None, "4 is still unacked");
        t.acked(A, 9);
        assert_eq!(t.cursor_to_write(), None, "an ack below its seq is not one");
        t.acked(A, 12);
        assert_eq!(t.cursor_to_write(), Some(5));
        assert_eq!(t.cursor_to_write(), None, "written once");
    }

    #[test]
    fn a_login_marks_a_new_client_seen_without_passing_what_it_was_sent() {
        // Never seen; broadcasts up to 9 exist, the newest (9) was sent.
        let mut t = BroadcastAcks::at_login(None, Some(9));
        t.sent(9, A, 1);
        assert_eq!(t.cursor_to_write(), Some(8), "seen, and 9 comes again");
        t.acked(A, 1);
        assert_eq!(t.cursor_to_write(), Some(9));
        // No broadcast at all yet: the cursor still says "seen".
        let mut t = BroadcastAcks::at_login(None, None);
        assert_eq!(t.cursor_to_write(), Some(0));
    }

    #[test]
    fn broadcasts_not_meant_for_the_client_do_not_hold_the_cursor() {
        // The login looked at 1..=6 and sent only 5.
        let mut t = BroadcastAcks::at_login(Some(2), Some(6));
        t.sent(5, A, 3);
        assert_eq!(t.cursor_to_write(), Some(4));
        t.acked(A, 3);
        assert_eq!(t.cursor_to_write(), Some(6));
    }
}
