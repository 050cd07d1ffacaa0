//! The callers' fast path: [`FastClient`], one client a whole process shares across its threads,
//! that picks hosts from a *route view* it holds in memory and sends the agent its results in
//! ordered batches, so `get_host` and `report` cost no system call and take no lock in steady
//! state. The agent stays the one owner of host health: it applies every batch through the same
//! rules as single reports and answers with the route's new view when a host changed state.
//!
//! # Who does what
//! - The calling threads ([`FastClient::get_host`], [`FastClient::report`]) read the route's
//!   view (an [`ArcSwapOption`]) and apply the Lars pick rules with per-route atomic counters;
//!   a result goes into the calling thread's own bounded ring of runs (`runs.rs`): one that
//!   continues its host's latest run only adds one to that run's count, so the flusher and the
//!   agent handle a few runs per host per flush however many calls a thread makes. Each thread finds a route's slot
//!   in its own small cache, so the shared route registry (a mutex) is taken only the first time
//!   a thread meets a route.
//! - The flusher thread drains every thread's queue each `flush_interval` (or when one holds
//!   `flush_max` results), sends each route's results as one `ReportBatchRequest` per agent
//!   shard port (split when it would not fit a datagram), asks for the views of new routes and
//!   revalidates views that no reply refreshed within `view_ttl`, and evicts routes unused for
//!   `route_idle_ttl`.
//! - The receiver thread takes the agent's `RouteViewResponse`s and swaps the new views in.
//!
//! # Falling back
//! A route without a usable view (not fetched yet, or the agent does not answer the fast path:
//! a C++ agent, or ours with `[agent] fast_path = false`) is served by the classic protocol, one
//! blocking [`Client`] per calling thread. When a fast-path request stays unanswered for
//! `ClientConfig::timeout`, every view is dropped (so every call goes classic) and the fast path
//! is tried again after `retry_interval`.
//!
//! # What a caller can lose
//! Results wait in memory until the next flush: a process that exits (or a `FastClient` that is
//! dropped without its final flush, e.g. on `abort`) loses at most one flush of results, about
//! `flush_interval` of calls. Dropping the client flushes what its queues hold.
//!
//! # Memory
//! At most `max_routes` routes are held (beyond, a new route is served classic and counted in
//! [`FastStats::routes_refused`]); each thread's cache holds at most [`THREAD_CACHE_MAX`]
//! routes; each thread's ring at most `queue_capacity` runs (beyond, results are dropped and
//! counted in [`FastStats::results_dropped`]; with runs this takes results that alternate
//! between success and failure faster than the flusher drains them).

use crate::client::{Client, ClientConfig, ClientError, host_from_wire, shard_of};
use crate::datagram::{decode_datagram, encode_datagram};
use crate::frame::{HEADER_LEN, MAX_FRAME_LEN};
use crate::messages::{HostResults, ReportBatchRequest, RouteViewRequest, RouteViewResponse};
use crate::msg::{Message, RetCode};
use crate::route::{HostAddr, RouteKey};
use crate::runs::{OpenRuns, Recorded, RunRing};
use arc_swap::ArcSwapOption;
use foldhash::HashMap;
use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::num::NonZeroU16;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};
use thread_local::ThreadLocal;

/// Routes one calling thread keeps in its own cache; a thread that uses more starts its cache
/// afresh (its next calls look routes up in the shared registry once more).
pub const THREAD_CACHE_MAX: usize = 4096;

/// Most runs one `ReportBatchRequest` carries: at most 5 bytes each, so a batch stays far below
/// the 64 KiB datagram however many hosts it names.
const MAX_RUNS_PER_DATAGRAM: usize = 8000;

/// The longest run one `runs` entry holds (`count << 1 | failed` must fit a `u32`).
const MAX_RUN: u32 = u32::MAX >> 1;

/// How long the receiver waits for a datagram before it looks at the stop flag.
const RECEIVER_POLL: Duration = Duration::from_millis(50);

