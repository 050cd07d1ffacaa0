//! A worker: one thread pinned to one CPU, running its own io_uring runtime, owning the shards
//! assigned to it (shard `i` on worker `i % workers`) — their sockets and route tables — and its
//! ends of the rings. Nothing it owns is shared: tasks on the worker's thread take turns on its
//! state (`Rc<RefCell<_>>`, never borrowed across an await), so there is no lock anywhere on the
//! request path.
//!
//! Two runtimes serve the same state (`WorkerState`'s `handle`, `on_wake` and
//! `send_reports`), chosen by `[agent] io`:
//! - `tokio-uring`: tasks — `recv_depth` receive loops per shard socket (several receives in
//!   flight, so the ring batches submissions and completions), one report loop (statistics
//!   every `report_interval`), and the inbox loop (route updates from the dns uplink, the
//!   dns-reconnected flag, stop), woken by a tokio `Notify`;
//! - `io-uring`: the hand-written [`EventLoop`], which calls the same state through
//!   [`DatagramService`]: datagrams, the eventfd wake-up and a tick every `report_interval`.

use crate::clock::Millis;
use crate::config::IoRuntime;
use crate::io::udp::{DATAGRAM_BUFFER, ShardSocket};
use crate::io::uring::{DatagramService, EventLoop, Flow};
use crate::io::{block_on, spawn_local};
use crate::lb::{DnsUpdateOutcome, HostTransition, LbSettings, RouteTable};
use crate::log_limit::LogLimit;
use crate::rings::{DnsRequest, DnsUplinkTx, ReportUplinkTx, Wake, WorkerInboxRx};
use crate::shard::Shard;
use crate::stats::{DropReason, WorkerStats};
use lars_wire::RouteKey;
use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, error, info, warn};

/// Log lines a second a worker may write about host state changes.
const STATE_LOGS_PER_SECOND: u32 = 20;

/// Flags the agent and the dns uplink raise for a worker; the worker's inbox wake-up makes it
/// look at them.
#[derive(Debug, Default)]
pub struct WorkerFlags {
    /// Stop now.
    pub stop: AtomicBool,
}

/// Everything a worker is started with.
pub struct WorkerSetup {
    /// Worker number.
    pub index: usize,
    /// CPU to pin the thread to, if any.
    pub core: Option<core_affinity::CoreId>,
    /// The shards it serves, with their bound sockets.
    pub shards: Vec<(u16, std::net::UdpSocket)>,
    /// Ring to the dns uplink.
    pub dns_tx: DnsUplinkTx,
    /// Ring to the report uplink.
    pub report_tx: ReportUplinkTx,
    /// Ring from the dns uplink.
    pub inbox: WorkerInboxRx,
    /// Fired when the inbox gets items or a flag is raised.
    pub wake: Wake,
    /// Stop and reconnect flags.
    pub flags: Arc<WorkerFlags>,
    /// The worker's counters.
    pub stats: Arc<WorkerStats>,
    /// Load-balancing settings.
    pub settings: LbSettings,
    /// The runtime to serve with.
    pub io: IoRuntime,
    /// Receives in flight per socket (`tokio-uring`).
    pub recv_depth: usize,
    /// How often statistics go to the report uplink.
    pub report_interval: Duration,
    /// The agent's epoch for [`Millis`].
    pub epoch: Instant,
}

/// Starts the worker's thread and returns once it has pinned itself to its CPU, so that what
/// the agent shows once started (its counters, its "serving" line) already holds.
pub fn spawn(setup: WorkerSetup) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (pinned_tx, pinned_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let handle = std::thread::Builder::new()
        .name(format!("lars-worker-{}", setup.index))
        .spawn(move || {
            if let Some(core) = setup.core {
                if core_affinity::set_for_current(core) {
                    setup.stats.core.set(core.id as u64);
                } else {
                    warn!(
                        worker = setup.index,
                        core = core.id,
                        "could not pin worker to its CPU"
                    );
                }
            }
            let _ = pinned_tx.send(());
            match setup.io {
                IoRuntime::TokioUring => block_on(run_tokio_uring(setup)),
                IoRuntime::IoUring => run_io_uring(setup),
            }
        })?;
    // An error means the thread ended before saying so; joining it tells the rest.
    let _ = pinned_rx.recv();
    Ok(handle)
}

