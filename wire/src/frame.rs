//! TCP framing: the 8-byte header (`msgid: i32 LE`, `msglen: i32 LE`, body length only), an
//! incremental decoder over [`BytesMut`] that copes with frames split across reads and many
//! frames in one read, and encoders that write header and body into one buffer with no
//! intermediate copy. Owns no socket: callers read into the buffer and write out what it fills.
//!
//! A `msglen` that is negative or larger than [`MAX_BODY_LEN`] is a protocol error; the decoder
//! reports it before reserving any memory, so a hostile peer cannot make it allocate. A valid
//! length is not reserved up front either: the buffer grows by at most [`READ_CHUNK`] at a time
//! as the body arrives, so a peer that announces 64 KiB and sends a few bytes holds a few KiB.

use crate::error::WireError;
use crate::msg::{Message, MsgId};
use bytes::{Bytes, BytesMut};
use quick_protobuf::{BytesWriter, MessageWrite, Writer};

/// Length of the frame header.
pub const HEADER_LEN: usize = 8;
/// Largest frame, header included (the original's 64 KiB message buffer).
pub const MAX_FRAME_LEN: usize = 65535;
/// Largest body a header may declare.
pub const MAX_BODY_LEN: usize = MAX_FRAME_LEN - HEADER_LEN;
/// Most the decoder reserves at once for the rest of a frame still arriving.
pub const READ_CHUNK: usize = 4096;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Which message the body holds (not checked here: see [`MsgId::try_from`]).
    pub msgid: i32,
    /// Body length as declared (not checked here: see [`FrameHeader::body_len`]).
    pub msglen: i32,
}

impl FrameHeader {
    /// Reads a header from its 8 wire bytes.
    pub fn parse(bytes: [u8; HEADER_LEN]) -> FrameHeader {
        let [a, b, c, d, e, f, g, h] = bytes;
        FrameHeader {
            msgid: i32::from_le_bytes([a, b, c, d]),
            msglen: i32::from_le_bytes([e, f, g, h]),
        }
    }

    /// The 8 wire bytes of this header.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        out[..4].copy_from_slice(&self.msgid.to_le_bytes());
        out[4..].copy_from_slice(&self.msglen.to_le_bytes());
        out
    }

    /// The declared body length, checked against the protocol's limits.
    pub fn body_len(self) -> Result<usize, WireError> {
        match usize::try_from(self.msglen) {
            Err(_) => Err(WireError::NegativeLength { len: self.msglen }),
            Ok(len) if len > MAX_BODY_LEN => Err(WireError::FrameTooLong { len: self.msglen }),
            Ok(len) => Ok(len),
        }
    }
}

/// One frame as received: its message id and its body bytes, not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The header's message id, unchecked.
    pub msgid: i32,
    /// The body (shares the receive buffer's memory).
    pub body: Bytes,
}

impl RawFrame {
    /// Decodes the body according to the message id.
    pub fn decode(&self) -> Result<Message, WireError> {
        Message::decode(self.msgid, &self.body)
    }
}

/// Incremental decoder for a TCP byte stream of frames.
///
/// Feed it the connection's read buffer after every read; each call takes at most one complete
/// frame off the front. After an error the stream cannot be resynchronised: close the connection.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    /// Header of the frame whose body has not fully arrived yet.
    pending: Option<(i32, usize)>,
}

impl FrameDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Bytes of the unfinished frame held (its header included) when `buf` is what
    /// [`decode`](Self::decode) left: 0 between frames.
    pub fn partial_len(&self, buf: &BytesMut) -> usize {
        match self.pending {
            Some(_) => HEADER_LEN + buf.len(),
            None => buf.len(),
        }
    }

    /// Takes the next complete frame off the front of `buf`, or `Ok(None)` when more bytes are
    /// needed (in which case `buf` is reserved for up to [`READ_CHUNK`] more of the frame).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RawFrame>, WireError> {
        let (msgid, len) = match self.pending {
            Some(pending) => pending,
            None => {
                let Some(head) = buf.get(..HEADER_LEN) else {
                    return Ok(None);
                };
                let mut bytes = [0; HEADER_LEN];
                bytes.copy_from_slice(head);
                let header = FrameHeader::parse(bytes);
                let len = header.body_len()?;
                bytes::Buf::advance(buf, HEADER_LEN);
                self.pending = Some((header.msgid, len));
                (header.msgid, len)
            }
        };
        if buf.len() < len {
            buf.reserve((len - buf.len()).min(READ_CHUNK));
            return Ok(None);
        }
        self.pending = None;
        Ok(Some(RawFrame {
            msgid,
            body: buf.split_to(len).freeze(),
        }))
    }
}

