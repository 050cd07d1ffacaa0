//! Process-level harness for the agent's end-to-end tests: the real `lars-dns`, `lars-reporter`,
//! `lars-agent` and `lars` binaries on ports the OS picks, sharing one embedded store.

#![allow(dead_code)]

use lars_agent::stats::{sample, sum};
use lars_store::StoreUrl;
use lars_wire::{Client, ClientConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub use lars_service::testing::ServiceProcess as Service;

/// Path of a workspace binary, built once per test process so it is never stale.
pub fn binary(name: &str) -> PathBuf {
    if name == "lars-agent" {
        return PathBuf::from(env!("CARGO_BIN_EXE_lars-agent"));
    }
    let package = match name {
        "lars" => "lars-tools",
        other => other,
    };
    lars_service::testing::workspace_binary(env!("CARGO_MANIFEST_DIR"), package, name)
}

/// Starts the binary `name` under `prefix` with `args`, waiting until it serves.
pub fn start(name: &str, prefix: &[&str], args: &[&str]) -> Service {
    Service::start(&binary(name), prefix, args)
}

/// The whole system on one store: dns, reporter and an agent.
pub struct System {
    pub dir: tempfile::TempDir,
    pub store: StoreUrl,
    pub dns: Option<Service>,
    pub dns_port: u16,
    pub reporter: Option<Service>,
    pub reporter_port: u16,
    pub agent: Option<Service>,
    /// The agent's `[agent] io` driver.
    pub io: &'static str,
}

/// The driver tests run the agent on unless they name one: the `io-uring` event loop.
pub const DEFAULT_IO: &str = "io-uring";

/// Generates, for each `fn name(io: &'static str)` listed, one `#[test]` per I/O driver, forced
/// by config: `io_uring::name` and `portable::name`.
#[macro_export]
macro_rules! on_both_drivers {
    ($($name:ident),* $(,)?) => {
        mod io_uring {
            $(#[test]
            fn $name() {
                super::$name("io-uring")
            })*
        }
        mod portable {
            $(#[test]
            fn $name() {
                super::$name("portable")
            })*
        }
    };
}

/// The driver worker `worker` runs, as the stats text `text` says
/// (`lars_agent_worker_driver{worker="W",driver="D"} 1`).
pub fn driver_of(text: &str, worker: u64) -> Option<String> {
    let prefix = format!("lars_agent_worker_driver{{worker=\"{worker}\",driver=\"");
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(&prefix)?;
        let (driver, value) = rest.split_once("\"} ")?;
        (value.trim() == "1").then(|| driver.to_string())
    })
}

/// Every worker's driver, once the stats endpoint at `addr` names one for each (the agent's
/// readiness: a worker's driver gauge appears once its loop runs).
pub fn drivers_when_ready(addr: SocketAddr) -> Vec<String> {
    eventually(
        "the stats endpoint names every worker's driver",
        Duration::from_secs(10),
        || {
            let text = lars_agent::admin::fetch(addr, Duration::from_secs(2)).ok()?;
            let workers = sample(&text, "lars_agent_workers", "")?;
            (0..workers).map(|w| driver_of(&text, w)).collect()
        },
    )
}

impl System {
    /// Starts dns and reporter (on OS-chosen ports) and an agent pointed at them.
    #[allow(dead_code)]
    pub fn start() -> System {
        System::start_on(DEFAULT_IO)
    }

