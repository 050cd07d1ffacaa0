//! The `portable` driver (`[agent] io = "portable"`, and what `auto` falls back to when io_uring
//! cannot be set up): the worker's sockets made non-blocking and watched by one epoll instance
//! (edge-triggered), datagrams taken with `recvmmsg` and answered with `sendmmsg`, up to
//! [`BATCH`] at a time. Runs on any Linux, with or without io_uring.
//!
//! The loop is: one `epoll_wait` (not waiting when a socket may still hold datagrams, else until
//! the next tick); the eventfd wake-up first; then one batch from every socket that may hold
//! more, its replies sent before the next batch is received. A socket is read until it is
//! drained (edge-triggered epoll reports it again only when new datagrams come), one batch per
//! socket per round so that no socket starves the others. A batch that came back short is the
//! proof of a drained socket: a non-blocking `recvmmsg` stops before [`BATCH`] only when the
//! queue is empty (or on an error, which the socket's error report makes epoll signal again), so
//! only a full batch is followed by another `recvmmsg`. With one request in flight this saves a
//! zero-timeout `epoll_wait` and a `recvmmsg` that says `EAGAIN` per datagram: a get_host costs
//! `epoll_wait` + `recvmmsg` + `sendmmsg`, as in the cheapest blocking server. A reply the kernel will not take
//! (`EAGAIN`: the send buffer is full) is counted through [`DatagramService::send_failed`] and
//! dropped, like a failed send of the `io-uring` driver; a partial `sendmmsg` is resumed where it
//! stopped, and a reply that fails with any other error is counted and skipped.
//!
//! Runs on its worker's thread only; never blocks except in `epoll_wait`; never busy-polls.
//! The buffers are owned by the loop and pointed at only for the length of one system call.

use super::eventfd::EventFd;
use super::{DATAGRAM_BUFFER, DatagramService, DriverError, LoopControl};
use rustix::event::{Timespec, epoll};
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Datagrams per `recvmmsg` and per `sendmmsg`. Large enough that a saturated socket costs a
/// small fraction of a system call per datagram, small enough that the batch's buffers (one
/// receive and one reply buffer of [`DATAGRAM_BUFFER`] bytes per datagram, 4 MiB in all, touched
/// only as far as datagrams fill them) stay modest.
pub const BATCH: usize = 32;

/// Events taken per `epoll_wait`: one per shard socket a worker can have, and the wake-up.
const EVENTS: usize = crate::config::MAX_SHARDS as usize + 1;

/// The epoll token of the wake-up eventfd (sockets use their index).
const WAKE_TOKEN: u64 = u64::MAX;

/// Counters of the loop's own behaviour, for tests and the curious.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoopCounters {
    /// Datagrams received.
    pub received: u64,
    /// Replies the kernel took.
    pub sent: u64,
    /// `recvmmsg` calls that returned datagrams.
    pub recv_batches: u64,
    /// `recvmmsg` calls, those that found nothing (`EAGAIN`) included.
    pub recv_calls: u64,
    /// `epoll_wait` calls that could sleep (no socket known to hold datagrams).
    pub waits: u64,
}

/// One worker's epoll loop and the buffers its system calls point at.
pub struct EventLoop<'a> {
    epoll: OwnedFd,
    sockets: Vec<UdpSocket>,
    wake: Option<&'a EventFd>,
    tick: Duration,
    next_tick: Instant,
    /// Sockets that may still hold datagrams (not read to `EAGAIN` since their last event).
    readable: Vec<bool>,
    events: Vec<epoll::Event>,
    batch: Batch,
    counters: LoopCounters,
}

