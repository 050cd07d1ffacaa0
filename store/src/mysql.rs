//! The MySQL/MariaDB backend, through a `mysql_async` connection pool.
//!
//! Owns everything that touches `mysql_async`: creating the database and schema on open, the
//! SQL of every operation, and the time limits. Every operation takes one pooled connection
//! within `connect_timeout` and must finish within `op_timeout`; a limit that runs out is a
//! [`StoreError::Timeout`], never a hang. Called only through [`Store`](crate::Store).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Row, TxOpts, Value};
use tokio::time::timeout;

use crate::route::{RouteEdit, decode_change_key, decode_route_row, decode_version, next_version};
use crate::row::Cell;
use crate::status::{INSERT_COLUMNS, UPSERT_CHUNK_ROWS, coalesce_call_status, keep_good};
use crate::{
    BackendError, CallStatusRow, EditOutcome, MysqlUrl, RouteKey, RouteLoad, StoreError,
    StoreOptions, status,
};

/// Connections the pool keeps open while idle, and at most.
const POOL_MIN_IDLE: usize = 1;
const POOL_MAX: usize = 16;

/// What `ON DUPLICATE KEY UPDATE` overwrites: everything but the key. `VALUES(col)` works on
/// MariaDB and every MySQL (8.0.20+ only warns that it is deprecated).
const ON_DUPLICATE: &str = " ON DUPLICATE KEY UPDATE succ_cnt = VALUES(succ_cnt), \
     err_cnt = VALUES(err_cnt), ts = VALUES(ts), overload = VALUES(overload)";

/// A MySQL store: a pool plus its limits. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub(crate) struct MysqlStore {
    pool: Pool,
    /// `host:port/db`, for errors.
    target: Arc<str>,
    options: StoreOptions,
}

/// `mysql_async` results into [`StoreError::Query`] naming the operation.
trait During<T> {
    fn during(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> During<T> for Result<T, mysql_async::Error> {
    fn during(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::mysql(op, e))
    }
}

impl MysqlStore {
    /// Creates the database if it is missing, then the pool, then the schema.
    pub(crate) async fn open(
        url: &MysqlUrl,
        options: StoreOptions,
    ) -> Result<MysqlStore, StoreError> {
        ensure_database(url, &options).await?;
        let pool_opts = PoolOpts::default()
            .with_constraints(PoolConstraints::new(POOL_MIN_IDLE, POOL_MAX).unwrap_or_default());
        let opts = connection_opts(url)
            .db_name(Some(url.database.clone()))
            .pool_opts(pool_opts);
        let store = MysqlStore {
            pool: Pool::new(opts),
            target: url.target().into(),
            options,
        };
        store
            .run("create schema", |mut conn| async move {
                for statement in crate::schema::mysql_statements() {
                    conn.query_drop(statement).await.during("create schema")?;
                }
                Ok(())
            })
            .await?;
        tracing::info!(target_db = %store.target, "opened MySQL store");
        Ok(store)
    }

    /// Runs `f` on a pooled connection within the store's time limits.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let conn = match timeout(self.options.connect_timeout, self.pool.get_conn()).await {
            Err(_) => return Err(self.timeout("connect", self.options.connect_timeout)),
            Ok(Err(e)) => {
                return Err(StoreError::Connect {
                    target: self.target.to_string(),
                    source: BackendError::Mysql(e),
                });
            }
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

    pub(crate) async fn route_version(&self) -> Result<i64, StoreError> {
        const OP: &str = "route_version";
        self.run(OP, |mut conn| async move {
            let row: Option<Row> = conn
                .exec_first("SELECT version FROM RouteVersion WHERE id = 1", ())
                .await
                .during(OP)?;
            decode_version(row.map(|r| cells::<1>(r)[0].clone()))
        })
        .await
    }

