//! One agent connection: reads `GetRouteRequest` frames, subscribes the connection to each key
//! and answers it from the current snapshot, and forwards pushed route changes for the keys it
//! subscribed to. Writes go through the connection's own [`WriteQueue`] to a writer task, so
//! nobody else ever waits for this agent, with three rules:
//!
//! - an answer waits for room: while the request at hand has none, the connection reads no more
//!   requests (the agent's writes then back up in TCP), but still takes pushes and shutdown. An
//!   agent re-asking every route it holds after a reconnect is served at the pace it reads.
//! - a push never waits and is never dropped: a changed key that finds the queue full is *owed*
//!   ([`Subscriptions::owe`]), once however often it changes, and while any key is owed new
//!   changes join the owed keys. As the queue drains, owed keys are written from the snapshot
//!   current then, each once: a slow agent is caught up with the newest state of what changed,
//!   and its connection holds one queue plus one mark per subscription, however many changes it
//!   missed. A connection that missed whole change batches (broadcast lag) owes every
//!   subscription. Answers take at most half the queue, so a burst of them leaves room for
//!   pushes.
//! - an agent that reads nothing at all is closed: when the socket takes no byte for
//!   `stalled_reader_timeout` while frames wait ([`WriterEnd::Stalled`]), the connection is
//!   closed, logged and counted as a slow reader.
//!
//! At shutdown the writer gets [`SHUTDOWN_DRAIN`] to hand over what is queued; an agent that does
//! not take it by then is cut (logged and counted), so a stalled agent never holds up a stop.
//! A protocol error closes this connection only. So do the hygiene rules
//! ([`lars_service::admission`]): no complete frame for `idle_timeout`, a frame unfinished for
//! `frame_timeout` (neither runs while requests are not being read), eviction for a new
//! connection, or the largest unfinished frame past `max_pending_bytes`.
//!
//! Requests are decoded one at a time; the one waiting for room is kept as its key, and its answer
//! is read from the snapshot only once it has a place in the queue, when the connection also
//! subscribes to it. Every frame, answer, push or owed key, is read from the snapshot current when
//! it takes its place in the queue, and snapshots only move forward, so an answer is never older
//! than a push queued before it, nor a push older than an answer.

use crate::shared::DnsShared;
use crate::stats::DnsStats;
use crate::subscriptions::{Subscribed, Subscriptions};
use crate::write_queue::{AnswerSlot, PushSlot, QueueError, WriteQueue, WriterEnd};
use bytes::BytesMut;
use lars_service::admission::{HygieneClose, Ticket};
use lars_wire::RouteKey;
use lars_wire::{FrameDecoder, Message, WireError};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// How long a connection's writer may go on handing queued frames to the agent once the service
/// stops. An agent that reads takes a whole queue (4,096 frames, a few MB) in milliseconds even
/// over a WAN link; waiting longer for one that does not only delays the restart.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);

/// Why a connection ended.
#[derive(Debug)]
enum Close {
    PeerClosed,
    Shutdown,
    ReadError(std::io::Error),
    Protocol(WireError),
    UnexpectedMessage(i32),
    /// Closed by the hygiene rules.
    Hygiene(HygieneClose),
    /// The writer is gone; why is in its [`WriterEnd`].
    WriterGone,
    /// The writer ended, for this reason.
    Writer(WriterEnd),
}

impl From<QueueError> for Close {
    fn from(e: QueueError) -> Close {
        match e {
            // Only `WriteQueue::push` reports a full queue, and the connection does not use it.
            QueueError::Full | QueueError::WriterGone => Close::WriterGone,
        }
    }
}

/// The writer task's end, a panicked or aborted writer counting as a failed write.
fn writer_end(joined: Result<WriterEnd, tokio::task::JoinError>) -> WriterEnd {
    joined.unwrap_or_else(|e| WriterEnd::Failed(std::io::Error::other(e)))
}

