//! How a client proves the app server vouches for it: the login signature,
//! and the conversation-operation signatures `auth.conversation_signatures`
//! asks for.

use std::fmt;

use crate::auth::ConvOp;
use crate::protocol::OpSignature;

/// How a login is signed, and whether conversation operations are too.
#[derive(Clone)]
pub enum Signer {
    /// Sign locally with the app's master key (trusted tools, tests, bench).
    MasterKey(String),
    /// An empty signature, for servers in `open` auth mode.
    Unsigned,
    /// A signature an app server made for this exact login; usable once,
    /// because the server remembers nonces.
    Precomputed {
        timestamp: u64,
        nonce: String,
        signature: String,
    },
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signer::MasterKey(_) => f.write_str("MasterKey(<secret>)"),
            Signer::Unsigned => f.write_str("Unsigned"),
            Signer::Precomputed { timestamp, .. } => {
                write!(f, "Precomputed {{ timestamp: {timestamp}, .. }}")
            }
        }
    }
}

impl Signer {
    /// `(timestamp, nonce, signature)` for a login by `client_id` now.
    pub(super) fn sign(&self, app_id: &str, client_id: &str) -> (u64, String, String) {
        match self {
            Signer::MasterKey(key) => {
                let ts = crate::util::now_secs();
                let nonce = crate::auth::random_nonce();
                let sig = crate::auth::sign_login(key, app_id, client_id, ts, &nonce);
                (ts, nonce, sig)
            }
            Signer::Unsigned => (
                crate::util::now_secs(),
                crate::auth::random_nonce(),
                String::new(),
            ),
            Signer::Precomputed {
                timestamp,
                nonce,
                signature,
            } => (*timestamp, nonce.clone(), signature.clone()),
        }
    }

    /// A conversation-operation signature for `op`, when this signer can
    /// make one: only a master key can (an app server signs for the others,
    /// passed with the `*_signed` methods).
    pub fn sign_conversation(&self, app_id: &str, op: &ConvOp<'_>) -> Option<OpSignature> {
        match self {
            Signer::MasterKey(key) => {
                let timestamp = crate::util::now_secs();
                let nonce = crate::auth::random_nonce();
                let signature = crate::auth::sign_conversation(key, app_id, op, timestamp, &nonce);
                Some(OpSignature {
                    timestamp,
                    nonce,
                    signature,
                })
            }
            Signer::Unsigned | Signer::Precomputed { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ConvAction;

    #[test]
    fn signer_matches_auth_and_hides_the_key() {
        let (ts, nonce, sig) = Signer::MasterKey("k".into()).sign("app", "Tom");
        assert_eq!(sig, crate::auth::sign_login("k", "app", "Tom", ts, &nonce));
        assert_eq!(Signer::Unsigned.sign("app", "Tom").2, "");
        assert!(!format!("{:?}", Signer::MasterKey("hunter2".into())).contains("hunter2"));
    }

    #[test]
    fn only_the_master_key_signs_conversation_operations() {
        let members = vec!["Jerry".to_owned()];
        let op = ConvOp {
            client_id: "Tom",
            conv: None,
            members: &members,
            action: ConvAction::Create,
        };
        let sig = Signer::MasterKey("k".into())
            .sign_conversation("app", &op)
            .expect("signed");
        let want = crate::auth::sign_conversation("k", "app", &op, sig.timestamp, &sig.nonce);
        assert_eq!(sig.signature, want);
        assert_eq!(Signer::Unsigned.sign_conversation("app", &op), None);
    }
}
