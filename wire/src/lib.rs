//! The Lars wire protocol and the client library that callers link.
//!
//! Lars names a service by two integers, `modid` and `cmdid`; the `ip:port` servers of one
//! `(modid, cmdid)` are its *route*. Callers ask the agent on their own host which server to call
//! (`get_host`), tell it how the call went (`report`), or list a route (`get_route`). The agent
//! pulls routes from the central dns service and uploads call statistics to the reporter.
//!
//! # Frames
//!
//! Every message is an 8-byte header followed by a protobuf (proto3) body:
//!
//! ```text
//! 0        4        8                      8+msglen
//! +--------+--------+------------------------+
//! | msgid  | msglen | protobuf body          |
//! | i32 LE | i32 LE | (msglen bytes)         |
//! +--------+--------+------------------------+
//! ```
//!
//! `msglen` counts the body only and may be at most 65535 − 8 ([`frame::MAX_BODY_LEN`]). On TCP
//! (agent ↔ dns, agent ↔ reporter) frames follow each other on the stream ([`frame`]); a negative
//! or oversized `msglen` is a protocol error that closes the connection. On UDP (caller ↔ agent)
//! one datagram holds exactly one frame and its length must be `8 + msglen` ([`datagram`]).
//!
//! # Messages
//!
//! | id | [`MsgId`] | direction | body |
//! |---|---|---|---|
//! | 1 | `GetRouteRequest` | agent → dns | [`messages::GetRouteRequest`] |
//! | 2 | `GetRouteResponse` | dns → agent, reply and push | [`messages::GetRouteResponse`] |
//! | 3 | `ReportStatusRequest` | agent → reporter | [`messages::ReportStatusRequest`] |
//! | 4 | `GetHostRequest` | caller → agent | [`messages::GetHostRequest`] |
//! | 5 | `GetHostResponse` | agent → caller | [`messages::GetHostResponse`] |
//! | 6 | `ReportRequest` | caller → agent, no reply | [`messages::ReportRequest`] |
//! | 7 | `ApiGetRouteRequest` | caller → agent | [`messages::GetRouteRequest`] |
//! | 8 | `ApiGetRouteResponse` | agent → caller | [`messages::GetRouteResponse`] |
//! | 9 | `RouteViewRequest` | fast-path caller → agent | [`messages::RouteViewRequest`] |
//! | 10 | `RouteViewResponse` | agent → fast-path caller | [`messages::RouteViewResponse`] |
//! | 11 | `ReportBatchRequest` | fast-path caller → agent | [`messages::ReportBatchRequest`] |
//!
//! Ids 9 to 11 are the callers' fast path, added by lars-rs ([`fast::FastClient`]).
//!
//! Return codes ([`RetCode`]): 0 SUCC, 1 OVERLOAD, 2 SYSTEM_ERROR, 3 NOEXIST.
//!
//! IPv4 addresses travel as `a<<24|b<<16|c<<8|d` in an `int32`, so addresses from 128.0.0.0 up
//! are negative and take a 10-byte varint ([`ip`]); [`HostAddr`] is a host in its typed form and
//! the one conversion to and from the wire's [`messages::HostInfo`]. Proto3 omits default values: a field that is
//! 0, false or empty is not on the wire at all.
//!
//! # Ports
//!
//! The agent listens on `shards` UDP ports from `base_port` (defaults 8888 and 3). A caller sends
//! a key to port `base_port + (modid + cmdid) % shards`; [`client::Client`] does this for you.

#![deny(missing_docs)]

mod body_check;
pub mod caller;
pub mod client;
pub mod datagram;
pub mod error;
pub mod fast;
pub mod frame;
pub mod ip;
pub mod latest;
pub mod messages;
pub mod msg;
pub mod route;
mod runs;

pub use caller::Caller;
pub use client::{Client, ClientConfig, ClientError};
pub use error::WireError;
pub use fast::{FastClient, FastConfig, FastStats};
pub use frame::{FrameDecoder, RawFrame};
pub use latest::LatestWins;
pub use msg::{Message, MsgId, RetCode};
pub use route::{BadPort, HostAddr, NotARoute, RouteKey};
