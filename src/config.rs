//! Server configuration: one TOML file, overridable key by key from the
//! environment.
//!
//! Every key has a default, so an empty file (or no file) is a working
//! config. Sources, later ones winning: built-in defaults, the TOML file,
//! `TIDINGS_<SECTION>_<KEY>` environment variables. The result is validated
//! once, up front, so the rest of the server can trust it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hooks::Hook;

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "TIDINGS_";

/// Environment variable naming the config file. It shares the prefix but is
/// not a config key, so the env overlay skips it.
pub const CONFIG_PATH_ENV: &str = "TIDINGS_CONFIG";

/// Largest accepted `limits.max_frame_bytes`; bigger frames would let one
/// client pin a lot of memory per connection.
pub const MAX_FRAME_BYTES_LIMIT: u32 = 16 * 1024 * 1024;

/// Smallest accepted `limits.max_frame_bytes`; below this even a login frame
/// with a signature may not fit.
pub const MIN_FRAME_BYTES_LIMIT: u32 = 1024;

/// Ceiling on durations given in seconds (one year). Keeps `Instant + d`
/// arithmetic elsewhere from overflowing on absurd values.
const MAX_SECS: u64 = 365 * 24 * 3600;
/// Three keep-alive intervals are QUIC's idle timeout, which quinn caps
/// well above this; an hour apart no longer keeps NAT bindings open anyway.
const MAX_KEEP_ALIVE_SECS: u64 = 3600;

/// Ceiling on the sled cache, in MiB (1 TiB), so converting to bytes cannot
/// overflow.
const MAX_CACHE_MB: u64 = 1 << 20;

/// Ceiling on hook timeouts (10 minutes): a before-hook holds up a client's
/// request, so anything longer is a mistake, not a setting.
const MAX_HOOK_TIMEOUT_MS: u64 = 600_000;

/// Bounds of `system.webhook_timeout_ms`: LeanCloud's 5 s is the default;
/// a longer wait only delays the rest of the queue.
const MAX_WEBHOOK_TIMEOUT_MS: u64 = 60_000;

/// Bounds of `hooks.max_response_bytes`: below 1 KiB even a small rewrite
/// does not fit; above 64 MiB one answer could pin a lot of memory.
const MIN_HOOK_RESPONSE_BYTES: u64 = 1024;
const MAX_HOOK_RESPONSE_BYTES: u64 = 64 << 20;

/// Ceiling on `hooks.outbox_capacity`, so a typo cannot let the outbox fill
/// the disk.
const MAX_OUTBOX_CAPACITY: u64 = 100_000_000;

/// Ceilings on the hook-protection keys: past these a value is a typo, and
/// a day-long forgetting of an undefined hook or a breaker held open for
/// hours would hide a fixed endpoint for too long.
const MAX_UNDEFINED_RETRY_SECS: u64 = 86_400;
const MAX_BREAKER_FAILURES: u32 = 1000;
const MAX_BREAKER_COOLDOWN_MS: u64 = 3_600_000;
const MAX_OUTBOX_ATTEMPTS: u32 = 1_000_000;
const MAX_OUTBOX_AGE_SECS: u64 = 30 * 86_400;

/// The documented default config file, printed by `tidings config
/// print-default`. Loading it yields exactly `Config::default()`.
pub const DEFAULT_TOML: &str = r#"# Tidings configuration.
#
# Every key is optional: a missing key takes the default shown here, so this
# file documents the defaults rather than being required. Any key can also be
# set from the environment as TIDINGS_<SECTION>_<KEY>, which wins over this
# file, e.g. TIDINGS_SERVER_LISTEN=0.0.0.0:7450 or TIDINGS_STORE_FSYNC=false.

[server]
# UDP address the QUIC endpoint binds. Loopback by default so a fresh install
# is not reachable from the network until you decide it should be.
listen = "127.0.0.1:7450"

# Where the message store, the generated TLS certificate and the generated
# master key live. Default: $STATE_DIRECTORY when systemd sets it
# (StateDirectory=), else ./tidings-data. Commented out so that copying this
# file to /etc keeps the systemd default working.
# data_dir = "./tidings-data"

# PEM certificate chain and private key. Give both or neither. With neither, a
# self-signed certificate is generated into data_dir on first start and
# clients pin its SHA-256 fingerprint instead of trusting a CA.
# tls_cert = "/etc/tidings/cert.pem"
# tls_key = "/etc/tidings/key.pem"

# Seconds a graceful shutdown (SIGTERM/SIGINT) gives sessions to close and
# pending sends to drain before the store is flushed. Keep it below systemd's
# TimeoutStopSec so systemd does not SIGKILL a shutdown in progress.
shutdown_grace_secs = 10

[auth]
# "signature": a login must carry a LeanCloud-style HMAC-SHA1 signature made
# with master_key, so only clients your app server vouches for get in.
# "open": anyone may log in as any client id; for local development only.
mode = "signature"

# Application id included in every signed login string (LeanCloud's appId).
# Set it to your existing LeanCloud app id so the signing code in your app
# server keeps working unchanged.
# app_id = "your-leancloud-app-id"

# Secret that login signatures are made with (LeanCloud's master key). Only
# your app server should know it; at least 16 characters. When unset, a random
# key is generated into data_dir on first start, where the local CLI finds it.
# master_key = "change-me-to-a-long-random-secret"

# Seconds a signature's timestamp may differ from the server clock. Bounds
# how long a captured signature stays usable; nonces are remembered for this
# long so a signature cannot be replayed inside the window either.
signature_window_secs = 300

[limits]
# Largest protocol frame accepted from a client, in bytes (1024 to 16 MiB).
# Bounds the memory one connection can make the server buffer.
max_frame_bytes = 65536

# Largest message content, in bytes. 5120 is LeanCloud's 5 KB limit, so apps
# that respect it there behave the same here. Must be below max_frame_bytes
# because the frame also carries the message's metadata.
max_content_bytes = 5120

# Milliseconds a new connection may take to log in before it is closed, so
# unauthenticated connections cannot hold resources.
login_timeout_ms = 5000

# Seconds a live connection may go without sending a frame (pings count)
# before it is closed with 4107. Dead peers are noticed sooner, by
# keep_alive_secs below.
idle_timeout_secs = 120

# Seconds between QUIC keep-alive packets, sent by the server and by the
# CLI. A peer that answers nothing for three intervals is dead: with the
# default 10, a client that vanished without closing (a kill -9, a lost
# network) is noticed within 30 s, its session freed and its will sent.
keep_alive_secs = 10

# Most members one conversation may have. Bounds the fan-out of a single send.
max_members = 500

# Bytes one connection may hold in memory: replies, events and deliveries
# waiting to be written to it, plus the sends it asked for that wait their
# turn. Over it, the connection's requests are not read until it shrinks;
# twice over it (deliveries cannot wait), it is closed with 4201.
max_backlog_bytes = 16777216

# Seconds a connection may stay over max_backlog_bytes before it is closed
# with 4201 (SEND_MESSAGE_TIMEOUT). Its undelivered messages stay in the log
# for its next sync.
backlog_stall_secs = 30
# Most QUIC connections open at once, logged in or not. A new one beyond it
# is refused at the handshake (the client sees QUIC's CONNECTION_REFUSED), so
# a connection flood cannot exhaust memory or file descriptors. 0: no cap.
max_connections = 20000

# New QUIC handshakes per second above which a client must first prove its
# address with a QUIC Retry (one extra round trip, done by the QUIC stack,
# invisible to the app), so a flood from spoofed addresses costs the server
# no handshake work. 0: every handshake is retried.
retry_above_handshakes_per_sec = 200

# Logins per minute from one IP address (a burst of that many, then
# refilled evenly). Beyond it a login is answered 4117 QUOTA_EXCEEDED and the
# connection closed, before its signature is checked. Generous by default
# because carrier NAT puts many users behind one address. 0: no limit.
logins_per_ip_per_min = 600

# Failed login signatures per minute from one IP address. Past them, every
# login from that address is answered 4117 until the budget refills, so
# signatures cannot be guessed and bad ones cannot burn CPU. 0: no limit.
failed_logins_per_ip_per_min = 30

# The admin listener: most TCP connections open at once. One beyond it gets
# an immediate 503 {"code": 503, ...} and is closed. 0: no cap.
admin_max_connections = 256

# Seconds a connection to the admin listener may take to send a request's
# headers (also the most it may idle between requests); then it is closed.
admin_header_timeout_secs = 10

# Largest request head (request line and headers, in bytes) the admin
# listener takes; a bigger one is answered 431 {"code": 431, ...}.
admin_max_header_bytes = 16384

# Requests per second from one IP address that carry no valid master-key
# credentials (/healthz, /metrics and refused ones; a burst of that many).
# Beyond it they are answered 429 {"code": 429, ...} with Retry-After.
# Requests with valid credentials are not limited. 0: no limit.
admin_unauthenticated_per_sec = 50

[quotas]
# Per-client and per-connection quotas. Every key: 0 turns it off.
#
# Messages one client (all its devices together) may send per second, over
# a burst of messages_burst. A send beyond it is answered 4116
# MESSAGE_SENT_QUOTA_EXCEEDED and not stored; the client may retry later.
messages_per_sec = 50
messages_burst = 200

# Conversations one client may create per hour (a burst of that many, then
# refilled evenly). Beyond it a create is answered 4117 QUOTA_EXCEEDED.
conversations_per_hour = 600

# Most conversations one client may be a member of. A create or join beyond
# it is answered 4117 QUOTA_EXCEEDED.
max_conversations_per_client = 10000

