//! Every store operation against both backends: MySQL on the server named by
//! `LARS_TEST_MYSQL_URL` and an SQLite file. Each test gets its own fresh database.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use lars_store::testing::TestDb;
use lars_store::{AuditEntry, CallStatusRow, EditOutcome, NameChange, RowId, Store, StoreError};
use lars_wire::{HostAddr, RouteKey};

/// Runs each named `async fn(TestDb)` once per backend, as `<name>::mysql` and `<name>::sqlite`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                super::$name(lars_store::testing::TestDb::mysql()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(lars_store::testing::TestDb::sqlite()).await;
            }
        }
    )*};
}

on_both_backends!(
    init_makes_an_empty_lars_database,
    opening_an_existing_database_again_changes_nothing,
    add_host_bumps_the_version_and_logs_the_change,
    two_edits_in_one_second_get_increasing_versions,
    remove_host_and_remove_route_delete_rows_and_bump_the_version,
    edits_that_change_nothing_write_no_version,
    changed_keys_and_their_deletion_follow_the_version,
    bad_route_rows_are_skipped_and_reported_with_their_id,
    edits_of_a_key_with_a_negative_id_are_refused_and_write_nothing,
    stored_rows_with_a_negative_id_are_skipped_and_reported,
    duplicate_route_rows_collapse_into_one_host,
    batch_upsert_with_duplicate_keys_keeps_the_latest_row,
    second_upsert_updates_the_stored_rows,
    per_row_upsert_stores_the_same_as_batch_upsert,
    large_batches_are_written_in_chunks,
    call_status_loads_filtered_by_modid_and_cmdid,
    concurrent_editors_get_distinct_versions,
    audit_entries_are_appended_and_listed_newest_first,
    a_database_made_before_the_console_gets_its_audit_table,
    route_changes_list_newest_first,
    ping_answers,
    init_makes_both_name_tables_empty,
    names_are_added_renamed_and_loaded,
    refused_names_write_nothing,
    a_database_without_the_name_tables_reads_no_names_and_gets_them_on_first_write,
    init_adds_the_name_tables_to_an_older_lars_database,
    bad_rows_are_skipped_and_duplicate_rows_read_as_the_newest,
);

async fn open(db: &TestDb) -> Store {
    match db.open().await {
        Ok(store) => store,
        Err(e) => panic!("open {db:?}: {e}"),
    }
}

fn key(modid: i32, cmdid: i32) -> RouteKey {
    RouteKey::new(modid, cmdid)
}

fn host(last: u8, port: u16) -> HostAddr {
    HostAddr::new(Ipv4Addr::new(10, 0, 0, last), port)
}

async fn count(store: &Store, table: &str) -> i64 {
    store
        .query_i64(&format!("SELECT COUNT(*) FROM {table}"))
        .await
        .unwrap()
        .unwrap()
}

/// The version written by an edit that must change something.
async fn new_version(edit: impl Future<Output = Result<EditOutcome, StoreError>>) -> i64 {
    edit.await.unwrap().version.unwrap()
}

fn status(modid: i32, cmdid: i32, ip: u32, succ_cnt: u32) -> CallStatusRow {
    CallStatusRow {
        modid,
        cmdid,
        ip,
        port: 8080,
        caller: 0x7f00_0001,
        succ_cnt,
        err_cnt: succ_cnt / 10,
        ts: 1_700_000_000 + i64::from(succ_cnt),
        overload: succ_cnt % 2 == 1,
    }
}