/// The worker's state: its shards and its ends of the rings. Shared by its tasks on its thread
/// (`tokio-uring`) or owned by its event loop (`io-uring`).
struct WorkerState {
    index: usize,
    inbox: WorkerInboxRx,
    flags: Arc<WorkerFlags>,
    /// Shards by their position in this worker; `slot[shard index]` finds them.
    shards: Vec<Shard>,
    slot: Vec<Option<usize>>,
    dns_tx: DnsUplinkTx,
    report_tx: ReportUplinkTx,
    stats: Arc<WorkerStats>,
    logs: LogLimit,
    epoch: Instant,
}

impl WorkerState {
    fn now(&self) -> Millis {
        Millis::from(self.epoch.elapsed())
    }

    /// Handles one datagram for the shard at `position`; returns the reply's length.
    fn handle(&mut self, position: usize, datagram: &[u8], reply: &mut [u8]) -> Option<usize> {
        let now = self.now();
        let shard = &mut self.shards[position];
        let handled = shard.handle(datagram, reply, now, &self.stats);
        if let Some(ask) = handled.ask {
            let request = DnsRequest {
                shard: shard.index,
                key: ask.key,
            };
            if self.dns_tx.push(request).is_err() {
                shard.table.pull_not_sent(ask.key);
                self.stats.dns_ring_drops.inc();
            }
            self.update_gauges();
        }
        if let Some((key, transition)) = handled.transition
            && let Some(suppressed) = self.logs.allow(now)
        {
            log_transition(self.index, key, transition, suppressed);
        }
        handled.reply_len
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

    /// After a wake-up: stop, or apply what the dns uplink sent.
    fn on_wake(&mut self) -> Flow {
        if self.flags.stop.load(Ordering::Acquire) {
            return Flow::Stop;
        }
        self.drain_inbox();
        Flow::Continue
    }

    /// Applies what the dns uplink sent.
    fn drain_inbox(&mut self) {
        let now = self.now();
        let mut applied = 0;
        while let Some(update) = self.inbox.pop() {
            let Some(Some(position)) = self.slot.get(update.shard as usize) else {
                continue;
            };
            let shard = &mut self.shards[*position];
            match shard.table.apply_dns_update(update.key, &update.hosts, now) {
                DnsUpdateOutcome::Applied(change) => {
                    applied += 1;
                    self.stats.route_updates.inc();
                    if change.added > 0 || change.removed > 0 {
                        if let Some(suppressed) = self.logs.allow(now) {
                            info!(worker = self.index, key = %update.key, added = change.added,
                                removed = change.removed, hosts = change.hosts, suppressed,
                                "route updated");
                        }
                    } else {
                        debug!(worker = self.index, key = %update.key, "route unchanged");
                    }
                }
                DnsUpdateOutcome::NotHeld => {}
            }
        }
        if applied > 0 {
            self.update_gauges();
        }
    }

    /// Hands each route's statistics since the last upload to the report uplink.
    fn send_reports(&mut self) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        for shard in &mut self.shards {
            // The report uplink stamps `caller` with its own address.
            for report in shard.table.take_reports(Ipv4Addr::UNSPECIFIED, ts) {
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

/// Builds the worker's state from its setup; returns it with the shard sockets (in shard
/// position order), the wake-up, and the runtime settings.
fn prepare(setup: WorkerSetup) -> (WorkerState, Vec<std::net::UdpSocket>, Wake, usize, Duration) {
    let WorkerSetup {
        index,
        shards,
        dns_tx,
        report_tx,
        inbox,
        wake,
        flags,
        stats,
        settings,
        recv_depth,
        report_interval,
        epoch,
        ..
    } = setup;
    let max_shard = shards.iter().map(|(i, _)| *i as usize).max().unwrap_or(0);
    let mut slot = vec![None; max_shard + 1];
    let mut sockets = Vec::new();
    let mut owned = Vec::new();
    for (position, (shard, socket)) in shards.into_iter().enumerate() {
        slot[shard as usize] = Some(position);
        sockets.push(socket);
        owned.push(Shard {
            index: shard,
            table: RouteTable::new(settings.clone()),
        });
    }
    stats.shards.set(owned.len() as u64);
    let state = WorkerState {
        index,
        inbox,
        flags,
        shards: owned,
        slot,
        dns_tx,
        report_tx,
        stats,
        logs: LogLimit::new(STATE_LOGS_PER_SECOND),
        epoch,
    };
    (state, sockets, wake, recv_depth, report_interval)
}

/// The `io-uring` runtime: the worker's thread runs its [`EventLoop`] until stopped.
fn run_io_uring(setup: WorkerSetup) {
    let (mut state, sockets, wake, _, report_interval) = prepare(setup);
    let index = state.index;
    let Some(eventfd) = wake.eventfd() else {
        error!(
            worker = index,
            "io-uring worker started without an eventfd wake-up"
        );
        return;
    };
    match EventLoop::new(sockets, Some(eventfd), report_interval) {
        Ok(mut event_loop) => {
            if let Err(e) = event_loop.run(&mut state) {
                error!(worker = index, error = %e, "io_uring event loop failed");
            }
        }
        Err(e) => error!(worker = index, error = %e, "cannot set up the io_uring event loop"),
    }
    state.send_reports();
    debug!(worker = index, "worker stopped");
}

impl DatagramService for WorkerState {
    fn datagram(&mut self, socket: usize, datagram: &[u8], reply: &mut [u8]) -> Option<usize> {
        self.handle(socket, datagram, reply)
    }

    fn oversized(&mut self, _socket: usize, _len: usize) {
        self.stats.dropped(DropReason::BadLength);
    }

    fn recv_failed(&mut self, _socket: usize, error: std::io::Error) {
        self.stats.recv_errors.inc();
        debug!(worker = self.index, %error, "receive failed");
    }

    fn send_failed(&mut self, error: std::io::Error) {
        self.stats.send_errors.inc();
        debug!(worker = self.index, %error, "send failed");
    }

    fn woken(&mut self) -> Flow {
        self.on_wake()
    }

    fn tick(&mut self) {
        self.send_reports();
    }
}

/// The `tokio-uring` runtime: receive tasks, a report task and the inbox loop.
async fn run_tokio_uring(setup: WorkerSetup) {
    let (state, sockets, wake, recv_depth, report_interval) = prepare(setup);
    let index = state.index;
    let state = Rc::new(RefCell::new(state));
    for (position, socket) in sockets.into_iter().enumerate() {
        let socket = Rc::new(ShardSocket::from_std(socket));
        for _ in 0..recv_depth {
            spawn_local(serve(socket.clone(), state.clone(), position));
        }
    }
    spawn_local(report_loop(state.clone(), report_interval));

    loop {
        if state.borrow_mut().on_wake() == Flow::Stop {
            break;
        }
        if state.borrow().inbox.is_empty() {
            wake.wait().await;
        }
    }
    let mut state = state.borrow_mut();
    state.send_reports();
    debug!(worker = index, "worker stopped");
}

/// One receive loop of one shard socket: receive, handle, reply, with buffers reused.
async fn serve(socket: Rc<ShardSocket>, state: Rc<RefCell<WorkerState>>, position: usize) {
    let mut buf = Vec::with_capacity(DATAGRAM_BUFFER);
    let mut reply = vec![0u8; DATAGRAM_BUFFER];
    loop {
        let (received, back) = socket.recv_from(buf).await;
        buf = back;
        let peer = match received {
            Ok((_, peer)) => peer,
            Err(e) => {
                let state = state.borrow();
                state.stats.recv_errors.inc();
                debug!(worker = state.index, error = %e, "receive failed");
                continue;
            }
        };
        let reply_len = state.borrow_mut().handle(position, &buf, &mut reply);
        if let Some(len) = reply_len {
            let (sent, back) = socket.send_to(reply, len, peer).await;
            reply = back;
            if sent.is_err() {
                state.borrow().stats.send_errors.inc();
            }
        }
    }
}

async fn report_loop(state: Rc<RefCell<WorkerState>>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        state.borrow_mut().send_reports();
    }
}
