//! The dns service as a whole: binds the listener, starts the route synchroniser, and accepts
//! agent connections under the [`Gate`] rules (`maxConn`, per-peer cap, eviction of idle
//! connections) once the first snapshot is loaded (until then connections
//! wait in the kernel's backlog rather than being told that every route is empty). At shutdown
//! it stops accepting, gives the connections a bounded time to hand their agents what is queued,
//! and cuts the rest, so a stalled agent never holds up a stop.

use crate::config::DnsConfig;
use crate::connection;
use crate::push_empty::PushEmptyRule;
use crate::route_sync::{RouteSync, SyncTiming};
use crate::shared::DnsShared;
use crate::stats::DnsStats;
use lars_service::admission::{Gate, Limits};
use lars_service::metrics::ServiceMetrics;
use lars_service::peers::AllowedPeers;
use lars_store::StoreUrl;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

/// How long a stopping service waits for all its connections: the per-connection drain and as
/// much again for the connections' own closing.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(2 * connection::SHUTDOWN_DRAIN.as_secs());

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A bound dns service, ready to run.
pub struct DnsServer {
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<DnsShared>,
    metrics: ServiceMetrics,
    sync: RouteSync,
    limits: Limits,
    allowed_peers: AllowedPeers,
}

impl DnsServer {
    /// Binds the listener; the store is opened (and retried) when the service runs.
    pub async fn bind(config: &DnsConfig, store: StoreUrl) -> Result<DnsServer, DnsError> {
        let want = config.listen_addr();
        let listener = TcpListener::bind(want)
            .await
            .map_err(|source| DnsError::Bind { addr: want, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| DnsError::Bind { addr: want, source })?;
        let shared = Arc::new(
            DnsShared::new(
                config.dns.write_queue_frames,
                config.stalled_reader_timeout(),
            )
            .with_max_subscriptions(config.dns.max_subscriptions_per_connection),
        );
        let timing = SyncTiming {
            version_poll: config.version_poll(),
            full_reload: config.full_reload(),
            retry_max: config.db_retry_max(),
            change_retention: Duration::from_secs(config.dns.route_change_retention_secs),
            push_empty: PushEmptyRule::new(config.dns.push_empty_threshold),
        };
        let sync = RouteSync::new(store, shared.clone(), timing);
        let metrics = shared.stats.metrics();
        Ok(DnsServer {
            listener,
            addr,
            shared,
            metrics,
            sync,
            limits: config.reactor.limits(),
            allowed_peers: config.reactor.allowed_peers.clone(),
        })
    }

    /// The address the service listens on (with the OS-chosen port when `port = 0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service's counters.
    pub fn stats(&self) -> Arc<DnsStats> {
        self.shared.stats.clone()
    }

    /// The service's metrics, for its endpoint ([`lars_service::metrics::MetricsEndpoint`]).
    pub fn metrics(&self) -> ServiceMetrics {
        self.metrics.clone()
    }

    /// Serves until `shutdown` turns true, then closes every connection and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let DnsServer {
            listener,
            addr,
            shared,
            metrics,
            mut sync,
            limits,
            allowed_peers,
        } = self;
        if !sync.start(&mut shutdown).await {
            return;
        }
        let sync_task = tokio::spawn(sync.run(shutdown.clone()));
        info!(%addr, max_conn = limits.max_conn, per_peer = limits.max_conn_per_peer,
            idle_timeout = ?limits.idle_timeout, frame_timeout = ?limits.frame_timeout, %allowed_peers, "lars-dns serving");
        metrics.set_serving();

        let gate = Gate::new(limits);
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if !allowed_peers.admit(peer, &shared.stats.peers_refused) {
                            continue;
                        }
                        let Some(ticket) = gate.accept(peer, &shared.stats.connections_refused, &shared.stats.hygiene) else {
                            continue;
                        };
                        DnsStats::inc(&shared.stats.connections);
                        DnsStats::inc(&shared.stats.connections_total);
                        let shared = shared.clone();
                        let shutdown = shutdown.clone();
                        connections.spawn(async move {
                            connection::serve(stream, peer, shared.clone(), ticket, shutdown).await;
                            DnsStats::sub(&shared.stats.connections, 1);
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly, keep serving.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        info!(connections = connections.len(), "lars-dns stopping");
        drop(listener);
        // Each connection bounds its own drain (`connection::SHUTDOWN_DRAIN`); this bounds the
        // rest, such as a connection whose agent closed its side and that is flushing to it.
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_DEADLINE, drain)
            .await
            .is_err()
        {
            let cut = connections.len();
            shared
                .stats
                .drain_cut
                .fetch_add(cut as u64, std::sync::atomic::Ordering::Relaxed);
            warn!(cut, deadline = ?SHUTDOWN_DEADLINE, "connections still writing at the shutdown deadline; cutting them");
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
        let _ = sync_task.await;
        info!(stats = %shared.stats, "lars-dns stopped");
    }
}
