//! One route — the hosts of one `(modid, cmdid)` — and the per-host state machine of SPEC §2.3:
//! which host a `get_host` gets ([`Route::pick`]), how a caller's `report` moves a host between
//! *idle* and *overloaded* ([`Route::report`]), how a dns answer changes the hosts
//! ([`Route::update_hosts`]), and the per-host call statistics for the reporter
//! ([`Route::take_call_results`]).
//!
//! Plain data, no I/O, no clock, no locks; owned by one worker (through its
//! [`RouteTable`](crate::route_table::RouteTable)). The time is an argument ([`Millis`]), so the
//! rules are exact and their tests instant. Picking and reporting allocate nothing: the idle and
//! overload lists are rings of host indexes whose capacity is reserved when hosts are added.
//!
//! # Behaviour kept from Lars, and where it differs
//! The rules are Lars' `load_balance` rules as SPEC §2.3 states them, in the same order, with
//! the same comparisons (`>` for `err_rate`/`succ_rate`, `>=` for the `contin_*` limits, the
//! window and `window_err_rate`, `>=` for "`idle_timeout`/`overload_timeout` old"). Where the C++
//! code differs from the SPEC, the SPEC wins:
//! - Lars' pick, with both lists non-empty, rotated the idle list a second time and answered
//!   that idle host even on a probe pick, so overloaded hosts were never probed while any host
//!   was idle. Here a probe pick answers the overloaded host and rotates only its list.
//! - Lars left a new host's `idle_ts` unset, so its first window ended at its first report; here
//!   a new host's first window starts when dns adds it (SPEC: "New hosts start idle (with
//!   `idle_ts=now`)").
//! - Time is in milliseconds, not whole seconds.
//!
//! The state changes only on a report: an overloaded host nobody reports on stays overloaded
//! past `overload_timeout` until the next probe's report (as in Lars).

use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use foldhash::HashMap;
use lars_wire::messages::{HostCallResult, HostInfo};

use crate::loadbalance::LbSettings;

/// A point in time: milliseconds since an epoch the caller chooses (the agent uses its own
/// start). Eight bytes, so that per-host state stays small; the rules only subtract two of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// The epoch.
    pub const ZERO: Millis = Millis(0);

    /// `secs` seconds (after the epoch, or as a length of time); saturates instead of wrapping.
    pub const fn from_secs(secs: u64) -> Millis {
        Millis(secs.saturating_mul(1000))
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub const fn since(self, earlier: Millis) -> Millis {
        Millis(self.0.saturating_sub(earlier.0))
    }

    /// This time moved `by` later; saturates.
    pub const fn plus(self, by: Millis) -> Millis {
        Millis(self.0.saturating_add(by.0))
    }
}

impl From<Duration> for Millis {
    /// The whole milliseconds of `d` (for example `start.elapsed()`); saturates.
    fn from(d: Duration) -> Millis {
        Millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// One `ip:port` node serving a route, as Lars identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostAddr {
    /// IPv4 address in host order (`a.b.c.d` is `a<<24 | b<<16 | c<<8 | d`).
    pub ip: u32,
    /// Port.
    pub port: u16,
}

impl HostAddr {
    /// A host from its address parts.
    pub const fn new(ip: Ipv4Addr, port: u16) -> HostAddr {
        HostAddr {
            ip: ip.to_bits(),
            port,
        }
    }

    /// The host named by a wire `HostInfo`'s `int32` fields, or `None` when the port is not a
    /// port (negative or above 65535): such a host cannot be one of ours.
    pub fn from_wire(ip: i32, port: i32) -> Option<HostAddr> {
        Some(HostAddr {
            ip: ip as u32,
            port: u16::try_from(port).ok()?,
        })
    }

    /// The host as a wire `HostInfo`.
    pub fn to_wire(self) -> HostInfo {
        HostInfo {
            ip: self.ip as i32,
            port: i32::from(self.port),
        }
    }

    /// The host as a socket address.
    pub fn socket_addr(self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.ip), self.port)
    }
}

impl fmt::Display for HostAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.socket_addr().fmt(f)
    }
}

/// One host of a route and its load-balancing state, with the Lars field names.
///
/// 48 bytes (pinned by a test): six `u32` counters, two [`Millis`], the address unpacked into
/// `ip`/`port` so that `overload` fits in the padding after them. Handed out by shared reference
/// only; the [`Route`] changes it.
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
    /// IPv4 address in host order.
    pub ip: u32,
    /// Port.
    pub port: u16,
    /// Whether the host is on the overload list (else on the idle list).
    pub overload: bool,
}

