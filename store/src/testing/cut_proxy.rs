//! [`CutProxy`]: a TCP proxy between a test's client and a real server that can be cut and
//! restored, the standard way our tests simulate a database (or any peer) outage.
//!
//! Runs as tasks on the caller's tokio runtime; every connection is one task that forwards
//! bytes both ways until the link is cut, the proxy is dropped, or either side closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Pause after a failed `accept` before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// A TCP proxy on `127.0.0.1:<port the OS picks>` forwarding to one target.
///
/// [`cut`](CutProxy::cut) closes every open connection and black-holes new ones: they are
/// accepted but get no answer and reach nothing, like a network partition, so a client only
/// gives up through its own timeout. [`restore`](CutProxy::restore) closes the black-holed
/// connections and forwards again. Dropping the proxy closes everything.
#[derive(Debug)]
pub struct CutProxy {
    addr: SocketAddr,
    link: Arc<watch::Sender<Link>>,
    accept: JoinHandle<()>,
}

/// The state every connection task watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Link {
    /// New connections are black-holed.
    cut: bool,
    /// How many times the link was cut; a forwarding connection ends when this changes.
    cuts: u64,
    /// How many times it was restored; a black-holed connection ends when this changes.
    restores: u64,
    /// The proxy is gone; everything ends.
    shut: bool,
}

impl CutProxy {
    /// Starts forwarding `127.0.0.1:<free port>` to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<CutProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let link = Arc::new(watch::Sender::new(Link::default()));
        let accept = tokio::spawn(accept_loop(listener, target, Arc::clone(&link)));
        Ok(CutProxy { addr, link, accept })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection and black-holes new ones until [`CutProxy::restore`].
    pub fn cut(&self) {
        self.link.send_modify(|l| {
            l.cut = true;
            l.cuts += 1;
        });
    }

    /// Closes the black-holed connections and forwards new connections again.
    pub fn restore(&self) {
        self.link.send_modify(|l| {
            l.cut = false;
            l.restores += 1;
        });
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.link.borrow().cut
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.link.send_modify(|l| l.shut = true);
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, link: Arc<watch::Sender<Link>>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(serve(client, target, link.subscribe()));
            }
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning; the test's own
                // deadline reports the failure.
                tracing::debug!(error = %e, "CutProxy accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn serve(mut client: TcpStream, target: SocketAddr, mut link: watch::Receiver<Link>) {
    let start = *link.borrow_and_update();
    if start.shut {
        return;
    }
    if start.cut {
        black_hole(client, link, start.restores).await;
        return;
    }
    let ended = move |l: &Link| l.shut || l.cuts != start.cuts;
    let mut upstream = tokio::select! {
        connected = TcpStream::connect(target) => match connected {
            Ok(upstream) => upstream,
            Err(e) => {
                tracing::debug!(error = %e, %target, "CutProxy cannot reach its target");
                return;
            }
        },
        _ = link.wait_for(ended) => return,
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = link.wait_for(ended) => {}
    }
    // Dropping both streams closes both connections.
}

/// Holds `client` open, reading and discarding what it sends and answering nothing, until the
/// link is restored, the proxy is dropped or the client closes.
async fn black_hole(mut client: TcpStream, mut link: watch::Receiver<Link>, restores: u64) {
    let mut sink = [0u8; 4096];
    loop {
        tokio::select! {
            read = client.read(&mut sink) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = link.wait_for(|l| l.shut || l.restores != restores) => return,
        }
    }
}
