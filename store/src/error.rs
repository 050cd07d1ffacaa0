//! The store's one error type, [`StoreError`], shared by both backends, and `During`, which
//! turns either driver's error into a [`StoreError::Query`] naming the operation.
//!
//! Each variant names what went wrong and where (the URL part, the operation, the table and row).
//! A variant caused by a driver error returns it from `source()` and does not repeat it in its
//! own message, so an `anyhow` report (`{:#}` or `{:?}`) prints every cause once. To log one with
//! its causes, record it as an error value (`error = &err as &dyn std::error::Error`): the
//! `tracing` formatter then prints the chain. Nothing here ever contains a password.

use std::fmt;
use std::time::Duration;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL could not be understood.
    #[error("bad store URL `{url}`: {reason}")]
    BadUrl {
        /// The URL as given, with any password replaced by `***`.
        url: String,
        /// Which part is wrong and why.
        reason: String,
    },

    /// The store URL of a setting (`--store`, `LARS_STORE`) could not be understood.
    #[error("{setting} is not a store URL")]
    BadSetting {
        /// The option or environment variable that held it.
        setting: &'static str,
        /// Why it is not one ([`StoreError::BadUrl`]).
        #[source]
        source: Box<StoreError>,
    },

    /// The database server could not be reached, or the SQLite file could not be opened.
    #[error("cannot connect to {target}")]
    Connect {
        /// Where we tried to connect (`host:port/db` or the SQLite path).
        target: String,
        /// The backend's error.
        #[source]
        source: BackendError,
    },

    /// The server refused a login over plain TCP (`ssl-mode` unset or `disabled`): a wrong
    /// user or password, or a server that accepts only TLS.
    #[error(
        "{target} refused the login over plain TCP: a wrong user or password, or a server that \
         requires TLS (`require_secure_transport`); for the latter add \
         `?ssl-mode=verify-ca&ssl-ca=CA.pem` to the store URL"
    )]
    PlainRefused {
        /// Where we tried to connect (`host:port/db`).
        target: String,
        /// The server's refusal.
        #[source]
        source: BackendError,
    },

    /// The TLS handshake with the server failed: its certificate is not signed by a trusted CA
    /// (`ssl-ca`), is not issued for the host in the URL (`verify-identity`), or the server
    /// offers no TLS at all.
    #[error(
        "TLS with {target} failed (`ssl-mode={mode}`): the server certificate is not trusted \
         (check `ssl-ca`) or not issued for this host, or the server offers no TLS"
    )]
    Tls {
        /// Where we tried to connect (`host:port/db`).
        target: String,
        /// The URL's `ssl-mode`.
        mode: &'static str,
        /// The TLS library's verdict.
        #[source]
        source: BackendError,
    },

    /// A TLS file named in the store URL (`ssl-ca`, `ssl-cert`, `ssl-key`) cannot be read.
    #[error("cannot read `{option}` file {path:?} of the store URL")]
    TlsFile {
        /// The URL option that names the file.
        option: &'static str,
        /// The path as given.
        path: std::path::PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },

    /// The MySQL database named in the URL does not exist. Opening a store never creates one;
    /// only [`Store::init`](crate::Store::init) (`lars init`) does.
    #[error(
        "database `{database}` does not exist on {server}; create it with `lars init --store {url}`"
    )]
    NoDatabase {
        /// The database name.
        database: String,
        /// The server, `host:port`.
        server: String,
        /// The store URL, password hidden.
        url: String,
    },

    /// The SQLite file named in the URL does not exist, and the store was opened with
    /// [`OpenMode::Existing`](crate::OpenMode::Existing).
    #[error("SQLite file `{path}` does not exist; create it with `lars init --store {url}`")]
    NoSqliteFile {
        /// The path as given.
        path: String,
        /// The store URL.
        url: String,
    },

    /// The database exists and answers, but is not a Lars route database (see
    /// [`SchemaProblem`](crate::SchemaProblem)).
    #[error(
        "{target} is not a Lars route database: {problem}; set it up with `lars init --store {url}`"
    )]
    NotRouteDatabase {
        /// `host:port/db` or the SQLite path.
        target: String,
        /// What is missing.
        problem: crate::SchemaProblem,
        /// The store URL, password hidden.
        url: String,
    },

    /// [`Store::init`](crate::Store::init) could not create the MySQL database.
    #[error(
        "cannot create database `{db}` on {target}; create it by hand or grant CREATE to the \
         store user"
    )]
    CreateDatabase {
        /// The server, `host:port`.
        target: String,
        /// The database name.
        db: String,
        /// The server's refusal.
        #[source]
        source: BackendError,
    },

    /// An operation did not finish within its time limit (connecting, or one operation).
    #[error("{op} on {target} timed out after {after:?}")]
    Timeout {
        /// The operation, e.g. `connect`, `load_routes`.
        op: &'static str,
        /// Where it ran.
        target: String,
        /// The limit that ran out.
        after: Duration,
    },

    /// A statement failed.
    #[error("{op} failed")]
    Query {
        /// The operation, e.g. `add_host`, `create schema`.
        op: &'static str,
        /// The backend's error.
        #[source]
        source: BackendError,
    },

    /// A route edit named a key no route can have (a negative `modid` or `cmdid`); nothing was
    /// written.
    #[error("{op} refused: {source}")]
    NotARoute {
        /// The edit, e.g. `add_host`.
        op: &'static str,
        /// The key.
        #[source]
        source: lars_wire::NotARoute,
    },

    /// A stored row holds a value our types cannot represent; the row was skipped.
    #[error("bad row in {table} ({row}): {column} = {value}: {reason}")]
    BadRow {
        /// The table, e.g. `RouteData`.
        table: &'static str,
        /// Which row: its `id`, or its key where the table has no id.
        row: RowId,
        /// The offending column.
        column: &'static str,
        /// The value as stored, rendered as text.
        value: String,
        /// What the value should have been.
        reason: &'static str,
    },

    /// A name for a module or command was refused before anything was written (see
    /// [`Store::set_module_name`](crate::Store::set_module_name)).
    #[error("cannot name {what}: {reason}")]
    InvalidName {
        /// What was to be named: `modid 3` or `cmdid 7`.
        what: String,
        /// Why the name or the id was refused.
        reason: String,
    },

    /// The blocking thread that runs an SQLite operation panicked or was cancelled.
    #[error("{op}: the SQLite worker thread failed: {reason}")]
    Worker {
        /// The operation.
        op: &'static str,
        /// The panic or cancellation message.
        reason: String,
    },
}

