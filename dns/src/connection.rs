//! One agent connection: reads `GetRouteRequest` frames, subscribes the connection to each key
//! and answers it from the current snapshot, and forwards pushed route changes for the keys it
//! subscribed to. Writes go through the connection's own [`WriteQueue`] to a writer task, so
//! nobody else ever waits for this agent, with two rules:
//!
//! - an answer waits for room: while the request at hand has none, the connection reads no more
//!   requests (the agent's writes then back up in TCP), but still takes pushes and shutdown. An
//!   agent re-asking every route it holds after a reconnect is served at the pace it reads.
//! - a push never waits: one that finds the queue full closes the connection and is logged,
//!   because the agent has stopped reading. Answers take at most half the queue, so a burst of
//!   them leaves room for the pushes of an agent that does read.
//!
//! So an agent that asks without ever reading holds one write queue (plus one write in flight)
//! and one read buffer at most: it is no longer read from (counted in `paused`), and the next
//! pushes for its keys close it. A protocol error closes this connection only.
//!
//! Requests are decoded one at a time; the one waiting for room is kept as its key, and its answer
//! is read from the snapshot only once it has a place in the queue, when the connection also
//! subscribes to it. So an answer is never older than a push queued before it.

use crate::shared::{DnsShared, RouteChanges};
use crate::stats::DnsStats;
use crate::subscriptions::Subscriptions;
use crate::write_queue::{AnswerSlot, QueueError, WriteQueue};
use bytes::BytesMut;
use lars_wire::RouteKey;
use lars_wire::{FrameDecoder, Message, WireError};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};

/// Why a connection ended.
#[derive(Debug)]
enum Close {
    PeerClosed,
    Shutdown,
    ReadError(std::io::Error),
    Protocol(WireError),
    UnexpectedMessage(i32),
    QueueFull,
    WriterGone,
}

impl From<QueueError> for Close {
    fn from(e: QueueError) -> Close {
        match e {
            QueueError::Full => Close::QueueFull,
            QueueError::WriterGone => Close::WriterGone,
        }
    }
}

/// Serves one accepted connection until the peer closes, misbehaves or falls behind, or the
/// service shuts down.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<DnsShared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut changes = shared.changes.subscribe();
    let (mut reader, writer) = stream.into_split();
    let (queue, queued) = WriteQueue::new(shared.write_queue);
    let writer = tokio::spawn(queued.write_to(writer));
    let mut conn = Connection {
        peer,
        queue,
        subs: Subscriptions::new(shared.stats.clone()),
        shared,
        buf: BytesMut::with_capacity(4096),
        decoder: FrameDecoder::new(),
        waiting: None,
    };

    let close = loop {
        tokio::select! {
            // Only once every request read so far is answered: `buf` holds no whole frame then.
            read = reader.read_buf(&mut conn.buf), if conn.waiting.is_none() => match read {
                Ok(0) => break Close::PeerClosed,
                Ok(_) => {
                    if let Err(close) = conn.answer_requests() {
                        break close;
                    }
                }
                Err(e) => break Close::ReadError(e),
            },
            slot = conn.queue.answer_slot(), if conn.waiting.is_some() => {
                let answered = slot.map_err(Close::from).and_then(|slot| {
                    conn.answer_waiting(slot);
                    conn.answer_requests()
                });
                if let Err(close) = answered {
                    break close;
                }
            }
            change = changes.recv() => {
                let pushed = match change {
                    Ok(batch) => conn.push(&batch),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        debug!(%peer, missed, "connection lagged behind route changes; resending its routes");
                        conn.resend_all()
                    }
                    Err(broadcast::error::RecvError::Closed) => Err(Close::Shutdown),
                };
                if let Err(close) = pushed {
                    break close;
                }
            }
            _ = shutdown.changed() => break Close::Shutdown,
        }
    };

    let subscriptions = conn.subs.len();
    let stats = &conn.shared.stats;
    match &close {
        Close::PeerClosed => {
            DnsStats::inc(&stats.peer_closed);
            debug!(%peer, subscriptions, "connection closed");
        }
        Close::Shutdown => debug!(%peer, subscriptions, "connection closed at shutdown"),
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
        Close::QueueFull => {
            DnsStats::inc(&stats.slow_closed);
            warn!(%peer, queue = conn.shared.write_queue, "agent is not reading its pushes (write queue full); closing connection");
        }
        Close::WriterGone => {
            DnsStats::inc(&stats.write_errors);
            debug!(%peer, "connection write failed");
        }
    }
    let abort = matches!(
        close,
        Close::QueueFull | Close::Protocol(_) | Close::UnexpectedMessage(_)
    );
    drop(conn);
    if abort {
        writer.abort();
    } else {
        // The writer flushes what was queued, then closes its half.
        let _ = writer.await;
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
}

impl Connection {
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
        match frame.decode().map_err(Close::Protocol)? {
            Message::GetRouteRequest(request) => {
                DnsStats::inc(&self.shared.stats.requests_received);
                Ok(Some(RouteKey::new(request.modid, request.cmdid)))
            }
            other => Err(Close::UnexpectedMessage(other.msg_id().as_i32())),
        }
    }

    /// Subscribes to `key` and queues its answer from the current snapshot.
    fn answer(&mut self, key: RouteKey, slot: AnswerSlot) {
        if self.subs.subscribe(key) {
            debug!(peer = %self.peer, modid = key.modid, cmdid = key.cmdid, "subscribed");
        }
        DnsStats::inc(&self.shared.stats.requests);
        slot.send(self.shared.snapshot.load().frame(key));
    }

    /// Queues the changed routes this connection subscribed to.
    fn push(&mut self, changes: &RouteChanges) -> Result<(), Close> {
        for key in self.subs.matching(&changes.keys) {
            self.queue.push(changes.snapshot.frame(key))?;
            DnsStats::inc(&self.shared.stats.pushes);
        }
        Ok(())
    }

    /// Queues every subscribed route from the current snapshot (after missing change batches).
    fn resend_all(&mut self) -> Result<(), Close> {
        let snapshot = self.shared.snapshot.load_full();
        for key in self.subs.keys() {
            self.queue.push(snapshot.frame(key))?;
            DnsStats::inc(&self.shared.stats.pushes);
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
