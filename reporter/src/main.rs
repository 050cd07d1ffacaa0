//! `lars-reporter` command line: loads the config, binds, serves until SIGINT/SIGTERM, then
//! writes what is still pending and exits.

use anyhow::Context;
use argh::FromArgs;
use lars_reporter::{ReporterConfig, ReporterServer};
use std::path::PathBuf;
use tracing::info;

/// lars-reporter: stores the call statistics Lars agents send over TCP.
///
/// Statistics go to the ServerCallStatus table of the store (embedded SQLite file by default, or
/// MySQL/MariaDB), in batched upserts that keep the latest row per key while the database is
/// away. Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=lars_reporter=debug) for more detail.
#[derive(FromArgs)]
struct Args {
    /// config file (TOML, see conf/lars_reporter.toml); built-in defaults when absent
    #[argh(option)]
    config: Option<PathBuf>,
    /// store URL, overriding the config: sqlite://PATH or mysql://user:pass@host:port/db
    #[argh(option)]
    store: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    lars_service::logging::init();

    let (mut config, origin) = match &args.config {
        Some(path) => (ReporterConfig::load(path)?, path.display().to_string()),
        None => (ReporterConfig::default(), "built-in defaults".to_string()),
    };
    let url_origin = match args.store {
        Some(url) => {
            config.store.url = url;
            "--store".to_string()
        }
        None => origin.clone(),
    };
    let store = config.store_url(&url_origin)?;

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.reactor.thread_num > 0 {
        runtime.worker_threads(config.reactor.thread_num);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        info!(store = %store, config = %origin, "lars-reporter starting");
        let server = ReporterServer::bind(&config, store).await?;
        server
            .run(lars_service::signals::shutdown_on_signal())
            .await;
        Ok(())
    })
}
