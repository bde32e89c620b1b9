//! Live reload: which keys differ between the running config and a
//! reloaded one, which of them apply without a restart, and applying those.

use super::{
    AdminSection, AuthSection, Config, DeliverySection, GatewaySection, HooksSection,
    LimitsSection, LogSection, MessagesSection, PushSection, QuotasSection, ServerSection,
    StoreSection, SystemSection,
};

impl Config {
    /// Which keys differ from `new`, split into those a running server
    /// applies on reload (SIGHUP) and those that need a restart. Each list
    /// holds dotted key names in declaration order.
    pub fn live_changes(&self, new: &Config) -> (Vec<String>, Vec<String>) {
        let (live, restart): (Vec<&str>, Vec<&str>) = self
            .changed_keys(new)
            .into_iter()
            .partition(|key| LIVE_KEYS.contains(key));
        (
            live.into_iter().map(str::to_owned).collect(),
            restart.into_iter().map(str::to_owned).collect(),
        )
    }

    /// Copies the keys in [`LIVE_KEYS`] from `new`, so `self` stays what the
    /// process actually runs with: restart-only keys keep being reported on
    /// every later reload until the restart happens.
    pub fn apply_live(&mut self, new: &Config) {
        self.log.level.clone_from(&new.log.level);
        self.messages
            .keyword_file
            .clone_from(&new.messages.keyword_file);
        self.hooks.clone_from(&new.hooks);
    }

    /// Every key whose value differs. The destructuring lists each field, so
    /// a field added to a section without being compared does not compile.
    fn changed_keys(&self, new: &Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        macro_rules! diff {
            ($section:ident: $ty:ident { $($field:ident),* $(,)? }) => {{
                let $ty { $($field),* } = &self.$section;
                $(
                    if *$field != new.$section.$field {
                        out.push(concat!(stringify!($section), ".", stringify!($field)));
                    }
                )*
            }};
        }
        let Config {
            server: _,
            auth: _,
            limits: _,
            quotas: _,
            delivery: _,
            messages: _,
            store: _,
            log: _,
            admin: _,
            gateway: _,
            system: _,
            hooks: _,
            push: _,
        } = self;
        diff!(server: ServerSection { listen, data_dir, tls_cert, tls_key, shutdown_grace_secs });
        diff!(auth: AuthSection {
            mode,
            app_id,
            master_key,
            signature_window_secs,
            app_key,
            conversation_signatures,
            blacklist_signatures,
            conversation_signature_window_secs,
        });
        diff!(limits: LimitsSection {
            max_frame_bytes,
            max_content_bytes,
            login_timeout_ms,
            idle_timeout_secs,
            keep_alive_secs,
            max_members,
            temporary_ttl_secs,
            max_temporary_ttl_secs,
            max_backlog_bytes,
            backlog_stall_secs,
            max_connections,
            retry_above_handshakes_per_sec,
            logins_per_ip_per_min,
            failed_logins_per_ip_per_min,
            admin_max_connections,
            admin_header_timeout_secs,
            admin_max_header_bytes,
            admin_unauthenticated_per_sec,
        });
        diff!(quotas: QuotasSection {
            messages_per_sec,
            messages_burst,
            conversations_per_hour,
            max_conversations_per_client,
            requests_per_sec,
            pings_per_sec,
        });
        diff!(delivery: DeliverySection {
            ack_timeout_secs,
            push_sync_limit,
            pull_sync_limit,
            history_max_limit,
        });
        diff!(messages: MessagesSection {
            allow_edit,
            allow_recall,
            keyword_file,
            typing_hook_interval_secs,
        });
        diff!(store: StoreSection {
            group_commit_max,
            group_commit_linger_us,
            fsync,
            cache_capacity_mb,
            min_free_mb,
        });
        diff!(log: LogSection { level, format });
        diff!(admin: AdminSection { enabled, listen });
        diff!(gateway: GatewaySection {
            enabled,
            listen,
            public_url,
            tls,
            tls_cert,
            tls_key,
            session_token_ttl_secs,
            max_clients_per_socket,
        });
        diff!(system: SystemSection { webhook_url, webhook_timeout_ms, fan_out_step, fan_out_rate });
        diff!(hooks: HooksSection {
            base_url,
            hook_key,
            timeout_ms,
            connect_timeout_ms,
            fail_policy,
            outbox_capacity,
            max_response_bytes,
            undefined_retry_secs,
            breaker_failures,
            breaker_cooldown_ms,
            outbox_max_attempts,
            outbox_max_age_secs,
            hook,
        });
        diff!(push: PushSection {
            enabled,
            template,
            expiry_secs,
            queue_capacity,
            max_retries,
            max_in_flight,
            retry_base_ms,
            extra_ca_file,
            apns,
            fcm,
            webhook,
        });
        out
    }
}

/// Keys a running server applies on reload; every other key is read once at
/// start. The keyword file is re-read on every reload, changed or not.
pub const LIVE_KEYS: &[&str] = &[
    "log.level",
    "messages.keyword_file",
    "hooks.base_url",
    "hooks.hook_key",
    "hooks.timeout_ms",
    "hooks.connect_timeout_ms",
    "hooks.fail_policy",
    "hooks.outbox_capacity",
    "hooks.max_response_bytes",
    "hooks.undefined_retry_secs",
    "hooks.breaker_failures",
    "hooks.breaker_cooldown_ms",
    "hooks.outbox_max_attempts",
    "hooks.outbox_max_age_secs",
    "hooks.hook",
];
