//! Cursors, written behind. Every send moves two of the sender's cursors and
//! every ack one of the receiver's; as sled read-modify-writes, each copying
//! a leaf node, they were ~17% of a 10k msgs/s profile (CPU per message fell
//! 2-6% once they moved here). So a cursor change lands in memory, and a
//! writer task moves what changed to sled, one shard per [`WRITE_TICK`], so
//! each shard every [`WRITE_EVERY`]: a key moved many times in that window is
//! written once. One shard at a time keeps each trip short: on a busy core a
//! long one delays the messages behind it (before the write-ahead log, all
//! at once also made the next group flush carry every cursor record, which
//! doubled p99 latency at 5k msgs/s).
//!
//! What a crash costs: cursor moves from the last `WRITE_EVERY` plus sled's
//! flush interval. A device is then sent again messages it had acked (clients
//! drop repeats by msgId), an unread count is briefly too high, a patch is
//! shown twice. No message is lost: messages are in the log, which every
//! group commit flushes before anyone is answered. A graceful shutdown writes
//! everything ([`Store::flush_durable`]).
//!
//! Invariant: a key present in memory holds the cursor's value (it took sled's
//! value into account when it came in); a key absent holds its value in sled.
//! The shard lock is held while a shard is written, so no reader ever sees a
//! key in neither place.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::tables::Tree;
use super::{Result, Store, StoreError, keys};
use crate::protocol::ConvId;

const SHARDS: usize = 32;

/// How often the writer writes the next shard.
pub const WRITE_TICK: Duration = Duration::from_millis(8);

/// The longest a changed cursor waits for sled.
pub const WRITE_EVERY: Duration = Duration::from_millis(8 * SHARDS as u64);

type Shard = HashMap<Vec<u8>, u64>;

pub(super) struct Cursors {
    tree: sled::Tree,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// The shard [`Cursors::write_next`] writes next.
    next: AtomicUsize,
}

impl Cursors {
    pub(super) fn new(tree: sled::Tree) -> Cursors {
        Cursors {
            tree,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            hasher: RandomState::new(),
            next: AtomicUsize::new(0),
        }
    }

    /// The tree it writes to, for the test that every tree comes from the list.
    #[cfg(test)]
    pub(super) fn tree_name(&self) -> sled::IVec {
        self.tree.name()
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    fn stored(&self, key: &[u8]) -> Result<Option<u64>> {
        match self.tree.get(key)? {
            None => Ok(None),
            Some(v) => keys::read_u64(&v).map(Some).ok_or(StoreError::Corrupt {
                tree: Tree::Cursors.name(),
            }),
        }
    }

    /// `None` for a cursor never set.
    fn get(&self, key: &[u8]) -> Result<Option<u64>> {
        let shard = self.shard(key).lock();
        match shard.get(key) {
            Some(&v) => Ok(Some(v)),
            None => self.stored(key),
        }
    }

    /// Sets the cursor to `f(current)` when that is `Some` and new: an
    /// unchanged cursor is not queued for the writer.
    fn update(&self, key: Vec<u8>, f: impl FnOnce(Option<u64>) -> Option<u64>) -> Result<()> {
        let mut shard = self.shard(&key).lock();
        let current = match shard.get(&key) {
            Some(&v) => Some(v),
            None => self.stored(&key)?,
        };
        if let Some(v) = f(current).filter(|v| Some(*v) != current) {
            shard.insert(key, v);
        }
        Ok(())
    }

    /// Never lowers a cursor, so racing moves cannot step it back.
    fn raise(&self, key: Vec<u8>, to: u64) -> Result<()> {
        self.update(key, |cur| Some(cur.unwrap_or(0).max(to)))
    }

    pub(super) fn remove(&self, key: &[u8]) -> Result<()> {
        let mut shard = self.shard(key).lock();
        shard.remove(key);
        self.tree.remove(key)?;
        Ok(())
    }

    /// Moves every cursor changed in memory to sled (unflushed); returns how
    /// many. A failed shard keeps its changes for the next call.
    pub(super) fn write(&self) -> Result<usize> {
        (0..SHARDS).try_fold(0, |n, i| Ok(n + self.write_shard(i)?))
    }

    fn any_changed(&self) -> bool {
        self.shards.iter().any(|s| !s.lock().is_empty())
    }

    /// [`Cursors::write`] for the next shard in turn.
    pub(super) fn write_next(&self) -> Result<usize> {
        self.write_shard(self.next.fetch_add(1, Ordering::Relaxed) % SHARDS)
    }

    fn write_shard(&self, i: usize) -> Result<usize> {
        let mut shard = self.shards[i].lock();
        if shard.is_empty() {
            return Ok(0);
        }
        // Key by key, not as one sled batch: cursors need no atomicity (each
        // is whole on its own, and a shard that fails keeps its changes for
        // the next call), and every sled batch seals sled's log buffer twice
        // and hands each write to its I/O pool, whose every job wakes all
        // seven of its threads: 125 batches/s woke them ~1,750 times a
        // second at 2,000 msgs/s. Inserts land in the buffer sled writes at
        // its next flush.
        for (k, v) in shard.iter() {
            self.tree.insert(&k[..], &v.to_be_bytes()[..])?;
        }
        let written = shard.len();
        shard.clear();
        Ok(written)
    }
}

impl Store {
    pub fn device_cursor(&self, client: &str, device: &str, conv: ConvId) -> Result<u64> {
        let key = keys::device_cursor(client, device, conv);
        Ok(self.cursors.get(&key)?.unwrap_or(0))
    }

