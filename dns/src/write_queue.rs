//! One connection's write queue and the writer task that drains it into the socket, gathering
//! whatever is waiting into one write. The queue holds at most `write_queue_frames` frames and
//! treats the two kinds of frame differently:
//!
//! - **answers** to the agent's own requests take at most half of it and *wait* for room
//!   ([`WriteQueue::answer_slot`]): the connection reads no further requests meanwhile, so an
//!   agent that asks faster than it reads (one re-asking 100,000 routes after a reconnect) is
//!   slowed down by TCP, never closed;
//! - **pushes** take any free place and never wait in the queue: [`WriteQueue::try_push_slot`]
//!   says at once whether there is room, and a connection that finds none remembers the key
//!   instead (the agent is caught up from the newest snapshot once [`WriteQueue::push_slot`]
//!   finds room again, see [`crate::connection`]). The half that answers cannot take is what
//!   keeps a burst of answers from crowding out the pushes of an agent that reads.
//!
//! Frames leave in the order they were queued, answers and pushes alike. The writer takes up to
//! 256 frames at a time out of the queue for one write; an answer keeps its place in the answers'
//! half until it has been written. So whatever the agent does, a connection holds at most one
//! queue of frames plus one write in flight. The writer is also the judge of a stalled reader:
//! when the socket takes no byte for `stalled_after` while it has a write pending, it gives up and
//! says so ([`WriterEnd::Stalled`]). Used by [`crate::connection`] only; the writer is the only
//! task that touches the connection's write half.

use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};

/// Most frames the writer gathers into one write.
const WRITE_BATCH: usize = 256;

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// Every place in the queue is taken (only [`WriteQueue::push`] says so; answers wait).
    #[error("write queue full")]
    Full,
    /// The writer has stopped (the socket failed or the agent stalled).
    #[error("connection writer gone")]
    WriterGone,
}

/// How the writer task ended.
#[derive(Debug)]
pub enum WriterEnd {
    /// Every [`WriteQueue`] was dropped and everything queued was written.
    Drained,
    /// The socket took no byte for the stalled-reader timeout while a write was pending: the
    /// agent reads nothing.
    Stalled,
    /// A write failed.
    Failed(std::io::Error),
}

/// The sending side of one connection's write queue.
#[derive(Debug)]
pub struct WriteQueue {
    frames: mpsc::Sender<Queued>,
    /// Places answers may take; each travels with its answer until the writer has written it.
    answers: Arc<Semaphore>,
}

/// The receiving side of a write queue, for the writer task.
#[derive(Debug)]
pub struct QueuedFrames {
    frames: mpsc::Receiver<Queued>,
}

/// A place in the queue held for one answer; the answer is built only once the place is there,
/// so it is read from the snapshot current when it is queued.
#[derive(Debug)]
pub struct AnswerSlot {
    frame: mpsc::OwnedPermit<Queued>,
    answer: OwnedSemaphorePermit,
}

/// A place in the queue held for one push, built (like an answer) only once the place is there.
#[derive(Debug)]
pub struct PushSlot {
    frame: mpsc::OwnedPermit<Queued>,
}

#[derive(Debug)]
struct Queued {
    frame: Bytes,
    /// Held by answers, released when the frame is written.
    _answer: Option<OwnedSemaphorePermit>,
}

impl WriteQueue {
    /// A queue of `frames` places (at least one), half of them (at least one) open to answers.
    pub fn new(frames: usize) -> (WriteQueue, QueuedFrames) {
        let frames = frames.max(1);
        let (tx, rx) = mpsc::channel(frames);
        let queue = WriteQueue {
            frames: tx,
            answers: Arc::new(Semaphore::new((frames / 2).max(1))),
        };
        (queue, QueuedFrames { frames: rx })
    }

    /// A place for an answer if there is one now.
    pub fn try_answer_slot(&self) -> Result<Option<AnswerSlot>, QueueError> {
        let answer = match self.answers.clone().try_acquire_owned() {
            Ok(answer) => answer,
            Err(TryAcquireError::NoPermits) => return Ok(None),
            Err(TryAcquireError::Closed) => return Err(QueueError::WriterGone),
        };
        Ok(self
            .try_push_slot()?
            .map(|PushSlot { frame }| AnswerSlot { frame, answer }))
    }

