//! Who is online: every logged-in device, by client id, and the one way
//! to hand it something ([`Outbound`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::core::outbound::{CloseOrder, DirectOut, Outbound};
use crate::protocol::{ConvId, Event};

#[derive(Clone)]
pub struct DeviceHandle {
    pub conn_id: u64,
    pub device_id: String,
    pub tag: Option<String>,
    pub tx: mpsc::UnboundedSender<Outbound>,
    /// Where a chat room's messages go without waking the session, when
    /// the door offers it (QUIC does).
    pub direct: Option<Arc<dyn DirectOut>>,
}

impl std::fmt::Debug for DeviceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceHandle")
            .field("conn_id", &self.conn_id)
            .field("device_id", &self.device_id)
            .field("tag", &self.tag)
            .field("direct", &self.direct.is_some())
            .finish()
    }
}

impl DeviceHandle {
    /// Hands `out` over: a chat room's message straight to the connection
    /// when it can take it, anything else to the session. `false` once
    /// the session is gone.
    pub fn send(&self, out: &Outbound) -> bool {
        if let (Outbound::Message(m), Some(direct)) = (out, &self.direct)
            && m.chat_room
            && direct.try_send(&m.frame)
        {
            return true;
        }
        self.tx.send(out.clone()).is_ok()
    }
}

#[derive(Default)]
struct ClientEntry {
    devices: Vec<DeviceHandle>,
    /// Chat rooms the client is in; left when its last device goes.
    rooms: HashSet<ConvId>,
}

const SHARDS: usize = 64;

/// The tag LeanCloud treats as no tag at all.
pub const DEFAULT_TAG: &str = "default";

/// Lock-sharded by client id so logins and fan-out to different clients rarely meet.
pub struct Registry {
    shards: Vec<CachePadded<RwLock<HashMap<String, ClientEntry>>>>,
    conn_ids: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(RwLock::new(HashMap::new())))
                .collect(),
            conn_ids: AtomicU64::new(1),
        }
    }
}

fn shard_of(client: &str) -> usize {
    // FNV-1a: cheap, and ids are not attacker-chosen in a way that matters for 64 shards.
    let mut h: u32 = 0x811c9dc5;
    for b in client.as_bytes() {
        h = (h ^ *b as u32).wrapping_mul(0x01000193);
    }
    h as usize % SHARDS
}

