//! The report uplink: one thread holding the agent's TCP connection to lars-reporter. It takes
//! each route's statistics from the workers' rings (at most one per route per report interval)
//! and sends them, stamped with this agent's address as `caller`. It keeps the latest statistics
//! of every route (lars-wire's [`LatestWins`]: newer statistics of a route replace the unsent
//! ones; memory bounded by the number of routes): while the reporter is away, or slow to read,
//! nothing else piles up, and after every (re)connect it sends all of them again, so a reporter
//! that died before storing what it had received still ends up with every route's final numbers
//! (the reporter's upsert makes the repeat harmless).
//!
//! # A reporter that stops reading
//! lars-reporter never answers, so a frozen one shows only as writes that make no progress once
//! its receive window has closed: a write stalled for `write_stall_timeout`
//! ([`crate::uplink::liveness`]) ends the connection, and the uplink fails over to the next
//! address and sends every route's latest statistics there. The connection's send buffer is
//! kept small ([`SEND_BUFFER`]) so that a frozen reporter swallows little before the stall
//! shows. What it swallowed is not lost: it is sent again after the fail-over.
use crate::config::UplinkConfig;
use crate::rings::{ReportUplinkRx, Wake};
use crate::stats::UplinkStats;
use crate::uplink::liveness::{Liveness, LivenessRules, Verdict};
use crate::uplink::{ConnectionClock, Connector, Ended, UplinkStop};
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

