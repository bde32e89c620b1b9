//! What Tidings has learned about each hook endpoint: whether the app
//! defines the function at all, and a circuit breaker over its recent
//! failures. Shared by before-hooks and the outbox, so a dead endpoint costs
//! each of them a bounded number of calls instead of one per message.
//!
//! An endpoint that answers HTTP 404 or LeanEngine's error code 1 does not
//! define the hook (a LeanEngine app answers so for every function it lacks,
//! and with `hooks.base_url` set every hook is on): it is not called again
//! for `hooks.undefined_retry_secs` or until a reload.
//!
//! The breaker: after `hooks.breaker_failures` failures or timeouts in a row
//! it opens for `hooks.breaker_cooldown_ms`, during which no call is made.
//! The first call after the cool-down is the probe; while it is under way
//! the breaker counts as open again for one more cool-down, so only one
//! call probes. Its success closes the breaker, its failure re-opens it. A
//! probe whose caller went away simply lets the next one probe a cool-down
//! later: no state can stay stuck.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reqwest::Url;

use super::CallError;
use crate::config::HooksSection;

/// Whether a call to an endpoint may be made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Call,
    /// The breaker is open: answer as the fail policy says, without calling.
    Open,
    /// The app does not define this function.
    Undefined,
}

/// What one call's outcome taught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    Nothing,
    /// The endpoint was just found not to define the hook.
    Undefined,
    /// This failure opened the breaker (it was closed).
    Opened,
}

#[derive(Debug, Default)]
struct Endpoint {
    failures: u32,
    open_until: Option<Instant>,
    undefined_until: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    undefined_retry: Duration,
    breaker_failures: u32,
    cooldown: Duration,
}

impl Settings {
    fn of(cfg: &HooksSection) -> Settings {
        Settings {
            undefined_retry: Duration::from_secs(cfg.undefined_retry_secs),
            breaker_failures: cfg.breaker_failures,
            cooldown: Duration::from_millis(cfg.breaker_cooldown_ms),
        }
    }
}

pub(super) struct Guard {
    settings: Mutex<Settings>,
    endpoints: Mutex<HashMap<Url, Endpoint>>,
}

/// Whether an answer says the function does not exist.
pub fn is_undefined(e: &CallError) -> bool {
    match e {
        CallError::HookError { status, code, .. } => *status == 404 || *code == 1,
        CallError::Status { status, .. } => *status == 404,
        _ => false,
    }
}

