//! The dns uplink: one thread holding the agent's TCP connection to lars-dns. It takes the
//! workers' route requests from their rings, sends them, and hands every answer or pushed
//! change to the worker of each shard that asked for that route. Never blocks a worker. It keeps
//! reading while it writes, so a long run of requests (every subscription, after a reconnect)
//! never leaves dns's answers unread: lars-dns closes a connection whose answers pile up.
//!
//! # The agent's subscriptions have one owner: this uplink
//! Which routes the agent holds, as far as dns is concerned, is kept here and only here: the
//! [`Subscriptions`] map each key to the shards that asked for it, which is what routing an
//! answer needs anyway. After every (re)connect — to the same dns or the next one in the list —
//! the uplink asks the new connection for exactly the keys it routes, each once; the workers do
//! nothing on a reconnect (their routes that were waiting keep waiting, and the answer to the
//! uplink's ask ends the wait). A worker asks again only by its own route rules: a route due
//! for its periodic re-pull, or one whose answer has not come within `update_timeout`. A
//! shard that evicts a route (its table is bounded) says so with a [`DnsRequest::Forget`] on
//! the same ring: the key leaves the subscriptions when no shard holds it, so a reconnect asks
//! only for what the tables hold. (The protocol has no unsubscribe: the old connection's dns
//! may keep pushing the key until it closes, and [`DnsUplink::dispatch`] drops such answers.)
//!
//! # A full worker inbox
//! A worker's inbox ring can fill when dns answers a burst of new routes faster than the worker
//! applies them. What the full ring refuses waits in that worker's [`InboxOverflow`] (oldest
//! first, bounded at [`OVERFLOW_RINGS`] ring-fulls) and is pushed again, in order and before
//! anything newer, every time the uplink runs, and every [`OVERFLOW_RETRY`] while any overflow
//! is non-empty, so it drains even when dns sends nothing more. Only an update that finds the
//! overflow full too is dropped and counted (the route then asks again after `update_timeout`).
//! Pushes keep the rings' rule: a worker is woken only when its ring goes from empty to
//! non-empty.
//!
//! # A dns that stops answering
//! A frozen or hung lars-dns keeps its connections open, so the uplink watches that it answers
//! ([`crate::uplink::liveness`]): a request met by silence for `answer_timeout`, or a write
//! that makes no progress for `write_stall_timeout`, ends the connection, and the uplink fails
//! over to the next address and asks it for every subscription, as after any reconnect. When
//! the connection has been silent for `probe_interval`, the uplink asks for one route it holds
//! (an ordinary `GetRouteRequest`, which every Lars dns answers); holding none, it asks nothing
//! and has nothing to lose: its next request falls under the answer rule.

use crate::config::UplinkConfig;
use crate::rings::{DnsRequest, DnsUplinkRx, RouteUpdate, Wake, WorkerInboxTx};
use crate::stats::UplinkStats;
use crate::uplink::liveness::{Liveness, LivenessRules, Verdict};
use crate::uplink::{ConnectionClock, Connector, Ended, UplinkStop};
use bytes::BytesMut;
use foldhash::HashMap;
use lars_wire::frame::encode_get_route_request;
use lars_wire::messages::GetRouteResponse;
use lars_wire::{FrameDecoder, HostAddr, Message, RouteKey};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

/// How many ring-fulls of updates a worker's [`InboxOverflow`] holds at most.
pub const OVERFLOW_RINGS: usize = 4;

/// How soon a non-empty overflow is pushed again when nothing else wakes the uplink (the
/// workers do not tell the uplink when they make room).
pub const OVERFLOW_RETRY: Duration = Duration::from_millis(1);

/// One worker as the dns uplink sees it.
pub struct WorkerLink {
    /// Route updates for it (the ring wakes the worker).
    pub inbox: WorkerInboxTx,
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
    pub stop: UplinkStop,
}