/// Serves one accepted connection until the peer closes, misbehaves or stops reading, or the
/// service shuts down.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<DnsShared>,
    mut ticket: Ticket,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut changes = shared.changes.subscribe();
    let (mut reader, writer) = stream.into_split();
    let (queue, queued) = WriteQueue::new(shared.write_queue);
    let mut writer = tokio::spawn(queued.write_to(writer, shared.stalled_reader_timeout));
    let mut conn = Connection {
        peer,
        queue,
        subs: Subscriptions::new(shared.stats.clone(), shared.max_subscriptions),
        shared,
        buf: BytesMut::new(),
        decoder: FrameDecoder::new(),
        waiting: None,
        frames: 0,
        warned_not_a_route: false,
    };
    let mut timer = ticket.read_timer();

    let close = loop {
        tokio::select! {
            // Only once every request read so far is answered: `buf` holds no whole frame then.
            read = reader.read_buf(&mut conn.buf), if conn.waiting.is_none() => match read {
                Ok(0) => break Close::PeerClosed,
                Ok(_) => {
                    let before = conn.frames;
                    let answered = conn.answer_requests();
                    let (frames, partial) = (conn.frames - before, conn.partial_len());
                    timer.read(std::time::Instant::now(), frames as usize, partial);
                    ticket.read(frames as usize, partial);
                    if let Err(close) = answered {
                        break close;
                    }
                }
                Err(e) => break Close::ReadError(e),
            },
            // The read deadlines run only while requests are being read.
            timed_out = sleep_until(timer.deadline()), if conn.waiting.is_none() => {
                break Close::Hygiene(timed_out.into());
            }
            evicted = ticket.closed() => break Close::Hygiene(evicted.into()),
            slot = conn.queue.answer_slot(), if conn.waiting.is_some() => {
                let answered = slot.map_err(Close::from).and_then(|slot| {
                    conn.answer_waiting(slot);
                    conn.answer_requests()
                });
                // Answering the request that waited counts as its frame arriving now: the
                // agent's frames were held up by this side, not its own.
                let partial = conn.partial_len();
                timer.read(std::time::Instant::now(), 1, partial);
                ticket.read(1, partial);
                if let Err(close) = answered {
                    break close;
                }
            }
            slot = conn.queue.push_slot(), if conn.subs.owes_any() => {
                if let Err(close) = slot.map_err(Close::from).and_then(|slot| conn.catch_up(slot)) {
                    break close;
                }
            }
            change = changes.recv() => {
                let pushed = match change {
                    Ok(batch) => conn.push(&batch.keys),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        conn.lagged(missed);
                        Ok(())
                    }
                    Err(broadcast::error::RecvError::Closed) => Err(Close::Shutdown),
                };
                if let Err(close) = pushed {
                    break close;
                }
            }
            end = &mut writer => break Close::Writer(writer_end(end)),
            _ = shutdown.changed() => break Close::Shutdown,
        }
    };
    // A queue error means the writer has ended or is ending: its end says why.
    let close = match close {
        Close::WriterGone => Close::Writer(writer_end((&mut writer).await)),
        close => close,
    };

    let subscriptions = conn.subs.len();
    let owed = conn.subs.owed();
    let stats = conn.shared.stats.clone();
    match &close {
        Close::PeerClosed => {
            DnsStats::inc(&stats.peer_closed);
            debug!(%peer, subscriptions, "connection closed");
        }
        Close::Shutdown => debug!(%peer, subscriptions, "connection closed at shutdown"),
        Close::Hygiene(why) => stats.hygiene.record(*why, peer),
        Close::ReadError(e) => {
            DnsStats::inc(&stats.read_errors);
            info!(%peer, subscriptions, error = %e, "connection read failed");
        }
        Close::Protocol(e) => {
            DnsStats::inc(&stats.protocol_errors);
            warn!(%peer, error = %e, "protocol error; closing connection");
        }
        Close::UnexpectedMessage(msgid) => {
            DnsStats::inc(&stats.protocol_errors);
            warn!(%peer, msgid, "unexpected message id (dns only takes GetRouteRequest, id 1); closing connection");
        }
        Close::Writer(WriterEnd::Stalled) => {
            DnsStats::inc(&stats.slow_closed);
            warn!(%peer, subscriptions, owed, timeout = ?conn.shared.stalled_reader_timeout,
                "agent read nothing for the stalled-reader timeout; closing connection");
        }
        Close::Writer(WriterEnd::Failed(e)) => {
            DnsStats::inc(&stats.write_errors);
            debug!(%peer, error = %e, "connection write failed");
        }
        Close::Writer(WriterEnd::Drained) | Close::WriterGone => {
            DnsStats::inc(&stats.write_errors);
            debug!(%peer, "connection writer ended early");
        }
    }
    drop(conn);
    match close {
        // The writer has ended already.
        Close::Writer(_) | Close::WriterGone => {}
        Close::Protocol(_) | Close::UnexpectedMessage(_) | Close::Hygiene(_) => writer.abort(),
        Close::Shutdown => drain(writer, peer, &stats).await,
        // The writer flushes what was queued, then closes its half; an agent that reads nothing
        // meanwhile is cut by the stalled-reader timeout.
        Close::PeerClosed | Close::ReadError(_) => {
            let _ = writer.await;
        }
    }
}

