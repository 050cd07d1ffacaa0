//! Golden byte vectors for every message of the Lars protocol, written out by hand from the
//! protobuf encoding rules, so that a change of protobuf runtime, generator or framing code that
//! moves a single byte fails here rather than against a C++ Lars peer.
//!
//! The rules the vectors follow:
//! - header: `msgid: i32 LE` then `msglen: i32 LE` (body length only);
//! - body: each field is `tag = field_number << 3 | wire_type` (0 = varint, 2 = length-delimited)
//!   followed by its value, in field-number order;
//! - `int32`/`uint32`/`bool` are varints, 7 bits per byte, least significant group first, high
//!   bit set on every byte but the last; a negative `int32` is sign-extended to 64 bits first, so
//!   it always takes 10 bytes;
//! - a nested message is its length (varint) and its bytes; a repeated one repeats tag + length +
//!   bytes per entry;
//! - proto3 writes no field that holds its default (0, false, empty list), but a nested message
//!   that is present is written even when all its fields are defaults (tag + length 0).
//!
//! Every vector is checked both ways: encoding the value (as a TCP frame through
//! `Message::encode_frame` and as a datagram through `encode_datagram`) gives exactly the bytes,
//! and decoding the bytes (through `FrameDecoder` and through `decode_datagram`) gives the value.

use bytes::BytesMut;
use lars_wire::datagram::{decode_datagram, encode_datagram, split_datagram};
use lars_wire::frame::{FrameHeader, HEADER_LEN, MAX_FRAME_LEN};
use lars_wire::ip::ip_to_wire;
use lars_wire::messages::{
    GetHostRequest, GetHostResponse, GetRouteRequest, GetRouteResponse, HostCallResult, HostInfo,
    ReportRequest, ReportStatusRequest,
};
use lars_wire::{FrameDecoder, Message, MsgId, WireError};
use std::net::Ipv4Addr;

/// 192.168.1.10 = 0xC0A8010A: negative as an `int32`, a 10-byte varint on the wire.
fn ip_192_168_1_10() -> i32 {
    ip_to_wire(Ipv4Addr::new(192, 168, 1, 10))
}

/// 127.0.0.1 = 0x7F000001: the largest kind of positive address, a 5-byte varint.
fn ip_127_0_0_1() -> i32 {
    ip_to_wire(Ipv4Addr::new(127, 0, 0, 1))
}

/// 10.0.0.1 = 0x0A000001: a 4-byte varint.
fn ip_10_0_0_1() -> i32 {
    ip_to_wire(Ipv4Addr::new(10, 0, 0, 1))
}

/// Checks `golden` against `msg` in all four directions and pins the header on the way.
fn check_golden(msg: &Message, golden: &[u8]) {
    // The header names the message and counts the body only.
    let (head, body) = golden.split_at(HEADER_LEN);
    let header = FrameHeader::parse(head.try_into().unwrap());
    assert_eq!(header.msgid, msg.msg_id().as_i32(), "msgid in the header");
    assert_eq!(header.msglen as usize, body.len(), "msglen in the header");

    // Encode as a TCP frame: appended after whatever the buffer already holds.
    let mut frame = BytesMut::new();
    msg.encode_frame(&mut frame).unwrap();
    assert_eq!(&frame[..], golden, "Message::encode_frame");
    let mut appended = BytesMut::from(&b"xyz"[..]);
    msg.encode_frame(&mut appended).unwrap();
    assert_eq!(&appended[..3], b"xyz", "encode_frame keeps what was there");
    assert_eq!(&appended[3..], golden, "encode_frame appends the frame");

    // Encode as a datagram: into a full-size buffer and into one of exactly the frame's size.
    let mut datagram = vec![0u8; MAX_FRAME_LEN];
    let len = encode_datagram(msg, &mut datagram).unwrap();
    assert_eq!(&datagram[..len], golden, "encode_datagram");
    let mut exact = vec![0u8; golden.len()];
    assert_eq!(encode_datagram(msg, &mut exact).unwrap(), golden.len());
    assert_eq!(
        &exact[..],
        golden,
        "encode_datagram into an exact-size buffer"
    );

    // Decode from a TCP stream: one frame, nothing left over.
    let mut stream = BytesMut::from(golden);
    let mut decoder = FrameDecoder::new();
    let raw = decoder.decode(&mut stream).unwrap().expect("a whole frame");
    assert_eq!(raw.msgid, msg.msg_id().as_i32());
    assert_eq!(&raw.body[..], body);
    assert_eq!(
        &raw.decode().unwrap(),
        msg,
        "FrameDecoder + RawFrame::decode"
    );
    assert!(stream.is_empty());
    assert_eq!(decoder.decode(&mut stream).unwrap(), None);

    // Decode from a datagram.
    assert_eq!(
        split_datagram(golden).unwrap(),
        (msg.msg_id().as_i32(), body)
    );
    assert_eq!(&decode_datagram(golden).unwrap(), msg, "decode_datagram");
}

