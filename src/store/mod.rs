//! The one place that knows sled: every tree name, every key encoding, every
//! persisted record. sled 0.34 is beta, so nothing else touches it.
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
//! | `sys`, `broadcasts` | see [`system`]                    |                             |
//! | `nonces`        | expires s(8) nonce                    | empty: a used login nonce   |
//! | `meta`          | `schema`                              | u32                         |
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
//! a group commit's durable flush, sled's background flush (every 500 ms,
//! `sync_file_range` only) or the flush of a graceful shutdown. So a record
//! pushed within about half a second before a crash (process or power) can be
//! lost; once flushed it survives a process crash, and a power cut too after
//! the next fdatasync'd group commit (`store.fsync`). A removal lost the same
//! way means a redelivery, never a loss.
//!
//! `dead_letters` holds outbox records given up on (too many attempts or too
//! old), under their outbox id, until an operator retries or purges them
//! ([`dead_letters`]). A record moves between the two trees in one sled
//! transaction, so it is always in exactly one of them.

pub mod check;
pub mod cursors;
mod dead_letters;
pub mod health;
pub mod keys;
mod migrate;
mod nonces;
pub mod system;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::protocol::{ConvId, ConvKind, Message, Reason};

pub const TREES: &[&str] = &[
    "conversations",
    "unique",
    "memberships",
    "log",
    "cursors",
    "outbox",
    "dead_letters",
    "receipts",
    "sys",
    "broadcasts",
    "nonces",
    "meta",
];

/// 2: `Message` and `LogEntry` gained the edit/recall/delete fields
/// (`migrate` upgrades a version-1 data dir in place).
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("record: {0}")]
    Codec(#[from] CodecError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data dir has schema {found}, this build reads {SCHEMA_VERSION}")]
    Schema { found: u32 },
    #[error("corrupt key or value in {tree}")]
    Corrupt { tree: &'static str },
    #[error("disk space low: {free} bytes free, store.min_free_mb keeps {reserve}")]
    DiskLow { free: u64, reserve: u64 },
    #[error("the store failed earlier ({0}); the server is stopping")]
    Failed(String),
    #[error("injected fault at {0:?}")]
    Injected(health::Step),
    /// sled cannot open the store (it panicked or reported corruption while
    /// recovering): a restart will not fix it.
    #[error(
        "store file {} is damaged and cannot be opened: {detail}. A restart will not fix it: \
         stop here, copy the data dir aside, then run `tidings store check` and \
         `tidings store repair --into NEWDIR` (README, \"Damaged store files\")",
        path.display()
    )]
    Unreadable { path: PathBuf, detail: String },
}

impl StoreError {
    /// Refused before anything was written: the caller may say "not stored".
    pub fn is_refusal(&self) -> bool {
        matches!(self, StoreError::DiskLow { .. } | StoreError::Failed(_))
    }

