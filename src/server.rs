//! Start-up, the accept loop and graceful shutdown.
//!
//! Shutdown follows mini-redis: a broadcast tells every session to stop, and
//! each session holds a clone of a completion sender whose last drop says
//! they are all gone. Then the commit pipeline drains and the store flushes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin::{self, AdminError, AdminServer, AdminState, Target};
use crate::auth::{self, Authenticator, Credentials};
use crate::config::{AuthMode, Config};
use crate::core::conversation::ConversationTable;
use crate::hooks::{HookError, Hooks};
use crate::hub::Hub;
use crate::pipeline::Pipeline;
use crate::protocol::ErrorCode;
use crate::registry::Registry;
use crate::session;
use crate::store::{Store, StoreError};
use crate::transport::{self, ServerIdentity, TlsError, TransportError};

/// Written into the data dir at start: the bound address, for local clients.
pub const ADDR_FILE: &str = "server.addr";
/// The sled directory inside the data dir.
pub const STORE_DIR: &str = "store";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("credentials: {0}")]
    Auth(#[from] auth::AuthError),
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    #[error("hooks: {0}")]
    Hooks(#[from] HookError),
    #[error("admin API: {0}")]
    Admin(#[from] AdminError),
    #[error("LeanCloud door: {0}")]
    Gateway(#[from] crate::gateway::GatewayError),
    #[error("keyword filter: {0}")]
    Filter(#[from] crate::filter::FilterError),
    #[error("system webhook: {0}")]
    Webhook(#[from] crate::sysmsg::WebhookError),
    #[error("push: {0}")]
    Push(#[from] crate::push::PushError),
}

impl ServerError {
    /// Errors a restart cannot cure (the operator must act).
    pub fn is_permanent(&self) -> bool {
        matches!(self, ServerError::Store(StoreError::Schema { .. }))
    }

    /// What the operator can do about a start-up failure, when the error
    /// itself does not say: which key to change, or what else is running.
    pub fn hint(&self) -> Option<&'static str> {
        use std::io::ErrorKind::{AddrInUse, PermissionDenied};
        match self {
            ServerError::Transport(TransportError::Bind { source, .. }) => match source.kind() {
                AddrInUse => Some(
                    "is another tidings (or another program) listening on this UDP port? change server.listen",
                ),
                PermissionDenied => {
                    Some("a port below 1024 needs CAP_NET_BIND_SERVICE; or change server.listen")
                }
                _ => Some("check server.listen"),
            },
            ServerError::Admin(AdminError::Bind { source, .. }) => match source.kind() {
                AddrInUse => Some(
                    "is another tidings (or another program) listening on this TCP port? change admin.listen, or set admin.enabled = false",
                ),
                PermissionDenied => {
                    Some("a port below 1024 needs CAP_NET_BIND_SERVICE; or change admin.listen")
                }
                _ => Some("check admin.listen"),
            },
            ServerError::Gateway(crate::gateway::GatewayError::Bind { source, .. }) => {
                match source.kind() {
                    AddrInUse => Some(
                        "is another tidings (or another program) listening on this TCP port? change gateway.listen, or set gateway.enabled = false",
                    ),
                    PermissionDenied => Some(
                        "a port below 1024 needs CAP_NET_BIND_SERVICE; or change gateway.listen",
                    ),
                    _ => Some("check gateway.listen"),
                }
            }
            ServerError::Gateway(crate::gateway::GatewayError::Tls(_)) => {
                Some("check gateway.tls_cert and gateway.tls_key")
            }
            ServerError::Store(StoreError::Sled(sled::Error::Io(e)))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.to_string().contains("could not acquire lock") =>
            {
                Some(
                    "is another tidings running on this data dir? stop it, or give this one its own server.data_dir",
                )
            }
            ServerError::Filter(_) => Some("check messages.keyword_file"),
            ServerError::Tls(_) => Some("check server.tls_cert and server.tls_key"),
            _ => None,
        }
    }

    /// The store failed while running: a restart recovers (`store::health`).
    pub fn is_store_failure(&self) -> bool {
        matches!(self, ServerError::Store(StoreError::Failed(_)))
    }
}

pub struct Server;

/// Everything `serve` would refuse that can be checked without creating,
/// binding or locking anything: files the config names and values only a
/// parser can judge. `tidings config check` runs it too, so the two agree
/// (ports and the data dir's lock can only be tested by starting).
pub fn preflight(config: &Config) -> Result<(), ServerError> {
    crate::filter::KeywordFilter::load(config.messages.keyword_file.as_deref())?;
    if let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key) {
        // Configured files are only read; nothing is generated.
        ServerIdentity::load_or_generate(Path::new(""), Some((cert, key)))?.server_config()?;
    }
    let dir = &config.server.data_dir;
    if dir.exists() && !dir.is_dir() {
        return Err(ServerError::DataDir {
            path: dir.clone(),
            source: std::io::Error::other("exists and is not a directory"),
        });
    }
    let app_id = config.auth.app_id.as_deref().unwrap_or("app");
    crate::sysmsg::Webhook::new(&config.system, app_id, config.hooks.hook_key.as_deref())?;
    Ok(())
}

pub struct RunningServer {
    hub: Arc<Hub>,
    addr: SocketAddr,
    fingerprint: String,
    endpoint: quinn::Endpoint,
    shutdown: broadcast::Sender<()>,
    done_rx: mpsc::Receiver<()>,
    accept: JoinHandle<()>,
    hook_delivery: JoinHandle<()>,
    /// The `_SysMessage` webhook worker, the broadcast sweep and the cursor writer.
    system_tasks: Vec<JoinHandle<()>>,
    /// `None` when `admin.enabled` is off.
    admin: Option<AdminServer>,
    /// `None` when `gateway.enabled` is off.
    gateway: Option<crate::gateway::Gateway>,
    /// What the admin API serves from; it holds it weakly, so dropping this
    /// releases the hub and the endpoint whatever its connections do.
    _admin_target: Option<Arc<Target>>,
}

impl Server {
    /// Checks the config ([`preflight`]), binds the QUIC and admin ports,
    /// then opens (or creates) the data dir and serves. A failed start
    /// leaves nothing behind: ports come first, so one in use stops the
    /// start before any file is written, and a data dir this start created
    /// is removed again (it held nothing anybody has seen).
    pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
        preflight(&config)?;
        let socket = transport::bind_udp(config.server.listen)?;
        let admin_listener = if config.admin.enabled {
            Some(AdminServer::bind(config.admin.listen).await?)
        } else {
            None
        };
        let gateway_listener = if config.gateway.enabled {
            Some(crate::gateway::Gateway::bind(config.gateway.listen).await?)
        } else {
            None
        };
        let dir = config.server.data_dir.clone();
        let fresh = !dir.exists();
        let started = Self::start_on(config, socket, admin_listener, gateway_listener).await;
        if started.is_err()
            && fresh
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            warn!(dir = %dir.display(), error = %e, "could not remove the data dir this failed start created");
        }
        started
    }

    async fn start_on(
        config: Config,
        socket: std::net::UdpSocket,
        admin_listener: Option<tokio::net::TcpListener>,
        gateway_listener: Option<tokio::net::TcpListener>,
    ) -> Result<RunningServer, ServerError> {
        let dir = config.server.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| ServerError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let creds = Credentials::load_or_create_all(
            &dir,
            config.auth.app_id.as_deref(),
            config.auth.master_key.as_deref(),
            config.auth.app_key.as_deref(),
        )?;
        let identity = ServerIdentity::load_or_generate(
            &dir,
            config
                .server
                .tls_cert
                .as_deref()
                .zip(config.server.tls_key.as_deref()),
        )?;
        let fingerprint = identity.fingerprint();
        let gateway_tls = gateway_tls(&config, &dir)?;
        let store = Arc::new(Store::open(
            &dir.join(STORE_DIR),
            config.store.cache_capacity_mb * 1024 * 1024,
            config.store.fsync,
        )?);
        store.set_min_free_bytes(config.store.min_free_mb * 1024 * 1024);
        let convs = load_conversations(&store)?;
        let registry = Arc::new(Registry::default());
        let mode = match config.auth.mode {
            AuthMode::Signature => auth::Mode::Signature,
            AuthMode::Open => auth::Mode::Open,
        };
        let hooks = Arc::new(Hooks::new(
            &config.hooks,
            &creds.app_id,
            &creds.master_key,
            store.clone(),
        )?);
        let webhook = crate::sysmsg::Webhook::new(
            &config.system,
            &creds.app_id,
            config.hooks.hook_key.as_deref(),
        )?;
        // Before the commit thread starts, so a failure here leaves nothing running.
        let endpoint = transport::server_endpoint_on(
            socket,
            identity,
            Duration::from_secs(config.limits.keep_alive_secs),
        )?;
        let filter = crate::filter::KeywordFilter::load(config.messages.keyword_file.as_deref())?;
        let notifier = Arc::new(crate::notify::Notifier::start(&config.push, store.clone())?);
        let pipeline = Pipeline::start(
            store.clone(),
            registry.clone(),
            hooks.clone(),
            notifier.clone(),
            config.store.group_commit_max as usize,
            Duration::from_micros(config.store.group_commit_linger_us),
        );
        let authenticator = Authenticator::new(mode, creds, config.auth.signature_window_secs)
            .with_conversation_signatures(auth::ConvSignaturePolicy {
                conversations: config.auth.conversation_signatures,
                blacklist: config.auth.blacklist_signatures,
                window_secs: config.auth.conversation_signature_window_secs,
            })
            .with_store(store.clone(), crate::util::now_secs())?;
        let addr = endpoint
            .local_addr()
            .map_err(|source| ServerError::DataDir {
                path: dir.clone(),
                source,
            })?;
        write_addr_file(&dir, addr);
        info!(conversations = convs.len(), "store loaded");
        if !filter.is_empty() {
            info!(words = filter.len(), "keyword filter loaded");
        }
        let hub = Arc::new(Hub::new(
            config,
            filter,
            store,
            convs,
            registry,
            pipeline,
            authenticator,
            hooks.clone(),
            notifier,
        ));
        let (shutdown, _) = broadcast::channel(1);
        // Before any task starts, so a port in use leaves nothing running.
        let admin_target = hub
            .config
            .admin
            .enabled
            .then(|| Target::new(hub.clone(), Some(endpoint.clone())));
        let admin = match (&admin_target, admin_listener) {
            (Some(t), Some(listener)) => {
                let a = AdminServer::start_on(AdminState::new(t), listener, shutdown.subscribe())?;
                info!(addr = %a.local_addr(), "admin API listening");
                write_admin_addr_file(&hub.config.server.data_dir, a.local_addr());
                Some(a)
            }
            _ => None,
        };
        let hook_delivery = hooks.start(shutdown.subscribe());
        let system_tasks = vec![
            crate::sysmsg::start(&hub, webhook, shutdown.subscribe()),
            crate::broadcast::start_sweeper(&hub, shutdown.subscribe()),
            crate::conversation::expire::start_expirer(&hub, shutdown.subscribe()),
            crate::gateway::installations::start_sweeper(&hub, shutdown.subscribe()),
            start_cursor_writer(&hub, shutdown.subscribe()),
            start_checkpointer(&hub, shutdown.subscribe()),
        ];
        if admin.is_none() {
            tokio::spawn(log_hook_stats(hooks.clone(), shutdown.subscribe()));
        }
        tokio::spawn(stop_on_store_failure(
            hub.store.watch_failure(),
            shutdown.clone(),
        ));
        let (done_tx, done_rx) = mpsc::channel(1);
        let gateway = match gateway_listener {
            Some(listener) => {
                let g = crate::gateway::Gateway::start_on(
                    hub.clone(),
                    listener,
                    gateway_tls,
                    shutdown.clone(),
                    done_tx.clone(),
                )?;
                info!(addr = %g.local_addr(), "LeanCloud door listening");
                let file = hub.config.server.data_dir.join(crate::gateway::ADDR_FILE);
                if let Err(e) = std::fs::write(&file, g.local_addr().to_string()) {
                    warn!(error = %e, "could not write {}", crate::gateway::ADDR_FILE);
                }
                Some(g)
            }
            None => None,
        };
        let accept = tokio::spawn(accept_loop(
            hub.clone(),
            endpoint.clone(),
            shutdown.clone(),
            done_tx,
        ));
        Ok(RunningServer {
            hub,
            addr,
            fingerprint,
            endpoint,
            shutdown,
            done_rx,
            accept,
            hook_delivery,
            system_tasks,
            admin,
            gateway,
            _admin_target: admin_target,
        })
    }
}

/// The certificate the LeanCloud door serves `wss://` with, when
/// `gateway.tls` is on: its own, or else the server's.
fn gateway_tls(
    config: &Config,
    dir: &std::path::Path,
) -> Result<Option<Arc<rustls::ServerConfig>>, ServerError> {
    let g = &config.gateway;
    if !(g.enabled && g.tls) {
        return Ok(None);
    }
    let files = g.tls_cert.as_deref().zip(g.tls_key.as_deref()).or_else(|| {
        config
            .server
            .tls_cert
            .as_deref()
            .zip(config.server.tls_key.as_deref())
    });
    let identity = ServerIdentity::load_or_generate(dir, files)?;
    let tls = identity
        .web_server_config()
        .map_err(|e| crate::gateway::GatewayError::Tls(e.to_string()))?;
    Ok(Some(Arc::new(tls)))
}

/// A failed store writes nothing more (`store::health`): sessions are told
/// to stop at once, so clients reconnect to the restarted server instead of
/// getting 4200 for every send meanwhile. The owner of the
/// [`RunningServer`] sees [`RunningServer::store_failed`] and shuts down.
async fn stop_on_store_failure(
    mut failed: tokio::sync::watch::Receiver<bool>,
    shutdown: broadcast::Sender<()>,
) {
    if failed.wait_for(|f| *f).await.is_ok() {
        let _ = shutdown.send(());
    }
}

/// Moves cursor changes from memory to sled (`store::cursors`). The last
/// ones go with the shutdown's flush.
fn start_cursor_writer(hub: &Arc<Hub>, shutdown: broadcast::Receiver<()>) -> JoinHandle<()> {
    // Logged once per run of failures: the writer retries every tick.
    let failing = Arc::new(AtomicBool::new(false));
    crate::hub::every(
        hub,
        crate::store::cursors::WRITE_TICK,
        shutdown,
        move |hub| {
            let failing = failing.clone();
            async move {
                let store = hub.store.clone();
                // Low on disk space or failed: cursors wait in memory (a crash
                // then costs redeliveries, never messages).
                if !store.cursors_changed() || store.writable().is_err() {
                    return;
                }
                let failure =
                    match tokio::task::spawn_blocking(move || store.write_some_cursors()).await {
                        Ok(Ok(_)) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(e) => Some(e.to_string()),
                    };
                let was_failing = failing.swap(failure.is_some(), Ordering::Relaxed);
                match &failure {
                    Some(e) if !was_failing => warn!(error = %e, "cursors not written; retrying"),
                    None if was_failing => info!("cursors written again"),
                    _ => {}
                }
            }
        },
    )
}

/// Checkpoints the store's write-ahead log (`store::wal`) when one is due:
/// sled's flush, off the commit path, about once a second under load. A
/// failure fails the store, which stops the server (`stop_on_store_failure`).
fn start_checkpointer(hub: &Arc<Hub>, shutdown: broadcast::Receiver<()>) -> JoinHandle<()> {
    crate::hub::every(
        hub,
        crate::store::wal::CHECKPOINT_TICK,
        shutdown,
        |hub| async move {
            if !hub.store.checkpoint_due() {
                return;
            }
            let store = hub.store.clone();
            // The store logs and keeps the failure; the task's own panic is
            // the only thing left to report.
            if let Err(e) = tokio::task::spawn_blocking(move || store.checkpoint()).await {
                warn!(error = %e, "checkpoint task failed");
            }
        },
    )
}

/// With the admin API (and its `/metrics`) off, per-hook counters reach the
/// operator through the log, once a minute while any hook has been used.
async fn log_hook_stats(hooks: Arc<Hooks>, mut shutdown: broadcast::Receiver<()>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.recv() => return,
        }
        for s in hooks
            .metrics()
            .into_iter()
            .filter(|s| s.calls > 0 || s.dropped > 0)
        {
            info!(
                hook = %s.hook,
                calls = s.calls,
                failures = s.failures,
                timeouts = s.timeouts,
                rejections = s.rejections,
                p50_us = s.latency_p50_us,
                p99_us = s.latency_p99_us,
                outbox = s.outbox_depth,
                dropped = s.dropped,
                "hook stats"
            );
        }
    }
}

