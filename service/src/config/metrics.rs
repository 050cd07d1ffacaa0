//! The `[metrics]` section of the central services: where the HTTP `/metrics` endpoint listens
//! (`addr`, loopback on the service's own default port; `""` turns it off; port 0 lets the OS
//! pick one, which the service logs). Plain data with its check: never binds a socket.

use super::ConfigError;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;

/// The metrics endpoint of a service whose built-in metrics port is `DEFAULT_PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig<const DEFAULT_PORT: u16> {
    /// `ip:port` to serve `/metrics` on, or empty for no endpoint.
    pub addr: String,
}

/// The keys of `[metrics]` as written; serde's derive cannot take the const parameter.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsKeys {
    addr: Option<String>,
}

impl<'de, const DEFAULT_PORT: u16> Deserialize<'de> for MetricsConfig<DEFAULT_PORT> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let keys = MetricsKeys::deserialize(deserializer)?;
        Ok(MetricsConfig {
            addr: keys.addr.unwrap_or_else(|| Self::default().addr),
        })
    }
}

impl<const DEFAULT_PORT: u16> Default for MetricsConfig<DEFAULT_PORT> {
    fn default() -> Self {
        MetricsConfig {
            addr: format!("127.0.0.1:{DEFAULT_PORT}"),
        }
    }
}

impl<const DEFAULT_PORT: u16> MetricsConfig<DEFAULT_PORT> {
    /// Checks that `addr` is empty or `ip:port`; an error names `origin` and `metrics.addr`.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        if !self.addr.is_empty() && self.addr.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                origin,
                "metrics.addr",
                format!("`{}` is not ip:port (or \"\" for no endpoint)", self.addr),
            ));
        }
        Ok(())
    }

    /// The address to serve on; `None` when the endpoint is off.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.addr.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Metrics = MetricsConfig<7000>;

    #[test]
    fn the_default_is_loopback_on_the_service_port() {
        let m = Metrics::default();
        assert_eq!(m.listen_addr(), Some("127.0.0.1:7000".parse().unwrap()));
        m.validate("x").unwrap();
        let parsed: Metrics = toml::from_str("").unwrap();
        assert_eq!(parsed, m);
    }

    #[test]
    fn empty_turns_it_off_and_a_bad_address_is_named() {
        let off: Metrics = toml::from_str("addr = \"\"").unwrap();
        off.validate("x").unwrap();
        assert_eq!(off.listen_addr(), None);
        let bad: Metrics = toml::from_str("addr = \"localhost\"").unwrap();
        let err = bad.validate("f.toml").unwrap_err().to_string();
        assert!(
            err.contains("metrics.addr") && err.contains("f.toml"),
            "{err}"
        );
        assert!(toml::from_str::<Metrics>("adr = \"\"").is_err());
    }
}