impl Registry {
    /// A new connection's id, unique for the life of the process.
    pub fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends an event to every device of `clients`.
    pub fn notify<'a>(&self, clients: impl IntoIterator<Item = &'a str>, ev: Event) {
        if let Some(frame) = crate::wire::frame::event(ev) {
            self.send_to(clients, None, &Outbound::frame(frame));
        }
    }

    /// Adds a device. Returns the devices it displaces: those with the same
    /// non-empty tag. When `refuse_on_conflict` is set and there are any, nothing
    /// changes and `Err` carries them.
    pub fn register(
        &self,
        client: &str,
        device: DeviceHandle,
        refuse_on_conflict: bool,
    ) -> Result<Vec<DeviceHandle>, Vec<DeviceHandle>> {
        let mut shard = self.shards[shard_of(client)].write();
        let entry = shard.entry(client.to_string()).or_default();
        let clash: Vec<DeviceHandle> = match &device.tag {
            // LeanCloud: an empty tag or "default" never conflicts.
            Some(tag) if !tag.is_empty() && tag != DEFAULT_TAG => entry
                .devices
                .iter()
                .filter(|d| d.tag.as_ref() == Some(tag))
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        if !clash.is_empty() && refuse_on_conflict {
            return Err(clash);
        }
        entry
            .devices
            .retain(|d| !clash.iter().any(|c| c.conn_id == d.conn_id));
        entry.devices.push(device);
        Ok(clash)
    }

    /// Removes a connection. Returns the chat rooms to leave if it was the client's last device.
    pub fn unregister(&self, client: &str, conn_id: u64) -> Vec<ConvId> {
        let mut shard = self.shards[shard_of(client)].write();
        let Some(entry) = shard.get_mut(client) else {
            return Vec::new();
        };
        entry.devices.retain(|d| d.conn_id != conn_id);
        if entry.devices.is_empty() {
            let rooms = entry.rooms.drain().collect();
            shard.remove(client);
            rooms
        } else {
            Vec::new()
        }
    }

    /// Clients with at least one device online.
    pub fn online_count(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    pub fn is_online(&self, client: &str) -> bool {
        self.shards[shard_of(client)].read().contains_key(client)
    }

    pub fn enter_room(&self, client: &str, conv: ConvId) -> bool {
        let mut shard = self.shards[shard_of(client)].write();
        match shard.get_mut(client) {
            Some(e) => {
                e.rooms.insert(conv);
                true
            }
            None => false,
        }
    }

    pub fn leave_room(&self, client: &str, conv: ConvId) {
        if let Some(e) = self.shards[shard_of(client)].write().get_mut(client) {
            e.rooms.remove(&conv);
        }
    }

    /// Calls `f` for every device of `client`.
    pub fn for_each_device(&self, client: &str, mut f: impl FnMut(&DeviceHandle)) {
        if let Some(e) = self.shards[shard_of(client)].read().get(client) {
            e.devices.iter().for_each(&mut f);
        }
    }

    /// Sends `out` to one connection of `client`.
    pub fn send_to_conn(&self, client: &str, conn_id: u64, out: &Outbound) {
        self.for_each_device(client, |d| {
            if d.conn_id == conn_id {
                let _ = d.tx.send(out.clone());
            }
        });
    }

    /// Online devices of `client` as `(device_id, tag)`.
    pub fn devices_of(&self, client: &str) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        self.for_each_device(client, |d| out.push((d.device_id.clone(), d.tag.clone())));
        out
    }

    /// Closes every session of `client` with 4115 KICKED_BY_APP
    /// (`_clientOffline` closeCode 4). Returns how many were told.
    pub fn kick(&self, client: &str, reason: &str) -> usize {
        use crate::protocol::{ErrorCode, codes::close};
        let code = ErrorCode::KickedByApp.code();
        let frame = crate::wire::frame::event(Event::Closing {
            code,
            reason: reason.to_string(),
        });
        let mut n = 0;
        self.for_each_device(client, |d| {
            let out = Outbound::close(CloseOrder {
                code,
                reason: reason.to_string(),
                frame: frame.clone(),
                close_code: close::KICKED,
            });
            if d.tx.send(out).is_ok() {
                n += 1;
            }
        });
        n
    }

    /// How many shards [`Registry::online_in_shard`] takes, `0..shard_count()`.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The clients online in one shard (none past the last), so a walk over
    /// every online client holds one shard's lock at a time, and briefly.
    pub fn online_in_shard(&self, shard: usize) -> Vec<String> {
        self.shards
            .get(shard)
            .map(|s| s.read().keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Sends `out` to every device of `client`; whether any device took it.
    pub fn send_to_client(&self, client: &str, out: &Outbound) -> bool {
        let mut took = false;
        self.for_each_device(client, |d| {
            took |= d.tx.send(out.clone()).is_ok();
        });
        took
    }

    /// Sends `out` to every device of every client in `clients`, except connection `skip`.
    pub fn send_to<'a>(
        &self,
        clients: impl IntoIterator<Item = &'a str>,
        skip: Option<u64>,
        out: &Outbound,
    ) {
        for c in clients {
            self.for_each_device(c, |d| {
                if Some(d.conn_id) != skip {
                    // A closed session drops its receiver; nothing to do then.
                    d.send(out);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn dev(conn_id: u64, tag: Option<&str>) -> (DeviceHandle, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            DeviceHandle {
                conn_id,
                device_id: format!("d{conn_id}"),
                tag: tag.map(Into::into),
                tx,
                direct: None,
            },
            rx,
        )
    }

    #[test]
    fn tag_conflicts_displace_or_refuse() {
        let r = Registry::default();
        let (a, _ra) = dev(1, Some("Mobile"));
        let (b, _rb) = dev(2, None);
        let (c, _rc) = dev(3, Some("Mobile"));
        assert!(r.register("Tom", a, false).unwrap().is_empty());
        assert!(r.register("Tom", b, false).unwrap().is_empty());
        assert_eq!(
            r.register("Tom", c.clone(), true).unwrap_err()[0].conn_id,
            1
        );
        assert_eq!(r.register("Tom", c, false).unwrap()[0].conn_id, 1);
        let mut conns = Vec::new();
        r.for_each_device("Tom", |d| conns.push(d.conn_id));
        assert_eq!(conns, vec![2, 3]);
        let (d, _rd) = dev(4, Some("default"));
        let (e, _re) = dev(5, Some("default"));
        r.register("Jerry", d, true).unwrap();
        assert!(
            r.register("Jerry", e, true).unwrap().is_empty(),
            "\"default\" never conflicts"
        );
    }

    #[test]
    fn shards_cover_every_online_client_once() {
        let r = Registry::default();
        let mut rxs = Vec::new();
        for i in 0..200u64 {
            let (d, rx) = dev(i, None);
            r.register(&format!("c{i}"), d, false).unwrap();
            rxs.push(rx);
        }
        let mut seen: Vec<String> = (0..r.shard_count())
            .flat_map(|i| r.online_in_shard(i))
            .collect();
        seen.sort();
        let mut all: Vec<String> = (0..200).map(|i| format!("c{i}")).collect();
        all.sort();
        assert_eq!(seen, all);
        assert!(r.online_in_shard(r.shard_count()).is_empty());
        assert!(r.send_to_client("c7", &Outbound::frame(Bytes::from_static(b"x"))));
        assert!(matches!(rxs[7].try_recv(), Ok(Outbound::Frame(_))));
        assert!(!r.send_to_client("nobody", &Outbound::frame(Bytes::new())));
        drop(rxs);
        // A session whose receiver is gone takes nothing.
        assert!(!r.send_to_client("c7", &Outbound::frame(Bytes::new())));
    }

    #[test]
    fn last_device_leaves_rooms() {
        let r = Registry::default();
        let (a, _ra) = dev(1, None);
        let (b, _rb) = dev(2, None);
        r.register("Tom", a, false).unwrap();
        r.register("Tom", b, false).unwrap();
        assert!(r.enter_room("Tom", ConvId([1; 12])));
        assert!(r.unregister("Tom", 1).is_empty());
        assert_eq!(r.unregister("Tom", 2), vec![ConvId([1; 12])]);
        assert!(!r.is_online("Tom"));
    }
}
