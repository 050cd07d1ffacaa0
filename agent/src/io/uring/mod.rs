//! The `io-uring` driver (`[agent] io = "io-uring"`, and what `auto` picks when [`probe`]
//! succeeds): one `io_uring` per worker thread, driven directly through the `io-uring` crate,
//! with no epoll and no task scheduler.
//!
//! The loop is: one `io_uring_enter` that submits everything queued and waits; drain every
//! completion, handing each datagram to the [`DatagramService`] and queueing its reply; repeat.
//! The sockets are registered with the ring as fixed files, so no operation looks a descriptor
//! up. In flight at all times:
//! - one multishot `RecvMsg` per socket, picking buffers from the worker's provided-buffer ring
//!   ([`buf_ring`]); it is re-armed only when the kernel ends it (no `IORING_CQE_F_MORE`, e.g.
//!   when every buffer was in use), and each buffer goes back to the ring once its datagram is
//!   handled;
//! - one `SendMsg` per reply, from a slot of [`send_pool`] that stays busy until its completion;
//! - a read of the worker's [`EventFd`] (its inbox wake-up), re-armed after each completion;
//! - a timeout firing every `tick` (the statistics upload), re-armed when it fires.
//!
//! Waiting: the enter waits for one completion more than the sends submitted since the last
//! wait that have not completed yet. A small UDP send completes while it is submitted, so a
//! request costs one `io_uring_enter` (submit the reply, sleep until the next datagram) rather
//! than two; a send that does have to wait is still waited for, and the timeout guarantees a
//! completion to wake on.
//!
//! Needs Linux 6.1 (multishot `RecvMsg`, `IORING_SETUP_DEFER_TASKRUN`); [`probe`] builds this
//! exact setup once to find out. Runs on its worker's
//! thread only; never blocks except in that enter; never busy-polls.
//! Before the loop's memory is freed, every operation is cancelled and its completion reaped, so
//! the kernel never writes into freed buffers.

pub mod buf_ring;
pub mod send_pool;

use super::eventfd::EventFd;
use super::{DATAGRAM_BUFFER, DatagramService, DriverError, LoopControl};
use buf_ring::BufRing;
use io_uring::types::{CancelBuilder, Fd, Fixed, RecvMsgOut, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use send_pool::SendPool;
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Submission queue entries (the completion queue gets twice as many).
const RING_ENTRIES: u32 = 1024;
/// Buffers in a loop's provided-buffer ring, shared by its sockets.
pub const RECV_BUFFERS: u16 = 128;
/// Room for the source address in a receive buffer (a `sockaddr_in6` is 28 bytes).
const NAME_LEN: usize = 32;
/// Header the kernel writes before the name in a multishot `RecvMsg` buffer.
const RECVMSG_OUT_LEN: usize = 16;
/// Completions copied out of the queue at a time.
const BATCH: usize = 256;
/// Group id of the loop's buffer ring (one ring per io_uring).
const BGID: u16 = 0;

/// What a completion is for, packed into its `user_data`: the kind in the top byte, the socket
/// or send slot below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Recv(u32),
    Send(u32),
    Wake,
    Tick,
    Cancel,
}

impl Op {
    fn encode(self) -> u64 {
        match self {
            Op::Recv(i) => (1 << 56) | u64::from(i),
            Op::Send(i) => (2 << 56) | u64::from(i),
            Op::Wake => 3 << 56,
            Op::Tick => 4 << 56,
            Op::Cancel => 5 << 56,
        }
    }

    fn decode(data: u64) -> Option<Op> {
        let index = data as u32;
        match data >> 56 {
            1 => Some(Op::Recv(index)),
            2 => Some(Op::Send(index)),
            3 => Some(Op::Wake),
            4 => Some(Op::Tick),
            5 => Some(Op::Cancel),
            _ => None,
        }
    }
}

/// Counters of the loop's own behaviour, for tests and the curious.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoopCounters {
    /// Datagrams received.
    pub received: u64,
    /// Times a multishot receive ended and was armed again (the first arming included).
    pub recv_arms: u64,
    /// Receives that ended because every buffer was in use.
    pub out_of_buffers: u64,
    /// `io_uring_enter` calls that waited.
    pub waits: u64,
}

