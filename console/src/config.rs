//! The console's settings: the `[console]`, `[store]` and `[[services]]` sections of
//! `lars_console.toml`, with the defaults of the shipped `conf/lars_console.toml`. Loading
//! ([`ServiceConfig::load`]) checks every key and value before anything starts, naming the file,
//! key and reason. Which password the console takes (a hash here, or a plain one in the
//! environment) is decided in `auth.rs`; this only reads the settings.

pub use lars_service::ConfigError;
use lars_service::config::{ServiceConfig, StoreConfig, at_least_one};
use lars_store::StoreUrl;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Where the console listens by default: loopback, next to the services' metrics ports.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7790";

/// The environment variable that may hold the operator password by default.
pub const DEFAULT_PASSWORD_ENV: &str = "LARS_CONSOLE_PASSWORD";

/// Runtime worker threads: the console serves a few operators, not traffic.
const THREADS: usize = 2;

/// The whole `lars_console.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// `[console]`: where it listens, who may log in, how pages behave.
    pub console: ConsoleSection,
    /// `[store]`: the route store it shows and edits.
    pub store: StoreConfig<StoreUrl>,
    /// `[[services]]`: the metrics endpoints the Services page reads.
    pub services: Vec<ServiceTarget>,
}

impl Default for ConsoleConfig {
    /// The Services page lists the default metrics endpoints of lars-dns, lars-reporter and the
    /// local agent.
    fn default() -> Self {
        let target = |name: &str, url: &str| ServiceTarget {
            name: name.to_string(),
            url: url.to_string(),
        };
        ConsoleConfig {
            console: ConsoleSection::default(),
            store: StoreConfig::default(),
            services: vec![
                target("lars-dns", "http://127.0.0.1:7788/metrics"),
                target("lars-reporter", "http://127.0.0.1:7789/metrics"),
                target("lars-agent", "http://127.0.0.1:8890/metrics"),
            ],
        }
    }
}

/// `[console]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSection {
    /// Address and port of the pages. A non-loopback address needs a password.
    pub listen: SocketAddr,
    /// The operator's login name, also what the audit log records as who.
    pub user: String,
    /// The operator password's argon2 hash (a PHC string `$argon2id$...`, e.g. from
    /// `lars-console --hash-password`); empty for none.
    pub password_hash: String,
    /// An environment variable that may hold the plain password instead (hashed at start, the
    /// plain text dropped); empty to read none.
    pub password_env: String,
    /// How long a session lives after login, in seconds.
    pub session_ttl_secs: u64,
    /// How often the route page refreshes its health table, in seconds.
    pub refresh_secs: u64,
    /// A `ServerCallStatus` row older than this is marked stale, in seconds: the agents report
    /// every second while they have statistics, so a minute without one means the caller
    /// stopped calling or reporting.
    pub stale_after_secs: u64,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        ConsoleSection {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| unreachable_listen()),
            user: "operator".to_string(),
            password_hash: String::new(),
            password_env: DEFAULT_PASSWORD_ENV.to_string(),
            session_ttl_secs: 8 * 3600,
            refresh_secs: 3,
            stale_after_secs: 60,
        }
    }
}

/// [`DEFAULT_LISTEN`] is a literal that parses; this is never reached.
fn unreachable_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7790))
}

impl ConsoleSection {
    /// [`ConsoleSection::session_ttl_secs`].
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_secs)
    }
}

/// One `[[services]]` entry: a service whose `/metrics` the Services page shows.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceTarget {
    /// What the page calls it ("lars-dns", "agent on host-3").
    pub name: String,
    /// Its metrics URL, `http://HOST:PORT/metrics` or `HOST:PORT`.
    pub url: String,
}

impl ServiceConfig for ConsoleConfig {
    type StoreUrl = StoreUrl;

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let c = &self.console;
        at_least_one(origin, "console.session_ttl_secs", c.session_ttl_secs)?;
        at_least_one(origin, "console.refresh_secs", c.refresh_secs)?;
        at_least_one(origin, "console.stale_after_secs", c.stale_after_secs)?;
        if c.user.trim().is_empty() || c.user.len() > lars_store::AUDIT_WHO_MAX {
            return Err(ConfigError::invalid(
                origin,
                "console.user",
                format!("must be 1 to {} characters", lars_store::AUDIT_WHO_MAX),
            ));
        }
        if !c.password_hash.is_empty() && crate::auth::parse_hash(&c.password_hash).is_err() {
            return Err(ConfigError::invalid(
                origin,
                "console.password_hash",
                "is not an argon2 PHC string ($argon2id$v=19$...); make one with \
                 `lars-console --hash-password`",
            ));
        }
        for (i, target) in self.services.iter().enumerate() {
            if target.name.trim().is_empty() || target.url.trim().is_empty() {
                return Err(ConfigError::invalid(
                    origin,
                    "services",
                    format!("entry {} needs a name and a url", i + 1),
                ));
            }
        }
        self.store.parse(origin)?;
        Ok(())
    }

    fn store_mut(&mut self) -> &mut StoreConfig<StoreUrl> {
        &mut self.store
    }

    fn thread_num(&self) -> usize {
        THREADS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_is_the_defaults() {
        lars_service::testing::assert_shipped_config_is_the_defaults::<ConsoleConfig>(
            env!("CARGO_MANIFEST_DIR"),
            "lars_console.toml",
        );
    }

    #[test]
    fn bad_values_are_refused_naming_their_key() {
        for (text, key) in [
            ("[console]\nrefresh_secs = 0\n", "console.refresh_secs"),
            ("[console]\nuser = \"\"\n", "console.user"),
            (
                "[console]\npassword_hash = \"secret\"\n",
                "console.password_hash",
            ),
            ("[[services]]\nname = \"\"\nurl = \"x\"\n", "services"),
        ] {
            let config: ConsoleConfig = toml::from_str(text).unwrap();
            let err = config.validate("c.toml").unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
