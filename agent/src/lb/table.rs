//! One shard's routes: `(modid, cmdid)` → [`Route`], and the route-level rules — when a key is
//! unknown or empty, when to ask dns (again), how a dns answer is applied, and which routes have
//! statistics to upload.
//!
//! Plain data, no I/O, no clock, no locks; owned by one worker, which calls it for every
//! request of its shard and for every message the uplinks hand it. Every method returns what the
//! worker must send and where: a [`HostAnswer`] for the caller, a [`DnsAsk`] for the dns uplink
//! ring, [`ReportStatusRequest`]s for the report uplink ring, and outcomes
//! ([`ReportOutcome`], [`DnsUpdateOutcome`]) to count and log. The request path
//! ([`RouteTable::get_host`], [`RouteTable::report`]) allocates nothing for a known route.
//!
//! # Asking dns
//! A route is *pulling* from the moment the table hands out a [`DnsAsk`] for it until a dns
//! answer for it is applied. [`RouteTable::get_host`] and [`RouteTable::get_route`] ask when:
//! - the key is unknown (the route is created, pulling, and the caller gets NOEXIST / no hosts);
//! - the route is not pulling and its last dns answer is more than `update_timeout` old, or it
//!   never had one (after [`RouteTable::pull_not_sent`]). A route that dns answered with no
//!   hosts stays as a *negative-cache* entry: callers get NOEXIST and dns is asked again at most
//!   once per `update_timeout`;
//! - the route is pulling but its ask is more than `update_timeout` old: the answer was lost
//!   (dropped on a full ring, or the ask never reached dns), so ask again.
//!
//! The last rule goes beyond Lars, which only re-asks a route that is not pulling: Lars' queues
//! could not drop an answer, ours can, and without it such a route would serve stale hosts (or
//! stay empty) until the dns connection next dropped. Lars asks the same for empty routes; this
//! applies it to every route.
//!
//! # Push-empty protection
//! A dns answer with no hosts for a route that has hosts empties it only when it is *accounted
//! for*: lars-rs' dns marks it `removed` (a route edit removed the route). An unmarked one — a
//! dns restarted on a wrong database, a C++ dns, a table emptied by hand — is not applied at
//! once: the route keeps serving its last hosts (*waiting*) for one `update_timeout`, the time
//! in which the other routes of the same fault empty too. The first unmarked empty answer at
//! least `update_timeout` later (the route's next re-ask brings one) decides: if the waiting
//! routes whose empty answers came within `update_timeout` of this one's are more than
//! `push_empty_threshold` percent of the routes with hosts, the route is *held back* (it keeps
//! its hosts until dns gives it hosts or a `removed` answer); otherwise the empty answer is
//! applied. The rule counts this shard's routes only (`docs/FAIL_STATIC.md`).
//!
//! # Bounded: the cap and idle eviction
//! A table holds at most [`TableLimits::max_routes`] routes (the agent's `max_routes` split over
//! its shards), so a caller asking for ever new keys cannot grow the agent without bound. At the
//! cap, an unknown key is *refused*: answered NOEXIST (no hosts) without being held or asked of
//! dns ([`HostAnswer::Refused`], [`RouteTable::get_route`] returns `None`); known routes answer
//! as before. Routes leave the table when no caller asked for them (`get_host`, `get_route`)
//! for a while — negative-cache entries (no hosts: dns answered empty, or not answered yet) first,
//! after `update_timeout` (by then their next ask re-asks dns anyway, exactly as for an unknown
//! key), routes with hosts after `route_idle_ttl`. [`RouteTable::evict_idle`] does it, called at
//! the worker's tick: it visits a bounded part of the table each call (an eviction queue of the
//! held keys, oldest first, so each route is looked at about once per `update_timeout`); the
//! request path only stamps the route's last use (and queues a new key), O(1).
//!
//! # After a dns reconnect
//! The table does nothing: the dns uplink owns the agent's subscriptions (which shards asked
//! for which key) and asks the new connection for every one of them once, so a pulling route's
//! answer arrives without the shard asking again (see `dns_uplink`).

use std::collections::VecDeque;
use std::collections::hash_map::Entry;
use std::net::Ipv4Addr;
use std::sync::Arc;

use foldhash::HashMap;
use lars_wire::ip::ip_to_wire;
use lars_wire::messages::ReportStatusRequest;
use lars_wire::{HostAddr, RetCode, RouteKey};

use super::LbSettings;
use super::host::HostTransition;
use super::route::{HostAddrs, HostsUpdate, PanicTransition, Pick, Route};
use crate::clock::Millis;

/// "Ask dns for this route": the worker puts a `DnsRequest` for `key` on its dns uplink ring, and
/// calls [`RouteTable::pull_not_sent`] if the ring is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsAsk {
    /// The route to pull.
    pub key: RouteKey,
}

/// The answer to a caller's `get_host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAnswer {
    /// SUCC with this host.
    Host(HostAddr),
    /// OVERLOAD: every host of the route is overloaded (and this was not a probe pick).
    Overload,
    /// NOEXIST: the route is unknown, not pulled yet, or has no hosts.
    NoExist,
    /// NOEXIST for an unknown key beyond the table's cap: not held, dns not asked (count it).
    Refused,
}

impl HostAnswer {
    /// The `retcode` of the `GetHostResponse`.
    pub fn retcode(&self) -> RetCode {
        match self {
            HostAnswer::Host(_) => RetCode::Succ,
            HostAnswer::Overload => RetCode::Overload,
            HostAnswer::NoExist | HostAnswer::Refused => RetCode::NoExist,
        }
    }

    /// The host to put in the `GetHostResponse`, if any.
    #[cfg(test)]
    pub fn host(&self) -> Option<HostAddr> {
        match self {
            HostAnswer::Host(host) => Some(*host),
            _ => None,
        }
    }
}

/// What a caller's `report` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// The table does not hold the route: ignored.
    UnknownRoute,
    /// The route does not have the host: ignored.
    UnknownHost,
    /// Counted; the host changed lists if `Some` (log it).
    Counted(Option<HostTransition>),
}

/// What a dns answer (reply or push) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsUpdateOutcome {
    /// The shard does not hold the route (nobody here asked for it): ignored.
    NotHeld,
    /// The route's hosts are now the answer's (none: a negative-cache entry).
    Applied(HostsUpdate),
    /// An unaccounted empty answer for a route with hosts: the route keeps serving them while
    /// the rule waits to see how many routes empty (`first`: this answer started the wait).
    Waiting {
        /// Whether this answer started the wait (log it).
        first: bool,
    },
    /// An unaccounted empty answer for a route held back: it keeps serving its last hosts
    /// (`newly`: this answer decided it; count and log it).
    HeldBack {
        /// Whether this answer decided the hold.
        newly: bool,
        /// The routes of the burst it belongs to.
        burst: usize,
        /// The routes with hosts the threshold is a percentage of.
        base: usize,
    },
}

/// A route and its dns bookkeeping.
#[derive(Debug)]
struct Held {
    route: Route,
    /// When the outstanding dns ask was handed out (Lars' PULLING state); `None`: NEW.
    pulling_since: Option<Millis>,
    /// When a dns answer was last applied; `None` before the first.
    last_update: Option<Millis>,
    /// When an unaccounted empty answer came that is not applied: the route serves its last
    /// hosts since (waiting, or held back).
    empty_since: Option<Millis>,
    /// Push-empty protection decided to keep the route's hosts.
    held_back: bool,
    /// When a caller last asked for the route (`get_host`, `get_route`, a route view or a report
    /// batch), or when it was loaded.
    last_used: Millis,
    /// The route view's version: a fresh value of the table's counter whenever the route's hosts
    /// or their states change (see [`RouteTable::route_view`]).
    version: u64,
}

