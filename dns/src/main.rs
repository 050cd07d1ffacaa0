//! `lars-dns` command line: loads the config, refuses a store whose database does not exist,
//! binds, serves until SIGINT/SIGTERM.

use anyhow::Context;
use argh::FromArgs;
use lars_dns::{DnsConfig, DnsServer};
use lars_service::metrics::MetricsEndpoint;
use lars_store::{Store, StoreOptions};
use std::path::PathBuf;

/// lars-dns: serves Lars routes to agents over TCP and pushes route changes to them.
///
/// Routes come from the store (embedded SQLite file by default, made on the first start, or a
/// MySQL/MariaDB database made with `lars init`; lars-dns exits when that database does not
/// exist, and serves nothing until it holds the Lars tables). Logs go to stderr; set RUST_LOG
/// (e.g. RUST_LOG=lars_dns=debug) for more detail.
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
    lars_service::process::serve(
        "lars-dns",
        args.config.as_deref(),
        args.store,
        |config: DnsConfig, store, shutdown| async move {
            Store::refuse_if_missing(&store, StoreOptions::for_service())
                .await
                .context("lars-dns cannot start")?;
            let server = DnsServer::bind(&config, store).await?;
            let metrics = config.metrics.listen_addr();
            let _endpoint = MetricsEndpoint::start_if(metrics, server.metrics()).await?;
            server.run(shutdown).await;
            Ok(())
        },
    )
}
