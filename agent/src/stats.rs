//! The agent's counters, readable by an operator from the running agent: per worker (requests by
//! type, replies by retcode, drops by reason, ring drops, routes and hosts), per uplink (up or
//! down, reconnects, fail-overs, liveness failures by reason, messages, drops, the dns uplink's
//! inbox overflow) and for the route cache (routes loaded, writes, write failures). Each value
//! has exactly one writer thread and is a relaxed atomic, so counting costs a load and a store
//! (no locked instruction) and reading never stops the writer. [`AgentStats`] is a
//! `prometheus-client` collector that reads them at scrape time ([`AgentStats::metrics`]), served
//! by the metrics endpoint (`admin`); the names and labels are the tables `PER_WORKER`,
//! `PER_UPLINK` and `PER_CACHE`.

use crate::uplink::liveness::LivenessFailure;
use lars_service::metrics::prometheus_client::collector::Collector;
use lars_service::metrics::prometheus_client::encoding::DescriptorEncoder;
use lars_service::metrics::{Kind, ServiceMetrics, encode_family, encode_one};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// A count that only grows, with one writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`. One writer per counter: a load and a store, no locked instruction.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Reads it.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that is set (held routes, up or down), with one writer.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets it: a plain store.
    #[inline]
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Reads it.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A name set once by its writer (e.g. which I/O driver a worker runs), exposed as a label of a
/// gauge at 1; nothing is exposed until it is set.
#[derive(Debug, Default)]
pub struct NameLabel(OnceLock<&'static str>);

impl NameLabel {
    /// Sets the name; a second call keeps the first.
    pub fn set(&self, name: &'static str) {
        let _ = self.0.set(name);
    }

    /// The name, once set.
    pub fn get(&self) -> Option<&'static str> {
        self.0.get().copied()
    }
}

/// Why a datagram was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than the 8-byte header.
    Short,
    /// Length not `8 + msglen`, or a negative or oversized `msglen`.
    BadLength,
    /// A message id outside 1..=11.
    UnknownMsgId,
    /// A valid id that callers do not send to the agent (1, 2, 3, 5, 8, 10).
    UnexpectedMsgId,
    /// A body that does not decode.
    BadBody,
    /// A report naming a port outside 0..=65535.
    BadHost,
}

impl DropReason {
    /// Every reason, in `WorkerStats::drops` order.
    pub const ALL: [DropReason; 6] = [
        DropReason::Short,
        DropReason::BadLength,
        DropReason::UnknownMsgId,
        DropReason::UnexpectedMsgId,
        DropReason::BadBody,
        DropReason::BadHost,
    ];

    /// The label used in the stats.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Short => "short",
            DropReason::BadLength => "bad_length",
            DropReason::UnknownMsgId => "unknown_msgid",
            DropReason::UnexpectedMsgId => "unexpected_msgid",
            DropReason::BadBody => "bad_body",
            DropReason::BadHost => "bad_host",
        }
    }
}

