//! The protobuf messages of the Lars protocol, generated at build time from `proto/lars.proto`
//! by quick-protobuf's `pb-rs` (see `build.rs`). Owns nothing but the types; framing lives in
//! [`crate::frame`] and [`crate::datagram`], message ids in [`crate::msg`].
//!
//! Proto3 rules apply: a field equal to its default (0, false, empty list, absent message) is not
//! written at all, so an all-default message encodes to zero bytes.

#[allow(
    missing_docs,
    non_snake_case,
    non_upper_case_globals,
    non_camel_case_types,
    unused_imports,
    unknown_lints,
    clippy::all
)]
#[rustfmt::skip]
mod lars {
    include!(concat!(env!("OUT_DIR"), "/lars.rs"));
}

pub use lars::{
    GetHostRequest, GetHostResponse, GetRouteRequest, GetRouteResponse, HostCallResult, HostInfo,
    HostResults, ReportBatchRequest, ReportRequest, ReportStatusRequest, RouteViewRequest,
    RouteViewResponse, ViewHost,
};
