//! The store as the IM core sees it: six narrow traits, one per kind of
//! state, gathered in [`Backend`]. sled's [`Store`] implements them; a
//! second backend implements them too and passes the same contract tests
//! (`tests/store_contract.rs`). What each must guarantee is in the
//! [`store`](super) docs ("What a backend must implement and guarantee").
//!
//! Why these cuts: each trait is one thing a feature needs, with the
//! methods it uses and no more, so a backend can be written (and a test
//! double reasoned about) a section at a time. sled-only concerns stay off
//! the traits: the disk reserve, sticky failure and fault injection
//! (`health`), damage reports (`check`), the write-behind cursor writer,
//! login nonces. Signatures are synchronous because sled is; an async
//! backend runs them on a blocking pool. The traits are object safe, so
//! the hub can hold an `Arc<dyn Backend>`.
//!
//! Every method returns [`Result`]; an error that refused the write before
//! anything was stored satisfies [`StoreError::is_refusal`](super::StoreError::is_refusal).

use super::moderation::ModerationList;
use super::{
    BroadcastRecord, ConversationRecord, DeadLetter, LogEntry, OutboxRecord, Result, SentRecord,
    Store, TokenRecord,
};
use crate::protocol::ConvId;

/// A conversation an append adds messages to, and its last seq as the
/// caller planned from it (its in-memory head, or [`MessageLog::last_seq`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub conv: ConvId,
    pub last_seq: u64,
}

/// One atomic write to the log: what a group commit writes.
#[derive(Clone, Copy)]
pub struct LogBatch<'a> {
    /// One per conversation that gains messages. The append is refused
    /// with `SeqMoved` when the log's last seq differs from `last_seq`.
    pub heads: &'a [Head],
    /// New messages (seq above their conversation's head: they must run
    /// on from it one by one, in order) and rewritten ones (seq at or below
    /// it: an edit, recall or delete; one with `updated_at` gets a patch
    /// key at that time).
    pub entries: &'a [LogEntry],
    /// Idempotency tokens of the new messages.
    pub tokens: &'a [TokenRecord<'a>],
    /// `(ms, conv, seq)` patch keys the rewrites replace.
    pub stale_patches: &'a [(u64, ConvId, u64)],
    /// Clients' messages to system conversations, queued for the webhook
    /// with the message itself, so a crash cannot lose one.
    pub for_webhook: &'a [(ConvId, u64)],
}

