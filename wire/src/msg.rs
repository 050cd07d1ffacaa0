//! Message ids and return codes of the Lars protocol as Rust enums, with checked conversions
//! from the `i32` that travels on the wire, and [`Message`]: one decoded message of any kind.

use crate::error::WireError;
use crate::messages::{
    GetHostRequest, GetHostResponse, GetRouteRequest, GetRouteResponse, ReportBatchRequest,
    ReportRequest, ReportStatusRequest, RouteViewRequest, RouteViewResponse,
};
use quick_protobuf::{BytesReader, MessageRead};

/// The `msgid` of a frame header: which message the body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum MsgId {
    /// agent → dns: ask for a route (and subscribe to its changes).
    GetRouteRequest = 1,
    /// dns → agent: a route's hosts, as a reply or a pushed change.
    GetRouteResponse = 2,
    /// agent → reporter: call statistics of one route.
    ReportStatusRequest = 3,
    /// API → agent (UDP): pick a host.
    GetHostRequest = 4,
    /// agent → API (UDP): the picked host.
    GetHostResponse = 5,
    /// API → agent (UDP): the outcome of a call; no reply.
    ReportRequest = 6,
    /// API → agent (UDP): list a route's hosts.
    ApiGetRouteRequest = 7,
    /// agent → API (UDP): a route's hosts.
    ApiGetRouteResponse = 8,
    /// fast-path API → agent (UDP): a route's view (lars-rs only).
    RouteViewRequest = 9,
    /// agent → fast-path API (UDP): a route's view, or the short ack (lars-rs only).
    RouteViewResponse = 10,
    /// fast-path API → agent (UDP): a batch of results for one route (lars-rs only).
    ReportBatchRequest = 11,
}

impl MsgId {
    /// Every message id, in wire order.
    pub const ALL: [MsgId; 11] = [
        MsgId::GetRouteRequest,
        MsgId::GetRouteResponse,
        MsgId::ReportStatusRequest,
        MsgId::GetHostRequest,
        MsgId::GetHostResponse,
        MsgId::ReportRequest,
        MsgId::ApiGetRouteRequest,
        MsgId::ApiGetRouteResponse,
        MsgId::RouteViewRequest,
        MsgId::RouteViewResponse,
        MsgId::ReportBatchRequest,
    ];

    /// The ids of the fast path (added by lars-rs; a C++ agent does not know them).
    pub const FAST_PATH: [MsgId; 3] = [
        MsgId::RouteViewRequest,
        MsgId::RouteViewResponse,
        MsgId::ReportBatchRequest,
    ];

    /// The id as it travels in a header.
    pub const fn as_i32(self) -> i32 {
        self as i32
    }
}

impl TryFrom<i32> for MsgId {
    type Error = WireError;

    fn try_from(id: i32) -> Result<Self, WireError> {
        match id {
            1..=11 => Ok(MsgId::ALL[(id - 1) as usize]),
            _ => Err(WireError::UnknownMsgId(id)),
        }
    }
}

/// The `retcode` of a `GetHostResponse` or `ReportRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum RetCode {
    /// The call succeeded / a host was picked.
    Succ = 0,
    /// Every host of the route is overloaded.
    Overload = 1,
    /// The agent could not answer.
    SystemError = 2,
    /// The route does not exist (yet): the agent has asked dns for it.
    NoExist = 3,
}

impl RetCode {
    /// The code as it travels in a message.
    pub const fn as_i32(self) -> i32 {
        self as i32
    }
}

impl TryFrom<i32> for RetCode {
    type Error = WireError;

    fn try_from(code: i32) -> Result<Self, WireError> {
        match code {
            0 => Ok(RetCode::Succ),
            1 => Ok(RetCode::Overload),
            2 => Ok(RetCode::SystemError),
            3 => Ok(RetCode::NoExist),
            _ => Err(WireError::UnknownRetCode(code)),
        }
    }
}

/// One decoded message of any kind, tagged by its [`MsgId`].
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// msgid 1.
    GetRouteRequest(GetRouteRequest),
    /// msgid 2.
    GetRouteResponse(GetRouteResponse),
    /// msgid 3.
    ReportStatusRequest(ReportStatusRequest),
    /// msgid 4.
    GetHostRequest(GetHostRequest),
    /// msgid 5.
    GetHostResponse(GetHostResponse),
    /// msgid 6.
    ReportRequest(ReportRequest),
    /// msgid 7 (same body as msgid 1).
    ApiGetRouteRequest(GetRouteRequest),
    /// msgid 8 (same body as msgid 2).
    ApiGetRouteResponse(GetRouteResponse),
    /// msgid 9.
    RouteViewRequest(RouteViewRequest),
    /// msgid 10.
    RouteViewResponse(RouteViewResponse),
    /// msgid 11.
    ReportBatchRequest(ReportBatchRequest),
}

