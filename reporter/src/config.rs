//! The reporter's settings: the `[reactor]`, `[store]` and `[reporter]` sections of
//! `lars_reporter.toml`, with the same defaults as the shipped `conf/lars_reporter.toml`.
//! Loading checks every key and value before anything starts and names the file, key and reason
//! on error.

pub use lars_service::ConfigError;
use lars_service::config::{at_least_one, load_config};
use lars_store::StoreUrl;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// Largest `batch_rows`: a chunk is copied under its worker's lock, so it stays small enough to
/// copy in well under a millisecond (the store splits it into statements of 1000 rows anyway).
pub const MAX_BATCH_ROWS: usize = 10_000;

/// Most store workers.
pub const MAX_DB_THREADS: usize = 64;

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
            port: 7779,
            max_conn: 4096,
            thread_num: 0,
        }
    }
}

/// Where the statistics are stored (`[store]`).
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

/// Store workers, batching and outage behaviour (`[reporter]`).
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
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            db_thread_cnt: 3,
            batch_rows: 500,
            flush_ms: 50,
            max_pending_keys: 1_000_000,
            db_retry_max_ms: 5000,
        }
    }
}

/// Everything `lars-reporter` can be told.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReporterConfig {
    /// `[reactor]`.
    pub reactor: ReactorConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[reporter]`.
    pub reporter: WorkerConfig,
}

impl ReporterConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<ReporterConfig, ConfigError> {
        let config: ReporterConfig = load_config(path)?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Checks ranges that the types alone do not.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let r = &self.reporter;
        at_least_one(origin, "reactor.maxConn", self.reactor.max_conn as u64)?;
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

    /// The longest a row waits while fewer than `batch_rows` are pending.
    pub fn flush(&self) -> Duration {
        Duration::from_millis(self.reporter.flush_ms)
    }

    /// The longest retry wait while the database is down.
    pub fn db_retry_max(&self) -> Duration {
        Duration::from_millis(self.reporter.db_retry_max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ReporterConfig, String> {
        let config: ReporterConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate("test.toml").map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn the_shipped_file_equals_the_built_in_defaults() {
        let shipped = ReporterConfig::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/lars_reporter.toml"),
        )
        .expect("conf/lars_reporter.toml loads");
        let defaults = ReporterConfig::default();
        assert_eq!(format!("{shipped:?}"), format!("{defaults:?}"));
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
            ("[store]\nurl = \"postgres://x\"\n", "store.url"),
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
    fn negative_values_are_type_errors() {
        let err = parse("[reporter]\nflush_ms = -1\n").unwrap_err();
        assert!(err.contains("flush_ms"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = ReporterConfig::load(Path::new("/nonexistent/lars_reporter.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/lars_reporter.toml"));
    }
}
