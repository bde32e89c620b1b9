//! The commit pipeline: one thread assigns every stored message its seq,
//! writes a whole batch to the log with one flush (group commit), and only
//! then answers the senders and fans out, in seq order. One writer makes
//! per-conversation FIFO a property of the design rather than of locking.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::core::conversation::Conv;
use crate::core::outbound::{Outbound, StoredFrame};
use crate::hooks::Hooks;
use crate::metrics::METRICS;
use crate::protocol::{
    Content, ConvId, ConvKind, ErrorBody, ErrorCode, Event, Message, RECALLED_CONTENT, Reason,
    SendMessage,
};
use crate::registry::Registry;
use crate::store::{LogEntry, SentRecord, Store, TokenRecord};
use crate::util::now_ms;

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

type Reply<T> = oneshot::Sender<Result<T, ErrorBody>>;

enum Job {
    Append(Box<Draft>, Reply<Committed>),
    Patch(Box<PatchDraft>, Reply<LogEntry>),
    Barrier(Reply<()>),
    Stop,
}

impl Job {
    fn is_barrier(&self) -> bool {
        matches!(self, Job::Barrier(_) | Job::Stop)
    }
}

/// A submitted job awaiting its group flush.
pub struct Pending<T = Committed>(oneshot::Receiver<Result<T, ErrorBody>>);

impl<T> Pending<T> {
    pub async fn wait(self) -> Result<T, ErrorBody> {
        self.0.await.map_err(|_| shutting_down())?
    }
}

pub struct Pipeline {
    tx: Sender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn shutting_down() -> ErrorBody {
    ErrorBody::new(ErrorCode::ServerShutdown, "server is shutting down")
}

impl Pipeline {
    /// Must be called inside a tokio runtime: after-delivery hooks run on it.
    pub fn start(
        store: Arc<Store>,
        registry: Arc<Registry>,
        hooks: Arc<Hooks>,
        group_max: usize,
        linger: Duration,
    ) -> Self {
        let ctx = Ctx {
            store,
            registry,
            hooks,
            rt: tokio::runtime::Handle::current(),
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("tidings-commit".into())
            .spawn(move || run(rx, &ctx, group_max.max(1), linger))
            .ok();
        if thread.is_none() {
            tracing::error!("could not start the commit thread; every send will fail");
        }
        Pipeline {
            tx,
            thread: Mutex::new(thread),
        }
    }

    /// Queues a message now, in call order; the receiver resolves once it is durable.
    pub fn submit(&self, draft: Draft) -> Result<Pending, ErrorBody> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Append(Box::new(draft), tx))
            .map_err(|_| shutting_down())?;
        Ok(Pending(rx))
    }

    /// Queues a change to a stored message; resolves with the entry as
    /// stored once durable, after the change went out to online members.
    pub fn patch(&self, draft: PatchDraft) -> Result<Pending<LogEntry>, ErrorBody> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Patch(Box::new(draft), tx))
            .map_err(|_| shutting_down())?;
        Ok(Pending(rx))
    }

    /// Resolves once everything written to the store before the call is durable.
    pub async fn barrier(&self) -> Result<(), ErrorBody> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Barrier(tx))
            .map_err(|_| shutting_down())?;
        rx.await.map_err(|_| shutting_down())?
    }

    /// Finishes every job already queued, then stops the thread.
    pub fn stop(&self) {
        let _ = self.tx.send(Job::Stop);
        if let Some(t) = self.thread.lock().take()
            && t.join().is_err()
        {
            tracing::error!("commit thread panicked");
        }
    }
}

/// What the commit thread works with.
struct Ctx {
    store: Arc<Store>,
    registry: Arc<Registry>,
    hooks: Arc<Hooks>,
    rt: tokio::runtime::Handle,
}

