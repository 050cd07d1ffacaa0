//! What a `ReportStatusRequest` becomes: one `ServerCallStatus` row per `HostCallResult`, with
//! the column values of the original Lars reporter — `caller` and `ip` as the unsigned 32-bit
//! address (the wire's `int32` reinterpreted), `ts` as sent, `succ_cnt`/`err_cnt` as sent and
//! `overload` as `'1'`/`'0'`. Pure; called by the connections for every frame.
//!
//! Everything from the network is checked, in two steps. First the frame as a whole
//! ([`Admission::check`]): a frame whose `caller` is not the address of the peer that sent it
//! (unless `trust_caller_field`), whose `ts` is more than `max_ts_ahead_secs` ahead of the
//! reporter's clock, or that carries more than `max_results_per_frame` results is a
//! [`RefusedFrame`]; none of its rows is stored, and the caller counts them by
//! [`RefusedReason`]. Then each result: one whose value the table cannot hold (a port outside
//! 1..=65535) is a [`BadRow`], dropped and counted by the caller; the other results of the same
//! frame are still stored.
//!
//! A forged caller drops the frame rather than storing its rows under the peer's address: the
//! rows are someone's claim about calls the peer did not make, so no caller value makes them
//! true. A negative `modid` or `cmdid` drops the frame too: no route can have one (route edits
//! refuse it, [`lars_wire::RouteKey::is_route`]), so the rows describe calls to no service. The
//! checks take the peer and the time as arguments; nothing here reads a clock.

use lars_store::CallStatusRow;
use lars_wire::ip::ip_from_wire;
use lars_wire::messages::{HostCallResult, ReportStatusRequest};
use lars_wire::{HostAddr, RouteKey};
use std::net::{IpAddr, Ipv4Addr};

/// How far ahead of the reporter's clock a report's `ts` may be by default: five minutes, far
/// more than the skew of hosts that keep time (NTP keeps them within a second), far less than
/// the hours or the year-2106 `ts` a forged row would pin at the top of `lars status`.
pub const DEFAULT_MAX_TS_AHEAD_SECS: u64 = 300;

/// Most results one frame may carry by default. An agent reports each host it called once per
/// report interval, and a route of Lars has a few hundred hosts at most; 10,000 leaves room for
/// the largest fan-out while a frame of forged rows cannot fill a worker's inbox in one go.
pub const DEFAULT_MAX_RESULTS_PER_FRAME: usize = 10_000;

/// What the reporter admits from a peer (the `[reporter]` keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Store `caller` as sent even when it is not the peer's address (agents behind NAT).
    pub trust_caller_field: bool,
    /// Most results in one frame.
    pub max_results_per_frame: usize,
    /// Most seconds a `ts` may be ahead of the reporter's clock.
    pub max_ts_ahead_secs: u64,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            trust_caller_field: false,
            max_results_per_frame: DEFAULT_MAX_RESULTS_PER_FRAME,
            max_ts_ahead_secs: DEFAULT_MAX_TS_AHEAD_SECS,
        }
    }
}

/// Why a whole frame is refused, as its counter's `reason` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedReason {
    /// `caller` is not the peer's address.
    CallerMismatch,
    /// `ts` is too far ahead of the reporter's clock.
    FutureTs,
    /// More results than `max_results_per_frame`.
    TooManyResults,
    /// A negative `modid` or `cmdid`, which no route has.
    NotARoute,
}

impl RefusedReason {
    /// The `reason` label of `lars_reporter_rows_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            RefusedReason::CallerMismatch => "caller_mismatch",
            RefusedReason::FutureTs => "future_ts",
            RefusedReason::TooManyResults => "too_many_results",
            RefusedReason::NotARoute => "not_a_route",
        }
    }
}

