//! Validation of a parsed [`Config`]: every bound and cross-key rule, each
//! failure an error that names the key, never a panic.

use std::collections::BTreeMap;

use crate::protocol::hooks::Hook;

use super::{
    Config, ConfigError, HooksSection, MAX_FRAME_BYTES_LIMIT, MIN_FRAME_BYTES_LIMIT, PushSection,
};

/// Ceiling on durations given in seconds (one year). Keeps `Instant + d`
/// arithmetic elsewhere from overflowing on absurd values.
const MAX_SECS: u64 = 365 * 24 * 3600;
/// Three keep-alive intervals are QUIC's idle timeout, which quinn caps
/// well above this; an hour apart no longer keeps NAT bindings open anyway.
const MAX_KEEP_ALIVE_SECS: u64 = 3600;

/// Ceiling on the sled cache, in MiB (1 TiB), so converting to bytes cannot
/// overflow.
const MAX_CACHE_MB: u64 = 1 << 20;

/// Ceiling on hook timeouts (10 minutes): a before-hook holds up a client's
/// request, so anything longer is a mistake, not a setting.
const MAX_HOOK_TIMEOUT_MS: u64 = 600_000;

/// Bounds of `system.webhook_timeout_ms`: LeanCloud's 5 s is the default;
/// a longer wait only delays the rest of the queue.
const MAX_WEBHOOK_TIMEOUT_MS: u64 = 60_000;

/// Bounds of `hooks.max_response_bytes`: below 1 KiB even a small rewrite
/// does not fit; above 64 MiB one answer could pin a lot of memory.
const MIN_HOOK_RESPONSE_BYTES: u64 = 1024;
const MAX_HOOK_RESPONSE_BYTES: u64 = 64 << 20;

/// Ceiling on `hooks.outbox_capacity`, so a typo cannot let the outbox fill
/// the disk.
const MAX_OUTBOX_CAPACITY: u64 = 100_000_000;

/// Ceilings on the hook-protection keys: past these a value is a typo, and
/// a day-long forgetting of an undefined hook or a breaker held open for
/// hours would hide a fixed endpoint for too long.
const MAX_UNDEFINED_RETRY_SECS: u64 = 86_400;
const MAX_BREAKER_FAILURES: u32 = 1000;
const MAX_BREAKER_COOLDOWN_MS: u64 = 3_600_000;
const MAX_OUTBOX_ATTEMPTS: u32 = 1_000_000;
const MAX_OUTBOX_AGE_SECS: u64 = 30 * 86_400;

