//! Lars across hosts, each host a Linux network namespace with its own IPv4 address on one
//! private bridge: lars-dns and lars-reporter (on one SQLite store) in one namespace, a
//! lars-agent in each of three others, and callers driven with the `lars` CLI inside each agent's
//! namespace. Each agent's statistics arrive in `ServerCallStatus` under its own address as
//! `caller`; a route change made with `lars route add` reaches all three agents; and cutting one
//! host's link fails nothing on the others. Needs root (the test command runs as root); skipped,
//! saying why, only where `ip netns` is not permitted.
//!
//! The test talks to each namespace from a thread that has joined it (`setns`): processes it
//! starts there run inside it, and it reads their metrics endpoints on the namespace's loopback.
//! Every namespace is deleted when the test ends, passed or failed ([`Lab`]), and leftovers of
//! earlier runs whose process is gone are deleted when it starts.

use lars_service::testing::{ServiceProcess, eventually, workspace_binary};
use lars_store::testing::TestDb;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Every namespace of this test is called `PREFIX<pid>-<host>`.
const PREFIX: &str = "larsmh-";

/// The private test subnet: only these addresses, inside the test's namespaces, are ever used.
const CENTRAL: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 1);

fn agent_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 1, 10 + i as u8)
}

/// Route (7, 1)'s hosts (never called: the agents only hand them out).
fn route_host(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 1, last)
}

/// Runs `ip ARGS`; the error output when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    ip(args).unwrap_or_else(|e| panic!("{e}"));
}

/// The network namespaces of one test run, deleted (with every veth and bridge in them) on drop.
struct Lab {
    prefix: String,
    names: Vec<String>,
}

