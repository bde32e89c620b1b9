//! Reading [`crate::wire::frame`]s off a QUIC receive stream.

use serde::de::DeserializeOwned;

use crate::wire::frame::{FrameDecoder, FrameError};

/// Why a stream stopped giving frames: its bytes ([`FrameError`]) or QUIC.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("stream read: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("stream write: {0}")]
    Write(#[from] quinn::WriteError),
}

/// Reads frames off a QUIC receive stream.
pub struct FrameReader {
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl FrameReader {
    pub fn new(recv: quinn::RecvStream, max: usize) -> Self {
        FrameReader {
            recv,
            decoder: FrameDecoder::new(max),
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream. Cancel-safe: a
    /// partial frame stays buffered if the future is dropped.
    pub async fn read<T: DeserializeOwned>(&mut self) -> Result<Option<T>, StreamError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            match self.recv.read_chunk(64 * 1024, true).await? {
                Some(chunk) => self.decoder.extend(&chunk.bytes),
                None if self.decoder.buffered() == 0 => return Ok(None),
                None => return Err(FrameError::Truncated.into()),
            }
        }
    }
}