#[test]
#[rustfmt::skip]
fn get_route_request_with_a_two_byte_varint() {
    let msg = Message::GetRouteRequest(GetRouteRequest { modid: 10001, cmdid: 1 });
    let golden = [
        0x01, 0x00, 0x00, 0x00, // msgid 1, GetRouteRequest
        0x05, 0x00, 0x00, 0x00, // msglen 5
        0x08, 0x91, 0x4E,       // field 1 (modid), varint: 10001 = 0x11 | 78 << 7
        0x10, 0x01,             // field 2 (cmdid), varint: 1
    ];
    check_golden(&msg, &golden);
}

#[test]
#[rustfmt::skip]
fn get_route_response_with_two_hosts_one_of_them_a_negative_ip() {
    let msg = Message::GetRouteResponse(GetRouteResponse {
        modid: 1,
        cmdid: 2,
        host: vec![
            HostInfo { ip: ip_192_168_1_10(), port: 8080 },
            HostInfo { ip: ip_127_0_0_1(), port: 80 },
        ],
        removed: false,
    });
    let golden = [
        0x02, 0x00, 0x00, 0x00, // msgid 2, GetRouteResponse
        0x1E, 0x00, 0x00, 0x00, // msglen 30
        0x08, 0x01,             // field 1 (modid), varint: 1
        0x10, 0x02,             // field 2 (cmdid), varint: 2
        0x1A, 0x0E,             // field 3 (host), length-delimited, 14 bytes:
        0x08,                   //   field 1 (ip), varint, 192.168.1.10 = 0xC0A8010A as i32,
        0x8A, 0x82, 0xA0, 0x85, //   sign-extended to 0xFFFFFFFF_C0A8010A: 10 bytes
        0xFC, 0xFF, 0xFF, 0xFF,
        0xFF, 0x01,
        0x10, 0x90, 0x3F,       //   field 2 (port), varint: 8080 = 0x10 | 63 << 7
        0x1A, 0x08,             // field 3 (host), length-delimited, 8 bytes:
        0x08,                   //   field 1 (ip), varint, 127.0.0.1 = 0x7F000001: 5 bytes
        0x81, 0x80, 0x80, 0xF8, 0x07,
        0x10, 0x50,             //   field 2 (port), varint: 80
    ];
    check_golden(&msg, &golden);
}