/// A frame none of whose rows is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedFrame {
    /// The frame names a caller other than the peer that sent it.
    #[error(
        "route ({modid}, {cmdid}): caller {caller} is not the sending peer {peer} \
         (agents behind NAT need [reporter] trust_caller_field = true)"
    )]
    CallerMismatch {
        /// The route's modid.
        modid: i32,
        /// The route's cmdid.
        cmdid: i32,
        /// The caller as sent.
        caller: Ipv4Addr,
        /// The peer's address.
        peer: IpAddr,
    },
    /// The frame's `ts` is in the future.
    #[error(
        "route ({modid}, {cmdid}): ts {ts} is {ahead} s ahead of the reporter's clock \
         (at most {max} s allowed)"
    )]
    FutureTs {
        /// The route's modid.
        modid: i32,
        /// The route's cmdid.
        cmdid: i32,
        /// The `ts` as sent.
        ts: u32,
        /// Seconds ahead of the reporter's clock.
        ahead: u64,
        /// `max_ts_ahead_secs`.
        max: u64,
    },
    /// The frame carries more results than allowed.
    #[error(
        "route ({modid}, {cmdid}): {count} results in one frame, more than \
         max_results_per_frame = {max}"
    )]
    TooManyResults {
        /// The route's modid.
        modid: i32,
        /// The route's cmdid.
        cmdid: i32,
        /// Results in the frame.
        count: usize,
        /// `max_results_per_frame`.
        max: usize,
    },
    /// The frame names a key no route can have.
    #[error("{0}")]
    NotARoute(#[from] lars_wire::NotARoute),
}

impl RefusedFrame {
    /// Which counter the frame's rows go to.
    pub fn reason(&self) -> RefusedReason {
        match self {
            RefusedFrame::CallerMismatch { .. } => RefusedReason::CallerMismatch,
            RefusedFrame::FutureTs { .. } => RefusedReason::FutureTs,
            RefusedFrame::TooManyResults { .. } => RefusedReason::TooManyResults,
            RefusedFrame::NotARoute(_) => RefusedReason::NotARoute,
        }
    }
}

impl Admission {
    /// Whether the rows of `request`, sent by `peer` when the reporter's clock reads
    /// `now_unix_secs`, may be stored.
    pub fn check(
        &self,
        request: &ReportStatusRequest,
        peer: IpAddr,
        now_unix_secs: u64,
    ) -> Result<(), RefusedFrame> {
        let (modid, cmdid) = (request.modid, request.cmdid);
        RouteKey::new(modid, cmdid).checked()?;
        let count = request.results.len();
        if count > self.max_results_per_frame {
            return Err(RefusedFrame::TooManyResults {
                modid,
                cmdid,
                count,
                max: self.max_results_per_frame,
            });
        }
        let caller = ip_from_wire(request.caller);
        if !self.trust_caller_field && peer.to_canonical() != IpAddr::V4(caller) {
            return Err(RefusedFrame::CallerMismatch {
                modid,
                cmdid,
                caller,
                peer,
            });
        }
        let ahead = u64::from(request.ts).saturating_sub(now_unix_secs);
        if ahead > self.max_ts_ahead_secs {
            return Err(RefusedFrame::FutureTs {
                modid,
                cmdid,
                ts: request.ts,
                ahead,
                max: self.max_ts_ahead_secs,
            });
        }
        Ok(())
    }
}

/// A `HostCallResult` that cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRow {
    /// The host's port is not a TCP port.
    #[error(
        "route ({modid}, {cmdid}) host {ip}: port {port} is outside 1..=65535",
        ip = ip_from_wire(*ip)
    )]
    PortOutOfRange {
        /// The route's modid.
        modid: i32,
        /// The route's cmdid.
        cmdid: i32,
        /// The host's address as sent.
        ip: i32,
        /// The port as sent.
        port: i32,
    },
}