    /// As [`System::start`], with the agent on the `io` runtime.
    pub fn start_on(io: &'static str) -> System {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreUrl::Sqlite(dir.path().join("lars.db"));
        let mut system = System {
            dir,
            store,
            dns: None,
            dns_port: 0,
            reporter: None,
            reporter_port: 0,
            agent: None,
            io,
        };
        system.start_dns();
        system.start_reporter();
        system.start_agent(&[], "");
        system
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// (Re)starts lars-dns, on the same port as before if it ran before.
    pub fn start_dns(&mut self) {
        let config = self.write(
            "dns.toml",
            &format!(
                "[reactor]\nport = {}\n[metrics]\naddr = \"127.0.0.1:0\"\n[store]\nurl = \"{}\"\n[dns]\nversion_poll_ms = 200\n",
                self.dns_port, self.store
            ),
        );
        let dns = start("lars-dns", &[], &["--config", &config]);
        let addr: SocketAddr = dns.field("addr").parse().unwrap();
        self.dns_port = addr.port();
        self.dns = Some(dns);
    }

    /// (Re)starts lars-reporter, on the same port as before if it ran before.
    pub fn start_reporter(&mut self) {
        let config = self.write(
            "reporter.toml",
            &format!(
                "[reactor]\nport = {}\n[metrics]\naddr = \"127.0.0.1:0\"\n[store]\nurl = \"{}\"\n",
                self.reporter_port, self.store
            ),
        );
        let reporter = start("lars-reporter", &[], &["--config", &config]);
        let addr: SocketAddr = reporter.field("addr").parse().unwrap();
        self.reporter_port = addr.port();
        self.reporter = Some(reporter);
    }

    /// Starts an agent under `prefix` (e.g. `["taskset", "-c", "0"]`) with `extra` config lines
    /// in `[agent]`.
    pub fn start_agent(&mut self, prefix: &[&str], extra: &str) {
        let config = self.write(
            "agent.toml",
            &format!(
                "[agent]\nbase_port = 0\nstats_addr = \"127.0.0.1:0\"\nreport_interval_ms = 200\nio = \"{}\"\n{extra}\n\
                 [dnsserver]\nip = \"127.0.0.1\"\nport = {}\n[reporter]\nip = \"127.0.0.1\"\nport = {}\n",
                self.io, self.dns_port, self.reporter_port
            ),
        );
        let agent = start("lars-agent", prefix, &["--config", &config]);
        let drivers = drivers_when_ready(agent.field("stats").parse().unwrap());
        if self.io != "auto" {
            assert!(drivers.iter().all(|d| d == self.io), "{drivers:?}");
        }
        self.agent = Some(agent);
    }

    pub fn agent(&self) -> &Service {
        self.agent.as_ref().expect("agent running")
    }

    /// A client of the agent with a short timeout.
    pub fn client(&self) -> Client {
        let base_port: u16 = self.agent().field("base_port").parse().unwrap();
        Client::new(ClientConfig {
            base_port,
            timeout: Duration::from_millis(500),
            ..ClientConfig::default()
        })
        .unwrap()
    }

    /// The agent's counters.
    pub fn agent_stats(&self) -> String {
        let addr: SocketAddr = self.agent().field("stats").parse().unwrap();
        lars_agent::admin::fetch(addr, Duration::from_secs(2)).expect("agent stats")
    }

    pub fn stat(&self, name: &str, labels: &str) -> u64 {
        sample(&self.agent_stats(), name, labels).unwrap_or_else(|| panic!("no {name}{{{labels}}}"))
    }

    pub fn stat_sum(&self, name: &str) -> u64 {
        sum(&self.agent_stats(), name)
    }

    /// Runs the `lars` CLI against the system's store.
    pub fn lars(&self, args: &[&str]) -> Output {
        let store = self.store.to_string();
        let out = Command::new(binary("lars"))
            .args(args)
            .args(["--store", &store])
            .output()
            .expect("run lars");
        assert!(
            out.status.success(),
            "lars {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// Retries `check` until it returns Some, failing after `within`.
pub fn eventually<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `text` to `dir/name`; returns the path, for a `--config` argument.
pub fn write_config(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Starts `lars-dns` (or, as `program`, `lars-reporter`) on the store `store` (a URL) and a port
/// the OS picks, with its config at `dir/name`; returns it and where it listens. `extra` is
/// appended to the config (e.g. a `[dns]` section).
pub fn start_central(
    program: &str,
    dir: &std::path::Path,
    name: &str,
    store: &str,
    extra: &str,
) -> (Service, SocketAddr) {
    let config = write_config(
        dir,
        name,
        &format!(
            "[reactor]\nport = 0\n[metrics]\naddr = \"127.0.0.1:0\"\n[store]\nurl = \"{store}\"\n{extra}"
        ),
    );
    let service = start(program, &[], &["--config", &config]);
    let addr = service.field("addr").parse().unwrap();
    (service, addr)
}

/// `[dnsserver]` or `[reporter]` naming `addrs` in fail-over order: the first as `ip`/`port`,
/// the rest as `backups`.
pub fn peer_section(section: &str, addrs: &[SocketAddr]) -> String {
    let (first, backups) = addrs.split_first().expect("at least one address");
    let backups: Vec<String> = backups.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[{section}]\nip = \"{}\"\nport = {}\nbackups = [{}]\n",
        first.ip(),
        first.port(),
        backups.join(", ")
    )
}

/// Starts an agent on the `io` driver whose uplinks try `dns` and `reporters` in order, with
/// `extra` sections (e.g. `[uplink]`) appended to its config at `dir/agent.toml`.
pub fn start_agent_on(
    dir: &std::path::Path,
    io: &str,
    dns: &[SocketAddr],
    reporters: &[SocketAddr],
    extra: &str,
) -> Service {
    let config = write_config(
        dir,
        "agent.toml",
        &format!(
            "[agent]\nbase_port = 0\nstats_addr = \"127.0.0.1:0\"\nreport_interval_ms = 200\nio = \"{io}\"\n{}{}{extra}",
            peer_section("dnsserver", dns),
            peer_section("reporter", reporters),
        ),
    );
    let agent = start("lars-agent", &[], &["--config", &config]);
    drivers_when_ready(agent.field("stats").parse().unwrap());
    agent
}

/// A client of `agent` with a short timeout.
pub fn client_of(agent: &Service) -> Client {
    let base_port: u16 = agent.field("base_port").parse().unwrap();
    Client::new(ClientConfig {
        base_port,
        timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    })
    .unwrap()
}

/// One sample of `agent`'s counters, 0 when absent.
pub fn agent_stat(agent: &Service, name: &str, labels: &str) -> u64 {
    let addr: SocketAddr = agent.field("stats").parse().unwrap();
    let text = lars_agent::admin::fetch(addr, Duration::from_secs(2)).expect("agent stats");
    sample(&text, name, labels).unwrap_or(0)
}

/// A process stopped with SIGSTOP (frozen: its sockets stay open, it answers and reads
/// nothing) until this is dropped, which sends SIGCONT, so no test leaves a process stopped.
pub struct Frozen<'a> {
    service: &'a Service,
}

impl<'a> Frozen<'a> {
    /// Stops `service`.
    pub fn freeze(service: &'a Service) -> Frozen<'a> {
        service.send_signal("-STOP");
        Frozen { service }
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        // Not `send_signal`: it asserts, and a panic while already panicking aborts the run.
        let _ = Command::new("kill")
            .args(["-CONT", &self.service.pid().to_string()])
            .status();
    }
}
