//! `seed-routes`: fills an embedded (SQLite) store with many routes at once for the memory
//! benchmark: `--routes` routes `(modid, 1)` for modid 1..=routes, each with `--hosts` hosts, in
//! one transaction that also bumps `RouteVersion` like a route edit does. The schema is created
//! by `Store::init` first (as `lars init` does), so the file is exactly what lars-dns expects.

use anyhow::Context;
use argh::FromArgs;
use lars_store::{Store, StoreUrl};

/// seed-routes: bulk-load routes into an embedded store for benchmarks.
#[derive(FromArgs)]
struct Args {
    /// store URL, sqlite://PATH only
    #[argh(option)]
    store: String,
    /// number of routes (default 100000)
    #[argh(option, default = "100_000")]
    routes: u32,
    /// hosts per route (default 10)
    #[argh(option, default = "10")]
    hosts: u32,
}

fn main() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    let url: StoreUrl = args.store.parse()?;
    let StoreUrl::Sqlite(path) = &url else {
        anyhow::bail!("seed-routes writes SQLite stores only, not {url}");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Creates the file and its schema exactly as `lars init` does.
    runtime
        .block_on(Store::init(&url))
        .context("setting up the store")?;
    let mut db = rusqlite::Connection::open(path)?;
    let tx = db.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO RouteData (modid, cmdid, serverip, serverport) VALUES (?1, 1, ?2, ?3)",
        )?;
        for modid in 1..=args.routes {
            for h in 0..args.hosts {
                // 10.x.y.z: a distinct address per host of a route.
                let ip = 0x0A00_0000u32 | ((modid & 0xFFFF) << 8) | h;
                insert.execute(rusqlite::params![modid, ip, 9000 + h])?;
            }
        }
    }
    tx.execute(
        "UPDATE RouteVersion SET version = version + 1 WHERE id = 1",
        [],
    )?;
    tx.commit()?;
    println!(
        "seeded {} routes x {} hosts into {}",
        args.routes,
        args.hosts,
        path.display()
    );
    Ok(())
}
