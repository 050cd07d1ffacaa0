//! Databases are never created by accident: opening a missing database is an error naming it
//! and creates nothing; `Store::init` is the one way to make one (idempotent, saying what it
//! did); the services' `OpenMode::CreateIfMissing` makes SQLite files only; and a database
//! without the tables or the version row is told apart from a Lars route database.

use lars_store::testing::TestDb;
use lars_store::{OpenMode, SchemaProblem, Store, StoreError, StoreOptions, StoreUrl};
use lars_wire::{HostAddr, RouteKey};

fn service_options() -> StoreOptions {
    let options = StoreOptions::for_service();
    assert_eq!(options.mode, OpenMode::CreateIfMissing);
    options
}

fn key() -> RouteKey {
    RouteKey::new(1, 2)
}

fn host() -> HostAddr {
    HostAddr::new([10, 0, 0, 1].into(), 80)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_missing_mysql_database_names_it_and_creates_nothing() {
    let db = TestDb::mysql_absent();
    let StoreUrl::Mysql(m) = db.url() else {
        panic!("not mysql")
    };
    // The services' mode creates no MySQL database either.
    for options in [StoreOptions::default(), service_options()] {
        match Store::open_with(&db.url(), options).await {
            Err(e @ StoreError::NoDatabase { .. }) => {
                assert!(e.is_missing_database());
                let text = e.to_string();
                assert!(text.contains(&format!("`{}`", m.database)), "{text}");
                assert!(text.contains(&m.server()), "{text}");
                assert!(text.contains("lars init --store mysql://"), "{text}");
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(store) => panic!("opened {store:?}"),
        }
    }
    assert!(!db.exists(), "opening created the database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_missing_sqlite_file_names_it_and_creates_nothing() {
    let db = TestDb::sqlite_absent();
    let StoreUrl::Sqlite(path) = db.url() else {
        panic!("not sqlite")
    };
    match db.open().await {
        Err(e @ StoreError::NoSqliteFile { .. }) => {
            assert!(e.is_missing_database());
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains("lars init --store sqlite://"), "{text}");
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(store) => panic!("opened {store:?}"),
    }
    assert!(!path.exists(), "opening created the file");
    assert!(
        !path.with_extension("db-wal").exists(),
        "opening created a WAL file"
    );
}

async fn init_creates_the_database_once_and_says_what_it_did(db: TestDb) {
    assert!(!db.exists());
    let first = Store::init(&db.url()).await.unwrap();
    assert!(first.created_database, "{first}");
    assert_eq!(
        first.created_tables,
        [
            "RouteData",
            "RouteVersion",
            "RouteChange",
            "ServerCallStatus",
            "ModIDConfig",
            "CmdIDConfig",
            "ConsoleAudit"
        ]
    );
    assert!(first.created_version_row);
    assert!(db.exists());

    let store = db.open().await.unwrap();
    store.check_route_database().await.unwrap();
    assert_eq!(store.route_version().await.unwrap(), 0);
    let version = store.add_host(key(), host()).await.unwrap().version;

    let again = Store::init(&db.url()).await.unwrap();
    assert!(!again.changed(), "{again}");
    assert!(again.to_string().contains("nothing changed"), "{again}");
    assert_eq!(store.route_version().await.ok(), version);
    assert_eq!(store.load_routes().await.unwrap().routes[&key()], [host()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_creates_a_mysql_database_once_and_says_what_it_did() {
    init_creates_the_database_once_and_says_what_it_did(TestDb::mysql_absent()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_creates_an_sqlite_file_once_and_says_what_it_did() {
    init_creates_the_database_once_and_says_what_it_did(TestDb::sqlite_absent()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_database_without_tables_is_not_a_route_database_until_init() {
    let db = TestDb::mysql_empty();
    let store = db.open().await.unwrap();
    match store.check_route_database().await {
        Err(StoreError::NotRouteDatabase { problem, url, .. }) => {
            assert_eq!(
                problem,
                SchemaProblem::MissingTables(vec!["RouteData", "RouteVersion", "RouteChange"])
            );
            assert_eq!(url, db.url().to_string());
        }
        other => panic!("unexpected {other:?}"),
    }
    // Opening ran no DDL.
    assert_eq!(
        store
            .query_i64(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            )
            .await
            .unwrap(),
        Some(0)
    );
    let report = db.init();
    assert!(
        !report.created_database && report.created_tables.len() == 7,
        "{report}"
    );
    store.check_route_database().await.unwrap();
}

async fn a_missing_version_row_is_refused_until_init(db: TestDb) {
    let store = db.open().await.unwrap();
    store
        .execute_raw("DELETE FROM RouteVersion WHERE id = 1")
        .await
        .unwrap();
    let no_version = |r: Result<(), StoreError>| match r {
        Err(StoreError::NotRouteDatabase {
            problem: SchemaProblem::NoVersionRow,
            ..
        }) => {}
        other => panic!("expected NoVersionRow, got {other:?}"),
    };
    no_version(store.check_route_database().await);
    no_version(store.route_version().await.map(drop));
    no_version(store.add_host(key(), host()).await.map(drop));
    assert!(
        store.load_routes().await.unwrap().routes.is_empty(),
        "the edit landed"
    );

    let report = db.init();
    assert!(
        report.created_version_row && report.created_tables.is_empty(),
        "{report}"
    );
    assert_eq!(store.route_version().await.unwrap(), 0);
    assert!(
        store
            .add_host(key(), host())
            .await
            .unwrap()
            .version
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_mysql_version_row_is_refused_until_init() {
    a_missing_version_row_is_refused_until_init(TestDb::mysql()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_sqlite_version_row_is_refused_until_init() {
    a_missing_version_row_is_refused_until_init(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_create_a_missing_sqlite_file_with_the_schema() {
    let db = TestDb::sqlite_absent();
    // Two services starting at the same moment on a fresh machine.
    let url = db.url();
    let (a, b) = tokio::join!(
        Store::open_with(&url, service_options()),
        Store::open_with(&url, service_options())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    a.check_route_database().await.unwrap();
    assert_eq!(b.route_version().await.unwrap(), 0);
    assert!(db.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_leave_an_sqlite_file_with_other_tables_alone() {
    let db = TestDb::sqlite_with_other_tables();
    let store = Store::open_with(&db.url(), service_options())
        .await
        .unwrap();
    match store.check_route_database().await {
        Err(StoreError::NotRouteDatabase {
            problem: SchemaProblem::MissingTables(missing),
            ..
        }) => assert_eq!(missing.len(), 3),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_without_create_privilege_is_a_clear_error() {
    let admin_db = TestDb::mysql();
    let admin = admin_db.open().await.unwrap();
    // Users are server-wide; this is the only test that makes one, so the pid makes it unique.
    let user = format!("lars_test_noprivs_{}", std::process::id());
    admin
        .execute_raw(&format!("CREATE USER '{user}'@'%'"))
        .await
        .unwrap();
    let missing = TestDb::mysql_absent();
    let StoreUrl::Mysql(mut url) = missing.url() else {
        panic!("not mysql")
    };
    url.user = Some(user.clone());
    url.password = None;
    let init = Store::init(&StoreUrl::Mysql(url.clone())).await;
    admin
        .execute_raw(&format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();
    match init {
        Err(StoreError::CreateDatabase { db, .. }) => assert_eq!(db, url.database),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(report) => panic!("a user without privileges created a database: {report}"),
    }
    assert!(!missing.exists());
}

#[tokio::test]
async fn init_in_a_missing_directory_is_a_connect_error_naming_the_path() {
    let url: StoreUrl = "sqlite:///nonexistent-lars-dir/x/lars.db".parse().unwrap();
    match Store::init(&url).await {
        Err(StoreError::Connect { target, .. }) => {
            assert_eq!(target, "/nonexistent-lars-dir/x/lars.db");
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(report) => panic!("made a file in a missing directory: {report}"),
    }
}
