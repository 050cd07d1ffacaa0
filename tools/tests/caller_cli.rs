//! The caller commands of `lars` as a process against a real `lars-agent` (whose dns runs in
//! this test on the embedded store): gethost, getroute, report, simulator, example and
//! agent-stats, with the exit codes scripts rely on.

mod common;

use lars_dns::{DnsConfig, DnsServer};
use lars_service::testing::{ServiceProcess, eventually};
use lars_store::Store;
use lars_store::testing::TestDb;
use lars_wire::{HostAddr, RouteKey};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Command, Output};
use std::time::Duration;

fn lars(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lars"))
        .args(args)
        .output()
        .expect("run lars")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

struct Setup {
    _db: TestDb,
    _runtime: tokio::runtime::Runtime,
    agent: ServiceProcess,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// A dns on a store with route (5, 5) = two hosts, and an agent pointed at it.
    fn start() -> Setup {
        let db = TestDb::sqlite();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dns_port = runtime.block_on(async {
            let store = Store::open(&db.url()).await.unwrap();
            for last in [1, 2] {
                let host = HostAddr::new(Ipv4Addr::new(10, 5, 5, last), 5000 + u16::from(last));
                store.add_host(RouteKey::new(5, 5), host).await.unwrap();
            }
            let mut config = DnsConfig::default();
            config.reactor.port = 0;
            let server = DnsServer::bind(&config, db.url()).await.unwrap();
            let port = server.local_addr().port();
            let (_stop, shutdown) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let _keep = _stop;
                server.run(shutdown).await;
            });
            port
        });
        let (agent, dir) = common::agent(dns_port, common::nowhere());
        Setup {
            _db: db,
            _runtime: runtime,
            agent,
            _dir: dir,
        }
    }

    fn lars(&self, args: &[&str]) -> Output {
        let base_port = self.agent.field("base_port");
        lars(
            &[
                &["--base-port", base_port.as_str(), "--timeout-ms", "2000"][..],
                args,
            ]
            .concat(),
        )
    }
}

#[test]
fn caller_commands_answer_with_exit_codes_scripts_can_use() {
    let setup = Setup::start();
    let first = setup.lars(&["gethost", "5", "5"]);
    assert_eq!(first.status.code(), Some(3), "{}", text(&first));
    assert!(text(&first).contains("NOEXIST"), "{}", text(&first));

    let host = eventually(
        "lars gethost serves the route",
        Duration::from_secs(5),
        || {
            let out = setup.lars(&["gethost", "5", "5"]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        },
    );
    assert!(host == "10.5.5.1:5001" || host == "10.5.5.2:5002", "{host}");

    let route = setup.lars(&["getroute", "5", "5"]);
    assert!(route.status.success());
    assert_eq!(
        String::from_utf8_lossy(&route.stdout)
            .lines()
            .collect::<Vec<_>>(),
        vec!["10.5.5.1:5001", "10.5.5.2:5002"]
    );
    let empty = setup.lars(&["getroute", "6", "6"]);
    assert_eq!(empty.status.code(), Some(3));

    let report = setup.lars(&["report", "5", "5", "10.5.5.1", "5001", "0"]);
    assert!(report.status.success(), "{}", text(&report));

    let example = setup.lars(&["example", "5", "5"]);
    assert!(example.status.success(), "{}", text(&example));
    assert!(text(&example).contains("reg_init(5, 5)"));

    let sim = setup.lars(&[
        "simulator",
        "5",
        "5",
        "--count",
        "60",
        "--fail-host",
        "10.5.5.2:5002",
        "--window",
        "20",
    ]);
    assert!(sim.status.success(), "{}", text(&sim));
    let out = text(&sim);
    assert!(out.contains("calls     1-20"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("10.5.5.2:5002") && !l.contains(" 0.0%")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("10.5.5.1:5001") && l.contains(" 0.0%")),
        "{out}"
    );

    let stats = lars(&["agent-stats", "--addr", &setup.agent.field("stats")]);
    assert!(stats.status.success(), "{}", text(&stats));
    assert!(text(&stats).contains("WORKER"), "{}", text(&stats));
    let raw = lars(&[
        "agent-stats",
        "--raw",
        "--addr",
        &setup.agent.field("stats"),
    ]);
    assert!(text(&raw).contains("lars_agent_get_host_total"));
}

/// Picks of `host` in the simulator's timeline line for calls `from`-..., e.g. `x25`.
fn picks_in_window(out: &str, from: u32, host: &str) -> u32 {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("calls {from:>5}-")))
        .unwrap_or_else(|| panic!("no window from call {from}: {out}"));
    line.split(&format!("{host} x")).nth(1).map_or(0, |rest| {
        rest.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    })
}

