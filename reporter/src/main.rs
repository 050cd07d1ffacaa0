//! `lars-reporter` command line: loads the config, refuses a store whose database does not exist,
//! binds, serves until SIGINT/SIGTERM, then writes what is still pending and exits.

use anyhow::Context;
use argh::FromArgs;
use lars_reporter::{ReporterConfig, ReporterServer};
use lars_service::metrics::MetricsEndpoint;
use lars_store::{Store, StoreOptions};
use std::path::PathBuf;

/// lars-reporter: stores the call statistics Lars agents send over TCP.
///
/// Statistics go to the ServerCallStatus table of the store (embedded SQLite file by default, or
/// MySQL/MariaDB), in batched upserts that keep the latest row per key while the database is
/// away. The embedded SQLite file is made on the first start; a MySQL database is made with
/// `lars init`, and lars-reporter exits when it does not exist. Logs go to stderr; set RUST_LOG
/// (e.g. RUST_LOG=lars_reporter=debug) for more detail.
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
    lars_service::process::serve(
        "lars-reporter",
        args.config.as_deref(),
        args.store,
        |config: ReporterConfig, store, shutdown| async move {
            Store::refuse_if_missing(&store, StoreOptions::for_service())
                .await
                .context("lars-reporter cannot start")?;
            let server = ReporterServer::bind(&config, store).await?;
            let metrics = config.metrics.listen_addr();
            let _endpoint = MetricsEndpoint::start_if(metrics, server.metrics()).await?;
            server.run(shutdown).await;
            Ok(())
        },
    )
}
