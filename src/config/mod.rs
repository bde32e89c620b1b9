//! Server configuration: one TOML file, overridable key by key from the
//! environment.
//!
//! Every key has a default, so an empty file (or no file) is a working
//! config. Sources, later ones winning: built-in defaults, the TOML file,
//! `TIDINGS_<SECTION>_<KEY>` environment variables. The result is validated
//! once, up front, so the rest of the server can trust it.
//!
//! Data and checks live apart, after continuwuity's config: this file holds
//! the sections (plain data with serde and `Default`) and the load entry
//! points; `default.toml` is the documented default file, kept equal to
//! `Default` by a test; `check.rs` validates every bound; `env.rs` overlays
//! the environment; `live.rs` says which keys a reload applies; `push.rs`
//! holds the `[push]` section and its provider tables.
//! `duration.rs` reads the durations typed on the CLI and bench flags.

mod check;
pub mod duration;
mod env;
mod live;
mod push;
#[cfg(test)]
mod push_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::hooks::Hook;

pub use live::LIVE_KEYS;
pub use push::{ApnsSection, FcmSection, PushSection, WebhookFormat, WebhookSection};

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

/// The documented default config file, printed by `tidings config
/// print-default`. Loading it yields exactly `Config::default()`.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

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
    pub gateway: GatewaySection,
    pub system: SystemSection,
    pub hooks: HooksSection,
    pub push: PushSection,
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
    /// LeanCloud's App Key for the client-side REST calls; generated into
    /// the data dir on first start when absent.
    pub app_key: Option<String>,
    /// LeanCloud's "verify signatures for conversation operations" switch:
    /// create, add, remove and join must be signed by the app server.
    pub conversation_signatures: bool,
    /// LeanCloud's separate switch for blocking and unblocking clients.
    pub blacklist_signatures: bool,
    /// How long an operation signature stays valid (LeanCloud: six hours).
    pub conversation_signature_window_secs: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            mode: AuthMode::Signature,
            app_id: None,
            master_key: None,
            signature_window_secs: 300,
            app_key: None,
            conversation_signatures: false,
            blacklist_signatures: false,
            conversation_signature_window_secs: 6 * 3600,
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
    /// A temporary conversation's life when its creator names none
    /// (LeanCloud's default is one day).
    pub temporary_ttl_secs: u32,
    /// The longest life a creator may ask for; longer asks get this
    /// (LeanCloud's 30 days).
    pub max_temporary_ttl_secs: u32,
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
            temporary_ttl_secs: 86400,
            max_temporary_ttl_secs: 30 * 86400,
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

/// The LeanCloud door (`crate::gateway`): LeanCloud's own client SDKs
/// over WebSocket, its router and the REST calls they make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    /// On by default, on loopback like the other listeners: moving a
    /// LeanCloud app is the reason most people run Tidings.
    pub enabled: bool,
    pub listen: SocketAddr,
    /// The WebSocket URL `/v1/route` hands the SDKs, when clients reach the
    /// door through a proxy (`wss://im.example.com/`). Unset: built from
    /// the request's `Host` and this listener's scheme.
    pub public_url: Option<String>,
    /// Serve `wss://` and `https://` here, with `tls_cert`/`tls_key` or
    /// else the server's certificate. Off: plain, behind a TLS proxy.
    pub tls: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How long a session token (`st`) lets a client log in again without
    /// a signature; the SDKs reconnect with it.
    pub session_token_ttl_secs: u64,
    /// IM clients one socket may carry (the JS SDK opens all of a page's
    /// clients on one socket).
    pub max_clients_per_socket: u32,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 7452)),
            public_url: None,
            tls: false,
            tls_cert: None,
            tls_key: None,
            session_token_ttl_secs: 2 * 24 * 3600,
            max_clients_per_socket: 16,
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

impl Config {
    /// Loads the file at `path` (if given; a given but missing file is an
    /// error, not a silent fallback to defaults), overlays `TIDINGS_*`
    /// environment variables and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let vars = env::tidings_env_vars()?;
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
        let applied = env::apply_env(&mut table, vars)?;
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
