//! System (service) conversations: official accounts and bots, created and
//! driven by the app's backend through the admin API; clients cannot create
//! them (`ops::create` refuses). Subscribers are the conversation's members:
//! the record's member list (what membership checks and sync read), the
//! `memberships` index, a read cursor from the moment of subscribing, and a
//! subscription record with its time (`store::system`).
//!
//! Nobody owns a system conversation (its creator is empty, which no client
//! id can be), so client-side owner and manager operations never apply.
//! A client's message to it reaches only the app (and the sender's other
//! devices); the app answers through [`send`], to chosen subscribers.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::auth::valid_id;
use crate::core::conversation::Conv;
use crate::core::ordering::Draft;
use crate::core::outbound::Outbound;
use crate::hub::Hub;
use crate::metrics::METRICS;
use crate::protocol::{
    Content, ConvId, ConvKind, ErrorBody, ErrorCode, Event, Message, SendMessage,
};
use crate::store::ConversationRecord;
use crate::util::{now_ms, random_token};

/// LeanCloud's cap on `to_clients` of one send.
pub const MAX_TO_CLIENTS: usize = 20;

/// Same bound as client-created conversations' names.
const MAX_NAME_LEN: usize = 256;

fn err(code: ErrorCode, detail: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, detail)
}

fn not_found(id: ConvId) -> ErrorBody {
    err(
        ErrorCode::ConvNotFound,
        format!("no system conversation {id}"),
    )
}

fn check_name(name: &Option<String>) -> Result<(), ErrorBody> {
    match name {
        Some(n) if n.len() > MAX_NAME_LEN => Err(err(
            ErrorCode::ConvApiFailed,
            format!("name over {MAX_NAME_LEN} bytes"),
        )),
        _ => Ok(()),
    }
}

fn check_client(client: &str) -> Result<(), ErrorBody> {
    if valid_id(client) {
        Ok(())
    } else {
        Err(err(
            ErrorCode::ConvApiFailed,
            format!("invalid client id {client:?}: 1-64 characters, no control characters"),
        ))
    }
}

/// The live system conversation `id`; anything else (another kind, a
/// deleted one) is not found, so the admin API cannot touch user chats.
pub fn lookup(hub: &Hub, id: ConvId) -> Result<Arc<Conv>, ErrorBody> {
    hub.convs
        .get(&id)
        .filter(|c| c.state.read().rec.kind == ConvKind::System && !c.is_deleted())
        .ok_or_else(|| not_found(id))
}

/// A system conversation as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub id: ConvId,
    pub name: Option<String>,
    /// A JSON object.
    pub attr: Option<Map<String, Value>>,
    pub subscribers: usize,
    pub created_at: u64,
    pub updated_at: u64,
    pub last_message_at: Option<u64>,
}

fn service(c: &Conv) -> Service {
    let st = c.state.read();
    let r = &st.rec;
    Service {
        id: r.id,
        name: r.name.clone(),
        attr: r.attr.as_deref().and_then(|a| serde_json::from_str(a).ok()),
        subscribers: r.members.len(),
        created_at: r.created_at,
        updated_at: r.updated_at,
        last_message_at: (c.last_seq() > 0).then(|| c.last_ts()),
    }
}

pub async fn create(
    hub: &Hub,
    name: Option<String>,
    attr: Option<Map<String, Value>>,
) -> Result<Service, ErrorBody> {
    check_name(&name)?;
    let now = now_ms();
    let rec = ConversationRecord {
        id: ConvId::random(),
        kind: ConvKind::System,
        name,
        attr: attr.map(|a| Value::Object(a).to_string()),
        creator: String::new(),
        members: Vec::new(),
        managers: Vec::new(),
        muted: Vec::new(),
        unique: false,
        created_at: now,
        updated_at: now,
    };
    hub.store.put_conversation(&rec)?;
    let conv = Arc::new(Conv::new(rec, 0, 0));
    hub.convs.insert(conv.clone());
    hub.pipeline.barrier().await?;
    Ok(service(&conv))
}

pub fn get(hub: &Hub, id: ConvId) -> Result<Service, ErrorBody> {
    let c = lookup(hub, id)?;
    Ok(service(&c))
}

/// System conversations oldest first (so `skip` pages stay put while new
/// ones are created), after skipping `skip`, at most `limit`.
pub fn list(hub: &Hub, skip: usize, limit: usize) -> Result<Vec<Service>, ErrorBody> {
    let mut recs: Vec<ConversationRecord> = hub
        .store
        .conversations()?
        .into_iter()
        .filter(|r| r.kind == ConvKind::System)
        .collect();
    recs.sort_by_key(|r| (r.created_at, r.id));
    Ok(recs
        .iter()
        .filter_map(|r| lookup(hub, r.id).ok())
        .skip(skip)
        .take(limit)
        .map(|c| service(&c))
        .collect())
}

/// A change of name and attributes; absent parts stay as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    pub name: Option<String>,
    /// Replaces the whole attribute object.
    pub attr: Option<Map<String, Value>>,
    /// Single attributes (LeanCloud's `"attr.key": value`), applied after `attr`.
    pub attr_keys: Vec<(String, Value)>,
}

