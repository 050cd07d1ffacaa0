//! The `lars-reporter` binary as operators run it: config errors before anything starts,
//! serving on the configured port, and on SIGTERM a flush of what is pending and exit 0.

use lars_store::testing::TestDb;
use lars_wire::MsgId;
use lars_wire::messages::{HostCallResult, ReportStatusRequest};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn reporter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lars-reporter"))
}

/// Waits for a log line containing `needle`, failing after 20 s.
fn wait_for_line(child: &mut Child, lines: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lars-reporter did not log `{needle}`");
        };
        if line.contains(needle) {
            return line;
        }
    }
}

/// Starts `lars-reporter` and returns it with the address it logged as serving on.
fn start(args: &[&str]) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    let mut child = reporter()
        .args(args)
        .env("RUST_LOG", "lars_reporter=debug")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lars-reporter");
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let line = wait_for_line(&mut child, &lines, "lars-reporter serving");
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .expect("serving line names addr")
        .parse()
        .expect("addr parses");
    (child, addr, lines)
}

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("lars_reporter.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

#[test]
fn serves_and_on_sigterm_writes_what_is_pending_and_exits_0() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    // Rows are written only at a full chunk or after an hour: only the shutdown flush can
    // write the few this test sends.
    let config = write_config(
        dir.path(),
        "[reactor]\nport = 0\n[reporter]\nflush_ms = 3600000\n",
    );
    let (mut child, addr, lines) = start(&[
        "--config",
        config.to_str().unwrap(),
        "--store",
        &db.url_string(),
    ]);

    let request = ReportStatusRequest {
        modid: 4,
        cmdid: 5,
        caller: 0x0A00_0001,
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
    let closed = wait_for_line(&mut child, &lines, "connection closed");
    assert!(closed.contains("frames=1"), "{closed}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_line(&mut child, &lines, "lars-reporter stopped");
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let exit = done
        .recv_timeout(Duration::from_secs(20))
        .expect("lars-reporter exits within 20 s of SIGTERM")
        .unwrap();
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
    let cases = [
        ("[reactor]\nmaxconn = 5\n", "maxconn"),
        ("[reactor]\nport = 70000\n", "port"),
        ("[reporter]\nbatch_rows = 0\n", "reporter.batch_rows"),
        ("[reporter]\ndb_thread_cnt = -1\n", "db_thread_cnt"),
        ("[reporter]\nflush = 5\n", "flush"),
        ("[store]\nurl = \"redis://x\"\n", "store.url"),
    ];
    for (text, key) in cases {
        let config = write_config(dir.path(), text);
        let out = reporter()
            .args(["--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(stderr.contains(key), "{text}: {stderr}");
        assert!(stderr.contains("lars_reporter.toml"), "{text}: {stderr}");
        assert!(!stderr.contains("serving"), "{text}: {stderr}");
    }
    let out = reporter()
        .args(["--config", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.toml"));

    let out = reporter().args(["--store", "redis://x"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--store") && stderr.contains("store.url"),
        "{stderr}"
    );
}

#[test]
fn help_explains_the_options() {
    let out = reporter().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--config") && text.contains("--store"),
        "{text}"
    );
}
