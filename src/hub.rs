//! The shared state of a running server, handed to every session.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::conversation::{Conv, ConversationTable};
use crate::filter::KeywordFilter;
use crate::hooks::{Before, Hook, Hooks};
use crate::message::Pipeline;
use crate::protocol::{ConvId, ErrorBody, ErrorCode, Event, ServerFrame};
use crate::session::registry::{Outbound, Registry};
use crate::store::Store;
use crate::transport::frame;

pub struct Hub {
    pub config: Config,
    pub filter: KeywordFilter,
    /// Will messages by client (one each, the latest wins).
    pub wills: parking_lot::Mutex<HashMap<String, crate::message::will::Will>>,
    /// When `_typingStarted` last went out per client and conversation.
    pub typing_hooks: parking_lot::Mutex<HashMap<(String, ConvId), std::time::Instant>>,
    pub store: Arc<Store>,
    pub convs: ConversationTable,
    pub registry: Arc<Registry>,
    pub pipeline: Pipeline,
    pub auth: Authenticator,
    pub hooks: Arc<Hooks>,
    /// Rate limits and quotas (`guard`).
    pub guard: crate::guard::Guard,
    /// Held (never across an await) while creating a unique conversation.
    pub unique_lock: parking_lot::Mutex<()>,
    conn_ids: AtomicU64,
    /// Broadcast fan-outs still handing out their message (shared with the
    /// fan-out tasks, which hold the hub only weakly).
    pub fan_outs: Arc<AtomicU64>,
}

/// Who is asking: the logged-in identity of a session.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client: String,
    pub device_id: String,
    pub conn_id: u64,
    pub ip: String,
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
    ) -> Self {
        let guard = crate::guard::Guard::new(&config.limits, &config.quotas);
        Hub {
            guard,
            config,
            filter,
            wills: parking_lot::Mutex::new(HashMap::new()),
            typing_hooks: parking_lot::Mutex::new(HashMap::new()),
            store,
            convs,
            registry,
            pipeline,
            auth,
            hooks,
            unique_lock: parking_lot::Mutex::new(()),
            conn_ids: AtomicU64::new(1),
            fan_outs: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends an event to every device of `clients`.
    pub fn notify<'a>(&self, clients: impl IntoIterator<Item = &'a str>, ev: Event) {
        if let Some(frame) = event_frame(ev) {
            self.registry
                .send_to(clients, None, &Outbound::frame(frame));
        }
    }
}

impl Hub {
    /// A conversation that exists and is not deleted, else 4303.
    pub fn live_conv(&self, id: ConvId) -> Result<Arc<Conv>, ErrorBody> {
        self.convs
            .get(&id)
            .filter(|c| !c.is_deleted())
            .ok_or_else(|| ErrorBody::new(ErrorCode::ConvNotFound, format!("no conversation {id}")))
    }

    /// Runs a before-hook when it is on. `Ok` carries the chain's merged
    /// result (empty when the hook is off); `Err` is the client's answer: the
    /// hook's own code when it rejected, LeanCloud's default for the hook
    /// when it failed under the fail-closed policy.
    pub async fn before_hook(
        &self,
        hook: Hook,
        params: impl FnOnce() -> Value,
    ) -> Result<Map<String, Value>, ErrorBody> {
        if !self.hooks.enabled(hook) {
            return Ok(Map::new());
        }
        let default = hook.reject_error();
        match self.hooks.before(hook, params()).await {
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

    /// Queues an after-hook when it is on; never delays the caller.
    pub fn after_hook(&self, hook: Hook, order_key: &str, params: impl FnOnce() -> Value) {
        if self.hooks.enabled(hook) {
            self.hooks.after(hook, params(), order_key);
        }
    }
}

/// Encodes an event as a stream frame. Encoding our own types cannot fail
/// short of a bug, which is logged rather than taking the server down.
pub fn event_frame(ev: Event) -> Option<Bytes> {
    match frame::encode(&ServerFrame::Event(ev)) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!(error = %e, "encoding an event failed");
            None
        }
    }
}
