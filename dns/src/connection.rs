//! One agent connection: reads `GetRouteRequest` frames, answers each from the current snapshot
//! and subscribes the connection to its key, and forwards pushed route changes for the keys it
//! subscribed to. Writes go through a bounded queue to a separate writer task, so an agent that
//! stops reading only fills its own queue; when the queue is full the connection is closed and
//! logged, and nobody else waits. A protocol error closes this connection only.

use crate::shared::{DnsShared, RouteChanges};
use crate::stats::DnsStats;
use crate::subscriptions::Subscriptions;
use bytes::{Bytes, BytesMut};
use lars_store::RouteKey;
use lars_wire::{FrameDecoder, Message, WireError};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, info, warn};

/// Most frames the writer gathers into one write.
const WRITE_BATCH: usize = 256;

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
    let (queue, queued) = mpsc::channel(shared.write_queue);
    let writer = tokio::spawn(write_loop(writer, queued));
    let mut conn = Connection {
        peer,
        queue,
        subs: Subscriptions::new(shared.stats.clone()),
        shared,
    };
    let mut buf = BytesMut::with_capacity(4096);
    let mut decoder = FrameDecoder::new();

    let close = loop {
        tokio::select! {
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => break Close::PeerClosed,
                Ok(_) => {
                    if let Err(close) = conn.handle_input(&mut decoder, &mut buf) {
                        break close;
                    }
                }
                Err(e) => break Close::ReadError(e),
            },
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
    match &close {
        Close::PeerClosed | Close::Shutdown => {
            debug!(%peer, subscriptions, "connection closed");
        }
        Close::ReadError(e) => info!(%peer, subscriptions, error = %e, "connection read failed"),
        Close::Protocol(e) => {
            DnsStats::inc(&conn.shared.stats.protocol_errors);
            warn!(%peer, error = %e, "protocol error; closing connection");
        }
        Close::UnexpectedMessage(msgid) => {
            DnsStats::inc(&conn.shared.stats.protocol_errors);
            warn!(%peer, msgid, "unexpected message id (dns only takes GetRouteRequest, id 1); closing connection");
        }
        Close::QueueFull => {
            DnsStats::inc(&conn.shared.stats.slow_closed);
            warn!(%peer, queue = conn.shared.write_queue, "agent is not reading its pushes (write queue full); closing connection");
        }
        Close::WriterGone => debug!(%peer, "connection write failed"),
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
    queue: mpsc::Sender<Bytes>,
    subs: Subscriptions,
    shared: Arc<DnsShared>,
}

impl Connection {
    /// Handles every complete frame in `buf`.
    fn handle_input(
        &mut self,
        decoder: &mut FrameDecoder,
        buf: &mut BytesMut,
    ) -> Result<(), Close> {
        while let Some(frame) = decoder.decode(buf).map_err(Close::Protocol)? {
            match frame.decode().map_err(Close::Protocol)? {
                Message::GetRouteRequest(request) => {
                    let key = RouteKey::new(request.modid, request.cmdid);
                    if self.subs.subscribe(key) {
                        debug!(peer = %self.peer, modid = key.modid, cmdid = key.cmdid, "subscribed");
                    }
                    DnsStats::inc(&self.shared.stats.requests);
                    let frame = self.shared.snapshot.load().frame(key);
                    self.send(frame)?;
                }
                other => return Err(Close::UnexpectedMessage(other.msg_id().as_i32())),
            }
        }
        Ok(())
    }

    /// Queues the changed routes this connection subscribed to.
    fn push(&mut self, changes: &RouteChanges) -> Result<(), Close> {
        for key in self.subs.matching(&changes.keys) {
            self.send(changes.snapshot.frame(key))?;
            DnsStats::inc(&self.shared.stats.pushes);
        }
        Ok(())
    }

    /// Queues every subscribed route from the current snapshot (after missing change batches).
    fn resend_all(&mut self) -> Result<(), Close> {
        let snapshot = self.shared.snapshot.load_full();
        let keys: Vec<RouteKey> = self.subs.keys().collect();
        for key in keys {
            self.send(snapshot.frame(key))?;
            DnsStats::inc(&self.shared.stats.pushes);
        }
        Ok(())
    }

    fn send(&self, frame: Bytes) -> Result<(), Close> {
        self.queue.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Close::QueueFull,
            mpsc::error::TrySendError::Closed(_) => Close::WriterGone,
        })
    }
}

/// Writes queued frames, gathering whatever is waiting into one write.
async fn write_loop(mut writer: OwnedWriteHalf, mut queued: mpsc::Receiver<Bytes>) {
    let mut frames = Vec::with_capacity(WRITE_BATCH);
    let mut out = BytesMut::new();
    while queued.recv_many(&mut frames, WRITE_BATCH).await > 0 {
        let result = if frames.len() == 1 {
            writer.write_all(&frames[0]).await
        } else {
            out.clear();
            for frame in &frames {
                out.extend_from_slice(frame);
            }
            writer.write_all(&out).await
        };
        frames.clear();
        if result.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}
