//! One route — the hosts of one `(modid, cmdid)` — and how it hands them out: which host a
//! `get_host` gets ([`Route::pick`]: the idle list in turn, every `probe_num + 1`-th pick a
//! probe of the overload list), which list a reported host goes to ([`Route::report`], by the
//! host's own rules in [`host`](super::host)), how a dns answer changes the hosts
//! ([`Route::update_hosts`]), and the per-host call statistics for the reporter
//! ([`Route::take_call_results`]). When more than `panic_threshold` percent of its hosts are overloaded the
//! route is in *panic*: its picks go round robin over every host, idle or not, until enough of
//! them recover ([`Route::take_panic_change`] says when it entered or left).
//!
//! Plain data, no I/O, no clock, no locks; owned by one worker (through its
//! [`RouteTable`](super::RouteTable)). The time is an argument ([`Millis`]), so the rules are
//! exact and their tests instant. Picking and reporting allocate nothing: the idle and overload
//! lists are rings of host indexes whose capacity is reserved when hosts are added.

use std::collections::VecDeque;
use std::sync::Arc;

use foldhash::HashMap;
use lars_wire::HostAddr;
use lars_wire::messages::HostCallResult;

use super::LbSettings;
use super::host::{HostState, HostTransition};
use crate::clock::Millis;

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

/// A report named a host the route does not have; it was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownHost;

