//! Hostile peers against the `lars-dns` binary: thousands of connections that never send a byte,
//! or announce a 64 KiB frame and stop, do not keep an agent from being served, are closed by the
//! hygiene rules within their deadlines (counted by reason), and do not grow the service's memory.

use bytes::BytesMut;
use lars_service::testing::ServiceProcess;
use lars_service::testing::hostile::{FLOOD, Target, unfinished_frame};
use lars_store::testing::TestDb;
use lars_wire::{FrameDecoder, Message};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// The service's `maxConn` in these tests.
const MAX_CONN: usize = 200;

fn lars_dns() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lars-dns"))
}

/// A dns with a small `maxConn`, short timeouts, every connection from loopback allowed (the
/// flood and the agent share 127.0.0.1) and room for 16 full unfinished frames.
fn start(db: &TestDb, dir: &Path) -> ServiceProcess {
    let config = dir.join("lars_dns.toml");
    let text = format!(
        "[reactor]\nport = 0\nmaxConn = {MAX_CONN}\nframe_timeout_ms = 1000\nidle_timeout_ms = 2000\n\
         max_conn_per_peer = {FLOOD}\nmax_pending_bytes = {}\n\
         [metrics]\naddr = \"127.0.0.1:0\"\n[store]\nurl = \"{}\"\n",
        16 * 65535,
        db.url_string()
    );
    std::fs::write(&config, text).unwrap();
    ServiceProcess::start(lars_dns(), &[], &["--config", config.to_str().unwrap()])
}

/// Asks for a route the way an agent does and returns once it is answered.
fn ask_route(addr: SocketAddr) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = BytesMut::new();
    lars_wire::frame::encode_get_route_request(4, 5, &mut out);
    conn.write_all(&out).unwrap();
    let (mut buf, mut decoder) = (BytesMut::new(), FrameDecoder::new());
    let answer = loop {
        if let Some(frame) = decoder.decode(&mut buf).unwrap() {
            break frame.decode().unwrap();
        }
        let mut chunk = [0u8; 256];
        let n = conn.read(&mut chunk).expect("the dns answers within 5 s");
        assert!(n > 0, "dns closed the agent's connection");
        buf.extend_from_slice(&chunk[..n]);
    };
    let Message::GetRouteResponse(answer) = answer else {
        panic!("unexpected {answer:?}");
    };
    assert_eq!((answer.modid, answer.cmdid), (4, 5));
}

fn target(dns: &ServiceProcess) -> Target<'_> {
    let addr = dns.field("addr").parse().unwrap();
    Target {
        service: dns,
        addr,
        prefix: "lars_dns",
    }
}

#[test]
fn idle_connections_are_evicted_and_closed_and_an_agent_is_served_ahead_of_them() {
    let (db, dir) = (TestDb::sqlite(), tempfile::tempdir().unwrap());
    let dns = start(&db, dir.path());
    let dns = target(&dns);
    dns.flood_then_serve(&[], "idle", || ask_route(dns.addr));
    ask_route(dns.addr);
}

#[test]
fn half_sent_frames_are_closed_at_the_frame_timeout_and_hold_no_announced_memory() {
    let (db, dir) = (TestDb::sqlite(), tempfile::tempdir().unwrap());
    let dns = start(&db, dir.path());
    let dns = target(&dns);
    let get_route_request = 1;
    dns.flood_then_serve(
        &unfinished_frame(get_route_request, 5),
        "frame_timeout",
        || ask_route(dns.addr),
    );
    ask_route(dns.addr);
}

#[test]
fn the_largest_unfinished_frames_are_closed_past_max_pending_bytes() {
    let (db, dir) = (TestDb::sqlite(), tempfile::tempdir().unwrap());
    let dns = start(&db, dir.path());
    let dns = target(&dns);
    dns.overfill_pending_bytes(1, || ask_route(dns.addr));
}
