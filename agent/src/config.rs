//! The agent's settings: `[agent]` (shards, ports, cores, intervals), `[dnsserver]` and
//! `[reporter]` (Lars' sections for the uplinks' addresses), `[uplink]` (reconnect backoff and liveness) and
//! `[loadbalance]` ([`LbSettings`]). Defaults equal the shipped `conf/lars_agent.toml`; a file is
//! checked whole before anything starts, and errors name the file, key and reason.

use crate::clock::Millis;
use crate::lb::{LbSettings, TableLimits};
use lars_service::ConfigError;
use lars_service::config::{at_least_one, load_config};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

/// Most shards (UDP ports) an agent may serve.
pub const MAX_SHARDS: u16 = 64;

/// Where a packaged agent keeps its state (the FHS place for a service's state, and systemd's
/// `StateDirectory=lars-agent`); `run_lars` passes its run directory with `--state-dir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/lars-agent";

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
    /// The workers' I/O driver.
    pub io: DriverChoice,
    /// How often each route's statistics may be sent to the reporter, in milliseconds.
    pub report_interval_ms: u64,
    /// Capacity of each ring between a worker and an uplink.
    pub ring_capacity: usize,
    /// Where the counters are served in the Prometheus text format ("" to disable; port 0 picks
    /// a free port and logs it). `lars agent-stats` reads it.
    pub stats_addr: String,
    /// Directory of the agent's state: its route cache (`routes.cache`, see [`crate::cache`]),
    /// which a restarted agent serves from before lars-dns answers. "" turns the cache off.
    pub state_dir: String,
    /// Least time between two writes of the route cache, in milliseconds; it is written only
    /// when routes changed (and at a clean stop).
    pub cache_interval_ms: u64,
    /// A route cache written longer ago than this, in seconds, is not used at start: the
    /// routes it holds are too old to trust.
    pub cache_max_age_secs: u64,
    /// Most routes the agent holds, split evenly over its shards (`max_routes / shards` per
    /// shard, rounded down); beyond it a shard answers an unknown key NOEXIST without holding it
    /// or asking dns. At least `shards`. The default's size is in `conf/lars_agent.toml`.
    pub max_routes: usize,
    /// A route with hosts that no caller asked for within this many seconds is dropped (and
    /// unsubscribed); negative-cache entries go after `loadbalance.update_timeout`. At least
    /// twice `loadbalance.update_timeout`.
    pub route_idle_ttl_secs: u64,
    /// Whether the shards answer the fast path's messages (route views and report batches, see
    /// `docs/PROTOCOL.md`). Off: they are dropped unanswered and counted, and fast-path callers
    /// fall back to the classic per-call messages after one timeout.
    pub fast_path: bool,
}

/// The default `max_routes`: about 100 MB of routes at the bytes a held route costs with a few
/// hosts, its dns subscription included (measured by `lb::table`'s
/// `a_held_route_costs_what_the_default_cap_assumes`; see `conf/lars_agent.toml`).
pub const DEFAULT_MAX_ROUTES: usize = 150_000;

/// The default `route_idle_ttl_secs`: ten minutes, forty times the default `update_timeout`, so
/// a route used now and then (a cron job's) stays held.
pub const DEFAULT_ROUTE_IDLE_TTL_SECS: u64 = 600;

impl Default for DataPlaneConfig {
    fn default() -> Self {
        DataPlaneConfig {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: 8888,
            shards: 3,
            cores: Vec::new(),
            io: DriverChoice::default(),
            report_interval_ms: 1000,
            ring_capacity: 16384,
            stats_addr: "127.0.0.1:8890".to_string(),
            state_dir: DEFAULT_STATE_DIR.to_string(),
            cache_interval_ms: 10_000,
            cache_max_age_secs: 24 * 60 * 60,
            max_routes: DEFAULT_MAX_ROUTES,
            route_idle_ttl_secs: DEFAULT_ROUTE_IDLE_TTL_SECS,
            fast_path: true,
        }
    }
}

impl DataPlaneConfig {
    /// One shard table's limits: its share of `max_routes`, and `route_idle_ttl_secs`.
    pub fn table_limits(&self) -> TableLimits {
        TableLimits {
            max_routes: (self.max_routes / usize::from(self.shards.max(1))).max(1),
            idle_ttl: Millis::from_secs(self.route_idle_ttl_secs),
        }
    }
}

