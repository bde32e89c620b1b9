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
//! devices); the app answers through [`crate::message::app::send`], to
//! chosen subscribers.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::core::conversation::{Conv, insert_member, remove_member};
use crate::core::validate::{self, err};
use crate::hub::Hub;
use crate::protocol::{ConvId, ConvKind, ErrorBody, ErrorCode};
use crate::store::ConversationRecord;
use crate::util::now_ms;

fn not_found(id: ConvId) -> ErrorBody {
    err(
        ErrorCode::ConvNotFound,
        format!("no system conversation {id}"),
    )
}

/// The live system conversation `id`; anything else (another kind, a
/// deleted one) is not found, so the admin API cannot touch user chats.
pub fn lookup(hub: &Hub, id: ConvId) -> Result<Arc<Conv>, ErrorBody> {
    hub.convs
        .live_of(id, ConvKind::System)
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
    validate::name(&name)?;
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
    validate::name(&up.name)?;
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
    validate::client_ids(&[client])?;
    let c = lookup(hub, id)?;
    {
        let mut st = c.state.write();
        if c.is_deleted() {
            return Err(not_found(id));
        }
        if !insert_member(&mut st.rec.members, client) {
            return Ok(());
        }
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
        if !remove_member(&mut st.rec.members, client) {
            return Ok(());
        }
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
