//! FCM HTTP v1: a service account's RS256 assertion buys an OAuth access
//! token at the key's own `token_uri`; the token is cached until shortly
//! before it expires and refetched once after a 401.
//!
//! The message has the shape LeanCloud's Android SDK reads:
//! `LCFirebaseMessagingService` ignores a message without both
//! `notification` and `data`, and parses `data.payload` as the LeanCloud
//! payload.

use std::path::Path;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{self, Wire};
use super::jwt::Signer;
use super::{Outcome, PushError, PushJob};

/// The OAuth scope FCM v1 wants.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// A cached access token is replaced this long before Google's expiry, so
/// a send never races it.
pub const TOKEN_MARGIN_SECS: u64 = 300;

/// An assertion's life; Google takes at most one hour.
const ASSERTION_SECS: u64 = 3600;

/// The fields of a service-account key file that matter here.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key: String,
    pub token_uri: String,
    pub project_id: String,
}

impl ServiceAccount {
    pub fn from_file(path: &Path) -> Result<Self, PushError> {
        let text = std::fs::read(path).map_err(|source| PushError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|e| PushError::ServiceAccount {
            path: path.display().to_string(),
            msg: e.to_string(),
        })
    }
}

/// The claims of the assertion posted to `token_uri`.
pub fn assertion_claims(sa: &ServiceAccount, now: u64) -> Value {
    json!({
        "iss": sa.client_email,
        "scope": SCOPE,
        "aud": sa.token_uri,
        "iat": now,
        "exp": now + ASSERTION_SECS,
    })
}

/// The form body of the token request; the JWT is base64url and dots, so
/// it needs no escaping.
pub fn token_request_body(assertion: &str) -> String {
    format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
    )
}

/// A cached access token; pure, `now` in unix seconds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TokenCache {
    token: Option<(String, u64)>,
}

impl TokenCache {
    /// The token if it is good for [`TOKEN_MARGIN_SECS`] more.
    pub fn get(&self, now: u64) -> Option<&str> {
        self.token
            .as_ref()
            .filter(|(_, exp)| now + TOKEN_MARGIN_SECS < *exp)
            .map(|(t, _)| t.as_str())
    }

    pub fn store(&mut self, token: String, expires_in: u64, now: u64) {
        self.token = Some((token, now + expires_in));
    }

    /// Forgets `token` after FCM refused it; a newer one is kept.
    pub fn invalidate(&mut self, token: &str) {
        if self.token.as_ref().is_some_and(|(t, _)| t == token) {
            self.token = None;
        }
    }
}