# Requests other than sends (history, conversation changes, receipts, ...)
# and typing notices one connection may make per second (a burst of that
# many). A request beyond it is answered 4117 QUOTA_EXCEEDED; a typing
# notice beyond it is dropped.
requests_per_sec = 100

# Pings one connection may send per second (a burst of that many). A client
# that pings faster is closed with 4117 QUOTA_EXCEEDED; clients ping every
# 20 s or so.
pings_per_sec = 5

[delivery]
# Seconds the server waits for a client to acknowledge a delivered message
# before delivering it again.
ack_timeout_secs = 30

# Most offline messages pushed per conversation when a client logs in
# (push-mode sync). Keeps login fast; older messages come from history.
push_sync_limit = 20

# Most messages one pull-mode sync request returns, so a client that was
# offline for long catches up in bounded steps.
pull_sync_limit = 50

# Most messages one history query returns (1 to 1000, LeanCloud's ceiling).
history_max_limit = 1000

[messages]
# Whether senders may edit their messages (no time limit). When false an edit
# is answered with 4406. LeanCloud's "Allow editing messages with SDK".
allow_edit = true

# Whether senders may recall their messages (no time limit). When false a
# recall is answered with 4407.
allow_recall = true

# A word list for keyword filtering: one word or phrase per line, blank lines
# and lines starting with # ignored. Matches are case-insensitive (Unicode)
# substrings and are replaced by ***; the sender is told with reason -4408.
# Re-read on every SIGHUP. Unset: no filtering.
# keyword_file = "/etc/tidings/keywords.txt"

# Least seconds between two _typingStarted hook calls for one client in one
# conversation, so a chatty keyboard cannot flood the hook endpoint.
typing_hook_interval_secs = 5

[store]
# Most sends committed by one flush. Sends arriving while a flush runs share
# the next one, so one fdatasync pays for many messages; the cap keeps a burst
# from delaying acknowledgements without bound.
group_commit_max = 1024

# How long, in microseconds, the first send of a group waits for company
# before the flush. Each flush has a fixed CPU cost (sled wakes its I/O
# threads), so a short wait makes moderate loads much cheaper; 0 flushes at
# once.
group_commit_linger_us = 500

# fdatasync the log after every group flush, so an acknowledged message
# survives a power cut. false: it survives a process crash only, but sends
# are cheaper.
fsync = true

# Page cache of the store, in MiB. More cache keeps more recent history in
# memory instead of on disk.
cache_capacity_mb = 256

# Free disk space, in MiB, kept in reserve on the data dir's file system.
# Below it, anything that would write to the store (sends, conversation
# changes, hook records, broadcasts) is refused with 4200 (the admin API
# answers 503), /healthz answers 503, and writes resume by themselves once
# space is freed. 0 turns the check off: a full disk then fails a write
# inside the store, and the server stops so that a restart recovers.
min_free_mb = 128

[log]
# tracing EnvFilter directive, e.g. "info" or "tidings=debug,quinn=warn".
# RUST_LOG, when set, overrides it.
level = "info"

# "text" for people, "json" (one object per line) for log collectors. Logs go
# to stderr.
format = "text"

[admin]
# The admin REST API (LeanCloud's /1.2/rtm paths, plus /healthz and
# /metrics): how an app backend creates system conversations, sends to users
# and reads history. Every /1.2 call needs X-LC-Id: <app_id> and
# X-LC-Key: <master_key>,master, sent in clear over plain HTTP, so keep it on
# loopback or a private network.
enabled = true

# TCP address of the admin API. Loopback by default, like server.listen.
listen = "127.0.0.1:7451"

[system]
# System conversations (official accounts, bots) are driven through the
# admin API. Clients' messages to them are kept as LeanCloud's _SysMessage
# rows (GET /1.1/classes/_SysMessage) and, when webhook_url is set, POSTed
# there in batches: a JSON array of rows, in order per conversation, from a
# queue in the store that a restart does not lose. Each POST carries X-LC-Id
# and, when hooks.hook_key is set, X-LC-Hook-Key. Unset: rows are only kept.
# webhook_url = "http://127.0.0.1:3000/sys-messages"

# Milliseconds one webhook POST may take, answer included (LeanCloud's 5 s).
# A failed POST is retried up to 3 times, after a quarter of this, then half,
# then all of it; then its batch is given up (logged and counted).
webhook_timeout_ms = 5000

# A broadcast's online fan-out: clients handed the message per step, and
# most clients reached per second (0: as fast as the server goes, yielding
# between steps). Pacing trades the broadcast's own latency for other
# messages' tail while it goes out (each delivery also brings back an ack
# through the shared UDP socket): at 20000/s, 100,000 online clients have
# it within about 5 s.
fan_out_step = 100
fan_out_rate = 0

[hooks]
# LeanCloud-style hooks: HTTP calls to your app server that follow
# LeanEngine's contract, so hook code written for LeanCloud runs unchanged.
# Every hook is POSTed to {base_url}/1.1/functions/{hookName}. With no
# base_url (and no per-hook urls below), no hook is called.
# base_url = "http://127.0.0.1:3000"

# Sent as X-LC-Hook-Key; LeanEngine compares it with LEANCLOUD_APP_HOOK_KEY.
# Every call also carries X-LC-Id (auth.app_id) and X-LC-Key
# (auth.master_key followed by ",master").
# hook_key = "your-hook-key"

# Milliseconds one call may take, answer included. A before-hook
# (_messageReceived, _conversationStart, ...) holds up the client's request
# that long at worst.
timeout_ms = 5000

# Milliseconds to open a connection, so a dead endpoint fails fast.
connect_timeout_ms = 1000

# What a failed before-hook (timeout, non-200 status, bad answer) means.
# "open", LeanCloud's default: the request goes on as if the hook had
# answered {}. "closed": the request fails with an error to the client.
fail_policy = "open"

# After-hooks (_messageSent, _conversationStarted, ...) wait in an on-disk
# outbox and are retried until delivered, in order per conversation. When this
# many are waiting, new ones are dropped and counted, so a dead hook endpoint
# never slows down messaging.
outbox_capacity = 100000

# Largest hook answer accepted, in bytes (1024 to 64 MiB); a bigger one is a
# failed call.
max_response_bytes = 1048576

# An endpoint that answers HTTP 404 or LeanEngine's error code 1 does not
# define the hook. It is not called again for this many seconds (or until a
# reload): after-hooks queued for it are discarded (counted), before-hooks
# answer as fail_policy says.
undefined_retry_secs = 300

# Circuit breaker per endpoint: after this many failures or timeouts in a
# row, calls are not made for breaker_cooldown_ms; before-hooks answer as
# fail_policy says at once, after-hooks wait. Then one call probes the
# endpoint; its success closes the breaker. 0 turns the breaker off.
breaker_failures = 5
breaker_cooldown_ms = 10000

# An after-hook call still undelivered after this many attempts, or this many
# seconds after it was queued, moves to the dead-letter list
# (`tidings hooks dead-letters list|retry|purge`).
outbox_max_attempts = 50
outbox_max_age_secs = 86400

# Per-hook settings, under LeanCloud's hook name or Skygear's
# (after_message_sent, after_conversation_created, ...). urls replaces the
# base_url endpoint; with several, a before-hook runs them in order, each
# seeing the previous one's changes, and an after-hook goes to all of them.
# timeout_ms overrides the one above; enabled = false turns the hook off.
# [hooks.hook._messageReceived]
# urls = ["http://127.0.0.1:3000/1.1/functions/_messageReceived"]
# timeout_ms = 2000
# enabled = true
"#;

/// Everything that can go wrong turning files and env into a `Config`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong
    /// type; the text comes from the toml crate and names the key.
    #[error("{0}")]
    Parse(String),
    /// A `TIDINGS_*` environment variable is unknown or has a bad value.
    #[error("environment variable {var}: {msg}")]
    Env { var: String, msg: String },
    /// A value parsed but is out of range or inconsistent with another.
    #[error("{key} {msg}")]
    Invalid { key: String, msg: String },
}

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerSection,
    pub auth: AuthSection,
    pub limits: LimitsSection,
    pub quotas: QuotasSection,
    pub delivery: DeliverySection,
    pub messages: MessagesSection,
    pub store: StoreSection,
    pub log: LogSection,
    pub admin: AdminSection,
    pub system: SystemSection,
    pub hooks: HooksSection,
}

/// Where the server listens and keeps its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Loopback by default: nothing is exposed until the operator says so.
    pub listen: SocketAddr,
    /// `$STATE_DIRECTORY` under systemd so `StateDirectory=` just works.
    pub data_dir: PathBuf,
    /// PEM chain; with `tls_key`, replaces the generated self-signed cert.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Bounded so a stuck client cannot block shutdown forever.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7450)),
            data_dir: default_data_dir(),
            tls_cert: None,
            tls_key: None,
            shutdown_grace_secs: 10,
        }
    }
}

/// How logins are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// LeanCloud HMAC-SHA1 signatures: the app server vouches for each login.
    #[default]
    Signature,
    /// No signature checks; development only.
    Open,
}

/// Login authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    pub mode: AuthMode,
    /// Part of the signed string, as in LeanCloud, so existing signers work.
    pub app_id: Option<String>,
    /// Generated into the data dir on first start when absent.
    pub master_key: Option<String>,
    /// Clock skew tolerated and nonce memory, which together stop replays.
    pub signature_window_secs: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            mode: AuthMode::Signature,
            app_id: None,
            master_key: None,
            signature_window_secs: 300,
        }
    }
}

