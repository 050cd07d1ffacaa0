//! The operator's window into a running agent: the agent's [`AgentStats`] served as `/metrics`
//! by the endpoint every Lars service shares ([`lars_service::metrics`]), on a small thread of
//! its own beside the workers and uplinks, so `curl`, a Prometheus scraper and `lars
//! agent-stats` can read it. Off the data plane: a scrape only reads relaxed atomics.

use crate::stats::AgentStats;
use lars_service::metrics::{MetricsError, MetricsThread};
use std::net::SocketAddr;
use std::sync::Arc;

/// A running metrics endpoint.
#[derive(Debug)]
pub struct Admin {
    endpoint: MetricsThread,
}

impl Admin {
    /// Binds `addr` (port 0 picks one) and serves `stats` on a thread of its own; the endpoint
    /// reports the agent as serving from then on (its sockets are bound by now).
    pub fn start(addr: SocketAddr, stats: Arc<AgentStats>) -> std::io::Result<Admin> {
        let metrics = stats.metrics();
        metrics.set_serving();
        let endpoint =
            MetricsThread::start("lars-agent-stats", addr, metrics).map_err(|e| match e {
                MetricsError::Bind { source, .. } | MetricsError::Thread(source) => source,
            })?;
        Ok(Admin { endpoint })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr()
    }

    /// Stops the endpoint.
    pub fn stop(self) {
        self.endpoint.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lars_service::metrics::scrape;
    use lars_service::testing::{assert_idle_clients_do_not_block, assert_serves_metrics};
    use std::time::Duration;

    fn start(stats: Arc<AgentStats>) -> Admin {
        Admin::start("127.0.0.1:0".parse().unwrap(), stats).unwrap()
    }

    #[test]
    fn serves_the_counters_over_http() {
        let stats = Arc::new(AgentStats::new(1));
        stats.workers[0].get_host.add(3);
        let admin = start(stats);
        assert_serves_metrics(admin.addr(), &["# TYPE lars_agent_get_host_total counter"]);
        let samples = scrape(&admin.addr().to_string(), Duration::from_secs(5)).unwrap();
        assert_eq!(
            samples.get("lars_agent_get_host_total", &[("worker", "0")]),
            Some(3.0)
        );
        admin.stop();
    }

    #[test]
    fn an_idle_connection_does_not_block_a_scrape() {
        let admin = start(Arc::new(AgentStats::new(1)));
        assert_idle_clients_do_not_block(admin.addr());
        admin.stop();
    }
}