impl Config {
    /// Checks ranges and cross-key consistency. The error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.data_dir.as_os_str().is_empty() {
            return invalid("server.data_dir", "must not be empty");
        }
        match (&s.tls_cert, &s.tls_key) {
            (Some(_), None) => {
                return invalid("server.tls_key", "must be set when server.tls_cert is set");
            }
            (None, Some(_)) => {
                return invalid("server.tls_cert", "must be set when server.tls_key is set");
            }
            _ => {}
        }
        if s.tls_cert
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return invalid("server.tls_cert", "must not be empty");
        }
        if s.tls_key.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return invalid("server.tls_key", "must not be empty");
        }
        at_most(
            "server.shutdown_grace_secs",
            s.shutdown_grace_secs,
            MAX_SECS,
        )?;

        let a = &self.auth;
        if a.app_id.as_ref().is_some_and(|id| id.trim().is_empty()) {
            return invalid("auth.app_id", "must not be empty when set");
        }
        if a.master_key
            .as_ref()
            .is_some_and(|k| k.chars().count() < 16)
        {
            return invalid("auth.master_key", "must be at least 16 characters");
        }
        range(
            "auth.signature_window_secs",
            a.signature_window_secs,
            1,
            MAX_SECS,
        )?;
        // Sent as a header and split at the comma of `<key>,master`.
        if let Some(k) = &a.app_key
            && (k.is_empty() || !is_header_text(k) || k.contains([',', ' ', '\t']))
        {
            return invalid(
                "auth.app_key",
                "must be printable ASCII without commas or spaces when set",
            );
        }
        range(
            "auth.conversation_signature_window_secs",
            a.conversation_signature_window_secs,
            1,
            MAX_SECS,
        )?;

        let l = &self.limits;
        range(
            "limits.max_frame_bytes",
            l.max_frame_bytes.into(),
            MIN_FRAME_BYTES_LIMIT.into(),
            MAX_FRAME_BYTES_LIMIT.into(),
        )?;
        if l.max_content_bytes == 0 {
            return invalid("limits.max_content_bytes", "must be at least 1");
        }
        if l.max_content_bytes >= l.max_frame_bytes {
            return invalid(
                "limits.max_content_bytes",
                &format!(
                    "must be less than limits.max_frame_bytes ({})",
                    l.max_frame_bytes
                ),
            );
        }
        range(
            "limits.login_timeout_ms",
            l.login_timeout_ms,
            1,
            MAX_SECS * 1000,
        )?;
        range("limits.idle_timeout_secs", l.idle_timeout_secs, 1, MAX_SECS)?;
        range(
            "limits.keep_alive_secs",
            l.keep_alive_secs,
            1,
            MAX_KEEP_ALIVE_SECS,
        )?;
        if l.max_members == 0 {
            return invalid("limits.max_members", "must be at least 1");
        }
        // A temporary conversation's id holds its expiry in u32 seconds.
        range(
            "limits.max_temporary_ttl_secs",
            u64::from(l.max_temporary_ttl_secs),
            1,
            10 * 365 * 86400,
        )?;
        range(
            "limits.temporary_ttl_secs",
            u64::from(l.temporary_ttl_secs),
            1,
            u64::from(l.max_temporary_ttl_secs),
        )?;
        // At least one largest frame, or a single reply could pause forever.
        range(
            "limits.max_backlog_bytes",
            l.max_backlog_bytes,
            u64::from(l.max_frame_bytes),
            1 << 40,
        )?;
        range(
            "limits.backlog_stall_secs",
            l.backlog_stall_secs,
            1,
            MAX_SECS,
        )?;
        range(
            "limits.admin_header_timeout_secs",
            l.admin_header_timeout_secs,
            1,
            3600,
        )?;
        range(
            "limits.admin_max_header_bytes",
            l.admin_max_header_bytes.into(),
            1024,
            1 << 20,
        )?;
        let q = &self.quotas;
        if q.messages_per_sec > 0 && q.messages_burst == 0 {
            return invalid(
                "quotas.messages_burst",
                "must be at least 1 when quotas.messages_per_sec is set",
            );
        }

        let d = &self.delivery;
        range("delivery.ack_timeout_secs", d.ack_timeout_secs, 1, MAX_SECS)?;
        if d.push_sync_limit == 0 {
            return invalid("delivery.push_sync_limit", "must be at least 1");
        }
        if d.pull_sync_limit == 0 {
            return invalid("delivery.pull_sync_limit", "must be at least 1");
        }
        range(
            "delivery.history_max_limit",
            d.history_max_limit.into(),
            1,
            1000,
        )?;

        let m = &self.messages;
        if m.keyword_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return invalid("messages.keyword_file", "must not be empty when set");
        }
        range(
            "messages.typing_hook_interval_secs",
            m.typing_hook_interval_secs,
            0,
            3600,
        )?;

        let st = &self.store;
        if st.group_commit_max == 0 {
            return invalid("store.group_commit_max", "must be at least 1");
        }
        range(
            "store.group_commit_linger_us",
            st.group_commit_linger_us,
            0,
            100_000,
        )?;
        range(
            "store.cache_capacity_mb",
            st.cache_capacity_mb,
            1,
            MAX_CACHE_MB,
        )?;
        at_most("store.min_free_mb", st.min_free_mb, MAX_CACHE_MB)?;

        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            return invalid(
                "log.level",
                &format!("is not a valid tracing filter directive: {e}"),
            );
        }
        // Hook calls send these as headers; without hooks anything goes.
        if self.hooks.any_endpoint() {
            if a.app_id.as_deref().is_some_and(|id| !is_header_text(id)) {
                return invalid(
                    "auth.app_id",
                    "must be printable ASCII when hooks are on (it is sent as a header)",
                );
            }
            if a.master_key.as_deref().is_some_and(|k| !is_header_text(k)) {
                return invalid(
                    "auth.master_key",
                    "must be printable ASCII when hooks are on (it is sent as a header)",
                );
            }
        }
        // [admin]: both keys are fully checked by their types.
        self.check_gateway()?;
        let sys = &self.system;
        if let Some(url) = &sys.webhook_url {
            http_url("system.webhook_url", url)?;
            if a.app_id.as_deref().is_some_and(|id| !is_header_text(id)) {
                return invalid(
                    "auth.app_id",
                    "must be printable ASCII when system.webhook_url is set (it is sent as a header)",
                );
            }
        }
        range(
            "system.webhook_timeout_ms",
            sys.webhook_timeout_ms,
            1,
            MAX_WEBHOOK_TIMEOUT_MS,
        )?;
        range("system.fan_out_step", sys.fan_out_step, 1, 100_000)?;
        range("system.fan_out_rate", sys.fan_out_rate, 0, 100_000_000)?;
        self.push.validate()?;
        self.hooks.validate()
    }
}