/// The message log: messages by `(conv, seq)`, idempotency tokens, the
/// patch index (what changed since a time) and the system webhook queue.
pub trait MessageLog {
    /// Writes the batch whole and durably, or not at all. Checks every
    /// head inside the same write: `SeqMoved` when a conversation's last
    /// seq is not the one planned from, `SeqGap` when new seqs do not run
    /// on from it; nothing is written then.
    fn append(&self, batch: &LogBatch<'_>) -> Result<()>;

    /// The seq of the conversation's newest message; 0 when it has none.
    fn last_seq(&self, conv: ConvId) -> Result<u64>;

    fn message(&self, conv: ConvId, seq: u64) -> Result<Option<LogEntry>>;

    /// The newest stored message of `conv`.
    fn last_message(&self, conv: ConvId) -> Result<Option<LogEntry>> {
        Ok(self.messages(conv, 1, u64::MAX, 1, true)?.pop())
    }

    /// Messages of `conv` with `lo <= seq <= hi`, at most `limit`, from the
    /// high end when `newest_first`. Always returned oldest first.
    fn messages(
        &self,
        conv: ConvId,
        lo: u64,
        hi: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<LogEntry>>;

    /// Like [`MessageLog::messages`], keeping only entries `keep` accepts
    /// and looking at no more than `max_scan` entries; true when the scan
    /// stopped at `max_scan` with the range not exhausted.
    fn messages_where(
        &self,
        conv: ConvId,
        range: (u64, u64),
        limit: usize,
        newest_first: bool,
        max_scan: usize,
        keep: &mut dyn FnMut(&LogEntry) -> bool,
    ) -> Result<(Vec<LogEntry>, bool)>;

    /// The smallest seq whose timestamp is `>= ts` (timestamps never
    /// decrease along a conversation), or `last + 1` if none.
    fn seq_at_or_after(&self, conv: ConvId, ts: u64, last: u64) -> Result<u64>;

    /// The first answer to `client`'s send with `token`.
    fn sent_by_token(&self, client: &str, token: &str) -> Result<Option<SentRecord>>;

    /// Patches `(ms, conv, seq)` made after `after_ms`, oldest first.
    fn patches_since(&self, after_ms: u64, limit: usize) -> Result<Vec<(u64, ConvId, u64)>>;

    /// Messages waiting for the system-conversation webhook.
    fn webhook_pending(&self, limit: usize) -> Result<Vec<(ConvId, u64)>>;

    /// Takes messages off the webhook queue.
    fn webhook_done(&self, done: &[(ConvId, u64)]) -> Result<()>;

    /// Records that the webhook took these messages at `at_ms`.
    fn set_sys_acked(&self, msgs: &[(ConvId, u64)], at_ms: u64) -> Result<()>;

    /// When the webhook took a client's message (`_SysMessage.ackAt`).
    fn sys_acked(&self, conv: ConvId, seq: u64) -> Result<Option<u64>>;

    /// Removes every message of `conv` (after a conversation delete);
    /// returns how many. Its seqs start again from 0 only for a new id.
    fn remove_log(&self, conv: ConvId) -> Result<u64>;
}

/// Conversation records, unique-conversation claims, memberships and
/// system conversations' subscriptions.
pub trait Conversations {
    fn put_conversation(&self, rec: &ConversationRecord) -> Result<()>;
    fn remove_conversation(&self, id: ConvId) -> Result<()>;
    /// Every conversation record that reads.
    fn conversations(&self) -> Result<Vec<ConversationRecord>>;

    fn unique_get(&self, members_key: &[u8; 32]) -> Result<Option<ConvId>>;
    /// Points `members_key` at `conv` unless it already names one: atomic,
    /// so two creators of one unique conversation agree; returns the one
    /// already there.
    fn unique_claim(&self, members_key: &[u8; 32], conv: ConvId) -> Result<Option<ConvId>>;
    fn unique_put(&self, members_key: &[u8; 32], conv: ConvId) -> Result<()>;
    fn unique_remove(&self, members_key: &[u8; 32]) -> Result<()>;

    fn add_membership(&self, client: &str, conv: ConvId) -> Result<()>;
    fn remove_membership(&self, client: &str, conv: ConvId) -> Result<()>;
    fn memberships_of(&self, client: &str) -> Result<Vec<ConvId>>;
    /// Counted no further than `at_most`.
    fn membership_count(&self, client: &str, at_most: usize) -> Result<usize>;

    /// Keeps the first subscription time when called again.
    fn put_subscription(&self, conv: ConvId, client: &str, at_ms: u64) -> Result<()>;
    fn remove_subscription(&self, conv: ConvId, client: &str) -> Result<()>;
    /// `(client, subscribed at)` by client id, after `after`, at most `limit`.
    fn subscriptions(
        &self,
        conv: ConvId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>>;

    /// Removes a system conversation with everything that hangs off it:
    /// record, memberships and read cursors of its members, subscriptions,
    /// delivery times, queued webhook messages, broadcasts and its log.
    fn remove_system_conversation(&self, rec: &ConversationRecord) -> Result<()>;

    /// Puts clients on a conversation's blacklist or shutup list (`at_ms`
    /// is when); durable at the next `sync`, like a conversation record.
    fn put_moderation(
        &self,
        conv: ConvId,
        list: ModerationList,
        clients: &[String],
        at_ms: u64,
    ) -> Result<()>;
    fn remove_moderation(
        &self,
        conv: ConvId,
        list: ModerationList,
        clients: &[String],
    ) -> Result<()>;
    /// Both lists of a deleted conversation.
    fn remove_moderation_of(&self, conv: ConvId) -> Result<()>;
    /// Every entry of every conversation (the start-up load).
    fn moderation_lists(&self) -> Result<Vec<(ConvId, ModerationList, String)>>;
}

/// Raise-only cursors: how far each device acked, each client read, and
/// each device has been shown patches.
pub trait Cursors {
    fn device_cursor(&self, client: &str, device: &str, conv: ConvId) -> Result<u64>;
    /// Raises it to `seq`; never lowers it.
    fn set_device_cursor(&self, client: &str, device: &str, conv: ConvId, seq: u64) -> Result<()>;
    /// Moves it to `seq` only from `seq - 1`.
    fn step_device_cursor(&self, client: &str, device: &str, conv: ConvId, seq: u64) -> Result<()>;
    fn read_cursor(&self, client: &str, conv: ConvId) -> Result<u64>;
    /// Raises it to `seq`; never lowers it.
    fn set_read_cursor(&self, client: &str, conv: ConvId, seq: u64) -> Result<()>;
    /// `None` for a device never seen.
    fn patch_cursor(&self, client: &str, device: &str) -> Result<Option<u64>>;
    /// Raises it to `ms`; never lowers it.
    fn set_patch_cursor(&self, client: &str, device: &str, ms: u64) -> Result<()>;
}

/// Receipts: when each member last received and read a conversation, and
/// the receipts owed to clients that were offline.
pub trait Receipts {
    /// Raises `(delivered, read)`; returns the new pair.
    fn raise_receipt(
        &self,
        conv: ConvId,
        client: &str,
        delivered: Option<u64>,
        read: Option<u64>,
    ) -> Result<(u64, u64)>;
    /// `(0, 0)` when never.
    fn receipt(&self, conv: ConvId, client: &str) -> Result<(u64, u64)>;
    fn owe_receipt(&self, client: &str, conv: ConvId) -> Result<()>;
    /// Takes them: a second call returns none.
    fn take_owed_receipts(&self, client: &str) -> Result<Vec<ConvId>>;
}

/// The hook outbox and its dead letters. Ids only grow and are never
/// reused, in either place; a record is always in exactly one of them.
pub trait Outbox {
    /// Returns the new record's id, above every id handed out before.
    fn outbox_push(&self, rec: &OutboxRecord) -> Result<u64>;
    /// Up to `limit` records with an id above `after`, oldest first.
    fn outbox_peek_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, OutboxRecord)>>;
    /// The oldest `limit` records.
    fn outbox_peek(&self, limit: usize) -> Result<Vec<(u64, OutboxRecord)>> {
        self.outbox_peek_after(0, limit)
    }
    /// Acknowledges a delivered record; true if it was there.
    fn outbox_remove(&self, id: u64) -> Result<bool>;
    fn outbox_len(&self) -> u64;

    /// Moves record `id` to the dead letters; false when it is gone.
    fn outbox_bury(&self, id: u64, letter: &DeadLetter) -> Result<bool>;
    /// Up to `limit` dead letters with an id above `after`, oldest first.
    fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<(u64, DeadLetter)>>;
    /// Puts a dead letter back at the end of the outbox under a new id.
    fn dead_letter_retry(&self, id: u64) -> Result<Option<u64>>;
    fn dead_letter_purge(&self, id: u64) -> Result<bool>;
    fn dead_letters_len(&self) -> u64;
}

/// What [`Broadcasts::broadcasts_newest_first`] yields.
pub type BroadcastIter<'a> = Box<dyn Iterator<Item = Result<(u64, BroadcastRecord)>> + 'a>;

/// TTL'd broadcast records (their messages are in the log) and the
/// per-client cursor of the last broadcast each client has had.
pub trait Broadcasts {
    /// Stores the record under a new id, above every id handed out before
    /// (even removed ones); returns the id.
    fn put_broadcast(&self, rec: &BroadcastRecord) -> Result<u64>;
    /// The last id handed out (0 before the first).
    fn last_broadcast_id(&self) -> Result<u64>;
    fn broadcast_record(&self, id: u64) -> Result<Option<BroadcastRecord>>;
    /// Records with an id above `after`, newest first, read lazily.
    fn broadcasts_newest_first(&self, after: u64) -> BroadcastIter<'_>;
    /// The broadcast whose message is `(conv, seq)`, if it has a record.
    fn broadcast_of_message(&self, conv: ConvId, seq: u64) -> Result<Option<u64>>;
    /// True if it was there; its message stays in the log.
    fn remove_broadcast(&self, id: u64) -> Result<bool>;
    /// Ids whose `valid_till` is at or before `now_ms`, soonest first.
    fn expired_broadcasts(&self, now_ms: u64, limit: usize) -> Result<Vec<u64>>;
    /// `None` for a client never seen at a login.
    fn broadcast_cursor(&self, client: &str) -> Result<Option<u64>>;
    /// Raises each client's cursor to `id`, creating it if absent.
    fn raise_broadcast_cursors(&self, clients: &[&str], id: u64) -> Result<()>;
}

/// Everything the IM core needs from storage.
pub trait Backend:
    MessageLog + Conversations + Cursors + Receipts + Outbox + Broadcasts + Send + Sync
{
    /// Makes every write made before the call durable (a barrier, and
    /// what a graceful shutdown ends with).
    fn sync(&self) -> Result<()>;

    /// Err when a write now would be refused (checked before planning a
    /// batch, so a refusal is answered "not stored").
    fn writable(&self) -> Result<()>;
}

// ---- sled ----
//
// Each method forwards to `Store`'s inherent one (which callers use today
// and which `Store::` paths resolve to first).

impl MessageLog for Store {
    fn append(&self, batch: &LogBatch<'_>) -> Result<()> {
        self.write_checked(batch)?;
        self.sync_log()
    }
    fn last_seq(&self, conv: ConvId) -> Result<u64> {
        Store::last_seq(self, conv)
    }
    fn message(&self, conv: ConvId, seq: u64) -> Result<Option<LogEntry>> {
        Store::message(self, conv, seq)
    }
    fn last_message(&self, conv: ConvId) -> Result<Option<LogEntry>> {
        Store::last_message(self, conv)
    }
    fn messages(
        &self,
        conv: ConvId,
        lo: u64,
        hi: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<LogEntry>> {
        Store::messages(self, conv, lo, hi, limit, newest_first)
    }
    fn messages_where(
        &self,
        conv: ConvId,
        range: (u64, u64),
        limit: usize,
        newest_first: bool,
        max_scan: usize,
        keep: &mut dyn FnMut(&LogEntry) -> bool,
    ) -> Result<(Vec<LogEntry>, bool)> {
        Store::messages_where(self, conv, range, limit, newest_first, max_scan, keep)
    }
    fn seq_at_or_after(&self, conv: ConvId, ts: u64, last: u64) -> Result<u64> {
        Store::seq_at_or_after(self, conv, ts, last)
    }
    fn sent_by_token(&self, client: &str, token: &str) -> Result<Option<SentRecord>> {
        Store::sent_by_token(self, client, token)
    }
    fn patches_since(&self, after_ms: u64, limit: usize) -> Result<Vec<(u64, ConvId, u64)>> {
        Store::patches_since(self, after_ms, limit)
    }
    fn webhook_pending(&self, limit: usize) -> Result<Vec<(ConvId, u64)>> {
        Store::webhook_pending(self, limit)
    }
    fn webhook_done(&self, done: &[(ConvId, u64)]) -> Result<()> {
        Store::webhook_done(self, done)
    }
    fn set_sys_acked(&self, msgs: &[(ConvId, u64)], at_ms: u64) -> Result<()> {
        Store::set_sys_acked(self, msgs, at_ms)
    }
    fn sys_acked(&self, conv: ConvId, seq: u64) -> Result<Option<u64>> {
        Store::sys_acked(self, conv, seq)
    }
    fn remove_log(&self, conv: ConvId) -> Result<u64> {
        Store::remove_log(self, conv)
    }
}

impl Conversations for Store {
    fn put_conversation(&self, rec: &ConversationRecord) -> Result<()> {
        Store::put_conversation(self, rec)
    }
    fn remove_conversation(&self, id: ConvId) -> Result<()> {
        Store::remove_conversation(self, id)
    }
    fn conversations(&self) -> Result<Vec<ConversationRecord>> {
        Store::conversations(self)
    }
    fn unique_get(&self, members_key: &[u8; 32]) -> Result<Option<ConvId>> {
        Store::unique_get(self, members_key)
    }
    fn unique_claim(&self, members_key: &[u8; 32], conv: ConvId) -> Result<Option<ConvId>> {
        Store::unique_claim(self, members_key, conv)
    }
    fn unique_put(&self, members_key: &[u8; 32], conv: ConvId) -> Result<()> {
        Store::unique_put(self, members_key, conv)
    }
    fn unique_remove(&self, members_key: &[u8; 32]) -> Result<()> {
        Store::unique_remove(self, members_key)
    }
    fn add_membership(&self, client: &str, conv: ConvId) -> Result<()> {
        Store::add_membership(self, client, conv)
    }
    fn remove_membership(&self, client: &str, conv: ConvId) -> Result<()> {
        Store::remove_membership(self, client, conv)
    }
    fn memberships_of(&self, client: &str) -> Result<Vec<ConvId>> {
        Store::memberships_of(self, client)
    }
    fn membership_count(&self, client: &str, at_most: usize) -> Result<usize> {
        Ok(Store::membership_count(self, client, at_most))
    }
    fn put_subscription(&self, conv: ConvId, client: &str, at_ms: u64) -> Result<()> {
        Store::put_subscription(self, conv, client, at_ms)
    }
    fn remove_subscription(&self, conv: ConvId, client: &str) -> Result<()> {
        Store::remove_subscription(self, conv, client)
    }
    fn subscriptions(
        &self,
        conv: ConvId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>> {
        Store::subscriptions(self, conv, after, limit)
    }
    fn remove_system_conversation(&self, rec: &ConversationRecord) -> Result<()> {
        Store::remove_system_conversation(self, rec)
    }
    fn put_moderation(
        &self,
        conv: ConvId,
        list: ModerationList,
        clients: &[String],
        at_ms: u64,
    ) -> Result<()> {
        Store::put_moderation(self, conv, list, clients, at_ms)
    }
    fn remove_moderation(
        &self,
        conv: ConvId,
        list: ModerationList,
        clients: &[String],
    ) -> Result<()> {
        Store::remove_moderation(self, conv, list, clients)
    }
    fn remove_moderation_of(&self, conv: ConvId) -> Result<()> {
        Store::remove_moderation_of(self, conv)
    }
    fn moderation_lists(&self) -> Result<Vec<(ConvId, ModerationList, String)>> {
        Store::moderation_lists(self)
    }
}

impl Cursors for Store {
    fn device_cursor(&self, client: &str, device: &str, conv: ConvId) -> Result<u64> {
        Store::device_cursor(self, client, device, conv)
    }
    fn set_device_cursor(&self, client: &str, device: &str, conv: ConvId, seq: u64) -> Result<()> {
        Store::set_device_cursor(self, client, device, conv, seq)
    }
    fn step_device_cursor(&self, client: &str, device: &str, conv: ConvId, seq: u64) -> Result<()> {
        Store::step_device_cursor(self, client, device, conv, seq)
    }
    fn read_cursor(&self, client: &str, conv: ConvId) -> Result<u64> {
        Store::read_cursor(self, client, conv)
    }
    fn set_read_cursor(&self, client: &str, conv: ConvId, seq: u64) -> Result<()> {
        Store::set_read_cursor(self, client, conv, seq)
    }
    fn patch_cursor(&self, client: &str, device: &str) -> Result<Option<u64>> {
        Store::patch_cursor(self, client, device)
    }
    fn set_patch_cursor(&self, client: &str, device: &str, ms: u64) -> Result<()> {
        Store::set_patch_cursor(self, client, device, ms)
    }
}

impl Receipts for Store {
    fn raise_receipt(
        &self,
        conv: ConvId,
        client: &str,
        delivered: Option<u64>,
        read: Option<u64>,
    ) -> Result<(u64, u64)> {
        Store::raise_receipt(self, conv, client, delivered, read)
    }
    fn receipt(&self, conv: ConvId, client: &str) -> Result<(u64, u64)> {
        Store::receipt(self, conv, client)
    }
    fn owe_receipt(&self, client: &str, conv: ConvId) -> Result<()> {
        Store::owe_receipt(self, client, conv)
    }
    fn take_owed_receipts(&self, client: &str) -> Result<Vec<ConvId>> {
        Store::take_owed_receipts(self, client)
    }
}

impl Outbox for Store {
    fn outbox_push(&self, rec: &OutboxRecord) -> Result<u64> {
        Store::outbox_push(self, rec)
    }
    fn outbox_peek_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, OutboxRecord)>> {
        Store::outbox_peek_after(self, after, limit)
    }
    fn outbox_peek(&self, limit: usize) -> Result<Vec<(u64, OutboxRecord)>> {
        Store::outbox_peek(self, limit)
    }
    fn outbox_remove(&self, id: u64) -> Result<bool> {
        Store::outbox_remove(self, id)
    }
    fn outbox_len(&self) -> u64 {
        Store::outbox_len(self)
    }
    fn outbox_bury(&self, id: u64, letter: &DeadLetter) -> Result<bool> {
        Store::outbox_bury(self, id, letter)
    }
    fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<(u64, DeadLetter)>> {
        Store::dead_letters(self, after, limit)
    }
    fn dead_letter_retry(&self, id: u64) -> Result<Option<u64>> {
        Store::dead_letter_retry(self, id)
    }
    fn dead_letter_purge(&self, id: u64) -> Result<bool> {
        Store::dead_letter_purge(self, id)
    }
    fn dead_letters_len(&self) -> u64 {
        Store::dead_letters_len(self)
    }
}

impl Broadcasts for Store {
    fn put_broadcast(&self, rec: &BroadcastRecord) -> Result<u64> {
        Store::put_broadcast(self, rec)
    }
    fn last_broadcast_id(&self) -> Result<u64> {
        Store::last_broadcast_id(self)
    }
    fn broadcast_record(&self, id: u64) -> Result<Option<BroadcastRecord>> {
        Store::broadcast_record(self, id)
    }
    fn broadcasts_newest_first(&self, after: u64) -> BroadcastIter<'_> {
        Box::new(Store::broadcasts_newest_first(self, after))
    }
    fn broadcast_of_message(&self, conv: ConvId, seq: u64) -> Result<Option<u64>> {
        Store::broadcast_of_message(self, conv, seq)
    }
    fn remove_broadcast(&self, id: u64) -> Result<bool> {
        Store::remove_broadcast(self, id)
    }
    fn expired_broadcasts(&self, now_ms: u64, limit: usize) -> Result<Vec<u64>> {
        Store::expired_broadcasts(self, now_ms, limit)
    }
    fn broadcast_cursor(&self, client: &str) -> Result<Option<u64>> {
        Store::broadcast_cursor(self, client)
    }
    fn raise_broadcast_cursors(&self, clients: &[&str], id: u64) -> Result<()> {
        Store::raise_broadcast_cursors(self, clients.iter().copied(), id)
    }
}

impl Backend for Store {
    fn sync(&self) -> Result<()> {
        self.sync_written()
    }
    fn writable(&self) -> Result<()> {
        Store::writable(self)
    }
}
