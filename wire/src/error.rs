//! The one error type of the wire crate: everything that can be wrong with bytes that came from
//! a peer, or with a message too large to send. Each variant names what was wrong, and none
//! allocates: malformed input is dropped at line rate, and its error must cost nothing.

use crate::frame::MAX_BODY_LEN;

/// What was wrong with a frame, a datagram or a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The header's `msglen` is negative.
    #[error("frame header declares a negative body length ({len})")]
    NegativeLength {
        /// The declared length.
        len: i32,
    },
    /// The header's `msglen` is larger than the protocol allows.
    #[error("frame header declares a body of {len} bytes, more than the limit of {MAX_BODY_LEN}")]
    FrameTooLong {
        /// The declared length.
        len: i32,
    },
    /// A datagram shorter than the 8-byte header.
    #[error("datagram of {len} bytes is shorter than the 8-byte header")]
    ShortDatagram {
        /// The datagram's length.
        len: usize,
    },
    /// A datagram whose length is not `8 + msglen`.
    #[error("datagram of {actual} bytes does not match its header (8 + msglen {declared})")]
    LengthMismatch {
        /// The header's `msglen`.
        declared: i32,
        /// The datagram's length.
        actual: usize,
    },
    /// A message id outside 1..=8.
    #[error("unknown message id {0}")]
    UnknownMsgId(i32),
    /// A return code outside 0..=3.
    #[error("unknown return code {0}")]
    UnknownRetCode(i32),
    /// A body that is not a valid protobuf encoding of the message its id names.
    ///
    /// The agent drops and counts such datagrams at line rate, so the reason is a fixed text:
    /// building this error allocates nothing.
    #[error("body of message id {msgid} does not decode: {reason}")]
    BadBody {
        /// The frame's message id.
        msgid: i32,
        /// What is wrong with it (the structural check's finding, or the protobuf decoder's
        /// error kind).
        reason: &'static str,
    },
    /// A message whose encoding does not fit in one frame (or in the buffer given).
    #[error("message of {len} bytes does not fit (room for {room})")]
    BodyTooLong {
        /// The encoded length (header included).
        len: usize,
        /// The room there was.
        room: usize,
    },
}