/// Per-connection resource limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Bounds per-connection buffering.
    pub max_frame_bytes: u32,
    /// LeanCloud's 5 KB, so apps behave as they did there.
    pub max_content_bytes: u32,
    /// Unauthenticated connections must not linger.
    pub login_timeout_ms: u64,
    /// Frees sessions of clients that stay connected but say nothing.
    pub idle_timeout_secs: u64,
    /// Notices a vanished peer long before `idle_timeout_secs`, so wills
    /// and presence follow it within seconds (`transport::dead_peer_timeout`).
    pub keep_alive_secs: u64,
    /// Bounds the fan-out of one send.
    pub max_members: u32,
    /// Bounds the memory one connection can hold, whatever it asks for.
    pub max_backlog_bytes: u64,
    /// A client that does not read is let go, not held.
    pub backlog_stall_secs: u64,
    /// A connection flood must not exhaust memory or descriptors.
    pub max_connections: u32,
    /// Above this, spoofed-address floods cost a Retry packet, not a handshake.
    pub retry_above_handshakes_per_sec: u32,
    /// Checked before the signature, so a login storm costs little.
    pub logins_per_ip_per_min: u32,
    /// Stops signature guessing and bad-signature CPU floods.
    pub failed_logins_per_ip_per_min: u32,
    /// Half-open admin connections must not exhaust descriptors.
    pub admin_max_connections: u32,
    /// A connection that never finishes its headers is closed.
    pub admin_header_timeout_secs: u64,
    /// Answered with a JSON 431 rather than hyper's empty one.
    pub admin_max_header_bytes: u32,
    /// Probes and bad credentials cannot flood the admin API.
    pub admin_unauthenticated_per_sec: u32,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_frame_bytes: 65536,
            max_content_bytes: 5120,
            login_timeout_ms: 5000,
            idle_timeout_secs: 120,
            keep_alive_secs: 10,
            max_members: 500,
            max_backlog_bytes: 16 * 1024 * 1024,
            backlog_stall_secs: 30,
            max_connections: 20000,
            retry_above_handshakes_per_sec: 200,
            logins_per_ip_per_min: 600,
            failed_logins_per_ip_per_min: 30,
            admin_max_connections: 256,
            admin_header_timeout_secs: 10,
            admin_max_header_bytes: 16384,
            admin_unauthenticated_per_sec: 50,
        }
    }
}

/// Per-client and per-connection quotas (`guard`); 0 turns one off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotasSection {
    /// One client cannot fill the disk at line rate.
    pub messages_per_sec: u32,
    /// Lets a client catch up after a pause without being refused.
    pub messages_burst: u32,
    /// Each conversation stays in memory for good.
    pub conversations_per_hour: u32,
    /// Bounds a client's login sync and conversation list.
    pub max_conversations_per_client: u32,
    /// One connection cannot take a core with cheap requests.
    pub requests_per_sec: u32,
    /// Pings are for keep-alive; a flood of them is abuse.
    pub pings_per_sec: u32,
}

impl Default for QuotasSection {
    fn default() -> Self {
        Self {
            messages_per_sec: 50,
            messages_burst: 200,
            conversations_per_hour: 600,
            max_conversations_per_client: 10000,
            requests_per_sec: 100,
            pings_per_sec: 5,
        }
    }
}

/// Delivery, redelivery and sync batch sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySection {
    /// Unacknowledged deliveries are retried after this long.
    pub ack_timeout_secs: u64,
    /// Keeps login fast; the rest comes from history.
    pub push_sync_limit: u32,
    /// Catch-up happens in bounded steps.
    pub pull_sync_limit: u32,
    /// LeanCloud's ceiling for one history query.
    pub history_max_limit: u32,
}

impl Default for DeliverySection {
    fn default() -> Self {
        Self {
            ack_timeout_secs: 30,
            push_sync_limit: 20,
            pull_sync_limit: 50,
            history_max_limit: 1000,
        }
    }
}

/// Edit, recall, keyword filtering and typing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagesSection {
    /// LeanCloud makes editing an app-wide switch.
    pub allow_edit: bool,
    /// LeanCloud makes recalling an app-wide switch.
    pub allow_recall: bool,
    /// Re-read on SIGHUP, so words can be added without a restart.
    pub keyword_file: Option<PathBuf>,
    /// Rate limit of `_typingStarted` per client and conversation.
    pub typing_hook_interval_secs: u64,
}

impl Default for MessagesSection {
    fn default() -> Self {
        Self {
            allow_edit: true,
            allow_recall: true,
            keyword_file: None,
            typing_hook_interval_secs: 5,
        }
    }
}

/// The durable message log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Caps a group commit so a burst cannot delay acks without bound.
    pub group_commit_max: u32,
    /// Wait for more sends before a flush; trades that much latency for
    /// fewer flushes.
    pub group_commit_linger_us: u64,
    /// fdatasync after each group flush: acks then survive power loss.
    pub fsync: bool,
    /// sled page cache.
    pub cache_capacity_mb: u64,
    /// sled keeps its first I/O error for good, so a disk must never fill
    /// under it: writes stop at this reserve instead (`store::health`).
    pub min_free_mb: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            group_commit_max: 1024,
            group_commit_linger_us: 500,
            fsync: true,
            cache_capacity_mb: 256,
            min_free_mb: 128,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people reading a terminal or the journal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// An `EnvFilter` directive; `RUST_LOG` overrides it at run time.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// The admin REST API (`crate::admin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// On by default: it is how an app backend drives system conversations.
    pub enabled: bool,
    /// Loopback by default: the master key travels in a header, in clear.
    pub listen: SocketAddr,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 7451)),
        }
    }
}

/// System conversations: the webhook for clients' messages to them
/// (`crate::sysmsg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemSection {
    /// Where batches of `_SysMessage` rows are POSTed; unset, they are
    /// only kept for the admin API's query.
    pub webhook_url: Option<String>,
    /// LeanCloud's 5 s; tests use less.
    pub webhook_timeout_ms: u64,
    /// Clients per step of a broadcast's online fan-out (`crate::broadcast`).
    pub fan_out_step: u64,
    /// Most clients a fan-out reaches per second; 0 is unpaced.
    pub fan_out_rate: u64,
}

impl Default for SystemSection {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_timeout_ms: 5000,
            fan_out_step: 100,
            fan_out_rate: 0,
        }
    }
}

/// What a failed before-hook means for the request waiting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailPolicy {
    /// LeanCloud's default: the request goes on as if the hook answered `{}`.
    #[default]
    Open,
    /// The request fails, as with LeanCloud's "Return error and stop
    /// processing request when hook failed".
    Closed,
}

/// HTTP hooks to the app server (LeanEngine's contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksSection {
    /// Hooks go to `{base_url}/1.1/functions/{name}`, LeanEngine's path.
    pub base_url: Option<String>,
    /// `X-LC-Hook-Key`, which LeanEngine checks.
    pub hook_key: Option<String>,
    /// Bounds how long a before-hook can hold up a request.
    pub timeout_ms: u64,
    /// A dead endpoint should fail fast.
    pub connect_timeout_ms: u64,
    pub fail_policy: FailPolicy,
    /// Bounds the disk a dead endpoint can make the outbox use.
    pub outbox_capacity: u64,
    /// Bounds the memory one answer can take.
    pub max_response_bytes: u64,
    /// An app's undefined function is not called over and over.
    pub undefined_retry_secs: u64,
    /// Failures in a row that open an endpoint's breaker; 0 is off.
    pub breaker_failures: u32,
    /// How long an open breaker answers without calling.
    pub breaker_cooldown_ms: u64,
    /// A record that can never be delivered must not stay in the outbox forever.
    pub outbox_max_attempts: u32,
    pub outbox_max_age_secs: u64,
    /// Per-hook overrides, keyed by LeanCloud name (Skygear aliases are
    /// renamed to it on load).
    pub hook: BTreeMap<String, HookOverride>,
}

impl Default for HooksSection {
    fn default() -> Self {
        Self {
            base_url: None,
            hook_key: None,
            timeout_ms: 5000,
            connect_timeout_ms: 1000,
            fail_policy: FailPolicy::Open,
            outbox_capacity: 100_000,
            max_response_bytes: 1 << 20,
            undefined_retry_secs: 300,
            breaker_failures: 5,
            breaker_cooldown_ms: 10_000,
            outbox_max_attempts: 50,
            outbox_max_age_secs: 86_400,
            hook: BTreeMap::new(),
        }
    }
}

impl HooksSection {
    /// The override for `hook`, under its name or its alias.
    pub fn override_for(&self, hook: Hook) -> Option<&HookOverride> {
        self.hook
            .iter()
            .find(|(name, _)| Hook::from_name(name) == Some(hook))
            .map(|(_, o)| o)
    }

    /// Whether any hook has somewhere to go.
    pub fn any_endpoint(&self) -> bool {
        self.base_url.is_some() || self.hook.values().any(|o| !o.urls.is_empty())
    }

