//! A worker: one thread pinned to one CPU, running its own I/O loop, owning the shards assigned
//! to it (shard `i` on worker `i % workers`) — their sockets and route tables — and its ends of
//! the rings. Nothing it owns is shared, so there is no lock anywhere on the request path.
//!
//! The worker's state serves its traffic through [`DatagramService`] (datagrams, the eventfd
//! wake-up with route updates from the dns uplink and stop, a tick every `report_interval` for
//! the statistics) and does not know which driver runs it: [`DatagramLoop`] is the `io-uring`
//! or the `portable` driver, as the agent resolved `[agent] io`.
//!
//! The worker also starts with its shards' routes from the route cache (served at once, stale,
//! and asked of dns at its first moments) and, at a tick, hands a snapshot of its routes to the
//! cache writer when they changed (see [`crate::cache`]); it never touches the file.
//!
//! Words: `worker` is the worker's number; `shard` is a shard's number in the agent (its port is
//! `base_port + shard`); `local` is a shard's index in this worker's list, which is also its
//! socket's index in the loop.

use crate::cache::{CacheTx, CachedRoute, ShardRoutes};
use crate::clock::Millis;
use crate::io::{DatagramLoop, DatagramService, Driver, DriverError, LoopControl};
use crate::lb::{
    DnsUpdateOutcome, HostTransition, HostsUpdate, LbSettings, PanicTransition, RouteTable,
    TableLimits,
};
use crate::log_limit::LogLimit;
use crate::rings::{DnsRequest, DnsUplinkTx, ReportUplinkTx, Wake, WorkerInboxRx};
use crate::shard::Shard;
use crate::stats::{DropReason, WorkerStats};
use lars_wire::RouteKey;
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, error, info, warn};

/// Log lines a second a worker may write about host state changes.
const STATE_LOGS_PER_SECOND: u32 = 20;

/// The flag the agent raises to stop a worker; the worker's inbox wake-up makes it look at it.
#[derive(Debug, Default)]
pub struct WorkerFlags {
    /// Stop now.
    pub stop: AtomicBool,
}

/// Everything a worker is started with.
pub struct WorkerSetup {
    /// Worker number.
    pub worker: usize,
    /// CPU to pin the thread to, if any.
    pub core: Option<core_affinity::CoreId>,
    /// The shards it serves (by shard number), with their bound sockets.
    pub shards: Vec<(u16, std::net::UdpSocket)>,
    /// Ring to the dns uplink.
    pub dns_tx: DnsUplinkTx,
    /// Ring to the report uplink.
    pub report_tx: ReportUplinkTx,
    /// Ring from the dns uplink.
    pub inbox: WorkerInboxRx,
    /// Fired when the inbox gets items or a flag is raised; made with [`Wake::with_eventfd`].
    pub wake: Wake,
    /// Stop and reconnect flags.
    pub flags: Arc<WorkerFlags>,
    /// The worker's counters.
    pub stats: Arc<WorkerStats>,
    /// Load-balancing settings.
    pub settings: LbSettings,
    /// The driver to serve with.
    pub driver: Driver,
    /// How often statistics go to the report uplink.
    pub report_interval: Duration,
    /// The agent's epoch for [`Millis`].
    pub epoch: Instant,
    /// Its shards' routes from the route cache, by shard number.
    pub cached: Vec<(u16, Vec<CachedRoute>)>,
    /// Ring to the cache writer; `None` when the route cache is off.
    pub cache_tx: Option<CacheTx>,
    /// Least time between two snapshots for the cache writer.
    pub cache_interval: Duration,
    /// Each shard table's cap and idle time.
    pub limits: TableLimits,
    /// Whether the shards answer the fast path's messages (`[agent] fast_path`).
    pub fast_path: bool,
}

/// Why a worker did not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Its thread could not be started.
    #[error("cannot start the worker's thread")]
    Thread(#[source] std::io::Error),
    /// Its driver could not be set up.
    #[error("cannot set up the worker's {driver} driver")]
    Driver {
        /// The driver.
        driver: Driver,
        /// Why.
        #[source]
        source: DriverError,
    },
    /// Its wake-up has no eventfd for the loop to watch (made with `Wake::new`).
    #[error("the worker's wake-up has no eventfd")]
    NoEventFd,
    /// Its thread ended before saying whether its driver runs (it panicked).
    #[error("the worker's thread ended while starting")]
    Ended,
}

