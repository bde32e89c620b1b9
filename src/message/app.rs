//! The app's messages to chosen users through a system conversation (the
//! admin API's `POST /1.2/rtm/service-conversations/{id}/messages`): stored
//! ones go through the commit pipeline like a client's, transient ones
//! straight to whoever is online. Moved out of `conversation::system` so
//! that conversations do not depend on messages.

use crate::auth::valid_id;
use crate::conversation::system;
use crate::core::outbound::Outbound;
use crate::core::validate::{self, err};
use crate::hub::Hub;
use crate::metrics::METRICS;
use crate::protocol::{Content, ConvId, ErrorBody, ErrorCode, Event, Message, SendMessage};
use crate::util::{now_ms, random_token};

use crate::core::ordering::Draft;

/// LeanCloud's cap on `to_clients` of one send.
pub const MAX_TO_CLIENTS: usize = 20;

/// A message from the app to some users, through a system conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct AppMessage {
    /// Shown as the sender; need not be a subscriber (LeanCloud does not check).
    pub from: String,
    pub to: Vec<String>,
    pub content: Content,
    /// Not stored; reaches only the receivers online now.
    pub transient: bool,
    /// Transient only: keep the sender's own devices out.
    pub no_sync: bool,
    /// A JSON object, as text.
    pub push_data: Option<String>,
    /// The admin API caller's address, kept as the message's `from-ip`.
    pub from_ip: String,
}

/// What a send answers: LeanCloud's `{"msg-id", "timestamp"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub msg_id: String,
    pub timestamp: u64,
}

fn check_message(hub: &Hub, m: &mut AppMessage) -> Result<(), ErrorBody> {
    let target = |detail: String| err(ErrorCode::InvalidMessagingTarget, detail);
    validate::from_client(&m.from)?;
    m.to.sort();
    m.to.dedup();
    if m.to.is_empty() || m.to.len() > MAX_TO_CLIENTS {
        return Err(target(format!(
            "to_clients must name 1 to {MAX_TO_CLIENTS} clients"
        )));
    }
    if let Some(bad) = m.to.iter().find(|c| !valid_id(c)) {
        return Err(target(format!("invalid client id {bad:?} in to_clients")));
    }
    validate::content_size(
        &m.content,
        hub.config.limits.max_content_bytes as usize,
        "message",
    )
}

/// Sends to `m.to` through system conversation `id`. A stored message goes
/// through the commit pipeline like any other (history, offline sync for
/// subscribers, redelivery), whose fan-out gives a system conversation's
/// message to its sender and the receivers it names; the answer comes once
/// it is durable.
pub async fn send(hub: &Hub, id: ConvId, mut m: AppMessage) -> Result<Sent, ErrorBody> {
    check_message(hub, &mut m)?;
    let conv = system::lookup(hub, id)?;
    if m.transient {
        return Ok(send_transient(hub, id, m));
    }
    let mut send = SendMessage::text(id, String::new());
    send.content = m.content;
    send.push_data = m.push_data;
    let pending = hub.pipeline.submit(Draft {
        conv,
        send,
        from: m.from,
        // No device and no connection of any client: every device of the
        // sender gets a copy, and sync never takes it for the sender's own.
        origin_device: String::new(),
        origin_conn: 0,
        from_ip: m.from_ip,
        to_peers: Some(m.to),
        inbound: false,
    })?;
    let committed = pending.wait().await?;
    Ok(Sent {
        msg_id: committed.sent.msg_id,
        timestamp: committed.sent.timestamp,
    })
}

/// Not stored: straight to the receivers online now.
fn send_transient(hub: &Hub, id: ConvId, m: AppMessage) -> Sent {
    let msg = Message {
        msg_id: random_token(20),
        transient: true,
        ..Message::new(id, 0, m.from.clone(), now_ms(), m.content)
    };
    let sent = Sent {
        msg_id: msg.msg_id.clone(),
        timestamp: msg.timestamp,
    };
    METRICS.messages_in(1);
    let Some(out) = Outbound::transient(Event::Message {
        msg,
        redelivered: false,
        chat_room: false,
    }) else {
        return sent;
    };
    let sender = (!m.no_sync).then_some(m.from.as_str());
    hub.registry.send_to(
        m.to.iter()
            .map(String::as_str)
            .filter(|c| *c != m.from)
            .chain(sender),
        None,
        &out,
    );
    sent
}
