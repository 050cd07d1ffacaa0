//! Test harness for the dns service: an in-process server on an OS-chosen port, and a test
//! agent that speaks the framed protocol over a real TCP connection.

#![allow(dead_code)]

use bytes::BytesMut;
use lars_dns::{DnsConfig, DnsServer, DnsStats};
use lars_service::testing::ServiceTask;
pub use lars_service::testing::eventually_async as eventually;
use lars_store::StoreUrl;
use lars_wire::messages::GetRouteResponse;
use lars_wire::{FrameDecoder, Message};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

/// A dns service running inside the test process.
pub struct TestDns {
    pub addr: SocketAddr,
    pub stats: Arc<DnsStats>,
    task: ServiceTask,
}

impl TestDns {
    /// Starts a service on 127.0.0.1:0 with a 100 ms version poll, tweaked by `tweak`.
    pub async fn start(store: StoreUrl, tweak: impl FnOnce(&mut DnsConfig)) -> TestDns {
        let mut config = DnsConfig::default();
        config.reactor.port = 0;
        config.dns.version_poll_ms = 100;
        config.dns.db_retry_max_ms = 300;
        // Every test connection comes from 127.0.0.1: only maxConn limits them.
        config.reactor.hygiene.max_conn_per_peer = config.reactor.max_conn;
        tweak(&mut config);
        let server = DnsServer::bind(&config, store).await.expect("dns binds");
        let addr = server.local_addr();
        let stats = server.stats();
        let task = ServiceTask::spawn("dns", |shutdown| server.run(shutdown));
        let dns = TestDns { addr, stats, task };
        let reloads = dns.stats.clone();
        eventually("first snapshot loaded", Duration::from_secs(20), || {
            let r = DnsStats::get(&reloads.reloads) > 0;
            async move { r }
        })
        .await;
        dns
    }

    pub fn get(&self, counter: impl Fn(&DnsStats) -> &AtomicU64) -> u64 {
        DnsStats::get(counter(&self.stats))
    }

    pub async fn stop(self) {
        self.task.stop(Duration::from_secs(10)).await;
    }
}

/// An agent-side test client of the dns service.
pub struct TestAgent {
    writer: OwnedWriteHalf,
    responses: Responses,
}

impl TestAgent {
    pub async fn connect(addr: SocketAddr) -> TestAgent {
        let stream = TcpStream::connect(addr).await.expect("connect to dns");
        let (reader, writer) = stream.into_split();
        TestAgent {
            writer,
            responses: Responses {
                reader,
                buf: BytesMut::new(),
                decoder: FrameDecoder::new(),
            },
        }
    }

    /// Sends a GetRouteRequest (which also subscribes this connection to the key).
    pub async fn ask(&mut self, modid: i32, cmdid: i32) {
        let out = requests([(modid, cmdid)]);
        self.writer.write_all(&out).await.expect("write request");
    }

    /// Asks for a key and returns the answer.
    pub async fn route(&mut self, modid: i32, cmdid: i32) -> GetRouteResponse {
        self.ask(modid, cmdid).await;
        let response = self
            .next(Duration::from_secs(5))
            .await
            .expect("an answer within 5 s");
        assert_eq!((response.modid, response.cmdid), (modid, cmdid));
        response
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.writer.write_all(bytes).await;
    }

    /// The next GetRouteResponse, or None when nothing arrives within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<GetRouteResponse> {
        self.responses.next(within).await
    }

    /// True when the service closes the connection within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        self.responses.closed_within(within).await
    }

    /// The read side and the write side, to ask and read at the same time from two tasks.
    pub fn split(self) -> (Responses, OwnedWriteHalf) {
        (self.responses, self.writer)
    }
}

/// The read side of a test agent: the frames the service sends, decoded.
pub struct Responses {
    reader: OwnedReadHalf,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl Responses {
    /// The next GetRouteResponse, or None when nothing arrives within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<GetRouteResponse> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.buf)
                .expect("dns sends valid frames")
            {
                match frame.decode().expect("dns sends valid bodies") {
                    Message::GetRouteResponse(r) => return Some(r),
                    other => panic!("dns sent {other:?}"),
                }
            }
            match tokio::time::timeout_at(deadline, self.reader.read_buf(&mut self.buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) => panic!("dns closed the connection"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("read from dns: {e}"),
            }
        }
    }

    /// True when the service closes the connection within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.reader.read_buf(&mut self.buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => self.buf.clear(),
            }
        }
    }
}

/// GetRouteRequest frames for `keys`, back to back.
pub fn requests(keys: impl IntoIterator<Item = (i32, i32)>) -> BytesMut {
    let mut out = BytesMut::new();
    for (modid, cmdid) in keys {
        lars_wire::frame::encode_get_route_request(modid, cmdid, &mut out);
    }
    out
}

/// The hosts of a response as (address, port).
pub fn hosts(response: &GetRouteResponse) -> Vec<(Ipv4Addr, u16)> {
    response
        .host
        .iter()
        .map(|h| (lars_wire::ip::ip_from_wire(h.ip), h.port as u16))
        .collect()
}
