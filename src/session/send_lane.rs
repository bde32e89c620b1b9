//! Sends go, in arrival order, to one lane task per conversation, started
//! by its first send: a session that only receives has none, and a
//! `_messageReceived` hook that hangs for one conversation holds up only
//! that conversation's sends (FIFO is per conversation, as seqs are).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::door::Outlet;
use crate::core::Caller;
use crate::hub::Hub;
use crate::message::{self, SendPlan};
use crate::protocol::{ConvId, SendMessage};

/// Idle lanes kept for reuse before they are ended.
const IDLE_LANES: usize = 8;

/// A connection's send lanes and their tasks.
pub(super) struct SendLanes {
    lanes: Lane,
    /// The lane tasks; the engine reaps finished ones.
    pub(super) tasks: JoinSet<()>,
}

enum Lane {
    Open(HashMap<ConvId, LaneTx>),
    /// Draining for a logout or shutdown: no new sends.
    Closed,
}

struct LaneTx {
    /// Boxed so that the channel's preallocated block stays small.
    tx: mpsc::UnboundedSender<(u64, Box<SendMessage>)>,
    /// Sends given to the lane and not yet through its checks and hook:
    /// an idle lane (0) is ended when lanes pile up.
    queued: Arc<AtomicUsize>,
}

impl SendLanes {
    pub(super) fn new() -> Self {
        SendLanes {
            lanes: Lane::Open(HashMap::new()),
            tasks: JoinSet::new(),
        }
    }

    /// A lane keeps this connection's sends to one conversation in order
    /// while a `_messageReceived` hook is awaited, without stalling reads.
    pub(super) fn enqueue<O: Outlet>(
        &mut self,
        hub: &Arc<Hub>,
        caller: &Caller,
        out: &O,
        id: u64,
        m: SendMessage,
    ) {
        let Lane::Open(lanes) = &mut self.lanes else {
            return;
        };
        if lanes.len() > IDLE_LANES && !lanes.contains_key(&m.conv) {
            // Dropping an idle lane's sender ends its task.
            lanes.retain(|_, l| l.queued.load(Relaxed) > 0);
        }
        let lane = lanes.entry(m.conv).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let queued = Arc::new(AtomicUsize::new(0));
            let (hub, caller, out) = (hub.clone(), caller.clone(), out.clone());
            self.tasks
                .spawn(send_lane(hub, caller, out, rx, queued.clone()));
            LaneTx { tx, queued }
        });
        out.backlog().add_send(queued_size(&m));
        lane.queued.fetch_add(1, Relaxed);
        let _ = lane.tx.send((id, Box::new(m)));
    }

    /// Waits (at most `grace`) for answers to sends already received.
    pub(super) async fn drain(&mut self, grace: Duration) {
        self.lanes = Lane::Closed;
        let _ = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
    }
}

/// Handles one connection's sends to one conversation one after another:
/// checks and the `_messageReceived` hook in order, then waits for group
/// flushes in parallel.
async fn send_lane<O: Outlet>(
    hub: Arc<Hub>,
    caller: Caller,
    out: O,
    mut rx: mpsc::UnboundedReceiver<(u64, Box<SendMessage>)>,
    queued: Arc<AtomicUsize>,
) {
    let mut flushing = JoinSet::new();
    while let Some((id, m)) = rx.recv().await {
        out.backlog().sent(queued_size(&m));
        // Boxed so that an idle lane does not hold the send's state.
        let result = match Box::pin(message::send(&hub, &caller, *m)).await {
            Ok(SendPlan::Pending(p, changed)) => {
                let (hub, caller, out) = (hub.clone(), caller.clone(), out.clone());
                flushing.spawn(async move {
                    let result = message::finish_send(&hub, &caller, p).await;
                    let notice = match (&result, changed) {
                        (Ok(sent), Some(c)) => c.event(sent),
                        _ => None,
                    };
                    out.reply(id, result);
                    if let Some(f) = notice {
                        out.encoded(f);
                    }
                });
                None
            }
            Ok(SendPlan::Done(r, notice)) => Some((Ok(r), notice)),
            Err(e) => Some((Err(e), None)),
        };
        // Its place in the conversation is taken: a later lane for the
        // same conversation cannot overtake it.
        queued.fetch_sub(1, Relaxed);
        if let Some((r, notice)) = result {
            out.reply(id, r);
            if let Some(f) = notice {
                out.encoded(f);
            }
        }
        while flushing.try_join_next().is_some() {}
    }
    while flushing.join_next().await.is_some() {}
}

/// What a queued send holds in memory, near enough for the backlog bound.
fn queued_size(m: &SendMessage) -> usize {
    std::mem::size_of::<SendMessage>()
        + m.content.len()
        + m.push_data.as_ref().map_or(0, String::len)
        + m.token.as_ref().map_or(0, String::len)
        + m.mention_list.iter().map(String::len).sum::<usize>()
}
