//! The reporter service over real TCP connections, on both store backends (MySQL on the real
//! MariaDB, and the embedded SQLite file): frames become rows, newer frames update them, frames
//! for the same keys coalesce, bad rows and extra connections are refused and counted.

mod common;

use common::{TestAgent, TestReporter, report, row, wait_for_rows};
use lars_reporter::ReporterStats;
use lars_service::both_backends;
use lars_store::testing::TestDb;
use std::net::Ipv4Addr;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(20);

fn host(last: u8, port: i32, succ: u32, err: u32, overload: bool) -> common::Host {
    // 192.168.0.0/16 is negative on the wire: the stored `ip` must still be the unsigned one.
    (Ipv4Addr::new(192, 168, 5, last), port, succ, err, overload)
}

async fn frames_from_an_agent_become_rows(db: TestDb) {
    let store = db.open().await.unwrap();
    let reporter = TestReporter::start(db.url(), |_| {}).await;
    let mut agent = TestAgent::connect(reporter.addr).await;
    let hosts = [
        host(1, 8080, 120, 3, false),
        host(2, 65535, 0, 17, true),
        (Ipv4Addr::new(10, 0, 0, 1), 1, u32::MAX, 0, false),
    ];
    agent.send(&report(1001, 7, 1_700_000_000, &hosts)).await;
    agent.send(&report(0, 8, 42, &hosts[..1])).await;

    let mut want: Vec<_> = hosts
        .iter()
        .map(|&h| row(1001, 7, 1_700_000_000, h))
        .collect();
    want.push(row(0, 8, 42, hosts[0]));
    wait_for_rows(&store, &want, WITHIN).await;
    // The overload column holds Lars' '1'/'0'.
    let overloaded = store
        .query_i64("SELECT COUNT(*) FROM ServerCallStatus WHERE overload = '1'")
        .await
        .unwrap();
    assert_eq!(overloaded, Some(1));

    reporter
        .wait_for("rows counted as written", WITHIN, |s| {
            ReporterStats::get(&s.rows_written) == 4
        })
        .await;
    assert_eq!(reporter.get(|s| &s.frames), 2);
    assert_eq!(reporter.get(|s| &s.rows_received), 4);
    assert_eq!(reporter.get(|s| &s.db_errors), 0);
    reporter.assert_rows_balance();
    reporter.stop().await;
}
both_backends!(frames_from_an_agent_become_rows);

async fn a_second_frame_for_the_same_key_updates_the_row(db: TestDb) {
    let store = db.open().await.unwrap();
    let reporter = TestReporter::start(db.url(), |_| {}).await;
    let mut agent = TestAgent::connect(reporter.addr).await;
    agent
        .send(&report(2, 3, 100, &[host(9, 80, 10, 1, false)]))
        .await;
    wait_for_rows(&store, &[row(2, 3, 100, host(9, 80, 10, 1, false))], WITHIN).await;

    agent
        .send(&report(2, 3, 101, &[host(9, 80, 0, 30, true)]))
        .await;
    wait_for_rows(&store, &[row(2, 3, 101, host(9, 80, 0, 30, true))], WITHIN).await;
    reporter.stop().await;
}
both_backends!(a_second_frame_for_the_same_key_updates_the_row);

async fn frames_for_the_same_keys_within_one_flush_write_the_latest_values(db: TestDb) {
    let store = db.open().await.unwrap();
    // Writes happen only on the flush timer here, so the 100 frames (sent in one write, they
    // arrive within milliseconds) meet in one batch.
    let reporter = TestReporter::start(db.url(), |c| c.reporter.flush_ms = 2000).await;
    let mut agent = TestAgent::connect(reporter.addr).await;
    let frame = |i: u32| {
        let hosts: Vec<_> = (1..=5)
            .map(|h| host(h, 9000, i, i / 3, i.is_multiple_of(2)))
            .collect();
        report(4, 4, 1000 + i, &hosts)
    };
    let requests: Vec<_> = (0..100).map(frame).collect();
    agent.send_all(&requests).await;

    let want: Vec<_> = (1..=5)
        .map(|h| row(4, 4, 1099, host(h, 9000, 99, 33, false)))
        .collect();
    wait_for_rows(&store, &want, WITHIN).await;
    reporter
        .wait_for("nothing pending", WITHIN, |s| {
            ReporterStats::get(&s.pending_rows) == 0
        })
        .await;
    assert_eq!(reporter.get(|s| &s.rows_received), 500);
    assert!(reporter.get(|s| &s.coalesced) > 0, "{}", reporter.stats);
    assert!(
        reporter.get(|s| &s.rows_written) < 500,
        "{}",
        reporter.stats
    );
    reporter.assert_rows_balance();
    reporter.stop().await;
}
both_backends!(frames_for_the_same_keys_within_one_flush_write_the_latest_values);

