//! Ordering: how a batch of sends and patches becomes log entries. Every
//! stored message gets the next seq of its conversation and a timestamp
//! that never goes backwards; idempotency tokens answer a resend with the
//! first answer; edits, recalls and deletes rewrite a message under the
//! rules below.
//!
//! This is the commit thread's decision half, kept apart from its I/O
//! (`pipeline::commit`): the shell reads what the store knows about the
//! batch (the tokens it names, the rows it patches) and passes it in with
//! `now`, and gets back the entries to write and the answers to give once
//! they are durable. So the rules run on a virtual clock in unit tests.

use std::collections::HashMap;
use std::sync::Arc;

use crate::core::conversation::Conv;
use crate::core::receipts;
use crate::protocol::{
    Content, ConvId, ErrorBody, ErrorCode, Message, RECALLED_CONTENT, Reason, SendMessage,
};
use crate::store::{LogEntry, SentRecord};

/// A message on its way into the log.
pub struct Draft {
    pub conv: Arc<Conv>,
    pub send: SendMessage,
    pub from: String,
    pub origin_device: String,
    pub origin_conn: u64,
    pub from_ip: String,
    /// Receivers chosen by `_messageReceived` (or the app, for a system
    /// conversation); `None` is every member.
    pub to_peers: Option<Vec<String>>,
    /// A client writing to a system conversation: the message also goes to
    /// the app's webhook (issue #6).
    pub inbound: bool,
}

/// The answer to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub sent: SentRecord,
    pub duplicate: bool,
}

/// What a patch does to a stored message.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Edit {
        content: Content,
        mention_list: Vec<String>,
        mention_all: bool,
    },
    /// The content becomes [`RECALLED_CONTENT`].
    Recall,
    /// Out of history for everyone; a content-less tombstone stays.
    Delete,
}

/// A change to a stored message on its way into the log.
pub struct PatchDraft {
    pub conv: Arc<Conv>,
    pub seq: u64,
    pub change: Change,
    pub by: String,
    /// Only the message's sender may make it (edit, recall).
    pub sender_only: bool,
    pub origin_conn: u64,
    pub reason: Option<Reason>,
    /// Receivers of the event chosen by `_messageUpdate`; `None` is everyone
    /// the message reached.
    pub to_peers: Option<Vec<String>>,
}

/// What the store said when asked; the planner never asks it itself.
pub type Fact<T> = Result<Option<T>, ErrorBody>;

/// One job of a batch, with what the store knows about it.
// Made per job and consumed at once, never stored: boxing the row would
// cost an allocation per patch for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Step<'a> {
    Append {
        /// Its content, mentions and push data move into the entry.
        draft: &'a mut Draft,
        /// The first answer stored under the draft's token, if it has one
        /// and the shell looked it up. An unread token counts as new.
        stored: Option<Fact<SentRecord>>,
    },
    Patch {
        draft: &'a PatchDraft,
        /// The patched row as stored. Unused when the message was appended
        /// earlier in the same batch; `None` reads as "no such message".
        row: Option<Fact<LogEntry>>,
    },
    /// A barrier or stop: nothing to plan, but it keeps its place.
    Other,
}

/// What became of one append or patch, in step order.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Index into the plan's entries.
    New(usize),
    /// The token was already stored: the first answer again.
    Duplicate(SentRecord),
    /// Same token as an earlier draft in this very batch.
    DuplicateOf(usize),
    /// Index of the rewritten entry.
    Patched(usize),
    Failed(ErrorBody),
}

/// A new message to hand out after the flush, in step order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    pub entry: usize,
    /// The connection that sent it, which does not get it back.
    pub origin_conn: u64,
}