/// The fast client's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastConfig {
    /// Where the agent is; its `timeout` is also how long a fast-path request may stay
    /// unanswered before the client falls back to the classic protocol.
    pub client: ClientConfig,
    /// How often the results are sent; 1 ms by default.
    pub flush_interval: Duration,
    /// A thread queue holding this many results wakes the flusher before `flush_interval`;
    /// 4096 by default.
    pub flush_max: usize,
    /// A view that no reply refreshed for this long is asked for again; 50 ms by default, so a
    /// route change from dns or a host overloaded by another process's results reaches every
    /// caller within it.
    pub view_ttl: Duration,
    /// After a fallback, how long the fast path rests before it is tried again; 5 s by default.
    pub retry_interval: Duration,
    /// Most routes held; 100,000 by default.
    pub max_routes: usize,
    /// A route no caller used for this long is forgotten; 60 s by default.
    pub route_idle_ttl: Duration,
    /// Results each calling thread's queue holds; 16,384 by default (256 KiB).
    pub queue_capacity: usize,
}

impl Default for FastConfig {
    fn default() -> FastConfig {
        FastConfig {
            client: ClientConfig::default(),
            flush_interval: Duration::from_millis(1),
            flush_max: 4096,
            view_ttl: Duration::from_millis(50),
            retry_interval: Duration::from_secs(5),
            max_routes: 100_000,
            route_idle_ttl: Duration::from_secs(60),
            queue_capacity: 16_384,
        }
    }
}

/// The fast client's counters (relaxed atomics, for tests and operators).
#[derive(Debug, Default)]
pub struct FastStats {
    /// `get_host`/`report`/`get_route` calls served by the classic protocol. (Calls served from
    /// a view are not counted: a counter every thread writes would cost more than the call.)
    pub classic_calls: AtomicU64,
    /// Results sent in batches.
    pub results_sent: AtomicU64,
    /// Results dropped: a thread's queue was full.
    pub results_dropped: AtomicU64,
    /// Report batch datagrams sent.
    pub batches_sent: AtomicU64,
    /// Route view requests sent.
    pub view_requests: AtomicU64,
    /// Views received (not counting short acks).
    pub views_received: AtomicU64,
    /// Short acks received (the view was current).
    pub acks_received: AtomicU64,
    /// Times the agent did not answer the fast path and the client fell back to classic.
    pub fallbacks: AtomicU64,
    /// New routes served classic because `max_routes` were held.
    pub routes_refused: AtomicU64,
    /// Routes forgotten after `route_idle_ttl` unused.
    pub routes_evicted: AtomicU64,
    /// Datagrams received that were not a view for a held route.
    pub discarded: AtomicU64,
}

/// A route's view as the agent sent it, ready to pick from.
#[derive(Debug)]
struct View {
    version: u64,
    /// NOEXIST: the agent does not have the route (yet); no hosts.
    noexist: bool,
    probe_num: u32,
    panic: bool,
    /// Every host, idle ones first (the agent's order).
    hosts: Vec<HostAddr>,
    /// How many of `hosts` are idle (the first ones).
    idle: usize,
}

/// One route: its view and its pick counters, shared by every thread.
#[repr(align(64))]
struct RouteSlot {
    key: RouteKey,
    view: ArcSwapOption<View>,
    /// Picks since the last probe (Lars' `access_cnt`), counting every pick of a route with an
    /// overloaded host.
    access: AtomicU32,
    /// The next idle host (round robin).
    next_idle: AtomicU32,
    /// The next overloaded host to probe.
    next_probe: AtomicU32,
    /// The next host in panic mode.
    next_any: AtomicU32,
    /// When (client milliseconds) a caller last used the route.
    last_used: AtomicU64,
    /// When a reply for the route last came.
    last_refresh: AtomicU64,
    /// When the oldest unanswered request for the route was sent; 0: none.
    awaiting: AtomicU64,
    /// Removed from the registry: threads drop it from their caches.
    evicted: AtomicBool,
}

impl RouteSlot {
    fn new(key: RouteKey, now: u64) -> RouteSlot {
        RouteSlot {
            key,
            view: ArcSwapOption::empty(),
            access: AtomicU32::new(0),
            next_idle: AtomicU32::new(0),
            next_probe: AtomicU32::new(0),
            next_any: AtomicU32::new(0),
            last_used: AtomicU64::new(now),
            last_refresh: AtomicU64::new(0),
            awaiting: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
        }
    }

