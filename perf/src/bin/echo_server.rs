//! `echo-server`: the "speed of light" of the agent's data plane. A UDP echo server built from
//! exactly the agent's I/O setup — one worker thread per CPU of the affinity mask, each pinned
//! to its CPU (`core_affinity`) and running its own loop of the agent's driver
//! ([`DatagramLoop`], chosen with `--io` like `[agent] io` and resolved the same way); `shards`
//! sockets on consecutive ports bound with [`lars_agent::bind_shards`], shard `i` on
//! worker `i % workers` — that sends every datagram back to its sender unchanged, doing no work
//! in between. `lars-perf --target echo` loads it with the same `GetHostRequest` datagrams it
//! sends the agent, so the gap between the two runs is what the agent's request handling costs.
//!
//! Prints `echo-server serving base_port=N shards=S workers=W io=D` on stderr once every
//! worker's loop runs (and exits non-zero naming the cause when one cannot start); SIGINT or
//! SIGTERM stop it. The workers keep no state worth flushing, so stopping is leaving the
//! process.

use anyhow::Context;
use argh::FromArgs;
use lars_agent::{
    DatagramLoop, DatagramService, Driver, DriverChoice, DriverError, LoopControl, bind_shards,
};
use lars_service::signals::BlockingStopSignals;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;
use tracing::warn;

/// The loops' tick: the agent's default report interval, so a loop wakes as often as the
/// agent's.
const TICK: Duration = Duration::from_secs(1);

/// echo-server: a UDP echo server with the agent's I/O driver and socket setup.
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
    /// the workers' I/O driver, like the agent's `[agent] io`: auto, io-uring or portable
    /// (default auto)
    #[argh(option, default = "DriverChoice::default()")]
    io: DriverChoice,
}

fn main() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    lars_service::logging::init();
    anyhow::ensure!(
        (1..=64).contains(&args.shards),
        "--shards must be in 1..64, not {}",
        args.shards
    );
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
    let driver = lars_agent::resolve_driver(args.io);
    let (base_port, sockets) =
        bind_shards(args.ip, args.base_port, args.shards).context("binding the shard sockets")?;
    let mut sockets: Vec<Option<UdpSocket>> = sockets.into_iter().map(Some).collect();
    let (started_tx, started) = mpsc::channel();
    for (index, core) in cores.into_iter().enumerate() {
        let mine: Vec<UdpSocket> = (0..usize::from(args.shards))
            .filter(|shard| shard % workers == index)
            .filter_map(|shard| sockets[shard].take())
            .collect();
        let started_tx = started_tx.clone();
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
                serve(index, driver, mine, &started_tx);
            })
            .context("starting a worker thread")?;
    }
    drop(started_tx);
    for _ in 0..workers {
        let (worker, result): (usize, Result<(), DriverError>) = started
            .recv()
            .context("a worker thread ended while starting")?;
        result.with_context(|| format!("worker {worker} cannot start its {driver} driver"))?;
    }
    // Handlers first, so a signal sent as soon as the line below is read stops it cleanly.
    let signals = BlockingStopSignals::install().context("starting the signal runtime")?;
    eprintln!(
        "echo-server serving base_port={base_port} shards={} workers={workers} io={driver}",
        args.shards
    );
    signals.wait();
    Ok(())
}

/// A worker's life: sets up its loop, says whether that worked on `started`, then echoes
/// forever (no wake-up: nothing ever asks it to stop).
fn serve(
    worker: usize,
    driver: Driver,
    sockets: Vec<UdpSocket>,
    started: &mpsc::Sender<(usize, Result<(), DriverError>)>,
) {
    let mut event_loop = match DatagramLoop::new(driver, sockets, None, TICK) {
        Ok(event_loop) => event_loop,
        Err(e) => {
            let _ = started.send((worker, Err(e)));
            return;
        }
    };
    let _ = started.send((worker, Ok(())));
    if let Err(e) = event_loop.run(&mut Echo) {
        tracing::error!(worker, %driver, error = %e, "the echo loop failed");
    }
}

/// Sends every datagram back unchanged.
struct Echo;

impl DatagramService for Echo {
    fn datagram(&mut self, _local: usize, datagram: &[u8], reply: &mut [u8]) -> Option<usize> {
        let reply = reply.get_mut(..datagram.len())?;
        reply.copy_from_slice(datagram);
        Some(datagram.len())
    }
    fn oversized(&mut self, _local: usize, _len: usize) {}
    fn recv_failed(&mut self, _local: usize, _error: std::io::Error) {}
    fn send_failed(&mut self, _error: std::io::Error) {}
    fn woken(&mut self) -> LoopControl {
        LoopControl::Continue
    }
    fn tick(&mut self) {}
}
