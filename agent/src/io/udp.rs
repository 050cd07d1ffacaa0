//! A shard's UDP socket on io_uring. Buffers are owned and handed to the kernel for the length of
//! an operation (the io_uring model), then handed back: callers keep one receive and one reply
//! buffer per task and reuse them, so the request path allocates nothing.

use std::io;
use std::net::SocketAddr;
use tokio_uring::buf::BoundedBuf;

/// Size of the buffers a shard task keeps: the largest datagram plus one byte, so that an
/// oversized datagram is seen as such instead of silently truncated.
pub const DATAGRAM_BUFFER: usize = 65536;

/// A bound UDP socket driven by the worker's io_uring.
pub struct ShardSocket {
    inner: tokio_uring::net::UdpSocket,
}

impl ShardSocket {
    /// Takes over a socket bound by the agent before the workers started. Must be called on the
    /// worker's runtime.
    pub fn from_std(socket: std::net::UdpSocket) -> ShardSocket {
        ShardSocket {
            inner: tokio_uring::net::UdpSocket::from_std(socket),
        }
    }

    /// Receives one datagram into `buf` (cleared first; its capacity is the room), returning its
    /// length and sender with the buffer.
    pub async fn recv_from(&self, mut buf: Vec<u8>) -> (io::Result<(usize, SocketAddr)>, Vec<u8>) {
        buf.clear();
        self.inner.recv_from(buf).await
    }

    /// Sends the first `len` bytes of `buf` to `to`, returning the buffer.
    pub async fn send_to(
        &self,
        buf: Vec<u8>,
        len: usize,
        to: SocketAddr,
    ) -> (io::Result<usize>, Vec<u8>) {
        let (result, slice) = self.inner.send_to(buf.slice(..len), to).await;
        (result, slice.into_inner())
    }
}
