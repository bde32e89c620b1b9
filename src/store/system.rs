//! System conversations' storage: subscriptions, `_SysMessage` delivery
//! times and TTL'd broadcasts (issue #6). Trees `sys` and `broadcasts`.
//!
//! | tree         | key                              | value                          |
//! |--------------|----------------------------------|--------------------------------|
//! | `sys`        | `s` conv(12) client (raw bytes)  | subscribed at, ms(8)           |
//! |              | `a` conv(12) seq(8)              | ms(8): the webhook took it (`ackAt`) |
//! | `broadcasts` | `n`                              | id(8): the last id handed out  |
//! |              | `b` id(8)                        | [`BroadcastRecord`]            |
//! |              | `e` valid_till ms(8) id(8)       | empty: expiry order, for the sweep |
//! |              | `i` conv(12) seq(8)              | id(8): the broadcast a message is |
//! |              | `c` id(client)                   | id(8): the last broadcast the client has had |
//!
//! Subscriptions are kept apart from the conversation record's member list
//! (which says who is subscribed) because LeanCloud's subscriber listing
//! pages by client id and reports when each one subscribed. The client id
//! is the rest of the key, unprefixed, so keys sort by client id.
//!
//! A broadcast's message lives in the conversation's log like any other
//! (so history shows it after it expires); the record only says who it is
//! for and until when. Ids come from the `n` counter and are never reused,
//! even after the sweep removed the newest record, because a client's `c`
//! cursor compares against them: one cursor per client, not a copy of each
//! broadcast per client.
//!
//! The `a` keys are written after the webhook answered, without waiting for
//! a flush: a lost one only hides a delivery time.

use serde::{Deserialize, Serialize};

use super::{ConversationRecord, LogEntry, Result, Store, StoreError, keys};
use crate::codec;
use crate::protocol::ConvId;

const SUBSCRIPTION: u8 = b's';
const ACKED: u8 = b'a';
const NEXT_BROADCAST: &[u8] = b"n";
const BROADCAST: u8 = b'b';
const EXPIRY: u8 = b'e';
const BY_MESSAGE: u8 = b'i';
const CURSOR: u8 = b'c';

/// A broadcast: its message is `(conv, seq)` in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastRecord {
    pub conv: ConvId,
    pub seq: u64,
    /// Its sender, who already has it (the log's fan-out gave it one).
    pub from: String,
    pub created_at: u64,
    /// Ms since the epoch; from then on nobody gets it at login.
    pub valid_till: u64,
    /// For the conversation's subscribers only (`…/{id}/broadcasts`), or
    /// for every client (`/1.2/rtm/broadcasts`).
    pub subscribers_only: bool,
}

fn subscription_prefix(conv: ConvId) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = SUBSCRIPTION;
    k[1..].copy_from_slice(&conv.0);
    k
}

fn subscription(conv: ConvId, client: &str) -> Vec<u8> {
    let mut k = subscription_prefix(conv).to_vec();
    k.extend_from_slice(client.as_bytes());
    k
}