/// Writes one frame (header and body) into the front of `buf` and returns its length.
///
/// This is the allocation-free path used to answer in place from a fixed receive buffer.
pub fn encode_frame_into<M: MessageWrite>(
    msgid: MsgId,
    msg: &M,
    buf: &mut [u8],
) -> Result<usize, WireError> {
    let body_len = msg.get_size();
    let total = HEADER_LEN + body_len;
    if body_len > MAX_BODY_LEN || total > buf.len() {
        return Err(WireError::BodyTooLong {
            len: total,
            room: buf.len().min(MAX_FRAME_LEN),
        });
    }
    let header = FrameHeader {
        msgid: msgid.as_i32(),
        // Cannot truncate: body_len <= MAX_BODY_LEN was checked above.
        msglen: body_len as i32,
    };
    buf[..HEADER_LEN].copy_from_slice(&header.to_bytes());
    let mut writer = Writer::new(BytesWriter::new(&mut buf[HEADER_LEN..total]));
    msg.write_message(&mut writer)
        .map_err(|_| WireError::BodyTooLong {
            len: total,
            room: buf.len(),
        })?;
    Ok(total)
}

/// Appends the `GetRouteRequest` frame for `(modid, cmdid)` to `dst`: what an agent sends lars-dns
/// to ask for (and subscribe to) a route. At most 30 bytes, so unlike [`encode_frame`] it cannot
/// fail.
pub fn encode_get_route_request(modid: i32, cmdid: i32, dst: &mut BytesMut) {
    let request = crate::messages::GetRouteRequest { modid, cmdid };
    encode_frame(MsgId::GetRouteRequest, &request, dst)
        .expect("a GetRouteRequest is at most 30 bytes, far below the frame limit");
}

/// Appends one frame (header and body) to `dst`, growing it once to the exact frame size.
pub fn encode_frame<M: MessageWrite>(
    msgid: MsgId,
    msg: &M,
    dst: &mut BytesMut,
) -> Result<(), WireError> {
    let total = HEADER_LEN + msg.get_size();
    if total > MAX_FRAME_LEN {
        return Err(WireError::BodyTooLong {
            len: total,
            room: MAX_FRAME_LEN,
        });
    }
    let start = dst.len();
    dst.resize(start + total, 0);
    match encode_frame_into(msgid, msg, &mut dst[start..]) {
        Ok(_) => Ok(()),
        Err(e) => {
            dst.truncate(start);
            Err(e)
        }
    }
}

impl Message {
    /// Appends this message as one frame to `dst`.
    pub fn encode_frame(&self, dst: &mut BytesMut) -> Result<(), WireError> {
        let id = self.msg_id();
        match self {
            Message::GetRouteRequest(m) | Message::ApiGetRouteRequest(m) => {
                encode_frame(id, m, dst)
            }
            Message::GetRouteResponse(m) | Message::ApiGetRouteResponse(m) => {
                encode_frame(id, m, dst)
            }
            Message::ReportStatusRequest(m) => encode_frame(id, m, dst),
            Message::GetHostRequest(m) => encode_frame(id, m, dst),
            Message::GetHostResponse(m) => encode_frame(id, m, dst),
            Message::ReportRequest(m) => encode_frame(id, m, dst),
            Message::RouteViewRequest(m) => encode_frame(id, m, dst),
            Message::RouteViewResponse(m) => encode_frame(id, m, dst),
            Message::ReportBatchRequest(m) => encode_frame(id, m, dst),
        }
    }