async fn init_makes_an_empty_lars_database(db: TestDb) {
    let store = open(&db).await;
    for table in ["RouteData", "RouteChange", "ServerCallStatus"] {
        assert_eq!(count(&store, table).await, 0, "{table}");
    }
    assert_eq!(count(&store, "RouteVersion").await, 1);
    assert_eq!(
        store
            .query_i64("SELECT version FROM RouteVersion WHERE id = 1")
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(store.route_version().await.unwrap(), 0);
    let load = store.load_routes().await.unwrap();
    assert!(load.routes.is_empty() && load.rejected.is_empty());
    assert!(store.changed_keys_up_to(i64::MAX).await.unwrap().is_empty());
    assert!(store.load_call_status(None, None).await.unwrap().is_empty());
}

async fn opening_an_existing_database_again_changes_nothing(db: TestDb) {
    let first = open(&db).await;
    let edit = first.add_host(key(1, 1), host(1, 80)).await.unwrap();
    first.close().await;

    // Twice more, the second pair at the same time, as processes starting together would.
    let again = open(&db).await;
    let (a, b) = tokio::join!(db.open(), db.open());
    let (a, b) = (a.unwrap(), b.unwrap());
    for store in [&again, &a, &b] {
        assert_eq!(store.route_version().await.unwrap(), edit.version.unwrap());
        assert_eq!(count(store, "RouteVersion").await, 1);
        assert_eq!(count(store, "RouteChange").await, 1);
        let load = store.load_routes().await.unwrap();
        assert_eq!(load.routes[&key(1, 1)], vec![host(1, 80)]);
    }
}

async fn add_host_bumps_the_version_and_logs_the_change(db: TestDb) {
    let store = open(&db).await;
    let before = store.route_version().await.unwrap();
    let outcome = store.add_host(key(7, 8), host(3, 9000)).await.unwrap();
    let version = outcome.version.expect("a new host writes a version");
    assert!(version > before);
    assert_eq!(outcome.rows_changed, 1);
    assert_eq!(store.route_version().await.unwrap(), version);
    assert_eq!(
        store.changed_keys_up_to(version).await.unwrap(),
        vec![key(7, 8)]
    );
    assert_eq!(
        store
            .query_i64("SELECT version FROM RouteChange WHERE modid = 7 AND cmdid = 8")
            .await
            .unwrap(),
        Some(version)
    );
    let load = store.load_routes().await.unwrap();
    assert_eq!(load.routes.len(), 1);
    assert_eq!(load.routes[&key(7, 8)], vec![host(3, 9000)]);
}

async fn two_edits_in_one_second_get_increasing_versions(db: TestDb) {
    let store = open(&db).await;
    let v1 = new_version(store.add_host(key(1, 1), host(1, 80))).await;
    let v2 = new_version(store.add_host(key(1, 1), host(2, 80))).await;
    let v3 = new_version(store.remove_host(key(1, 1), host(1, 80))).await;
    assert!(v1 < v2 && v2 < v3, "{v1} {v2} {v3}");
    assert_eq!(store.route_version().await.unwrap(), v3);
    assert_eq!(count(&store, "RouteChange").await, 3);
}

async fn remove_host_and_remove_route_delete_rows_and_bump_the_version(db: TestDb) {
    let store = open(&db).await;
    let (k, other) = (key(5, 1), key(5, 2));
    store.add_host(k, host(1, 80)).await.unwrap();
    store.add_host(k, host(2, 80)).await.unwrap();
    let kept = store.add_host(other, host(3, 80)).await.unwrap();

    let removed = store.remove_host(k, host(1, 80)).await.unwrap();
    assert_eq!(removed.rows_changed, 1);
    assert!(removed.version > kept.version);
    let load = store.load_routes().await.unwrap();
    assert_eq!(load.routes[&k], vec![host(2, 80)]);

    let dropped = store.remove_route(k).await.unwrap();
    assert_eq!(dropped.rows_changed, 1);
    assert!(dropped.version > removed.version);
    assert_eq!(
        store.route_version().await.unwrap(),
        dropped.version.unwrap()
    );
    let load = store.load_routes().await.unwrap();
    assert!(!load.routes.contains_key(&k));
    assert_eq!(load.routes[&other], vec![host(3, 80)]);
    assert_eq!(
        store.changed_keys_up_to(i64::MAX).await.unwrap(),
        vec![k, other]
    );
}

async fn edits_that_change_nothing_write_no_version(db: TestDb) {
    let store = open(&db).await;
    let v = store
        .add_host(key(1, 1), host(1, 80))
        .await
        .unwrap()
        .version;
    let unchanged = EditOutcome {
        version: None,
        rows_changed: 0,
    };
    assert_eq!(
        store.add_host(key(1, 1), host(1, 80)).await.unwrap(),
        unchanged
    );
    assert_eq!(
        store.remove_host(key(1, 1), host(9, 80)).await.unwrap(),
        unchanged
    );
    assert_eq!(
        store.remove_host(key(2, 2), host(1, 80)).await.unwrap(),
        unchanged
    );
    assert_eq!(store.remove_route(key(3, 3)).await.unwrap(), unchanged);
    assert_eq!(Some(store.route_version().await.unwrap()), v);
    assert_eq!(count(&store, "RouteChange").await, 1);
    assert_eq!(count(&store, "RouteData").await, 1);
}

async fn changed_keys_and_their_deletion_follow_the_version(db: TestDb) {
    let store = open(&db).await;
    let (k1, k2) = (key(1, 1), key(2, 2));
    let v1 = new_version(store.add_host(k1, host(1, 80))).await;
    let v2 = new_version(store.add_host(k2, host(1, 80))).await;
    let v3 = new_version(store.add_host(k1, host(2, 80))).await;

    assert!(store.changed_keys_up_to(v1 - 1).await.unwrap().is_empty());
    assert_eq!(store.changed_keys_up_to(v1).await.unwrap(), vec![k1]);
    assert_eq!(store.changed_keys_up_to(v2).await.unwrap(), vec![k1, k2]);
    // k1 changed twice but is listed once.
    assert_eq!(store.changed_keys_up_to(v3).await.unwrap(), vec![k1, k2]);
    // After a version: k1 changed again at v3, k2 only at v2.
    assert_eq!(store.changed_keys_after(v1).await.unwrap(), vec![k1, k2]);
    assert_eq!(store.changed_keys_after(v2).await.unwrap(), vec![k1]);
    assert!(store.changed_keys_after(v3).await.unwrap().is_empty());

    assert_eq!(store.delete_changes_up_to(v1).await.unwrap(), 1);
    assert_eq!(store.changed_keys_up_to(v3).await.unwrap(), vec![k1, k2]);
    assert_eq!(store.delete_changes_up_to(v3).await.unwrap(), 2);
    assert!(store.changed_keys_up_to(i64::MAX).await.unwrap().is_empty());
    assert_eq!(store.delete_changes_up_to(v3).await.unwrap(), 0);

    store.remove_route(k2).await.unwrap();
    store.remove_route(k1).await.unwrap();
    assert_eq!(store.clear_changes().await.unwrap(), 2);
    assert!(store.changed_keys_up_to(i64::MAX).await.unwrap().is_empty());
    // Deleting the log leaves the routes and the version alone.
    assert!(store.route_version().await.unwrap() > v3);
}

async fn bad_route_rows_are_skipped_and_reported_with_their_id(db: TestDb) {
    let store = open(&db).await;
    store.add_host(key(1, 1), host(1, 80)).await.unwrap();
    for (id, port) in [(900, 0), (901, 70_000)] {
        store
            .execute_raw(&format!(
                "INSERT INTO RouteData (id, modid, cmdid, serverip, serverport) \
                 VALUES ({id}, 1, 1, 167772162, {port})"
            ))
            .await
            .unwrap();
    }
    let load = store.load_routes().await.unwrap();
    assert_eq!(load.routes[&key(1, 1)], vec![host(1, 80)]);
    let mut ids = Vec::new();
    for rejected in &load.rejected {
        match rejected {
            StoreError::BadRow {
                table: "RouteData",
                row: RowId::Id(id),
                column: "serverport",
                value,
                ..
            } => ids.push((*id, value.clone())),
            other => panic!("unexpected rejection: {other}"),
        }
    }
    assert_eq!(
        ids,
        vec![(900, "0".to_string()), (901, "70000".to_string())]
    );
}

async fn edits_of_a_key_with_a_negative_id_are_refused_and_write_nothing(db: TestDb) {
    let store = open(&db).await;
    let version = new_version(store.add_host(key(1, 1), host(1, 80))).await;
    for bad in [key(-1, 1), key(1, -1), key(i32::MIN, i32::MIN)] {
        let refusals = [
            ("add_host", store.add_host(bad, host(1, 80)).await),
            ("remove_host", store.remove_host(bad, host(1, 80)).await),
            ("remove_route", store.remove_route(bad).await),
        ];
        for (op, result) in refusals {
            match result {
                Err(StoreError::NotARoute {
                    op: refused,
                    source,
                }) => {
                    assert_eq!((refused, source.key), (op, bad));
                }
                other => panic!("{op} of {bad}: expected NotARoute, got {other:?}"),
            }
        }
    }
    let err = store.add_host(key(-1, 2), host(1, 80)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "add_host refused: modid=-1 cmdid=2 cannot name a route: modid and cmdid must be in \
         0..=2147483647"
    );
    assert_eq!(store.route_version().await.unwrap(), version);
    assert_eq!(count(&store, "RouteData").await, 1);
    assert_eq!(count(&store, "RouteChange").await, 1);
}

async fn stored_rows_with_a_negative_id_are_skipped_and_reported(db: TestDb) {
    let store = open(&db).await;
    store.add_host(key(1, 1), host(1, 80)).await.unwrap();
    // Written behind the store's back, as a C++ Lars tool could have.
    for (id, modid, cmdid) in [(910, -1, 1), (911, 1, -7)] {
        store
            .execute_raw(&format!(
                "INSERT INTO RouteData (id, modid, cmdid, serverip, serverport) \
                 VALUES ({id}, {modid}, {cmdid}, 167772162, 80)"
            ))
            .await
            .unwrap();
    }
    let load = store.load_routes().await.unwrap();
    assert_eq!(load.routes.len(), 1, "{:?}", load.routes);
    assert_eq!(load.routes[&key(1, 1)], vec![host(1, 80)]);
    let mut seen = Vec::new();
    for rejected in &load.rejected {
        match rejected {
            StoreError::BadRow {
                table: "RouteData",
                row: RowId::Id(id),
                column,
                value,
                ..
            } => seen.push((*id, *column, value.clone())),
            other => panic!("unexpected rejection: {other}"),
        }
    }
    assert_eq!(
        seen,
        vec![
            (910, "modid", "-1".to_string()),
            (911, "cmdid", "-7".to_string())
        ]
    );

    // Statistics rows with a negative id are skipped the same way.
    store
        .execute_raw(
            "INSERT INTO ServerCallStatus (modid, cmdid, ip, port, caller, succ_cnt, err_cnt, ts, \
             overload) VALUES (-2, 1, 167772162, 80, 2130706433, 1, 0, 1, '0')",
        )
        .await
        .unwrap();
    store
        .upsert_call_status(&[status(3, 3, 1, 5)])
        .await
        .unwrap();
    let statuses = store.load_call_status(None, None).await.unwrap();
    assert_eq!(
        statuses.iter().map(|r| r.modid).collect::<Vec<_>>(),
        vec![3],
        "{statuses:?}"
    );
}

async fn duplicate_route_rows_collapse_into_one_host(db: TestDb) {
    let store = open(&db).await;
    for _ in 0..2 {
        store
            .execute_raw(
                "INSERT INTO RouteData (modid, cmdid, serverip, serverport) \
                 VALUES (4, 4, 167772161, 80)",
            )
            .await
            .unwrap();
    }
    store.add_host(key(4, 4), host(2, 80)).await.unwrap();
    let load = store.load_routes().await.unwrap();
    assert_eq!(load.routes[&key(4, 4)], vec![host(1, 80), host(2, 80)]);
    assert!(load.rejected.is_empty());
    // Removing the host removes every copy of it.
    let removed = store.remove_host(key(4, 4), host(1, 80)).await.unwrap();
    assert_eq!(removed.rows_changed, 2);
}

async fn batch_upsert_with_duplicate_keys_keeps_the_latest_row(db: TestDb) {
    let store = open(&db).await;
    let mut extreme = status(0, i32::MAX, u32::MAX, 7);
    extreme.caller = u32::MAX;
    extreme.port = u16::MAX;
    extreme.succ_cnt = u32::MAX;
    let written = store
        .upsert_call_status(&[
            status(1, 1, 10, 1),
            status(1, 2, 10, 5),
            extreme,
            status(1, 1, 10, 2),
            status(1, 1, 10, 3),
        ])
        .await
        .unwrap();
    assert_eq!(written, 3);
    assert_eq!(
        store.load_call_status(None, None).await.unwrap(),
        vec![extreme, status(1, 1, 10, 3), status(1, 2, 10, 5)]
    );
}

async fn second_upsert_updates_the_stored_rows(db: TestDb) {
    let store = open(&db).await;
    store
        .upsert_call_status(&[status(1, 1, 10, 1), status(1, 1, 11, 1)])
        .await
        .unwrap();
    store
        .upsert_call_status(&[status(1, 1, 10, 4)])
        .await
        .unwrap();
    assert_eq!(
        store.load_call_status(None, None).await.unwrap(),
        vec![status(1, 1, 10, 4), status(1, 1, 11, 1)]
    );
    assert_eq!(count(&store, "ServerCallStatus").await, 2);
}

async fn per_row_upsert_stores_the_same_as_batch_upsert(db: TestDb) {
    let store = open(&db).await;
    // The same reports twice: as modid 1 through the batch path, as modid 2 row by row.
    let reports: Vec<(i32, u32, u32)> = vec![(1, 10, 1), (2, 10, 2), (1, 10, 3), (1, 11, 4)];
    let rows = |modid: i32| -> Vec<CallStatusRow> {
        reports
            .iter()
            .map(|&(cmdid, ip, succ)| status(modid, cmdid, ip, succ))
            .collect()
    };
    assert_eq!(store.upsert_call_status(&rows(1)).await.unwrap(), 3);
    assert_eq!(store.upsert_call_status_per_row(&rows(2)).await.unwrap(), 4);
    let batch = store.load_call_status(Some(1), None).await.unwrap();
    let per_row = store.load_call_status(Some(2), None).await.unwrap();
    let as_modid_1: Vec<CallStatusRow> = per_row
        .into_iter()
        .map(|r| CallStatusRow { modid: 1, ..r })
        .collect();
    assert_eq!(batch.len(), 3);
    assert_eq!(batch, as_modid_1);
}

async fn large_batches_are_written_in_chunks(db: TestDb) {
    let store = open(&db).await;
    let rows: Vec<CallStatusRow> = (0..2_500u32).map(|i| status(9, 9, i, i)).collect();
    assert_eq!(store.upsert_call_status(&rows).await.unwrap(), 2_500);
    let stored = store.load_call_status(Some(9), Some(9)).await.unwrap();
    assert_eq!(stored, rows);
}

async fn call_status_loads_filtered_by_modid_and_cmdid(db: TestDb) {
    let store = open(&db).await;
    let all = vec![
        status(1, 1, 1, 1),
        status(1, 2, 1, 1),
        status(2, 1, 1, 1),
        status(2, 2, 1, 1),
    ];
    store.upsert_call_status(&all).await.unwrap();
    let load = |modid, cmdid| {
        let store = store.clone();
        async move { store.load_call_status(modid, cmdid).await.unwrap() }
    };
    assert_eq!(load(None, None).await, all);
    assert_eq!(load(Some(1), None).await, all[..2].to_vec());
    assert_eq!(load(None, Some(2)).await, vec![all[1], all[3]]);
    assert_eq!(load(Some(2), Some(1)).await, vec![all[2]]);
    assert!(load(Some(3), None).await.is_empty());
}

async fn concurrent_editors_get_distinct_versions(db: TestDb) {
    let store = open(&db).await;
    let edits = (1..=8u8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.add_host(key(1, 1), host(i, 80)).await })
    });
    let mut versions = HashSet::new();
    for edit in edits {
        let outcome = edit.await.unwrap().unwrap();
        assert!(versions.insert(outcome.version.unwrap()), "version reused");
    }
    assert_eq!(
        store.route_version().await.unwrap(),
        *versions.iter().max().unwrap()
    );
    assert_eq!(
        store.load_routes().await.unwrap().routes[&key(1, 1)].len(),
        8
    );
}