/// Resolves at the timer's deadline with why it ran out.
async fn sleep_until(
    (at, why): (std::time::Instant, lars_service::admission::TimedOut),
) -> lars_service::admission::TimedOut {
    tokio::time::sleep_until(at.into()).await;
    why
}

/// Lets the writer hand the agent what is queued for at most [`SHUTDOWN_DRAIN`], then cuts it.
async fn drain(mut writer: JoinHandle<WriterEnd>, peer: SocketAddr, stats: &DnsStats) {
    match tokio::time::timeout(SHUTDOWN_DRAIN, &mut writer).await {
        Ok(end) => debug!(%peer, end = ?writer_end(end), "connection drained at shutdown"),
        Err(_) => {
            writer.abort();
            DnsStats::inc(&stats.drain_cut);
            warn!(%peer, drain = ?SHUTDOWN_DRAIN,
                "agent did not take its last frames at shutdown; cutting the connection");
        }
    }
}

struct Connection {
    peer: SocketAddr,
    queue: WriteQueue,
    subs: Subscriptions,
    shared: Arc<DnsShared>,
    /// Bytes read and not yet decoded.
    buf: BytesMut,
    decoder: FrameDecoder,
    /// The request read but not answered yet, for want of room in the queue; nothing more is
    /// read while there is one.
    waiting: Option<RouteKey>,
    /// Complete frames read.
    frames: u64,
    /// Whether a request for a key no route can have was logged (once per connection).
    warned_not_a_route: bool,
}

impl Connection {
    /// Bytes of the unfinished frame held.
    fn partial_len(&self) -> usize {
        self.decoder.partial_len(&self.buf)
    }

