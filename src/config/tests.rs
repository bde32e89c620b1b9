//! Unit tests of the config: defaults, file and env loading, validation
//! messages, and the live-reload diff.

use super::env::{ENV_KEYS, TABLE_KEYS, apply_env};
use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>()
        .into_iter()
}

fn load_env(file: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut table: toml::Table = toml::from_str(file).expect("test toml");
    apply_env(&mut table, env(pairs))?;
    let config: Config = table
        .try_into()
        .map_err(|e| ConfigError::Parse(e.to_string()))?;
    config.validate()?;
    Ok(config)
}

#[test]
fn default_toml_is_default() {
    let parsed = Config::load_from_str(DEFAULT_TOML).expect("default toml loads");
    assert_eq!(parsed, Config::default());
}

#[test]
fn defaults_are_valid_and_empty_file_is_default() {
    Config::default().validate().expect("defaults validate");
    assert_eq!(Config::load_from_str("").unwrap(), Config::default());
}

#[test]
fn defaults_match_spec() {
    let c = Config::default();
    assert_eq!(c.server.listen, "127.0.0.1:7450".parse().unwrap());
    assert_eq!(c.auth.mode, AuthMode::Signature);
    assert_eq!(c.limits.max_frame_bytes, 65536);
    assert_eq!(c.limits.max_content_bytes, 5120);
    assert_eq!(c.delivery.history_max_limit, 1000);
    assert!(c.store.fsync);
    assert_eq!(c.log.format, LogFormat::Text);
}

#[test]
fn state_directory_sets_data_dir() {
    assert_eq!(data_dir_from(None), PathBuf::from("./tidings-data"));
    assert_eq!(
        data_dir_from(Some("/var/lib/tidings".into())),
        PathBuf::from("/var/lib/tidings")
    );
    assert_eq!(
        data_dir_from(Some("/var/lib/a:/var/lib/b".into())),
        PathBuf::from("/var/lib/a")
    );
    assert_eq!(
        data_dir_from(Some("".into())),
        PathBuf::from("./tidings-data")
    );
}

#[test]
fn env_overrides_file() {
    let c = load_env(
        "[limits]\nmax_frame_bytes = 4096\n[server]\nlisten = \"0.0.0.0:1\"\n",
        &[
            ("TIDINGS_LIMITS_MAX_FRAME_BYTES", "8192"),
            ("TIDINGS_SERVER_DATA_DIR", "/tmp/x"),
            ("TIDINGS_AUTH_MODE", "open"),
            ("TIDINGS_STORE_FSYNC", "false"),
            ("TIDINGS_AUTH_MASTER_KEY", "12345678901234567890"),
            ("TIDINGS_LOG_FORMAT", "json"),
            ("TIDINGS_CONFIG", "/etc/tidings/tidings.toml"),
            ("PATH", "/bin"),
        ],
    )
    .unwrap();
    assert_eq!(c.limits.max_frame_bytes, 8192);
    assert_eq!(c.server.listen, "0.0.0.0:1".parse().unwrap());
    assert_eq!(c.server.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(c.auth.mode, AuthMode::Open);
    assert!(!c.store.fsync);
    assert_eq!(c.auth.master_key.as_deref(), Some("12345678901234567890"));
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn load_with_env_reads_file_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, "[delivery]\nack_timeout_secs = 7\n").unwrap();
    let c = Config::load_with_env(
        Some(&path),
        env(&[("TIDINGS_DELIVERY_PULL_SYNC_LIMIT", "9")]),
    )
    .unwrap();
    assert_eq!(c.delivery.ack_timeout_secs, 7);
    assert_eq!(c.delivery.pull_sync_limit, 9);
}

#[test]
fn missing_explicit_file_is_error() {
    let err =
        Config::load_with_env(Some(Path::new("/nonexistent/tidings.toml")), env(&[])).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/tidings.toml"));
}

