//! Retrying a push: exponential backoff with jitter (Sygnal's 10 s·2ⁿ by
//! default), a provider's `Retry-After` when it is longer, and never past
//! the push's own expiry, after which the provider would drop it anyway.

use std::future::Future;
use std::time::Duration;

use super::Outcome;

/// The longest computed backoff step; `Retry-After` may ask for more.
const MAX_STEP: Duration = Duration::from_secs(3600);

/// When to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first retry's delay; each later one doubles it.
    pub base: Duration,
}

impl Backoff {
    /// The delay before retry `n` (0 is the first retry): `base·2ⁿ`, grown
    /// by up to a quarter by `jitter` (in `[0, 1)`) so failed pushes do not
    /// return in step, and at least `retry_after`.
    pub fn delay(&self, n: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let step = self.base.saturating_mul(1u32 << n.min(20)).min(MAX_STEP);
        let step = step.mul_f64(1.0 + jitter.clamp(0.0, 1.0) / 4.0);
        step.max(retry_after.unwrap_or_default())
    }

    /// The delay before retry `n` at `now_ms`, or `None` to give up: out of
    /// retries, or the retry would land after `expires_at` (unix seconds).
    pub fn next(
        &self,
        n: u32,
        retry_after: Option<Duration>,
        now_ms: u64,
        expires_at: u64,
        jitter: f64,
    ) -> Option<Duration> {
        if n >= self.max_retries {
            return None;
        }
        let d = self.delay(n, retry_after, jitter);
        let at = now_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        (at <= expires_at.saturating_mul(1000)).then_some(d)
    }
}

/// Runs `attempt` until it gives anything but [`Outcome::Retry`], sleeping
/// by `backoff` between tries; the last `Retry` is returned when retries
/// or the expiry run out.
pub async fn deliver<F, Fut>(backoff: &Backoff, expires_at: u64, mut attempt: F) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut n = 0;
    loop {
        let outcome = attempt().await;
        let Outcome::Retry { after, .. } = &outcome else {
            return outcome;
        };
        let jitter = rand::random::<f64>();
        match backoff.next(n, *after, crate::util::now_ms(), expires_at, jitter) {
            Some(d) => tokio::time::sleep(d).await,
            None => return outcome,
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        max_retries: 3,
        base: Duration::from_secs(10),
    };

    #[test]
    fn doubles_with_bounded_jitter() {
        assert_eq!(B.delay(0, None, 0.0), Duration::from_secs(10));
        assert_eq!(B.delay(1, None, 0.0), Duration::from_secs(20));
        assert_eq!(B.delay(2, None, 0.0), Duration::from_secs(40));
        assert_eq!(
            B.delay(2, None, 0.99),
            Duration::from_secs(40).mul_f64(1.2475)
        );
        assert_eq!(B.delay(40, None, 0.0), MAX_STEP, "no overflow, capped");
    }

    #[test]
    fn retry_after_wins_when_longer() {
        assert_eq!(
            B.delay(0, Some(Duration::from_secs(60)), 0.0),
            Duration::from_secs(60)
        );
        assert_eq!(
            B.delay(1, Some(Duration::from_secs(1)), 0.0),
            Duration::from_secs(20)
        );
    }

    #[test]
    fn gives_up_after_max_retries_or_past_expiry() {
        let now_ms = 1_000_000;
        assert!(B.next(2, None, now_ms, u64::MAX / 1000, 0.0).is_some());
        assert_eq!(B.next(3, None, now_ms, u64::MAX / 1000, 0.0), None);
        // 10 s left: a 10 s step fits, a 20 s one does not.
        let expires_at = now_ms / 1000 + 10;
        assert_eq!(
            B.next(0, None, now_ms, expires_at, 0.0),
            Some(Duration::from_secs(10))
        );
        assert_eq!(B.next(1, None, now_ms, expires_at, 0.0), None);
        assert_eq!(
            B.next(0, Some(Duration::from_secs(11)), now_ms, expires_at, 0.0),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn deliver_retries_then_stops() {
        let mut calls = 0;
        let b = Backoff {
            max_retries: 5,
            base: Duration::from_millis(100),
        };
        let far = crate::util::now_secs() + 3600;
        let out = deliver(&b, far, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Outcome::Retry {
                        after: None,
                        reason: "503".into(),
                    }
                } else {
                    Outcome::Delivered
                }
            }
        })
        .await;
        assert_eq!((out, calls), (Outcome::Delivered, 3));
        calls = 0;
        let out = deliver(&b, far, || {
            calls += 1;
            async {
                Outcome::Retry {
                    after: None,
                    reason: "503".into(),
                }
            }
        })
        .await;
        assert!(matches!(out, Outcome::Retry { .. }));
        assert_eq!(calls, 6, "first try plus max_retries");
    }
}