    /// Renames alias keys to LeanCloud names. After `validate`, so no two
    /// keys name the same hook and none is unknown.
    fn normalize_names(&mut self) {
        let old = std::mem::take(&mut self.hook);
        for (name, o) in old {
            let name = Hook::from_name(&name).map_or(name, |h| h.name().to_owned());
            self.hook.insert(name, o);
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(base) = &self.base_url {
            let url = http_url("hooks.base_url", base)?;
            if url.query().is_some() || url.fragment().is_some() {
                return invalid(
                    "hooks.base_url",
                    "must not have a query or fragment: /1.1/functions/<hook> is appended to it",
                );
            }
        }
        if let Some(key) = &self.hook_key {
            if key.is_empty() {
                return invalid("hooks.hook_key", "must not be empty when set");
            }
            if !is_header_text(key) {
                return invalid(
                    "hooks.hook_key",
                    "must be printable ASCII (it is an HTTP header)",
                );
            }
        }
        range("hooks.timeout_ms", self.timeout_ms, 1, MAX_HOOK_TIMEOUT_MS)?;
        range(
            "hooks.connect_timeout_ms",
            self.connect_timeout_ms,
            1,
            MAX_HOOK_TIMEOUT_MS,
        )?;
        range(
            "hooks.outbox_capacity",
            self.outbox_capacity,
            1,
            MAX_OUTBOX_CAPACITY,
        )?;
        range(
            "hooks.max_response_bytes",
            self.max_response_bytes,
            MIN_HOOK_RESPONSE_BYTES,
            MAX_HOOK_RESPONSE_BYTES,
        )?;
        range(
            "hooks.undefined_retry_secs",
            self.undefined_retry_secs,
            1,
            MAX_UNDEFINED_RETRY_SECS,
        )?;
        range(
            "hooks.breaker_failures",
            u64::from(self.breaker_failures),
            0,
            u64::from(MAX_BREAKER_FAILURES),
        )?;
        range(
            "hooks.breaker_cooldown_ms",
            self.breaker_cooldown_ms,
            1,
            MAX_BREAKER_COOLDOWN_MS,
        )?;
        range(
            "hooks.outbox_max_attempts",
            u64::from(self.outbox_max_attempts),
            1,
            u64::from(MAX_OUTBOX_ATTEMPTS),
        )?;
        range(
            "hooks.outbox_max_age_secs",
            self.outbox_max_age_secs,
            1,
            MAX_OUTBOX_AGE_SECS,
        )?;
        let mut seen: BTreeMap<Hook, &str> = BTreeMap::new();
        for (name, o) in &self.hook {
            let key = format!("hooks.hook.{name}");
            let Some(hook) = Hook::from_name(name) else {
                return invalid(&key, &Hook::unknown_reason(name));
            };
            if let Some(first) = seen.insert(hook, name) {
                return invalid(
                    &key,
                    &format!("names the same hook as hooks.hook.{first} ({hook})"),
                );
            }
            for (i, u) in o.urls.iter().enumerate() {
                http_url(&format!("{key}.urls[{i}]"), u)?;
            }
            if let Some(t) = o.timeout_ms {
                range(&format!("{key}.timeout_ms"), t, 1, MAX_HOOK_TIMEOUT_MS)?;
            }
        }
        Ok(())
    }
}

/// One hook's settings under `[hooks.hook.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HookOverride {
    /// Replaces the `base_url` endpoint. Before-hooks run several as a
    /// chain, after-hooks go to all; empty means the `base_url` one.
    pub urls: Vec<String>,
    /// Overrides `hooks.timeout_ms`.
    pub timeout_ms: Option<u64>,
    /// `false` turns the hook off whatever the URLs.
    pub enabled: bool,
}

impl Default for HookOverride {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            timeout_ms: None,
            enabled: true,
        }
    }
}