#[test]
fn unknown_key_in_file_names_it() {
    let err = Config::load_from_str("[limits]\nmax_frame_byte = 4096\n").unwrap_err();
    assert!(matches!(err, ConfigError::Parse(_)));
    assert!(err.to_string().contains("max_frame_byte"), "{err}");
    let err = Config::load_from_str("[limit]\n").unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
}

#[test]
fn wrong_type_in_file_names_key() {
    let err = Config::load_from_str("[store]\nfsync = \"yes\"\n").unwrap_err();
    assert!(err.to_string().contains("fsync"), "{err}");
}

#[test]
fn invalid_values_name_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[limits]\nmax_frame_bytes = 100\n",
            "limits.max_frame_bytes",
        ),
        (
            "[limits]\nmax_frame_bytes = 16777217\n",
            "limits.max_frame_bytes",
        ),
        (
            "[limits]\nmax_content_bytes = 65536\n",
            "limits.max_content_bytes",
        ),
        (
            "[limits]\nlogin_timeout_ms = 0\n",
            "limits.login_timeout_ms",
        ),
        (
            "[limits]\nidle_timeout_secs = 0\n",
            "limits.idle_timeout_secs",
        ),
        ("[limits]\nkeep_alive_secs = 0\n", "limits.keep_alive_secs"),
        (
            "[limits]\nkeep_alive_secs = 3601\n",
            "limits.keep_alive_secs",
        ),
        (
            "[delivery]\nack_timeout_secs = 0\n",
            "delivery.ack_timeout_secs",
        ),
        (
            "[delivery]\npush_sync_limit = 0\n",
            "delivery.push_sync_limit",
        ),
        (
            "[delivery]\npull_sync_limit = 0\n",
            "delivery.pull_sync_limit",
        ),
        (
            "[delivery]\nhistory_max_limit = 1001\n",
            "delivery.history_max_limit",
        ),
        (
            "[delivery]\nhistory_max_limit = 0\n",
            "delivery.history_max_limit",
        ),
        ("[store]\ngroup_commit_max = 0\n", "store.group_commit_max"),
        (
            "[limits]\nadmin_header_timeout_secs = 0\n",
            "limits.admin_header_timeout_secs",
        ),
        (
            "[limits]\nadmin_max_header_bytes = 10\n",
            "limits.admin_max_header_bytes",
        ),
        ("[quotas]\nmessages_burst = 0\n", "quotas.messages_burst"),
        (
            "[auth]\nsignature_window_secs = 0\n",
            "auth.signature_window_secs",
        ),
        ("[auth]\nmaster_key = \"short\"\n", "auth.master_key"),
        ("[auth]\napp_key = \"\"\n", "auth.app_key"),
        ("[auth]\napp_key = \"a,master\"\n", "auth.app_key"),
        ("[auth]\napp_key = \"k\u{e9}y\"\n", "auth.app_key"),
        (
            "[auth]\nconversation_signature_window_secs = 0\n",
            "auth.conversation_signature_window_secs",
        ),
        ("[server]\ntls_cert = \"c.pem\"\n", "server.tls_key"),
        ("[server]\ntls_key = \"k.pem\"\n", "server.tls_cert"),
        ("[log]\nlevel = \"info,,=[\"\n", "log.level"),
    ];
    for (text, key) in cases {
        match Config::load_from_str(text) {
            Err(e @ ConfigError::Invalid { .. }) => {
                assert!(e.to_string().starts_with(key), "{text:?}: {e}")
            }
            other => panic!("{text:?}: expected Invalid({key}), got {other:?}"),
        }
    }
    let err = Config::load_from_str("[limits]\nmax_frame_bytes = 100\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "limits.max_frame_bytes must be between 1024 and 16777216"
    );
}

#[test]
fn tls_pair_is_accepted() {
    let c = Config::load_from_str("[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n").unwrap();
    assert_eq!(c.server.tls_cert, Some(PathBuf::from("c.pem")));
}

