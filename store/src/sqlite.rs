//! The embedded backend: one SQLite file through `rusqlite` (SQLite compiled in).
//!
//! Owns everything that touches `rusqlite`: the file's settings, creating the file and schema
//! (only in [`SqliteStore::init`] and for [`OpenMode::CreateIfMissing`]; a plain open never
//! creates the file, so a missing one is [`StoreError::NoSqliteFile`]), reading what schema a
//! file has, running the SQL both backends share (from `route.rs`, `edit.rs`, `status.rs`) and the SQL only SQLite
//! speaks (the upserts). The file is in WAL mode with a busy timeout, so `lars-dns`,
//! `lars-reporter` and the CLI can use it at the same time from separate processes; every write
//! takes the write lock up front (`BEGIN IMMEDIATE`), so a read-then-write transaction never
//! fails half-way on a lock upgrade. SQLite calls block, so each operation runs on tokio's
//! blocking pool, on a connection borrowed from a small per-store stack of open connections.
//! Called only through [`Store`](crate::Store).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params_from_iter};

use crate::audit::{self, AUDIT_TABLE, AuditEntry};
use crate::edit::{EditPlan, EditStep, RouteEdit, now_unix_seconds};
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
    BackendError, CallStatusRow, EditOutcome, OpenMode, RouteLoad, StoreError, StoreOptions,
    StoreUrl, status,
};

/// The tables of the file.
const SELECT_TABLES: &str = "SELECT name FROM sqlite_master WHERE type = 'table'";

/// Open connections kept for reuse per store; more are opened when operations overlap.
const MAX_IDLE_CONNECTIONS: usize = 4;

/// The upsert's conflict clause: everything but the key is overwritten.
const ON_CONFLICT: &str = " ON CONFLICT (modid, cmdid, ip, port, caller) DO UPDATE SET \
     succ_cnt = excluded.succ_cnt, err_cnt = excluded.err_cnt, ts = excluded.ts, \
     overload = excluded.overload";

/// Sets `RouteVersion.version` of row `id = 1` to `?`, recreating the row if it is missing.
const SET_VERSION: &str = "INSERT INTO RouteVersion (id, version) VALUES (1, ?) \
     ON CONFLICT (id) DO UPDATE SET version = excluded.version";

/// An SQLite store. Cheap to clone; clones share the idle connections.
#[derive(Clone)]
pub(crate) struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    options: StoreOptions,
    /// Open connections not in use, each with the identity of the file it opened. Locked only
    /// to push or pop, never across a statement.
    idle: Mutex<Vec<(Connection, Option<FileIdentity>)>>,
    /// Whether connections may create the file: only while an init or a
    /// [`OpenMode::CreateIfMissing`] open runs. Cleared once the file exists with its schema, so a
    /// file removed later is an error (and the last routes keep serving) rather than a new empty
    /// database that would tell every agent its routes are gone.
    may_create: AtomicBool,
}

/// Which file a path named when a connection opened it (device and inode): an open connection
/// keeps reading a file that was removed or replaced, so a connection whose file is no longer
/// the one at the path is dropped rather than reused.
type FileIdentity = (u64, u64);