struct DnsUplink {
    requests: Vec<DnsUplinkRx>,
    wake: Wake,
    workers: Vec<WorkerLink>,
    stats: Arc<UplinkStats>,
    stop: UplinkStop,
    /// The agent's subscriptions: which shards asked for which route.
    subscribed: Subscriptions,
    /// What each worker's full inbox could not take yet, by worker index.
    overflows: Vec<InboxOverflow>,
}

/// The agent's subscriptions: every route some shard asked dns for, with the shards that asked
/// (a bit per shard index). The one record of which routes the agent holds (see the module
/// docs); it routes each answer and is what a new connection is asked for.
#[derive(Debug, Default)]
pub struct Subscriptions {
    shards: HashMap<RouteKey, u64>,
}

impl Subscriptions {
    /// Records that `shard` asked for `key`.
    pub fn subscribe(&mut self, key: RouteKey, shard: u16) {
        *self.shards.entry(key).or_default() |= 1u64 << shard;
    }

    /// Records that `shard` no longer holds `key`; the key goes when no shard holds it.
    pub fn unsubscribe(&mut self, key: RouteKey, shard: u16) {
        if let Some(shards) = self.shards.get_mut(&key) {
            *shards &= !(1u64 << shard);
            if *shards == 0 {
                self.shards.remove(&key);
            }
        }
    }

    /// The shards that asked for `key` (a bit per shard), or `None` when none did.
    pub fn shards(&self, key: RouteKey) -> Option<u64> {
        self.shards.get(&key).copied()
    }

    /// Every subscribed key, once each, in no order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = RouteKey> + '_ {
        self.shards.keys().copied()
    }

    /// Subscribed keys.
    pub fn len(&self) -> usize {
        self.shards.len()
    }
}

