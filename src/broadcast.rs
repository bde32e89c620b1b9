//! Broadcasts: messages from the app to every client, or to a system
//! conversation's subscribers, with a TTL (LeanCloud's `valid_till`,
//! default and at most [`MONTH_MS`] ahead).
//!
//! A broadcast is a message in its system conversation's log, so history
//! shows it whether it expired or not, plus a record in the store
//! (`store::system`) saying who it is for and until when. It reaches
//! clients two ways:
//!
//! - live: a background task walks the clients online now (the registry
//!   shard by shard, or the subscriber list) `system.fan_out_step` clients
//!   at a time, yielding between steps so other traffic keeps flowing;
//! - at login ([`at_login`]): the unexpired broadcasts after the client's
//!   cursor, oldest first; a client never seen before gets only the newest.
//!
//! One cursor per client (every broadcast up to it was had), never a copy
//! of a broadcast per client. The cursor moves when the client acknowledges
//! the broadcast, not when it is sent (`session::broadcasts`): a connection
//! that died unnoticed is still handed broadcasts until it times out, and
//! those come again at its next login.
//! Expired records are swept in the background ([`start_sweeper`]); the
//! sweep reads an expiry index, so it costs one seek when nothing expired.
//!
//! Its log entry has no device (`origin_device` empty) and an empty
//! `to_peers`, so the commit pipeline's fan-out gives it to its sender only
//! and offline sync never sends it: delivery is this module's alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::broadcast as signal;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::auth::valid_id;
use crate::conversation::system;
use crate::core::outbound::{BroadcastFrame, Outbound};
use crate::hub::Hub;
use crate::message::Draft;
use crate::message::app::Sent;
use crate::metrics::METRICS;
use crate::protocol::{
    Content, ConvId, ErrorBody, ErrorCode, Event, Message, SendMessage, parse_msg_id,
};
use crate::store::system::BroadcastRecord;
use crate::store::{LogEntry, Store, StoreError};
use crate::util::{now_ms, random_token};

/// LeanCloud's default and longest `valid_till`: a month (30 days) ahead.
pub const MONTH_MS: u64 = 30 * 24 * 3600 * 1000;

/// Most missed broadcasts a login gets (the newest); older ones stay in
/// history.
pub const AT_LOGIN_MAX: usize = 1000;

/// How often expired records are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
const SWEEP_BATCH: usize = 1000;

/// Whether a log entry is a broadcast: no device, and nobody named.
/// Clients' messages have a device; the app's sends name 1 to 20 receivers.
pub fn is_broadcast(e: &LogEntry) -> bool {
    e.origin_device.is_empty() && e.to_peers.as_ref().is_some_and(Vec::is_empty)
}

/// A broadcast as the admin API asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    /// The system conversation it belongs to.
    pub conv: ConvId,
    /// Shown as the sender; need not be a subscriber.
    pub from: String,
    pub content: Content,
    /// A JSON object, as text.
    pub push_data: Option<String>,
    /// Ms since the epoch; `None` is a month ahead, later is cut to that.
    pub valid_till: Option<u64>,
    /// Only the conversation's subscribers, not every client.
    pub subscribers_only: bool,
    /// Not stored: only the clients online now get it.
    pub transient: bool,
    /// The admin API caller, kept as the message's `from-ip`.
    pub from_ip: String,
}

/// Who a fan-out walks.
enum Audience {
    Everyone,
    Subscribers(Vec<String>),
}

fn err(code: ErrorCode, detail: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, detail)
}

/// The expiry a broadcast gets: a month ahead by default, never later.
fn expiry(asked: Option<u64>, now: u64) -> Result<u64, ErrorBody> {
    let latest = now.saturating_add(MONTH_MS);
    match asked {
        None => Ok(latest),
        Some(t) if t <= now => Err(err(
            ErrorCode::ConvApiFailed,
            format!("valid_till {t} is not in the future"),
        )),
        Some(t) => Ok(t.min(latest)),
    }
}

