//! The `[reactor]` section every Lars service has, under Lars' own key names: the address and
//! port it listens on, how many connections it serves at once and how many runtime threads serve
//! them, which peers may connect (`allowed_peers`, loopback only by default), and the
//! connection hygiene limits ([`crate::admission`]: read deadlines, connections per peer, bytes
//! of unfinished frames). Owns their defaults and their checks; a service only names its
//! default port. Plain data: never binds a socket or starts a thread.

use super::{ConfigError, at_least_one};
use crate::admission::Limits;
use crate::peers::AllowedPeers;
use serde::{Deserialize, Deserializer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Listening socket, connection limit and worker threads (`[reactor]`, Lars' names) of a service
/// whose built-in port is `DEFAULT_PORT`.
#[derive(Debug, Clone)]
pub struct ReactorConfig<const DEFAULT_PORT: u16> {
    /// Address to listen on.
    pub ip: IpAddr,
    /// TCP port to listen on (0 lets the OS pick one; the service logs it).
    pub port: u16,
    /// Most connections served at once; past it a new connection evicts an idle one or is
    /// accepted and closed at once (see [`crate::admission`]).
    pub max_conn: usize,
    /// Runtime worker threads (0: one per CPU).
    pub thread_num: usize,

    // Who may connect (`lars_service::peers`).
    /// The networks connections are accepted from; others are closed at once.
    pub allowed_peers: AllowedPeers,
    /// Connection hygiene (see [`crate::admission`]).
    pub hygiene: HygieneConfig,
}

/// The connection hygiene keys of `[reactor]`: how long a frame may take, how long a connection
/// may go without one, and how many connections and unfinished-frame bytes peers may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HygieneConfig {
    /// `frame_timeout_ms`: longest a frame may take from its first byte to its last.
    pub frame_timeout_ms: u64,
    /// `idle_timeout_ms`: longest a connection may go without sending a complete frame.
    pub idle_timeout_ms: u64,
    /// `max_conn_per_peer`: most connections open at once from one IP.
    pub max_conn_per_peer: usize,
    /// `max_pending_bytes`: most bytes of unfinished frames held over all connections.
    pub max_pending_bytes: usize,
}

impl Default for HygieneConfig {
    fn default() -> Self {
        HygieneConfig {
            // A frame is at most 64 KiB: seconds even on a slow WAN link.
            frame_timeout_ms: 10_000,
            // Four times the agent's 15 s route re-ask, twelve times its 5 s idle probe.
            idle_timeout_ms: 60_000,
            max_conn_per_peer: 64,
            // 64 full-size unfinished frames.
            max_pending_bytes: 4 << 20,
        }
    }
}

/// The keys of `[reactor]` as written, each optional. serde's derive cannot take the const
/// parameter of [`ReactorConfig`], so it reads this and fills in the defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReactorKeys {
    ip: Option<IpAddr>,
    port: Option<u16>,
    #[serde(rename = "maxConn")]
    max_conn: Option<usize>,
    #[serde(rename = "threadNum")]
    thread_num: Option<usize>,

    // Who may connect.
    allowed_peers: Option<AllowedPeers>,
    frame_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_conn_per_peer: Option<usize>,
    max_pending_bytes: Option<usize>,
}

impl<'de, const DEFAULT_PORT: u16> Deserialize<'de> for ReactorConfig<DEFAULT_PORT> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let keys = ReactorKeys::deserialize(deserializer)?;
        let defaults = Self::default();
        let d = defaults.hygiene;
        Ok(ReactorConfig {
            ip: keys.ip.unwrap_or(defaults.ip),
            port: keys.port.unwrap_or(defaults.port),
            max_conn: keys.max_conn.unwrap_or(defaults.max_conn),
            thread_num: keys.thread_num.unwrap_or(defaults.thread_num),

            allowed_peers: keys.allowed_peers.unwrap_or(defaults.allowed_peers),
            hygiene: HygieneConfig {
                frame_timeout_ms: keys.frame_timeout_ms.unwrap_or(d.frame_timeout_ms),
                idle_timeout_ms: keys.idle_timeout_ms.unwrap_or(d.idle_timeout_ms),
                max_conn_per_peer: keys.max_conn_per_peer.unwrap_or(d.max_conn_per_peer),
                max_pending_bytes: keys.max_pending_bytes.unwrap_or(d.max_pending_bytes),
            },
        })
    }
}

impl<const DEFAULT_PORT: u16> Default for ReactorConfig<DEFAULT_PORT> {
    fn default() -> Self {
        ReactorConfig {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            max_conn: 4096,
            thread_num: 0,

            allowed_peers: AllowedPeers::loopback(),
            hygiene: HygieneConfig::default(),
        }
    }
}

impl<const DEFAULT_PORT: u16> ReactorConfig<DEFAULT_PORT> {
    /// Checks ranges that the types alone do not; an error names `origin` and `reactor.KEY`.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        at_least_one(origin, "reactor.maxConn", self.max_conn as u64)?;