impl HostState {
    /// A new host: idle, with a window starting at `now`.
    fn new(addr: HostAddr, lb: &LbSettings, now: Millis) -> HostState {
        let mut host = HostState {
            idle_ts: now,
            overload_ts: Millis::ZERO,
            vsucc: 0,
            verr: 0,
            rsucc: 0,
            rerr: 0,
            contin_succ: 0,
            contin_err: 0,
            ip: addr.ip,
            port: addr.port,
            overload: false,
        };
        host.set_idle(lb, now);
        host
    }

    /// The host's address.
    pub fn addr(&self) -> HostAddr {
        HostAddr {
            ip: self.ip,
            port: self.port,
        }
    }

    /// SPEC "set idle": `vsucc=init_succ_cnt`, `verr=0`, real and continuous counts 0,
    /// `idle_ts=now`. Also the start of a fresh window for a host that stays idle.
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

    /// SPEC "set overloaded": `vsucc=0`, `verr=init_err_cnt`, the rest 0, `overload_ts=now`.
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
            ip: self.ip as i32,
            port: i32::from(self.port),
            succ: self.rsucc,
            err: self.rerr,
            overload: self.overload,
        }
    }
}

/// What [`Route::pick`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Call this host (an idle one, or an overloaded one as a probe).
    Host(HostAddr),
    /// Every host is overloaded and this is not a probe pick: answer OVERLOAD.
    Overload,
    /// The route has no hosts.
    NoHosts,
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

/// A host changed lists: what the worker logs at `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostTransition {
    /// The host moved from the idle list to the overload list's tail.
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
    /// The host moved from the overload list to the idle list's tail.
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

/// A report named a host the route does not have; it was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownHost;

/// What [`Route::update_hosts`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostsUpdate {
    /// Hosts that were new (added idle at the idle list's tail).
    pub added: usize,
    /// Hosts that were gone (removed from whichever list held them).
    pub removed: usize,
    /// Hosts the route has now.
    pub hosts: usize,
}

/// The addresses of a route's hosts, in the order dns first named them ([`Route::addrs`]).
#[derive(Debug, Clone)]
pub struct HostAddrs<'a>(std::slice::Iter<'a, HostState>);

