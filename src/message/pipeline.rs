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

use crate::conversation::Conv;
use crate::hooks::Hooks;
use crate::hub::event_frame;
use crate::protocol::{ConvId, ConvKind, ErrorBody, ErrorCode, Event, Message, SendMessage};
use crate::session::registry::{Outbound, Registry};
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
    /// Receivers chosen by `_messageReceived`; `None` is every member.
    pub to_peers: Option<Vec<String>>,
}

/// The answer to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub sent: SentRecord,
    pub duplicate: bool,
}

type Reply<T> = oneshot::Sender<Result<T, ErrorBody>>;

enum Job {
    Append(Box<Draft>, Reply<Committed>),
    Barrier(Reply<()>),
    Stop,
}

impl Job {
    fn is_barrier(&self) -> bool {
        !matches!(self, Job::Append(..))
    }
}

/// A submitted message awaiting its group flush.
pub struct Pending(oneshot::Receiver<Result<Committed, ErrorBody>>);

impl Pending {
    pub async fn wait(self) -> Result<Committed, ErrorBody> {
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
    Failed(ErrorBody),
}

/// Commits one batch. Returns true when a Stop was seen.
fn commit(jobs: &mut Vec<Job>, ctx: &Ctx) -> bool {
    let store = &*ctx.store;
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut convs: Vec<Arc<Conv>> = Vec::new();
    let mut origin_conns: Vec<u64> = Vec::new();
    // Per conversation: its handle and the seq and timestamp assigned so far.
    let mut heads: HashMap<ConvId, (Arc<Conv>, u64, u64)> = HashMap::new();
    let mut batch_tokens: HashMap<(String, String), usize> = HashMap::new();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let now = now_ms();

    for job in jobs.iter_mut() {
        let Job::Append(d, _) = job else { continue };
        if let Some(tok) = &d.send.token {
            if let Some(&i) = batch_tokens.get(&(d.from.clone(), tok.clone())) {
                outcomes.push(Outcome::DuplicateOf(i));
                continue;
            }
            match store.sent_by_token(&d.from, tok) {
                Ok(Some(rec)) => {
                    outcomes.push(Outcome::Duplicate(rec));
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    outcomes.push(Outcome::Failed(e.into()));
                    continue;
                }
            }
        }
        let head = heads
            .entry(d.conv.id)
            .or_insert_with(|| (d.conv.clone(), d.conv.last_seq(), d.conv.last_ts()));
        head.1 += 1;
        head.2 = head.2.max(now);
        let (seq, timestamp) = (head.1, head.2);
        let s = &mut d.send;
        let msg = Message {
            conv: d.conv.id,
            msg_id: crate::protocol::msg_id(d.conv.id, seq),
            seq,
            from: d.from.clone(),
            timestamp,
            content: std::mem::replace(
                &mut s.content,
                crate::protocol::Content::Text(String::new()),
            ),
            mention_list: std::mem::take(&mut s.mention_list),
            mention_all: s.mention_all,
            receipt: s.receipt,
            transient: false,
            will: s.will,
            push_data: s.push_data.take(),
        };
        if let Some(tok) = &s.token {
            batch_tokens.insert((d.from.clone(), tok.clone()), entries.len());
        }
        outcomes.push(Outcome::New(entries.len()));
        entries.push(LogEntry {
            msg,
            origin_device: std::mem::take(&mut d.origin_device),
            from_ip: std::mem::take(&mut d.from_ip),
            to_peers: d.to_peers.take(),
        });
        convs.push(d.conv.clone());
        origin_conns.push(d.origin_conn);
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
            sent: sent_of(&entries[i]),
        })
        .collect();

    // One write and one flush for the whole batch, barriers included.
    let written = store
        .append_unsynced(&entries, &tokens)
        .and_then(|()| store.flush_durable())
        .map_err(ErrorBody::from);
    drop(tokens);

    if written.is_ok() {
        for (conv, seq, ts) in heads.values() {
            conv.advance(*seq, *ts);
        }
    }

    let mut outcomes = outcomes.into_iter();
    let mut stop = false;
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
                        sent: sent_of(&entries[i]),
                        duplicate: false,
                    }),
                    (Ok(()), Some(Outcome::DuplicateOf(i))) => Ok(Committed {
                        sent: sent_of(&entries[i]),
                        duplicate: true,
                    }),
                    (Ok(()), None) => Err(ErrorBody::new(ErrorCode::InternalError, "lost outcome")),
                };
                let _ = reply.send(result);
            }
            Job::Barrier(reply) => {
                let _ = reply.send(written.clone());
            }
            Job::Stop => stop = true,
        }
    }

    if written.is_ok() {
        for ((entry, conv), origin) in entries.into_iter().zip(&convs).zip(origin_conns) {
            fan_out(ctx, conv, entry, origin);
        }
    }
    stop
}

/// Hands a durable message to every online device of its audience, except the
/// connection that sent it.
fn fan_out(ctx: &Ctx, conv: &Conv, entry: LogEntry, origin_conn: u64) {
    let (conv_id, seq) = (entry.msg.conv, entry.msg.seq);
    let from = entry.msg.from.clone();
    let st = conv.state.read();
    let kind = st.rec.kind;
    // A client's message to a system conversation is for the app, not the
    // other subscribers; only the sender's other devices see it.
    let audience: Vec<&str> = match kind {
        ConvKind::System => vec![from.as_str()],
        ConvKind::ChatRoom => st.room.iter().map(String::as_str).collect(),
        ConvKind::Normal => st.rec.members.iter().map(String::as_str).collect(),
    };
    let to_peers = &entry.to_peers;
    let audience: Vec<&str> = audience
        .into_iter()
        .filter(|a| *a == from || to_peers.as_ref().is_none_or(|p| p.iter().any(|p| p == a)))
        .collect();
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
    let Some(frame) = event_frame(Event::Message {
        msg: entry.msg,
        redelivered: false,
    }) else {
        return;
    };
    let out = Outbound::Message {
        conv: conv_id,
        seq,
        frame,
    };
    ctx.registry.send_to(audience, Some(origin_conn), &out);
}
