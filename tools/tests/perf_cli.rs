//! `lars-perf` as a process, over real sockets on ports the OS picks: against a port where
//! nothing listens (timeouts, a failed run), against lars-bench's io_uring `echo-server` and
//! against a real `lars-agent` (the summary, JSON with the counts, and the keys the agent was
//! asked for), and with bad arguments (status 2). Each run lasts about a second.

mod common;

use lars_service::testing::ServiceProcess as Server;
use serde_json::Value;
use std::net::UdpSocket;
use std::process::{Command, Output};

/// A short run: no warm-up to speak of, one second measured, a timeout long enough for a
/// loaded test machine.
const SHORT: [&str; 6] = ["--warmup", "0.2", "--duration", "1", "--timeout", "2000"];

fn lars_perf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lars-perf"))
        .args(args)
        .output()
        .expect("run lars-perf")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs lars-perf with `--json` and parses what it printed.
fn lars_perf_json(args: &[&str]) -> (Output, Value) {
    let out = lars_perf(&[args, &["--json"]].concat());
    let json = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
    (out, json)
}

/// A short `--json` run against the agent or echo server on `base_port`.
fn short_json_run(base_port: &str, args: &[&str]) -> (Output, Value) {
    lars_perf_json(&[&["--base-port", base_port][..], args, &SHORT].concat())
}

/// Starts a binary of another workspace package (built once per test process, so never stale)
/// and waits until it serves.
fn start(name: &str, args: &[&str]) -> Server {
    let package = if name == "echo-server" {
        "lars-bench"
    } else {
        name
    };
    let binary = lars_service::testing::workspace_binary(env!("CARGO_MANIFEST_DIR"), package, name);
    Server::start(&binary, &[], args)
}

/// A lars-agent on OS-chosen ports whose dns and reporter are nowhere, so every `get_host` is
/// answered NOEXIST at once.
fn agent() -> (Server, tempfile::TempDir) {
    let nowhere = common::nowhere();
    common::agent(nowhere, nowhere)
}

fn u64_at(json: &Value, path: &[&str]) -> u64 {
    let mut value = json;
    for key in path {
        value = &value[*key];
    }
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a count in {json}"))
}

#[test]
fn a_stopped_agent_gives_timeouts_and_a_failed_run() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
        .to_string();
    let args = [
        "--base-port",
        &port,
        "--shards",
        "1",
        "--warmup",
        "0",
        "--duration",
        "0.5",
        "--timeout",
        "100",
    ];
    let out = lars_perf(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("timeouts") && text.contains("(100.00%)"),
        "{text}"
    );
    assert!(text.contains("FAILED: nothing was answered"), "{text}");

    let (out, json) = lars_perf_json(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(u64_at(&json, &["timeouts"]) > 0, "{json}");
    assert_eq!(u64_at(&json, &["answers"]), 0);
    assert_eq!(json["ok"], false);
    assert!(json["latency_us"].is_null());
}

#[test]
fn the_echo_server_answers_every_request_with_the_same_bytes() {
    let echo = start("echo-server", &[]);
    let base_port = echo.field("base_port");
    assert_eq!(echo.field("shards"), "3");
    let target = ["--target", "echo", "--base-port", &base_port, "--keys", "3"];

    let out = lars_perf(&[&target[..], &SHORT].concat());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    for part in [
        "echo on echo server",
        "throughput",
        "latency      p50",
        "result       ok",
    ] {
        assert!(text.contains(part), "no `{part}` in\n{text}");
    }
    assert!(!text.contains("retcodes"), "{text}");

    let (out, json) = lars_perf_json(&[&target[..], &SHORT].concat());
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert!(json["throughput_per_sec"].as_f64().unwrap() > 0.0, "{json}");
    assert!(u64_at(&json, &["by_kind", "echo", "answers"]) > 0, "{json}");
    assert_eq!(u64_at(&json, &["bad"]), 0, "{json}");
    assert!(u64_at(&json, &["latency_us", "p99"]) >= u64_at(&json, &["latency_us", "p50"]));
    assert_eq!(json["options"]["target"], "echo");
    assert_eq!(json["options"]["workload"], "echo");
}

