//! One host of a route and its state machine: *idle* (picked in turn) or *overloaded* (picked
//! only as a probe), and the four `report` rules that move it between the two.
//!
//! Plain data, no I/O, no clock, no locks; a [`Route`](super::route::Route) owns its hosts, feeds them
//! each caller's report with the current time ([`HostState::report`]), and moves a host between
//! its idle and overload lists when the answer says it changed state. Reporting allocates
//! nothing.
//!
//! # The rules, in order, on every report
//! 1. Count it: a success adds to `vsucc`, `rsucc` and the run `contin_succ` (and ends the run
//!    of errors); a failure the same for the error counts.
//! 2. An idle host that failed is overloaded when `verr / (vsucc + verr) > err_rate`, or when
//!    `contin_err >= contin_err_limit`.
//! 3. An overloaded host that succeeded is idle again when `vsucc / (vsucc + verr) > succ_rate`,
//!    or when `contin_succ >= contin_succ_limit`.
//! 4. Windows: an idle host whose window is at least `idle_timeout` old is overloaded if its
//!    real error rate `rerr / (rsucc + rerr)` is at least `window_err_rate`, else it starts a
//!    fresh window; an overloaded host at least `overload_timeout` old is idle again.
//!
//! The state changes only on a report: an overloaded host nobody reports on stays overloaded
//! past `overload_timeout` until the next probe's report (as in Lars).

use lars_wire::HostAddr;
use lars_wire::messages::HostCallResult;

use super::LbSettings;
use crate::clock::Millis;

/// One host of a route and its load-balancing state, with the Lars field names.
///
/// 48 bytes (pinned by a test): six `u32` counters, two [`Millis`], the address, and `overload`
/// in the padding after it. Handed out by shared reference only; the [`Route`](super::route::Route)
/// changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    /// When the host's current idle window began (set when it is added or set idle).
    pub idle_ts: Millis,
    /// When the host was last overloaded.
    pub overload_ts: Millis,
    /// Virtual successes: decide idle → overload (`err_rate`) and back (`succ_rate`).
    pub vsucc: u32,
    /// Virtual errors.
    pub verr: u32,
    /// Real successes in the current window, for the reporter.
    pub rsucc: u32,
    /// Real errors in the current window, for the reporter.
    pub rerr: u32,
    /// Successes in a row.
    pub contin_succ: u32,
    /// Errors in a row.
    pub contin_err: u32,
    /// The host's address.
    pub addr: HostAddr,
    /// Whether the host is on the overload list (else on the idle list).
    pub overload: bool,
}

/// Why a host was overloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverloadReason {
    /// Its virtual error rate rose above `err_rate`.
    ErrRate,
    /// It failed `contin_err_limit` times in a row.
    ContinErr,
    /// Its window ended with a real error rate of at least `window_err_rate`.
    WindowErrRate,
}

/// Why an overloaded host became idle again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoverReason {
    /// Its virtual success rate rose above `succ_rate`.
    SuccRate,
    /// It succeeded `contin_succ_limit` times in a row.
    ContinSucc,
    /// It had been overloaded for `overload_timeout`.
    OverloadTimeout,
}

/// A host changed state: what the worker logs at `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostTransition {
    /// The host went from idle to overloaded (to the overload list's tail).
    Overloaded {
        /// The host.
        host: HostAddr,
        /// Which rule fired.
        reason: OverloadReason,
        /// Successes judged: the real window count for [`OverloadReason::WindowErrRate`], the
        /// virtual count otherwise (as Lars logs them), taken before the counters reset.
        succ: u32,
        /// Errors judged, the same way.
        err: u32,
    },
    /// The host went from overloaded to idle (to the idle list's tail).
    Recovered {
        /// The host.
        host: HostAddr,
        /// Which rule fired.
        reason: RecoverReason,
        /// Virtual successes before the counters reset.
        succ: u32,
        /// Virtual errors before the counters reset.
        err: u32,
    },
}