#[test]
fn unknown_env_var_is_error() {
    for var in [
        "TIDINGS_LIMITS_NOPE",
        "TIDINGS_NOPE_LEVEL",
        "TIDINGS_SERVER",
        "TIDINGS_",
    ] {
        let err = load_env("", &[(var, "1")]).unwrap_err();
        match &err {
            ConfigError::Env { var: v, .. } => assert_eq!(v, var),
            other => panic!("{var}: expected Env error, got {other:?}"),
        }
        assert!(err.to_string().contains(var), "{err}");
    }
}

#[test]
fn bad_env_value_names_var() {
    let err = load_env("", &[("TIDINGS_STORE_FSYNC", "yes")]).unwrap_err();
    assert!(matches!(err, ConfigError::Env { .. }), "{err}");
    assert!(err.to_string().contains("TIDINGS_STORE_FSYNC"), "{err}");
    let err = load_env("", &[("TIDINGS_SERVER_LISTEN", "nowhere")]).unwrap_err();
    assert!(err.to_string().contains("TIDINGS_SERVER_LISTEN"), "{err}");
    let err = load_env("", &[("TIDINGS_LIMITS_MAX_FRAME_BYTES", "-1")]).unwrap_err();
    assert!(
        err.to_string().contains("TIDINGS_LIMITS_MAX_FRAME_BYTES"),
        "{err}"
    );
    // Parses fine but out of range: reported by validate, naming the key.
    let err = load_env("", &[("TIDINGS_LIMITS_MAX_FRAME_BYTES", "10")]).unwrap_err();
    assert!(
        err.to_string().starts_with("limits.max_frame_bytes"),
        "{err}"
    );
}

#[test]
fn env_keys_cover_every_field() {
    let mut full = Config::default();
    full.server.tls_cert = Some("c".into());
    full.server.tls_key = Some("k".into());
    full.auth.app_id = Some("a".into());
    full.auth.master_key = Some("m".into());
    full.auth.app_key = Some("k".into());
    full.hooks.base_url = Some("http://h".into());
    full.messages.keyword_file = Some("w".into());
    full.hooks.hook_key = Some("k".into());
    full.system.webhook_url = Some("http://w".into());
    full.gateway.public_url = Some("wss://g/".into());
    full.gateway.tls_cert = Some("c".into());
    full.gateway.tls_key = Some("k".into());
    full.push.extra_ca_file = Some("ca.pem".into());
    let table = toml::Table::try_from(&full).unwrap();
    let mut from_struct: Vec<(String, String)> = Vec::new();
    for (section, v) in &table {
        for key in v.as_table().unwrap().keys() {
            if !TABLE_KEYS.contains(&(section.as_str(), key.as_str())) {
                from_struct.push((section.clone(), key.clone()));
            }
        }
    }
    let mut listed: Vec<(String, String)> = ENV_KEYS
        .iter()
        .map(|(s, k, _)| (s.to_string(), k.to_string()))
        .collect();
    from_struct.sort();
    listed.sort();
    assert_eq!(from_struct, listed);
}

#[test]
fn live_changes_splits_live_from_restart() {
    let old = Config::default();
    assert_eq!(old.live_changes(&old.clone()), (vec![], vec![]));

    let mut new = old.clone();
    new.log.level = "tidings=debug".to_owned();
    assert_eq!(
        old.live_changes(&new),
        (vec!["log.level".to_owned()], vec![])
    );

    new.server.listen = "0.0.0.0:7450".parse().unwrap();
    new.auth.master_key = Some("0123456789abcdef".to_owned());
    new.log.format = LogFormat::Json;
    let (live, restart) = old.live_changes(&new);
    assert_eq!(live, ["log.level"]);
    assert_eq!(restart, ["server.listen", "auth.master_key", "log.format"]);
}

