//! The provided-buffer ring a worker's multishot receives pick their buffers from
//! (`IORING_REGISTER_PBUF_RING`). Owns the ring of buffer descriptors (page-aligned, shared with
//! the kernel) and the buffers themselves; the event loop hands a buffer back with
//! [`BufRing::recycle`] as soon as the datagram in it has been handled. Used only by its
//! worker's thread; never allocates after [`BufRing::new`].

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, cqueue, squeue};
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

/// Alignment the kernel requires of the descriptor ring (a page).
const PAGE: usize = 4096;

/// A registered ring of `count` buffers of `buf_len` bytes each.
pub struct BufRing {
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    bufs: NonNull<u8>,
    bufs_layout: Layout,
    count: u16,
    buf_len: usize,
    /// Our copy of the tail: the next descriptor slot to fill.
    tail: u16,
    bgid: u16,
}

impl BufRing {
    /// Allocates `count` buffers (a power of two, at most 32768) of `buf_len` bytes, all
    /// available to the kernel once [`BufRing::register`]ed.
    pub fn new(count: u16, buf_len: usize, bgid: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 32768 || buf_len == 0 || buf_len > u32::MAX as usize
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring: count must be a power of two <= 32768",
            ));
        }
        let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "buffer ring too large");
        let entries_layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            PAGE,
        )
        .map_err(|_| too_big())?;
        let bufs_layout = Layout::from_size_align(
            usize::from(count)
                .checked_mul(buf_len)
                .ok_or_else(too_big)?,
            PAGE,
        )
        .map_err(|_| too_big())?;
        // SAFETY: both layouts have a non-zero size (count >= 1, buf_len >= 1).
        let entries = NonNull::new(unsafe { alloc_zeroed(entries_layout) }.cast::<BufRingEntry>())
            .ok_or(io::ErrorKind::OutOfMemory)?;
        // SAFETY: as above.
        let Some(bufs) = NonNull::new(unsafe { alloc_zeroed(bufs_layout) }) else {
            // SAFETY: `entries` was allocated just above with `entries_layout`.
            unsafe { dealloc(entries.as_ptr().cast(), entries_layout) };
            return Err(io::ErrorKind::OutOfMemory.into());
        };
        let mut ring = BufRing {
            entries,
            entries_layout,
            bufs,
            bufs_layout,
            count,
            buf_len,
            tail: 0,
            bgid,
        };
        for bid in 0..count {
            ring.put(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Registers the ring with `ring` under its group id. It must stay registered (or `ring` be
    /// dropped) before `self` is dropped: see [`BufRing::unregister`].
    pub fn register<S: squeue::EntryMarker, C: cqueue::EntryMarker>(
        &self,
        ring: &IoUring<S, C>,
    ) -> io::Result<()> {
        // SAFETY: the descriptor ring is page-aligned, holds `count` entries and lives as long as
        // `self`; `Drop` is only reached after `unregister` or with the io_uring already gone
        // (the event loop's field order and its `Drop` guarantee it).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.entries.as_ptr() as u64,
                self.count,
                self.bgid,
                0,
            )
        }
    }

    /// Withdraws the ring from `ring`: the kernel no longer picks buffers from it.
    pub fn unregister<S: squeue::EntryMarker, C: cqueue::EntryMarker>(
        &self,
        ring: &IoUring<S, C>,
    ) -> io::Result<()> {
        ring.submitter().unregister_buf_ring(self.bgid)
    }

    /// The group id receives name to pick from this ring.
    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    /// The first `len` bytes of buffer `bid`, which the kernel filled and handed to us in a
    /// completion (so it does not write to it until it is recycled).
    pub fn filled(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid % self.count);
        let len = len.min(self.buf_len);
        // SAFETY: `bid < count`, so the slice lies within the `count * buf_len` bytes of
        // `bufs`, which are initialised (zeroed at allocation, then written by the kernel). The
        // kernel owns a buffer only between `put` and the completion that returns it; the caller
        // holds that completion and recycles the buffer only after dropping this borrow.
        unsafe { std::slice::from_raw_parts(self.bufs.as_ptr().add(bid * self.buf_len), len) }
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        self.put(bid % self.count);
        self.publish();
    }

    /// Writes the descriptor of buffer `bid` at our tail (not yet visible to the kernel).
    fn put(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot < count`: the entry lies within the descriptor allocation. The kernel
        // reads only the entries between its head and the published tail, and this slot is past
        // the published tail (the ring never holds more than `count` buffers: each bid is put
        // once at creation and then only after its completion).
        let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
        // SAFETY: `bid < count`, so the address is within the buffer allocation.
        let addr = unsafe { self.bufs.as_ptr().add(usize::from(bid) * self.buf_len) };
        entry.set_addr(addr as u64);
        entry.set_len(self.buf_len as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every descriptor written so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: `entries` is the page-aligned base of the ring, initialised (zeroed) at
        // allocation; the tail field is the `resv` of entry 0, a u16 aligned to 2, which only we
        // write and the kernel only reads, so viewing it as an atomic is sound.
        let tail = unsafe { &*BufRingEntry::tail(self.entries.as_ptr()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both allocations were made in `new` with these layouts, and the kernel no
        // longer uses them (see `register`).
        unsafe {
            dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}
