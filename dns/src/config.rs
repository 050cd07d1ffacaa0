//! The dns service's settings: the `[reactor]`, `[store]`, `[metrics]` and `[dns]` sections of
//! `lars_dns.toml`, with the same defaults as the shipped `conf/lars_dns.toml`. `[reactor]`,
//! `[store]` and `[metrics]` are the sections the central services share (`lars_service::config`); `[dns]` is this
//! service's own. Loading ([`ServiceConfig::load`]) checks every key and value before anything
//! starts and names the file, key and reason on error.

pub use lars_service::ConfigError;
use lars_service::config::{
    MetricsConfig, ReactorConfig, ServiceConfig, StoreConfig, at_least_one,
};
use lars_store::StoreUrl;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The port `lars-dns` listens on by default, as in Lars.
pub const DEFAULT_PORT: u16 = 7778;

/// The port of `lars-dns`' metrics endpoint by default.
pub const DEFAULT_METRICS_PORT: u16 = 7788;

/// The default `[dns] max_subscriptions_per_connection`.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 1_000_000;

/// Route synchronisation and push behaviour (`[dns]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// How often to read `RouteVersion`, in milliseconds.
    pub version_poll_ms: u64,
    /// Reload every route at least this often even without a version change, in seconds.
    pub full_reload_secs: u64,
    /// Frames a connection may have waiting to be written. Answers to the agent's requests take
    /// at most half and wait for room (the agent's requests are not read meanwhile); a change
    /// that finds the queue full is remembered as owed (once per key) and written from the newest
    /// routes when room comes, so a slow agent is caught up, never cut off, and holds no more
    /// than this plus one mark per subscription.
    pub write_queue_frames: usize,
    /// Most subscriptions one connection holds (a hash-set entry each, a few tens of bytes). A request beyond it is
    /// answered but not subscribed (counted, logged once per connection): its agent gets no
    /// pushes for that key and relies on its periodic re-pull. The Lars protocol has no
    /// unsubscribe, so a long-lived connection keeps the keys its agent evicted; the default is
    /// well above an agent's default `max_routes` (150,000) to leave room for that churn.
    pub max_subscriptions_per_connection: usize,
    /// How long an agent may read nothing at all while frames wait for it before it is
    /// disconnected (and logged and counted as a slow reader), in milliseconds.
    pub stalled_reader_timeout_ms: u64,
    /// Longest wait between retries while the database is unreachable, in milliseconds.
    pub db_retry_max_ms: u64,
    /// Push-empty protection: percent (0..=100) of the routes with hosts that may lose every
    /// host in one reload without a route edit (`RouteChange` row) accounting for it; when more
    /// do, all of those keep their last hosts. 100 turns the protection off.
    pub push_empty_threshold: u8,
    /// How long `RouteChange` rows are kept, in seconds of route version (versions are Unix
    /// seconds unless edits come faster than one a second). Every dns replica reading the
    /// database must read a row within this time for the edit to count as accounted.
    pub route_change_retention_secs: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            version_poll_ms: 1000,
            full_reload_secs: 10,
            write_queue_frames: 4096,
            max_subscriptions_per_connection: DEFAULT_MAX_SUBSCRIPTIONS,
            stalled_reader_timeout_ms: 30_000,
            db_retry_max_ms: 5000,
            push_empty_threshold: 50,
            route_change_retention_secs: 600,
        }
    }
}

/// Everything `lars-dns` can be told.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// `[reactor]`: where agents connect.
    pub reactor: ReactorConfig<DEFAULT_PORT>,
    /// `[store]`: where the routes are stored.
    pub store: StoreConfig<StoreUrl>,
    /// `[metrics]`: where `/metrics` is served.
    pub metrics: MetricsConfig<DEFAULT_METRICS_PORT>,
    /// `[dns]`.
    pub dns: SyncConfig,
}