#[test]
fn live_changes_sees_every_key() {
    let old = Config::default();
    let new = Config {
        server: ServerSection {
            listen: "0.0.0.0:1".parse().unwrap(),
            data_dir: "/elsewhere".into(),
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            shutdown_grace_secs: 1,
        },
        auth: AuthSection {
            mode: AuthMode::Open,
            app_id: Some("app".into()),
            master_key: Some("0123456789abcdef".into()),
            signature_window_secs: 1,
            app_key: Some("appkey".into()),
            conversation_signatures: true,
            blacklist_signatures: true,
            conversation_signature_window_secs: 1,
        },
        limits: LimitsSection {
            max_frame_bytes: 2048,
            max_content_bytes: 1,
            login_timeout_ms: 1,
            idle_timeout_secs: 1,
            keep_alive_secs: 1,
            max_members: 1,
            temporary_ttl_secs: 1,
            max_temporary_ttl_secs: 1,
            max_backlog_bytes: 4096,
            backlog_stall_secs: 1,
            max_connections: 1,
            retry_above_handshakes_per_sec: 1,
            logins_per_ip_per_min: 1,
            failed_logins_per_ip_per_min: 1,
            admin_max_connections: 1,
            admin_header_timeout_secs: 1,
            admin_max_header_bytes: 1024,
            admin_unauthenticated_per_sec: 1,
        },
        quotas: QuotasSection {
            messages_per_sec: 1,
            messages_burst: 1,
            conversations_per_hour: 1,
            max_conversations_per_client: 1,
            requests_per_sec: 1,
            pings_per_sec: 1,
        },
        delivery: DeliverySection {
            ack_timeout_secs: 1,
            push_sync_limit: 1,
            pull_sync_limit: 1,
            history_max_limit: 1,
        },
        messages: MessagesSection {
            allow_edit: false,
            allow_recall: false,
            keyword_file: Some("words.txt".into()),
            typing_hook_interval_secs: 1,
        },
        store: StoreSection {
            group_commit_max: 1,
            group_commit_linger_us: 1,
            fsync: false,
            cache_capacity_mb: 1,
            min_free_mb: 1,
        },
        log: LogSection {
            level: "debug".into(),
            format: LogFormat::Json,
        },
        admin: AdminSection {
            enabled: false,
            listen: "0.0.0.0:1".parse().unwrap(),
        },
        gateway: GatewaySection {
            enabled: false,
            listen: "0.0.0.0:2".parse().unwrap(),
            public_url: Some("wss://im.example.com/".into()),
            tls: true,
            tls_cert: Some("g.pem".into()),
            tls_key: Some("g.key".into()),
            session_token_ttl_secs: 1,
            max_clients_per_socket: 1,
        },
        system: SystemSection {
            webhook_url: Some("http://w".into()),
            webhook_timeout_ms: 1,
            fan_out_step: 1,
            fan_out_rate: 1,
        },
        hooks: HooksSection {
            base_url: Some("http://h".into()),
            hook_key: Some("k".into()),
            timeout_ms: 1,
            connect_timeout_ms: 1,
            fail_policy: FailPolicy::Closed,
            outbox_capacity: 1,
            max_response_bytes: 1,
            undefined_retry_secs: 1,
            breaker_failures: 1,
            breaker_cooldown_ms: 1,
            outbox_max_attempts: 1,
            outbox_max_age_secs: 1,
            hook: [("_clientOnline".to_owned(), HookOverride::default())].into(),
        },
        push: PushSection {
            enabled: true,
            template: "t".into(),
            expiry_secs: 1,
            queue_capacity: 1,
            max_retries: 1,
            max_in_flight: 1,
            retry_base_ms: 1,
            extra_ca_file: Some("ca.pem".into()),
            apns: vec![ApnsSection::default()],
            fcm: FcmSection {
                service_account_file: Some("sa.json".into()),
                ..FcmSection::default()
            },
            webhook: WebhookSection {
                url: Some("http://gw".into()),
                ..WebhookSection::default()
            },
        },
    };
    let (live, restart) = old.live_changes(&new);
    let mut seen: Vec<String> = live.into_iter().chain(restart).collect();
    let mut all: Vec<String> = ENV_KEYS
        .iter()
        .map(|(s, k, _)| format!("{s}.{k}"))
        .chain(TABLE_KEYS.iter().map(|(s, k)| format!("{s}.{k}")))
        .collect();
    seen.sort();
    all.sort();
    assert_eq!(seen, all);
    for key in LIVE_KEYS {
        assert!(all.iter().any(|k| k == key), "{key} is not a config key");
    }
}

