//! What the two uplinks share: their thread (a current-thread tokio runtime beside the workers),
//! connecting to a list of addresses with fail-over and jittered, capped exponential backoff
//! ([`Connector`]), why a connection ended ([`Ended`]), and the rules that call an open
//! connection dead ([`liveness`]) with the clock that feeds them ([`ConnectionClock`]). Each
//! uplink decides what to do with a connection (see [`crate::dns_uplink`] and
//! [`crate::report_uplink`]).
//!
//! # Fail-over
//! The addresses are tried in order (primary, then the backups), wrapping. A connection that
//! breaks, or that the liveness rules call dead, moves the uplink to the next address after the
//! same backoff as a refused connection; a connection made to another address than the one
//! before counts as a fail-over and is logged with the reason the previous one was left.

pub mod liveness;

use crate::clock::Millis;
use crate::config::UplinkConfig;
use crate::rings::Wake;
use crate::stats::UplinkStats;
use lars_service::Backoff;
use liveness::{LivenessFailure, LivenessRules};
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

/// Why a connection ended.
#[derive(Debug)]
pub enum Ended {
    /// Stop was asked.
    Stop,
    /// The connection broke (closed, reset, bad data), with what happened.
    Lost(String),
    /// The connection was open but the peer was called dead.
    Dead(LivenessFailure),
}

/// Milliseconds since a connection came up, for its [`liveness::Liveness`], and back to the
/// instant a timer waits for.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionClock {
    start: tokio::time::Instant,
}

impl ConnectionClock {
    /// A clock starting now.
    pub fn start() -> ConnectionClock {
        ConnectionClock {
            start: tokio::time::Instant::now(),
        }
    }

    /// The time now.
    pub fn now(&self) -> Millis {
        Millis::from(self.start.elapsed())
    }

    /// Waits until `at`, or forever when `at` is `None` (for a `select!` arm).
    pub async fn until(&self, at: Option<Millis>) {
        match at {
            Some(at) => tokio::time::sleep_until(self.start + Duration::from_millis(at.0)).await,
            None => std::future::pending().await,
        }
    }
}

/// Connects to the first address that answers, starting after the last one that failed.
pub struct Connector {
    what: &'static str,
    addrs: Vec<SocketAddr>,
    next: usize,
    backoff: Backoff,
    timeout: Duration,
    rules: LivenessRules,
    connected_before: bool,
    /// The address of the last connection made.
    previous: Option<SocketAddr>,
    /// Why the uplink last left an address or could not reach one.
    trouble: String,
    stats: Arc<UplinkStats>,
}

impl Connector {
    /// A connector for the uplink called `what` ("dns", "reporter"), whose connections follow
    /// `rules`.
    pub fn new(
        what: &'static str,
        addrs: Vec<SocketAddr>,
        config: &UplinkConfig,
        rules: LivenessRules,
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
            rules,
            connected_before: false,
            previous: None,
            trouble: String::new(),
            stats,
        }
    }

    /// The liveness rules of this uplink's connections.
    pub fn rules(&self) -> LivenessRules {
        self.rules
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
                // Before the first connection, the address it should have been is the primary.
                let from = self.previous.unwrap_or(self.addrs[0]);
                if from != addr {
                    self.stats.failovers.inc();
                    info!(uplink = self.what, %from, to = %addr, reason = self.trouble, "uplink failed over");
                }
                self.previous = Some(addr);
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
        self.trouble = format!("cannot connect to {addr}: {error}");
        Err(wait)
    }

    /// Records how the connection to `addr` ended; returns how long to wait before connecting
    /// to the next address, or `None` on stop.
    pub fn ended(&mut self, addr: SocketAddr, ended: Ended) -> Option<Duration> {
        let reason = match ended {
            Ended::Stop => return None,
            Ended::Lost(reason) => reason,
            Ended::Dead(failure) => {
                self.stats.dead(failure);
                self.rules.explain(failure)
            }
        };
        self.stats.up.set(0);
        self.stats.failures.inc();
        let wait = self.backoff.fail();
        warn!(uplink = self.what, %addr, reason, retry_in = ?wait, "uplink down");
        self.trouble = format!("{addr}: {reason}");
        self.next = self.next.wrapping_add(1);
        Some(wait)
    }
}