/// One worker's counters.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// The I/O driver the worker runs ("io-uring", "portable"), set once it runs.
    pub driver: NameLabel,
    /// The CPU the worker is pinned to.
    pub core: Gauge,
    /// Shards the worker serves.
    pub shards: Gauge,
    /// `GetHostRequest`s answered.
    pub get_host: Counter,
    /// `ReportRequest`s taken.
    pub report: Counter,
    /// `API_GetRouteRequest`s answered.
    pub get_route: Counter,
    /// `GetHostResponse`s by retcode: SUCC, OVERLOAD, SYSTEM_ERROR, NOEXIST.
    pub replies: [Counter; 4],
    /// Datagrams dropped, by [`DropReason`] (in [`DropReason::ALL`] order).
    pub drops: [Counter; 6],
    /// Receive errors from the socket.
    pub recv_errors: Counter,
    /// Replies the socket would not send.
    pub send_errors: Counter,
    /// Dns requests dropped because the ring to the dns uplink was full.
    pub dns_ring_drops: Counter,
    /// Statistics dropped because the ring to the report uplink was full.
    pub report_ring_drops: Counter,
    /// Route updates applied from dns.
    pub route_updates: Counter,
    /// Hosts moved to the overload list.
    pub overloaded: Counter,
    /// Hosts moved back to the idle list.
    pub recovered: Counter,
    /// Routes held now.
    pub routes: Gauge,
    /// Unknown keys answered NOEXIST without being held: their shard's table was at its cap.
    pub routes_refused: Counter,
    /// Requests and reports for a negative modid or cmdid, which no route has: answered NOEXIST
    /// (reports ignored) without holding the key or asking dns.
    pub requests_not_a_route: Counter,
    /// Routes evicted because no caller asked for them recently.
    pub routes_evicted: Counter,
    /// Hosts held now.
    pub hosts: Gauge,
    /// Routes served from the route cache that dns has not answered yet.
    pub stale_routes: Gauge,
    /// Routes that entered panic mode.
    pub panic_entered: Counter,
    /// Routes that left panic mode.
    pub panic_left: Counter,
    /// Routes push-empty protection held back (an unaccounted empty dns answer not applied),
    /// counted when the hold is decided.
    pub push_empty_held: Counter,
    /// Routes serving their last hosts now against an unaccounted empty dns answer (waiting for
    /// the rule, or held back).
    pub push_empty_kept: Gauge,
    /// Fast path: route views sent (answers to `RouteViewRequest`s and to report batches whose
    /// route's version moved).
    pub views_served: Counter,
    /// Fast path: answers that said the caller's view is current (the short ack).
    pub views_unchanged: Counter,
    /// Fast path: report batches applied.
    pub batches: Counter,
    /// Fast path: results the applied report batches carried.
    pub batch_results: Counter,
    /// Fast path: report batches for a route the shard does not hold (answered NOEXIST).
    pub batch_unknown_route: Counter,
    /// Fast path: datagrams with a fast-path id dropped unanswered because `[agent] fast_path` is
    /// off (the callers fall back to the classic protocol).
    pub fast_path_refused: Counter,
    /// Fast path: fast-path datagrams dropped as malformed (a body that does not decode, a bad
    /// host, a run of zero results); also counted by drop reason.
    pub fast_path_malformed: Counter,
}

/// The route cache's counters (see [`crate::cache`]): `loaded` is written once by the thread
/// that starts the agent, before the cache writer runs; the others by the cache writer.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Routes loaded from the route cache at start.
    pub loaded: Counter,
    /// Route cache files written.
    pub writes: Counter,
    /// Route cache writes that failed.
    pub write_failures: Counter,
    /// Routes in the route cache file last written.
    pub routes: Gauge,
}

impl WorkerStats {
    /// Counts a dropped datagram.
    #[inline]
    pub fn dropped(&self, reason: DropReason) {
        self.drops[reason as usize].inc();
    }

    /// Datagrams dropped for `reason`.
    pub fn drops_for(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }
}

/// One uplink's counters.
#[derive(Debug, Default)]
pub struct UplinkStats {
    /// 1 while connected.
    pub up: Gauge,
    /// Successful connections after the first.
    pub reconnects: Counter,
    /// Failed connection attempts and broken connections.
    pub failures: Counter,
    /// Messages sent.
    pub sent: Counter,
    /// Messages received.
    pub received: Counter,
    /// Messages for workers dropped because a worker's ring was full.
    pub worker_ring_drops: Counter,
    /// Received items that could not be used (bad host, unexpected message).
    pub rejected: Counter,
    /// Items held while disconnected (routes waiting to be re-requested or statistics waiting
    /// to be sent).
    pub pending: Gauge,
    /// Route updates in the dns uplink's inbox overflow: refused by a worker's full inbox,
    /// waiting for room in it.
    pub overflow: Gauge,
    /// Open connections called dead, by [`LivenessFailure`] (in [`LivenessFailure::ALL`]
    /// order).
    pub liveness_failures: [Counter; 2],
    /// Connections made to another address than the one before (see [`crate::uplink`]).
    pub failovers: Counter,
    /// Requests sent only to prove an idle peer alive.
    pub probes: Counter,
}