/// A route entered or left panic mode (see [`LbSettings::panic_threshold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicTransition {
    /// More than `panic_threshold` percent of the hosts are overloaded: picks go round robin over
    /// every host.
    Entered {
        /// Overloaded hosts.
        overloaded: usize,
        /// All hosts.
        hosts: usize,
    },
    /// Fewer are overloaded (or the route has no hosts any more): picks follow the idle and
    /// overload lists again.
    Left {
        /// Overloaded hosts.
        overloaded: usize,
        /// All hosts.
        hosts: usize,
    },
}

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
    /// In panic mode: picks go round robin over every host.
    panic: bool,
    /// Whether panic mode was on when [`Route::take_panic_change`] last said.
    panic_reported: bool,
    /// The host (index into `hosts`) the next panic pick answers.
    panic_next: HostIdx,
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
            panic: false,
            panic_reported: false,
            panic_next: 0,
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
    #[cfg(test)]
    pub fn hosts(&self) -> impl ExactSizeIterator<Item = &HostState> + '_ {
        self.hosts.iter()
    }

    /// The address of every host, in the order dns first named them.
    pub fn addrs(&self) -> HostAddrs<'_> {
        HostAddrs(self.hosts.iter())
    }

    /// The state of the host at `addr`, if the route has it.
    #[cfg(test)]
    pub fn host(&self, addr: HostAddr) -> Option<&HostState> {
        self.find(addr).map(|i| &self.hosts[i as usize])
    }

    /// The idle list, head (next pick) first.
    #[cfg(test)]
    pub fn idle_hosts(&self) -> impl ExactSizeIterator<Item = HostAddr> + '_ {
        self.idle.iter().map(|&i| self.hosts[i as usize].addr())
    }

    /// The overload list, head (next probe) first.
    #[cfg(test)]
    pub fn overload_hosts(&self) -> impl ExactSizeIterator<Item = HostAddr> + '_ {
        self.overload.iter().map(|&i| self.hosts[i as usize].addr())
    }

    /// Lars' `access_cnt`: picks since the overload list was last probed.
    #[cfg(test)]
    pub fn access_cnt(&self) -> u32 {
        self.access_cnt
    }

    /// Whether the route is in panic mode now.
    #[cfg(test)]
    pub fn in_panic(&self) -> bool {
        self.panic
    }

    /// Whether panic mode was entered or left since the last call (for the log and counters):
    /// the change, with the counts that decided it.
    pub fn take_panic_change(&mut self) -> Option<PanicTransition> {
        if self.panic == self.panic_reported {
            return None;
        }
        self.panic_reported = self.panic;
        let (overloaded, hosts) = (self.overload.len(), self.hosts.len());
        Some(if self.panic {
            PanicTransition::Entered { overloaded, hosts }
        } else {
            PanicTransition::Left { overloaded, hosts }
        })
    }

    /// Picks a host for a `get_host` of a route that has hosts. The pick takes the head of a
    /// list and moves it to the tail. It depends on counts only, so it takes no time.
    ///
    /// - in panic mode: every host in turn (in the order dns first named them), overloaded or
    ///   not, so no pick answers OVERLOAD and every overloaded host's callers report on it;
    /// - idle list empty: every `probe_num + 1`-th pick probes the overload list; the others
    ///   answer [`Pick::Overload`];
    /// - only idle hosts: the idle list in turn;
    /// - both: every `probe_num + 1`-th pick probes the overload list, the others take the idle
    ///   list in turn.
    pub fn pick(&mut self) -> Pick {
        if self.panic {
            // `panic` implies some host is overloaded, so `hosts` is not empty.
            let i = self.panic_next % self.hosts.len() as HostIdx;
            self.panic_next = (i + 1) % self.hosts.len() as HostIdx;
            return Pick::Host(self.hosts[i as usize].addr());
        }
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

    /// Counts a caller's report on `addr` (`succ`: the call succeeded) by the host's rules
    /// (`HostState::report`) and moves the host to the other list's tail when it changed
    /// state; returns the change, if any. A host the route does not have is ignored
    /// ([`UnknownHost`]).
    pub fn report(
        &mut self,
        addr: HostAddr,
        succ: bool,
        now: Millis,
    ) -> Result<Option<HostTransition>, UnknownHost> {
        let i = self.find(addr).ok_or(UnknownHost)?;
        self.has_reports = true;
        Ok(self.report_at(i, succ, now))
    }

    /// Counts `count` reports in a row on `addr`, all successes (`succ`) or all failures, at
    /// `now` — exactly as `count` calls of [`Route::report`] would, and hands every state change
    /// to `changed` in the order it happened. A host the route does not have is ignored
    /// ([`UnknownHost`]).
    ///
    /// Once one report of the run is counted at `now`, a host that is idle after a success (or
    /// overloaded after a failure) stays so for the rest of the run: rules 2 and 3 need the other
    /// outcome or the other state, and rule 4 was judged at this `now` by the report before
    /// (either its window is younger than `idle_timeout`/`overload_timeout`, both at least 1 s,
    /// or it just started at `now`). The rest of such a run is only counted, in one step
    /// ([`HostState::count_run`]); a run that can change the state is counted one report at a
    /// time, which ends within `contin_err_limit` / `contin_succ_limit` reports. The unit tests
    /// check the equality against one-by-one reports.
    pub fn report_run(
        &mut self,
        addr: HostAddr,
        succ: bool,
        count: u32,
        now: Millis,
        mut changed: impl FnMut(HostTransition),
    ) -> Result<(), UnknownHost> {
        let i = self.find(addr).ok_or(UnknownHost)?;
        if count == 0 {
            return Ok(());
        }
        self.has_reports = true;
        let mut left = count;
        while left > 0 {
            if left < count && self.hosts[i as usize].overload != succ {
                self.hosts[i as usize].count_run(succ, left);
                break;
            }
            if let Some(transition) = self.report_at(i, succ, now) {
                changed(transition);
            }
            left -= 1;
        }
        Ok(())
    }

    /// One report on host `i`; moves it between the lists when it changed state.
    fn report_at(&mut self, i: HostIdx, succ: bool, now: Millis) -> Option<HostTransition> {
        let transition = self.hosts[i as usize].report(succ, &self.settings, now);
        match transition {
            Some(HostTransition::Overloaded { .. }) => {
                move_between(&mut self.idle, &mut self.overload, i);
            }
            Some(HostTransition::Recovered { .. }) => {
                move_between(&mut self.overload, &mut self.idle, i);
            }
            None => return None,
        }
        self.refresh_panic();
        transition
    }

    /// The route's `probe_num` (one pick in every `probe_num + 1` probes the overload list).
    pub fn probe_num(&self) -> u32 {
        self.settings.probe_num
    }

    /// Whether the route is in panic mode (its picks go round robin over every host).
    pub fn panicking(&self) -> bool {
        self.panic
    }

    /// Every host with its overload flag: the idle list head first, then the overload list head
    /// first (what a caller's route view holds).
    pub fn view_hosts(&self) -> impl Iterator<Item = (HostAddr, bool)> + Clone + '_ {
        self.idle.iter().chain(self.overload.iter()).map(|&i| {
            (
                self.hosts[i as usize].addr(),
                self.hosts[i as usize].overload,
            )
        })
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
            self.refresh_panic();
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
        self.refresh_panic();
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

    /// Whether the route should be in panic mode: panic mode is on (`panic_threshold` > 0) and
    /// more than `panic_threshold` percent of its hosts are overloaded.
    fn panic_due(&self) -> bool {
        let threshold = self.settings.panic_threshold as usize;
        threshold > 0
            && !self.overload.is_empty()
            && self.overload.len() * 100 > threshold * self.hosts.len()
    }

    /// Enters or leaves panic mode after the overloaded share changed.
    fn refresh_panic(&mut self) {
        self.panic = self.panic_due();
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
                .position(|h| h.addr == addr)
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
        if self.panic != self.panic_due() {
            return Err(format!("panic {} but due {}", self.panic, self.panic_due()));
        }
        Ok(())
    }
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
    use super::super::test_support::{
        addr, call_result, overload, rotations, route, route_with, secs,
    };
    use super::*;
    use crate::alloc_counter;
    use proptest::prelude::*;

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
        assert_eq!(picks, rotations(3, 3));
        assert_eq!(route.access_cnt(), 0, "no overloaded host: no counting");
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
            [call_result(1, 2, 1, false), call_result(2, 0, 1, true),]
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

    fn panicking(threshold: u32, n: u8) -> Route {
        let lb = LbSettings {
            panic_threshold: threshold,
            ..LbSettings::default()
        };
        super::super::test_support::route_with(lb, n, Millis::ZERO)
    }

    /// A route of `n` hosts, all overloaded, with `panic_threshold` 99: in panic.
    fn every_host_overloaded(n: u8) -> Route {
        let mut route = panicking(99, n);
        for i in 1..=n {
            overload(&mut route, addr(i), secs(1));
        }
        route
    }

    #[test]
    fn panic_threshold_0_answers_overload_as_lars_does() {
        let mut route = panicking(0, 2);
        overload(&mut route, addr(1), secs(1));
        overload(&mut route, addr(2), secs(1));
        assert!(!route.in_panic());
        assert_eq!(route.take_panic_change(), None);
        let overloads = (0..22).filter(|_| route.pick() == Pick::Overload).count();
        assert_eq!(overloads, 20, "all but the two probe picks");
    }

    #[test]
    fn a_route_enters_panic_when_the_threshold_share_of_its_hosts_is_overloaded() {
        let mut route = panicking(50, 4);
        overload(&mut route, addr(1), secs(1));
        overload(&mut route, addr(2), secs(1));
        assert!(
            !route.in_panic(),
            "2 of 4 is 50 %: at the threshold, not more"
        );
        assert_eq!(route.take_panic_change(), None);
        overload(&mut route, addr(3), secs(1));
        assert!(route.in_panic(), "3 of 4 is more than 50 %");
        assert_eq!(
            route.take_panic_change(),
            Some(PanicTransition::Entered {
                overloaded: 3,
                hosts: 4
            })
        );
        assert_eq!(route.take_panic_change(), None, "said once");
        route.check_invariants().unwrap();
    }

    #[test]
    fn picks_in_panic_go_round_robin_over_every_host_and_never_answer_overload() {
        let mut route = every_host_overloaded(3);
        assert!(route.in_panic());
        let picks: Vec<Pick> = (0..9).map(|_| route.pick()).collect();
        assert_eq!(picks, rotations(3, 3));

        // With idle hosts left, panic still spreads over all of them, not the idle ones only.
        let mut route = panicking(40, 4);
        overload(&mut route, addr(2), secs(1));
        overload(&mut route, addr(3), secs(1));
        let mut counts = [0usize; 5];
        for _ in 0..40 {
            match route.pick() {
                Pick::Host(h) => counts[usize::from(h.ip.octets()[3])] += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(counts[1..], [10, 10, 10, 10]);
    }

    #[test]
    fn overloaded_hosts_picked_in_panic_are_probed_and_the_route_leaves_panic_as_they_recover() {
        let mut route = panicking(40, 4);
        overload(&mut route, addr(1), secs(1));
        overload(&mut route, addr(2), secs(1));
        assert!(route.in_panic(), "2 of 4 is more than 40 %");
        route.take_panic_change();
        // Callers report success on whatever they were given; host 1 comes back first (6
        // successes by succ_rate), which leaves 1 of 4 overloaded: not more than 40 %.
        let mut now = secs(2);
        let mut left = None;
        for n in 0..40 {
            now = now.plus(Millis(10));
            let Pick::Host(h) = route.pick() else {
                panic!("pick {n} answered no host in panic");
            };
            if let Some(HostTransition::Recovered { host, .. }) =
                route.report(h, true, now).unwrap()
            {
                left = route.take_panic_change().map(|t| (host, t));
                break;
            }
        }
        assert_eq!(
            left,
            Some((
                addr(1),
                PanicTransition::Left {
                    overloaded: 1,
                    hosts: 4
                }
            ))
        );
        assert!(!route.in_panic());
        // Back to Lars' picks: host 2 is probed once in probe_num + 1 picks.
        let probes = (0..22)
            .filter(|_| route.pick() == Pick::Host(addr(2)))
            .count();
        assert_eq!(probes, 2);
        route.check_invariants().unwrap();
    }

    #[test]
    fn a_dns_update_can_start_and_end_panic() {
        let mut route = panicking(60, 4);
        overload(&mut route, addr(1), secs(1));
        overload(&mut route, addr(2), secs(1));
        assert!(!route.in_panic(), "2 of 4 is below 60 %");
        // dns drops two idle hosts: 2 of 3 overloaded.
        route.update_hosts(&[addr(1), addr(2), addr(3)], secs(2));
        assert_eq!(
            route.take_panic_change(),
            Some(PanicTransition::Entered {
                overloaded: 2,
                hosts: 3
            })
        );
        route.update_hosts(&[], secs(3));
        assert_eq!(
            route.take_panic_change(),
            Some(PanicTransition::Left {
                overloaded: 0,
                hosts: 0
            })
        );
        assert_eq!(route.pick(), Pick::NoHosts);
        route.check_invariants().unwrap();
    }

    #[test]
    fn panic_picks_allocate_nothing() {
        let mut route = every_host_overloaded(10);
        let before = alloc_counter::allocations();
        for n in 0..10_000u64 {
            if let Pick::Host(h) = route.pick() {
                route.report(h, n % 3 == 0, secs(2)).unwrap();
            }
        }
        assert_eq!(alloc_counter::allocations(), before);
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
            panic_threshold in prop_oneof![Just(0u32), 1u32..=99],
        ) {
            let lb = LbSettings { probe_num, panic_threshold, ..LbSettings::default() };
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
                            Pick::Overload => prop_assert!(
                                route.idle_hosts().len() == 0 && !route.is_empty() && !route.in_panic()
                            ),
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

    /// A batch as a fast-path caller sends it: each host's results (in first-seen order of the
    /// hosts), run-length encoded in order.
    fn grouped_runs(results: &[(u8, bool)]) -> Vec<(u8, Vec<(bool, u32)>)> {
        let mut grouped: Vec<(u8, Vec<(bool, u32)>)> = Vec::new();
        for &(host, succ) in results {
            let at = match grouped.iter().position(|(h, _)| *h == host) {
                Some(at) => at,
                None => {
                    grouped.push((host, Vec::new()));
                    grouped.len() - 1
                }
            };
            match grouped[at].1.last_mut() {
                Some((s, n)) if *s == succ => *n += 1,
                _ => grouped[at].1.push((succ, 1)),
            }
        }
        grouped
    }

    fn batch_settings() -> impl Strategy<Value = LbSettings> {
        (
            1u32..20,
            1u32..20,
            1u32..200,
            1u32..8,
            1u64..3,
            1u64..3,
            1u32..4,
        )
            .prop_flat_map(|(ce, cs, isc, iec, it, ot, probe)| {
                prop_oneof![Just(0u32), 1u32..=99].prop_map(move |panic_threshold| LbSettings {
                    contin_err_limit: ce,
                    contin_succ_limit: cs,
                    init_succ_cnt: isc,
                    init_err_cnt: iec,
                    idle_timeout: it,
                    overload_timeout: ot,
                    probe_num: probe,
                    panic_threshold,
                    ..LbSettings::default()
                })
            })
    }

    /// One batch: milliseconds since the batch before, results as runs of (host, succ, length).
    type Batch = (u64, Vec<(u8, bool, u32)>);

    fn batches() -> impl Strategy<Value = Vec<Batch>> {
        prop::collection::vec(
            (
                prop_oneof![Just(0u64), 1u64..500, 500u64..4000],
                prop::collection::vec((1u8..5, any::<bool>(), 1u32..60), 0..12),
            ),
            1..25,
        )
    }

    #[test]
    fn a_long_run_of_successes_on_an_idle_host_is_counted_in_one_step() {
        let mut route = route(2);
        route
            .report_run(addr(1), true, u32::MAX, secs(1), |_| panic!("no change"))
            .unwrap();
        let host = route.host(addr(1)).unwrap();
        assert_eq!((host.rsucc, host.contin_succ), (u32::MAX, u32::MAX));
        assert_eq!(host.vsucc, u32::MAX, "saturates like one-by-one reports");
    }

    #[test]
    fn a_run_of_failures_overloads_at_the_same_report_as_one_by_one() {
        let mut by_run = route(2);
        let mut seen = Vec::new();
        by_run
            .report_run(addr(1), false, 40, secs(1), |t| seen.push(t))
            .unwrap();
        let mut one_by_one = route(2);
        let mut expected = Vec::new();
        for _ in 0..40 {
            expected.extend(one_by_one.report(addr(1), false, secs(1)).unwrap());
        }
        assert_eq!(seen, expected);
        assert_eq!(seen.len(), 1);
        assert_eq!(by_run.host(addr(1)), one_by_one.host(addr(1)));
        assert_eq!(
            by_run.host(addr(1)).unwrap().rerr,
            25,
            "15 to overload, 25 counted after"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn a_batch_of_runs_gives_the_host_states_of_one_report_per_result(
            lb in batch_settings(),
            batches in batches(),
        ) {
            let n = 4;
            let mut one_by_one = route_with(lb.clone(), n, Millis::ZERO);
            let mut grouped_one_by_one = route_with(lb.clone(), n, Millis::ZERO);
            let mut by_runs = route_with(lb, n, Millis::ZERO);
            let mut now = Millis::ZERO;
            for (advance, runs) in batches {
                now = now.plus(Millis(advance));
                let results: Vec<(u8, bool)> = runs
                    .iter()
                    .flat_map(|&(h, succ, len)| std::iter::repeat_n((h, succ), len as usize))
                    .collect();
                // As the results happened, one report each.
                for &(h, succ) in &results {
                    one_by_one.report(addr(h), succ, now).unwrap();
                }
                // Grouped per host as the batch carries them: one report each, then by runs.
                let mut expected = Vec::new();
                let mut seen = Vec::new();
                for (h, host_runs) in grouped_runs(&results) {
                    for &(succ, count) in &host_runs {
                        for _ in 0..count {
                            expected.extend(grouped_one_by_one.report(addr(h), succ, now).unwrap());
                        }
                        by_runs.report_run(addr(h), succ, count, now, |t| seen.push(t)).unwrap();
                    }
                }
                prop_assert_eq!(&seen, &expected);
                // Each host's state depends on its own results only: the order across hosts
                // does not change it.
                for h in 1..=n {
                    prop_assert_eq!(by_runs.host(addr(h)), one_by_one.host(addr(h)), "host {}", h);
                }
                // In the batch's order, the lists and panic mode are the same too.
                prop_assert_eq!(
                    by_runs.idle_hosts().collect::<Vec<_>>(),
                    grouped_one_by_one.idle_hosts().collect::<Vec<_>>()
                );
                prop_assert_eq!(
                    by_runs.overload_hosts().collect::<Vec<_>>(),
                    grouped_one_by_one.overload_hosts().collect::<Vec<_>>()
                );
                prop_assert_eq!(by_runs.in_panic(), grouped_one_by_one.in_panic());
                prop_assert_eq!(by_runs.has_reports(), grouped_one_by_one.has_reports());
                by_runs.check_invariants().map_err(TestCaseError::fail)?;
            }
        }
    }
}
