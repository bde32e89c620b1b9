//! Rate limits and quotas: what one client, connection or address may cost
//! the server (`[quotas]`, and the per-address and connection limits in
//! `[limits]`).
//!
//! Every limit is a GCRA token bucket from `governor`: a burst, then an even
//! refill. Per-client and per-address buckets live in keyed limiters that
//! forget idle keys from time to time, so a stream of new ids or addresses
//! cannot grow them without bound; per-connection buckets live in the
//! session. What was limited is counted for `/metrics`
//! (`tidings_limited_total{limit}`), per server rather than per process, so
//! the figures are this server's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

use crate::config::{LimitsSection, QuotasSection};
use crate::protocol::{ErrorBody, ErrorCode};

/// What was limited: the `limit` label of `tidings_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A send over `quotas.messages_per_sec` (4116).
    Messages,
    /// A create over `quotas.conversations_per_hour` (4117).
    ConversationsPerHour,
    /// A create or join over `quotas.max_conversations_per_client` (4117).
    Conversations,
    /// A request over `quotas.requests_per_sec` (4117).
    Requests,
    /// A connection closed for pinging over `quotas.pings_per_sec` (4117).
    Pings,
    /// A login over `limits.logins_per_ip_per_min` (4117).
    Logins,
    /// A login refused because its address used up
    /// `limits.failed_logins_per_ip_per_min` (4117).
    FailedLogins,
    /// A QUIC connection refused at `limits.max_connections`.
    Connections,
    /// A QUIC handshake sent a Retry first (over
    /// `limits.retry_above_handshakes_per_sec`); not a refusal.
    QuicRetry,
    /// An admin connection refused at `limits.admin_max_connections` (503).
    AdminConnections,
    /// An admin request over `limits.admin_unauthenticated_per_sec` (429).
    AdminUnauthenticated,
    /// An admin request head over `limits.admin_max_header_bytes` (431).
    AdminHeaders,
    /// An admin connection closed by `limits.admin_header_timeout_secs`.
    AdminHeaderTimeouts,
}

impl Limit {
    pub const ALL: [Limit; 13] = [
        Limit::Messages,
        Limit::ConversationsPerHour,
        Limit::Conversations,
        Limit::Requests,
        Limit::Pings,
        Limit::Logins,
        Limit::FailedLogins,
        Limit::Connections,
        Limit::QuicRetry,
        Limit::AdminConnections,
        Limit::AdminUnauthenticated,
        Limit::AdminHeaders,
        Limit::AdminHeaderTimeouts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Limit::Messages => "messages",
            Limit::ConversationsPerHour => "conversations_per_hour",
            Limit::Conversations => "conversations",
            Limit::Requests => "requests",
            Limit::Pings => "pings",
            Limit::Logins => "logins",
            Limit::FailedLogins => "failed_logins",
            Limit::Connections => "connections",
            Limit::QuicRetry => "quic_retry",
            Limit::AdminConnections => "admin_connections",
            Limit::AdminUnauthenticated => "admin_unauthenticated",
            Limit::AdminHeaders => "admin_headers",
            Limit::AdminHeaderTimeouts => "admin_header_timeouts",
        }
    }
}

/// Keyed buckets are swept of idle keys once per this many checks.
const SWEEP_EVERY: u64 = 4096;

pub struct Guard {
    messages: Option<DefaultKeyedRateLimiter<String>>,
    conversations: Option<DefaultKeyedRateLimiter<String>>,
    logins: Option<DefaultKeyedRateLimiter<IpAddr>>,
    failed_logins: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses whose failed-login budget is used up, until it refills.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// `None` with a threshold of 0: every handshake is retried.
    handshakes: Option<DefaultDirectRateLimiter>,
    admin_unauthenticated: Option<DefaultKeyedRateLimiter<IpAddr>>,
    requests: Option<Quota>,
    pings: Option<Quota>,
    /// 0: no cap.
    max_conversations: usize,
    /// 0: no cap.
    max_connections: usize,
    counts: [AtomicU64; Limit::ALL.len()],
    checks: AtomicU64,
}

fn nonzero(n: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(n)
}

fn quota_exceeded(detail: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::QuotaExceeded, detail)
}

