//! Route and call-statistics storage for Lars.
//!
//! Owns the database: the route table the dns service serves (`RouteData`), its version and
//! change log (`RouteVersion`, `RouteChange`), and the call statistics the reporter writes
//! (`ServerCallStatus`), larsWeb's names of modules and commands (`ModIDConfig`, `CmdIDConfig`,
//! see [`Names`]), with the table and column names of the original Lars so existing
//! databases keep working. Two backends sit behind one [`Store`], chosen by a [`StoreUrl`]:
//! MySQL/MariaDB (`mysql://user:pass@host:port/db`, pooled, for production) and one SQLite file
//! (`sqlite://PATH`, the default `sqlite://lars.db`, so every binary runs with no database
//! server and several processes can share the file). Both pass the same tests.
//!
//! Which store a command means when it names none is [`StoreChoice::resolve`]'s rule
//! (`--store`, else `LARS_STORE`, else this user's default file), shared by every command line.
//!
//! Databases are never created by accident: [`Store::open`] opens a database that exists and
//! runs no DDL (a missing one is [`StoreError::NoDatabase`] / [`StoreError::NoSqliteFile`]);
//! [`Store::init`] (`lars init`) is the one way to create a database and its schema, and the
//! services' [`OpenMode::CreateIfMissing`] the one exception, for SQLite files only, so the
//! embedded default works on a fresh machine. [`Store::check_route_database`] tells whether a
//! database is a Lars route database (see `schema.rs`).
//!
//! Callers are the dns service, the reporter and the `lars` CLI. Every method is async on the
//! tokio runtime and returns a [`StoreError`]; nothing in here panics on what the database or
//! the URL holds. A stored row our types cannot hold is skipped and reported, never fatal.
//!
//! With the `testing` feature, the `testing` module offers throw-away databases and a cuttable TCP proxy
//! for other crates' tests.

#![deny(missing_docs)]

mod audit;
mod edit;
mod error;
mod location;
mod mysql;
mod names;
mod route;
mod row;
mod schema;
mod sqlite;
mod status;
#[cfg(feature = "testing")]
pub mod testing;
mod url;

use std::time::Duration;

use lars_wire::{HostAddr, RouteKey};

pub use crate::audit::{
    AUDIT_ACTION_MAX, AUDIT_PEER_MAX, AUDIT_WHO_MAX, AuditEntry, LIST_LIMIT_MAX, RouteChangeRow,
};
pub use crate::edit::{EditOutcome, next_version};
pub use crate::error::{BackendError, RowId, StoreError};
pub use crate::location::{STORE_ENV, StoreChoice, StoreSource, default_store_path};
pub use crate::names::{MAX_NAME_CHARS, NameChange, Names};
pub use crate::route::{RouteLoad, RouteTable};
pub use crate::schema::{InitReport, SchemaProblem};
pub use crate::status::{CallStatusKey, CallStatusRow, coalesce_call_status};
pub use crate::url::{
    DEFAULT_MYSQL_DATABASE, DEFAULT_MYSQL_PORT, DEFAULT_STORE_URL, MYSQL_URL_OPTIONS, MysqlTls,
    MysqlUrl, SslMode, StoreUrl,
};

use crate::edit::RouteEdit;
use crate::mysql::MysqlStore;
use crate::names::NameTable;
use crate::sqlite::SqliteStore;

/// What opening a store does when its database is not there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OpenMode {
    /// The database must exist: a missing MySQL database is [`StoreError::NoDatabase`], a missing
    /// SQLite file [`StoreError::NoSqliteFile`]. Nothing is created and no DDL runs. For every
    /// command and tool.
    #[default]
    Existing,
    /// For the services (lars-dns, lars-reporter) only, so the embedded default works on a fresh
    /// machine: a missing SQLite file is created, and an SQLite database with no tables at all
    /// (one just created, here or by a service starting at the same moment) gets the schema,
    /// exactly as [`Store::init`] makes it; a file with any table is left as it is. A MySQL
    /// database is never created this way: with a `mysql://` URL this is [`OpenMode::Existing`].
    CreateIfMissing,
}

