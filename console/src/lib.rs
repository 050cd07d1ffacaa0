//! The Lars operator console: routes, their live health, their changes and the services'
//! metrics in a browser, behind a login.
//!
//! A server-rendered web application (axum, `maud`, one small script that refreshes the health
//! table) over the same store the dns service reads: route edits go through the store's
//! one-transaction edits, exactly as `lars route` makes them, so lars-dns pushes them to the
//! agents within its version poll; each one is recorded in the console's audit table. The parts:
//! `config` (settings), `auth` (credential, sessions, CSRF, login rate limit), `forms` (input
//! validation), `health` (what the call statistics say), `names` (route names), `pages` (the
//! HTML) and `server` (handlers and security headers). [`ConsoleServer`] binds and serves it;
//! `main.rs` is the `lars-console` command line. See docs/CONSOLE.md.

#![deny(missing_docs)]

pub mod auth;
pub mod config;
pub mod forms;
pub mod health;
pub mod names;
pub mod pages;
pub mod server;

pub use config::ConsoleConfig;

use auth::{Credential, CredentialSource};
use lars_store::{Store, StoreUrl};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or is not a Lars route database.
    #[error("cannot use the store {url}")]
    Store {
        /// The store, as its URL prints (no password).
        url: String,
        /// Why.
        #[source]
        source: lars_store::StoreError,
    },
    /// The audit table is missing and could not be created.
    #[error("cannot create the audit table ConsoleAudit in {url}")]
    AuditTable {
        /// The store.
        url: String,
        /// Why.
        #[source]
        source: lars_store::StoreError,
    },
    /// The password setting cannot be used.
    #[error(transparent)]
    Credential(#[from] auth::CredentialError),
    /// No password is set and the address is not loopback.
    #[error(
        "refusing to listen on {addr} without a password: set [console] password_hash or the \
         environment variable {env}, or listen on a loopback address"
    )]
    OpenWithoutPassword {
        /// The listen address.
        addr: SocketAddr,
        /// The password variable.
        env: String,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A bound console, ready to serve.
pub struct ConsoleServer {
    listener: TcpListener,
    addr: SocketAddr,
    console: Arc<server::Console>,
    token: Option<String>,
}

impl ConsoleServer {
    /// Opens the store at `url` (it must exist and be a Lars route database), creates the audit
    /// table if the database lacks it, resolves the operator credential (reading the
    /// environment), refuses a non-loopback address without a password, and binds.
    pub async fn bind(config: ConsoleConfig, url: &StoreUrl) -> Result<ConsoleServer, StartError> {
        let store_err = |source| StartError::Store {
            url: url.to_string(),
            source,
        };
        let store = Store::open(url).await.map_err(store_err)?;
        store.check_route_database().await.map_err(store_err)?;
        store
            .ensure_audit_table()
            .await
            .map_err(|source| StartError::AuditTable {
                url: url.to_string(),
                source,
            })?;
        let settings = config.console;
        let (credential, token) = Credential::resolve(
            &settings.user,
            &settings.password_hash,
            &settings.password_env,
            |var| std::env::var_os(var),
        )?;
        if credential.source() == CredentialSource::OneTimeToken
            && !settings.listen.ip().is_loopback()
        {
            return Err(StartError::OpenWithoutPassword {
                addr: settings.listen,
                env: settings.password_env.clone(),
            });
        }
        let addr = settings.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let console = server::Console::new(store, settings, config.services, credential);
        Ok(ConsoleServer {
            listener,
            addr,
            console: Arc::new(console),
            token,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The one-time login token, when no password was set.
    pub fn one_time_token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Serves until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let url = format!("http://{}/", self.addr);
        info!(addr = %self.addr, url = %url, "lars-console serving");
        lars_service::metrics::serve_http(self.listener, server::router(self.console), shutdown)
            .await;
        info!("lars-console stopped");
    }
}
