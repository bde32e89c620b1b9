//! Delivery and read receipts, for conversations of at most two members and
//! messages sent with `receipt: true`. Like LeanCloud, a receipt is a time,
//! not a message: the sender learns `lastDeliveredAt` / `lastReadAt`, and
//! every message it sent up to then is delivered / read.
//!
//! The times are stored per conversation and reader, so they survive
//! restarts and can be queried. A sender with no device online when a
//! receipt was due is owed it: it comes at the sender's next login.
//!
//! This is the store side; the rules themselves (two members, raise-only,
//! tell now or owe) are `core::receipts`.

use bytes::Bytes;

use super::member_conv;
use crate::core::Caller;
use crate::core::conversation::Conv;
use crate::core::receipts::{self, Decision, Kind};
use crate::hub::Hub;
use crate::protocol::{ConvId, ErrorBody, Reply};

/// Most log entries a read looks through for a message that wants a receipt.
const READ_SCAN: usize = 1000;

/// `reader` reached `at`, and the store now holds `stored`: tells
/// `sender`, owes it, or does nothing, as `core::receipts` decides.
fn settle(
    hub: &Hub,
    kind: Kind,
    conv: ConvId,
    reader: &str,
    sender: &str,
    at: u64,
    stored: u64,
) -> Result<(), ErrorBody> {
    match receipts::decide(at, stored, || hub.registry.is_online(sender)) {
        Decision::Nothing => {}
        Decision::Tell => hub
            .registry
            .notify([sender], receipts::event(kind, conv, reader, at)),
        Decision::Owe => hub.store.owe_receipt(sender, conv)?,
    }
    Ok(())
}

/// `reader`'s device acked messages up to one from `sender`, sent at `at`,
/// that asked for a receipt.
pub fn on_delivered(
    hub: &Hub,
    conv: ConvId,
    reader: &str,
    sender: &str,
    at: u64,
) -> Result<(), ErrorBody> {
    let (delivered, _) = hub.store.raise_receipt(conv, reader, Some(at), None)?;
    settle(hub, Kind::Delivered, conv, reader, sender, at, delivered)
}

/// `reader` read `conv` from `before` (exclusive) up to `seq`: if one of
/// the other member's messages in that span asked for a receipt, that member
/// learns `lastReadAt` = the time of the newest message read.
pub fn on_read(
    hub: &Hub,
    conv: &Conv,
    reader: &str,
    before: u64,
    seq: u64,
) -> Result<(), ErrorBody> {
    if !receipts::read_counts(&conv.state.read()) {
        return Ok(());
    }
    let (wanting, _) =
        hub.store
            .messages_where(conv.id, (before + 1, seq), 1, true, READ_SCAN, |e| {
                e.msg.receipt && e.msg.from != reader && !e.deleted
            })?;
    let Some(wanting) = wanting.into_iter().next() else {
        return Ok(());
    };
    let Some(newest) = hub.store.message(conv.id, seq)? else {
        return Ok(());
    };
    let at = newest.msg.timestamp;
    let (_, read) = hub.store.raise_receipt(conv.id, reader, None, Some(at))?;
    settle(
        hub,
        Kind::Read,
        conv.id,
        reader,
        &wanting.msg.from,
        at,
        read,
    )
}

/// The other member's receipt times for the caller's messages.
pub fn query(hub: &Hub, caller: &Caller, conv: ConvId) -> Result<Reply, ErrorBody> {
    let c = member_conv(hub, caller, conv)?;
    let others: Vec<String> = c
        .state
        .read()
        .audience()
        .into_iter()
        .filter(|m| *m != caller.client)
        .collect();
    let times = others
        .iter()
        .map(|m| hub.store.receipt(conv, m))
        .collect::<Result<Vec<_>, _>>()?;
    let (last_delivered_at, last_read_at) = receipts::latest(times);
    Ok(Reply::Receipts {
        last_delivered_at,
        last_read_at,
    })
}

/// The receipts `client` missed while offline, as events for its login.
pub fn owed(hub: &Hub, client: &str) -> Result<Vec<Bytes>, ErrorBody> {
    let mut out = Vec::new();
    for conv in hub.store.take_owed_receipts(client)? {
        let Some(c) = hub.convs.get(&conv) else {
            continue;
        };
        let others: Vec<String> = c
            .state
            .read()
            .audience()
            .into_iter()
            .filter(|m| m != client)
            .collect();
        for by in others {
            let (d, r) = hub.store.receipt(conv, &by)?;
            for ev in receipts::owed_events(conv, &by, d, r) {
                out.extend(crate::wire::frame::event(ev));
            }
        }
    }
    Ok(out)
}