impl Message {
    /// The id this message travels under.
    pub fn msg_id(&self) -> MsgId {
        match self {
            Message::GetRouteRequest(_) => MsgId::GetRouteRequest,
            Message::GetRouteResponse(_) => MsgId::GetRouteResponse,
            Message::ReportStatusRequest(_) => MsgId::ReportStatusRequest,
            Message::GetHostRequest(_) => MsgId::GetHostRequest,
            Message::GetHostResponse(_) => MsgId::GetHostResponse,
            Message::ReportRequest(_) => MsgId::ReportRequest,
            Message::ApiGetRouteRequest(_) => MsgId::ApiGetRouteRequest,
            Message::ApiGetRouteResponse(_) => MsgId::ApiGetRouteResponse,
            Message::RouteViewRequest(_) => MsgId::RouteViewRequest,
            Message::RouteViewResponse(_) => MsgId::RouteViewResponse,
            Message::ReportBatchRequest(_) => MsgId::ReportBatchRequest,
        }
    }

    /// Decodes a body received under `msgid`.
    pub fn decode(msgid: i32, body: &[u8]) -> Result<Message, WireError> {
        Ok(match MsgId::try_from(msgid)? {
            MsgId::GetRouteRequest => Message::GetRouteRequest(decode_body(msgid, body)?),
            MsgId::GetRouteResponse => Message::GetRouteResponse(decode_body(msgid, body)?),
            MsgId::ReportStatusRequest => Message::ReportStatusRequest(decode_body(msgid, body)?),
            MsgId::GetHostRequest => Message::GetHostRequest(decode_body(msgid, body)?),
            MsgId::GetHostResponse => Message::GetHostResponse(decode_body(msgid, body)?),
            MsgId::ReportRequest => Message::ReportRequest(decode_body(msgid, body)?),
            MsgId::ApiGetRouteRequest => Message::ApiGetRouteRequest(decode_body(msgid, body)?),
            MsgId::ApiGetRouteResponse => Message::ApiGetRouteResponse(decode_body(msgid, body)?),
            MsgId::RouteViewRequest => Message::RouteViewRequest(decode_body(msgid, body)?),
            MsgId::RouteViewResponse => Message::RouteViewResponse(decode_body(msgid, body)?),
            MsgId::ReportBatchRequest => Message::ReportBatchRequest(decode_body(msgid, body)?),
        })
    }
}

/// Decodes one protobuf body of type `M`, naming `msgid` in the error. Allocates nothing for
/// messages without repeated fields.
///
/// The body's structure is checked first (a strict walk of every field), so malformed input is an error,
/// never a panic or a misread.
pub fn decode_body<'a, M: MessageRead<'a>>(msgid: i32, body: &'a [u8]) -> Result<M, WireError> {
    let id = MsgId::try_from(msgid)?;
    crate::body_check::check_body(id, body)
        .map_err(|reason| WireError::BadBody { msgid, reason })?;
    let mut reader = BytesReader::from_bytes(body);
    M::from_reader(&mut reader, body).map_err(|e| WireError::BadBody {
        msgid,
        reason: decode_failure(&e),
    })
}

/// What a quick-protobuf decoding error says, as a fixed text (its own `Display` would allocate
/// for every dropped datagram).
fn decode_failure(e: &quick_protobuf::Error) -> &'static str {
    use quick_protobuf::Error;
    match e {
        Error::Io(_) => "I/O error while reading",
        Error::Utf8(_) => "a string field is not valid UTF-8",
        Error::Deprecated(_) => "uses a deprecated protobuf feature",
        Error::UnknownWireType(_) => "unknown wire type",
        Error::Varint => "bad varint",
        Error::Message(_) => "invalid message",
        Error::Map(_) => "unexpected map tag",
        Error::UnexpectedEndOfBuffer => "truncated",
        Error::OutputBufferTooSmall => "output buffer too small",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_ids_convert_both_ways_and_reject_the_rest() {
        for id in MsgId::ALL {
            assert_eq!(MsgId::try_from(id.as_i32()), Ok(id));
        }
        for bad in [0, 12, -1, i32::MIN, i32::MAX] {
            assert_eq!(MsgId::try_from(bad), Err(WireError::UnknownMsgId(bad)));
        }
    }

    #[test]
    fn retcodes_convert_both_ways_and_reject_the_rest() {
        for code in [
            RetCode::Succ,
            RetCode::Overload,
            RetCode::SystemError,
            RetCode::NoExist,
        ] {
            assert_eq!(RetCode::try_from(code.as_i32()), Ok(code));
        }
        assert_eq!(RetCode::try_from(4), Err(WireError::UnknownRetCode(4)));
        assert_eq!(RetCode::try_from(-1), Err(WireError::UnknownRetCode(-1)));
    }
}
