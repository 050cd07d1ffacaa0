//! The agent's data-plane I/O, and nothing else: one seam, two drivers. A worker's state
//! implements [`DatagramService`] (datagram in, reply out, wake-up, tick) and never knows which
//! driver runs it; the driver owns the sockets, the buffers and the waiting:
//! - `io-uring` ([`uring::EventLoop`]): a hand-written loop on the `io-uring` crate (multishot
//!   receives from a provided-buffer ring, one `io_uring_enter` per round, no epoll). The default
//!   and the benchmarked hot path; needs Linux 6.1 and io_uring allowed to the process;
//! - `portable` ([`portable::EventLoop`]): non-blocking sockets on epoll, `recvmmsg` in and
//!   `sendmmsg` out in batches. Runs wherever Linux runs, io_uring or not.
//!
//! Both are woken by an [`eventfd::EventFd`] and tick at a fixed interval. `[agent] io = "auto"`
//! resolves to one of them once per agent with [`resolve`], which probes io_uring with the exact
//! setup the loop needs ([`uring::probe`]). The driver is chosen once per loop, not per datagram:
//! [`DatagramLoop::run`] dispatches to the concrete loop, whose hot path is monomorphic.
//!
//! The `unsafe` of the agent lives here (operations that point at memory the kernel uses until
//! their completion), each block with the invariant it relies on.

pub mod eventfd;
#[allow(unsafe_code)]
pub mod portable;
#[cfg(test)]
mod testing;
#[allow(unsafe_code)]
pub mod uring;

use crate::config::DriverChoice;
use eventfd::EventFd;
use std::net::UdpSocket;
use std::time::Duration;
use tracing::warn;

/// Payload room of a receive buffer and size of a reply buffer, in both drivers: every UDP
/// datagram fits whole (at most 65,507 bytes over IPv4), so an oversized one is received, seen
/// and counted, never silently cut, and a whole reply frame always fits (see `Shard::handle`).
pub const DATAGRAM_BUFFER: usize = 65536;

/// What a loop does after a wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopControl {
    /// Keep serving.
    Continue,
    /// Cancel everything and return.
    Stop,
}

/// What a worker does with its traffic: the seam between a driver (which owns the I/O) and the
/// worker's state (which owns the decisions). `local` is the index of a socket in the list the
/// loop was given.
pub trait DatagramService {
    /// A datagram arrived on socket `local`. Writes the reply, if any, at the front of `reply`
    /// ([`DATAGRAM_BUFFER`] bytes) and returns its length.
    fn datagram(&mut self, local: usize, datagram: &[u8], reply: &mut [u8]) -> Option<usize>;
    /// A datagram of `len` bytes did not fit a receive buffer and was dropped.
    fn oversized(&mut self, local: usize, len: usize);
    /// A receive failed.
    fn recv_failed(&mut self, local: usize, error: std::io::Error);
    /// A reply could not be sent (and was dropped).
    fn send_failed(&mut self, error: std::io::Error);
    /// The wake-up eventfd fired.
    fn woken(&mut self) -> LoopControl;
    /// The tick interval passed.
    fn tick(&mut self);
}

/// Which driver runs a loop (what `[agent] io` resolves to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// The hand-written io_uring loop (`io::uring::EventLoop`).
    IoUring,
    /// The epoll loop (`io::portable::EventLoop`).
    Portable,
}

impl Driver {
    /// The name used in the config, the logs and the stats.
    pub fn name(self) -> &'static str {
        match self {
            Driver::IoUring => "io-uring",
            Driver::Portable => "portable",
        }
    }
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a driver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The probe was told to fail (`LARS_AGENT_FORCE_URING_FAILURE=1`).
    #[error(
        "io_uring turned off by {} (a test and diagnostic hook)",
        uring::FORCE_FAILURE_ENV
    )]
    Forced,
    /// `io_uring_setup` refused the loop's ring.
    #[error(
        "cannot build an io_uring with SINGLE_ISSUER and DEFER_TASKRUN (needs Linux 6.1, \
         kernel.io_uring_disabled = 0 and no seccomp profile blocking io_uring)"
    )]
    Ring(#[source] std::io::Error),
    /// The provided-buffer ring could not be made or registered (Linux 5.19).
    #[error("cannot register the provided-buffer ring")]
    BufRing(#[source] std::io::Error),
    /// The sockets could not be registered with the ring.
    #[error("cannot register the shard sockets with the ring")]
    Files(#[source] std::io::Error),
    /// The probe's multishot `RecvMsg` on a loopback socket did not deliver (Linux 6.0).
    #[error("a multishot RecvMsg did not deliver a datagram")]
    Multishot(#[source] std::io::Error),
    /// The probe's loopback socket could not be made.
    #[error("cannot make the probe's loopback socket")]
    ProbeSocket(#[source] std::io::Error),
    /// The epoll instance or a registration in it could not be made.
    #[error("cannot set up epoll")]
    Epoll(#[source] std::io::Error),
}

/// The driver `choice` means on this machine: `auto` probes io_uring once (`uring::probe`)
/// and falls back to `portable` when it cannot be set up, saying why in one `warn!` line.
pub fn resolve(choice: DriverChoice) -> Driver {
    match choice {
        DriverChoice::IoUring => Driver::IoUring,
        DriverChoice::Portable => Driver::Portable,
        DriverChoice::Auto => match uring::probe() {
            Ok(()) => Driver::IoUring,
            Err(e) => {
                warn!(
                    cause = %error_chain(&e),
                    "io_uring cannot be set up; the workers run the portable driver (epoll)"
                );
                Driver::Portable
            }
        },
    }
}

/// `error` and its sources, joined by ": ", for a single log line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A loop of either driver over a worker's sockets.
// One per worker, made once and kept on its thread's stack: the size difference costs nothing,
// and boxing the larger loop would only add an indirection.
#[allow(clippy::large_enum_variant)]
pub enum DatagramLoop<'a> {
    /// The `io-uring` driver.
    IoUring(uring::EventLoop<'a>),
    /// The `portable` driver.
    Portable(portable::EventLoop<'a>),
}

impl<'a> DatagramLoop<'a> {
    /// A `driver` loop serving `sockets`, woken by `wake` (if any), ticking every `tick`.
    pub fn new(
        driver: Driver,
        sockets: Vec<UdpSocket>,
        wake: Option<&'a EventFd>,
        tick: Duration,
    ) -> Result<DatagramLoop<'a>, DriverError> {
        Ok(match driver {
            Driver::IoUring => DatagramLoop::IoUring(uring::EventLoop::new(sockets, wake, tick)?),
            Driver::Portable => {
                DatagramLoop::Portable(portable::EventLoop::new(sockets, wake, tick)?)
            }
        })
    }

    /// Which driver this is.
    pub fn driver(&self) -> Driver {
        match self {
            DatagramLoop::IoUring(_) => Driver::IoUring,
            DatagramLoop::Portable(_) => Driver::Portable,
        }
    }

    /// Serves until `service` says stop.
    pub fn run(&mut self, service: &mut impl DatagramService) -> std::io::Result<()> {
        match self {
            DatagramLoop::IoUring(event_loop) => event_loop.run(service),
            DatagramLoop::Portable(event_loop) => event_loop.run(service),
        }
    }
}