    /// The bytes on disk are bad (a record that does not decode, a page
    /// sled finds corrupt or cut short), as opposed to a refusal or an I/O
    /// failure that may pass (EMFILE, ENOSPC).
    pub fn is_damage(&self) -> bool {
        match self {
            StoreError::Codec(_) | StoreError::Corrupt { .. } | StoreError::Unreadable { .. } => {
                true
            }
            StoreError::Sled(e) => check::sled_damage(e),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationRecord {
    pub id: ConvId,
    pub kind: ConvKind,
    pub name: Option<String>,
    pub attr: Option<String>,
    pub creator: String,
    /// Sorted; empty for chat rooms.
    pub members: Vec<String>,
    pub managers: Vec<String>,
    pub muted: Vec<String>,
    pub unique: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A stored message plus what only the server needs to know about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub msg: Message,
    /// The sending device, so redelivery skips a device's own messages.
    pub origin_device: String,
    pub from_ip: String,
    /// Receivers chosen by `_messageReceived` (`toPeers`); `None` is every member.
    pub to_peers: Option<Vec<String>>,
    /// Removed from history; the record stays, without content, so the seq
    /// is never reused.
    pub deleted: bool,
    /// Why the server or a hook last changed it, for patch sync.
    pub reason: Option<Reason>,
    /// Who last edited, recalled or deleted it.
    pub patched_by: Option<String>,
}

impl LogEntry {
    pub fn new(msg: Message, origin_device: impl Into<String>, from_ip: impl Into<String>) -> Self {
        LogEntry {
            msg,
            origin_device: origin_device.into(),
            from_ip: from_ip.into(),
            to_peers: None,
            deleted: false,
            reason: None,
            patched_by: None,
        }
    }

    /// Whether `client` receives this message (senders always see their own).
    pub fn reaches(&self, client: &str) -> bool {
        self.msg.from == client
            || self
                .to_peers
                .as_ref()
                .is_none_or(|peers| peers.iter().any(|p| p == client))
    }
}

/// The first answer to a send with an idempotency token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRecord {
    pub conv: ConvId,
    pub msg_id: String,
    pub seq: u64,
    pub timestamp: u64,
}

/// An after-hook call waiting in the outbox. The endpoint is not stored: it
/// comes from the config at delivery time, so a reload or restart with new
/// URLs redirects what is still queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// The hook's LeanCloud name, e.g. `_messageSent`.
    pub hook: String,
    /// The params as JSON text: bincode cannot encode a `serde_json::Value`.
    pub params: String,
    /// Records with the same key are delivered in push order.
    pub order_key: String,
    /// Milliseconds since the Unix epoch.
    pub enqueued_at: u64,
}

pub use dead_letters::DeadLetter;

/// One idempotency token to record with an append.
pub struct TokenRecord<'a> {
    pub client: &'a str,
    pub token: &'a str,
    pub sent: SentRecord,
}