impl HooksSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(base) = &self.base_url {
            let url = http_url("hooks.base_url", base)?;
            if url.query().is_some() || url.fragment().is_some() {
                return invalid(
                    "hooks.base_url",
                    "must not have a query or fragment: /1.1/functions/<hook> is appended to it",
                );
            }
        }
        if let Some(key) = &self.hook_key {
            if key.is_empty() {
                return invalid("hooks.hook_key", "must not be empty when set");
            }
            if !is_header_text(key) {
                return invalid(
                    "hooks.hook_key",
                    "must be printable ASCII (it is an HTTP header)",
                );
            }
        }
        range("hooks.timeout_ms", self.timeout_ms, 1, MAX_HOOK_TIMEOUT_MS)?;
        range(
            "hooks.connect_timeout_ms",
            self.connect_timeout_ms,
            1,
            MAX_HOOK_TIMEOUT_MS,
        )?;
        range(
            "hooks.outbox_capacity",
            self.outbox_capacity,
            1,
            MAX_OUTBOX_CAPACITY,
        )?;
        range(
            "hooks.max_response_bytes",
            self.max_response_bytes,
            MIN_HOOK_RESPONSE_BYTES,
            MAX_HOOK_RESPONSE_BYTES,
        )?;
        range(
            "hooks.undefined_retry_secs",
            self.undefined_retry_secs,
            1,
            MAX_UNDEFINED_RETRY_SECS,
        )?;
        range(
            "hooks.breaker_failures",
            u64::from(self.breaker_failures),
            0,
            u64::from(MAX_BREAKER_FAILURES),
        )?;
        range(
            "hooks.breaker_cooldown_ms",
            self.breaker_cooldown_ms,
            1,
            MAX_BREAKER_COOLDOWN_MS,
        )?;
        range(
            "hooks.outbox_max_attempts",
            u64::from(self.outbox_max_attempts),
            1,
            u64::from(MAX_OUTBOX_ATTEMPTS),
        )?;
        range(
            "hooks.outbox_max_age_secs",
            self.outbox_max_age_secs,
            1,
            MAX_OUTBOX_AGE_SECS,
        )?;
        let mut seen: BTreeMap<Hook, &str> = BTreeMap::new();
        for (name, o) in &self.hook {
            let key = format!("hooks.hook.{name}");
            let Some(hook) = Hook::from_name(name) else {
                return invalid(&key, &Hook::unknown_reason(name));
            };
            if let Some(first) = seen.insert(hook, name) {
                return invalid(
                    &key,
                    &format!("names the same hook as hooks.hook.{first} ({hook})"),
                );
            }
            for (i, u) in o.urls.iter().enumerate() {
                http_url(&format!("{key}.urls[{i}]"), u)?;
            }
            if let Some(t) = o.timeout_ms {
                range(&format!("{key}.timeout_ms"), t, 1, MAX_HOOK_TIMEOUT_MS)?;
            }
        }
        Ok(())
    }
}

