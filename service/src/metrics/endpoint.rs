//! The HTTP endpoint of a service's metrics: `GET /metrics` answers the registry in the
//! Prometheus text format with its content type, any other path 404. Each connection is served
//! by a task of its own (HTTP/1 through hyper, routed by axum), with a time limit on reading the
//! request head and on the whole connection, so an idle or slow client never holds up another
//! scrape and never holds a task for long. Runs on the caller's tokio runtime
//! ([`MetricsEndpoint`]) or on a small thread of its own for processes whose threads are not
//! tokio's ([`MetricsThread`], the agent). It only reads the registry: never on a data path.

use super::{CONTENT_TYPE, ServiceMetrics};
use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::routing::get;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// Longest a client may take to send its request head. A scraper sends it at once; this only
/// ends connections opened and left idle.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest one connection lives, reads and writes together. Prometheus' default scrape timeout
/// is 10 s, and the text of every counter is written in well under a millisecond, so a
/// connection still open after this is a client that stopped reading.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections served at once; more wait in the kernel's backlog. Far more than the few
/// scrapers and operators who read a service.
pub const MAX_CONNECTIONS: usize = 64;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listening socket could not be bound.
    #[error("cannot listen for metrics on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The endpoint's thread or its runtime could not be started.
    #[error("cannot start the metrics thread")]
    Thread(#[source] std::io::Error),
}

/// The endpoint running on the caller's tokio runtime.
#[derive(Debug)]
pub struct MetricsEndpoint {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl MetricsEndpoint {
    /// Binds `addr` (port 0 picks one; the bound address is logged) and serves `metrics` on the
    /// current tokio runtime until [`MetricsEndpoint::stop`] or drop (which ends the accept loop).
    pub async fn start(
        addr: SocketAddr,
        metrics: ServiceMetrics,
    ) -> Result<MetricsEndpoint, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, metrics, stopped));
        info!(metrics = %bound, "metrics endpoint listening on http://{bound}/metrics");
        Ok(MetricsEndpoint {
            addr: bound,
            stop,
            task,
        })
    }

    /// [`MetricsEndpoint::start`] when `addr` is given; `None` (metrics off) otherwise.
    pub async fn start_if(
        addr: Option<SocketAddr>,
        metrics: ServiceMetrics,
    ) -> Result<Option<MetricsEndpoint>, MetricsError> {
        match addr {
            Some(addr) => Ok(Some(MetricsEndpoint::start(addr, metrics).await?)),
            None => Ok(None),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and ends every connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The endpoint running on a thread of its own (a current-thread tokio runtime).
#[derive(Debug)]
pub struct MetricsThread {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsThread {
    /// Binds `addr` (port 0 picks one; the bound address is logged) and serves `metrics` on the
    /// thread `name` until [`MetricsThread::stop`] or drop.
    pub fn start(
        name: &str,
        addr: SocketAddr,
        metrics: ServiceMetrics,
    ) -> Result<MetricsThread, MetricsError> {
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(MetricsError::Thread)?;
        let (stop, stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, metrics, stopped).await,
                        Err(e) => warn!(error = %e, "cannot serve metrics"),
                    }
                });
            })
            .map_err(MetricsError::Thread)?;
        info!(metrics = %bound, "metrics endpoint listening on http://{bound}/metrics");
        Ok(MetricsThread {
            addr: bound,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the endpoint and waits for its thread.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsThread {
    fn drop(&mut self) {
        self.shut();
    }
}

/// The routes: `/metrics`, and 404 for anything else.
fn router(metrics: ServiceMetrics) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(metrics)
}

async fn render(State(metrics): State<ServiceMetrics>) -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render())
}

/// Accepts until `stop`, each connection on a task of its own.
async fn serve(listener: TcpListener, metrics: ServiceMetrics, stop: watch::Receiver<bool>) {
    serve_http(listener, router(metrics), stop).await;
}

/// Serves `router` on `listener` until `stop` turns true, with this endpoint's limits: each
/// connection on a task of its own, [`HEAD_TIMEOUT`], [`CONNECTION_TIMEOUT`] and
/// [`MAX_CONNECTIONS`]. Handlers can extract the peer's address as
/// `axum::extract::ConnectInfo<SocketAddr>`. The operator console serves its pages this way.
pub async fn serve_http(listener: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly, keep serving.
                warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone().layer(Extension(ConnectInfo(peer))));
        connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(%peer, error = &e as &dyn std::error::Error, "http connection failed");
                }
                Err(_) => debug!(%peer, "http connection timed out"),
            }
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    connections.abort_all();
}
