//! Bad input from the network: a malformed frame closes only the connection that sent it, with a
//! warning that names the peer; frames it sent before are kept, other agents are not disturbed.
//!
//! This test binary installs a log subscriber that writes into memory, to read the service's own
//! log lines.

mod common;

use common::{TestAgent, TestReporter, report, row, wait_for_rows};
use lars_reporter::ReporterStats;
use lars_store::testing::TestDb;
use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(20);

/// Everything logged by this test process.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter("lars_reporter=info")
            .with_writer(move || Capture(sink.clone()))
            .init();
        log
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured log lines that contain `needle`.
fn log_lines_with(needle: &str) -> Vec<String> {
    let log = captured().lock().unwrap();
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

fn header(msgid: i32, msglen: i32) -> Vec<u8> {
    [msgid.to_le_bytes(), msglen.to_le_bytes()].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_their_own_connection_and_name_the_peer() {
    captured();
    let db = TestDb::sqlite();
    let store = db.open().await.unwrap();
    let reporter = TestReporter::start(db.url(), |_| {}).await;
    let host = |succ| (Ipv4Addr::new(192, 168, 0, 1), 80, succ, 0, false);
    let mut good = TestAgent::connect(reporter.addr).await;
    good.send(&report(1, 1, 1, &[host(0)])).await;
    wait_for_rows(&store, &[row(1, 1, 1, host(0))], WITHIN).await;

    let mut get_route = bytes::BytesMut::new();
    lars_wire::frame::encode_frame(
        lars_wire::MsgId::GetRouteRequest,
        &lars_wire::messages::GetRouteRequest { modid: 1, cmdid: 1 },
        &mut get_route,
    )
    .unwrap();
    // A ReportStatusRequest whose body is a truncated varint.
    let bad_body = [&header(3, 2)[..], &[0x08, 0xff][..]].concat();
    let garbage: Vec<u8> = (0..64u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(200))
        .collect();
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("negative length", header(3, -5), "negative body length"),
        ("oversized length", header(3, 65536), "more than the limit"),
        ("unknown msgid", header(99, 0), "unknown message id 99"),
        (
            "GetRouteRequest sent to the reporter",
            get_route.to_vec(),
            "unexpected message id 1",
        ),
        ("undecodable body", bad_body, "does not decode"),
        ("garbage", garbage, "protocol error"),
    ];
    let mut want = vec![row(1, 1, 1, host(0))];
    for (i, (what, bad_frame, reason)) in cases.iter().enumerate() {
        let n = i as u32 + 1;
        let mut bad = TestAgent::connect(reporter.addr).await;
        let peer = bad.local_addr().to_string();
        // A good frame first: what came before the bad frame is kept.
        let before = report(2, n as i32, 2, &[host(n)]);
        let mut bytes = common::frames([&before]).to_vec();
        bytes.extend_from_slice(bad_frame);
        bad.send_raw(&bytes).await;
        assert!(
            bad.closed_within(Duration::from_secs(5)).await,
            "{what}: connection not closed"
        );
        reporter
            .wait_for("the protocol error is counted", WITHIN, |s| {
                ReporterStats::get(&s.protocol_errors) == u64::from(n)
            })
            .await;
        let lines = log_lines_with(&format!("peer={peer}"));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("WARN") && l.contains("protocol error") && l.contains(reason)),
            "{what}: no warning naming {peer} and `{reason}` in {lines:?}"
        );

        // The other agent is not disturbed.
        good.send(&report(1, 1, 1, &[host(n)])).await;
        want[0] = row(1, 1, 1, host(n));
        want.push(row(2, n as i32, 2, host(n)));
        wait_for_rows(&store, &want, WITHIN).await;
    }
    assert_eq!(reporter.get(|s| &s.frames), 1 + 2 * cases.len() as u64);
    drop(good);
    reporter.stop().await;
}