impl UplinkStats {
    /// Counts an open connection called dead.
    pub fn dead(&self, failure: LivenessFailure) {
        self.liveness_failures[failure as usize].inc();
    }

    /// Connections called dead for `failure`.
    pub fn dead_for(&self, failure: LivenessFailure) -> u64 {
        self.liveness_failures[failure as usize].get()
    }
}

/// Every counter of one agent.
#[derive(Debug)]
pub struct AgentStats {
    /// Per worker.
    pub workers: Vec<Arc<WorkerStats>>,
    /// The dns uplink.
    pub dns: Arc<UplinkStats>,
    /// The report uplink.
    pub report: Arc<UplinkStats>,
    /// The route cache.
    pub cache: Arc<CacheStats>,
}

impl AgentStats {
    /// Counters for `workers` workers.
    pub fn new(workers: usize) -> AgentStats {
        AgentStats {
            workers: (0..workers).map(|_| Arc::default()).collect(),
            dns: Arc::default(),
            report: Arc::default(),
            cache: Arc::default(),
        }
    }

    /// A registry exposing every counter, read at scrape time.
    pub fn metrics(self: &Arc<Self>) -> ServiceMetrics {
        let stats = self.clone();
        ServiceMetrics::new(|registry| registry.register_collector(Box::new(stats)))
    }

    /// The Prometheus text of every counter (what the endpoint serves).
    pub fn render(self: &Arc<Self>) -> String {
        self.metrics().render()
    }
}

/// How one per-worker metric reads a worker.
#[derive(Debug, Clone, Copy)]
pub enum WorkerValue {
    /// One sample per worker, `{worker="N"}`.
    Each(fn(&WorkerStats) -> u64),
    /// One sample at 1 per worker whose name is set, `{worker="N",LABEL="name"}`.
    Named(&'static str, fn(&WorkerStats) -> Option<&'static str>),
}

/// One per-worker metric: exposed name, help, kind and how it reads a worker. Adding a metric is
/// adding a line here (and, for a new value, its field in [`WorkerStats`]).
pub type PerWorker = (&'static str, &'static str, Kind, WorkerValue);

