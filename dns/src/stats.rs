//! The dns service's counters, shared by every task as relaxed atomics (they are for people, not
//! for decisions), and their one-line text form for logs and tests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Service-wide counters and gauges.
#[derive(Debug, Default)]
pub struct DnsStats {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused because `maxConn` were open.
    pub connections_refused: AtomicU64,
    /// Connections closed for a protocol error (bad length, unknown msgid, undecodable body).
    pub protocol_errors: AtomicU64,
    /// Connections closed because a push found their write queue full (the agent stopped
    /// reading).
    pub slow_closed: AtomicU64,
    /// Connections whose requests are not being read now, because the answer at hand waits for
    /// room in their write queue: an agent asking faster than it reads (for a moment), or one
    /// that does not read at all (until a push finds its queue full).
    pub paused: AtomicU64,
    /// `GetRouteRequest`s answered.
    pub requests: AtomicU64,
    /// Subscriptions held now, over all connections.
    pub subscriptions: AtomicU64,
    /// Route change frames pushed to subscribers.
    pub pushes: AtomicU64,
    /// `RouteVersion` polls that reached the database.
    pub polls: AtomicU64,
    /// Route snapshots loaded (full reloads and version changes).
    pub reloads: AtomicU64,
    /// Database operations that failed.
    pub db_errors: AtomicU64,
    /// The `RouteVersion` of the snapshot being served.
    pub version: AtomicU64,
    /// Routes in the snapshot being served.
    pub routes: AtomicU64,
}

impl DnsStats {
    /// Adds one.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts `n`.
    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

impl fmt::Display for DnsStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = DnsStats::get;
        write!(
            f,
            "connections={} connections_total={} refused={} protocol_errors={} slow_closed={} \
             paused={} requests={} subscriptions={} pushes={} polls={} reloads={} db_errors={} \
             version={} routes={}",
            g(&self.connections),
            g(&self.connections_total),
            g(&self.connections_refused),
            g(&self.protocol_errors),
            g(&self.slow_closed),
            g(&self.paused),
            g(&self.requests),
            g(&self.subscriptions),
            g(&self.pushes),
            g(&self.polls),
            g(&self.reloads),
            g(&self.db_errors),
            g(&self.version),
            g(&self.routes),
        )
    }
}
