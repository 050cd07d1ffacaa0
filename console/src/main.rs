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
    /// store URL: sqlite://PATH or mysql://user:pass@host:port/db; without it, LARS_STORE,
    /// else the config's [store] url when --config is given, else the default store the lars
    /// CLI and run_lars use (`lars store` prints it)
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
    let store = store_override(args.store, args.config.is_some());
    lars_service::process::serve(
        "lars-console",
        args.config.as_deref(),
        store,
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

/// The store URL that overrides the config's `[store] url`, by the rule the `lars` CLI and
/// `run_lars` follow (`lars_store::StoreChoice`): `--store`, else `LARS_STORE`; then, when a
/// config file names its own store, that one (`None` here); else the shared default file, so a
/// console started with no flags shows the store `lars route add` writes.
fn store_override(flag: Option<String>, has_config: bool) -> Option<String> {
    let env = std::env::var(lars_store::STORE_ENV).ok();
    choose_store(flag, env, has_config, &lars_store::default_store_path())
}

/// [`store_override`] with the environment and the default file given.
fn choose_store(
    flag: Option<String>,
    env: Option<String>,
    has_config: bool,
    default: &std::path::Path,
) -> Option<String> {
    match (flag, env.filter(|url| !url.is_empty())) {
        (Some(url), _) | (None, Some(url)) => Some(url),
        (None, None) if has_config => None,
        (None, None) => Some(format!("sqlite://{}", default.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::choose_store;
    use std::path::Path;

    #[test]
    fn the_store_is_the_flag_then_the_environment_then_the_config_then_the_shared_default() {
        let default = Path::new("/home/op/.local/state/lars/lars.db");
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            choose_store(s("sqlite:///a.db"), s("sqlite:///b.db"), true, default),
            s("sqlite:///a.db")
        );
        assert_eq!(
            choose_store(None, s("sqlite:///b.db"), true, default),
            s("sqlite:///b.db")
        );
        assert_eq!(choose_store(None, None, true, default), None);
        assert_eq!(choose_store(None, s(""), true, default), None);
        assert_eq!(
            choose_store(None, None, false, default),
            s("sqlite:///home/op/.local/state/lars/lars.db")
        );
    }
}
