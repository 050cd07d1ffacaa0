//! The MySQL/MariaDB backend, through a `mysql_async` connection pool.
//!
//! Owns everything that touches `mysql_async`: checking on open that the database exists (a
//! missing one is [`StoreError::NoDatabase`], at open and on any later connection), creating the
//! database and schema only in [`MysqlStore::init`], reading what schema a database has, running
//! the SQL both backends share (from `route.rs`, `edit.rs`, `status.rs`) and the SQL only MySQL
//! speaks (the version lock, the upserts), and the time limits. Every operation takes one pooled connection
//! within `connect_timeout` and must finish within `op_timeout`; a limit that runs out is a
//! [`StoreError::Timeout`], never a hang. Called only through [`Store`](crate::Store).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{
    ClientIdentity, Conn, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Row, SslOpts,
    TxOpts, Value,
};
use tokio::time::timeout;

use crate::audit::{self, AUDIT_TABLE, AuditEntry};
use crate::edit::{EditPlan, EditStep, RouteEdit, Statement, now_unix_seconds};
use crate::error::During;
use crate::names::{NAME_TABLES, NameChange, NameTable, Names, decode_name_row, has_table};
use crate::route::{
    CLEAR_CHANGES, DELETE_CHANGES_UP_TO, SELECT_ROUTES, SELECT_VERSION, decode_change_key,
    decode_route_row, decode_version,
};
use crate::row::Cell;
use crate::schema::{InitReport, SchemaState};
use crate::status::{INSERT_COLUMNS, ROW_PLACEHOLDERS, UPSERT_CHUNK_ROWS, keep_good};
use lars_wire::RouteKey;

use crate::{
    BackendError, CallStatusRow, EditOutcome, MysqlTls, MysqlUrl, RouteLoad, SslMode, StoreError,
    StoreOptions, StoreUrl, status,
};

/// The server's "Unknown database" error (`ER_BAD_DB_ERROR`): the database in the URL does not
/// exist.
const ER_BAD_DB_ERROR: u16 = 1049;

/// "Access denied for user" (`ER_ACCESS_DENIED_ERROR`).
const ER_ACCESS_DENIED_ERROR: u16 = 1045;

/// MySQL's "Connections using insecure transport are prohibited" (`ER_SECURE_TRANSPORT_REQUIRED`).
const ER_SECURE_TRANSPORT_REQUIRED: u16 = 3159;

/// The tables of the connection's database.
const SELECT_TABLES: &str =
    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()";

/// Connections the pool keeps open while idle, and at most.
const POOL_MIN_IDLE: usize = 1;
const POOL_MAX: usize = 16;

/// What `ON DUPLICATE KEY UPDATE` overwrites: everything but the key. `VALUES(col)` works on
/// MariaDB and every MySQL (8.0.20+ only warns that it is deprecated).
const ON_DUPLICATE: &str = " ON DUPLICATE KEY UPDATE succ_cnt = VALUES(succ_cnt), \
     err_cnt = VALUES(err_cnt), ts = VALUES(ts), overload = VALUES(overload)";

/// The current version, locking its row until the edit's transaction ends.
const LOCK_VERSION: &str = "SELECT version FROM RouteVersion WHERE id = 1 FOR UPDATE";

/// Sets `RouteVersion.version` of row `id = 1` to `?`, recreating the row if it is missing.
const SET_VERSION: &str = "INSERT INTO RouteVersion (id, version) VALUES (1, ?) \
     ON DUPLICATE KEY UPDATE version = VALUES(version)";

/// A MySQL store: a pool plus its limits. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub(crate) struct MysqlStore {
    pool: Pool,
    /// `host:port/db`, for errors.
    target: Arc<str>,
    /// What [`StoreError::NoDatabase`] names.
    missing: Arc<MissingDatabase>,
    options: StoreOptions,
    /// The URL's `ssl-mode`, to tell TLS failures apart in [`connect_error`].
    tls_mode: SslMode,
}

