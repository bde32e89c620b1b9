//! LeanCloud's conversation-operation signatures: with them on, only what
//! the app server signed may create a conversation or change who is in one,
//! since otherwise any logged-in client can join a conversation by its id
//! and read its history (LeanCloud's behaviour with the switch off).
//!
//! The signed strings are LeanCloud's (docs `realtime-guide-senior`,
//! "签名格式说明"; leanengine-nodejs-demos `functions/rtm-signature.js`):
//!
//! - create: `appid:clientid:sorted_member_ids:timestamp:nonce`;
//! - the rest: `appid:clientid:convid:sorted_member_ids:timestamp:nonce:action`,
//!   action `invite` (add, join), `kick` (remove, quit),
//!   `conversation-block-clients` or `conversation-unblock-clients`.
//!
//! The member ids are the list the client sent, sorted ascending and joined
//! by `:`; the SDKs pass their factories that same list (JS and Java include
//! the creator in a create's list, Swift sends and signs an empty one for a
//! chat room), so checking what was sent fits every SDK. The timestamp is
//! hashed as the digits that were sent, in seconds (LeanCloud's own sample)
//! or milliseconds (its docs).

use super::{Authenticator, Credentials, invalid};
use crate::protocol::{ErrorBody, ErrorCode, OpSignature};

/// LeanCloud's validity for an operation signature: six hours.
pub const DEFAULT_WINDOW_SECS: u64 = 6 * 3600;

/// Timestamps above this are milliseconds (10^12 ms is 2001; 10^12 s is
/// the year 33658).
const MS_ABOVE: u64 = 1_000_000_000_000;

/// What a signature allows, and the word that ends the signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvAction {
    Create,
    /// Add members, or join (the caller alone).
    Invite,
    /// Remove members, or quit (the caller alone).
    Kick,
    BlockClients,
    UnblockClients,
}

impl ConvAction {
    /// The action word at the end of the message; a create has none.
    pub fn word(self) -> Option<&'static str> {
        match self {
            ConvAction::Create => None,
            ConvAction::Invite => Some("invite"),
            ConvAction::Kick => Some("kick"),
            ConvAction::BlockClients => Some("conversation-block-clients"),
            ConvAction::UnblockClients => Some("conversation-unblock-clients"),
        }
    }

    fn is_blacklist(self) -> bool {
        matches!(self, ConvAction::BlockClients | ConvAction::UnblockClients)
    }
}

/// One conversation operation as the client asked for it.
#[derive(Debug, Clone, Copy)]
pub struct ConvOp<'a> {
    /// The caller.
    pub client_id: &'a str,
    /// The conversation id as the client sent it; `None` for a create.
    pub conv: Option<&'a str>,
    /// The member ids as the client sent them: sorted here, not deduplicated.
    pub members: &'a [String],
    pub action: ConvAction,
}

impl ConvOp<'_> {
    /// Quitting: a `kick` of the caller alone. The Java SDK sends its quit
    /// unsigned (`LCConversationHolder.quit`), so LeanCloud cannot have
    /// required a signature for it; JS and Swift sign it, and a signature
    /// that is sent is still checked.
    pub fn is_quit(&self) -> bool {
        self.action == ConvAction::Kick && matches!(self.members, [m] if m == self.client_id)
    }
}

/// Which operations must be signed and for how long a signature lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSignaturePolicy {
    /// `auth.conversation_signatures`: create, add, remove, join, quit.
    pub conversations: bool,
    /// `auth.blacklist_signatures`: block and unblock clients.
    pub blacklist: bool,
    /// `auth.conversation_signature_window_secs`.
    pub window_secs: u64,
}

impl Default for ConvSignaturePolicy {
    /// LeanCloud's dashboard defaults: nothing signed.
    fn default() -> Self {
        ConvSignaturePolicy {
            conversations: false,
            blacklist: false,
            window_secs: DEFAULT_WINDOW_SECS,
        }
    }
}

