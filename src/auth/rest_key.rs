//! LeanCloud's REST credentials, as its client SDKs send them: `X-LC-Id`
//! is the app id, and either `X-LC-Key` is `<app key>` (or
//! `<master key>,master`) or `X-LC-Sign` is `<md5(timestamp + key)>,<timestamp
//! ms>` (with `,master` when the key is the master key). The client SDKs
//! send `X-LC-Sign` with the app key; server SDKs and hooks add `,master`.

use md5::{Digest, Md5};

use super::Credentials;

/// How far an `X-LC-Sign` timestamp may be from our clock: a captured
/// signature replays only this long (the admin API's window too).
pub const SIGN_WINDOW_MS: u64 = 15 * 60 * 1000;

/// Which key a request proved it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The app key: what apps ship, enough for the client-side REST calls.
    App,
    /// The master key: everything, the admin API included.
    Master,
}

/// Why a request's credentials were refused. LeanCloud answers all of them
/// with HTTP 401 and `{"code": 401, "error": "Unauthorized."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("X-LC-Id is missing or not this app's id")]
    UnknownApp,
    #[error("neither X-LC-Key nor X-LC-Sign was sent")]
    Missing,
    #[error("X-LC-Key is not this app's key")]
    BadKey,
    #[error("X-LC-Sign is malformed, outside its window or wrong")]
    BadSign,
}

impl KeyError {
    /// LeanCloud's code (and HTTP status) for every refusal here.
    pub const CODE: u16 = 401;
}

/// Compares without stopping at the first difference, so the time taken
/// says nothing about how much of a key was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An empty key never matches (an old credentials file has no app key).
fn is_key(sent: &str, key: &str) -> bool {
    !key.is_empty() & same(sent.as_bytes(), key.as_bytes())
}