/// One worker's io_uring and everything its operations point at. Field order matters for
/// dropping: `Drop` first cancels and reaps every operation, then the ring goes (`ring` is the
/// first field), and only then the buffers.
pub struct EventLoop<'a> {
    ring: IoUring,
    /// The sockets, registered with the ring as files `0..n` (operations name them by index);
    /// owned here so their descriptors live exactly as long as the loop.
    _sockets: Vec<UdpSocket>,
    wake: Option<&'a EventFd>,
    /// The `msghdr` every multishot receive was armed with (only its name and control lengths
    /// matter); boxed so its address is stable.
    recv_msghdr: Box<libc::msghdr>,
    bufs: BufRing,
    sends: SendPool,
    /// Where the eventfd read puts the counter.
    wake_value: Box<u64>,
    tick: Box<Timespec>,
    /// Sockets whose multishot receive must be (re-)armed.
    to_arm: Vec<bool>,
    wake_armed: bool,
    tick_armed: bool,
    /// Completions being handled (kept to reuse its allocation).
    batch: Vec<cqueue::Entry>,
    /// Operations whose last completion has not been reaped yet.
    in_flight: usize,
    /// Sends submitted in this round (since the last wait) whose completion was not reaped.
    fresh_sends: usize,
    round: u64,
    counters: LoopCounters,
}

