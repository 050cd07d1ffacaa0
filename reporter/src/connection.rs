//! One agent connection: reads `ReportStatusRequest` frames, turns each `HostCallResult` into a
//! row ([`report`](crate::report)) and hands the rows to the inboxes of their keys' store workers
//! — all the rows of one read at once, one lock per worker, in the order they arrived. The
//! reporter never answers, so the connection only reads.
//!
//! Everything from the network is checked. A frame with a bad length, an unknown msgid, a body
//! that does not decode or a message other than `ReportStatusRequest` is a protocol error: the
//! rows of the frames before it are kept, this connection is closed with a warning naming the
//! peer, and nothing else is affected. A frame the [`Admission`] rules refuse (forged caller,
//! `ts` in the future, too many results) is dropped whole and counted by reason, and a row that
//! cannot be stored is dropped and counted; each kind logs at most one warning per connection
//! every [`BAD_ROW_LOG_EVERY`], naming the peer. The hygiene rules
//! ([`lars_service::admission`]) close a connection that sends no complete frame for
//! `idle_timeout`, leaves one unfinished for `frame_timeout`, is evicted for a new connection,
//! or holds the largest unfinished frame past `max_pending_bytes`.

use crate::inbox::Inboxes;
use crate::report::{Admission, BadRow, RefusedFrame, status_rows};
use crate::stats::ReporterStats;
use bytes::BytesMut;
use lars_service::admission::{HygieneClose, Ticket, TimedOut};
use lars_store::CallStatusRow;
use lars_wire::messages::ReportStatusRequest;
use lars_wire::msg::decode_body;
use lars_wire::{FrameDecoder, MsgId, WireError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Least time between two bad-row warnings of one connection.
pub const BAD_ROW_LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum Close {
    /// The agent closed it.
    #[error("closed by the agent")]
    PeerClosed,
    /// The service is stopping.
    #[error("service stopping")]
    Shutdown,
    /// Reading failed.
    #[error("read failed")]
    ReadError(#[source] std::io::Error),
    /// A frame that is not valid Lars protocol.
    #[error("protocol error")]
    Protocol(#[source] WireError),
    /// A valid frame of a message the reporter does not take.
    #[error(
        "unexpected message id {0} (the reporter only takes ReportStatusRequest, id {id})",
        id = MsgId::ReportStatusRequest.as_i32()
    )]
    UnexpectedMessage(i32),
    /// Closed by the hygiene rules.
    #[error("closed by the connection hygiene rules ({0:?})")]
    Hygiene(HygieneClose),
}

/// Serves one accepted connection until the peer closes or misbehaves, or the service stops.
/// Returns why it ended.
pub async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    inboxes: Inboxes,
    stats: Arc<ReporterStats>,
    admission: Admission,
    mut ticket: Ticket,
    mut shutdown: watch::Receiver<bool>,
) -> Close {
    let mut conn = Connection::new(peer, inboxes, stats, admission);
    // Grown by the decoder as frames arrive: an idle connection holds no buffer.
    let mut buf = BytesMut::new();
    let mut decoder = FrameDecoder::new();
    let mut timer = ticket.read_timer();
    let close = loop {
        tokio::select! {
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) => break Close::PeerClosed,
                Ok(_) => {
                    let before = conn.frames;
                    let handled = conn.handle_input(&mut decoder, &mut buf);
                    let (frames, partial) = ((conn.frames - before) as usize, decoder.partial_len(&buf));
                    timer.read(Instant::now(), frames, partial);
                    ticket.read(frames, partial);
                    // Rows of the frames before a bad one are kept.
                    conn.deliver();
                    if let Err(close) = handled {
                        break close;
                    }
                }
                Err(e) => break Close::ReadError(e),
            },
            timed_out = sleep_until(timer.deadline()) => break Close::Hygiene(timed_out.into()),
            evicted = ticket.closed() => break Close::Hygiene(evicted.into()),
            _ = crate::shutdown::requested(&mut shutdown) => break Close::Shutdown,
        }
    };
    conn.log_close(&close);
    close
}

/// Resolves at the timer's deadline with why it ran out.
async fn sleep_until((at, why): (Instant, TimedOut)) -> TimedOut {
    tokio::time::sleep_until(at.into()).await;
    why
}

/// The state of one connection.
struct Connection {
    peer: SocketAddr,
    inboxes: Inboxes,
    stats: Arc<ReporterStats>,
    /// Rows of the current read, by worker, until they are delivered.
    staged: Vec<Vec<CallStatusRow>>,
    frames: u64,
    bad_rows: BadRowLog,
    admission: Admission,
    refused_frames: BadRowLog,
}

