//! The `lars-dns` binary as operators run it: config errors before anything starts, serving on
//! the configured port, and a clean exit on SIGTERM.

use bytes::BytesMut;
use lars_store::testing::TestDb;
use lars_wire::messages::GetRouteRequest;
use lars_wire::{FrameDecoder, Message, MsgId};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn dns() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lars-dns"))
}

/// Starts `lars-dns` and returns it with the address it logged as serving on.
fn start(args: &[&str]) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    let mut child = dns()
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lars-dns");
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    loop {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lars-dns did not log that it is serving");
        };
        if line.contains("lars-dns serving") {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .expect("serving line names addr")
                .parse()
                .expect("addr parses");
            return (child, addr, lines);
        }
    }
}

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("lars_dns.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

#[test]
fn serves_routes_and_stops_cleanly_on_sigterm() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[reactor]\nport = 0\n[store]\nurl = \"{}\"\n",
            db.url_string()
        ),
    );
    let (mut child, addr, _lines) = start(&["--config", config.to_str().unwrap()]);

    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = BytesMut::new();
    let request = GetRouteRequest { modid: 4, cmdid: 5 };
    lars_wire::frame::encode_frame(MsgId::GetRouteRequest, &request, &mut out).unwrap();
    conn.write_all(&out).unwrap();
    let mut buf = BytesMut::new();
    let mut decoder = FrameDecoder::new();
    let response = loop {
        if let Some(frame) = decoder.decode(&mut buf).unwrap() {
            break frame.decode().unwrap();
        }
        let mut chunk = [0u8; 256];
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "dns closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    };
    let Message::GetRouteResponse(response) = response else {
        panic!("unexpected {response:?}");
    };
    assert_eq!((response.modid, response.cmdid), (4, 5));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let exit = done
        .recv_timeout(Duration::from_secs(10))
        .expect("lars-dns exits within 10 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn config_errors_name_the_file_and_key_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[reactor]\nmaxconn = 5\n", "maxconn"),
        ("[reactor]\nport = 70000\n", "port"),
        ("[dns]\nversion_poll_ms = 0\n", "dns.version_poll_ms"),
        ("[store]\nurl = \"redis://x\"\n", "store.url"),
    ];
    for (text, key) in cases {
        let config = write_config(dir.path(), text);
        let out = dns()
            .args(["--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(stderr.contains(key), "{text}: {stderr}");
        assert!(stderr.contains("lars_dns.toml"), "{text}: {stderr}");
        assert!(!stderr.contains("serving"), "{text}: {stderr}");
    }
    let out = dns()
        .args(["--config", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.toml"));
}

#[test]
fn help_explains_the_options() {
    let out = dns().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--config") && text.contains("--store"),
        "{text}"
    );
}
