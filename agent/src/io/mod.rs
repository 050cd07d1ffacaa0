//! Everything of the agent that touches `tokio-uring`, and nothing else: the worker's runtime
//! ([`block_on`], [`spawn_local`]) and the shard socket ([`udp::ShardSocket`]). tokio-uring has
//! had no release since 0.5.0 and no active maintainer; keeping every call to it here means the
//! runtime can be swapped (the `io-uring` crate with multishot receives and provided buffers, or
//! another thread-per-core runtime) by rewriting this module alone.

pub mod udp;

use std::future::Future;

/// Runs `future` to completion on a new io_uring runtime on this thread. Tasks still running
/// when it completes are dropped, and their operations cancelled.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio_uring::start(future)
}

/// Runs `future` as a task on this thread's runtime.
pub fn spawn_local<F: Future + 'static>(future: F) {
    drop(tokio_uring::spawn(future));
}