impl Iterator for HostAddrs<'_> {
    type Item = HostAddr;

    fn next(&mut self) -> Option<HostAddr> {
        self.0.next().map(HostState::addr)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for HostAddrs<'_> {}

/// Routes with more hosts than this find a reported host through a hash index; smaller ones (the
/// usual ~10) scan their host vector, which is faster and costs no memory.
const LINEAR_SCAN_MAX: usize = 16;

/// Index of a host in [`Route::hosts`]. A dns answer fits in one 64 KiB frame, so a route has
/// well under `u32::MAX` hosts.
type HostIdx = u32;

/// The hosts of one `(modid, cmdid)` and their idle and overload lists.
///
/// Hosts live in a vector in the order dns first named them; the idle and overload lists are
/// rings of indexes into it. Every host is on exactly one list, the one its `overload` flag
/// names. Both rings have capacity for every host, so moving a host between them or rotating
/// one never allocates.
#[derive(Debug, Clone)]
pub struct Route {
    settings: Arc<LbSettings>,
    hosts: Vec<HostState>,
    idle: VecDeque<HostIdx>,
    overload: VecDeque<HostIdx>,
    /// `addr → index` for routes of more than [`LINEAR_SCAN_MAX`] hosts, else `None`.
    index: Option<Box<HashMap<HostAddr, HostIdx>>>,
    /// Picks since the last probe of the overload list (Lars' `access_cnt`).
    access_cnt: u32,
    /// A report was counted since the last [`Route::take_call_results`].
    has_reports: bool,
}

impl Route {
    /// A route with no hosts yet, judged by `settings`.
    pub fn new(settings: Arc<LbSettings>) -> Route {
        Route {
            settings,
            hosts: Vec::new(),
            idle: VecDeque::new(),
            overload: VecDeque::new(),
            index: None,
            access_cnt: 0,
            has_reports: false,
        }
    }

    /// The number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether the route has no hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Every host, in the order dns first named them.
    pub fn hosts(&self) -> impl ExactSizeIterator<Item = &HostState> + '_ {
        self.hosts.iter()
    }

    /// The address of every host, in the order dns first named them.
    pub fn addrs(&self) -> HostAddrs<'_> {
        HostAddrs(self.hosts.iter())
    }

    /// The state of the host at `addr`, if the route has it.
    pub fn host(&self, addr: HostAddr) -> Option<&HostState> {
        self.find(addr).map(|i| &self.hosts[i as usize])
    }

    /// The idle list, head (next pick) first.
    pub fn idle_hosts(&self) -> impl ExactSizeIterator<Item = HostAddr> + '_ {
        self.idle.iter().map(|&i| self.hosts[i as usize].addr())
    }

    /// The overload list, head (next probe) first.
    pub fn overload_hosts(&self) -> impl ExactSizeIterator<Item = HostAddr> + '_ {
        self.overload.iter().map(|&i| self.hosts[i as usize].addr())
    }

    /// Lars' `access_cnt`: picks since the overload list was last probed.
    pub fn access_cnt(&self) -> u32 {
        self.access_cnt
    }

    /// Picks a host for a `get_host` (SPEC §2.3 `get_host` rule 3). The pick takes the head of a
    /// list and moves it to the tail. It depends on counts only, so it takes no time.
    ///
    /// - idle list empty: every `probe_num + 1`-th pick probes the overload list; the others
    ///   answer [`Pick::Overload`];
    /// - only idle hosts: the idle list in turn;
    /// - both: every `probe_num + 1`-th pick probes the overload list, the others take the idle
    ///   list in turn.
    pub fn pick(&mut self) -> Pick {
        let probe_num = self.settings.probe_num;
        let list = if self.idle.is_empty() {
            if self.overload.is_empty() {
                return Pick::NoHosts;
            }
            if self.access_cnt >= probe_num {
                self.access_cnt = 0;
                &mut self.overload
            } else {
                self.access_cnt += 1;
                return Pick::Overload;
            }
        } else if self.overload.is_empty() {
            &mut self.idle
        } else if self.access_cnt >= probe_num {
            self.access_cnt = 0;
            &mut self.overload
        } else {
            self.access_cnt += 1;
            &mut self.idle
        };
        let i = rotate(list);
        Pick::Host(self.hosts[i as usize].addr())
    }

    /// Counts a caller's report on `addr` (`succ`: the call succeeded) and applies SPEC §2.3
    /// `report` rules 1–4 in order; returns the list change, if any. A host the route does not
    /// have is ignored ([`UnknownHost`]).
    pub fn report(
        &mut self,
        addr: HostAddr,
        succ: bool,
        now: Millis,
    ) -> Result<Option<HostTransition>, UnknownHost> {
        let i = self.find(addr).ok_or(UnknownHost)?;
        self.has_reports = true;
        let lb = &*self.settings;
        let host = &mut self.hosts[i as usize];

        // Rule 1: count.
        if succ {
            host.vsucc = host.vsucc.saturating_add(1);
            host.rsucc = host.rsucc.saturating_add(1);
            host.contin_succ = host.contin_succ.saturating_add(1);
            host.contin_err = 0;
        } else {
            host.verr = host.verr.saturating_add(1);
            host.rerr = host.rerr.saturating_add(1);
            host.contin_err = host.contin_err.saturating_add(1);
            host.contin_succ = 0;
        }

        if !host.overload && !succ {
            // Rule 2: an idle host failed.
            let reason = if ratio(host.verr, host.vsucc) > lb.err_rate {
                Some(OverloadReason::ErrRate)
            } else if host.contin_err >= lb.contin_err_limit {
                Some(OverloadReason::ContinErr)
            } else {
                None
            };
            if let Some(reason) = reason {
                let (succ, err) = (host.vsucc, host.verr);
                host.set_overload(lb, now);
                move_between(&mut self.idle, &mut self.overload, i);
                return Ok(Some(HostTransition::Overloaded {
                    host: addr,
                    reason,
                    succ,
                    err,
                }));
            }
        } else if host.overload && succ {
            // Rule 3: an overloaded host succeeded.
            let reason = if ratio(host.vsucc, host.verr) > lb.succ_rate {
                Some(RecoverReason::SuccRate)
            } else if host.contin_succ >= lb.contin_succ_limit {
                Some(RecoverReason::ContinSucc)
            } else {
                None
            };
            if let Some(reason) = reason {
                let (succ, err) = (host.vsucc, host.verr);
                host.set_idle(lb, now);
                move_between(&mut self.overload, &mut self.idle, i);
                return Ok(Some(HostTransition::Recovered {
                    host: addr,
                    reason,
                    succ,
                    err,
                }));
            }
        }

        // Rule 4: windows.
        if !host.overload {
            if now.since(host.idle_ts) >= Millis::from_secs(lb.idle_timeout) {
                let (rsucc, rerr) = (host.rsucc, host.rerr);
                if rsucc as u64 + rerr as u64 > 0 && ratio(rerr, rsucc) >= lb.window_err_rate {
                    host.set_overload(lb, now);
                    move_between(&mut self.idle, &mut self.overload, i);
                    return Ok(Some(HostTransition::Overloaded {
                        host: addr,
                        reason: OverloadReason::WindowErrRate,
                        succ: rsucc,
                        err: rerr,
                    }));
                }
                host.set_idle(lb, now);
            }
        } else if now.since(host.overload_ts) >= Millis::from_secs(lb.overload_timeout) {
            let (succ, err) = (host.vsucc, host.verr);
            host.set_idle(lb, now);
            move_between(&mut self.overload, &mut self.idle, i);
            return Ok(Some(HostTransition::Recovered {
                host: addr,
                reason: RecoverReason::OverloadTimeout,
                succ,
                err,
            }));
        }
        Ok(None)
    }

    /// Replaces the route's hosts with `hosts` (a dns reply or push): hosts that are new are
    /// added idle (window starting `now`) at the idle list's tail in the order given, hosts that
    /// are gone are removed from whichever list held them, and hosts that stay keep their state
    /// and their place. Duplicates in `hosts` count once. An empty `hosts` removes every host
    /// (and forgets `access_cnt` and unsent statistics, as Lars did by deleting the route).
    pub fn update_hosts(&mut self, hosts: &[HostAddr], now: Millis) -> HostsUpdate {
        if hosts.is_empty() {
            let removed = self.hosts.len();
            self.clear();
            return HostsUpdate {
                added: 0,
                removed,
                hosts: 0,
            };
        }

        let removed = self.remove_gone(hosts);

        let before = self.hosts.len();
        self.hosts.reserve_exact(hosts.len().saturating_sub(before));
        for &addr in hosts {
            if self.find(addr).is_none() {
                self.push_idle(addr, now);
            }
        }
        let n = self.hosts.len();
        self.idle.reserve_exact(n - self.idle.len());
        self.overload.reserve_exact(n - self.overload.len());
        if self.hosts.capacity() > 2 * n {
            self.hosts.shrink_to_fit();
            self.idle.shrink_to(n);
            self.overload.shrink_to(n);
        }
        HostsUpdate {
            added: n - before,
            removed,
            hosts: n,
        }
    }

    /// Whether a report was counted since the last [`Route::take_call_results`].
    pub fn has_reports(&self) -> bool {
        self.has_reports
    }

    /// The statistics for the reporter — one [`HostCallResult`] per host (in host order) with
    /// its real window counts and overload flag — and clears [`Route::has_reports`].
    pub fn take_call_results(&mut self) -> Vec<HostCallResult> {
        self.has_reports = false;
        self.hosts.iter().map(HostState::call_result).collect()
    }

    /// Removes every host and frees their memory.
    fn clear(&mut self) {
        self.hosts = Vec::new();
        self.idle = VecDeque::new();
        self.overload = VecDeque::new();
        self.index = None;
        self.access_cnt = 0;
        self.has_reports = false;
    }

    /// Removes the hosts that are not in `keep`, renumbering the lists and the index; returns how
    /// many went. A small route that loses no host (the usual periodic re-pull) allocates
    /// nothing; otherwise scratch space, once per dns update.
    fn remove_gone(&mut self, keep: &[HostAddr]) -> usize {
        let set: Option<foldhash::HashSet<HostAddr>> =
            (keep.len() > LINEAR_SCAN_MAX).then(|| keep.iter().copied().collect());
        let stays = |host: &HostState| match &set {
            Some(set) => set.contains(&host.addr()),
            None => keep.contains(&host.addr()),
        };
        let removed = self.hosts.iter().filter(|h| !stays(h)).count();
        if removed == 0 {
            return 0;
        }
        // Old index → new index, or MAX for a host that goes.
        let mut next: HostIdx = 0;
        let renumber: Vec<HostIdx> = self
            .hosts
            .iter()
            .map(|h| {
                if stays(h) {
                    next += 1;
                    next - 1
                } else {
                    HostIdx::MAX
                }
            })
            .collect();
        self.hosts.retain(stays);
        for list in [&mut self.idle, &mut self.overload] {
            list.retain_mut(|i| {
                *i = renumber[*i as usize];
                *i != HostIdx::MAX
            });
        }
        self.rebuild_index();
        removed
    }

    /// Appends a new idle host at the idle list's tail.
    fn push_idle(&mut self, addr: HostAddr, now: Millis) {
        let i = self.hosts.len() as HostIdx;
        self.hosts.push(HostState::new(addr, &self.settings, now));
        self.idle.push_back(i);
        match &mut self.index {
            Some(index) => {
                index.insert(addr, i);
            }
            None if self.hosts.len() > LINEAR_SCAN_MAX => self.rebuild_index(),
            None => {}
        }
    }

    /// Builds the host index if the route is large enough to want one, else drops it.
    fn rebuild_index(&mut self) {
        self.index = (self.hosts.len() > LINEAR_SCAN_MAX).then(|| {
            Box::new(
                self.hosts
                    .iter()
                    .enumerate()
                    .map(|(i, h)| (h.addr(), i as HostIdx))
                    .collect(),
            )
        });
    }

    /// The index of the host at `addr`.
    fn find(&self, addr: HostAddr) -> Option<HostIdx> {
        match &self.index {
            Some(index) => index.get(&addr).copied(),
            None => self
                .hosts
                .iter()
                .position(|h| h.ip == addr.ip && h.port == addr.port)
                .map(|i| i as HostIdx),
        }
    }

    /// Checks the structure: every host on exactly one list, the one its flag names; the index
    /// (when present) agrees with the vector; the rings have room for every host.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let n = self.hosts.len();
        let mut seen = vec![0u8; n];
        for (list, overload) in [(&self.idle, false), (&self.overload, true)] {
            for &i in list {
                let host = self
                    .hosts
                    .get(i as usize)
                    .ok_or(format!("index {i} >= {n}"))?;
                if host.overload != overload {
                    return Err(format!(
                        "{} flag {} on wrong list",
                        host.addr(),
                        host.overload
                    ));
                }
                seen[i as usize] += 1;
            }
            if list.capacity() < n {
                return Err(format!("list capacity {} < {n} hosts", list.capacity()));
            }
        }
        if let Some(i) = seen.iter().position(|&c| c != 1) {
            return Err(format!("host {i} is on {} lists", seen[i]));
        }
        let mut addrs: Vec<HostAddr> = self.hosts.iter().map(HostState::addr).collect();
        addrs.sort();
        addrs.dedup();
        if addrs.len() != n {
            return Err("duplicate hosts".into());
        }
        match &self.index {
            Some(index) => {
                if n <= LINEAR_SCAN_MAX || index.len() != n {
                    return Err(format!("index of {} for {n} hosts", index.len()));
                }
                for (i, h) in self.hosts.iter().enumerate() {
                    if index.get(&h.addr()) != Some(&(i as HostIdx)) {
                        return Err(format!("index disagrees for {}", h.addr()));
                    }
                }
            }
            None if n > LINEAR_SCAN_MAX => return Err(format!("no index for {n} hosts")),
            None => {}
        }
        if self.access_cnt > self.settings.probe_num {
            return Err(format!("access_cnt {} > probe_num", self.access_cnt));
        }
        Ok(())
    }
}