    /// Waits until there is a place for an answer. Cancel-safe: dropping the future gives back
    /// whatever it had taken.
    pub async fn answer_slot(&self) -> Result<AnswerSlot, QueueError> {
        let answer = self
            .answers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| QueueError::WriterGone)?;
        let PushSlot { frame } = self.push_slot().await?;
        Ok(AnswerSlot { frame, answer })
    }

    /// A place for a push if there is one now.
    pub fn try_push_slot(&self) -> Result<Option<PushSlot>, QueueError> {
        match self.frames.clone().try_reserve_owned() {
            Ok(frame) => Ok(Some(PushSlot { frame })),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(None),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(QueueError::WriterGone),
        }
    }

    /// Waits until there is a place for a push. Cancel-safe, as [`WriteQueue::answer_slot`].
    pub async fn push_slot(&self) -> Result<PushSlot, QueueError> {
        let frame = self
            .frames
            .clone()
            .reserve_owned()
            .await
            .map_err(|_| QueueError::WriterGone)?;
        Ok(PushSlot { frame })
    }

    /// Queues a pushed frame without waiting; [`QueueError::Full`] when there is no room.
    pub fn push(&self, frame: Bytes) -> Result<(), QueueError> {
        let slot = self.try_push_slot()?.ok_or(QueueError::Full)?;
        slot.send(frame);
        Ok(())
    }
}

impl AnswerSlot {
    /// Queues the answer in the place held for it.
    pub fn send(self, frame: Bytes) {
        self.frame.send(Queued {
            frame,
            _answer: Some(self.answer),
        });
    }
}

impl PushSlot {
    /// Queues the push in the place held for it.
    pub fn send(self, frame: Bytes) {
        self.frame.send(Queued {
            frame,
            _answer: None,
        });
    }
}

impl QueuedFrames {
    /// Writes queued frames into `writer` until every [`WriteQueue`] is dropped (then shuts the
    /// write side down), a write fails, or the socket takes no byte for `stalled_after` while a
    /// write is pending.
    pub async fn write_to<W: AsyncWrite + Unpin>(
        mut self,
        mut writer: W,
        stalled_after: Duration,
    ) -> WriterEnd {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        let mut out = BytesMut::new();
        while self.frames.recv_many(&mut batch, WRITE_BATCH).await > 0 {
            let bytes = if let [one] = &batch[..] {
                &one.frame[..]
            } else {
                out.clear();
                for queued in &batch {
                    out.extend_from_slice(&queued.frame);
                }
                &out[..]
            };
            let written = write_all(&mut writer, bytes, stalled_after).await;
            // Gives the written answers' places back.
            batch.clear();
            if let Err(end) = written {
                return end;
            }
        }
        let _ = writer.shutdown().await;
        WriterEnd::Drained
    }
}

