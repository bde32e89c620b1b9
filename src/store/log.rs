//! The message log: messages, idempotency tokens, the patch index and the
//! system webhook queue, all in the `log` tree so that one sled batch
//! (atomic within a tree) writes a message with its token and index keys.

use std::collections::HashMap;

use super::api::{Head, LogBatch};
use super::tables::Tree;
use super::{LogEntry, Result, SentRecord, Store, StoreError, TokenRecord, health, keys, wal};
use crate::protocol::ConvId;
use crate::wire::codec;

impl Store {
    /// Writes messages and their indexes in one atomic batch, then makes them durable.
    pub fn append(&self, entries: &[LogEntry], tokens: &[TokenRecord<'_>]) -> Result<()> {
        self.append_unsynced(entries, tokens)?;
        self.sync_log()
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
        self.write_batch(
            None,
            &LogBatch {
                heads: &[],
                entries,
                tokens,
                stale_patches,
                for_webhook,
            },
        )
    }

    /// [`Store::write_unsynced`] with the seq check of
    /// [`MessageLog::append`](super::MessageLog::append): refused whole,
    /// before sled sees it, when a head moved or new seqs leave a gap.
    pub fn write_checked(&self, batch: &LogBatch<'_>) -> Result<()> {
        self.write_batch(Some(batch.heads), batch)
    }

    /// The one write of the log. The check and the batch run under the
    /// `heads` lock, so no other append lands between them; the lock is
    /// uncontended with one commit thread, and the check reads memory
    /// (sled only the first time a conversation is seen).
    fn write_batch(&self, checked: Option<&[Head]>, b: &LogBatch<'_>) -> Result<()> {
        self.guard.not_failed()?;
        self.guard.faults.check(health::Step::Write)?;
        // sled takes these key by key: messages before the keys that point
        // at them, so a reader that finds a token, a webhook key or a patch
        // key finds its message. Stale patch keys go first, as a new one
        // can be the same key (two edits in one millisecond).
        let mut w = wal::Record::default();
        for &(at, conv, seq) in b.stale_patches {
            w.del(&keys::patch(at, conv, seq));
        }
        for e in b.entries {
            w.put(&keys::message(e.msg.conv, e.msg.seq), &codec::encode(e)?);
            if let Some(at) = e.msg.updated_at {
                w.put(&keys::patch(at, e.msg.conv, e.msg.seq), &[]);
            }
        }
        for t in b.tokens {
            w.put(&keys::token(t.client, t.token), &codec::encode(&t.sent)?);
        }
        for &(conv, seq) in b.for_webhook {
            w.put(&keys::webhook(conv, seq), &[]);
        }
        let mut known = self.heads.lock();
        let planned = match checked {
            Some(heads) => Some(self.check_seqs(&mut known, heads, b.entries)?),
            None => None,
        };
        if let Err(e) = self.apply_log(w) {
            // Unknown what landed: read these heads from sled next time.
            for e in b.entries {
                known.remove(&e.msg.conv);
            }
            return Err(e);
        }
        match planned {
            Some(planned) => {
                for (conv, (_, next)) in planned {
                    known.insert(conv, next - 1);
                }
            }
            // An unchecked write keeps the heads already known in step.
            None if !known.is_empty() => {
                for e in b.entries {
                    if let Some(last) = known.get_mut(&e.msg.conv) {
                        *last = (*last).max(e.msg.seq);
                    }
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Checks a batch against the log's heads: per conversation, `(the head
    /// planned from, the next seq a new message must have)` once every
    /// entry passed. An entry at or below its conversation's head rewrites
    /// a stored message; one above must be the next seq, and needs a head.
    pub(super) fn check_seqs(
        &self,
        known: &mut HashMap<ConvId, u64>,
        heads: &[Head],
        entries: &[LogEntry],
    ) -> Result<HashMap<ConvId, (u64, u64)>> {
        let mut planned: HashMap<ConvId, (u64, u64)> = HashMap::with_capacity(heads.len());
        for h in heads {
            let found = self.stored_last(known, h.conv)?;
            if found != h.last_seq {
                return Err(StoreError::SeqMoved {
                    conv: h.conv,
                    expected: h.last_seq,
                    found,
                });
            }
            planned.insert(h.conv, (found, found + 1));
        }
        for e in entries {
            let (conv, seq) = (e.msg.conv, e.msg.seq);
            let last = match planned.get_mut(&conv) {
                Some((head, next)) if seq > *head => {
                    if seq != *next {
                        return Err(StoreError::SeqGap {
                            conv,
                            want: *next,
                            got: seq,
                        });
                    }
                    *next += 1;
                    continue;
                }
                Some((head, _)) => *head,
                None => self.stored_last(known, conv)?,
            };
            if seq == 0 || seq > last {
                return Err(StoreError::SeqGap {
                    conv,
                    want: last + 1,
                    got: seq,
                });
            }
        }
        Ok(planned)
    }

    /// The seq of `conv`'s newest message in the log, from memory once seen.
    fn stored_last(&self, known: &mut HashMap<ConvId, u64>, conv: ConvId) -> Result<u64> {
        if let Some(&last) = known.get(&conv) {
            return Ok(last);
        }
        let last = self.last_message_seq(conv)?.unwrap_or(0);
        known.insert(conv, last);
        Ok(last)
    }

    /// The seq of `conv`'s newest message (0 for none): what an append to
    /// it plans from.
    pub fn last_seq(&self, conv: ConvId) -> Result<u64> {
        let mut known = self.heads.lock();
        self.stored_last(&mut known, conv)
    }

    pub fn message(&self, conv: ConvId, seq: u64) -> Result<Option<LogEntry>> {
        self.guard.faults.check(health::Step::MessageRead)?;
        self.read_conv(conv, || {
            match self.trees[Tree::Log].get(keys::message(conv, seq))? {
                None => Ok(None),
                Some(v) => Ok(Some(codec::decode(&v)?)),
            }
        })
    }

    /// The newest stored message of `conv`.
    pub fn last_message(&self, conv: ConvId) -> Result<Option<LogEntry>> {
        self.read_conv(conv, || {
            match self.trees[Tree::Log]
                .scan_prefix(keys::message_prefix(conv))
                .next_back()
            {
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
        let range = self.trees[Tree::Log].range(keys::message(conv, lo)..=keys::message(conv, hi));
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
        mut keep: impl FnMut(&LogEntry) -> bool,
    ) -> Result<(Vec<LogEntry>, bool)> {
        if lo > hi || limit == 0 {
            return Ok((Vec::new(), false));
        }
        let range = self.trees[Tree::Log].range(keys::message(conv, lo)..=keys::message(conv, hi));
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
        self.trees[Tree::Log]
            .range(start.to_vec()..)
            .keys()
            .take_while(|k| k.as_ref().map_or(true, |k| k.starts_with(keys::PATCHES)))
            .take(limit)
            .map(|k| {
                keys::read_patch(&k?).ok_or(StoreError::Corrupt {
                    tree: Tree::Log.name(),
                })
            })
            .collect()
    }

    /// Messages waiting for the system-conversation webhook, oldest first
    /// per conversation, at most `limit`.
    pub fn webhook_pending(&self, limit: usize) -> Result<Vec<(ConvId, u64)>> {
        self.trees[Tree::Log]
            .scan_prefix(keys::WEBHOOK_QUEUE)
            .keys()
            .take(limit)
            .map(|k| {
                keys::read_webhook(&k?).ok_or(StoreError::Corrupt {
                    tree: Tree::Log.name(),
                })
            })
            .collect()
    }

    /// Takes messages off the webhook queue (delivered, or given up on).
    pub fn webhook_done(&self, done: &[(ConvId, u64)]) -> Result<()> {
        let mut w = wal::Record::default();
        for &(conv, seq) in done {
            w.del(&keys::webhook(conv, seq));
        }
        self.apply_log(w)
    }

    /// Removes every message record of `conv` (after a conversation delete).
    pub fn remove_log(&self, conv: ConvId) -> Result<u64> {
        // Held throughout, so no append lands between the removal and
        // forgetting the head.
        let mut known = self.heads.lock();
        known.remove(&conv);
        self.clear_log_prefix(&keys::message_prefix(conv))
    }

    /// Removes every `log` key under `prefix`, 1000 to a batch, each
    /// durable in the write-ahead log (`wal`).
    pub(super) fn clear_log_prefix(&self, prefix: &[u8]) -> Result<u64> {
        let mut n = 0;
        loop {
            let mut w = wal::Record::default();
            for k in self.trees[Tree::Log].scan_prefix(prefix).keys().take(1000) {
                w.del(&k?);
            }
            if w.is_empty() {
                return Ok(n);
            }
            n += w.len();
            self.apply_log(w)?;
        }
    }

    /// The one way to write the `log` tree: the write-ahead log, then sled,
    /// in one order (`wal`). Durable when it returns. A failure fails the
    /// store: the batch may be in the log and not in sled.
    fn apply_log(&self, mut w: wal::Record) -> Result<()> {
        self.guard.not_failed()?;
        let tree = &self.trees[Tree::Log];
        self.wal
            .commit(&mut w, |w| super::apply_ops(tree, w.ops()))
            .inspect_err(|e| self.guard.fail(format!("log write: {e}")))
    }

    /// The smallest seq whose timestamp is `>= ts` (timestamps never decrease
    /// along a conversation), or `last + 1` if none.
    pub fn seq_at_or_after(&self, conv: ConvId, ts: u64, last: u64) -> Result<u64> {
        let (mut lo, mut hi) = (1u64, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = self.trees[Tree::Log]
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
        match self.trees[Tree::Log].get(keys::token(client, token))? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode(&v)?)),
        }
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
        let range = self.trees[Tree::Log].range(keys::message(conv, lo)..=keys::message(conv, hi));
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
}