/// The parts of a [`StoreError::NoDatabase`] for this store.
struct MissingDatabase {
    database: String,
    server: String,
    url: String,
}

impl MysqlStore {
    /// The pool on `url.database`, then one connection from it: a database that does not exist
    /// is [`StoreError::NoDatabase`]. Creates nothing, whatever `options.mode` says.
    pub(crate) async fn open(
        url: &MysqlUrl,
        full_url: &StoreUrl,
        options: StoreOptions,
    ) -> Result<MysqlStore, StoreError> {
        check_tls_files(url)?;
        let pool_opts = PoolOpts::default()
            .with_constraints(PoolConstraints::new(POOL_MIN_IDLE, POOL_MAX).unwrap_or_default());
        let opts = connection_opts(url)
            .db_name(Some(url.database.clone()))
            .pool_opts(pool_opts);
        let store = MysqlStore {
            pool: Pool::new(opts),
            target: url.target().into(),
            missing: Arc::new(MissingDatabase {
                database: url.database.clone(),
                server: url.server(),
                url: full_url.to_string(),
            }),
            options,
            tls_mode: url.tls.mode,
        };
        store.ping().await?;
        tracing::info!(target_db = %store.target, "opened MySQL store");
        Ok(store)
    }

    /// Creates the database if it is missing, then the tables and the version row if missing.
    pub(crate) async fn init(
        url: &MysqlUrl,
        full_url: &StoreUrl,
        options: StoreOptions,
    ) -> Result<InitReport, StoreError> {
        let created_database = ensure_database(url, &options).await?;
        let store = MysqlStore::open(url, full_url, options).await?;
        let result = store.create_schema(full_url, created_database).await;
        store.close().await;
        result
    }

    /// Runs the schema's statements (each idempotent) and reports what they added.
    async fn create_schema(
        &self,
        full_url: &StoreUrl,
        created_database: bool,
    ) -> Result<InitReport, StoreError> {
        const OP: &str = "create schema";
        let before = self.schema_state().await?;
        self.run(OP, |mut conn| async move {
            for statement in crate::schema::mysql_statements() {
                conn.query_drop(statement).await.during(OP)?;
            }
            Ok(())
        })
        .await?;
        let report = InitReport::new(full_url.to_string(), created_database, &before);
        if report.changed() {
            tracing::info!(target_db = %self.target, tables = ?report.created_tables,
                version_row = report.created_version_row, "created the Lars schema");
        }
        Ok(report)
    }

    /// Which schema tables the database has, and whether the version row is there.
    pub(crate) async fn schema_state(&self) -> Result<SchemaState, StoreError> {
        const OP: &str = "check schema";
        self.run(OP, |mut conn| async move {
            let tables: Vec<String> = conn.query(SELECT_TABLES).await.during(OP)?;
            let version_row = if SchemaState::has_version_table(&tables) {
                let row: Option<Row> = conn.query_first(SELECT_VERSION).await.during(OP)?;
                row.is_some()
            } else {
                false
            };
            Ok(SchemaState::new(&tables, version_row))
        })
        .await
    }

