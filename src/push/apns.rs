//! APNs over HTTP/2 with token auth (an ES256 provider token from the
//! team's `.p8` key) or certificate auth (a client certificate on the
//! connection), one connection per team and environment.
//!
//! Apple: "Refresh your token no more than once every 20 minutes and no
//! less than once every 60 minutes", and a connection carries one team's
//! tokens only, hence [`ProviderToken`] per (team, key) re-signed after 50
//! minutes and a client per (team, environment).

use std::path::Path;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::client::{self, Identity, Wire};
use super::jwt::Signer;
use super::{Outcome, PushError, PushJob};
use crate::config::ApnsSection;
use rustls::pki_types::CertificateDer;

/// A provider token is re-signed this long after it was issued: well inside
/// Apple's 20–60 minute window.
pub const TOKEN_REFRESH_SECS: u64 = 50 * 60;

/// Apple's limit on `apns-collapse-id`.
const MAX_COLLAPSE_ID_BYTES: usize = 64;

/// The APNs reasons that mean the token is gone for good (Sygnal's
/// `TOKEN_ERRORS`, and `410 Unregistered`).
const DEAD_REASONS: &[&str] = &[
    "Unregistered",
    "BadDeviceToken",
    "DeviceTokenNotForTopic",
    "TopicDisallowed",
];

/// One team's signing key and its cached provider token.
#[derive(Debug)]
pub struct ProviderToken {
    team_id: String,
    key_id: String,
    signer: Signer,
    /// The token and the `iat` it carries.
    cached: Mutex<Option<(String, u64)>>,
}

impl ProviderToken {
    pub fn new(team_id: &str, key_id: &str, signer: Signer) -> Self {
        Self {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            signer,
            cached: Mutex::new(None),
        }
    }

    /// Reads an Apple `.p8` key file.
    pub fn from_p8_file(team_id: &str, key_id: &str, path: &Path) -> Result<Self, PushError> {
        let pem = std::fs::read(path).map_err(|source| PushError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self::new(
            team_id,
            key_id,
            Signer::es256_pem(&pem, &path.display().to_string())?,
        ))
    }

    /// The token to send at `now` (unix seconds): the cached one while it
    /// is younger than [`TOKEN_REFRESH_SECS`], else a fresh one. A clock
    /// that went back also re-signs, so `iat` is never in the future.
    pub fn bearer(&self, now: u64) -> Result<String, String> {
        let mut cached = self.cached.lock();
        if let Some((jwt, iat)) = cached.as_ref()
            && *iat <= now
            && now - *iat < TOKEN_REFRESH_SECS
        {
            return Ok(jwt.clone());
        }
        let jwt = self.signer.sign(
            json!({"kid": self.key_id}),
            &json!({"iss": self.team_id, "iat": now}),
        )?;
        *cached = Some((jwt.clone(), now));
        Ok(jwt)
    }

    /// Drops `jwt` after APNs called it expired or invalid, so the next
    /// send signs anew; a token another send already replaced is kept.
    pub fn invalidate(&self, jwt: &str) {
        let mut cached = self.cached.lock();
        if cached.as_ref().is_some_and(|(c, _)| c == jwt) {
            *cached = None;
        }
    }
}

/// An APNs request before auth and I/O: pure, so tests read it as built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub url: String,
    /// Besides `authorization`.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// `apns-push-type` and `apns-priority` for a body: a `content-available`
/// push with nothing to show is a background push, which Apple wants at
/// priority 5; anything else is an alert at 10.
pub fn push_type(body: &Value) -> (&'static str, u8) {
    let Some(aps) = body.get("aps").and_then(Value::as_object) else {
        return ("alert", 10);
    };
    let silent = aps.get("content-available").is_some()
        && !["alert", "badge", "sound"]
            .iter()
            .any(|k| aps.contains_key(*k));
    if silent {
        ("background", 5)
    } else {
        ("alert", 10)
    }
}