impl Lab {
    /// An empty lab, after deleting the namespaces of earlier runs whose process is gone; `None`
    /// when this process may not create namespaces.
    fn new() -> Option<Lab> {
        let listed = Command::new("ip").args(["netns", "list"]).output();
        let listed = listed.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        for name in listed
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
        {
            let Some(pid) = name.strip_prefix(PREFIX).and_then(|r| r.split('-').next()) else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = ip(&["netns", "del", name]);
            }
        }
        let mut lab = Lab {
            prefix: format!("{PREFIX}{}-", std::process::id()),
            names: Vec::new(),
        };
        match lab.add("c") {
            Ok(_) => Some(lab),
            Err(e) if e.contains("not permitted") || e.contains("Permission denied") => {
                eprintln!(
                    "skipping the multi-host test: `ip netns add` is not permitted here ({e})"
                );
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// Creates namespace `host` with its loopback up; its full name.
    fn add(&mut self, host: &str) -> Result<String, String> {
        let name = format!("{}{host}", self.prefix);
        ip(&["netns", "add", &name])?;
        self.names.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            if let Err(e) = ip(&["netns", "del", name]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Runs `f` on a thread that has joined network namespace `ns`: sockets it opens and processes
/// it starts live there.
fn in_ns<R: Send>(ns: &str, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        let joined = scope.spawn(|| {
            let path = format!("/run/netns/{ns}");
            let handle = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            rustix::thread::move_into_link_name_space(
                handle.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap_or_else(|e| panic!("join network namespace {ns}: {e}"));
            f()
        });
        joined
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn lars() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lars"))
}

fn binary(package: &str) -> PathBuf {
    workspace_binary(env!("CARGO_MANIFEST_DIR"), package, package)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One agent's host: its namespace, address and process.
struct AgentHost {
    ns: String,
    ip: Ipv4Addr,
    agent: ServiceProcess,
}

impl AgentHost {
    /// `lars --agent IP --base-port P ARGS`, run inside the agent's namespace.
    fn lars(&self, args: &[&str]) -> Output {
        let ip = self.ip.to_string();
        let base_port = self.agent.field("base_port");
        let global = [
            "--agent",
            &ip,
            "--base-port",
            &base_port,
            "--timeout-ms",
            "1000",
        ];
        let args: Vec<&str> = global.iter().copied().chain(args.iter().copied()).collect();
        in_ns(&self.ns, || {
            Command::new(lars()).args(&args).output().expect("run lars")
        })
    }

    /// Waits until route (7, 1) as the agent serves it holds `host`.
    fn wait_for_host(&self, host: Ipv4Addr, within: Duration) {
        let want = format!("{host}:9000");
        let what = format!("agent {} to serve {want} for (7, 1)", self.ip);
        eventually(&what, within, || {
            let out = self.lars(&["getroute", "7", "1"]);
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&want)
        });
    }

    /// A caller on this host asks for a host of route (7, 1), and reports a successful call to
    /// `host`.
    fn call(&self, host: Ipv4Addr) {
        let out = self.lars(&["gethost", "7", "1"]);
        assert!(
            out.status.success(),
            "gethost on {}: {}",
            self.ip,
            text(&out)
        );
        let out = self.lars(&["report", "7", "1", &host.to_string(), "9000", "0"]);
        assert!(
            out.status.success(),
            "report on {}: {}",
            self.ip,
            text(&out)
        );
    }
}

/// Waits until `ServerCallStatus` holds a row for route (7, 1), `host`:9000 and `caller`.
fn wait_for_status(db: &TestDb, host: Ipv4Addr, caller: Ipv4Addr, within: Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = runtime.block_on(db.open()).expect("open the store");
    let what = format!("statistics of {host}:9000 from caller {caller} in ServerCallStatus");
    eventually(&what, within, || {
        let rows = runtime
            .block_on(store.load_call_status(Some(7), Some(1)))
            .unwrap_or_default();
        rows.iter()
            .any(|r| r.ip == u32::from(host) && r.port == 9000 && r.caller == u32::from(caller))
    });
}

fn add_route_host(db: &TestDb, host: Ipv4Addr) {
    let url = db.url_string();
    let out = Command::new(lars())
        .args([
            "route",
            "add",
            "7",
            "1",
            &host.to_string(),
            "9000",
            "--store",
            &url,
        ])
        .output()
        .expect("run lars route add");
    assert!(out.status.success(), "lars route add: {}", text(&out));
}

fn write_config(dir: &Path, name: &str, text: String) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn three_agent_hosts_report_as_themselves_get_route_changes_and_survive_a_cut_link() {
    let Some(mut lab) = Lab::new() else { return };
    let central = lab.names[0].clone();
    must(&["-n", &central, "link", "add", "br0", "type", "bridge"]);
    must(&[
        "-n",
        &central,
        "addr",
        "add",
        &format!("{CENTRAL}/24"),
        "dev",
        "br0",
    ]);
    must(&["-n", &central, "link", "set", "br0", "up"]);
    let mut agent_ns = Vec::new();
    for i in 1..=3 {
        let ns = lab.add(&format!("a{i}")).unwrap_or_else(|e| panic!("{e}"));
        let bridge_end = format!("va{i}");
        must(&[
            "-n",
            &central,
            "link",
            "add",
            &bridge_end,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ]);
        must(&[
            "-n",
            &central,
            "link",
            "set",
            &bridge_end,
            "master",
            "br0",
            "up",
        ]);
        must(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", agent_ip(i)),
            "dev",
            "eth0",
        ]);
        must(&["-n", &ns, "link", "set", "eth0", "up"]);
        agent_ns.push(ns);
    }

    let db = TestDb::sqlite();
    add_route_host(&db, route_host(201));
    let dir = tempfile::tempdir().unwrap();
    let store = db.url_string();
    // A central service on the central namespace's address, a port and a metrics port the OS
    // picks, the shared store and `extra` sections.
    let central_config = |file: &str, extra: &str| {
        write_config(
            dir.path(),
            file,
            format!(
                "[reactor]\nip = \"{CENTRAL}\"\nport = 0\nallowed_peers = [\"{CENTRAL}/24\"]\n[metrics]\naddr = \"127.0.0.1:0\"\n\
                 [store]\nurl = \"{store}\"\n{extra}"
            ),
        )
    };
    let dns_config = central_config("lars_dns.toml", "[dns]\nversion_poll_ms = 100\n");
    let reporter_config = central_config("lars_reporter.toml", "[reporter]\nflush_ms = 50\n");
    let (dns_bin, reporter_bin, agent_bin) = (
        binary("lars-dns"),
        binary("lars-reporter"),
        binary("lars-agent"),
    );
    let dns = in_ns(&central, || {
        ServiceProcess::start(&dns_bin, &[], &["--config", &dns_config])
    });
    let reporter = in_ns(&central, || {
        ServiceProcess::start(&reporter_bin, &[], &["--config", &reporter_config])
    });
    let port = |service: &ServiceProcess| {
        let addr = service.field("addr");
        addr.rsplit(':').next().unwrap_or_default().to_string()
    };
    let (dns_port, reporter_port) = (port(&dns), port(&reporter));

    let mut hosts = Vec::new();
    for (i, ns) in agent_ns.iter().enumerate() {
        let ip = agent_ip(i + 1);
        let config = write_config(
            dir.path(),
            &format!("lars_agent_{}.toml", i + 1),
            format!(
                "[agent]\nip = \"{ip}\"\nbase_port = 0\nstats_addr = \"127.0.0.1:0\"\n\
                 report_interval_ms = 200\n\
                 [dnsserver]\nip = \"{CENTRAL}\"\nport = {dns_port}\n\
                 [reporter]\nip = \"{CENTRAL}\"\nport = {reporter_port}\n"
            ),
        );
        let agent = in_ns(ns, || {
            ServiceProcess::start(&agent_bin, &[], &["--config", &config])
        });
        hosts.push(AgentHost {
            ns: ns.clone(),
            ip,
            agent,
        });
    }

    // Every agent serves the route (asking the dns over the bridge) and reports a call; the
    // reporter stores each agent's statistics under the agent's own address.
    for host in &hosts {
        host.wait_for_host(route_host(201), Duration::from_secs(20));
        host.call(route_host(201));
    }
    for host in &hosts {
        wait_for_status(&db, route_host(201), host.ip, Duration::from_secs(20));
    }

    // A route change reaches all three.
    add_route_host(&db, route_host(202));
    for host in &hosts {
        host.wait_for_host(route_host(202), Duration::from_secs(2));
    }

    // The third host's link goes down: the others keep answering, keep getting route changes,
    // and their statistics keep arriving.
    must(&["-n", &hosts[2].ns, "link", "set", "eth0", "down"]);
    add_route_host(&db, route_host(203));
    for host in &hosts[..2] {
        host.wait_for_host(route_host(203), Duration::from_secs(2));
        host.call(route_host(203));
    }
    for host in &hosts[..2] {
        wait_for_status(&db, route_host(203), host.ip, Duration::from_secs(20));
    }
    // The services themselves are still up.
    drop(hosts);
    assert!(in_ns(&central, || reporter.terminate()).success());
    assert!(in_ns(&central, || dns.terminate()).success());
    drop(lab);
}
