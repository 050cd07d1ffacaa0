//! The `lars-dns` binary as operators run it: config errors before anything starts, serving on
//! the configured port, and a clean exit on SIGTERM.

use bytes::BytesMut;
use lars_service::testing::{ServiceProcess, assert_config_errors_named, assert_help_names};
use lars_store::testing::TestDb;
use lars_wire::messages::GetRouteRequest;
use lars_wire::{FrameDecoder, Message, MsgId};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

fn lars_dns() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lars-dns"))
}

#[test]
fn serves_routes_and_stops_cleanly_on_sigterm() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lars_dns.toml");
    let text = format!(
        "[reactor]\nport = 0\n[metrics]\naddr = \"127.0.0.1:0\"\n[store]\nurl = \"{}\"\n",
        db.url_string()
    );
    std::fs::write(&config, text).unwrap();
    let dns = ServiceProcess::start(lars_dns(), &[], &["--config", config.to_str().unwrap()]);
    let addr: SocketAddr = dns.field("addr").parse().expect("addr parses");

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

    dns.send_signal("-TERM");
    let exit = dns.wait_for_exit(Duration::from_secs(10));
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn config_errors_name_the_file_and_key_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let own = [("[dns]\nversion_poll_ms = 0\n", "dns.version_poll_ms")];
    assert_config_errors_named(lars_dns(), dir.path(), "lars_dns.toml", &own);
}

#[test]
fn help_explains_the_options() {
    assert_help_names(lars_dns(), &["--config", "--store"]);
}
