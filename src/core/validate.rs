//! The checks a request passes before anything is looked up or changed:
//! one copy of each, so a client's send, an edit, the app's send and a
//! broadcast refuse the same input with the same code and words. Limits
//! that come from the config are passed in; nothing here reads it.

use serde_json::{Map, Value};

use crate::auth::valid_id;
use crate::protocol::{Content, ErrorBody, ErrorCode};

/// Longest conversation name, client-created or system, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Longest client-chosen send token, in bytes.
pub const MAX_TOKEN_LEN: usize = 64;

/// Shorthand for the refusals below and their callers'.
pub fn err(code: ErrorCode, detail: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, detail)
}

/// 4109 when `content` is over `max` bytes (`limits.max_content_bytes`).
/// `what` names it in the answer: "content" for a client's message,
/// "message" for the app's sends and broadcasts, as they always said.
pub fn content_size(content: &Content, max: usize, what: &str) -> Result<(), ErrorBody> {
    if content.len() > max {
        return Err(err(
            ErrorCode::FrameTooLong,
            format!(
                "{what} of {} bytes over limits.max_content_bytes ({max})",
                content.len()
            ),
        ));
    }
    Ok(())
}

/// 4401 on the first mention that is not a client id.
pub fn mentions(list: &[String]) -> Result<(), ErrorBody> {
    match list.iter().find(|id| !valid_id(id)) {
        Some(bad) => Err(err(
            ErrorCode::InvalidMessagingTarget,
            format!("invalid mention {bad:?}"),
        )),
        None => Ok(()),
    }
}

/// 4401 unless `push_data` is absent or a JSON object: push services are
/// handed it as one.
pub fn push_data(push_data: &Option<String>) -> Result<(), ErrorBody> {
    if let Some(p) = push_data {
        serde_json::from_str::<Map<String, Value>>(p).map_err(|e| {
            err(
                ErrorCode::InvalidMessagingTarget,
                format!("pushData must be a JSON object: {e}"),
            )
        })?;
    }
    Ok(())
}

/// 4401 unless a send token is absent or 1 to [`MAX_TOKEN_LEN`] bytes: it
/// is a store key.
pub fn token(token: &Option<String>) -> Result<(), ErrorBody> {
    if token
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.len() > MAX_TOKEN_LEN)
    {
        return Err(err(
            ErrorCode::InvalidMessagingTarget,
            "token must be 1-64 bytes",
        ));
    }
    Ok(())
}

/// 4401 when the app names a sender that no client could be.
pub fn from_client(from: &str) -> Result<(), ErrorBody> {
    if valid_id(from) {
        Ok(())
    } else {
        Err(err(
            ErrorCode::InvalidMessagingTarget,
            format!("invalid from_client {from:?}"),
        ))
    }
}

/// 4301 on the first id that is not a client id: members, subscribers.
pub fn client_ids<S: AsRef<str>>(ids: &[S]) -> Result<(), ErrorBody> {
    match ids.iter().map(AsRef::as_ref).find(|m| !valid_id(m)) {
        Some(bad) => Err(err(
            ErrorCode::ConvApiFailed,
            format!("invalid client id {bad:?}: 1-64 characters, no control characters"),
        )),
        None => Ok(()),
    }
}

/// 4301 unless a conversation's `attr` is absent or a JSON object: hooks
/// and the admin API read it as one.
pub fn attr(attr: &Option<String>) -> Result<(), ErrorBody> {
    if let Some(a) = attr {
        serde_json::from_str::<Map<String, Value>>(a).map_err(|e| {
            err(
                ErrorCode::ConvApiFailed,
                format!("attr must be a JSON object: {e}"),
            )
        })?;
    }
    Ok(())
}

/// 4301 when a conversation name is over [`MAX_NAME_LEN`] bytes.
pub fn name(name: &Option<String>) -> Result<(), ErrorBody> {
    match name {
        Some(n) if n.len() > MAX_NAME_LEN => Err(err(
            ErrorCode::ConvApiFailed,
            format!("name over {MAX_NAME_LEN} bytes"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<(), ErrorBody>) -> u16 {
        r.expect_err("refused").code
    }

    #[test]
    fn content_size_allows_the_limit_and_refuses_one_byte_more() {
        let at = Content::Text("x".repeat(10));
        let over = Content::Binary(vec![0; 11]);
        assert!(content_size(&at, 10, "content").is_ok());
        let e = content_size(&over, 10, "content").unwrap_err();
        assert_eq!(e.code, 4109);
        assert_eq!(
            e.detail,
            "content of 11 bytes over limits.max_content_bytes (10)"
        );
        let e = content_size(&over, 10, "message").unwrap_err();
        assert_eq!(
            e.detail,
            "message of 11 bytes over limits.max_content_bytes (10)"
        );
    }

    #[test]
    fn names_up_to_the_limit_pass() {
        assert!(name(&None).is_ok());
        assert!(name(&Some("n".repeat(MAX_NAME_LEN))).is_ok());
        let e = name(&Some("n".repeat(MAX_NAME_LEN + 1))).unwrap_err();
        assert_eq!(e.code, 4301);
        assert_eq!(e.detail, "name over 256 bytes");
    }

    #[test]
    fn attr_and_push_data_must_be_json_objects() {
        assert!(attr(&None).is_ok());
        assert!(attr(&Some(r#"{"a":1}"#.into())).is_ok());
        assert_eq!(code(attr(&Some("[1]".into()))), 4301);
        assert_eq!(code(attr(&Some("not json".into()))), 4301);
        assert!(push_data(&None).is_ok());
        assert!(push_data(&Some("{}".into())).is_ok());
        let e = push_data(&Some("1".into())).unwrap_err();
        assert_eq!(e.code, 4401);
        assert!(e.detail.starts_with("pushData must be a JSON object: "));
    }

    #[test]
    fn tokens_are_one_to_sixty_four_bytes() {
        assert!(token(&None).is_ok());
        assert!(token(&Some("t".into())).is_ok());
        assert!(token(&Some("t".repeat(MAX_TOKEN_LEN))).is_ok());
        assert_eq!(code(token(&Some(String::new()))), 4401);
        assert_eq!(code(token(&Some("t".repeat(MAX_TOKEN_LEN + 1)))), 4401);
    }

    #[test]
    fn ids_are_checked_with_the_login_rule() {
        let ok = "x".repeat(64);
        let long = "x".repeat(65);
        assert!(client_ids(&[ok.clone(), "Tom".into()]).is_ok());
        let e = client_ids(&["Tom", long.as_str()]).unwrap_err();
        assert_eq!(e.code, 4301);
        assert!(e.detail.starts_with(&format!("invalid client id {long:?}")));
        assert_eq!(code(client_ids(&["a\nb"])), 4301);
        assert!(mentions(std::slice::from_ref(&ok)).is_ok());
        let e = mentions(&[String::new()]).unwrap_err();
        assert_eq!((e.code, e.detail.as_str()), (4401, "invalid mention \"\""));
        assert!(from_client(&ok).is_ok());
        let e = from_client(&long).unwrap_err();
        assert_eq!(e.code, 4401);
        assert_eq!(e.detail, format!("invalid from_client {long:?}"));
    }
}