impl<'a> EventLoop<'a> {
    /// A loop serving `sockets`, woken by `wake` (if any), ticking every `tick`.
    pub fn new(
        sockets: Vec<UdpSocket>,
        wake: Option<&'a EventFd>,
        tick: Duration,
    ) -> Result<EventLoop<'a>, DriverError> {
        Self::with_buffers(sockets, wake, tick, RECV_BUFFERS)
    }

    /// As [`EventLoop::new`] with `buffers` receive buffers (a power of two).
    pub fn with_buffers(
        sockets: Vec<UdpSocket>,
        wake: Option<&'a EventFd>,
        tick: Duration,
        buffers: u16,
    ) -> Result<EventLoop<'a>, DriverError> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(RING_ENTRIES * 2)
            .build(RING_ENTRIES)
            .map_err(DriverError::Ring)?;
        let bufs = BufRing::new(buffers, RECVMSG_OUT_LEN + NAME_LEN + DATAGRAM_BUFFER, BGID)
            .map_err(DriverError::BufRing)?;
        bufs.register(&ring).map_err(DriverError::BufRing)?;
        // The sockets are registered files: each receive and send then skips looking the
        // descriptor up in the process's file table (and its reference counting).
        let fds: Vec<i32> = sockets.iter().map(AsRawFd::as_raw_fd).collect();
        if !fds.is_empty() {
            ring.submitter()
                .register_files(&fds)
                .map_err(DriverError::Files)?;
        }
        // SAFETY: msghdr is a plain C struct; all-zero bytes are a valid value.
        let mut recv_msghdr: Box<libc::msghdr> =
            Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
        recv_msghdr.msg_namelen = NAME_LEN as libc::socklen_t;
        let tick = tick.max(Duration::from_millis(1));
        let count = sockets.len();
        Ok(EventLoop {
            ring,
            _sockets: sockets,
            wake,
            recv_msghdr,
            bufs,
            sends: SendPool::default(),
            wake_value: Box::new(0),
            tick: Box::new(
                Timespec::new()
                    .sec(tick.as_secs())
                    .nsec(tick.subsec_nanos()),
            ),
            to_arm: vec![true; count],
            wake_armed: false,
            tick_armed: false,
            batch: Vec::with_capacity(BATCH),
            in_flight: 0,
            fresh_sends: 0,
            round: 0,
            counters: LoopCounters::default(),
        })
    }

    /// The loop's counters so far.
    pub fn counters(&self) -> LoopCounters {
        self.counters
    }

    /// Reply slots made so far (they are reused; a steady load makes no new ones).
    pub fn send_slots(&self) -> usize {
        self.sends.len()
    }

    /// Serves until `service` says stop.
    pub fn run(&mut self, service: &mut impl DatagramService) -> io::Result<()> {
        while self.run_rounds(service, u64::MAX)? == LoopControl::Continue {}
        Ok(())
    }

    /// Serves until `service` says stop or `rounds` waits have passed (tests).
    pub fn run_rounds(
        &mut self,
        service: &mut impl DatagramService,
        rounds: u64,
    ) -> io::Result<LoopControl> {
        if !self.tick_armed {
            self.arm_tick()?;
        }
        for _ in 0..rounds {
            self.arm()?;
            if self.turn(service)? == LoopControl::Stop {
                return Ok(LoopControl::Stop);
            }
        }
        Ok(LoopControl::Continue)
    }

    /// Queues the tick's timeout (one-shot, re-armed when it fires: multishot timeouts need
    /// Linux 6.4).
    fn arm_tick(&mut self) -> io::Result<()> {
        let entry = opcode::Timeout::new(&raw const *self.tick)
            .build()
            .user_data(Op::Tick.encode());
        self.push(entry)?;
        self.tick_armed = true;
        self.in_flight += 1;
        Ok(())
    }

    /// Queues the receives and the eventfd read that are not in flight.
    fn arm(&mut self) -> io::Result<()> {
        for socket in 0..self.to_arm.len() {
            if self.to_arm[socket] {
                let entry = opcode::RecvMsgMulti::new(
                    Fixed(socket as u32),
                    &raw const *self.recv_msghdr,
                    self.bufs.bgid(),
                )
                .build()
                .user_data(Op::Recv(socket as u32).encode());
                self.push(entry)?;
                self.to_arm[socket] = false;
                self.in_flight += 1;
                self.counters.recv_arms += 1;
            }
        }
        if !self.wake_armed
            && let Some(wake) = self.wake
        {
            let entry = opcode::Read::new(
                Fd(wake.as_raw_fd()),
                (&raw mut *self.wake_value).cast::<u8>(),
                size_of::<u64>() as u32,
            )
            .build()
            .user_data(Op::Wake.encode());
            self.push(entry)?;
            self.wake_armed = true;
            self.in_flight += 1;
        }
        Ok(())
    }

    /// One round: submit and wait, then handle every completion.
    fn turn(&mut self, service: &mut impl DatagramService) -> io::Result<LoopControl> {
        let want = 1 + self.fresh_sends;
        match self.ring.submit_and_wait(want) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            // EBUSY: completions overflowed; reaping them below makes room.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        self.counters.waits += 1;
        self.round += 1;
        self.fresh_sends = 0;
        let mut control = LoopControl::Continue;
        let mut batch = std::mem::take(&mut self.batch);
        loop {
            batch.clear();
            batch.extend(self.ring.completion().take(BATCH));
            if batch.is_empty() {
                break;
            }
            for cqe in batch.drain(..) {
                if self.complete(cqe, service)? == LoopControl::Stop {
                    control = LoopControl::Stop;
                }
            }
        }
        self.batch = batch;
        Ok(control)
    }

    /// Handles one completion.
    fn complete(
        &mut self,
        cqe: cqueue::Entry,
        service: &mut impl DatagramService,
    ) -> io::Result<LoopControl> {
        let more = cqueue::more(cqe.flags());
        if !more {
            self.in_flight -= 1;
        }
        let result = cqe.result();
        match Op::decode(cqe.user_data()) {
            Some(Op::Recv(socket)) => {
                let socket = socket as usize;
                if !more {
                    self.to_arm[socket] = true;
                }
                if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                    if result >= 0 {
                        self.received(socket, bid, result as usize, service)?;
                    }
                    self.bufs.recycle(bid);
                } else if result == -libc::ENOBUFS {
                    self.counters.out_of_buffers += 1;
                } else if result == -libc::EINVAL || result == -libc::EOPNOTSUPP {
                    // The kernel cannot do multishot receives (before Linux 6.0): re-arming would
                    // only fail again.
                    return Err(io::Error::from_raw_os_error(-result));
                } else if result < 0 {
                    service.recv_failed(socket, io::Error::from_raw_os_error(-result));
                }
            }
            Some(Op::Send(slot)) => {
                if self.sends.slot(slot).round == self.round {
                    // Submitted since the last wait (the queue was full) and already done.
                    self.fresh_sends -= 1;
                }
                self.sends.release(slot);
                if result < 0 {
                    service.send_failed(io::Error::from_raw_os_error(-result));
                }
            }
            Some(Op::Wake) => {
                self.wake_armed = false;
                return Ok(service.woken());
            }
            Some(Op::Tick) => {
                if result != -libc::ETIME {
                    return Err(io::Error::from_raw_os_error(-result));
                }
                service.tick();
                self.arm_tick()?;
            }
            Some(Op::Cancel) | None => {}
        }
        Ok(LoopControl::Continue)
    }

    /// Handles the datagram in buffer `bid` (the kernel wrote `len` bytes) and queues its reply.
    fn received(
        &mut self,
        socket: usize,
        bid: u16,
        len: usize,
        service: &mut impl DatagramService,
    ) -> io::Result<()> {
        self.counters.received += 1;
        let buffer = self.bufs.filled(bid, len);
        let Ok(out) = RecvMsgOut::parse(buffer, &self.recv_msghdr) else {
            service.recv_failed(
                socket,
                io::Error::new(io::ErrorKind::InvalidData, "short recvmsg buffer"),
            );
            return Ok(());
        };
        if out.is_payload_truncated() {
            service.oversized(socket, out.incoming_payload_len() as usize);
            return Ok(());
        }
        let slot_index = self.sends.acquire();
        let slot = self.sends.slot(slot_index);
        let Some(reply_len) = service.datagram(socket, out.payload_data(), slot.buf_mut()) else {
            self.sends.release(slot_index);
            return Ok(());
        };
        let name_len = (out.incoming_name_len() as usize).min(out.name_data().len());
        let msghdr = slot.prepare(reply_len, &out.name_data()[..name_len]);
        slot.round = self.round;
        let entry = opcode::SendMsg::new(Fixed(socket as u32), msghdr)
            .build()
            .user_data(Op::Send(slot_index).encode());
        self.push(entry)?;
        self.in_flight += 1;
        self.fresh_sends += 1;
        Ok(())
    }

    /// Queues `entry`, submitting what is queued first when the submission queue is full.
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry pushed points only at memory owned by `self` that outlives the
            // operation: the receive `msghdr` and the eventfd counter (boxed, freed after
            // `Drop` has reaped every operation), the buffer ring (same), and a send slot (boxed,
            // kept busy until the send's completion is reaped).
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Cancels every operation and reaps every completion, so that nothing in flight points at
    /// memory about to be freed.
    fn shutdown(&mut self) {
        if self.in_flight == 0 {
            return;
        }
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(Op::Cancel.encode());
        if self.push(cancel).is_err() {
            return;
        }
        self.in_flight += 1;
        while self.in_flight > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                // The ring is unusable; the kernel cancels what is left when it is closed.
                Err(_) => return,
            }
            while let Some(cqe) = self.ring.completion().next() {
                if !cqueue::more(cqe.flags()) {
                    self.in_flight -= 1;
                }
                if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                    self.bufs.recycle(bid);
                }
            }
        }
        let _ = self.bufs.unregister(&self.ring);
    }
}

