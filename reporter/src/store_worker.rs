//! One store worker: a task that writes the rows of its [`Inbox`] to `ServerCallStatus`, a chunk
//! of at most `batch_rows` rows per multi-row upsert, as soon as a full chunk is pending or the
//! oldest pending row has waited `flush`. Workers run on the tokio runtime and only ever wait on
//! the database, their inbox's wake-up or their timers; they never hold the inbox lock across a
//! write.
//!
//! When a write fails (database down, timeout, lock), the rows stay in the inbox where they were
//! (newer rows keep replacing them: memory stays bounded by the keys), the error is counted and
//! logged (the first failure and every tenth), and the worker retries with capped exponential
//! backoff ([`Backoff`]) until the database is back — then it writes everything kept, oldest
//! first. The store is opened by the first worker that needs it (so the service starts while
//! the database is down) and shared by all, the way services open it
//! ([`StoreOptions::for_service`]): an SQLite file is made on the first start, a MySQL database
//! never (`main.rs` refuses to start without it). A database that is missing or lacks
//! `ServerCallStatus` later is a failed write like any other: the rows wait for `lars init`.
//!
//! One caveat the store's time limit brings: a write that timed out on our side may still commit
//! on the server later, after a retry wrote a newer value of a key. Lars has the same exposure;
//! the next report of that key repairs it.

use crate::inbox::Inbox;
use crate::mailbox::{Chunk, NextWrite};
use crate::shutdown::requested;
use crate::stats::ReporterStats;
use lars_service::Backoff;
use lars_store::{Store, StoreError, StoreOptions, StoreUrl};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, watch};
use tracing::{debug, info, warn};

/// First retry wait after a failed write; it doubles up to `db_retry_max_ms`.
const RETRY_BASE: Duration = Duration::from_millis(100);

/// The store every worker writes to, opened on first use.
#[derive(Debug)]
pub struct SharedStore {
    url: StoreUrl,
    store: OnceCell<Store>,
}

impl SharedStore {
    /// A store to be opened at `url` when first needed.
    pub fn new(url: StoreUrl) -> SharedStore {
        SharedStore {
            url,
            store: OnceCell::new(),
        }
    }

    /// The open store; opens it on first use (an SQLite file is created with the schema if
    /// missing). A failed open is retried by the next call.
    pub async fn get(&self) -> Result<&Store, StoreError> {
        self.store
            .get_or_try_init(|| Store::open_with(&self.url, StoreOptions::for_service()))
            .await
    }

    /// Closes the store's connections, if it was opened.
    pub async fn close(&self) {
        if let Some(store) = self.store.get() {
            store.clone().close().await;
        }
    }
}

/// Timing of the store workers.
#[derive(Debug, Clone, Copy)]
pub struct WorkerTiming {
    /// Longest a row waits while fewer than `batch_rows` are pending.
    pub flush: Duration,
    /// Longest wait between retries while the database is down.
    pub retry_max: Duration,
    /// How long the final flush at shutdown may take.
    pub shutdown_flush: Duration,
}

/// Why a write did not happen.
#[derive(Debug)]
enum WriteFailure {
    /// The store refused or could not be reached.
    Store(StoreError),
    /// The shutdown deadline passed first.
    OutOfTime,
}

/// One store worker.
pub struct StoreWorker {
    id: usize,
    inbox: Arc<Inbox>,
    store: Arc<SharedStore>,
    stats: Arc<ReporterStats>,
    timing: WorkerTiming,
    chunk: Chunk,
}

impl StoreWorker {
    /// Worker `id`, writing the rows of `inbox` to `store`.
    pub fn new(
        id: usize,
        inbox: Arc<Inbox>,
        store: Arc<SharedStore>,
        stats: Arc<ReporterStats>,
        timing: WorkerTiming,
    ) -> StoreWorker {
        StoreWorker {
            id,
            inbox,
            store,
            stats,
            timing,
            chunk: Chunk::default(),
        }
    }

