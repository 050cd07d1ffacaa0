//! `dns-bench`: how fast lars-dns answers `GetRouteRequest`s from its snapshot (one connection
//! and many, pipelined), and how long a route change takes to reach 1,000 subscribed agents.
//!
//! The service runs in this process on its own runtime (`--server-threads`), the load on
//! another, over real loopback TCP. Results print as markdown for perf/RESULTS.md.

use anyhow::Context;
use argh::FromArgs;
use bytes::BytesMut;
use lars_bench::{latency_histogram, machine, percentiles, record};
use lars_dns::{DnsConfig, DnsServer};
use lars_store::{Store, StoreUrl};
use lars_wire::{FrameDecoder, MsgId};
use lars_wire::{HostAddr, RouteKey};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// dns-bench: GetRoute throughput from the snapshot and change-to-push latency of lars-dns.
#[derive(FromArgs)]
struct Args {
    /// routes to seed (default 1000)
    #[argh(option, default = "1000")]
    routes: i32,
    /// hosts per route (default 10)
    #[argh(option, default = "10")]
    hosts: u8,
    /// seconds per throughput run (default 5)
    #[argh(option, default = "5")]
    duration: u64,
    /// requests in flight per connection (default 32)
    #[argh(option, default = "32")]
    pipeline: usize,
    /// connection counts to measure, comma-separated (default 1,16,128)
    #[argh(option, default = "String::from(\"1,16,128\")")]
    connections: String,
    /// subscriber connections for the push measurement (default 1000)
    #[argh(option, default = "1000")]
    subscribers: usize,
    /// route changes to time (default 20)
    #[argh(option, default = "20")]
    changes: usize,
    /// version poll period of the service in ms (default 1000, the production default)
    #[argh(option, default = "1000")]
    poll_ms: u64,
    /// runtime threads of the service (default 1)
    #[argh(option, default = "1")]
    server_threads: usize,
    /// store URL (default: a temporary SQLite file)
    #[argh(option)]
    store: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    let dir = tempfile::tempdir()?;
    let url: StoreUrl = match &args.store {
        Some(url) => url.parse()?,
        None => StoreUrl::Sqlite(dir.path().join("bench.db")),
    };
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads)
        .enable_all()
        .build()?;

    let store = client.block_on(seed(&url, args.routes, args.hosts))?;
    let mut config = DnsConfig::default();
    config.reactor.port = 0;
    config.dns.version_poll_ms = args.poll_ms;
    let server = server_rt.block_on(DnsServer::bind(&config, url.clone()))?;
    let addr = server.local_addr();
    let (stop, shutdown) = watch::channel(false);
    let serving = server_rt.spawn(server.run(shutdown));

    println!("dns-bench on {}", machine());
    println!(
        "store {url}, {} routes x {} hosts, service runtime threads {}, load runtime threads 1\n",
        args.routes, args.hosts, args.server_threads
    );
    println!(
        "| connections | in flight each | requests/s | batch round trip p50 / p90 / p99 / p99.9 / max |"
    );
    println!("|---|---|---|---|");
    for conns in args.connections.split(',') {
        let conns: usize = conns.trim().parse().context("--connections")?;
        let (rate, hist) = client.block_on(throughput(
            addr,
            conns,
            args.pipeline,
            args.routes,
            Duration::from_secs(args.duration),
        ))?;
        println!(
            "| {conns} | {} | {rate:.0} | {} |",
            args.pipeline,
            percentiles(&hist)
        );
    }

    let (push, spread) = client.block_on(push_latency(
        addr,
        &store,
        args.subscribers,
        args.changes,
        Duration::from_millis(args.poll_ms),
    ))?;
    println!(
        "\n| subscribers | changes | change committed → push received, p50 / p90 / p99 / p99.9 / max | first → last subscriber of one change, p50 / max |"
    );
    println!("|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} / {} µs |",
        args.subscribers,
        args.changes,
        percentiles(&push),
        spread.value_at_quantile(0.5),
        spread.max()
    );
    println!("(version poll period {} ms)", args.poll_ms);
    let _ = stop.send(true);
    let _ = server_rt.block_on(serving);
    Ok(())
}

