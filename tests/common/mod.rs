//! Shared test harness: a real server on 127.0.0.1 port 0 with a real sled
//! directory in a tempdir, and real QUIC clients through `tidings::client`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod admin;
pub mod hook_server;
pub mod node;
pub mod raw;
pub mod rest;
pub mod tmpfs;

use tidings::client::{Client, ClientEvent, ClientOptions, Events, Signer};
use tidings::config::Config;
use tidings::protocol::{
    ConvId, ConvKind, CreateConversation, Event, Message, SyncMode, UnreadItem,
};
use tidings::server::{RunningServer, Server};
use tidings::transport::ServerTrust;
use tidings::transport::tls::parse_fingerprint;

/// Upper bound for any single wait on an event in tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub config: Config,
    _dir: Option<tempfile::TempDir>,
}

pub fn test_config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.admin.listen = "127.0.0.1:0".parse().unwrap();
    c.gateway.listen = "127.0.0.1:0".parse().unwrap();
    c.server.data_dir = dir.to_path_buf();
    c.server.shutdown_grace_secs = 2;
    c.store.cache_capacity_mb = 16;
    c.log.level = "warn".into();
    c
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts with the default test config changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let server = Server::start(config.clone()).await.expect("server starts");
        TestServer {
            server: Some(server),
            config,
            _dir: Some(dir),
        }
    }

    pub fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("server running")
    }

    pub fn addr(&self) -> SocketAddr {
        self.running().local_addr()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.server.data_dir.clone()
    }

    /// Graceful shutdown, then a new server on the same data dir (a new port).
    pub async fn restart(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
        self.start_again().await;
    }

    /// A new server on the same data dir, after the last one stopped.
    pub async fn start_again(&mut self) {
        // sled 0.34 can hold the data dir's file lock a moment after the last
        // handle is dropped (spacejam/sled#1234): retry that one error, bounded.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Server::start(self.config.clone()).await {
                Ok(s) => {
                    self.server = Some(s);
                    return;
                }
                Err(e)
                    if e.to_string().contains("lock") && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("restart: {e}"),
            }
        }
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }

    pub fn options(&self, client_id: &str) -> ClientOptions {
        let s = self.running();
        let pin = parse_fingerprint(s.fingerprint()).expect("fingerprint");
        ClientOptions::new(
            s.local_addr(),
            ServerTrust::Pin(pin),
            s.credentials().app_id.clone(),
            Signer::MasterKey(s.credentials().master_key.clone()),
            client_id,
        )
    }

    pub async fn connect(&self, client_id: &str) -> (Client, Events) {
        self.connect_with(self.options(client_id)).await
    }

    pub async fn connect_with(&self, opts: ClientOptions) -> (Client, Events) {
        let who = opts.client_id.clone();
        let (c, mut ev) = Client::connect(opts)
            .await
            .unwrap_or_else(|e| panic!("{who} logs in: {e}"));
        // Push-mode logins end their sync with SyncDone; pull-mode with Unread.
        let _ = ev
            .wait_for(WAIT, |e| match e {
                ClientEvent::Server(Event::SyncDone { .. } | Event::Unread { .. }) => Some(()),
                _ => None,
            })
            .await;
        (c, ev)
    }

    /// Connects without consuming the sync events.
    pub async fn connect_raw(&self, opts: ClientOptions) -> (Client, Events) {
        Client::connect(opts).await.expect("login")
    }

    pub fn pull(&self, client_id: &str) -> ClientOptions {
        let mut o = self.options(client_id);
        o.sync = SyncMode::Pull;
        o
    }
}

pub fn group(members: &[&str]) -> CreateConversation {
    CreateConversation {
        members: members.iter().map(|s| s.to_string()).collect(),
        name: None,
        attr: None,
        unique: false,
        kind: ConvKind::Normal,
        sig: None,
        ttl_secs: None,
    }
}

pub fn text(m: &Message) -> &str {
    match &m.content {
        tidings::protocol::Content::Text(t) => t,
        _ => "<binary>",
    }
}

