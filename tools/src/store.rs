//! How the `lars` commands reach the store: which one ([`lars_store::StoreChoice::resolve`]:
//! `--store`, else `LARS_STORE`, else this user's default file, the rule the launcher and the
//! console follow too, shown by `lars store`), and that every command that reads or edits opens
//! an existing store and never creates one ([`open`]: a missing MySQL database or SQLite file is
//! an error naming it and pointing to `lars init`, and nothing is made); `lars init` ([`init`])
//! is the one command that creates a database and its schema (and the default file's
//! directory).

use anyhow::Context;
use lars_store::{STORE_ENV, Store, StoreChoice, StoreSource};

/// The store of `--store URL` (or `LARS_STORE`, or the default), which must exist.
pub async fn open(flag: Option<&str>) -> anyhow::Result<Store> {
    let choice = choose(flag)?;
    Store::open(&choice.url)
        .await
        .with_context(|| format!("cannot open store {} ({})", choice.url, origin(&choice)))
}

/// The store of [`open`], which must also be a Lars route database (the route tables and the
/// route version), for the route commands.
pub async fn open_routes(flag: Option<&str>) -> anyhow::Result<Store> {
    let store = open(flag).await?;
    store.check_route_database().await?;
    Ok(store)
}

/// `lars init`: creates the database (MySQL) or file (SQLite) if missing, the tables and the
/// route version, and for the default file its directory; prints what it did. Idempotent.
pub async fn init(flag: Option<&str>) -> anyhow::Result<()> {
    let choice = choose(flag)?;
    if let Some(dir) = choice.default_dir() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot make the default store's directory {dir:?}"))?;
    }
    let report = Store::init(&choice.url)
        .await
        .with_context(|| format!("cannot set up store {}", choice.url))?;
    println!("{report}");
    Ok(())
}

/// `lars store`: the store the store commands use and where that came from; with `url_only`
/// just the URL (password hidden), which `run_lars` starts the services on.
pub fn show(flag: Option<&str>, url_only: bool) -> anyhow::Result<()> {
    let choice = choose(flag)?;
    if url_only {
        println!("{}", choice.url);
    } else {
        println!("{} ({})", choice.url, origin(&choice));
    }
    Ok(())
}

/// Where `choice` came from, for messages.
fn origin(choice: &StoreChoice) -> String {
    match choice.source {
        StoreSource::Flag => "from --store".to_string(),
        StoreSource::Env => format!("from {STORE_ENV}"),
        StoreSource::Default => format!("the default; set {STORE_ENV} or --store for another"),
    }
}

/// The store `flag` means; a bad URL names where it came from, with the password hidden.
fn choose(flag: Option<&str>) -> anyhow::Result<StoreChoice> {
    Ok(StoreChoice::resolve(flag)?)
}
