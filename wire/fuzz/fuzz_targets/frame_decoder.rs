//! Fuzz target: a TCP byte stream through one `FrameDecoder`, read in chunks whose size (1..=256
//! bytes) is the input's first byte plus one, with every frame it yields decoded by
//! `Message::decode`.
//!
//! Beyond "never panics", it checks what the decoder promises: a header whose `msglen` is
//! negative or over the limit is a typed error that consumes nothing and reserves no memory,
//! no frame body is over the limit, and a body that decodes re-encodes to a frame that decodes
//! to the same message.

#![no_main]

use bytes::BytesMut;
use lars_wire::frame::MAX_BODY_LEN;
use lars_wire::{FrameDecoder, Message, WireError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk) + 1;
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    for read in stream.chunks(chunk) {
        buf.extend_from_slice(read);
        loop {
            let (len, capacity) = (buf.len(), buf.capacity());
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.body.len() <= MAX_BODY_LEN);
                    check_decode(frame.msgid, &frame.body);
                }
                Ok(None) => break,
                Err(WireError::NegativeLength { .. } | WireError::FrameTooLong { .. }) => {
                    assert_eq!(buf.len(), len, "a bad header consumed bytes");
                    assert_eq!(buf.capacity(), capacity, "a bad header reserved memory");
                    return;
                }
                Err(other) => panic!("FrameDecoder gave a non-framing error: {other:?}"),
            }
        }
    }
});

/// Decodes one body; what decodes must survive a re-encode and decode unchanged.
fn check_decode(msgid: i32, body: &[u8]) {
    if let Ok(msg) = Message::decode(msgid, body) {
        let mut frame = BytesMut::new();
        msg.encode_frame(&mut frame)
            .expect("a decoded body fits in a frame again");
        let again = FrameDecoder::new()
            .decode(&mut frame)
            .expect("a frame we encoded decodes")
            .expect("a frame we encoded is whole");
        assert_eq!(again.decode().as_ref(), Ok(&msg));
    }
}
