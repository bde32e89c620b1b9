//! The commit pipeline: one thread assigns every stored message its seq,
//! writes a whole batch to the log with one flush (group commit), and only
//! then answers the senders and fans out, in seq order. One writer makes
//! per-conversation FIFO a property of the design rather than of locking.
//!
//! - this file: the handle the features hold (`submit`, `patch`,
//!   `barrier`, `stop`);
//! - [`commit`]: the thread: gather, read what the store knows, plan
//!   (`core::ordering`), write, flush, advance, answer;
//! - [`fanout`]: after the flush: audience, frames, registry, and the
//!   after-delivery hooks;
//! - [`rooms`]: the chat rooms' fan-out, on its own thread;
//! - [`queue`]: the queue in front of both threads.

mod commit;
pub mod fanout;
mod queue;
mod rooms;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::core::ordering::{Committed, Draft, PatchDraft};
use crate::hooks::Hooks;
use crate::notify::Notifier;
use crate::protocol::{ErrorBody, ErrorCode};
use crate::registry::Registry;
use crate::store::{LogEntry, Store};

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
    tx: queue::Sender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
    rooms: Mutex<Option<JoinHandle<()>>>,
}

fn shutting_down() -> ErrorBody {
    ErrorBody::new(ErrorCode::ServerShutdown, "server is shutting down")
}

/// What the commit thread works with.
#[derive(Clone)]
struct Ctx {
    store: Arc<Store>,
    registry: Arc<Registry>,
    hooks: Arc<Hooks>,
    notifier: Arc<Notifier>,
    /// Where `_receiversOffline` runs: the commit thread is a plain OS thread.
    rt: tokio::runtime::Handle,
}

impl Pipeline {
    /// Must be called inside a tokio runtime: after-delivery hooks run on it.
    pub fn start(
        store: Arc<Store>,
        registry: Arc<Registry>,
        hooks: Arc<Hooks>,
        notifier: Arc<Notifier>,
        group_max: usize,
        linger: Duration,
    ) -> Self {
        let ctx = Ctx {
            store,
            registry,
            hooks,
            notifier,
            rt: tokio::runtime::Handle::current(),
        };
        let (rooms_tx, rooms) = rooms::start(ctx.clone()).unzip();
        let (tx, rx) = queue::channel();
        let thread = std::thread::Builder::new()
            .name("tidings-commit".into())
            .spawn(move || commit::run(rx, &ctx, rooms_tx.as_ref(), group_max.max(1), linger))
            .ok();
        if thread.is_none() {
            tracing::error!("could not start the commit thread; every send will fail");
        }
        Pipeline {
            tx,
            thread: Mutex::new(thread),
            rooms: Mutex::new(rooms),
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
        // The commit thread held the rooms' only sender: this ends once the
        // rooms' queue is handed out.
        if let Some(t) = self.rooms.lock().take()
            && t.join().is_err()
        {
            tracing::error!("room fan-out thread panicked");
        }
    }
}