    /// Runs `f` on a pooled connection within the store's time limits.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let conn = match timeout(self.options.connect_timeout, self.pool.get_conn()).await {
            Err(_) => return Err(self.timeout("connect", self.options.connect_timeout)),
            Ok(Err(mysql_async::Error::Server(e))) if e.code == ER_BAD_DB_ERROR => {
                return Err(StoreError::NoDatabase {
                    database: self.missing.database.clone(),
                    server: self.missing.server.clone(),
                    url: self.missing.url.clone(),
                });
            }
            Ok(Err(e)) => return Err(connect_error(self.target.to_string(), self.tls_mode, e)),
            Ok(Ok(conn)) => conn,
        };
        match timeout(self.options.op_timeout, f(conn)).await {
            Ok(result) => result,
            Err(_) => Err(self.timeout(op, self.options.op_timeout)),
        }
    }

    fn timeout(&self, op: &'static str, after: Duration) -> StoreError {
        StoreError::Timeout {
            op,
            target: self.target.to_string(),
            after,
        }
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", |mut conn| async move {
            conn.ping().await.during("ping")
        })
        .await
    }

    pub(crate) async fn route_version(&self) -> Result<Option<i64>, StoreError> {
        const OP: &str = "route_version";
        self.run(OP, |mut conn| async move {
            let row: Option<Row> = conn.exec_first(SELECT_VERSION, ()).await.during(OP)?;
            decode_version(row.map(|r| cells::<1>(r)[0].clone()))
        })
        .await
    }

    pub(crate) async fn load_routes(&self) -> Result<RouteLoad, StoreError> {
        const OP: &str = "load_routes";
        self.run(OP, |mut conn| async move {
            let rows: Vec<Row> = conn.exec(SELECT_ROUTES, ()).await.during(OP)?;
            let mut load = RouteLoad::default();
            for row in rows {
                load.push(decode_route_row(cells(row)));
            }
            Ok(load)
        })
        .await
    }

    /// The keys of the `RouteChange` rows `sql` selects by version.
    pub(crate) async fn changed_keys(
        &self,
        op: &'static str,
        sql: &'static str,
        version: i64,
    ) -> Result<Vec<RouteKey>, StoreError> {
        self.run(op, |mut conn| async move {
            let rows: Vec<Row> = conn.exec(sql, (version,)).await.during(op)?;
            Ok(rows
                .into_iter()
                .filter_map(|row| {
                    let [id, modid, cmdid] = cells(row);
                    decode_change_key(id, modid, cmdid)
                })
                .collect())
        })
        .await
    }

    pub(crate) async fn delete_changes_up_to(&self, version: i64) -> Result<u64, StoreError> {
        const OP: &str = "delete_changes_up_to";
        self.run(OP, |mut conn| async move {
            conn.exec_drop(DELETE_CHANGES_UP_TO, (version,))
                .await
                .during(OP)?;
            Ok(conn.affected_rows())
        })
        .await
    }

    pub(crate) async fn clear_changes(&self) -> Result<u64, StoreError> {
        const OP: &str = "clear_changes";
        self.run(OP, |mut conn| async move {
            conn.query_drop(CLEAR_CHANGES).await.during(OP)?;
            Ok(conn.affected_rows())
        })
        .await
    }

    /// The names of modules and commands; a table the database lacks gives no names.
    pub(crate) async fn load_names(&self) -> Result<Names, StoreError> {
        const OP: &str = "load_names";
        self.run(OP, |mut conn| async move {
            let tables: Vec<String> = conn.query(SELECT_TABLES).await.during(OP)?;
            let mut names = Names::default();
            for table in NAME_TABLES.into_iter().filter(|t| has_table(&tables, *t)) {
                let rows: Vec<Row> = conn.exec(table.select(), ()).await.during(OP)?;
                for row in rows {
                    names.push(table, decode_name_row(table, cells(row)));
                }
            }
            Ok(names)
        })
        .await
    }

    /// Sets the name of `id` in `table`, creating the table first if the database lacks it (DDL
    /// commits by itself in MySQL, so before the transaction). The newest row of `id` is locked
    /// (`FOR UPDATE`) while its name is read and written, so two writers run one after the other.
    pub(crate) async fn set_name(
        &self,
        table: NameTable,
        id: i32,
        name: String,
    ) -> Result<NameChange, StoreError> {
        const OP: &str = "set_name";
        let create = crate::schema::mysql_create(table.table());
        self.run(OP, |mut conn| async move {
            conn.query_drop(create).await.during(OP)?;
            let mut tx = conn.start_transaction(TxOpts::default()).await.during(OP)?;
            let stored: Option<Row> = tx
                .exec_first(table.select_one(" FOR UPDATE"), (id,))
                .await
                .during(OP)?;
            let change = NameChange::new(stored.map(|r| cells::<1>(r)[0].clone()), &name);
            match change {
                NameChange::Added => tx.exec_drop(table.insert(), (id, &name)).await,
                NameChange::Renamed { .. } => tx.exec_drop(table.update(), (&name, id)).await,
                NameChange::Unchanged => Ok(()),
            }
            .during(OP)?;
            tx.commit().await.during(OP)?;
            Ok(change)
        })
        .await
    }

    /// One route edit and its version bump in one transaction, the steps of an [`EditPlan`].
    /// The `RouteVersion` row is locked first (`FOR UPDATE`), so concurrent editors run one
    /// after the other and each sees the rows and version the previous one committed. `None`
    /// (nothing written) when there is no version row.
    pub(crate) async fn edit(&self, edit: RouteEdit) -> Result<Option<EditOutcome>, StoreError> {
        let op = edit.op();
        self.run(op, |mut conn| async move {
            let mut tx = conn.start_transaction(TxOpts::default()).await.during(op)?;
            let current: Option<Row> = tx.exec_first(LOCK_VERSION, ()).await.during(op)?;
            let Some(current) = decode_version(current.map(|r| cells::<1>(r)[0].clone()))? else {
                tx.rollback().await.during(op)?;
                return Ok(None);
            };
            let mut plan = EditPlan::new(edit, current, now_unix_seconds(), SET_VERSION);
            let mut step = plan.start();
            loop {
                let rows = match step {
                    EditStep::Query(q) => {
                        let row: Option<Row> = tx.exec_first(q.sql, params(q)).await.during(op)?;
                        u64::from(row.is_some())
                    }
                    EditStep::Execute(s) => {
                        tx.exec_drop(s.sql, params(s)).await.during(op)?;
                        tx.affected_rows()
                    }
                    EditStep::Commit(outcome) => {
                        tx.commit().await.during(op)?;
                        return Ok(Some(outcome));
                    }
                    EditStep::Rollback => {
                        tx.rollback().await.during(op)?;
                        return Ok(Some(EditOutcome::UNCHANGED));
                    }
                };
                step = plan.next(rows);
            }
        })
        .await
    }

    /// Rows already coalesced, as multi-row upserts of at most [`UPSERT_CHUNK_ROWS`] rows; one
    /// statement when they fit, else all chunks in one transaction.
    ///
    /// The statement is text with the values inlined rather than a prepared statement: every
    /// value is a Rust integer or the constant `'1'`/`'0'`, so nothing can be injected, it costs
    /// one round trip instead of two, and batches of every size do not churn the per-connection
    /// statement cache.
    pub(crate) async fn upsert_call_status(
        &self,
        rows: Vec<CallStatusRow>,
    ) -> Result<u64, StoreError> {
        const OP: &str = "upsert_call_status";
        self.run(OP, |mut conn| async move {
            if rows.len() <= UPSERT_CHUNK_ROWS {
                conn.query_drop(upsert_sql(&rows)).await.during(OP)?;
            } else {
                let mut tx = conn.start_transaction(TxOpts::default()).await.during(OP)?;
                for chunk in rows.chunks(UPSERT_CHUNK_ROWS) {
                    tx.query_drop(upsert_sql(chunk)).await.during(OP)?;
                }
                tx.commit().await.during(OP)?;
            }
            Ok(rows.len() as u64)
        })
        .await
    }

    /// One prepared single-row upsert per row, each its own autocommit statement: the way the
    /// original Lars reporter wrote, kept as the benchmark baseline.
    pub(crate) async fn upsert_call_status_per_row(
        &self,
        rows: Vec<CallStatusRow>,
    ) -> Result<u64, StoreError> {
        const OP: &str = "upsert_call_status_per_row";
        self.run(OP, |mut conn| async move {
            let sql = format!("{INSERT_COLUMNS} VALUES {ROW_PLACEHOLDERS}{ON_DUPLICATE}");
            let stmt = conn.prep(sql).await.during(OP)?;
            for row in &rows {
                let (ints, overload) = row.values();
                let mut values: Vec<Value> = ints.into_iter().map(Value::Int).collect();
                values.push(overload.into());
                conn.exec_drop(&stmt, values).await.during(OP)?;
            }
            Ok(rows.len() as u64)
        })
        .await
    }

    pub(crate) async fn load_call_status(
        &self,
        modid: Option<i32>,
        cmdid: Option<i32>,
    ) -> Result<Vec<CallStatusRow>, StoreError> {
        const OP: &str = "load_call_status";
        let (sql, params) = status::select_sql(modid, cmdid);
        self.run(OP, |mut conn| async move {
            let rows: Vec<Row> = conn.exec(sql, Params::from(params)).await.during(OP)?;
            Ok(keep_good(rows.into_iter().map(cells::<9>)))
        })
        .await
    }

    /// Creates `ConsoleAudit` when it is missing.
    pub(crate) async fn ensure_audit_table(&self) -> Result<(), StoreError> {
        const OP: &str = "ensure_audit_table";
        self.run(OP, |mut conn| async move {
            let create = crate::schema::mysql_create(AUDIT_TABLE);
            conn.query_drop(create).await.during(OP)
        })
        .await
    }

    pub(crate) async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        const OP: &str = "append_audit";
        self.run(OP, |mut conn| async move {
            let params = (entry.ts, entry.who, entry.peer, entry.action);
            conn.exec_drop(audit::INSERT_AUDIT, params).await.during(OP)
        })
        .await
    }

    /// The rows of `sql` (one `LIMIT ?`), decoded by `decode` as [`audit::keep_decoded`] does.
    pub(crate) async fn load_newest<const N: usize, T>(
        &self,
        op: &'static str,
        sql: &'static str,
        limit: u32,
        decode: fn([Cell; N]) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.run(op, |mut conn| async move {
            let limit = audit::clamp_limit(limit);
            let rows: Vec<Row> = conn.exec(sql, (limit,)).await.during(op)?;
            Ok(audit::keep_decoded(
                sql,
                rows.into_iter().map(cells::<N>),
                decode,
            ))
        })
        .await
    }

    /// Runs one statement as is; for tests that plant rows the API refuses to write.
    #[cfg(feature = "testing")]
    pub(crate) async fn execute_raw(&self, sql: String) -> Result<u64, StoreError> {
        const OP: &str = "execute_raw";
        self.run(OP, |mut conn| async move {
            conn.query_drop(sql).await.during(OP)?;
            Ok(conn.affected_rows())
        })
        .await
    }

    /// Runs a query returning one integer, or `None` without a row; for tests.
    #[cfg(feature = "testing")]
    pub(crate) async fn query_i64(&self, sql: String) -> Result<Option<i64>, StoreError> {
        const OP: &str = "query_i64";
        self.run(OP, |mut conn| async move {
            let row: Option<Row> = conn.query_first(sql).await.during(OP)?;
            Ok(row.and_then(|r| cells::<1>(r)[0].int()))
        })
        .await
    }

    /// Closes the pool's connections (every clone's), waiting at most `op_timeout`.
    pub(crate) async fn close(self) {
        let after = self.options.op_timeout;
        match timeout(after, self.pool.disconnect()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "closing the MySQL pool"),
            Err(_) => tracing::debug!(?after, "closing the MySQL pool timed out"),
        }
    }
}

