//! The dns service's settings: the `[reactor]`, `[store]` and `[dns]` sections of
//! `lars_dns.toml`, with the same defaults as the shipped `conf/lars_dns.toml`. Loading checks
//! every key and value before anything starts and names the file, key and reason on error.

pub use lars_service::ConfigError;
use lars_service::config::{at_least_one, load_config};
use lars_store::StoreUrl;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// Listening socket and connection limits (`[reactor]`, Lars' names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReactorConfig {
    /// Address to listen on.
    pub ip: IpAddr,
    /// TCP port to listen on (0 lets the OS pick one; the service logs it).
    pub port: u16,
    /// Most connections served at once; more are accepted and closed at once.
    #[serde(rename = "maxConn")]
    pub max_conn: usize,
    /// Runtime worker threads (0: one per CPU).
    #[serde(rename = "threadNum")]
    pub thread_num: usize,
}

impl Default for ReactorConfig {
    fn default() -> Self {
        ReactorConfig {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 7778,
            max_conn: 4096,
            thread_num: 0,
        }
    }
}

/// Where the routes are stored (`[store]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `mysql://user:pass@host:port/db` or `sqlite://PATH`.
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: lars_store::DEFAULT_STORE_URL.to_string(),
        }
    }
}

/// Route synchronisation and push behaviour (`[dns]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// How often to read `RouteVersion`, in milliseconds.
    pub version_poll_ms: u64,
    /// Reload every route at least this often even without a version change, in seconds.
    pub full_reload_secs: u64,
    /// Frames a connection may have waiting to be written; a connection that falls further
    /// behind is closed so it cannot hold up pushes to the others.
    pub write_queue_frames: usize,
    /// Longest wait between retries while the database is unreachable, in milliseconds.
    pub db_retry_max_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            version_poll_ms: 1000,
            full_reload_secs: 10,
            write_queue_frames: 4096,
            db_retry_max_ms: 5000,
        }
    }
}

/// Everything `lars-dns` can be told.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// `[reactor]`.
    pub reactor: ReactorConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[dns]`.
    pub dns: SyncConfig,
}

impl DnsConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<DnsConfig, ConfigError> {
        let config: DnsConfig = load_config(path)?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Checks ranges that the types alone do not.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        at_least_one(origin, "reactor.maxConn", self.reactor.max_conn as u64)?;
        at_least_one(origin, "dns.version_poll_ms", self.dns.version_poll_ms)?;
        at_least_one(origin, "dns.full_reload_secs", self.dns.full_reload_secs)?;
        at_least_one(
            origin,
            "dns.write_queue_frames",
            self.dns.write_queue_frames as u64,
        )?;
        at_least_one(origin, "dns.db_retry_max_ms", self.dns.db_retry_max_ms)?;
        self.store_url(origin)?;
        Ok(())
    }

    /// The parsed store URL.
    pub fn store_url(&self, origin: &str) -> Result<StoreUrl, ConfigError> {
        self.store.url.parse().map_err(|e: lars_store::StoreError| {
            ConfigError::invalid(origin, "store.url", e.to_string())
        })
    }

    /// The address to listen on.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.reactor.ip, self.reactor.port)
    }

    /// The version poll period.
    pub fn version_poll(&self) -> Duration {
        Duration::from_millis(self.dns.version_poll_ms)
    }

    /// The full reload period.
    pub fn full_reload(&self) -> Duration {
        Duration::from_secs(self.dns.full_reload_secs)
    }

    /// The longest retry wait while the database is down.
    pub fn db_retry_max(&self) -> Duration {
        Duration::from_millis(self.dns.db_retry_max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DnsConfig, String> {
        let config: DnsConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate("test.toml").map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn the_shipped_file_equals_the_built_in_defaults() {
        let shipped =
            DnsConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/lars_dns.toml"))
                .expect("conf/lars_dns.toml loads");
        let defaults = DnsConfig::default();
        assert_eq!(format!("{shipped:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse("[reactor]\nmaxconn = 3\n").unwrap_err();
        assert!(err.contains("maxconn"), "{err}");
    }

    #[test]
    fn zero_max_conn_is_refused_with_its_key() {
        let err = parse("[reactor]\nmaxConn = 0\n").unwrap_err();
        assert!(
            err.contains("reactor.maxConn") && err.contains("test.toml"),
            "{err}"
        );
    }

    #[test]
    fn bad_store_url_is_refused_with_its_key() {
        let err = parse("[store]\nurl = \"postgres://x\"\n").unwrap_err();
        assert!(err.contains("store.url"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = DnsConfig::load(Path::new("/nonexistent/lars_dns.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/lars_dns.toml"));
    }
}
