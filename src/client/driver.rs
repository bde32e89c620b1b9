//! The two background tasks of a connection: the reader ("driver") that
//! routes server frames, and the writer that owns the send stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::acks::AckBatch;
use super::{ClientError, ClientEvent};
use crate::protocol::{ClientFrame, Event, Reply, ServerFrame};
use crate::transport::StreamError;
use crate::transport::{FrameReader, close_code};
use crate::wire::codec;
use crate::wire::frame;

/// How long acks may wait to be batched with later ones.
pub(crate) const ACK_FLUSH: Duration = Duration::from_millis(20);

/// How long to wait, after the stream ends, for the close that carries the server's code.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub(crate) type ReplySender = oneshot::Sender<Result<Reply, ClientError>>;

/// Why the connection ended, as reported to requests and the event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseInfo {
    pub code: Option<u16>,
    pub reason: String,
}

impl CloseInfo {
    pub fn error(&self) -> ClientError {
        ClientError::Closed {
            code: self.code,
            reason: self.reason.clone(),
        }
    }
}

#[derive(Default)]
pub(crate) struct Pending {
    pub map: HashMap<u64, ReplySender>,
    /// Set once, by the driver, when the connection is over; later requests fail fast.
    pub closed: Option<CloseInfo>,
}

/// State the background tasks share with the handles. Holding it does not
/// keep the connection open; see `Guard` in the parent module.
pub(crate) struct Shared {
    pub conn: quinn::Connection,
    pub pending: Mutex<Pending>,
    pub acks: Mutex<AckBatch>,
    pub ack_notify: Notify,
    pub next_id: AtomicU64,
}

