//! A Linux eventfd: the wake-up of a worker running the hand-written io_uring loop
//! ([`super::uring`]). Producers on other threads [`EventFd::notify`] it (one `write(2)` of 1, and
//! only when a ring went from empty to non-empty, see [`crate::rings::Wake`]); the loop keeps a
//! read of it in flight on its ring. Owns the descriptor and closes it when dropped; never blocks
//! (the descriptor is non-blocking).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd counter, non-blocking and close-on-exec.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new eventfd whose counter is 0.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd(2) takes no pointer; it returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EventFd {
            // SAFETY: `fd` was just returned by eventfd(2), is valid and owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Adds 1 to the counter, waking a reader. A counter at its maximum (never reached: the
    /// reader resets it) would refuse the write; that is not an error worth reporting, since a
    /// reader is due anyway.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: the buffer is a live u64 on the stack and the length is its size; the
        // descriptor is owned by `self` and open.
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&raw const one).cast::<libc::c_void>(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// Reads and resets the counter without waiting: `None` when it was 0.
    pub fn take(&self) -> Option<u64> {
        let mut value: u64 = 0;
        // SAFETY: the buffer is a live, writable u64 and the length is its size; the
        // descriptor is owned by `self` and open.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&raw mut value).cast::<libc::c_void>(),
                std::mem::size_of::<u64>(),
            )
        };
        (n == std::mem::size_of::<u64>() as isize).then_some(value)
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
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