/// The message LeanCloud signs for `op`.
pub fn conversation_message(app_id: &str, op: &ConvOp<'_>, timestamp: u64, nonce: &str) -> String {
    let mut ids: Vec<&str> = op.members.iter().map(String::as_str).collect();
    ids.sort_unstable();
    let members = ids.join(":");
    let client = op.client_id;
    match op.action.word() {
        None => format!("{app_id}:{client}:{members}:{timestamp}:{nonce}"),
        Some(action) => {
            let conv = op.conv.unwrap_or_default();
            format!("{app_id}:{client}:{conv}:{members}:{timestamp}:{nonce}:{action}")
        }
    }
}

fn mac(master_key: &str, message: &str) -> hmac::Hmac<sha1::Sha1> {
    use hmac::Mac;
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(master_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    mac.update(message.as_bytes());
    mac
}

/// `hex(HMAC-SHA1(master_key, conversation_message(..)))`, as an app
/// server's conversation signature factory makes it.
pub fn sign_conversation(
    master_key: &str,
    app_id: &str,
    op: &ConvOp<'_>,
    timestamp: u64,
    nonce: &str,
) -> String {
    use hmac::Mac;
    let message = conversation_message(app_id, op, timestamp, nonce);
    hex::encode(mac(master_key, &message).finalize().into_bytes())
}

impl Credentials {
    /// A signature for `op` now (timestamp in seconds, a fresh nonce).
    pub fn sign_conversation_now(&self, op: &ConvOp<'_>) -> OpSignature {
        let timestamp = crate::util::now_secs();
        let nonce = super::random_nonce();
        let signature = sign_conversation(&self.master_key, &self.app_id, op, timestamp, &nonce);
        OpSignature {
            timestamp,
            nonce,
            signature,
        }
    }
}

fn failed(detail: &str) -> ErrorBody {
    invalid(ErrorCode::ConvSignatureFailed, detail)
}

impl Authenticator {
    /// Turns on the conversation and blacklist signature checks.
    pub fn with_conversation_signatures(mut self, policy: ConvSignaturePolicy) -> Self {
        self.conv_policy = policy;
        self
    }

    pub fn conversation_policy(&self) -> ConvSignaturePolicy {
        self.conv_policy
    }

    /// Whether `action` must carry a signature under the configured switches.
    pub fn conversation_signature_required(&self, action: ConvAction) -> bool {
        if action.is_blacklist() {
            self.conv_policy.blacklist
        } else {
            self.conv_policy.conversations
        }
    }

    /// Checks `op`'s signature when its switch is on: 4302
    /// CONVERSATION_SIGNATURE_FAILED when it is missing (a quit excepted),
    /// outside the window, not LeanCloud's HMAC of the operation, or already
    /// used. With the switch off a signature is not looked at, as on
    /// LeanCloud. The admin API never comes here: the master key is its
    /// signature.
    pub fn check_conversation_op(
        &self,
        op: &ConvOp<'_>,
        sig: Option<&OpSignature>,
        now_ms: u64,
    ) -> Result<(), ErrorBody> {
        if !self.conversation_signature_required(op.action) {
            return Ok(());
        }
        let Some(sig) = sig else {
            if op.is_quit() {
                return Ok(());
            }
            return Err(failed("this operation must be signed"));
        };
        let window_secs = self.conv_policy.window_secs;
        let at_ms = if sig.timestamp > MS_ABOVE {
            sig.timestamp
        } else {
            sig.timestamp.saturating_mul(1000)
        };
        if at_ms.abs_diff(now_ms) > window_secs.saturating_mul(1000) {
            return Err(failed("timestamp outside the signature window"));
        }
        if sig.nonce.is_empty() || sig.nonce.len() > 128 {
            return Err(failed("nonce must be 1-128 bytes"));
        }
        let raw = hex::decode(&sig.signature).map_err(|_| failed("signature is not hex"))?;
        let message = conversation_message(&self.creds.app_id, op, sig.timestamp, &sig.nonce);
        {
            use hmac::Mac;
            mac(&self.creds.master_key, &message)
                .verify_slice(&raw)
                .map_err(|_| failed("bad signature"))?;
        }
        // Remembered by the signature itself (lowercased, so a change of
        // case is the same signature): a replay is refused, while two
        // different operations that happen to share a short nonce (the
        // sample signer makes 5-digit ones) are not.
        let key = format!("op:{}", hex::encode(&raw));
        let expires = at_ms / 1000 + window_secs;
        if !self.remember(&key, expires, now_ms / 1000) {
            return Err(failed("signature already used"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Mode;

    fn creds() -> Credentials {
        Credentials {
            app_id: "app".into(),
            master_key: "masterkey".into(),
            app_key: "appkey".into(),
        }
    }

    fn auth(conversations: bool) -> Authenticator {
        Authenticator::new(Mode::Signature, creds(), 300).with_conversation_signatures(
            ConvSignaturePolicy {
                conversations,
                blacklist: true,
                window_secs: DEFAULT_WINDOW_SECS,
            },
        )
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn signed(op: &ConvOp<'_>, ts: u64, nonce: &str) -> OpSignature {
        OpSignature {
            timestamp: ts,
            nonce: nonce.into(),
            signature: sign_conversation("masterkey", "app", op, ts, nonce),
        }
    }

    #[test]
    fn messages_are_leancloud_strings() {
        let members = ids(&["Tom", "Jerry", "Alice"]);
        let mut op = ConvOp {
            client_id: "Tom",
            conv: None,
            members: &members,
            action: ConvAction::Create,
        };
        assert_eq!(
            conversation_message("app", &op, 1_700_000_000, "n1"),
            "app:Tom:Alice:Jerry:Tom:1700000000:n1"
        );
        op.conv = Some("5f0c");
        op.action = ConvAction::Invite;
        assert_eq!(
            conversation_message("app", &op, 1_700_000_000_000, "n1"),
            "app:Tom:5f0c:Alice:Jerry:Tom:1700000000000:n1:invite"
        );
        op.action = ConvAction::UnblockClients;
        op.members = &[];
        assert_eq!(
            conversation_message("app", &op, 5, "n"),
            "app:Tom:5f0c::5:n:conversation-unblock-clients"
        );
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        // printf 'app:Tom:Jerry:Tom:1700000000:abc' | openssl dgst -sha1 -hmac masterkey
        let members = ids(&["Tom", "Jerry"]);
        let op = ConvOp {
            client_id: "Tom",
            conv: None,
            members: &members,
            action: ConvAction::Create,
        };
        assert_eq!(
            sign_conversation("masterkey", "app", &op, 1_700_000_000, "abc"),
            "1f85e30de8da82bccbd55632502ff57695430e9c"
        );
    }

    #[test]
    fn off_lets_anything_through_and_on_checks_everything() {
        let members = ids(&["Jerry"]);
        let op = ConvOp {
            client_id: "Tom",
            conv: Some("c1"),
            members: &members,
            action: ConvAction::Invite,
        };
        let now = 1_700_000_000_000;
        let mut bad = signed(&op, now / 1000, "n0");
        bad.signature = "00".repeat(20);
        assert!(auth(false).check_conversation_op(&op, None, now).is_ok());
        assert!(
            auth(false)
                .check_conversation_op(&op, Some(&bad), now)
                .is_ok()
        );

        let a = auth(true);
        let code = |r: Result<(), ErrorBody>| r.unwrap_err().code;
        assert_eq!(code(a.check_conversation_op(&op, None, now)), 4302);
        assert_eq!(code(a.check_conversation_op(&op, Some(&bad), now)), 4302);
        // Seconds and milliseconds both pass, once each.
        let s = signed(&op, now / 1000, "n1");
        a.check_conversation_op(&op, Some(&s), now).unwrap();
        assert_eq!(code(a.check_conversation_op(&op, Some(&s), now)), 4302);
        let mut upper = s.clone();
        upper.signature = upper.signature.to_uppercase();
        assert_eq!(code(a.check_conversation_op(&op, Some(&upper), now)), 4302);
        let ms = signed(&op, now - 5_000, "n1");
        a.check_conversation_op(&op, Some(&ms), now).unwrap();
        // Six hours either way, not a second more.
        let edge = signed(&op, now / 1000 - DEFAULT_WINDOW_SECS, "n2");
        a.check_conversation_op(&op, Some(&edge), now).unwrap();
        let stale = signed(&op, now / 1000 - DEFAULT_WINDOW_SECS - 1, "n3");
        assert_eq!(code(a.check_conversation_op(&op, Some(&stale), now)), 4302);
        let future = signed(&op, now + DEFAULT_WINDOW_SECS * 1000 + 1, "n3");
        assert_eq!(code(a.check_conversation_op(&op, Some(&future), now)), 4302);
        // Signed for other members, another conversation or another action.
        let other = ids(&["Mallory"]);
        let wrong = ConvOp {
            members: &other,
            ..op
        };
        let s = signed(&op, now / 1000, "n4");
        assert_eq!(code(a.check_conversation_op(&wrong, Some(&s), now)), 4302);
        let kick = ConvOp {
            action: ConvAction::Kick,
            ..op
        };
        assert_eq!(code(a.check_conversation_op(&kick, Some(&s), now)), 4302);
        let elsewhere = ConvOp {
            conv: Some("c2"),
            ..op
        };
        assert_eq!(
            code(a.check_conversation_op(&elsewhere, Some(&s), now)),
            4302
        );
        a.check_conversation_op(&op, Some(&s), now).unwrap();
    }

    #[test]
    fn member_order_does_not_matter_but_the_list_does() {
        let a = auth(true);
        let now = 1_700_000_000_000;
        let sent = ids(&["b", "a", "Tom"]);
        let op = ConvOp {
            client_id: "Tom",
            conv: None,
            members: &sent,
            action: ConvAction::Create,
        };
        let sorted = ids(&["Tom", "a", "b"]);
        let signer_view = ConvOp {
            members: &sorted,
            ..op
        };
        let s = signed(&signer_view, now / 1000, "x");
        a.check_conversation_op(&op, Some(&s), now).unwrap();
        // Without the creator it is another list.
        let others = ids(&["a", "b"]);
        let without = ConvOp {
            members: &others,
            ..op
        };
        let s = signed(&op, now / 1000, "y");
        assert_eq!(
            a.check_conversation_op(&without, Some(&s), now)
                .unwrap_err()
                .code,
            4302
        );
    }

    #[test]
    fn quitting_unsigned_is_allowed_kicking_others_is_not() {
        let a = auth(true);
        let me = ids(&["Tom"]);
        let quit = ConvOp {
            client_id: "Tom",
            conv: Some("c1"),
            members: &me,
            action: ConvAction::Kick,
        };
        a.check_conversation_op(&quit, None, 1).unwrap();
        let join = ConvOp {
            action: ConvAction::Invite,
            ..quit
        };
        assert_eq!(
            a.check_conversation_op(&join, None, 1).unwrap_err().code,
            4302
        );
        let them = ids(&["Tom", "Jerry"]);
        let kick = ConvOp {
            members: &them,
            ..quit
        };
        assert_eq!(
            a.check_conversation_op(&kick, None, 1).unwrap_err().code,
            4302
        );
    }

    #[test]
    fn blacklist_has_its_own_switch() {
        let a = Authenticator::new(Mode::Signature, creds(), 300).with_conversation_signatures(
            ConvSignaturePolicy {
                conversations: true,
                blacklist: false,
                window_secs: 60,
            },
        );
        let m = ids(&["x"]);
        let op = ConvOp {
            client_id: "Tom",
            conv: Some("c"),
            members: &m,
            action: ConvAction::BlockClients,
        };
        a.check_conversation_op(&op, None, 1).unwrap();
        assert!(!a.conversation_signature_required(ConvAction::UnblockClients));
        assert!(a.conversation_signature_required(ConvAction::Create));
        let b = auth(false);
        assert_eq!(
            b.check_conversation_op(&op, None, 1).unwrap_err().code,
            4302
        );
    }
}
