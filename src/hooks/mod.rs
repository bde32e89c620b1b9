//! LeanCloud IM hooks: HTTP calls to the app server, made the way LeanEngine
//! receives them, so hook code written for LeanCloud runs unchanged.
//!
//! - Before-hooks ([`Hook::is_before`]) run while the caller waits:
//!   [`Hooks::before`] calls each endpoint of the hook in order, as a chain,
//!   and says whether to go on (with changes), reject, or fail.
//! - After-hooks are notifications: [`Hooks::after`] appends them to a
//!   persistent outbox in the store and returns at once; the task started by
//!   [`Hooks::start`] delivers them at least once, in order per order key,
//!   retrying with exponential backoff, across restarts.
//!
//! The call: `POST <url>` with the bare params as the JSON body and the
//! headers `X-LC-Id: <appId>`, `X-LC-Key: <masterKey>,master` and, when set,
//! `X-LC-Hook-Key`. Never `X-LC-Session`. Success is HTTP 200 with
//! `{"result": ...}`; anything else (another status, a `{code, error}`
//! answer, bad JSON, an answer over `hooks.max_response_bytes`, a timeout)
//! is a failure.
//!
//! Delivery of after-hooks: one lane per order key, lanes in parallel (at
//! most [`outbox::MAX_CONCURRENT_CALLS`] calls at once). A failing call is
//! retried inside its lane, 100 ms doubling to 60 s, until
//! `hooks.outbox_max_attempts` or `hooks.outbox_max_age_secs`, then the
//! record moves to the dead letters (see [`outbox`]): it holds up later
//! records of the same key only, and no hook or key can take more than its
//! share of the in-memory window. Past `hooks.outbox_capacity` new records
//! are dropped (and counted), never blocking the caller. A record is
//! removed once every endpoint of its hook accepted it; a call cut short by
//! a shutdown or crash is made again after the restart, so an endpoint can
//! see a record twice. The URLs are the ones configured at delivery time,
//! not at enqueue time. Durability of the outbox itself: see
//! [`crate::store`].
//!
//! Every endpoint is watched ([`guard`]): one that does not define its hook
//! (404, LeanEngine's code 1) is not called for a while, and a circuit
//! breaker stops calls to one that keeps failing.

mod client;
mod guard;

pub mod outbox;
mod stats;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use parking_lot::RwLock;
use serde_json::{Map, Value};
use tokio::sync::{Notify, broadcast};
use tracing::{error, warn};

pub use crate::protocol::hooks::Hook;
pub use client::{CallError, ChainEnd, HookClient, Reply, Route};
use guard::{Admit, Guard, Learned};
pub use stats::HookStats;

use crate::config::{FailPolicy, HooksSection};
use crate::protocol::ErrorBody;
use crate::store::{DeadLetter, OutboxRecord, Store, StoreError};

/// Everything that can go wrong setting hooks up.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A setting `Config::validate` should have caught.
    #[error("{key}: {msg}")]
    Config { key: String, msg: String },
    /// The HTTP client could not be built (TLS set-up).
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("{name} header: the value has characters HTTP headers cannot carry")]
    Header { name: &'static str },
    #[error("outbox: {0}")]
    Store(#[from] StoreError),
    #[error("bin content is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
}

/// What a before-hook decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Before {
    /// Proceed; `result` is the merged result object of the chain (empty object when no endpoint or all returned {}).
    Proceed(Map<String, Value>),
    /// An endpoint said drop/reject: code (integer from the hook, default per hook), detail string.
    Rejected { code: i64, detail: String },
    /// An endpoint failed (timeout, non-200, garbage) and fail_policy = closed; the caller answers the client with an error.
    /// Under fail_policy = open a failure yields Proceed with the results gathered before the failure.
    Failed { detail: String },
}

/// The hooks of a running server. Lives in an `Arc`; the config can be
/// swapped while calls are under way ([`Hooks::reload`]).
pub struct Hooks {
    client: RwLock<Arc<HookClient>>,
    app_id: String,
    master_key: String,
    store: Arc<Store>,
    stats: stats::Stats,
    guard: Guard,
    /// Rung by `after` so the delivery task looks at the outbox again.
    wake: Notify,
    started: AtomicBool,
}

impl Hooks {
    /// Sets up the HTTP client for `cfg` and counts what a previous run left
    /// in the outbox. Nothing is delivered until [`Hooks::start`].
    pub fn new(
        cfg: &HooksSection,
        app_id: &str,
        master_key: &str,
        store: Arc<Store>,
    ) -> Result<Hooks, HookError> {
        let client = HookClient::new(cfg, app_id, master_key)?;
        let stats = stats::Stats::new();
        let mut after = 0;
        loop {
            let batch = store.outbox_peek_after(after, 1024)?;
            let Some((last, _)) = batch.last() else { break };
            after = *last;
            for (_, rec) in &batch {
                if let Some(h) = Hook::from_name(&rec.hook) {
                    stats.queued(h, 1);
                }
            }
        }
        Ok(Hooks {
            client: RwLock::new(Arc::new(client)),
            app_id: app_id.to_owned(),
            master_key: master_key.to_owned(),
            store,
            stats,
            guard: Guard::new(cfg),
            wake: Notify::new(),
            started: AtomicBool::new(false),
        })
    }