    pub(crate) async fn load_routes(&self) -> Result<RouteLoad, StoreError> {
        const OP: &str = "load_routes";
        self.run(OP, |mut conn| async move {
            let rows: Vec<Row> = conn
                .exec(
                    "SELECT id, modid, cmdid, serverip, serverport FROM RouteData ORDER BY id",
                    (),
                )
                .await
                .during(OP)?;
            let mut load = RouteLoad::default();
            for row in rows {
                load.push(decode_route_row(cells(row)));
            }
            Ok(load)
        })
        .await
    }

    pub(crate) async fn changed_keys_up_to(
        &self,
        version: i64,
    ) -> Result<Vec<RouteKey>, StoreError> {
        const OP: &str = "changed_keys_up_to";
        self.run(OP, |mut conn| async move {
            let rows: Vec<Row> = conn
                .exec(
                    "SELECT MIN(id), modid, cmdid FROM RouteChange WHERE version <= ? \
                     GROUP BY modid, cmdid ORDER BY modid, cmdid",
                    (version,),
                )
                .await
                .during(OP)?;
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
            conn.exec_drop("DELETE FROM RouteChange WHERE version <= ?", (version,))
                .await
                .during(OP)?;
            Ok(conn.affected_rows())
        })
        .await
    }

    pub(crate) async fn clear_changes(&self) -> Result<u64, StoreError> {
        const OP: &str = "clear_changes";
        self.run(OP, |mut conn| async move {
            conn.query_drop("DELETE FROM RouteChange")
                .await
                .during(OP)?;
            Ok(conn.affected_rows())
        })
        .await
    }

    /// One route edit and its version bump in one transaction. The `RouteVersion` row is locked
    /// first (`FOR UPDATE`), so concurrent editors run one after the other and each sees the
    /// rows and version the previous one committed.
    pub(crate) async fn edit(&self, edit: RouteEdit) -> Result<EditOutcome, StoreError> {
        let op = edit.op();
        let outcome = self
            .run(op, |mut conn| async move {
                let mut tx = conn.start_transaction(TxOpts::default()).await.during(op)?;
                let current: Option<Row> = tx
                    .exec_first(
                        "SELECT version FROM RouteVersion WHERE id = 1 FOR UPDATE",
                        (),
                    )
                    .await
                    .during(op)?;
                let current = decode_version(current.map(|r| cells::<1>(r)[0].clone()))?;
                let rows_changed = match edit {
                    RouteEdit::AddHost(key, host) => {
                        let present: Option<Row> = tx
                            .exec_first(
                                "SELECT id FROM RouteData WHERE modid = ? AND cmdid = ? \
                                 AND serverip = ? AND serverport = ? LIMIT 1",
                                (key.modid, key.cmdid, host.ip, host.port),
                            )
                            .await
                            .during(op)?;
                        if present.is_some() {
                            0
                        } else {
                            tx.exec_drop(
                                "INSERT INTO RouteData (modid, cmdid, serverip, serverport) \
                                 VALUES (?, ?, ?, ?)",
                                (key.modid, key.cmdid, host.ip, host.port),
                            )
                            .await
                            .during(op)?;
                            tx.affected_rows()
                        }
                    }
                    RouteEdit::RemoveHost(key, host) => {
                        tx.exec_drop(
                            "DELETE FROM RouteData WHERE modid = ? AND cmdid = ? \
                             AND serverip = ? AND serverport = ?",
                            (key.modid, key.cmdid, host.ip, host.port),
                        )
                        .await
                        .during(op)?;
                        tx.affected_rows()
                    }
                    RouteEdit::RemoveRoute(key) => {
                        tx.exec_drop(
                            "DELETE FROM RouteData WHERE modid = ? AND cmdid = ?",
                            (key.modid, key.cmdid),
                        )
                        .await
                        .during(op)?;
                        tx.affected_rows()
                    }
                };
                if rows_changed == 0 {
                    tx.rollback().await.during(op)?;
                    return Ok(EditOutcome::UNCHANGED);
                }
                let version = next_version(crate::route::now_unix_seconds(), current);
                let key = edit.key();
                tx.exec_drop(
                    "INSERT INTO RouteChange (modid, cmdid, version) VALUES (?, ?, ?)",
                    (key.modid, key.cmdid, version),
                )
                .await
                .during(op)?;
                tx.exec_drop(
                    "INSERT INTO RouteVersion (id, version) VALUES (1, ?) \
                     ON DUPLICATE KEY UPDATE version = VALUES(version)",
                    (version,),
                )
                .await
                .during(op)?;
                tx.commit().await.during(op)?;
                Ok(EditOutcome {
                    version: Some(version),
                    rows_changed,
                })
            })
            .await?;
        edit.log_committed(outcome);
        Ok(outcome)
    }

