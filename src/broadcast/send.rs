//! The admin API's verbs: send a broadcast (stored, then fanned out; or
//! transient, fanned out only), list the unexpired ones, stop one.

use std::sync::Arc;

use super::fan_out::{Audience, spawn_fan_out};
use super::{Broadcast, MONTH_MS};
use crate::conversation::system;
use crate::core::ordering::Draft;
use crate::core::outbound::{BroadcastFrame, Outbound};
use crate::core::validate::{self, err};
use crate::hub::Hub;
use crate::message::app::Sent;
use crate::metrics::METRICS;
use crate::protocol::{ConvId, ErrorBody, ErrorCode, Event, Message, SendMessage, parse_msg_id};
use crate::store::LogEntry;
use crate::store::system::BroadcastRecord;
use crate::util::{now_ms, random_token};

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
    validate::from_client(&b.from)?;
    validate::content_size(
        &b.content,
        hub.config.limits.max_content_bytes as usize,
        "message",
    )?;
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
            chat_room: false,
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
            // only the sender, and sync leaves it to us (`Origin::Broadcast`).
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
        chat_room: false,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_defaults_to_a_month_and_never_exceeds_it() {
        let now = 1_000_000;
        assert_eq!(expiry(None, now).unwrap(), now + MONTH_MS);
        assert_eq!(expiry(Some(now + 5), now).unwrap(), now + 5);
        assert_eq!(expiry(Some(u64::MAX), now).unwrap(), now + MONTH_MS);
        assert_eq!(expiry(Some(now), now).unwrap_err().code, 4301);
        assert_eq!(expiry(Some(1), now).unwrap_err().code, 4301);
    }
}