#[test]
fn apply_live_takes_only_live_keys() {
    let mut running = Config::default();
    let mut new = running.clone();
    new.log.level = "warn".to_owned();
    new.limits.max_members = 7;
    running.apply_live(&new);
    assert_eq!(running.log.level, "warn");
    assert_eq!(running.limits.max_members, 500);
    // The restart-only key is still pending on the next reload.
    assert_eq!(
        running.live_changes(&new),
        (vec![], vec!["limits.max_members".to_owned()])
    );
}

#[test]
fn hooks_section_parses_overrides_and_normalizes_aliases() {
    let c = Config::load_from_str(
        r#"
[hooks]
base_url = "https://hooks.example.com/app/"
hook_key = "hk"
fail_policy = "closed"
timeout_ms = 3000

[hooks.hook._messageReceived]
urls = ["http://127.0.0.1:3000/1.1/functions/_messageReceived", "http://127.0.0.1:3001/x"]
timeout_ms = 2000

[hooks.hook.after_message_sent]
enabled = false
"#,
    )
    .unwrap();
    let h = &c.hooks;
    assert_eq!(h.fail_policy, FailPolicy::Closed);
    assert_eq!(h.timeout_ms, 3000);
    assert_eq!(
        h.hook.keys().collect::<Vec<_>>(),
        ["_messageReceived", "_messageSent"]
    );
    let mr = h.override_for(Hook::MessageReceived).unwrap();
    assert_eq!(mr.urls.len(), 2);
    assert_eq!(mr.timeout_ms, Some(2000));
    assert!(mr.enabled);
    assert!(!h.override_for(Hook::MessageSent).unwrap().enabled);
    assert!(h.override_for(Hook::ClientOnline).is_none());
    // Before normalization, lookups see through aliases too.
    let mut raw = HooksSection::default();
    raw.hook
        .insert("typing_started".into(), HookOverride::default());
    assert!(raw.override_for(Hook::TypingStarted).is_some());
    assert!(!raw.any_endpoint());
}

#[test]
fn hooks_env_overrides() {
    let c = load_env(
        "",
        &[
            ("TIDINGS_HOOKS_BASE_URL", "http://127.0.0.1:3000"),
            ("TIDINGS_HOOKS_HOOK_KEY", "12345"),
            ("TIDINGS_HOOKS_TIMEOUT_MS", "250"),
            ("TIDINGS_HOOKS_FAIL_POLICY", "closed"),
            ("TIDINGS_HOOKS_OUTBOX_CAPACITY", "7"),
        ],
    )
    .unwrap();
    assert_eq!(c.hooks.base_url.as_deref(), Some("http://127.0.0.1:3000"));
    assert_eq!(c.hooks.hook_key.as_deref(), Some("12345"));
    assert_eq!(c.hooks.timeout_ms, 250);
    assert_eq!(c.hooks.fail_policy, FailPolicy::Closed);
    assert_eq!(c.hooks.outbox_capacity, 7);
    let err = load_env("", &[("TIDINGS_HOOKS_HOOK", "x")]).unwrap_err();
    assert!(matches!(err, ConfigError::Env { .. }), "{err}");
    let err = load_env("", &[("TIDINGS_HOOKS_FAIL_POLICY", "maybe")]).unwrap_err();
    assert!(
        err.to_string().contains("TIDINGS_HOOKS_FAIL_POLICY"),
        "{err}"
    );
}

#[test]
fn admin_section_defaults_and_env() {
    let c = Config::default();
    assert!(c.admin.enabled);
    assert_eq!(c.admin.listen, "127.0.0.1:7451".parse().unwrap());
    let c = load_env(
        "[admin]\nenabled = false\n",
        &[("TIDINGS_ADMIN_LISTEN", "0.0.0.0:8451")],
    )
    .unwrap();
    assert!(!c.admin.enabled);
    assert_eq!(c.admin.listen, "0.0.0.0:8451".parse().unwrap());
    let err = load_env("", &[("TIDINGS_ADMIN_LISTEN", "7451")]).unwrap_err();
    assert!(err.to_string().contains("TIDINGS_ADMIN_LISTEN"), "{err}");
    let mut new = c.clone();
    new.admin.listen = "127.0.0.1:1".parse().unwrap();
    assert_eq!(
        c.live_changes(&new),
        (vec![], vec!["admin.listen".to_owned()])
    );
}

