//! What the two uplinks share: their thread (a current-thread tokio runtime beside the workers),
//! and connecting to a list of addresses with fail-over and capped exponential backoff. Each
//! uplink decides what to do with a connection (see [`crate::dns_uplink`] and
//! [`crate::report_uplink`]).

use crate::config::UplinkConfig;
use crate::rings::Wake;
use crate::stats::UplinkStats;
use lars_service::Backoff;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tracing::{info, warn};

/// Starts an uplink's thread running `run` on its own current-thread runtime.
pub fn spawn<F, Fut>(name: &str, run: F) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(run()),
                Err(e) => tracing::error!(error = %e, "cannot start the uplink's runtime"),
            }
        })
}

/// Tells an uplink to stop: the flag, and the wake-up its loop waits on.
#[derive(Debug, Clone)]
pub struct UplinkStop {
    flag: Arc<AtomicBool>,
    wake: Wake,
}

impl UplinkStop {
    /// A signal that fires `wake` when raised.
    pub fn new(wake: Wake) -> UplinkStop {
        UplinkStop {
            flag: Arc::default(),
            wake,
        }
    }

    /// Asks the uplink to stop.
    pub fn raise(&self) {
        self.flag.store(true, Ordering::Release);
        self.wake.fire();
    }

    /// Whether stop was asked.
    pub fn raised(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

/// Connects to the first address that answers, starting after the last one that failed.
pub struct Connector {
    what: &'static str,
    addrs: Vec<SocketAddr>,
    next: usize,
    backoff: Backoff,
    timeout: Duration,
    connected_before: bool,
    stats: Arc<UplinkStats>,
}

impl Connector {
    /// A connector for the uplink called `what` ("dns", "reporter").
    pub fn new(
        what: &'static str,
        addrs: Vec<SocketAddr>,
        config: &UplinkConfig,
        stats: Arc<UplinkStats>,
    ) -> Connector {
        Connector {
            what,
            addrs,
            next: 0,
            backoff: Backoff::new(
                Duration::from_millis(config.reconnect_min_ms),
                Duration::from_millis(config.reconnect_max_ms),
            ),
            timeout: Duration::from_millis(config.connect_timeout_ms),
            connected_before: false,
            stats,
        }
    }

    /// One connection attempt to the current address. On failure, moves to the next address
    /// and returns how long to wait before trying again.
    pub async fn try_connect(&mut self) -> Result<(TcpStream, SocketAddr), Duration> {
        let Some(&addr) = self.addrs.get(self.next % self.addrs.len().max(1)) else {
            return Err(self.backoff.fail());
        };
        let result = tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await;
        let error = match result {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let failures = self.backoff.succeed();
                if self.connected_before {
                    self.stats.reconnects.inc();
                }
                self.connected_before = true;
                self.stats.up.set(1);
                info!(uplink = self.what, %addr, failures, "uplink up");
                return Ok((stream, addr));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        self.stats.failures.inc();
        self.next = self.next.wrapping_add(1);
        let wait = self.backoff.fail();
        let failures = self.backoff.failures();
        if failures <= 3 || failures.is_power_of_two() {
            warn!(uplink = self.what, %addr, error, failures, retry_in = ?wait, "cannot connect");
        }
        Err(wait)
    }

    /// Records that a connection broke; returns how long to wait before reconnecting.
    pub fn lost(&mut self, addr: SocketAddr, reason: &str) -> Duration {
        self.stats.up.set(0);
        self.stats.failures.inc();
        warn!(uplink = self.what, %addr, reason, "uplink down");
        self.next = self.next.wrapping_add(1);
        self.backoff.fail()
    }
}