impl StoreError {
    /// Whether the database itself is not there ([`StoreError::NoDatabase`],
    /// [`StoreError::NoSqliteFile`]): waiting does not bring it back, `lars init` does, so a
    /// service refuses to start on it.
    pub fn is_missing_database(&self) -> bool {
        matches!(
            self,
            StoreError::NoDatabase { .. } | StoreError::NoSqliteFile { .. }
        )
    }
}

/// The error of one of the two database drivers.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// From `mysql_async`.
    #[error(transparent)]
    Mysql(#[from] mysql_async::Error),
    /// From `rusqlite`.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Which stored row a [`StoreError::BadRow`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowId {
    /// The row's `id` column (`RouteData`, `RouteChange`, `RouteVersion`).
    Id(i64),
    /// The row's key, rendered as text, for tables without an id (`ServerCallStatus`) or rows
    /// whose id itself is unreadable.
    Key(String),
}

impl fmt::Display for RowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowId::Id(id) => write!(f, "id {id}"),
            RowId::Key(key) => write!(f, "key {key}"),
        }
    }
}

/// Driver results into [`StoreError::Query`] naming the operation; both backends use it.
pub(crate) trait During<T> {
    /// The result, its driver error (if any) as a `Query` error of `op`.
    fn during(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T, E: Into<BackendError>> During<T> for Result<T, E> {
    fn during(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Query {
            op,
            source: e.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// Every message of `err`'s chain, outermost first.
    fn chain(err: &StoreError) -> Vec<String> {
        let mut out = vec![err.to_string()];
        let mut next = err.source();
        while let Some(cause) = next {
            out.push(cause.to_string());
            next = cause.source();
        }
        out
    }

    #[test]
    fn a_driver_error_is_the_source_and_not_repeated_in_the_message() {
        let driver = rusqlite::Error::InvalidColumnName("serverip".into());
        let driver_text = driver.to_string();
        let err: Result<(), _> = Err(driver);
        let err = err.during("load_routes").unwrap_err();
        assert_eq!(err.to_string(), "load_routes failed");
        let messages = chain(&err);
        assert_eq!(
            messages.concat().matches(&driver_text).count(),
            1,
            "{messages:?}"
        );
        assert_eq!(messages[1], driver_text);
    }
}