#[test]
fn system_section_defaults_env_and_checks() {
    let c = Config::default();
    assert_eq!(c.system.webhook_url, None);
    assert_eq!(c.system.webhook_timeout_ms, 5000);
    let c = load_env(
        "[system]\nwebhook_timeout_ms = 200\n",
        &[("TIDINGS_SYSTEM_WEBHOOK_URL", "http://127.0.0.1:3000/sys")],
    )
    .unwrap();
    assert_eq!(
        c.system.webhook_url.as_deref(),
        Some("http://127.0.0.1:3000/sys")
    );
    assert_eq!(c.system.webhook_timeout_ms, 200);
    let cases: &[(&str, &str)] = &[
        (
            "[system]\nwebhook_url = \"ftp://x/\"\n",
            "system.webhook_url",
        ),
        ("[system]\nwebhook_url = \"nope\"\n", "system.webhook_url"),
        (
            "[system]\nwebhook_timeout_ms = 0\n",
            "system.webhook_timeout_ms",
        ),
        (
            "[system]\nwebhook_timeout_ms = 60001\n",
            "system.webhook_timeout_ms",
        ),
        (
            "[auth]\napp_id = \"caf\u{e9}\"\n[system]\nwebhook_url = \"http://h\"\n",
            "auth.app_id",
        ),
    ];
    for (text, key) in cases {
        match Config::load_from_str(text) {
            Err(e @ ConfigError::Invalid { .. }) => {
                assert!(e.to_string().starts_with(key), "{text:?}: {e}")
            }
            other => panic!("{text:?}: expected Invalid({key}), got {other:?}"),
        }
    }
    let err = load_env("", &[("TIDINGS_SYSTEM_WEBHOOK_TIMEOUT_MS", "soon")]).unwrap_err();
    assert!(
        err.to_string()
            .contains("TIDINGS_SYSTEM_WEBHOOK_TIMEOUT_MS"),
        "{err}"
    );
    let mut new = c.clone();
    new.system.webhook_url = None;
    assert_eq!(
        c.live_changes(&new),
        (vec![], vec!["system.webhook_url".to_owned()])
    );
}