/// LeanCloud payload keys that go into `aps` (the push REST doc's table);
/// `title` goes into `aps.alert`.
const APS_KEYS: &[&str] = &[
    "alert",
    "badge",
    "sound",
    "category",
    "thread-id",
    "content-available",
    "mutable-content",
];

/// Keys that choose how or where to send, never sent to the device.
const CONTROL_KEYS: &[&str] = &[
    "_profile",
    "_apns_team_id",
    "collapse-id",
    "apns-priority",
    "apns-push-type",
];

/// The APNs body for a LeanCloud payload (already split per platform and
/// with `badge: "Increment"` resolved to a number by the caller): LeanCloud
/// keys move into `aps`, `title` into `aps.alert`, other keys stay custom
/// top-level keys, control keys (`_profile`, `collapse-id`, …) are
/// dropped. A payload that already has `aps` passes through, less the
/// control keys.
pub fn body_from_leancloud(payload: &Value) -> Value {
    let Some(obj) = payload.as_object() else {
        return json!({"aps": {"alert": payload}});
    };
    let mut out = serde_json::Map::new();
    let passthrough = obj.contains_key("aps");
    let mut aps = serde_json::Map::new();
    for (k, v) in obj {
        if CONTROL_KEYS.contains(&k.as_str()) {
            continue;
        }
        if !passthrough && APS_KEYS.contains(&k.as_str()) {
            aps.insert(k.clone(), v.clone());
        } else if !passthrough && k == "title" {
            continue;
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    if !passthrough {
        if let Some(title) = obj.get("title") {
            let alert = match aps.remove("alert") {
                Some(Value::Object(mut a)) => {
                    a.entry("title").or_insert_with(|| title.clone());
                    Value::Object(a)
                }
                Some(body) => json!({"title": title, "body": body}),
                None => json!({"title": title}),
            };
            aps.insert("alert".into(), alert);
        }
        out.insert("aps".into(), Value::Object(aps));
    }
    Value::Object(out)
}

/// `POST {endpoint}/3/device/{token}` with the headers APNs reads.
/// `apns-expiration` is the job's expiry, so Apple keeps an undeliverable
/// push exactly as long as Tidings would retry it.
pub fn build_request(endpoint: &str, topic: &str, job: &PushJob) -> Request {
    let (kind, priority) = push_type(&job.payload);
    let kind = job.apns_push_type.as_deref().unwrap_or(kind);
    let priority = job
        .apns_priority
        .filter(|p| matches!(p, 1 | 5 | 10))
        .unwrap_or(priority);
    let mut headers = vec![
        ("apns-topic", topic.to_owned()),
        ("apns-push-type", kind.to_owned()),
        ("apns-priority", priority.to_string()),
        ("apns-expiration", job.expires_at.to_string()),
    ];
    if let Some(id) = &job.collapse_id
        && !id.is_empty()
        && id.len() <= MAX_COLLAPSE_ID_BYTES
    {
        headers.push(("apns-collapse-id", id.clone()));
    }
    Request {
        url: format!("{}/3/device/{}", endpoint.trim_end_matches('/'), job.token),
        headers,
        body: job.payload.to_string().into_bytes(),
    }
}

/// What an APNs answer means. `retry_after` is the parsed header.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    let reason = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let described = || format!("APNs {status} {reason}").trim_end().to_owned();
    match status {
        200 => Outcome::Delivered,
        410 => Outcome::DeadToken {
            reason: if reason.is_empty() {
                "Unregistered".into()
            } else {
                reason
            },
        },
        400 if DEAD_REASONS.contains(&reason.as_str()) => Outcome::DeadToken { reason },
        // Our token aged out between signing and sending: sign anew, go again.
        403 if reason == EXPIRED_TOKEN => Outcome::Retry {
            after: Some(Duration::ZERO),
            reason: described(),
        },
        429 | 500..=599 => Outcome::Retry {
            after: retry_after,
            reason: described(),
        },
        _ => Outcome::Failed {
            reason: described(),
        },
    }
}

/// APNs's word for a provider token older than an hour.
const EXPIRED_TOKEN: &str = "ExpiredProviderToken";

/// One team: its key, its topic and a connection per environment.
struct Team {
    team_id: String,
    topic: String,
    /// `None` with certificate auth: the connection itself authenticates.
    token: Option<ProviderToken>,
    production: (reqwest::Client, String),
    sandbox: (reqwest::Client, String),
}

/// APNs for every configured team.
pub struct Apns {
    teams: Vec<Team>,
}

impl Apns {
    /// Reads each team's key or certificate; a missing or bad one is an error here, at
    /// start, not at the first push.
    pub fn new(
        teams: &[ApnsSection],
        extra_roots: &[CertificateDer<'static>],
        timeout: Duration,
    ) -> Result<Self, PushError> {
        let mut out = Vec::new();
        for t in teams {
            let (token, identity) = match (&t.cert_file, &t.cert_key_file) {
                (Some(cert), Some(key)) => (None, Some(Identity::from_files(cert, key)?)),
                (Some(_), None) => {
                    return Err(PushError::Config(format!(
                        "APNs team {}: cert_file without cert_key_file",
                        t.team_id
                    )));
                }
                _ => (
                    Some(ProviderToken::from_p8_file(
                        &t.team_id,
                        &t.key_id,
                        &t.key_file,
                    )?),
                    None,
                ),
            };
            let connect =
                || client::build(Wire::Http2Only, extra_roots, identity.as_ref(), timeout);
            out.push(Team {
                team_id: t.team_id.clone(),
                topic: t.topic.clone(),
                token,
                production: (connect()?, t.endpoint.clone()),
                sandbox: (connect()?, t.sandbox_endpoint.clone()),
            });
        }
        Ok(Self { teams: out })
    }

    /// The team `_apns_team_id` names, else the first.
    fn team(&self, team_id: Option<&str>) -> Option<&Team> {
        match team_id {
            Some(id) => self.teams.iter().find(|t| t.team_id == id),
            None => self.teams.first(),
        }
    }

    /// Sends one push at `now` (unix seconds). An expired provider token
    /// is re-signed and the push sent once more at once.
    pub async fn send(&self, job: &PushJob, now: u64) -> Outcome {
        let Some(team) = self.team(job.team_id.as_deref()) else {
            return Outcome::Failed {
                reason: format!("no APNs team {:?} configured", job.team_id),
            };
        };
        let (client, endpoint) = if job.sandbox {
            &team.sandbox
        } else {
            &team.production
        };
        let req = build_request(endpoint, &team.topic, job);
        let mut outcome = Outcome::Failed {
            reason: "not sent".into(),
        };
        for _ in 0..2 {
            let jwt = match team.token.as_ref().map(|t| t.bearer(now)) {
                Some(Ok(j)) => Some(j),
                Some(Err(reason)) => return Outcome::Failed { reason },
                None => None,
            };
            outcome = send_once(client, &req, jwt.as_deref()).await;
            match (&outcome, &team.token, &jwt) {
                (Outcome::Retry { reason, .. }, Some(token), Some(jwt))
                    if reason.ends_with(EXPIRED_TOKEN) =>
                {
                    token.invalidate(jwt)
                }
                _ => break,
            }
        }
        outcome
    }
}

async fn send_once(client: &reqwest::Client, req: &Request, jwt: Option<&str>) -> Outcome {
    let mut b = client
        .post(&req.url)
        .header("content-type", "application/json")
        .body(req.body.clone());
    if let Some(jwt) = jwt {
        b = b.header("authorization", format!("bearer {jwt}"));
    }
    for (k, v) in &req.headers {
        b = b.header(*k, v);
    }
    match b.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let after = super::retry_after(resp.headers());
            match resp.bytes().await {
                Ok(body) => classify(status, after, &body),
                Err(e) => super::transport_retry(&e),
            }
        }
        Err(e) => super::transport_retry(&e),
    }
}

#[cfg(test)]
#[path = "apns_tests.rs"]
mod tests;
