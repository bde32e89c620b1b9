//! The two typing rate limits, as one type: a session drops a typing state
//! that repeats its last one for a conversation within a second (clients
//! resend "typing" while the user types), and the server calls
//! `_typingStarted` at most once per `typing_hook_interval_secs` per client
//! and conversation (a hook per keystroke would flood the app).
//!
//! Sans-IO: `now` comes in; the table never reads the clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Entries in the server's `_typingStarted` table (per client and
/// conversation) before stale ones are swept.
pub const HOOK_SWEEP_AT: usize = 10_000;

/// Entries in a session's repeat table (per conversation) before stale ones
/// are swept.
pub const SESSION_SWEEP_AT: usize = 1001;

/// A repeated typing state inside this window is not relayed again.
pub const TYPING_REPEAT: Duration = Duration::from_secs(1);

/// The last state admitted per key and when; a state equal to the last one
/// is refused inside `window` of it. With `S = ()` every call is a repeat,
/// which makes it a plain "at most once per window" limit.
#[derive(Debug)]
pub struct TypingLimit<K, S = ()> {
    last: HashMap<K, (S, Instant)>,
    /// Entries kept before stale ones are swept, so a table that many keys
    /// passed through does not keep them all.
    sweep_at: usize,
}

impl<K: Hash + Eq, S: PartialEq> TypingLimit<K, S> {
    pub fn new(sweep_at: usize) -> Self {
        TypingLimit {
            last: HashMap::new(),
            sweep_at,
        }
    }

    /// Whether `state` for `key` goes out at `now`; if it does, it becomes
    /// the last one. `window` is passed in so a reloaded interval applies
    /// at once.
    pub fn admit(&mut self, now: Instant, window: Duration, key: K, state: S) -> bool {
        if let Some((last, at)) = self.last.get(&key)
            && *last == state
            && now.saturating_duration_since(*at) < window
        {
            return false;
        }
        if self.last.len() >= self.sweep_at {
            self.last
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < window);
        }
        self.last.insert(key, (state, now));
        true
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_repeated_state_waits_for_the_window_a_change_does_not() {
        let t0 = crate::core::test_origin();
        let mut t = TypingLimit::<u8, bool>::new(1000);
        assert!(t.admit(t0, SEC, 1, true));
        assert!(
            !t.admit(t0 + SEC / 2, SEC, 1, true),
            "a repeat inside the window"
        );
        assert!(t.admit(t0 + SEC / 2, SEC, 2, true), "another conversation");
        assert!(
            t.admit(t0 + SEC / 2, SEC, 1, false),
            "a change goes out at once"
        );
        assert!(t.admit(t0 + SEC / 2 + Duration::from_nanos(1), SEC, 1, true));
        assert!(!t.admit(t0 + SEC, SEC, 1, true));
        assert!(t.admit(t0 + SEC * 2, SEC, 1, true), "the window passed");
    }

    #[test]
    fn a_hook_limit_admits_once_per_interval() {
        let t0 = crate::core::test_origin();
        let every = Duration::from_secs(5);
        let mut t = TypingLimit::<(&str, u8)>::new(10_000);
        assert!(t.admit(t0, every, ("Tom", 1), ()));
        assert!(!t.admit(t0 + every - Duration::from_micros(1), every, ("Tom", 1), ()));
        assert!(t.admit(t0, every, ("Jerry", 1), ()), "per client");
        assert!(t.admit(t0 + every, every, ("Tom", 1), ()));
    }

    #[test]
    fn stale_entries_are_swept_once_the_table_is_full() {
        let t0 = crate::core::test_origin();
        let mut t = TypingLimit::<u32>::new(3);
        for k in 0..3 {
            assert!(t.admit(t0, SEC, k, ()));
        }
        assert_eq!(t.len(), 3);
        // All three are stale by now: the sweep leaves only the new one.
        assert!(t.admit(t0 + SEC * 2, SEC, 9, ()));
        assert_eq!(t.len(), 1);
        // Fresh entries are kept by a sweep, and still limit.
        assert!(t.admit(t0 + SEC * 2, SEC, 10, ()));
        assert!(t.admit(t0 + SEC * 2, SEC, 11, ()));
        assert!(t.admit(t0 + SEC * 2, SEC, 12, ()));
        assert_eq!(t.len(), 4);
        assert!(!t.admit(t0 + SEC * 2, SEC, 9, ()));
    }
}