/// Connection options for `url` without a database: host, port, credentials, TLS. Always TCP to
/// the address in the URL (`prefer_socket(false)`): `mysql_async` would otherwise switch loopback
/// connections to the server's Unix socket, bypassing whatever the URL points at (and the TLS it
/// asks for, which `mysql_async` does not apply to a socket).
pub(crate) fn connection_opts(url: &MysqlUrl) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(url.host.clone())
        .tcp_port(url.port)
        .user(url.user.clone())
        .pass(url.password.clone())
        .prefer_socket(false)
        .ssl_opts(ssl_opts(&url.tls))
}

/// Why connecting to `target` with `mode` failed. Over plain TCP, a refused login is
/// [`StoreError::PlainRefused`]: MariaDB with `require_secure_transport=ON` answers a plain login
/// with "Access denied" (1045), MySQL with [`ER_SECURE_TRANSPORT_REQUIRED`]. With TLS, a failed
/// handshake is [`StoreError::Tls`]: rustls reports a rejected certificate as an I/O error of
/// kind `InvalidData`, and a server without TLS is the driver's `NoClientSslFlagFromServer`.
fn connect_error(target: String, mode: SslMode, e: mysql_async::Error) -> StoreError {
    use mysql_async::{DriverError, Error, IoError};
    let plain_refused = matches!(&e, Error::Server(s)
        if s.code == ER_ACCESS_DENIED_ERROR || s.code == ER_SECURE_TRANSPORT_REQUIRED);
    let tls_failed = match &e {
        Error::Io(IoError::Tls(_)) => true,
        Error::Io(IoError::Io(io)) => io.kind() == std::io::ErrorKind::InvalidData,
        Error::Driver(DriverError::NoClientSslFlagFromServer) => true,
        _ => false,
    };
    let source = BackendError::Mysql(e);
    match mode {
        SslMode::Disabled if plain_refused => StoreError::PlainRefused { target, source },
        SslMode::Disabled => StoreError::Connect { target, source },
        mode if tls_failed => StoreError::Tls {
            target,
            mode: mode.as_str(),
            source,
        },
        _ => StoreError::Connect { target, source },
    }
}