async fn seed(url: &StoreUrl, routes: i32, hosts: u8) -> anyhow::Result<Store> {
    // The benchmark's own store: set up as `lars init` does.
    Store::init(url).await?;
    let store = Store::open(url).await?;
    if store.load_routes().await?.routes.len() < routes as usize {
        for modid in 0..routes {
            for h in 0..hosts {
                let host =
                    HostAddr::new(Ipv4Addr::new(10, (modid >> 8) as u8, modid as u8, h), 9000);
                store.add_host(RouteKey::new(modid, 1), host).await?;
            }
        }
    }
    Ok(store)
}

fn request_frames(keys: impl Iterator<Item = (i32, i32)>) -> BytesMut {
    let mut out = BytesMut::new();
    for (modid, cmdid) in keys {
        lars_wire::frame::encode_get_route_request(modid, cmdid, &mut out);
    }
    out
}

/// Reads frames until `count` GetRouteResponses arrived.
async fn read_responses(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    decoder: &mut FrameDecoder,
    count: usize,
) -> anyhow::Result<()> {
    let mut seen = 0;
    while seen < count {
        while let Some(frame) = decoder.decode(buf)? {
            anyhow::ensure!(
                frame.msgid == MsgId::GetRouteResponse.as_i32(),
                "unexpected msgid"
            );
            seen += 1;
        }
        if seen < count {
            anyhow::ensure!(stream.read_buf(buf).await? > 0, "dns closed the connection");
        }
    }
    Ok(())
}

async fn throughput(
    addr: SocketAddr,
    conns: usize,
    pipeline: usize,
    routes: i32,
    duration: Duration,
) -> anyhow::Result<(f64, hdrhistogram::Histogram<u64>)> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let keys = (0..pipeline).map(|i| (((c * pipeline + i) as i32) % routes, 1));
            let batch = request_frames(keys);
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut decoder = FrameDecoder::new();
            let mut hist = latency_histogram();
            let mut answered = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                stream.write_all(&batch).await?;
                read_responses(&mut stream, &mut buf, &mut decoder, pipeline).await?;
                record(&mut hist, sent.elapsed());
                answered += pipeline as u64;
            }
            anyhow::Ok((answered, hist))
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    let mut hist = latency_histogram();
    for task in tasks {
        let (answered, h) = task.await??;
        total += answered;
        hist.add(h)?;
    }
    Ok((total as f64 / started.elapsed().as_secs_f64(), hist))
}

async fn push_latency(
    addr: SocketAddr,
    store: &Store,
    subscribers: usize,
    changes: usize,
    poll: Duration,
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, hdrhistogram::Histogram<u64>)> {
    const KEY: (i32, i32) = (-1, 1);
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut ready = Vec::new();
    for _ in 0..subscribers {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(&request_frames(std::iter::once(KEY)))
            .await?;
        let arrived_tx = arrived_tx.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        ready.push(ready_rx);
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let mut decoder = FrameDecoder::new();
            if read_responses(&mut stream, &mut buf, &mut decoder, 1)
                .await
                .is_err()
            {
                return;
            }
            let _ = ready_tx.send(());
            for change in 0..changes {
                if read_responses(&mut stream, &mut buf, &mut decoder, 1)
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = arrived_tx.send((change, Instant::now()));
            }
        });
    }
    for r in ready {
        r.await.context("a subscriber failed to subscribe")?;
    }
    let mut latency = latency_histogram();
    let mut spread = latency_histogram();
    let host = HostAddr::new(Ipv4Addr::new(10, 255, 0, 1), 1);
    for change in 0..changes {
        // Edits land at a random point of the poll period, as an operator's would.
        let jitter = Duration::from_micros(rand::random_range(0..poll.as_micros() as u64));
        tokio::time::sleep(jitter).await;
        let committed = if change % 2 == 0 {
            store.add_host(RouteKey::new(KEY.0, KEY.1), host).await?;
            Instant::now()
        } else {
            store.remove_host(RouteKey::new(KEY.0, KEY.1), host).await?;
            Instant::now()
        };
        let (mut first, mut last) = (None::<Instant>, committed);
        for _ in 0..subscribers {
            let (seen_change, at) = tokio::time::timeout(Duration::from_secs(30), arrived.recv())
                .await
                .context("push did not arrive within 30 s")?
                .context("subscribers gone")?;
            anyhow::ensure!(
                seen_change == change,
                "push for an older change arrived late"
            );
            record(&mut latency, at.saturating_duration_since(committed));
            first = Some(first.map_or(at, |f| f.min(at)));
            last = last.max(at);
        }
        if let Some(first) = first {
            record(&mut spread, last - first);
        }
    }
    Ok((latency, spread))
}