pub struct Store {
    db: sled::Db,
    conversations: sled::Tree,
    unique: sled::Tree,
    memberships: sled::Tree,
    log: sled::Tree,
    /// Written behind (`cursors`).
    cursors: cursors::Cursors,
    outbox: sled::Tree,
    receipts: sled::Tree,
    /// System conversations: `_SysMessage` rows and their webhook queue
    /// (`store::system`).
    sys: sled::Tree,
    /// TTL'd broadcasts (`store::system`).
    broadcasts: sled::Tree,
    /// Used login nonces until they expire (`store::nonces`).
    nonces: sled::Tree,
    /// The next outbox id. Held while inserting, so ids reach the tree in
    /// id order and a reader that has seen id n never misses one below it.
    outbox_next: parking_lot::Mutex<u64>,
    /// Records in the outbox; sled's own `len` is a full scan.
    outbox_len: AtomicU64,
    dead_letters: sled::Tree,
    dead_letters_len: AtomicU64,
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
        let meta = db.open_tree("meta")?;
        let fresh = match meta.get(b"schema")? {
            None => {
                meta.insert(b"schema", &SCHEMA_VERSION.to_be_bytes())?;
                // At once, so a store that has data always has its schema
                // record: its absence later means damage (see `open`).
                db.flush()?;
                true
            }
            Some(v) => {
                let found = keys::read_u32(&v).ok_or(StoreError::Corrupt { tree: "meta" })?;
                if found == 1 {
                    migrate::v1_to_v2(&db)?;
                    meta.insert(b"schema", &SCHEMA_VERSION.to_be_bytes())?;
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
        let outbox = db.open_tree("outbox")?;
        let dead_letters = db.open_tree("dead_letters")?;
        // Above every id in either tree: a dead letter keeps its id, and a
        // new record must never take it.
        let mut outbox_next = 1;
        for (tree, name) in [(&outbox, "outbox"), (&dead_letters, "dead_letters")] {
            if let Some((k, _)) = tree.last()? {
                let next = keys::read_u64(&k)
                    .and_then(|id| id.checked_add(1))
                    .ok_or(StoreError::Corrupt { tree: name })?;
                outbox_next = outbox_next.max(next);
            }
        }
        let outbox_len = outbox.len() as u64;
        let dead_letters_len = dead_letters.len() as u64;
        let store = Store {
            conversations: db.open_tree("conversations")?,
            unique: db.open_tree("unique")?,
            memberships: db.open_tree("memberships")?,
            log: db.open_tree("log")?,
            cursors: cursors::Cursors::new(db.open_tree("cursors")?),
            outbox,
            receipts: db.open_tree("receipts")?,
            sys: db.open_tree("sys")?,
            broadcasts: db.open_tree("broadcasts")?,
            nonces: db.open_tree("nonces")?,
            outbox_next: parking_lot::Mutex::new(outbox_next),
            outbox_len: AtomicU64::new(outbox_len),
            dead_letters,
            dead_letters_len: AtomicU64::new(dead_letters_len),
            db,
            data_file,
            blobs: dir.join("blobs"),
            synced_blob: parking_lot::Mutex::new(0),
            guard: health::Guard::new(dir, 0),
            damage: check::Damage::default(),
        };
        Ok((store, fresh))
    }

    /// Makes everything written so far durable, the write-behind cursors
    /// included: what a graceful shutdown needs.
    pub fn flush_durable(&self) -> Result<()> {
        self.cursors.write()?;
        self.sync_written()
    }

    /// Makes every sled write so far durable: sled flush, then fdatasync.
    /// Cursors changed in memory wait for their writer (`cursors`), so a
    /// group commit does not pay for them.
    pub fn sync_written(&self) -> Result<()> {
        if self.guard.is_failed() {
            return Err(StoreError::Failed(
                "an earlier write or flush failed".into(),
            ));
        }
        self.guard.faults.check(health::Step::Flush)?;
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

    // ---- conversations ----

    pub fn put_conversation(&self, rec: &ConversationRecord) -> Result<()> {
        self.guard.writable()?;
        self.conversations.insert(rec.id.0, codec::encode(rec)?)?;
        Ok(())
    }

    pub fn remove_conversation(&self, id: ConvId) -> Result<()> {
        self.conversations.remove(id.0)?;
        Ok(())
    }

    /// Every conversation record that decodes. One that does not is noted
    /// as damaged and left out, so the rest still load; a tree sled cannot
    /// read is [`StoreError::Unreadable`].
    pub fn conversations(&self) -> Result<Vec<ConversationRecord>> {
        let mut out = Vec::new();
        for kv in self.conversations.iter() {
            let (k, v) = kv.map_err(|e| self.unreadable("conversations", e.into()))?;
            match codec::decode::<ConversationRecord>(&v) {
                Ok(rec) => out.push(rec),
                Err(e) => match keys::read_conv(&k) {
                    Some(conv) => {
                        self.noted(conv, e.into());
                    }
                    None => return Err(self.unreadable("conversations", e.into())),
                },
            }
        }
        Ok(out)
    }

    pub fn unique_get(&self, members_key: &[u8; 32]) -> Result<Option<ConvId>> {
        match self.unique.get(members_key)? {
            None => Ok(None),
            Some(v) => keys::read_conv(&v)
                .map(Some)
                .ok_or(StoreError::Corrupt { tree: "unique" }),
        }
    }

    pub fn unique_put(&self, members_key: &[u8; 32], conv: ConvId) -> Result<()> {
        self.guard.not_failed()?;
        self.unique.insert(members_key, &conv.0)?;
        Ok(())
    }

    /// Points `members_key` at `conv` unless it already names a conversation; returns that one.
    pub fn unique_claim(&self, members_key: &[u8; 32], conv: ConvId) -> Result<Option<ConvId>> {
        self.guard.writable()?;
        match self
            .unique
            .compare_and_swap(members_key, None as Option<&[u8]>, Some(&conv.0[..]))?
        {
            Ok(()) => Ok(None),
            Err(e) => Ok(e.current.as_deref().and_then(keys::read_conv)),
        }
    }

    pub fn unique_remove(&self, members_key: &[u8; 32]) -> Result<()> {
        self.unique.remove(members_key)?;
        Ok(())
    }

    pub fn add_membership(&self, client: &str, conv: ConvId) -> Result<()> {
        self.guard.not_failed()?;
        self.memberships
            .insert(keys::membership(client, conv), &[])?;
        Ok(())
    }

    pub fn remove_membership(&self, client: &str, conv: ConvId) -> Result<()> {
        self.memberships.remove(keys::membership(client, conv))?;
        Ok(())
    }

    pub fn memberships_of(&self, client: &str) -> Result<Vec<ConvId>> {
        let prefix = keys::id(client);
        self.memberships
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                let k = k?;
                keys::read_conv(&k[prefix.len()..]).ok_or(StoreError::Corrupt {
                    tree: "memberships",
                })
            })
            .collect()
    }

    /// How many conversations `client` is a member of, counted no further
    /// than `at_most` (a quota check need not scan them all).
    pub fn membership_count(&self, client: &str, at_most: usize) -> usize {
        self.memberships
            .scan_prefix(keys::id(client))
            .keys()
            .take(at_most)
            .count()
    }

    // ---- the message log ----

    /// Writes messages and their indexes in one atomic batch, then makes them durable.
    pub fn append(&self, entries: &[LogEntry], tokens: &[TokenRecord<'_>]) -> Result<()> {
        self.append_unsynced(entries, tokens)?;
        self.sync_written()
    }

    /// The batch write alone, for callers that group several appends under one flush.
    pub fn append_unsynced(&self, entries: &[LogEntry], tokens: &[TokenRecord<'_>]) -> Result<()> {
        self.write_unsynced(entries, tokens, &[], &[])
    }

    /// One atomic batch: new and rewritten messages (a rewritten one, with
    /// `updated_at`, gets a patch key at that time), idempotency tokens, the
    /// `(ms, conv, seq)` patch keys the rewrites replace, and the clients'
    /// messages to system conversations that the webhook is to carry (queued
    /// with the message itself, so a crash cannot lose one).
    pub fn write_unsynced(
        &self,
        entries: &[LogEntry],
        tokens: &[TokenRecord<'_>],
        stale_patches: &[(u64, ConvId, u64)],
        for_webhook: &[(ConvId, u64)],
    ) -> Result<()> {
        self.guard.not_failed()?;
        self.guard.faults.check(health::Step::Write)?;
        let mut batch = sled::Batch::default();
        for &(conv, seq) in for_webhook {
            batch.insert(keys::webhook(conv, seq).to_vec(), &[]);
        }
        for &(at, conv, seq) in stale_patches {
            batch.remove(keys::patch(at, conv, seq).to_vec());
        }
        for e in entries {
            batch.insert(
                keys::message(e.msg.conv, e.msg.seq).to_vec(),
                codec::encode(e)?,
            );
            if let Some(at) = e.msg.updated_at {
                batch.insert(keys::patch(at, e.msg.conv, e.msg.seq).to_vec(), &[]);
            }
        }
        for t in tokens {
            batch.insert(keys::token(t.client, t.token), codec::encode(&t.sent)?);
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }

    pub fn message(&self, conv: ConvId, seq: u64) -> Result<Option<LogEntry>> {
        self.guard.faults.check(health::Step::MessageRead)?;
        self.read_conv(conv, || match self.log.get(keys::message(conv, seq))? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode(&v)?)),
        })
    }

    /// The newest stored message of `conv`.
    pub fn last_message(&self, conv: ConvId) -> Result<Option<LogEntry>> {
        self.read_conv(conv, || {
            match self.log.scan_prefix(keys::message_prefix(conv)).next_back() {
                None => Ok(None),
                Some(kv) => Ok(Some(codec::decode(&kv?.1)?)),
            }
        })
    }

    /// Messages of `conv` with `lo <= seq <= hi`, at most `limit`, from the
    /// high end when `newest_first`. Always returned oldest first.
    pub fn messages(
        &self,
        conv: ConvId,
        lo: u64,
        hi: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<LogEntry>> {
        if lo > hi || limit == 0 {
            return Ok(Vec::new());
        }
        let range = self
            .log
            .range(keys::message(conv, lo)..=keys::message(conv, hi));
        let decode = |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Result<LogEntry> {
            Ok(codec::decode(&kv?.1)?)
        };
        let mut out: Vec<LogEntry> = if newest_first {
            range.rev().take(limit).map(decode).collect::<Result<_>>()
        } else {
            range.take(limit).map(decode).collect::<Result<_>>()
        }
        .map_err(|e| self.noted(conv, e))?;
        if newest_first {
            out.reverse();
        }
        Ok(out)
    }

    /// Like [`Store::messages`], keeping only entries `keep` accepts and
    /// looking at no more than `max_scan` entries. The flag says the scan
    /// stopped at `max_scan` with the range not exhausted.
    pub fn messages_where(
        &self,
        conv: ConvId,
        (lo, hi): (u64, u64),
        limit: usize,
        newest_first: bool,
        max_scan: usize,
        keep: impl Fn(&LogEntry) -> bool,
    ) -> Result<(Vec<LogEntry>, bool)> {
        if lo > hi || limit == 0 {
            return Ok((Vec::new(), false));
        }
        let range = self
            .log
            .range(keys::message(conv, lo)..=keys::message(conv, hi));
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = if newest_first
        {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut out = Vec::new();
        for (scanned, kv) in iter.enumerate() {
            if out.len() == limit {
                break;
            }
            if scanned == max_scan {
                if newest_first {
                    out.reverse();
                }
                return Ok((out, true));
            }
            let e: LogEntry = self.read_conv(conv, || Ok(codec::decode(&kv?.1)?))?;
            if keep(&e) {
                out.push(e);
            }
        }
        if newest_first {
            out.reverse();
        }
        Ok((out, false))
    }

    /// Patches `(ms, conv, seq)` made after `after_ms`, oldest first, at most `limit`.
    pub fn patches_since(&self, after_ms: u64, limit: usize) -> Result<Vec<(u64, ConvId, u64)>> {
        let Some(from) = after_ms.checked_add(1) else {
            return Ok(Vec::new());
        };
        let start = keys::patch(from, ConvId([0; 12]), 0);
        self.log
            .range(start.to_vec()..)
            .keys()
            .take_while(|k| k.as_ref().map_or(true, |k| k.first() == Some(&b'u')))
            .take(limit)
            .map(|k| keys::read_patch(&k?).ok_or(StoreError::Corrupt { tree: "log" }))
            .collect()
    }

    /// Messages waiting for the system-conversation webhook, oldest first
    /// per conversation, at most `limit`.
    pub fn webhook_pending(&self, limit: usize) -> Result<Vec<(ConvId, u64)>> {
        self.log
            .scan_prefix([b'y'])
            .keys()
            .take(limit)
            .map(|k| keys::read_webhook(&k?).ok_or(StoreError::Corrupt { tree: "log" }))
            .collect()
    }

    /// Takes messages off the webhook queue (delivered, or given up on).
    pub fn webhook_done(&self, done: &[(ConvId, u64)]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for &(conv, seq) in done {
            batch.remove(keys::webhook(conv, seq).to_vec());
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }

    /// Removes every message record of `conv` (after a conversation delete).
    pub fn remove_log(&self, conv: ConvId) -> Result<u64> {
        let mut n = 0;
        loop {
            let mut batch = sled::Batch::default();
            let mut in_batch = 0;
            for k in self
                .log
                .scan_prefix(keys::message_prefix(conv))
                .keys()
                .take(1000)
            {
                batch.remove(k?);
                in_batch += 1;
            }
            if in_batch == 0 {
                return Ok(n);
            }
            self.log.apply_batch(batch)?;
            n += in_batch;
        }
    }

    /// The smallest seq whose timestamp is `>= ts` (timestamps never decrease
    /// along a conversation), or `last + 1` if none.
    pub fn seq_at_or_after(&self, conv: ConvId, ts: u64, last: u64) -> Result<u64> {
        let (mut lo, mut hi) = (1u64, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = self
                .log
                .range(keys::message(conv, mid)..=keys::message(conv, last))
                .next();
            let Some(kv) = at else {
                hi = mid;
                continue;
            };
            let entry: LogEntry = self.read_conv(conv, || Ok(codec::decode(&kv?.1)?))?;
            if entry.msg.timestamp >= ts {
                hi = mid;
            } else {
                lo = entry.msg.seq + 1;
            }
        }
        Ok(lo)
    }

    pub fn sent_by_token(&self, client: &str, token: &str) -> Result<Option<SentRecord>> {
        self.guard.faults.check(health::Step::TokenRead)?;
        match self.log.get(keys::token(client, token))? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode(&v)?)),
        }
    }

    // ---- receipts ----

    /// Raises what `client` has received (`delivered`) or read in `conv` to
    /// `ms`; returns the new `(delivered, read)`.
    pub fn raise_receipt(
        &self,
        conv: ConvId,
        client: &str,
        delivered: Option<u64>,
        read: Option<u64>,
    ) -> Result<(u64, u64)> {
        self.guard.not_failed()?;
        let new = self
            .receipts
            .update_and_fetch(keys::receipt(conv, client), |old| {
                let (d, r) = old.and_then(keys::read_u64_pair).unwrap_or((0, 0));
                let d = d.max(delivered.unwrap_or(0));
                let r = r.max(read.unwrap_or(0));
                Some(keys::u64_pair(d, r).to_vec())
            })?;
        new.as_deref()
            .and_then(keys::read_u64_pair)
            .ok_or(StoreError::Corrupt { tree: "receipts" })
    }

    /// What `client` has received and read in `conv` (0 when never).
    pub fn receipt(&self, conv: ConvId, client: &str) -> Result<(u64, u64)> {
        match self.receipts.get(keys::receipt(conv, client))? {
            None => Ok((0, 0)),
            Some(v) => keys::read_u64_pair(&v).ok_or(StoreError::Corrupt { tree: "receipts" }),
        }
    }

    /// Notes that `client` was offline when a receipt for `conv` was due.
    pub fn owe_receipt(&self, client: &str, conv: ConvId) -> Result<()> {
        self.guard.not_failed()?;
        self.receipts
            .insert(keys::owed_receipt(client, conv), &[])?;
        Ok(())
    }

    /// Takes the conversations `client` is owed receipts for.
    pub fn take_owed_receipts(&self, client: &str) -> Result<Vec<ConvId>> {
        let prefix = keys::owed_receipt_prefix(client);
        let mut out = Vec::new();
        for k in self.receipts.scan_prefix(&prefix).keys() {
            let k = k?;
            if let Some(conv) = keys::read_conv(&k[prefix.len()..]) {
                out.push(conv);
            }
            self.receipts.remove(k)?;
        }
        Ok(out)
    }

    // ---- the hook outbox ----

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
        if let Err(e) = self.outbox.insert(keys::outbox(id), value) {
            self.outbox_len.fetch_sub(1, Ordering::Relaxed);
            return Err(e.into());
        }
        *next = id + 1;
        Ok(id)
    }

    /// The oldest `limit` records, oldest first.
    pub fn outbox_peek(&self, limit: usize) -> Result<Vec<(u64, OutboxRecord)>> {
        self.outbox_scan(self.outbox.iter(), limit)
    }

    /// Up to `limit` records with an id above `after`, oldest first.
    pub fn outbox_peek_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, OutboxRecord)>> {
        match after.checked_add(1) {
            None => Ok(Vec::new()),
            Some(from) => self.outbox_scan(self.outbox.range(keys::outbox(from)..), limit),
        }
    }

    fn outbox_scan(&self, iter: sled::Iter, limit: usize) -> Result<Vec<(u64, OutboxRecord)>> {
        iter.take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                let id = keys::read_u64(&k).ok_or(StoreError::Corrupt { tree: "outbox" })?;
                Ok((id, codec::decode(&v)?))
            })
            .collect()
    }

    /// Removes a delivered record; true if it was there. Does not flush: a
    /// lost removal means a redelivery.
    pub fn outbox_remove(&self, id: u64) -> Result<bool> {
        let removed = self.outbox.remove(keys::outbox(id))?.is_some();
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