/// Returns the new `updatedAt`.
pub async fn update(hub: &Hub, id: ConvId, up: Update) -> Result<u64, ErrorBody> {
    check_name(&up.name)?;
    let c = lookup(hub, id)?;
    let updated_at = {
        let mut st = c.state.write();
        if c.is_deleted() {
            return Err(not_found(id));
        }
        if let Some(n) = up.name {
            st.rec.name = Some(n);
        }
        if up.attr.is_some() || !up.attr_keys.is_empty() {
            let mut attr = match up.attr {
                Some(a) => a,
                None => st
                    .rec
                    .attr
                    .as_deref()
                    .and_then(|a| serde_json::from_str(a).ok())
                    .unwrap_or_default(),
            };
            for (k, v) in up.attr_keys {
                attr.insert(k, v);
            }
            st.rec.attr = Some(Value::Object(attr).to_string());
        }
        // Never backwards, even if the clock is.
        st.rec.updated_at = now_ms().max(st.rec.updated_at);
        hub.store.put_conversation(&st.rec)?;
        st.rec.updated_at
    };
    hub.pipeline.barrier().await?;
    Ok(updated_at)
}

/// Removes the conversation, its subscriptions and its history.
pub async fn delete(hub: &Hub, id: ConvId) -> Result<(), ErrorBody> {
    let c = lookup(hub, id)?;
    let rec = {
        // Under the lock, so a subscribe either finished before or sees the mark.
        let st = c.state.write();
        if c.is_deleted() {
            return Err(not_found(id));
        }
        c.mark_deleted();
        st.rec.clone()
    };
    hub.convs.remove(&id);
    // Sends that passed their lookup before the mark are committed (or
    // refused) by now, so the log removal below sees all of them.
    hub.pipeline.barrier().await?;
    hub.store.remove_system_conversation(&rec)?;
    hub.pipeline.barrier().await?;
    Ok(())
}

pub async fn subscribe(hub: &Hub, id: ConvId, client: &str) -> Result<(), ErrorBody> {
    check_client(client)?;
    let c = lookup(hub, id)?;
    {
        let mut st = c.state.write();
        if c.is_deleted() {
            return Err(not_found(id));
        }
        let Err(at) = st.rec.members.binary_search_by(|m| m.as_str().cmp(client)) else {
            return Ok(());
        };
        st.rec.members.insert(at, client.to_owned());
        st.rec.updated_at = now_ms().max(st.rec.updated_at);
        hub.store.put_conversation(&st.rec)?;
        hub.store.add_membership(client, id)?;
        // Unread counts start at the subscription, as for a join.
        hub.store.set_read_cursor(client, id, c.last_seq())?;
        hub.store.put_subscription(id, client, now_ms())?;
    }
    hub.pipeline.barrier().await?;
    Ok(())
}

/// Unsubscribing someone who is not subscribed is not an error.
pub async fn unsubscribe(hub: &Hub, id: ConvId, client: &str) -> Result<(), ErrorBody> {
    let c = lookup(hub, id)?;
    {
        let mut st = c.state.write();
        if c.is_deleted() {
            return Err(not_found(id));
        }
        let Ok(at) = st.rec.members.binary_search_by(|m| m.as_str().cmp(client)) else {
            return Ok(());
        };
        st.rec.members.remove(at);
        st.rec.updated_at = now_ms().max(st.rec.updated_at);
        hub.store.put_conversation(&st.rec)?;
        hub.store.remove_membership(client, id)?;
        hub.store.remove_subscription(id, client)?;
    }
    hub.pipeline.barrier().await?;
    Ok(())
}

/// `(client, subscribed at ms)` by client id, after `after`, at most `limit`.
pub fn subscribers(
    hub: &Hub,
    id: ConvId,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, u64)>, ErrorBody> {
    lookup(hub, id)?;
    Ok(hub.store.subscriptions(id, after, limit)?)
}

pub fn subscriber_count(hub: &Hub, id: ConvId) -> Result<usize, ErrorBody> {
    Ok(lookup(hub, id)?.state.read().rec.members.len())
}

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
    if !valid_id(&m.from) {
        return Err(target(format!("invalid from_client {:?}", m.from)));
    }
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
    let max = hub.config.limits.max_content_bytes as usize;
    if m.content.len() > max {
        return Err(err(
            ErrorCode::FrameTooLong,
            format!(
                "message of {} bytes over limits.max_content_bytes ({max})",
                m.content.len()
            ),
        ));
    }
    Ok(())
}

/// Sends to `m.to` through system conversation `id`. A stored message goes
/// through the commit pipeline like any other (history, offline sync for
/// subscribers, redelivery), whose fan-out gives a system conversation's
/// message to its sender and the receivers it names; the answer comes once
/// it is durable.
pub async fn send(hub: &Hub, id: ConvId, mut m: AppMessage) -> Result<Sent, ErrorBody> {
    check_message(hub, &mut m)?;
    let conv = lookup(hub, id)?;
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