impl<'a> EventLoop<'a> {
    /// A loop serving `sockets`, woken by `wake` (if any), ticking every `tick`.
    pub fn new(
        sockets: Vec<UdpSocket>,
        wake: Option<&'a EventFd>,
        tick: Duration,
    ) -> Result<EventLoop<'a>, DriverError> {
        Self::with_buffer_len(sockets, wake, tick, DATAGRAM_BUFFER)
    }

    /// As [`EventLoop::new`] with receive buffers of `buf_len` bytes (tests: a smaller buffer
    /// makes a datagram oversized).
    pub fn with_buffer_len(
        sockets: Vec<UdpSocket>,
        wake: Option<&'a EventFd>,
        tick: Duration,
        buf_len: usize,
    ) -> Result<EventLoop<'a>, DriverError> {
        let epoll =
            epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| DriverError::Epoll(e.into()))?;
        for (local, socket) in sockets.iter().enumerate() {
            socket.set_nonblocking(true).map_err(DriverError::Epoll)?;
            epoll::add(
                &epoll,
                socket,
                epoll::EventData::new_u64(local as u64),
                epoll::EventFlags::IN | epoll::EventFlags::ET,
            )
            .map_err(|e| DriverError::Epoll(e.into()))?;
        }
        if let Some(wake) = wake {
            // Level-triggered: the loop resets the counter each time it sees it.
            epoll::add(
                &epoll,
                wake,
                epoll::EventData::new_u64(WAKE_TOKEN),
                epoll::EventFlags::IN,
            )
            .map_err(|e| DriverError::Epoll(e.into()))?;
        }
        let tick = tick.max(Duration::from_millis(1));
        let count = sockets.len();
        Ok(EventLoop {
            epoll,
            sockets,
            wake,
            tick,
            next_tick: Instant::now() + tick,
            // Datagrams may have come before the sockets were registered: read each once.
            readable: vec![true; count],
            events: Vec::with_capacity(EVENTS),
            batch: Batch::new(buf_len.max(1)),
            counters: LoopCounters::default(),
        })
    }

    /// The loop's counters so far.
    pub fn counters(&self) -> LoopCounters {
        self.counters
    }

    /// Serves until `service` says stop.
    pub fn run(&mut self, service: &mut impl DatagramService) -> io::Result<()> {
        while self.run_rounds(service, u64::MAX)? == LoopControl::Continue {}
        Ok(())
    }

    /// Serves until `service` says stop or `rounds` rounds have passed (tests).
    pub fn run_rounds(
        &mut self,
        service: &mut impl DatagramService,
        rounds: u64,
    ) -> io::Result<LoopControl> {
        for _ in 0..rounds {
            if self.turn(service)? == LoopControl::Stop {
                return Ok(LoopControl::Stop);
            }
        }
        Ok(LoopControl::Continue)
    }

    /// One round: wait for events, then the wake-up, one batch per socket and the tick.
    fn turn(&mut self, service: &mut impl DatagramService) -> io::Result<LoopControl> {
        let busy = self.readable.contains(&true);
        let timeout = if busy {
            Duration::ZERO
        } else {
            self.counters.waits += 1;
            self.next_tick.saturating_duration_since(Instant::now())
        };
        let timeout = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        self.events.clear();
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut self.events),
            Some(&timeout),
        ) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let mut woken = false;
        for event in &self.events {
            match event.data.u64() {
                WAKE_TOKEN => woken = true,
                local => {
                    if let Some(readable) = self.readable.get_mut(local as usize) {
                        *readable = true;
                    }
                }
            }
        }
        if woken {
            if let Some(wake) = self.wake {
                wake.take();
            }
            if service.woken() == LoopControl::Stop {
                return Ok(LoopControl::Stop);
            }
        }
        for local in 0..self.sockets.len() {
            if self.readable[local] {
                self.readable[local] = self.serve_batch(local, service);
            }
        }
        let now = Instant::now();
        if now >= self.next_tick {
            service.tick();
            self.next_tick = now + self.tick;
        }
        Ok(LoopControl::Continue)
    }

    /// Receives one batch on socket `local`, hands each datagram to `service` and sends the
    /// replies. Returns whether the socket may still hold datagrams.
    fn serve_batch(&mut self, local: usize, service: &mut impl DatagramService) -> bool {
        let fd = self.sockets[local].as_raw_fd();
        self.counters.recv_calls += 1;
        let received = match self.batch.recv(fd) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return true,
            Err(e) => {
                // Read again next round: the error (a pending ICMP error, say) is reported once.
                service.recv_failed(local, e);
                return true;
            }
        };
        self.counters.recv_batches += 1;
        self.counters.received += received as u64;
        let mut replies = 0;
        for slot in 0..received {
            let (len, truncated) = self.batch.received(slot);
            if truncated {
                service.oversized(local, len);
                continue;
            }
            let (datagram, reply) = self.batch.datagram_and_reply(slot, replies, len);
            if let Some(reply_len) = service.datagram(local, datagram, reply) {
                self.batch.queue_reply(slot, replies, reply_len);
                replies += 1;
            }
        }
        self.send(fd, replies, service);
        // Short: the queue was empty when `recvmmsg` stopped (see the module doc); anything that
        // arrived since is a new edge, reported by the next `epoll_wait`.
        received == BATCH
    }

    /// Sends the `count` queued replies on `fd`, resuming partial sends; a reply the kernel
    /// refuses is counted and dropped.
    fn send(&mut self, fd: RawFd, count: usize, service: &mut impl DatagramService) {
        let mut next = 0;
        while next < count {
            match self.batch.send(fd, next, count) {
                Ok(0) => {
                    // Not expected from a non-empty sendmmsg; never spin on it.
                    for _ in next..count {
                        service.send_failed(io::ErrorKind::WriteZero.into());
                    }
                    return;
                }
                Ok(sent) => {
                    next += sent;
                    self.counters.sent += sent as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The send buffer is full: the rest would fail alike. Drop them.
                    for _ in next..count {
                        service.send_failed(io::ErrorKind::WouldBlock.into());
                    }
                    return;
                }
                Err(e) => {
                    // Only the first reply of the call failed (sendmmsg reports an error only
                    // when nothing was sent): skip it, send the rest.
                    service.send_failed(e);
                    next += 1;
                }
            }
        }
    }
}