/// The environment variable that makes [`probe`] fail as if io_uring were blocked, when set to
/// `1`: a test and diagnostic hook (it shows what `auto` does on a machine without io_uring).
/// Nothing else reads it: a forced `io = "io-uring"` is not affected.
pub const FORCE_FAILURE_ENV: &str = "LARS_AGENT_FORCE_URING_FAILURE";

/// Rounds [`probe`] waits for its own datagram; each lasts one 1 ms tick at most, so a kernel
/// that accepts the setup but never delivers is given up on within a fifth of a second.
const PROBE_ROUNDS: u64 = 200;

/// Whether this loop can run here, found out by running it: builds an [`EventLoop`] exactly as
/// a worker does (ring flags, provided-buffer ring, registered files) over a loopback socket
/// that has sent itself a datagram, and serves until the multishot `RecvMsg` delivers it. Fails
/// on Linux before 6.1, with `kernel.io_uring_disabled` set, under a seccomp profile that
/// blocks io_uring, and when [`FORCE_FAILURE_ENV`] is `1`. Called once per agent, at start.
pub fn probe() -> Result<(), DriverError> {
    if std::env::var_os(FORCE_FAILURE_ENV).is_some_and(|v| v == "1") {
        return Err(DriverError::Forced);
    }
    let socket =
        UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0)).map_err(DriverError::ProbeSocket)?;
    socket
        .local_addr()
        .and_then(|addr| socket.send_to(b"probe", addr))
        .map_err(DriverError::ProbeSocket)?;
    let mut event_loop = EventLoop::with_buffers(vec![socket], None, Duration::from_millis(1), 1)?;
    let mut service = ProbeService::default();
    for _ in 0..PROBE_ROUNDS {
        event_loop
            .run_rounds(&mut service, 1)
            .map_err(DriverError::Multishot)?;
        if let Some(error) = service.error.take() {
            return Err(DriverError::Multishot(error));
        }
        if service.received {
            return Ok(());
        }
    }
    Err(DriverError::Multishot(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no datagram within {PROBE_ROUNDS} rounds"),
    )))
}

/// What [`probe`] serves: notes the datagram or the error, answers nothing.
#[derive(Default)]
struct ProbeService {
    received: bool,
    error: Option<io::Error>,
}

impl DatagramService for ProbeService {
    fn datagram(&mut self, _local: usize, _datagram: &[u8], _reply: &mut [u8]) -> Option<usize> {
        self.received = true;
        None
    }
    fn oversized(&mut self, _local: usize, _len: usize) {
        self.received = true;
    }
    fn recv_failed(&mut self, _local: usize, error: io::Error) {
        self.error = Some(error);
    }
    fn send_failed(&mut self, _error: io::Error) {}
    fn woken(&mut self) -> LoopControl {
        LoopControl::Continue
    }
    fn tick(&mut self) {}
}