fn run(rx: Receiver<Job>, ctx: &Ctx, group_max: usize, linger: Duration) {
    let mut jobs = Vec::with_capacity(group_max);
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        // Gather the group: whatever is queued, then whatever arrives within
        // the linger. A barrier (a conversation change) does not wait.
        let deadline = Instant::now() + linger;
        while jobs.len() < group_max {
            let next = match rx.try_recv() {
                Ok(j) => Ok(j),
                Err(_) if linger.is_zero() || jobs.iter().any(Job::is_barrier) => break,
                Err(_) => rx.recv_deadline(deadline),
            };
            match next {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let stop = commit(&mut jobs, ctx);
        if stop {
            return;
        }
    }
}

enum Outcome {
    /// Index into the batch's entries.
    New(usize),
    Duplicate(SentRecord),
    /// Same token as an earlier draft in this very batch.
    DuplicateOf(usize),
    Patched(usize),
    Failed(ErrorBody),
}

/// What goes out after the flush, in job order.
enum Notice {
    New {
        entry: usize,
        origin_conn: u64,
    },
    Patch {
        entry: usize,
        draft: Box<PatchDraft>,
    },
}

/// The batch being built: entries in log order and where each message is.
#[derive(Default)]
struct Batch {
    entries: Vec<LogEntry>,
    convs: Vec<Arc<Conv>>,
    /// (conv, seq) → index in `entries`, for patches of messages in this batch.
    at: HashMap<(ConvId, u64), usize>,
    /// Patch keys the rewrites replace.
    stale: Vec<(u64, ConvId, u64)>,
    /// Messages for the system-conversation webhook.
    inbound: Vec<(ConvId, u64)>,
}

impl Batch {
    fn push(&mut self, e: LogEntry, conv: Arc<Conv>) -> usize {
        let i = self.entries.len();
        self.at.insert((e.msg.conv, e.msg.seq), i);
        self.entries.push(e);
        self.convs.push(conv);
        i
    }
}

/// Commits one batch. Returns true when a Stop was seen.
fn commit(jobs: &mut Vec<Job>, ctx: &Ctx) -> bool {
    let store = &*ctx.store;
    let mut b = Batch::default();
    // Per conversation: its handle and the seq and timestamp assigned so far.
    let mut heads: HashMap<ConvId, (Arc<Conv>, u64, u64)> = HashMap::new();
    let mut batch_tokens: HashMap<(String, String), usize> = HashMap::new();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut notices: Vec<Notice> = Vec::new();
    let now = now_ms();

    // Refused before sled sees anything (low disk space, a failed store):
    // nothing is written, so "not stored" is the true answer.
    let refused = store.writable().err().map(ErrorBody::from);

    for job in jobs.iter_mut() {
        if let (Some(e), Job::Append(..) | Job::Patch(..)) = (&refused, &*job) {
            outcomes.push(Outcome::Failed(e.clone()));
            continue;
        }
        match job {
            Job::Append(d, _) => {
                let o = append(d, &mut b, &mut heads, &mut batch_tokens, store, now);
                if let Outcome::New(entry) = o {
                    notices.push(Notice::New {
                        entry,
                        origin_conn: d.origin_conn,
                    });
                }
                outcomes.push(o);
            }
            Job::Patch(p, _) => {
                let o = match apply_patch(p, &mut b, store, now) {
                    Ok(i) => Outcome::Patched(i),
                    Err(e) => Outcome::Failed(e),
                };
                outcomes.push(o);
            }
            Job::Barrier(_) | Job::Stop => {}
        }
    }

    let sent_of = |e: &LogEntry| SentRecord {
        conv: e.msg.conv,
        msg_id: e.msg.msg_id.clone(),
        seq: e.msg.seq,
        timestamp: e.msg.timestamp,
    };
    let tokens: Vec<TokenRecord<'_>> = batch_tokens
        .iter()
        .map(|((client, token), &i)| TokenRecord {
            client,
            token,
            sent: sent_of(&b.entries[i]),
        })
        .collect();

    // One write and one flush for the whole batch, barriers included.
    let flush_started = std::time::Instant::now();
    let nothing_new = b.entries.is_empty() && tokens.is_empty();
    let written = if nothing_new {
        Ok(())
    } else {
        store.write_unsynced(&b.entries, &tokens, &b.stale, &b.inbound)
    }
    .and_then(|()| store.sync_written())
    .map_err(|e| failed_commit(store, e));
    METRICS.flush.observe(flush_started.elapsed());
    drop(tokens);

    if written.is_ok() {
        for (conv, seq, ts) in heads.values() {
            conv.advance(*seq, *ts);
        }
    }

    let mut outcomes = outcomes.into_iter();
    let mut stop = false;
    let mut patch_replies = Vec::new();
    for job in jobs.drain(..) {
        match job {
            Job::Append(_, reply) => {
                let result = match (&written, outcomes.next()) {
                    (_, Some(Outcome::Failed(e))) => Err(e),
                    (_, Some(Outcome::Duplicate(sent))) => Ok(Committed {
                        sent,
                        duplicate: true,
                    }),
                    (Err(e), _) => Err(e.clone()),
                    (Ok(()), Some(Outcome::New(i))) => Ok(Committed {
                        sent: sent_of(&b.entries[i]),
                        duplicate: false,
                    }),
                    (Ok(()), Some(Outcome::DuplicateOf(i))) => Ok(Committed {
                        sent: sent_of(&b.entries[i]),
                        duplicate: true,
                    }),
                    (Ok(()), _) => Err(ErrorBody::new(ErrorCode::InternalError, "lost outcome")),
                };
                let _ = reply.send(result);
            }
            Job::Patch(draft, reply) => match (&written, outcomes.next()) {
                (_, Some(Outcome::Failed(e))) => {
                    let _ = reply.send(Err(e));
                }
                (Err(e), _) => {
                    let _ = reply.send(Err(e.clone()));
                }
                (Ok(()), Some(Outcome::Patched(entry))) => {
                    // Answered after its event went out, so an editor that
                    // then reads history or waits on peers sees it settled.
                    patch_replies.push((entry, reply));
                    notices.push(Notice::Patch { entry, draft });
                }
                (Ok(()), _) => {
                    let _ = reply.send(Err(ErrorBody::new(
                        ErrorCode::InternalError,
                        "lost outcome",
                    )));
                }
            },
            Job::Barrier(reply) => {
                let _ = reply.send(written.clone());
            }
            Job::Stop => stop = true,
        }
    }

    if written.is_ok() {
        // Appends first (in job order), then patches: a patch never touches
        // a message appended in its own batch, whose id nobody knew yet.
        notices.sort_by_key(|n| matches!(n, Notice::Patch { .. }));
        for n in notices {
            match n {
                Notice::New { entry, origin_conn } => {
                    fan_out(ctx, &b.convs[entry], &b.entries[entry], origin_conn)
                }
                Notice::Patch { entry, draft } => fan_out_patch(ctx, &b.entries[entry], &draft),
            }
        }
        for (entry, reply) in patch_replies {
            let _ = reply.send(Ok(b.entries[entry].clone()));
        }
    }
    stop
}

/// What a failed write or flush means for the batch's senders.
///
/// A refusal came before sled saw anything: "not stored" (4200) is true.
/// Any other error leaves the batch in an unknown state (applied in memory,
/// maybe on disk, maybe back after a restart), and its sequence numbers may
/// be on disk: the store is marked failed, so nothing is written after it
/// and no seq is handed out twice, and the senders hear that the outcome is
/// unknown (4202) rather than a false "not stored". The server then stops;
/// a resend with the same token after the restart answers either the
/// stored message or a new one, never another client's.
fn failed_commit(store: &Store, e: crate::store::StoreError) -> ErrorBody {
    if e.is_refusal() {
        return ErrorBody::from(e);
    }
    store.fail(format!("commit: {e}"));
    ErrorBody::new(
        ErrorCode::ServerShutdown,
        "the store failed while writing this message, which may or may not be stored; \
         the server restarts: reconnect and resend with the same token",
    )
}

/// Assigns a draft its seq and adds it to the batch (or finds its token).
fn append(
    d: &mut Draft,
    b: &mut Batch,
    heads: &mut HashMap<ConvId, (Arc<Conv>, u64, u64)>,
    batch_tokens: &mut HashMap<(String, String), usize>,
    store: &Store,
    now: u64,
) -> Outcome {
    if d.conv.is_deleted() {
        return Outcome::Failed(ErrorBody::new(
            ErrorCode::ConvNotFound,
            format!("conversation {} was deleted", d.conv.id),
        ));
    }
    if let Some(tok) = &d.send.token {
        if let Some(&i) = batch_tokens.get(&(d.from.clone(), tok.clone())) {
            return Outcome::DuplicateOf(i);
        }
        match store.sent_by_token(&d.from, tok) {
            Ok(Some(rec)) => return Outcome::Duplicate(rec),
            Ok(None) => {}
            Err(e) => return Outcome::Failed(e.into()),
        }
    }
    let head = heads
        .entry(d.conv.id)
        .or_insert_with(|| (d.conv.clone(), d.conv.last_seq(), d.conv.last_ts()));
    head.1 += 1;
    head.2 = head.2.max(now);
    let (seq, timestamp) = (head.1, head.2);
    // Receipts exist only between two members (LeanCloud's rule).
    let receipt = d.send.receipt && d.conv.state.read().audience_len() <= 2;
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
    let i = b.push(entry, d.conv.clone());
    if d.inbound {
        b.inbound.push((d.conv.id, seq));
    }
    if let Some(tok) = &s.token {
        batch_tokens.insert((d.from.clone(), tok.clone()), i);
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
fn apply_patch(p: &PatchDraft, b: &mut Batch, store: &Store, now: u64) -> Result<usize, ErrorBody> {
    if p.conv.is_deleted() {
        return Err(ErrorBody::new(
            ErrorCode::ConvNotFound,
            format!("conversation {} was deleted", p.conv.id),
        ));
    }
    let i = match b.at.get(&(p.conv.id, p.seq)) {
        Some(&i) => i,
        None => {
            let e = store
                .message(p.conv.id, p.seq)?
                .ok_or_else(|| not_found(p, "no such message"))?;
            if let Some(at) = e.msg.updated_at {
                b.stale.push((at, p.conv.id, p.seq));
            }
            b.push(e, p.conv.clone())
        }
    };
    let e = &mut b.entries[i];
    if e.deleted {
        return Err(not_found(p, "it was deleted"));
    }
    if p.change != Change::Delete && e.msg.recalled {
        return Err(not_found(p, "it was recalled"));
    }
    if p.sender_only && e.msg.from != p.by {
        return Err(ErrorBody::new(
            ErrorCode::OwnershipRequired,
            "only the sender may change a message",
        ));
    }
    // Strictly increasing per message, so its patch key moves forward.
    let at = now.max(e.msg.updated_at.map_or(0, |t| t + 1));
    let m = &mut e.msg;
    match &p.change {
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
    e.reason = p.reason.clone();
    e.patched_by = Some(p.by.clone());
    Ok(i)
}

/// The message as each receiver should see it: at most two variants, those
/// it mentions and the rest, so a send to 500 members encodes two frames.
pub fn per_receiver<'a>(audience: &[&'a str], msg: &Message) -> Vec<(Vec<&'a str>, Message)> {
    if msg.mention_all || msg.mention_list.is_empty() {
        let m = msg.clone().for_receiver("");
        return vec![(audience.to_vec(), m)];
    }
    let (named, rest): (Vec<&str>, Vec<&str>) = audience
        .iter()
        .partition(|a| msg.mention_list.iter().any(|m| m == *a));
    let mut out = Vec::with_capacity(2);
    if let Some(first) = named.first() {
        let m = msg.clone().for_receiver(first);
        out.push((named, m));
    }
    if !rest.is_empty() {
        out.push((rest, msg.clone().for_receiver("")));
    }
    out
}

/// Who receives a conversation's traffic now: members (online room members
/// for chat rooms), narrowed to `to_peers` when a hook chose; the sender
/// always. In a system conversation clients write to the app, not to each
/// other: a message reaches only the sender and whom the app named in
/// `to_peers` (the first list).
fn audience_of<'a>(
    st: &'a crate::core::conversation::ConvState,
    from: &'a str,
    to_peers: &[&'a Option<Vec<String>>],
) -> Vec<&'a str> {
    let all: Vec<&str> = match st.rec.kind {
        ConvKind::System => std::iter::once(from)
            .chain(
                to_peers
                    .first()
                    .and_then(|tp| tp.as_ref())
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            )
            .collect(),
        ConvKind::ChatRoom => st.room.iter().map(String::as_str).collect(),
        ConvKind::Normal => st.rec.members.iter().map(String::as_str).collect(),
    };
    all.into_iter()
        .filter(|a| {
            *a == from
                || to_peers
                    .iter()
                    .all(|tp| tp.as_ref().is_none_or(|p| p.iter().any(|p| p == a)))
        })
        .collect()
}

/// Hands a durable message to every online device of its audience, except the
/// connection that sent it.
fn fan_out(ctx: &Ctx, conv: &Conv, entry: &LogEntry, origin_conn: u64) {
    METRICS.messages_in(1);
    let (conv_id, seq) = (entry.msg.conv, entry.msg.seq);
    let st = conv.state.read();
    let kind = st.rec.kind;
    let audience = audience_of(&st, &entry.msg.from, &[&entry.to_peers]);
    if kind != ConvKind::System {
        super::hooks::delivered(
            &ctx.hooks,
            &ctx.registry,
            &ctx.rt,
            kind,
            &entry.msg,
            &entry.from_ip,
            &audience,
        );
    }
    let receipt = entry
        .msg
        .receipt
        .then(|| Arc::new((entry.msg.from.clone(), entry.msg.timestamp)));
    for (group, msg) in per_receiver(&audience, &entry.msg) {
        let Some(frame) = crate::wire::frame::event(Event::Message {
            msg,
            redelivered: false,
        }) else {
            continue;
        };
        let out = Outbound::Message(Arc::new(StoredFrame {
            conv: conv_id,
            seq,
            frame,
            receipt: receipt.clone(),
        }));
        ctx.registry.send_to(group, Some(origin_conn), &out);
    }
    METRICS.delivered(entry.msg.timestamp);
}

/// Tells online members about an edit, recall or delete.
fn fan_out_patch(ctx: &Ctx, entry: &LogEntry, p: &PatchDraft) {
    let st = p.conv.state.read();
    let audience = audience_of(&st, &entry.msg.from, &[&entry.to_peers, &p.to_peers]);
    let groups = if entry.deleted {
        vec![(audience, entry.msg.clone())]
    } else {
        per_receiver(&audience, &entry.msg)
    };
    for (group, msg) in groups {
        let ev = match &p.change {
            Change::Edit { .. } => Event::MessageUpdated {
                msg,
                reason: p.reason.clone(),
            },
            Change::Recall => Event::MessageRecalled {
                msg,
                reason: p.reason.clone(),
            },
            Change::Delete => Event::MessageDeleted {
                conv: msg.conv,
                msg_id: msg.msg_id,
                seq: msg.seq,
                by: p.by.clone(),
            },
        };
        if let Some(f) = crate::wire::frame::event(ev) {
            ctx.registry
                .send_to(group, Some(p.origin_conn), &Outbound::frame(f));
        }
    }
}