/// `tls` as `mysql_async` takes it; `None` for plain TCP. The files are read at each connect, so
/// a renewed certificate is picked up by the next pooled connection.
fn ssl_opts(tls: &MysqlTls) -> Option<SslOpts> {
    let (accept_any_cert, check_name) = match tls.mode {
        SslMode::Disabled => return None,
        SslMode::Required => (true, false),
        SslMode::VerifyCa => (false, false),
        SslMode::VerifyIdentity => (false, true),
    };
    let mut opts = SslOpts::default()
        .with_danger_accept_invalid_certs(accept_any_cert)
        .with_danger_skip_domain_validation(!check_name);
    if let Some(ca) = &tls.ca {
        // A private CA replaces the public roots: trust what the operator named, nothing else.
        opts = opts
            .with_root_certs(vec![ca.clone().into()])
            .with_disable_built_in_roots(true);
    }
    if let Some((cert, key)) = &tls.client_identity {
        opts = opts.with_client_identity(Some(ClientIdentity::new(
            cert.clone().into(),
            key.clone().into(),
        )));
    }
    Some(opts)
}

/// Every TLS file `url` names can be read: a typo in a path is a [`StoreError::TlsFile`] naming
/// the option and the path when the store opens, not a bare "No such file" at each connect.
fn check_tls_files(url: &MysqlUrl) -> Result<(), StoreError> {
    let tls = &url.tls;
    let identity = tls.client_identity.as_ref();
    let files = [
        ("ssl-ca", tls.ca.as_ref()),
        ("ssl-cert", identity.map(|(cert, _)| cert)),
        ("ssl-key", identity.map(|(_, key)| key)),
    ];
    for (option, path) in files {
        let Some(path) = path else { continue };
        if let Err(source) = std::fs::File::open(path) {
            return Err(StoreError::TlsFile {
                option,
                path: path.clone(),
                source,
            });
        }
    }
    Ok(())
}

