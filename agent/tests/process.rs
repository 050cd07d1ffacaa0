//! The `lars-agent` binary as operators run it: config errors before anything starts, a busy
//! port named, and a clean exit on SIGTERM and SIGINT.

mod common;

use common::{binary, start};
use std::process::Command;

fn agent_with(config: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lars_agent.toml");
    std::fs::write(&path, config).unwrap();
    Command::new(binary("lars-agent"))
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn config_errors_name_the_file_and_key() {
    for (text, key) in [
        ("[agent]\nshards = 0\n", "agent.shards"),
        ("[agent]\nbase_prot = 1\n", "base_prot"),
        ("[loadbalance]\nerr_rate = 2.0\n", "loadbalance.err_rate"),
        ("[dnsserver]\nip = \"127.0.0.1\"\n", "port"),
    ] {
        let out = agent_with(text);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(
            stderr.contains(key) && stderr.contains("lars_agent.toml"),
            "{text}: {stderr}"
        );
        assert!(!stderr.contains("serving"), "{text}: {stderr}");
    }
}

#[test]
fn a_busy_port_is_named() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = agent_with(&format!(
        "[agent]\nbase_port = {port}\nshards = 1\nstats_addr = \"\"\n"
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}

#[test]
fn sigterm_and_sigint_stop_it_cleanly() {
    for signal in ["-TERM", "-INT"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "[agent]\nbase_port = 0\nstats_addr = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let agent = start("lars-agent", &[], &["--config", path.to_str().unwrap()]);
        let status = if signal == "-TERM" {
            agent.terminate()
        } else {
            agent.interrupt()
        };
        assert!(status.success(), "{signal}: {status}");
    }
}

#[test]
fn help_explains_it() {
    let out = Command::new(binary("lars-agent"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--config") && text.contains("taskset"),
        "{text}"
    );
}
