//! What the `lars` and `lars-perf` process tests share: a `lars-agent` on ports the OS picks,
//! pointed at a dns and a reporter of the test's choosing (or at a port where nothing listens).

use lars_service::testing::{ServiceProcess, workspace_binary};
use std::net::TcpListener;

/// A TCP port on 127.0.0.1 where nothing listens (the OS picked it free and it was let go).
// Not every test binary that includes this module needs it.
#[allow(dead_code)]
pub fn nowhere() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free TCP port")
        .port()
}

/// A lars-agent on OS-chosen ports (shards and metrics endpoint) whose dns is at
/// 127.0.0.1:`dns_port` and reporter at 127.0.0.1:`reporter_port`, serving; the directory
/// holds its config and must outlive it.
pub fn agent(dns_port: u16, reporter_port: u16) -> (ServiceProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lars_agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nbase_port = 0\nstats_addr = \"127.0.0.1:0\"\nstate_dir = \"\"\n\
             [dnsserver]\nip = \"127.0.0.1\"\nport = {dns_port}\n\
             [reporter]\nip = \"127.0.0.1\"\nport = {reporter_port}\n"
        ),
    )
    .unwrap();
    let binary = workspace_binary(env!("CARGO_MANIFEST_DIR"), "lars-agent", "lars-agent");
    let agent = ServiceProcess::start(&binary, &[], &["--config", config.to_str().unwrap()]);
    (agent, dir)
}