/// Which I/O driver the workers run (`[agent] io`): see the `io` module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DriverChoice {
    /// `"auto"` (the default): `io-uring` when io_uring can be set up here (probed once at
    /// start), else `portable`, with one warning naming why.
    #[default]
    Auto,
    /// `"io-uring"`: the hand-written io_uring loop (Linux 6.1); the agent does not start when
    /// it cannot be set up.
    IoUring,
    /// `"portable"`: non-blocking sockets on epoll with `recvmmsg`/`sendmmsg`.
    Portable,
}

impl DriverChoice {
    /// The values `[agent] io` accepts, as written in the config.
    pub const NAMES: [&'static str; 3] = ["auto", "io-uring", "portable"];
}

impl std::str::FromStr for DriverChoice {
    type Err = String;

    fn from_str(value: &str) -> Result<DriverChoice, String> {
        match value {
            "auto" => Ok(DriverChoice::Auto),
            "io-uring" => Ok(DriverChoice::IoUring),
            "portable" => Ok(DriverChoice::Portable),
            other => Err(format!(
                "`{other}` is not an I/O driver; `io` must be one of {}",
                DriverChoice::NAMES.map(|n| format!("\"{n}\"")).join(", ")
            )),
        }
    }
}

impl<'de> Deserialize<'de> for DriverChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        value.parse().map_err(serde::de::Error::custom)
    }
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

