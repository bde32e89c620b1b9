//! Push-mode offline sync: what this device missed, up to a limit per conversation.

use super::Session;
use crate::hub::event_frame;
use crate::protocol::{ErrorBody, Event};

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
                // Own messages, and those a hook's toPeers kept from this client.
                if own || !e.reaches(&self.caller.client) {
                    self.sent_max.insert(id, seq);
                    continue;
                }
                if let Some(f) = event_frame(Event::Message {
                    msg: e.msg,
                    redelivered: true,
                }) {
                    self.writer.send(f);
                    self.track(id, seq);
                    sent += 1;
                }
            }
        }
        if let Some(f) = event_frame(Event::SyncDone {
            conversations: convs,
            messages: sent,
            skipped,
        }) {
            self.writer.send(f);
        }
        Ok(())
    }
}
