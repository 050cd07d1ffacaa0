//! SIGINT and SIGTERM as a graceful shutdown: handlers installed before a service says it is
//! serving (so no signal meets the default action and kills it half-way), and a `watch` channel
//! that turns true when either arrives, which every task of a service selects on. Processes whose
//! work runs on threads of their own (the agent, the benchmarks' echo server) wait with
//! [`BlockingStopSignals`] instead.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tracing::{info, warn};

/// SIGTERM and SIGINT handlers, in place from [`StopSignals::install`] on: a signal that arrives
/// any time after that is seen by [`StopSignals::wait`], even before anyone waits.
#[derive(Debug)]
pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Installs the handlers. Must be called inside a tokio runtime with its I/O driver enabled.
    pub fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the first SIGTERM or SIGINT since the handlers were installed.
    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => info!("SIGTERM received, stopping"),
            _ = self.int.recv() => info!("SIGINT received, stopping"),
        }
    }

    /// Waits on `installed` handlers; when they could not be installed (which should not happen
    /// on Unix) says so and never resolves, and the process can still be killed.
    pub async fn wait_or_forever(installed: std::io::Result<StopSignals>) {
        match installed {
            Ok(signals) => signals.wait().await,
            Err(e) => {
                warn!(error = %e, "cannot install SIGINT/SIGTERM handlers; stop the process with SIGKILL");
                std::future::pending().await
            }
        }
    }
}

/// [`StopSignals`] for a process without a tokio runtime of its own: the handlers sit on a small
/// current-thread runtime this owns, and [`BlockingStopSignals::wait`] blocks the calling thread.
#[derive(Debug)]
pub struct BlockingStopSignals {
    runtime: tokio::runtime::Runtime,
    installed: std::io::Result<StopSignals>,
}

impl BlockingStopSignals {
    /// Builds the runtime and installs the handlers on it; fails only when the runtime cannot
    /// be built (handlers that cannot be installed are reported by [`BlockingStopSignals::wait`]).
    pub fn install() -> std::io::Result<BlockingStopSignals> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let installed = {
            let _context = runtime.enter();
            StopSignals::install()
        };
        Ok(BlockingStopSignals { runtime, installed })
    }

    /// Blocks until the first SIGTERM or SIGINT since [`BlockingStopSignals::install`], as
    /// [`StopSignals::wait_or_forever`] does; never call it from async code.
    pub fn wait(self) {
        self.runtime
            .block_on(StopSignals::wait_or_forever(self.installed));
    }
}

/// A shutdown flag set by SIGINT/SIGTERM, with the handlers installed before this returns. Must
/// be called inside a tokio runtime.
pub fn shutdown_on_signal() -> watch::Receiver<bool> {
    let (stop, shutdown) = watch::channel(false);
    let installed = StopSignals::install();
    tokio::spawn(async move {
        StopSignals::wait_or_forever(installed).await;
        let _ = stop.send(true);
    });
    shutdown
}