/// Parses an http or https URL with a host, naming `key` on failure.
fn http_url(key: &str, text: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(text).map_err(|e| ConfigError::Invalid {
        key: key.to_owned(),
        msg: format!("is not a URL ({e}): {text:?}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid {
            key: key.to_owned(),
            msg: format!("must be an http or https URL, not {}:", url.scheme()),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::Invalid {
            key: key.to_owned(),
            msg: format!("has no host: {text:?}"),
        });
    }
    Ok(url)
}

/// What an HTTP header value may hold without escaping.
fn is_header_text(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// How an environment value is turned into a TOML value.
#[derive(Clone, Copy)]
enum EnvKind {
    /// Always a string: paths, addresses and keys may look like numbers.
    Str,
    /// Parsed as a TOML value (number, bool), falling back to a string.
    Value,
}

/// Every key settable from the environment. A unit test checks this list
/// against the struct, so a new field cannot be forgotten here.
const ENV_KEYS: &[(&str, &str, EnvKind)] = &[
    ("server", "listen", EnvKind::Str),
    ("server", "data_dir", EnvKind::Str),
    ("server", "tls_cert", EnvKind::Str),
    ("server", "tls_key", EnvKind::Str),
    ("server", "shutdown_grace_secs", EnvKind::Value),
    ("auth", "mode", EnvKind::Str),
    ("auth", "app_id", EnvKind::Str),
    ("auth", "master_key", EnvKind::Str),
    ("auth", "signature_window_secs", EnvKind::Value),
    ("limits", "max_frame_bytes", EnvKind::Value),
    ("limits", "max_content_bytes", EnvKind::Value),
    ("limits", "login_timeout_ms", EnvKind::Value),
    ("limits", "idle_timeout_secs", EnvKind::Value),
    ("limits", "keep_alive_secs", EnvKind::Value),
    ("limits", "max_members", EnvKind::Value),
    ("limits", "max_backlog_bytes", EnvKind::Value),
    ("limits", "backlog_stall_secs", EnvKind::Value),
    ("limits", "max_connections", EnvKind::Value),
    ("limits", "retry_above_handshakes_per_sec", EnvKind::Value),
    ("limits", "logins_per_ip_per_min", EnvKind::Value),
    ("limits", "failed_logins_per_ip_per_min", EnvKind::Value),
    ("limits", "admin_max_connections", EnvKind::Value),
    ("limits", "admin_header_timeout_secs", EnvKind::Value),
    ("limits", "admin_max_header_bytes", EnvKind::Value),
    ("limits", "admin_unauthenticated_per_sec", EnvKind::Value),
    ("quotas", "messages_per_sec", EnvKind::Value),
    ("quotas", "messages_burst", EnvKind::Value),
    ("quotas", "conversations_per_hour", EnvKind::Value),
    ("quotas", "max_conversations_per_client", EnvKind::Value),
    ("quotas", "requests_per_sec", EnvKind::Value),
    ("quotas", "pings_per_sec", EnvKind::Value),
    ("delivery", "ack_timeout_secs", EnvKind::Value),
    ("delivery", "push_sync_limit", EnvKind::Value),
    ("delivery", "pull_sync_limit", EnvKind::Value),
    ("delivery", "history_max_limit", EnvKind::Value),
    ("messages", "allow_edit", EnvKind::Value),
    ("messages", "allow_recall", EnvKind::Value),
    ("messages", "keyword_file", EnvKind::Str),
    ("messages", "typing_hook_interval_secs", EnvKind::Value),
    ("store", "group_commit_max", EnvKind::Value),
    ("store", "group_commit_linger_us", EnvKind::Value),
    ("store", "fsync", EnvKind::Value),
    ("store", "cache_capacity_mb", EnvKind::Value),
    ("store", "min_free_mb", EnvKind::Value),
    ("log", "level", EnvKind::Str),
    ("log", "format", EnvKind::Str),
    ("admin", "enabled", EnvKind::Value),
    ("admin", "listen", EnvKind::Str),
    ("system", "webhook_url", EnvKind::Str),
    ("system", "webhook_timeout_ms", EnvKind::Value),
    ("system", "fan_out_step", EnvKind::Value),
    ("system", "fan_out_rate", EnvKind::Value),
    ("hooks", "base_url", EnvKind::Str),
    ("hooks", "hook_key", EnvKind::Str),
    ("hooks", "timeout_ms", EnvKind::Value),
    ("hooks", "connect_timeout_ms", EnvKind::Value),
    ("hooks", "fail_policy", EnvKind::Str),
    ("hooks", "outbox_capacity", EnvKind::Value),
    ("hooks", "max_response_bytes", EnvKind::Value),
    ("hooks", "undefined_retry_secs", EnvKind::Value),
    ("hooks", "breaker_failures", EnvKind::Value),
    ("hooks", "breaker_cooldown_ms", EnvKind::Value),
    ("hooks", "outbox_max_attempts", EnvKind::Value),
    ("hooks", "outbox_max_age_secs", EnvKind::Value),
];

/// Keys that exist but are tables, not settable from the environment.
const TABLE_KEYS: &[(&str, &str)] = &[("hooks", "hook")];

impl Config {
    /// Loads the file at `path` (if given; a given but missing file is an
    /// error, not a silent fallback to defaults), overlays `TIDINGS_*`
    /// environment variables and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let vars = tidings_env_vars()?;
        Self::load_with_env(path, vars.into_iter())
    }

    /// Parses `text` as a config file and validates it; no environment.
    pub fn load_from_str(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        config.hooks.normalize_names();
        Ok(config)
    }

    /// `load` with the environment passed in, so tests need not touch the
    /// process environment (which is shared between test threads).
    fn load_with_env(
        path: Option<&Path>,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (text, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Io {
                    path: p.to_path_buf(),
                    source,
                })?;
                (text, p.display().to_string())
            }
            None => (String::new(), String::new()),
        };
        let parse_err = |e: toml::de::Error| {
            if origin.is_empty() {
                ConfigError::Parse(e.to_string())
            } else {
                ConfigError::Parse(format!("{origin}: {e}"))
            }
        };
        // Deserializing the text directly gives errors with line numbers and
        // the offending key; the table below is only for merging the env in.
        let from_file: Config = toml::from_str(&text).map_err(parse_err)?;
        let mut table: toml::Table = toml::from_str(&text).map_err(parse_err)?;
        let applied = apply_env(&mut table, vars)?;
        let mut config = if applied == 0 {
            from_file
        } else {
            table
                .try_into::<Config>()
                .map_err(|e| ConfigError::Parse(e.to_string()))?
        };
        config.validate()?;
        config.hooks.normalize_names();
        Ok(config)
    }

    /// Checks ranges and cross-key consistency. The error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.data_dir.as_os_str().is_empty() {
            return invalid("server.data_dir", "must not be empty");
        }
        match (&s.tls_cert, &s.tls_key) {
            (Some(_), None) => {
                return invalid("server.tls_key", "must be set when server.tls_cert is set");
            }
            (None, Some(_)) => {
                return invalid("server.tls_cert", "must be set when server.tls_key is set");
            }
            _ => {}
        }
        if s.tls_cert
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return invalid("server.tls_cert", "must not be empty");
        }
        if s.tls_key.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return invalid("server.tls_key", "must not be empty");
        }
        at_most(
            "server.shutdown_grace_secs",
            s.shutdown_grace_secs,
            MAX_SECS,
        )?;

        let a = &self.auth;
        if a.app_id.as_ref().is_some_and(|id| id.trim().is_empty()) {
            return invalid("auth.app_id", "must not be empty when set");
        }
        if a.master_key
            .as_ref()
            .is_some_and(|k| k.chars().count() < 16)
        {
            return invalid("auth.master_key", "must be at least 16 characters");
        }
        range(
            "auth.signature_window_secs",
            a.signature_window_secs,
            1,
            MAX_SECS,
        )?;

        let l = &self.limits;
        range(
            "limits.max_frame_bytes",
            l.max_frame_bytes.into(),
            MIN_FRAME_BYTES_LIMIT.into(),
            MAX_FRAME_BYTES_LIMIT.into(),
        )?;
        if l.max_content_bytes == 0 {
            return invalid("limits.max_content_bytes", "must be at least 1");
        }
        if l.max_content_bytes >= l.max_frame_bytes {
            return invalid(
                "limits.max_content_bytes",
                &format!(
                    "must be less than limits.max_frame_bytes ({})",
                    l.max_frame_bytes
                ),
            );
        }
        range(
            "limits.login_timeout_ms",
            l.login_timeout_ms,
            1,
            MAX_SECS * 1000,
        )?;
        range("limits.idle_timeout_secs", l.idle_timeout_secs, 1, MAX_SECS)?;
        range(
            "limits.keep_alive_secs",
            l.keep_alive_secs,
            1,
            MAX_KEEP_ALIVE_SECS,
        )?;
        if l.max_members == 0 {
            return invalid("limits.max_members", "must be at least 1");
        }
        // At least one largest frame, or a single reply could pause forever.
        range(
            "limits.max_backlog_bytes",
            l.max_backlog_bytes,
            u64::from(l.max_frame_bytes),
            1 << 40,
        )?;
        range(
            "limits.backlog_stall_secs",
            l.backlog_stall_secs,
            1,
            MAX_SECS,
        )?;
        range(
            "limits.admin_header_timeout_secs",
            l.admin_header_timeout_secs,
            1,
            3600,
        )?;
        range(
            "limits.admin_max_header_bytes",
            l.admin_max_header_bytes.into(),
            1024,
            1 << 20,
        )?;
        let q = &self.quotas;
        if q.messages_per_sec > 0 && q.messages_burst == 0 {
            return invalid(
                "quotas.messages_burst",
                "must be at least 1 when quotas.messages_per_sec is set",
            );
        }

        let d = &self.delivery;
        range("delivery.ack_timeout_secs", d.ack_timeout_secs, 1, MAX_SECS)?;
        if d.push_sync_limit == 0 {
            return invalid("delivery.push_sync_limit", "must be at least 1");
        }
        if d.pull_sync_limit == 0 {
            return invalid("delivery.pull_sync_limit", "must be at least 1");
        }
        range(
            "delivery.history_max_limit",
            d.history_max_limit.into(),
            1,
            1000,
        )?;

        let m = &self.messages;
        if m.keyword_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return invalid("messages.keyword_file", "must not be empty when set");
        }
        range(
            "messages.typing_hook_interval_secs",
            m.typing_hook_interval_secs,
            0,
            3600,
        )?;

        let st = &self.store;
        if st.group_commit_max == 0 {
            return invalid("store.group_commit_max", "must be at least 1");
        }
        range(
            "store.group_commit_linger_us",
            st.group_commit_linger_us,
            0,
            100_000,
        )?;
        range(
            "store.cache_capacity_mb",
            st.cache_capacity_mb,
            1,
            MAX_CACHE_MB,
        )?;
        at_most("store.min_free_mb", st.min_free_mb, MAX_CACHE_MB)?;

        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            return invalid(
                "log.level",
                &format!("is not a valid tracing filter directive: {e}"),
            );
        }
        // Hook calls send these as headers; without hooks anything goes.
        if self.hooks.any_endpoint() {
            if a.app_id.as_deref().is_some_and(|id| !is_header_text(id)) {
                return invalid(
                    "auth.app_id",
                    "must be printable ASCII when hooks are on (it is sent as a header)",
                );
            }
            if a.master_key.as_deref().is_some_and(|k| !is_header_text(k)) {
                return invalid(
                    "auth.master_key",
                    "must be printable ASCII when hooks are on (it is sent as a header)",
                );
            }
        }
        // [admin]: both keys are fully checked by their types.
        let sys = &self.system;
        if let Some(url) = &sys.webhook_url {
            http_url("system.webhook_url", url)?;
            if a.app_id.as_deref().is_some_and(|id| !is_header_text(id)) {
                return invalid(
                    "auth.app_id",
                    "must be printable ASCII when system.webhook_url is set (it is sent as a header)",
                );
            }
        }
        range(
            "system.webhook_timeout_ms",
            sys.webhook_timeout_ms,
            1,
            MAX_WEBHOOK_TIMEOUT_MS,
        )?;
        range("system.fan_out_step", sys.fan_out_step, 1, 100_000)?;
        range("system.fan_out_rate", sys.fan_out_rate, 0, 100_000_000)?;
        self.hooks.validate()
    }

    /// Which keys differ from `new`, split into those a running server
    /// applies on reload (SIGHUP) and those that need a restart. Each list
    /// holds dotted key names in declaration order.
    pub fn live_changes(&self, new: &Config) -> (Vec<String>, Vec<String>) {
        let (live, restart): (Vec<&str>, Vec<&str>) = self
            .changed_keys(new)
            .into_iter()
            .partition(|key| LIVE_KEYS.contains(key));
        (
            live.into_iter().map(str::to_owned).collect(),
            restart.into_iter().map(str::to_owned).collect(),
        )
    }

    /// Copies the keys in [`LIVE_KEYS`] from `new`, so `self` stays what the
    /// process actually runs with: restart-only keys keep being reported on
    /// every later reload until the restart happens.
    pub fn apply_live(&mut self, new: &Config) {
        self.log.level.clone_from(&new.log.level);
        self.messages
            .keyword_file
            .clone_from(&new.messages.keyword_file);
        self.hooks.clone_from(&new.hooks);
    }

    /// Every key whose value differs. The destructuring lists each field, so
    /// a field added to a section without being compared does not compile.
    fn changed_keys(&self, new: &Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        macro_rules! diff {
            ($section:ident: $ty:ident { $($field:ident),* $(,)? }) => {{
                let $ty { $($field),* } = &self.$section;
                $(
                    if *$field != new.$section.$field {
                        out.push(concat!(stringify!($section), ".", stringify!($field)));
                    }
                )*
            }};
        }
        let Config {
            server: _,
            auth: _,
            limits: _,
            quotas: _,
            delivery: _,
            messages: _,
            store: _,
            log: _,
            admin: _,
            system: _,
            hooks: _,
        } = self;
        diff!(server: ServerSection { listen, data_dir, tls_cert, tls_key, shutdown_grace_secs });
        diff!(auth: AuthSection { mode, app_id, master_key, signature_window_secs });
        diff!(limits: LimitsSection {
            max_frame_bytes,
            max_content_bytes,
            login_timeout_ms,
            idle_timeout_secs,
            keep_alive_secs,
            max_members,
            max_backlog_bytes,
            backlog_stall_secs,
            max_connections,
            retry_above_handshakes_per_sec,
            logins_per_ip_per_min,
            failed_logins_per_ip_per_min,
            admin_max_connections,
            admin_header_timeout_secs,
            admin_max_header_bytes,
            admin_unauthenticated_per_sec,
        });
        diff!(quotas: QuotasSection {
            messages_per_sec,
            messages_burst,
            conversations_per_hour,
            max_conversations_per_client,
            requests_per_sec,
            pings_per_sec,
        });
        diff!(delivery: DeliverySection {
            ack_timeout_secs,
            push_sync_limit,
            pull_sync_limit,
            history_max_limit,
        });
        diff!(messages: MessagesSection {
            allow_edit,
            allow_recall,
            keyword_file,
            typing_hook_interval_secs,
        });
        diff!(store: StoreSection {
            group_commit_max,
            group_commit_linger_us,
            fsync,
            cache_capacity_mb,
            min_free_mb,
        });
        diff!(log: LogSection { level, format });
        diff!(admin: AdminSection { enabled, listen });
        diff!(system: SystemSection { webhook_url, webhook_timeout_ms, fan_out_step, fan_out_rate });
        diff!(hooks: HooksSection {
            base_url,
            hook_key,
            timeout_ms,
            connect_timeout_ms,
            fail_policy,
            outbox_capacity,
            max_response_bytes,
            undefined_retry_secs,
            breaker_failures,
            breaker_cooldown_ms,
            outbox_max_attempts,
            outbox_max_age_secs,
            hook,
        });
        out
    }
}