#[test]
fn the_simulator_through_the_fast_path_takes_a_failing_host_out_and_brings_it_back() {
    let setup = Setup::start();
    eventually(
        "the agent holds route (5, 5)",
        Duration::from_secs(5),
        || {
            setup
                .lars(&["gethost", "5", "5"])
                .status
                .success()
                .then_some(())
        },
    );
    let sim = setup.lars(&[
        "simulator",
        "5",
        "5",
        "--fast",
        "--count",
        "500",
        "--fail-host",
        "10.5.5.2:5002",
        "--fail-calls",
        "150",
        "--window",
        "50",
        "--interval-ms",
        "1",
    ]);
    assert!(sim.status.success(), "{}", text(&sim));
    let out = text(&sim);
    let sick = "10.5.5.2:5002";
    // Both hosts share the first calls; then the failing one is out of the rotation (15 errors
    // in a row), picked only as a probe (1 in 11); once it works again, 15 good probes bring it
    // back, and by the end the two share the calls again.
    assert!(picks_in_window(&out, 1, sick) >= 15, "{out}");
    assert!(picks_in_window(&out, 101, sick) <= 10, "{out}");
    let last = picks_in_window(&out, 451, sick);
    assert!((20..=30).contains(&last), "{out}");
    // And it went through the fast path: the agent applied report batches.
    let stats = lars(&[
        "agent-stats",
        "--raw",
        "--addr",
        &setup.agent.field("stats"),
    ]);
    let batches: f64 = text(&stats)
        .lines()
        .filter(|l| l.starts_with("lars_agent_fast_batches_total"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    assert!(
        batches > 0.0,
        "no report batch reached the agent: {}",
        text(&stats)
    );
}

#[test]
fn agent_stats_works_while_other_clients_hold_connections_to_the_endpoint_open() {
    use std::io::Write;
    let setup = Setup::start();
    let addr = setup.agent.field("stats");
    // One client that connects and never sends, one that sends half a request and stops, and
    // one that sends a whole request and never reads the answer: each holds its connection.
    let idle = std::net::TcpStream::connect(&addr).unwrap();
    let mut half = std::net::TcpStream::connect(&addr).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut unread = std::net::TcpStream::connect(&addr).unwrap();
    unread
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // `lars agent-stats` gives up after 2 s: behind an endpoint that served one client at a
    // time, each of these would fail.
    for _ in 0..3 {
        let stats = lars(&["agent-stats", "--addr", &addr]);
        assert!(stats.status.success(), "{}", text(&stats));
        assert!(text(&stats).contains("WORKER"), "{}", text(&stats));
    }
    drop((idle, half, unread));
}

#[test]
fn a_stopped_agent_is_a_clear_failure() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = lars(&[
        "--base-port",
        &port.to_string(),
        "--shards",
        "1",
        "--timeout-ms",
        "200",
        "gethost",
        "1",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no answer from the agent"),
        "{}",
        text(&out)
    );
    let stats = lars(&["agent-stats", "--addr", &format!("127.0.0.1:{port}")]);
    assert_eq!(stats.status.code(), Some(1));
    assert!(
        text(&stats).contains("cannot read agent stats"),
        "{}",
        text(&stats)
    );
}

#[test]
fn bad_caller_arguments_exit_2() {
    for args in [
        &["simulator", "1", "1", "--err-rate", "11"][..],
        &["simulator", "1", "1", "--fail-calls", "5"][..],
        &["report", "1", "1", "10.0.0.1", "0", "0"][..],
        &["gethost", "1"][..],
    ] {
        let out = lars(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
}
