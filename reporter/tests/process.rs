//! The `lars-reporter` binary as operators run it: config errors before anything starts,
//! serving on the configured port, and on SIGTERM a flush of what is pending and exit 0.

use lars_service::testing::{ServiceProcess, assert_config_errors_named, assert_help_names};
use lars_store::testing::TestDb;
use lars_wire::MsgId;
use lars_wire::messages::{HostCallResult, ReportStatusRequest};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// How long the reporter may take to log what the test waits for, or to exit.
const WITHIN: Duration = Duration::from_secs(20);

fn lars_reporter() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lars-reporter"))
}

#[test]
fn serves_and_on_sigterm_writes_what_is_pending_and_exits_0() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    // Rows are written only at a full chunk or after an hour: only the shutdown flush can
    // write the few this test sends.
    let config = dir.path().join("lars_reporter.toml");
    std::fs::write(
        &config,
        "[reactor]\nport = 0\n[metrics]\naddr = \"127.0.0.1:0\"\n[reporter]\nflush_ms = 3600000\n",
    )
    .unwrap();
    let reporter = ServiceProcess::start_logging(
        lars_reporter(),
        &[],
        &[
            "--config",
            config.to_str().unwrap(),
            "--store",
            &db.url_string(),
        ],
        "lars_reporter=debug",
    );
    let addr: SocketAddr = reporter.field("addr").parse().expect("addr parses");

    let request = ReportStatusRequest {
        modid: 4,
        cmdid: 5,
        caller: 0x7F00_0001, // 127.0.0.1, the peer it is sent from
        results: (1..=3)
            .map(|port| HostCallResult {
                ip: 0x0A00_0002,
                port,
                succ: 10,
                err: 1,
                overload: false,
            })
            .collect(),
        ts: 1234,
    };
    let mut out = bytes::BytesMut::new();
    lars_wire::frame::encode_frame(MsgId::ReportStatusRequest, &request, &mut out).unwrap();
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(&out).unwrap();
    drop(conn);
    let closed = reporter.wait_for_line("connection closed", WITHIN);
    assert!(closed.contains("frames=1"), "{closed}");

    reporter.send_signal("-TERM");
    reporter.wait_for_line("lars-reporter stopped", WITHIN);
    let exit = reporter.wait_for_exit(WITHIN);
    assert!(exit.success(), "exit status {exit}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows = runtime.block_on(async {
        let store = db.open().await.unwrap();
        store.load_call_status(Some(4), Some(5)).await.unwrap()
    });
    let ports: Vec<u16> = rows.iter().map(|r| r.port).collect();
    assert_eq!(ports, vec![1, 2, 3]);
    assert!(rows.iter().all(|r| r.ts == 1234 && r.succ_cnt == 10));
}

#[test]
fn config_errors_name_the_file_and_key_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let own = [
        ("[reporter]\nbatch_rows = 0\n", "reporter.batch_rows"),
        ("[reporter]\ndb_thread_cnt = -1\n", "db_thread_cnt"),
        ("[reporter]\nflush = 5\n", "flush"),
    ];
    assert_config_errors_named(lars_reporter(), dir.path(), "lars_reporter.toml", &own);
}

#[test]
fn help_explains_the_options() {
    assert_help_names(lars_reporter(), &["--config", "--store"]);
}