impl Held {
    /// A new route with an ask handed out at `now`.
    fn pulling(settings: &Arc<LbSettings>, now: Millis) -> Held {
        Held {
            route: Route::new(Arc::clone(settings)),
            pulling_since: Some(now),
            last_update: None,
            empty_since: None,
            held_back: false,
            last_used: now,
            version: 0,
        }
    }

    /// Whether dns must be asked now (see the module docs); if so, the route is pulling from
    /// `now`.
    fn ask_due(&mut self, now: Millis, update_timeout: Millis) -> bool {
        let due = match self.pulling_since {
            Some(asked) => now.since(asked) > update_timeout,
            None => self
                .last_update
                .is_none_or(|updated| now.since(updated) > update_timeout),
        };
        if due {
            self.pulling_since = Some(now);
        }
        due
    }
}

/// How many routes a table may hold and how long an unused one stays (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLimits {
    /// Most routes held; at it, unknown keys are refused. At least 1.
    pub max_routes: usize,
    /// A route with hosts no caller asked for within this is evicted.
    pub idle_ttl: Millis,
}

impl Default for TableLimits {
    /// The agent's defaults (`max_routes` over its default shards), for a table on its own.
    fn default() -> TableLimits {
        let agent = crate::config::DataPlaneConfig::default();
        agent.table_limits()
    }
}

/// What one [`RouteTable::evict_idle`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Negative-cache entries evicted (no hosts).
    pub negative: usize,
    /// Routes with hosts evicted.
    pub with_hosts: usize,
}

/// Least routes [`RouteTable::evict_idle`] looks at per call (when it holds that many), so a
/// small table is swept whole at every tick.
const SWEEP_MIN: usize = 256;

/// The routes of one shard.
#[derive(Debug)]
pub struct RouteTable {
    settings: Arc<LbSettings>,
    limits: TableLimits,
    routes: HashMap<RouteKey, Held>,
    /// Every held key once, in the order [`RouteTable::evict_idle`] looks at them next.
    sweep: VecDeque<RouteKey>,
    /// Keys whose route had a report counted since the last [`RouteTable::take_reports`]; a key
    /// is added when its route goes from no reports to some, so it is here at most once per
    /// upload (twice only if its hosts were cleared in between, which `take_reports` skips).
    reported: Vec<RouteKey>,
    /// The sum of the routes' host counts.
    hosts: usize,
    /// Routes serving their last hosts against an unaccounted empty answer (waiting or held).
    kept: usize,
    /// The last version handed to a route (see [`RouteTable::route_view`]).
    versions: u64,
}

impl RouteTable {
    /// An empty table whose routes follow `settings` (validated by the config loader), with the
    /// default [`TableLimits`].
    #[cfg(test)]
    pub fn new(settings: LbSettings) -> RouteTable {
        RouteTable::with_limits(settings, TableLimits::default())
    }

    /// An empty table whose routes follow `settings`, bounded by `limits`.
    pub fn with_limits(settings: LbSettings, limits: TableLimits) -> RouteTable {
        RouteTable {
            settings: Arc::new(settings),
            limits,
            routes: HashMap::default(),
            sweep: VecDeque::new(),
            reported: Vec::new(),
            hosts: 0,
            kept: 0,
            versions: 0,
        }
    }

    /// Starts the route view versions after `seed`, so that a restarted agent (another seed: the
    /// worker passes its start time) does not hand out the versions its previous run did.
    pub fn seed_versions(&mut self, seed: u64) {
        self.versions = seed;
    }

    /// Gives the route of `key` a fresh view version.
    fn bump(&mut self, key: RouteKey) {
        self.versions = self.versions.wrapping_add(1).max(1);
        if let Some(held) = self.routes.get_mut(&key) {
            held.version = self.versions;
        }
    }

    /// A caller's `get_host`: the answer, and a dns ask to send if one is
    /// due. An unknown key is created (pulling) and answered NOEXIST, or refused at the cap; a
    /// route without hosts answers NOEXIST; otherwise [`Route::pick`] answers.
    pub fn get_host(&mut self, key: RouteKey, now: Millis) -> (HostAnswer, Option<DnsAsk>) {
        let Some((held, ask)) = self.lookup(key, now) else {
            return (HostAnswer::Refused, None);
        };
        let answer = match held.route.pick() {
            Pick::Host(host) => HostAnswer::Host(host),
            Pick::Overload => HostAnswer::Overload,
            Pick::NoHosts => HostAnswer::NoExist,
        };
        (answer, ask)
    }

    /// A caller's `get_route`: every host of the route (none for an unknown or empty one), and a
    /// dns ask to send if one is due — the same rules as [`RouteTable::get_host`]; `None` for
    /// an unknown key refused at the cap (answer no hosts).
    pub fn get_route(
        &mut self,
        key: RouteKey,
        now: Millis,
    ) -> Option<(HostAddrs<'_>, Option<DnsAsk>)> {
        let (held, ask) = self.lookup(key, now)?;
        Some((held.route.addrs(), ask))
    }

    /// A caller's `report` on `host` of `key`: `retcode` 0 (SUCC) is a success, anything else a
    /// failure. Reports for routes or hosts the table does not have are ignored.
    pub fn report(
        &mut self,
        key: RouteKey,
        host: HostAddr,
        retcode: i32,
        now: Millis,
    ) -> ReportOutcome {
        let Some(held) = self.routes.get_mut(&key) else {
            return ReportOutcome::UnknownRoute;
        };
        let had_reports = held.route.has_reports();
        match held
            .route
            .report(host, retcode == RetCode::Succ.as_i32(), now)
        {
            Ok(transition) => {
                if !had_reports {
                    self.reported.push(key);
                }
                if transition.is_some() {
                    self.bump(key);
                }
                ReportOutcome::Counted(transition)
            }
            Err(_) => ReportOutcome::UnknownHost,
        }
    }

    /// A dns answer (reply or push) for `key`: the route's hosts become `hosts` (see
    /// [`Route::update_hosts`]; none keeps the route as a negative-cache entry), it is no longer
    /// pulling, and its last update is `now`. An answer with no hosts for a route that has some
    /// is applied at once only when `removed` (a route edit accounts for it); otherwise
    /// push-empty protection decides (see the module docs). An answer for a key the table does
    /// not hold is ignored.
    pub fn apply_dns_update(
        &mut self,
        key: RouteKey,
        hosts: &[HostAddr],
        removed: bool,
        now: Millis,
    ) -> DnsUpdateOutcome {
        let Some(held) = self.routes.get_mut(&key) else {
            return DnsUpdateOutcome::NotHeld;
        };
        held.pulling_since = None;
        held.last_update = Some(now);
        if hosts.is_empty() && !removed && !held.route.is_empty() {
            let (since, held_back) = (held.empty_since, held.held_back);
            if let Some(outcome) = self.judge_empty(key, since, held_back, now) {
                return outcome;
            }
        }
        let Some(held) = self.routes.get_mut(&key) else {
            return DnsUpdateOutcome::NotHeld;
        };
        if held.empty_since.take().is_some() {
            held.held_back = false;
            self.kept -= 1;
        }
        let before = held.route.len();
        let update = held.route.update_hosts(hosts, now);
        self.hosts = self.hosts - before + update.hosts;
        if update.added > 0 || update.removed > 0 {
            self.bump(key);
        }
        DnsUpdateOutcome::Applied(update)
    }