#[test]
fn invalid_hooks_values_name_key() {
    let cases: &[(&str, &str)] = &[
        ("[hooks]\nbase_url = \"ftp://x/\"\n", "hooks.base_url"),
        ("[hooks]\nbase_url = \"not a url\"\n", "hooks.base_url"),
        ("[hooks]\nbase_url = \"http://h/?a=1\"\n", "hooks.base_url"),
        ("[hooks]\nhook_key = \"\"\n", "hooks.hook_key"),
        ("[hooks]\nhook_key = \"a\\nb\"\n", "hooks.hook_key"),
        ("[hooks]\ntimeout_ms = 0\n", "hooks.timeout_ms"),
        (
            "[hooks]\nconnect_timeout_ms = 0\n",
            "hooks.connect_timeout_ms",
        ),
        ("[hooks]\noutbox_capacity = 0\n", "hooks.outbox_capacity"),
        (
            "[hooks]\nundefined_retry_secs = 0\n",
            "hooks.undefined_retry_secs",
        ),
        (
            "[hooks]\nbreaker_failures = 1001\n",
            "hooks.breaker_failures",
        ),
        (
            "[hooks]\nbreaker_cooldown_ms = 0\n",
            "hooks.breaker_cooldown_ms",
        ),
        (
            "[hooks]\noutbox_max_attempts = 0\n",
            "hooks.outbox_max_attempts",
        ),
        (
            "[hooks]\noutbox_max_age_secs = 0\n",
            "hooks.outbox_max_age_secs",
        ),
        (
            "[hooks]\nmax_response_bytes = 10\n",
            "hooks.max_response_bytes",
        ),
        (
            "[hooks.hook._messageRecieved]\n",
            "hooks.hook._messageRecieved",
        ),
        (
            "[hooks.hook.after_message_edited]\n",
            "hooks.hook.after_message_edited",
        ),
        (
            "[hooks.hook._messageSent]\n[hooks.hook.after_message_sent]\n",
            "hooks.hook.after_message_sent",
        ),
        (
            "[hooks.hook._clientOnline]\nurls = [\"http://ok\", \"mailto:x@y\"]\n",
            "hooks.hook._clientOnline.urls[1]",
        ),
        (
            "[hooks.hook._clientOnline]\ntimeout_ms = 0\n",
            "hooks.hook._clientOnline.timeout_ms",
        ),
        (
            "[auth]\nmaster_key = \"0123456789abcdef\\n\"\n[hooks]\nbase_url = \"http://h\"\n",
            "auth.master_key",
        ),
    ];
    for (text, key) in cases {
        match Config::load_from_str(text) {
            Err(e @ ConfigError::Invalid { .. }) => {
                assert!(e.to_string().starts_with(key), "{text:?}: {e}")
            }
            other => panic!("{text:?}: expected Invalid({key}), got {other:?}"),
        }
    }
    let err = Config::load_from_str("[hooks.hook._messageRecieved]\n").unwrap_err();
    assert!(err.to_string().contains("_messageReceived"), "{err}");
    // Unknown keys inside a hook table are parse errors naming them.
    let err =
        Config::load_from_str("[hooks.hook._clientOnline]\nurl = \"http://h\"\n").unwrap_err();
    assert!(err.to_string().contains("url"), "{err}");
    // A non-ASCII master key is fine while hooks are off.
    Config::load_from_str("[auth]\nmaster_key = \"0123456789abcdéf\"\n").unwrap();
}

#[test]
fn hooks_keys_are_live() {
    let old = Config::default();
    let mut new = old.clone();
    new.hooks.base_url = Some("http://127.0.0.1:1".into());
    new.hooks.hook.insert(
        "_messageReceived".into(),
        HookOverride {
            enabled: false,
            ..HookOverride::default()
        },
    );
    assert_eq!(
        old.live_changes(&new),
        (
            vec!["hooks.base_url".to_owned(), "hooks.hook".to_owned()],
            vec![]
        )
    );
    let mut running = old;
    running.apply_live(&new);
    assert_eq!(running.hooks, new.hooks);
}

#[test]
fn default_toml_mentions_every_key() {
    for (section, key, _) in ENV_KEYS {
        assert!(
            DEFAULT_TOML.contains(&format!("[{section}]")),
            "[{section}] missing from DEFAULT_TOML"
        );
        assert!(
            DEFAULT_TOML.contains(&format!("{key} = ")),
            "{section}.{key} missing from DEFAULT_TOML"
        );
    }
}

#[test]
fn conversation_signature_keys_default_off_and_load_from_env() {
    let c = Config::default();
    assert!(!c.auth.conversation_signatures);
    assert!(!c.auth.blacklist_signatures);
    assert_eq!(c.auth.conversation_signature_window_secs, 21600);
    assert_eq!(c.auth.app_key, None);
    let c = load_env(
        "[auth]\nconversation_signatures = true\n",
        &[
            ("TIDINGS_AUTH_APP_KEY", "0123456789"),
            ("TIDINGS_AUTH_BLACKLIST_SIGNATURES", "true"),
            ("TIDINGS_AUTH_CONVERSATION_SIGNATURE_WINDOW_SECS", "60"),
        ],
    )
    .unwrap();
    assert!(c.auth.conversation_signatures && c.auth.blacklist_signatures);
    assert_eq!(c.auth.app_key.as_deref(), Some("0123456789"));
    assert_eq!(c.auth.conversation_signature_window_secs, 60);
}
