//! The only place that touches bincode (RUSTSEC-2025-0141: unmaintained).
//! Swapping the format means changing this file and nothing else.

use serde::{Serialize, de::DeserializeOwned};

/// Hard ceiling on what one decode may claim, whatever a frame's length says:
/// a garbage length field inside a frame can never make us allocate more.
pub const DECODE_LIMIT: usize = 16 * 1024 * 1024;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_LIMIT>,
>;

const CONFIG: Config = bincode::config::standard().with_limit::<DECODE_LIMIT>();

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(String),
    #[error("decode: {0}")]
    Decode(String),
    #[error("decode: {0} trailing bytes")]
    Trailing(usize),
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64);
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, out, CONFIG)
        .map(|_| ())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes exactly one value that must fill `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice::<T, _>(bytes, CONFIG)
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientFrame, Command, ConvId};

    #[test]
    fn round_trip() {
        let f = ClientFrame::Request {
            id: 7,
            cmd: Command::Read {
                conv: ConvId([1; 12]),
                seq: Some(3),
            },
        };
        let bytes = encode(&f).unwrap();
        assert_eq!(decode::<ClientFrame>(&bytes).unwrap(), f);
    }

    /// Pins the byte layout that docs/PROTOCOL.md describes.
    #[test]
    fn wire_layout_matches_the_protocol_doc() {
        let f = ClientFrame::Request {
            id: 300,
            cmd: Command::Read {
                conv: ConvId([0xAA; 12]),
                seq: Some(5),
            },
        };
        let mut want = vec![0u8, 251, 0x2C, 0x01, 14];
        want.extend_from_slice(&[0xAA; 12]);
        want.extend_from_slice(&[1, 5]);
        assert_eq!(encode(&f).unwrap(), want);
        assert_eq!(encode(&ClientFrame::Ping).unwrap(), vec![2]);
    }

    #[test]
    fn rejects_trailing_and_truncated() {
        let mut bytes = encode(&ClientFrame::Ping).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<ClientFrame>(&bytes),
            Err(CodecError::Trailing(1))
        ));
        assert!(decode::<ClientFrame>(&[]).is_err());
    }

    #[test]
    fn huge_claimed_length_is_an_error_not_an_allocation() {
        // Variant 1 (Ack) followed by a varint length of u64::MAX.
        let bytes = [1u8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(decode::<ClientFrame>(&bytes).is_err());
    }
}