/// Every per-worker metric but the ones labelled by retcode and drop reason.
pub const PER_WORKER: &[PerWorker] = &[
    (
        "lars_agent_worker_driver",
        "The I/O driver the worker runs (1).",
        Kind::Gauge,
        WorkerValue::Named("driver", |w| w.driver.get()),
    ),
    (
        "lars_agent_worker_core",
        "CPU the worker is pinned to.",
        Kind::Gauge,
        WorkerValue::Each(|w| w.core.get()),
    ),
    (
        "lars_agent_worker_shards",
        "Shards served by the worker.",
        Kind::Gauge,
        WorkerValue::Each(|w| w.shards.get()),
    ),
    (
        "lars_agent_routes",
        "Routes held.",
        Kind::Gauge,
        WorkerValue::Each(|w| w.routes.get()),
    ),
    (
        "lars_agent_routes_refused_total",
        "Unknown keys answered NOEXIST without being held: the shard's table was at max_routes.",
        Kind::Counter,
        WorkerValue::Each(|w| w.routes_refused.get()),
    ),
    (
        "lars_agent_requests_not_a_route_total",
        "Requests and reports for a negative modid or cmdid, which no route has: answered \
         NOEXIST (reports ignored), never held or asked of dns.",
        Kind::Counter,
        WorkerValue::Each(|w| w.requests_not_a_route.get()),
    ),
    (
        "lars_agent_routes_evicted_total",
        "Routes evicted because no caller asked for them within their idle time.",
        Kind::Counter,
        WorkerValue::Each(|w| w.routes_evicted.get()),
    ),
    (
        "lars_agent_hosts",
        "Hosts held.",
        Kind::Gauge,
        WorkerValue::Each(|w| w.hosts.get()),
    ),
    (
        "lars_agent_routes_stale",
        "Routes served from the route cache that dns has not answered yet.",
        Kind::Gauge,
        WorkerValue::Each(|w| w.stale_routes.get()),
    ),
    (
        "lars_agent_panic_routes",
        "Routes in panic mode: picks spread over all of their hosts.",
        Kind::Gauge,
        WorkerValue::Each(|w| w.panic_entered.get().saturating_sub(w.panic_left.get())),
    ),
    (
        "lars_agent_panic_entered_total",
        "Routes that entered panic mode.",
        Kind::Counter,
        WorkerValue::Each(|w| w.panic_entered.get()),
    ),
    (
        "lars_agent_panic_left_total",
        "Routes that left panic mode.",
        Kind::Counter,
        WorkerValue::Each(|w| w.panic_left.get()),
    ),
    (
        "lars_agent_recv_errors_total",
        "Socket receive errors.",
        Kind::Counter,
        WorkerValue::Each(|w| w.recv_errors.get()),
    ),
    (
        "lars_agent_send_errors_total",
        "Replies not sent.",
        Kind::Counter,
        WorkerValue::Each(|w| w.send_errors.get()),
    ),
    (
        "lars_agent_dns_ring_drops_total",
        "Dns requests dropped on a full ring.",
        Kind::Counter,
        WorkerValue::Each(|w| w.dns_ring_drops.get()),
    ),
    (
        "lars_agent_report_ring_drops_total",
        "Statistics dropped on a full ring.",
        Kind::Counter,
        WorkerValue::Each(|w| w.report_ring_drops.get()),
    ),
    (
        "lars_agent_route_updates_total",
        "Route updates applied from dns.",
        Kind::Counter,
        WorkerValue::Each(|w| w.route_updates.get()),
    ),
    (
        "lars_agent_push_empty_held_total",
        "Routes held back from an empty dns answer no route edit accounts for.",
        Kind::Counter,
        WorkerValue::Each(|w| w.push_empty_held.get()),
    ),
    (
        "lars_agent_push_empty_kept_routes",
        "Routes serving their last hosts against an unaccounted empty dns answer.",
        Kind::Gauge,
        WorkerValue::Each(|w| w.push_empty_kept.get()),
    ),
    (
        "lars_agent_hosts_overloaded_total",
        "Hosts moved to the overload list.",
        Kind::Counter,
        WorkerValue::Each(|w| w.overloaded.get()),
    ),
    (
        "lars_agent_hosts_recovered_total",
        "Hosts moved back to the idle list.",
        Kind::Counter,
        WorkerValue::Each(|w| w.recovered.get()),
    ),
    (
        "lars_agent_get_host_total",
        "GetHostRequests answered.",
        Kind::Counter,
        WorkerValue::Each(|w| w.get_host.get()),
    ),
    (
        "lars_agent_report_total",
        "ReportRequests taken.",
        Kind::Counter,
        WorkerValue::Each(|w| w.report.get()),
    ),
    (
        "lars_agent_get_route_total",
        "API GetRouteRequests answered.",
        Kind::Counter,
        WorkerValue::Each(|w| w.get_route.get()),
    ),
    (
        "lars_agent_fast_views_served_total",
        "Fast path: route views sent (to view requests and to report batches that moved the version).",
        Kind::Counter,
        WorkerValue::Each(|w| w.views_served.get()),
    ),
    (
        "lars_agent_fast_views_unchanged_total",
        "Fast path: short acks (the caller's view was current).",
        Kind::Counter,
        WorkerValue::Each(|w| w.views_unchanged.get()),
    ),
    (
        "lars_agent_fast_batches_total",
        "Fast path: report batches applied.",
        Kind::Counter,
        WorkerValue::Each(|w| w.batches.get()),
    ),
    (
        "lars_agent_fast_batch_results_total",
        "Fast path: results carried by the applied report batches.",
        Kind::Counter,
        WorkerValue::Each(|w| w.batch_results.get()),
    ),
    (
        "lars_agent_fast_batch_unknown_route_total",
        "Fast path: report batches for a route the shard does not hold.",
        Kind::Counter,
        WorkerValue::Each(|w| w.batch_unknown_route.get()),
    ),
    (
        "lars_agent_fast_refused_total",
        "Fast path: fast-path datagrams left unanswered because fast_path is off.",
        Kind::Counter,
        WorkerValue::Each(|w| w.fast_path_refused.get()),
    ),
    (
        "lars_agent_fast_malformed_total",
        "Fast path: malformed fast-path datagrams dropped.",
        Kind::Counter,
        WorkerValue::Each(|w| w.fast_path_malformed.get()),
    ),
];

