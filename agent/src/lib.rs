//! The Lars agent: runs on every host next to the callers, answers their `get_host`, `report`
//! and `get_route` over UDP, pulls routes from lars-dns and uploads call statistics to
//! lars-reporter.
//!
//! The files are the parts of the agent (all private to the crate):
//! - `lb/`: the load-balancing rules, the decision-making core — plain sans-I/O code that takes
//!   the time as an argument: `settings` (Lars' thresholds), `host` (one host's idle/overload
//!   state machine), `route` (picks and probes), `table` (a shard's routes: when to ask dns, the
//!   statistics to upload);
//! - `clock`: the agent's time, `Millis`, which the rules take as an argument;
//! - `shard`: one shard's request handling (datagram in, reply bytes out), also without I/O;
//! - `worker`: one pinned thread per CPU with its own I/O loop, owning its shards;
//! - `io`: everything that touches the sockets: the seam a worker serves through and its two
//!   drivers, the hand-written `io-uring` loop and the `portable` epoll loop (the crate's only
//!   `unsafe`);
//! - `rings`: the SPSC rings between the workers and the uplinks;
//! - `uplink`, `dns_uplink`, `report_uplink`: the TCP clients to lars-dns and lars-reporter;
//! - `cache`: the route cache file a restarted agent serves from before dns answers, and the
//!   thread that writes it;
//! - `stats`, `admin`: the counters and the metrics endpoint that serves them;
//! - `config`, `agent`: the settings and the assembly of a running agent.
//!
//! The public API is what the `lars-agent` binary, the benchmarks and the tests use: [`Agent`]
//! started from an [`AgentConfig`]; [`AgentStats`] and [`DropReason`], the counters it serves;
//! and the I/O seam on its own — [`bind_shards`], [`DriverChoice`] resolved to a [`Driver`] by
//! [`resolve_driver`], a [`DatagramLoop`] serving a [`DatagramService`] — which the benchmarks'
//! echo server runs to measure the data plane without the agent's request handling.
//!
//! ```text
//!  callers ──UDP──► worker 0 [shards 0, 2] ──DnsRequest──► dns uplink ──TCP──► lars-dns
//!          ──UDP──► worker 1 [shard 1]     ◄─RouteUpdate──            ◄──push──
//!                         │ ReportStatusRequest
//!                         └──────────────────────────────► report uplink ─TCP─► lars-reporter
//! ```

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub(crate) mod admin;
pub(crate) mod agent;
pub(crate) mod cache;
pub(crate) mod clock;
pub(crate) mod config;
pub(crate) mod dns_uplink;
pub(crate) mod io;
pub(crate) mod lb;
pub(crate) mod log_limit;
pub(crate) mod report_uplink;
pub(crate) mod rings;
pub(crate) mod shard;
pub(crate) mod stats;
pub(crate) mod uplink;
pub(crate) mod worker;

pub use agent::{Agent, AgentError, bind_shards};
pub use cache::{FILE_NAME as ROUTE_CACHE_FILE, encode as encode_route_cache};
pub use config::{AgentConfig, DriverChoice};
pub use io::{
    DATAGRAM_BUFFER, DatagramLoop, DatagramService, Driver, DriverError, LoopControl,
    resolve as resolve_driver,
};
pub use stats::{AgentStats, DropReason};

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
