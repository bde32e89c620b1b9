use super::*;
use crate::push::Platform;

fn signer() -> Signer {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    Signer::es256_pem(key.serialize_pem().as_bytes(), "k.p8").unwrap()
}

fn job(payload: Value) -> PushJob {
    PushJob {
        token: "ab12".into(),
        platform: Platform::Ios,
        payload,
        sandbox: false,
        team_id: None,
        collapse_id: None,
        expires_at: 1_000_604_800,
        msg_id: "m".into(),
        conv_id: "c".into(),
        from: "f".into(),
        badge: None,
        apns_priority: None,
        apns_push_type: None,
    }
}

#[test]
fn token_is_reused_for_50_minutes_then_resigned() {
    let t = ProviderToken::new("TEAM", "KEY", signer());
    let first = t.bearer(1000).unwrap();
    assert_eq!(t.bearer(1000 + TOKEN_REFRESH_SECS - 1).unwrap(), first);
    let second = t.bearer(1000 + TOKEN_REFRESH_SECS).unwrap();
    assert_ne!(second, first);
    assert_eq!(t.bearer(1000 + TOKEN_REFRESH_SECS + 60).unwrap(), second);
    // A clock that went back never sends an iat from the future.
    assert_ne!(t.bearer(10).unwrap(), second);
}

#[test]
fn invalidate_only_drops_the_named_token() {
    let t = ProviderToken::new("TEAM", "KEY", signer());
    let first = t.bearer(0).unwrap();
    t.invalidate("some other token");
    assert_eq!(t.bearer(1).unwrap(), first);
    t.invalidate(&first);
    assert_ne!(t.bearer(1).unwrap(), first);
}

#[test]
fn request_has_apples_headers() {
    let mut j = job(json!({"aps": {"alert": "hi"}}));
    j.collapse_id = Some("c1".into());
    let r = build_request("https://api.push.apple.com/", "com.example.app", &j);
    assert_eq!(r.url, "https://api.push.apple.com/3/device/ab12");
    assert_eq!(
        r.headers,
        vec![
            ("apns-topic", "com.example.app".to_owned()),
            ("apns-push-type", "alert".to_owned()),
            ("apns-priority", "10".to_owned()),
            ("apns-expiration", "1000604800".to_owned()),
            ("apns-collapse-id", "c1".to_owned()),
        ]
    );
    assert_eq!(r.body, br#"{"aps":{"alert":"hi"}}"#);
}

#[test]
fn collapse_id_only_when_given_and_short_enough() {
    let r = build_request("https://h", "t", &job(json!({})));
    assert!(!r.headers.iter().any(|(k, _)| *k == "apns-collapse-id"));
    let mut j = job(json!({}));
    j.collapse_id = Some("x".repeat(65));
    let r = build_request("https://h", "t", &j);
    assert!(!r.headers.iter().any(|(k, _)| *k == "apns-collapse-id"));
}

#[test]
fn content_available_only_is_background_at_priority_5() {
    assert_eq!(
        push_type(&json!({"aps": {"content-available": 1}})),
        ("background", 5)
    );
    assert_eq!(
        push_type(&json!({"aps": {"content-available": 1, "alert": "x"}})),
        ("alert", 10)
    );
    assert_eq!(push_type(&json!({"aps": {"badge": 3}})), ("alert", 10));
    assert_eq!(push_type(&json!({"custom": 1})), ("alert", 10));
}

#[test]
fn answers_are_classified() {
    assert_eq!(classify(200, None, b""), Outcome::Delivered);
    assert_eq!(
        classify(410, None, br#"{"reason":"Unregistered","timestamp":1}"#),
        Outcome::DeadToken {
            reason: "Unregistered".into()
        }
    );
    for r in [
        "BadDeviceToken",
        "DeviceTokenNotForTopic",
        "TopicDisallowed",
    ] {
        let body = format!(r#"{{"reason":"{r}"}}"#);
        assert_eq!(
            classify(400, None, body.as_bytes()),
            Outcome::DeadToken { reason: r.into() }
        );
    }
    assert!(matches!(
        classify(400, None, br#"{"reason":"PayloadTooLarge"}"#),
        Outcome::Failed { .. }
    ));
    assert!(matches!(
        classify(403, None, br#"{"reason":"InvalidProviderToken"}"#),
        Outcome::Failed { .. }
    ));
    assert!(matches!(
        classify(403, None, br#"{"reason":"ExpiredProviderToken"}"#),
        Outcome::Retry { after: Some(d), .. } if d.is_zero()
    ));
    assert!(matches!(
        classify(429, Some(Duration::from_secs(3)), br#"{"reason":"TooManyRequests"}"#),
        Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
    ));
    assert!(matches!(
        classify(503, None, b"not json"),
        Outcome::Retry { after: None, .. }
    ));
}

#[test]
fn leancloud_payload_maps_to_aps() {
    let lc = json!({
        "alert": "hello", "title": "Tidings", "badge": 2, "sound": "default",
        "content-available": 1, "convId": "c1", "_profile": "dev",
        "_apns_team_id": "T2", "collapse-id": "c", "apns-priority": "5",
    });
    assert_eq!(
        body_from_leancloud(&lc),
        json!({
            "aps": {
                "alert": {"title": "Tidings", "body": "hello"},
                "badge": 2, "sound": "default", "content-available": 1,
            },
            "convId": "c1",
        })
    );
    let ready = json!({"aps": {"alert": "x"}, "k": 1, "_profile": "dev"});
    assert_eq!(
        body_from_leancloud(&ready),
        json!({"aps": {"alert": "x"}, "k": 1})
    );
    assert_eq!(
        body_from_leancloud(&json!({"alert": {"body": "b"}, "title": "t"})),
        json!({"aps": {"alert": {"body": "b", "title": "t"}}})
    );
    assert_eq!(
        body_from_leancloud(&json!("plain")),
        json!({"aps": {"alert": "plain"}})
    );
}
