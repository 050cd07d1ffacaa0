//! The load-balancing rules: which host of a route a caller gets, how callers' reports move a
//! host between *idle* and *overloaded*, when a shard asks dns for a route, and which call
//! statistics go to the reporter. This is the agent's sans-I/O core: plain structs whose
//! methods take the input and the current time ([`Millis`](crate::clock::Millis)) and return
//! what to do; they own no socket, read no clock and take no lock. One worker owns each
//! shard's [`RouteTable`] and calls it for every request.
//!
//! The parts, from the outside in:
//! - [`table`]: one shard's routes by [`RouteKey`](lars_wire::RouteKey) — what is held, when
//!   to ask dns (again), how a dns answer is applied, the statistics to upload;
//! - [`route`]: one route's hosts — picks (the idle list in turn, probes of the overload list),
//!   reports routed to the host, dns updates, the per-host call results;
//! - [`host`]: one host's idle/overloaded state machine, Lars' four `report` rules;
//! - [`settings`]: the `[loadbalance]` thresholds and timeouts they all read.
//!
//! # Behaviour kept from Lars, and where it differs
//! The rules are Lars' `load_balance` rules, in the same order, with the same comparisons (`>`
//! for `err_rate`/`succ_rate`, `>=` for the `contin_*` limits, the window and
//! `window_err_rate`, `>=` for "`idle_timeout`/`overload_timeout` old"). Where the C++ code
//! did not do what Lars documents, the documented rule wins:
//! - Lars' pick, with both lists non-empty, rotated the idle list a second time and answered
//!   that idle host even on a probe pick, so overloaded hosts were never probed while any host
//!   was idle. Here a probe pick answers the overloaded host and rotates only its list.
//! - Lars left a new host's `idle_ts` unset, so its first window ended at its first report; here
//!   a new host starts idle with its first window starting when dns adds it.
//! - Time is in milliseconds, not whole seconds.
//! - A route whose dns answer was lost asks again after `update_timeout` (see [`table`]).
//! - Panic mode (`panic_threshold`, off by default) is Envoy's, not Lars': when enough of a
//!   route's hosts are overloaded its picks spread over all of them (see [`route`]).
//! - Routes loaded from the route cache at start are served before dns answers them (see
//!   [`RouteTable::preload`]).

pub(crate) mod host;
pub(crate) mod route;
pub(crate) mod settings;
pub(crate) mod table;

pub use host::HostTransition;
pub use route::{HostsUpdate, PanicTransition};
pub use settings::LbSettings;
pub use table::{
    BatchHost, BatchOutcome, DnsAsk, DnsUpdateOutcome, HostAnswer, ReportOutcome, RouteTable,
    RouteView, TableLimits,
};

/// What the tests of [`host`] and [`route`] build routes with.
#[cfg(test)]
pub(crate) mod test_support {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use lars_wire::HostAddr;

    use super::route::Route;
    use super::{HostTransition, LbSettings};
    use crate::clock::Millis;

    /// `10.0.0.last:9000`.
    pub(crate) fn addr(last: u8) -> HostAddr {
        HostAddr::new(Ipv4Addr::new(10, 0, 0, last), 9000)
    }

    /// The statistics of host `addr(last)` as they go to the reporter.
    pub(crate) fn call_result(
        last: u8,
        succ: u32,
        err: u32,
        overload: bool,
    ) -> lars_wire::messages::HostCallResult {
        lars_wire::messages::HostCallResult {
            ip: addr(last).wire_ip(),
            port: 9000,
            succ,
            err,
            overload,
        }
    }

    /// The picks of `rounds` strict rotations over hosts `addr(1..=n)`.
    pub(crate) fn rotations(n: u8, rounds: usize) -> Vec<super::route::Pick> {
        (0..rounds)
            .flat_map(|_| (1..=n).map(|i| super::route::Pick::Host(addr(i))))
            .collect()
    }

    /// A route of hosts `addr(1..=n)` following `lb`, added at `now`.
    pub(crate) fn route_with(lb: LbSettings, n: u8, now: Millis) -> Route {
        let mut route = Route::new(Arc::new(lb));
        let hosts: Vec<HostAddr> = (1..=n).map(addr).collect();
        route.update_hosts(&hosts, now);
        route
    }

    /// A route of hosts `addr(1..=n)` with Lars' defaults, added at the epoch.
    pub(crate) fn route(n: u8) -> Route {
        route_with(LbSettings::default(), n, Millis::ZERO)
    }

    pub(crate) fn secs(s: u64) -> Millis {
        Millis::from_secs(s)
    }

    /// Fails `host` until it is overloaded (by `contin_err_limit` with the defaults).
    pub(crate) fn overload(route: &mut Route, host: HostAddr, now: Millis) {
        for _ in 0..1000 {
            if let Some(HostTransition::Overloaded { .. }) = route.report(host, false, now).unwrap()
            {
                return;
            }
        }
        panic!("{host} never overloaded");
    }
}
