//! SIGINT and SIGTERM as a graceful shutdown: handlers installed before a service says it is
//! serving (so no signal meets the default action and kills it half-way), and a `watch` channel
//! that turns true when either arrives, which every task of a service selects on.

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