    /// The current config's client; cheap, for one call or chain.
    fn current(&self) -> Arc<HookClient> {
        self.client.read().clone()
    }

    /// Whether the hook has an endpoint and is not turned off. Callers can
    /// skip building params when it is false.
    pub fn enabled(&self, hook: Hook) -> bool {
        self.client.read().route(hook).is_some()
    }

    /// Runs the endpoints of a before-hook as a chain. Each endpoint sees `params` with the previous results' fields overlaid
    /// (for keys present in params: content, bin, toPeers, attr, mute, offlinePeers, ...). Stops at the first result with
    /// `drop: true` or `reject: true`.
    pub async fn before(&self, hook: Hook, params: Value) -> Before {
        let client = self.current();
        if client.route(hook).is_none() {
            return Before::Proceed(Map::new());
        }
        let end = client
            .chain(
                hook,
                params,
                |url| self.admit(hook, url).err(),
                |url, outcome, took| {
                    let timeout = outcome.as_ref().is_err_and(CallError::is_timeout);
                    self.stats.call(hook, outcome.is_ok(), timeout, took);
                    self.learn(hook, url, outcome);
                    if let Err(e) = outcome {
                        warn!(%hook, %url, error = %e, "hook call failed");
                    }
                },
            )
            .await;
        match end {
            ChainEnd::Proceed(result) => Before::Proceed(result),
            ChainEnd::Rejected { code, detail } => {
                self.stats.rejected(hook);
                Before::Rejected { code, detail }
            }
            ChainEnd::Failed { detail, merged } => match client.fail_policy() {
                FailPolicy::Open => Before::Proceed(merged),
                FailPolicy::Closed => Before::Failed { detail },
            },
        }
    }

    /// Whether `url` may be called now; the error says why not (and is
    /// counted).
    fn admit(&self, hook: Hook, url: &reqwest::Url) -> Result<(), CallError> {
        match self.guard.admit(url) {
            Admit::Call => Ok(()),
            Admit::Open => {
                self.stats.short_circuited(hook);
                Err(CallError::CircuitOpen)
            }
            Admit::Undefined => {
                self.stats.undefined_skipped(hook);
                Err(CallError::Undefined)
            }
        }
    }

    /// Feeds one call's outcome to the endpoint's guard.
    fn learn(&self, hook: Hook, url: &reqwest::Url, outcome: &Result<Reply, CallError>) {
        match self.guard.record(url, &outcome.as_ref().map(|_| ())) {
            Learned::Nothing => {}
            Learned::Undefined => {
                self.stats.undefined_learned(hook);
                warn!(%hook, %url, retry_in_secs = self.current().undefined_retry().as_secs(),
                    "the app does not define this hook (404 or code 1); not calling it for a while");
            }
            Learned::Opened => {
                self.stats.breaker_opened(hook);
                warn!(%hook, %url, cooldown_ms = self.current().breaker_cooldown().as_millis() as u64,
                    "hook endpoint keeps failing; circuit breaker open");
            }
        }
    }

    /// Runs a before-hook when it is on. `Ok` carries the chain's merged
    /// result (empty when the hook is off); `Err` is the client's answer: the
    /// hook's own code when it rejected, LeanCloud's default for the hook
    /// when it failed under the fail-closed policy.
    pub async fn check_before(
        &self,
        hook: Hook,
        params: impl FnOnce() -> Value,
    ) -> Result<Map<String, Value>, ErrorBody> {
        if !self.enabled(hook) {
            return Ok(Map::new());
        }
        let default = hook.reject_error();
        match self.before(hook, params()).await {
            Before::Proceed(result) => Ok(result),
            Before::Rejected { code, detail } => Err(ErrorBody {
                code: u16::try_from(code)
                    .ok()
                    .filter(|c| *c > 0)
                    .unwrap_or(default.code()),
                reason: default.reason().to_string(),
                detail,
            }),
            Before::Failed { detail } => {
                Err(ErrorBody::new(default, format!("hook failed: {detail}")))
            }
        }
    }

    /// Queues an after-hook when it is on, building its parameters only
    /// then; never delays the caller.
    pub fn after_if_on(&self, hook: Hook, order_key: &str, params: impl FnOnce() -> Value) {
        if self.enabled(hook) {
            self.after(hook, params(), order_key);
        }
    }