    /// Writes this message as one frame into the front of `buf`; returns the frame's length.
    pub fn encode_into(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let id = self.msg_id();
        match self {
            Message::GetRouteRequest(m) | Message::ApiGetRouteRequest(m) => {
                encode_frame_into(id, m, buf)
            }
            Message::GetRouteResponse(m) | Message::ApiGetRouteResponse(m) => {
                encode_frame_into(id, m, buf)
            }
            Message::ReportStatusRequest(m) => encode_frame_into(id, m, buf),
            Message::GetHostRequest(m) => encode_frame_into(id, m, buf),
            Message::GetHostResponse(m) => encode_frame_into(id, m, buf),
            Message::ReportRequest(m) => encode_frame_into(id, m, buf),
            Message::RouteViewRequest(m) => encode_frame_into(id, m, buf),
            Message::RouteViewResponse(m) => encode_frame_into(id, m, buf),
            Message::ReportBatchRequest(m) => encode_frame_into(id, m, buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::GetRouteRequest;

    #[test]
    fn a_get_route_request_is_the_frame_encode_frame_makes_and_at_most_30_bytes() {
        for (modid, cmdid) in [(1, 2), (i32::MIN, -1), (i32::MAX, 0)] {
            let mut direct = BytesMut::new();
            encode_get_route_request(modid, cmdid, &mut direct);
            let mut general = BytesMut::new();
            encode_frame(
                MsgId::GetRouteRequest,
                &GetRouteRequest { modid, cmdid },
                &mut general,
            )
            .unwrap();
            assert_eq!(direct, general);
            assert!(direct.len() <= 30, "{} bytes", direct.len());
        }
    }

    fn header(msgid: i32, msglen: i32) -> Vec<u8> {
        FrameHeader { msgid, msglen }.to_bytes().to_vec()
    }

    #[test]
    fn negative_length_is_an_error_not_an_allocation() {
        let mut buf = BytesMut::from(&header(1, -1)[..]);
        let err = FrameDecoder::new().decode(&mut buf).unwrap_err();
        assert_eq!(err, WireError::NegativeLength { len: -1 });
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn length_of_65536_is_an_error_not_an_allocation() {
        let mut buf = BytesMut::from(&header(1, 65536)[..]);
        let err = FrameDecoder::new().decode(&mut buf).unwrap_err();
        assert_eq!(err, WireError::FrameTooLong { len: 65536 });
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn an_announced_body_is_not_reserved_up_front_but_grows_as_it_arrives() {
        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&header(2, MAX_BODY_LEN as i32));
        buf.extend_from_slice(&[0; 3]);
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() <= 2 * READ_CHUNK, "{}", buf.capacity());
        assert_eq!(decoder.partial_len(&buf), HEADER_LEN + 3);
        let mut sent = 3;
        while sent < MAX_BODY_LEN {
            let n = (MAX_BODY_LEN - sent).min(1000);
            buf.extend_from_slice(&vec![0; n]);
            sent += n;
            if sent < MAX_BODY_LEN {
                assert_eq!(decoder.decode(&mut buf).unwrap(), None);
                assert!(
                    buf.capacity() <= 2 * (sent + READ_CHUNK),
                    "{}",
                    buf.capacity()
                );
            }
        }
        let frame = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.body.len(), MAX_BODY_LEN);
        assert_eq!(decoder.partial_len(&buf), 0);
    }

    #[test]
    fn largest_allowed_body_is_accepted() {
        let mut bytes = header(2, MAX_BODY_LEN as i32);
        bytes.resize(HEADER_LEN + MAX_BODY_LEN, 0);
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = FrameDecoder::new().decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.body.len(), MAX_BODY_LEN);
        assert!(buf.is_empty());
    }

    #[test]
    fn split_and_coalesced_frames_come_out_whole_and_in_order() {
        let mut stream = BytesMut::new();
        for modid in 1..=3 {
            let msg = GetRouteRequest { modid, cmdid: 7 };
            encode_frame(MsgId::GetRouteRequest, &msg, &mut stream).unwrap();
        }
        let bytes = stream.freeze();
        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::new();
        let mut seen = Vec::new();
        for byte in bytes.iter() {
            buf.extend_from_slice(&[*byte]);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                seen.push(frame.decode().unwrap());
            }
        }
        let want: Vec<Message> = (1..=3)
            .map(|modid| Message::GetRouteRequest(GetRouteRequest { modid, cmdid: 7 }))
            .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn encode_into_a_too_small_buffer_is_an_error() {
        let msg = GetRouteRequest { modid: 1, cmdid: 2 };
        let mut buf = [0u8; 9];
        assert!(matches!(
            encode_frame_into(MsgId::GetRouteRequest, &msg, &mut buf),
            Err(WireError::BodyTooLong { len: 12, room: 9 })
        ));
    }
}
