//! The life of a session around the engine's loop ([`run`]): the login
//! handshake, tag conflicts, the order of steps once logged in, and
//! `_clientOnline` / `_clientOffline` at the start and the end.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tracing::{debug, info};

use super::door::{DRAIN, Door, DoorError, Incoming, Outlet, Want, close_with};
use super::engine::Session;
use super::{Ended, send_lane::SendLanes, sync};
use crate::core::Caller;
use crate::core::delivery::{Delivery, MAX_INFLIGHT};
use crate::core::outbound::{CloseOrder, Outbound};
use crate::core::typing::{SESSION_SWEEP_AT, TypingLimit};
use crate::hooks::Hook;
use crate::hub::Hub;
use crate::message;
use crate::metrics::METRICS;
use crate::protocol::codes::close;
use crate::protocol::{ClientFrame, Command, ErrorBody, ErrorCode, Event, Login, Reply};
use crate::registry::{self, DeviceHandle};

/// Runs a door's connection from its first frame to its end.
pub(super) async fn run<D: Door>(
    hub: Arc<Hub>,
    mut door: D,
    login_deadline: Instant,
    shutdown: &mut broadcast::Receiver<()>,
) {
    let Some((login, login_id)) = await_login(&hub, &mut door, login_deadline, shutdown).await
    else {
        return;
    };
    let Some(mut session) = open(hub, door, login, login_id).await else {
        return;
    };
    let ended = session.serve(shutdown).await;
    finish(&mut session, &ended);
}

/// Reads frames until a Login request arrives or the login deadline passes.
pub(super) async fn await_login<D: Door>(
    hub: &Hub,
    door: &mut D,
    deadline: Instant,
    shutdown: &mut broadcast::Receiver<()>,
) -> Option<(Login, u64)> {
    let want = Want {
        frames: true,
        unreliable: false,
    };
    loop {
        let frame = tokio::select! {
            f = tokio::time::timeout_at(deadline, door.next(want)) => f,
            _ = shutdown.recv() => {
                close_with(door, ErrorCode::ServerShutdown, "server shutting down").await;
                return None;
            }
        };
        let frame = match frame {
            Err(_) => {
                close_with(door, ErrorCode::LoginTimeout, "no login in time").await;
                return None;
            }
            Ok(Ok(Incoming::Frame(f))) => f,
            Ok(Ok(Incoming::Unreliable(_))) => continue,
            Ok(Err(DoorError::Lost)) => return None,
            Ok(Err(DoorError::Refused { code, reason })) => {
                close_with(door, code, &reason).await;
                return None;
            }
        };
        let out = door.outlet();
        match frame {
            ClientFrame::Request {
                id,
                cmd: Command::Login(login),
            } => {
                // Per-address limits first: a refused login costs no HMAC.
                let ip = door.peer_ip();
                let checked = hub.guard.login(ip).and_then(|()| {
                    let r = hub.auth.check(&login, crate::util::now_secs());
                    if r.as_ref()
                        .is_err_and(|e| e.code == ErrorCode::SignatureFailed.code())
                    {
                        hub.guard.login_failed(ip);
                    }
                    r
                });
                if let Err(e) = checked {
                    METRICS.login_refused();
                    let (code, detail) = (e.code, e.detail.clone());
                    out.reply(id, Err(e));
                    debug!(client = %login.client_id, %detail, "login refused");
                    out.drain(DRAIN).await;
                    door.close(u32::from(code), &detail);
                    return None;
                }
                return Some((login, id));
            }
            ClientFrame::Request { id, .. } => {
                let e = ErrorBody::new(ErrorCode::SessionRequired, "log in first");
                out.reply(id, Err(e));
            }
            ClientFrame::Ack { .. } | ClientFrame::Ping | ClientFrame::Typing { .. } => {}
        }
    }
}

