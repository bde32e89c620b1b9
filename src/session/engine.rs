//! The session loop, written once for every door: reads inputs, hands
//! fanned-out messages to the door, tracks acks and redelivers. The clock
//! is read here only (`tokio::time::Instant::now()`); every decision about
//! delivery is `core::delivery`'s, which this loop feeds with `handle_*`
//! and drains with `poll_*`, doing the store reads and writes in between.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tracing::debug;

use super::Ended;
use super::dispatch::{Dispatched, dispatch};
use super::door::{DRAIN, Door, DoorError, Incoming, Outlet, Want, close_with};
use super::send_lane::SendLanes;
use crate::core::Caller;
use crate::core::delivery::Delivery;
use crate::core::outbound::{CloseOrder, Outbound};
use crate::core::typing::{TYPING_REPEAT, TypingLimit};
use crate::hub::Hub;
use crate::message;
use crate::metrics::METRICS;
use crate::protocol::codes::close;
use crate::protocol::{ClientFrame, Command, ConvId, ErrorCode, Event};

/// One logged-in connection.
pub(super) struct Session<D: Door> {
    pub(super) hub: Arc<Hub>,
    pub(super) door: D,
    /// The door's write half (a clone, so the loop can hold it while the
    /// door is read).
    pub(super) out: D::Out,
    pub(super) caller: Caller,
    pub(super) device_rx: mpsc::UnboundedReceiver<Outbound>,
    pub(super) delivery: Delivery,
    pub(super) lanes: SendLanes,
    pub(super) tag: Option<String>,
    /// The last typing state relayed per conversation, to drop repeats.
    pub(super) typing: TypingLimit<ConvId, bool>,
    /// This connection's request and ping buckets (`guard`).
    pub(super) quota: crate::guard::ConnQuota,
    /// The push device the login bound to the client; logout unbinds it.
    pub(super) device: Option<crate::store::DeviceRef>,
}

/// What [`Session::over_quota`] decided.
enum Quota {
    Within,
    /// Refused and answered (or, for a typing notice, dropped).
    Answered,
    /// A flood: close with 4117.
    Close(&'static str),
}

impl<D: Door> Session<D> {
    pub(super) async fn serve(&mut self, shutdown: &mut broadcast::Receiver<()>) -> Ended {
        let idle = Duration::from_secs(self.hub.config.limits.idle_timeout_secs);
        let mut idle_deadline = Instant::now() + idle;
        let backlog = self.out.backlog().clone();
        let bound = usize::try_from(self.hub.config.limits.max_backlog_bytes).unwrap_or(usize::MAX);
        let stall = Duration::from_secs(self.hub.config.limits.backlog_stall_secs);
        let (mut paused, mut behind_since) = (false, None::<Instant>);
        loop {
            // Over the bound, requests are not read: the transport's flow
            // control then holds the client back, and nothing more is queued
            // for it. Undelivered messages stay in the log for its next sync.
            let was_paused = paused;
            paused = backlog.total() > bound;
            if paused && !was_paused {
                METRICS.backlog_paused();
            } else if was_paused && !paused {
                // Held back by us, not idle.
                idle_deadline = Instant::now() + idle;
            }
            let out = backlog.out();
            behind_since = if out > bound {
                behind_since.or_else(|| Some(Instant::now()))
            } else {
                None
            };
            // Deliveries cannot be paused: a client that lets them pile up
            // to twice the bound is closed at once.
            if out > bound.saturating_mul(2) {
                return self.too_slow().await;
            }
            // Redelivery checks run only while something is unacked, so an
            // idle session costs no timer wake-ups beyond its idle deadline.
            let check = self.delivery.poll_timeout().map(Instant::from_std);
            let want = Want {
                frames: !paused,
                unreliable: true,
            };
            tokio::select! {
                input = self.door.next(want) => match input {
                    Ok(Incoming::Frame(frame)) => {
                        idle_deadline = Instant::now() + idle;
                        if let Some(ended) = self.handle(frame).await {
                            return ended;
                        }
                    }
                    Ok(Incoming::Unreliable(frame)) => {
                        idle_deadline = Instant::now() + idle;
                        if let Some(ClientFrame::Typing { conv, started }) = frame {
                            self.typing(conv, started);
                        }
                    }
                    Err(DoorError::Refused { code, reason }) => return self.fail(code, &reason).await,
                    Err(DoorError::Lost) => return lost(),
                },
                () = tokio::time::sleep_until(idle_deadline), if !paused => {
                    return self.fail(ErrorCode::ReadTimeout, "no frame within the idle timeout").await;
                }
                out = self.device_rx.recv() => {
                    let Some(out) = out else { return lost() };
                    if let Some(ended) = self.deliver(out).await {
                        return ended;
                    }
                }
                () = backlog.shrunk(), if paused => {}
                () = tokio::time::sleep_until(behind_since.map_or_else(Instant::now, |t| t + stall)), if behind_since.is_some() => {
                    return self.too_slow().await;
                }
                () = tokio::time::sleep_until(check.unwrap_or_else(Instant::now)), if check.is_some() => {
                    self.redeliver(Instant::now().into_std());
                }
                _ = shutdown.recv() => {
                    self.drain_sends().await;
                    close_with(&self.door, ErrorCode::ServerShutdown, "server shutting down").await;
                    return Ended { close_code: close::CONNECTION_LOST, error: Some(ErrorCode::ServerShutdown) };
                }
                Some(_) = self.lanes.tasks.join_next(), if !self.lanes.tasks.is_empty() => {}
            }
        }
    }

