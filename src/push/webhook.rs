//! A push gateway the operator already runs, in one of two formats.
//!
//! - **Matrix push gateway** (`/_matrix/push/v1/notify`, served by Sygnal
//!   and ntfy): a published contract whose answer lists `rejected`
//!   pushkeys, which "homeservers must cease sending" to; those tokens
//!   are dead.
//! - **Gorush** (`POST /api/push`): popular, but its feedback is free text
//!   in `logs[]` (only with `core.sync`), so a token is dead only when a
//!   log names one of APNs's or FCM's exact dead-token reasons.

use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};

use super::client::{self, Wire};
use super::{Outcome, Platform, PushError, PushJob};
use crate::config::{WebhookFormat, WebhookSection};

/// Provider reasons that mean a dead token, as Gorush logs them.
const GORUSH_DEAD: &[&str] = &[
    "Unregistered",
    "BadDeviceToken",
    "DeviceTokenNotForTopic",
    "TopicDisallowed",
    "UNREGISTERED",
];

/// The Matrix `app_id` for a job: the gateway keys its credentials on it,
/// so the sandbox gets its own.
pub fn app_id<'a>(cfg: &'a WebhookSection, job: &PushJob) -> &'a str {
    match (job.platform, job.sandbox) {
        (Platform::Ios, false) => &cfg.app_id_ios,
        (Platform::Ios, true) => &cfg.app_id_ios_sandbox,
        (Platform::Android, _) => &cfg.app_id_android,
    }
}

/// The Matrix `notify` body for one device. `content` is the resolved
/// LeanCloud payload; `data.default_payload` is merged by Sygnal into
/// what it sends to APNs or FCM, so the payload reaches the app as is.
pub fn matrix_body(cfg: &WebhookSection, job: &PushJob) -> Value {
    json!({
        "notification": {
            "event_id": job.msg_id,
            "room_id": job.conv_id,
            "type": "tidings.message",
            "sender": job.from,
            "prio": "high",
            "content": job.payload,
            "counts": {"unread": job.badge.unwrap_or(0)},
            "devices": [{
                "app_id": app_id(cfg, job),
                "pushkey": job.token,
                "data": {"default_payload": job.payload},
            }],
        }
    })
}

/// `alert` as text: a string, or the `body` of an alert object.
fn alert_text(payload: &Value) -> &str {
    match payload.get("alert") {
        Some(Value::String(s)) => s,
        Some(Value::Object(o)) => o.get("body").and_then(Value::as_str).unwrap_or_default(),
        _ => "",
    }
}

/// The Gorush body for one device (`platform` 1 is iOS, 2 Android).
pub fn gorush_body(cfg: &WebhookSection, job: &PushJob) -> Value {
    let ios = job.platform == Platform::Ios;
    let mut n = json!({
        "tokens": [job.token],
        "platform": if ios { 1 } else { 2 },
        "message": alert_text(&job.payload),
        "title": job.payload.get("title").and_then(Value::as_str).unwrap_or_default(),
        "data": job.payload,
    });
    if let Some(b) = job.badge {
        n["badge"] = json!(b);
    }
    if ios {
        if let Some(t) = &cfg.topic {
            n["topic"] = json!(t);
        }
        if job.sandbox {
            n["development"] = json!(true);
        } else {
            n["production"] = json!(true);
        }
    }
    json!({"notifications": [n]})
}

/// Retry on 429, 5xx; other non-2xx answers are permanent.
fn http_failure(status: u16, retry_after: Option<Duration>) -> Outcome {
    let reason = format!("push gateway answered {status}");
    match status {
        429 | 500..=599 => Outcome::Retry {
            after: retry_after,
            reason,
        },
        _ => Outcome::Failed { reason },
    }
}

/// A Matrix gateway's answer for `pushkey`.
pub fn matrix_classify(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    pushkey: &str,
) -> Outcome {
    if !(200..300).contains(&status) {
        return http_failure(status, retry_after);
    }
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let rejected = v
        .get("rejected")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|k| k.as_str() == Some(pushkey)));
    if rejected {
        Outcome::DeadToken {
            reason: "rejected".into(),
        }
    } else {
        Outcome::Delivered
    }
}

/// A Gorush answer for `token`.
pub fn gorush_classify(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    token: &str,
) -> Outcome {
    if !(200..300).contains(&status) {
        return http_failure(status, retry_after);
    }
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let logs = v.get("logs").and_then(Value::as_array);
    let failure = logs.and_then(|logs| {
        logs.iter().find(|l| {
            l.get("token").and_then(Value::as_str) == Some(token)
                && l.get("type").and_then(Value::as_str) == Some("failed-push")
        })
    });
    let Some(failure) = failure else {
        return Outcome::Delivered;
    };
    let error = failure
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match GORUSH_DEAD.iter().find(|r| error.contains(*r)) {
        Some(r) => Outcome::DeadToken {
            reason: (*r).to_owned(),
        },
        None => Outcome::Failed {
            reason: format!("gorush: {error}"),
        },
    }
}