#[test]
#[rustfmt::skip]
fn get_route_response_of_a_removed_route_carries_field_4_and_older_peers_read_it_as_false() {
    // lars-rs' dns marks an empty host list an operator's route edit accounts for.
    let msg = Message::GetRouteResponse(GetRouteResponse {
        modid: 1,
        cmdid: 2,
        host: vec![],
        removed: true,
    });
    let golden = [
        0x02, 0x00, 0x00, 0x00, // msgid 2, GetRouteResponse
        0x06, 0x00, 0x00, 0x00, // msglen 6
        0x08, 0x01,             // field 1 (modid), varint: 1
        0x10, 0x02,             // field 2 (cmdid), varint: 2
        0x20, 0x01,             // field 4 (removed), varint: 1 (true)
    ];
    check_golden(&msg, &golden);
    // A C++ dns never writes field 4: the same route without it is not marked removed.
    let cpp = [
        0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x08, 0x01, 0x10, 0x02,
    ];
    let decoded = lars_wire::FrameDecoder::new()
        .decode(&mut BytesMut::from(&cpp[..]))
        .unwrap()
        .unwrap()
        .decode()
        .unwrap();
    assert_eq!(
        decoded,
        Message::GetRouteResponse(GetRouteResponse { modid: 1, cmdid: 2, host: vec![], removed: false })
    );
}

#[test]
#[rustfmt::skip]
fn report_status_request_with_overload_true_succ_u32_max_and_defaults_omitted() {
    let msg = Message::ReportStatusRequest(ReportStatusRequest {
        modid: 1,
        cmdid: 2,
        caller: ip_192_168_1_10(),
        results: vec![
            HostCallResult { ip: ip_10_0_0_1(), port: 9000, succ: 180, err: 5, overload: true },
            // err 0 and overload false are defaults: not on the wire.
            HostCallResult { ip: ip_127_0_0_1(), port: 80, succ: u32::MAX, err: 0, overload: false },
        ],
        ts: 1_700_000_000,
    });
    let golden = [
        0x03, 0x00, 0x00, 0x00, // msgid 3, ReportStatusRequest
        0x36, 0x00, 0x00, 0x00, // msglen 54
        0x08, 0x01,             // field 1 (modid), varint: 1
        0x10, 0x02,             // field 2 (cmdid), varint: 2
        0x18,                   // field 3 (caller), varint, 192.168.1.10 (negative): 10 bytes
        0x8A, 0x82, 0xA0, 0x85, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
        0x22, 0x0F,             // field 4 (results), length-delimited, 15 bytes:
        0x08,                   //   field 1 (ip), varint, 10.0.0.1 = 0x0A000001: 4 bytes
        0x81, 0x80, 0x80, 0x50,
        0x10, 0xA8, 0x46,       //   field 2 (port), varint: 9000 = 0x28 | 70 << 7
        0x18, 0xB4, 0x01,       //   field 3 (succ), varint: 180 = 0x34 | 1 << 7
        0x20, 0x05,             //   field 4 (err), varint: 5
        0x28, 0x01,             //   field 5 (overload), varint: true
        0x22, 0x0E,             // field 4 (results), length-delimited, 14 bytes:
        0x08,                   //   field 1 (ip), varint, 127.0.0.1: 5 bytes
        0x81, 0x80, 0x80, 0xF8, 0x07,
        0x10, 0x50,             //   field 2 (port), varint: 80
        0x18,                   //   field 3 (succ), varint, u32::MAX: 5 bytes
        0xFF, 0xFF, 0xFF, 0xFF, 0x0F,
                                //   (err 0 and overload false omitted)
        0x28,                   // field 5 (ts), varint, 1_700_000_000 = 0x6553F100: 5 bytes
        0x80, 0xE2, 0xCF, 0xAA, 0x06,
    ];
    check_golden(&msg, &golden);
}

#[test]
#[rustfmt::skip]
fn get_host_request_with_seq_u32_max() {
    let msg = Message::GetHostRequest(GetHostRequest { seq: u32::MAX, modid: 1, cmdid: 2 });
    let golden = [
        0x04, 0x00, 0x00, 0x00, // msgid 4, GetHostRequest
        0x0A, 0x00, 0x00, 0x00, // msglen 10
        0x08,                   // field 1 (seq), varint, u32::MAX: 5 bytes (not sign-extended)
        0xFF, 0xFF, 0xFF, 0xFF, 0x0F,
        0x10, 0x01,             // field 2 (modid), varint: 1
        0x18, 0x02,             // field 3 (cmdid), varint: 2
    ];
    check_golden(&msg, &golden);
}

