//! Offline push: when a stored message reaches members with no connected
//! device, their registered phones hear of it through APNs, FCM or a push
//! gateway, by LeanCloud's rules.
//!
//! The fan-out (`pipeline::fanout`) decides *whether* a message pushes (not
//! in chat rooms or system conversations, never transient messages or
//! wills) and who is offline, and runs `_receiversOffline`; this module
//! takes it from there:
//!
//! - [`Notifier::after_hook`] reads the hook's answer (`skip`,
//!   `offlinePeers`, `pushMessage`, `force`);
//! - [`Notifier::offline`] drops muted members unless forced, finds each
//!   member's devices in the store, builds one [`PushJob`] per device
//!   ([`content`]: which text wins, the platform split, the badge, the
//!   control keys, 4 KB) and queues it on its provider's lane;
//! - [`lanes`] sends with bounded queues and bounded concurrency, retries,
//!   and deletes the registrations of dead tokens.
//!
//! Nothing here ever makes a sender wait: a full queue drops the push and
//! counts it.

pub mod content;
mod lanes;

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::PushSection;
use crate::hooks::Before;
use crate::push::{Outcome, Providers, PushError, PushJob, Via};
use crate::store::Store;
use crate::store::installations::Installation;
use crate::util::now_secs;
use content::Vars;
pub use lanes::Stats;
use lanes::{Lanes, Shared};

/// One message's offline members, before the hook and the mute rule.
#[derive(Debug, Clone, Default)]
pub struct OfflinePush {
    pub conv: String,
    pub msg_id: String,
    pub from: String,
    /// Members with no connected device, the sender excluded.
    pub peers: Vec<String>,
    /// The conversation's muted members (its `mute` list), whoever is
    /// offline: the hook may name peers beyond `peers`.
    pub muted: Vec<String>,
    /// The message's own `pushData`.
    pub push_data: Option<String>,
}

/// Why a device got no push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Not for this device: no token, another vendor, no part for its
    /// platform. Not counted: nothing was meant for it.
    NotForIt,
    /// No provider configured for its platform.
    Unroutable,
    /// The body cannot fit 4 KB.
    TooLarge,
}

/// What an admin test push did on one device.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub object_id: String,
    pub device_type: String,
    pub provider: Option<&'static str>,
    /// `delivered`, `dead_token`, `retry`, `failed`, or why nothing was sent
    /// (`not_for_device`, `no_provider`, `too_large`).
    pub result: &'static str,
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("push is not enabled ([push] enabled = false)")]
    Disabled,
    #[error("nothing to push: no payload and an empty [push] template")]
    Empty,
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// The push side of a running server; a disabled one does nothing.
pub struct Notifier {
    on: Option<On>,
}

struct On {
    shared: Arc<Shared>,
    lanes: Lanes,
    template: String,
    expiry_secs: u64,
}

impl Notifier {
    pub fn disabled() -> Self {
        Notifier { on: None }
    }

    /// Reads the providers' keys and starts one sending lane per provider.
    /// Must be called inside a tokio runtime. `[push] enabled = false`
    /// gives a disabled notifier.
    pub fn start(cfg: &PushSection, store: Arc<Store>) -> Result<Self, PushError> {
        if !cfg.enabled {
            return Ok(Self::disabled());
        }
        let providers = Arc::new(Providers::new(cfg)?);
        let shared = Arc::new(Shared::new(providers, store, cfg.expiry_secs));
        let lanes = Lanes::start(&shared, cfg.queue_capacity, cfg.max_in_flight);
        Ok(Notifier {
            on: Some(On {
                shared,
                lanes,
                template: cfg.template.clone(),
                expiry_secs: cfg.expiry_secs,
            }),
        })
    }

    pub fn enabled(&self) -> bool {
        self.on.is_some()
    }

    /// The counters for `/metrics`, and each lane's queue depth.
    pub fn stats(&self) -> Option<(&Stats, [(Via, u64); 3])> {
        self.on
            .as_ref()
            .map(|on| (&on.shared.stats, on.lanes.depths()))
    }

    /// Applies `_receiversOffline`'s answer, then pushes. A hook that
    /// failed or timed out leaves the default push: a broken hook app must
    /// not silence every notification.
    pub fn after_hook(&self, mut push: OfflinePush, decision: Before) {
        let answer = match decision {
            Before::Proceed(answer) => answer,
            Before::Rejected { .. } | Before::Failed { .. } => Map::new(),
        };
        if answer.get("skip").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if let Some(peers) = answer.get("offlinePeers").and_then(Value::as_array) {
            push.peers = peers
                .iter()
                .filter_map(Value::as_str)
                .filter(|p| *p != push.from)
                .map(str::to_owned)
                .collect();
        }
        let force = answer.get("force").and_then(Value::as_bool) == Some(true);
        self.offline(&push, answer.get("pushMessage"), force);
    }

