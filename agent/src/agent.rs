//! Assembling an agent: decide the workers (one per allowed CPU) and their I/O driver (`[agent]
//! io`, probed once when `auto`), bind every shard's socket, load the route cache, build the
//! rings, start the workers (each returns once its driver runs, its cached routes loaded), the
//! stats endpoint, the route cache writer and the two uplinks; and stop them in the order that
//! loses nothing (workers first, their last statistics flushed by the report uplink and their
//! last routes written by the cache writer, then the uplinks). A start that fails half-way stops
//! what it started.

use crate::admin::Admin;
use crate::cache::{self, CacheWriterSetup};
use crate::config::{AgentConfig, MAX_SHARDS};
use crate::dns_uplink::{self, DnsUplinkSetup, WorkerLink};
use crate::io::{self, Driver, DriverError};
use crate::report_uplink::{self, ReportUplinkSetup};
use crate::rings::{Wake, ring};
use crate::stats::AgentStats;
use crate::uplink::{self, UplinkStop};
use crate::worker::{self, SpawnError, WorkerFlags, WorkerSetup};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Instant;
use tracing::info;

/// Capacity of each worker's ring to the cache writer: a worker pushes one snapshot per shard at
/// most once per `cache_interval`, and it has at most [`MAX_SHARDS`] shards.
const CACHE_RING_CAPACITY: usize = MAX_SHARDS as usize;

/// Times to look for a free port range when `base_port` is 0.
const PORT_RANGE_TRIES: usize = 64;

/// Receive buffer asked for on each shard socket, so a burst of callers is queued rather than
/// dropped by the kernel (capped by `net.core.rmem_max`).
const RECV_BUFFER: usize = 4 << 20;