impl ServiceConfig for DnsConfig {
    type StoreUrl = StoreUrl;

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        self.reactor.validate(origin)?;
        self.metrics.validate(origin)?;
        at_least_one(origin, "dns.version_poll_ms", self.dns.version_poll_ms)?;
        at_least_one(origin, "dns.full_reload_secs", self.dns.full_reload_secs)?;
        at_least_one(
            origin,
            "dns.write_queue_frames",
            self.dns.write_queue_frames as u64,
        )?;
        at_least_one(
            origin,
            "dns.max_subscriptions_per_connection",
            self.dns.max_subscriptions_per_connection as u64,
        )?;
        at_least_one(
            origin,
            "dns.stalled_reader_timeout_ms",
            self.dns.stalled_reader_timeout_ms,
        )?;
        at_least_one(origin, "dns.db_retry_max_ms", self.dns.db_retry_max_ms)?;
        if self.dns.push_empty_threshold > 100 {
            return Err(ConfigError::invalid(
                origin,
                "dns.push_empty_threshold",
                "a percentage, 0..=100",
            ));
        }
        at_least_one(
            origin,
            "dns.route_change_retention_secs",
            self.dns.route_change_retention_secs,
        )?;
        self.store.parse(origin)?;
        Ok(())
    }

    fn store_mut(&mut self) -> &mut StoreConfig<StoreUrl> {
        &mut self.store
    }

    fn thread_num(&self) -> usize {
        self.reactor.thread_num
    }
}

impl DnsConfig {
    /// The address to listen on.
    pub fn listen_addr(&self) -> SocketAddr {
        self.reactor.listen_addr()
    }

    /// The version poll period.
    pub fn version_poll(&self) -> Duration {
        Duration::from_millis(self.dns.version_poll_ms)
    }

    /// The full reload period.
    pub fn full_reload(&self) -> Duration {
        Duration::from_secs(self.dns.full_reload_secs)
    }

    /// How long an agent may read nothing while frames wait for it.
    pub fn stalled_reader_timeout(&self) -> Duration {
        Duration::from_millis(self.dns.stalled_reader_timeout_ms)
    }

    /// The longest retry wait while the database is down.
    pub fn db_retry_max(&self) -> Duration {
        Duration::from_millis(self.dns.db_retry_max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lars_service::testing::{
        assert_missing_config_is_named, assert_shipped_config_is_the_defaults, parse_config,
    };

    fn parse(text: &str) -> Result<DnsConfig, String> {
        parse_config(text, "test.toml")
    }

    #[test]
    fn a_config_printed_for_debugging_never_shows_the_store_password() {
        let config = parse("[store]\nurl = \"mysql://lars:hunter2@db:3306/lars_dns\"\n").unwrap();
        let shown = format!("{config:?}");
        assert!(
            shown.contains("mysql://lars:***@db:3306/lars_dns"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn the_shipped_file_equals_the_built_in_defaults() {
        assert_shipped_config_is_the_defaults::<DnsConfig>(
            env!("CARGO_MANIFEST_DIR"),
            "lars_dns.toml",
        );
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
    fn bad_metrics_addr_is_refused_with_its_key() {
        let err = parse("[metrics]\naddr = \"nowhere\"\n").unwrap_err();
        assert!(err.contains("metrics.addr"), "{err}");
        let off = parse("[metrics]\naddr = \"\"\n").unwrap();
        assert_eq!(off.metrics.listen_addr(), None);
    }

    #[test]
    fn bad_store_url_is_refused_with_its_key() {
        let err = parse("[store]\nurl = \"postgres://x\"\n").unwrap_err();
        assert!(err.contains("store.url"), "{err}");
    }

    #[test]
    fn push_empty_threshold_over_100_is_refused_with_its_key() {
        let err = parse("[dns]\npush_empty_threshold = 101\n").unwrap_err();
        assert!(err.contains("dns.push_empty_threshold"), "{err}");
        assert_eq!(
            parse("[dns]\npush_empty_threshold = 100\n")
                .unwrap()
                .dns
                .push_empty_threshold,
            100
        );
    }

    #[test]
    fn zero_max_subscriptions_is_refused_with_its_key() {
        let err = parse("[dns]\nmax_subscriptions_per_connection = 0\n").unwrap_err();
        assert!(
            err.contains("dns.max_subscriptions_per_connection"),
            "{err}"
        );
    }

    #[test]
    fn zero_stalled_reader_timeout_is_refused_with_its_key() {
        let err = parse("[dns]\nstalled_reader_timeout_ms = 0\n").unwrap_err();
        assert!(err.contains("dns.stalled_reader_timeout_ms"), "{err}");
        let set = parse("[dns]\nstalled_reader_timeout_ms = 1500\n").unwrap();
        assert_eq!(set.stalled_reader_timeout(), Duration::from_millis(1500));
    }

    #[test]
    fn missing_file_is_named() {
        assert_missing_config_is_named::<DnsConfig>("lars_dns.toml");
    }
}
