//! Pending cumulative acks, kept apart from I/O so batching can be tested alone.

use std::collections::HashMap;

use crate::protocol::ConvId;

/// The highest seq per conversation not yet sent to the server.
///
/// Acks are cumulative, so only the maximum per conversation matters: a burst
/// of a thousand deliveries in one conversation costs one `(conv, seq)` pair.
#[derive(Debug, Default)]
pub struct AckBatch {
    pending: HashMap<ConvId, u64>,
}

impl AckBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that everything of `conv` up to `seq` has arrived. Returns true
    /// when the batch was empty before, i.e. when a flush must be scheduled.
    pub fn record(&mut self, conv: ConvId, seq: u64) -> bool {
        if seq == 0 {
            // Transient messages have no position; there is nothing to acknowledge.
            return false;
        }
        let was_empty = self.pending.is_empty();
        let slot = self.pending.entry(conv).or_insert(0);
        if seq > *slot {
            *slot = seq;
        }
        was_empty
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Everything pending, emptying the batch; `None` when there is nothing to send.
    pub fn take(&mut self) -> Option<Vec<(ConvId, u64)>> {
        if self.pending.is_empty() {
            return None;
        }
        let mut out: Vec<(ConvId, u64)> = self.pending.drain().collect();
        // A stable order keeps frames reproducible, which helps when reading captures.
        out.sort_unstable_by_key(|(conv, _)| *conv);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(n: u8) -> ConvId {
        ConvId([n; 12])
    }

    #[test]
    fn keeps_only_the_max_per_conversation() {
        let mut b = AckBatch::new();
        assert!(b.record(conv(1), 3));
        assert!(!b.record(conv(1), 7));
        assert!(!b.record(conv(1), 5)); // a redelivery of an older message
        assert!(!b.record(conv(2), 1));
        assert_eq!(b.take(), Some(vec![(conv(1), 7), (conv(2), 1)]));
        assert!(b.is_empty());
        assert_eq!(b.take(), None);
    }

    #[test]
    fn signals_a_flush_once_per_batch() {
        let mut b = AckBatch::new();
        assert!(b.record(conv(1), 1));
        assert!(!b.record(conv(2), 1));
        b.take();
        assert!(
            b.record(conv(1), 2),
            "a new batch after a flush needs a new flush"
        );
    }

    #[test]
    fn ignores_seq_zero() {
        let mut b = AckBatch::new();
        assert!(!b.record(conv(1), 0));
        assert!(b.is_empty());
        assert_eq!(b.take(), None);
    }
}