#[test]
#[rustfmt::skip]
fn get_host_response_succ_omits_retcode_and_carries_the_host() {
    let msg = Message::GetHostResponse(GetHostResponse {
        seq: 42,
        modid: 1,
        cmdid: 2,
        retcode: 0,
        host: Some(HostInfo { ip: ip_192_168_1_10(), port: 8080 }),
    });
    let golden = [
        0x05, 0x00, 0x00, 0x00, // msgid 5, GetHostResponse
        0x16, 0x00, 0x00, 0x00, // msglen 22
        0x08, 0x2A,             // field 1 (seq), varint: 42
        0x10, 0x01,             // field 2 (modid), varint: 1
        0x18, 0x02,             // field 3 (cmdid), varint: 2
                                // (field 4, retcode 0 = SUCC, omitted)
        0x2A, 0x0E,             // field 5 (host), length-delimited, 14 bytes:
        0x08,                   //   field 1 (ip), varint, 192.168.1.10: 10 bytes
        0x8A, 0x82, 0xA0, 0x85, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
        0x10, 0x90, 0x3F,       //   field 2 (port), varint: 8080
    ];
    check_golden(&msg, &golden);
}

#[test]
#[rustfmt::skip]
fn get_host_response_with_a_present_all_default_host_writes_tag_and_length_zero() {
    // `Some(HostInfo::default())` is a present message with nothing in it: its tag and a zero
    // length are on the wire, and decoding gives `Some` back (not `None`).
    let msg = Message::GetHostResponse(GetHostResponse {
        seq: 43,
        modid: 1,
        cmdid: 2,
        retcode: 1,
        host: Some(HostInfo { ip: 0, port: 0 }),
    });
    let golden = [
        0x05, 0x00, 0x00, 0x00, // msgid 5, GetHostResponse
        0x0A, 0x00, 0x00, 0x00, // msglen 10
        0x08, 0x2B,             // field 1 (seq), varint: 43
        0x10, 0x01,             // field 2 (modid), varint: 1
        0x18, 0x02,             // field 3 (cmdid), varint: 2
        0x20, 0x01,             // field 4 (retcode), varint: 1 = OVERLOAD
        0x2A, 0x00,             // field 5 (host), length-delimited, 0 bytes
    ];
    check_golden(&msg, &golden);
}

#[test]
#[rustfmt::skip]
fn get_host_response_without_a_host_has_no_host_field() {
    let msg = Message::GetHostResponse(GetHostResponse {
        seq: 1,
        modid: 5,
        cmdid: 6,
        retcode: 3,
        host: None,
    });
    let golden = [
        0x05, 0x00, 0x00, 0x00, // msgid 5, GetHostResponse
        0x08, 0x00, 0x00, 0x00, // msglen 8
        0x08, 0x01,             // field 1 (seq), varint: 1
        0x10, 0x05,             // field 2 (modid), varint: 5
        0x18, 0x06,             // field 3 (cmdid), varint: 6
        0x20, 0x03,             // field 4 (retcode), varint: 3 = NOEXIST
                                // (field 5, host None, absent)
    ];
    check_golden(&msg, &golden);
}

#[test]
#[rustfmt::skip]
fn report_request_with_a_negative_ip_and_a_failure_retcode() {
    let msg = Message::ReportRequest(ReportRequest {
        modid: 1,
        cmdid: 2,
        host: Some(HostInfo { ip: ip_192_168_1_10(), port: 8080 }),
        retcode: 1,
    });
    let golden = [
        0x06, 0x00, 0x00, 0x00, // msgid 6, ReportRequest
        0x16, 0x00, 0x00, 0x00, // msglen 22
        0x08, 0x01,             // field 1 (modid), varint: 1
        0x10, 0x02,             // field 2 (cmdid), varint: 2
        0x1A, 0x0E,             // field 3 (host), length-delimited, 14 bytes:
        0x08,                   //   field 1 (ip), varint, 192.168.1.10: 10 bytes
        0x8A, 0x82, 0xA0, 0x85, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
        0x10, 0x90, 0x3F,       //   field 2 (port), varint: 8080
        0x20, 0x01,             // field 4 (retcode), varint: 1
    ];
    check_golden(&msg, &golden);
}

