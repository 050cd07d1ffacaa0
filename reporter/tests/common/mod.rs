//! Test harness for the reporter service: an in-process service on an OS-chosen port, a test
//! agent that sends `ReportStatusRequest` frames over a real TCP connection, and waits with
//! deadlines instead of sleeps.

#![allow(dead_code)]

use bytes::BytesMut;
use lars_reporter::{Inboxes, ReporterConfig, ReporterServer, ReporterStats};
use lars_service::testing::{ServiceTask, eventually_async as eventually};
use lars_store::{CallStatusRow, Store, StoreUrl};
use lars_wire::MsgId;
use lars_wire::messages::{HostCallResult, ReportStatusRequest};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The caller every test agent reports as: the address it connects from, as the reporter
/// stores only a caller that is the sending peer.
pub const CALLER: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A reporter service running inside the test process.
pub struct TestReporter {
    pub addr: SocketAddr,
    pub stats: Arc<ReporterStats>,
    pub inboxes: Inboxes,
    task: ServiceTask,
}

impl TestReporter {
    /// Starts a service on 127.0.0.1:0 with a 300 ms retry cap, tweaked by `tweak`.
    pub async fn start(store: StoreUrl, tweak: impl FnOnce(&mut ReporterConfig)) -> TestReporter {
        let mut config = ReporterConfig::default();
        config.reactor.port = 0;
        config.reporter.db_retry_max_ms = 300;
        // Every test connection comes from 127.0.0.1: only maxConn limits them.
        config.reactor.hygiene.max_conn_per_peer = config.reactor.max_conn;
        tweak(&mut config);
        config
            .validate("test config")
            .expect("test config is valid");
        let server = ReporterServer::bind(&config, store)
            .await
            .expect("reporter binds");
        let addr = server.local_addr();
        let stats = server.stats();
        let inboxes = server.inboxes();
        let task = ServiceTask::spawn("reporter", |shutdown| server.run(shutdown));
        TestReporter {
            addr,
            stats,
            inboxes,
            task,
        }
    }

    pub fn get(&self, counter: impl Fn(&ReporterStats) -> &AtomicU64) -> u64 {
        ReporterStats::get(counter(&self.stats))
    }

    /// Waits until `check` holds on the counters, failing the test after `within`.
    pub async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        check: impl Fn(&ReporterStats) -> bool,
    ) {
        let stats = self.stats.clone();
        eventually(what, within, || {
            let ok = check(&stats);
            async move { ok }
        })
        .await;
    }

    /// Checks that the row counters balance (nothing in flight once nothing is pending).
    pub fn assert_rows_balance(&self) {
        let g = |c: &AtomicU64| ReporterStats::get(c);
        let s = &self.stats;
        assert_eq!(
            g(&s.rows_received),
            g(&s.rows_written)
                + g(&s.coalesced)
                + g(&s.dropped_bad_row)
                + g(&s.dropped_over_cap)
                + g(&s.pending_rows)
                + s.rows_refused(),
            "row counters do not balance: {s}"
        );
    }

    pub async fn stop(self) {
        self.task.stop(Duration::from_secs(20)).await;
    }
}

/// One host's result in a report: (address, port, succ, err, overload).
pub type Host = (Ipv4Addr, i32, u32, u32, bool);

/// A `ReportStatusRequest` from [`CALLER`].
pub fn report(modid: i32, cmdid: i32, ts: u32, hosts: &[Host]) -> ReportStatusRequest {
    ReportStatusRequest {
        modid,
        cmdid,
        caller: lars_wire::ip::ip_to_wire(CALLER),
        results: hosts
            .iter()
            .map(|&(ip, port, succ, err, overload)| HostCallResult {
                ip: lars_wire::ip::ip_to_wire(ip),
                port,
                succ,
                err,
                overload,
            })
            .collect(),
        ts,
    }
}

/// The row a host of a [`report`] should become.
pub fn row(modid: i32, cmdid: i32, ts: u32, host: Host) -> CallStatusRow {
    let (ip, port, succ, err, overload) = host;
    CallStatusRow {
        modid,
        cmdid,
        ip: u32::from(ip),
        port: u16::try_from(port).expect("a valid port"),
        caller: u32::from(CALLER),
        succ_cnt: succ,
        err_cnt: err,
        ts: i64::from(ts),
        overload,
    }
}

/// The frames of `requests`, back to back.
pub fn frames<'a>(requests: impl IntoIterator<Item = &'a ReportStatusRequest>) -> BytesMut {
    let mut out = BytesMut::new();
    for request in requests {
        lars_wire::frame::encode_frame(MsgId::ReportStatusRequest, request, &mut out)
            .expect("a report fits in a frame");
    }
    out
}

/// An agent-side test client of the reporter.
pub struct TestAgent {
    stream: TcpStream,
}

impl TestAgent {
    pub async fn connect(addr: SocketAddr) -> TestAgent {
        TestAgent {
            stream: TcpStream::connect(addr).await.expect("connect to reporter"),
        }
    }

    /// This connection's own address, as the reporter sees it.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local address")
    }

    pub async fn send(&mut self, request: &ReportStatusRequest) {
        self.send_all([request]).await;
    }

    /// Sends all `requests` in one write.
    pub async fn send_all<'a>(
        &mut self,
        requests: impl IntoIterator<Item = &'a ReportStatusRequest>,
    ) {
        let bytes = frames(requests);
        self.stream.write_all(&bytes).await.expect("write frames");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// True when the service closes the connection within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut buf = [0u8; 256];
        match tokio::time::timeout(within, self.stream.read(&mut buf)).await {
            Err(_) => false,
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => panic!("the reporter never sends anything"),
        }
    }
}

/// Waits until the stored rows (in key order) equal `want`, failing after `within`.
pub async fn wait_for_rows(store: &Store, want: &[CallStatusRow], within: Duration) {
    let mut want = want.to_vec();
    want.sort_unstable_by_key(CallStatusRow::key);
    let want = &want;
    let what = format!(
        "the {} expected rows to be stored (first {:?})",
        want.len(),
        want.first()
    );
    eventually(&what, within, || async move {
        let stored = store
            .load_call_status(None, None)
            .await
            .expect("load_call_status");
        stored == *want
    })
    .await;
}