impl Shared {
    pub fn new(conn: quinn::Connection) -> Self {
        Shared {
            conn,
            pending: Mutex::new(Pending::default()),
            acks: Mutex::new(AckBatch::new()),
            ack_notify: Notify::new(),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn record_ack(&self, conv: crate::protocol::ConvId, seq: u64) {
        if self.acks.lock().record(conv, seq) {
            self.ack_notify.notify_one();
        }
    }
}

/// The close as the application should see it: the peer's LeanCloud code
/// when it sent one, else the code of a `Closing` event that preceded it.
pub(crate) fn close_info(err: &quinn::ConnectionError, closing: Option<&CloseInfo>) -> CloseInfo {
    let code = close_code(err);
    let reason = match err {
        quinn::ConnectionError::ApplicationClosed(c) => {
            String::from_utf8_lossy(&c.reason).into_owned()
        }
        quinn::ConnectionError::LocallyClosed => "closed locally".to_owned(),
        other => other.to_string(),
    };
    match (code, closing) {
        (Some(code), _) => CloseInfo {
            code: Some(code),
            reason: if reason.is_empty() {
                closing.map(|c| c.reason.clone()).unwrap_or_default()
            } else {
                reason
            },
        },
        (None, Some(c)) if !matches!(err, quinn::ConnectionError::LocallyClosed) => c.clone(),
        (None, _) => CloseInfo { code: None, reason },
    }
}

pub(crate) struct Driver {
    pub shared: Arc<Shared>,
    pub reader: FrameReader,
    pub events: mpsc::UnboundedSender<ClientEvent>,
    pub auto_ack: bool,
}

enum StreamEnd {
    Finished,
    Failed(StreamError),
}

impl Driver {
    pub async fn run(mut self) {
        let conn = self.shared.conn.clone();
        let mut closing: Option<CloseInfo> = None;
        let mut datagrams_open = true;
        let end = loop {
            tokio::select! {
                r = self.reader.read::<ServerFrame>() => match r {
                    Ok(Some(f)) => self.handle(f, &mut closing),
                    Ok(None) => break StreamEnd::Finished,
                    Err(e) => break StreamEnd::Failed(e),
                },
                d = conn.read_datagram(), if datagrams_open => match d {
                    Ok(bytes) => match codec::decode::<ServerFrame>(&bytes) {
                        Ok(f) => self.handle(f, &mut closing),
                        // A datagram is unreliable anyway; a bad one is dropped, not fatal.
                        Err(e) => tracing::debug!("undecodable datagram: {e}"),
                    },
                    // The stream read reports the close with its reason.
                    Err(_) => datagrams_open = false,
                },
            }
        };
        let info = self.finish(end, closing.as_ref()).await;
        self.fail_all(&info);
        let _ = self.events.send(ClientEvent::Closed {
            code: info.code,
            reason: info.reason,
        });
    }

    fn handle(&mut self, frame: ServerFrame, closing: &mut Option<CloseInfo>) {
        match frame {
            ServerFrame::Response { id, result } => {
                let tx = self.shared.pending.lock().map.remove(&id);
                // No waiter: the request timed out or was cancelled.
                if let Some(tx) = tx {
                    let _ = tx.send(result.map_err(ClientError::Server));
                }
            }
            ServerFrame::Event(ev) => {
                match &ev {
                    Event::Message { msg, chat_room, .. }
                        if self.auto_ack && msg.seq > 0 && !msg.transient && !chat_room =>
                    {
                        self.shared.record_ack(msg.conv, msg.seq);
                    }
                    Event::Closing { code, reason } => {
                        *closing = Some(CloseInfo {
                            code: Some(*code),
                            reason: reason.clone(),
                        });
                    }
                    _ => {}
                }
                // Nobody listening is fine: the client handle may still be making requests.
                let _ = self.events.send(ClientEvent::Server(ev));
            }
        }
    }

    /// Turns the way the stream ended into the close the application sees,
    /// closing the connection ourselves if the server has not.
    async fn finish(&self, end: StreamEnd, closing: Option<&CloseInfo>) -> CloseInfo {
        let conn = &self.shared.conn;
        if let Some(err) = conn.close_reason() {
            return close_info(&err, closing);
        }
        match end {
            StreamEnd::Finished => {
                // The server finishes its stream just before closing; wait for the code.
                if let Ok(err) = tokio::time::timeout(CLOSE_GRACE, conn.closed()).await {
                    return close_info(&err, closing);
                }
                conn.close(0u32.into(), b"stream finished");
                closing.cloned().unwrap_or(CloseInfo {
                    code: None,
                    reason: "server finished the stream".into(),
                })
            }
            StreamEnd::Failed(StreamError::Read(quinn::ReadError::ConnectionLost(err))) => {
                close_info(&err, closing)
            }
            StreamEnd::Failed(e) => {
                // A broken frame leaves the stream unusable: there is no resync point.
                tracing::debug!("closing after stream error: {e}");
                conn.close(0u32.into(), b"protocol error");
                CloseInfo {
                    code: None,
                    reason: e.to_string(),
                }
            }
        }
    }

    fn fail_all(&self, info: &CloseInfo) {
        let drained: Vec<ReplySender> = {
            let mut p = self.shared.pending.lock();
            p.closed = Some(info.clone());
            p.map.drain().map(|(_, tx)| tx).collect()
        };
        for tx in drained {
            let _ = tx.send(Err(info.error()));
        }
    }
}

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub send: quinn::SendStream,
    pub frames: mpsc::UnboundedReceiver<Bytes>,
    pub ping_interval: Duration,
}

async fn tick(ping: &mut Option<Interval>) {
    match ping {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl Writer {
    pub async fn run(mut self) {
        let conn = self.shared.conn.clone();
        let ping_frame = frame::encode(&ClientFrame::Ping).ok();
        let mut ping = match (&ping_frame, self.ping_interval.is_zero()) {
            (Some(_), false) => {
                let mut i = tokio::time::interval_at(
                    Instant::now() + self.ping_interval,
                    self.ping_interval,
                );
                i.set_missed_tick_behavior(MissedTickBehavior::Delay);
                Some(i)
            }
            _ => None,
        };
        let mut buf: Vec<Bytes> = Vec::with_capacity(64);
        let mut frames_open = true;
        let mut ack_deadline: Option<Instant> = None;
        loop {
            let res = tokio::select! {
                n = self.frames.recv_many(&mut buf, 64), if frames_open => {
                    if n == 0 {
                        // Every Client handle is gone; an Events may still want acks and pings.
                        frames_open = false;
                        Ok(())
                    } else {
                        // Acks first: a request such as a logout may end
                        // the session, and what was had must be said before.
                        match self.flush_acks().await {
                            Ok(()) => self.send.write_all_chunks(&mut buf).await,
                            Err(e) => Err(e),
                        }
                    }
                }
                _ = self.shared.ack_notify.notified(), if ack_deadline.is_none() => {
                    ack_deadline = Some(Instant::now() + ACK_FLUSH);
                    Ok(())
                }
                _ = tokio::time::sleep_until(ack_deadline.unwrap_or_else(Instant::now)), if ack_deadline.is_some() => {
                    ack_deadline = None;
                    self.flush_acks().await
                }
                _ = tick(&mut ping) => match &ping_frame {
                    Some(f) => self.send.write_all(f).await,
                    None => Ok(()),
                },
                _ = conn.closed() => break,
            };
            buf.clear();
            if let Err(e) = res {
                // With one stream per connection, a dead stream is a dead session.
                tracing::debug!("closing after stream write error: {e}");
                conn.close(0u32.into(), b"stream write failed");
                break;
            }
        }
    }

    async fn flush_acks(&mut self) -> Result<(), quinn::WriteError> {
        let acks = self.shared.acks.lock().take();
        let Some(acks) = acks else { return Ok(()) };
        match frame::encode(&ClientFrame::Ack { acks }) {
            Ok(bytes) => self.send.write_all(&bytes).await,
            Err(e) => {
                tracing::warn!("ack frame encoding failed: {e}");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_close_ignores_an_earlier_closing_event_only_when_local() {
        let closing = CloseInfo {
            code: Some(4111),
            reason: "SESSION_CONFLICT".into(),
        };
        let local = close_info(&quinn::ConnectionError::LocallyClosed, Some(&closing));
        assert_eq!(local.code, None);
        let timed_out = close_info(&quinn::ConnectionError::TimedOut, Some(&closing));
        assert_eq!(timed_out, closing);
        let plain = close_info(&quinn::ConnectionError::TimedOut, None);
        assert_eq!(plain.code, None);
    }
}
