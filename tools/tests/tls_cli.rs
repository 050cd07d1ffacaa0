//! The `lars` CLI, `lars-dns` and `lars-reporter` as processes against a MariaDB that accepts
//! only TLS (`require_secure_transport=ON`), given `--store mysql://...?ssl-mode=verify-ca&
//! ssl-ca=CA.pem`; and a plain URL refused with an error that points at `ssl-mode`.
//!
//! One test function: nextest runs every test in its own process, so one function starts the
//! server once for all of it.

use bytes::BytesMut;
use lars_service::testing::{Finished, ServiceProcess, run, workspace_binary};
use lars_store::testing::TlsMariaDb;
use lars_store::{MysqlTls, Store};
use lars_wire::messages::{GetRouteRequest, HostCallResult, ReportStatusRequest};
use lars_wire::{FrameDecoder, Message, MsgId};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// How long a service may take to log what the test waits for, or to exit.
const WITHIN: Duration = Duration::from_secs(20);

fn lars(args: &[&str]) -> Finished {
    run(Path::new(env!("CARGO_BIN_EXE_lars")), args)
}

/// Asks the dns at `addr` for route (`modid`, `cmdid`) and returns the hosts it answers with.
fn get_route(addr: SocketAddr, modid: i32, cmdid: i32) -> Vec<(i32, i32)> {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(WITHIN)).unwrap();
    let mut out = BytesMut::new();
    let request = GetRouteRequest { modid, cmdid };
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
    response.host.iter().map(|h| (h.ip, h.port)).collect()
}

#[test]
fn cli_dns_and_reporter_work_over_tls() {
    let Some(server) = TlsMariaDb::start() else {
        return;
    };
    let url = server.verify_ca_url("lars_tls_cli").to_full_string();
    assert!(url.contains("?ssl-mode=verify-ca&ssl-ca=/"), "{url}");

    // Without `ssl-mode` the server refuses, and the error says what to add.
    let plain = server
        .url("lars_tls_cli", MysqlTls::default())
        .to_full_string();
    lars(&["init", "--store", &plain]).assert_failed(1, "ssl-mode=verify-ca");

    let out = lars(&["init", "--store", &url]);
    assert!(out.status.success(), "{}", out.stderr);
    let out = lars(&[
        "route", "add", "--store", &url, "4", "5", "10.0.0.1", "8080",
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    let listed = lars(&["route", "list", "--store", &url]);
    assert!(
        listed.stdout.contains("10.0.0.1:8080") && listed.stdout.contains("1 route(s), 1 host(s)"),
        "{}{}",
        listed.stdout,
        listed.stderr
    );

    // lars-dns loads its routes over TLS and serves them.
    let dir = tempfile::tempdir().unwrap();
    let dns_config = dir.path().join("lars_dns.toml");
    std::fs::write(
        &dns_config,
        "[reactor]\nport = 0\n[metrics]\naddr = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let dns_binary = workspace_binary(env!("CARGO_MANIFEST_DIR"), "lars-dns", "lars-dns");
    let dns = ServiceProcess::start(
        &dns_binary,
        &[],
        &["--config", dns_config.to_str().unwrap(), "--store", &url],
    );
    let dns_addr: SocketAddr = dns.field("addr").parse().expect("addr parses");
    assert_eq!(get_route(dns_addr, 4, 5), vec![(0x0A00_0001, 8080)]);
    dns.send_signal("-TERM");
    assert!(dns.wait_for_exit(WITHIN).success());

    // lars-reporter writes its rows over TLS (here: the flush on SIGTERM).
    let reporter_config = dir.path().join("lars_reporter.toml");
    std::fs::write(
        &reporter_config,
        "[reactor]\nport = 0\n[metrics]\naddr = \"127.0.0.1:0\"\n[reporter]\nflush_ms = 3600000\n",
    )
    .unwrap();
    let reporter_binary =
        workspace_binary(env!("CARGO_MANIFEST_DIR"), "lars-reporter", "lars-reporter");
    let reporter = ServiceProcess::start_logging(
        &reporter_binary,
        &[],
        &[
            "--config",
            reporter_config.to_str().unwrap(),
            "--store",
            &url,
        ],
        "lars_reporter=debug",
    );
    let reporter_addr: SocketAddr = reporter.field("addr").parse().expect("addr parses");
    let request = ReportStatusRequest {
        modid: 4,
        cmdid: 5,
        caller: 0x7F00_0001, // 127.0.0.1, the peer it is sent from (the reporter checks it)
        results: vec![HostCallResult {
            ip: 0x0A00_0001,
            port: 8080,
            succ: 10,
            err: 1,
            overload: false,
        }],
        ts: 1234,
    };
    let mut out = BytesMut::new();
    lars_wire::frame::encode_frame(MsgId::ReportStatusRequest, &request, &mut out).unwrap();
    let mut conn = TcpStream::connect(reporter_addr).unwrap();
    conn.write_all(&out).unwrap();
    drop(conn);
    reporter.wait_for_line("connection closed", WITHIN);
    reporter.send_signal("-TERM");
    let exit = reporter.wait_for_exit(WITHIN);
    assert!(exit.success(), "exit status {exit}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows = runtime.block_on(async {
        let store = Store::open(&server.verify_ca_url("lars_tls_cli"))
            .await
            .unwrap();
        let rows = store.load_call_status(Some(4), Some(5)).await.unwrap();
        store.close().await;
        rows
    });
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].succ_cnt, rows[0].err_cnt), (10, 1));
}

#[test]
fn a_bad_store_url_is_named_without_its_password() {
    let out = lars(&[
        "route",
        "list",
        "--store",
        "mysql://lars:secret@127.0.0.1:1/lars_dns?ssl-mode=verify-ca&bogus=1",
    ]);
    out.assert_failed(1, "unknown option `bogus` (known options: ssl-mode, ssl-ca");
    assert!(
        out.stderr.contains("mysql://lars:***@127.0.0.1:1/lars_dns"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("secret"),
        "password shown: {}",
        out.stderr
    );
}
