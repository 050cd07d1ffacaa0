//! `lars status` as a process, against both store backends: the stored call statistics as a
//! table, narrowed by MODID and CMDID, and clear errors for bad arguments. And `lars stats`, the
//! live metrics of a running service as a table.

use lars_service::both_backends;
use lars_service::testing::{Finished, ServiceProcess, run, workspace_binary};
use lars_store::CallStatusRow;
use lars_store::testing::TestDb;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

fn lars(args: &[&str]) -> Finished {
    run(Path::new(env!("CARGO_BIN_EXE_lars")), args)
}

fn row(modid: i32, cmdid: i32, host: Ipv4Addr, succ_cnt: u32, err_cnt: u32) -> CallStatusRow {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    CallStatusRow {
        modid,
        cmdid,
        ip: u32::from(host),
        port: 9000,
        caller: u32::from(Ipv4Addr::new(172, 16, 3, 4)),
        succ_cnt,
        err_cnt,
        // Ten minutes ago.
        ts: now as i64 - 600,
        overload: err_cnt > succ_cnt,
    }
}

fn plant(db: &TestDb, rows: &[CallStatusRow]) {
    let rows = rows.to_vec();
    db.run(|store| async move { store.upsert_call_status(&rows).await.unwrap() });
}

fn shows_the_stored_statistics(db: TestDb) {
    plant(
        &db,
        &[
            row(1, 1, Ipv4Addr::new(192, 168, 9, 1), 75, 25),
            row(1, 2, Ipv4Addr::new(10, 0, 0, 2), 0, 4),
            row(2, 1, Ipv4Addr::new(10, 0, 0, 3), 10, 0),
        ],
    );
    let url = db.url_string();
    let status = |ids: &[&str]| lars(&[&["status", "--store", url.as_str()][..], ids].concat());

    let out = status(&[]);
    assert!(out.status.success(), "{}", out.stderr);
    let text = out.stdout;
    assert!(text.contains("3 row(s)"), "{text}");
    let first: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        first,
        [
            "1",
            "1",
            "192.168.9.1:9000",
            "172.16.3.4",
            "75",
            "25",
            "25.0%",
            "no",
            "10m"
        ],
        "{text}"
    );
    let second: Vec<&str> = text.lines().nth(2).unwrap().split_whitespace().collect();
    assert_eq!(&second[4..8], ["0", "4", "100.0%", "yes"], "{text}");

    let module = status(&["1"]).stdout;
    assert!(
        module.contains("2 row(s)") && !module.contains("10.0.0.3"),
        "{module}"
    );
    let route = status(&["1", "2"]).stdout;
    assert!(
        route.contains("1 row(s)") && route.contains("10.0.0.2:9000"),
        "{route}"
    );
    let none = status(&["7"]).stdout;
    assert!(none.contains("0 row(s)"), "{none}");
}

both_backends!(blocking shows_the_stored_statistics);

#[test]
fn bad_arguments_are_clear_errors_with_exit_code_2() {
    let db = TestDb::sqlite();
    let url = db.url_string();
    let cases: [(&[&str], &str); 2] = [
        (&["x"], "not an integer"),
        (&["1", "2", "3"], "at most MODID and CMDID"),
    ];
    for (ids, want) in cases {
        lars(&[&["status", "--store", url.as_str()][..], ids].concat()).assert_failed(2, want);
    }
    lars(&["status", "--store", "postgres://x"]).assert_failed(1, "postgres://x");
}

#[test]
fn help_lists_status() {
    let out = lars(&["--help"]);
    assert!(out.stdout.contains("status"), "{}", out.stdout);
    let out = lars(&["status", "--help"]);
    assert!(out.status.success());
    assert!(out.stdout.contains("--store"), "{}", out.stdout);
}

#[test]
fn stats_shows_a_running_services_metrics_as_a_table() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lars_reporter.toml");
    std::fs::write(
        &config,
        "[reactor]\nport = 0\n[metrics]\naddr = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let binary = workspace_binary(env!("CARGO_MANIFEST_DIR"), "lars-reporter", "lars-reporter");
    let url = db.url_string();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--store",
        url.as_str(),
    ];
    let reporter = ServiceProcess::start(&binary, &[], &args);
    let addr = reporter.metrics_addr().to_string();
    for target in [addr.clone(), format!("http://{addr}/metrics")] {
        let out = lars(&["stats", &target]);
        assert!(out.status.success(), "{}", out.stderr);
        let serving = out
            .stdout
            .lines()
            .find(|l| l.starts_with("lars_service_serving"));
        assert!(serving.is_some_and(|l| l.ends_with(" 1")), "{}", out.stdout);
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with("lars_reporter_rows_written_total ")),
            "{}",
            out.stdout
        );
    }
    let raw = lars(&["stats", "--raw", &addr]);
    assert!(
        raw.stdout
            .contains("# TYPE lars_reporter_frames_total counter"),
        "{}",
        raw.stdout
    );
}

#[test]
fn stats_names_a_target_it_cannot_read() {
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .to_string();
    lars(&["stats", &nowhere]).assert_failed(1, &nowhere);
    lars(&["stats", "https://x:1/"]).assert_failed(1, "https://x:1/");
    lars(&["agent-stats", "--addr", &nowhere]).assert_failed(1, &nowhere);
}
