//! lars-reporter never creates a database by accident: started on a misspelled MySQL database
//! it exits naming it and creates nothing; the embedded SQLite file is made on its first start.

use lars_service::testing::ServiceProcess;
use lars_store::testing::TestDb;
use std::path::Path;

fn lars_reporter() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lars-reporter"))
}

#[test]
fn a_misspelled_mysql_database_stops_the_reporter_at_start_and_is_not_created() {
    let db = TestDb::mysql_absent();
    let dir = tempfile::tempdir().unwrap();
    let config = db.service_config(dir.path(), "lars_reporter.toml");
    db.assert_service_refuses(lars_reporter(), &["--config", config.to_str().unwrap()]);
}

#[test]
fn a_missing_sqlite_file_is_made_on_the_first_start() {
    let db = TestDb::sqlite_absent();
    let dir = tempfile::tempdir().unwrap();
    let config = db.service_config(dir.path(), "lars_reporter.toml");
    let reporter = ServiceProcess::start(
        lars_reporter(),
        &[],
        &["--config", config.to_str().unwrap()],
    );
    assert!(db.exists());
    let exit = reporter.terminate();
    assert!(exit.success(), "exit status {exit}");
}