    /// Push-empty protection for an unaccounted empty answer at `now` to the route of `key`,
    /// which has hosts, waits since `since` (if it does) and is `held_back` (or not): what to
    /// answer instead of applying it, or `None` to apply it.
    fn judge_empty(
        &mut self,
        key: RouteKey,
        since: Option<Millis>,
        held_back: bool,
        now: Millis,
    ) -> Option<DnsUpdateOutcome> {
        let Some(since) = since else {
            if let Some(held) = self.routes.get_mut(&key) {
                held.empty_since = Some(now);
                self.kept += 1;
            }
            return Some(DnsUpdateOutcome::Waiting { first: true });
        };
        let (burst, base) = (self.burst_around(since), self.routes_with_hosts());
        if held_back {
            return Some(DnsUpdateOutcome::HeldBack {
                newly: false,
                burst,
                base,
            });
        }
        if now.since(since) < Millis::from_secs(self.settings.update_timeout) {
            return Some(DnsUpdateOutcome::Waiting { first: false });
        }
        let threshold = u128::from(self.settings.push_empty_threshold);
        if burst as u128 * 100 <= threshold * base as u128 {
            return None;
        }
        if let Some(held) = self.routes.get_mut(&key) {
            held.held_back = true;
        }
        Some(DnsUpdateOutcome::HeldBack {
            newly: true,
            burst,
            base,
        })
    }

    /// Routes whose unaccounted empty answer came within `update_timeout` of `since`: one fault
    /// emptying many routes at once.
    fn burst_around(&self, since: Millis) -> usize {
        let window = Millis::from_secs(self.settings.update_timeout);
        self.routes
            .values()
            .filter_map(|held| held.empty_since)
            .filter(|&t| t.max(since).since(t.min(since)) <= window)
            .count()
    }

    /// Routes with at least one host (those kept against an empty answer included).
    fn routes_with_hosts(&self) -> usize {
        self.routes
            .values()
            .filter(|held| !held.route.is_empty())
            .count()
    }

    /// Routes serving their last hosts against an unaccounted empty answer (waiting or held
    /// back).
    pub fn kept_count(&self) -> usize {
        self.kept
    }

    /// The [`DnsAsk`] for `key` could not be sent (the dns ring was full): the route is no longer
    /// pulling, so a later call asks again (at once if it never had an answer).
    pub fn pull_not_sent(&mut self, key: RouteKey) {
        if let Some(held) = self.routes.get_mut(&key) {
            held.pulling_since = None;
        }
    }

    /// The statistics to upload: one `ReportStatusRequest` per route with reports counted since
    /// its last upload (`caller`: this agent's address; `ts`: the time in Unix seconds), each
    /// with one `HostCallResult` per host. The worker calls it once per `report_interval`.
    pub fn take_reports(&mut self, caller: Ipv4Addr, ts: u32) -> Vec<ReportStatusRequest> {
        let caller = ip_to_wire(caller);
        let mut out = Vec::with_capacity(self.reported.len());
        for key in self.reported.drain(..) {
            if let Some(held) = self.routes.get_mut(&key)
                && held.route.has_reports()
            {
                out.push(ReportStatusRequest {
                    modid: key.modid,
                    cmdid: key.cmdid,
                    caller,
                    results: held.route.take_call_results(),
                    ts,
                });
            }
        }
        out
    }

    /// The route of `key`, if held.
    #[cfg(test)]
    pub fn route(&self, key: RouteKey) -> Option<&Route> {
        self.routes.get(&key).map(|held| &held.route)
    }

    /// Whether the route of `key` waits for a dns answer; `None` if not held.
    #[cfg(test)]
    pub fn is_pulling(&self, key: RouteKey) -> Option<bool> {
        self.routes
            .get(&key)
            .map(|held| held.pulling_since.is_some())
    }

    /// Routes held, negative-cache entries included.
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// Hosts held, over all routes.
    pub fn host_count(&self) -> usize {
        self.hosts
    }

    /// The route of `key`, created (pulling) if unknown, and the dns ask due; stamps its use.
    /// `None`: unknown and the table is at its cap.
    fn lookup(&mut self, key: RouteKey, now: Millis) -> Option<(&mut Held, Option<DnsAsk>)> {
        let full = self.routes.len() >= self.limits.max_routes;
        match self.routes.entry(key) {
            Entry::Vacant(_) if full => None,
            Entry::Vacant(vacant) => {
                self.sweep.push_back(key);
                self.versions = self.versions.wrapping_add(1).max(1);
                let held = vacant.insert(Held::pulling(&self.settings, now));
                held.version = self.versions;
                Some((held, Some(DnsAsk { key })))
            }
            Entry::Occupied(occupied) => {
                let held = occupied.into_mut();
                held.last_used = now;
                let update_timeout = Millis::from_secs(self.settings.update_timeout);
                let ask = held.ask_due(now, update_timeout).then_some(DnsAsk { key });
                Some((held, ask))
            }
        }
    }

    /// Evicts the routes no caller asked for recently (see the module docs): looks at the
    /// longest-unvisited routes, `max_routes * interval / update_timeout` of them (at least
    /// [`SWEEP_MIN`]), so that every route is looked at about once per `update_timeout` when
    /// called every `interval`, and evicts a negative-cache entry
    /// unused for more than `update_timeout` and a route with hosts unused for more than
    /// `idle_ttl`. Each is evicted only if `forget(key)` (the worker tells the dns uplink) says
    /// so; on false the sweep stops and resumes there next call.
    pub fn evict_idle(
        &mut self,
        now: Millis,
        interval: Millis,
        mut forget: impl FnMut(RouteKey) -> bool,
    ) -> Evicted {
        let update_timeout = Millis::from_secs(self.settings.update_timeout);
        // A share of the cap, not of the routes held: the queue shrinks as it is swept, and each
        // route must still be reached within update_timeout.
        let cap = self.limits.max_routes as u128;
        let share = u128::from(interval.0) * cap / u128::from(update_timeout.0.max(1));
        let visits = self
            .sweep
            .len()
            .min(SWEEP_MIN.max(usize::try_from(share).unwrap_or(usize::MAX) + 1));
        let mut evicted = Evicted::default();
        for _ in 0..visits {
            let Some(key) = self.sweep.pop_front() else {
                break;
            };
            let Some(held) = self.routes.get(&key) else {
                continue;
            };
            let negative = held.route.is_empty();
            let ttl = if negative {
                update_timeout
            } else {
                self.limits.idle_ttl
            };
            if now.since(held.last_used) <= ttl {
                self.sweep.push_back(key);
                continue;
            }
            if !forget(key) {
                self.sweep.push_front(key);
                break;
            }
            if let Some(held) = self.routes.remove(&key) {
                self.hosts -= held.route.len();
                if held.empty_since.is_some() {
                    self.kept -= 1;
                }
            }
            if negative {
                evicted.negative += 1;
            } else {
                evicted.with_hosts += 1;
            }
        }
        evicted
    }
}

/// The route cache's and panic mode's part of the table: routes loaded at start from the
/// agent's route cache (see `crate::cache`), served at once but *stale* until dns answers them,
/// the routes to write back to it, and the routes' panic changes for the worker's log.
impl RouteTable {
    /// Loads a route from the route cache at start: `key` with `hosts`, all idle from `now`,
    /// served at once but stale: neither pulling nor ever answered by dns, so the next
    /// [`RouteTable::ask_if_due`], `get_host` or `get_route` asks dns for it. A key already held,
    /// no hosts, or a table at its cap: not loaded (false).
    pub fn preload(&mut self, key: RouteKey, hosts: &[HostAddr], now: Millis) -> bool {
        if hosts.is_empty() || self.routes.len() >= self.limits.max_routes {
            return false;
        }
        let Entry::Vacant(vacant) = self.routes.entry(key) else {
            return false;
        };
        let mut route = Route::new(Arc::clone(&self.settings));
        self.hosts += route.update_hosts(hosts, now).hosts;
        vacant.insert(Held {
            route,
            pulling_since: None,
            last_update: None,
            empty_since: None,
            held_back: false,
            last_used: now,
            version: 0,
        });
        self.sweep.push_back(key);
        self.bump(key);
        true
    }

