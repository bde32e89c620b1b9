//! The QUIC door's bytes: bincode values ([`codec`], the only user of
//! bincode) in length-prefixed frames ([`frame`]). Pure: no sockets, so the
//! same encoding serves the server, the client library and the tests.

pub mod codec;
pub mod frame;
