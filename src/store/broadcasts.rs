//! TTL'd broadcasts (issue #6), in the `broadcasts` tree.
//!
//! A broadcast's message lives in the conversation's log like any other
//! (so history shows it after it expires); the record only says who it is
//! for and until when. Ids come from the `n` counter and are never reused,
//! even after the sweep removed the newest record, because a client's `c`
//! cursor compares against them: one cursor per client, not a copy of each
//! broadcast per client.

use super::tables::Tree;
use super::{BroadcastRecord, Result, Store, StoreError, keys};
use crate::protocol::ConvId;
use crate::wire::codec;

pub(super) fn corrupt() -> StoreError {
    StoreError::Corrupt {
        tree: Tree::Broadcasts.name(),
    }
}

impl Store {
    /// Stores a broadcast's record under a new id, above every id handed
    /// out before; returns the id. Does not flush (the caller waits for a
    /// pipeline barrier).
    pub fn put_broadcast(&self, rec: &BroadcastRecord) -> Result<u64> {
        self.guard.writable()?;
        let value = codec::encode(rec)?;
        let next = self.trees[Tree::Broadcasts].update_and_fetch(keys::NEXT_BROADCAST, |old| {
            let last = old.and_then(keys::read_u64).unwrap_or(0);
            Some(last.saturating_add(1).to_be_bytes().to_vec())
        })?;
        let id = next
            .as_deref()
            .and_then(keys::read_u64)
            .ok_or_else(corrupt)?;
        let mut batch = sled::Batch::default();
        batch.insert(keys::broadcast(id).to_vec(), value);
        batch.insert(
            keys::broadcast_expiry(rec.valid_till, id).to_vec(),
            Vec::new(),
        );
        batch.insert(
            keys::broadcast_by_message(rec.conv, rec.seq).to_vec(),
            id.to_be_bytes().to_vec(),
        );
        self.trees[Tree::Broadcasts].apply_batch(batch)?;
        Ok(id)
    }

    /// The last broadcast id handed out (0 before the first).
    pub fn last_broadcast_id(&self) -> Result<u64> {
        match self.trees[Tree::Broadcasts].get(keys::NEXT_BROADCAST)? {
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
        self.trees[Tree::Broadcasts]
            .range::<Vec<u8>, _>((
                Excluded(keys::broadcast(after).to_vec()),
                Included(keys::broadcast(u64::MAX).to_vec()),
            ))
            .rev()
            .map(|kv| -> Result<(u64, BroadcastRecord)> {
                let (k, v) = kv?;
                let id = keys::read_broadcast(&k).ok_or_else(corrupt)?;
                Ok((id, codec::decode(&v)?))
            })
    }

    pub fn broadcast_record(&self, id: u64) -> Result<Option<BroadcastRecord>> {
        match self.trees[Tree::Broadcasts].get(keys::broadcast(id))? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode(&v)?)),
        }
    }

    /// The broadcast whose message is `(conv, seq)`, if it still has a record.
    pub fn broadcast_of_message(&self, conv: ConvId, seq: u64) -> Result<Option<u64>> {
        match self.trees[Tree::Broadcasts].get(keys::broadcast_by_message(conv, seq))? {
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
        batch.remove(keys::broadcast(id).to_vec());
        batch.remove(keys::broadcast_expiry(rec.valid_till, id).to_vec());
        batch.remove(keys::broadcast_by_message(rec.conv, rec.seq).to_vec());
        self.trees[Tree::Broadcasts].apply_batch(batch)?;
        Ok(true)
    }

    /// Ids of up to `limit` broadcasts whose `valid_till` is at or before
    /// `now_ms`, soonest expired first: one seek when none has.
    pub fn expired_broadcasts(&self, now_ms: u64, limit: usize) -> Result<Vec<u64>> {
        self.trees[Tree::Broadcasts]
            .range(
                keys::broadcast_expiry_start()..=keys::broadcast_expiry(now_ms, u64::MAX).to_vec(),
            )
            .keys()
            .take(limit)
            .map(|k| {
                keys::read_broadcast_expiry(&k?)
                    .map(|(_, id)| id)
                    .ok_or_else(corrupt)
            })
            .collect()
    }

    /// The last broadcast id `client` has had; `None` for a client never
    /// seen at a login.
    pub fn broadcast_cursor(&self, client: &str) -> Result<Option<u64>> {
        match self.trees[Tree::Broadcasts].get(keys::broadcast_cursor(client))? {
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
            self.trees[Tree::Broadcasts].fetch_and_update(keys::broadcast_cursor(c), |old| {
                let cur = old.and_then(keys::read_u64).unwrap_or(0);
                Some(cur.max(id).to_be_bytes().to_vec())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::store) fn rec(conv: ConvId, seq: u64, valid_till: u64) -> BroadcastRecord {
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
}
