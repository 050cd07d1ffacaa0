//! The two stop signals inside the service, both `watch` flags that turn true once: *shutdown*
//! (from the caller, e.g. SIGTERM: stop accepting and reading) and *drain* (from the server once
//! every connection is closed: the store workers write what is pending and stop). A flag whose
//! sender is gone counts as set, so a lost owner stops the service instead of hanging it.

use tokio::sync::watch;

/// Resolves once `flag` is true or its sender is gone.
pub async fn requested(flag: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, so callers' futures stay `Send`.
    let _ = flag.wait_for(|set| *set).await;
}
