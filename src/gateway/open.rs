//! `session/open` as the engine's Login: a signed login as the SDK sent
//! it, or a reconnect by session token, which the door signs for the
//! client (the token proved who it is).

use super::frame::Dialect;
use super::proto::GenericCommand;
use super::tokens::Tokens;
use crate::auth::Credentials;
use crate::protocol::{ErrorBody, ErrorCode, Login};

/// The Login for a `session/open`, and the tag it is for.
pub(super) fn login(
    cmd: &GenericCommand,
    client: &str,
    dialect: Dialect,
    tokens: &Tokens,
    creds: &Credentials,
    now_ms: u64,
) -> Result<Login, ErrorBody> {
    let s = cmd.session_message.clone().unwrap_or_default();
    let device_token = super::installations::login_device(&s, cmd.installation_id.as_deref());
    let tag = s.tag.filter(|t| !t.is_empty());
    if let Some(st) = s.st.filter(|t| !t.is_empty()) {
        let holder = tokens.redeem(&st, client, now_ms).ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::SessionTokenExpired,
                "session token unknown or expired; log in again",
            )
        })?;
        let timestamp = now_ms / 1000;
        let nonce = crate::auth::random_nonce();
        return Ok(Login {
            app_id: creds.app_id.clone(),
            client_id: client.to_owned(),
            signature: creds.sign_login(client, timestamp, &nonce),
            tag: holder.tag,
            device_id: None,
            reconnect: true,
            timestamp,
            nonce,
            sync: dialect.sync,
            // Bound at the first login; a reconnect keeps it.
            device_token: None,
        });
    }
    Ok(Login {
        app_id: cmd.app_id.clone().unwrap_or_default(),
        client_id: client.to_owned(),
        // The SDKs make a new deviceId per page load or install; the
        // delivery cursor is kept per tag instead (`session::login`).
        device_id: None,
        tag,
        reconnect: s.r == Some(true),
        timestamp: s.t.and_then(|t| u64::try_from(t).ok()).unwrap_or(0),
        nonce: s.n.unwrap_or_default(),
        device_token,
        signature: s.s.unwrap_or_default(),
        sync: dialect.sync,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::frame::Format;
    use crate::gateway::proto::SessionCommand;
    use crate::gateway::tokens::Holder;
    use crate::protocol::SyncMode;

    fn creds() -> Credentials {
        Credentials {
            app_id: "app".into(),
            master_key: "master".into(),
            app_key: "key".into(),
        }
    }

    fn open(s: SessionCommand) -> GenericCommand {
        GenericCommand {
            app_id: Some("app".into()),
            peer_id: Some("alice".into()),
            session_message: Some(s),
            ..Default::default()
        }
    }

    const PULL: Dialect = Dialect {
        format: Format::Binary,
        sync: SyncMode::Pull,
    };

    #[test]
    fn a_signed_open_passes_its_fields_as_sent() {
        let cmd = open(SessionCommand {
            t: Some(1_700_000_000),
            n: Some("nonce".into()),
            s: Some("abc".into()),
            tag: Some("Mobile".into()),
            device_id: Some("uuid".into()),
            r: Some(true),
            ..Default::default()
        });
        let l = login(&cmd, "alice", PULL, &Tokens::new(60), &creds(), 0).unwrap();
        assert_eq!(
            (l.timestamp, l.nonce.as_str(), l.signature.as_str()),
            (1_700_000_000, "nonce", "abc")
        );
        assert_eq!(
            (l.tag.as_deref(), l.device_id, l.reconnect),
            (Some("Mobile"), None, true)
        );
        assert_eq!(l.sync, SyncMode::Pull);
    }

    #[test]
    fn a_token_open_is_signed_for_its_holder_with_the_tag_it_had() {
        let tokens = Tokens::new(60);
        let st = tokens.issue(
            Holder {
                client: "alice".into(),
                tag: Some("Mobile".into()),
            },
            1_000,
        );
        let cmd = open(SessionCommand {
            st: Some(st.clone()),
            r: Some(true),
            ..Default::default()
        });
        let l = login(&cmd, "alice", PULL, &tokens, &creds(), 2_000).unwrap();
        assert_eq!(l.tag.as_deref(), Some("Mobile"));
        assert!(l.reconnect);
        assert_eq!(
            l.signature,
            creds().sign_login("alice", l.timestamp, &l.nonce)
        );
        let e = login(&cmd, "bob", PULL, &tokens, &creds(), 2_000).unwrap_err();
        assert_eq!(e.code, ErrorCode::SessionTokenExpired.code());
        let e = login(&cmd, "alice", PULL, &tokens, &creds(), 70_000).unwrap_err();
        assert_eq!(e.code, 4112);
    }
}