        if self.allowed_peers.is_empty() {
            return Err(ConfigError::invalid(
                origin,
                crate::peers::KEY,
                "lists no network, so no agent could connect; to allow every peer write \
                 [\"0.0.0.0/0\", \"::/0\"]",
            ));
        }
        let h = &self.hygiene;
        at_least_one(origin, "reactor.frame_timeout_ms", h.frame_timeout_ms)?;
        at_least_one(
            origin,
            "reactor.max_conn_per_peer",
            h.max_conn_per_peer as u64,
        )?;
        if h.idle_timeout_ms < h.frame_timeout_ms {
            return Err(ConfigError::invalid(
                origin,
                "reactor.idle_timeout_ms",
                format!("must be at least frame_timeout_ms ({})", h.frame_timeout_ms),
            ));
        }
        if h.max_pending_bytes < lars_frame_len() {
            return Err(ConfigError::invalid(
                origin,
                "reactor.max_pending_bytes",
                format!(
                    "must hold at least one whole frame ({} bytes)",
                    lars_frame_len()
                ),
            ));
        }
        Ok(())
    }

    /// The limits the connection [`Gate`](crate::admission::Gate) applies.
    pub fn limits(&self) -> Limits {
        let h = &self.hygiene;
        Limits {
            max_conn: self.max_conn,
            max_conn_per_peer: h.max_conn_per_peer,
            max_pending_bytes: h.max_pending_bytes,
            frame_timeout: Duration::from_millis(h.frame_timeout_ms),
            idle_timeout: Duration::from_millis(h.idle_timeout_ms),
        }
    }

    /// The address to listen on.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

/// The largest Lars frame, header included (the wire crate's 64 KiB limit; this crate does not
/// depend on the wire crate).
fn lars_frame_len() -> usize {
    65535
}

#[cfg(test)]
mod tests {
    use super::*;

    type Reactor = ReactorConfig<7000>;

    #[test]
    fn defaults_are_localhost_on_the_service_port() {
        let reactor = Reactor::default();
        assert_eq!(reactor.listen_addr(), "127.0.0.1:7000".parse().unwrap());
        assert_eq!((reactor.max_conn, reactor.thread_num), (4096, 0));
        reactor.validate("built-in defaults").unwrap();
    }

    #[test]
    fn lars_key_names_are_read_and_missing_keys_keep_their_defaults() {
        let reactor: Reactor = toml::from_str("maxConn = 7\nthreadNum = 2\n").unwrap();
        assert_eq!((reactor.max_conn, reactor.thread_num), (7, 2));
        assert_eq!(reactor.port, 7000);
    }

    #[test]
    fn zero_max_conn_is_refused_naming_origin_and_key() {
        let reactor = Reactor {
            max_conn: 0,
            ..Reactor::default()
        };
        let err = reactor.validate("x.toml").unwrap_err().to_string();
        assert!(
            err.contains("x.toml") && err.contains("reactor.maxConn"),
            "{err}"
        );
    }

    #[test]
    fn allowed_peers_are_read_checked_and_default_to_loopback() {
        assert_eq!(Reactor::default().allowed_peers, AllowedPeers::loopback());
        let reactor: Reactor = toml::from_str("allowed_peers = [\"10.0.0.0/8\"]\n").unwrap();
        assert!(reactor.allowed_peers.allows("10.9.9.9".parse().unwrap()));
        assert!(!reactor.allowed_peers.allows("127.0.0.1".parse().unwrap()));

        let err = toml::from_str::<Reactor>("allowed_peers = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("reactor.allowed_peers") && err.contains("\"10.0.0.0/40\""),
            "{err}"
        );

        let empty: Reactor = toml::from_str("allowed_peers = []\n").unwrap();
        let err = empty.validate("x.toml").unwrap_err().to_string();
        assert!(
            err.contains("x.toml") && err.contains("reactor.allowed_peers"),
            "{err}"
        );
    }

    #[test]
    fn hygiene_keys_are_read_and_checked_naming_the_key() {
        let text = "frame_timeout_ms = 500\nidle_timeout_ms = 2000\nmax_conn_per_peer = 3\n";
        let reactor: Reactor = toml::from_str(text).unwrap();
        let limits = reactor.limits();
        assert_eq!(limits.frame_timeout, Duration::from_millis(500));
        assert_eq!(limits.idle_timeout, Duration::from_secs(2));
        assert_eq!(limits.max_conn_per_peer, 3);
        assert_eq!(limits.max_pending_bytes, 4 << 20);
        reactor.validate("x.toml").unwrap();
        for (text, key) in [
            ("idle_timeout_ms = 9000\n", "reactor.idle_timeout_ms"),
            ("max_pending_bytes = 1000\n", "reactor.max_pending_bytes"),
            ("max_conn_per_peer = 0\n", "reactor.max_conn_per_peer"),
        ] {
            let reactor: Reactor = toml::from_str(text).unwrap();
            let err = reactor.validate("x.toml").unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_out_of_range_values_are_named() {
        for (text, key) in [("maxconn = 3\n", "maxconn"), ("port = 70000\n", "port")] {
            let err = toml::from_str::<Reactor>(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