    /// The Lars pick rules on `view`: in panic every host in turn; with only idle hosts the idle
    /// ones in turn; otherwise one pick in every `probe_num + 1` probes the overloaded hosts in
    /// turn and the others take the idle hosts in turn, or answer OVERLOAD when none is idle.
    fn pick(&self, view: &View) -> Result<HostAddr, ClientError> {
        let hosts = &view.hosts;
        if view.noexist || hosts.is_empty() {
            return Err(ClientError::Refused(RetCode::NoExist));
        }
        let turn = |counter: &AtomicU32, len: usize| {
            counter.fetch_add(1, Ordering::Relaxed) as usize % len
        };
        if view.panic {
            return Ok(hosts[turn(&self.next_any, hosts.len())]);
        }
        let overloaded = hosts.len() - view.idle;
        if overloaded == 0 {
            return Ok(hosts[turn(&self.next_idle, view.idle)]);
        }
        let n = u64::from(self.access.fetch_add(1, Ordering::Relaxed));
        if n % (u64::from(view.probe_num) + 1) == u64::from(view.probe_num) {
            return Ok(hosts[view.idle + turn(&self.next_probe, overloaded)]);
        }
        if view.idle == 0 {
            return Err(ClientError::Refused(RetCode::Overload));
        }
        Ok(hosts[turn(&self.next_idle, view.idle)])
    }
}

/// What one calling thread keeps: its route cache and its classic client.
#[derive(Default)]
struct ThreadState {
    last: Option<Arc<RouteSlot>>,
    routes: HashMap<RouteKey, Arc<RouteSlot>>,
    classic: Option<Client>,
    /// Where this thread's latest run per route and host is in its [`RunRing`].
    open: OpenRuns,
}

/// Everything the callers, the flusher and the receiver share.
struct Shared {
    config: FastConfig,
    shards: NonZeroU16,
    /// Agent port by shard.
    agents: Vec<SocketAddr>,
    /// Sends batches and view requests (flusher) and receives views (receiver).
    socket: UdpSocket,
    routes: Mutex<HashMap<RouteKey, Arc<RouteSlot>>>,
    /// Routes registered since the flusher last looked: their views are asked for at once.
    fresh: Mutex<Vec<Arc<RouteSlot>>>,
    /// Each calling thread's results, as runs, for the flusher.
    rings: ThreadLocal<RunRing>,
    threads: ThreadLocal<RefCell<ThreadState>>,
    epoch: Instant,
    /// Client milliseconds, as the flusher last read them (callers stamp routes with it).
    coarse_now: AtomicU64,
    /// Until when (client milliseconds) the fast path rests after a fallback; 0: not resting.
    resting_until: AtomicU64,
    stop: AtomicBool,
    flusher: OnceLock<Thread>,
    stats: FastStats,
}

/// The fast-path client: one per process, shared by all of its threads (`Send + Sync`; wrap it
/// in an `Arc` or a `static`). See the module docs.
pub struct FastClient {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
    receiver: Option<JoinHandle<()>>,
}

