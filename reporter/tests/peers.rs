//! Who may write statistics. As a process: with `allowed_peers` naming one loopback address, an
//! agent connecting from it has its rows stored, and one connecting from another loopback
//! address is closed at once, counted and logged with its address — and the other way round.
//! In process, on MariaDB and SQLite: a frame with a forged or missing `caller`, a `ts` in the
//! future or too many results never reaches the store and is counted by reason, a port that is
//! no port is dropped and counted, and an honest agent's rows on the same connection are stored;
//! and a real lars-agent's reports, through its report uplink, are stored as they always were.

mod common;

use common::{TestReporter, frames, report, row, wait_for_rows};
use lars_reporter::ReporterStats;
use lars_service::both_backends;
use lars_service::testing::{ServiceProcess, connect_from, eventually, workspace_binary};
use lars_store::CallStatusRow;
use lars_store::testing::TestDb;
use lars_wire::client::{Client, ClientConfig};
use lars_wire::ip::ip_to_wire;
use lars_wire::{HostAddr, RouteKey};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WITHIN: Duration = Duration::from_secs(20);

const ONE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const TWO: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn lars_reporter() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lars-reporter"))
}

fn now() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    u32::try_from(secs).expect("before 2106")
}

const HOST: (Ipv4Addr, i32, u32, u32, bool) = (Ipv4Addr::new(10, 9, 0, 1), 9000, 5, 1, false);

/// A report of [`HOST`] for route (`modid`, 1) whose caller is `caller`.
fn report_from(caller: Ipv4Addr, modid: i32, ts: u32) -> lars_wire::messages::ReportStatusRequest {
    let mut request = report(modid, 1, ts, &[HOST]);
    request.caller = ip_to_wire(caller);
    request
}

fn stores_only_the_allowed_peers_rows(allowed: Ipv4Addr, other: Ipv4Addr) {
    // The test's own connections; the process harness blocks, so it runs outside.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lars_reporter.toml");
    let text = format!(
        "[reactor]\nip = \"127.0.0.1\"\nport = 0\nallowed_peers = [\"{allowed}/32\"]\n\
         [metrics]\naddr = \"127.0.0.1:0\"\n[store]\nurl = \"{}\"\n",
        db.url_string()
    );
    std::fs::write(&config, text).unwrap();
    let reporter = ServiceProcess::start(
        lars_reporter(),
        &[],
        &["--config", config.to_str().unwrap()],
    );
    let addr: SocketAddr = reporter.field("addr").parse().expect("addr parses");
    let ts = now();

    // Each reports as itself: only where it connects from decides.
    let mut refused = rt.block_on(connect_from(IpAddr::V4(other), addr)).unwrap();
    let refused_addr = refused.local_addr().unwrap();
    let closed = rt.block_on(async {
        let report = frames([&report_from(other, 1, ts)]);
        // The reporter may have closed it already: the read below tells.
        let _ = refused.write_all(&report).await;
        let mut buf = [0u8; 64];
        tokio::time::timeout(WITHIN, refused.read(&mut buf)).await
    });
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a peer outside allowed_peers is closed at once: {closed:?}"
    );
    reporter.wait_for_metric("lars_reporter_peers_refused_total", &[], WITHIN, |v| {
        v == 1.0
    });
    let line = reporter.wait_for_line("peer not in allowed_peers", WITHIN);
    assert!(line.contains(&refused_addr.to_string()), "{line}");

    let want = CallStatusRow {
        caller: u32::from(allowed),
        ..row(2, 1, ts, HOST)
    };
    rt.block_on(async {
        let mut served = connect_from(IpAddr::V4(allowed), addr).await.unwrap();
        let report = frames([&report_from(allowed, 2, ts)]);
        served.write_all(&report).await.unwrap();
        let store = db.open().await.unwrap();
        wait_for_rows(&store, &[want], WITHIN).await;
    });
    assert_eq!(
        reporter.scrape().get("lars_reporter_frames_total", &[]),
        Some(1.0),
        "the refused peer's frame was never read"
    );
}

#[test]
fn an_agent_from_127_0_0_1_is_stored_and_one_from_127_0_0_2_is_refused() {
    stores_only_the_allowed_peers_rows(ONE, TWO);
}

#[test]
fn an_agent_from_127_0_0_2_is_stored_and_one_from_127_0_0_1_is_refused() {
    stores_only_the_allowed_peers_rows(TWO, ONE);
}

both_backends!(impossible_rows_never_reach_the_store_and_are_counted_by_reason);

