//! Offline push providers: APNs (token auth over HTTP/2), FCM HTTP v1
//! (service-account OAuth) and a push-gateway webhook (Matrix or Gorush).
//!
//! This layer only talks to providers: a caller hands it a [`PushJob`] for
//! one device and gets an [`Outcome`] back. Who gets a push, what it says
//! and what happens to a dead token are decided above (message delivery and
//! the device registry). Each provider keeps its sans-IO part pure — JWT
//! caching, request building, response classification — with `now` passed
//! in, so the clock-driven rules are tested without waiting.
//!
//! Hand-rolled on reqwest and ring rather than an APNs or FCM crate: none
//! lets a test point it at a local stand-in and trust a test CA, and the
//! maintained ones bring a second crypto stack (see the push design note).

pub mod apns;
pub mod client;
pub mod fcm;
pub mod jwt;
pub mod providers;
pub mod retry;
pub mod webhook;

use std::time::Duration;

use serde_json::Value;

pub use providers::{Providers, Via};

/// The device's platform, as the installation records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Ios,
    Android,
}

/// One notification for one device.
#[derive(Debug, Clone, PartialEq)]
pub struct PushJob {
    /// The APNs device token (hex) or the FCM registration token.
    pub token: String,
    pub platform: Platform,
    /// For APNs the body as sent (it carries `aps`); for FCM and the
    /// webhook the resolved LeanCloud payload (`alert`, `title`, custom keys).
    pub payload: Value,
    /// `_profile: "dev"`: the APNs sandbox.
    pub sandbox: bool,
    /// `_apns_team_id`: which APNs key signs; `None` is the first one.
    pub team_id: Option<String>,
    /// LeanCloud's `collapse-id` → `apns-collapse-id`.
    pub collapse_id: Option<String>,
    /// Unix seconds after which the push is worthless (now + `expiry_secs`):
    /// the providers' own expiry and the bound on retries.
    pub expires_at: u64,
    /// The message it announces, for the webhook's `event_id`.
    pub msg_id: String,
    /// Its conversation, for the webhook's `room_id`.
    pub conv_id: String,
    /// Its sender, for the webhook's `sender`.
    pub from: String,
    /// The badge the device shows, when the payload set one.
    pub badge: Option<u32>,
    /// The payload's `apns-priority` (5 or 10), over the one the body implies.
    pub apns_priority: Option<u8>,
    /// The payload's `apns-push-type` (`alert`, `background`, `voip`, …).
    pub apns_push_type: Option<String>,
}

/// What became of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted it.
    Delivered,
    /// The provider says the token will never work again: the caller
    /// deletes the device's registration. `reason` is the provider's word.
    DeadToken { reason: String },
    /// Worth another try: after `after` when the provider said
    /// (`Retry-After`), else after the caller's backoff.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Will not succeed as sent (our payload, our credentials): dropped
    /// and counted.
    Failed { reason: String },
}

impl Outcome {
    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::DeadToken { .. } => "dead_token",
            Outcome::Retry { .. } => "retry",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// Why a provider could not be set up from its config.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Key { path: String, msg: String },
    #[error("{path}: bad service account JSON: {msg}")]
    ServiceAccount { path: String, msg: String },
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("push config: {0}")]
    Config(String),
}

/// A `Retry-After` header as a duration: seconds only; the HTTP-date form
/// is not used by APNs or FCM.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A transport error (no answer at all) is worth retrying: the provider
/// never saw it, or a connection dropped mid-flight.
pub(crate) fn transport_retry(e: &reqwest::Error) -> Outcome {
    Outcome::Retry {
        after: None,
        reason: crate::http::error_text(e),
    }
}
