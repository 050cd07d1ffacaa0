//! A service running inside the test process: its `run(shutdown)` future as a task of the test's
//! tokio runtime, stopped through its shutdown flag the way SIGTERM stops the binary.

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A service's `run(shutdown)` running as a task; see [`ServiceTask::stop`].
pub struct ServiceTask {
    name: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServiceTask {
    /// Spawns `run(shutdown)` of service `name` on the current tokio runtime.
    pub fn spawn<Fut>(name: &str, run: impl FnOnce(watch::Receiver<bool>) -> Fut) -> ServiceTask
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, shutdown) = watch::channel(false);
        ServiceTask {
            name: name.to_string(),
            stop,
            task: tokio::spawn(run(shutdown)),
        }
    }

    /// Sets the shutdown flag and waits for the service to return; fails the test when it takes
    /// longer than `within` or panicked.
    pub async fn stop(self, within: Duration) {
        let _ = self.stop.send(true);
        let name = self.name;
        tokio::time::timeout(within, self.task)
            .await
            .unwrap_or_else(|_| panic!("{name} did not stop within {within:?}"))
            .unwrap_or_else(|e| panic!("{name} task failed: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn stop_sets_the_shutdown_flag_and_waits_for_the_service() {
        let stopped = Arc::new(AtomicBool::new(false));
        let seen = stopped.clone();
        let service = ServiceTask::spawn("toy", |mut shutdown| async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
            seen.store(true, Ordering::SeqCst);
        });
        service.stop(Duration::from_secs(5)).await;
        assert!(stopped.load(Ordering::SeqCst));
    }

    #[tokio::test]
    #[should_panic(expected = "toy did not stop")]
    async fn a_service_that_ignores_the_flag_fails_the_test() {
        let service = ServiceTask::spawn("toy", |_shutdown| std::future::pending());
        service.stop(Duration::from_millis(50)).await;
    }
}
