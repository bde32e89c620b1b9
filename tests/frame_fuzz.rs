//! Property tests of the frame decoder: arbitrary bytes, split arbitrarily,
//! never panic, never allocate past the limit, and valid frames round-trip.

use proptest::prelude::*;
use tidings::protocol::{ClientFrame, Command, Content, ConvId, SendMessage, ServerFrame};
use tidings::wire::frame::{self, FrameDecoder, FrameError};

const MAX: usize = 4096;

/// Feeds `bytes` in chunks of the given sizes and drains frames; returns
/// the frames decoded before the first error (if any) and that error.
fn drain<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    chunks: &[usize],
) -> (Vec<T>, Option<FrameError>) {
    let mut d = FrameDecoder::new(MAX);
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        d.extend(&rest[..n]);
        rest = &rest[n..];
        loop {
            match d.next_frame::<T>() {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        assert!(
            d.buffered() <= MAX + frame::HEADER_LEN + n,
            "buffer grew past one frame"
        );
    }
    (out, None)
}

fn send_frame() -> impl Strategy<Value = ClientFrame> {
    (
        any::<u64>(),
        any::<[u8; 12]>(),
        ".{0,200}",
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
        proptest::collection::vec("[a-zA-Z0-9]{1,10}", 0..5),
        proptest::option::of("[a-z]{1,20}"),
    )
        .prop_map(|(id, conv, text, bin, binary, mentions, token)| {
            let mut m = SendMessage::text(ConvId(conv), text);
            if binary {
                m.content = Content::Binary(bin);
            }
            m.mention_list = mentions;
            m.token = token;
            ClientFrame::Request {
                id,
                cmd: Command::Send(m),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..8192),
        chunks in proptest::collection::vec(1usize..512, 1..8),
    ) {
        let _ = drain::<ClientFrame>(&bytes, &chunks);
        let _ = drain::<ServerFrame>(&bytes, &chunks);
    }

    #[test]
    fn arbitrary_bodies_with_valid_headers_never_panic(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..6),
    ) {
        let mut bytes = Vec::new();
        for b in &bodies {
            bytes.extend_from_slice(&(b.len() as u32).to_be_bytes());
            bytes.extend_from_slice(b);
        }
        let (frames, err) = drain::<ClientFrame>(&bytes, &[7, 64, 1000]);
        // Each body either decodes or stops the stream with an unparseable error.
        prop_assert!(frames.len() == bodies.len() || matches!(err, Some(FrameError::Unparseable(_))));
    }

    #[test]
    fn valid_frames_round_trip_through_any_split(
        frames in proptest::collection::vec(send_frame(), 1..10),
        chunks in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let mut bytes = Vec::new();
        for f in &frames {
            bytes.extend_from_slice(&frame::encode(f).unwrap());
        }
        let (got, err) = drain::<ClientFrame>(&bytes, &chunks);
        prop_assert!(err.is_none(), "{err:?}");
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn oversized_header_is_rejected_before_the_body(len in (MAX as u32 + 1)..u32::MAX) {
        let mut d = FrameDecoder::new(MAX);
        d.extend(&len.to_be_bytes());
        let is_too_long = matches!(d.next_body(), Err(FrameError::TooLong { .. }));
        prop_assert!(is_too_long);
    }
}
