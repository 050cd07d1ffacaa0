//! `echo-server`: the "speed of light" of the agent's data plane. A UDP echo server built from
//! exactly the agent's runtime and socket setup — one worker thread per CPU of the affinity mask,
//! each pinned to its CPU (`core_affinity`) and running its own io_uring runtime
//! ([`lars_agent::io::block_on`]); `shards` sockets on consecutive ports bound with
//! [`lars_agent::agent::bind_shards`], shard `i` on worker `i % workers`; and the agent's choice of
//! runtime (`--io`, like `[agent] io`): `recv_depth` receive loops per socket
//! ([`lars_agent::io::spawn_local`] over a [`ShardSocket`]) on `tokio-uring`, or the agent's
//! [`EventLoop`] on `io-uring` — that sends every datagram back to its sender unchanged, doing no
//! work in between. `lars-perf --target echo`
//! loads it with the same `GetHostRequest` datagrams it sends the agent, so the gap between the
//! two runs is what the agent's request handling costs.
//!
//! Prints `echo-server serving base_port=N shards=S workers=W` on stderr once its sockets are
//! bound; SIGINT or SIGTERM stop it. The workers keep no state worth flushing, so stopping is
//! leaving the process.

use anyhow::Context;
use argh::FromArgs;
use lars_agent::agent::bind_shards;
use lars_agent::config::IoRuntime;
use lars_agent::io::udp::{DATAGRAM_BUFFER, ShardSocket};
use lars_agent::io::uring::{DatagramService, EventLoop, Flow};
use lars_agent::io::{block_on, spawn_local};
use lars_service::signals::StopSignals;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::rc::Rc;
use tracing::warn;

/// echo-server: an io_uring UDP echo server with the agent's runtime and socket setup.
///
/// Runs one pinned worker per CPU it may use (see `taskset`), echoes every datagram on its
/// `shards` consecutive UDP ports back unchanged. Load it with `lars-perf --target echo
/// --base-port N`. Stops on SIGINT or SIGTERM.
#[derive(FromArgs)]
struct Args {
    /// address to bind the sockets to (default 127.0.0.1)
    #[argh(option, default = "IpAddr::V4(Ipv4Addr::LOCALHOST)")]
    ip: IpAddr,
    /// UDP port of shard 0; shard i listens on base_port + i. 0 picks a free range and prints it
    /// (default 0)
    #[argh(option, default = "0")]
    base_port: u16,
    /// number of shards (consecutive UDP ports), 1..64 like the agent (default 3)
    #[argh(option, default = "3")]
    shards: u16,
    /// receives kept in flight per socket, like the agent's `recv_depth` (default 16;
    /// tokio-uring only)
    #[argh(option, default = "16")]
    recv_depth: usize,
    /// the workers' runtime, like the agent's `[agent] io`: tokio-uring or io-uring (default:
    /// the agent's default)
    #[argh(option, default = "IoRuntime::default()", from_str_fn(parse_io))]
    io: IoRuntime,
}

