//! The agent's settings: `[agent]` (shards, ports, cores, intervals), `[dnsserver]` and
//! `[reporter]` (Lars' sections for the uplinks' addresses), `[uplink]` (reconnect backoff) and
//! `[loadbalance]` ([`LbSettings`]). Defaults equal the shipped `conf/lars_agent.toml`; a file is
//! checked whole before anything starts, and errors name the file, key and reason.

use crate::lb::LbSettings;
use lars_service::ConfigError;
use lars_service::config::{at_least_one, load_config};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

/// Most shards (UDP ports) an agent may serve.
pub const MAX_SHARDS: u16 = 64;

/// The data plane (`[agent]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataPlaneConfig {
    /// Address the shards' UDP sockets bind to.
    pub ip: IpAddr,
    /// UDP port of shard 0; shard `i` listens on `base_port + i`. 0 picks a free range and logs it.
    pub base_port: u16,
    /// Number of shards (UDP ports); a key goes to shard `(modid + cmdid) % shards`.
    pub shards: u16,
    /// CPUs to run workers on; empty means every CPU the process may run on (its affinity mask).
    pub cores: Vec<usize>,
    /// The workers' I/O runtime.
    pub io: IoRuntime,
    /// Receives kept in flight per shard socket (the `tokio-uring` runtime; the `io-uring` one
    /// keeps one multishot receive per socket).
    pub recv_depth: usize,
    /// How often each route's statistics may be sent to the reporter, in milliseconds.
    pub report_interval_ms: u64,
    /// Capacity of each ring between a worker and an uplink.
    pub ring_capacity: usize,
    /// Where the counters are served in the Prometheus text format ("" to disable; port 0 picks
    /// a free port and logs it). `lars agent-stats` reads it.
    pub stats_addr: String,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        DataPlaneConfig {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: 8888,
            shards: 3,
            cores: Vec::new(),
            io: IoRuntime::default(),
            recv_depth: 16,
            report_interval_ms: 1000,
            ring_capacity: 16384,
            stats_addr: "127.0.0.1:8890".to_string(),
        }
    }
}

/// Which io_uring runtime the workers run (`[agent] io`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IoRuntime {
    /// `"tokio-uring"`: tokio-uring's runtime, with `recv_depth` receive tasks per socket. The
    /// default until the `io-uring` loop passed every agent test and measured better (fewer
    /// agent µs per request, more throughput: perf/RESULTS.md); kept to compare against.
    TokioUring,
    /// `"io-uring"` (the default): the hand-written loop of `io::uring` on the `io-uring` crate:
    /// one multishot receive per socket from a provided-buffer ring, one `io_uring_enter` per
    /// round, no epoll.
    #[default]
    IoUring,
}

/// A TCP peer of the agent (`[dnsserver]`, `[reporter]`, Lars' names).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Host name or address.
    pub ip: String,
    /// TCP port.
    pub port: u16,
    /// More `host:port` addresses to fail over to, tried in order after `ip:port`.
    #[serde(default)]
    pub backups: Vec<String>,
}

/// Reconnect behaviour of both uplinks (`[uplink]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkConfig {
    /// First wait after a failure, in milliseconds.
    pub reconnect_min_ms: u64,
    /// Longest wait between tries, in milliseconds.
    pub reconnect_max_ms: u64,
    /// How long one connection attempt may take, in milliseconds.
    pub connect_timeout_ms: u64,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            reconnect_min_ms: 100,
            reconnect_max_ms: 1000,
            connect_timeout_ms: 2000,
        }
    }
}

/// Everything `lars-agent` can be told.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// `[agent]`.
    pub agent: DataPlaneConfig,
    /// `[dnsserver]`.
    pub dnsserver: PeerConfig,
    /// `[reporter]`.
    pub reporter: PeerConfig,
    /// `[uplink]`.
    pub uplink: UplinkConfig,
    /// `[loadbalance]`.
    pub loadbalance: LbSettings,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            agent: DataPlaneConfig::default(),
            dnsserver: PeerConfig {
                ip: "127.0.0.1".to_string(),
                port: 7778,
                backups: Vec::new(),
            },
            reporter: PeerConfig {
                ip: "127.0.0.1".to_string(),
                port: 7779,
                backups: Vec::new(),
            },
            uplink: UplinkConfig::default(),
            loadbalance: LbSettings::default(),
        }
    }
}

