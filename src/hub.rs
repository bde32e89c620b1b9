//! The shared state of a running server, handed to every session.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::core::conversation::ConversationTable;
use crate::core::will::Wills;
use crate::filter::KeywordFilter;
use crate::hooks::Hooks;
use crate::notify::Notifier;
use crate::pipeline::Pipeline;
use crate::protocol::ConvId;
use crate::registry::Registry;
use crate::store::Store;

pub struct Hub {
    pub config: Config,
    pub filter: KeywordFilter,
    /// Will messages by client (one each, the latest wins).
    pub wills: Wills,
    /// When `_typingStarted` last went out per client and conversation.
    pub typing_hooks: parking_lot::Mutex<crate::core::typing::TypingLimit<(String, ConvId)>>,
    pub store: Arc<Store>,
    pub convs: ConversationTable,
    pub registry: Arc<Registry>,
    pub pipeline: Pipeline,
    pub auth: Authenticator,
    pub hooks: Arc<Hooks>,
    /// Offline push (APNs, FCM, a gateway); a disabled one when `[push]` is off.
    pub notifier: Arc<Notifier>,
    /// Rate limits and quotas (`guard`).
    pub guard: crate::guard::Guard,
    /// Broadcast fan-outs still handing out their message (shared with the
    /// fan-out tasks, which hold the hub only weakly).
    pub fan_outs: Arc<AtomicU64>,
}

impl Hub {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        filter: KeywordFilter,
        store: Arc<Store>,
        convs: ConversationTable,
        registry: Arc<Registry>,
        pipeline: Pipeline,
        auth: Authenticator,
        hooks: Arc<Hooks>,
        notifier: Arc<Notifier>,
    ) -> Self {
        let guard = crate::guard::Guard::new(&config.limits, &config.quotas);
        Hub {
            guard,
            config,
            filter,
            wills: Wills::new(),
            typing_hooks: parking_lot::Mutex::new(crate::core::typing::TypingLimit::new(
                crate::core::typing::HOOK_SWEEP_AT,
            )),
            store,
            convs,
            registry,
            pipeline,
            auth,
            hooks,
            notifier,
            fan_outs: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Runs `job` every `period`, the first time at once (so what fell due
/// while the server was down goes at start), until `shutdown` or until
/// the hub is gone. The background jobs (expired broadcasts, temporary
/// conversations, idle push registrations, the cursor writer, the store's
/// checkpoints) share this loop; each job logs its own outcome.
pub fn every<F, Fut>(
    hub: &Arc<Hub>,
    period: std::time::Duration,
    mut shutdown: tokio::sync::broadcast::Receiver<()>,
    job: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(Arc<Hub>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let hub = Arc::downgrade(hub);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.recv() => return,
            }
            let Some(hub) = hub.upgrade() else {
                return;
            };
            job(hub).await;
        }
    })
}