/// `tag` conv(12) seq(8): the shape of the `a` and `i` keys.
fn conv_seq(tag: u8, conv: ConvId, seq: u64) -> [u8; 21] {
    let mut k = [0u8; 21];
    k[0] = tag;
    k[1..13].copy_from_slice(&conv.0);
    k[13..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn conv_prefix(tag: u8, conv: ConvId) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = tag;
    k[1..].copy_from_slice(&conv.0);
    k
}

/// When the webhook took a client's message to a system conversation.
pub fn acked(conv: ConvId, seq: u64) -> [u8; 21] {
    conv_seq(ACKED, conv, seq)
}

pub fn broadcast(id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = BROADCAST;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

pub fn read_broadcast(k: &[u8]) -> Option<u64> {
    match k.split_first() {
        Some((&BROADCAST, id)) => keys::read_u64(id),
        _ => None,
    }
}

/// Expiry first, so the sweep reads only what has expired.
pub fn expiry(valid_till: u64, id: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = EXPIRY;
    k[1..9].copy_from_slice(&valid_till.to_be_bytes());
    k[9..].copy_from_slice(&id.to_be_bytes());
    k
}

pub fn read_expiry(k: &[u8]) -> Option<(u64, u64)> {
    if k.len() != 17 || k[0] != EXPIRY {
        return None;
    }
    Some((keys::read_u64(&k[1..9])?, keys::read_u64(&k[9..])?))
}

pub fn by_message(conv: ConvId, seq: u64) -> [u8; 21] {
    conv_seq(BY_MESSAGE, conv, seq)
}

/// A client's broadcast cursor; the id is length-prefixed like every
/// client id key, so one id is never a prefix of another.
pub fn cursor(client: &str) -> Vec<u8> {
    let mut k = vec![CURSOR];
    k.extend_from_slice(&keys::id(client));
    k
}

fn corrupt() -> StoreError {
    StoreError::Corrupt { tree: "broadcasts" }
}

impl Store {
    /// Records that `client` subscribed to `conv` at `at_ms`, unless it
    /// already had; the first subscription time stays.
    pub fn put_subscription(&self, conv: ConvId, client: &str, at_ms: u64) -> Result<()> {
        self.guard.writable()?;
        let _ = self.sys.compare_and_swap(
            subscription(conv, client),
            None as Option<&[u8]>,
            Some(&at_ms.to_be_bytes()[..]),
        )?;
        Ok(())
    }

    pub fn remove_subscription(&self, conv: ConvId, client: &str) -> Result<()> {
        self.sys.remove(subscription(conv, client))?;
        Ok(())
    }

    /// Subscribers of `conv` as `(client, subscribed at)`, by client id,
    /// starting after `after`, at most `limit`.
    pub fn subscriptions(
        &self,
        conv: ConvId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>> {
        let prefix = subscription_prefix(conv);
        let range = match after {
            // The smallest key above `after`'s: its bytes with a 0 appended.
            Some(a) => {
                let mut from = subscription(conv, a);
                from.push(0);
                self.sys.range(from..)
            }
            None => self.sys.range(prefix.to_vec()..),
        };
        let mut out = Vec::new();
        for kv in range {
            if out.len() == limit {
                break;
            }
            let (k, v) = kv?;
            if !k.starts_with(&prefix) {
                break;
            }
            let client = std::str::from_utf8(&k[prefix.len()..])
                .map_err(|_| StoreError::Corrupt { tree: "sys" })?;
            let at = keys::read_u64(&v).ok_or(StoreError::Corrupt { tree: "sys" })?;
            out.push((client.to_owned(), at));
        }
        Ok(out)
    }

    /// Removes a system conversation: its record, every member's membership
    /// and read cursor, its subscriptions and its messages. The caller has
    /// already taken it out of the conversation table.
    pub fn remove_system_conversation(&self, rec: &ConversationRecord) -> Result<()> {
        self.conversations.remove(rec.id.0)?;
        for m in &rec.members {
            self.memberships.remove(keys::membership(m, rec.id))?;
            self.cursors.remove(&keys::read_cursor(m, rec.id))?;
        }
        clear_prefix(&self.sys, &subscription_prefix(rec.id))?;
        clear_prefix(&self.sys, &conv_prefix(ACKED, rec.id))?;
        // Its clients' messages still queued for the webhook.
        clear_prefix(&self.log, &keys::webhook(rec.id, 0)[..13])?;
        let ids: Vec<u64> = self
            .broadcasts
            .scan_prefix(conv_prefix(BY_MESSAGE, rec.id))
            .values()
            .map(|v| keys::read_u64(&v?).ok_or_else(corrupt))
            .collect::<Result<_>>()?;
        for id in ids {
            self.remove_broadcast(id)?;
        }
        self.remove_log(rec.id)?;
        Ok(())
    }

    /// Messages of `conv` with `lo <= seq <= hi` that `keep` accepts, at
    /// most `limit`, walking from the newest end when `newest_first`; in
    /// walking order. For the admin API's history, where the filter (one
    /// sender, one receiver) can skip many entries.
    pub fn scan_messages(
        &self,
        conv: ConvId,
        (lo, hi): (u64, u64),
        newest_first: bool,
        limit: usize,
        mut keep: impl FnMut(&LogEntry) -> bool,
    ) -> Result<Vec<LogEntry>> {
        if lo > hi || limit == 0 {
            return Ok(Vec::new());
        }
        let range = self
            .log
            .range(keys::message(conv, lo)..=keys::message(conv, hi));
        let mut out = Vec::new();
        let mut take = |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool> {
            let e: LogEntry = codec::decode(&kv?.1)?;
            if keep(&e) {
                out.push(e);
            }
            Ok(out.len() < limit)
        };
        if newest_first {
            for kv in range.rev() {
                if !take(kv)? {
                    break;
                }
            }
        } else {
            for kv in range {
                if !take(kv)? {
                    break;
                }
            }
        }
        Ok(out)
    }

    // ---- `_SysMessage` delivery times ----

    /// Records that the webhook took these messages at `at_ms`.
    pub fn set_sys_acked(&self, msgs: &[(ConvId, u64)], at_ms: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        for &(conv, seq) in msgs {
            batch.insert(acked(conv, seq).to_vec(), at_ms.to_be_bytes().to_vec());
        }
        self.sys.apply_batch(batch)?;
        Ok(())
    }

    /// When the webhook took a client's message (`_SysMessage.ackAt`).
    pub fn sys_acked(&self, conv: ConvId, seq: u64) -> Result<Option<u64>> {
        match self.sys.get(acked(conv, seq))? {
            None => Ok(None),
            Some(v) => Ok(Some(
                keys::read_u64(&v).ok_or(StoreError::Corrupt { tree: "sys" })?,
            )),
        }
    }

    // ---- broadcasts ----

    /// Stores a broadcast's record under a new id, above every id handed
    /// out before; returns the id. Does not flush (the caller waits for a
    /// pipeline barrier).
    pub fn put_broadcast(&self, rec: &BroadcastRecord) -> Result<u64> {
        self.guard.writable()?;
        let value = codec::encode(rec)?;
        let next = self.broadcasts.update_and_fetch(NEXT_BROADCAST, |old| {
            let last = old.and_then(keys::read_u64).unwrap_or(0);
            Some(last.saturating_add(1).to_be_bytes().to_vec())
        })?;
        let id = next
            .as_deref()
            .and_then(keys::read_u64)
            .ok_or_else(corrupt)?;
        let mut batch = sled::Batch::default();
        batch.insert(broadcast(id).to_vec(), value);
        batch.insert(expiry(rec.valid_till, id).to_vec(), Vec::new());
        batch.insert(
            by_message(rec.conv, rec.seq).to_vec(),
            id.to_be_bytes().to_vec(),
        );
        self.broadcasts.apply_batch(batch)?;
        Ok(id)
    }

    /// The last broadcast id handed out (0 before the first).
    pub fn last_broadcast_id(&self) -> Result<u64> {
        match self.broadcasts.get(NEXT_BROADCAST)? {
            None => Ok(0),
            Some(v) => keys::read_u64(&v).ok_or_else(corrupt),
        }
    }

    /// Broadcasts with an id above `after`, newest first, read lazily so a
    /// caller that wants a few stops early.
    pub fn broadcasts_newest_first(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<(u64, BroadcastRecord)>> + '_ {
        use std::ops::Bound::{Excluded, Included};
        self.broadcasts
            .range::<Vec<u8>, _>((
                Excluded(broadcast(after).to_vec()),
                Included(broadcast(u64::MAX).to_vec()),
            ))
            .rev()
            .map(|kv| -> Result<(u64, BroadcastRecord)> {
                let (k, v) = kv?;
                let id = read_broadcast(&k).ok_or_else(corrupt)?;
                Ok((id, codec::decode(&v)?))
            })
    }

    pub fn broadcast_record(&self, id: u64) -> Result<Option<BroadcastRecord>> {
        match self.broadcasts.get(broadcast(id))? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode(&v)?)),
        }
    }

    /// The broadcast whose message is `(conv, seq)`, if it still has a record.
    pub fn broadcast_of_message(&self, conv: ConvId, seq: u64) -> Result<Option<u64>> {
        match self.broadcasts.get(by_message(conv, seq))? {
            None => Ok(None),
            Some(v) => Ok(Some(keys::read_u64(&v).ok_or_else(corrupt)?)),
        }
    }

    /// Removes a broadcast's record, so nobody gets it at login any more;
    /// its message stays in the log. True if it was there.
    pub fn remove_broadcast(&self, id: u64) -> Result<bool> {
        let Some(rec) = self.broadcast_record(id)? else {
            return Ok(false);
        };
        let mut batch = sled::Batch::default();
        batch.remove(broadcast(id).to_vec());
        batch.remove(expiry(rec.valid_till, id).to_vec());
        batch.remove(by_message(rec.conv, rec.seq).to_vec());
        self.broadcasts.apply_batch(batch)?;
        Ok(true)
    }

    /// Ids of up to `limit` broadcasts whose `valid_till` is at or before
    /// `now_ms`, soonest expired first: one seek when none has.
    pub fn expired_broadcasts(&self, now_ms: u64, limit: usize) -> Result<Vec<u64>> {
        self.broadcasts
            .range(vec![EXPIRY]..=expiry(now_ms, u64::MAX).to_vec())
            .keys()
            .take(limit)
            .map(|k| read_expiry(&k?).map(|(_, id)| id).ok_or_else(corrupt))
            .collect()
    }

    /// The last broadcast id `client` has had; `None` for a client never
    /// seen at a login.
    pub fn broadcast_cursor(&self, client: &str) -> Result<Option<u64>> {
        match self.broadcasts.get(cursor(client))? {
            None => Ok(None),
            Some(v) => Ok(Some(keys::read_u64(&v).ok_or_else(corrupt)?)),
        }
    }

    /// Raises each client's cursor to `id`, creating it if absent; never
    /// lowers one, so a slow fan-out cannot undo a newer broadcast's.
    pub fn raise_broadcast_cursors<'a>(
        &self,
        clients: impl IntoIterator<Item = &'a str>,
        id: u64,
    ) -> Result<()> {
        for c in clients {
            self.broadcasts.fetch_and_update(cursor(c), |old| {
                let cur = old.and_then(keys::read_u64).unwrap_or(0);
                Some(cur.max(id).to_be_bytes().to_vec())
            })?;
        }
        Ok(())
    }
}

