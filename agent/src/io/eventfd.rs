//! A Linux eventfd: the wake-up of a worker's loop, whichever driver runs it. Producers on other
//! threads [`EventFd::notify`] it (one `write(2)` of 1, and only when a ring went from empty to
//! non-empty, see [`crate::rings::Wake`]); the `io-uring` loop keeps a read of it in flight on
//! its ring, the `portable` loop has it in its epoll set and [`EventFd::take`]s it when ready.
//! Owns the descriptor and closes it when dropped; never blocks (the descriptor is
//! non-blocking).

use rustix::event::{EventfdFlags, eventfd};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// An eventfd counter, non-blocking and close-on-exec.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new eventfd whose counter is 0.
    pub fn new() -> io::Result<EventFd> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(EventFd { fd })
    }

    /// Adds 1 to the counter, waking a reader. A counter at its maximum (never reached: the
    /// reader resets it) would refuse the write; that is not an error worth reporting, since a
    /// reader is due anyway.
    pub fn notify(&self) {
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Reads and resets the counter without waiting: `None` when it was 0.
    pub fn take(&self) -> Option<u64> {
        let mut value = [0u8; 8];
        match rustix::io::read(&self.fd, &mut value) {
            Ok(8) => Some(u64::from_ne_bytes(value)),
            _ => None,
        }
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_add_up_until_taken() {
        let fd = EventFd::new().unwrap();
        assert_eq!(fd.take(), None);
        fd.notify();
        fd.notify();
        assert_eq!(fd.take(), Some(2));
        assert_eq!(fd.take(), None);
    }
}