/// Starts the worker's thread and returns once it has pinned itself to its CPU and set up its
/// driver, so that what the agent shows once started (its counters, its "serving" line) already
/// holds; a driver that cannot be set up is returned as [`SpawnError::Driver`] and the thread
/// ends.
pub fn spawn(setup: WorkerSetup) -> Result<std::thread::JoinHandle<()>, SpawnError> {
    let (started_tx, started_rx) = std::sync::mpsc::sync_channel::<Result<(), SpawnError>>(1);
    let handle = std::thread::Builder::new()
        .name(format!("lars-worker-{}", setup.worker))
        .spawn(move || {
            if let Some(core) = setup.core {
                if core_affinity::set_for_current(core) {
                    setup.stats.core.set(core.id as u64);
                } else {
                    warn!(
                        worker = setup.worker,
                        core = core.id,
                        "could not pin worker to its CPU"
                    );
                }
            }
            run(setup, started_tx);
        })
        .map_err(SpawnError::Thread)?;
    match started_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            let _ = handle.join();
            Err(SpawnError::Ended)
        }
    }
}

/// The worker's state: its shards and its ends of the rings, owned by its loop.
struct WorkerState {
    worker: usize,
    inbox: WorkerInboxRx,
    flags: Arc<WorkerFlags>,
    /// The shards, by `local`.
    shards: Vec<Shard>,
    /// `local_of[shard]`: where shard number `shard` is in `shards`, if this worker has it.
    local_of: Vec<Option<usize>>,
    dns_tx: DnsUplinkTx,
    report_tx: ReportUplinkTx,
    stats: Arc<WorkerStats>,
    logs: LogLimit,
    epoch: Instant,
    /// How often [`DatagramService::tick`] comes (`report_interval`).
    tick: Millis,
    /// The route cache's part of the worker.
    cache: CacheFeed,
}

/// What the worker keeps for the route cache: the cached routes it has yet to ask dns for, and
/// when its routes next go to the cache writer.
struct CacheFeed {
    /// Ring to the cache writer; `None` when the cache is off.
    tx: Option<CacheTx>,
    interval: Millis,
    /// When the last snapshot went to the writer.
    last_sent: Option<Millis>,
    /// A route's hosts changed since the last snapshot.
    changed: bool,
    /// Cached routes (by `local`) not asked of dns yet: the dns ring was full.
    to_ask: VecDeque<(usize, RouteKey)>,
    /// Stale routes when last counted; counted again at each tick while non-zero.
    stale: usize,
}

impl WorkerState {
    fn now(&self) -> Millis {
        Millis::from(self.epoch.elapsed())
    }

    /// Handles one datagram for the shard at `local`; returns the reply's length.
    fn handle(&mut self, local: usize, datagram: &[u8], reply: &mut [u8]) -> Option<usize> {
        let now = self.now();
        let shard = &mut self.shards[local];
        let handled = shard.handle(datagram, reply, now, &self.stats);
        if let Some(ask) = handled.ask {
            let request = DnsRequest::Ask {
                shard: shard.index,
                key: ask.key,
            };
            if self.dns_tx.push(request).is_err() {
                shard.table.pull_not_sent(ask.key);
                self.stats.dns_ring_drops.inc();
            }
            self.update_gauges();
        }
        if let Some((key, transition)) = handled.transition {
            if let Some(suppressed) = self.logs.allow(now) {
                log_transition(self.worker, key, transition, suppressed);
            }
            // Only a host changing state moves a route into or out of panic.
            if let Some(panic) = self.shards[local].table.take_panic_change(key) {
                self.panic_changed(key, panic, now);
            }
        }
        handled.reply_len
    }

    /// Evicts each shard's routes no caller asked for recently (see `lb::table`), telling the
    /// dns uplink to forget each; a full dns ring leaves the rest for the next tick.
    fn evict_idle(&mut self, now: Millis) {
        let (mut negative, mut with_hosts) = (0, 0);
        for shard in &mut self.shards {
            let index = shard.index;
            let dns_tx = &mut self.dns_tx;
            let evicted = shard.table.evict_idle(now, self.tick, |key| {
                dns_tx
                    .push(DnsRequest::Forget { shard: index, key })
                    .is_ok()
            });
            negative += evicted.negative;
            with_hosts += evicted.with_hosts;
        }
        if negative + with_hosts == 0 {
            return;
        }
        self.stats
            .routes_evicted
            .add((negative + with_hosts) as u64);
        if with_hosts > 0 {
            self.cache.changed = true;
        }
        debug!(
            worker = self.worker,
            negative, with_hosts, "idle routes evicted"
        );
        self.update_gauges();
    }