/// Keys a running server applies on reload; every other key is read once at
/// start. The keyword file is re-read on every reload, changed or not.
pub const LIVE_KEYS: &[&str] = &[
    "log.level",
    "messages.keyword_file",
    "hooks.base_url",
    "hooks.hook_key",
    "hooks.timeout_ms",
    "hooks.connect_timeout_ms",
    "hooks.fail_policy",
    "hooks.outbox_capacity",
    "hooks.max_response_bytes",
    "hooks.undefined_retry_secs",
    "hooks.breaker_failures",
    "hooks.breaker_cooldown_ms",
    "hooks.outbox_max_attempts",
    "hooks.outbox_max_age_secs",
    "hooks.hook",
];

fn invalid(key: &str, msg: &str) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key: key.to_owned(),
        msg: msg.to_owned(),
    })
}

fn range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        invalid(key, &format!("must be between {min} and {max}"))
    }
}

fn at_most(key: &str, value: u64, max: u64) -> Result<(), ConfigError> {
    if value <= max {
        Ok(())
    } else {
        invalid(key, &format!("must be at most {max}"))
    }
}

/// `$STATE_DIRECTORY` (set by systemd's `StateDirectory=`) or `./tidings-data`.
fn default_data_dir() -> PathBuf {
    data_dir_from(std::env::var_os("STATE_DIRECTORY"))
}

/// systemd joins several state directories with `:`; the first one is ours.
fn data_dir_from(state_directory: Option<OsString>) -> PathBuf {
    state_directory
        .as_deref()
        .and_then(|dirs| std::env::split_paths(dirs).find(|p| !p.as_os_str().is_empty()))
        .unwrap_or_else(|| PathBuf::from("./tidings-data"))
}

/// The process's `TIDINGS_*` variables. Not `std::env::vars()`, which panics
/// on a non-UTF-8 variable anywhere in the environment.
fn tidings_env_vars() -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in std::env::vars_os() {
        if !name.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes()) {
            continue;
        }
        let name = name.into_string().map_err(|n| ConfigError::Env {
            var: n.to_string_lossy().into_owned(),
            msg: "name is not valid UTF-8".to_owned(),
        })?;
        let value = value.into_string().map_err(|_| ConfigError::Env {
            var: name.clone(),
            msg: "value is not valid UTF-8".to_owned(),
        })?;
        out.push((name, value));
    }
    Ok(out)
}