    /// Closes a connection whose backlog stayed over the bound (4201).
    async fn too_slow(&mut self) -> Ended {
        METRICS.backlog_closed();
        self.fail(ErrorCode::SendMessageTimeout, "client too slow to read")
            .await
    }

    async fn fail(&mut self, code: ErrorCode, reason: &str) -> Ended {
        debug!(client = %self.caller.client, code = code.code(), reason, "closing session");
        close_with(&self.door, code, reason).await;
        Ended {
            close_code: close::CONNECTION_LOST,
            error: Some(code),
        }
    }

    /// Waits (bounded) for answers to sends already received.
    async fn drain_sends(&mut self) {
        let grace = Duration::from_secs(self.hub.config.server.shutdown_grace_secs);
        self.lanes.drain(grace).await;
    }

    /// Handles one client frame; `Some` ends the session.
    async fn handle(&mut self, frame: ClientFrame) -> Option<Ended> {
        match self.over_quota(&frame) {
            Quota::Within => {}
            Quota::Answered => return None,
            Quota::Close(reason) => return Some(self.fail(ErrorCode::QuotaExceeded, reason).await),
        }
        match frame {
            ClientFrame::Ping => None,
            ClientFrame::Ack { acks } => {
                self.ack(&acks);
                None
            }
            ClientFrame::Typing { conv, started } => {
                self.typing(conv, started);
                None
            }
            ClientFrame::Request {
                id,
                cmd: Command::Send(m),
            } => {
                self.lanes
                    .enqueue(&self.hub, &self.caller, &self.out, id, m);
                None
            }
            // Boxed: other commands are rare next to sends and acks, and
            // their futures would otherwise be part of every idle session.
            ClientFrame::Request { id, cmd } => Box::pin(self.command(id, cmd)).await,
        }
    }

    /// Whether `frame` is within this client's and connection's quotas
    /// (`guard`); a request over one is answered here with 4116 or 4117.
    fn over_quota(&self, frame: &ClientFrame) -> Quota {
        let guard = &self.hub.guard;
        let refused = match frame {
            ClientFrame::Ack { .. } => return Quota::Within,
            ClientFrame::Ping if self.quota.ping(guard) => return Quota::Within,
            ClientFrame::Ping => return Quota::Close("too many pings (quotas.pings_per_sec)"),
            ClientFrame::Typing { .. } if self.quota.request(guard) => return Quota::Within,
            ClientFrame::Typing { .. } => return Quota::Answered,
            ClientFrame::Request {
                id,
                cmd: Command::Send(_),
            } => match guard.send(&self.caller.client) {
                Ok(()) => return Quota::Within,
                Err(e) => (*id, e),
            },
            ClientFrame::Request { .. } if self.quota.request(guard) => return Quota::Within,
            ClientFrame::Request { id, .. } => (*id, crate::guard::ConnQuota::refused()),
        };
        self.out.reply(refused.0, Err(refused.1));
        Quota::Answered
    }