    /// Counts and logs a route entering or leaving panic mode.
    fn panic_changed(&mut self, key: RouteKey, panic: PanicTransition, now: Millis) {
        match panic {
            PanicTransition::Entered { .. } => self.stats.panic_entered.inc(),
            PanicTransition::Left { .. } => self.stats.panic_left.inc(),
        }
        if let Some(suppressed) = self.logs.allow(now) {
            log_panic(self.worker, key, panic, suppressed);
        }
    }

    /// What the worker does after a dns answer was applied to the shard at `local` (called from
    /// `drain_inbox`): note a change of hosts for the route cache, and a panic change.
    fn route_applied(&mut self, local: usize, key: RouteKey, change: HostsUpdate) {
        if change.added > 0 || change.removed > 0 {
            self.cache.changed = true;
        }
        if let Some(panic) = self.shards[local].table.take_panic_change(key) {
            self.panic_changed(key, panic, self.now());
        }
    }

    /// Loads the shards' routes from the route cache and asks dns for them.
    fn preload(&mut self, cached: Vec<(u16, Vec<CachedRoute>)>) {
        let now = self.now();
        for (shard, routes) in cached {
            let Some(&Some(local)) = self.local_of.get(usize::from(shard)) else {
                continue;
            };
            for (key, hosts) in routes {
                if self.shards[local].table.preload(key, &hosts, now) {
                    self.cache.to_ask.push_back((local, key));
                }
            }
        }
        self.ask_for_cached(now);
        self.count_stale();
        self.update_gauges();
    }

    /// Asks dns for the cached routes not asked yet, as far as the dns ring has room. A route a
    /// caller asked for meanwhile, or that dns answered, is skipped.
    fn ask_for_cached(&mut self, now: Millis) {
        while let Some(&(local, key)) = self.cache.to_ask.front() {
            let shard = &mut self.shards[local];
            if let Some(ask) = shard.table.ask_if_due(key, now) {
                let request = DnsRequest::Ask {
                    shard: shard.index,
                    key: ask.key,
                };
                if self.dns_tx.push(request).is_err() {
                    shard.table.pull_not_sent(key);
                    self.stats.dns_ring_drops.inc();
                    return;
                }
            }
            self.cache.to_ask.pop_front();
        }
    }

    /// Counts the stale routes (only the start makes any, so a tick counts them only while
    /// there are some).
    fn count_stale(&mut self) {
        self.cache.stale = self.shards.iter().map(|s| s.table.stale_count()).sum();
        self.stats.stale_routes.set(self.cache.stale as u64);
    }

    /// Hands every shard's routes to the cache writer if they changed and the last snapshot is
    /// `cache_interval` old (or `last`: the worker is stopping). A full ring: tried again later.
    fn feed_cache(&mut self, now: Millis, last: bool) {
        let feed = &mut self.cache;
        let Some(tx) = &mut feed.tx else {
            return;
        };
        let due = feed
            .last_sent
            .is_none_or(|sent| now.since(sent) >= feed.interval);
        if !feed.changed || !(due || last) {
            return;
        }
        for shard in &self.shards {
            let routes = shard
                .table
                .held_routes()
                .map(|(key, hosts)| (key, hosts.collect()))
                .collect();
            let snapshot = ShardRoutes {
                shard: shard.index,
                routes,
            };
            if tx.push(snapshot).is_err() {
                return;
            }
        }
        feed.changed = false;
        feed.last_sent = Some(now);
    }

    fn update_gauges(&self) {
        let routes = self
            .shards
            .iter()
            .map(|s| s.table.route_count())
            .sum::<usize>();
        let hosts = self
            .shards
            .iter()
            .map(|s| s.table.host_count())
            .sum::<usize>();
        self.stats.routes.set(routes as u64);
        self.stats.hosts.set(hosts as u64);
    }

