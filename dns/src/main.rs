//! `lars-dns` command line: loads the config, binds, serves until SIGINT/SIGTERM.

use anyhow::Context;
use argh::FromArgs;
use lars_dns::{DnsConfig, DnsServer};
use std::path::PathBuf;
use tracing::info;

/// lars-dns: serves Lars routes to agents over TCP and pushes route changes to them.
///
/// Routes come from the store (embedded SQLite file by default, or MySQL/MariaDB). Logs go to
/// stderr; set RUST_LOG (e.g. RUST_LOG=lars_dns=debug) for more detail.
#[derive(FromArgs)]
struct Args {
    /// config file (TOML, see conf/lars_dns.toml); built-in defaults when absent
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
        Some(path) => (DnsConfig::load(path)?, path.display().to_string()),
        None => (DnsConfig::default(), "built-in defaults".to_string()),
    };
    if let Some(url) = args.store {
        config.store.url = url;
    }
    let store = config.store_url(&origin)?;

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.reactor.thread_num > 0 {
        runtime.worker_threads(config.reactor.thread_num);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        info!(store = %store, config = %origin, "lars-dns starting");
        let server = DnsServer::bind(&config, store).await?;
        server
            .run(lars_service::signals::shutdown_on_signal())
            .await;
        Ok(())
    })
}