/// One route cache metric: exposed name, help, kind and how it reads the cache's counters.
pub type PerCache = (&'static str, &'static str, Kind, fn(&CacheStats) -> u64);

/// Every route cache metric.
pub const PER_CACHE: &[PerCache] = &[
    (
        "lars_agent_cache_loaded_routes_total",
        "Routes loaded from the route cache at start.",
        Kind::Counter,
        |c| c.loaded.get(),
    ),
    (
        "lars_agent_cache_writes_total",
        "Route cache files written.",
        Kind::Counter,
        |c| c.writes.get(),
    ),
    (
        "lars_agent_cache_write_failures_total",
        "Route cache writes that failed.",
        Kind::Counter,
        |c| c.write_failures.get(),
    ),
    (
        "lars_agent_cache_routes",
        "Routes in the route cache file last written.",
        Kind::Gauge,
        |c| c.routes.get(),
    ),
];

/// The retcode labels of [`WorkerStats::replies`], in its order.
const RETCODES: [&str; 4] = ["succ", "overload", "system_error", "noexist"];

/// One per-uplink metric: exposed name, help, kind and how it reads an uplink.
pub type PerUplink = (&'static str, &'static str, Kind, fn(&UplinkStats) -> u64);

/// Every per-uplink metric, `{uplink="dns"|"report"}`.
pub const PER_UPLINK: &[PerUplink] = &[
    (
        "lars_agent_uplink_up",
        "1 while the uplink is connected.",
        Kind::Gauge,
        |u| u.up.get(),
    ),
    (
        "lars_agent_uplink_reconnects_total",
        "Reconnections after the first connection.",
        Kind::Counter,
        |u| u.reconnects.get(),
    ),
    (
        "lars_agent_uplink_failures_total",
        "Failed connection attempts and broken connections.",
        Kind::Counter,
        |u| u.failures.get(),
    ),
    (
        "lars_agent_uplink_sent_total",
        "Messages sent.",
        Kind::Counter,
        |u| u.sent.get(),
    ),
    (
        "lars_agent_uplink_received_total",
        "Messages received.",
        Kind::Counter,
        |u| u.received.get(),
    ),
    (
        "lars_agent_uplink_worker_ring_drops_total",
        "Messages for workers dropped on a full ring.",
        Kind::Counter,
        |u| u.worker_ring_drops.get(),
    ),
    (
        "lars_agent_uplink_rejected_total",
        "Received items that could not be used.",
        Kind::Counter,
        |u| u.rejected.get(),
    ),
    (
        "lars_agent_uplink_pending",
        "Items held for the next connection.",
        Kind::Gauge,
        |u| u.pending.get(),
    ),
    (
        "lars_agent_uplink_overflow",
        "Route updates waiting for room in a worker's full inbox.",
        Kind::Gauge,
        |u| u.overflow.get(),
    ),
    (
        "lars_agent_uplink_failovers_total",
        "Connections made to another address than the one before.",
        Kind::Counter,
        |u| u.failovers.get(),
    ),
    (
        "lars_agent_uplink_probes_total",
        "Requests sent to prove an idle peer alive.",
        Kind::Counter,
        |u| u.probes.get(),
    ),
];