fn file_identity(path: &Path) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Shared {
    fn target(&self) -> String {
        self.path.display().to_string()
    }

    /// An idle connection, or a new one with the store's settings.
    fn take(&self) -> Result<(Connection, Option<FileIdentity>), StoreError> {
        let now = file_identity(&self.path);
        {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            while let Some((conn, identity)) = idle.pop() {
                if identity == now {
                    return Ok((conn, identity));
                }
                tracing::warn!(path = %self.target(), "SQLite file was removed or replaced; reopening");
            }
        }
        let connect_err = |e| StoreError::Connect {
            target: self.target(),
            source: BackendError::Sqlite(e),
        };
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if self.may_create.load(Ordering::Acquire) {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(&self.path, flags).map_err(connect_err)?;
        conn.busy_timeout(self.options.op_timeout)
            .map_err(connect_err)?;
        // In WAL mode NORMAL still never corrupts the file; a power cut can lose the last
        // commits, which the reporter re-sends and an operator re-runs.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(connect_err)?;
        Ok((conn, file_identity(&self.path)))
    }

    /// Returns a connection for reuse, unless it is left inside a transaction or enough are kept.
    fn give_back(&self, conn: Connection, identity: Option<FileIdentity>) {
        if !conn.is_autocommit() {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push((conn, identity));
        }
    }
}

impl SqliteStore {
    /// Opens the file at `path`. [`OpenMode::Existing`]: the file must exist
    /// ([`StoreError::NoSqliteFile`]) and nothing is written. [`OpenMode::CreateIfMissing`]: a
    /// missing file is created, and a database without any table gets the schema.
    pub(crate) async fn open(
        path: &Path,
        url: &StoreUrl,
        options: StoreOptions,
    ) -> Result<SqliteStore, StoreError> {
        let store = SqliteStore::new(path, options);
        match options.mode {
            OpenMode::Existing => {
                store.must_exist(url)?;
                let shown = path.display().to_string();
                store
                    .run("open", move |conn| {
                        let mode: String = conn
                            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                            .during("open")?;
                        if !mode.eq_ignore_ascii_case("wal") {
                            tracing::warn!(path = %shown, %mode,
                                "SQLite file is not in WAL mode; concurrent use will block more \
                                 (`lars init` switches it)");
                        }
                        Ok(())
                    })
                    .await?;
            }
            OpenMode::CreateIfMissing => {
                let (_, created) = store.create_schema(true).await?;
                if created {
                    tracing::info!(path = %path.display(), "created the SQLite store with the Lars schema");
                }
            }
        }
        tracing::info!(path = %path.display(), "opened SQLite store");
        Ok(store)
    }

    /// Creates the file if missing, switches it to WAL, and creates the tables and the version
    /// row where missing.
    pub(crate) async fn init(
        path: &Path,
        url: &StoreUrl,
        options: StoreOptions,
    ) -> Result<InitReport, StoreError> {
        let existed = path.try_exists().unwrap_or(false);
        let store = SqliteStore::new(path, options);
        let (before, _) = store.create_schema(false).await?;
        let report = InitReport::new(url.to_string(), !existed, &before);
        if report.changed() {
            tracing::info!(path = %path.display(), tables = ?report.created_tables,
                version_row = report.created_version_row, "created the Lars schema");
        }
        Ok(report)
    }

    fn new(path: &Path, options: StoreOptions) -> SqliteStore {
        SqliteStore {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                options,
                idle: Mutex::new(Vec::new()),
                may_create: AtomicBool::new(false),
            }),
        }
    }

    /// [`StoreError::NoSqliteFile`] unless the file exists.
    fn must_exist(&self, url: &StoreUrl) -> Result<(), StoreError> {
        match self.shared.path.try_exists() {
            Ok(true) => Ok(()),
            // Cannot tell (a permission problem): opening names the real error.
            Err(_) => Ok(()),
            Ok(false) => Err(StoreError::NoSqliteFile {
                path: self.shared.target(),
                url: url.to_string(),
            }),
        }
    }

    /// Creates the file if missing, switches it to WAL and, in one `BEGIN IMMEDIATE`
    /// transaction, runs the schema: always, or with `only_if_empty` only when the database has
    /// no table at all. Returns what the file had before, and whether the schema ran.
    async fn create_schema(&self, only_if_empty: bool) -> Result<(SchemaState, bool), StoreError> {
        const OP: &str = "create schema";
        self.shared.may_create.store(true, Ordering::Release);
        let result = self
            .run(OP, move |conn| {
                let mode: String = conn
                    .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .during(OP)?;
                if !mode.eq_ignore_ascii_case("wal") {
                    let mode: String = conn
                        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                        .during(OP)?;
                    if !mode.eq_ignore_ascii_case("wal") {
                        tracing::warn!(%mode, "SQLite refused WAL mode; concurrent use will block more");
                    }
                }
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .during(OP)?;
                let before = schema_state(&tx).during(OP)?;
                let run = !only_if_empty || table_names(&tx).during(OP)?.is_empty();
                if run {
                    tx.execute_batch(crate::schema::SQLITE_SCHEMA).during(OP)?;
                }
                tx.commit().during(OP)?;
                Ok((before, run))
            })
            .await;
        self.shared.may_create.store(false, Ordering::Release);
        result
    }

    /// Which schema tables the file has, and whether the version row is there.
    pub(crate) async fn schema_state(&self) -> Result<SchemaState, StoreError> {
        self.run("check schema", |conn| {
            schema_state(conn).during("check schema")
        })
        .await
    }

    /// Runs `f` on a connection on tokio's blocking pool.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let (mut conn, identity) = shared.take()?;
            let result = f(&mut conn);
            shared.give_back(conn, identity);
            result
        })
        .await
        .map_err(|e| StoreError::Worker {
            op,
            reason: e.to_string(),
        })?
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", |conn| {
            conn.query_row("SELECT 1", [], |_| Ok(())).during("ping")
        })
        .await
    }

    pub(crate) async fn route_version(&self) -> Result<Option<i64>, StoreError> {
        self.run("route_version", |conn| {
            let cell = conn
                .query_row(SELECT_VERSION, [], |r| Ok(cells::<1>(r)))
                .optional()
                .during("route_version")?;
            decode_version(cell.map(|[c]| c))
        })
        .await
    }

    pub(crate) async fn load_routes(&self) -> Result<RouteLoad, StoreError> {
        const OP: &str = "load_routes";
        self.run(OP, |conn| {
            let mut stmt = conn.prepare(SELECT_ROUTES).during(OP)?;
            let rows = stmt.query_map([], |r| Ok(cells::<5>(r))).during(OP)?;
            let mut load = RouteLoad::default();
            for row in rows {
                load.push(decode_route_row(row.during(OP)?));
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
        self.run(op, move |conn| {
            let mut stmt = conn.prepare(sql).during(op)?;
            let rows = stmt
                .query_map([version], |r| Ok(cells::<3>(r)))
                .during(op)?;
            let mut keys = Vec::new();
            for row in rows {
                let [id, modid, cmdid] = row.during(op)?;
                keys.extend(decode_change_key(id, modid, cmdid));
            }
            Ok(keys)
        })
        .await
    }

    pub(crate) async fn delete_changes_up_to(&self, version: i64) -> Result<u64, StoreError> {
        const OP: &str = "delete_changes_up_to";
        self.run(OP, move |conn| {
            let n = conn.execute(DELETE_CHANGES_UP_TO, [version]).during(OP)?;
            Ok(n as u64)
        })
        .await
    }

    pub(crate) async fn clear_changes(&self) -> Result<u64, StoreError> {
        const OP: &str = "clear_changes";
        self.run(OP, |conn| {
            let n = conn.execute(CLEAR_CHANGES, []).during(OP)?;
            Ok(n as u64)
        })
        .await
    }

    /// The names of modules and commands; a table the file lacks gives no names.
    pub(crate) async fn load_names(&self) -> Result<Names, StoreError> {
        const OP: &str = "load_names";
        self.run(OP, |conn| {
            let tables = table_names(conn).during(OP)?;
            let mut names = Names::default();
            for table in NAME_TABLES.into_iter().filter(|t| has_table(&tables, *t)) {
                let mut stmt = conn.prepare(table.select()).during(OP)?;
                let rows = stmt.query_map([], |r| Ok(cells::<3>(r))).during(OP)?;
                for row in rows {
                    names.push(table, decode_name_row(table, row.during(OP)?));
                }
            }
            Ok(names)
        })
        .await
    }

    /// Sets the name of `id` in `table` in one `BEGIN IMMEDIATE` transaction, creating the table
    /// first if the file lacks it.
    pub(crate) async fn set_name(
        &self,
        table: NameTable,
        id: i32,
        name: String,
    ) -> Result<NameChange, StoreError> {
        const OP: &str = "set_name";
        let create = crate::schema::sqlite_create(table.table());
        self.run(OP, move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .during(OP)?;
            tx.execute_batch(&create).during(OP)?;
            let stored = tx
                .query_row(&table.select_one(""), [id], |r| Ok(cells::<1>(r)))
                .optional()
                .during(OP)?;
            let change = NameChange::new(stored.map(|[c]| c), &name);
            match change {
                NameChange::Added => tx.execute(&table.insert(), rusqlite::params![id, name]),
                NameChange::Renamed { .. } => {
                    tx.execute(&table.update(), rusqlite::params![name, id])
                }
                NameChange::Unchanged => Ok(0),
            }
            .during(OP)?;
            tx.commit().during(OP)?;
            Ok(change)
        })
        .await
    }

    /// One route edit and its version bump in one `BEGIN IMMEDIATE` transaction, the steps of
    /// an [`EditPlan`]: the write lock is taken before the version is read, so concurrent editors
    /// (other processes too) run one after the other. `None` (nothing written) when there is no
    /// version row.
    pub(crate) async fn edit(&self, edit: RouteEdit) -> Result<Option<EditOutcome>, StoreError> {
        let op = edit.op();
        self.run(op, move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .during(op)?;
            let current = tx
                .query_row(SELECT_VERSION, [], |r| Ok(cells::<1>(r)))
                .optional()
                .during(op)?;
            let Some(current) = decode_version(current.map(|[c]| c))? else {
                return Ok(None);
            };
            let mut plan = EditPlan::new(edit, current, now_unix_seconds(), SET_VERSION);
            let mut step = plan.start();
            loop {
                let rows = match step {
                    EditStep::Query(q) => {
                        let params = params_from_iter(q.params);
                        let row = tx.query_row(q.sql, params, |_| Ok(())).optional();
                        u64::from(row.during(op)?.is_some())
                    }
                    EditStep::Execute(s) => {
                        tx.execute(s.sql, params_from_iter(s.params)).during(op)? as u64
                    }
                    EditStep::Commit(outcome) => {
                        tx.commit().during(op)?;
                        return Ok(Some(outcome));
                    }
                    EditStep::Rollback => {
                        tx.rollback().during(op)?;
                        return Ok(Some(EditOutcome::UNCHANGED));
                    }
                };
                step = plan.next(rows);
            }
        })
        .await
    }

    /// Rows already coalesced, as multi-row upserts of at most [`UPSERT_CHUNK_ROWS`] rows, all in
    /// one `BEGIN IMMEDIATE` transaction.
    pub(crate) async fn upsert_call_status(
        &self,
        rows: Vec<CallStatusRow>,
    ) -> Result<u64, StoreError> {
        const OP: &str = "upsert_call_status";
        self.run(OP, move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .during(OP)?;
            for chunk in rows.chunks(UPSERT_CHUNK_ROWS) {
                let placeholders = vec![ROW_PLACEHOLDERS; chunk.len()].join(", ");
                let sql = format!("{INSERT_COLUMNS} VALUES {placeholders}{ON_CONFLICT}");
                let values = chunk.iter().flat_map(status_values);
                tx.execute(&sql, params_from_iter(values)).during(OP)?;
            }
            tx.commit().during(OP)?;
            Ok(rows.len() as u64)
        })
        .await
    }

    /// One single-row upsert per row, each its own transaction: the way the original Lars
    /// reporter wrote, kept as the benchmark baseline.
    pub(crate) async fn upsert_call_status_per_row(
        &self,
        rows: Vec<CallStatusRow>,
    ) -> Result<u64, StoreError> {
        const OP: &str = "upsert_call_status_per_row";
        self.run(OP, move |conn| {
            let sql = format!("{INSERT_COLUMNS} VALUES {ROW_PLACEHOLDERS}{ON_CONFLICT}");
            let mut stmt = conn.prepare(&sql).during(OP)?;
            for row in &rows {
                stmt.execute(params_from_iter(status_values(row)))
                    .during(OP)?;
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
        self.run(OP, move |conn| {
            let mut stmt = conn.prepare(&sql).during(OP)?;
            let rows = stmt
                .query_map(params_from_iter(params), |r| Ok(cells::<9>(r)))
                .during(OP)?;
            let cells = rows.collect::<Result<Vec<_>, _>>().during(OP)?;
            Ok(keep_good(cells))
        })
        .await
    }

    /// Creates `ConsoleAudit` when it is missing.
    pub(crate) async fn ensure_audit_table(&self) -> Result<(), StoreError> {
        const OP: &str = "ensure_audit_table";
        self.run(OP, |conn| {
            conn.execute_batch(&crate::schema::sqlite_create(AUDIT_TABLE))
                .during(OP)
        })
        .await
    }

    pub(crate) async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        const OP: &str = "append_audit";
        self.run(OP, move |conn| {
            conn.execute(
                audit::INSERT_AUDIT,
                rusqlite::params![entry.ts, entry.who, entry.peer, entry.action],
            )
            .during(OP)?;
            Ok(())
        })
        .await
    }

    /// The rows of `sql` (one `LIMIT ?`), decoded by `decode` as [`audit::keep_decoded`] does.
    pub(crate) async fn load_newest<const N: usize, T: Send + 'static>(
        &self,
        op: &'static str,
        sql: &'static str,
        limit: u32,
        decode: fn([Cell; N]) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.run(op, move |conn| {
            let mut stmt = conn.prepare(sql).during(op)?;
            let rows = stmt
                .query_map([audit::clamp_limit(limit)], |r| Ok(cells::<N>(r)))
                .during(op)?;
            let cells = rows.collect::<Result<Vec<_>, _>>().during(op)?;
            Ok(audit::keep_decoded(sql, cells, decode))
        })
        .await
    }

    /// Runs one statement as is; for tests that plant rows the API refuses to write.
    #[cfg(feature = "testing")]
    pub(crate) async fn execute_raw(&self, sql: String) -> Result<u64, StoreError> {
        self.run("execute_raw", move |conn| {
            Ok(conn.execute(&sql, []).during("execute_raw")? as u64)
        })
        .await
    }

    /// Runs a query returning one integer, or `None` without a row; for tests.
    #[cfg(feature = "testing")]
    pub(crate) async fn query_i64(&self, sql: String) -> Result<Option<i64>, StoreError> {
        self.run("query_i64", move |conn| {
            let row = conn
                .query_row(&sql, [], |r| Ok(cells::<1>(r)))
                .optional()
                .during("query_i64")?;
            Ok(row.and_then(|[c]| c.int()))
        })
        .await
    }
}

