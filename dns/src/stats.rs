//! The dns service's counters, shared by every task as relaxed atomics (they are for people, not
//! for decisions), their one-line text form for logs and tests, and their metrics
//! ([`DnsStats::metrics`]: the atomics read at scrape time through [`FIELDS`], and the histogram
//! of reload times).

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
pub struct DnsStats {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused because `maxConn` were open.
    pub connections_refused: AtomicU64,
    /// Refusals and closes by the connection hygiene rules.
    pub hygiene: HygieneCounters,
    /// Connections closed by the agent.
    pub peer_closed: AtomicU64,
    /// Connections closed because reading failed (reset and the like).
    pub read_errors: AtomicU64,
    /// Connections closed because writing failed.
    pub write_errors: AtomicU64,
    /// Connections closed for a protocol error (bad length, unknown msgid, undecodable body).
    pub protocol_errors: AtomicU64,
    /// Connections closed because the agent read nothing for the stalled-reader timeout while
    /// frames waited for it.
    pub slow_closed: AtomicU64,
    /// Connections whose requests are not being read now, because the answer at hand waits for
    /// room in their write queue: an agent asking faster than it reads (for a moment), or one
    /// that does not read at all (until the stalled-reader timeout closes it).
    pub paused: AtomicU64,
    /// Keys owed now, over all connections: changed while their connection's write queue had no
    /// room, to be written from the newest snapshot once it has. At most one per subscription.
    pub owed_keys: AtomicU64,
    /// Owed keys written (catch-up pushes; also counted in `pushes`).
    pub caught_up: AtomicU64,
    /// Times a connection missed change batches (broadcast lag) and owed every subscription.
    pub lags: AtomicU64,
    /// Connections cut at shutdown because their agent did not take its last frames in time.
    pub drain_cut: AtomicU64,
    /// `GetRouteRequest`s read.
    pub requests_received: AtomicU64,
    /// `GetRouteRequest`s answered.
    pub requests: AtomicU64,
    /// Subscriptions held now, over all connections.
    pub subscriptions: AtomicU64,
    /// Requests answered but not subscribed: their connection held
    /// `max_subscriptions_per_connection` already.
    pub subscriptions_refused: AtomicU64,
    /// Requests for a key with a negative modid or cmdid (no route has one): answered empty,
    /// never subscribed.
    pub requests_not_a_route: AtomicU64,
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
    /// Routes held back by push-empty protection, counted each time one starts being held.
    pub push_empty_held_total: AtomicU64,
    /// Routes held back now: served with their last hosts though the store has none for them.
    pub push_empty_held: AtomicU64,
    /// Connections closed at once because the peer is not in `[reactor] allowed_peers`.
    pub peers_refused: AtomicU64,
    /// How long each load of every route took (reading the store and building the snapshot).
    pub reload_seconds: Histogram,
}

impl Default for DnsStats {
    fn default() -> Self {
        DnsStats {
            connections: AtomicU64::default(),
            connections_total: AtomicU64::default(),
            connections_refused: AtomicU64::default(),
            hygiene: HygieneCounters::default(),
            peer_closed: AtomicU64::default(),
            read_errors: AtomicU64::default(),
            write_errors: AtomicU64::default(),
            protocol_errors: AtomicU64::default(),
            slow_closed: AtomicU64::default(),
            paused: AtomicU64::default(),
            owed_keys: AtomicU64::default(),
            caught_up: AtomicU64::default(),
            lags: AtomicU64::default(),
            drain_cut: AtomicU64::default(),
            requests_received: AtomicU64::default(),
            requests: AtomicU64::default(),
            subscriptions: AtomicU64::default(),
            subscriptions_refused: AtomicU64::default(),
            requests_not_a_route: AtomicU64::default(),
            pushes: AtomicU64::default(),
            polls: AtomicU64::default(),
            reloads: AtomicU64::default(),
            db_errors: AtomicU64::default(),
            version: AtomicU64::default(),
            routes: AtomicU64::default(),
            push_empty_held_total: AtomicU64::default(),
            push_empty_held: AtomicU64::default(),
            peers_refused: AtomicU64::default(),
            // 1 ms to about 33 s: a few routes from SQLite to a million from a remote MySQL.
            reload_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        }
    }
}