    /// Queues one push per device of each offline member. Reads the
    /// store, so it runs on a task, never on the commit thread.
    pub fn offline(&self, push: &OfflinePush, hook_message: Option<&Value>, force: bool) {
        let Some(on) = &self.on else {
            return;
        };
        let now = now_secs();
        let vars = Vars {
            conv: &push.conv,
            from: &push.from,
            now_secs: now,
        };
        let Some(payload) =
            content::resolve(hook_message, push.push_data.as_deref(), &on.template, vars)
        else {
            return;
        };
        for peer in &push.peers {
            if !force && push.muted.contains(peer) {
                continue;
            }
            let devices = match on.shared.store.installations_of_client(peer) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(client = %peer, error = %e, "cannot read push registrations");
                    continue;
                }
            };
            for dev in &devices {
                on.queue(dev, &payload, push, now);
            }
        }
    }

    /// The admin API's test push: `payload` (or the template when it is
    /// empty) to every device of `client`, one attempt each, answered with
    /// what each provider said. Dead tokens are removed as usual.
    pub async fn test_push(
        &self,
        client: &str,
        payload: &Value,
    ) -> Result<Vec<TestResult>, NotifyError> {
        let on = self.on.as_ref().ok_or(NotifyError::Disabled)?;
        let now = now_secs();
        let given = payload.as_object().is_some_and(|o| !o.is_empty());
        let vars = Vars {
            conv: "",
            from: "",
            now_secs: now,
        };
        let payload = content::resolve(given.then_some(payload), None, &on.template, vars)
            .ok_or(NotifyError::Empty)?;
        let about = OfflinePush {
            msg_id: format!("test-{now}"),
            ..OfflinePush::default()
        };
        let mut out = Vec::new();
        for dev in on.shared.store.installations_of_client(client)? {
            let job = on
                .route(&dev, &payload)
                .and_then(|r| Ok((r.via, on.build(&dev, r, &about, now)?)));
            let (provider, result, reason) = match job {
                Ok((via, job)) => {
                    let outcome = on.shared.providers.send(&job).await;
                    on.shared.settle(via, &job, &outcome);
                    (Some(via.label()), outcome.label(), reason_of(&outcome))
                }
                Err(skip) => (None, skip.label(), None),
            };
            out.push(TestResult {
                object_id: dev.object_id,
                device_type: dev.device_type,
                provider,
                result,
                reason,
            });
        }
        Ok(out)
    }
}

impl On {
    /// Where one device's push goes and the payload's part for it, or why
    /// it gets none. Touches nothing: the badge is counted in [`build`],
    /// once the push has a place in its queue.
    ///
    /// [`build`]: On::build
    fn route(&self, dev: &Installation, payload: &Value) -> Result<Routed, Skip> {
        let (platform, token) = content::target(dev).ok_or(Skip::NotForIt)?;
        let part = content::for_platform(payload, platform).ok_or(Skip::NotForIt)?;
        let via = self
            .shared
            .providers
            .route(platform)
            .ok_or(Skip::Unroutable)?;
        Ok(Routed {
            via,
            platform,
            token: token.to_owned(),
            part,
        })
    }

    /// The push itself: counts the badge when asked, then builds the body
    /// around the new number. A body that then cannot fit 4 KB (custom
    /// keys alone over it, as the alert is cut) has counted one badge for
    /// nothing; rare enough to leave.
    fn build(
        &self,
        dev: &Installation,
        r: Routed,
        about: &OfflinePush,
        now: u64,
    ) -> Result<PushJob, Skip> {
        let counted = if content::wants_increment(&r.part, r.platform) {
            match self
                .shared
                .store
                .installation_badge_increment(&dev.object_id, 1)
            {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(device = %dev.object_id, error = %e, "badge not counted");
                    None
                }
            }
        } else {
            None
        };
        let body = content::body(&r.part, counted, r.via == Via::Apns).ok_or(Skip::TooLarge)?;
        let c = content::controls(&r.part, dev);
        let badge = counted
            .or_else(|| r.part.get("badge").and_then(Value::as_i64))
            .and_then(|b| u32::try_from(b).ok());
        Ok(PushJob {
            token: r.token,
            platform: r.platform,
            payload: body,
            sandbox: c.sandbox,
            team_id: c.team_id,
            collapse_id: c.collapse_id,
            apns_priority: c.apns_priority,
            apns_push_type: c.apns_push_type,
            expires_at: now.saturating_add(self.expiry_secs),
            msg_id: about.msg_id.clone(),
            conv_id: about.conv.clone(),
            from: about.from.clone(),
            badge,
        })
    }

    /// Routes, takes a place in the provider's queue, builds and queues:
    /// a push the queue has no room for is dropped before its badge counts.
    fn queue(&self, dev: &Installation, payload: &Value, about: &OfflinePush, now: u64) {
        let stats = &self.shared.stats;
        let r = match self.route(dev, payload) {
            Ok(r) => r,
            Err(skip) => return stats.skipped(skip),
        };
        let via = r.via;
        let Some(place) = self.lanes.reserve(stats, via) else {
            return;
        };
        match self.build(dev, r, about, now) {
            Ok(job) => place.send(job),
            Err(skip) => stats.skipped(skip),
        }
    }
}

/// A device's provider, token and payload part.
struct Routed {
    via: Via,
    platform: crate::push::Platform,
    token: String,
    part: Value,
}

impl Skip {
    fn label(self) -> &'static str {
        match self {
            Skip::NotForIt => "not_for_device",
            Skip::Unroutable => "no_provider",
            Skip::TooLarge => "too_large",
        }
    }
}

fn reason_of(o: &Outcome) -> Option<String> {
    match o {
        Outcome::Delivered => None,
        Outcome::DeadToken { reason }
        | Outcome::Retry { reason, .. }
        | Outcome::Failed { reason } => Some(reason.clone()),
    }
}
