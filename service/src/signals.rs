//! SIGINT and SIGTERM as a graceful shutdown: a `watch` channel that turns true when either
//! arrives, which every task of a service selects on.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{info, warn};

/// Resolves on the first SIGINT or SIGTERM. Without signal handlers (which should not happen on
/// Unix) it never resolves and the process can still be killed.
pub async fn wait_for_stop_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install SIGINT/SIGTERM handlers; stop the process with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, stopping"),
        _ = int.recv() => info!("SIGINT received, stopping"),
    }
}

/// A shutdown flag set by SIGINT/SIGTERM. Must be called inside a tokio runtime.
pub fn shutdown_on_signal() -> watch::Receiver<bool> {
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        let _ = stop.send(true);
    });
    shutdown
}