#[test]
fn the_agent_answers_get_host_and_the_retcodes_are_counted() {
    let (agent, _dir) = agent();
    let base_port = agent.field("base_port");
    let target = ["--base-port", &base_port, "--keys", "10"];

    let out = lars_perf(
        &[
            &target[..],
            &SHORT,
            &["--sockets", "2", "--outstanding", "4"],
        ]
        .concat(),
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    for part in [
        "get_host on agent",
        "retcodes     SUCC 0",
        "NOEXIST",
        "result       ok",
    ] {
        assert!(text.contains(part), "no `{part}` in\n{text}");
    }

    let (out, json) = lars_perf_json(&[&target[..], &SHORT].concat());
    assert_eq!(out.status.code(), Some(0), "{json}");
    let answers = u64_at(&json, &["answers"]);
    assert!(answers > 0, "{json}");
    assert_eq!(u64_at(&json, &["retcodes", "NOEXIST"]), answers, "{json}");
    assert_eq!(u64_at(&json, &["retcodes", "SUCC"]), 0);
    assert!(json["throughput_per_sec"].as_f64().unwrap() > 0.0);

    // The agent counted at least every answer lars-perf measured (warm-up ones come on top).
    let noexist = agent
        .scrape()
        .sum("lars_agent_replies_total", &[("retcode", "noexist")]) as u64;
    assert!(noexist >= answers, "agent {noexist} < lars-perf {answers}");
}

#[test]
fn the_qps_preset_and_a_mix_run_against_the_agent() {
    let (agent, _dir) = agent();
    let base_port = agent.field("base_port");

    let (out, json) = short_json_run(&base_port, &["--workload", "qps", "--threads", "2"]);
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(json["options"]["workload"], "qps");
    assert_eq!(json["options"]["outstanding"], 1);
    let completed = u64_at(&json, &["completed"]);
    assert!(completed > 0, "{json}");
    // No host to pick (NOEXIST), so no iteration reported one.
    assert_eq!(u64_at(&json, &["by_kind", "report", "sent"]), 0, "{json}");
    assert_eq!(u64_at(&json, &["retcodes", "NOEXIST"]), completed);

    let mix = "get_host=8,report=1,get_route=1";
    let (out, json) = short_json_run(&base_port, &["--mix", mix, "--keys", "5"]);
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(json["options"]["workload"], "mix");
    for kind in ["get_host", "get_route", "report"] {
        assert!(
            u64_at(&json, &["by_kind", kind, "sent"]) > 0,
            "{kind}: {json}"
        );
    }
    assert!(u64_at(&json, &["get_route_empty"]) > 0, "{json}");
    assert_eq!(
        u64_at(&json, &["get_route_empty"]),
        u64_at(&json, &["by_kind", "get_route", "answers"])
    );

    let (out, json) = short_json_run(&base_port, &["--rate", "2000"]);
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(json["options"]["open_loop"], true);
    assert!(u64_at(&json, &["answers"]) > 0, "{json}");
}

#[test]
fn the_blocking_client_runs_the_qps_preset_against_the_agent() {
    let (agent, _dir) = agent();
    let base_port = agent.field("base_port");
    let (out, json) = short_json_run(
        &base_port,
        &[
            "--client",
            "blocking",
            "--workload",
            "qps",
            "--threads",
            "2",
            "--keys",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(json["options"]["client"], "blocking");
    let completed = u64_at(&json, &["completed"]);
    assert!(completed > 0, "{json}");
    assert_eq!(u64_at(&json, &["retcodes", "NOEXIST"]), completed, "{json}");
    assert_eq!(u64_at(&json, &["timeouts"]), 0, "{json}");
    // The agent answered every get_host the blocking sockets sent, on the shard ports of both
    // keys (1, 1) and (1, 2).
    let asked = agent.scrape().sum("lars_agent_get_host_total", &[]) as u64;
    assert!(asked >= completed, "agent {asked} < lars-perf {completed}");
}

#[test]
fn all_sockets_together_walk_a_large_key_set_without_repeating_keys() {
    let (agent, _dir) = agent();
    let base_port = agent.field("base_port");
    // Far more keys than a short run sends: if the 2 threads x 4 sockets x 16 slots walk the
    // key set together, every answered get_route asked for a key no other request asked for.
    let (out, json) = short_json_run(
        &base_port,
        &[
            "--workload",
            "get_route",
            "--modid",
            "1..10000000",
            "--cmdid",
            "1",
            "--threads",
            "2",
            "--sockets",
            "4",
            "--outstanding",
            "16",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{json}");
    let answers = u64_at(&json, &["by_kind", "get_route", "answers"]);
    assert!(answers > 0, "{json}");

    // Each new key is a new route in the agent (warm-up requests add theirs on top).
    let routes = agent.scrape().sum("lars_agent_routes", &[]) as u64;
    assert!(
        routes >= answers,
        "{answers} answered get_routes touched only {routes} keys"
    );
}

#[test]
fn bad_arguments_exit_2_before_any_load() {
    for (args, says) in [
        (&["--threads", "0"][..], "--threads"),
        (&["--bogus"][..], "--bogus"),
        (
            &["--workload", "qps", "--outstanding", "4"][..],
            "--outstanding",
        ),
        (&["--mix", "nope=1"][..], "not a request kind"),
        (&["--keys", "3", "--cmdid", "1..3"][..], "--keys"),
        (&["--target", "echo", "--workload", "report"][..], "echo"),
        (&["--base-port", "70000"][..], "port"),
    ] {
        let out = lars_perf(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
    }
    let help = lars_perf(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("--outstanding"));
}