/// A batch, planned: what to write, and what to answer once it is durable.
#[derive(Default)]
pub struct Plan {
    /// In log order: new messages and rewritten rows.
    pub entries: Vec<LogEntry>,
    /// Each entry's conversation.
    pub convs: Vec<Arc<Conv>>,
    /// Patch keys the rewrites replace: (old updated_at, conv, seq).
    pub stale: Vec<(u64, ConvId, u64)>,
    /// Messages for the system-conversation webhook.
    pub inbound: Vec<(ConvId, u64)>,
    /// New tokens: (client, token) → the entry they answer.
    pub tokens: HashMap<(String, String), usize>,
    /// Per conversation: its handle and its last seq and timestamp after
    /// this batch, to `advance` once the batch is durable.
    pub heads: HashMap<ConvId, (Arc<Conv>, u64, u64)>,
    /// One per append or patch step, in step order.
    pub outcomes: Vec<Outcome>,
    /// The new messages, in step order.
    pub notices: Vec<Notice>,
    /// (conv, seq) → index in `entries`, for patches of messages in this batch.
    at: HashMap<(ConvId, u64), usize>,
}

impl Plan {
    fn push(&mut self, e: LogEntry, conv: Arc<Conv>) -> usize {
        let i = self.entries.len();
        self.at.insert((e.msg.conv, e.msg.seq), i);
        self.entries.push(e);
        self.convs.push(conv);
        i
    }

    /// The answer a sender gets for `entry`.
    pub fn sent(&self, entry: usize) -> SentRecord {
        sent_of(&self.entries[entry])
    }

    /// The answer to an append, once the write came back: `written` is
    /// the write and flush, `outcome` what the plan said about the append.
    pub fn answer(
        &self,
        written: &Result<(), ErrorBody>,
        outcome: Option<Outcome>,
    ) -> Result<Committed, ErrorBody> {
        match (written, outcome) {
            (_, Some(Outcome::Failed(e))) => Err(e),
            (_, Some(Outcome::Duplicate(sent))) => Ok(Committed {
                sent,
                duplicate: true,
            }),
            (Err(e), _) => Err(e.clone()),
            (Ok(()), Some(Outcome::New(i))) => Ok(Committed {
                sent: self.sent(i),
                duplicate: false,
            }),
            (Ok(()), Some(Outcome::DuplicateOf(i))) => Ok(Committed {
                sent: self.sent(i),
                duplicate: true,
            }),
            (Ok(()), _) => Err(lost_outcome()),
        }
    }
}

/// The id, seq and time a sender is answered with.
pub fn sent_of(e: &LogEntry) -> SentRecord {
    SentRecord {
        conv: e.msg.conv,
        msg_id: e.msg.msg_id.clone(),
        seq: e.msg.seq,
        timestamp: e.msg.timestamp,
    }
}

/// An answer that matches no outcome: a bug, reported rather than panicking.
pub fn lost_outcome() -> ErrorBody {
    ErrorBody::new(ErrorCode::InternalError, "lost outcome")
}

/// Plans a batch. `refused` is the store's refusal of any write (low disk
/// space, a failed store): every append and patch fails with it, since
/// nothing will be written. `now_ms` is the batch's one clock reading.
pub fn plan<'a>(
    steps: impl IntoIterator<Item = Step<'a>>,
    refused: Option<&ErrorBody>,
    now_ms: u64,
) -> Plan {
    let mut p = Plan::default();
    for step in steps {
        if let (Some(e), Step::Append { .. } | Step::Patch { .. }) = (refused, &step) {
            p.outcomes.push(Outcome::Failed(e.clone()));
            continue;
        }
        match step {
            Step::Append { draft, stored } => {
                let o = append(draft, stored, &mut p, now_ms);
                if let Outcome::New(entry) = o {
                    p.notices.push(Notice {
                        entry,
                        origin_conn: draft.origin_conn,
                    });
                }
                p.outcomes.push(o);
            }
            Step::Patch { draft, row } => {
                let o = match patch(draft, row, &mut p, now_ms) {
                    Ok(i) => Outcome::Patched(i),
                    Err(e) => Outcome::Failed(e),
                };
                p.outcomes.push(o);
            }
            Step::Other => {}
        }
    }
    p
}

fn deleted(conv: ConvId) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::ConvNotFound,
        format!("conversation {conv} was deleted"),
    )
}