/// Every table name in the database.
fn table_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(SELECT_TABLES)?;
    let names = stmt.query_map([], |r| r.get(0))?;
    names.collect()
}

/// Which schema tables the database has, and whether the version row is there.
fn schema_state(conn: &Connection) -> rusqlite::Result<SchemaState> {
    let tables = table_names(conn)?;
    let version_row = SchemaState::has_version_table(&tables)
        && conn
            .query_row(SELECT_VERSION, [], |_| Ok(()))
            .optional()?
            .is_some();
    Ok(SchemaState::new(&tables, version_row))
}

/// The nine column values of one `ServerCallStatus` row, in [`INSERT_COLUMNS`] order.
fn status_values(r: &CallStatusRow) -> impl Iterator<Item = Value> {
    let (ints, overload) = r.values();
    let overload = Value::Text(overload.to_string());
    ints.into_iter().map(Value::Integer).chain([overload])
}

/// The first `N` columns of `row` as cells (a missing column reads as `NULL`).
fn cells<const N: usize>(row: &rusqlite::Row<'_>) -> [Cell; N] {
    std::array::from_fn(|i| row.get_ref(i).map_or(Cell::Null, cell))
}

fn cell(value: ValueRef<'_>) -> Cell {
    match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        ValueRef::Real(f) => Cell::Other(f.to_string()),
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Cell::Other(format!("<blob of {} bytes>", b.len())),
    }
}