impl Guard {
    pub fn new(cfg: &HooksSection) -> Guard {
        Guard {
            settings: Mutex::new(Settings::of(cfg)),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// A reload forgets everything learned: the app may have been deployed
    /// anew, and the URLs may be others.
    pub fn reload(&self, cfg: &HooksSection) {
        *self.settings.lock() = Settings::of(cfg);
        self.endpoints.lock().clear();
    }

    pub fn admit(&self, url: &Url) -> Admit {
        let now = Instant::now();
        let s = *self.settings.lock();
        let mut map = self.endpoints.lock();
        let Some(ep) = map.get_mut(url) else {
            return Admit::Call;
        };
        if let Some(until) = ep.undefined_until {
            if now < until {
                return Admit::Undefined;
            }
            ep.undefined_until = None;
        }
        match ep.open_until {
            Some(until) if now < until => Admit::Open,
            Some(_) => {
                // This call is the probe; the others wait one more cool-down.
                ep.open_until = Some(now + s.cooldown);
                Admit::Call
            }
            None => Admit::Call,
        }
    }

    pub fn record(&self, url: &Url, outcome: &Result<(), &CallError>) -> Learned {
        let now = Instant::now();
        let s = *self.settings.lock();
        let mut map = self.endpoints.lock();
        match outcome {
            Ok(()) => {
                // Nothing to remember about a healthy endpoint.
                map.remove(url);
                Learned::Nothing
            }
            Err(e) if is_undefined(e) => {
                let ep = map.entry(url.clone()).or_default();
                ep.failures = 0;
                ep.open_until = None;
                ep.undefined_until = Some(now + s.undefined_retry);
                Learned::Undefined
            }
            Err(_) => {
                if s.breaker_failures == 0 {
                    return Learned::Nothing;
                }
                let ep = map.entry(url.clone()).or_default();
                ep.failures = ep.failures.saturating_add(1);
                if ep.failures < s.breaker_failures {
                    return Learned::Nothing;
                }
                let was_open = ep.open_until.is_some();
                ep.open_until = Some(now + s.cooldown);
                if was_open {
                    Learned::Nothing
                } else {
                    Learned::Opened
                }
            }
        }
    }

    /// Endpoints whose breaker is open now, and endpoints known not to
    /// define their hook, for metrics.
    pub fn counts(&self) -> (u64, u64) {
        let now = Instant::now();
        let map = self.endpoints.lock();
        let open = map
            .values()
            .filter(|e| e.open_until.is_some_and(|t| now < t))
            .count() as u64;
        let undefined = map
            .values()
            .filter(|e| e.undefined_until.is_some_and(|t| now < t))
            .count() as u64;
        (open, undefined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(failures: u32, cooldown_ms: u64) -> HooksSection {
        HooksSection {
            breaker_failures: failures,
            breaker_cooldown_ms: cooldown_ms,
            ..HooksSection::default()
        }
    }

    fn fail() -> CallError {
        CallError::Status {
            status: 500,
            body: String::new(),
        }
    }

    #[test]
    fn breaker_opens_after_n_in_a_row_and_one_probe_closes_it() {
        let g = Guard::new(&cfg(3, 3_600_000));
        let u: Url = "http://h/1.1/functions/_messageReceived".parse().unwrap();
        let e = fail();
        for _ in 0..2 {
            assert_eq!(g.admit(&u), Admit::Call);
            assert_eq!(g.record(&u, &Err(&e)), Learned::Nothing);
        }
        // A success in between starts the count again.
        assert_eq!(g.record(&u, &Ok(())), Learned::Nothing);
        for _ in 0..2 {
            g.record(&u, &Err(&e));
        }
        assert_eq!(g.admit(&u), Admit::Call);
        assert_eq!(g.record(&u, &Err(&e)), Learned::Opened);
        assert_eq!(g.admit(&u), Admit::Open);
        assert_eq!(g.counts(), (1, 0));
        // The cool-down is over: one probe, the rest still open.
        g.endpoints.lock().get_mut(&u).unwrap().open_until = Some(Instant::now());
        assert_eq!(g.admit(&u), Admit::Call);
        assert_eq!(g.admit(&u), Admit::Open);
        assert_eq!(g.record(&u, &Ok(())), Learned::Nothing);
        assert_eq!(g.admit(&u), Admit::Call);
        assert_eq!(g.counts(), (0, 0));
    }

    #[test]
    fn undefined_is_learned_until_reload_and_zero_turns_the_breaker_off() {
        let g = Guard::new(&cfg(0, 1000));
        let u: Url = "http://h/1.1/functions/_clientOnline".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(g.record(&u, &Err(&fail())), Learned::Nothing);
        }
        assert_eq!(g.admit(&u), Admit::Call);
        let lean = CallError::HookError {
            status: 404,
            code: 1,
            error: "Cloud function not found".into(),
        };
        assert!(is_undefined(&lean));
        assert!(is_undefined(&CallError::Status {
            status: 404,
            body: "Not Found".into()
        }));
        assert!(!is_undefined(&fail()));
        assert_eq!(g.record(&u, &Err(&lean)), Learned::Undefined);
        assert_eq!(g.admit(&u), Admit::Undefined);
        assert_eq!(g.counts(), (0, 1));
        g.reload(&cfg(0, 1000));
        assert_eq!(g.admit(&u), Admit::Call);
    }
}
