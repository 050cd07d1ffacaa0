//! The Lars agent: runs on every host next to the callers, answers their `get_host`, `report`
//! and `get_route` over UDP, pulls routes from lars-dns and uploads call statistics to
//! lars-reporter (SPEC §2).
//!
//! This crate holds, for now, the agent's decision-making core, as plain sans-I/O modules that
//! take the time as an argument and return what to send:
//! - [`loadbalance`]: the `[loadbalance]` settings (Lars' thresholds and timeouts);
//! - [`route`]: one route's hosts and the per-host idle/overload state machine;
//! - [`route_table`]: one shard's routes, when to ask dns, and the statistics to upload.
//!
//! The rest of the agent — the workers (one per core), their io_uring shards, the SPSC rings to
//! and from the uplinks, the dns and report uplinks, and the config — will live beside these
//! modules as files with those names, and will own the sockets, threads and clock these modules
//! never touch.

#![deny(missing_docs)]
#![cfg_attr(not(test), forbid(unsafe_code))]

pub mod loadbalance;
pub mod route;
pub mod route_table;

pub use loadbalance::LbSettings;
pub use route::{
    HostAddr, HostAddrs, HostState, HostTransition, HostsUpdate, Millis, OverloadReason, Pick,
    RecoverReason, Route, UnknownHost,
};
pub use route_table::{DnsAsk, DnsUpdateOutcome, HostAnswer, ReportOutcome, RouteKey, RouteTable};

/// Test-only global allocator that counts, per thread, the allocations made and the bytes live,
/// so that tests can pin "no allocation per pick/report" and the memory per host exactly, without
/// other tests running in parallel disturbing the count.
#[cfg(test)]
mod alloc_counter {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
        static LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
    }

    /// Allocations (including reallocations) made by this thread so far.
    pub(crate) fn allocations() -> u64 {
        ALLOCATIONS.with(Cell::get)
    }

    /// Bytes allocated minus bytes freed by this thread so far.
    pub(crate) fn live_bytes() -> i64 {
        LIVE_BYTES.with(Cell::get)
    }

    fn count(allocations: u64, bytes: i64) {
        // `try_with`: a thread being torn down may still free memory; const-initialised
        // thread-locals without destructors stay reachable, but never panic in an allocator.
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + allocations));
        let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + bytes));
    }

    struct Counting;

    #[allow(unsafe_code)]
    // SAFETY: every method forwards to `System` with the caller's arguments unchanged, so it
    // upholds `GlobalAlloc`'s contract exactly as `System` does; the counting touches only
    // const-initialised thread-locals, which never allocate.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(1, layout.size() as i64);
            // SAFETY: the caller's `layout` obligations are passed on unchanged.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count(1, layout.size() as i64);
            // SAFETY: as for `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            count(0, -(layout.size() as i64));
            // SAFETY: `ptr` came from this allocator (hence from `System`) with `layout`.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count(1, new_size as i64 - layout.size() as i64);
            // SAFETY: `ptr` came from `System` with `layout`; `new_size` is the caller's.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;
}
