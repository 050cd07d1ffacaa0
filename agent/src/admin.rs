//! The operator's window into a running agent: a plain-threaded TCP endpoint answering any HTTP
//! request with every counter in the Prometheus text format ([`AgentStats::render`]), so both
//! `curl`, a Prometheus scraper and `lars agent-stats` can read it. Off the data plane: it only
//! reads relaxed atomics.

use crate::stats::AgentStats;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tracing::debug;

/// A running stats endpoint.
pub struct Admin {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Admin {
    /// Binds `addr` (port 0 picks one) and serves `stats` on a thread of its own.
    pub fn start(addr: SocketAddr, stats: Arc<AgentStats>) -> std::io::Result<Admin> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("lars-agent-stats".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::Acquire) {
                        return;
                    }
                    if let Ok(conn) = conn
                        && let Err(e) = answer(conn, &stats)
                    {
                        debug!(error = %e, "stats request failed");
                    }
                }
            })?;
        Ok(Admin { addr, stop, thread })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the endpoint.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        let _ = self.thread.join();
    }
}

fn answer(mut conn: TcpStream, stats: &AgentStats) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    // Read the request head (its content does not matter: every path gets the counters).
    let mut head = [0u8; 2048];
    let mut len = 0;
    while len < head.len() {
        let n = conn.read(&mut head[len..])?;
        len += n;
        if n == 0
            || head[..len].windows(4).any(|w| w == b"\r\n\r\n")
            || head[..len].ends_with(b"\n\n")
        {
            break;
        }
    }
    let body = stats.render();
    write!(
        conn,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Fetches the counters from a running agent's endpoint (for `lars agent-stats` and tests).
pub fn fetch(addr: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let mut conn = TcpStream::connect_timeout(&addr, timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: lars-agent\r\n\r\n")?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.0 200") => Ok(body.to_string()),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a stats response from lars-agent",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_counters_over_http() {
        let stats = Arc::new(AgentStats::new(1));
        stats.workers[0].get_host.add(3);
        let admin = Admin::start("127.0.0.1:0".parse().unwrap(), stats).unwrap();
        let text = fetch(admin.addr(), Duration::from_secs(2)).unwrap();
        assert_eq!(
            crate::stats::sample(&text, "lars_agent_get_host_total", "worker=\"0\""),
            Some(3)
        );
        admin.stop();
    }
}