/// Writes all of `bytes`, as long as each write takes at least one byte within `stalled_after`.
async fn write_all<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut bytes: &[u8],
    stalled_after: Duration,
) -> Result<(), WriterEnd> {
    while !bytes.is_empty() {
        match tokio::time::timeout(stalled_after, writer.write(bytes)).await {
            Err(_) => return Err(WriterEnd::Stalled),
            Ok(Ok(0)) => return Err(WriterEnd::Failed(std::io::ErrorKind::WriteZero.into())),
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(WriterEnd::Failed(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(byte: u8) -> Bytes {
        Bytes::from(vec![byte])
    }

    #[test]
    fn answers_take_half_the_queue_and_pushes_the_rest() {
        let (queue, _queued) = WriteQueue::new(8);
        for i in 0..4 {
            let slot = queue
                .try_answer_slot()
                .unwrap()
                .expect("room for an answer");
            slot.send(frame(i));
        }
        assert!(queue.try_answer_slot().unwrap().is_none());
        for i in 0..4 {
            assert_eq!(queue.push(frame(10 + i)), Ok(()));
        }
        assert_eq!(queue.push(frame(20)), Err(QueueError::Full));
    }

    #[test]
    fn pushes_can_fill_the_whole_queue_and_then_answers_find_no_room() {
        let (queue, _queued) = WriteQueue::new(4);
        for i in 0..4 {
            assert_eq!(queue.push(frame(i)), Ok(()));
        }
        assert_eq!(queue.push(frame(9)), Err(QueueError::Full));
        assert!(queue.try_answer_slot().unwrap().is_none());
    }

    #[test]
    fn a_one_frame_queue_still_takes_an_answer() {
        let (queue, _queued) = WriteQueue::new(1);
        queue
            .try_answer_slot()
            .unwrap()
            .expect("room")
            .send(frame(1));
        assert!(queue.try_answer_slot().unwrap().is_none());
    }

    #[test]
    fn a_gone_writer_is_reported() {
        let (queue, queued) = WriteQueue::new(4);
        drop(queued);
        assert_eq!(queue.push(frame(1)), Err(QueueError::WriterGone));
        assert!(matches!(
            queue.try_answer_slot(),
            Err(QueueError::WriterGone)
        ));
    }

    #[tokio::test]
    async fn a_waiting_answer_gets_its_place_once_the_writer_has_written() {
        let (queue, queued) = WriteQueue::new(2);
        queue
            .try_answer_slot()
            .unwrap()
            .expect("room")
            .send(frame(1));
        assert!(queue.try_answer_slot().unwrap().is_none());
        queue.push(frame(2)).unwrap();

        let (socket, mut agent) = tokio::io::duplex(64);
        let writer = tokio::spawn(queued.write_to(socket, Duration::from_secs(10)));
        let slot = queue.answer_slot().await.unwrap();
        slot.send(frame(3));
        queue.push(frame(4)).unwrap();
        drop(queue);
        assert!(matches!(writer.await.unwrap(), WriterEnd::Drained));

        let mut written = Vec::new();
        agent.read_to_end(&mut written).await.unwrap();
        assert_eq!(written, [1, 2, 3, 4], "in the order queued");
    }

    #[tokio::test]
    async fn a_push_slot_waits_for_room_and_keeps_the_order() {
        let (queue, queued) = WriteQueue::new(2);
        queue.push(frame(1)).unwrap();
        queue.push(frame(2)).unwrap();
        assert!(queue.try_push_slot().unwrap().is_none());
        assert_eq!(queue.push(frame(9)), Err(QueueError::Full));

        let (socket, mut agent) = tokio::io::duplex(64);
        let writer = tokio::spawn(queued.write_to(socket, Duration::from_secs(10)));
        queue.push_slot().await.unwrap().send(frame(3));
        drop(queue);
        assert!(matches!(writer.await.unwrap(), WriterEnd::Drained));
        let mut written = Vec::new();
        agent.read_to_end(&mut written).await.unwrap();
        assert_eq!(written, [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_socket_that_takes_nothing_stalls_the_writer() {
        let (queue, queued) = WriteQueue::new(8);
        // More than the 4-byte pipe takes while nobody reads it.
        for i in 0..8 {
            queue.push(frame(i)).unwrap();
        }
        let (socket, _agent) = tokio::io::duplex(4);
        let end = queued.write_to(socket, Duration::from_millis(100)).await;
        assert!(matches!(end, WriterEnd::Stalled), "{end:?}");
        assert_eq!(queue.push(frame(1)), Err(QueueError::WriterGone));
    }

    #[tokio::test]
    async fn a_reader_taking_a_byte_at_a_time_is_not_stalled() {
        let (queue, queued) = WriteQueue::new(64);
        for i in 0..64 {
            queue.push(frame(i)).unwrap();
        }
        drop(queue);
        // The pipe takes one byte at a time: every write makes progress, none takes everything.
        let (socket, mut agent) = tokio::io::duplex(1);
        let writer = tokio::spawn(queued.write_to(socket, Duration::from_secs(5)));
        let mut written = Vec::new();
        agent.read_to_end(&mut written).await.unwrap();
        assert_eq!(written, (0..64).collect::<Vec<u8>>());
        assert!(matches!(writer.await.unwrap(), WriterEnd::Drained));
    }
}
