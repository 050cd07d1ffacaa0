//! How the `lars` commands reach the store: every command that reads or edits opens an existing
//! store and never creates one ([`open`]: a missing MySQL database or SQLite file is an error
//! naming it and pointing to `lars init`, and nothing is made); `lars init` ([`init`]) is the one
//! command that creates a database and its schema.

use anyhow::Context;
use lars_store::{Store, StoreUrl};

/// The store of `--store URL`, which must exist.
pub async fn open(url: &str) -> anyhow::Result<Store> {
    let url = parse(url)?;
    Store::open(&url)
        .await
        .with_context(|| format!("cannot open store {url}"))
}

/// The store of `--store URL`, which must exist and be a Lars route database (the route tables
/// and the route version), for the route commands.
pub async fn open_routes(url: &str) -> anyhow::Result<Store> {
    let store = open(url).await?;
    store.check_route_database().await?;
    Ok(store)
}

/// `lars init --store URL`: creates the database (MySQL) or file (SQLite) if missing, the tables
/// and the route version; prints what it did. Idempotent.
pub async fn init(url: &str) -> anyhow::Result<()> {
    let url = parse(url)?;
    let report = Store::init(&url)
        .await
        .with_context(|| format!("cannot set up store {url}"))?;
    println!("{report}");
    Ok(())
}

/// `url` parsed; the error shows it with the password hidden (`StoreError::BadUrl`), never as
/// typed.
fn parse(url: &str) -> anyhow::Result<StoreUrl> {
    url.parse().context("bad --store")
}
