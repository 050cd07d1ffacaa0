//! The reporter's counters, shared by every task as relaxed atomics (they are for people and
//! tests, not for decisions), and their one-line text form for logs.
//!
//! Once nothing is in flight, the row counters balance:
//! `rows_received = rows_written + coalesced + dropped_bad_row + dropped_over_cap + pending_rows`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Service-wide counters and gauges.
#[derive(Debug, Default)]
pub struct ReporterStats {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused because `maxConn` were open.
    pub connections_refused: AtomicU64,
    /// Connections closed for a protocol error (bad length, unknown msgid, undecodable body, a
    /// message other than `ReportStatusRequest`).
    pub protocol_errors: AtomicU64,
    /// `ReportStatusRequest` frames received.
    pub frames: AtomicU64,
    /// Rows (`HostCallResult`s) received.
    pub rows_received: AtomicU64,
    /// Rows written to the database.
    pub rows_written: AtomicU64,
    /// Successful writes (one multi-row upsert each).
    pub batches: AtomicU64,
    /// Rows replaced by a newer row of the same key before they were written.
    pub coalesced: AtomicU64,
    /// Rows dropped because a value did not fit the table (a port outside 1..=65535).
    pub dropped_bad_row: AtomicU64,
    /// Rows dropped because a worker held `max_pending_keys` keys and a new key arrived (the
    /// oldest pending key goes).
    pub dropped_over_cap: AtomicU64,
    /// Database operations that failed (opening the store, writes).
    pub db_errors: AtomicU64,
    /// Rows waiting for the database now, over all workers (one per distinct key).
    pub pending_rows: AtomicU64,
    /// The most rows that were waiting at any moment since start. Each worker moves its share
    /// of the gauge under its own lock; with several workers this can read up to one chunk
    /// (`batch_rows`) high, when a write settles on one worker while rows arrive on another.
    pub max_pending_rows: AtomicU64,
}

impl ReporterStats {
    /// Adds one.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Subtracts `n`.
    pub fn sub(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Moves the `pending_rows` gauge by `delta` and raises `max_pending_rows` to match.
    pub fn pending_changed(&self, delta: i64) {
        if delta > 0 {
            let now = self
                .pending_rows
                .fetch_add(delta.unsigned_abs(), Ordering::Relaxed)
                + delta.unsigned_abs();
            self.max_pending_rows.fetch_max(now, Ordering::Relaxed);
        } else if delta < 0 {
            self.pending_rows
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// The monotonic counters, to tell whether anything happened between two looks.
    pub fn activity(&self) -> [u64; 8] {
        let g = ReporterStats::get;
        [
            g(&self.connections_total),
            g(&self.protocol_errors),
            g(&self.frames),
            g(&self.rows_written),
            g(&self.dropped_bad_row),
            g(&self.dropped_over_cap),
            g(&self.db_errors),
            g(&self.connections_refused),
        ]
    }
}

impl fmt::Display for ReporterStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = ReporterStats::get;
        write!(
            f,
            "connections={} connections_total={} refused={} protocol_errors={} frames={} \
             rows_received={} rows_written={} batches={} coalesced={} dropped_bad_row={} \
             dropped_over_cap={} db_errors={} pending_rows={} max_pending_rows={}",
            g(&self.connections),
            g(&self.connections_total),
            g(&self.connections_refused),
            g(&self.protocol_errors),
            g(&self.frames),
            g(&self.rows_received),
            g(&self.rows_written),
            g(&self.batches),
            g(&self.coalesced),
            g(&self.dropped_bad_row),
            g(&self.dropped_over_cap),
            g(&self.db_errors),
            g(&self.pending_rows),
            g(&self.max_pending_rows),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_gauge_keeps_its_high_water_mark() {
        let stats = ReporterStats::default();
        stats.pending_changed(5);
        stats.pending_changed(-3);
        stats.pending_changed(2);
        assert_eq!(ReporterStats::get(&stats.pending_rows), 4);
        assert_eq!(ReporterStats::get(&stats.max_pending_rows), 5);
        assert!(
            stats
                .to_string()
                .contains("pending_rows=4 max_pending_rows=5")
        );
    }
}
