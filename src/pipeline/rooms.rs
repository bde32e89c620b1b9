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
        .spawn(move || {
            yield_to_others();
            run(&rx, &ctx)
        });
    match thread {
        Ok(t) => Some((tx, t)),
        Err(e) => {
            tracing::warn!(error = %e, "no room fan-out thread; rooms fan out on the commit thread");
            None
        }
    }
}

/// How much nicer than the rest of the server the room thread is. A room's
/// message is thousands of writes; on a busy core the thread takes turns
/// with the commit thread and the runtime's workers, and every one-to-one
/// message waits for its share of the burst. 10 steps nicer, the kernel
/// gives those threads the core first (about 90% of it when they all want
/// it), and the room still gets a tenth when they are busy, so a room never
/// stalls. Beside a 5,000-member room, a one-to-one load's p99 fell from
/// 70–87 ms to 28–33 ms (docs/PERFORMANCE.md).
const ROOM_NICER_BY: i32 = 10;

/// Lowers the calling thread's priority by [`ROOM_NICER_BY`] (never raises
/// it, and needs no privilege); a failure only leaves it as it was.
fn yield_to_others() {
    #[cfg(target_os = "linux")]
    {
        // Linux keeps a nice value per thread: `PRIO_PROCESS` with a thread id.
        let tid = unsafe { libc::gettid() } as libc::id_t;
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
        let to = (nice + ROOM_NICER_BY).min(19);
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, to) } != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(),
                "room fan-out thread keeps its priority");
        }
    }
}

/// Gives `job` to the rooms' thread, or does it here when that thread is
/// gone (a thread that never started leaves the commit thread no lane).
pub(super) fn hand(lane: &Sender<RoomJob>, ctx: &Ctx, job: RoomJob) {
    if let Err(job) = lane.send(job) {
        handle(ctx, job);
    }
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_room_thread_lowers_only_its_own_priority() {
        let read =
            || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let before = read();
        let theirs = std::thread::spawn(move || {
            super::yield_to_others();
            read()
        })
        .join()
        .ok();
        assert_eq!(theirs, Some((before + super::ROOM_NICER_BY).min(19)));
        assert_eq!(read(), before, "the caller's thread is untouched");
    }
}