impl Credentials {
    /// Checks LeanCloud's REST headers (`X-LC-Id`, `X-LC-Key`,
    /// `X-LC-Sign`, as `&str`; `None` when absent) at `now_ms`. `X-LC-Key`
    /// wins when both are sent. Either key passes; a caller that needs the
    /// master key checks for [`KeyKind::Master`].
    pub fn check_client_key(
        &self,
        id: Option<&str>,
        key: Option<&str>,
        sign: Option<&str>,
        now_ms: u64,
    ) -> Result<KeyKind, KeyError> {
        if !id.is_some_and(|id| is_key(id, &self.app_id)) {
            return Err(KeyError::UnknownApp);
        }
        if let Some(key) = key {
            return match key.strip_suffix(",master") {
                Some(k) if is_key(k, &self.master_key) => Ok(KeyKind::Master),
                None if is_key(key, &self.app_key) => Ok(KeyKind::App),
                _ => Err(KeyError::BadKey),
            };
        }
        let sign = sign.ok_or(KeyError::Missing)?;
        let (rest, kind, secret) = match sign.strip_suffix(",master") {
            Some(rest) => (rest, KeyKind::Master, &self.master_key),
            None => (sign, KeyKind::App, &self.app_key),
        };
        let (digest, ts) = rest.split_once(',').ok_or(KeyError::BadSign)?;
        let at: u64 = ts.parse().map_err(|_| KeyError::BadSign)?;
        if secret.is_empty() || at.abs_diff(now_ms) > SIGN_WINDOW_MS {
            return Err(KeyError::BadSign);
        }
        let want = hex::encode(Md5::digest(format!("{ts}{secret}")));
        if same(digest.to_ascii_lowercase().as_bytes(), want.as_bytes()) {
            Ok(kind)
        } else {
            Err(KeyError::BadSign)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn creds() -> Credentials {
        Credentials {
            app_id: "app".into(),
            master_key: "masterkey".into(),
            app_key: "appkey".into(),
        }
    }

    fn sign(ts: u64, key: &str) -> String {
        hex::encode(Md5::digest(format!("{ts}{key}")))
    }

    #[test]
    fn x_lc_key_with_either_key() {
        let c = creds();
        let check = |id, key| c.check_client_key(id, key, None, NOW);
        assert_eq!(check(Some("app"), Some("appkey")), Ok(KeyKind::App));
        assert_eq!(
            check(Some("app"), Some("masterkey,master")),
            Ok(KeyKind::Master)
        );
        assert_eq!(check(Some("app"), Some("masterkey")), Err(KeyError::BadKey));
        assert_eq!(
            check(Some("app"), Some("appkey,master")),
            Err(KeyError::BadKey)
        );
        assert_eq!(
            check(Some("other"), Some("appkey")),
            Err(KeyError::UnknownApp)
        );
        assert_eq!(check(None, Some("appkey")), Err(KeyError::UnknownApp));
        assert_eq!(check(Some("app"), None), Err(KeyError::Missing));
    }

    #[test]
    fn x_lc_sign_is_md5_of_timestamp_and_key() {
        // printf '1700000000000appkey' | md5sum
        assert_eq!(sign(NOW, "appkey"), "54c13acf6ac04dd9585fe202a973c7cc");
        let c = creds();
        let check = |s: &str| c.check_client_key(Some("app"), None, Some(s), NOW);
        assert_eq!(
            check(&format!("{},{NOW}", sign(NOW, "appkey"))),
            Ok(KeyKind::App)
        );
        let upper = sign(NOW, "appkey").to_uppercase();
        assert_eq!(check(&format!("{upper},{NOW}")), Ok(KeyKind::App));
        assert_eq!(
            check(&format!("{},{NOW},master", sign(NOW, "masterkey"))),
            Ok(KeyKind::Master)
        );
        // The app key's digest does not pass as the master key's, nor the reverse.
        assert_eq!(
            check(&format!("{},{NOW},master", sign(NOW, "appkey"))),
            Err(KeyError::BadSign)
        );
        assert_eq!(
            check(&format!("{},{NOW}", sign(NOW, "masterkey"))),
            Err(KeyError::BadSign)
        );
        // Fifteen minutes either way.
        let old = NOW - SIGN_WINDOW_MS;
        assert_eq!(
            check(&format!("{},{old}", sign(old, "appkey"))),
            Ok(KeyKind::App)
        );
        let older = old - 1;
        assert_eq!(
            check(&format!("{},{older}", sign(older, "appkey"))),
            Err(KeyError::BadSign)
        );
        for bad in ["", "abc", "abc,", ",1", "x,y,master", &sign(NOW, "appkey")] {
            assert_eq!(check(bad), Err(KeyError::BadSign), "{bad:?}");
        }
        // X-LC-Key wins over X-LC-Sign.
        let good = format!("{},{NOW}", sign(NOW, "appkey"));
        assert_eq!(
            c.check_client_key(Some("app"), Some("nope"), Some(&good), NOW),
            Err(KeyError::BadKey)
        );
    }

    #[test]
    fn leancloud_docs_example_passes_as_the_master_key() {
        // LeanCloud's REST docs: md5("1453014943466masterKey"), with ",master".
        let at = 1_453_014_943_466;
        let c = Credentials {
            app_id: "app".into(),
            master_key: "masterKey".into(),
            app_key: "appKey".into(),
        };
        let check = |s: &str, now| c.check_client_key(Some("app"), None, Some(s), now);
        let good = "ee58ce7ed84d01752a1b39f3a2f9e04e,1453014943466,master";
        assert_eq!(check(good, at), Ok(KeyKind::Master));
        assert_eq!(check(good, at + SIGN_WINDOW_MS), Ok(KeyKind::Master));
        assert_eq!(check(good, at + SIGN_WINDOW_MS + 1), Err(KeyError::BadSign));
        let moved = "ee58ce7ed84d01752a1b39f3a2f9e04e,1453014943467,master";
        assert_eq!(check(moved, at), Err(KeyError::BadSign));
        assert_eq!(check(",,master", at), Err(KeyError::BadSign));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(same(b"", b""));
    }

    #[test]
    fn no_app_key_means_only_the_master_key_passes() {
        let mut c = creds();
        c.app_key.clear();
        assert_eq!(
            c.check_client_key(Some("app"), Some(""), None, NOW),
            Err(KeyError::BadKey)
        );
        assert_eq!(
            c.check_client_key(
                Some("app"),
                None,
                Some(&format!("{},{NOW}", sign(NOW, ""))),
                NOW
            ),
            Err(KeyError::BadSign)
        );
        assert_eq!(
            c.check_client_key(Some("app"), Some("masterkey,master"), None, NOW),
            Ok(KeyKind::Master)
        );
    }
}
