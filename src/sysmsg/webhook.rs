//! The worker that POSTs queued `_SysMessage` rows to the app's webhook,
//! in batches, durable first, with retries (see the module above).

use std::sync::{Arc, Weak};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::sync::broadcast as signal;
use tokio::task::JoinHandle;
use tracing::{error, warn};

use super::row;
use crate::config::SystemSection;
use crate::hub::Hub;
use crate::metrics::METRICS;
use crate::util::now_ms;

/// Most rows in one POST.
pub const BATCH_MAX: usize = 100;

/// Retries of a failed POST before its batch is given up (LeanCloud's 3).
pub const RETRIES: u32 = 3;

/// How often an idle worker looks at the queue.
const POLL: Duration = Duration::from_millis(100);

/// Most of an answer read (and then ignored): enough to reuse the
/// connection after a small body, without buffering a huge one.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("system.webhook_url {url:?}: {msg}")]
    Url { url: String, msg: String },
    #[error("{name} is not printable ASCII (it is sent as a header)")]
    Header { name: &'static str },
    #[error("HTTP client: {0}")]
    Client(String),
}

/// Why one POST failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum PostError {
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(String),
    #[error("HTTP {0}")]
    Status(u16),
}

/// The webhook's endpoint and a pooled client for it.
pub struct Webhook {
    http: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    timeout: Duration,
}

impl Webhook {
    /// `None` when no `webhook_url` is set. `hook_key` (the hooks' secret)
    /// goes along as `X-LC-Hook-Key`, so the app can tell the server's
    /// POSTs from anyone else's.
    pub fn new(
        cfg: &SystemSection,
        app_id: &str,
        hook_key: Option<&str>,
    ) -> Result<Option<Webhook>, WebhookError> {
        let Some(text) = &cfg.webhook_url else {
            return Ok(None);
        };
        let url = Url::parse(text).map_err(|e| WebhookError::Url {
            url: text.clone(),
            msg: e.to_string(),
        })?;
        let header = |name: &'static str, v: &str| {
            HeaderValue::from_str(v).map_err(|_| WebhookError::Header { name })
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            HeaderName::from_static("x-lc-id"),
            header("X-LC-Id", app_id)?,
        );
        if let Some(k) = hook_key {
            headers.insert(
                HeaderName::from_static("x-lc-hook-key"),
                header("X-LC-Hook-Key", k)?,
            );
        }
        let timeout = Duration::from_millis(cfg.webhook_timeout_ms);
        Ok(Some(Webhook {
            http: http_client(timeout)?,
            url,
            headers,
            timeout,
        }))
    }

    /// One POST; success is a 2xx answer, whatever its body.
    async fn post(&self, body: &[u8]) -> Result<(), PostError> {
        let request = self
            .http
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body.to_vec());
        // One deadline over connect, send and the answer.
        match tokio::time::timeout(self.timeout, exchange(request)).await {
            Ok(r) => r,
            Err(_) => Err(PostError::Timeout(self.timeout)),
        }
    }
}

async fn exchange(request: reqwest::RequestBuilder) -> Result<(), PostError> {
    let mut response = request.send().await.map_err(request_error)?;
    let status = response.status();
    let mut read = 0;
    while read < MAX_ANSWER_BYTES {
        match response.chunk().await.map_err(request_error)? {
            Some(c) => read += c.len(),
            None => break,
        }
    }
    if status.is_success() {
        Ok(())
    } else {
        Err(PostError::Status(status.as_u16()))
    }
}

fn request_error(e: reqwest::Error) -> PostError {
    PostError::Request(crate::http::error_text(&e))
}

fn http_client(connect_timeout: Duration) -> Result<reqwest::Client, WebhookError> {
    crate::http::client(connect_timeout, None).map_err(WebhookError::Client)
}

/// The wait before retry number `attempt` (0-based): a quarter of the
/// timeout, doubling, so retries scale with what the endpoint is allowed.
pub fn backoff(timeout: Duration, attempt: u32) -> Duration {
    (timeout / 4).saturating_mul(1u32 << attempt.min(16))
}

/// How one batch ended.
enum Outcome {
    Delivered,
    GaveUp,
    /// Nothing left of the batch to POST (deleted meanwhile).
    Kept,
    Shutdown,
}

/// Starts the worker; it stops when `shutdown` fires, leaving what is
/// queued for the next start.
pub fn start(
    hub: &Arc<Hub>,
    webhook: Option<Webhook>,
    shutdown: signal::Receiver<()>,
) -> JoinHandle<()> {
    tokio::spawn(run(Arc::downgrade(hub), webhook, shutdown))
}

