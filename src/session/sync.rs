//! Push-mode offline sync: what this device missed, up to a limit per conversation.

use std::collections::HashSet;
use std::sync::Arc;

use super::Session;
use crate::protocol::{ConvId, ErrorBody, Event};

/// Most patches (edits, recalls, deletes) shown to a device at login; older
/// ones it sees in history.
const PATCH_SYNC_LIMIT: usize = 1000;

impl Session {
    /// For each of the client's conversations, sends the newest messages past
    /// this device's ack cursor (or, on a device that has none, its client's
    /// read cursor) (at most `push_sync_limit`), skipping its own.
    /// Older misses stay in history; `SyncDone.skipped` counts them.
    pub(super) fn sync_push(&mut self) -> Result<(), ErrorBody> {
        let limit = self.hub.config.delivery.push_sync_limit as u64;
        let (mut convs, mut sent, mut skipped) = (0u32, 0u32, 0u64);
        let store = self.hub.store.clone();
        for id in store.memberships_of(&self.caller.client)? {
            let Some(c) = self.hub.convs.get(&id) else {
                continue;
            };
            let last = c.last_seq();
            let mut cursor =
                store.device_cursor(&self.caller.client, &self.caller.device_id, id)?;
            if cursor == 0 {
                // A device new to this conversation starts where its client
                // stopped reading, not at the beginning of time.
                cursor = store.read_cursor(&self.caller.client, id)?;
            }
            if last <= cursor {
                continue;
            }
            let lo = (cursor + 1).max(last.saturating_sub(limit - 1));
            skipped += lo - (cursor + 1);
            convs += 1;
            for e in store.messages(id, lo, last, limit as usize, false)? {
                let own =
                    e.msg.from == self.caller.client && e.origin_device == self.caller.device_id;
                let seq = e.msg.seq;
                // Own messages, deleted ones, and those a hook's toPeers kept
                // from this client.
                if own || e.deleted || !e.reaches(&self.caller.client) {
                    self.sent_max.insert(id, seq);
                    continue;
                }
                let receipt = e
                    .msg
                    .receipt
                    .then(|| Arc::new((e.msg.from.clone(), e.msg.timestamp)));
                if let Some(f) = crate::wire::frame::event(Event::Message {
                    msg: e.msg.for_receiver(&self.caller.client),
                    redelivered: true,
                }) {
                    self.writer.send(f);
                    self.track(id, seq, receipt);
                    sent += 1;
                    crate::metrics::METRICS.messages_out(1);
                }
            }
        }
        if let Some(f) = crate::wire::frame::event(Event::SyncDone {
            conversations: convs,
            messages: sent,
            skipped,
        }) {
            self.writer.send(f);
        }
        Ok(())
    }
}

impl Session {
    /// Shows this device the edits, recalls and deletes made in its client's
    /// conversations since it last logged in. A device seen for the first
    /// time has nothing to catch up on: history already has the changes.
    pub(super) fn sync_patches(&mut self) -> Result<(), ErrorBody> {
        let store = self.hub.store.clone();
        let (client, device) = (&self.caller.client, &self.caller.device_id);
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
            if let Some(f) = crate::wire::frame::event(ev) {
                self.writer.send(f);
            }
        }
        Ok(())
    }
}