/// Stores the broadcast in its conversation's log (answered once durable),
/// records it, and starts its online fan-out; a transient one is only
/// fanned out.
pub async fn send(hub: &Arc<Hub>, b: Broadcast) -> Result<Sent, ErrorBody> {
    if !valid_id(&b.from) {
        return Err(err(
            ErrorCode::InvalidMessagingTarget,
            format!("invalid from_client {:?}", b.from),
        ));
    }
    let max = hub.config.limits.max_content_bytes as usize;
    if b.content.len() > max {
        return Err(err(
            ErrorCode::FrameTooLong,
            format!(
                "message of {} bytes over limits.max_content_bytes ({max})",
                b.content.len()
            ),
        ));
    }
    let conv = system::lookup(hub, b.conv)?;
    let now = now_ms();
    let valid_till = expiry(b.valid_till, now)?;
    let audience = || {
        if b.subscribers_only {
            Audience::Subscribers(conv.state.read().rec.members.clone())
        } else {
            Audience::Everyone
        }
    };
    if b.transient {
        let msg = Message {
            msg_id: random_token(20),
            transient: true,
            push_data: b.push_data.clone(),
            ..Message::new(b.conv, 0, b.from.clone(), now, b.content.clone())
        };
        let sent = Sent {
            msg_id: msg.msg_id.clone(),
            timestamp: msg.timestamp,
        };
        let out = Outbound::transient(Event::Message {
            msg,
            redelivered: false,
        })
        .ok_or_else(|| err(ErrorCode::InternalError, "encoding the broadcast failed"))?;
        METRICS.broadcast();
        METRICS.messages_in(1);
        spawn_fan_out(hub, audience(), None, out);
        return Ok(sent);
    }
    let mut send = SendMessage::text(b.conv, String::new());
    send.content = b.content;
    send.push_data = b.push_data;
    let committed = hub
        .pipeline
        .submit(Draft {
            conv: conv.clone(),
            send,
            from: b.from.clone(),
            // No device and nobody named: the pipeline's fan-out reaches
            // only the sender, and sync leaves it to us (`is_broadcast`).
            origin_device: String::new(),
            origin_conn: 0,
            from_ip: b.from_ip,
            to_peers: Some(Vec::new()),
            inbound: false,
        })?
        .wait()
        .await?;
    let seq = committed.sent.seq;
    let entry = hub.store.message(b.conv, seq)?.ok_or_else(|| {
        err(
            ErrorCode::ConvNotFound,
            format!("conversation {} was deleted", b.conv),
        )
    })?;
    let record = BroadcastRecord {
        conv: b.conv,
        seq,
        from: b.from.clone(),
        created_at: committed.sent.timestamp,
        valid_till,
        subscribers_only: b.subscribers_only,
    };
    let id = hub.store.put_broadcast(&record)?;
    hub.pipeline.barrier().await?;
    METRICS.broadcast();
    let frame = crate::wire::frame::event(Event::Message {
        msg: entry.msg.for_receiver(""),
        redelivered: false,
    })
    .ok_or_else(|| err(ErrorCode::InternalError, "encoding the broadcast failed"))?;
    spawn_fan_out(
        hub,
        audience(),
        Some(b.from),
        Outbound::Broadcast(Arc::new(BroadcastFrame {
            id,
            conv: b.conv,
            seq,
            frame,
        })),
    );
    Ok(Sent {
        msg_id: committed.sent.msg_id,
        timestamp: committed.sent.timestamp,
    })
}

/// Runs the online fan-out off the request: the answer does not wait for
/// 100,000 clients, and the task holds the server only weakly, a step at a
/// time, so a shutdown is not held up by it.
fn spawn_fan_out(hub: &Arc<Hub>, audience: Audience, skip: Option<String>, out: Outbound) {
    let running = FanOutRunning::new(hub);
    let hub = Arc::downgrade(hub);
    tokio::spawn(async move {
        let _running = running;
        let started = Instant::now();
        let Some(reached) = fan_out(&hub, audience, skip.as_deref(), &out).await else {
            return;
        };
        let took = started.elapsed();
        METRICS.broadcast_fan_out.observe(took);
        METRICS.broadcast_delivered(reached);
        debug!(
            clients = reached,
            ms = took.as_millis() as u64,
            "broadcast fan-out done"
        );
    });
}

/// Counts a fan-out in `Hub::fan_outs` from before the request is answered
/// until its task ends, however it ends.
struct FanOutRunning(Arc<AtomicU64>);

impl FanOutRunning {
    fn new(hub: &Hub) -> Self {
        hub.fan_outs.fetch_add(1, Ordering::Relaxed);
        FanOutRunning(hub.fan_outs.clone())
    }
}