/// Parses an http or https URL with a host, naming `key` on failure.
fn http_url(key: &str, text: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(text).map_err(|e| ConfigError::Invalid {
        key: key.to_owned(),
        msg: format!("is not a URL ({e}): {text:?}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid {
            key: key.to_owned(),
            msg: format!("must be an http or https URL, not {}:", url.scheme()),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::Invalid {
            key: key.to_owned(),
            msg: format!("has no host: {text:?}"),
        });
    }
    Ok(url)
}

/// What an HTTP header value may hold without escaping.
fn is_header_text(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}
fn invalid(key: &str, msg: &str) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key: key.to_owned(),
        msg: msg.to_owned(),
    })
}

fn range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        invalid(key, &format!("must be between {min} and {max}"))
    }
}

fn at_most(key: &str, value: u64, max: u64) -> Result<(), ConfigError> {
    if value <= max {
        Ok(())
    } else {
        invalid(key, &format!("must be at most {max}"))
    }
}

impl Config {
    fn check_gateway(&self) -> Result<(), ConfigError> {
        let g = &self.gateway;
        if !g.enabled {
            return Ok(());
        }
        match (&g.tls_cert, &g.tls_key) {
            (Some(_), None) => invalid(
                "gateway.tls_key",
                "must be set when gateway.tls_cert is set",
            )?,
            (None, Some(_)) => invalid(
                "gateway.tls_cert",
                "must be set when gateway.tls_key is set",
            )?,
            (Some(_), Some(_)) if !g.tls => {
                invalid("gateway.tls", "must be true when gateway.tls_cert is set")?;
            }
            _ => {}
        }
        if let Some(url) = &g.public_url
            && !(url.starts_with("ws://") || url.starts_with("wss://"))
        {
            invalid("gateway.public_url", "must be a ws:// or wss:// URL")?;
        }
        if g.session_token_ttl_secs == 0 {
            invalid("gateway.session_token_ttl_secs", "must be at least 1")?;
        }
        at_most(
            "gateway.session_token_ttl_secs",
            g.session_token_ttl_secs,
            MAX_SECS,
        )?;
        if g.max_clients_per_socket == 0 {
            invalid("gateway.max_clients_per_socket", "must be at least 1")?;
        }
        if g.listen == self.admin.listen && self.admin.enabled && g.listen.port() != 0 {
            invalid("gateway.listen", "must differ from admin.listen")?;
        }
        Ok(())
    }
}

/// FCM's longest `ttl` (28 days); APNs keeps a push up to 30.
const MAX_PUSH_EXPIRY_SECS: u64 = 2_419_200;

