//! What every Lars service process needs around its own logic, in one place so the three
//! services behave alike for operators: config files that are checked before anything starts,
//! with the `[reactor]` and `[store]` sections they share ([`config`]), logs on stderr
//! ([`logging`]), SIGINT/SIGTERM as a shutdown signal ([`signals`]), the start-up of a service
//! binary from its command line to its runtime ([`process`]), jittered, capped exponential
//! backoff for reconnects and retries ([`backoff`]), and the metrics every service exposes over HTTP and the
//! `lars` CLI reads back ([`metrics`]), and which peers may connect ([`peers`]).

#![deny(missing_docs)]

pub mod admission;
pub mod backoff;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod peers;
pub mod process;
pub mod signals;
#[cfg(feature = "testing")]
pub mod testing;

pub use backoff::Backoff;
pub use config::{
    ConfigError, MetricsConfig, ReactorConfig, ServiceConfig, StoreConfig, load_config,
};