/// Assigns a draft its seq and adds it to the batch (or finds its token).
fn append(d: &mut Draft, stored: Option<Fact<SentRecord>>, p: &mut Plan, now: u64) -> Outcome {
    if d.conv.is_deleted() {
        return Outcome::Failed(deleted(d.conv.id));
    }
    if let Some(tok) = &d.send.token {
        if let Some(&i) = p.tokens.get(&(d.from.clone(), tok.clone())) {
            return Outcome::DuplicateOf(i);
        }
        match stored {
            Some(Ok(Some(rec))) => return Outcome::Duplicate(rec),
            Some(Err(e)) => return Outcome::Failed(e),
            Some(Ok(None)) | None => {}
        }
    }
    let head = p
        .heads
        .entry(d.conv.id)
        .or_insert_with(|| (d.conv.clone(), d.conv.last_seq(), d.conv.last_ts()));
    head.1 += 1;
    // Never backwards, even when the wall clock is.
    head.2 = head.2.max(now);
    let (seq, timestamp) = (head.1, head.2);
    let receipt = receipts::wanted(d.send.receipt, &d.conv.state.read());
    let s = &mut d.send;
    let msg = Message {
        mention_list: std::mem::take(&mut s.mention_list),
        mention_all: s.mention_all,
        receipt,
        push_data: s.push_data.take(),
        ..Message::new(
            d.conv.id,
            seq,
            d.from.clone(),
            timestamp,
            std::mem::replace(&mut s.content, Content::Text(String::new())),
        )
    };
    let entry = LogEntry {
        to_peers: d.to_peers.take(),
        ..LogEntry::new(
            msg,
            std::mem::take(&mut d.origin_device),
            std::mem::take(&mut d.from_ip),
        )
    };
    let i = p.push(entry, d.conv.clone());
    if d.inbound {
        p.inbound.push((d.conv.id, seq));
    }
    if let Some(tok) = &s.token {
        p.tokens.insert((d.from.clone(), tok.clone()), i);
    }
    Outcome::New(i)
}

fn not_found(p: &PatchDraft, why: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::MessageNotFound,
        format!(
            "{} in {}: {why}",
            crate::protocol::msg_id(p.conv.id, p.seq),
            p.conv.id
        ),
    )
}

/// Rewrites a stored (or just batched) message; checks again what the
/// caller checked, since the message may have changed while it waited.
fn patch(
    d: &PatchDraft,
    row: Option<Fact<LogEntry>>,
    p: &mut Plan,
    now: u64,
) -> Result<usize, ErrorBody> {
    if d.conv.is_deleted() {
        return Err(deleted(d.conv.id));
    }
    let i = match p.at.get(&(d.conv.id, d.seq)) {
        Some(&i) => i,
        None => {
            let e = row
                .unwrap_or(Ok(None))?
                .ok_or_else(|| not_found(d, "no such message"))?;
            if let Some(at) = e.msg.updated_at {
                p.stale.push((at, d.conv.id, d.seq));
            }
            p.push(e, d.conv.clone())
        }
    };
    let e = &mut p.entries[i];
    if e.deleted {
        return Err(not_found(d, "it was deleted"));
    }
    if d.change != Change::Delete && e.msg.recalled {
        return Err(not_found(d, "it was recalled"));
    }
    if d.sender_only && e.msg.from != d.by {
        return Err(ErrorBody::new(
            ErrorCode::OwnershipRequired,
            "only the sender may change a message",
        ));
    }
    // Strictly increasing per message, so its patch key moves forward.
    let at = now.max(e.msg.updated_at.map_or(0, |t| t + 1));
    let m = &mut e.msg;
    match &d.change {
        Change::Edit {
            content,
            mention_list,
            mention_all,
        } => {
            m.content = content.clone();
            m.mention_list = mention_list.clone();
            m.mention_all = *mention_all;
        }
        Change::Recall => {
            m.content = Content::Text(RECALLED_CONTENT.to_owned());
            m.recalled = true;
            m.mention_list.clear();
            m.mention_all = false;
        }
        Change::Delete => {
            m.content = Content::Text(String::new());
            m.mention_list.clear();
            m.mention_all = false;
            m.push_data = None;
            e.deleted = true;
        }
    }
    e.msg.updated_at = Some(at);
    e.reason = d.reason.clone();
    e.patched_by = Some(d.by.clone());
    Ok(i)
}

#[cfg(test)]
mod tests;
