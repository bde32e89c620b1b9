//! The commit thread: the I/O half of ordering. It gathers a group of jobs,
//! reads what the store knows about them (the tokens they name, the rows
//! they patch), lets `core::ordering::plan` decide, then writes and flushes
//! the batch once, advances the conversations, answers the appends, fans
//! out the appends and then the patches, and answers the patches. Nobody
//! is answered before the flush: an answer means durable.

use std::time::{Duration, Instant};

use super::queue::{Receiver, Sender};
use super::rooms::{self, RoomJob, is_room};
use super::{Ctx, Job, fanout};
use crate::core::conversation::Conv;
use crate::core::ordering::{self, Outcome, Step};
use crate::metrics::METRICS;
use crate::protocol::{ErrorBody, ErrorCode};
use crate::store::api::{Head, LogBatch};
use crate::store::{Store, TokenRecord};
use crate::util::now_ms;

pub(super) fn run(
    rx: Receiver<Job>,
    ctx: &Ctx,
    rooms: Option<&Sender<RoomJob>>,
    group_max: usize,
    linger: Duration,
) {
    let mut jobs = Vec::with_capacity(group_max);
    while rx.recv_into(&mut jobs, group_max) {
        // Gather the group: whatever is queued, then whatever arrives within
        // the linger. A barrier (a conversation change) does not wait.
        if !linger.is_zero() && !jobs.iter().any(Job::is_barrier) {
            rx.gather_until(&mut jobs, group_max, Instant::now() + linger);
        }
        let stop = commit(&mut jobs, ctx, rooms);
        if stop {
            return;
        }
    }
}

/// A job with what the store knows about it, read as the planner reaches
/// it. Nothing is read for a refused store or a deleted conversation: the
/// planner refuses those before it would look.
fn step<'a>(job: &'a mut Job, store: &Store, read: bool) -> Step<'a> {
    match job {
        Job::Append(d, _) => {
            let stored = match &d.send.token {
                Some(tok) if read && !d.conv.is_deleted() => {
                    Some(store.sent_by_token(&d.from, tok).map_err(ErrorBody::from))
                }
                _ => None,
            };
            Step::Append { draft: d, stored }
        }
        Job::Patch(p, _) => {
            let row = (read && !p.conv.is_deleted())
                .then(|| store.message(p.conv.id, p.seq).map_err(ErrorBody::from));
            Step::Patch { draft: p, row }
        }
        Job::Barrier(_) | Job::Stop => Step::Other,
    }
}

/// Commits one batch. Returns true when a Stop was seen. Chat rooms fan
/// out on `rooms`' thread when there is one.
fn commit(jobs: &mut Vec<Job>, ctx: &Ctx, rooms: Option<&Sender<RoomJob>>) -> bool {
    let store = &*ctx.store;
    let now = now_ms();

    // Refused before sled sees anything (low disk space, a failed store):
    // nothing is written, so "not stored" is the true answer.
    let refused = store.writable().err().map(ErrorBody::from);
    let read = refused.is_none();
    let mut plan = ordering::plan(
        jobs.iter_mut().map(|j| step(j, store, read)),
        refused.as_ref(),
        now,
    );

    let tokens: Vec<TokenRecord<'_>> = plan
        .tokens
        .iter()
        .map(|((client, token), &i)| TokenRecord {
            client,
            token,
            sent: plan.sent(i),
        })
        .collect();

    // One write and one flush for the whole batch: the log's write-ahead
    // log, or sled's own flush when a barrier asks for every tree.
    let flush_started = std::time::Instant::now();
    let nothing_new = plan.entries.is_empty() && tokens.is_empty();
    let barrier = jobs.iter().any(Job::is_barrier);
    let written = if nothing_new {
        Ok(())
    } else {
        // Each conversation's head as planned from: the store refuses the
        // batch if its log says otherwise (see `failed_commit`).
        let heads: Vec<Head> = plan
            .heads
            .values()
            .map(|(conv, _, _)| Head {
                conv: conv.id,
                last_seq: conv.last_seq(),
            })
            .collect();
        store.write_checked(&LogBatch {
            heads: &heads,
            entries: &plan.entries,
            tokens: &tokens,
            stale_patches: &plan.stale,
            for_webhook: &plan.inbound,
        })
    }
    .and_then(|()| match (barrier, nothing_new) {
        (true, _) => store.sync_written(),
        (false, false) => store.sync_log(),
        (false, true) => Ok(()),
    })
    .map_err(|e| failed_commit(store, e));
    METRICS.flush.observe(flush_started.elapsed());
    drop(tokens);

    if written.is_ok() {
        for (conv, seq, ts) in plan.heads.values() {
            conv.advance(*seq, *ts);
        }
    }

    let mut outcomes = std::mem::take(&mut plan.outcomes).into_iter();
    let mut stop = false;
    let mut patches = Vec::new();
    for job in jobs.drain(..) {
        match job {
            Job::Append(_, reply) => {
                let _ = reply.send(plan.answer(&written, outcomes.next()));
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
                    patches.push((entry, draft, reply));
                }
                (Ok(()), _) => {
                    let _ = reply.send(Err(ordering::lost_outcome()));
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
        // The room thread's lane for `conv`, if it is a room and there is one.
        let lane = |conv: &Conv| rooms.filter(|_| is_room(conv));
        for n in &plan.notices {
            let (conv, entry) = (&plan.convs[n.entry], &plan.entries[n.entry]);
            match lane(conv) {
                Some(lane) => rooms::hand(
                    lane,
                    ctx,
                    RoomJob::Message {
                        conv: conv.clone(),
                        entry: entry.clone(),
                        origin_conn: n.origin_conn,
                    },
                ),
                None => fanout::message(ctx, conv, entry, n.origin_conn),
            }
        }
        let mut here = Vec::with_capacity(patches.len());
        for (entry, draft, reply) in patches {
            match lane(&draft.conv) {
                Some(lane) => {
                    let entry = plan.entries[entry].clone();
                    rooms::hand(
                        lane,
                        ctx,
                        RoomJob::Patch {
                            entry,
                            draft,
                            reply,
                        },
                    );
                }
                None => here.push((entry, draft, reply)),
            }
        }
        for (entry, draft, _) in &here {
            fanout::patch(ctx, &plan.entries[*entry], draft);
        }
        for (entry, _, reply) in here {
            let _ = reply.send(Ok(plan.entries[entry].clone()));
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
///
/// A batch the store refused because a conversation's last seq moved under
/// it (`SeqMoved`, `SeqGap`) takes the same road: with one commit thread
/// that means the heads in memory disagree with the log, and a restart
/// reloads them from it; carrying on could only reorder or overwrite.
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
