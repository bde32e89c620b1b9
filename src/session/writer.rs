//! The QUIC door's write half: the task that owns a connection's send
//! stream, so nothing else ever holds it across an await.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::backlog::Backlog;
use crate::core::outbound::DirectOut;
use crate::metrics::METRICS;

enum Msg {
    Data(Bytes),
    /// Ends the stream; answered once the peer has read it to the end.
    Finish(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Msg>,
    backlog: Arc<Backlog>,
}

impl Writer {
    pub fn spawn(send: quinn::SendStream) -> Writer {
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog::default());
        tokio::spawn(run(send, rx, backlog.clone()));
        Writer { tx, backlog }
    }

    /// Queues an encoded frame; a closed connection drops it silently.
    pub fn send(&self, frame: Bytes) {
        self.backlog.queued_out(frame.len());
        let _ = self.tx.send(Msg::Data(frame));
    }

    pub fn backlog(&self) -> &Arc<Backlog> {
        &self.backlog
    }

    /// Ends the stream and waits, at most `limit`, until the peer has read
    /// everything, so that a connection close right after does not discard
    /// the last frames (a close code alone would still reach the peer).
    pub async fn drain(&self, limit: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Finish(tx)).is_ok() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }
}

/// The fan-out's own way into a connection's queue ([`DirectOut`]).
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
        // stronger ordering than the queue itself gives.
        if self.refused.load(Ordering::Relaxed) {
            return false;
        }
        if self.writer.backlog.out() > self.bound {
            self.refused.store(true, Ordering::Relaxed);
            return false;
        }
        self.writer.send(frame.clone());
        METRICS.messages_out(1);
        true
    }
}

async fn run(
    mut send: quinn::SendStream,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    backlog: Arc<Backlog>,
) {
    let mut batch: Vec<Bytes> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut finish = None;
        let mut next = Some(first);
        // Write everything already queued in one go.
        while let Some(m) = next.take().or_else(|| rx.try_recv().ok()) {
            match m {
                Msg::Data(b) => batch.push(b),
                Msg::Finish(tx) => {
                    finish = Some(tx);
                    break;
                }
            }
            if batch.len() >= 256 {
                break;
            }
        }
        let bytes: usize = batch.iter().map(Bytes::len).sum();
        if !batch.is_empty() && send.write_all_chunks(&mut batch).await.is_err() {
            return;
        }
        if bytes > 0 {
            backlog.wrote_out(bytes);
        }
        batch.clear();
        // A burst's capacity is not kept for an idle connection.
        batch.shrink_to(8);
        if let Some(tx) = finish {
            if send.finish().is_ok() {
                let _ = send.stopped().await;
            }
            let _ = tx.send(());
            return;
        }
    }
    let _ = send.finish();
}