/// The buffers of one batch and the headers `recvmmsg`/`sendmmsg` read them through. The
/// headers' pointers are set right before each call from the buffers owned here, which stay
/// where they are (boxed slices) for the loop's life.
struct Batch {
    buf_len: usize,
    /// `BATCH` receive buffers of `buf_len` bytes.
    bufs: Box<[u8]>,
    /// The senders of the received datagrams, where the replies go.
    names: Box<[libc::sockaddr_storage]>,
    recv_iovs: Box<[libc::iovec]>,
    recv_hdrs: Box<[libc::mmsghdr]>,
    /// `BATCH` reply buffers of [`DATAGRAM_BUFFER`] bytes.
    replies: Box<[u8]>,
    /// Per queued reply: the receive slot it answers and its length.
    queued: Box<[(usize, usize)]>,
    send_iovs: Box<[libc::iovec]>,
    send_hdrs: Box<[libc::mmsghdr]>,
}

/// Points `hdr` at one `name` of `name_len` bytes and one `iov`, with no control data, and
/// clears what the kernel reports back in it.
fn point(
    hdr: &mut libc::mmsghdr,
    name: *mut libc::sockaddr_storage,
    name_len: libc::socklen_t,
    iov: *mut libc::iovec,
) {
    hdr.msg_len = 0;
    hdr.msg_hdr.msg_name = name.cast();
    hdr.msg_hdr.msg_namelen = name_len;
    hdr.msg_hdr.msg_iov = iov;
    hdr.msg_hdr.msg_iovlen = 1;
    hdr.msg_hdr.msg_control = std::ptr::null_mut();
    hdr.msg_hdr.msg_controllen = 0;
    hdr.msg_hdr.msg_flags = 0;
}

/// A C struct of all-zero bytes.
fn zeroed<T: Copy>() -> T {
    // SAFETY: used only for sockaddr_storage, iovec and mmsghdr, plain C structs for which all
    // zero bytes are a valid value (family 0, null pointers, zero lengths).
    unsafe { MaybeUninit::zeroed().assume_init() }
}

impl Batch {
    fn new(buf_len: usize) -> Batch {
        Batch {
            buf_len,
            bufs: vec![0u8; BATCH * buf_len].into_boxed_slice(),
            names: vec![zeroed(); BATCH].into_boxed_slice(),
            recv_iovs: vec![zeroed(); BATCH].into_boxed_slice(),
            recv_hdrs: vec![zeroed(); BATCH].into_boxed_slice(),
            replies: vec![0u8; BATCH * DATAGRAM_BUFFER].into_boxed_slice(),
            queued: vec![(0, 0); BATCH].into_boxed_slice(),
            send_iovs: vec![zeroed(); BATCH].into_boxed_slice(),
            send_hdrs: vec![zeroed(); BATCH].into_boxed_slice(),
        }
    }

    /// One `recvmmsg` of up to [`BATCH`] datagrams on `fd`, without waiting: how many came.
    fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let bufs = self.bufs.as_mut_ptr();
        for (slot, iov) in self.recv_iovs.iter_mut().enumerate() {
            iov.iov_base = bufs.wrapping_add(slot * self.buf_len).cast();
            iov.iov_len = self.buf_len;
        }
        let iovs = self.recv_iovs.as_mut_ptr();
        let names = self.names.as_mut_ptr();
        let name_len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        for (slot, hdr) in self.recv_hdrs.iter_mut().enumerate() {
            point(
                hdr,
                names.wrapping_add(slot),
                name_len,
                iovs.wrapping_add(slot),
            );
        }
        // SAFETY: `recv_hdrs` holds BATCH headers, each pointing at its own name (a
        // sockaddr_storage, with its size as msg_namelen) and its own iovec, which points at
        // `buf_len` bytes of `bufs`; every one of those lives in a boxed slice owned by `self`,
        // borrowed mutably for this call, and the kernel writes them only during the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.recv_hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The length of the datagram in receive slot `slot` (its real length with `MSG_TRUNC`),
    /// and whether it was cut to fit the buffer.
    fn received(&self, slot: usize) -> (usize, bool) {
        let hdr = &self.recv_hdrs[slot];
        (
            hdr.msg_len as usize,
            hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        )
    }

