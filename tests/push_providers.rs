//! The push providers against a local HTTP/2-over-TLS stand-in for APNs,
//! Google OAuth, FCM and push gateways (`common/push_mock.rs`), trusted
//! through `push.extra_ca_file`. Loopback only.

#[path = "common/push_mock.rs"]
mod push_mock;

use std::time::{Duration, Instant};

use push_mock::{KID, KID2, PushMock, Reply, Route, TEAM, TEAM2, TOPIC};
use serde_json::{Value, json};
use tidings::config::{ApnsSection, PushSection, WebhookFormat, WebhookSection};
use tidings::push::{Outcome, Platform, Providers, PushJob};
use tidings::util::now_secs;

fn section(mock: &PushMock) -> PushSection {
    PushSection {
        enabled: true,
        extra_ca_file: Some(mock.ca_file.clone()),
        retry_base_ms: 10,
        max_retries: 3,
        ..PushSection::default()
    }
}

fn job(platform: Platform, token: &str, payload: Value) -> PushJob {
    PushJob {
        token: token.into(),
        platform,
        payload,
        sandbox: false,
        team_id: None,
        collapse_id: None,
        expires_at: now_secs() + 604_800,
        msg_id: "msg1".into(),
        conv_id: "conv1".into(),
        from: "alice".into(),
        badge: Some(1),
        apns_priority: None,
        apns_push_type: None,
    }
}

async fn apns_setup() -> (PushMock, Providers) {
    let mock = PushMock::start().await;
    let mut cfg = section(&mock);
    cfg.apns = vec![mock.apns_key(TEAM, KID), mock.apns_key(TEAM2, KID2)];
    let providers = Providers::new(&cfg).unwrap();
    (mock, providers)
}

async fn fcm_setup() -> (PushMock, Providers) {
    let mock = PushMock::start().await;
    let mut cfg = section(&mock);
    cfg.fcm.service_account_file = Some(mock.service_account());
    cfg.fcm.endpoint = mock.url.clone();
    let providers = Providers::new(&cfg).unwrap();
    (mock, providers)
}

#[tokio::test]
async fn apns_push_has_apples_headers_and_payload() {
    let (mock, p) = apns_setup().await;
    let payload = json!({"aps": {"alert": "hello", "badge": 1}, "convId": "conv1"});
    let j = job(Platform::Ios, "a1b2c3", payload.clone());
    assert_eq!(p.send(&j).await, Outcome::Delivered);
    let reqs = mock.requests(Route::Apns);
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/3/device/a1b2c3");
    assert_eq!(
        r.kid.as_deref(),
        Some(KID),
        "the first team signs by default"
    );
    assert_eq!(r.header("apns-topic"), Some(TOPIC));
    assert_eq!(r.header("apns-push-type"), Some("alert"));
    assert_eq!(r.header("apns-priority"), Some("10"));
    assert_eq!(
        r.header("apns-expiration"),
        Some(j.expires_at.to_string().as_str())
    );
    assert_eq!(r.header("apns-collapse-id"), None);
    assert_eq!(r.json(), payload);
    assert!(mock.requests(Route::ApnsSandbox).is_empty());

    // Background push, collapse id, the second team.
    let mut j = job(
        Platform::Ios,
        "a1b2c3",
        json!({"aps": {"content-available": 1}}),
    );
    j.collapse_id = Some("conv1".into());
    j.team_id = Some(TEAM2.into());
    assert_eq!(p.send(&j).await, Outcome::Delivered);
    let r = mock.requests(Route::Apns).pop().unwrap();
    assert_eq!(r.kid.as_deref(), Some(KID2));
    assert_eq!(r.header("apns-push-type"), Some("background"));
    assert_eq!(r.header("apns-priority"), Some("5"));
    assert_eq!(r.header("apns-collapse-id"), Some("conv1"));

    // An unknown team is a failure, not a push signed by someone else.
    j.team_id = Some("NOSUCHTEAM".into());
    assert!(matches!(p.send(&j).await, Outcome::Failed { .. }));
}