/// Removes every key of `tree` under `prefix`, a thousand per batch.
fn clear_prefix(tree: &sled::Tree, prefix: &[u8]) -> Result<()> {
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for k in tree.scan_prefix(prefix).keys().take(1000) {
            batch.remove(k?);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        tree.apply_batch(batch)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_page_by_client_id_and_keep_the_first_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20, false).unwrap();
        let (a, b) = (ConvId([1; 12]), ConvId([2; 12]));
        for (i, c) in ["carol", "alice", "bob", "dave"].iter().enumerate() {
            s.put_subscription(a, c, i as u64).unwrap();
        }
        s.put_subscription(a, "alice", 99).unwrap();
        s.put_subscription(b, "zed", 7).unwrap();
        let all = s.subscriptions(a, None, 10).unwrap();
        assert_eq!(
            all,
            vec![
                ("alice".to_owned(), 1),
                ("bob".to_owned(), 2),
                ("carol".to_owned(), 0),
                ("dave".to_owned(), 3)
            ]
        );
        let page = s.subscriptions(a, Some("bob"), 1).unwrap();
        assert_eq!(page, vec![("carol".to_owned(), 0)]);
        assert!(s.subscriptions(a, Some("dave"), 10).unwrap().is_empty());
        // A prefix of another id does not swallow it.
        s.put_subscription(a, "bo", 5).unwrap();
        let after_bo = s.subscriptions(a, Some("bo"), 1).unwrap();
        assert_eq!(after_bo, vec![("bob".to_owned(), 2)]);
        s.remove_subscription(a, "bob").unwrap();
        assert_eq!(s.subscriptions(a, Some("bo"), 1).unwrap()[0].0, "carol");
        assert_eq!(s.subscriptions(b, None, 10).unwrap().len(), 1);
    }
    #[test]
    fn system_key_encodings_are_byte_exact() {
        let c = ConvId([0xAB; 12]);
        let seq7 = [0, 0, 0, 0, 0, 0, 0, 7];
        assert_eq!(
            acked(c, 7).as_slice(),
            [b"a".as_slice(), &[0xAB; 12], &seq7].concat()
        );
        assert_eq!(
            subscription(c, "Tom"),
            [b"s".as_slice(), &[0xAB; 12], b"Tom"].concat()
        );
        assert_eq!(broadcast(0x0102), *b"b\0\0\0\0\0\0\x01\x02");
        assert_eq!(read_broadcast(&broadcast(77)), Some(77));
        assert_eq!(read_broadcast(b"c\0\0\0\0\0\0\0\x01"), None);
        assert_eq!(
            expiry(0x0102, 7).as_slice(),
            [b"e".as_slice(), &[0, 0, 0, 0, 0, 0, 1, 2], &seq7].concat()
        );
        assert_eq!(read_expiry(&expiry(9, 7)), Some((9, 7)));
        assert_eq!(read_expiry(&broadcast(7)), None);
        assert_eq!(
            by_message(c, 7).as_slice(),
            [b"i".as_slice(), &[0xAB; 12], &seq7].concat()
        );
        assert_eq!(cursor("Tom"), b"c\x03Tom");
        assert_eq!(NEXT_BROADCAST, b"n");
        // Expiry keys sort by time, then id, across byte boundaries.
        assert!(expiry(255, u64::MAX) < expiry(256, 0));
        assert!(broadcast(255) < broadcast(256));
    }

    fn rec(conv: ConvId, seq: u64, valid_till: u64) -> BroadcastRecord {
        BroadcastRecord {
            conv,
            seq,
            from: "Bot".into(),
            created_at: 1,
            valid_till,
            subscribers_only: false,
        }
    }

    #[test]
    fn broadcasts_get_growing_ids_expire_and_keep_ids_after_removal() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20, false).unwrap();
        let (a, b) = (ConvId([1; 12]), ConvId([2; 12]));
        assert_eq!(s.last_broadcast_id().unwrap(), 0);
        let one = s.put_broadcast(&rec(a, 1, 300)).unwrap();
        let two = s.put_broadcast(&rec(a, 2, 100)).unwrap();
        let three = s.put_broadcast(&rec(b, 1, 200)).unwrap();
        assert_eq!((one, two, three), (1, 2, 3));
        let ids =
            |v: Vec<(u64, BroadcastRecord)>| v.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        let after = |a: u64| {
            s.broadcasts_newest_first(a)
                .collect::<Result<Vec<_>>>()
                .unwrap()
        };
        assert_eq!(ids(after(0)), [3, 2, 1]);
        assert_eq!(ids(after(1)), [3, 2]);
        assert_eq!(ids(after(3)), [] as [u64; 0]);
        assert_eq!(ids(after(u64::MAX)), [] as [u64; 0]);
        assert_eq!(s.broadcast_of_message(a, 2).unwrap(), Some(2));
        assert_eq!(s.broadcast_of_message(b, 2).unwrap(), None);
        assert_eq!(s.broadcast_record(3).unwrap(), Some(rec(b, 1, 200)));
        // Soonest expired first; valid_till itself counts as expired.
        assert!(s.expired_broadcasts(99, 10).unwrap().is_empty());
        assert_eq!(s.expired_broadcasts(200, 10).unwrap(), [2, 3]);
        assert_eq!(s.expired_broadcasts(u64::MAX, 1).unwrap(), [2]);
        assert!(s.remove_broadcast(3).unwrap());
        assert!(!s.remove_broadcast(3).unwrap());
        assert_eq!(s.broadcast_of_message(b, 1).unwrap(), None);
        assert_eq!(s.expired_broadcasts(200, 10).unwrap(), [2]);
        // The newest record went; its id is not handed out again.
        assert_eq!(s.put_broadcast(&rec(b, 2, 500)).unwrap(), 4);
        assert_eq!(s.last_broadcast_id().unwrap(), 4);
    }

    #[test]
    fn broadcast_cursors_start_absent_and_only_rise() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20, false).unwrap();
        assert_eq!(s.broadcast_cursor("Tom").unwrap(), None);
        s.raise_broadcast_cursors(["Tom"], 0).unwrap();
        assert_eq!(s.broadcast_cursor("Tom").unwrap(), Some(0));
        s.raise_broadcast_cursors(["Tom", "Jerry"], 5).unwrap();
        s.raise_broadcast_cursors(["Tom"], 3).unwrap();
        assert_eq!(s.broadcast_cursor("Tom").unwrap(), Some(5));
        assert_eq!(s.broadcast_cursor("Jerry").unwrap(), Some(5));
        // A prefix of another id has a cursor of its own.
        assert_eq!(s.broadcast_cursor("Jer").unwrap(), None);
    }

    #[test]
    fn deleting_a_system_conversation_takes_its_broadcasts_acks_and_queue() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20, false).unwrap();
        let (a, b) = (ConvId([1; 12]), ConvId([2; 12]));
        let msg = |c: ConvId, seq: u64| {
            LogEntry::new(
                crate::protocol::Message::new(
                    c,
                    seq,
                    "Tom",
                    seq,
                    crate::protocol::Content::Text("hi".into()),
                ),
                "phone",
                "127.0.0.1",
            )
        };
        s.write_unsynced(&[msg(a, 1), msg(b, 1)], &[], &[], &[(a, 1), (b, 1)])
            .unwrap();
        s.set_sys_acked(&[(a, 1), (b, 1)], 42).unwrap();
        assert_eq!(s.sys_acked(a, 1).unwrap(), Some(42));
        assert_eq!(s.sys_acked(a, 2).unwrap(), None);
        s.put_broadcast(&rec(a, 2, 100)).unwrap();
        s.put_broadcast(&rec(b, 2, 100)).unwrap();
        s.put_subscription(a, "Tom", 1).unwrap();
        let record = ConversationRecord {
            id: a,
            kind: crate::protocol::ConvKind::System,
            name: None,
            attr: None,
            creator: String::new(),
            members: vec!["Tom".into()],
            managers: Vec::new(),
            muted: Vec::new(),
            unique: false,
            created_at: 0,
            updated_at: 0,
        };
        s.remove_system_conversation(&record).unwrap();
        assert_eq!(s.sys_acked(a, 1).unwrap(), None);
        assert_eq!(s.sys_acked(b, 1).unwrap(), Some(42));
        assert_eq!(s.webhook_pending(10).unwrap(), [(b, 1)]);
        assert_eq!(s.broadcast_of_message(a, 2).unwrap(), None);
        assert_eq!(s.broadcast_of_message(b, 2).unwrap(), Some(2));
        assert!(s.subscriptions(a, None, 10).unwrap().is_empty());
        assert!(s.message(a, 1).unwrap().is_none());
    }
}
