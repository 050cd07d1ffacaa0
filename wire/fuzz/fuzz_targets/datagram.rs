//! Fuzz target: one UDP datagram through `decode_datagram` (and `split_datagram`), as the agent
//! receives it from a caller.
//!
//! The input is tried twice: as the datagram itself (so the header checks see arbitrary
//! headers), and as a message id (first byte, 0..=9) and a body behind a header that tells the
//! truth about its length (so every run reaches the protobuf decoder). Beyond "never panics", it
//! checks that the datagram errors follow the framing rules of docs/PROTOCOL.md ("Frames") and
//! that a datagram that decodes re-encodes to one that decodes to the same message.

#![no_main]

use lars_wire::WireError;
use lars_wire::datagram::{decode_datagram, encode_datagram, split_datagram};
use lars_wire::frame::{HEADER_LEN, MAX_FRAME_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_datagram(data);
    if let Some((&msgid, body)) = data.split_first() {
        let body = &body[..body.len().min(MAX_FRAME_LEN - HEADER_LEN)];
        let mut datagram = Vec::with_capacity(HEADER_LEN + body.len());
        datagram.extend_from_slice(&i32::from(msgid % 10).to_le_bytes());
        datagram.extend_from_slice(&(body.len() as i32).to_le_bytes());
        datagram.extend_from_slice(body);
        check_datagram(&datagram);
    }
});

fn check_datagram(datagram: &[u8]) {
    let split = split_datagram(datagram);
    match decode_datagram(datagram) {
        Ok(msg) => {
            let (msgid, body) = split.expect("a datagram that decodes splits");
            assert_eq!(msgid, msg.msg_id().as_i32());
            assert_eq!(HEADER_LEN + body.len(), datagram.len());
            let mut buf = vec![0u8; MAX_FRAME_LEN];
            let len = encode_datagram(&msg, &mut buf).expect("a decoded message encodes");
            assert_eq!(decode_datagram(&buf[..len]).as_ref(), Ok(&msg));
        }
        Err(WireError::ShortDatagram { len }) => {
            assert_eq!(len, datagram.len());
            assert!(len < HEADER_LEN);
        }
        Err(WireError::NegativeLength { len }) => assert!(len < 0),
        Err(WireError::FrameTooLong { len }) => assert!(len as usize > MAX_FRAME_LEN - HEADER_LEN),
        Err(WireError::LengthMismatch { declared, actual }) => {
            assert_eq!(actual, datagram.len());
            assert_ne!(declared as usize + HEADER_LEN, actual);
        }
        Err(WireError::UnknownMsgId(id)) => assert!(!(1..=8).contains(&id)),
        Err(WireError::BadBody { msgid, .. }) => assert!((1..=8).contains(&msgid)),
        Err(other) => panic!("decode_datagram gave {other:?}"),
    }
}