    /// Raises the device's ack cursor to `seq`; never lowers it, so racing
    /// acks from two sessions of one device cannot step it back.
    pub fn set_device_cursor(
        &self,
        client: &str,
        device: &str,
        conv: ConvId,
        seq: u64,
    ) -> Result<()> {
        self.cursors
            .raise(keys::device_cursor(client, device, conv), seq)
    }

    /// Moves the device cursor from `seq - 1` to `seq`: a device's own message
    /// counts as received once everything before it was. From anywhere else
    /// the device still has earlier messages to ack, and nothing changes.
    pub fn step_device_cursor(
        &self,
        client: &str,
        device: &str,
        conv: ConvId,
        seq: u64,
    ) -> Result<()> {
        let key = keys::device_cursor(client, device, conv);
        self.cursors
            .update(key, |cur| (cur.unwrap_or(0) + 1 == seq).then_some(seq))
    }

    /// Until when (ms) this device has been shown patches; `None` for a
    /// device never seen.
    pub fn patch_cursor(&self, client: &str, device: &str) -> Result<Option<u64>> {
        self.cursors.get(&keys::patch_cursor(client, device))
    }

    pub fn set_patch_cursor(&self, client: &str, device: &str, ms: u64) -> Result<()> {
        self.cursors.raise(keys::patch_cursor(client, device), ms)
    }

    pub fn read_cursor(&self, client: &str, conv: ConvId) -> Result<u64> {
        Ok(self
            .cursors
            .get(&keys::read_cursor(client, conv))?
            .unwrap_or(0))
    }

    /// Raises the client's read cursor to `seq`; never lowers it.
    pub fn set_read_cursor(&self, client: &str, conv: ConvId, seq: u64) -> Result<()> {
        self.cursors.raise(keys::read_cursor(client, conv), seq)
    }

    /// Moves every cursor changed in memory to sled, where the next flush
    /// makes them durable.
    pub fn write_cursors(&self) -> Result<usize> {
        self.cursors.write()
    }

    /// Whether any cursor waits for [`Store::write_cursors`]: an idle server
    /// skips the writer's trip to a blocking thread.
    pub fn cursors_changed(&self) -> bool {
        self.cursors.any_changed()
    }

    /// [`Store::write_cursors`] for one shard in turn; the server calls it
    /// every [`WRITE_TICK`].
    pub fn write_some_cursors(&self) -> Result<usize> {
        self.cursors.write_next()
    }
}