    /// Answers the requests in `buf` in order while the queue has room for their answers; the
    /// first one without room waits in `waiting`.
    fn answer_requests(&mut self) -> Result<(), Close> {
        while let Some(key) = self.next_request()? {
            match self.queue.try_answer_slot()? {
                Some(slot) => self.answer(key, slot),
                None => {
                    self.waiting = Some(key);
                    DnsStats::inc(&self.shared.stats.paused);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Answers the request that waited for `slot`.
    fn answer_waiting(&mut self, slot: AnswerSlot) {
        if let Some(key) = self.waiting.take() {
            DnsStats::sub(&self.shared.stats.paused, 1);
            self.answer(key, slot);
        }
    }

    /// The next whole request in `buf`, if any.
    fn next_request(&mut self) -> Result<Option<RouteKey>, Close> {
        let Some(frame) = self
            .decoder
            .decode(&mut self.buf)
            .map_err(Close::Protocol)?
        else {
            return Ok(None);
        };
        self.frames += 1;
        match frame.decode().map_err(Close::Protocol)? {
            Message::GetRouteRequest(request) => {
                DnsStats::inc(&self.shared.stats.requests_received);
                Ok(Some(RouteKey::new(request.modid, request.cmdid)))
            }
            other => Err(Close::UnexpectedMessage(other.msg_id().as_i32())),
        }
    }

    /// Subscribes to `key` (unless the connection holds its most) and queues its answer from the
    /// current snapshot.
    fn answer(&mut self, key: RouteKey, slot: AnswerSlot) {
        DnsStats::inc(&self.shared.stats.requests);
        if !key.is_route() {
            // Answered (empty: no route has such a key) so the agent does not wait, but never
            // subscribed: a peer cycling through negative keys holds nothing here.
            DnsStats::inc(&self.shared.stats.requests_not_a_route);
            if !self.warned_not_a_route {
                self.warned_not_a_route = true;
                warn!(peer = %self.peer, %key,
                    "request for a negative modid or cmdid, which no route has: answered empty, \
                     not subscribed (further ones counted in lars_dns_requests_not_a_route_total)");
            }
            slot.send(self.shared.snapshot.load().frame(key));
            return;
        }
        match self.subs.subscribe(key) {
            Subscribed::New => {
                debug!(peer = %self.peer, modid = key.modid, cmdid = key.cmdid, "subscribed");
            }
            Subscribed::Already => {}
            // Once per connection: an agent asking for ever new keys would flood the log.
            Subscribed::Refused { first: true } => {
                warn!(peer = %self.peer, max = self.shared.max_subscriptions,
                    "connection holds max_subscriptions_per_connection; further keys are answered \
                     but not subscribed (counted in lars_dns_subscriptions_refused_total)");
            }
            Subscribed::Refused { first: false } => {}
        }
        slot.send(self.shared.snapshot.load().frame(key));
    }

    /// Queues the changed routes this connection subscribed to, from the current snapshot; those
    /// without room, and all of them while the connection is catching up, become owed.
    fn push(&mut self, changed: &HashSet<RouteKey>) -> Result<(), Close> {
        let snapshot = self.shared.snapshot.load();
        let was_owing = self.subs.owed();
        for key in self.subs.matching(changed) {
            if self.subs.owes_any() {
                self.subs.owe(key);
                continue;
            }
            match self.queue.try_push_slot()? {
                Some(slot) => {
                    slot.send(snapshot.frame(key));
                    DnsStats::inc(&self.shared.stats.pushes);
                }
                None => {
                    self.subs.owe(key);
                }
            }
        }
        if was_owing == 0 && self.subs.owes_any() {
            info!(peer = %self.peer, queue = self.shared.write_queue, owed = self.subs.owed(),
                "agent is behind on route changes (write queue full); catching it up as it reads");
        }
        Ok(())
    }

    /// After missing `missed` change batches: every subscribed route is owed.
    fn lagged(&mut self, missed: u64) {
        DnsStats::inc(&self.shared.stats.lags);
        let owed = self.subs.owe_all();
        info!(peer = %self.peer, missed, owed,
            "connection missed route change batches; catching the agent up on every route it holds");
    }

    /// Writes owed keys from the current snapshot into `slot` and whatever more room there is.
    fn catch_up(&mut self, mut slot: PushSlot) -> Result<(), Close> {
        let snapshot = self.shared.snapshot.load();
        let stats = &self.shared.stats;
        while let Some(key) = self.subs.next_owed() {
            slot.send(snapshot.frame(key));
            DnsStats::inc(&stats.pushes);
            DnsStats::inc(&stats.caught_up);
            if !self.subs.owes_any() {
                info!(peer = %self.peer, "agent caught up on route changes");
                break;
            }
            match self.queue.try_push_slot()? {
                Some(more) => slot = more,
                None => break,
            }
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.waiting.is_some() {
            DnsStats::sub(&self.shared.stats.paused, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::{CHANGE_BACKLOG, RouteChanges};
    use crate::snapshot::RouteSnapshot;
    use lars_wire::HostAddr;
    use lars_wire::messages::GetRouteResponse;
    use std::net::Ipv4Addr;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    const KEYS: i32 = 50;

    fn lars_dns_config_limits() -> lars_service::admission::Limits {
        crate::DnsConfig::default().reactor.limits()
    }

    /// Every key (1, 0..KEYS) with `hosts` hosts.
    fn snapshot(version: i64, hosts: u8) -> Arc<RouteSnapshot> {
        let table = (0..KEYS)
            .map(|cmdid| {
                let list = (1..=hosts)
                    .map(|last| HostAddr::new(Ipv4Addr::new(10, 0, 0, last), 80))
                    .collect();
                (RouteKey::new(1, cmdid), list)
            })
            .collect();
        Arc::new(RouteSnapshot::build(version, table).0)
    }

    async fn next(
        stream: &mut TcpStream,
        buf: &mut BytesMut,
        decoder: &mut FrameDecoder,
    ) -> GetRouteResponse {
        loop {
            if let Some(frame) = decoder.decode(buf).unwrap() {
                match frame.decode().unwrap() {
                    Message::GetRouteResponse(r) => return r,
                    other => panic!("dns sent {other:?}"),
                }
            }
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read_buf(buf));
            assert!(
                read.await.expect("a frame within 5 s").unwrap() > 0,
                "closed"
            );
        }
    }

    /// On the current-thread runtime the connection task runs only when the test yields, so
    /// sending more batches than the broadcast keeps makes it lag for sure.
    #[tokio::test]
    async fn a_connection_that_missed_change_batches_is_caught_up_on_every_subscription() {
        // A queue smaller than the subscriptions: the catch-up is paced by it.
        let shared = Arc::new(DnsShared::new(16, Duration::from_secs(30)));
        shared.snapshot.store(snapshot(1, 1));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut agent = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (_stop, shutdown) = watch::channel(false);
        let gate = lars_service::admission::Gate::new(lars_dns_config_limits());
        let (ticket, _) = gate.admit(peer.ip()).unwrap();
        let served = tokio::spawn(serve(stream, peer, shared.clone(), ticket, shutdown));

        let mut asks = BytesMut::new();
        for cmdid in 0..KEYS {
            lars_wire::frame::encode_get_route_request(1, cmdid, &mut asks);
        }
        agent.write_all(&asks).await.unwrap();
        let (mut buf, mut decoder) = (BytesMut::new(), FrameDecoder::new());
        for cmdid in 0..KEYS {
            let answer = next(&mut agent, &mut buf, &mut decoder).await;
            assert_eq!((answer.cmdid, answer.host.len()), (cmdid, 1));
        }

        // Every route gets a second host, but the batches that would say so are lost: each
        // names an unrelated key, and there are more of them than the broadcast keeps.
        let newer = snapshot(2, 2);
        shared.snapshot.store(newer.clone());
        for _ in 0..CHANGE_BACKLOG + 10 {
            let changes = RouteChanges {
                snapshot: newer.clone(),
                keys: HashSet::from([RouteKey::new(9, 9)]),
            };
            shared.changes.send(Arc::new(changes)).unwrap();
        }

        let mut caught_up = HashSet::new();
        while caught_up.len() < KEYS as usize {
            let push = next(&mut agent, &mut buf, &mut decoder).await;
            assert_eq!((push.modid, push.host.len()), (1, 2), "{push:?}");
            assert!(caught_up.insert(push.cmdid), "{} pushed twice", push.cmdid);
        }
        let stats = &shared.stats;
        assert_eq!(DnsStats::get(&stats.lags), 1);
        assert_eq!(DnsStats::get(&stats.caught_up), KEYS as u64);
        assert_eq!(DnsStats::get(&stats.owed_keys), 0);

        drop(agent);
        served.await.unwrap();
        assert_eq!(DnsStats::get(&stats.peer_closed), 1);
    }
}
