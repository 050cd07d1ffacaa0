//! What the stored call statistics say about routes and hosts, as the pages show it.
//!
//! Owns the rules: a `ServerCallStatus` row's error rate is `err / (succ + err)` of its last
//! reported window; a row older than `stale_after` is stale and counts for nothing but its
//! display; a route is unhealthy when a fresh row has the host overloaded or an error rate
//! above zero; the overview lists unhealthy routes first, the worst first. Pure: takes the rows
//! and the time, returns what to show.

use lars_store::{CallStatusRow, RouteTable};
use lars_wire::{HostAddr, RouteKey};
use std::cmp::Ordering;
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// One row of a route page's health table: what one caller saw of one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostHealth {
    /// The host.
    pub host: HostAddr,
    /// The reporting agent's address.
    pub caller: Ipv4Addr,
    /// Successful calls in the window.
    pub succ: u32,
    /// Failed calls in the window.
    pub err: u32,
    /// `err / (succ + err)`, `None` without calls.
    pub err_rate: Option<f64>,
    /// Whether the agent had the host overloaded.
    pub overload: bool,
    /// Seconds since the report (0 for one from the future).
    pub age_secs: i64,
    /// Older than the stale limit.
    pub stale: bool,
    /// The host is still in the route (a removed host's rows stay until they age out).
    pub in_route: bool,
}

/// One line of the overview.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSummary {
    /// The route.
    pub key: RouteKey,
    /// Its hosts.
    pub hosts: usize,
    /// The worst error rate of a fresh row, `None` without fresh calls.
    pub worst_err_rate: Option<f64>,
    /// Hosts a fresh row has overloaded.
    pub overloaded: usize,
    /// Rows of it that are stale.
    pub stale_rows: usize,
}

impl RouteSummary {
    /// Overloaded hosts or errors in a fresh row.
    pub fn unhealthy(&self) -> bool {
        self.overloaded > 0 || self.worst_err_rate.is_some_and(|r| r > 0.0)
    }
}

/// The error rate of `succ` and `err`.
pub fn err_rate(succ: u32, err: u32) -> Option<f64> {
    let calls = u64::from(succ) + u64::from(err);
    (calls > 0).then(|| err as f64 / calls as f64)
}

/// The health table of route `key` from its `rows`, at `now` (Unix seconds): hosts in route
/// order first, then hosts no longer in it, each by caller.
pub fn route_health(
    hosts: &[HostAddr],
    rows: &[CallStatusRow],
    now: i64,
    stale_after: i64,
) -> Vec<HostHealth> {
    let mut out: Vec<HostHealth> = rows
        .iter()
        .map(|r| {
            let host = HostAddr::new(Ipv4Addr::from(r.ip), r.port);
            let age_secs = (now - r.ts).max(0);
            HostHealth {
                host,
                caller: Ipv4Addr::from(r.caller),
                succ: r.succ_cnt,
                err: r.err_cnt,
                err_rate: err_rate(r.succ_cnt, r.err_cnt),
                overload: r.overload,
                age_secs,
                stale: age_secs > stale_after,
                in_route: hosts.contains(&host),
            }
        })
        .collect();
    let position = |h: &HostHealth| {
        hosts
            .iter()
            .position(|x| *x == h.host)
            .unwrap_or(usize::MAX)
    };
    out.sort_by_key(|h| (position(h), h.host.ip, h.host.port, h.caller));
    out
}

/// One summary per route of `routes` from all `rows`, unhealthy first (most overloaded hosts,
/// then highest error rate), then by key.
pub fn summarize(
    routes: &RouteTable,
    rows: &[CallStatusRow],
    now: i64,
    stale_after: i64,
) -> Vec<RouteSummary> {
    let mut out: Vec<RouteSummary> = routes
        .iter()
        .map(|(key, hosts)| {
            let mine: Vec<&CallStatusRow> = rows
                .iter()
                .filter(|r| r.modid == key.modid && r.cmdid == key.cmdid)
                .filter(|r| hosts.contains(&HostAddr::new(Ipv4Addr::from(r.ip), r.port)))
                .collect();
            let (fresh, stale): (Vec<&CallStatusRow>, Vec<&CallStatusRow>) =
                mine.into_iter().partition(|r| now - r.ts <= stale_after);
            let overloaded: HashSet<(u32, u16)> = fresh
                .iter()
                .filter(|r| r.overload)
                .map(|r| (r.ip, r.port))
                .collect();
            let worst_err_rate = fresh
                .iter()
                .filter_map(|r| err_rate(r.succ_cnt, r.err_cnt))
                .max_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
            RouteSummary {
                key: *key,
                hosts: hosts.len(),
                worst_err_rate,
                overloaded: overloaded.len(),
                stale_rows: stale.len(),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.unhealthy()
            .cmp(&a.unhealthy())
            .then(b.overloaded.cmp(&a.overloaded))
            .then(
                b.worst_err_rate
                    .unwrap_or(0.0)
                    .partial_cmp(&a.worst_err_rate.unwrap_or(0.0))
                    .unwrap_or(Ordering::Equal),
            )
            .then((a.key.modid, a.key.cmdid).cmp(&(b.key.modid, b.key.cmdid)))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(last: u8) -> HostAddr {
        HostAddr::new(Ipv4Addr::new(10, 0, 0, last), 9000)
    }

    fn row(
        modid: i32,
        host: HostAddr,
        succ: u32,
        err: u32,
        ts: i64,
        overload: bool,
    ) -> CallStatusRow {
        CallStatusRow {
            modid,
            cmdid: 1,
            ip: u32::from(host.ip),
            port: host.port,
            caller: u32::from(Ipv4Addr::LOCALHOST),
            succ_cnt: succ,
            err_cnt: err,
            ts,
            overload,
        }
    }

    #[test]
    fn unhealthy_routes_come_first_and_stale_rows_count_for_nothing() {
        let mut routes = RouteTable::new();
        for modid in 1..=4 {
            routes.insert(RouteKey::new(modid, 1), vec![host(1), host(2)]);
        }
        let rows = [
            row(1, host(1), 10, 0, 100, false),
            row(2, host(1), 5, 5, 100, false),
            row(3, host(2), 0, 20, 100, true),
            // Stale: an old overload says nothing now.
            row(4, host(1), 0, 9, 10, true),
        ];
        let summary = summarize(&routes, &rows, 100, 60);
        let order: Vec<i32> = summary.iter().map(|s| s.key.modid).collect();
        assert_eq!(order, [3, 2, 1, 4]);
        assert_eq!(
            (summary[0].overloaded, summary[0].worst_err_rate),
            (1, Some(1.0))
        );
        assert_eq!(summary[1].worst_err_rate, Some(0.5));
        assert!(!summary[2].unhealthy());
        assert!(!summary[3].unhealthy());
        assert_eq!(summary[3].stale_rows, 1);
    }

    #[test]
    fn the_health_table_marks_stale_rows_and_hosts_gone_from_the_route() {
        let rows = [
            row(1, host(9), 1, 0, 50, false),
            row(1, host(2), 3, 1, 99, true),
        ];
        let table = route_health(&[host(2)], &rows, 100, 30);
        assert_eq!(table[0].host, host(2));
        assert!(table[0].in_route && !table[0].stale && table[0].overload);
        assert_eq!((table[0].err_rate, table[0].age_secs), (Some(0.25), 1));
        assert!(!table[1].in_route && table[1].stale);
        assert_eq!(err_rate(0, 0), None);
    }
}
