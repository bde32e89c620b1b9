//! Offline sync at login: what this device missed (push mode: up to a
//! limit per conversation; pull mode: unread counts), and the patches made
//! since it last logged in.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use super::door::Outlet;
use crate::core::Caller;
use crate::core::delivery::Delivery;
use crate::hub::Hub;
use crate::message;
use crate::protocol::{ConvId, ErrorBody, Event, SyncMode};

/// Most patches (edits, recalls, deletes) shown to a device at login; older
/// ones it sees in history.
const PATCH_SYNC_LIMIT: usize = 1000;

/// What a device missed, by its login's sync mode.
pub(super) fn messages(
    hub: &Hub,
    caller: &Caller,
    out: &impl Outlet,
    delivery: &mut Delivery,
    now: Instant,
    mode: SyncMode,
) -> Result<(), ErrorBody> {
    match mode {
        SyncMode::Push => push(hub, caller, out, delivery, now),
        SyncMode::Pull => {
            let limit = hub.config.delivery.pull_sync_limit as usize;
            let items = message::unread_summary(hub, &caller.client, limit)?;
            out.event(Event::Unread { items });
            Ok(())
        }
    }
}

/// For each of the client's conversations, sends the newest messages past
/// this device's ack cursor (or, on a device that has none, its client's
/// read cursor) (at most `push_sync_limit`), skipping its own.
/// Older misses stay in history; `SyncDone.skipped` counts them.
fn push(
    hub: &Hub,
    caller: &Caller,
    out: &impl Outlet,
    delivery: &mut Delivery,
    now: Instant,
) -> Result<(), ErrorBody> {
    let limit = hub.config.delivery.push_sync_limit as u64;
    let (mut convs, mut sent, mut skipped) = (0u32, 0u32, 0u64);
    let store = hub.store.clone();
    for id in store.memberships_of(&caller.client)? {
        let Some(c) = hub.convs.get(&id) else {
            continue;
        };
        let last = c.last_seq();
        let mut cursor = store.device_cursor(&caller.client, &caller.device_id, id)?;
        if cursor == 0 {
            // A device new to this conversation starts where its client
            // stopped reading, not at the beginning of time.
            cursor = store.read_cursor(&caller.client, id)?;
        }
        if last <= cursor {
            continue;
        }
        let lo = (cursor + 1).max(last.saturating_sub(limit - 1));
        skipped += lo - (cursor + 1);
        convs += 1;
        for e in store.messages(id, lo, last, limit as usize, false)? {
            let own = e.msg.from == caller.client && e.origin_device == caller.device_id;
            let seq = e.msg.seq;
            // Own messages, deleted ones, and those a hook's toPeers kept
            // from this client.
            if own || e.deleted || !e.reaches(&caller.client) {
                delivery.handle_sync_passed(id, seq);
                continue;
            }
            let receipt = e
                .msg
                .receipt
                .then(|| Arc::new((e.msg.from.clone(), e.msg.timestamp)));
            if out.event(Event::Message {
                msg: e.msg.for_receiver(&caller.client),
                redelivered: true,
                chat_room: false,
            }) {
                delivery.handle_synced(now, id, seq, receipt);
                sent += 1;
                crate::metrics::METRICS.messages_out(1);
            }
        }
    }
    out.event(Event::SyncDone {
        conversations: convs,
        messages: sent,
        skipped,
    });
    Ok(())
}

/// Shows this device the edits, recalls and deletes made in its client's
/// conversations since it last logged in. A device seen for the first
/// time has nothing to catch up on: history already has the changes.
pub(super) fn patches(hub: &Hub, caller: &Caller, out: &impl Outlet) -> Result<(), ErrorBody> {
    let store = hub.store.clone();
    let (client, device) = (&caller.client, &caller.device_id);
    let now = crate::util::now_ms();
    let since = store.patch_cursor(client, device)?;
    // Set before the scan: this session is registered, so later patches reach it live.
    store.set_patch_cursor(client, device, now)?;
    let Some(since) = since else {
        return Ok(());
    };
    let mine: HashSet<ConvId> = store.memberships_of(client)?.into_iter().collect();
    let mut seen = HashSet::new();
    for (_, conv, seq) in store.patches_since(since, PATCH_SYNC_LIMIT)? {
        if !mine.contains(&conv) || !seen.insert((conv, seq)) {
            continue;
        }
        let Some(e) = store.message(conv, seq)? else {
            continue;
        };
        if !e.reaches(client) {
            continue;
        }
        let ev = if e.deleted {
            Event::MessageDeleted {
                conv,
                msg_id: e.msg.msg_id,
                seq,
                by: e.patched_by.unwrap_or_default(),
            }
        } else if e.msg.recalled {
            Event::MessageRecalled {
                msg: e.msg.for_receiver(client),
                reason: e.reason,
            }
        } else {
            Event::MessageUpdated {
                msg: e.msg.for_receiver(client),
                reason: e.reason,
            }
        };
        out.event(ev);
    }
    Ok(())
}