fn write_admin_addr_file(dir: &Path, addr: SocketAddr) {
    if let Err(e) = std::fs::write(dir.join(admin::ADDR_FILE), addr.to_string()) {
        warn!(error = %e, "could not write {}; `tidings admin` needs --url", admin::ADDR_FILE);
    }
}

fn write_addr_file(dir: &Path, addr: SocketAddr) {
    if let Err(e) = std::fs::write(dir.join(ADDR_FILE), addr.to_string()) {
        warn!(error = %e, "could not write {ADDR_FILE}; local clients need --server");
    }
}

async fn accept_loop(
    hub: Arc<Hub>,
    endpoint: quinn::Endpoint,
    shutdown: broadcast::Sender<()>,
    done: mpsc::Sender<()>,
) {
    let mut stop = shutdown.subscribe();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => return,
            },
            _ = stop.recv() => return,
        };
        // Refusing costs one packet; a connection past the cap would cost
        // a handshake and a session's memory.
        if hub.guard.connection_over_cap(endpoint.open_connections()) {
            incoming.refuse();
            continue;
        }
        // Over the handshake rate, an unproven address must first echo a
        // Retry token: a spoofed flood then costs no handshake work.
        if !incoming.remote_address_validated()
            && incoming.may_retry()
            && hub.guard.handshake_wants_retry()
        {
            hub.guard.count(crate::guard::Limit::QuicRetry);
            if let Err(e) = incoming.retry() {
                // Cannot happen after may_retry(); the client retries anyway.
                e.into_incoming().ignore();
            }
            continue;
        }
        let (hub, mut rx, done) = (hub.clone(), shutdown.subscribe(), done.clone());
        tokio::spawn(async move {
            // A handshake whose peer went silent would hold `done` until
            // the QUIC idle timeout: a shutdown drops it instead.
            let handshake = std::future::IntoFuture::into_future(incoming);
            let conn = tokio::select! {
                c = handshake => c,
                _ = rx.recv() => return,
            };
            match conn {
                Ok(conn) => session::run(hub, conn, rx, done).await,
                Err(e) => tracing::debug!(error = %e, "handshake failed"),
            }
        });
    }
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// SHA-256 of the TLS certificate, hex: what clients pin.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn credentials(&self) -> &Credentials {
        self.hub.auth.credentials()
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The admin API's bound address, when it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminServer::local_addr)
    }

    /// The LeanCloud door's bound address, when it is on.
    pub fn gateway_addr(&self) -> Option<SocketAddr> {
        self.gateway
            .as_ref()
            .map(crate::gateway::Gateway::local_addr)
    }

    /// Resolves once the store has failed (`store::health`); the server
    /// must then be shut down, and [`RunningServer::shutdown`] says why.
    pub async fn store_failed(&self) {
        let mut rx = self.hub.store.watch_failure();
        if rx.wait_for(|f| *f).await.is_err() {
            // The store is gone, so it can no longer fail.
            std::future::pending::<()>().await;
        }
    }

    /// Stops accepting, closes every session with a reason once its pending
    /// sends are answered, drains the commit pipeline and flushes the store.
    ///
    /// `server.shutdown_grace_secs` bounds the whole: sessions, the admin
    /// API and the background tasks share one deadline (three quarters of
    /// the grace, the rest kept for the flush); what is left then is cut,
    /// and the endpoint's close is not waited on past the grace, since dead
    /// peers never acknowledge it.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        let started = tokio::time::Instant::now();
        let grace = Duration::from_secs(self.hub.config.server.shutdown_grace_secs);
        let cut = started + grace - grace / 4;
        let _ = self.shutdown.send(());
        let _ = tokio::time::timeout_at(cut, &mut self.accept).await;
        // Every session holds a sender; recv() yields None once all are dropped.
        // The accept loop's own sender went with it.
        if tokio::time::timeout_at(cut, self.done_rx.recv())
            .await
            .is_err()
        {
            warn!("sessions still open after the grace period; closing anyway");
        }
        // Whatever session is left loses its connection now, not after the
        // QUIC idle timeout.
        self.endpoint.close(
            crate::transport::app_close_code(ErrorCode::ServerShutdown),
            b"shutdown",
        );
        if let Some(g) = self.gateway.take() {
            g.join(cut.saturating_duration_since(tokio::time::Instant::now()))
                .await;
        }
        // Its requests may be waiting on the pipeline, which still runs.
        if let Some(a) = self.admin.take() {
            a.join(cut.saturating_duration_since(tokio::time::Instant::now()))
                .await;
        }
        // The outbox is in sled: what is undelivered waits for the next start.
        if tokio::time::timeout_at(cut, &mut self.hook_delivery)
            .await
            .is_err()
        {
            self.hook_delivery.abort();
        }
        // So is the webhook's queue; the worker may be waiting on the
        // pipeline, which still runs.
        for t in self.system_tasks.drain(..) {
            let _ = tokio::time::timeout_at(cut, t).await;
        }
        let hub = self.hub.clone();
        tokio::task::spawn_blocking(move || {
            hub.pipeline.stop();
            // A failed store must not write again (`store::health`).
            if let crate::store::health::Health::Failed { reason } = hub.store.health() {
                return Err(StoreError::Failed(reason));
            }
            hub.store.flush_durable()
        })
        .await
        .map_err(|e| ServerError::DataDir {
            path: "commit thread".into(),
            source: std::io::Error::other(e.to_string()),
        })??;
        let _ = tokio::time::timeout_at(started + grace, self.endpoint.wait_idle()).await;
        info!("shut down cleanly");
        Ok(())
    }
}

/// Loads every conversation, recovers its last seq from the log, and
/// restores its blacklist and muted members.
pub fn load_conversations(store: &Store) -> Result<ConversationTable, StoreError> {
    let table = ConversationTable::new(crate::util::now_ms);
    for rec in store.conversations()? {
        let (seq, ts) = match store.last_message(rec.id) {
            Ok(Some(e)) => (e.msg.seq, e.msg.timestamp),
            Ok(None) => (0, 0),
            // A damaged newest message (noted by the store, reported by
            // /healthz): its key still gives the seq, so none is reused;
            // the timestamp is unknown, and new ones come from the clock.
            // If not even the key reads, the conversation stays out of
            // the table rather than risk overwriting what it holds.
            Err(e) if e.is_damage() => match store.last_message_seq(rec.id) {
                Ok(Some(seq)) => (seq, 0),
                _ => {
                    tracing::error!(
                        conversation = %rec.id,
                        "not loaded: its newest message cannot be read"
                    );
                    continue;
                }
            },
            Err(e) => return Err(e),
        };
        table.insert(Arc::new(crate::core::conversation::Conv::new(rec, seq, ts)));
    }
    crate::conversation::moderation::load(store, &table)?;
    Ok(table)
}
