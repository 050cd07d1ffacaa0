//! `reporter-bench`: how fast call statistics get into the database, and whether the reporter
//! keeps up with the load the C++ Lars agent produced.
//!
//! 1. **store**: the same generated rows written to `ServerCallStatus` three times, by
//!    `--writers` concurrent writers: in multi-row upserts of `--batch` rows (what lars-reporter
//!    does), one statement per row, and one ping plus one statement per row (what the C++ Lars
//!    reporter did). Every key exists before the first pass, so all passes are updates of the
//!    same rows; consecutive rows have distinct keys, so no batch is shrunk by coalescing.
//!    `--repeat` rounds of the three passes, interleaved (the database is shared, so one round
//!    can be unlucky); rows per second of each, the ratios per round and the medians.
//! 2. **e2e**: lars-reporter running in this process on the same store, fed
//!    `ReportStatusRequest` frames over `--connections` TCP connections at `--rate` rows/s for
//!    `--seconds`. Every second: rows received and written, rows pending, how long the oldest
//!    pending row has waited, how old the stored statistics are (each row's `succ_cnt` carries
//!    the millisecond it was sent, read back from the database), and the process's resident
//!    memory. Then how long it takes to write the rest once the load stops, and a check that
//!    every key holds the last value sent.
//!
//! Run it in release mode against the local MariaDB:
//!
//! ```sh
//! cargo run --release -p lars-bench --bin reporter-bench -- --store mysql://root@127.0.0.1:3306/lars_bench
//! ```

use anyhow::{Context, bail};
use argh::FromArgs;
use bytes::BytesMut;
use lars_reporter::{ReporterConfig, ReporterServer, ReporterStats};
use lars_store::{CallStatusKey, CallStatusRow, Store, StoreOptions, StoreUrl};
use lars_wire::MsgId;
use lars_wire::messages::{HostCallResult, ReportStatusRequest};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// reporter-bench: batched vs per-row statistics writes, and lars-reporter under agent load.
#[derive(FromArgs)]
struct Args {
    /// store URL (default mysql://root@127.0.0.1:3306/lars_bench)
    #[argh(
        option,
        default = "String::from(\"mysql://root@127.0.0.1:3306/lars_bench\")"
    )]
    store: String,
    /// rows each pass of the store benchmark writes (default 100000)
    #[argh(option, default = "100_000")]
    rows: usize,
    /// distinct keys (modid, cmdid, ip, port, caller) in both benchmarks (default 10000)
    #[argh(option, default = "10_000")]
    keys: usize,
    /// rows per multi-row upsert, also the reporter's batch_rows (default 500)
    #[argh(option, default = "500")]
    batch: usize,
    /// concurrent writers in the store benchmark, like db_thread_cnt (default 3)
    #[argh(option, default = "3")]
    writers: usize,
    /// e2e offered load in rows per second (default 150000, the C++ agent's)
    #[argh(option, default = "150_000")]
    rate: u64,
    /// e2e load duration in seconds (default 20)
    #[argh(option, default = "20")]
    seconds: u64,
    /// e2e agent connections (default 4)
    #[argh(option, default = "4")]
    connections: usize,
    /// e2e hosts per route, i.e. rows per frame (default 10)
    #[argh(option, default = "10")]
    hosts: usize,
    /// rounds of the store benchmark, each a batched and a per-row pass; the median is
    /// reported (default 3)
    #[argh(option, default = "3")]
    repeat: usize,
    /// which part to run: store, e2e or both (default both)
    #[argh(option, default = "String::from(\"both\")")]
    mode: String,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    if args.keys == 0 || args.hosts == 0 || args.batch == 0 || args.writers == 0 || args.repeat == 0
    {
        bail!("--keys, --hosts, --batch, --writers and --repeat must be at least 1");
    }
    let url: StoreUrl = args.store.parse().context("bad --store")?;
    // One per-row pass of a writer is one store call: give it room.
    let options = StoreOptions {
        op_timeout: Duration::from_secs(600),
        ..StoreOptions::default()
    };
    // The benchmark's own store: set up as `lars init` does.
    Store::init_with(&url, options)
        .await
        .with_context(|| format!("cannot set up {url}"))?;
    let store = Store::open_with(&url, options)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    println!("machine: {}", lars_bench::machine());
    println!("store: {url}\n");
    if matches!(args.mode.as_str(), "store" | "both") {
        store_bench(&store, &args).await?;
    }
    if matches!(args.mode.as_str(), "e2e" | "both") {
        e2e_bench(&store, url, &args).await?;
    }
    store.close().await;
    Ok(())
}

