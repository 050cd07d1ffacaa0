//! The report uplink: one thread holding the agent's TCP connection to lars-reporter. It takes
//! each route's statistics from the workers' rings (at most one per route per report interval)
//! and sends them, stamped with this agent's address as `caller`. It keeps the latest statistics
//! of every route (lars-wire's [`LatestWins`]: newer statistics of a route replace the unsent
//! ones; memory bounded by the number of routes): while the reporter is away nothing
//! else piles up, and after every (re)connect it sends all of them again, so a reporter that
//! died before storing what it had received still ends up with every route's final numbers
//! (the reporter's upsert makes the repeat harmless).

use crate::config::UplinkConfig;
use crate::rings::{ReportUplinkRx, Wake};
use crate::stats::UplinkStats;
use crate::uplink::{Connector, UplinkStop};
use bytes::BytesMut;
use foldhash::HashMap;
use lars_wire::frame::encode_frame;
use lars_wire::ip::ip_to_wire;
use lars_wire::messages::ReportStatusRequest;
use lars_wire::{LatestWins, MsgId, RouteKey};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::warn;

/// Everything the report uplink is started with.
pub struct ReportUplinkSetup {
    /// lars-reporter addresses, in fail-over order.
    pub addrs: Vec<SocketAddr>,
    /// One ring from each worker.
    pub reports: Vec<ReportUplinkRx>,
    /// Fired by the workers' rings and by stop.
    pub wake: Wake,
    /// Reconnect settings.
    pub config: UplinkConfig,
    /// Counters.
    pub stats: Arc<UplinkStats>,
    /// Raised to stop.
    pub stop: UplinkStop,
}

enum Ended {
    Stop,
    Lost(String),
}

struct ReportUplink {
    reports: Vec<ReportUplinkRx>,
    wake: Wake,
    stats: Arc<UplinkStats>,
    stop: UplinkStop,
    /// The latest statistics of every route not sent yet, the route that waited longest first
    /// (newer statistics of a route replace its unsent ones in place).
    unsent: LatestWins<RouteKey, ReportStatusRequest>,
    /// The latest statistics of every route sent on this or an earlier connection, kept to be
    /// sent again after a reconnect. A route is in `unsent` or here, never both.
    sent: HashMap<RouteKey, ReportStatusRequest>,
}

/// Runs the report uplink until stopped; on stop it sends what the workers handed it last.
pub async fn run(setup: ReportUplinkSetup) {
    let mut connector = Connector::new("reporter", setup.addrs, &setup.config, setup.stats.clone());
    let mut uplink = ReportUplink {
        reports: setup.reports,
        wake: setup.wake,
        stats: setup.stats,
        stop: setup.stop,
        unsent: LatestWins::new(),
        sent: HashMap::default(),
    };
    loop {
        let wait = match connector.try_connect().await {
            Ok((stream, addr)) => match uplink.serve(stream).await {
                Ended::Stop => return,
                Ended::Lost(reason) => connector.lost(addr, &reason),
            },
            Err(wait) => wait,
        };
        if uplink.stop.raised() {
            if !uplink.unsent.is_empty() {
                warn!(
                    routes = uplink.unsent.len(),
                    "stopping with statistics the reporter never got"
                );
            }
            return;
        }
        uplink.idle(wait).await;
    }
}

impl ReportUplink {
    /// Keeps the latest statistics per route while disconnected, for `wait` or until stop.
    async fn idle(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.take_reports();
            if self.stop.raised() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = self.wake.wait() => {}
            }
        }
    }

    fn take_reports(&mut self) {
        for ring in &mut self.reports {
            while let Some(report) = ring.pop() {
                let key = RouteKey::new(report.modid, report.cmdid);
                self.sent.remove(&key);
                self.unsent.put(key, report);
            }
        }
        self.stats.pending.set(self.unsent.len() as u64);
    }

    /// Encodes the unsent statistics, stamped with `caller`, and marks them sent.
    fn encode_unsent(&mut self, caller: i32, out: &mut BytesMut) {
        while let Some((key, mut report)) = self.unsent.pop_oldest() {
            report.caller = caller;
            if encode_frame(MsgId::ReportStatusRequest, &report, out).is_ok() {
                self.stats.sent.inc();
            } else {
                self.stats.rejected.inc();
                warn!(%key, hosts = report.results.len(), "statistics too large for one frame; not sent");
            }
            self.sent.insert(key, report);
        }
        self.stats.pending.set(0);
    }

    async fn serve(&mut self, stream: TcpStream) -> Ended {
        let caller = match stream.local_addr().map(|a| a.ip()) {
            Ok(IpAddr::V4(ip)) => ip_to_wire(ip),
            _ => 0,
        };
        let (mut reader, mut writer) = stream.into_split();
        // Everything again: what the last reporter received but did not store is not lost.
        for (key, report) in self.sent.drain() {
            self.unsent.put(key, report);
        }
        let mut out = BytesMut::new();
        let mut scratch = [0u8; 64];
        loop {
            self.take_reports();
            self.encode_unsent(caller, &mut out);
            if !out.is_empty() {
                if let Err(e) = writer.write_all(&out).await {
                    return Ended::Lost(format!("write failed: {e}"));
                }
                out.clear();
            }
            if self.stop.raised() {
                let _ = writer.shutdown().await;
                return Ended::Stop;
            }
            tokio::select! {
                // The reporter never sends; a read that returns is the connection closing.
                read = reader.read(&mut scratch) => match read {
                    Ok(0) => return Ended::Lost("reporter closed the connection".into()),
                    Ok(_) => {}
                    Err(e) => return Ended::Lost(format!("read failed: {e}")),
                },
                _ = self.wake.wait() => {}
            }
        }
    }
}
