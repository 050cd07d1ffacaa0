//! The reporter's counters, shared by every task as relaxed atomics (they are for people and
//! tests, not for decisions), their one-line text form for logs, and their metrics
//! ([`ReporterStats::metrics`]: the atomics read at scrape time through [`FIELDS`], and the
//! histogram of write times).
//!
//! Once nothing is in flight, the row counters balance:
//! `rows_received = rows_written + coalesced + dropped_bad_row + dropped_over_cap + pending_rows
//! + rows_refused` (the rows of refused frames, over every reason).

use crate::report::RefusedReason;
use lars_service::admission::HygieneCounters;
use lars_service::metrics::prometheus_client::metrics::histogram::{
    Histogram, exponential_buckets,
};
use lars_service::metrics::{AtomicsCollector, Field, ServiceMetrics};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Service-wide counters and gauges.
#[derive(Debug)]
pub struct ReporterStats {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused because `maxConn` were open.
    pub connections_refused: AtomicU64,
    /// Refusals and closes by the connection hygiene rules.
    pub hygiene: HygieneCounters,
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
    /// Connections closed at once because the peer is not in `[reactor] allowed_peers`.
    pub peers_refused: AtomicU64,
    /// Rows of frames refused because their `caller` was not the sending peer.
    pub refused_caller_mismatch: AtomicU64,
    /// Rows of frames refused because their `ts` was too far ahead of the reporter's clock.
    pub refused_future_ts: AtomicU64,
    /// Rows of frames refused because they carried more than `max_results_per_frame` results.
    pub refused_too_many_results: AtomicU64,
    /// Rows of frames refused because their `modid` or `cmdid` was negative (no route's is).
    pub refused_not_a_route: AtomicU64,
    /// How long each successful write (one multi-row upsert) took.
    pub write_seconds: Histogram,
}

impl Default for ReporterStats {
    fn default() -> Self {
        ReporterStats {
            connections: AtomicU64::default(),
            connections_total: AtomicU64::default(),
            connections_refused: AtomicU64::default(),
            hygiene: HygieneCounters::default(),
            protocol_errors: AtomicU64::default(),
            frames: AtomicU64::default(),
            rows_received: AtomicU64::default(),
            rows_written: AtomicU64::default(),
            batches: AtomicU64::default(),
            coalesced: AtomicU64::default(),
            dropped_bad_row: AtomicU64::default(),
            dropped_over_cap: AtomicU64::default(),
            db_errors: AtomicU64::default(),
            pending_rows: AtomicU64::default(),
            max_pending_rows: AtomicU64::default(),
            peers_refused: AtomicU64::default(),
            refused_caller_mismatch: AtomicU64::default(),
            refused_future_ts: AtomicU64::default(),
            refused_too_many_results: AtomicU64::default(),
            refused_not_a_route: AtomicU64::default(),
            // 0.1 ms to about 3 s: a small SQLite upsert to a 10,000-row chunk on a busy MySQL.
            write_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        }
    }
}

/// Reads one atomic of [`ReporterStats`] for [`FIELDS`].
macro_rules! read {
    ($field:ident) => {
        |s: &ReporterStats| s.$field.load(Ordering::Relaxed)
    };
}