/// The report connection's send buffer (`SO_SNDBUF`; Linux doubles it for bookkeeping). With
/// autotuning a frozen reporter takes about 4.4 MB before a write stalls; with 64 KiB, about
/// 400 KB (measured on loopback, Linux 6.18, the reporter's receive buffer included), which an
/// agent with a few hundred routes fills within seconds. 128 KiB in flight still carries
/// 12 MB/s over a 10 ms round trip, far more than any agent reports.
pub const SEND_BUFFER: usize = 64 * 1024;

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
    let mut connector = Connector::new(
        "reporter",
        setup.addrs,
        &setup.config,
        LivenessRules::report(&setup.config),
        setup.stats.clone(),
    );
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
            Ok((stream, addr)) => {
                let ended = uplink.serve(stream, connector.rules()).await;
                match connector.ended(addr, ended) {
                    Some(wait) => wait,
                    None => return,
                }
            }
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

    /// Serves one connection until it ends: sends the statistics as they come, and watches
    /// that the reporter still reads them ([`Liveness`] under `rules`).
    async fn serve(&mut self, stream: TcpStream, rules: LivenessRules) -> Ended {
        let caller = match stream.local_addr().map(|a| a.ip()) {
            Ok(IpAddr::V4(ip)) => ip_to_wire(ip),
            _ => 0,
        };
        if let Err(e) = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER) {
            warn!(error = %e, "cannot shrink the report connection's send buffer; a frozen reporter takes longer to notice");
        }
        let clock = ConnectionClock::start();
        let mut liveness = Liveness::new(rules, clock.now());
        let (mut reader, mut writer) = stream.into_split();
        // Everything again: what the last reporter received but did not store is not lost.
        for (key, report) in self.sent.drain() {
            self.unsent.put(key, report);
        }
        let mut out = BytesMut::new();
        let mut scratch = [0u8; 64];
        loop {
            self.take_reports();
            // Encoded only once the last batch is written: while the reporter is slow to read,
            // newer statistics of a route replace its unsent ones instead of queueing behind.
            if out.is_empty() {
                self.encode_unsent(caller, &mut out);
            }
            if self.stop.raised() {
                return self.finish(&mut writer, out, caller, rules).await;
            }
            let now = clock.now();
            liveness.writing(!out.is_empty(), now);
            match liveness.check(now) {
                Verdict::Dead(failure) => return Ended::Dead(failure),
                // The report rules have no probe: nothing to prove with a peer that never answers.
                Verdict::Alive | Verdict::Probe => {}
            }
            tokio::select! {
                written = writer.write_buf(&mut out), if !out.is_empty() => match written {
                    Ok(0) => return Ended::Lost("write failed: the reporter takes no more".into()),
                    Ok(_) => liveness.wrote(clock.now()),
                    Err(e) => return Ended::Lost(format!("write failed: {e}")),
                },
                // The reporter never sends; a read that returns is the connection closing.
                read = reader.read(&mut scratch) => match read {
                    Ok(0) => return Ended::Lost("reporter closed the connection".into()),
                    Ok(_) => {}
                    Err(e) => return Ended::Lost(format!("read failed: {e}")),
                },
                _ = self.wake.wait() => {}
                _ = clock.until(liveness.next_check()) => {}
            }
        }
    }

    /// On stop: writes what is left, for at most `write_stall_timeout`, and closes.
    async fn finish(
        &mut self,
        writer: &mut tokio::net::tcp::OwnedWriteHalf,
        mut out: BytesMut,
        caller: i32,
        rules: LivenessRules,
    ) -> Ended {
        self.encode_unsent(caller, &mut out);
        let limit = Duration::from_millis(rules.write_stall_timeout.0);
        let flushed = tokio::time::timeout(limit, async {
            writer.write_all(&out).await?;
            writer.shutdown().await
        })
        .await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "stopping: the last statistics could not be sent");
            }
            Err(_) => warn!(
                waited = ?limit,
                "stopping: the reporter did not take the last statistics"
            ),
        }
        Ended::Stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rings::ring;
    use crate::uplink::liveness::LivenessFailure;
    use lars_service::testing::eventually_async;
    use lars_wire::messages::HostCallResult;
    use lars_wire::{FrameDecoder, Message};
    use std::net::Ipv4Addr;
    use tokio::net::TcpListener;

    /// A route's statistics with 1000 hosts (about 22 KB encoded), each with `succ` successes.
    fn statistics(cmdid: i32, succ: u32) -> ReportStatusRequest {
        let results = (0..1000u16)
            .map(|i| HostCallResult {
                // Addresses above 128.0.0.0 are negative as int32: the widest varint.
                ip: ip_to_wire(Ipv4Addr::new(200, 0, (i >> 8) as u8, i as u8)),
                port: 9000,
                succ,
                err: 0,
                overload: false,
            })
            .collect();
        ReportStatusRequest {
            modid: 1,
            cmdid,
            caller: 0,
            results,
            ts: 0,
        }
    }

    /// The next connection to `listener`; fails the test when none comes within 10 s.
    async fn accept(listener: &TcpListener) -> TcpStream {
        let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
        accepted.expect("the uplink connects").unwrap().0
    }

    #[tokio::test]
    async fn a_reporter_that_stops_reading_is_left_and_the_next_gets_every_routes_latest_statistics()
     {
        const ROUTES: i32 = 40;
        let frozen = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backup = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let wake = Wake::new();
        let (mut reports, reports_rx) = ring(64, wake.clone());
        let stats = Arc::new(UplinkStats::default());
        let stop = UplinkStop::new(wake.clone());
        let uplink = tokio::spawn(run(ReportUplinkSetup {
            addrs: vec![frozen.local_addr().unwrap(), backup.local_addr().unwrap()],
            reports: vec![reports_rx],
            wake,
            config: UplinkConfig {
                reconnect_min_ms: 1,
                reconnect_max_ms: 1,
                write_stall_timeout_ms: 300,
                ..UplinkConfig::default()
            },
            stats: stats.clone(),
            stop: stop.clone(),
        }));

        // The first reporter accepts and never reads: about 880 KB of statistics is far more
        // than its receive buffer and the agent's send buffer hold.
        let stuck = accept(&frozen).await;
        for cmdid in 1..=ROUTES {
            reports.push(statistics(cmdid, 1)).unwrap();
        }
        eventually_async(
            "every route's statistics are written or waiting",
            Duration::from_secs(10),
            || {
                let sent = stats.sent.get();
                async move { sent == ROUTES as u64 }
            },
        )
        .await;
        // Newer statistics of route 1 while the write is stuck: they replace what was sent.
        reports.push(statistics(1, 2)).unwrap();

        let mut next = accept(&backup).await;
        let mut latest = HashMap::default();
        let mut input = BytesMut::new();
        let mut decoder = FrameDecoder::new();
        let complete = |latest: &HashMap<i32, u32>| {
            latest.len() == ROUTES as usize && latest.get(&1) == Some(&2)
        };
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            while !complete(&latest) {
                assert!(
                    next.read_buf(&mut input).await.unwrap() > 0,
                    "agent hung up"
                );
                while let Some(frame) = decoder.decode(&mut input).unwrap() {
                    match frame.decode().unwrap() {
                        Message::ReportStatusRequest(r) => {
                            assert_eq!(r.results.len(), 1000);
                            latest.insert(r.cmdid, r.results[0].succ);
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
        })
        .await;
        assert!(read.is_ok(), "the next reporter got only {latest:?}");
        assert_eq!(stats.dead_for(LivenessFailure::WriteStall), 1);
        assert_eq!(stats.failovers.get(), 1);

        stop.raise();
        tokio::time::timeout(Duration::from_secs(5), uplink)
            .await
            .expect("the uplink stops")
            .unwrap();
        drop(stuck);
    }
}
