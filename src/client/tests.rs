//! The client library's own unit tests (the fake-server ones are in
//! `fake_server_tests.rs`).

use super::*;

#[test]
fn error_codes() {
    let body = ErrorBody::new(crate::protocol::ErrorCode::ConvNotFound, "x");
    assert_eq!(ClientError::Server(body).code(), Some(4303));
    let closed = ClientError::Closed {
        code: Some(4111),
        reason: "SESSION_CONFLICT".into(),
    };
    assert_eq!(closed.code(), Some(4111));
    assert_eq!(
        closed.to_string(),
        "connection closed (4111): SESSION_CONFLICT"
    );
    assert_eq!(ClientError::Timeout.code(), None);
}

#[test]
fn options_defaults() {
    let o = ClientOptions::new(
        ([127, 0, 0, 1], 1).into(),
        ServerTrust::Pin([0; 32]),
        "app",
        Signer::Unsigned,
        "Tom",
    );
    assert!(o.auto_ack);
    assert_eq!(o.ping_interval, Duration::from_secs(20));
    assert_eq!(o.request_timeout, Duration::from_secs(30));
    assert_eq!(o.sync, SyncMode::Push);
}
