//! [`TestDb`]: one fresh, uniquely named database per test, removed when the test ends.
//!
//! Databases are made the way operators make them, through [`Store::init`] (`lars init`), except
//! where a test wants one that is not a Lars database yet ([`TestDb::mysql_empty`]) or not there
//! at all ([`TestDb::mysql_absent`], [`TestDb::sqlite_absent`]). MySQL databases are made on the
//! server named by `LARS_TEST_MYSQL_URL`; all of the setup runs on a helper thread with its own
//! runtime and a time limit, so it works from sync and async tests alike and `Drop` never hangs.
//! SQLite databases are a file in a temporary directory.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tempfile::TempDir;

use crate::mysql::{connection_opts, quote_ident};
use crate::testing::CutProxy;
use crate::{InitReport, MysqlUrl, Store, StoreError, StoreOptions, StoreUrl};

/// The environment variable naming the MySQL/MariaDB server for tests, without a database,
/// e.g. `mysql://root@127.0.0.1:3306`.
pub const MYSQL_URL_ENV: &str = "LARS_TEST_MYSQL_URL";

/// How long creating or dropping a test database may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Makes database names unique within one process.
static NEXT_DB: AtomicU64 = AtomicU64::new(0);

/// A database that exists for one test and is removed on drop.
pub struct TestDb {
    url: StoreUrl,
    cleanup: Cleanup,
}

enum Cleanup {
    /// Drop this database (`url`'s) on the server.
    MysqlDatabase,
    /// Removing the directory removes the SQLite file and its WAL.
    SqliteDir {
        /// Held for its `Drop`.
        _dir: TempDir,
    },
}

impl TestDb {
    /// A new MySQL Lars database `lars_test_<pid>_<counter>_<random>` on the server named by
    /// `LARS_TEST_MYSQL_URL`, made by [`Store::init`]: the tables and the version row, no routes.
    ///
    /// # Panics
    /// When the variable is missing or bad, or the database cannot be made: a test that needs
    /// MySQL fails without it rather than skipping.
    pub fn mysql() -> TestDb {
        let db = TestDb::mysql_absent();
        db.init();
        db
    }

    /// A new MySQL database with no tables: reachable, but not a Lars route database until
    /// [`TestDb::init`].
    ///
    /// # Panics
    /// As [`TestDb::mysql`].
    pub fn mysql_empty() -> TestDb {
        let db = TestDb::mysql_absent();
        let StoreUrl::Mysql(m) = &db.url else {
            unreachable!("mysql_absent makes a MySQL URL")
        };
        if let Err(e) = admin(m, format!("CREATE DATABASE {}", quote_ident(&m.database))) {
            panic!(
                "cannot create test database `{}` on {}: {e}",
                m.database,
                m.server()
            );
        }
        db
    }

    /// Like [`TestDb::mysql`], but the database is only named, not created: for testing what
    /// happens without it. Dropped on drop if it came to exist.
    ///
    /// # Panics
    /// When `LARS_TEST_MYSQL_URL` is missing or bad.
    pub fn mysql_absent() -> TestDb {
        let server = mysql_server_from_env();
        TestDb {
            url: StoreUrl::Mysql(MysqlUrl {
                database: unique_name(),
                ..server
            }),
            cleanup: Cleanup::MysqlDatabase,
        }
    }

    /// A new SQLite Lars database (`lars.db` in a fresh temporary directory), made by
    /// [`Store::init`].
    ///
    /// # Panics
    /// When no temporary directory can be made or the file cannot be made.
    pub fn sqlite() -> TestDb {
        let db = TestDb::sqlite_absent();
        db.init();
        db
    }