    /// Whether the route of `key` serves hosts that dns has not answered since the agent started
    /// (it came from the route cache); false for a key not held.
    #[cfg(test)]
    pub fn is_stale(&self, key: RouteKey) -> bool {
        self.routes.get(&key).is_some_and(Held::is_stale)
    }

    /// Routes that are stale ([`RouteTable::is_stale`]). Looks at every route: called at a tick,
    /// not per request.
    pub fn stale_count(&self) -> usize {
        self.routes.values().filter(|held| held.is_stale()).count()
    }

    /// The dns ask for the held route of `key` if one is due by the rules of `get_host`, without a
    /// caller asking (the worker subscribes its cached routes this way); `None` for a key not
    /// held or an ask not due.
    pub fn ask_if_due(&mut self, key: RouteKey, now: Millis) -> Option<DnsAsk> {
        let update_timeout = Millis::from_secs(self.settings.update_timeout);
        let held = self.routes.get_mut(&key)?;
        held.ask_due(now, update_timeout).then_some(DnsAsk { key })
    }

    /// Every route with hosts and their addresses, in no order: what the route cache keeps.
    pub fn held_routes(&self) -> impl Iterator<Item = (RouteKey, HostAddrs<'_>)> + '_ {
        self.routes
            .iter()
            .filter(|(_, held)| !held.route.is_empty())
            .map(|(key, held)| (*key, held.route.addrs()))
    }

    /// Whether the route of `key` entered or left panic mode since last asked (see
    /// [`Route::take_panic_change`]); the worker asks after a host changed state or a dns answer
    /// was applied.
    pub fn take_panic_change(&mut self, key: RouteKey) -> Option<PanicTransition> {
        self.routes.get_mut(&key)?.route.take_panic_change()
    }
}

/// What a caller's route view (or the answer to a report batch) holds: the route's hosts with
/// their states, its `probe_num`, panic mode and version.
#[derive(Debug, Clone)]
pub struct RouteView<'a> {
    /// Changes whenever the hosts or their states change; never 0.
    pub version: u64,
    /// The route of the view.
    pub route: &'a Route,
}

/// What a report batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// The table does not hold the route: ignored (the caller's view is stale; its next view
    /// request makes the table pull the route).
    UnknownRoute,
    /// Applied: `results` counted, `unknown_hosts` host entries ignored (hosts the route does
    /// not have any more).
    Applied {
        /// Results counted.
        results: u64,
        /// Host entries of the batch that named a host the route does not have.
        unknown_hosts: usize,
    },
}

/// One host's part of a report batch: its address and its runs in order, each
/// `(succ, count)` with `count >= 1` (checked by the caller of [`RouteTable::report_batch`]).
pub trait BatchHost {
    /// The host.
    fn addr(&self) -> HostAddr;
    /// Its runs, in order.
    fn runs(&self) -> impl Iterator<Item = (bool, u32)>;
}

/// The fast path's part of the table: route views and report batches, on the same routes and
/// rules as `get_host` and `report`.
impl RouteTable {
    /// A caller's route view request: the same rules as [`RouteTable::get_route`] (an unknown key
    /// is created and pulled, a due re-ask is handed out), and the route with its version;
    /// `None` for an unknown key refused at the cap (answer NOEXIST).
    pub fn route_view(
        &mut self,
        key: RouteKey,
        now: Millis,
    ) -> Option<(RouteView<'_>, Option<DnsAsk>)> {
        let (held, ask) = self.lookup(key, now)?;
        Some((
            RouteView {
                version: held.version,
                route: &held.route,
            },
            ask,
        ))
    }

    /// A caller's report batch for `key`: each host's runs applied in order through
    /// [`Route::report_run`], exactly as one `report` per result would be, all at `now`; every
    /// host state change goes to `changed`. Stamps the route as used (a fast-path caller asks
    /// for views only when its batches bring none). Then the route's view as [`RouteView`].
    pub fn report_batch<H: BatchHost>(
        &mut self,
        key: RouteKey,
        hosts: &[H],
        now: Millis,
        mut changed: impl FnMut(HostTransition),
    ) -> (BatchOutcome, Option<RouteView<'_>>) {
        let Some(held) = self.routes.get_mut(&key) else {
            return (BatchOutcome::UnknownRoute, None);
        };
        held.last_used = now;
        let had_reports = held.route.has_reports();
        let (mut results, mut unknown_hosts, mut moved) = (0u64, 0usize, false);
        for host in hosts {
            let addr = host.addr();
            for (succ, count) in host.runs() {
                let applied = held.route.report_run(addr, succ, count, now, |t| {
                    moved = true;
                    changed(t);
                });
                if applied.is_err() {
                    unknown_hosts += 1;
                    break;
                }
                results += u64::from(count);
            }
        }
        if !had_reports && held.route.has_reports() {
            self.reported.push(key);
        }
        if moved {
            self.bump(key);
        }
        let held = &self.routes[&key];
        (
            BatchOutcome::Applied {
                results,
                unknown_hosts,
            },
            Some(RouteView {
                version: held.version,
                route: &held.route,
            }),
        )
    }
}

