//! Session tokens (`st`): handed out at `session/opened` and
//! `session/refreshed`, they let the same client log in again without a
//! fresh signature. The JS SDK reconnects with only its `st`, no tag, so
//! the token remembers the tag the session had.
//!
//! Kept in memory: a restart forgets them, and the SDKs answer the 4112
//! (SESSION_TOKEN_EXPIRED) that follows by logging in afresh with a
//! signature, as they do when a token times out on LeanCloud.

use std::collections::HashMap;

use parking_lot::Mutex;

/// More live tokens than this and the oldest are dropped first; a client
/// whose token went gets 4112 and signs again.
const MAX_TOKENS: usize = 200_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub client: String,
    pub tag: Option<String>,
}

struct Entry {
    holder: Holder,
    expires_ms: u64,
}

pub struct Tokens {
    ttl_ms: u64,
    map: Mutex<HashMap<String, Entry>>,
}

impl Tokens {
    pub fn new(ttl_secs: u64) -> Tokens {
        Tokens {
            ttl_ms: ttl_secs.saturating_mul(1000),
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_ms / 1000
    }

    /// A new token for `holder`, valid from `now_ms` for the TTL.
    pub fn issue(&self, holder: Holder, now_ms: u64) -> String {
        let token = hex::encode(rand::random::<[u8; 16]>());
        let mut map = self.map.lock();
        if map.len() >= MAX_TOKENS {
            map.retain(|_, e| e.expires_ms > now_ms);
            if map.len() >= MAX_TOKENS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, e)| e.expires_ms)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            token.clone(),
            Entry {
                holder,
                expires_ms: now_ms.saturating_add(self.ttl_ms),
            },
        );
        token
    }

    /// Who `token` was issued to, if it is live and was issued to `client`.
    pub fn redeem(&self, token: &str, client: &str, now_ms: u64) -> Option<Holder> {
        self.holder(token, now_ms).filter(|h| h.client == client)
    }

    /// Who `token` was issued to, if it is live (the REST calls name the
    /// client by its token alone).
    pub fn holder(&self, token: &str, now_ms: u64) -> Option<Holder> {
        let mut map = self.map.lock();
        let entry = map.get(token)?;
        if entry.expires_ms <= now_ms {
            map.remove(token);
            return None;
        }
        Some(entry.holder.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Holder {
        Holder {
            client: "alice".into(),
            tag: Some("Mobile".into()),
        }
    }

    #[test]
    fn a_token_logs_its_client_in_until_it_expires() {
        let t = Tokens::new(10);
        let st = t.issue(alice(), 1_000);
        assert_eq!(st.len(), 32);
        assert_eq!(t.redeem(&st, "alice", 5_000), Some(alice()));
        assert_eq!(t.redeem(&st, "bob", 5_000), None, "another client's token");
        assert_eq!(t.redeem(&st, "alice", 11_000), None, "expired");
        assert_eq!(
            t.redeem(&st, "alice", 2_000),
            None,
            "an expired token is gone"
        );
        assert_eq!(t.redeem("nope", "alice", 2_000), None);
    }
}