/// `alert` as text for `notification.body`: LeanCloud allows a string or
/// an APNs-style `{title, body}` object.
fn alert_text(payload: &Value) -> String {
    match payload.get("alert") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

/// The `messages:send` body for `job` at `now`. `ttl` is what is left of
/// the job's validity (7 days when fresh), as Google's `"<secs>s"`.
pub fn build_message(job: &PushJob, now: u64) -> Value {
    let title = job
        .payload
        .get("title")
        .and_then(Value::as_str)
        .or_else(|| {
            job.payload
                .get("alert")
                .and_then(|a| a.get("title"))
                .and_then(Value::as_str)
        })
        .unwrap_or_default();
    json!({
        "message": {
            "token": job.token,
            "notification": {"title": title, "body": alert_text(&job.payload)},
            "data": {"payload": job.payload.to_string()},
            "android": {
                "ttl": format!("{}s", job.expires_at.saturating_sub(now)),
                "priority": "high",
            },
        }
    })
}

/// FCM's `errorCode` from `error.details[]`, else `error.status`.
fn error_code(body: &Value) -> (String, String) {
    let err = body.get("error");
    let status = err
        .and_then(|e| e.get("status"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let code = err
        .and_then(|e| e.get("details"))
        .and_then(Value::as_array)
        .and_then(|d| {
            d.iter()
                .find_map(|x| x.get("errorCode").and_then(Value::as_str))
        })
        .unwrap_or(status);
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    (code.to_owned(), message.to_owned())
}

/// What an FCM answer means (401 is handled by [`Fcm::send`] first).
/// A 400 is a dead token only when it is about the token: other 400s are
/// our payload's fault.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (code, message) = error_code(&v);
    let described = || {
        format!("FCM {status} {code} {message}")
            .trim_end()
            .to_owned()
    };
    match status {
        200 => Outcome::Delivered,
        404 => Outcome::DeadToken {
            reason: if code.is_empty() {
                "UNREGISTERED".into()
            } else {
                code
            },
        },
        400 if code == "UNREGISTERED"
            || (code == "INVALID_ARGUMENT" && message.to_ascii_lowercase().contains("token")) =>
        {
            Outcome::DeadToken { reason: code }
        }
        429 | 500..=599 => Outcome::Retry {
            after: retry_after,
            reason: described(),
        },
        _ => Outcome::Failed {
            reason: described(),
        },
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

/// FCM for one Firebase project.
pub struct Fcm {
    client: reqwest::Client,
    endpoint: String,
    account: ServiceAccount,
    signer: Signer,
    /// Behind an async lock so concurrent sends wait for one token fetch.
    cache: tokio::sync::Mutex<TokenCache>,
}

impl Fcm {
    /// Reads the service-account file; a missing or bad one is an error
    /// here, at start.
    pub fn new(
        service_account_file: &Path,
        endpoint: &str,
        extra_roots: &[CertificateDer<'static>],
        timeout: Duration,
    ) -> Result<Self, PushError> {
        let account = ServiceAccount::from_file(service_account_file)?;
        let signer = Signer::rs256_pem(
            account.private_key.as_bytes(),
            &service_account_file.display().to_string(),
        )?;
        Ok(Self {
            client: client::build(Wire::Http2Only, extra_roots, None, timeout)?,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            account,
            signer,
            cache: tokio::sync::Mutex::new(TokenCache::default()),
        })
    }

    /// A valid access token, fetched if the cache has none.
    async fn access_token(&self, now: u64) -> Result<String, Outcome> {
        let mut cache = self.cache.lock().await;
        if let Some(t) = cache.get(now) {
            return Ok(t.to_owned());
        }
        let assertion = self
            .signer
            .sign(json!({"typ": "JWT"}), &assertion_claims(&self.account, now))
            .map_err(|reason| Outcome::Failed { reason })?;
        let resp = self
            .client
            .post(&self.account.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(token_request_body(&assertion))
            .send()
            .await
            .map_err(|e| super::transport_retry(&e))?;
        let status = resp.status().as_u16();
        let after = super::retry_after(resp.headers());
        let body = resp.bytes().await.map_err(|e| super::transport_retry(&e))?;
        match status {
            200 => {}
            429 | 500..=599 => {
                return Err(Outcome::Retry {
                    after,
                    reason: format!("OAuth token endpoint answered {status}"),
                });
            }
            _ => {
                return Err(Outcome::Failed {
                    reason: format!(
                        "OAuth token endpoint answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    ),
                });
            }
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| Outcome::Failed {
            reason: format!("OAuth token answer: {e}"),
        })?;
        cache.store(answer.access_token.clone(), answer.expires_in, now);
        Ok(answer.access_token)
    }

    /// Sends one push at `now` (unix seconds). A 401 refetches the access
    /// token and sends once more.
    pub async fn send(&self, job: &PushJob, now: u64) -> Outcome {
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.endpoint, self.account.project_id
        );
        let body = build_message(job, now).to_string();
        for _ in 0..2 {
            let token = match self.access_token(now).await {
                Ok(t) => t,
                Err(outcome) => return outcome,
            };
            let resp = match self
                .client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => return super::transport_retry(&e),
            };
            let status = resp.status().as_u16();
            if status == 401 {
                self.cache.lock().await.invalidate(&token);
                continue;
            }
            let after = super::retry_after(resp.headers());
            return match resp.bytes().await {
                Ok(b) => classify(status, after, &b),
                Err(e) => super::transport_retry(&e),
            };
        }
        Outcome::Failed {
            reason: "FCM refused a fresh access token (401)".into(),
        }
    }
}

#[cfg(test)]
#[path = "fcm_tests.rs"]
mod tests;