impl AgentConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let config: AgentConfig = load_config(path)?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Checks what the types alone do not.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let a = &self.agent;
        at_least_one(origin, "agent.shards", u64::from(a.shards))?;
        if a.shards > MAX_SHARDS {
            return Err(ConfigError::invalid(
                origin,
                "agent.shards",
                format!("at most {MAX_SHARDS}"),
            ));
        }
        if a.base_port != 0 && u32::from(a.base_port) + u32::from(a.shards) - 1 > 65535 {
            return Err(ConfigError::invalid(
                origin,
                "agent.base_port",
                format!(
                    "base_port + shards - 1 must be at most 65535 (shards = {})",
                    a.shards
                ),
            ));
        }
        at_least_one(origin, "agent.recv_depth", a.recv_depth as u64)?;
        at_least_one(origin, "agent.report_interval_ms", a.report_interval_ms)?;
        if a.ring_capacity < 16 {
            return Err(ConfigError::invalid(
                origin,
                "agent.ring_capacity",
                "must be at least 16",
            ));
        }
        if !a.stats_addr.is_empty() && a.stats_addr.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                origin,
                "agent.stats_addr",
                format!("`{}` is not ip:port (or \"\" to disable)", a.stats_addr),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for &core in &a.cores {
            if !seen.insert(core) {
                return Err(ConfigError::invalid(
                    origin,
                    "agent.cores",
                    format!("CPU {core} is listed twice"),
                ));
            }
        }
        at_least_one(
            origin,
            "uplink.reconnect_min_ms",
            self.uplink.reconnect_min_ms,
        )?;
        at_least_one(
            origin,
            "uplink.connect_timeout_ms",
            self.uplink.connect_timeout_ms,
        )?;
        if self.uplink.reconnect_max_ms < self.uplink.reconnect_min_ms {
            return Err(ConfigError::invalid(
                origin,
                "uplink.reconnect_max_ms",
                "must be at least uplink.reconnect_min_ms",
            ));
        }
        peer_addrs(&self.dnsserver).map_err(|r| ConfigError::invalid(origin, "dnsserver", r))?;
        peer_addrs(&self.reporter).map_err(|r| ConfigError::invalid(origin, "reporter", r))?;
        self.loadbalance.validate(origin)
    }

    /// The dns addresses to try, in order.
    pub fn dns_addrs(&self) -> Vec<SocketAddr> {
        peer_addrs(&self.dnsserver).unwrap_or_default()
    }

    /// The reporter addresses to try, in order.
    pub fn reporter_addrs(&self) -> Vec<SocketAddr> {
        peer_addrs(&self.reporter).unwrap_or_default()
    }

    /// How often statistics go out.
    pub fn report_interval(&self) -> Duration {
        Duration::from_millis(self.agent.report_interval_ms)
    }
}

/// Resolves `ip:port` and the backups, naming the first that does not resolve.
fn peer_addrs(peer: &PeerConfig) -> Result<Vec<SocketAddr>, String> {
    let mut names = vec![format!("{}:{}", peer.ip, peer.port)];
    names.extend(peer.backups.iter().cloned());
    let mut addrs = Vec::new();
    for name in names {
        let resolved = name
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{name}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`{name}` resolves to no address"))?;
        addrs.push(resolved);
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, String> {
        let config: AgentConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate("test.toml").map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn the_shipped_file_equals_the_built_in_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/lars_agent.toml");
        let shipped = AgentConfig::load(&path).expect("conf/lars_agent.toml loads");
        assert_eq!(shipped, AgentConfig::default());
    }

    #[test]
    fn the_io_runtime_is_named_like_its_crate() {
        assert_eq!(parse("").unwrap().agent.io, IoRuntime::IoUring);
        let config = parse("[agent]\nio = \"io-uring\"\n").unwrap();
        assert_eq!(config.agent.io, IoRuntime::IoUring);
        let config = parse("[agent]\nio = \"tokio-uring\"\n").unwrap();
        assert_eq!(config.agent.io, IoRuntime::TokioUring);
        assert!(parse("[agent]\nio = \"epoll\"\n").is_err());
    }

    #[test]
    fn lars_sections_and_keys_are_read() {
        let config = parse(
            "[dnsserver]\nip = \"127.0.0.1\"\nport = 17778\nbackups = [\"127.0.0.1:17779\"]\n\
             [loadbalance]\nprobe_num = 5\n",
        )
        .unwrap();
        assert_eq!(config.dns_addrs().len(), 2);
        assert_eq!(config.loadbalance.probe_num, 5);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[agent]\nshards = 0\n", "agent.shards"),
            ("[agent]\nshards = 65\n", "agent.shards"),
            ("[agent]\nbase_port = 65535\n", "agent.base_port"),
            ("[agent]\nstats_addr = \"localhost\"\n", "agent.stats_addr"),
            ("[agent]\ncores = [0, 0]\n", "agent.cores"),
            (
                "[uplink]\nreconnect_max_ms = 1\n",
                "uplink.reconnect_max_ms",
            ),
            (
                "[dnsserver]\nip = \"no such host\"\nport = 1\n",
                "dnsserver",
            ),
            ("[agent]\nshard = 3\n", "shard"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
