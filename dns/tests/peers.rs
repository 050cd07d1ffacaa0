//! Who may connect to `lars-dns`, as a process: with `allowed_peers` naming one loopback
//! address, an agent connecting from it is served and one connecting from another loopback
//! address is closed at once, counted and logged with its address — and the other way round.

use bytes::BytesMut;
use lars_service::testing::{ServiceProcess, connect_from};
use lars_store::testing::TestDb;
use lars_wire::{FrameDecoder, Message};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WITHIN: Duration = Duration::from_secs(10);

const ONE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const TWO: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn lars_dns() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lars-dns"))
}

/// Asks for route (4, 5) and returns the answer's key, or None when the dns closes the
/// connection instead.
async fn ask(stream: &mut TcpStream) -> Option<(i32, i32)> {
    let mut out = BytesMut::new();
    lars_wire::frame::encode_get_route_request(4, 5, &mut out);
    // A refused connection may already be reset: the read below tells.
    let _ = stream.write_all(&out).await;
    let (mut buf, mut decoder) = (BytesMut::new(), FrameDecoder::new());
    loop {
        if let Some(frame) = decoder.decode(&mut buf).expect("dns sends valid frames") {
            let Message::GetRouteResponse(r) = frame.decode().expect("a valid body") else {
                panic!("dns sent something other than a GetRouteResponse");
            };
            return Some((r.modid, r.cmdid));
        }
        match tokio::time::timeout(WITHIN, stream.read_buf(&mut buf)).await {
            Err(_) => panic!("dns neither answered nor closed within {WITHIN:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(_)) => {}
        }
    }
}

/// A runtime for the test's own connections; the process harness blocks, so it runs outside.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn serves_only_the_allowed_peer(allowed: IpAddr, other: IpAddr) {
    let rt = runtime();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lars_dns.toml");
    let text = format!(
        "[reactor]\nip = \"127.0.0.1\"\nport = 0\nallowed_peers = [\"{allowed}/32\"]\n\
         [metrics]\naddr = \"127.0.0.1:0\"\n[store]\nurl = \"{}\"\n",
        db.url_string()
    );
    std::fs::write(&config, text).unwrap();
    let dns = ServiceProcess::start(lars_dns(), &[], &["--config", config.to_str().unwrap()]);
    let addr: SocketAddr = dns.field("addr").parse().expect("addr parses");

    let mut served = rt.block_on(connect_from(allowed, addr)).unwrap();
    assert_eq!(rt.block_on(ask(&mut served)), Some((4, 5)));

    let mut refused = rt.block_on(connect_from(other, addr)).unwrap();
    let refused_addr = refused.local_addr().unwrap();
    assert_eq!(
        rt.block_on(ask(&mut refused)),
        None,
        "a peer outside allowed_peers is closed"
    );
    dns.wait_for_metric("lars_dns_peers_refused_total", &[], WITHIN, |v| v == 1.0);
    let line = dns.wait_for_line("peer not in allowed_peers", WITHIN);
    assert!(line.contains(&refused_addr.to_string()), "{line}");
    assert_eq!(
        dns.scrape().get("lars_dns_connections_accepted_total", &[]),
        Some(1.0),
        "the refused connection was never served"
    );

    // The allowed agent is still served.
    assert_eq!(rt.block_on(ask(&mut served)), Some((4, 5)));
}

#[test]
fn an_agent_from_127_0_0_1_is_served_and_one_from_127_0_0_2_is_refused() {
    serves_only_the_allowed_peer(ONE, TWO);
}

#[test]
fn an_agent_from_127_0_0_2_is_served_and_one_from_127_0_0_1_is_refused() {
    serves_only_the_allowed_peer(TWO, ONE);
}
