//! Hostile peers for the connection hygiene tests of the services: floods of connections that
//! never send a byte or announce a frame and stop, opened from the test thread, and the memory
//! a service process holds (`VmRSS`), and the check every service's flood test makes
//! ([`Target::flood_then_serve`]). Owns no service: it only dials an address and reads metrics.

use super::{ServiceProcess, eventually};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How many connections a flood may open: `wanted`, or fewer when the test process's open-file
/// limit (minus `reserve` for everything else) does not allow that many.
pub fn flood_size(wanted: usize, reserve: usize) -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1024);
    wanted.min(soft.saturating_sub(reserve))
}

/// Opens `n` connections to `addr` and, on each, writes `prefix` (nothing for idle ones), then
/// leaves them open. A connection the service closes at once is kept all the same.
pub fn flood(addr: SocketAddr, n: usize, prefix: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut conn = TcpStream::connect(addr)
                .unwrap_or_else(|e| panic!("flood connection {i} to {addr}: {e}"));
            if !prefix.is_empty() {
                // The service may have evicted it already; what matters is what it holds.
                let _ = conn.write_all(prefix);
            }
            conn
        })
        .collect()
}

/// The 8-byte header of a frame of message `msgid` announcing the largest body, and `extra`
/// bytes of that body: a frame that is begun and never finished.
pub fn unfinished_frame(msgid: i32, extra: usize) -> Vec<u8> {
    const MAX_BODY_LEN: i32 = 65535 - 8;
    let mut bytes = msgid.to_le_bytes().to_vec();
    bytes.extend_from_slice(&MAX_BODY_LEN.to_le_bytes());
    bytes.resize(8 + extra, 0);
    bytes
}

/// The resident memory of process `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub fn vm_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kib * 1024
}

/// Connections in each flood (fewer if the test's open-file limit is lower).
pub const FLOOD: usize = 3000;
/// How long a service may take to close what a flood test waits for.
pub const WITHIN: Duration = Duration::from_secs(20);
/// Most a flood may add to a service's resident memory (measured: 2 to 7 MB with `maxConn = 200`).
pub const RSS_GROWTH_BOUND: u64 = 16 << 20;

/// A service under a flood test: its process, where it listens and its metric prefix
/// (`lars_dns`, `lars_reporter`).
pub struct Target<'a> {
    /// The service process.
    pub service: &'a ServiceProcess,
    /// Where it serves.
    pub addr: SocketAddr,
    /// Its metric prefix.
    pub prefix: &'a str,
}

impl Target<'_> {
    /// Connections the service closed for `reason` so far.
    pub fn closed(&self, reason: &str) -> f64 {
        let name = format!("{}_connections_closed_total", self.prefix);
        self.service
            .scrape()
            .get(&name, &[("reason", reason)])
            .unwrap_or(0.0)
    }

    /// Opens a flood of [`FLOOD`] connections each writing `bytes`, then checks that `serve`
    /// (a real client's exchange) succeeds right after, that the service's memory grew by less
    /// than [`RSS_GROWTH_BOUND`], and that every flood connection is then closed, evicted or
    /// for `reason`, within [`WITHIN`], both counted, leaving no connection open.
    pub fn flood_then_serve(&self, bytes: &[u8], reason: &str, serve: impl Fn()) {
        let pid = self.service.pid();
        let before = vm_rss_bytes(pid);
        let n = flood_size(FLOOD, 200);
        let hostile = flood(self.addr, n, bytes);
        serve();
        let grown = vm_rss_bytes(pid).saturating_sub(before);
        assert!(grown < RSS_GROWTH_BOUND, "VmRSS grew by {grown} bytes");
        // Each flood connection is evicted by a later one or closed by its deadline (those that
        // reach it while the flood is still being opened, and the last `maxConn`).
        eventually("every flood connection closed", WITHIN, || {
            self.closed("evicted") + self.closed(reason) >= n as f64
        });
        assert!(self.closed("evicted") > 0.0, "nothing evicted");
        assert!(self.closed(reason) > 0.0, "nothing closed for {reason}");
        let open = format!("{}_connections", self.prefix);
        self.service
            .wait_for_metric(&open, &[], WITHIN, |v| v == 0.0);
        drop(hostile);
    }

    /// Against a service with room for 16 whole unfinished frames (`max_pending_bytes =
    /// 16 * 65535`): sends 32 frames of message `msgid` stopped after 60,000 bytes, checks that
    /// the largest are closed (at least 15 of them) and that `serve` succeeds afterwards.
    pub fn overfill_pending_bytes(&self, msgid: i32, serve: impl Fn()) {
        let hostile = flood(self.addr, 32, &unfinished_frame(msgid, 60_000));
        let name = format!("{}_connections_closed_total", self.prefix);
        let reason = [("reason", "pending_bytes")];
        let closed = self
            .service
            .wait_for_metric(&name, &reason, WITHIN, |v| v >= 15.0);
        assert!(closed <= 32.0, "{closed}");
        serve();
        drop(hostile);
    }
}
