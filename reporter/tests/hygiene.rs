//! Hostile peers against the `lars-reporter` binary: thousands of connections that never send a
//! byte, or announce a 64 KiB frame and stop, do not keep an agent's statistics from being
//! stored, are closed by the hygiene rules within their deadlines (counted by reason), and do not
//! grow the service's memory.

use lars_service::testing::ServiceProcess;
use lars_service::testing::hostile::{FLOOD, Target, WITHIN, unfinished_frame};
use lars_store::testing::TestDb;
use lars_wire::MsgId;
use lars_wire::messages::{HostCallResult, ReportStatusRequest};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

/// The service's `maxConn` in these tests.
const MAX_CONN: usize = 200;

fn lars_reporter() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lars-reporter"))
}

/// A reporter with a small `maxConn`, short timeouts, every connection from loopback allowed
/// (the flood and the agent share 127.0.0.1) and room for 16 full unfinished frames.
fn start(db: &TestDb, dir: &Path) -> ServiceProcess {
    let config = dir.join("lars_reporter.toml");
    let text = format!(
        "[reactor]\nport = 0\nmaxConn = {MAX_CONN}\nframe_timeout_ms = 1000\nidle_timeout_ms = 2000\n\
         max_conn_per_peer = {FLOOD}\nmax_pending_bytes = {}\n\
         [metrics]\naddr = \"127.0.0.1:0\"\n",
        16 * 65535
    );
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    ServiceProcess::start(
        lars_reporter(),
        &[],
        &["--config", config, "--store", &db.url_string()],
    )
}

/// Reports one call result for `(modid, 1)` the way an agent does, and waits until it is stored.
fn report(db: &TestDb, addr: SocketAddr, modid: i32) {
    let request = ReportStatusRequest {
        modid,
        cmdid: 1,
        // The connection comes from 127.0.0.1, and the reporter stores a row only under the
        // address it came from.
        caller: lars_wire::ip::ip_to_wire(std::net::Ipv4Addr::LOCALHOST),
        results: vec![HostCallResult {
            ip: 0x0A00_0002,
            port: 80,
            succ: 10,
            err: 1,
            overload: false,
        }],
        ts: 1234,
    };
    let mut out = bytes::BytesMut::new();
    lars_wire::frame::encode_frame(MsgId::ReportStatusRequest, &request, &mut out).unwrap();
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(&out).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = runtime.block_on(db.open()).unwrap();
    lars_service::testing::eventually("the agent's statistics stored", WITHIN, || {
        let rows = runtime
            .block_on(store.load_call_status(Some(modid), Some(1)))
            .unwrap();
        rows.iter().any(|r| r.succ_cnt == 10 && r.port == 80)
    });
    drop(conn);
}

fn target(reporter: &ServiceProcess) -> Target<'_> {
    let addr = reporter.field("addr").parse().unwrap();
    Target {
        service: reporter,
        addr,
        prefix: "lars_reporter",
    }
}

#[test]
fn idle_connections_are_evicted_and_closed_and_an_agents_statistics_are_stored() {
    let (db, dir) = (TestDb::sqlite(), tempfile::tempdir().unwrap());
    let reporter = start(&db, dir.path());
    let reporter = target(&reporter);
    reporter.flood_then_serve(&[], "idle", || report(&db, reporter.addr, 1));
    report(&db, reporter.addr, 2);
}

#[test]
fn half_sent_frames_are_closed_at_the_frame_timeout_and_hold_no_announced_memory() {
    let (db, dir) = (TestDb::sqlite(), tempfile::tempdir().unwrap());
    let reporter = start(&db, dir.path());
    let reporter = target(&reporter);
    let frame = unfinished_frame(MsgId::ReportStatusRequest.as_i32(), 5);
    reporter.flood_then_serve(&frame, "frame_timeout", || report(&db, reporter.addr, 1));
    report(&db, reporter.addr, 2);
}

#[test]
fn the_largest_unfinished_frames_are_closed_past_max_pending_bytes() {
    let (db, dir) = (TestDb::sqlite(), tempfile::tempdir().unwrap());
    let reporter = start(&db, dir.path());
    let reporter = target(&reporter);
    reporter.overfill_pending_bytes(MsgId::ReportStatusRequest.as_i32(), || {
        report(&db, reporter.addr, 3)
    });
}