impl Connection {
    fn new(
        peer: SocketAddr,
        inboxes: Inboxes,
        stats: Arc<ReporterStats>,
        admission: Admission,
    ) -> Connection {
        Connection {
            peer,
            staged: vec![Vec::new(); inboxes.len()],
            inboxes,
            stats,
            frames: 0,
            bad_rows: BadRowLog::default(),
            admission,
            refused_frames: BadRowLog::default(),
        }
    }

    /// Turns every complete frame in `buf` into staged rows.
    fn handle_input(
        &mut self,
        decoder: &mut FrameDecoder,
        buf: &mut BytesMut,
    ) -> Result<(), Close> {
        while let Some(frame) = decoder.decode(buf).map_err(Close::Protocol)? {
            let id = MsgId::try_from(frame.msgid).map_err(Close::Protocol)?;
            if id != MsgId::ReportStatusRequest {
                return Err(Close::UnexpectedMessage(frame.msgid));
            }
            let request: ReportStatusRequest =
                decode_body(frame.msgid, &frame.body).map_err(Close::Protocol)?;
            self.frames += 1;
            ReporterStats::inc(&self.stats.frames);
            ReporterStats::add(&self.stats.rows_received, request.results.len() as u64);
            if let Err(refused) = self.admission.check(&request, self.peer.ip(), unix_now()) {
                self.refused_frame(refused, request.results.len());
                continue;
            }
            for row in status_rows(&request) {
                match row {
                    Ok(row) => {
                        let worker = self.inboxes.route(&row.key());
                        self.staged[worker].push(row);
                    }
                    Err(bad) => self.bad_row(bad),
                }
            }
        }
        Ok(())
    }

    fn bad_row(&mut self, bad: BadRow) {
        ReporterStats::inc(&self.stats.dropped_bad_row);
        if let Some(suppressed) = self.bad_rows.should_log(Instant::now()) {
            warn!(peer = %self.peer, error = %bad, suppressed, "dropping a row that cannot be stored");
        }
    }

    fn refused_frame(&mut self, refused: RefusedFrame, rows: usize) {
        ReporterStats::add(self.stats.refused(refused.reason()), rows as u64);
        if let Some(suppressed) = self.refused_frames.should_log(Instant::now()) {
            warn!(peer = %self.peer, error = %refused, rows, suppressed, "refusing a frame; none of its rows is stored");
        }
    }

    /// Hands the staged rows to their workers.
    fn deliver(&mut self) {
        let now = Instant::now();
        for (worker, rows) in self.staged.iter_mut().enumerate() {
            if !rows.is_empty() {
                self.inboxes.get(worker).deliver(rows, now);
                rows.clear();
            }
        }
    }

    fn log_close(&self, close: &Close) {
        let (peer, frames) = (self.peer, self.frames);
        match close {
            Close::PeerClosed | Close::Shutdown => {
                debug!(%peer, frames, reason = %close, "connection closed");
            }
            Close::ReadError(e) => info!(%peer, frames, error = %e, "connection read failed"),
            Close::Hygiene(why) => self.stats.hygiene.record(*why, peer),
            Close::Protocol(e) => {
                ReporterStats::inc(&self.stats.protocol_errors);
                warn!(%peer, frames, error = %e, "protocol error; closing connection");
            }
            Close::UnexpectedMessage(_) => {
                ReporterStats::inc(&self.stats.protocol_errors);
                warn!(%peer, frames, error = %close, "protocol error; closing connection");
            }
        }
    }
}

/// The reporter's clock in Unix seconds, as a report's `ts` counts (0 if the clock is before
/// 1970, which refuses nothing but a `ts` in the far future).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Rate limit of the bad-row warnings of one connection: the first at once, then at most one
/// per [`BAD_ROW_LOG_EVERY`], each telling how many were not logged since the last.
#[derive(Debug, Default)]
struct BadRowLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl BadRowLog {
    /// `Some(suppressed since the last warning)` when this one should be logged.
    fn should_log(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < BAD_ROW_LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_row_warnings_are_rate_limited_and_count_the_rest() {
        let mut log = BadRowLog::default();
        let t = Instant::now();
        assert_eq!(log.should_log(t), Some(0));
        assert_eq!(log.should_log(t + Duration::from_secs(1)), None);
        assert_eq!(log.should_log(t + Duration::from_secs(2)), None);
        assert_eq!(log.should_log(t + BAD_ROW_LOG_EVERY), Some(2));
    }
}
