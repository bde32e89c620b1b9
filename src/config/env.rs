//! The `TIDINGS_<SECTION>_<KEY>` environment overlay: each variable is
//! checked on its own, so an error names the variable, then merged into the
//! file's table before the whole is deserialized.

use super::{CONFIG_PATH_ENV, Config, ConfigError, ENV_PREFIX};

/// How an environment value is turned into a TOML value.
#[derive(Clone, Copy)]
pub(super) enum EnvKind {
    /// Always a string: paths, addresses and keys may look like numbers.
    Str,
    /// Parsed as a TOML value (number, bool), falling back to a string.
    Value,
}

/// Every key settable from the environment. A unit test checks this list
/// against the struct, so a new field cannot be forgotten here.
pub(super) const ENV_KEYS: &[(&str, &str, EnvKind)] = &[
    ("server", "listen", EnvKind::Str),
    ("server", "data_dir", EnvKind::Str),
    ("server", "tls_cert", EnvKind::Str),
    ("server", "tls_key", EnvKind::Str),
    ("server", "shutdown_grace_secs", EnvKind::Value),
    ("auth", "mode", EnvKind::Str),
    ("auth", "app_id", EnvKind::Str),
    ("auth", "master_key", EnvKind::Str),
    ("auth", "signature_window_secs", EnvKind::Value),
    ("auth", "app_key", EnvKind::Str),
    ("auth", "conversation_signatures", EnvKind::Value),
    ("auth", "blacklist_signatures", EnvKind::Value),
    ("auth", "conversation_signature_window_secs", EnvKind::Value),
    ("limits", "max_frame_bytes", EnvKind::Value),
    ("limits", "max_content_bytes", EnvKind::Value),
    ("limits", "login_timeout_ms", EnvKind::Value),
    ("limits", "idle_timeout_secs", EnvKind::Value),
    ("limits", "keep_alive_secs", EnvKind::Value),
    ("limits", "max_members", EnvKind::Value),
    ("limits", "temporary_ttl_secs", EnvKind::Value),
    ("limits", "max_temporary_ttl_secs", EnvKind::Value),
    ("limits", "max_backlog_bytes", EnvKind::Value),
    ("limits", "backlog_stall_secs", EnvKind::Value),
    ("limits", "max_connections", EnvKind::Value),
    ("limits", "retry_above_handshakes_per_sec", EnvKind::Value),
    ("limits", "logins_per_ip_per_min", EnvKind::Value),
    ("limits", "failed_logins_per_ip_per_min", EnvKind::Value),
    ("limits", "admin_max_connections", EnvKind::Value),
    ("limits", "admin_header_timeout_secs", EnvKind::Value),
    ("limits", "admin_max_header_bytes", EnvKind::Value),
    ("limits", "admin_unauthenticated_per_sec", EnvKind::Value),
    ("quotas", "messages_per_sec", EnvKind::Value),
    ("quotas", "messages_burst", EnvKind::Value),
    ("quotas", "conversations_per_hour", EnvKind::Value),
    ("quotas", "max_conversations_per_client", EnvKind::Value),
    ("quotas", "requests_per_sec", EnvKind::Value),
    ("quotas", "pings_per_sec", EnvKind::Value),
    ("delivery", "ack_timeout_secs", EnvKind::Value),
    ("delivery", "push_sync_limit", EnvKind::Value),
    ("delivery", "pull_sync_limit", EnvKind::Value),
    ("delivery", "history_max_limit", EnvKind::Value),
    ("messages", "allow_edit", EnvKind::Value),
    ("messages", "allow_recall", EnvKind::Value),
    ("messages", "keyword_file", EnvKind::Str),
    ("messages", "typing_hook_interval_secs", EnvKind::Value),
    ("store", "group_commit_max", EnvKind::Value),
    ("store", "group_commit_linger_us", EnvKind::Value),
    ("store", "fsync", EnvKind::Value),
    ("store", "cache_capacity_mb", EnvKind::Value),
    ("store", "min_free_mb", EnvKind::Value),
    ("log", "level", EnvKind::Str),
    ("log", "format", EnvKind::Str),
    ("admin", "enabled", EnvKind::Value),
    ("admin", "listen", EnvKind::Str),
    ("gateway", "enabled", EnvKind::Value),
    ("gateway", "listen", EnvKind::Str),
    ("gateway", "public_url", EnvKind::Str),
    ("gateway", "tls", EnvKind::Value),
    ("gateway", "tls_cert", EnvKind::Str),
    ("gateway", "tls_key", EnvKind::Str),
    ("gateway", "session_token_ttl_secs", EnvKind::Value),
    ("gateway", "max_clients_per_socket", EnvKind::Value),
    ("system", "webhook_url", EnvKind::Str),
    ("system", "webhook_timeout_ms", EnvKind::Value),
    ("system", "fan_out_step", EnvKind::Value),
    ("system", "fan_out_rate", EnvKind::Value),
    ("hooks", "base_url", EnvKind::Str),
    ("hooks", "hook_key", EnvKind::Str),
    ("hooks", "timeout_ms", EnvKind::Value),
    ("hooks", "connect_timeout_ms", EnvKind::Value),
    ("hooks", "fail_policy", EnvKind::Str),
    ("hooks", "outbox_capacity", EnvKind::Value),
    ("hooks", "max_response_bytes", EnvKind::Value),
    ("hooks", "undefined_retry_secs", EnvKind::Value),
    ("hooks", "breaker_failures", EnvKind::Value),
    ("hooks", "breaker_cooldown_ms", EnvKind::Value),
    ("hooks", "outbox_max_attempts", EnvKind::Value),
    ("hooks", "outbox_max_age_secs", EnvKind::Value),
    ("push", "enabled", EnvKind::Value),
    ("push", "template", EnvKind::Str),
    ("push", "expiry_secs", EnvKind::Value),
    ("push", "queue_capacity", EnvKind::Value),
    ("push", "max_retries", EnvKind::Value),
    ("push", "max_in_flight", EnvKind::Value),
    ("push", "retry_base_ms", EnvKind::Value),
    ("push", "extra_ca_file", EnvKind::Str),
];