    /// Every `report_interval`: statistics out, idle routes evicted, cached routes asked for,
    /// stale routes counted, routes to the cache writer.
    fn on_tick(&mut self) {
        self.send_reports();
        let now = self.now();
        self.evict_idle(now);
        self.ask_for_cached(now);
        if self.cache.stale > 0 {
            self.count_stale();
        }
        self.feed_cache(now, false);
    }

    /// After a wake-up: stop, or apply what the dns uplink sent.
    fn on_wake(&mut self) -> LoopControl {
        if self.flags.stop.load(Ordering::Acquire) {
            return LoopControl::Stop;
        }
        self.drain_inbox();
        LoopControl::Continue
    }

    /// Applies what the dns uplink sent.
    fn drain_inbox(&mut self) {
        let now = self.now();
        let mut applied = 0;
        let mut kept_changed = false;
        while let Some(update) = self.inbox.pop() {
            let Some(&Some(local)) = self.local_of.get(update.shard as usize) else {
                continue;
            };
            let shard = &mut self.shards[local];
            match shard
                .table
                .apply_dns_update(update.key, &update.hosts, update.removed, now)
            {
                DnsUpdateOutcome::Applied(change) => {
                    self.route_applied(local, update.key, change);
                    applied += 1;
                    self.stats.route_updates.inc();
                    if change.added > 0 || change.removed > 0 {
                        if let Some(suppressed) = self.logs.allow(now) {
                            info!(worker = self.worker, key = %update.key, added = change.added,
                                removed = change.removed, hosts = change.hosts, suppressed,
                                "route updated");
                        }
                    } else {
                        debug!(worker = self.worker, key = %update.key, "route unchanged");
                    }
                }
                DnsUpdateOutcome::Waiting { first } => {
                    kept_changed = true;
                    if first && let Some(suppressed) = self.logs.allow(now) {
                        warn!(worker = self.worker, key = %update.key, suppressed,
                            "dns answered no hosts and no route edit accounts for it; serving \
                             the last hosts for update_timeout to see how many routes empty");
                    }
                }
                DnsUpdateOutcome::HeldBack { newly, burst, base } => {
                    if newly {
                        self.stats.push_empty_held.inc();
                        if let Some(suppressed) = self.logs.allow(now) {
                            warn!(worker = self.worker, key = %update.key, burst, of = base,
                                suppressed,
                                "PUSH-EMPTY PROTECTION: dns keeps answering no hosts, for more \
                                 than push_empty_threshold of the routes at once, with no route \
                                 edit accounting for it; serving the last hosts");
                        }
                    } else {
                        debug!(worker = self.worker, key = %update.key, "route still held back");
                    }
                }
                DnsUpdateOutcome::NotHeld => {}
            }
        }
        if applied > 0 {
            self.update_gauges();
        }
        if applied > 0 || kept_changed {
            let kept = self
                .shards
                .iter()
                .map(|s| s.table.kept_count())
                .sum::<usize>();
            self.stats.push_empty_kept.set(kept as u64);
        }
    }

    /// Hands each route's statistics since the last upload to the report uplink.
    fn send_reports(&mut self) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        for shard in &mut self.shards {
            // The report uplink stamps `caller` with its own address.
            for report in shard.table.take_reports(Ipv4Addr::new(0, 0, 0, 0), ts) {
                if self.report_tx.push(report).is_err() {
                    self.stats.report_ring_drops.inc();
                }
            }
        }
    }
}

fn log_transition(worker: usize, key: RouteKey, transition: HostTransition, suppressed: u64) {
    match transition {
        HostTransition::Overloaded {
            host,
            reason,
            succ,
            err,
        } => info!(
            worker, %key, %host, ?reason, succ, err, suppressed, "host overloaded"
        ),
        HostTransition::Recovered {
            host,
            reason,
            succ,
            err,
        } => info!(
            worker, %key, %host, ?reason, succ, err, suppressed, "host recovered"
        ),
    }
}

fn log_panic(worker: usize, key: RouteKey, panic: PanicTransition, suppressed: u64) {
    match panic {
        PanicTransition::Entered { overloaded, hosts } => warn!(
            worker, %key, overloaded, hosts, suppressed,
            "route in panic: too many hosts overloaded, picks spread over all of them"
        ),
        PanicTransition::Left { overloaded, hosts } => info!(
            worker, %key, overloaded, hosts, suppressed,
            "route out of panic: picks follow the idle and overload lists again"
        ),
    }
}

