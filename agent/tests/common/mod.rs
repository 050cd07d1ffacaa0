//! Process-level harness for the agent's end-to-end tests: the real `lars-dns`, `lars-reporter`,
//! `lars-agent` and `lars` binaries on ports the OS picks, sharing one embedded store.

#![allow(dead_code)]

use lars_agent::stats::{sample, sum};
use lars_store::StoreUrl;
use lars_wire::{Client, ClientConfig};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// Path of a workspace binary, built once per test process so it is never stale.
pub fn binary(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "lars-dns",
                "-p",
                "lars-reporter",
                "-p",
                "lars-tools",
                "--bins",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the service binaries failed");
    });
    if name == "lars-agent" {
        return PathBuf::from(env!("CARGO_BIN_EXE_lars-agent"));
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/e2e-… → target/debug/NAME
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .expect("target dir")
}

/// A running service process, with its stderr collected.
pub struct Service {
    pub name: &'static str,
    child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    /// `key=value` words of the line that said it was serving.
    pub serving: String,
}

impl Service {
    /// Starts `name` with `args` under `prefix` (e.g. `taskset -c 0`) and waits for its
    /// "serving" line.
    pub fn start(name: &'static str, prefix: &[&str], args: &[&str]) -> Service {
        let mut command = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(binary(name));
                c
            }
            None => Command::new(binary(name)),
        };
        let mut child = command
            .args(args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let collected = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                collected.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("serving") => {
                    return Service {
                        name,
                        child,
                        log,
                        serving: line,
                    };
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{name} did not start: {:#?}", log.lock().unwrap());
                }
            }
        }
    }

    /// A `key=value` of the serving line.
    pub fn field(&self, key: &str) -> String {
        let prefix = format!("{key}=");
        self.serving
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{} serving line has no {key}: {}", self.name, self.serving))
            .to_string()
    }

    /// SIGKILL, no goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.signal("-TERM")
    }

    /// SIGINT, and the exit status.
    pub fn interrupt(self) -> std::process::ExitStatus {
        self.signal("-INT")
    }

    fn signal(mut self, signal: &str) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{} did not stop within 15 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
}

impl System {
    /// Starts dns and reporter (on OS-chosen ports) and an agent pointed at them.
    pub fn start() -> System {
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
                "[reactor]\nport = {}\n[store]\nurl = \"{}\"\n[dns]\nversion_poll_ms = 200\n",
                self.dns_port, self.store
            ),
        );
        let dns = Service::start("lars-dns", &[], &["--config", &config]);
        let addr: SocketAddr = dns.field("addr").parse().unwrap();
        self.dns_port = addr.port();
        self.dns = Some(dns);
    }

    /// (Re)starts lars-reporter, on the same port as before if it ran before.
    pub fn start_reporter(&mut self) {
        let config = self.write(
            "reporter.toml",
            &format!(
                "[reactor]\nport = {}\n[store]\nurl = \"{}\"\n",
                self.reporter_port, self.store
            ),
        );
        let reporter = Service::start("lars-reporter", &[], &["--config", &config]);
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
                "[agent]\nbase_port = 0\nstats_addr = \"127.0.0.1:0\"\nreport_interval_ms = 200\n{extra}\n\
                 [dnsserver]\nip = \"127.0.0.1\"\nport = {}\n[reporter]\nip = \"127.0.0.1\"\nport = {}\n",
                self.dns_port, self.reporter_port
            ),
        );
        self.agent = Some(Service::start("lars-agent", prefix, &["--config", &config]));
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
