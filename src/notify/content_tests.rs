use super::*;

const VARS: Vars = Vars {
    conv: "c1",
    from: "al\"ice",
    now_secs: 1_700_000_000,
};

fn dev(device_type: &str) -> Installation {
    Installation {
        object_id: "o1".into(),
        device_type: device_type.into(),
        device_token: Some("abcd".into()),
        registration_id: Some("fcm-token".into()),
        ..Installation::default()
    }
}

#[test]
fn a_payload_is_an_object_a_string_holding_one_or_alert_text() {
    assert_eq!(
        payload_of(&json!({"alert": "x"})),
        Some(json!({"alert": "x"}))
    );
    assert_eq!(
        payload_of(&json!("{\"alert\":\"x\",\"badge\":\"Increment\"}")),
        Some(json!({"alert": "x", "badge": "Increment"}))
    );
    assert_eq!(payload_of(&json!("hello")), Some(json!({"alert": "hello"})));
    assert_eq!(payload_of(&json!("[1]")), Some(json!({"alert": "[1]"})));
    assert_eq!(payload_of(&json!("  ")), None);
    assert_eq!(payload_of(&Value::Null), None);
    assert_eq!(payload_of(&json!(3)), None);
}

#[test]
fn the_hook_beats_push_data_which_beats_the_template() {
    let t = "{\"alert\":\"from ${fromClientId} in ${convId} at ${timestamp}\"}";
    let hook = json!("{\"alert\":\"hook\"}");
    assert_eq!(
        resolve(Some(&hook), Some("{\"alert\":\"data\"}"), t, VARS),
        Some(json!({"alert": "hook"}))
    );
    assert_eq!(
        resolve(None, Some("{\"alert\":\"data\"}"), t, VARS),
        Some(json!({"alert": "data"}))
    );
    // An empty hook answer falls through; the template's variables are
    // filled after parsing, so the quote in the clientId is harmless.
    assert_eq!(
        resolve(Some(&Value::Null), None, t, VARS),
        Some(json!({"alert": "from al\"ice in c1 at 1700000000"}))
    );
    assert_eq!(
        resolve(None, None, "New message", VARS),
        Some(json!({"alert": "New message"}))
    );
    assert_eq!(resolve(None, None, "", VARS), None);
}

#[test]
fn devices_reach_a_provider_by_platform_token_and_vendor() {
    assert_eq!(target(&dev("ios")), Some((Platform::Ios, "abcd")));
    assert_eq!(
        target(&dev("android")),
        Some((Platform::Android, "fcm-token"))
    );
    let mut mi = dev("android");
    mi.vendor = Some("mi".into());
    assert_eq!(target(&mi), None, "a Xiaomi token is not FCM's");
    mi.vendor = Some("FCM".into());
    assert!(target(&mi).is_some());
    let mut no_token = dev("ios");
    no_token.device_token = Some(String::new());
    assert_eq!(target(&no_token), None);
    assert_eq!(target(&dev("macos")), None);
}

#[test]
fn a_split_payload_gives_each_platform_its_part() {
    let p = json!({"ios": {"alert": "i"}, "android": {"title": "a"}});
    assert_eq!(for_platform(&p, Platform::Ios), Some(json!({"alert": "i"})));
    assert_eq!(
        for_platform(&p, Platform::Android),
        Some(json!({"title": "a"}))
    );
    let only_ios = json!({"ios": {"alert": "i"}});
    assert_eq!(for_platform(&only_ios, Platform::Android), None);
    let plain = json!({"alert": "x", "ios": "not an object"});
    assert_eq!(for_platform(&plain, Platform::Android), Some(plain.clone()));
}

#[test]
fn increment_is_case_sensitive_and_ios_only() {
    let p = json!({"badge": "Increment"});
    assert!(wants_increment(&p, Platform::Ios));
    assert!(!wants_increment(&p, Platform::Android));
    assert!(!wants_increment(
        &json!({"badge": "increment"}),
        Platform::Ios
    ));
    assert!(!wants_increment(&json!({"badge": 3}), Platform::Ios));
}

#[test]
fn control_keys_choose_credentials_with_the_registration_as_fallback() {
    let mut d = dev("ios");
    d.apns_team_id = Some("TEAM2".into());
    assert_eq!(
        controls(&json!({"alert": "x"}), &d),
        Controls {
            sandbox: false,
            team_id: Some("TEAM2".into()),
            collapse_id: None,
        }
    );
    let c = controls(
        &json!({"_profile": "dev", "_apns_team_id": "T3", "collapse-id": "k"}),
        &d,
    );
    assert!(c.sandbox);
    assert_eq!(c.team_id.as_deref(), Some("T3"));
    assert_eq!(c.collapse_id.as_deref(), Some("k"));
    d.device_profile = Some("dev".into());
    assert!(controls(&json!({}), &d).sandbox);
}

#[test]
fn bodies_carry_the_counted_badge_and_never_the_control_keys() {
    let part = json!({"alert": "hi", "badge": "Increment", "_profile": "dev",
        "_apns_team_id": "T", "custom": 1});
    let apns = body(&part, Some(2), true).expect("fits");
    assert_eq!(
        apns,
        json!({"aps": {"alert": "hi", "badge": 2}, "custom": 1})
    );
    let fcm = body(&part, None, false).expect("fits");
    assert_eq!(
        fcm,
        json!({"alert": "hi", "badge": "Increment", "custom": 1})
    );
}

#[test]
fn a_long_alert_is_cut_on_a_character_boundary_to_fit_4_kb() {
    let long = "é".repeat(5000);
    let b = body(&json!({"alert": long}), None, true).expect("cut to fit");
    let len = b.to_string().len();
    assert!(
        len <= MAX_PAYLOAD_BYTES && len > MAX_PAYLOAD_BYTES - 8,
        "{len}"
    );
    let escaped = "\"".repeat(5000);
    let b = body(
        &json!({"alert": {"title": "t", "body": escaped}}),
        None,
        true,
    )
    .expect("escapes are cut too");
    assert!(b.to_string().len() <= MAX_PAYLOAD_BYTES);
    let custom = "x".repeat(5000);
    assert_eq!(
        body(&json!({"alert": "a", "big": custom}), None, true),
        None,
        "no alert to cut: too large"
    );
}
