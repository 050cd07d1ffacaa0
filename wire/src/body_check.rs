//! A strict structural check of protobuf wire data, run before a body reaches quick-protobuf.
//!
//! quick-protobuf 0.8 trusts lengths it reads: a nested message or a skipped field that claims
//! more bytes than its enclosing message holds makes its reader's cursor run past the end, which
//! is an arithmetic overflow panic in debug builds and silently misread data in release builds.
//! This check walks every field once (tags, varints of at most 10 bytes, fixed-width values,
//! length-delimited payloads, and the payloads of the known nested-message fields) and rejects
//! anything that does not lie inside its enclosing message. It reads no values and allocates
//! nothing; a 10-byte request costs a handful of comparisons.

use crate::msg::MsgId;

/// Wire types of the protobuf encoding.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
const FIXED32: u8 = 5;

/// Which fields of a message hold more than scalars: a nested message (whose own fields are
/// scalars, or a packed list of varints in `packed`) in field `nested`.
#[derive(Clone, Copy, Default)]
struct Shape {
    /// The field holding a nested message (`HostInfo`, `HostCallResult`, `ViewHost`,
    /// `HostResults`).
    nested: Option<u32>,
    /// In the nested message, the field holding a packed list of varints (`HostResults.runs`).
    packed_in_nested: Option<u32>,
}

/// The shape of the body of `msgid`.
fn shape_of(msgid: MsgId) -> Shape {
    let nested = match msgid {
        MsgId::GetRouteResponse | MsgId::ApiGetRouteResponse => Some(3),
        MsgId::ReportStatusRequest => Some(4),
        MsgId::GetHostResponse => Some(5),
        MsgId::ReportRequest => Some(3),
        MsgId::RouteViewResponse => Some(8),
        MsgId::ReportBatchRequest => Some(4),
        MsgId::GetRouteRequest
        | MsgId::ApiGetRouteRequest
        | MsgId::GetHostRequest
        | MsgId::RouteViewRequest => None,
    };
    let packed_in_nested = (msgid == MsgId::ReportBatchRequest).then_some(3);
    Shape {
        nested,
        packed_in_nested,
    }
}

/// Checks the body of a message with id `msgid`; the error says what is wrong.
pub(crate) fn check_body(msgid: MsgId, body: &[u8]) -> Result<(), &'static str> {
    let shape = shape_of(msgid);
    check_message(body, shape.nested, shape.packed_in_nested, None)
}

/// Checks one message: its `nested` field's payloads as messages (with `inner_packed` as their
/// packed field), and its `packed` field's payloads as whole varints.
fn check_message(
    mut rest: &[u8],
    nested: Option<u32>,
    inner_packed: Option<u32>,
    packed: Option<u32>,
) -> Result<(), &'static str> {
    while !rest.is_empty() {
        let tag = read_varint(&mut rest).ok_or("truncated or overlong field tag")?;
        let field = tag >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err("invalid field number");
        }
        match (tag & 7) as u8 {
            VARINT => {
                read_varint(&mut rest).ok_or("truncated or overlong varint")?;
            }
            FIXED64 => rest = rest.get(8..).ok_or("truncated 64-bit field")?,
            FIXED32 => rest = rest.get(4..).ok_or("truncated 32-bit field")?,
            LENGTH_DELIMITED => {
                let len = read_varint(&mut rest).ok_or("truncated or overlong length")?;
                let len = usize::try_from(len).map_err(|_| "length too large")?;
                if len > rest.len() {
                    return Err("length-delimited field runs past the end of its message");
                }
                let (payload, after) = rest.split_at(len);
                if nested == Some(field as u32) {
                    check_message(payload, None, None, inner_packed)?;
                } else if packed == Some(field as u32) {
                    let mut varints = payload;
                    while !varints.is_empty() {
                        read_varint(&mut varints).ok_or("truncated or overlong packed varint")?;
                    }
                }
                rest = after;
            }
            _ => return Err("unsupported wire type (groups or 6/7)"),
        }
    }
    Ok(())
}

/// Reads one varint of at most 10 bytes off the front of `rest`.
fn read_varint(rest: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &byte) in rest.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *rest = &rest[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_bodies_pass() {
        assert_eq!(check_body(MsgId::GetHostRequest, &[]), Ok(()));
        assert_eq!(
            check_body(MsgId::GetHostRequest, &[0x08, 0x01, 0x10, 0x02]),
            Ok(())
        );
        // GetRouteResponse with one HostInfo { ip: 1, port: 2 }.
        let body = [0x1a, 0x04, 0x08, 0x01, 0x10, 0x02];
        assert_eq!(check_body(MsgId::GetRouteResponse, &body), Ok(()));
        // Unknown fields of every supported wire type are fine.
        let unknown = [
            0x48, 0x01, 0x51, 0, 0, 0, 0, 0, 0, 0, 0, 0x5d, 0, 0, 0, 0, 0x62, 0x01, 0xaa,
        ];
        assert_eq!(check_body(MsgId::GetHostRequest, &unknown), Ok(()));
    }

    #[test]
    fn a_truncated_fixed32_is_rejected() {
        assert!(check_body(MsgId::GetHostRequest, &[0x0d, 0x00, 0x00]).is_err());
    }

    #[test]
    fn a_nested_message_longer_than_its_parent_is_rejected() {
        assert!(check_body(MsgId::GetRouteResponse, &[0x1a, 0x05, 0x08, 0x01]).is_err());
    }

    #[test]
    fn a_nested_message_with_a_truncated_field_inside_is_rejected() {
        // HostInfo payload of 2 bytes holding a fixed32 tag and one byte.
        assert!(check_body(MsgId::GetHostResponse, &[0x2a, 0x02, 0x0d, 0x00]).is_err());
    }

    #[test]
    fn overlong_varints_and_groups_and_field_zero_are_rejected() {
        let overlong = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert!(check_body(MsgId::GetHostRequest, &overlong).is_err());
        assert!(check_body(MsgId::GetHostRequest, &[0x0b]).is_err());
        assert!(check_body(MsgId::GetHostRequest, &[0x00, 0x01]).is_err());
    }

    #[test]
    fn a_packed_run_list_with_a_truncated_varint_is_rejected() {
        // ReportBatchRequest { hosts: [HostResults { runs: [2, <truncated>] }] }.
        assert_eq!(
            check_body(
                MsgId::ReportBatchRequest,
                &[0x22, 0x04, 0x1a, 0x02, 0x02, 0x80]
            ),
            Err("truncated or overlong packed varint")
        );
        assert_eq!(
            check_body(
                MsgId::ReportBatchRequest,
                &[0x22, 0x04, 0x1a, 0x02, 0x02, 0x04]
            ),
            Ok(())
        );
    }

    #[test]
    fn a_ten_byte_negative_int32_is_accepted() {
        let negative = [
            0x08, 0x8a, 0x82, 0xa0, 0x86, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(check_body(MsgId::GetHostRequest, &negative), Ok(()));
    }
}