impl Drop for FanOutRunning {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Hands `out` to every device of the audience online now, `fan_out_step`
/// clients per step. The number of clients reached; `None` once the server
/// is gone.
async fn fan_out(
    hub: &Weak<Hub>,
    audience: Audience,
    skip: Option<&str>,
    out: &Outbound,
) -> Option<u64> {
    let (step_len, mut pace) = {
        let hub = hub.upgrade()?;
        let sys = &hub.config.system;
        let step_len = usize::try_from(sys.fan_out_step)
            .unwrap_or(usize::MAX)
            .max(1);
        (step_len, Pace::new(sys.fan_out_rate))
    };
    match audience {
        Audience::Subscribers(list) => {
            for chunk in list.chunks(step_len) {
                let n = step(hub, chunk, skip, out)?;
                pace.after(n).await;
            }
        }
        Audience::Everyone => {
            let shards = hub.upgrade()?.registry.shard_count();
            for shard in 0..shards {
                let online = hub.upgrade()?.registry.online_in_shard(shard);
                for chunk in online.chunks(step_len) {
                    let n = step(hub, chunk, skip, out)?;
                    pace.after(n).await;
                }
            }
        }
    }
    Some(pace.reached)
}

/// Spreads a fan-out over time. Every delivery wakes a session and, a moment
/// later, brings back the client's ack through the one UDP socket all
/// connections share; handing 2,000 at once queues a chat message behind
/// all of that (tens of ms on 2 cores, see docs/PERFORMANCE.md).
struct Pace {
    started: tokio::time::Instant,
    /// Deliveries per second; 0: only a yield between steps.
    rate: u64,
    reached: u64,
}

impl Pace {
    fn new(rate: u64) -> Self {
        Pace {
            started: tokio::time::Instant::now(),
            rate,
            reached: 0,
        }
    }

    /// After a step that reached `n` clients: waits until the schedule
    /// allows the next, and always lets other tasks run.
    async fn after(&mut self, n: u64) {
        self.reached += n;
        if self.rate > 0 {
            let due =
                self.started + Duration::from_secs_f64(self.reached as f64 / self.rate as f64);
            if due > tokio::time::Instant::now() {
                tokio::time::sleep_until(due).await;
                return;
            }
        }
        tokio::task::yield_now().await;
    }
}

/// One step: the message to these clients' devices. How many it reached.
fn step(hub: &Weak<Hub>, clients: &[String], skip: Option<&str>, out: &Outbound) -> Option<u64> {
    let hub = hub.upgrade()?;
    let reached = clients
        .iter()
        .filter(|c| Some(c.as_str()) != skip && hub.registry.send_to_client(c, out))
        .count();
    Some(reached as u64)
}

fn subscribed(hub: &Hub, conv: ConvId, client: &str) -> bool {
    hub.convs
        .get(&conv)
        .is_some_and(|c| !c.is_deleted() && c.state.read().is_member(client))
}

/// What a login reads of the broadcasts: the ones `client` missed,
/// oldest first, as `Message` events flagged `redelivered`, and where its
/// cursor stands. Nothing is written: the cursor moves as the client
/// acknowledges them.
#[derive(Debug, Default)]
pub struct AtLogin {
    pub frames: Vec<BroadcastFrame>,
    /// The stored cursor; `None`: never seen.
    pub cursor: Option<u64>,
    /// The newest broadcast looked at, meant for the client or not.
    pub looked_at: Option<u64>,
}

/// Called once per login, after the offline sync. The session drops a
/// live copy of one of these that the fan-out hands over after the login
/// read the store. Store failures are logged: a login does not fail for
/// them, and the cursor stays, so they come at the next one.
pub fn at_login(hub: &Hub, client: &str) -> Result<AtLogin, StoreError> {
    let got = missed(hub, client)?;
    METRICS.broadcast_delivered(got.frames.len() as u64);
    Ok(got)
}

fn missed(hub: &Hub, client: &str) -> Result<AtLogin, StoreError> {
    let store = &hub.store;
    let now = now_ms();
    let applies = |r: &BroadcastRecord| {
        r.valid_till > now
            && r.from != client
            && (!r.subscribers_only || subscribed(hub, r.conv, client))
    };
    let cursor = store.broadcast_cursor(client)?;
    // Never seen: only the newest broadcast meant for it.
    let wanted = if cursor.is_some() { AT_LOGIN_MAX } else { 1 };
    let mut looked_at = None;
    let mut due = Vec::new();
    for item in store.broadcasts_newest_first(cursor.unwrap_or(0)) {
        let (id, r) = item?;
        looked_at = looked_at.max(Some(id));
        if applies(&r) {
            due.push((id, r));
            if due.len() == wanted {
                break;
            }
        }
    }
    let mut frames = Vec::with_capacity(due.len());
    for (id, r) in due.into_iter().rev() {
        let Some(e) = store.message(r.conv, r.seq)? else {
            continue;
        };
        if e.deleted {
            continue;
        }
        if let Some(frame) = crate::wire::frame::event(Event::Message {
            msg: e.msg.for_receiver(client),
            redelivered: true,
        }) {
            frames.push(BroadcastFrame {
                id,
                conv: r.conv,
                seq: r.seq,
                frame,
            });
        }
    }
    Ok(AtLogin {
        frames,
        cursor,
        looked_at,
    })
}

/// A broadcast as `GET /1.2/rtm/broadcasts` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub record: BroadcastRecord,
    pub entry: LogEntry,
}