/// `name` as a quoted MySQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Creates `url.database` when it does not exist, over a short-lived connection without a
/// default database; true when it created it.
async fn ensure_database(url: &MysqlUrl, options: &StoreOptions) -> Result<bool, StoreError> {
    const OP: &str = "check database";
    check_tls_files(url)?;
    let server = url.server();
    let mut conn = match timeout(options.connect_timeout, Conn::new(connection_opts(url))).await {
        Err(_) => {
            return Err(StoreError::Timeout {
                op: "connect",
                target: server,
                after: options.connect_timeout,
            });
        }
        Ok(Err(e)) => return Err(connect_error(server, url.tls.mode, e)),
        Ok(Ok(conn)) => conn,
    };
    let work = async {
        let exists: Option<Row> = conn
            .exec_first(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (url.database.as_str(),),
            )
            .await
            .during(OP)?;
        if exists.is_some() {
            return Ok(false);
        }
        let create = format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            quote_ident(&url.database)
        );
        conn.query_drop(create)
            .await
            .map_err(|e| StoreError::CreateDatabase {
                target: server.clone(),
                db: url.database.clone(),
                source: BackendError::Mysql(e),
            })?;
        tracing::info!(server = %server, db = %url.database, "created MySQL database");
        Ok(true)
    };
    let result = match timeout(options.op_timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Timeout {
            op: OP,
            target: server.clone(),
            after: options.op_timeout,
        }),
    };
    // Best effort: the work is done whether or not the goodbye arrives.
    let _ = timeout(options.op_timeout, conn.disconnect()).await;
    result
}

