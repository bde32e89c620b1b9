use super::*;
use crate::push::Platform;

fn job(payload: Value) -> PushJob {
    PushJob {
        token: "fcm-token".into(),
        platform: Platform::Android,
        payload,
        sandbox: false,
        team_id: None,
        collapse_id: None,
        expires_at: 1000 + 604_800,
        msg_id: "m".into(),
        conv_id: "c".into(),
        from: "f".into(),
        badge: None,
        apns_priority: None,
        apns_push_type: None,
    }
}

#[test]
fn message_has_the_android_sdk_shape() {
    let payload = json!({"alert": "hello", "title": "Tidings", "custom": 1});
    let m = build_message(&job(payload.clone()), 1000);
    assert_eq!(m["message"]["token"], "fcm-token");
    assert_eq!(
        m["message"]["notification"],
        json!({"title": "Tidings", "body": "hello"})
    );
    let inner: Value =
        serde_json::from_str(m["message"]["data"]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(inner, payload);
    assert_eq!(m["message"]["android"]["ttl"], "604800s");
    // Later sends carry what is left of the validity.
    let m = build_message(&job(payload), 1000 + 4);
    assert_eq!(m["message"]["android"]["ttl"], "604796s");
}

#[test]
fn alert_object_gives_title_and_body() {
    let m = build_message(&job(json!({"alert": {"title": "T", "body": "B"}})), 1000);
    assert_eq!(
        m["message"]["notification"],
        json!({"title": "T", "body": "B"})
    );
}

#[test]
fn token_cache_expires_early_and_forgets_refused_tokens() {
    let mut c = TokenCache::default();
    assert_eq!(c.get(0), None);
    c.store("ya29".into(), 3600, 100);
    assert_eq!(c.get(100), Some("ya29"));
    assert_eq!(c.get(100 + 3600 - TOKEN_MARGIN_SECS - 1), Some("ya29"));
    assert_eq!(c.get(100 + 3600 - TOKEN_MARGIN_SECS), None);
    c.invalidate("other");
    assert_eq!(c.get(100), Some("ya29"));
    c.invalidate("ya29");
    assert_eq!(c.get(100), None);
}

#[test]
fn assertion_claims_name_scope_and_audience() {
    let sa = ServiceAccount {
        client_email: "svc@p.iam.gserviceaccount.com".into(),
        private_key: String::new(),
        token_uri: "https://oauth2.googleapis.com/token".into(),
        project_id: "p".into(),
    };
    let c = assertion_claims(&sa, 50);
    assert_eq!(c["iss"], "svc@p.iam.gserviceaccount.com");
    assert_eq!(c["scope"], SCOPE);
    assert_eq!(c["aud"], "https://oauth2.googleapis.com/token");
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        3600
    );
    assert!(token_request_body("a.b.c").ends_with("&assertion=a.b.c"));
}

#[test]
fn answers_are_classified() {
    assert_eq!(
        classify(200, None, br#"{"name":"projects/p/messages/1"}"#),
        Outcome::Delivered
    );
    let unregistered = br#"{"error":{"code":404,"status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
    assert_eq!(
        classify(404, None, unregistered),
        Outcome::DeadToken {
            reason: "UNREGISTERED".into()
        }
    );
    let bad_token = br#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT"}}"#;
    assert!(matches!(
        classify(400, None, bad_token),
        Outcome::DeadToken { .. }
    ));
    let bad_payload = br#"{"error":{"code":400,"message":"Invalid JSON payload received.","status":"INVALID_ARGUMENT"}}"#;
    assert!(matches!(
        classify(400, None, bad_payload),
        Outcome::Failed { .. }
    ));
    assert!(matches!(
        classify(429, Some(Duration::from_secs(2)), b"{}"),
        Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(2)
    ));
    assert!(matches!(
        classify(503, None, b""),
        Outcome::Retry { after: None, .. }
    ));
    assert!(matches!(classify(403, None, b"{}"), Outcome::Failed { .. }));
}
