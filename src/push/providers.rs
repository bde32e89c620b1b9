//! Every configured provider behind one `send`: an iOS device goes to
//! APNs, an Android one to FCM, and either to the webhook gateway when
//! its own provider is not configured.

use std::time::Duration;

use super::apns::Apns;
use super::fcm::Fcm;
use super::retry::{self, Backoff};
use super::webhook::Webhook;
use super::{Outcome, Platform, PushError, PushJob, client};
use crate::config::PushSection;

/// A whole request, connection included, may take this long before it
/// counts as a connection error and is retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Which provider took a job, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    Apns,
    Fcm,
    Webhook,
}

impl Via {
    pub fn label(self) -> &'static str {
        match self {
            Via::Apns => "apns",
            Via::Fcm => "fcm",
            Via::Webhook => "webhook",
        }
    }
}

/// The providers of `[push]`.
pub struct Providers {
    apns: Option<Apns>,
    fcm: Option<Fcm>,
    webhook: Option<Webhook>,
    backoff: Backoff,
}

impl Providers {
    /// Reads every key and CA file the section names. The config check has
    /// already looked at them; this reads them for use, so an error is
    /// still an error, never a panic.
    pub fn new(cfg: &PushSection) -> Result<Self, PushError> {
        let roots = match &cfg.extra_ca_file {
            Some(p) => client::read_ca_file(p)?,
            None => Vec::new(),
        };
        let apns = if cfg.apns.is_empty() {
            None
        } else {
            Some(Apns::new(&cfg.apns, &roots, REQUEST_TIMEOUT)?)
        };
        let fcm = match &cfg.fcm.service_account_file {
            Some(f) => Some(Fcm::new(f, &cfg.fcm.endpoint, &roots, REQUEST_TIMEOUT)?),
            None => None,
        };
        let webhook = match &cfg.webhook.url {
            Some(_) => Some(Webhook::new(&cfg.webhook, &roots)?),
            None => None,
        };
        Ok(Self {
            apns,
            fcm,
            webhook,
            backoff: Backoff {
                max_retries: cfg.max_retries,
                base: Duration::from_millis(cfg.retry_base_ms),
            },
        })
    }

    /// The provider a job goes to, if any is configured for its platform.
    pub fn route(&self, platform: Platform) -> Option<Via> {
        match platform {
            Platform::Ios if self.apns.is_some() => Some(Via::Apns),
            Platform::Android if self.fcm.is_some() => Some(Via::Fcm),
            _ if self.webhook.is_some() => Some(Via::Webhook),
            _ => None,
        }
    }

    /// Whether `via` is configured.
    pub fn serves(&self, via: Via) -> bool {
        match via {
            Via::Apns => self.apns.is_some(),
            Via::Fcm => self.fcm.is_some(),
            Via::Webhook => self.webhook.is_some(),
        }
    }

    /// One attempt, no retry.
    pub async fn send(&self, job: &PushJob) -> Outcome {
        self.send_at(job, crate::util::now_secs()).await
    }

    /// [`send`](Self::send) as if the clock read `now` (unix seconds),
    /// which drives token caching and FCM's `ttl`: for tests of the
    /// 50-minute re-sign.
    pub async fn send_at(&self, job: &PushJob, now: u64) -> Outcome {
        match (
            self.route(job.platform),
            &self.apns,
            &self.fcm,
            &self.webhook,
        ) {
            (Some(Via::Apns), Some(a), _, _) => a.send(job, now).await,
            (Some(Via::Fcm), _, Some(f), _) => f.send(job, now).await,
            (Some(Via::Webhook), _, _, Some(w)) => w.send(job).await,
            _ => Outcome::Failed {
                reason: format!("no push provider for {:?}", job.platform),
            },
        }
    }

    /// [`send`](Self::send) with retries by `[push] max_retries` and
    /// `retry_base_ms`, within the job's expiry.
    pub async fn deliver(&self, job: &PushJob) -> Outcome {
        retry::deliver(&self.backoff, job.expires_at, || self.send(job)).await
    }
}