    /// A path for an SQLite file (`lars.db`) in a fresh temporary directory, with no file there.
    ///
    /// # Panics
    /// When no temporary directory can be made.
    pub fn sqlite_absent() -> TestDb {
        let dir = match tempfile::Builder::new().prefix("lars_test_").tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("cannot make a temporary directory for a test database: {e}"),
        };
        TestDb {
            url: StoreUrl::Sqlite(dir.path().join("lars.db")),
            cleanup: Cleanup::SqliteDir { _dir: dir },
        }
    }

    /// An SQLite file holding one table of something else (`unrelated`): a database that exists
    /// but is not a Lars one, which services leave alone until [`TestDb::init`].
    ///
    /// # Panics
    /// When the file cannot be made.
    pub fn sqlite_with_other_tables() -> TestDb {
        let db = TestDb::sqlite_absent();
        let StoreUrl::Sqlite(path) = &db.url else {
            unreachable!("sqlite_absent makes an SQLite URL")
        };
        let made = rusqlite::Connection::open(path)
            .and_then(|conn| conn.execute_batch("CREATE TABLE unrelated (x INTEGER)"));
        if let Err(e) = made {
            panic!("cannot make {}: {e}", path.display());
        }
        db
    }

    /// Runs [`Store::init`] on the database, as `lars init` would.
    ///
    /// # Panics
    /// When the init fails.
    pub fn init(&self) -> InitReport {
        let url = self.url.clone();
        let init = on_helper_thread(async move {
            Store::init(&url).await.map_err(|e| {
                let mut message = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    message.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                message
            })
        });
        match init {
            Ok(report) => report,
            Err(e) => panic!("cannot init test database {}: {e}", self.url),
        }
    }

    /// Whether the database exists now: the MySQL database on its server (as `SHOW DATABASES`
    /// lists it), or the SQLite file.
    ///
    /// # Panics
    /// When the MySQL server cannot be asked.
    pub fn exists(&self) -> bool {
        let m = match &self.url {
            StoreUrl::Sqlite(path) => return path.exists(),
            StoreUrl::Mysql(m) => m.clone(),
        };
        let opts = connection_opts(&m);
        let database = m.database.clone();
        let found = on_helper_thread(async move {
            let mut conn = Conn::new(opts).await.map_err(|e| e.to_string())?;
            let names: Vec<String> = conn
                .query("SHOW DATABASES")
                .await
                .map_err(|e| e.to_string())?;
            let _ = conn.disconnect().await;
            Ok(names.contains(&database))
        });
        match found {
            Ok(found) => found,
            Err(e) => panic!("cannot list the databases on {}: {e}", m.server()),
        }
    }

    /// Checks that `message` (a command's or service's stderr) names this database as missing
    /// (`` `db` does not exist on host:port`` or `` `path` does not exist``) and points to
    /// `lars init --store URL`, and that the database still does not exist: nothing made it.
    ///
    /// # Panics
    /// When any of that is not so.
    pub fn assert_missing_named(&self, message: &str) {
        let named = match &self.url {
            StoreUrl::Mysql(m) => format!("`{}` does not exist on {}", m.database, m.server()),
            StoreUrl::Sqlite(path) => format!("`{}` does not exist", path.display()),
        };
        let init = format!("lars init --store {}", self.url);
        for what in [named, init] {
            assert!(message.contains(&what), "no `{what}` in: {message}");
        }
        assert!(!self.exists(), "{} was created", self.url);
    }

    /// Writes `dir/file_name`, a service config (lars-dns, lars-reporter) on ports the OS picks
    /// (service and metrics) storing in this database, and returns its path.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn service_config(&self, dir: &Path, file_name: &str) -> PathBuf {
        let path = dir.join(file_name);
        let text = format!(
            "[reactor]\nport = 0\n[metrics]\naddr = \"127.0.0.1:0\"\n[store]\nurl = \"{}\"\n",
            self.url_string()
        );
        if let Err(e) = std::fs::write(&path, text) {
            panic!("cannot write {}: {e}", path.display());
        }
        path
    }

    /// Runs service binary `program` with `args` until it exits and checks that it refused to
    /// start on this missing database: a failure exit, no "serving" line, the database named as
    /// [`TestDb::assert_missing_named`] checks, and nothing created.
    ///
    /// # Panics
    /// When any of that is not so, or the program cannot run.
    pub fn assert_service_refuses(&self, program: &Path, args: &[&str]) {
        let out = match std::process::Command::new(program).args(args).output() {
            Ok(out) => out,
            Err(e) => panic!("cannot run {}: {e}", program.display()),
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{} started: {stderr}",
            program.display()
        );
        assert!(!stderr.contains("serving"), "{stderr}");
        self.assert_missing_named(&stderr);
    }

    /// The database's URL.
    pub fn url(&self) -> StoreUrl {
        self.url.clone()
    }

    /// The database's URL as text with any password, e.g. for a child process's `--store`.
    pub fn url_string(&self) -> String {
        self.url.to_full_string()
    }

    /// Opens the database on a runtime of its own and runs `op` on the store, for tests that do
    /// not run on tokio themselves (e.g. to plant rows or make a route edit between two steps).
    pub fn run<T, F: std::future::Future<Output = T>>(&self, op: impl FnOnce(Store) -> F) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the test's store operation");
        runtime.block_on(async {
            let store = self.open().await.expect("open the test database");
            op(store).await
        })
    }

    /// Opens the existing database with default options.
    pub async fn open(&self) -> Result<Store, StoreError> {
        Store::open(&self.url).await
    }

    /// Opens the database with `options`.
    pub async fn open_with(&self, options: StoreOptions) -> Result<Store, StoreError> {
        Store::open_with(&self.url, options).await
    }

    /// The MySQL server's address (`None` for SQLite).
    ///
    /// # Panics
    /// When the server's host name does not resolve.
    pub fn server_addr(&self) -> Option<SocketAddr> {
        let StoreUrl::Mysql(m) = &self.url else {
            return None;
        };
        match (m.host.as_str(), m.port).to_socket_addrs() {
            Ok(mut addrs) => addrs.next(),
            Err(e) => panic!("cannot resolve test MySQL server {}: {e}", m.server()),
        }
    }

    /// This database's URL, but reaching the server at `addr` (e.g. a [`CutProxy`]).
    ///
    /// # Panics
    /// For an SQLite database, which has no server to reach.
    pub fn url_via(&self, addr: SocketAddr) -> StoreUrl {
        let StoreUrl::Mysql(m) = &self.url else {
            panic!("url_via: an SQLite test database has no server address to proxy");
        };
        StoreUrl::Mysql(MysqlUrl {
            host: addr.ip().to_string(),
            port: addr.port(),
            ..m.clone()
        })
    }

    /// A [`CutProxy`] in front of this database's server, and this database's URL through it.
    ///
    /// # Panics
    /// For an SQLite database, or when the proxy cannot listen.
    pub async fn through_proxy(&self) -> (CutProxy, StoreUrl) {
        let Some(server) = self.server_addr() else {
            panic!("through_proxy: an SQLite test database has no server to proxy");
        };
        let proxy = match CutProxy::start(server).await {
            Ok(proxy) => proxy,
            Err(e) => panic!("cannot start a CutProxy to {server}: {e}"),
        };
        let url = self.url_via(proxy.addr());
        (proxy, url)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let (Cleanup::MysqlDatabase, StoreUrl::Mysql(m)) = (&self.cleanup, &self.url) {
            let sql = format!("DROP DATABASE IF EXISTS {}", quote_ident(&m.database));
            if let Err(e) = admin(m, sql) {
                // Test output is where a developer looks; no subscriber may be installed.
                eprintln!(
                    "warning: cannot drop test database `{}` on {}: {e}",
                    m.database,
                    m.server()
                );
            }
        }
    }
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestDb({})", self.url)
    }
}

