//! App credentials and LeanCloud-compatible signatures: logins here,
//! conversation operations in [`conversation`], the REST headers in
//! [`rest_key`].

mod conversation;
mod rest_key;

pub use conversation::{
    ConvAction, ConvOp, ConvSignaturePolicy,
    DEFAULT_WINDOW_SECS as DEFAULT_CONVERSATION_WINDOW_SECS, conversation_message,
    sign_conversation,
};
pub use rest_key::{KeyError, KeyKind, SIGN_WINDOW_MS};

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha1::Sha1;

use crate::protocol::{ErrorBody, ErrorCode, Login};

/// Generated credentials, owner-readable only.
pub const CREDENTIALS_FILE: &str = "credentials.json";

/// Longest clientId / tag / deviceId we accept (LeanCloud's clientId limit).
pub const MAX_ID_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Parse { path: PathBuf, msg: String },
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub app_id: String,
    pub master_key: String,
    /// LeanCloud's App Key: what apps ship, for the client-side REST calls
    /// (`X-LC-Key` / `X-LC-Sign`). Files written before it existed have
    /// none; [`Credentials::load_or_create_all`] adds one.
    #[serde(default)]
    pub app_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("app_id", &self.app_id)
            .field("master_key", &"<secret>")
            .field("app_key", &"<secret>")
            .finish()
    }
}

impl Credentials {
    /// Configured values win; otherwise the data dir's, generated on first start.
    pub fn load_or_create(
        data_dir: &Path,
        app_id: Option<&str>,
        master_key: Option<&str>,
    ) -> Result<Self, AuthError> {
        Self::load_or_create_all(data_dir, app_id, master_key, None)
    }

    /// [`Credentials::load_or_create`] with the app key too (`auth.app_key`).
    /// The data dir is only touched when something is not configured; a
    /// file from before app keys gets one added, its other keys kept.
    pub fn load_or_create_all(
        data_dir: &Path,
        app_id: Option<&str>,
        master_key: Option<&str>,
        app_key: Option<&str>,
    ) -> Result<Self, AuthError> {
        if let (Some(a), Some(k), Some(ak)) = (app_id, master_key, app_key) {
            return Ok(Credentials {
                app_id: a.into(),
                master_key: k.into(),
                app_key: ak.into(),
            });
        }
        let stored = match Self::load(data_dir) {
            Ok(c) if c.app_key.is_empty() => {
                let c = Credentials {
                    app_key: crate::util::random_token(24),
                    ..c
                };
                c.save(data_dir)?;
                c
            }
            Ok(c) => c,
            Err(AuthError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let c = Credentials {
                    app_id: crate::util::random_token(24),
                    master_key: crate::util::random_token(32),
                    app_key: crate::util::random_token(24),
                };
                c.save(data_dir)?;
                c
            }
            Err(e) => return Err(e),
        };
        Ok(Credentials {
            app_id: app_id.map(str::to_owned).unwrap_or(stored.app_id),
            master_key: master_key.map(str::to_owned).unwrap_or(stored.master_key),
            app_key: app_key.map(str::to_owned).unwrap_or(stored.app_key),
        })
    }