/// `part / (part + other)` as Lars computes it (in `f64`). Never divides by zero here: the
/// counter just incremented is `part` or `other`, or the caller checked the sum.
fn ratio(part: u32, other: u32) -> f64 {
    f64::from(part) / (f64::from(part) + f64::from(other))
}

/// Moves the head of `list` to its tail and returns it. Never allocates: the length is unchanged.
fn rotate(list: &mut VecDeque<HostIdx>) -> HostIdx {
    let head = list[0];
    list.rotate_left(1);
    head
}

/// Moves host `i` from `from` to the tail of `to`. Never allocates: `to` has room for every host.
fn move_between(from: &mut VecDeque<HostIdx>, to: &mut VecDeque<HostIdx>, i: HostIdx) {
    if let Some(pos) = from.iter().position(|&j| j == i) {
        from.remove(pos);
    }
    to.push_back(i);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc_counter;
    use proptest::prelude::*;

    fn addr(last: u8) -> HostAddr {
        HostAddr::new(Ipv4Addr::new(10, 0, 0, last), 9000)
    }

    fn route_with(lb: LbSettings, n: u8, now: Millis) -> Route {
        let mut route = Route::new(Arc::new(lb));
        let hosts: Vec<HostAddr> = (1..=n).map(addr).collect();
        route.update_hosts(&hosts, now);
        route
    }

    fn route(n: u8) -> Route {
        route_with(LbSettings::default(), n, Millis::ZERO)
    }

    fn secs(s: u64) -> Millis {
        Millis::from_secs(s)
    }

    /// Fails `addr` until it is overloaded (by `contin_err_limit` with the defaults).
    fn overload(route: &mut Route, host: HostAddr, now: Millis) {
        for _ in 0..1000 {
            if let Some(HostTransition::Overloaded { .. }) = route.report(host, false, now).unwrap()
            {
                return;
            }
        }
        panic!("{host} never overloaded");
    }

    #[test]
    fn host_state_is_at_most_48_bytes() {
        // 100,000 routes × 10 hosts must fit in < 200 bytes per host with the table around them.
        assert!(std::mem::size_of::<HostState>() <= 48);
        assert_eq!(std::mem::size_of::<HostIdx>(), 4);
    }

    #[test]
    fn a_route_without_hosts_picks_nothing() {
        let mut route = route(0);
        assert_eq!(route.pick(), Pick::NoHosts);
        assert_eq!(route.access_cnt(), 0);
    }

    #[test]
    fn three_hosts_are_picked_in_strict_rotation() {
        let mut route = route(3);
        let picks: Vec<Pick> = (0..9).map(|_| route.pick()).collect();
        let expected: Vec<Pick> = [1, 2, 3, 1, 2, 3, 1, 2, 3]
            .iter()
            .map(|&i| Pick::Host(addr(i)))
            .collect();
        assert_eq!(picks, expected);
        assert_eq!(route.access_cnt(), 0, "no overloaded host: no counting");
    }

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
    fn overloaded_host_is_probed_once_every_probe_num_plus_one_picks() {
        let mut route = route(3);
        for _ in 0..7 {
            route.pick(); // picks with nothing overloaded leave access_cnt at 0
        }
        overload(&mut route, addr(2), secs(1));
        let probe_num = 10;
        let mut probes = Vec::new();
        let mut idle_picks = Vec::new();
        for n in 1..=10 * (probe_num + 1) {
            match route.pick() {
                Pick::Host(h) if h == addr(2) => probes.push(n),
                Pick::Host(h) => idle_picks.push(h),
                other => panic!("pick {n}: {other:?}"),
            }
        }
        let expected: Vec<usize> = (1..=10).map(|k| k * (probe_num + 1)).collect();
        assert_eq!(probes, expected);
        // The idle hosts keep their strict rotation around the probes: after 7 picks the idle
        // list was [2, 3, 1]; without host 2 it is [3, 1].
        assert_eq!(idle_picks.len(), 100);
        for (k, host) in idle_picks.iter().enumerate() {
            assert_eq!(
                *host,
                if k % 2 == 0 { addr(3) } else { addr(1) },
                "idle pick {k}"
            );
        }
    }

    #[test]
    fn all_hosts_overloaded_answers_overload_except_on_probe_picks() {
        let mut route = route(2);
        overload(&mut route, addr(1), secs(1));
        overload(&mut route, addr(2), secs(1));
        assert_eq!(route.idle_hosts().len(), 0);
        let picks: Vec<(usize, Pick)> = (1..=33).map(|n| (n, route.pick())).collect();
        let probes: Vec<(usize, Pick)> = picks
            .iter()
            .copied()
            .filter(|(_, p)| *p != Pick::Overload)
            .collect();
        assert_eq!(
            probes,
            [
                (11, Pick::Host(addr(1))),
                (22, Pick::Host(addr(2))),
                (33, Pick::Host(addr(1))),
            ]
        );
        assert_eq!(route.access_cnt(), 0);
    }

    #[test]
    fn access_cnt_carries_over_when_the_last_idle_host_is_overloaded() {
        let mut route = route(2);
        overload(&mut route, addr(1), secs(1));
        for _ in 0..4 {
            assert_eq!(route.pick(), Pick::Host(addr(2)));
        }
        overload(&mut route, addr(2), secs(1));
        assert_eq!(route.access_cnt(), 4);
        let first_probe = (1..=11).find(|_| route.pick() != Pick::Overload);
        assert_eq!(
            first_probe,
            Some(7),
            "probe when access_cnt reaches probe_num"
        );
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

    #[test]
    fn a_report_for_an_unknown_host_is_ignored() {
        let mut route = route(2);
        assert_eq!(route.report(addr(9), false, secs(1)), Err(UnknownHost));
        let other_port = HostAddr {
            port: 9001,
            ..addr(1)
        };
        assert_eq!(route.report(other_port, false, secs(1)), Err(UnknownHost));
        assert!(!route.has_reports());
        assert!(route.hosts().all(|h| h.rerr == 0));
    }

    #[test]
    fn an_update_adds_and_removes_hosts_in_either_list_keeping_survivors_state() {
        let mut route = route(4);
        overload(&mut route, addr(2), secs(1));
        overload(&mut route, addr(3), secs(1));
        route.report(addr(1), false, secs(2)).unwrap();
        route.report(addr(4), true, secs(2)).unwrap();
        let kept_1 = route.host(addr(1)).unwrap().clone();
        let kept_3 = route.host(addr(3)).unwrap().clone();

        // Drop 2 (overloaded) and 4 (idle); add 5 and 6; 1 and 3 stay.
        let update = route.update_hosts(&[addr(5), addr(3), addr(1), addr(6), addr(5)], secs(9));
        assert_eq!(
            update,
            HostsUpdate {
                added: 2,
                removed: 2,
                hosts: 4
            }
        );
        assert_eq!(route.host(addr(1)), Some(&kept_1));
        assert_eq!(route.host(addr(3)), Some(&kept_3));
        assert!(route.host(addr(2)).is_none() && route.host(addr(4)).is_none());
        assert_eq!(
            route.idle_hosts().collect::<Vec<_>>(),
            [addr(1), addr(5), addr(6)]
        );
        assert_eq!(route.overload_hosts().collect::<Vec<_>>(), [addr(3)]);
        let new = route.host(addr(6)).unwrap();
        assert_eq!(
            (new.overload, new.vsucc, new.idle_ts),
            (false, 180, secs(9))
        );
        route.check_invariants().unwrap();
        assert_eq!(route.report(addr(2), true, secs(9)), Err(UnknownHost));
    }

    #[test]
    fn an_empty_update_removes_every_host() {
        let mut route = route(3);
        overload(&mut route, addr(1), secs(1));
        let update = route.update_hosts(&[], secs(2));
        assert_eq!(update.removed, 3);
        assert!(route.is_empty());
        assert_eq!(route.pick(), Pick::NoHosts);
        assert!(!route.has_reports());
        route.check_invariants().unwrap();
    }

    #[test]
    fn large_routes_find_hosts_through_the_index() {
        let mut route = route(40);
        route.check_invariants().unwrap();
        assert!(route.index.is_some());
        overload(&mut route, addr(33), secs(1));
        assert!(route.host(addr(33)).unwrap().overload);
        let few: Vec<HostAddr> = (1..=5).map(addr).collect();
        route.update_hosts(&few, secs(2));
        assert!(route.index.is_none());
        route.check_invariants().unwrap();
    }

    #[test]
    fn take_call_results_carries_real_counts_and_overload_and_clears_the_flag() {
        let mut route = route(2);
        assert!(!route.has_reports());
        route.report(addr(1), true, secs(1)).unwrap();
        route.report(addr(1), false, secs(1)).unwrap();
        route.report(addr(1), true, secs(1)).unwrap();
        overload(&mut route, addr(2), secs(1));
        route.report(addr(2), false, secs(1)).unwrap();
        assert!(route.has_reports());
        let results = route.take_call_results();
        assert_eq!(
            results,
            [
                HostCallResult {
                    ip: addr(1).ip as i32,
                    port: 9000,
                    succ: 2,
                    err: 1,
                    overload: false
                },
                HostCallResult {
                    ip: addr(2).ip as i32,
                    port: 9000,
                    succ: 0,
                    err: 1,
                    overload: true
                },
            ]
        );
        assert!(!route.has_reports());
    }

    #[test]
    fn picks_and_reports_allocate_nothing() {
        let mut route = route(10);
        let capacity = (
            route.hosts.capacity(),
            route.idle.capacity(),
            route.overload.capacity(),
        );
        let before = alloc_counter::allocations();
        let mut now = secs(1);
        for n in 0..20_000u64 {
            now = now.plus(Millis(7));
            if let Pick::Host(h) = route.pick() {
                // Host 3 always fails (overloaded, probed, back by timeout, ...); others mostly
                // succeed: hosts cross between the lists many times.
                let succ = h != addr(3) && n % 5 != 0;
                route.report(h, succ, now).unwrap();
            }
        }
        assert_eq!(alloc_counter::allocations(), before);
        assert_eq!(
            capacity,
            (
                route.hosts.capacity(),
                route.idle.capacity(),
                route.overload.capacity()
            )
        );
    }

    #[test]
    fn millis_saturate() {
        assert_eq!(Millis(5).since(Millis(9)), Millis::ZERO);
        assert_eq!(Millis::from_secs(u64::MAX), Millis(u64::MAX));
        assert_eq!(Millis(u64::MAX).plus(Millis(1)), Millis(u64::MAX));
        assert_eq!(Millis::from(Duration::from_micros(2500)), Millis(2));
    }

    #[test]
    fn wire_hosts_convert_both_ways() {
        let host = HostAddr::new(Ipv4Addr::new(192, 168, 1, 10), 8080);
        let wire = host.to_wire();
        assert!(wire.ip < 0);
        assert_eq!(HostAddr::from_wire(wire.ip, wire.port), Some(host));
        assert_eq!(HostAddr::from_wire(1, 65536), None);
        assert_eq!(HostAddr::from_wire(1, -1), None);
        assert_eq!(host.to_string(), "192.168.1.10:8080");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Pick,
        Report { host: u8, succ: bool },
        Update { hosts: Vec<u8> },
        Advance { ms: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Pick),
            6 => (0u8..40, prop::bool::weighted(0.6)).prop_map(|(host, succ)| Op::Report { host, succ }),
            1 => prop::collection::vec(0u8..40, 0..30).prop_map(|hosts| Op::Update { hosts }),
            2 => (0u64..20_000).prop_map(|ms| Op::Advance { ms }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_picks_reports_and_updates_keep_the_lists_consistent(
            initial in prop::collection::vec(0u8..40, 0..30),
            ops in prop::collection::vec(op(), 1..300),
            probe_num in 1u32..5,
        ) {
            let lb = LbSettings { probe_num, ..LbSettings::default() };
            let mut route = Route::new(Arc::new(lb));
            let hosts = |ids: &[u8]| ids.iter().map(|&i| addr(i)).collect::<Vec<_>>();
            let mut now = Millis::ZERO;
            route.update_hosts(&hosts(&initial), now);
            for op in ops {
                match op {
                    Op::Pick => {
                        let pick = route.pick();
                        match pick {
                            Pick::Host(h) => prop_assert!(route.host(h).is_some()),
                            Pick::Overload => prop_assert!(route.idle_hosts().len() == 0 && !route.is_empty()),
                            Pick::NoHosts => prop_assert!(route.is_empty()),
                        }
                    }
                    Op::Report { host, succ } => {
                        let known = route.host(addr(host)).is_some();
                        let was = route.host(addr(host)).map(|h| h.overload);
                        let result = route.report(addr(host), succ, now);
                        prop_assert_eq!(result.is_ok(), known);
                        match result {
                            Ok(Some(HostTransition::Overloaded { .. })) => {
                                prop_assert_eq!(was, Some(false));
                                prop_assert!(route.host(addr(host)).unwrap().overload);
                            }
                            Ok(Some(HostTransition::Recovered { .. })) => {
                                prop_assert_eq!(was, Some(true));
                                prop_assert!(!route.host(addr(host)).unwrap().overload);
                            }
                            Ok(None) => prop_assert_eq!(route.host(addr(host)).map(|h| h.overload), was),
                            Err(UnknownHost) => {}
                        }
                    }
                    Op::Update { hosts: ids } => {
                        let before: Vec<HostState> = route.hosts().cloned().collect();
                        route.update_hosts(&hosts(&ids), now);
                        for old in before {
                            if ids.iter().any(|&i| addr(i) == old.addr()) {
                                prop_assert_eq!(route.host(old.addr()), Some(&old));
                            }
                        }
                        let mut want = hosts(&ids);
                        want.sort();
                        want.dedup();
                        let mut have: Vec<HostAddr> = route.hosts().map(HostState::addr).collect();
                        have.sort();
                        prop_assert_eq!(have, want);
                    }
                    Op::Advance { ms } => now = now.plus(Millis(ms)),
                }
                if let Err(e) = route.check_invariants() {
                    return Err(TestCaseError::fail(e));
                }
            }
        }
    }
}