    /// Writes until `drain` turns true (or its sender goes away), then writes what is still
    /// pending within the shutdown time limit and returns.
    pub async fn run(mut self, mut drain: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(RETRY_BASE, self.timing.retry_max);
        loop {
            let drained = match self.inbox.next_write(Instant::now(), self.timing.flush) {
                NextWrite::Now => match self.write_chunk(None).await {
                    Ok(()) => {
                        let failures = backoff.succeed();
                        if failures > 0 {
                            info!(
                                worker = self.id,
                                failures,
                                pending = self.inbox.pending(),
                                "database reachable again; writing the rows kept meanwhile"
                            );
                        }
                        *drain.borrow()
                    }
                    Err(failure) => {
                        let wait = backoff.fail();
                        self.log_failure(&failure, backoff.failures(), wait);
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => false,
                            _ = requested(&mut drain) => true,
                        }
                    }
                },
                NextWrite::At(due) => tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => false,
                    _ = self.inbox.woken() => false,
                    _ = requested(&mut drain) => true,
                },
                NextWrite::Idle => tokio::select! {
                    _ = self.inbox.woken() => false,
                    _ = requested(&mut drain) => true,
                },
            };
            if drained {
                break;
            }
        }
        self.final_flush().await;
    }

    /// Writes the oldest pending chunk; settles it in the inbox either way.
    async fn write_chunk(&mut self, deadline: Option<Instant>) -> Result<(), WriteFailure> {
        let within = |deadline: Option<Instant>| async move {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        let store = tokio::select! {
            store = self.store.get() => store.map_err(WriteFailure::Store)?,
            _ = within(deadline) => return Err(WriteFailure::OutOfTime),
        };
        self.inbox.take_chunk(&mut self.chunk);
        if self.chunk.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let result = tokio::select! {
            written = store.upsert_call_status(self.chunk.rows()) => written.map_err(WriteFailure::Store),
            _ = within(deadline) => Err(WriteFailure::OutOfTime),
        };
        match result {
            Ok(_) => {
                self.stats.wrote_in(started.elapsed());
                let outcome = self.inbox.written(&self.chunk);
                ReporterStats::inc(&self.stats.batches);
                debug!(
                    worker = self.id,
                    rows = outcome.written,
                    "wrote call statistics"
                );
                Ok(())
            }
            Err(failure) => {
                self.inbox.failed(&self.chunk);
                Err(failure)
            }
        }
    }

    fn log_failure(&self, failure: &WriteFailure, failures: u32, retry_in: Duration) {
        let WriteFailure::Store(error) = failure else {
            return;
        };
        ReporterStats::inc(&self.stats.db_errors);
        if failures == 1 || failures.is_multiple_of(10) {
            warn!(
                worker = self.id,
                error = error as &dyn std::error::Error,
                failures,
                ?retry_in,
                pending = self.inbox.pending(),
                "cannot write call statistics; keeping the latest row per key and retrying"
            );
        }
    }

    /// At shutdown: writes everything still pending, giving up at the time limit.
    async fn final_flush(&mut self) {
        let pending = self.inbox.pending();
        if pending == 0 {
            return;
        }
        info!(
            worker = self.id,
            pending, "flushing pending rows before stopping"
        );
        let deadline = Instant::now() + self.timing.shutdown_flush;
        let mut backoff = Backoff::new(RETRY_BASE, self.timing.retry_max);
        while self.inbox.pending() > 0 && Instant::now() < deadline {
            match self.write_chunk(Some(deadline)).await {
                Ok(()) => {}
                Err(WriteFailure::OutOfTime) => break,
                Err(failure) => {
                    let wait = backoff.fail();
                    self.log_failure(&failure, backoff.failures(), wait);
                    tokio::time::sleep_until(deadline.min(Instant::now() + wait).into()).await;
                }
            }
        }
        let left = self.inbox.pending();
        if left > 0 {
            warn!(worker = self.id, rows = left, limit = ?self.timing.shutdown_flush,
                "stopping with rows not written: the database did not take them in time");
        }
    }
}
