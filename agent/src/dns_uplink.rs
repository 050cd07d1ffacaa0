//! The dns uplink: one thread holding the agent's TCP connection to lars-dns. It takes the
//! workers' route requests from their rings, sends them, and hands every answer or pushed
//! change to the worker of each shard that asked for that route. It remembers which shards asked
//! for which routes (the agent's subscriptions), so after every (re)connect — to the same dns or
//! the next one in the list — it asks for all of them again, and tells the workers to re-ask
//! whatever was waiting on the old connection. Never blocks a worker: a full worker ring drops
//! the update and counts it (the route asks again after `update_timeout`).

use crate::config::UplinkConfig;
use crate::rings::{DnsUplinkRx, RouteUpdate, Wake, WorkerInboxTx};
use crate::route::HostAddr;
use crate::route_table::RouteKey;
use crate::stats::UplinkStats;
use crate::uplink::{Connector, StopSignal};
use crate::worker::WorkerFlags;
use bytes::BytesMut;
use foldhash::HashMap;
use lars_wire::frame::encode_frame;
use lars_wire::messages::{GetRouteRequest, GetRouteResponse};
use lars_wire::{FrameDecoder, Message, MsgId};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

/// One worker as the dns uplink sees it.
pub struct WorkerLink {
    /// Route updates for it.
    pub inbox: WorkerInboxTx,
    /// Its flags.
    pub flags: Arc<WorkerFlags>,
    /// Its wake-up.
    pub wake: Wake,
}

/// Everything the dns uplink is started with.
pub struct DnsUplinkSetup {
    /// lars-dns addresses, in fail-over order.
    pub addrs: Vec<SocketAddr>,
    /// One ring from each worker.
    pub requests: Vec<DnsUplinkRx>,
    /// Fired by the workers' rings and by stop.
    pub wake: Wake,
    /// Every worker, by index.
    pub workers: Vec<WorkerLink>,
    /// Reconnect settings.
    pub config: UplinkConfig,
    /// Counters.
    pub stats: Arc<UplinkStats>,
    /// Raised to stop.
    pub stop: StopSignal,
}

/// Why a connection ended.
enum Ended {
    Stop,
    Lost(String),
}

struct DnsUplink {
    requests: Vec<DnsUplinkRx>,
    wake: Wake,
    workers: Vec<WorkerLink>,
    stats: Arc<UplinkStats>,
    stop: StopSignal,
    /// Route → bit mask of the shards that asked for it.
    subscribed: HashMap<RouteKey, u64>,
}

/// Runs the dns uplink until stopped.
pub async fn run(setup: DnsUplinkSetup) {
    let mut connector = Connector::new("dns", setup.addrs, &setup.config, setup.stats.clone());
    let mut uplink = DnsUplink {
        requests: setup.requests,
        wake: setup.wake,
        workers: setup.workers,
        stats: setup.stats,
        stop: setup.stop,
        subscribed: HashMap::default(),
    };
    loop {
        if uplink.stop.raised() {
            return;
        }
        let wait = match connector.try_connect().await {
            Ok((stream, addr)) => match uplink.serve(stream).await {
                Ended::Stop => return,
                Ended::Lost(reason) => connector.lost(addr, &reason),
            },
            Err(wait) => wait,
        };
        if uplink.idle(wait).await {
            return;
        }
    }
}

impl DnsUplink {
    /// Takes requests off the rings while disconnected, for `wait`; true on stop.
    async fn idle(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.take_requests(None);
            self.stats.pending.set(self.subscribed.len() as u64);
            if self.stop.raised() {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return false,
                _ = self.wake.wait() => {}
            }
        }
    }

    /// Records every waiting request, encoding them into `out` when connected.
    fn take_requests(&mut self, mut out: Option<&mut BytesMut>) {
        for ring in &mut self.requests {
            while let Some(request) = ring.pop() {
                *self.subscribed.entry(request.key).or_default() |= 1u64 << request.shard;
                if let Some(out) = out.as_deref_mut() {
                    encode_request(request.key, out);
                    self.stats.sent.inc();
                }
            }
        }
    }

    async fn serve(&mut self, stream: TcpStream) -> Ended {
        let (mut reader, mut writer) = stream.into_split();
        // The new connection gets every subscription the agent has.
        let mut out = BytesMut::new();
        for key in self.subscribed.keys() {
            encode_request(*key, &mut out);
        }
        self.stats.sent.add(self.subscribed.len() as u64);
        self.stats.pending.set(0);
        for worker in &self.workers {
            worker.flags.dns_reconnected.store(true, Ordering::Release);
            worker.wake.fire();
        }
        let mut input = BytesMut::with_capacity(64 * 1024);
        let mut decoder = FrameDecoder::new();
        loop {
            self.take_requests(Some(&mut out));
            if !out.is_empty() {
                if let Err(e) = writer.write_all(&out).await {
                    return Ended::Lost(format!("write failed: {e}"));
                }
                out.clear();
            }
            if self.stop.raised() {
                return Ended::Stop;
            }
            tokio::select! {
                read = reader.read_buf(&mut input) => match read {
                    Ok(0) => return Ended::Lost("dns closed the connection".into()),
                    Ok(_) => {
                        if let Err(reason) = self.take_answers(&mut decoder, &mut input) {
                            return Ended::Lost(reason);
                        }
                    }
                    Err(e) => return Ended::Lost(format!("read failed: {e}")),
                },
                _ = self.wake.wait() => {}
            }
        }
    }

    /// Hands every complete answer in `input` to the workers.
    fn take_answers(
        &mut self,
        decoder: &mut FrameDecoder,
        input: &mut BytesMut,
    ) -> Result<(), String> {
        while let Some(frame) = decoder
            .decode(input)
            .map_err(|e| format!("bad frame from dns: {e}"))?
        {
            match frame.decode() {
                Ok(Message::GetRouteResponse(response)) => {
                    self.stats.received.inc();
                    self.dispatch(response);
                }
                Ok(other) => {
                    return Err(format!(
                        "dns sent an unexpected message (id {})",
                        other.msg_id().as_i32()
                    ));
                }
                Err(e) => return Err(format!("bad message from dns: {e}")),
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, response: GetRouteResponse) {
        let key = RouteKey::new(response.modid, response.cmdid);
        let Some(&shards) = self.subscribed.get(&key) else {
            self.stats.rejected.inc();
            debug!(%key, "dns answered a route nobody asked for");
            return;
        };
        let mut hosts = Vec::with_capacity(response.host.len());
        for host in &response.host {
            match HostAddr::from_wire(host.ip, host.port) {
                Some(addr) => hosts.push(addr),
                None => {
                    self.stats.rejected.inc();
                    warn!(%key, ip = host.ip, port = host.port, "dns sent a host with a bad port; skipped");
                }
            }
        }
        let hosts: Box<[HostAddr]> = hosts.into_boxed_slice();
        let workers = self.workers.len();
        for shard in 0..64u16 {
            if shards & (1u64 << shard) == 0 {
                continue;
            }
            let worker = &mut self.workers[shard as usize % workers];
            let update = RouteUpdate {
                shard,
                key,
                hosts: hosts.clone(),
            };
            if worker.inbox.push(update).is_err() {
                self.stats.worker_ring_drops.inc();
            }
        }
    }
}

fn encode_request(key: RouteKey, out: &mut BytesMut) {
    let request = GetRouteRequest {
        modid: key.modid,
        cmdid: key.cmdid,
    };
    // A GetRouteRequest is at most 30 bytes: it always fits a frame.
    let _ = encode_frame(MsgId::GetRouteRequest, &request, out);
}