    /// Queues an after-hook in the persistent outbox (non-blocking: a sled insert). `order_key` (e.g. the convId) — deliveries
    /// with the same key happen in enqueue order. Full outbox → dropped with a warn! and a metric; never blocks or fails the caller.
    /// A hook that is off is not queued.
    pub fn after(&self, hook: Hook, params: Value, order_key: &str) {
        let capacity = {
            let client = self.client.read();
            if client.route(hook).is_none() {
                return;
            }
            client.outbox_capacity()
        };
        if self.store.outbox_len() >= capacity {
            let n = self.stats.dropped(hook);
            // The first drop and then every thousandth: a dead endpoint
            // under load must not flood the log.
            if n % 1000 == 1 {
                warn!(%hook, capacity, dropped = n, "hook outbox full; dropping after-hook calls");
            }
            return;
        }
        let rec = OutboxRecord {
            hook: hook.name().to_owned(),
            params: params.to_string(),
            order_key: order_key.to_owned(),
            enqueued_at: crate::util::now_ms(),
        };
        match self.store.outbox_push(&rec) {
            Ok(_) => {
                self.stats.queued(hook, 1);
                self.wake.notify_one();
            }
            Err(e) => {
                let n = self.stats.dropped(hook);
                error!(%hook, error = %e, dropped = n, "cannot queue an after-hook call; dropped");
            }
        }
    }

    /// Starts the background delivery task (tokio): at-least-once, retried with exponential backoff (100 ms .. 60 s),
    /// survives restart (outbox in sled), in order per order_key. Call once from the server; a second call
    /// returns a task that ends at once. The task ends on `shutdown` (a message or the sender's drop); calls
    /// under way are cut short and made again after the next start.
    pub fn start(
        self: &Arc<Self>,
        mut shutdown: broadcast::Receiver<()>,
    ) -> tokio::task::JoinHandle<()> {
        if self.started.swap(true, Ordering::SeqCst) {
            warn!("hook delivery already started");
            return tokio::spawn(async {});
        }
        let this = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.recv() => {}
                () = outbox::run(this) => {}
            }
        })
    }

    /// After-hook calls waiting in the outbox.
    pub fn outbox_len(&self) -> u64 {
        self.store.outbox_len()
    }

    /// Endpoints with an open breaker, and endpoints known not to define
    /// their hook.
    pub fn endpoint_counts(&self) -> (u64, u64) {
        self.guard.counts()
    }

    /// After-hook calls given up on, waiting for an operator.
    pub fn dead_letters_len(&self) -> u64 {
        self.store.dead_letters_len()
    }

    /// Up to `limit` dead letters with an id above `after`, oldest first.
    pub fn dead_letters(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, HookError> {
        Ok(self.store.dead_letters(after, limit)?)
    }

    /// Queues dead letter `id` for delivery again, at the end of the outbox
    /// (so after records of its key queued since); its new outbox id, or
    /// `None` when there is no such dead letter.
    pub fn retry_dead_letter(&self, id: u64) -> Result<Option<u64>, HookError> {
        let hook = self
            .store
            .dead_letters(id.saturating_sub(1), 1)?
            .into_iter()
            .find(|(i, _)| *i == id)
            .and_then(|(_, l)| Hook::from_name(&l.record.hook));
        let new = self.store.dead_letter_retry(id)?;
        if new.is_some() {
            if let Some(h) = hook {
                self.stats.queued(h, 1);
            }
            self.wake.notify_one();
        }
        Ok(new)
    }

    /// Deletes dead letter `id`; whether it was there.
    pub fn purge_dead_letter(&self, id: u64) -> Result<bool, HookError> {
        Ok(self.store.dead_letter_purge(id)?)
    }

    /// Counters of every hook since start.
    pub fn metrics(&self) -> Vec<HookStats> {
        self.stats.snapshot()
    }

    /// Applies a new `[hooks]` section: URLs, timeouts, policy, capacity and
    /// key take effect for calls that start from now on. Connections are
    /// kept unless `connect_timeout_ms` changed. On error the old config
    /// stays.
    pub fn reload(&self, cfg: &HooksSection) -> Result<(), HookError> {
        let next = self
            .current()
            .rebuild(cfg, &self.app_id, &self.master_key)?;
        *self.client.write() = Arc::new(next);
        self.guard.reload(cfg);
        // Newly enabled routes may let waiting records go.
        self.wake.notify_one();
        Ok(())
    }
}

/// Binary content as LeanCloud's hooks carry it (`bin: true`): standard
/// base64 with padding.
pub fn encode_bin(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bytes of a hook's base64 `content` when it answered `bin: true`.
pub fn decode_bin(text: &str) -> Result<Vec<u8>, HookError> {
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}