impl fmt::Debug for FastClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastClient")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl FastClient {
    /// Checks `config`, binds the client's socket and starts its flusher and receiver threads.
    /// Nothing is sent until the first call, so this succeeds whether the agent runs or not.
    pub fn new(config: FastConfig) -> Result<FastClient, ClientError> {
        Client::check_config(&config.client)?;
        let bad = |reason: &str| {
            Err(ClientError::BadConfig {
                reason: reason.to_string(),
            })
        };
        if config.flush_interval.is_zero() || config.view_ttl.is_zero() {
            return bad("flush_interval and view_ttl must not be zero");
        }
        if config.flush_max == 0 || config.queue_capacity == 0 || config.max_routes == 0 {
            return bad("flush_max, queue_capacity and max_routes must be at least 1");
        }
        let shards = NonZeroU16::new(config.client.shards).unwrap_or(NonZeroU16::MIN);
        let agents: Vec<SocketAddr> = (0..config.client.shards)
            .map(|shard| {
                SocketAddr::V4(SocketAddrV4::new(
                    config.client.agent_ip,
                    config.client.base_port + shard,
                ))
            })
            .collect();
        let local = if config.client.agent_ip.is_loopback() {
            Ipv4Addr::LOCALHOST
        } else {
            Ipv4Addr::new(0, 0, 0, 0)
        };
        let io_error = |source| ClientError::Io {
            agent: agents[0],
            source,
        };
        let socket = UdpSocket::bind((local, 0)).map_err(io_error)?;
        socket
            .set_read_timeout(Some(RECEIVER_POLL))
            .map_err(io_error)?;
        let shared = Arc::new(Shared {
            config,
            shards,
            agents,
            socket,
            routes: Mutex::default(),
            fresh: Mutex::default(),
            rings: ThreadLocal::new(),
            threads: ThreadLocal::new(),
            epoch: Instant::now(),
            coarse_now: AtomicU64::new(1),
            resting_until: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            flusher: OnceLock::new(),
            stats: FastStats::default(),
        });
        let spawn_error = |source| ClientError::Io {
            agent: shared.agents[0],
            source,
        };
        let for_flusher = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("lars-fast-flusher".into())
            .spawn(move || Flusher::new(for_flusher).run())
            .map_err(spawn_error)?;
        let _ = shared.flusher.set(flusher.thread().clone());
        let for_receiver = Arc::clone(&shared);
        let receiver = std::thread::Builder::new()
            .name("lars-fast-receiver".into())
            .spawn(move || receive(&for_receiver))
            .map_err(spawn_error)?;
        Ok(FastClient {
            shared,
            flusher: Some(flusher),
            receiver: Some(receiver),
        })
    }

    /// The client's counters.
    pub fn stats(&self) -> &FastStats {
        &self.shared.stats
    }

    /// Whether `(modid, cmdid)` is served from a view now (else by the classic protocol).
    pub fn is_fast(&self, modid: i32, cmdid: i32) -> bool {
        let key = RouteKey::new(modid, cmdid);
        let routes = lock(&self.shared.routes);
        routes
            .get(&key)
            .is_some_and(|slot| slot.view.load().is_some())
    }

    /// The route's hosts with their overload flags as its view holds them (idle hosts first), or
    /// `None` while the route has no view (it is served classic).
    pub fn host_states(&self, modid: i32, cmdid: i32) -> Option<Vec<(HostAddr, bool)>> {
        let key = RouteKey::new(modid, cmdid);
        let slot = lock(&self.shared.routes).get(&key).cloned()?;
        let view = slot.view.load_full()?;
        Some(
            view.hosts
                .iter()
                .enumerate()
                .map(|(i, &host)| (host, i >= view.idle))
                .collect(),
        )
    }

    /// Makes sure the agent has the route before the first `get_host`, as [`Client::reg_init`]
    /// does, and waits (at most the client's timeout) for its view; returns its hosts.
    pub fn reg_init(&self, modid: i32, cmdid: i32) -> Result<Vec<HostAddr>, ClientError> {
        let hosts = self.classic(|client| client.reg_init(modid, cmdid))?;
        let key = RouteKey::new(modid, cmdid);
        let registered = self.with_slot(key, |_| ()).is_some();
        let slot = lock(&self.shared.routes).get(&key).cloned();
        if registered && let Some(slot) = slot {
            self.wake_flusher();
            let deadline = Instant::now() + self.shared.config.client.timeout;
            while slot.view.load().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(hosts)
    }

    /// One host of `(modid, cmdid)` to call now, picked from the route's view by the Lars rules
    /// (see the module docs); no system call and no lock once the route has a view. Errors as
    /// [`Client::get_host`]: [`ClientError::Refused`] with NOEXIST or OVERLOAD, and, while the
    /// route is served classic, the classic client's errors.
    pub fn get_host(&self, modid: i32, cmdid: i32) -> Result<HostAddr, ClientError> {
        let key = RouteKey::new(modid, cmdid);
        let picked = self.with_slot(key, |slot| slot.view.load().as_ref().map(|v| slot.pick(v)));
        match picked {
            Some(Some(picked)) => picked,
            _ => self.classic(|client| client.get_host(modid, cmdid)),
        }
    }

    /// Records how a call to `host` of `(modid, cmdid)` went (`retcode` 0: success) for the next
    /// flush; no system call and no lock once the route has a view. Fails only while the route
    /// is served classic and the datagram cannot be sent.
    pub fn report(
        &self,
        modid: i32,
        cmdid: i32,
        host: HostAddr,
        retcode: i32,
    ) -> Result<(), ClientError> {
        let key = RouteKey::new(modid, cmdid);
        let fast = self.with_slot(key, |slot| {
            slot.view.load().as_ref().is_some_and(|v| !v.noexist)
        });
        if fast != Some(true) {
            return self.classic(|client| client.report(modid, cmdid, host, retcode));
        }
        let shared = &*self.shared;
        let ring = shared
            .rings
            .get_or(|| RunRing::new(shared.config.queue_capacity));
        let mut state = shared.threads.get_or(RefCell::default).borrow_mut();
        let succ = retcode == RetCode::Succ.as_i32();
        match ring.record(&mut state.open, key, host, succ) {
            Recorded::Extended => {}
            Recorded::Started(runs) => {
                if runs == shared.config.flush_max as u64 {
                    self.wake_flusher();
                }
            }
            Recorded::Full => {
                shared.stats.results_dropped.fetch_add(1, Ordering::Relaxed);
                self.wake_flusher();
            }
        }
        Ok(())
    }

    /// Every host of `(modid, cmdid)`: from the view when the route has one (idle hosts first),
    /// else as [`Client::get_route`].
    pub fn get_route(&self, modid: i32, cmdid: i32) -> Result<Vec<HostAddr>, ClientError> {
        let key = RouteKey::new(modid, cmdid);
        let hosts = self.with_slot(key, |slot| {
            slot.view.load().as_ref().map(|v| v.hosts.clone())
        });
        match hosts {
            Some(Some(hosts)) => Ok(hosts),
            _ => self.classic(|client| client.get_route(modid, cmdid)),
        }
    }

    /// Runs `f` on the route's slot, from this thread's cache, else the registry (registering
    /// the route; `None` at `max_routes`). Stamps the route as used. The slot is lent, not
    /// cloned: no shared reference count moves on the call path.
    fn with_slot<T>(&self, key: RouteKey, f: impl FnOnce(&RouteSlot) -> T) -> Option<T> {
        let shared = &*self.shared;
        let now = shared.coarse_now.load(Ordering::Relaxed);
        let cell = shared.threads.get_or(RefCell::default);
        let mut state = cell.borrow_mut();
        let hit = state
            .last
            .as_ref()
            .is_some_and(|slot| slot.key == key && !slot.evicted.load(Ordering::Relaxed));
        if !hit {
            let cached = state
                .routes
                .get(&key)
                .filter(|slot| !slot.evicted.load(Ordering::Relaxed))
                .cloned();
            let slot = match cached {
                Some(slot) => slot,
                None => {
                    let slot = self.register(key, now)?;
                    if state.routes.len() >= THREAD_CACHE_MAX {
                        state.routes.clear();
                    }
                    state.routes.insert(key, Arc::clone(&slot));
                    slot
                }
            };
            state.last = Some(slot);
        }
        let slot = state.last.as_deref()?;
        if slot.last_used.load(Ordering::Relaxed) != now {
            slot.last_used.store(now, Ordering::Relaxed);
        }
        Some(f(slot))
    }

    /// The registry's slot for `key`, created (and handed to the flusher) if new.
    fn register(&self, key: RouteKey, now: u64) -> Option<Arc<RouteSlot>> {
        let shared = &*self.shared;
        let mut routes = lock(&shared.routes);
        if let Some(slot) = routes.get(&key) {
            return Some(Arc::clone(slot));
        }
        if routes.len() >= shared.config.max_routes {
            shared.stats.routes_refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let slot = Arc::new(RouteSlot::new(key, now));
        routes.insert(key, Arc::clone(&slot));
        drop(routes);
        lock(&shared.fresh).push(Arc::clone(&slot));
        self.wake_flusher();
        Some(slot)
    }

    /// Runs `call` on this thread's classic client (created on first use).
    fn classic<T>(
        &self,
        call: impl FnOnce(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let shared = &*self.shared;
        shared.stats.classic_calls.fetch_add(1, Ordering::Relaxed);
        let cell = shared.threads.get_or(RefCell::default);
        let mut state = cell.borrow_mut();
        if state.classic.is_none() {
            state.classic = Some(Client::new(shared.config.client.clone())?);
        }
        match state.classic.as_mut() {
            Some(client) => call(client),
            None => unreachable!("the classic client was just created"),
        }
    }

    fn wake_flusher(&self) {
        if let Some(flusher) = self.shared.flusher.get() {
            flusher.unpark();
        }
    }
}

impl Drop for FastClient {
    /// Stops the threads; the flusher sends what the queues hold first.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.wake_flusher();
        for handle in [self.flusher.take(), self.receiver.take()]
            .into_iter()
            .flatten()
        {
            let _ = handle.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding it leaves plain data behind; keep serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn now_ms(&self) -> u64 {
        // Never 0: 0 means "none" in the slots.
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn agent_of(&self, key: RouteKey) -> SocketAddr {
        self.agents[usize::from(shard_of(key.modid, key.cmdid, self.shards))]
    }

    fn send(&self, msg: &Message, key: RouteKey, buf: &mut [u8]) {
        let Ok(len) = encode_datagram(msg, buf) else {
            return;
        };
        // A lost datagram shows as a request left unanswered (see `Flusher::check_answers`).
        let _ = self.socket.send_to(&buf[..len], self.agent_of(key));
    }
}

/// One route's results gathered by a flush: per host (first seen first), its runs in order.
#[derive(Default)]
struct PendingBatch {
    hosts: Vec<(HostAddr, Vec<(bool, u32)>)>,
}

impl PendingBatch {
    fn push(&mut self, host: HostAddr, succ: bool, count: u32) {
        let at = match self.hosts.iter().position(|(h, _)| *h == host) {
            Some(at) => at,
            None => {
                self.hosts.push((host, Vec::new()));
                self.hosts.len() - 1
            }
        };
        let runs = &mut self.hosts[at].1;
        match runs.last_mut() {
            Some((s, n)) if *s == succ && n.saturating_add(count) <= MAX_RUN => *n += count,
            _ => runs.push((succ, count)),
        }
    }
}

/// The flusher thread's state.
struct Flusher {
    shared: Arc<Shared>,
    pending: HashMap<RouteKey, PendingBatch>,
    buf: Box<[u8]>,
    last_sweep: u64,
}

impl Flusher {
    fn new(shared: Arc<Shared>) -> Flusher {
        Flusher {
            shared,
            pending: HashMap::default(),
            buf: vec![0; MAX_FRAME_LEN].into_boxed_slice(),
            last_sweep: 0,
        }
    }

    fn run(mut self) {
        loop {
            std::thread::park_timeout(self.shared.config.flush_interval);
            let now = self.shared.now_ms();
            self.shared.coarse_now.store(now, Ordering::Relaxed);
            let stopping = self.shared.stop.load(Ordering::Acquire);
            self.flush(now);
            if stopping {
                return;
            }
            self.ask_fresh(now);
            let sweep_every = (self.shared.config.view_ttl.as_millis() as u64 / 2).max(1);
            if now.saturating_sub(self.last_sweep) >= sweep_every {
                self.last_sweep = now;
                self.sweep(now);
            }
        }
    }

    /// Drains every thread's queue and sends each route's batch.
    fn flush(&mut self, now: u64) {
        let shared = Arc::clone(&self.shared);
        for ring in shared.rings.iter() {
            ring.drain(|run| {
                self.pending
                    .entry(run.key)
                    .or_default()
                    .push(run.host, run.succ, run.count);
            });
        }
        if self.pending.is_empty() {
            return;
        }
        let batches: Vec<(RouteKey, PendingBatch)> = self.pending.drain().collect();
        let routes = lock(&shared.routes);
        let slots: Vec<Option<Arc<RouteSlot>>> = batches
            .iter()
            .map(|(key, _)| routes.get(key).cloned())
            .collect();
        drop(routes);
        for ((key, batch), slot) in batches.into_iter().zip(slots) {
            let version = slot
                .as_ref()
                .and_then(|s| s.view.load().as_ref().map(|v| v.version))
                .unwrap_or(0);
            self.send_batch(key, version, batch);
            if let Some(slot) = slot {
                let _ =
                    slot.awaiting
                        .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }

    /// Sends one route's results, in as many datagrams as they need, in order.
    fn send_batch(&mut self, key: RouteKey, version: u64, batch: PendingBatch) {
        let new_request = || ReportBatchRequest {
            modid: key.modid,
            cmdid: key.cmdid,
            version,
            hosts: Vec::new(),
        };
        let mut request = new_request();
        let mut runs_in_request = 0;
        let mut results = 0u64;
        for (host, runs) in batch.hosts {
            for chunk in runs.chunks(MAX_RUNS_PER_DATAGRAM) {
                if runs_in_request + chunk.len() > MAX_RUNS_PER_DATAGRAM {
                    self.send_request(key, std::mem::replace(&mut request, new_request()));
                    runs_in_request = 0;
                }
                results += chunk.iter().map(|&(_, n)| u64::from(n)).sum::<u64>();
                runs_in_request += chunk.len();
                request.hosts.push(HostResults {
                    ip: host.wire_ip(),
                    port: host.wire_port(),
                    runs: chunk
                        .iter()
                        .map(|&(succ, n)| n << 1 | u32::from(!succ))
                        .collect(),
                });
            }
        }
        self.send_request(key, request);
        self.shared
            .stats
            .results_sent
            .fetch_add(results, Ordering::Relaxed);
    }

    fn send_request(&mut self, key: RouteKey, request: ReportBatchRequest) {
        self.shared
            .stats
            .batches_sent
            .fetch_add(1, Ordering::Relaxed);
        self.shared
            .send(&Message::ReportBatchRequest(request), key, &mut self.buf);
    }

    /// Asks for the views of the routes registered since the last flush.
    fn ask_fresh(&mut self, now: u64) {
        let fresh = std::mem::take(&mut *lock(&self.shared.fresh));
        if self.resting(now) {
            return;
        }
        for slot in fresh {
            self.ask_view(&slot, now);
        }
    }

    fn resting(&self, now: u64) -> bool {
        now < self.shared.resting_until.load(Ordering::Relaxed)
    }

    fn ask_view(&mut self, slot: &RouteSlot, now: u64) {
        let version = slot.view.load().as_ref().map_or(0, |v| v.version);
        let request = Message::RouteViewRequest(RouteViewRequest {
            modid: slot.key.modid,
            cmdid: slot.key.cmdid,
            version,
        });
        let _ = slot
            .awaiting
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.shared
            .stats
            .view_requests
            .fetch_add(1, Ordering::Relaxed);
        self.shared.send(&request, slot.key, &mut self.buf);
    }

    /// Every `view_ttl / 2`: falls back when a request stayed unanswered, evicts unused routes,
    /// and asks for the views of used routes that no reply refreshed within `view_ttl`.
    fn sweep(&mut self, now: u64) {
        let config = &self.shared.config;
        let timeout = config.client.timeout.as_millis() as u64;
        let ttl = config.view_ttl.as_millis() as u64;
        let idle = config.route_idle_ttl.as_millis() as u64;
        let slots: Vec<Arc<RouteSlot>> = {
            let mut routes = lock(&self.shared.routes);
            routes.retain(|_, slot| {
                let used = slot.last_used.load(Ordering::Relaxed);
                let keep = now.saturating_sub(used) < idle;
                if !keep {
                    slot.evicted.store(true, Ordering::Relaxed);
                    self.shared
                        .stats
                        .routes_evicted
                        .fetch_add(1, Ordering::Relaxed);
                }
                keep
            });
            routes.values().cloned().collect()
        };
        let unanswered = slots.iter().any(|slot| {
            let asked = slot.awaiting.load(Ordering::Relaxed);
            asked != 0 && now.saturating_sub(asked) > timeout
        });
        if unanswered && !self.resting(now) {
            self.fall_back(now, &slots);
            return;
        }
        if self.resting(now) {
            return;
        }
        for slot in &slots {
            let refreshed = slot.last_refresh.load(Ordering::Relaxed);
            let recently_used = now.saturating_sub(slot.last_used.load(Ordering::Relaxed)) <= ttl;
            let awaiting = slot.awaiting.load(Ordering::Relaxed) != 0;
            if !awaiting && (refreshed == 0 || (recently_used && now - refreshed >= ttl)) {
                self.ask_view(slot, now);
            }
        }
    }

    /// The agent does not answer the fast path: every route goes classic until
    /// `retry_interval` from now.
    fn fall_back(&mut self, now: u64, slots: &[Arc<RouteSlot>]) {
        let retry = self.shared.config.retry_interval.as_millis() as u64;
        self.shared
            .resting_until
            .store(now + retry, Ordering::Relaxed);
        self.shared.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        for slot in slots {
            slot.view.store(None);
            slot.awaiting.store(0, Ordering::Relaxed);
            slot.last_refresh.store(0, Ordering::Relaxed);
        }
    }
}

/// The receiver thread: takes the agent's views and short acks until the client stops.
fn receive(shared: &Shared) {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    while !shared.stop.load(Ordering::Acquire) {
        let len = match shared.socket.recv_from(&mut buf) {
            Ok((len, _)) => len,
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted
                | io::ErrorKind::ConnectionRefused => continue,
                _ => {
                    std::thread::sleep(RECEIVER_POLL);
                    continue;
                }
            },
        };
        if len < HEADER_LEN {
            shared.stats.discarded.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match decode_datagram(&buf[..len]) {
            Ok(Message::RouteViewResponse(reply)) => apply_view(shared, reply),
            _ => {
                shared.stats.discarded.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Applies one view (or short ack) to its route's slot.
fn apply_view(shared: &Shared, reply: RouteViewResponse) {
    let key = RouteKey::new(reply.modid, reply.cmdid);
    let Some(slot) = lock(&shared.routes).get(&key).cloned() else {
        shared.stats.discarded.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let now = shared.now_ms();
    if now < shared.resting_until.load(Ordering::Relaxed) {
        return;
    }
    slot.awaiting.store(0, Ordering::Relaxed);
    slot.last_refresh.store(now, Ordering::Relaxed);
    if reply.unchanged && slot.view.load().is_some() {
        shared.stats.acks_received.fetch_add(1, Ordering::Relaxed);
        return;
    }
    shared.stats.views_received.fetch_add(1, Ordering::Relaxed);
    let agent = shared.agent_of(key);
    let mut hosts = Vec::with_capacity(reply.host.len());
    let mut idle = 0;
    let mut overloaded = Vec::new();
    for host in &reply.host {
        let info = crate::messages::HostInfo {
            ip: host.ip,
            port: host.port,
        };
        let Ok(addr) = host_from_wire(agent, &info) else {
            shared.stats.discarded.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if host.overload {
            overloaded.push(addr);
        } else {
            hosts.push(addr);
            idle += 1;
        }
    }
    hosts.extend(overloaded);
    let view = View {
        version: reply.version,
        noexist: reply.retcode != RetCode::Succ.as_i32(),
        probe_num: reply.probe_num.max(1),
        panic: reply.panic,
        hosts,
        idle,
    };
    slot.view.store(Some(Arc::new(view)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(last: u8) -> HostAddr {
        HostAddr::new(Ipv4Addr::new(10, 0, 0, last), 9000)
    }

    fn view(idle: &[u8], overloaded: &[u8], probe_num: u32) -> View {
        let hosts: Vec<HostAddr> = idle.iter().chain(overloaded).map(|&i| h(i)).collect();
        View {
            version: 1,
            noexist: false,
            probe_num,
            panic: false,
            hosts,
            idle: idle.len(),
        }
    }

    fn picks(slot: &RouteSlot, view: &View, n: usize) -> Vec<Result<HostAddr, RetCode>> {
        (0..n)
            .map(|_| {
                slot.pick(view).map_err(|e| match e {
                    ClientError::Refused(code) => code,
                    other => panic!("{other}"),
                })
            })
            .collect()
    }

    #[test]
    fn idle_hosts_are_picked_in_turn() {
        let slot = RouteSlot::new(RouteKey::new(1, 1), 1);
        let got = picks(&slot, &view(&[1, 2, 3], &[], 10), 6);
        let want: Vec<_> = [1, 2, 3, 1, 2, 3].iter().map(|&i| Ok(h(i))).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_overloaded_host_is_probed_every_probe_num_plus_one_picks() {
        let slot = RouteSlot::new(RouteKey::new(1, 1), 1);
        let got = picks(&slot, &view(&[1, 2], &[3], 3), 8);
        let want: Vec<_> = [1, 2, 1, 3, 2, 1, 2, 3].iter().map(|&i| Ok(h(i))).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn all_overloaded_answers_overload_except_on_probe_picks() {
        let slot = RouteSlot::new(RouteKey::new(1, 1), 1);
        let got = picks(&slot, &view(&[], &[1, 2], 2), 6);
        let o = Err(RetCode::Overload);
        assert_eq!(got, vec![o, o, Ok(h(1)), o, o, Ok(h(2))]);
    }

    #[test]
    fn panic_mode_picks_every_host_in_turn_and_noexist_refuses() {
        let slot = RouteSlot::new(RouteKey::new(1, 1), 1);
        let mut panicking = view(&[1], &[2, 3], 10);
        panicking.panic = true;
        let got = picks(&slot, &panicking, 3);
        assert_eq!(got, vec![Ok(h(1)), Ok(h(2)), Ok(h(3))]);
        let mut missing = view(&[], &[], 10);
        missing.noexist = true;
        assert_eq!(picks(&slot, &missing, 1), vec![Err(RetCode::NoExist)]);
    }

    #[test]
    fn a_batch_keeps_each_hosts_results_in_order_as_runs() {
        let mut batch = PendingBatch::default();
        for (host, succ) in [
            (1, true),
            (2, false),
            (1, true),
            (1, false),
            (2, false),
            (1, true),
        ] {
            batch.push(h(host), succ, 1);
        }
        assert_eq!(
            batch.hosts,
            vec![
                (h(1), vec![(true, 2), (false, 1), (true, 1)]),
                (h(2), vec![(false, 2)]),
            ]
        );
    }

    #[test]
    fn the_client_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<FastClient>();
    }
}