/// Reads one atomic of [`DnsStats`] for [`FIELDS`].
macro_rules! read {
    ($field:ident) => {
        |s: &DnsStats| s.$field.load(Ordering::Relaxed)
    };
}

/// Every atomic of [`DnsStats`] as it is exposed.
pub static FIELDS: [Field<DnsStats>; 32] = [
    Field::gauge(
        "lars_dns_connections",
        "Agent connections open.",
        read!(connections),
    ),
    Field::counter(
        "lars_dns_connections_accepted_total",
        "Agent connections accepted.",
        read!(connections_total),
    ),
    Field::counter(
        "lars_dns_connections_refused_total",
        "Connections closed at once because maxConn were open and none was idle enough to evict.",
        read!(connections_refused),
    ),
    Field::counter(
        "lars_dns_connections_peer_refused_total",
        "Connections closed at once because their peer held max_conn_per_peer that sent frames.",
        |s: &DnsStats| s.hygiene.peer_refused.load(Ordering::Relaxed),
    ),
    Field::counter(
        "lars_dns_connections_closed_total",
        "Connections closed, by reason.",
        |s: &DnsStats| s.hygiene.idle.load(Ordering::Relaxed),
    )
    .labelled(&[("reason", "idle")]),
    Field::counter(
        "lars_dns_connections_closed_total",
        "Connections closed, by reason.",
        |s: &DnsStats| s.hygiene.frame_timeout.load(Ordering::Relaxed),
    )
    .labelled(&[("reason", "frame_timeout")]),
    Field::counter(
        "lars_dns_connections_closed_total",
        "Connections closed, by reason.",
        |s: &DnsStats| s.hygiene.evicted.load(Ordering::Relaxed),
    )
    .labelled(&[("reason", "evicted")]),
    Field::counter(
        "lars_dns_connections_closed_total",
        "Connections closed, by reason.",
        |s: &DnsStats| s.hygiene.pending_bytes.load(Ordering::Relaxed),
    )
    .labelled(&[("reason", "pending_bytes")]),
    Field::counter(
        "lars_dns_connections_closed_total",
        "Connections closed, by reason.",
        read!(peer_closed),
    )
    .labelled(&[("reason", "peer")]),
    Field::counter(
        "lars_dns_connections_closed_total",
        "Connections closed, by reason.",
        read!(read_errors),
    )
    .labelled(&[("reason", "read_error")]),
    Field::counter(
        "lars_dns_connections_closed_total",
        "Connections closed, by reason.",
        read!(write_errors),
    )
    .labelled(&[("reason", "write_error")]),
    Field::counter(
        "lars_dns_connections_closed_total",
        "Connections closed, by reason.",
        read!(protocol_errors),
    )
    .labelled(&[("reason", "protocol_error")]),
    Field::counter(
        "lars_dns_connections_closed_total",
        "Connections closed, by reason.",
        read!(slow_closed),
    )
    .labelled(&[("reason", "slow_reader")]),
    Field::gauge(
        "lars_dns_connections_paused",
        "Connections not read from until their answers have room.",
        read!(paused),
    ),
    Field::gauge(
        "lars_dns_owed_keys",
        "Subscribed keys changed while their connection's write queue was full, to be written once it has room.",
        read!(owed_keys),
    ),
    Field::counter(
        "lars_dns_catch_up_pushes_total",
        "Owed keys written from the newest snapshot (also in lars_dns_pushes_total).",
        read!(caught_up),
    ),
    Field::counter(
        "lars_dns_change_lags_total",
        "Times a connection missed route change batches and owed every subscription.",
        read!(lags),
    ),
    Field::counter(
        "lars_dns_shutdown_cut_total",
        "Connections cut at shutdown because the agent did not take its last frames in time.",
        read!(drain_cut),
    ),
    Field::counter(
        "lars_dns_requests_total",
        "GetRouteRequests read.",
        read!(requests_received),
    ),
    Field::counter(
        "lars_dns_answers_total",
        "GetRouteRequests answered.",
        read!(requests),
    ),
    Field::gauge(
        "lars_dns_subscriptions",
        "Subscriptions held, over all connections.",
        read!(subscriptions),
    ),
    Field::counter(
        "lars_dns_subscriptions_refused_total",
        "GetRouteRequests answered but not subscribed: the connection held \
         max_subscriptions_per_connection.",
        read!(subscriptions_refused),
    ),
    Field::counter(
        "lars_dns_requests_not_a_route_total",
        "GetRouteRequests for a negative modid or cmdid, which no route has: answered empty, \
         not subscribed.",
        read!(requests_not_a_route),
    ),
    Field::counter(
        "lars_dns_pushes_total",
        "Route changes pushed to subscribers.",
        read!(pushes),
    ),
    Field::counter(
        "lars_dns_polls_total",
        "RouteVersion polls that reached the store.",
        read!(polls),
    ),
    Field::counter(
        "lars_dns_reloads_total",
        "Route snapshots loaded.",
        read!(reloads),
    ),
    Field::counter(
        "lars_dns_db_errors_total",
        "Store operations that failed.",
        read!(db_errors),
    ),
    Field::gauge(
        "lars_dns_snapshot_version",
        "RouteVersion of the snapshot served.",
        read!(version),
    ),
    Field::gauge(
        "lars_dns_snapshot_routes",
        "Routes in the snapshot served.",
        read!(routes),
    ),
    Field::counter(
        "lars_dns_push_empty_held_total",
        "Routes whose loss of every host was held back (no route edit accounted for it).",
        read!(push_empty_held_total),
    ),
    Field::gauge(
        "lars_dns_push_empty_held_routes",
        "Routes held back now, served with their last hosts.",
        read!(push_empty_held),
    ),
    Field::counter(
        "lars_dns_peers_refused_total",
        "Connections closed at once because the peer is not in allowed_peers.",
        read!(peers_refused),
    ),
];