fn parse_io(value: &str) -> Result<IoRuntime, String> {
    match value {
        "tokio-uring" => Ok(IoRuntime::TokioUring),
        "io-uring" => Ok(IoRuntime::IoUring),
        other => Err(format!(
            "--io must be tokio-uring or io-uring, not {other:?}"
        )),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    lars_service::logging::init();
    anyhow::ensure!(
        (1..=64).contains(&args.shards),
        "--shards must be in 1..64, not {}",
        args.shards
    );
    anyhow::ensure!(args.recv_depth >= 1, "--recv-depth must be at least 1");
    anyhow::ensure!(
        args.base_port == 0 || u32::from(args.base_port) + u32::from(args.shards) <= 65536,
        "--base-port {} + --shards {} runs past port 65535",
        args.base_port,
        args.shards
    );

    // One worker per CPU of the affinity mask, as the agent does without `agent.cores`.
    let cores: Vec<Option<core_affinity::CoreId>> = match core_affinity::get_core_ids() {
        Some(ids) if !ids.is_empty() => ids.into_iter().map(Some).collect(),
        _ => vec![None],
    };
    let workers = cores.len();
    let (base_port, sockets) =
        bind_shards(args.ip, args.base_port, args.shards).context("binding the shard sockets")?;
    let mut sockets: Vec<Option<UdpSocket>> = sockets.into_iter().map(Some).collect();
    for (index, core) in cores.into_iter().enumerate() {
        let mine: Vec<UdpSocket> = (0..usize::from(args.shards))
            .filter(|shard| shard % workers == index)
            .filter_map(|shard| sockets[shard].take())
            .collect();
        let recv_depth = args.recv_depth;
        let io = args.io;
        std::thread::Builder::new()
            .name(format!("echo-worker-{index}"))
            .spawn(move || {
                if let Some(core) = core
                    && !core_affinity::set_for_current(core)
                {
                    warn!(
                        worker = index,
                        core = core.id,
                        "could not pin worker to its CPU"
                    );
                }
                match io {
                    IoRuntime::TokioUring => block_on(serve(mine, recv_depth)),
                    IoRuntime::IoUring => serve_io_uring(mine),
                }
            })
            .context("starting a worker thread")?;
    }
    // Handlers first, so a signal sent as soon as the line below is read stops it cleanly.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    let signals = {
        let _context = runtime.enter();
        StopSignals::install()
    };
    eprintln!(
        "echo-server serving base_port={base_port} shards={} workers={workers} io={:?}",
        args.shards, args.io
    );
    runtime.block_on(StopSignals::wait_or_forever(signals));
    Ok(())
}

/// A worker's life: `recv_depth` echo loops on each of its sockets, forever.
async fn serve(sockets: Vec<UdpSocket>, recv_depth: usize) {
    for socket in sockets {
        let socket = Rc::new(ShardSocket::from_std(socket));
        for _ in 0..recv_depth {
            spawn_local(echo(socket.clone()));
        }
    }
    std::future::pending::<()>().await;
}

/// One receive loop: receive a datagram, send the same bytes back to its sender, reuse the
/// buffer.
async fn echo(socket: Rc<ShardSocket>) {
    let mut buf = Vec::with_capacity(DATAGRAM_BUFFER);
    loop {
        let (received, back) = socket.recv_from(buf).await;
        buf = back;
        if let Ok((len, peer)) = received {
            let (_, back) = socket.send_to(buf, len, peer).await;
            buf = back;
        }
    }
}

/// A worker's life on the `io-uring` runtime: the agent's event loop over its sockets, echoing,
/// forever (no wake-up: nothing ever asks it to stop).
fn serve_io_uring(sockets: Vec<UdpSocket>) {
    let mut echo = Echo;
    // The tick is the agent's default report interval, so the loop wakes as often as the agent's.
    let result = EventLoop::new(sockets, None, std::time::Duration::from_secs(1))
        .and_then(|mut event_loop| event_loop.run(&mut echo));
    if let Err(e) = result {
        tracing::error!(error = %e, "io_uring event loop failed");
    }
}

/// Sends every datagram back unchanged.
struct Echo;

impl DatagramService for Echo {
    fn datagram(&mut self, _socket: usize, datagram: &[u8], reply: &mut [u8]) -> Option<usize> {
        let reply = reply.get_mut(..datagram.len())?;
        reply.copy_from_slice(datagram);
        Some(datagram.len())
    }
    fn oversized(&mut self, _socket: usize, _len: usize) {}
    fn recv_failed(&mut self, _socket: usize, _error: std::io::Error) {}
    fn send_failed(&mut self, _error: std::io::Error) {}
    fn woken(&mut self) -> Flow {
        Flow::Continue
    }
    fn tick(&mut self) {}
}