    async fn command(&mut self, id: u64, cmd: Command) -> Option<Ended> {
        match dispatch(&self.hub, &self.caller, cmd).await {
            Dispatched::Reply(result) => self.out.reply(id, result),
            Dispatched::Send(m) => self
                .lanes
                .enqueue(&self.hub, &self.caller, &self.out, id, m),
            Dispatched::Logout => {
                message::will::forget(&self.hub, &self.caller);
                if let Some(d) = &self.device {
                    let now = crate::util::now_ms();
                    if let Err(e) = self
                        .hub
                        .store
                        .installation_unbind(d, &self.caller.client, now)
                    {
                        tracing::warn!(client = %self.caller.client, error = %e, "device not unbound");
                    }
                }
                self.out.reply(id, Ok(crate::protocol::Reply::Ok));
                self.drain_sends().await;
                self.out.drain(DRAIN).await;
                self.door.close(0, "logout");
                return Some(Ended {
                    close_code: close::LOGOUT,
                    error: None,
                });
            }
        }
        None
    }

    /// Cumulative acks: everything of `conv` up to `seq` arrived on this device.
    fn ack(&mut self, acks: &[(ConvId, u64)]) {
        for &(conv, seq) in acks {
            self.delivery.handle_broadcast_ack(conv, seq);
        }
        write_broadcast_cursor(&self.hub, &self.caller, &mut self.delivery);
        for &(conv, seq) in acks {
            let last = self.hub.convs.get(&conv).map(|c| c.last_seq());
            let Some(acked) = self.delivery.handle_ack(conv, seq, last) else {
                continue;
            };
            let (client, device) = (&self.caller.client, &self.caller.device_id);
            if let Err(e) = self.hub.store.set_device_cursor(client, device, conv, seq) {
                tracing::warn!(error = %e, "device cursor not saved");
            }
            if let Some(r) = acked.receipt
                && let Err(e) = message::receipts::on_delivered(&self.hub, conv, client, &r.0, r.1)
            {
                tracing::warn!(error = %e, "delivery receipt not recorded");
            }
        }
    }

    /// Relays a typing change, unless it repeats the last one within a second.
    fn typing(&mut self, conv: ConvId, started: bool) {
        let now = Instant::now().into_std();
        if self.typing.admit(now, TYPING_REPEAT, conv, started) {
            message::typing::relay(&self.hub, &self.caller, conv, started);
        }
    }

    async fn deliver(&mut self, out: Outbound) -> Option<Ended> {
        match out {
            Outbound::Message(m) => {
                if self.delivery.handle_stored(Instant::now().into_std(), &m) {
                    self.out.encoded(m.frame.clone());
                    METRICS.messages_out(1);
                }
            }
            Outbound::Frame(f) => self.out.encoded((*f).clone()),
            Outbound::Broadcast(b) => {
                if self.delivery.handle_broadcast(&b) {
                    self.out.encoded(b.frame.clone());
                }
            }
            Outbound::Transient(t) => {
                self.door.transient(&t);
                METRICS.messages_out(1);
            }
            Outbound::Close(order) => {
                let CloseOrder {
                    code,
                    reason,
                    frame,
                    close_code,
                } = *order;
                if let Some(f) = frame {
                    self.out.encoded(f);
                }
                self.out.drain(DRAIN).await;
                self.door.close(u32::from(code), &reason);
                return Some(Ended {
                    close_code,
                    error: Some(if close_code == close::KICKED {
                        ErrorCode::KickedByApp
                    } else {
                        ErrorCode::SessionConflict
                    }),
                });
            }
        }
        None
    }

    /// Resends, from the log, every message unacked for longer than the ack
    /// timeout. One deleted meanwhile counts as acked: there is nothing left
    /// to send.
    fn redeliver(&mut self, now: std::time::Instant) {
        self.delivery.handle_timeout(now);
        while let Some((conv, lo, hi)) = self.delivery.poll_refetch() {
            let entries = match self.hub.store.messages(conv, lo, hi, usize::MAX, false) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "redelivery read failed");
                    continue;
                }
            };
            for msg in self.delivery.handle_refetched(now, conv, &entries) {
                if self.out.event(Event::Message {
                    msg,
                    redelivered: true,
                    chat_room: false,
                }) {
                    METRICS.messages_out(1);
                }
            }
        }
    }
}

/// Stores the client's broadcast cursor when the acks raised it.
pub(super) fn write_broadcast_cursor(hub: &Hub, caller: &Caller, delivery: &mut Delivery) {
    if let Some(id) = delivery.poll_broadcast_cursor()
        && let Err(e) = hub
            .store
            .raise_broadcast_cursors([caller.client.as_str()], id)
    {
        tracing::warn!(error = %e, "broadcast cursor not raised");
    }
}

fn lost() -> Ended {
    Ended {
        close_code: close::CONNECTION_LOST,
        error: None,
    }
}
