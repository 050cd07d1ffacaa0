//! `lars agent-stats`: reads a running agent's counters from its stats endpoint and shows them as
//! a table (or the raw Prometheus text with `--raw`).

use anyhow::Context;
use lars_agent::stats::{sample, sum};
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// Fetches and prints the counters of the agent whose stats endpoint is `addr`.
pub fn run(addr: SocketAddr, raw: bool) -> anyhow::Result<()> {
    let text = lars_agent::admin::fetch(addr, Duration::from_secs(2))
        .with_context(|| format!("cannot read agent stats from {addr} (is lars-agent running, with stats_addr = \"{addr}\"?)"))?;
    if raw {
        print!("{text}");
    } else {
        print!("{}", format_stats(&text));
    }
    Ok(())
}

/// The table: one line per worker, one per uplink, and the drops by reason.
pub fn format_stats(text: &str) -> String {
    let workers = sample(text, "lars_agent_workers", "").unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {:>4} {:>6} {:>8} {:>8} {:>12} {:>12} {:>10} {:>8}",
        "WORKER", "CPU", "SHARDS", "ROUTES", "HOSTS", "GET_HOST", "REPORT", "GET_ROUTE", "DROPS"
    );
    for w in 0..workers {
        let label = format!("worker=\"{w}\"");
        let get = |name| sample(text, name, &label).unwrap_or(0);
        let drops: u64 = text
            .lines()
            .filter(|l| l.starts_with(&format!("lars_agent_drops_total{{{label},")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
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
            drops
        );
    }
    let _ = writeln!(
        out,
        "\n{:<8} {:>4} {:>10} {:>9} {:>10} {:>10} {:>8}",
        "UPLINK", "UP", "RECONNECTS", "FAILURES", "SENT", "RECEIVED", "PENDING"
    );
    for uplink in ["dns", "report"] {
        let label = format!("uplink=\"{uplink}\"");
        let get = |name| sample(text, name, &label).unwrap_or(0);
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
        let n: u64 = (0..workers)
            .filter_map(|w| {
                sample(
                    text,
                    "lars_agent_drops_total",
                    &format!("worker=\"{w}\",reason=\"{reason}\""),
                )
            })
            .sum();
        let _ = writeln!(out, "  {reason:<17} {n}");
    }
    let _ = writeln!(
        out,
        "ring drops: dns {}, report {}; replies: {} succ, {} overload, {} noexist",
        sum(text, "lars_agent_dns_ring_drops_total"),
        sum(text, "lars_agent_report_ring_drops_total"),
        labelled_sum(text, "lars_agent_replies_total", "retcode=\"succ\""),
        labelled_sum(text, "lars_agent_replies_total", "retcode=\"overload\""),
        labelled_sum(text, "lars_agent_replies_total", "retcode=\"noexist\""),
    );
    out
}

fn labelled_sum(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lars_agent::stats::{AgentStats, DropReason};

    #[test]
    fn the_table_shows_every_worker_and_uplink() {
        let stats = AgentStats::new(2);
        stats.workers[1].get_host.add(42);
        stats.workers[0].dropped(DropReason::Short);
        stats.dns.up.set(1);
        let table = format_stats(&stats.render());
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
