//! `lars-console` command line: loads the config, opens the store, resolves the operator
//! password, binds, prints the URL (and the one-time token when no password is set), serves
//! until SIGINT/SIGTERM. `--hash-password` turns a password read from stdin into the
//! `[console] password_hash` value instead.

use anyhow::Context;
use argh::FromArgs;
use lars_console::{ConsoleConfig, ConsoleServer};
use std::io::BufRead;
use std::path::PathBuf;

/// lars-console: the Lars operator console, routes and their health in a browser.
///
/// Listens on 127.0.0.1:7790 by default. The operator logs in with [console] user and the
/// password whose argon2 hash is [console] password_hash, or the one in the environment variable
/// [console] password_env (LARS_CONSOLE_PASSWORD); with neither, a one-time token is printed at
/// start and the console listens on loopback only. Logs go to stderr (RUST_LOG).
#[derive(FromArgs)]
struct Args {
    /// config file (TOML, see conf/lars_console.toml); built-in defaults when absent
    #[argh(option)]
    config: Option<PathBuf>,
    /// store URL, overriding the config: sqlite://PATH or mysql://user:pass@host:port/db
    #[argh(option)]
    store: Option<String>,
    /// read a password from stdin, print its argon2 hash for [console] password_hash, and exit
    #[argh(switch)]
    hash_password: bool,
}

fn main() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    if args.hash_password {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        let password = line.trim_end_matches(['\r', '\n']);
        anyhow::ensure!(
            !password.is_empty(),
            "the password read from stdin is empty"
        );
        println!("{}", lars_console::auth::hash_password(password)?);
        return Ok(());
    }
    lars_service::process::serve(
        "lars-console",
        args.config.as_deref(),
        args.store,
        |config: ConsoleConfig, store, shutdown| async move {
            let server = ConsoleServer::bind(config, &store)
                .await
                .context("lars-console cannot start")?;
            if let Some(token) = server.one_time_token() {
                tracing::warn!(
                    token = %token,
                    "no operator password is set; log in with this one-time token (valid until \
                     the console stops)"
                );
                println!(
                    "lars-console: log in at http://{}/ with the one-time token {token}",
                    server.addr()
                );
            } else {
                println!("lars-console: http://{}/", server.addr());
            }
            server.run(shutdown).await;
            Ok(())
        },
    )
}