/// The webhook provider.
pub struct Webhook {
    client: reqwest::Client,
    cfg: WebhookSection,
}

impl Webhook {
    pub fn new(
        cfg: &WebhookSection,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<Self, PushError> {
        if cfg.url.is_none() {
            return Err(PushError::Config("push.webhook.url is not set".into()));
        }
        Ok(Self {
            client: client::build(
                Wire::Negotiated,
                extra_roots,
                None,
                Duration::from_millis(cfg.timeout_ms),
            )?,
            cfg: cfg.clone(),
        })
    }

    pub async fn send(&self, job: &PushJob) -> Outcome {
        let Some(url) = &self.cfg.url else {
            return Outcome::Failed {
                reason: "push.webhook.url is not set".into(),
            };
        };
        let body = match self.cfg.format {
            WebhookFormat::Matrix => matrix_body(&self.cfg, job),
            WebhookFormat::Gorush => gorush_body(&self.cfg, job),
        };
        let resp = match self.client.post(url).json(&body).send().await {
            Ok(r) => r,
            Err(e) => return super::transport_retry(&e),
        };
        let status = resp.status().as_u16();
        let after = super::retry_after(resp.headers());
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return super::transport_retry(&e),
        };
        match self.cfg.format {
            WebhookFormat::Matrix => matrix_classify(status, after, &bytes, &job.token),
            WebhookFormat::Gorush => gorush_classify(status, after, &bytes, &job.token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(platform: Platform, sandbox: bool) -> PushJob {
        PushJob {
            token: "tok".into(),
            platform,
            payload: json!({"alert": "hi", "title": "T"}),
            sandbox,
            team_id: None,
            collapse_id: None,
            expires_at: 0,
            msg_id: "m1".into(),
            conv_id: "c1".into(),
            from: "alice".into(),
            badge: Some(2),
            apns_priority: None,
            apns_push_type: None,
        }
    }

    #[test]
    fn matrix_body_maps_the_message() {
        let cfg = WebhookSection::default();
        let b = matrix_body(&cfg, &job(Platform::Ios, true));
        let n = &b["notification"];
        assert_eq!(n["event_id"], "m1");
        assert_eq!(n["room_id"], "c1");
        assert_eq!(n["sender"], "alice");
        assert_eq!(n["counts"]["unread"], 2);
        assert_eq!(n["devices"][0]["pushkey"], "tok");
        assert_eq!(n["devices"][0]["app_id"], cfg.app_id_ios_sandbox.as_str());
        assert_eq!(n["devices"][0]["data"]["default_payload"]["alert"], "hi");
    }

    #[test]
    fn matrix_rejected_means_dead() {
        assert_eq!(
            matrix_classify(200, None, br#"{"rejected":["tok"]}"#, "tok"),
            Outcome::DeadToken {
                reason: "rejected".into()
            }
        );
        assert_eq!(
            matrix_classify(200, None, br#"{"rejected":["x"]}"#, "tok"),
            Outcome::Delivered
        );
        assert!(matches!(
            matrix_classify(502, None, b"", "tok"),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            matrix_classify(400, None, b"", "tok"),
            Outcome::Failed { .. }
        ));
    }

    #[test]
    fn gorush_body_and_logs() {
        let cfg = WebhookSection {
            topic: Some("com.example".into()),
            ..WebhookSection::default()
        };
        let b = gorush_body(&cfg, &job(Platform::Android, false));
        let n = &b["notifications"][0];
        assert_eq!(n["tokens"], json!(["tok"]));
        assert_eq!(n["platform"], 2);
        assert_eq!(n["message"], "hi");
        assert!(n.get("topic").is_none());
        let b = gorush_body(&cfg, &job(Platform::Ios, false));
        assert_eq!(b["notifications"][0]["topic"], "com.example");
        let dead = br#"{"counts":1,"logs":[{"type":"failed-push","platform":"ios","token":"tok","error":"Unregistered"}],"success":"ok"}"#;
        assert!(matches!(
            gorush_classify(200, None, dead, "tok"),
            Outcome::DeadToken { .. }
        ));
        let other = br#"{"logs":[{"type":"failed-push","token":"tok","error":"PayloadTooLarge"}]}"#;
        assert!(matches!(
            gorush_classify(200, None, other, "tok"),
            Outcome::Failed { .. }
        ));
        assert_eq!(
            gorush_classify(200, None, br#"{"success":"ok"}"#, "tok"),
            Outcome::Delivered
        );
    }
}
