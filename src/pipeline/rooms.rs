//! Chat rooms' fan-out, on a thread of its own. Handing a message to a room
//! of thousands takes tens of milliseconds; on the commit thread, every
//! other conversation's next commit would wait behind it. One thread for
//! every room keeps each room's messages, and the edits to them, in order.
//!
//! The senders are answered by the commit thread as before (an answer
//! means durable); an edit or recall in a room is answered here, after its
//! event went out, as the commit thread answers the others.

use std::sync::Arc;
use std::thread::JoinHandle;

use super::queue::{self, Receiver, Sender};
use super::{Ctx, Reply, fanout};
use crate::core::conversation::Conv;
use crate::core::ordering::PatchDraft;
use crate::protocol::ConvKind;
use crate::store::LogEntry;

pub(super) enum RoomJob {
    Message {
        conv: Arc<Conv>,
        entry: LogEntry,
        origin_conn: u64,
    },
    Patch {
        entry: LogEntry,
        draft: Box<PatchDraft>,
        reply: Reply<LogEntry>,
    },
}

pub(super) fn is_room(conv: &Conv) -> bool {
    conv.state.read().rec.kind == ConvKind::ChatRoom
}

/// Starts the thread; it ends once every sender is dropped (the commit
/// thread holds the one sender). `None` when it could not start: rooms are
/// then fanned out on the commit thread.
pub(super) fn start(ctx: Ctx) -> Option<(Sender<RoomJob>, JoinHandle<()>)> {
    let (tx, rx) = queue::channel();
    let thread = std::thread::Builder::new()
        .name("tidings-rooms".into())
        .spawn(move || run(&rx, &ctx));
    match thread {
        Ok(t) => Some((tx, t)),
        Err(e) => {
            tracing::warn!(error = %e, "no room fan-out thread; rooms fan out on the commit thread");
            None
        }
    }
}

/// Gives `job` to the rooms' thread, or does it here when there is none
/// (it could not start, or it is gone).
pub(super) fn hand(rooms: Option<&Sender<RoomJob>>, ctx: &Ctx, job: RoomJob) {
    let job = match rooms {
        Some(r) => match r.send(job) {
            Ok(()) => return,
            Err(job) => job,
        },
        None => job,
    };
    handle(ctx, job);
}

fn run(rx: &Receiver<RoomJob>, ctx: &Ctx) {
    let mut jobs = Vec::new();
    while rx.recv_into(&mut jobs, 64) {
        for job in jobs.drain(..) {
            handle(ctx, job);
        }
    }
}

/// A room's message or patch goes out; a patch is answered after its event.
fn handle(ctx: &Ctx, job: RoomJob) {
    match job {
        RoomJob::Message {
            conv,
            entry,
            origin_conn,
        } => fanout::message(ctx, &conv, &entry, origin_conn),
        RoomJob::Patch {
            entry,
            draft,
            reply,
        } => {
            fanout::patch(ctx, &entry, &draft);
            let _ = reply.send(Ok(entry));
        }
    }
}
