//! The one place that knows sled: every tree name ([`tables`]), every key
//! encoding ([`keys`]), every persisted record ([`records`]). sled 0.34 is
//! beta, so nothing else touches it.
//!
//! # Files
//!
//! - `mod.rs`: [`Store`]: open (the schema gate, every tree from
//!   [`tables::TABLES`]), the durability points (`sync_log`, `checkpoint`,
//!   `sync_written`, `flush_durable`) and health.
//! - [`wal`]: the write-ahead log in front of the `log` tree, which makes a
//!   group commit durable with one write and one fdatasync; checkpoints
//!   and the replay at open.
//! - [`api`]: the interface a second backend implements, and what it must
//!   guarantee (below); `Store` implements it.
//! - `log.rs` (messages, tokens, patch index, webhook queue),
//!   `conversations.rs`, `receipts.rs`, [`cursors`], `outbox.rs`,
//!   `dead_letters.rs`, `broadcasts.rs`, [`system`] (subscriptions and
//!   `_SysMessage` delivery times), `nonces.rs`, [`moderation`]
//!   (blacklists and muted members), [`installations`] (push device
//!   registrations): one concern each.
//! - [`check`] (damage, offline check and repair), [`health`] (disk
//!   reserve, sticky failure, fault injection), `migrate.rs`.
//!
//! Trees and keys (all integers big-endian so byte order is numeric order;
//! `id(x)` is a one-byte length then the UTF-8 bytes, ids being ≤ 64 bytes):
//!
//! | tree            | key                                   | value                       |
//! |-----------------|---------------------------------------|-----------------------------|
//! | `conversations` | conv(12)                              | [`ConversationRecord`]      |
//! | `unique`        | sha256(sorted members)(32)            | conv(12)                    |
//! | `memberships`   | id(client) conv(12)                   | empty                       |
//! | `log`           | `m` conv(12) seq(8)                   | [`LogEntry`]                |
//! |                 | `k` id(client) token                  | [`SentRecord`]              |
//! |                 | `u` ms(8) conv(12) seq(8)             | empty: patched at ms        |
//! |                 | `y` conv(12) seq(8)                   | empty: for the system webhook |
//! | `cursors`       | `d` id(client) id(device) conv(12)    | seq(8): acked by the device |
//! |                 | `r` id(client) conv(12)               | seq(8): read by the client  |
//! |                 | `p` id(client) id(device)             | ms(8): patches synced up to |
//! | `receipts`      | `s` conv(12) id(client)               | delivered ms(8) read ms(8)  |
//! |                 | `q` id(client) conv(12)               | empty: receipt owed         |
//! | `outbox`        | push_id(8)                            | [`OutboxRecord`]            |
//! | `dead_letters`  | push_id(8)                            | [`DeadLetter`]              |
//! | `sys`           | `s` conv(12) client (raw bytes)       | subscribed at, ms(8)        |
//! |                 | `a` conv(12) seq(8)                   | ms(8): the webhook took it (`ackAt`) |
//! | `broadcasts`    | `n`                                   | id(8): the last id handed out |
//! |                 | `b` id(8)                             | [`BroadcastRecord`]         |
//! |                 | `e` valid_till ms(8) id(8)            | empty: expiry order, for the sweep |
//! |                 | `i` conv(12) seq(8)                   | id(8): the broadcast a message is |
//! |                 | `c` id(client)                        | id(8): the last broadcast the client has had |
//! | `nonces`        | expires s(8) nonce                    | empty: a used login nonce   |
//! | `meta`          | `schema`                              | u32                         |
//! | `moderation`    | `b` conv(12) client (raw bytes)       | ms(8): blocked at (blacklist) |
//! |                 | `s` conv(12) client (raw bytes)       | ms(8): muted at (shutup)    |
//! | `installations` | `o` objectId                          | [`Installation`]            |
//! |                 | `t` push token                        | objectId                    |
//! |                 | `i` installationId                    | objectId                    |
//! |                 | `c` id(client) objectId               | empty: bound at login       |
//!
//! An edit, recall or delete rewrites the message's `m` record in place (a
//! delete leaves a content-less tombstone, so seqs and ids are never reused)
//! and moves its `u` key to the new time; a device's `p` cursor says which
//! patches its client has already been shown.
//!
//! Message and idempotency keys share the `log` tree so that one sled batch,
//! which is atomic within a tree, writes both. Message ids are derived from
//! `(conv, seq)` (`protocol::msg_id`), so they need no index.
//!
//! `cursors` are written behind: changes collect in memory and reach sled
//! within a quarter second (see [`cursors`] for what a crash costs).
//!
//! The `outbox` holds after-hook calls waiting for delivery, keyed by an id
//! that grows in push order. Pushes and removals do not wait for a flush: a
//! record is on disk at the next flush of the store, whichever comes first of
//! sled's background flush (every 500 ms, `sync_file_range` only), a
//! checkpoint or barrier flush, or the flush of a graceful shutdown. So a
//! record pushed within about half a second before a crash (process or
//! power) can be lost; once flushed it survives a process crash, and a power
//! cut too after the next fdatasync'd checkpoint (about a second under load)
//! or barrier (`store.fsync`). A removal lost the same
//! way means a redelivery, never a loss.
//!
//! `dead_letters` holds outbox records given up on (too many attempts or too
//! old), under their outbox id, until an operator retries or purges them
//! ([`dead_letters`]). A record moves between the two trees in one sled
//! transaction, so it is always in exactly one of them.
//!
//! # What a backend must implement and guarantee
//!
//! The traits in [`api`] ([`MessageLog`], [`Conversations`], [`Cursors`],
//! [`Receipts`], [`Outbox`], [`Broadcasts`], gathered in [`Backend`]) are
//! the whole of what the IM core needs from storage. sled is the only
//! backend today; a second one (PostgreSQL, say) implements the same
//! traits, synchronously (run them on a blocking pool), and passes the same
//! contract tests (`tests/store_contract.rs`). It must guarantee:
//!
//! - **Durability point.** [`MessageLog::append`] returns `Ok` only once
//!   every message, token, patch key and webhook key of its batch is
//!   durable (sled: the write-ahead log's write and fdatasync when
//!   `store.fsync` is on, before sled sees it; see [`wal`]), and
//!   [`Backend::sync`] once every write made before the call is. The
//!   server answers a sender only after that. Everything else (cursors,
//!   receipts, outbox pushes and removals, broadcasts, subscriptions,
//!   conversation records) may lag until the next `sync` or `append`: a
//!   crash may lose such a write from the last moments, never a message
//!   that was answered. Callers that need one of those durable wait for a
//!   `sync` (the pipeline's barrier).
//! - **All or nothing.** An append's batch is applied whole or not at all
//!   (sled: the write-ahead log's frame is whole or dropped, and replayed
//!   at open over whatever part of it sled kept),
//!   and an outbox record moves between outbox and dead letters whole.
//! - **Ordering.** Seqs of a conversation run 1, 2, 3, … without a gap or
//!   a repeat. Each append carries, per conversation that gains messages,
//!   the last seq it planned from ([`api::Head`]); the backend checks it
//!   against what it holds *inside the same atomic write* and refuses the
//!   whole batch with [`StoreError::SeqMoved`] when another writer moved
//!   it, and with [`StoreError::SeqGap`] when the new seqs do not continue
//!   from it. So two writers can never both take a seq. Reads see an
//!   append whole once it returned. Outbox ids and broadcast ids only grow
//!   and are never reused.
//! - **Idempotency.** A send's token is written in the same atomic batch
//!   as its message, and [`MessageLog::sent_by_token`] finds it from then
//!   on. A caller looks the token up before planning; two racing sends of
//!   one token to one conversation plan from the same head, so the seq
//!   check refuses the second, which then finds the first's token.
//! - **Raise-only.** Cursors, receipts and broadcast cursors never go
//!   down, whatever order racing writers arrive in.
//! - **Refusals.** A write refused before anything was written (low disk,
//!   a failed store) is an error for which [`StoreError::is_refusal`] holds.