/// Unexpired broadcasts, of conversation `conv` when given, newest first.
pub fn list(hub: &Hub, conv: Option<ConvId>) -> Result<Vec<Listed>, ErrorBody> {
    let now = now_ms();
    let mut out = Vec::new();
    for item in hub.store.broadcasts_newest_first(0) {
        let (_, record) = item?;
        if record.valid_till <= now || conv.is_some_and(|c| c != record.conv) {
            continue;
        }
        if let Some(entry) = hub.store.message(record.conv, record.seq)?
            && !entry.deleted
        {
            out.push(Listed { record, entry });
        }
    }
    Ok(out)
}

/// Stops a broadcast: nobody gets it at login any more. Its message stays
/// in history, as LeanCloud's does.
pub async fn delete(hub: &Hub, msg_id: &str) -> Result<(), ErrorBody> {
    let not_found = || err(ErrorCode::MessageNotFound, format!("no broadcast {msg_id}"));
    let (conv, seq) = parse_msg_id(msg_id).ok_or_else(not_found)?;
    let id = hub
        .store
        .broadcast_of_message(conv, seq)?
        .ok_or_else(not_found)?;
    if !hub.store.remove_broadcast(id)? {
        return Err(not_found());
    }
    hub.pipeline.barrier().await?;
    Ok(())
}

/// Removes every record expired by `now`; how many went.
pub fn sweep(store: &Store, now: u64) -> Result<u64, StoreError> {
    let mut n = 0;
    loop {
        let ids = store.expired_broadcasts(now, SWEEP_BATCH)?;
        for &id in &ids {
            n += u64::from(store.remove_broadcast(id)?);
        }
        if ids.len() < SWEEP_BATCH {
            return Ok(n);
        }
    }
}

/// Sweeps expired records every second until `shutdown`, off the async
/// workers; sends never wait for it.
pub fn start_sweeper(hub: &Arc<Hub>, mut shutdown: signal::Receiver<()>) -> JoinHandle<()> {
    let hub = Arc::downgrade(hub);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.recv() => return,
            }
            let Some(store) = hub.upgrade().map(|h| h.store.clone()) else {
                return;
            };
            match tokio::task::spawn_blocking(move || sweep(&store, now_ms())).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    METRICS.broadcasts_swept(n);
                    debug!(records = n, "expired broadcasts swept");
                }
                Ok(Err(e)) => warn!(error = %e, "broadcast sweep failed"),
                Err(e) => warn!(error = %e, "broadcast sweep task failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On tokio's virtual clock: each step waits for its share of a second.
    #[tokio::test(start_paused = true)]
    async fn pace_spreads_a_fan_out_over_time() {
        let t0 = tokio::time::Instant::now();
        let mut p = Pace::new(1000);
        p.after(100).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(100));
        p.after(0).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(100));
        p.after(400).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(500));
        assert_eq!(p.reached, 500);
        let t1 = tokio::time::Instant::now();
        let mut unpaced = Pace::new(0);
        unpaced.after(1_000_000).await;
        assert_eq!(t1.elapsed(), Duration::ZERO);
    }

    #[test]
    fn expiry_defaults_to_a_month_and_never_exceeds_it() {
        let now = 1_000_000;
        assert_eq!(expiry(None, now).unwrap(), now + MONTH_MS);
        assert_eq!(expiry(Some(now + 5), now).unwrap(), now + 5);
        assert_eq!(expiry(Some(u64::MAX), now).unwrap(), now + MONTH_MS);
        assert_eq!(expiry(Some(now), now).unwrap_err().code, 4301);
        assert_eq!(expiry(Some(1), now).unwrap_err().code, 4301);
    }

    #[test]
    fn broadcasts_are_told_apart_from_clients_and_app_sends() {
        let msg = Message::new(ConvId([1; 12]), 1, "Bot", 1, Content::Text("hi".into()));
        let mut e = LogEntry::new(msg, "", "127.0.0.1");
        e.to_peers = Some(Vec::new());
        assert!(is_broadcast(&e));
        e.to_peers = Some(vec!["Tom".into()]);
        assert!(!is_broadcast(&e), "an app send names its receivers");
        e.to_peers = Some(Vec::new());
        e.origin_device = "phone".into();
        assert!(!is_broadcast(&e), "a client's message has a device");
    }
}