    /// Coalesced rows as multi-row upserts of at most [`UPSERT_CHUNK_ROWS`] rows; one statement
    /// when they fit, else all chunks in one transaction.
    ///
    /// The statement is text with the values inlined rather than a prepared statement: every
    /// value is a Rust integer or the constant `'1'`/`'0'`, so nothing can be injected, it costs
    /// one round trip instead of two, and batches of every size do not churn the per-connection
    /// statement cache.
    pub(crate) async fn upsert_call_status(
        &self,
        rows: &[CallStatusRow],
    ) -> Result<u64, StoreError> {
        const OP: &str = "upsert_call_status";
        let rows = coalesce_call_status(rows);
        if rows.is_empty() {
            return Ok(0);
        }
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
        rows: &[CallStatusRow],
    ) -> Result<u64, StoreError> {
        const OP: &str = "upsert_call_status_per_row";
        if rows.is_empty() {
            return Ok(0);
        }
        let rows = rows.to_vec();
        self.run(OP, |mut conn| async move {
            let sql = format!("{INSERT_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?){ON_DUPLICATE}");
            let stmt = conn.prep(sql).await.during(OP)?;
            for row in &rows {
                let params: Vec<Value> = vec![
                    row.modid.into(),
                    row.cmdid.into(),
                    row.ip.into(),
                    row.port.into(),
                    row.caller.into(),
                    row.succ_cnt.into(),
                    row.err_cnt.into(),
                    row.ts.into(),
                    row.overload_char().into(),
                ];
                conn.exec_drop(&stmt, params).await.during(OP)?;
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

/// Connection options for `url` without a database: host, port, credentials. Always TCP to the
/// address in the URL (`prefer_socket(false)`): `mysql_async` would otherwise switch loopback
/// connections to the server's Unix socket, bypassing whatever the URL points at.
pub(crate) fn connection_opts(url: &MysqlUrl) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(url.host.clone())
        .tcp_port(url.port)
        .user(url.user.clone())
        .pass(url.password.clone())
        .prefer_socket(false)
}

/// `name` as a quoted MySQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Creates `url.database` when it does not exist, over a short-lived connection without a
/// default database.
async fn ensure_database(url: &MysqlUrl, options: &StoreOptions) -> Result<(), StoreError> {
    const OP: &str = "check database";
    let server = url.server();
    let mut conn = match timeout(options.connect_timeout, Conn::new(connection_opts(url))).await {
        Err(_) => {
            return Err(StoreError::Timeout {
                op: "connect",
                target: server,
                after: options.connect_timeout,
            });
        }
        Ok(Err(e)) => {
            return Err(StoreError::Connect {
                target: server,
                source: BackendError::Mysql(e),
            });
        }
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
        if exists.is_none() {
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
        }
        Ok(())
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
        // Writing into a String cannot fail.
        let _ = write!(
            sql,
            "({},{},{},{},{},{},{},{},'{}')",
            r.modid,
            r.cmdid,
            r.ip,
            r.port,
            r.caller,
            r.succ_cnt,
            r.err_cnt,
            r.ts,
            r.overload_char()
        );
    }
    sql.push_str(ON_DUPLICATE);
    sql
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