pub mod api;
mod broadcasts;
pub mod check;
mod conversations;
pub mod cursors;
mod dead_letters;
mod error;
pub mod health;
pub mod installations;
pub mod keys;
mod log;
mod migrate;
pub mod moderation;
mod nonces;
mod outbox;
mod receipts;
pub mod records;
pub mod system;
pub mod tables;
pub mod wal;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use crate::protocol::ConvId;

pub use api::{Backend, Broadcasts, Conversations, Cursors, MessageLog, Outbox, Receipts};
pub use error::{Result, StoreError};
pub use installations::{
    BadgeChange, ChannelsChange, DeviceRef, Installation, InstallationChanges, Lookup, SaveOutcome,
    Saved,
};
pub use moderation::ModerationList;
pub use records::{
    BroadcastRecord, ConversationRecord, DeadLetter, LogEntry, Origin, OutboxRecord, SentRecord,
    TokenRecord,
};
use tables::{Tree, Trees};

/// 2: `Message` and `LogEntry` gained the edit/recall/delete fields
/// (`migrate` upgrades a version-1 data dir in place).
pub const SCHEMA_VERSION: u32 = 2;

pub struct Store {
    db: sled::Db,
    /// Every tree, opened from [`tables::TABLES`] and only from there.
    trees: Trees,
    /// The `cursors` tree, written behind (`cursors`).
    cursors: cursors::Cursors,
    /// The next outbox id. Held while inserting, so ids reach the tree in
    /// id order and a reader that has seen id n never misses one below it.
    outbox_next: parking_lot::Mutex<u64>,
    /// Records in the outbox; sled's own `len` is a full scan.
    outbox_len: AtomicU64,
    dead_letters_len: AtomicU64,
    /// The last seq in the log of each conversation an append checked,
    /// read from sled the first time (one u64 per conversation written
    /// since start). Held across the check and the batch write, so the
    /// check is in the same write (`log`).
    heads: parking_lot::Mutex<HashMap<ConvId, u64>>,
    /// sled's main file, fdatasync'd after flushes: sled 0.34's flush only
    /// issues sync_file_range, which a power cut can undo.
    data_file: Option<File>,
    /// sled writes values too big for its log as separate blob files and
    /// never syncs them; we sync every blob newer than this LSN.
    blobs: PathBuf,
    synced_blob: parking_lot::Mutex<u64>,
    /// Free-space reserve, the sticky failure and injected faults (`health`).
    guard: health::Guard,
    /// Conversations found damaged while serving (`check`).
    damage: check::Damage,
    /// The `log` tree's write-ahead log: a group commit's durability point.
    wal: wal::Wal,
}