async fn impossible_rows_never_reach_the_store_and_are_counted_by_reason(db: TestDb) {
    let store = db.open().await.unwrap();
    let reporter = TestReporter::start(db.url(), |c| c.reporter.max_results_per_frame = 3).await;
    let ts = now();
    let own = |modid| report_from(ONE, modid, ts);
    let mut too_many = report(5, 1, ts, &[HOST; 4]);
    for (i, result) in too_many.results.iter_mut().enumerate() {
        result.port = 9000 + i as i32;
    }
    let mut bad_port = report(6, 1, ts, &[HOST, (HOST.0, 70_000, 1, 0, false)]);
    bad_port.caller = ip_to_wire(ONE);
    let mut not_a_route_cmdid = report(7, -2, ts, &[HOST, HOST]);
    not_a_route_cmdid.caller = ip_to_wire(ONE);
    let frames = frames(&[
        own(1),
        report_from(Ipv4Addr::new(6, 6, 6, 6), 2, ts),
        report_from(Ipv4Addr::new(0, 0, 0, 0), 3, ts),
        report_from(ONE, 4, u32::MAX),
        report_from(ONE, 4, ts + 3600),
        too_many,
        bad_port,
        // No route has a negative id.
        own(-1),
        not_a_route_cmdid,
    ]);
    let mut agent = connect_from(IpAddr::V4(ONE), reporter.addr).await.unwrap();
    agent.write_all(&frames).await.unwrap();

    let want = [row(1, 1, ts, HOST), row(6, 1, ts, HOST)];
    wait_for_rows(&store, &want, WITHIN).await;
    reporter
        .wait_for("every frame read", WITHIN, |s| {
            ReporterStats::get(&s.frames) == 9
        })
        .await;
    let s = &reporter.stats;
    let g = ReporterStats::get;
    assert_eq!(g(&s.refused_caller_mismatch), 2, "{s}");
    assert_eq!(g(&s.refused_future_ts), 2, "{s}");
    assert_eq!(g(&s.refused_too_many_results), 4, "{s}");
    assert_eq!(g(&s.refused_not_a_route), 3, "{s}");
    assert_eq!(g(&s.dropped_bad_row), 1, "{s}");
    assert_eq!(
        g(&s.protocol_errors),
        0,
        "refused frames keep the connection: {s}"
    );
    reporter.assert_rows_balance();
    // Nothing else arrived later either.
    assert_eq!(store.load_call_status(None, None).await.unwrap().len(), 2);
    reporter.stop().await;
}

both_backends!(a_trusted_caller_field_is_stored_as_sent);

async fn a_trusted_caller_field_is_stored_as_sent(db: TestDb) {
    let store = db.open().await.unwrap();
    let reporter = TestReporter::start(db.url(), |c| c.reporter.trust_caller_field = true).await;
    let behind_nat = Ipv4Addr::new(192, 168, 5, 5);
    let ts = now();
    let mut agent = connect_from(IpAddr::V4(ONE), reporter.addr).await.unwrap();
    agent
        .write_all(&frames([&report_from(behind_nat, 7, ts)]))
        .await
        .unwrap();
    let want = CallStatusRow {
        caller: u32::from(behind_nat),
        ..row(7, 1, ts, HOST)
    };
    wait_for_rows(&store, &[want], WITHIN).await;
    assert_eq!(reporter.stats.rows_refused(), 0);
    reporter.stop().await;
}

both_backends!(blocking a_real_agents_own_rows_are_stored);

/// lars-dns, lars-reporter (default admission: the caller must be the peer) and a lars-agent as
/// processes on `db`: what the agent reports through its report uplink is stored, under its
/// own address, and nothing is refused.
fn a_real_agents_own_rows_are_stored(db: TestDb) {
    let key = RouteKey::new(8, 1);
    let served = HostAddr::new(Ipv4Addr::new(10, 9, 8, 1), 9000);
    db.run(|store| async move { store.add_host(key, served).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let store = db.url_string();
    let central = |name: &str| {
        let config = dir.path().join(format!("{name}.toml"));
        let text = format!(
            "[reactor]\nport = 0\n[metrics]\naddr = \"127.0.0.1:0\"\n[store]\nurl = \"{store}\"\n"
        );
        std::fs::write(&config, text).unwrap();
        let binary = workspace_binary(env!("CARGO_MANIFEST_DIR"), name, name);
        let service = ServiceProcess::start(&binary, &[], &["--config", config.to_str().unwrap()]);
        let addr: SocketAddr = service.field("addr").parse().expect("addr parses");
        (service, addr.port())
    };
    let (_dns, dns_port) = central("lars-dns");
    let (reporter, reporter_port) = central("lars-reporter");
    let config = dir.path().join("lars_agent.toml");
    let text = format!(
        "[agent]\nbase_port = 0\nstats_addr = \"127.0.0.1:0\"\nreport_interval_ms = 200\n\
         io = \"portable\"\nstate_dir = \"{}\"\n\
         [dnsserver]\nip = \"127.0.0.1\"\nport = {dns_port}\n\
         [reporter]\nip = \"127.0.0.1\"\nport = {reporter_port}\n",
        dir.path().join("state").display()
    );
    std::fs::write(&config, text).unwrap();
    let agent_binary = workspace_binary(env!("CARGO_MANIFEST_DIR"), "lars-agent", "lars-agent");
    let agent = ServiceProcess::start(&agent_binary, &[], &["--config", config.to_str().unwrap()]);

    let mut client = Client::new(ClientConfig {
        base_port: agent.field("base_port").parse().unwrap(),
        timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    })
    .unwrap();
    let picked = eventually("the agent serves the route", WITHIN, || {
        client.get_host(key.modid, key.cmdid).ok()
    });
    assert_eq!(picked, served);
    for retcode in [0, 0, 0, 1] {
        client
            .report(key.modid, key.cmdid, picked, retcode)
            .unwrap();
    }
    let row = eventually("the agent's statistics are stored", WITHIN, || {
        let rows =
            db.run(|store| async move { store.load_call_status(Some(8), Some(1)).await.unwrap() });
        rows.into_iter().find(|r| (r.succ_cnt, r.err_cnt) == (3, 1))
    });
    assert_eq!((row.ip, row.port), (u32::from(served.ip), served.port));
    assert_eq!(
        row.caller,
        u32::from(Ipv4Addr::LOCALHOST),
        "the agent's own address"
    );
    let samples = reporter.scrape();
    for reason in [
        "caller_mismatch",
        "future_ts",
        "too_many_results",
        "not_a_route",
    ] {
        let refused = samples.get("lars_reporter_rows_refused_total", &[("reason", reason)]);
        assert_eq!(
            refused,
            Some(0.0),
            "nothing of the agent's is refused ({reason})"
        );
    }
}