/// The row for one result of `request`.
pub fn status_row(
    request: &ReportStatusRequest,
    result: &HostCallResult,
) -> Result<CallStatusRow, BadRow> {
    let host = match HostAddr::from_wire(result.ip, result.port) {
        Ok(host) if host.port > 0 => host,
        _ => {
            return Err(BadRow::PortOutOfRange {
                modid: request.modid,
                cmdid: request.cmdid,
                ip: result.ip,
                port: result.port,
            });
        }
    };
    Ok(CallStatusRow {
        modid: request.modid,
        cmdid: request.cmdid,
        ip: host.ip_bits(),
        port: host.port,
        caller: ip_from_wire(request.caller).to_bits(),
        succ_cnt: result.succ,
        err_cnt: result.err,
        ts: i64::from(request.ts),
        overload: result.overload,
    })
}

/// The rows of every result of `request`, in order.
pub fn status_rows(
    request: &ReportStatusRequest,
) -> impl Iterator<Item = Result<CallStatusRow, BadRow>> + '_ {
    request
        .results
        .iter()
        .map(move |result| status_row(request, result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lars_wire::ip::ip_to_wire;
    use std::net::Ipv4Addr;

    fn request(results: Vec<HostCallResult>) -> ReportStatusRequest {
        ReportStatusRequest {
            modid: 10,
            cmdid: 3,
            caller: ip_to_wire(Ipv4Addr::new(172, 16, 0, 9)),
            results,
            ts: u32::MAX,
        }
    }

    #[test]
    fn columns_take_the_values_lars_stored() {
        let req = request(vec![HostCallResult {
            ip: ip_to_wire(Ipv4Addr::new(192, 168, 1, 10)),
            port: 65535,
            succ: 7,
            err: u32::MAX,
            overload: true,
        }]);
        let row = status_row(&req, &req.results[0]).unwrap();
        assert_eq!(
            row,
            CallStatusRow {
                modid: 10,
                cmdid: 3,
                ip: u32::from(Ipv4Addr::new(192, 168, 1, 10)),
                port: 65535,
                caller: u32::from(Ipv4Addr::new(172, 16, 0, 9)),
                succ_cnt: 7,
                err_cnt: u32::MAX,
                ts: i64::from(u32::MAX),
                overload: true,
            }
        );
    }

    const NOW: u64 = 1_800_000_000;

    fn from_caller(caller: Ipv4Addr, ts: u32, results: usize) -> ReportStatusRequest {
        ReportStatusRequest {
            modid: 1,
            cmdid: 2,
            caller: ip_to_wire(caller),
            results: vec![HostCallResult::default(); results],
            ts,
        }
    }

    fn peer(ip: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(ip))
    }

    #[test]
    fn an_agents_own_frame_is_admitted() {
        let rules = Admission::default();
        let req = from_caller(Ipv4Addr::new(10, 0, 0, 7), NOW as u32, 3);
        assert_eq!(rules.check(&req, peer([10, 0, 0, 7]), NOW), Ok(()));
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(
            rules.check(&req, mapped, NOW),
            Ok(()),
            "a dual-stack listener's peer"
        );
        let slightly_ahead = from_caller(Ipv4Addr::new(10, 0, 0, 7), (NOW + 300) as u32, 1);
        assert_eq!(
            rules.check(&slightly_ahead, peer([10, 0, 0, 7]), NOW),
            Ok(())
        );
        let old = from_caller(Ipv4Addr::new(10, 0, 0, 7), 0, 1);
        assert_eq!(rules.check(&old, peer([10, 0, 0, 7]), NOW), Ok(()));
    }

    #[test]
    fn a_forged_caller_is_refused_unless_the_caller_field_is_trusted() {
        let req = from_caller(Ipv4Addr::new(6, 6, 6, 6), NOW as u32, 1);
        let err = Admission::default()
            .check(&req, peer([10, 0, 0, 7]), NOW)
            .unwrap_err();
        assert_eq!(err.reason(), RefusedReason::CallerMismatch);
        let text = err.to_string();
        assert!(
            text.contains("6.6.6.6") && text.contains("10.0.0.7"),
            "{text}"
        );
        let no_caller = from_caller(Ipv4Addr::new(0, 0, 0, 0), NOW as u32, 1);
        assert!(
            Admission::default()
                .check(&no_caller, peer([10, 0, 0, 7]), NOW)
                .is_err()
        );
        let v6: IpAddr = "::1".parse().unwrap();
        assert!(Admission::default().check(&req, v6, NOW).is_err());

        let trusting = Admission {
            trust_caller_field: true,
            ..Admission::default()
        };
        assert_eq!(trusting.check(&req, peer([10, 0, 0, 7]), NOW), Ok(()));
    }

    #[test]
    fn a_ts_more_than_the_allowed_skew_ahead_is_refused() {
        let caller = Ipv4Addr::new(10, 0, 0, 7);
        let rules = Admission::default();
        for ts in [NOW + 301, u64::from(u32::MAX)] {
            let err = rules
                .check(&from_caller(caller, ts as u32, 1), peer([10, 0, 0, 7]), NOW)
                .unwrap_err();
            assert_eq!(err.reason(), RefusedReason::FutureTs, "{ts}");
            assert!(err.to_string().contains(&ts.to_string()), "{err}");
        }
    }

    #[test]
    fn more_results_than_allowed_in_one_frame_are_refused() {
        let caller = Ipv4Addr::new(10, 0, 0, 7);
        let rules = Admission {
            max_results_per_frame: 4,
            ..Admission::default()
        };
        assert_eq!(
            rules.check(
                &from_caller(caller, NOW as u32, 4),
                peer([10, 0, 0, 7]),
                NOW
            ),
            Ok(())
        );
        let err = rules
            .check(
                &from_caller(caller, NOW as u32, 5),
                peer([10, 0, 0, 7]),
                NOW,
            )
            .unwrap_err();
        assert_eq!(err.reason(), RefusedReason::TooManyResults);
        assert!(err.to_string().contains("5 results"), "{err}");
    }

    #[test]
    fn a_negative_modid_or_cmdid_is_refused_before_anything_else() {
        let caller = Ipv4Addr::new(10, 0, 0, 7);
        for (modid, cmdid) in [(-1, 2), (1, -2), (i32::MIN, i32::MAX)] {
            let mut req = from_caller(caller, NOW as u32, 1);
            (req.modid, req.cmdid) = (modid, cmdid);
            let err = Admission::default()
                .check(&req, peer([10, 0, 0, 7]), NOW)
                .unwrap_err();
            assert_eq!(err.reason(), RefusedReason::NotARoute);
            assert_eq!(err.reason().label(), "not_a_route");
            let text = err.to_string();
            assert!(
                text.contains(&format!("modid={modid} cmdid={cmdid}")),
                "{text}"
            );
        }
        let mut zero = from_caller(caller, NOW as u32, 1);
        (zero.modid, zero.cmdid) = (0, 0);
        assert_eq!(
            Admission::default().check(&zero, peer([10, 0, 0, 7]), NOW),
            Ok(())
        );
    }

    #[test]
    fn ports_outside_1_to_65535_are_bad_rows_and_the_others_still_count() {
        let result = |port| HostCallResult {
            ip: 1,
            port,
            ..HostCallResult::default()
        };
        let req = request(vec![result(0), result(80), result(65536), result(-1)]);
        let rows: Vec<_> = status_rows(&req).collect();
        assert!(matches!(
            rows[0],
            Err(BadRow::PortOutOfRange { port: 0, .. })
        ));
        assert_eq!(rows[1].as_ref().map(|r| r.port), Ok(80));
        assert!(rows[2].is_err() && rows[3].is_err());
        let text = rows[2].as_ref().unwrap_err().to_string();
        assert!(text.contains("65536") && text.contains("(10, 3)"), "{text}");
    }
}
