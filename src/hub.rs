//! The shared state of a running server, handed to every session.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::core::conversation::ConversationTable;
use crate::core::will::Wills;
use crate::filter::KeywordFilter;
use crate::hooks::Hooks;
use crate::message::Pipeline;
use crate::protocol::{ConvId, ErrorBody, ErrorCode};
use crate::registry::Registry;
use crate::store::{Store, StoreError};

pub struct Hub {
    pub config: Config,
    pub filter: KeywordFilter,
    /// Will messages by client (one each, the latest wins).
    pub wills: Wills,
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
    ) -> Self {
        let guard = crate::guard::Guard::new(&config.limits, &config.quotas);
        Hub {
            guard,
            config,
            filter,
            wills: Wills::new(),
            typing_hooks: parking_lot::Mutex::new(HashMap::new()),
            store,
            convs,
            registry,
            pipeline,
            auth,
            hooks,
            fan_outs: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// 4200 with what happened. A refusal (low disk space, a failed store) was
/// logged once when it began, so it is not logged again per request; other
/// errors are logged at most once a second.
impl From<StoreError> for ErrorBody {
    fn from(e: StoreError) -> Self {
        let detail = match &e {
            StoreError::DiskLow { .. } => "not stored: the server's disk is full; try again later",
            StoreError::Failed(_) => "not stored: the server's store failed and it is restarting",
            // Noted per conversation and reported by /healthz (`store::check`).
            e if e.is_damage() => "stored records here are damaged and cannot be read",
            _ => {
                crate::store::health::log_error(&e);
                "storage failure"
            }
        };
        ErrorBody::new(ErrorCode::InternalError, detail)
    }
}