async fn audit_entries_are_appended_and_listed_newest_first(db: TestDb) {
    let store = open(&db).await;
    assert!(store.load_audit(10).await.unwrap().is_empty());
    for (ts, action) in [
        (10, "add host a"),
        (11, "remove host b"),
        (12, "remove route c"),
    ] {
        let entry = AuditEntry::new(ts, "operator", "127.0.0.1:5000", action);
        store.append_audit(&entry).await.unwrap();
    }
    let listed = store.load_audit(2).await.unwrap();
    let actions: Vec<&str> = listed.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["remove route c", "remove host b"]);
    assert_eq!((listed[0].ts, listed[0].who.as_str()), (12, "operator"));
    assert_eq!(listed[0].peer, "127.0.0.1:5000");
    assert!(listed[0].id > listed[1].id);
    // Text the SQL must not mistake for its own.
    let odd = AuditEntry::new(13, "o'brien", "::1", "quote ' and ; -- dash");
    store.append_audit(&odd).await.unwrap();
    let newest = &store.load_audit(1).await.unwrap()[0];
    assert_eq!(
        (newest.who.as_str(), newest.action.as_str()),
        ("o'brien", odd.action.as_str())
    );
}

async fn a_database_made_before_the_console_gets_its_audit_table(db: TestDb) {
    let store = open(&db).await;
    store.execute_raw("DROP TABLE ConsoleAudit").await.unwrap();
    assert!(store.load_audit(1).await.is_err(), "the table is gone");
    store.ensure_audit_table().await.unwrap();
    store.ensure_audit_table().await.unwrap();
    store
        .append_audit(&AuditEntry::new(1, "a", "b", "c"))
        .await
        .unwrap();
    assert_eq!(store.load_audit(5).await.unwrap().len(), 1);
    // `lars init` on such a database creates the table too, and says so.
    store.execute_raw("DROP TABLE ConsoleAudit").await.unwrap();
    let report = db.init();
    assert_eq!(report.created_tables, ["ConsoleAudit"], "{report}");
}