    /// The `len`-byte datagram in receive slot `slot` and reply buffer `reply`.
    fn datagram_and_reply(&mut self, slot: usize, reply: usize, len: usize) -> (&[u8], &mut [u8]) {
        let start = slot * self.buf_len;
        (
            &self.bufs[start..start + len.min(self.buf_len)],
            &mut self.replies[reply * DATAGRAM_BUFFER..(reply + 1) * DATAGRAM_BUFFER],
        )
    }

    /// Queues reply buffer `reply`'s first `len` bytes to the sender of receive slot `slot`.
    fn queue_reply(&mut self, slot: usize, reply: usize, len: usize) {
        self.queued[reply] = (slot, len.min(DATAGRAM_BUFFER));
    }

    /// One `sendmmsg` of queued replies `from..to` on `fd`: how many the kernel took.
    fn send(&mut self, fd: RawFd, from: usize, to: usize) -> io::Result<usize> {
        let replies = self.replies.as_mut_ptr();
        for reply in from..to {
            let (_, len) = self.queued[reply];
            let iov = &mut self.send_iovs[reply];
            iov.iov_base = replies.wrapping_add(reply * DATAGRAM_BUFFER).cast();
            iov.iov_len = len;
        }
        let iovs = self.send_iovs.as_mut_ptr();
        let names = self.names.as_mut_ptr();
        for reply in from..to {
            let (slot, _) = self.queued[reply];
            let name_len = self.recv_hdrs[slot].msg_hdr.msg_namelen;
            point(
                &mut self.send_hdrs[reply],
                names.wrapping_add(slot),
                name_len,
                iovs.wrapping_add(reply),
            );
        }
        // SAFETY: headers `from..to` of `send_hdrs` (from < to <= BATCH, so the pointer and
        // count stay inside the slice) each point at a sender address the last recvmmsg wrote
        // (with the length it wrote) and at their own iovec, which points at `len` <=
        // DATAGRAM_BUFFER bytes of their own reply buffer; all live in boxed slices owned by
        // `self`, borrowed for this call, and the kernel only reads them during the call.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                self.send_hdrs.as_mut_ptr().wrapping_add(from),
                (to - from) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::testing::{Echo, bound, client, serve_while};

    /// Runs an [`Echo`] on a loop over `sockets` with receive buffers of `buf_len` bytes until
    /// `client` returns; returns it with the loop's counters.
    fn serve_echo(
        sockets: Vec<UdpSocket>,
        buf_len: usize,
        client: impl FnOnce(),
    ) -> (Echo, LoopCounters) {
        serve_while(
            move |wake, ready| {
                let mut event_loop = EventLoop::with_buffer_len(
                    sockets,
                    Some(wake),
                    Duration::from_millis(20),
                    buf_len,
                )
                .unwrap();
                ready();
                let mut echo = Echo::default();
                event_loop.run(&mut echo).unwrap();
                (echo, event_loop.counters())
            },
            client,
        )
    }

    #[test]
    fn datagrams_on_several_sockets_are_all_answered_to_their_senders() {
        let (a, a_addr) = bound();
        let (b, b_addr) = bound();
        let (echo, counters) = serve_echo(vec![a, b], DATAGRAM_BUFFER, || {
            let caller = client();
            let mut buf = [0u8; 128];
            for i in 0..2000u32 {
                let to = if i % 2 == 0 { a_addr } else { b_addr };
                caller.send_to(&i.to_le_bytes(), to).unwrap();
                let (len, from) = caller.recv_from(&mut buf).unwrap();
                assert_eq!((&buf[..len], from), (&i.to_le_bytes()[..], to));
            }
        });
        assert_eq!(echo.lengths.len(), 2000);
        assert_eq!((counters.received, counters.sent), (2000, 2000));
    }

    #[test]
    fn a_caller_with_one_request_in_flight_costs_one_wait_and_one_recvmmsg_per_datagram() {
        let (socket, addr) = bound();
        let (echo, counters) = serve_echo(vec![socket], DATAGRAM_BUFFER, || {
            let caller = client();
            let mut buf = [0u8; 128];
            for i in 0..2000u32 {
                caller.send_to(&i.to_le_bytes(), addr).unwrap();
                caller.recv_from(&mut buf).unwrap();
            }
        });
        assert_eq!(echo.lengths.len(), 2000);
        // A short batch means a drained socket: no second `recvmmsg` that finds nothing, and no
        // zero-timeout `epoll_wait` before it (each round waits). Reading until `EAGAIN` would
        // make about two calls of each per datagram.
        assert!(
            counters.recv_calls <= counters.received + counters.received / 10,
            "{counters:?}"
        );
        assert!(counters.waits >= counters.received, "{counters:?}");
    }

    #[test]
    fn a_burst_larger_than_a_batch_is_drained_in_several_batches() {
        let (socket, addr) = bound();
        let (echo, counters) = serve_echo(vec![socket], DATAGRAM_BUFFER, || {
            let caller = client();
            let mut buf = [0u8; 128];
            for burst in 0..20u32 {
                // Four batches' worth at once, queued before the loop reads any.
                for i in 0..(4 * BATCH as u32) {
                    caller
                        .send_to(&(burst * 1000 + i).to_le_bytes(), addr)
                        .unwrap();
                }
                let mut answers: Vec<u32> = (0..4 * BATCH)
                    .map(|_| {
                        let (len, _) = caller.recv_from(&mut buf).unwrap();
                        u32::from_le_bytes(buf[..len].try_into().unwrap())
                    })
                    .collect();
                answers.sort_unstable();
                let sent: Vec<u32> = (0..(4 * BATCH as u32)).map(|i| burst * 1000 + i).collect();
                assert_eq!(answers, sent);
            }
        });
        assert_eq!(echo.lengths.len(), 20 * 4 * BATCH);
        assert!(counters.recv_batches >= 20 * 4, "{counters:?}");
    }

    #[test]
    fn the_largest_datagram_is_received_whole() {
        let (socket, addr) = bound();
        let (echo, _) = serve_echo(vec![socket], DATAGRAM_BUFFER, || {
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
    fn a_datagram_larger_than_the_buffer_is_oversized_with_its_real_length() {
        let (socket, addr) = bound();
        let (echo, _) = serve_echo(vec![socket], 100, || {
            let caller = client();
            let mut buf = [0u8; 128];
            caller.send_to(&[1u8; 300], addr).unwrap();
            // The next one is answered: the oversized one was dropped, not answered.
            caller.send_to(&[2u8; 10], addr).unwrap();
            let (len, _) = caller.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], &[2u8; 10]);
        });
        assert_eq!(echo.oversized, vec![300]);
        assert_eq!(echo.lengths, vec![10]);
    }

    #[test]
    fn a_wake_up_reaches_the_service_and_stop_ends_the_loop() {
        let (socket, _) = bound();
        let wake = EventFd::new().unwrap();
        let mut event_loop =
            EventLoop::new(vec![socket], Some(&wake), Duration::from_secs(3600)).unwrap();
        let mut echo = Echo {
            wakes_to_stop: 1,
            ..Echo::default()
        };
        wake.notify();
        // The tick is an hour away: only the wake-up can end this round.
        assert_eq!(
            event_loop.run_rounds(&mut echo, 1).unwrap(),
            LoopControl::Continue
        );
        assert_eq!(echo.wakes, 1);
        assert_eq!(wake.take(), None, "the loop reset the counter");
        wake.notify();
        event_loop.run(&mut echo).unwrap();
        assert_eq!(echo.wakes, 2);
        assert_eq!(echo.ticks, 0);
    }

    #[test]
    fn ticks_come_while_idle() {
        let (socket, _) = bound();
        let wake = EventFd::new().unwrap();
        let mut event_loop =
            EventLoop::new(vec![socket], Some(&wake), Duration::from_millis(5)).unwrap();
        let mut echo = Echo::default();
        // First round reads the socket once (nothing there); then each round sleeps until the
        // tick is due.
        while echo.ticks < 3 {
            assert_eq!(
                event_loop.run_rounds(&mut echo, 1).unwrap(),
                LoopControl::Continue
            );
        }
        assert!(event_loop.counters().waits >= 3);
        assert!(echo.lengths.is_empty());
    }
}
