//! One WebSocket message is one `GenericCommand`: binary protobuf for
//! `lc.protobuf2.*`, base64 of the same bytes in a text message for
//! `lc.proto2base64.*` (the JS SDK's `noBinary`). No length prefix: the
//! WebSocket message is the frame.

use axum::extract::ws::{Message, Utf8Bytes};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message as _;

use super::proto::GenericCommand;
use crate::protocol::SyncMode;

/// The subprotocols the door speaks, best first. The version digit picks
/// the offline sync: `.3` unread counts (pull), `.1` messages pushed.
pub const SUBPROTOCOLS: [&str; 4] = [
    "lc.protobuf2.3",
    "lc.proto2base64.3",
    "lc.protobuf2.1",
    "lc.proto2base64.1",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Binary,
    Base64,
}

/// What a socket speaks, from its subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub format: Format,
    pub sync: SyncMode,
}

impl Dialect {
    pub fn of(name: &str) -> Option<Dialect> {
        let (format, version) = match name.strip_prefix("lc.") {
            Some(rest) => rest.rsplit_once('.')?,
            None => return None,
        };
        let format = match format {
            "protobuf2" => Format::Binary,
            "proto2base64" => Format::Base64,
            _ => return None,
        };
        let sync = match version {
            "3" => SyncMode::Pull,
            "1" => SyncMode::Push,
            _ => return None,
        };
        Some(Dialect { format, sync })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("not a LeanCloud command: {0}")]
    Unparseable(String),
    /// A text message on a binary socket or the other way round.
    #[error("{0} message on a {1} socket")]
    WrongKind(&'static str, &'static str),
}

/// Decodes one WebSocket data message (not ping, pong or close).
pub fn decode(msg: &Message, format: Format, max: usize) -> Result<GenericCommand, FrameError> {
    let raw: std::borrow::Cow<'_, [u8]> = match (msg, format) {
        (Message::Binary(b), Format::Binary) => b.as_ref().into(),
        (Message::Text(t), Format::Base64) => {
            // base64 is 4/3 the size: check before decoding.
            if t.len() > max / 3 * 4 + 4 {
                return Err(FrameError::TooLong {
                    len: t.len() / 4 * 3,
                    max,
                });
            }
            STANDARD
                .decode(t.as_str().trim())
                .map_err(|e| FrameError::Unparseable(format!("bad base64: {e}")))?
                .into()
        }
        (Message::Text(_), Format::Binary) => return Err(FrameError::WrongKind("text", "binary")),
        (_, Format::Base64) => return Err(FrameError::WrongKind("binary", "base64 text")),
        (_, Format::Binary) => return Err(FrameError::WrongKind("control", "binary")),
    };
    if raw.len() > max {
        return Err(FrameError::TooLong {
            len: raw.len(),
            max,
        });
    }
    GenericCommand::decode(raw.as_ref()).map_err(|e| FrameError::Unparseable(e.to_string()))
}

/// Encodes one command as the socket's kind of message.
pub fn encode(cmd: &GenericCommand, format: Format) -> Message {
    let bytes = cmd.encode_to_vec();
    match format {
        Format::Binary => Message::Binary(bytes.into()),
        Format::Base64 => Message::Text(Utf8Bytes::from(STANDARD.encode(bytes))),
    }
}

/// The size a message counts for in a connection's backlog.
pub fn len(msg: &Message) -> usize {
    match msg {
        Message::Binary(b) => b.len(),
        Message::Text(t) => t.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::proto::{CommandType, OpType, SessionCommand};

    fn open() -> GenericCommand {
        GenericCommand {
            cmd: Some(CommandType::Session as i32),
            op: Some(OpType::Open as i32),
            app_id: Some("app".into()),
            peer_id: Some("alice".into()),
            i: Some(1),
            session_message: Some(SessionCommand {
                ua: Some("js/5.0.0-rc.8".into()),
                config_bitmap: Some(187),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn subprotocols_pick_format_and_sync() {
        let d = Dialect::of("lc.protobuf2.3").unwrap();
        assert_eq!((d.format, d.sync), (Format::Binary, SyncMode::Pull));
        let d = Dialect::of("lc.proto2base64.3").unwrap();
        assert_eq!((d.format, d.sync), (Format::Base64, SyncMode::Pull));
        let d = Dialect::of("lc.protobuf2.1").unwrap();
        assert_eq!((d.format, d.sync), (Format::Binary, SyncMode::Push));
        for bad in [
            "lc.json.3",
            "lc.protobuf2.2",
            "protobuf2.3",
            "",
            "lc.protobuf2",
        ] {
            assert_eq!(Dialect::of(bad), None, "{bad}");
        }
        assert!(SUBPROTOCOLS.iter().all(|p| Dialect::of(p).is_some()));
    }

    #[test]
    fn both_formats_round_trip() {
        for f in [Format::Binary, Format::Base64] {
            let msg = encode(&open(), f);
            assert_eq!(decode(&msg, f, 5120).unwrap(), open());
        }
    }

    /// Field numbers and enum values are the contract with the SDKs: the
    /// first bytes of a `session/open` are fixed by them.
    #[test]
    fn field_numbers_are_leancloud_s() {
        let cmd = open();
        let bytes = cmd.encode_to_vec();
        // cmd=0 (field 1, varint), op=1 (field 2), appId (field 3) ...
        assert_eq!(&bytes[..6], &[0x08, 0x00, 0x10, 0x01, 0x1a, 0x03]);
        let text = Message::Text(STANDARD.encode(&bytes).into());
        let got = decode(&text, Format::Base64, 5120).unwrap();
        assert_eq!(got.session_message.and_then(|s| s.config_bitmap), Some(187));
    }

    #[test]
    fn refuses_oversized_garbage_and_the_wrong_kind() {
        let big = Message::Binary(vec![0u8; 6000].into());
        assert!(matches!(
            decode(&big, Format::Binary, 5120),
            Err(FrameError::TooLong { .. })
        ));
        let junk = Message::Binary(vec![0xff; 10].into());
        assert!(matches!(
            decode(&junk, Format::Binary, 5120),
            Err(FrameError::Unparseable(_))
        ));
        let text = Message::Text("CAAQAQ==".into());
        assert!(matches!(
            decode(&text, Format::Binary, 5120),
            Err(FrameError::WrongKind(..))
        ));
        let bad64 = Message::Text("%%%".into());
        assert!(matches!(
            decode(&bad64, Format::Base64, 5120),
            Err(FrameError::Unparseable(_))
        ));
    }
}