async fn route_changes_list_newest_first(db: TestDb) {
    let store = open(&db).await;
    let host = HostAddr::new(Ipv4Addr::new(10, 0, 0, 1), 9000);
    store.add_host(RouteKey::new(1, 1), host).await.unwrap();
    store.add_host(RouteKey::new(2, 2), host).await.unwrap();
    let last = store.remove_route(RouteKey::new(1, 1)).await.unwrap();
    let changes = store.load_route_changes(10).await.unwrap();
    let keys: Vec<RouteKey> = changes.iter().map(|c| c.key).collect();
    assert_eq!(
        keys,
        [
            RouteKey::new(1, 1),
            RouteKey::new(2, 2),
            RouteKey::new(1, 1)
        ]
    );
    assert_eq!(Some(changes[0].version), last.version);
    assert!(changes[0].version > changes[2].version);
    assert_eq!(store.load_route_changes(1).await.unwrap().len(), 1);
}

async fn ping_answers(db: TestDb) {
    let store = open(&db).await;
    store.ping().await.unwrap();
}

// Module and command names (`ModIDConfig`, `CmdIDConfig`).

async fn drop_name_tables(store: &Store) {
    for table in ["ModIDConfig", "CmdIDConfig"] {
        store
            .execute_raw(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
    }
}

async fn init_makes_both_name_tables_empty(db: TestDb) {
    let store = open(&db).await;
    assert_eq!(count(&store, "ModIDConfig").await, 0);
    assert_eq!(count(&store, "CmdIDConfig").await, 0);
    let names = store.load_names().await.unwrap();
    assert!(names.modules.is_empty() && names.commands.is_empty() && names.rejected.is_empty());
}

async fn names_are_added_renamed_and_loaded(db: TestDb) {
    let store = open(&db).await;
    assert_eq!(
        store.set_module_name(1, "users").await.unwrap(),
        NameChange::Added
    );
    assert_eq!(
        store.set_module_name(1, " users ").await.unwrap(),
        NameChange::Unchanged
    );
    assert_eq!(
        store.set_module_name(1, "accounts").await.unwrap(),
        NameChange::Renamed {
            from: "users".into()
        }
    );
    assert_eq!(
        store.set_command_name(2, "log in ✓").await.unwrap(),
        NameChange::Added
    );
    store.set_module_name(0, "zero").await.unwrap();
    assert_eq!(
        count(&store, "ModIDConfig").await,
        2,
        "a rename adds no row"
    );

    let names = store.load_names().await.unwrap();
    assert_eq!(names.module(1), Some("accounts"));
    assert_eq!(names.module(0), Some("zero"));
    assert_eq!(names.command(2), Some("log in ✓"));
    assert_eq!(
        names.label(RouteKey::new(1, 2)).as_deref(),
        Some("accounts/log in ✓")
    );
    assert_eq!(names.label(RouteKey::new(7, 7)), None);
    assert!(names.rejected.is_empty());
}

async fn refused_names_write_nothing(db: TestDb) {
    let store = open(&db).await;
    let long = "x".repeat(lars_store::MAX_NAME_CHARS + 1);
    for (modid, name) in [
        (-1, "users"),
        (1, ""),
        (1, "  "),
        (1, "a\u{1b}[2J"),
        (1, &long),
    ] {
        match store.set_module_name(modid, name).await {
            Err(StoreError::InvalidName { what, .. }) => assert_eq!(what, format!("modid {modid}")),
            other => panic!("{modid} {name:?}: {other:?}"),
        }
        match store.set_command_name(modid, name).await {
            Err(StoreError::InvalidName { what, .. }) => assert_eq!(what, format!("cmdid {modid}")),
            other => panic!("{modid} {name:?}: {other:?}"),
        }
    }
    assert_eq!(count(&store, "ModIDConfig").await, 0);
    assert_eq!(count(&store, "CmdIDConfig").await, 0);
}

async fn a_database_without_the_name_tables_reads_no_names_and_gets_them_on_first_write(
    db: TestDb,
) {
    let store = open(&db).await;
    drop_name_tables(&store).await;
    let names = store.load_names().await.unwrap();
    assert!(names.modules.is_empty() && names.commands.is_empty());

    assert_eq!(
        store.set_command_name(3, "search").await.unwrap(),
        NameChange::Added
    );
    let names = store.load_names().await.unwrap();
    assert_eq!(names.command(3), Some("search"));
    assert!(names.modules.is_empty(), "ModIDConfig is still missing");
    store.set_module_name(4, "catalog").await.unwrap();
    assert_eq!(store.load_names().await.unwrap().module(4), Some("catalog"));
}

async fn init_adds_the_name_tables_to_an_older_lars_database(db: TestDb) {
    let store = open(&db).await;
    store.set_module_name(1, "before").await.unwrap();
    drop_name_tables(&store).await;
    store.close().await;

    let report = db.init();
    assert_eq!(report.created_tables, ["ModIDConfig", "CmdIDConfig"]);
    assert!(!report.created_database && !report.created_version_row);
    let store = open(&db).await;
    assert_eq!(count(&store, "ModIDConfig").await, 0);
    assert!(!db.init().changed(), "a second init finds everything");
}

async fn bad_rows_are_skipped_and_duplicate_rows_read_as_the_newest(db: TestDb) {
    let store = open(&db).await;
    // An older tool may have left two rows for one modid; the newest counts, a rename sets both.
    for (id, modid, content) in [
        (900, 5, "'old'"),
        (901, 5, "'new'"),
        (902, 6, "''"),
        (903, 7, "'tab\there'"),
    ] {
        store
            .execute_raw(&format!(
                "INSERT INTO ModIDConfig (id, modid, content) VALUES ({id}, {modid}, {content})"
            ))
            .await
            .unwrap();
    }
    let names = store.load_names().await.unwrap();
    assert_eq!(names.module(5), Some("new"));
    assert_eq!(names.module(6), None);
    assert_eq!(names.module(7), None);
    let rejected: Vec<(RowId, &str)> = names
        .rejected
        .iter()
        .map(|e| match e {
            StoreError::BadRow {
                table: "ModIDConfig",
                row,
                column,
                ..
            } => (row.clone(), *column),
            other => panic!("unexpected rejection: {other}"),
        })
        .collect();
    assert_eq!(
        rejected,
        [(RowId::Id(902), "content"), (RowId::Id(903), "content")]
    );

    assert_eq!(
        store.set_module_name(5, "newest").await.unwrap(),
        NameChange::Renamed { from: "new".into() }
    );
    assert_eq!(store.load_names().await.unwrap().module(5), Some("newest"));
    assert_eq!(
        store
            .query_i64("SELECT COUNT(*) FROM ModIDConfig WHERE content = 'newest'")
            .await
            .unwrap(),
        Some(2)
    );
}