/// Registers the device (displacing or refused by a holder of its tag),
/// answers the login, then, in this order: `_clientOnline`, the message
/// sync, the patch sync, the broadcasts, the receipts owed.
pub(super) async fn open<D: Door>(
    hub: Arc<Hub>,
    door: D,
    login: Login,
    login_id: u64,
) -> Option<Session<D>> {
    let out = door.outlet().clone();
    let conn_id = hub.registry.next_conn_id();
    let device_id = login
        .device_id
        .clone()
        .or_else(|| login.tag.clone().filter(|t| !t.is_empty()))
        .unwrap_or_else(|| "default".into());
    let caller = Caller {
        client: login.client_id.clone(),
        device_id: device_id.clone(),
        conn_id,
        ip: door.peer_ip().to_string(),
    };
    let (tx, device_rx) = mpsc::unbounded_channel();
    let handle = DeviceHandle {
        conn_id,
        device_id: device_id.clone(),
        tag: login.tag.clone(),
        tx,
        direct: door.direct(),
    };
    match hub
        .registry
        .register(&login.client_id, handle, login.reconnect)
    {
        Err(_) => {
            let e = ErrorBody::new(
                ErrorCode::SessionConflict,
                "another device holds this tag; reconnect gives way",
            );
            out.reply(login_id, Err(e));
            out.drain(DRAIN).await;
            door.close(
                u32::from(ErrorCode::SessionConflict.code()),
                "tag held by another device",
            );
            return None;
        }
        Ok(displaced) => {
            let reason = "logged in on another device with the same tag";
            let frame = crate::wire::frame::event(Event::Conflict {
                code: ErrorCode::SessionConflict.code(),
                reason: reason.into(),
            });
            for d in displaced {
                let _ = d.tx.send(Outbound::close(CloseOrder {
                    code: ErrorCode::SessionConflict.code(),
                    reason: reason.into(),
                    frame: frame.clone(),
                    close_code: close::TAG_CONFLICT,
                }));
            }
        }
    }
    let device = bind_device(&hub, &login);
    let reply = Reply::LoggedIn {
        server_time: crate::util::now_ms(),
        device_id,
    };
    out.reply(login_id, Ok(reply));
    info!(client = %caller.client, device = %caller.device_id, conn = conn_id, "online");
    METRICS.login(&caller.client);
    let tag = login.tag.clone().filter(|t| !t.is_empty());
    hub.hooks
        .after_if_on(Hook::ClientOnline, &caller.client, || {
            json!({
                "peerId": caller.client,
                "sourceIP": caller.ip,
                "tag": tag.as_deref().unwrap_or(registry::DEFAULT_TAG),
                "reconnect": u8::from(login.reconnect),
            })
        });
    let quota = hub.guard.connection();
    let ack_timeout = std::time::Duration::from_secs(hub.config.delivery.ack_timeout_secs);
    let now = Instant::now().into_std();
    let mut delivery = Delivery::new(now, caller.client.clone(), ack_timeout, MAX_INFLIGHT);
    if let Err(e) = sync::messages(&hub, &caller, &out, &mut delivery, now, login.sync) {
        sync_skipped(&caller, &out, "messages", e);
    }
    if let Err(e) = sync::patches(&hub, &caller, &out) {
        sync_skipped(&caller, &out, "patches", e);
    }
    match crate::broadcast::at_login(&hub, &caller.client) {
        Ok(got) => {
            delivery.handle_login_broadcasts(got.cursor, got.looked_at);
            for b in got.frames {
                delivery.handle_login_broadcast(b.id, b.conv, b.seq);
                out.encoded(b.frame);
            }
            super::engine::write_broadcast_cursor(&hub, &caller, &mut delivery);
        }
        Err(e) => sync_skipped(&caller, &out, "broadcasts", e.into()),
    }
    match message::receipts::owed(&hub, &caller.client) {
        Ok(frames) => frames.into_iter().for_each(|f| out.encoded(f)),
        Err(e) => tracing::warn!(error = %e, "owed receipts not sent"),
    }
    Some(Session {
        hub,
        door,
        out,
        caller,
        device_rx,
        delivery,
        lanes: SendLanes::new(),
        tag,
        typing: TypingLimit::new(SESSION_SWEEP_AT),
        quota,
        device,
    })
}

/// Binds the push device the login names to its client, before the login
/// is answered (so a push right after finds it). A failure costs pushes,
/// not the login: logged. Unknown devices bind nothing: the SDKs register
/// and log in concurrently, and the next login binds.
fn bind_device(hub: &Hub, login: &Login) -> Option<crate::store::DeviceRef> {
    let named = login.device_token.as_deref().filter(|t| !t.is_empty())?;
    let now = crate::util::now_ms();
    match hub
        .store
        .installation_bind_named(named, &login.client_id, now)
    {
        Ok(None) => {
            debug!(client = %login.client_id, "login names an unregistered push device");
            None
        }
        Ok(bound) => bound,
        Err(e) => {
            tracing::warn!(client = %login.client_id, error = %e, "push device not bound");
            None
        }
    }
}

/// A sync that failed is said, not skipped in silence: the client
/// knows its view may be incomplete until the next login.
fn sync_skipped(caller: &Caller, out: &impl Outlet, what: &str, e: ErrorBody) {
    debug!(client = %caller.client, what, error = %e, "offline sync skipped");
    out.event(Event::SyncSkipped {
        what: what.to_owned(),
        code: e.code,
        reason: e.detail,
    });
}

/// Unregisters the device, fires its will on a drop, and says `_clientOffline`.
pub(super) fn finish<D: Door>(s: &mut Session<D>, ended: &Ended) {
    // A drop without a logout sends the will; a server shutdown is not
    // the client going away.
    if ended.close_code == close::CONNECTION_LOST && ended.error != Some(ErrorCode::ServerShutdown)
    {
        message::will::fire(&s.hub, &s.caller);
    }
    let rooms = s
        .hub
        .registry
        .unregister(&s.caller.client, s.caller.conn_id);
    for r in rooms {
        if let Some(c) = s.hub.convs.get(&r) {
            c.state.write().room.remove(&s.caller.client);
        }
    }
    s.lanes.tasks.abort_all();
    info!(client = %s.caller.client, conn = s.caller.conn_id, close_code = ended.close_code,
          error = ?ended.error.map(|e| e.code()), "offline");
    let c = &s.caller;
    let tag = &s.tag;
    s.hub.hooks.after_if_on(Hook::ClientOffline, &c.client, || {
        let mut p = json!({
            "peerId": c.client,
            "closeCode": ended.close_code,
            "closeMsg": close_msg(ended.close_code),
            "tag": tag.as_deref().unwrap_or(registry::DEFAULT_TAG),
        });
        // LeanCloud omits the address when the connection was lost.
        if ended.close_code != close::CONNECTION_LOST {
            p["sourceIP"] = json!(c.ip);
        }
        if let Some(e) = ended.error {
            p["errorCode"] = json!(e.code());
            p["errorMsg"] = json!(e.reason());
        }
        p
    });
}

fn close_msg(close_code: u8) -> &'static str {
    match close_code {
        close::LOGOUT => "logout",
        close::TAG_CONFLICT => "logged in elsewhere with the same tag",
        close::KICKED => "kicked by the app",
        _ => "connection lost",
    }
}
