//! The reporter service as a whole: binds the listener, starts the store workers and the stats
//! log, accepts agent connections under the [`Gate`] rules (`maxConn`, per-peer cap, eviction of
//! idle connections), and on shutdown stops accepting, closes the
//! connections, lets every worker write what is still pending (for at most
//! [`SHUTDOWN_FLUSH`]) and closes the store.
//!
//! The service starts serving at once, whether or not the database answers: rows wait in the
//! workers' inboxes until it does. The store is opened in the background right away, so a wrong
//! URL or password shows up in the log at start, not at the first report.

use crate::config::ReporterConfig;
use crate::connection;
use crate::inbox::Inboxes;
use crate::report::Admission;
use crate::shutdown;
use crate::stats::ReporterStats;
use crate::store_worker::{SharedStore, StoreWorker, WorkerTiming};
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

/// How long the store workers may take at shutdown to write what is still pending.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(10);

/// How often the stats line is logged (only when something happened since the last one).
pub const STATS_LOG_EVERY: Duration = Duration::from_secs(10);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReporterError {
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

/// A bound reporter service, ready to run.
pub struct ReporterServer {
    listener: TcpListener,
    addr: SocketAddr,
    stats: Arc<ReporterStats>,
    metrics: ServiceMetrics,
    inboxes: Inboxes,
    store: Arc<SharedStore>,
    timing: WorkerTiming,
    limits: Limits,
    batch_rows: usize,
    allowed_peers: AllowedPeers,
    admission: Admission,
}

impl ReporterServer {
    /// Binds the listener; the store is opened (and retried) when the service runs.
    pub async fn bind(
        config: &ReporterConfig,
        store: StoreUrl,
    ) -> Result<ReporterServer, ReporterError> {
        let want = config.listen_addr();
        let listener = TcpListener::bind(want)
            .await
            .map_err(|source| ReporterError::Bind { addr: want, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ReporterError::Bind { addr: want, source })?;
        let stats = Arc::new(ReporterStats::default());
        let r = &config.reporter;
        let inboxes = Inboxes::new(r.db_thread_cnt, r.max_pending_keys, r.batch_rows, &stats);
        Ok(ReporterServer {
            listener,
            addr,
            metrics: stats.metrics(),
            stats,
            inboxes,
            store: Arc::new(SharedStore::new(store)),
            timing: WorkerTiming {
                flush: config.flush(),
                retry_max: config.db_retry_max(),
                shutdown_flush: SHUTDOWN_FLUSH,
            },
            limits: config.reactor.limits(),
            batch_rows: r.batch_rows,
            allowed_peers: config.reactor.allowed_peers.clone(),
            admission: config.admission(),
        })
    }

    /// The address the service listens on (with the OS-chosen port when `port = 0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service's counters.
    pub fn stats(&self) -> Arc<ReporterStats> {
        self.stats.clone()
    }

    /// The service's metrics, for its endpoint ([`lars_service::metrics::MetricsEndpoint`]).
    pub fn metrics(&self) -> ServiceMetrics {
        self.metrics.clone()
    }

    /// The workers' inboxes, e.g. to look at the [backlog](Inboxes::backlog).
    pub fn inboxes(&self) -> Inboxes {
        self.inboxes.clone()
    }

    /// Serves until `shutdown` turns true (or its sender goes away), then flushes and returns.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let ReporterServer {
            listener,
            addr,
            stats,
            metrics,
            inboxes,
            store,
            timing,
            limits,
            batch_rows,
            allowed_peers,
            admission,
        } = self;

        let (drain, drained) = watch::channel(false);
        let mut workers = JoinSet::new();
        for id in 0..inboxes.len() {
            let worker = StoreWorker::new(
                id,
                inboxes.get(id).clone(),
                store.clone(),
                stats.clone(),
                timing,
            );
            workers.spawn(worker.run(drained.clone()));
        }
        let opener = tokio::spawn(open_store(store.clone(), stats.clone()));
        let stats_log = tokio::spawn(log_stats(stats.clone()));
        info!(%addr, max_conn = limits.max_conn, per_peer = limits.max_conn_per_peer,
            idle_timeout = ?limits.idle_timeout, frame_timeout = ?limits.frame_timeout, %allowed_peers, workers = inboxes.len(), batch_rows, flush = ?timing.flush,
            "lars-reporter serving");
        metrics.set_serving();

        let gate = Gate::new(limits);
        let mut connections = JoinSet::new();
        let mut stop = shutdown.clone();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if !allowed_peers.admit(peer, &stats.peers_refused) {
                            continue;
                        }
                        let Some(ticket) = gate.accept(peer, &stats.connections_refused, &stats.hygiene) else {
                            continue;
                        };
                        ReporterStats::inc(&stats.connections);
                        ReporterStats::inc(&stats.connections_total);
                        let _ = stream.set_nodelay(true);
                        let (inboxes, stats, shutdown) = (inboxes.clone(), stats.clone(), shutdown.clone());
                        connections.spawn(async move {
                            connection::serve(stream, peer, inboxes, stats.clone(), admission, ticket, shutdown).await;
                            ReporterStats::sub(&stats.connections, 1);
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly, keep serving.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = shutdown::requested(&mut stop) => break,
            }
        }

        info!(
            connections = connections.len(),
            pending = ReporterStats::get(&stats.pending_rows),
            "lars-reporter stopping"
        );
        drop(listener);
        let closing = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), closing)
            .await
            .is_err()
        {
            connections.abort_all();
        }
        // Every row received is in an inbox now; let the workers write them.
        let _ = drain.send(true);
        while workers.join_next().await.is_some() {}
        opener.abort();
        stats_log.abort();
        store.close().await;
        info!(stats = %stats, "lars-reporter stopped");
    }
}

/// Opens the store once at start, so that a bad URL or an unreachable database is logged right
/// away; the workers retry on their own.
async fn open_store(store: Arc<SharedStore>, stats: Arc<ReporterStats>) {
    if let Err(e) = store.get().await {
        ReporterStats::inc(&stats.db_errors);
        warn!(
            error = &e as &dyn std::error::Error,
            "cannot open the store yet; rows are kept until it can be written"
        );
    }
}

/// Logs the stats line every [`STATS_LOG_EVERY`] when something happened since the last one.
async fn log_stats(stats: Arc<ReporterStats>) {
    let mut ticks = tokio::time::interval(STATS_LOG_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = stats.activity();
    loop {
        ticks.tick().await;
        let now = stats.activity();
        if now != last {
            info!(stats = %stats, "lars-reporter stats");
            last = now;
        }
    }
}