    /// Writes the data dir's file, owner-readable only.
    fn save(&self, data_dir: &Path) -> Result<(), AuthError> {
        let path = data_dir.join(CREDENTIALS_FILE);
        let text = serde_json::to_vec_pretty(self).map_err(|e| AuthError::Parse {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        crate::util::write_private(&path, &text).map_err(|source| AuthError::Io { path, source })
    }

    /// The app key (`auth.app_key`, else the data dir's).
    pub fn app_key(&self) -> &str {
        &self.app_key
    }

    pub fn load(data_dir: &Path) -> Result<Self, AuthError> {
        let path = data_dir.join(CREDENTIALS_FILE);
        let text = std::fs::read(&path).map_err(|source| AuthError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|e| AuthError::Parse {
            path,
            msg: e.to_string(),
        })
    }

    /// A signed login for `client_id`, as a LeanCloud SDK's signature factory would make.
    pub fn sign_login(&self, client_id: &str, timestamp: u64, nonce: &str) -> String {
        sign_login(&self.master_key, &self.app_id, client_id, timestamp, nonce)
    }
}

pub fn random_nonce() -> String {
    crate::util::random_token(16)
}

fn login_mac(
    master_key: &str,
    app_id: &str,
    client_id: &str,
    timestamp: u64,
    nonce: &str,
) -> Hmac<Sha1> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(master_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    mac.update(format!("{app_id}:{client_id}::{timestamp}:{nonce}").as_bytes());
    mac
}

/// `hex(HMAC-SHA1(master_key, "appid:clientid::timestamp:nonce"))`.
pub fn sign_login(
    master_key: &str,
    app_id: &str,
    client_id: &str,
    timestamp: u64,
    nonce: &str,
) -> String {
    hex::encode(
        login_mac(master_key, app_id, client_id, timestamp, nonce)
            .finalize()
            .into_bytes(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Signature,
    Open,
}

/// Checks logins; remembers nonces for one window so a captured login cannot be replayed.
pub struct Authenticator {
    mode: Mode,
    creds: Credentials,
    window_secs: u64,
    nonces: Mutex<Nonces>,
    /// Where used nonces outlive a restart (`store::nonces`).
    store: Option<Arc<crate::store::Store>>,
    /// Which conversation operations must be signed ([`conversation`]).
    conv_policy: ConvSignaturePolicy,
}

/// Used nonces, by name and by expiry: a login costs a lookup and expiring
/// costs only what expired, however many are live.
#[derive(Default)]
struct Nonces {
    by_nonce: HashMap<String, u64>,
    by_expiry: BTreeSet<(u64, String)>,
}

impl Nonces {
    /// Drops the nonces that expired before `now`; returns them.
    fn expire(&mut self, now: u64) -> Vec<(u64, String)> {
        let mut gone = Vec::new();
        while let Some(first) = self.by_expiry.first() {
            if first.0 >= now {
                break;
            }
            if let Some(e) = self.by_expiry.pop_first() {
                self.by_nonce.remove(&e.1);
                gone.push(e);
            }
        }
        gone
    }

    /// False when `nonce` is already in use.
    fn insert(&mut self, nonce: &str, expires: u64) -> bool {
        if self.by_nonce.contains_key(nonce) {
            return false;
        }
        self.by_nonce.insert(nonce.to_owned(), expires);
        self.by_expiry.insert((expires, nonce.to_owned()));
        true
    }
}

fn invalid(code: ErrorCode, detail: &str) -> ErrorBody {
    ErrorBody::new(code, detail)
}

/// 1-64 characters (not bytes), none of them control characters; the byte
/// bound keeps the store's one-byte length prefix exact.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id.chars().count() <= MAX_ID_LEN
        && !id.chars().any(char::is_control)
}

impl Authenticator {
    pub fn new(mode: Mode, creds: Credentials, window_secs: u64) -> Self {
        Authenticator {
            mode,
            creds,
            window_secs,
            nonces: Mutex::new(Nonces::default()),
            store: None,
            conv_policy: ConvSignaturePolicy::default(),
        }
    }

    /// Keeps used nonces in `store` too and takes back those of the last
    /// run, so a restart does not reopen the replay window.
    pub fn with_store(
        mut self,
        store: Arc<crate::store::Store>,
        now_secs: u64,
    ) -> Result<Self, crate::store::StoreError> {
        let live = store.nonces_live(now_secs)?;
        {
            let n = self.nonces.get_mut();
            for (expires, nonce) in live {
                n.insert(&nonce, expires);
            }
        }
        self.store = Some(store);
        Ok(self)
    }

    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    pub fn check(&self, login: &Login, now_secs: u64) -> Result<(), ErrorBody> {
        if !valid_id(&login.client_id) {
            return Err(invalid(
                ErrorCode::InvalidLogin,
                "clientId must be 1-64 characters, no control characters",
            ));
        }
        // An empty tag is LeanCloud's way of saying "no tag".
        let tag = login.tag.as_ref().filter(|t| !t.is_empty());
        for (what, v) in [("tag", tag), ("deviceId", login.device_id.as_ref())] {
            if let Some(v) = v
                && !valid_id(v)
            {
                return Err(invalid(
                    ErrorCode::InvalidLogin,
                    &format!("{what} must be 1-64 characters, no control characters"),
                ));
            }
        }
        if self.mode == Mode::Open {
            return Ok(());
        }
        if login.app_id != self.creds.app_id {
            return Err(invalid(ErrorCode::AppNotAvailable, "unknown app id"));
        }
        if login.timestamp.abs_diff(now_secs) > self.window_secs {
            return Err(invalid(
                ErrorCode::SignatureFailed,
                "timestamp outside the signature window",
            ));
        }
        let sig = hex::decode(&login.signature)
            .map_err(|_| invalid(ErrorCode::SignatureFailed, "signature is not hex"))?;
        login_mac(
            &self.creds.master_key,
            &login.app_id,
            &login.client_id,
            login.timestamp,
            &login.nonce,
        )
        .verify_slice(&sig)
        .map_err(|_| invalid(ErrorCode::SignatureFailed, "bad signature"))?;
        if login.nonce.is_empty() || login.nonce.len() > 128 {
            return Err(invalid(
                ErrorCode::SignatureFailed,
                "nonce must be 1-128 bytes",
            ));
        }
        let expires = login.timestamp.saturating_add(self.window_secs);
        if !self.remember(&login.nonce, expires, now_secs) {
            return Err(invalid(ErrorCode::SignatureFailed, "nonce already used"));
        }
        Ok(())
    }

    /// Records `key` as used until `expires` (seconds); false when it
    /// already was. Logins and conversation operations share the table.
    fn remember(&self, key: &str, expires: u64, now_secs: u64) -> bool {
        let (fresh, expired) = {
            let mut nonces = self.nonces.lock();
            let expired = nonces.expire(now_secs);
            (nonces.insert(key, expires), expired)
        };
        // Outside the lock: sled's own locking is enough. A store that
        // refuses writes (disk low, failed) leaves the nonce in memory only.
        if let Some(store) = &self.store {
            for (at, nonce) in &expired {
                let _ = store.nonce_remove(nonce, *at);
            }
            if fresh && let Err(e) = store.nonce_put(key, expires) {
                tracing::debug!(error = %e, "nonce not persisted");
            }
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::SyncMode;

    fn login(creds: &Credentials, ts: u64, nonce: &str) -> Login {
        Login {
            app_id: creds.app_id.clone(),
            client_id: "Tom".into(),
            tag: None,
            device_id: None,
            reconnect: false,
            timestamp: ts,
            nonce: nonce.into(),
            signature: creds.sign_login("Tom", ts, nonce),
            sync: SyncMode::Push,
            device_token: None,
        }
    }

    #[test]
    fn signature_matches_leancloud_format() {
        // HMAC-SHA1("masterkey", "app:Tom::1700000000:abc"), computed independently with openssl.
        assert_eq!(
            sign_login("masterkey", "app", "Tom", 1_700_000_000, "abc"),
            "64798e782757e27838de831602e71a2fb4205d10"
        );
    }

    #[test]
    fn accepts_once_then_rejects_replay_and_skew() {
        let creds = Credentials {
            app_id: "app".into(),
            master_key: "k".repeat(32),
            app_key: "a".repeat(24),
        };
        let auth = Authenticator::new(Mode::Signature, creds.clone(), 300);
        let l = login(&creds, 1000, "n1");
        assert!(auth.check(&l, 1000).is_ok());
        assert_eq!(auth.check(&l, 1000).unwrap_err().code, 4102);
        assert_eq!(
            auth.check(&login(&creds, 1000, "n2"), 2000)
                .unwrap_err()
                .code,
            4102
        );
        // Expired nonces leave the table as time passes, cheapest first.
        auth.check(&login(&creds, 1100, "n4"), 1100).unwrap();
        assert_eq!(auth.nonces.lock().by_nonce.len(), 2);
        auth.check(&login(&creds, 1350, "n5"), 1350).unwrap();
        let n = auth.nonces.lock();
        assert_eq!(n.by_nonce.len(), 2, "n1 expired at 1300");
        assert_eq!(n.by_expiry.len(), 2);
        drop(n);
        let mut bad = login(&creds, 1000, "n3");
        bad.signature = "00".repeat(20);
        assert_eq!(auth.check(&bad, 1000).unwrap_err().code, 4102);
    }

    #[test]
    fn app_key_is_generated_added_to_old_files_and_overridable() {
        let dir = tempfile::tempdir().unwrap();
        // A file from before app keys: kept, and given one.
        let path = dir.path().join(CREDENTIALS_FILE);
        std::fs::write(&path, r#"{"app_id":"old","master_key":"0123456789abcdef"}"#).unwrap();
        let c = Credentials::load_or_create(dir.path(), None, None).unwrap();
        assert_eq!(
            (c.app_id.as_str(), c.master_key.as_str()),
            ("old", "0123456789abcdef")
        );
        assert_eq!(c.app_key().len(), 24);
        assert_eq!(Credentials::load(dir.path()).unwrap(), c);
        // Stable across starts; the configured key wins without touching the file.
        let again = Credentials::load_or_create_all(dir.path(), None, None, None).unwrap();
        assert_eq!(again.app_key, c.app_key);
        let set = Credentials::load_or_create_all(dir.path(), None, None, Some("mine")).unwrap();
        assert_eq!(set.app_key, "mine");
        assert_eq!(Credentials::load(dir.path()).unwrap().app_key, c.app_key);
        // Everything configured: no file at all.
        let empty = tempfile::tempdir().unwrap();
        let all =
            Credentials::load_or_create_all(empty.path(), Some("a"), Some("m"), Some("k")).unwrap();
        assert_eq!(all.app_key, "k");
        assert!(!empty.path().join(CREDENTIALS_FILE).exists());
        assert!(
            !format!("{c:?}").contains(&c.app_key),
            "Debug hides the key"
        );
    }
}
