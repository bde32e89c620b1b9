//! The hook outbox: after-hook calls waiting for delivery, in push order
//! (see the [`store`](super) docs for when a push is durable).

use std::sync::atomic::Ordering;

use super::tables::Tree;
use super::{OutboxRecord, Result, Store, StoreError, keys};
use crate::wire::codec;

impl Store {
    /// Appends a record and returns its id, larger than every id pushed
    /// before. Does not flush (see the module doc for what that means).
    pub fn outbox_push(&self, rec: &OutboxRecord) -> Result<u64> {
        self.guard.not_failed()?;
        let value = codec::encode(rec)?;
        let mut next = self.outbox_next.lock();
        let id = *next;
        // Counted before the insert: a worker may remove the record at once,
        // and the count must never dip below zero.
        self.outbox_len.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.trees[Tree::Outbox].insert(keys::outbox(id), value) {
            self.outbox_len.fetch_sub(1, Ordering::Relaxed);
            return Err(e.into());
        }
        *next = id + 1;
        Ok(id)
    }

    /// The oldest `limit` records, oldest first.
    pub fn outbox_peek(&self, limit: usize) -> Result<Vec<(u64, OutboxRecord)>> {
        self.outbox_scan(self.trees[Tree::Outbox].iter(), limit)
    }

    /// Up to `limit` records with an id above `after`, oldest first.
    pub fn outbox_peek_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, OutboxRecord)>> {
        match after.checked_add(1) {
            None => Ok(Vec::new()),
            Some(from) => {
                self.outbox_scan(self.trees[Tree::Outbox].range(keys::outbox(from)..), limit)
            }
        }
    }

    fn outbox_scan(&self, iter: sled::Iter, limit: usize) -> Result<Vec<(u64, OutboxRecord)>> {
        iter.take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                let id = keys::read_u64(&k).ok_or(StoreError::Corrupt {
                    tree: Tree::Outbox.name(),
                })?;
                Ok((id, codec::decode(&v)?))
            })
            .collect()
    }

    /// Removes a delivered record; true if it was there. Does not flush: a
    /// lost removal means a redelivery.
    pub fn outbox_remove(&self, id: u64) -> Result<bool> {
        let removed = self.trees[Tree::Outbox].remove(keys::outbox(id))?.is_some();
        if removed {
            self.outbox_len.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(removed)
    }

    /// Records waiting in the outbox.
    pub fn outbox_len(&self) -> u64 {
        self.outbox_len.load(Ordering::Relaxed)
    }
}