/// Runs the dns uplink until stopped.
pub async fn run(setup: DnsUplinkSetup) {
    let mut connector = Connector::new(
        "dns",
        setup.addrs,
        &setup.config,
        LivenessRules::dns(&setup.config),
        setup.stats.clone(),
    );
    let overflows = setup
        .workers
        .iter()
        .map(|worker| InboxOverflow::new(OVERFLOW_RINGS * worker.inbox.capacity()))
        .collect();
    let mut uplink = DnsUplink {
        requests: setup.requests,
        wake: setup.wake,
        workers: setup.workers,
        stats: setup.stats,
        stop: setup.stop,
        subscribed: Subscriptions::default(),
        overflows,
    };
    loop {
        if uplink.stop.raised() {
            return;
        }
        let wait = match connector.try_connect().await {
            Ok((stream, addr)) => {
                let ended = uplink.serve(stream, connector.rules()).await;
                match connector.ended(addr, ended) {
                    Some(wait) => wait,
                    None => return,
                }
            }
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
            let overflowing = self.push_overflows();
            if self.stop.raised() {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return false,
                _ = self.wake.wait() => {}
                _ = tokio::time::sleep(OVERFLOW_RETRY), if overflowing => {}
            }
        }
    }

    /// Records every waiting request, encoding them into `out` when connected; returns how
    /// many were encoded.
    fn take_requests(&mut self, mut out: Option<&mut BytesMut>) -> u64 {
        let mut encoded = 0;
        for ring in &mut self.requests {
            while let Some(request) = ring.pop() {
                match request {
                    DnsRequest::Ask { shard, key } => {
                        self.subscribed.subscribe(key, shard);
                        if let Some(out) = out.as_deref_mut() {
                            encode_request(key, out);
                            encoded += 1;
                        }
                    }
                    DnsRequest::Forget { shard, key } => self.subscribed.unsubscribe(key, shard),
                }
            }
        }
        self.stats.sent.add(encoded);
        encoded
    }

    /// Serves one connection until it ends: asks, reads answers, and watches that dns still
    /// answers ([`Liveness`] under `rules`).
    async fn serve(&mut self, stream: TcpStream, rules: LivenessRules) -> Ended {
        let clock = ConnectionClock::start();
        let mut liveness = Liveness::new(rules, clock.now());
        let (mut reader, mut writer) = stream.into_split();
        // The new connection is asked for every subscription the agent has, each once; the
        // workers do not ask again (see the module docs).
        let mut out = BytesMut::new();
        for key in self.subscribed.keys() {
            encode_request(key, &mut out);
        }
        self.stats.sent.add(self.subscribed.len() as u64);
        liveness.asked(self.subscribed.len() as u64, clock.now());
        self.stats.pending.set(0);
        let mut input = BytesMut::with_capacity(64 * 1024);
        let mut decoder = FrameDecoder::new();
        loop {
            let asked = self.take_requests(Some(&mut out));
            let now = clock.now();
            liveness.asked(asked, now);
            let overflowing = self.push_overflows();
            if self.stop.raised() {
                return Ended::Stop;
            }
            match liveness.check(now) {
                Verdict::Alive => {}
                Verdict::Dead(failure) => return Ended::Dead(failure),
                // Any held route will do: its answer proves dns alive, and refreshes the route
                // like a periodic re-pull. Lars dns answers this from every version.
                Verdict::Probe => match self.subscribed.keys().next() {
                    Some(key) => {
                        encode_request(key, &mut out);
                        self.stats.sent.inc();
                        self.stats.probes.inc();
                        liveness.asked(1, now);
                    }
                    None => liveness.nothing_to_probe(now),
                },
            }
            liveness.writing(!out.is_empty(), now);
            tokio::select! {
                read = reader.read_buf(&mut input) => match read {
                    Ok(0) => return Ended::Lost("dns closed the connection".into()),
                    Ok(_) => match self.take_answers(&mut decoder, &mut input) {
                        Ok(answers) => liveness.heard(answers, clock.now()),
                        Err(reason) => return Ended::Lost(reason),
                    },
                    Err(e) => return Ended::Lost(format!("read failed: {e}")),
                },
                // Written while reading, never instead: lars-dns answers as it reads, and closes
                // a connection whose answers pile up unread.
                written = writer.write_buf(&mut out), if !out.is_empty() => match written {
                    Ok(0) => return Ended::Lost("write failed: dns takes no more".into()),
                    Ok(_) => liveness.wrote(clock.now()),
                    Err(e) => return Ended::Lost(format!("write failed: {e}")),
                },
                _ = self.wake.wait() => {}
                _ = tokio::time::sleep(OVERFLOW_RETRY), if overflowing => {}
                _ = clock.until(liveness.next_check()) => {}
            }
        }
    }

    /// Pushes every worker's overflow into its ring as far as there is room; true while any
    /// overflow still holds updates.
    fn push_overflows(&mut self) -> bool {
        let mut waiting = 0;
        for (overflow, worker) in self.overflows.iter_mut().zip(&mut self.workers) {
            waiting += overflow.push(&mut worker.inbox);
        }
        self.stats.overflow.set(waiting as u64);
        waiting > 0
    }

    /// Hands every complete answer in `input` to the workers; returns how many there were.
    fn take_answers(
        &mut self,
        decoder: &mut FrameDecoder,
        input: &mut BytesMut,
    ) -> Result<u64, String> {
        let mut answers = 0;
        while let Some(frame) = decoder
            .decode(input)
            .map_err(|e| format!("bad frame from dns: {e}"))?
        {
            match frame.decode() {
                Ok(Message::GetRouteResponse(response)) => {
                    self.stats.received.inc();
                    answers += 1;
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
        Ok(answers)
    }

    fn dispatch(&mut self, response: GetRouteResponse) {
        let key = RouteKey::new(response.modid, response.cmdid);
        let Some(shards) = self.subscribed.shards(key) else {
            self.stats.rejected.inc();
            debug!(%key, "dns answered a route nobody asked for");
            return;
        };
        let mut hosts = Vec::with_capacity(response.host.len());
        for host in &response.host {
            match HostAddr::try_from(host) {
                Ok(addr) => hosts.push(addr),
                Err(bad) => {
                    self.stats.rejected.inc();
                    warn!(%key, error = %bad, "dns sent a host with a bad port; skipped");
                }
            }
        }
        let hosts: Box<[HostAddr]> = hosts.into_boxed_slice();
        let workers = self.workers.len();
        for shard in 0..64u16 {
            if shards & (1u64 << shard) == 0 {
                continue;
            }
            let index = shard as usize % workers;
            let update = RouteUpdate {
                shard,
                key,
                hosts: hosts.clone(),
                removed: response.removed,
            };
            if !self.overflows[index].deliver(&mut self.workers[index].inbox, update) {
                self.stats.worker_ring_drops.inc();
            }
        }
    }
}

/// The route updates a worker's inbox refused because it was full, oldest first, waiting for
/// the worker to make room. Updates leave it in the order they came, and none overtakes it, so a
/// worker applies a route's updates in the order dns sent them. Holds at most `limit`; an update
/// beyond that is refused (and counted as a drop by the caller).
#[derive(Debug)]
pub struct InboxOverflow {
    waiting: VecDeque<RouteUpdate>,
    limit: usize,
}

impl InboxOverflow {
    /// An empty overflow that holds at most `limit` updates.
    pub fn new(limit: usize) -> InboxOverflow {
        InboxOverflow {
            waiting: VecDeque::new(),
            limit,
        }
    }

    /// Hands `update` to `inbox` after everything already waiting, or keeps it if the inbox is
    /// full. False when it was dropped: the inbox and the overflow are both full.
    pub fn deliver(&mut self, inbox: &mut WorkerInboxTx, update: RouteUpdate) -> bool {
        let update = if self.push(inbox) == 0 {
            match inbox.push(update) {
                Ok(()) => return true,
                Err(refused) => refused,
            }
        } else {
            update
        };
        if self.waiting.len() >= self.limit {
            return false;
        }
        self.waiting.push_back(update);
        true
    }

    /// Moves waiting updates into `inbox`, oldest first, until it is full; returns how many
    /// are still waiting.
    pub fn push(&mut self, inbox: &mut WorkerInboxTx) -> usize {
        while let Some(update) = self.waiting.pop_front() {
            if let Err(refused) = inbox.push(update) {
                self.waiting.push_front(refused);
                break;
            }
        }
        self.waiting.len()
    }

    /// How many updates are waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether none is waiting.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

fn encode_request(key: RouteKey, out: &mut BytesMut) {
    encode_get_route_request(key.modid, key.cmdid, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Millis;
    use crate::lb::{LbSettings, RouteTable};
    use crate::rings::ring;
    use crate::uplink::liveness::LivenessFailure;
    use lars_wire::MsgId;
    use lars_wire::frame::encode_frame;
    use lars_wire::messages::HostInfo;
    use std::net::Ipv4Addr;
    use tokio::net::TcpListener;

    fn update(cmdid: i32) -> RouteUpdate {
        RouteUpdate {
            shard: 0,
            key: RouteKey::new(1, cmdid),
            hosts: vec![HostAddr::new(Ipv4Addr::new(10, 0, 0, 1), 9000)].into_boxed_slice(),
            removed: false,
        }
    }

    fn cmdids(inbox: &mut crate::rings::WorkerInboxRx) -> Vec<i32> {
        std::iter::from_fn(|| inbox.pop())
            .map(|u| u.key.cmdid)
            .collect()
    }

    #[test]
    fn updates_beyond_a_full_inbox_arrive_in_order_once_the_worker_drains() {
        let wake = Wake::with_eventfd().unwrap();
        let eventfd = wake.eventfd().unwrap();
        let (mut tx, mut rx) = ring(4, wake.clone());
        let mut overflow = InboxOverflow::new(OVERFLOW_RINGS * tx.capacity());
        for cmdid in 1..=10 {
            assert!(overflow.deliver(&mut tx, update(cmdid)), "{cmdid} dropped");
        }
        assert_eq!(overflow.len(), 6);
        // One wake-up: the ring went from empty to non-empty once.
        assert_eq!(eventfd.take(), Some(1));
        assert_eq!(overflow.push(&mut tx), 6, "the worker has made no room yet");
        assert_eq!(eventfd.take(), None);

        assert_eq!(cmdids(&mut rx), [1, 2, 3, 4]);
        assert_eq!(overflow.push(&mut tx), 2);
        assert_eq!(eventfd.take(), Some(1), "the drained ring got items again");
        assert_eq!(cmdids(&mut rx), [5, 6, 7, 8]);
        assert_eq!(overflow.push(&mut tx), 0);
        assert!(overflow.is_empty());
        assert_eq!(cmdids(&mut rx), [9, 10]);
    }

    #[test]
    fn a_full_overflow_drops_and_nothing_overtakes_what_waits() {
        let (mut tx, mut rx) = ring(2, Wake::new());
        let mut overflow = InboxOverflow::new(3);
        for cmdid in 1..=5 {
            assert!(overflow.deliver(&mut tx, update(cmdid)));
        }
        assert!(
            !overflow.deliver(&mut tx, update(6)),
            "ring and overflow full"
        );
        assert_eq!(overflow.len(), 3);
        // The worker takes one: the next update still queues behind the waiting ones.
        assert_eq!(rx.pop().map(|u| u.key.cmdid), Some(1));
        assert!(overflow.deliver(&mut tx, update(7)));
        let mut seen = Vec::new();
        loop {
            seen.extend(cmdids(&mut rx));
            if overflow.push(&mut tx) == 0 && rx.is_empty() {
                break;
            }
        }
        assert_eq!(seen, [2, 3, 4, 5, 7]);
    }

    /// A running uplink to `dns` with one worker whose inbox holds `inbox` updates, and the
    /// worker's ends.
    struct Running {
        requests: crate::rings::DnsUplinkTx,
        inbox_rx: crate::rings::WorkerInboxRx,
        worker_wake: Wake,
        stats: Arc<UplinkStats>,
        stop: UplinkStop,
        uplink: tokio::task::JoinHandle<()>,
    }

    fn start(dns: SocketAddr, inbox: usize, config: UplinkConfig) -> Running {
        start_on(vec![dns], inbox, config)
    }

    fn start_on(addrs: Vec<SocketAddr>, inbox: usize, config: UplinkConfig) -> Running {
        let uplink_wake = Wake::new();
        let (requests, requests_rx) = ring(64, uplink_wake.clone());
        let worker_wake = Wake::new();
        let (inbox, inbox_rx) = ring(inbox, worker_wake.clone());
        let stats = Arc::new(UplinkStats::default());
        let stop = UplinkStop::new(uplink_wake.clone());
        let uplink = tokio::spawn(run(DnsUplinkSetup {
            addrs,
            requests: vec![requests_rx],
            wake: uplink_wake,
            workers: vec![WorkerLink { inbox }],
            config,
            stats: stats.clone(),
            stop: stop.clone(),
        }));
        Running {
            requests,
            inbox_rx,
            worker_wake,
            stats,
            stop,
            uplink,
        }
    }

    /// Reads the agent's `GetRouteRequest`s from `stream` until `done` says the list so far is
    /// complete; returns them in the order they came.
    async fn read_requests(
        stream: &mut TcpStream,
        done: impl Fn(&[RouteKey]) -> bool,
    ) -> Vec<RouteKey> {
        let mut input = BytesMut::new();
        let mut decoder = FrameDecoder::new();
        let mut asked = Vec::new();
        while !done(&asked) {
            assert!(
                stream.read_buf(&mut input).await.unwrap() > 0,
                "agent hung up after {asked:?}"
            );
            while let Some(frame) = decoder.decode(&mut input).unwrap() {
                match frame.decode().unwrap() {
                    Message::GetRouteRequest(r) => asked.push(RouteKey::from(&r)),
                    other => panic!("{other:?}"),
                }
            }
        }
        asked
    }

    fn answer(key: RouteKey) -> BytesMut {
        let answer = GetRouteResponse {
            modid: key.modid,
            cmdid: key.cmdid,
            host: vec![HostInfo::from(HostAddr::new(
                Ipv4Addr::new(10, 0, 0, 1),
                9000,
            ))],
            removed: false,
        };
        let mut out = BytesMut::new();
        encode_frame(MsgId::GetRouteResponse, &answer, &mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn after_a_reconnect_every_subscribed_key_is_asked_exactly_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = UplinkConfig {
            reconnect_min_ms: 1,
            reconnect_max_ms: 1,
            ..UplinkConfig::default()
        };
        let Running {
            mut requests,
            mut inbox_rx,
            worker_wake,
            stop,
            uplink,
            ..
        } = start(addr, 64, config);

        // The test plays the worker: two shards' tables, whose callers' asks go on the ring.
        let mut tables = [
            RouteTable::new(LbSettings::default()),
            RouteTable::new(LbSettings::default()),
        ];
        let mut get_host = |shard: u16, key: RouteKey, now: Millis| {
            let (_, ask) = tables[usize::from(shard)].get_host(key, now);
            if let Some(ask) = ask {
                requests
                    .push(DnsRequest::Ask {
                        shard,
                        key: ask.key,
                    })
                    .unwrap();
            }
            ask.is_some()
        };
        // Shard 0's callers ask for five routes, shard 1's for one of them too: six asks.
        let keys: Vec<RouteKey> = (1..=5).map(|cmdid| RouteKey::new(1, cmdid)).collect();
        for &key in &keys {
            assert!(get_host(0, key, Millis::ZERO));
        }
        assert!(get_host(1, keys[2], Millis::ZERO));
        let (mut first, _) = listener.accept().await.unwrap();
        let asked = read_requests(&mut first, |asked| asked.len() == 6).await;
        assert_eq!(asked.len(), 6);
        // dns answers two of them, then the connection drops: three were still waiting.
        first.write_all(&answer(keys[0])).await.unwrap();
        first.write_all(&answer(keys[1])).await.unwrap();
        drop(first);

        let (mut second, _) = listener.accept().await.unwrap();
        // Callers keep asking for every route after the reconnect: the shards ask dns for
        // nothing again, answered or still waiting (within `update_timeout`).
        for &key in &keys {
            assert!(!get_host(0, key, Millis::from_secs(1)), "{key} asked again");
        }
        assert!(!get_host(1, keys[2], Millis::from_secs(1)));
        // A new route asked for after the reconnect: the uplink sends it after the re-asks of
        // the subscriptions, so once it arrives every re-ask has.
        let fence = RouteKey::new(9, 9);
        assert!(get_host(0, fence, Millis::from_secs(1)));
        let mut asked = read_requests(&mut second, |asked| asked.contains(&fence)).await;
        assert_eq!(asked.pop(), Some(fence), "the fence comes last");
        asked.sort_unstable();
        assert_eq!(asked, keys, "each subscribed key once, answered or not");

        // Answers on the new connection still reach every shard that asked.
        second.write_all(&answer(keys[2])).await.unwrap();
        let mut updates = Vec::new();
        let arrived = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                while let Some(update) = inbox_rx.pop() {
                    if update.key == keys[2] {
                        updates.push(update.shard);
                    }
                }
                if updates.len() == 2 {
                    break;
                }
                worker_wake.wait().await;
            }
        })
        .await;
        assert!(arrived.is_ok(), "only shards {updates:?} got the answer");
        updates.sort_unstable();
        assert_eq!(updates, [0, 1]);

        stopped(stop, uplink).await;
    }

    /// A dns that answers every route it is asked for, all at once, once it has `expect`
    /// requests, and then sends nothing more (the connection stays open).
    async fn dns_answering(listener: TcpListener, expect: usize) {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut input = BytesMut::new();
        let mut decoder = FrameDecoder::new();
        let mut asked = Vec::new();
        while asked.len() < expect {
            assert!(
                stream.read_buf(&mut input).await.unwrap() > 0,
                "agent hung up"
            );
            while let Some(frame) = decoder.decode(&mut input).unwrap() {
                match frame.decode().unwrap() {
                    Message::GetRouteRequest(r) => asked.push((r.modid, r.cmdid)),
                    other => panic!("{other:?}"),
                }
            }
        }
        asked.sort_unstable();
        let mut out = BytesMut::new();
        for (modid, cmdid) in asked {
            let answer = GetRouteResponse {
                modid,
                cmdid,
                host: vec![HostInfo {
                    ip: 0x0a00_0001,
                    port: 9000,
                }],
                removed: false,
            };
            encode_frame(MsgId::GetRouteResponse, &answer, &mut out).unwrap();
        }
        stream.write_all(&out).await.unwrap();
        std::future::pending::<()>().await;
    }

    #[tokio::test]
    async fn a_forgotten_key_is_not_asked_after_a_reconnect_unless_another_shard_holds_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = UplinkConfig {
            reconnect_min_ms: 1,
            reconnect_max_ms: 1,
            ..UplinkConfig::default()
        };
        let mut running = start(listener.local_addr().unwrap(), 64, config);
        let [a, b, c] = [1, 2, 3].map(|cmdid| RouteKey::new(1, cmdid));
        for (shard, key) in [(0, a), (0, b), (0, c), (1, c)] {
            running
                .requests
                .push(DnsRequest::Ask { shard, key })
                .unwrap();
        }
        let mut first = accept(&listener).await;
        read_requests(&mut first, |asked| asked.len() == 4).await;
        // Shard 0 evicts b and c; shard 1 still holds c.
        for key in [b, c] {
            running
                .requests
                .push(DnsRequest::Forget { shard: 0, key })
                .unwrap();
        }
        drop(first);
        let mut second = accept(&listener).await;
        let fence = RouteKey::new(9, 9);
        running
            .requests
            .push(DnsRequest::Ask {
                shard: 0,
                key: fence,
            })
            .unwrap();
        let mut asked = read_requests(&mut second, |asked| asked.contains(&fence)).await;
        asked.sort_unstable();
        assert_eq!(asked, [a, c, fence]);
        stopped(running.stop, running.uplink).await;
    }

    #[tokio::test]
    async fn a_burst_bigger_than_the_inbox_reaches_the_worker_without_more_dns_traffic() {
        const ROUTES: i32 = 40;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dns = tokio::spawn(dns_answering(listener, ROUTES as usize));

        let Running {
            mut requests,
            mut inbox_rx,
            worker_wake,
            stats,
            stop,
            uplink,
        } = start(addr, 8, UplinkConfig::default());
        for cmdid in 1..=ROUTES {
            let key = RouteKey::new(1, cmdid);
            requests.push(DnsRequest::Ask { shard: 0, key }).unwrap();
        }

        // The worker: woken when its inbox gets items, takes them all, waits again. dns sends
        // the 40 answers once, into an inbox of 8.
        let mut seen = Vec::new();
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while seen.len() < ROUTES as usize {
                worker_wake.wait().await;
                seen.extend(cmdids(&mut inbox_rx));
            }
        })
        .await;
        assert!(drained.is_ok(), "only {seen:?} arrived");
        assert_eq!(
            seen,
            (1..=ROUTES).collect::<Vec<_>>(),
            "in the order dns sent"
        );
        assert_eq!(stats.worker_ring_drops.get(), 0);
        assert_eq!(stats.received.get(), ROUTES as u64);
        assert_eq!(stats.overflow.get(), 0);

        stopped(stop, uplink).await;
        dns.abort();
    }

    /// Waits for the worker's inbox to get an update for `key`.
    async fn update_for(key: RouteKey, inbox: &mut crate::rings::WorkerInboxRx, wake: &Wake) {
        let arrived = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                while let Some(update) = inbox.pop() {
                    if update.key == key {
                        return;
                    }
                }
                wake.wait().await;
            }
        })
        .await;
        assert!(arrived.is_ok(), "no update for {key}");
    }

    /// The next connection to `listener`; fails the test when none comes within 10 s.
    async fn accept(listener: &TcpListener) -> TcpStream {
        let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
        accepted.expect("the uplink connects").unwrap().0
    }

    /// The next requests the agent sends on `stream`; fails the test when none comes within
    /// 10 s.
    async fn next_requests(stream: &mut TcpStream) -> Vec<RouteKey> {
        let asked = read_requests(stream, |asked| !asked.is_empty());
        let asked = tokio::time::timeout(Duration::from_secs(10), asked).await;
        asked.expect("the agent asks")
    }

    /// A dns and its backup, and an uplink to them (failing over at once, calling a peer dead
    /// after 1 s of silence, probing after 200 ms) whose worker asked for `key`.
    async fn two_dns_asked_for(key: RouteKey) -> (TcpListener, TcpListener, Running) {
        let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backup = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = vec![first.local_addr().unwrap(), backup.local_addr().unwrap()];
        let config = UplinkConfig {
            reconnect_min_ms: 1,
            reconnect_max_ms: 1,
            // Long enough that a loaded test machine never delays an answer past it.
            answer_timeout_ms: 1000,
            probe_interval_ms: 200,
            ..UplinkConfig::default()
        };
        let mut running = start_on(addrs, 64, config);
        running
            .requests
            .push(DnsRequest::Ask { shard: 0, key })
            .unwrap();
        (first, backup, running)
    }

    /// Stops the uplink and waits until it has.
    async fn stopped(stop: UplinkStop, uplink: tokio::task::JoinHandle<()>) {
        stop.raise();
        tokio::time::timeout(Duration::from_secs(5), uplink)
            .await
            .expect("the uplink stops")
            .unwrap();
    }

    #[tokio::test]
    async fn a_dns_that_leaves_a_request_unanswered_is_left_for_the_next_address() {
        let key = RouteKey::new(1, 1);
        let (frozen, backup, mut running) = two_dns_asked_for(key).await;

        // The first dns takes the request and never answers; its connection stays open.
        let mut first = accept(&frozen).await;
        assert_eq!(next_requests(&mut first).await, [key]);
        let mut second = accept(&backup).await;
        assert_eq!(
            next_requests(&mut second).await,
            [key],
            "the next dns is asked for the subscription"
        );
        second.write_all(&answer(key)).await.unwrap();
        update_for(key, &mut running.inbox_rx, &running.worker_wake).await;
        assert_eq!(running.stats.dead_for(LivenessFailure::Unanswered), 1);
        assert_eq!(running.stats.failovers.get(), 1);
        assert_eq!(running.stats.up.get(), 1);

        stopped(running.stop, running.uplink).await;
        drop(first);
    }

    #[tokio::test]
    async fn a_silent_connection_is_probed_with_a_held_route_and_left_when_the_probe_goes_unanswered()
     {
        let key = RouteKey::new(2, 7);
        let (hangs, backup, mut running) = two_dns_asked_for(key).await;

        // The first dns answers, then hangs: the next request it gets is the probe.
        let mut first = accept(&hangs).await;
        assert_eq!(next_requests(&mut first).await, [key]);
        first.write_all(&answer(key)).await.unwrap();
        update_for(key, &mut running.inbox_rx, &running.worker_wake).await;
        assert_eq!(
            next_requests(&mut first).await,
            [key],
            "the probe asks for the held route"
        );
        let mut second = accept(&backup).await;
        assert_eq!(next_requests(&mut second).await, [key]);
        assert_eq!(running.stats.probes.get(), 1);
        assert_eq!(running.stats.dead_for(LivenessFailure::Unanswered), 1);
        assert_eq!(running.stats.failovers.get(), 1);

        // A dns that answers the probes keeps the connection.
        second.write_all(&answer(key)).await.unwrap();
        for _ in 0..3 {
            assert_eq!(next_requests(&mut second).await, [key]);
            second.write_all(&answer(key)).await.unwrap();
        }
        assert_eq!(running.stats.dead_for(LivenessFailure::Unanswered), 1);
        assert!(running.stats.probes.get() >= 4);

        stopped(running.stop, running.uplink).await;
        drop(first);
    }
}
