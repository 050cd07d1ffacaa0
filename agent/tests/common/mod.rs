//! Process-level harness for the agent's end-to-end tests: the real `lars-dns`, `lars-reporter`,
//! `lars-agent` and `lars` binaries on ports the OS picks, sharing one embedded store.

// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use lars_service::metrics::{Samples, scrape};
use lars_store::StoreUrl;
use lars_wire::{Client, ClientConfig, HostAddr};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

pub use lars_service::testing::{ServiceProcess as Service, eventually};

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

/// The driver worker `worker` runs, as its metrics say
/// (`lars_agent_worker_driver{worker="W",driver="D"} 1`).
pub fn driver_of(samples: &Samples, worker: u64) -> Option<String> {
    let worker = worker.to_string();
    samples
        .iter()
        .find(|s| {
            s.name == "lars_agent_worker_driver"
                && s.value == 1.0
                && s.labels.get("worker") == Some(&worker)
        })
        .and_then(|s| s.labels.get("driver").cloned())
}

/// Every worker's driver, once the metrics endpoint at `addr` names one for each (the agent's
/// readiness: a worker's driver gauge appears once its loop runs).
pub fn drivers_when_ready(addr: SocketAddr) -> Vec<String> {
    eventually(
        "the metrics endpoint names every worker's driver",
        Duration::from_secs(10),
        || {
            let samples = scrape(&addr.to_string(), Duration::from_secs(2)).ok()?;
            let workers = samples.get("lars_agent_workers", &[])? as u64;
            (0..workers)
                .map(|w| driver_of(&samples, w))
                .collect::<Option<Vec<_>>>()
        },
    )
}

impl System {
    /// Starts dns and reporter (on OS-chosen ports) and an agent pointed at them.
    pub fn start() -> System {
        System::start_on(DEFAULT_IO)
    }

    /// As [`System::start`], with the agent on the `io` runtime.
    pub fn start_on(io: &'static str) -> System {
        System::start_with(io, "")
    }

    /// As [`System::start_on`], with `extra` config lines in the agent's `[agent]`.
    pub fn start_with(io: &'static str, extra: &str) -> System {
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
        system.start_agent(&[], extra);
        system
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// (Re)starts lars-dns, on the same port as before if it ran before.
    pub fn start_dns(&mut self) {
        let (dns, port) =
            self.start_central("lars-dns", self.dns_port, "[dns]\nversion_poll_ms = 200\n");
        self.dns_port = port;
        self.dns = Some(dns);
    }

    /// (Re)starts lars-reporter, on the same port as before if it ran before.
    pub fn start_reporter(&mut self) {
        let (reporter, port) = self.start_central("lars-reporter", self.reporter_port, "");
        self.reporter_port = port;
        self.reporter = Some(reporter);
    }

    /// Starts central service `name` on the system's store, listening on `port` (0: the OS
    /// picks) with its metrics endpoint on a port the OS picks and `extra` config sections;
    /// returns it and the port it listens on.
    fn start_central(&self, name: &str, port: u16, extra: &str) -> (Service, u16) {
        let config = self.write(
            &format!("{name}.toml"),
            &format!(
                "[reactor]\nport = {port}\n[metrics]\naddr = \"127.0.0.1:0\"\n[store]\nurl = \"{}\"\n{extra}",
                self.store
            ),
        );
        let service = start(name, &[], &["--config", &config]);
        let addr: SocketAddr = service.field("addr").parse().unwrap();
        (service, addr.port())
    }

    /// Starts an agent under `prefix` (e.g. `["taskset", "-c", "0"]`) with `extra` config lines
    /// in `[agent]`.
    pub fn start_agent(&mut self, prefix: &[&str], extra: &str) {
        self.start_agent_at(prefix, 0, extra);
    }

    /// As [`System::start_agent`], on `base_port` (0: a free range the OS picks).
    pub fn start_agent_at(&mut self, prefix: &[&str], base_port: u16, extra: &str) {
        let config = self.write(
            "agent.toml",
            &format!(
                "[agent]\nbase_port = {base_port}\nstats_addr = \"127.0.0.1:0\"\nreport_interval_ms = 200\nio = \"{}\"\nstate_dir = \"{}\"\n{extra}\n\
                 [dnsserver]\nip = \"127.0.0.1\"\nport = {}\n[reporter]\nip = \"127.0.0.1\"\nport = {}\n",
                self.io,
                self.state_dir().display(),
                self.dns_port,
                self.reporter_port
            ),
        );
        let agent = start("lars-agent", prefix, &["--config", &config]);
        let drivers = drivers_when_ready(agent.field("stats").parse().unwrap());
        if self.io != "auto" {
            assert!(drivers.iter().all(|d| d == self.io), "{drivers:?}");
        }
        self.agent = Some(agent);
    }

    /// The agent's `[agent] state_dir` (its route cache), kept across agent restarts.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn agent(&self) -> &Service {
        self.agent.as_ref().expect("agent running")
    }

    /// A client of the agent with a short timeout.
    pub fn client(&self) -> Client {
        self.client_waiting(Duration::from_millis(500))
    }

    /// A client of the agent whose requests wait `timeout` for their answer.
    pub fn client_waiting(&self, timeout: Duration) -> Client {
        let base_port: u16 = self.agent().field("base_port").parse().unwrap();
        Client::new(ClientConfig {
            base_port,
            timeout,
            ..ClientConfig::default()
        })
        .unwrap()
    }

    /// The agent's counters now.
    pub fn agent_stats(&self) -> Samples {
        self.agent().scrape()
    }

    /// One of the agent's counters, `name` with exactly `labels`; fails the test when absent.
    pub fn stat(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.agent_stats()
            .get(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?}")) as u64
    }

    /// The sum of one of the agent's counters over every label set.
    pub fn stat_sum(&self, name: &str) -> u64 {
        self.agent_stats().sum(name, &[]) as u64
    }

    /// Adds `host` to route `(modid, cmdid)` with `lars route add`.
    pub fn add_host(&self, modid: i32, cmdid: i32, host: HostAddr) {
        self.lars(&[
            "route",
            "add",
            &modid.to_string(),
            &cmdid.to_string(),
            &host.ip.to_string(),
            &host.port.to_string(),
        ]);
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

/// Asks `client` for a host of `(modid, cmdid)` until the agent has the route (its first ask
/// makes the agent pull it from dns); returns the host picked.
pub fn served(client: &mut Client, modid: i32, cmdid: i32) -> HostAddr {
    eventually("the route is served", Duration::from_secs(5), || {
        client.get_host(modid, cmdid).ok()
    })
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

/// One sample of `agent`'s counters with exactly `labels`, 0 when absent.
pub fn agent_stat(agent: &Service, name: &str, labels: &[(&str, &str)]) -> u64 {
    agent.scrape().get(name, labels).unwrap_or(0.0) as u64
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
