//! Who may connect to a central service: `[reactor] allowed_peers`, a list of CIDR blocks (or
//! single addresses) checked against a connection's source address right after accept. Owns the
//! parsing of the list (each entry checked, an error naming the key and the bad entry), the
//! match (an IPv4-mapped IPv6 peer, as a dual-stack listener reports it, is matched as the IPv4
//! address it is) and the refusal: counted on the service's own counter and logged with the
//! peer's address, rate-limited. Both lars-dns and lars-reporter call [`AllowedPeers::admit`] at
//! their accept; neither has a matcher of its own. Plain data and one atomic: never touches a
//! socket.
//!
//! The default is loopback only (`127.0.0.0/8`, `::1/128`), like the default listen address: a
//! service opened to other hosts must also be told which ones.

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::warn;

/// The config key, as errors name it.
pub const KEY: &str = "reactor.allowed_peers";

/// Refused peers logged one by one; after that one line per this many, so a scanner hammering
/// the port cannot flood the log.
const REFUSALS_LOGGED_FIRST: u64 = 10;
/// See [`REFUSALS_LOGGED_FIRST`].
const REFUSALS_LOGGED_EVERY: u64 = 1000;

/// The networks a service accepts connections from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedPeers {
    nets: Vec<IpNet>,
}

/// An entry of `allowed_peers` that is not an address or a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{KEY}: entry {entry:?} is not an IP address or a CIDR block (such as \"10.0.0.0/8\" or \"::1/128\")"
)]
pub struct BadPeerEntry {
    /// The entry as written.
    pub entry: String,
}

impl AllowedPeers {
    /// Loopback only: `127.0.0.0/8` and `::1/128`.
    pub fn loopback() -> AllowedPeers {
        AllowedPeers::parse(["127.0.0.0/8", "::1/128"]).expect("the built-in networks parse")
    }

    /// Parses every entry: a CIDR block (`10.1.0.0/16`, host bits are ignored) or a single
    /// address (`10.1.2.3`, meaning `/32` or `/128`).
    pub fn parse<S: AsRef<str>>(
        entries: impl IntoIterator<Item = S>,
    ) -> Result<AllowedPeers, BadPeerEntry> {
        let nets = entries
            .into_iter()
            .map(|entry| {
                let entry = entry.as_ref().trim();
                entry
                    .parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| BadPeerEntry {
                        entry: entry.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(AllowedPeers { nets })
    }

    /// True when nothing is allowed (an empty list), which a config refuses.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is in one of the networks.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Whether the peer of a just-accepted connection may stay. When it may not, adds one to
    /// `refused` and logs the peer (the first few, then one in every thousand, each with the
    /// count so far); the caller then drops the connection at once.
    pub fn admit(&self, peer: SocketAddr, refused: &AtomicU64) -> bool {
        if self.allows(peer.ip()) {
            return true;
        }
        let count = refused.fetch_add(1, Ordering::Relaxed) + 1;
        if count <= REFUSALS_LOGGED_FIRST || count.is_multiple_of(REFUSALS_LOGGED_EVERY) {
            warn!(%peer, allowed_peers = %self, refused = count,
                "peer not in allowed_peers; closing its connection");
        }
        false
    }
}

impl Default for AllowedPeers {
    fn default() -> Self {
        AllowedPeers::loopback()
    }
}

impl fmt::Display for AllowedPeers {
    /// The networks as a TOML list would spell them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nets: Vec<String> = self.nets.iter().map(|n| format!("\"{n}\"")).collect();
        write!(f, "[{}]", nets.join(", "))
    }
}

impl<'de> Deserialize<'de> for AllowedPeers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        AllowedPeers::parse(&entries).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_default_allows_loopback_only() {
        let peers = AllowedPeers::default();
        for allowed in [
            "127.0.0.1",
            "127.0.0.2",
            "127.255.0.9",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(peers.allows(ip(allowed)), "{allowed}");
        }
        for refused in ["6.6.6.6", "10.0.0.1", "::2", "fe80::1", "::ffff:6.6.6.6"] {
            assert!(!peers.allows(ip(refused)), "{refused}");
        }
    }

    #[test]
    fn blocks_and_single_addresses_are_matched_by_prefix() {
        let peers = AllowedPeers::parse(["10.1.2.3/16", "192.168.7.7", "fd00::/8"]).unwrap();
        assert!(
            peers.allows(ip("10.1.200.1")),
            "host bits of an entry are ignored"
        );
        assert!(!peers.allows(ip("10.2.0.1")));
        assert!(peers.allows(ip("192.168.7.7")));
        assert!(!peers.allows(ip("192.168.7.8")));
        assert!(peers.allows(ip("fd12::1")));
        assert!(!peers.allows(ip("127.0.0.1")));
        assert_eq!(
            peers.to_string(),
            "[\"10.1.0.0/16\", \"192.168.7.7/32\", \"fd00::/8\"]"
        );
    }

    #[test]
    fn a_bad_entry_is_named_with_the_key() {
        for bad in ["10.0.0.0/33", "localhost", "10.0.0", "", "::1/129"] {
            let err = AllowedPeers::parse(["127.0.0.1", bad])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(KEY) && err.contains(&format!("{bad:?}")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_refused_peer_is_counted_and_an_allowed_one_is_not() {
        let peers = AllowedPeers::parse(["127.0.0.2/32"]).unwrap();
        let refused = AtomicU64::new(0);
        assert!(peers.admit("127.0.0.2:5000".parse().unwrap(), &refused));
        assert!(!peers.admit("127.0.0.1:5000".parse().unwrap(), &refused));
        assert!(!peers.admit("[::1]:5000".parse().unwrap(), &refused));
        assert_eq!(refused.load(Ordering::Relaxed), 2);
    }
}