#[test]
#[rustfmt::skip]
fn report_request_success_omits_retcode() {
    let msg = Message::ReportRequest(ReportRequest {
        modid: 1,
        cmdid: 2,
        host: Some(HostInfo { ip: ip_10_0_0_1(), port: 9000 }),
        retcode: 0,
    });
    let golden = [
        0x06, 0x00, 0x00, 0x00, // msgid 6, ReportRequest
        0x0E, 0x00, 0x00, 0x00, // msglen 14
        0x08, 0x01,             // field 1 (modid), varint: 1
        0x10, 0x02,             // field 2 (cmdid), varint: 2
        0x1A, 0x08,             // field 3 (host), length-delimited, 8 bytes:
        0x08,                   //   field 1 (ip), varint, 10.0.0.1: 4 bytes
        0x81, 0x80, 0x80, 0x50,
        0x10, 0xA8, 0x46,       //   field 2 (port), varint: 9000
                                // (field 4, retcode 0 = success, omitted)
    ];
    check_golden(&msg, &golden);
}

#[test]
#[rustfmt::skip]
fn api_get_route_request_omits_modid_zero() {
    let msg = Message::ApiGetRouteRequest(GetRouteRequest { modid: 0, cmdid: 3 });
    let golden = [
        0x07, 0x00, 0x00, 0x00, // msgid 7, API_GetRouteRequest (body GetRouteRequest)
        0x02, 0x00, 0x00, 0x00, // msglen 2
                                // (field 1, modid 0, omitted)
        0x10, 0x03,             // field 2 (cmdid), varint: 3
    ];
    check_golden(&msg, &golden);
}

#[test]
#[rustfmt::skip]
fn api_get_route_response_keeps_an_all_default_host_entry() {
    // A repeated entry that is all defaults is still an entry: tag and length 0.
    let msg = Message::ApiGetRouteResponse(GetRouteResponse {
        modid: 7,
        cmdid: 0,
        host: vec![HostInfo { ip: ip_10_0_0_1(), port: 9000 }, HostInfo { ip: 0, port: 0 }],
        removed: false,
    });
    let golden = [
        0x08, 0x00, 0x00, 0x00, // msgid 8, API_GetRouteResponse (body GetRouteResponse)
        0x0E, 0x00, 0x00, 0x00, // msglen 14
        0x08, 0x07,             // field 1 (modid), varint: 7
                                // (field 2, cmdid 0, omitted)
        0x1A, 0x08,             // field 3 (host), length-delimited, 8 bytes:
        0x08,                   //   field 1 (ip), varint, 10.0.0.1: 4 bytes
        0x81, 0x80, 0x80, 0x50,
        0x10, 0xA8, 0x46,       //   field 2 (port), varint: 9000
        0x1A, 0x00,             // field 3 (host), length-delimited, 0 bytes: HostInfo{0, 0}
    ];
    check_golden(&msg, &golden);
}

#[test]
#[rustfmt::skip]
fn negative_modid_and_cmdid_take_ten_bytes_each() {
    let msg = Message::GetRouteRequest(GetRouteRequest { modid: -1, cmdid: i32::MIN });
    let golden = [
        0x01, 0x00, 0x00, 0x00, // msgid 1, GetRouteRequest
        0x16, 0x00, 0x00, 0x00, // msglen 22
        0x08,                   // field 1 (modid), varint, -1 = 0xFFFFFFFF_FFFFFFFF: 10 bytes
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
        0x10,                   // field 2 (cmdid), varint, i32::MIN = 0xFFFFFFFF_80000000
        0x80, 0x80, 0x80, 0x80, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
    ];
    check_golden(&msg, &golden);
}