/// Where a shard's route view versions start: the wall clock in microseconds, in the high bits
/// the shard, so that neither a restarted agent nor another shard hands out a version a
/// fast-path caller still holds for the route.
fn version_seed(shard: u16) -> u64 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    (u64::from(shard) << 56) ^ (micros << 8)
}

/// Builds the worker's state from its setup; returns it with the shard sockets (by `local`),
/// the wake-up, the driver and the tick.
fn prepare(
    setup: WorkerSetup,
) -> (
    WorkerState,
    Vec<std::net::UdpSocket>,
    Wake,
    Driver,
    Duration,
) {
    let WorkerSetup {
        worker,
        shards,
        dns_tx,
        report_tx,
        inbox,
        wake,
        flags,
        stats,
        settings,
        driver,
        report_interval,
        epoch,
        cached,
        cache_tx,
        cache_interval,
        limits,
        fast_path,
        ..
    } = setup;
    let max_shard = shards
        .iter()
        .map(|(s, _)| usize::from(*s))
        .max()
        .unwrap_or(0);
    let mut local_of = vec![None; max_shard + 1];
    let mut sockets = Vec::new();
    let mut owned = Vec::new();
    for (local, (shard, socket)) in shards.into_iter().enumerate() {
        local_of[usize::from(shard)] = Some(local);
        sockets.push(socket);
        let mut table = RouteTable::with_limits(settings.clone(), limits);
        table.seed_versions(version_seed(shard));
        owned.push(Shard {
            index: shard,
            table,
            fast_path,
        });
    }
    stats.shards.set(owned.len() as u64);
    let mut state = WorkerState {
        worker,
        inbox,
        flags,
        shards: owned,
        local_of,
        dns_tx,
        report_tx,
        stats,
        logs: LogLimit::new(STATE_LOGS_PER_SECOND),
        epoch,
        tick: Millis::from(report_interval),
        cache: CacheFeed {
            tx: cache_tx,
            interval: Millis::from(cache_interval),
            last_sent: None,
            changed: false,
            to_ask: VecDeque::new(),
            stale: 0,
        },
    };
    state.preload(cached);
    (state, sockets, wake, driver, report_interval)
}

/// The worker's life on its thread: sets up its driver, says whether that worked on `started`,
/// then serves until stopped and hands over its last statistics.
fn run(setup: WorkerSetup, started: std::sync::mpsc::SyncSender<Result<(), SpawnError>>) {
    let (mut state, sockets, wake, driver, report_interval) = prepare(setup);
    let worker = state.worker;
    let Some(eventfd) = wake.eventfd() else {
        let _ = started.send(Err(SpawnError::NoEventFd));
        return;
    };
    let mut event_loop = match DatagramLoop::new(driver, sockets, Some(eventfd), report_interval) {
        Ok(event_loop) => event_loop,
        Err(source) => {
            let _ = started.send(Err(SpawnError::Driver { driver, source }));
            return;
        }
    };
    state.stats.driver.set(driver.name());
    let _ = started.send(Ok(()));
    if let Err(e) = event_loop.run(&mut state) {
        error!(worker, %driver, error = %e, "the worker's I/O loop failed; its shards no longer answer");
    }
    drop(event_loop);
    state.send_reports();
    let now = state.now();
    state.feed_cache(now, true);
    debug!(worker, "worker stopped");
}

impl DatagramService for WorkerState {
    fn datagram(&mut self, local: usize, datagram: &[u8], reply: &mut [u8]) -> Option<usize> {
        self.handle(local, datagram, reply)
    }

    fn oversized(&mut self, _local: usize, _len: usize) {
        self.stats.dropped(DropReason::BadLength);
    }

    fn recv_failed(&mut self, _local: usize, error: std::io::Error) {
        self.stats.recv_errors.inc();
        debug!(worker = self.worker, %error, "receive failed");
    }

    fn send_failed(&mut self, error: std::io::Error) {
        self.stats.send_errors.inc();
        debug!(worker = self.worker, %error, "send failed");
    }

    fn woken(&mut self) -> LoopControl {
        self.on_wake()
    }

    fn tick(&mut self) {
        self.on_tick();
    }
}
