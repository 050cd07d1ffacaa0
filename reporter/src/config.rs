//! The reporter's settings: the `[reactor]`, `[store]`, `[metrics]` and `[reporter]` sections of
//! `lars_reporter.toml`, with the same defaults as the shipped `conf/lars_reporter.toml`.
//! `[reactor]`, `[store]` and `[metrics]` are the sections the central services share (`lars_service::config`);
//! `[reporter]` is this service's own. Loading ([`ServiceConfig::load`]) checks every key and
//! value before anything starts and names the file, key and reason on error.

use crate::report::{Admission, DEFAULT_MAX_RESULTS_PER_FRAME, DEFAULT_MAX_TS_AHEAD_SECS};
pub use lars_service::ConfigError;
use lars_service::config::{
    MetricsConfig, ReactorConfig, ServiceConfig, StoreConfig, at_least_one,
};
use lars_store::StoreUrl;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The port `lars-reporter` listens on by default, as in Lars.
pub const DEFAULT_PORT: u16 = 7779;

/// The port of `lars-reporter`'s metrics endpoint by default.
pub const DEFAULT_METRICS_PORT: u16 = 7789;

/// Largest `batch_rows`: a chunk is copied under its worker's lock, so it stays small enough to
/// copy in well under a millisecond (the store splits it into statements of 1000 rows anyway).
pub const MAX_BATCH_ROWS: usize = 10_000;

/// Most store workers.
pub const MAX_DB_THREADS: usize = 64;

/// Store workers, batching, outage behaviour and what is admitted from the agents (`[reporter]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Store workers, each writing its share of the keys (Lars' name).
    pub db_thread_cnt: usize,
    /// Rows per write (one multi-row upsert); a worker writes as soon as this many are pending.
    pub batch_rows: usize,
    /// Longest a row waits for a write while fewer than `batch_rows` are pending, in
    /// milliseconds.
    pub flush_ms: u64,
    /// Most distinct keys one worker keeps pending; a new key beyond that drops the oldest.
    pub max_pending_keys: usize,
    /// Longest wait between retries while the database is unreachable, in milliseconds.
    pub db_retry_max_ms: u64,

    // What is admitted from the agents (`report::Admission`).
    /// Store a frame's `caller` as sent even when it is not the sending peer's IPv4 address
    /// (agents behind NAT); otherwise such a frame is refused.
    pub trust_caller_field: bool,
    /// Most results one frame may carry; a frame with more is refused.
    pub max_results_per_frame: usize,
    /// Most seconds a frame's `ts` may be ahead of the reporter's clock.
    pub max_ts_ahead_secs: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            db_thread_cnt: 3,
            batch_rows: 500,
            flush_ms: 50,
            max_pending_keys: 1_000_000,
            db_retry_max_ms: 5000,

            trust_caller_field: false,
            max_results_per_frame: DEFAULT_MAX_RESULTS_PER_FRAME,
            max_ts_ahead_secs: DEFAULT_MAX_TS_AHEAD_SECS,
        }
    }
}

/// Everything `lars-reporter` can be told.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReporterConfig {
    /// `[reactor]`: where agents send their statistics.
    pub reactor: ReactorConfig<DEFAULT_PORT>,
    /// `[store]`: where the statistics are stored.
    pub store: StoreConfig<StoreUrl>,
    /// `[metrics]`: where `/metrics` is served.
    pub metrics: MetricsConfig<DEFAULT_METRICS_PORT>,
    /// `[reporter]`.
    pub reporter: WorkerConfig,
}

