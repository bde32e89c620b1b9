//! Dead letters: after-hook calls the outbox gave up on, kept for an
//! operator to list, send again or purge. Moves between `outbox` and
//! `dead_letters` are one sled transaction over both trees, so a crash
//! leaves a record in one tree or the other, never in both or neither.

use std::sync::atomic::Ordering;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::tables::Tree;
use super::{DeadLetter, Result, Store, StoreError, keys};
use crate::wire::codec;

fn tx_error(e: TransactionError<()>) -> StoreError {
    match e {
        TransactionError::Storage(e) => e.into(),
        // Only an undecodable dead letter aborts.
        TransactionError::Abort(()) => StoreError::Corrupt {
            tree: Tree::DeadLetters.name(),
        },
    }
}

impl Store {
    /// Moves outbox record `id` to the dead letters. False (and nothing
    /// written) when the record is no longer in the outbox.
    pub fn outbox_bury(&self, id: u64, letter: &DeadLetter) -> Result<bool> {
        self.guard.not_failed()?;
        let value = codec::encode(letter)?;
        let key = keys::outbox(id);
        let moved = (&self.trees[Tree::Outbox], &self.trees[Tree::DeadLetters])
            .transaction(|(o, d)| {
                if o.remove(&key)?.is_none() {
                    return Ok(false);
                }
                d.insert(&keys::dead_letter(id), value.clone())?;
                Ok(true)
            })
            .map_err(tx_error)?;
        if moved {
            self.outbox_len.fetch_sub(1, Ordering::Relaxed);
            self.dead_letters_len.fetch_add(1, Ordering::Relaxed);
        }
        Ok(moved)
    }

    /// Up to `limit` dead letters with an id above `after`, oldest first.
    pub fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<(u64, DeadLetter)>> {
        let Some(from) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.trees[Tree::DeadLetters]
            .range(keys::dead_letter(from)..)
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                let id = keys::read_u64(&k).ok_or(StoreError::Corrupt {
                    tree: Tree::DeadLetters.name(),
                })?;
                Ok((id, codec::decode(&v)?))
            })
            .collect()
    }

    /// Puts dead letter `id` back at the end of the outbox under a new id,
    /// which it returns; `None` when there is no such dead letter.
    pub fn dead_letter_retry(&self, id: u64) -> Result<Option<u64>> {
        self.guard.not_failed()?;
        let key = keys::dead_letter(id);
        let mut next = self.outbox_next.lock();
        let new_id = *next;
        let new_key = keys::outbox(new_id);
        let moved = (&self.trees[Tree::Outbox], &self.trees[Tree::DeadLetters])
            .transaction(|(o, d)| {
                let Some(v) = d.remove(&key)? else {
                    return Ok(false);
                };
                // An unreadable letter aborts the move: it stays where it is.
                let letter: DeadLetter =
                    codec::decode(&v).map_err(|_| ConflictableTransactionError::Abort(()))?;
                let rec = codec::encode(&letter.record)
                    .map_err(|_| ConflictableTransactionError::Abort(()))?;
                o.insert(&new_key, rec)?;
                Ok(true)
            })
            .map_err(tx_error)?;
        if !moved {
            return Ok(None);
        }
        *next = new_id + 1;
        self.outbox_len.fetch_add(1, Ordering::Relaxed);
        self.dead_letters_len.fetch_sub(1, Ordering::Relaxed);
        Ok(Some(new_id))
    }

    /// Deletes dead letter `id` for good; true if it was there.
    pub fn dead_letter_purge(&self, id: u64) -> Result<bool> {
        self.guard.not_failed()?;
        let removed = self.trees[Tree::DeadLetters]
            .remove(keys::dead_letter(id))?
            .is_some();
        if removed {
            self.dead_letters_len.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(removed)
    }

    pub fn dead_letters_len(&self) -> u64 {
        self.dead_letters_len.load(Ordering::Relaxed)
    }
}