/// How a store is opened: time limits, and what to do when the database is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// MySQL: how long to wait for a connection (TCP connect, handshake, or a free pooled one).
    pub connect_timeout: Duration,
    /// MySQL: how long one operation may take once connected (all its round trips).
    /// SQLite: how long to wait for another process's lock (the busy timeout).
    pub op_timeout: Duration,
    /// What to do when the database is missing; [`OpenMode::Existing`] unless a service says
    /// otherwise.
    pub mode: OpenMode,
}

impl StoreOptions {
    /// What the services (lars-dns, lars-reporter) open their store with: the default limits and
    /// [`OpenMode::CreateIfMissing`], so the embedded SQLite default is made on a first start
    /// (a MySQL database never is).
    pub fn for_service() -> StoreOptions {
        StoreOptions::default().with_mode(OpenMode::CreateIfMissing)
    }

    /// These options with `mode`.
    pub fn with_mode(self, mode: OpenMode) -> StoreOptions {
        StoreOptions { mode, ..self }
    }
}

impl Default for StoreOptions {
    /// 5 s to connect, 10 s per operation: long enough for a loaded server, short enough that
    /// a dead one is noticed well within the dns service's 10 s full-reload period.
    /// [`OpenMode::Existing`].
    fn default() -> Self {
        StoreOptions {
            connect_timeout: Duration::from_secs(5),
            op_timeout: Duration::from_secs(10),
            mode: OpenMode::Existing,
        }
    }
}

/// The route and call-statistics store. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    url: StoreUrl,
}

/// The two backends; the enum behind [`Store`].
#[derive(Clone)]
enum Backend {
    /// MySQL or MariaDB through a `mysql_async` pool.
    Mysql(MysqlStore),
    /// One SQLite file.
    Sqlite(SqliteStore),
}