/// Keys that exist but are tables, not settable from the environment.
/// The push providers are tables too: `[[push.apns]]` is a list, and a
/// provider's keys only make sense together.
pub(super) const TABLE_KEYS: &[(&str, &str)] = &[
    ("hooks", "hook"),
    ("push", "apns"),
    ("push", "fcm"),
    ("push", "webhook"),
];

/// The process's `TIDINGS_*` variables. Not `std::env::vars()`, which panics
/// on a non-UTF-8 variable anywhere in the environment.
pub(super) fn tidings_env_vars() -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in std::env::vars_os() {
        if !name.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes()) {
            continue;
        }
        let name = name.into_string().map_err(|n| ConfigError::Env {
            var: n.to_string_lossy().into_owned(),
            msg: "name is not valid UTF-8".to_owned(),
        })?;
        let value = value.into_string().map_err(|_| ConfigError::Env {
            var: name.clone(),
            msg: "value is not valid UTF-8".to_owned(),
        })?;
        out.push((name, value));
    }
    Ok(out)
}

/// Inserts every `TIDINGS_<SECTION>_<KEY>` variable into `table`, returning
/// how many were applied. Other variables are ignored; `TIDINGS_CONFIG`
/// names the file and is skipped.
pub(super) fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<usize, ConfigError> {
    let mut applied = 0;
    for (var, raw) in vars {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if var == CONFIG_PATH_ENV {
            continue;
        }
        let env_err = |msg: String| ConfigError::Env {
            var: var.clone(),
            msg,
        };
        // Section names have no underscore, so the first one splits.
        let Some((section, key)) = rest.split_once('_') else {
            return Err(env_err(
                "not a config key; expected TIDINGS_<SECTION>_<KEY>".to_owned(),
            ));
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        if TABLE_KEYS.contains(&(section.as_str(), key.as_str())) {
            return Err(env_err(format!(
                "{section}.{key} is a table; set it in the config file"
            )));
        }
        let Some(&(_, _, kind)) = ENV_KEYS.iter().find(|(s, k, _)| *s == section && *k == key)
        else {
            return Err(env_err(format!("unknown config key {section}.{key}")));
        };
        let value = match kind {
            EnvKind::Str => toml::Value::String(raw),
            EnvKind::Value => parse_env_value(raw),
        };
        // Check this one value alone so a type error names the variable.
        let mut probe_section = toml::Table::new();
        probe_section.insert(key.clone(), value.clone());
        let mut probe = toml::Table::new();
        probe.insert(section.clone(), toml::Value::Table(probe_section));
        if let Err(e) = probe.try_into::<Config>() {
            // toml usually appends "in `section.key`"; make sure it is there.
            let msg = e.to_string().trim().replace('\n', " ");
            let dotted = format!("{section}.{key}");
            return Err(env_err(if msg.contains(&dotted) {
                msg
            } else {
                format!("{msg} (for {dotted})")
            }));
        }
        let slot = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match slot {
            toml::Value::Table(t) => {
                t.insert(key, value);
            }
            // The file already failed to parse as Config in this case, so
            // this is unreachable in practice; still, no panics on input.
            _ => return Err(env_err(format!("[{section}] in the file is not a table"))),
        }
        applied += 1;
    }
    Ok(applied)
}

/// A TOML scalar if the text is one (`42`, `true`), else the raw string.
fn parse_env_value(raw: String) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) if t.len() == 1 => t.remove("v").unwrap_or(toml::Value::String(raw)),
        _ => toml::Value::String(raw),
    }
}