impl Store {
    /// Opens (or creates) the store in `dir`. sled 0.34 panics on some
    /// damaged files while it recovers (a snapshot it cannot build), so the
    /// open runs under `catch_unwind` and any panic or corruption report
    /// becomes [`StoreError::Unreadable`] naming the file: start-up never
    /// panics, and the caller can exit with a code systemd will not loop on.
    pub fn open(dir: &Path, cache_capacity_bytes: u64, fsync: bool) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.into(),
            source,
        })?;
        let db_path = dir.join("db");
        let existing_len = std::fs::metadata(&db_path).map_or(0, |m| m.len());
        let opened = check::catch_sled_panic(|| Self::open_inner(dir, cache_capacity_bytes, fsync));
        let unreadable = |detail: String| StoreError::Unreadable {
            path: db_path.clone(),
            detail,
        };
        match opened {
            Err(panic) => Err(unreadable(format!(
                "sled panicked while recovering it: {panic}"
            ))),
            Ok(Err(e @ StoreError::Sled(_))) if e.is_damage() => Err(unreadable(e.to_string())),
            Ok(Err(StoreError::Codec(e))) => Err(unreadable(format!("meta record: {e}"))),
            Ok(Err(StoreError::Corrupt { tree })) => {
                Err(unreadable(format!("a record in {tree} read at start")))
            }
            Ok(Err(e)) => Err(e),
            Ok(Ok((store, fresh))) => {
                // sled recovers a log cut short by silently dropping what
                // follows the cut; if that took the schema record, what
                // opened is not the store that was written.
                if fresh && existing_len > check::FRESH_DB_MAX_BYTES {
                    store.guard.fail("opened without its schema record".into());
                    return Err(unreadable(format!(
                        "the file holds {existing_len} bytes but sled recovered no schema \
                         record from it (the log was cut short or overwritten)"
                    )));
                }
                Ok(store)
            }
        }
    }

    /// The open itself; true when the store had no schema record (new).
    fn open_inner(dir: &Path, cache_capacity_bytes: u64, fsync: bool) -> Result<(Store, bool)> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity_bytes)
            .flush_every_ms(Some(500))
            .open()?;
        // The schema gate opens `meta` alone first: a data dir from another
        // schema is refused before any tree is created in it.
        let meta = Tree::Meta.open(&db)?;
        let fresh = match meta.get(keys::SCHEMA)? {
            None => {
                meta.insert(keys::SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                // At once, so a store that has data always has its schema
                // record: its absence later means damage (see `open`).
                db.flush()?;
                true
            }
            Some(v) => {
                let found = keys::read_u32(&v).ok_or(StoreError::Corrupt {
                    tree: Tree::Meta.name(),
                })?;
                if found == 1 {
                    migrate::v1_to_v2(&db)?;
                    meta.insert(keys::SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                    db.flush()?;
                } else if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema { found });
                }
                false
            }
        };
        let data_file = if fsync {
            let path = dir.join("db");
            Some(File::open(&path).map_err(|source| StoreError::Io { path, source })?)
        } else {
            None
        };
        let trees = Trees::open(&db)?;
        // What the log's last moments left only in the write-ahead log goes
        // to sled before anything reads the tree, and is flushed there
        // before the segments go.
        let wal_dir = dir.join(wal::DIR);
        let replayed = wal::replay(&wal_dir, |ops| apply_ops(&trees[Tree::Log], ops))?;
        let wal = wal::Wal::start(wal_dir, fsync, &replayed)?;
        // Above every id in either tree: a dead letter keeps its id, and a
        // new record must never take it.
        let mut outbox_next = 1;
        for t in [Tree::Outbox, Tree::DeadLetters] {
            if let Some((k, _)) = trees[t].last()? {
                let next = keys::read_u64(&k)
                    .and_then(|id| id.checked_add(1))
                    .ok_or(StoreError::Corrupt { tree: t.name() })?;
                outbox_next = outbox_next.max(next);
            }
        }
        let outbox_len = trees[Tree::Outbox].len() as u64;
        let dead_letters_len = trees[Tree::DeadLetters].len() as u64;
        let store = Store {
            cursors: cursors::Cursors::new(trees[Tree::Cursors].clone()),
            trees,
            outbox_next: parking_lot::Mutex::new(outbox_next),
            outbox_len: AtomicU64::new(outbox_len),
            dead_letters_len: AtomicU64::new(dead_letters_len),
            heads: parking_lot::Mutex::new(HashMap::new()),
            db,
            data_file,
            blobs: dir.join("blobs"),
            synced_blob: parking_lot::Mutex::new(0),
            guard: health::Guard::new(dir, 0),
            damage: check::Damage::default(),
            wal,
        };
        if replayed.records > 0 {
            store.sync_written()?;
            tracing::info!(
                records = replayed.records,
                "applied the write-ahead log's records to the store"
            );
        }
        store.wal.retire(&replayed.segments)?;
        Ok((store, fresh))
    }

    /// Makes everything written so far durable, the write-behind cursors
    /// included: what a graceful shutdown needs.
    pub fn flush_durable(&self) -> Result<()> {
        self.cursors.write()?;
        self.sync_written()
    }

    /// A group commit's durability point. The `log` tree's writes are
    /// durable when they return (the write-ahead log, `wal`); this is where
    /// a store nobody checkpoints checkpoints itself, past
    /// [`wal::INLINE_CHECKPOINT_BYTES`], and where tests inject a failed
    /// flush.
    pub fn sync_log(&self) -> Result<()> {
        self.sync_check(health::Step::Flush)?;
        if self.wal.logged_since_checkpoint() >= wal::INLINE_CHECKPOINT_BYTES {
            self.checkpoint_now(false)?;
        }
        Ok(())
    }

    /// Whether [`Store::checkpoint`] has work: the server asks every
    /// [`wal::CHECKPOINT_TICK`].
    pub fn checkpoint_due(&self) -> bool {
        !self.guard.is_failed() && self.wal.checkpoint_due()
    }

    /// Flushes sled and retires the write-ahead log segments the flush
    /// made redundant, so the log (and the replay at the next start) stays
    /// about a second long. A failure fails the store, as a failed flush
    /// of a group commit would: what is on disk is then unknown.
    pub fn checkpoint(&self) -> Result<()> {
        self.checkpoint_now(true)
    }

    fn checkpoint_now(&self, wait: bool) -> Result<()> {
        if self.guard.is_failed() {
            return Ok(());
        }
        self.wal
            .checkpoint(wait, || self.flush_sled(health::Step::Checkpoint))
            .inspect_err(|e| self.guard.fail(format!("checkpoint: {e}")))
    }

    fn sync_check(&self, step: health::Step) -> Result<()> {
        if self.guard.is_failed() {
            return Err(StoreError::Failed(
                "an earlier write or flush failed".into(),
            ));
        }
        self.guard.faults.check(step)
    }

    /// Makes every sled write so far durable: sled flush, then fdatasync.
    /// Cursors changed in memory wait for their writer (`cursors`), so a
    /// barrier does not pay for them.
    pub fn sync_written(&self) -> Result<()> {
        self.flush_sled(health::Step::Flush)
    }

    fn flush_sled(&self, step: health::Step) -> Result<()> {
        self.sync_check(step)?;
        self.db.flush()?;
        if let Some(f) = &self.data_file {
            f.sync_data().map_err(|source| StoreError::Io {
                path: "db".into(),
                source,
            })?;
            self.sync_new_blobs().map_err(|source| StoreError::Io {
                path: self.blobs.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn sync_new_blobs(&self) -> std::io::Result<()> {
        let mut synced = self.synced_blob.lock();
        let mut newest = *synced;
        let listing = match std::fs::read_dir(&self.blobs) {
            Ok(l) => l,
            // No directory, no blob to sync.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in listing {
            let entry = entry?;
            let Some(lsn) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if lsn > *synced {
                // The blob may have been collected since we listed it.
                match File::open(entry.path()) {
                    Ok(f) => f.sync_all()?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                newest = newest.max(lsn);
            }
        }
        if newest > *synced {
            File::open(&self.blobs)?.sync_all()?;
            *synced = newest;
        }
        Ok(())
    }

    // ---- health ----

    /// Ok, low on disk space, or failed (`health`).
    pub fn health(&self) -> health::Health {
        self.guard.health()
    }

    /// Err when a write now would be refused (low disk space, or failed).
    pub fn writable(&self) -> Result<()> {
        self.guard.writable()
    }

    /// `store.min_free_mb` in bytes; 0 turns the check off.
    pub fn set_min_free_bytes(&self, bytes: u64) {
        self.guard.set_reserve(bytes);
    }

    /// Marks the store failed for good after a write or flush whose outcome
    /// is unknown: nothing more is written, and the server stops.
    pub fn fail(&self, reason: impl Into<String>) {
        self.guard.fail(reason.into());
    }

    pub fn is_failed(&self) -> bool {
        self.guard.is_failed()
    }

    /// Turns true once the store has failed.
    pub fn watch_failure(&self) -> tokio::sync::watch::Receiver<bool> {
        self.guard.watch_failure()
    }

    /// Fault injection, for tests of the paths above.
    pub fn faults(&self) -> &health::Faults {
        &self.guard.faults
    }
}

/// One logged batch, applied to the `log` tree: at commit, and again at
/// open (`wal`). Key by key, not as a sled batch: sled writes out its log
/// buffer for every batch (`pwrite` and a waiting `sync_file_range` on its
/// I/O threads), which cost more than the rest of a commit together. The
/// write-ahead log, written first, is what makes the batch atomic.
fn apply_ops(tree: &sled::Tree, ops: Vec<wal::Op<'_>>) -> Result<()> {
    for op in ops {
        match op {
            wal::Op::Put(k, v) => tree.insert(k, v)?,
            wal::Op::Del(k) => tree.remove(k)?,
        };
    }
    Ok(())
}

/// Cursors still in memory go to sled, which flushes as its trees drop: a
/// store dropped without [`Store::flush_durable`] keeps them too.
impl Drop for Store {
    fn drop(&mut self) {
        // A failed store writes nothing more: the next start recovers.
        if self.guard.is_failed() {
            return;
        }
        if let Err(e) = self.cursors.write() {
            tracing::warn!(error = %e, "cursors not written at close");
        }
    }
}

#[cfg(test)]
mod tests;
