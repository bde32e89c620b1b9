//! Unit tests of `[push]`: the provider tables in TOML, the env keys, and
//! the start-time checks of credentials files.

use super::env::apply_env;
use super::*;

fn with_env(file: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut table: toml::Table = toml::from_str(file).expect("test toml");
    apply_env(
        &mut table,
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )?;
    let config: Config = table
        .try_into()
        .map_err(|e| ConfigError::Parse(e.to_string()))?;
    config.validate()?;
    Ok(config)
}

fn invalid_key(text: &str) -> String {
    match Config::load_from_str(text) {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("{text:?}: expected Invalid, got {other:?}"),
    }
}

#[test]
fn defaults_are_off_with_leancloud_expiry() {
    let p = Config::default().push;
    assert!(!p.enabled);
    assert_eq!(p.expiry_secs, 604_800);
    assert!(p.apns.is_empty());
    assert_eq!(p.fcm.endpoint, "https://fcm.googleapis.com");
    assert_eq!(p.webhook.format, WebhookFormat::Matrix);
    assert_eq!(
        ApnsSection::default().sandbox_endpoint,
        "https://api.sandbox.push.apple.com"
    );
}

#[test]
fn provider_tables_parse_and_files_are_checked_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let p8 = dir.path().join("AuthKey.p8");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(&p8, key.serialize_pem()).unwrap();
    let text = |enabled: bool, key_file: &std::path::Path| {
        format!(
            "[push]\nenabled = {enabled}\n[[push.apns]]\nteam_id = \"T1\"\nkey_id = \"K1\"\n\
             key_file = {:?}\ntopic = \"com.example\"\n[[push.apns]]\nteam_id = \"T2\"\n\
             key_id = \"K2\"\nkey_file = {:?}\ntopic = \"com.example\"\n\
             endpoint = \"https://127.0.0.1:9\"\n[push.webhook]\nurl = \"http://gw/notify\"\n\
             format = \"gorush\"\n",
            key_file.display().to_string(),
            key_file.display().to_string()
        )
    };
    let c = Config::load_from_str(&text(true, &p8)).unwrap();
    assert_eq!(c.push.apns.len(), 2);
    assert_eq!(c.push.apns[0].endpoint, "https://api.push.apple.com");
    assert_eq!(c.push.apns[1].endpoint, "https://127.0.0.1:9");
    assert_eq!(c.push.webhook.format, WebhookFormat::Gorush);

    let missing = dir.path().join("missing.p8");
    assert!(
        Config::load_from_str(&text(false, &missing)).is_ok(),
        "off: not read"
    );
    match Config::load_from_str(&text(true, &missing)) {
        Err(e @ ConfigError::Invalid { .. }) => {
            let e = e.to_string();
            assert!(
                e.starts_with("push.apns[0].key_file") && e.contains("missing.p8"),
                "{e}"
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let not_pem = dir.path().join("not.p8");
    std::fs::write(&not_pem, "hello").unwrap();
    assert_eq!(invalid_key(&text(true, &not_pem)), "push.apns[0].key_file");
}

#[test]
fn bad_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("sa.json");
    std::fs::write(
        &sa,
        r#"{"client_email":"x@y","private_key":"k","project_id":"p"}"#,
    )
    .unwrap();
    let sa_text = format!(
        "[push]\nenabled = true\n[push.fcm]\nservice_account_file = {:?}\n",
        sa.display().to_string()
    );
    let cases: &[(&str, &str)] = &[
        ("[push]\nenabled = true\n", "push.enabled"),
        ("[push]\nexpiry_secs = 0\n", "push.expiry_secs"),
        ("[push]\nexpiry_secs = 2419201\n", "push.expiry_secs"),
        ("[push]\nqueue_capacity = 0\n", "push.queue_capacity"),
        ("[push]\nmax_retries = 101\n", "push.max_retries"),
        ("[push]\nretry_base_ms = 0\n", "push.retry_base_ms"),
        ("[push.fcm]\nendpoint = \"ftp://x\"\n", "push.fcm.endpoint"),
        ("[push.webhook]\nurl = \"nope\"\n", "push.webhook.url"),
        (
            "[[push.apns]]\nteam_id = \"T\"\n[[push.apns]]\nteam_id = \"T\"\n",
            "push.apns[1].team_id",
        ),
        (
            "[push]\nenabled = true\n[[push.apns]]\nkey_id = \"K\"\ntopic = \"t\"\n",
            "push.apns[0].team_id",
        ),
        (&sa_text, "push.fcm.service_account_file"),
    ];
    for (text, key) in cases {
        assert_eq!(invalid_key(text), *key, "{text}");
    }
}

#[test]
fn env_sets_scalars_and_refuses_the_tables() {
    let c = with_env(
        "",
        &[
            ("TIDINGS_PUSH_EXPIRY_SECS", "3600"),
            ("TIDINGS_PUSH_TEMPLATE", "New message in ${convId}"),
            ("TIDINGS_PUSH_RETRY_BASE_MS", "50"),
        ],
    )
    .unwrap();
    assert_eq!(c.push.expiry_secs, 3600);
    assert_eq!(c.push.template, "New message in ${convId}");
    assert_eq!(c.push.retry_base_ms, 50);
    let err = with_env("", &[("TIDINGS_PUSH_APNS", "x")]).unwrap_err();
    assert!(
        err.to_string().contains("set it in the config file"),
        "{err}"
    );
    let err = with_env("", &[("TIDINGS_PUSH_FCM_ENDPOINT", "https://x")]).unwrap_err();
    assert!(
        err.to_string().contains("TIDINGS_PUSH_FCM_ENDPOINT"),
        "{err}"
    );
}

#[test]
fn push_changes_need_a_restart() {
    let old = Config::default();
    let mut new = old.clone();
    new.push.enabled = true;
    new.push.webhook.url = Some("http://gw".into());
    assert_eq!(
        old.live_changes(&new),
        (
            vec![],
            vec!["push.enabled".to_owned(), "push.webhook".to_owned()]
        )
    );
}

#[test]
fn certificate_auth_needs_cert_and_key_and_no_p8() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("apns.crt");
    let key = dir.path().join("apns.key");
    let ck = rcgen::generate_simple_self_signed(vec!["apns".into()]).unwrap();
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let text = |extra: &str| {
        format!(
            "[push]\nenabled = true\n[[push.apns]]\nteam_id = \"T\"\ntopic = \"t\"\n\
             cert_file = {:?}\n{extra}",
            cert.display().to_string()
        )
    };
    let with_key = format!("cert_key_file = {:?}\n", key.display().to_string());
    let c = Config::load_from_str(&text(&with_key)).unwrap();
    assert_eq!(c.push.apns[0].cert_key_file.as_deref(), Some(key.as_path()));
    assert_eq!(invalid_key(&text("")), "push.apns[0].cert_key_file");
    let both = format!("{with_key}key_file = \"x.p8\"\n");
    assert_eq!(invalid_key(&text(&both)), "push.apns[0].key_file");
}
