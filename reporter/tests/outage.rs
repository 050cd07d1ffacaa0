//! Database outages: with MySQL behind a proxy the test cuts (or the SQLite file write-locked by
//! another process), the reporter keeps only the latest row per key, never more keys than its
//! cap, and writes everything it kept once the database is back.

mod common;

use common::{Host, TestAgent, TestReporter, report, row, wait_for_rows};
use lars_reporter::ReporterStats;
use lars_store::testing::TestDb;
use lars_store::{CallStatusRow, StoreUrl};
use std::net::Ipv4Addr;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(30);

/// The one host of key `k` (each key is its own route host).
fn key_host(k: u32, value: u32) -> Host {
    let ip = Ipv4Addr::new(172, 20, (k / 250) as u8, (k % 250) as u8 + 1);
    (
        ip,
        8000 + k as i32,
        value,
        value / 7,
        value.is_multiple_of(3),
    )
}

/// Frame `i` of a run over `keys` keys: key `i % keys`, values growing with `i`.
fn frame(i: u32, keys: u32) -> (lars_wire::messages::ReportStatusRequest, CallStatusRow) {
    let k = i % keys;
    let (modid, cmdid, ts) = (1, (k / 10) as i32, 1_700_000_000 + i);
    let host = key_host(k, i);
    (
        report(modid, cmdid, ts, &[host]),
        row(modid, cmdid, ts, host),
    )
}

/// Sends one frame on a key of its own and waits until it is written, so the store is open and
/// its connections are in use before the outage starts.
async fn warm_up(reporter: &TestReporter, agent: &mut TestAgent) -> CallStatusRow {
    let host = key_host(0, 1);
    agent.send(&report(999, 999, 1, &[host])).await;
    reporter
        .wait_for("the warm-up row is written", WITHIN, |s| {
            ReporterStats::get(&s.rows_written) == 1
        })
        .await;
    row(999, 999, 1, host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_outage_keeps_the_latest_row_per_key_and_writes_all_of_it_when_back() {
    const FRAMES: u32 = 10_000;
    const KEYS: u32 = 200;
    let db = TestDb::mysql();
    let direct = db.open().await.unwrap();
    let (proxy, through_proxy) = db.through_proxy().await;
    let reporter = TestReporter::start(through_proxy, |_| {}).await;
    let mut agent = TestAgent::connect(reporter.addr).await;
    let warm = warm_up(&reporter, &mut agent).await;

    proxy.cut();
    let (requests, rows): (Vec<_>, Vec<_>) = (0..FRAMES).map(|i| frame(i, KEYS)).unzip();
    for batch in requests.chunks(500) {
        agent.send_all(batch).await;
    }
    reporter
        .wait_for("every frame received", WITHIN, |s| {
            ReporterStats::get(&s.frames) == u64::from(FRAMES) + 1
        })
        .await;
    // The database stays away until some store worker has failed again after its first failure
    // (more failures than workers): the reporter has retried against the outage and still holds
    // exactly one row per key, none written.
    let workers = lars_reporter::ReporterConfig::default()
        .reporter
        .db_thread_cnt as u64;
    reporter
        .wait_for("a store worker retried and failed again", WITHIN, |s| {
            ReporterStats::get(&s.db_errors) > workers
                && ReporterStats::get(&s.pending_rows) == u64::from(KEYS)
        })
        .await;
    assert_eq!(reporter.get(|s| &s.rows_written), 1, "{}", reporter.stats);

    proxy.restore();
    let mut want: Vec<CallStatusRow> = rows[(FRAMES - KEYS) as usize..].to_vec();
    want.push(warm);
    wait_for_rows(&direct, &want, WITHIN).await;
    reporter
        .wait_for("nothing pending", WITHIN, |s| {
            ReporterStats::get(&s.pending_rows) == 0
        })
        .await;

    // Memory stayed bounded by the keys: never more than one row per key was held.
    assert!(
        reporter.get(|s| &s.max_pending_rows) <= u64::from(KEYS),
        "{}",
        reporter.stats
    );
    assert!(reporter.get(|s| &s.db_errors) > 0);
    assert_eq!(
        reporter.get(|s| &s.coalesced),
        u64::from(FRAMES - KEYS),
        "{}",
        reporter.stats
    );
    assert_eq!(reporter.get(|s| &s.rows_written), u64::from(KEYS) + 1);
    assert_eq!(reporter.get(|s| &s.dropped_over_cap), 0);
    reporter.assert_rows_balance();
    reporter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_cap_the_oldest_keys_are_dropped_and_counted() {
    const KEYS: u32 = 80;
    const CAP: usize = 50;
    let db = TestDb::mysql();
    let direct = db.open().await.unwrap();
    let (proxy, through_proxy) = db.through_proxy().await;
    let reporter = TestReporter::start(through_proxy, |c| {
        c.reporter.db_thread_cnt = 1;
        c.reporter.max_pending_keys = CAP;
    })
    .await;
    let mut agent = TestAgent::connect(reporter.addr).await;
    let warm = warm_up(&reporter, &mut agent).await;

    proxy.cut();
    let (requests, rows): (Vec<_>, Vec<_>) = (0..KEYS).map(|i| frame(i, KEYS)).unzip();
    agent.send_all(&requests).await;
    let dropped = u64::from(KEYS) - CAP as u64;
    // A row evicted while a (failing) write of it is under way counts when that write ends.
    reporter
        .wait_for("the oldest keys are dropped", WITHIN, |s| {
            ReporterStats::get(&s.dropped_over_cap) == dropped
        })
        .await;
    assert_eq!(reporter.get(|s| &s.pending_rows), CAP as u64);
    assert_eq!(reporter.get(|s| &s.max_pending_rows), CAP as u64);

    proxy.restore();
    let mut want: Vec<CallStatusRow> = rows[dropped as usize..].to_vec();
    want.push(warm);
    wait_for_rows(&direct, &want, WITHIN).await;
    reporter
        .wait_for("nothing pending", WITHIN, |s| {
            ReporterStats::get(&s.pending_rows) == 0
        })
        .await;
    assert_eq!(reporter.get(|s| &s.dropped_over_cap), dropped);
    reporter.assert_rows_balance();
    reporter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_write_lock_holds_rows_back_without_losing_any() {
    const KEYS: u32 = 5;
    let db = TestDb::sqlite();
    let StoreUrl::Sqlite(path) = db.url() else {
        panic!("not an SQLite test database");
    };
    let direct = db.open().await.unwrap();
    let reporter = TestReporter::start(db.url(), |_| {}).await;
    let mut agent = TestAgent::connect(reporter.addr).await;
    let warm = warm_up(&reporter, &mut agent).await;

    // Another process holds the write lock: the workers' writes wait for it.
    let lock = rusqlite::Connection::open(&path).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let (requests, rows): (Vec<_>, Vec<_>) = (0..KEYS * 4).map(|i| frame(i, KEYS)).unzip();
    agent.send_all(&requests).await;
    reporter
        .wait_for("every frame received", WITHIN, |s| {
            ReporterStats::get(&s.frames) == u64::from(KEYS * 4) + 1
                && ReporterStats::get(&s.pending_rows) == u64::from(KEYS)
        })
        .await;
    assert_eq!(reporter.get(|s| &s.rows_written), 1);
    lock.execute_batch("ROLLBACK;").unwrap();
    drop(lock);

    let mut want: Vec<CallStatusRow> = rows[(KEYS * 3) as usize..].to_vec();
    want.push(warm);
    wait_for_rows(&direct, &want, WITHIN).await;
    reporter.stop().await;
}