impl Guard {
    pub fn new(limits: &LimitsSection, quotas: &QuotasSection) -> Guard {
        let per_sec = |n: u32| nonzero(n).map(Quota::per_second);
        let per_min = |n: u32| nonzero(n).map(Quota::per_minute);
        let messages = nonzero(quotas.messages_per_sec).map(|rate| {
            let burst = nonzero(quotas.messages_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Guard {
            messages,
            conversations: nonzero(quotas.conversations_per_hour)
                .map(|n| RateLimiter::keyed(Quota::per_hour(n))),
            logins: per_min(limits.logins_per_ip_per_min).map(RateLimiter::keyed),
            failed_logins: per_min(limits.failed_logins_per_ip_per_min).map(RateLimiter::keyed),
            blocked: Mutex::new(HashMap::new()),
            handshakes: per_sec(limits.retry_above_handshakes_per_sec).map(RateLimiter::direct),
            admin_unauthenticated: per_sec(limits.admin_unauthenticated_per_sec)
                .map(RateLimiter::keyed),
            requests: per_sec(quotas.requests_per_sec),
            pings: per_sec(quotas.pings_per_sec),
            max_conversations: quotas.max_conversations_per_client as usize,
            max_connections: limits.max_connections as usize,
            counts: [const { AtomicU64::new(0) }; Limit::ALL.len()],
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one use of `limit`.
    pub fn count(&self, limit: Limit) {
        self.counts[limit as usize].fetch_add(1, Relaxed);
    }

    /// How often `limit` was hit since start.
    pub fn hits(&self, limit: Limit) -> u64 {
        self.counts[limit as usize].load(Relaxed)
    }

    /// Refused with `limit` counted, or allowed.
    fn refuse<T>(&self, limit: Limit, ok: bool, err: impl FnOnce() -> T) -> Result<(), T> {
        self.tick();
        if ok {
            Ok(())
        } else {
            self.count(limit);
            Err(err())
        }
    }

    /// A send by `client`: 4116 over its message rate. Takes the session's
    /// own `String` because governor's keyed map looks up by `&K`: a `&str`
    /// would cost an allocation per send.
    #[allow(clippy::ptr_arg)]
    pub fn send(&self, client: &String) -> Result<(), ErrorBody> {
        let Some(l) = &self.messages else {
            return Ok(());
        };
        self.refuse(Limit::Messages, l.check_key(client).is_ok(), || {
            ErrorBody::new(
                ErrorCode::MessageSentQuotaExceeded,
                "sending too fast (quotas.messages_per_sec); not stored, try again shortly",
            )
        })
    }

    /// A conversation created by `client`: 4117 over its hourly quota.
    pub fn create_conversation(&self, client: &str) -> Result<(), ErrorBody> {
        let Some(l) = &self.conversations else {
            return Ok(());
        };
        self.refuse(
            Limit::ConversationsPerHour,
            l.check_key(&client.to_owned()).is_ok(),
            || {
                quota_exceeded(
                    "too many conversations created this hour (quotas.conversations_per_hour)",
                )
            },
        )
    }

    /// `client` becoming a member of one more conversation, when it is in
    /// `count_upto(cap)` already: 4117 at `quotas.max_conversations_per_client`.
    pub fn one_more_conversation(
        &self,
        client: &str,
        count_upto: impl FnOnce(usize) -> usize,
    ) -> Result<(), ErrorBody> {
        if self.max_conversations == 0 {
            return Ok(());
        }
        let ok = count_upto(self.max_conversations) < self.max_conversations;
        self.refuse(Limit::Conversations, ok, || {
            quota_exceeded(format!(
                "{client} is in {} conversations, the most allowed (quotas.max_conversations_per_client)",
                self.max_conversations
            ))
        })
    }

    /// A login from `ip`, before its signature is checked: 4117 over the
    /// address's login rate, or while its failed-login budget is used up.
    pub fn login(&self, ip: IpAddr) -> Result<(), ErrorBody> {
        let now = Instant::now();
        let blocked = self
            .blocked
            .lock()
            .get(&ip)
            .is_some_and(|until| *until > now);
        self.refuse(Limit::FailedLogins, !blocked, || {
            quota_exceeded("too many failed logins from this address; try again later")
        })?;
        let Some(l) = &self.logins else {
            return Ok(());
        };
        self.refuse(Limit::Logins, l.check_key(&ip).is_ok(), || {
            quota_exceeded("too many logins from this address (limits.logins_per_ip_per_min)")
        })
    }

    /// A login from `ip` whose signature failed.
    pub fn login_failed(&self, ip: IpAddr) {
        let Some(l) = &self.failed_logins else {
            return;
        };
        if let Err(not_until) = l.check_key(&ip) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut blocked = self.blocked.lock();
            let now = Instant::now();
            if blocked.len() >= 4096 {
                blocked.retain(|_, until| *until > now);
            }
            blocked.insert(ip, now + wait);
        }
    }

    /// Whether a new QUIC connection is over `limits.max_connections` when
    /// `open` are open already (counted when so).
    pub fn connection_over_cap(&self, open: usize) -> bool {
        let over = self.max_connections > 0 && open >= self.max_connections;
        if over {
            self.count(Limit::Connections);
        }
        over
    }

    /// Whether a handshake from an address not yet validated should be
    /// answered with a QUIC Retry: handshakes are over their rate.
    pub fn handshake_wants_retry(&self) -> bool {
        self.handshakes.as_ref().is_none_or(|l| l.check().is_err())
    }

    /// An admin request without valid credentials from `ip`: `Err` holds
    /// how long until the next is allowed.
    pub fn admin_unauthenticated(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some(l) = &self.admin_unauthenticated else {
            return Ok(());
        };
        self.tick();
        l.check_key(&ip).map_err(|not_until| {
            self.count(Limit::AdminUnauthenticated);
            not_until.wait_time_from(DefaultClock::default().now())
        })
    }

    /// The per-connection buckets for a new session.
    pub fn connection(&self) -> ConnQuota {
        ConnQuota {
            requests: self.requests.map(RateLimiter::direct),
            pings: self.pings.map(RateLimiter::direct),
        }
    }

    /// Every so often, drops keyed buckets that are full again (their key
    /// has been idle long enough to be indistinguishable from a new one).
    fn tick(&self) {
        if self.checks.fetch_add(1, Relaxed) % SWEEP_EVERY != SWEEP_EVERY - 1 {
            return;
        }
        for l in [&self.messages, &self.conversations].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for l in [
            &self.logins,
            &self.failed_logins,
            &self.admin_unauthenticated,
        ]
        .into_iter()
        .flatten()
        {
            l.retain_recent();
            l.shrink_to_fit();
        }
        let now = Instant::now();
        self.blocked.lock().retain(|_, until| *until > now);
    }
}

/// One connection's request and ping buckets.
pub struct ConnQuota {
    requests: Option<DefaultDirectRateLimiter>,
    pings: Option<DefaultDirectRateLimiter>,
}

impl ConnQuota {
    /// A request (other than a send) or typing notice: false when over
    /// `quotas.requests_per_sec` (counted).
    pub fn request(&self, guard: &Guard) -> bool {
        let ok = self.requests.as_ref().is_none_or(|l| l.check().is_ok());
        if !ok {
            guard.count(Limit::Requests);
        }
        ok
    }

    /// A ping: false when over `quotas.pings_per_sec` (counted).
    pub fn ping(&self, guard: &Guard) -> bool {
        let ok = self.pings.as_ref().is_none_or(|l| l.check().is_ok());
        if !ok {
            guard.count(Limit::Pings);
        }
        ok
    }

    /// 4117 for a request over the rate.
    pub fn refused() -> ErrorBody {
        quota_exceeded("too many requests on this connection (quotas.requests_per_sec)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusals_counted() {
        let limits = LimitsSection::default();
        let quotas = QuotasSection {
            messages_per_sec: 1,
            messages_burst: 3,
            ..QuotasSection::default()
        };
        let g = Guard::new(&limits, &quotas);
        for _ in 0..3 {
            g.send(&"Tom".to_owned()).unwrap();
        }
        assert_eq!(g.send(&"Tom".to_owned()).unwrap_err().code, 4116);
        // Another client has its own bucket.
        g.send(&"Jerry".to_owned()).unwrap();
        assert_eq!(g.hits(Limit::Messages), 1);
    }

    #[test]
    fn failed_logins_block_the_address_only() {
        let limits = LimitsSection {
            failed_logins_per_ip_per_min: 2,
            ..LimitsSection::default()
        };
        let g = Guard::new(&limits, &QuotasSection::default());
        let (bad, good): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        for _ in 0..3 {
            g.login(bad).unwrap();
            g.login_failed(bad);
        }
        assert_eq!(g.login(bad).unwrap_err().code, 4117);
        g.login(good).unwrap();
        assert_eq!(g.hits(Limit::FailedLogins), 1);
    }

    #[test]
    fn zero_turns_a_quota_off() {
        let quotas = QuotasSection {
            messages_per_sec: 0,
            requests_per_sec: 0,
            max_conversations_per_client: 0,
            ..QuotasSection::default()
        };
        let g = Guard::new(&LimitsSection::default(), &quotas);
        let c = g.connection();
        for _ in 0..10_000 {
            g.send(&"Tom".to_owned()).unwrap();
            assert!(c.request(&g));
        }
        g.one_more_conversation("Tom", |_| usize::MAX).unwrap();
    }
}
