//! One sending lane per provider: a bounded queue (a full one drops and
//! counts, so messaging never waits on Apple or Google), a cap on requests
//! in flight (the streams of one HTTP/2 connection), retries by
//! `Providers::deliver`, and what an outcome means for the store: a dead
//! token deletes its registration.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc};

use super::Skip;
use crate::push::{Outcome, Providers, PushJob, Via};
use crate::store::Store;
use crate::util::now_ms;

/// The providers, in the order of the counters' rows.
pub const VIAS: [Via; 3] = [Via::Apns, Via::Fcm, Via::Webhook];

/// Final outcomes, in the order of the counters' columns.
pub const RESULTS: [&str; 4] = ["delivered", "dead_token", "retry", "failed"];

/// Why a push was dropped before it was sent, per provider.
pub const DROPS: [&str; 2] = ["queue_full", "too_large"];

/// A failure class is logged at most once per this long; the lines
/// between are counted into the next one.
const LOG_EVERY_MS: u64 = 60_000;

fn row(via: Via) -> usize {
    match via {
        Via::Apns => 0,
        Via::Fcm => 1,
        Via::Webhook => 2,
    }
}

fn column(o: &Outcome) -> usize {
    match o {
        Outcome::Delivered => 0,
        Outcome::DeadToken { .. } => 1,
        Outcome::Retry { .. } => 2,
        Outcome::Failed { .. } => 3,
    }
}

/// Push counters, read by `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    sent: [[AtomicU64; 4]; 3],
    dropped: [[AtomicU64; 2]; 3],
    /// Devices whose platform has no provider configured.
    pub unroutable: AtomicU64,
    pub tokens_removed: AtomicU64,
}

impl Stats {
    /// `(provider, result, count)` for every pair, zeros included, so a
    /// dashboard sees the series before the first failure.
    pub fn sent(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        VIAS.iter().flat_map(move |v| {
            RESULTS
                .iter()
                .enumerate()
                .map(move |(i, r)| (v.label(), *r, self.sent[row(*v)][i].load(Relaxed)))
        })
    }

    pub fn dropped(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        VIAS.iter().flat_map(move |v| {
            DROPS
                .iter()
                .enumerate()
                .map(move |(i, r)| (v.label(), *r, self.dropped[row(*v)][i].load(Relaxed)))
        })
    }

    pub(super) fn skipped(&self, skip: Skip) {
        match skip {
            Skip::NotForIt => {}
            Skip::Unroutable => {
                self.unroutable.fetch_add(1, Relaxed);
            }
            // Only APNs bodies are cut to fit; the others go as they are.
            Skip::TooLarge => {
                self.dropped[row(Via::Apns)][1].fetch_add(1, Relaxed);
            }
        }
    }
}

/// When a failure class was last logged (unix ms), and the lines held
/// back since.
type LogMark = (u64, u64);

/// What the lanes' tasks share.
pub struct Shared {
    pub providers: Arc<Providers>,
    pub store: Arc<Store>,
    pub stats: Stats,
    /// `[push] expiry_secs`: a job's `expires_at` less this is when it was made.
    expiry_secs: u64,
    /// Per provider and failure class: when it was last logged, and how
    /// many lines were held back since.
    logs: Mutex<HashMap<(Via, &'static str), LogMark>>,
}

impl Shared {
    pub fn new(providers: Arc<Providers>, store: Arc<Store>, expiry_secs: u64) -> Self {
        Shared {
            providers,
            store,
            stats: Stats::default(),
            expiry_secs,
            logs: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a final outcome and acts on it: a dead token's registration
    /// is deleted, a failure is logged (at most once a minute per provider
    /// and class).
    pub fn settle(&self, via: Via, job: &PushJob, outcome: &Outcome) {
        self.stats.sent[row(via)][column(outcome)].fetch_add(1, Relaxed);
        match outcome {
            Outcome::Delivered => {}
            Outcome::DeadToken { reason } => {
                // A device that registered again after the push was made
                // keeps its record: its token may be new, and the SDK
                // re-saves on every launch (Apple's 410 timestamp rule,
                // with the push's birth as the bound). The birth is known
                // to the second, so the bound is the end of that second.
                let made_ms = job
                    .expires_at
                    .saturating_sub(self.expiry_secs)
                    .saturating_add(1)
                    .saturating_mul(1000);
                match self
                    .store
                    .installation_delete_token(&job.token, Some(made_ms))
                {
                    Ok(true) => {
                        self.stats.tokens_removed.fetch_add(1, Relaxed);
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "dead push token not removed"),
                }
                self.log(via, "dead_token", reason, job.sandbox);
            }
            Outcome::Retry { reason, .. } => self.log(via, "gave_up", reason, job.sandbox),
            Outcome::Failed { reason } => self.log(via, "failed", reason, job.sandbox),
        }
    }

    fn log(&self, via: Via, class: &'static str, reason: &str, sandbox: bool) {
        let now = now_ms();
        let suppressed = {
            let mut logs = self.logs.lock();
            let (last, skipped) = logs.entry((via, class)).or_insert((0, 0));
            if *last != 0 && now.saturating_sub(*last) < LOG_EVERY_MS {
                *skipped += 1;
                return;
            }
            *last = now;
            std::mem::take(skipped)
        };
        // `sandbox` beside BadDeviceToken tells a sandbox token sent to
        // production (or the reverse), the usual cause.
        tracing::warn!(target: "tidings::push", provider = via.label(), class, reason,
            sandbox, suppressed, "push not delivered");
    }
}

/// The senders of the lanes, one per configured provider.
pub struct Lanes {
    lanes: [Option<Lane>; 3],
}

struct Lane {
    tx: mpsc::Sender<PushJob>,
    capacity: usize,
}

impl Lanes {
    /// Starts a task per configured provider. Each ends when the lanes
    /// are dropped and its queue is empty.
    pub fn start(shared: &Arc<Shared>, queue_capacity: u64, max_in_flight: u32) -> Self {
        let capacity = usize::try_from(queue_capacity).unwrap_or(usize::MAX).max(1);
        let lanes = VIAS.map(|via| {
            shared.providers.serves(via).then(|| {
                let (tx, rx) = mpsc::channel(capacity);
                tokio::spawn(run(rx, via, shared.clone(), max_in_flight as usize));
                Lane { tx, capacity }
            })
        });
        Lanes { lanes }
    }

    /// A place in `via`'s queue, taken without waiting; a full (or closed)
    /// queue counts a drop and gives none.
    pub fn reserve(&self, stats: &Stats, via: Via) -> Option<mpsc::Permit<'_, PushJob>> {
        let place = self.lanes[row(via)]
            .as_ref()
            .and_then(|l| l.tx.try_reserve().ok());
        if place.is_none() {
            stats.dropped[row(via)][0].fetch_add(1, Relaxed);
        }
        place
    }

    /// Pushes waiting per provider (not yet sending).
    pub fn depths(&self) -> [(Via, u64); 3] {
        VIAS.map(|via| {
            let depth = self.lanes[row(via)]
                .as_ref()
                .map_or(0, |l| l.capacity.saturating_sub(l.tx.capacity()));
            (via, depth as u64)
        })
    }
}

/// Takes a permit, then a job, so at most `max_in_flight` requests (and
/// their retries' waits) run at once and the rest wait in the queue,
/// where the depth gauge sees them.
async fn run(mut rx: mpsc::Receiver<PushJob>, via: Via, shared: Arc<Shared>, max_in_flight: usize) {
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(job) = rx.recv().await else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let outcome = shared.providers.deliver(&job).await;
            drop(permit);
            shared.settle(via, &job, &outcome);
        });
    }
}