/// Reconnect and liveness behaviour of both uplinks (`[uplink]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkConfig {
    /// First wait after a failure, in milliseconds.
    pub reconnect_min_ms: u64,
    /// Longest wait between tries, in milliseconds.
    pub reconnect_max_ms: u64,
    /// How long one connection attempt may take, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long the dns uplink waits for any frame from lars-dns while one of its requests is
    /// unanswered before it calls the peer dead and fails over, in milliseconds.
    pub answer_timeout_ms: u64,
    /// How long the dns uplink lets the connection be silent before it asks lars-dns for a
    /// held route to prove it still answers, in milliseconds.
    pub probe_interval_ms: u64,
    /// How long a write to either peer may make no progress (its receive window closed: the
    /// peer stopped reading) before the uplink calls the peer dead and fails over, in
    /// milliseconds.
    pub write_stall_timeout_ms: u64,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            reconnect_min_ms: 100,
            reconnect_max_ms: 1000,
            connect_timeout_ms: 2000,
            // lars-dns answers from memory in well under a millisecond, so a healthy dns is
            // never near this; 3 s outlasts three lost segments in a row (Linux retransmits
            // after 0.2, 0.4 and 0.8 s more) and stays far below `update_timeout` (15 s), the
            // wait for an answer this replaces.
            answer_timeout_ms: 3000,
            // A probe is one ~10-byte request: every 5 s from each of thousands of agents is
            // noise for dns, and a hung dns is left within 5 + 3 s, half of `update_timeout`.
            probe_interval_ms: 5000,
            // A reading peer reopens its window within one round trip; 5 s of a closed window
            // outlasts the retransmits of a lossy link (0.2 + 0.4 + 0.8 + 1.6 s) and any pause
            // of a working peer.
            write_stall_timeout_ms: 5000,
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
        at_least_one(origin, "agent.cache_interval_ms", a.cache_interval_ms)?;
        at_least_one(origin, "agent.cache_max_age_secs", a.cache_max_age_secs)?;
        if a.max_routes < usize::from(a.shards) {
            return Err(ConfigError::invalid(
                origin,
                "agent.max_routes",
                format!(
                    "{} is less than one route per shard (shards = {})",
                    a.max_routes, a.shards
                ),
            ));
        }
        let update_timeout = self.loadbalance.update_timeout;
        if a.route_idle_ttl_secs < update_timeout.saturating_mul(2) {
            return Err(ConfigError::invalid(
                origin,
                "agent.route_idle_ttl_secs",
                format!(
                    "{} s is less than twice loadbalance.update_timeout ({update_timeout} s): \
                     a route in use would be dropped between two dns re-asks",
                    a.route_idle_ttl_secs
                ),
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
        for (key, value) in [
            ("uplink.answer_timeout_ms", self.uplink.answer_timeout_ms),
            ("uplink.probe_interval_ms", self.uplink.probe_interval_ms),
            (
                "uplink.write_stall_timeout_ms",
                self.uplink.write_stall_timeout_ms,
            ),
        ] {
            at_least_one(origin, key, value)?;
        }
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

    /// Where the route cache file is, if the cache is on.
    pub fn cache_path(&self) -> Option<std::path::PathBuf> {
        (!self.agent.state_dir.is_empty())
            .then(|| Path::new(&self.agent.state_dir).join(crate::cache::FILE_NAME))
    }

    /// Least time between two route cache writes.
    pub fn cache_interval(&self) -> Duration {
        Duration::from_millis(self.agent.cache_interval_ms)
    }

    /// Age beyond which a route cache is not used.
    pub fn cache_max_age(&self) -> Duration {
        Duration::from_secs(self.agent.cache_max_age_secs)
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
    fn the_io_driver_is_auto_io_uring_or_portable() {
        assert_eq!(parse("").unwrap().agent.io, DriverChoice::Auto);
        for (name, choice) in [
            ("auto", DriverChoice::Auto),
            ("io-uring", DriverChoice::IoUring),
            ("portable", DriverChoice::Portable),
        ] {
            let config = parse(&format!("[agent]\nio = \"{name}\"\n")).unwrap();
            assert_eq!(config.agent.io, choice);
        }
        for old in ["epoll", "tokio-uring"] {
            let err = parse(&format!("[agent]\nio = \"{old}\"\n")).unwrap_err();
            assert!(
                err.contains("io")
                    && err.contains(old)
                    && DriverChoice::NAMES.iter().all(|n| err.contains(n)),
                "{err}"
            );
        }
    }

    #[test]
    fn the_route_cache_is_under_state_dir_and_off_when_it_is_empty() {
        let config = parse("[agent]\nstate_dir = \"/tmp/x\"\n").unwrap();
        assert_eq!(
            config.cache_path(),
            Some(std::path::PathBuf::from("/tmp/x/routes.cache"))
        );
        assert_eq!(
            parse("[agent]\nstate_dir = \"\"\n").unwrap().cache_path(),
            None
        );
        let defaults = AgentConfig::default();
        assert_eq!(defaults.cache_interval(), Duration::from_secs(10));
        assert_eq!(defaults.cache_max_age(), Duration::from_secs(86_400));
    }

    #[test]
    fn max_routes_is_split_over_the_shards() {
        let config =
            parse("[agent]\nshards = 3\nmax_routes = 10000\nroute_idle_ttl_secs = 30\n").unwrap();
        let limits = config.agent.table_limits();
        assert_eq!(limits.max_routes, 3333);
        assert_eq!(limits.idle_ttl, Millis::from_secs(30));
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
            ("[agent]\nshards = 4\nmax_routes = 3\n", "agent.max_routes"),
            (
                "[agent]\nroute_idle_ttl_secs = 29\n",
                "agent.route_idle_ttl_secs",
            ),
            (
                "[agent]\nroute_idle_ttl_secs = 60\n[loadbalance]\nupdate_timeout = 31\n",
                "agent.route_idle_ttl_secs",
            ),
            (
                "[uplink]\nreconnect_max_ms = 1\n",
                "uplink.reconnect_max_ms",
            ),
            (
                "[uplink]\nanswer_timeout_ms = 0\n",
                "uplink.answer_timeout_ms",
            ),
            (
                "[uplink]\nprobe_interval_ms = 0\n",
                "uplink.probe_interval_ms",
            ),
            (
                "[uplink]\nwrite_stall_timeout_ms = 0\n",
                "uplink.write_stall_timeout_ms",
            ),
            (
                "[dnsserver]\nip = \"no such host\"\nport = 1\n",
                "dnsserver",
            ),
            ("[agent]\nshard = 3\n", "shard"),
            ("[agent]\nrecv_depth = 16\n", "recv_depth"),
            (
                "[agent]\ncache_interval_ms = 0\n",
                "agent.cache_interval_ms",
            ),
            (
                "[agent]\ncache_max_age_secs = 0\n",
                "agent.cache_max_age_secs",
            ),
            ("[agent]\nstate_dir = 3\n", "state_dir"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
