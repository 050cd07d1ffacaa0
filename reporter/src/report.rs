//! What a `ReportStatusRequest` becomes: one `ServerCallStatus` row per `HostCallResult`, with
//! the column values of the original Lars reporter — `caller` and `ip` as the unsigned 32-bit
//! address (the wire's `int32` reinterpreted), `ts` as sent, `succ_cnt`/`err_cnt` as sent and
//! `overload` as `'1'`/`'0'`. Pure; called by the connections for every frame.
//!
//! Everything from the network is checked: a result whose value the table cannot hold (a port
//! outside 1..=65535) is a [`BadRow`], dropped and counted by the caller; the other results of
//! the same frame are still stored.

use lars_store::CallStatusRow;
use lars_wire::HostAddr;
use lars_wire::ip::ip_from_wire;
use lars_wire::messages::{HostCallResult, ReportStatusRequest};

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
            cmdid: -3,
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
                cmdid: -3,
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
        assert!(
            text.contains("65536") && text.contains("(10, -3)"),
            "{text}"
        );
    }
}
