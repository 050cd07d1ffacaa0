//! Loading a service's TOML config file: unknown keys and bad values are errors naming the file,
//! the key and the reason, found before the service starts anything. Each service defines its
//! own settings struct (serde, `deny_unknown_fields`, defaults equal to the shipped file in
//! `conf/`) around the sections every service shares ([`ReactorConfig`], [`StoreConfig`]), with a
//! `validate` for ranges the types cannot express, and implements [`ServiceConfig`] so that
//! [`crate::process`] can load and run it.

use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub mod metrics;
pub mod reactor;
pub mod store;

pub use metrics::MetricsConfig;
pub use reactor::ReactorConfig;
pub use store::StoreConfig;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (the error's `source()`, so not repeated in its message).
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message (it names the key and line).
        message: String,
    },
    /// A value has the right type but cannot be used.
    #[error("config {origin}: key `{key}`: {reason}")]
    Invalid {
        /// The file, or where else the value came from ("built-in defaults", "--store").
        origin: String,
        /// The key, as `section.key`.
        key: &'static str,
        /// Why the value cannot be used.
        reason: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `key` from `origin`.
    pub fn invalid(origin: &str, key: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            reason: reason.into(),
        }
    }
}

/// Reads and parses a TOML config file.
pub fn load_config<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A service's whole config file: its own sections next to the shared `[reactor]` and `[store]`.
pub trait ServiceConfig: DeserializeOwned + Default {
    /// What the `[store]` URL parses into.
    type StoreUrl: FromStr<Err: fmt::Display> + fmt::Display;

    /// Checks ranges that the types alone do not; an error names `origin` and the key.
    fn validate(&self, origin: &str) -> Result<(), ConfigError>;

    /// The `[store]` section.
    fn store_mut(&mut self) -> &mut StoreConfig<Self::StoreUrl>;

    /// Runtime worker threads (`[reactor] threadNum`; 0: one per CPU).
    fn thread_num(&self) -> usize;

    /// Reads and checks a config file.
    fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = load_config(path)?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }
}

/// Checks that a numeric setting is at least 1.
pub fn at_least_one(origin: &str, key: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(origin, key, "must be at least 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        #[allow(dead_code)]
        port: u16,
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "port = 1\nprot = 2\n").unwrap();
        let err = load_config::<Settings>(&path).unwrap_err().to_string();
        assert!(err.contains("x.toml") && err.contains("prot"), "{err}");
        std::fs::write(&path, "port = 70000\n").unwrap();
        let err = load_config::<Settings>(&path).unwrap_err().to_string();
        assert!(err.contains("x.toml") && err.contains("port"), "{err}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = load_config::<Settings>(Path::new("/nonexistent/y.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/y.toml"));
    }

    #[test]
    fn an_anyhow_report_of_a_missing_file_prints_the_io_error_once() {
        let err = load_config::<Settings>(Path::new("/nonexistent/y.toml")).unwrap_err();
        let io = std::fs::read_to_string("/nonexistent/y.toml")
            .unwrap_err()
            .to_string();
        let report = anyhow::Error::new(err).context("loading the agent's settings");
        // `{:#}` is "outer: cause: cause"; `{:?}` lists the causes under "Caused by:".
        for text in [format!("{report:#}"), format!("{report:?}")] {
            assert_eq!(text.matches(&io).count(), 1, "{text}");
            assert_eq!(text.matches("/nonexistent/y.toml").count(), 1, "{text}");
        }
        assert_eq!(
            format!("{report:#}"),
            format!(
                "loading the agent's settings: cannot read config file /nonexistent/y.toml: {io}"
            )
        );
    }
}
