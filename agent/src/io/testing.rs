//! What the drivers' unit tests share: a service that echoes, sockets bound like the agent's, a
//! caller, and a loop run on its own thread while the caller talks to it. Tests only.

use super::eventfd::EventFd;
use super::{DatagramService, LoopControl};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

/// Sends every datagram back (its first 64 bytes), remembers what it saw, and stops at the
/// wake-up after `wakes_to_stop` others.
#[derive(Default)]
pub struct Echo {
    pub lengths: Vec<usize>,
    pub oversized: Vec<usize>,
    pub ticks: usize,
    pub wakes: usize,
    pub wakes_to_stop: usize,
}

impl DatagramService for Echo {
    fn datagram(&mut self, _local: usize, datagram: &[u8], reply: &mut [u8]) -> Option<usize> {
        self.lengths.push(datagram.len());
        let len = datagram.len().min(64);
        reply[..len].copy_from_slice(&datagram[..len]);
        Some(len)
    }
    fn oversized(&mut self, _local: usize, len: usize) {
        self.oversized.push(len);
    }
    fn recv_failed(&mut self, _local: usize, error: io::Error) {
        panic!("receive failed: {error}");
    }
    fn send_failed(&mut self, error: io::Error) {
        panic!("send failed: {error}");
    }
    fn woken(&mut self) -> LoopControl {
        self.wakes += 1;
        if self.wakes > self.wakes_to_stop {
            LoopControl::Stop
        } else {
            LoopControl::Continue
        }
    }
    fn tick(&mut self) {
        self.ticks += 1;
    }
}

/// A socket bound on loopback the way the agent binds a shard's, and its address.
pub fn bound() -> (UdpSocket, SocketAddr) {
    let socket = crate::agent::bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// A caller's socket that gives up on an answer after 5 seconds.
pub fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
}

/// Runs `serve` on a thread of its own — it builds a loop woken by the eventfd it is given,
/// calls `ready`, and runs the loop until woken — while `client` runs here; then wakes the loop
/// to stop and returns what `serve` returned.
pub fn serve_while<T: Send + 'static>(
    serve: impl FnOnce(&EventFd, &dyn Fn()) -> T + Send + 'static,
    client: impl FnOnce(),
) -> T {
    let wake = Arc::new(EventFd::new().unwrap());
    let loop_wake = wake.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || serve(&loop_wake, &|| ready_tx.send(()).unwrap()));
    ready_rx.recv().unwrap();
    client();
    wake.notify();
    server.join().unwrap()
}
