//! The QUIC door: one bidirectional stream of length-prefixed bincode
//! frames (`wire::frame`) plus datagrams for typing notices and transient
//! messages. It accepts the stream within the login deadline, then hands
//! the connection to the engine.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::backlog::Backlog;
use super::door::{Door, DoorError, Incoming, Outlet, Want};
use super::writer::{Direct, Writer};
use crate::core::outbound::{DirectOut, TransientFrames};
use crate::hub::Hub;
use crate::protocol::{ClientFrame, ErrorBody, ErrorCode, Event, Reply};
use crate::transport::{FrameReader, StreamError};
use crate::wire::frame::FrameError;

/// Runs a connection to its end. `done` is dropped when the session is fully
/// over, which is how shutdown knows every session has drained.
pub async fn run(
    hub: Arc<Hub>,
    conn: quinn::Connection,
    mut shutdown: broadcast::Receiver<()>,
    done: mpsc::Sender<()>,
) {
    let limits = &hub.config.limits;
    let login_deadline = Instant::now() + Duration::from_millis(limits.login_timeout_ms);
    let stream = tokio::select! {
        s = tokio::time::timeout_at(login_deadline, conn.accept_bi()) => s,
        _ = shutdown.recv() => {
            close_now(&conn, ErrorCode::ServerShutdown, "server shutting down");
            return;
        }
    };
    let (send, recv) = match stream {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return,
        Err(_) => {
            close_now(&conn, ErrorCode::LoginTimeout, "no login in time");
            return;
        }
    };
    let writer = Writer::spawn(send);
    let bound = usize::try_from(limits.max_backlog_bytes).unwrap_or(usize::MAX);
    let door = QuicDoor {
        direct: Arc::new(Direct::new(writer.clone(), bound)),
        writer,
        reader: FrameReader::new(recv, limits.max_frame_bytes as usize),
        conn,
    };
    super::login::run(hub, door, login_deadline, &mut shutdown).await;
    drop(done);
}

fn close_now(conn: &quinn::Connection, code: ErrorCode, reason: &str) {
    conn.close(crate::transport::app_close_code(code), reason.as_bytes());
}

pub struct QuicDoor {
    conn: quinn::Connection,
    reader: FrameReader,
    writer: Writer,
    direct: Arc<Direct>,
}

fn frame_error_code(e: &StreamError) -> Option<ErrorCode> {
    match e {
        StreamError::Frame(FrameError::TooLong { .. }) => Some(ErrorCode::FrameTooLong),
        StreamError::Frame(FrameError::Unparseable(_)) => Some(ErrorCode::UnparseableRawMsg),
        _ => None,
    }
}

impl Door for QuicDoor {
    type Out = Writer;

    fn outlet(&self) -> &Writer {
        &self.writer
    }

    fn peer_ip(&self) -> IpAddr {
        self.conn.remote_address().ip()
    }

    async fn next(&mut self, want: Want) -> Result<Incoming, DoorError> {
        tokio::select! {
            f = self.reader.read::<ClientFrame>(), if want.frames => match f {
                Ok(Some(f)) => Ok(Incoming::Frame(f)),
                Ok(None) => Err(DoorError::Lost),
                Err(e) => Err(match frame_error_code(&e) {
                    Some(code) => DoorError::Refused { code, reason: e.to_string() },
                    None => DoorError::Lost,
                }),
            },
            // Datagrams carry only fire-and-forget frames; a bad one is dropped.
            d = self.conn.read_datagram(), if want.unreliable => match d {
                Ok(bytes) => Ok(Incoming::Unreliable(crate::wire::codec::decode(&bytes).ok())),
                Err(_) => Err(DoorError::Lost),
            },
            else => std::future::pending().await,
        }
    }

    fn transient(&self, t: &TransientFrames) {
        let fits = self
            .conn
            .max_datagram_size()
            .is_some_and(|max| t.datagram.len() <= max);
        if !fits || self.conn.send_datagram(t.datagram.clone()).is_err() {
            self.writer.send(t.frame.clone());
        }
    }

    fn close(&self, code: u32, reason: &str) {
        let code = quinn::VarInt::from_u32(code);
        self.conn.close(code, reason.as_bytes());
    }

    fn direct(&self) -> Option<Arc<dyn DirectOut>> {
        Some(self.direct.clone())
    }
}

impl Outlet for Writer {
    fn reply(&self, id: u64, result: Result<Reply, ErrorBody>) {
        if let Some(f) = crate::wire::frame::response(id, result) {
            self.send(f);
        }
    }

    fn event(&self, ev: Event) -> bool {
        crate::wire::frame::event(ev)
            .map(|f| self.send(f))
            .is_some()
    }

    fn encoded(&self, frame: Bytes) {
        self.send(frame);
    }

    fn backlog(&self) -> &Arc<Backlog> {
        Writer::backlog(self)
    }

    async fn drain(&self, limit: Duration) {
        Writer::drain(self, limit).await;
    }
}