/// First modid of the store benchmark's keys.
const STORE_MODIDS: i32 = 1000;
/// First modid of the e2e benchmark's keys (other keys than the store benchmark's, so the
/// stored age can tell them apart).
const E2E_MODIDS: i32 = 2000;

/// The key with index `k`: route `k / hosts` (modid from `modids` on, cmdid, one of 8
/// callers), host `k % hosts`.
fn key_row(modids: i32, k: usize, hosts: usize) -> CallStatusRow {
    let (route, host) = (k / hosts, k % hosts);
    CallStatusRow {
        modid: modids + (route / 100) as i32,
        cmdid: (route % 100) as i32,
        ip: 0x0A14_0000 + host as u32,
        port: 9000 + (host % 50_000) as u16,
        caller: 0x0A00_0001 + (route % 8) as u32,
        succ_cnt: 0,
        err_cnt: 0,
        ts: 0,
        overload: false,
    }
}

/// Which of `writers` writes `key`, as the reporter routes it.
fn writer_of(key: &CallStatusKey, writers: usize) -> usize {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % writers as u64) as usize
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn store_bench(store: &Store, args: &Args) -> anyhow::Result<()> {
    let now = unix_now();
    let rows: Vec<CallStatusRow> = (0..args.rows)
        .map(|i| CallStatusRow {
            succ_cnt: i as u32,
            err_cnt: (i / 10) as u32,
            ts: now + (i / args.keys) as i64,
            overload: i.is_multiple_of(7),
            ..key_row(STORE_MODIDS, i % args.keys, args.hosts)
        })
        .collect();
    // Every key exists before either pass.
    let all_keys: Vec<CallStatusRow> = (0..args.keys)
        .map(|k| key_row(STORE_MODIDS, k, args.hosts))
        .collect();
    for chunk in all_keys.chunks(1000) {
        store.upsert_call_status(chunk).await?;
    }
    let mut parts: Vec<Vec<CallStatusRow>> = vec![Vec::new(); args.writers];
    for row in &rows {
        parts[writer_of(&row.key(), args.writers)].push(*row);
    }

    println!(
        "## store: {} rows over {} keys, {} writers, {} rounds\n",
        args.rows, args.keys, args.writers, args.repeat
    );
    println!("| round | mode | statements | seconds | rows/s | batched is |");
    println!("|---:|---|---:|---:|---:|---:|");
    let rate = |secs: f64| args.rows as f64 / secs;
    let mut batched_rates = Vec::new();
    let mut per_row_rates = Vec::new();
    let mut lars_rates = Vec::new();
    let mut per_row_ratios = Vec::new();
    let mut lars_ratios = Vec::new();
    for round in 1..=args.repeat {
        let (batched_secs, statements) = timed(parts.clone(), store, {
            let batch = args.batch;
            move |store, part| async move {
                let mut statements = 0u64;
                for chunk in part.chunks(batch) {
                    store.upsert_call_status(chunk).await?;
                    statements += 1;
                }
                Ok(statements)
            }
        })
        .await?;
        check_last_values(store, &rows).await?;
        let (per_row_secs, _) = timed(parts.clone(), store, |store, part| async move {
            store.upsert_call_status_per_row(&part).await
        })
        .await?;
        check_last_values(store, &rows).await?;
        // What the C++ reporter did for every row: ping the server, then one statement.
        let (lars_secs, _) = timed(parts.clone(), store, |store, part| async move {
            for row in &part {
                store.ping().await?;
                store
                    .upsert_call_status_per_row(std::slice::from_ref(row))
                    .await?;
            }
            Ok(part.len() as u64)
        })
        .await?;
        check_last_values(store, &rows).await?;

        let (batched, per_row, lars) = (rate(batched_secs), rate(per_row_secs), rate(lars_secs));
        println!(
            "| {round} | multi-row upserts of {} rows (lars-reporter) | {statements} | \
             {batched_secs:.2} | {batched:.0} | |",
            args.batch
        );
        println!(
            "| {round} | one statement per row | {} | {per_row_secs:.2} | {per_row:.0} | \
             {:.1}x |",
            args.rows,
            batched / per_row
        );
        println!(
            "| {round} | one ping + one statement per row (C++ Lars) | {} | {lars_secs:.2} | \
             {lars:.0} | {:.1}x |",
            args.rows,
            batched / lars
        );
        batched_rates.push(batched);
        per_row_rates.push(per_row);
        lars_rates.push(lars);
        per_row_ratios.push(batched / per_row);
        lars_ratios.push(batched / lars);
    }
    let rounds = |ratios: &[f64]| {
        ratios
            .iter()
            .map(|r| format!("{r:.1}x"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "\n- medians: batched {:.0} rows/s; one statement per row {:.0} rows/s, batched is \
         {:.1}x (rounds {}); ping + statement per row {:.0} rows/s, batched is {:.1}x (rounds {})\n",
        median(&mut batched_rates),
        median(&mut per_row_rates),
        median(&mut per_row_ratios.clone()),
        rounds(&per_row_ratios),
        median(&mut lars_rates),
        median(&mut lars_ratios.clone()),
        rounds(&lars_ratios),
    );
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Runs `write` for every part concurrently; returns the seconds taken and the statements.
async fn timed<F, Fut>(
    parts: Vec<Vec<CallStatusRow>>,
    store: &Store,
    write: F,
) -> anyhow::Result<(f64, u64)>
where
    F: Fn(Store, Vec<CallStatusRow>) -> Fut,
    Fut: std::future::Future<Output = Result<u64, lars_store::StoreError>> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = parts
        .into_iter()
        .map(|part| tokio::spawn(write(store.clone(), part)))
        .collect();
    let mut statements = 0;
    for task in tasks {
        statements += task.await??;
    }
    Ok((start.elapsed().as_secs_f64(), statements))
}

/// Checks that every key of `rows` is stored with its last value.
async fn check_last_values(store: &Store, rows: &[CallStatusRow]) -> anyhow::Result<()> {
    let mut last: HashMap<CallStatusKey, CallStatusRow> = HashMap::new();
    for row in rows {
        last.insert(row.key(), *row);
    }
    let stored: HashMap<CallStatusKey, CallStatusRow> = store
        .load_call_status(None, None)
        .await?
        .into_iter()
        .map(|r| (r.key(), r))
        .collect();
    let wrong = last
        .iter()
        .filter(|(key, row)| stored.get(*key) != Some(*row))
        .count();
    if wrong > 0 {
        bail!(
            "{wrong} of {} keys do not hold their last value",
            last.len()
        );
    }
    Ok(())
}

/// One second of the e2e run.
struct Sample {
    at: f64,
    received: u64,
    written: u64,
    pending: u64,
    oldest_pending_ms: u128,
    stored_age_max_ms: u64,
    stored_age_mean_ms: u64,
    rss_mib: f64,
}

async fn e2e_bench(store: &Store, url: StoreUrl, args: &Args) -> anyhow::Result<()> {
    let routes = args.keys.div_ceil(args.hosts);
    let mut config = ReporterConfig::default();
    config.reactor.port = 0;
    config.reporter.batch_rows = args.batch;
    // The generated load names eight callers from its few loopback connections.
    config.reporter.trust_caller_field = true;
    config.validate("reporter-bench")?;
    let server = ReporterServer::bind(&config, url).await?;
    let addr = server.local_addr();
    let stats = server.stats();
    let inboxes = server.inboxes();
    let (stop, shutdown) = watch::channel(false);
    let reporter = tokio::spawn(server.run(shutdown));

    let start = Instant::now();
    let start_unix = unix_now();
    let load = Duration::from_secs(args.seconds);
    let frames_per_sec = args.rate as f64 / args.hosts as f64 / args.connections as f64;
    let mut senders = Vec::new();
    for c in 0..args.connections {
        let my_routes: Vec<usize> = (c..routes).step_by(args.connections).collect();
        let hosts = args.hosts;
        senders.push(tokio::spawn(async move {
            send_load(addr, my_routes, hosts, frames_per_sec, start, load).await
        }));
    }

    let rss_start = rss_mib();
    let cpu_start = cpu_secs();
    let mut samples = Vec::new();
    let mut last = (0u64, 0u64);
    let mut next = start + Duration::from_secs(1);
    while next <= start + load {
        tokio::time::sleep_until(next.into()).await;
        let (received, written) = (
            ReporterStats::get(&stats.rows_received),
            ReporterStats::get(&stats.rows_written),
        );
        let backlog = inboxes.backlog(Instant::now());
        let (age_max, age_mean) = stored_age(store, start, start_unix).await?;
        samples.push(Sample {
            at: start.elapsed().as_secs_f64(),
            received: received - last.0,
            written: written - last.1,
            pending: ReporterStats::get(&stats.pending_rows),
            oldest_pending_ms: backlog.oldest.as_millis(),
            stored_age_max_ms: age_max,
            stored_age_mean_ms: age_mean,
            rss_mib: rss_mib(),
        });
        last = (received, written);
        next += Duration::from_secs(1);
    }
    let mut last_sent: HashMap<CallStatusKey, CallStatusRow> = HashMap::new();
    for sender in senders {
        for row in sender.await?? {
            last_sent.insert(row.key(), row);
        }
    }
    let load_end = Instant::now();
    let cpu = cpu_secs() - cpu_start;
    while ReporterStats::get(&stats.pending_rows) > 0 {
        if load_end.elapsed() > Duration::from_secs(60) {
            bail!("the reporter did not catch up within 60 s: {stats}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain = load_end.elapsed();
    let _ = stop.send(true);
    reporter.await?;
    let stored: HashMap<CallStatusKey, CallStatusRow> = store
        .load_call_status(None, None)
        .await?
        .into_iter()
        .map(|r| (r.key(), r))
        .collect();
    let wrong = last_sent
        .iter()
        .filter(|(key, row)| stored.get(*key) != Some(*row))
        .count();

    println!(
        "## e2e: lars-reporter (db_thread_cnt {}, batch_rows {}, flush_ms {}), {} rows/s offered \
         as {} frames of {} rows over {} connections, {} keys, {} s\n",
        config.reporter.db_thread_cnt,
        config.reporter.batch_rows,
        config.reporter.flush_ms,
        args.rate,
        (args.rate as f64 / args.hosts as f64).round(),
        args.hosts,
        args.connections,
        args.keys,
        args.seconds
    );
    println!(
        "| t (s) | rows received/s | rows written/s | pending rows | oldest pending (ms) | stored age max / mean (ms) | RSS (MiB) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for s in &samples {
        println!(
            "| {:.0} | {} | {} | {} | {} | {} / {} | {:.1} |",
            s.at,
            s.received,
            s.written,
            s.pending,
            s.oldest_pending_ms,
            s.stored_age_max_ms,
            s.stored_age_mean_ms,
            s.rss_mib
        );
    }
    let g = ReporterStats::get;
    let received = g(&stats.rows_received);
    let secs = args.seconds as f64;
    println!();
    println!(
        "- received {received} rows ({:.0}/s), wrote {} rows in {} batches, coalesced {} ({:.1}%), \
         dropped {} over the cap, {} bad, {} db errors, max pending {}",
        received as f64 / secs,
        g(&stats.rows_written),
        g(&stats.batches),
        g(&stats.coalesced),
        100.0 * g(&stats.coalesced) as f64 / received.max(1) as f64,
        g(&stats.dropped_over_cap),
        g(&stats.dropped_bad_row),
        g(&stats.db_errors),
        g(&stats.max_pending_rows),
    );
    println!(
        "- RSS {rss_start:.1} MiB before the load, max {:.1} MiB during it",
        samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max)
    );
    println!(
        "- CPU of this process (the agents' senders and lars-reporter) during the load: {cpu:.1} s \
         in {secs:.0} s, {:.0}% of one core",
        100.0 * cpu / secs
    );
    println!(
        "- after the load stopped, the last rows were written within {} ms",
        drain.as_millis()
    );
    println!(
        "- final check: {} of {} keys hold the last value sent",
        last_sent.len() - wrong,
        last_sent.len()
    );
    if wrong > 0 {
        bail!("{wrong} keys do not hold the last value sent");
    }
    Ok(())
}

/// One agent connection sending its routes round robin at `frames_per_sec` until `load` has
/// passed since `start`. Each row's `succ_cnt` is the millisecond (since `start`) it was sent.
/// Returns the last row sent for each of its keys.
async fn send_load(
    addr: std::net::SocketAddr,
    routes: Vec<usize>,
    hosts: usize,
    frames_per_sec: f64,
    start: Instant,
    load: Duration,
) -> anyhow::Result<Vec<CallStatusRow>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut buf = BytesMut::new();
    let mut sent = 0u64;
    let mut last: HashMap<CallStatusKey, CallStatusRow> = HashMap::new();
    if routes.is_empty() {
        return Ok(Vec::new());
    }
    loop {
        ticks.tick().await;
        let elapsed = start.elapsed();
        if elapsed >= load {
            break;
        }
        let due = (elapsed.as_secs_f64() * frames_per_sec) as u64;
        buf.clear();
        let ms = elapsed.as_millis() as u32;
        let ts = unix_now() as u32;
        while sent < due {
            let route = routes[(sent % routes.len() as u64) as usize];
            let first = key_row(E2E_MODIDS, route * hosts, hosts);
            let results: Vec<HostCallResult> = (0..hosts)
                .map(|h| {
                    let row = CallStatusRow {
                        succ_cnt: ms,
                        err_cnt: (sent % 1000) as u32,
                        ts: i64::from(ts),
                        overload: h == 0 && sent.is_multiple_of(2),
                        ..key_row(E2E_MODIDS, route * hosts + h, hosts)
                    };
                    last.insert(row.key(), row);
                    HostCallResult {
                        ip: row.ip as i32,
                        port: i32::from(row.port),
                        succ: row.succ_cnt,
                        err: row.err_cnt,
                        overload: row.overload,
                    }
                })
                .collect();
            let request = ReportStatusRequest {
                modid: first.modid,
                cmdid: first.cmdid,
                caller: first.caller as i32,
                results,
                ts,
            };
            lars_wire::frame::encode_frame(MsgId::ReportStatusRequest, &request, &mut buf)?;
            sent += 1;
        }
        if !buf.is_empty() {
            stream.write_all(&buf).await?;
        }
    }
    Ok(last.into_values().collect())
}

/// How old the statistics stored during this run are: the max and mean, over the e2e keys
/// written since `start_unix`, of now minus the send time carried in `succ_cnt`.
async fn stored_age(store: &Store, start: Instant, start_unix: i64) -> anyhow::Result<(u64, u64)> {
    // InnoDB answers from a snapshot taken when the query starts: measure ages from then.
    let now_ms = start.elapsed().as_millis() as u64;
    let rows = store.load_call_status(None, None).await?;
    let ages: Vec<u64> = rows
        .iter()
        .filter(|r| r.modid >= E2E_MODIDS && r.ts >= start_unix)
        .map(|r| now_ms.saturating_sub(u64::from(r.succ_cnt)))
        .collect();
    if ages.is_empty() {
        return Ok((0, 0));
    }
    let max = ages.iter().copied().max().unwrap_or(0);
    Ok((max, ages.iter().sum::<u64>() / ages.len() as u64))
}

/// The process's resident memory in MiB (`VmRSS` of /proc/self/status).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time (user + system) this process has used, in seconds (`/proc/self/stat`, clock ticks
/// of 1/100 s as on every Linux this runs on).
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the parenthesised command name; utime and stime are the 14th and
            // 15th fields of the line, the 12th and 13th after the name.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}
