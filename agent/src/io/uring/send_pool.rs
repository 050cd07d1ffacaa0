//! The reply slots of a worker's event loop: each holds a reply buffer and the `msghdr`, `iovec`
//! and destination address a `SendMsg` points at, boxed so that they stay where the kernel
//! expects them until the send's completion frees the slot. Slots are made when every slot is
//! busy and reused forever after, so the request path allocates nothing in steady state. Used
//! only by its worker's thread.

use crate::io::DATAGRAM_BUFFER;
use std::mem::{MaybeUninit, size_of};

/// One reply in preparation or in flight.
pub struct SendSlot {
    msghdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
    buf: Box<[u8]>,
    /// Loop round in which the send was submitted (see `uring::EventLoop`).
    pub round: u64,
}

impl SendSlot {
    fn new() -> Box<SendSlot> {
        Box::new(SendSlot {
            // SAFETY: msghdr, iovec and sockaddr_storage are plain C structs for which all-zero
            // bytes are a valid value (null pointers, zero lengths, address family 0).
            msghdr: unsafe { MaybeUninit::zeroed().assume_init() },
            // SAFETY: as above.
            iov: unsafe { MaybeUninit::zeroed().assume_init() },
            // SAFETY: as above.
            addr: unsafe { MaybeUninit::zeroed().assume_init() },
            buf: vec![0u8; DATAGRAM_BUFFER].into_boxed_slice(),
            round: 0,
        })
    }

    /// The reply buffer, to write the reply into.
    pub fn buf_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Points the slot's `msghdr` at the first `len` bytes of its buffer and at the destination
    /// `name` (a raw `sockaddr` as the kernel wrote it), and returns the `msghdr` for a
    /// `SendMsg`. The pointers stay valid while the slot is neither dropped nor prepared again:
    /// the slot is boxed and the pool keeps it busy until the send completes.
    pub fn prepare(&mut self, len: usize, name: &[u8]) -> *const libc::msghdr {
        let name_len = name.len().min(size_of::<libc::sockaddr_storage>());
        // SAFETY: `addr` is a sockaddr_storage, at least `name_len` bytes long, and `name` is a
        // distinct slice of at least `name_len` bytes (it lives in a receive buffer).
        unsafe {
            std::ptr::copy_nonoverlapping(
                name.as_ptr(),
                (&raw mut self.addr).cast::<u8>(),
                name_len,
            );
        }
        self.iov.iov_base = self.buf.as_mut_ptr().cast();
        self.iov.iov_len = len.min(self.buf.len());
        self.msghdr.msg_name = (&raw mut self.addr).cast();
        self.msghdr.msg_namelen = name_len as libc::socklen_t;
        self.msghdr.msg_iov = &raw mut self.iov;
        self.msghdr.msg_iovlen = 1;
        &raw const self.msghdr
    }
}

/// Every reply slot of a loop, busy or free.
#[derive(Default)]
pub struct SendPool {
    // Boxed: a slot in flight must not move when the Vec grows (the kernel holds pointers into
    // it until its send completes).
    #[allow(clippy::vec_box)]
    slots: Vec<Box<SendSlot>>,
    free: Vec<u32>,
}

impl SendPool {
    /// A free slot's index, making a new slot when all are busy.
    pub fn acquire(&mut self) -> u32 {
        if let Some(index) = self.free.pop() {
            return index;
        }
        self.slots.push(SendSlot::new());
        // Reserve room for every slot in the free list now, so `release` never allocates.
        self.free.reserve(self.slots.len());
        (self.slots.len() - 1) as u32
    }

    /// The slot `index`.
    pub fn slot(&mut self, index: u32) -> &mut SendSlot {
        &mut self.slots[index as usize]
    }

    /// Frees slot `index` once its send completed (or was never submitted).
    pub fn release(&mut self, index: u32) {
        self.free.push(index);
    }

    /// Slots made so far.
    pub fn len(&self) -> usize {
        self.slots.len()
    }
}