fn mysql_server_from_env() -> MysqlUrl {
    let raw = match std::env::var(MYSQL_URL_ENV) {
        Ok(raw) if !raw.trim().is_empty() => raw,
        _ => panic!(
            "{MYSQL_URL_ENV} is not set: MySQL tests need a server, e.g. \
             `export {MYSQL_URL_ENV}=mysql://root@127.0.0.1:3306`"
        ),
    };
    match raw.parse::<StoreUrl>() {
        Ok(StoreUrl::Mysql(m)) => m,
        Ok(other) => panic!("{MYSQL_URL_ENV} must be a mysql:// URL, not {other}"),
        Err(e) => panic!("{MYSQL_URL_ENV}: {e}"),
    }
}

fn unique_name() -> String {
    format!(
        "lars_test_{}_{}_{:08x}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// Runs one statement on `server` without a default database, on a helper thread.
fn admin(server: &MysqlUrl, sql: String) -> Result<(), String> {
    let opts = connection_opts(server);
    on_helper_thread(async move {
        let mut conn = Conn::new(opts).await.map_err(|e| e.to_string())?;
        conn.query_drop(sql).await.map_err(|e| e.to_string())?;
        // The statement is done; a lost goodbye does not matter.
        let _ = conn.disconnect().await;
        Ok(())
    })
}

/// Runs `work` on a helper thread with its own runtime (so it works inside or outside a tokio
/// runtime, and in `Drop`), within [`ADMIN_TIMEOUT`].
fn on_helper_thread<T, F>(work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: Future<Output = Result<T, String>> + Send + 'static,
{
    let worker = std::thread::spawn(move || -> Result<T, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a runtime: {e}"))?;
        runtime.block_on(async move {
            tokio::time::timeout(ADMIN_TIMEOUT, work)
                .await
                .map_err(|_| format!("timed out after {ADMIN_TIMEOUT:?}"))?
        })
    });
    worker
        .join()
        .map_err(|_| "the helper thread panicked".to_string())?
}
