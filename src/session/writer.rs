//! The QUIC door's write half. A frame is written into quinn's stream by
//! whoever queues it (a session, the room fan-out) when nothing is waiting
//! before it: no channel and no task wake-up per frame. Only what the
//! stream cannot take at once (flow control, a write in progress) waits in
//! a queue for the connection's writer task, which alone ever holds the
//! stream across an await; frames never overtake each other.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use super::backlog::Backlog;
use crate::core::outbound::DirectOut;
use crate::metrics::METRICS;

#[derive(Default)]
struct State {
    /// The stream while the task is not writing with it.
    stream: Option<quinn::SendStream>,
    /// Frames waiting for the task, in order.
    queue: VecDeque<Bytes>,
    /// Asked to end the stream; answered once the peer has read it all.
    finish: Option<oneshot::Sender<()>>,
    /// Every handle is gone: end the stream and stop.
    abandoned: bool,
    /// The stream failed or ended: frames are dropped.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Work for the task (a queued frame, a finish, abandonment).
    wake: Notify,
    backlog: Arc<Backlog>,
}

/// Dropped with the last [`Writer`] clone: tells the task to end the stream.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.state.lock().abandoned = true;
        self.0.wake.notify_one();
    }
}

#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

impl Writer {
    pub fn spawn(send: quinn::SendStream) -> Writer {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                stream: Some(send),
                ..State::default()
            }),
            wake: Notify::new(),
            backlog: Arc::new(Backlog::default()),
        });
        tokio::spawn(run(shared.clone()));
        Writer {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        }
    }

    /// Writes an encoded frame now when nothing waits before it and the
    /// stream takes it, else queues it; a closed connection drops it.
    pub fn send(&self, frame: Bytes) {
        let len = frame.len();
        // Counted even when a closed stream drops it: a peer that stopped
        // reading (STOP_SENDING) is then held to the backlog bound, reads
        // from it pause, and it is closed with 4201 like any reader that
        // falls behind, rather than its session reading on to the end.
        self.shared.backlog.queued_out(len);
        let mut st = self.shared.state.lock();
        if st.closed {
            return;
        }
        let mut rest = [frame];
        if st.queue.is_empty()
            && let Some(stream) = st.stream.as_mut()
        {
            // One poll: quinn either takes the bytes into its send buffer
            // (waking its connection driver) or is blocked, and then the
            // task takes over with a real waker.
            match stream.write_chunks(&mut rest).now_or_never() {
                Some(Ok(w)) if w.chunks == 1 => {
                    drop(st);
                    self.shared.backlog.wrote_out(len);
                    return;
                }
                Some(Ok(w)) => self.shared.backlog.wrote_out(w.bytes),
                Some(Err(_)) => {
                    st.closed = true;
                    return;
                }
                None => {}
            }
        }
        let [left] = rest;
        st.queue.push_back(left);
        drop(st);
        self.shared.wake.notify_one();
    }

    pub fn backlog(&self) -> &Arc<Backlog> {
        &self.shared.backlog
    }

    /// Ends the stream and waits, at most `limit`, until the peer has read
    /// everything, so that a connection close right after does not discard
    /// the last frames (a close code alone would still reach the peer).
    pub async fn drain(&self, limit: Duration) {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.state.lock();
            if st.closed {
                return;
            }
            st.finish = Some(tx);
        }
        self.shared.wake.notify_one();
        let _ = tokio::time::timeout(limit, rx).await;
    }
}

/// The fan-out's own way into a connection ([`DirectOut`]).
pub struct Direct {
    writer: Writer,
    /// `limits.max_backlog_bytes`.
    bound: usize,
    /// Set for good once the backlog went over the bound: from then on the
    /// session sees every delivery and applies its rules (pause, 4201).
    refused: AtomicBool,
}

impl Direct {
    pub fn new(writer: Writer, bound: usize) -> Direct {
        Direct {
            writer,
            bound,
            refused: AtomicBool::new(false),
        }
    }
}

impl DirectOut for Direct {
    fn try_send(&self, frame: &Bytes) -> bool {
        // One fan-out thread sends stored messages, so the flag needs no
        // stronger ordering than the stream's own lock gives.
        if self.refused.load(Ordering::Relaxed) {
            return false;
        }
        if self.writer.shared.backlog.out() > self.bound {
            self.refused.store(true, Ordering::Relaxed);
            return false;
        }
        self.writer.send(frame.clone());
        METRICS.messages_out(1);
        true
    }
}

/// What the task takes out of the state for one turn.
enum Turn {
    Write(quinn::SendStream, Vec<Bytes>),
    Finish(quinn::SendStream, Option<oneshot::Sender<()>>),
    Stop,
}

fn next_turn(st: &mut State) -> Option<Turn> {
    if st.closed {
        return Some(Turn::Stop);
    }
    if !st.queue.is_empty() {
        let stream = st.stream.take()?;
        return Some(Turn::Write(stream, st.queue.drain(..).collect()));
    }
    if st.finish.is_some() || st.abandoned {
        let stream = st.stream.take()?;
        st.closed = true;
        return Some(Turn::Finish(stream, st.finish.take()));
    }
    None
}

/// Writes what the senders could not, finishes the stream when asked or
/// abandoned. The stream is out of the state only while it writes here,
/// so a sender meanwhile queues behind.
async fn run(shared: Arc<Shared>) {
    loop {
        let turn = next_turn(&mut shared.state.lock());
        match turn {
            None => shared.wake.notified().await,
            Some(Turn::Stop) => return,
            Some(Turn::Write(mut stream, mut batch)) => {
                let bytes: usize = batch.iter().map(Bytes::len).sum();
                let ok = stream.write_all_chunks(&mut batch).await.is_ok();
                shared.backlog.wrote_out(bytes);
                let mut st = shared.state.lock();
                if ok {
                    st.stream = Some(stream);
                } else {
                    st.closed = true;
                    st.queue.clear();
                    return;
                }
            }
            Some(Turn::Finish(mut stream, reply)) => {
                if stream.finish().is_ok() && reply.is_some() {
                    let _ = stream.stopped().await;
                }
                if let Some(tx) = reply {
                    let _ = tx.send(());
                }
                return;
            }
        }
    }
}
