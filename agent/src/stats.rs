//! The agent's counters, readable by an operator from the running agent: per worker (requests by
//! type, replies by retcode, drops by reason, ring drops, routes and hosts) and per uplink (up or
//! down, reconnects, messages, drops, backlog). Each counter has exactly one writer thread and is
//! a relaxed atomic, so counting costs an uncontended add and reading never stops the writer.
//! [`AgentStats::render`] gives the Prometheus text format served by [`crate::admin`].

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter or gauge with one writer.
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

    /// Sets a gauge.
    #[inline]
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Reads it.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a datagram was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than the 8-byte header.
    Short,
    /// Length not `8 + msglen`, or a negative or oversized `msglen`.
    BadLength,
    /// A message id outside 1..=8.
    UnknownMsgId,
    /// A valid id that callers do not send to the agent (1, 2, 3, 5, 8).
    UnexpectedMsgId,
    /// A body that does not decode.
    BadBody,
    /// A report naming a port outside 0..=65535.
    BadHost,
}

impl DropReason {
    /// Every reason, in [`WorkerStats::drops`] order.
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
    /// The CPU the worker is pinned to.
    pub core: Counter,
    /// Shards the worker serves.
    pub shards: Counter,
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
    pub routes: Counter,
    /// Hosts held now.
    pub hosts: Counter,
    /// The I/O driver the worker runs ("io-uring", "portable"), set once it runs.
    pub driver: std::sync::OnceLock<&'static str>,
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
    pub up: Counter,
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
    pub pending: Counter,
    /// Messages for workers waiting for room in a worker's full ring.
    pub backlog: Counter,
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
}

