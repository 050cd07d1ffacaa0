//! The only path from the network side to the store workers: one [`Inbox`] per worker (its
//! [`Mailbox`] behind a mutex, plus a wake-up), and [`Inboxes`], which routes every row to the
//! inbox of its key's worker by a hash of the key — so all rows of a key go through one worker,
//! in the order they were received, and per-key order holds end to end.
//!
//! The mutex is held only to put a connection's rows in, to copy a chunk out or to settle it
//! (and to move this worker's share of the `pending_rows` gauge with it): never across I/O,
//! never while waiting. Connections never wait for the database: a put
//! coalesces or evicts, it never blocks on room. The worker is woken only when its inbox goes
//! from empty to non-empty or fills a chunk; otherwise it sleeps until its flush time.

use crate::mailbox::{Chunk, Mailbox, NextWrite, WriteOutcome};
use crate::stats::ReporterStats;
use lars_store::{CallStatusKey, CallStatusRow};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What one store worker receives.
#[derive(Debug)]
pub struct Inbox {
    mailbox: Mutex<Mailbox>,
    wake: Notify,
    batch_rows: usize,
    stats: Arc<ReporterStats>,
}

impl Inbox {
    /// An empty inbox holding at most `max_keys` keys, whose worker writes `batch_rows` rows at a
    /// time.
    pub fn new(max_keys: usize, batch_rows: usize, stats: Arc<ReporterStats>) -> Inbox {
        Inbox {
            mailbox: Mutex::new(Mailbox::new(max_keys)),
            wake: Notify::new(),
            batch_rows,
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Mailbox> {
        // Nothing panics while the lock is held; were it to, release builds abort, and a test
        // build carries on with the map as it was left.
        self.mailbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Network side: puts `rows` in, in order, counting what they coalesced or evicted, and
    /// wakes the worker if it has something new to do.
    pub fn deliver(&self, rows: &[CallStatusRow], now: Instant) {
        if rows.is_empty() {
            return;
        }
        let (before, after, outcome) = {
            let mut mailbox = self.lock();
            let before = mailbox.len();
            let mut outcome = crate::mailbox::PutOutcome::default();
            for row in rows {
                outcome += mailbox.put(*row, now);
            }
            let after = mailbox.len();
            // Under the lock, so this worker's share of the gauge follows its map exactly.
            self.stats.pending_changed(after as i64 - before as i64);
            (before, after, outcome)
        };
        ReporterStats::add(&self.stats.coalesced, outcome.coalesced);
        ReporterStats::add(&self.stats.dropped_over_cap, outcome.dropped);
        if before == 0 || (before < self.batch_rows && after >= self.batch_rows) {
            self.wake.notify_one();
        }
    }

    /// Worker side: when to write next.
    pub fn next_write(&self, now: Instant, flush: Duration) -> NextWrite {
        self.lock().next_write(now, self.batch_rows, flush)
    }

    /// Worker side: resolves when rows were delivered to an empty inbox or a chunk filled up
    /// (or at once, if that happened since the last wait).
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Worker side: copies the oldest `batch_rows` rows into `chunk`.
    pub fn take_chunk(&self, chunk: &mut Chunk) {
        self.lock().take_chunk(self.batch_rows, chunk);
    }

    /// Worker side: settles a written chunk.
    pub fn written(&self, chunk: &Chunk) -> WriteOutcome {
        self.settle(chunk, true)
    }

    /// Worker side: settles a chunk whose write failed.
    pub fn failed(&self, chunk: &Chunk) -> WriteOutcome {
        self.settle(chunk, false)
    }

    fn settle(&self, chunk: &Chunk, ok: bool) -> WriteOutcome {
        let outcome = {
            let mut mailbox = self.lock();
            let before = mailbox.len();
            let outcome = if ok {
                mailbox.written(chunk)
            } else {
                mailbox.failed(chunk)
            };
            self.stats
                .pending_changed(mailbox.len() as i64 - before as i64);
            outcome
        };
        ReporterStats::add(&self.stats.rows_written, outcome.written);
        ReporterStats::add(&self.stats.coalesced, outcome.coalesced);
        ReporterStats::add(&self.stats.dropped_over_cap, outcome.dropped);
        outcome
    }

    /// Rows waiting in this inbox.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// When the oldest waiting row arrived.
    pub fn oldest_arrival(&self) -> Option<Instant> {
        self.lock().oldest_arrival()
    }
}

/// The inboxes of all store workers, and the routing of keys to them.
#[derive(Debug, Clone)]
pub struct Inboxes {
    inboxes: Arc<[Arc<Inbox>]>,
}

impl Inboxes {
    /// `workers` empty inboxes (at least one).
    pub fn new(
        workers: usize,
        max_keys: usize,
        batch_rows: usize,
        stats: &Arc<ReporterStats>,
    ) -> Inboxes {
        let inboxes = (0..workers.max(1))
            .map(|_| Arc::new(Inbox::new(max_keys, batch_rows, stats.clone())))
            .collect();
        Inboxes { inboxes }
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.inboxes.len()
    }

    /// Whether there are no workers (never: there is at least one).
    pub fn is_empty(&self) -> bool {
        self.inboxes.is_empty()
    }

    /// The inbox of worker `i`.
    pub fn get(&self, i: usize) -> &Arc<Inbox> {
        &self.inboxes[i % self.inboxes.len()]
    }

    /// Which worker writes `key`. Stable for the life of the process.
    pub fn route(&self, key: &CallStatusKey) -> usize {
        let mut hasher = std::hash::DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % self.inboxes.len() as u64) as usize
    }

    /// The rows waiting for the database: how many, and how long the oldest has waited.
    pub fn backlog(&self, now: Instant) -> Backlog {
        let mut backlog = Backlog::default();
        for inbox in self.inboxes.iter() {
            let mailbox = inbox.lock();
            backlog.rows += mailbox.len();
            if let Some(arrived) = mailbox.oldest_arrival() {
                backlog.oldest = backlog.oldest.max(now.saturating_duration_since(arrived));
            }
        }
        backlog
    }
}

/// A look at the rows waiting for the database (see [`Inboxes::backlog`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Rows waiting, over all workers.
    pub rows: usize,
    /// How long the oldest of them has waited: the stored statistics are at most this far
    /// behind what the agents sent (zero when nothing waits).
    pub oldest: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(port: u16) -> CallStatusRow {
        CallStatusRow {
            modid: 1,
            cmdid: 1,
            ip: 1,
            port,
            caller: 1,
            succ_cnt: 0,
            err_cnt: 0,
            ts: 0,
            overload: false,
        }
    }

    #[test]
    fn a_key_always_goes_to_the_same_worker_and_keys_spread() {
        let stats = Arc::new(ReporterStats::default());
        let inboxes = Inboxes::new(3, 10, 10, &stats);
        let mut used = [0usize; 3];
        for port in 1..=300 {
            let key = row(port).key();
            let worker = inboxes.route(&key);
            assert_eq!(worker, inboxes.route(&key));
            used[worker] += 1;
        }
        assert!(used.iter().all(|&n| n > 50), "{used:?}");
    }

    #[tokio::test]
    async fn delivery_counts_and_wakes_the_worker() {
        let stats = Arc::new(ReporterStats::default());
        let inbox = Inbox::new(2, 10, stats.clone());
        let now = Instant::now();
        inbox.deliver(&[row(1), row(1), row(2), row(3)], now);
        // Woken by the first delivery: the permit is stored until the worker waits.
        tokio::time::timeout(Duration::from_secs(5), inbox.woken())
            .await
            .expect("worker woken");
        assert_eq!(ReporterStats::get(&stats.coalesced), 1);
        assert_eq!(ReporterStats::get(&stats.dropped_over_cap), 1);
        assert_eq!(ReporterStats::get(&stats.pending_rows), 2);
        assert_eq!(ReporterStats::get(&stats.max_pending_rows), 2);
        let mut chunk = Chunk::default();
        inbox.take_chunk(&mut chunk);
        inbox.written(&chunk);
        assert_eq!(ReporterStats::get(&stats.rows_written), 2);
        assert_eq!(ReporterStats::get(&stats.pending_rows), 0);
    }
}
