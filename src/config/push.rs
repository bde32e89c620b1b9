//! `[push]`: offline push providers (`crate::push`). Apart from `mod.rs`
//! because it is the one section with nested provider tables.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Offline push (`crate::push`): APNs, FCM and a push-gateway webhook.
/// The provider tables (`[[push.apns]]`, `[push.fcm]`, `[push.webhook]`)
/// are TOML-only; the scalar keys here also take `TIDINGS_PUSH_*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushSection {
    /// Off by default: pushing needs the app's provider credentials.
    pub enabled: bool,
    /// LeanCloud's static push text, used when neither the hook nor the
    /// message gives one; `${convId}`, `${timestamp}` and `${fromClientId}`
    /// are filled in.
    pub template: String,
    /// How long a push stays worth delivering (LeanCloud: 7 days); sent as
    /// `apns-expiration` and FCM's `ttl`, and the bound on retries.
    pub expiry_secs: u64,
    /// Pushes waiting per provider; beyond it they are dropped and counted,
    /// so messaging never waits on a slow provider.
    pub queue_capacity: u64,
    /// Tries after the first for 429, 5xx and connection errors.
    pub max_retries: u32,
    /// Requests in flight per provider at once, retries' waits included:
    /// the streams one HTTP/2 connection carries (Apple allows about 1000,
    /// Google 100) before pushes wait in the queue.
    pub max_in_flight: u32,
    /// The first retry's delay, doubled for each later one (Sygnal's 10 s).
    pub retry_base_ms: u64,
    /// A PEM CA bundle trusted besides the platform's roots: a corporate
    /// gateway's CA, or the tests' local stand-in for Apple and Google.
    pub extra_ca_file: Option<PathBuf>,
    /// One entry per Apple developer team; `_apns_team_id` picks one, the
    /// first is the default.
    pub apns: Vec<ApnsSection>,
    pub fcm: FcmSection,
    pub webhook: WebhookSection,
}

impl Default for PushSection {
    fn default() -> Self {
        Self {
            enabled: false,
            template: "You have a new message".to_owned(),
            expiry_secs: 7 * 86_400,
            queue_capacity: 10_000,
            max_retries: 3,
            max_in_flight: 1000,
            retry_base_ms: 10_000,
            extra_ca_file: None,
            apns: Vec::new(),
            fcm: FcmSection::default(),
            webhook: WebhookSection::default(),
        }
    }
}

/// One APNs team's credentials (`[[push.apns]]`): token auth (`key_id` +
/// `key_file`, Apple's recommendation) or certificate auth (`cert_file` +
/// `cert_key_file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApnsSection {
    /// The 10-character Team ID: the provider token's `iss`.
    pub team_id: String,
    /// The key's ID: the provider token's `kid`.
    pub key_id: String,
    /// The `.p8` file Apple issued (PKCS#8 P-256); empty with certificate
    /// auth.
    pub key_file: PathBuf,
    /// Certificate auth instead: the APNs client certificate (PEM chain)…
    pub cert_file: Option<PathBuf>,
    /// …and its private key (PEM; a `.p12` must be converted first).
    pub cert_key_file: Option<PathBuf>,
    /// The app's bundle id, sent as `apns-topic`.
    pub topic: String,
    /// Apple's production host; a config value so tests and proxies can
    /// stand in.
    pub endpoint: String,
    /// Where `_profile: "dev"` pushes go.
    pub sandbox_endpoint: String,
}

impl Default for ApnsSection {
    fn default() -> Self {
        Self {
            team_id: String::new(),
            key_id: String::new(),
            key_file: PathBuf::new(),
            cert_file: None,
            cert_key_file: None,
            topic: String::new(),
            endpoint: "https://api.push.apple.com".to_owned(),
            sandbox_endpoint: "https://api.sandbox.push.apple.com".to_owned(),
        }
    }
}

/// FCM HTTP v1 (`[push.fcm]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FcmSection {
    /// The service-account key JSON from the Firebase console; unset, FCM
    /// is off. Its `token_uri` is where access tokens come from.
    pub service_account_file: Option<PathBuf>,
    /// Google's FCM host, a config value for tests and regional endpoints.
    pub endpoint: String,
}

impl Default for FcmSection {
    fn default() -> Self {
        Self {
            service_account_file: None,
            endpoint: "https://fcm.googleapis.com".to_owned(),
        }
    }
}

/// The body a push gateway expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The Matrix push-gateway contract (Sygnal, ntfy), whose `rejected`
    /// list tells dead tokens.
    #[default]
    Matrix,
    /// Gorush's `POST /api/push`.
    Gorush,
}

/// A push gateway the operator runs (`[push.webhook]`); it takes the
/// platforms APNs or FCM above do not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSection {
    /// The full URL (`…/_matrix/push/v1/notify`, `…/api/push`); unset, the
    /// webhook is off.
    pub url: Option<String>,
    pub format: WebhookFormat,
    /// Bounds one call, connection included.
    pub timeout_ms: u64,
    /// Matrix `app_id`s: the gateway keys its credentials on them.
    pub app_id_ios: String,
    pub app_id_ios_sandbox: String,
    pub app_id_android: String,
    /// Gorush's `topic` for iOS (the bundle id), when its config has none.
    pub topic: Option<String>,
}

impl Default for WebhookSection {
    fn default() -> Self {
        Self {
            url: None,
            format: WebhookFormat::Matrix,
            timeout_ms: 10_000,
            app_id_ios: "tidings.ios".to_owned(),
            app_id_ios_sandbox: "tidings.ios.dev".to_owned(),
            app_id_android: "tidings.android".to_owned(),
            topic: None,
        }
    }
}