impl AgentStats {
    /// Counters for `workers` workers.
    pub fn new(workers: usize) -> AgentStats {
        AgentStats {
            workers: (0..workers).map(|_| Arc::default()).collect(),
            dns: Arc::default(),
            report: Arc::default(),
        }
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP lars_agent_workers Worker threads, one per core."
        );
        let _ = writeln!(out, "# TYPE lars_agent_workers gauge");
        let _ = writeln!(out, "lars_agent_workers {}", self.workers.len());
        type Field = fn(&WorkerStats) -> &Counter;
        let per_worker: [(&str, &str, &str, Field); 14] = [
            (
                "lars_agent_worker_core",
                "gauge",
                "CPU the worker is pinned to.",
                |w| &w.core,
            ),
            (
                "lars_agent_worker_shards",
                "gauge",
                "Shards served by the worker.",
                |w| &w.shards,
            ),
            ("lars_agent_routes", "gauge", "Routes held.", |w| &w.routes),
            ("lars_agent_hosts", "gauge", "Hosts held.", |w| &w.hosts),
            (
                "lars_agent_recv_errors_total",
                "counter",
                "Socket receive errors.",
                |w| &w.recv_errors,
            ),
            (
                "lars_agent_send_errors_total",
                "counter",
                "Replies not sent.",
                |w| &w.send_errors,
            ),
            (
                "lars_agent_dns_ring_drops_total",
                "counter",
                "Dns requests dropped on a full ring.",
                |w| &w.dns_ring_drops,
            ),
            (
                "lars_agent_report_ring_drops_total",
                "counter",
                "Statistics dropped on a full ring.",
                |w| &w.report_ring_drops,
            ),
            (
                "lars_agent_route_updates_total",
                "counter",
                "Route updates applied from dns.",
                |w| &w.route_updates,
            ),
            (
                "lars_agent_hosts_overloaded_total",
                "counter",
                "Hosts moved to the overload list.",
                |w| &w.overloaded,
            ),
            (
                "lars_agent_hosts_recovered_total",
                "counter",
                "Hosts moved back to the idle list.",
                |w| &w.recovered,
            ),
            (
                "lars_agent_get_host_total",
                "counter",
                "GetHostRequests answered.",
                |w| &w.get_host,
            ),
            (
                "lars_agent_report_total",
                "counter",
                "ReportRequests taken.",
                |w| &w.report,
            ),
            (
                "lars_agent_get_route_total",
                "counter",
                "API GetRouteRequests answered.",
                |w| &w.get_route,
            ),
        ];
        for (name, kind, help, field) in per_worker {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (i, w) in self.workers.iter().enumerate() {
                let _ = writeln!(out, "{name}{{worker=\"{i}\"}} {}", field(w).get());
            }
        }
        let name = "lars_agent_worker_driver";
        let _ = writeln!(
            out,
            "# HELP {name} The I/O driver the worker runs (1).\n# TYPE {name} gauge"
        );
        for (i, w) in self.workers.iter().enumerate() {
            if let Some(driver) = w.driver.get() {
                let _ = writeln!(out, "{name}{{worker=\"{i}\",driver=\"{driver}\"}} 1");
            }
        }
        let name = "lars_agent_replies_total";
        let _ = writeln!(
            out,
            "# HELP {name} GetHostResponses by retcode.\n# TYPE {name} counter"
        );
        for (i, w) in self.workers.iter().enumerate() {
            for (code, label) in ["succ", "overload", "system_error", "noexist"]
                .iter()
                .enumerate()
            {
                let _ = writeln!(
                    out,
                    "{name}{{worker=\"{i}\",retcode=\"{label}\"}} {}",
                    w.replies[code].get()
                );
            }
        }
        let name = "lars_agent_drops_total";
        let _ = writeln!(
            out,
            "# HELP {name} Datagrams dropped, by reason.\n# TYPE {name} counter"
        );
        for (i, w) in self.workers.iter().enumerate() {
            for reason in DropReason::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{worker=\"{i}\",reason=\"{}\"}} {}",
                    reason.label(),
                    w.drops_for(reason)
                );
            }
        }
        type UplinkField = fn(&UplinkStats) -> &Counter;
        let per_uplink: [(&str, &str, &str, UplinkField); 9] = [
            (
                "lars_agent_uplink_up",
                "gauge",
                "1 while the uplink is connected.",
                |u| &u.up,
            ),
            (
                "lars_agent_uplink_reconnects_total",
                "counter",
                "Reconnections after the first connection.",
                |u| &u.reconnects,
            ),
            (
                "lars_agent_uplink_failures_total",
                "counter",
                "Failed connection attempts and broken connections.",
                |u| &u.failures,
            ),
            (
                "lars_agent_uplink_sent_total",
                "counter",
                "Messages sent.",
                |u| &u.sent,
            ),
            (
                "lars_agent_uplink_received_total",
                "counter",
                "Messages received.",
                |u| &u.received,
            ),
            (
                "lars_agent_uplink_worker_ring_drops_total",
                "counter",
                "Messages for workers dropped on a full ring.",
                |u| &u.worker_ring_drops,
            ),
            (
                "lars_agent_uplink_rejected_total",
                "counter",
                "Received items that could not be used.",
                |u| &u.rejected,
            ),
            (
                "lars_agent_uplink_pending",
                "gauge",
                "Items held for the next connection.",
                |u| &u.pending,
            ),
            (
                "lars_agent_uplink_backlog",
                "gauge",
                "Messages for workers waiting for room in a full ring.",
                |u| &u.backlog,
            ),
        ];
        for (name, kind, help, field) in per_uplink {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (label, uplink) in [("dns", &self.dns), ("report", &self.report)] {
                let _ = writeln!(out, "{name}{{uplink=\"{label}\"}} {}", field(uplink).get());
            }
        }
        out
    }
}

/// Reads one sample, `name{labels} value`, from a Prometheus text exposition; `labels` is the
/// exact text between the braces (empty for none). For tests and the CLI.
pub fn sample(text: &str, name: &str, labels: &str) -> Option<u64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// The sum of a counter over every label set.
pub fn sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_counters_read_back() {
        let stats = AgentStats::new(2);
        stats.workers[1].get_host.add(7);
        stats.workers[0].dropped(DropReason::BadBody);
        stats.workers[0].replies[3].inc();
        stats.dns.up.set(1);
        let text = stats.render();
        assert_eq!(sample(&text, "lars_agent_workers", ""), Some(2));
        assert_eq!(
            sample(&text, "lars_agent_get_host_total", "worker=\"1\""),
            Some(7)
        );
        assert_eq!(
            sample(
                &text,
                "lars_agent_drops_total",
                "worker=\"0\",reason=\"bad_body\""
            ),
            Some(1)
        );
        assert_eq!(
            sample(
                &text,
                "lars_agent_replies_total",
                "worker=\"0\",retcode=\"noexist\""
            ),
            Some(1)
        );
        assert_eq!(
            sample(&text, "lars_agent_uplink_up", "uplink=\"dns\""),
            Some(1)
        );
        assert_eq!(sum(&text, "lars_agent_get_host_total"), 7);
        assert_eq!(sum(&text, "lars_agent_drops_total"), 1);
    }
}
