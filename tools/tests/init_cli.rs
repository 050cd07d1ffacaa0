//! `lars init` is the one command that creates a store; every other store command on a missing
//! MySQL database or SQLite file exits non-zero naming it, and creates nothing.

use lars_service::testing::{Finished, run};
use lars_store::StoreUrl;
use lars_store::testing::TestDb;
use std::path::Path;

fn lars(args: &[&str]) -> Finished {
    run(Path::new(env!("CARGO_BIN_EXE_lars")), args)
}

/// Every store command that reads or edits, with `--store url` appended.
fn store_commands(url: &str) -> Vec<Vec<&str>> {
    let commands: [&[&str]; 6] = [
        &["route", "list"],
        &["route", "list", "1"],
        &["status"],
        &["route", "add", "1", "2", "10.0.0.1", "80"],
        &["route", "del", "1", "2", "10.0.0.1", "80"],
        &["route", "del", "1", "2"],
    ];
    commands
        .iter()
        .map(|c| [*c, &["--store", url]].concat())
        .collect()
}

fn store_commands_on_a_missing_store_fail_and_create_nothing(db: TestDb) {
    let url = db.url_string();
    for command in store_commands(&url) {
        let out = lars(&command);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            out.command,
            out.stderr
        );
        db.assert_missing_named(&out.stderr);
    }
    if let StoreUrl::Sqlite(path) = db.url() {
        let dir = path.parent().unwrap();
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            0,
            "files left in {dir:?}"
        );
    }
}

#[test]
fn store_commands_on_a_missing_mysql_database_fail_and_create_nothing() {
    store_commands_on_a_missing_store_fail_and_create_nothing(TestDb::mysql_absent());
}

#[test]
fn store_commands_on_a_missing_sqlite_file_fail_and_create_nothing() {
    store_commands_on_a_missing_store_fail_and_create_nothing(TestDb::sqlite_absent());
}

fn init_creates_the_store_once_then_routes_work(db: TestDb) {
    let url = db.url_string();
    let first = lars(&["init", "--store", &url]);
    assert!(first.status.success(), "{}", first.stderr);
    for line in [
        format!("created the database {}", db.url()),
        "created tables RouteData, RouteVersion, RouteChange, ServerCallStatus".to_string(),
        "set the route version to 0".to_string(),
    ] {
        assert!(
            first.stdout.contains(&line),
            "no `{line}` in {}",
            first.stdout
        );
    }
    assert!(db.exists());

    let again = lars(&["init", "--store", &url]);
    assert!(again.status.success(), "{}", again.stderr);
    assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);

    let add = lars(&["route", "add", "1", "2", "10.0.0.1", "80", "--store", &url]);
    assert!(add.status.success(), "{}", add.stderr);
    let list = lars(&["route", "list", "--store", &url]);
    assert!(list.status.success(), "{}", list.stderr);
    assert!(list.stdout.contains("10.0.0.1:80"), "{}", list.stdout);
    assert!(
        list.stdout.contains("1 route(s), 1 host(s)"),
        "{}",
        list.stdout
    );
    let status = lars(&["status", "--store", &url]);
    assert!(status.status.success(), "{}", status.stderr);
    assert!(status.stdout.contains("0 row(s)"), "{}", status.stdout);
}

#[test]
fn init_creates_a_mysql_database_once_then_routes_work() {
    init_creates_the_store_once_then_routes_work(TestDb::mysql_absent());
}

#[test]
fn init_creates_an_sqlite_file_once_then_routes_work() {
    init_creates_the_store_once_then_routes_work(TestDb::sqlite_absent());
}

#[test]
fn route_commands_on_a_database_without_the_tables_point_to_init() {
    let db = TestDb::mysql_empty();
    let url = db.url_string();
    for command in store_commands(&url).into_iter().filter(|c| c[0] == "route") {
        lars(&command).assert_failed(1, "is not a Lars route database: it has no table RouteData");
        lars(&command).assert_failed(1, "lars init --store");
    }
    let init = lars(&["init", "--store", &url]);
    assert!(init.status.success(), "{}", init.stderr);
    assert!(
        !init.stdout.contains("created the database"),
        "{}",
        init.stdout
    );
    assert!(lars(&["route", "list", "--store", &url]).status.success());
}

#[test]
fn init_on_a_bad_url_or_unreachable_server_names_it() {
    lars(&["init", "--store", "postgres://x"]).assert_failed(1, "postgres://x");
    lars(&["init", "--store", "mysql://root@127.0.0.1:1/lars_dns"]).assert_failed(1, "127.0.0.1:1");
}