impl DnsStats {
    /// A registry exposing every counter.
    pub fn metrics(self: &Arc<Self>) -> ServiceMetrics {
        let stats = self.clone();
        ServiceMetrics::new(|registry| {
            registry.register(
                "lars_dns_reload_seconds",
                "Time to load every route into a snapshot.",
                stats.reload_seconds.clone(),
            );
            registry.register_collector(Box::new(AtomicsCollector::new(stats, &FIELDS)));
        })
    }

    /// Records how long a load of every route took.
    pub fn reloaded_in(&self, took: Duration) {
        self.reload_seconds.observe(took.as_secs_f64());
    }

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
            "connections={} connections_total={} refused={} peer_refused={} idle_closed={} \
             frame_timeout_closed={} evicted={} pending_closed={} protocol_errors={} slow_closed={} \
             paused={} owed_keys={} caught_up={} lags={} drain_cut={} requests={} subscriptions={} \
             subscriptions_refused={} pushes={} polls={} reloads={} db_errors={} version={} routes={} \
             push_empty_held={} peers_refused={}",
            g(&self.connections),
            g(&self.connections_total),
            g(&self.connections_refused),
            g(&self.hygiene.peer_refused),
            g(&self.hygiene.idle),
            g(&self.hygiene.frame_timeout),
            g(&self.hygiene.evicted),
            g(&self.hygiene.pending_bytes),
            g(&self.protocol_errors),
            g(&self.slow_closed),
            g(&self.paused),
            g(&self.owed_keys),
            g(&self.caught_up),
            g(&self.lags),
            g(&self.drain_cut),
            g(&self.requests),
            g(&self.subscriptions),
            g(&self.subscriptions_refused),
            g(&self.pushes),
            g(&self.polls),
            g(&self.reloads),
            g(&self.db_errors),
            g(&self.version),
            g(&self.routes),
            g(&self.push_empty_held),
            g(&self.peers_refused),
        )
    }
}