async fn many_keys_over_several_connections_all_arrive(db: TestDb) {
    let store = db.open().await.unwrap();
    let reporter = TestReporter::start(db.url(), |c| c.reporter.batch_rows = 64).await;
    let mut want = Vec::new();
    let mut agents = Vec::new();
    for modid in 0..4 {
        let mut agent = TestAgent::connect(reporter.addr).await;
        let mut requests = Vec::new();
        for cmdid in 0..25 {
            let hosts: Vec<_> = (1..=4)
                .map(|h| host(h, 7000 + cmdid, modid as u32, cmdid as u32, false))
                .collect();
            want.extend(hosts.iter().map(|&h| row(modid, cmdid, 5, h)));
            requests.push(report(modid, cmdid, 5, &hosts));
        }
        agent.send_all(&requests).await;
        agents.push(agent);
    }
    wait_for_rows(&store, &want, WITHIN).await;
    assert_eq!(reporter.get(|s| &s.rows_received), 400);
    reporter
        .wait_for("400 rows written", WITHIN, |s| {
            ReporterStats::get(&s.rows_written) == 400
        })
        .await;
    assert!(reporter.get(|s| &s.batches) >= 3, "{}", reporter.stats);
    reporter.stop().await;
}
both_backends!(many_keys_over_several_connections_all_arrive);

async fn rows_that_cannot_be_stored_are_dropped_and_counted(db: TestDb) {
    let store = db.open().await.unwrap();
    let reporter = TestReporter::start(db.url(), |_| {}).await;
    let mut agent = TestAgent::connect(reporter.addr).await;
    let hosts = [
        host(1, 0, 1, 1, false),
        host(2, 80, 2, 2, false),
        host(3, 65536, 3, 3, false),
        host(4, -80, 4, 4, false),
    ];
    agent.send(&report(6, 6, 60, &hosts)).await;
    wait_for_rows(&store, &[row(6, 6, 60, hosts[1])], WITHIN).await;
    assert_eq!(reporter.get(|s| &s.dropped_bad_row), 3);
    // The connection is still good.
    agent
        .send(&report(6, 6, 61, &[host(2, 80, 5, 5, true)]))
        .await;
    wait_for_rows(&store, &[row(6, 6, 61, host(2, 80, 5, 5, true))], WITHIN).await;
    assert_eq!(reporter.get(|s| &s.protocol_errors), 0);
    reporter
        .wait_for("nothing pending", WITHIN, |s| {
            ReporterStats::get(&s.pending_rows) == 0
        })
        .await;
    reporter.assert_rows_balance();
    reporter.stop().await;
}
both_backends!(rows_that_cannot_be_stored_are_dropped_and_counted);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_conn_are_closed_and_counted() {
    let db = TestDb::sqlite();
    let reporter = TestReporter::start(db.url(), |c| c.reactor.max_conn = 2).await;
    let mut a = TestAgent::connect(reporter.addr).await;
    let mut b = TestAgent::connect(reporter.addr).await;
    // Connections that sent a frame recently are never evicted for a new one.
    a.send(&report(7, 1, 1, &[host(1, 1, 1, 1, false)])).await;
    b.send(&report(7, 2, 1, &[host(1, 1, 1, 1, false)])).await;
    reporter
        .wait_for("two connections that sent a frame", WITHIN, |s| {
            ReporterStats::get(&s.connections) == 2 && ReporterStats::get(&s.frames) == 2
        })
        .await;
    let mut c = TestAgent::connect(reporter.addr).await;
    assert!(c.closed_within(Duration::from_secs(5)).await);
    assert_eq!(reporter.get(|s| &s.connections_refused), 1);
    drop(a);
    reporter
        .wait_for("a slot frees up", WITHIN, |s| {
            ReporterStats::get(&s.connections) < 2
        })
        .await;
    let store = db.open().await.unwrap();
    let mut d = TestAgent::connect(reporter.addr).await;
    d.send(&report(1, 1, 1, &[host(1, 1, 1, 1, false)])).await;
    let rows: Vec<_> = [(7, 1), (7, 2), (1, 1)]
        .map(|(modid, cmdid)| row(modid, cmdid, 1, host(1, 1, 1, 1, false)))
        .into();
    wait_for_rows(&store, &rows, WITHIN).await;
    reporter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_flushes_what_is_pending() {
    let db = TestDb::sqlite();
    // Neither a full chunk nor the flush timer would write these before the stop does.
    let reporter = TestReporter::start(db.url(), |c| c.reporter.flush_ms = 3_600_000).await;
    let mut agent = TestAgent::connect(reporter.addr).await;
    let hosts: Vec<_> = (1..=10).map(|h| host(h, 80, 1, 0, false)).collect();
    agent.send(&report(3, 3, 3, &hosts)).await;
    reporter
        .wait_for("rows pending", WITHIN, |s| {
            ReporterStats::get(&s.pending_rows) == 10
        })
        .await;
    assert_eq!(reporter.get(|s| &s.rows_written), 0);
    let stats = reporter.stats.clone();
    reporter.stop().await;
    assert_eq!(ReporterStats::get(&stats.rows_written), 10);
    let store = db.open().await.unwrap();
    assert_eq!(
        store.load_call_status(Some(3), None).await.unwrap().len(),
        10
    );
}
