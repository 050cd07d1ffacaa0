//! Assembling an agent: decide the workers (one per allowed CPU), bind every shard's socket,
//! build the rings, start the workers, the two uplinks and the stats endpoint; and stop them in
//! the order that loses nothing (workers first, their last statistics flushed by the report
//! uplink, then the uplinks).

use crate::admin::Admin;
use crate::config::{AgentConfig, IoRuntime};
use crate::dns_uplink::{self, DnsUplinkSetup, WorkerLink};
use crate::report_uplink::{self, ReportUplinkSetup};
use crate::rings::{Wake, ring};
use crate::stats::AgentStats;
use crate::uplink::{self, StopSignal};
use crate::worker::{self, WorkerFlags, WorkerSetup};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Instant;
use tracing::info;

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
    #[error("cannot bind shard {shard} on {addr}: {source}")]
    Bind {
        /// The shard.
        shard: u16,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
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
    #[error("cannot serve stats on {addr}: {source}")]
    Stats {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A worker's wake-up eventfd could not be made.
    #[error("cannot make a worker's wake-up eventfd: {0}")]
    Wake(std::io::Error),
    /// A thread could not be started.
    #[error("cannot start thread: {0}")]
    Thread(std::io::Error),
}

/// A running agent.
pub struct Agent {
    base_port: u16,
    stats: Arc<AgentStats>,
    workers: Vec<(JoinHandle<()>, Arc<WorkerFlags>, Wake)>,
    dns: (JoinHandle<()>, StopSignal),
    report: (JoinHandle<()>, StopSignal),
    admin: Option<Admin>,
}

impl Agent {
    /// Starts an agent as `config` says.
    pub fn start(config: &AgentConfig) -> Result<Agent, AgentError> {
        let cores = worker_cores(&config.agent.cores)?;
        let workers = cores.len();
        let (base_port, sockets) =
            bind_shards(config.agent.ip, config.agent.base_port, config.agent.shards)?;
        let stats = Arc::new(AgentStats::new(workers));
        let epoch = Instant::now();
        let capacity = config.agent.ring_capacity;

        let dns_wake = Wake::new();
        let report_wake = Wake::new();
        let mut dns_rxs = Vec::new();
        let mut report_rxs = Vec::new();
        let mut links = Vec::new();
        let mut setups = Vec::new();
        let mut sockets: Vec<Option<UdpSocket>> = sockets.into_iter().map(Some).collect();
        for (index, core) in cores.into_iter().enumerate() {
            let (dns_tx, dns_rx) = ring(capacity, dns_wake.clone());
            let (report_tx, report_rx) = ring(capacity, report_wake.clone());
            let wake = match config.agent.io {
                IoRuntime::TokioUring => Wake::new(),
                IoRuntime::IoUring => Wake::with_eventfd().map_err(AgentError::Wake)?,
            };
            let (inbox_tx, inbox_rx) = ring(capacity, wake.clone());
            let flags = Arc::new(WorkerFlags::default());
            let shards = (0..config.agent.shards)
                .filter(|shard| *shard as usize % workers == index)
                .filter_map(|shard| sockets[shard as usize].take().map(|s| (shard, s)))
                .collect();
            dns_rxs.push(dns_rx);
            report_rxs.push(report_rx);
            links.push(WorkerLink {
                inbox: inbox_tx,
                wake: wake.clone(),
            });
            setups.push(WorkerSetup {
                index,
                core,
                shards,
                dns_tx,
                report_tx,
                inbox: inbox_rx,
                wake,
                flags,
                stats: stats.workers[index].clone(),
                settings: config.loadbalance.clone(),
                io: config.agent.io,
                recv_depth: config.agent.recv_depth,
                report_interval: config.report_interval(),
                epoch,
            });
        }

        let admin = if config.agent.stats_addr.is_empty() {
            None
        } else {
            let addr: SocketAddr =
                config
                    .agent
                    .stats_addr
                    .parse()
                    .map_err(|_| AgentError::Stats {
                        addr: config.agent.stats_addr.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "not ip:port",
                        ),
                    })?;
            Some(
                Admin::start(addr, stats.clone()).map_err(|source| AgentError::Stats {
                    addr: config.agent.stats_addr.clone(),
                    source,
                })?,
            )
        };

        let dns_stop = StopSignal::new(dns_wake.clone());
        let dns_setup = DnsUplinkSetup {
            addrs: config.dns_addrs(),
            requests: dns_rxs,
            wake: dns_wake,
            workers: links,
            config: config.uplink.clone(),
            stats: stats.dns.clone(),
            stop: dns_stop.clone(),
        };
        let dns = uplink::spawn("lars-dns-uplink", move || dns_uplink::run(dns_setup))
            .map_err(AgentError::Thread)?;
        let report_stop = StopSignal::new(report_wake.clone());
        let report_setup = ReportUplinkSetup {
            addrs: config.reporter_addrs(),
            reports: report_rxs,
            wake: report_wake,
            config: config.uplink.clone(),
            stats: stats.report.clone(),
            stop: report_stop.clone(),
        };
        let report = uplink::spawn("lars-report-uplink", move || {
            report_uplink::run(report_setup)
        })
        .map_err(AgentError::Thread)?;

        let mut handles = Vec::new();
        for setup in setups {
            let flags = setup.flags.clone();
            let wake = setup.wake.clone();
            let handle = worker::spawn(setup).map_err(AgentError::Thread)?;
            handles.push((handle, flags, wake));
        }
        Ok(Agent {
            base_port,
            stats,
            workers: handles,
            dns: (dns, dns_stop),
            report: (report, report_stop),
            admin,
        })
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

    /// The counters.
    pub fn stats(&self) -> Arc<AgentStats> {
        self.stats.clone()
    }

    /// Stops everything: the workers hand over their last statistics, the report uplink sends
    /// them if it can, then the uplinks and the stats endpoint stop.
    pub fn stop(self) {
        for (_, flags, wake) in &self.workers {
            flags.stop.store(true, Ordering::Release);
            wake.fire();
        }
        for (handle, _, _) in self.workers {
            let _ = handle.join();
        }
        self.dns.1.raise();
        self.report.1.raise();
        let _ = self.dns.0.join();
        let _ = self.report.0.join();
        if let Some(admin) = self.admin {
            admin.stop();
        }
        info!("lars-agent stopped");
    }
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

/// Binds `shards` shard sockets on `ip` with [`bind_udp`]: ports `base_port + i`, or, when
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
