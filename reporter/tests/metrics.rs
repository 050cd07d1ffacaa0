//! The `lars-reporter` binary's `/metrics` endpoint as a scraper sees it: the text format with
//! its content type, 404 elsewhere, every listed counter moving when its event happens, and an
//! idle client never holding up another scrape.

use lars_service::testing::{
    ServiceProcess, assert_idle_clients_do_not_block, assert_serves_metrics,
};
use lars_store::testing::TestDb;
use lars_wire::MsgId;
use lars_wire::messages::{HostCallResult, ReportStatusRequest};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(20);

/// A reporter on OS-chosen ports, one store worker keeping at most `max_keys` keys pending.
fn start(db: &TestDb, dir: &Path, max_keys: usize) -> ServiceProcess {
    let config = dir.join("lars_reporter.toml");
    let text = format!(
        "[reactor]\nport = 0\n[metrics]\naddr = \"127.0.0.1:0\"\n\
         [reporter]\ndb_thread_cnt = 1\nflush_ms = 20\nmax_pending_keys = {max_keys}\n"
    );
    std::fs::write(&config, text).unwrap();
    let path = Path::new(env!("CARGO_BIN_EXE_lars-reporter"));
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--store",
        &db.url_string(),
    ];
    ServiceProcess::start(path, &[], &args)
}

/// One report frame of `ports` (a port outside 1..=65535 is a row that cannot be stored).
fn frame(ports: impl IntoIterator<Item = i32>) -> Vec<u8> {
    let request = ReportStatusRequest {
        modid: 1,
        cmdid: 2,
        caller: 0x7F00_0001, // 127.0.0.1, the peer it is sent from
        results: ports
            .into_iter()
            .map(|port| HostCallResult {
                ip: 0x0A00_0002,
                port,
                succ: 1,
                err: 0,
                overload: false,
            })
            .collect(),
        ts: 1,
    };
    let mut out = bytes::BytesMut::new();
    lars_wire::frame::encode_frame(MsgId::ReportStatusRequest, &request, &mut out).unwrap();
    out.to_vec()
}

#[test]
fn the_endpoint_answers_the_text_format_and_404_elsewhere() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let reporter = start(&db, dir.path(), 1000);
    assert_serves_metrics(
        reporter.metrics_addr(),
        &[
            "# TYPE lars_reporter_rows_written_total counter",
            "# TYPE lars_reporter_pending_rows gauge",
            "# TYPE lars_reporter_write_seconds histogram",
        ],
    );
}

#[test]
fn every_counter_moves_with_its_event() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let reporter = start(&db, dir.path(), 2);
    let addr: SocketAddr = reporter.field("addr").parse().unwrap();
    let at_least = |name: &str, n: f64| reporter.wait_for_metric(name, &[], WITHIN, |v| v >= n);

    let mut conn = TcpStream::connect(addr).unwrap();
    reporter.wait_for_metric("lars_reporter_connections", &[], WITHIN, |v| v == 1.0);
    at_least("lars_reporter_connections_accepted_total", 1.0);

    // Two rows of one key (one coalesces into the other) and a row that cannot be stored.
    conn.write_all(&frame([80, 80, 0])).unwrap();
    at_least("lars_reporter_frames_total", 1.0);
    at_least("lars_reporter_rows_received_total", 3.0);
    at_least("lars_reporter_rows_bad_total", 1.0);
    at_least("lars_reporter_rows_coalesced_total", 1.0);
    at_least("lars_reporter_rows_written_total", 1.0);
    at_least("lars_reporter_writes_total", 1.0);
    at_least("lars_reporter_write_seconds_count", 1.0);
    at_least("lars_reporter_max_pending_rows", 1.0);
    reporter.wait_for_metric("lars_reporter_pending_rows", &[], WITHIN, |v| v == 0.0);

    // Three new keys in one frame with room for two: the oldest is evicted before any write.
    conn.write_all(&frame([1, 2, 3])).unwrap();
    at_least("lars_reporter_rows_evicted_total", 1.0);

    // A frame that is not a report closes the connection as a protocol error.
    conn.write_all(&[0xff; 16]).unwrap();
    at_least("lars_reporter_protocol_errors_total", 1.0);
    reporter.wait_for_metric("lars_reporter_connections", &[], WITHIN, |v| v == 0.0);

    let samples = reporter.scrape();
    for name in [
        "lars_reporter_db_errors_total",
        "lars_reporter_connections_refused_total",
    ] {
        assert_eq!(samples.get(name, &[]), Some(0.0), "{name}");
    }
}

#[test]
fn an_idle_client_does_not_block_a_scrape() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let reporter = start(&db, dir.path(), 1000);
    assert_idle_clients_do_not_block(reporter.metrics_addr());
}