async fn run(hub: Weak<Hub>, webhook: Option<Webhook>, mut shutdown: signal::Receiver<()>) {
    let mut full = false;
    loop {
        // A full batch means more may be waiting: no pause then.
        if full {
            match shutdown.try_recv() {
                Err(signal::error::TryRecvError::Empty) => {}
                _ => return,
            }
        } else {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = shutdown.recv() => return,
            }
        }
        let Some(hub) = hub.upgrade() else {
            return;
        };
        let pending = match hub.store.webhook_pending(BATCH_MAX) {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "cannot read the system webhook queue");
                full = false;
                continue;
            }
        };
        full = pending.len() == BATCH_MAX;
        if pending.is_empty() {
            continue;
        }
        let Some(webhook) = &webhook else {
            // Nowhere to go: the rows are only kept.
            if let Err(e) = hub.store.webhook_done(&pending) {
                error!(error = %e, "cannot take messages off the system webhook queue");
            }
            continue;
        };
        // What leaves the server must be on disk first.
        let durable = tokio::select! {
            r = hub.pipeline.barrier() => r,
            _ = shutdown.recv() => return,
        };
        if durable.is_err() {
            continue;
        }
        let mut rows = Vec::with_capacity(pending.len());
        let mut carried = Vec::with_capacity(pending.len());
        let mut failed = false;
        for &(conv, seq) in &pending {
            match hub.store.message(conv, seq) {
                Ok(Some(e)) if !e.deleted => {
                    rows.push(row(&e, None));
                    carried.push((conv, seq));
                }
                // Deleted since (the message, or its conversation).
                Ok(_) => {}
                Err(e) => {
                    error!(error = %e, "cannot read a message for the system webhook");
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            full = false;
            continue;
        }
        let outcome = if rows.is_empty() {
            Outcome::Kept
        } else {
            deliver(webhook, &rows, &mut shutdown).await
        };
        let n = carried.len() as u64;
        match outcome {
            Outcome::Delivered => {
                METRICS.webhook_done(n, 0);
                if let Err(e) = hub.store.set_sys_acked(&carried, now_ms()) {
                    warn!(error = %e, "ackAt of delivered _SysMessage rows not recorded");
                }
            }
            Outcome::GaveUp => {
                METRICS.webhook_done(0, n);
                let first = carried
                    .first()
                    .map(|(c, s)| crate::protocol::msg_id(*c, *s));
                error!(
                    messages = n, first = ?first,
                    "system webhook: every attempt failed; giving these messages up"
                );
            }
            Outcome::Kept => {}
            Outcome::Shutdown => return,
        }
        if let Err(e) = hub.store.webhook_done(&pending) {
            error!(error = %e, "cannot take messages off the system webhook queue");
        }
    }
}

/// POSTs one batch until it is taken, retrying [`RETRIES`] times.
async fn deliver(w: &Webhook, rows: &[Value], shutdown: &mut signal::Receiver<()>) -> Outcome {
    let body = match serde_json::to_vec(rows) {
        Ok(b) => b,
        Err(e) => {
            error!(error = %e, "a _SysMessage batch does not serialize");
            return Outcome::GaveUp;
        }
    };
    for attempt in 0..=RETRIES {
        let result = tokio::select! {
            r = w.post(&body) => r,
            _ = shutdown.recv() => return Outcome::Shutdown,
        };
        METRICS.webhook_post(result.is_ok(), matches!(result, Err(PostError::Timeout(_))));
        let Err(e) = result else {
            return Outcome::Delivered;
        };
        if attempt == RETRIES {
            warn!(url = %w.url, attempt, error = %e, "system webhook POST failed; no retries left");
            break;
        }
        let wait = backoff(w.timeout, attempt);
        warn!(url = %w.url, attempt, error = %e, retry_in = ?wait, "system webhook POST failed; will retry");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.recv() => return Outcome::Shutdown,
        }
    }
    Outcome::GaveUp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_a_quarter_of_the_timeout_doubling() {
        let t = Duration::from_secs(5);
        assert_eq!(backoff(t, 0), Duration::from_millis(1250));
        assert_eq!(backoff(t, 1), Duration::from_millis(2500));
        assert_eq!(backoff(t, 2), Duration::from_secs(5));
        assert_eq!(
            backoff(Duration::from_millis(200), 0),
            Duration::from_millis(50)
        );
        assert!(backoff(t, u32::MAX) >= backoff(t, 16));
    }
}
