//! One connection's write queue and the writer task that drains it into the socket, gathering
//! whatever is waiting into one write. The queue holds at most `write_queue_frames` frames and
//! treats the two kinds of frame differently:
//!
//! - **answers** to the agent's own requests take at most half of it and *wait* for room
//!   ([`WriteQueue::answer_slot`]): the connection reads no further requests meanwhile, so an
//!   agent that asks faster than it reads (one re-asking 100,000 routes after a reconnect) is
//!   slowed down by TCP, never closed;
//! - **pushes** never wait ([`WriteQueue::push`]): a push that finds the queue full means the
//!   agent has stopped reading, and the caller closes the connection. The half that answers
//!   cannot take is what keeps a burst of answers in flight from making a reading agent look
//!   stalled to the next push.
//!
//! Frames leave in the order they were queued, answers and pushes alike. The writer takes up to
//! 256 frames at a time out of the queue for one write; an answer keeps its place in the answers'
//! half until it has been written. So whatever the agent does, a connection holds at most one
//! queue of frames plus one write in flight. Used by [`crate::connection`] only; the writer is the
//! only task that touches the connection's write half.

use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};

/// Most frames the writer gathers into one write.
const WRITE_BATCH: usize = 256;

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// Every place in the queue is taken (only pushes see this; answers wait).
    #[error("write queue full")]
    Full,
    /// The writer has stopped (the socket failed).
    #[error("connection writer gone")]
    WriterGone,
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
        match self.frames.clone().try_reserve_owned() {
            Ok(frame) => Ok(Some(AnswerSlot { frame, answer })),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(None),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(QueueError::WriterGone),
        }
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
        let frame = self
            .frames
            .clone()
            .reserve_owned()
            .await
            .map_err(|_| QueueError::WriterGone)?;
        Ok(AnswerSlot { frame, answer })
    }

    /// Queues a pushed frame without waiting; [`QueueError::Full`] when the agent is that far
    /// behind.
    pub fn push(&self, frame: Bytes) -> Result<(), QueueError> {
        let queued = Queued {
            frame,
            _answer: None,
        };
        self.frames.try_send(queued).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueueError::Full,
            mpsc::error::TrySendError::Closed(_) => QueueError::WriterGone,
        })
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

impl QueuedFrames {
    /// Writes queued frames into `writer` until every [`WriteQueue`] is dropped (then shuts the
    /// write side down) or a write fails.
    pub async fn write_to<W: AsyncWrite + Unpin>(mut self, mut writer: W) {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        let mut out = BytesMut::new();
        while self.frames.recv_many(&mut batch, WRITE_BATCH).await > 0 {
            let result = if let [one] = &batch[..] {
                writer.write_all(&one.frame).await
            } else {
                out.clear();
                for queued in &batch {
                    out.extend_from_slice(&queued.frame);
                }
                writer.write_all(&out).await
            };
            // Gives the written answers' places back.
            batch.clear();
            if result.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    }
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
        let writer = tokio::spawn(queued.write_to(socket));
        let slot = queue.answer_slot().await.unwrap();
        slot.send(frame(3));
        queue.push(frame(4)).unwrap();
        drop(queue);
        writer.await.unwrap();

        let mut written = Vec::new();
        agent.read_to_end(&mut written).await.unwrap();
        assert_eq!(written, [1, 2, 3, 4], "in the order queued");
    }
}
