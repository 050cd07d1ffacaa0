//! Everything of the agent that touches io_uring, and nothing else. Two data-plane runtimes,
//! chosen per agent by `[agent] io`:
//! - `tokio-uring`: the worker's runtime ([`block_on`], [`spawn_local`]) and the shard socket
//!   ([`udp::ShardSocket`]). tokio-uring has had no release since 0.5.0 and no active
//!   maintainer, so every call to it stays here;
//! - `io-uring`: [`uring::EventLoop`], a hand-written loop on the `io-uring` crate (multishot
//!   receives from a provided-buffer ring, one `io_uring_enter` per round, no epoll), woken by
//!   an [`eventfd::EventFd`].
//!
//! The `unsafe` of the agent lives in [`uring`] and [`eventfd`] (operations that point at memory
//! the kernel uses until their completion), each block with the invariant it relies on.

#[allow(unsafe_code)]
pub mod eventfd;
pub mod udp;
#[allow(unsafe_code)]
pub mod uring;

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