#[tokio::test]
async fn provider_token_is_reused_then_resigned_after_50_minutes() {
    let (mock, p) = apns_setup().await;
    let j = job(Platform::Ios, "t", json!({"aps": {"alert": "x"}}));
    let now = now_secs();
    for at in [now, now + 60, now + 49 * 60, now + 50 * 60, now + 51 * 60] {
        assert_eq!(p.send_at(&j, at).await, Outcome::Delivered);
    }
    let auth: Vec<String> = mock
        .requests(Route::Apns)
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(auth[0], auth[1]);
    assert_eq!(auth[0], auth[2]);
    assert_ne!(auth[2], auth[3], "re-signed at 50 minutes");
    assert_eq!(auth[3], auth[4]);
}

#[tokio::test]
async fn certificate_auth_presents_the_client_certificate() {
    let mock = PushMock::start_with_client_auth().await;
    let (cert, key) = mock.client_cert("apns-client");
    let team = |cert_file: Option<std::path::PathBuf>| ApnsSection {
        team_id: TEAM.into(),
        topic: TOPIC.into(),
        cert_file,
        cert_key_file: Some(key.clone()),
        endpoint: mock.url.clone(),
        sandbox_endpoint: format!("{}/sandbox", mock.url),
        ..ApnsSection::default()
    };
    let mut cfg = section(&mock);
    cfg.apns = vec![team(Some(cert))];
    let p = Providers::new(&cfg).unwrap();
    let j = job(Platform::Ios, "t", json!({"aps": {"alert": "x"}}));
    assert_eq!(p.send(&j).await, Outcome::Delivered);
    let r = mock.requests(Route::Apns).pop().unwrap();
    assert_eq!(
        r.header("authorization"),
        None,
        "no provider token with a certificate"
    );
    assert_eq!(r.header("apns-topic"), Some(TOPIC));

    // Without a certificate the handshake fails: nothing reaches APNs, and
    // the send is a retry, not a dead token.
    let mut cfg = section(&mock);
    cfg.apns = vec![mock.apns_key(TEAM, KID)];
    let p = Providers::new(&cfg).unwrap();
    assert!(matches!(p.send(&j).await, Outcome::Retry { .. }));
    assert_eq!(mock.requests(Route::Apns).len(), 1);
}

#[tokio::test]
async fn dev_profile_goes_to_the_sandbox() {
    let (mock, p) = apns_setup().await;
    let mut j = job(Platform::Ios, "dev-token", json!({"aps": {"alert": "x"}}));
    j.sandbox = true;
    assert_eq!(p.send(&j).await, Outcome::Delivered);
    let reqs = mock.requests(Route::ApnsSandbox);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/sandbox/3/device/dev-token");
    assert!(mock.requests(Route::Apns).is_empty());
}