/// Calls the same method on whichever backend `$store` has.
macro_rules! on_backend {
    ($store:expr, $method:ident ( $($arg:expr),* )) => {
        match &$store.backend {
            Backend::Mysql(s) => s.$method($($arg),*).await,
            Backend::Sqlite(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens the existing store at `url` with default [`StoreOptions`] ([`OpenMode::Existing`]):
    /// connects and checks that the database is there. Creates nothing and runs no DDL; does
    /// not check the tables (see [`Store::check_route_database`]). Safe from several processes
    /// at once.
    pub async fn open(url: &StoreUrl) -> Result<Store, StoreError> {
        Store::open_with(url, StoreOptions::default()).await
    }

    /// [`Store::open`] with explicit time limits and [`OpenMode`].
    pub async fn open_with(url: &StoreUrl, options: StoreOptions) -> Result<Store, StoreError> {
        let backend = match url {
            StoreUrl::Mysql(m) => Backend::Mysql(MysqlStore::open(m, url, options).await?),
            StoreUrl::Sqlite(path) => Backend::Sqlite(SqliteStore::open(path, url, options).await?),
        };
        Ok(Store {
            backend,
            url: url.clone(),
        })
    }

    /// Creates the store at `url` if it is not there, with default time limits: MySQL: the
    /// database (`CREATE DATABASE IF NOT EXISTS`), the tables and the `RouteVersion` row
    /// `id = 1` (version 0); SQLite: the file (in WAL mode), the tables and the row. Idempotent:
    /// on a Lars database it changes nothing. The report says what it did. The one way, with
    /// the services' SQLite first start, that a database comes to exist.
    pub async fn init(url: &StoreUrl) -> Result<InitReport, StoreError> {
        Store::init_with(url, StoreOptions::default()).await
    }

    /// [`Store::init`] with explicit time limits (the mode is ignored).
    pub async fn init_with(
        url: &StoreUrl,
        options: StoreOptions,
    ) -> Result<InitReport, StoreError> {
        match url {
            StoreUrl::Mysql(m) => MysqlStore::init(m, url, options).await,
            StoreUrl::Sqlite(path) => SqliteStore::init(path, url, options).await,
        }
    }

    /// What a service does before it starts: opens the store at `url` once with `options` and
    /// closes it. `Err` only when the database does not exist
    /// ([`StoreError::is_missing_database`]): no retry brings it back, so the service refuses to
    /// start, naming it. Any other failure (server down, a timeout) is `Ok`: the service starts
    /// and its own retries report it.
    pub async fn refuse_if_missing(
        url: &StoreUrl,
        options: StoreOptions,
    ) -> Result<(), StoreError> {
        match Store::open_with(url, options).await {
            Ok(store) => {
                store.close().await;
                Ok(())
            }
            Err(e) if e.is_missing_database() => Err(e),
            Err(_) => Ok(()),
        }
    }

    /// Checks that the database is a Lars route database (the tables `RouteData`,
    /// `RouteVersion`, `RouteChange` and the row `RouteVersion.id = 1`); otherwise
    /// [`StoreError::NotRouteDatabase`] saying what is missing.
    pub async fn check_route_database(&self) -> Result<(), StoreError> {
        let state = on_backend!(self, schema_state())?;
        match state.route_problem() {
            None => Ok(()),
            Some(problem) => Err(self.not_route_database(problem)),
        }
    }

    fn not_route_database(&self, problem: SchemaProblem) -> StoreError {
        StoreError::NotRouteDatabase {
            target: self.url.target(),
            problem,
            url: self.url.to_string(),
        }
    }

    /// The URL the store was opened with (prints without the password).
    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, ping())
    }

    /// The current route version (`RouteVersion.version` of row `id = 1`). A missing row is
    /// [`StoreError::NotRouteDatabase`] ([`SchemaProblem::NoVersionRow`]), never a version.
    pub async fn route_version(&self) -> Result<i64, StoreError> {
        let version = on_backend!(self, route_version())?;
        version.ok_or_else(|| self.not_route_database(SchemaProblem::NoVersionRow))
    }

    /// The whole route table. Rows with a value our types cannot hold are skipped and listed in
    /// [`RouteLoad::rejected`]; duplicate `(key, host)` rows collapse into one host; hosts keep
    /// `RouteData.id` order.
    pub async fn load_routes(&self) -> Result<RouteLoad, StoreError> {
        on_backend!(self, load_routes())
    }

    /// The distinct keys of the `RouteChange` rows with `version <= version`, in key order.
    pub async fn changed_keys_up_to(&self, version: i64) -> Result<Vec<RouteKey>, StoreError> {
        on_backend!(
            self,
            changed_keys("changed_keys_up_to", route::SELECT_CHANGED_KEYS, version)
        )
    }

    /// The distinct keys of the `RouteChange` rows with `version > version`, in key order: the
    /// routes edited since a snapshot at `version`, whichever process loaded it.
    pub async fn changed_keys_after(&self, version: i64) -> Result<Vec<RouteKey>, StoreError> {
        on_backend!(
            self,
            changed_keys(
                "changed_keys_after",
                route::SELECT_CHANGED_KEYS_AFTER,
                version
            )
        )
    }

    /// Deletes the `RouteChange` rows with `version <= version`; returns how many.
    pub async fn delete_changes_up_to(&self, version: i64) -> Result<u64, StoreError> {
        on_backend!(self, delete_changes_up_to(version))
    }

    /// Deletes every `RouteChange` row (the dns service does this at start); returns how many.
    pub async fn clear_changes(&self) -> Result<u64, StoreError> {
        on_backend!(self, clear_changes())
    }

    /// Adds `host` to the route of `key`. In one transaction: inserts the `RouteData` row,
    /// inserts `RouteChange(key, v)` and sets `RouteVersion.version = v`, where
    /// `v = max(now, version + 1)` ([`next_version`]). A host already there changes nothing and
    /// writes no version.
    pub async fn add_host(&self, key: RouteKey, host: HostAddr) -> Result<EditOutcome, StoreError> {
        self.edit(RouteEdit::AddHost(key, host)).await
    }

    /// Removes `host` from the route of `key` (every duplicate row of it), with the version bump
    /// of [`Store::add_host`]. A host not there changes nothing and writes no version.
    pub async fn remove_host(
        &self,
        key: RouteKey,
        host: HostAddr,
    ) -> Result<EditOutcome, StoreError> {
        self.edit(RouteEdit::RemoveHost(key, host)).await
    }

    /// Removes every host of `key`, with the version bump of [`Store::add_host`]. An unknown
    /// key changes nothing and writes no version.
    pub async fn remove_route(&self, key: RouteKey) -> Result<EditOutcome, StoreError> {
        self.edit(RouteEdit::RemoveRoute(key)).await
    }

    /// Runs one route edit with its version bump and logs it once committed. A database without
    /// the `RouteVersion` row is refused ([`StoreError::NotRouteDatabase`]) and left unchanged.
    async fn edit(&self, edit: RouteEdit) -> Result<EditOutcome, StoreError> {
        edit.key()
            .checked()
            .map_err(|source| StoreError::NotARoute {
                op: edit.op(),
                source,
            })?;
        let outcome = on_backend!(self, edit(edit))?
            .ok_or_else(|| self.not_route_database(SchemaProblem::NoVersionRow))?;
        edit.log_committed(outcome);
        Ok(outcome)
    }

    /// The names of modules and commands (`ModIDConfig`, `CmdIDConfig`). A database without
    /// those tables (one made before them) has no names, which is not an error. Rows our types
    /// cannot hold are skipped and listed in [`Names::rejected`].
    pub async fn load_names(&self) -> Result<Names, StoreError> {
        on_backend!(self, load_names())
    }

    /// Names module `modid` (`ModIDConfig`): adds its row or renames it. `modid` must be 0 or
    /// more and `name`, trimmed, non-empty, at most [`MAX_NAME_CHARS`] characters and without
    /// control characters; otherwise [`StoreError::InvalidName`] and nothing is written. Creates
    /// the table first in a database that lacks it.
    pub async fn set_module_name(&self, modid: i32, name: &str) -> Result<NameChange, StoreError> {
        self.set_name(NameTable::Module, modid, name).await
    }

    /// Names command `cmdid` (`CmdIDConfig`, one name for the cmdid in every module), with the
    /// rules of [`Store::set_module_name`].
    pub async fn set_command_name(&self, cmdid: i32, name: &str) -> Result<NameChange, StoreError> {
        self.set_name(NameTable::Command, cmdid, name).await
    }

    async fn set_name(
        &self,
        table: NameTable,
        id: i32,
        name: &str,
    ) -> Result<NameChange, StoreError> {
        let name = names::check_name(table, id, name)?;
        let change = on_backend!(self, set_name(table, id, name.clone()))?;
        if change != NameChange::Unchanged {
            tracing::info!(table = table.table(), id, %name, ?change, "name set");
        }
        Ok(change)
    }

    /// Writes call statistics: rows with the same key are coalesced first (the last one wins),
    /// then written as multi-row upserts (one statement per 1000 rows, several in one
    /// transaction). Returns the number of rows written after coalescing.
    pub async fn upsert_call_status(&self, rows: &[CallStatusRow]) -> Result<u64, StoreError> {
        let rows = coalesce_call_status(rows);
        if rows.is_empty() {
            return Ok(0);
        }
        on_backend!(self, upsert_call_status(rows))
    }

    /// Writes call statistics one statement per row, in order, as the original Lars did: the
    /// baseline for benchmarks. Same final contents as [`Store::upsert_call_status`]; returns
    /// `rows.len()`.
    pub async fn upsert_call_status_per_row(
        &self,
        rows: &[CallStatusRow],
    ) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        on_backend!(self, upsert_call_status_per_row(rows.to_vec()))
    }

    /// The stored call statistics, optionally only of one modid and/or cmdid, in key order.
    /// Rows our types cannot hold are logged and skipped.
    pub async fn load_call_status(
        &self,
        modid: Option<i32>,
        cmdid: Option<i32>,
    ) -> Result<Vec<CallStatusRow>, StoreError> {
        on_backend!(self, load_call_status(modid, cmdid))
    }

    /// The newest `limit` (at most [`LIST_LIMIT_MAX`]) `RouteChange` rows, newest first. Rows
    /// our types cannot hold are logged and skipped.
    pub async fn load_route_changes(&self, limit: u32) -> Result<Vec<RouteChangeRow>, StoreError> {
        on_backend!(
            self,
            load_newest(
                "load_route_changes",
                audit::SELECT_CHANGES,
                limit,
                audit::decode_change_row
            )
        )
    }

    /// Creates the console's audit table `ConsoleAudit` when the database lacks it (a database
    /// made before the console existed); `lars init` makes it with the rest of the schema.
    pub async fn ensure_audit_table(&self) -> Result<(), StoreError> {
        on_backend!(self, ensure_audit_table())
    }

    /// Appends `entry` to the console's audit log (its `id` is ignored; the database assigns it).
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        on_backend!(self, append_audit(entry.clone()))
    }

    /// The newest `limit` (at most [`LIST_LIMIT_MAX`]) audit entries, newest first.
    pub async fn load_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        on_backend!(
            self,
            load_newest(
                "load_audit",
                audit::SELECT_AUDIT,
                limit,
                audit::decode_audit_row
            )
        )
    }

    /// Closes the store's connections for every clone: MySQL says goodbye to the server
    /// (waiting at most the operation timeout); SQLite connections close as the last clone
    /// drops.
    pub async fn close(self) {
        if let Backend::Mysql(s) = self.backend {
            s.close().await;
        }
    }

    /// Testing only: runs one SQL statement as is and returns the affected rows, to plant rows
    /// the API refuses to write.
    #[cfg(feature = "testing")]
    pub async fn execute_raw(&self, sql: &str) -> Result<u64, StoreError> {
        on_backend!(self, execute_raw(sql.to_string()))
    }

    /// Testing only: runs a query and returns the first column of its first row as an integer
    /// (`None` without a row or when it is not an integer).
    #[cfg(feature = "testing")]
    pub async fn query_i64(&self, sql: &str) -> Result<Option<i64>, StoreError> {
        on_backend!(self, query_i64(sql.to_string()))
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send<T: Send>(_: &T) {}

    /// Compiles only if every operation's future is `Send`, so services can `tokio::spawn` them.
    #[allow(dead_code)]
    fn store_futures_are_send(
        store: &Store,
        rows: &[CallStatusRow],
        key: RouteKey,
        host: HostAddr,
    ) {
        is_send(&Store::open(&StoreUrl::default()));
        is_send(&Store::init(&StoreUrl::default()));
        is_send(&Store::refuse_if_missing(
            &StoreUrl::default(),
            StoreOptions::default(),
        ));
        is_send(&store.check_route_database());
        is_send(&store.ping());
        is_send(&store.route_version());
        is_send(&store.load_routes());
        is_send(&store.changed_keys_up_to(0));
        is_send(&store.changed_keys_after(0));
        is_send(&store.delete_changes_up_to(0));
        is_send(&store.clear_changes());
        is_send(&store.add_host(key, host));
        is_send(&store.remove_host(key, host));
        is_send(&store.remove_route(key));
        is_send(&store.load_route_changes(1));
        is_send(&store.ensure_audit_table());
        is_send(&store.append_audit(&AuditEntry::new(0, "", "", "")));
        is_send(&store.load_audit(1));
        is_send(&store.upsert_call_status(rows));
        is_send(&store.upsert_call_status_per_row(rows));
        is_send(&store.load_call_status(None, None));
        is_send(&store.load_names());
        is_send(&store.set_module_name(1, "x"));
        is_send(&store.set_command_name(1, "x"));
        is_send(&store.clone().close());
    }
}