/// The multi-row upsert of `rows`, values inlined (see [`MysqlStore::upsert_call_status`]).
fn upsert_sql(rows: &[CallStatusRow]) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(INSERT_COLUMNS.len() + 64 * rows.len() + 128);
    sql.push_str(INSERT_COLUMNS);
    sql.push_str(" VALUES ");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let (ints, overload) = r.values();
        sql.push('(');
        for v in ints {
            // Writing into a String cannot fail.
            let _ = write!(sql, "{v},");
        }
        let _ = write!(sql, "'{overload}')");
    }
    sql.push_str(ON_DUPLICATE);
    sql
}

/// The parameters of `statement` as `mysql_async` takes them.
fn params(statement: Statement) -> Params {
    Params::from(statement.params)
}

/// The first `N` columns of `row` as cells (a missing column reads as `NULL`).
fn cells<const N: usize>(mut row: Row) -> [Cell; N] {
    std::array::from_fn(|i| row.take::<Value, usize>(i).map_or(Cell::Null, cell))
}

fn cell(value: Value) -> Cell {
    match value {
        Value::NULL => Cell::Null,
        Value::Int(i) => Cell::Int(i),
        Value::UInt(u) => i64::try_from(u).map_or_else(|_| Cell::Other(u.to_string()), Cell::Int),
        Value::Bytes(b) => Cell::Text(String::from_utf8_lossy(&b).into_owned()),
        other => Cell::Other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_backticks_doubled() {
        assert_eq!(quote_ident("lars_dns"), "`lars_dns`");
        assert_eq!(quote_ident("a`b"), "`a``b`");
    }

    #[test]
    fn upsert_sql_inlines_every_row_and_updates_all_but_the_key() {
        let row = CallStatusRow {
            modid: -1,
            cmdid: 2,
            ip: u32::MAX,
            port: 80,
            caller: 7,
            succ_cnt: 3,
            err_cnt: 4,
            ts: 99,
            overload: true,
        };
        let sql = upsert_sql(&[row, row]);
        assert!(
            sql.contains("VALUES (-1,2,4294967295,80,7,3,4,99,'1'),(-1,2,"),
            "{sql}"
        );
        assert!(sql.ends_with("overload = VALUES(overload)"), "{sql}");
    }

    #[test]
    fn unsigned_values_above_i64_are_not_integers() {
        assert_eq!(cell(Value::UInt(5)), Cell::Int(5));
        assert!(cell(Value::UInt(u64::MAX)).int().is_none());
        assert_eq!(cell(Value::Bytes(b"1".to_vec())), Cell::Text("1".into()));
    }
}