/// Every atomic of [`ReporterStats`] as it is exposed.
pub static FIELDS: [Field<ReporterStats>; 24] = [
    Field::gauge(
        "lars_reporter_connections",
        "Agent connections open.",
        read!(connections),
    ),
    Field::counter(
        "lars_reporter_connections_accepted_total",
        "Agent connections accepted.",
        read!(connections_total),
    ),
    Field::counter(
        "lars_reporter_connections_refused_total",
        "Connections closed at once because maxConn were open and none was idle enough to evict.",
        read!(connections_refused),
    ),
    Field::counter(
        "lars_reporter_connections_peer_refused_total",
        "Connections closed at once because their peer held max_conn_per_peer that sent frames.",
        |s: &ReporterStats| s.hygiene.peer_refused.load(Ordering::Relaxed),
    ),
    Field::counter(
        "lars_reporter_connections_closed_total",
        "Connections closed, by reason.",
        |s: &ReporterStats| s.hygiene.idle.load(Ordering::Relaxed),
    )
    .labelled(&[("reason", "idle")]),
    Field::counter(
        "lars_reporter_connections_closed_total",
        "Connections closed, by reason.",
        |s: &ReporterStats| s.hygiene.frame_timeout.load(Ordering::Relaxed),
    )
    .labelled(&[("reason", "frame_timeout")]),
    Field::counter(
        "lars_reporter_connections_closed_total",
        "Connections closed, by reason.",
        |s: &ReporterStats| s.hygiene.evicted.load(Ordering::Relaxed),
    )
    .labelled(&[("reason", "evicted")]),
    Field::counter(
        "lars_reporter_connections_closed_total",
        "Connections closed, by reason.",
        |s: &ReporterStats| s.hygiene.pending_bytes.load(Ordering::Relaxed),
    )
    .labelled(&[("reason", "pending_bytes")]),
    Field::counter(
        "lars_reporter_protocol_errors_total",
        "Connections closed for a protocol error.",
        read!(protocol_errors),
    ),
    Field::counter(
        "lars_reporter_frames_total",
        "ReportStatusRequest frames received.",
        read!(frames),
    ),
    Field::counter(
        "lars_reporter_rows_received_total",
        "Rows (HostCallResults) received.",
        read!(rows_received),
    ),
    Field::counter(
        "lars_reporter_rows_written_total",
        "Rows written to the store.",
        read!(rows_written),
    ),
    Field::counter(
        "lars_reporter_writes_total",
        "Multi-row upserts that succeeded.",
        read!(batches),
    ),
    Field::counter(
        "lars_reporter_rows_coalesced_total",
        "Rows replaced by a newer row of their key before being written.",
        read!(coalesced),
    ),
    Field::counter(
        "lars_reporter_rows_evicted_total",
        "Pending rows dropped because a worker held max_pending_keys keys.",
        read!(dropped_over_cap),
    ),
    Field::counter(
        "lars_reporter_rows_bad_total",
        "Rows dropped because a value does not fit the table.",
        read!(dropped_bad_row),
    ),
    Field::counter(
        "lars_reporter_db_errors_total",
        "Store operations that failed.",
        read!(db_errors),
    ),
    Field::gauge(
        "lars_reporter_pending_rows",
        "Rows waiting for the store.",
        read!(pending_rows),
    ),
    Field::gauge(
        "lars_reporter_max_pending_rows",
        "Most rows waiting at any moment since start.",
        read!(max_pending_rows),
    ),
    Field::counter(
        "lars_reporter_peers_refused_total",
        "Connections closed at once because the peer is not in allowed_peers.",
        read!(peers_refused),
    ),
    Field::counter(
        "lars_reporter_rows_refused_total",
        "Rows of frames refused before the store, by reason.",
        read!(refused_caller_mismatch),
    )
    .labelled(&[("reason", "caller_mismatch")]),
    Field::counter(
        "lars_reporter_rows_refused_total",
        "Rows of frames refused before the store, by reason.",
        read!(refused_future_ts),
    )
    .labelled(&[("reason", "future_ts")]),
    Field::counter(
        "lars_reporter_rows_refused_total",
        "Rows of frames refused before the store, by reason.",
        read!(refused_too_many_results),
    )
    .labelled(&[("reason", "too_many_results")]),
    Field::counter(
        "lars_reporter_rows_refused_total",
        "Rows of frames refused before the store, by reason.",
        read!(refused_not_a_route),
    )
    .labelled(&[("reason", "not_a_route")]),
];

impl ReporterStats {
    /// A registry exposing every counter.
    pub fn metrics(self: &Arc<Self>) -> ServiceMetrics {
        let stats = self.clone();
        ServiceMetrics::new(|registry| {
            registry.register(
                "lars_reporter_write_seconds",
                "Time of one successful multi-row upsert.",
                stats.write_seconds.clone(),
            );
            registry.register_collector(Box::new(AtomicsCollector::new(stats, &FIELDS)));
        })
    }

    /// Records how long a successful write took.
    pub fn wrote_in(&self, took: Duration) {
        self.write_seconds.observe(took.as_secs_f64());
    }

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

    /// The counter of rows refused for `reason`.
    pub fn refused(&self, reason: RefusedReason) -> &AtomicU64 {
        match reason {
            RefusedReason::CallerMismatch => &self.refused_caller_mismatch,
            RefusedReason::FutureTs => &self.refused_future_ts,
            RefusedReason::TooManyResults => &self.refused_too_many_results,
            RefusedReason::NotARoute => &self.refused_not_a_route,
        }
    }

    /// Rows refused over every reason.
    pub fn rows_refused(&self) -> u64 {
        let g = ReporterStats::get;
        g(&self.refused_caller_mismatch)
            + g(&self.refused_future_ts)
            + g(&self.refused_too_many_results)
            + g(&self.refused_not_a_route)
    }

    /// The monotonic counters, to tell whether anything happened between two looks.
    pub fn activity(&self) -> [u64; 10] {
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
            g(&self.peers_refused),
            self.rows_refused(),
        ]
    }
}

impl fmt::Display for ReporterStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = ReporterStats::get;
        write!(
            f,
            "connections={} connections_total={} refused={} peer_refused={} idle_closed={} \
             frame_timeout_closed={} evicted={} pending_closed={} protocol_errors={} frames={} \
             rows_received={} rows_written={} batches={} coalesced={} dropped_bad_row={} \
             dropped_over_cap={} db_errors={} pending_rows={} max_pending_rows={} \
             peers_refused={} rows_refused={}",
            g(&self.connections),
            g(&self.connections_total),
            g(&self.connections_refused),
            g(&self.hygiene.peer_refused),
            g(&self.hygiene.idle),
            g(&self.hygiene.frame_timeout),
            g(&self.hygiene.evicted),
            g(&self.hygiene.pending_bytes),
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
            g(&self.peers_refused),
            self.rows_refused(),
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