/// The all-default value of every message kind: no field is on the wire, so msglen is 0.
fn empty_messages() -> [Message; 8] {
    [
        Message::GetRouteRequest(GetRouteRequest::default()),
        Message::GetRouteResponse(GetRouteResponse::default()),
        Message::ReportStatusRequest(ReportStatusRequest::default()),
        Message::GetHostRequest(GetHostRequest::default()),
        Message::GetHostResponse(GetHostResponse::default()),
        Message::ReportRequest(ReportRequest::default()),
        Message::ApiGetRouteRequest(GetRouteRequest::default()),
        Message::ApiGetRouteResponse(GetRouteResponse::default()),
    ]
}

#[test]
fn all_default_messages_are_a_header_with_msglen_zero() {
    for (msg, id) in empty_messages().iter().zip(MsgId::ALL) {
        assert_eq!(msg.msg_id(), id);
        let id = id.as_i32() as u8;
        // msgid (LE), then msglen 0, then no body at all.
        let golden = [id, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
        check_golden(msg, &golden);
    }
}

#[test]
fn all_goldens_back_to_back_on_one_stream_come_out_in_order() {
    // The goldens above, concatenated, as one TCP read.
    let messages: Vec<Message> = empty_messages()
        .into_iter()
        .chain([
            Message::GetHostRequest(GetHostRequest {
                seq: u32::MAX,
                modid: 1,
                cmdid: 2,
            }),
            Message::ApiGetRouteRequest(GetRouteRequest { modid: 0, cmdid: 3 }),
        ])
        .collect();
    let mut stream = BytesMut::new();
    for msg in &messages {
        msg.encode_frame(&mut stream).unwrap();
    }
    let mut decoder = FrameDecoder::new();
    let mut seen = Vec::new();
    while let Some(raw) = decoder.decode(&mut stream).unwrap() {
        seen.push(raw.decode().unwrap());
    }
    assert_eq!(seen, messages);
    assert!(stream.is_empty());
}

#[test]
#[rustfmt::skip]
fn decoding_skips_unknown_fields_and_keeps_the_last_scalar() {
    // What a newer peer (or the C++ Lars with another proto revision) may send: fields this
    // schema does not know are skipped, and a repeated scalar field keeps its last value.
    let bytes = [
        0x01, 0x00, 0x00, 0x00, // msgid 1, GetRouteRequest
        0x0C, 0x00, 0x00, 0x00, // msglen 12
        0x08, 0x05,             // field 1 (modid), varint: 5
        0x48, 0x07,             // field 9 (unknown), varint: 7
        0x52, 0x02, 0xAB, 0xCD, // field 10 (unknown), length-delimited, 2 bytes
        0x10, 0x02,             // field 2 (cmdid), varint: 2
        0x08, 0x06,             // field 1 (modid) again, varint: 6: the last one counts
    ];
    let want = Message::GetRouteRequest(GetRouteRequest { modid: 6, cmdid: 2 });
    assert_eq!(decode_datagram(&bytes).unwrap(), want);
    let mut stream = BytesMut::from(&bytes[..]);
    let raw = FrameDecoder::new().decode(&mut stream).unwrap().unwrap();
    assert_eq!(raw.decode().unwrap(), want);
}

#[test]
fn unknown_msgid_in_a_well_formed_frame_is_a_typed_error() {
    // msgid 12 (the first after the fast path's 9 to 11), msglen 0.
    let frame = [0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
    assert_eq!(decode_datagram(&frame), Err(WireError::UnknownMsgId(12)));
    let mut stream = BytesMut::from(&frame[..]);
    let raw = FrameDecoder::new().decode(&mut stream).unwrap().unwrap();
    assert_eq!(raw.decode(), Err(WireError::UnknownMsgId(12)));
}