impl PushSection {
    /// Ranges always; credentials only when push is on, so a config copied
    /// to a box without the key files still starts with push off. Files are
    /// read here so a missing or unreadable key stops the start with its
    /// path, instead of failing every push later.
    fn validate(&self) -> Result<(), ConfigError> {
        range(
            "push.expiry_secs",
            self.expiry_secs,
            1,
            MAX_PUSH_EXPIRY_SECS,
        )?;
        range("push.queue_capacity", self.queue_capacity, 1, 10_000_000)?;
        at_most("push.max_retries", u64::from(self.max_retries), 100)?;
        range(
            "push.max_in_flight",
            u64::from(self.max_in_flight),
            1,
            100_000,
        )?;
        range("push.retry_base_ms", self.retry_base_ms, 1, 3_600_000)?;
        range(
            "push.webhook.timeout_ms",
            self.webhook.timeout_ms,
            1,
            MAX_WEBHOOK_TIMEOUT_MS,
        )?;
        for (i, a) in self.apns.iter().enumerate() {
            http_url(&format!("push.apns[{i}].endpoint"), &a.endpoint)?;
            http_url(
                &format!("push.apns[{i}].sandbox_endpoint"),
                &a.sandbox_endpoint,
            )?;
            if self.apns[..i].iter().any(|b| b.team_id == a.team_id) {
                invalid(
                    &format!("push.apns[{i}].team_id"),
                    "names a team listed before",
                )?;
            }
        }
        http_url("push.fcm.endpoint", &self.fcm.endpoint)?;
        if let Some(url) = &self.webhook.url {
            http_url("push.webhook.url", url)?;
        }
        if !self.enabled {
            return Ok(());
        }
        if self.apns.is_empty()
            && self.fcm.service_account_file.is_none()
            && self.webhook.url.is_none()
        {
            invalid(
                "push.enabled",
                "needs a provider: [[push.apns]], push.fcm.service_account_file or push.webhook.url",
            )?;
        }
        if let Some(ca) = &self.extra_ca_file {
            let text = read_file("push.extra_ca_file", ca)?;
            if !text.contains("-----BEGIN CERTIFICATE-----") {
                invalid("push.extra_ca_file", "holds no PEM certificate")?;
            }
        }
        for (i, a) in self.apns.iter().enumerate() {
            let token_auth = a.cert_file.is_none();
            for (field, value) in [
                ("team_id", &a.team_id),
                ("key_id", &a.key_id),
                ("topic", &a.topic),
            ] {
                if field == "key_id" && !token_auth {
                    continue;
                }
                if value.is_empty() || !is_header_text(value) {
                    invalid(
                        &format!("push.apns[{i}].{field}"),
                        "must be set (printable ASCII)",
                    )?;
                }
            }
            if token_auth {
                let key = format!("push.apns[{i}].key_file");
                if !read_file(&key, &a.key_file)?.contains("-----BEGIN PRIVATE KEY-----") {
                    invalid(&key, "is not a PKCS#8 PEM key (Apple's .p8)")?;
                }
                continue;
            }
            if !a.key_file.as_os_str().is_empty() {
                invalid(
                    &format!("push.apns[{i}].key_file"),
                    "and cert_file are two ways to authenticate; set one",
                )?;
            }
            let cert_key = format!("push.apns[{i}].cert_file");
            if let Some(cert) = &a.cert_file
                && !read_file(&cert_key, cert)?.contains("-----BEGIN CERTIFICATE-----")
            {
                invalid(&cert_key, "holds no PEM certificate")?;
            }
            let key = format!("push.apns[{i}].cert_key_file");
            match &a.cert_key_file {
                None => invalid(&key, "must be set with cert_file")?,
                Some(path) => {
                    if !read_file(&key, path)?.contains("PRIVATE KEY-----") {
                        invalid(&key, "holds no PEM private key")?;
                    }
                }
            }
        }
        if let Some(sa) = &self.fcm.service_account_file {
            let key = "push.fcm.service_account_file";
            let v: serde_json::Value =
                serde_json::from_str(&read_file(key, sa)?).map_err(|e| ConfigError::Invalid {
                    key: key.to_owned(),
                    msg: format!("is not JSON: {e}"),
                })?;
            for field in ["client_email", "private_key", "token_uri", "project_id"] {
                if v.get(field)
                    .and_then(serde_json::Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    invalid(
                        key,
                        &format!("has no {field} (a service-account key file has)"),
                    )?;
                }
            }
            if let Some(uri) = v.get("token_uri").and_then(serde_json::Value::as_str) {
                http_url(&format!("{key} token_uri"), uri)?;
            }
        }
        Ok(())
    }
}

/// A credentials file's text, naming `key` when it cannot be read.
fn read_file(key: &str, path: &std::path::Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        key: key.to_owned(),
        msg: format!("cannot read {}: {e}", path.display()),
    })
}