/// Inserts every `TIDINGS_<SECTION>_<KEY>` variable into `table`, returning
/// how many were applied. Other variables are ignored; `TIDINGS_CONFIG`
/// names the file and is skipped.
fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<usize, ConfigError> {
    let mut applied = 0;
    for (var, raw) in vars {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if var == CONFIG_PATH_ENV {
            continue;
        }
        let env_err = |msg: String| ConfigError::Env {
            var: var.clone(),
            msg,
        };
        // Section names have no underscore, so the first one splits.
        let Some((section, key)) = rest.split_once('_') else {
            return Err(env_err(
                "not a config key; expected TIDINGS_<SECTION>_<KEY>".to_owned(),
            ));
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        if TABLE_KEYS.contains(&(section.as_str(), key.as_str())) {
            return Err(env_err(format!(
                "{section}.{key} is a table; set it in the config file"
            )));
        }
        let Some(&(_, _, kind)) = ENV_KEYS.iter().find(|(s, k, _)| *s == section && *k == key)
        else {
            return Err(env_err(format!("unknown config key {section}.{key}")));
        };
        let value = match kind {
            EnvKind::Str => toml::Value::String(raw),
            EnvKind::Value => parse_env_value(raw),
        };
        // Check this one value alone so a type error names the variable.
        let mut probe_section = toml::Table::new();
        probe_section.insert(key.clone(), value.clone());
        let mut probe = toml::Table::new();
        probe.insert(section.clone(), toml::Value::Table(probe_section));
        if let Err(e) = probe.try_into::<Config>() {
            // toml usually appends "in `section.key`"; make sure it is there.
            let msg = e.to_string().trim().replace('\n', " ");
            let dotted = format!("{section}.{key}");
            return Err(env_err(if msg.contains(&dotted) {
                msg
            } else {
                format!("{msg} (for {dotted})")
            }));
        }
        let slot = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match slot {
            toml::Value::Table(t) => {
                t.insert(key, value);
            }
            // The file already failed to parse as Config in this case, so
            // this is unreachable in practice; still, no panics on input.
            _ => return Err(env_err(format!("[{section}] in the file is not a table"))),
        }
        applied += 1;
    }
    Ok(applied)
}

/// A TOML scalar if the text is one (`42`, `true`), else the raw string.
fn parse_env_value(raw: String) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) if t.len() == 1 => t.remove("v").unwrap_or(toml::Value::String(raw)),
        _ => toml::Value::String(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn load_env(file: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(file).expect("test toml");
        apply_env(&mut table, env(pairs))?;
        let config: Config = table
            .try_into()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn default_toml_is_default() {
        let parsed = Config::load_from_str(DEFAULT_TOML).expect("default toml loads");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn defaults_are_valid_and_empty_file_is_default() {
        Config::default().validate().expect("defaults validate");
        assert_eq!(Config::load_from_str("").unwrap(), Config::default());
    }

    #[test]
    fn defaults_match_spec() {
        let c = Config::default();
        assert_eq!(c.server.listen, "127.0.0.1:7450".parse().unwrap());
        assert_eq!(c.auth.mode, AuthMode::Signature);
        assert_eq!(c.limits.max_frame_bytes, 65536);
        assert_eq!(c.limits.max_content_bytes, 5120);
        assert_eq!(c.delivery.history_max_limit, 1000);
        assert!(c.store.fsync);
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn state_directory_sets_data_dir() {
        assert_eq!(data_dir_from(None), PathBuf::from("./tidings-data"));
        assert_eq!(
            data_dir_from(Some("/var/lib/tidings".into())),
            PathBuf::from("/var/lib/tidings")
        );
        assert_eq!(
            data_dir_from(Some("/var/lib/a:/var/lib/b".into())),
            PathBuf::from("/var/lib/a")
        );
        assert_eq!(
            data_dir_from(Some("".into())),
            PathBuf::from("./tidings-data")
        );
    }

    #[test]
    fn env_overrides_file() {
        let c = load_env(
            "[limits]\nmax_frame_bytes = 4096\n[server]\nlisten = \"0.0.0.0:1\"\n",
            &[
                ("TIDINGS_LIMITS_MAX_FRAME_BYTES", "8192"),
                ("TIDINGS_SERVER_DATA_DIR", "/tmp/x"),
                ("TIDINGS_AUTH_MODE", "open"),
                ("TIDINGS_STORE_FSYNC", "false"),
                ("TIDINGS_AUTH_MASTER_KEY", "12345678901234567890"),
                ("TIDINGS_LOG_FORMAT", "json"),
                ("TIDINGS_CONFIG", "/etc/tidings/tidings.toml"),
                ("PATH", "/bin"),
            ],
        )
        .unwrap();
        assert_eq!(c.limits.max_frame_bytes, 8192);
        assert_eq!(c.server.listen, "0.0.0.0:1".parse().unwrap());
        assert_eq!(c.server.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.auth.mode, AuthMode::Open);
        assert!(!c.store.fsync);
        assert_eq!(c.auth.master_key.as_deref(), Some("12345678901234567890"));
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn load_with_env_reads_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "[delivery]\nack_timeout_secs = 7\n").unwrap();
        let c = Config::load_with_env(
            Some(&path),
            env(&[("TIDINGS_DELIVERY_PULL_SYNC_LIMIT", "9")]),
        )
        .unwrap();
        assert_eq!(c.delivery.ack_timeout_secs, 7);
        assert_eq!(c.delivery.pull_sync_limit, 9);
    }

    #[test]
    fn missing_explicit_file_is_error() {
        let err = Config::load_with_env(Some(Path::new("/nonexistent/tidings.toml")), env(&[]))
            .unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/tidings.toml"));
    }

    #[test]
    fn unknown_key_in_file_names_it() {
        let err = Config::load_from_str("[limits]\nmax_frame_byte = 4096\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)));
        assert!(err.to_string().contains("max_frame_byte"), "{err}");
        let err = Config::load_from_str("[limit]\n").unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[test]
    fn wrong_type_in_file_names_key() {
        let err = Config::load_from_str("[store]\nfsync = \"yes\"\n").unwrap_err();
        assert!(err.to_string().contains("fsync"), "{err}");
    }

    #[test]
    fn invalid_values_name_key() {
        let cases: &[(&str, &str)] = &[
            (
                "[limits]\nmax_frame_bytes = 100\n",
                "limits.max_frame_bytes",
            ),
            (
                "[limits]\nmax_frame_bytes = 16777217\n",
                "limits.max_frame_bytes",
            ),
            (
                "[limits]\nmax_content_bytes = 65536\n",
                "limits.max_content_bytes",
            ),
            (
                "[limits]\nlogin_timeout_ms = 0\n",
                "limits.login_timeout_ms",
            ),
            (
                "[limits]\nidle_timeout_secs = 0\n",
                "limits.idle_timeout_secs",
            ),
            ("[limits]\nkeep_alive_secs = 0\n", "limits.keep_alive_secs"),
            (
                "[limits]\nkeep_alive_secs = 3601\n",
                "limits.keep_alive_secs",
            ),
            (
                "[delivery]\nack_timeout_secs = 0\n",
                "delivery.ack_timeout_secs",
            ),
            (
                "[delivery]\npush_sync_limit = 0\n",
                "delivery.push_sync_limit",
            ),
            (
                "[delivery]\npull_sync_limit = 0\n",
                "delivery.pull_sync_limit",
            ),
            (
                "[delivery]\nhistory_max_limit = 1001\n",
                "delivery.history_max_limit",
            ),
            (
                "[delivery]\nhistory_max_limit = 0\n",
                "delivery.history_max_limit",
            ),
            ("[store]\ngroup_commit_max = 0\n", "store.group_commit_max"),
            (
                "[limits]\nadmin_header_timeout_secs = 0\n",
                "limits.admin_header_timeout_secs",
            ),
            (
                "[limits]\nadmin_max_header_bytes = 10\n",
                "limits.admin_max_header_bytes",
            ),
            ("[quotas]\nmessages_burst = 0\n", "quotas.messages_burst"),
            (
                "[auth]\nsignature_window_secs = 0\n",
                "auth.signature_window_secs",
            ),
            ("[auth]\nmaster_key = \"short\"\n", "auth.master_key"),
            ("[server]\ntls_cert = \"c.pem\"\n", "server.tls_key"),
            ("[server]\ntls_key = \"k.pem\"\n", "server.tls_cert"),
            ("[log]\nlevel = \"info,,=[\"\n", "log.level"),
        ];
        for (text, key) in cases {
            match Config::load_from_str(text) {
                Err(e @ ConfigError::Invalid { .. }) => {
                    assert!(e.to_string().starts_with(key), "{text:?}: {e}")
                }
                other => panic!("{text:?}: expected Invalid({key}), got {other:?}"),
            }
        }
        let err = Config::load_from_str("[limits]\nmax_frame_bytes = 100\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "limits.max_frame_bytes must be between 1024 and 16777216"
        );
    }

    #[test]
    fn tls_pair_is_accepted() {
        let c =
            Config::load_from_str("[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n").unwrap();
        assert_eq!(c.server.tls_cert, Some(PathBuf::from("c.pem")));
    }

    #[test]
    fn unknown_env_var_is_error() {
        for var in [
            "TIDINGS_LIMITS_NOPE",
            "TIDINGS_NOPE_LEVEL",
            "TIDINGS_SERVER",
            "TIDINGS_",
        ] {
            let err = load_env("", &[(var, "1")]).unwrap_err();
            match &err {
                ConfigError::Env { var: v, .. } => assert_eq!(v, var),
                other => panic!("{var}: expected Env error, got {other:?}"),
            }
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn bad_env_value_names_var() {
        let err = load_env("", &[("TIDINGS_STORE_FSYNC", "yes")]).unwrap_err();
        assert!(matches!(err, ConfigError::Env { .. }), "{err}");
        assert!(err.to_string().contains("TIDINGS_STORE_FSYNC"), "{err}");
        let err = load_env("", &[("TIDINGS_SERVER_LISTEN", "nowhere")]).unwrap_err();
        assert!(err.to_string().contains("TIDINGS_SERVER_LISTEN"), "{err}");
        let err = load_env("", &[("TIDINGS_LIMITS_MAX_FRAME_BYTES", "-1")]).unwrap_err();
        assert!(
            err.to_string().contains("TIDINGS_LIMITS_MAX_FRAME_BYTES"),
            "{err}"
        );
        // Parses fine but out of range: reported by validate, naming the key.
        let err = load_env("", &[("TIDINGS_LIMITS_MAX_FRAME_BYTES", "10")]).unwrap_err();
        assert!(
            err.to_string().starts_with("limits.max_frame_bytes"),
            "{err}"
        );
    }

    #[test]
    fn env_keys_cover_every_field() {
        let mut full = Config::default();
        full.server.tls_cert = Some("c".into());
        full.server.tls_key = Some("k".into());
        full.auth.app_id = Some("a".into());
        full.auth.master_key = Some("m".into());
        full.hooks.base_url = Some("http://h".into());
        full.messages.keyword_file = Some("w".into());
        full.hooks.hook_key = Some("k".into());
        full.system.webhook_url = Some("http://w".into());
        let table = toml::Table::try_from(&full).unwrap();
        let mut from_struct: Vec<(String, String)> = Vec::new();
        for (section, v) in &table {
            for key in v.as_table().unwrap().keys() {
                if !TABLE_KEYS.contains(&(section.as_str(), key.as_str())) {
                    from_struct.push((section.clone(), key.clone()));
                }
            }
        }
        let mut listed: Vec<(String, String)> = ENV_KEYS
            .iter()
            .map(|(s, k, _)| (s.to_string(), k.to_string()))
            .collect();
        from_struct.sort();
        listed.sort();
        assert_eq!(from_struct, listed);
    }

    #[test]
    fn live_changes_splits_live_from_restart() {
        let old = Config::default();
        assert_eq!(old.live_changes(&old.clone()), (vec![], vec![]));

        let mut new = old.clone();
        new.log.level = "tidings=debug".to_owned();
        assert_eq!(
            old.live_changes(&new),
            (vec!["log.level".to_owned()], vec![])
        );

        new.server.listen = "0.0.0.0:7450".parse().unwrap();
        new.auth.master_key = Some("0123456789abcdef".to_owned());
        new.log.format = LogFormat::Json;
        let (live, restart) = old.live_changes(&new);
        assert_eq!(live, ["log.level"]);
        assert_eq!(restart, ["server.listen", "auth.master_key", "log.format"]);
    }

    #[test]
    fn live_changes_sees_every_key() {
        let old = Config::default();
        let new = Config {
            server: ServerSection {
                listen: "0.0.0.0:1".parse().unwrap(),
                data_dir: "/elsewhere".into(),
                tls_cert: Some("c.pem".into()),
                tls_key: Some("k.pem".into()),
                shutdown_grace_secs: 1,
            },
            auth: AuthSection {
                mode: AuthMode::Open,
                app_id: Some("app".into()),
                master_key: Some("0123456789abcdef".into()),
                signature_window_secs: 1,
            },
            limits: LimitsSection {
                max_frame_bytes: 2048,
                max_content_bytes: 1,
                login_timeout_ms: 1,
                idle_timeout_secs: 1,
                keep_alive_secs: 1,
                max_members: 1,
                max_backlog_bytes: 4096,
                backlog_stall_secs: 1,
                max_connections: 1,
                retry_above_handshakes_per_sec: 1,
                logins_per_ip_per_min: 1,
                failed_logins_per_ip_per_min: 1,
                admin_max_connections: 1,
                admin_header_timeout_secs: 1,
                admin_max_header_bytes: 1024,
                admin_unauthenticated_per_sec: 1,
            },
            quotas: QuotasSection {
                messages_per_sec: 1,
                messages_burst: 1,
                conversations_per_hour: 1,
                max_conversations_per_client: 1,
                requests_per_sec: 1,
                pings_per_sec: 1,
            },
            delivery: DeliverySection {
                ack_timeout_secs: 1,
                push_sync_limit: 1,
                pull_sync_limit: 1,
                history_max_limit: 1,
            },
            messages: MessagesSection {
                allow_edit: false,
                allow_recall: false,
                keyword_file: Some("words.txt".into()),
                typing_hook_interval_secs: 1,
            },
            store: StoreSection {
                group_commit_max: 1,
                group_commit_linger_us: 1,
                fsync: false,
                cache_capacity_mb: 1,
                min_free_mb: 1,
            },
            log: LogSection {
                level: "debug".into(),
                format: LogFormat::Json,
            },
            admin: AdminSection {
                enabled: false,
                listen: "0.0.0.0:1".parse().unwrap(),
            },
            system: SystemSection {
                webhook_url: Some("http://w".into()),
                webhook_timeout_ms: 1,
                fan_out_step: 1,
                fan_out_rate: 1,
            },
            hooks: HooksSection {
                base_url: Some("http://h".into()),
                hook_key: Some("k".into()),
                timeout_ms: 1,
                connect_timeout_ms: 1,
                fail_policy: FailPolicy::Closed,
                outbox_capacity: 1,
                max_response_bytes: 1,
                undefined_retry_secs: 1,
                breaker_failures: 1,
                breaker_cooldown_ms: 1,
                outbox_max_attempts: 1,
                outbox_max_age_secs: 1,
                hook: [("_clientOnline".to_owned(), HookOverride::default())].into(),
            },
        };
        let (live, restart) = old.live_changes(&new);
        let mut seen: Vec<String> = live.into_iter().chain(restart).collect();
        let mut all: Vec<String> = ENV_KEYS
            .iter()
            .map(|(s, k, _)| format!("{s}.{k}"))
            .chain(TABLE_KEYS.iter().map(|(s, k)| format!("{s}.{k}")))
            .collect();
        seen.sort();
        all.sort();
        assert_eq!(seen, all);
        for key in LIVE_KEYS {
            assert!(all.iter().any(|k| k == key), "{key} is not a config key");
        }
    }

    #[test]
    fn apply_live_takes_only_live_keys() {
        let mut running = Config::default();
        let mut new = running.clone();
        new.log.level = "warn".to_owned();
        new.limits.max_members = 7;
        running.apply_live(&new);
        assert_eq!(running.log.level, "warn");
        assert_eq!(running.limits.max_members, 500);
        // The restart-only key is still pending on the next reload.
        assert_eq!(
            running.live_changes(&new),
            (vec![], vec!["limits.max_members".to_owned()])
        );
    }

    #[test]
    fn hooks_section_parses_overrides_and_normalizes_aliases() {
        let c = Config::load_from_str(
            r#"
[hooks]
base_url = "https://hooks.example.com/app/"
hook_key = "hk"
fail_policy = "closed"
timeout_ms = 3000

[hooks.hook._messageReceived]
urls = ["http://127.0.0.1:3000/1.1/functions/_messageReceived", "http://127.0.0.1:3001/x"]
timeout_ms = 2000

[hooks.hook.after_message_sent]
enabled = false
"#,
        )
        .unwrap();
        let h = &c.hooks;
        assert_eq!(h.fail_policy, FailPolicy::Closed);
        assert_eq!(h.timeout_ms, 3000);
        assert_eq!(
            h.hook.keys().collect::<Vec<_>>(),
            ["_messageReceived", "_messageSent"]
        );
        let mr = h.override_for(Hook::MessageReceived).unwrap();
        assert_eq!(mr.urls.len(), 2);
        assert_eq!(mr.timeout_ms, Some(2000));
        assert!(mr.enabled);
        assert!(!h.override_for(Hook::MessageSent).unwrap().enabled);
        assert!(h.override_for(Hook::ClientOnline).is_none());
        // Before normalization, lookups see through aliases too.
        let mut raw = HooksSection::default();
        raw.hook
            .insert("typing_started".into(), HookOverride::default());
        assert!(raw.override_for(Hook::TypingStarted).is_some());
        assert!(!raw.any_endpoint());
    }

    #[test]
    fn hooks_env_overrides() {
        let c = load_env(
            "",
            &[
                ("TIDINGS_HOOKS_BASE_URL", "http://127.0.0.1:3000"),
                ("TIDINGS_HOOKS_HOOK_KEY", "12345"),
                ("TIDINGS_HOOKS_TIMEOUT_MS", "250"),
                ("TIDINGS_HOOKS_FAIL_POLICY", "closed"),
                ("TIDINGS_HOOKS_OUTBOX_CAPACITY", "7"),
            ],
        )
        .unwrap();
        assert_eq!(c.hooks.base_url.as_deref(), Some("http://127.0.0.1:3000"));
        assert_eq!(c.hooks.hook_key.as_deref(), Some("12345"));
        assert_eq!(c.hooks.timeout_ms, 250);
        assert_eq!(c.hooks.fail_policy, FailPolicy::Closed);
        assert_eq!(c.hooks.outbox_capacity, 7);
        let err = load_env("", &[("TIDINGS_HOOKS_HOOK", "x")]).unwrap_err();
        assert!(matches!(err, ConfigError::Env { .. }), "{err}");
        let err = load_env("", &[("TIDINGS_HOOKS_FAIL_POLICY", "maybe")]).unwrap_err();
        assert!(
            err.to_string().contains("TIDINGS_HOOKS_FAIL_POLICY"),
            "{err}"
        );
    }

    #[test]
    fn admin_section_defaults_and_env() {
        let c = Config::default();
        assert!(c.admin.enabled);
        assert_eq!(c.admin.listen, "127.0.0.1:7451".parse().unwrap());
        let c = load_env(
            "[admin]\nenabled = false\n",
            &[("TIDINGS_ADMIN_LISTEN", "0.0.0.0:8451")],
        )
        .unwrap();
        assert!(!c.admin.enabled);
        assert_eq!(c.admin.listen, "0.0.0.0:8451".parse().unwrap());
        let err = load_env("", &[("TIDINGS_ADMIN_LISTEN", "7451")]).unwrap_err();
        assert!(err.to_string().contains("TIDINGS_ADMIN_LISTEN"), "{err}");
        let mut new = c.clone();
        new.admin.listen = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            c.live_changes(&new),
            (vec![], vec!["admin.listen".to_owned()])
        );
    }

    #[test]
    fn system_section_defaults_env_and_checks() {
        let c = Config::default();
        assert_eq!(c.system.webhook_url, None);
        assert_eq!(c.system.webhook_timeout_ms, 5000);
        let c = load_env(
            "[system]\nwebhook_timeout_ms = 200\n",
            &[("TIDINGS_SYSTEM_WEBHOOK_URL", "http://127.0.0.1:3000/sys")],
        )
        .unwrap();
        assert_eq!(
            c.system.webhook_url.as_deref(),
            Some("http://127.0.0.1:3000/sys")
        );
        assert_eq!(c.system.webhook_timeout_ms, 200);
        let cases: &[(&str, &str)] = &[
            (
                "[system]\nwebhook_url = \"ftp://x/\"\n",
                "system.webhook_url",
            ),
            ("[system]\nwebhook_url = \"nope\"\n", "system.webhook_url"),
            (
                "[system]\nwebhook_timeout_ms = 0\n",
                "system.webhook_timeout_ms",
            ),
            (
                "[system]\nwebhook_timeout_ms = 60001\n",
                "system.webhook_timeout_ms",
            ),
            (
                "[auth]\napp_id = \"caf\u{e9}\"\n[system]\nwebhook_url = \"http://h\"\n",
                "auth.app_id",
            ),
        ];
        for (text, key) in cases {
            match Config::load_from_str(text) {
                Err(e @ ConfigError::Invalid { .. }) => {
                    assert!(e.to_string().starts_with(key), "{text:?}: {e}")
                }
                other => panic!("{text:?}: expected Invalid({key}), got {other:?}"),
            }
        }
        let err = load_env("", &[("TIDINGS_SYSTEM_WEBHOOK_TIMEOUT_MS", "soon")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("TIDINGS_SYSTEM_WEBHOOK_TIMEOUT_MS"),
            "{err}"
        );
        let mut new = c.clone();
        new.system.webhook_url = None;
        assert_eq!(
            c.live_changes(&new),
            (vec![], vec!["system.webhook_url".to_owned()])
        );
    }

    #[test]
    fn invalid_hooks_values_name_key() {
        let cases: &[(&str, &str)] = &[
            ("[hooks]\nbase_url = \"ftp://x/\"\n", "hooks.base_url"),
            ("[hooks]\nbase_url = \"not a url\"\n", "hooks.base_url"),
            ("[hooks]\nbase_url = \"http://h/?a=1\"\n", "hooks.base_url"),
            ("[hooks]\nhook_key = \"\"\n", "hooks.hook_key"),
            ("[hooks]\nhook_key = \"a\\nb\"\n", "hooks.hook_key"),
            ("[hooks]\ntimeout_ms = 0\n", "hooks.timeout_ms"),
            (
                "[hooks]\nconnect_timeout_ms = 0\n",
                "hooks.connect_timeout_ms",
            ),
            ("[hooks]\noutbox_capacity = 0\n", "hooks.outbox_capacity"),
            (
                "[hooks]\nundefined_retry_secs = 0\n",
                "hooks.undefined_retry_secs",
            ),
            (
                "[hooks]\nbreaker_failures = 1001\n",
                "hooks.breaker_failures",
            ),
            (
                "[hooks]\nbreaker_cooldown_ms = 0\n",
                "hooks.breaker_cooldown_ms",
            ),
            (
                "[hooks]\noutbox_max_attempts = 0\n",
                "hooks.outbox_max_attempts",
            ),
            (
                "[hooks]\noutbox_max_age_secs = 0\n",
                "hooks.outbox_max_age_secs",
            ),
            (
                "[hooks]\nmax_response_bytes = 10\n",
                "hooks.max_response_bytes",
            ),
            (
                "[hooks.hook._messageRecieved]\n",
                "hooks.hook._messageRecieved",
            ),
            (
                "[hooks.hook.after_message_edited]\n",
                "hooks.hook.after_message_edited",
            ),
            (
                "[hooks.hook._messageSent]\n[hooks.hook.after_message_sent]\n",
                "hooks.hook.after_message_sent",
            ),
            (
                "[hooks.hook._clientOnline]\nurls = [\"http://ok\", \"mailto:x@y\"]\n",
                "hooks.hook._clientOnline.urls[1]",
            ),
            (
                "[hooks.hook._clientOnline]\ntimeout_ms = 0\n",
                "hooks.hook._clientOnline.timeout_ms",
            ),
            (
                "[auth]\nmaster_key = \"0123456789abcdef\\n\"\n[hooks]\nbase_url = \"http://h\"\n",
                "auth.master_key",
            ),
        ];
        for (text, key) in cases {
            match Config::load_from_str(text) {
                Err(e @ ConfigError::Invalid { .. }) => {
                    assert!(e.to_string().starts_with(key), "{text:?}: {e}")
                }
                other => panic!("{text:?}: expected Invalid({key}), got {other:?}"),
            }
        }
        let err = Config::load_from_str("[hooks.hook._messageRecieved]\n").unwrap_err();
        assert!(err.to_string().contains("_messageReceived"), "{err}");
        // Unknown keys inside a hook table are parse errors naming them.
        let err =
            Config::load_from_str("[hooks.hook._clientOnline]\nurl = \"http://h\"\n").unwrap_err();
        assert!(err.to_string().contains("url"), "{err}");
        // A non-ASCII master key is fine while hooks are off.
        Config::load_from_str("[auth]\nmaster_key = \"0123456789abcdéf\"\n").unwrap();
    }

    #[test]
    fn hooks_keys_are_live() {
        let old = Config::default();
        let mut new = old.clone();
        new.hooks.base_url = Some("http://127.0.0.1:1".into());
        new.hooks.hook.insert(
            "_messageReceived".into(),
            HookOverride {
                enabled: false,
                ..HookOverride::default()
            },
        );
        assert_eq!(
            old.live_changes(&new),
            (
                vec!["hooks.base_url".to_owned(), "hooks.hook".to_owned()],
                vec![]
            )
        );
        let mut running = old;
        running.apply_live(&new);
        assert_eq!(running.hooks, new.hooks);
    }

    #[test]
    fn default_toml_mentions_every_key() {
        for (section, key, _) in ENV_KEYS {
            assert!(
                DEFAULT_TOML.contains(&format!("[{section}]")),
                "[{section}] missing from DEFAULT_TOML"
            );
            assert!(
                DEFAULT_TOML.contains(&format!("{key} = ")),
                "{section}.{key} missing from DEFAULT_TOML"
            );
        }
    }
}