/// The LeanCloud code of a call that must fail.
pub fn code_of<T: std::fmt::Debug>(r: Result<T, tidings::client::ClientError>) -> u16 {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e
            .code()
            .unwrap_or_else(|| panic!("error without a code: {e}")),
    }
}

/// Polls `f` (bounded by `WAIT`) for server-side state that has no event.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the async `f` (bounded by `WAIT`) for state that no event announces.
pub async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    poll_for(what, WAIT, || {
        let done = f();
        async move {
            if done.await {
                Ok(())
            } else {
                Err(String::new())
            }
        }
    })
    .await
}

/// Polls the async `f` (bounded by `bound`) until it gives `Ok`, and
/// returns its value; on timing out panics naming `what` and the last
/// `Err` (what was there instead).
pub async fn poll_for<T, F, Fut>(what: &str, bound: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let why = match f().await {
            Ok(v) => return v,
            Err(why) => why,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {bound:?} waiting for {what}; {why}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every message of `conv`, oldest first, paging through history.
pub async fn full_history(c: &Client, conv: ConvId) -> Vec<Message> {
    try_full_history(c, conv).await.expect("history")
}

/// Every message of `conv`, oldest first, or the error that stopped the paging.
pub async fn try_full_history(
    c: &Client,
    conv: ConvId,
) -> Result<Vec<Message>, tidings::client::ClientError> {
    use tidings::protocol::{Anchor, Direction, HistoryQuery};
    let mut out = Vec::new();
    let mut anchor = Anchor::Earliest;
    loop {
        let (page, more) = c
            .history(HistoryQuery {
                conv,
                anchor: anchor.clone(),
                direction: Direction::After,
                inclusive: false,
                limit: 1000,
                lctype: None,
            })
            .await?;
        if let Some(last) = page.last() {
            anchor = Anchor::Seq(last.seq);
        }
        let done = !more || page.is_empty();
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// A JSON array of strings, sorted.
pub fn sorted_strings(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect();
    out.sort();
    out
}

/// `(conversation, count, last message id)` of each Unread item.
pub fn unread_summary(items: &[UnreadItem]) -> Vec<(ConvId, u64, Option<String>)> {
    items
        .iter()
        .map(|i| {
            (
                i.conv,
                i.count,
                i.last_message.as_ref().map(|m| m.msg_id.clone()),
            )
        })
        .collect()
}

/// Pull-mode sync: the Unread items; no message may be pushed before them.
pub async fn pull_sync(ev: &mut Events) -> Vec<UnreadItem> {
    ev.wait_for(WAIT, |e| match e {
        ClientEvent::Server(Event::Unread { items }) => Some(items.clone()),
        ClientEvent::Server(Event::Message { msg, .. }) => {
            panic!("pull mode pushed a message at login: {msg:?}")
        }
        _ => None,
    })
    .await
    .expect("Unread at a pull-mode login")
}

/// Push-mode sync as a fresh login sees it: the synced messages, then the
/// `SyncDone` counts `(conversations, messages, skipped)`.
pub async fn push_sync(ev: &mut Events) -> (Vec<Message>, (u32, u32, u64)) {
    let mut msgs = Vec::new();
    let done = ev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::Message {
                msg, redelivered, ..
            }) => {
                assert!(*redelivered, "synced messages are flagged redelivered");
                msgs.push(msg.clone());
                None
            }
            ClientEvent::Server(Event::SyncDone {
                conversations,
                messages,
                skipped,
            }) => Some((*conversations, *messages, *skipped)),
            _ => None,
        })
        .await
        .expect("SyncDone");
    (msgs, done)
}

/// A new chat room created by `by` (who is not in it until joining).
pub async fn create_room(by: &Client) -> ConvId {
    by.create_conversation(CreateConversation {
        members: Vec::new(),
        name: Some("lobby".into()),
        attr: None,
        unique: false,
        kind: ConvKind::ChatRoom,
        sig: None,
        ttl_secs: None,
    })
    .await
    .expect("room created")
    .id
}
