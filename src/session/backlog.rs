//! Every byte a connection holds in memory, whatever its door: the engine
//! pauses reading over `limits.max_backlog_bytes` and closes a peer that
//! stays behind (4201); a door's write half fills and empties `out`.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Every byte a connection holds in memory: what waits to be written to it
/// (replies, events, deliveries alike) and the sends it has asked for that
/// wait their turn. One bound covers both (`limits.max_backlog_bytes`).
#[derive(Default)]
pub struct Backlog {
    /// Queued for the peer but not yet handed to the transport: how far a
    /// slow reader is behind.
    out: AtomicUsize,
    /// Sends read from the peer, queued for the send lane.
    sends: AtomicUsize,
    /// Woken whenever either shrinks, so a paused session reads again.
    shrunk: Notify,
}

impl Backlog {
    pub fn total(&self) -> usize {
        self.out()
            .saturating_add(self.sends.load(Ordering::Relaxed))
    }

    pub fn out(&self) -> usize {
        self.out.load(Ordering::Relaxed)
    }

    /// A door queued `bytes` for the peer.
    pub fn queued_out(&self, bytes: usize) {
        self.out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A door handed `bytes` to its transport.
    pub fn wrote_out(&self, bytes: usize) {
        self.out.fetch_sub(bytes, Ordering::Relaxed);
        self.shrunk.notify_one();
    }

    pub fn add_send(&self, bytes: usize) {
        self.sends.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: usize) {
        self.sends.fetch_sub(bytes, Ordering::Relaxed);
        self.shrunk.notify_one();
    }

    /// Resolves once something was written or a queued send was taken.
    pub async fn shrunk(&self) {
        self.shrunk.notified().await;
    }
}
