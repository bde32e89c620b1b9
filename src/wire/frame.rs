//! Length-prefixed frames: a 4-byte big-endian length, then that many bytes of
//! [`super::codec`] encoding. The length is checked against the limit before
//! any byte of the body is buffered or decoded.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use super::codec::{self, CodecError};
use crate::protocol::{ErrorBody, Event, Reply, ServerFrame};

pub const HEADER_LEN: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("undecodable frame: {0}")]
    Unparseable(#[from] CodecError),
    #[error("stream ended inside a frame")]
    Truncated,
}

/// Encodes `value` as one complete frame (header included).
pub fn encode<T: Serialize>(value: &T) -> Result<Bytes, CodecError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0; HEADER_LEN]);
    codec::encode_into(value, &mut out)?;
    let len = (out.len() - HEADER_LEN) as u32;
    out[..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(Bytes::from(out))
}

/// Sans-IO frame splitter: feed bytes in, take whole frame bodies out.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max: usize,
}

impl FrameDecoder {
    pub fn new(max: usize) -> Self {
        // Allocated on first use: an idle connection holds no buffer.
        FrameDecoder {
            buf: BytesMut::new(),
            max,
        }
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.put_slice(bytes);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame body, `Ok(None)` if more bytes are needed.
    pub fn next_body(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > self.max {
            return Err(FrameError::TooLong { len, max: self.max });
        }
        if self.buf.len() < HEADER_LEN + len {
            self.buf.reserve(HEADER_LEN + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// The next whole frame, decoded.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        match self.next_body()? {
            Some(body) => Ok(Some(codec::decode(&body)?)),
            None => Ok(None),
        }
    }
}

/// Encodes an event as a stream frame. Encoding our own types cannot fail
/// short of a bug, which is logged rather than taking the server down.
pub fn event(ev: Event) -> Option<Bytes> {
    logged(&ServerFrame::Event(ev), "an event")
}

/// Encodes the answer to request `id`; `None` (logged) only on a bug.
pub fn response(id: u64, result: Result<Reply, ErrorBody>) -> Option<Bytes> {
    logged(&ServerFrame::Response { id, result }, "a response")
}

fn logged(f: &ServerFrame, what: &str) -> Option<Bytes> {
    match encode(f) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!(error = %e, "encoding {what} failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ClientFrame;

    #[test]
    fn splits_frames_fed_byte_by_byte() {
        let a = encode(&ClientFrame::Ping).unwrap();
        let b = encode(&ClientFrame::Ack { acks: vec![] }).unwrap();
        let mut d = FrameDecoder::new(1024);
        let mut got = Vec::new();
        for byte in a.iter().chain(b.iter()) {
            d.extend(&[*byte]);
            while let Some(f) = d.next_frame::<ClientFrame>().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![ClientFrame::Ping, ClientFrame::Ack { acks: vec![] }]
        );
    }

    #[test]
    fn header_is_big_endian_length() {
        let f = encode(&ClientFrame::Ping).unwrap();
        assert_eq!(&f[..4], &[0, 0, 0, (f.len() - 4) as u8]);
    }

    #[test]
    fn too_long_is_rejected_from_the_header_alone() {
        let mut d = FrameDecoder::new(100);
        d.extend(&101u32.to_be_bytes());
        assert!(matches!(
            d.next_body(),
            Err(FrameError::TooLong { len: 101, max: 100 })
        ));
    }
}