impl ServiceConfig for ReporterConfig {
    type StoreUrl = StoreUrl;

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let r = &self.reporter;
        self.reactor.validate(origin)?;
        self.metrics.validate(origin)?;
        at_least_one(origin, "reporter.db_thread_cnt", r.db_thread_cnt as u64)?;
        if r.db_thread_cnt > MAX_DB_THREADS {
            return Err(ConfigError::invalid(
                origin,
                "reporter.db_thread_cnt",
                format!("must be at most {MAX_DB_THREADS}"),
            ));
        }
        at_least_one(origin, "reporter.batch_rows", r.batch_rows as u64)?;
        if r.batch_rows > MAX_BATCH_ROWS {
            return Err(ConfigError::invalid(
                origin,
                "reporter.batch_rows",
                format!("must be at most {MAX_BATCH_ROWS}"),
            ));
        }
        at_least_one(origin, "reporter.flush_ms", r.flush_ms)?;
        at_least_one(
            origin,
            "reporter.max_pending_keys",
            r.max_pending_keys as u64,
        )?;
        at_least_one(origin, "reporter.db_retry_max_ms", r.db_retry_max_ms)?;
        at_least_one(
            origin,
            "reporter.max_results_per_frame",
            r.max_results_per_frame as u64,
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

impl ReporterConfig {
    /// Checks ranges that the types alone do not: [`ServiceConfig::validate`], callable without
    /// the trait in scope.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        ServiceConfig::validate(self, origin)
    }

    /// The address to listen on.
    pub fn listen_addr(&self) -> SocketAddr {
        self.reactor.listen_addr()
    }

    /// The longest a row waits while fewer than `batch_rows` are pending.
    pub fn flush(&self) -> Duration {
        Duration::from_millis(self.reporter.flush_ms)
    }

    /// What is admitted from the agents.
    pub fn admission(&self) -> Admission {
        let r = &self.reporter;
        Admission {
            trust_caller_field: r.trust_caller_field,
            max_results_per_frame: r.max_results_per_frame,
            max_ts_ahead_secs: r.max_ts_ahead_secs,
        }
    }

    /// The longest retry wait while the database is down.
    pub fn db_retry_max(&self) -> Duration {
        Duration::from_millis(self.reporter.db_retry_max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lars_service::testing::{
        assert_missing_config_is_named, assert_shipped_config_is_the_defaults, parse_config,
    };

    fn parse(text: &str) -> Result<ReporterConfig, String> {
        parse_config(text, "test.toml")
    }

    #[test]
    fn the_shipped_file_equals_the_built_in_defaults() {
        assert_shipped_config_is_the_defaults::<ReporterConfig>(
            env!("CARGO_MANIFEST_DIR"),
            "lars_reporter.toml",
        );
    }

    #[test]
    fn defaults_are_the_lars_ones() {
        let c = ReporterConfig::default();
        assert_eq!(c.reactor.port, 7779);
        assert_eq!(c.reporter.db_thread_cnt, 3);
        c.validate("built-in defaults").unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse("[reporter]\ndb_thread_count = 3\n").unwrap_err();
        assert!(err.contains("db_thread_count"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_refused_with_their_key() {
        let cases = [
            ("[reactor]\nmaxConn = 0\n", "reactor.maxConn"),
            ("[reporter]\ndb_thread_cnt = 0\n", "reporter.db_thread_cnt"),
            ("[reporter]\ndb_thread_cnt = 65\n", "reporter.db_thread_cnt"),
            ("[reporter]\nbatch_rows = 0\n", "reporter.batch_rows"),
            ("[reporter]\nbatch_rows = 10001\n", "reporter.batch_rows"),
            ("[reporter]\nflush_ms = 0\n", "reporter.flush_ms"),
            (
                "[reporter]\nmax_pending_keys = 0\n",
                "reporter.max_pending_keys",
            ),
            (
                "[reporter]\ndb_retry_max_ms = 0\n",
                "reporter.db_retry_max_ms",
            ),
            (
                "[reporter]\nmax_results_per_frame = 0\n",
                "reporter.max_results_per_frame",
            ),
            ("[reactor]\nallowed_peers = []\n", "reactor.allowed_peers"),
            ("[store]\nurl = \"postgres://x\"\n", "store.url"),
            ("[metrics]\naddr = \"7789\"\n", "metrics.addr"),
        ];
        for (text, key) in cases {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains(key) && err.contains("test.toml"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn a_bad_allowed_peers_entry_is_named_with_its_key() {
        let err = parse("[reactor]\nallowed_peers = [\"::1/128\", \"1.2.3.4/99\"]\n").unwrap_err();
        assert!(
            err.contains("reactor.allowed_peers") && err.contains("\"1.2.3.4/99\""),
            "{err}"
        );
    }

    #[test]
    fn negative_values_are_type_errors() {
        let err = parse("[reporter]\nflush_ms = -1\n").unwrap_err();
        assert!(err.contains("flush_ms"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        assert_missing_config_is_named::<ReporterConfig>("lars_reporter.toml");
    }
}
