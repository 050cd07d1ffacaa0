//! UDP framing (API ↔ agent): exactly one frame per datagram, and `8 + msglen` must equal the
//! datagram's length. Anything else is an error the agent drops and counts. Pure functions over
//! byte slices; the caller owns the socket and the buffers.

use crate::error::WireError;
use crate::frame::{FrameHeader, HEADER_LEN};
use crate::msg::Message;

/// Checks a datagram's header against its length and returns `(msgid, body)`; the msgid is not
/// checked (the caller may count unknown ids separately).
pub fn split_datagram(datagram: &[u8]) -> Result<(i32, &[u8]), WireError> {
    let Some((head, body)) = datagram.split_first_chunk::<HEADER_LEN>() else {
        return Err(WireError::ShortDatagram {
            len: datagram.len(),
        });
    };
    let header = FrameHeader::parse(*head);
    let declared = header.body_len()?;
    if declared != body.len() {
        return Err(WireError::LengthMismatch {
            declared: header.msglen,
            actual: datagram.len(),
        });
    }
    Ok((header.msgid, body))
}

/// Decodes one datagram into a message.
pub fn decode_datagram(datagram: &[u8]) -> Result<Message, WireError> {
    let (msgid, body) = split_datagram(datagram)?;
    Message::decode(msgid, body)
}

/// Encodes one message as a datagram into the front of `buf`; returns the datagram's length.
pub fn encode_datagram(msg: &Message, buf: &mut [u8]) -> Result<usize, WireError> {
    msg.encode_into(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::GetHostRequest;

    #[test]
    fn datagram_round_trips() {
        let msg = Message::GetHostRequest(GetHostRequest {
            seq: 9,
            modid: 1,
            cmdid: 2,
        });
        let mut buf = [0u8; 64];
        let len = encode_datagram(&msg, &mut buf).unwrap();
        assert_eq!(decode_datagram(&buf[..len]).unwrap(), msg);
    }

    #[test]
    fn datagram_with_trailing_byte_is_a_length_mismatch() {
        let msg = Message::GetHostRequest(GetHostRequest {
            seq: 9,
            modid: 1,
            cmdid: 2,
        });
        let mut buf = [0u8; 64];
        let len = encode_datagram(&msg, &mut buf).unwrap();
        assert_eq!(
            decode_datagram(&buf[..len + 1]),
            Err(WireError::LengthMismatch {
                declared: (len - HEADER_LEN) as i32,
                actual: len + 1
            })
        );
    }

    #[test]
    fn seven_bytes_is_short() {
        assert_eq!(
            split_datagram(&[0; 7]),
            Err(WireError::ShortDatagram { len: 7 })
        );
    }
}
