//! Delivery and read receipts, for conversations of at most two members and
//! messages sent with `receipt: true`. Like LeanCloud, a receipt is a time,
//! not a message: the sender learns `lastDeliveredAt` / `lastReadAt`, and
//! every message it sent up to then is delivered / read.
//!
//! The times are stored per conversation and reader, so they survive
//! restarts and can be queried. A sender with no device online when a
//! receipt was due is owed it: it comes at the sender's next login.

use bytes::Bytes;

use super::member_conv;
use crate::core::Caller;
use crate::core::conversation::Conv;
use crate::hub::Hub;
use crate::protocol::{ConvId, ConvKind, ErrorBody, Event, Reply};

/// Most log entries a read looks through for a message that wants a receipt.
const READ_SCAN: usize = 1000;

fn tell(hub: &Hub, sender: &str, conv: ConvId, ev: Event) -> Result<(), ErrorBody> {
    if hub.registry.is_online(sender) {
        hub.registry.notify([sender], ev);
    } else {
        hub.store.owe_receipt(sender, conv)?;
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
    if delivered != at {
        // An earlier ack already covered a later message.
        return Ok(());
    }
    let ev = Event::LastDeliveredAt {
        conv,
        by: reader.to_owned(),
        at,
    };
    tell(hub, sender, conv, ev)
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
    {
        let st = conv.state.read();
        if st.rec.kind != ConvKind::Normal || st.audience_len() > 2 {
            return Ok(());
        }
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
    if read != at {
        return Ok(());
    }
    let ev = Event::LastReadAt {
        conv: conv.id,
        by: reader.to_owned(),
        at,
    };
    tell(hub, &wanting.msg.from, conv.id, ev)
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
    let (mut delivered, mut read) = (0, 0);
    for m in &others {
        let (d, r) = hub.store.receipt(conv, m)?;
        delivered = delivered.max(d);
        read = read.max(r);
    }
    Ok(Reply::Receipts {
        last_delivered_at: (delivered > 0).then_some(delivered),
        last_read_at: (read > 0).then_some(read),
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
            if d > 0 {
                out.extend(crate::wire::frame::event(Event::LastDeliveredAt {
                    conv,
                    by: by.clone(),
                    at: d,
                }));
            }
            if r > 0 {
                out.extend(crate::wire::frame::event(Event::LastReadAt {
                    conv,
                    by,
                    at: r,
                }));
            }
        }
    }
    Ok(out)
}
