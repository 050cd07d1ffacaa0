//! A plain HTTP/1.0 GET over a `TcpStream`, for tests that check what a metrics endpoint answers
//! byte for byte (status, content type, body) rather than through [`crate::metrics::reader`],
//! and the checks every service's endpoint must pass.

use crate::metrics::{CONTENT_TYPE, SERVING};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a test waits for an endpoint on loopback to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What an endpoint answered.
#[derive(Debug)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header, empty when there is none.
    pub content_type: String,
    /// The body.
    pub body: String,
}

/// `GET path` from `addr`, read until the server closes; fails the test on any I/O error.
pub fn http_get(addr: SocketAddr, path: &str) -> HttpAnswer {
    let mut conn = TcpStream::connect_timeout(&addr, ANSWER_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    conn.set_read_timeout(Some(ANSWER_TIMEOUT))
        .expect("set a read timeout");
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send the request");
    let mut raw = String::new();
    conn.read_to_string(&mut raw)
        .unwrap_or_else(|e| panic!("read the answer of {addr}{path}: {e}"));
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head from {addr}{path}: {raw:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line from {addr}{path}: {head:?}"));
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_default();
    HttpAnswer {
        status,
        content_type,
        body: body.to_string(),
    }
}

/// Checks that the endpoint at `addr` answers `/metrics` with 200, the text format's content
/// type, [`SERVING`] at 1 and each of `lines`, and 404 for another path.
pub fn assert_serves_metrics(addr: SocketAddr, lines: &[&str]) {
    let answer = http_get(addr, "/metrics");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.content_type, CONTENT_TYPE);
    let serving = format!("{SERVING} 1");
    for line in lines.iter().copied().chain([serving.as_str()]) {
        assert!(answer.body.contains(line), "no `{line}` in {}", answer.body);
    }
    assert_eq!(http_get(addr, "/").status, 404);
    assert_eq!(http_get(addr, "/metrics/x").status, 404);
}

/// Checks that a client holding a half-sent request and another holding an idle connection to
/// the endpoint at `addr` do not keep a third from reading `/metrics`.
pub fn assert_idle_clients_do_not_block(addr: SocketAddr) {
    let mut half = TcpStream::connect(addr).expect("connect a half-sending client");
    half.write_all(b"GET /metr").expect("send half a request");
    let _idle = TcpStream::connect(addr).expect("connect an idle client");
    let answer = http_get(addr, "/metrics");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.contains(SERVING), "{}", answer.body);
}
