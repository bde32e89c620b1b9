//! The shared state of a running server, handed to every session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::conversation::ConversationTable;
use crate::hooks::Hooks;
use crate::message::Pipeline;
use crate::protocol::{ErrorBody, ErrorCode, Event, ServerFrame};
use crate::session::registry::{Outbound, Registry};
use crate::store::{Store, StoreError};
use crate::transport::frame;

pub struct Hub {
    pub config: Config,
    pub store: Arc<Store>,
    pub convs: ConversationTable,
    pub registry: Arc<Registry>,
    pub pipeline: Pipeline,
    pub auth: Authenticator,
    pub hooks: Arc<Hooks>,
    /// Held (never across an await) while creating a unique conversation.
    pub unique_lock: parking_lot::Mutex<()>,
    conn_ids: AtomicU64,
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
    pub fn new(
        config: Config,
        store: Arc<Store>,
        convs: ConversationTable,
        registry: Arc<Registry>,
        pipeline: Pipeline,
        auth: Authenticator,
        hooks: Arc<Hooks>,
    ) -> Self {
        Hub {
            config,
            store,
            convs,
            registry,
            pipeline,
            auth,
            hooks,
            unique_lock: parking_lot::Mutex::new(()),
            conn_ids: AtomicU64::new(1),
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends an event to every device of `clients`.
    pub fn notify<'a>(&self, clients: impl IntoIterator<Item = &'a str>, ev: Event) {
        if let Some(frame) = event_frame(ev) {
            self.registry
                .send_to(clients, None, &Outbound::Frame(frame));
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

impl From<StoreError> for ErrorBody {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        ErrorBody::new(ErrorCode::InternalError, "storage failure")
    }
}