#[tokio::test]
async fn apns_dead_tokens_and_failures_are_told_apart() {
    let (mock, p) = apns_setup().await;
    mock.script(
        Route::Apns,
        [
            Reply::new(
                410,
                r#"{"reason":"Unregistered","timestamp":1700000000000}"#,
            ),
            Reply::new(400, r#"{"reason":"BadDeviceToken"}"#),
            Reply::new(400, r#"{"reason":"DeviceTokenNotForTopic"}"#),
            Reply::new(400, r#"{"reason":"PayloadTooLarge"}"#),
        ],
    );
    let j = job(Platform::Ios, "t", json!({"aps": {"alert": "x"}}));
    for reason in ["Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic"] {
        assert_eq!(
            p.deliver(&j).await,
            Outcome::DeadToken {
                reason: reason.into()
            }
        );
    }
    assert!(matches!(p.deliver(&j).await, Outcome::Failed { .. }));
    assert_eq!(
        mock.requests(Route::Apns).len(),
        4,
        "none of these is retried"
    );
}

#[tokio::test]
async fn apns_503_then_200_is_retried() {
    let (mock, p) = apns_setup().await;
    mock.script(
        Route::Apns,
        [Reply::new(503, r#"{"reason":"ServiceUnavailable"}"#)],
    );
    let j = job(Platform::Ios, "t", json!({"aps": {"alert": "x"}}));
    assert_eq!(p.deliver(&j).await, Outcome::Delivered);
    assert_eq!(mock.requests(Route::Apns).len(), 2);
}

#[tokio::test]
async fn retries_stop_at_max_retries() {
    let (mock, p) = apns_setup().await;
    mock.script(Route::Apns, (0..10).map(|_| Reply::new(500, "{}")));
    let j = job(Platform::Ios, "t", json!({"aps": {"alert": "x"}}));
    assert!(matches!(p.deliver(&j).await, Outcome::Retry { .. }));
    assert_eq!(
        mock.requests(Route::Apns).len(),
        4,
        "first try + max_retries 3"
    );
}

#[tokio::test]
async fn apns_429_waits_for_retry_after() {
    let (mock, p) = apns_setup().await;
    mock.script(
        Route::Apns,
        [Reply::new(429, r#"{"reason":"TooManyRequests"}"#).retry_after(1)],
    );
    let j = job(Platform::Ios, "t", json!({"aps": {"alert": "x"}}));
    let start = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(10), p.deliver(&j))
        .await
        .unwrap();
    assert_eq!(out, Outcome::Delivered);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(1), "waited only {waited:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    assert_eq!(mock.requests(Route::Apns).len(), 2);
}

#[tokio::test]
async fn a_retry_past_the_expiry_is_not_made() {
    let (mock, p) = apns_setup().await;
    mock.script(Route::Apns, [Reply::new(429, "{}").retry_after(60)]);
    let mut j = job(Platform::Ios, "t", json!({"aps": {"alert": "x"}}));
    j.expires_at = now_secs() + 5;
    let out = tokio::time::timeout(Duration::from_secs(5), p.deliver(&j))
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(60)));
    assert_eq!(mock.requests(Route::Apns).len(), 1);
}

#[tokio::test]
async fn concurrent_apns_sends_share_one_connection() {
    let (mock, p) = apns_setup().await;
    let p = std::sync::Arc::new(p);
    let mut tasks = Vec::new();
    for i in 0..150 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let j = job(
                Platform::Ios,
                &format!("tok{i}"),
                json!({"aps": {"alert": "x"}}),
            );
            p.send(&j).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Outcome::Delivered);
    }
    assert_eq!(mock.requests(Route::Apns).len(), 150);
    assert_eq!(mock.connections(), 1, "HTTP/2 prior knowledge multiplexes");
}

#[tokio::test]
async fn fcm_token_is_fetched_once_reused_and_refreshed_after_401() {
    let (mock, p) = fcm_setup().await;
    let payload = json!({"alert": "hello", "title": "Tidings", "convId": "conv1"});
    for _ in 0..3 {
        assert_eq!(
            p.send(&job(Platform::Android, "fcm-tok", payload.clone()))
                .await,
            Outcome::Delivered
        );
    }
    assert_eq!(mock.token_requests(), 1);
    let reqs = mock.requests(Route::Fcm);
    assert_eq!(reqs.len(), 3);
    let r = &reqs[0];
    assert_eq!(r.path, "/v1/projects/test-proj/messages:send");
    let m = &r.json()["message"];
    assert_eq!(m["token"], "fcm-tok");
    assert_eq!(
        m["notification"],
        json!({"title": "Tidings", "body": "hello"})
    );
    let inner: Value = serde_json::from_str(m["data"]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(inner, payload);
    let ttl = m["android"]["ttl"].as_str().unwrap();
    assert!(ttl == "604800s" || ttl == "604799s", "{ttl}");

    mock.revoke_access_tokens();
    assert_eq!(
        p.send(&job(Platform::Android, "fcm-tok", payload)).await,
        Outcome::Delivered
    );
    assert_eq!(mock.token_requests(), 2, "refetched after the 401");
    let fcm = mock.requests(Route::Fcm);
    assert_eq!(fcm.len(), 5, "the 401'd request and its resend");
    assert_ne!(
        fcm[3].header("authorization"),
        fcm[4].header("authorization")
    );
}

#[tokio::test]
async fn fcm_dead_tokens_and_retries() {
    let (mock, p) = fcm_setup().await;
    mock.script(
        Route::Fcm,
        [
            Reply::new(
                404,
                r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#,
            ),
            Reply::new(
                400,
                r#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT"}}"#,
            ),
            Reply::new(503, "{}"),
        ],
    );
    let j = job(Platform::Android, "t", json!({"alert": "x"}));
    assert_eq!(
        p.deliver(&j).await,
        Outcome::DeadToken {
            reason: "UNREGISTERED".into()
        }
    );
    assert!(matches!(p.deliver(&j).await, Outcome::DeadToken { .. }));
    assert_eq!(p.deliver(&j).await, Outcome::Delivered, "503 then 200");
    assert_eq!(mock.requests(Route::Fcm).len(), 4);
}

async fn webhook_setup(mock: &PushMock, format: WebhookFormat, path: &str) -> Providers {
    let mut cfg = section(mock);
    cfg.webhook = WebhookSection {
        url: Some(format!("{}{path}", mock.url)),
        format,
        topic: Some(TOPIC.into()),
        ..WebhookSection::default()
    };
    Providers::new(&cfg).unwrap()
}

#[tokio::test]
async fn matrix_gateway_rejected_means_dead() {
    let mock = PushMock::start().await;
    let p = webhook_setup(&mock, WebhookFormat::Matrix, "/_matrix/push/v1/notify").await;
    mock.script(Route::Matrix, [Reply::new(200, r#"{"rejected":["gone"]}"#)]);
    let payload = json!({"alert": "hello"});
    assert_eq!(
        p.send(&job(Platform::Ios, "gone", payload.clone())).await,
        Outcome::DeadToken {
            reason: "rejected".into()
        }
    );
    assert_eq!(
        p.send(&job(Platform::Android, "live", payload.clone()))
            .await,
        Outcome::Delivered
    );
    let reqs = mock.requests(Route::Matrix);
    let n = &reqs[0].json()["notification"];
    assert_eq!(n["event_id"], "msg1");
    assert_eq!(n["room_id"], "conv1");
    assert_eq!(n["sender"], "alice");
    assert_eq!(n["counts"]["unread"], 1);
    assert_eq!(n["content"], payload);
    assert_eq!(n["devices"][0]["pushkey"], "gone");
    assert_eq!(n["devices"][0]["app_id"], "tidings.ios");
    assert_eq!(
        reqs[1].json()["notification"]["devices"][0]["app_id"],
        "tidings.android"
    );
}

#[tokio::test]
async fn gorush_body_shape() {
    let mock = PushMock::start().await;
    let p = webhook_setup(&mock, WebhookFormat::Gorush, "/api/push").await;
    let payload = json!({"alert": "hello", "title": "T"});
    assert_eq!(
        p.send(&job(Platform::Ios, "ios-tok", payload.clone()))
            .await,
        Outcome::Delivered
    );
    let body = mock.requests(Route::Gorush)[0].json();
    assert_eq!(
        body,
        json!({"notifications": [{
            "tokens": ["ios-tok"],
            "platform": 1,
            "message": "hello",
            "title": "T",
            "badge": 1,
            "topic": TOPIC,
            "production": true,
            "data": payload,
        }]})
    );
}

#[test]
fn missing_or_bad_key_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.p8");
    let cfg = PushSection {
        apns: vec![ApnsSection {
            team_id: TEAM.into(),
            key_id: KID.into(),
            key_file: missing.clone(),
            topic: TOPIC.into(),
            ..ApnsSection::default()
        }],
        ..PushSection::default()
    };
    let e = Providers::new(&cfg).err().unwrap().to_string();
    assert!(e.contains("nope.p8"), "{e}");

    let bad = dir.path().join("bad.p8");
    std::fs::write(
        &bad,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let mut cfg = cfg;
    cfg.apns[0].key_file = bad;
    assert!(Providers::new(&cfg).is_err());

    let mut cfg = PushSection::default();
    cfg.fcm.service_account_file = Some(dir.path().join("sa.json"));
    std::fs::write(dir.path().join("sa.json"), "{}").unwrap();
    assert!(
        Providers::new(&cfg)
            .err()
            .unwrap()
            .to_string()
            .contains("sa.json")
    );
}