/// Binds one shard socket and enlarges its receive buffer (best effort). Public so that the
/// echo baseline in `perf/` sets its socket up exactly like the agent.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(RECV_BUFFER);
    Ok(socket)
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The process may run on no CPU the config allows.
    #[error(
        "no CPU to run a worker on: the affinity mask allows {allowed:?}, `agent.cores` asks for {wanted:?}"
    )]
    NoCores {
        /// CPUs in the affinity mask.
        allowed: Vec<usize>,
        /// CPUs in the config.
        wanted: Vec<usize>,
    },
    /// A shard's port could not be bound.
    #[error("cannot bind shard {shard} on {addr}")]
    Bind {
        /// The shard.
        shard: u16,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No free range of consecutive ports was found for `base_port = 0`.
    #[error("found no {shards} consecutive free UDP ports on {ip}")]
    NoPortRange {
        /// How many were needed.
        shards: u16,
        /// On which address.
        ip: IpAddr,
    },
    /// The stats endpoint could not be bound.
    #[error("cannot serve stats on {addr}")]
    Stats {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A worker's wake-up eventfd could not be made.
    #[error("cannot make worker {worker}'s wake-up eventfd")]
    Wake {
        /// The worker.
        worker: usize,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A worker's I/O driver could not be set up (`[agent] io` forced a driver this machine
    /// cannot run).
    #[error("worker {worker} cannot start its {driver} driver")]
    Driver {
        /// The worker.
        worker: usize,
        /// The driver.
        driver: Driver,
        /// Why.
        #[source]
        source: DriverError,
    },
    /// A worker did not start for another reason.
    #[error("worker {worker} did not start")]
    Worker {
        /// The worker.
        worker: usize,
        /// Why.
        #[source]
        source: SpawnError,
    },
    /// A thread could not be started.
    #[error("cannot start the {name} thread")]
    Thread {
        /// The thread's name.
        name: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    fn from_spawn(worker: usize, error: SpawnError) -> AgentError {
        match error {
            SpawnError::Driver { driver, source } => AgentError::Driver {
                worker,
                driver,
                source,
            },
            source => AgentError::Worker { worker, source },
        }
    }
}

/// A running agent.
pub struct Agent {
    base_port: u16,
    driver: Driver,
    stats: Arc<AgentStats>,
    workers: Vec<(JoinHandle<()>, Arc<WorkerFlags>, Wake)>,
    dns: Option<(JoinHandle<()>, UplinkStop)>,
    report: Option<(JoinHandle<()>, UplinkStop)>,
    cache: Option<(JoinHandle<()>, UplinkStop)>,
    admin: Option<Admin>,
}

impl Agent {
    /// Starts an agent as `config` says. Returns once every worker's driver runs; when one
    /// cannot start, stops what was started and returns why.
    pub fn start(config: &AgentConfig) -> Result<Agent, AgentError> {
        let cores = worker_cores(&config.agent.cores)?;
        let workers = cores.len();
        let driver = io::resolve(config.agent.io);
        let (base_port, sockets) =
            bind_shards(config.agent.ip, config.agent.base_port, config.agent.shards)?;
        let stats = Arc::new(AgentStats::new(workers));
        let epoch = Instant::now();
        let capacity = config.agent.ring_capacity;

        // The route cache, by shard, as the workers load it; the writer starts from the same.
        let cache_path = config.cache_path();
        let loaded = cache_path
            .as_deref()
            .and_then(|path| cache::load_at_start(path, config.cache_max_age()));
        let loaded_written_at_ms = loaded.as_ref().map(|file| file.written_at_ms);
        // `shards` is at least 1 (validated).
        let shard_count = std::num::NonZeroU16::new(config.agent.shards).unwrap_or(NonZeroU16::MIN);
        let cached = cache::by_shard(
            loaded.map(|file| file.routes).unwrap_or_default(),
            shard_count,
        );
        stats
            .cache
            .loaded
            .add(cached.iter().map(Vec::len).sum::<usize>() as u64);
        let cache_wake = Wake::new();
        let mut cache_rxs = Vec::new();

        let dns_wake = Wake::new();
        let report_wake = Wake::new();
        let mut dns_rxs = Vec::new();
        let mut report_rxs = Vec::new();
        let mut links = Vec::new();
        let mut setups = Vec::new();
        let mut sockets: Vec<Option<UdpSocket>> = sockets.into_iter().map(Some).collect();
        for (worker, core) in cores.into_iter().enumerate() {
            let (dns_tx, dns_rx) = ring(capacity, dns_wake.clone());
            let (report_tx, report_rx) = ring(capacity, report_wake.clone());
            let wake =
                Wake::with_eventfd().map_err(|source| AgentError::Wake { worker, source })?;
            let (inbox_tx, inbox_rx) = ring(capacity, wake.clone());
            let flags = Arc::new(WorkerFlags::default());
            let shards: Vec<(u16, UdpSocket)> = (0..config.agent.shards)
                .filter(|shard| usize::from(*shard) % workers == worker)
                .filter_map(|shard| sockets[usize::from(shard)].take().map(|s| (shard, s)))
                .collect();
            let worker_cached = shards
                .iter()
                .map(|(shard, _)| (*shard, cached[usize::from(*shard)].clone()))
                .collect();
            let cache_tx = cache_path.as_ref().map(|_| {
                let (tx, rx) = ring(CACHE_RING_CAPACITY, cache_wake.clone());
                cache_rxs.push(rx);
                tx
            });
            dns_rxs.push(dns_rx);
            report_rxs.push(report_rx);
            links.push(WorkerLink { inbox: inbox_tx });
            setups.push(WorkerSetup {
                worker,
                core,
                shards,
                dns_tx,
                report_tx,
                inbox: inbox_rx,
                wake,
                flags,
                stats: stats.workers[worker].clone(),
                settings: config.loadbalance.clone(),
                driver,
                report_interval: config.report_interval(),
                epoch,
                cached: worker_cached,
                cache_tx,
                cache_interval: config.cache_interval(),
                limits: config.agent.table_limits(),
                fast_path: config.agent.fast_path,
            });
        }

        let mut agent = Agent {
            base_port,
            driver,
            stats,
            workers: Vec::new(),
            dns: None,
            report: None,
            cache: None,
            admin: None,
        };
        let cache = cache_path.map(|path| CacheWriterSetup {
            path,
            interval: config.cache_interval(),
            max_age: config.cache_max_age(),
            snapshots: cache_rxs,
            stop: UplinkStop::new(cache_wake.clone()),
            wake: cache_wake,
            loaded: cached,
            loaded_written_at_ms,
            stats: agent.stats.cache.clone(),
        });
        let uplinks = Uplinks {
            cache,
            dns: DnsUplinkSetup {
                addrs: config.dns_addrs(),
                requests: dns_rxs,
                stop: UplinkStop::new(dns_wake.clone()),
                wake: dns_wake,
                workers: links,
                config: config.uplink.clone(),
                stats: agent.stats.dns.clone(),
            },
            report: ReportUplinkSetup {
                addrs: config.reporter_addrs(),
                reports: report_rxs,
                stop: UplinkStop::new(report_wake.clone()),
                wake: report_wake,
                config: config.uplink.clone(),
                stats: agent.stats.report.clone(),
            },
        };
        match agent.launch(config, setups, uplinks) {
            Ok(()) => Ok(agent),
            Err(e) => {
                agent.shutdown();
                Err(e)
            }
        }
    }

    /// Starts the workers, the stats endpoint and the uplinks, keeping each in `self` as it
    /// starts so that [`Agent::shutdown`] stops exactly what did.
    fn launch(
        &mut self,
        config: &AgentConfig,
        setups: Vec<WorkerSetup>,
        uplinks: Uplinks,
    ) -> Result<(), AgentError> {
        for setup in setups {
            let worker = setup.worker;
            let flags = setup.flags.clone();
            let wake = setup.wake.clone();
            let handle = worker::spawn(setup).map_err(|e| AgentError::from_spawn(worker, e))?;
            self.workers.push((handle, flags, wake));
        }

        if !config.agent.stats_addr.is_empty() {
            let stats_error = |source| AgentError::Stats {
                addr: config.agent.stats_addr.clone(),
                source,
            };
            let addr: SocketAddr = config.agent.stats_addr.parse().map_err(|_| {
                stats_error(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not ip:port",
                ))
            })?;
            self.admin = Some(Admin::start(addr, self.stats.clone()).map_err(stats_error)?);
        }

        let Uplinks { cache, dns, report } = uplinks;
        if let Some(cache) = cache {
            let cache_stop = cache.stop.clone();
            let handle =
                uplink::spawn("lars-route-cache", move || cache::run(cache)).map_err(|source| {
                    AgentError::Thread {
                        name: "lars-route-cache",
                        source,
                    }
                })?;
            self.cache = Some((handle, cache_stop));
        }
        let dns_stop = dns.stop.clone();
        let handle =
            uplink::spawn("lars-dns-uplink", move || dns_uplink::run(dns)).map_err(|source| {
                AgentError::Thread {
                    name: "lars-dns-uplink",
                    source,
                }
            })?;
        self.dns = Some((handle, dns_stop));
        let report_stop = report.stop.clone();
        let handle = uplink::spawn("lars-report-uplink", move || report_uplink::run(report))
            .map_err(|source| AgentError::Thread {
                name: "lars-report-uplink",
                source,
            })?;
        self.report = Some((handle, report_stop));
        Ok(())
    }

    /// The I/O driver the workers run.
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// UDP port of shard 0.
    pub fn base_port(&self) -> u16 {
        self.base_port
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Where the stats endpoint listens, if it is on.
    pub fn stats_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Admin::addr)
    }

    /// Stops everything: the workers hand over their last statistics and routes, the report
    /// uplink sends the statistics if it can and the cache writer writes the routes, then the
    /// uplinks and the stats endpoint stop.
    pub fn stop(mut self) {
        self.shutdown();
        info!("lars-agent stopped");
    }

    /// Stops what runs, in the order that loses nothing.
    fn shutdown(&mut self) {
        for (_, flags, wake) in &self.workers {
            flags.stop.store(true, Ordering::Release);
            wake.fire();
        }
        for (handle, _, _) in self.workers.drain(..) {
            let _ = handle.join();
        }
        for uplink in [&self.dns, &self.report, &self.cache].into_iter().flatten() {
            uplink.1.raise();
        }
        for (handle, _) in [self.dns.take(), self.report.take(), self.cache.take()]
            .into_iter()
            .flatten()
        {
            let _ = handle.join();
        }
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
    }
}

/// The uplinks' setups (and the cache writer's, when the cache is on), made before the workers
/// start and started after them.
struct Uplinks {
    cache: Option<CacheWriterSetup>,
    dns: DnsUplinkSetup,
    report: ReportUplinkSetup,
}

/// The CPUs to run workers on: the affinity mask, narrowed by `agent.cores`.
fn worker_cores(wanted: &[usize]) -> Result<Vec<Option<core_affinity::CoreId>>, AgentError> {
    let Some(allowed) = core_affinity::get_core_ids() else {
        // Affinity unknown: one unpinned worker per requested core, or one.
        let n = wanted.len().max(1);
        return Ok(vec![None; n]);
    };
    let chosen: Vec<_> = if wanted.is_empty() {
        allowed.clone()
    } else {
        allowed
            .iter()
            .copied()
            .filter(|c| wanted.contains(&c.id))
            .collect()
    };
    if chosen.is_empty() || (!wanted.is_empty() && chosen.len() != wanted.len()) {
        return Err(AgentError::NoCores {
            allowed: allowed.iter().map(|c| c.id).collect(),
            wanted: wanted.to_vec(),
        });
    }
    Ok(chosen.into_iter().map(Some).collect())
}

/// Binds `shards` shard sockets on `ip` with `bind_udp`: ports `base_port + i`, or, when
/// `base_port` is 0, a range of consecutive ports starting at one the OS picks. Returns the first
/// port and the sockets in shard order.
pub fn bind_shards(
    ip: IpAddr,
    base_port: u16,
    shards: u16,
) -> Result<(u16, Vec<UdpSocket>), AgentError> {
    if base_port != 0 {
        let base = base_port;
        let mut sockets = Vec::new();
        for shard in 0..shards {
            let addr = SocketAddr::new(ip, base + shard);
            sockets.push(bind_udp(addr).map_err(|source| AgentError::Bind {
                shard,
                addr,
                source,
            })?);
        }
        return Ok((base, sockets));
    }
    'tries: for _ in 0..PORT_RANGE_TRIES {
        let first = bind_udp(SocketAddr::new(ip, 0)).map_err(|source| AgentError::Bind {
            shard: 0,
            addr: SocketAddr::new(ip, 0),
            source,
        })?;
        let base = match first.local_addr() {
            Ok(addr) => addr.port(),
            Err(_) => continue,
        };
        if u32::from(base) + u32::from(shards) > 65536 {
            continue;
        }
        let mut sockets = vec![first];
        for shard in 1..shards {
            match bind_udp(SocketAddr::new(ip, base + shard)) {
                Ok(socket) => sockets.push(socket),
                Err(_) => continue 'tries,
            }
        }
        return Ok((base, sockets));
    }
    Err(AgentError::NoPortRange { shards, ip })
}