impl Drop for EventLoop<'_> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::testing::{Echo, bound, client, serve_while};

    /// Runs an [`Echo`] on a loop over `sockets` with `buffers` receive buffers until `client`
    /// returns; returns it with the loop's counters and reply slots.
    fn serve_echo(
        sockets: Vec<UdpSocket>,
        buffers: u16,
        client: impl FnOnce(),
    ) -> (Echo, LoopCounters, usize) {
        serve_while(
            move |wake, ready| {
                let mut event_loop = EventLoop::with_buffers(
                    sockets,
                    Some(wake),
                    Duration::from_millis(20),
                    buffers,
                )
                .unwrap();
                ready();
                let mut echo = Echo::default();
                event_loop.run(&mut echo).unwrap();
                (echo, event_loop.counters(), event_loop.send_slots())
            },
            client,
        )
    }

    #[test]
    fn many_datagrams_on_several_sockets_are_all_answered_with_few_reply_slots() {
        let (a, a_addr) = bound();
        let (b, b_addr) = bound();
        let (echo, counters, slots) = serve_echo(vec![a, b], RECV_BUFFERS, || {
            let caller = client();
            let mut buf = [0u8; 128];
            for i in 0..5000u32 {
                let to = if i % 2 == 0 { a_addr } else { b_addr };
                caller.send_to(&i.to_le_bytes(), to).unwrap();
                let (len, from) = caller.recv_from(&mut buf).unwrap();
                assert_eq!((&buf[..len], from), (&i.to_le_bytes()[..], to));
            }
        });
        assert_eq!(echo.lengths.len(), 5000);
        assert_eq!(counters.received, 5000);
        // One caller waiting for each answer: replies reuse the same few slots, and the
        // multishot receives ran all along (armed once per socket).
        assert!(slots <= 2, "{slots} reply slots for a one-at-a-time caller");
        assert_eq!(counters.recv_arms, 2);
    }

    #[test]
    fn running_out_of_buffers_ends_the_receive_and_it_is_armed_again() {
        let (socket, addr) = bound();
        let (echo, counters, _) = serve_echo(vec![socket], 2, || {
            let caller = client();
            let mut buf = [0u8; 128];
            // Bursts of 64 datagrams at a time: more than the 2 buffers.
            for burst in 0..20u32 {
                for i in 0..64u32 {
                    caller
                        .send_to(&(burst * 64 + i).to_le_bytes(), addr)
                        .unwrap();
                }
                for _ in 0..64 {
                    caller.recv_from(&mut buf).unwrap();
                }
            }
        });
        assert_eq!(echo.lengths.len(), 20 * 64);
        assert!(counters.out_of_buffers > 0, "{counters:?}");
        assert!(counters.recv_arms > 1, "{counters:?}");
    }

    #[test]
    fn the_largest_datagram_is_received_whole() {
        let (socket, addr) = bound();
        let (echo, _, _) = serve_echo(vec![socket], 4, || {
            let caller = client();
            let mut buf = [0u8; 128];
            for len in [65507usize, 1, 65507, 0, 4096] {
                caller.send_to(&vec![7u8; len], addr).unwrap();
                let (got, _) = caller.recv_from(&mut buf).unwrap();
                assert_eq!(got, len.min(64));
            }
        });
        assert_eq!(echo.lengths, vec![65507, 1, 65507, 0, 4096]);
        assert!(echo.oversized.is_empty());
    }

    #[test]
    fn the_probe_runs_the_loop_here() {
        probe().unwrap();
    }

    #[test]
    fn ticks_come_while_idle_and_stopping_reaps_every_operation() {
        let (socket, _) = bound();
        let wake = EventFd::new().unwrap();
        let mut event_loop =
            EventLoop::with_buffers(vec![socket], Some(&wake), Duration::from_millis(5), 4)
                .unwrap();
        let mut echo = Echo::default();
        assert_eq!(
            event_loop.run_rounds(&mut echo, 3).unwrap(),
            LoopControl::Continue
        );
        assert_eq!(echo.ticks, 3);
        wake.notify();
        assert_eq!(
            event_loop.run_rounds(&mut echo, 10).unwrap(),
            LoopControl::Stop
        );
        event_loop.shutdown();
        assert_eq!(event_loop.in_flight, 0);
    }
}