impl HostState {
    /// A new host: idle, with a window starting at `now`.
    pub(super) fn new(addr: HostAddr, lb: &LbSettings, now: Millis) -> HostState {
        let mut host = HostState {
            idle_ts: now,
            overload_ts: Millis::ZERO,
            vsucc: 0,
            verr: 0,
            rsucc: 0,
            rerr: 0,
            contin_succ: 0,
            contin_err: 0,
            addr,
            overload: false,
        };
        host.set_idle(lb, now);
        host
    }

    /// The host's address.
    pub fn addr(&self) -> HostAddr {
        self.addr
    }

    /// Counts a caller's report (`succ`: the call succeeded) and applies the rules 1–4 in
    /// order; returns the state change, if any (the route then moves the host to the other
    /// list).
    pub(super) fn report(
        &mut self,
        succ: bool,
        lb: &LbSettings,
        now: Millis,
    ) -> Option<HostTransition> {
        // Rule 1: count.
        if succ {
            self.vsucc = self.vsucc.saturating_add(1);
            self.rsucc = self.rsucc.saturating_add(1);
            self.contin_succ = self.contin_succ.saturating_add(1);
            self.contin_err = 0;
        } else {
            self.verr = self.verr.saturating_add(1);
            self.rerr = self.rerr.saturating_add(1);
            self.contin_err = self.contin_err.saturating_add(1);
            self.contin_succ = 0;
        }

        if !self.overload && !succ {
            // Rule 2: an idle host failed.
            let reason = if ratio(self.verr, self.vsucc) > lb.err_rate {
                Some(OverloadReason::ErrRate)
            } else if self.contin_err >= lb.contin_err_limit {
                Some(OverloadReason::ContinErr)
            } else {
                None
            };
            if let Some(reason) = reason {
                let (succ, err) = (self.vsucc, self.verr);
                self.set_overload(lb, now);
                return Some(HostTransition::Overloaded {
                    host: self.addr,
                    reason,
                    succ,
                    err,
                });
            }
        } else if self.overload && succ {
            // Rule 3: an overloaded host succeeded.
            let reason = if ratio(self.vsucc, self.verr) > lb.succ_rate {
                Some(RecoverReason::SuccRate)
            } else if self.contin_succ >= lb.contin_succ_limit {
                Some(RecoverReason::ContinSucc)
            } else {
                None
            };
            if let Some(reason) = reason {
                let (succ, err) = (self.vsucc, self.verr);
                self.set_idle(lb, now);
                return Some(HostTransition::Recovered {
                    host: self.addr,
                    reason,
                    succ,
                    err,
                });
            }
        }

        // Rule 4: windows.
        if !self.overload {
            if now.since(self.idle_ts) >= Millis::from_secs(lb.idle_timeout) {
                let (rsucc, rerr) = (self.rsucc, self.rerr);
                if rsucc as u64 + rerr as u64 > 0 && ratio(rerr, rsucc) >= lb.window_err_rate {
                    self.set_overload(lb, now);
                    return Some(HostTransition::Overloaded {
                        host: self.addr,
                        reason: OverloadReason::WindowErrRate,
                        succ: rsucc,
                        err: rerr,
                    });
                }
                self.set_idle(lb, now);
            }
        } else if now.since(self.overload_ts) >= Millis::from_secs(lb.overload_timeout) {
            let (succ, err) = (self.vsucc, self.verr);
            self.set_idle(lb, now);
            return Some(HostTransition::Recovered {
                host: self.addr,
                reason: RecoverReason::OverloadTimeout,
                succ,
                err,
            });
        }
        None
    }

    /// Rule 1 for `count` reports of one outcome, without judging: what `count` calls of
    /// [`HostState::report`] do to a host none of them can move (see `Route::report_run`).
    pub(super) fn count_run(&mut self, succ: bool, count: u32) {
        if succ {
            self.vsucc = self.vsucc.saturating_add(count);
            self.rsucc = self.rsucc.saturating_add(count);
            self.contin_succ = self.contin_succ.saturating_add(count);
            self.contin_err = 0;
        } else {
            self.verr = self.verr.saturating_add(count);
            self.rerr = self.rerr.saturating_add(count);
            self.contin_err = self.contin_err.saturating_add(count);
            self.contin_succ = 0;
        }
    }