impl Collector for AgentStats {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let workers: Vec<String> = (0..self.workers.len()).map(|i| i.to_string()).collect();
        let each = || self.workers.iter().zip(&workers);
        let count = self.workers.len() as u64;
        encode_one(
            &mut encoder,
            "lars_agent_workers",
            "Worker threads, one per core.",
            Kind::Gauge,
            count,
        )?;
        for &(name, help, kind, value) in PER_WORKER {
            match value {
                WorkerValue::Each(read) => {
                    let samples = each().map(|(w, i)| ([("worker", i.as_str())], read(w)));
                    encode_family(&mut encoder, name, help, kind, samples)?;
                }
                WorkerValue::Named(label, read) => {
                    let samples = each().filter_map(|(w, i)| {
                        read(w).map(|named| ([("worker", i.as_str()), (label, named)], 1))
                    });
                    encode_family(&mut encoder, name, help, kind, samples)?;
                }
            }
        }
        let replies = each().flat_map(|(w, i)| {
            RETCODES
                .iter()
                .zip(&w.replies)
                .map(move |(code, n)| ([("worker", i.as_str()), ("retcode", *code)], n.get()))
        });
        encode_family(
            &mut encoder,
            "lars_agent_replies_total",
            "GetHostResponses by retcode.",
            Kind::Counter,
            replies,
        )?;
        let drops = each().flat_map(|(w, i)| {
            DropReason::ALL.iter().map(move |reason| {
                (
                    [("worker", i.as_str()), ("reason", reason.label())],
                    w.drops_for(*reason),
                )
            })
        });
        encode_family(
            &mut encoder,
            "lars_agent_drops_total",
            "Datagrams dropped, by reason.",
            Kind::Counter,
            drops,
        )?;
        for &(name, help, kind, read) in PER_UPLINK {
            let samples = [("dns", &self.dns), ("report", &self.report)]
                .map(|(label, uplink)| ([("uplink", label)], read(uplink)));
            encode_family(&mut encoder, name, help, kind, samples)?;
        }
        for &(name, help, kind, read) in PER_CACHE {
            encode_one(&mut encoder, name, help, kind, read(&self.cache))?;
        }
        let uplinks = [("dns", &self.dns), ("report", &self.report)];
        let dead = uplinks.iter().flat_map(|(label, uplink)| {
            LivenessFailure::ALL.iter().map(move |failure| {
                (
                    [("uplink", *label), ("reason", failure.label())],
                    uplink.dead_for(*failure),
                )
            })
        });
        encode_family(
            &mut encoder,
            "lars_agent_uplink_liveness_failures_total",
            "Open connections called dead, by reason.",
            Kind::Counter,
            dead,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lars_service::metrics::Samples;

    #[test]
    fn rendered_counters_read_back() {
        let stats = Arc::new(AgentStats::new(2));
        stats.workers[1].get_host.add(7);
        stats.workers[0].dropped(DropReason::BadBody);
        stats.workers[0].replies[3].inc();
        stats.dns.up.set(1);
        stats.cache.loaded.add(3);
        stats.workers[0].panic_entered.add(2);
        stats.workers[0].panic_left.inc();
        stats.report.dead(LivenessFailure::WriteStall);
        let samples = Samples::parse(&stats.render());
        assert_eq!(
            samples.get("lars_agent_cache_loaded_routes_total", &[]),
            Some(3.0)
        );
        assert_eq!(
            samples.get("lars_agent_panic_routes", &[("worker", "0")]),
            Some(1.0)
        );
        assert_eq!(samples.get("lars_agent_workers", &[]), Some(2.0));
        assert_eq!(
            samples.get("lars_agent_get_host_total", &[("worker", "1")]),
            Some(7.0)
        );
        assert_eq!(
            samples.get(
                "lars_agent_drops_total",
                &[("worker", "0"), ("reason", "bad_body")]
            ),
            Some(1.0)
        );
        assert_eq!(
            samples.get(
                "lars_agent_replies_total",
                &[("worker", "0"), ("retcode", "noexist")]
            ),
            Some(1.0)
        );
        assert_eq!(
            samples.get("lars_agent_uplink_up", &[("uplink", "dns")]),
            Some(1.0)
        );
        assert_eq!(samples.sum("lars_agent_get_host_total", &[]), 7.0);
        assert_eq!(samples.sum("lars_agent_drops_total", &[]), 1.0);
        assert_eq!(
            samples.get(
                "lars_agent_uplink_liveness_failures_total",
                &[("uplink", "report"), ("reason", "write_stall")]
            ),
            Some(1.0)
        );
        assert_eq!(
            samples.get(
                "lars_agent_uplink_liveness_failures_total",
                &[("uplink", "dns"), ("reason", "unanswered")]
            ),
            Some(0.0)
        );
    }
}
