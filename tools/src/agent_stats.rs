//! `lars agent-stats`: reads a running agent's counters from its metrics endpoint and shows them as
//! a table (or the raw Prometheus text with `--raw`).

use anyhow::Context;
use lars_service::metrics::Samples;
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// How long to wait for the agent's answer: it is on this host and answers in microseconds.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Fetches and prints the counters of the agent whose metrics endpoint is `addr`.
pub fn run(addr: SocketAddr, raw: bool) -> anyhow::Result<()> {
    let text = lars_service::metrics::fetch_blocking(&addr.to_string(), FETCH_TIMEOUT)
        .with_context(|| format!("cannot read agent stats from {addr} (is lars-agent running, with stats_addr = \"{addr}\"?)"))?;
    if raw {
        print!("{text}");
    } else {
        print!("{}", format_stats(&Samples::parse(&text)));
    }
    Ok(())
}

/// The table: one line per worker, one per uplink, and the drops by reason.
pub fn format_stats(samples: &Samples) -> String {
    // Counts, so whole numbers: the casts drop nothing.
    let sum = |name: &str, labels: &[(&str, &str)]| samples.sum(name, labels) as u64;
    let workers = sum("lars_agent_workers", &[]);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {:>4} {:>6} {:>8} {:>8} {:>12} {:>12} {:>10} {:>8}",
        "WORKER", "CPU", "SHARDS", "ROUTES", "HOSTS", "GET_HOST", "REPORT", "GET_ROUTE", "DROPS"
    );
    for w in 0..workers {
        let w = w.to_string();
        let worker = [("worker", w.as_str())];
        let get = |name| sum(name, &worker);
        let _ = writeln!(
            out,
            "{:<7} {:>4} {:>6} {:>8} {:>8} {:>12} {:>12} {:>10} {:>8}",
            w,
            get("lars_agent_worker_core"),
            get("lars_agent_worker_shards"),
            get("lars_agent_routes"),
            get("lars_agent_hosts"),
            get("lars_agent_get_host_total"),
            get("lars_agent_report_total"),
            get("lars_agent_get_route_total"),
            get("lars_agent_drops_total"),
        );
    }
    let _ = writeln!(
        out,
        "\n{:<8} {:>4} {:>10} {:>9} {:>10} {:>10} {:>8}",
        "UPLINK", "UP", "RECONNECTS", "FAILURES", "SENT", "RECEIVED", "PENDING"
    );
    for uplink in ["dns", "report"] {
        let labels = [("uplink", uplink)];
        let get = |name| sum(name, &labels);
        let up = if get("lars_agent_uplink_up") == 1 {
            "yes"
        } else {
            "no"
        };
        let _ = writeln!(
            out,
            "{:<8} {:>4} {:>10} {:>9} {:>10} {:>10} {:>8}",
            uplink,
            up,
            get("lars_agent_uplink_reconnects_total"),
            get("lars_agent_uplink_failures_total"),
            get("lars_agent_uplink_sent_total"),
            get("lars_agent_uplink_received_total"),
            get("lars_agent_uplink_pending")
        );
    }
    let _ = writeln!(out, "\ndrops by reason:");
    for reason in [
        "short",
        "bad_length",
        "unknown_msgid",
        "unexpected_msgid",
        "bad_body",
        "bad_host",
    ] {
        let n = sum("lars_agent_drops_total", &[("reason", reason)]);
        let _ = writeln!(out, "  {reason:<17} {n}");
    }
    let replies = |retcode| sum("lars_agent_replies_total", &[("retcode", retcode)]);
    let _ = writeln!(
        out,
        "ring drops: dns {}, report {}; replies: {} succ, {} overload, {} noexist",
        sum("lars_agent_dns_ring_drops_total", &[]),
        sum("lars_agent_report_ring_drops_total", &[]),
        replies("succ"),
        replies("overload"),
        replies("noexist"),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lars_agent::{AgentStats, DropReason};
    use std::sync::Arc;

    #[test]
    fn the_table_shows_every_worker_and_uplink() {
        let stats = Arc::new(AgentStats::new(2));
        stats.workers[1].get_host.add(42);
        stats.workers[0].dropped(DropReason::Short);
        stats.dns.up.set(1);
        let table = format_stats(&Samples::parse(&stats.render()));
        assert!(table.lines().nth(2).unwrap().contains("42"), "{table}");
        assert!(table.contains("short             1"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("dns") && l.contains("yes")),
            "{table}"
        );
    }
}