    /// "Set idle": `vsucc=init_succ_cnt`, `verr=0`, real and continuous counts 0, `idle_ts=now`.
    /// Also the start of a fresh window for a host that stays idle.
    fn set_idle(&mut self, lb: &LbSettings, now: Millis) {
        self.vsucc = lb.init_succ_cnt;
        self.verr = 0;
        self.rsucc = 0;
        self.rerr = 0;
        self.contin_succ = 0;
        self.contin_err = 0;
        self.overload = false;
        self.idle_ts = now;
    }

    /// "Set overloaded": `vsucc=0`, `verr=init_err_cnt`, the rest 0, `overload_ts=now`.
    fn set_overload(&mut self, lb: &LbSettings, now: Millis) {
        self.vsucc = 0;
        self.verr = lb.init_err_cnt;
        self.rsucc = 0;
        self.rerr = 0;
        self.contin_succ = 0;
        self.contin_err = 0;
        self.overload = true;
        self.overload_ts = now;
    }

    /// The host's call statistics for the reporter: real window counts and the overload flag.
    pub fn call_result(&self) -> HostCallResult {
        HostCallResult {
            ip: self.addr.wire_ip(),
            port: self.addr.wire_port(),
            succ: self.rsucc,
            err: self.rerr,
            overload: self.overload,
        }
    }
}