impl Held {
    /// Serving hosts dns has not answered since the start: loaded from the route cache.
    fn is_stale(&self) -> bool {
        self.last_update.is_none() && !self.route.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::host::{HostState, OverloadReason, RecoverReason};
    use super::super::test_support::{addr, call_result};
    use super::*;
    use crate::alloc_counter;
    use lars_wire::messages::GetRouteRequest;

    const KEY: RouteKey = RouteKey::new(1, 2);

    fn hosts(ids: &[u8]) -> Vec<HostAddr> {
        ids.iter().map(|&i| addr(i)).collect()
    }

    fn secs(s: u64) -> Millis {
        Millis::from_secs(s)
    }

    fn ms(ms: u64) -> Millis {
        Millis(ms)
    }

    /// A table holding `KEY` with `ids`, answered at `now`.
    fn table_with(ids: &[u8], now: Millis) -> RouteTable {
        let mut table = RouteTable::new(LbSettings::default());
        table.get_host(KEY, now);
        table.apply_dns_update(KEY, &hosts(ids), false, now);
        table
    }

    fn ask(key: RouteKey) -> Option<DnsAsk> {
        Some(DnsAsk { key })
    }

    #[test]
    fn a_cached_route_is_served_at_once_stale_and_asked_for_once() {
        let mut table = RouteTable::new(LbSettings::default());
        assert!(table.preload(KEY, &hosts(&[1, 2]), secs(1)));
        assert_eq!((table.route_count(), table.host_count()), (1, 2));
        assert!(table.is_stale(KEY));
        assert_eq!(table.stale_count(), 1);
        assert_eq!(table.is_pulling(KEY), Some(false));
        // The worker subscribes it: one ask, then it waits like any pulling route.
        assert_eq!(table.ask_if_due(KEY, secs(1)), ask(KEY));
        assert_eq!(table.ask_if_due(KEY, secs(2)), None);
        assert_eq!(
            table.get_host(KEY, secs(2)),
            (HostAnswer::Host(addr(1)), None),
            "served from the cache, no second ask"
        );
        assert_eq!(table.ask_if_due(RouteKey::new(9, 9), secs(2)), None);
        // dns answers: no longer stale.
        table.apply_dns_update(KEY, &hosts(&[2, 3]), false, secs(3));
        assert!(!table.is_stale(KEY));
        assert_eq!(table.stale_count(), 0);
        assert_eq!(table.host_count(), 2);
    }

    #[test]
    fn a_cached_route_not_yet_subscribed_is_asked_for_by_its_first_caller() {
        let mut table = RouteTable::new(LbSettings::default());
        table.preload(KEY, &hosts(&[1]), secs(1));
        assert_eq!(
            table.get_host(KEY, secs(1)),
            (HostAnswer::Host(addr(1)), ask(KEY))
        );
    }

    #[test]
    fn preload_keeps_what_is_held_and_skips_empty_routes() {
        let mut table = table_with(&[1], secs(0));
        assert!(!table.preload(KEY, &hosts(&[7, 8]), secs(1)));
        assert_eq!(
            table.route(KEY).unwrap().addrs().collect::<Vec<_>>(),
            hosts(&[1])
        );
        assert!(!table.preload(RouteKey::new(5, 5), &[], secs(1)));
        assert_eq!((table.route_count(), table.host_count()), (1, 1));
        assert!(!table.is_stale(KEY), "answered by dns");
    }

    #[test]
    fn held_routes_leave_out_negative_entries() {
        let mut table = table_with(&[1, 2], secs(0));
        table.get_host(RouteKey::new(4, 4), secs(0));
        table.apply_dns_update(RouteKey::new(4, 4), &[], false, secs(0));
        table.preload(RouteKey::new(6, 6), &hosts(&[3]), secs(0));
        let mut routes: Vec<(RouteKey, Vec<HostAddr>)> = table
            .held_routes()
            .map(|(key, addrs)| (key, addrs.collect()))
            .collect();
        routes.sort();
        assert_eq!(
            routes,
            [(KEY, hosts(&[1, 2])), (RouteKey::new(6, 6), hosts(&[3]))]
        );
    }

    #[test]
    fn a_routes_panic_change_is_taken_through_the_table() {
        let lb = LbSettings {
            panic_threshold: 99,
            ..LbSettings::default()
        };
        let mut table = RouteTable::new(lb);
        table.get_host(KEY, secs(0));
        table.apply_dns_update(KEY, &hosts(&[1]), false, secs(0));
        for _ in 0..15 {
            table.report(KEY, addr(1), 1, secs(1));
        }
        assert_eq!(
            table.take_panic_change(KEY),
            Some(PanicTransition::Entered {
                overloaded: 1,
                hosts: 1
            })
        );
        assert_eq!(table.take_panic_change(KEY), None);
        assert_eq!(table.get_host(KEY, secs(1)).0, HostAnswer::Host(addr(1)));
        assert_eq!(table.take_panic_change(RouteKey::new(9, 9)), None);
    }

    #[test]
    fn an_unknown_key_asks_dns_once_and_answers_noexist_while_pulling() {
        let mut table = RouteTable::new(LbSettings::default());
        assert_eq!(
            table.get_host(KEY, secs(1)),
            (HostAnswer::NoExist, ask(KEY))
        );
        assert_eq!(table.route_count(), 1);
        assert_eq!(table.is_pulling(KEY), Some(true));
        for t in [secs(1), secs(5), secs(16)] {
            assert_eq!(
                table.get_host(KEY, t),
                (HostAnswer::NoExist, None),
                "at {t:?}"
            );
        }
        assert_eq!(HostAnswer::NoExist.retcode(), RetCode::NoExist);
        assert_eq!(
            ask(KEY).unwrap().key.request(),
            GetRouteRequest { modid: 1, cmdid: 2 }
        );
    }

    #[test]
    fn a_lost_first_ask_is_repeated_after_update_timeout() {
        let mut table = RouteTable::new(LbSettings::default());
        table.get_host(KEY, secs(1));
        // "Older than update_timeout": 15 s is not, 15.001 s is.
        assert_eq!(table.get_host(KEY, secs(16)).1, None);
        assert_eq!(table.get_host(KEY, secs(16).plus(ms(1))).1, ask(KEY));
        assert_eq!(table.get_host(KEY, secs(20)).1, None);
        assert_eq!(table.get_host(KEY, secs(32)).1, ask(KEY));
    }

    #[test]
    fn a_dns_answer_serves_hosts_and_stops_pulling() {
        let mut table = RouteTable::new(LbSettings::default());
        table.get_host(KEY, secs(1));
        let outcome = table.apply_dns_update(KEY, &hosts(&[1, 2]), false, secs(2));
        assert_eq!(
            outcome,
            DnsUpdateOutcome::Applied(HostsUpdate {
                added: 2,
                removed: 0,
                hosts: 2
            })
        );
        assert_eq!(table.is_pulling(KEY), Some(false));
        assert_eq!(table.host_count(), 2);
        assert_eq!(
            table.get_host(KEY, secs(3)),
            (HostAnswer::Host(addr(1)), None)
        );
        assert_eq!(
            table.get_host(KEY, secs(3)),
            (HostAnswer::Host(addr(2)), None)
        );
        assert_eq!(HostAnswer::Host(addr(1)).retcode(), RetCode::Succ);
        assert_eq!(HostAnswer::Host(addr(1)).host(), Some(addr(1)));
    }

    #[test]
    fn a_route_is_re_pulled_after_update_timeout_while_still_answering() {
        let mut table = table_with(&[1, 2], secs(10));
        assert_eq!(table.get_host(KEY, secs(25)).1, None, "15 s is not older");
        let (answer, dns) = table.get_host(KEY, secs(25).plus(ms(1)));
        assert_eq!(
            answer,
            HostAnswer::Host(addr(2)),
            "served from the current hosts"
        );
        assert_eq!(dns, ask(KEY));
        assert_eq!(table.is_pulling(KEY), Some(true));
        // Pulling: no second ask, the hosts keep answering.
        let (answer, dns) = table.get_host(KEY, secs(30));
        assert_eq!((answer, dns), (HostAnswer::Host(addr(1)), None));
        // The answer arrives: NEW again, fresh for another update_timeout.
        table.apply_dns_update(KEY, &hosts(&[1, 2]), false, secs(31));
        assert_eq!(table.get_host(KEY, secs(46)).1, None);
        assert_eq!(table.get_host(KEY, secs(47)).1, ask(KEY));
    }

    #[test]
    fn a_pulling_route_whose_answer_was_lost_asks_again_after_update_timeout() {
        let mut table = table_with(&[1], secs(0));
        assert_eq!(table.get_host(KEY, secs(16)).1, ask(KEY));
        assert_eq!(table.get_host(KEY, secs(31)).1, None);
        assert_eq!(table.get_host(KEY, secs(32)).1, ask(KEY));
    }

    #[test]
    fn an_empty_dns_answer_keeps_a_negative_entry_asked_at_most_once_per_update_timeout() {
        let mut table = table_with(&[1, 2], secs(0));
        let outcome = table.apply_dns_update(KEY, &[], true, secs(5));
        assert_eq!(
            outcome,
            DnsUpdateOutcome::Applied(HostsUpdate {
                added: 0,
                removed: 2,
                hosts: 0
            })
        );
        assert_eq!((table.route_count(), table.host_count()), (1, 0));
        // A caller asking every 100 ms for a minute causes one ask per update_timeout.
        let mut asks = Vec::new();
        let mut t = secs(5);
        while t < secs(65) {
            let (answer, dns) = table.get_host(KEY, t);
            assert_eq!(answer, HostAnswer::NoExist);
            if dns.is_some() {
                asks.push(t);
                // dns still has nothing.
                table.apply_dns_update(KEY, &[], true, t.plus(ms(50)));
            }
            t = t.plus(ms(100));
        }
        assert_eq!(asks, [ms(20_100), ms(35_200), ms(50_300)]);
        // get_route follows the same rule.
        let (hosts, dns) = table.get_route(KEY, secs(66)).unwrap();
        assert_eq!((hosts.len(), dns), (0, ask(KEY)));
    }

    #[test]
    fn pull_not_sent_makes_the_next_call_ask_again() {
        let mut table = RouteTable::new(LbSettings::default());
        table.get_host(KEY, secs(1));
        table.pull_not_sent(KEY);
        assert_eq!(table.is_pulling(KEY), Some(false));
        assert_eq!(
            table.get_host(KEY, secs(1)),
            (HostAnswer::NoExist, ask(KEY))
        );
        assert_eq!(table.get_host(KEY, secs(2)).1, None);

        // A route with hosts asks again at its next call (its last update is old).
        let mut table = table_with(&[1], secs(0));
        assert_eq!(table.get_host(KEY, secs(20)).1, ask(KEY));
        table.pull_not_sent(KEY);
        assert_eq!(table.get_host(KEY, secs(20)).1, ask(KEY));
        table.pull_not_sent(RouteKey::new(9, 9)); // not held: nothing happens
        assert_eq!(table.route_count(), 1);
    }

    #[test]
    fn an_update_for_a_key_not_held_is_ignored() {
        let mut table = RouteTable::new(LbSettings::default());
        assert_eq!(
            table.apply_dns_update(KEY, &hosts(&[1]), false, secs(1)),
            DnsUpdateOutcome::NotHeld
        );
        assert_eq!((table.route_count(), table.host_count()), (0, 0));
    }

    #[test]
    fn a_dns_update_changes_hosts_keeping_survivors_state() {
        let mut table = table_with(&[1, 2, 3], secs(0));
        for _ in 0..15 {
            table.report(KEY, addr(2), 1, secs(1));
        }
        table.report(KEY, addr(3), 0, secs(1));
        let outcome = table.apply_dns_update(KEY, &hosts(&[2, 3, 4]), false, secs(2));
        assert_eq!(
            outcome,
            DnsUpdateOutcome::Applied(HostsUpdate {
                added: 1,
                removed: 1,
                hosts: 3
            })
        );
        assert_eq!(table.host_count(), 3);
        let route = table.route(KEY).unwrap();
        assert!(route.host(addr(2)).unwrap().overload);
        assert_eq!(route.host(addr(3)).unwrap().rsucc, 1);
        assert_eq!(route.idle_hosts().collect::<Vec<_>>(), hosts(&[3, 4]));
    }

    #[test]
    fn reports_for_unknown_routes_and_hosts_are_ignored() {
        let mut table = table_with(&[1], secs(0));
        assert_eq!(
            table.report(RouteKey::new(7, 7), addr(1), 0, secs(1)),
            ReportOutcome::UnknownRoute
        );
        assert_eq!(table.route_count(), 1, "a report does not create a route");
        assert_eq!(
            table.report(KEY, addr(2), 0, secs(1)),
            ReportOutcome::UnknownHost
        );
        assert!(table.take_reports(Ipv4Addr::LOCALHOST, 1).is_empty());
    }

    #[test]
    fn any_nonzero_retcode_is_a_failure() {
        let mut table = table_with(&[1], secs(0));
        for retcode in [1, 2, 3, -7, 1000] {
            assert_eq!(
                table.report(KEY, addr(1), retcode, secs(1)),
                ReportOutcome::Counted(None)
            );
        }
        table.report(KEY, addr(1), 0, secs(1));
        let host = table.route(KEY).unwrap().host(addr(1)).unwrap();
        assert_eq!((host.rsucc, host.rerr), (1, 5));
    }

    #[test]
    fn reports_change_host_state_through_the_table() {
        let mut table = table_with(&[1, 2], secs(0));
        for _ in 0..14 {
            table.report(KEY, addr(1), 2, secs(1));
        }
        assert!(matches!(
            table.report(KEY, addr(1), 2, secs(1)),
            ReportOutcome::Counted(Some(HostTransition::Overloaded {
                reason: OverloadReason::ContinErr,
                ..
            }))
        ));
        table.report(KEY, addr(2), 1, secs(1));
        for _ in 0..14 {
            table.report(KEY, addr(2), 1, secs(1));
        }
        // Both overloaded: OVERLOAD except every probe_num + 1-th pick.
        let answers: Vec<HostAnswer> = (0..11).map(|_| table.get_host(KEY, secs(2)).0).collect();
        assert!(answers[..10].iter().all(|a| *a == HostAnswer::Overload));
        assert_eq!(answers[10], HostAnswer::Host(addr(1)));
        assert_eq!(HostAnswer::Overload.retcode(), RetCode::Overload);
        assert!(matches!(
            table.report(KEY, addr(1), 0, secs(16)),
            ReportOutcome::Counted(Some(HostTransition::Recovered {
                reason: RecoverReason::OverloadTimeout,
                ..
            }))
        ));
    }

    #[test]
    fn take_reports_returns_only_routes_reported_since_the_last_upload() {
        let other = RouteKey::new(3, 4);
        let quiet = RouteKey::new(5, 6);
        let mut table = table_with(&[1, 2], secs(0));
        for key in [other, quiet] {
            table.get_host(key, secs(0));
            table.apply_dns_update(key, &hosts(&[7]), false, secs(0));
        }
        table.report(KEY, addr(1), 0, secs(1));
        table.report(KEY, addr(1), 0, secs(1));
        table.report(KEY, addr(2), 3, secs(1));
        table.report(other, addr(7), 0, secs(1));
        for _ in 0..15 {
            table.report(other, addr(7), 1, secs(1));
        }
        let caller = Ipv4Addr::new(192, 168, 0, 9);
        let mut reports = table.take_reports(caller, 1_700_000_000);
        reports.sort_by_key(|r| (r.modid, r.cmdid));
        assert_eq!(reports.len(), 2, "the quiet route is not uploaded");
        let first = &reports[0];
        assert_eq!((first.modid, first.cmdid), (1, 2));
        assert_eq!(first.caller, ip_to_wire(caller));
        assert_eq!(first.ts, 1_700_000_000);
        assert_eq!(
            first.results,
            [call_result(1, 2, 0, false), call_result(2, 0, 1, false),]
        );
        // `other` was overloaded by its 15 failures: counts reset, flag set.
        assert_eq!(reports[1].results, [call_result(7, 0, 0, true)]);
        assert!(table.take_reports(caller, 1_700_000_001).is_empty());
        table.report(other, addr(7), 1, secs(2));
        let again = table.take_reports(caller, 1_700_000_002);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].results[0].err, 1);
    }

    #[test]
    fn statistics_of_a_route_emptied_by_dns_are_dropped() {
        let mut table = table_with(&[1], secs(0));
        table.report(KEY, addr(1), 0, secs(1));
        table.apply_dns_update(KEY, &[], true, secs(2));
        assert!(table.take_reports(Ipv4Addr::LOCALHOST, 1).is_empty());
        table.apply_dns_update(KEY, &hosts(&[1]), false, secs(3));
        table.report(KEY, addr(1), 0, secs(4));
        assert_eq!(table.take_reports(Ipv4Addr::LOCALHOST, 2).len(), 1);
    }

    #[test]
    fn get_route_lists_every_host_and_creates_unknown_routes() {
        let mut table = table_with(&[1, 2, 3], secs(0));
        let (list, dns) = table.get_route(KEY, secs(1)).unwrap();
        assert_eq!(list.collect::<Vec<_>>(), hosts(&[1, 2, 3]));
        assert_eq!(dns, None);
        let (list, dns) = table.get_route(KEY, secs(16)).unwrap();
        assert_eq!((list.len(), dns), (3, ask(KEY)));

        let unknown = RouteKey::new(8, 8);
        let (list, dns) = table.get_route(unknown, secs(1)).unwrap();
        assert_eq!((list.len(), dns), (0, ask(unknown)));
        assert_eq!(table.get_route(unknown, secs(2)).unwrap().1, None);
        assert_eq!(table.route_count(), 2);
    }

    #[test]
    fn known_routes_are_served_without_allocating() {
        let mut table = table_with(&[1, 2, 3, 4, 5], secs(0));
        // Warm up: the first report of an upload period records the key once.
        table.report(KEY, addr(1), 0, secs(1));
        table.take_reports(Ipv4Addr::LOCALHOST, 1);
        let same_hosts = hosts(&[1, 2, 3, 4, 5]);
        let before = alloc_counter::allocations();
        let mut now = secs(1);
        for n in 0..10_000u64 {
            now = now.plus(ms(3));
            let (answer, _) = table.get_host(KEY, now);
            if let HostAnswer::Host(host) = answer {
                let retcode = if host == addr(2) || n % 7 == 0 { 1 } else { 0 };
                table.report(KEY, host, retcode, now);
            }
            let (list, _) = table.get_route(KEY, now).unwrap();
            assert_eq!(list.len(), 5);
            if n % 997 == 0 {
                // The periodic re-pull answers with the same hosts now and then.
                table.apply_dns_update(KEY, &same_hosts, false, now);
            }
        }
        assert_eq!(alloc_counter::allocations(), before);
    }

    #[test]
    fn memory_per_host_for_100k_routes_of_10_hosts_is_under_200_bytes() {
        const ROUTES: i32 = 100_000;
        const HOSTS: u32 = 10;
        let before = alloc_counter::live_bytes();
        let mut table = bounded(usize::MAX, 600);
        let mut list = Vec::with_capacity(HOSTS as usize);
        for r in 0..ROUTES {
            let key = RouteKey::new(r, r % 7);
            table.get_host(key, secs(0));
            list.clear();
            list.extend((0..HOSTS).map(|h| {
                HostAddr::new(Ipv4Addr::from(0x0a00_0000 + (r as u32) * HOSTS + h), 8000)
            }));
            table.apply_dns_update(key, &list, false, secs(0));
        }
        drop(list);
        let bytes = alloc_counter::live_bytes() - before;
        let hosts = (ROUTES as usize) * HOSTS as usize;
        assert_eq!(table.host_count(), hosts);
        let per_host = bytes as f64 / hosts as f64;
        println!(
            "{ROUTES} routes x {HOSTS} hosts: {bytes} bytes on the heap, {per_host:.1} bytes per host \
             (HostState {} B, Route {} B, map entry {} B)",
            std::mem::size_of::<HostState>(),
            std::mem::size_of::<Route>(),
            std::mem::size_of::<(RouteKey, Held)>(),
        );
        assert!(per_host < 200.0, "{per_host} bytes per host");
        drop(table);
    }

    /// A table holding routes `(1, 1..=n)` with one host each, answered at `now`.
    fn table_of(n: i32, now: Millis) -> RouteTable {
        let mut table = RouteTable::new(LbSettings::default());
        for cmdid in 1..=n {
            let key = RouteKey::new(1, cmdid);
            table.get_host(key, now);
            table.apply_dns_update(key, &hosts(&[cmdid as u8]), false, now);
        }
        table
    }

    fn empty(table: &mut RouteTable, cmdid: i32, removed: bool, now: Millis) -> DnsUpdateOutcome {
        table.apply_dns_update(RouteKey::new(1, cmdid), &[], removed, now)
    }

    fn serves(table: &mut RouteTable, cmdid: i32, now: Millis) -> bool {
        matches!(
            table.get_host(RouteKey::new(1, cmdid), now).0,
            HostAnswer::Host(_)
        )
    }

    #[test]
    fn an_empty_answer_marked_removed_empties_the_route_at_once() {
        let mut table = table_of(6, secs(0));
        assert!(matches!(
            empty(&mut table, 1, true, secs(1)),
            DnsUpdateOutcome::Applied(_)
        ));
        assert!(!serves(&mut table, 1, secs(1)));
        assert_eq!(table.kept_count(), 0);
    }

    #[test]
    fn every_route_emptied_at_once_unaccounted_keeps_its_hosts_and_is_held_back() {
        let mut table = table_of(6, secs(0));
        for cmdid in 1..=6 {
            assert_eq!(
                empty(&mut table, cmdid, false, secs(1)),
                DnsUpdateOutcome::Waiting { first: true }
            );
        }
        assert_eq!(table.kept_count(), 6);
        assert!((1..=6).all(|c| serves(&mut table, c, secs(2))));
        // Within update_timeout nothing is decided.
        assert_eq!(
            empty(&mut table, 1, false, secs(15)),
            DnsUpdateOutcome::Waiting { first: false }
        );
        // The re-asks after update_timeout decide: 6 of 6 is more than 50 %.
        for cmdid in 1..=6 {
            assert_eq!(
                empty(&mut table, cmdid, false, secs(17)),
                DnsUpdateOutcome::HeldBack {
                    newly: true,
                    burst: 6,
                    base: 6
                }
            );
        }
        assert_eq!(
            empty(&mut table, 1, false, secs(40)),
            DnsUpdateOutcome::HeldBack {
                newly: false,
                burst: 6,
                base: 6
            }
        );
        assert!((1..=6).all(|c| serves(&mut table, c, secs(41))));
        assert_eq!((table.kept_count(), table.host_count()), (6, 6));
        // Hosts from dns, or a removal, release a held route.
        let update = table.apply_dns_update(RouteKey::new(1, 1), &hosts(&[9]), false, secs(42));
        assert!(matches!(update, DnsUpdateOutcome::Applied(_)));
        assert!(matches!(
            empty(&mut table, 2, true, secs(42)),
            DnsUpdateOutcome::Applied(_)
        ));
        assert!(!serves(&mut table, 2, secs(42)));
        assert_eq!(table.kept_count(), 4);
    }

    #[test]
    fn one_unaccounted_empty_of_many_is_applied_after_update_timeout() {
        // What a C++ dns sends for `lars route del` of one route: no `removed` mark.
        let mut table = table_of(6, secs(0));
        assert_eq!(
            empty(&mut table, 3, false, secs(1)),
            DnsUpdateOutcome::Waiting { first: true }
        );
        assert!(serves(&mut table, 3, secs(10)));
        assert!(matches!(
            empty(&mut table, 3, false, secs(17)),
            DnsUpdateOutcome::Applied(_)
        ));
        assert!(!serves(&mut table, 3, secs(17)));
        assert_eq!(table.kept_count(), 0);
    }

    #[test]
    fn the_burst_counts_empty_answers_within_update_timeout_of_each_other_only() {
        let mut table = table_of(4, secs(0));
        // Three routes empty 20 s apart: never more than one at once (1 of 4, 25 %).
        for (cmdid, at) in [(1, 1), (2, 21), (3, 41)] {
            empty(&mut table, cmdid, false, secs(at));
            let outcome = empty(&mut table, cmdid, false, secs(at + 16));
            assert!(
                matches!(outcome, DnsUpdateOutcome::Applied(_)),
                "{cmdid}: {outcome:?}"
            );
        }
        // Three of four at once: 75 %, more than 50 %.
        let mut table = table_of(4, secs(0));
        for cmdid in 1..=3 {
            empty(&mut table, cmdid, false, secs(1));
        }
        let outcome = empty(&mut table, 1, false, secs(17));
        assert_eq!(
            outcome,
            DnsUpdateOutcome::HeldBack {
                newly: true,
                burst: 3,
                base: 4
            }
        );
    }

    #[test]
    fn threshold_100_applies_unmarked_empties_after_the_wait_and_a_one_route_shard_is_protected() {
        let settings = LbSettings {
            push_empty_threshold: 100,
            ..LbSettings::default()
        };
        let mut table = RouteTable::new(settings);
        table.get_host(KEY, secs(0));
        table.apply_dns_update(KEY, &hosts(&[1]), false, secs(0));
        table.apply_dns_update(KEY, &[], false, secs(1));
        let outcome = table.apply_dns_update(KEY, &[], false, secs(17));
        assert!(
            matches!(outcome, DnsUpdateOutcome::Applied(_)),
            "{outcome:?}"
        );
        // With the default, the only route of a shard emptied unaccounted is 100 %: held.
        let mut table = table_of(1, secs(0));
        empty(&mut table, 1, false, secs(1));
        assert!(matches!(
            empty(&mut table, 1, false, secs(17)),
            DnsUpdateOutcome::HeldBack { .. }
        ));
    }

    #[test]
    fn an_empty_answer_for_a_route_without_hosts_is_applied_as_before() {
        let mut table = RouteTable::new(LbSettings::default());
        table.get_host(KEY, secs(0));
        assert!(matches!(
            table.apply_dns_update(KEY, &[], false, secs(1)),
            DnsUpdateOutcome::Applied(_)
        ));
        assert_eq!(table.kept_count(), 0);
    }

    fn bounded(max_routes: usize, idle_ttl_secs: u64) -> RouteTable {
        let limits = TableLimits {
            max_routes,
            idle_ttl: secs(idle_ttl_secs),
        };
        RouteTable::with_limits(LbSettings::default(), limits)
    }

    /// Evicts at `now` with a 1 s tick, forgetting everything; returns the evicted keys.
    fn evict(table: &mut RouteTable, now: Millis) -> Vec<RouteKey> {
        let mut forgot = Vec::new();
        table.evict_idle(now, secs(1), |key| {
            forgot.push(key);
            true
        });
        forgot.sort_unstable();
        forgot
    }

    #[test]
    fn at_the_cap_an_unknown_key_is_refused_and_known_routes_still_answer() {
        let mut table = bounded(2, 600);
        table.get_host(KEY, secs(0));
        table.apply_dns_update(KEY, &hosts(&[1]), false, secs(0));
        let other = RouteKey::new(7, 7);
        assert_eq!(
            table.get_host(other, secs(0)),
            (HostAnswer::NoExist, ask(other))
        );
        let third = RouteKey::new(8, 8);
        assert_eq!(table.get_host(third, secs(1)), (HostAnswer::Refused, None));
        assert_eq!(HostAnswer::Refused.retcode(), RetCode::NoExist);
        assert!(table.get_route(third, secs(1)).is_none());
        assert!(!table.preload(third, &hosts(&[2]), secs(1)));
        assert_eq!(table.route_count(), 2);
        assert_eq!(table.get_host(KEY, secs(1)).0, HostAnswer::Host(addr(1)));
        // A dns answer for the refused key is not held either.
        assert_eq!(
            table.apply_dns_update(third, &hosts(&[3]), false, secs(1)),
            DnsUpdateOutcome::NotHeld
        );
    }

    #[test]
    fn negative_entries_go_after_update_timeout_routes_with_hosts_after_idle_ttl() {
        let mut table = bounded(10, 60);
        let (empty, pulling) = (RouteKey::new(5, 5), RouteKey::new(6, 6));
        table.get_host(KEY, secs(0));
        table.apply_dns_update(KEY, &hosts(&[1, 2]), false, secs(0));
        table.get_host(empty, secs(0));
        table.apply_dns_update(empty, &[], false, secs(0));
        table.get_host(pulling, secs(0));
        assert!(
            evict(&mut table, secs(15)).is_empty(),
            "not idle beyond update_timeout"
        );
        let mut negatives = vec![empty, pulling];
        negatives.sort_unstable();
        assert_eq!(evict(&mut table, secs(16)), negatives);
        assert_eq!((table.route_count(), table.host_count()), (1, 2));
        assert!(evict(&mut table, secs(60)).is_empty());
        assert_eq!(evict(&mut table, secs(61)), [KEY]);
        assert_eq!((table.route_count(), table.host_count()), (0, 0));
        // Evicted means unknown: asked for again, it is created and asked of dns.
        assert_eq!(
            table.get_host(KEY, secs(62)),
            (HostAnswer::NoExist, ask(KEY))
        );
    }

    #[test]
    fn a_caller_asking_keeps_a_route_and_eviction_frees_room_under_the_cap() {
        let mut table = bounded(2, 60);
        table.get_host(KEY, secs(0));
        table.apply_dns_update(KEY, &hosts(&[1]), false, secs(0));
        let junk = RouteKey::new(9, 9);
        table.get_host(junk, secs(0));
        for at in [30, 59, 88, 117] {
            table.get_route(KEY, secs(at)).unwrap();
            evict(&mut table, secs(at));
        }
        assert!(table.route(KEY).is_some(), "asked every 30 s: kept");
        assert!(table.route(junk).is_none());
        let new = RouteKey::new(4, 4);
        assert_eq!(
            table.get_host(new, secs(118)),
            (HostAnswer::NoExist, ask(new))
        );
    }

    #[test]
    fn a_refused_forget_keeps_the_route_and_the_sweep_resumes_there() {
        let mut table = bounded(10, 60);
        let keys: Vec<RouteKey> = (1..=3).map(|c| RouteKey::new(1, c)).collect();
        for &key in &keys {
            table.get_host(key, secs(0));
        }
        let mut calls = 0;
        let evicted = table.evict_idle(secs(20), secs(1), |_| {
            calls += 1;
            calls == 1
        });
        assert_eq!(
            (evicted.negative, calls),
            (1, 2),
            "stops at the first refusal"
        );
        assert_eq!(table.route_count(), 2);
        assert_eq!(evict(&mut table, secs(20)).len(), 2);
        assert_eq!(table.route_count(), 0);
    }

    #[test]
    fn an_evicted_kept_route_leaves_the_kept_count() {
        let mut table = bounded(10, 60);
        table.get_host(KEY, secs(0));
        table.apply_dns_update(KEY, &hosts(&[1]), false, secs(0));
        table.apply_dns_update(KEY, &[], false, secs(1));
        assert_eq!(table.kept_count(), 1);
        assert_eq!(evict(&mut table, secs(61)), [KEY]);
        assert_eq!((table.kept_count(), table.host_count()), (0, 0));
    }

    #[test]
    fn one_sweep_looks_at_a_bounded_share_of_a_large_table() {
        let mut table = bounded(100_000, 60);
        for cmdid in 0..30_000 {
            table.get_host(RouteKey::new(1, cmdid), secs(0));
        }
        let mut looked = 0;
        // All idle beyond update_timeout: each sweep evicts what it looks at, 1/15 of the cap
        // (a 1 s tick, update_timeout 15 s), so a full table goes within update_timeout.
        let first = table.evict_idle(secs(16), secs(1), |_| {
            looked += 1;
            true
        });
        assert_eq!(looked, 6667);
        assert_eq!(first.negative, 6667);
        for tick in 17..20 {
            evict(&mut table, secs(tick));
        }
        assert_eq!(table.route_count(), 30_000 - 4 * 6667);
        evict(&mut table, secs(20));
        assert_eq!(table.route_count(), 0);
    }

    #[test]
    fn a_held_route_costs_what_the_default_cap_assumes() {
        // What a route costs: its table entry, its eviction-queue slot and its hosts (4, the
        // usual few; none for a negative-cache entry), and in the dns uplink its subscription.
        // The default `max_routes` of routes with hosts must fit in about 100 MB.
        const ROUTES: i32 = 20_000;
        let per_route = |ids: &[u8]| {
            let mut table = bounded(usize::MAX, 600);
            let mut subscriptions = crate::dns_uplink::Subscriptions::default();
            let before = alloc_counter::live_bytes();
            for cmdid in 0..ROUTES {
                let key = RouteKey::new(1, cmdid);
                table.get_host(key, secs(0));
                table.apply_dns_update(key, &hosts(ids), false, secs(0));
                subscriptions.subscribe(key, 0);
            }
            (alloc_counter::live_bytes() - before) / i64::from(ROUTES)
        };
        let (with_hosts, negative) = (per_route(&[1, 2, 3, 4]), per_route(&[]));
        let total = with_hosts as usize * crate::config::DEFAULT_MAX_ROUTES;
        assert!(
            negative < with_hosts && (300..=800).contains(&with_hosts) && total <= 100 << 20,
            "{with_hosts} B per route with hosts, {negative} B per negative entry, {} MB at \
             the default cap",
            total >> 20
        );
    }
}