/// `part / (part + other)` as Lars computes it (in `f64`). Never divides by zero here: the
/// counter just incremented is `part` or `other`, or the caller checked the sum.
fn ratio(part: u32, other: u32) -> f64 {
    f64::from(part) / (f64::from(part) + f64::from(other))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{addr, overload, route, route_with, secs};
    use super::*;

    #[test]
    fn new_hosts_start_idle_with_a_window_at_the_time_they_are_added() {
        let route = route_with(LbSettings::default(), 2, secs(7));
        for host in route.hosts() {
            assert!(!host.overload);
            assert_eq!((host.vsucc, host.verr), (180, 0));
            assert_eq!(
                (host.rsucc, host.rerr, host.contin_succ, host.contin_err),
                (0, 0, 0, 0)
            );
            assert_eq!(host.idle_ts, secs(7));
        }
        assert_eq!(route.idle_hosts().collect::<Vec<_>>(), [addr(1), addr(2)]);
        assert_eq!(route.overload_hosts().len(), 0);
    }

    #[test]
    fn contin_err_limit_failures_in_a_row_overload_an_idle_host() {
        let mut route = route(3);
        let now = secs(1);
        for _ in 0..14 {
            assert_eq!(route.report(addr(2), false, now), Ok(None));
        }
        // 15 / (180 + 15) = 0.077 <= err_rate: the run of 15 decides.
        assert_eq!(
            route.report(addr(2), false, now),
            Ok(Some(HostTransition::Overloaded {
                host: addr(2),
                reason: OverloadReason::ContinErr,
                succ: 180,
                err: 15,
            }))
        );
        let host = route.host(addr(2)).unwrap();
        assert!(host.overload);
        assert_eq!((host.vsucc, host.verr), (0, 5), "set overloaded");
        assert_eq!(
            (host.rsucc, host.rerr, host.contin_succ, host.contin_err),
            (0, 0, 0, 0)
        );
        assert_eq!(host.overload_ts, now);
        assert_eq!(route.idle_hosts().collect::<Vec<_>>(), [addr(1), addr(3)]);
        assert_eq!(route.overload_hosts().collect::<Vec<_>>(), [addr(2)]);
    }

    #[test]
    fn a_success_breaks_the_run_of_failures() {
        let mut route = route(1);
        for _ in 0..14 {
            route.report(addr(1), false, secs(1)).unwrap();
        }
        route.report(addr(1), true, secs(1)).unwrap();
        for _ in 0..3 {
            assert_eq!(route.report(addr(1), false, secs(1)), Ok(None));
        }
        assert_eq!(route.host(addr(1)).unwrap().contin_err, 3);
    }

    #[test]
    fn err_rate_needs_21_failures_against_180_virtual_successes() {
        // Isolate the rate rule: no run limit.
        let lb = LbSettings {
            contin_err_limit: u32::MAX,
            ..LbSettings::default()
        };
        // Smallest n with n / (init_succ_cnt + n) > err_rate.
        let expected = (1..)
            .find(|&n: &u32| f64::from(n) / f64::from(180 + n) > lb.err_rate)
            .unwrap();
        assert_eq!(expected, 21, "20/200 is exactly 0.1, not above it");
        let mut route = route_with(lb, 1, Millis::ZERO);
        for _ in 1..expected {
            assert_eq!(route.report(addr(1), false, secs(1)), Ok(None));
        }
        assert_eq!(
            route.report(addr(1), false, secs(1)),
            Ok(Some(HostTransition::Overloaded {
                host: addr(1),
                reason: OverloadReason::ErrRate,
                succ: 180,
                err: 21,
            }))
        );
    }

    #[test]
    fn err_rate_counts_the_successes_in_between() {
        // Defaults; 14 failures then 1 success, repeated: the run never reaches 15, so the rate
        // decides. verr / (181 + verr) first exceeds 0.1 at verr = 21 (21/202 = 0.104, while
        // 20/201 = 0.0995): report 22. The loop checks the formula at every report.
        let mut route = route(1);
        let (mut vsucc, mut verr) = (180u32, 0u32);
        let mut reports = 0;
        let transition = loop {
            reports += 1;
            let succ = reports % 15 == 0;
            if succ {
                vsucc += 1;
            } else {
                verr += 1;
            }
            let t = route.report(addr(1), succ, secs(1)).unwrap();
            let expect_overload = !succ && f64::from(verr) / f64::from(vsucc + verr) > 0.1;
            assert_eq!(t.is_some(), expect_overload, "report {reports}");
            if let Some(t) = t {
                break t;
            }
        };
        assert_eq!(
            transition,
            HostTransition::Overloaded {
                host: addr(1),
                reason: OverloadReason::ErrRate,
                succ: 181,
                err: 21,
            }
        );
        assert_eq!(reports, 22);
    }

    #[test]
    fn overload_timeout_brings_a_host_back_and_not_before() {
        let mut route = route(2);
        overload(&mut route, addr(1), secs(100));
        // Failures on an overloaded host only count; until the timeout nothing changes.
        let just_before = secs(115).since(Millis(1));
        assert_eq!(route.report(addr(1), false, just_before), Ok(None));
        assert!(route.host(addr(1)).unwrap().overload);
        assert_eq!(
            route.report(addr(1), false, secs(115)),
            Ok(Some(HostTransition::Recovered {
                host: addr(1),
                reason: RecoverReason::OverloadTimeout,
                succ: 0,
                err: 7,
            }))
        );
        let host = route.host(addr(1)).unwrap();
        assert!(!host.overload);
        assert_eq!(
            (host.vsucc, host.verr, host.rsucc, host.rerr),
            (180, 0, 0, 0)
        );
        assert_eq!(host.idle_ts, secs(115), "a fresh window");
        assert_eq!(
            route.idle_hosts().collect::<Vec<_>>(),
            [addr(2), addr(1)],
            "back at the idle tail"
        );
    }

    #[test]
    fn succ_rate_recovers_an_overloaded_host_after_6_successes() {
        // After set overloaded: vsucc 0, verr 5; s / (s + 5) > 0.5 first at s = 6.
        let mut route = route(2);
        overload(&mut route, addr(1), secs(1));
        for _ in 0..5 {
            assert_eq!(route.report(addr(1), true, secs(2)), Ok(None));
        }
        assert_eq!(
            route.report(addr(1), true, secs(2)),
            Ok(Some(HostTransition::Recovered {
                host: addr(1),
                reason: RecoverReason::SuccRate,
                succ: 6,
                err: 5,
            }))
        );
        let host = route.host(addr(1)).unwrap();
        assert_eq!(
            (host.vsucc, host.verr, host.contin_succ),
            (180, 0, 0),
            "set idle"
        );
        assert_eq!(host.idle_ts, secs(2));
        assert_eq!(route.idle_hosts().collect::<Vec<_>>(), [addr(2), addr(1)]);
    }

    #[test]
    fn contin_succ_limit_recovers_an_overloaded_host() {
        // Lars' shipped succ_rate 0.95 would need 96 successes: the run of 15 comes first.
        let lb = LbSettings {
            succ_rate: 0.95,
            ..LbSettings::default()
        };
        let mut route = route_with(lb, 2, Millis::ZERO);
        overload(&mut route, addr(1), secs(1));
        route.report(addr(1), false, secs(1)).unwrap(); // verr 6
        for _ in 0..14 {
            assert_eq!(route.report(addr(1), true, secs(2)), Ok(None));
        }
        assert_eq!(
            route.report(addr(1), true, secs(2)),
            Ok(Some(HostTransition::Recovered {
                host: addr(1),
                reason: RecoverReason::ContinSucc,
                succ: 15,
                err: 6,
            }))
        );
    }

    #[test]
    fn a_window_error_rate_of_at_least_window_err_rate_overloads_at_the_window_end() {
        let mut route = route(2);
        // 6 failures and 3 successes inside the window (never 3 failures in a row; the virtual
        // rate stays far below err_rate), then a failure at the window's end: 7/10 >= 0.7.
        for (n, succ) in [false, false, true].repeat(3).into_iter().enumerate() {
            assert_eq!(route.report(addr(1), succ, secs(1 + n as u64)), Ok(None));
        }
        assert_eq!(route.host(addr(1)).unwrap().rerr, 6);
        assert_eq!(
            route.report(addr(1), false, secs(15)),
            Ok(Some(HostTransition::Overloaded {
                host: addr(1),
                reason: OverloadReason::WindowErrRate,
                succ: 3,
                err: 7,
            }))
        );
        assert!(route.host(addr(1)).unwrap().overload);
        assert_eq!(route.overload_hosts().collect::<Vec<_>>(), [addr(1)]);
    }

    #[test]
    fn a_window_error_rate_below_window_err_rate_starts_a_fresh_window() {
        let mut route = route(2);
        for (n, succ) in [false, false, true].repeat(3).into_iter().enumerate() {
            route.report(addr(1), succ, secs(1 + n as u64)).unwrap();
        }
        // Not judged before the window is 15 s old; judged at 15 s: 6 of 11 failed, < 0.7.
        assert_eq!(
            route.report(addr(1), true, secs(15).since(Millis(1))),
            Ok(None)
        );
        assert_eq!(route.host(addr(1)).unwrap().rsucc, 4);
        assert_eq!(route.report(addr(1), true, secs(15)), Ok(None));
        let host = route.host(addr(1)).unwrap();
        assert!(!host.overload);
        assert_eq!(
            (
                host.vsucc,
                host.verr,
                host.rsucc,
                host.rerr,
                host.contin_succ,
                host.contin_err
            ),
            (180, 0, 0, 0, 0, 0),
            "counters reset"
        );
        assert_eq!(host.idle_ts, secs(15));
        // The next window is judged 15 s after this one began.
        route.report(addr(1), false, secs(29)).unwrap();
        assert_eq!(route.host(addr(1)).unwrap().rerr, 1);
    }

    #[test]
    fn an_idle_failure_that_does_not_overload_still_ends_an_old_window() {
        let mut route = route(1);
        route.report(addr(1), true, secs(1)).unwrap();
        // 1 failure of 2 at the window's end: 0.5 < 0.7, a fresh window.
        assert_eq!(route.report(addr(1), false, secs(20)), Ok(None));
        assert_eq!(route.host(addr(1)).unwrap().idle_ts, secs(20));
        assert_eq!(route.host(addr(1)).unwrap().rerr, 0);
    }
}
